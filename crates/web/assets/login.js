'use strict';
document.getElementById('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const error = document.getElementById('error');
  error.textContent = '';
  try {
    const me = await Switchboard.api('/api/login', {
      login: document.getElementById('name').value,
      password: document.getElementById('password').value,
    });
    const next = new URLSearchParams(location.search).get('next');
    // Only a path on this server: never an address someone put in a link.
    if (next && next.startsWith('/') && !next.startsWith('//')) location.href = next;
    else if (me.roles.includes('supervisor') || me.roles.includes('admin')) location.href = '/wallboard';
    else if (me.roles.includes('reviewer')) location.href = '/review';
    else location.href = '/wallboard';
  } catch (e) {
    error.textContent = e.message;
  }
});
