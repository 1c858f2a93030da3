/*
 * record_test.c: tests for journal/record.c, the record's byte format.
 *
 * The reference encodings are built here by a small msgpack writer that
 * follows docs/journal-format.md and can be told to use any width for any
 * field, so the tests can both check the encoder's bytes against the spec and
 * hand the decoder non-canonical, oversized or mistyped records. The leaf hash
 * and the signing input are recomputed from the spec with libsodium's SHA-256,
 * not the module's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kr_error.h"
#include "kr_limits.h"
#include "mp.h"
#include "record.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
/* Room for any record the tests build, including over-long ones. */
#define BUF_MAX (2 * KR_RECORD_MAX)

/* ---- A msgpack writer that can be told which width to use ---- */

/* Width: MIN = shortest form; FIX = fixint / fixstr / fixarray; 1, 2, 4, 8 =
 * the form with a length or value of that many bytes. */
#define MIN (-1)
#define FIX 0

struct w {
    uint8_t *p;
    size_t len;
};

static void w_byte(struct w *w, uint8_t b)
{
    assert_true(w->len < BUF_MAX);
    w->p[w->len++] = b;
}

static void w_be(struct w *w, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        w_byte(w, (uint8_t)(v >> (8 * i)));
}

static void w_bytes(struct w *w, const void *b, size_t n)
{
    assert_true(w->len + n <= BUF_MAX);
    if (n)
        memcpy(w->p + w->len, b, n);
    w->len += n;
}

static void w_uint(struct w *w, uint64_t v, int width)
{
    if (width == MIN)
        width = v < 0x80 ? FIX : v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
    switch (width) {
    case FIX:
        assert_true(v < 0x80);
        w_byte(w, (uint8_t)v);
        return;
    case 1:
        w_byte(w, 0xcc);
        break;
    case 2:
        w_byte(w, 0xcd);
        break;
    case 4:
        w_byte(w, 0xce);
        break;
    case 8:
        w_byte(w, 0xcf);
        break;
    default:
        fail();
    }
    w_be(w, v, width);
}

/* A length header: fix form `fix_tag | n` (fix_max 0 = none), else tag8/16/32. */
static void w_len(struct w *w, size_t n, int width, uint8_t fix_tag, size_t fix_max, int tag8,
                  uint8_t tag16, uint8_t tag32)
{
    if (width == MIN)
        width = n <= fix_max && fix_max ? FIX : n <= 0xff && tag8 >= 0 ? 1 : n <= 0xffff ? 2 : 4;
    switch (width) {
    case FIX:
        w_byte(w, (uint8_t)(fix_tag | n));
        return;
    case 1:
        w_byte(w, (uint8_t)tag8);
        break;
    case 2:
        w_byte(w, tag16);
        break;
    case 4:
        w_byte(w, tag32);
        break;
    default:
        fail();
    }
    w_be(w, n, width);
}

static void w_str(struct w *w, const void *s, size_t n, int width)
{
    w_len(w, n, width, 0xa0, 31, 0xd9, 0xda, 0xdb);
    w_bytes(w, s, n);
}

static void w_bin(struct w *w, const void *b, size_t n, int width)
{
    w_len(w, n, width, 0, 0, 0xc4, 0xc5, 0xc6);
    w_bytes(w, b, n);
}

static void w_array(struct w *w, size_t n, int width)
{
    w_len(w, n, width, 0x90, 15, -1, 0xdc, 0xdd);
}

/* ---- Hand-built records ---- */

enum field {
    F_FORMAT,
    F_SEQ,
    F_TIME,
    F_TENANT,
    F_STREAM,
    F_VERSION,
    F_TYPE,
    F_ACTOR,
    F_KEY_ID,
    F_COMMITMENT,
    F_PREV,
    F_SIG,
    F_PAYLOAD,
    F_TSEQ, /* written after F_TENANT, in format 2 */
    F_COUNT
};

/* How to build a record: widths per field and deviations from the format. */
struct shape {
    int width[F_COUNT];
    int outer_width, header_width;
    size_t outer_n, header_n; /* declared counts; extra elements are 0s */
    uint64_t format;
    uint64_t key_id; /* written instead of r->key_id when key_id_set */
    bool key_id_set;
    size_t commitment_len, prev_len, sig_len; /* bytes written of each */
    bool payload_as_str, stream_as_bin;
    bool with_tseq; /* write the tseq field (format 2's 5th element) */
};

static struct shape shape_canonical(void)
{
    struct shape s;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < F_COUNT; i++)
        s.width[i] = MIN;
    s.outer_width = s.header_width = MIN;
    s.outer_n = 2;
    s.header_n = 13;
    s.with_tseq = true;
    s.format = JRN_FORMAT;
    s.commitment_len = KR_HASH_LEN;
    s.prev_len = KR_HASH_LEN;
    s.sig_len = JRN_SIG_LEN;
    return s;
}

/* The canonical shape of a format-1 record: 12 elements, no tseq. */
static struct shape shape_format1(void)
{
    struct shape s = shape_canonical();
    s.header_n = 12;
    s.with_tseq = false;
    s.format = JRN_FORMAT_1;
    return s;
}

/* A source long enough for over-long hash and signature fields. */
static uint8_t filler[JRN_SIG_LEN + 8];

/* Writes r shaped by s into out; returns the length; *hstart and *hlen locate the
 * header bytes. */
static size_t hand_build(uint8_t *out, const struct jrn_record *r, const struct shape *s,
                         size_t *hstart, size_t *hlen)
{
    struct w w = {out, 0};
    w_array(&w, s->outer_n, s->outer_width);
    size_t h0 = w.len;
    w_array(&w, s->header_n, s->header_width);
    w_uint(&w, s->format, s->width[F_FORMAT]);
    w_uint(&w, r->seq, s->width[F_SEQ]);
    w_uint(&w, r->time_ns, s->width[F_TIME]);
    w_uint(&w, r->tenant, s->width[F_TENANT]);
    if (s->with_tseq)
        w_uint(&w, r->tseq, s->width[F_TSEQ]);
    if (s->stream_as_bin)
        w_bin(&w, r->stream, r->stream_len, s->width[F_STREAM]);
    else
        w_str(&w, r->stream, r->stream_len, s->width[F_STREAM]);
    w_uint(&w, r->version, s->width[F_VERSION]);
    w_str(&w, r->type, r->type_len, s->width[F_TYPE]);
    w_str(&w, r->actor, r->actor_len, s->width[F_ACTOR]);
    w_uint(&w, s->key_id_set ? s->key_id : r->key_id, s->width[F_KEY_ID]);
    uint8_t tmp[sizeof filler];
    memcpy(tmp, filler, sizeof tmp);
    memcpy(tmp, r->commitment, KR_HASH_LEN);
    w_bin(&w, tmp, s->commitment_len, s->width[F_COMMITMENT]);
    memcpy(tmp, filler, sizeof tmp);
    memcpy(tmp, r->prev, KR_HASH_LEN);
    w_bin(&w, tmp, s->prev_len, s->width[F_PREV]);
    memcpy(tmp, filler, sizeof tmp);
    memcpy(tmp, r->sig, JRN_SIG_LEN);
    w_bin(&w, tmp, s->sig_len, s->width[F_SIG]);
    for (size_t i = s->with_tseq ? 13 : 12; i < s->header_n; i++)
        w_uint(&w, 0, MIN);
    if (hstart)
        *hstart = h0;
    if (hlen)
        *hlen = w.len - h0;
    if (s->outer_n >= 2) {
        if (r->payload_stripped)
            w_byte(&w, 0xc0);
        else if (s->payload_as_str)
            w_str(&w, r->payload, r->payload_len, s->width[F_PAYLOAD]);
        else
            w_bin(&w, r->payload, r->payload_len, s->width[F_PAYLOAD]);
    }
    for (size_t i = 2; i < s->outer_n; i++)
        w_uint(&w, 0, MIN);
    return w.len;
}

/* ---- Sample records ---- */

static char stream_max[KR_STREAM_MAX + 2];
static char type_max[KR_TYPE_MAX + 2];
static char actor_max[KR_ACTOR_MAX + 2];
static uint8_t *payload_max; /* KR_PAYLOAD_MAX + 1 bytes */
static const uint8_t payload_small[] = "\x81\xa4name\xa5Hanako";

static void fill_hashes(struct jrn_record *r, uint8_t seed)
{
    for (size_t i = 0; i < KR_HASH_LEN; i++) {
        r->commitment[i] = (uint8_t)(seed + i);
        r->prev[i] = (uint8_t)(0xa0 ^ (seed + 3 * i));
    }
    for (size_t i = 0; i < JRN_SIG_LEN; i++)
        r->sig[i] = (uint8_t)(0x55 + 7 * i + seed);
}

static struct jrn_record rec_typical(void)
{
    struct jrn_record r;
    memset(&r, 0, sizeof r);
    r.seq = 123456789;
    r.time_ns = 1700000000123456789ull;
    r.tenant = 42;
    r.tseq = 9;
    r.version = 7;
    r.key_id = 3;
    r.stream = "contact/0123456789abcdef0123456789abcdef";
    r.stream_len = strlen(r.stream);
    r.type = "contact.created";
    r.type_len = strlen(r.type);
    r.actor = "account/00000000000000000000000000000001";
    r.actor_len = strlen(r.actor);
    r.payload = payload_small;
    r.payload_len = sizeof payload_small - 1;
    fill_hashes(&r, 1);
    return r;
}

/* The records every format test runs over. */
#define SAMPLES 11
static struct jrn_record sample(int i)
{
    struct jrn_record r = rec_typical();
    switch (i) {
    case 0:
        break;
    case 1: /* every string at its maximum */
        r.stream = stream_max;
        r.stream_len = KR_STREAM_MAX;
        r.type = type_max;
        r.type_len = KR_TYPE_MAX;
        r.actor = actor_max;
        r.actor_len = KR_ACTOR_MAX;
        break;
    case 2: /* empty actor, shortest stream and type */
        r.actor = "";
        r.actor_len = 0;
        r.stream = "s";
        r.stream_len = 1;
        r.type = "t";
        r.type_len = 1;
        break;
    case 3: /* empty payload */
        r.payload = NULL;
        r.payload_len = 0;
        break;
    case 4: /* the largest payload */
        r.payload = payload_max;
        r.payload_len = KR_PAYLOAD_MAX;
        break;
    case 5: /* stripped by erasure */
        r.payload = NULL;
        r.payload_len = 0;
        r.payload_stripped = true;
        break;
    case 6: /* integers at their largest */
        r.seq = UINT64_MAX;
        r.time_ns = UINT64_MAX;
        r.tenant = UINT64_MAX;
        r.tseq = UINT64_MAX;
        r.version = UINT64_MAX;
        r.key_id = UINT32_MAX;
        break;
    case 7: /* and at their smallest */
        r.seq = 1;
        r.time_ns = 0;
        r.tenant = 0;
        r.tseq = 1;
        r.version = 1;
        r.key_id = 0;
        memset(r.prev, 0, sizeof r.prev);
        break;
    case 8: /* integers at width boundaries, strings crossing fixstr */
        r.seq = 128;
        r.time_ns = 65536;
        r.tenant = 255;
        r.tseq = 65535;
        r.version = 256;
        r.key_id = 65535;
        r.stream = stream_max;
        r.stream_len = 32;
        r.type = type_max;
        r.type_len = 31;
        r.actor = actor_max;
        r.actor_len = 32;
        r.payload = payload_max;
        r.payload_len = 256;
        break;
    case 9: /* format 1: no tseq */
        r.format = JRN_FORMAT_1;
        r.tseq = 0;
        break;
    case 10: /* format 1, stripped, integers at their largest */
        r.format = JRN_FORMAT_1;
        r.tseq = 0;
        r.seq = UINT64_MAX;
        r.tenant = UINT64_MAX;
        r.payload = NULL;
        r.payload_len = 0;
        r.payload_stripped = true;
        break;
    default:
        fail();
    }
    return r;
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    /* Every printable non-space character appears in the long stream and actor. */
    for (size_t i = 0; i < KR_STREAM_MAX + 1; i++)
        stream_max[i] = (char)(0x21 + i % 94);
    for (size_t i = 0; i < KR_ACTOR_MAX + 1; i++)
        actor_max[i] = (char)(0x7e - i % 94);
    static const char type_chars[] = "abcdefghijklmnopqrstuvwxyz0123456789._";
    for (size_t i = 0; i < KR_TYPE_MAX + 1; i++)
        type_max[i] = type_chars[i % (sizeof type_chars - 1)];
    payload_max = malloc(KR_PAYLOAD_MAX + 1);
    if (!payload_max)
        return -1;
    for (size_t i = 0; i < KR_PAYLOAD_MAX + 1; i++)
        payload_max[i] = (uint8_t)(i * 31 + 7);
    for (size_t i = 0; i < sizeof filler; i++)
        filler[i] = (uint8_t)(0xf0 ^ i);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(payload_max);
    return 0;
}

static uint8_t *buf_new(void)
{
    uint8_t *b = calloc(1, BUF_MAX);
    assert_non_null(b);
    return b;
}

/* The format a record is encoded in (0 means the current one). */
static uint32_t format_of(const struct jrn_record *r)
{
    return r->format ? r->format : JRN_FORMAT;
}

/* Every field of a decoded record, compared by value. */
static bool records_equal(const struct jrn_record *a, const struct jrn_record *b)
{
    return format_of(a) == format_of(b) && a->tseq == b->tseq && a->seq == b->seq &&
           a->time_ns == b->time_ns && a->tenant == b->tenant && a->version == b->version &&
           a->key_id == b->key_id && a->stream_len == b->stream_len &&
           memcmp(a->stream, b->stream, a->stream_len) == 0 && a->type_len == b->type_len &&
           memcmp(a->type, b->type, a->type_len) == 0 && a->actor_len == b->actor_len &&
           (a->actor_len == 0 || memcmp(a->actor, b->actor, a->actor_len) == 0) &&
           memcmp(a->commitment, b->commitment, KR_HASH_LEN) == 0 &&
           memcmp(a->prev, b->prev, KR_HASH_LEN) == 0 && memcmp(a->sig, b->sig, JRN_SIG_LEN) == 0 &&
           a->payload_stripped == b->payload_stripped && a->payload_len == b->payload_len &&
           (a->payload_len == 0 || memcmp(a->payload, b->payload, a->payload_len) == 0);
}

static void assert_records_equal(const struct jrn_record *got, const struct jrn_record *want)
{
    assert_int_equal(format_of(got), format_of(want));
    assert_true(got->tseq == want->tseq);
    assert_true(got->seq == want->seq);
    assert_true(got->time_ns == want->time_ns);
    assert_true(got->tenant == want->tenant);
    assert_true(got->version == want->version);
    assert_int_equal(got->key_id, want->key_id);
    assert_int_equal(got->stream_len, want->stream_len);
    assert_memory_equal(got->stream, want->stream, want->stream_len);
    assert_int_equal(got->type_len, want->type_len);
    assert_memory_equal(got->type, want->type, want->type_len);
    assert_int_equal(got->actor_len, want->actor_len);
    if (want->actor_len)
        assert_memory_equal(got->actor, want->actor, want->actor_len);
    assert_memory_equal(got->commitment, want->commitment, KR_HASH_LEN);
    assert_memory_equal(got->prev, want->prev, KR_HASH_LEN);
    assert_memory_equal(got->sig, want->sig, JRN_SIG_LEN);
    assert_int_equal(got->payload_stripped, want->payload_stripped);
    assert_int_equal(got->payload_len, want->payload_len);
    if (want->payload_len)
        assert_memory_equal(got->payload, want->payload, want->payload_len);
    assert_true(records_equal(got, want));
}

/* Encodes r with the module and checks the bytes against the hand-built ones. */
static size_t encode_checked(const struct jrn_record *r, uint8_t *out, size_t *header_len)
{
    size_t len = 0, hl = 0;
    assert_int_equal(jrn_record_encode(r, out, BUF_MAX, &len, &hl), KR_OK);
    uint8_t *ref = buf_new();
    struct shape s = format_of(r) == JRN_FORMAT_1 ? shape_format1() : shape_canonical();
    size_t hstart, rhl;
    size_t rlen = hand_build(ref, r, &s, &hstart, &rhl);
    assert_int_equal(len, rlen);
    assert_memory_equal(out, ref, len);
    assert_int_equal(hstart, JRN_HEADER_OFFSET);
    assert_int_equal(hl, rhl);
    free(ref);
    *header_len = hl;
    return len;
}

/* ---- Tests ---- */

static void test_roundtrip(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    uint8_t hdr[KR_HEADER_MAX];
    for (int i = 0; i < SAMPLES; i++) {
        struct jrn_record r = sample(i), d;
        assert_int_equal(jrn_record_check_fields(&r), KR_OK);
        size_t hl, len = encode_checked(&r, buf, &hl);
        assert_true(len <= KR_RECORD_MAX);
        assert_true(hl <= KR_HEADER_MAX);
        assert_int_equal(jrn_record_decode(buf, len, &d), KR_OK);
        assert_records_equal(&d, &r);
        /* Pointers borrow from the buffer. */
        assert_ptr_equal(d.header, buf + JRN_HEADER_OFFSET);
        assert_int_equal(d.header_len, hl);
        assert_true((const uint8_t *)d.stream > buf && (const uint8_t *)d.stream < buf + len);
        if (r.payload_stripped)
            assert_null(d.payload);
        else
            assert_ptr_equal(d.payload, buf + len - r.payload_len);
        /* The header alone encodes to the same bytes. */
        size_t hl2 = 0;
        assert_int_equal(jrn_record_encode_header(&r, hdr, sizeof hdr, &hl2), KR_OK);
        assert_int_equal(hl2, hl);
        assert_memory_equal(hdr, buf + JRN_HEADER_OFFSET, hl);
        /* header_len may be NULL. */
        size_t len2 = 0;
        assert_int_equal(jrn_record_encode(&r, buf, BUF_MAX, &len2, NULL), KR_OK);
        assert_int_equal(len2, len);
    }
    /* An empty payload given as a non-NULL pointer encodes the same as NULL. */
    struct jrn_record a = sample(3), b = sample(3);
    b.payload = payload_small;
    uint8_t *buf2 = buf_new();
    size_t la, lb;
    assert_int_equal(jrn_record_encode(&a, buf, BUF_MAX, &la, NULL), KR_OK);
    assert_int_equal(jrn_record_encode(&b, buf2, BUF_MAX, &lb, NULL), KR_OK);
    assert_int_equal(la, lb);
    assert_memory_equal(buf, buf2, la);
    free(buf2);
    free(buf);
}

static void test_encode_short_buffer(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    const uint8_t canary = 0xa5;
    for (int i = 0; i < SAMPLES; i++) {
        struct jrn_record r = sample(i);
        size_t full, hl;
        assert_int_equal(jrn_record_encode(&r, buf, BUF_MAX, &full, &hl), KR_OK);
        for (size_t cap = 0; cap < full; cap++) {
            if (full > 1024 && cap > 600 && cap + 4 < full && cap % 4099 != 0)
                continue;
            memset(buf, canary, full + 16);
            size_t len = 777;
            assert_int_equal(jrn_record_encode(&r, buf, cap, &len, NULL), KR_ETOOLARGE);
            assert_int_equal(len, 777);
            for (size_t k = cap; k < full + 16; k++)
                assert_int_equal(buf[k], canary);
        }
        for (size_t cap = 0; cap < hl; cap++) {
            memset(buf, canary, hl + 16);
            size_t len = 777;
            assert_int_equal(jrn_record_encode_header(&r, buf, cap, &len), KR_ETOOLARGE);
            assert_int_equal(len, 777);
            for (size_t k = cap; k < hl + 16; k++)
                assert_int_equal(buf[k], canary);
        }
        /* Exactly enough room is enough. */
        size_t len;
        assert_int_equal(jrn_record_encode(&r, buf, full, &len, NULL), KR_OK);
        assert_int_equal(len, full);
        assert_int_equal(jrn_record_encode_header(&r, buf, hl, &len), KR_OK);
        assert_int_equal(len, hl);
    }
    free(buf);
}

static void test_decode_truncated(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    for (int i = 0; i < SAMPLES; i++) {
        struct jrn_record r = sample(i), d;
        size_t hl, len = encode_checked(&r, buf, &hl);
        /* Copy each prefix to its own heap block so ASan sees any over-read.
         * Inside a large payload every cut is the same case: sample those. */
        for (size_t cut = 0; cut < len; cut++) {
            if (len > 4096 && cut > 1024 && cut + 64 < len && cut % 251 != 0)
                continue;
            uint8_t *p = malloc(cut ? cut : 1);
            assert_non_null(p);
            memcpy(p, buf, cut);
            kr_err err = jrn_record_decode(p, cut, &d);
            if (err != KR_ECORRUPT)
                fail_msg("sample %d cut at %zu of %zu: %s", i, cut, len, kr_strerror(err));
            free(p);
        }
    }
    free(buf);
}

static void test_decode_trailing(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    static const uint8_t extra[] = {0x00, 0x01, 0x7f, 0x90, 0xc0, 0xc1, 0xff};
    for (int i = 0; i < SAMPLES; i++) {
        struct jrn_record r = sample(i), d;
        size_t hl, len = encode_checked(&r, buf, &hl);
        for (size_t k = 0; k < COUNT(extra); k++) {
            buf[len] = extra[k];
            assert_int_equal(jrn_record_decode(buf, len + 1, &d), KR_ECORRUPT);
        }
        /* A record followed by a copy of itself. */
        if (2 * len <= BUF_MAX) {
            memcpy(buf + len, buf, len);
            assert_int_equal(jrn_record_decode(buf, 2 * len, &d), KR_ECORRUPT);
        }
    }
    free(buf);
}

/* The error a changed record that does not decode must get: KR_EVERSION when
 * the header's format element (the third msgpack item: [[format, ...], ...])
 * still reads as an integer but names no format, KR_ECORRUPT otherwise. */
static kr_err refusal_of(const uint8_t *buf, size_t len)
{
    struct kr_mp_reader rd;
    uint32_t n;
    uint64_t format;
    kr_mp_reader_init(&rd, buf, len, true);
    if (kr_mp_read_array(&rd, &n) || kr_mp_read_array(&rd, &n) || kr_mp_read_uint(&rd, &format))
        return KR_ECORRUPT;
    return format != JRN_FORMAT && format != JRN_FORMAT_1 ? KR_EVERSION : KR_ECORRUPT;
}

/* Any one changed byte either makes the record undecodable or changes a field;
 * and whatever decodes re-encodes to exactly the bytes it came from. */
static void test_single_byte_changes(void **state)
{
    (void)state;
    uint8_t *buf = buf_new(), *re = buf_new();
    static const int which[] = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10};
    for (size_t w = 0; w < COUNT(which); w++) {
        struct jrn_record r = sample(which[w]), orig, d;
        size_t hl, len = encode_checked(&r, buf, &hl);
        assert_int_equal(jrn_record_decode(buf, len, &orig), KR_OK);
        /* orig borrows from buf, which the loop changes: decode a private copy. */
        uint8_t *keep = malloc(len);
        assert_non_null(keep);
        memcpy(keep, buf, len);
        assert_int_equal(jrn_record_decode(keep, len, &orig), KR_OK);
        size_t decoded = 0;
        for (size_t off = 0; off < len; off++) {
            uint8_t was = buf[off];
            for (unsigned v = 0; v < 256; v++) {
                if (v == was)
                    continue;
                buf[off] = (uint8_t)v;
                kr_err err = jrn_record_decode(buf, len, &d);
                if (err != KR_OK) {
                    if (err != refusal_of(buf, len))
                        fail_msg("sample %d: byte %zu %02x -> %02x: %s", which[w], off, was, v,
                                 kr_strerror(err));
                    continue;
                }
                decoded++;
                if (records_equal(&d, &orig))
                    fail_msg("sample %d: byte %zu %02x -> %02x decodes to the same record",
                             which[w], off, was, v);
                size_t rl;
                assert_int_equal(jrn_record_encode(&d, re, BUF_MAX, &rl, NULL), KR_OK);
                assert_int_equal(rl, len);
                assert_memory_equal(re, buf, len);
            }
            buf[off] = was;
        }
        /* Changes inside the hashes, signature and payload do decode. */
        assert_true(decoded >= 255 * (KR_HASH_LEN * 2 + JRN_SIG_LEN));
        free(keep);
    }
    free(re);
    free(buf);
}

static void test_format_version(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    struct jrn_record r = rec_typical(), d;
    static const uint64_t bad[] = {0, 3, 127, 128, 255, 65535, 0xffffffffu, UINT64_MAX};
    for (size_t i = 0; i < COUNT(bad); i++) {
        struct shape s = shape_canonical();
        s.format = bad[i];
        size_t len = hand_build(buf, &r, &s, NULL, NULL);
        assert_int_equal(jrn_record_decode(buf, len, &d), KR_EVERSION);
        s = shape_format1();
        s.format = bad[i];
        len = hand_build(buf, &r, &s, NULL, NULL);
        assert_int_equal(jrn_record_decode(buf, len, &d), KR_EVERSION);
    }
    /* Each format has exactly its own element count: format 1 with 13
     * elements (a tseq) and format 2 with 12 (none) are corrupt. */
    struct shape s1 = shape_format1();
    s1.header_n = 13;
    s1.with_tseq = true;
    size_t len1 = hand_build(buf, &r, &s1, NULL, NULL);
    assert_int_equal(jrn_record_decode(buf, len1, &d), KR_ECORRUPT);
    struct shape s2 = shape_canonical();
    s2.header_n = 12;
    s2.with_tseq = false;
    len1 = hand_build(buf, &r, &s2, NULL, NULL);
    assert_int_equal(jrn_record_decode(buf, len1, &d), KR_ECORRUPT);
    /* Controls: each in its own shape decodes, with its format. */
    s1 = shape_format1();
    struct jrn_record r1 = r;
    r1.tseq = 0;
    len1 = hand_build(buf, &r1, &s1, NULL, NULL);
    assert_int_equal(jrn_record_decode(buf, len1, &d), KR_OK);
    assert_int_equal(d.format, JRN_FORMAT_1);
    assert_true(d.tseq == 0);
    s2 = shape_canonical();
    len1 = hand_build(buf, &r, &s2, NULL, NULL);
    assert_int_equal(jrn_record_decode(buf, len1, &d), KR_OK);
    assert_int_equal(d.format, JRN_FORMAT);
    assert_true(d.tseq == 9);
    /* Format 2 in a non-minimal form is not version 2: it is corrupt. */
    static const int widths[] = {1, 2, 4, 8};
    for (size_t i = 0; i < COUNT(widths); i++) {
        struct shape s = shape_canonical();
        s.width[F_FORMAT] = widths[i];
        size_t len = hand_build(buf, &r, &s, NULL, NULL);
        assert_int_equal(jrn_record_decode(buf, len, &d), KR_ECORRUPT);
    }
    /* The format field that is not an integer at all. */
    size_t len = 0;
    assert_int_equal(jrn_record_encode(&r, buf, BUF_MAX, &len, NULL), KR_OK);
    assert_int_equal(buf[2], 0x02);
    buf[2] = 0xc0;
    assert_int_equal(jrn_record_decode(buf, len, &d), KR_ECORRUPT);
    free(buf);
}

static void test_zero_seq_or_version(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    struct jrn_record r = rec_typical(), d;
    struct shape s = shape_canonical();
    r.seq = 0;
    size_t len = hand_build(buf, &r, &s, NULL, NULL);
    assert_int_equal(jrn_record_decode(buf, len, &d), KR_ECORRUPT);
    r = rec_typical();
    r.version = 0;
    len = hand_build(buf, &r, &s, NULL, NULL);
    assert_int_equal(jrn_record_decode(buf, len, &d), KR_ECORRUPT);
    /* A format-2 record numbers its tenant's records from 1. */
    r = rec_typical();
    r.tseq = 0;
    len = hand_build(buf, &r, &s, NULL, NULL);
    assert_int_equal(jrn_record_decode(buf, len, &d), KR_ECORRUPT);
    /* Control: 1, 1 and 1 decode. */
    r.seq = 1;
    r.version = 1;
    r.tseq = 1;
    len = hand_build(buf, &r, &s, NULL, NULL);
    assert_int_equal(jrn_record_decode(buf, len, &d), KR_OK);
    free(buf);
}

/* The encoder writes only what the decoder takes back. */
static void test_encode_format(void **state)
{
    (void)state;
    uint8_t *buf = buf_new(), *buf2 = buf_new();
    size_t len, len2;
    struct jrn_record r = rec_typical();
    r.tseq = 0; /* format 2 needs a tseq */
    assert_int_equal(jrn_record_encode(&r, buf, BUF_MAX, &len, NULL), KR_EINVAL);
    assert_int_equal(jrn_record_encode_header(&r, buf, BUF_MAX, &len), KR_EINVAL);
    r = rec_typical();
    r.format = JRN_FORMAT_1; /* format 1 has none */
    assert_int_equal(jrn_record_encode(&r, buf, BUF_MAX, &len, NULL), KR_EINVAL);
    static const uint32_t bad[] = {3, 4, 255, UINT32_MAX};
    for (size_t i = 0; i < COUNT(bad); i++) {
        r = rec_typical();
        r.format = bad[i];
        assert_int_equal(jrn_record_encode(&r, buf, BUF_MAX, &len, NULL), KR_EINVAL);
    }
    /* 0 means the current format: the same bytes as format 2. */
    r = rec_typical();
    assert_int_equal(jrn_record_encode(&r, buf, BUF_MAX, &len, NULL), KR_OK);
    r.format = JRN_FORMAT;
    assert_int_equal(jrn_record_encode(&r, buf2, BUF_MAX, &len2, NULL), KR_OK);
    assert_int_equal(len, len2);
    assert_memory_equal(buf, buf2, len);
    /* tseq is the header's fifth element, after tenant (42). */
    assert_int_equal(buf[1], 0x9d);
    assert_int_equal(buf[2], JRN_FORMAT);
    /* A format-1 record is the same header without it, one element fewer. */
    r.format = JRN_FORMAT_1;
    r.tseq = 0;
    assert_int_equal(jrn_record_encode(&r, buf2, BUF_MAX, &len2, NULL), KR_OK);
    assert_int_equal(len2 + 1, len);
    assert_int_equal(buf2[1], 0x9c);
    assert_int_equal(buf2[2], JRN_FORMAT_1);
    free(buf2);
    free(buf);
}

static void expect_fields(const struct jrn_record *r, kr_err want, const char *what)
{
    kr_err got = jrn_record_check_fields(r);
    if (got != want)
        fail_msg("%s: want %s, got %s", what, kr_strerror(want), kr_strerror(got));
}

static void test_check_fields(void **state)
{
    (void)state;
    struct jrn_record r = rec_typical();
    expect_fields(&r, KR_OK, "typical");

    static const char *bad_streams[] = {"a b",   " ab",         "ab ",  "a\tb", "a\nb",
                                        "a\x7f", "caf\xc3\xa9", "\x80", "a\x01"};
    for (size_t i = 0; i < COUNT(bad_streams); i++) {
        r = rec_typical();
        r.stream = bad_streams[i];
        r.stream_len = strlen(bad_streams[i]);
        expect_fields(&r, KR_EINVAL, bad_streams[i]);
    }
    r = rec_typical();
    r.stream = "a\0b";
    r.stream_len = 3;
    expect_fields(&r, KR_EINVAL, "stream with NUL");
    r = rec_typical();
    r.stream_len = 0;
    expect_fields(&r, KR_EINVAL, "empty stream");
    r.stream = stream_max;
    r.stream_len = KR_STREAM_MAX + 1;
    expect_fields(&r, KR_ETOOLARGE, "stream too long");
    r.stream_len = KR_STREAM_MAX;
    expect_fields(&r, KR_OK, "stream at max");

    static const char *bad_types[] = {"Contact.created",
                                      "contact.Created",
                                      "A",
                                      "a-b",
                                      "a/b",
                                      "a b",
                                      "a\n",
                                      "\xc3\xa9",
                                      "a:b",
                                      "contact.createD",
                                      "a,b",
                                      "a+b"};
    for (size_t i = 0; i < COUNT(bad_types); i++) {
        r = rec_typical();
        r.type = bad_types[i];
        r.type_len = strlen(bad_types[i]);
        expect_fields(&r, KR_EINVAL, bad_types[i]);
    }
    r = rec_typical();
    r.type_len = 0;
    expect_fields(&r, KR_EINVAL, "empty type");
    r.type = type_max;
    r.type_len = KR_TYPE_MAX + 1;
    expect_fields(&r, KR_ETOOLARGE, "type too long");
    r.type_len = KR_TYPE_MAX;
    expect_fields(&r, KR_OK, "type at max");
    r.type = "abcdefghijklmnopqrstuvwxyz0123456789._";
    r.type_len = strlen(r.type);
    expect_fields(&r, KR_OK, "every type character");

    static const char *bad_actors[] = {"a b", "a\tb", "\x7f", "\xff", "a\n"};
    for (size_t i = 0; i < COUNT(bad_actors); i++) {
        r = rec_typical();
        r.actor = bad_actors[i];
        r.actor_len = strlen(bad_actors[i]);
        expect_fields(&r, KR_EINVAL, bad_actors[i]);
    }
    r = rec_typical();
    r.actor = actor_max;
    r.actor_len = KR_ACTOR_MAX + 1;
    expect_fields(&r, KR_ETOOLARGE, "actor too long");
    r.actor_len = KR_ACTOR_MAX;
    expect_fields(&r, KR_OK, "actor at max");
    r.actor = NULL;
    r.actor_len = 0;
    expect_fields(&r, KR_OK, "empty actor");

    r = rec_typical();
    r.payload = payload_max;
    r.payload_len = KR_PAYLOAD_MAX + 1;
    expect_fields(&r, KR_ETOOLARGE, "payload too long");
    r.payload_len = KR_PAYLOAD_MAX;
    expect_fields(&r, KR_OK, "payload at max");
    r.payload = NULL;
    r.payload_len = 1;
    expect_fields(&r, KR_EINVAL, "payload NULL with a length");
    r.payload_len = 0;
    expect_fields(&r, KR_OK, "payload NULL and empty");
}

/* Records that are well-formed msgpack but break a field rule. */
static void test_decode_bad_fields(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    struct jrn_record d;
    struct shape s = shape_canonical();
    size_t len;
    struct {
        const char *what;
        struct jrn_record r;
    } cases[24];
    size_t n = 0;
#define CASE(w, stmt)                                                                              \
    do {                                                                                           \
        cases[n].what = (w);                                                                       \
        cases[n].r = rec_typical();                                                                \
        struct jrn_record *r = &cases[n].r;                                                        \
        stmt;                                                                                      \
        n++;                                                                                       \
    } while (0)
    CASE("stream with space", (r->stream = "a b", r->stream_len = 3));
    CASE("empty stream", r->stream_len = 0);
    CASE("stream too long", (r->stream = stream_max, r->stream_len = KR_STREAM_MAX + 1));
    CASE("stream non-ASCII", (r->stream = "\xc3\xa9", r->stream_len = 2));
    CASE("type upper case", (r->type = "Contact", r->type_len = 7));
    CASE("empty type", r->type_len = 0);
    CASE("type too long", (r->type = type_max, r->type_len = KR_TYPE_MAX + 1));
    CASE("actor with space", (r->actor = "x y", r->actor_len = 3));
    CASE("actor too long", (r->actor = actor_max, r->actor_len = KR_ACTOR_MAX + 1));
    CASE("payload too long", (r->payload = payload_max, r->payload_len = KR_PAYLOAD_MAX + 1));
#undef CASE
    for (size_t i = 0; i < n; i++) {
        len = hand_build(buf, &cases[i].r, &s, NULL, NULL);
        kr_err err = jrn_record_decode(buf, len, &d);
        if (err != KR_ECORRUPT)
            fail_msg("%s: got %s", cases[i].what, kr_strerror(err));
    }

    /* Shape deviations. */
    struct jrn_record r = rec_typical();
    struct {
        const char *what;
        struct shape s;
        kr_err want;
    } shapes[32];
    n = 0;
#define SHAPE(w, want_, stmt)                                                                      \
    do {                                                                                           \
        shapes[n].what = (w);                                                                      \
        shapes[n].s = shape_canonical();                                                           \
        shapes[n].want = (want_);                                                                  \
        struct shape *sh = &shapes[n].s;                                                           \
        stmt;                                                                                      \
        n++;                                                                                       \
    } while (0)
    SHAPE("canonical (control)", KR_OK, (void)sh);
    SHAPE("key_id 2^32-1 (control)", KR_OK, (sh->key_id = UINT32_MAX, sh->key_id_set = true));
    SHAPE("key_id 2^32", KR_ECORRUPT, (sh->key_id = 1ull << 32, sh->key_id_set = true));
    SHAPE("key_id 2^64-1", KR_ECORRUPT, (sh->key_id = UINT64_MAX, sh->key_id_set = true));
    SHAPE("commitment 31 bytes", KR_ECORRUPT, sh->commitment_len = 31);
    SHAPE("commitment 33 bytes", KR_ECORRUPT, sh->commitment_len = 33);
    SHAPE("prev 0 bytes", KR_ECORRUPT, sh->prev_len = 0);
    SHAPE("prev 33 bytes", KR_ECORRUPT, sh->prev_len = 33);
    SHAPE("sig 63 bytes", KR_ECORRUPT, sh->sig_len = 63);
    SHAPE("sig 65 bytes", KR_ECORRUPT, sh->sig_len = 65);
    SHAPE("payload as str", KR_ECORRUPT, sh->payload_as_str = true);
    SHAPE("stream as bin", KR_ECORRUPT, sh->stream_as_bin = true);
    SHAPE("header of 12", KR_ECORRUPT, sh->header_n = 12);
    SHAPE("header of 14", KR_ECORRUPT, sh->header_n = 14);
    SHAPE("header of 12 without tseq", KR_ECORRUPT, (sh->header_n = 12, sh->with_tseq = false));
    SHAPE("format 1, header of 13", KR_ECORRUPT,
          (sh->format = JRN_FORMAT_1, sh->header_n = 13, sh->with_tseq = false));
    SHAPE("format 1, header of 11", KR_ECORRUPT,
          (sh->format = JRN_FORMAT_1, sh->header_n = 11, sh->with_tseq = false));
    SHAPE("outer of 1", KR_ECORRUPT, sh->outer_n = 1);
    SHAPE("outer of 3", KR_ECORRUPT, sh->outer_n = 3);
#undef SHAPE
    for (size_t i = 0; i < n; i++) {
        len = hand_build(buf, &r, &shapes[i].s, NULL, NULL);
        kr_err err = jrn_record_decode(buf, len, &d);
        if (err != shapes[i].want)
            fail_msg("%s: want %s, got %s", shapes[i].what, kr_strerror(shapes[i].want),
                     kr_strerror(err));
    }

    /* Not a record at all. */
    static const char *junk[] = {
        "", "\x80", "\x90", "\x92", "\x92\x9c", "\x92\x90\xc0", "\xc0", "\x81\xa1x\x01", "\xc1"};
    for (size_t i = 0; i < COUNT(junk); i++)
        assert_int_equal(jrn_record_decode((const uint8_t *)junk[i], strlen(junk[i]), &d),
                         KR_ECORRUPT);
    /* A top-level map with the right contents is still not a record. */
    assert_int_equal(jrn_record_encode(&r, buf, BUF_MAX, &len, NULL), KR_OK);
    buf[0] = 0x81;
    assert_int_equal(jrn_record_decode(buf, len, &d), KR_ECORRUPT);
    /* Longer than any record can be. */
    memset(buf, 0, KR_RECORD_MAX + 1);
    assert_int_equal(jrn_record_decode(buf, KR_RECORD_MAX + 1, &d), KR_ECORRUPT);
    free(buf);
}

/* Each value in a non-minimal form is refused, though it means the same. */
static void test_decode_noncanonical(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    struct jrn_record r = rec_typical(), d;
    r.seq = 5;
    r.tenant = 5;
    r.tseq = 5;
    r.version = 5;
    r.key_id = 5;
    r.time_ns = 5;
    r.stream = "abc"; /* short strings: fixstr is their only form */
    r.stream_len = 3;
    r.type = "a.b";
    r.type_len = 3;
    r.actor = "xy";
    r.actor_len = 2;
    struct {
        enum field f;
        int width;
    } forms[] = {
        {F_SEQ, 1},        {F_SEQ, 2},    {F_SEQ, 4},    {F_SEQ, 8},     {F_TIME, 1},
        {F_TIME, 8},       {F_TENANT, 1}, {F_TENANT, 2}, {F_VERSION, 2}, {F_VERSION, 4},
        {F_KEY_ID, 1},     {F_KEY_ID, 4}, {F_STREAM, 1}, {F_STREAM, 2},  {F_STREAM, 4},
        {F_TYPE, 1},       {F_TYPE, 2},   {F_ACTOR, 1},  {F_ACTOR, 2},   {F_COMMITMENT, 2},
        {F_COMMITMENT, 4}, {F_PREV, 2},   {F_SIG, 2},    {F_SIG, 4},     {F_PAYLOAD, 2},
        {F_PAYLOAD, 4},    {F_TSEQ, 1},   {F_TSEQ, 2},   {F_TSEQ, 8},
    };
    for (size_t i = 0; i < COUNT(forms); i++) {
        struct shape s = shape_canonical();
        s.width[forms[i].f] = forms[i].width;
        size_t len = hand_build(buf, &r, &s, NULL, NULL);
        kr_err err = jrn_record_decode(buf, len, &d);
        if (err != KR_ECORRUPT)
            fail_msg("field %d as width %d: got %s", forms[i].f, forms[i].width, kr_strerror(err));
    }
    /* The largest value of each width, written one width up. */
    static const struct {
        enum field f;
        uint64_t v;
        int width;
    } edges[] = {
        {F_SEQ, 0x7f, 1},         {F_TIME, 0xff, 2},           {F_TENANT, 0xffff, 4},
        {F_TIME, 0xffffffffu, 8}, {F_VERSION, 0xffffffffu, 8}, {F_KEY_ID, 0xffff, 4},
        {F_TSEQ, 0xffff, 4},
    };
    for (size_t i = 0; i < COUNT(edges); i++) {
        struct jrn_record e = r;
        uint64_t *field = edges[i].f == F_SEQ      ? &e.seq
                          : edges[i].f == F_TIME   ? &e.time_ns
                          : edges[i].f == F_TENANT ? &e.tenant
                          : edges[i].f == F_TSEQ   ? &e.tseq
                                                   : &e.version;
        if (edges[i].f == F_KEY_ID)
            e.key_id = (uint32_t)edges[i].v;
        else
            *field = edges[i].v;
        struct shape s = shape_canonical();
        size_t len = hand_build(buf, &e, &s, NULL, NULL);
        assert_int_equal(jrn_record_decode(buf, len, &d), KR_OK);
        s.width[edges[i].f] = edges[i].width;
        len = hand_build(buf, &e, &s, NULL, NULL);
        assert_int_equal(jrn_record_decode(buf, len, &d), KR_ECORRUPT);
    }
    /* Arrays: the header as array16 of 12, the value as array16 / array32 of 2. */
    static const struct {
        int outer, header;
    } arrays[] = {{MIN, 2}, {MIN, 4}, {2, MIN}, {4, MIN}};
    for (size_t i = 0; i < COUNT(arrays); i++) {
        struct shape s = shape_canonical();
        s.outer_width = arrays[i].outer;
        s.header_width = arrays[i].header;
        size_t len = hand_build(buf, &r, &s, NULL, NULL);
        assert_int_equal(jrn_record_decode(buf, len, &d), KR_ECORRUPT);
    }
    /* Control: the canonical form of the same record decodes. */
    struct shape s = shape_canonical();
    size_t len = hand_build(buf, &r, &s, NULL, NULL);
    assert_int_equal(jrn_record_decode(buf, len, &d), KR_OK);
    assert_records_equal(&d, &r);
    free(buf);
}

static void test_leaf_hash(void **state)
{
    (void)state;
    uint8_t *buf = buf_new();
    for (int i = 0; i < SAMPLES; i++) {
        struct jrn_record r = sample(i), d;
        size_t hl, len = encode_checked(&r, buf, &hl);
        assert_int_equal(jrn_record_decode(buf, len, &d), KR_OK);
        /* SHA-256(0x00 || header bytes), with libsodium, over a copy. */
        crypto_hash_sha256_state st;
        uint8_t want[KR_HASH_LEN], got[KR_HASH_LEN];
        const uint8_t zero = 0x00;
        crypto_hash_sha256_init(&st);
        crypto_hash_sha256_update(&st, &zero, 1);
        crypto_hash_sha256_update(&st, buf + 1, hl);
        crypto_hash_sha256_final(&st, want);
        jrn_record_leaf_hash(&d, got);
        assert_memory_equal(got, want, KR_HASH_LEN);
        /* The header is everything between the outer array byte and the payload. */
        size_t payload_bytes = r.payload_stripped        ? 1
                               : r.payload_len <= 0xff   ? 2 + r.payload_len
                               : r.payload_len <= 0xffff ? 3 + r.payload_len
                                                         : 5 + r.payload_len;
        assert_int_equal(hl, len - 1 - payload_bytes);
    }
    /* Stripping the payload changes no leaf; changing the commitment does. */
    struct jrn_record a = sample(0), b = sample(0), c = sample(0), da, db, dc;
    b.payload = NULL;
    b.payload_len = 0;
    b.payload_stripped = true;
    c.commitment[0] ^= 1;
    uint8_t *ba = buf_new(), *bb = buf_new(), *bc = buf_new();
    size_t la, lb, lc;
    assert_int_equal(jrn_record_encode(&a, ba, BUF_MAX, &la, NULL), KR_OK);
    assert_int_equal(jrn_record_encode(&b, bb, BUF_MAX, &lb, NULL), KR_OK);
    assert_int_equal(jrn_record_encode(&c, bc, BUF_MAX, &lc, NULL), KR_OK);
    assert_int_equal(jrn_record_decode(ba, la, &da), KR_OK);
    assert_int_equal(jrn_record_decode(bb, lb, &db), KR_OK);
    assert_int_equal(jrn_record_decode(bc, lc, &dc), KR_OK);
    uint8_t ha[KR_HASH_LEN], hb[KR_HASH_LEN], hc[KR_HASH_LEN];
    jrn_record_leaf_hash(&da, ha);
    jrn_record_leaf_hash(&db, hb);
    jrn_record_leaf_hash(&dc, hc);
    assert_memory_equal(ha, hb, KR_HASH_LEN);
    assert_memory_not_equal(ha, hc, KR_HASH_LEN);
    free(ba);
    free(bb);
    free(bc);
    free(buf);
}

/* The signing input as docs/journal-format.md writes it. */
static size_t sign_input_ref(const struct jrn_record *r, uint8_t *out)
{
    struct w w = {out, 0};
    w_bytes(&w, "kiroku.record.v1", 16);
    w_be(&w, r->tenant, 8);
    w_be(&w, r->version, 8);
    w_be(&w, r->time_ns, 8);
    w_be(&w, r->key_id, 4);
    w_byte(&w, (uint8_t)r->stream_len);
    w_bytes(&w, r->stream, r->stream_len);
    w_byte(&w, (uint8_t)r->type_len);
    w_bytes(&w, r->type, r->type_len);
    w_byte(&w, (uint8_t)r->actor_len);
    w_bytes(&w, r->actor, r->actor_len);
    w_bytes(&w, r->commitment, KR_HASH_LEN);
    return w.len;
}

static size_t sign_input(const struct jrn_record *r, uint8_t out[JRN_SIGN_INPUT_MAX + 16])
{
    size_t len = 0;
    memset(out, 0xee, JRN_SIGN_INPUT_MAX + 16);
    jrn_record_sign_input(r, out, &len);
    assert_true(len <= JRN_SIGN_INPUT_MAX);
    for (size_t i = JRN_SIGN_INPUT_MAX; i < JRN_SIGN_INPUT_MAX + 16; i++)
        assert_int_equal(out[i], 0xee);
    return len;
}

static void test_sign_input(void **state)
{
    (void)state;
    uint8_t *ref = buf_new();
    uint8_t base[JRN_SIGN_INPUT_MAX + 16], got[JRN_SIGN_INPUT_MAX + 16];
    assert_int_equal(strlen(JRN_SIGN_DOMAIN), 16);
    for (int i = 0; i < SAMPLES; i++) {
        struct jrn_record r = sample(i);
        size_t len = sign_input(&r, got);
        size_t rlen = sign_input_ref(&r, ref);
        assert_int_equal(len, rlen);
        assert_memory_equal(got, ref, len);
        assert_memory_equal(got, JRN_SIGN_DOMAIN, 16);
    }
    /* The largest fields fill JRN_SIGN_INPUT_MAX exactly. */
    struct jrn_record big = sample(1);
    assert_int_equal(sign_input(&big, got), JRN_SIGN_INPUT_MAX);

    /* Each covered field changes the input; seq, prev, sig and the payload
     * bytes themselves (covered through the commitment) do not. */
    struct jrn_record r0 = rec_typical();
    size_t blen = sign_input(&r0, base);
    struct {
        const char *what;
        bool covered;
        struct jrn_record r;
    } ch[32];
    size_t n = 0;
#define CHANGE(w, cov, stmt)                                                                       \
    do {                                                                                           \
        ch[n].what = (w);                                                                          \
        ch[n].covered = (cov);                                                                     \
        ch[n].r = rec_typical();                                                                   \
        struct jrn_record *r = &ch[n].r;                                                           \
        stmt;                                                                                      \
        n++;                                                                                       \
    } while (0)
    CHANGE("tenant", true, r->tenant ^= 1);
    CHANGE("tenant high bit", true, r->tenant ^= 1ull << 63);
    CHANGE("stream", true, r->stream = "contact/0123456789abcdef0123456789abcdeF");
    CHANGE("stream shorter", true, r->stream_len--);
    CHANGE("version", true, r->version++);
    CHANGE("version high bit", true, r->version ^= 1ull << 63);
    CHANGE("type", true, r->type = "contact.updated");
    CHANGE("time", true, r->time_ns++);
    CHANGE("time high bit", true, r->time_ns ^= 1ull << 62);
    CHANGE("actor", true, r->actor = "account/00000000000000000000000000000002");
    CHANGE("actor empty", true, r->actor_len = 0);
    CHANGE("key_id", true, r->key_id++);
    CHANGE("key_id high bit", true, r->key_id ^= 1u << 31);
    CHANGE("commitment first", true, r->commitment[0] ^= 1);
    CHANGE("commitment last", true, r->commitment[KR_HASH_LEN - 1] ^= 0x80);
    CHANGE("seq", false, r->seq++);
    CHANGE("tseq", false, r->tseq++);
    CHANGE("format 1", false, (r->format = JRN_FORMAT_1, r->tseq = 0));
    CHANGE("seq to 1", false, r->seq = 1);
    CHANGE("prev", false, r->prev[5] ^= 1);
    CHANGE("sig", false, r->sig[0] ^= 1);
    CHANGE("payload bytes", false, (r->payload = payload_max, r->payload_len = 100));
    CHANGE("stripped", false, (r->payload = NULL, r->payload_len = 0, r->payload_stripped = true));
#undef CHANGE
    for (size_t i = 0; i < n; i++) {
        size_t len = sign_input(&ch[i].r, got);
        bool same = len == blen && memcmp(got, base, len) == 0;
        if (same == ch[i].covered)
            fail_msg("changing %s %s the signing input", ch[i].what,
                     same ? "does not change" : "changes");
    }
    /* Length prefixes keep field boundaries apart: moving a byte from one
     * string to the next changes the input. */
    struct jrn_record a = rec_typical(), b = rec_typical();
    a.stream = "ab";
    a.stream_len = 2;
    a.type = "c";
    a.type_len = 1;
    b.stream = "a";
    b.stream_len = 1;
    b.type = "bc";
    b.type_len = 2;
    size_t la = sign_input(&a, base), lb = sign_input(&b, got);
    assert_int_equal(la, lb);
    assert_memory_not_equal(base, got, la);
    a = rec_typical();
    b = rec_typical();
    a.type = "x";
    a.type_len = 1;
    a.actor = "y";
    a.actor_len = 1;
    b.type = "xy";
    b.type_len = 2;
    b.actor_len = 0;
    la = sign_input(&a, base);
    lb = sign_input(&b, got);
    assert_int_equal(la, lb);
    assert_memory_not_equal(base, got, la);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),           cmocka_unit_test(test_encode_short_buffer),
        cmocka_unit_test(test_decode_truncated),    cmocka_unit_test(test_decode_trailing),
        cmocka_unit_test(test_single_byte_changes), cmocka_unit_test(test_format_version),
        cmocka_unit_test(test_zero_seq_or_version), cmocka_unit_test(test_check_fields),
        cmocka_unit_test(test_decode_bad_fields),   cmocka_unit_test(test_decode_noncanonical),
        cmocka_unit_test(test_leaf_hash),           cmocka_unit_test(test_sign_input),
        cmocka_unit_test(test_encode_format),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
