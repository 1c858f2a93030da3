/*
 * accounts_test.c: logins, lockout, sessions and the master's account ops
 * (cmd_accounts.c) over the account and session views (v_accounts.c): the
 * lockout at its limit and under a parallel burst, unknown and wrong logins
 * looking the same, every kind of bad token, permissions and roles, tenant
 * isolation, password rules, e-mail uniqueness, the operator bootstrap, and
 * personal data never stored in clear.
 */
#include "accounts.h"
#include "test_domain.h"
#include "test_util.h"

#include <pthread.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define PERM(p) (1ull << KR_PERMISSION_##p)
#define MIN_NS  (60ull * 1000000000ull)

/* Two tenants with their masters (and their codes). */
struct fx {
    struct td *t;
    uint64_t t1, t2;
    struct kr_caller m1, m2;
    char c1[40], c2[40];
};

/* dom_session_resolve, then the session touch it may have submitted is
 * waited for (it is appended asynchronously). */
static kr_err resolve(struct kr_domain *d, const uint8_t token[32], struct kr_caller *who)
{
    kr_err err = dom_session_resolve(d, token, who);
    dom_wait_plain(d);
    return err;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->t = td_new(99);
    f->t1 = td_signup(f->t, "owner1@example.jp", "correct horse 1", &f->m1, f->c1);
    f->t2 = td_signup(f->t, "owner2@example.jp", "correct horse 2", &f->m2, f->c2);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    td_free(f->t);
    free(f);
    return 0;
}

static kr_err login_as(struct td *t, bool op_endpoint, const char *code, const char *email,
                       const char *pw, uint8_t token[32])
{
    struct kr_caller anon = td_anonymous();
    anon.operator_endpoint = op_endpoint;
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_TENANT_CODE, code);
    kr_set_str(a, KR_FLD_EMAIL, email);
    kr_set_str(a, KR_FLD_PASSWORD, pw);
    kr_err err = td_exec(t, &anon, KR_OP_AUTH_LOGIN);
    if (!err && token) {
        const msgpack_object *o = td_get(t, "token");
        assert_non_null(o);
        assert_int_equal(o->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(o->via.bin.size, 32);
        memcpy(token, o->via.bin.ptr, 32);
    }
    return err;
}

static kr_err login(struct td *t, const char *code, const char *email, const char *pw,
                    uint8_t token[32])
{
    return login_as(t, false, code, email, pw, token);
}

/* Creates a user (role, perms) in the master's tenant; returns its caller. */
static struct kr_caller mkuser(struct td *t, const struct kr_caller *master, const char *email,
                               int role, uint64_t perms)
{
    uint8_t acct[16];
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_EMAIL, email);
    kr_set_str(a, KR_FLD_PASSWORD, "user pass 123");
    kr_set_u64(a, KR_FLD_ROLE, (uint64_t)role);
    kr_set_u64(a, KR_FLD_PERMISSIONS, perms);
    kr_err err = td_exec(t, master, KR_OP_USERS_CREATE);
    if (err)
        fail_msg("users.create: %s (%s: %s)", kr_strerror(err), t->diag.field, t->diag.why);
    td_get_id(t, "account", acct);
    assert_int_equal(td_get_u64(t, "version"), 1);
    return td_account(master->tenant, acct, role, perms);
}

static struct va_account acct_row(struct td *t, uint64_t tenant, const uint8_t id[16])
{
    struct va_account o;
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(va_account_get(&t->d->views, txn, tenant, id, &o), KR_OK);
    mdb_txn_abort(txn);
    return o;
}

static bool acct_exists(struct td *t, uint64_t tenant, const uint8_t id[16])
{
    struct va_account o;
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    kr_err err = va_account_get(&t->d->views, txn, tenant, id, &o);
    mdb_txn_abort(txn);
    assert_true(err == KR_OK || err == KR_ENOTFOUND);
    return err == KR_OK;
}

static unsigned count_events(struct td *t, int ev, uint64_t tenant)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1};
    struct jrn_cursor *cur;
    struct jrn_record r;
    unsigned n = 0;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &cur), KR_OK);
    while (jrn_cursor_next(cur, &r) == KR_OK)
        if (kr_event_lookup(r.type, r.type_len) == ev && r.tenant == tenant)
            n++;
    jrn_cursor_free(cur);
    return n;
}

/* Runs an op naming account `id` at `version` (and permissions, for grant/revoke). */
static kr_err on_account(struct td *t, const struct kr_caller *who, int op, const uint8_t id[16],
                         uint64_t version, uint64_t perms)
{
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_ACCOUNT, id, 16);
    kr_set_u64(a, KR_FLD_VERSION, version);
    if (op == KR_OP_USERS_GRANT || op == KR_OP_USERS_REVOKE)
        kr_set_u64(a, KR_FLD_PERMISSIONS, perms);
    return td_exec(t, who, op);
}

/* ---- Login ---- */

/* A session in use lives on: a request with less than half the idle time
 * left moves the idle limit (one session.touched), one with more writes
 * nothing; an idle session still ends. */
static void test_session_idle_extends(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller who;
    uint8_t token[32];
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", token), KR_OK);
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(resolve(t->d, token, &who), KR_OK);
    assert_int_equal(jrn_size(t->d->j), before); /* plenty of idle time left */
    atomic_fetch_add(&t->now, 20 * MIN_NS);
    assert_int_equal(resolve(t->d, token, &who), KR_OK);
    assert_int_equal(jrn_size(t->d->j), before + 1); /* session.touched */
    atomic_fetch_add(&t->now, 20 * MIN_NS);          /* 40 min after login, 20 after the touch */
    assert_int_equal(resolve(t->d, token, &who), KR_OK);
    atomic_fetch_add(&t->now, 31 * MIN_NS); /* idle past the limit */
    assert_int_equal(resolve(t->d, token, &who), KR_EAUTH);
    /* Rebuilt views agree. */
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    assert_int_equal(resolve(t->d, token, &who), KR_EAUTH);
}

struct login_burst {
    struct td *t;
    const char *code;
    int ok;
};

static void *login_thread(void *arg)
{
    struct login_burst *b = arg;
    struct kr_caller anon = td_anonymous();
    struct kr_payload *a = kr_payload_new();
    struct kr_wbuf out;
    struct kr_diag d;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    kr_set_str(a, KR_FLD_TENANT_CODE, b->code);
    kr_set_str(a, KR_FLD_EMAIL, "owner1@example.jp");
    kr_set_str(a, KR_FLD_PASSWORD, "correct horse 1");
    for (int i = 0; i < 3; i++)
        if (dom_exec(b->t->d, &anon, KR_OP_AUTH_LOGIN, a, &out, &d) == KR_OK)
            __atomic_add_fetch(&b->ok, 1, __ATOMIC_RELAXED);
    kr_wbuf_free(&out);
    kr_payload_free(a);
    return NULL;
}

/* Concurrent logins run at most KR_PWHASH_CONCURRENT_MAX Argon2id
 * computations at once (each holds the cost's memory); the rest wait. */
static void test_pwhash_concurrency_bounded(void **state)
{
    struct fx *f = *state;
    enum { N = 16 };
    pthread_t th[N];
    struct login_burst b = {.t = f->t, .code = f->c1};
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&th[i], NULL, login_thread, &b), 0);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(b.ok, 3 * N);
    assert_true(f->t->d->pwhash_peak >= 1);
    assert_true(f->t->d->pwhash_peak <= KR_PWHASH_CONCURRENT_MAX);
    assert_int_equal(f->t->d->pwhash_busy, 0);
}

/* A lock for failures times out, and each lock after it without a success
 * lasts twice as long; a correct password after the wait logs in. */
static void test_lockout_times_out(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    const uint64_t base = KR_LOCKOUT_BASE_NS;
    for (unsigned i = 0; i < KR_LOGIN_FAILURES_MAX; i++)
        assert_int_equal(login(t, f->c1, "owner1@example.jp", "wrong password", NULL), KR_EAUTH);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_ELOCKED);
    /* After the first wait, a wrong password locks again, for twice as long. */
    atomic_fetch_add(&t->now, base);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "wrong password", NULL), KR_EAUTH);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_ELOCKED);
    atomic_fetch_add(&t->now, base);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_ELOCKED);
    atomic_fetch_add(&t->now, base);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_OK);
    /* The success clears the count: five more failures lock for the base wait again. */
    for (unsigned i = 0; i < KR_LOGIN_FAILURES_MAX; i++)
        assert_int_equal(login(t, f->c1, "owner1@example.jp", "wrong password", NULL), KR_EAUTH);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_ELOCKED);
    atomic_fetch_add(&t->now, base);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_OK);
    /* Views rebuilt from the journal agree. */
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_OK);
}

/* An account keeps at most KR_SESSIONS_PER_ACCOUNT_MAX open sessions: the
 * login past it ends the oldest, in its own append. */
static void test_session_cap(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller who;
    enum { N = KR_SESSIONS_PER_ACCOUNT_MAX + 2 };
    uint8_t tokens[N][32];
    for (int i = 0; i < N; i++) {
        uint64_t before = jrn_size(t->d->j);
        assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", tokens[i]), KR_OK);
        /* login_succeeded + session.opened, and a session.closed once full */
        assert_int_equal(jrn_size(t->d->j),
                         before + ((unsigned)i < KR_SESSIONS_PER_ACCOUNT_MAX ? 2 : 3));
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(resolve(t->d, tokens[i], &who), i < 2 ? KR_EAUTH : KR_OK);
    /* Deleting... the master cannot be; a password change closes all of them
     * in one append. */
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_PASSWORD, "correct horse 1");
    kr_set_str(a, KR_FLD_NEW_PASSWORD, "correct horse 9");
    assert_int_equal(resolve(t->d, tokens[N - 1], &who), KR_OK);
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(td_exec(t, &who, KR_OP_ACCOUNT_PASSWORD), KR_OK);
    assert_int_equal(jrn_size(t->d->j), before + 1 + KR_SESSIONS_PER_ACCOUNT_MAX);
    for (int i = 0; i < N; i++)
        assert_int_equal(resolve(t->d, tokens[i], &who), KR_EAUTH);
}

static void test_login_result(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller who;
    uint8_t token[32];
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", token), KR_OK);
    assert_int_equal(jrn_size(t->d->j), before + 2); /* login_succeeded + session.opened */
    uint8_t acct[16];
    td_get_id(t, "account", acct);
    assert_memory_equal(acct, f->m1.account, 16);
    const msgpack_object *role = td_get(t, "role");
    assert_int_equal(role->via.str.size, 6);
    assert_memory_equal(role->via.str.ptr, "master", 6);
    assert_int_equal(td_get(t, "permissions")->via.array.size, KR_PERMISSION__COUNT);
    const msgpack_object *notices = td_get(t, "notices");
    assert_non_null(notices);
    assert_int_equal(notices->type, MSGPACK_OBJECT_ARRAY);
    uint64_t expires = td_get_u64(t, "expires");
    assert_true(expires > atomic_load(&t->now) + 11 * 60 * MIN_NS);
    assert_true(expires <= atomic_load(&t->now) + 12 * 60 * MIN_NS);

    assert_int_equal(resolve(t->d, token, &who), KR_OK);
    assert_int_equal(who.tenant, f->t1);
    assert_int_equal(who.role, KR_ROLE_MASTER);
    assert_true(who.has_session);
    assert_memory_equal(who.account, f->m1.account, 16);

    /* whoami and logout with that session. */
    td_args(t);
    assert_int_equal(td_exec(t, &who, KR_OP_AUTH_WHOAMI), KR_OK);
    const msgpack_object *code = td_get(t, "tenant_code");
    assert_int_equal(code->via.str.size, strlen(f->c1));
    assert_memory_equal(code->via.str.ptr, f->c1, strlen(f->c1));
    assert_int_equal(td_get_u64(t, "expires"), expires);
    td_args(t);
    assert_int_equal(td_exec(t, &who, KR_OP_AUTH_LOGOUT), KR_OK);
    assert_int_equal(resolve(t->d, token, &who), KR_EAUTH);
    assert_int_equal(who.role, -1);
    assert_int_equal(who.tenant, 0);
}

/* Whether the newest record is event ev in tenant. */
static bool newest_is(struct td *t, int ev, uint64_t tenant)
{
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_read(t->d->j, jrn_size(t->d->j), &b), KR_OK);
    bool yes = kr_event_lookup(b.rec.type, b.rec.type_len) == ev && b.rec.tenant == tenant;
    jrn_recbuf_fini(&b);
    return yes;
}

static void test_unknown_and_wrong_look_the_same(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_diag d1, d2, d3, d4;
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(login(t, f->c1, "nobody@example.jp", "correct horse 1", NULL), KR_EAUTH);
    d1 = t->diag;
    /* Each failure is one record, known account or not: login.unknown in the
     * tenant the code names (with the e-mail's MAC), or in the platform. */
    assert_int_equal(jrn_size(t->d->j), before + 1);
    assert_true(newest_is(t, KR_EV_LOGIN_UNKNOWN, f->t1));
    assert_int_equal(login(t, "tnosuchcode", "owner1@example.jp", "correct horse 1", NULL),
                     KR_EAUTH);
    d2 = t->diag;
    assert_true(newest_is(t, KR_EV_LOGIN_UNKNOWN, 0));
    /* Another tenant's account under this tenant's code is unknown here. */
    assert_int_equal(login(t, f->c1, "owner2@example.jp", "correct horse 2", NULL), KR_EAUTH);
    d3 = t->diag;
    assert_true(newest_is(t, KR_EV_LOGIN_UNKNOWN, f->t1));
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 2", NULL), KR_EAUTH);
    d4 = t->diag;
    assert_int_equal(jrn_size(t->d->j), before + 4);
    assert_true(newest_is(t, KR_EV_ACCOUNT_LOGIN_FAILED, f->t1)); /* the failure is counted */
    assert_memory_equal(&d1, &d2, sizeof d1);
    assert_memory_equal(&d1, &d3, sizeof d1);
    assert_memory_equal(&d1, &d4, sizeof d1);
    assert_int_equal(dom_api_error(KR_EAUTH), KR_ERR_UNAUTHENTICATED);
    /* The platform code over the client endpoint is unknown too. */
    assert_int_equal(login(t, KR_PLATFORM_CODE, "owner1@example.jp", "correct horse 1", NULL),
                     KR_EAUTH);
    assert_memory_equal(&t->diag, &d1, sizeof d1);
}

static void test_lockout_limits(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    const char *e = "owner1@example.jp", *good = "correct horse 1", *bad = "wrong horse 1";
    /* limit - 1 wrong, then right: logged in, and the count starts again. */
    for (unsigned i = 0; i < KR_LOGIN_FAILURES_MAX - 1; i++)
        assert_int_equal(login(t, f->c1, e, bad, NULL), KR_EAUTH);
    assert_int_equal(acct_row(t, f->t1, f->m1.account).failures, KR_LOGIN_FAILURES_MAX - 1);
    assert_false(acct_row(t, f->t1, f->m1.account).locked);
    assert_int_equal(login(t, f->c1, e, good, NULL), KR_OK);
    assert_int_equal(acct_row(t, f->t1, f->m1.account).failures, 0);
    for (unsigned i = 0; i < KR_LOGIN_FAILURES_MAX - 1; i++)
        assert_int_equal(login(t, f->c1, e, bad, NULL), KR_EAUTH);
    assert_false(acct_row(t, f->t1, f->m1.account).locked);
    /* = limit: this wrong one locks. */
    assert_int_equal(login(t, f->c1, e, bad, NULL), KR_EAUTH);
    struct va_account o = acct_row(t, f->t1, f->m1.account);
    assert_true(o.locked);
    assert_int_equal(o.lock_reason, KR_LOCK_REASON_FAILURES);
    assert_int_equal(o.failures, KR_LOGIN_FAILURES_MAX);
    assert_int_equal(count_events(t, KR_EV_ACCOUNT_LOCKED, f->t1), 1);
    /* limit + 1: locked, with the right password too, and nothing recorded. */
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(login(t, f->c1, e, bad, NULL), KR_ELOCKED);
    assert_int_equal(login(t, f->c1, e, good, NULL), KR_ELOCKED);
    assert_true(td_unchanged_since(t, before));
    assert_int_equal(count_events(t, KR_EV_ACCOUNT_LOGIN_FAILED, f->t1),
                     2 * KR_LOGIN_FAILURES_MAX - 1);
    /* The other tenant is not affected. */
    assert_int_equal(login(t, f->c2, "owner2@example.jp", "correct horse 2", NULL), KR_OK);
}

struct burst {
    struct td *t;
    const char *code;
    kr_err err;
};

static void *burst_one(void *arg)
{
    struct burst *b = arg;
    struct kr_caller anon = td_anonymous();
    struct kr_payload *a = kr_payload_new();
    struct kr_wbuf out;
    struct kr_diag d;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    kr_set_str(a, KR_FLD_TENANT_CODE, b->code);
    kr_set_str(a, KR_FLD_EMAIL, "owner1@example.jp");
    kr_set_str(a, KR_FLD_PASSWORD, "wrong horse 1");
    b->err = dom_exec(b->t->d, &anon, KR_OP_AUTH_LOGIN, a, &out, &d);
    kr_wbuf_free(&out);
    kr_payload_free(a);
    return NULL;
}

static void test_lockout_parallel_burst(void **state)
{
    struct fx *f = *state;
    enum { N = 16 };
    pthread_t th[N];
    struct burst b[N];
    for (int i = 0; i < N; i++) {
        b[i] = (struct burst){.t = f->t, .code = f->c1};
        assert_int_equal(pthread_create(&th[i], NULL, burst_one, &b[i]), 0);
    }
    int eauth = 0, elocked = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        eauth += b[i].err == KR_EAUTH;
        elocked += b[i].err == KR_ELOCKED;
    }
    /* Exactly the limit of attempts were wrong-password failures; the rest
     * found the account locked. */
    assert_int_equal(eauth, KR_LOGIN_FAILURES_MAX);
    assert_int_equal(elocked, N - KR_LOGIN_FAILURES_MAX);
    assert_int_equal(count_events(f->t, KR_EV_ACCOUNT_LOGIN_FAILED, f->t1), KR_LOGIN_FAILURES_MAX);
    assert_int_equal(count_events(f->t, KR_EV_ACCOUNT_LOCKED, f->t1), 1);
    struct va_account o = acct_row(f->t, f->t1, f->m1.account);
    assert_true(o.locked);
    assert_int_equal(o.failures, KR_LOGIN_FAILURES_MAX);
}

/* ---- Tokens ---- */

static void test_bad_tokens(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller who;
    uint8_t tok[32], tok2[32], other[32], zero[32] = {0};

    /* Idle expiry (30 min from the last use that moved it) and absolute
     * expiry (12 h, however busy the session). */
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", tok), KR_OK);
    atomic_fetch_add(&t->now, 29 * MIN_NS);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK); /* moves the idle limit */
    atomic_fetch_add(&t->now, 30 * MIN_NS);
    assert_int_equal(resolve(t->d, tok, &who), KR_EAUTH);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", tok), KR_OK);
    for (int i = 1; i <= 36; i++) { /* a request every 20 minutes */
        atomic_fetch_add(&t->now, 20 * MIN_NS);
        assert_int_equal(resolve(t->d, tok, &who), i < 36 ? KR_OK : KR_EAUTH);
    }

    /* Truncated (the rest zero), altered, all-zero. */
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", tok), KR_OK);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    memcpy(tok2, tok, 32);
    memset(tok2 + 16, 0, 16);
    assert_int_equal(resolve(t->d, tok2, &who), KR_EAUTH);
    memcpy(tok2, tok, 32);
    tok2[31] ^= 1;
    assert_int_equal(resolve(t->d, tok2, &who), KR_EAUTH);
    assert_int_equal(resolve(t->d, zero, &who), KR_EAUTH);

    /* Another tenant's token names that tenant, never this one: its master
     * sees its own accounts only. */
    assert_int_equal(login(t, f->c2, "owner2@example.jp", "correct horse 2", other), KR_OK);
    assert_int_equal(resolve(t->d, other, &who), KR_OK);
    assert_int_equal(who.tenant, f->t2);
    td_args(t);
    assert_int_equal(td_exec(t, &who, KR_OP_USERS_LIST), KR_OK);
    const msgpack_object *users = td_get(t, "users");
    assert_int_equal(users->via.array.size, 1);
    uint8_t listed[16];
    memcpy(listed, td_map_get(&users->via.array.ptr[0], "account")->via.bin.ptr, 16);
    assert_memory_equal(listed, f->m2.account, 16);

    /* From before a password change: every session of the account ends. */
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    assert_int_equal(who.tenant, f->t1);
    uint8_t tok3[32];
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", tok3), KR_OK);
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_PASSWORD, "correct horse 1");
    kr_set_str(a, KR_FLD_NEW_PASSWORD, "battery staple 7");
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(td_exec(t, &who, KR_OP_ACCOUNT_PASSWORD), KR_OK);
    /* password_changed + session.closed for the two open sessions (the two
     * expired ones are not open any more) */
    assert_int_equal(jrn_size(t->d->j), before + 3);
    assert_int_equal(resolve(t->d, tok, &who), KR_EAUTH);
    assert_int_equal(resolve(t->d, tok3, &who), KR_EAUTH);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_EAUTH);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "battery staple 7", tok), KR_OK);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    /* The other tenant's session lives on. */
    assert_int_equal(resolve(t->d, other, &who), KR_OK);
}

static void test_password_change_rules(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t tok[32];
    struct kr_caller who;
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", tok), KR_OK);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    uint64_t before = jrn_size(t->d->j);
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_PASSWORD, "not my password");
    kr_set_str(a, KR_FLD_NEW_PASSWORD, "battery staple 7");
    assert_int_equal(td_exec(t, &who, KR_OP_ACCOUNT_PASSWORD), KR_EAUTH);
    assert_string_equal(t->diag.field, "password");
    /* A wrong current password is recorded and counted, like a wrong login. */
    assert_int_equal(jrn_size(t->d->j), before + 1);
    assert_true(newest_is(t, KR_EV_ACCOUNT_LOGIN_FAILED, f->t1));
    assert_int_equal(acct_row(t, f->t1, f->m1.account).failures, 1);
    before = jrn_size(t->d->j);
    const char *bad[] = {"password1", "Baseball", "OWNER1@example.jp"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a = td_args(t);
        kr_set_str(a, KR_FLD_PASSWORD, "correct horse 1");
        kr_set_str(a, KR_FLD_NEW_PASSWORD, bad[i]);
        assert_int_equal(td_exec(t, &who, KR_OP_ACCOUNT_PASSWORD), KR_EINVAL);
        assert_string_equal(t->diag.field, "new_password");
    }
    a = td_args(t);
    kr_set_str(a, KR_FLD_PASSWORD, "correct horse 1");
    assert_int_equal(td_exec(t, &who, KR_OP_ACCOUNT_PASSWORD), KR_EINVAL);
    assert_string_equal(t->diag.field, "new_password");
    assert_true(td_unchanged_since(t, before));
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
}

/* ---- account.password: guessing the current password ---- */

static kr_err change_pw(struct td *t, const struct kr_caller *who, const char *cur,
                        const char *next)
{
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_PASSWORD, cur);
    kr_set_str(a, KR_FLD_NEW_PASSWORD, next);
    return td_exec(t, who, KR_OP_ACCOUNT_PASSWORD);
}

/* Wrong current passwords count toward the lockout with wrong logins: at
 * limit - 1 the account still works, the one at the limit locks it and ends
 * its sessions (the guessing one too), and after it nothing more is tried
 * or recorded. */
static void test_password_guess_limits(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    const char *e = "owner1@example.jp", *good = "correct horse 1", *bad = "wrong horse 1";
    uint8_t tok[32], other[32];
    struct kr_caller who;
    assert_int_equal(login(t, f->c1, e, good, tok), KR_OK);
    assert_int_equal(login(t, f->c1, e, good, other), KR_OK);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    /* limit - 1 wrong: each recorded and counted; the session lives. */
    for (unsigned i = 0; i < KR_LOGIN_FAILURES_MAX - 1; i++) {
        uint64_t before = jrn_size(t->d->j);
        assert_int_equal(change_pw(t, &who, bad, "battery staple 7"), KR_EAUTH);
        assert_string_equal(t->diag.field, "password");
        assert_int_equal(jrn_size(t->d->j), before + 1);
        assert_true(newest_is(t, KR_EV_ACCOUNT_LOGIN_FAILED, f->t1));
        assert_int_equal(acct_row(t, f->t1, f->m1.account).failures, i + 1);
    }
    assert_false(acct_row(t, f->t1, f->m1.account).locked);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    /* They share the count with wrong logins: one more wrong login would lock,
     * so the count is checked, not just stored. = limit: this one locks. */
    struct kr_caller stale = who; /* dom_session_resolve below clears who */
    assert_int_equal(change_pw(t, &who, bad, "battery staple 7"), KR_ELOCKED);
    struct va_account o = acct_row(t, f->t1, f->m1.account);
    assert_true(o.locked);
    assert_int_equal(o.lock_reason, KR_LOCK_REASON_FAILURES);
    assert_int_equal(o.failures, KR_LOGIN_FAILURES_MAX);
    assert_int_equal(count_events(t, KR_EV_ACCOUNT_LOGIN_FAILED, f->t1), KR_LOGIN_FAILURES_MAX);
    assert_int_equal(count_events(t, KR_EV_ACCOUNT_LOCKED, f->t1), 1);
    /* Both sessions closed, and recorded as closed for the lock. */
    assert_int_equal(resolve(t->d, tok, &who), KR_EAUTH);
    assert_int_equal(resolve(t->d, other, &who), KR_EAUTH);
    assert_int_equal(count_events(t, KR_EV_SESSION_CLOSED, f->t1), 2);
    /* limit + 1 (a request already past authentication): locked, the right
     * password too, nothing recorded, the password unchanged. */
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(change_pw(t, &stale, bad, "battery staple 7"), KR_ELOCKED);
    assert_int_equal(change_pw(t, &stale, good, "battery staple 7"), KR_ELOCKED);
    assert_true(td_unchanged_since(t, before));
    assert_int_equal(login(t, f->c1, e, good, NULL), KR_ELOCKED);
    /* The lock times out as a login lock does; the password is the old one. */
    atomic_fetch_add(&t->now, KR_LOCKOUT_BASE_NS);
    assert_int_equal(login(t, f->c1, e, good, NULL), KR_OK);
}

struct pw_burst {
    struct td *t;
    struct kr_caller who;
    kr_err err;
};

static void *pw_burst_one(void *arg)
{
    struct pw_burst *b = arg;
    struct kr_payload *a = kr_payload_new();
    struct kr_wbuf out;
    struct kr_diag d;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    kr_set_str(a, KR_FLD_PASSWORD, "wrong horse 1");
    kr_set_str(a, KR_FLD_NEW_PASSWORD, "battery staple 7");
    b->err = dom_exec(b->t->d, &b->who, KR_OP_ACCOUNT_PASSWORD, a, &out, &d);
    kr_wbuf_free(&out);
    kr_payload_free(a);
    return NULL;
}

/* A burst of parallel wrong current passwords never counts past the limit:
 * exactly the limit of them are recorded, one lock. */
static void test_password_guess_parallel_burst(void **state)
{
    struct fx *f = *state;
    enum { N = 16 };
    pthread_t th[N];
    struct pw_burst b[N];
    uint8_t tok[32];
    struct kr_caller who;
    assert_int_equal(login(f->t, f->c1, "owner1@example.jp", "correct horse 1", tok), KR_OK);
    assert_int_equal(dom_session_resolve(f->t->d, tok, &who), KR_OK);
    for (int i = 0; i < N; i++) {
        b[i] = (struct pw_burst){.t = f->t, .who = who};
        assert_int_equal(pthread_create(&th[i], NULL, pw_burst_one, &b[i]), 0);
    }
    int eauth = 0, elocked = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        eauth += b[i].err == KR_EAUTH;
        elocked += b[i].err == KR_ELOCKED;
    }
    assert_int_equal(eauth, KR_LOGIN_FAILURES_MAX - 1);
    assert_int_equal(elocked, N - (KR_LOGIN_FAILURES_MAX - 1));
    assert_int_equal(count_events(f->t, KR_EV_ACCOUNT_LOGIN_FAILED, f->t1), KR_LOGIN_FAILURES_MAX);
    assert_int_equal(count_events(f->t, KR_EV_ACCOUNT_LOCKED, f->t1), 1);
    struct va_account o = acct_row(f->t, f->t1, f->m1.account);
    assert_true(o.locked);
    assert_int_equal(o.failures, KR_LOGIN_FAILURES_MAX);
    assert_int_equal(dom_session_resolve(f->t->d, tok, &who), KR_EAUTH);
}

/* ---- Logins to a cancelled tenant ---- */

/* The right password on a cancelled tenant says the tenant is cancelled
 * (forbidden); a wrong one, or an unknown account there, gets the reply of
 * any failed login, so the cancellation is no oracle for passwords. */
static void test_login_cancelled_tenant(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_diag generic;
    assert_int_equal(login(t, "tnosuchcode", "owner1@example.jp", "correct horse 1", NULL),
                     KR_EAUTH);
    generic = t->diag;
    struct kr_caller op = td_operator();
    kr_set_u64(td_args(t), KR_FLD_TENANT, f->t1);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_CANCEL), KR_OK);
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_EFORBIDDEN);
    assert_string_equal(t->diag.field, "tenant_code");
    assert_string_equal(t->diag.why, "the tenant is cancelled");
    assert_int_equal(dom_api_error(KR_EFORBIDDEN), KR_ERR_FORBIDDEN);
    assert_true(td_unchanged_since(t, before));
    /* Wrong password, unknown account: the generic reply, recorded. */
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "wrong horse 1", NULL), KR_EAUTH);
    assert_memory_equal(&t->diag, &generic, sizeof generic);
    assert_int_equal(jrn_size(t->d->j), before + 1);
    assert_int_equal(login(t, f->c1, "nobody@example.jp", "correct horse 1", NULL), KR_EAUTH);
    assert_memory_equal(&t->diag, &generic, sizeof generic);
    assert_int_equal(jrn_size(t->d->j), before + 2);
    /* The other tenant is not affected. */
    assert_int_equal(login(t, f->c2, "owner2@example.jp", "correct horse 2", NULL), KR_OK);
}

/* ---- Corruption ---- */

/* Flips a byte inside the sealed personal data ("pd") of record seq, in place
 * in the journal's LMDB (what a disk or a hand could do). */
static void corrupt_pd(struct td *t, uint64_t seq)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t k[8];
    for (int i = 0; i < 8; i++)
        k[i] = (uint8_t)(seq >> (56 - 8 * i));
    MDB_val key = {8, k}, val;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "events", 0, &dbi), 0);
    assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
    uint8_t *copy = malloc(val.mv_size);
    assert_non_null(copy);
    memcpy(copy, val.mv_data, val.mv_size);
    static const uint8_t pd_key[] = {0xa2, 'p', 'd'};
    uint8_t *at = memmem(copy, val.mv_size, pd_key, sizeof pd_key);
    assert_non_null(at);
    at[3 + 2 + 20] ^= 0x01; /* past the bin header, inside the box */
    MDB_val nv = {val.mv_size, copy};
    assert_int_equal(mdb_put(txn, dbi, &key, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    free(copy);
}

/* A stored record that no longer decodes is corruption, not the caller's
 * fault: KR_ECORRUPT (`internal` to the caller) with the record's seq and
 * event in the diagnostics for the operator. */
static void test_corrupt_record_reported(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t tok[32];
    struct kr_caller who;
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", tok), KR_OK);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    uint64_t seq = acct_row(t, f->t1, f->m1.account).pw_seq;
    corrupt_pd(t, seq);
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_PASSWORD, "correct horse 1");
    kr_set_str(a, KR_FLD_NEW_PASSWORD, "battery staple 7");
    assert_int_equal(td_exec(t, &who, KR_OP_ACCOUNT_PASSWORD), KR_ECORRUPT);
    assert_int_equal(dom_api_error(KR_ECORRUPT), KR_ERR_INTERNAL);
    char want[64];
    snprintf(want, sizeof want, "record %llu", (unsigned long long)seq);
    assert_string_equal(t->diag.field, want);
    assert_non_null(strstr(t->diag.why, "account.created does not decode: pd"));
    /* A login reads the same record: the same report, no failure counted. */
    assert_int_equal(login(t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_ECORRUPT);
    assert_string_equal(t->diag.field, want);
    assert_int_equal(acct_row(t, f->t1, f->m1.account).failures, 0);
}

/* ---- Users ---- */

static void test_users_create_and_list(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller reader =
        mkuser(t, &f->m1, "reader@example.jp", KR_ROLE_USER, PERM(USERS_READ));
    struct kr_caller nobody = mkuser(t, &f->m1, "nobody@example.jp", KR_ROLE_USER, 0);
    struct kr_caller aud = mkuser(t, &f->m1, "aud@example.jp", KR_ROLE_AUDITOR, PERM(AUDIT_READ));

    /* users.list needs users.read; auditors may not list users. */
    td_args(t);
    assert_int_equal(td_exec(t, &nobody, KR_OP_USERS_LIST), KR_EFORBIDDEN);
    assert_int_equal(td_exec(t, &aud, KR_OP_USERS_LIST), KR_EFORBIDDEN);
    assert_int_equal(td_exec(t, &reader, KR_OP_USERS_LIST), KR_OK);
    const msgpack_object *users = td_get(t, "users");
    assert_int_equal(users->via.array.size, 4);
    assert_int_equal(td_get(t, "cursor")->type, MSGPACK_OBJECT_NIL);
    bool saw_reader = false;
    for (uint32_t i = 0; i < 4; i++) {
        const msgpack_object *u = &users->via.array.ptr[i];
        const msgpack_object *em = td_map_get(u, "email");
        assert_int_equal(em->type, MSGPACK_OBJECT_STR);
        assert_int_equal(td_map_get(u, "display_name")->type, MSGPACK_OBJECT_NIL);
        assert_int_equal(td_map_get(u, "version")->via.u64, 1);
        if (em->via.str.size == 17 && memcmp(em->via.str.ptr, "reader@example.jp", 17) == 0) {
            saw_reader = true;
            const msgpack_object *p = td_map_get(u, "permissions");
            assert_int_equal(p->via.array.size, 1);
            assert_memory_equal(p->via.array.ptr[0].via.str.ptr, "users.read", 10);
        }
    }
    assert_true(saw_reader);
    /* Paging: two pages of two, in id order, together every account once. */
    uint8_t ids[4][16];
    kr_set_u64(td_args(t), KR_FLD_LIMIT, 2);
    assert_int_equal(td_exec(t, &f->m1, KR_OP_USERS_LIST), KR_OK);
    users = td_get(t, "users");
    assert_int_equal(users->via.array.size, 2);
    for (uint32_t i = 0; i < 2; i++)
        memcpy(ids[i], td_map_get(&users->via.array.ptr[i], "account")->via.bin.ptr, 16);
    const msgpack_object *cur = td_get(t, "cursor");
    assert_int_equal(cur->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(cur->via.bin.size, 16);
    assert_memory_equal(cur->via.bin.ptr, ids[1], 16);
    struct kr_payload *a = td_args(t);
    kr_set_u64(a, KR_FLD_LIMIT, 2);
    kr_set_bytes(a, KR_FLD_CURSOR, ids[1], 16);
    assert_int_equal(td_exec(t, &f->m1, KR_OP_USERS_LIST), KR_OK);
    users = td_get(t, "users");
    assert_int_equal(users->via.array.size, 2);
    for (uint32_t i = 0; i < 2; i++)
        memcpy(ids[2 + i], td_map_get(&users->via.array.ptr[i], "account")->via.bin.ptr, 16);
    for (int i = 0; i < 3; i++)
        assert_true(memcmp(ids[i], ids[i + 1], 16) < 0);
    /* A full last page may still give a cursor; the page after it is empty. */
    cur = td_get(t, "cursor");
    if (cur->type == MSGPACK_OBJECT_BIN) {
        a = td_args(t);
        kr_set_bytes(a, KR_FLD_CURSOR, ids[3], 16);
        assert_int_equal(td_exec(t, &f->m1, KR_OP_USERS_LIST), KR_OK);
        assert_int_equal(td_get(t, "users")->via.array.size, 0);
        assert_int_equal(td_get(t, "cursor")->type, MSGPACK_OBJECT_NIL);
    }
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CURSOR, ids[0], 8);
    assert_int_equal(td_exec(t, &f->m1, KR_OP_USERS_LIST), KR_EINVAL);
    assert_string_equal(t->diag.field, "cursor");

    /* The new users log in with their password. */
    assert_int_equal(login(t, f->c1, "reader@example.jp", "user pass 123", NULL), KR_OK);
    assert_int_equal(login(t, f->c1, "aud@example.jp", "user pass 123", NULL), KR_OK);
    const msgpack_object *role = td_get(t, "role");
    assert_memory_equal(role->via.str.ptr, "auditor", 7);
}

static void test_users_create_rules(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint64_t before = jrn_size(t->d->j);
    struct {
        const char *email, *pw;
        int role;
        kr_err err;
        const char *field;
    } cases[] = {
        {"u1@example.jp", "password", KR_ROLE_USER, KR_EINVAL, "password"},
        {"u1@example.jp", "U1@EXAMPLE.JP", KR_ROLE_USER, KR_EINVAL, "password"},
        {"u1@example.jp", "short", KR_ROLE_USER, KR_EINVAL, "password"},
        {"u1@example.jp", "fine pass 1", KR_ROLE_MASTER, KR_EINVAL, "role"},
        {"u1@example.jp", "fine pass 1", KR_ROLE_OPERATOR, KR_EINVAL, "role"},
        {"OWNER1@example.jp", "fine pass 1", KR_ROLE_USER, KR_ECONFLICT, "email"},
        {"bad-email", "fine pass 1", KR_ROLE_USER, KR_EINVAL, "email"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kr_payload *a = td_args(t);
        kr_set_str(a, KR_FLD_EMAIL, cases[i].email);
        kr_set_str(a, KR_FLD_PASSWORD, cases[i].pw);
        kr_set_u64(a, KR_FLD_ROLE, (uint64_t)cases[i].role);
        assert_int_equal(td_exec(t, &f->m1, KR_OP_USERS_CREATE), cases[i].err);
        assert_string_equal(t->diag.field, cases[i].field);
    }
    assert_true(td_unchanged_since(t, before));
    /* Unique per tenant, whatever the case; the same address is fine elsewhere. */
    (void)mkuser(t, &f->m1, "Same@Example.jp", KR_ROLE_USER, 0);
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_EMAIL, "same@example.JP");
    kr_set_str(a, KR_FLD_PASSWORD, "fine pass 1");
    kr_set_u64(a, KR_FLD_ROLE, KR_ROLE_USER);
    assert_int_equal(td_exec(t, &f->m1, KR_OP_USERS_CREATE), KR_ECONFLICT);
    assert_string_equal(t->diag.field, "email");
    (void)mkuser(t, &f->m2, "same@example.jp", KR_ROLE_USER, 0);
}

static void test_master_only_ops(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller all =
        mkuser(t, &f->m1, "all@example.jp", KR_ROLE_USER, (1ull << KR_PERMISSION__COUNT) - 1);
    struct kr_caller aud = mkuser(t, &f->m1, "aud@example.jp", KR_ROLE_AUDITOR, PERM(AUDIT_READ));
    struct kr_caller victim = mkuser(t, &f->m1, "victim@example.jp", KR_ROLE_USER, 0);
    const int ops[] = {KR_OP_USERS_DELETE, KR_OP_USERS_GRANT, KR_OP_USERS_REVOKE, KR_OP_USERS_LOCK,
                       KR_OP_USERS_UNLOCK};
    uint64_t before = jrn_size(t->d->j);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        assert_int_equal(on_account(t, &all, ops[i], victim.account, 1, PERM(CONTACTS_READ)),
                         KR_EFORBIDDEN);
        assert_int_equal(on_account(t, &aud, ops[i], victim.account, 1, PERM(CONTACTS_READ)),
                         KR_EFORBIDDEN);
    }
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_EMAIL, "new@example.jp");
    kr_set_str(a, KR_FLD_PASSWORD, "fine pass 1");
    kr_set_u64(a, KR_FLD_ROLE, KR_ROLE_USER);
    assert_int_equal(td_exec(t, &all, KR_OP_USERS_CREATE), KR_EFORBIDDEN);
    assert_int_equal(td_exec(t, &aud, KR_OP_USERS_CREATE), KR_EFORBIDDEN);
    assert_true(td_unchanged_since(t, before));
    /* The master account itself is off limits, even to the master. */
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        assert_int_equal(on_account(t, &f->m1, ops[i], f->m1.account, 1, PERM(CONTACTS_READ)),
                         KR_EFORBIDDEN);
        assert_string_equal(t->diag.field, "account");
    }
    assert_true(td_unchanged_since(t, before));
}

static void test_cross_tenant(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller u2 = mkuser(t, &f->m2, "u2@example.jp", KR_ROLE_USER, PERM(CONTACTS_READ));
    uint8_t missing[16];
    memset(missing, 0x33, 16);
    const int ops[] = {KR_OP_USERS_DELETE, KR_OP_USERS_GRANT, KR_OP_USERS_REVOKE, KR_OP_USERS_LOCK,
                       KR_OP_USERS_UNLOCK};
    uint64_t before = jrn_size(t->d->j);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        struct kr_diag dm;
        assert_int_equal(on_account(t, &f->m1, ops[i], missing, 1, PERM(USERS_READ)), KR_ENOTFOUND);
        dm = t->diag;
        assert_int_equal(on_account(t, &f->m1, ops[i], u2.account, 1, PERM(USERS_READ)),
                         KR_ENOTFOUND);
        assert_memory_equal(&dm, &t->diag, sizeof dm);
        /* Even the tenant's own master's id: not in tenant 1. */
        assert_int_equal(on_account(t, &f->m1, ops[i], f->m2.account, 1, PERM(USERS_READ)),
                         KR_ENOTFOUND);
    }
    assert_true(td_unchanged_since(t, before));
    struct va_account o = acct_row(t, f->t2, u2.account);
    assert_int_equal(o.version, 1);
    assert_int_equal(o.perms, PERM(CONTACTS_READ));
    assert_false(o.locked);
    assert_int_equal(login(t, f->c2, "u2@example.jp", "user pass 123", NULL), KR_OK);
}

static void test_manage_user(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller u = mkuser(t, &f->m1, "u@example.jp", KR_ROLE_USER, PERM(CONTACTS_READ));
    struct kr_caller who;
    uint8_t tok[32];

    /* grant / revoke, with version checks. */
    assert_int_equal(
        on_account(t, &f->m1, KR_OP_USERS_GRANT, u.account, 1, PERM(USERS_READ) | PERM(TAGS_WRITE)),
        KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 2);
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_REVOKE, u.account, 1, PERM(TAGS_WRITE)),
                     KR_ECONFLICT);
    assert_string_equal(t->diag.field, "version");
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_REVOKE, u.account, 2, PERM(TAGS_WRITE)),
                     KR_OK);
    assert_int_equal(acct_row(t, f->t1, u.account).perms, PERM(CONTACTS_READ) | PERM(USERS_READ));
    /* The session carries the permissions the account has now. */
    assert_int_equal(login(t, f->c1, "u@example.jp", "user pass 123", tok), KR_OK);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    assert_int_equal(who.perms, PERM(CONTACTS_READ) | PERM(USERS_READ));
    assert_int_equal(who.role, KR_ROLE_USER);
    td_args(t);
    assert_int_equal(td_exec(t, &who, KR_OP_USERS_LIST), KR_OK);
    /* The login did not move the version (it is on the sign-in stream). */
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_REVOKE, u.account, 3, PERM(USERS_READ)),
                     KR_OK);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    assert_int_equal(who.perms, PERM(CONTACTS_READ));
    td_args(t);
    assert_int_equal(td_exec(t, &who, KR_OP_USERS_LIST), KR_EFORBIDDEN);

    /* lock: the session ends, login says locked; unlock: login works. */
    uint64_t v = acct_row(t, f->t1, u.account).version;
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_LOCK, u.account, v, 0), KR_OK);
    assert_int_equal(count_events(t, KR_EV_SESSION_CLOSED, f->t1), 1);
    assert_int_equal(resolve(t->d, tok, &who), KR_EAUTH);
    assert_int_equal(login(t, f->c1, "u@example.jp", "user pass 123", NULL), KR_ELOCKED);
    struct va_account o = acct_row(t, f->t1, u.account);
    assert_int_equal(o.lock_reason, KR_LOCK_REASON_MASTER);
    /* Locking again changes nothing. */
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_LOCK, u.account, o.version, 0), KR_OK);
    assert_int_equal(td_get_u64(t, "version"), o.version);
    assert_true(td_unchanged_since(t, before));
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_UNLOCK, u.account, o.version, 0), KR_OK);
    assert_int_equal(login(t, f->c1, "u@example.jp", "user pass 123", tok), KR_OK);

    /* delete: wrong version refused; then its sessions end and it is gone. */
    v = acct_row(t, f->t1, u.account).version;
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_DELETE, u.account, v - 1, 0), KR_ECONFLICT);
    assert_string_equal(t->diag.field, "version");
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_DELETE, u.account, v, 0), KR_OK);
    assert_false(acct_exists(t, f->t1, u.account));
    assert_int_equal(resolve(t->d, tok, &who), KR_EAUTH);
    assert_int_equal(login(t, f->c1, "u@example.jp", "user pass 123", NULL), KR_EAUTH);
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_DELETE, u.account, v + 1, 0), KR_ENOTFOUND);
    /* Its address is free again. */
    (void)mkuser(t, &f->m1, "u@example.jp", KR_ROLE_USER, 0);
}

static void test_unlock_after_failures(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller u = mkuser(t, &f->m1, "u@example.jp", KR_ROLE_USER, 0);
    for (unsigned i = 0; i < KR_LOGIN_FAILURES_MAX; i++)
        assert_int_equal(login(t, f->c1, "u@example.jp", "not the pass", NULL), KR_EAUTH);
    assert_int_equal(login(t, f->c1, "u@example.jp", "user pass 123", NULL), KR_ELOCKED);
    struct va_account o = acct_row(t, f->t1, u.account);
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_UNLOCK, u.account, o.version, 0), KR_OK);
    o = acct_row(t, f->t1, u.account);
    assert_false(o.locked);
    assert_int_equal(o.failures, 0);
    assert_int_equal(login(t, f->c1, "u@example.jp", "user pass 123", NULL), KR_OK);
}

/* ---- Versions and sign-ins ---- */

/* The stream "<prefix>/<hex of id>" of event ev's kind, into out. */
static void stream_of(int ev, const uint8_t id[16], char out[KR_STREAM_MAX + 1])
{
    size_t n = strlen(kr_events[ev].stream_prefix);
    memcpy(out, kr_events[ev].stream_prefix, n);
    out[n] = '/';
    sodium_bin2hex(out + n + 1, 33, id, 16);
}

/* Appends event p (no personal fields) on `stream`, at the stream's current
 * version: as the command layer would, or as an older kiroku did when given
 * a stream that kiroku no longer uses for the event. */
static kr_err append_raw(struct td *t, uint64_t tenant, const char *stream,
                         const struct kr_payload *p)
{
    uint8_t buf[KR_PLAIN_EVENT_MAX];
    size_t len;
    uint64_t version;
    assert_int_equal(kr_event_encode(p, NULL, buf, sizeof buf, &len, NULL), KR_OK);
    assert_int_equal(jrn_stream_version(t->d->j, tenant, stream, strlen(stream), &version), KR_OK);
    const char *type = kr_events[p->ev].name;
    struct jrn_event e = {
        .tenant = tenant,
        .stream = stream,
        .stream_len = strlen(stream),
        .type = type,
        .type_len = strlen(type),
        .actor = JRN_SYSTEM_ACTOR,
        .actor_len = sizeof JRN_SYSTEM_ACTOR - 1,
        .expected_version = version,
        .payload = buf,
        .payload_len = len,
    };
    return jrn_append(t->d->j, &e, 1);
}

/* users.list's entry for account id (valid until the next op). */
static const msgpack_object *list_entry(struct td *t, const struct kr_caller *master,
                                        const uint8_t id[16])
{
    td_args(t);
    assert_int_equal(td_exec(t, master, KR_OP_USERS_LIST), KR_OK);
    const msgpack_object *users = td_get(t, "users");
    for (uint32_t i = 0; i < users->via.array.size; i++) {
        const msgpack_object *u = &users->via.array.ptr[i];
        const msgpack_object *a = td_map_get(u, "account");
        if (a->via.bin.size == 16 && memcmp(a->via.bin.ptr, id, 16) == 0)
            return u;
    }
    fail_msg("account not in users.list");
    return NULL;
}

/* Map m's value at key name, which must be there. */
static const msgpack_object *need(const msgpack_object *m, const char *name)
{
    const msgpack_object *o = td_map_get(m, name);
    if (!o)
        fail_msg("no %s in the result", name);
    return o;
}

static bool str_is(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* The version users.list gives the master stays good while the user logs
 * in, fails a password, and guesses a wrong current password: sign-ins are
 * on the account's sign-in stream, not its account stream. */
static void test_version_survives_signins(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller u = mkuser(t, &f->m1, "u@example.jp", KR_ROLE_USER, PERM(CONTACTS_READ));
    uint64_t v = td_map_get(list_entry(t, &f->m1, u.account), "version")->via.u64;
    assert_int_equal(v, 1);

    uint8_t tok[32];
    struct kr_caller who;
    assert_int_equal(login(t, f->c1, "u@example.jp", "user pass 123", tok), KR_OK);
    assert_int_equal(login(t, f->c1, "u@example.jp", "not the pass", NULL), KR_EAUTH);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_PASSWORD, "still not it");
    kr_set_str(a, KR_FLD_NEW_PASSWORD, "a new pass 456");
    assert_int_equal(td_exec(t, &who, KR_OP_ACCOUNT_PASSWORD), KR_EAUTH);
    assert_int_equal(acct_row(t, f->t1, u.account).failures, 2);
    assert_int_equal(td_map_get(list_entry(t, &f->m1, u.account), "version")->via.u64, v);

    /* The master acts with the version it listed. */
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_GRANT, u.account, v, PERM(TAGS_WRITE)),
                     KR_OK);
    assert_int_equal(td_get_u64(t, "version"), v + 1);
    /* The sign-ins are on the sign-in stream: three records at versions 1..3. */
    char stream[KR_STREAM_MAX + 1];
    uint64_t sv;
    stream_of(KR_EV_ACCOUNT_LOGIN_FAILED, u.account, stream);
    assert_int_equal(jrn_stream_version(t->d->j, f->t1, stream, strlen(stream), &sv), KR_OK);
    assert_int_equal(sv, 3);
    /* A lock is a change of the account: it moves the version. */
    for (unsigned i = 2; i < KR_LOGIN_FAILURES_MAX; i++)
        assert_int_equal(login(t, f->c1, "u@example.jp", "not the pass", NULL), KR_EAUTH);
    assert_int_equal(acct_row(t, f->t1, u.account).version, v + 2);
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_UNLOCK, u.account, v + 2, 0), KR_OK);
}

/* users.list shows the lock state: none; locked for failures until the
 * lock times out; locked by the master until lifted. */
static void test_users_list_lock_state(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller u = mkuser(t, &f->m1, "u@example.jp", KR_ROLE_USER, 0);
    const msgpack_object *e = list_entry(t, &f->m1, u.account);
    assert_int_equal(need(e, "locked")->type, MSGPACK_OBJECT_BOOLEAN);
    assert_false(need(e, "locked")->via.boolean);
    assert_int_equal(need(e, "lock_reason")->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(need(e, "locked_until")->type, MSGPACK_OBJECT_NIL);

    for (unsigned i = 0; i < KR_LOGIN_FAILURES_MAX; i++)
        assert_int_equal(login(t, f->c1, "u@example.jp", "not the pass", NULL), KR_EAUTH);
    struct va_account o = acct_row(t, f->t1, u.account);
    e = list_entry(t, &f->m1, u.account);
    assert_true(need(e, "locked")->via.boolean);
    assert_true(str_is(need(e, "lock_reason"), "failures"));
    assert_int_equal(need(e, "locked_until")->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(need(e, "locked_until")->via.u64, o.locked_at + KR_LOCKOUT_BASE_NS);

    /* Timed out: not locked any more, though no event says so yet. */
    atomic_fetch_add(&t->now, KR_LOCKOUT_BASE_NS);
    e = list_entry(t, &f->m1, u.account);
    assert_false(need(e, "locked")->via.boolean);
    assert_int_equal(need(e, "lock_reason")->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(need(e, "locked_until")->type, MSGPACK_OBJECT_NIL);

    /* The master's lock has no end. */
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_LOCK, u.account, o.version, 0), KR_OK);
    e = list_entry(t, &f->m1, u.account);
    assert_true(need(e, "locked")->via.boolean);
    assert_true(str_is(need(e, "lock_reason"), "master"));
    assert_int_equal(need(e, "locked_until")->type, MSGPACK_OBJECT_NIL);
}

static void view_digests(struct td *t, uint8_t out[VIEW__COUNT][32])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (int i = 0; i < VIEW__COUNT; i++)
        assert_int_equal(views_digest(&t->d->views, txn, (enum kr_view)i, out[i], NULL), KR_OK);
    mdb_txn_abort(txn);
}

static bool is_login_outcome(void *arg, const struct jrn_record *r)
{
    (void)arg;
    int ev = kr_event_lookup(r->type, r->type_len);
    return ev == KR_EV_ACCOUNT_LOGIN_FAILED || ev == KR_EV_ACCOUNT_LOGIN_SUCCEEDED;
}

/* A journal written before sign-in streams holds logins on the account
 * stream, where they moved its version: the views still follow the journal
 * (the master acts with the version listed), new sign-ins go to the
 * sign-in stream, and a rebuild gives the same views. */
static void test_signins_on_account_stream_replay(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller u = mkuser(t, &f->m1, "u@example.jp", KR_ROLE_USER, 0);
    char acct_stream[KR_STREAM_MAX + 1];
    stream_of(KR_EV_ACCOUNT_CREATED, u.account, acct_stream);
    struct kr_payload *p = kr_payload_new();
    assert_non_null(p);
    for (uint64_t i = 1; i <= 2; i++) { /* as an older kiroku recorded them */
        kr_payload_reset(p, KR_EV_ACCOUNT_LOGIN_FAILED);
        kr_set_bytes(p, KR_FLD_ACCOUNT, u.account, 16);
        kr_set_u64(p, KR_FLD_FAILURES, i);
        assert_int_equal(append_raw(t, f->t1, acct_stream, p), KR_OK);
    }
    kr_payload_free(p);
    struct va_account o = acct_row(t, f->t1, u.account);
    assert_int_equal(o.version, 3);
    assert_int_equal(o.failures, 2);
    uint64_t v = td_map_get(list_entry(t, &f->m1, u.account), "version")->via.u64;
    assert_int_equal(v, 3);
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_GRANT, u.account, v, PERM(TAGS_WRITE)),
                     KR_OK);
    /* New failures count on from the old ones, on the sign-in stream; the
     * one at the limit locks the account on its account stream. */
    for (unsigned i = 2; i < KR_LOGIN_FAILURES_MAX; i++)
        assert_int_equal(login(t, f->c1, "u@example.jp", "not the pass", NULL), KR_EAUTH);
    o = acct_row(t, f->t1, u.account);
    assert_true(o.locked);
    assert_int_equal(o.failures, KR_LOGIN_FAILURES_MAX);
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_UNLOCK, u.account, o.version, 0), KR_OK);
    assert_int_equal(login(t, f->c1, "u@example.jp", "user pass 123", NULL), KR_OK);
    o = acct_row(t, f->t1, u.account);
    assert_int_equal(o.version, 6); /* created, 2 old failures, grant, lock, unlock */

    /* Another account's newest record on its account stream is an old
     * failure; its reset is a login on the new sign-in stream. */
    struct kr_caller u2 = mkuser(t, &f->m1, "u2@example.jp", KR_ROLE_USER, 0);
    char acct2_stream[KR_STREAM_MAX + 1];
    stream_of(KR_EV_ACCOUNT_CREATED, u2.account, acct2_stream);
    p = kr_payload_new();
    assert_non_null(p);
    kr_payload_reset(p, KR_EV_ACCOUNT_LOGIN_FAILED);
    kr_set_bytes(p, KR_FLD_ACCOUNT, u2.account, 16);
    kr_set_u64(p, KR_FLD_FAILURES, 1);
    assert_int_equal(append_raw(t, f->t1, acct2_stream, p), KR_OK);
    kr_payload_free(p);
    assert_int_equal(login(t, f->c1, "u2@example.jp", "user pass 123", NULL), KR_OK);
    assert_int_equal(acct_row(t, f->t1, u2.account).version, 2);

    uint8_t live[VIEW__COUNT][32], rebuilt[VIEW__COUNT][32];
    view_digests(t, live);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    view_digests(t, rebuilt);
    assert_memory_equal(live, rebuilt, sizeof live);
    /* Log retention strips old login outcomes (the views unchanged): a
     * rebuild still counts the stripped ones on the account stream in its
     * version. */
    uint64_t stripped;
    struct jrn_strip_spec spec = {.any_tenant = true, .want = is_login_outcome};
    assert_int_equal(jrn_strip(t->d->j, &spec, &stripped), KR_OK);
    assert_int_equal(stripped, KR_LOGIN_FAILURES_MAX + 3);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    view_digests(t, rebuilt);
    assert_memory_equal(live, rebuilt, sizeof live);
    assert_int_equal(acct_row(t, f->t1, u.account).version, 6);
    assert_int_equal(acct_row(t, f->t1, u2.account).version, 2);
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_LOCK, u2.account, 2, 0), KR_OK);
}

/* A sign-in decided on an account version that moved meanwhile (the master
 * locked it, its password changed) is refused by the views, so the login
 * decides again: counting stays atomic with the master's ops on the other
 * stream. */
static void test_signin_decided_on_stale_version(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller u = mkuser(t, &f->m1, "u@example.jp", KR_ROLE_USER, 0);
    char stream[KR_STREAM_MAX + 1];
    uint8_t sid[16];
    memset(sid, 7, sizeof sid);
    stream_of(KR_EV_ACCOUNT_LOGIN_FAILED, u.account, stream);
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_LOCK, u.account, 1, 0), KR_OK);
    struct kr_payload *p = kr_payload_new();
    assert_non_null(p);
    kr_payload_reset(p, KR_EV_ACCOUNT_LOGIN_FAILED);
    kr_set_bytes(p, KR_FLD_ACCOUNT, u.account, 16);
    kr_set_u64(p, KR_FLD_FAILURES, 1);
    kr_set_u64(p, KR_FLD_VERSION, 1); /* before the lock */
    uint64_t size = jrn_size(t->d->j);
    assert_int_equal(append_raw(t, f->t1, stream, p), KR_ECONFLICT);
    kr_payload_reset(p, KR_EV_ACCOUNT_LOGIN_SUCCEEDED);
    kr_set_bytes(p, KR_FLD_ACCOUNT, u.account, 16);
    kr_set_bytes(p, KR_FLD_SESSION, sid, 16);
    kr_set_u64(p, KR_FLD_VERSION, 1);
    assert_int_equal(append_raw(t, f->t1, stream, p), KR_ECONFLICT);
    /* At the current version: still refused, the master's lock stands. */
    kr_set_u64(p, KR_FLD_VERSION, 2);
    assert_int_equal(append_raw(t, f->t1, stream, p), KR_ECONFLICT);
    assert_int_equal(jrn_size(t->d->j), size);
    struct va_account o = acct_row(t, f->t1, u.account);
    assert_true(o.locked);
    assert_int_equal(o.failures, 0);
    kr_payload_free(p);
}

/* Refused ops are recorded as access.denied with the op: by the access
 * check (an operator op, a missing permission) and by the handler (the
 * master's own account). */
static void assert_denied(struct td *t, uint64_t size, uint64_t tenant, const uint8_t acct[16],
                          int op)
{
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_size(t->d->j), size + 1);
    assert_int_equal(jrn_read(t->d->j, size + 1, &b), KR_OK);
    assert_int_equal(kr_event_lookup(b.rec.type, b.rec.type_len), KR_EV_ACCESS_DENIED);
    assert_int_equal(b.rec.tenant, tenant);
    struct kr_payload *p = kr_payload_new();
    assert_non_null(p);
    assert_int_equal(kr_event_decode(KR_EV_ACCESS_DENIED, &b.rec, NULL, p, NULL), KR_OK);
    const struct kr_value *v = &p->v[KR_FLD_OP];
    assert_int_equal(v->n, strlen(kr_ops[op].name));
    assert_memory_equal(v->p, kr_ops[op].name, v->n);
    assert_memory_equal(p->v[KR_FLD_ACCOUNT].p, acct, 16);
    kr_payload_free(p);
    jrn_recbuf_fini(&b);
}

static void test_refusals_recorded(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller nobody = mkuser(t, &f->m1, "nobody@example.jp", KR_ROLE_USER, 0);
    uint64_t size = jrn_size(t->d->j);
    assert_int_equal(on_account(t, &f->m1, KR_OP_USERS_DELETE, f->m1.account, 1, 0), KR_EFORBIDDEN);
    assert_denied(t, size, f->t1, f->m1.account, KR_OP_USERS_DELETE);
    size = jrn_size(t->d->j);
    kr_set_u64(td_args(t), KR_FLD_TENANT, f->t2);
    assert_int_equal(td_exec(t, &f->m1, KR_OP_TENANTS_CANCEL), KR_EFORBIDDEN);
    assert_denied(t, size, f->t1, f->m1.account, KR_OP_TENANTS_CANCEL);
    size = jrn_size(t->d->j);
    td_args(t);
    assert_int_equal(td_exec(t, &nobody, KR_OP_USERS_LIST), KR_EFORBIDDEN);
    assert_denied(t, size, f->t1, nobody.account, KR_OP_USERS_LIST);
}

/* ---- Operators ---- */

static void test_operator_bootstrap(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller who;
    uint8_t id[16], id2[16], tok[32];
    assert_int_equal(dom_operator_create(t->d, "ops@example.jp", "password", id), KR_EINVAL);
    assert_int_equal(dom_operator_create(t->d, "not-an-email", "ops pass 123", id), KR_EINVAL);
    assert_int_equal(dom_operator_create(t->d, "ops@example.jp", "ops pass 123", id), KR_OK);
    assert_int_equal(dom_operator_create(t->d, "OPS@example.jp", "ops pass 456", id2),
                     KR_ECONFLICT);
    assert_int_equal(count_events(t, KR_EV_ACCOUNT_CREATED, 0), 1);
    /* Over the operator endpoint only. */
    assert_int_equal(login_as(t, false, KR_PLATFORM_CODE, "ops@example.jp", "ops pass 123", NULL),
                     KR_EAUTH);
    assert_int_equal(login_as(t, true, KR_PLATFORM_CODE, "ops@example.jp", "ops pass 123", tok),
                     KR_OK);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    assert_int_equal(who.tenant, 0);
    assert_int_equal(who.role, KR_ROLE_OPERATOR);
    assert_memory_equal(who.account, id, 16);
    who.operator_endpoint = true;
    td_args(t);
    assert_int_equal(td_exec(t, &who, KR_OP_TENANTS_LIST), KR_OK);
    assert_int_equal(td_get(t, "tenants")->via.array.size, 2);
    assert_int_equal(td_exec(t, &who, KR_OP_AUTH_WHOAMI), KR_OK);
    const msgpack_object *code = td_get(t, "tenant_code");
    assert_int_equal(code->via.str.size, strlen(KR_PLATFORM_CODE));
    /* The record's actor is "system". */
    struct jrn_query q = {.kind = JRN_Q_TENANT, .tenant = 0};
    struct jrn_cursor *cur;
    struct jrn_record r;
    bool found = false;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &cur), KR_OK);
    while (jrn_cursor_next(cur, &r) == KR_OK)
        if (kr_event_lookup(r.type, r.type_len) == KR_EV_ACCOUNT_CREATED) {
            assert_int_equal(r.actor_len, 6);
            assert_memory_equal(r.actor, "system", 6);
            found = true;
        }
    jrn_cursor_free(cur);
    assert_true(found);
}

/* ---- Personal data ---- */

static void test_personal_data_sealed(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    const char *email = "k9w4-marker@example.jp", *pw = "k9w4-marker-pass";
    const char *name = "k9w4-marker-display";
    uint8_t tok[32];
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_EMAIL, email);
    kr_set_str(a, KR_FLD_PASSWORD, pw);
    kr_set_u64(a, KR_FLD_ROLE, KR_ROLE_USER);
    kr_set_str(a, KR_FLD_DISPLAY_NAME, name);
    assert_int_equal(td_exec(t, &f->m1, KR_OP_USERS_CREATE), KR_OK);
    assert_int_equal(login(t, f->c1, email, pw, tok), KR_OK);
    assert_int_equal(login(t, f->c1, email, "k9w4-marker-wrong", NULL), KR_EAUTH);
    /* users.list shows the display name (opened with the tenant key). */
    td_args(t);
    assert_int_equal(td_exec(t, &f->m1, KR_OP_USERS_LIST), KR_OK);
    bool shown = false;
    const msgpack_object *users = td_get(t, "users");
    for (uint32_t i = 0; i < users->via.array.size; i++) {
        const msgpack_object *dn = td_map_get(&users->via.array.ptr[i], "display_name");
        shown |= dn->type == MSGPACK_OBJECT_STR && dn->via.str.size == strlen(name) &&
                 memcmp(dn->via.str.ptr, name, strlen(name)) == 0;
    }
    assert_true(shown);
    td_reopen(t);
    assert_false(td_dir_contains(t->dir, "k9w4-marker", 11));
    assert_false(td_dir_contains(t->dir, "owner1@example.jp", 17));
    assert_false(td_dir_contains(t->dir, tok, sizeof tok)); /* only its hash is kept */
    assert_true(td_dir_contains(t->dir, "account.login_failed", 20));
}

static void *one_login(void *arg)
{
    struct login_burst *b = arg;
    struct kr_caller anon = td_anonymous();
    struct kr_payload *a = kr_payload_new();
    struct kr_wbuf out;
    struct kr_diag d;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    kr_set_str(a, KR_FLD_TENANT_CODE, b->code);
    kr_set_str(a, KR_FLD_EMAIL, "owner1@example.jp");
    kr_set_str(a, KR_FLD_PASSWORD, "correct horse 1");
    if (dom_exec(b->t->d, &anon, KR_OP_AUTH_LOGIN, a, &out, &d) == KR_OK)
        __atomic_add_fetch(&b->ok, 1, __ATOMIC_RELAXED);
    kr_wbuf_free(&out);
    kr_payload_free(a);
    return NULL;
}

/* For kr_test_wait_for: whether KR_PWHASH_WAITERS_MAX logins wait for a place. */
static bool all_waiting(void *arg)
{
    struct kr_domain *d = arg;
    pthread_mutex_lock(&d->pwhash_mu);
    unsigned waiting = d->pwhash_waiting;
    pthread_mutex_unlock(&d->pwhash_mu);
    return waiting == KR_PWHASH_WAITERS_MAX;
}

/* Past KR_PWHASH_WAITERS_MAX waiting logins, one more is refused at once
 * (unavailable) instead of holding a worker; the waiting ones go through. */
static void test_pwhash_waiters_bounded(void **state)
{
    struct fx *f = *state;
    struct kr_domain *d = f->t->d;
    enum { W = KR_PWHASH_WAITERS_MAX };
    for (unsigned i = 0; i < KR_PWHASH_CONCURRENT_MAX; i++) /* every place taken */
        assert_int_equal(dom_pwhash_acquire(d), KR_OK);
    pthread_t th[W];
    struct login_burst b = {.t = f->t, .code = f->c1};
    for (int i = 0; i < W; i++)
        assert_int_equal(pthread_create(&th[i], NULL, one_login, &b), 0);
    assert_true(kr_test_wait_for(all_waiting, d, KR_TEST_WAIT_MS, "every login waiting"));
    assert_int_equal(login(f->t, f->c1, "owner1@example.jp", "correct horse 1", NULL), KR_EBUSY);
    assert_int_equal(login(f->t, f->c1, "nobody@example.jp", "correct horse 1", NULL), KR_EBUSY);
    assert_int_equal(dom_api_error(KR_EBUSY), KR_ERR_UNAVAILABLE);
    for (unsigned i = 0; i < KR_PWHASH_CONCURRENT_MAX; i++)
        dom_pwhash_release(d);
    for (int i = 0; i < W; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(b.ok, W);
    assert_int_equal(d->pwhash_waiting, 0);
    assert_int_equal(d->pwhash_busy, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_login_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_idle_extends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pwhash_concurrency_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pwhash_waiters_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lockout_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_wrong_look_the_same, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lockout_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lockout_parallel_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_change_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_guess_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_cancelled_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_guess_parallel_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_create_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_create_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_master_only_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manage_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlock_after_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_survives_signins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_list_lock_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signins_on_account_stream_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signin_decided_on_stale_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_bootstrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_personal_data_sealed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
