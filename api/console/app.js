// app.js: the console's entry. On load it asks the gateway who is logged in
// (GET /session); without a session it shows the login form. With one it
// shows the screens of the session's role, as links in the menu and as
// #/name in the address (so the browser's back button works):
//
//   master    dashboard, accounts, contacts, history, export   (client listener)
//   user      dashboard, contacts, history (as its permissions allow)
//   auditor   timeline, export, dashboard
//   operator  incidents, tenants, notices, alerts, backups, checkpoint, operators
//             (operator listener; the gateway refuses operator ops elsewhere)
//
// No inline script or style anywhere (the gateway's Content-Security-Policy
// forbids them); everything is built with DOM calls (ui.js).

import { login, logout, session, whenSessionEnds } from './api.js';
import { language, setLanguage, t, tEnum } from './i18n.js';
import { el, errorText, field, fill, input, say, setStatusElement } from './ui.js';
import * as tenant from './tenant.js';
import * as op from './operator.js';
import { auditExport } from './auditor.js';

const SCREENS = {
  dashboard: { run: tenant.dashboard, roles: ['master', 'user', 'auditor'] },
  accounts: { run: tenant.accounts, roles: ['master'] },
  contacts: { run: tenant.contacts, roles: ['master', 'user'], perm: 'contacts.read' },
  history: { run: tenant.history, roles: ['master', 'user'], perm: 'audit.read' },
  export: { run: tenant.exportContacts, roles: ['master'] },
  timeline: { run: (m, s) => tenant.history(m, s, true), roles: ['auditor'] },
  'audit-export': { run: auditExport, roles: ['auditor'], label: 'nav.export' },
  incidents: { run: op.incidents, roles: ['operator'] },
  tenants: { run: op.tenants, roles: ['operator'] },
  notices: { run: op.notices, roles: ['operator'] },
  alerts: { run: op.alerts, roles: ['operator'] },
  backups: { run: op.backups, roles: ['operator'] },
  checkpoint: { run: op.checkpoint, roles: ['operator'] },
  operators: { run: op.operators, roles: ['operator'] },
};

const FIRST = { master: 'dashboard', user: 'dashboard', auditor: 'timeline', operator: 'incidents' };
const ORDER = {
  auditor: ['timeline', 'audit-export', 'dashboard'],
};

let current = null; // the session

const $ = (id) => document.getElementById(id);

function allowed(name, s) {
  const sc = SCREENS[name];
  if (!sc || !sc.roles.includes(s.role)) return false;
  if (s.role === 'operator' && s.endpoint && s.endpoint !== 'operator') return false;
  if (s.role === 'user' && sc.perm) return (s.permissions || []).includes(sc.perm);
  return true;
}

function screensOf(s) {
  const names = ORDER[s.role] || Object.keys(SCREENS);
  return names.filter((n) => allowed(n, s));
}

function route() {
  const name = location.hash.replace(/^#\/?/, '');
  return name;
}

function renderHeader() {
  const head = $('session');
  const langBtn = el(
    'button',
    { type: 'button', id: 'lang', lang: language() === 'ja' ? 'en' : 'ja', 'aria-label': t('app.lang.label') },
    t('app.lang'),
  );
  langBtn.addEventListener('click', () => {
    setLanguage(language() === 'ja' ? 'en' : 'ja');
    document.title = t('app.title');
    start();
  });
  const parts = [langBtn];
  if (current) {
    parts.unshift(
      el('span', { id: 'who' }, t('app.signed_in', current.email || current.tenant_code || '', tEnum('role', current.role))),
    );
    const out = el('button', { type: 'button', id: 'logout' }, t('app.logout'));
    out.addEventListener('click', async () => {
      try {
        await logout();
      } catch (e) {
        /* the cookie is cleared or the session already ended: either way */
      }
      current = null;
      history.replaceState(null, '', '#/');
      showLogin(t('login.logged_out'));
    });
    parts.push(out);
  }
  fill(head, ...parts);
  $('skip').textContent = t('app.skip');
  $('app-title').textContent = t('app.title');
}

function renderNav(active) {
  const nav = $('nav');
  if (!current) {
    fill(nav);
    nav.hidden = true;
    return;
  }
  nav.hidden = false;
  nav.setAttribute('aria-label', t('nav.label'));
  fill(
    nav,
    el(
      'ul',
      {},
      screensOf(current).map((n) =>
        el(
          'li',
          {},
          el('a', { href: `#/${n}`, 'aria-current': n === active ? 'page' : null, 'data-screen': n }, t(SCREENS[n].label || `nav.${n}`)),
        ),
      ),
    ),
  );
}

async function show() {
  const main = $('main');
  let name = route();
  if (!allowed(name, current)) name = FIRST[current.role];
  if (!allowed(name, current)) name = screensOf(current)[0];
  renderNav(name);
  if (!name) {
    fill(main, el('p', {}, t('err.forbidden')));
    return;
  }
  if (route() !== name) history.replaceState(null, '', `#/${name}`);
  main.setAttribute('aria-busy', 'true');
  fill(main, el('p', {}, t('app.loading')));
  try {
    await SCREENS[name].run(main, current);
  } catch (e) {
    if (e.code === 'unauthenticated') return;
    fill(main, el('h1', {}, t(SCREENS[name].label || `nav.${name}`)), el('p', { class: 'status error' }, errorText(e)));
  } finally {
    main.removeAttribute('aria-busy');
    if (current) {
      // (not when the session ended meanwhile: the login form is showing)
      main.dataset.screen = name;
      document.body.dataset.ready = name;
    }
  }
}

function showLogin(message) {
  current = null;
  renderHeader();
  renderNav(null);
  const tc = input('tenant_code', { required: true, autocomplete: 'organization' });
  const email = input('email', { type: 'email', required: true, autocomplete: 'username' });
  const pw = input('password', { type: 'password', required: true, autocomplete: 'current-password' });
  const err = el('p', { id: 'login-error', class: 'status error', role: 'alert', hidden: !message });
  if (message) err.textContent = message;
  const f = el(
    'form',
    { id: 'login', class: 'card narrow' },
    el('h1', {}, t('login.title')),
    field(t('login.tenant_code'), tc, t('login.tenant_hint')),
    field(t('login.email'), email),
    field(t('login.password'), pw),
    err,
    el('button', { type: 'submit', class: 'primary' }, t('login.submit')),
  );
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const s = await login(tc.value.trim(), email.value.trim(), pw.value);
      pw.value = '';
      current = Object.assign({ email: email.value.trim(), tenant_code: tc.value.trim() }, s);
      say('', 'ok');
      renderHeader();
      await show();
      $('main').focus();
    } catch (e) {
      err.hidden = false;
      err.textContent = e.code === 'locked' ? t('login.locked') : e.code === 'unauthenticated' ? t('login.failed') : errorText(e);
      pw.focus();
    }
  });
  fill($('main'), f);
  document.body.dataset.ready = 'login';
  tc.focus();
}

async function start() {
  document.documentElement.lang = language();
  document.title = t('app.title');
  setStatusElement($('status'));
  try {
    const s = current || (await session());
    if (!s) {
      showLogin();
      return;
    }
    current = Object.assign({}, current || {}, s);
    renderHeader();
    await show();
  } catch (e) {
    renderHeader();
    fill($('main'), el('p', { class: 'status error' }, errorText(e)));
  }
}

whenSessionEnds(() => {
  if (current) showLogin(t('login.ended'));
});

// A screen chosen from the menu: focus goes to it, as after a page load.
window.addEventListener('hashchange', async () => {
  if (!current) return;
  await show();
  if (current) $('main').focus(); // else the login form has the focus
});

start();
