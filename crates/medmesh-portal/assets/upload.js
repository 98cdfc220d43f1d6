// The signed upload page (/account/documents), an ES module. Its messages come from the page
// (translated). The browser's keys (sealing.mjs) are made and published on first visit, so
// others can seal documents for this user from then on. A document is signed here; sealed
// end to end first when the box is ticked, for the patient, the uploader and the chosen
// practitioners.
import { messagesOf } from './common.mjs';
import { SEALED_TYPE, SealingError, b64, hex, sealFor, sealingKey, signingKey } from './sealing.mjs';

const vault = document.getElementById('vault');
const OWNER = vault.dataset.owner;
const CSRF = vault.dataset.csrf;
/** Sealing holds the whole document in memory; larger ones go through `medmesh doc seal`. */
const SEAL_LIMIT = 100 * 1024 * 1024;
const say = messagesOf(vault);
const text = (s) => new TextEncoder().encode(s);
const instant = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

function why(e) {
  if (e instanceof SealingError) {
    if (e.code === 'no-key') return say('msgNoRecipientKey', { owner: vault.querySelector(`[value="${CSS.escape(e.owner)}"]`)?.dataset.name ?? e.owner });
    if (e.code === 'refused') return say('msgRefused', { status: e.status });
  }
  return e.message;
}

async function showKey() {
  const status = document.getElementById('key-status');
  try {
    const pair = await signingKey(OWNER, CSRF);
    await sealingKey(OWNER, CSRF);
    const publicKey = b64(await crypto.subtle.exportKey('raw', pair.publicKey));
    status.dataset.publicKey = publicKey;
    status.dataset.extractable = String(pair.privateKey.extractable);
    status.textContent = say('msgKeyReady', { owner: OWNER, key: publicKey });
  } catch (e) {
    status.textContent = say('msgNoKey', { error: why(e) });
  }
}

const sealBox = document.getElementById('seal');
const recipients = document.getElementById('recipients');
const showRecipients = () => { recipients.hidden = !sealBox.checked; };
sealBox.addEventListener('change', showRecipients);
showRecipients();

document.getElementById('upload').addEventListener('submit', async (event) => {
  event.preventDefault();
  const out = document.getElementById('result');
  out.textContent = say('msgWorking');
  try {
    const file = document.getElementById('file').files[0];
    if (!file) throw new Error(say('msgChooseFile'));
    const pair = await signingKey(OWNER, CSRF);
    const patient = document.getElementById('patient').value.trim();
    const type = document.getElementById('doctype').value.trim();
    // Refused before it is read: sealing would hold it all in memory.
    if (sealBox.checked && file.size > SEAL_LIMIT) throw new Error(say('msgTooLarge'));
    let bytes = new Uint8Array(await file.arrayBuffer());
    let contentType = file.type || 'application/octet-stream';
    const headers = { 'x-csrf-token': CSRF };
    if (sealBox.checked) {
      await sealingKey(OWNER, CSRF);
      const chosen = [...recipients.querySelectorAll('input:checked')].map((i) => i.value);
      const { sealed, sealedKeys } = await sealFor([OWNER, `Patient/${patient}`, ...chosen], bytes, CSRF);
      bytes = sealed;
      contentType = SEALED_TYPE;
      headers['x-medmesh-sealed-keys'] = sealedKeys;
    }
    const sha256 = hex(await crypto.subtle.digest('SHA-256', bytes));
    const time = instant();
    const device = `browser: ${navigator.userAgent}`.replace(/[^\x20-\x7e]/g, ' ').slice(0, 200);
    const claims = `medmesh-upload v1\nsha256 ${sha256}\nauthor ${OWNER}\npatient Patient/${patient}\ntime ${time}\ndevice ${device}\ntype ${type}\n`;
    const signature = b64(await crypto.subtle.sign({ name: 'Ed25519' }, pair.privateKey, text(claims)));
    Object.assign(headers, {
      'content-type': contentType,
      'x-security-context': `Patient/${patient}`,
      'x-medmesh-document-type': type,
      'x-medmesh-signature': signature,
      'x-medmesh-signing-key': b64(await crypto.subtle.exportKey('raw', pair.publicKey)),
      'x-medmesh-signed-at': time,
      'x-medmesh-device': device,
    });
    const title = document.getElementById('title').value.trim();
    if (title) headers['x-medmesh-title'] = title;
    const r = await fetch('/fhir/Binary', { method: 'POST', headers, body: bytes });
    const body = await r.json();
    if (!r.ok) throw new Error((body.issue && body.issue[0] && body.issue[0].diagnostics) || String(r.status));
    out.dataset.binary = body.id;
    out.textContent = say(sealBox.checked ? 'msgSealed' : 'msgUploaded', { id: body.id });
  } catch (e) {
    out.textContent = say('msgFailed', { error: why(e) });
  }
});

showKey();
