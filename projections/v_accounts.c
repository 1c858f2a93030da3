/*
 * v_accounts.c: the account and session views (account.* and session.*
 * events), and their readers (accounts.h).
 *
 * Row layouts (integers big-endian):
 *
 *   v.accounts         tenant|account -> role(1) | locked(1) | lock_reason(1) |
 *                      pw_kind(1: 0 = account.created, 1 =
 *                      account.password_changed holds the hash) | failures(4)
 *                      | perms(8: permission bits) | version(8: the account
 *                      stream's) | created_seq(8: account.created, with the
 *                      sealed e-mail and display name) | pw_seq(8: the record
 *                      with the current sealed password hash) | email_mac(32)
 *                      | locked_at(8: the newest account.locked's time) |
 *                      lockouts(4: locks for failures since the last
 *                      successful login or unlock)
 *   v.account_emails   tenant|email_mac -> account(16): unique e-mail per tenant
 *   v.sessions         token_hash -> tenant(8) | session(16) | account(16) |
 *                      expires(8) | idle_expires(8) | version(8: the session
 *                      stream's). Global: a request's token is all the server
 *                      has to find its tenant by.
 *   v.session_ids      tenant|session -> token_hash(32)
 *   v.account_sessions tenant|account|session -> (empty)
 *
 * Sessions leave the views when session.closed is applied, and also when
 * their account is deleted, locked or changes its password: the account's
 * event ends them all here, so no session survives those even when the
 * command recorded session.closed for only some of them (a command appends
 * at most KR_CMD_EVENTS_MAX events). A session.closed for a session already
 * gone is a no-op.
 *
 * Versions. An account row's version is its account stream's version: set
 * by every record on that stream (account/<hex>). Logins and failed logins
 * are on the account's sign-in stream (signin/<hex>) and leave it alone, so
 * a version the master read stays good while the user signs in. Journals
 * written before sign-in streams hold login records on the account stream:
 * those still move it, so replaying them builds the same rows as before,
 * also once log retention stripped them (va_account_stripped).
 *
 * Imports. A tenant shard imports the platform's operator accounts
 * (platform_import.h): those events carry `origin`, and like every import
 * are refused at or below the highest origin applied (va_platform_origin).
 *
 * Constraints re-checked here: an account id or an e-mail MAC already taken
 * (KR_ECONFLICT); a session for an account that no longer exists
 * (KR_ECONFLICT: deleted meanwhile); a sign-in decided on an account
 * version that has moved since (its `version` field; KR_ECONFLICT: the
 * master locked, unlocked or deleted it, or its password changed, so the
 * login decides again), and a successful login on an account the master
 * locked meanwhile (KR_ECONFLICT).
 */
#include "accounts.h"

#include <sodium.h>
#include <string.h>

#define AROW_LEN (1 + 1 + 1 + 1 + 4 + 8 + 8 + 8 + 8 + 32 + 8 + 4)
#define SESS_LEN (8 + 16 + 16 + 8 + 8 + 8)

static void akey(struct vkey *k, uint64_t tenant, const uint8_t id[16])
{
    vk_init(k);
    vk_u64(k, tenant);
    vk_bytes(k, id, 16);
}

/* ---- Readers ---- */

static kr_err account_decode(const MDB_val *val, struct va_account *o)
{
    const uint8_t *b = val->mv_data;
    memset(o, 0, sizeof *o);
    if (val->mv_size != AROW_LEN)
        return KR_ECORRUPT;
    o->role = b[0];
    o->locked = b[1] != 0;
    o->lock_reason = b[2];
    o->pw_ev = b[3] ? KR_EV_ACCOUNT_PASSWORD_CHANGED : KR_EV_ACCOUNT_CREATED;
    o->failures = (uint32_t)b[4] << 24 | (uint32_t)b[5] << 16 | (uint32_t)b[6] << 8 | b[7];
    o->perms = v_get_u64(b + 8);
    o->version = v_get_u64(b + 16);
    o->created_seq = v_get_u64(b + 24);
    o->pw_seq = v_get_u64(b + 32);
    memcpy(o->email_mac, b + 40, 32);
    o->locked_at = v_get_u64(b + 72);
    o->lockouts = (uint32_t)b[80] << 24 | (uint32_t)b[81] << 16 | (uint32_t)b[82] << 8 | b[83];
    return KR_OK;
}

uint64_t va_account_locked_until(const struct va_account *o)
{
    if (!o->locked || o->lock_reason != KR_LOCK_REASON_FAILURES)
        return 0;
    uint32_t d = o->lockouts > 0 ? o->lockouts - 1 : 0;
    if (d > KR_LOCKOUT_DOUBLINGS_MAX)
        d = KR_LOCKOUT_DOUBLINGS_MAX;
    uint64_t until = o->locked_at + (KR_LOCKOUT_BASE_NS << d);
    return until < o->locked_at ? UINT64_MAX /* overflow: locked for good */ : until;
}

bool va_account_locked(const struct va_account *o, uint64_t now)
{
    if (!o->locked)
        return false;
    if (o->lock_reason != KR_LOCK_REASON_FAILURES)
        return true;
    return now < va_account_locked_until(o);
}

static kr_err account_put(const struct va *a, uint64_t tenant, const uint8_t id[16],
                          const struct va_account *o)
{
    uint8_t b[AROW_LEN];
    struct vkey k;
    b[0] = (uint8_t)o->role;
    b[1] = o->locked ? 1 : 0;
    b[2] = (uint8_t)o->lock_reason;
    b[3] = o->pw_ev == KR_EV_ACCOUNT_PASSWORD_CHANGED ? 1 : 0;
    b[4] = (uint8_t)(o->failures >> 24);
    b[5] = (uint8_t)(o->failures >> 16);
    b[6] = (uint8_t)(o->failures >> 8);
    b[7] = (uint8_t)o->failures;
    v_put_u64(b + 8, o->perms);
    v_put_u64(b + 16, o->version);
    v_put_u64(b + 24, o->created_seq);
    v_put_u64(b + 32, o->pw_seq);
    memcpy(b + 40, o->email_mac, 32);
    v_put_u64(b + 72, o->locked_at);
    b[80] = (uint8_t)(o->lockouts >> 24);
    b[81] = (uint8_t)(o->lockouts >> 16);
    b[82] = (uint8_t)(o->lockouts >> 8);
    b[83] = (uint8_t)o->lockouts;
    akey(&k, tenant, id);
    return v_put(a, VIEW_ACCOUNTS, &k, b, sizeof b);
}

kr_err va_account_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant, const uint8_t account[16],
                      struct va_account *out)
{
    struct vkey k;
    MDB_val val;
    akey(&k, tenant, account);
    kr_err err = v_get(v, txn, VIEW_ACCOUNTS, &k, &val);
    return err ? err : account_decode(&val, out);
}

kr_err va_account_by_mac(struct kr_views *v, MDB_txn *txn, uint64_t tenant, const uint8_t mac[32],
                         uint8_t account[16])
{
    struct vkey k;
    MDB_val val;
    vk_init(&k);
    vk_u64(&k, tenant);
    vk_bytes(&k, mac, 32);
    kr_err err = v_get(v, txn, VIEW_ACCOUNT_EMAILS, &k, &val);
    if (err)
        return err;
    if (val.mv_size != 16)
        return KR_ECORRUPT;
    memcpy(account, val.mv_data, 16);
    return KR_OK;
}

static kr_err session_decode(const MDB_val *val, struct va_session *s)
{
    const uint8_t *b = val->mv_data;
    memset(s, 0, sizeof *s);
    if (val->mv_size != SESS_LEN)
        return KR_ECORRUPT;
    s->tenant = v_get_u64(b);
    memcpy(s->session, b + 8, 16);
    memcpy(s->account, b + 24, 16);
    s->expires = v_get_u64(b + 40);
    s->idle_expires = v_get_u64(b + 48);
    s->version = v_get_u64(b + 56);
    return KR_OK;
}

kr_err va_session_get(struct kr_views *v, MDB_txn *txn, const uint8_t token_hash[32],
                      struct va_session *out)
{
    struct vkey k;
    MDB_val val;
    vk_init(&k);
    vk_bytes(&k, token_hash, 32);
    kr_err err = v_get(v, txn, VIEW_SESSIONS, &k, &val);
    return err ? err : session_decode(&val, out);
}

kr_err va_session_by_id(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                        const uint8_t session[16], struct va_session *out)
{
    struct vkey k;
    MDB_val val;
    akey(&k, tenant, session);
    kr_err err = v_get(v, txn, VIEW_SESSION_IDS, &k, &val);
    if (err)
        return err;
    if (val.mv_size != 32)
        return KR_ECORRUPT;
    uint8_t th[32];
    memcpy(th, val.mv_data, 32);
    if ((err = va_session_get(v, txn, th, out)))
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
    return out->tenant == tenant ? KR_OK : KR_ECORRUPT;
}

void va_email_mac(const struct kr_data_key *key, const uint8_t *email, size_t len, uint8_t out[32])
{
    uint8_t low[KR_FLD_EMAIL_MAX];
    KR_ASSERT(len <= sizeof low);
    for (size_t i = 0; i < len; i++)
        low[i] = email[i] >= 'A' && email[i] <= 'Z' ? (uint8_t)(email[i] + 32) : email[i];
    kr_data_key_mac(key, "emailmac", low, len, out);
}

/* ---- Apply ---- */

/* Removes one session's rows (any of them may be gone already). */
static kr_err session_drop(const struct va *a, uint64_t tenant, const uint8_t session[16])
{
    struct vkey k;
    MDB_val val;
    akey(&k, tenant, session);
    kr_err err = v_get(a->v, a->txn, VIEW_SESSION_IDS, &k, &val);
    if (err == KR_ENOTFOUND)
        return KR_OK;
    if (err)
        return err;
    if (val.mv_size != 32)
        return KR_ECORRUPT;
    struct vkey tk, ak;
    vk_init(&tk);
    vk_bytes(&tk, val.mv_data, 32);
    struct va_session s;
    if ((err = va_session_get(a->v, a->txn, tk.b, &s)) == KR_OK) {
        akey(&ak, tenant, s.account);
        vk_bytes(&ak, session, 16);
        if ((err = v_del(a, VIEW_ACCOUNT_SESSIONS, &ak)))
            return err;
    } else if (err != KR_ENOTFOUND) {
        return err;
    }
    if ((err = v_del(a, VIEW_SESSIONS, &tk)))
        return err;
    return v_del(a, VIEW_SESSION_IDS, &k);
}

/* Ends every session of one account. */
static kr_err sessions_drop_account(const struct va *a, uint64_t tenant, const uint8_t acct[16])
{
    struct vkey pk;
    akey(&pk, tenant, acct);
    for (;;) {
        MDB_cursor *cur;
        MDB_val k = {pk.n, pk.b}, val;
        int rc = mdb_cursor_open(a->txn, a->v->db[VIEW_ACCOUNT_SESSIONS], &cur);
        if (rc)
            return kr_err_from_mdb(rc);
        rc = mdb_cursor_get(cur, &k, &val, MDB_SET_RANGE);
        uint8_t sid[16];
        bool found =
            rc == MDB_SUCCESS && k.mv_size == pk.n + 16 && memcmp(k.mv_data, pk.b, pk.n) == 0;
        if (found)
            memcpy(sid, (const uint8_t *)k.mv_data + pk.n, 16);
        mdb_cursor_close(cur);
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            return kr_err_from_mdb(rc);
        if (!found)
            return KR_OK;
        kr_err err = session_drop(a, tenant, sid);
        if (err)
            return err;
        /* session_drop removed the account_sessions entry, unless its session
         * row was inconsistent: remove it here so the loop always advances. */
        struct vkey ak = pk;
        vk_bytes(&ak, sid, 16);
        if ((err = v_del(a, VIEW_ACCOUNT_SESSIONS, &ak)))
            return err;
    }
}

static kr_err apply_created(const struct va *a)
{
    const struct kr_payload *p = a->p;
    const uint8_t *id = p->v[KR_FLD_ACCOUNT].p;
    struct vkey k, ek;
    MDB_val val;
    kr_err err;
    akey(&k, a->r->tenant, id);
    if ((err = v_get(a->v, a->txn, VIEW_ACCOUNTS, &k, &val)) != KR_ENOTFOUND)
        return err ? err : KR_ECONFLICT;
    vk_init(&ek);
    vk_u64(&ek, a->r->tenant);
    vk_val(&ek, &p->v[KR_FLD_EMAIL_MAC]);
    if ((err = v_get(a->v, a->txn, VIEW_ACCOUNT_EMAILS, &ek, &val)) != KR_ENOTFOUND)
        return err ? err : KR_ECONFLICT; /* the e-mail is taken in this tenant */
    if ((int)p->v[KR_FLD_ROLE].u == KR_ROLE_OPERATOR ? a->r->tenant != 0 : a->r->tenant == 0)
        return KR_EINVAL; /* operators live in tenant 0, and only they */
    struct va_account o = {
        .role = (int)p->v[KR_FLD_ROLE].u,
        .perms = p->v[KR_FLD_PERMISSIONS].u,
        .version = a->r->version,
        .created_seq = a->r->seq,
        .pw_seq = a->r->seq,
        .pw_ev = KR_EV_ACCOUNT_CREATED,
    };
    memcpy(o.email_mac, p->v[KR_FLD_EMAIL_MAC].p, 32);
    if ((err = v_put(a, VIEW_ACCOUNT_EMAILS, &ek, id, 16)))
        return err;
    return account_put(a, a->r->tenant, id, &o);
}

/* Whether record r is on an account stream ("account/<hex>"), whose version
 * the row keeps (see Versions above). */
static bool on_account_stream(const struct jrn_record *r)
{
    const char *pre = kr_events[KR_EV_ACCOUNT_CREATED].stream_prefix;
    size_t n = strlen(pre);
    return r->stream_len > n && memcmp(r->stream, pre, n) == 0 && r->stream[n] == '/';
}

static kr_err apply_account(const struct va *a)
{
    const struct kr_payload *p = a->p;
    uint64_t tenant = a->r->tenant;
    const uint8_t *id = p->v[KR_FLD_ACCOUNT].p;
    struct va_account o;
    kr_err err;

    if (a->ev == KR_EV_ACCOUNT_CREATED)
        return apply_created(a);
    if ((err = va_account_get(a->v, a->txn, tenant, id, &o)))
        return err == KR_ENOTFOUND ? KR_EINVAL : err;
    if (on_account_stream(a->r))
        o.version = a->r->version;
    if ((a->ev == KR_EV_ACCOUNT_LOGIN_SUCCEEDED || a->ev == KR_EV_ACCOUNT_LOGIN_FAILED) &&
        p->v[KR_FLD_VERSION].set && p->v[KR_FLD_VERSION].u != o.version)
        return KR_ECONFLICT; /* the account changed since the sign-in was decided */
    switch (a->ev) {
    case KR_EV_ACCOUNT_DELETED: {
        struct vkey k;
        if ((err = sessions_drop_account(a, tenant, id)))
            return err;
        vk_init(&k);
        vk_u64(&k, tenant);
        vk_bytes(&k, o.email_mac, 32);
        if ((err = v_del(a, VIEW_ACCOUNT_EMAILS, &k)))
            return err;
        akey(&k, tenant, id);
        return v_del(a, VIEW_ACCOUNTS, &k);
    }
    case KR_EV_ACCOUNT_PASSWORD_CHANGED:
        o.pw_seq = a->r->seq;
        o.pw_ev = KR_EV_ACCOUNT_PASSWORD_CHANGED;
        if ((err = sessions_drop_account(a, tenant, id)))
            return err;
        break;
    case KR_EV_ACCOUNT_PERMISSIONS_GRANTED:
        o.perms |= p->v[KR_FLD_PERMISSIONS].u;
        break;
    case KR_EV_ACCOUNT_PERMISSIONS_REVOKED:
        o.perms &= ~p->v[KR_FLD_PERMISSIONS].u;
        break;
    case KR_EV_ACCOUNT_LOCKED:
        o.locked = true;
        o.lock_reason = (int)p->v[KR_FLD_LOCK_REASON].u;
        o.locked_at = a->r->time_ns;
        if (o.lock_reason == KR_LOCK_REASON_FAILURES && o.lockouts < UINT32_MAX)
            o.lockouts++;
        if ((err = sessions_drop_account(a, tenant, id)))
            return err;
        break;
    case KR_EV_ACCOUNT_UNLOCKED:
        o.locked = false;
        o.lock_reason = 0;
        o.failures = 0;
        o.lockouts = 0;
        break;
    case KR_EV_ACCOUNT_LOGIN_SUCCEEDED:
        /* A success on a locked account means its lock for failures had
         * timed out (the handler checked): it lifts. */
        if (o.locked && o.lock_reason != KR_LOCK_REASON_FAILURES)
            return KR_ECONFLICT; /* the master locked it meanwhile */
        o.locked = false;
        o.lock_reason = 0;
        o.failures = 0;
        o.lockouts = 0;
        break;
    case KR_EV_ACCOUNT_LOGIN_FAILED: {
        uint64_t f = p->v[KR_FLD_FAILURES].u;
        o.failures = f > UINT32_MAX ? UINT32_MAX : (uint32_t)f;
        break;
    }
    default:
        return KR_EINVAL;
    }
    return account_put(a, tenant, id, &o);
}

/* session.touched: the session's idle limit moves on (a session already
 * gone, closed or with its account's event, is KR_ECONFLICT: the toucher
 * read it meanwhile). */
static kr_err session_touch(const struct va *a, uint64_t tenant, const uint8_t sid[16])
{
    struct vkey k;
    MDB_val val;
    kr_err err;
    akey(&k, tenant, sid);
    if ((err = v_get(a->v, a->txn, VIEW_SESSION_IDS, &k, &val)))
        return err == KR_ENOTFOUND ? KR_ECONFLICT : err;
    if (val.mv_size != 32)
        return KR_ECORRUPT;
    vk_init(&k);
    vk_bytes(&k, val.mv_data, 32);
    if ((err = v_get(a->v, a->txn, VIEW_SESSIONS, &k, &val)))
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
    if (val.mv_size != SESS_LEN)
        return KR_ECORRUPT;
    uint8_t b[SESS_LEN];
    memcpy(b, val.mv_data, SESS_LEN);
    v_put_u64(b + 48, a->p->v[KR_FLD_IDLE_EXPIRES].u);
    v_put_u64(b + 56, a->r->version);
    return v_put(a, VIEW_SESSIONS, &k, b, sizeof b);
}

static kr_err apply_session(const struct va *a)
{
    const struct kr_payload *p = a->p;
    uint64_t tenant = a->r->tenant;
    const uint8_t *sid = p->v[KR_FLD_SESSION].p;
    kr_err err;

    if (a->ev == KR_EV_SESSION_CLOSED)
        return session_drop(a, tenant, sid);
    if (a->ev == KR_EV_SESSION_TOUCHED)
        return session_touch(a, tenant, sid);
    if (a->ev != KR_EV_SESSION_OPENED)
        return KR_EINVAL;
    const uint8_t *acct = p->v[KR_FLD_ACCOUNT].p;
    const uint8_t *th = p->v[KR_FLD_TOKEN_HASH].p;
    struct va_account o;
    struct vkey k;
    MDB_val val;
    if ((err = va_account_get(a->v, a->txn, tenant, acct, &o)))
        return err == KR_ENOTFOUND ? KR_ECONFLICT : err;
    vk_init(&k);
    vk_bytes(&k, th, 32);
    if ((err = v_get(a->v, a->txn, VIEW_SESSIONS, &k, &val)) != KR_ENOTFOUND)
        return err ? err : KR_ECONFLICT;
    uint8_t b[SESS_LEN];
    v_put_u64(b, tenant);
    memcpy(b + 8, sid, 16);
    memcpy(b + 24, acct, 16);
    v_put_u64(b + 40, p->v[KR_FLD_EXPIRES].u);
    v_put_u64(b + 48, p->v[KR_FLD_IDLE_EXPIRES].u);
    v_put_u64(b + 56, a->r->version);
    if ((err = v_put(a, VIEW_SESSIONS, &k, b, sizeof b)))
        return err;
    akey(&k, tenant, sid);
    if ((err = v_put(a, VIEW_SESSION_IDS, &k, th, 32)))
        return err;
    akey(&k, tenant, acct);
    vk_bytes(&k, sid, 16);
    return v_put(a, VIEW_ACCOUNT_SESSIONS, &k, "", 0);
}

kr_err va_account_stripped(struct kr_views *v, MDB_txn *txn, const struct jrn_record *r)
{
    size_t n = strlen(kr_events[KR_EV_ACCOUNT_CREATED].stream_prefix) + 1;
    uint8_t id[16];
    size_t idlen = 0;
    if (!on_account_stream(r) || r->stream_len != n + 32 ||
        sodium_hex2bin(id, sizeof id, r->stream + n, 32, NULL, &idlen, NULL) != 0 || idlen != 16)
        return KR_OK;
    struct va_account o;
    kr_err err = va_account_get(v, txn, r->tenant, id, &o);
    if (err == KR_ENOTFOUND)
        return KR_OK; /* an erased tenant's, or a deleted account's */
    if (err)
        return err;
    o.version = r->version;
    struct va a = {.v = v, .txn = txn, .r = r, .p = NULL, .ev = -1};
    return account_put(&a, r->tenant, id, &o);
}

kr_err va_accounts(const struct va *a)
{
    kr_err err = va_platform_origin(a); /* an operator's, imported: once only */
    if (err)
        return err;
    switch (a->ev) {
    case KR_EV_SESSION_OPENED:
    case KR_EV_SESSION_TOUCHED:
    case KR_EV_SESSION_CLOSED:
        return apply_session(a);
    default:
        return apply_account(a);
    }
}
