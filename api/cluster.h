/*
 * cluster.h: the primary's side of replication (`kiroku serve --nats`):
 * every committed range of the journal is published, in seq order, to the
 * shard's JetStream stream, as chunks made by jrn_repl_encode
 * (journal/replica.h, docs/journal-format.md "Replication messages").
 *
 * The stream. Shard `s` ([a-z0-9-]{1,32}) has the stream KIROKU_<S> (upper
 * case, '-' as '_') on the subject kiroku.<s>.journal: limits retention, a
 * max age below the 30-day erasure deadline, file storage, a 2-minute
 * duplicate window, direct gets allowed, replicas min(3, servers) unless
 * set. cluster_start creates it, or updates its settings.
 *
 * A message is one chunk: headers Nats-Msg-Id "<journal id hex>.<epoch>.
 * <first>.<last>" (re-publishing after a restart is then a no-op within the
 * window), Kiroku-First and Kiroku-Last (the chunk's journal seqs),
 * Kiroku-Epoch. The chunk that ends a range carries the checkpoint signed
 * at the range's last seq. Every publish carries ExpectLastSeq, the stream
 * sequence of the message before it (into a stream that never had a message,
 * an expected last subject sequence of 0): the publisher is the stream's only
 * writer, so a publish refused for a wrong last sequence means someone else
 * wrote (a newer primary): the publisher is fenced. It stops the journal's
 * appends with KR_ENOTPRIMARY (jrn_stop_appends), says so on stderr, in the
 * stats (/metrics, /healthz) and never publishes again.
 *
 * Where publishing starts (cluster_start reads the stream's last message):
 *   - an empty stream: from o->publish_from (default 1, the genesis record;
 *     for an existing journal joining a cluster whose followers are built
 *     from a backup, the first record after that backup); a stream emptied
 *     by its max age (messages once, none now) without publish_from: from
 *     the record after the journal's size (an idle primary published
 *     everything before they expired);
 *   - its last message names another journal (or is not kiroku's): refused;
 *   - it is ahead of the local journal, or of a newer epoch, or its last
 *     record differs from the local one at that seq: KR_ENOTPRIMARY (this
 *     node must follow first); nothing is published;
 *   - else from the record after its Kiroku-Last: the backlog first, in
 *     ranges ending at kept checkpoints (jrn_checkpoint_after), then live.
 *
 * Live: the journal calls the durable hook (jrn_durable_hook, which
 * cluster_hook gives) after every commit; the publisher thread takes
 * whatever became durable meanwhile as one range, chunks it and publishes
 * the chunks one at a time, each waiting for JetStream's acknowledgement
 * (the stream's quorum has stored it). Transient failures (timeouts, no
 * responders, a server down, disconnected) are retried with backoff up to
 * KR_CLUSTER_BACKOFF_MAX_MS, forever, with the same message id and expected
 * sequence: never skipped, never reordered. The connection reconnects
 * forever.
 *
 * Modes. async: appends complete after the local flush, as without NATS
 * (the lag is a metric). quorum: the hook holds completions, and the
 * publisher releases them (jrn_release) once the chunk carrying a range's
 * last record is acknowledged: an acknowledged write is then in the stream's
 * quorum.
 *
 * Threads: one publisher thread per cluster, plus libnats' own. The hook
 * runs on the journal's writer thread and only copies. cluster_stats from
 * any thread.
 */
#ifndef KR_API_CLUSTER_H
#define KR_API_CLUSTER_H

#include "journal.h"
#include "kr_error.h"
#include "replica.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLUSTER_SHARD_DEFAULT "main"

enum cluster_mode { CLUSTER_ASYNC, CLUSTER_QUORUM };

struct cluster_options {
    const char *urls;          /* "nats://h:p[,nats://h:p…]" (required; copied) */
    enum cluster_mode mode;    /* async (default) or quorum */
    const char *shard;         /* NULL = CLUSTER_SHARD_DEFAULT; copied */
    uint64_t max_age_s;        /* the stream's max age; 0 = KR_CLUSTER_MAX_AGE_S_DEFAULT */
    unsigned replicas;         /* 0 = min(3, servers known after connecting) */
    uint64_t publish_from;     /* first seq published into an empty stream; 0 = 1 */
    uint64_t start_timeout_ms; /* cluster_start's connect and stream set-up, retried
                                * until then; 0 = KR_CLUSTER_START_TIMEOUT_MS */
    bool quiet;                /* no progress lines on stderr (errors still) */
};

/* Checks o (shard name, URLs, max age <= KR_CLUSTER_MAX_AGE_S_MAX, replicas
 * <= KR_CLUSTER_REPLICAS_MAX) without connecting; KR_EINVAL with *why. */
KR_MUST_CHECK kr_err cluster_check(const struct cluster_options *o, const char **why);

/* The stream and subject names of a shard (cap >= KR_CLUSTER_NAME_MAX).
 * KR_EINVAL for a bad shard name. */
KR_MUST_CHECK kr_err cluster_names(const char *shard, char *stream, char *subject, size_t cap);

struct cluster;

/* Makes the cluster (not connected). KR_EINVAL (as cluster_check), KR_ENOMEM. */
KR_MUST_CHECK kr_err cluster_new(const struct cluster_options *o, const char **why,
                                 struct cluster **out);

/* The hook to open the journal with (jrn_options.durable, or
 * kr_domain_options.durable): it must be the journal's from its open on,
 * so that no commit goes unseen. Owned by c. */
const struct jrn_durable_hook *cluster_hook(struct cluster *c);

/* Connects (retrying until o->start_timeout_ms), creates or updates the
 * stream, decides where publishing starts (see above) and starts the
 * publisher thread on j, which must be the journal opened with
 * cluster_hook(c) and outlive cluster_stop. Errors, each with a line in
 * why (cap bytes): KR_ENOTPRIMARY (the stream is ahead: nothing will be
 * published; the caller stops its appends), KR_EEXIST (the stream holds
 * another journal, or a message not kiroku's), KR_EIO (no connection or
 * stream within the timeout), KR_EINVAL (publish_from past the journal),
 * KR_ENOMEM, a journal error. */
KR_MUST_CHECK kr_err cluster_start(struct cluster *c, struct journal *j, char *why, size_t cap);

/* Stops publishing: waits up to grace_ms for what is durable to be
 * published, then stops the thread and closes the connection; in quorum
 * mode the appends still held then complete with KR_ECLOSED
 * (jrn_stop_appends). Idempotent; call before closing the journal. */
void cluster_stop(struct cluster *c, unsigned grace_ms);

/* Frees c; call after the journal is closed (its hook may run until
 * then). Accepts NULL. */
void cluster_free(struct cluster *c);

#define CLUSTER_PUB_BUCKETS 12
extern const uint64_t cluster_pub_bucket_us[CLUSTER_PUB_BUCKETS];

struct cluster_stats {
    bool started;   /* cluster_start succeeded (publishing) */
    bool connected; /* the connection is up now */
    bool fenced;    /* a publish was refused: another writer */
    bool behind;    /* cluster_start found the stream ahead (not primary) */
    enum cluster_mode mode;
    uint64_t durable;     /* the journal's durable size, as the hook told */
    uint64_t published;   /* the last journal seq the stream acknowledged */
    uint64_t stream_seq;  /* the stream sequence of the last message */
    uint64_t lag_records; /* durable - published */
    double lag_s;         /* how long the oldest unpublished durable record has waited */
    uint64_t messages;    /* chunks published by this process */
    uint64_t ranges;      /* ranges completed (their last chunk acknowledged) */
    uint64_t errors;      /* publish attempts that failed (each retried) */
    /* Publish latency (send to acknowledgement, per chunk): pub_hist[i]
     * counts those of at most cluster_pub_bucket_us[i] and more than the
     * bound before; the slower ones are messages - the sum. */
    uint64_t pub_hist[CLUSTER_PUB_BUCKETS];
    uint64_t pub_ns_sum;
};
void cluster_stats(struct cluster *c, struct cluster_stats *out);

/* Percentiles over the newest KR_CLUSTER_SAMPLES chunks and ranges, in
 * microseconds: publish latency p50 and p99, and lag p99 (from a range's
 * first record becoming durable to the acknowledgement of its last chunk).
 * Zero when none. For benchmarks. */
void cluster_latencies(struct cluster *c, uint32_t *pub_p50_us, uint32_t *pub_p99_us,
                       uint32_t *lag_p99_us);

#endif
