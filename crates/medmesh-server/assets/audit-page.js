// The access-log page (/account/audit): fetches the patient's whole log, proves it complete
// with audit-verify.js, and remembers in IndexedDB the checkpoint it verified, so that the
// next visit can prove the node only added to the log since. "Verified" is shown only when
// every check passed; the entries are listed either way, marked unverified.
import { verifyPatientLog } from './audit-verify.js';

const root = document.getElementById('access-log');
const PATIENT = root.dataset.patient;
const CSRF = root.dataset.csrf;
const SERVED_KEY = root.dataset.logKey;
const status = document.getElementById('verify-status');
const table = document.getElementById('entries');
const PAGE = 500;

function store(mode, use) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open('medmesh-audit', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('checkpoints');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const req = use(open.result.transaction('checkpoints', mode).objectStore('checkpoints'));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    };
  });
}

async function api(path) {
  const r = await fetch(path, { headers: { 'x-csrf-token': CSRF }, credentials: 'same-origin' });
  if (!r.ok) throw new Error(`the node answered ${r.status}`);
  return r.json();
}

const sizeOf = (checkpoint) => Number(checkpoint.split('\n')[1]);

function show(state, message) {
  status.dataset.state = state;
  status.textContent = message;
  status.className = state === 'verified' ? '' : 'error';
}

function cell(row, value) {
  const td = document.createElement('td');
  td.textContent = value;
  row.append(td);
}

function render(entries, verified) {
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const { index, entry } of entries) {
    const row = document.createElement('tr');
    row.dataset.index = String(index);
    if (!verified) row.dataset.unverified = 'true';
    const when = entry?.time_micros ? new Date(entry.time_micros / 1000).toLocaleString() : '';
    cell(row, when);
    cell(row, entry?.actor ?? '');
    const what = [entry?.action, ...(entry?.resource_ids ?? []).slice(0, 3)].filter(Boolean).join(' ');
    cell(row, entry?.outcome && entry.outcome !== 'Success' ? `${what} (${entry.outcome.toLowerCase()})` : what);
    cell(row, [entry?.purpose, ...(entry?.basis ?? [])].filter(Boolean).join(', ') || 'your own access, or the node');
    body.append(row);
  }
  table.hidden = false;
}

async function run() {
  const kept = (await store('readonly', (s) => s.get(PATIENT))) ?? null;
  const logKey = kept?.logKey ?? SERVED_KEY;
  const base = `/api/patients/${encodeURIComponent(PATIENT)}/audit`;
  const first = await api(`${base}?_count=${PAGE}`);
  if (!first.checkpoint) {
    show('verified', 'Nothing has been logged yet.');
    return;
  }
  const pages = [first];
  for (let next = first.nextBefore; next != null;) {
    const page = await api(`${base}?_count=${PAGE}&before=${next}&checkpoint=${first.treeSize}`);
    pages.push(page);
    next = page.nextBefore;
  }
  let consistency = null;
  const old = kept?.remembered ? sizeOf(kept.remembered.checkpoint) : 0;
  if (old > 0 && old < first.treeSize) {
    consistency = (await api(`/api/audit/consistency?from=${old}&to=${first.treeSize}`)).proof;
  }
  const result = await verifyPatientLog({
    logKey, patient: PATIENT, pages, remembered: kept?.remembered ?? null, consistency,
  });
  if (logKey !== SERVED_KEY) {
    show('failed', 'Not verified: the node now signs its log with another key than at your last visit.');
    render(pages.flatMap((p) => p.entries), false);
    return;
  }
  if (!result.ok) {
    status.dataset.code = result.code;
    show('failed', `Not verified: ${result.message}. Tell the node's operator or your care team.`);
    render(pages.flatMap((p) => p.entries), false);
    return;
  }
  await store('readwrite', (s) => s.put({ logKey, remembered: result.remember }, PATIENT));
  const asOf = new Date(result.timestampMicros / 1000).toLocaleString();
  const n = result.entries.length;
  let message = `Verified: these are all ${n} access${n === 1 ? '' : 'es'} to your record, as of ${asOf}.`;
  const w = result.witnessed;
  if (w.length > 0) {
    const since = new Date(Math.min(...w.map((x) => x.time)) * 1000).toLocaleString();
    message += ` ${w.length} independent witness${w.length === 1 ? '' : 'es'} (${w.map((x) => x.name).join(', ')})`
      + ` confirmed that the node shows everyone this same log, checked as of ${since}.`;
  } else {
    message += ' No independent witness has confirmed this log yet.';
  }
  if (result.policyChanged) {
    message += ' The node now lists other witnesses than at your first visit; the ones you kept were checked.';
  }
  status.dataset.witnessed = String(w.length);
  show('verified', message);
  render(result.entries, true);
}

run().catch((e) => show('failed', `The log could not be checked: ${e.message}`));
