// A SMART app running in the browser on another origin: its page calls the node's discovery
// document and FHIR API with a bearer token. Allowed origins get CORS; others are blocked by
// the browser itself. Real binary, real Debian chromium (playwright-core), loopback only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const BIN = process.env.MEDMESH_BIN ?? 'target/debug/medmesh';
const CHROMIUM = process.env.MEDMESH_CHROMIUM ?? '/usr/bin/chromium';

// The app's page: a script (served as a file, not inline) that calls the node.
const APP_PAGE = '<!doctype html><html lang="en"><title>app</title><script src="/app.js"></script></html>';
const APP_JS = `
window.callNode = async (node, token) => {
  const out = {};
  try {
    const d = await fetch(node + '/.well-known/smart-configuration');
    out.discovery = (await d.json()).token_endpoint ? 'ok' : 'empty';
  } catch (e) { out.discovery = 'blocked'; }
  try {
    const r = await fetch(node + '/fhir/Patient', {
      method: 'POST',
      headers: { authorization: 'Bearer ' + token, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Cors' }] }),
    });
    out.create = r.status;
    out.location = r.headers.get('location') ? 'exposed' : 'hidden';
  } catch (e) { out.create = 'blocked'; }
  return out;
};`;

function serveApp() {
  return new Promise((resolve) => {
    const server = createServer((req, res) => {
      if (req.url === '/app.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        res.end(APP_JS);
      } else {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end(APP_PAGE);
      }
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function startNode(dir, env) {
  const proc = spawn(BIN, ['serve', '--data-dir', dir, '--listen', '127.0.0.1:0'], {
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

test('a browser app on an allowed origin calls the FHIR API; another origin is blocked', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-cors-'));
  const allowed = await serveApp();
  const other = await serveApp();
  const allowedOrigin = `http://127.0.0.1:${allowed.address().port}`;
  const otherOrigin = `http://localhost:${other.address().port}`;
  const { proc, base } = await startNode(dir, { MEDMESH_CORS_ALLOWED_ORIGINS: allowedOrigin });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const out = spawnSync(BIN, ['admin', 'token', '--scope', 'system/*.*'], {
      encoding: 'utf8',
      env: { ...process.env, MEDMESH_LOG: 'warn', MEDMESH_DATA_DIR: dir },
    });
    assert.equal(out.status, 0, out.stderr);
    const token = out.stdout.trim();

    const page = await browser.newPage();
    await page.goto(`${allowedOrigin}/`);
    const ok = await page.evaluate(([n, t]) => window.callNode(n, t), [base, token]);
    assert.deepEqual(ok, { discovery: 'ok', create: 201, location: 'exposed' });

    const elsewhere = await browser.newPage();
    await elsewhere.goto(`${otherOrigin}/`);
    const blocked = await elsewhere.evaluate(([n, t]) => window.callNode(n, t), [base, token]);
    assert.deepEqual(blocked, { discovery: 'blocked', create: 'blocked' });
  } finally {
    await browser.close();
    proc.kill('SIGTERM');
    allowed.close();
    other.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
