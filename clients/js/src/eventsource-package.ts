/**
 * Loads the `eventsource` npm package (Node without a global EventSource). A module of its own
 * so that the browser build (package.json's `browser` condition, dist/browser/) can replace it
 * with `eventsource-package.browser.ts` and browser bundles never contain the package.
 */
export function importEventSourcePackage(): Promise<{ EventSource: unknown }> {
  return import('eventsource');
}
