/*
 * protocol_test.c: api/protocol.c against every bad input of TESTING.md
 * "Bad input over the wire": each answers with its exact error code, the
 * reply echoes the id when one was readable (nil otherwise), and the domain
 * goes on serving the next good request. Tokens: truncated, all-zero,
 * unknown, expired all answer `unauthenticated`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <msgpack.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "kr_limits.h"
#include "protocol.h"
#include "test_domain.h"

#define MASTER_EMAIL "owner@shop.example.jp"
#define MASTER_PW    "correct-horse-battery-9"

struct fx {
    struct td *t;
    char code[40]; /* the tenant code */
    msgpack_sbuffer req;
    struct kr_wbuf reply;
    msgpack_packer pk;
    msgpack_unpacked u;
    uint64_t next_id;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->t = td_new(11);
    struct kr_caller master;
    td_signup(f->t, MASTER_EMAIL, MASTER_PW, &master, f->code);
    msgpack_sbuffer_init(&f->req);
    kr_wbuf_init(&f->reply, KR_API_REPLY_MAX);
    msgpack_unpacked_init(&f->u);
    f->next_id = 100;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    msgpack_sbuffer_destroy(&f->req);
    kr_wbuf_free(&f->reply);
    msgpack_unpacked_destroy(&f->u);
    td_free(f->t);
    free(f);
    return 0;
}

/* ---- Building requests ---- */

static msgpack_packer *start(struct fx *f)
{
    f->req.size = 0;
    msgpack_packer_init(&f->pk, &f->req, msgpack_sbuffer_write);
    return &f->pk;
}

static void pstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static const char *op_name(int op)
{
    return kr_ops[op].name;
}

static const char *fld(int f)
{
    return kr_fields[f].name;
}

/* {op: signup.apply, id: id, args: {email: e}} */
static void apply_req(struct fx *f, uint64_t id, const char *email)
{
    msgpack_packer *pk = start(f);
    msgpack_pack_map(pk, 3);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
    pstr(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, id);
    pstr(pk, API_KEY_ARGS);
    msgpack_pack_map(pk, 1);
    pstr(pk, fld(KR_FLD_EMAIL));
    pstr(pk, email);
}

/* ---- Reading replies ---- */

/* Runs req[0..len) through api_handle and decodes the reply, which must be
 * {id, ok, result|error}. */
static void call_bytes(struct fx *f, const void *req, size_t len, bool op_ep)
{
    assert_int_equal(api_handle(f->t->d, op_ep, req, len, &f->reply), KR_OK);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&f->u, f->reply.data, f->reply.size, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, f->reply.size);
    assert_int_equal(f->u.data.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(f->u.data.via.map.size, 3);
    assert_non_null(td_map_get(&f->u.data, API_KEY_ID));
    assert_non_null(td_map_get(&f->u.data, API_KEY_OK));
}

static void call(struct fx *f)
{
    call_bytes(f, f->req.data, f->req.size, false);
}

static bool reply_ok(struct fx *f)
{
    const msgpack_object *ok = td_map_get(&f->u.data, API_KEY_OK);
    assert_int_equal(ok->type, MSGPACK_OBJECT_BOOLEAN);
    return ok->via.boolean;
}

static const msgpack_object *reply_result(struct fx *f)
{
    assert_true(reply_ok(f));
    const msgpack_object *r = td_map_get(&f->u.data, API_KEY_RESULT);
    assert_non_null(r);
    assert_int_equal(r->type, MSGPACK_OBJECT_MAP);
    return r;
}

/* Asserts the reply is an error with code `code` (enum kr_api_err). */
static void expect_error_at(struct fx *f, int code, const char *what, size_t where)
{
    if (reply_ok(f))
        fail_msg("%s (%zu): succeeded, expected %s", what, where, kr_api_errors[code].name);
    const msgpack_object *e = td_map_get(&f->u.data, API_KEY_ERROR);
    assert_non_null(e);
    const msgpack_object *c = td_map_get(e, API_KEY_CODE), *m = td_map_get(e, API_KEY_MESSAGE);
    assert_non_null(c);
    assert_non_null(m);
    assert_int_equal(c->type, MSGPACK_OBJECT_STR);
    assert_int_equal(m->type, MSGPACK_OBJECT_STR);
    assert_true(m->via.str.size > 0);
    const char *want = kr_api_errors[code].name;
    if (c->via.str.size != strlen(want) || memcmp(c->via.str.ptr, want, strlen(want)) != 0)
        fail_msg("%s (%zu): got %.*s (%.*s), expected %s", what, where, (int)c->via.str.size,
                 c->via.str.ptr, (int)m->via.str.size, m->via.str.ptr, want);
}

static void expect_error(struct fx *f, int code, const char *what)
{
    expect_error_at(f, code, what, 0);
}

static void expect_id(struct fx *f, uint64_t id)
{
    const msgpack_object *o = td_map_get(&f->u.data, API_KEY_ID);
    assert_int_equal(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_true(o->via.u64 == id);
}

static void expect_nil_id(struct fx *f)
{
    assert_int_equal(td_map_get(&f->u.data, API_KEY_ID)->type, MSGPACK_OBJECT_NIL);
}

/* The domain still serves a good request, and nothing it refused changed it. */
static void still_serves(struct fx *f)
{
    uint64_t id = ++f->next_id;
    apply_req(f, id, "next@shop.example.jp");
    call(f);
    expect_id(f, id);
    const msgpack_object *r = reply_result(f);
    const msgpack_object *app = td_map_get(r, fld(KR_FLD_APPLICATION));
    assert_non_null(app);
    assert_int_equal(app->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(app->via.bin.size, 16);
}

/* Sends raw bytes and expects `code` and an unreadable (nil) id. */
static void raw_expect(struct fx *f, const void *b, size_t n, int code, const char *what)
{
    call_bytes(f, b, n, false);
    expect_error(f, code, what);
    expect_nil_id(f);
}

/* The master's auth.login request. */
static void login_req(struct fx *f)
{
    msgpack_packer *pk = start(f);
    msgpack_pack_map(pk, 3);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(KR_OP_AUTH_LOGIN));
    pstr(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, 1);
    pstr(pk, API_KEY_ARGS);
    msgpack_pack_map(pk, 3);
    pstr(pk, fld(KR_FLD_TENANT_CODE));
    pstr(pk, f->code);
    pstr(pk, fld(KR_FLD_EMAIL));
    pstr(pk, MASTER_EMAIL);
    pstr(pk, fld(KR_FLD_PASSWORD));
    pstr(pk, MASTER_PW);
}

/* Logs the master in over the protocol; the token into tok. */
static void login(struct fx *f, uint8_t tok[32])
{
    login_req(f);
    call(f);
    const msgpack_object *tk = td_map_get(reply_result(f), fld(KR_FLD_TOKEN));
    assert_non_null(tk);
    assert_int_equal(tk->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(tk->via.bin.size, 32);
    memcpy(tok, tk->via.bin.ptr, 32);
}

/* {op, id, token: tok[0..n)} (no args) */
static void token_req(struct fx *f, int op, const uint8_t *tok, size_t n)
{
    msgpack_packer *pk = start(f);
    msgpack_pack_map(pk, 3);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(op));
    pstr(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, 9);
    pstr(pk, fld(KR_FLD_TOKEN));
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, tok, n);
}

/* ---- Tests ---- */

/* A reply is bounded while it is built: with a ceiling of exactly the
 * login reply's size it is built; one byte less and the result is refused
 * with too_large (the error reply itself fits), never a truncated reply. */
static void test_reply_ceiling(void **state)
{
    struct fx *f = *state;
    uint8_t tok[32];
    login(f, tok);
    size_t full = f->reply.size;
    kr_wbuf_free(&f->reply);
    kr_wbuf_init(&f->reply, full);
    login(f, tok);
    assert_int_equal(f->reply.size, full);
    kr_wbuf_free(&f->reply);
    kr_wbuf_init(&f->reply, full - 1);
    login_req(f);
    call(f);
    expect_error(f, KR_ERR_TOO_LARGE, "reply one byte over its ceiling");
    expect_id(f, 1);
}

static void test_good_request(void **state)
{
    struct fx *f = *state;
    still_serves(f);
    uint8_t tok[32];
    login(f, tok);
    token_req(f, KR_OP_AUTH_WHOAMI, tok, 32);
    call(f);
    expect_id(f, 9);
    const msgpack_object *r = reply_result(f);
    const msgpack_object *tc = td_map_get(r, fld(KR_FLD_TENANT_CODE));
    assert_non_null(tc);
    assert_int_equal(tc->via.str.size, strlen(f->code));
    assert_memory_equal(tc->via.str.ptr, f->code, strlen(f->code));
}

static void test_truncated_everywhere(void **state)
{
    struct fx *f = *state;
    apply_req(f, 77, "trunc@shop.example.jp");
    size_t n = f->req.size;
    uint8_t *full = malloc(n);
    assert_non_null(full);
    memcpy(full, f->req.data, n);
    for (size_t cut = 0; cut < n; cut++) {
        /* An exact-size heap copy: a read past the end is a sanitizer finding. */
        uint8_t *b = malloc(cut ? cut : 1);
        assert_non_null(b);
        memcpy(b, full, cut);
        call_bytes(f, b, cut, false);
        expect_error_at(f, KR_ERR_BAD_REQUEST, "truncated", cut);
        expect_nil_id(f);
        free(b);
    }
    free(full);
    still_serves(f);
}

static void test_trailing_bytes(void **state)
{
    struct fx *f = *state;
    apply_req(f, 5, "trail@shop.example.jp");
    msgpack_sbuffer_write(&f->req, "\x00", 1);
    call(f);
    expect_error(f, KR_ERR_BAD_REQUEST, "trailing byte");
    /* A second whole request after the first is trailing bytes too. */
    apply_req(f, 5, "trail@shop.example.jp");
    size_t n = f->req.size;
    char *two = malloc(2 * n);
    assert_non_null(two);
    memcpy(two, f->req.data, n);
    memcpy(two + n, f->req.data, n);
    call_bytes(f, two, 2 * n, false);
    expect_error(f, KR_ERR_BAD_REQUEST, "two requests");
    free(two);
    still_serves(f);
}

static void test_reserved_and_lying_headers(void **state)
{
    struct fx *f = *state;
    static const uint8_t c1[] = {0xc1};
    raw_expect(f, c1, sizeof c1, KR_ERR_BAD_REQUEST, "0xc1");
    static const uint8_t c1_in_map[] = {0x81, 0xa2, 'o', 'p', 0xc1};
    raw_expect(f, c1_in_map, sizeof c1_in_map, KR_ERR_BAD_REQUEST, "0xc1 as a value");
    /* Headers declaring 0xFFFFFFFF elements or bytes. */
    static const uint8_t huge[][5] = {
        {0xdd, 0xff, 0xff, 0xff, 0xff}, /* array32 */
        {0xdf, 0xff, 0xff, 0xff, 0xff}, /* map32 */
        {0xdb, 0xff, 0xff, 0xff, 0xff}, /* str32 */
        {0xc6, 0xff, 0xff, 0xff, 0xff}, /* bin32 */
        {0xc9, 0xff, 0xff, 0xff, 0xff}, /* ext32 */
    };
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++)
        raw_expect(f, huge[i], sizeof huge[i], KR_ERR_BAD_REQUEST, "0xFFFFFFFF header");
    /* The same inside args of an otherwise good request. */
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        msgpack_packer *pk = start(f);
        msgpack_pack_map(pk, 3);
        pstr(pk, API_KEY_ID);
        msgpack_pack_uint64(pk, 31);
        pstr(pk, fld(KR_FLD_OP));
        pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
        pstr(pk, API_KEY_ARGS);
        msgpack_pack_map(pk, 1);
        pstr(pk, fld(KR_FLD_EMAIL));
        msgpack_sbuffer_write(&f->req, (const char *)huge[i], 5);
        call(f);
        expect_error(f, KR_ERR_BAD_REQUEST, "0xFFFFFFFF header in args");
    }
    /* A map declaring one pair more than present; a str one byte longer. */
    apply_req(f, 32, "plus1@shop.example.jp");
    uint8_t *b = malloc(f->req.size);
    assert_non_null(b);
    memcpy(b, f->req.data, f->req.size);
    assert_int_equal(b[0], 0x83);
    b[0] = 0x84;
    raw_expect(f, b, f->req.size, KR_ERR_BAD_REQUEST, "map remaining + 1");
    b[0] = 0x83;
    /* The e-mail is the last str: its fixstr header sits before its bytes. */
    size_t elen = strlen("plus1@shop.example.jp");
    size_t hdr = f->req.size - elen - 1;
    assert_int_equal(b[hdr], 0xa0 | elen);
    b[hdr] = (uint8_t)(0xa0 | (elen + 1));
    raw_expect(f, b, f->req.size, KR_ERR_BAD_REQUEST, "str remaining + 1");
    free(b);
    still_serves(f);
}

static void test_nesting(void **state)
{
    struct fx *f = *state;
    /* {op, id, args: {email: [[[[...]]]]}}: past the depth limit. */
    msgpack_packer *pk = start(f);
    msgpack_pack_map(pk, 3);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
    pstr(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, 40);
    pstr(pk, API_KEY_ARGS);
    msgpack_pack_map(pk, 1);
    pstr(pk, fld(KR_FLD_EMAIL));
    for (int i = 0; i < 100; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_nil(pk);
    call(f);
    expect_error(f, KR_ERR_TOO_LARGE, "deep nesting");
    expect_nil_id(f);
    /* Exactly one level past the limit. */
    pk = start(f);
    for (unsigned i = 0; i <= KR_API_DEPTH_MAX; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_nil(pk);
    call(f);
    expect_error(f, KR_ERR_TOO_LARGE, "depth limit + 1");
    still_serves(f);
}

static void test_empty_and_not_a_map(void **state)
{
    struct fx *f = *state;
    static const uint8_t one = 0x80;
    raw_expect(f, &one, 0, KR_ERR_BAD_REQUEST, "empty");
    static const uint8_t others[][1] = {{0x90}, {0xa0}, {0x01}, {0xc0}, {0xc3}, {0xc4}, {0xff}};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        uint8_t b[2] = {others[i][0], 0};
        raw_expect(f, b, b[0] == 0xc4 ? 2 : 1, KR_ERR_BAD_REQUEST, "not a map");
    }
    raw_expect(f, &one, 1, KR_ERR_BAD_REQUEST, "empty map");
    still_serves(f);
}

/* A request of `n` pairs given as alternating key / value-writer calls. */
static void test_keys(void **state)
{
    struct fx *f = *state;
    msgpack_packer *pk;

    /* Missing op. */
    pk = start(f);
    msgpack_pack_map(pk, 1);
    pstr(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, 50);
    call(f);
    expect_error(f, KR_ERR_BAD_REQUEST, "missing op");
    expect_id(f, 50);

    /* Missing id. */
    pk = start(f);
    msgpack_pack_map(pk, 1);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
    call(f);
    expect_error(f, KR_ERR_BAD_REQUEST, "missing id");
    expect_nil_id(f);

    /* An extra key. */
    apply_req(f, 51, "x@shop.example.jp");
    f->req.data[0] = (char)0x84;
    pk = &f->pk;
    pstr(pk, "extra");
    msgpack_pack_true(pk);
    call(f);
    expect_error(f, KR_ERR_BAD_REQUEST, "extra key");
    expect_id(f, 51);

    /* A non-string key. */
    apply_req(f, 52, "x@shop.example.jp");
    f->req.data[0] = (char)0x84;
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_true(pk);
    call(f);
    expect_error(f, KR_ERR_BAD_REQUEST, "integer key");
    expect_id(f, 52);

    /* Duplicates: op, id, args, token. */
    const char *dups[] = {fld(KR_FLD_OP), API_KEY_ID, API_KEY_ARGS};
    for (size_t i = 0; i < 3; i++) {
        apply_req(f, 53, "x@shop.example.jp");
        f->req.data[0] = (char)0x84;
        pstr(pk, dups[i]);
        if (i == 0)
            pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
        else if (i == 1)
            msgpack_pack_uint64(pk, 54);
        else
            msgpack_pack_map(pk, 0);
        call(f);
        expect_error(f, KR_ERR_BAD_REQUEST, "duplicate key");
    }
    uint8_t tok[32] = {1};
    token_req(f, KR_OP_AUTH_WHOAMI, tok, 32);
    f->req.data[0] = (char)0x84;
    pstr(pk, fld(KR_FLD_TOKEN));
    msgpack_pack_bin(pk, 32);
    msgpack_pack_bin_body(pk, tok, 32);
    call(f);
    expect_error(f, KR_ERR_BAD_REQUEST, "duplicate token");

    /* A duplicate key inside args. */
    apply_req(f, 55, "x@shop.example.jp");
    f->req.data[f->req.size - strlen("x@shop.example.jp") - 1 - strlen(fld(KR_FLD_EMAIL)) - 1 - 1] =
        (char)0x82;
    pstr(pk, fld(KR_FLD_EMAIL));
    pstr(pk, "y@shop.example.jp");
    call(f);
    expect_error(f, KR_ERR_BAD_REQUEST, "duplicate arg");
    expect_id(f, 55);

    /* An unknown arg; an arg the op does not take; a required arg missing. */
    apply_req(f, 56, "x@shop.example.jp");
    f->req.data[f->req.size - strlen("x@shop.example.jp") - 1 - strlen(fld(KR_FLD_EMAIL)) - 1 - 1] =
        (char)0x82;
    pstr(pk, fld(KR_FLD_PASSWORD));
    pstr(pk, "whatever-password-1");
    call(f);
    expect_error(f, KR_ERR_BAD_REQUEST, "arg the op does not take");
    pk = start(f);
    msgpack_pack_map(pk, 2);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
    pstr(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, 57);
    call(f);
    expect_error(f, KR_ERR_BAD_REQUEST, "no args, required email");
    expect_id(f, 57);

    /* An unknown op; an op name with a NUL or invalid UTF-8. */
    const char *bad_ops[] = {"signup.nothing", "", "auth.whoami\0", "\xc0\xaf"};
    size_t bad_len[] = {14, 0, 12, 2};
    for (size_t i = 0; i < 4; i++) {
        pk = start(f);
        msgpack_pack_map(pk, 2);
        pstr(pk, API_KEY_ID);
        msgpack_pack_uint64(pk, 58);
        pstr(pk, fld(KR_FLD_OP));
        msgpack_pack_str(pk, bad_len[i]);
        msgpack_pack_str_body(pk, bad_ops[i], bad_len[i]);
        call(f);
        expect_error(f, KR_ERR_BAD_REQUEST, "unknown op");
        expect_id(f, 58);
    }
    still_serves(f);
}

/* Writes a value of kind k: 0 int, 1 negative, 2 str, 3 bin, 4 nil, 5 bool,
 * 6 float, 7 NaN, 8 Inf, 9 array, 10 map. */
static void pack_kind(msgpack_packer *pk, int k)
{
    switch (k) {
    case 0:
        msgpack_pack_uint64(pk, 3);
        break;
    case 1:
        msgpack_pack_int64(pk, -1);
        break;
    case 2:
        pstr(pk, "3");
        break;
    case 3:
        msgpack_pack_bin(pk, 1);
        msgpack_pack_bin_body(pk, "3", 1);
        break;
    case 4:
        msgpack_pack_nil(pk);
        break;
    case 5:
        msgpack_pack_true(pk);
        break;
    case 6:
        msgpack_pack_double(pk, 3.0);
        break;
    case 7:
        msgpack_pack_double(pk, __builtin_nan(""));
        break;
    case 8:
        msgpack_pack_double(pk, __builtin_inf());
        break;
    case 9:
        msgpack_pack_array(pk, 0);
        break;
    default:
        msgpack_pack_map(pk, 0);
        break;
    }
}

static void test_wrong_types(void **state)
{
    struct fx *f = *state;
    for (int k = 0; k <= 10; k++) {
        /* op not a string */
        msgpack_packer *pk = start(f);
        msgpack_pack_map(pk, 2);
        pstr(pk, API_KEY_ID);
        msgpack_pack_uint64(pk, 60);
        pstr(pk, fld(KR_FLD_OP));
        if (k == 2)
            pstr(pk, "3"); /* a string, but no such op */
        else
            pack_kind(pk, k);
        call(f);
        expect_error(f, KR_ERR_BAD_REQUEST, "op type");
        expect_id(f, 60);
        /* id not an unsigned integer */
        if (k != 0) {
            pk = start(f);
            msgpack_pack_map(pk, 2);
            pstr(pk, fld(KR_FLD_OP));
            pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
            pstr(pk, API_KEY_ID);
            pack_kind(pk, k);
            call(f);
            expect_error(f, KR_ERR_BAD_REQUEST, "id type");
            expect_nil_id(f);
        }
        /* token not bin */
        if (k != 3) {
            pk = start(f);
            msgpack_pack_map(pk, 3);
            pstr(pk, fld(KR_FLD_OP));
            pstr(pk, op_name(KR_OP_AUTH_WHOAMI));
            pstr(pk, API_KEY_ID);
            msgpack_pack_uint64(pk, 61);
            pstr(pk, fld(KR_FLD_TOKEN));
            pack_kind(pk, k);
            call(f);
            expect_error(f, KR_ERR_BAD_REQUEST, "token type");
            expect_id(f, 61);
        }
        /* args not a map */
        if (k != 10) {
            pk = start(f);
            msgpack_pack_map(pk, 3);
            pstr(pk, fld(KR_FLD_OP));
            pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
            pstr(pk, API_KEY_ID);
            msgpack_pack_uint64(pk, 62);
            pstr(pk, API_KEY_ARGS);
            pack_kind(pk, k);
            call(f);
            expect_error(f, KR_ERR_BAD_REQUEST, "args type");
            expect_id(f, 62);
        }
        /* the e-mail argument of another type */
        if (k != 2) {
            pk = start(f);
            msgpack_pack_map(pk, 3);
            pstr(pk, fld(KR_FLD_OP));
            pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
            pstr(pk, API_KEY_ID);
            msgpack_pack_uint64(pk, 63);
            pstr(pk, API_KEY_ARGS);
            msgpack_pack_map(pk, 1);
            pstr(pk, fld(KR_FLD_EMAIL));
            pack_kind(pk, k);
            call(f);
            expect_error(f, KR_ERR_BAD_REQUEST, "email type");
            expect_id(f, 63);
        }
    }
    still_serves(f);
}

static void test_int_edges(void **state)
{
    struct fx *f = *state;
    /* Any unsigned id is echoed as it came. */
    const uint64_t ids[] = {0, 1, (uint64_t)1 << 63, UINT64_MAX};
    for (size_t i = 0; i < 4; i++) {
        apply_req(f, ids[i], "edge@shop.example.jp");
        call(f);
        expect_id(f, ids[i]);
        reply_result(f);
    }
    /* A limit argument at and past its edges (contacts.list: 1..1000). */
    uint8_t tok[32];
    login(f, tok);
    const struct {
        int64_t v;
        bool neg;
        int code; /* -1 = ok */
    } lim[] = {{-1, true, KR_ERR_BAD_REQUEST},
               {0, false, KR_ERR_BAD_REQUEST},
               {1, false, -1},
               {1000, false, -1},
               {1001, false, KR_ERR_BAD_REQUEST},
               {INT64_MAX, false, KR_ERR_BAD_REQUEST}};
    for (size_t i = 0; i < sizeof lim / sizeof lim[0] + 2; i++) {
        msgpack_packer *pk = start(f);
        msgpack_pack_map(pk, 4);
        pstr(pk, fld(KR_FLD_OP));
        pstr(pk, op_name(KR_OP_CONTACTS_LIST));
        pstr(pk, API_KEY_ID);
        msgpack_pack_uint64(pk, 70);
        pstr(pk, fld(KR_FLD_TOKEN));
        msgpack_pack_bin(pk, 32);
        msgpack_pack_bin_body(pk, tok, 32);
        pstr(pk, API_KEY_ARGS);
        msgpack_pack_map(pk, 1);
        pstr(pk, fld(KR_FLD_LIMIT));
        int code = KR_ERR_BAD_REQUEST;
        if (i < sizeof lim / sizeof lim[0]) {
            if (lim[i].neg)
                msgpack_pack_int64(pk, lim[i].v);
            else
                msgpack_pack_uint64(pk, (uint64_t)lim[i].v);
            code = lim[i].code;
        } else if (i == sizeof lim / sizeof lim[0]) {
            msgpack_pack_uint64(pk, (uint64_t)1 << 63);
        } else {
            msgpack_pack_uint64(pk, UINT64_MAX);
        }
        call(f);
        expect_id(f, 70);
        if (code < 0)
            reply_result(f);
        else
            expect_error_at(f, code, "limit edge", i);
    }
    still_serves(f);
}

static void test_strings(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {
        {"a\0b@shop.example.jp", 19},     /* NUL */
        {"\xc0\xaf@shop.example.jp", 17}, /* overlong '/' */
        {"\xff\xfe@shop.example.jp", 17}, /* not UTF-8 */
        {"\xed\xa0\x80@shop.example.jp", 18} /* a surrogate */,
        {"\xe2\x82@shop.example.jp", 17}, /* cut short */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msgpack_packer *pk = start(f);
        msgpack_pack_map(pk, 3);
        pstr(pk, fld(KR_FLD_OP));
        pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
        pstr(pk, API_KEY_ID);
        msgpack_pack_uint64(pk, 80);
        pstr(pk, API_KEY_ARGS);
        msgpack_pack_map(pk, 1);
        pstr(pk, fld(KR_FLD_EMAIL));
        msgpack_pack_str(pk, bad[i].n);
        msgpack_pack_str_body(pk, bad[i].s, bad[i].n);
        call(f);
        expect_error_at(f, KR_ERR_BAD_REQUEST, "bad string", i);
        expect_id(f, 80);
    }
    /* An over-long e-mail (the field allows 254 bytes). */
    static const char domain[] = "@shop.example.jp";
    unsigned char longmail[400];
    memset(longmail, 'a', sizeof longmail);
    memcpy(longmail + sizeof longmail - (sizeof domain - 1), domain, sizeof domain - 1);
    msgpack_packer *pk = start(f);
    msgpack_pack_map(pk, 3);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
    pstr(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, 81);
    pstr(pk, API_KEY_ARGS);
    msgpack_pack_map(pk, 1);
    pstr(pk, fld(KR_FLD_EMAIL));
    msgpack_pack_str(pk, sizeof longmail);
    msgpack_pack_str_body(pk, longmail, sizeof longmail);
    call(f);
    expect_error(f, KR_ERR_TOO_LARGE, "long e-mail");
    /* Over-long and short ids (an application is 16 bytes). */
    const size_t idlen[] = {0, 15, 17, 1000};
    for (size_t i = 0; i < 4; i++) {
        uint8_t idb[1000] = {0};
        pk = start(f);
        msgpack_pack_map(pk, 3);
        pstr(pk, fld(KR_FLD_OP));
        pstr(pk, op_name(KR_OP_SIGNUP_COMPLETE));
        pstr(pk, API_KEY_ID);
        msgpack_pack_uint64(pk, 82);
        pstr(pk, API_KEY_ARGS);
        msgpack_pack_map(pk, 4);
        pstr(pk, fld(KR_FLD_APPLICATION));
        msgpack_pack_bin(pk, idlen[i]);
        msgpack_pack_bin_body(pk, idb, idlen[i]);
        pstr(pk, fld(KR_FLD_AUTH_CODE));
        pstr(pk, "123456");
        pstr(pk, fld(KR_FLD_PASSWORD));
        pstr(pk, "some-long-password-1");
        pstr(pk, fld(KR_FLD_TENANT_NAME));
        pstr(pk, "A shop");
        call(f);
        expect_error_at(f, KR_ERR_BAD_REQUEST, "id length", idlen[i]);
    }
    still_serves(f);
}

static void test_element_bombs(void **state)
{
    struct fx *f = *state;
    /* A million one-byte elements: over the size cap. */
    msgpack_packer *pk = start(f);
    msgpack_pack_map(pk, 3);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
    pstr(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, 90);
    pstr(pk, API_KEY_ARGS);
    msgpack_pack_map(pk, 1);
    pstr(pk, fld(KR_FLD_EMAIL));
    static const char zeros[1000000]; /* positive fixint 0, one byte each */
    msgpack_pack_array(pk, 1000000);
    msgpack_sbuffer_write(&f->req, zeros, sizeof zeros);
    call(f);
    expect_error(f, KR_ERR_TOO_LARGE, "a million elements");
    expect_nil_id(f);
    /* As many as fit inside the size cap: over the element cap. */
    pk = start(f);
    msgpack_pack_map(pk, 3);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
    pstr(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, 91);
    pstr(pk, API_KEY_ARGS);
    msgpack_pack_map(pk, 1);
    pstr(pk, fld(KR_FLD_EMAIL));
    size_t n = KR_API_REQUEST_MAX - f->req.size - 3; /* an array16 header */
    msgpack_pack_array(pk, (uint32_t)n);
    msgpack_sbuffer_write(&f->req, zeros, n);
    assert_int_equal(f->req.size, KR_API_REQUEST_MAX);
    call(f);
    expect_error(f, KR_ERR_TOO_LARGE, "elements inside the size cap");
    /* Exactly one element past the cap, as map pairs of nils. */
    pk = start(f);
    msgpack_pack_map(pk, 2);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(KR_OP_SIGNUP_APPLY));
    pstr(pk, API_KEY_ID);
    msgpack_pack_array(pk, KR_API_ITEMS_MAX);
    for (size_t i = 0; i < KR_API_ITEMS_MAX; i++)
        msgpack_pack_nil(pk);
    call(f);
    expect_error(f, KR_ERR_TOO_LARGE, "item cap + 1");
    still_serves(f);
}

static void test_tokens(void **state)
{
    struct fx *f = *state;
    uint8_t tok[32], zero[32] = {0}, unknown[32];
    login(f, tok);
    randombytes_buf(unknown, sizeof unknown);
    /* Truncated, all-zero, unknown: unauthenticated, also for an op anonymous may call. */
    const struct {
        const uint8_t *t;
        size_t n;
    } bad[] = {{tok, 31}, {tok, 0}, {tok, 16}, {zero, 32}, {unknown, 32}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        token_req(f, KR_OP_AUTH_WHOAMI, bad[i].t, bad[i].n);
        call(f);
        expect_error_at(f, KR_ERR_UNAUTHENTICATED, "bad token", i);
        expect_id(f, 9);
        token_req(f, KR_OP_TAGS_LIST, bad[i].t, bad[i].n);
        call(f);
        expect_error_at(f, KR_ERR_UNAUTHENTICATED, "bad token", i);
    }
    /* An op anonymous may call, with a bad token: still refused. */
    apply_req(f, 95, "tok@shop.example.jp");
    f->req.data[0] = (char)0x84;
    pstr(&f->pk, fld(KR_FLD_TOKEN));
    msgpack_pack_bin(&f->pk, 32);
    msgpack_pack_bin_body(&f->pk, zero, 32);
    call(f);
    expect_error(f, KR_ERR_UNAUTHENTICATED, "anonymous op, bad token");
    /* No token for an op that needs a session. */
    token_req(f, KR_OP_AUTH_WHOAMI, tok, 32);
    f->req.data[0] = (char)0x82;
    f->req.size -= 1 + strlen(fld(KR_FLD_TOKEN)) + 2 + 32;
    call(f);
    expect_error(f, KR_ERR_UNAUTHENTICATED, "no token");
    /* The good token works; once expired it does not. */
    token_req(f, KR_OP_AUTH_WHOAMI, tok, 32);
    call(f);
    reply_result(f);
    atomic_fetch_add(&f->t->now, KR_SESSION_TTL_NS + 1);
    token_req(f, KR_OP_AUTH_WHOAMI, tok, 32);
    call(f);
    expect_error(f, KR_ERR_UNAUTHENTICATED, "expired token");
    still_serves(f);
}

static void test_endpoints(void **state)
{
    struct fx *f = *state;
    /* An operator op from the client endpoint without a session: needs one. */
    uint8_t app[16] = {1};
    msgpack_packer *pk = start(f);
    msgpack_pack_map(pk, 3);
    pstr(pk, fld(KR_FLD_OP));
    pstr(pk, op_name(KR_OP_SIGNUP_CONFIRM_PAYMENT));
    pstr(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, 97);
    pstr(pk, API_KEY_ARGS);
    msgpack_pack_map(pk, 2);
    pstr(pk, fld(KR_FLD_APPLICATION));
    msgpack_pack_bin(pk, 16);
    msgpack_pack_bin_body(pk, app, 16);
    pstr(pk, fld(KR_FLD_PAYMENT_REF));
    pstr(pk, "p-1");
    call(f);
    expect_error(f, KR_ERR_UNAUTHENTICATED, "operator op without session");
    /* A master's session is forbidden an operator op on either endpoint. */
    uint8_t tok[32];
    login(f, tok);
    for (int ep = 0; ep < 2; ep++) {
        token_req(f, KR_OP_TENANTS_LIST, tok, 32);
        call_bytes(f, f->req.data, f->req.size, ep == 1);
        expect_error(f, KR_ERR_FORBIDDEN, "master calling tenants.list");
    }
    still_serves(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_ceiling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reserved_and_lying_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_and_not_a_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_element_bombs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_endpoints, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
