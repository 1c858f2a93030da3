/*
 * mp.c: bounded msgpack reading (see mp.h). Every length is checked against
 * the remaining bytes before it is used; nothing here allocates.
 */
#include "mp.h"

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

/* Big-endian unsigned integer of n bytes at p. */
static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
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
