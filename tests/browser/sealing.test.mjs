// The browser's sealed-document format against the Rust implementation's vectors
// (crates/medmesh-crypto/vectors/sealed-documents.json): in Debian chromium, the portal's own
// module (/static/sealing.mjs, over the vendored hpke-js) must, from the same inputs, wrap
// the content key and seal the content to the very bytes the Rust side made, and open them
// back; and must refuse what was altered, cut short, or wrapped for another document.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchPersistent, startNode, stopNode } from './harness.mjs';

const VECTORS = JSON.parse(readFileSync(
  new URL('../../crates/medmesh-crypto/vectors/sealed-documents.json', import.meta.url), 'utf8'));

test('the browser seals and opens exactly as the Rust side does', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-browser-'));
  const profile = mkdtempSync(join(tmpdir(), 'medmesh-chromium-'));
  const { proc, base } = await startNode(dir);
  let context;
  try {
    context = await launchPersistent(profile);
    const page = await context.newPage();
    await page.goto(`${base}/login`);
    const results = await page.evaluate(async (vectors) => {
      const s = await import('/static/sealing.mjs');
      const { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256, Aes256Gcm } = await import('/static/hpke.min.mjs');
      const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
      const sha = async (b) => s.hex(await crypto.subtle.digest('SHA-256', b));
      const failsWith = async (f) => {
        try {
          await f();
          return 'opened';
        } catch (e) {
          return e.code ?? e.message;
        }
      };
      // The recipient's key pair from its seed, by HPKE's DeriveKeyPair, as the Rust key file does.
      const recipient = await suite.kem.deriveKeyPair(s.unb64(vectors.recipientSeed));
      const out = {
        recipientPublicKey: s.b64(await crypto.subtle.exportKey('raw', recipient.publicKey)),
        cases: [],
      };
      for (const c of vectors.cases) {
        const plain = Uint8Array.from({ length: c.length }, (_, i) => (7 * i + 3) & 0xff);
        const documentKeyId = s.unhex(c.documentKeyId);
        const contentKey = s.unb64(c.contentKey);
        const wrapped = await s.wrapFor(vectors.recipientPublicKey, contentKey, documentKeyId, s.unb64(c.ephemeralSeed));
        const sealed = await s.sealContent(contentKey, documentKeyId, plain, s.unb64(c.noncePrefix));
        const unwrapped = await s.unwrap(recipient, c.wrapped, documentKeyId);
        const opened = await s.openContent(unwrapped, sealed);
        const flipped = sealed.slice();
        flipped[flipped.length - 1] ^= 1;
        const otherDocument = documentKeyId.slice();
        otherDocument[0] ^= 1;
        out.cases.push({
          wrapped,
          sealedLength: sealed.length,
          sealedSha256: await sha(sealed),
          headerNamesDocument: s.hex(s.documentKeyIdOf(sealed)) === c.documentKeyId,
          opensToPlain: opened.length === plain.length && opened.every((b, i) => b === plain[i]),
          flipped: await failsWith(() => s.openContent(unwrapped, flipped)),
          // Cut at the last frame's start (or by a byte): what remains, whole frames
          // included, must not pass for a whole document.
          cut: await failsWith(() => s.openContent(unwrapped, sealed.subarray(0, sealed.length > 27 + 65552 ? 27 + 65552 : sealed.length - 1))),
          wrongDocument: await failsWith(() => s.unwrap(recipient, c.wrapped, otherDocument)),
        });
      }
      return out;
    }, VECTORS);

    assert.equal(results.recipientPublicKey, VECTORS.recipientPublicKey, 'DeriveKeyPair agrees');
    VECTORS.cases.forEach((c, i) => {
      const got = results.cases[i];
      const name = `the ${c.length}-byte document`;
      assert.equal(got.wrapped, c.wrapped, `${name}: the wrapped key is the Rust side's`);
      assert.equal(got.sealedLength, c.sealedLength, `${name}: the sealed length`);
      assert.equal(got.sealedSha256, c.sealedSha256, `${name}: the sealed bytes are the Rust side's`);
      assert.ok(got.headerNamesDocument, `${name}: the header names the document`);
      assert.ok(got.opensToPlain, `${name}: opens to the plaintext`);
      assert.equal(got.flipped, 'unauthentic', `${name}: a flipped bit fails`);
      assert.equal(got.cut, 'unauthentic', `${name}: a cut document fails`);
      assert.equal(got.wrongDocument, 'not-holder', `${name}: a wrap for another document fails`);
    });
  } finally {
    if (context) await context.close();
    await stopNode(proc);
    rmSync(dir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
});
