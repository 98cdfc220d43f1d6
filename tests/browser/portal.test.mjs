// The patient portal in a real browser: a patient signs in and lands on their home page,
// reads their record (conditions, medications, visits, results with trend charts), in
// English and in French, on a desktop and on a 375 px phone. Every page passes axe-core
// (WCAG 2.1 A and AA) with no violation, is served with the portal's security headers, and
// its screenshots are saved into docs/screenshots/ for the README.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, accessibilityViolations, cli, startNode, stopNode } from './harness.mjs';

const PASSWORD = 'a long enough passphrase';
const SYNTHEA = new URL('../../../shared/testdata/fhir-r4-synthea-smart-generated-sample-data/', import.meta.url).pathname;
const SHOTS = new URL('../../docs/screenshots/', import.meta.url).pathname;
const POSTGRES = process.env.MEDMESH_TEST_POSTGRES;

for (const kind of ['sqlite', 'postgres']) {
  test(`a patient reads their record in the portal (${kind})`, async () => {
    assert.ok(kind === 'sqlite' || POSTGRES, 'MEDMESH_TEST_POSTGRES must name the PostgreSQL server');
    const dir = mkdtempSync(join(tmpdir(), 'medmesh-portal-'));
    let env = {};
    let dbName;
    if (kind === 'postgres') {
      dbName = `medmesh_portal_${process.pid}_${Date.now()}`;
      const { spawnSync } = await import('node:child_process');
      const r = spawnSync('psql', ['-qAtX', `${POSTGRES}/postgres`, '-c', `CREATE DATABASE ${dbName}`], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      env = { MEDMESH_DATABASE_URL: `${POSTGRES}/${dbName}` };
    }
    const node = await startNode(dir, env);
    let browser;
    try {
      // A Synthea patient with many results, and the organizations and practitioners
      // their record refers to.
      const files = readdirSync(SYNTHEA).filter((f) => f.endsWith('.json'));
      const info = files.filter((f) => /Information/.test(f)).map((f) => join(SYNTHEA, f));
      const trey = files.find((f) => f.startsWith('Trey_Leffler'));
      cli(dir, ['import', ...info, join(SYNTHEA, trey)], undefined, env);
      const token = cli(dir, ['admin', 'token', '--scope', 'system/*.*'], undefined, env);
      const found = await (await fetch(`${node.base}/fhir/Patient?family=Leffler`, { headers: { authorization: `Bearer ${token}` } })).json();
      const patient = found.entry[0].resource.id;
      cli(dir, ['admin', 'create-user', '--role', 'patient', '--username', 'trey', '--patient', patient], `${PASSWORD}\n`, env);

      browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
      const signIn = async (page) => {
        await page.goto(`${node.base}/`);
        await page.fill('input[name=username]', 'trey');
        await page.fill('input[name=password]', PASSWORD);
        await Promise.all([page.waitForURL('**/home'), page.click('button[type=submit]')]);
      };
      const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB', acceptDownloads: true });
      const page = await desktop.newPage();
      await signIn(page);

      // Home: the newest results, documents and accesses, each linking on.
      assert.equal(await page.locator('h1').textContent(), 'Home');
      assert.equal(await page.locator('#results li').count(), 5);
      assert.ok(await page.locator('#accesses li').count() >= 1, 'the patient sees accesses to their record');
      assert.deepEqual(await accessibilityViolations(page), [], 'home (axe-core)');
      await page.screenshot({ path: join(SHOTS, 'patient-home.png'), fullPage: true });

      // Security headers on a page with health data.
      const r = await page.goto(`${node.base}/record`);
      const h = r.headers();
      assert.match(h['content-security-policy'], /default-src 'none'/);
      assert.doesNotMatch(h['content-security-policy'], /unsafe-inline|unsafe-eval/);
      assert.equal(h['cache-control'], 'no-store');
      assert.equal(h['x-frame-options'], 'DENY');

      // The record: display text, never a bare code; a timeline; trends with ranges.
      assert.equal(await page.locator('h1').textContent(), 'My record');
      const conditions = await page.locator('#conditions .what').allTextContents();
      assert.ok(conditions.length >= 3, `conditions: ${conditions}`);
      for (const text of conditions) assert.doesNotMatch(text, /^(code|LOINC|SNOMED CT) \S+$/);
      assert.ok(await page.locator('#encounters ol.timeline li').count() >= 5);
      const charts = page.locator('#results svg.trend');
      assert.ok(await charts.count() >= 3, 'trend charts');
      assert.ok((await charts.first().getAttribute('aria-labelledby')).length > 0);
      const bodyWeight = page.locator('#results article', { hasText: 'Body Weight' });
      assert.equal(await bodyWeight.count(), 1);
      await bodyWeight.locator('summary').click();
      assert.ok(await bodyWeight.locator('tbody tr').count() >= 2);
      assert.deepEqual(await accessibilityViolations(page), [], 'record (axe-core)');
      await page.screenshot({ path: join(SHOTS, 'patient-record.png'), fullPage: true });

      // Sharing: who can see the record and why; the organizations and practitioners of
      // the patient's visits, named, with when their access ended.
      await page.goto(`${node.base}/sharing`);
      assert.equal(await page.locator('h1').textContent(), 'Sharing');
      const reasons = await page.locator('#now td:nth-child(2), #past td:nth-child(2)').allTextContents();
      assert.ok(reasons.length >= 1, 'the visits open the record to their providers');
      assert.ok(reasons.every((r) => !/^why-/.test(r)), `reasons in words: ${reasons}`);
      const names = await page.locator('#now td:first-child, #past td:first-child').allTextContents();
      assert.ok(names.every((n) => !/^(Practitioner|Organization)\//.test(n)), `named: ${names}`);
      // One line per provider and reason, however many visits each stands for.
      for (const part of ['#now', '#past']) {
        const rows = await page.locator(`${part} tbody tr`).evaluateAll((trs) => trs.map((tr) => `${tr.cells[0].textContent}|${tr.cells[1].textContent}`));
        assert.equal(new Set(rows).size, rows.length, `one line each in ${part}: ${rows}`);
      }
      assert.deepEqual(await accessibilityViolations(page), [], 'sharing (axe-core)');
      await page.screenshot({ path: join(SHOTS, 'patient-sharing.png'), fullPage: true });

      // My data: the whole record downloads as one FHIR Bundle; the research choice is
      // recorded as a Consent and shown back.
      await page.goto(`${node.base}/my-data`);
      assert.match(await page.locator('#research-now').textContent(), /not chosen yet/);
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export a')]);
      const exported = JSON.parse(readFileSync(await download.path(), 'utf8'));
      assert.equal(exported.resourceType, 'Bundle');
      assert.ok(exported.entry.length >= 300, `the whole record: ${exported.entry.length} resources`);
      assert.ok(exported.entry.some((e) => e.resource.resourceType === 'Patient' && e.resource.id === patient));
      // The radio is its own size, on its words' line (it once took the form's width).
      assert.ok((await page.locator('#research-in').boundingBox()).width < 40, 'the research radio is its own size');
      await page.check('#research-in');
      await Promise.all([page.waitForURL('**/my-data'), page.click('#research button[type=submit]')]);
      assert.match(await page.locator('#research-now').textContent(), /You allowed research use on/);
      assert.ok(await page.locator('#research-in').isChecked());
      await page.check('#research-out');
      await Promise.all([page.waitForURL('**/my-data'), page.click('#research button[type=submit]')]);
      assert.match(await page.locator('#research-now').textContent(), /You refused research use on/);
      const consents = await (await fetch(`${node.base}/fhir/Consent?patient=${patient}&scope=research`, { headers: { authorization: `Bearer ${token}` } })).json();
      assert.deepEqual(consents.entry.map((e) => e.resource.status).sort(), ['active', 'inactive']);
      // A form without the session's CSRF token (another site's) changes nothing.
      const forged = await page.request.post(`${node.base}/my-data/research`, { form: { choice: 'in' } });
      assert.equal(forged.status(), 403);
      await page.reload();
      assert.match(await page.locator('#research-now').textContent(), /You refused research use on/);
      assert.deepEqual(await accessibilityViolations(page), [], 'my data (axe-core)');
      await page.screenshot({ path: join(SHOTS, 'patient-my-data.png'), fullPage: true });

      // Keyboard: on a fresh page the first Tab reaches the skip link.
      await page.goto(`${node.base}/record`);
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');

      // A phone: nothing wider than the screen.
      const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, locale: 'en-GB', storageState: await desktop.storageState() });
      const small = await phone.newPage();
      await small.goto(`${node.base}/record`);
      assert.ok(await small.evaluate(() => document.documentElement.scrollWidth <= 375), 'no horizontal scrolling at 375 px');
      await small.screenshot({ path: join(SHOTS, 'patient-record-phone.png') });
      await small.goto(`${node.base}/home`);
      await small.screenshot({ path: join(SHOTS, 'patient-home-phone.png') });

      // French, from the browser's language.
      const french = await browser.newContext({ locale: 'fr-FR', extraHTTPHeaders: { 'accept-language': 'fr-FR,fr;q=0.9' }, storageState: await desktop.storageState() });
      const fr = await french.newPage();
      await fr.goto(`${node.base}/record`);
      assert.equal(await fr.locator('h1').textContent(), 'Mon dossier');
      assert.equal(await fr.locator('html').getAttribute('lang'), 'fr');
      assert.deepEqual(await accessibilityViolations(fr), [], 'record in French (axe-core)');

      // Installable: a manifest and a service worker that caches static files only.
      const manifest = await (await fetch(`${node.base}/manifest.webmanifest`)).json();
      assert.equal(manifest.start_url, '/home');
      const sw = await (await fetch(`${node.base}/sw.js`)).text();
      assert.match(sw, /STATIC\.includes\(url\.pathname\)/);

      // Signing out ends the session: the record is behind the login again.
      await page.goto(`${node.base}/home`);
      const [out] = await Promise.all([page.waitForResponse('**/logout'), page.click('header form button')]);
      assert.equal((await out.allHeaders())['clear-site-data'], '"cache"');
      assert.equal((await desktop.cookies()).filter((c) => c.name === 'medmesh_session' && c.value).length, 0);
      await page.goto(`${node.base}/record`);
      assert.match(page.url(), /\/login/);
    } finally {
      if (browser) await browser.close();
      await stopNode(node.proc);
      if (dbName) {
        const { spawnSync } = await import('node:child_process');
        spawnSync('psql', ['-qAtX', `${POSTGRES}/postgres`, '-c', `DROP DATABASE IF EXISTS ${dbName}`]);
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
