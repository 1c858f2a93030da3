/*
 * domain_test.c: the domain's own rules — every op has a handler and every
 * event a view module; access checks by role, permission and endpoint, with
 * refusals recorded; arguments built in C checked like the wire's; views
 * rebuilt from the journal equal the live ones; dom_exec_async's outcomes by
 * route.
 */
#include "retention.h"
#include "test_domain.h"
#include "test_util.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

static void test_tables_complete(void **state)
{
    (void)state;
    for (int op = 0; op < KR_OP__COUNT; op++)
        if (!dom_has_handler(op))
            fail_msg("op %s has no handler", kr_ops[op].name);
    for (int ev = 0; ev < KR_EV__COUNT; ev++)
        if (!views_event_has_area(ev))
            fail_msg("event %s has no view module", kr_events[ev].name);
    for (int v = 0; v < VIEW__COUNT; v++)
        assert_true(strncmp(views_name((enum kr_view)v), "v.", 2) == 0);
}

/* The newest record's type, and its tenant. */
static int newest_type(struct td *t, uint64_t *tenant)
{
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_read(t->d->j, jrn_size(t->d->j), &b), KR_OK);
    int ev = kr_event_lookup(b.rec.type, b.rec.type_len);
    *tenant = b.rec.tenant;
    jrn_recbuf_fini(&b);
    return ev;
}

static void test_access(void **state)
{
    (void)state;
    struct td *t = td_new(1);
    struct kr_caller master, anon = td_anonymous();
    uint64_t tenant = td_signup(t, "owner@example.jp", "correct horse 1", &master, NULL);

    /* Anonymous callers need a session for everything but sign-up and login. */
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "vip");
    uint64_t size = jrn_size(t->d->j);
    assert_int_equal(td_exec(t, &anon, KR_OP_TAGS_CREATE), KR_EAUTH);
    assert_int_equal(jrn_size(t->d->j), size); /* nobody to record */

    /* A user without tags.write is refused, and the refusal is recorded. */
    struct kr_caller user = master;
    user.role = KR_ROLE_USER;
    user.perms = 1ull << KR_PERMISSION_CONTACTS_READ;
    assert_int_equal(td_exec(t, &user, KR_OP_TAGS_CREATE), KR_EFORBIDDEN);
    assert_string_equal(t->diag.field, "op");
    assert_int_equal(jrn_size(t->d->j), size + 1);
    uint64_t rt;
    assert_int_equal(newest_type(t, &rt), KR_EV_ACCESS_DENIED);
    assert_int_equal(rt, tenant);
    assert_true(td_unchanged_since(t, size));

    /* A session calling an op for callers without one is told to send no
     * token. */
    kr_set_str(td_args(t), KR_FLD_EMAIL, "new@example.jp");
    assert_int_equal(td_exec(t, &master, KR_OP_SIGNUP_APPLY), KR_EFORBIDDEN);
    assert_string_equal(t->diag.field, "token");
    assert_string_equal(t->diag.why,
                        "signup.apply is for callers without a session: send no token");
    size = jrn_size(t->d->j);

    /* Operator ops: not for tenants, and not off the operator endpoint. */
    struct kr_caller op = td_operator();
    kr_set_u64(td_args(t), KR_FLD_TENANT, tenant);
    assert_int_equal(td_exec(t, &master, KR_OP_TENANTS_CANCEL), KR_EFORBIDDEN);
    op.operator_endpoint = false;
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_CANCEL), KR_EFORBIDDEN);
    assert_true(td_unchanged_since(t, size));

    /* The master has every permission. */
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "vip");
    assert_int_equal(td_exec(t, &master, KR_OP_TAGS_CREATE), KR_OK);
    td_free(t);
}

static void test_args_built_in_c(void **state)
{
    (void)state;
    struct td *t = td_new(2);
    struct kr_caller master;
    td_signup(t, "owner@example.jp", "correct horse 1", &master, NULL);
    uint64_t size = jrn_size(t->d->j);

    /* A field the op does not take. */
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_TAG_NAME, "vip");
    kr_set_u64(a, KR_FLD_TENANT, 7);
    assert_int_equal(td_exec(t, &master, KR_OP_TAGS_CREATE), KR_EINVAL);
    assert_string_equal(t->diag.field, "tenant");
    assert_string_equal(t->diag.why, "unknown key");
    /* A required one missing. */
    td_args(t);
    assert_int_equal(td_exec(t, &master, KR_OP_TAGS_CREATE), KR_EINVAL);
    assert_string_equal(t->diag.field, "tag_name");
    /* A value out of its limits. */
    char long_name[80];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, long_name);
    assert_int_equal(td_exec(t, &master, KR_OP_TAGS_CREATE), KR_ETOOLARGE);
    assert_string_equal(t->diag.field, "tag_name");
    assert_int_equal(jrn_size(t->d->j), size);
    td_free(t);
}

static void primary_url(void *arg, char *out, size_t cap)
{
    snprintf(out, cap, "%s", (const char *)arg);
}

/* A follower's domain refuses every op that would append (its schema lists
 * events) with KR_ENOTPRIMARY naming the primary, before anything runs, and
 * runs every read as before. */
static void test_follower_refuses_appends(void **state)
{
    (void)state;
    struct td *t = td_new(3);
    struct kr_caller master;
    td_signup(t, "owner@example.jp", "correct horse 1", &master, NULL);
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "vip");
    assert_int_equal(td_exec(t, &master, KR_OP_TAGS_CREATE), KR_OK);
    dom_set_follower(t->d, primary_url, "tcp://primary.example:7450");
    uint64_t size = jrn_size(t->d->j);
    for (int op = 0; op < KR_OP__COUNT; op++) {
        if (kr_ops[op].nevents == 0)
            continue;
        td_args(t);
        struct kr_caller anon = td_anonymous();
        assert_int_equal(td_exec(t, op % 2 ? &master : &anon, op), KR_ENOTPRIMARY);
        assert_non_null(strstr(t->diag.why, "tcp://primary.example:7450"));
    }
    td_args(t);
    assert_int_equal(td_exec(t, &master, KR_OP_TAGS_LIST), KR_OK);
    assert_int_equal(jrn_size(t->d->j), size);
    dom_set_follower(t->d, NULL, NULL); /* the primary not known */
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "other");
    assert_int_equal(td_exec(t, &master, KR_OP_TAGS_CREATE), KR_ENOTPRIMARY);
    assert_non_null(strstr(t->diag.why, "not known"));
    assert_int_equal(dom_api_error(KR_ENOTPRIMARY), KR_ERR_NOT_PRIMARY);
    td_free(t);
}

/* Digests of every view, live. */
static void digests(struct td *t, uint8_t out[VIEW__COUNT][32])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (int v = 0; v < VIEW__COUNT; v++)
        assert_int_equal(views_digest(&t->d->views, txn, (enum kr_view)v, out[v], NULL), KR_OK);
    mdb_txn_abort(txn);
}

static void test_rebuild_equals_live(void **state)
{
    (void)state;
    struct td *t = td_new(3);
    struct kr_caller master, op = td_operator();
    td_signup(t, "a@example.jp", "correct horse 1", &master, NULL);
    td_signup(t, "b@example.jp", "correct horse 2", NULL, NULL);
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "vip");
    assert_int_equal(td_exec(t, &master, KR_OP_TAGS_CREATE), KR_OK);
    uint8_t tag[16], contact[16];
    td_get_id(t, "tag", tag);
    kr_set_str(td_args(t), KR_FLD_NAME, "山田 太郎");
    assert_int_equal(td_exec(t, &master, KR_OP_CONTACTS_REGISTER), KR_OK);
    td_get_id(t, "contact", contact);
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, contact, 16);
    kr_set_bytes(a, KR_FLD_TAG, tag, 16);
    assert_int_equal(td_exec(t, &master, KR_OP_CONTACTS_TAG), KR_OK);
    a = td_args(t);
    kr_set_u64(a, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_MAINTENANCE);
    kr_set_str(a, KR_FLD_TITLE, "maintenance");
    kr_set_str(a, KR_FLD_BODY, "Sunday 02:00-04:00 JST");
    kr_set_u64(a, KR_FLD_EFFECTIVE, 1775001600000000000ull);
    kr_set_u64(a, KR_FLD_AUDIENCE, KR_AUDIENCE_ALL);
    assert_int_equal(td_exec(t, &op, KR_OP_NOTICES_PUBLISH), KR_OK);

    uint8_t live[VIEW__COUNT][32], rebuilt[VIEW__COUNT][32];
    digests(t, live);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    digests(t, rebuilt);
    for (int v = 0; v < VIEW__COUNT; v++)
        if (memcmp(live[v], rebuilt[v], 32) != 0)
            fail_msg("view %s differs after rebuild", views_name((enum kr_view)v));

    /* Views that lag the journal catch up when it opens: drop them, mark
     * them empty, and reopen. */
    td_reopen(t);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, 0, &txn), 0);
    const struct jrn_views *h = views_hooks(&t->d->views);
    assert_int_equal(h->drop(h->ctx, txn), KR_OK);
    assert_int_equal(h->batch_end(h->ctx, txn, 0), KR_OK);
    assert_int_equal(mdb_txn_commit(txn), 0);
    td_reopen(t);
    digests(t, rebuilt);
    for (int v = 0; v < VIEW__COUNT; v++)
        if (memcmp(live[v], rebuilt[v], 32) != 0)
            fail_msg("view %s differs after catching up", views_name((enum kr_view)v));
    td_free(t);
}

/* Sets the views' stored format (v.meta "format") in the open journal. */
static void set_views_format(struct td *t, uint32_t f)
{
    MDB_txn *txn;
    MDB_dbi meta;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "v.meta", 0, &meta), 0);
    uint8_t b[4] = {(uint8_t)(f >> 24), (uint8_t)(f >> 16), (uint8_t)(f >> 8), (uint8_t)f};
    MDB_val k = {6, (void *)"format"}, v = {4, b};
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

/* Views of an older layout are rebuilt when the journal next opens for
 * writing (an upgrade needs no `kiroku replay`); views of a newer layout
 * are refused. */
static void test_views_upgraded(void **state)
{
    (void)state;
    struct td *t = td_new(5);
    struct kr_caller master;
    td_signup(t, "a@example.jp", "correct horse 1", &master, NULL);
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "vip");
    assert_int_equal(td_exec(t, &master, KR_OP_TAGS_CREATE), KR_OK);
    uint8_t live[VIEW__COUNT][32], after[VIEW__COUNT][32];
    digests(t, live);
    /* An old layout: format 1, and a view emptied as a new view would be. */
    set_views_format(t, 1);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, 0, &txn), 0);
    assert_int_equal(mdb_drop(txn, t->d->views.db[VIEW_TAGS], 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    td_reopen(t);
    digests(t, after);
    for (int v = 0; v < VIEW__COUNT; v++)
        if (memcmp(live[v], after[v], 32) != 0)
            fail_msg("view %s differs after the upgrade", views_name((enum kr_view)v));
    /* A newer layout than this kiroku knows: refused, nothing changed. */
    set_views_format(t, 99);
    dom_close(t->d);
    t->d = NULL;
    struct kr_domain_options o = {.dir = t->dir};
    struct kr_domain *d = NULL;
    assert_int_equal(dom_open(&o, &d), KR_EVERSION);
    assert_null(d);
    td_free(t);
}

static void test_erase_tenant(void **state)
{
    (void)state;
    struct td *t = td_new(4);
    struct kr_caller a, b, op = td_operator();
    uint64_t ta = td_signup(t, "a@example.jp", "correct horse 1", &a, NULL);
    td_signup(t, "b@example.jp", "correct horse 2", &b, NULL);
    kr_set_str(td_args(t), KR_FLD_NAME, "Erase Me");
    assert_int_equal(td_exec(t, &a, KR_OP_CONTACTS_REGISTER), KR_OK);
    kr_set_str(td_args(t), KR_FLD_NAME, "Keep Me");
    assert_int_equal(td_exec(t, &b, KR_OP_CONTACTS_REGISTER), KR_OK);

    /* Only a cancelled tenant is erased. */
    assert_int_equal(ret_erase_tenant(t->d, ta, NULL), KR_ECONFLICT);
    assert_int_equal(ret_erase_tenant(t->d, 123456789, NULL), KR_ENOTFOUND);
    kr_set_u64(td_args(t), KR_FLD_TENANT, ta);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_CANCEL), KR_OK);
    assert_int_equal(ret_erase_tenant(t->d, ta, NULL), KR_OK);
    uint64_t size = jrn_size(t->d->j);
    assert_int_equal(ret_erase_tenant(t->d, ta, NULL), KR_OK); /* done: nothing changes */
    assert_true(jrn_size(t->d->j) == size);

    /* Its key is gone and no view row of it is left. */
    struct kr_data_key key;
    assert_int_equal(ks_get(t->d->ks, ta, &key), KR_ENOTFOUND);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)(ta >> (56 - 8 * i));
    for (int v = 0; v < VIEW__COUNT; v++) {
        if (v == VIEW_TENANTS)
            continue; /* keeps a bare "erased" row */
        MDB_cursor *c;
        MDB_val k, val;
        assert_int_equal(mdb_cursor_open(txn, t->d->views.db[v], &c), 0);
        for (int rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &val, MDB_NEXT))
            if (v != VIEW_META && k.mv_size >= 8 && memcmp(k.mv_data, prefix, 8) == 0)
                fail_msg("view %s keeps a row of the erased tenant", views_name((enum kr_view)v));
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
    /* The other tenant is untouched; the erased one's master sees nothing. */
    td_args(t);
    assert_int_equal(td_exec(t, &b, KR_OP_CONTACTS_LIST), KR_OK);
    assert_int_equal(td_get(t, "contacts")->via.array.size, 1);
    td_args(t);
    assert_int_equal(td_exec(t, &a, KR_OP_CONTACTS_LIST), KR_OK);
    assert_int_equal(td_get(t, "contacts")->via.array.size, 0);

    /* Rebuilt views equal the live ones after an erasure too. */
    uint8_t live[VIEW__COUNT][32], rebuilt[VIEW__COUNT][32];
    digests(t, live);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    digests(t, rebuilt);
    for (int v = 0; v < VIEW__COUNT; v++)
        if (memcmp(live[v], rebuilt[v], 32) != 0)
            fail_msg("view %s differs after rebuild", views_name((enum kr_view)v));
    td_free(t);
}

/* Views rebuild with no secret key at hand: the journal opened for the views
 * only (no_appends) loads no signing key, makes no keystore and refuses
 * appends. */
static void test_rebuild_without_keys(void **state)
{
    (void)state;
    struct td *t = td_new(5);
    struct kr_caller master;
    td_signup(t, "a@example.jp", "correct horse 1", &master, NULL);
    kr_set_str(td_args(t), KR_FLD_NAME, "Taro");
    assert_int_equal(td_exec(t, &master, KR_OP_CONTACTS_REGISTER), KR_OK);
    uint8_t live[VIEW__COUNT][32], rebuilt[VIEW__COUNT][32];
    digests(t, live);
    dom_close(t->d);
    t->d = NULL;

    char keys[600], moved[620];
    snprintf(keys, sizeof keys, "%s/keys", t->dir);
    snprintf(moved, sizeof moved, "%s/keys.away", t->dir);
    assert_int_equal(rename(keys, moved), 0);
    struct kr_domain_options o = {.dir = t->dir, .no_catch_up = true, .no_appends = true};
    struct kr_domain *d;
    assert_int_equal(dom_open(&o, &d), KR_OK);
    assert_int_equal(jrn_views_rebuild(d->j, NULL, NULL), KR_OK);
    struct kr_domain *keep = t->d;
    t->d = d;
    digests(t, rebuilt);
    for (int v = 0; v < VIEW__COUNT; v++)
        if (memcmp(live[v], rebuilt[v], 32) != 0)
            fail_msg("view %s differs after a keyless rebuild", views_name((enum kr_view)v));
    kr_set_str(td_args(t), KR_FLD_NAME, "Hanako");
    /* The tenant's key is out of reach: refused before anything is appended. */
    assert_int_equal(td_exec(t, &master, KR_OP_CONTACTS_REGISTER), KR_EKEY);
    struct stat st;
    assert_int_equal(stat(keys, &st), -1); /* nothing was made */
    dom_close(d);
    t->d = keep;
    assert_int_equal(rename(moved, keys), 0);
    td_reopen(t);
    td_free(t);
}
/* One dom_exec_async completion. */
struct async_done {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned calls;
    kr_err err;
};

static void on_done(void *arg, kr_err err)
{
    struct async_done *a = arg;
    pthread_mutex_lock(&a->mu);
    a->calls++;
    a->err = err;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static bool done_called(void *arg)
{
    struct async_done *a = arg;
    pthread_mutex_lock(&a->mu);
    bool called = a->calls > 0;
    pthread_mutex_unlock(&a->mu);
    return called;
}

/* dom_exec_async: a read is done at once, an async write pending until its
 * append completes once (its result decided before), a refusal that must be
 * recorded is left to dom_exec, and an op that may wait is refused. */
static void test_exec_async(void **state)
{
    (void)state;
    struct td *t = td_new(2);
    struct kr_caller master;
    td_signup(t, "owner@example.jp", "correct horse 1", &master, NULL);
    struct async_done a = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, KR_OK};
    enum dom_outcome how;
    struct kr_wbuf out;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);

    assert_int_equal(dom_op_route(KR_OP_TAGS_LIST), DOM_ROUTE_READ);
    assert_int_equal(
        dom_exec_async(t->d, &master, KR_OP_TAGS_LIST, td_args(t), &out, NULL, on_done, &a, &how),
        KR_OK);
    assert_int_equal(how, DOM_DONE);
    assert_int_equal(a.calls, 0);

    assert_int_equal(dom_op_route(KR_OP_TAGS_CREATE), DOM_ROUTE_ASYNC);
    uint64_t size = jrn_size(t->d->j);
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "vip");
    assert_int_equal(
        dom_exec_async(t->d, &master, KR_OP_TAGS_CREATE, t->args, &out, NULL, on_done, &a, &how),
        KR_OK);
    assert_int_equal(how, DOM_PENDING);
    assert_true(out.size > 0); /* the result (tag id, version 1) is written at once */
    assert_true(kr_test_wait_for(done_called, &a, KR_TEST_WAIT_MS, "the append's completion"));
    assert_int_equal(a.err, KR_OK);
    assert_int_equal(jrn_size(t->d->j), size + 1);
    dom_wait_plain(t->d);
    assert_int_equal(a.calls, 1);

    /* A user without tags.write: the refusal is recorded by dom_exec. */
    struct kr_caller user = master;
    user.role = KR_ROLE_USER;
    user.perms = 1ull << KR_PERMISSION_CONTACTS_READ;
    size = jrn_size(t->d->j);
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "other");
    assert_int_equal(
        dom_exec_async(t->d, &user, KR_OP_TAGS_CREATE, t->args, &out, NULL, on_done, &a, &how),
        KR_OK);
    assert_int_equal(how, DOM_RUN_SYNC);
    assert_int_equal(jrn_size(t->d->j), size);

    /* Argon2id: never here. */
    assert_int_equal(dom_op_route(KR_OP_AUTH_LOGIN), DOM_ROUTE_POOL);
    assert_int_equal(
        dom_exec_async(t->d, &master, KR_OP_AUTH_LOGIN, t->args, &out, NULL, on_done, &a, &how),
        KR_EINVAL);
    assert_int_equal(a.calls, 1);
    kr_wbuf_free(&out);
    td_free(t);
}

/* kr_domain_options.two_flushes reaches the journal (serve's setting
 * journal.two_flushes): with one flush per commit, a lone write's meta page is
 * flushed by mdb_env_sync; with two, LMDB's commit flushes it and the
 * writer never calls it. */
static void test_two_flushes(void **state)
{
    (void)state;
    for (int two = 0; two < 2; two++) {
        struct td *t = td_new(40 + (uint64_t)two);
        dom_close(t->d);
        struct kr_domain_options o = {.dir = t->dir,
                                      .clock = &t->clock,
                                      .rng = &t->rng,
                                      .two_flushes = two,
                                      .pwhash_ops = 1,
                                      .pwhash_mem = 8192};
        assert_int_equal(dom_open(&o, &t->d), KR_OK);
        struct jrn_stats s0, s1;
        jrn_get_stats(t->d->j, &s0);
        struct kr_caller master;
        char code[40];
        td_signup(t, "two@example.jp", "correct horse battery", &master, code);
        jrn_get_stats(t->d->j, &s1);
        assert_true(s1.events > s0.events);
        if (two)
            assert_int_equal(s1.meta_syncs, s0.meta_syncs);
        else
            assert_true(s1.meta_syncs > s0.meta_syncs);
        td_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_complete), cmocka_unit_test(test_access),
        cmocka_unit_test(test_args_built_in_c), cmocka_unit_test(test_rebuild_equals_live),
        cmocka_unit_test(test_views_upgraded),  cmocka_unit_test(test_two_flushes),
        cmocka_unit_test(test_erase_tenant),    cmocka_unit_test(test_rebuild_without_keys),
        cmocka_unit_test(test_exec_async),      cmocka_unit_test(test_follower_refuses_appends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
