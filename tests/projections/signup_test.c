/*
 * signup_test.c: the sign-up flow and the operators' tenant ops
 * (cmd_signup.c) over the tenant and sign-up views (v_tenants.c): the whole
 * flow, the auth code's expiry and tries, password rules, argument and role
 * rejections, tenants.list paging, tenants.cancel, replay determinism, and
 * personal data never stored in clear.
 */
#include "accounts.h"
#include "retention.h"
#include "test_domain.h"
#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MIN_NS (60ull * 1000000000ull)

struct fx {
    struct td *t;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->t = td_new(7);
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

/* The newest outbox.queued record's decoded payload (personal fields opened)
 * after journal size `from`, read straight from the journal. */
static void last_outbox(struct td *t, uint64_t from, int template_id, struct kr_payload *p,
                        uint64_t *tenant)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = from + 1};
    struct jrn_cursor *cur;
    struct jrn_record r;
    struct kr_payload *tmp = kr_payload_new();
    bool found = false;
    assert_non_null(tmp);
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &cur), KR_OK);
    while (jrn_cursor_next(cur, &r) == KR_OK) {
        if (kr_event_lookup(r.type, r.type_len) != KR_EV_OUTBOX_QUEUED)
            continue;
        struct kr_data_key key;
        assert_int_equal(ks_get(t->d->ks, r.tenant, &key), KR_OK);
        assert_int_equal(kr_event_decode(KR_EV_OUTBOX_QUEUED, &r, &key, tmp, NULL), KR_OK);
        kr_data_key_wipe(&key);
        if ((int)tmp->v[KR_FLD_TEMPLATE].u != template_id)
            continue;
        /* Copy what the tests look at (tmp's values borrow the cursor's page). */
        kr_payload_reset(p, KR_EV_OUTBOX_QUEUED);
        kr_set_u64(p, KR_FLD_TEMPLATE, tmp->v[KR_FLD_TEMPLATE].u);
        assert_int_equal(
            kr_set_copy(p, KR_FLD_EMAIL, tmp->v[KR_FLD_EMAIL].p, tmp->v[KR_FLD_EMAIL].n), KR_OK);
        if (tmp->v[KR_FLD_AUTH_CODE].set)
            assert_int_equal(kr_set_copy(p, KR_FLD_AUTH_CODE, tmp->v[KR_FLD_AUTH_CODE].p,
                                         tmp->v[KR_FLD_AUTH_CODE].n),
                             KR_OK);
        if (tmp->v[KR_FLD_TENANT_CODE].set)
            assert_int_equal(kr_set_copy(p, KR_FLD_TENANT_CODE, tmp->v[KR_FLD_TENANT_CODE].p,
                                         tmp->v[KR_FLD_TENANT_CODE].n),
                             KR_OK);
        *tenant = r.tenant;
        found = true;
    }
    jrn_cursor_free(cur);
    kr_payload_free(tmp);
    assert_true(found);
}

/* Events of type ev in tenant since journal size `from`. */
static unsigned count_events(struct td *t, uint64_t from, int ev, uint64_t tenant)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = from + 1};
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

static void apply(struct td *t, const char *email, uint8_t app[16])
{
    struct kr_caller anon = td_anonymous();
    kr_set_str(td_args(t), KR_FLD_EMAIL, email);
    assert_int_equal(td_exec(t, &anon, KR_OP_SIGNUP_APPLY), KR_OK);
    td_get_id(t, "application", app);
}

/* Confirms payment and returns the code from the outbox, and the tenant. */
static uint64_t confirm(struct td *t, const uint8_t app[16], char code[32])
{
    struct kr_caller op = td_operator();
    struct kr_payload *p = kr_payload_new();
    uint64_t tenant = 0, before = jrn_size(t->d->j);
    assert_non_null(p);
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, "pay-42");
    assert_int_equal(td_exec(t, &op, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_OK);
    last_outbox(t, before, KR_TEMPLATE_AUTH_CODE, p, &tenant);
    const struct kr_value *v = &p->v[KR_FLD_AUTH_CODE];
    assert_true(v->set && v->n >= 6 && v->n <= 8);
    memcpy(code, v->p, v->n);
    code[v->n] = 0;
    kr_payload_free(p);
    return tenant;
}

static kr_err complete(struct td *t, const uint8_t app[16], const char *code, const char *pw,
                       const char *name)
{
    struct kr_caller anon = td_anonymous();
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_AUTH_CODE, code);
    kr_set_str(a, KR_FLD_PASSWORD, pw);
    kr_set_str(a, KR_FLD_TENANT_NAME, name);
    return td_exec(t, &anon, KR_OP_SIGNUP_COMPLETE);
}

static struct va_signup signup_row(struct td *t, uint64_t tenant, const uint8_t app[16])
{
    struct va_signup s;
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(va_signup_get(&t->d->views, txn, tenant, app, &s), KR_OK);
    mdb_txn_abort(txn);
    return s;
}

static struct va_tenant tenant_row(struct td *t, uint64_t tenant)
{
    struct va_tenant r;
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(va_tenant_get(&t->d->views, txn, tenant, &r), KR_OK);
    mdb_txn_abort(txn);
    return r;
}

static kr_err login(struct td *t, const char *code, const char *email, const char *pw,
                    uint8_t token[32])
{
    struct kr_caller anon = td_anonymous();
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

/* ---- The flow ---- */

static void test_flow_with_fixture(void **state)
{
    struct fx *f = *state;
    struct kr_caller master, who;
    char code[40];
    uint8_t token[32];
    uint64_t tenant = td_signup(f->t, "Owner@Example.jp", "correct horse 1", &master, code);
    assert_true(tenant >= 1 && tenant <= (uint64_t)INT64_MAX);
    assert_int_equal(strlen(code), 10);
    assert_int_equal(code[0], 't');
    struct va_tenant tr = tenant_row(f->t, tenant);
    assert_int_equal(tr.state, KR_TENANT_STATE_ACTIVE);
    assert_string_equal(tr.code, code);
    assert_int_equal(tr.version, 1);
    /* The master logs in with any case of its e-mail. */
    assert_int_equal(login(f->t, code, "owner@example.JP", "correct horse 1", token), KR_OK);
    assert_int_equal(dom_session_resolve(f->t->d, token, &who), KR_OK);
    assert_int_equal(who.tenant, tenant);
    assert_int_equal(who.role, KR_ROLE_MASTER);
    assert_memory_equal(who.account, master.account, 16);
    assert_true(who.has_session);
}

static void test_flow_direct(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t app[16], acct[16];
    char code[32];
    apply(t, "shop@example.jp", app);
    uint64_t before_pay = jrn_size(t->d->j);
    uint64_t tenant = confirm(t, app, code);
    /* Payment, code and e-mail in one append. */
    assert_int_equal(jrn_size(t->d->j), before_pay + 3);
    struct va_signup s = signup_row(t, tenant, app);
    assert_int_equal(s.state, VA_SIGNUP_PAID);
    assert_int_equal(s.tries_left, 5);
    assert_int_equal(s.version, 3);
    struct va_tenant tr = tenant_row(t, tenant);
    assert_int_equal(tr.state, KR_TENANT_STATE_APPLIED);
    assert_int_equal(tr.code_len, 0);

    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(complete(t, app, code, "a fine passphrase", "Shop"), KR_OK);
    td_get_id(t, "account", acct);
    const msgpack_object *tc = td_get(t, "tenant_code");
    assert_non_null(tc);
    char tcode[40];
    memcpy(tcode, tc->via.str.ptr, tc->via.str.size);
    tcode[tc->via.str.size] = 0;
    assert_int_equal(jrn_size(t->d->j), before + 4);
    assert_int_equal(count_events(t, before, KR_EV_SIGNUP_COMPLETED, tenant), 1);
    assert_int_equal(count_events(t, before, KR_EV_TENANT_PROVISIONED, tenant), 1);
    assert_int_equal(count_events(t, before, KR_EV_ACCOUNT_CREATED, tenant), 1);
    /* The account info mail names the tenant code. */
    struct kr_payload *p = kr_payload_new();
    uint64_t mt;
    last_outbox(t, before, KR_TEMPLATE_ACCOUNT_INFO, p, &mt);
    assert_int_equal(mt, tenant);
    assert_int_equal(p->v[KR_FLD_TENANT_CODE].n, strlen(tcode));
    assert_memory_equal(p->v[KR_FLD_TENANT_CODE].p, tcode, strlen(tcode));
    assert_int_equal(p->v[KR_FLD_EMAIL].n, strlen("shop@example.jp"));
    kr_payload_free(p);

    assert_int_equal(signup_row(t, tenant, app).state, VA_SIGNUP_COMPLETED);
    /* Completing again, with the same code: expired, nothing appended. */
    before = jrn_size(t->d->j);
    assert_int_equal(complete(t, app, code, "a fine passphrase", "Shop"), KR_EEXPIRED);
    assert_true(td_unchanged_since(t, before));
    /* Paying again for a completed sign-up is refused. */
    struct kr_caller op = td_operator();
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, "pay-43");
    assert_int_equal(td_exec(t, &op, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_ECONFLICT);
    assert_int_equal(login(t, tcode, "shop@example.jp", "a fine passphrase", NULL), KR_OK);
}

static void test_code_expires(void **state)
{
    struct td *t = ((struct fx *)*state)->t;
    uint8_t app[16];
    char code[32];
    apply(t, "late@example.jp", app);
    uint64_t tenant = confirm(t, app, code);
    atomic_fetch_add(&t->now, 15 * MIN_NS);
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(complete(t, app, code, "a fine passphrase", "Late"), KR_EEXPIRED);
    assert_string_equal(t->diag.field, "auth_code");
    assert_true(td_unchanged_since(t, before));
    /* A new code (payment confirmed again) works. */
    tenant = confirm(t, app, code);
    assert_int_equal(complete(t, app, code, "a fine passphrase", "Late"), KR_OK);
    assert_int_equal(tenant_row(t, tenant).state, KR_TENANT_STATE_ACTIVE);
}

static void test_code_just_before_expiry(void **state)
{
    struct td *t = ((struct fx *)*state)->t;
    uint8_t app[16];
    char code[32];
    apply(t, "prompt@example.jp", app);
    (void)confirm(t, app, code);
    /* The clock moves 1 ms per read; land well inside the window. */
    atomic_fetch_add(&t->now, 15 * MIN_NS - 1000000000ull);
    assert_int_equal(complete(t, app, code, "a fine passphrase", "Prompt"), KR_OK);
}

static void test_wrong_codes_use_up_tries(void **state)
{
    struct td *t = ((struct fx *)*state)->t;
    uint8_t app[16];
    char code[32], wrong[32];
    apply(t, "guess@example.jp", app);
    uint64_t tenant = confirm(t, app, code);
    snprintf(wrong, sizeof wrong, "%s", code);
    wrong[0] = wrong[0] == '9' ? '0' : (char)(wrong[0] + 1);
    uint64_t before = jrn_size(t->d->j);
    for (unsigned i = 0; i < 5; i++) {
        assert_int_equal(complete(t, app, wrong, "a fine passphrase", "G"), KR_EAUTH);
        assert_string_equal(t->diag.field, "auth_code");
        assert_int_equal(signup_row(t, tenant, app).tries_left, 4 - i);
    }
    assert_int_equal(count_events(t, before, KR_EV_SIGNUP_CODE_FAILED, tenant), 5);
    /* Out of tries: even the right code is expired now, and nothing more is recorded. */
    before = jrn_size(t->d->j);
    assert_int_equal(complete(t, app, code, "a fine passphrase", "G"), KR_EEXPIRED);
    assert_int_equal(complete(t, app, wrong, "a fine passphrase", "G"), KR_EEXPIRED);
    assert_true(td_unchanged_since(t, before));
    assert_int_equal(tenant_row(t, tenant).state, KR_TENANT_STATE_APPLIED);
}

static void test_four_wrong_then_right(void **state)
{
    struct td *t = ((struct fx *)*state)->t;
    uint8_t app[16];
    char code[32], wrong[40];
    apply(t, "almost@example.jp", app);
    uint64_t tenant = confirm(t, app, code);
    snprintf(wrong, sizeof wrong, "%s0", code); /* a longer code is wrong too */
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(complete(t, app, wrong, "a fine passphrase", "A"), KR_EAUTH);
    assert_int_equal(signup_row(t, tenant, app).tries_left, 1);
    assert_int_equal(complete(t, app, code, "a fine passphrase", "A"), KR_OK);
}

static void test_password_rules(void **state)
{
    struct td *t = ((struct fx *)*state)->t;
    uint8_t app[16];
    char code[32];
    apply(t, "Rules@Example.jp", app);
    uint64_t tenant = confirm(t, app, code);
    uint64_t before = jrn_size(t->d->j);
    /* Common (in any case), the e-mail itself (any case): refused before the
     * code is looked at, so no try is used and nothing is said about it. */
    const char *bad[] = {"password", "PassWord", "iloveyou", "rules@example.JP", "qwertyuiop"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(complete(t, app, code, bad[i], "R"), KR_EINVAL);
        assert_string_equal(t->diag.field, "password");
        assert_int_equal(complete(t, app, "000000", bad[i], "R"), KR_EINVAL);
    }
    /* Too short: the schema's limit. */
    assert_int_equal(complete(t, app, code, "short7!", "R"), KR_EINVAL);
    assert_string_equal(t->diag.field, "password");
    assert_true(td_unchanged_since(t, before));
    assert_int_equal(signup_row(t, tenant, app).tries_left, 5);
    assert_int_equal(complete(t, app, code, "rules@example.jp!", "R"), KR_OK);
}

static void test_common_list(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_true(kr_common_passwords_len > 1000);
    assert_true(kr_password_is_common("password", 8));
    assert_true(kr_password_is_common("PASSWORD", 8));
    assert_true(kr_password_is_common("12345678", 8));
    assert_true(kr_password_is_common("!@#$%^&*", 8));
    assert_false(kr_password_is_common("passwor", 7));
    assert_false(kr_password_is_common("password!x", 10));
    assert_false(kr_password_is_common("", 0));
    /* Every listed entry is found, and the list is sorted and lower-case. */
    const unsigned char *s = kr_common_passwords_txt, *e = s + kr_common_passwords_len;
    const unsigned char *prev = NULL;
    size_t prev_len = 0, n = 0;
    while (s < e) {
        const unsigned char *nl = memchr(s, '\n', (size_t)(e - s));
        size_t len = nl ? (size_t)(nl - s) : (size_t)(e - s);
        assert_true(len >= 8);
        for (size_t i = 0; i < len; i++)
            assert_false(s[i] >= 'A' && s[i] <= 'Z');
        assert_true(kr_password_is_common(s, len));
        if (prev) {
            size_t m = len < prev_len ? len : prev_len;
            int c = memcmp(prev, s, m);
            assert_true(c < 0 || (c == 0 && prev_len < len));
        }
        prev = s;
        prev_len = len;
        n++;
        s += len + 1;
    }
    assert_true(n > 500);
    assert_int_equal(kr_password_check("password", 8, NULL, 0, &why), KR_EINVAL);
    assert_string_equal(why, "too common");
    assert_int_equal(kr_password_check("a@b.jp12", 8, "A@B.JP12", 8, &why), KR_EINVAL);
    assert_string_equal(why, "must not be the e-mail address");
    assert_int_equal(kr_password_check("seven77", 7, NULL, 0, &why), KR_EINVAL);
    char big[130];
    memset(big, 'x', sizeof big);
    assert_int_equal(kr_password_check(big, 129, NULL, 0, &why), KR_EINVAL);
    assert_int_equal(kr_password_check(big, 128, NULL, 0, &why), KR_OK);
    assert_null(why);
}

/* ---- Rejections ---- */

static void test_rejections(void **state)
{
    struct td *t = ((struct fx *)*state)->t;
    struct kr_caller anon = td_anonymous(), op = td_operator();
    uint8_t app[16], nowhere[16];
    char code[32];
    memset(nowhere, 0x5a, 16);
    uint64_t before = jrn_size(t->d->j);

    /* signup.apply: missing, malformed, unknown argument. */
    td_args(t);
    assert_int_equal(td_exec(t, &anon, KR_OP_SIGNUP_APPLY), KR_EINVAL);
    assert_string_equal(t->diag.field, "email");
    kr_set_str(td_args(t), KR_FLD_EMAIL, "no-at-sign");
    assert_int_equal(td_exec(t, &anon, KR_OP_SIGNUP_APPLY), KR_EINVAL);
    assert_string_equal(t->diag.field, "email");
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_EMAIL, "x@example.jp");
    kr_set_u64(a, KR_FLD_LIMIT, 5);
    assert_int_equal(td_exec(t, &anon, KR_OP_SIGNUP_APPLY), KR_EINVAL);
    assert_string_equal(t->diag.field, "limit");
    assert_true(td_unchanged_since(t, before));

    /* confirm_payment: operators only, on the operator endpoint. */
    apply(t, "x@example.jp", app);
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, "pay-1");
    assert_int_equal(td_exec(t, &anon, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_EAUTH);
    struct kr_caller master;
    uint64_t other = td_signup(t, "m@example.jp", "correct horse 9", &master, NULL);
    assert_true(other != 0);
    assert_int_equal(td_exec(t, &master, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_EFORBIDDEN);
    struct kr_caller op_client = op;
    op_client.operator_endpoint = false;
    assert_int_equal(td_exec(t, &op_client, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_EFORBIDDEN);
    /* Unknown application. */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, nowhere, 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, "pay-1");
    assert_int_equal(td_exec(t, &op, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_ENOTFOUND);
    assert_string_equal(t->diag.field, "application");
    assert_int_equal(complete(t, nowhere, "123456", "a fine passphrase", "N"), KR_ENOTFOUND);
    /* Completing before any code was issued. */
    assert_int_equal(complete(t, app, "123456", "a fine passphrase", "N"), KR_EEXPIRED);
    /* A code of letters is malformed. */
    (void)confirm(t, app, code);
    assert_int_equal(complete(t, app, "12a456", "a fine passphrase", "N"), KR_EINVAL);
    assert_string_equal(t->diag.field, "auth_code");
    /* A tenant name too long. */
    char longname[202];
    memset(longname, 'n', 201);
    longname[201] = 0;
    assert_int_equal(complete(t, app, code, "a fine passphrase", longname), KR_ETOOLARGE);
    assert_string_equal(t->diag.field, "tenant_name");
    assert_int_equal(complete(t, app, code, "a fine passphrase", "N"), KR_OK);
}

/* ---- Tenants ---- */

static void test_tenants_list_and_cancel(void **state)
{
    struct td *t = ((struct fx *)*state)->t;
    struct kr_caller op = td_operator(), m1, m2;
    char c1[40], c2[40];
    uint8_t app[16];
    uint64_t t1 = td_signup(t, "a@example.jp", "correct horse 1", &m1, c1);
    uint64_t t2 = td_signup(t, "b@example.jp", "correct horse 2", &m2, c2);
    apply(t, "c@example.jp", app); /* an application: listed as applied */

    /* Pages of one: three tenants, in id order, then no cursor. */
    uint64_t seen[3];
    int states[3];
    uint8_t cursor[8];
    bool have_cursor = false;
    for (int i = 0; i < 3; i++) {
        struct kr_payload *a = td_args(t);
        kr_set_u64(a, KR_FLD_LIMIT, 1);
        if (have_cursor)
            kr_set_bytes(a, KR_FLD_CURSOR, cursor, 8);
        assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_LIST), KR_OK);
        const msgpack_object *l = td_get(t, "tenants");
        assert_non_null(l);
        assert_int_equal(l->type, MSGPACK_OBJECT_ARRAY);
        assert_int_equal(l->via.array.size, 1);
        const msgpack_object *it = &l->via.array.ptr[0];
        seen[i] = td_map_get(it, "tenant")->via.u64;
        const msgpack_object *st = td_map_get(it, "tenant_state");
        states[i] = kr_enum_lookup(KR_ENUM_TENANT_STATE, st->via.str.ptr, st->via.str.size);
        assert_int_equal(td_map_get(it, "cancelled")->type, MSGPACK_OBJECT_NIL);
        const msgpack_object *cur = td_get(t, "cursor");
        assert_non_null(cur);
        if (i < 2) {
            assert_int_equal(cur->type, MSGPACK_OBJECT_BIN);
            memcpy(cursor, cur->via.bin.ptr, 8);
            have_cursor = true;
        } else {
            /* The last page is full (limit 1): a final empty page ends it. */
            if (cur->type == MSGPACK_OBJECT_BIN) {
                struct kr_payload *a2 = td_args(t);
                kr_set_u64(a2, KR_FLD_LIMIT, 1);
                kr_set_bytes(a2, KR_FLD_CURSOR, cur->via.bin.ptr, 8);
                assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_LIST), KR_OK);
                assert_int_equal(td_get(t, "tenants")->via.array.size, 0);
                assert_int_equal(td_get(t, "cursor")->type, MSGPACK_OBJECT_NIL);
            }
        }
    }
    assert_true(seen[0] < seen[1] && seen[1] < seen[2]);
    int actives = 0, applied = 0;
    for (int i = 0; i < 3; i++) {
        actives += states[i] == KR_TENANT_STATE_ACTIVE;
        applied += states[i] == KR_TENANT_STATE_APPLIED;
        assert_true(seen[i] == t1 || seen[i] == t2 || states[i] == KR_TENANT_STATE_APPLIED);
    }
    assert_int_equal(actives, 2);
    assert_int_equal(applied, 1);

    /* Cancel t1: its time is recorded, its master can no longer log in or
     * use a session; cancelling again conflicts; t2 is untouched. */
    uint8_t token[32];
    struct kr_caller who;
    assert_int_equal(login(t, c1, "a@example.jp", "correct horse 1", token), KR_OK);
    kr_set_u64(td_args(t), KR_FLD_TENANT, t1);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_CANCEL), KR_OK);
    uint64_t when = td_get_u64(t, "cancelled");
    struct va_tenant tr = tenant_row(t, t1);
    assert_int_equal(tr.state, KR_TENANT_STATE_CANCELLED);
    assert_int_equal(tr.cancelled, when);
    assert_int_equal(tr.version, 2);
    assert_int_equal(dom_session_resolve(t->d, token, &who), KR_EAUTH);
    /* The right password is told the tenant is cancelled (accounts_test). */
    assert_int_equal(login(t, c1, "a@example.jp", "correct horse 1", NULL), KR_EFORBIDDEN);
    assert_int_equal(login(t, c1, "a@example.jp", "wrong horse 1", NULL), KR_EAUTH);
    kr_set_u64(td_args(t), KR_FLD_TENANT, t1);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_CANCEL), KR_ECONFLICT);
    assert_int_equal(tenant_row(t, t2).state, KR_TENANT_STATE_ACTIVE);
    assert_int_equal(login(t, c2, "b@example.jp", "correct horse 2", NULL), KR_OK);
    /* Unknown tenant; a master may not cancel. */
    kr_set_u64(td_args(t), KR_FLD_TENANT, 12345);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_CANCEL), KR_ENOTFOUND);
    kr_set_u64(td_args(t), KR_FLD_TENANT, t2);
    assert_int_equal(td_exec(t, &m2, KR_OP_TENANTS_CANCEL), KR_EFORBIDDEN);
    assert_int_equal(tenant_row(t, t2).state, KR_TENANT_STATE_ACTIVE);
    /* A malformed cursor. */
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_CURSOR, "abc", 3);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_LIST), KR_EINVAL);
    assert_string_equal(t->diag.field, "cursor");
}

/* ---- Replay and personal data ---- */

static const enum kr_view my_views[] = {
    VIEW_TENANTS,        VIEW_TENANT_CODES, VIEW_SIGNUPS,     VIEW_ACCOUNTS,
    VIEW_ACCOUNT_EMAILS, VIEW_SESSIONS,     VIEW_SESSION_IDS, VIEW_ACCOUNT_SESSIONS,
};
#define NVIEWS (sizeof my_views / sizeof my_views[0])

static void digests(struct td *t, uint8_t out[NVIEWS][32], uint64_t n[NVIEWS])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (size_t i = 0; i < NVIEWS; i++)
        assert_int_equal(views_digest(&t->d->views, txn, my_views[i], out[i], &n[i]), KR_OK);
    mdb_txn_abort(txn);
}

static void test_replay_same_views(void **state)
{
    struct td *t = ((struct fx *)*state)->t;
    struct kr_caller m1, m2, op = td_operator();
    char c1[40];
    uint8_t app[16], token[32];
    char code[32];
    uint64_t t1 = td_signup(t, "a@example.jp", "correct horse 1", &m1, c1);
    (void)td_signup(t, "b@example.jp", "correct horse 2", &m2, NULL);
    apply(t, "c@example.jp", app);
    (void)confirm(t, app, code);
    assert_int_equal(complete(t, app, "999999999", "a fine passphrase", "C"), KR_EAUTH);
    assert_int_equal(login(t, c1, "a@example.jp", "correct horse 1", token), KR_OK);
    assert_int_equal(login(t, c1, "a@example.jp", "wrong horse 1", NULL), KR_EAUTH);
    kr_set_u64(td_args(t), KR_FLD_TENANT, t1);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_CANCEL), KR_OK);

    uint8_t before[NVIEWS][32], after[NVIEWS][32];
    uint64_t nb[NVIEWS], na[NVIEWS];
    digests(t, before, nb);
    assert_true(nb[0] == 3 && nb[1] == 2 && nb[3] == 2 && nb[4] == 2 && nb[5] == 1);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    digests(t, after, na);
    for (size_t i = 0; i < NVIEWS; i++) {
        assert_int_equal(nb[i], na[i]);
        assert_memory_equal(before[i], after[i], 32);
    }
}

static void test_personal_data_sealed(void **state)
{
    struct td *t = ((struct fx *)*state)->t;
    const char *email = "zq7x-marker-mail@example.jp";
    const char *pw = "zq7x-marker-password";
    const char *name = "zq7x-marker-shopname";
    uint8_t app[16];
    char code[32];
    apply(t, email, app);
    (void)confirm(t, app, code);
    assert_int_equal(complete(t, app, code, pw, name), KR_OK);
    td_reopen(t); /* everything on disk */
    assert_false(td_dir_contains(t->dir, email, strlen(email)));
    assert_false(td_dir_contains(t->dir, pw, strlen(pw)));
    assert_false(td_dir_contains(t->dir, name, strlen(name)));
    assert_false(td_dir_contains(t->dir, "zq7x-marker", 11));
    /* The search itself works: the data directory does hold the event names. */
    assert_true(td_dir_contains(t->dir, "signup.completed", 16));
}

/* signup.apply is limited per e-mail address (any case) and per source
 * address within an hour: past either limit the exact error is KR_ERATE
 * (`rate_limited`), it names which limit and says when to retry, nothing is
 * appended, and other addresses and sources go on being served. */
static void test_apply_rate_limited(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    struct kr_caller a = td_anonymous(), b = td_anonymous();
    a.source[10] = 0xff, a.source[11] = 0xff, a.source[12] = 192, a.source[15] = 1;
    b.source[10] = 0xff, b.source[11] = 0xff, b.source[12] = 198, b.source[15] = 7;
    t->signup_limits = true;
    td_reopen(t);
    static const char *const same[] = {"flood@shop.example.jp", "Flood@Shop.Example.JP",
                                       "FLOOD@shop.example.jp"};
    for (size_t i = 0; i < 3; i++) {
        kr_set_str(td_args(t), KR_FLD_EMAIL, same[i]);
        assert_int_equal(td_exec(t, &a, KR_OP_SIGNUP_APPLY), KR_OK);
    }
    uint64_t size = jrn_size(t->d->j);
    kr_set_str(td_args(t), KR_FLD_EMAIL, "flood@SHOP.example.jp");
    assert_int_equal(td_exec(t, &b, KR_OP_SIGNUP_APPLY), KR_ERATE);
    assert_string_equal(t->diag.field, "email");
    assert_non_null(strstr(t->diag.why, "try again in 3600 s"));
    /* No application; the first refusal of this limit in its window is
     * recorded (access.rate_limited, platform), a second one is not. */
    assert_int_equal(jrn_size(t->d->j), size + 1);
    assert_int_equal(count_events(t, size, KR_EV_ACCESS_RATE_LIMITED, 0), 1);
    kr_set_str(td_args(t), KR_FLD_EMAIL, "flood@shop.example.jp");
    assert_int_equal(td_exec(t, &b, KR_OP_SIGNUP_APPLY), KR_ERATE);
    assert_int_equal(jrn_size(t->d->j), size + 1);
    assert_int_equal(dom_api_error(KR_ERATE), KR_ERR_RATE_LIMITED);
    assert_string_equal(kr_api_errors[KR_ERR_RATE_LIMITED].name, "rate_limited");
    assert_string_equal(kr_errname(KR_ERATE), "rate_limited");

    /* Per source: 20 an hour from a, whatever the addresses. */
    char email[64];
    for (unsigned i = 3; i < KR_SIGNUP_PER_SOURCE_MAX; i++) {
        snprintf(email, sizeof email, "shop%u@shop.example.jp", i);
        kr_set_str(td_args(t), KR_FLD_EMAIL, email);
        assert_int_equal(td_exec(t, &a, KR_OP_SIGNUP_APPLY), KR_OK);
    }
    size = jrn_size(t->d->j);
    kr_set_str(td_args(t), KR_FLD_EMAIL, "another@shop.example.jp");
    assert_int_equal(td_exec(t, &a, KR_OP_SIGNUP_APPLY), KR_ERATE);
    assert_string_equal(t->diag.field, "source");
    assert_non_null(strstr(t->diag.why, "try again in"));
    assert_int_equal(jrn_size(t->d->j), size + 1);
    assert_int_equal(count_events(t, size, KR_EV_ACCESS_RATE_LIMITED, 0), 1);
    /* The refused one was not counted against its address: b may apply. */
    assert_int_equal(td_exec(t, &b, KR_OP_SIGNUP_APPLY), KR_OK);

    /* An hour later both limits start again. */
    atomic_fetch_add(&t->now, KR_SIGNUP_WINDOW_NS);
    kr_set_str(td_args(t), KR_FLD_EMAIL, "flood@shop.example.jp");
    assert_int_equal(td_exec(t, &a, KR_OP_SIGNUP_APPLY), KR_OK);
}

/* A flood of applications never completed: 7 days after, confirm and
 * complete refuse them (expired); an hour later the retention job erases
 * each (signup.expired): keys destroyed, payloads stripped, rows gone, no
 * marker left in any file; a completed sign-up and an application of the
 * last days are untouched, and a rebuild gives the same views. */
static void test_unconfirmed_applications_expire(void **state)
{
    struct td *t = ((struct fx *)*state)->t;
    struct kr_caller op = td_operator(), m;
    enum { FLOOD = 40 };
    uint8_t apps[FLOOD][16], late[16];
    char code[32], email[64], tcode[40];
    uint64_t tenants[FLOOD];
    uint64_t start = jrn_size(t->d->j);
    for (unsigned i = 0; i < FLOOD; i++) {
        snprintf(email, sizeof email, "qv9-flood-marker-%u@flood.example.jp", i);
        apply(t, email, apps[i]);
    }
    /* Some got as far as the auth code (e-mails queued with the code). */
    for (unsigned i = 0; i < 5; i++)
        tenants[i] = confirm(t, apps[i], code);
    uint64_t kept = td_signup(t, "kept@shop.example.jp", "correct horse 9", &m, tcode);
    for (unsigned i = 0; i < FLOOD; i++) {
        MDB_txn *txn;
        assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
        assert_int_equal(va_signup_tenant(&t->d->views, txn, apps[i], &tenants[i]), KR_OK);
        mdb_txn_abort(txn);
    }

    /* 7 days on: expired for the applicant, not yet due for the job. */
    atomic_fetch_add(&t->now, RET_SIGNUP_EXPIRE_NS);
    apply(t, "late@shop.example.jp", late);
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, apps[7], 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, "pay-late");
    assert_int_equal(td_exec(t, &op, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_EEXPIRED);
    assert_string_equal(t->diag.field, "application");
    assert_int_equal(complete(t, apps[0], code, "a fine passphrase", "Late"), KR_EEXPIRED);
    struct ret_report *r = malloc(sizeof *r);
    assert_non_null(r);
    assert_int_equal(ret_run(t->d, false, r), KR_OK);
    assert_int_equal(r->applications_due, 0);
    assert_int_equal(count_events(t, start, KR_EV_SIGNUP_EXPIRED, tenants[0]), 0);

    /* Past the margin: every one of the flood is erased, once. */
    atomic_fetch_add(&t->now, RET_MARGIN_NS);
    assert_int_equal(ret_run(t->d, true, r), KR_OK);
    assert_int_equal(r->applications_due, FLOOD);
    assert_int_equal(ret_run(t->d, false, r), KR_OK);
    assert_int_equal(r->applications_due, FLOOD);
    assert_int_equal(r->applications_expired, FLOOD);
    assert_int_equal(ret_run(t->d, false, r), KR_OK);
    assert_int_equal(r->applications_due, 0);
    for (unsigned i = 0; i < FLOOD; i++) {
        struct kr_data_key k;
        kr_err err = ks_get(t->d->ks, tenants[i], &k);
        kr_data_key_wipe(&k);
        assert_int_not_equal(err, KR_OK);
        assert_int_equal(count_events(t, start, KR_EV_SIGNUP_EXPIRED, tenants[i]), 1);
        struct jrn_query q = {.kind = JRN_Q_RANGE, .from = start + 1};
        struct jrn_cursor *cur;
        struct jrn_record rec;
        unsigned seen = 0;
        assert_int_equal(jrn_cursor_new(t->d->j, &q, &cur), KR_OK);
        while (jrn_cursor_next(cur, &rec) == KR_OK) {
            if (rec.tenant != tenants[i] ||
                kr_event_lookup(rec.type, rec.type_len) == KR_EV_SIGNUP_EXPIRED)
                continue;
            assert_true(rec.payload_stripped);
            seen++;
        }
        jrn_cursor_free(cur);
        assert_true(seen >= 1);
        struct kr_payload *pa = td_args(t);
        kr_set_bytes(pa, KR_FLD_APPLICATION, apps[i], 16);
        kr_set_str(pa, KR_FLD_PAYMENT_REF, "pay-after");
        assert_int_equal(td_exec(t, &op, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_ENOTFOUND);
    }
    free(r);
    /* The completed tenant and the recent application are untouched. */
    assert_int_equal(login(t, tcode, "kept@shop.example.jp", "correct horse 9", NULL), KR_OK);
    assert_int_equal(count_events(t, start, KR_EV_SIGNUP_EXPIRED, kept), 0);
    (void)confirm(t, late, code);
    /* Nothing of the flood anywhere on disk, and a rebuild agrees. */
    td_reopen(t);
    assert_false(td_dir_contains(t->dir, "qv9-flood-marker", 16));
    uint8_t before[NVIEWS][32], after[NVIEWS][32];
    uint64_t nb[NVIEWS], na[NVIEWS];
    digests(t, before, nb);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    digests(t, after, na);
    for (size_t i = 0; i < NVIEWS; i++) {
        assert_int_equal(nb[i], na[i]);
        assert_memory_equal(before[i], after[i], 32);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flow_with_fixture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flow_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_just_before_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_codes_use_up_tries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_four_wrong_then_right, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_rules, setup, teardown),
        cmocka_unit_test(test_common_list),
        cmocka_unit_test_setup_teardown(test_rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenants_list_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_same_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_personal_data_sealed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unconfirmed_applications_expire, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
