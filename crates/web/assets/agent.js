// The agent's page: a phone in the browser (JsSIP: SIP over WebSocket, the call's audio
// over WebRTC), the agent's own state, the caller's details while a queue call rings, the
// call's controls, and the disposition code once it is over.
'use strict';

const S = Switchboard;
const $ = (id) => document.getElementById(id);

const STATE_NAMES = {
  ready: 'Ready', not_ready: 'Paused', ringing: 'Ringing', busy: 'On call',
  wrap_up: 'Wrap-up', logged_out: 'Logged out',
};
const POLL_MS = 3000;

let me = null;      // the login (/api/me)
let phone = null;   // the phone's settings (/api/phone)
let ua = null;      // the JsSIP user agent
let registered = false;
let phoneProblem = ''; // why the phone is off, when it is
let agent = null;   // the agent as the live board shows them
let agentAt = 0;    // when `agent` arrived (its time in state ticks from there)
let call = null;    // the call on screen (see newCall)
let dispo = null;   // the disposition being asked for: { call, saving, done, timer }

// ---- small things ----

function log(text) {
  const ol = $('log');
  const now = new Date();
  ol.prepend(S.el('li', {}, S.el('time', { datetime: now.toISOString() }, now.toLocaleTimeString()), text));
  while (ol.children.length > 60) ol.lastElementChild.remove();
}

// Said by screen readers (and written to the log).
function announce(text) {
  $('announce').textContent = text;
  log(text);
}

function showError(text) {
  $('error').textContent = text;
  if (text) log(text);
}

// A button's words, keeping its shortcut hint.
function label(button, text, key) {
  button.replaceChildren(text + ' ', S.el('kbd', {}, key));
}

function result(el, text, kind) {
  el.textContent = text;
  el.classList.toggle('ok', kind === 'ok');
  el.classList.toggle('bad', kind === 'bad');
}

// Percent-decoding that never throws ("%" alone stays as it is). `+` is a plus sign.
function unpct(s) {
  try { return decodeURIComponent(s); } catch (_) { return s; }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- sounds (WebAudio: no audio files) ----

const DTMF_FREQS = {
  1: [697, 1209], 2: [697, 1336], 3: [697, 1477], 4: [770, 1209], 5: [770, 1336],
  6: [770, 1477], 7: [852, 1209], 8: [852, 1336], 9: [852, 1477], '*': [941, 1209],
  0: [941, 1336], '#': [941, 1477],
};

const sound = {
  ctx: null,
  timer: 0,
  playing: new Set(),

  // The audio context, woken up if the browser started it suspended (no click yet).
  context() {
    if (!this.ctx) {
      const AC = window.AudioContext || window.webkitAudioContext;
      if (!AC) return null;
      try { this.ctx = new AC(); } catch (_) { return null; }
      this.ctx.addEventListener('statechange', () => soundHint());
    }
    if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
    return this.ctx;
  },

  // `freqs` together from `at` for `len` seconds, with short ramps so it does not click.
  tone(freqs, at, len, level) {
    const ctx = this.ctx;
    const gain = ctx.createGain();
    gain.gain.setValueAtTime(0, at);
    gain.gain.linearRampToValueAtTime(level, at + 0.02);
    gain.gain.setValueAtTime(level, at + len - 0.02);
    gain.gain.linearRampToValueAtTime(0, at + len);
    gain.connect(ctx.destination);
    let left = freqs.length;
    for (const f of freqs) {
      const osc = ctx.createOscillator();
      osc.frequency.value = f;
      osc.connect(gain);
      osc.start(at);
      osc.stop(at + len);
      this.playing.add(osc);
      osc.addEventListener('ended', () => {
        this.playing.delete(osc);
        osc.disconnect();
        if (--left === 0) gain.disconnect();
      });
    }
  },

  // Ring ring … ring ring, every three seconds, until stopped.
  startRing() {
    if (this.timer) return;
    const ctx = this.context();
    if (!ctx) return;
    const burst = () => {
      const t = ctx.currentTime + 0.05;
      this.tone([400, 450], t, 0.4, 0.18);
      this.tone([400, 450], t + 0.6, 0.4, 0.18);
    };
    burst();
    this.timer = setInterval(burst, 3000);
    soundHint();
  },

  stopRing() {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = 0;
    for (const osc of this.playing) {
      try { osc.stop(); } catch (_) { /* already stopped */ }
    }
    soundHint();
  },

  // A quiet local tone for a key pressed on the keypad.
  key(digit) {
    const ctx = this.context();
    const freqs = DTMF_FREQS[digit];
    if (ctx && freqs) this.tone(freqs, ctx.currentTime + 0.01, 0.12, 0.05);
  },
};

// While it rings but the browser keeps the sound off until the page is clicked: say so.
function soundHint() {
  const blocked = !!sound.timer && !!sound.ctx && sound.ctx.state !== 'running';
  $('sound-hint').hidden = !blocked;
}

// Any click or key on the page lets the sound play from then on.
for (const type of ['pointerdown', 'keydown']) {
  document.addEventListener(type, () => { if (sound.ctx) sound.context(); }, { capture: true });
}

// ---- the colour and words of the status bar ----

function paintStatus() {
  let status = 'starting', text = 'Starting…';
  if (call && !call.over && call.state === 'ringing') {
    status = 'ringing';
    text = 'Incoming call' + (call.queue ? ' · ' + call.queue : '');
  } else if (call && !call.over) {
    status = 'oncall';
    text = call.state === 'on hold' ? 'On call · on hold' : 'On call';
  } else if (phoneProblem) {
    status = 'unregistered';
    text = 'Phone off: no calls can reach you';
  } else if (phone && !registered) {
    status = 'unregistered';
    text = 'Phone not registered: no calls can reach you';
  } else if (agent) {
    switch (agent.state) {
      case 'ready': status = 'ready'; text = 'Ready for calls'; break;
      case 'not_ready': status = 'paused'; text = 'Paused' + (agent.reason ? ' · ' + agent.reason : ''); break;
      case 'wrap_up': status = 'wrapup'; text = 'Wrap-up'; break;
      case 'busy': status = 'oncall'; text = 'On call'; break;
      case 'ringing': status = 'ringing'; text = 'Ringing'; break;
      case 'logged_out': status = 'loggedout'; text = 'Logged out of the queues'; break;
      default: status = 'unknown'; text = agent.state;
    }
  }
  document.body.dataset.status = status;
  $('status-text').textContent = text;
}

// ---- the agent's state ----

function agentLabel(a) {
  return (STATE_NAMES[a.state] || a.state) + (a.reason ? ' (' + a.reason + ')' : '');
}

function renderAgent() {
  const el = $('agent-state');
  if (agent) {
    el.textContent = agentLabel(agent);
    el.dataset.state = agent.state;
    $('agent-handled').textContent = String(agent.handled_today);
  }
  tickAgent();
  paintStatus();
}

function tickAgent() {
  if (!agent) return;
  $('agent-since').textContent = S.duration(agent.in_state_s + (Date.now() - agentAt) / 1000);
}

let pollTimer = 0, pollSeq = 0;

// The agent as the board shows them now; again every few seconds.
async function pollAgent() {
  const seq = ++pollSeq;
  clearTimeout(pollTimer);
  try {
    const a = await S.api('/api/agents/' + encodeURIComponent(me.agent));
    if (seq !== pollSeq) return;
    const before = agent ? agentLabel(agent) : null;
    agent = a;
    agentAt = Date.now();
    $('state-error').textContent = '';
    if (before !== agentLabel(a)) announce('Your state: ' + agentLabel(a));
    renderAgent();
  } catch (e) {
    if (seq !== pollSeq) return;
    $('state-error').textContent = 'Your state: ' + e.message;
  }
  pollTimer = setTimeout(pollAgent, POLL_MS);
}

async function setState(state) {
  if (!me || !me.agent) return;
  const body = { state, reason: null };
  if (state === 'paused') body.reason = $('pause-reason').value;
  $('state-error').textContent = '';
  try {
    await S.api('/api/agents/' + encodeURIComponent(me.agent) + '/state', body);
    log(state === 'paused' ? 'asked to pause (' + body.reason + ')' : 'asked to be ' + state);
  } catch (e) {
    $('state-error').textContent = e.message;
    log('state change refused: ' + e.message);
  }
  pollAgent();
}

// ---- the phone ----

function setReg(state, text) {
  const el = $('reg-state');
  el.dataset.state = state;
  // Only the registered state says "registered" (tests and people look for that word).
  el.textContent = text;
  paintStatus();
}

function startPhone() {
  if (typeof JsSIP === 'undefined') {
    throw new Error('the SIP library (/assets/vendor/jssip.min.js) did not load');
  }
  const config = {
    sockets: [new JsSIP.WebSocketInterface(phone.ws_url)],
    uri: phone.uri,
    authorization_user: phone.user,
    register: true,
    session_timers: false,
    user_agent: 'Switchboard agent page (JsSIP ' + JsSIP.version + ')',
  };
  if (phone.display_name) config.display_name = phone.display_name;
  if (phone.password) {
    config.password = phone.password;
  } else {
    config.ha1 = phone.ha1;
    config.realm = phone.realm;
  }
  ua = new JsSIP.UA(config);
  ua.on('connecting', () => { if (!registered) setReg('connecting', 'phone: connecting…'); });
  ua.on('connected', () => { if (!registered) setReg('connecting', 'phone: connected, signing in…'); });
  ua.on('disconnected', (e) => {
    const was = registered;
    registered = false;
    setReg('disconnected', 'phone: disconnected' + (e && e.error ? ' (network error)' : '') + ', trying again…');
    if (was) announce('The phone lost its connection to the server');
  });
  ua.on('registered', () => {
    const was = registered;
    registered = true;
    setReg('registered', 'phone: registered');
    if (!was) announce('Phone registered as ' + phone.user);
  });
  ua.on('unregistered', (e) => {
    registered = false;
    setReg('unregistered', 'phone: not signed in' + (e && e.cause ? ' (' + e.cause + ')' : ''));
  });
  ua.on('registrationFailed', (e) => {
    registered = false;
    const r = e && e.response;
    const why = (e && e.cause) || 'unknown cause';
    const status = r && r.status_code ? ' — ' + r.status_code + ' ' + (r.reason_phrase || '') : '';
    setReg('failed', 'phone: sign-in failed: ' + why + status);
    announce('The phone could not sign in: ' + why);
  });
  ua.on('newRTCSession', onSession);
  ua.start();
  log('phone: JsSIP ' + JsSIP.version + ', server ' + phone.ws_url + ', ' + phone.uri);
}

// ---- calls ----

// The call's details, from the INVITE the server sent.
function newCall(e) {
  const req = e.request;
  const header = (name) => {
    try { return req.getHeader(name) || ''; } catch (_) { return ''; }
  };
  const from = req.from || {};
  const entered = [];
  for (const part of header('X-Switchboard-Entered').split(';')) {
    if (!part.trim()) continue;
    const at = part.indexOf('=');
    const k = at < 0 ? part : part.slice(0, at);
    const v = at < 0 ? '' : part.slice(at + 1);
    entered.push([unpct(k.trim()), unpct(v.trim())]);
  }
  const waited = header('X-Switchboard-Waited').trim();
  return {
    session: e.session,
    id: header('X-Switchboard-Call').trim() || null,
    number: (from.uri && from.uri.user) || '',
    name: from.display_name || '',
    queue: unpct(header('X-Switchboard-Queue').trim()),
    waited: waited !== '' && !isNaN(Number(waited)) ? Number(waited) : null,
    entered,
    state: 'ringing', // ringing, connecting, talking, on hold, ended
    answered: false,
    over: false,
    held: false,
    muted: false,
    startedAt: 0,
    endedAt: 0,
    stream: null,
  };
}

function callerText(c) {
  const number = c.number || 'unknown number';
  return c.name && c.name !== c.number ? c.name + ' (' + number + ')' : number;
}

function crmHref(c) {
  if (!phone || !phone.crm_url) return null;
  const href = phone.crm_url
    .split('{number}').join(encodeURIComponent(c.number))
    .split('{call}').join(encodeURIComponent(c.id || ''));
  try {
    const u = new URL(href, location.href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch (_) {
    return null;
  }
}

function established(c) {
  return !!c && !c.over && (c.state === 'talking' || c.state === 'on hold');
}

function renderCall() {
  const panel = $('call');
  if (!call) {
    panel.hidden = true;
    delete panel.dataset.state;
    $('call-state').textContent = '';
    paintStatus();
    return;
  }
  const c = call;
  panel.hidden = false;
  panel.dataset.state = c.state;
  $('call-state').textContent = c.state;
  $('call-caller').textContent = callerText(c);
  $('call-queue').textContent = c.queue || '–';
  const waited = $('call-waited');
  waited.textContent = c.waited === null ? '–' : S.duration(c.waited);
  waited.dataset.seconds = c.waited === null ? '' : String(c.waited);
  const entered = $('call-entered');
  entered.replaceChildren();
  if (!c.entered.length) entered.textContent = '–';
  c.entered.forEach(([k, v], i) => {
    if (i > 0) entered.append(S.el('span', { class: 'sep' }, ' · '));
    entered.append(S.el('span', { class: 'entered' }, S.el('span', { class: 'k' }, k + ': '), v));
  });
  const crm = $('crm-link');
  const href = crmHref(c);
  crm.hidden = !href;
  if (href) crm.href = href; else crm.removeAttribute('href');

  const ringing = !c.over && c.state === 'ringing';
  const up = established(c);
  $('answer').hidden = !ringing;
  $('answer').disabled = !ringing;
  const hangup = $('hangup');
  hangup.hidden = c.over;
  hangup.disabled = c.over;
  label(hangup, ringing ? 'Decline' : 'Hang up', 'h');
  const hold = $('hold');
  hold.disabled = !up;
  hold.setAttribute('aria-pressed', String(c.held));
  label(hold, c.held ? 'Resume' : 'Hold', 'o');
  const mute = $('mute');
  mute.disabled = !up;
  mute.setAttribute('aria-pressed', String(c.muted));
  label(mute, c.muted ? 'Unmute' : 'Mute', 'm');
  for (const b of document.querySelectorAll('#keypad button')) b.disabled = !up;
  $('transfer-to').disabled = !up;
  $('transfer').disabled = !up;
  $('keypad').hidden = c.over || ringing;
  $('transfer-form').hidden = c.over || ringing;
  tickCall();
  paintStatus();
}

function tickCall() {
  const el = $('call-timer');
  if (!call || !call.startedAt) { el.textContent = ''; return; }
  const end = call.endedAt || Date.now();
  el.textContent = S.duration((end - call.startedAt) / 1000);
}

// The caller's audio: to the <audio> element (never muted).
function watchConnection(c, pc) {
  pc.addEventListener('track', (ev) => {
    if (ev.track.kind !== 'audio' || call !== c) return;
    let stream = ev.streams && ev.streams[0];
    if (!stream) {
      if (!c.stream) c.stream = new MediaStream();
      c.stream.addTrack(ev.track);
      stream = c.stream;
    }
    const audio = $('remote');
    if (audio.srcObject !== stream) audio.srcObject = stream;
    audio.muted = false;
    audio.volume = 1;
    const played = audio.play();
    if (played && played.catch) {
      played.catch((err) => log('the browser held back the caller\'s audio (' + err.name + '): click the page'));
    }
  });
  pc.addEventListener('iceconnectionstatechange', () => {
    log('media connection: ' + pc.iceConnectionState);
  });
}

function onSession(e) {
  if (e.originator !== 'remote') return;
  const session = e.session;
  if (call && !call.over) {
    // One call at a time: the server offers the next one elsewhere.
    try { session.terminate({ status_code: 486, reason_phrase: 'Busy Here' }); } catch (_) { /* gone */ }
    log('a second call was turned away (busy)');
    return;
  }
  const c = newCall(e);
  call = c;
  if (session.connection) watchConnection(c, session.connection);
  session.on('peerconnection', (ev) => watchConnection(c, ev.peerconnection));
  session.on('accepted', () => {
    c.answered = true;
    c.startedAt = Date.now();
    if (c.state === 'ringing') c.state = 'connecting';
    sound.stopRing();
    renderCall();
  });
  session.on('confirmed', () => {
    c.answered = true;
    if (!c.startedAt) c.startedAt = Date.now();
    c.state = 'talking';
    announce('Talking to ' + callerText(c));
    renderCall();
  });
  const holdChanged = (ev) => {
    const h = session.isOnHold();
    c.held = !!h.local;
    if (!c.over && c.answered) c.state = h.local || h.remote ? 'on hold' : 'talking';
    const who = ev && ev.originator === 'remote' ? 'the other side' : 'you';
    announce(c.state === 'on hold' ? 'Call on hold (' + who + ')' : 'Call resumed');
    renderCall();
  };
  session.on('hold', holdChanged);
  session.on('unhold', holdChanged);
  session.on('muted', () => { c.muted = true; announce('Microphone muted'); renderCall(); });
  session.on('unmuted', () => { c.muted = false; announce('Microphone on'); renderCall(); });
  session.on('getusermediafailed', (err) => {
    showError('No microphone for the call: ' + ((err && err.message) || err));
  });
  session.on('ended', (ev) => callOver(c, ev));
  session.on('failed', (ev) => callOver(c, ev));

  renderCall();
  sound.startRing();
  const pop = 'Incoming call from ' + callerText(c) + (c.queue ? ' in queue ' + c.queue : '') +
    (c.waited !== null ? ', waited ' + S.duration(c.waited) : '');
  announce(pop);
}

function callOver(c, ev) {
  if (c.over) return;
  c.over = true;
  c.endedAt = Date.now();
  if (call === c) {
    sound.stopRing();
    const audio = $('remote');
    audio.pause();
    audio.srcObject = null;
  }
  const cause = (ev && ev.cause) || 'ended';
  const by = ev && ev.originator === 'local' ? 'you' : 'the other side';
  if (c.answered) {
    c.state = 'ended';
    announce('Call with ' + callerText(c) + ' ended by ' + by + ' (' + cause + ')');
    if (call === c) {
      renderCall();
      if (c.id) openDisposition(c);
      else setTimeout(() => { if (call === c) { call = null; renderCall(); } }, 3000);
    }
  } else {
    // Never answered here: the caller gave up, another agent took it, or it was declined.
    announce('Call from ' + callerText(c) + ' ended before it was answered (' + cause + ')');
    if (call === c) {
      call = null;
      renderCall();
    }
  }
  pollAgent();
}

function answer() {
  const c = call;
  if (!c || c.over || c.state !== 'ringing') return;
  sound.stopRing();
  c.state = 'connecting';
  renderCall();
  try {
    c.session.answer({
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: [] },
    });
    log('answering…');
  } catch (e) {
    showError('Could not answer: ' + e.message);
  }
}

function hangup() {
  const c = call;
  if (!c || c.over) return;
  try {
    c.session.terminate();
  } catch (e) {
    showError('Could not hang up: ' + e.message);
  }
}

function toggleHold() {
  const c = call;
  if (!established(c)) return;
  const ok = c.session.isOnHold().local ? c.session.unhold() : c.session.hold();
  if (ok === false) log('hold/resume not possible right now (a change is under way)');
}

function toggleMute() {
  const c = call;
  if (!established(c)) return;
  if (c.session.isMuted().audio) c.session.unmute({ audio: true });
  else c.session.mute({ audio: true });
}

// A tone in the call's audio (RFC 4733 telephone-event), not SIP INFO.
function sendDigit(digit) {
  const c = call;
  if (!established(c) || !DTMF_FREQS[digit]) return;
  try {
    c.session.sendDTMF(digit, {
      transportType: JsSIP.C.DTMF_TRANSPORT.RFC2833,
      duration: 160,
      interToneGap: 100,
    });
    sound.key(digit);
    log('tone ' + digit + ' sent');
  } catch (e) {
    log('tone ' + digit + ' not sent: ' + e.message);
  }
}

function transfer(ev) {
  if (ev) ev.preventDefault();
  const c = call;
  const out = $('transfer-result');
  if (!established(c)) return;
  const target = $('transfer-to').value.trim();
  if (!target) {
    result(out, 'type the number to transfer to', 'bad');
    $('transfer-to').focus();
    return;
  }
  let refer;
  try {
    refer = c.session.refer(target);
  } catch (e) {
    result(out, 'not a number to transfer to: ' + e.message, 'bad');
    return;
  }
  if (!refer) {
    result(out, 'the call cannot be transferred right now', 'bad');
    return;
  }
  const line = (e) => (e && e.status_line ? ' (' + e.status_line.status_code + ' ' + (e.status_line.reason_phrase || '') + ')' : '');
  result(out, 'transferring to ' + target + '…');
  log('transfer to ' + target + ' asked');
  refer.on('requestSucceeded', () => result(out, 'transfer to ' + target + ' accepted by the server, connecting…'));
  refer.on('requestFailed', (e) => {
    const r = e && e.response;
    const why = r ? r.status_code + ' ' + (r.reason_phrase || '') : (e && e.cause) || 'refused';
    result(out, 'transfer refused: ' + why, 'bad');
    announce('Transfer to ' + target + ' refused');
  });
  refer.on('trying', () => result(out, 'transfer: calling ' + target + '…'));
  refer.on('progress', (e) => result(out, 'transfer: ' + target + ' is ringing' + line(e)));
  refer.on('accepted', () => {
    result(out, 'transferred to ' + target, 'ok');
    announce('Call transferred to ' + target);
    // Blind transfer: once the target has the call, this leg is done.
    if (!c.over) {
      try { c.session.terminate(); } catch (_) { /* already ended by the server */ }
    }
  });
  refer.on('failed', (e) => {
    result(out, 'transfer failed' + line(e) + ': the caller is still with you', 'bad');
    announce('Transfer to ' + target + ' failed');
  });
}

// ---- disposition ----

function openDisposition(c) {
  if (dispo) clearTimeout(dispo.timer);
  dispo = { call: c, saving: false, done: false, timer: 0 };
  $('disposition').hidden = false;
  $('disposition-title').textContent = 'How did the call from ' + callerText(c) + ' go?';
  const code = $('disposition-code');
  code.value = '';
  code.disabled = false;
  $('disposition-save').disabled = false;
  $('disposition-skip').textContent = 'Skip';
  result($('disposition-result'), '');
  code.focus();
}

function closeDisposition(d) {
  if (!dispo || dispo !== d) return;
  clearTimeout(d.timer);
  dispo = null;
  $('disposition').hidden = true;
  if (call === d.call) {
    call = null;
    renderCall();
  }
}

async function saveDisposition(ev) {
  ev.preventDefault();
  const d = dispo;
  if (!d || d.saving || d.done) return;
  const out = $('disposition-result');
  const code = $('disposition-code').value.trim();
  if (!code) {
    result(out, 'type a code, or Skip', 'bad');
    return;
  }
  d.saving = true;
  $('disposition-save').disabled = true;
  result(out, 'saving…');
  let error = null;
  for (let attempt = 0; ; attempt++) {
    try {
      await S.api('/api/calls/' + encodeURIComponent(d.call.id) + '/disposition', { code });
      error = null;
      break;
    } catch (e) {
      error = e;
      // The call's record is written as it ends: a moment after the hang-up, try again.
      if (!/^no call /.test(e.message) || attempt >= 5) break;
      await sleep(600);
    }
  }
  d.saving = false;
  if (dispo !== d) return;
  if (error) {
    result(out, error.message, 'bad');
    $('disposition-save').disabled = false;
    log('disposition not saved: ' + error.message);
    return;
  }
  d.done = true;
  result(out, 'saved', 'ok');
  announce('Disposition "' + code + '" saved for call ' + d.call.id);
  $('disposition-code').disabled = true;
  $('disposition-skip').textContent = 'Close';
  d.timer = setTimeout(() => closeDisposition(d), 5000);
}

// ---- keyboard ----

function typing(target) {
  if (!target || !(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  if (target.tagName === 'TEXTAREA' || target.tagName === 'SELECT') return true;
  if (target.tagName !== 'INPUT') return false;
  return !['button', 'submit', 'reset', 'checkbox', 'radio', 'range', 'color'].includes(target.type);
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat || typing(ev.target)) return;
  const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  if (DTMF_FREQS[key]) {
    if (!established(call)) return;
    ev.preventDefault();
    sendDigit(key);
    return;
  }
  const actions = {
    a: answer,
    h: hangup,
    o: toggleHold,
    m: toggleMute,
    r: () => setState('ready'),
    p: () => setState('paused'),
    t: () => { if (established(call)) $('transfer-to').focus(); },
  };
  if (!actions[key]) return;
  ev.preventDefault();
  actions[key]();
}

// ---- start ----

function wire() {
  $('ready').addEventListener('click', () => setState('ready'));
  $('pause').addEventListener('click', () => setState('paused'));
  $('answer').addEventListener('click', answer);
  $('hangup').addEventListener('click', hangup);
  $('hold').addEventListener('click', toggleHold);
  $('mute').addEventListener('click', toggleMute);
  $('keypad').addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-digit]');
    if (b) sendDigit(b.dataset.digit);
  });
  $('transfer-form').addEventListener('submit', transfer);
  $('disposition-form').addEventListener('submit', saveDisposition);
  $('disposition-skip').addEventListener('click', () => {
    if (dispo && !dispo.done) log('no disposition for call ' + dispo.call.id);
    closeDisposition(dispo);
  });
  document.addEventListener('keydown', onKey);
  window.addEventListener('beforeunload', (ev) => {
    // Leaving the page hangs up on the caller: ask first.
    if (call && !call.over) { ev.preventDefault(); ev.returnValue = ''; }
  });
  window.addEventListener('pagehide', () => {
    try { if (ua) ua.stop(); } catch (_) { /* going anyway */ }
  });
  setInterval(() => { tickAgent(); tickCall(); }, 1000);
}

// The microphone: asked for once now, so that answering does not wait for a prompt.
async function checkMicrophone() {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error('this page must be opened over https (or on localhost) to use the microphone');
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  } catch (e) {
    if (e && e.name === 'NotAllowedError') {
      throw new Error('the microphone is blocked for this page: allow it in the browser, then reload');
    }
    if (e && e.name === 'NotFoundError') throw new Error('no microphone found: plug a headset in, then reload');
    throw new Error('the microphone is not available: ' + ((e && e.message) || e));
  }
  for (const t of stream.getTracks()) t.stop();
}

async function main() {
  wire();
  me = await S.session();
  if (!me.agent) {
    setReg('none', 'phone: off');
    document.body.dataset.status = 'loggedout';
    $('status-text').textContent = 'Not an agent';
    showError(me.login + ' is not an agent: this page is the phone of an agent login. ' +
      'Ask an administrator to make this login an agent (its agent name in users.toml).');
    for (const b of document.querySelectorAll('button:not(#logout)')) b.disabled = true;
    return;
  }
  pollAgent();
  try {
    phone = await S.api('/api/phone');
  } catch (e) {
    phoneProblem = 'no settings';
    setReg('failed', 'phone: no settings');
    showError('The phone settings could not be loaded: ' + e.message);
    return;
  }
  try {
    await checkMicrophone();
  } catch (e) {
    phoneProblem = 'no microphone';
    setReg('failed', 'phone: off (no microphone)');
    showError('The phone is off: ' + e.message);
    return;
  }
  try {
    setReg('connecting', 'phone: connecting…');
    startPhone();
  } catch (e) {
    phoneProblem = 'could not start';
    setReg('failed', 'phone: could not start');
    showError('The phone could not start: ' + e.message);
  }
}

window.agentPage = {
  get ua() { return ua; },
  session() { return call ? call.session : null; },
};

main();
