// Care plans in a real browser, edited by two clinicians and seen by the patient. The GP
// adds a nurse to the patient's care team (found by name), makes a plan with an HbA1c goal
// and a first activity for the patient; the nurse, now a member, proposes an activity from
// the same page (the button says Propose); the GP accepts it, and the history names both;
// the nurse's worklist shows her activity; the patient sees the plan in plain words (the
// goal on target from her own result) and ticks off her activity. Every state passes
// axe-core; screenshots go to docs/screenshots/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, accessibilityViolations, apiCall, cli, signIn, startNode, stopNode } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const SHOTS = new URL('../../docs/screenshots/', import.meta.url).pathname;

test('two clinicians edit a care plan and the patient follows it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-care-'));
  const node = await startNode(dir);
  let browser;
  try {
    const admin = cli(dir, ['admin', 'token', '--scope', 'system/*.*']);
    const call = (method, path, body) => apiCall(node.base, admin, method, path, body);
    await call('PUT', '/fhir/Organization/o1', { resourceType: 'Organization', id: 'o1', name: 'Riverside Practice' });
    await call('PUT', '/fhir/Practitioner/p1', { resourceType: 'Practitioner', id: 'p1', name: [{ given: ['Ana'], family: 'Ortega' }] });
    await call('PUT', '/fhir/Practitioner/n1', { resourceType: 'Practitioner', id: 'n1', name: [{ given: ['Nora'], family: 'Quinn' }] });
    await call('PUT', '/fhir/Patient/ada', { resourceType: 'Patient', id: 'ada', name: [{ family: 'Bookwell', given: ['Ada'] }],
      generalPractitioner: [{ reference: 'Practitioner/p1' }] });
    await call('PUT', '/fhir/Condition/dm2', { resourceType: 'Condition', id: 'dm2',
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
      code: { coding: [{ system: 'http://snomed.info/sct', code: '44054006' }], text: 'Type 2 diabetes mellitus' },
      subject: { reference: 'Patient/ada' } });
    await call('PUT', '/fhir/Observation/a1c', { resourceType: 'Observation', id: 'a1c', status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '4548-4' }], text: 'HbA1c' },
      subject: { reference: 'Patient/ada' }, effectiveDateTime: '2026-11-20T09:00:00Z',
      valueQuantity: { value: 6.8, unit: '%', system: 'http://unitsofmeasure.org', code: '%' } });
    cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'ada', '--patient', 'ada'], `${PASSWORD}\n`);
    for (const [user, id] of [['ortega', 'p1'], ['quinn', 'n1']]) {
      cli(dir, ['admin', 'create-user', '--role', 'practitioner', '--username', user, '--practitioner', id,
        '--organization', 'o1', '--verification', 'verified'], `${PASSWORD}\n`);
    }

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });

    // The GP opens the care page from the chart and adds the nurse, found by name.
    const gp = await signIn(browser, node.base, 'ortega', PASSWORD);
    await gp.goto(`${node.base}/patients/ada`);
    await gp.getByRole('link', { name: 'Care team and plans' }).click();
    await gp.waitForLoadState();
    assert.equal(await gp.locator('h1').textContent(), 'Care team and plans');
    assert.deepEqual(await accessibilityViolations(gp), [], 'an empty care page (axe-core)');
    await gp.fill('#find', 'Quinn');
    await gp.getByRole('button', { name: 'Search' }).click();
    await gp.waitForLoadState();
    await gp.locator('form.found-member').first().locator('select[name=role]').selectOption('nurse');
    await gp.getByRole('button', { name: 'Add to the care team: Nora Quinn' }).click();
    await gp.waitForLoadState();
    assert.match(await gp.locator('[role=status]').textContent(), /They see the record from their next request/);
    assert.match(await gp.locator('#care-team').textContent(), /Nora Quinn\s*Nurse/);

    // The plan: a measured goal and the patient's first activity.
    await gp.fill('#title', 'Type 2 diabetes');
    await gp.fill('#description', 'Keep glucose in range and the feet healthy.');
    await gp.selectOption('#condition', 'dm2');
    await gp.fill('#goal_description', 'HbA1c below 7%');
    await gp.selectOption('#goal_measure', '4548-4');
    await gp.selectOption('#goal_comparator', '<');
    await gp.fill('#goal_value', '7');
    await gp.fill('#activity_description', 'Walk 30 minutes a day');
    await gp.selectOption('#activity_assignee', 'Patient/ada');
    await gp.getByRole('button', { name: 'Make the plan' }).click();
    await gp.waitForURL('**/care-plans/*');
    const plan = new URL(gp.url()).pathname;
    const stored = await call('GET', `/fhir/CarePlan/${plan.split('/').at(-1)}`);
    assert.equal(stored.addresses[0].reference, 'Condition/dm2', 'the plan is for the condition');
    assert.equal(await gp.locator('h1').textContent(), 'Care plan');
    assert.match(await gp.locator('.goals').textContent(), /HbA1c below 7%.*On target/s);
    assert.deepEqual(await accessibilityViolations(gp), [], 'the plan for its author (axe-core)');

    // The nurse, now in the care team, proposes an activity from the same page.
    const nurse = await signIn(browser, node.base, 'quinn', PASSWORD);
    await nurse.goto(`${node.base}${plan}`);
    assert.match(await nurse.locator('.hint').first().textContent(), /your changes are proposed/);
    await nurse.fill('#activity_description', 'Check the feet');
    await nurse.selectOption('#activity_assignee', 'Practitioner/n1');
    await nurse.fill('#activity_due', '2099-01-31');
    await nurse.getByRole('button', { name: 'Propose' }).first().click();
    await nurse.waitForLoadState();
    assert.match(await nurse.locator('[role=status]').textContent(), /Proposed/);
    assert.match(await nurse.locator('#proposals').textContent(), /Check the feet.*Proposed by Nora Quinn/s);
    assert.equal(await nurse.getByRole('button', { name: /^Accept/ }).count(), 0, 'the proposer does not decide');
    assert.deepEqual(await accessibilityViolations(nurse), [], 'a proposal waiting (axe-core)');

    // The GP accepts; the history names who proposed and who accepted.
    await gp.goto(`${node.base}${plan}`);
    await gp.getByRole('button', { name: /^Accept: Added the activity "Check the feet"/ }).click();
    await gp.waitForLoadState();
    assert.match(await gp.locator('[role=status]').textContent(), /Accepted/);
    assert.match(await gp.locator('#activities').textContent(), /Check the feet\s*Nora Quinn/);
    const history = await gp.locator('#history tbody tr').allTextContents();
    assert.equal(history.length, 2);
    assert.match(history[0], /Made the plan "Type 2 diabetes"\s*Ana Ortega/);
    assert.match(history[1], /Added the activity "Check the feet", due 2099-01-31\s*Nora Quinn\s*Ana Ortega/);
    await gp.screenshot({ path: join(SHOTS, 'care-plan.png'), fullPage: true });

    // The nurse's worklist lists her activity.
    await nurse.getByRole('link', { name: 'Worklist' }).click();
    await nurse.waitForLoadState();
    assert.match(await nurse.locator('#worklist').textContent(), /Ada Bookwell\s*Check the feet\s*Care plan activity/);
    assert.deepEqual(await accessibilityViolations(nurse), [], 'the worklist (axe-core)');
    await nurse.screenshot({ path: join(SHOTS, 'worklist.png'), fullPage: true });

    // The patient sees the plan in plain words and ticks off her activity.
    const page = await signIn(browser, node.base, 'ada', PASSWORD);
    await page.getByRole('link', { name: 'Care plan' }).click();
    await page.waitForLoadState();
    assert.equal(await page.locator('h1').textContent(), 'My care plan');
    assert.match(await page.locator('.care-plan h2').first().textContent(), /Type 2 diabetes/);
    assert.match(await page.locator('.goals').textContent(), /HbA1c below 7%.*Target: Hemoglobin|HbA1c below 7%.*On target/s);
    assert.match(await page.locator('.activities.team').textContent(), /Check the feet\s*Nora Quinn/);
    assert.match(await page.locator('#care-team').textContent(), /Nora Quinn\s*Nurse/);
    assert.deepEqual(await accessibilityViolations(page), [], 'the patient\'s plan (axe-core)');
    await page.getByRole('button', { name: 'Mark done: Walk 30 minutes a day' }).click();
    await page.waitForLoadState();
    assert.match(await page.locator('.activities.mine').textContent(), /Walk 30 minutes a day.*Done/s);
    assert.equal(await page.getByRole('button', { name: 'Not done yet: Walk 30 minutes a day' }).count(), 1);
    await page.screenshot({ path: join(SHOTS, 'patient-care-plan.png'), fullPage: true });
    const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, locale: 'en-GB',
      storageState: await page.context().storageState() });
    const small = await phone.newPage();
    await small.goto(`${node.base}/care`);
    assert.ok(await small.evaluate(() => document.documentElement.scrollWidth <= 375), 'no horizontal scrolling at 375 px');

    // The GP sees the tick in the plan's history, in the patient's name.
    await gp.goto(`${node.base}${plan}`);
    assert.match(await gp.locator('#history').textContent(), /Marked an activity completed\s*Ada Bookwell/);
  } finally {
    await browser?.close();
    await stopNode(node.proc);
    rmSync(dir, { recursive: true, force: true });
  }
});
