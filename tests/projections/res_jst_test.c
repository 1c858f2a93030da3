/*
 * res_jst_test.c: projections/res_jst.c, Japan time beside every time of a
 * result: "<name>_jst" after each time key, at any depth, nil for a nil
 * time, nothing else changed; the ceiling holds; and through the domain, a
 * real op's result (auth.login's expires) carries it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <msgpack.h>
#include <string.h>

#include "jst.h"
#include "res_jst.h"
#include "schema.h"
#include "test_domain.h"
#include "wbuf.h"

static void pack_s(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* 2026-04-01T00:00:00.123456789Z, 09:00:00.123 in Japan. */
#define T1 1775001600123456789ull

static void test_rewrite(void **state)
{
    (void)state;
    struct kr_wbuf in, want;
    kr_wbuf_init(&in, 1 << 20);
    kr_wbuf_init(&want, 1 << 20);
    msgpack_packer pk, pw;
    msgpack_packer_init(&pk, &in, kr_wbuf_write);
    msgpack_packer_init(&pw, &want, kr_wbuf_write);
    /* {"expires": T1, "due": [{"deadline": nil, "tenant": 5, "jst": "x"}],
     *  "version": 3, "cursor": bin} */
    msgpack_pack_map(&pk, 4);
    pack_s(&pk, "expires");
    msgpack_pack_uint64(&pk, T1);
    pack_s(&pk, "due");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 3);
    pack_s(&pk, "deadline");
    msgpack_pack_nil(&pk);
    pack_s(&pk, "tenant");
    msgpack_pack_uint64(&pk, 5);
    pack_s(&pk, "jst");
    pack_s(&pk, "x");
    pack_s(&pk, "version");
    msgpack_pack_uint64(&pk, 3);
    pack_s(&pk, "cursor");
    msgpack_pack_bin_with_body(&pk, "\x01\x02", 2);

    msgpack_pack_map(&pw, 5);
    pack_s(&pw, "expires");
    msgpack_pack_uint64(&pw, T1);
    pack_s(&pw, "expires_jst");
    pack_s(&pw, "2026-04-01T09:00:00.123+09:00");
    pack_s(&pw, "due");
    msgpack_pack_array(&pw, 1);
    msgpack_pack_map(&pw, 4);
    pack_s(&pw, "deadline");
    msgpack_pack_nil(&pw);
    pack_s(&pw, "deadline_jst");
    msgpack_pack_nil(&pw);
    pack_s(&pw, "tenant");
    msgpack_pack_uint64(&pw, 5);
    pack_s(&pw, "jst");
    pack_s(&pw, "x");
    pack_s(&pw, "version");
    msgpack_pack_uint64(&pw, 3);
    pack_s(&pw, "cursor");
    msgpack_pack_bin_with_body(&pw, "\x01\x02", 2);

    assert_int_equal(res_add_jst(&in), KR_OK);
    assert_int_equal(in.size, want.size);
    assert_memory_equal(in.data, want.data, want.size);

    /* No time: the same bytes. */
    kr_wbuf_reset(&in);
    msgpack_pack_map(&pk, 1);
    pack_s(&pk, "version");
    msgpack_pack_uint64(&pk, 3);
    assert_int_equal(res_add_jst(&in), KR_OK);
    assert_int_equal(in.size, 1 + 8 + 1);

    /* Nothing written: nothing to add. */
    struct kr_wbuf empty;
    kr_wbuf_init(&empty, 64);
    assert_int_equal(res_add_jst(&empty), KR_OK);
    assert_int_equal(empty.size, 0);

    /* Past the ceiling: refused, the result unchanged. */
    struct kr_wbuf small;
    kr_wbuf_init(&small, 20);
    msgpack_packer ps;
    msgpack_packer_init(&ps, &small, kr_wbuf_write);
    msgpack_pack_map(&ps, 1);
    pack_s(&ps, "expires");
    msgpack_pack_uint64(&ps, T1);
    size_t before = small.size;
    assert_int_equal(res_add_jst(&small), KR_ETOOLARGE);
    assert_int_equal(small.size, before);
    /* Not one well-formed object. */
    kr_wbuf_reset(&small);
    msgpack_pack_map(&ps, 2);
    pack_s(&ps, "expires");
    assert_int_equal(res_add_jst(&small), KR_ECORRUPT);
    kr_wbuf_free(&small);
    kr_wbuf_free(&in);
    kr_wbuf_free(&want);
}

/* Every time field's key fits, and the ops the schema gives times have them. */
static void test_schema(void **state)
{
    (void)state;
    for (int f = 0; f < KR_FLD__COUNT; f++)
        if (kr_fields[f].type == KR_FT_TIME)
            assert_true(strlen(kr_fields[f].name) <= RES_JST_NAME_MAX);
    assert_true(res_has_time(KR_OP_AUTH_LOGIN));         /* expires */
    assert_true(res_has_time(KR_OP_TENANTS_LIST));       /* a list's cancelled, erase_by */
    assert_false(res_has_time(KR_OP_CONTACTS_REGISTER)); /* contact, version */
    assert_false(res_has_time(-1));
    assert_false(res_has_time(KR_OP__COUNT));
}

/* Through the domain: a login's expires comes with expires_jst. */
static void test_login_result(void **state)
{
    (void)state;
    struct td *t = td_new(7);
    struct kr_caller master;
    char code[40];
    td_signup(t, "m@example.jp", "correct horse battery", &master, code);
    struct kr_caller anon = td_anonymous();
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_TENANT_CODE, code);
    kr_set_str(a, KR_FLD_EMAIL, "m@example.jp");
    kr_set_str(a, KR_FLD_PASSWORD, "correct horse battery");
    assert_int_equal(td_exec(t, &anon, KR_OP_AUTH_LOGIN), KR_OK);
    uint64_t expires = td_get_u64(t, "expires");
    const msgpack_object *j = td_get(t, "expires_jst");
    assert_non_null(j);
    assert_int_equal(j->type, MSGPACK_OBJECT_STR);
    char want[JST_LEN + 1];
    jst_format(expires, want);
    assert_int_equal(j->via.str.size, JST_LEN);
    assert_memory_equal(j->via.str.ptr, want, JST_LEN);
    assert_memory_equal(j->via.str.ptr + JST_LEN - 6, "+09:00", 6);
    td_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rewrite),
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_login_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
