/*
 * cmd_accounts.c: logging in and out, sessions, and the master's management
 * of its tenant's accounts: auth.login, auth.logout, auth.whoami,
 * account.password, users.create / delete / list / grant / revoke / lock /
 * unlock, the operators' own operators.create / list / delete / lock /
 * unlock / password; dom_session_resolve and dom_operator_create
 * (accounts.h).
 *
 * Design notes.
 * - Login answers an unknown tenant (an erased one too), an unknown account
 *   and a wrong password with the same error and diagnostics, and spends the
 *   same work on them: an unknown account is checked against a dummy
 *   Argon2id hash of the domain's cost. A cancelled tenant's account with the
 *   right password is told so (KR_EFORBIDDEN, "the tenant is cancelled");
 *   with a wrong one it gets the same reply and record as before. A locked
 *   account says so (KR_ELOCKED) whatever the password, but only once the
 *   account is known, so locking reveals nothing about accounts that do not
 *   exist.
 * - Logins and failed logins are on the account's sign-in stream
 *   (signin/<hex>), not its account stream, so they never move the version
 *   the master manages the account with (users.list, then users.grant).
 *   account.login_failed (with the count after it) is decided on the sign-in
 *   stream's version, so of parallel wrong attempts exactly one commits per
 *   version and the others decide again on the new count. Each sign-in
 *   record also names the account version it was decided on, and the view
 *   refuses it if that moved (a lock, unlock, delete or password change
 *   meanwhile), so counting stays atomic with the master's ops though they
 *   are on another stream. The attempt that reaches KR_LOGIN_FAILURES_MAX
 *   appends account.locked (on the account stream) in the same append. Such a
 *   lock times out (KR_LOCKOUT_BASE_NS, doubling with each lock that follows
 *   without a success), so nobody can lock an account out for good by
 *   guessing; a lock by the master stays until lifted. The
 *   retries happen inside the handler on a renewed read transaction, so the
 *   expensive password check is not repeated unless the hash changed.
 * - account.password's current password counts the same way: a wrong one is
 *   account.login_failed on the account, the one at the limit locks it and
 *   closes its sessions (the caller's too), so a stolen token cannot guess
 *   the password without limit or record.
 * - Tokens are 32 random bytes (a sharded domain's carry its redirect tag in
 *   bytes 0..4 and 27 random bytes: domain.h), given to the client only in the login reply;
 *   the views know their SHA-256. A request on a session with less than half
 *   its idle time left moves the idle limit on (session.touched): one event
 *   per half idle period of use, not one per request.
 * - Ending an account's sessions (delete, lock, password change) is done by
 *   the account event's view apply for all of them; the command also records
 *   session.closed for up to KR_CMD_EVENTS_MAX - 1 of them, for the audit.
 */
#include "accounts.h"
#include "cmd.h"
#include "hash.h"
#include "notices.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* Times a login decides again in itself when another attempt on the same
 * account committed first: a burst of N parallel attempts needs at most N. */
#define LOGIN_RETRIES 64
/* What every failed login says, whatever the reason. */
#define LOGIN_FAILED_WHY "wrong tenant code, e-mail or password"

/* ---- Shared ---- */

static void res_perms(struct cmd *c, uint64_t mask)
{
    struct kr_value v = {.set = true, .u = mask};
    res_val(c, KR_FLD_PERMISSIONS, &v);
}

/* Drops the events decided so far (to decide again). */
static void events_clear(struct cmd *c)
{
    for (size_t i = 0; i < c->nev; i++) {
        kr_payload_free(c->ev[i].p);
        c->ev[i].p = NULL;
    }
    c->nev = 0;
}

/* A dummy hash of the domain's cost, so an unknown account costs as much as
 * a known one. Made once per process and cost. */
static pthread_mutex_t dummy_mu = PTHREAD_MUTEX_INITIALIZER;
static char dummy_hash[ACCT_HASH_MAX];
static unsigned long long dummy_ops;
static size_t dummy_mem;

/* The work of a password check against a hash nobody can match, for a login
 * that names no account: the reply comes after the same work either way.
 * KR_EBUSY like a real check when too many wait. */
static kr_err dummy_verify(struct kr_domain *d, const void *pw, size_t len)
{
    char h[ACCT_HASH_MAX];
    kr_err err = KR_OK;
    pthread_mutex_lock(&dummy_mu);
    if (!dummy_hash[0] || dummy_ops != d->pwhash_ops || dummy_mem != d->pwhash_mem) {
        uint8_t r[32];
        char rh[65];
        randombytes_buf(r, sizeof r);
        sodium_bin2hex(rh, sizeof rh, r, sizeof r);
        if ((err = dom_pwhash_acquire(d)) == KR_OK) {
            if (crypto_pwhash_str(dummy_hash, rh, 64, d->pwhash_ops, d->pwhash_mem) != 0)
                dummy_hash[0] = 0;
            dom_pwhash_release(d);
            dummy_ops = d->pwhash_ops;
            dummy_mem = d->pwhash_mem;
        }
    }
    memcpy(h, dummy_hash, sizeof h);
    pthread_mutex_unlock(&dummy_mu);
    bool ok;
    if (!err && h[0])
        err = acct_verify_password(d, h, strlen(h), pw, len, &ok);
    return err;
}

/* Whether pw matches the account's current password. */
static kr_err check_password(struct cmd *c, const struct va_account *o, const void *pw, size_t len,
                             bool *ok)
{
    kr_err err = cmd_read(c, o->pw_seq, o->pw_ev, c->scratch);
    if (err)
        return err;
    const struct kr_value *h = &c->scratch->v[KR_FLD_PASSWORD_HASH];
    *ok = false;
    if (h->set)
        err = acct_verify_password(c->d, h->p, h->n, pw, len, ok);
    kr_payload_reset(c->scratch, -1);
    return err;
}

/* The account's e-mail (from account.created) into c->scratch. */
static kr_err read_email(struct cmd *c, const struct va_account *o, const struct kr_value **email)
{
    kr_err err = cmd_read(c, o->created_seq, KR_EV_ACCOUNT_CREATED, c->scratch);
    *email = &c->scratch->v[KR_FLD_EMAIL];
    return err;
}

/* Appends session.closed for the account's open (unexpired) sessions, as
 * many as the append has room for (the account event's apply ends them all
 * in the views anyway). */
static kr_err close_sessions(struct cmd *c, uint64_t tenant, const uint8_t acct[16], int reason)
{
    uint8_t prefix[24];
    v_put_u64(prefix, tenant);
    memcpy(prefix + 8, acct, 16);
    MDB_cursor *mc;
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_ACCOUNT_SESSIONS], &mc);
    if (rc)
        return kr_err_from_mdb(rc);
    MDB_val k = {24, prefix}, val;
    kr_err err = KR_OK;
    for (rc = mdb_cursor_get(mc, &k, &val, MDB_SET_RANGE);
         rc == MDB_SUCCESS && k.mv_size == 40 && memcmp(k.mv_data, prefix, 24) == 0 &&
         c->nev + 1 < KR_CMD_EVENTS_MAX;
         rc = mdb_cursor_get(mc, &k, &val, MDB_NEXT)) {
        const uint8_t *sid = (const uint8_t *)k.mv_data + 24;
        struct va_session s;
        if ((err = va_session_by_id(&c->d->views, c->txn, tenant, sid, &s)))
            break;
        if (c->now >= s.expires || c->now >= s.idle_expires)
            continue; /* already over: nothing to close, its rows go with the account's event */
        struct kr_payload *p = cmd_event(c, KR_EV_SESSION_CLOSED, tenant, s.version);
        if (!p) {
            err = KR_ENOMEM;
            break;
        }
        /* The payload borrows bytes: keep them in its arena, not in LMDB's
         * page (valid as long as the transaction, but make it plain). */
        if ((err = kr_set_copy(p, KR_FLD_SESSION, sid, 16)))
            break;
        kr_set_u64(p, KR_FLD_CLOSE_REASON, (uint64_t)reason);
    }
    mdb_cursor_close(mc);
    if (err)
        return err;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    return KR_OK;
}

/* The version of the account's sign-in stream (logins and failed logins). */
static kr_err signin_version(struct cmd *c, uint64_t tenant, const uint8_t acct[16], uint64_t *v)
{
    return cmd_stream_version(c, tenant, kr_events[KR_EV_ACCOUNT_LOGIN_FAILED].stream_prefix, acct,
                              v);
}

/* A wrong password for account o (at login or as account.password's current
 * one): account.login_failed with the count after it, on the sign-in stream
 * and naming the account version it was decided on; the failure that reaches
 * KR_LOGIN_FAILURES_MAX also locks the account (account.locked, failures),
 * and with `close` records session.closed for its sessions (the lock's apply
 * ends them all anyway). *locked says whether it locked. KR_ECONFLICT when
 * another attempt or a change of the account committed first. */
static kr_err record_failure(struct cmd *c, uint64_t tenant, const uint8_t acct[16],
                             const struct va_account *o, bool close, bool *locked)
{
    uint32_t failures = o->failures + 1;
    uint64_t sv;
    kr_err err = signin_version(c, tenant, acct, &sv);
    *locked = failures >= KR_LOGIN_FAILURES_MAX;
    if (err)
        return err;
    struct kr_payload *p = cmd_event(c, KR_EV_ACCOUNT_LOGIN_FAILED, tenant, sv);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_ACCOUNT, acct, 16);
    kr_set_u64(p, KR_FLD_FAILURES, failures);
    kr_set_u64(p, KR_FLD_VERSION, o->version);
    if (*locked) {
        p = cmd_event(c, KR_EV_ACCOUNT_LOCKED, tenant, o->version);
        if (!p)
            return KR_ENOMEM;
        kr_set_bytes(p, KR_FLD_ACCOUNT, acct, 16);
        kr_set_u64(p, KR_FLD_LOCK_REASON, KR_LOCK_REASON_FAILURES);
        if (close && (err = close_sessions(c, tenant, acct, KR_CLOSE_REASON_ACCOUNT_LOCKED)))
            return err;
    }
    return cmd_commit(c);
}

/* ---- auth.login ---- */

/* A login closes at most 2 * MAX - (MAX - 1) sessions besides its own two
 * events; an account-wide close at most MAX besides the account's event. */
_Static_assert(KR_SESSIONS_PER_ACCOUNT_MAX + 3 <= KR_CMD_EVENTS_MAX,
               "closing sessions must fit one append");

/* Before a login opens one more session: ends the oldest live sessions of
 * the account beyond KR_SESSIONS_PER_ACCOUNT_MAX - 1 (session.closed,
 * superseded), in the login's own append. */
struct live_session {
    uint8_t sid[16];
    uint64_t expires, version;
};

static int newest_first(const void *a, const void *b)
{
    const struct live_session *x = a, *y = b;
    return x->expires < y->expires ? 1 : x->expires > y->expires ? -1 : 0;
}

static kr_err cap_sessions(struct cmd *c, uint64_t tenant, const uint8_t acct[16])
{
    /* The cap holds from the first login on, so a few more than it is all
     * an account can have; more are left to the account's own events. */
    struct live_session live[2 * KR_SESSIONS_PER_ACCOUNT_MAX];
    size_t n = 0;
    uint8_t prefix[24];
    v_put_u64(prefix, tenant);
    memcpy(prefix + 8, acct, 16);
    MDB_cursor *mc;
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_ACCOUNT_SESSIONS], &mc);
    if (rc)
        return kr_err_from_mdb(rc);
    MDB_val k = {24, prefix}, val;
    kr_err err = KR_OK;
    for (rc = mdb_cursor_get(mc, &k, &val, MDB_SET_RANGE);
         rc == MDB_SUCCESS && k.mv_size == 40 && memcmp(k.mv_data, prefix, 24) == 0 &&
         n < sizeof live / sizeof live[0];
         rc = mdb_cursor_get(mc, &k, &val, MDB_NEXT)) {
        const uint8_t *sid = (const uint8_t *)k.mv_data + 24;
        struct va_session s;
        if ((err = va_session_by_id(&c->d->views, c->txn, tenant, sid, &s)))
            break;
        if (c->now >= s.expires || c->now >= s.idle_expires)
            continue;
        memcpy(live[n].sid, sid, 16);
        live[n].expires = s.expires; /* opening time + the fixed lifetime */
        live[n].version = s.version;
        n++;
    }
    mdb_cursor_close(mc);
    if (err)
        return err;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    qsort(live, n, sizeof live[0], newest_first);
    for (size_t i = KR_SESSIONS_PER_ACCOUNT_MAX - 1; i < n; i++) {
        struct kr_payload *p = cmd_event(c, KR_EV_SESSION_CLOSED, tenant, live[i].version);
        if (!p)
            return KR_ENOMEM;
        if ((err = kr_set_copy(p, KR_FLD_SESSION, live[i].sid, 16)))
            return err;
        kr_set_u64(p, KR_FLD_CLOSE_REASON, KR_CLOSE_REASON_SUPERSEDED);
    }
    return KR_OK;
}

/* Finds the account a login names: KR_ENOTFOUND for anything unknown (an
 * erased tenant's code is unknown: its code index entry is gone). *cancelled
 * says the tenant is cancelled: its accounts are still found, so that the
 * right password can be told the tenant is cancelled.
 * *tenant_known says whether the tenant code named an active one (then mac is
 * the e-mail's MAC under its key), for recording an unknown login. */
static kr_err login_find(struct cmd *c, uint64_t *tenant, uint8_t acct[16], bool *tenant_known,
                         bool *cancelled, uint8_t mac[32])
{
    const struct kr_value *code = &c->args->v[KR_FLD_TENANT_CODE];
    const struct kr_value *email = &c->args->v[KR_FLD_EMAIL];
    struct kr_data_key key;
    kr_err err = KR_OK;
    *tenant_known = false;
    *cancelled = false;
    if (code->n == sizeof KR_PLATFORM_CODE - 1 && memcmp(code->p, KR_PLATFORM_CODE, code->n) == 0) {
        if (!c->who->operator_endpoint)
            return KR_ENOTFOUND; /* operators log in over the operator endpoint only */
        *tenant = 0;
    } else {
        struct va_tenant t;
        if ((err = va_tenant_by_code(&c->d->views, c->txn, code->p, code->n, tenant)) ||
            (err = va_tenant_get(&c->d->views, c->txn, *tenant, &t)))
            return err;
        if (t.state == KR_TENANT_STATE_CANCELLED)
            *cancelled = true;
        else if (t.state != KR_TENANT_STATE_ACTIVE)
            return KR_ENOTFOUND;
    }
    if ((err = cmd_key(c, *tenant, false, &key)))
        return err == KR_ENOTFOUND ? KR_ENOTFOUND : err;
    va_email_mac(&key, email->p, email->n, mac);
    kr_data_key_wipe(&key);
    *tenant_known = !*cancelled;
    return va_account_by_mac(&c->d->views, c->txn, *tenant, mac, acct);
}

/* Records a login that named no account (login.unknown), so spraying shows
 * in the journal like wrong passwords do. */
static kr_err record_unknown(struct cmd *c, uint64_t tenant, bool tenant_known,
                             const uint8_t mac[32])
{
    uint8_t attempt[16];
    events_clear(c);
    struct kr_payload *p = cmd_event(c, KR_EV_LOGIN_UNKNOWN, tenant_known ? tenant : 0, 0);
    if (!p)
        return KR_ENOMEM;
    cmd_new_id(c, attempt);
    kr_err err = kr_set_copy(p, KR_FLD_ATTEMPT, attempt, 16);
    if (!err && tenant_known)
        err = kr_set_copy(p, KR_FLD_EMAIL_MAC, mac, 32);
    return err ? err : cmd_commit(c);
}

static kr_err login_open(struct cmd *c, uint64_t tenant, const uint8_t acct[16],
                         const struct va_account *o)
{
    uint8_t sid[16], token[32], th[32];
    uint64_t expires = c->now + KR_SESSION_TTL_NS, sv;
    kr_err err = KR_OK;
    cmd_new_id(c, sid);
    if ((err = cap_sessions(c, tenant, acct)) || (err = signin_version(c, tenant, acct, &sv)))
        return err;
    kr_rng_fill(c->d->rng, token, sizeof token);
    if (c->d->token_tagged) { /* the shard's redirect tag (domain.h) */
        token[0] = DOM_TOKEN_TAGGED;
        memcpy(token + 1, c->d->token_tag, sizeof c->d->token_tag);
    }
    kr_sha256(th, token, sizeof token);
    struct kr_payload *p1 = cmd_event(c, KR_EV_ACCOUNT_LOGIN_SUCCEEDED, tenant, sv);
    struct kr_payload *p2 = cmd_event(c, KR_EV_SESSION_OPENED, tenant, 0);
    if (!p1 || !p2)
        return KR_ENOMEM;
    kr_set_bytes(p1, KR_FLD_ACCOUNT, acct, 16);
    kr_set_bytes(p1, KR_FLD_SESSION, sid, 16);
    kr_set_u64(p1, KR_FLD_VERSION, o->version);
    kr_set_bytes(p2, KR_FLD_SESSION, sid, 16);
    kr_set_bytes(p2, KR_FLD_ACCOUNT, acct, 16);
    kr_set_bytes(p2, KR_FLD_TOKEN_HASH, th, 32);
    kr_set_u64(p2, KR_FLD_EXPIRES, expires);
    kr_set_u64(p2, KR_FLD_IDLE_EXPIRES, c->now + KR_SESSION_IDLE_NS);
    if ((err = cmd_commit(c))) {
        sodium_memzero(token, sizeof token);
        return err;
    }
    res_map(c, 7);
    res_bytes(c, KR_FLD_TOKEN, token, sizeof token);
    sodium_memzero(token, sizeof token);
    res_bytes(c, KR_FLD_ACCOUNT, acct, 16);
    res_enum(c, KR_FLD_ROLE, (uint64_t)o->role);
    res_perms(c, o->role == KR_ROLE_MASTER ? (1ull << KR_PERMISSION__COUNT) - 1 : o->perms);
    res_u64(c, KR_FLD_EXPIRES, expires);
    err = notices_pack_unread(c, tenant, acct);
    return err ? err : incidents_pack_login(c, tenant);
}

kr_err cmd_auth_login(struct cmd *c)
{
    const struct kr_value *pw = &c->args->v[KR_FLD_PASSWORD];
    uint64_t tenant = 0;
    uint8_t acct[16], mac[32];
    bool tenant_known, cancelled;
    kr_err err = KR_OK;
    err = login_find(c, &tenant, acct, &tenant_known, &cancelled, mac);
    if (err && err != KR_ENOTFOUND)
        return err;
    bool known = err == KR_OK;
    uint64_t verified_seq = 0;
    bool ok = false;
    for (int attempt = 0; known && attempt < LOGIN_RETRIES; attempt++) {
        struct va_account o;
        if (attempt > 0) {
            /* Another attempt committed first: decide again on fresh views. */
            events_clear(c);
            mdb_txn_reset(c->txn);
            int rc = mdb_txn_renew(c->txn);
            if (rc)
                return kr_err_from_mdb(rc);
        }
        err = va_account_get(&c->d->views, c->txn, tenant, acct, &o);
        if (err == KR_ENOTFOUND) {
            known = false; /* deleted meanwhile */
            break;
        }
        if (err)
            return err;
        if (o.pw_seq != verified_seq) {
            err = check_password(c, &o, pw->p, pw->n, &ok);
            if (err == KR_ENOTFOUND) {
                known = false; /* its records were erased */
                break;
            }
            if (err)
                return err;
            verified_seq = o.pw_seq;
        }
        if (cancelled) {
            /* Only the right password learns of the cancellation; a wrong
             * one is answered and recorded as before (an unknown login in
             * the platform), nothing counted on a tenant that is closing. */
            if (ok)
                return cmd_fail(c, KR_EFORBIDDEN, "tenant_code", "the tenant is cancelled");
            if ((err = record_unknown(c, tenant, false, mac)))
                return err;
            return cmd_fail(c, KR_EAUTH, "", LOGIN_FAILED_WHY);
        }
        if (va_account_locked(&o, c->now))
            return cmd_fail(c, KR_ELOCKED, "", "the account is locked");
        if (ok) {
            err = login_open(c, tenant, acct, &o);
        } else {
            bool locked;
            err = record_failure(c, tenant, acct, &o, false, &locked);
            if (!err)
                return cmd_fail(c, KR_EAUTH, "", LOGIN_FAILED_WHY);
        }
        if (err != KR_ECONFLICT)
            return err;
    }
    if (!known) {
        if ((err = dummy_verify(c->d, pw->p, pw->n)))
            return cmd_fail(c, err, "", "too many logins at once; try again");
        if ((err = record_unknown(c, tenant, tenant_known, mac)))
            return err;
        return cmd_fail(c, KR_EAUTH, "", LOGIN_FAILED_WHY);
    }
    return KR_ECONFLICT;
}

/* ---- auth.logout, auth.whoami ---- */

kr_err cmd_auth_logout(struct cmd *c)
{
    struct va_session s;
    kr_err err = KR_OK;
    if (!c->who->has_session)
        return cmd_fail(c, KR_EAUTH, "token", "no session");
    err = va_session_by_id(&c->d->views, c->txn, c->who->tenant, c->who->session, &s);
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, KR_EAUTH, "token", "no session");
    if (err)
        return err;
    struct kr_payload *p = cmd_event(c, KR_EV_SESSION_CLOSED, c->who->tenant, s.version);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_SESSION, c->who->session, 16);
    kr_set_u64(p, KR_FLD_CLOSE_REASON, KR_CLOSE_REASON_LOGOUT);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 0);
    return KR_OK;
}

kr_err cmd_auth_whoami(struct cmd *c)
{
    struct va_tenant t;
    struct va_session s;
    kr_err err = KR_OK;
    uint64_t expires = 0;
    if (c->who->has_session) {
        err = va_session_by_id(&c->d->views, c->txn, c->who->tenant, c->who->session, &s);
        if (err == KR_ENOTFOUND)
            return cmd_fail(c, KR_EAUTH, "token", "no session");
        if (err)
            return err;
        expires = s.expires;
    }
    res_map(c, 5);
    if (c->who->tenant == 0) {
        res_str(c, KR_FLD_TENANT_CODE, KR_PLATFORM_CODE, sizeof KR_PLATFORM_CODE - 1);
    } else {
        if ((err = va_tenant_get(&c->d->views, c->txn, c->who->tenant, &t)))
            return err == KR_ENOTFOUND ? cmd_fail(c, KR_EAUTH, "token", "no session") : err;
        res_str(c, KR_FLD_TENANT_CODE, t.code, t.code_len);
    }
    res_bytes(c, KR_FLD_ACCOUNT, c->who->account, 16);
    res_enum(c, KR_FLD_ROLE, (uint64_t)c->who->role);
    res_perms(c, c->who->perms);
    if (expires)
        res_u64(c, KR_FLD_EXPIRES, expires);
    else
        res_nil(c, KR_FLD_EXPIRES);
    return KR_OK;
}

/* ---- account.password ---- */

/* Whether the caller's current password is right. A wrong one counts toward
 * the account's lockout like a wrong login (parallel guesses decide again on
 * the new count, as logins do), so a stolen token cannot guess it without
 * limit. Fails (into c's diagnostics) on a wrong password or a locked account. */
static kr_err password_verify_current(struct cmd *c, uint64_t tenant, const uint8_t acct[16],
                                      struct va_account *o)
{
    const struct kr_value *pw = &c->args->v[KR_FLD_PASSWORD];
    uint64_t verified_seq = 0;
    bool ok = false;
    kr_err err = KR_OK;
    for (int attempt = 0; attempt < LOGIN_RETRIES; attempt++) {
        if (attempt > 0) {
            events_clear(c);
            mdb_txn_reset(c->txn);
            int rc = mdb_txn_renew(c->txn);
            if (rc)
                return kr_err_from_mdb(rc);
        }
        err = va_account_get(&c->d->views, c->txn, tenant, acct, o);
        if (err == KR_ENOTFOUND)
            return cmd_fail(c, KR_EAUTH, "token", "no session");
        if (err)
            return err;
        if (va_account_locked(o, c->now))
            return cmd_fail(c, KR_ELOCKED, "", "the account is locked");
        if (o->pw_seq != verified_seq) {
            if ((err = check_password(c, o, pw->p, pw->n, &ok)))
                return err;
            verified_seq = o->pw_seq;
        }
        if (ok)
            return KR_OK;
        bool locked;
        err = record_failure(c, tenant, acct, o, true, &locked);
        if (!err && locked)
            return cmd_fail(c, KR_ELOCKED, "password",
                            "wrong password; the account is locked and its sessions closed");
        if (!err)
            return cmd_fail(c, KR_EAUTH, "password", "wrong password");
        if (err != KR_ECONFLICT)
            return err;
    }
    return KR_ECONFLICT;
}

kr_err cmd_account_password(struct cmd *c)
{
    const struct kr_value *npw = &c->args->v[KR_FLD_NEW_PASSWORD];
    uint64_t tenant = c->who->tenant;
    const uint8_t *acct = c->who->account;
    struct va_account o;
    const struct kr_value *email;
    const char *why;
    kr_err err = password_verify_current(c, tenant, acct, &o);
    if (err)
        return err;
    if ((err = read_email(c, &o, &email)))
        return err;
    if (kr_password_check(npw->p, npw->n, email->p, email->n, &why))
        return cmd_fail(c, KR_EINVAL, "new_password", why);
    char hash[ACCT_HASH_MAX];
    if ((err = acct_hash_password(c->d, npw->p, npw->n, hash)))
        return err;
    struct kr_payload *p = cmd_event(c, KR_EV_ACCOUNT_PASSWORD_CHANGED, tenant, o.version);
    if (!p) {
        sodium_memzero(hash, sizeof hash);
        return KR_ENOMEM;
    }
    kr_set_bytes(p, KR_FLD_ACCOUNT, acct, 16);
    kr_set_str(p, KR_FLD_PASSWORD_HASH, hash);
    err = close_sessions(c, tenant, acct, KR_CLOSE_REASON_PASSWORD_CHANGED);
    if (!err)
        err = cmd_commit(c);
    sodium_memzero(hash, sizeof hash);
    if (err)
        return err;
    res_map(c, 0);
    return KR_OK;
}

/* ---- users.* ---- */

/* Creates an account of role (with perms) in tenant from the op's email,
 * password and display_name (the password already checked): account.created,
 * and with t (a customer tenant) the account_info e-mail to the new address.
 * Tenant 0 (operators) has no tenant code e-mail, so nothing is queued
 * there. Answers account and version. */
static kr_err create_account(struct cmd *c, uint64_t tenant, int role, uint64_t perms,
                             const struct va_tenant *t)
{
    const struct kr_value *email = &c->args->v[KR_FLD_EMAIL];
    const struct kr_value *pw = &c->args->v[KR_FLD_PASSWORD];
    const struct kr_value *dname = &c->args->v[KR_FLD_DISPLAY_NAME];
    struct kr_data_key key;
    uint8_t mac[32], acct[16], msg[16];
    kr_err err = KR_OK;
    if ((err = cmd_key(c, tenant, false, &key)))
        return err;
    va_email_mac(&key, email->p, email->n, mac);
    kr_data_key_wipe(&key);
    err = va_account_by_mac(&c->d->views, c->txn, tenant, mac, acct);
    if (err == KR_OK)
        return cmd_fail(c, KR_ECONFLICT, "email", "an account has this e-mail address");
    if (err != KR_ENOTFOUND)
        return err;
    char hash[ACCT_HASH_MAX];
    if ((err = acct_hash_password(c->d, pw->p, pw->n, hash)))
        return err;
    cmd_new_id(c, acct);
    struct kr_payload *p1 = cmd_event(c, KR_EV_ACCOUNT_CREATED, tenant, 0);
    struct kr_payload *p2 = t ? cmd_event(c, KR_EV_OUTBOX_QUEUED, tenant, 0) : NULL;
    if (!p1 || (t && !p2)) {
        sodium_memzero(hash, sizeof hash);
        return KR_ENOMEM;
    }
    kr_set_bytes(p1, KR_FLD_ACCOUNT, acct, 16);
    kr_set_u64(p1, KR_FLD_ROLE, (uint64_t)role);
    kr_set_u64(p1, KR_FLD_PERMISSIONS, perms);
    kr_set_bytes(p1, KR_FLD_EMAIL, email->p, email->n);
    kr_set_bytes(p1, KR_FLD_EMAIL_MAC, mac, 32);
    if (dname->set)
        kr_set_bytes(p1, KR_FLD_DISPLAY_NAME, dname->p, dname->n);
    kr_set_str(p1, KR_FLD_PASSWORD_HASH, hash);
    if (t) {
        cmd_new_id(c, msg);
        kr_set_bytes(p2, KR_FLD_MESSAGE, msg, 16);
        kr_set_u64(p2, KR_FLD_TEMPLATE, KR_TEMPLATE_ACCOUNT_INFO);
        kr_set_bytes(p2, KR_FLD_EMAIL, email->p, email->n);
        kr_set_bytes(p2, KR_FLD_TENANT_CODE, t->code, t->code_len);
    }
    err = cmd_commit(c);
    sodium_memzero(hash, sizeof hash);
    if (err)
        return err;
    res_map(c, 2);
    res_bytes(c, KR_FLD_ACCOUNT, acct, 16);
    res_u64(c, KR_FLD_VERSION, 1);
    return KR_OK;
}

/* Whether the op's password may be the new account's (into c's diagnostics). */
static kr_err check_new_password(struct cmd *c)
{
    const struct kr_value *email = &c->args->v[KR_FLD_EMAIL];
    const struct kr_value *pw = &c->args->v[KR_FLD_PASSWORD];
    const char *why;
    if (kr_password_check(pw->p, pw->n, email->p, email->n, &why))
        return cmd_fail(c, KR_EINVAL, "password", why);
    return KR_OK;
}

kr_err cmd_users_create(struct cmd *c)
{
    const struct kr_value *role = &c->args->v[KR_FLD_ROLE];
    const struct kr_value *perms = &c->args->v[KR_FLD_PERMISSIONS];
    uint64_t tenant = c->who->tenant;
    struct va_tenant t;
    kr_err err = KR_OK;
    if (role->u != KR_ROLE_USER && role->u != KR_ROLE_AUDITOR)
        return cmd_fail(c, KR_EINVAL, "role", "must be user or auditor");
    if ((err = check_new_password(c)))
        return err;
    if ((err = va_tenant_get(&c->d->views, c->txn, tenant, &t)))
        return err == KR_ENOTFOUND ? KR_EFORBIDDEN : err;
    return create_account(c, tenant, (int)role->u, perms->set ? perms->u : 0, &t);
}

/* Who an account op may not name besides accounts outside its tenant. */
enum target_rule {
    TARGET_NOT_MASTER, /* users.*: the master's own account */
    TARGET_NOT_SELF,   /* operators.delete, lock: the calling operator's own */
    TARGET_ANY,        /* operators.unlock */
};

/* The account an op names, in `tenant` (the caller's for users.*, 0 for
 * operators.*), at the version the caller gave. An account of another role
 * than `role` (-1: any) is not found: an operators.* op never reaches a
 * tenant's account, nor users.* an operator. */
static kr_err target(struct cmd *c, uint64_t tenant, int role, enum target_rule rule,
                     struct va_account *o)
{
    const uint8_t *acct = c->args->v[KR_FLD_ACCOUNT].p;
    kr_err err = va_account_get(&c->d->views, c->txn, tenant, acct, o);
    if (err == KR_OK && role >= 0 && o->role != role)
        err = KR_ENOTFOUND;
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, KR_ENOTFOUND, "account", "no such account");
    if (err)
        return err;
    if (rule == TARGET_NOT_MASTER && o->role == KR_ROLE_MASTER)
        return cmd_fail(c, KR_EFORBIDDEN, "account", "not allowed on the master account");
    if (rule == TARGET_NOT_SELF && sodium_memcmp(acct, c->who->account, 16) == 0)
        return cmd_fail(c, KR_EFORBIDDEN, "account", "not allowed on your own account");
    if (c->args->v[KR_FLD_VERSION].u != o->version)
        return cmd_fail(c, KR_ECONFLICT, "version", "the account changed");
    return KR_OK;
}

/* The master's target: an account of the caller's tenant but the master. */
static kr_err user_target(struct cmd *c, struct va_account *o)
{
    return target(c, c->who->tenant, -1, TARGET_NOT_MASTER, o);
}

static kr_err simple_event(struct cmd *c, uint64_t tenant, const struct va_account *o, int ev,
                           int fld, uint64_t value, int close_reason)
{
    const uint8_t *acct = c->args->v[KR_FLD_ACCOUNT].p;
    kr_err err = KR_OK;
    struct kr_payload *p = cmd_event(c, ev, tenant, o->version);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_ACCOUNT, acct, 16);
    if (fld >= 0)
        kr_set_u64(p, fld, value);
    if (close_reason >= 0 && (err = close_sessions(c, tenant, acct, close_reason)))
        return err;
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 1);
    res_u64(c, KR_FLD_VERSION, o->version + 1);
    return KR_OK;
}

static kr_err unchanged(struct cmd *c, const struct va_account *o)
{
    res_map(c, 1);
    res_u64(c, KR_FLD_VERSION, o->version);
    return KR_OK;
}

kr_err cmd_users_delete(struct cmd *c)
{
    struct va_account o;
    kr_err err = user_target(c, &o);
    if (err)
        return err;
    return simple_event(c, c->who->tenant, &o, KR_EV_ACCOUNT_DELETED, -1, 0,
                        KR_CLOSE_REASON_ACCOUNT_DELETED);
}

kr_err cmd_users_grant(struct cmd *c)
{
    struct va_account o;
    kr_err err = user_target(c, &o);
    if (err)
        return err;
    return simple_event(c, c->who->tenant, &o, KR_EV_ACCOUNT_PERMISSIONS_GRANTED,
                        KR_FLD_PERMISSIONS, c->args->v[KR_FLD_PERMISSIONS].u, -1);
}

kr_err cmd_users_revoke(struct cmd *c)
{
    struct va_account o;
    kr_err err = user_target(c, &o);
    if (err)
        return err;
    return simple_event(c, c->who->tenant, &o, KR_EV_ACCOUNT_PERMISSIONS_REVOKED,
                        KR_FLD_PERMISSIONS, c->args->v[KR_FLD_PERMISSIONS].u, -1);
}

/* Locks account o of tenant for `reason` (the master's or an operator's:
 * neither times out); a lock for failures becomes this one. */
static kr_err lock_account(struct cmd *c, uint64_t tenant, const struct va_account *o, int reason)
{
    if (o->locked && o->lock_reason == reason)
        return unchanged(c, o);
    return simple_event(c, tenant, o, KR_EV_ACCOUNT_LOCKED, KR_FLD_LOCK_REASON, (uint64_t)reason,
                        KR_CLOSE_REASON_ACCOUNT_LOCKED);
}

/* Unlocks account o of tenant (also from a lock for failures, and its count). */
static kr_err unlock_account(struct cmd *c, uint64_t tenant, const struct va_account *o)
{
    if (!o->locked && o->failures == 0)
        return unchanged(c, o);
    return simple_event(c, tenant, o, KR_EV_ACCOUNT_UNLOCKED, -1, 0, -1);
}

kr_err cmd_users_lock(struct cmd *c)
{
    struct va_account o;
    kr_err err = user_target(c, &o);
    return err ? err : lock_account(c, c->who->tenant, &o, KR_LOCK_REASON_MASTER);
}

kr_err cmd_users_unlock(struct cmd *c)
{
    struct va_account o;
    kr_err err = user_target(c, &o);
    return err ? err : unlock_account(c, c->who->tenant, &o);
}

/* An account's lock state as users.list shows it: locked (now: a lock for
 * failures that timed out is not), lock_reason and locked_until (nil when
 * they do not apply). */
static void res_lock_state(struct cmd *c, const struct va_account *o)
{
    bool locked = va_account_locked(o, c->now);
    uint64_t until = va_account_locked_until(o);
    res_bool(c, KR_FLD_LOCKED, locked);
    if (locked)
        res_enum(c, KR_FLD_LOCK_REASON, (uint64_t)o->lock_reason);
    else
        res_nil(c, KR_FLD_LOCK_REASON);
    if (locked && until != 0 && until != UINT64_MAX)
        res_u64(c, KR_FLD_LOCKED_UNTIL, until);
    else
        res_nil(c, KR_FLD_LOCKED_UNTIL);
}

/* users.list (a tenant's accounts with role and permissions) and, with
 * `operators`, operators.list (tenant 0's, without them): a page of
 * accounts in id order from the cursor on. */
static kr_err list_accounts(struct cmd *c, uint64_t tenant, bool operators)
{
    const struct kr_value *cur = &c->args->v[KR_FLD_CURSOR];
    uint32_t limit = cmd_limit(c);
    kr_err err = KR_OK;
    if (cur->set && cur->n != 16)
        return cmd_fail(c, KR_EINVAL, "cursor", "not a cursor of this list");
    struct row {
        uint8_t id[16];
        struct va_account o;
    } *rows = calloc(limit, sizeof *rows);
    if (!rows)
        return KR_ENOMEM;
    uint8_t kb[24];
    v_put_u64(kb, tenant);
    if (cur->set)
        memcpy(kb + 8, cur->p, 16);
    MDB_cursor *mc;
    uint32_t n = 0;
    bool more = false;
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_ACCOUNTS], &mc);
    if (rc) {
        free(rows);
        return kr_err_from_mdb(rc);
    }
    MDB_val k = {cur->set ? 24u : 8u, kb}, val;
    for (rc = mdb_cursor_get(mc, &k, &val, MDB_SET_RANGE);
         rc == MDB_SUCCESS && k.mv_size == 24 && memcmp(k.mv_data, kb, 8) == 0;
         rc = mdb_cursor_get(mc, &k, &val, MDB_NEXT)) {
        if (cur->set && memcmp((const uint8_t *)k.mv_data + 8, cur->p, 16) == 0)
            continue; /* the cursor is the last one already listed */
        if (n == limit) {
            more = true;
            break;
        }
        memcpy(rows[n].id, (const uint8_t *)k.mv_data + 8, 16);
        if ((err = va_account_get(&c->d->views, c->txn, tenant, rows[n].id, &rows[n].o)))
            break;
        n++;
    }
    mdb_cursor_close(mc);
    if (!err && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
    if (err) {
        free(rows);
        return err;
    }
    res_map(c, 2);
    res_keyname(c, operators ? "operators" : "users");
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n && !err; i++) {
        if ((err = cmd_read(c, rows[i].o.created_seq, KR_EV_ACCOUNT_CREATED, c->scratch)))
            break;
        res_map(c, operators ? 7 : 9);
        res_bytes(c, KR_FLD_ACCOUNT, rows[i].id, 16);
        if (!operators) {
            res_enum(c, KR_FLD_ROLE, (uint64_t)rows[i].o.role);
            res_perms(c, rows[i].o.perms);
        }
        res_val(c, KR_FLD_EMAIL, &c->scratch->v[KR_FLD_EMAIL]);
        res_val(c, KR_FLD_DISPLAY_NAME, &c->scratch->v[KR_FLD_DISPLAY_NAME]);
        res_u64(c, KR_FLD_VERSION, rows[i].o.version);
        res_lock_state(c, &rows[i].o);
    }
    if (!err) {
        if (more && n > 0)
            res_bytes(c, KR_FLD_CURSOR, rows[n - 1].id, 16);
        else
            res_nil(c, KR_FLD_CURSOR);
    }
    free(rows);
    return err;
}

kr_err cmd_users_list(struct cmd *c)
{
    return list_accounts(c, c->who->tenant, false);
}

/* ---- operators.*: the platform's operators manage each other ----
 *
 * The same handlers as the master's users.*, on tenant 0 and naming only
 * operator accounts. An operator cannot delete or lock their own account
 * (so the last one standing cannot lock everybody out); a lock is
 * lock_reason operator, which lasts until another operator lifts it. */

kr_err cmd_operators_create(struct cmd *c)
{
    kr_err err = check_new_password(c);
    return err ? err : create_account(c, 0, KR_ROLE_OPERATOR, 0, NULL);
}

kr_err cmd_operators_list(struct cmd *c)
{
    return list_accounts(c, 0, true);
}

kr_err cmd_operators_delete(struct cmd *c)
{
    struct va_account o;
    kr_err err = target(c, 0, KR_ROLE_OPERATOR, TARGET_NOT_SELF, &o);
    if (err)
        return err;
    return simple_event(c, 0, &o, KR_EV_ACCOUNT_DELETED, -1, 0, KR_CLOSE_REASON_ACCOUNT_DELETED);
}

kr_err cmd_operators_lock(struct cmd *c)
{
    struct va_account o;
    kr_err err = target(c, 0, KR_ROLE_OPERATOR, TARGET_NOT_SELF, &o);
    return err ? err : lock_account(c, 0, &o, KR_LOCK_REASON_OPERATOR);
}

kr_err cmd_operators_unlock(struct cmd *c)
{
    struct va_account o;
    kr_err err = target(c, 0, KR_ROLE_OPERATOR, TARGET_ANY, &o);
    return err ? err : unlock_account(c, 0, &o);
}

/* The caller's own password: account.password's rules and lockout, for the
 * operator (tenant 0) calling over the operator endpoint. */
kr_err cmd_operators_password(struct cmd *c)
{
    return cmd_account_password(c);
}

/* ---- For the server and tools ---- */

/* Moves session s's idle limit on (session.touched, actor the account) when
 * less than half of it is left, so a session in use lasts until its absolute
 * limit at the cost of one event per half idle period. Best effort: losing
 * a race to another request (or to a close) changes nothing for this one. */
static void session_touch(struct kr_domain *d, const struct va_session *s, int role, uint64_t now)
{
    if (s->idle_expires - now > KR_SESSION_IDLE_NS / 2)
        return;
    uint64_t idle = now + KR_SESSION_IDLE_NS;
    if (idle > s->expires)
        idle = s->expires;
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return;
    char actor[KR_ACTOR_MAX + 1];
    struct kr_caller who = {.tenant = s->tenant, .role = role};
    memcpy(who.account, s->account, 16);
    dom_actor(&who, actor);
    kr_payload_reset(p, KR_EV_SESSION_TOUCHED);
    kr_set_bytes(p, KR_FLD_SESSION, s->session, 16);
    kr_set_u64(p, KR_FLD_IDLE_EXPIRES, idle);
    /* Submitted, not waited for: a request never waits for a flush here. */
    kr_err err = dom_submit_plain(d, s->tenant, actor, p, s->version);
    (void)err; /* a conflict means another request touched it first */
    kr_payload_free(p);
}

kr_err dom_session_resolve(struct kr_domain *d, const uint8_t token[32], struct kr_caller *out)
{
    struct va_session s;
    struct va_account o;
    struct va_tenant t;
    uint8_t th[32];
    MDB_txn *txn;
    memset(out, 0, sizeof *out);
    out->role = -1;
    kr_sha256(th, token, 32);
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    uint64_t now = kr_clock_now(d->clock);
    kr_err err = va_session_get(&d->views, txn, th, &s);
    if (!err && (now >= s.expires || now >= s.idle_expires))
        err = KR_ENOTFOUND;
    if (!err)
        err = va_account_get(&d->views, txn, s.tenant, s.account, &o);
    if (!err && o.locked)
        err = KR_ENOTFOUND;
    if (!err && s.tenant != 0) {
        err = va_tenant_get(&d->views, txn, s.tenant, &t);
        if (!err && t.state != KR_TENANT_STATE_ACTIVE)
            err = KR_ENOTFOUND;
    }
    mdb_txn_abort(txn);
    if (err == KR_ENOTFOUND)
        return KR_EAUTH;
    if (err)
        return err;
    out->tenant = s.tenant;
    memcpy(out->account, s.account, 16);
    out->role = o.role;
    out->perms = o.role == KR_ROLE_MASTER ? (1ull << KR_PERMISSION__COUNT) - 1 : o.perms;
    out->has_session = true;
    memcpy(out->session, s.session, 16);
    session_touch(d, &s, o.role, now);
    return KR_OK;
}

kr_err dom_operator_create(struct kr_domain *d, const char *email, const char *password,
                           uint8_t account[16])
{
    struct kr_value ev = {.set = true, .p = (const uint8_t *)email, .n = 0};
    struct kr_diag diag;
    struct kr_data_key key;
    uint8_t mac[32], id[16];
    char hash[ACCT_HASH_MAX];
    const char *why;
    MDB_txn *txn;
    kr_err err = KR_OK;

    if (!email || !password)
        return KR_EINVAL;
    size_t el = strlen(email), pl = strlen(password);
    if (el > kr_fields[KR_FLD_EMAIL].max)
        return KR_EINVAL;
    ev.n = (uint32_t)el;
    if (kr_value_check(KR_FLD_EMAIL, &ev, &diag) ||
        kr_password_check(password, pl, email, el, &why))
        return KR_EINVAL;
    if ((err = ks_get_or_create(d->ks, 0, d->rng, &key)))
        return err;
    va_email_mac(&key, ev.p, el, mac);
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc) {
        kr_data_key_wipe(&key);
        return kr_err_from_mdb(rc);
    }
    err = va_account_by_mac(&d->views, txn, 0, mac, id);
    mdb_txn_abort(txn);
    if (err != KR_ENOTFOUND) {
        kr_data_key_wipe(&key);
        return err ? err : KR_ECONFLICT;
    }
    if ((err = acct_hash_password(d, password, pl, hash))) {
        kr_data_key_wipe(&key);
        return err;
    }
    kr_rng_fill(d->rng, id, 16);
    struct kr_payload *p = kr_payload_new();
    uint8_t *buf = malloc(KR_PAYLOAD_MAX);
    if (!p || !buf) {
        err = KR_ENOMEM;
        goto out;
    }
    kr_payload_reset(p, KR_EV_ACCOUNT_CREATED);
    kr_set_bytes(p, KR_FLD_ACCOUNT, id, 16);
    kr_set_u64(p, KR_FLD_ROLE, KR_ROLE_OPERATOR);
    kr_set_u64(p, KR_FLD_PERMISSIONS, 0);
    kr_set_bytes(p, KR_FLD_EMAIL, email, el);
    kr_set_bytes(p, KR_FLD_EMAIL_MAC, mac, 32);
    kr_set_str(p, KR_FLD_PASSWORD_HASH, hash);
    char stream[KR_STREAM_MAX + 1];
    size_t slen, len;
    if ((err = kr_event_stream(p, stream, sizeof stream, &slen)))
        goto out;
    struct kr_pd_ctx pd = {
        .key = &key, .rng = d->rng, .tenant = 0, .stream = stream, .stream_len = slen};
    if ((err = kr_event_encode(p, &pd, buf, KR_PAYLOAD_MAX, &len, &diag)))
        goto out;
    const char *type = kr_events[KR_EV_ACCOUNT_CREATED].name;
    struct jrn_event e = {
        .tenant = 0,
        .stream = stream,
        .stream_len = slen,
        .type = type,
        .type_len = strlen(type),
        .actor = JRN_SYSTEM_ACTOR,
        .actor_len = sizeof JRN_SYSTEM_ACTOR - 1,
        .expected_version = 0,
        .payload = buf,
        .payload_len = len,
    };
    if ((err = jrn_append(d->j, &e, 1)))
        goto out;
    memcpy(account, id, 16);
out:
    kr_data_key_wipe(&key);
    sodium_memzero(hash, sizeof hash);
    kr_payload_free(p);
    free(buf);
    return err;
}
