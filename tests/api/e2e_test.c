/*
 * e2e_test.c: kiroku end to end, as its clients see it: the real `kiroku
 * serve` binary in a scratch directory, real nng req0 sockets (tcp:// for
 * tenants, ipc:// for the operator), msgpack requests, and the e-mails the
 * server writes under DIR/outbox/.
 *
 * The white paper's flow in order (sign-up with the code read from the
 * e-mail, login, users and permissions, contacts, tags, attributes, audit in
 * JST, notices, incidents, export, password change, logout); tenant isolation
 * probed over the wire with every id-taking op; the operator endpoint's
 * separation; an auditor's journal access limited to its tenant. Every
 * refusal is asserted by its exact error code.
 *
 * One server serves the whole binary (group setup); each test signs up the
 * tenants it needs, with e-mail addresses of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api_client.h"

#include "accounts.h"
#include "b64.h"
#include "kr_limits.h"
#include "merkle.h"
#include "protocol.h"
#include "record.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PASSWORD     "correct-horse-staple-42"
#define PASSWORD_NEW "battery-staple-horse-43"
#define CODE_NEEDLE  "Auth code: "   /* the sign-up e-mail (api/templates/en) */
#define TCODE_NEEDLE "Tenant code: " /* the account e-mail (api/templates/en) */
#define HOUR_NS      (3600ull * 1000000000ull)
#define JOURNAL_PAGE 1000u

static struct ac_server srv;
static uint8_t op_token[32];

/* A tenant as the test knows it. */
struct tenant {
    char code[40];
    uint64_t id;
    char email[128]; /* the master's */
    uint8_t master[16];
    uint8_t token[32]; /* the master's session */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Logs in; returns the reply's code, and the token into token (may be NULL). */
static int login(struct ac *c, const char *code, const char *email, const char *password,
                 uint8_t token[32])
{
    ac_str(c, KR_FLD_TENANT_CODE, code);
    ac_str(c, KR_FLD_EMAIL, email);
    ac_str(c, KR_FLD_PASSWORD, password);
    int rc = ac_call(c, KR_OP_AUTH_LOGIN, NULL);
    if (rc == AC_OK && token) {
        const msgpack_object *t = ac_get(ac_result(c), KR_FLD_TOKEN);
        assert_non_null(t);
        assert_int_equal(t->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(t->via.bin.size, 32);
        memcpy(token, t->via.bin.ptr, 32);
    }
    return rc;
}

/* The tenant id of tenant code `code`, from the operator's tenants.list. */
static uint64_t tenant_id(const char *code)
{
    struct ac op;
    ac_open(&op, srv.op_url);
    ac_u64(&op, KR_FLD_LIMIT, 1000);
    assert_int_equal(ac_call(&op, KR_OP_TENANTS_LIST, op_token), AC_OK);
    const msgpack_object *l = ac_res_list(&op);
    uint64_t id = 0;
    for (uint32_t i = 0; i < l->via.array.size; i++)
        if (ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_TENANT_CODE), code))
            id = ac_get(&l->via.array.ptr[i], KR_FLD_TENANT)->via.u64;
    ac_close(&op);
    assert_true(id > 0);
    return id;
}

/* Signs a tenant up the whole way over the wire and logs its master in. */
static void signup(const char *email, const char *name, struct tenant *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->email, sizeof t->email, "%s", email);
    struct ac c, op;
    ac_open(&c, srv.tcp);
    ac_open(&op, srv.op_url);
    uint8_t app[16];
    ac_str(&c, KR_FLD_EMAIL, email);
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_APPLY, NULL), AC_OK);
    ac_res_id(&c, KR_FLD_APPLICATION, app);
    /* No code is mailed before the payment. */
    assert_int_equal(ac_mail_count(&srv, email), 0);
    ac_bin(&op, KR_FLD_APPLICATION, app, 16);
    ac_str(&op, KR_FLD_PAYMENT_REF, "pay-e2e-1");
    assert_int_equal(ac_call(&op, KR_OP_SIGNUP_CONFIRM_PAYMENT, op_token), AC_OK);
    assert_true(ac_res_u64(&op, KR_FLD_EXPIRES) > now_ns());
    char code[24];
    assert_true(ac_mail_wait(&srv, email, CODE_NEEDLE, code, sizeof code));
    assert_true(strlen(code) >= 6);
    /* A mistyped code first: refused, the application still open. */
    char wrong[24];
    snprintf(wrong, sizeof wrong, "%s", code);
    wrong[0] = wrong[0] == '9' ? '0' : (char)(wrong[0] + 1);
    ac_bin(&c, KR_FLD_APPLICATION, app, 16);
    ac_str(&c, KR_FLD_AUTH_CODE, wrong);
    ac_str(&c, KR_FLD_PASSWORD, PASSWORD);
    ac_str(&c, KR_FLD_TENANT_NAME, name);
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_COMPLETE, NULL), KR_ERR_UNAUTHENTICATED);
    ac_bin(&c, KR_FLD_APPLICATION, app, 16);
    ac_str(&c, KR_FLD_AUTH_CODE, code);
    ac_str(&c, KR_FLD_PASSWORD, PASSWORD);
    ac_str(&c, KR_FLD_TENANT_NAME, name);
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_COMPLETE, NULL), AC_OK);
    const msgpack_object *tc = ac_get(ac_result(&c), KR_FLD_TENANT_CODE);
    assert_non_null(tc);
    assert_int_equal(tc->type, MSGPACK_OBJECT_STR);
    assert_true(tc->via.str.size < sizeof t->code);
    memcpy(t->code, tc->via.str.ptr, tc->via.str.size);
    ac_res_id(&c, KR_FLD_ACCOUNT, t->master);
    /* The code is spent. */
    ac_bin(&c, KR_FLD_APPLICATION, app, 16);
    ac_str(&c, KR_FLD_AUTH_CODE, code);
    ac_str(&c, KR_FLD_PASSWORD, PASSWORD);
    ac_str(&c, KR_FLD_TENANT_NAME, name);
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_COMPLETE, NULL), KR_ERR_EXPIRED);
    /* The account e-mail names the tenant code. */
    char mailed[40];
    assert_true(ac_mail_wait(&srv, email, TCODE_NEEDLE, mailed, sizeof mailed));
    assert_string_equal(mailed, t->code);
    t->id = tenant_id(t->code);
    assert_int_equal(login(&c, t->code, email, PASSWORD, t->token), AC_OK);
    ac_close(&op);
    ac_close(&c);
}

/* Creates an account in t (master's token); returns its version. */
static uint64_t user_create(struct ac *c, const struct tenant *t, const char *email, int role,
                            uint64_t perms, uint8_t account[16])
{
    ac_str(c, KR_FLD_EMAIL, email);
    ac_str(c, KR_FLD_PASSWORD, PASSWORD);
    ac_enum(c, KR_FLD_ROLE, role);
    if (perms)
        ac_enums(c, KR_FLD_PERMISSIONS, perms);
    ac_str(c, KR_FLD_DISPLAY_NAME, email);
    assert_int_equal(ac_call(c, KR_OP_USERS_CREATE, t->token), AC_OK);
    ac_res_id(c, KR_FLD_ACCOUNT, account);
    return ac_res_u64(c, KR_FLD_VERSION);
}

/* An account's version now, from users.list (a login moves it too). */
static uint64_t account_version(struct ac *c, const struct tenant *t, const uint8_t account[16])
{
    ac_u64(c, KR_FLD_LIMIT, 1000);
    assert_int_equal(ac_call(c, KR_OP_USERS_LIST, t->token), AC_OK);
    const msgpack_object *l = ac_res_list(c);
    int i = ac_find_id(l, KR_FLD_ACCOUNT, account);
    assert_true(i >= 0);
    return ac_get(&l->via.array.ptr[i], KR_FLD_VERSION)->via.u64;
}

/* The permission set in list object l. */
static uint64_t perms_of(const msgpack_object *l)
{
    assert_non_null(l);
    assert_int_equal(l->type, MSGPACK_OBJECT_ARRAY);
    uint64_t m = 0;
    for (uint32_t i = 0; i < l->via.array.size; i++) {
        const msgpack_object *v = &l->via.array.ptr[i];
        assert_int_equal(v->type, MSGPACK_OBJECT_STR);
        int e = kr_enum_lookup(KR_ENUM_PERMISSION, v->via.str.ptr, v->via.str.size);
        assert_true(e >= 0);
        m |= 1ull << e;
    }
    return m;
}

static bool role_is(const msgpack_object *o, int role)
{
    return ac_str_eq(o, kr_enums[KR_ENUM_ROLE].values[role]);
}

#define PERM(p) (1ull << KR_PERMISSION_##p)

/* ---- Fixture ---- */

static int group_setup(void **state)
{
    (void)state;
    ac_server_start(&srv);
    struct ac op;
    ac_open(&op, srv.op_url);
    assert_int_equal(login(&op, KR_PLATFORM_CODE, srv.op_email, srv.op_password, op_token), AC_OK);
    assert_true(role_is(ac_get(ac_result(&op), KR_FLD_ROLE), KR_ROLE_OPERATOR));
    ac_close(&op);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    /* A clean stop: SIGTERM, in-flight work finished, exit 0. */
    assert_int_equal(ac_server_stop(&srv), 0);
    return 0;
}

/* ---- The white paper's flow ---- */

static void flow_users(struct ac *c, const struct tenant *a, uint8_t writer[16],
                       uint8_t writer_token[32], uint8_t reader_token[32])
{
    uint8_t reader[16], aud[16], gone[16], tok[32];
    uint64_t wv = user_create(c, a, "writer@flow.example.jp", KR_ROLE_USER,
                              PERM(CONTACTS_READ) | PERM(CONTACTS_WRITE), writer);
    user_create(c, a, "reader@flow.example.jp", KR_ROLE_USER, PERM(CONTACTS_READ), reader);
    user_create(c, a, "auditor@flow.example.jp", KR_ROLE_AUDITOR, 0, aud);
    uint64_t gv = user_create(c, a, "gone@flow.example.jp", KR_ROLE_USER, 0, gone);
    /* The same e-mail twice; a second master. */
    ac_str(c, KR_FLD_EMAIL, "writer@flow.example.jp");
    ac_str(c, KR_FLD_PASSWORD, PASSWORD);
    ac_enum(c, KR_FLD_ROLE, KR_ROLE_USER);
    assert_int_equal(ac_call(c, KR_OP_USERS_CREATE, a->token), KR_ERR_CONFLICT);
    ac_str(c, KR_FLD_EMAIL, "second@flow.example.jp");
    ac_str(c, KR_FLD_PASSWORD, PASSWORD);
    ac_enum(c, KR_FLD_ROLE, KR_ROLE_MASTER);
    assert_int_equal(ac_call(c, KR_OP_USERS_CREATE, a->token), KR_ERR_BAD_REQUEST);
    /* A weak password. */
    ac_str(c, KR_FLD_EMAIL, "weak@flow.example.jp");
    ac_str(c, KR_FLD_PASSWORD, "password");
    ac_enum(c, KR_FLD_ROLE, KR_ROLE_USER);
    assert_int_equal(ac_call(c, KR_OP_USERS_CREATE, a->token), KR_ERR_BAD_REQUEST);

    /* Grant and revoke, each naming the version it read. */
    ac_bin(c, KR_FLD_ACCOUNT, writer, 16);
    ac_enums(c, KR_FLD_PERMISSIONS, PERM(TAGS_WRITE) | PERM(ATTRIBUTES_WRITE) | PERM(AUDIT_READ));
    ac_u64(c, KR_FLD_VERSION, wv);
    assert_int_equal(ac_call(c, KR_OP_USERS_GRANT, a->token), AC_OK);
    uint64_t wv2 = ac_res_u64(c, KR_FLD_VERSION);
    assert_true(wv2 > wv);
    ac_bin(c, KR_FLD_ACCOUNT, writer, 16);
    ac_enums(c, KR_FLD_PERMISSIONS, PERM(USERS_READ));
    ac_u64(c, KR_FLD_VERSION, wv); /* stale */
    assert_int_equal(ac_call(c, KR_OP_USERS_GRANT, a->token), KR_ERR_CONFLICT);
    ac_bin(c, KR_FLD_ACCOUNT, writer, 16);
    ac_enums(c, KR_FLD_PERMISSIONS, PERM(AUDIT_READ));
    ac_u64(c, KR_FLD_VERSION, wv2);
    assert_int_equal(ac_call(c, KR_OP_USERS_REVOKE, a->token), AC_OK);
    wv = ac_res_u64(c, KR_FLD_VERSION);

    /* The list shows every account with its role and permissions. */
    ac_u64(c, KR_FLD_LIMIT, 100);
    assert_int_equal(ac_call(c, KR_OP_USERS_LIST, a->token), AC_OK);
    const msgpack_object *l = ac_res_list(c);
    assert_int_equal(l->via.array.size, 5);
    int i = ac_find_id(l, KR_FLD_ACCOUNT, writer);
    assert_true(i >= 0);
    assert_true(
        perms_of(ac_get(&l->via.array.ptr[i], KR_FLD_PERMISSIONS)) ==
        (PERM(CONTACTS_READ) | PERM(CONTACTS_WRITE) | PERM(TAGS_WRITE) | PERM(ATTRIBUTES_WRITE)));
    assert_true(ac_get(&l->via.array.ptr[i], KR_FLD_VERSION)->via.u64 == wv);
    assert_true(ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_EMAIL), "writer@flow.example.jp"));
    i = ac_find_id(l, KR_FLD_ACCOUNT, aud);
    assert_true(i >= 0 && role_is(ac_get(&l->via.array.ptr[i], KR_FLD_ROLE), KR_ROLE_AUDITOR));
    i = ac_find_id(l, KR_FLD_ACCOUNT, a->master);
    assert_true(i >= 0 && role_is(ac_get(&l->via.array.ptr[i], KR_FLD_ROLE), KR_ROLE_MASTER));

    /* The user logs in with what was granted. */
    assert_int_equal(login(c, a->code, "writer@flow.example.jp", PASSWORD, writer_token), AC_OK);
    assert_true(role_is(ac_get(ac_result(c), KR_FLD_ROLE), KR_ROLE_USER));
    assert_true(
        perms_of(ac_get(ac_result(c), KR_FLD_PERMISSIONS)) ==
        (PERM(CONTACTS_READ) | PERM(CONTACTS_WRITE) | PERM(TAGS_WRITE) | PERM(ATTRIBUTES_WRITE)));

    /* Locked: the session ends, a login says locked even with the right
     * password; unlocked: back in. */
    /* The login did not move the account's version (sign-ins have a
     * stream of their own): the version listed before it still locks. */
    assert_true(account_version(c, a, writer) == wv);
    ac_bin(c, KR_FLD_ACCOUNT, writer, 16);
    ac_u64(c, KR_FLD_VERSION, wv);
    assert_int_equal(ac_call(c, KR_OP_USERS_LOCK, a->token), AC_OK);
    wv = ac_res_u64(c, KR_FLD_VERSION);
    assert_int_equal(ac_call(c, KR_OP_AUTH_WHOAMI, writer_token), KR_ERR_UNAUTHENTICATED);
    assert_int_equal(login(c, a->code, "writer@flow.example.jp", PASSWORD, NULL), KR_ERR_LOCKED);
    ac_bin(c, KR_FLD_ACCOUNT, writer, 16);
    ac_u64(c, KR_FLD_VERSION, wv);
    assert_int_equal(ac_call(c, KR_OP_USERS_UNLOCK, a->token), AC_OK);
    assert_int_equal(login(c, a->code, "writer@flow.example.jp", PASSWORD, writer_token), AC_OK);

    /* Deleted: its session ends and it cannot log in. */
    assert_int_equal(login(c, a->code, "gone@flow.example.jp", PASSWORD, tok), AC_OK);
    gv = account_version(c, a, gone);
    ac_bin(c, KR_FLD_ACCOUNT, gone, 16);
    ac_u64(c, KR_FLD_VERSION, gv);
    assert_int_equal(ac_call(c, KR_OP_USERS_DELETE, a->token), AC_OK);
    assert_int_equal(ac_call(c, KR_OP_AUTH_WHOAMI, tok), KR_ERR_UNAUTHENTICATED);
    assert_int_equal(login(c, a->code, "gone@flow.example.jp", PASSWORD, NULL),
                     KR_ERR_UNAUTHENTICATED);
    /* The master cannot be deleted or locked. */
    ac_bin(c, KR_FLD_ACCOUNT, a->master, 16);
    ac_u64(c, KR_FLD_VERSION, 1);
    assert_int_equal(ac_call(c, KR_OP_USERS_DELETE, a->token), KR_ERR_FORBIDDEN);
    ac_bin(c, KR_FLD_ACCOUNT, a->master, 16);
    ac_u64(c, KR_FLD_VERSION, 1);
    assert_int_equal(ac_call(c, KR_OP_USERS_LOCK, a->token), KR_ERR_FORBIDDEN);

    /* A user with contacts.read only: reads, and is forbidden to write. */
    assert_int_equal(login(c, a->code, "reader@flow.example.jp", PASSWORD, reader_token), AC_OK);
    assert_true(perms_of(ac_get(ac_result(c), KR_FLD_PERMISSIONS)) == PERM(CONTACTS_READ));
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_LIST, reader_token), AC_OK);
    assert_int_equal(ac_call(c, KR_OP_TAGS_LIST, reader_token), AC_OK);
    ac_str(c, KR_FLD_NAME, "Not allowed");
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_REGISTER, reader_token), KR_ERR_FORBIDDEN);
    ac_str(c, KR_FLD_TAG_NAME, "nope");
    assert_int_equal(ac_call(c, KR_OP_TAGS_CREATE, reader_token), KR_ERR_FORBIDDEN);
    ac_str(c, KR_FLD_ATTRIBUTE_KEY, "nope");
    ac_enum(c, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_STRING);
    assert_int_equal(ac_call(c, KR_OP_ATTRIBUTES_DEFINE, reader_token), KR_ERR_FORBIDDEN);
    assert_int_equal(ac_call(c, KR_OP_USERS_LIST, reader_token), KR_ERR_FORBIDDEN);
    assert_int_equal(ac_call(c, KR_OP_AUDIT_LIST, reader_token), KR_ERR_FORBIDDEN);
    /* Users manage no accounts. */
    ac_str(c, KR_FLD_EMAIL, "sneaky@flow.example.jp");
    ac_str(c, KR_FLD_PASSWORD, PASSWORD);
    ac_enum(c, KR_FLD_ROLE, KR_ROLE_USER);
    assert_int_equal(ac_call(c, KR_OP_USERS_CREATE, reader_token), KR_ERR_FORBIDDEN);
    /* whoami tells each who it is. */
    assert_int_equal(ac_call(c, KR_OP_AUTH_WHOAMI, reader_token), AC_OK);
    assert_true(ac_str_eq(ac_get(ac_result(c), KR_FLD_TENANT_CODE), a->code));
    assert_true(role_is(ac_get(ac_result(c), KR_FLD_ROLE), KR_ROLE_USER));
    assert_true(perms_of(ac_get(ac_result(c), KR_FLD_PERMISSIONS)) == PERM(CONTACTS_READ));
}

/* Contacts, tags and attributes as the writer; returns the contact kept. */
static void flow_contacts(struct ac *c, const uint8_t tok[32], uint8_t kept[16])
{
    uint8_t c2[16], tag[16], attr[16], attr2[16];
    ac_str(c, KR_FLD_NAME, "山田 太郎");
    ac_str(c, KR_FLD_NAME_KANA, "やまだ たろう");
    ac_str(c, KR_FLD_EMAIL, "taro@customer.example.jp");
    ac_str(c, KR_FLD_PHONE, "+81 3-1234-5678");
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_REGISTER, tok), AC_OK);
    ac_res_id(c, KR_FLD_CONTACT, kept);
    uint64_t v = ac_res_u64(c, KR_FLD_VERSION);
    ac_bin(c, KR_FLD_CONTACT, kept, 16);
    ac_u64(c, KR_FLD_VERSION, v);
    ac_str(c, KR_FLD_NAME, "山田 太郎");
    ac_str(c, KR_FLD_NOTE, "prefers e-mail");
    ac_str(c, KR_FLD_EMAIL, "taro@customer.example.jp");
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_UPDATE, tok), AC_OK);
    uint64_t v2 = ac_res_u64(c, KR_FLD_VERSION);
    assert_true(v2 > v);
    ac_bin(c, KR_FLD_CONTACT, kept, 16);
    ac_u64(c, KR_FLD_VERSION, v); /* stale */
    ac_str(c, KR_FLD_NAME, "lost update");
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_UPDATE, tok), KR_ERR_CONFLICT);
    ac_bin(c, KR_FLD_CONTACT, kept, 16);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_GET, tok), AC_OK);
    assert_true(ac_str_eq(ac_get(ac_result(c), KR_FLD_NAME), "山田 太郎"));
    assert_true(ac_str_eq(ac_get(ac_result(c), KR_FLD_NOTE), "prefers e-mail"));
    assert_true(ac_res_u64(c, KR_FLD_VERSION) == v2);

    /* Tags. */
    ac_str(c, KR_FLD_TAG_NAME, "vip");
    assert_int_equal(ac_call(c, KR_OP_TAGS_CREATE, tok), AC_OK);
    ac_res_id(c, KR_FLD_TAG, tag);
    uint64_t tv = ac_res_u64(c, KR_FLD_VERSION);
    ac_str(c, KR_FLD_TAG_NAME, "vip");
    assert_int_equal(ac_call(c, KR_OP_TAGS_CREATE, tok), KR_ERR_CONFLICT);
    ac_bin(c, KR_FLD_TAG, tag, 16);
    ac_str(c, KR_FLD_TAG_NAME, "VIP 顧客");
    ac_u64(c, KR_FLD_VERSION, tv);
    assert_int_equal(ac_call(c, KR_OP_TAGS_RENAME, tok), AC_OK);
    tv = ac_res_u64(c, KR_FLD_VERSION);
    assert_int_equal(ac_call(c, KR_OP_TAGS_LIST, tok), AC_OK);
    const msgpack_object *l = ac_res_list(c);
    int i = ac_find_id(l, KR_FLD_TAG, tag);
    assert_true(i >= 0 && ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_TAG_NAME), "VIP 顧客"));
    ac_bin(c, KR_FLD_CONTACT, kept, 16);
    ac_bin(c, KR_FLD_TAG, tag, 16);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_TAG, tok), AC_OK);
    ac_bin(c, KR_FLD_TAG, tag, 16);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_LIST, tok), AC_OK);
    l = ac_res_list(c);
    assert_int_equal(l->via.array.size, 1);
    assert_true(ac_find_id(l, KR_FLD_CONTACT, kept) == 0);

    /* Attributes, typed. */
    ac_str(c, KR_FLD_ATTRIBUTE_KEY, "visits");
    ac_enum(c, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_NUMBER);
    assert_int_equal(ac_call(c, KR_OP_ATTRIBUTES_DEFINE, tok), AC_OK);
    ac_res_id(c, KR_FLD_ATTRIBUTE, attr);
    ac_str(c, KR_FLD_ATTRIBUTE_KEY, "member");
    ac_enum(c, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_BOOL);
    assert_int_equal(ac_call(c, KR_OP_ATTRIBUTES_DEFINE, tok), AC_OK);
    ac_res_id(c, KR_FLD_ATTRIBUTE, attr2);
    ac_str(c, KR_FLD_ATTRIBUTE_KEY, "visits");
    ac_enum(c, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_STRING);
    assert_int_equal(ac_call(c, KR_OP_ATTRIBUTES_DEFINE, tok), KR_ERR_CONFLICT);
    assert_int_equal(ac_call(c, KR_OP_ATTRIBUTES_LIST, tok), AC_OK);
    l = ac_res_list(c);
    assert_int_equal(l->via.array.size, 2);
    i = ac_find_id(l, KR_FLD_ATTRIBUTE, attr);
    assert_true(i >= 0);
    assert_true(ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_ATTRIBUTE_TYPE),
                          kr_enums[KR_ENUM_ATTRIBUTE_TYPE].values[KR_ATTRIBUTE_TYPE_NUMBER]));
    ac_bin(c, KR_FLD_CONTACT, kept, 16);
    ac_str(c, KR_FLD_ATTRIBUTE_KEY, "visits");
    ac_value_int(c, KR_FLD_VALUE, 42);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_SET, tok), AC_OK);
    ac_bin(c, KR_FLD_CONTACT, kept, 16);
    ac_str(c, KR_FLD_ATTRIBUTE_KEY, "member");
    ac_value_bool(c, KR_FLD_VALUE, true);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_SET, tok), AC_OK);
    ac_bin(c, KR_FLD_CONTACT, kept, 16);
    ac_str(c, KR_FLD_ATTRIBUTE_KEY, "visits");
    ac_str(c, KR_FLD_VALUE, "many");
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_SET, tok), KR_ERR_BAD_REQUEST);
    ac_bin(c, KR_FLD_CONTACT, kept, 16);
    ac_str(c, KR_FLD_ATTRIBUTE_KEY, "undefined_key");
    ac_str(c, KR_FLD_VALUE, "x");
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_SET, tok), KR_ERR_NOT_FOUND);
    ac_bin(c, KR_FLD_CONTACT, kept, 16);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_GET, tok), AC_OK);
    const msgpack_object *tags = ac_res_list_nth(c, 0);
    assert_int_equal(tags->via.array.size, 1);
    assert_true(ac_str_eq(ac_get(&tags->via.array.ptr[0], KR_FLD_TAG_NAME), "VIP 顧客"));
    const msgpack_object *attrs = ac_res_list_nth(c, 1);
    assert_int_equal(attrs->via.array.size, 2);
    i = ac_find_id(attrs, KR_FLD_ATTRIBUTE, attr);
    assert_true(i >= 0);
    const msgpack_object *val = ac_get(&attrs->via.array.ptr[i], KR_FLD_VALUE);
    assert_non_null(val);
    assert_int_equal(val->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(val->via.u64, 42);
    i = ac_find_id(attrs, KR_FLD_ATTRIBUTE, attr2);
    assert_true(i >= 0);
    val = ac_get(&attrs->via.array.ptr[i], KR_FLD_VALUE);
    assert_true(val && val->type == MSGPACK_OBJECT_BOOLEAN && val->via.boolean);

    /* Untag; a second contact registered and deleted; the tag deleted. */
    ac_bin(c, KR_FLD_CONTACT, kept, 16);
    ac_bin(c, KR_FLD_TAG, tag, 16);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_UNTAG, tok), AC_OK);
    ac_bin(c, KR_FLD_TAG, tag, 16);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_LIST, tok), AC_OK);
    assert_int_equal(ac_res_list(c)->via.array.size, 0);
    ac_str(c, KR_FLD_NAME, "Short-lived");
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_REGISTER, tok), AC_OK);
    ac_res_id(c, KR_FLD_CONTACT, c2);
    v = ac_res_u64(c, KR_FLD_VERSION);
    ac_bin(c, KR_FLD_CONTACT, c2, 16);
    ac_u64(c, KR_FLD_VERSION, v);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_DELETE, tok), AC_OK);
    ac_bin(c, KR_FLD_CONTACT, c2, 16);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_GET, tok), KR_ERR_NOT_FOUND);
    ac_bin(c, KR_FLD_TAG, tag, 16);
    ac_u64(c, KR_FLD_VERSION, tv);
    assert_int_equal(ac_call(c, KR_OP_TAGS_DELETE, tok), AC_OK);
    assert_int_equal(ac_call(c, KR_OP_TAGS_LIST, tok), AC_OK);
    assert_true(ac_find_id(ac_res_list(c), KR_FLD_TAG, tag) < 0);
    assert_int_equal(ac_call(c, KR_OP_CONTACTS_LIST, tok), AC_OK);
    l = ac_res_list(c);
    assert_int_equal(l->via.array.size, 1);
    assert_true(ac_find_id(l, KR_FLD_CONTACT, kept) == 0);
}

/* audit.list: entries in JST; filtered by actor. */
static void flow_audit(struct ac *c, const struct tenant *a, const uint8_t writer[16])
{
    ac_u64(c, KR_FLD_LIMIT, 1000);
    assert_int_equal(ac_call(c, KR_OP_AUDIT_LIST, a->token), AC_OK);
    const msgpack_object *l = ac_res_list(c);
    assert_true(l->via.array.size >= 20);
    bool created = false, registered = false;
    uint64_t last_seq = 0;
    for (uint32_t i = 0; i < l->via.array.size; i++) {
        const msgpack_object *e = &l->via.array.ptr[i];
        const msgpack_object *jst = ac_get(e, KR_FLD_JST), *ty = ac_get(e, KR_FLD_TYPE);
        assert_non_null(jst);
        assert_int_equal(jst->type, MSGPACK_OBJECT_STR);
        assert_true(jst->via.str.size > 6);
        assert_memory_equal(jst->via.str.ptr + jst->via.str.size - 6, "+09:00", 6);
        uint64_t seq = ac_get(e, KR_FLD_SEQ)->via.u64;
        assert_true(seq > last_seq); /* newest last */
        last_seq = seq;
        created |= ac_str_eq(ty, kr_events[KR_EV_ACCOUNT_CREATED].name);
        registered |= ac_str_eq(ty, kr_events[KR_EV_CONTACT_REGISTERED].name);
    }
    assert_true(created && registered);
    /* The writer's actions only. */
    char actor[64], hex[33];
    sodium_bin2hex(hex, sizeof hex, writer, 16);
    snprintf(actor, sizeof actor, "account/%s", hex);
    ac_str(c, KR_FLD_ACTOR, actor);
    ac_u64(c, KR_FLD_LIMIT, 1000);
    assert_int_equal(ac_call(c, KR_OP_AUDIT_LIST, a->token), AC_OK);
    l = ac_res_list(c);
    assert_true(l->via.array.size >= 5);
    for (uint32_t i = 0; i < l->via.array.size; i++)
        assert_true(ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_ACTOR), actor));
    /* By type. */
    ac_str(c, KR_FLD_TYPE, kr_events[KR_EV_TAG_RENAMED].name);
    assert_int_equal(ac_call(c, KR_OP_AUDIT_LIST, a->token), AC_OK);
    l = ac_res_list(c);
    assert_int_equal(l->via.array.size, 1);
    /* Every refusal of the reader was recorded. */
    ac_str(c, KR_FLD_TYPE, kr_events[KR_EV_ACCESS_DENIED].name);
    ac_u64(c, KR_FLD_LIMIT, 1000);
    assert_int_equal(ac_call(c, KR_OP_AUDIT_LIST, a->token), AC_OK);
    assert_true(ac_res_list(c)->via.array.size >= 6);
}

/* Notices: published by the operator, in the login reply while unread. */
static void flow_notices(struct ac *c, const struct tenant *a)
{
    struct ac op;
    ac_open(&op, srv.op_url);
    uint8_t notice[16];
    ac_enum(&op, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_CHANGE);
    ac_str(&op, KR_FLD_TITLE, "Terms change");
    ac_str(&op, KR_FLD_BODY, "The terms change on 2026-05-01.");
    ac_u64(&op, KR_FLD_EFFECTIVE, now_ns());
    ac_enum(&op, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    ac_tenants(&op, KR_FLD_TENANTS, &a->id, 1);
    assert_int_equal(ac_call(&op, KR_OP_NOTICES_PUBLISH, op_token), AC_OK);
    ac_res_id(&op, KR_FLD_NOTICE, notice);
    ac_close(&op);

    uint8_t tok[32];
    assert_int_equal(login(c, a->code, a->email, PASSWORD, tok), AC_OK);
    const msgpack_object *l = ac_res_list(c);
    int i = ac_find_id(l, KR_FLD_NOTICE, notice);
    assert_true(i >= 0);
    assert_true(ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_TITLE), "Terms change"));
    assert_int_equal(ac_call(c, KR_OP_NOTICES_LIST, tok), AC_OK);
    l = ac_res_list(c);
    i = ac_find_id(l, KR_FLD_NOTICE, notice);
    assert_true(i >= 0);
    const msgpack_object *ack = ac_get(&l->via.array.ptr[i], KR_FLD_ACKNOWLEDGED);
    assert_true(ack && ack->type == MSGPACK_OBJECT_BOOLEAN && !ack->via.boolean);
    ac_bin(c, KR_FLD_NOTICE, notice, 16);
    assert_int_equal(ac_call(c, KR_OP_NOTICES_ACK, tok), AC_OK);
    assert_int_equal(ac_call(c, KR_OP_NOTICES_LIST, tok), AC_OK);
    l = ac_res_list(c);
    i = ac_find_id(l, KR_FLD_NOTICE, notice);
    assert_true(i >= 0);
    ack = ac_get(&l->via.array.ptr[i], KR_FLD_ACKNOWLEDGED);
    assert_true(ack && ack->type == MSGPACK_OBJECT_BOOLEAN && ack->via.boolean);
    assert_int_equal(login(c, a->code, a->email, PASSWORD, NULL), AC_OK);
    assert_true(ac_find_id(ac_res_list(c), KR_FLD_NOTICE, notice) < 0);
    /* A notice of change is e-mailed to the tenant's master. */
    assert_true(
        ac_mail_wait(&srv, a->email, "Notice of change\r\nTitle: Terms change\r\n", NULL, 0));
}

/* Incidents: opened, notified by e-mail, updated, resolved; reports. */
static void flow_incidents(struct ac *c, const struct tenant *a)
{
    struct ac op;
    ac_open(&op, srv.op_url);
    uint8_t inc[16];
    uint64_t detected = now_ns() - HOUR_NS;
    ac_enum(&op, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_BREACH);
    ac_enum(&op, KR_FLD_SEVERITY, KR_SEVERITY_HIGH);
    ac_str(&op, KR_FLD_TITLE, "Unauthorised access");
    ac_str(&op, KR_FLD_SUMMARY, "A credential was misused.");
    ac_u64(&op, KR_FLD_DETECTED, detected);
    ac_enum(&op, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    ac_tenants(&op, KR_FLD_TENANTS, &a->id, 1);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_OPEN, op_token), AC_OK);
    ac_res_id(&op, KR_FLD_INCIDENT, inc);
    assert_true(ac_res_u64(&op, KR_FLD_DEADLINE) == detected + 72 * HOUR_NS);

    assert_int_equal(ac_call(c, KR_OP_INCIDENTS_LIST, a->token), AC_OK);
    const msgpack_object *l = ac_res_list(c);
    int i = ac_find_id(l, KR_FLD_INCIDENT, inc);
    assert_true(i >= 0);
    const msgpack_object *res = ac_get(&l->via.array.ptr[i], KR_FLD_RESOLVED);
    assert_true(res && res->type == MSGPACK_OBJECT_BOOLEAN && !res->via.boolean);

    /* Due within 72 hours, not yet overdue. */
    ac_u64(&op, KR_FLD_WITHIN_HOURS, 72);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_OVERDUE, op_token), AC_OK);
    l = ac_res_list(&op);
    i = ac_find_id(l, KR_FLD_INCIDENT, inc);
    assert_true(i >= 0);
    assert_true(ac_get(&l->via.array.ptr[i], KR_FLD_TENANT)->via.u64 == a->id);
    const msgpack_object *od = ac_get(&l->via.array.ptr[i], KR_FLD_OVERDUE);
    assert_true(od && od->type == MSGPACK_OBJECT_BOOLEAN && !od->via.boolean);

    /* Notified by e-mail: the message reaches the tenant's master. */
    ac_bin(&op, KR_FLD_INCIDENT, inc, 16);
    ac_u64(&op, KR_FLD_TENANT, a->id);
    ac_enum(&op, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_NOTIFY, op_token), AC_OK);
    assert_true(ac_mail_wait(&srv, a->email,
                             "Title: Unauthorised access\r\nSeverity: high\r\n"
                             "Summary: A credential was misused.\r\n",
                             NULL, 0));
    /* Notifying again over the same channel is answered ok (nothing new). */
    ac_bin(&op, KR_FLD_INCIDENT, inc, 16);
    ac_u64(&op, KR_FLD_TENANT, a->id);
    ac_enum(&op, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_NOTIFY, op_token), AC_OK);
    /* Notified: no longer due. */
    ac_u64(&op, KR_FLD_WITHIN_HOURS, 72);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_OVERDUE, op_token), AC_OK);
    assert_true(ac_find_id(ac_res_list(&op), KR_FLD_INCIDENT, inc) < 0);
    /* A tenant not affected is not notified of it. */
    uint64_t other = a->id + 1000000;
    ac_bin(&op, KR_FLD_INCIDENT, inc, 16);
    ac_u64(&op, KR_FLD_TENANT, other);
    ac_enum(&op, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_NOTIFY, op_token), KR_ERR_NOT_FOUND);

    /* Updated, then resolved; each names the version it read. No reply
     * states an incident's version: opened is 1, the notification 2. */
    ac_bin(&op, KR_FLD_INCIDENT, inc, 16);
    ac_enum(&op, KR_FLD_SEVERITY, KR_SEVERITY_CRITICAL);
    ac_str(&op, KR_FLD_SUMMARY, "Two credentials were misused.");
    ac_u64(&op, KR_FLD_VERSION, 1);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_UPDATE, op_token), KR_ERR_CONFLICT);
    ac_bin(&op, KR_FLD_INCIDENT, inc, 16);
    ac_enum(&op, KR_FLD_SEVERITY, KR_SEVERITY_CRITICAL);
    ac_str(&op, KR_FLD_SUMMARY, "Two credentials were misused.");
    ac_u64(&op, KR_FLD_VERSION, 2);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_UPDATE, op_token), AC_OK);
    uint64_t v = ac_res_u64(&op, KR_FLD_VERSION);
    assert_true(v == 3);
    ac_bin(&op, KR_FLD_INCIDENT, inc, 16);
    ac_str(&op, KR_FLD_SUMMARY, "Stale.");
    ac_u64(&op, KR_FLD_VERSION, v - 1);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_RESOLVE, op_token), KR_ERR_CONFLICT);
    assert_int_equal(ac_call(c, KR_OP_INCIDENTS_LIST, a->token), AC_OK);
    l = ac_res_list(c);
    i = ac_find_id(l, KR_FLD_INCIDENT, inc);
    assert_true(i >= 0);
    assert_true(ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_SEVERITY),
                          kr_enums[KR_ENUM_SEVERITY].values[KR_SEVERITY_CRITICAL]));
    ac_bin(&op, KR_FLD_INCIDENT, inc, 16);
    ac_str(&op, KR_FLD_SUMMARY, "Credentials rotated; no data left the system.");
    ac_u64(&op, KR_FLD_VERSION, v);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_RESOLVE, op_token), AC_OK);
    assert_true(ac_res_u64(&op, KR_FLD_VERSION) > v);
    /* The master has read it: once, whatever it sends; the operator sees who. */
    for (int k = 0; k < 2; k++) {
        ac_bin(c, KR_FLD_INCIDENT, inc, 16);
        assert_int_equal(ac_call(c, KR_OP_INCIDENTS_ACK, a->token), AC_OK);
    }
    assert_int_equal(ac_call(c, KR_OP_INCIDENTS_LIST, a->token), AC_OK);
    l = ac_res_list(c);
    i = ac_find_id(l, KR_FLD_INCIDENT, inc);
    assert_true(i >= 0);
    const msgpack_object *at = ac_get(&l->via.array.ptr[i], KR_FLD_ACKNOWLEDGED_AT);
    assert_true(at && at->type == MSGPACK_OBJECT_POSITIVE_INTEGER && at->via.u64 > detected);
    uint64_t read_at = at->via.u64; /* the next call frees the reply */
    ac_bin(c, KR_FLD_INCIDENT, inc, 16);
    assert_int_equal(ac_call(c, KR_OP_INCIDENTS_READERS, a->token), KR_ERR_FORBIDDEN);
    ac_bin(&op, KR_FLD_INCIDENT, inc, 16);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_READERS, op_token), AC_OK);
    l = ac_res_list(&op);
    assert_int_equal(l->via.array.size, 1);
    assert_true(ac_get(&l->via.array.ptr[0], KR_FLD_TENANT)->via.u64 == a->id);
    assert_true(ac_get(&l->via.array.ptr[0], KR_FLD_TIME)->via.u64 == read_at);
    /* Resolved: still listed for the tenant, marked resolved; not resolved twice. */
    assert_int_equal(ac_call(c, KR_OP_INCIDENTS_LIST, a->token), AC_OK);
    l = ac_res_list(c);
    i = ac_find_id(l, KR_FLD_INCIDENT, inc);
    assert_true(i >= 0);
    assert_true(ac_get(&l->via.array.ptr[i], KR_FLD_RESOLVED)->via.boolean);
    ac_bin(&op, KR_FLD_INCIDENT, inc, 16);
    ac_str(&op, KR_FLD_SUMMARY, "Again.");
    ac_u64(&op, KR_FLD_VERSION, v + 1);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_RESOLVE, op_token), KR_ERR_CONFLICT);
    ac_close(&op);

    /* A tenant reports a suspected incident. */
    ac_enum(c, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    ac_str(c, KR_FLD_DETAILS, "A customer got an e-mail they did not expect.");
    assert_int_equal(ac_call(c, KR_OP_INCIDENTS_REPORT, a->token), AC_OK);
    uint8_t report[16];
    ac_res_id(c, KR_FLD_REPORT, report);
}

static void test_flow(void **state)
{
    (void)state;
    struct tenant a;
    signup("owner@flow.example.jp", "Flow shop", &a);
    struct ac c;
    ac_open(&c, srv.tcp);

    /* The login reply and whoami. */
    assert_int_equal(login(&c, a.code, a.email, PASSWORD, a.token), AC_OK);
    const msgpack_object *r = ac_result(&c);
    assert_true(role_is(ac_get(r, KR_FLD_ROLE), KR_ROLE_MASTER));
    uint8_t acct[16];
    ac_res_id(&c, KR_FLD_ACCOUNT, acct);
    assert_memory_equal(acct, a.master, 16);
    assert_true(ac_res_u64(&c, KR_FLD_EXPIRES) > now_ns());
    ac_res_list(&c); /* the unread notices */
    assert_int_equal(ac_call(&c, KR_OP_AUTH_WHOAMI, a.token), AC_OK);
    assert_true(ac_str_eq(ac_get(ac_result(&c), KR_FLD_TENANT_CODE), a.code));
    assert_true(role_is(ac_get(ac_result(&c), KR_FLD_ROLE), KR_ROLE_MASTER));
    ac_res_id(&c, KR_FLD_ACCOUNT, acct);
    assert_memory_equal(acct, a.master, 16);
    /* Unknown account and wrong password answer alike. */
    assert_int_equal(login(&c, a.code, a.email, "wrong-password-123", NULL),
                     KR_ERR_UNAUTHENTICATED);
    assert_int_equal(login(&c, a.code, "nobody@flow.example.jp", PASSWORD, NULL),
                     KR_ERR_UNAUTHENTICATED);
    assert_int_equal(login(&c, "no-such-tenant", a.email, PASSWORD, NULL), KR_ERR_UNAUTHENTICATED);

    uint8_t writer[16], wtok[32], rtok[32], kept[16];
    flow_users(&c, &a, writer, wtok, rtok);
    flow_contacts(&c, wtok, kept);
    flow_audit(&c, &a, writer);
    flow_notices(&c, &a);
    flow_incidents(&c, &a);

    /* The utility program: the master only. */
    ac_u64(&c, KR_FLD_LIMIT, 1000);
    assert_int_equal(ac_call(&c, KR_OP_UTILITY_EXPORT, a.token), AC_OK);
    const msgpack_object *l = ac_res_list(&c);
    assert_int_equal(l->via.array.size, 1);
    int i = ac_find_id(l, KR_FLD_CONTACT, kept);
    assert_true(i == 0);
    assert_true(ac_str_eq(ac_get(&l->via.array.ptr[0], KR_FLD_NAME), "山田 太郎"));
    assert_true(ac_str_eq(ac_get(&l->via.array.ptr[0], KR_FLD_NOTE), "prefers e-mail"));
    assert_int_equal(ac_call(&c, KR_OP_UTILITY_EXPORT, wtok), KR_ERR_FORBIDDEN);
    assert_int_equal(ac_call(&c, KR_OP_UTILITY_EXPORT, rtok), KR_ERR_FORBIDDEN);
    uint8_t atok[32];
    assert_int_equal(login(&c, a.code, "auditor@flow.example.jp", PASSWORD, atok), AC_OK);
    assert_int_equal(ac_call(&c, KR_OP_UTILITY_EXPORT, atok), KR_ERR_FORBIDDEN);
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_LIST, atok), KR_ERR_FORBIDDEN);

    /* A password change ends every session of the account. */
    uint8_t wtok2[32];
    assert_int_equal(login(&c, a.code, "writer@flow.example.jp", PASSWORD, wtok2), AC_OK);
    ac_str(&c, KR_FLD_PASSWORD, "not-the-password-1");
    ac_str(&c, KR_FLD_NEW_PASSWORD, PASSWORD_NEW);
    assert_int_equal(ac_call(&c, KR_OP_ACCOUNT_PASSWORD, wtok), KR_ERR_UNAUTHENTICATED);
    ac_str(&c, KR_FLD_PASSWORD, PASSWORD);
    ac_str(&c, KR_FLD_NEW_PASSWORD, PASSWORD_NEW);
    assert_int_equal(ac_call(&c, KR_OP_ACCOUNT_PASSWORD, wtok), AC_OK);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_WHOAMI, wtok), KR_ERR_UNAUTHENTICATED);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_WHOAMI, wtok2), KR_ERR_UNAUTHENTICATED);
    assert_int_equal(login(&c, a.code, "writer@flow.example.jp", PASSWORD, NULL),
                     KR_ERR_UNAUTHENTICATED);
    assert_int_equal(login(&c, a.code, "writer@flow.example.jp", PASSWORD_NEW, wtok), AC_OK);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_WHOAMI, wtok), AC_OK);

    /* Logout ends the session; other sessions go on. */
    assert_int_equal(ac_call(&c, KR_OP_AUTH_LOGOUT, a.token), AC_OK);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_WHOAMI, a.token), KR_ERR_UNAUTHENTICATED);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_LOGOUT, a.token), KR_ERR_UNAUTHENTICATED);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_WHOAMI, wtok), AC_OK);
    ac_close(&c);
}

/* ---- Tenant isolation over the wire ---- */

/* Ids of one tenant's objects. */
struct objs {
    uint8_t contact[16], tag[16], account[16], notice[16], incident[16], own_contact[16];
    uint64_t contact_v, tag_v, account_v;
    const char *attr_key;
};

/* Sets op's arguments from o; returns false for ops that take no such id. */
static bool probe_args(struct ac *c, int op, const struct objs *o)
{
    switch (op) {
    case KR_OP_CONTACTS_GET:
        ac_bin(c, KR_FLD_CONTACT, o->contact, 16);
        return true;
    case KR_OP_CONTACTS_UPDATE:
        ac_bin(c, KR_FLD_CONTACT, o->contact, 16);
        ac_u64(c, KR_FLD_VERSION, o->contact_v);
        ac_str(c, KR_FLD_NAME, "Overwritten");
        return true;
    case KR_OP_CONTACTS_DELETE:
        ac_bin(c, KR_FLD_CONTACT, o->contact, 16);
        ac_u64(c, KR_FLD_VERSION, o->contact_v);
        return true;
    case KR_OP_CONTACTS_TAG:
    case KR_OP_CONTACTS_UNTAG:
        ac_bin(c, KR_FLD_CONTACT, o->contact, 16);
        ac_bin(c, KR_FLD_TAG, o->tag, 16);
        return true;
    case KR_OP_CONTACTS_SET:
        ac_bin(c, KR_FLD_CONTACT, o->contact, 16);
        ac_str(c, KR_FLD_ATTRIBUTE_KEY, o->attr_key);
        ac_str(c, KR_FLD_VALUE, "overwritten");
        return true;
    case KR_OP_CONTACTS_LIST:
        ac_bin(c, KR_FLD_TAG, o->tag, 16);
        return true;
    case KR_OP_TAGS_RENAME:
        ac_bin(c, KR_FLD_TAG, o->tag, 16);
        ac_str(c, KR_FLD_TAG_NAME, "renamed by another tenant");
        ac_u64(c, KR_FLD_VERSION, o->tag_v);
        return true;
    case KR_OP_TAGS_DELETE:
        ac_bin(c, KR_FLD_TAG, o->tag, 16);
        ac_u64(c, KR_FLD_VERSION, o->tag_v);
        return true;
    case KR_OP_USERS_GRANT:
    case KR_OP_USERS_REVOKE:
        ac_bin(c, KR_FLD_ACCOUNT, o->account, 16);
        ac_enums(c, KR_FLD_PERMISSIONS, PERM(CONTACTS_READ));
        ac_u64(c, KR_FLD_VERSION, o->account_v);
        return true;
    case KR_OP_USERS_DELETE:
    case KR_OP_USERS_LOCK:
    case KR_OP_USERS_UNLOCK:
        ac_bin(c, KR_FLD_ACCOUNT, o->account, 16);
        ac_u64(c, KR_FLD_VERSION, o->account_v);
        return true;
    case KR_OP_NOTICES_ACK:
        ac_bin(c, KR_FLD_NOTICE, o->notice, 16);
        return true;
    case KR_OP_INCIDENTS_ACK:
    case KR_OP_INCIDENTS_HISTORY:
        ac_bin(c, KR_FLD_INCIDENT, o->incident, 16);
        return true;
    default:
        return false;
    }
}

/* The error of the last reply ({code, message}) as text. */
static void last_error(const struct ac *c, char *out, size_t cap)
{
    const msgpack_object *e = NULL;
    for (uint32_t i = 0; i < c->u.data.via.map.size; i++)
        if (ac_str_eq(&c->u.data.via.map.ptr[i].key, API_KEY_ERROR))
            e = &c->u.data.via.map.ptr[i].val;
    if (!e) {
        fail_msg("a reply without an error");
        return;
    }
    assert_true(msgpack_object_print_buffer(out, cap, *e) > 0);
}

/* The reply to `op` with another tenant's ids must be the reply to it with
 * ids that exist nowhere: not_found, word for word. Tag filters of a list
 * and ids on one's own objects are probed the same way. */
static void probe(struct ac *c, const uint8_t tok[32], int op, const struct objs *theirs,
                  const struct objs *missing)
{
    if (!probe_args(c, op, theirs))
        return;
    int rc = ac_call(c, op, tok);
    char got[256], want[256];
    if (rc == AC_OK) {
        snprintf(got, sizeof got, "ok");
    } else {
        last_error(c, got, sizeof got);
    }
    assert_true(probe_args(c, op, missing));
    int rc2 = ac_call(c, op, tok);
    if (rc2 == AC_OK) {
        snprintf(want, sizeof want, "ok");
    } else {
        last_error(c, want, sizeof want);
    }
    if (rc != KR_ERR_NOT_FOUND || strcmp(got, want) != 0)
        print_error("%s with another tenant's ids: %s; with missing ids: %s\n", kr_ops[op].name,
                    got, want);
    assert_int_equal(rc, KR_ERR_NOT_FOUND);
    assert_string_equal(got, want);
}

static void test_cross_tenant(void **state)
{
    (void)state;
    struct tenant a, b;
    signup("owner@victim.example.jp", "Victim shop", &a);
    signup("owner@prober.example.jp", "Prober shop", &b);
    struct ac c;
    ac_open(&c, srv.tcp);

    /* The victim's objects. */
    struct objs o = {.attr_key = "secret_attr"}, m = {.attr_key = "missing_attr"}, own;
    ac_str(&c, KR_FLD_NAME, "Victim's customer");
    ac_str(&c, KR_FLD_EMAIL, "customer@victim.example.jp");
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_REGISTER, a.token), AC_OK);
    ac_res_id(&c, KR_FLD_CONTACT, o.contact);
    o.contact_v = ac_res_u64(&c, KR_FLD_VERSION);
    ac_str(&c, KR_FLD_TAG_NAME, "victim-tag");
    assert_int_equal(ac_call(&c, KR_OP_TAGS_CREATE, a.token), AC_OK);
    ac_res_id(&c, KR_FLD_TAG, o.tag);
    o.tag_v = ac_res_u64(&c, KR_FLD_VERSION);
    ac_str(&c, KR_FLD_ATTRIBUTE_KEY, o.attr_key);
    ac_enum(&c, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_STRING);
    assert_int_equal(ac_call(&c, KR_OP_ATTRIBUTES_DEFINE, a.token), AC_OK);
    ac_bin(&c, KR_FLD_CONTACT, o.contact, 16);
    ac_bin(&c, KR_FLD_TAG, o.tag, 16);
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_TAG, a.token), AC_OK);
    ac_bin(&c, KR_FLD_CONTACT, o.contact, 16);
    ac_str(&c, KR_FLD_ATTRIBUTE_KEY, o.attr_key);
    ac_str(&c, KR_FLD_VALUE, "victim value");
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_SET, a.token), AC_OK);
    o.account_v = user_create(&c, &a, "staff@victim.example.jp", KR_ROLE_USER, PERM(CONTACTS_READ),
                              o.account);
    struct ac op;
    ac_open(&op, srv.op_url);
    ac_enum(&op, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_MAINTENANCE);
    ac_str(&op, KR_FLD_TITLE, "Victim-only maintenance");
    ac_str(&op, KR_FLD_BODY, "For the victim only.");
    ac_u64(&op, KR_FLD_EFFECTIVE, now_ns());
    ac_enum(&op, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    ac_tenants(&op, KR_FLD_TENANTS, &a.id, 1);
    assert_int_equal(ac_call(&op, KR_OP_NOTICES_PUBLISH, op_token), AC_OK);
    ac_res_id(&op, KR_FLD_NOTICE, o.notice);
    ac_enum(&op, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_OUTAGE);
    ac_enum(&op, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    ac_str(&op, KR_FLD_TITLE, "Victim-only outage");
    ac_str(&op, KR_FLD_SUMMARY, "For the victim only.");
    ac_u64(&op, KR_FLD_DETECTED, now_ns() - HOUR_NS);
    ac_enum(&op, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    ac_tenants(&op, KR_FLD_TENANTS, &a.id, 1);
    assert_int_equal(ac_call(&op, KR_OP_INCIDENTS_OPEN, op_token), AC_OK);
    ac_res_id(&op, KR_FLD_INCIDENT, o.incident);
    ac_close(&op);
    /* The victim's contact, as it is before the probing. */
    ac_bin(&c, KR_FLD_CONTACT, o.contact, 16);
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_GET, a.token), AC_OK);
    msgpack_sbuffer before;
    msgpack_sbuffer_init(&before);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &before, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *ac_result(&c));

    /* Ids that exist nowhere. */
    randombytes_buf(m.contact, 16);
    randombytes_buf(m.tag, 16);
    randombytes_buf(m.account, 16);
    randombytes_buf(m.notice, 16);
    randombytes_buf(m.incident, 16);
    m.contact_v = o.contact_v;
    m.tag_v = o.tag_v;
    m.account_v = o.account_v;

    /* The prober: every op that takes an id, with the victim's ids. */
    for (int op_id = 0; op_id < KR_OP__COUNT; op_id++)
        if (kr_ops[op_id].endpoint == KR_ENDPOINT_CLIENT)
            probe(&c, b.token, op_id, &o, &m);
    /* The prober's own contact with the victim's tag and attribute. */
    ac_str(&c, KR_FLD_NAME, "Prober's customer");
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_REGISTER, b.token), AC_OK);
    own = o;
    ac_res_id(&c, KR_FLD_CONTACT, own.contact);
    struct objs own_missing = m;
    memcpy(own_missing.contact, own.contact, 16);
    probe(&c, b.token, KR_OP_CONTACTS_TAG, &own, &own_missing);
    probe(&c, b.token, KR_OP_CONTACTS_UNTAG, &own, &own_missing);
    probe(&c, b.token, KR_OP_CONTACTS_SET, &own, &own_missing);

    /* The prober's lists hold nothing of the victim's. */
    static const int lists[] = {KR_OP_CONTACTS_LIST,  KR_OP_TAGS_LIST,       KR_OP_USERS_LIST,
                                KR_OP_UTILITY_EXPORT, KR_OP_ATTRIBUTES_LIST, KR_OP_NOTICES_LIST};
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        assert_int_equal(ac_call(&c, lists[k], b.token), AC_OK);
        const msgpack_object *l = ac_res_list(&c);
        assert_true(ac_find_id(l, KR_FLD_CONTACT, o.contact) < 0);
        assert_true(ac_find_id(l, KR_FLD_TAG, o.tag) < 0);
        assert_true(ac_find_id(l, KR_FLD_ACCOUNT, o.account) < 0);
        assert_true(ac_find_id(l, KR_FLD_ACCOUNT, a.master) < 0);
        assert_true(ac_find_id(l, KR_FLD_NOTICE, o.notice) < 0);
        for (uint32_t i = 0; i < l->via.array.size; i++)
            assert_false(ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_ATTRIBUTE_KEY), o.attr_key));
    }
    /* The audit view holds only the prober's own history. */
    char actor[64], hex[33];
    sodium_bin2hex(hex, sizeof hex, a.master, 16);
    snprintf(actor, sizeof actor, "account/%s", hex);
    ac_u64(&c, KR_FLD_LIMIT, 1000);
    assert_int_equal(ac_call(&c, KR_OP_AUDIT_LIST, b.token), AC_OK);
    const msgpack_object *l = ac_res_list(&c);
    for (uint32_t i = 0; i < l->via.array.size; i++)
        assert_false(ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_ACTOR), actor));
    ac_str(&c, KR_FLD_ACTOR, actor);
    assert_int_equal(ac_call(&c, KR_OP_AUDIT_LIST, b.token), AC_OK);
    assert_int_equal(ac_res_list(&c)->via.array.size, 0);
    /* The victim's staff cannot log in under the prober's tenant code. */
    assert_int_equal(login(&c, b.code, "staff@victim.example.jp", PASSWORD, NULL),
                     KR_ERR_UNAUTHENTICATED);

    /* The victim's data is as it was. */
    ac_bin(&c, KR_FLD_CONTACT, o.contact, 16);
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_GET, a.token), AC_OK);
    msgpack_sbuffer after;
    msgpack_sbuffer_init(&after);
    msgpack_packer_init(&pk, &after, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *ac_result(&c));
    assert_int_equal(after.size, before.size);
    assert_memory_equal(after.data, before.data, before.size);
    msgpack_sbuffer_destroy(&after);
    msgpack_sbuffer_destroy(&before);
    assert_int_equal(ac_call(&c, KR_OP_TAGS_LIST, a.token), AC_OK);
    l = ac_res_list(&c);
    int i = ac_find_id(l, KR_FLD_TAG, o.tag);
    assert_true(i >= 0);
    assert_true(ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_TAG_NAME), "victim-tag"));
    assert_true(ac_get(&l->via.array.ptr[i], KR_FLD_VERSION)->via.u64 == o.tag_v);
    assert_int_equal(ac_call(&c, KR_OP_USERS_LIST, a.token), AC_OK);
    l = ac_res_list(&c);
    i = ac_find_id(l, KR_FLD_ACCOUNT, o.account);
    assert_true(i >= 0);
    assert_true(ac_get(&l->via.array.ptr[i], KR_FLD_VERSION)->via.u64 == o.account_v);
    assert_true(perms_of(ac_get(&l->via.array.ptr[i], KR_FLD_PERMISSIONS)) == PERM(CONTACTS_READ));
    assert_int_equal(login(&c, a.code, "staff@victim.example.jp", PASSWORD, NULL), AC_OK);
    assert_int_equal(ac_call(&c, KR_OP_NOTICES_LIST, a.token), AC_OK);
    i = ac_find_id(ac_res_list(&c), KR_FLD_NOTICE, o.notice);
    assert_true(i >= 0);
    /* The prober's token against the victim's tenant code means nothing:
     * the session decides. */
    assert_int_equal(ac_call(&c, KR_OP_AUTH_WHOAMI, b.token), AC_OK);
    assert_true(ac_str_eq(ac_get(ac_result(&c), KR_FLD_TENANT_CODE), b.code));
    ac_close(&c);
}

/* ---- Endpoints ---- */

/* A valid value of field f for a request (what a schema-aware client would
 * send), so that access is what decides. */
static void fill_field(struct ac *c, int f)
{
    const struct kr_field_def *d = &kr_fields[f];
    uint8_t bytes[64];
    char s[80];
    randombytes_buf(bytes, sizeof bytes);
    size_t n = d->min > 4 ? (size_t)d->min : 4;
    if (n > d->max)
        n = (size_t)d->max;
    if (n >= sizeof s)
        n = sizeof s - 1;
    switch (d->type) {
    case KR_FT_ID:
        ac_bin(c, f, bytes, 16);
        break;
    case KR_FT_HASH:
        ac_bin(c, f, bytes, 32);
        break;
    case KR_FT_BIN:
        ac_bin(c, f, bytes, (size_t)d->min);
        break;
    case KR_FT_TENANT:
        ac_u64(c, f, 1);
        break;
    case KR_FT_U64:
        ac_u64(c, f, d->min > 1 ? d->min : 1);
        break;
    case KR_FT_TIME:
        ac_u64(c, f, now_ns());
        break;
    case KR_FT_BOOL:
        ac_value_bool(c, f, true);
        break;
    case KR_FT_EMAIL:
        ac_str(c, f, "probe@example.jp");
        break;
    case KR_FT_ENUM:
        ac_enum(c, f, 0);
        break;
    case KR_FT_VALUE:
        ac_str(c, f, "x");
        break;
    case KR_FT_LIST:
        if (d->of == KR_FT_TENANT) {
            uint64_t t = 1;
            ac_tenants(c, f, &t, 1);
        } else {
            ac_enums(c, f, 1);
        }
        break;
    case KR_FT_STR:
        memset(s, d->charset == KR_CS_DIGITS || d->charset == KR_CS_PHONE ? '1' : 'a', n);
        s[n] = '\0';
        ac_str(c, f, s);
        break;
    }
}

static void fill_required(struct ac *c, int op)
{
    for (uint32_t i = 0; i < kr_ops[op].nargs; i++)
        if (!kr_ops[op].args[i].optional)
            fill_field(c, kr_ops[op].args[i].field);
}

static void test_operator_ops_on_client_endpoint(void **state)
{
    (void)state;
    struct tenant t;
    signup("owner@endpoints.example.jp", "Endpoint shop", &t);
    struct ac c, op;
    ac_open(&c, srv.tcp);
    ac_open(&op, srv.op_url);
    uint8_t aud[16], atok[32];
    user_create(&c, &t, "auditor@endpoints.example.jp", KR_ROLE_AUDITOR, 0, aud);
    assert_int_equal(login(&c, t.code, "auditor@endpoints.example.jp", PASSWORD, atok), AC_OK);
    /* An operator's session is for the operator endpoint only, even for
     * ops operators may call. */
    assert_int_equal(ac_call(&c, KR_OP_AUTH_WHOAMI, op_token), KR_ERR_FORBIDDEN);
    assert_int_equal(ac_call(&op, KR_OP_AUTH_WHOAMI, op_token), AC_OK);
    assert_true(role_is(ac_get(ac_result(&op), KR_FLD_ROLE), KR_ROLE_OPERATOR));
    size_t n = 0;
    for (int o = 0; o < KR_OP__COUNT; o++) {
        if (kr_ops[o].endpoint != KR_ENDPOINT_OPERATOR)
            continue;
        n++;
        bool journal = (kr_ops[o].roles & KR_ROLEBIT_AUDITOR) != 0;
        /* The operator's token: forbidden on the client endpoint, every op. */
        fill_required(&c, o);
        int rc = ac_call(&c, o, op_token);
        if (rc != KR_ERR_FORBIDDEN)
            print_error("operator op %s on the client endpoint: %s\n", kr_ops[o].name,
                        rc == AC_OK ? "ok" : kr_api_errors[rc].name);
        assert_int_equal(rc, KR_ERR_FORBIDDEN);
        /* A master's: forbidden too. */
        fill_required(&c, o);
        assert_int_equal(ac_call(&c, o, t.token), KR_ERR_FORBIDDEN);
        /* An auditor's: only the journal ops. */
        if (!journal) {
            fill_required(&c, o);
            assert_int_equal(ac_call(&c, o, atok), KR_ERR_FORBIDDEN);
        }
        /* Without a token. */
        fill_required(&c, o);
        assert_int_equal(ac_call(&c, o, NULL), KR_ERR_UNAUTHENTICATED);
    }
    assert_true(n >= 10);
    /* A tenant's session on the operator endpoint is no operator. */
    ac_u64(&op, KR_FLD_LIMIT, 10);
    assert_int_equal(ac_call(&op, KR_OP_TENANTS_LIST, t.token), KR_ERR_FORBIDDEN);
    ac_u64(&op, KR_FLD_LIMIT, 10);
    assert_int_equal(ac_call(&op, KR_OP_TENANTS_LIST, op_token), AC_OK);
    ac_close(&op);
    ac_close(&c);
}

/* ---- Operators manage each other ---- */

/* operators.create over the operator endpoint makes an operator who logs
 * in there; another operator's lock ends its session, unlock and delete
 * work with the listed version. */
static void test_operators_over_the_wire(void **state)
{
    (void)state;
    struct ac op;
    ac_open(&op, srv.op_url);
    uint8_t id[16], tok[32];
    ac_str(&op, KR_FLD_EMAIL, "second-op@example.jp");
    ac_str(&op, KR_FLD_PASSWORD, "second op pass 1");
    ac_str(&op, KR_FLD_DISPLAY_NAME, "Second");
    assert_int_equal(ac_call(&op, KR_OP_OPERATORS_CREATE, op_token), AC_OK);
    ac_res_id(&op, KR_FLD_ACCOUNT, id);
    assert_int_equal(ac_res_u64(&op, KR_FLD_VERSION), 1);
    assert_int_equal(login(&op, KR_PLATFORM_CODE, "second-op@example.jp", "second op pass 1", tok),
                     AC_OK);
    assert_true(role_is(ac_get(ac_result(&op), KR_FLD_ROLE), KR_ROLE_OPERATOR));
    assert_int_equal(ac_call(&op, KR_OP_OPERATORS_LIST, tok), AC_OK);
    const msgpack_object *l = ac_res_list(&op);
    int i = ac_find_id(l, KR_FLD_ACCOUNT, id);
    assert_true(i >= 0);
    assert_true(ac_str_eq(ac_get(&l->via.array.ptr[i], KR_FLD_EMAIL), "second-op@example.jp"));
    assert_int_equal(ac_get(&l->via.array.ptr[i], KR_FLD_VERSION)->via.u64, 1);
    ac_bin(&op, KR_FLD_ACCOUNT, id, 16);
    ac_u64(&op, KR_FLD_VERSION, 1);
    assert_int_equal(ac_call(&op, KR_OP_OPERATORS_LOCK, op_token), AC_OK);
    assert_int_equal(ac_call(&op, KR_OP_AUTH_WHOAMI, tok), KR_ERR_UNAUTHENTICATED);
    assert_int_equal(login(&op, KR_PLATFORM_CODE, "second-op@example.jp", "second op pass 1", NULL),
                     KR_ERR_LOCKED);
    ac_bin(&op, KR_FLD_ACCOUNT, id, 16);
    ac_u64(&op, KR_FLD_VERSION, 2);
    assert_int_equal(ac_call(&op, KR_OP_OPERATORS_UNLOCK, op_token), AC_OK);
    /* Not on the caller's own account (refused by the handler, on the
     * server's asynchronous path too). */
    uint8_t me[16];
    assert_int_equal(ac_call(&op, KR_OP_AUTH_WHOAMI, op_token), AC_OK);
    ac_res_id(&op, KR_FLD_ACCOUNT, me);
    ac_bin(&op, KR_FLD_ACCOUNT, me, 16);
    ac_u64(&op, KR_FLD_VERSION, 1);
    assert_int_equal(ac_call(&op, KR_OP_OPERATORS_LOCK, op_token), KR_ERR_FORBIDDEN);
    ac_bin(&op, KR_FLD_ACCOUNT, me, 16);
    ac_u64(&op, KR_FLD_VERSION, 1);
    assert_int_equal(ac_call(&op, KR_OP_OPERATORS_DELETE, op_token), KR_ERR_FORBIDDEN);
    assert_int_equal(ac_call(&op, KR_OP_AUTH_WHOAMI, op_token), AC_OK);
    ac_bin(&op, KR_FLD_ACCOUNT, id, 16);
    ac_u64(&op, KR_FLD_VERSION, 3);
    assert_int_equal(ac_call(&op, KR_OP_OPERATORS_DELETE, op_token), AC_OK);
    assert_int_equal(login(&op, KR_PLATFORM_CODE, "second-op@example.jp", "second op pass 1", NULL),
                     KR_ERR_UNAUTHENTICATED);
    ac_close(&op);
}

/* ---- An auditor reads its tenant's journal ---- */

/* Parses a checkpoint note's size and root (its body: origin, size, root). */
static void checkpoint_parse(const msgpack_object *note, uint64_t *size, uint8_t root[32])
{
    assert_non_null(note);
    assert_int_equal(note->type, MSGPACK_OBJECT_STR);
    char text[KR_NOTE_MAX + 1];
    assert_true(note->via.str.size < sizeof text);
    memcpy(text, note->via.str.ptr, note->via.str.size);
    text[note->via.str.size] = '\0';
    char *l1 = strchr(text, '\n');
    assert_non_null(l1);
    char *l2 = strchr(l1 + 1, '\n');
    assert_non_null(l2);
    char *l3 = strchr(l2 + 1, '\n');
    assert_non_null(l3);
    *size = strtoull(l1 + 1, NULL, 10);
    assert_true(*size > 0);
    size_t n;
    assert_int_equal(kr_b64_decode(root, 32, l2 + 1, (size_t)(l3 - l2 - 1), &n), KR_OK);
    assert_int_equal(n, 32);
}

static void test_auditor_journal(void **state)
{
    (void)state;
    struct tenant t, other;
    signup("owner@audited.example.jp", "Audited shop", &t);
    signup("owner@unaudited.example.jp", "Unaudited shop", &other);
    struct ac c;
    ac_open(&c, srv.tcp);
    uint8_t aud[16], atok[32], utok[32], user[16];
    user_create(&c, &t, "auditor@audited.example.jp", KR_ROLE_AUDITOR, 0, aud);
    user_create(&c, &t, "user@audited.example.jp", KR_ROLE_USER,
                PERM(CONTACTS_READ) | PERM(AUDIT_READ), user);
    assert_int_equal(login(&c, t.code, "auditor@audited.example.jp", PASSWORD, atok), AC_OK);
    assert_true(role_is(ac_get(ac_result(&c), KR_FLD_ROLE), KR_ROLE_AUDITOR));
    assert_int_equal(login(&c, t.code, "user@audited.example.jp", PASSWORD, utok), AC_OK);
    ac_str(&c, KR_FLD_NAME, "Audited customer");
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_REGISTER, t.token), AC_OK);
    /* Activity in the other tenant, interleaved. */
    ac_str(&c, KR_FLD_NAME, "Other customer");
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_REGISTER, other.token), AC_OK);

    /* Neither a master nor a user may read the journal. */
    ac_u64(&c, KR_FLD_SEQ, 1);
    assert_int_equal(ac_call(&c, KR_OP_JOURNAL_READ, t.token), KR_ERR_FORBIDDEN);
    ac_u64(&c, KR_FLD_SEQ, 1);
    assert_int_equal(ac_call(&c, KR_OP_JOURNAL_READ, utok), KR_ERR_FORBIDDEN);
    assert_int_equal(ac_call(&c, KR_OP_JOURNAL_CHECKPOINT, utok), KR_ERR_FORBIDDEN);

    /* The auditor reads the whole journal, page by page: every record it
     * gets is its tenant's, in seq order. */
    assert_int_equal(ac_call(&c, KR_OP_JOURNAL_CHECKPOINT, atok), AC_OK);
    uint64_t size;
    uint8_t root[32];
    checkpoint_parse(ac_get(ac_result(&c), KR_FLD_CHECKPOINT), &size, root);
    uint64_t from = 1, got = 0, last = 0, pages = 0, mine = 0;
    uint8_t leaf[32];
    bool created = false;
    for (;;) {
        assert_true(pages++ < 100000);
        ac_u64(&c, KR_FLD_SEQ, from);
        ac_u64(&c, KR_FLD_LIMIT, JOURNAL_PAGE);
        assert_int_equal(ac_call(&c, KR_OP_JOURNAL_READ, atok), AC_OK);
        const msgpack_object *l = ac_res_list(&c);
        if (l->via.array.size == 0)
            break;
        for (uint32_t i = 0; i < l->via.array.size; i++) {
            const msgpack_object *rec = ac_get(&l->via.array.ptr[i], KR_FLD_RECORD);
            uint64_t seq = ac_get(&l->via.array.ptr[i], KR_FLD_SEQ)->via.u64;
            assert_true(rec && rec->type == MSGPACK_OBJECT_BIN);
            struct jrn_record r;
            assert_int_equal(
                jrn_record_decode((const uint8_t *)rec->via.bin.ptr, rec->via.bin.size, &r), KR_OK);
            assert_true(r.seq == seq);
            assert_true(seq > last);
            last = seq;
            assert_true(r.tenant == t.id);
            created |= r.type_len == strlen(kr_events[KR_EV_ACCOUNT_CREATED].name) &&
                       memcmp(r.type, kr_events[KR_EV_ACCOUNT_CREATED].name, r.type_len) == 0;
            if (seq <= size && !mine) {
                mine = seq;
                jrn_record_leaf_hash(&r, leaf);
            }
            got++;
        }
        from = last + 1;
    }
    assert_true(got >= 5);
    assert_true(created);
    /* Its records are provably in the signed tree. */
    assert_true(mine > 0);
    ac_u64(&c, KR_FLD_SEQ, mine);
    ac_u64(&c, KR_FLD_SIZE, size);
    assert_int_equal(ac_call(&c, KR_OP_JOURNAL_PROOF, atok), AC_OK);
    const msgpack_object *p = ac_get(ac_result(&c), KR_FLD_PROOF);
    assert_true(p && p->type == MSGPACK_OBJECT_BIN && p->via.bin.size % 32 == 0);
    assert_int_equal(mrk_verify_inclusion(leaf, mine - 1, size,
                                          (const uint8_t(*)[KR_HASH_LEN])p->via.bin.ptr,
                                          p->via.bin.size / 32, root),
                     KR_OK);
    /* The operator reads every tenant's records. */
    struct ac op;
    ac_open(&op, srv.op_url);
    ac_u64(&op, KR_FLD_SEQ, 1);
    ac_u64(&op, KR_FLD_LIMIT, 10);
    assert_int_equal(ac_call(&op, KR_OP_JOURNAL_READ, op_token), AC_OK);
    assert_int_equal(ac_res_list(&op)->via.array.size, 10);
    ac_close(&op);
    /* The auditor reads and changes nothing else. */
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_LIST, atok), KR_ERR_FORBIDDEN);
    ac_str(&c, KR_FLD_NAME, "Auditor's customer");
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_REGISTER, atok), KR_ERR_FORBIDDEN);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_WHOAMI, atok), AC_OK);
    ac_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow),
        cmocka_unit_test(test_cross_tenant),
        cmocka_unit_test(test_operator_ops_on_client_endpoint),
        cmocka_unit_test(test_operators_over_the_wire),
        cmocka_unit_test(test_auditor_journal),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
