// Shared by the pages: the session (with its CSRF token) and JSON calls to the API.
'use strict';

const Switchboard = {
  me: null,

  // The logged-in user, or off to the login page.
  async session() {
    const r = await fetch('/api/me', { credentials: 'same-origin' });
    if (r.status === 401) {
      location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
      return new Promise(() => {});
    }
    this.me = await r.json();
    const who = document.querySelector('.who');
    if (who) who.textContent = this.me.login + ' (' + this.me.roles.join(', ') + ')';
    const out = document.querySelector('#logout');
    if (out) out.addEventListener('click', () => this.logout());
    return this.me;
  },

  has(role) {
    return !!this.me && this.me.roles.includes(role);
  },

  // GET or POST JSON; changes carry the CSRF token. Throws an Error with the server's words.
  async api(path, body) {
    const opts = { credentials: 'same-origin', headers: {} };
    if (body !== undefined) {
      opts.method = 'POST';
      opts.headers['Content-Type'] = 'application/json';
      opts.headers['X-CSRF-Token'] = this.me ? this.me.csrf : '';
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (!r.ok) throw new Error((data && data.error) || ('HTTP ' + r.status));
    return data;
  },

  async logout() {
    try { await this.api('/api/logout', {}); } catch (_) { /* gone anyway */ }
    location.href = '/login';
  },

  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  },

  // 75 → "1:15", 3700 → "1:01:40".
  duration(s) {
    if (s === null || s === undefined) return '–';
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const two = (n) => String(n).padStart(2, '0');
    return h > 0 ? h + ':' + two(m) + ':' + two(sec) : m + ':' + two(sec);
  },

  percent(v) {
    return v === null || v === undefined ? '–' : Math.round(v * 100) + '%';
  },
};
