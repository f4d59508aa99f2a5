// Drives Debian's chromium through a real Airflow UI: log in, trigger a backfill, watch its Tidemark tab.
// Called by test_tidemark_tab.py; prints one JSON line with what the page showed.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = (name) => { const v = process.env[name]; if (!v) throw new Error(`${name} is not set`); return v; };
const base = env('AIRFLOW_URL');
const runId = env('RUN_ID');
const conf = JSON.parse(env('RUN_CONF'));
const shot = env('SCREENSHOT');
const timeoutMs = Number(process.env.RUN_TIMEOUT_MS || 150000);

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidemark-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 1120 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
const out = { observed: [] };
try {
  const page = context.pages()[0] || await context.newPage();
  // 1. Log in through the auth manager's own form, as a user does.
  await page.goto(base + '/');
  await page.getByLabel('Username').fill(env('AIRFLOW_USER'));
  await page.getByLabel('Password').fill(env('AIRFLOW_PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/auth/'), { timeout: 30000 });


  // 2. Trigger the run with the same endpoint the UI's trigger form posts to, from the logged-in page.
  const triggered = await page.evaluate(async ({ runId, conf }) => {
    const r = await fetch('/api/v2/dags/tidemark_backfill/dagRuns', {
      method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ dag_run_id: runId, logical_date: null, conf }),
    });
    return { status: r.status, body: await r.text() };
  }, { runId, conf });
  if (triggered.status !== 200) throw new Error(`trigger failed: ${triggered.status} ${triggered.body}`);

  // 3. Open the run page's Tidemark tab (the tab bar entry the plugin adds), inside Airflow's UI.
  await page.goto(`${base}/dags/tidemark_backfill/runs/${encodeURIComponent(runId)}`);
  await page.getByRole('link', { name: 'Tidemark', exact: true }).click();
  await page.waitForURL((u) => u.pathname.endsWith('/plugin/tidemark'), { timeout: 30000 });
  const frame = page.frameLocator('iframe[title="Tidemark"]');
  const body = frame.locator('body');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const loaded = await body.getAttribute('data-loaded', { timeout: 30000 }).catch(() => null);
    if (loaded === 'error') throw new Error('the Tidemark tab shows an error: ' + await frame.locator('#error').textContent());
    if (loaded === '1') {
      const bar = frame.locator('#progress-bar');
      const pct = await bar.isVisible() ? await bar.getAttribute('data-percent') : null;
      const refresh = await body.getAttribute('data-refresh');
      out.observed.push({ t: Date.now(), percent: pct === null ? null : Number(pct), refresh });
      if (refresh === 'off') break;
    }
    if (Date.now() > deadline) throw new Error('the run did not end in time: ' + JSON.stringify(out.observed.slice(-3)));
    await page.waitForTimeout(2000);
  }
  const value = async (id) => {
    const loc = frame.locator('#' + id);
    return (await loc.count()) ? await loc.getAttribute('data-value') : null;
  };
  for (const id of ['loaded-batches', 'planned-batches', 'watermark-batches', 'beyond-watermark', 'rows-loaded',
                    'run-state', 'report-rows', 'report-ratio', 'report-chunks', 'peak-backlog']) {
    out[id] = await value(id);
  }
  out.percent = Number(await frame.locator('#progress-bar').getAttribute('data-percent'));
  out.percentText = await frame.locator('#progress-percent').textContent();
  out.plotPoints = await frame.locator('#backlog-line').count()
    ? (await frame.locator('#backlog-line').getAttribute('points')).trim().split(/\s+/).length : 0;
  await page.screenshot({ path: shot, fullPage: false });

  // 4. The nav page lists the run and links to it.
  await page.goto(`${base}/plugin/tidemark-runs`);
  const nav = page.frameLocator('iframe[title="Tidemark runs"]');
  const row = nav.locator(`tr[data-run-id="tidemark_backfill/${runId}"]`);
  await row.waitFor({ timeout: 30000 });
  out.navLink = await row.locator('a').getAttribute('href');
  out.navText = (await row.textContent()).replace(/\s+/g, ' ').trim();
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
