#!/usr/bin/env node
/**
 * Bundle-size check of the browser build (`npm run build` first): bundles dist/browser/index.js
 * (the client) and dist/browser/react.js (client + hooks, `react` external) the way an app's
 * bundler would (esbuild, minified, browser platform), gzips them, prints the sizes, and fails
 * when a bundle contains the Node `eventsource` package or grows past its budget. The figures
 * are recorded in README.md ("Bundle size"). Then loads each entry point the way consumers do
 * (`require` → dist/cjs, `import` → dist/) and checks that both export the same names.
 */
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** gzip budgets in bytes: a failure here means a real regression (or a deliberate raise). */
const BUDGET = { 'index.js': 14_000, 'react.js': 16_000 };

let failed = false;
for (const [entry, budget] of Object.entries(BUDGET)) {
  const result = await build({
    entryPoints: [join(root, 'dist', 'browser', entry)],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    external: ['react'],
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const code = result.outputFiles[0].contents;
  const gz = gzipSync(code, { level: 9 }).length;
  const inputs = Object.keys(result.metafile.inputs);
  const leaked = inputs.filter((i) => i.includes('node_modules/eventsource'));
  console.log(`${entry.padEnd(9)} ${String(code.length).padStart(7)} B minified, ${String(gz).padStart(6)} B gzip (budget ${budget} B)`);
  if (leaked.length) {
    console.error(`  FAIL: contains the eventsource package: ${leaked.join(', ')}`);
    failed = true;
  }
  if (gz > budget) {
    console.error(`  FAIL: over budget by ${gz - budget} B`);
    failed = true;
  }
}
// The package's own entry points, as consumers load them (self-reference through `exports`).
const require = createRequire(import.meta.url);
for (const entry of ['@herald/client', '@herald/client/publisher', '@herald/client/react']) {
  const viaRequire = require.resolve(entry);
  const cjs = require(entry);
  const esm = await import(entry);
  const names = Object.keys(esm).filter((k) => k !== 'default').sort();
  const missing = names.filter((k) => !(k in cjs));
  const ok = viaRequire.includes(`${join('dist', 'cjs')}`) && !missing.length;
  console.log(`${entry.padEnd(26)} require -> ${viaRequire.slice(root.length + 1)}, ${names.length} exports${missing.length ? `, missing in CJS: ${missing}` : ''}`);
  if (!ok) failed = true;
}
process.exit(failed ? 1 : 0);
