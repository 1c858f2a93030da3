/*
 * mp_fuzz.c: libFuzzer target for the bounded msgpack reader (journal/mp.h).
 *
 * Walks arbitrary bytes as msgpack, into arrays and maps down to
 * MP_DEPTH_MAX, with every kr_mp_* reader at every position, in lax and in
 * canonical mode, against a small reference decoder written here:
 *   - a reader of the wrong type, or one facing a truncated object, returns
 *     KR_ECORRUPT and consumes nothing;
 *   - the reader of the right type accepts exactly when the whole object (or,
 *     for arrays and maps, the header and one byte per declared element) is
 *     there, and returns the reference's value or length;
 *   - canonical mode accepts exactly what lax mode accepts in its shortest
 *     encoding;
 *   - returned pointers and lengths stay inside the input.
 * The walk continues in lax mode, so non-minimal encodings are walked too.
 */
#include "mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nesting the walk follows; deeper containers are not entered. */
#define MP_DEPTH_MAX 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum ref_type { T_NIL, T_UINT, T_STR, T_BIN, T_ARRAY, T_MAP, T_OTHER };

/* The reference decoding of the object at p[0..left). */
struct ref {
    enum ref_type type;
    bool complete;  /* the kr_mp reader of `type` must accept */
    size_t hdr;     /* header bytes (the whole object for nil and uint) */
    uint64_t value; /* uint value, or str/bin length, or element count */
    size_t min_hdr; /* header bytes of the shortest encoding */
};

static const uint8_t *g_start, *g_end;

_Noreturn static void fail(const char *what, const uint8_t *at)
{
    fprintf(stderr, "mp_fuzz: %s at offset %zu\n", what, (size_t)(at - g_start));
    abort();
}

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static size_t min_uint(uint64_t v)
{
    return v <= 0x7f ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
}

static size_t min_str(uint64_t n)
{
    return n < 32 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}

static size_t min_bin(uint64_t n)
{
    return n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}

static size_t min_container(uint64_t n)
{
    return n < 16 ? 1 : n <= 0xffff ? 3 : 5;
}

static struct ref classify(const uint8_t *p, size_t left)
{
    struct ref r = {.type = T_OTHER};
    if (left == 0)
        return r;
    uint8_t t = p[0];
    size_t lenbytes = 0;
    if (t == 0xc0) {
        r.type = T_NIL, r.hdr = 1, r.min_hdr = 1;
    } else if (t <= 0x7f) {
        r.type = T_UINT, r.hdr = 1, r.value = t;
    } else if (t >= 0xcc && t <= 0xcf) {
        r.type = T_UINT, lenbytes = (size_t)1 << (t - 0xcc);
    } else if (t >= 0xa0 && t <= 0xbf) {
        r.type = T_STR, r.hdr = 1, r.value = t & 0x1f;
    } else if (t >= 0xd9 && t <= 0xdb) {
        r.type = T_STR, lenbytes = (size_t)1 << (t - 0xd9);
    } else if (t >= 0xc4 && t <= 0xc6) {
        r.type = T_BIN, lenbytes = (size_t)1 << (t - 0xc4);
    } else if (t >= 0x90 && t <= 0x9f) {
        r.type = T_ARRAY, r.hdr = 1, r.value = t & 0x0f;
    } else if (t == 0xdc || t == 0xdd) {
        r.type = T_ARRAY, lenbytes = t == 0xdc ? 2 : 4;
    } else if (t >= 0x80 && t <= 0x8f) {
        r.type = T_MAP, r.hdr = 1, r.value = t & 0x0f;
    } else if (t == 0xde || t == 0xdf) {
        r.type = T_MAP, lenbytes = t == 0xde ? 2 : 4;
    } else {
        return r; /* negative ints, bool, float, ext, 0xc1: no reader takes them */
    }
    if (lenbytes) {
        r.hdr = 1 + lenbytes;
        if (left < r.hdr)
            return r;
        r.value = be(p + 1, lenbytes);
    }
    size_t rest = left - r.hdr;
    switch (r.type) {
    case T_NIL:
        r.complete = true;
        break;
    case T_UINT:
        r.complete = left >= r.hdr;
        r.min_hdr = min_uint(r.value);
        break;
    case T_STR:
        r.complete = r.value <= rest;
        r.min_hdr = min_str(r.value);
        break;
    case T_BIN:
        r.complete = r.value <= rest;
        r.min_hdr = min_bin(r.value);
        break;
    case T_ARRAY:
        r.complete = r.value <= rest;
        r.min_hdr = min_container(r.value);
        break;
    case T_MAP:
        r.complete = r.value <= rest / 2;
        r.min_hdr = min_container(r.value);
        break;
    case T_OTHER:
        break;
    }
    return r;
}

/* Runs the reader of type t on rd; returns whether it accepted, with the
 * value or length in *v and the object's bytes (header and body) in *used. */
static bool try_read(struct kr_mp_reader *rd, enum ref_type t, uint64_t *v, size_t *used)
{
    const uint8_t *before = rd->p;
    const char *s = NULL;
    const uint8_t *b = NULL;
    size_t len = 0;
    uint32_t count = 0;
    kr_err err;
    switch (t) {
    case T_NIL:
        err = kr_mp_read_nil(rd);
        *v = 0;
        break;
    case T_UINT:
        err = kr_mp_read_uint(rd, v);
        break;
    case T_STR:
        err = kr_mp_read_str(rd, &s, &len);
        b = (const uint8_t *)s;
        *v = len;
        break;
    case T_BIN:
        err = kr_mp_read_bin(rd, &b, &len);
        *v = len;
        break;
    case T_ARRAY:
        err = kr_mp_read_array(rd, &count);
        *v = count;
        break;
    case T_MAP:
        err = kr_mp_read_map(rd, &count);
        *v = count;
        break;
    default:
        return false;
    }
    if (err != KR_OK) {
        if (err != KR_ECORRUPT)
            fail("reader returned an error other than KR_ECORRUPT", before);
        if (rd->p != before)
            fail("a refusing reader consumed bytes", before);
        return false;
    }
    if (rd->p <= before || rd->p > rd->end)
        fail("an accepting reader moved outside the input", before);
    *used = (size_t)(rd->p - before);
    if ((t == T_STR || t == T_BIN) && (b < before || b + len != rd->p))
        fail("str/bin body is not the bytes just consumed", before);
    return true;
}

static const enum ref_type all_types[] = {T_NIL, T_UINT, T_STR, T_BIN, T_ARRAY, T_MAP};

/* Checks every reader at rd's position against the reference; on success
 * leaves rd (lax) past the object's header (or whole scalar) and returns the
 * reference. */
static struct ref check_here(struct kr_mp_reader *rd)
{
    const uint8_t *at = rd->p;
    struct ref ref = classify(at, kr_mp_remaining(rd));

    /* kr_mp_peek_nil agrees with the reference and consumes nothing. */
    if (kr_mp_peek_nil(rd) != (ref.type == T_NIL))
        fail("kr_mp_peek_nil disagrees", at);

    for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++) {
        enum ref_type t = all_types[i];
        if (t == ref.type)
            continue;
        struct kr_mp_reader lax = *rd, canon = *rd;
        canon.canonical = true;
        uint64_t v;
        size_t used;
        if (try_read(&lax, t, &v, &used) || try_read(&canon, t, &v, &used))
            fail("a reader of the wrong type accepted", at);
    }
    if (ref.type == T_OTHER)
        return ref;

    struct kr_mp_reader canon = *rd;
    canon.canonical = true;
    uint64_t v = 0, cv = 0;
    size_t used = 0, cused = 0;
    bool ok = try_read(rd, ref.type, &v, &used);
    bool cok = try_read(&canon, ref.type, &cv, &cused);
    if (ok != ref.complete)
        fail(ok ? "accepted a truncated or over-long object" : "refused a complete object", at);
    if (cok != (ref.complete && ref.hdr == ref.min_hdr))
        fail(cok ? "canonical mode accepted a non-minimal encoding"
                 : "canonical mode refused a minimal encoding",
             at);
    if (!ok)
        return ref;
    if (v != ref.value)
        fail("value or length differs from the reference", at);
    size_t want = ref.hdr + (ref.type == T_STR || ref.type == T_BIN ? (size_t)ref.value : 0);
    if (used != want)
        fail("consumed a different number of bytes than the object has", at);
    if (cok && (cv != v || cused != used))
        fail("canonical and lax mode read the same bytes differently", at);
    return ref;
}

/* Walks one object and everything inside it; false when the walk must stop
 * (an object no reader takes, or a truncation). */
static bool walk(struct kr_mp_reader *rd, unsigned depth)
{
    struct ref ref = check_here(rd);
    if (ref.type == T_OTHER || !ref.complete)
        return false;
    if (ref.type != T_ARRAY && ref.type != T_MAP)
        return true;
    if (depth >= MP_DEPTH_MAX)
        return false;
    uint64_t n = ref.type == T_MAP ? ref.value * 2 : ref.value;
    for (uint64_t i = 0; i < n; i++)
        if (!walk(rd, depth + 1))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kr_mp_reader rd;
    g_start = data;
    g_end = data + size;
    kr_mp_reader_init(&rd, data, size, false);
    if (kr_mp_remaining(&rd) != size)
        fail("kr_mp_remaining after init is not the input size", data);
    /* A sequence of top-level objects, like trailing bytes after a message. */
    while (kr_mp_remaining(&rd) > 0 && walk(&rd, 0))
        ;
    if (rd.p < g_start || rd.p > g_end)
        fail("reader left the input", data);
    return 0;
}
