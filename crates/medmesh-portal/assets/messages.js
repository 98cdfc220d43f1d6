// Secure messages (/messages, /messages/{id}), an ES module. The node's stream
// (/messages/live) says which thread changed, never what was written; the page then reads
// itself again and swaps its live region. In a sealed thread every message is sealed here,
// for each person in the thread (their keys from the key directory, checked against their
// signing keys), and opened here with this browser's own key: the node stores envelopes it
// cannot open.
import { SealingError, openEnvelope, sealEnvelope, sealingKey } from './sealing.mjs';

const root = document.getElementById('messages-root');
const { csrf: CSRF, thread: THREAD, owner: OWNER } = root.dataset;
const SEALED = root.dataset.sealed === 'true';
const status = document.getElementById('messages-status');

function say(text) {
  status.replaceChildren();
  const p = document.createElement('p');
  p.className = 'error';
  p.setAttribute('role', 'alert');
  p.textContent = text;
  status.append(p);
}

async function openAll() {
  if (!SEALED) return;
  for (const el of document.querySelectorAll('[data-envelope]:not([data-opened])')) {
    try {
      el.textContent = await openEnvelope(OWNER, el.dataset.envelope, CSRF);
      el.dataset.opened = 'yes';
    } catch (e) {
      el.textContent = root.dataset.msgNotHolder;
      el.dataset.opened = 'no';
    }
  }
}

let refreshing = null;
async function refresh() {
  // One read at a time; an event during a read asks for one more after it.
  if (refreshing) {
    refreshing.again = true;
    return;
  }
  refreshing = { again: false };
  try {
    const r = await fetch(location.pathname, { headers: { accept: 'text/html' } });
    if (r.ok) {
      const fresh = new DOMParser().parseFromString(await r.text(), 'text/html').getElementById('live-region');
      if (fresh) document.getElementById('live-region').replaceChildren(...fresh.childNodes);
      await openAll();
    }
  } finally {
    const again = refreshing.again;
    refreshing = null;
    if (again) refresh();
  }
}

const source = new EventSource('/messages/live');
const changed = (e) => {
  if (!THREAD || e.data === THREAD) refresh();
};
source.addEventListener('message', changed);
source.addEventListener('read', changed);
source.addEventListener('resync', () => refresh());

if (SEALED && THREAD) {
  // This browser's key, made and published on first use, so the others can seal for it.
  sealingKey(OWNER, CSRF).then(openAll, () => openAll());
  const form = document.getElementById('send');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = form.elements.text.value;
    if (!text.trim()) return;
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const people = JSON.parse(root.dataset.people);
      const envelope = await sealEnvelope(people, text, CSRF);
      const r = await fetch(`/api/messages/threads/${encodeURIComponent(THREAD)}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-csrf-token': CSRF },
        body: JSON.stringify({ sealed: envelope }),
      });
      if (!r.ok) throw new SealingError('refused', { status: r.status });
      form.elements.text.value = '';
      status.replaceChildren();
      await refresh();
    } catch (e) {
      if (e instanceof SealingError && e.code === 'no-key') {
        const name = JSON.parse(root.dataset.names)[e.owner] ?? e.owner;
        say(root.dataset.msgNoKey.replace('{owner}', name));
      } else {
        say(root.dataset.msgFailed);
      }
    } finally {
      button.disabled = false;
    }
  });
}
