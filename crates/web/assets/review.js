// Quality review: find recorded calls, play one, score it. Every listing and playback is
// written to the audit log by the server.
'use strict';

const S = Switchboard;
let current = null;

function when(ms) {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

async function search(ev) {
  if (ev) ev.preventDefault();
  const error = document.getElementById('error');
  error.textContent = '';
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(document.getElementById('filters'))) if (v) params.set(k, v);
  try {
    const { calls } = await S.api('/api/recordings?' + params);
    const body = document.querySelector('#calls tbody');
    body.replaceChildren();
    for (const c of calls) {
      body.append(S.el('tr', { 'data-call': String(c.call_id) },
        S.el('td', {}, when(c.arrived_ms)),
        S.el('td', {}, c.queue || ''),
        S.el('td', {}, c.agent || ''),
        S.el('td', {}, c.caller),
        S.el('td', {}, S.duration(c.talk_s)),
        S.el('td', {}, c.outcome),
        S.el('td', {}, S.el('button', { class: 'play', onclick: () => open(c) }, 'Review'))));
    }
    if (calls.length === 0) body.append(S.el('tr', {}, S.el('td', { colspan: '7' }, 'No recorded calls.')));
  } catch (e) {
    error.textContent = e.message;
  }
}

async function open(c) {
  current = c;
  for (const tr of document.querySelectorAll('#calls tr')) {
    tr.classList.toggle('selected', tr.dataset.call === String(c.call_id));
  }
  document.getElementById('review').classList.remove('hidden');
  document.getElementById('review-title').textContent =
    'Call ' + c.call_id + ' · ' + (c.agent || '') + ' · ' + when(c.arrived_ms);
  document.getElementById('sha').textContent = 'SHA-256 ' + c.recording.sha256;
  const player = document.getElementById('player');
  player.src = '/api/recordings/' + c.call_id + '/audio';
  document.getElementById('saved').textContent = '';
  await showReviews();
}

async function showReviews() {
  const list = document.getElementById('reviews');
  list.replaceChildren();
  const { reviews } = await S.api('/api/calls/' + current.call_id + '/reviews');
  for (const r of reviews) {
    list.append(S.el('li', {}, when(r.at_ms) + ' ' + r.reviewer + ': ' + r.score + ' – ' + r.comment));
  }
}

async function save(ev) {
  ev.preventDefault();
  const saved = document.getElementById('saved');
  try {
    await S.api('/api/calls/' + current.call_id + '/reviews', {
      score: Number(document.getElementById('score').value),
      comment: document.getElementById('comment').value,
    });
    await showReviews();
    saved.textContent = 'saved';
  } catch (e) {
    saved.textContent = e.message;
  }
}

async function main() {
  await S.session();
  document.getElementById('date').value = new Date().toISOString().slice(0, 10);
  document.getElementById('filters').addEventListener('submit', search);
  document.getElementById('score-form').addEventListener('submit', save);
  if (!S.has('reviewer')) {
    document.getElementById('error').textContent =
      S.me.login + ' is not a quality reviewer: recordings are not available.';
    return;
  }
  await search();
}

main();
