// Medications in a real browser. A GP prescribes from the patient's chart (an allergy
// warning inline, overridden with a reason) and signs in the browser with their own Ed25519
// key; the pharmacist finds it in their
// pharmacy's queue and dispenses part of it; the patient finds it under Medications with
// its instructions in plain words, logs today's dose in one tap, asks for a refill (which
// the GP approves through the API: a renewal to sign), and chooses a preferred and an
// alternate pharmacy. Every state passes axe-core; screenshots go to docs/screenshots/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, accessibilityViolations, cli, signIn, startNode, stopNode } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const SHOTS = new URL('../../docs/screenshots/', import.meta.url).pathname;
const PHARMACY = 'https://medmesh.dev/fhir/CodeSystem/organization-type';

test('a patient keeps up with their medications in the portal', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-meds-'));
  const node = await startNode(dir);
  let browser;
  try {
    const admin = cli(dir, ['admin', 'token', '--scope', 'system/*.*']);
    const call = async (method, path, token, body) => {
      const r = await fetch(`${node.base}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: body && JSON.stringify(body),
      });
      const text = await r.text();
      assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
      return text ? JSON.parse(text) : null;
    };
    await call('PUT', '/fhir/Organization/o1', admin, { resourceType: 'Organization', id: 'o1', name: 'Riverside Practice' });
    for (const [id, name] of [['corner', 'Corner Pharmacy'], ['late', 'Late Night Pharmacy']]) {
      await call('PUT', `/fhir/Organization/${id}`, admin, { resourceType: 'Organization', id, name,
        type: [{ coding: [{ system: PHARMACY, code: 'pharmacy' }] }] });
    }
    await call('PUT', '/fhir/Practitioner/ph1', admin, { resourceType: 'Practitioner', id: 'ph1', name: [{ given: ['Pia'], family: 'Pharm' }] });
    await call('PUT', '/fhir/Practitioner/p1', admin, { resourceType: 'Practitioner', id: 'p1', name: [{ given: ['Ana'], family: 'Ortega' }] });
    await call('PUT', '/fhir/AllergyIntolerance/a1', admin, { resourceType: 'AllergyIntolerance', id: 'a1',
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
      code: { text: 'Lisinopril' }, patient: { reference: 'Patient/ada' } });
    await call('PUT', '/fhir/Patient/ada', admin, { resourceType: 'Patient', id: 'ada', name: [{ family: 'Bookwell', given: ['Ada'] }],
      generalPractitioner: [{ reference: 'Practitioner/p1' }] });
    cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'ada', '--patient', 'ada'], `${PASSWORD}\n`);
    cli(dir, ['admin', 'create-user', '--role', 'practitioner', '--username', 'ortega', '--practitioner', 'p1',
      '--organization', 'o1', '--verification', 'verified'], `${PASSWORD}\n`);
    cli(dir, ['admin', 'create-user', '--role', 'pharmacist', '--username', 'pia', '--practitioner', 'ph1',
      '--organization', 'corner', '--verification', 'verified'], `${PASSWORD}\n`);
    const gp = cli(dir, ['admin', 'token', '--scope', 'user/*.cruds', '--user', 'ortega']);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });

    // The GP prescribes from the patient's chart: the recorded allergy stops the first
    // attempt with a warning inline, overridden with a reason; then the GP's browser signs.
    const doctor = await signIn(browser, node.base, 'ortega', PASSWORD);
    await doctor.goto(`${node.base}/patients/ada`);
    await doctor.getByRole('link', { name: 'Prescribe' }).click();
    await doctor.waitForLoadState();
    assert.equal(await doctor.locator('h1').textContent(), 'Prescribe');
    assert.deepEqual(await accessibilityViolations(doctor), [], 'the prescriber form (axe-core)');
    await doctor.fill('#medication', 'lisinopril 10 MG Oral Tablet');
    await doctor.fill('#rxnorm', '314076');
    await doctor.fill('#quantity', '30');
    await doctor.fill('#refills', '2');
    await doctor.selectOption('#pharmacy', 'Organization/corner');
    await doctor.getByRole('button', { name: 'Prescribe (a draft, to sign)' }).click();
    await doctor.waitForLoadState();
    assert.match(await doctor.locator('#warnings').textContent(), /recorded allergy to Lisinopril/);
    assert.deepEqual(await accessibilityViolations(doctor), [], 'a warning inline (axe-core)');
    await doctor.getByLabel('Override this warning').check();
    await doctor.getByLabel('Why').fill('a cough, not an allergy; tolerated since');
    await doctor.getByRole('button', { name: 'Prescribe (a draft, to sign)' }).click();
    await doctor.waitForURL('**/prescriptions/*/sign');
    const id = doctor.url().split('/').at(-2);
    assert.match(await doctor.locator('#signed-text').textContent(), /^medmesh-prescription v1\nprescription MedicationRequest\//);
    assert.deepEqual(await accessibilityViolations(doctor), [], 'the text to sign (axe-core)');
    await doctor.getByRole('button', { name: 'Sign and send' }).click();
    await doctor.locator('#sign-result', { hasText: 'Signed' }).waitFor();
    await doctor.screenshot({ path: join(SHOTS, 'prescription-signed.png'), fullPage: true });
    const signed = await call('GET', `/api/prescriptions/${id}/signed`, gp);
    assert.equal(signed.format, 'application/vnd.medmesh.prescription-v1+ed25519');
    // The printed prescription, from the link the signature shows, in the session's browser.
    const printLink = doctor.getByRole('link', { name: 'Print (PDF)' });
    await printLink.waitFor();
    const printed = await doctor.request.get(new URL(await printLink.getAttribute('href'), node.base).href);
    assert.equal(printed.status(), 200);
    assert.equal(printed.headers()['content-type'], 'application/pdf');
    assert.ok((await printed.body()).subarray(0, 5).equals(Buffer.from('%PDF-')));

    // The pharmacist's queue: a part fill of 10.
    const pharmacist = await signIn(browser, node.base, 'pia', PASSWORD);
    await pharmacist.getByRole('link', { name: 'Pharmacy' }).click();
    await pharmacist.waitForLoadState();
    assert.equal(await pharmacist.locator('h1').textContent(), 'Prescriptions to dispense');
    assert.match(await pharmacist.locator('#queue').textContent(), /lisinopril 10 MG Oral Tablet.*Ada Bookwell.*90 tablet left, 2 refills after this fill/s);
    assert.deepEqual(await accessibilityViolations(pharmacist), [], 'the pharmacy queue (axe-core)');
    await pharmacist.fill(`#qty-${id}`, '10');
    await pharmacist.getByRole('button', { name: 'Dispense: lisinopril 10 MG Oral Tablet, Ada Bookwell' }).click();
    await pharmacist.waitForLoadState();
    assert.equal(await pharmacist.locator('[role=status]').textContent(), 'Dispensed. The patient and the prescriber are told.');
    assert.match(await pharmacist.locator('#queue').textContent(), /80 tablet left, 2 refills after this fill/);
    assert.deepEqual(await accessibilityViolations(pharmacist), [], 'dispensed (axe-core)');
    await pharmacist.screenshot({ path: join(SHOTS, 'pharmacy-queue.png'), fullPage: true });

    const page = await signIn(browser, node.base, 'ada', PASSWORD);
    await page.getByRole('link', { name: 'Medications' }).click();
    await page.waitForLoadState();
    assert.equal(await page.locator('h1').textContent(), 'Medications');
    assert.match(await page.locator('#active').textContent(), /lisinopril 10 MG Oral Tablet.*active.*1 tablet, once a day/s);
    assert.match(await page.locator('#today').textContent(), /08:00.*lisinopril/s);
    assert.deepEqual(await accessibilityViolations(page), [], 'medications (axe-core)');

    // Today's dose, in one tap.
    await page.getByRole('button', { name: 'Taken: lisinopril 10 MG Oral Tablet 08:00' }).click();
    await page.waitForLoadState();
    assert.equal(await page.locator('[role=status]').textContent(), 'Your dose is logged.');
    assert.match(await page.locator('#today .logged').textContent(), /Taken/);
    assert.match(await page.locator('#log tbody').textContent(), /lisinopril.*Taken/s);
    assert.deepEqual(await accessibilityViolations(page), [], 'a dose logged (axe-core)');

    // A refill, asked of the GP.
    await page.getByRole('button', { name: 'Ask for a refill: lisinopril 10 MG Oral Tablet' }).click();
    await page.waitForLoadState();
    assert.equal(await page.locator('[role=status]').textContent(), 'Your refill request was sent to your prescriber.');
    const tasks = await call('GET', `/fhir/Task?focus=MedicationRequest/${id}&status=requested`, gp);
    assert.equal(tasks.entry.length, 1, 'the GP sees the request');
    assert.equal(tasks.entry[0].resource.owner.reference, 'Practitioner/p1');
    // The GP's refill requests: approving prescribes a renewal anew, so the allergy warns
    // again, overridden as before; then the renewal is signed.
    await doctor.getByRole('link', { name: 'Refills' }).click();
    await doctor.waitForLoadState();
    assert.equal(await doctor.locator('h1').textContent(), 'Refill requests');
    assert.match(await doctor.locator('#refills').textContent(), /Ada Bookwell: lisinopril 10 MG Oral Tablet/);
    assert.deepEqual(await accessibilityViolations(doctor), [], 'refill requests (axe-core)');
    const approve = doctor.getByRole('button', { name: 'Approve: lisinopril 10 MG Oral Tablet, Ada Bookwell' });
    await approve.click();
    await doctor.waitForLoadState();
    assert.match(await doctor.locator('#warnings').textContent(), /recorded allergy to Lisinopril/);
    assert.deepEqual(await accessibilityViolations(doctor), [], 'a renewal with a warning (axe-core)');
    await doctor.screenshot({ path: join(SHOTS, 'refill-requests.png'), fullPage: true });
    await doctor.getByLabel('Override this warning').check();
    await doctor.getByLabel('Why', { exact: true }).fill('as before: a cough, not an allergy');
    await approve.click();
    await doctor.waitForURL('**/prescriptions/*/sign');
    const renewal = doctor.url().split('/').at(-2);
    assert.notEqual(renewal, id);
    const renewed = await call('GET', `/fhir/MedicationRequest/${renewal}`, gp);
    assert.equal(renewed.status, 'draft');
    assert.equal(renewed.priorPrescription.reference, `MedicationRequest/${id}`);
    await doctor.getByRole('button', { name: 'Sign and send' }).click();
    await doctor.locator('#sign-result', { hasText: 'Signed' }).waitFor();
    await doctor.goto(`${node.base}/refills`);
    assert.equal(await doctor.locator('#refills-none').textContent(), 'No refill requests are waiting.');

    // An adherence review raised for the GP (as the node's alert pass raises one), closed
    // from the same page with what was done.
    await call('PUT', '/fhir/Task/review1', admin, { resourceType: 'Task', id: 'review1', status: 'requested', intent: 'order',
      code: { coding: [{ system: 'https://medmesh.dev/fhir/CodeSystem/medication-task', code: 'adherence-review' }] },
      description: 'Days covered by dispenses over the last 30 days: 40% (12 of 30), under 80%.',
      focus: { reference: `MedicationRequest/${id}` }, for: { reference: 'Patient/ada' },
      authoredOn: new Date().toISOString(), owner: { reference: 'Practitioner/p1' } });
    await doctor.goto(`${node.base}/refills`);
    assert.match(await doctor.locator('#reviews').textContent(), /Ada Bookwell: lisinopril 10 MG Oral Tablet.*40% \(12 of 30\)/s);
    assert.deepEqual(await accessibilityViolations(doctor), [], 'an adherence review (axe-core)');
    await doctor.getByLabel('What was done').fill('Called Ada: the refill had run out');
    await doctor.getByRole('button', { name: 'Reviewed: lisinopril 10 MG Oral Tablet, Ada Bookwell' }).click();
    await doctor.waitForLoadState();
    assert.equal(await doctor.locator('[role=status]').textContent(), 'The review is closed.');
    assert.equal(await doctor.locator('#reviews-none').textContent(), 'No adherence reviews are waiting.');
    assert.equal((await call('GET', '/fhir/Task/review1', gp)).status, 'completed');

    // The chart shows the adherence figures: days covered by the 10 tablets dispensed.
    await doctor.goto(`${node.base}/patients/ada`);
    assert.match(await doctor.locator('#adherence-table').textContent(), /lisinopril 10 MG Oral Tablet.*%.*days/s);
    assert.deepEqual(await accessibilityViolations(doctor), [], 'the chart with adherence (axe-core)');

    // The pharmacies.
    await page.selectOption('#preferred', 'Organization/corner');
    await page.selectOption('#alternate', 'Organization/late');
    await page.getByRole('button', { name: 'Save pharmacies' }).click();
    await page.waitForLoadState();
    assert.equal(await page.locator('[role=status]').textContent(), 'Your pharmacies are saved.');
    assert.equal(await page.locator('#preferred').inputValue(), 'Organization/corner');
    assert.equal(await page.locator('#alternate').inputValue(), 'Organization/late');
    // The same pharmacy twice is refused.
    await page.selectOption('#alternate', 'Organization/corner');
    await page.getByRole('button', { name: 'Save pharmacies' }).click();
    await page.waitForLoadState();
    await page.goto(`${node.base}/medications`);
    assert.equal(await page.locator('#alternate').inputValue(), 'Organization/late', 'unchanged');
    assert.deepEqual(await accessibilityViolations(page), [], 'pharmacies chosen (axe-core)');
    await page.screenshot({ path: join(SHOTS, 'medications.png'), fullPage: true });
  } finally {
    await browser?.close();
    await stopNode(node.proc);
    rmSync(dir, { recursive: true, force: true });
  }
});
