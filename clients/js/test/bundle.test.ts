/**
 * The browser build, bundled as an app's bundler would (esbuild, minified, browser platform,
 * from src/ with the same substitution the `browser` export condition makes: eventsource-package
 * → its browser stand-in): it must not contain the Node `eventsource` package, and stays within
 * the gzip budgets of scripts/size.mjs (which measures dist/browser/ after `npm run build`).
 */
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { describe, expect, it } from 'vitest';

const src = (f: string) => fileURLToPath(new URL(`../src/${f}`, import.meta.url));

/** Resolves `./x.js` to `src/x.ts` (as tsc does), and eventsource-package to the browser file. */
const browserCondition: Plugin = {
  name: 'browser-condition',
  setup(b) {
    b.onResolve({ filter: /^\.\/.*\.js$/ }, (args) => {
      const name = args.path.slice(2, -3);
      return { path: src(name === 'eventsource-package' ? 'eventsource-package.browser.ts' : `${name}.ts`) };
    });
  },
};

async function bundle(entry: string) {
  const r = await build({
    entryPoints: [src(entry)],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    external: ['react'],
    write: false,
    metafile: true,
    logLevel: 'silent',
    plugins: [browserCondition],
  });
  const code = r.outputFiles[0]!.contents;
  return { inputs: Object.keys(r.metafile.inputs), gzip: gzipSync(code, { level: 9 }).length };
}

describe('browser bundle', () => {
  it.each([
    ['index.ts', 14_000],
    ['react.ts', 16_000],
  ])('%s: no eventsource package, gzip within %i B', async (entry, budget) => {
    const { inputs, gzip } = await bundle(entry);
    expect(inputs.filter((i) => i.includes('node_modules'))).toEqual([]);
    expect(inputs.some((i) => i.endsWith('eventsource-package.browser.ts'))).toBe(true);
    expect(gzip).toBeLessThan(budget);
  });
});
