// The agent page (/agent) in a real browser: Debian's chromium, driven by playwright-core,
// with a fake microphone playing a WAV file. Run by the Rust tests against a running server:
//
//   BASE=http://127.0.0.1:PORT LOGIN=ada PASSWORD=… TONE=/abs/path/tone.wav \
//     DIGITS=5 TALK_MS=3000 [HOLD_MS=2000] [TRANSFER=1002] [SCREENSHOT=out.png] [CHROMIUM=…] node agent.mjs
//
// It prints JSON lines on stdout:
//   {"event":"registered"}   as soon as the page's phone is registered: place the call then;
//   {"event":"done", …}      everything seen (screen pop, WebRTC stats, disposition, errors),
//                            exit status 0;
//   {"event":"failed","error":…, …}  on any failure, exit status 1.
//
// Steps: log in, wait for the phone to register, wait for a call to ring, answer it, stay
// TALK_MS, read the WebRTC stats, press DIGITS on the keypad, then either transfer to
// TRANSFER (if set) or hang up, and save the disposition "sale".
import { chromium } from 'playwright-core';

const base = process.env.BASE;
const login = process.env.LOGIN;
const password = process.env.PASSWORD;
const tone = process.env.TONE;
const digits = process.env.DIGITS || '';
const talkMs = Number(process.env.TALK_MS || 3000);
const transferTo = process.env.TRANSFER || '';

// One JSON line, written before anything else happens (the test reads them as they come).
function emit(obj) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, cond, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out after ' + ms + ' ms waiting for ' + what);
    await sleep(100);
  }
}

const out = { event: 'done', login };
const pageErrors = [];
const consoleErrors = [];
let browser = null;
let page = null;

async function text(sel) {
  return (await page.locator(sel).textContent({ timeout: 2000 }).catch(() => null))?.trim() ?? null;
}

async function visible(sel) {
  return page.locator(sel).isVisible().catch(() => false);
}

// The call's WebRTC statistics, as the page's peer connection reports them.
async function rtcStats() {
  return page.evaluate(async () => {
    const session = window.agentPage && window.agentPage.session();
    const pc = session && session.connection;
    if (!pc) return { error: 'no peer connection' };
    const report = await pc.getStats();
    const all = new Map();
    report.forEach((s) => all.set(s.id, s));
    const r = {
      connection_state: pc.connectionState,
      ice_connection_state: pc.iceConnectionState,
      signaling_state: pc.signalingState,
      inbound: null,
      outbound: null,
      codec: null,
      candidate_pair: null,
      dtls_state: null,
      local_candidate: null,
      remote_candidate: null,
    };
    let pairId = null;
    for (const s of all.values()) {
      if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'audio') {
        r.inbound = {
          packetsReceived: s.packetsReceived ?? null,
          bytesReceived: s.bytesReceived ?? null,
          packetsLost: s.packetsLost ?? null,
          jitter: s.jitter ?? null,
          totalAudioEnergy: s.totalAudioEnergy ?? null,
          audioLevel: s.audioLevel ?? null,
          totalSamplesReceived: s.totalSamplesReceived ?? null,
          concealedSamples: s.concealedSamples ?? null,
        };
        const codec = s.codecId && all.get(s.codecId);
        if (codec) {
          r.codec = {
            mimeType: codec.mimeType,
            clockRate: codec.clockRate ?? null,
            payloadType: codec.payloadType ?? null,
            channels: codec.channels ?? null,
          };
        }
      } else if (s.type === 'outbound-rtp' && (s.kind || s.mediaType) === 'audio') {
        r.outbound = {
          packetsSent: s.packetsSent ?? null,
          bytesSent: s.bytesSent ?? null,
        };
      } else if (s.type === 'transport') {
        r.dtls_state = s.dtlsState ?? null;
        r.srtp_cipher = s.srtpCipher ?? null;
        r.dtls_cipher = s.dtlsCipher ?? null;
        if (s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      }
    }
    // The selected pair: named by the transport, else the nominated one that works.
    let pair = pairId ? all.get(pairId) : null;
    if (!pair) {
      for (const s of all.values()) {
        if (s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) pair = s;
      }
    }
    if (pair) {
      r.candidate_pair = {
        state: pair.state,
        nominated: pair.nominated ?? null,
        bytesSent: pair.bytesSent ?? null,
        bytesReceived: pair.bytesReceived ?? null,
        currentRoundTripTime: pair.currentRoundTripTime ?? null,
      };
      const cand = (c) => c && {
        address: c.address ?? c.ip ?? null,
        port: c.port ?? null,
        protocol: c.protocol ?? null,
        candidateType: c.candidateType ?? null,
      };
      r.local_candidate = cand(all.get(pair.localCandidateId));
      r.remote_candidate = cand(all.get(pair.remoteCandidateId));
    }
    return r;
  });
}

async function run() {
  for (const [k, v] of Object.entries({ BASE: base, LOGIN: login, PASSWORD: password, TONE: tone })) {
    if (!v) throw new Error('set ' + k);
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    ignoreDefaultArgs: ['--mute-audio'],
    args: [
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--use-file-for-fake-audio-capture=' + tone,
      '--allow-loopback-in-peer-connection',
      '--autoplay-policy=no-user-gesture-required',
      '--disable-gpu',
      // A test certificate (secure WebSocket) is signed by nobody the browser knows.
      ...(process.env.IGNORE_CERT === '1' ? ['--ignore-certificate-errors'] : []),
    ],
  });
  const context = await browser.newContext({
    viewport: { width: 1400, height: 900 },
    permissions: ['microphone'],
  });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    // With the address: "Failed to load resource" says which only there (/api/me before
    // the login is a 401, /favicon.ico a 404).
    if (m.type() === 'error') {
      const at = m.location() && m.location().url;
      consoleErrors.push(m.text() + (at ? ' [' + at + ']' : ''));
    }
  });

  // Not logged in: the page sends us to the login form, which brings us back.
  await page.goto(base + '/agent');
  await page.waitForURL(/\/login/, { timeout: 10000 });
  await page.fill('#name', login);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  await page.waitForURL((u) => u.pathname === '/agent', { timeout: 10000 });

  const t0 = Date.now();
  await until('the phone registered (#reg-state)', async () =>
    (await page.locator('#reg-state').getAttribute('data-state').catch(() => null)) === 'registered', 15000)
    .catch(async (e) => {
      out.reg_state = await text('#reg-state');
      out.page_error = await text('#error');
      throw e;
    });
  out.reg_state = await text('#reg-state');
  out.registered_after_ms = Date.now() - t0;
  await emit({ event: 'registered' });
  if (process.env.REGISTER_ONLY === '1') {
    // Only the registration was asked for: what the page says about its connection.
    out.log = await page.locator('#log li').allTextContents().catch(() => []);
    return;
  }

  // The call rings: the screen pop.
  await page.locator('#answer').waitFor({ state: 'visible', timeout: 30000 });
  await until('#answer enabled', () => page.locator('#answer').isEnabled(), 5000);
  out.ringing = {
    call_state: await text('#call-state'),
    caller: await text('#call-caller'),
    queue: await text('#call-queue'),
    waited: await text('#call-waited'),
    waited_s: await page.locator('#call-waited').getAttribute('data-seconds').catch(() => null),
    entered: await text('#call-entered'),
    crm_link: (await visible('#crm-link')) ? await page.locator('#crm-link').getAttribute('href') : null,
    status: await page.evaluate(() => document.body.dataset.status),
  };

  await page.click('#answer');
  const answeredAt = Date.now();
  await until('#call-state "talking"', async () => (await text('#call-state')) === 'talking', 10000)
    .catch(async (e) => {
      out.call_state = await text('#call-state');
      throw e;
    });
  out.talking_after_ms = Date.now() - answeredAt;
  out.remote_audio = await page.evaluate(() => {
    const a = document.getElementById('remote');
    return { muted: a.muted, paused: a.paused, has_stream: !!a.srcObject, volume: a.volume };
  });
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });

  await sleep(talkMs);
  out.stats = await rtcStats();
  out.remote_audio_later = await page.evaluate(() => {
    const a = document.getElementById('remote');
    return { paused: a.paused, current_time: a.currentTime };
  });

  // Hold, then resume, by clicking (HOLD_MS: how long on hold).
  const holdMs = Number(process.env.HOLD_MS || 0);
  if (holdMs > 0) {
    await page.click('#hold');
    await until('on hold (#call-state)', async () => /hold/i.test((await text('#call-state')) || ''), 5000);
    out.held = await text('#call-state');
    await sleep(holdMs);
    await page.click('#hold');
    await until('talking again (#call-state)', async () => /talking/i.test((await text('#call-state')) || ''), 5000);
    out.resumed = await text('#call-state');
    await sleep(1500);
    out.stats_after_resume = await rtcStats();
  }

  out.digits_sent = '';
  for (const d of digits) {
    await page.click(`#keypad [data-digit="${d}"]`);
    out.digits_sent += d;
    await sleep(300);
  }
  await sleep(1000);

  if (transferTo) {
    await page.fill('#transfer-to', transferTo);
    await page.click('#transfer');
    await until('the transfer settled', async () => {
      const t = (await text('#transfer-result')) || '';
      return (/transferred|refused|failed|cannot|not a number/.test(t) || (await text('#call-state')) === 'ended') && t;
    }, 20000).catch(() => null);
    out.transfer_result = await text('#transfer-result');
    if ((await text('#call-state')) !== 'ended' && (await visible('#hangup'))) await page.click('#hangup');
  } else {
    await page.click('#hangup');
  }

  await page.locator('#disposition').waitFor({ state: 'visible', timeout: 10000 });
  out.call_state_after = await text('#call-state');
  out.call_timer = await text('#call-timer');
  await page.fill('#disposition-code', 'sale');
  await page.click('#disposition-save');
  await until('#disposition-result', async () => {
    const t = (await text('#disposition-result')) || '';
    return t !== '' && t !== 'saving…' && t;
  }, 15000);
  out.disposition_result = await text('#disposition-result');
  out.agent_state = await text('#agent-state');
  out.log = await page.locator('#log li').allTextContents();
}

let failed = null;
try {
  await run();
} catch (e) {
  failed = String(e && e.stack ? e.stack : e);
}
out.page_errors = pageErrors;
out.console_errors = consoleErrors;
if (failed) {
  out.event = 'failed';
  out.error = failed;
  if (page) {
    out.log = out.log || (await page.locator('#log li').allTextContents().catch(() => []));
    out.page_error = out.page_error || (await text('#error').catch(() => null));
  }
}
if (browser) await browser.close().catch(() => {});
await emit(out);
process.exit(failed ? 1 : 0);
