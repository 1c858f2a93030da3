/*
 * export.h: a tenant's records, taken away and checked offline.
 *
 * An export is one JSON document (docs/auditing.md, "The export file", is the
 * contract for an independent verifier) holding, for one tenant and a seq range:
 *
 *   - the journal's origin and id;
 *   - the key chain: the stored bytes of record 1 (journal.created) and of every
 *     later record of the journal's own stream (key changes), tenant 0 records
 *     that carry only keys;
 *   - the tenant's records in the range, as stored (base64), each with its seq,
 *     tseq and time in UTC and JST beside it, and an inclusion proof to one of
 *     the export's checkpoints;
 *   - the signed checkpoint notes those proofs need (the newest at export time
 *     and kept ones), and a consistency proof between each two consecutive ones;
 *   - with exp_options.since_size, a consistency proof from a previous export's
 *     newest checkpoint to this one's newest (exp_verify_since).
 *
 * Of other tenants it holds only Merkle proof nodes (hashes), and the `prev`
 * leaf hash inside each record's own header: none of their header fields,
 * payloads or commitments.
 *
 * exp_verify checks a document with only the trusted public key of key 1 and
 * treats it as hostile: every size, count and proof length is bounded
 * (kr_limits.h, "Tenant exports"), the document must be exactly the compact
 * form this module writes (so one export has one byte form, and any edited
 * byte is either malformed or changes a checked value), and a failure names
 * what is wrong and where (section, index, seq, tseq, field).
 *
 * What it proves: every record is the journal's own, signed by the key valid
 * at its seq, at its place in the Merkle tree under signed, mutually
 * consistent checkpoints, of this tenant; and no record of the tenant between
 * the export's first and last record is missing (per-tenant numbers, record
 * format 2, contiguous). What it cannot: records after its last, records
 * before its first unless the first has tseq 1, and the completeness of
 * format-1 records (written before per-tenant numbers existed) unless the
 * first format-2 record's tseq counts them all.
 */
#ifndef KR_EXPORT_H
#define KR_EXPORT_H

#include "hash.h"
#include "journal.h"
#include "kr_error.h"
#include "kr_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The document's format version (its "kiroku_export" member). Format 2
 * spells the tenant id as a decimal string, which JSON tools that read
 * numbers as doubles keep exact; format 1 (a number) still verifies. */
#define EXP_FORMAT    2
#define EXP_FORMAT_V1 1

struct exp_options {
    uint64_t tenant;    /* >= 1: tenant 0 is the platform, not exportable */
    uint64_t from;      /* first seq (0 or 1 = from the start) */
    uint64_t to;        /* last seq (0 = up to the newest checkpoint) */
    size_t max_records; /* 0 = KR_EXPORT_RECORDS_MAX; never more than it */
    size_t max_bytes;   /* size budget of the document; 0 = KR_EXPORT_BUILD_BYTES_MAX */
    /* > 0: the tree size of a previous export's newest checkpoint (from its
     * saved state, exp_state_size): the document then holds a "since" member,
     * the consistency proof from that size to its newest checkpoint, which
     * exp_verify_since needs. Must not pass the newest checkpoint (KR_EINVAL). */
    uint64_t since_size;
};

/* What exp_build put in the document. */
struct exp_built {
    uint64_t first, last; /* seq of its first and last record */
    uint64_t records;
    uint64_t next_from; /* cut short: the seq to continue from; else 0 */
};

/*
 * Builds the export of o->tenant's records with from <= seq <= to under one
 * read snapshot of j (a writable or read-only handle; a writer may go on
 * meanwhile). Records past the newest checkpoint of the snapshot are left for
 * a later export. The document is cut short after max_records records or when
 * it would pass max_bytes (it always holds at least one record); out->next_from
 * then gets the seq to continue from, else 0.
 *
 * On KR_OK *doc is a malloc'd document of *len bytes (NUL-terminated; the
 * caller frees it). Errors: KR_EINVAL (tenant 0, from > to), KR_ENOTFOUND (the
 * tenant has no record in the range), KR_ECORRUPT (the journal disagrees with
 * itself), KR_ENOMEM, LMDB errors.
 */
KR_MUST_CHECK kr_err exp_build(struct journal *j, const struct exp_options *o, char **doc,
                               size_t *len, struct exp_built *out);

/* What exp_verify found. */
struct exp_report {
    kr_err result; /* KR_OK when every check holds (also exp_verify's return) */
    /* What the export holds (valid as far as verification got). */
    uint64_t tenant;
    uint64_t from, to;        /* seq of its first and last record */
    uint64_t records;         /* the tenant's records */
    uint64_t format1;         /* of which format-1 (no tseq) */
    uint64_t stripped;        /* of which with an erased payload */
    uint64_t first_tseq;      /* tseq of the first format-2 record (0: none) */
    uint64_t last_tseq;       /* tseq of the last record */
    bool from_start;          /* the first record is the tenant's first (tseq shows it) */
    uint64_t keys;            /* signing keys in the key chain */
    uint64_t checkpoints;     /* signed checkpoints */
    uint64_t checkpoint_size; /* the newest one's tree size */
    uint8_t root[KR_HASH_LEN];
    char origin[KR_ORIGIN_MAX + 1];
    /* Where the first failed check is (empty when none): e.g.
     * "records[3] seq 1234 tseq 17: field sig", and what it is. */
    uint64_t bad_seq, bad_tseq; /* 0 when the fault is not in a record */
    char where[160];
    char what[256];
};

/*
 * Verifies the document buf[0..len) (hostile) with `pk`, the trusted public
 * key of key 1. Returns the verdict, also in out->result: KR_OK; KR_ETOOLARGE
 * (a bound of kr_limits.h exceeded); KR_ECORRUPT (malformed, or a value that
 * does not hold); KR_EBADSIG (a signature fails or the key chain does not
 * start at pk); KR_ENOMEM. out is always filled.
 */
KR_MUST_CHECK kr_err exp_verify(const uint8_t *buf, size_t len, const uint8_t pk[KR_PUBKEY_LEN],
                                struct exp_report *out);

/*
 * Continuing a verified export ("checking exports one after another" in
 * docs/auditing.md). A state is what a successful verification learned that
 * the next one needs: the journal id, origin and tenant, the seq and tseq of
 * the export's last record, and its newest signed checkpoint note. It is one
 * line of compact JSON; exp_state_parse treats it as hostile (at most
 * KR_EXPORT_STATE_MAX bytes, exactly the members and byte form written, a
 * checkpoint note that parses and names a size >= the last seq).
 *
 * exp_verify_since(since) verifies the document as exp_verify does, and then:
 * its journal id, origin and tenant are the state's (else KR_EINVAL); the
 * state's note verifies with the document's key chain (rooted in pk) by the
 * key valid at its size (KR_EBADSIG); the document's "since" proof shows the
 * state's checkpoint is a prefix of the document's newest (KR_ECORRUPT: a
 * history rewritten since); its first record follows the state's last one
 * (tseq + 1, signed in the record: no record of the tenant left out
 * between the two exports; and a seq above the state's, a cross-check;
 * KR_ECORRUPT). A document without "since", or with it for
 * another size, is refused (KR_ECORRUPT). With next != NULL and a KR_OK
 * verdict, *next gets the state to continue from (the caller frees it).
 */
struct exp_state;

/* Parses a state (hostile). Errors: KR_ETOOLARGE, KR_ECORRUPT, KR_ENOMEM. */
KR_MUST_CHECK kr_err exp_state_parse(const uint8_t *buf, size_t len, struct exp_state **out);
/* Reads and parses the state at path. Errors: those of exp_state_parse,
 * KR_ENOTFOUND, KR_EIO. */
KR_MUST_CHECK kr_err exp_state_load(const char *path, struct exp_state **out);
/* Writes the state to path (a temporary file, flushed, renamed). KR_EIO. */
KR_MUST_CHECK kr_err exp_state_save(const struct exp_state *s, const char *path);
/* The state's serialized form (malloc'd, NUL-terminated, *len bytes), or NULL. */
char *exp_state_dump(const struct exp_state *s, size_t *len);
/* The tree size of the state's checkpoint (for exp_options.since_size). */
uint64_t exp_state_size(const struct exp_state *s);
/* The seq and tseq of the last record the state's export held. */
uint64_t exp_state_last_seq(const struct exp_state *s);
uint64_t exp_state_last_tseq(const struct exp_state *s);
/* The tenant the state's export was of. */
uint64_t exp_state_tenant(const struct exp_state *s);
void exp_state_free(struct exp_state *s);

/* exp_verify, continuing from since (NULL: exactly exp_verify, and next
 * gets the state of this export). Errors: those of exp_verify, KR_EINVAL. */
KR_MUST_CHECK kr_err exp_verify_since(const uint8_t *buf, size_t len,
                                      const uint8_t pk[KR_PUBKEY_LEN],
                                      const struct exp_state *since, struct exp_state **next,
                                      struct exp_report *out);

/* Formats UTC nanoseconds as written in exports: "2026-04-01T00:00:00.123456789Z"
 * and "2026-04-01T09:00:00.123456789+09:00" (JST, UTC+9, no DST). */
#define EXP_UTC_LEN 30
#define EXP_JST_LEN 35
void exp_format_utc(uint64_t ns, char out[EXP_UTC_LEN + 1]);
void exp_format_jst(uint64_t ns, char out[EXP_JST_LEN + 1]);

#endif
