// The prescriber's signature (/prescriptions/{id}/sign), an ES module. The exact text to
// sign comes from the page; this browser's Ed25519 key (sealing.mjs: made and published in
// the key directory on first use, never leaving the browser) signs it, and the node checks
// the signature against the directory before it makes the prescription active.
import { messagesOf } from './common.mjs';
import { b64, signingKey } from './sealing.mjs';

const box = document.getElementById('sign');
const say = messagesOf(box);
const out = document.getElementById('sign-result');

document.getElementById('sign-button').addEventListener('click', async () => {
  out.textContent = say('msgWorking');
  try {
    const { id, version, owner, csrf, text } = box.dataset;
    const pair = await signingKey(owner, csrf);
    const time = text.split('\n').find((l) => l.startsWith('time '))?.slice(5);
    const signature = b64(await crypto.subtle.sign({ name: 'Ed25519' }, pair.privateKey, new TextEncoder().encode(text)));
    const key = b64(await crypto.subtle.exportKey('raw', pair.publicKey));
    const r = await fetch(`/api/prescriptions/${encodeURIComponent(id)}/activate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify({ version: Number(version), time, signature, key }),
    });
    const answer = await r.json().catch(() => ({}));
    if (r.ok) {
      out.textContent = say('msgDone');
      document.getElementById('sign-button').disabled = true;
      document.getElementById('print-link').hidden = false;
    } else {
      const why = (answer.issue ?? []).map((i) => i.diagnostics).filter(Boolean).join('; ');
      out.textContent = `${say('msgRefused')} ${why}`.trim();
    }
  } catch (e) {
    out.textContent = `${say('msgRefused')} ${e.message}`;
  }
});
