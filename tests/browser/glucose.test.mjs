// Glucose in a real browser. The patient uploads her Dexcom Clarity export from the page
// (the page says what was read and what was new), sees the figures and the AGP for the
// export's fortnight, prints the AGP report as PDF, and uploading it again adds nothing;
// she pulls recent days from her Nightscout site; her GP opens the same page from the
// chart. The AGP renders in Chromium (its screenshot goes to docs/screenshots/), and
// every state passes axe-core.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, accessibilityViolations, apiCall, cli, signIn, startNode, stopNode } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const SHOTS = new URL('../../docs/screenshots/', import.meta.url).pathname;
const CLARITY = new URL('../../../shared/testdata/cgm-dexcom-clarity-cgmquantify/dexcom_clarity_g6_export.csv', import.meta.url).pathname;

// A Nightscout site's read API (entries newest first by date, with find[date][...] and
// count; no treatments or profile) for one access token, on an ephemeral loopback port.
async function nightscoutStandIn(entries, token) {
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const q = url.searchParams;
    if (q.get('token') !== token) {
      res.writeHead(401).end();
      return;
    }
    let body = [];
    if (url.pathname === '/api/v1/entries.json') {
      const bound = (op) => (q.has(`find[date][${op}]`) ? Number(q.get(`find[date][${op}]`)) : null);
      const [gte, lt, lte] = [bound('$gte'), bound('$lt'), bound('$lte')];
      body = entries
        .filter((e) => (gte === null || e.date >= gte) && (lt === null || e.date < lt) && (lte === null || e.date <= lte))
        .sort((a, b) => b.date - a.date)
        .slice(0, Number(q.get('count') ?? 10));
    } else if (!['/api/v1/treatments.json', '/api/v1/profile.json'].includes(url.pathname)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

test('a patient uploads her CGM export and reads her AGP; her GP reads it too', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-glucose-'));
  const node = await startNode(dir, { MEDMESH_NIGHTSCOUT_ALLOW_INTERNAL: 'true' });
  let browser;
  try {
    const admin = cli(dir, ['admin', 'token', '--scope', 'system/*.*']);
    const call = (method, path, body) => apiCall(node.base, admin, method, path, body);
    await call('PUT', '/fhir/Organization/o1', { resourceType: 'Organization', id: 'o1', name: 'Riverside Practice' });
    await call('PUT', '/fhir/Practitioner/p1', { resourceType: 'Practitioner', id: 'p1', name: [{ given: ['Ana'], family: 'Ortega' }] });
    await call('PUT', '/fhir/Patient/ada', { resourceType: 'Patient', id: 'ada', name: [{ family: 'Bookwell', given: ['Ada'] }],
      generalPractitioner: [{ reference: 'Practitioner/p1' }] });
    cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'ada', '--patient', 'ada'], `${PASSWORD}\n`);
    cli(dir, ['admin', 'create-user', '--role', 'practitioner', '--username', 'ortega', '--practitioner', 'p1',
      '--organization', 'o1', '--verification', 'verified'], `${PASSWORD}\n`);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const ada = await signIn(browser, node.base, 'ada', PASSWORD);
    await ada.getByRole('link', { name: 'Glucose' }).click();
    await ada.waitForLoadState();
    assert.equal(await ada.locator('h1').textContent(), 'Glucose');
    assert.match(await ada.locator('#glucose-none').textContent(), /No sensor glucose readings/);
    assert.deepEqual(await accessibilityViolations(ada), [], 'the empty glucose page (axe-core)');

    // Upload from the page, in the zone the receiver was set to.
    await ada.selectOption('#format', 'dexcom-clarity');
    await ada.fill('#upload-tz', 'America/Los_Angeles');
    await ada.setInputFiles('#files', CLARITY);
    await ada.getByRole('button', { name: 'Upload' }).click();
    await ada.waitForLoadState();
    const said = await ada.locator('#glucose-imported').textContent();
    assert.match(said, /Dexcom Clarity \(CSV\): 2148 records read, 2148 new/);
    // The period moves to the export's last fortnight: the figures and the AGP.
    assert.equal(await ada.inputValue('#end'), '2016-11-01');
    assert.match(await ada.locator('#glucose-metrics').textContent(), /Time in range \(70–180 mg\/dL\)\s*94\.0 %/);
    const agp = ada.locator('#agp svg');
    assert.equal(await agp.getAttribute('role'), 'img');
    assert.match(await agp.locator('title').textContent(), /Ambulatory glucose profile, 2016-10-1\d to 2016-11-02/);
    const box = await agp.boundingBox();
    assert.ok(box.width > 400 && box.height > 400, `the AGP is drawn: ${JSON.stringify(box)}`);
    assert.ok(await agp.locator('path').count() >= 2, 'the percentile bands');
    // The forecast from the latest reading, with its likely range and its measured error.
    const forecast = await ada.locator('#glucose-forecast').textContent();
    assert.match(forecast, /In 30 minutes\s*\d+ mg\/dL\s*\d+ to \d+ mg\/dL/);
    assert.match(forecast, /In 60 minutes/);
    assert.match(await ada.locator('section[aria-labelledby=forecast-h]').textContent(), /not a dosing aid/);
    assert.deepEqual(await accessibilityViolations(ada), [], 'the figures, the AGP and the forecast (axe-core)');
    await agp.screenshot({ path: join(SHOTS, 'glucose-agp.png') });
    await ada.screenshot({ path: join(SHOTS, 'glucose.png'), fullPage: true });

    // Again: nothing new.
    await ada.setInputFiles('#files', CLARITY);
    await ada.getByRole('button', { name: 'Upload' }).click();
    await ada.waitForLoadState();
    assert.match(await ada.locator('#glucose-imported').textContent(), /2148 records read, 0 new/);

    // A file that is no export: said in words, nothing else changes.
    await ada.setInputFiles('#files', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello, world\n') });
    await ada.selectOption('#format', '');
    await ada.getByRole('button', { name: 'Upload' }).click();
    await ada.waitForLoadState();
    assert.match(await ada.locator('#glucose-imported').textContent(), /notes\.txt: the file's format was not recognised/);

    // The AGP report prints as one A4 page of PDF, under her name.
    const pdfLink = ada.getByRole('link', { name: 'Print the AGP report (PDF)' });
    const pdf = await ada.request.get(new URL(await pdfLink.getAttribute('href'), ada.url()).href);
    assert.equal(pdf.status(), 200);
    assert.equal(pdf.headers()['content-type'], 'application/pdf');
    const pdfPath = join(dir, 'agp.pdf');
    writeFileSync(pdfPath, await pdf.body());
    assert.match(execFileSync('pdfinfo', [pdfPath]).toString(), /Pages:\s+1\b/);
    assert.match(execFileSync('pdftotext', [pdfPath, '-']).toString(), /Patient: Ada Bookwell/);
    execFileSync('pdftoppm', ['-png', '-r', '60', '-singlefile', pdfPath, join(SHOTS, 'glucose-agp-pdf')]);

    // Three recent days from her phone, often low, pulled from her Nightscout site with a
    // read-only token (a stand-in for cgm-remote-monitor on loopback): the GP's panel.
    const now = Date.now();
    const entries = Array.from({ length: 864 }, (_, i) => ({ _id: `e${i}`, type: 'sgv', sgv: 55 + (i % 40) * 3, date: now - i * 300000, device: 'xDrip' }));
    const site = await nightscoutStandIn(entries, 'readable-5e1f0a7c93d2b4e8');
    try {
      await ada.fill('#ns-url', site.url);
      await ada.selectOption('#ns-kind', 'token');
      await ada.fill('#ns-secret', 'the wrong token');
      await ada.fill('#ns-days', '5');
      await ada.getByRole('button', { name: 'Pull' }).click();
      await ada.waitForLoadState();
      assert.match(await ada.locator('#glucose-imported').textContent(), /Nightscout site: .*refused the API secret or token/);
      await ada.fill('#ns-url', site.url);
      await ada.fill('#ns-secret', 'readable-5e1f0a7c93d2b4e8');
      await ada.fill('#ns-days', '5');
      await ada.getByRole('button', { name: 'Pull' }).click();
      await ada.waitForLoadState();
      assert.match(await ada.locator('#glucose-imported').textContent(), /Nightscout site: Nightscout \(JSON or TSV\): 864 records read, 864 new/);
      assert.deepEqual(await accessibilityViolations(ada), [], 'after a Nightscout pull (axe-core)');
    } finally {
      site.server.close();
    }

    // The GP's panel puts her first, and links to her glucose page.
    const gp = await signIn(browser, node.base, 'ortega', PASSWORD);
    await gp.getByRole('link', { name: 'Glucose panel' }).click();
    await gp.waitForLoadState();
    assert.match(await gp.locator('#glucose-panel tbody tr').first().textContent(), /Ada Bookwell/);
    await gp.getByRole('link', { name: 'By time below range' }).click();
    await gp.waitForLoadState();
    assert.deepEqual(await accessibilityViolations(gp), [], 'the glucose panel (axe-core)');
    await gp.screenshot({ path: join(SHOTS, 'glucose-panel.png'), fullPage: true });

    // The GP, from the chart.
    await gp.goto(`${node.base}/patients/ada`);
    await gp.getByRole('link', { name: 'Glucose and devices' }).click();
    await gp.waitForLoadState();
    assert.match(await gp.locator('.about').textContent(), /Ada Bookwell/);
    await gp.fill('#start', '2016-10-24');
    await gp.fill('#end', '2016-11-01');
    await gp.fill('#tz', 'America/Los_Angeles');
    await gp.getByRole('button', { name: 'Show' }).click();
    await gp.waitForLoadState();
    assert.match(await gp.locator('#glucose-metrics').textContent(), /Mean glucose\s*112 mg\/dL/);
    assert.deepEqual(await accessibilityViolations(gp), [], 'the clinician\'s glucose page (axe-core)');
  } finally {
    await browser?.close();
    await stopNode(node.proc);
    rmSync(dir, { recursive: true, force: true });
  }
});
