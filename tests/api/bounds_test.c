/*
 * bounds_test.c: arguments at exactly the schema's maximum length
 * (KR_FLD_<NAME>_MAX, generated from schemas/fields.json) work end to end,
 * through the real `kiroku serve` over nng: stored, indexed by name where the
 * view keys on them (tag names, attribute keys), read back byte for byte, and
 * e-mailed (the longest address). One byte more is `too_large`. The C
 * buffers these values pass through are sized from the same macros, so this
 * also holds when the schema widens a field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api_client.h"

#include "accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODE_NEEDLE "Auth code: " /* the sign-up e-mail (api/templates/en) */

static struct ac_server srv;
static uint8_t op_token[32], master_token[32];

/* Logs in; returns the reply's code and the token into token. */
static int login(struct ac *c, const char *code, const char *email, const char *password,
                 uint8_t token[32])
{
    ac_str(c, KR_FLD_TENANT_CODE, code);
    ac_str(c, KR_FLD_EMAIL, email);
    ac_str(c, KR_FLD_PASSWORD, password);
    int rc = ac_call(c, KR_OP_AUTH_LOGIN, NULL);
    if (rc == AC_OK) {
        const msgpack_object *t = ac_get(ac_result(c), KR_FLD_TOKEN);
        assert_non_null(t);
        assert_int_equal(t->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(t->via.bin.size, 32);
        memcpy(token, t->via.bin.ptr, 32);
    }
    return rc;
}

static int group_setup(void **state)
{
    (void)state;
    ac_server_start(&srv);
    struct ac c;
    ac_open(&c, srv.op_url);
    assert_int_equal(login(&c, KR_PLATFORM_CODE, srv.op_email, srv.op_password, op_token), AC_OK);
    ac_close(&c);
    ac_open(&c, srv.tcp);
    assert_int_equal(login(&c, srv.demo_code, srv.demo_email, srv.demo_password, master_token),
                     AC_OK);
    ac_close(&c);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    assert_int_equal(ac_server_stop(&srv), 0);
    return 0;
}

/* out: exactly n bytes of UTF-8 text (NUL after): `unit` repeated while it
 * fits, then `pad` bytes; distinct texts for distinct `pad`. */
static void text_of(char *out, size_t n, const char *unit, char pad)
{
    size_t u = strlen(unit), i = 0;
    while (i + u <= n - 1) {
        memcpy(out + i, unit, u);
        i += u;
    }
    memset(out + i, pad, n - i);
    out[n] = '\0';
}

/* Whether str object o holds exactly s. */
static bool str_is(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* The entry of the last result's list whose field fld holds s, or NULL. */
static const msgpack_object *entry_with(const struct ac *c, int fld, const char *s)
{
    const msgpack_object *l = ac_res_list(c);
    for (uint32_t i = 0; i < l->via.array.size; i++)
        if (str_is(ac_get(&l->via.array.ptr[i], fld), s))
            return &l->via.array.ptr[i];
    return NULL;
}

/* Tag names are keys of v.tag_names (tenant + name): a name of the most
 * bytes the schema allows is created, found by name (a second tag of that
 * name is a conflict), listed, and renamed to another such name. */
static void test_tag_name_at_max(void **state)
{
    (void)state;
    char name[KR_FLD_TAG_NAME_MAX + 2], other[KR_FLD_TAG_NAME_MAX + 1];
    text_of(name, KR_FLD_TAG_NAME_MAX, "\xe3\x82\xbf", 'a'); /* "タ": 3 bytes each */
    text_of(other, KR_FLD_TAG_NAME_MAX, "\xe3\x82\xb0", 'b');
    struct ac c;
    ac_open(&c, srv.tcp);

    ac_str(&c, KR_FLD_TAG_NAME, name);
    assert_int_equal(ac_call(&c, KR_OP_TAGS_CREATE, master_token), AC_OK);
    uint8_t tag[16];
    ac_res_id(&c, KR_FLD_TAG, tag);
    uint64_t version = ac_res_u64(&c, KR_FLD_VERSION);

    ac_str(&c, KR_FLD_TAG_NAME, name);
    assert_int_equal(ac_call(&c, KR_OP_TAGS_CREATE, master_token), KR_ERR_CONFLICT);

    ac_u64(&c, KR_FLD_LIMIT, 1000);
    assert_int_equal(ac_call(&c, KR_OP_TAGS_LIST, master_token), AC_OK);
    assert_non_null(entry_with(&c, KR_FLD_TAG_NAME, name));

    ac_bin(&c, KR_FLD_TAG, tag, 16);
    ac_str(&c, KR_FLD_TAG_NAME, other);
    ac_u64(&c, KR_FLD_VERSION, version);
    assert_int_equal(ac_call(&c, KR_OP_TAGS_RENAME, master_token), AC_OK);
    ac_u64(&c, KR_FLD_LIMIT, 1000);
    assert_int_equal(ac_call(&c, KR_OP_TAGS_LIST, master_token), AC_OK);
    assert_non_null(entry_with(&c, KR_FLD_TAG_NAME, other));
    assert_null(entry_with(&c, KR_FLD_TAG_NAME, name));

    /* One byte more is too large. */
    text_of(name, KR_FLD_TAG_NAME_MAX + 1, "\xe3\x82\xbf", 'c');
    ac_str(&c, KR_FLD_TAG_NAME, name);
    assert_int_equal(ac_call(&c, KR_OP_TAGS_CREATE, master_token), KR_ERR_TOO_LARGE);
    ac_close(&c);
}

/* Attribute keys are keys of v.attribute_keys: a key of the most bytes is
 * defined, listed, and set on a contact whose name and value are of the most
 * bytes too; contacts.get gives them back. */
static void test_attribute_and_contact_at_max(void **state)
{
    (void)state;
    char key[KR_FLD_ATTRIBUTE_KEY_MAX + 2], name[KR_FLD_NAME_MAX + 1], value[KR_FLD_VALUE_MAX + 1];
    text_of(key, KR_FLD_ATTRIBUTE_KEY_MAX, "k", 'k');      /* charset "key": [a-z][a-z0-9_]* */
    text_of(name, KR_FLD_NAME_MAX, "\xe5\x90\x8d", 'n');   /* "名" */
    text_of(value, KR_FLD_VALUE_MAX, "\xe5\x80\xa4", 'v'); /* "値" */
    struct ac c;
    ac_open(&c, srv.tcp);

    ac_str(&c, KR_FLD_ATTRIBUTE_KEY, key);
    ac_enum(&c, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_STRING);
    assert_int_equal(ac_call(&c, KR_OP_ATTRIBUTES_DEFINE, master_token), AC_OK);
    assert_int_equal(ac_call(&c, KR_OP_ATTRIBUTES_LIST, master_token), AC_OK);
    assert_non_null(entry_with(&c, KR_FLD_ATTRIBUTE_KEY, key));

    ac_str(&c, KR_FLD_NAME, name);
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_REGISTER, master_token), AC_OK);
    uint8_t contact[16];
    ac_res_id(&c, KR_FLD_CONTACT, contact);

    ac_bin(&c, KR_FLD_CONTACT, contact, 16);
    ac_str(&c, KR_FLD_ATTRIBUTE_KEY, key);
    ac_str(&c, KR_FLD_VALUE, value);
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_SET, master_token), AC_OK);

    ac_bin(&c, KR_FLD_CONTACT, contact, 16);
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_GET, master_token), AC_OK);
    assert_true(str_is(ac_get(ac_result(&c), KR_FLD_NAME), name));
    const msgpack_object *attrs = ac_res_list_nth(&c, 1); /* after "tags" */
    bool found = false;
    for (uint32_t i = 0; i < attrs->via.array.size; i++) {
        const msgpack_object *e = &attrs->via.array.ptr[i];
        if (str_is(ac_get(e, KR_FLD_ATTRIBUTE_KEY), key)) {
            assert_true(str_is(ac_get(e, KR_FLD_VALUE), value));
            found = true;
        }
    }
    assert_true(found);

    /* One byte more is too large. */
    text_of(key, KR_FLD_ATTRIBUTE_KEY_MAX + 1, "k", 'k');
    ac_str(&c, KR_FLD_ATTRIBUTE_KEY, key);
    ac_enum(&c, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_STRING);
    assert_int_equal(ac_call(&c, KR_OP_ATTRIBUTES_DEFINE, master_token), KR_ERR_TOO_LARGE);
    ac_close(&c);
}

/* The longest e-mail address the schema allows (a 64-byte local part and
 * labels of at most 63 bytes) applies, and its auth code is e-mailed to it. */
static void test_email_at_max(void **state)
{
    (void)state;
    char email[KR_FLD_EMAIL_MAX + 2];
    size_t n = 0;
    memset(email, 'm', KR_EMAIL_LOCAL_MAX);
    n = KR_EMAIL_LOCAL_MAX;
    email[n++] = '@';
    while (KR_FLD_EMAIL_MAX - n > KR_EMAIL_LABEL_MAX + 1 + 2) { /* room for ".jp" at the end */
        memset(email + n, 'd', KR_EMAIL_LABEL_MAX);
        n += KR_EMAIL_LABEL_MAX;
        email[n++] = '.';
    }
    size_t last = KR_FLD_EMAIL_MAX - n - 3;
    memset(email + n, 'e', last);
    n += last;
    memcpy(email + n, ".jp", 4);
    n += 3;
    assert_int_equal(n, KR_FLD_EMAIL_MAX);

    struct ac c, op;
    ac_open(&c, srv.tcp);
    ac_open(&op, srv.op_url);
    ac_str(&c, KR_FLD_EMAIL, email);
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_APPLY, NULL), AC_OK);
    uint8_t app[16];
    ac_res_id(&c, KR_FLD_APPLICATION, app);
    ac_bin(&op, KR_FLD_APPLICATION, app, 16);
    ac_str(&op, KR_FLD_PAYMENT_REF, "pay-bounds-1");
    assert_int_equal(ac_call(&op, KR_OP_SIGNUP_CONFIRM_PAYMENT, op_token), AC_OK);
    char code[KR_FLD_AUTH_CODE_MAX + 1];
    assert_true(ac_mail_wait(&srv, email, CODE_NEEDLE, code, sizeof code));
    assert_true(strlen(code) >= 6);

    /* An auth code of the most digits is checked (and wrong); one more is too large. */
    char wrong[KR_FLD_AUTH_CODE_MAX + 2];
    text_of(wrong, KR_FLD_AUTH_CODE_MAX, "9", '9');
    ac_bin(&c, KR_FLD_APPLICATION, app, 16);
    ac_str(&c, KR_FLD_AUTH_CODE, wrong);
    ac_str(&c, KR_FLD_PASSWORD, "correct-horse-staple-42");
    ac_str(&c, KR_FLD_TENANT_NAME, "Bounds");
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_COMPLETE, NULL), KR_ERR_UNAUTHENTICATED);
    text_of(wrong, KR_FLD_AUTH_CODE_MAX + 1, "9", '9');
    ac_bin(&c, KR_FLD_APPLICATION, app, 16);
    ac_str(&c, KR_FLD_AUTH_CODE, wrong);
    ac_str(&c, KR_FLD_PASSWORD, "correct-horse-staple-42");
    ac_str(&c, KR_FLD_TENANT_NAME, "Bounds");
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_COMPLETE, NULL), KR_ERR_TOO_LARGE);

    /* The right code completes the sign-up: the tenant's name at its most bytes. */
    char tname[KR_FLD_TENANT_NAME_MAX + 1];
    text_of(tname, KR_FLD_TENANT_NAME_MAX, "\xe5\x90\x8d", 't');
    ac_bin(&c, KR_FLD_APPLICATION, app, 16);
    ac_str(&c, KR_FLD_AUTH_CODE, code);
    ac_str(&c, KR_FLD_PASSWORD, "correct-horse-staple-42");
    ac_str(&c, KR_FLD_TENANT_NAME, tname);
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_COMPLETE, NULL), AC_OK);

    /* One byte more is too large. */
    memmove(email + 1, email, n + 1);
    ac_str(&c, KR_FLD_EMAIL, email);
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_APPLY, NULL), KR_ERR_TOO_LARGE);
    ac_close(&op);
    ac_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tag_name_at_max),
        cmocka_unit_test(test_attribute_and_contact_at_max),
        cmocka_unit_test(test_email_at_max),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
