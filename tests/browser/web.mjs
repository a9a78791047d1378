// The wallboard and the review page in a real browser (Debian's chromium, driven by
// playwright-core). Run by tests/web.rs against a running server:
//
//   BASE=http://127.0.0.1:PORT PASSWORD=… SCREENSHOT=out.png node web.mjs <step>
//
// Steps (each prints one JSON line of what it saw; the Rust test judges it):
//   wallboard  log in as the supervisor "sam", wait until queue "sales" shows a waiting caller
//              (the test has placed one), screenshot, then wait until it shows none and an
//              abandoned call;
//   review     log in as the reviewer "rita", find the recorded call, play it;
//   agent      log in as the agent "ada": the review page refuses, the audio URL is 403.
import { chromium } from 'playwright-core';

const base = process.env.BASE;
const password = process.env.PASSWORD;
const step = process.argv[2];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--autoplay-policy=no-user-gesture-required', '--disable-gpu'],
});

async function logIn(login, path) {
  const context = await browser.newContext({ viewport: { width: 1600, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base + path);
  // Not logged in: the page sends us to the login form, which brings us back.
  await page.waitForURL(/\/login/, { timeout: 10000 });
  await page.fill('#name', login);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  await page.waitForURL((u) => u.pathname === path, { timeout: 10000 });
  return { page, errors };
}

// The text of a figure on a queue tile, e.g. figure('sales', 'waiting').
async function figure(page, queue, name) {
  return page
    .locator(`[data-queue="${queue}"] [data-figure="${name}"] .v`)
    .textContent({ timeout: 1000 })
    .catch(() => null);
}

async function until(what, cond, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const out = { step };
try {
  if (step === 'wallboard') {
    const { page, errors } = await logIn('sam', '/wallboard');
    await page.waitForSelector('[data-queue="sales"]', { timeout: 10000 });
    const t0 = Date.now();
    await until('a waiting caller on sales', async () => (await figure(page, 'sales', 'waiting')) === '1', 20000);
    out.waiting_seen_after_ms = Date.now() - t0;
    out.longest_wait = await figure(page, 'sales', 'longest_wait');
    out.live = await page.textContent('#live');
    out.agents = await page.locator('#agents tbody tr').count();
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
    // The caller gives up: nobody waits, and today's abandon rate is no longer empty.
    await until('the caller gone', async () => (await figure(page, 'sales', 'waiting')) === '0', 30000);
    out.abandon_rate = await figure(page, 'sales', 'abandon_rate');
    out.support_answered = await figure(page, 'support', 'answered');
    out.errors = errors;
  } else if (step === 'review') {
    const { page, errors } = await logIn('rita', '/review');
    await page.waitForSelector('button.play', { timeout: 10000 });
    out.rows = await page.locator('#calls tbody tr[data-call]').count();
    await page.click('button.play');
    const audio = page.locator('#player');
    await until('the recording loaded', () => audio.evaluate((a) => a.readyState >= 1 && a.duration > 0), 10000);
    out.duration = await audio.evaluate((a) => a.duration);
    await audio.evaluate((a) => a.play());
    await until('playback moving', () => audio.evaluate((a) => a.currentTime > 0.2), 10000);
    out.played_to = await audio.evaluate((a) => a.currentTime);
    out.media_error = await audio.evaluate((a) => (a.error ? a.error.code : null));
    out.sha = await page.textContent('#sha');
    await page.fill('#score', '85');
    await page.fill('#comment', 'greeted the caller by name');
    await page.click('#score-form button[type=submit]');
    await until('the review saved', async () => (await page.textContent('#saved')) === 'saved', 10000);
    out.reviews = await page.locator('#reviews li').allTextContents();
    out.errors = errors;
  } else if (step === 'agent') {
    const { page, errors } = await logIn('ada', '/review');
    await until('the refusal', async () => (await page.textContent('#error')).length > 0, 10000);
    out.message = await page.textContent('#error');
    out.audio_status = await page.evaluate(async (id) => {
      const r = await fetch('/api/recordings/' + id + '/audio');
      return r.status;
    }, process.env.CALL_ID);
    out.rows = await page.locator('#calls tbody tr[data-call]').count();
    out.errors = errors;
  } else {
    throw new Error('unknown step ' + step);
  }
} catch (e) {
  out.failure = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
