// A patient's access log, proven complete in their own browser (/account/audit, with
// assets/audit-verify.js): the browser's verifier agrees with the Rust one on every test
// vector, and a patient's Chromium catches each tamper an operator can make directly in the
// database, on SQLite and on PostgreSQL: a patient row deleted, the newest entry withheld,
// an entry moved to another patient, and the whole tail rewritten and re-signed with the
// node's own key (caught against the checkpoint the browser kept in IndexedDB).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, accessibilityViolations, cli, launchPersistent as launch, startNode, stopNode } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const VECTORS = JSON.parse(readFileSync(
  new URL('../../crates/medmesh-patient-log-verifier/vectors/patient-log.json', import.meta.url), 'utf8'));
const POSTGRES = process.env.MEDMESH_TEST_POSTGRES;

// A witness key made here: the seed file `medmesh audit witness --key` reads, and its C2SP
// verifier key (name+hash+base64(0x04 || Ed25519 public key)) for the node's settings.
function witnessKey(file, name) {
  const seed = randomBytes(32);
  writeFileSync(file, seed.toString('base64'), { mode: 0o600 });
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const jwk = createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
  const blob = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x, 'base64url')]);
  const hash = createHash('sha256').update(`${name}\n`).update(blob).digest().subarray(0, 4).toString('hex');
  return `${name}+${hash}+${blob.toString('base64')}`;
}

test('the browser verifier reaches the Rust verifier\'s verdict on every vector', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-browser-'));
  const profile = mkdtempSync(join(tmpdir(), 'medmesh-chromium-'));
  const { proc, base } = await startNode(dir);
  let context;
  try {
    context = await launch(profile);
    const page = await context.newPage();
    await page.goto(`${base}/login`);
    const results = await page.evaluate(async (cases) => {
      const { verifyPatientLog } = await import('/assets/audit-verify.js');
      const out = [];
      for (const c of cases) {
        const r = await verifyPatientLog({
          logKey: c.logKey, patient: c.patient, pages: c.pages,
          remembered: c.remembered, consistency: c.consistency,
        });
        out.push(r.ok
          ? { ok: true, entries: r.entries.length, count: r.head?.count ?? null, treeSize: r.treeSize, witnessed: r.witnessed.length }
          : { ok: false, code: r.code, message: r.message });
      }
      return out;
    }, VECTORS.cases);
    assert.ok(VECTORS.cases.length >= 16);
    VECTORS.cases.forEach((c, i) => assert.deepEqual(results[i], c.expect, c.name));
  } finally {
    if (context) await context.close();
    await stopNode(proc);
    rmSync(dir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
});

// One database, as a test sees it: raw SQL, a copy of the whole database and its restore.
function sqliteDb(dir) {
  const file = join(dir, 'medmesh.db');
  const run = (sql) => {
    const out = spawnSync('python3', ['-c', `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit(); c.close()`, file, sql], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
  };
  const query = (sql) => {
    const out = spawnSync('python3', ['-c', `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); print(c.execute(sys.argv[2]).fetchone()[0])`, file, sql], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
    return out.stdout.trim();
  };
  // SQLite's own online backup, so the WAL is copied with the file.
  const copy = (from, to) => {
    const out = spawnSync('python3', ['-c', `
import sqlite3, sys
src = sqlite3.connect(sys.argv[1]); dst = sqlite3.connect(sys.argv[2]); src.backup(dst); dst.close(); src.close()`, from, to], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
  };
  const backup = join(dir, 'backup.db');
  return {
    env: {},
    run,
    query,
    save: () => copy(file, backup),
    restore: () => copy(backup, file),
    drop: () => {},
  };
}

function postgresDb() {
  const name = `medmesh_browser_${process.pid}_${Date.now()}`;
  const psql = (db, sql) => {
    const out = spawnSync('psql', ['-qAtX', '-v', 'ON_ERROR_STOP=1', `${POSTGRES}/${db}`, '-c', sql], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
    return out.stdout.trim();
  };
  psql('postgres', `CREATE DATABASE ${name}`);
  return {
    env: { MEDMESH_DATABASE_URL: `${POSTGRES}/${name}` },
    run: (sql) => psql(name, sql),
    query: (sql) => psql(name, sql),
    save: () => psql('postgres', `CREATE DATABASE ${name}_backup TEMPLATE ${name}`),
    restore: () => {
      psql('postgres', `DROP DATABASE ${name}`);
      psql('postgres', `CREATE DATABASE ${name} TEMPLATE ${name}_backup`);
    },
    drop: () => {
      psql('postgres', `DROP DATABASE IF EXISTS ${name}`);
      psql('postgres', `DROP DATABASE IF EXISTS ${name}_backup`);
    },
  };
}

for (const kind of ['sqlite', 'postgres']) {
  test(`a patient's browser catches every tamper with their log (${kind})`, async () => {
    assert.ok(kind === 'sqlite' || POSTGRES, 'MEDMESH_TEST_POSTGRES must name the PostgreSQL server');
    const dir = mkdtempSync(join(tmpdir(), 'medmesh-browser-'));
    const profile = mkdtempSync(join(tmpdir(), 'medmesh-chromium-'));
    const db = kind === 'sqlite' ? sqliteDb(dir) : postgresDb();
    let node = await startNode(dir, db.env);
    const listen = new URL(node.base).host;
    let context;
    try {
      const token = cli(dir, ['admin', 'token', '--scope', 'system/*.*'], undefined, db.env);
      const api = (path, init = {}) => fetch(`${node.base}${path}`, {
        ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', ...(init.headers ?? {}) },
      });
      for (const id of ['pat', 'other']) {
        const r = await api(`/fhir/Patient/${id}`, { method: 'PUT', body: JSON.stringify({ resourceType: 'Patient', id }) });
        assert.ok(r.ok, `PUT Patient/${id}: ${r.status}`);
      }
      cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'pat', '--patient', 'pat'], `${PASSWORD}\n`, db.env);
      for (let i = 0; i < 3; i++) assert.ok((await api('/fhir/Patient/pat')).ok);
      await api('/fhir/Patient/other');

      context = await launch(profile);
      let page = await context.newPage();
      const visit = async () => {
        await page.goto(`${node.base}/account/audit`);
        if (page.url().includes('/login')) {
          await page.fill('input[name=username]', 'pat');
          await page.fill('input[name=password]', PASSWORD);
          await Promise.all([page.waitForURL('**/account/audit'), page.click('button[type=submit]')]);
        }
        const status = page.locator('#verify-status:not([data-state=checking])');
        await status.waitFor();
        return { state: await status.getAttribute('data-state'), code: await status.getAttribute('data-code'), text: await status.textContent() };
      };
      const verified = async (why) => {
        const v = await visit();
        assert.equal(v.state, 'verified', `${why}: ${v.text}`);
        return v;
      };
      const caught = async (why, code) => {
        const v = await visit();
        assert.equal(v.state, 'failed', `${why} went unnoticed: ${v.text}`);
        assert.equal(v.code, code, `${why}: ${v.text}`);
      };
      const first = await verified('an intact log');
      assert.match(first.text, /all \d+ accesses/);
      assert.ok(await page.locator('#entries tbody tr').count() >= 4);
      assert.deepEqual(await accessibilityViolations(page), [], 'the access log page (axe-core)');

      const rows = (order) => db.query(`SELECT leaf_index FROM audit_patient WHERE patient_id = 'pat' ORDER BY leaf_index ${order} LIMIT 1 OFFSET 1`);
      // A patient row deleted: an access vanishes from the patient's view.
      const middle = rows('DESC');
      db.run(`DELETE FROM audit_patient WHERE patient_id = 'pat' AND leaf_index = ${middle}`);
      await caught('a deleted audit_patient row', 'chain');
      db.run(`INSERT INTO audit_patient (patient_id, leaf_index) VALUES ('pat', ${middle})`);
      await verified('the row restored');
      // The newest entry withheld.
      const newest = db.query(`SELECT max(leaf_index) FROM audit_patient WHERE patient_id = 'pat'`);
      db.run(`DELETE FROM audit_patient WHERE patient_id = 'pat' AND leaf_index = ${newest}`);
      await caught('the newest entry withheld', 'chain');
      db.run(`INSERT INTO audit_patient (patient_id, leaf_index) VALUES ('pat', ${newest})`);
      await verified('the newest entry back');
      // An entry moved to another patient.
      const moved = rows('ASC');
      db.run(`UPDATE audit_patient SET patient_id = 'other' WHERE patient_id = 'pat' AND leaf_index = ${moved}`);
      await caught('an entry moved to another patient', 'chain');
      db.run(`UPDATE audit_patient SET patient_id = 'pat' WHERE patient_id = 'other' AND leaf_index = ${moved}`);
      await verified('the entry moved back');

      // The whole tail rewritten and re-signed with the node's own key: the database is put
      // back to a copy taken before one more access, and the log grows past what the
      // browser saw. Every proof the node serves then verifies, except the consistency
      // proof from the checkpoint the browser kept.
      await stopNode(node.proc);
      db.save();
      node = await startNode(dir, db.env, listen);
      assert.ok((await api('/fhir/Patient/pat')).ok, 'the access to hide');
      await verified('the log with the access to hide');
      await stopNode(node.proc);
      db.restore();
      node = await startNode(dir, db.env, listen);
      for (let i = 0; i < 12; i++) await api('/fhir/Patient/other');
      await caught('the tail rewritten and re-signed', 'consistency');

      // A witness: the node lists it and asks for one; it pulls the newest checkpoint and
      // posts its cosignature back. A new browser pins the witness on its first visit and
      // fails once the node stops serving the cosignature.
      const witnessFile = join(dir, 'witness.key');
      const witness = witnessKey(witnessFile, 'witness.test/w1');
      await stopNode(node.proc);
      node = await startNode(dir, { ...db.env, MEDMESH_AUDIT_WITNESSES: witness, MEDMESH_AUDIT_WITNESS_QUORUM: '1' }, listen);
      assert.ok((await api('/api/audit/checkpoint', { method: 'POST' })).ok);
      const pulled = spawnSync(BIN, ['audit', 'witness', '--log', node.base, '--name', 'witness.test/w1',
        '--state', join(dir, 'witness.json'), '--key', witnessFile], { encoding: 'utf8', env: { ...process.env, MEDMESH_LOG: 'warn' } });
      assert.equal(pulled.status, 0, pulled.stderr);
      assert.match(pulled.stderr, /the node kept the cosignature/);
      await context.close();
      rmSync(profile, { recursive: true, force: true });
      context = await launch(profile);
      page = await context.newPage();
      const witnessed = await verified('a log cosigned by the witness');
      assert.match(witnessed.text, /1 independent witness \(witness\.test\/w1\)/);
      assert.equal(await page.locator('#verify-status').getAttribute('data-witnessed'), '1');
      db.run(`DELETE FROM audit_cosignatures`);
      await caught('the cosignature withheld', 'witness-quorum');
    } finally {
      if (context) await context.close();
      await stopNode(node.proc);
      db.drop();
      rmSync(dir, { recursive: true, force: true });
      rmSync(profile, { recursive: true, force: true });
    }
  });
}
