// Signed and sealed uploads from the browser: the page at /account/documents keeps an Ed25519
// and an X25519 key in WebCrypto, non-extractable, in IndexedDB; publishes them in the node's
// key directory; signs an upload that the node verifies and `medmesh doc verify` checks
// again; and seals a document that `medmesh doc open` opens, as the browser opens one the CLI
// sealed. Real binary, real Debian chromium (playwright-core), loopback only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, launchPersistent as launch, startNode } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';

test('the browser signs uploads with a key it cannot export, and seals what the CLI opens', async () => {
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

    // It is published in the directory, in a statement it signed itself, with the browser's
    // sealing key.
    const listing = await (await api('/api/keys?owner=Patient/pat')).json();
    assert.deepEqual(listing.keys.map((k) => k.kind).sort(), ['sealing', 'signing']);
    assert.equal(listing.keys.find((k) => k.kind === 'signing').publicKey, publicKey);

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
    assert.equal(after.keys.length, 2);

    // The patient's CLI keys (a key file and a recovery key) beside the browser's.
    const patient = { MEDMESH_NODE: base, MEDMESH_TOKEN: cli(dir, ['admin', 'token', '--scope', 'patient/*.*', '--user', 'pat']) };
    const keyFile = join(dir, 'pat.key');
    const recoveryFile = join(dir, 'pat.recovery');
    cli(dir, ['doc', 'keygen', '--key-file', keyFile, '--owner', 'Patient/pat', '--recovery-file', recoveryFile]);
    cli(dir, ['doc', 'register', '--key-file', keyFile, '--recovery-file', recoveryFile], undefined, patient);

    // Sealed in the browser, opened by the CLI with either key.
    await page.fill('#title', 'Sealed diary');
    await page.check('#seal');
    assert.match(await page.locator('#recipients').textContent(), /for you alone/);
    await page.setInputFiles('#file', { name: 'sealed.txt', mimeType: 'text/plain', buffer: Buffer.from('only for me and my devices\n') });
    await page.click('#upload button[type=submit]');
    await page.locator('#result[data-binary]').waitFor();
    assert.match(await page.locator('#result').textContent(), /^Sealed, signed and uploaded/);
    const sealedBinary = await page.locator('#result').getAttribute('data-binary');
    const raw = Buffer.from(await (await api(`/fhir/Binary/${sealedBinary}`)).arrayBuffer());
    assert.ok(!raw.includes('only for me'), 'the node holds ciphertext');
    for (const [key, out] of [[keyFile, 'opened.txt'], [recoveryFile, 'recovered.txt']]) {
      cli(dir, ['doc', 'open', '--key-file', key, sealedBinary, '--out', join(dir, out)], undefined, patient);
      assert.equal(readFileSync(join(dir, out), 'utf8'), 'only for me and my devices\n');
    }
    assert.match(cli(dir, ['doc', 'verify', sealedBinary], undefined, patient), /^verified: Patient\/pat signed/);

    // Sealed by the CLI (for every sealing key of the patient's, the browser's included),
    // opened in the browser, in place.
    writeFileSync(join(dir, 'cli.txt'), 'sealed on the command line\n');
    const cliBinary = cli(dir, ['doc', 'seal', '--key-file', keyFile, '--patient', 'pat', '--title', 'From the CLI', join(dir, 'cli.txt')], undefined, patient);
    await page.goto(`${base}/documents/${cliBinary}/sealed`);
    await page.click('#open');
    const opened = page.locator('#open-status:not([data-state=opening])');
    await opened.waitFor();
    assert.equal(await opened.getAttribute('data-state'), 'opened', await opened.textContent());
    assert.equal(await page.locator('#opened-text').textContent(), 'sealed on the command line\n');
  } finally {
    if (context) await context.close();
    proc.kill();
    rmSync(dir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
});
