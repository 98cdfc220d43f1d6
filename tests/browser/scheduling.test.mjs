// Appointments in a real browser: an admin sets up a practitioner's weekly hours (a wrong
// closing time is refused in words) and closes a holiday; a patient finds the practitioner
// by language, sees their free times, books one, moves it, cancels it; where the practice
// approves bookings, the patient's request waits in the clinician's calendar until they
// approve it; the clinician marks the patient arrived. Every state passes axe-core;
// screenshots go to docs/screenshots/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, accessibilityViolations, cli, signIn as signInAt, startNode, stopNode } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const SHOTS = new URL('../../docs/screenshots/', import.meta.url).pathname;

test('appointments in the portal', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-sched-'));
  const node = await startNode(dir);
  let browser;
  try {
    const token = cli(dir, ['admin', 'token', '--scope', 'system/*.*']);
    const put = async (path, body) => {
      const r = await fetch(`${node.base}/fhir/${path}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
        body: JSON.stringify(body),
      });
      assert.ok(r.ok, `${path}: ${r.status} ${await r.text()}`);
    };
    await put('Organization/o1', { resourceType: 'Organization', id: 'o1', name: 'Riverside Practice' });
    await put('Location/l1', { resourceType: 'Location', id: 'l1', name: 'Riverside' });
    await put('Practitioner/p1', { resourceType: 'Practitioner', id: 'p1', name: [{ given: ['Ana'], family: 'Ortega' }],
      communication: [{ coding: [{ system: 'urn:ietf:bcp:47', code: 'en' }] }] });
    const patient = await (await fetch(`${node.base}/fhir/Patient`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Bookwell', given: ['Ada'] }] }),
    })).json();
    cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'ada', '--patient', patient.id], `${PASSWORD}\n`);
    cli(dir, ['admin', 'create-user', '--role', 'practitioner', '--username', 'ortega', '--practitioner', 'p1',
      '--organization', 'o1', '--verification', 'verified'], `${PASSWORD}\n`);
    cli(dir, ['admin', 'create-user', '--role', 'node-admin', '--username', 'ops'], `${PASSWORD}\n`);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const signIn = (username) => signInAt(browser, node.base, username, PASSWORD);

    // The admin sets up the practitioner's hours: every day, all day long (so the story
    // runs whatever the hour), 20-minute consultations.
    const admin = await signIn('ops');
    await admin.getByRole('link', { name: 'Calendars' }).click();
    assert.equal(await admin.locator('h1').textContent(), 'Bookable calendars');
    assert.deepEqual(await accessibilityViolations(admin), [], 'calendars, empty (axe-core)');
    await admin.selectOption('#practitioner', 'p1');
    await admin.selectOption('#organization', 'o1');
    await admin.selectOption('#location', 'l1');
    for (const day of ['Saturday', 'Sunday']) await admin.getByLabel(day).check();
    await admin.fill('#opens', '10:00');
    await admin.fill('#closes', '09:00');
    await admin.click('#setup button[type=submit]');
    await admin.waitForLoadState();
    assert.match(await admin.locator('[role=alert]').textContent(), /closing time must be/);
    assert.deepEqual(await accessibilityViolations(admin), [], 'calendars, refused (axe-core)');
    await admin.selectOption('#practitioner', 'p1');
    await admin.selectOption('#organization', 'o1');
    await admin.selectOption('#location', 'l1');
    for (const day of ['Saturday', 'Sunday']) await admin.getByLabel(day).check();
    await admin.fill('#opens', '00:00');
    await admin.fill('#closes', '23:59');
    await admin.click('#setup button[type=submit]');
    await admin.waitForLoadState();
    assert.equal(await admin.locator('[role=status]').textContent(), 'Saved. Free times follow the new rules at once.');
    assert.match(await admin.locator('#calendars tbody').textContent(), /Ana Ortega.*mon tue wed thu fri sat sun 00:00–23:59 \(UTC\).*Consultation, 20 min/s);
    // A holiday far ahead, closed without touching the weekly hours.
    await admin.fill('#from-p1', '2030-12-24');
    await admin.fill('#to-p1', '2030-12-26');
    await admin.fill('#why-p1', 'Christmas');
    await admin.getByRole('button', { name: 'Close: Ana Ortega' }).click();
    await admin.waitForLoadState();
    assert.match(await admin.locator('#calendars tbody').textContent(), /Christmas: 2030-12-24 – 2030-12-26/);
    assert.deepEqual(await accessibilityViolations(admin), [], 'calendars (axe-core)');
    await admin.screenshot({ path: join(SHOTS, 'admin-schedules.png'), fullPage: true });

    // The patient finds the practitioner by language and books the first free time.
    const ada = await signIn('ada');
    await ada.getByRole('link', { name: 'Appointments' }).click();
    assert.equal(await ada.locator('h1').textContent(), 'Appointments');
    assert.deepEqual(await accessibilityViolations(ada), [], 'appointments, empty (axe-core)');
    await ada.fill('#language', 'en');
    await ada.getByRole('button', { name: 'Search' }).click();
    await ada.waitForLoadState();
    assert.match(await ada.locator('#find ul.results').textContent(), /Ana Ortega.*Riverside Practice.*Next free time:/s);
    await ada.getByRole('link', { name: /See free times/ }).click();
    await ada.waitForLoadState();
    const times = ada.locator('#times ul.times button');
    assert.ok((await times.count()) >= 2, 'free times are offered');
    const first = await times.nth(0).textContent();
    assert.match(first, /^Book: \w{3} \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC \(Consultation\)$/);
    assert.deepEqual(await accessibilityViolations(ada), [], 'free times (axe-core)');
    await times.nth(0).click();
    await ada.waitForLoadState();
    assert.equal(await ada.locator('[role=status]').textContent(), 'Booked. You will be reminded before it.');
    const mine = ada.locator('#mine tbody tr');
    assert.equal(await mine.count(), 1);
    assert.match(await mine.textContent(), /Ana Ortega.*Booked/s);
    await ada.screenshot({ path: join(SHOTS, 'patient-appointments.png'), fullPage: true });

    // Moved to another time, then cancelled.
    await ada.getByRole('link', { name: /^Find another time/ }).click();
    await ada.waitForLoadState();
    assert.equal(await ada.locator('#times-h').textContent(), 'Choose the new time');
    await ada.locator('#times ul.times button').nth(1).click();
    await ada.waitForLoadState();
    assert.equal(await ada.locator('[role=status]').textContent(), 'Moved.');
    assert.equal(await mine.count(), 1);
    await ada.getByRole('button', { name: /^Cancel/ }).click();
    await ada.waitForLoadState();
    assert.equal(await ada.locator('[role=status]').textContent(), 'Cancelled. The time is free for others.');
    assert.match(await mine.textContent(), /Cancelled/);
    assert.deepEqual(await accessibilityViolations(ada), [], 'appointments, cancelled (axe-core)');

    // The practice now approves bookings: the request waits in the clinician's calendar.
    await put('Organization/o1', { resourceType: 'Organization', id: 'o1', name: 'Riverside Practice',
      extension: [{ url: 'https://medmesh.dev/fhir/StructureDefinition/booking-approval', valueBoolean: true }] });
    await ada.goto(`${node.base}/appointments?practitioner=Practitioner%2Fp1#times`);
    await ada.locator('#times ul.times button').nth(0).click();
    await ada.waitForLoadState();
    assert.equal(await ada.locator('[role=status]').textContent(), 'Requested. The practice confirms it; you will be told.');
    assert.match(await ada.locator('#mine tbody').textContent(), /Waiting for the practice to confirm/);

    const doc = await signIn('ortega');
    // The clinician was told of the request on their home page (the hub tells at once).
    for (let i = 0; i < 100 && !(await doc.locator('#inbox').textContent()).includes('awaits'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      await doc.reload();
    }
    assert.match(await doc.locator('#inbox').textContent(), /A booking request awaits your approval at medmesh/);
    assert.deepEqual(await accessibilityViolations(doc), [], 'clinician home with a notice (axe-core)');
    // They mark it read: it stays listed, without the button.
    await doc.getByRole('button', { name: /^Mark read: A booking request awaits/ }).click();
    await doc.waitForLoadState();
    assert.match(await doc.locator('#inbox').textContent(), /A booking request awaits your approval/);
    assert.equal(await doc.getByRole('button', { name: /^Mark read: A booking request awaits/ }).count(), 0);
    await doc.getByRole('link', { name: 'Calendar', exact: true }).click();
    assert.equal(await doc.locator('h1').textContent(), 'Calendar');
    assert.match(await doc.locator('#requests tbody').textContent(), /Ada Bookwell.*Consultation/s);
    assert.deepEqual(await accessibilityViolations(doc), [], 'calendar with a request (axe-core)');
    await doc.getByRole('button', { name: /^Approve: Ada Bookwell/ }).click();
    await doc.waitForLoadState();
    assert.match(await doc.locator('#requests').textContent(), /No requests are waiting/);
    // The week shows the booking; the patient arrives.
    await doc.getByRole('link', { name: 'Show the week' }).click();
    await doc.waitForLoadState();
    assert.match(await doc.locator('#calendar').textContent(), /Ada Bookwell.*Booked/s);
    await doc.getByRole('button', { name: /^Arrived: Ada Bookwell/ }).click();
    await doc.waitForLoadState();
    await doc.getByRole('link', { name: 'Show the week' }).click();
    assert.match(await doc.locator('#calendar').textContent(), /Ada Bookwell.*Arrived/s);
    // The figures count the appointment as arrived, and none missed.
    assert.match(await doc.locator('#figures tbody').textContent(), /Arrived\s*1/);
    assert.equal(await doc.locator('#no-show-rate').textContent(), 'Missed, of those that came due: 0%');
    // The figures count the appointment as arrived, and none missed.
    assert.match(await doc.locator('#figures tbody').textContent(), /Arrived\s*1/);
    assert.equal(await doc.locator('#no-show-rate').textContent(), 'Missed, of those that came due: 0%');
    assert.deepEqual(await accessibilityViolations(doc), [], 'calendar, week (axe-core)');
    await doc.screenshot({ path: join(SHOTS, 'clinician-calendar.png'), fullPage: true });
    await ada.goto(`${node.base}/appointments`);
    assert.match(await ada.locator('#mine tbody').textContent(), /Arrived/);

    // Each choice's radio sits on its words' line, before them (a full-width radio once
    // sat centred above its label).
    for (const value of ['busy', 'detailed']) {
      const radio = await ada.locator(`#feed input[value=${value}]`).boundingBox();
      const label = await ada.locator('#feed label', { has: ada.locator(`input[value=${value}]`) }).boundingBox();
      assert.ok(radio.width < 40, `the ${value} radio is its own size, not the form's width`);
      assert.ok(label.height < 2 * radio.height + 8, `the ${value} radio and its words share a line`);
    }

    // The patient's private calendar link: times only by default; the link is shown once,
    // is an iCalendar feed, and stops working when the patient stops it.
    await ada.getByRole('button', { name: 'Make a new link' }).click();
    await ada.waitForLoadState();
    assert.equal(await ada.locator('h1').textContent(), 'Your calendar link');
    const feedUrl = await ada.inputValue('#feed-url');
    assert.match(feedUrl, /\/feeds\/[A-Za-z0-9_-]{40,}\.ics$/);
    assert.deepEqual(await accessibilityViolations(ada), [], 'calendar link (axe-core)');
    const feed = await fetch(feedUrl);
    assert.equal(feed.status, 200);
    const ics = await feed.text();
    assert.match(ics, /BEGIN:VCALENDAR/);
    assert.match(ics, /SUMMARY:Appointment\r\n/);
    assert.ok(!ics.includes('Ortega') && !ics.includes('Bookwell'), 'a busy feed names no one');
    await ada.getByRole('link', { name: 'Back' }).click();
    await ada.getByRole('button', { name: 'Stop my link' }).click();
    await ada.waitForLoadState();
    assert.equal(await ada.locator('[role=status]').textContent(), 'Your calendar link no longer works.');
    assert.equal((await fetch(feedUrl)).status, 404);

    // The practice keeps a waiting list: the patient joins it from the free times.
    await put('Organization/o1', { resourceType: 'Organization', id: 'o1', name: 'Riverside Practice',
      extension: [{ url: 'https://medmesh.dev/fhir/StructureDefinition/booking-waitlist', valueBoolean: true }] });
    await ada.goto(`${node.base}/appointments?practitioner=Practitioner%2Fp1#times`);
    await ada.getByRole('button', { name: 'Join the waiting list' }).click();
    await ada.waitForLoadState();
    assert.match(await ada.locator('[role=status]').textContent(), /You are on the waiting list/);
    assert.match(await ada.locator('#mine tbody').textContent(), /On the waiting list/);
    assert.deepEqual(await accessibilityViolations(ada), [], 'appointments, waiting (axe-core)');
  } finally {
    if (browser) await browser.close();
    await stopNode(node.proc);
    rmSync(dir, { recursive: true, force: true });
  }
});
