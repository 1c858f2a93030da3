/*
 * endian_be.h: the project's one set of byte-order helpers, over <endian.h>.
 *
 * Big-endian is the byte order of everything kiroku lays out itself: LMDB keys
 * (so that keys sort by number), view rows, record signing inputs, wrapped-key
 * additional data, format words; msgpack is big-endian too. The two
 * little-endian helpers exist for the few places that hash a length or a seed
 * in the order libsodium's own constructions use.
 *
 * p need not be aligned (memcpy); each helper reads or writes exactly the
 * bytes its name says, and the caller guarantees they are there.
 */
#ifndef KR_ENDIAN_BE_H
#define KR_ENDIAN_BE_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline void kr_put_be16(uint8_t *p, uint16_t v)
{
    v = htobe16(v);
    memcpy(p, &v, sizeof v);
}

static inline void kr_put_be32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, sizeof v);
}

static inline void kr_put_be64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, sizeof v);
}

static inline uint16_t kr_get_be16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return be16toh(v);
}

static inline uint32_t kr_get_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return be32toh(v);
}

static inline uint64_t kr_get_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return be64toh(v);
}

static inline void kr_put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof v);
}

static inline uint64_t kr_get_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return le64toh(v);
}

#endif
