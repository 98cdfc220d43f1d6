// A video visit in two real browsers through a real TURN server. Debian's coturn runs on
// loopback with a shared secret; the node hands each browser short-lived TURN credentials
// and tells it to use TURN only (relay), so the media really go through the TURN server.
// Two Chromium instances with fake cameras join: the clinician is in the room at once, the
// patient waits until the clinician admits her; getStats() then shows audio and video
// packets flowing both ways over relay candidates. They chat in the call (the
// appointment's messaging thread); a third practitioner, not in the appointment, is refused;
// a visit an hour away is not open yet; and hanging up finishes the visit's Encounter
// (class VR, the clinician as participant). Every page passes axe-core.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, accessibilityViolations, apiCall, cli, signIn, startNode, stopNode } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const SHOTS = new URL('../../docs/screenshots/', import.meta.url).pathname;
const SECRET = 'coturn-shared-secret-for-the-test';
const MEDIA = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];
const POSTGRES = process.env.MEDMESH_TEST_POSTGRES;

/** A free UDP/TCP port on loopback (asked of the system, then released). */
async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** Debian's coturn on loopback, with the TURN REST API's shared secret; fails loudly if missing. */
async function startCoturn(dir, port) {
  const proc = spawn('turnserver', ['-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1',
    `--listening-port=${port}`, '--use-auth-secret', `--static-auth-secret=${SECRET}`, '--realm=medmesh.test',
    '--no-tls', '--no-dtls', '--no-cli', '--fingerprint', '--allow-loopback-peers',
    '--min-port=49160', '--max-port=49260', '--log-file=stdout', '--simple-log',
    `--pidfile=${join(dir, 'turnserver.pid')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise((resolve, reject) => {
    proc.on('error', (e) => reject(new Error(`coturn (turnserver) is required; scripts/test installs it: ${e.message}`)));
    proc.on('exit', (code) => reject(new Error(`turnserver exited (${code})`)));
    let seen = '';
    proc.stdout.on('data', (d) => {
      seen += d;
      if (/listener opened on|Total General servers/.test(seen)) resolve();
    });
  });
  return proc;
}

/** Both directions of a connection's media, from getStats(): packets of each kind, and the candidate types. */
async function flow(page) {
  return page.evaluate(async () => {
    const [pc] = [...window.medmeshVisit.pcs.values()];
    if (!pc) return null;
    const stats = await pc.getStats();
    const out = { state: pc.connectionState, inAudio: 0, inVideo: 0, outAudio: 0, outVideo: 0, local: null, remote: null };
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp') out[s.kind === 'audio' ? 'inAudio' : 'inVideo'] += s.packetsReceived ?? 0;
      if (s.type === 'outbound-rtp') out[s.kind === 'audio' ? 'outAudio' : 'outVideo'] += s.packetsSent ?? 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (pair) {
      out.local = stats.get(pair.localCandidateId)?.candidateType;
      out.remote = stats.get(pair.remoteCandidateId)?.candidateType;
    }
    return out;
  });
}

async function flowing(page) {
  for (let i = 0; i < 300; i++) {
    const f = await flow(page);
    if (f && f.state === 'connected' && f.inAudio > 20 && f.inVideo > 20 && f.outAudio > 20 && f.outVideo > 20) return f;
    await new Promise((r) => setTimeout(r, 100));
  }
  return flow(page);
}

for (const kind of ['sqlite', 'postgres']) test(`a clinician and a patient meet in a video visit through TURN (${kind})`, async () => {
  assert.ok(kind === 'sqlite' || POSTGRES, 'MEDMESH_TEST_POSTGRES must name the PostgreSQL server');
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-visit-'));
  let env = {};
  if (kind === 'postgres') {
    const name = `medmesh_visit_${process.pid}_${Date.now()}`;
    const r = spawnSync('psql', ['-qAtX', `${POSTGRES}/postgres`, '-c', `CREATE DATABASE ${name}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    env = { MEDMESH_DATABASE_URL: `${POSTGRES}/${name}` };
  }
  const turnPort = await freePort();
  const turn = await startCoturn(dir, turnPort);
  const node = await startNode(dir, {
    ...env,
    MEDMESH_TELEHEALTH_TURN_URLS: `turn:127.0.0.1:${turnPort}?transport=udp`,
    MEDMESH_TELEHEALTH_TURN_SECRET: SECRET,
    MEDMESH_TELEHEALTH_ICE_POLICY: 'relay',
  });
  let browser;
  let other;
  try {
    const admin = cli(dir, ['admin', 'token', '--scope', 'system/*.*'], undefined, env);
    const call = (method, path, body) => apiCall(node.base, admin, method, path, body);
    await call('PUT', '/fhir/Organization/o1', { resourceType: 'Organization', id: 'o1', name: 'Riverside Practice' });
    await call('PUT', '/fhir/Practitioner/p1', { resourceType: 'Practitioner', id: 'p1', name: [{ given: ['Ana'], family: 'Ortega' }] });
    await call('PUT', '/fhir/Practitioner/p2', { resourceType: 'Practitioner', id: 'p2', name: [{ given: ['Sam'], family: 'Stranger' }] });
    await call('PUT', '/fhir/Patient/ada', { resourceType: 'Patient', id: 'ada', name: [{ family: 'Bookwell', given: ['Ada'] }] });
    const at = (minutes) => new Date(Date.now() + minutes * 60000).toISOString().replace(/\.\d+Z$/, 'Z');
    const visit = (id, from, to) => ({ resourceType: 'Appointment', id, status: 'booked',
      appointmentType: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'VR', display: 'virtual' }] },
      start: at(from), end: at(to),
      participant: [{ actor: { reference: 'Patient/ada' }, status: 'accepted' },
        { actor: { reference: 'Practitioner/p1' }, status: 'accepted' }] });
    await call('PUT', '/fhir/Appointment/v1', visit('v1', 5, 25));
    await call('PUT', '/fhir/Appointment/later', visit('later', 60, 80));
    cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'ada', '--patient', 'ada'], `${PASSWORD}\n`, env);
    for (const [user, id] of [['ortega', 'p1'], ['stranger', 'p2']]) {
      cli(dir, ['admin', 'create-user', '--role', 'practitioner', '--username', user, '--practitioner', id,
        '--organization', 'o1', '--verification', 'verified'], `${PASSWORD}\n`, env);
    }

    // Two Chromium instances with fake cameras and microphones.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...MEDIA] });
    other = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...MEDIA] });

    // The clinician finds the visit in the calendar, with its join link. The calendar opens
    // on today; the visit's own day is asked for, since five minutes from now may be tomorrow
    // (a run just before midnight UTC failed here).
    const doctor = await signIn(browser, node.base, 'ortega', PASSWORD);
    await doctor.goto(`${node.base}/calendar?day=${at(5).slice(0, 10)}`);
    await doctor.getByRole('link', { name: /^Join the video visit: Ada Bookwell/ }).first().click();
    await doctor.waitForURL('**/visits/v1');
    await doctor.locator('#visit-status', { hasText: 'You are in the room' }).waitFor({ timeout: 15000 });
    const ice = JSON.parse(await doctor.locator('#ice-config').textContent());
    assert.equal(ice.iceTransportPolicy, 'relay');
    assert.match(ice.iceServers[0].username, /^\d+:[0-9a-f-]+$/, 'an expiry and a random user, no name');
    assert.deepEqual(await accessibilityViolations(doctor), [], 'the clinician in the room (axe-core)');

    // The patient finds it among her appointments.
    const patient = await signIn(other, node.base, 'ada', PASSWORD);
    await patient.goto(`${node.base}/appointments`);
    await patient.getByRole('link', { name: /^Join the video visit/ }).first().click();
    await patient.waitForURL('**/visits/v1');
    await patient.locator('#visit-status', { hasText: 'waiting room' }).waitFor({ timeout: 15000 });
    assert.deepEqual(await accessibilityViolations(patient), [], 'the patient waiting (axe-core)');

    // The clinician admits her; media flow both ways, through the TURN server.
    await doctor.getByRole('button', { name: 'Admit: Ada Bookwell' }).click();
    const a = await flowing(doctor);
    const b = await flowing(patient);
    for (const [who, f] of [['clinician', a], ['patient', b]]) {
      assert.equal(f.state, 'connected', `${who}: ${JSON.stringify(f)}`);
      assert.ok(f.inAudio > 20 && f.inVideo > 20, `${who} receives audio and video: ${JSON.stringify(f)}`);
      assert.ok(f.outAudio > 20 && f.outVideo > 20, `${who} sends audio and video: ${JSON.stringify(f)}`);
      assert.equal(f.local, 'relay', `${who} uses a TURN relay: ${JSON.stringify(f)}`);
    }
    await patient.locator('#visit-status', { hasText: 'In the call' }).waitFor();

    // They chat in the call: the appointment's thread.
    await patient.fill('#chat-text', 'Can you hear me?');
    await patient.getByRole('button', { name: 'Send' }).click();
    await doctor.locator('#chat', { hasText: 'Can you hear me?' }).waitFor({ timeout: 10000 });
    assert.deepEqual(await accessibilityViolations(doctor), [], 'in the call (axe-core)');
    await doctor.screenshot({ path: join(SHOTS, 'video-visit.png'), fullPage: true });

    // A practitioner who is not in the appointment is refused, and so is his WebSocket.
    const stranger = await signIn(browser, node.base, 'stranger', PASSWORD);
    const refused = await stranger.goto(`${node.base}/visits/v1`);
    assert.equal(refused.status(), 404);
    const ws = await stranger.evaluate(() => new Promise((resolve) => {
      const s = new WebSocket(`ws://${location.host}/visits/v1/signal`);
      s.onopen = () => resolve('open');
      s.onerror = () => resolve('refused');
    }));
    assert.equal(ws, 'refused');

    // A visit an hour away is not open yet.
    const early = await patient.context().newPage();
    const r = await early.goto(`${node.base}/visits/later`);
    assert.equal(r.status(), 409);
    assert.match(await early.locator('#visit-closed').textContent(), /opens ten minutes before the visit/);

    // Hanging up finishes the visit's Encounter.
    await patient.getByRole('button', { name: 'Hang up' }).click();
    await doctor.getByRole('button', { name: 'Hang up' }).click();
    let encounter = null;
    for (let i = 0; i < 100; i++) {
      const found = await call('GET', '/fhir/Encounter?subject=Patient/ada');
      encounter = found.entry?.[0]?.resource;
      if (encounter?.status === 'finished') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(encounter?.status, 'finished', JSON.stringify(encounter));
    assert.equal(encounter.class.code, 'VR');
    assert.equal(encounter.participant[0].individual.reference, 'Practitioner/p1');
    assert.ok(encounter.period.start && encounter.period.end);
    assert.equal(encounter.appointment[0].reference, 'Appointment/v1');
  } finally {
    await browser?.close();
    await other?.close();
    await stopNode(node.proc);
    turn.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
