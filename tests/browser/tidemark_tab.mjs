// Drives Debian's chromium through a real Airflow UI: log in, trigger a backfill, watch its Tidemark tab.
// Called by test_tidemark_tab.py; prints one JSON line with what the page showed.
//
// The run has one batch made to fail (TIDEMARK_FAULTS, set by the test): while the run still goes on, the tab's
// status strip must show that batch failed with its error's first line and a link to its task instance's log, and
// that log page must show the same error. When the run has ended (failed), the test clears the failed task instances
// as the tab's resume instruction says, and the tab follows the resumed run to its report.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = (name) => { const v = process.env[name]; if (!v) throw new Error(`${name} is not set`); return v; };
const base = env('AIRFLOW_URL');
const runId = env('RUN_ID');
const conf = JSON.parse(env('RUN_CONF'));
const shot = env('SCREENSHOT');
const failing = Number(env('FAILING_BATCH'));
const errorText = env('ERROR_TEXT');
const timeoutMs = Number(process.env.RUN_TIMEOUT_MS || 300000);

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidemark-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 1900 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
const out = { observed: [], failureSeen: null, logPage: null, resumed: null };
try {
  const page = context.pages()[0] || await context.newPage();
  // 1. Log in through the auth manager's own form, as a user does.
  await page.goto(base + '/');
  await page.getByLabel('Username').fill(env('AIRFLOW_USER'));
  await page.getByLabel('Password').fill(env('AIRFLOW_PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/auth/'), { timeout: 30000 });

  // 2. Trigger the run with the same endpoint the UI's trigger form posts to, from the logged-in page.
  const post = (url, body) => page.evaluate(async ({ url, body }) => {
    const r = await fetch(url, { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
                                 body: JSON.stringify(body) });
    return { status: r.status, body: await r.text() };
  }, { url, body });
  const triggered = await post('/api/v2/dags/tidemark_backfill/dagRuns', { dag_run_id: runId, logical_date: null, conf });
  if (triggered.status !== 200) throw new Error(`trigger failed: ${triggered.status} ${triggered.body}`);

  // 3. Open the run page's Tidemark tab (the tab bar entry the plugin adds), inside Airflow's UI.
  const openTab = async () => {
    await page.goto(`${base}/dags/tidemark_backfill/runs/${encodeURIComponent(runId)}`);
    await page.getByRole('link', { name: 'Tidemark', exact: true }).click();
    await page.waitForURL((u) => u.pathname.endsWith('/plugin/tidemark'), { timeout: 30000 });
  };
  await openTab();
  const frame = page.frameLocator('iframe[title="Tidemark"]');
  const body = frame.locator('body');

  // Follows the tab until the Airflow run ends (the tab stops refreshing); `onFrame` looks at each refresh.
  const follow = async (label, onFrame) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const loaded = await body.getAttribute('data-loaded', { timeout: 30000 }).catch(() => null);
      if (loaded === 'error') throw new Error('the Tidemark tab shows an error: ' + await frame.locator('#error').textContent());
      if (loaded === '1') {
        const bar = frame.locator('#progress-bar');
        const pct = await bar.isVisible() ? await bar.getAttribute('data-percent') : null;
        const refresh = await body.getAttribute('data-refresh');
        const cells = await frame.locator('#strip .cell').evaluateAll((els) => els.map((e) => e.getAttribute('data-status')));
        out.observed.push({ phase: label, t: Date.now(), percent: pct === null ? null : Number(pct), refresh, cells: cells.join(',') });
        if (onFrame) await onFrame(refresh);
        if (refresh === 'off') return;
      }
      if (Date.now() > deadline) throw new Error(`${label}: the run did not end in time: ` + JSON.stringify(out.observed.slice(-3)));
      await page.waitForTimeout(1500);
    }
  };

  // 4. While the run goes on: the failing batch's cell, its error line and its log link.
  await follow('first try', async (refresh) => {
    if (out.failureSeen || refresh !== 'on') return;
    const cell = frame.locator(`#strip .cell[data-index="${failing}"]`);
    if (!(await cell.count()) || !['failed', 'retrying'].includes(await cell.getAttribute('data-status'))) return;
    const item = frame.locator(`#strip-errors li[data-index="${failing}"]`);
    if (!(await item.count())) return;
    const link = item.locator('a.log-link');
    out.failureSeen = {
      status: await cell.getAttribute('data-status'),
      error: await item.locator('.error-line').textContent(),
      cellTitle: await cell.getAttribute('title'),
      logHref: await link.getAttribute('href'),
      runState: await frame.locator('#run-state').getAttribute('data-value'),
      airflowRunning: refresh === 'on',
      otherCells: await frame.locator('#strip .cell').evaluateAll((els) => els.map((e) => e.getAttribute('data-status'))),
    };
    await page.screenshot({ path: shot.replace(/\.png$/, '-failure.png'), fullPage: false });
    // The link works: Airflow's own task-instance page, whose log shows the same error.
    const logPage = await context.newPage();
    try {
      await logPage.goto(base + out.failureSeen.logHref);
      await logPage.getByText(errorText, { exact: false }).first().waitFor({ timeout: 60000 });
      out.logPage = { url: logPage.url(), showsError: true };
    } catch (e) {
      out.logPage = { url: logPage.url(), showsError: false, problem: String(e).slice(0, 300) };
    } finally {
      await logPage.close();
    }
  });
  out.resume = await frame.locator('#resume').count() ? await frame.locator('#resume').textContent() : null;
  out.firstState = await frame.locator('#run-state').getAttribute('data-value');

  // 5. Resume as the tab says: clear the run's failed task instances; the tab follows the run to its end.
  const cleared = await post('/api/v2/dags/tidemark_backfill/clearTaskInstances',
                             { dag_run_id: runId, only_failed: true, reset_dag_runs: true, dry_run: false });
  if (cleared.status !== 200) throw new Error(`clearing failed: ${cleared.status} ${cleared.body}`);
  await page.waitForTimeout(3000);
  await openTab();
  await follow('resumed');

  const value = async (id) => {
    const loc = frame.locator('#' + id);
    return (await loc.count()) ? await loc.getAttribute('data-value') : null;
  };
  for (const id of ['loaded-batches', 'planned-batches', 'watermark-batches', 'beyond-watermark', 'rows-loaded',
                    'run-state', 'report-rows', 'report-ratio', 'report-chunks', 'report-stored', 'report-uncompressed',
                    'report-written-compressed', 'report-compressed-afterwards', 'stored-now']) {
    out[id] = await value(id);
  }
  out.percent = Number(await frame.locator('#progress-bar').getAttribute('data-percent'));
  out.percentText = await frame.locator('#progress-percent').textContent();
  out.cells = await frame.locator('#strip .cell').evaluateAll((els) => els.map((e) => e.getAttribute('data-status')));
  out.storedPoints = await frame.locator('#stored-line').count()
    ? (await frame.locator('#stored-line').getAttribute('points')).trim().split(/\s+/).length : 0;
  out.rowsPoints = await frame.locator('#rows-line').count()
    ? (await frame.locator('#rows-line').getAttribute('points')).trim().split(/\s+/).length : 0;
  out.backlogLine = await frame.locator('#backlog-line').count();
  out.refreshText = await frame.locator('#refresh-status').textContent();
  // The percent label stays readable: dark text on its own light pill.
  out.labelColors = await frame.locator('#progress-percent').evaluate((e) => {
    const s = getComputedStyle(e); return { color: s.color, background: s.backgroundColor };
  });
  await page.screenshot({ path: shot, fullPage: false });

  // 6. The nav page lists the run, and filters by dataset and state.
  await page.goto(`${base}/plugin/tidemark-runs`);
  const nav = page.frameLocator('iframe[title="Tidemark runs"]');
  const row = nav.locator(`tr[data-run-id="tidemark_backfill/${runId}"]`);
  await row.first().waitFor({ timeout: 30000 });
  out.navLink = await row.first().locator('a').getAttribute('href');
  out.navText = (await row.first().textContent()).replace(/\s+/g, ' ').trim();
  await nav.locator('#filter-state').selectOption('failed');
  await nav.locator('body[data-loaded="1"]').waitFor({ timeout: 30000 });
  await page.waitForTimeout(1000);
  out.navFailedRows = await nav.locator(`tr[data-run-id="tidemark_backfill/${runId}"]`).count();
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
