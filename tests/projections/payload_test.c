/*
 * payload_test.c: tests for projections/payload.c, the schema-driven codec of
 * event payloads and op arguments.
 *
 * A generic builder driven by kr_fields gives every field of every event a
 * valid value (shortest, longest and middle forms), so each event of the
 * schema round-trips without a test written for it by hand. Hostile payloads
 * are hand-built with msgpack-c (and, for "pd", sealed by hand from the format
 * payload.h documents), so the expectations do not come from the code under
 * test. Field names are taken from the schema tables, never spelled here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payload.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define FN(fld)  (kr_fields[fld].name)
/* Longest str or bin field of the schema (a journal record), plus room. */
#define STORE_MAX 66112u
/* Variants of the builder: shortest values with optional fields absent,
 * longest, middle, and three more mixes (see gen_value). */
#define VARIANTS 6
#define TENANT   42u

/* ---- Test data ---- */

static struct kr_data_key g_key, g_other_key;
static uint8_t g_store[KR_FLD__COUNT][STORE_MAX];
static uint64_t g_tenants[1024];
static uint8_t g_buf[KR_PAYLOAD_MAX + 64];

static int setup(void **state)
{
    (void)state;
    g_key.tenant = TENANT;
    g_other_key.tenant = TENANT;
    for (size_t i = 0; i < KR_DATA_KEY_LEN; i++) {
        g_key.key[i] = (uint8_t)(0xa0 + i);
        g_other_key.key[i] = (uint8_t)(0xa0 + i);
    }
    g_other_key.key[31] ^= 1;
    return 0;
}

/* A valid string of exactly len bytes in charset cs (variant picks a form). */
static void fill_str(enum kr_charset cs, uint8_t *s, size_t len, int variant)
{
    static const char phone[] = "0123456789+ -";
    for (size_t i = 0; i < len; i++) {
        switch (cs) {
        case KR_CS_UTF8:
            s[i] = (uint8_t)('a' + i % 26);
            break;
        case KR_CS_PRINTABLE:
            s[i] = (uint8_t)(0x21 + i % 94);
            break;
        case KR_CS_CODE:
            s[i] = (i > 0 && i + 1 < len && i % 5 == 2) ? '-' : (uint8_t)('a' + i % 26);
            break;
        case KR_CS_DIGITS:
            s[i] = (uint8_t)('0' + i % 10);
            break;
        case KR_CS_PHONE:
            s[i] = (uint8_t)phone[i % (sizeof phone - 1)];
            break;
        case KR_CS_KEY:
            s[i] = i == 0 ? 'k' : (uint8_t) "a_9z"[i % 4];
            break;
        case KR_CS_KEY_DOT:
            s[i] = i == 0 ? 'k' : (uint8_t) "a._9"[i % 4];
            break;
        }
    }
    /* UTF-8 text with multi-byte characters (U+3042, U+1F600) and a tab. */
    if (cs == KR_CS_UTF8 && variant % 2 == 1) {
        size_t i = 0, end = len >= 2 ? len - 1 : len;
        for (; i + 4 <= end && i < 40; i += 4)
            memcpy(s + i, "\xF0\x9F\x98\x80", 4);
        for (; i + 3 <= end; i += 3)
            memcpy(s + i, "\xE3\x81\x82", 3);
        if (len >= 2)
            s[len - 1] = '\t';
    }
}

/* A valid addr-spec of exactly len bytes (len >= 3): a local part of at most
 * 64 letters and digits, '@', and a domain of labels under 63 bytes. */
static void fill_email(uint8_t *s, size_t len, int variant)
{
    size_t local = len - 2 < 64 ? len - 2 : 64, dn = len - 1 - local;
    for (size_t i = 0; i < local; i++)
        s[i] = (uint8_t)('a' + (i * 7 + (size_t)variant) % 26);
    s[local] = '@';
    uint8_t *d = s + local + 1;
    for (size_t i = 0; i < dn; i++)
        d[i] = i % 50 == 49 && i + 1 < dn ? '.' : (uint8_t)('0' + (i + (size_t)variant) % 10);
}

static uint64_t pick(int variant, uint64_t lo, uint64_t hi)
{
    switch (variant % 3) {
    case 0:
        return lo;
    case 1:
        return hi;
    default:
        return lo + (hi - lo) / 3;
    }
}

/* Gives field fld a valid value in p (bytes in g_store[fld]). */
static void gen_value(struct kr_payload *p, int fld, int variant)
{
    const struct kr_field_def *f = &kr_fields[fld];
    uint8_t *st = g_store[fld];
    switch (f->type) {
    case KR_FT_ID:
    case KR_FT_HASH: {
        size_t n = f->type == KR_FT_ID ? 16 : 32;
        for (size_t i = 0; i < n; i++)
            st[i] = (uint8_t)(fld * 7 + variant * 13 + (int)i * 31);
        kr_set_bytes(p, fld, st, n);
        return;
    }
    case KR_FT_TENANT:
        kr_set_u64(p, fld, pick(variant, 1, INT64_MAX));
        return;
    case KR_FT_U64:
        kr_set_u64(p, fld, pick(variant, f->min, f->max));
        return;
    case KR_FT_TIME:
        kr_set_u64(p, fld, variant == 2 ? 1700000000123456789ull : pick(variant, 0, UINT64_MAX));
        return;
    case KR_FT_BOOL:
        kr_set_bool(p, fld, variant % 2 == 1);
        return;
    case KR_FT_ENUM:
        kr_set_u64(p, fld, pick(variant, 0, kr_enums[f->enum_id].count - 1));
        return;
    case KR_FT_STR:
    case KR_FT_EMAIL:
    case KR_FT_BIN: {
        uint64_t lo = f->type == KR_FT_EMAIL && f->min < 3 ? 3 : f->min;
        /* A result-only field may be longer than any payload (audit.export's
         * document, up to a reply): it is tried up to STORE_MAX. */
        uint64_t hi = f->max > STORE_MAX && fld == KR_FLD_EXPORT ? STORE_MAX : f->max;
        size_t n = (size_t)pick(variant, lo, hi);
        assert_true(n <= STORE_MAX);
        if (f->type == KR_FT_BIN) {
            for (size_t i = 0; i < n; i++)
                st[i] = (uint8_t)(i * 5 + (size_t)variant);
        } else if (f->type == KR_FT_EMAIL) {
            fill_email(st, n, variant);
        } else {
            fill_str(f->charset, st, n, variant);
        }
        kr_set_bytes(p, fld, st, n);
        return;
    }
    case KR_FT_VALUE:
        switch (variant) {
        case 0:
            kr_set_value_str(p, fld, st, 0);
            return;
        case 1:
            fill_str(KR_CS_UTF8, st, f->max, 1);
            kr_set_value_str(p, fld, st, f->max);
            return;
        case 2:
            kr_set_value_int(p, fld, INT64_MIN);
            return;
        case 3:
            kr_set_value_float(p, fld, -1.5e300);
            return;
        case 4:
            kr_set_value_bool(p, fld, true);
            return;
        default:
            kr_set_value_int(p, fld, -33);
            return;
        }
    case KR_FT_LIST:
        if (f->of == KR_FT_ENUM) {
            uint32_t cnt = kr_enums[f->enum_id].count;
            uint64_t all = cnt >= 64 ? UINT64_MAX : (1ull << cnt) - 1;
            kr_set_u64(p, fld, variant % 3 == 0 ? 0 : variant % 3 == 1 ? all : all & 0x5u);
            return;
        }
        {
            size_t n = variant % 3 == 0 ? 0 : variant % 3 == 1 ? f->max_items : 3;
            assert_true(n <= COUNT(g_tenants));
            for (size_t i = 0; i < n; i++)
                g_tenants[i] = (uint64_t)INT64_MAX - (n - 1 - i) * 0x1000000000001ull;
            if (n == 3) {
                g_tenants[0] = 1;
                g_tenants[1] = 0x100000000ull;
            }
            kr_set_tenants(p, fld, g_tenants, n);
        }
        return;
    }
    fail_msg("field %s has an unknown type", f->name);
}

/* Fills every field of event ev in p (reset first); optional ones are left
 * out in variants 0 and 3; `skip` (a field id, or -1) is left out always. */
static void build(struct kr_payload *p, int ev, int variant, int skip)
{
    const struct kr_event_def *e = &kr_events[ev];
    kr_payload_reset(p, ev);
    for (uint32_t i = 0; i < e->nfields; i++) {
        int fld = e->fields[i].field;
        if (fld == skip || (e->fields[i].optional && (variant == 0 || variant == 3)))
            continue;
        gen_value(p, fld, variant);
    }
}

static bool event_has(int ev, int fld)
{
    for (uint32_t i = 0; i < kr_events[ev].nfields; i++)
        if (kr_events[ev].fields[i].field == fld)
            return true;
    return false;
}

/* Whether p carries any personal field. */
static bool has_pd(const struct kr_payload *p)
{
    for (int f = 0; f < KR_FLD__COUNT; f++)
        if (p->v[f].set && kr_fields[f].personal)
            return true;
    return false;
}

static bool value_equal(int fld, const struct kr_value *a, const struct kr_value *b)
{
    const struct kr_field_def *f = &kr_fields[fld];
    if (a->set != b->set)
        return false;
    if (!a->set)
        return true;
    switch (f->type) {
    case KR_FT_ID:
    case KR_FT_HASH:
    case KR_FT_STR:
    case KR_FT_EMAIL:
    case KR_FT_BIN:
        return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
    case KR_FT_TENANT:
    case KR_FT_U64:
    case KR_FT_TIME:
    case KR_FT_ENUM:
        return a->u == b->u;
    case KR_FT_BOOL:
        return a->b == b->b;
    case KR_FT_VALUE:
        if (a->kind != b->kind)
            return false;
        switch (a->kind) {
        case KR_VK_STR:
            return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
        case KR_VK_INT:
            return a->i == b->i;
        case KR_VK_FLOAT:
            return memcmp(&a->f, &b->f, sizeof a->f) == 0;
        default:
            return a->b == b->b;
        }
    case KR_FT_LIST:
        if (f->of == KR_FT_ENUM)
            return a->u == b->u;
        return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, (size_t)a->n * 8) == 0);
    }
    return false;
}

/* An encoded event and the record header it belongs to. */
struct enc {
    int ev;
    uint8_t *buf;
    size_t len;
    char stream[KR_STREAM_MAX + 1];
    size_t stream_len;
    uint64_t tenant;
};

static uint64_t event_tenant(int ev)
{
    return kr_events[ev].platform ? 0 : TENANT;
}

static kr_err encode_with(const struct kr_payload *p, const struct kr_data_key *key, uint64_t seed,
                          struct enc *out, struct kr_diag *d)
{
    struct kr_rng_det det;
    struct kr_rng rng;
    out->ev = p->ev;
    out->tenant = event_tenant(p->ev);
    assert_int_equal(kr_event_stream(p, out->stream, sizeof out->stream, &out->stream_len), KR_OK);
    struct kr_pd_ctx pd = {.key = key,
                           .rng = &rng,
                           .tenant = out->tenant,
                           .stream = out->stream,
                           .stream_len = out->stream_len};
    kr_rng_det_init(&det, seed, &rng);
    memset(d, 0, sizeof *d);
    kr_err err = kr_event_encode(p, &pd, out->buf, KR_PAYLOAD_MAX, &out->len, d);
    kr_rng_det_fini(&det);
    return err;
}

static void encode_ok(const struct kr_payload *p, struct enc *out)
{
    struct kr_diag d;
    kr_err err = encode_with(p, &g_key, 7, out, &d);
    if (err)
        fail_msg("encode %s: %s (%s: %s)", kr_events[p->ev].name, kr_strerror(err), d.field, d.why);
}

static struct jrn_record record_of(const struct enc *e)
{
    struct jrn_record r = {.seq = 1,
                           .tenant = e->tenant,
                           .version = 1,
                           .stream = e->stream,
                           .stream_len = e->stream_len,
                           .type = kr_events[e->ev].name,
                           .type_len = strlen(kr_events[e->ev].name),
                           .actor = "system",
                           .actor_len = 6,
                           .payload = e->buf,
                           .payload_len = e->len};
    return r;
}

static kr_err decode(int ev, const struct jrn_record *r, const struct kr_data_key *key,
                     struct kr_payload *q, struct kr_diag *d)
{
    memset(d, 0, sizeof *d);
    return kr_event_decode(ev, r, key, q, d);
}

/* Every field of p's event has the same value in q (personal ones only when
 * `personal`; unset in q otherwise). */
static void expect_same(const struct kr_payload *p, const struct kr_payload *q, bool personal)
{
    const struct kr_event_def *e = &kr_events[p->ev];
    for (uint32_t i = 0; i < e->nfields; i++) {
        int fld = e->fields[i].field;
        if (kr_fields[fld].personal && !personal) {
            if (q->v[fld].set)
                fail_msg("%s: personal field %s decoded without the key", e->name, FN(fld));
            continue;
        }
        if (!value_equal(fld, &p->v[fld], &q->v[fld]))
            fail_msg("%s: field %s differs after decoding", e->name, FN(fld));
    }
    for (int f = 0; f < KR_FLD__COUNT; f++)
        if (q->v[f].set && !event_has(p->ev, f))
            fail_msg("%s: decoded field %s the event does not have", e->name, FN(f));
}

static struct kr_payload *payload_new(void)
{
    struct kr_payload *p = kr_payload_new();
    assert_non_null(p);
    return p;
}

/* ---- Round trips ---- */

static void test_roundtrip_every_event(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new(), *q = payload_new();
    uint8_t *buf2 = malloc(KR_PAYLOAD_MAX);
    assert_non_null(buf2);
    struct kr_diag d;
    for (int ev = 0; ev < KR_EV__COUNT; ev++) {
        for (int variant = 0; variant < VARIANTS; variant++) {
            build(p, ev, variant, -1);
            struct enc e = {.buf = g_buf};
            encode_ok(p, &e);
            assert_true(e.len <= KR_PAYLOAD_MAX);
            struct jrn_record r = record_of(&e);
            bool pd = has_pd(p);

            /* With the key: every value back. */
            kr_err err = decode(ev, &r, &g_key, q, &d);
            if (err)
                fail_msg("decode %s variant %d: %s (%s: %s)", kr_events[ev].name, variant,
                         kr_strerror(err), d.field, d.why);
            assert_int_equal(q->ev, ev);
            assert_false(q->pd_sealed);
            expect_same(p, q, true);

            /* Without the key: plain values only, and the payload says so. */
            assert_int_equal(decode(ev, &r, NULL, q, &d), KR_OK);
            assert_int_equal(q->pd_sealed, pd);
            expect_same(p, q, false);

            /* The same inputs and rng seed give the same bytes; another seed
             * another nonce when there is personal data. */
            struct enc e2 = {.buf = buf2};
            assert_int_equal(encode_with(p, &g_key, 7, &e2, &d), KR_OK);
            assert_int_equal(e2.len, e.len);
            assert_memory_equal(e2.buf, e.buf, e.len);
            assert_int_equal(encode_with(p, &g_key, 8, &e2, &d), KR_OK);
            assert_int_equal(e2.len, e.len);
            assert_int_equal(memcmp(e2.buf, e.buf, e.len) != 0, pd);

            /* Personal data never in clear: no personal str/email value
             * longer than 3 bytes appears in the payload bytes. */
            for (int f = 0; f < KR_FLD__COUNT; f++) {
                const struct kr_value *v = &p->v[f];
                if (!v->set || !kr_fields[f].personal || v->n < 4 ||
                    (kr_fields[f].type != KR_FT_STR && kr_fields[f].type != KR_FT_EMAIL))
                    continue;
                assert_null(memmem(e.buf, e.len, v->p, v->n));
            }

            if (!pd)
                continue;
            /* A wrong key: refused, nothing personal handed back. */
            assert_int_equal(decode(ev, &r, &g_other_key, q, &d), KR_ECORRUPT);
            assert_string_equal(d.field, "pd");

            /* The sealed data is bound to tenant, stream and type. */
            struct jrn_record moved = r;
            moved.tenant = r.tenant + 1;
            assert_int_equal(decode(ev, &moved, &g_key, q, &d), KR_ECORRUPT);
            assert_string_equal(d.field, "pd");
            char stream[KR_STREAM_MAX + 1];
            memcpy(stream, e.stream, e.stream_len);
            stream[e.stream_len - 1] = stream[e.stream_len - 1] == '0' ? '1' : '0';
            moved = r;
            moved.stream = stream;
            assert_int_equal(decode(ev, &moved, &g_key, q, &d), KR_ECORRUPT);
            assert_string_equal(d.field, "pd");
            moved.stream_len = e.stream_len - 1;
            moved.stream = e.stream;
            assert_int_equal(decode(ev, &moved, &g_key, q, &d), KR_ECORRUPT);
            for (int other = 0; other < KR_EV__COUNT; other++) {
                if (other == ev)
                    continue;
                moved = r;
                moved.type = kr_events[other].name;
                moved.type_len = strlen(kr_events[other].name);
                if (decode(other, &moved, &g_key, q, &d) != KR_ECORRUPT)
                    fail_msg("%s payload decoded as %s", kr_events[ev].name, kr_events[other].name);
            }
        }
    }
    free(buf2);
    kr_payload_free(p);
    kr_payload_free(q);
}

/* A stripped payload (erased tenant) is "not found", not corrupt. */
static void test_stripped_payload(void **state)
{
    (void)state;
    struct kr_payload *q = payload_new();
    struct kr_diag d;
    struct jrn_record r = {.tenant = TENANT,
                           .stream = "tenant",
                           .stream_len = 6,
                           .type = kr_events[KR_EV_TENANT_CANCELLED].name,
                           .type_len = strlen(kr_events[KR_EV_TENANT_CANCELLED].name),
                           .payload_stripped = true};
    assert_int_equal(decode(KR_EV_TENANT_CANCELLED, &r, &g_key, q, &d), KR_ENOTFOUND);
    kr_payload_free(q);
}

/* ---- Damaged payloads ---- */

/* Every single-bit flip: an error (KR_ECORRUPT), or, for a flip inside a
 * plain value that stays valid, a payload that differs in a plain value and
 * whose personal values are the original ones. Under a wrong key, never any
 * personal value. */
static void flips_of(struct kr_payload *p, struct kr_payload *q, int ev, int variant)
{
    struct kr_diag d;
    build(p, ev, variant, -1);
    struct enc e = {.buf = g_buf};
    encode_ok(p, &e);
    bool pd = has_pd(p);
    static uint8_t orig[KR_PAYLOAD_MAX];
    memcpy(orig, e.buf, e.len);
    struct jrn_record r = record_of(&e);
    for (size_t i = 0; i < e.len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            e.buf[i] = (uint8_t)(orig[i] ^ (1u << bit));
            kr_err err = decode(ev, &r, &g_key, q, &d);
            if (err != KR_OK) {
                if (err != KR_ECORRUPT)
                    fail_msg("%s: flip at %zu.%u gave %s", kr_events[ev].name, i, bit,
                             kr_strerror(err));
            } else {
                bool differs = false;
                const struct kr_event_def *ed = &kr_events[ev];
                for (uint32_t k = 0; k < ed->nfields; k++) {
                    int fld = ed->fields[k].field;
                    bool same = value_equal(fld, &p->v[fld], &q->v[fld]);
                    if (kr_fields[fld].personal && !same)
                        fail_msg("%s: flip at %zu.%u changed personal field %s", kr_events[ev].name,
                                 i, bit, FN(fld));
                    differs |= !same;
                }
                if (!differs)
                    fail_msg("%s: flip at %zu.%u decoded to the same values "
                             "(two byte forms of one payload)",
                             kr_events[ev].name, i, bit);
            }
            if (pd) {
                assert_int_equal(decode(ev, &r, &g_other_key, q, &d), KR_ECORRUPT);
                for (int f = 0; f < KR_FLD__COUNT; f++)
                    assert_false(q->v[f].set && kr_fields[f].personal);
            }
        }
        e.buf[i] = orig[i];
    }
}

static void test_bit_flips(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new(), *q = payload_new();
    for (int ev = 0; ev < KR_EV__COUNT; ev++) {
        flips_of(p, q, ev, 0);
        flips_of(p, q, ev, 1);
        flips_of(p, q, ev, 5);
    }
    kr_payload_free(p);
    kr_payload_free(q);
}

static void test_truncated_and_trailing(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new(), *q = payload_new();
    struct kr_diag d;
    for (int ev = 0; ev < KR_EV__COUNT; ev++) {
        for (int variant = 0; variant < 3; variant++) {
            build(p, ev, variant, -1);
            struct enc e = {.buf = g_buf};
            encode_ok(p, &e);
            struct jrn_record r = record_of(&e);
            size_t full = e.len;
            for (size_t cut = 0; cut < full; cut++) {
                if (full > 600 && cut > 300 && cut + 300 < full && cut % 97 != 0)
                    continue;
                r.payload_len = cut;
                if (decode(ev, &r, &g_key, q, &d) != KR_ECORRUPT ||
                    decode(ev, &r, NULL, q, &d) != KR_ECORRUPT)
                    fail_msg("%s cut at %zu of %zu not refused", kr_events[ev].name, cut, full);
            }
            /* One trailing byte of any value. */
            static const uint8_t tails[] = {0x00, 0xc0, 0x80, 0xc1, 0xff};
            for (size_t t = 0; t < COUNT(tails); t++) {
                e.buf[full] = tails[t];
                r.payload_len = full + 1;
                assert_int_equal(decode(ev, &r, &g_key, q, &d), KR_ECORRUPT);
                assert_int_equal(decode(ev, &r, NULL, q, &d), KR_ECORRUPT);
            }
            r.payload_len = full;
            assert_int_equal(decode(ev, &r, &g_key, q, &d), KR_OK);
        }
    }
    kr_payload_free(p);
    kr_payload_free(q);
}

/* ---- Hand-built payloads ---- */

struct mb {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void mb_init(struct mb *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mb_fini(struct mb *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

static void mb_strn(struct mb *m, const void *s, size_t n)
{
    msgpack_pack_str(&m->pk, n);
    msgpack_pack_str_body(&m->pk, s, n);
}

static void mb_str(struct mb *m, const char *s)
{
    mb_strn(m, s, strlen(s));
}

static void mb_bin(struct mb *m, const void *b, size_t n)
{
    msgpack_pack_bin(&m->pk, n);
    msgpack_pack_bin_body(&m->pk, b, n);
}

static void mb_key(struct mb *m, int fld)
{
    mb_str(m, FN(fld));
}

static const uint8_t ID_A[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t ID_B[16] = {0xf0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* The record header of a hand-built payload of event ev with stream key ID_A. */
static struct jrn_record hand_record(int ev, const void *payload, size_t len, char *stream)
{
    struct kr_payload *p = payload_new();
    size_t sl;
    kr_payload_reset(p, ev);
    if (kr_events[ev].stream_key >= 0)
        kr_set_bytes(p, kr_events[ev].stream_key, ID_A, 16);
    assert_int_equal(kr_event_stream(p, stream, KR_STREAM_MAX + 1, &sl), KR_OK);
    kr_payload_free(p);
    struct jrn_record r = {.tenant = event_tenant(ev),
                           .stream = stream,
                           .stream_len = sl,
                           .type = kr_events[ev].name,
                           .type_len = strlen(kr_events[ev].name),
                           .payload = payload,
                           .payload_len = len};
    return r;
}

static kr_err decode_hand(int ev, struct mb *m, const struct kr_data_key *key, struct kr_diag *d)
{
    char stream[KR_STREAM_MAX + 1];
    struct kr_payload *q = payload_new();
    struct jrn_record r = hand_record(ev, m->sb.data, m->sb.size, stream);
    kr_err err = decode(ev, &r, key, q, d);
    kr_payload_free(q);
    mb_fini(m);
    return err;
}

/* tag.created {tag, tag_name}: the reference bytes, then each deviation. */
static void test_hand_built_plain(void **state)
{
    (void)state;
    struct mb m;
    struct kr_diag d;
    const int ev = KR_EV_TAG_CREATED;

    /* The canonical form, byte-equal to what encode gives. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_TAG_NAME);
    mb_str(&m, "vip");
    struct kr_payload *p = payload_new();
    kr_payload_reset(p, ev);
    kr_set_bytes(p, KR_FLD_TAG, ID_A, 16);
    kr_set_str(p, KR_FLD_TAG_NAME, "vip");
    struct enc e = {.buf = g_buf};
    encode_ok(p, &e);
    kr_payload_free(p);
    assert_int_equal(e.len, m.sb.size);
    assert_memory_equal(e.buf, m.sb.data, e.len);
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_OK);

    /* Keys out of schema order. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_TAG_NAME);
    mb_str(&m, "vip");
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);

    /* A repeated key. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_B, 16);
    mb_key(&m, KR_FLD_TAG_NAME);
    mb_str(&m, "vip");
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);

    /* An unknown key, and a known field of another event. */
    for (int k = 0; k < 2; k++) {
        mb_init(&m);
        msgpack_pack_map(&m.pk, 3);
        mb_key(&m, KR_FLD_TAG);
        mb_bin(&m, ID_A, 16);
        mb_key(&m, KR_FLD_TAG_NAME);
        mb_str(&m, "vip");
        if (k == 0)
            mb_str(&m, "zzz");
        else
            mb_key(&m, KR_FLD_VERSION);
        msgpack_pack_uint64(&m.pk, 1);
        assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    }

    /* A required field missing. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    assert_int_equal(decode_hand(ev, &m, &g_key, &d), KR_ECORRUPT);
    assert_string_equal(d.field, FN(KR_FLD_TAG_NAME));

    /* Wrong types: the id as str, the name as bin, nil. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_TAG);
    mb_strn(&m, ID_A, 16);
    mb_key(&m, KR_FLD_TAG_NAME);
    mb_str(&m, "vip");
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    assert_string_equal(d.field, FN(KR_FLD_TAG));
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_TAG_NAME);
    mb_bin(&m, "vip", 3);
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    assert_string_equal(d.field, FN(KR_FLD_TAG_NAME));
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_TAG_NAME);
    msgpack_pack_nil(&m.pk);
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);

    /* A value breaking its limits: a 15-byte id, a 65-byte name, bad UTF-8. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 15);
    mb_key(&m, KR_FLD_TAG_NAME);
    mb_str(&m, "vip");
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    assert_string_equal(d.field, FN(KR_FLD_TAG));
    char longname[66];
    memset(longname, 'x', 65);
    longname[65] = '\0';
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_TAG_NAME);
    mb_str(&m, longname);
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    assert_string_equal(d.field, FN(KR_FLD_TAG_NAME));
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_TAG_NAME);
    mb_str(&m, "\xC0\x80");
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    assert_string_equal(d.field, FN(KR_FLD_TAG_NAME));

    /* Non-minimal encodings: str8 for a 3-byte name, map16 header. */
    static const uint8_t str8[] = {0xd9, 3, 'v', 'i', 'p'};
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_TAG_NAME);
    msgpack_sbuffer_write(&m.sb, (const char *)str8, sizeof str8);
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    static const uint8_t map16[] = {0xde, 0, 2};
    mb_init(&m);
    msgpack_sbuffer_write(&m.sb, (const char *)map16, sizeof map16);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_TAG_NAME);
    mb_str(&m, "vip");
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);

    /* Not a map; an empty payload; "pd" in an event without personal data. */
    mb_init(&m);
    msgpack_pack_array(&m.pk, 2);
    mb_bin(&m, ID_A, 16);
    mb_str(&m, "vip");
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    {
        char stream[KR_STREAM_MAX + 1];
        static const uint8_t none[1];
        struct kr_payload *q = payload_new();
        struct jrn_record r = hand_record(ev, none, 0, stream);
        assert_int_equal(decode(ev, &r, &g_key, q, &d), KR_ECORRUPT);
        kr_payload_free(q);
    }
    mb_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mb_key(&m, KR_FLD_TAG);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_TAG_NAME);
    mb_str(&m, "vip");
    mb_str(&m, "pd");
    mb_bin(&m, g_store[0], 64);
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    assert_string_equal(d.field, "pd");
}

/* The additional data payload.h documents for "pd". */
static size_t pd_ad(uint8_t *ad, uint64_t tenant, const char *stream, size_t sl, const char *type)
{
    size_t n = 0;
    memcpy(ad, "kiroku.pd.v1", 12);
    n = 12;
    for (int i = 7; i >= 0; i--)
        ad[n++] = (uint8_t)(tenant >> (8 * i));
    ad[n++] = (uint8_t)sl;
    memcpy(ad + n, stream, sl);
    n += sl;
    memcpy(ad + n, type, strlen(type));
    return n + strlen(type);
}

/* incident.reported {report, severity, "pd": sealed inner}, with details also in clear when asked.
 */
static kr_err decode_sealed(struct mb *inner, bool plain_details, struct kr_diag *d)
{
    const int ev = KR_EV_INCIDENT_REPORTED;
    char stream[KR_STREAM_MAX + 1];
    struct jrn_record r = hand_record(ev, NULL, 0, stream);
    uint8_t ad[256], sealed[512];
    size_t adlen = pd_ad(ad, r.tenant, r.stream, r.stream_len, kr_events[ev].name), slen;
    assert_int_equal(kr_seal(&g_key, NULL, ad, adlen, inner->sb.data, inner->sb.size, sealed,
                             sizeof sealed, &slen),
                     KR_OK);
    mb_fini(inner);
    struct mb m;
    mb_init(&m);
    msgpack_pack_map(&m.pk, plain_details ? 4 : 3);
    mb_key(&m, KR_FLD_REPORT);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_SEVERITY);
    mb_str(&m, kr_enums[KR_ENUM_SEVERITY].values[KR_SEVERITY_HIGH]);
    if (plain_details) {
        mb_key(&m, KR_FLD_DETAILS);
        mb_str(&m, "in clear");
    }
    mb_str(&m, "pd");
    mb_bin(&m, sealed, slen);
    return decode_hand(ev, &m, &g_key, d);
}

/* signup.applied with `email` sealed by hand (no encoder check on the way). */
static kr_err decode_applied(const char *email, struct kr_diag *d)
{
    const int ev = KR_EV_SIGNUP_APPLIED;
    char stream[KR_STREAM_MAX + 1];
    struct jrn_record r = hand_record(ev, NULL, 0, stream);
    uint8_t ad[256], sealed[512], mac[32] = {0};
    struct mb in, m;
    mb_init(&in);
    msgpack_pack_map(&in.pk, 1);
    mb_key(&in, KR_FLD_EMAIL);
    mb_str(&in, email);
    size_t adlen = pd_ad(ad, r.tenant, r.stream, r.stream_len, kr_events[ev].name), slen;
    assert_int_equal(
        kr_seal(&g_key, NULL, ad, adlen, in.sb.data, in.sb.size, sealed, sizeof sealed, &slen),
        KR_OK);
    mb_fini(&in);
    mb_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mb_key(&m, KR_FLD_APPLICATION);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_EMAIL_MAC);
    mb_bin(&m, mac, 32);
    mb_str(&m, "pd");
    mb_bin(&m, sealed, slen);
    return decode_hand(ev, &m, &g_key, d);
}

/* Addresses stored before the addr-spec rule (one '@', printable) still
 * decode, so old records stay readable; new ones are held to the rule. */
static void test_stored_email_legacy(void **state)
{
    (void)state;
    struct kr_diag d;
    assert_int_equal(decode_applied("taro@example.jp", &d), KR_OK);
    assert_int_equal(decode_applied("Taro<taro@example.jp>", &d), KR_OK);
    assert_int_equal(decode_applied("a,b@c", &d), KR_OK);
    assert_int_equal(decode_applied("a b@c.jp", &d), KR_ECORRUPT);
    assert_int_equal(decode_applied("ab", &d), KR_ECORRUPT);
    assert_int_equal(decode_applied("a@b@c", &d), KR_ECORRUPT);
}

static void test_hand_built_sealed(void **state)
{
    (void)state;
    struct mb in;
    struct kr_diag d;

    /* Sealed by hand as payload.h says: opens. */
    mb_init(&in);
    msgpack_pack_map(&in.pk, 1);
    mb_key(&in, KR_FLD_DETAILS);
    mb_str(&in, "saw a phishing mail");
    assert_int_equal(decode_sealed(&in, false, &d), KR_OK);

    /* A personal field in clear, even next to a valid "pd". */
    mb_init(&in);
    msgpack_pack_map(&in.pk, 1);
    mb_key(&in, KR_FLD_DETAILS);
    mb_str(&in, "saw a phishing mail");
    assert_int_equal(decode_sealed(&in, true, &d), KR_ECORRUPT);
    assert_string_equal(d.field, FN(KR_FLD_DETAILS));

    /* A plain field inside "pd". */
    mb_init(&in);
    msgpack_pack_map(&in.pk, 2);
    mb_key(&in, KR_FLD_SEVERITY);
    mb_str(&in, kr_enums[KR_ENUM_SEVERITY].values[0]);
    mb_key(&in, KR_FLD_DETAILS);
    mb_str(&in, "x");
    assert_int_equal(decode_sealed(&in, false, &d), KR_ECORRUPT);

    /* Repeated, unknown, wrongly typed, invalid, trailing bytes, not a map. */
    mb_init(&in);
    msgpack_pack_map(&in.pk, 2);
    mb_key(&in, KR_FLD_DETAILS);
    mb_str(&in, "x");
    mb_key(&in, KR_FLD_DETAILS);
    mb_str(&in, "y");
    assert_int_equal(decode_sealed(&in, false, &d), KR_ECORRUPT);
    mb_init(&in);
    msgpack_pack_map(&in.pk, 2);
    mb_key(&in, KR_FLD_DETAILS);
    mb_str(&in, "x");
    mb_str(&in, "zzz");
    mb_str(&in, "y");
    assert_int_equal(decode_sealed(&in, false, &d), KR_ECORRUPT);
    mb_init(&in);
    msgpack_pack_map(&in.pk, 1);
    mb_key(&in, KR_FLD_DETAILS);
    msgpack_pack_uint64(&in.pk, 5);
    assert_int_equal(decode_sealed(&in, false, &d), KR_ECORRUPT);
    assert_string_equal(d.field, FN(KR_FLD_DETAILS));
    mb_init(&in);
    msgpack_pack_map(&in.pk, 1);
    mb_key(&in, KR_FLD_DETAILS);
    mb_strn(&in, "a\0b", 3);
    assert_int_equal(decode_sealed(&in, false, &d), KR_ECORRUPT);
    assert_string_equal(d.field, FN(KR_FLD_DETAILS));
    mb_init(&in);
    msgpack_pack_map(&in.pk, 1);
    mb_key(&in, KR_FLD_DETAILS);
    mb_str(&in, "x");
    msgpack_pack_nil(&in.pk);
    assert_int_equal(decode_sealed(&in, false, &d), KR_ECORRUPT);
    assert_string_equal(d.field, "pd");
    mb_init(&in);
    msgpack_pack_array(&in.pk, 1);
    mb_str(&in, "x");
    assert_int_equal(decode_sealed(&in, false, &d), KR_ECORRUPT);
    /* The required personal field missing from "pd" (which is then empty:
     * refused as such, or as a missing field). */
    mb_init(&in);
    msgpack_pack_map(&in.pk, 0);
    assert_int_equal(decode_sealed(&in, false, &d), KR_ECORRUPT);
}

/* A "pd" that seals an empty map is a second byte form of the payload that
 * has no "pd" at all (contact.attribute_set with its optional value absent):
 * refused, so that one payload has one byte form. */
static void test_pd_empty_map(void **state)
{
    (void)state;
    const int ev = KR_EV_CONTACT_ATTRIBUTE_SET;
    char stream[KR_STREAM_MAX + 1];
    struct kr_diag d;
    struct jrn_record r = hand_record(ev, NULL, 0, stream);
    uint8_t ad[256], sealed[64];
    const uint8_t empty_map = 0x80;
    size_t adlen = pd_ad(ad, r.tenant, r.stream, r.stream_len, kr_events[ev].name), slen;
    assert_int_equal(kr_seal(&g_key, NULL, ad, adlen, &empty_map, 1, sealed, sizeof sealed, &slen),
                     KR_OK);
    for (int with_pd = 0; with_pd < 2; with_pd++) {
        struct mb m;
        mb_init(&m);
        msgpack_pack_map(&m.pk, with_pd ? 3 : 2);
        mb_key(&m, KR_FLD_CONTACT);
        mb_bin(&m, ID_A, 16);
        mb_key(&m, KR_FLD_ATTRIBUTE);
        mb_bin(&m, ID_B, 16);
        if (with_pd) {
            mb_str(&m, "pd");
            mb_bin(&m, sealed, slen);
        }
        kr_err err = decode_hand(ev, &m, &g_key, &d);
        assert_int_equal(err, with_pd ? KR_ECORRUPT : KR_OK);
        if (with_pd)
            assert_string_equal(d.field, "pd");
    }
}

/* "pd" must be bin, last, and at least a nonce and a tag long. */
static void test_pd_shape(void **state)
{
    (void)state;
    struct mb m;
    struct kr_diag d;
    const int ev = KR_EV_INCIDENT_REPORTED;
    /* Not last. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mb_key(&m, KR_FLD_REPORT);
    mb_bin(&m, ID_A, 16);
    mb_str(&m, "pd");
    mb_bin(&m, g_store[0], 64);
    mb_key(&m, KR_FLD_SEVERITY);
    mb_str(&m, kr_enums[KR_ENUM_SEVERITY].values[0]);
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    assert_string_equal(d.field, "pd");
    /* Not bin. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mb_key(&m, KR_FLD_REPORT);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_SEVERITY);
    mb_str(&m, kr_enums[KR_ENUM_SEVERITY].values[0]);
    mb_str(&m, "pd");
    mb_str(&m, "sealed");
    assert_int_equal(decode_hand(ev, &m, NULL, &d), KR_ECORRUPT);
    assert_string_equal(d.field, "pd");
    /* Shorter than nonce + tag, with the key; and garbage of the right size. */
    for (size_t n = 0; n <= KR_SEAL_OVERHEAD + 8; n += 8) {
        mb_init(&m);
        msgpack_pack_map(&m.pk, 3);
        mb_key(&m, KR_FLD_REPORT);
        mb_bin(&m, ID_A, 16);
        mb_key(&m, KR_FLD_SEVERITY);
        mb_str(&m, kr_enums[KR_ENUM_SEVERITY].values[0]);
        mb_str(&m, "pd");
        mb_bin(&m, g_store[0], n);
        assert_int_equal(decode_hand(ev, &m, &g_key, &d), KR_ECORRUPT);
        assert_string_equal(d.field, "pd");
    }
}

/* ---- Encode rejections ---- */

static kr_err encode_err(const struct kr_payload *p, struct kr_diag *d)
{
    struct enc e = {.buf = g_buf};
    char stream[KR_STREAM_MAX + 1];
    size_t sl = 0;
    if (kr_event_stream(p, stream, sizeof stream, &sl) != KR_OK) {
        memcpy(stream, "x", 2);
        sl = 1;
    }
    struct kr_pd_ctx pd = {
        .key = &g_key, .tenant = event_tenant(p->ev), .stream = stream, .stream_len = sl};
    memset(d, 0, sizeof *d);
    return kr_event_encode(p, &pd, e.buf, KR_PAYLOAD_MAX, &e.len, d);
}

static void expect_encode(const struct kr_payload *p, kr_err want, const char *field)
{
    struct kr_diag d;
    kr_err err = encode_err(p, &d);
    if (err != want)
        fail_msg("%s: encode gave %s, want %s (%s: %s)", kr_events[p->ev].name, kr_strerror(err),
                 kr_strerror(want), d.field, d.why);
    if (field && strcmp(d.field, field) != 0)
        fail_msg("%s: diag field '%s', want '%s'", kr_events[p->ev].name, d.field, field);
    if (want != KR_OK)
        assert_true(d.why[0] != '\0');
}

static void test_encode_missing_and_foreign(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    for (int ev = 0; ev < KR_EV__COUNT; ev++) {
        const struct kr_event_def *e = &kr_events[ev];
        for (uint32_t i = 0; i < e->nfields; i++) {
            int fld = e->fields[i].field;
            build(p, ev, 2, fld);
            if (e->fields[i].optional)
                expect_encode(p, KR_OK, NULL);
            else
                expect_encode(p, KR_EINVAL, FN(fld));
        }
        /* A field of no concern to this event, of a valid value. */
        for (int f = 0; f < KR_FLD__COUNT; f++) {
            if (event_has(ev, f))
                continue;
            build(p, ev, 2, -1);
            gen_value(p, f, 2);
            expect_encode(p, KR_EINVAL, FN(f));
        }
    }
    kr_payload_free(p);
}

/* For every str, email and bin field of every event: one byte too long is
 * KR_ETOOLARGE, one too short KR_EINVAL; the limits themselves pass. */
static void test_encode_lengths(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    static uint8_t big[STORE_MAX + 8];
    for (int ev = 0; ev < KR_EV__COUNT; ev++) {
        const struct kr_event_def *e = &kr_events[ev];
        for (uint32_t i = 0; i < e->nfields; i++) {
            int fld = e->fields[i].field;
            const struct kr_field_def *f = &kr_fields[fld];
            if (f->type != KR_FT_STR && f->type != KR_FT_EMAIL && f->type != KR_FT_BIN)
                continue;
            enum kr_charset cs = f->type == KR_FT_EMAIL ? KR_CS_CODE : f->charset;
            size_t lens[2] = {(size_t)f->max + 1, (size_t)f->max};
            for (int k = 0; k < 2; k++) {
                build(p, ev, 2, -1);
                if (f->type == KR_FT_EMAIL)
                    fill_email(big, lens[k], 0);
                else
                    fill_str(cs, big, lens[k], 0);
                kr_set_bytes(p, fld, big, lens[k]);
                expect_encode(p, k == 0 ? KR_ETOOLARGE : KR_OK, k == 0 ? f->name : NULL);
            }
            if (f->min > 0) {
                build(p, ev, 2, -1);
                fill_str(cs, big, (size_t)f->min - 1, 0);
                kr_set_bytes(p, fld, big, (size_t)f->min - 1);
                expect_encode(p, KR_EINVAL, f->name);
            }
        }
    }
    kr_payload_free(p);
}

/* Sets one field of a valid payload of ev and expects the encode outcome. */
static void try_field(struct kr_payload *p, int ev, int fld, const void *s, size_t n, kr_err want)
{
    build(p, ev, 2, -1);
    kr_set_bytes(p, fld, s, n);
    expect_encode(p, want, want == KR_OK ? NULL : FN(fld));
}

#define TRY_STR(p, ev, fld, lit, want) try_field(p, ev, fld, lit, sizeof lit - 1, want)

static void test_encode_charsets(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    const int tp = KR_EV_TENANT_PROVISIONED, ad = KR_EV_ATTRIBUTE_DEFINED;
    const int cr = KR_EV_CONTACT_REGISTERED, tc = KR_EV_TAG_CREATED;
    TRY_STR(p, tp, KR_FLD_TENANT_CODE, "acme-01", KR_OK);
    TRY_STR(p, tp, KR_FLD_TENANT_CODE, "Acme-01", KR_EINVAL);
    TRY_STR(p, tp, KR_FLD_TENANT_CODE, "-acme", KR_EINVAL);
    TRY_STR(p, tp, KR_FLD_TENANT_CODE, "acme-", KR_EINVAL);
    TRY_STR(p, tp, KR_FLD_TENANT_CODE, "ac me", KR_EINVAL);
    TRY_STR(p, tp, KR_FLD_TENANT_CODE, "acm\xC3\xA9", KR_EINVAL);
    TRY_STR(p, ad, KR_FLD_ATTRIBUTE_KEY, "birth_day2", KR_OK);
    TRY_STR(p, ad, KR_FLD_ATTRIBUTE_KEY, "2birthday", KR_EINVAL);
    TRY_STR(p, ad, KR_FLD_ATTRIBUTE_KEY, "_birthday", KR_EINVAL);
    TRY_STR(p, ad, KR_FLD_ATTRIBUTE_KEY, "birthDay", KR_EINVAL);
    TRY_STR(p, ad, KR_FLD_ATTRIBUTE_KEY, "birth.day", KR_EINVAL);
    TRY_STR(p, cr, KR_FLD_PHONE, "+81 90-1234-5678", KR_OK);
    TRY_STR(p, cr, KR_FLD_PHONE, "090-abcd", KR_EINVAL);
    TRY_STR(p, cr, KR_FLD_PHONE, "090\n1234", KR_EINVAL);
    TRY_STR(p, cr, KR_FLD_LINE_USER_ID, "U1234abcd", KR_OK);
    TRY_STR(p, cr, KR_FLD_LINE_USER_ID, "U1234 abcd", KR_EINVAL);
    TRY_STR(p, KR_EV_OUTBOX_QUEUED, KR_FLD_AUTH_CODE, "123456", KR_OK);
    TRY_STR(p, KR_EV_OUTBOX_QUEUED, KR_FLD_AUTH_CODE, "12345a", KR_EINVAL);
    TRY_STR(p, KR_EV_SIGNUP_PAYMENT_CONFIRMED, KR_FLD_PAYMENT_REF, "pi_3Nx", KR_OK);
    TRY_STR(p, KR_EV_SIGNUP_PAYMENT_CONFIRMED, KR_FLD_PAYMENT_REF, "pi 3Nx", KR_EINVAL);
    TRY_STR(p, KR_EV_SIGNUP_PAYMENT_CONFIRMED, KR_FLD_PAYMENT_REF, "pi\x7f", KR_EINVAL);

    /* E-mail addresses. */
    TRY_STR(p, cr, KR_FLD_EMAIL, "a@b", KR_OK);
    TRY_STR(p, cr, KR_FLD_EMAIL, "taro.yamada+x@example.co.jp", KR_OK);
    TRY_STR(p, cr, KR_FLD_EMAIL, "taro.example.jp", KR_EINVAL);
    TRY_STR(p, cr, KR_FLD_EMAIL, "a@b@c", KR_EINVAL);
    TRY_STR(p, cr, KR_FLD_EMAIL, "@example.jp", KR_EINVAL);
    TRY_STR(p, cr, KR_FLD_EMAIL, "taro@", KR_EINVAL);
    TRY_STR(p, cr, KR_FLD_EMAIL, "ta ro@example.jp", KR_EINVAL);
    TRY_STR(p, cr, KR_FLD_EMAIL, "t\xC3\xA4@example.jp", KR_EINVAL);
    TRY_STR(p, cr, KR_FLD_EMAIL, "ab", KR_EINVAL);
    /* One RFC 5322 addr-spec only (dot-atom @ labels), so an address can never
     * become several recipients, a display name or a header line in To:. */
    static const char *const good_email[] = {
        "taro+tag@example.jp",
        "taro+a+b@mail.sub.example.co.jp",
        "t.a.r.o@example.jp",
        "o'brien@example.com",
        "a!#$%&*+/=?^_`{|}~-z@example.jp",
        "x@a-b.c-d.example",
        "X@EXAMPLE.JP",
        "1@2.3",
    };
    for (size_t i = 0; i < COUNT(good_email); i++)
        try_field(p, cr, KR_FLD_EMAIL, good_email[i], strlen(good_email[i]), KR_OK);
    static const char *const bad_email[] = {
        "a@b.jp, c@d.jp",                  /* two recipients */
        "a@b.jp,c@d.jp",  "Taro <a@b.jp>", /* a display name */
        "<a@b.jp>",       "a<b@c.jp",
        "a>b@c.jp",       "a,b@c.jp",
        "\"a b\"@c.jp", /* quoted local part */
        "\"a\"@c.jp",     "a\"@c.jp",
        "a;b@c.jp",       "a:b@c.jp",
        "a(b)@c.jp", /* a comment */
        "a@c.jp(x)",      "a[b]@c.jp",
        "a@[192.0.2.1]", /* address literal */
        "a\\b@c.jp",      "a b@c.jp",
        "a\tb@c.jp",      "a@c.jp\r\nBcc: x@y.jp", /* header injection */
        "a@c.jp\n",       "a\r@c.jp",
        ".a@c.jp", /* dots in the local part */
        "a.@c.jp",        "a..b@c.jp",
        "a@.c.jp", /* empty labels */
        "a@c..jp",        "a@c.jp.",
        "a@-c.jp", /* a label starting or ending with '-' */
        "a@c-.jp",        "a@c_d.jp",
        "a@c.j;p",        "a@c,d.jp",
        "a@c.jp>",
    };
    for (size_t i = 0; i < COUNT(bad_email); i++)
        try_field(p, cr, KR_FLD_EMAIL, bad_email[i], strlen(bad_email[i]), KR_EINVAL);
    {
        /* Local part over 64, a label over 63 bytes. */
        char e[200];
        memset(e, 'a', 65);
        memcpy(e + 65, "@c.jp", 6);
        try_field(p, cr, KR_FLD_EMAIL, e, strlen(e), KR_EINVAL);
        memcpy(e + 64, "@c.jp", 6);
        try_field(p, cr, KR_FLD_EMAIL, e, strlen(e), KR_OK);
        memcpy(e, "a@", 2);
        memset(e + 2, 'b', 64);
        memcpy(e + 66, ".jp", 4);
        try_field(p, cr, KR_FLD_EMAIL, e, strlen(e), KR_EINVAL);
        memcpy(e + 65, ".jp", 4);
        try_field(p, cr, KR_FLD_EMAIL, e, strlen(e), KR_OK);
    }

    /* UTF-8 text: plain (tag_name) and personal (name) fields alike. */
    static const struct {
        const char *s;
        size_t n;
        kr_err want;
    } utf8[] = {
        {"\xE3\x81\x82\xE3\x81\x84", 6, KR_OK}, /* あい */
        {"\xF0\x9F\x98\x80", 4, KR_OK},         /* U+1F600 */
        {"\xF4\x8F\xBF\xBF", 4, KR_OK},         /* U+10FFFF */
        {"\xC2\x80", 2, KR_OK},                 /* U+0080 */
        {"a\tb\nc", 5, KR_OK},
        {"\xC0\x80", 2, KR_EINVAL},         /* overlong NUL */
        {"\xC1\xBF", 2, KR_EINVAL},         /* overlong 2-byte */
        {"\xE0\x80\xAF", 3, KR_EINVAL},     /* overlong '/' */
        {"\xE0\x9F\xBF", 3, KR_EINVAL},     /* overlong U+07FF */
        {"\xF0\x80\x80\xAF", 4, KR_EINVAL}, /* overlong 4-byte */
        {"\xF0\x8F\xBF\xBF", 4, KR_EINVAL}, /* overlong U+FFFF */
        {"\xED\xA0\x80", 3, KR_EINVAL},     /* surrogate U+D800 */
        {"\xED\xBF\xBF", 3, KR_EINVAL},     /* surrogate U+DFFF */
        {"\xF4\x90\x80\x80", 4, KR_EINVAL}, /* U+110000 */
        {"\xF8\x88\x80\x80\x80", 5, KR_EINVAL},
        {"\xFF", 1, KR_EINVAL},
        {"\xE3\x81", 2, KR_EINVAL},     /* truncated */
        {"a\xE3", 2, KR_EINVAL},        /* truncated at the end */
        {"\xE3\x41\x82", 3, KR_EINVAL}, /* bad continuation */
        {"\x80", 1, KR_EINVAL},         /* lone continuation */
        {"a\0b", 3, KR_EINVAL},         /* embedded NUL */
        {"a\x01", 2, KR_EINVAL},        /* C0 control */
        {"\x1b[31m", 5, KR_EINVAL},     /* escape */
        {"a\x7f", 2, KR_EINVAL},        /* DEL */
    };
    for (size_t i = 0; i < COUNT(utf8); i++) {
        try_field(p, tc, KR_FLD_TAG_NAME, utf8[i].s, utf8[i].n, utf8[i].want);
        try_field(p, cr, KR_FLD_NAME, utf8[i].s, utf8[i].n, utf8[i].want);
        try_field(p, cr, KR_FLD_NOTE, utf8[i].s, utf8[i].n, utf8[i].want);
    }
    /* A value string is checked the same way. */
    build(p, KR_EV_CONTACT_ATTRIBUTE_SET, 2, -1);
    kr_set_value_str(p, KR_FLD_VALUE, "\xED\xA0\x80", 3);
    expect_encode(p, KR_EINVAL, FN(KR_FLD_VALUE));
    kr_set_value_str(p, KR_FLD_VALUE, "a\0", 2);
    expect_encode(p, KR_EINVAL, FN(KR_FLD_VALUE));
    kr_payload_free(p);
}

static void test_encode_numbers_and_lists(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    const int in = KR_EV_INCIDENT_NOTIFIED, io = KR_EV_INCIDENT_OPENED;

    /* Enum index out of range; enum list with a bit beyond the enum. */
    build(p, KR_EV_ACCOUNT_CREATED, 2, -1);
    kr_set_u64(p, KR_FLD_ROLE, KR_ROLE__COUNT);
    expect_encode(p, KR_EINVAL, FN(KR_FLD_ROLE));
    kr_set_u64(p, KR_FLD_ROLE, UINT64_MAX);
    expect_encode(p, KR_EINVAL, FN(KR_FLD_ROLE));
    kr_set_u64(p, KR_FLD_ROLE, KR_ROLE__COUNT - 1);
    expect_encode(p, KR_OK, NULL);
    kr_set_u64(p, KR_FLD_PERMISSIONS, 1ull << KR_PERMISSION__COUNT);
    expect_encode(p, KR_EINVAL, FN(KR_FLD_PERMISSIONS));
    kr_set_u64(p, KR_FLD_PERMISSIONS, (1ull << KR_PERMISSION__COUNT) - 1);
    expect_encode(p, KR_OK, NULL);

    /* Tenant ids: 1..2^63-1. */
    const uint64_t tenants[] = {0, 1ull << 63, UINT64_MAX, 1, INT64_MAX};
    for (size_t i = 0; i < COUNT(tenants); i++) {
        build(p, in, 2, -1);
        kr_set_u64(p, KR_FLD_TENANT, tenants[i]);
        expect_encode(p, i < 3 ? KR_EINVAL : KR_OK, i < 3 ? FN(KR_FLD_TENANT) : NULL);
    }

    /* Tenant lists: increasing, no repeats, each a tenant id, at most max_items. */
    static const struct {
        uint64_t t[3];
        size_t n;
        kr_err want;
    } lists[] = {
        {{1, 2, 3}, 3, KR_OK},     {{5, 5}, 2, KR_EINVAL}, {{5, 3}, 2, KR_EINVAL},
        {{1, 3, 2}, 3, KR_EINVAL}, {{0, 3}, 2, KR_EINVAL}, {{3, 1ull << 63}, 2, KR_EINVAL},
    };
    for (size_t i = 0; i < COUNT(lists); i++) {
        build(p, io, 2, -1);
        kr_set_tenants(p, KR_FLD_TENANTS, lists[i].t, lists[i].n);
        expect_encode(p, lists[i].want, lists[i].want ? FN(KR_FLD_TENANTS) : NULL);
    }
    uint32_t max = kr_fields[KR_FLD_TENANTS].max_items;
    static uint64_t many[1024];
    assert_true(max + 1 <= COUNT(many));
    for (uint32_t i = 0; i <= max; i++)
        many[i] = i + 1;
    build(p, io, 2, -1);
    kr_set_tenants(p, KR_FLD_TENANTS, many, max + 1);
    expect_encode(p, KR_ETOOLARGE, FN(KR_FLD_TENANTS));
    kr_set_tenants(p, KR_FLD_TENANTS, many, max);
    expect_encode(p, KR_OK, NULL);

    /* u64 within [min, max]. */
    uint64_t tmax = kr_fields[KR_FLD_TRIES_LEFT].max;
    build(p, KR_EV_SIGNUP_CODE_FAILED, 2, -1);
    kr_set_u64(p, KR_FLD_TRIES_LEFT, tmax + 1);
    expect_encode(p, KR_EINVAL, FN(KR_FLD_TRIES_LEFT));
    kr_set_u64(p, KR_FLD_TRIES_LEFT, tmax);
    expect_encode(p, KR_OK, NULL);

    /* Ids and hashes of the wrong length. */
    build(p, KR_EV_TAG_DELETED, 2, -1);
    kr_set_bytes(p, KR_FLD_TAG, ID_A, 15);
    expect_encode(p, KR_EINVAL, FN(KR_FLD_TAG));
    build(p, KR_EV_SESSION_OPENED, 2, -1);
    kr_set_bytes(p, KR_FLD_TOKEN_HASH, g_store[0], 31);
    expect_encode(p, KR_EINVAL, FN(KR_FLD_TOKEN_HASH));
    kr_set_bytes(p, KR_FLD_TOKEN_HASH, g_store[0], 33);
    expect_encode(p, KR_EINVAL, FN(KR_FLD_TOKEN_HASH));

    /* Attribute values: no NaN or infinity; over-long strings. */
    const double bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < COUNT(bad); i++) {
        build(p, KR_EV_CONTACT_ATTRIBUTE_SET, 2, -1);
        kr_set_value_float(p, KR_FLD_VALUE, bad[i]);
        expect_encode(p, KR_EINVAL, FN(KR_FLD_VALUE));
    }
    kr_set_value_float(p, KR_FLD_VALUE, -0.0);
    expect_encode(p, KR_OK, NULL);
    size_t vmax = (size_t)kr_fields[KR_FLD_VALUE].max;
    memset(g_store[KR_FLD_VALUE], 'v', vmax + 1);
    kr_set_value_str(p, KR_FLD_VALUE, g_store[KR_FLD_VALUE], vmax + 1);
    expect_encode(p, KR_ETOOLARGE, FN(KR_FLD_VALUE));
    kr_set_value_str(p, KR_FLD_VALUE, g_store[KR_FLD_VALUE], vmax);
    expect_encode(p, KR_OK, NULL);
    kr_payload_free(p);
}

static void test_encode_personal_needs_key(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    struct kr_diag d;
    size_t len;
    for (int ev = 0; ev < KR_EV__COUNT; ev++) {
        build(p, ev, 1, -1);
        bool pd = has_pd(p);
        struct kr_pd_ctx nokey = {.tenant = TENANT, .stream = "x", .stream_len = 1};
        for (int k = 0; k < 2; k++) {
            memset(&d, 0, sizeof d);
            kr_err err = kr_event_encode(p, k ? &nokey : NULL, g_buf, KR_PAYLOAD_MAX, &len, &d);
            assert_int_equal(err, pd ? KR_EINVAL : KR_OK);
            if (pd)
                assert_string_equal(d.field, "pd");
        }
    }
    /* Output that does not fit: KR_ETOOLARGE, nothing past cap. */
    build(p, KR_EV_CONTACT_REGISTERED, 1, -1);
    struct enc e = {.buf = g_buf};
    encode_ok(p, &e);
    char stream[KR_STREAM_MAX + 1];
    size_t sl;
    assert_int_equal(kr_event_stream(p, stream, sizeof stream, &sl), KR_OK);
    struct kr_pd_ctx pdc = {.key = &g_key, .tenant = TENANT, .stream = stream, .stream_len = sl};
    static uint8_t small[KR_PAYLOAD_MAX + 1];
    size_t caps[] = {0, 1, 20, e.len / 2, e.len - 1};
    for (size_t i = 0; i < COUNT(caps); i++) {
        memset(small, 0xee, sizeof small);
        memset(&d, 0, sizeof d);
        assert_int_equal(kr_event_encode(p, &pdc, small, caps[i], &len, &d), KR_ETOOLARGE);
        for (size_t j = caps[i]; j < e.len + 1; j++)
            assert_int_equal(small[j], 0xee);
    }
    assert_int_equal(kr_event_encode(p, &pdc, small, e.len, &len, &d), KR_OK);
    assert_int_equal(len, e.len);
    kr_payload_free(p);
}

/* A stream longer than KR_STREAM_MAX can be no record's stream: encode
 * refuses it (KR_ETOOLARGE, as jrn_record_check_fields does) instead of
 * copying it into its fixed-size additional-data buffer, which a stream of
 * about 170 bytes or more overruns (and whose one-byte length wraps at 256). */
static void test_encode_refuses_long_stream(void **state)
{
    (void)state;
    static struct kr_payload sp; /* not on the heap: nothing leaks when this fails */
    struct kr_payload *p = &sp;
    kr_payload_reset(p, -1);
    struct kr_diag d;
    size_t len;
    char stream[KR_STREAM_MAX + 2];
    memset(stream, 's', sizeof stream);
    build(p, KR_EV_CONTACT_REGISTERED, 2, -1);
    struct kr_pd_ctx pdc = {
        .key = &g_key, .tenant = TENANT, .stream = stream, .stream_len = KR_STREAM_MAX + 1};
    assert_int_equal(kr_event_encode(p, &pdc, g_buf, KR_PAYLOAD_MAX, &len, &d), KR_ETOOLARGE);
    kr_payload_reset(p, -1);
}

/* ---- Op arguments ---- */

static kr_err args(int op, struct mb *m, struct kr_payload *p, struct kr_diag *d)
{
    struct kr_mp_reader r;
    kr_mp_reader_init(&r, m->sb.data, m->sb.size, false);
    memset(d, 0, sizeof *d);
    kr_err err = kr_args_decode(op, &r, p, d);
    assert_true(r.p >= (const uint8_t *)m->sb.data && r.p <= r.end);
    return err;
}

static void expect_args(int op, struct mb *m, struct kr_payload *p, kr_err want, const char *field)
{
    struct kr_diag d;
    kr_err err = args(op, m, p, &d);
    if (err != want)
        fail_msg("%s: args gave %s, want %s (%s: %s)", kr_ops[op].name, kr_strerror(err),
                 kr_strerror(want), d.field, d.why);
    if (field && strcmp(d.field, field) != 0)
        fail_msg("%s: diag field '%s', want '%s' (%s)", kr_ops[op].name, d.field, field, d.why);
    mb_fini(m);
}

/* contacts.register with its fields in the order `order` gives. */
static void register_args(struct mb *m, const int *order, size_t n)
{
    mb_init(m);
    msgpack_pack_map(&m->pk, n);
    for (size_t i = 0; i < n; i++) {
        mb_key(m, order[i]);
        switch (order[i]) {
        case KR_FLD_NAME:
            mb_str(m, "\xE5\xB1\xB1\xE7\x94\xB0"); /* 山田 */
            break;
        case KR_FLD_EMAIL:
            mb_str(m, "yamada@example.jp");
            break;
        case KR_FLD_PHONE:
            mb_str(m, "+81 90-1234-5678");
            break;
        default:
            mb_str(m, "x");
        }
    }
}

static void test_args_happy_any_order(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    struct kr_diag d;
    struct mb m;
    const int op = KR_OP_CONTACTS_REGISTER;
    int all[] = {KR_FLD_NAME,  KR_FLD_NAME_KANA,    KR_FLD_EMAIL,
                 KR_FLD_PHONE, KR_FLD_LINE_USER_ID, KR_FLD_NOTE};
    for (size_t rot = 0; rot < COUNT(all); rot++) {
        int order[COUNT(all)];
        for (size_t i = 0; i < COUNT(all); i++)
            order[i] = all[(i + rot) % COUNT(all)];
        for (int rev = 0; rev < 2; rev++) {
            if (rev)
                for (size_t i = 0; i < COUNT(all) / 2; i++) {
                    int t = order[i];
                    order[i] = order[COUNT(all) - 1 - i];
                    order[COUNT(all) - 1 - i] = t;
                }
            register_args(&m, order, COUNT(order));
            assert_int_equal(args(op, &m, p, &d), KR_OK);
            assert_int_equal(p->ev, -1);
            assert_int_equal(p->v[KR_FLD_NAME].n, 6);
            assert_memory_equal(p->v[KR_FLD_NAME].p, "\xE5\xB1\xB1\xE7\x94\xB0", 6);
            assert_int_equal(p->v[KR_FLD_EMAIL].n, 17);
            assert_memory_equal(p->v[KR_FLD_PHONE].p, "+81 90-1234-5678", 16);
            assert_true(p->v[KR_FLD_NOTE].set && p->v[KR_FLD_NAME_KANA].set);
            mb_fini(&m); /* values borrow from the message */
        }
    }
    /* Only the required one. */
    int name_only[] = {KR_FLD_NAME};
    register_args(&m, name_only, 1);
    assert_int_equal(args(op, &m, p, &d), KR_OK);
    mb_fini(&m);
    assert_false(p->v[KR_FLD_EMAIL].set);
    /* Missing the required one. */
    int no_name[] = {KR_FLD_EMAIL, KR_FLD_NOTE};
    register_args(&m, no_name, 2);
    expect_args(op, &m, p, KR_EINVAL, FN(KR_FLD_NAME));
    mb_init(&m);
    msgpack_pack_map(&m.pk, 0);
    expect_args(op, &m, p, KR_EINVAL, FN(KR_FLD_NAME));
    /* Repeated key. */
    int twice[] = {KR_FLD_NAME, KR_FLD_EMAIL, KR_FLD_NAME};
    register_args(&m, twice, 3);
    expect_args(op, &m, p, KR_EINVAL, FN(KR_FLD_NAME));
    /* A field this op does not take; an unknown key; an unprintable one. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_NAME);
    mb_str(&m, "x");
    mb_key(&m, KR_FLD_TENANT);
    msgpack_pack_uint64(&m.pk, 1);
    expect_args(op, &m, p, KR_EINVAL, FN(KR_FLD_TENANT));
    mb_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mb_key(&m, KR_FLD_NAME);
    mb_str(&m, "x");
    mb_str(&m, "bogus");
    mb_str(&m, "x");
    expect_args(op, &m, p, KR_EINVAL, "bogus");
    mb_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mb_strn(&m, "na\0me\n\xff", 7);
    mb_str(&m, "x");
    expect_args(op, &m, p, KR_EINVAL, "na?me??");
    char longkey[100];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    mb_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mb_str(&m, longkey);
    mb_str(&m, "x");
    longkey[sizeof(struct kr_diag){0}.field - 1] = '\0'; /* the diag keeps what fits */
    expect_args(op, &m, p, KR_EINVAL, longkey);
    /* A key that is not a string. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, 1);
    msgpack_pack_uint64(&m.pk, 1);
    mb_str(&m, "x");
    expect_args(op, &m, p, KR_EINVAL, "args");
    /* More keys than the op has arguments. */
    mb_init(&m);
    msgpack_pack_map(&m.pk, kr_ops[op].nargs + 1);
    for (uint32_t i = 0; i <= kr_ops[op].nargs; i++) {
        mb_key(&m, KR_FLD_NAME);
        mb_str(&m, "x");
    }
    expect_args(op, &m, p, KR_EINVAL, "args");
    kr_payload_free(p);
}

static void test_args_wrong_types(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    struct mb m;
    const int op = KR_OP_CONTACTS_REGISTER;
    /* name: int, bin, nil, bool, array, map, float instead of str. */
    for (int k = 0; k < 7; k++) {
        mb_init(&m);
        msgpack_pack_map(&m.pk, 1);
        mb_key(&m, KR_FLD_NAME);
        switch (k) {
        case 0:
            msgpack_pack_int64(&m.pk, 5);
            break;
        case 1:
            mb_bin(&m, "x", 1);
            break;
        case 2:
            msgpack_pack_nil(&m.pk);
            break;
        case 3:
            msgpack_pack_true(&m.pk);
            break;
        case 4:
            msgpack_pack_array(&m.pk, 1);
            mb_str(&m, "x");
            break;
        case 5:
            msgpack_pack_map(&m.pk, 0);
            break;
        default:
            msgpack_pack_double(&m.pk, 1.0);
        }
        expect_args(op, &m, p, KR_EINVAL, FN(KR_FLD_NAME));
    }
    /* Strings: too long, too short, NUL, overlong UTF-8. */
    static char longname[202];
    memset(longname, 'n', 201);
    longname[201] = '\0';
    const char *bad[] = {longname, "", "\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80"};
    for (size_t i = 0; i < COUNT(bad); i++) {
        mb_init(&m);
        msgpack_pack_map(&m.pk, 1);
        mb_key(&m, KR_FLD_NAME);
        mb_str(&m, bad[i]);
        expect_args(op, &m, p, i == 0 ? KR_ETOOLARGE : KR_EINVAL, FN(KR_FLD_NAME));
    }
    mb_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mb_key(&m, KR_FLD_NAME);
    mb_strn(&m, "ab\0cd", 5);
    expect_args(op, &m, p, KR_EINVAL, FN(KR_FLD_NAME));
    longname[200] = '\0';
    mb_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mb_key(&m, KR_FLD_NAME);
    mb_str(&m, longname);
    expect_args(op, &m, p, KR_OK, NULL);
    kr_payload_free(p);
}

/* users.grant {account, permissions, version}. */
static void grant(struct mb *m, int which, int variant)
{
    mb_init(m);
    msgpack_pack_map(&m->pk, 3);
    const struct kr_enum_def *perm = &kr_enums[KR_ENUM_PERMISSION];
    mb_key(m, KR_FLD_VERSION);
    if (which == 0 && variant == 1)
        msgpack_pack_int64(&m->pk, -1);
    else if (which == 0 && variant == 2)
        mb_str(m, "7");
    else if (which == 0 && variant == 3)
        msgpack_pack_false(&m->pk);
    else if (which == 0 && variant == 4)
        msgpack_pack_double(&m->pk, 7.0);
    else if (which == 0 && variant == 5)
        msgpack_pack_uint64(&m->pk, UINT64_MAX);
    else
        msgpack_pack_uint64(&m->pk, 7);
    mb_key(m, KR_FLD_ACCOUNT);
    if (which == 1 && variant == 1)
        mb_strn(m, ID_A, 16);
    else if (which == 1 && variant == 2)
        mb_bin(m, ID_A, 15);
    else if (which == 1 && variant == 3)
        msgpack_pack_nil(&m->pk);
    else
        mb_bin(m, ID_A, 16);
    mb_key(m, KR_FLD_PERMISSIONS);
    if (which == 2 && variant == 1) { /* repeated item */
        msgpack_pack_array(&m->pk, 2);
        mb_str(m, perm->values[1]);
        mb_str(m, perm->values[1]);
    } else if (which == 2 && variant == 2) { /* unknown value */
        msgpack_pack_array(&m->pk, 1);
        mb_str(m, "contacts.READ");
    } else if (which == 2 && variant == 3) { /* a str, not a list */
        mb_str(m, perm->values[0]);
    } else if (which == 2 && variant == 4) { /* too many */
        msgpack_pack_array(&m->pk, perm->count + 1);
        for (uint32_t i = 0; i <= perm->count; i++)
            mb_str(m, perm->values[i % perm->count]);
    } else if (which == 2 && variant == 5) { /* items not strings */
        msgpack_pack_array(&m->pk, 1);
        msgpack_pack_uint64(&m->pk, 0);
    } else { /* reverse order: order is free in arguments */
        msgpack_pack_array(&m->pk, 2);
        mb_str(m, perm->values[perm->count - 1]);
        mb_str(m, perm->values[0]);
    }
}

static void test_args_users_grant(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    struct kr_diag d;
    struct mb m;
    const int op = KR_OP_USERS_GRANT;
    grant(&m, -1, 0);
    assert_int_equal(args(op, &m, p, &d), KR_OK);
    assert_true(p->v[KR_FLD_VERSION].u == 7);
    assert_true(p->v[KR_FLD_PERMISSIONS].u == (1ull | 1ull << (KR_PERMISSION__COUNT - 1)));
    assert_int_equal(p->v[KR_FLD_ACCOUNT].n, 16);
    assert_memory_equal(p->v[KR_FLD_ACCOUNT].p, ID_A, 16);
    mb_fini(&m);
    grant(&m, 0, 5); /* version has no upper bound */
    assert_int_equal(args(op, &m, p, &d), KR_OK);
    mb_fini(&m);
    assert_true(p->v[KR_FLD_VERSION].u == UINT64_MAX);
    for (int v = 1; v <= 4; v++) {
        grant(&m, 0, v);
        expect_args(op, &m, p, KR_EINVAL, FN(KR_FLD_VERSION));
    }
    for (int v = 1; v <= 3; v++) {
        grant(&m, 1, v);
        expect_args(op, &m, p, KR_EINVAL, FN(KR_FLD_ACCOUNT));
    }
    for (int v = 1; v <= 5; v++) {
        grant(&m, 2, v);
        expect_args(op, &m, p, v == 4 ? KR_ETOOLARGE : KR_EINVAL, FN(KR_FLD_PERMISSIONS));
    }
    kr_payload_free(p);
}

/* Whether `why` lists exactly the allowed values of enum `e`, in order, after
 * its colon. */
static void expect_lists_enum(const char *why, int e)
{
    const struct kr_enum_def *en = &kr_enums[e];
    char want[sizeof((struct kr_diag *)0)->why] = "";
    size_t off = 0;
    for (uint32_t i = 0; i < en->count; i++)
        off +=
            (size_t)snprintf(want + off, sizeof want - off, "%s%s", i ? ", " : "", en->values[i]);
    const char *colon = strstr(why, ": ");
    if (!colon || strcmp(colon + 2, want) != 0)
        fail_msg("enum %s: '%s' does not list '%s'", en->name, why, want);
}

/* A wrong enum value is refused with every allowed value named: in a stored
 * value, in op arguments (one and a list), for every enum field. */
static void test_enum_errors_list_values(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    struct kr_diag d;
    struct mb m;
    for (int fld = 0; fld < KR_FLD__COUNT; fld++) {
        const struct kr_field_def *f = &kr_fields[fld];
        if (f->type != KR_FT_ENUM && !(f->type == KR_FT_LIST && f->of == KR_FT_ENUM))
            continue;
        uint32_t cnt = kr_enums[f->enum_id].count;
        if (f->type == KR_FT_LIST && cnt >= 64)
            continue;
        struct kr_value v = {.set = true, .u = f->type == KR_FT_ENUM ? cnt : 1ull << cnt};
        assert_int_equal(kr_value_check(fld, &v, &d), KR_EINVAL);
        assert_string_equal(d.field, f->name);
        expect_lists_enum(d.why, f->enum_id);
    }
    mb_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mb_key(&m, KR_FLD_EMAIL);
    mb_str(&m, "taro@example.jp");
    mb_key(&m, KR_FLD_PASSWORD);
    mb_str(&m, "correct horse 9");
    mb_key(&m, KR_FLD_ROLE);
    mb_str(&m, "superuser");
    assert_int_equal(args(KR_OP_USERS_CREATE, &m, p, &d), KR_EINVAL);
    assert_string_equal(d.field, FN(KR_FLD_ROLE));
    expect_lists_enum(d.why, KR_ENUM_ROLE);
    mb_fini(&m);
    mb_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mb_key(&m, KR_FLD_VERSION);
    msgpack_pack_uint64(&m.pk, 7);
    mb_key(&m, KR_FLD_ACCOUNT);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_PERMISSIONS);
    msgpack_pack_array(&m.pk, 1);
    mb_str(&m, "everything");
    assert_int_equal(args(KR_OP_USERS_GRANT, &m, p, &d), KR_EINVAL);
    assert_string_equal(d.field, FN(KR_FLD_PERMISSIONS));
    expect_lists_enum(d.why, KR_ENUM_PERMISSION);
    mb_fini(&m);
    kr_payload_free(p);
}

/* u64 fields with bounds (limit 1..1000), tenants, values. */
static void test_args_integer_edges(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    struct mb m;
    struct kr_diag d;
    const uint64_t lmax = kr_fields[KR_FLD_LIMIT].max, lmin = kr_fields[KR_FLD_LIMIT].min;
    const struct {
        uint64_t v;
        bool neg;
        kr_err want;
    } limits[] = {
        {lmin, false, KR_OK},           {lmax, false, KR_OK},
        {lmin - 1, false, KR_EINVAL},   {lmax + 1, false, KR_EINVAL},
        {UINT64_MAX, false, KR_EINVAL}, {1ull << 63, false, KR_EINVAL},
        {1, true, KR_EINVAL},
    };
    for (size_t i = 0; i < COUNT(limits); i++) {
        mb_init(&m);
        msgpack_pack_map(&m.pk, 1);
        mb_key(&m, KR_FLD_LIMIT);
        if (limits[i].neg)
            msgpack_pack_int64(&m.pk, -1);
        else
            msgpack_pack_uint64(&m.pk, limits[i].v);
        expect_args(KR_OP_USERS_LIST, &m, p, limits[i].want,
                    limits[i].want ? FN(KR_FLD_LIMIT) : NULL);
    }
    /* A non-minimal uint (lax reader for arguments): accepted. */
    static const uint8_t lax[] = {0xcf, 0, 0, 0, 0, 0, 0, 0, 5};
    mb_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mb_key(&m, KR_FLD_LIMIT);
    msgpack_sbuffer_write(&m.sb, (const char *)lax, sizeof lax);
    assert_int_equal(args(KR_OP_USERS_LIST, &m, p, &d), KR_OK);
    mb_fini(&m);
    assert_true(p->v[KR_FLD_LIMIT].u == 5);

    /* incidents.notify: tenant 0, 2^63 and 2^64-1 refused, 2^63-1 taken. */
    const uint64_t tenants[] = {0, 1ull << 63, UINT64_MAX, INT64_MAX};
    for (size_t i = 0; i < COUNT(tenants); i++) {
        mb_init(&m);
        msgpack_pack_map(&m.pk, 3);
        mb_key(&m, KR_FLD_CHANNEL);
        mb_str(&m, kr_enums[KR_ENUM_CHANNEL].values[0]);
        mb_key(&m, KR_FLD_TENANT);
        msgpack_pack_uint64(&m.pk, tenants[i]);
        mb_key(&m, KR_FLD_INCIDENT);
        mb_bin(&m, ID_B, 16);
        expect_args(KR_OP_INCIDENTS_NOTIFY, &m, p, i < 3 ? KR_EINVAL : KR_OK,
                    i < 3 ? FN(KR_FLD_TENANT) : NULL);
    }
    kr_payload_free(p);
}

/* contacts.set {contact, attribute_key, value}: every kind of value. */
static void test_args_values(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    struct mb m;
    struct kr_diag d;
    static const struct {
        const char *hex; /* the value's msgpack */
        kr_err want;
        int kind;
        int64_t i;
        double f;
    } vals[] = {
        {"a3 61 62 63", KR_OK, KR_VK_STR, 0, 0},
        {"00", KR_OK, KR_VK_INT, 0, 0},
        {"ff", KR_OK, KR_VK_INT, -1, 0},
        {"d3 80 00 00 00 00 00 00 00", KR_OK, KR_VK_INT, INT64_MIN, 0},
        {"cf 7f ff ff ff ff ff ff ff", KR_OK, KR_VK_INT, INT64_MAX, 0},
        {"d0 05", KR_OK, KR_VK_INT, 5, 0}, /* lax: signed form of 5 */
        {"cb 3f f8 00 00 00 00 00 00", KR_OK, KR_VK_FLOAT, 0, 1.5},
        {"ca 3f c0 00 00", KR_OK, KR_VK_FLOAT, 0, 1.5}, /* lax: float32 */
        {"c3", KR_OK, KR_VK_BOOL, 0, 0},
        {"cf 80 00 00 00 00 00 00 00", KR_EINVAL, 0, 0, 0}, /* 2^63 */
        {"cf ff ff ff ff ff ff ff ff", KR_EINVAL, 0, 0, 0}, /* 2^64-1 */
        {"cb 7f f8 00 00 00 00 00 00", KR_EINVAL, 0, 0, 0}, /* NaN */
        {"cb ff f8 00 00 00 00 00 01", KR_EINVAL, 0, 0, 0}, /* -NaN */
        {"cb 7f f0 00 00 00 00 00 00", KR_EINVAL, 0, 0, 0}, /* Inf */
        {"cb ff f0 00 00 00 00 00 00", KR_EINVAL, 0, 0, 0}, /* -Inf */
        {"ca 7f 80 00 00", KR_EINVAL, 0, 0, 0},             /* float32 Inf */
        {"ca 7f c0 00 00", KR_EINVAL, 0, 0, 0},             /* float32 NaN */
        {"c0", KR_EINVAL, 0, 0, 0},
        {"c4 01 61", KR_EINVAL, 0, 0, 0},
        {"91 01", KR_EINVAL, 0, 0, 0},
        {"80", KR_EINVAL, 0, 0, 0},
        {"d4 01 01", KR_EINVAL, 0, 0, 0},
        {"c1", KR_EINVAL, 0, 0, 0},
        {"a2 c0 80", KR_EINVAL, 0, 0, 0},
        {"a2 61 00", KR_EINVAL, 0, 0, 0},
    };
    for (size_t i = 0; i < COUNT(vals); i++) {
        uint8_t v[16];
        size_t vn = 0;
        for (const char *s = vals[i].hex; *s;) {
            if (*s == ' ') {
                s++;
                continue;
            }
            unsigned x;
            assert_int_equal(sscanf(s, "%2x", &x), 1);
            v[vn++] = (uint8_t)x;
            s += 2;
        }
        mb_init(&m);
        msgpack_pack_map(&m.pk, 3);
        mb_key(&m, KR_FLD_CONTACT);
        mb_bin(&m, ID_A, 16);
        mb_key(&m, KR_FLD_ATTRIBUTE_KEY);
        mb_str(&m, "rank");
        mb_key(&m, KR_FLD_VALUE);
        msgpack_sbuffer_write(&m.sb, (const char *)v, vn);
        kr_err err = args(KR_OP_CONTACTS_SET, &m, p, &d);
        if (err != vals[i].want)
            fail_msg("value %s: %s", vals[i].hex, kr_strerror(err));
        if (err) {
            mb_fini(&m);
            assert_string_equal(d.field, FN(KR_FLD_VALUE));
            continue;
        }
        const struct kr_value *x = &p->v[KR_FLD_VALUE];
        assert_int_equal(x->kind, vals[i].kind);
        if (x->kind == KR_VK_STR) {
            assert_int_equal(x->n, 3);
            assert_memory_equal(x->p, "abc", 3);
        }
        mb_fini(&m);
        if (x->kind == KR_VK_INT)
            assert_true(x->i == vals[i].i);
        if (x->kind == KR_VK_FLOAT)
            assert_true(x->f == vals[i].f);
        if (x->kind == KR_VK_BOOL)
            assert_true(x->b);
    }
    /* Over-long value string. */
    size_t vmax = (size_t)kr_fields[KR_FLD_VALUE].max;
    memset(g_store[0], 'v', vmax + 1);
    mb_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mb_key(&m, KR_FLD_CONTACT);
    mb_bin(&m, ID_A, 16);
    mb_key(&m, KR_FLD_ATTRIBUTE_KEY);
    mb_str(&m, "rank");
    mb_key(&m, KR_FLD_VALUE);
    mb_strn(&m, g_store[0], vmax + 1);
    expect_args(KR_OP_CONTACTS_SET, &m, p, KR_ETOOLARGE, FN(KR_FLD_VALUE));
    kr_payload_free(p);
}

/* incidents.open with a tenant list: any order is not allowed for tenants
 * (the list must increase), too many items, and a happy path. */
static void test_args_incidents_open(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    struct mb m;
    struct kr_diag d;
    const int op = KR_OP_INCIDENTS_OPEN;
    for (int k = 0; k < 5; k++) {
        mb_init(&m);
        msgpack_pack_map(&m.pk, 7);
        mb_key(&m, KR_FLD_TENANTS);
        switch (k) {
        case 0:
            msgpack_pack_array(&m.pk, 2);
            msgpack_pack_uint64(&m.pk, 3);
            msgpack_pack_uint64(&m.pk, 9);
            break;
        case 1:
            msgpack_pack_array(&m.pk, 2);
            msgpack_pack_uint64(&m.pk, 9);
            msgpack_pack_uint64(&m.pk, 3);
            break;
        case 2:
            msgpack_pack_array(&m.pk, 1);
            msgpack_pack_uint64(&m.pk, 0);
            break;
        case 3:
            msgpack_pack_array(&m.pk, kr_fields[KR_FLD_TENANTS].max_items + 1);
            for (uint32_t i = 0; i <= kr_fields[KR_FLD_TENANTS].max_items; i++)
                msgpack_pack_uint64(&m.pk, i + 1);
            break;
        default:
            msgpack_pack_array(&m.pk, 1);
            msgpack_pack_int64(&m.pk, -3);
        }
        mb_key(&m, KR_FLD_AUDIENCE);
        mb_str(&m, kr_enums[KR_ENUM_AUDIENCE].values[KR_AUDIENCE_LISTED]);
        mb_key(&m, KR_FLD_DETECTED);
        msgpack_pack_uint64(&m.pk, 1700000000000000000ull);
        mb_key(&m, KR_FLD_SUMMARY);
        mb_str(&m, "disk lost");
        mb_key(&m, KR_FLD_TITLE);
        mb_str(&m, "outage");
        mb_key(&m, KR_FLD_SEVERITY);
        mb_str(&m, kr_enums[KR_ENUM_SEVERITY].values[KR_SEVERITY_CRITICAL]);
        mb_key(&m, KR_FLD_INCIDENT_SCOPE);
        mb_str(&m, kr_enums[KR_ENUM_INCIDENT_SCOPE].values[KR_INCIDENT_SCOPE_OUTAGE]);
        if (k == 0) {
            assert_int_equal(args(op, &m, p, &d), KR_OK);
            mb_fini(&m);
            assert_int_equal(p->v[KR_FLD_TENANTS].n, 2);
            uint64_t t[2];
            memcpy(t, p->v[KR_FLD_TENANTS].p, sizeof t);
            assert_true(t[0] == 3 && t[1] == 9);
            assert_true(p->v[KR_FLD_SEVERITY].u == KR_SEVERITY_CRITICAL);
            assert_true(p->v[KR_FLD_DETECTED].u == 1700000000000000000ull);
        } else {
            expect_args(op, &m, p, k == 3 ? KR_ETOOLARGE : KR_EINVAL, FN(KR_FLD_TENANTS));
        }
    }
    kr_payload_free(p);
}

/* Not a map, truncated, lying headers: refused without reading past the end
 * (an ASan build proves the latter; each case gets an exact-size heap copy). */
static void test_args_hostile_shapes(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    struct kr_diag d;
    static const struct {
        const char *hex;
        const char *field;
    } cases[] = {
        {"", "args"},
        {"c0", "args"},
        {"c1", "args"},
        {"90", "args"},
        {"a3 61 62 63", "args"},
        {"01", "args"},
        {"df ff ff ff ff", "args"},
        {"df ff ff ff ff a4 6e 61 6d 65", "args"},
        {"de 00 02 a4 6e 61 6d 65 a1 78", "args"}, /* 2 pairs promised, 1 there */
        {"8f a4 6e 61 6d 65", "args"},
        {"81 a4 6e 61 6d 65", NULL},                /* key, no value */
        {"81 a4 6e 61 6d 65 db ff ff ff ff", NULL}, /* value str of 4 GiB */
        {"81 a4 6e 61 6d 65 a5 78", NULL},          /* value cut short */
        {"81 a4 6e 61 6d", "args"},                 /* key cut short */
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        uint8_t tmp[64];
        size_t n = 0;
        for (const char *s = cases[i].hex; *s;) {
            if (*s == ' ') {
                s++;
                continue;
            }
            unsigned x;
            assert_int_equal(sscanf(s, "%2x", &x), 1);
            tmp[n++] = (uint8_t)x;
            s += 2;
        }
        uint8_t *buf = malloc(n ? n : 1);
        assert_non_null(buf);
        memcpy(buf, tmp, n);
        struct kr_mp_reader r;
        kr_mp_reader_init(&r, buf, n, false);
        memset(&d, 0, sizeof d);
        kr_err err = kr_args_decode(KR_OP_CONTACTS_REGISTER, &r, p, &d);
        if (err != KR_EINVAL)
            fail_msg("case %s: %s", cases[i].hex, kr_strerror(err));
        if (cases[i].field)
            assert_string_equal(d.field, cases[i].field);
        else
            assert_string_equal(d.field, FN(KR_FLD_NAME));
        assert_true(r.p <= r.end);
        free(buf);
    }
    kr_payload_free(p);
}

/* A million small elements inside the size cap: a tenant list of 10^6 items
 * is refused by count before any item is read. */
static void test_args_million_items(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    struct mb m;
    mb_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mb_key(&m, KR_FLD_TENANTS);
    msgpack_pack_array(&m.pk, 1000000);
    for (int i = 0; i < 1000000; i++)
        msgpack_pack_uint64(&m.pk, 1);
    expect_args(KR_OP_NOTICES_PUBLISH, &m, p, KR_ETOOLARGE, FN(KR_FLD_TENANTS));
    kr_payload_free(p);
}

/* ---- kr_value_pack ---- */

/* Packs every field's generated values and reads them back with the strict
 * reader: canonical form, and the same value. */
static void test_value_pack_every_field(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    static uint8_t out[STORE_MAX + 16];
    for (int fld = 0; fld < KR_FLD__COUNT; fld++) {
        const struct kr_field_def *f = &kr_fields[fld];
        for (int variant = 0; variant < VARIANTS; variant++) {
            kr_payload_reset(p, -1);
            gen_value(p, fld, variant);
            const struct kr_value *v = &p->v[fld];
            struct kr_diag d;
            assert_int_equal(kr_value_check(fld, v, &d), KR_OK);
            struct kr_mp_fixbuf fb = {.p = out, .cap = sizeof out};
            msgpack_packer pk;
            msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
            kr_value_pack(&pk, fld, v);
            assert_false(fb.overflow);
            struct kr_mp_reader r;
            kr_mp_reader_init(&r, out, fb.len, true);
            const uint8_t *b;
            const char *s;
            size_t n;
            uint64_t u;
            bool bo;
            uint32_t cnt;
            switch (f->type) {
            case KR_FT_ID:
            case KR_FT_HASH:
            case KR_FT_BIN:
                assert_int_equal(kr_mp_read_bin(&r, &b, &n), KR_OK);
                assert_int_equal(n, v->n);
                assert_memory_equal(b, v->p, n);
                break;
            case KR_FT_TENANT:
            case KR_FT_U64:
            case KR_FT_TIME:
                assert_int_equal(kr_mp_read_uint(&r, &u), KR_OK);
                assert_true(u == v->u);
                break;
            case KR_FT_BOOL:
                assert_int_equal(kr_mp_read_bool(&r, &bo), KR_OK);
                assert_int_equal(bo, v->b);
                break;
            case KR_FT_STR:
            case KR_FT_EMAIL:
                assert_int_equal(kr_mp_read_str(&r, &s, &n), KR_OK);
                assert_int_equal(n, v->n);
                assert_memory_equal(s, v->p, n);
                break;
            case KR_FT_ENUM:
                assert_int_equal(kr_mp_read_str(&r, &s, &n), KR_OK);
                assert_int_equal(kr_enum_lookup(f->enum_id, s, n), (int)v->u);
                break;
            case KR_FT_VALUE:
                switch (v->kind) {
                case KR_VK_STR:
                    assert_int_equal(kr_mp_read_str(&r, &s, &n), KR_OK);
                    assert_int_equal(n, v->n);
                    assert_true(n == 0 || memcmp(s, v->p, n) == 0);
                    break;
                case KR_VK_INT: {
                    int64_t i;
                    assert_int_equal(kr_mp_read_int(&r, &i), KR_OK);
                    assert_true(i == v->i);
                    break;
                }
                case KR_VK_FLOAT: {
                    double x;
                    assert_int_equal(kr_mp_read_float(&r, &x), KR_OK);
                    assert_memory_equal(&x, &v->f, sizeof x);
                    break;
                }
                default:
                    assert_int_equal(kr_mp_read_bool(&r, &bo), KR_OK);
                    assert_int_equal(bo, v->b);
                }
                break;
            case KR_FT_LIST:
                assert_int_equal(kr_mp_read_array(&r, &cnt), KR_OK);
                if (f->of == KR_FT_ENUM) {
                    assert_int_equal(cnt, __builtin_popcountll(v->u));
                    int last = -1;
                    for (uint32_t i = 0; i < cnt; i++) {
                        assert_int_equal(kr_mp_read_str(&r, &s, &n), KR_OK);
                        int idx = kr_enum_lookup(f->enum_id, s, n);
                        assert_true(idx > last && (v->u >> idx & 1u));
                        last = idx;
                    }
                } else {
                    assert_int_equal(cnt, v->n);
                    for (uint32_t i = 0; i < cnt; i++) {
                        uint64_t t;
                        memcpy(&t, v->p + 8 * (size_t)i, 8);
                        assert_int_equal(kr_mp_read_uint(&r, &u), KR_OK);
                        assert_true(u == t);
                    }
                }
                break;
            }
            assert_int_equal(kr_mp_remaining(&r), 0);
        }
    }
    kr_payload_free(p);
}

/* kr_set_copy copies into the arena; a full arena is KR_ETOOLARGE; reset
 * forgets every value. */
static void test_set_copy_and_reset(void **state)
{
    (void)state;
    struct kr_payload *p = payload_new();
    char src[8] = "vip";
    kr_payload_reset(p, KR_EV_TAG_CREATED);
    assert_int_equal(kr_set_copy(p, KR_FLD_TAG_NAME, src, 3), KR_OK);
    src[0] = 'X';
    assert_memory_equal(p->v[KR_FLD_TAG_NAME].p, "vip", 3);
    kr_set_bytes(p, KR_FLD_TAG, ID_A, 16);
    struct enc e = {.buf = g_buf};
    encode_ok(p, &e);
    uint8_t *big = malloc(KR_PAYLOAD_ARENA + 1);
    assert_non_null(big);
    memset(big, 'b', KR_PAYLOAD_ARENA + 1);
    assert_int_equal(kr_set_copy(p, KR_FLD_BODY, big, KR_PAYLOAD_ARENA + 1), KR_ETOOLARGE);
    assert_int_equal(kr_set_copy(p, KR_FLD_BODY, big, KR_PAYLOAD_ARENA - 8), KR_OK);
    assert_int_equal(kr_set_copy(p, KR_FLD_NOTE, big, 9), KR_ETOOLARGE);
    free(big);
    kr_payload_reset(p, KR_EV_TAG_DELETED);
    for (int f = 0; f < KR_FLD__COUNT; f++)
        assert_false(p->v[f].set);
    assert_int_equal(p->nused, 0);
    assert_int_equal(p->arena_used, 0);
    assert_int_equal(p->ev, KR_EV_TAG_DELETED);
    kr_payload_free(p);
    kr_payload_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_event),
        cmocka_unit_test(test_enum_errors_list_values),
        cmocka_unit_test(test_stored_email_legacy),
        cmocka_unit_test(test_stripped_payload),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_truncated_and_trailing),
        cmocka_unit_test(test_hand_built_plain),
        cmocka_unit_test(test_hand_built_sealed),
        cmocka_unit_test(test_pd_shape),
        cmocka_unit_test(test_pd_empty_map),
        cmocka_unit_test(test_encode_missing_and_foreign),
        cmocka_unit_test(test_encode_lengths),
        cmocka_unit_test(test_encode_charsets),
        cmocka_unit_test(test_encode_numbers_and_lists),
        cmocka_unit_test(test_encode_personal_needs_key),
        cmocka_unit_test(test_encode_refuses_long_stream),
        cmocka_unit_test(test_args_happy_any_order),
        cmocka_unit_test(test_args_wrong_types),
        cmocka_unit_test(test_args_users_grant),
        cmocka_unit_test(test_args_integer_edges),
        cmocka_unit_test(test_args_values),
        cmocka_unit_test(test_args_incidents_open),
        cmocka_unit_test(test_args_hostile_shapes),
        cmocka_unit_test(test_args_million_items),
        cmocka_unit_test(test_value_pack_every_field),
        cmocka_unit_test(test_set_copy_and_reset),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
