/*
 * payload.h: event payloads and op arguments as schema-checked values.
 *
 * A `struct kr_payload` holds one value per field id (schema.h). Command
 * handlers fill one and encode it into an event payload; views and queries
 * decode payloads back; the API decodes op arguments into one. Every value is
 * checked against its field's type and limits, and the diagnostics name the
 * field and what is wrong, so a client gets a precise error.
 *
 * Payload format (canonical msgpack, so one payload has one byte form):
 *   { <plain field>: value, ... in schema order, ["pd": bin] }
 * where "pd" is present when the event carries personal fields: it is
 *   nonce(24) | XChaCha20-Poly1305( { <personal field>: value, ... } )
 * under the tenant's data key, with additional data
 *   "kiroku.pd.v1" | tenant (u64 BE) | len(stream) | stream | type
 * so a ciphertext moved to another record fails to open. Headers and plain
 * fields carry ids, enums, times and counts; names, e-mail addresses, contact
 * fields, attribute values and password hashes are only ever inside "pd".
 * Once a tenant's key is destroyed the "pd" bytes are noise, and erasure
 * strips whole payloads anyway.
 *
 * Value encodings: id and hash are bin of 16 / 32 bytes; tenant, u64 and time
 * are uint; bool is bool; str, email and enum are str; bin is bin; value is
 * str, int, float64 or bool; a tenant list is an array of uint in increasing
 * order without repeats; an enum list is an array of str in enum order
 * without repeats.
 *
 * Threads: a payload is plain data; one thread at a time.
 */
#ifndef KR_PAYLOAD_H
#define KR_PAYLOAD_H

#include "keystore.h"
#include "kr_error.h"
#include "kr_limits.h"
#include "mp.h"
#include "record.h"
#include "rng.h"
#include "schema.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Kinds of an attribute value (KR_FT_VALUE). */
enum kr_vkind { KR_VK_STR, KR_VK_INT, KR_VK_FLOAT, KR_VK_BOOL };

struct kr_value {
    bool set;
    uint8_t kind; /* KR_FT_VALUE: enum kr_vkind */
    union {
        uint64_t u; /* tenant, u64, time; enum index; enum-list bit mask */
        int64_t i;  /* value int */
        double f;   /* value float */
        bool b;     /* bool; value bool */
    };
    const uint8_t *p; /* str, email, bin, id, hash, value str: bytes (not NUL-terminated);
                       * tenant list: n uint64_t at p (aligned) */
    uint32_t n;       /* bytes, or list items */
};

/* Where a check failed: the field (or "pd", or "" for the whole payload) and why. */
struct kr_diag {
    char field[40];
    char why[256]; /* room for every enum's allowed values (payload_test checks) */
};

/* Bytes of decoded personal data and lists a payload can hold: a payload's
 * worth, and the schema's one list of tenants as u64s. */
#define KR_PAYLOAD_ARENA (KR_PAYLOAD_MAX + KR_FLD_TENANTS_MAX_ITEMS * 8u)

/* Caller-owned; large (about 70 KiB): allocate with kr_payload_new or keep one
 * per thread. Values borrow from the arena or from the bytes decoded. */
struct kr_payload {
    int ev;         /* enum kr_ev, or -1 for op arguments */
    bool pd_sealed; /* decoded without a key: personal fields not available */
    struct kr_value v[KR_FLD__COUNT];
    uint16_t used[KR_FLD__COUNT]; /* fields set, so reset touches only those */
    uint32_t nused;
    size_t arena_used;
    _Alignas(8) uint8_t arena[KR_PAYLOAD_ARENA];
};

struct kr_payload *kr_payload_new(void);    /* NULL on allocation failure */
void kr_payload_free(struct kr_payload *p); /* accepts NULL; wipes */
/* Clears every value (for event `ev`, or -1). Only the used part is wiped. */
void kr_payload_reset(struct kr_payload *p, int ev);

/* Setters. Bytes are borrowed, not copied: they must outlive the encode. */
void kr_set_u64(struct kr_payload *p, int fld, uint64_t v);
void kr_set_bool(struct kr_payload *p, int fld, bool v);
void kr_set_bytes(struct kr_payload *p, int fld, const void *b, size_t n);
void kr_set_str(struct kr_payload *p, int fld, const char *s); /* strlen(s) bytes */
void kr_set_tenants(struct kr_payload *p, int fld, const uint64_t *t, size_t n);
void kr_set_value_int(struct kr_payload *p, int fld, int64_t v);
void kr_set_value_float(struct kr_payload *p, int fld, double v);
void kr_set_value_bool(struct kr_payload *p, int fld, bool v);
void kr_set_value_str(struct kr_payload *p, int fld, const void *s, size_t n);
/* Copies n bytes into the payload's arena and sets fld to them (for values
 * whose source will not outlive the encode). KR_ETOOLARGE if the arena is full. */
KR_MUST_CHECK kr_err kr_set_copy(struct kr_payload *p, int fld, const void *b, size_t n);

/* Checks one value against its field's type and limits. KR_EINVAL (wrong
 * type, charset, range, order) or KR_ETOOLARGE (too long, too many items). */
KR_MUST_CHECK kr_err kr_value_check(int fld, const struct kr_value *v, struct kr_diag *d);

/* Where an event's personal data is sealed: the tenant's key and the record's
 * identity (the additional data). */
struct kr_pd_ctx {
    const struct kr_data_key *key;
    const struct kr_rng *rng; /* nonces; NULL = system randomness */
    uint64_t tenant;
    const char *stream;
    size_t stream_len;
};

/* The stream of event p->ev from its key field ("contact/<32 hex>"), into out
 * (KR_STREAM_MAX + 1 bytes, NUL-terminated). KR_EINVAL if the key is unset. */
KR_MUST_CHECK kr_err kr_event_stream(const struct kr_payload *p, char *out, size_t cap,
                                     size_t *len);

/* Encodes p as the payload of event p->ev: every required field set, no field
 * the event does not have, every value valid; personal fields sealed with
 * pd->key (pd may be NULL only for events without personal fields).
 * KR_EINVAL / KR_ETOOLARGE with *d filled. */
KR_MUST_CHECK kr_err kr_event_encode(const struct kr_payload *p, const struct kr_pd_ctx *pd,
                                     uint8_t *out, size_t cap, size_t *len, struct kr_diag *d);

/* Decodes the payload of record r (whose type must be event `ev`) into p.
 * Personal fields are opened with key when it is not NULL; otherwise they stay
 * unset and p->pd_sealed is true. Strict: canonical msgpack, schema order, no
 * unknown or repeated keys, every value valid, required fields present.
 * Values borrow from r's payload and p's arena. KR_ECORRUPT (with *d) on any
 * deviation, including a "pd" that fails to open; KR_ENOTFOUND if the
 * payload was stripped. */
KR_MUST_CHECK kr_err kr_event_decode(int ev, const struct jrn_record *r,
                                     const struct kr_data_key *key, struct kr_payload *p,
                                     struct kr_diag *d);

/* Decodes a map of op arguments (bounded reader, hostile bytes) against the
 * op's argument list into p (ev = -1): unknown, repeated or mistyped keys and
 * missing required ones are errors. Order is free. KR_EINVAL / KR_ETOOLARGE /
 * KR_ECORRUPT with *d filled. */
KR_MUST_CHECK kr_err kr_args_decode(int op, struct kr_mp_reader *r, struct kr_payload *p,
                                    struct kr_diag *d);

/* Writes one value in its msgpack form with msgpack-c's packer (results). */
struct msgpack_packer;
void kr_value_pack(struct msgpack_packer *pk, int fld, const struct kr_value *v);

#endif
