/*
 * mp.c: bounded msgpack reading (see mp.h). Every length is checked against
 * the remaining bytes before it is used; nothing here allocates.
 */
#include "mp.h"

#include "endian_be.h"

#include <math.h>
#include <string.h>

void kr_mp_reader_init(struct kr_mp_reader *r, const void *buf, size_t len, bool canonical)
{
    r->p = buf;
    r->end = r->p + len;
    r->canonical = canonical;
}

size_t kr_mp_remaining(const struct kr_mp_reader *r)
{
    return (size_t)(r->end - r->p);
}

/* Big-endian unsigned integer of n (1, 2, 4 or 8) bytes at p. */
static uint64_t be(const uint8_t *p, unsigned n)
{
    switch (n) {
    case 1:
        return p[0];
    case 2:
        return kr_get_be16(p);
    case 4:
        return kr_get_be32(p);
    default:
        KR_ASSERT(n == 8);
        return kr_get_be64(p);
    }
}

/* Reads a header whose tag byte is at r->p: fixed part `fix_mask/fix_tag`
 * carries the length in the low bits; tags t8/t16/t32 (0 when absent) carry it
 * in 1, 2 or 4 following bytes. On success *len is the declared length and
 * *hdr the header's size; r is not advanced. */
static kr_err header(const struct kr_mp_reader *r, uint8_t fix_mask, uint8_t fix_tag,
                     uint8_t fix_bits, int t8, int t16, int t32, uint64_t *len, size_t *hdr)
{
    size_t left = kr_mp_remaining(r);
    if (left < 1)
        return KR_ECORRUPT;
    uint8_t tag = r->p[0];
    unsigned n;
    uint64_t min;
    uint64_t fix_max = (1u << fix_bits) - 1u;
    if (fix_mask != 0 && (tag & fix_mask) == fix_tag) {
        *len = tag & (uint8_t)~fix_mask;
        *hdr = 1;
        return KR_OK;
    }
    if (t8 >= 0 && tag == t8) {
        n = 1;
        min = fix_mask ? fix_max + 1 : 0;
    } else if (t16 >= 0 && tag == t16) {
        n = 2;
        min = t8 >= 0 ? 0x100 : (fix_mask ? fix_max + 1 : 0);
    } else if (t32 >= 0 && tag == t32) {
        n = 4;
        min = 0x10000;
    } else {
        return KR_ECORRUPT;
    }
    if (left < 1 + n)
        return KR_ECORRUPT;
    *len = be(r->p + 1, n);
    if (r->canonical && *len < min)
        return KR_ECORRUPT;
    *hdr = 1 + n;
    return KR_OK;
}

kr_err kr_mp_read_array(struct kr_mp_reader *r, uint32_t *count)
{
    uint64_t n;
    size_t hdr;
    kr_err err = header(r, 0xf0, 0x90, 4, -1, 0xdc, 0xdd, &n, &hdr);
    if (err)
        return err;
    /* Every element takes at least one byte: a count beyond what is left is a lie. */
    if (n > kr_mp_remaining(r) - hdr)
        return KR_ECORRUPT;
    r->p += hdr;
    *count = (uint32_t)n;
    return KR_OK;
}

kr_err kr_mp_read_map(struct kr_mp_reader *r, uint32_t *count)
{
    uint64_t n;
    size_t hdr;
    kr_err err = header(r, 0xf0, 0x80, 4, -1, 0xde, 0xdf, &n, &hdr);
    if (err)
        return err;
    if (n > (kr_mp_remaining(r) - hdr) / 2)
        return KR_ECORRUPT;
    r->p += hdr;
    *count = (uint32_t)n;
    return KR_OK;
}

/* A str or bin: the header, then n bytes that must all be there. */
static kr_err read_bytes(struct kr_mp_reader *r, bool str, const uint8_t **b, size_t *len)
{
    uint64_t n;
    size_t hdr;
    kr_err err = str ? header(r, 0xe0, 0xa0, 5, 0xd9, 0xda, 0xdb, &n, &hdr)
                     : header(r, 0, 0, 0, 0xc4, 0xc5, 0xc6, &n, &hdr);
    if (err)
        return err;
    if (n > kr_mp_remaining(r) - hdr)
        return KR_ECORRUPT;
    *b = r->p + hdr;
    *len = (size_t)n;
    r->p += hdr + n;
    return KR_OK;
}

kr_err kr_mp_read_str(struct kr_mp_reader *r, const char **s, size_t *len)
{
    const uint8_t *b;
    kr_err err = read_bytes(r, true, &b, len);
    if (err == KR_OK)
        *s = (const char *)b;
    return err;
}

kr_err kr_mp_read_bin(struct kr_mp_reader *r, const uint8_t **b, size_t *len)
{
    return read_bytes(r, false, b, len);
}

kr_err kr_mp_read_uint(struct kr_mp_reader *r, uint64_t *v)
{
    size_t left = kr_mp_remaining(r);
    if (left < 1)
        return KR_ECORRUPT;
    uint8_t tag = r->p[0];
    if (tag <= 0x7f) {
        *v = tag;
        r->p += 1;
        return KR_OK;
    }
    unsigned n;
    uint64_t min;
    switch (tag) {
    case 0xcc:
        n = 1, min = 0x80;
        break;
    case 0xcd:
        n = 2, min = 0x100;
        break;
    case 0xce:
        n = 4, min = 0x10000;
        break;
    case 0xcf:
        n = 8, min = 0x100000000ull;
        break;
    default:
        return KR_ECORRUPT;
    }
    if (left < 1 + n)
        return KR_ECORRUPT;
    uint64_t x = be(r->p + 1, n);
    if (r->canonical && x < min)
        return KR_ECORRUPT;
    *v = x;
    r->p += 1 + n;
    return KR_OK;
}

kr_err kr_mp_read_nil(struct kr_mp_reader *r)
{
    if (!kr_mp_peek_nil(r))
        return KR_ECORRUPT;
    r->p += 1;
    return KR_OK;
}

bool kr_mp_peek_nil(const struct kr_mp_reader *r)
{
    return kr_mp_remaining(r) >= 1 && r->p[0] == 0xc0;
}

kr_err kr_mp_read_bool(struct kr_mp_reader *r, bool *v)
{
    if (kr_mp_remaining(r) < 1 || (r->p[0] != 0xc2 && r->p[0] != 0xc3))
        return KR_ECORRUPT;
    *v = r->p[0] == 0xc3;
    r->p += 1;
    return KR_OK;
}

kr_err kr_mp_read_int(struct kr_mp_reader *r, int64_t *v)
{
    size_t left = kr_mp_remaining(r);
    if (left < 1)
        return KR_ECORRUPT;
    uint8_t tag = r->p[0];
    if (tag >= 0xe0) {           /* negative fixint */
        *v = (int64_t)tag - 256; /* 0xe0..0xff are -32..-1 */
        r->p += 1;
        return KR_OK;
    }
    unsigned n;
    int64_t min; /* the smallest value needing this form (canonical) */
    switch (tag) {
    case 0xd0:
        n = 1, min = -128;
        break;
    case 0xd1:
        n = 2, min = -32768;
        break;
    case 0xd2:
        n = 4, min = INT32_MIN;
        break;
    case 0xd3:
        n = 8, min = INT64_MIN;
        break;
    default: {
        uint64_t u;
        const uint8_t *save = r->p;
        kr_err err = kr_mp_read_uint(r, &u);
        if (err)
            return err;
        if (u > INT64_MAX) {
            r->p = save;
            return KR_ECORRUPT;
        }
        *v = (int64_t)u;
        return KR_OK;
    }
    }
    if (left < 1 + n)
        return KR_ECORRUPT;
    uint64_t x = be(r->p + 1, n);
    if (n < 8 && (x & (1ull << (8 * n - 1))))
        x |= ~((1ull << (8 * n)) - 1); /* sign-extend */
    int64_t s = (int64_t)x;
    /* Canonical: negative, and too small for the next smaller form. */
    int64_t next_min = n == 1 ? -32 : n == 2 ? -128 : n == 4 ? -32768 : INT32_MIN;
    if (r->canonical && (s >= 0 || s >= next_min || s < min))
        return KR_ECORRUPT;
    *v = s;
    r->p += 1 + n;
    return KR_OK;
}

kr_err kr_mp_read_float(struct kr_mp_reader *r, double *v)
{
    size_t left = kr_mp_remaining(r);
    if (left < 1)
        return KR_ECORRUPT;
    double d;
    size_t n;
    if (r->p[0] == 0xcb && left >= 9) {
        uint64_t x = be(r->p + 1, 8);
        memcpy(&d, &x, sizeof d);
        n = 9;
    } else if (r->p[0] == 0xca && left >= 5 && !r->canonical) {
        uint32_t x = (uint32_t)be(r->p + 1, 4);
        float f;
        memcpy(&f, &x, sizeof f);
        d = f;
        n = 5;
    } else {
        return KR_ECORRUPT;
    }
    if (!isfinite(d))
        return KR_ECORRUPT;
    *v = d;
    r->p += n;
    return KR_OK;
}

enum kr_mp_kind kr_mp_peek(const struct kr_mp_reader *r)
{
    if (kr_mp_remaining(r) < 1)
        return KR_MP_END;
    uint8_t t = r->p[0];
    if (t <= 0x7f || t == 0xcc || t == 0xcd || t == 0xce || t == 0xcf)
        return KR_MP_UINT;
    if (t >= 0xe0 || (t >= 0xd0 && t <= 0xd3))
        return KR_MP_NEGINT;
    if ((t & 0xf0) == 0x80 || t == 0xde || t == 0xdf)
        return KR_MP_MAP;
    if ((t & 0xf0) == 0x90 || t == 0xdc || t == 0xdd)
        return KR_MP_ARRAY;
    if ((t & 0xe0) == 0xa0 || t == 0xd9 || t == 0xda || t == 0xdb)
        return KR_MP_STR;
    switch (t) {
    case 0xc0:
        return KR_MP_NIL;
    case 0xc2:
    case 0xc3:
        return KR_MP_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return KR_MP_BIN;
    case 0xca:
    case 0xcb:
        return KR_MP_FLOAT;
    case 0xc1:
        return KR_MP_INVALID;
    default:
        return KR_MP_EXT; /* c7-c9, d4-d8 */
    }
}

/* Size of the fixed-width body after tag t, for scalar kinds. */
static size_t scalar_body(uint8_t t)
{
    switch (t) {
    case 0xcc:
    case 0xd0:
        return 1;
    case 0xcd:
    case 0xd1:
        return 2;
    case 0xca:
    case 0xce:
    case 0xd2:
        return 4;
    case 0xcb:
    case 0xcf:
    case 0xd3:
        return 8;
    default:
        return 0;
    }
}

kr_err kr_mp_check(struct kr_mp_reader *r, unsigned max_depth, size_t max_items)
{
    /* Iterative: `pending[d]` counts objects still to read at depth d. */
    uint64_t pending[64];
    unsigned depth = 0;
    size_t items = 0;
    const uint8_t *start = r->p;
    if (max_depth > 63)
        max_depth = 63;
    pending[0] = 1;
    while (depth > 0 || pending[0] > 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        enum kr_mp_kind k = kr_mp_peek(r);
        uint8_t t = k == KR_MP_END ? 0 : r->p[0];
        kr_err err = KR_OK;
        size_t left = kr_mp_remaining(r);
        switch (k) {
        case KR_MP_END:
        case KR_MP_INVALID:
            err = KR_ECORRUPT;
            break;
        case KR_MP_NIL:
        case KR_MP_BOOL:
        case KR_MP_UINT:
        case KR_MP_NEGINT:
        case KR_MP_FLOAT: {
            size_t n = 1 + scalar_body(t);
            if (left < n)
                err = KR_ECORRUPT;
            else
                r->p += n;
            break;
        }
        case KR_MP_STR: {
            const char *s;
            size_t n;
            err = kr_mp_read_str(r, &s, &n);
            break;
        }
        case KR_MP_BIN: {
            const uint8_t *b;
            size_t n;
            err = kr_mp_read_bin(r, &b, &n);
            break;
        }
        case KR_MP_EXT: {
            size_t hdr, n;
            if (t >= 0xd4 && t <= 0xd8) {
                hdr = 2;
                n = (size_t)1 << (t - 0xd4);
            } else {
                hdr = t == 0xc7 ? 3 : t == 0xc8 ? 4 : 6;
                if (left < hdr) {
                    err = KR_ECORRUPT;
                    break;
                }
                n = (size_t)be(r->p + 1, (unsigned)(hdr - 2));
            }
            if (left < hdr || n > left - hdr)
                err = KR_ECORRUPT;
            else
                r->p += hdr + n;
            break;
        }
        case KR_MP_ARRAY:
        case KR_MP_MAP: {
            uint32_t n;
            err = k == KR_MP_ARRAY ? kr_mp_read_array(r, &n) : kr_mp_read_map(r, &n);
            if (err)
                break;
            uint64_t objs = k == KR_MP_MAP ? 2ull * n : n;
            items += n;
            if (items > max_items || (objs > 0 && depth + 1 > max_depth)) {
                err = KR_ETOOLARGE;
                break;
            }
            if (objs > 0)
                pending[++depth] = objs;
            break;
        }
        }
        if (err) {
            r->p = start;
            return err;
        }
    }
    return KR_OK;
}

int kr_mp_fixbuf_write(void *data, const char *buf, size_t len)
{
    struct kr_mp_fixbuf *fb = data;
    if (fb->overflow || len > fb->cap - fb->len) {
        fb->overflow = true;
        return -1;
    }
    memcpy(fb->p + fb->len, buf, len);
    fb->len += len;
    return 0;
}
