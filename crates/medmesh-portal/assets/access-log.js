// The access-log page (/account/audit): fetches the patient's whole log, proves it complete
// with /assets/audit-verify.js, and remembers in IndexedDB the checkpoint it verified, so
// that the next visit can prove the node only added to the log since. "Verified" is shown
// only when every check passed; the entries are listed either way, marked unverified, and
// drawn from the entries themselves (the page gives only words: messages and names).
import { objectStore } from './common.mjs';
import { verifyPatientLog } from '/assets/audit-verify.js';

const root = document.getElementById('access-log');
const PATIENT = root.dataset.patient;
const CSRF = root.dataset.csrf;
const SERVED_KEY = root.dataset.logKey;
const WORDS = JSON.parse(document.getElementById('access-log-words').textContent);
const status = document.getElementById('verify-status');
const table = document.getElementById('entries');
const PAGE = 500;

// A message with its {placeholders} filled.
function say(key, values = {}) {
  return (WORDS.messages[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(values[k] ?? ''));
}

const when = (micros) => new Date(micros / 1000).toLocaleString(WORDS.lang);

const store = (mode, use) => objectStore('medmesh-audit', 'checkpoints', mode, use);

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
  return td;
}

// An emergency (break-glass) access: its purpose is ETREAT, or its basis a declaration.
const isEmergency = (entry) => entry?.purpose === 'ETREAT'
  || (entry?.basis ?? []).some((b) => b.startsWith('break-glass/'));

function render(entries, verified) {
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const { index, entry } of entries) {
    const row = document.createElement('tr');
    row.dataset.index = String(index);
    if (!verified) row.dataset.unverified = 'true';
    cell(row, entry?.time_micros ? when(entry.time_micros) : '');
    cell(row, WORDS.names[entry?.actor] ?? entry?.actor ?? '');
    cell(row, WORDS.actions[entry?.action] ?? say('other'));
    const why = cell(row, [entry?.purpose, ...(entry?.basis ?? [])].filter(Boolean).join(', ') || say('ownAccess'));
    if (isEmergency(entry)) {
      row.classList.add('emergency');
      row.dataset.emergency = 'true';
      const flag = document.createElement('strong');
      flag.className = 'flag';
      flag.textContent = `${say('emergency')} `;
      why.prepend(flag);
    }
    const outcome = entry?.outcome ?? 'Success';
    cell(row, outcome === 'Success' ? say('success') : outcome === 'Denied' ? say('denied') : say('failure'));
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
    show('verified', say('nothing'));
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
    show('failed', say('keyChanged'));
    render(pages.flatMap((p) => p.entries), false);
    return;
  }
  if (!result.ok) {
    status.dataset.code = result.code;
    show('failed', say('failed', { reason: result.message }));
    render(pages.flatMap((p) => p.entries), false);
    return;
  }
  await store('readwrite', (s) => s.put({ logKey, remembered: result.remember }, PATIENT));
  const n = result.entries.length;
  let message = say(n === 1 ? 'verifiedOne' : 'verifiedOther', { n, asOf: when(result.timestampMicros) });
  const w = result.witnessed;
  if (w.length > 0) {
    const since = when(Math.min(...w.map((x) => x.time)) * 1e6);
    message += ` ${say(w.length === 1 ? 'witnessedOne' : 'witnessedOther', { count: w.length, names: w.map((x) => x.name).join(', '), since })}`;
  } else {
    message += ` ${say('unwitnessed')}`;
  }
  if (result.policyChanged) message += ` ${say('policyChanged')}`;
  status.dataset.witnessed = String(w.length);
  show('verified', message);
  render(result.entries, true);
}

run().catch((e) => show('failed', say('unchecked', { error: e.message })));
