import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Browser end-to-end tests: the real herald binary, Debian's Chromium driven by playwright-core,
// pages bundled with esbuild from the built package (dist/). Run with `npm run test:e2e`.
// Kept apart from the unit tests (`npm test` only includes test/**).
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['e2e/**/*.e2e.test.ts'],
    environment: 'node',
    globalSetup: ['e2e/global-setup.ts'],
    // One file at a time: each starts its own Chromium and hubs, and the machine is small.
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 90_000,
    hookTimeout: 60_000,
    teardownTimeout: 20_000,
    // Real processes and a real browser: no retries, a failure is a failure.
    retry: 0,
  },
});
