// The wallboard: the board arrives over server-sent events (within a second of a change);
// times in state tick here between updates.
'use strict';

const S = Switchboard;
let board = null;
let receivedAt = 0;

const STATE_NAMES = {
  ready: 'Ready', not_ready: 'Paused', ringing: 'Ringing', busy: 'On call',
  wrap_up: 'Wrap-up', logged_out: 'Logged out',
};

function level(q) {
  // The worse of the longest wait and today's service level, by the queue's thresholds.
  let wait = 'ok', sl = 'ok';
  if (q.longest_wait_s >= q.wait_alert_s) wait = 'alert';
  else if (q.longest_wait_s >= q.wait_warn_s) wait = 'warn';
  const v = q.today.service_level;
  if (v !== null && v < q.service_level_alert) sl = 'alert';
  else if (v !== null && v < q.service_level_warn) sl = 'warn';
  const rank = { ok: 0, warn: 1, alert: 2 };
  return { wait, sl, queue: rank[wait] >= rank[sl] ? wait : sl };
}

function figure(label, value, cls, name) {
  return S.el('div', { class: 'figure ' + (cls || ''), 'data-figure': name },
    S.el('div', { class: 'v' }, value), S.el('div', { class: 'k' }, label));
}

function renderQueues() {
  const box = document.getElementById('queues');
  box.replaceChildren();
  for (const q of board.queues) {
    const l = level(q);
    const states = Object.entries(q.agents)
      .map(([st, n]) => n + ' ' + (STATE_NAMES[st] || st).toLowerCase()).join(' · ');
    box.append(S.el('article', { class: 'queue ' + (l.queue === 'ok' ? '' : l.queue), 'data-queue': q.name },
      S.el('h2', {}, q.name),
      S.el('div', { class: 'figures' },
        figure('waiting', q.waiting, '', 'waiting'),
        figure('longest wait', S.duration(q.longest_wait_s), l.wait === 'ok' ? '' : l.wait, 'longest_wait'),
        figure('service level today', S.percent(q.today.service_level), l.sl === 'ok' ? '' : l.sl, 'service_level'),
        figure('last 30 min', S.percent(q.recent.service_level), '', 'service_level_recent'),
        figure('answered today', q.today.answered, '', 'answered'),
        figure('abandoned', S.percent(q.today.abandon_rate), '', 'abandon_rate'),
        figure('avg speed of answer', S.duration(q.today.asa_s), '', 'asa'),
        figure('avg handle time', S.duration(q.today.aht_s), '', 'aht')),
      S.el('div', { class: 'states' }, states || 'no agents')));
  }
}

async function setState(agent, state) {
  let reason = null;
  if (state === 'paused') {
    reason = prompt('Reason for pausing ' + agent + ' (e.g. break, lunch, training):', 'break');
    if (!reason) return;
  }
  const error = document.getElementById('error');
  error.textContent = '';
  try {
    await S.api('/api/agents/' + encodeURIComponent(agent) + '/state', { state, reason });
  } catch (e) {
    error.textContent = agent + ': ' + e.message;
  }
}

function renderAgents() {
  const body = document.querySelector('#agents tbody');
  body.replaceChildren();
  const canChange = S.has('supervisor') || S.has('admin');
  for (const a of board.agents) {
    const controls = S.el('td', { class: 'controls' });
    if (canChange) {
      controls.append(
        S.el('button', { class: 'quiet', onclick: () => setState(a.name, 'ready') }, 'Ready'), ' ',
        S.el('button', { class: 'quiet', onclick: () => setState(a.name, 'paused') }, 'Pause'), ' ',
        S.el('button', { class: 'quiet', onclick: () => setState(a.name, 'logged_out') }, 'Log out'));
    }
    const label = (STATE_NAMES[a.state] || a.state) + (a.reason ? ' (' + a.reason + ')' : '');
    body.append(S.el('tr', { 'data-agent': a.name },
      S.el('td', {}, a.name),
      S.el('td', {}, S.el('span', { class: 'state ' + a.state }, label)),
      S.el('td', { class: 'in-state', 'data-since': String(a.in_state_s) }, S.duration(a.in_state_s)),
      S.el('td', {}, a.handled_today),
      controls));
  }
}

function tick() {
  if (!board) return;
  const extra = (Date.now() - receivedAt) / 1000;
  for (const td of document.querySelectorAll('td.in-state')) {
    td.textContent = S.duration(Number(td.dataset.since) + extra);
  }
  const live = document.getElementById('live');
  const stale = extra > 5;
  live.textContent = stale ? 'no updates for ' + Math.round(extra) + ' s' : 'live';
  live.classList.toggle('stale', stale);
}

async function main() {
  await S.session();
  const events = new EventSource('/api/events');
  events.addEventListener('board', (ev) => {
    board = JSON.parse(ev.data);
    receivedAt = Date.now();
    document.body.dataset.version = String(board.version);
    renderQueues();
    renderAgents();
    tick();
  });
  events.addEventListener('error', () => {
    // 401/403 close the stream for good: show why.
    if (events.readyState === EventSource.CLOSED) {
      document.getElementById('error').textContent =
        'The live view is not available to ' + S.me.login + '.';
    }
  });
  setInterval(tick, 1000);
}

main();
