/*
 * replica.h: the journal's side of replication. A primary publishes its
 * committed records, in seq order and as stored, in chunks (messages) of a
 * stream (NATS JetStream, api/cluster.c); a follower decodes each chunk,
 * checks every record as an auditor would and applies a range only once the
 * checkpoint carried by its last chunk verifies it (docs/journal-format.md,
 * "Replication messages").
 *
 * A chunk is canonical msgpack, a fixarray(6):
 *
 *   [ "kiroku.repl.v1",          the message kind and version
 *     journal_id,                bin, 16 bytes: the journal it belongs to
 *     epoch,                     uint >= 1: the publisher's epoch (jrn_epoch)
 *     first,                     uint >= 1: the seq of its first record
 *     [ record, ... ],           1..KR_REPL_CHUNK_RECORDS bins, records
 *                                first, first+1, ... as the journal stores them
 *     note ]                     str: the checkpoint signed at the chunk's last
 *                                seq, on a range's last chunk; nil otherwise
 *
 * of at most KR_REPL_MSG_MAX bytes. A range of committed records (from a
 * publisher's point of view: what became durable between two checkpoints it
 * chose) travels as one or more chunks; only the last carries the note.
 * Record signatures cover neither seq nor prev: only the checkpoint binds
 * the records to their places, so a follower commits nothing before it.
 */
#ifndef KR_REPLICA_H
#define KR_REPLICA_H

#include "journal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The first element of every chunk. */
#define JRN_REPL_KIND "kiroku.repl.v1"

/* A decoded chunk. rec and rec_len are the caller's arrays of cap entries;
 * after jrn_repl_decode rec[i] (rec_len[i] bytes) is record first + i, and
 * rec[i] and note point into the decoded buffer (valid as long as it is). */
struct jrn_repl_chunk {
    uint8_t journal_id[16];
    uint64_t epoch, first;
    size_t n;
    const uint8_t **rec;
    size_t *rec_len;
    const char *note; /* NULL: the range goes on in the next chunk */
    size_t note_len;
};

/* Encodes a chunk: reads records first..last from j (stored bytes exactly as
 * the journal holds them, stripped ones included as stored), stops early when
 * the message would pass KR_REPL_MSG_MAX (or cap) bytes or
 * KR_REPL_CHUNK_RECORDS records (at least one record always), and attaches
 * `note` (the checkpoint signed at `last`, note_len bytes) only when the chunk
 * reaches `last`. *chunk_last = the last seq it holds, *len its length in
 * out. epoch = the publisher's epoch (jrn_epoch). The note is not checked
 * here. Errors: KR_EINVAL (first 0, first > last, no note, epoch 0, a note
 * over KR_NOTE_MAX), KR_ENOTFOUND (last is past the journal), KR_ETOOLARGE
 * (cap cannot hold the first record), KR_ECORRUPT (a stored record is
 * missing or too large), LMDB's errors. Any thread, any open handle. */
KR_MUST_CHECK kr_err jrn_repl_encode(struct journal *j, uint64_t first, uint64_t last,
                                     const char *note, size_t note_len, uint64_t epoch,
                                     uint8_t *out, size_t cap, size_t *len, uint64_t *chunk_last);

/* Packs c as a chunk into out (cap bytes): c->n (1..KR_REPL_CHUNK_RECORDS)
 * records of 1..KR_RECORD_MAX bytes, a note of at most KR_NOTE_MAX bytes or
 * none. Nothing is checked beyond those bounds, KR_REPL_MSG_MAX and cap
 * (KR_EINVAL / KR_ETOOLARGE): what jrn_repl_encode uses, and what tests and
 * tools use to build chunks of their own (hostile ones included). */
KR_MUST_CHECK kr_err jrn_repl_pack(const struct jrn_repl_chunk *c, uint8_t *out, size_t cap,
                                   size_t *len);

/* Decodes a chunk strictly, buf being hostile bytes: canonical msgpack, the
 * layout above exactly (6 elements, the kind string, a 16-byte id, epoch and
 * first >= 1, 1..KR_REPL_CHUNK_RECORDS non-empty records of at most
 * KR_RECORD_MAX bytes each, seqs below 2^62, a note of 1..KR_NOTE_MAX bytes
 * or nil, no trailing bytes), at most KR_REPL_MSG_MAX bytes. The records
 * themselves are not decoded here (jrn_replica_add does). c->rec and
 * c->rec_len must hold cap entries. Errors: KR_ECORRUPT (malformed),
 * KR_EVERSION (another kind string), KR_ETOOLARGE (over KR_REPL_MSG_MAX, or
 * more records than cap), KR_EINVAL (NULL arguments). On error *c's outputs
 * are unspecified. */
KR_MUST_CHECK kr_err jrn_repl_decode(const uint8_t *buf, size_t len, struct jrn_repl_chunk *c,
                                     size_t cap);

/* The smallest kept checkpoint (checkpoints database, or the newest) whose
 * size > after: lets a publisher split a backlog at signed sizes after a
 * restart. The note (NUL-terminated, *len bytes) into note (cap bytes), its
 * size into *size. KR_ENOTFOUND if none, KR_ETOOLARGE if cap cannot hold it,
 * KR_ECORRUPT for a stored checkpoint whose size line does not parse. */
KR_MUST_CHECK kr_err jrn_checkpoint_after(struct journal *j, uint64_t after, uint64_t *size,
                                          char *note, size_t cap, size_t *len);

/* The journal's epoch: 1 + the journal.epoch_started records it holds (as
 * committed now). KR_ECORRUPT if a record of the journal's own stream does
 * not decode. */
KR_MUST_CHECK kr_err jrn_epoch(struct journal *j, uint64_t *epoch);

/* ---- Applying on a follower ---- */

/* An apply session: one LMDB write transaction of a follower's journal in
 * which a range of records is checked and written, kept only if the range's
 * checkpoint verifies it. Owned by the caller from jrn_replica_begin until
 * jrn_replica_commit or jrn_replica_abort (which free it). Every call on a
 * session comes from the thread that began it (an LMDB write transaction
 * belongs to its thread), and that thread opens no other transaction of the
 * journal meanwhile (jrn_replica_position, jrn_read...: other threads may).
 * While it is open, nothing else writes the journal (jrn_strip waits). */
struct jrn_replica;

/* Opens a session on j, which must be opened writable with no_appends (a
 * follower's journal: no signing key, no writer) and have no other session
 * open: KR_EBUSY otherwise. Reads the key history from the journal's own
 * stream (KR_ECORRUPT if it does not parse), then begins the transaction
 * (LMDB's errors). */
KR_MUST_CHECK kr_err jrn_replica_begin(struct journal *j, struct jrn_replica **out);

/* Checks one record (len bytes, as a chunk carries it) as an auditor would
 * and writes it (events, stream index, tenant index, tree) and applies it to
 * the views, in the session's transaction: it decodes strictly; it is the
 * journal's next seq (a seq the journal already holds is skipped when its
 * header bytes are identical, the payloads differing at most by stripping,
 * else KR_ECORRUPT "diverges"); prev is the previous
 * leaf hash; time does not go back; the payload matches the commitment
 * (unless stripped); the signature verifies with the key valid at that seq
 * (journal.key_added / journal.epoch_started records add keys, signed by the
 * key before them, with the chain's checks: a key id never seen, the next
 * epoch number, a previous checkpoint of this journal); its tseq and version
 * continue its tenant's and stream's. On any failure: KR_ECORRUPT or
 * KR_EBADSIG (or a storage error), f->seq and f->what set (f may be NULL),
 * and the session can only be aborted (later calls: KR_EINVAL). A range
 * past KR_REPL_PENDING_MAX records or KR_REPL_PENDING_BYTES_MAX bytes
 * without a commit is KR_ECORRUPT. */
KR_MUST_CHECK kr_err jrn_replica_add(struct jrn_replica *r, const uint8_t *rec, size_t len,
                                     struct jrn_start_fault *f);

/* jrn_replica_add for every record of chunk c in order, stopping at the
 * first failure (as jrn_replica_add would, f naming it); the commitments and
 * signatures are checked ahead on up to `threads` threads (0 = one per
 * online CPU, at most KR_REPL_VERIFY_THREADS_MAX; fewer for a small chunk),
 * each with the key its record names, and the one thread's checks then use
 * those results where the key is the one valid at that seq. Its own note is
 * not looked at (jrn_replica_commit). Same errors; KR_EINVAL for a chunk of
 * more than KR_REPL_CHUNK_RECORDS records. */
KR_MUST_CHECK kr_err jrn_replica_add_chunk(struct jrn_replica *r, const struct jrn_repl_chunk *c,
                                           unsigned threads, struct jrn_start_fault *f);

/* Checks that the note (len bytes) is a checkpoint of this journal (its
 * origin), signed by the key valid at its size, whose size is the journal's
 * size now (after the records added) and whose root is the tree's; stores it
 * (as the writer keeps checkpoints), stores source_pos (the stream sequence
 * of the chunk carrying the note, opaque to the journal) in meta, ends the
 * views' batch and commits durably. Public keys added in the session are then
 * written to DIR/keys/journal-N.pub, and DIR/checkpoint follows (at most once
 * per KR_CHECKPOINT_FILE_NS, and at jrn_close). On failure (KR_ECORRUPT,
 * KR_EBADSIG, a storage error; f set) nothing of the session is kept. After
 * a failed commit itself (KR_EIO: the flush failed, so what reached the disk
 * is unknown) close the journal and open it again, as after a writer's I/O
 * error. Frees r either way. A session that added no record (every one already held)
 * commits only the position. */
KR_MUST_CHECK kr_err jrn_replica_commit(struct jrn_replica *r, const char *note, size_t len,
                                        uint64_t source_pos, struct jrn_start_fault *f);

/* Drops the session and everything it added; frees r. Accepts NULL. */
void jrn_replica_abort(struct jrn_replica *r);

/* The source_pos of the newest commit (0 if none). Any open handle. */
KR_MUST_CHECK kr_err jrn_replica_position(struct journal *j, uint64_t *source_pos);

#endif
