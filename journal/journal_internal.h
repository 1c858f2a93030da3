/*
 * journal_internal.h: the journal's state, shared by the journal's own modules
 * (journal.c, cursor.c, verify.c). Not part of the public interface.
 */
#ifndef KR_JOURNAL_INTERNAL_H
#define KR_JOURNAL_INTERNAL_H

#include "endian_be.h"
#include "envreg.h"
#include "journal.h"
#include "merkle.h"
#include "note.h"

#include <lmdb.h>
#include <pthread.h>
#include <sys/types.h>

/* Names of the LMDB databases. */
#define JRN_DB_EVENTS      "events"      /* seq (u64 BE) -> record */
#define JRN_DB_TREE        "tree"        /* post-order index (u64 BE) -> node hash */
#define JRN_DB_STREAMS     "streams"     /* meta format <= 2: tenant, len, stream, version -> seq */
#define JRN_DB_HEADS       "heads"       /* tenant, len, stream -> version u64, seq u64 */
#define JRN_DB_LINKS       "links"       /* seq -> prev seq u64, jump seq u64 (same stream) */
#define JRN_DB_TENANTS     "tenants"     /* tenant, seq -> tseq u64 (format 2) */
#define JRN_DB_CHECKPOINTS "checkpoints" /* tree size (u64 BE) -> signed note */
#define JRN_DB_META        "meta"        /* name -> value */
/* LMDB named databases reserved for the journal and, later, the views. */
#define JRN_MAX_DBS     64
#define JRN_MAX_READERS 512

/* meta keys */
#define JRN_META_FORMAT     "format"        /* u32 BE: JRN_META_FORMAT_CURRENT */
#define JRN_META_ID         "journal_id"    /* 16 bytes */
#define JRN_META_CHECKPOINT "checkpoint"    /* newest signed note */
#define JRN_META_EPOCH      "epoch_needed"  /* u64 BE: the size truncated to */
#define JRN_META_REPL_POS   "repl_position" /* u64 BE: a follower's stream position */

/* The meta `format` value: 1 = format-1 records and an empty tenants index
 * value; 2 = every tenants index entry holds its record's tseq and new records
 * are format 2 (older format-1 records may precede them); 3 = as 2, with the
 * stream index as a head per stream and a link per record (`heads`, `links`)
 * instead of an entry per record (`streams`). Formats 1 and 2 are the legacy
 * stream index: readers still read it, a writable open migrates it. */
#define JRN_META_FORMAT_1       1u
#define JRN_META_FORMAT_2       2u
#define JRN_META_FORMAT_CURRENT 3u

/* Test-only: while nonzero, jrn_create makes a meta-format-1 journal and
 * writers of such a journal keep writing format-1 records (no migration), so
 * tests can build the journals older kiroku wrote. Never set in production. */
extern _Atomic int jrn_testing_format1;
/* Test-only: while nonzero, jrn_create makes a journal with the legacy stream
 * index (meta format 2, or 1 with jrn_testing_format1) and writers of such a
 * journal keep writing it (no migration), so tests can build what older
 * kiroku wrote and migrate it. Never set in production. */
extern _Atomic int jrn_testing_legacy_index;
/* Test-only: while positive, each transaction of the stream index migration
 * decrements it, and the one that brings it to 0 makes the open fail with
 * KR_EIO, as if the process died there (what it committed stays). While
 * nonzero, jrn_testing_migrate_records replaces KR_MIGRATE_TXN_RECORDS. */
extern _Atomic int jrn_testing_migrate_txns;
extern _Atomic uint64_t jrn_testing_migrate_records;
/* Test-only: while positive, each jrn_strip transaction decrements it, and
 * the one that brings it to 0 makes jrn_strip return KR_EIO at once, as if
 * the process died there (what it committed stays). */
extern _Atomic int jrn_testing_strip_txns;
/* Test-only: the records the last writable open's start check examined, so
 * tests can see its work stay bounded without timing it. */
extern _Atomic uint64_t jrn_testing_start_checked;

/* No journal holds 2^62 records: a larger size can only be forged, and the
 * Merkle post-order numbering needs sizes below 2^63. */
#define JRN_SIZE_MAX (1ull << 62)

/* Stream index key: tenant(8) len(1) stream(len), then (legacy `streams`
 * only) version(8). A `heads` key is the prefix alone. */
#define JRN_STREAM_KEY_MAX (8 + 1 + KR_STREAM_MAX + 8)
/* Values of `heads` (version, seq) and `links` (prev seq, jump seq). */
#define JRN_HEAD_LEN 16
#define JRN_LINK_LEN 16

struct journal;

/* Tenants a batch remembers the newest tseq of: a batch of one busy tenant's
 * events looks its count up once. Direct-mapped; a collision costs a lookup. */
#define TSEQ_CACHE_LOG2 6
struct tseq_slot {
    uint64_t tenant, tseq;
    bool used;
};

/* One write transaction's records: the writer's batch, or a follower's apply
 * session (replica.c). Caller-owned; the cursors belong to txn. */
struct jrn_batch {
    struct journal *j;
    MDB_txn *txn;
    MDB_cursor *c_events, *c_tree, *c_links, *c_tenants;
    kr_err err;     /* first storage error inside the tree emit callback */
    uint64_t tseqs; /* tseq values handed out in this batch */
    struct tseq_slot tcache[1u << TSEQ_CACHE_LOG2];
};

/* Zeroes b and opens its cursors in txn (a write transaction of j). */
kr_err jrn_batch_open(struct journal *j, MDB_txn *txn, struct jrn_batch *b);

/* Stores record r, decoded from value (len bytes, written as they are), as
 * record j->size + 1: the events entry, its stream index entries, its
 * tenants entry and the new tree nodes; advances j->size, j->last_leaf,
 * j->last_time and j->frontier (the caller snapshots them to undo).
 * KR_ECORRUPT if r is not the next seq, not format 2, its tseq is not its
 * tenant's next or its version not its stream's next; LMDB's errors. Checks
 * nothing else (signatures, prev, time: the caller's). */
kr_err jrn_batch_store(struct jrn_batch *b, const struct jrn_record *r, const uint8_t *value,
                       size_t len);

/* Stores j->note (signed at j->size) in meta, and in the checkpoints database
 * when one is due (KR_CHECKPOINT_EVERY_RECORDS / _NS), in txn. */
kr_err jrn_keep_checkpoint(struct journal *j, MDB_txn *txn);

/* Writes DIR/checkpoint from j->note now (temp file, fsync, rename). */
kr_err jrn_write_checkpoint_file(struct journal *j);

/* Commits txn and, with one flush per commit, flushes its meta page too:
 * for commits outside the writer, which nothing else covers. */
kr_err jrn_commit_durable(struct journal *j, MDB_txn *txn);

/* The writer's tail state (size, newest leaf, frontier, kept checkpoint,
 * newest note), saved before a write transaction and put back if it aborts:
 * by the writer and by a follower's apply session (replica.c). */
struct jrn_tail {
    uint64_t size, kept_size, kept_time;
    uint8_t last_leaf[KR_HASH_LEN];
    struct mrk_frontier frontier;
    char note[KR_NOTE_MAX + 1];
    size_t note_len;
};
void jrn_tail_take(const struct journal *j, struct jrn_tail *s);
void jrn_tail_restore(struct journal *j, const struct jrn_tail *s);

struct journal {
    char dir[KR_PATH_MAX];
    MDB_env *env;
    MDB_dbi db_events, db_tree, db_streams, db_tenants, db_checkpoints, db_meta;
    MDB_dbi db_heads, db_links;
    bool has_streams;  /* the legacy `streams` database exists (db_streams valid) */
    bool has_heads;    /* `heads` and `links` exist (db_heads, db_links valid) */
    bool legacy_index; /* meta format < 3: the stream index is `streams` */
    bool read_only;
    bool no_appends; /* see jrn_options */
    const struct kr_clock *clock;
    const struct jrn_views *views; /* NULL = none */
    int lock_fd;                   /* flock'd DIR/journal/writer.lock; -1 when read-only */

    uint8_t journal_id[16];
    char origin[KR_ORIGIN_MAX + 1];
    uint32_t meta_format; /* meta `format` as opened (after any migration) */
    /* Truncated (jrn_truncate) below its old size: the signing key may sign
     * nothing more until jrn_new_epoch (meta `epoch_needed`). Under mu. */
    bool epoch_needed;
    /* During jrn_new_epoch: the key that signs the batch's checkpoint (the
     * new one: the old key may have signed this size in the old history),
     * and the meta entry the batch removes. Under mu. */
    struct kr_signing_key *checkpoint_key;
    bool epoch_clear;
    uint32_t write_format; /* record format the writer writes */

    /* Signing keys loaded in this process. `signing` points into keys[] and
     * changes only under mu, so a submission signs with the key current at
     * its queue position. */
    struct kr_signing_key *keys; /* KR_KEYS_MAX, from kr_keys_alloc */
    size_t nkeys;
    struct kr_signing_key *signing;

    /* Writer state: touched only by the writer thread (or by create/open
     * before it starts). */
    uint64_t size;
    uint8_t last_leaf[KR_HASH_LEN];
    struct mrk_frontier frontier;
    uint64_t kept_size; /* size and time of the newest checkpoint kept in */
    uint64_t kept_time; /* the checkpoints database */
    uint64_t file_time; /* when DIR/checkpoint was last written (or tried), mono ns */
    bool file_behind;   /* DIR/checkpoint is older than the newest commit */
    bool file_retry;    /* the last write failed: the next commit tries again */
    bool one_flush;     /* MDB_NOMETASYNC: a commit's meta page is made durable by
                         * the next commit's data flush or by mdb_env_sync */
    uint8_t *encode_buf;
    char note[KR_NOTE_MAX + 1];
    size_t note_len;

    /* Queue, guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t writer_cv; /* queue not empty, or closing */
    pthread_cond_t space_cv;  /* queue has room, or rotation done */
    pthread_cond_t sign_cv;   /* an append awaits a signer, or closing */
    struct jrn_append *head, *tail;
    struct jrn_append *sign_next; /* first append no signer has claimed */
    size_t signers_idle;
    size_t queued_events;
    size_t space_waiters;
    uint64_t last_time; /* newest time handed out */
    bool closing;
    bool rotating;
    kr_err failed; /* KR_EIO after a failed commit: the journal is stopped */
    atomic_int writer_waiting;
    pthread_t writer;
    bool writer_started;
    pthread_t signers[KR_SIGNERS_MAX];
    unsigned signers_started;

    _Atomic uint64_t committed; /* size after the newest commit */

    /* The durable hook (jrn_options.durable). The writer tells it of each
     * durable size once (durable_size: the last size told); a held batch's
     * size and note wait in held_size/held_note until its flush. */
    const struct jrn_durable_hook *durable;
    const struct jrn_key_hook *key_made;
    uint64_t durable_size;
    uint64_t held_size;
    char held_note[KR_NOTE_MAX + 1];
    size_t held_note_len;
    /* Appends durable but not released (hook->hold), in seq order, linked by
     * next_; released = the largest jrn_release size. Under rel_mu. */
    pthread_mutex_t rel_mu;
    struct jrn_append *rel_head, *rel_tail;
    uint64_t released;
    kr_err rel_stop; /* jrn_stop_appends' error, for appends held later */
    bool stopped;    /* under mu: jrn_stop_appends set j->failed */

    /* A follower (no_appends): an apply session is open (under mu), and the
     * key valid after its newest commit, for jrn_get_info (under mu). */
    bool replica_active;
    uint32_t replica_key_id;
    uint8_t replica_pk[KR_PUBKEY_LEN];

    struct kr_env_reg reg; /* DIR/journal in the process's open environments */
    pthread_mutex_t stats_mu;
    struct jrn_stats stats;
};

/* Builds the stream-index key prefix (tenant, len, stream) into key and
 * returns its length; the caller appends a version. */
size_t jrn_stream_prefix(uint8_t key[JRN_STREAM_KEY_MAX], uint64_t tenant, const char *stream,
                         size_t stream_len);

/* The newest version of (tenant, stream) and the seq of its record, through
 * txn, from either stream index layout; both 0 when the stream has no
 * records. KR_ECORRUPT for a malformed entry. */
kr_err jrn_stream_head(struct journal *j, MDB_txn *txn, uint64_t tenant, const char *stream,
                       size_t len, uint64_t *version, uint64_t *seq);

/* The seq of version `version` of (tenant, stream), through txn, from either
 * layout: KR_ENOTFOUND if the stream has no such version (0 or past its
 * head), KR_ECORRUPT if the links do not lead to it. The caller still checks
 * that the record found is the one it wants (an index is not trusted). */
kr_err jrn_stream_seq(struct journal *j, MDB_txn *txn, uint64_t tenant, const char *stream,
                      size_t len, uint64_t version, uint64_t *seq);

/* The skew-binary jump of version v >= 2 (1 for v = 1): the version a
 * record's jump link names. Jumps make any version of a stream reachable
 * from its head in O(log version) links (docs/journal-format.md). */
uint64_t jrn_skew_jump(uint64_t v);

/* The link of record seq (prev, jump: seqs of versions v-1 and
 * jrn_skew_jump(v) of its stream, 0 for a version-1 record). KR_ECORRUPT if
 * it is missing or malformed. */
kr_err jrn_link_get(struct journal *j, MDB_txn *txn, uint64_t seq, uint64_t *prev, uint64_t *jump);

/* From record seq at version `version` of its stream, follows links down to
 * version target (1 <= target <= version) and sets *out to its seq; at most
 * KR_STREAM_SEEK_MAX links, each to a smaller seq, or KR_ECORRUPT. */
kr_err jrn_link_seek(struct journal *j, MDB_txn *txn, uint64_t seq, uint64_t version,
                     uint64_t target, uint64_t *out);

/* The newest tseq of `tenant` (0 if it has no records) through c, a cursor on
 * the tenants database; positions c on that entry. KR_ECORRUPT if the entry
 * holds no tseq (an unmigrated journal) or a malformed one. */
kr_err jrn_tenant_last(MDB_cursor *c, uint64_t tenant, uint64_t *tseq);

/* Opens the LMDB environment of dir read-only and reads the journal's
 * identity, and nothing else: for verification, which must report damage
 * rather than refuse to open. Close with jrn_close. */
kr_err jrn_open_raw(const char *dir, struct journal **out);

/* Reads stored tree node (level, index) through a read or write txn; the
 * mrk_node_fn for proofs. ctx is a struct jrn_tree_ctx. */
struct jrn_tree_ctx {
    struct journal *j;
    MDB_txn *txn;
};
kr_err jrn_tree_node(void *ctx, unsigned level, uint64_t index, uint8_t out[KR_HASH_LEN]);

#endif
