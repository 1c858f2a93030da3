/*
 * record.h: one journal record, its byte format, its signature input and its
 * leaf hash. docs/journal-format.md is the same contract written for auditors.
 *
 * Stored value (msgpack, canonical: every integer, str and bin in its shortest
 * form, so one record has exactly one byte form):
 *
 *   [ header, payload ]                       fixarray(2)
 *   header  = [ format(=2), seq, time_ns, tenant, tseq, stream, version,
 *               type, actor, key_id, commitment, prev, sig ]  fixarray(13)
 *   payload = bin (the event's bytes) | nil (stripped by erasure)
 *
 * Format 1 (journals written before per-tenant numbers) has the same header
 * without tseq (fixarray(12)); such records still decode, with tseq 0. A
 * journal never holds a format-1 record after a format-2 one.
 *
 * leaf hash  = SHA-256(0x00 || header bytes)          (RFC 6962 leaf)
 * commitment = SHA-256(payload bytes)
 * sig        = Ed25519 over the signing input (jrn_record_sign_input), which
 *              covers tenant, stream, version, type, time, actor, key id and
 *              commitment but not seq or prev: the writer assigns those after
 *              signing, and checkpoints bind them.
 */
#ifndef KR_RECORD_H
#define KR_RECORD_H

#include "hash.h"
#include "kr_error.h"
#include "kr_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The record format the writer writes; JRN_FORMAT_1 records still decode. */
#define JRN_FORMAT     2
#define JRN_FORMAT_1   1
#define JRN_SIG_LEN    64
#define JRN_PUBKEY_LEN 32
/* Domain separator at the start of every record signing input. */
#define JRN_SIGN_DOMAIN "kiroku.record.v1"
/* Signing input: domain, four fixed integers, three length-prefixed strings and
 * the commitment. */
#define JRN_SIGN_INPUT_MAX                                                                         \
    (sizeof(JRN_SIGN_DOMAIN) - 1 + 8 + 8 + 8 + 4 + 3 + KR_STREAM_MAX + KR_TYPE_MAX +               \
     KR_ACTOR_MAX + KR_HASH_LEN)

/* A decoded record. The string, payload and header pointers borrow from the
 * buffer the record was decoded from (or, when encoding, from the caller), and
 * stay valid only as long as that buffer. Strings are not NUL-terminated. */
struct jrn_record {
    uint64_t seq;     /* position in the journal, from 1, gap-free */
    uint64_t time_ns; /* UTC nanoseconds; never decreases along seq */
    uint64_t tenant;  /* 0 = the platform */
    uint64_t version; /* position in its stream, from 1 */
    /* Position among its tenant's records, from 1, gap-free, in seq order
     * (format 2; 0 for a format-1 record, whose number is implied by its
     * place). Covered by the leaf hash, not by sig. */
    uint64_t tseq;
    /* JRN_FORMAT or JRN_FORMAT_1 after decoding; when encoding, 0 means
     * JRN_FORMAT. */
    uint32_t format;
    uint32_t key_id; /* signing key */
    const char *stream;
    size_t stream_len;
    const char *type;
    size_t type_len;
    const char *actor;
    size_t actor_len;
    uint8_t commitment[KR_HASH_LEN];
    uint8_t prev[KR_HASH_LEN]; /* leaf hash of record seq-1; zeros for seq 1 */
    uint8_t sig[JRN_SIG_LEN];
    const uint8_t *payload; /* NULL when stripped */
    size_t payload_len;
    bool payload_stripped;
    const uint8_t *header; /* exact header bytes (decode only) */
    size_t header_len;
};

/* Checks the header fields of an event a caller wants to append: stream
 * 1..KR_STREAM_MAX bytes of printable ASCII without space; type 1..KR_TYPE_MAX
 * bytes of [a-z0-9._]; actor 0..KR_ACTOR_MAX printable ASCII without space;
 * payload at most KR_PAYLOAD_MAX. KR_EINVAL or KR_ETOOLARGE otherwise. */
KR_MUST_CHECK kr_err jrn_record_check_fields(const struct jrn_record *r);

/* Writes the signing input of r into out (JRN_SIGN_INPUT_MAX bytes) and its
 * length into *len. r's fields must have passed jrn_record_check_fields. */
void jrn_record_sign_input(const struct jrn_record *r, uint8_t out[JRN_SIGN_INPUT_MAX],
                           size_t *len);

/* Encodes r's header into out (cap bytes) in format r->format (0 = JRN_FORMAT).
 * KR_ETOOLARGE if it does not fit; KR_EINVAL for an unknown format, a format-2
 * record with tseq 0 or a format-1 record with tseq set. */
KR_MUST_CHECK kr_err jrn_record_encode_header(const struct jrn_record *r, uint8_t *out, size_t cap,
                                              size_t *len);

/* Encodes the whole stored value (header and payload, or nil when
 * r->payload_stripped) into out. The header is out[JRN_HEADER_OFFSET ..
 * JRN_HEADER_OFFSET + *header_len) (header_len may be NULL). */
#define JRN_HEADER_OFFSET 1 /* after the fixarray(2) byte */
KR_MUST_CHECK kr_err jrn_record_encode(const struct jrn_record *r, uint8_t *out, size_t cap,
                                       size_t *len, size_t *header_len);

/* Decodes a stored value strictly: canonical msgpack, exact element counts
 * (12 header fields for format 1, 13 for format 2), field limits, format
 * version, tseq >= 1 in format 2, no trailing bytes. Pointers in *r borrow
 * from buf. KR_ECORRUPT (or KR_EVERSION for an unknown format) on any
 * deviation. */
KR_MUST_CHECK kr_err jrn_record_decode(const uint8_t *buf, size_t len, struct jrn_record *r);

/* The RFC 6962 leaf hash of a decoded record (over r->header). */
void jrn_record_leaf_hash(const struct jrn_record *r, uint8_t out[KR_HASH_LEN]);

#endif
