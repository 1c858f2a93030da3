/*
 * mp_test.c: tests for journal/mp.c, the bounded msgpack reader.
 *
 * Every case is a byte string written out here by hand from the msgpack spec,
 * not produced by an encoder, so the expected answers do not depend on any
 * msgpack implementation. Each case is read in canonical and in lax mode, and
 * every proper prefix of it must be refused without the reader moving.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kr_error.h"
#include "mp.h"

/* Largest test buffer: a map32 of 0x10000 pairs (header plus 2 * 0x10000 bytes). */
#define BUF_MAX (5 + 2 * 0x10000 + 16)

enum kind { K_ARRAY, K_MAP, K_UINT, K_STR, K_BIN, K_NIL };
#define K_COUNT 6

static const char *kind_name(enum kind k)
{
    static const char *names[K_COUNT] = {"array", "map", "uint", "str", "bin", "nil"};
    return names[k];
}

/* What one read returned. */
struct val {
    uint64_t u;      /* uint value, or element / pair count */
    const void *ptr; /* str / bin bytes */
    size_t len;      /* str / bin length */
};

static kr_err read_kind(struct kr_mp_reader *r, enum kind k, struct val *v)
{
    memset(v, 0, sizeof *v);
    uint32_t count = 0;
    kr_err err;
    switch (k) {
    case K_ARRAY:
        err = kr_mp_read_array(r, &count);
        v->u = count;
        return err;
    case K_MAP:
        err = kr_mp_read_map(r, &count);
        v->u = count;
        return err;
    case K_UINT:
        return kr_mp_read_uint(r, &v->u);
    case K_STR: {
        const char *s = NULL;
        err = kr_mp_read_str(r, &s, &v->len);
        v->ptr = s;
        return err;
    }
    case K_BIN: {
        const uint8_t *b = NULL;
        err = kr_mp_read_bin(r, &b, &v->len);
        v->ptr = b;
        return err;
    }
    case K_NIL:
        return kr_mp_read_nil(r);
    }
    fail_msg("bad kind");
    return KR_EINVAL;
}

/* Parses hex pairs ("cd 01 00"; spaces ignored) into out; returns the length. */
static size_t hex(uint8_t *out, const char *s)
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
            continue;
        }
        unsigned x;
        assert_int_equal(sscanf(s, "%2x", &x), 1);
        out[n++] = (uint8_t)x;
        s += 2;
    }
    return n;
}

/* A case: `head` in hex, then `fill` bytes (0x01 each: valid fixints, so an
 * array's elements are real). For str/bin `fill` is the body; for array/map it
 * is the elements the count promises, at one byte each. */
struct mpcase {
    enum kind kind;
    const char *head;
    size_t fill;
    uint64_t want; /* value (uint), count (array/map) or length (str/bin) */
};

/* Builds a case into buf; returns its total length and the header length. */
static size_t build(uint8_t *buf, const struct mpcase *c, size_t *hlen)
{
    *hlen = hex(buf, c->head);
    memset(buf + *hlen, 0x01, c->fill);
    return *hlen + c->fill;
}

/* The bytes a successful read of this case consumes. */
static size_t consumed(const struct mpcase *c, size_t hlen)
{
    return (c->kind == K_STR || c->kind == K_BIN) ? hlen + c->fill : hlen;
}

/* Reads c from buf[0..len) in the given mode and checks the exact outcome. */
static void expect_ok(const uint8_t *buf, size_t len, const struct mpcase *c, size_t hlen,
                      bool canonical)
{
    struct kr_mp_reader r;
    struct val v;
    kr_mp_reader_init(&r, buf, len, canonical);
    assert_int_equal(kr_mp_remaining(&r), len);
    kr_err err = read_kind(&r, c->kind, &v);
    if (err != KR_OK)
        fail_msg("%s %s (canonical %d): %s", kind_name(c->kind), c->head, canonical,
                 kr_strerror(err));
    size_t used = consumed(c, hlen);
    assert_ptr_equal(r.p, buf + used);
    assert_int_equal(kr_mp_remaining(&r), len - used);
    switch (c->kind) {
    case K_UINT:
    case K_ARRAY:
    case K_MAP:
        assert_true(v.u == c->want);
        break;
    case K_STR:
    case K_BIN:
        assert_int_equal(v.len, c->want);
        assert_ptr_equal(v.ptr, buf + hlen);
        break;
    case K_NIL:
        break;
    }
}

/* The read must fail with KR_ECORRUPT and leave the reader where it was. */
static void expect_refused(const uint8_t *buf, size_t len, enum kind k, bool canonical)
{
    struct kr_mp_reader r;
    struct val v;
    kr_mp_reader_init(&r, buf, len, canonical);
    kr_err err = read_kind(&r, k, &v);
    if (err != KR_ECORRUPT)
        fail_msg("%s of %zu bytes (first %02x, canonical %d): got %s", kind_name(k), len,
                 len ? buf[0] : 0, canonical, kr_strerror(err));
    assert_ptr_equal(r.p, buf);
    assert_int_equal(kr_mp_remaining(&r), len);
}

/* Minimal encodings: accepted in both modes. */
static const struct mpcase minimal[] = {
    /* unsigned integers at every width boundary */
    {K_UINT, "00", 0, 0},
    {K_UINT, "01", 0, 1},
    {K_UINT, "7f", 0, 127},
    {K_UINT, "cc 80", 0, 128},
    {K_UINT, "cc ff", 0, 255},
    {K_UINT, "cd 01 00", 0, 256},
    {K_UINT, "cd ff ff", 0, 65535},
    {K_UINT, "ce 00 01 00 00", 0, 65536},
    {K_UINT, "ce ff ff ff ff", 0, 4294967295u},
    {K_UINT, "cf 00 00 00 01 00 00 00 00", 0, 4294967296ull},
    {K_UINT, "cf 7f ff ff ff ff ff ff ff", 0, 0x7fffffffffffffffull},
    {K_UINT, "cf 80 00 00 00 00 00 00 00", 0, 0x8000000000000000ull},
    {K_UINT, "cf ff ff ff ff ff ff ff ff", 0, UINT64_MAX},
    /* strings */
    {K_STR, "a0", 0, 0},
    {K_STR, "a3", 3, 3},
    {K_STR, "bf", 31, 31},
    {K_STR, "d9 20", 32, 32},
    {K_STR, "d9 ff", 255, 255},
    {K_STR, "da 01 00", 256, 256},
    {K_STR, "da ff ff", 65535, 65535},
    {K_STR, "db 00 01 00 00", 65536, 65536},
    /* byte strings: bin has no fix form, so bin8 is minimal from 0 */
    {K_BIN, "c4 00", 0, 0},
    {K_BIN, "c4 05", 5, 5},
    {K_BIN, "c4 ff", 255, 255},
    {K_BIN, "c5 01 00", 256, 256},
    {K_BIN, "c5 ff ff", 65535, 65535},
    {K_BIN, "c6 00 01 00 00", 65536, 65536},
    /* arrays */
    {K_ARRAY, "90", 0, 0},
    {K_ARRAY, "93", 3, 3},
    {K_ARRAY, "9f", 15, 15},
    {K_ARRAY, "dc 00 10", 16, 16},
    {K_ARRAY, "dc ff ff", 65535, 65535},
    {K_ARRAY, "dd 00 01 00 00", 65536, 65536},
    /* maps */
    {K_MAP, "80", 0, 0},
    {K_MAP, "81", 2, 1},
    {K_MAP, "8f", 30, 15},
    {K_MAP, "de 00 10", 32, 16},
    {K_MAP, "df 00 01 00 00", 2 * 65536, 65536},
    /* nil */
    {K_NIL, "c0", 0, 0},
};

/* Non-minimal encodings: refused in canonical mode, accepted otherwise. */
static const struct mpcase lax_only[] = {
    {K_UINT, "cc 00", 0, 0},
    {K_UINT, "cc 05", 0, 5},
    {K_UINT, "cc 7f", 0, 127},
    {K_UINT, "cd 00 05", 0, 5},
    {K_UINT, "cd 00 ff", 0, 255},
    {K_UINT, "ce 00 00 00 05", 0, 5},
    {K_UINT, "ce 00 00 ff ff", 0, 65535},
    {K_UINT, "cf 00 00 00 00 00 00 00 05", 0, 5},
    {K_UINT, "cf 00 00 00 00 ff ff ff ff", 0, 4294967295u},
    {K_STR, "d9 00", 0, 0},
    {K_STR, "d9 03", 3, 3},
    {K_STR, "d9 1f", 31, 31},
    {K_STR, "da 00 03", 3, 3},
    {K_STR, "da 00 ff", 255, 255},
    {K_STR, "db 00 00 00 03", 3, 3},
    {K_STR, "db 00 00 ff ff", 65535, 65535},
    {K_BIN, "c5 00 00", 0, 0},
    {K_BIN, "c5 00 03", 3, 3},
    {K_BIN, "c5 00 ff", 255, 255},
    {K_BIN, "c6 00 00 00 05", 5, 5},
    {K_BIN, "c6 00 00 ff ff", 65535, 65535},
    {K_ARRAY, "dc 00 00", 0, 0},
    {K_ARRAY, "dc 00 02", 2, 2},
    {K_ARRAY, "dc 00 0f", 15, 15},
    {K_ARRAY, "dd 00 00 00 02", 2, 2},
    {K_ARRAY, "dd 00 00 ff ff", 65535, 65535},
    {K_MAP, "de 00 01", 2, 1},
    {K_MAP, "de 00 0f", 30, 15},
    {K_MAP, "df 00 00 00 02", 4, 2},
    {K_MAP, "df 00 00 ff ff", 2 * 65535, 65535},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint8_t *buf_new(void)
{
    uint8_t *b = malloc(BUF_MAX);
    assert_non_null(b);
    return b;
}

static void test_minimal_both_modes(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    for (size_t i = 0; i < COUNT(minimal); i++) {
        size_t hlen, len = build(buf, &minimal[i], &hlen);
        expect_ok(buf, len, &minimal[i], hlen, true);
        expect_ok(buf, len, &minimal[i], hlen, false);
        /* A byte after the object is not read. */
        buf[len] = 0xc1;
        expect_ok(buf, len + 1, &minimal[i], hlen, true);
    }
    free(buf);
}

static void test_truncated_every_offset(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    const struct {
        const struct mpcase *cases;
        size_t n;
    } sets[] = {{minimal, COUNT(minimal)}, {lax_only, COUNT(lax_only)}};
    for (size_t s = 0; s < COUNT(sets); s++) {
        for (size_t i = 0; i < sets[s].n; i++) {
            const struct mpcase *c = &sets[s].cases[i];
            size_t hlen, len = build(buf, c, &hlen);
            /* Large bodies: every header prefix, then the body cut at a spread of
             * points and one short of the end; small ones at every offset. */
            for (size_t cut = 0; cut < len; cut++) {
                if (len > 300 && cut > hlen + 8 && cut + 8 < len && cut % 997 != 0)
                    continue;
                expect_refused(buf, cut, c->kind, true);
                expect_refused(buf, cut, c->kind, false);
            }
        }
    }
    free(buf);
}

static void test_lax_only_encodings(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    for (size_t i = 0; i < COUNT(lax_only); i++) {
        size_t hlen, len = build(buf, &lax_only[i], &hlen);
        expect_refused(buf, len, lax_only[i].kind, true);
        expect_ok(buf, len, &lax_only[i], hlen, false);
    }
    free(buf);
}

static void test_empty_buffer(void **state)
{
    (void)state;
    uint8_t b[1] = {0x00};
    struct kr_mp_reader r;
    for (int k = 0; k < K_COUNT; k++) {
        expect_refused(b, 0, (enum kind)k, true);
        expect_refused(b, 0, (enum kind)k, false);
    }
    kr_mp_reader_init(&r, b, 0, true);
    assert_false(kr_mp_peek_nil(&r));
    assert_int_equal(kr_mp_remaining(&r), 0);
}

static void test_reserved_c1(void **state)
{
    (void)state;
    uint8_t b[16];
    memset(b, 0, sizeof b);
    b[0] = 0xc1;
    struct kr_mp_reader r;
    for (int k = 0; k < K_COUNT; k++) {
        expect_refused(b, sizeof b, (enum kind)k, true);
        expect_refused(b, sizeof b, (enum kind)k, false);
        expect_refused(b, 1, (enum kind)k, false);
    }
    kr_mp_reader_init(&r, b, sizeof b, false);
    assert_false(kr_mp_peek_nil(&r));
}

/* Headers that promise more than is there: 0xFFFFFFFF, and "remaining + 1". */
static void test_lying_lengths(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    const struct {
        enum kind kind;
        const char *head;
        size_t have; /* bytes present after the header */
    } lies[] = {
        {K_ARRAY, "dd ff ff ff ff", 64},
        {K_ARRAY, "dc ff ff", 64},
        {K_ARRAY, "dc 00 21", 32},
        {K_ARRAY, "9f", 14},
        {K_ARRAY, "91", 0},
        {K_MAP, "df ff ff ff ff", 64},
        {K_MAP, "de ff ff", 64},
        {K_MAP, "de 00 11", 33}, /* 17 pairs need 34 bytes */
        {K_MAP, "de 00 11", 32},
        {K_MAP, "8f", 29},
        {K_MAP, "81", 1},
        {K_STR, "db ff ff ff ff", 64},
        {K_STR, "da ff ff", 64},
        {K_STR, "d9 21", 32},
        {K_STR, "bf", 30},
        {K_STR, "a1", 0},
        {K_BIN, "c6 ff ff ff ff", 64},
        {K_BIN, "c5 ff ff", 64},
        {K_BIN, "c4 21", 32},
        {K_BIN, "c4 01", 0},
        {K_BIN, "c6 00 01 00 01", 65536},
    };
    for (size_t i = 0; i < COUNT(lies); i++) {
        size_t hlen = hex(buf, lies[i].head);
        memset(buf + hlen, 0x01, lies[i].have);
        expect_refused(buf, hlen + lies[i].have, lies[i].kind, true);
        expect_refused(buf, hlen + lies[i].have, lies[i].kind, false);
    }
    /* The same headers with exactly enough bytes are read (bounds are tight). */
    const struct mpcase exact[] = {
        {K_ARRAY, "dc 00 21", 33, 33},
        {K_MAP, "de 00 11", 34, 17},
        {K_STR, "d9 21", 33, 33},
        {K_BIN, "c4 21", 33, 33},
    };
    for (size_t i = 0; i < COUNT(exact); i++) {
        size_t hlen, len = build(buf, &exact[i], &hlen);
        expect_ok(buf, len, &exact[i], hlen, true);
    }
    free(buf);
}

static void test_uint_refuses_other_types(void **state)
{
    (void)state;
    uint8_t buf[32];
    const char *not_uint[] = {
        "ff",                         /* negative fixint -1 */
        "e0",                         /* negative fixint -32 */
        "d0 ff",                      /* int8 -1 */
        "d0 05",                      /* int8 5: signed type, even if positive */
        "d1 ff ff",                   /* int16 */
        "d2 ff ff ff ff",             /* int32 */
        "d3 80 00 00 00 00 00 00 00", /* int64 min */
        "d3 00 00 00 00 00 00 00 05", /* int64 5 */
        "ca 3f 80 00 00",             /* float32 1.0 */
        "ca 7f c0 00 00",             /* float32 NaN */
        "cb 3f f0 00 00 00 00 00 00", /* float64 1.0 */
        "cb 7f f0 00 00 00 00 00 00", /* float64 +Inf */
        "c0",                         /* nil */
        "c2",                         /* false */
        "c3",                         /* true */
        "a1 31",                      /* "1" */
        "c4 01 01",                   /* bin */
        "91 01",                      /* [1] */
        "81 01 01",                   /* {1: 1} */
        "d4 01 01",                   /* fixext1 */
    };
    for (size_t i = 0; i < COUNT(not_uint); i++) {
        size_t len = hex(buf, not_uint[i]);
        expect_refused(buf, len, K_UINT, true);
        expect_refused(buf, len, K_UINT, false);
    }
}

/* Each reader refuses every other type's minimal encoding, without moving. */
static void test_type_mismatch(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    for (size_t i = 0; i < COUNT(minimal); i++) {
        size_t hlen, len = build(buf, &minimal[i], &hlen);
        for (int k = 0; k < K_COUNT; k++) {
            if ((enum kind)k == minimal[i].kind)
                continue;
            expect_refused(buf, len, (enum kind)k, true);
            expect_refused(buf, len, (enum kind)k, false);
        }
    }
    /* str and bin, which share nothing but shape, are not interchangeable. */
    uint8_t sb[8];
    size_t n = hex(sb, "a3 61 62 63");
    expect_refused(sb, n, K_BIN, false);
    n = hex(sb, "c4 03 61 62 63");
    expect_refused(sb, n, K_STR, false);
    free(buf);
}

/* Every value up to 2^64 - 1 round-trips through a minimal encoder written
 * here; one byte shorter is refused; the next width up is non-canonical. */
static size_t enc_uint(uint8_t *out, uint64_t v, unsigned width)
{
    if (width == 0) {
        out[0] = (uint8_t)v;
        return 1;
    }
    static const uint8_t tags[9] = {0, 0xcc, 0xcd, 0, 0xce, 0, 0, 0, 0xcf};
    out[0] = tags[width];
    for (unsigned i = 0; i < width; i++)
        out[1 + i] = (uint8_t)(v >> (8 * (width - 1 - i)));
    return 1 + width;
}

static unsigned min_width(uint64_t v)
{
    return v < 0x80 ? 0 : v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
}

static void test_uint_sweep(void **state)
{
    (void)state;
    uint8_t buf[16];
    uint64_t values[3 * 64 + 2];
    size_t nv = 0;
    values[nv++] = 0;
    values[nv++] = UINT64_MAX;
    for (unsigned b = 0; b < 64; b++) {
        uint64_t p = 1ull << b;
        values[nv++] = p - 1;
        values[nv++] = p;
        values[nv++] = p + 1;
    }
    static const unsigned widths[] = {0, 1, 2, 4, 8};
    for (size_t i = 0; i < nv; i++) {
        uint64_t v = values[i];
        unsigned mw = min_width(v);
        for (size_t w = 0; w < COUNT(widths); w++) {
            unsigned width = widths[w];
            if (width < mw || (width == 0 && v > 0x7f))
                continue;
            size_t len = enc_uint(buf, v, width);
            struct kr_mp_reader r;
            uint64_t got = 0;
            kr_mp_reader_init(&r, buf, len, false);
            assert_int_equal(kr_mp_read_uint(&r, &got), KR_OK);
            assert_true(got == v);
            assert_int_equal(kr_mp_remaining(&r), 0);
            kr_mp_reader_init(&r, buf, len, true);
            if (width == mw) {
                assert_int_equal(kr_mp_read_uint(&r, &got), KR_OK);
                assert_true(got == v);
                assert_int_equal(kr_mp_remaining(&r), 0);
            } else {
                expect_refused(buf, len, K_UINT, true);
            }
        }
    }
}

/* A small message read in sequence: pointers borrow from the buffer, and
 * peek_nil does not consume. */
static void test_sequence(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = hex(buf, "93 cd 12 34 a2 68 69 c0 c4 02 aa bb 81 a1 6b 07");
    struct kr_mp_reader r;
    uint32_t count;
    uint64_t u;
    const char *s;
    const uint8_t *b;
    size_t n;
    kr_mp_reader_init(&r, buf, len, true);
    assert_int_equal(kr_mp_read_array(&r, &count), KR_OK);
    assert_int_equal(count, 3);
    assert_false(kr_mp_peek_nil(&r));
    assert_int_equal(kr_mp_read_uint(&r, &u), KR_OK);
    assert_true(u == 0x1234);
    assert_int_equal(kr_mp_read_str(&r, &s, &n), KR_OK);
    assert_int_equal(n, 2);
    assert_ptr_equal(s, buf + 5);
    assert_memory_equal(s, "hi", 2);
    assert_true(kr_mp_peek_nil(&r));
    assert_int_equal(kr_mp_remaining(&r), len - 7);
    assert_int_equal(kr_mp_read_nil(&r), KR_OK);
    assert_false(kr_mp_peek_nil(&r));
    assert_int_equal(kr_mp_read_nil(&r), KR_ECORRUPT);
    assert_int_equal(kr_mp_read_bin(&r, &b, &n), KR_OK);
    assert_int_equal(n, 2);
    assert_ptr_equal(b, buf + 10);
    assert_int_equal(kr_mp_read_map(&r, &count), KR_OK);
    assert_int_equal(count, 1);
    assert_int_equal(kr_mp_read_str(&r, &s, &n), KR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(kr_mp_read_uint(&r, &u), KR_OK);
    assert_true(u == 7);
    assert_int_equal(kr_mp_remaining(&r), 0);
    for (int k = 0; k < K_COUNT; k++)
        expect_refused(buf + len, 0, (enum kind)k, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_both_modes),
        cmocka_unit_test(test_truncated_every_offset),
        cmocka_unit_test(test_lax_only_encodings),
        cmocka_unit_test(test_empty_buffer),
        cmocka_unit_test(test_reserved_c1),
        cmocka_unit_test(test_lying_lengths),
        cmocka_unit_test(test_uint_refuses_other_types),
        cmocka_unit_test(test_type_mismatch),
        cmocka_unit_test(test_uint_sweep),
        cmocka_unit_test(test_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
