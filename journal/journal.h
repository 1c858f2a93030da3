/*
 * journal.h: kiroku's append-only, signed, Merkle-checkpointed event journal.
 *
 * A journal lives in a data directory:
 *   DIR/journal/      LMDB environment (data.mdb, lock.mdb) with named databases
 *                     events, tree, heads, links, tenants, checkpoints, meta
 *                     (docs/journal-format.md)
 *   DIR/keys/         signing keys (journal-<id>.key, mode 0600) and public keys
 *   DIR/checkpoint    the newest signed checkpoint, also kept outside LMDB so a
 *                     restore that rolls history back can be noticed
 *
 * Appending. Callers submit appends of 1..KR_APPEND_MAX_EVENTS events; a
 * submission only queues them. A pool of signer threads (one per core)
 * computes each payload commitment and Ed25519 signature (a synchronous
 * jrn_append, whose caller would only wait, signs its own events after
 * taking its time and queue position, sparing two thread hand-offs); one
 * writer thread
 * gathers whatever is signed into one LMDB write transaction, assigns seq and
 * prev, extends the Merkle tree, signs one checkpoint for the batch and
 * commits with fsync. An append completes only after its batch is durable. All events of one append
 * commit together or not at all.
 *
 * Ordering and time. An append takes its time and its place in the queue in
 * one step, so record times never decrease along seq, whatever the wall clock
 * does; seq is the only order.
 *
 * Concurrency control. Each event names the version its stream has now (0 for
 * a new stream); the record gets that version + 1. If the stream has moved on,
 * the whole append fails with KR_ECONFLICT and nothing of it is written; the
 * caller re-reads and retries.
 *
 * Failure. KR_EFULL (disk or map full) fails the batch it hit and nothing else:
 * the journal keeps serving reads and takes writes again when there is room.
 * An I/O error on commit stops the journal: every later append returns KR_EIO
 * (no silent retry after a failed fsync); reopen after fixing the cause. The
 * same happens when a full disk hits LMDB's meta page write (possible on
 * copy-on-write file systems): LMDB cannot go on, so neither can the handle,
 * and reads also fail until it is reopened. Nothing acknowledged is lost.
 *
 * Threads. All functions may be called from any thread, except that
 * jrn_close must not race with other calls on the same journal.
 */
#ifndef KR_JOURNAL_H
#define KR_JOURNAL_H

#include "clock.h"
#include "hash.h"
#include "keys.h"
#include "kr_error.h"
#include "kr_limits.h"
#include "record.h"

#include <lmdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal;

/* The journal's own stream (tenant 0): its genesis record and key changes. */
#define JRN_SYSTEM_STREAM      "journal"
#define JRN_TYPE_CREATED       "journal.created"
#define JRN_TYPE_KEY_ADDED     "journal.key_added"
#define JRN_TYPE_EPOCH_STARTED "journal.epoch_started"
#define JRN_SYSTEM_ACTOR       "system"

/* Views: derived data kept in the journal's own LMDB environment and updated
 * in the same write transaction as each append (read-your-writes; a view
 * never lags or leads the journal). The projections layer supplies these
 * hooks; the journal knows nothing of what a view holds. All hooks run on
 * the thread that owns the transaction they get, and must keep no state
 * outside LMDB that an aborted transaction would leave stale. */
struct jrn_views {
    void *ctx;
    /* Opens the views' named databases in txn, creating them when `create`
     * (a writable journal). Called once while the journal opens. */
    kr_err (*open)(void *ctx, MDB_txn *txn, bool create);
    /* Applies one record (seq assigned, payload present). KR_ECONFLICT or
     * KR_EINVAL reject the append that holds the record: nothing of it is
     * written and its appender gets that error (a constraint the command
     * could not see, such as a name taken meanwhile). Any other error fails
     * the whole batch like a storage error. A view must apply every record
     * the journal holds in the same way again on replay. */
    kr_err (*apply)(void *ctx, MDB_txn *txn, const struct jrn_record *r);
    /* Applies one record already stored, when the views catch up at open or
     * are rebuilt; NULL = apply. A stored record the views cannot apply is
     * the journal's corruption (KR_ECORRUPT), not an append to refuse. */
    kr_err (*apply_stored)(void *ctx, MDB_txn *txn, const struct jrn_record *r);
    /* Called once per write transaction after its records, with the journal
     * size the views now reflect; views store it (see applied). */
    kr_err (*batch_end)(void *ctx, MDB_txn *txn, uint64_t size);
    /* The journal size the views reflect (0 for empty views). */
    kr_err (*applied)(void *ctx, MDB_txn *txn, uint64_t *size);
    /* Empties every view (for a rebuild). */
    kr_err (*drop)(void *ctx, MDB_txn *txn);
};

/* Where a writable open's start check found the journal damaged. */
struct jrn_start_fault {
    uint64_t seq;   /* the first bad record, or the size of the bad checkpoint */
    char what[160]; /* what is wrong, for the operator */
};

/* The durable hook, for publishers (api/cluster.c): told of every durable
 * size, and (hold) keeping appends from completing until the records reached
 * a quorum of other machines. Caller-owned; must outlive the journal. */
struct jrn_durable_hook {
    void *ctx;
    /* On the writer thread, whenever records up to `size` became durable
     * (sizes strictly increasing), with the checkpoint note signed at `size`
     * (len bytes, not NUL-terminated, valid only during the call). Copy and
     * return at once: the writer runs no other batch meanwhile. */
    void (*durable)(void *ctx, uint64_t size, const char *note, size_t len);
    /* true (quorum): an append's done callback is not called when its batch
     * is durable but only once jrn_release(j, s) was called with s >= its
     * last seq (or with its error, see jrn_stop_appends and jrn_close). Such
     * a callback runs on the thread calling jrn_release or jrn_stop_appends
     * (the writer's if the release came first): it must not wait for
     * another append to complete (jrn_append); jrn_submit is fine. The
     * journal's own appends wait too (jrn_rotate_key, jrn_new_epoch), and so
     * does whoever waits for completions (dom_wait in dom_close): a
     * publisher that stops for good calls jrn_stop_appends first. */
    bool hold;
};

/* The key hook (jrn_options.key_made, NULL = none), for clusters: told of
 * every signing key the journal makes (jrn_rotate_key, jrn_new_epoch) after
 * its files are written and before it signs anything, so that the key can be
 * stored where another node will need it (api/keyring.h). On the calling
 * thread. An error other than KR_OK stops the rotation or epoch before any
 * record: the key's files are removed and the call returns that error.
 * key_made's KR_EEXIST (the store holds another key under that id: made by
 * a node whose history this journal does not hold) makes jrn_new_epoch try
 * the next id. Caller-owned; must outlive the journal. */
struct kr_signing_key;
struct jrn_key_hook {
    void *ctx;
    kr_err (*key_made)(void *ctx, const uint8_t journal_id[16], const struct kr_signing_key *key);
};

struct jrn_options {
    const char *dir;               /* data directory (required) */
    uint64_t map_size;             /* LMDB map size in bytes; 0 = KR_MAP_SIZE_DEFAULT */
    const struct kr_clock *clock;  /* NULL = system real-time clock */
    bool read_only;                /* no writer, no signing key: for readers and verify */
    unsigned signers;              /* signing threads; 0 = one per online CPU */
    const struct jrn_views *views; /* NULL = no views; caller-owned, outlives the journal */
    bool views_no_catch_up;        /* do not apply records the views lack at open
                                    * (for a caller about to rebuild them) */
    bool no_appends;               /* writable for the views only: no signing key
                                    * is loaded and no writer runs, appends get
                                    * KR_ECLOSED (rebuilding views, e.g. in a
                                    * copy that holds no secret key) */
    bool two_flushes;              /* flush each commit's meta page on its own (LMDB's
                                    * default) instead of one flush per commit
                                    * (see "Durability" in docs/journal-format.md) */
    const struct jrn_durable_hook *durable; /* NULL = none; jrn_create ignores it */
    const struct jrn_key_hook *key_made;    /* NULL = none; jrn_create ignores it */
    /* NULL, or filled when the start check refuses the journal (KR_ECORRUPT) */
    struct jrn_start_fault *start_fault;
};

/* What jrn_create made. */
struct jrn_info {
    uint8_t journal_id[16];
    char origin[KR_ORIGIN_MAX + 1]; /* checkpoint origin and key name */
    uint32_t key_id;                /* current signing key */
    uint8_t pk[KR_PUBKEY_LEN];      /* its public key */
    uint64_t size;                  /* records in the journal */
};

/* Creates a new journal in o->dir: a signing key (id 1), the LMDB environment
 * and the genesis record (seq 1). The data directory is built beside it
 * (o->dir + ".init-tmp") and renamed into place when complete, so a crash
 * leaves either no journal or a whole one. Missing parent directories are
 * made (mode 0700). KR_EEXIST if o->dir exists and is not empty. Fills *info
 * when not NULL. */
KR_MUST_CHECK kr_err jrn_create(const struct jrn_options *o, struct jrn_info *info);

/* Opens an existing journal; KR_ENOTFOUND (creating nothing) if o->dir holds
 * none. Writable opens take an exclusive lock on the journal (KR_EBUSY if
 * another process has it), load the current signing key, check the journal's
 * tail and start the signer and writer threads.
 *
 * The start check (writable opens that may append): the newest checkpoint's
 * signature (by the current key or the one before) and its root against the
 * stored tree; then every record from the newest kept checkpoint's size on (at most
 * KR_START_CHECK_MAX, the newest ones): it decodes, carries its seq, links to
 * the previous record's leaf hash, does not go back in time, its leaf hash is
 * the stored tree's, its payload (unless stripped) matches its commitment and
 * its signature verifies with its key (DIR/keys/journal-N.pub, or the loaded
 * secret key). Any failure refuses the open with KR_ECORRUPT and, when
 * o->start_fault is set, the first bad seq and what is wrong: appending on top
 * of a damaged journal would bury the damage under new signatures. The full
 * check stays `kiroku verify`'s.
 *
 * Then a writable open migrates a journal written by older kiroku: the tenant
 * counts of a meta-format-1 journal, and the stream index of a meta format 1
 * or 2 (an entry per record) to a head per stream and a link per record (meta
 * format 3), in bounded transactions, resumed after a crash
 * (docs/journal-format.md). A read-only open reads either layout as it is.
 * A failed migration fails the open (its LMDB error, e.g. KR_EFULL).
 *
 * A journal already open in this process, read-only or
 * not, gives KR_EBUSY: LMDB must not open one environment twice in a process
 * (closing either handle would drop the other's locks). Readers belong in
 * other processes, or use the open handle. On success *out must be closed
 * with jrn_close. */
KR_MUST_CHECK kr_err jrn_open(const struct jrn_options *o, struct journal **out);

/* Waits for every submitted append to complete, stops the writer, writes the
 * newest checkpoint to DIR/checkpoint and frees the journal. Accepts NULL. */
void jrn_close(struct journal *j);

/* Identity, current key and committed size. */
void jrn_get_info(struct journal *j, struct jrn_info *out);

/* Number of durable records (the newest checkpoint's tree size). On a
 * read-only handle, what other processes have committed up to now. */
uint64_t jrn_size(struct journal *j);

/* ---- Appending ---- */

/* One event to append. Caller-owned, and like its append it must stay valid
 * from submission to completion. The journal copies stream, type and actor at
 * submission (their buffers may be reused at once); the payload is read until
 * completion and must not change meanwhile: the writer hashes it again before
 * writing and fails the append with KR_EINVAL if it did. */
struct jrn_event {
    /* inputs */
    uint64_t tenant;
    const char *stream; /* see jrn_record_check_fields for the rules */
    size_t stream_len;
    const char *type;
    size_t type_len;
    const char *actor;
    size_t actor_len;
    uint64_t expected_version; /* the stream's current version; 0 = new stream */
    const uint8_t *payload;    /* must stay valid until completion */
    size_t payload_len;
    /* outputs, valid once the append completed with KR_OK */
    uint64_t seq;
    uint64_t tseq; /* its number among its tenant's records */
    uint64_t time_ns;
    uint32_t key_id;
    uint8_t commitment[KR_HASH_LEN];
    uint8_t sig[JRN_SIG_LEN];
    /* private to the journal: stream, type and actor as submitted */
    char str_[KR_STREAM_MAX + KR_TYPE_MAX + KR_ACTOR_MAX];
};

struct jrn_append;
/* Completion: called exactly once per accepted submission, from the writer
 * thread, after the batch is durable (err KR_OK) or failed. Keep it short: the
 * writer runs no other batch meanwhile. The append may be freed inside it, and
 * jrn_submit may be called from it (it never waits there: it is admitted past
 * the queue limit, or refused with KR_EBUSY during a key rotation). jrn_append
 * (KR_EINVAL), jrn_rotate_key and jrn_close must not be called from it. */
typedef void (*jrn_done_fn)(struct jrn_append *a, kr_err err);

/* An asynchronous append. Caller-owned, like nng's aio: it must stay valid,
 * unmoved, from jrn_submit until its done callback returns. */
struct jrn_append {
    struct jrn_event *events; /* 1..KR_APPEND_MAX_EVENTS */
    size_t n;
    jrn_done_fn done;
    void *arg; /* for the caller */
    /* private to the journal */
    struct jrn_append *next_;
    atomic_int ready_;
    uint64_t time_ns_;
    const struct kr_signing_key *key_;
    bool internal_;
    bool self_sign_; /* signed by its submitter (synchronous appends), not the signers */
    kr_err reject_;  /* set by the writer: a payload changed, or a view refused it */
};

/* Validates the events, takes their time, signing key and queue position and
 * queues them for the signers and the writer. The journal's own stream
 * (tenant 0, JRN_SYSTEM_STREAM) is refused with KR_EINVAL: only the journal
 * writes it. Blocks while the queue holds
 * KR_QUEUE_MAX_EVENTS (back-pressure). On KR_OK the done callback will be
 * called exactly once; on any other return it will not be, and nothing was
 * queued. Errors: KR_EINVAL / KR_ETOOLARGE (bad event), KR_ECLOSED (closing or
 * read-only), KR_EIO (stopped after an I/O error), KR_EBUSY (from a done
 * callback during a key rotation). */
KR_MUST_CHECK kr_err jrn_submit(struct journal *j, struct jrn_append *a);

/* Appends events and waits until they are durable (or failed). Returns the
 * append's outcome: KR_OK, KR_ECONFLICT, KR_EFULL, KR_EIO, or a jrn_submit
 * error. On KR_OK each event's seq, time_ns, key_id, commitment and sig are set. */
KR_MUST_CHECK kr_err jrn_append(struct journal *j, struct jrn_event *events, size_t n);

/* Adds a new signing key: writes its files, appends a journal.key_added record
 * signed by the current key, then signs everything after it with the new key.
 * Appends submitted meanwhile wait. The retired key still verifies the records
 * it signed. Fills *new_info when not NULL. */
KR_MUST_CHECK kr_err jrn_rotate_key(struct journal *j, struct jrn_info *new_info);

/* ---- Stripping payloads ---- */

/* Which records jrn_strip strips: all conditions hold. */
struct jrn_strip_spec {
    uint64_t tenant;    /* whose records */
    bool any_tenant;    /* ignore tenant: every tenant's records */
    uint64_t to_seq;    /* only seq <= to_seq (0 = no bound) */
    uint64_t before_ns; /* only time_ns < before_ns (0 = no bound) */
    /* NULL = every record matched above; else strip only where it returns
     * true. Called with the record (payload present) inside a write
     * transaction: keep it short, and do not call the journal from it. */
    bool (*want)(void *arg, const struct jrn_record *r);
    void *arg;
};

/* Strips the payload of every record s selects, up to the journal's size when
 * the call starts: its stored value becomes [header, nil] with the same header
 * bytes, so hashes, signatures, proofs and checkpoints still verify, and
 * verify counts it as stripped. The journal's own stream (tenant 0, "journal")
 * is never stripped. *stripped = records this call stripped.
 *
 * On a writable open journal, while appends go on: it works in write
 * transactions of at most KR_STRIP_TXN_RECORDS records, each taking LMDB's
 * write lock between two of the writer's batches. Idempotent (stripped records
 * are skipped) and resumable: after a crash some records are stripped and a
 * rerun strips the rest. Views are not told (they skip stripped records when
 * they replay). Errors: KR_EINVAL (NULL arguments), KR_ECLOSED (read-only),
 * KR_ECORRUPT (a record or index entry does not decode or names another
 * tenant), KR_EIO (the journal stops, as after a failed batch), KR_EFULL. */
KR_MUST_CHECK kr_err jrn_strip(struct journal *j, const struct jrn_strip_spec *s,
                               uint64_t *stripped);

/* ---- Epochs ---- */

/* Offline (nothing may have dir's journal open: KR_EBUSY if a writer in any
 * process, or any handle in this one, has it): drops every record after
 * `size`, with its stream and tenant index entries (so each tenant's tseq
 * and each stream's version continue from its last remaining record), the
 * tree nodes that belong only to larger trees and the checkpoints of larger
 * sizes, and signs a checkpoint
 * at `size` with the key valid there (its secret file must be in DIR/keys;
 * KR_ENOTFOUND / KR_EKEY otherwise). That root is the one the journal had at
 * `size` all along, so no key signs two roots for one size. DIR/checkpoint is
 * written first, then one LMDB transaction: a crash leaves the old journal or
 * the truncated one. When records were dropped, the journal then takes no
 * appends (KR_EKEY) and no key rotation until jrn_new_epoch: its key may have
 * signed checkpoints of the dropped history. Views are not touched: open with
 * views_no_catch_up and jrn_views_rebuild. KR_EINVAL for size 0 or beyond the
 * journal. */
KR_MUST_CHECK kr_err jrn_truncate(const char *dir, uint64_t size);

/* Starts a new epoch on an open writable journal: a fresh signing key (an id
 * no key of this journal, nor a key file left in DIR/keys, has had), announced
 * by a journal.epoch_started record on the journal's own stream, payload
 * {epoch, key_id, public_key, previous_checkpoint}, signed by the key before
 * it (as key_added is). The new key signs everything after the record and the
 * checkpoint at the record's own size. prev_checkpoint (len bytes) is the
 * previous epoch's last checkpoint note: it must be a signed note of this
 * journal by a key its history names, at a size no smaller than the journal's
 * (KR_EINVAL, or the note's error from kr_checkpoint_open). Appends submitted
 * meanwhile wait. Fills *out when not NULL. */
KR_MUST_CHECK kr_err jrn_new_epoch(struct journal *j, const char *prev_checkpoint, size_t len,
                                   struct jrn_info *out);

/* ---- Reading ---- */

/* A record read from the journal, with the bytes it borrows from. Caller-owned;
 * zero it before first use, release with jrn_recbuf_fini. */
struct jrn_recbuf {
    uint8_t *data;
    size_t cap;
    struct jrn_record rec; /* borrows from data */
};
void jrn_recbuf_fini(struct jrn_recbuf *b);

/* Reads record `seq` into b (b->rec). KR_ENOTFOUND if seq is 0 or past the end,
 * KR_ECORRUPT if the stored bytes do not decode. */
KR_MUST_CHECK kr_err jrn_read(struct journal *j, uint64_t seq, struct jrn_recbuf *b);

/* The current version of a stream (0 if it has no records). */
KR_MUST_CHECK kr_err jrn_stream_version(struct journal *j, uint64_t tenant, const char *stream,
                                        size_t stream_len, uint64_t *version);

/* The tseq the next record of `tenant` will get: 1 + the records it has (its
 * newest tseq), as committed now. Works on read-only handles of unmigrated
 * (format-1) journals too, by counting. */
KR_MUST_CHECK kr_err jrn_tenant_next_tseq(struct journal *j, uint64_t tenant, uint64_t *next);

enum jrn_query_kind {
    JRN_Q_RANGE,  /* seq from..to (inclusive; to 0 = to the end) */
    JRN_Q_STREAM, /* one stream of one tenant, from a version */
    JRN_Q_TENANT, /* every record of one tenant, from a seq */
};

struct jrn_query {
    enum jrn_query_kind kind;
    uint64_t from; /* seq (RANGE, TENANT) or version (STREAM); 0 = start */
    uint64_t to;   /* RANGE only: last seq, 0 = unbounded */
    uint64_t tenant;
    const char *stream; /* STREAM only; copied by jrn_cursor_new */
    size_t stream_len;
};

/* A cursor reads records in pages of up to KR_CURSOR_PAGE, each page under its
 * own short read transaction: a slow consumer never pins old pages. Records
 * appended after the cursor was made are seen when it reaches them. */
struct jrn_cursor;

KR_MUST_CHECK kr_err jrn_cursor_new(struct journal *j, const struct jrn_query *q,
                                    struct jrn_cursor **out);
/* The next record into *rec; it borrows from the cursor and is valid until the
 * next call. KR_ENOTFOUND at the end. */
KR_MUST_CHECK kr_err jrn_cursor_next(struct jrn_cursor *c, struct jrn_record *rec);
/* Accepts NULL. */
void jrn_cursor_free(struct jrn_cursor *c);

/* ---- Views ---- */

/* The journal's LMDB environment, for views that read it under their own
 * read transactions (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)). Owned by
 * the journal; valid until jrn_close. */
MDB_env *jrn_env(struct journal *j);

/* Reads record `seq` inside the caller's transaction: *rec borrows LMDB's
 * memory and is valid until the transaction ends. KR_ENOTFOUND, KR_ECORRUPT. */
KR_MUST_CHECK kr_err jrn_read_in(struct journal *j, MDB_txn *txn, uint64_t seq,
                                 struct jrn_record *rec);

/* jrn_stream_version inside the caller's transaction (a consistent snapshot
 * with whatever else the caller reads in it). */
KR_MUST_CHECK kr_err jrn_stream_version_in(struct journal *j, MDB_txn *txn, uint64_t tenant,
                                           const char *stream, size_t stream_len,
                                           uint64_t *version);

/* Progress of a rebuild: records applied so far, of total. Return false to stop. */
typedef bool (*jrn_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Drops every view and applies the whole journal to them again, in write
 * transactions of up to KR_REBUILD_TXN_RECORDS records. An interrupted
 * rebuild is finished when the journal next opens (views record how far they
 * got). Must not race with appends: call it before serving, on a journal
 * opened with views. KR_EINVAL without views; a view's error otherwise. */
KR_MUST_CHECK kr_err jrn_views_rebuild(struct journal *j, jrn_progress_fn progress, void *arg);

/* ---- Checkpoints and proofs ---- */

/* The newest signed checkpoint note (NUL-terminated) into out. */
KR_MUST_CHECK kr_err jrn_checkpoint(struct journal *j, char *out, size_t cap, size_t *len);

/* RFC 6962 root of the first `size` records. */
KR_MUST_CHECK kr_err jrn_root(struct journal *j, uint64_t size, uint8_t out[KR_HASH_LEN]);

/* Inclusion proof of record `seq` in the tree of `size` records (1 <= seq <=
 * size <= jrn_size). *n hashes into proof, leaf to root. */
KR_MUST_CHECK kr_err jrn_inclusion_proof(struct journal *j, uint64_t seq, uint64_t size,
                                         uint8_t proof[][KR_HASH_LEN], size_t cap, size_t *n);

/* Consistency proof between tree sizes size1 <= size2 <= jrn_size. */
KR_MUST_CHECK kr_err jrn_consistency_proof(struct journal *j, uint64_t size1, uint64_t size2,
                                           uint8_t proof[][KR_HASH_LEN], size_t cap, size_t *n);

/* ---- Statistics ---- */

#define JRN_COMMIT_BUCKETS 12
extern const uint64_t jrn_commit_bucket_us[JRN_COMMIT_BUCKETS];

struct jrn_stats {
    uint64_t batches;       /* write transactions committed */
    uint64_t events;        /* records committed */
    uint64_t conflicts;     /* appends refused for a version conflict */
    uint64_t full;          /* appends refused because the map or the disk is full (KR_EFULL) */
    uint64_t max_batch;     /* most events in one transaction */
    uint64_t checkpoints;   /* checkpoints kept in the checkpoints database */
    uint64_t commit_ns;     /* time in LMDB commits (page writes + fsync), summed */
    uint64_t commit_ns_max; /* the slowest commit */
    /* One flush per commit: meta pages flushed by mdb_env_sync because no
     * commit followed at once (counted before the appends they cover
     * complete), and the time in those flushes, summed */
    uint64_t meta_syncs, meta_sync_ns;
    /* DIR/checkpoint (rollback detection). The writer rewrites it after a
     * commit, at most once per KR_CHECKPOINT_FILE_NS, and when it goes idle
     * with the file behind, once that interval is over: it trails the durable
     * journal by at most about KR_CHECKPOINT_FILE_NS and is never ahead. */
    uint64_t file_writes; /* DIR/checkpoint rewrites that succeeded */
    uint64_t file_size;   /* the size the newest of them holds */
    uint64_t file_errors; /* rewrites that failed (each retried) */
    kr_err file_error;    /* the newest failure's error; KR_OK after a success */
    /* Commits by duration (page writes + fsync): commit_hist[i] counts those
     * of at most jrn_commit_bucket_us[i] microseconds and more than the bound
     * before; the ones slower than the last bound are batches - the sum. */
    uint64_t commit_hist[JRN_COMMIT_BUCKETS];
    uint64_t refused_full; /* appends refused with KR_EFULL (disk or map full) */
};
void jrn_get_stats(struct journal *j, struct jrn_stats *out);

/* Whether the journal takes writes: KR_OK, or the error that stopped them
 * (KR_EIO after a failed flush, jrn_stop_appends' error: writes stay stopped
 * until a restart). */
kr_err jrn_failed(struct journal *j);

/* ---- Publishing (the durable hook) ---- */

/* Releases held appends (jrn_durable_hook.hold): every one whose last seq is
 * at most `size` completes with KR_OK now, and later ones up to `size` as
 * soon as they are durable. Any thread; idempotent (a smaller size than
 * before does nothing). Without a holding hook it does nothing. */
void jrn_release(struct journal *j, uint64_t size);

/* Stops appends for good on this handle (a fenced primary): later
 * jrn_submit, jrn_append, jrn_rotate_key and jrn_new_epoch get err (e.g.
 * KR_ENOTPRIMARY; an err of KR_OK is taken as KR_ECLOSED), appends queued
 * but not yet written fail with err, and every held append (durable here but
 * never released) completes with err. Records already committed stay: they
 * are this journal's, and DIR/checkpoint still follows them. Any thread;
 * the first error stays (as does an earlier I/O error). */
void jrn_stop_appends(struct journal *j, kr_err err);

/* ---- The journal's own records ---- */

/* The payload of a journal.created, journal.key_added or
 * journal.epoch_started record: what a verifier of the key chain reads
 * (verify, backup manifests, tenant exports). */
struct jrn_key_payload {
    uint32_t key_id;
    uint8_t pk[KR_PUBKEY_LEN];
    bool has_genesis;       /* journal_id and origin present (created) */
    uint8_t journal_id[16]; /* created */
    const char *origin;     /* created: borrows from the payload, not NUL-terminated */
    size_t origin_len;
    bool has_epoch;              /* epoch and previous_checkpoint present */
    uint64_t epoch;              /* epoch_started: the epoch it starts (>= 2) */
    const char *prev_checkpoint; /* epoch_started: borrows from the payload */
    size_t prev_len;
};

/* Parses such a payload strictly: a canonical msgpack map with key_id and
 * public_key (and, for created, journal_id and origin; for epoch_started,
 * epoch and previous_checkpoint), nothing else. KR_ECORRUPT if malformed, if
 * it holds an unknown member, or only part of either optional pair. */
KR_MUST_CHECK kr_err jrn_parse_key_payload(const uint8_t *p, size_t len,
                                           struct jrn_key_payload *out);

/* Whether r is a record of the journal's own stream; whether its type is t. */
bool jrn_is_system(const struct jrn_record *r);
bool jrn_type_is(const struct jrn_record *r, const char *t);

#endif
