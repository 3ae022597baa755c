import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.test.tsx'],
    environment: 'node',
    // The React hook test opts into happy-dom with a `@vitest-environment` comment.
    testTimeout: 10_000,
    restoreMocks: true,
  },
});
