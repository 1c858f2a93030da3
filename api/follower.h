/*
 * follower.h: a follower of a journal's JetStream stream (`kiroku follow`):
 * it consumes the stream the primary publishes (docs/journal-format.md,
 * "Replication messages"), verifies every record as an auditor would and
 * applies it to its own copy of the journal and its views, through the
 * journal's apply sessions (journal/replica.h).
 *
 * Where it starts. The follower's journal is a restored backup generation of
 * the primary (or an earlier follower's data). It resumes after the stream
 * message its last commit came from (jrn_replica_position); a journal that
 * never followed finds, by a binary search over stream sequences reading
 * only the Kiroku-First/Last headers of direct gets, the first message that
 * holds a record it lacks. A stream whose first message starts past the
 * journal's next record cannot bring it level (expired by max age, or
 * published from a later point): the follower stops and says which backup
 * it needs.
 *
 * How it applies. It reads the stream in order (an ordered consumer from
 * that sequence). Each message is one chunk of a range of records; the
 * follower decodes it strictly (jrn_repl_decode), checks that it belongs to
 * this journal, that its headers match its body, that its epoch does not go
 * back and that it continues where the previous one ended, and adds each
 * record to an apply session (jrn_replica_add: signature with the key valid
 * at that seq, prev link, time, commitment). Records the journal already
 * holds are compared byte for byte (a message it holds whole, met when an
 * empty stream is read from its start, is skipped). The chunk that carries
 * the range's signed checkpoint commits the session (jrn_replica_commit:
 * the checkpoint must be this journal's, signed, at the size reached, with
 * the tree's root), durably, together with that message's stream sequence. So a range
 * is applied whole once its checkpoint verifies it, or not at all. Then the
 * erasures the range recorded (tenant.erased, signup.expired) are carried
 * out here as the primary carried them out before recording them: the
 * tenant's key destroyed in this keystore (and in the backup generations of
 * the domain's retention hooks, when it has them), its payloads stripped.
 *
 * A fault (a record or checkpoint that does not verify, a message that does
 * not decode, belongs to another journal or leaves a gap, a range without
 * its checkpoint after KR_REPL_PENDING_MAX records or KR_REPL_PENDING_BYTES_MAX
 * bytes) aborts the open session, so nothing after the last verified
 * checkpoint is applied, and stops the follower for good: the status names
 * the seq and the reason, and the `stopped` callback tells the owner.
 * Connection trouble is not a fault: the follower reconnects and resumes
 * (with backoff up to KR_FOLLOW_RETRY_MAX_MS), however long it takes.
 *
 * Threads: one thread of its own does all of the above; api_follower_status
 * may be called from any thread at any time.
 */
#ifndef KR_API_FOLLOWER_H
#define KR_API_FOLLOWER_H

#include "domain.h"
#include "kr_error.h"

#include <stdbool.h>
#include <stdint.h>

struct api_follower_options {
    /* The NATS servers: "nats://HOST:PORT[,nats://HOST:PORT...]" (required). */
    const char *nats;
    /* The shard, [a-z0-9-]{1,32}; NULL = CLUSTER_SHARD_DEFAULT (its stream
     * and subject: cluster_names, api/cluster.h). */
    const char *shard;
    /* The follower's domain: its journal opened writable with no_appends.
     * Must outlive the follower. */
    struct kr_domain *d;
    /* Called once, on the follower's thread, when it stops on its own (a
     * fault, or a stream it cannot follow); NULL = none. Keep it short. */
    void (*stopped)(void *arg);
    void *arg;
    /* Called on the follower's thread after each range it applied (and
     * carried its erasures out), with the journal's new size; NULL = none.
     * Keep it short (a platform importer wakes up: api/platform.h). */
    void (*applied)(void *arg, uint64_t size);
};

/* What the follower is doing, for the command, metrics and health. */
struct api_follower_status {
    bool connected;        /* to a NATS server now */
    bool following;        /* subscribed to the stream */
    uint64_t applied;      /* records in the journal (verified and applied) */
    uint64_t position;     /* stream sequence of the message of the last commit */
    uint64_t received;     /* the last record of the newest message received */
    uint64_t pending_msgs; /* messages the stream held beyond it (when received) */
    uint64_t stream_first; /* the first record the stream holds (0 = not known) */
    uint64_t commits;      /* ranges applied since the start */
    uint64_t faults;       /* 0, or 1 once stopped by a fault */
    bool stopped;          /* stopped on its own: err and, for a fault, seq and what */
    kr_err err;            /* KR_ECORRUPT / KR_EBADSIG (a fault), KR_ENOTFOUND (the
                            * stream cannot bring this journal level), others */
    uint64_t seq;          /* the record (or checkpoint size) the fault is at */
    char what[256];        /* the reason, for the operator */
};

struct api_follower;

/* Checks the options (KR_EINVAL for a bad shard name or no URL; *why says
 * which) and starts the follower's thread, which connects, finds where to
 * start and follows. KR_ENOMEM, KR_EIO (no thread). */
KR_MUST_CHECK kr_err api_follower_start(const struct api_follower_options *o,
                                        struct api_follower **out, const char **why);

/* A snapshot of the status. */
void api_follower_status(struct api_follower *f, struct api_follower_status *out);

/* Stops the thread (an open apply session is aborted: what it held comes
 * again from the stream next time), disconnects and frees the follower.
 * Accepts NULL. */
void api_follower_stop(struct api_follower *f);

#endif
