import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** clients/js/e2e */
export const E2E_DIR = dirname(fileURLToPath(import.meta.url));
/** clients/js */
export const PACKAGE_DIR = resolve(E2E_DIR, '..');
/** The repository root. */
export const REPO_ROOT = resolve(PACKAGE_DIR, '..', '..');
/** Where screenshots go (git-ignored). */
export const ARTIFACTS_DIR = join(REPO_ROOT, 'test-artifacts');

/** Debian's Chromium. The e2e tests never download a browser. */
export const CHROMIUM = '/usr/bin/chromium';

/** The herald binary: `HERALD_BIN`, else the debug build of this repository. */
export function heraldBin(): string {
  return process.env.HERALD_BIN || join(REPO_ROOT, 'target', 'debug', 'herald');
}

/** Throws a clear error when a prerequisite of the e2e run is missing. */
export function checkPrerequisites(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is missing: ${CHROMIUM} does not exist. The browser e2e tests drive Debian's Chromium ` +
        '(they never download a browser): install it with `apt-get install -y chromium`.',
    );
  }
  const bin = heraldBin();
  if (!existsSync(bin)) {
    throw new Error(
      `The herald binary is missing: ${bin} does not exist. Build it with \`cargo build -p herald\` ` +
        'from the repository root, or point HERALD_BIN at one.',
    );
  }
}
