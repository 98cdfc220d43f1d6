// The signed-upload page (/account/documents). Its messages come from the page (translated).
// This browser's Ed25519 signing key lives in WebCrypto, created non-extractable and kept in
// IndexedDB: the page can sign with it but nobody, the node included, can read it out. Its
// public half is published in the node's key directory in a statement it signs itself.
const vault = document.getElementById('vault');
const OWNER = vault.dataset.owner;
const CSRF = vault.dataset.csrf;
const say = (key, values = {}) => (vault.dataset[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(values[k] ?? ''));
const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)));
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
const text = (s) => new TextEncoder().encode(s);
const instant = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

function keyStore(mode, use) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open('medmesh-keys', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('keys');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const req = use(open.result.transaction('keys', mode).objectStore('keys'));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    };
  });
}

async function signingKey() {
  const stored = await keyStore('readonly', (s) => s.get(OWNER));
  if (stored) return stored;
  const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  const publicKey = b64(await crypto.subtle.exportKey('raw', pair.publicKey));
  const time = instant();
  const statement = `medmesh-key v1\nowner ${OWNER}\nkind signing\nkey ${publicKey}\ntime ${time}\n`;
  const signature = b64(await crypto.subtle.sign({ name: 'Ed25519' }, pair.privateKey, text(statement)));
  const r = await fetch('/api/keys', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-csrf-token': CSRF },
    body: JSON.stringify({ kind: 'signing', publicKey, time, signature }),
  });
  if (!r.ok) throw new Error(`the node refused this browser's key (${r.status})`);
  await keyStore('readwrite', (s) => s.put(pair, OWNER));
  return pair;
}

async function showKey() {
  const status = document.getElementById('key-status');
  try {
    const pair = await signingKey();
    const publicKey = b64(await crypto.subtle.exportKey('raw', pair.publicKey));
    status.dataset.publicKey = publicKey;
    status.dataset.extractable = String(pair.privateKey.extractable);
    status.textContent = say('msgKeyReady', { owner: OWNER, key: publicKey });
  } catch (e) {
    status.textContent = say('msgNoKey', { error: e.message });
  }
}

document.getElementById('upload').addEventListener('submit', async (event) => {
  event.preventDefault();
  const out = document.getElementById('result');
  try {
    const file = document.getElementById('file').files[0];
    if (!file) throw new Error('choose a file');
    const pair = await signingKey();
    const bytes = await file.arrayBuffer();
    const sha256 = hex(await crypto.subtle.digest('SHA-256', bytes));
    const patient = document.getElementById('patient').value.trim();
    const type = document.getElementById('doctype').value.trim();
    const time = instant();
    const device = `browser: ${navigator.userAgent}`.replace(/[^\x20-\x7e]/g, ' ').slice(0, 200);
    const claims = `medmesh-upload v1\nsha256 ${sha256}\nauthor ${OWNER}\npatient Patient/${patient}\ntime ${time}\ndevice ${device}\ntype ${type}\n`;
    const signature = b64(await crypto.subtle.sign({ name: 'Ed25519' }, pair.privateKey, text(claims)));
    const headers = {
      'x-csrf-token': CSRF,
      'content-type': file.type || 'application/octet-stream',
      'x-security-context': `Patient/${patient}`,
      'x-medmesh-document-type': type,
      'x-medmesh-signature': signature,
      'x-medmesh-signing-key': b64(await crypto.subtle.exportKey('raw', pair.publicKey)),
      'x-medmesh-signed-at': time,
      'x-medmesh-device': device,
    };
    const title = document.getElementById('title').value.trim();
    if (title) headers['x-medmesh-title'] = title;
    const r = await fetch('/fhir/Binary', { method: 'POST', headers, body: bytes });
    const body = await r.json();
    if (!r.ok) throw new Error((body.issue && body.issue[0] && body.issue[0].diagnostics) || String(r.status));
    out.dataset.binary = body.id;
    out.textContent = say('msgUploaded', { id: body.id });
  } catch (e) {
    out.textContent = say('msgFailed', { error: e.message });
  }
});

showKey();
