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

#endif
