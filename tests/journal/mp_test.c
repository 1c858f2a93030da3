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

/* ---- Signed integers, floats, bools (kr_mp_read_int / _float / _bool) ---- */

/* Reads with kr_mp_read_int in the given mode; on failure checks the reader
 * did not move. */
static kr_err read_int_hex(const char *h, bool canonical, int64_t *v, size_t *len)
{
    static uint8_t b[32];
    *len = hex(b, h);
    struct kr_mp_reader r;
    kr_mp_reader_init(&r, b, *len, canonical);
    kr_err err = kr_mp_read_int(&r, v);
    if (err)
        assert_ptr_equal(r.p, b);
    else
        assert_int_equal(kr_mp_remaining(&r), 0);
    return err;
}

static void test_read_int_canonical_edges(void **state)
{
    (void)state;
    static const struct {
        const char *hex;
        int64_t want;
    } ok[] = {
        {"00", 0},
        {"7f", 127},
        {"cc 80", 128},
        {"cc ff", 255},
        {"cd 01 00", 256},
        {"ce 00 01 00 00", 65536},
        {"cf 00 00 00 01 00 00 00 00", 4294967296},
        {"ff", -1},
        {"e0", -32},
        {"d0 df", -33},
        {"d0 80", -128},
        {"d1 ff 7f", -129},
        {"d1 80 00", -32768},
        {"d2 ff ff 7f ff", -32769},
        {"d2 80 00 00 00", INT32_MIN},
        {"d3 ff ff ff ff 7f ff ff ff", (int64_t)INT32_MIN - 1},
        {"d3 80 00 00 00 00 00 00 00", INT64_MIN},
        {"cf 7f ff ff ff ff ff ff ff", INT64_MAX},
    };
    int64_t v;
    size_t len;
    for (size_t i = 0; i < COUNT(ok); i++) {
        for (int canonical = 0; canonical < 2; canonical++) {
            v = 0x5a5a;
            kr_err err = read_int_hex(ok[i].hex, canonical, &v, &len);
            if (err != KR_OK || v != ok[i].want)
                fail_msg("read_int %s (canonical %d): %s, %lld", ok[i].hex, canonical,
                         kr_strerror(err), (long long)v);
        }
    }
    /* Beyond int64: refused in both modes. */
    static const char *big[] = {"cf 80 00 00 00 00 00 00 00", "cf ff ff ff ff ff ff ff ff"};
    for (size_t i = 0; i < COUNT(big); i++) {
        assert_int_equal(read_int_hex(big[i], true, &v, &len), KR_ECORRUPT);
        assert_int_equal(read_int_hex(big[i], false, &v, &len), KR_ECORRUPT);
    }
}

static void test_read_int_non_minimal(void **state)
{
    (void)state;
    static const struct {
        const char *hex;
        int64_t want;
    } lax[] = {
        {"d0 ff", -1},
        {"d0 e0", -32},
        {"d0 00", 0},
        {"d0 05", 5},
        {"d0 7f", 127},
        {"d1 ff ff", -1},
        {"d1 ff df", -33},
        {"d1 ff 80", -128},
        {"d1 00 80", 128},
        {"d2 ff ff ff 7f", -129},
        {"d2 ff ff 80 00", -32768},
        {"d2 00 00 00 01", 1},
        {"d3 ff ff ff ff 80 00 00 00", INT32_MIN},
        {"d3 ff ff ff ff ff ff ff ff", -1},
        {"d3 7f ff ff ff ff ff ff ff", INT64_MAX},
        {"cc 05", 5},
        {"cc 7f", 127},
        {"cd 00 80", 128},
        {"ce 00 00 ff ff", 65535},
        {"cf 00 00 00 00 00 00 00 05", 5},
    };
    int64_t v;
    size_t len;
    for (size_t i = 0; i < COUNT(lax); i++) {
        v = 0x5a5a;
        if (read_int_hex(lax[i].hex, false, &v, &len) != KR_OK || v != lax[i].want)
            fail_msg("lax read_int %s: %lld", lax[i].hex, (long long)v);
        if (read_int_hex(lax[i].hex, true, &v, &len) != KR_ECORRUPT)
            fail_msg("canonical read_int accepted %s", lax[i].hex);
    }
}

/* Other types, truncations and an empty buffer: KR_ECORRUPT, reader unmoved. */
static void test_read_int_refusals(void **state)
{
    (void)state;
    static const char *other[] = {
        "c0",    "c2",       "c3",    "c1",       "ca 3f 80 00 00", "cb 3f f0 00 00 00 00 00 00",
        "a1 31", "c4 01 01", "91 01", "81 01 01", "d4 01 01",       "c7 01 01 01",
    };
    int64_t v;
    size_t len;
    for (size_t i = 0; i < COUNT(other); i++) {
        assert_int_equal(read_int_hex(other[i], false, &v, &len), KR_ECORRUPT);
        assert_int_equal(read_int_hex(other[i], true, &v, &len), KR_ECORRUPT);
    }
    static const char *whole[] = {
        "cc 80", "cd 01 00", "ce 00 01 00 00", "cf 7f ff ff ff ff ff ff ff",
        "d0 df", "d1 ff 7f", "d2 ff ff 7f ff", "d3 80 00 00 00 00 00 00 00",
    };
    uint8_t b[16];
    for (size_t i = 0; i < COUNT(whole); i++) {
        size_t n = hex(b, whole[i]);
        for (size_t cut = 0; cut < n; cut++) {
            for (int canonical = 0; canonical < 2; canonical++) {
                struct kr_mp_reader r;
                kr_mp_reader_init(&r, b, cut, canonical);
                assert_int_equal(kr_mp_read_int(&r, &v), KR_ECORRUPT);
                assert_ptr_equal(r.p, b);
            }
        }
    }
}

static kr_err read_float_hex(const char *h, bool canonical, double *v)
{
    static uint8_t b[32];
    size_t len = hex(b, h);
    struct kr_mp_reader r;
    kr_mp_reader_init(&r, b, len, canonical);
    kr_err err = kr_mp_read_float(&r, v);
    if (err)
        assert_ptr_equal(r.p, b);
    else
        assert_int_equal(kr_mp_remaining(&r), 0);
    return err;
}

static void test_read_float(void **state)
{
    (void)state;
    double v;
    /* float64: both modes, exact bits. */
    static const struct {
        const char *hex;
        uint64_t bits;
    } f64[] = {
        {"cb 3f f0 00 00 00 00 00 00", 0x3ff0000000000000ull}, /* 1.0 */
        {"cb 80 00 00 00 00 00 00 00", 0x8000000000000000ull}, /* -0.0 */
        {"cb 7f ef ff ff ff ff ff ff", 0x7fefffffffffffffull}, /* DBL_MAX */
        {"cb 00 00 00 00 00 00 00 01", 0x0000000000000001ull}, /* smallest subnormal */
        {"cb c0 09 21 fb 54 44 2d 18", 0xc00921fb54442d18ull}, /* -pi */
    };
    for (size_t i = 0; i < COUNT(f64); i++) {
        for (int canonical = 0; canonical < 2; canonical++) {
            v = 0;
            assert_int_equal(read_float_hex(f64[i].hex, canonical, &v), KR_OK);
            uint64_t bits;
            memcpy(&bits, &v, 8);
            assert_true(bits == f64[i].bits);
        }
    }
    /* float32: lax only. */
    assert_int_equal(read_float_hex("ca 3f c0 00 00", false, &v), KR_OK);
    assert_true(v == 1.5);
    assert_int_equal(read_float_hex("ca 3f c0 00 00", true, &v), KR_ECORRUPT);
    /* NaN and infinities, either width, either sign: refused in both modes. */
    static const char *nonfinite[] = {
        "cb 7f f8 00 00 00 00 00 00",
        "cb ff f8 00 00 00 00 00 00",
        "cb 7f f0 00 00 00 00 00 01",
        "cb 7f f0 00 00 00 00 00 00",
        "cb ff f0 00 00 00 00 00 00",
        "ca 7f c0 00 00",
        "ca ff c0 00 00",
        "ca 7f 80 00 00",
        "ca ff 80 00 00",
        "ca 7f 80 00 01",
    };
    for (size_t i = 0; i < COUNT(nonfinite); i++) {
        assert_int_equal(read_float_hex(nonfinite[i], false, &v), KR_ECORRUPT);
        assert_int_equal(read_float_hex(nonfinite[i], true, &v), KR_ECORRUPT);
    }
    /* Other types; truncations. */
    static const char *other[] = {"00",
                                  "ff",
                                  "d0 df",
                                  "c0",
                                  "c2",
                                  "c3",
                                  "c1",
                                  "a1 31",
                                  "cf 3f f0 00 00 00 00 00 00",
                                  "d3 3f f0 00 00 00 00 00 00"};
    for (size_t i = 0; i < COUNT(other); i++)
        assert_int_equal(read_float_hex(other[i], false, &v), KR_ECORRUPT);
    uint8_t b[16];
    size_t n = hex(b, "cb 3f f0 00 00 00 00 00 00");
    for (size_t cut = 0; cut < n; cut++) {
        struct kr_mp_reader r;
        kr_mp_reader_init(&r, b, cut, false);
        assert_int_equal(kr_mp_read_float(&r, &v), KR_ECORRUPT);
        assert_ptr_equal(r.p, b);
    }
    n = hex(b, "ca 3f c0 00 00");
    for (size_t cut = 0; cut < n; cut++) {
        struct kr_mp_reader r;
        kr_mp_reader_init(&r, b, cut, false);
        assert_int_equal(kr_mp_read_float(&r, &v), KR_ECORRUPT);
        assert_ptr_equal(r.p, b);
    }
}

static void test_read_bool(void **state)
{
    (void)state;
    uint8_t b[4] = {0xc2, 0xc3, 0x00, 0x00};
    struct kr_mp_reader r;
    bool v = true;
    for (int canonical = 0; canonical < 2; canonical++) {
        kr_mp_reader_init(&r, b, 2, canonical);
        assert_int_equal(kr_mp_read_bool(&r, &v), KR_OK);
        assert_false(v);
        assert_int_equal(kr_mp_read_bool(&r, &v), KR_OK);
        assert_true(v);
        assert_int_equal(kr_mp_remaining(&r), 0);
        assert_int_equal(kr_mp_read_bool(&r, &v), KR_ECORRUPT);
    }
    static const uint8_t other[] = {0xc0, 0xc1, 0x00, 0x01, 0xa1, 0xc4, 0x90, 0x80, 0xff, 0xd4};
    for (size_t i = 0; i < COUNT(other); i++) {
        kr_mp_reader_init(&r, &other[i], 1, false);
        assert_int_equal(kr_mp_read_bool(&r, &v), KR_ECORRUPT);
        assert_ptr_equal(r.p, &other[i]);
    }
}

/* kr_mp_peek of every tag byte, against a table written from the spec. */
static void test_peek_every_tag(void **state)
{
    (void)state;
    for (unsigned t = 0; t < 256; t++) {
        enum kr_mp_kind want;
        if (t <= 0x7f || (t >= 0xcc && t <= 0xcf))
            want = KR_MP_UINT;
        else if (t <= 0x8f || t == 0xde || t == 0xdf)
            want = KR_MP_MAP;
        else if (t <= 0x9f || t == 0xdc || t == 0xdd)
            want = KR_MP_ARRAY;
        else if (t <= 0xbf || (t >= 0xd9 && t <= 0xdb))
            want = KR_MP_STR;
        else if (t == 0xc0)
            want = KR_MP_NIL;
        else if (t == 0xc1)
            want = KR_MP_INVALID;
        else if (t == 0xc2 || t == 0xc3)
            want = KR_MP_BOOL;
        else if (t >= 0xc4 && t <= 0xc6)
            want = KR_MP_BIN;
        else if ((t >= 0xc7 && t <= 0xc9) || (t >= 0xd4 && t <= 0xd8))
            want = KR_MP_EXT;
        else if (t == 0xca || t == 0xcb)
            want = KR_MP_FLOAT;
        else if ((t >= 0xd0 && t <= 0xd3) || t >= 0xe0)
            want = KR_MP_NEGINT;
        else
            fail_msg("tag %02x not classified by the test", t);
        uint8_t b[2] = {(uint8_t)t, 0};
        struct kr_mp_reader r;
        /* Only the tag byte matters: a lone tag byte is enough for peek. */
        kr_mp_reader_init(&r, b, 1, true);
        if (kr_mp_peek(&r) != want)
            fail_msg("peek %02x: %d, want %d", t, kr_mp_peek(&r), want);
        assert_ptr_equal(r.p, b);
        assert_int_equal(kr_mp_remaining(&r), 1);
    }
    struct kr_mp_reader r;
    uint8_t b[1] = {0};
    kr_mp_reader_init(&r, b, 0, false);
    assert_int_equal(kr_mp_peek(&r), KR_MP_END);
}

/* ---- kr_mp_check ---- */

/* A valid nested message, one object per chunk (each chunk starts with a
 * tag byte): every kind, in containers three deep. */
static const char *const nested_chunks[] = {
    "83",                         /* map of 3 */
    "a1 61",                      /* "a" */
    "9a",                         /* array of 10 */
    "01",                         /* 1 */
    "ff",                         /* -1 */
    "cb 3f f8 00 00 00 00 00 00", /* 1.5 */
    "ca 3f c0 00 00",             /* 1.5f */
    "d9 20 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 "
    "61 61 61 61 61",             /* str8 of 32 */
    "c4 03 01 02 03",             /* bin */
    "c0",                         /* nil */
    "c3",                         /* true */
    "d4 01 05",                   /* fixext1 */
    "c7 02 07 aa bb",             /* ext8 */
    "a1 62",                      /* "b" */
    "81",                         /* map of 1 */
    "cd 12 34",                   /* 0x1234 */
    "92",                         /* array of 2 */
    "d3 80 00 00 00 00 00 00 00", /* INT64_MIN */
    "90",                         /* [] */
    "c5 00 02 aa bb",             /* bin16 */
    "80",                         /* {} */
};

/* Builds the nested message into b; offsets of chunk starts into at[]. */
static size_t nested_message(uint8_t *b, size_t *at)
{
    size_t n = 0;
    for (size_t i = 0; i < COUNT(nested_chunks); i++) {
        at[i] = n;
        n += hex(b + n, nested_chunks[i]);
    }
    return n;
}

static kr_err check(const uint8_t *b, size_t len, unsigned depth, size_t items, size_t *consumed)
{
    struct kr_mp_reader r;
    kr_mp_reader_init(&r, b, len, false);
    kr_err err = kr_mp_check(&r, depth, items);
    if (err)
        assert_ptr_equal(r.p, b); /* unmoved after a failure */
    *consumed = (size_t)(r.p - b);
    return err;
}

static void test_check_nested_and_truncated(void **state)
{
    (void)state;
    uint8_t b[256];
    size_t at[COUNT(nested_chunks)], used;
    size_t len = nested_message(b, at);
    assert_int_equal(check(b, len, 3, 100, &used), KR_OK);
    assert_int_equal(used, len);
    /* Trailing bytes are left for the caller. */
    b[len] = 0xc1;
    assert_int_equal(check(b, len + 1, 3, 100, &used), KR_OK);
    assert_int_equal(used, len);
    /* Limits: it nests 3 deep and has 16 items (array elements and map
     * pairs: 3 + 10 + 1 + 2). */
    assert_int_equal(check(b, len, 2, 100, &used), KR_ETOOLARGE);
    assert_int_equal(check(b, len, 3, 16, &used), KR_OK);
    assert_int_equal(check(b, len, 3, 15, &used), KR_ETOOLARGE);
    /* Cut at every offset. */
    for (size_t cut = 0; cut < len; cut++)
        if (check(b, cut, 3, 100, &used) != KR_ECORRUPT)
            fail_msg("kr_mp_check accepted the nested message cut at %zu of %zu", cut, len);
    /* 0xc1 in place of any object. */
    uint8_t c[256];
    for (size_t i = 0; i < COUNT(nested_chunks); i++) {
        memcpy(c, b, len);
        c[at[i]] = 0xc1;
        if (check(c, len, 3, 100, &used) != KR_ECORRUPT)
            fail_msg("kr_mp_check accepted 0xc1 at %zu", at[i]);
    }
    /* An empty buffer. */
    assert_int_equal(check(b, 0, 3, 100, &used), KR_ECORRUPT);
    /* Scalars at top level, with max_depth 0. */
    assert_int_equal(check((const uint8_t *)"\x01", 1, 0, 0, &used), KR_OK);
    assert_int_equal(check((const uint8_t *)"\x91\x01", 2, 0, 10, &used), KR_ETOOLARGE);
}

/* n arrays of one element around a 1: depth n. */
static size_t nest(uint8_t *b, unsigned n, bool maps)
{
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        if (maps) {
            b[k++] = 0x81;
            b[k++] = 0x00; /* key 0 */
        } else {
            b[k++] = 0x91;
        }
    }
    b[k++] = 0x01;
    return k;
}

static void test_check_depth(void **state)
{
    (void)state;
    uint8_t b[512];
    size_t used;
    static const unsigned limits[] = {1, 2, 3, 16, 32, 63};
    for (size_t i = 0; i < COUNT(limits); i++) {
        for (int maps = 0; maps < 2; maps++) {
            unsigned d = limits[i];
            size_t n = nest(b, d, maps);
            assert_int_equal(check(b, n, d, 1000, &used), KR_OK);
            assert_int_equal(used, n);
            n = nest(b, d + 1, maps);
            assert_int_equal(check(b, n, d, 1000, &used), KR_ETOOLARGE);
        }
    }
    /* A limit above what the checker supports is capped, not trusted. */
    size_t n = nest(b, 63, false);
    assert_int_equal(check(b, n, 1000, 1000, &used), KR_OK);
    n = nest(b, 64, false);
    assert_int_equal(check(b, n, 1000, 1000, &used), KR_ETOOLARGE);
    n = nest(b, 300, false);
    assert_int_equal(check(b, n, UINT32_MAX, 1000, &used), KR_ETOOLARGE);
}

/* Headers that promise more than is there, at top level and nested. */
static void test_check_lying_headers(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    static const struct {
        const char *head;
        size_t have; /* bytes after the header (0x01 each) */
    } lies[] = {
        {"dd ff ff ff ff", 64},
        {"df ff ff ff ff", 64},
        {"db ff ff ff ff", 64},
        {"c6 ff ff ff ff", 64},
        {"c9 ff ff ff ff 01", 64},
        {"dc 00 21", 32}, /* remaining + 1 */
        {"de 00 11", 33},
        {"d9 21", 32},
        {"c4 21", 32},
        {"c7 21 01", 32},
        {"c8 00 21 01", 32},
        {"d8 01", 15}, /* fixext16 short */
        {"d4 01", 0},
        {"cf 00 00", 0},
        {"cb 00", 0},
        {"dd 00 00 00 02", 1},
    };
    size_t used;
    for (size_t i = 0; i < COUNT(lies); i++) {
        for (int nested = 0; nested < 2; nested++) {
            size_t k = 0;
            if (nested) {
                buf[k++] = 0x92; /* [1, <lie>] */
                buf[k++] = 0x01;
            }
            k += hex(buf + k, lies[i].head);
            memset(buf + k, 0x01, lies[i].have);
            k += lies[i].have;
            kr_err err = check(buf, k, 8, SIZE_MAX, &used);
            if (err != KR_ECORRUPT)
                fail_msg("kr_mp_check %s (+%zu, nested %d): %s", lies[i].head, lies[i].have, nested,
                         kr_strerror(err));
        }
    }
    /* The same headers with exactly what they promise are accepted. */
    static const struct {
        const char *head;
        size_t have;
    } exact[] = {{"dc 00 21", 33}, {"d9 21", 33}, {"c4 21", 33},
                 {"c7 21 01", 33}, {"d8 01", 16}, {"c8 00 21 01", 33}};
    for (size_t i = 0; i < COUNT(exact); i++) {
        size_t k = hex(buf, exact[i].head);
        memset(buf + k, 0x01, exact[i].have);
        k += exact[i].have;
        assert_int_equal(check(buf, k, 8, 1000, &used), KR_OK);
        assert_int_equal(used, k);
    }
    free(buf);
}

/* A million small elements: within the byte size, refused by the item cap. */
static void test_check_million_items(void **state)
{
    (void)state;
    const size_t n = 1000000;
    uint8_t *b = malloc(5 + n);
    assert_non_null(b);
    b[0] = 0xdd;
    b[1] = (uint8_t)(n >> 24);
    b[2] = (uint8_t)(n >> 16);
    b[3] = (uint8_t)(n >> 8);
    b[4] = (uint8_t)n;
    memset(b + 5, 0x00, n);
    size_t used;
    assert_int_equal(check(b, 5 + n, 4, n - 1, &used), KR_ETOOLARGE);
    assert_int_equal(check(b, 5 + n, 4, n, &used), KR_OK);
    assert_int_equal(used, 5 + n);
    /* 1000 arrays of 999 elements: 1000 + 999000 items in all. */
    uint8_t *c = malloc(3 + 1000 * (3 + 999));
    assert_non_null(c);
    size_t k = 0;
    c[k++] = 0xdc;
    c[k++] = 0x03;
    c[k++] = 0xe8;
    for (int i = 0; i < 1000; i++) {
        c[k++] = 0xdc;
        c[k++] = 0x03;
        c[k++] = 0xe7;
        memset(c + k, 0x7f, 999);
        k += 999;
    }
    assert_int_equal(check(c, k, 4, 1000 + 999000 - 1, &used), KR_ETOOLARGE);
    assert_int_equal(check(c, k, 4, 1000 + 999000, &used), KR_OK);
    assert_int_equal(used, k);
    free(b);
    free(c);
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
        cmocka_unit_test(test_read_int_canonical_edges),
        cmocka_unit_test(test_read_int_non_minimal),
        cmocka_unit_test(test_read_int_refusals),
        cmocka_unit_test(test_read_float),
        cmocka_unit_test(test_read_bool),
        cmocka_unit_test(test_peek_every_tag),
        cmocka_unit_test(test_check_nested_and_truncated),
        cmocka_unit_test(test_check_depth),
        cmocka_unit_test(test_check_lying_headers),
        cmocka_unit_test(test_check_million_items),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
