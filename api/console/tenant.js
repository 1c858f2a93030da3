// tenant.js: the screens of a tenant's accounts on the client listener:
// the dashboard (notices, incidents), accounts and permissions, contacts
// with tags and custom attributes, the history in Japan time, and the
// utility export. Each screen is a function (main, session) that fills main.

import { call, callAll } from './api.js';
import { language, t } from './i18n.js';
import {
  act, button, download, el, field, fill, form, fromJstInput, input, say, section, select, table, when, word,
} from './ui.js';

const PERMISSIONS = ['contacts.read', 'contacts.write', 'tags.write', 'attributes.write', 'audit.read', 'users.read'];

// ---- Dashboard ----

function noticeCard(n, reload) {
  return el(
    'article',
    { class: `card notice kind-${n.notice_kind}`, 'data-notice': n.notice },
    el('h3', {}, el('span', { class: 'badge' }, word('notice_kind', n.notice_kind)), ' ', n.title),
    el('p', { class: 'meta' }, `${t('dash.effective')}: ${when(n, 'effective')}`),
    el('p', { class: 'body' }, n.body),
    button(t('dash.ack'), () => act(() => call('notices.ack', { notice: n.notice }), { done: t('dash.acked'), after: reload }), {
      class: 'primary',
      'data-action': 'ack-notice',
    }),
  );
}

function incidentCard(inc, reload) {
  const hist = el('ol', { class: 'history', hidden: true });
  const toggle = button(t('dash.history'), async () => {
    if (!hist.hidden) {
      hist.hidden = true;
      toggle.textContent = t('dash.history');
      toggle.setAttribute('aria-expanded', 'false');
      return;
    }
    await act(async () => {
      const r = await call('incidents.history', { incident: inc.incident });
      fill(
        hist,
        r.entries.map((e) =>
          el('li', {}, el('time', {}, when(e, 'time')), ' ', e.severity ? `[${word('severity', e.severity)}] ` : '', e.summary),
        ),
      );
      hist.hidden = false;
      toggle.textContent = t('dash.history_hide');
      toggle.setAttribute('aria-expanded', 'true');
    });
  });
  toggle.setAttribute('aria-expanded', 'false');
  const read = inc.acknowledged_at
    ? el('p', { class: 'read', 'data-read': 'yes' }, t('dash.read_at', when(inc, 'acknowledged_at')))
    : button(
      t('dash.read'),
      () => act(() => call('incidents.ack', { incident: inc.incident }), { done: t('dash.read_done'), after: reload }),
      { class: 'primary', 'data-action': 'ack-incident' },
    );
  return el(
    'article',
    { class: `card incident sev-${inc.severity}${inc.resolved ? ' resolved' : ''}`, 'data-incident': inc.incident },
    el(
      'h3',
      {},
      el('span', { class: 'badge' }, inc.resolved ? t('dash.resolved') : t('dash.open')),
      ' ',
      el('span', { class: 'badge sev' }, word('severity', inc.severity)),
      ' ',
      inc.title,
    ),
    el(
      'p',
      { class: 'meta' },
      `${word('incident_scope', inc.incident_scope)} · ${t('dash.detected')}: ${when(inc, 'detected')} · ${t('dash.deadline')}: ${when(inc, 'deadline')}`,
    ),
    el('p', { class: 'body' }, inc.summary),
    el('div', { class: 'row' }, toggle, read),
    hist,
  );
}

export async function dashboard(main) {
  const reload = () => dashboard(main);
  const [notices, incidents] = await Promise.all([
    callAll('notices.list', {}, 'notices', 5),
    call('incidents.list', {}),
  ]);
  const unread = notices.filter((n) => !n.acknowledged);
  const acked = notices.filter((n) => n.acknowledged);
  const inc = (incidents.incidents || []).slice().sort((a, b) => Number(a.resolved) - Number(b.resolved) || (BigInt(b.detected) > BigInt(a.detected) ? 1 : -1));
  fill(
    main,
    el('h1', {}, t('nav.dashboard')),
    section(
      t('dash.notices'),
      unread.length ? unread.map((n) => noticeCard(n, reload)) : el('p', {}, t('common.none')),
      acked.length
        ? el(
          'details',
          {},
          el('summary', {}, t('dash.notices_acked', acked.length)),
          acked.map((n) => el('p', {}, `${word('notice_kind', n.notice_kind)} · ${n.title} · ${when(n, 'effective')}`)),
        )
        : null,
    ),
    section(t('dash.incidents'), inc.length ? inc.map((i) => incidentCard(i, reload)) : el('p', {}, t('common.none'))),
  );
}

// ---- Accounts ----

function permissionControls(u, reload) {
  const pick = select('permission', [['', t('acc.permission')], ...PERMISSIONS.map((p) => [p, word('permission', p)])], null, {
    'aria-label': `${t('acc.permission')} (${u.email})`,
  });
  const change = (op, done) => () => {
    if (!pick.value) return;
    act(() => call(op, { account: u.account, permissions: [pick.value], version: u.version }), { done, reload, after: reload });
  };
  return el(
    'div',
    { class: 'row' },
    pick,
    button(t('acc.grant'), change('users.grant', t('acc.done')), { 'data-action': 'grant' }),
    button(t('acc.revoke'), change('users.revoke', t('acc.done')), { 'data-action': 'revoke' }),
  );
}

function userRow(u, reload) {
  const state = u.locked ? t('acc.locked', word('lock_reason', u.lock_reason)) : t('acc.active');
  const acts = [];
  if (u.role !== 'master') {
    const lockOp = u.locked ? 'users.unlock' : 'users.lock';
    acts.push(
      button(u.locked ? t('acc.unlock') : t('acc.lock'), () => act(() => call(lockOp, { account: u.account, version: u.version }), { done: t('acc.done'), reload, after: reload }), {
        'data-action': u.locked ? 'unlock' : 'lock',
      }),
      button(
        t('acc.delete'),
        () => {
          if (!window.confirm(t('common.confirm_delete', u.email))) return;
          act(() => call('users.delete', { account: u.account, version: u.version }), { done: t('acc.done'), reload, after: reload });
        },
        { class: 'danger', 'data-action': 'delete' },
      ),
    );
    if (u.role === 'user') acts.push(permissionControls(u, reload));
  }
  return el(
    'tr',
    { 'data-account': u.account, 'data-email': u.email },
    el('td', {}, u.email),
    el('td', {}, u.display_name || ''),
    el('td', {}, word('role', u.role)),
    el('td', { class: 'perms' }, (u.permissions || []).map((p) => word('permission', p)).join(language() === 'ja' ? '、' : ', ')),
    el('td', {}, state),
    el('td', { class: 'actions' }, acts),
  );
}

export async function accounts(main) {
  const reload = () => accounts(main);
  const users = await callAll('users.list', {}, 'users');
  const create = form(
    t('acc.create'),
    [
      field(t('acc.email'), input('email', { type: 'email', required: true, autocomplete: 'off' })),
      field(t('acc.display_name'), input('display_name', { autocomplete: 'off' })),
      field(t('acc.password'), input('password', { type: 'password', required: true, autocomplete: 'new-password', minlength: 12 })),
      field(t('acc.role'), select('role', ['user', 'auditor'], (r) => word('role', r))),
      el(
        'fieldset',
        {},
        el('legend', {}, t('acc.permissions')),
        PERMISSIONS.map((p) => {
          const c = input('permissions', { type: 'checkbox', value: p });
          return el('div', { class: 'check' }, c, el('label', { for: (c.id = `perm-${p.replace('.', '-')}`) }, word('permission', p)));
        }),
      ),
    ],
    t('acc.create'),
    (d) => {
      const args = { email: d.email, password: d.password, role: d.role, permissions: d.permissions || [] };
      if (d.display_name) args.display_name = d.display_name;
      act(() => call('users.create', args), { done: t('acc.created'), after: reload });
    },
  );
  fill(
    main,
    el('h1', {}, t('acc.title')),
    table(
      t('acc.title'),
      [t('acc.email'), t('acc.display_name'), t('acc.role'), t('acc.permissions'), t('acc.state'), t('common.actions')],
      users.map((u) => userRow(u, reload)),
      { id: 'users' },
    ),
    create,
  );
}

// ---- Contacts, tags, attributes ----

function typedValue(type, raw) {
  if (type === 'number') return Number(raw);
  if (type === 'bool') return raw === 'true';
  return raw;
}

async function contactDetail(box, contactId, tags, attrs) {
  const reload = () => contactDetail(box, contactId, tags, attrs);
  const c = await call('contacts.get', { contact: contactId });
  const has = new Set((c.tags || []).map((x) => x.tag));
  const tagPick = select('tag', tags.filter((x) => !has.has(x.tag)).map((x) => [x.tag, x.tag_name]), null, {});
  const attrPick = select('attribute_key', attrs.map((a) => [a.attribute_key, `${a.attribute_key} (${word('attribute_type', a.attribute_type)})`]));
  const valueInput = input('value', {});
  fill(
    box,
    el('h3', { id: 'detail-title', tabindex: '-1' }, t('con.detail', c.name)),
    el('p', { class: 'meta' }, [c.name_kana, c.email, c.phone].filter(Boolean).join(' · ')),
    el('h4', {}, t('con.tags')),
    el(
      'ul',
      { class: 'tags' },
      (c.tags || []).map((x) =>
        el(
          'li',
          {},
          el('span', { class: 'tag' }, x.tag_name),
          ' ',
          button('×', () => act(() => call('contacts.untag', { contact: c.contact, tag: x.tag, version: c.version }), { done: t('con.untagged'), reload, after: reload }), {
            'aria-label': t('con.tag_remove', x.tag_name),
            class: 'small',
          }),
        ),
      ),
    ),
    tagPick.options.length
      ? el(
        'div',
        { class: 'row' },
        field(t('con.tag_pick'), tagPick),
        button(t('con.tag_add'), () => act(() => call('contacts.tag', { contact: c.contact, tag: tagPick.value, version: c.version }), { done: t('con.tagged'), reload, after: reload }), {
          'data-action': 'tag',
        }),
      )
      : null,
    el('h4', {}, t('con.attributes')),
    el('dl', { class: 'attrs' }, (c.attributes || []).map((a) => [el('dt', {}, a.attribute_key), el('dd', {}, String(a.value))])),
    attrs.length
      ? el(
        'div',
        { class: 'row' },
        field(t('con.attr_key'), attrPick),
        field(t('con.attr_value'), valueInput),
        button(t('con.attr_set'), () => {
          const def = attrs.find((a) => a.attribute_key === attrPick.value);
          const args = { contact: c.contact, attribute_key: attrPick.value, version: c.version };
          if (valueInput.value !== '') args.value = typedValue(def && def.attribute_type, valueInput.value);
          act(() => call('contacts.set', args), { done: t('con.attr_saved'), reload, after: reload });
        }, { 'data-action': 'set-attribute' }),
      )
      : null,
  );
}

export async function contacts(main) {
  const reload = () => contacts(main);
  const [list, tags, attrs] = await Promise.all([
    callAll('contacts.list', {}, 'contacts', 5),
    callAll('tags.list', {}, 'tags', 5),
    call('attributes.list', {}),
  ]);
  const attributes = attrs.attributes || [];
  const detail = el('div', { class: 'card detail', id: 'contact-detail', 'aria-live': 'polite' });
  const rows = list.map((c) =>
    el(
      'tr',
      { 'data-contact': c.contact },
      el('td', {}, c.name),
      el('td', {}, c.name_kana || ''),
      el('td', {}, c.email || ''),
      el('td', {}, c.phone || ''),
      el(
        'td',
        {},
        button(t('con.open'), async () => {
          await act(() => contactDetail(detail, c.contact, tags, attributes));
          const h = document.getElementById('detail-title');
          if (h) h.focus();
        }, { 'aria-label': `${t('con.open')}: ${c.name}`, 'data-action': 'open-contact' }),
      ),
    ),
  );
  fill(
    main,
    el('h1', {}, t('con.title')),
    table(t('con.title'), [t('con.name'), t('con.name_kana'), t('con.email'), t('con.phone'), t('common.actions')], rows, { id: 'contacts' }),
    detail,
    el(
      'div',
      { class: 'forms' },
      form(
        t('con.register'),
        [
          field(t('con.name'), input('name', { required: true })),
          field(t('con.name_kana'), input('name_kana', {})),
          field(t('con.email'), input('email', { type: 'email' })),
          field(t('con.phone'), input('phone', { type: 'tel' })),
        ],
        t('con.register'),
        (d) => {
          const args = {};
          for (const k of ['name', 'name_kana', 'email', 'phone']) if (d[k]) args[k] = d[k];
          act(() => call('contacts.register', args), { done: t('con.registered'), after: reload });
        },
      ),
      form(
        t('con.tag_create'),
        [
          el('p', {}, tags.length ? tags.map((x) => el('span', { class: 'tag' }, x.tag_name)) : t('common.none')),
          field(t('con.tag_new'), input('tag_name', { required: true })),
        ],
        t('con.tag_create'),
        (d) => act(() => call('tags.create', { tag_name: d.tag_name }), { done: t('con.tag_created'), after: reload }),
      ),
      form(
        t('con.attr_define'),
        [
          el('p', {}, attributes.length ? attributes.map((a) => el('span', { class: 'tag' }, `${a.attribute_key} (${word('attribute_type', a.attribute_type)})`)) : t('common.none')),
          field(t('con.attr_key'), input('attribute_key', { required: true, pattern: '[a-z0-9_]+' })),
          field(t('con.attr_type'), select('attribute_type', ['string', 'number', 'date', 'bool'], (x) => word('attribute_type', x))),
        ],
        t('con.attr_define'),
        (d) => act(() => call('attributes.define', { attribute_key: d.attribute_key, attribute_type: d.attribute_type }), { done: t('con.attr_defined'), after: reload }),
      ),
    ),
  );
}

// ---- History (audit.list) ----

// The history screen; asTimeline groups the entries by JST day (the
// auditor's timeline).
export async function history(main, s, asTimeline) {
  const out = el('div', { id: 'history-out' });
  let cursor = null;
  let filters = {};
  let entries = [];
  const more = button(t('common.more'), () => load(false), { hidden: true });

  function render() {
    if (!entries.length) {
      fill(out, el('p', {}, t('common.none')));
      return;
    }
    if (asTimeline) {
      const days = new Map();
      for (const e of entries) {
        const d = when(e, 'time').slice(0, 10);
        if (!days.has(d)) days.set(d, []);
        days.get(d).push(e);
      }
      fill(
        out,
        el(
          'ol',
          { class: 'timeline' },
          [...days].map(([d, es]) =>
            el(
              'li',
              {},
              el('h3', {}, d),
              el('ol', {}, es.map((e) => el('li', { 'data-seq': e.seq }, el('time', {}, when(e, 'time').slice(11)), ' ', el('strong', {}, word('event', e.type)), ' ', el('code', {}, e.type), ' ', el('span', { class: 'actor' }, e.actor)))),
            ),
          ),
        ),
      );
      return;
    }
    fill(
      out,
      table(
        t('hist.title'),
        [t('hist.time'), t('hist.actor'), t('hist.type'), t('hist.seq'), t('hist.what')],
        entries.map((e) => [when(e, 'time'), e.actor, e.type, String(e.seq), word('event', e.type)]),
        { id: 'history' },
      ),
    );
  }

  async function load(fresh) {
    await act(async () => {
      const args = Object.assign({ limit: 100 }, filters);
      if (!fresh && cursor) args.cursor = cursor;
      const r = await call('audit.list', args);
      entries = fresh ? r.entries : entries.concat(r.entries);
      cursor = r.cursor;
      more.hidden = !cursor;
      render();
    });
  }

  const f = form(
    t('hist.filter'),
    [
      el(
        'div',
        { class: 'row' },
        field(t('hist.actor'), input('actor', { placeholder: 'account/…' })),
        field(t('hist.type'), input('type', { placeholder: 'account.created' })),
        field(t('hist.from'), input('from', { type: 'datetime-local' })),
        field(t('hist.to'), input('to', { type: 'datetime-local' })),
      ),
    ],
    t('hist.filter'),
    (d) => {
      filters = {};
      if (d.actor) filters.actor = d.actor;
      if (d.type) filters.type = d.type;
      if (d.from) filters.from = fromJstInput(d.from);
      if (d.to) filters.to = fromJstInput(d.to);
      load(true);
    },
  );
  f.classList.add('filters');
  fill(main, el('h1', {}, asTimeline ? t('aud.timeline') : t('hist.title')), f, out, more);
  await load(true);
}

// ---- Utility export (master) ----

function csvCell(v) {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export async function exportContacts(main) {
  const cols = ['contact', 'name', 'name_kana', 'email', 'phone', 'line_user_id', 'note'];
  fill(
    main,
    el('h1', {}, t('exp.title')),
    el('p', {}, t('exp.explain')),
    button(
      t('exp.run'),
      () =>
        act(async () => {
          const rows = await callAll('utility.export', {}, 'contacts', 1000);
          const csv = [cols.join(','), ...rows.map((r) => cols.map((c) => csvCell(r[c])).join(','))].join('\r\n');
          download(`contacts-${new Date().toISOString().slice(0, 10)}.csv`, `\ufeff${csv}\r\n`, 'text/csv;charset=utf-8');
          say(t('exp.done', rows.length), 'ok');
        }),
      { class: 'primary', id: 'export-run' },
    ),
  );
}
