/*
 * jsonmp_test.c: api/jsonmp.c, the JSON <-> msgpack mapping of `kiroku
 * call`: arguments packed by the schema are what the server's kr_args_decode
 * accepts, and they come back as the same JSON; every kind of bad argument is
 * refused naming its key; replies convert exactly, and hostile reply bytes
 * (truncated at every offset, huge headers, too deep, bad UTF-8, non-string
 * keys, NaN) are refused without reading past the buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "jsonmp.h"
#include "payload.h"
#include "schema.h"

#define BUF_MAX (256u * 1024)

static uint8_t buf[BUF_MAX];

/* Packs json as op's arguments; returns the error, *len the bytes. */
static kr_err pack(int op, const char *json, size_t *len, struct jsonmp_diag *d)
{
    struct kr_mp_fixbuf fb = {.p = buf, .cap = sizeof buf};
    memset(d, 0, sizeof *d);
    kr_err err = jsonmp_args(op, json, strlen(json), &fb, d);
    *len = fb.len;
    return err;
}

/* The JSON text of mp[0..len), which must convert; the caller frees it. */
static char *to_json(const uint8_t *mp, size_t len)
{
    char *out;
    size_t n;
    struct jsonmp_diag d;
    kr_err err = jsonmp_to_json(mp, len, &out, &n, &d);
    if (err)
        fail_msg("to_json: %s %s %s", kr_strerror(err), d.key, d.why);
    assert_int_equal(strlen(out), n);
    return out;
}

/* Packs json for op, checks that the server's decoder takes it, and that it
 * comes back as `back`. */
static void round_trip(int op, const char *json, const char *back)
{
    size_t len;
    struct jsonmp_diag d;
    kr_err err = pack(op, json, &len, &d);
    if (err)
        fail_msg("%s: %s: %s %s", json, kr_strerror(err), d.key, d.why);
    struct kr_payload *p = kr_payload_new();
    assert_non_null(p);
    struct kr_mp_reader r;
    kr_mp_reader_init(&r, buf, len, false);
    struct kr_diag kd;
    err = kr_args_decode(op, &r, p, &kd);
    if (err)
        fail_msg("server decoder refused %s: %s %s", json, kd.field, kd.why);
    assert_int_equal(kr_mp_remaining(&r), 0);
    kr_payload_free(p);
    char *text = to_json(buf, len);
    assert_string_equal(text, back);
    free(text);
}

static void test_args_round_trip(void **state)
{
    (void)state;
    /* Enum lists go in enum order; optional args absent stay absent. */
    round_trip(
        KR_OP_USERS_CREATE,
        "{\"email\":\"a@example.jp\",\"password\":\"correct horse\",\"role\":\"user\","
        "\"permissions\":[\"users.read\",\"contacts.read\"],\"display_name\":\"山田 太郎\"}",
        "{\"email\":\"a@example.jp\",\"password\":\"correct horse\",\"role\":\"user\","
        "\"permissions\":[\"contacts.read\",\"users.read\"],\"display_name\":\"山田 太郎\"}");
    round_trip(KR_OP_AUTH_WHOAMI, "{}", "{}");
    /* Ids are hex both ways (upper case in, lower case out); u64 as ints. */
    round_trip(KR_OP_USERS_GRANT,
               "{\"version\":7,\"account\":\"00112233445566778899AABBCCDDEEFF\","
               "\"permissions\":[]}",
               "{\"account\":\"00112233445566778899aabbccddeeff\",\"permissions\":[],"
               "\"version\":7}");
    /* Tenant lists are sent sorted; times as RFC 3339 or integers. */
    round_trip(KR_OP_NOTICES_PUBLISH,
               "{\"notice_kind\":\"change\",\"title\":\"t\",\"body\":\"line 1\\nline \\\"2\\\"\","
               "\"effective\":\"2026-04-01T09:00:00+09:00\",\"audience\":\"listed\","
               "\"tenants\":[30,1,2]}",
               "{\"notice_kind\":\"change\",\"title\":\"t\",\"body\":\"line 1\\nline \\\"2\\\"\","
               "\"effective\":\"1775001600000000000\",\"audience\":\"listed\","
               "\"tenants\":[\"1\",\"2\",\"30\"]}");
    /* Bin of any length in its limits. */
    round_trip(KR_OP_CONTACTS_LIST, "{\"cursor\":\"00ff10\",\"limit\":1000}",
               "{\"cursor\":\"00ff10\",\"limit\":1000}");
    round_trip(KR_OP_CONTACTS_LIST, "{\"cursor\":\"\"}", "{\"cursor\":\"\"}");
    /* Attribute values: every kind. */
    static const char *const values[][2] = {
        {"\"text\"", "\"text\""},
        {"-7", "-7"},
        {"0", "0"},
        {"1.5", "1.5"},
        {"2.0", "2.0"},
        {"true", "true"},
        {"false", "false"},
        {"1e300", "1e+300"},
        {"9007199254740991", "9007199254740991"},     /* 2^53-1: a double holds it */
        {"9007199254740992", "\"9007199254740992\""}, /* past it: a string */
        {"-9007199254740993", "\"-9007199254740993\""},
        {"9223372036854775807", "\"9223372036854775807\""},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char in[200], out[200];
        snprintf(in, sizeof in,
                 "{\"contact\":\"000102030405060708090a0b0c0d0e0f\",\"attribute_key\":\"k\","
                 "\"value\":%s}",
                 values[i][0]);
        snprintf(out, sizeof out,
                 "{\"contact\":\"000102030405060708090a0b0c0d0e0f\",\"attribute_key\":\"k\","
                 "\"value\":%s}",
                 values[i][1]);
        round_trip(KR_OP_CONTACTS_SET, in, out);
    }
    /* A time as nanoseconds (JSON integers reach 2^63-1, in 2262; later
     * times are written in RFC 3339). */
    round_trip(KR_OP_AUDIT_LIST, "{\"from\":0,\"to\":9223372036854775807}",
               "{\"from\":\"0\",\"to\":\"9223372036854775807\"}");
    round_trip(KR_OP_AUDIT_LIST, "{\"to\":\"2554-07-21T23:34:33.709551615Z\"}",
               "{\"to\":\"18446744073709551615\"}");
}

/* Ids and times a JSON client can use: tenant ids and times come out as
 * decimal strings whatever their size, and go in as strings or plain numbers,
 * up to 2^64-1 (past what jansson's json_int_t holds). */
static void test_args_big_ids(void **state)
{
    (void)state;
    /* The largest tenant id (2^63-1, which a double rounds to 2^63): as a
     * string, as a plain number. */
    round_trip(KR_OP_TENANTS_CANCEL, "{\"tenant\":\"9223372036854775807\"}",
               "{\"tenant\":\"9223372036854775807\"}");
    round_trip(KR_OP_TENANTS_CANCEL, "{\"tenant\" : 9223372036854775807 }",
               "{\"tenant\":\"9223372036854775807\"}");
    /* u64 past 2^63 (a time): as a string, as a plain number. */
    round_trip(KR_OP_AUDIT_LIST, "{\"to\":\"18446744073709551615\"}",
               "{\"to\":\"18446744073709551615\"}");
    round_trip(KR_OP_AUDIT_LIST, "{\"from\":9223372036854775808,\"to\":18446744073709551615}",
               "{\"from\":\"9223372036854775808\",\"to\":\"18446744073709551615\"}");
    /* A small one is a string too: the type of a field never changes. */
    round_trip(KR_OP_TENANTS_CANCEL, "{\"tenant\":\"7\"}", "{\"tenant\":\"7\"}");
    round_trip(KR_OP_NOTICES_PUBLISH,
               "{\"notice_kind\":\"change\",\"title\":\"t\",\"body\":\"b\","
               "\"effective\":\"1775001600000000001\",\"audience\":\"listed\","
               "\"tenants\":[\"9223372036854775807\",9223372036854775806,2]}",
               "{\"notice_kind\":\"change\",\"title\":\"t\",\"body\":\"b\","
               "\"effective\":\"1775001600000000001\",\"audience\":\"listed\","
               "\"tenants\":[\"2\",\"9223372036854775806\",\"9223372036854775807\"]}");
    /* Other u64 fields: numbers, and strings accepted. */
    round_trip(KR_OP_CONTACTS_LIST, "{\"limit\":\"5\"}", "{\"limit\":5}");
    /* A big number inside a string stays a string; strings are not numbers. */
    round_trip(KR_OP_TAGS_CREATE, "{\"tag_name\":\"18446744073709551615 x\"}",
               "{\"tag_name\":\"18446744073709551615 x\"}");
    round_trip(KR_OP_TAGS_CREATE, "{\"tag_name\":\"a\\\"18446744073709551615\"}",
               "{\"tag_name\":\"a\\\"18446744073709551615\"}");
}

/* json for op must fail with err, naming key, and the why must contain why. */
static void refused(int op, const char *json, kr_err err, const char *key, const char *why)
{
    size_t len;
    struct jsonmp_diag d;
    kr_err got = pack(op, json, &len, &d);
    if (got != err || strcmp(d.key, key) != 0 || !strstr(d.why, why))
        fail_msg("%s: got %s '%s: %s', want %s '%s: ...%s...'", json, kr_strerror(got), d.key,
                 d.why, kr_strerror(err), key, why);
}

static void test_args_refused(void **state)
{
    (void)state;
    const char *c = "\"contact\":\"000102030405060708090a0b0c0d0e0f\"";
    char j[512];
    /* The text. */
    refused(KR_OP_CONTACTS_GET, "", KR_EINVAL, "", "not JSON");
    refused(KR_OP_CONTACTS_GET, "{\"contact\":", KR_EINVAL, "", "not JSON");
    refused(KR_OP_CONTACTS_GET, "[1]", KR_EINVAL, "", "JSON object");
    refused(KR_OP_CONTACTS_GET, "\"x\"", KR_EINVAL, "", "JSON object");
    refused(KR_OP_CONTACTS_GET, "{} {}", KR_EINVAL, "", "not JSON");
    snprintf(j, sizeof j, "{%s,%s}", c, c);
    refused(KR_OP_CONTACTS_GET, j, KR_EINVAL, "", "duplicate");
    /* Keys. */
    snprintf(j, sizeof j, "{%s,\"nope\":1}", c);
    refused(KR_OP_CONTACTS_GET, j, KR_EINVAL, "nope", "not an argument of contacts.get");
    snprintf(j, sizeof j, "{%s,\"tenant\":1}", c); /* a field, but not this op's */
    refused(KR_OP_CONTACTS_GET, j, KR_EINVAL, "tenant", "not an argument");
    refused(KR_OP_CONTACTS_GET, "{}", KR_EINVAL, "contact", "missing");
    refused(KR_OP_USERS_DELETE, "{\"account\":\"000102030405060708090a0b0c0d0e0f\"}", KR_EINVAL,
            "version", "missing");
    /* Ids and bins. */
    refused(KR_OP_CONTACTS_GET, "{\"contact\":\"000102030405060708090a0b0c0d0e\"}", KR_EINVAL,
            "contact", "32 hex digits");
    refused(KR_OP_CONTACTS_GET, "{\"contact\":\"000102030405060708090a0b0c0d0e0f00\"}", KR_EINVAL,
            "contact", "32 hex digits");
    refused(KR_OP_CONTACTS_GET, "{\"contact\":\"000102030405060708090a0b0c0d0e0g\"}", KR_EINVAL,
            "contact", "hex");
    refused(KR_OP_CONTACTS_GET, "{\"contact\":16}", KR_EINVAL, "contact", "hex string");
    refused(KR_OP_CONTACTS_GET, "{\"contact\":null}", KR_EINVAL, "contact", "hex string");
    refused(KR_OP_CONTACTS_LIST, "{\"cursor\":\"abc\"}", KR_EINVAL, "cursor", "even");
    memset(j, 0, sizeof j);
    strcpy(j, "{\"cursor\":\"");
    for (int i = 0; i < 65; i++)
        strcat(j, "00");
    strcat(j, "\"}");
    refused(KR_OP_CONTACTS_LIST, j, KR_ETOOLARGE, "cursor", "too long");
    /* Integers. */
    refused(KR_OP_CONTACTS_LIST, "{\"limit\":0}", KR_EINVAL, "limit", "out of range");
    refused(KR_OP_CONTACTS_LIST, "{\"limit\":1001}", KR_EINVAL, "limit", "out of range");
    refused(KR_OP_CONTACTS_LIST, "{\"limit\":-1}", KR_EINVAL, "limit", "integer >= 0");
    refused(KR_OP_CONTACTS_LIST, "{\"limit\":1.0}", KR_EINVAL, "limit", "integer >= 0");
    refused(KR_OP_CONTACTS_LIST, "{\"limit\":\"5x\"}", KR_EINVAL, "limit", "integer >= 0");
    refused(KR_OP_CONTACTS_LIST, "{\"limit\":\"\"}", KR_EINVAL, "limit", "integer >= 0");
    refused(KR_OP_CONTACTS_LIST, "{\"limit\":\"-5\"}", KR_EINVAL, "limit", "integer >= 0");
    refused(KR_OP_CONTACTS_LIST, "{\"limit\":\" 5\"}", KR_EINVAL, "limit", "integer >= 0");
    refused(KR_OP_TENANTS_CANCEL, "{\"tenant\":\"18446744073709551616\"}", KR_EINVAL, "tenant",
            "integer >= 0");
    refused(KR_OP_TENANTS_CANCEL, "{\"tenant\":1.8446744073709552e19}", KR_EINVAL, "tenant",
            "integer >= 0");
    refused(KR_OP_CONTACTS_LIST, "{\"limit\":true}", KR_EINVAL, "limit", "integer >= 0");
    /* Past int64 it is read all the same, and checked as any value; past
     * 2^64-1 it is no integer of ours. */
    refused(KR_OP_CONTACTS_LIST, "{\"limit\":18446744073709551615}", KR_EINVAL, "limit",
            "out of range");
    refused(KR_OP_TENANTS_CANCEL, "{\"tenant\":18446744073709551616}", KR_EINVAL, "",
            "too big integer");
    refused(KR_OP_TENANTS_CANCEL, "{\"tenant\":\"9223372036854775808\"}", KR_EINVAL, "tenant",
            "not a tenant id");
    refused(KR_OP_TENANTS_CANCEL, "{\"tenant\":-9223372036854775809}", KR_EINVAL, "", "not JSON");
    refused(KR_OP_TENANTS_CANCEL, "{\"tenant\":09223372036854775808}", KR_EINVAL, "", "not JSON");
    /* A big number where no number goes is not taken for a string. */
    snprintf(j, sizeof j, "{%s,\"attribute_key\":\"k\",\"value\":9223372036854775808}", c);
    refused(KR_OP_CONTACTS_SET, j, KR_EINVAL, "value", "64-bit signed integers or floats");
    refused(KR_OP_TAGS_CREATE, "{\"tag_name\":18446744073709551615}", KR_EINVAL, "tag_name",
            "past 2^63-1");
    refused(KR_OP_USERS_GRANT,
            "{\"account\":\"000102030405060708090a0b0c0d0e0f\",\"version\":1,"
            "\"permissions\":[18446744073709551615]}",
            KR_EINVAL, "permissions", "item 0 is not one of the allowed values");
    refused(KR_OP_TENANTS_CANCEL, "{\"tenant\":0}", KR_EINVAL, "tenant", "not a tenant id");
    /* Times. */
    refused(KR_OP_AUDIT_LIST, "{\"from\":\"2026-04-01\"}", KR_EINVAL, "from", "RFC 3339");
    refused(KR_OP_AUDIT_LIST, "{\"from\":-5}", KR_EINVAL, "from", "nanoseconds");
    /* Strings, enums, lists. */
    refused(KR_OP_AUTH_LOGIN,
            "{\"tenant_code\":\"Acme!\",\"email\":\"a@example.jp\",\"password\":\"12345678\"}",
            KR_EINVAL, "tenant_code", "characters");
    refused(KR_OP_AUTH_LOGIN,
            "{\"tenant_code\":\"acme\",\"email\":\"not-an-address\",\"password\":\"12345678\"}",
            KR_EINVAL, "email", "e-mail");
    refused(KR_OP_AUTH_LOGIN, "{\"tenant_code\":\"acme\",\"email\":\"a@b.jp\",\"password\":7}",
            KR_EINVAL, "password", "string");
    refused(KR_OP_TAGS_CREATE,
            "{\"tag_name\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
            KR_ETOOLARGE, "tag_name", "too long");
    refused(KR_OP_TAGS_CREATE, "{\"tag_name\":\"\"}", KR_EINVAL, "tag_name", "too short");
    refused(KR_OP_TAGS_CREATE, "{\"tag_name\":\"a\\u0000b\"}", KR_EINVAL, "", "not JSON");
    refused(KR_OP_ATTRIBUTES_DEFINE, "{\"attribute_key\":\"k\",\"attribute_type\":\"String\"}",
            KR_EINVAL, "attribute_type", "allowed values: string, number, date, bool");
    refused(KR_OP_USERS_GRANT,
            "{\"account\":\"000102030405060708090a0b0c0d0e0f\",\"version\":1,"
            "\"permissions\":[\"users.read\",\"users.read\"]}",
            KR_EINVAL, "permissions", "repeated");
    refused(KR_OP_USERS_GRANT,
            "{\"account\":\"000102030405060708090a0b0c0d0e0f\",\"version\":1,"
            "\"permissions\":\"users.read\"}",
            KR_EINVAL, "permissions", "array");
    refused(KR_OP_USERS_GRANT,
            "{\"account\":\"000102030405060708090a0b0c0d0e0f\",\"version\":1,"
            "\"permissions\":[1]}",
            KR_EINVAL, "permissions",
            "item 0 is not one of the allowed values: contacts.read, contacts.write, tags.write, "
            "attributes.write, audit.read, users.read");
    refused(KR_OP_NOTICES_PUBLISH,
            "{\"notice_kind\":\"change\",\"title\":\"t\",\"body\":\"b\",\"effective\":0,"
            "\"audience\":\"listed\",\"tenants\":[2,2]}",
            KR_EINVAL, "tenants", "repeats");
    refused(KR_OP_NOTICES_PUBLISH,
            "{\"notice_kind\":\"change\",\"title\":\"t\",\"body\":\"b\",\"effective\":0,"
            "\"audience\":\"listed\",\"tenants\":[1,\"x\"]}",
            KR_EINVAL, "tenants", "item 1");
    snprintf(j, sizeof j, "{%s,\"attribute_key\":\"k\",\"value\":null}", c);
    refused(KR_OP_CONTACTS_SET, j, KR_EINVAL, "value", "string, number or bool");
    snprintf(j, sizeof j, "{%s,\"attribute_key\":\"k\",\"value\":[1]}", c);
    refused(KR_OP_CONTACTS_SET, j, KR_EINVAL, "value", "string, number or bool");

    /* Over the text limit, and an output buffer too small. */
    size_t big = JSONMP_ARGS_MAX + 1;
    char *huge = malloc(big + 1);
    assert_non_null(huge);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    huge[big] = '\0';
    struct jsonmp_diag d;
    struct kr_mp_fixbuf fb = {.p = buf, .cap = sizeof buf};
    assert_int_equal(jsonmp_args(KR_OP_AUTH_WHOAMI, huge, big, &fb, &d), KR_ETOOLARGE);
    assert_int_equal(fb.len, 0);
    free(huge);
    const char *login = "{\"tenant_code\":\"acme\",\"email\":\"a@b.jp\",\"password\":\"12345678\"}";
    struct kr_mp_fixbuf small = {.p = buf, .cap = 10};
    assert_int_equal(jsonmp_args(KR_OP_AUTH_LOGIN, login, strlen(login), &small, &d), KR_ETOOLARGE);
    assert_true(small.len <= 10);
    assert_int_equal(jsonmp_args(-1, "{}", 2, &fb, &d), KR_EINVAL);
    assert_int_equal(jsonmp_args(KR_OP__COUNT, "{}", 2, &fb, &d), KR_EINVAL);
}

static void test_time(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ns;
    } good[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2026-04-01T00:00:00Z", 1775001600000000000ull},
        {"2026-04-01T09:00:00+09:00", 1775001600000000000ull},
        {"2026-03-31t15:00:00-09:00", 1775001600000000000ull},
        {"2026-04-01 00:00:00.5z", 1775001600500000000ull},
        {"2024-02-29T12:30:15.000000001Z", 1709209815000000001ull},
        {"2554-07-21T23:34:33.709551615Z", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t ns = 1;
        if (jsonmp_parse_time(good[i].s, strlen(good[i].s), &ns))
            fail_msg("refused %s", good[i].s);
        assert_int_equal(ns, good[i].ns);
    }
    static const char *const bad[] = {
        "",
        "2026-04-01",
        "2026-04-01T00:00:00",             /* no offset */
        "2023-02-29T00:00:00Z",            /* not a leap year */
        "2026-13-01T00:00:00Z",            /* month */
        "2026-04-31T00:00:00Z",            /* day */
        "2026-04-01T24:00:00Z",            /* hour */
        "2026-04-01T00:00:60Z",            /* leap second */
        "1969-12-31T23:59:59Z",            /* before the epoch */
        "1970-01-01T08:59:59+09:00",       /* before the epoch by its offset */
        "2554-07-21T23:34:33.709551616Z",  /* past 2^64-1 ns */
        "2026-04-01T00:00:00.Z",           /* empty fraction */
        "2026-04-01T00:00:00.1234567890Z", /* 10 digits */
        "2026-04-01T00:00:00+0900",
        "2026-04-01T00:00:00Zjunk",
        "2026-04-01X00:00:00Z",
        "+026-04-01T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ns = 42;
        if (jsonmp_parse_time(bad[i], strlen(bad[i]), &ns) != KR_EINVAL)
            fail_msg("accepted %s", bad[i]);
        assert_int_equal(ns, 42);
    }
}

/* An msgpack buffer for building replies. */
static msgpack_sbuffer sb;
static msgpack_packer pk;

static void reset(void)
{
    msgpack_sbuffer_clear(&sb);
}

static void test_reply_json(void **state)
{
    (void)state;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_str_with_body(&pk, "ok", 2);
    msgpack_pack_true(&pk);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_array(&pk, 8);
    msgpack_pack_nil(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_int64(&pk, -1);
    msgpack_pack_double(&pk, 0.1);
    msgpack_pack_float(&pk, 2.0f);
    msgpack_pack_bin_with_body(&pk, "\x00\xab\xff", 3);
    msgpack_pack_map(&pk, 0);
    msgpack_pack_str_with_body(&pk, "s", 1);
    static const char s[] = "q\"b\\n\nt\tr\rc\x01"
                            "d\x7f"
                            "é日本🙂/";
    msgpack_pack_str_with_body(&pk, s, sizeof s - 1);
    char *text = to_json((const uint8_t *)sb.data, sb.size);
    assert_string_equal(text, "{\"id\":\"18446744073709551615\",\"ok\":true,\"n\":[null,false,"
                              "\"-9223372036854775808\",-1,0.1,2.0,\"00abff\",{}],"
                              "\"s\":\"q\\\"b\\\\n\\nt\\tr\\rc\\u0001d\\u007fé日本🙂/\"}");
    free(text);

    /* Tenants and times are strings by their key, at any depth and in lists;
     * other integers are numbers up to 2^53-1. */
    reset();
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "tenant", 6);
    msgpack_pack_uint64(&pk, 12);
    msgpack_pack_str_with_body(&pk, "due", 3);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "deadline", 8);
    msgpack_pack_uint64(&pk, 1775001600000000000ull);
    msgpack_pack_str_with_body(&pk, "tenants", 7);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, 9223372036854775808ull);
    msgpack_pack_str_with_body(&pk, "version", 7);
    msgpack_pack_uint64(&pk, 9007199254740991ull);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, 9007199254740992ull);
    msgpack_pack_str_with_body(&pk, "count", 5);
    msgpack_pack_int64(&pk, -9007199254740991ll);
    text = to_json((const uint8_t *)sb.data, sb.size);
    assert_string_equal(text, "{\"tenant\":\"12\",\"due\":[{\"deadline\":\"1775001600000000000\","
                              "\"tenants\":[\"1\",\"9223372036854775808\"],"
                              "\"version\":9007199254740991,\"seq\":\"9007199254740992\"}],"
                              "\"count\":-9007199254740991}");
    free(text);
    msgpack_sbuffer_destroy(&sb);
}

/* The one JSON string escaper: valid UTF-8 as it is, controls escaped, and
 * invalid UTF-8 refused (strict) or each bad byte replaced by \ufffd. */
static void test_escape(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"", "\"\""},
        {"a\"b\\c\n\t\r\x01\x7f", "\"a\\\"b\\\\c\\n\\t\\r\\u0001\\u007f\""},
        {"日本🙂", "\"日本🙂\""},
        {"a\xff"
         "b",
         "\"a\\ufffdb\""},                                        /* never UTF-8 */
        {"\xc0\x80", "\"\\ufffd\\ufffd\""},                       /* overlong NUL */
        {"\x80", "\"\\ufffd\""},                                  /* stray continuation */
        {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},            /* surrogate */
        {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* past U+10FFFF */
        {"x\xe6\x97", "\"x\\ufffd\\ufffd\""},                     /* truncated at the end */
        {"\xe6\x97"
         "a",
         "\"\\ufffd\\ufffda\""}, /* truncated before a byte */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        size_t len = 0;
        out[0] = 0;
        assert_true(jsonmp_buf_str(out, sizeof out, &len, cases[i].in, strlen(cases[i].in)));
        assert_string_equal(out, cases[i].out);
        assert_int_equal(len, strlen(out));
        /* The same through a stream. */
        char *mem = NULL;
        size_t memlen = 0;
        FILE *f = open_memstream(&mem, &memlen);
        assert_non_null(f);
        jsonmp_fput_str(f, cases[i].in, strlen(cases[i].in));
        assert_int_equal(fclose(f), 0);
        assert_string_equal(mem, cases[i].out);
        free(mem);
    }
    /* Appending, and a buffer too small keeps what it had. */
    char out[8] = "x";
    size_t len = 1;
    assert_true(jsonmp_buf_str(out, sizeof out, &len, "ab", 2));
    assert_string_equal(out, "x\"ab\"");
    assert_false(jsonmp_buf_str(out, sizeof out, &len, "ab", 2));
    assert_string_equal(out, "x\"ab\"");
    assert_int_equal(len, 5);
    len = 0;
    assert_false(jsonmp_buf_str(out, 4, &len, "ab", 2)); /* 4 bytes and a NUL */
    assert_int_equal(len, 0);
    assert_string_equal(out, "");
}

/* mp[0..len) must be refused with err. */
static void bad_reply(const void *mp, size_t len, kr_err err)
{
    char *out = (char *)1;
    size_t n = 7;
    struct jsonmp_diag d;
    kr_err got = jsonmp_to_json(mp, len, &out, &n, &d);
    if (got != err)
        fail_msg("got %s, want %s (%s %s)", kr_strerror(got), kr_strerror(err), d.key, d.why);
    assert_null(out);
    assert_int_equal(n, 0);
}

static void test_reply_hostile(void **state)
{
    (void)state;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* A realistic reply, truncated at every offset. */
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, 300);
    msgpack_pack_str_with_body(&pk, "ok", 2);
    msgpack_pack_true(&pk);
    msgpack_pack_str_with_body(&pk, "result", 6);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "items", 5);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_bin_with_body(&pk, "0123456789abcdef", 16);
    msgpack_pack_double(&pk, -2.5);
    msgpack_pack_str_with_body(&pk, "name", 4);
    msgpack_pack_str_with_body(&pk, "日本", 6);
    for (size_t cut = 0; cut < sb.size; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
        assert_non_null(copy);
        memcpy(copy, sb.data, cut);
        bad_reply(copy, cut, KR_ECORRUPT);
        free(copy);
    }
    char *text = to_json((const uint8_t *)sb.data, sb.size);
    assert_string_equal(text, "{\"id\":300,\"ok\":true,\"result\":{\"items\":[\"3031323334353637"
                              "3839616263646566\",-2.5],\"name\":\"日本\"}}");
    free(text);
    /* Trailing bytes. */
    msgpack_pack_nil(&pk);
    bad_reply(sb.data, sb.size, KR_ECORRUPT);
    reset();

    static const uint8_t c1[] = {0x91, 0xc1};
    bad_reply(c1, sizeof c1, KR_ECORRUPT);
    static const uint8_t arr_huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    bad_reply(arr_huge, sizeof arr_huge, KR_ECORRUPT);
    static const uint8_t map_huge[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    bad_reply(map_huge, sizeof map_huge, KR_ECORRUPT);
    static const uint8_t str_over[] = {0xdb, 0x00, 0x00, 0x00, 0x03, 'a', 'b'};
    bad_reply(str_over, sizeof str_over, KR_ECORRUPT);
    static const uint8_t bin_over[] = {0xc4, 0x02, 0x00};
    bad_reply(bin_over, sizeof bin_over, KR_ECORRUPT);
    static const uint8_t int_key[] = {0x81, 0x01, 0xc0};
    bad_reply(int_key, sizeof int_key, KR_ECORRUPT);
    static const uint8_t ext[] = {0xd4, 0x01, 0x00};
    bad_reply(ext, sizeof ext, KR_ECORRUPT);
    static const uint8_t nan[] = {0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
    bad_reply(nan, sizeof nan, KR_ECORRUPT);
    static const uint8_t inf[] = {0xca, 0x7f, 0x80, 0, 0};
    bad_reply(inf, sizeof inf, KR_ECORRUPT);
    bad_reply("", 0, KR_ECORRUPT);
    /* Invalid UTF-8: overlong, lone continuation, surrogate, past U+10FFFF,
     * truncated sequence. */
    static const char *const bad_utf8[] = {"\xc0\x80", "\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                           "a\xe6\x97"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        msgpack_pack_str_with_body(&pk, bad_utf8[i], strlen(bad_utf8[i]));
        bad_reply(sb.data, sb.size, KR_ECORRUPT);
        reset();
    }
    /* Depth: JSONMP_DEPTH_MAX arrays nest fine, one more is refused. */
    for (unsigned i = 0; i < JSONMP_DEPTH_MAX; i++)
        msgpack_pack_array(&pk, i + 1 < JSONMP_DEPTH_MAX ? 1 : 0);
    text = to_json((const uint8_t *)sb.data, sb.size);
    assert_int_equal(strlen(text), 2 * JSONMP_DEPTH_MAX);
    free(text);
    reset();
    for (unsigned i = 0; i <= JSONMP_DEPTH_MAX; i++)
        msgpack_pack_array(&pk, i < JSONMP_DEPTH_MAX ? 1 : 0);
    bad_reply(sb.data, sb.size, KR_ETOOLARGE);
    reset();
    msgpack_sbuffer_destroy(&sb);
    /* Over the reply cap, before a byte is looked at. */
    uint8_t *big = calloc(1, KR_API_REPLY_MAX + 1);
    assert_non_null(big);
    bad_reply(big, KR_API_REPLY_MAX + 1, KR_ETOOLARGE);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_round_trip),
        cmocka_unit_test(test_args_big_ids),
        cmocka_unit_test(test_args_refused),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_reply_json),
        cmocka_unit_test(test_reply_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
