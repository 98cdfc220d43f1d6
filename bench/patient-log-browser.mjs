// A patient's log proven complete in the browser, against the same proof from the CLI:
//   node bench/patient-log-browser.mjs [ENTRIES] [ROUNDS]
// Starts a node (MEDMESH_BIN, default target/release/medmesh) on a fresh SQLite store,
// makes ENTRIES (default 1000) accesses to one patient's record, then ROUNDS (default 5)
// times each: in Debian chromium, fetching every page of the patient's log and running
// assets/audit-verify.js over it (the verification alone is timed too), and
// `medmesh audit verify-patient` (fetch and verify, the Rust verifier). Prints the
// medians in ms and the ratio browser / CLI.
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const { chromium } = require('playwright-core');
process.env.MEDMESH_BIN ??= 'target/release/medmesh';
const { CHROMIUM, CHROMIUM_ARGS, cli, startNode, stopNode } = await import('../tests/browser/harness.mjs');

const entries = Number(process.argv[2] ?? 1000);
const rounds = Number(process.argv[3] ?? 5);
const PASSWORD = 'a long enough passphrase';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const dir = mkdtempSync(join(tmpdir(), 'medmesh-bench-'));
const profile = mkdtempSync(join(tmpdir(), 'medmesh-chromium-'));
const { proc, base } = await startNode(dir);
let context;
try {
  const token = cli(dir, ['admin', 'token', '--scope', 'system/*.*']);
  const api = (path, init = {}) => fetch(`${base}${path}`, {
    ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
  });
  await api('/fhir/Patient/pat', { method: 'PUT', body: JSON.stringify({ resourceType: 'Patient', id: 'pat' }) });
  cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'pat', '--patient', 'pat'], `${PASSWORD}\n`);
  const patientToken = cli(dir, ['admin', 'token', '--scope', 'patient/*.rs', '--user', 'pat']);
  for (let done = 1; done < entries;) {
    const n = Math.min(32, entries - done);
    await Promise.all(Array.from({ length: n }, () => api('/fhir/Patient/pat')));
    done += n;
  }

  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const page = await context.newPage();
  await page.goto(`${base}/login?next=/account/audit`);
  await page.fill('input[name=username]', 'pat');
  await page.fill('input[name=password]', PASSWORD);
  await Promise.all([page.waitForURL('**/account/audit'), page.click('button[type=submit]')]);
  await page.locator('#verify-status[data-state=verified]').waitFor();

  const browserTotal = [];
  const browserVerify = [];
  let shown = 0;
  for (let r = 0; r < rounds; r++) {
    const t = await page.evaluate(async () => {
      const { verifyPatientLog } = await import('/assets/audit-verify.js');
      const root = document.getElementById('access-log');
      const headers = { 'x-csrf-token': root.dataset.csrf };
      const url = `/api/patients/${root.dataset.patient}/audit?_count=500`;
      const started = performance.now();
      const first = await (await fetch(url, { headers })).json();
      const pages = [first];
      for (let next = first.nextBefore; next != null;) {
        const p = await (await fetch(`${url}&before=${next}&checkpoint=${first.treeSize}`, { headers })).json();
        pages.push(p);
        next = p.nextBefore;
      }
      const fetched = performance.now();
      const result = await verifyPatientLog({ logKey: root.dataset.logKey, patient: root.dataset.patient, pages });
      const done = performance.now();
      if (!result.ok) throw new Error(result.message);
      return { total: done - started, verify: done - fetched, entries: result.entries.length };
    });
    browserTotal.push(t.total);
    browserVerify.push(t.verify);
    shown = t.entries;
  }
  const cliTotal = [];
  for (let r = 0; r < rounds; r++) {
    const started = performance.now();
    const out = spawnSync(process.env.MEDMESH_BIN, ['audit', 'verify-patient', '--node', base, '--patient', 'pat'],
      { encoding: 'utf8', env: { ...process.env, MEDMESH_TOKEN: patientToken } });
    if (out.status !== 0) throw new Error(out.stderr);
    cliTotal.push(performance.now() - started);
  }
  const b = median(browserTotal);
  const c = median(cliTotal);
  console.log(`patient log of ${shown} entries, median of ${rounds}:`);
  console.log(`  browser, verification only    ${median(browserVerify).toFixed(1)} ms`);
  console.log(`  browser, fetch and verify     ${b.toFixed(1)} ms`);
  console.log(`  CLI (Rust), fetch and verify  ${c.toFixed(1)} ms (process start included)`);
  console.log(`  ratio browser / CLI           ${(b / c).toFixed(2)}`);
} finally {
  if (context) await context.close();
  await stopNode(proc);
  rmSync(dir, { recursive: true, force: true });
  rmSync(profile, { recursive: true, force: true });
}
