/*
 * mp.h: a bounded, strict msgpack reader for bytes we do not trust.
 *
 * msgpack-c's unpacker trusts headers: a 5-byte array header declaring 2^32
 * elements makes it reserve gigabytes. This reader never allocates: it walks a
 * caller-owned buffer, checks every declared length against the bytes that are
 * actually left, and hands back pointers into the buffer. Strict mode
 * (`canonical`) also refuses non-minimal encodings, so that one value has one
 * byte form, which the journal needs: it hashes the bytes it stores.
 */
#ifndef KR_MP_H
#define KR_MP_H

#include "kr_error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kr_mp_reader {
    const uint8_t *p;   /* next byte to read; borrowed from the caller */
    const uint8_t *end; /* one past the last byte */
    bool canonical;     /* refuse non-minimal integer, str and bin encodings */
};

void kr_mp_reader_init(struct kr_mp_reader *r, const void *buf, size_t len, bool canonical);

/* Bytes not yet read. */
size_t kr_mp_remaining(const struct kr_mp_reader *r);

/* Each reader below consumes one object of the named type and returns
 * KR_ECORRUPT, without consuming anything, when the next object is of another
 * type, is truncated, or (in canonical mode) is not minimally encoded.
 * Returned pointers point into the reader's buffer. */
KR_MUST_CHECK kr_err kr_mp_read_array(struct kr_mp_reader *r, uint32_t *count);
KR_MUST_CHECK kr_err kr_mp_read_map(struct kr_mp_reader *r, uint32_t *count);
KR_MUST_CHECK kr_err kr_mp_read_uint(struct kr_mp_reader *r, uint64_t *v);
KR_MUST_CHECK kr_err kr_mp_read_str(struct kr_mp_reader *r, const char **s, size_t *len);
KR_MUST_CHECK kr_err kr_mp_read_bin(struct kr_mp_reader *r, const uint8_t **b, size_t *len);
KR_MUST_CHECK kr_err kr_mp_read_nil(struct kr_mp_reader *r);
/* True when the next object is nil (does not consume it). */
bool kr_mp_peek_nil(const struct kr_mp_reader *r);
KR_MUST_CHECK kr_err kr_mp_read_bool(struct kr_mp_reader *r, bool *v);
/* A signed integer: any int or uint form whose value fits int64. Canonical
 * mode wants msgpack-c's forms: non-negative values as uint, negative ones in
 * the smallest signed form. */
KR_MUST_CHECK kr_err kr_mp_read_int(struct kr_mp_reader *r, int64_t *v);
/* A float64 (canonical mode) or float32/float64; NaN and infinities are
 * refused (KR_ECORRUPT): no field of kiroku holds them. */
KR_MUST_CHECK kr_err kr_mp_read_float(struct kr_mp_reader *r, double *v);

/* The kind of the next object, without consuming it or checking its body. */
enum kr_mp_kind {
    KR_MP_END, /* no bytes left */
    KR_MP_NIL,
    KR_MP_BOOL,
    KR_MP_UINT,
    KR_MP_NEGINT,
    KR_MP_FLOAT,
    KR_MP_STR,
    KR_MP_BIN,
    KR_MP_ARRAY,
    KR_MP_MAP,
    KR_MP_EXT,
    KR_MP_INVALID, /* 0xc1 */
};
enum kr_mp_kind kr_mp_peek(const struct kr_mp_reader *r);

/* Checks that the bytes left start with one complete object nested at most max_depth deep, whose
 * every array, map, str, bin and ext length fits the bytes present, with no 0xc1 and no more than
 * max_items elements in all; and consumes it. For hostile input that must be proven bounded before
 * anything else (msgpack-c) decodes it. KR_ECORRUPT if malformed or truncated, KR_ETOOLARGE if a
 * limit is hit. */
KR_MUST_CHECK kr_err kr_mp_check(struct kr_mp_reader *r, unsigned max_depth, size_t max_items);

/* Writing: a fixed, caller-owned output buffer for msgpack-c's packer
 * (msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write)). A write that does not
 * fit is refused and remembered in `overflow`; nothing is written past cap. */
struct kr_mp_fixbuf {
    uint8_t *p;
    size_t cap;
    size_t len;
    bool overflow;
};
int kr_mp_fixbuf_write(void *data, const char *buf, size_t len);

#endif
