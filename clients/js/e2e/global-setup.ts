/**
 * Runs once before the e2e files: checks Chromium and the herald binary, builds the package
 * (`npm run build` -> dist/), and bundles the test pages (pages/*.ts[x], which import from dist/browser/)
 * with esbuild into a temporary directory that the tests serve over HTTP.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import type { TestProject } from 'vitest/node';
import { E2E_DIR, PACKAGE_DIR, checkPrerequisites } from './paths.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Directory with the bundled test pages (react.html, client.html and their scripts). */
    pagesDir: string;
  }
}

const PAGES = {
  react: { entry: 'pages/react-app.tsx', title: 'Herald e2e: useSSE' },
  client: { entry: 'pages/client-app.ts', title: 'Herald e2e: HeraldClient' },
  socketio: { entry: 'pages/socketio-app.ts', title: 'Herald e2e: socket.io-client' },
} as const;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  checkPrerequisites();

  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const built = spawnSync(npm, ['run', 'build'], { cwd: PACKAGE_DIR, stdio: 'inherit', timeout: 180_000 });
  if (built.status !== 0) {
    throw new Error(`npm run build failed (status ${built.status}${built.error ? `, ${built.error.message}` : ''})`);
  }

  const dir = await mkdtemp(join(tmpdir(), 'herald-e2e-pages-'));
  await build({
    entryPoints: Object.fromEntries(Object.entries(PAGES).map(([name, p]) => [name, join(E2E_DIR, p.entry)])),
    outdir: dir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome110',
    jsx: 'automatic',
    sourcemap: 'inline',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
  for (const [name, p] of Object.entries(PAGES)) {
    await writeFile(
      join(dir, `${name}.html`),
      `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${p.title}</title>` +
        `<link rel="icon" href="data:,"></head>\n<body><div id="root"></div>` +
        `<script type="module" src="./${name}.js"></script></body></html>\n`,
    );
  }
  project.provide('pagesDir', dir);
  return async () => {
    await rm(dir, { recursive: true, force: true });
  };
}
