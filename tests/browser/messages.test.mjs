// Secure messages in a real browser. A patient writes to her care team; the nurse's list
// counts it unread and, left open, counts the patient's next message as it arrives; the
// nurse opens the thread (the patient's page shows "Read by" without a reload) and answers,
// and the answer appears on the patient's open page. Then a sealed thread: the GP's first
// attempt says the nurse has no key yet; once she has opened the thread, his message is
// sealed in his browser, opened in hers as it arrives, and the node holds only an envelope
// it cannot read. Every state passes axe-core; screenshots go to docs/screenshots/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, accessibilityViolations, apiCall, cli, signIn, startNode, stopNode } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const SHOTS = new URL('../../docs/screenshots/', import.meta.url).pathname;
const SECRET = 'Potassium 6.1: please repeat the test';

test('a patient, a nurse and a GP message each other, sealed when they ask', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-messages-'));
  const node = await startNode(dir);
  let browser;
  try {
    const admin = cli(dir, ['admin', 'token', '--scope', 'system/*.*']);
    const call = (method, path, body, token = admin) => apiCall(node.base, token, method, path, body);
    await call('PUT', '/fhir/Organization/o1', { resourceType: 'Organization', id: 'o1', name: 'Riverside Practice' });
    await call('PUT', '/fhir/Practitioner/p1', { resourceType: 'Practitioner', id: 'p1', name: [{ given: ['Ana'], family: 'Ortega' }] });
    await call('PUT', '/fhir/Practitioner/n1', { resourceType: 'Practitioner', id: 'n1', name: [{ given: ['Nora'], family: 'Quinn' }] });
    await call('PUT', '/fhir/Patient/ada', { resourceType: 'Patient', id: 'ada', name: [{ family: 'Bookwell', given: ['Ada'] }],
      generalPractitioner: [{ reference: 'Practitioner/p1' }] });
    cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'ada', '--patient', 'ada'], `${PASSWORD}\n`);
    for (const [user, id] of [['ortega', 'p1'], ['quinn', 'n1']]) {
      cli(dir, ['admin', 'create-user', '--role', 'practitioner', '--username', user, '--practitioner', id,
        '--organization', 'o1', '--verification', 'verified'], `${PASSWORD}\n`);
    }
    await call('PUT', '/fhir/DocumentReference/letter', { resourceType: 'DocumentReference', id: 'letter', status: 'current',
      description: 'Discharge letter', subject: { reference: 'Patient/ada' }, date: '2026-11-30T10:00:00Z',
      content: [{ attachment: { contentType: 'text/plain', url: 'Binary/letter-bytes' } }] });
    const gpToken = cli(dir, ['admin', 'token', '--scope', 'user/*.cruds', '--user', 'ortega']);
    await call('POST', '/api/patients/ada/care-team/members', { member: 'Practitioner/n1', role: 'nurse' }, gpToken);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });

    // The patient writes to her care team.
    const page = await signIn(browser, node.base, 'ada', PASSWORD);
    await page.getByRole('link', { name: 'Messages' }).click();
    await page.waitForLoadState();
    assert.equal(await page.locator('h1').textContent(), 'Messages');
    assert.deepEqual(await accessibilityViolations(page), [], 'no messages yet (axe-core)');
    await page.fill('#topic', 'My tablets');
    await page.fill('#text', 'Can I take them with food?');
    await page.getByRole('button', { name: 'Start the conversation' }).click();
    await page.waitForURL('**/messages/*');
    assert.match(await page.locator('#thread-messages').textContent(), /Can I take them with food\?/);

    // The nurse's list counts it; left open, it counts the next one as it arrives.
    const nurse = await signIn(browser, node.base, 'quinn', PASSWORD);
    await nurse.goto(`${node.base}/messages`);
    assert.match(await nurse.locator('#threads').textContent(), /My tablets\s*Unread: 1/);
    assert.deepEqual(await accessibilityViolations(nurse), [], 'a thread unread (axe-core)');
    await page.fill('#text', 'Or only after meals?');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.waitForLoadState();
    await nurse.locator('#threads', { hasText: 'Unread: 2' }).waitFor({ timeout: 10000 });

    // She opens it and answers; the patient's open page shows the receipt and the answer.
    await nurse.getByRole('link', { name: 'My tablets' }).click();
    await nurse.waitForLoadState();
    await page.locator('.read-receipt', { hasText: 'Read by Nora Quinn' }).first().waitFor({ timeout: 10000 });
    await nurse.fill('#text', 'Yes, with breakfast.');
    await nurse.selectOption('#attach', ['letter']);
    await nurse.getByRole('button', { name: 'Send' }).click();
    await nurse.waitForLoadState();
    await page.locator('#thread-messages', { hasText: 'Yes, with breakfast.' }).waitFor({ timeout: 10000 });
    assert.equal(await page.locator('#thread-messages a.attachment[href="/documents/letter-bytes"]', { hasText: 'Discharge letter' }).count(), 1, 'the letter goes with it');
    assert.deepEqual(await accessibilityViolations(page), [], 'a thread (axe-core)');
    await page.screenshot({ path: join(SHOTS, 'message-thread.png'), fullPage: true });

    // A sealed thread between the GP and the nurse.
    const gp = await signIn(browser, node.base, 'ortega', PASSWORD);
    await gp.goto(`${node.base}/messages`);
    await gp.fill('#topic', 'Ada: a result to repeat');
    await gp.selectOption('#to', ['Practitioner/n1']);
    await gp.fill('#about', 'ada');
    await gp.check('#sealed');
    await gp.getByRole('button', { name: 'Start the conversation' }).click();
    await gp.waitForURL('**/messages/*');
    const sealedPath = new URL(gp.url()).pathname;
    assert.match(await gp.locator('.hint').first().textContent(), /Sealed end to end/);
    await gp.fill('#text', SECRET);
    await gp.getByRole('button', { name: 'Send' }).click();
    await gp.locator('[role=alert]', { hasText: 'Nora Quinn has no key yet' }).waitFor({ timeout: 15000 });

    // She opens the thread once (her browser makes and publishes its key); then he sends.
    await nurse.goto(`${node.base}${sealedPath}`);
    for (let i = 0; i < 100; i++) {
      const keys = await call('GET', `/api/keys?owner=${encodeURIComponent('Practitioner/n1')}`);
      if ((keys.keys ?? []).some((k) => k.kind === 'sealing')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await gp.getByRole('button', { name: 'Send' }).click();
    await gp.locator('#thread-messages .message-text', { hasText: SECRET }).waitFor({ timeout: 15000 });
    await nurse.locator('#thread-messages .message-text', { hasText: SECRET }).waitFor({ timeout: 15000 });
    assert.deepEqual(await accessibilityViolations(nurse), [], 'a sealed thread (axe-core)');
    await nurse.screenshot({ path: join(SHOTS, 'sealed-thread.png'), fullPage: true });

    // The node holds an envelope it cannot read.
    const thread = sealedPath.split('/').at(-1);
    const stored = await call('GET', `/fhir/Communication?part-of=Communication/${thread}`);
    const text = JSON.stringify(stored);
    assert.ok(stored.entry?.length === 1, text);
    assert.ok(!text.includes('Potassium'), 'no clear text in what the node returns');
    assert.equal(stored.entry[0].resource.payload[0].contentAttachment.contentType, 'application/vnd.medmesh.sealed-message+json');

    await nurse.goto(`${node.base}/messages`);
    assert.deepEqual(await accessibilityViolations(nurse), [], 'the list (axe-core)');
    await nurse.screenshot({ path: join(SHOTS, 'messages.png'), fullPage: true });
    const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, locale: 'en-GB',
      storageState: await page.context().storageState() });
    const small = await phone.newPage();
    await small.goto(`${node.base}/messages`);
    assert.ok(await small.evaluate(() => document.documentElement.scrollWidth <= 375), 'no horizontal scrolling at 375 px');
  } finally {
    await browser?.close();
    await stopNode(node.proc);
    rmSync(dir, { recursive: true, force: true });
  }
});
