// operator.js: the platform operators' screens (operator listener only):
// tenants with their state and erase-by dates, incidents against the
// 72-hour deadline (overdue first) with who has read them, publishing
// notices, alerts to acknowledge, backup generations and their checks, the
// journal's newest checkpoint, and the operator accounts (operators.*).

import { call, callAll } from './api.js';
import { t } from './i18n.js';
import {
  act, button, el, field, fill, form, fromJstInput, input, msUntil, nowJstInput, section, select, table, when, word,
} from './ui.js';

export async function tenants(main) {
  const list = await callAll('tenants.list', {}, 'tenants');
  fill(
    main,
    el('h1', {}, t('op.tenants')),
    table(
      t('op.tenants'),
      [t('op.code'), t('op.tenant'), t('op.state'), t('op.cancelled'), t('op.erase_by')],
      list.map((x) =>
        el(
          'tr',
          { 'data-tenant': x.tenant, class: `state-${x.tenant_state}` },
          el('td', {}, x.tenant_code || ''),
          el('td', { class: 'mono' }, x.tenant),
          el('td', {}, word('tenant_state', x.tenant_state)),
          el('td', {}, when(x, 'cancelled')),
          el('td', {}, when(x, 'erase_by')),
        ),
      ),
      { id: 'tenants' },
    ),
  );
}

// "12 h 5 min left" / "overdue by 3 h 0 min" for a deadline.
function timeLeft(deadline) {
  const ms = msUntil(deadline);
  const mins = Math.floor(Math.abs(ms) / 60000);
  const h = Math.floor(mins / 60);
  const m = mins % 60;
  return ms < 0 ? t('op.overdue_by', h, m) : t('op.left_value', h, m);
}

// Overdue first, then open ones by deadline, then resolved ones.
function incidentOrder(a, b) {
  const rank = (x) => (x.overdue ? 0 : x.resolved ? 2 : 1);
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  const da = BigInt(a.deadline);
  const db = BigInt(b.deadline);
  return da < db ? -1 : da > db ? 1 : 0;
}

async function readers(box, inc, codes) {
  const rows = await callAll('incidents.readers', { incident: inc.incident }, 'readers');
  fill(
    box,
    el('h3', { id: 'readers-title', tabindex: '-1' }, t('op.readers_of', inc.title)),
    rows.length
      ? table(
        null,
        [t('op.tenant'), t('op.code'), t('op.account'), t('op.read_time')],
        rows.map((r) => [r.tenant, codes.get(r.tenant) || '', el('span', { class: 'mono' }, r.account), when(r, 'time')]),
        { id: 'readers' },
      )
      : el('p', {}, t('common.none')),
  );
  box.hidden = false;
  document.getElementById('readers-title').focus();
}

// The notifications still owed (incidents.overdue, within the 72 hours):
// each tenant with "notify by e-mail" and "notified on the dashboard".
function dueTable(due, titles, codes, reload) {
  if (!due.length) return null;
  const notify = (d, channel) => () =>
    act(() => call('incidents.notify', { incident: d.incident, tenant: d.tenant, channel }), {
      done: t('op.notified'),
      reload,
      after: reload,
    });
  return section(
    t('op.due'),
    table(
      null,
      [t('op.title'), t('op.code'), t('dash.deadline'), t('op.left'), t('common.actions')],
      due.map((d) =>
        el(
          'tr',
          { 'data-due': `${d.incident}/${d.tenant}`, class: d.overdue ? 'overdue' : 'open' },
          el('td', {}, titles.get(d.incident) || d.incident),
          el('td', {}, codes.get(d.tenant) || d.tenant),
          el('td', {}, when(d, 'deadline')),
          el('td', { class: 'left' }, timeLeft(d.deadline)),
          el(
            'td',
            { class: 'actions' },
            button(t('op.notify_email'), notify(d, 'email'), { 'data-action': 'notify-email' }),
            button(t('op.notify_dashboard'), notify(d, 'dashboard'), { 'data-action': 'notify-dashboard' }),
          ),
        ),
      ),
      { id: 'due' },
    ),
  );
}

// An incident's severity and summary changed, or the incident resolved, on
// the version the list showed (a conflict reloads the list and says so).
function manage(box, inc, reload) {
  const sev = select('severity', ['low', 'medium', 'high', 'critical'], (x) => word('severity', x));
  sev.value = inc.severity;
  const summary = el('textarea', { name: 'summary', rows: 3, required: true });
  summary.value = inc.summary;
  const run = (op, done) => () => {
    const args = { incident: inc.incident, summary: summary.value, version: inc.version };
    if (op === 'incidents.update') args.severity = sev.value;
    act(() => call(op, args), { done, reload, after: reload });
  };
  fill(
    box,
    el('h3', { id: 'manage-title', tabindex: '-1' }, t('op.manage_of', inc.title)),
    field(t('op.severity'), sev),
    field(t('op.summary'), summary),
    el(
      'div',
      { class: 'row' },
      button(t('op.update'), run('incidents.update', t('op.updated')), { 'data-action': 'update' }),
      inc.resolved ? null : button(t('op.resolve'), run('incidents.resolve', t('op.resolved')), { class: 'primary', 'data-action': 'resolve' }),
    ),
  );
  box.hidden = false;
  document.getElementById('manage-title').focus();
}

export async function incidents(main) {
  const reload = () => incidents(main);
  const [all, owed, tenantList] = await Promise.all([
    callAll('incidents.all', {}, 'incidents'),
    call('incidents.overdue', { within_hours: 72 }),
    callAll('tenants.list', {}, 'tenants'),
  ]);
  const codes = new Map(tenantList.map((x) => [x.tenant, x.tenant_code]));
  const list = all.sort(incidentOrder);
  const titles = new Map(list.map((x) => [x.incident, x.title]));
  const box = el('div', { class: 'card detail', hidden: true, 'aria-live': 'polite' });
  fill(
    main,
    el('h1', {}, t('op.incidents')),
    table(
      t('op.incidents'),
      [t('op.severity'), t('op.title'), t('dash.detected'), t('dash.deadline'), t('op.left'), t('op.unnotified'), t('common.actions')],
      list.map((x) =>
        el(
          'tr',
          { 'data-incident': x.incident, class: x.overdue ? 'overdue' : x.resolved ? 'resolved' : 'open' },
          el('td', {}, word('severity', x.severity)),
          el('td', {}, x.title, x.resolved ? el('span', { class: 'badge' }, ` ${t('dash.resolved')}`) : null),
          el('td', {}, when(x, 'detected')),
          el('td', {}, when(x, 'deadline')),
          el('td', { class: 'left' }, Number(x.unnotified) === 0 ? t('op.all_notified') : timeLeft(x.deadline)),
          el('td', {}, String(x.unnotified)),
          el(
            'td',
            { class: 'actions' },
            button(t('op.readers'), () => act(() => readers(box, x, codes)), { 'data-action': 'readers', 'aria-label': `${t('op.readers')}: ${x.title}` }),
            button(t('op.manage'), () => manage(box, x, reload), { 'data-action': 'manage', 'aria-label': `${t('op.manage')}: ${x.title}` }),
          ),
        ),
      ),
      { id: 'incidents' },
    ),
    box,
    dueTable(owed.due || [], titles, codes, reload),
    openForm(reload),
  );
}

// Audience all, or the tenants listed (ids, comma-separated), as the ops take them.
function audienceFields() {
  const audience = select('audience', ['all', 'listed'], (x) => word('audience', x));
  const tenantsBox = field(t('op.tenants_list'), input('tenants', { inputmode: 'numeric' }));
  tenantsBox.hidden = true;
  audience.addEventListener('change', () => {
    tenantsBox.hidden = audience.value !== 'listed';
  });
  return [field(t('op.audience'), audience), tenantsBox];
}

function setAudience(args, d) {
  args.audience = d.audience;
  if (d.audience === 'listed') args.tenants = d.tenants.split(/[\s,、]+/).filter(Boolean);
  return args;
}

function openForm(reload) {
  return form(
    t('op.open'),
    [
      field(t('op.scope'), select('incident_scope', ['data-loss', 'outage', 'breach', 'other'], (x) => word('incident_scope', x))),
      field(t('op.severity'), select('severity', ['low', 'medium', 'high', 'critical'], (x) => word('severity', x))),
      field(t('op.title'), input('title', { required: true, maxlength: 200 })),
      field(t('op.summary'), el('textarea', { name: 'summary', required: true, rows: 3 })),
      field(t('op.detected'), input('detected', { type: 'datetime-local', value: nowJstInput(), required: true })),
      ...audienceFields(),
    ],
    t('op.open'),
    (d) => {
      const args = setAudience(
        { incident_scope: d.incident_scope, severity: d.severity, title: d.title, summary: d.summary, detected: fromJstInput(d.detected) },
        d,
      );
      act(() => call('incidents.open', args), { done: t('op.opened'), after: reload });
    },
  );
}

export async function notices(main) {
  const reload = () => notices(main);
  const list = await callAll('notices.all', {}, 'notices');
  const publish = form(
    t('op.publish'),
    [
      field(t('op.kind'), select('notice_kind', ['change', 'maintenance', 'vulnerability'], (x) => word('notice_kind', x))),
      field(t('op.title'), input('title', { required: true, maxlength: 200 })),
      field(t('op.body'), el('textarea', { name: 'body', required: true, rows: 5 })),
      field(t('op.effective'), input('effective', { type: 'datetime-local', value: nowJstInput(), required: true })),
      ...audienceFields(),
    ],
    t('op.publish'),
    (d) => {
      const args = setAudience(
        { notice_kind: d.notice_kind, title: d.title, body: d.body, effective: fromJstInput(d.effective) },
        d,
      );
      act(() => call('notices.publish', args), { done: t('op.published'), after: reload });
    },
  );
  fill(
    main,
    el('h1', {}, t('nav.notices')),
    publish,
    section(
      t('op.notices'),
      table(
        null,
        [t('op.kind'), t('op.title'), t('op.effective'), t('op.audience')],
        list.map((n) => [word('notice_kind', n.notice_kind), n.title, when(n, 'effective'), word('audience', n.audience)]),
        { id: 'notices' },
      ),
    ),
  );
}

export async function alerts(main) {
  const reload = () => alerts(main);
  const list = await callAll('alerts.list', { open_only: true }, 'alerts');
  fill(
    main,
    el('h1', {}, t('op.alerts')),
    list.length
      ? table(
        t('op.alerts'),
        [t('op.rule'), t('op.tenant'), t('op.raised'), t('op.summary'), t('common.actions')],
        list.map((a) =>
          el(
            'tr',
            { 'data-alert': a.alert },
            el('td', {}, word('alert_rule', a.alert_rule)),
            el('td', { class: 'mono' }, a.tenant ?? ''),
            el('td', {}, when(a, 'raised')),
            el('td', {}, a.alert_summary),
            el('td', {}, button(t('op.ack'), () => act(() => call('alerts.ack', { alert: a.alert, version: a.version }), { done: t('op.alert_acked'), reload, after: reload }), { 'data-action': 'ack-alert' })),
          ),
        ),
        { id: 'alerts' },
      )
      : el('p', {}, t('common.none')),
  );
}

export async function backups(main) {
  const r = await call('backups.list', {});
  const gens = r.generations || [];
  fill(
    main,
    el('h1', {}, t('op.backups')),
    gens.length
      ? table(
        t('op.backups'),
        [t('op.generation'), t('op.last_seq'), t('op.taken'), t('op.bytes'), t('op.verified')],
        gens.map((g) =>
          el(
            'tr',
            { class: g.verified ? 'ok' : 'bad' },
            el('td', {}, g.generation),
            el('td', {}, String(g.last_seq)),
            el('td', {}, when(g, 'taken')),
            el('td', {}, String(g.bytes)),
            el('td', {}, g.verified ? t('op.ok') : t('op.failed', g.reason || '')),
          ),
        ),
        { id: 'backups' },
      )
      : el('p', {}, t('common.none')),
  );
}

export async function checkpoint(main) {
  const r = await call('journal.checkpoint', {});
  const lines = String(r.checkpoint || '').split('\n');
  fill(
    main,
    el('h1', {}, t('op.checkpoint')),
    el(
      'dl',
      { class: 'attrs' },
      el('dt', {}, t('op.tree_size')),
      el('dd', { id: 'tree-size' }, lines[1] || ''),
      el('dt', {}, t('op.root')),
      el('dd', { class: 'mono' }, lines[2] || ''),
    ),
    el('pre', { id: 'checkpoint' }, r.checkpoint || ''),
  );
}

// ---- Operator accounts ----

// One operator's row: lock or unlock and delete on the version listed; none
// on the caller's own account (the server refuses them: forbidden).
function operatorRow(o, own, reload) {
  const state = o.locked ? t('acc.locked', word('lock_reason', o.lock_reason)) : t('acc.active');
  const acts = [];
  if (!own) {
    const lockOp = o.locked ? 'operators.unlock' : 'operators.lock';
    acts.push(
      button(o.locked ? t('acc.unlock') : t('acc.lock'), () => act(() => call(lockOp, { account: o.account, version: o.version }), { done: t('acc.done'), reload, after: reload }), {
        'data-action': o.locked ? 'unlock' : 'lock',
      }),
      button(
        t('acc.delete'),
        () => {
          if (!window.confirm(t('common.confirm_delete', o.email))) return;
          act(() => call('operators.delete', { account: o.account, version: o.version }), { done: t('acc.done'), reload, after: reload });
        },
        { class: 'danger', 'data-action': 'delete' },
      ),
    );
  }
  return el(
    'tr',
    { 'data-account': o.account, 'data-email': o.email },
    el('td', {}, own ? `${o.email} ${t('op.you')}` : o.email),
    el('td', {}, o.display_name || ''),
    el('td', {}, state),
    el('td', { class: 'actions' }, acts),
  );
}

export async function operators(main, s) {
  const reload = () => operators(main, s);
  const list = await callAll('operators.list', {}, 'operators');
  const create = form(
    t('op.operator_create'),
    [
      field(t('acc.email'), input('email', { type: 'email', required: true, autocomplete: 'off' })),
      field(t('acc.display_name'), input('display_name', { autocomplete: 'off' })),
      field(t('acc.password'), input('password', { type: 'password', required: true, autocomplete: 'new-password', minlength: 12 }), t('op.operator_password_hint')),
    ],
    t('op.operator_create'),
    (d) => {
      const args = { email: d.email, password: d.password };
      if (d.display_name) args.display_name = d.display_name;
      act(() => call('operators.create', args), { done: t('acc.created'), after: reload });
    },
  );
  fill(
    main,
    el('h1', {}, t('op.operators')),
    table(
      t('op.operators'),
      [t('acc.email'), t('acc.display_name'), t('acc.state'), t('common.actions')],
      list.map((o) => operatorRow(o, o.account === s.account, reload)),
      { id: 'operators' },
    ),
    create,
  );
}
