// A SMART app running in the browser on another origin: its page calls the node's discovery
// document and FHIR API with a bearer token. Allowed origins get CORS; others are blocked by
// the browser itself. Real binary, real Debian chromium (playwright-core), loopback only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, cli, startNode } from './harness.mjs';


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
    args: CHROMIUM_ARGS,
  });
  try {
    const token = cli(dir, ['admin', 'token', '--scope', 'system/*.*']);

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
