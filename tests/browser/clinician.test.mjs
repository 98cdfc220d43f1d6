// A clinician's first sign-in and a long patient list, in a real browser: a wrong first TOTP
// code during enrolment is said as such and the right one then completes it; more patients
// than one page holds are paged through (the search's own cursor, POSTed, never in the URL),
// forward and back, each page passing axe-core.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, accessibilityViolations, cli, startNode, stopNode, totp } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const PATIENTS = 56;

test('a clinician recovers from a wrong first code and pages through their patients', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-clinician-'));
  const node = await startNode(dir);
  const base = node.base;
  let browser;
  try {
    const token = cli(dir, ['admin', 'token', '--scope', 'system/*.*']);
    const entry = (resource) => ({ resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } });
    const entries = [entry({ resourceType: 'Practitioner', id: 'gp', name: [{ prefix: ['Dr'], given: ['Grace'], family: 'Parker' }] })];
    for (let i = 0; i < PATIENTS; i++) {
      const n = String(i).padStart(2, '0');
      entries.push(entry({ resourceType: 'Patient', id: `p${n}`, name: [{ given: [`Pat${n}`], family: 'Listed' }],
        birthDate: '1970-01-01', generalPractitioner: [{ reference: 'Practitioner/gp' }] }));
    }
    const r = await fetch(`${base}/fhir`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: entries }),
    });
    assert.ok(r.ok, `the transaction: ${r.status} ${await r.text()}`);
    cli(dir, ['admin', 'create-user', '--role', 'practitioner', '--username', 'gp', '--practitioner', 'gp', '--verification', 'verified'], `${PASSWORD}\n`);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const page = await (await browser.newContext({ locale: 'en-GB' })).newPage();
    const checked = async (what) => assert.deepEqual(await accessibilityViolations(page), [], `${what} (axe-core)`);
    await page.goto(`${base}/login`);
    await page.fill('input[name=username]', 'gp');
    await page.fill('input[name=password]', PASSWORD);
    await page.click('button[type=submit]');
    // Enrolment: the key is shown once; a mistyped first code is refused and said.
    const uri = (await page.locator('main code').first().textContent()).trim();
    assert.ok(uri.startsWith('otpauth://'), uri);
    const good = totp(uri);
    const wrong = String((Number(good) + 500_000) % 1_000_000).padStart(6, '0');
    await page.fill('input[name=code]', wrong);
    const refused = await Promise.all([page.waitForResponse((res) => res.url().endsWith('/login/code')), page.click('button[type=submit]')]);
    assert.equal(refused[0].status(), 401);
    assert.match(await page.locator('[role=alert]').textContent(), /That code is not right/);
    await checked('a wrong first code');
    await page.fill('input[name=code]', good);
    await page.click('button[type=submit]');
    await page.waitForURL('**/login/code');
    assert.equal(await page.locator('main li code, main code').count() >= 10, true, 'the recovery codes');
    await page.getByRole('link', { name: 'Continue' }).click();
    await page.waitForURL('**/home');

    // The list: a first page of 50, then the rest, then back; no cursor in the URL.
    await page.goto(`${base}/patients`);
    const rows = page.locator('#list tbody tr');
    assert.equal(await rows.count(), 50);
    const first = await page.locator('#list tbody td:first-child').allTextContents();
    assert.deepEqual(first, [...first].sort((a, b) => a.localeCompare(b)), 'sorted by name within the page');
    assert.equal(await page.getByRole('button', { name: 'Previous page' }).count(), 0);
    await checked('patients, first page');
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.waitForFunction(() => document.querySelectorAll('#list tbody tr').length === 6);
    const second = await page.locator('#list tbody td:first-child').allTextContents();
    assert.equal(new Set([...first, ...second]).size, PATIENTS, 'every patient once');
    assert.ok(!page.url().includes('page'), page.url());
    await checked('patients, second page');
    await page.getByRole('button', { name: 'Previous page' }).click();
    await page.waitForFunction(() => document.querySelectorAll('#list tbody tr').length === 50);
    assert.deepEqual(await page.locator('#list tbody td:first-child').allTextContents(), first);
  } finally {
    if (browser) await browser.close();
    await stopNode(node.proc);
    rmSync(dir, { recursive: true, force: true });
  }
});
