/*
 * operators_test.c: the platform operators managing each other's accounts
 * (operators.create / list / delete / lock / unlock / password in
 * cmd_accounts.c): each op's success, every refusal (a wrong version, the
 * caller's own account, an unknown account, a tenant's account, a master or
 * a client-endpoint caller, a weak password), the lockout through
 * operators.password, sessions ended by delete, lock and password change,
 * the views rebuilt from the journal equal to the live ones, and the
 * wrong_shard answer on a tenant shard that imports the platform.
 */
#include "accounts.h"
#include "test_domain.h"
#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DAY_NS (24ull * 3600 * 1000000000ull)

/* A tenant with its master, and a first operator (made as `kiroku
 * operators add` makes it) logged in over the operator endpoint. */
struct fx {
    struct td *t;
    uint64_t tenant;
    struct kr_caller master;
    char code[40];
    uint8_t first[16];
    struct kr_caller op;
};

static kr_err resolve(struct kr_domain *d, const uint8_t token[32], struct kr_caller *who)
{
    kr_err err = dom_session_resolve(d, token, who);
    dom_wait_plain(d);
    who->operator_endpoint = true;
    return err;
}

/* An operator's login (tenant code "platform", operator endpoint). */
static kr_err op_login(struct td *t, const char *email, const char *pw, uint8_t token[32])
{
    struct kr_caller anon = td_anonymous();
    anon.operator_endpoint = true;
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_TENANT_CODE, KR_PLATFORM_CODE);
    kr_set_str(a, KR_FLD_EMAIL, email);
    kr_set_str(a, KR_FLD_PASSWORD, pw);
    kr_err err = td_exec(t, &anon, KR_OP_AUTH_LOGIN);
    if (!err && token)
        memcpy(token, td_get(t, "token")->via.bin.ptr, 32);
    return err;
}

/* Logs the operator in and returns its caller. */
static struct kr_caller op_session(struct td *t, const char *email, const char *pw)
{
    uint8_t tok[32];
    struct kr_caller who;
    assert_int_equal(op_login(t, email, pw, tok), KR_OK);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);
    assert_int_equal(who.role, KR_ROLE_OPERATOR);
    return who;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->t = td_new(7);
    f->tenant = td_signup(f->t, "owner@example.jp", "correct horse 1", &f->master, f->code);
    assert_int_equal(dom_operator_create(f->t->d, "first@example.jp", "first pass 123", f->first),
                     KR_OK);
    f->op = op_session(f->t, "first@example.jp", "first pass 123");
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

static kr_err create(struct td *t, const struct kr_caller *who, const char *email, const char *pw,
                     const char *display_name)
{
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_EMAIL, email);
    kr_set_str(a, KR_FLD_PASSWORD, pw);
    if (display_name)
        kr_set_str(a, KR_FLD_DISPLAY_NAME, display_name);
    return td_exec(t, who, KR_OP_OPERATORS_CREATE);
}

/* Creates an operator; returns its account id. */
static void mkop(struct td *t, const struct kr_caller *who, const char *email, uint8_t id[16])
{
    kr_err err = create(t, who, email, "other pass 123", NULL);
    if (err)
        fail_msg("operators.create: %s (%s: %s)", kr_strerror(err), t->diag.field, t->diag.why);
    td_get_id(t, "account", id);
    assert_int_equal(td_get_u64(t, "version"), 1);
}

static kr_err on_account(struct td *t, const struct kr_caller *who, int op, const uint8_t id[16],
                         uint64_t version)
{
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_ACCOUNT, id, 16);
    kr_set_u64(a, KR_FLD_VERSION, version);
    return td_exec(t, who, op);
}

static kr_err change_pw(struct td *t, const struct kr_caller *who, const char *cur,
                        const char *next)
{
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_PASSWORD, cur);
    kr_set_str(a, KR_FLD_NEW_PASSWORD, next);
    return td_exec(t, who, KR_OP_OPERATORS_PASSWORD);
}

static struct va_account row(struct td *t, const uint8_t id[16])
{
    struct va_account o;
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(va_account_get(&t->d->views, txn, 0, id, &o), KR_OK);
    mdb_txn_abort(txn);
    return o;
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

static bool str_is(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* operators.list's entry for account id (asserts there is one). */
static const msgpack_object *list_entry(struct td *t, const struct kr_caller *who,
                                        const uint8_t id[16])
{
    td_args(t);
    assert_int_equal(td_exec(t, who, KR_OP_OPERATORS_LIST), KR_OK);
    const msgpack_object *l = td_get(t, "operators");
    assert_non_null(l);
    for (uint32_t i = 0; i < l->via.array.size; i++) {
        const msgpack_object *e = &l->via.array.ptr[i];
        const msgpack_object *a = td_map_get(e, "account");
        if (a && a->via.bin.size == 16 && memcmp(a->via.bin.ptr, id, 16) == 0)
            return e;
    }
    fail_msg("account not listed");
    return NULL;
}

/* ---- operators.create, operators.list ---- */

static void test_create_and_list(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t id[16];
    unsigned outbox = count_events(t, KR_EV_OUTBOX_QUEUED, 0);
    assert_int_equal(create(t, &f->op, "second@example.jp", "second pass 123", "二番目"), KR_OK);
    td_get_id(t, "account", id);
    assert_int_equal(td_get_u64(t, "version"), 1);
    /* No e-mail: tenant 0 has no account_info to send. */
    assert_int_equal(count_events(t, KR_EV_OUTBOX_QUEUED, 0), outbox);
    struct va_account o = row(t, id);
    assert_int_equal(o.role, KR_ROLE_OPERATOR);
    assert_int_equal(o.perms, 0);
    /* The new operator logs in over the operator endpoint. */
    struct kr_caller second = op_session(t, "second@example.jp", "second pass 123");
    assert_memory_equal(second.account, id, 16);

    /* Both are listed, with e-mail, display name, version and lock state. */
    const msgpack_object *e = list_entry(t, &second, id);
    assert_int_equal(e->via.map.size, 8); /* and locked_until_jst */
    assert_true(str_is(td_map_get(e, "email"), "second@example.jp"));
    assert_true(str_is(td_map_get(e, "display_name"), "二番目"));
    assert_int_equal(td_map_get(e, "version")->via.u64, 1);
    assert_false(td_map_get(e, "locked")->via.boolean);
    assert_int_equal(td_map_get(e, "lock_reason")->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(td_map_get(e, "locked_until")->type, MSGPACK_OBJECT_NIL);
    assert_null(td_map_get(e, "role"));
    e = list_entry(t, &f->op, f->first);
    assert_int_equal(td_map_get(e, "display_name")->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(td_get(t, "operators")->via.array.size, 2);
    assert_int_equal(td_get(t, "cursor")->type, MSGPACK_OBJECT_NIL);
    /* A page of one, then the next from its cursor. */
    kr_set_u64(td_args(t), KR_FLD_LIMIT, 1);
    assert_int_equal(td_exec(t, &f->op, KR_OP_OPERATORS_LIST), KR_OK);
    assert_int_equal(td_get(t, "operators")->via.array.size, 1);
    const msgpack_object *c = td_get(t, "cursor");
    assert_int_equal(c->type, MSGPACK_OBJECT_BIN);
    uint8_t cur[16];
    memcpy(cur, c->via.bin.ptr, 16);
    kr_set_bytes(td_args(t), KR_FLD_CURSOR, cur, 16);
    assert_int_equal(td_exec(t, &f->op, KR_OP_OPERATORS_LIST), KR_OK);
    assert_int_equal(td_get(t, "operators")->via.array.size, 1);
    assert_int_equal(td_get(t, "cursor")->type, MSGPACK_OBJECT_NIL);
    /* The tenant's accounts are not operators. */
    td_args(t);
    assert_int_equal(td_exec(t, &f->master, KR_OP_USERS_LIST), KR_OK);
    assert_int_equal(td_get(t, "users")->via.array.size, 1);
}

static void test_create_rules(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint64_t size = jrn_size(t->d->j);
    assert_int_equal(create(t, &f->op, "x@example.jp", "password", NULL), KR_EINVAL);
    assert_string_equal(t->diag.field, "password");
    assert_int_equal(create(t, &f->op, "x@example.jp", "short", NULL), KR_EINVAL);
    assert_string_equal(t->diag.field, "password");
    assert_int_equal(create(t, &f->op, "longname@example.jp", "LONGNAME@example.jp", NULL),
                     KR_EINVAL);
    /* An operator's address is taken, whatever its case. */
    assert_int_equal(create(t, &f->op, "FIRST@example.jp", "another pass 1", NULL), KR_ECONFLICT);
    assert_string_equal(t->diag.field, "email");
    assert_int_equal(create(t, &f->op, "not an address", "another pass 1", NULL), KR_EINVAL);
    assert_true(td_unchanged_since(t, size));
    /* A tenant's master's address is free for an operator (another tenant). */
    assert_int_equal(create(t, &f->op, "owner@example.jp", "another pass 1", NULL), KR_OK);
}

/* Only operators over the operator endpoint; a master is refused whatever
 * the endpoint, and every refusal is recorded. */
static void test_who_may_call(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    static const int ops[] = {KR_OP_OPERATORS_CREATE, KR_OP_OPERATORS_LIST,
                              KR_OP_OPERATORS_DELETE, KR_OP_OPERATORS_LOCK,
                              KR_OP_OPERATORS_UNLOCK, KR_OP_OPERATORS_PASSWORD};
    struct kr_caller master_op = f->master;
    master_op.operator_endpoint = true;
    struct kr_caller op_client = f->op;
    op_client.operator_endpoint = false;
    struct kr_caller anon = td_anonymous();
    anon.operator_endpoint = true;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        uint64_t size = jrn_size(t->d->j);
        td_args(t); /* the access check comes before the arguments' */
        assert_int_equal(td_exec(t, &f->master, ops[i]), KR_EFORBIDDEN);
        assert_int_equal(td_exec(t, &master_op, ops[i]), KR_EFORBIDDEN);
        assert_int_equal(td_exec(t, &op_client, ops[i]), KR_EFORBIDDEN);
        assert_int_equal(td_exec(t, &anon, ops[i]), KR_EAUTH);
        assert_int_equal(jrn_size(t->d->j), size + 3); /* three access.denied */
        assert_true(td_unchanged_since(t, size));
    }
}

/* ---- delete, lock, unlock ---- */

static void test_refusals(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t id[16], nobody[16];
    mkop(t, &f->op, "second@example.jp", id);
    memset(nobody, 0x5a, sizeof nobody);
    uint64_t size = jrn_size(t->d->j);
    /* Not the caller's own account. */
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_DELETE, f->first, 1), KR_EFORBIDDEN);
    assert_string_equal(t->diag.field, "account");
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_LOCK, f->first, 1), KR_EFORBIDDEN);
    assert_string_equal(t->diag.field, "account");
    assert_int_equal(count_events(t, KR_EV_ACCESS_DENIED, 0), 2);
    /* An unknown account, and a tenant's (its master's): not found. */
    static const int ops[] = {KR_OP_OPERATORS_DELETE, KR_OP_OPERATORS_LOCK, KR_OP_OPERATORS_UNLOCK};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        assert_int_equal(on_account(t, &f->op, ops[i], nobody, 1), KR_ENOTFOUND);
        assert_string_equal(t->diag.field, "account");
        assert_int_equal(on_account(t, &f->op, ops[i], f->master.account, 1), KR_ENOTFOUND);
        assert_string_equal(t->diag.field, "account");
        /* A wrong version. */
        assert_int_equal(on_account(t, &f->op, ops[i], id, 2), KR_ECONFLICT);
        assert_string_equal(t->diag.field, "version");
    }
    assert_true(td_unchanged_since(t, size));
    /* The master's users.* never reach an operator either. */
    assert_int_equal(on_account(t, &f->master, KR_OP_USERS_LOCK, id, 1), KR_ENOTFOUND);
    assert_int_equal(on_account(t, &f->master, KR_OP_USERS_DELETE, id, 1), KR_ENOTFOUND);
    assert_int_equal(row(t, id).version, 1);
}

static void test_lock_unlock_delete(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t id[16], tok[32];
    struct kr_caller who;
    mkop(t, &f->op, "second@example.jp", id);
    assert_int_equal(op_login(t, "second@example.jp", "other pass 123", tok), KR_OK);
    assert_int_equal(resolve(t->d, tok, &who), KR_OK);

    /* lock: the session ends, login says locked, for good (no timeout). */
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_LOCK, id, 1), KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 2);
    assert_int_equal(count_events(t, KR_EV_SESSION_CLOSED, 0), 1);
    assert_int_equal(resolve(t->d, tok, &who), KR_EAUTH);
    struct va_account o = row(t, id);
    assert_true(o.locked);
    assert_int_equal(o.lock_reason, KR_LOCK_REASON_OPERATOR);
    t->now += 30 * DAY_NS;
    assert_true(va_account_locked(&o, t->now));
    assert_int_equal(op_login(t, "second@example.jp", "other pass 123", NULL), KR_ELOCKED);
    const msgpack_object *e = list_entry(t, &f->op, id);
    assert_true(td_map_get(e, "locked")->via.boolean);
    assert_true(str_is(td_map_get(e, "lock_reason"), "operator"));
    assert_int_equal(td_map_get(e, "locked_until")->type, MSGPACK_OBJECT_NIL);
    /* Locking again changes nothing. */
    uint64_t size = jrn_size(t->d->j);
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_LOCK, id, 2), KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 2);
    assert_true(td_unchanged_since(t, size));

    /* unlock: login works again; unlocking again changes nothing. */
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_UNLOCK, id, 2), KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 3);
    assert_false(row(t, id).locked);
    assert_int_equal(op_login(t, "second@example.jp", "other pass 123", tok), KR_OK);
    size = jrn_size(t->d->j);
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_UNLOCK, id, 3), KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 3);
    assert_true(td_unchanged_since(t, size));

    /* delete: its sessions end, it cannot log in, its address is free. */
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_DELETE, id, 3), KR_OK);
    assert_int_equal(count_events(t, KR_EV_SESSION_CLOSED, 0), 2);
    assert_int_equal(resolve(t->d, tok, &who), KR_EAUTH);
    assert_int_equal(op_login(t, "second@example.jp", "other pass 123", NULL), KR_EAUTH);
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_DELETE, id, 4), KR_ENOTFOUND);
    mkop(t, &f->op, "second@example.jp", id);
}

/* An operator locked out by failed logins is unlocked by another. */
static void test_unlock_after_failures(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t id[16];
    mkop(t, &f->op, "second@example.jp", id);
    for (unsigned i = 0; i < KR_LOGIN_FAILURES_MAX; i++)
        assert_int_equal(op_login(t, "second@example.jp", "not the pass", NULL), KR_EAUTH);
    assert_int_equal(op_login(t, "second@example.jp", "other pass 123", NULL), KR_ELOCKED);
    struct va_account o = row(t, id);
    assert_int_equal(o.lock_reason, KR_LOCK_REASON_FAILURES);
    /* A lock by an operator replaces the lock for failures: no timeout. */
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_LOCK, id, o.version), KR_OK);
    assert_int_equal(row(t, id).lock_reason, KR_LOCK_REASON_OPERATOR);
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_UNLOCK, id, o.version + 1), KR_OK);
    o = row(t, id);
    assert_false(o.locked);
    assert_int_equal(o.failures, 0);
    assert_int_equal(op_login(t, "second@example.jp", "other pass 123", NULL), KR_OK);
}

/* ---- operators.password ---- */

static void test_password_change(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t tok[32];
    struct kr_caller who, other;
    assert_int_equal(op_login(t, "first@example.jp", "first pass 123", tok), KR_OK);
    assert_int_equal(resolve(t->d, tok, &other), KR_OK);
    uint64_t size = jrn_size(t->d->j);
    assert_int_equal(change_pw(t, &f->op, "first pass 123", "password"), KR_EINVAL);
    assert_string_equal(t->diag.field, "new_password");
    assert_int_equal(change_pw(t, &f->op, "first pass 123", "first@example.jp"), KR_EINVAL);
    assert_true(td_unchanged_since(t, size));
    /* Every session of the account ends, the caller's too. */
    assert_int_equal(change_pw(t, &f->op, "first pass 123", "first pass 456"), KR_OK);
    assert_int_equal(row(t, f->first).pw_ev, KR_EV_ACCOUNT_PASSWORD_CHANGED);
    assert_int_equal(resolve(t->d, tok, &who), KR_EAUTH);
    assert_int_equal(count_events(t, KR_EV_SESSION_CLOSED, 0), 2);
    assert_int_equal(op_login(t, "first@example.jp", "first pass 123", NULL), KR_EAUTH);
    (void)op_session(t, "first@example.jp", "first pass 456");
}

/* A wrong current password counts toward the lockout as a wrong login:
 * limit - 1 wrong ones leave the account open, the one at the limit locks
 * it and ends its sessions. */
static void test_password_lockout(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t tok[32];
    struct kr_caller who;
    assert_int_equal(op_login(t, "first@example.jp", "first pass 123", tok), KR_OK);
    for (unsigned i = 0; i + 1 < KR_LOGIN_FAILURES_MAX; i++) {
        assert_int_equal(change_pw(t, &f->op, "wrong pass 1", "first pass 456"), KR_EAUTH);
        assert_string_equal(t->diag.field, "password");
    }
    assert_int_equal(row(t, f->first).failures, KR_LOGIN_FAILURES_MAX - 1);
    assert_false(row(t, f->first).locked);
    assert_int_equal(count_events(t, KR_EV_ACCOUNT_LOGIN_FAILED, 0), KR_LOGIN_FAILURES_MAX - 1);
    assert_int_equal(change_pw(t, &f->op, "wrong pass 1", "first pass 456"), KR_ELOCKED);
    struct va_account o = row(t, f->first);
    assert_true(o.locked);
    assert_int_equal(o.lock_reason, KR_LOCK_REASON_FAILURES);
    assert_int_equal(resolve(t->d, tok, &who), KR_EAUTH);
    assert_int_equal(op_login(t, "first@example.jp", "first pass 123", NULL), KR_ELOCKED);
    /* Locked: even the right one is refused. */
    assert_int_equal(change_pw(t, &f->op, "first pass 123", "first pass 456"), KR_ELOCKED);
}

/* ---- Replay ---- */

static void view_digests(struct td *t, uint8_t out[VIEW__COUNT][32])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (int i = 0; i < VIEW__COUNT; i++)
        assert_int_equal(views_digest(&t->d->views, txn, (enum kr_view)i, out[i], NULL), KR_OK);
    mdb_txn_abort(txn);
}

/* Rebuilding the views from the journal after every operators.* op gives
 * the same views, the lock reason operator included. */
static void test_replay_same_views(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t a[16], b[16];
    mkop(t, &f->op, "a@example.jp", a);
    mkop(t, &f->op, "b@example.jp", b);
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_LOCK, a, 1), KR_OK);
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_LOCK, b, 1), KR_OK);
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_UNLOCK, b, 2), KR_OK);
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_DELETE, b, 3), KR_OK);
    assert_int_equal(change_pw(t, &f->op, "first pass 123", "first pass 456"), KR_OK);
    static uint8_t live[VIEW__COUNT][32], rebuilt[VIEW__COUNT][32];
    view_digests(t, live);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    view_digests(t, rebuilt);
    assert_memory_equal(live, rebuilt, sizeof live);
    assert_int_equal(row(t, a).lock_reason, KR_LOCK_REASON_OPERATOR);
}

/* ---- On a tenant shard that imports the platform ---- */

static void platform_url(void *arg, char *out, size_t cap)
{
    (void)arg;
    snprintf(out, cap, "tcp://platform.example:7450");
}

static void test_importing_shard(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t id[16];
    mkop(t, &f->op, "second@example.jp", id);
    dom_set_importing(t->d, platform_url, NULL);
    uint64_t size = jrn_size(t->d->j);
    const char *url = "tcp://platform.example:7450";
    assert_int_equal(create(t, &f->op, "third@example.jp", "third pass 123", NULL), KR_EWRONGSHARD);
    assert_non_null(strstr(t->diag.why, "operator accounts"));
    assert_non_null(strstr(t->diag.why, url));
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_DELETE, id, 1), KR_EWRONGSHARD);
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_LOCK, id, 1), KR_EWRONGSHARD);
    assert_int_equal(on_account(t, &f->op, KR_OP_OPERATORS_UNLOCK, id, 1), KR_EWRONGSHARD);
    assert_int_equal(change_pw(t, &f->op, "first pass 123", "first pass 456"), KR_EWRONGSHARD);
    assert_true(td_unchanged_since(t, size));
    /* The list stays a read here. */
    (void)list_entry(t, &f->op, id);
    assert_true(dom_op_is_platform(KR_OP_OPERATORS_PASSWORD));
    assert_false(dom_op_is_platform(KR_OP_OPERATORS_LIST));
    assert_int_equal(dom_op_route(KR_OP_OPERATORS_LIST), DOM_ROUTE_READ);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_who_may_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_unlock_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlock_after_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_lockout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_same_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_importing_shard, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
