// ui.js: building the page without HTML strings (every text goes in as
// text, never as markup), Japan time, messages, and the one way an action
// reports what happened (a conflict reloads and says so).

import { t, tEnum } from './i18n.js';
import { ApiError } from './api.js';

// el('button', {class: 'x', on: {click: f}, type: 'button'}, 'text', child)
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'value') e.value = v;
    else if (k === 'checked') e.checked = true;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

let seq = 0;
// A fresh element id ("f12"), to tie a label to its control.
export function uid() {
  seq += 1;
  return `f${seq}`;
}

// A labelled control: field(label, control) -> <div class="field"><label>…
export function field(label, control, hint) {
  if (!control.id) control.id = uid();
  const parts = [el('label', { for: control.id }, label), control];
  if (hint) {
    const h = el('small', { id: uid(), class: 'hint' }, hint);
    control.setAttribute('aria-describedby', h.id);
    parts.push(h);
  }
  return el('div', { class: 'field' }, ...parts);
}

export function input(name, attrs) {
  return el('input', Object.assign({ name, type: 'text' }, attrs || {}));
}

// <select> of values, each shown through show(value).
export function select(name, values, show, attrs) {
  return el(
    'select',
    Object.assign({ name }, attrs || {}),
    values.map((v) => (Array.isArray(v) ? el('option', { value: v[0] }, v[1]) : el('option', { value: v }, show ? show(v) : v))),
  );
}

export function button(text, onClick, attrs) {
  return el('button', Object.assign({ type: 'button', on: { click: onClick } }, attrs || {}), text);
}

// A table: heads (strings) and rows (arrays of cells: strings or nodes).
export function table(caption, heads, rows, attrs) {
  return el(
    'table',
    attrs || {},
    caption ? el('caption', {}, caption) : null,
    el('thead', {}, el('tr', {}, heads.map((h) => el('th', { scope: 'col' }, h)))),
    el(
      'tbody',
      {},
      rows.map((r) => (r instanceof Node ? r : el('tr', {}, r.map((c) => el('td', {}, c))))),
    ),
  );
}

export function section(title, ...children) {
  const id = uid();
  return el('section', { 'aria-labelledby': id }, el('h2', { id }, title), ...children);
}

// ---- Japan time ----

// "2026-12-06 21:05 JST" from a reply's "<name>_jst" string
// ("2026-12-06T21:05:00.000+09:00"), or from UTC nanoseconds (a decimal
// string or number). "" for nil.
export function jst(v) {
  if (v === null || v === undefined || v === '') return '';
  const s = String(v);
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(s);
  if (m && s.endsWith('+09:00')) return `${m[1]} ${m[2]} JST`;
  if (!/^\d+$/.test(s)) return s;
  const d = new Date(Number(BigInt(s) / 1000000n) + 9 * 3600 * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())} JST`;
}

// The JST day of a time ("2026-12-06").
export function jstDay(v) {
  return jst(v).slice(0, 10);
}

// The time of a reply item's field, in JST: its _jst companion first.
export function when(item, name) {
  return jst(item[`${name}_jst`] ?? item[name]);
}

// A datetime-local input's value ("2026-12-06T21:05") read as Japan time,
// as RFC 3339 for the API; "" stays "".
export function fromJstInput(v) {
  return v ? `${v}:00+09:00` : '';
}

// Now in Japan time, for a datetime-local input.
export function nowJstInput() {
  const d = new Date(Date.now() + 9 * 3600 * 1000);
  return d.toISOString().slice(0, 16);
}

// Milliseconds from now to a time in UTC nanoseconds (negative: past).
export function msUntil(ns) {
  return Number(BigInt(String(ns)) / 1000000n) - Date.now();
}

// ---- Messages ----

let statusEl = null;
export function setStatusElement(e) {
  statusEl = e;
}

// Says something in the live region (kind: "ok" or "error").
export function say(text, kind) {
  if (!statusEl) return;
  statusEl.className = `status ${kind || 'ok'}`;
  statusEl.textContent = text;
}

// An API error in words: its code's sentence and the server's message.
export function errorText(e) {
  if (e instanceof ApiError) {
    const head = t(`err.${e.code}`);
    return e.message && e.message !== e.code ? `${head}: ${e.message}` : head;
  }
  return `${t('err.internal')}: ${e && e.message ? e.message : e}`;
}

// Runs an action. On success says done (if given) and runs after(). On a
// conflict (the object changed since it was read) reloads with reload() and
// says so instead of showing the raw error; any other error is said.
export async function act(fn, { done, reload, after } = {}) {
  try {
    const r = await fn();
    if (done) say(done, 'ok');
    if (after) await after(r);
    return r;
  } catch (e) {
    if (e instanceof ApiError && e.code === 'conflict') {
      if (reload) await reload();
      say(t('common.conflict'), 'error');
    } else if (!(e instanceof ApiError && e.code === 'unauthenticated')) {
      say(errorText(e), 'error');
    }
    return undefined;
  }
}

// A form whose submit runs onSubmit(form data as an object) through act().
export function form(title, controls, submitText, onSubmit) {
  const f = el('form', { class: 'card', novalidate: false });
  const id = uid();
  f.setAttribute('aria-labelledby', id);
  f.append(el('h3', { id }, title), ...controls, el('button', { type: 'submit' }, submitText));
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const data = {};
    for (const c of f.elements) {
      if (!c.name) continue;
      if (c.type === 'checkbox') {
        if (!data[c.name]) data[c.name] = [];
        if (c.checked) data[c.name].push(c.value);
      } else {
        data[c.name] = c.value;
      }
    }
    onSubmit(data, f);
  });
  return f;
}

// Words for an enum value.
export const word = tEnum;

// Bytes from a hex string (the API's binary values).
export function hexBytes(h) {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
  return out;
}

// Offers data as a download named name (through a link the script clicks).
export function download(name, data, type) {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const a = el('a', { href: url, download: name, class: 'hidden' }, name);
  document.body.append(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(url);
    a.remove();
  }, 1000);
}

// Replaces the content of a container.
export function fill(container, ...children) {
  container.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}
