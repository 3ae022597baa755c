#!/usr/bin/env node
/**
 * The builds beside tsc's ESM output (dist/*.js + .d.ts), run by `npm run build` after tsc:
 *
 * - dist/cjs/: CommonJS, one file per module (esbuild transform of dist/*.js), with the same
 *   declarations and a package.json `{"type": "commonjs"}` so Node and TypeScript read both as
 *   CommonJS (package.json's `require` condition).
 * - dist/browser/: the ESM files (and declarations) with `eventsource-package.js` replaced by its
 *   browser stand-in, so that browser bundles (package.json's `browser` condition) never contain
 *   the Node `eventsource` package.
 */
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const cjs = join(dist, 'cjs');
const browser = join(dist, 'browser');

await rm(cjs, { recursive: true, force: true });
await rm(browser, { recursive: true, force: true });
await mkdir(cjs, { recursive: true });
await mkdir(browser, { recursive: true });

const all = await readdir(dist);
for (const map of all.filter((f) => f.endsWith('.js.map') && !f.startsWith('eventsource-package'))) await copyFile(join(dist, map), join(browser, map));
const files = all.filter((f) => f.endsWith('.js') || f.endsWith('.d.ts'));
for (const file of files) {
  const src = join(dist, file);
  if (file.endsWith('.d.ts')) {
    await copyFile(src, join(cjs, file));
    if (!file.startsWith('eventsource-package.browser')) await copyFile(src, join(browser, file));
    continue;
  }
  const code = await readFile(src, 'utf8');
  const out = await transform(code.replace(/\n\/\/# sourceMappingURL=.*\n?$/, '\n'), { format: 'cjs', platform: 'node', target: 'node20', sourcefile: file, loader: 'js' });
  await writeFile(join(cjs, file), out.code);
  if (file === 'eventsource-package.browser.js') continue;
  if (file === 'eventsource-package.js') {
    await copyFile(join(dist, 'eventsource-package.browser.js'), join(browser, file));
  } else {
    await copyFile(src, join(browser, file));
  }
}
await writeFile(join(cjs, 'package.json'), JSON.stringify({ type: 'commonjs' }, null, 2) + '\n');
console.log(`build: ${files.length} files -> dist/cjs (CommonJS) and dist/browser (no eventsource package)`);
