// Signed uploads from the browser: the page at /account/documents keeps an Ed25519 key in
// WebCrypto, non-extractable, in IndexedDB; publishes it in the node's key directory; and
// signs an upload that the node verifies and `medmesh doc verify` checks again. Real
// binary, real Debian chromium (playwright-core), loopback only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const BIN = process.env.MEDMESH_BIN ?? 'target/debug/medmesh';
const CHROMIUM = process.env.MEDMESH_CHROMIUM ?? '/usr/bin/chromium';
const PASSWORD = 'a long enough passphrase';

function cli(dir, args, input, env = {}) {
  const out = spawnSync(BIN, args, {
    input,
    encoding: 'utf8',
    env: { ...process.env, MEDMESH_LOG: 'warn', MEDMESH_DATA_DIR: dir, ...env },
  });
  assert.equal(out.status, 0, `medmesh ${args.join(' ')}: ${out.stderr}`);
  return out.stdout.trim();
}

async function startNode(dir) {
  const proc = spawn(BIN, ['serve', '--data-dir', dir, '--listen', '127.0.0.1:0'], {
    env: { ...process.env, MEDMESH_LOG: 'warn' },
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

const launch = (profile) =>
  chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });

test('the browser signs uploads with a key it cannot export', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-browser-'));
  const profile = mkdtempSync(join(tmpdir(), 'medmesh-chromium-'));
  const { proc, base } = await startNode(dir);
  let context;
  try {
    const token = cli(dir, ['admin', 'token', '--scope', 'system/*.*']);
    const api = (path, init = {}) =>
      fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) } });
    const put = await api('/fhir/Patient/pat', {
      method: 'PUT',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Patient', id: 'pat' }),
    });
    assert.ok(put.ok, `PUT Patient: ${put.status}`);
    cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'pat', '--patient', 'pat'], `${PASSWORD}\n`);

    context = await launch(profile);
    let page = await context.newPage();
    await page.goto(`${base}/login?next=/account/documents`);
    await page.fill('input[name=username]', 'pat');
    await page.fill('input[name=password]', PASSWORD);
    await Promise.all([page.waitForURL('**/account/documents'), page.click('button[type=submit]')]);
    const status = page.locator('#key-status[data-public-key]');
    await status.waitFor();
    const publicKey = await status.getAttribute('data-public-key');
    assert.equal(await status.getAttribute('data-extractable'), 'false');

    // The private key stored in IndexedDB cannot be read out of WebCrypto.
    const exported = await page.evaluate(async () => {
      const pair = await new Promise((resolve, reject) => {
        const open = indexedDB.open('medmesh-keys', 1);
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const req = open.result.transaction('keys').objectStore('keys').get('Patient/pat');
          req.onsuccess = () => resolve(req.result);
        };
      });
      try {
        await crypto.subtle.exportKey('pkcs8', pair.privateKey);
        return 'exported';
      } catch (e) {
        return e.name;
      }
    });
    assert.equal(exported, 'InvalidAccessError');

    // It is published in the directory, in a statement it signed itself.
    const listing = await (await api('/api/keys?owner=Patient/pat')).json();
    assert.deepEqual(listing.keys.map((k) => [k.kind, k.publicKey]), [['signing', publicKey]]);

    // The session cookie alone does not reach the API: the CSRF header is required.
    const refused = await page.evaluate(async () => (await fetch('/api/keys?owner=Patient/pat')).status);
    assert.equal(refused, 403);

    // A signed upload from the page.
    await page.fill('#title', 'Blood pressure diary');
    await page.setInputFiles('#file', {
      name: 'diary.txt',
      mimeType: 'text/plain',
      buffer: Buffer.from('2026-11-30 128/82\n2026-12-01 131/85\n'),
    });
    await page.click('#upload button[type=submit]');
    const result = page.locator('#result[data-binary]');
    await result.waitFor();
    const binary = await result.getAttribute('data-binary');
    const bundle = await (await api(`/fhir/Provenance?target=Binary/${binary}`)).json();
    const provenance = bundle.entry[0].resource;
    assert.equal(provenance.signature[0].who.reference, 'Patient/pat');
    assert.equal(provenance.signature[0].extension[0].valueBase64Binary, publicKey);
    const verified = cli(dir, ['doc', 'verify', binary], undefined, { MEDMESH_TOKEN: token, MEDMESH_NODE: base });
    assert.match(verified, /^verified: Patient\/pat signed/);

    // The key survives the browser's restart, and is not registered twice.
    await context.close();
    context = await launch(profile);
    page = await context.newPage();
    await page.goto(`${base}/account/documents`);
    const again = page.locator('#key-status[data-public-key]');
    await again.waitFor();
    assert.equal(await again.getAttribute('data-public-key'), publicKey);
    const after = await (await api('/api/keys?owner=Patient/pat')).json();
    assert.equal(after.keys.length, 1);
  } finally {
    if (context) await context.close();
    proc.kill();
    rmSync(dir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
});
