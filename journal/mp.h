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
