// The browser's keys and end-to-end sealed documents, in the same format as the Rust side
// (crates/medmesh-crypto/src/sealing.rs and stream.rs), checked against its vectors in
// Chromium (tests/browser/sealing.test.mjs).
//
// Keys. Each browser keeps an Ed25519 signing key and an X25519 sealing key, both created
// non-extractable in WebCrypto and kept in IndexedDB: the page can sign and unwrap with
// them, but nobody, the node included, can read them out. Their public halves go to the
// node's key directory in statements the signing key signs.
//
// Sealing. A random content key seals the document with STREAM over AES-256-GCM (64 KiB
// chunks; nonce = 7-byte prefix, big-endian 32-bit counter, last-chunk flag) and is wrapped
// for each recipient's sealing key with HPKE (RFC 9180) base mode, DHKEM(X25519,
// HKDF-SHA256), HKDF-SHA256, AES-256-GCM, bound to the document key id. HPKE itself is the
// vendored hpke-js (vendor/README.md); nothing here is a cipher of its own.
//
// Errors are thrown with a `code` the pages turn into their own (translated) words:
// 'no-key' (an owner has no verified sealing key), 'not-holder' (none of this browser's keys
// opens the document), 'unauthentic' (the bytes were altered, cut or are no sealed document),
// 'refused' (the node said no; `status` says how).
import { objectStore } from './common.mjs';
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from './hpke.min.mjs';

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
const utf8 = (s) => new TextEncoder().encode(s);
const INFO = utf8('medmesh-sealed-document v1');
const CONTENT_CONTEXT = utf8('medmesh-sealed-content v1');
const MAGIC = Uint8Array.of(0x6d, 0x6d, 0x62, 0x01);
/** Plaintext bytes per chunk. */
export const CHUNK = 64 * 1024;
const TAG = 16;
const FRAME = CHUNK + TAG;
const HEADER = 4 + 16 + 7;
/** The media type of a sealed document. */
export const SEALED_TYPE = 'application/vnd.medmesh.sealed';

/** An error with a code the page words itself. */
export class SealingError extends Error {
  constructor(code, detail = {}) {
    super(code);
    this.code = code;
    Object.assign(this, detail);
  }
}

export function b64(buf) {
  const bytes = new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
export const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
export const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
export const unhex = (h) => Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));
const instant = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// --- Keys kept in this browser -------------------------------------------------------------

const keyStore = (mode, use) => objectStore('medmesh-keys', 'keys', mode, use);

/** The node's API, signed in by the session cookie and its CSRF token. */
async function api(csrf, path, init = {}) {
  const r = await fetch(path, { ...init, headers: { 'x-csrf-token': csrf, ...(init.headers ?? {}) } });
  if (!r.ok) throw new SealingError('refused', { status: r.status });
  return r;
}

const statement = (owner, kind, key, time) => `medmesh-key v1\nowner ${owner}\nkind ${kind}\nkey ${key}\ntime ${time}\n`;

async function publish(owner, csrf, signer, kind, publicKey) {
  const time = instant();
  const signature = b64(await crypto.subtle.sign({ name: 'Ed25519' }, signer.privateKey, utf8(statement(owner, kind, publicKey, time))));
  await api(csrf, '/api/keys', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ kind, publicKey, time, signature }),
  });
}

/** This browser's Ed25519 signing key for `owner`, made and published on first use. */
export async function signingKey(owner, csrf) {
  const stored = await keyStore('readonly', (s) => s.get(owner));
  if (stored) return stored;
  const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  await publish(owner, csrf, pair, 'signing', b64(await crypto.subtle.exportKey('raw', pair.publicKey)));
  await keyStore('readwrite', (s) => s.put(pair, owner));
  return pair;
}

/** This browser's X25519 sealing key for `owner`, made and published on first use. */
export async function sealingKey(owner, csrf) {
  const id = `sealing ${owner}`;
  const stored = await keyStore('readonly', (s) => s.get(id));
  if (stored) return stored;
  const signer = await signingKey(owner, csrf);
  const pair = await crypto.subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
  await publish(owner, csrf, signer, 'sealing', b64(await crypto.subtle.exportKey('raw', pair.publicKey)));
  await keyStore('readwrite', (s) => s.put(pair, id));
  return pair;
}

/**
 * An owner's live directory keys of the given kinds, each checked here against the owner's
 * signing keys (a signing key against itself), so a key the node made up is left out.
 */
export async function verifiedKeys(owner, kinds, csrf) {
  const listing = await (await api(csrf, `/api/keys?owner=${encodeURIComponent(owner)}`)).json();
  const live = (listing.keys ?? []).filter((k) => k.revoked === false);
  const verifies = async (signer, k) => {
    try {
      const key = await crypto.subtle.importKey('raw', unb64(signer), { name: 'Ed25519' }, false, ['verify']);
      return await crypto.subtle.verify({ name: 'Ed25519' }, key, unb64(k.signature), utf8(statement(owner, k.kind, k.publicKey, k.time)));
    } catch {
      return false;
    }
  };
  const signers = [];
  for (const k of live.filter((k) => k.kind === 'signing')) {
    if (await verifies(k.publicKey, k)) signers.push(k.publicKey);
  }
  const out = [];
  for (const k of live.filter((k) => kinds.includes(k.kind))) {
    for (const s of signers) {
      if (await verifies(s, k)) {
        out.push({ keyId: k.keyId, kind: k.kind, publicKey: k.publicKey });
        break;
      }
    }
  }
  return out;
}

// --- The format ----------------------------------------------------------------------------

/** Wraps a 32-byte content key for a recipient's sealing key, bound to the document. */
export async function wrapFor(publicKey, contentKey, documentKeyId, ephemeralSeed) {
  const params = {
    recipientPublicKey: await suite.kem.deserializePublicKey(unb64(publicKey)),
    info: concat(INFO, documentKeyId),
  };
  // Only the vectors fix the ephemeral key; HPKE draws it otherwise.
  if (ephemeralSeed) params.ekm = await suite.kem.deriveKeyPair(ephemeralSeed);
  const sender = await suite.createSenderContext(params);
  const ciphertext = await sender.seal(contentKey, documentKeyId);
  return `${b64(sender.enc)}.${b64(ciphertext)}`;
}

/** Unwraps a content key wrapped for `pair` (a CryptoKeyPair) and this document. */
export async function unwrap(pair, wrapped, documentKeyId) {
  const [enc, ciphertext] = String(wrapped).split('.');
  try {
    const recipient = await suite.createRecipientContext({ recipientKey: pair, enc: unb64(enc), info: concat(INFO, documentKeyId) });
    const key = new Uint8Array(await recipient.open(unb64(ciphertext), documentKeyId));
    if (key.length === 32) return key;
  } catch {
    // Wrapped for another key or document: the caller tries the next one.
  }
  throw new SealingError('not-holder');
}

function chunkNonce(prefix, counter, last) {
  const nonce = new Uint8Array(12);
  nonce.set(prefix);
  new DataView(nonce.buffer).setUint32(7, counter);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

/** Seals `plain` under the content key: header, then one AES-GCM frame per 64 KiB chunk. */
export async function sealContent(contentKey, documentKeyId, plain, prefix = crypto.getRandomValues(new Uint8Array(7))) {
  const key = await crypto.subtle.importKey('raw', contentKey, 'AES-GCM', false, ['encrypt']);
  const header = concat(MAGIC, documentKeyId, prefix);
  const additionalData = concat(header, CONTENT_CONTEXT);
  // An empty document is one empty last chunk; a full last chunk stays the last.
  const count = Math.max(1, Math.ceil(plain.length / CHUNK));
  const parts = [header];
  for (let i = 0; i < count; i++) {
    const iv = chunkNonce(prefix, i, i === count - 1);
    parts.push(new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData }, key, plain.subarray(i * CHUNK, (i + 1) * CHUNK))));
  }
  return concat(...parts);
}

/** The document key id a sealed document names in its header. */
export function documentKeyIdOf(sealed) {
  if (sealed.length < HEADER || !MAGIC.every((b, i) => sealed[i] === b)) throw new SealingError('unauthentic');
  return sealed.slice(4, 20);
}

/** Opens sealed bytes; any change, reordering or cut fails as 'unauthentic'. */
export async function openContent(contentKey, sealed) {
  documentKeyIdOf(sealed);
  const header = sealed.subarray(0, HEADER);
  const prefix = header.subarray(20, HEADER);
  const additionalData = concat(header, CONTENT_CONTEXT);
  const key = await crypto.subtle.importKey('raw', contentKey, 'AES-GCM', false, ['decrypt']);
  const body = sealed.subarray(HEADER);
  const count = Math.max(1, Math.ceil(body.length / FRAME));
  const parts = [];
  for (let i = 0; i < count; i++) {
    const iv = chunkNonce(prefix, i, i === count - 1);
    try {
      parts.push(new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData }, key, body.subarray(i * FRAME, (i + 1) * FRAME))));
    } catch {
      throw new SealingError('unauthentic');
    }
  }
  return concat(...parts);
}

// --- What the pages do ---------------------------------------------------------------------

/**
 * Seals `plain` for every owner (their sealing and recovery keys): the sealed bytes and the
 * `X-Medmesh-Sealed-Keys` header. An owner without a verified key stops it ('no-key').
 */
export async function sealFor(owners, plain, csrf) {
  const recipients = [];
  for (const owner of new Set(owners)) {
    const keys = await verifiedKeys(owner, ['sealing', 'recovery'], csrf);
    if (keys.length === 0) throw new SealingError('no-key', { owner });
    recipients.push(...keys);
  }
  const contentKey = crypto.getRandomValues(new Uint8Array(32));
  const documentKeyId = crypto.getRandomValues(new Uint8Array(16));
  const wrapped = [];
  for (const r of recipients) wrapped.push(`${r.keyId}:${await wrapFor(r.publicKey, contentKey, documentKeyId)}`);
  return { sealed: await sealContent(contentKey, documentKeyId, plain), sealedKeys: wrapped.join(',') };
}

/** The content key of a stored sealed document, unwrapped with this browser's key. */
async function contentKeyOf(binary, pair, csrf) {
  let mine;
  try {
    mine = await (await api(csrf, `/api/sealed/${encodeURIComponent(binary)}/keys`)).json();
  } catch (e) {
    // The node answers 404 to someone who holds no key, as to someone who cannot see it.
    if (e.status === 404) throw new SealingError('not-holder');
    throw e;
  }
  const documentKeyId = unhex(mine.documentKeyId ?? '');
  for (const k of mine.keys ?? []) {
    try {
      return { documentKeyId, contentKey: await unwrap(pair, k.wrapped, documentKeyId) };
    } catch {
      // Another of this owner's keys (another device's): try the next.
    }
  }
  throw new SealingError('not-holder');
}

/** Downloads a sealed document and opens it in this browser. */
export async function openStored(binary, owner, csrf) {
  const pair = await sealingKey(owner, csrf);
  const { documentKeyId, contentKey } = await contentKeyOf(binary, pair, csrf);
  const sealed = new Uint8Array(await (await api(csrf, `/documents/${encodeURIComponent(binary)}?download=1`)).arrayBuffer());
  if (hex(documentKeyIdOf(sealed)) !== hex(documentKeyId)) throw new SealingError('unauthentic');
  return openContent(contentKey, sealed);
}

/** Shares a sealed document this browser can open with `to` (every verified sealing key). */
export async function shareStored(binary, owner, to, csrf) {
  const pair = await sealingKey(owner, csrf);
  const { documentKeyId, contentKey } = await contentKeyOf(binary, pair, csrf);
  const targets = await verifiedKeys(to, ['sealing'], csrf);
  if (targets.length === 0) throw new SealingError('no-key', { owner: to });
  for (const t of targets) {
    await api(csrf, `/api/sealed/${encodeURIComponent(binary)}/keys`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ recipientKeyId: t.keyId, wrapped: await wrapFor(t.publicKey, contentKey, documentKeyId) }),
    });
  }
  return targets.length;
}

// --- Sealed messages ---------------------------------------------------------------------------

/** Seals a message's text for every owner: the envelope (JSON) the node stores unopened. */
export async function sealEnvelope(owners, text, csrf) {
  const { sealed, sealedKeys } = await sealFor(owners, utf8(text), csrf);
  return JSON.stringify({ sealed: b64(sealed), keys: sealedKeys });
}

/** Opens a sealed message's envelope with this browser's sealing key: its text. */
export async function openEnvelope(owner, envelope, csrf) {
  const pair = await sealingKey(owner, csrf);
  const { sealed, keys } = JSON.parse(envelope);
  const bytes = unb64(sealed);
  const documentKeyId = documentKeyIdOf(bytes);
  for (const entry of String(keys).split(',')) {
    const wrapped = entry.slice(entry.indexOf(':') + 1);
    let contentKey;
    try {
      contentKey = await unwrap(pair, wrapped, documentKeyId);
    } catch {
      continue; // Wrapped for another key (another party's, another device's).
    }
    return new TextDecoder().decode(await openContent(contentKey, bytes));
  }
  throw new SealingError('not-holder');
}
