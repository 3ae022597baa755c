/**
 * Debian's Chromium (/usr/bin/chromium) through playwright-core, headless, with a fresh
 * temporary profile. Never downloads a browser.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { CHROMIUM, checkPrerequisites } from '../paths.js';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  /** One browser profile: every page shares its origin storage, Web Locks and BroadcastChannels. */
  context: BrowserContext;
  /** A new tab; uncaught page errors are collected in `errors`. */
  newPage(): Promise<Page>;
  /** Uncaught exceptions of every page ("page: message"). */
  errors: string[];
  close(): Promise<void>;
}

/** `extraArgs`: more Chromium flags, e.g. `--host-resolver-rules=MAP evil.test 127.0.0.1`. */
export async function launchBrowser(extraArgs: string[] = []): Promise<Browser> {
  checkPrerequisites();
  const profile = await mkdtemp(join(tmpdir(), 'herald-e2e-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...extraArgs],
      viewport: { width: 1280, height: 800 },
      timeout: 30_000,
    });
  } catch (err) {
    await rm(profile, { recursive: true, force: true });
    throw err;
  }
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(15_000);
  const errors: string[] = [];
  const watch = (page: Page) => page.on('pageerror', (e) => errors.push(`${page.url()}: ${e.message}`));
  context.pages().forEach(watch);
  context.on('page', watch);
  return {
    context,
    errors,
    async newPage() {
      // The persistent context opens with one blank tab: use it first.
      const blank = context.pages().find((p) => p.url() === 'about:blank' && !(p as { __used?: boolean }).__used);
      const page = blank ?? (await context.newPage());
      (page as { __used?: boolean }).__used = true;
      return page;
    },
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
}
