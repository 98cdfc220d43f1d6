// A sealed document's page (/documents/{binary}/sealed), an ES module: opens the document in
// this browser with its own sealing key and shows it in place, and shares it further. Its
// messages come from the page (translated). What is shown in place is decided from the
// opened bytes themselves: a PDF, a raster image or UTF-8 text; anything else can only be
// saved, so nothing opened here ever runs as a page of the node's origin.
import { messagesOf } from './common.mjs';
import { SealingError, openStored, shareStored } from './sealing.mjs';

const root = document.getElementById('sealed');
const { binary: BINARY, owner: OWNER, csrf: CSRF } = root.dataset;
const say = messagesOf(root);

function why(e) {
  if (e instanceof SealingError) {
    if (e.code === 'not-holder') return say('msgNotHolder');
    if (e.code === 'unauthentic') return say('msgUnauthentic');
    if (e.code === 'no-key') return say('msgNoKey', { owner: document.querySelector(`option[value="${CSS.escape(e.owner)}"]`)?.textContent ?? e.owner });
    if (e.code === 'refused') return say('msgRefused', { status: e.status });
  }
  return e.message;
}

const starts = (bytes, ...magic) => magic.every((b, i) => b === null || bytes[i] === b);

/** What the opened bytes are, from their first bytes: a type safe to show in place, or null. */
function kindOf(bytes) {
  if (starts(bytes, 0x25, 0x50, 0x44, 0x46, 0x2d)) return { show: 'pdf', type: 'application/pdf' };
  if (starts(bytes, 0x89, 0x50, 0x4e, 0x47)) return { show: 'image', type: 'image/png' };
  if (starts(bytes, 0xff, 0xd8, 0xff)) return { show: 'image', type: 'image/jpeg' };
  if (starts(bytes, 0x47, 0x49, 0x46, 0x38)) return { show: 'image', type: 'image/gif' };
  if (starts(bytes, 0x52, 0x49, 0x46, 0x46, null, null, null, null, 0x57, 0x45, 0x42, 0x50)) return { show: 'image', type: 'image/webp' };
  if (!bytes.includes(0)) {
    try {
      return { show: 'text', text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
    } catch {
      // Not text: saved only.
    }
  }
  return null;
}

let shownUrl = null;

document.getElementById('open').addEventListener('click', async () => {
  const status = document.getElementById('open-status');
  const opened = document.getElementById('opened');
  status.dataset.state = 'opening';
  status.textContent = say('msgOpening');
  opened.hidden = true;
  if (shownUrl) URL.revokeObjectURL(shownUrl);
  try {
    const plain = await openStored(BINARY, OWNER, CSRF);
    const kind = kindOf(plain);
    shownUrl = URL.createObjectURL(new Blob([plain], { type: kind?.type ?? 'application/octet-stream' }));
    document.getElementById('save').href = shownUrl;
    for (const id of ['opened-text', 'opened-image', 'opened-pdf']) document.getElementById(id).hidden = true;
    if (kind?.show === 'text') {
      const pre = document.getElementById('opened-text');
      pre.textContent = kind.text;
      pre.hidden = false;
    } else if (kind?.show === 'image') {
      const img = document.getElementById('opened-image');
      img.src = shownUrl;
      img.hidden = false;
    } else if (kind?.show === 'pdf') {
      const frame = document.getElementById('opened-pdf');
      frame.src = shownUrl;
      frame.hidden = false;
    }
    opened.hidden = false;
    status.dataset.state = 'opened';
    status.textContent = say('msgOpened');
  } catch (e) {
    status.dataset.state = 'failed';
    status.textContent = why(e);
  }
});

document.getElementById('share')?.addEventListener('submit', async (event) => {
  event.preventDefault();
  const status = document.getElementById('share-status');
  const select = document.getElementById('share-to');
  const name = select.selectedOptions[0]?.textContent ?? select.value;
  status.dataset.state = 'sharing';
  status.textContent = say('msgSharing');
  try {
    const count = await shareStored(BINARY, OWNER, select.value, CSRF);
    // The patient's list of holders is the node's: show it again, with the new holder.
    if (document.getElementById('holders-h')) {
      window.location.assign(`/documents/${encodeURIComponent(BINARY)}/sealed?shared=1`);
      return;
    }
    status.dataset.state = 'shared';
    status.textContent = say('msgShared', { count, name });
  } catch (e) {
    status.dataset.state = 'failed';
    status.textContent = why(e);
  }
});
