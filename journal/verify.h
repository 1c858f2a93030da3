/*
 * verify.h: replaying a journal and checking everything an auditor can check
 * with only the journal's first public key.
 *
 * For every record, in seq order: it is present (no gaps), decodes strictly,
 * carries its own seq, links to the previous record's leaf hash, does not go
 * back in time, its payload (unless stripped by erasure) matches its
 * commitment, and its leaf hash and every Merkle node above it match the
 * stored tree. Full mode also checks each record's Ed25519 signature with the
 * key that was current at its seq (a key retired by a rotation signs nothing
 * after it), and that the stream and tenant indexes name the record. Then every
 * stored checkpoint, and DIR/checkpoint (which must exist), must carry a valid signature by a
 * journal key and the root of the recomputed tree at its size; the newest one must cover every
 * record.
 *
 * Per-tenant numbers: every format-2 record's tseq is its place among its
 * tenant's records (format-1 records, which state none, count too), and in
 * full mode the tenants index holds the same number for every record.
 *
 * The trust anchor is the public key of key 1. Later keys are learned from
 * journal.key_added and journal.epoch_started records, each signed by the key
 * before it. A checkpoint must be signed by a key valid at its size; at an
 * epoch_started record's size that is the epoch's new key, so an old key's
 * checkpoint beyond the fork is refused. Each epoch_started record must name
 * a signed checkpoint of this journal (by a key it had before) at or beyond
 * the fork.
 *
 * Records are checked in parallel chunks of 2^KR_VERIFY_CHUNK_LOG2 (each a
 * perfect Merkle subtree), so verification scales with cores.
 */
#ifndef KR_VERIFY_H
#define KR_VERIFY_H

#include "hash.h"
#include "kr_error.h"

#include <stdbool.h>
#include <stdint.h>

struct jrn_verify_options {
    bool fast;            /* skip per-record signatures and index checks */
    bool have_root_key;   /* trust root_key instead of DIR/keys/journal-1.pub */
    uint8_t root_key[32]; /* public key of key 1 */
    unsigned threads;     /* 0 = one per online CPU */
    /* Called from the calling thread now and then; may be NULL. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
};

struct jrn_verify_report {
    uint64_t records;          /* records in the journal */
    uint64_t checkpoints;      /* signed checkpoints checked */
    uint64_t keys;             /* signing keys the journal has had */
    uint64_t epochs;           /* 1 + journal.epoch_started records */
    uint64_t stripped;         /* records whose payload was erased */
    uint64_t tenants;          /* tenants with records (0, the platform, included) */
    uint8_t root[KR_HASH_LEN]; /* root of the whole journal */
    kr_err result;             /* KR_OK when every check holds */
    uint64_t bad_seq;          /* first bad record, or the size of the bad checkpoint; 0 if none */
    char what[256];            /* what is wrong, for people */
};

/* Verifies the journal in data directory `dir`, read-only (a writer in
 * another process may be running). Returns KR_OK when the verification ran:
 * the verdict is in out->result. Returns an error when it could not run (no
 * journal, no key). Do not call it on a directory this process has open:
 * LMDB forbids opening one environment twice in a process (closing the second
 * handle drops the first one's locks); use jrn_verify_journal then. */
KR_MUST_CHECK kr_err jrn_verify(const char *dir, const struct jrn_verify_options *o,
                                struct jrn_verify_report *out);

struct journal;
/* The same, on a journal this process has open (read-only or writable: it
 * reads in its own read transactions while the writer goes on). */
KR_MUST_CHECK kr_err jrn_verify_journal(struct journal *j, const struct jrn_verify_options *o,
                                        struct jrn_verify_report *out);

#endif
