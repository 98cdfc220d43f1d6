// What every browser test shares: the binary, Debian chromium, the CLI, and a node started on
// port 0 and polled until it is healthy.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

export const BIN = process.env.MEDMESH_BIN ?? 'target/debug/medmesh';
export const CHROMIUM = process.env.MEDMESH_CHROMIUM ?? '/usr/bin/chromium';

// Chromium's flags for this machine: no sandbox as root, and no background traffic (the
// network is closed).
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Debian chromium, headless, with a profile of its own that outlives a restart (IndexedDB
// keys, kept checkpoints).
export const launchPersistent = (profile) =>
  chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });

// Runs `medmesh ARGS` against the node's data directory; returns its stdout.
export function cli(dir, args, input, env = {}) {
  const out = spawnSync(BIN, args, {
    input,
    encoding: 'utf8',
    env: { ...process.env, MEDMESH_LOG: 'warn', MEDMESH_DATA_DIR: dir, ...env },
  });
  assert.equal(out.status, 0, `medmesh ${args.join(' ')}: ${out.stderr}`);
  return out.stdout.trim();
}

// Starts `medmesh serve` on a free port (or on `listen`) and waits until /healthz answers.
export async function startNode(dir, env = {}, listen = '127.0.0.1:0') {
  const proc = spawn(BIN, ['serve', '--data-dir', dir, '--listen', listen], {
    env: { ...process.env, MEDMESH_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout });
  const base = await new Promise((resolve, reject) => {
    proc.on('exit', (code) => reject(new Error(`the node exited (${code})`)));
    lines.on('line', (l) => {
      if (l.startsWith('medmesh listening on ')) resolve(l.slice('medmesh listening on '.length).trim());
    });
  });
  for (;;) {
    try {
      if ((await fetch(`${base}/healthz`)).status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { proc, base };
}

// Stops a node started by startNode and waits until it has exited.
export async function stopNode(proc) {
  if (proc.exitCode !== null) return;
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  proc.kill('SIGTERM');
  await exited;
}

// Runs axe-core (WCAG 2.1 A and AA rules) on the page as it is; returns the violations,
// each as "rule: nodes".
export async function accessibilityViolations(page) {
  // Evaluated through the DevTools protocol, not added as a <script>: the pages' CSP (no
  // inline script) would refuse that.
  await page.evaluate(readFileSync(AXE, 'utf8'));
  const result = await page.evaluate(() => globalThis.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  }));
  return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

// RFC 6238 (SHA-1, 6 digits, 30 s), as an authenticator app computes it; `ahead` steps
// later than now (the node accepts one step of skew, and never the same step twice).
export function totp(uri, ahead = 0) {
  const secret = new URL(uri).searchParams.get('secret');
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000) + ahead));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

// Signs `username` in through the login form in a new browser context, enrolling TOTP on an
// admin's first sign-in (the key read off the page); returns the page, on /home.
export async function signIn(browser, base, username, password) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB' });
  const page = await context.newPage();
  await page.goto(`${base}/login`);
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForLoadState();
  if (await page.locator('input[name=code]').count()) {
    const uri = await page.locator('main code').first().textContent();
    await page.fill('input[name=code]', totp(uri));
    await page.click('button[type=submit]');
    await page.waitForLoadState();
    if (page.url().endsWith('/login/code')) await page.getByRole('link', { name: 'Continue' }).click();
  }
  await page.waitForURL('**/home');
  return page;
}

// A JSON call to the node's API with a bearer token; fails the test on an error status.
export async function apiCall(base, token, method, path, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
