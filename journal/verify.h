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
 * after it), and that the stream and tenant indexes name the record (the
 * record's links to versions v-1 and J(v) of its stream, its stream's head at
 * or past it; then every head names its stream's newest record and the heads'
 * versions add up to the records; a legacy journal's entry per record). Then every
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

/* A saved verification state: what a verification learned that the next
 * one needs to check only the records appended since (see "Incremental
 * verification" below). Opaque; owned by whoever got it, freed with
 * jrn_verify_state_free. */
struct jrn_verify_state;

struct jrn_verify_options {
    bool fast;            /* skip per-record signatures and index checks */
    bool have_root_key;   /* trust root_key instead of DIR/keys/journal-1.pub */
    uint8_t root_key[32]; /* public key of key 1 */
    unsigned threads;     /* 0 = one per online CPU */
    /* Called from the calling thread now and then; may be NULL. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    /* Incremental mode: check only the records after since's size, from its
     * frontier, links, keys and counts; NULL = everything. */
    const struct jrn_verify_state *since;
    /* When the verdict is KR_OK, put the state to continue from into
     * report.state (the caller frees it). */
    bool want_state;
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
    uint64_t checked;          /* records this run read and checked (all, or those after since) */
    struct jrn_verify_state *state; /* with want_state and a KR_OK verdict; else NULL */
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

/* ---- Incremental verification ----
 *
 * A state holds: the journal id and origin; the size and root it verified and
 * the newest checkpoint's signed note at that size; the Merkle frontier (the
 * roots of the perfect subtrees of the size's set bits); the last record
 * (raw) with its inclusion path, for the link and the time order; the key
 * records (raw) that introduced every key, in order; whether a format-2
 * record was seen; and every tenant's record count, for the tseq check. The
 * file ends with its SHA-256 (against corruption, not attack).
 *
 * A state is hostile input. jrn_verify_state_load parses it strictly (exact
 * lengths, bounds from kr_limits.h, tenants in increasing order, the frontier
 * folding to the root, the last record included in that root). With
 * options.since, verification then binds it to the journal and to the trust
 * anchor before using it: the journal id and origin must be the journal's;
 * the first key record must be the genesis of the root key, and each later
 * one signed by the key before it; the note must be signed by a key of that
 * chain valid at its size and name the state's size and root. A state that
 * fails is refused (the call returns KR_EINVAL for another journal's,
 * KR_EBADSIG for a chain or note that does not verify, out->what says why).
 * The per-tenant counts are not signed by the journal: they are as good as
 * the auditor's copy of the file, which the auditor keeps (see
 * docs/auditing.md).
 *
 * Then the pass checks the records after the state's size exactly as a full
 * pass does, plus: the journal still has at least the state's size (else the
 * verdict names the first missing seq: rolled back or truncated), and the
 * consistency proof from the state's (size, root) to the stored tree (a
 * rewritten history fails at the state's size). Records at or below the
 * state's size are not read: damage there that keeps the root is for the
 * full verification to find. */

/* Reads and parses the state at path. Errors: KR_ENOTFOUND, KR_EIO;
 * KR_ETOOLARGE over KR_VSTATE_MAX; KR_ECORRUPT for any malformation or a
 * checksum that does not match. */
KR_MUST_CHECK kr_err jrn_verify_state_load(const char *path, struct jrn_verify_state **out);

/* The same, from len bytes at buf (the file's contents). */
KR_MUST_CHECK kr_err jrn_verify_state_parse(const uint8_t *buf, size_t len,
                                            struct jrn_verify_state **out);

/* Writes s to path atomically (a temporary file, fsync, rename), mode 0644. */
KR_MUST_CHECK kr_err jrn_verify_state_save(const struct jrn_verify_state *s, const char *path);

/* The size the state verified. */
uint64_t jrn_verify_state_size(const struct jrn_verify_state *s);

void jrn_verify_state_free(struct jrn_verify_state *s);

#endif
