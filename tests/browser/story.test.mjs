// The portals' story in a real browser, on SQLite and on PostgreSQL: an admin verifies a
// practitioner; the practitioner signs in with mandatory TOTP (enrolled on the spot), finds
// their patient, sees what the patient's consent restricts marked as such, writes to the
// record, invites the patient and refers them to a colleague, who accepts; the patient
// signs up with the invitation, turns on TOTP, uploads a signed document, gives another
// practitioner access, and sees that practitioner's access in their log, verified against
// the signed checkpoint; seals a document for that practitioner, who opens it and shares it
// with the GP, and revokes him; the practitioner breaks the glass on a patient not in their care,
// under a banner, and that patient sees it flagged. Every page passes axe-core (WCAG 2.1 A
// and AA) and carries the node's CSP; screenshots go to docs/screenshots/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, accessibilityViolations, cli, startNode, stopNode, totp } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const SHOTS = new URL('../../docs/screenshots/', import.meta.url).pathname;
const POSTGRES = process.env.MEDMESH_TEST_POSTGRES;

const patient = (id, given, family, birthDate, extra = {}) => ({
  resourceType: 'Patient', id, name: [{ given: [given], family }], birthDate, gender: 'female',
  identifier: [{ system: 'urn:example:mrn', value: `MRN-${id}` }], ...extra,
});
const practitioner = (id, given, family) => ({
  resourceType: 'Practitioner', id, name: [{ prefix: ['Dr'], given: [given], family }],
});

for (const kind of ['sqlite', 'postgres']) {
  test(`patients, clinicians and an admin use the portals (${kind})`, async () => {
    assert.ok(kind === 'sqlite' || POSTGRES, 'MEDMESH_TEST_POSTGRES must name the PostgreSQL server');
    const dir = mkdtempSync(join(tmpdir(), 'medmesh-story-'));
    let env = {};
    if (kind === 'postgres') {
      const name = `medmesh_story_${process.pid}_${Date.now()}`;
      const r = spawnSync('psql', ['-qAtX', `${POSTGRES}/postgres`, '-c', `CREATE DATABASE ${name}`], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      env = { MEDMESH_DATABASE_URL: `${POSTGRES}/${name}` };
    }
    const node = await startNode(dir, env);
    const base = node.base;
    let browser;
    try {
      // The directory and two patients, written by the operator.
      const token = cli(dir, ['admin', 'token', '--scope', 'system/*.*'], undefined, env);
      const put = async (resource) => {
        const r = await fetch(`${base}/fhir/${resource.resourceType}/${resource.id}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
          body: JSON.stringify(resource),
        });
        assert.ok(r.ok, `PUT ${resource.resourceType}/${resource.id}: ${r.status} ${await r.text()}`);
      };
      await put({ resourceType: 'Organization', id: 'heart', name: 'Heart Institute' });
      await put(practitioner('gp', 'Grace', 'Parker'));
      await put(practitioner('card', 'Carl', 'Diaz'));
      await put(practitioner('er', 'Erin', 'Rhodes'));
      await put({ resourceType: 'PractitionerRole', id: 'card-role', practitioner: { reference: 'Practitioner/card' },
        organization: { reference: 'Organization/heart' }, specialty: [{ coding: [{ system: 'http://snomed.info/sct', code: '394579002', display: 'Cardiology' }], text: 'Cardiology' }] });
      await put(patient('alice', 'Alice', 'Example', '1980-02-03', { generalPractitioner: [{ reference: 'Practitioner/gp' }] }));
      await put(patient('bob', 'Bob', 'Other', '1975-06-07'));
      await put({ resourceType: 'Observation', id: 'bp1', status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: 'http://loinc.org', code: '8480-6', display: 'Systolic blood pressure' }] },
        subject: { reference: 'Patient/alice' }, effectiveDateTime: '2026-10-01T09:00:00Z',
        valueQuantity: { value: 128, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } });
      await put({ resourceType: 'Condition', id: 'dep', meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' }] },
        clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
        code: { text: 'Depression' }, subject: { reference: 'Patient/alice' } });
      await put({ resourceType: 'Condition', id: 'asthma',
        clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
        code: { text: 'Asthma' }, subject: { reference: 'Patient/alice' } });
      await put({ resourceType: 'Condition', id: 'bob-flu', code: { text: 'Influenza' }, subject: { reference: 'Patient/bob' } });
      const user = (args) => cli(dir, ['admin', 'create-user', ...args], `${PASSWORD}\n`, env);
      user(['--role', 'node-admin', '--username', 'admin']);
      user(['--role', 'practitioner', '--username', 'gp', '--practitioner', 'gp']);
      user(['--role', 'practitioner', '--username', 'card', '--practitioner', 'card', '--verification', 'verified']);
      user(['--role', 'practitioner', '--username', 'er', '--practitioner', 'er', '--verification', 'verified']);
      user(['--role', 'patient', '--username', 'bob', '--patient', 'bob']);

      browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
      const enrolled = new Map();
      // Signs in; a TOTP account enrols on its first sign-in (the QR code's key is read off
      // the page, as an authenticator app would scan it) and uses its app afterwards.
      const signIn = async (username, viewport = { width: 1280, height: 900 }) => {
        const context = await browser.newContext({ viewport, locale: 'en-GB' });
        const page = await context.newPage();
        await page.goto(`${base}/login`);
        await page.fill('input[name=username]', username);
        await page.fill('input[name=password]', PASSWORD);
        await page.click('button[type=submit]');
        await page.waitForLoadState();
        if (await page.locator('input[name=code]').count()) {
          const keys = page.locator('main code');
          const shown = (await keys.count()) > 0 ? await keys.first().textContent() : '';
          if (shown?.startsWith('otpauth://')) enrolled.set(username, shown);
          const uri = enrolled.get(username);
          assert.ok(uri, `${username} has an authenticator`);
          await page.fill('input[name=code]', totp(uri, shown?.startsWith('otpauth://') ? 0 : 1));
          await page.click('button[type=submit]');
          await page.waitForLoadState();
          if (page.url().endsWith('/login/code')) {
            // The recovery codes, shown once after enrolment.
            assert.ok(await page.locator('li code, code').count() >= 1);
            await page.getByRole('link', { name: 'Continue' }).click();
          }
        }
        await page.waitForURL('**/home');
        return { context, page };
      };
      const checked = async (page, what) => {
        assert.deepEqual(await accessibilityViolations(page), [], `${what} (axe-core)`);
        assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), `${what}: no sideways scroll`);
      };
      const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

      // 0. The signed-out pages, in the browser's language.
      for (const [locale, title] of [['en-GB', 'Sign in'], ['fr-FR', 'Se connecter']]) {
        const visitor = await browser.newContext({ viewport: { width: 375, height: 800 }, locale });
        const page = await visitor.newPage();
        const first = await page.goto(`${base}/login`);
        assert.match(first.headers()['content-security-policy'], /default-src 'none'/);
        assert.equal(await page.locator('h1').textContent(), title);
        await checked(page, `sign-in (${locale})`);
        if (locale === 'en-GB') await shot(page, 'sign-in-phone');
        await page.goto(`${base}/register`);
        await checked(page, `register (${locale})`);
        // The node's own notices too: an app's invalid request, an unknown sign-in provider.
        const invalid = await page.goto(`${base}/oauth/authorize?response_type=code&client_id=nobody&redirect_uri=https://app.example/cb`);
        assert.equal(invalid.status(), 400);
        assert.equal(await page.locator('h1').textContent(), locale === 'fr-FR'
          ? "La demande de cette application n'est pas valide" : "This app's request is invalid");
        assert.match(invalid.headers()['content-security-policy'], /default-src 'none'/);
        await checked(page, `an app's invalid request (${locale})`);
        assert.equal((await page.goto(`${base}/login/external/nowhere`)).status(), 404);
        assert.equal(await page.locator('h1').textContent(), locale === 'fr-FR' ? 'Fournisseur inconnu' : 'Unknown provider');
        await visitor.close();
      }

      // 1. The admin verifies the practitioner.
      const admin = await signIn('admin');
      let r = await admin.page.goto(`${base}/admin`);
      assert.match(r.headers()['content-security-policy'], /default-src 'none'/);
      const gpRow = admin.page.locator('tr[data-user=gp]');
      assert.equal((await gpRow.locator('.status').textContent()).trim(), 'Not verified');
      await checked(admin.page, 'admin users');
      await Promise.all([admin.page.waitForURL('**/admin'), gpRow.getByRole('button', { name: 'Verify: gp' }).click()]);
      assert.equal((await admin.page.locator('tr[data-user=gp] .status').textContent()).trim(), 'Verified');
      await shot(admin.page, 'admin-users');
      // Apps: register one; its secret is shown once.
      await admin.page.goto(`${base}/admin/clients`);
      await admin.page.fill('#client-name', 'Clinic app');
      await admin.page.selectOption('#client-kind', 'confidential');
      await admin.page.fill('#client-redirects', 'https://app.example/callback');
      await admin.page.click('#register button[type=submit]');
      assert.ok((await admin.page.locator('#client-secret').textContent()).length > 20);
      const clientId = (await admin.page.locator('#client-id').textContent()).trim();
      assert.equal(await admin.page.locator('#clients tbody tr').count(), 1);
      await checked(admin.page, 'admin clients');
      // Keys and the checkpoint.
      await admin.page.goto(`${base}/admin/keys`);
      await checked(admin.page, 'admin keys');
      await shot(admin.page, 'admin-keys');

      // 2. The GP signs in (TOTP, enrolled now), finds Alice, sees what is restricted.
      const gp = await signIn('gp');
      await gp.page.goto(`${base}/patients`);
      assert.deepEqual(await gp.page.locator('#list tbody td:first-child').allTextContents(), ['Alice Example'], await gp.page.locator('main').textContent());
      await checked(gp.page, 'patients');
      await gp.page.fill('#name', 'Alice');
      await gp.page.fill('#birthdate', '1980-02-03');
      // The search POSTs (htmx swaps the list in place; without script the form still works).
      await gp.page.evaluate(() => { window.samePage = true; });
      await gp.page.click('form.search button[type=submit]');
      await gp.page.locator('#list-h', { hasText: 'Search results' }).waitFor();
      assert.equal(await gp.page.evaluate(() => window.samePage), true, 'swapped in place by htmx');
      assert.ok(!gp.page.url().includes('Alice'), 'no name in the URL');
      await shot(gp.page, 'clinician-patients');
      await gp.page.click('#list a');
      await gp.page.waitForURL('**/patients/alice');
      assert.equal(await gp.page.locator('h1').textContent(), 'Alice Example');
      assert.deepEqual(await gp.page.locator('#restricted li').allTextContents(), ['Conditions: mental health']);
      assert.deepEqual(await gp.page.locator('#conditions .what').allTextContents(), ['Asthma']);
      await checked(gp.page, 'chart');
      // Writing: a measurement and a note.
      await gp.page.click('text=Add to the record');
      await gp.page.selectOption('#obs-code', '8480-6');
      await gp.page.fill('#obs-value', '151');
      await Promise.all([gp.page.waitForURL('**/patients/alice'), gp.page.click('#observation button[type=submit]')]);
      assert.ok((await gp.page.locator('#results').textContent()).includes('151 mm[Hg]'));
      await gp.page.click('text=Add to the record');
      await checked(gp.page, 'write');
      await gp.page.fill('#note-title', 'Asthma review');
      await gp.page.fill('#note-text', 'Inhaler technique checked.');
      await Promise.all([gp.page.waitForURL('**/patients/alice'), gp.page.click('#note button[type=submit]')]);
      assert.ok((await gp.page.locator('#documents').textContent()).includes('Asthma review'));
      await shot(gp.page, 'clinician-chart');
      // A document signed by the clinician's browser key, filed in Alice's record.
      await gp.page.goto(`${base}/account/documents`);
      await gp.page.locator('#key-status[data-public-key]').waitFor();
      assert.match(await gp.page.locator('#key-status').textContent(), /signs as Practitioner\/gp/);
      await checked(gp.page, 'signed upload');
      await gp.page.fill('#patient', 'alice');
      await gp.page.fill('#title', 'Spirometry report');
      await gp.page.setInputFiles('#file', { name: 'spirometry.txt', mimeType: 'text/plain', buffer: Buffer.from('FEV1 3.1 L\n') });
      await gp.page.click('#upload button[type=submit]');
      await gp.page.locator('#result[data-binary]').waitFor();
      await gp.page.goto(`${base}/patients/alice`);
      const report = gp.page.locator('#documents li', { hasText: 'Spirometry report' });
      assert.match(await report.locator('.doc-status').textContent(), /Signed by Dr Grace Parker/);
      // An invitation for Alice.
      await gp.page.click('text=Invite to the patient portal');
      const invitation = (await gp.page.locator('#invitation-code').textContent()).trim();
      // A referral to the cardiologist, found in the directory by specialty.
      await gp.page.getByRole('link', { name: 'Refer', exact: true }).click();
      await gp.page.fill('#dir-specialty', 'cardio');
      await gp.page.click('form.search button[type=submit]');
      await gp.page.locator('#colleagues-h').waitFor();
      assert.deepEqual(await gp.page.locator('#colleagues h3').allTextContents(), ['Dr Carl Diaz']);
      await checked(gp.page, 'refer');
      await gp.page.fill('#reason-1', 'Palpitations');
      await Promise.all([gp.page.waitForURL('**/referrals'), gp.page.click('#colleagues button[type=submit]')]);
      assert.ok((await gp.page.locator('#sent').textContent()).includes('Dr Carl Diaz'));

      // 3. The cardiologist accepts; Alice is then among their patients.
      const card = await signIn('card');
      assert.match(await card.page.locator('#referrals').textContent(), /A referral from Dr Grace Parker/);
      await checked(card.page, 'clinician home');
      await card.page.goto(`${base}/patients`);
      assert.equal(await card.page.locator('#list tbody tr').count(), 0);
      await card.page.goto(`${base}/referrals`);
      assert.ok((await card.page.locator('#incoming').textContent()).includes('Dr Grace Parker'));
      await checked(card.page, 'referrals');
      await shot(card.page, 'clinician-referrals');
      await Promise.all([card.page.waitForURL('**/referrals'), card.page.click('#incoming button[type=submit]')]);
      await card.page.goto(`${base}/patients`);
      assert.deepEqual(await card.page.locator('#list tbody td:first-child').allTextContents(), ['Alice Example']);

      // 4. Alice signs up with the invitation, turns on TOTP, uploads a signed document.
      const visitor = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB' });
      const signup = await visitor.newPage();
      await signup.goto(`${base}/register`);
      await signup.fill('#invitation', invitation);
      await signup.fill('#username', 'alice');
      await signup.fill('#password', PASSWORD);
      await signup.click('button[type=submit]');
      assert.match(await signup.locator('main').textContent(), /Your account is ready/);
      await visitor.close();
      let alice = await signIn('alice');
      await alice.page.goto(`${base}/account`);
      await checked(alice.page, 'account');
      await alice.page.click('#two-factor button[type=submit]');
      const uri = await alice.page.locator('#otpauth').textContent();
      assert.ok(await alice.page.locator('figure.qr svg').count() === 1, 'a QR code');
      await alice.page.fill('#totp-code', totp(uri));
      await alice.page.click('#two-factor button[type=submit]');
      assert.equal(await alice.page.locator('#recovery-codes li').count(), 10);
      await checked(alice.page, 'account, recovery codes');
      await shot(alice.page, 'patient-account');
      enrolled.set('alice', uri);
      await alice.context.close();
      alice = await signIn('alice');
      // An app asks Alice for access: the consent screen, in the portal's frame.
      await alice.page.goto(`${base}/oauth/authorize?${new URLSearchParams({
        response_type: 'code', client_id: clientId, redirect_uri: 'https://app.example/callback',
        scope: 'openid fhirUser launch/patient patient/Observation.rs', state: 's1', aud: `${base}/fhir`,
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
      })}`);
      assert.equal(await alice.page.locator('h1').textContent(), 'Clinic app asks for access');
      assert.ok((await alice.page.locator('.scopes').textContent()).includes("read one patient's Results and measurements"));
      await checked(alice.page, 'consent screen');
      await alice.page.goto(`${base}/account/documents`);
      await alice.page.locator('#key-status[data-public-key]').waitFor();
      await alice.page.fill('#title', 'Peak flow diary');
      await alice.page.setInputFiles('#file', { name: 'peak-flow.txt', mimeType: 'text/plain', buffer: Buffer.from('2026-12-01 420 L/min\n') });
      await alice.page.click('#upload button[type=submit]');
      await alice.page.locator('#result[data-binary]').waitFor();
      const binary = await alice.page.locator('#result').getAttribute('data-binary');
      await alice.page.goto(`${base}/documents`);
      const diary = alice.page.locator('#documents li', { hasText: 'Peak flow diary' });
      assert.match(await diary.locator('.doc-status').textContent(), /Signed by Alice Example on .*the signature was verified/);
      await checked(alice.page, 'documents');
      await shot(alice.page, 'patient-documents');
      const opened = await alice.page.request.get(`${base}/documents/${binary}`);
      assert.equal(opened.status(), 200);
      assert.equal(await opened.text(), '2026-12-01 420 L/min\n');
      assert.match(opened.headers()['content-security-policy'], /sandbox/);
      const saved = await alice.page.request.get(`${base}/documents/${binary}?download=1`);
      assert.equal(saved.headers()['content-disposition'], 'attachment');

      // 5. Alice gives Dr Rhodes access; his access shows in her log, verified.
      await alice.page.goto(`${base}/sharing`);
      await alice.page.fill('#find-name', 'Rhodes');
      await alice.page.click('#give form[role=search] button[type=submit]');
      await checked(alice.page, 'sharing, directory');
      await Promise.all([alice.page.waitForURL('**/sharing?saved=1'), alice.page.getByRole('button', { name: 'Give access: Dr Erin Rhodes' }).click()]);
      assert.match(await alice.page.locator('#saved').textContent(), /next request/);
      assert.ok((await alice.page.locator('#now').textContent()).includes('Dr Erin Rhodes'));
      assert.ok((await alice.page.locator('#referrals').textContent()).includes('Dr Carl Diaz'));
      await checked(alice.page, 'sharing');
      await shot(alice.page, 'patient-sharing');
      const er = await signIn('er');
      await er.page.goto(`${base}/patients/alice`);
      assert.equal(await er.page.locator('h1').textContent(), 'Alice Example');
      await alice.page.goto(`${base}/account/audit`);
      const status = alice.page.locator('#verify-status:not([data-state=checking])');
      await status.waitFor();
      assert.equal(await status.getAttribute('data-state'), 'verified', await status.textContent());
      assert.match(await status.textContent(), /Verified against the checkpoint of .*: these are all \d+ accesses/);
      assert.ok((await alice.page.locator('#entries tbody').textContent()).includes('er (practitioner)'));
      await checked(alice.page, 'access log');
      await shot(alice.page, 'patient-access-log');
      // 5b. Alice seals a document end to end for Dr Rhodes; he opens it in his browser, shares
      // it further with her GP, who opens it; Alice revokes Dr Rhodes, whose next open fails.
      await er.page.goto(`${base}/account/documents`);
      await er.page.locator('#key-status[data-public-key]').waitFor();
      await alice.page.goto(`${base}/account/documents`);
      await alice.page.check('#seal');
      await alice.page.getByLabel('Dr Erin Rhodes').check();
      await checked(alice.page, 'sealed upload');
      await alice.page.fill('#title', 'HIV test result');
      await alice.page.setInputFiles('#file', { name: 'hiv.txt', mimeType: 'text/plain', buffer: Buffer.from('HIV-1/2 antibodies: not detected\n') });
      await alice.page.click('#upload button[type=submit]');
      await alice.page.locator('#result[data-binary]').waitFor();
      const sealedBinary = await alice.page.locator('#result').getAttribute('data-binary');
      const ciphertext = await alice.page.request.get(`${base}/documents/${sealedBinary}`);
      assert.ok(!(await ciphertext.body()).includes('not detected'), 'the node serves ciphertext only');
      await alice.page.goto(`${base}/documents`);
      await alice.page.locator('#documents li', { hasText: 'HIV test result' }).getByRole('link', { name: /Open, share or revoke/ }).click();
      await alice.page.waitForURL(`**/documents/${sealedBinary}/sealed`);
      assert.match(await alice.page.locator('.holders').textContent(), /Dr Erin Rhodes/);
      const openSealed = async (page) => {
        await page.goto(`${base}/documents/${sealedBinary}/sealed`);
        await page.click('#open');
        const status = page.locator('#open-status:not([data-state=opening])');
        await status.waitFor();
        return { state: await status.getAttribute('data-state'), said: await status.textContent() };
      };
      assert.equal((await openSealed(alice.page)).state, 'opened');
      assert.equal(await alice.page.locator('#opened-text').textContent(), 'HIV-1/2 antibodies: not detected\n');
      await checked(alice.page, 'sealed document');
      await shot(alice.page, 'patient-sealed-document');
      assert.equal((await openSealed(er.page)).state, 'opened');
      assert.equal(await er.page.locator('#opened-text').textContent(), 'HIV-1/2 antibodies: not detected\n');
      await checked(er.page, 'sealed document (clinician)');
      // The GP's browser made its keys when it uploaded above; Dr Rhodes shares with her.
      assert.equal((await openSealed(gp.page)).state, 'failed');
      await er.page.selectOption('#share-to', { label: 'Dr Grace Parker' });
      await er.page.click('#share button[type=submit]');
      await er.page.locator('#share-status[data-state=shared]').waitFor();
      const gpOpened = await openSealed(gp.page);
      assert.equal(gpOpened.state, 'opened', gpOpened.said);
      // Alice sees both holders and revokes Dr Rhodes.
      await alice.page.goto(`${base}/documents/${sealedBinary}/sealed`);
      assert.match(await alice.page.locator('.holders').textContent(), /Dr Grace Parker\s*added by Dr Erin Rhodes/);
      await Promise.all([alice.page.waitForURL(/\/sealed\?revoked=1$/), alice.page.getByRole('button', { name: /^Revoke\b.*Dr Erin Rhodes$/ }).click()]);
      assert.match(await alice.page.locator('#revoked').textContent(), /next request/);
      const refused = await openSealed(er.page);
      assert.equal(refused.state, 'failed');
      assert.match(refused.said, /holds no key/);
      // A patient who puts another id in a URL sees "not found".
      r = await alice.page.goto(`${base}/patients/bob`);
      assert.equal(r.status(), 404);

      // 6. Break-glass on Bob: a reason, the time box said, a banner; Bob sees it flagged.
      await gp.page.goto(`${base}/patients`);
      assert.match(await gp.page.locator('#emergency').textContent(), /Access lasts 4 hours/);
      await gp.page.fill('#emergency-patient', 'bob');
      await gp.page.fill('#emergency-reason', 'Unconscious in the emergency room');
      await Promise.all([gp.page.waitForURL('**/patients/bob'), gp.page.click('#emergency button[type=submit]')]);
      assert.match(await gp.page.locator('.banner.emergency').textContent(), /Emergency access/);
      assert.deepEqual(await gp.page.locator('#conditions .what').allTextContents(), ['Influenza']);
      await checked(gp.page, 'chart under break-glass');
      await shot(gp.page, 'clinician-break-glass');
      const bob = await signIn('bob');
      assert.match(await bob.page.locator('#requests').textContent(), /emergency access to your record was declared/);
      await bob.page.goto(`${base}/account/audit`);
      await bob.page.locator('#verify-status:not([data-state=checking])').waitFor();
      assert.equal(await bob.page.locator('#verify-status').getAttribute('data-state'), 'verified');
      assert.ok(await bob.page.locator('#entries tr[data-emergency=true]').count() >= 1, 'the emergency access is flagged');
      // Alice's try at Bob's chart (the 404 above) is in Bob's log, refused.
      const tried = bob.page.locator('#entries tbody tr', { hasText: 'alice (patient)' });
      assert.ok(await tried.count() >= 1, await bob.page.locator('#entries').textContent());
      assert.match(await tried.first().textContent(), /Refused/);
      await bob.page.goto(`${base}/sharing`);
      assert.ok((await bob.page.locator('#now tr.emergency').textContent()).includes('Dr Grace Parker'));
      await admin.page.goto(`${base}/home`);
      assert.ok((await admin.page.locator('#emergencies').textContent()).includes('Dr Grace Parker'));
      await checked(admin.page, 'admin home');
      await admin.page.goto(`${base}/admin/break-glass`);
      assert.ok((await admin.page.locator('#queue').textContent()).includes('Unconscious in the emergency room'));
      await checked(admin.page, 'break-glass review');

      // The main pages at a phone's width.
      const phone = await signIn('gp', { width: 375, height: 800 });
      await phone.page.goto(`${base}/patients/alice`);
      await checked(phone.page, 'chart, phone');
      await shot(phone.page, 'clinician-chart-phone');
    } finally {
      if (browser) await browser.close();
      await stopNode(node.proc);
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
