// api.js: the console talks to kiroku's JSON gateway and nothing else.
//
//   POST /session          {tenant_code, email, password}: logs in; the
//                          session is an HttpOnly cookie the page never sees
//   GET  /session          who is logged in, with the CSRF token and which
//                          listener this is ("client" or "operator")
//   POST /api/OP           an op, its arguments as a JSON object
//   POST /session/logout   ends the session and clears the cookie
//
// Every POST carries X-Kiroku-CSRF (the token GET /session or the login
// gave) and Content-Type application/json. Errors come back as ApiError with
// the API's code ("conflict", "unauthenticated", ...).

let csrf = '';
let onSessionEnd = null;

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message || code);
    this.code = code;
    this.status = status;
  }
}

// Called when a request answers "unauthenticated": the session is gone.
export function whenSessionEnds(fn) {
  onSessionEnd = fn;
}

async function answer(r) {
  let j;
  try {
    j = await r.json();
  } catch (e) {
    throw new ApiError(r.status === 401 ? 'unauthenticated' : 'internal', `HTTP ${r.status}`, r.status);
  }
  if (!j || j.ok !== true) {
    const err = (j && j.error) || {};
    throw new ApiError(err.code || 'internal', err.message || `HTTP ${r.status}`, r.status);
  }
  return j.result || {};
}

async function post(path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (csrf) headers['X-Kiroku-CSRF'] = csrf;
  let r;
  try {
    r = await fetch(path, {
      method: 'POST',
      headers,
      body: JSON.stringify(body || {}),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError('network', String(e), 0);
  }
  return answer(r);
}

function remember(s) {
  csrf = s.csrf || '';
  return s;
}

// The session of this browser ({role, account, tenant_code, csrf, endpoint,
// ...}), or null when there is none.
export async function session() {
  let r;
  try {
    r = await fetch('/session', { credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    throw new ApiError('network', String(e), 0);
  }
  if (r.status === 401) return null;
  return remember(await answer(r));
}

export async function login(tenantCode, email, password) {
  csrf = '';
  return remember(await post('/session', { tenant_code: tenantCode, email, password }));
}

export async function logout() {
  try {
    await post('/session/logout', {});
  } finally {
    csrf = '';
  }
}

// Runs op with args; the op's result.
export async function call(op, args) {
  try {
    return await post(`/api/${op}`, args || {});
  } catch (e) {
    if (e.code === 'unauthenticated' && onSessionEnd) onSessionEnd();
    throw e;
  }
}

// Every page of a paged op (cursor/limit), at most maxPages: the items of
// list `key`, concatenated.
export async function callAll(op, args, key, maxPages = 20) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const a = Object.assign({}, args || {}, { limit: 100 });
    if (cursor) a.cursor = cursor;
    const r = await call(op, a);
    out.push(...(r[key] || []));
    cursor = r.cursor;
    if (!cursor) break;
  }
  return out;
}
