// The notification settings page in a real browser: a patient chooses e-mail for new
// results, a wrong address is refused in words and nothing is saved, a good one is kept
// (and reaches the hub, as the operator's CLI shows); the header's unread count follows an
// emergency access without a reload (Server-Sent Events); a node admin sees the operations
// row, by e-mail, and no inbox column. Every state passes axe-core; screenshots go to
// docs/screenshots/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, accessibilityViolations, cli, signIn as signInAt, startNode, stopNode } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const SHOTS = new URL('../../docs/screenshots/', import.meta.url).pathname;

test('notification settings in the portal', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-notify-'));
  const node = await startNode(dir);
  let browser;
  try {
    const token = cli(dir, ['admin', 'token', '--scope', 'system/*.*']);
    const created = await (await fetch(`${node.base}/fhir/Patient`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Notifywell', given: ['Ada'] }] }),
    })).json();
    cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'ada', '--patient', created.id], `${PASSWORD}\n`);
    cli(dir, ['admin', 'create-user', '--role', 'node-admin', '--username', 'ops'], `${PASSWORD}\n`);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const signIn = (username) => signInAt(browser, node.base, username, PASSWORD);

    const page = await signIn('ada');
    await page.goto(`${node.base}/account`);
    await page.getByRole('link', { name: 'Notifications' }).click();
    assert.equal(await page.locator('h1').textContent(), 'Notifications');
    // The defaults: everything in the portal, nothing by e-mail.
    assert.ok(await page.getByLabel('New results: In the portal').isChecked());
    assert.ok(!(await page.getByLabel('New results: By e-mail').isChecked()));
    assert.deepEqual(await accessibilityViolations(page), [], 'notifications (axe-core)');

    // A wrong address: refused in words, nothing saved.
    await page.fill('#email', 'not-an-address');
    await page.getByLabel('New results: By e-mail').check();
    // The browser's own check would stop the form first; the server's is what is tested.
    await page.locator('#notify-form').evaluate((f) => f.setAttribute('novalidate', ''));
    await page.click('#notify-form button[type=submit]');
    await page.waitForLoadState();
    assert.match(await page.locator('[role=alert]').textContent(), /not an e-mail address/);
    assert.deepEqual(await accessibilityViolations(page), [], 'notifications, refused (axe-core)');
    assert.match(cli(dir, ['notifications', 'settings', '--patient', created.id]), /email\t-/);

    // A good one, and e-mail for results.
    await page.fill('#email', 'ada@example.org');
    await page.click('#notify-form button[type=submit]');
    await page.waitForLoadState();
    assert.equal(await page.locator('[role=status]').textContent(), 'Saved.');
    await page.goto(`${node.base}/account/notifications`);
    assert.equal(await page.locator('[role=status]').count(), 0);
    assert.ok(await page.getByLabel('New results: By e-mail').isChecked());
    assert.equal(await page.inputValue('#email'), 'ada@example.org');
    await page.screenshot({ path: join(SHOTS, 'patient-notifications.png'), fullPage: true });
    const shown = cli(dir, ['notifications', 'settings', '--patient', created.id]);
    assert.match(shown, /email\tada@example\.org/);
    assert.match(shown, /results\tinbox,email/);

    // The header's count of unread notifications is live: an emergency access declared
    // elsewhere shows on the open page without a reload.
    await page.goto(`${node.base}/home`);
    assert.ok(await page.locator('#inbox-live').isHidden(), 'nothing unread yet');
    const put = (path, body) => fetch(`${node.base}/fhir/${path}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
      body: JSON.stringify(body),
    });
    assert.ok((await put('Organization/h', { resourceType: 'Organization', id: 'h', name: 'General' })).ok);
    assert.ok((await put('Practitioner/er', { resourceType: 'Practitioner', id: 'er' })).ok);
    cli(dir, ['admin', 'create-user', '--role', 'practitioner', '--username', 'er', '--practitioner', 'er',
      '--organization', 'h', '--verification', 'verified'], `${PASSWORD}\n`);
    const er = cli(dir, ['admin', 'token', '--scope', 'user/*.cruds', '--user', 'er']);
    const glass = await fetch(`${node.base}/api/patients/${created.id}/break-glass`, {
      method: 'POST',
      headers: { authorization: `Bearer ${er}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'unconscious in ER' }),
    });
    assert.equal(glass.status, 201);
    await page.locator('#inbox-live').waitFor({ state: 'visible', timeout: 15000 });
    assert.equal(await page.locator('#inbox-live').textContent(), 'New notifications: 1');
    assert.deepEqual(await accessibilityViolations(page), [], 'home with the live count (axe-core)');

    // A node admin: operations by e-mail by default, and no inbox column.
    const admin = await signIn('ops');
    await admin.goto(`${node.base}/account/notifications`);
    assert.ok(await admin.getByLabel('Operations alerts: By e-mail').isChecked());
    assert.equal(await admin.getByRole('columnheader', { name: 'In the portal' }).count(), 0);
    assert.deepEqual(await accessibilityViolations(admin), [], 'admin notifications (axe-core)');
  } finally {
    if (browser) await browser.close();
    await stopNode(node.proc);
    rmSync(dir, { recursive: true, force: true });
  }
});
