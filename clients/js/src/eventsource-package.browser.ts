/**
 * The browser build's stand-in for `eventsource-package.ts`: browsers have a global
 * `EventSource` (and the default reader is `fetch`), so the Node `eventsource` package is never
 * bundled. Reached only where neither exists.
 */
export function importEventSourcePackage(): Promise<{ EventSource: unknown }> {
  return Promise.reject(
    new Error('no global EventSource and no fetch streaming in this browser build: pass the `EventSource` option (a polyfill)'),
  );
}
