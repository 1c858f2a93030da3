/*
 * lease.h: who may write a shard's journal: the failover lease, held in the
 * JetStream key-value bucket KIROKU_LEASE (key = the shard's name).
 *
 * The value is a small JSON object
 *     {"node": "a1", "endpoint": "tls+tcp://a1.example:7000", "epoch": 812, "size": 10450}
 * naming the holder, its client endpoint (what not_primary replies name),
 * its epoch and the journal's size when it took the lease. The bucket's
 * TTL is the lease's TTL (cluster.lease_ttl, KR_LEASE_TTL_DEFAULT_MS) and
 * it keeps one revision: a value not renewed within the TTL expires, and the
 * key is then absent.
 *
 * - Taking: a write conditional on the key holding no message (or, for a
 *   vacant value or one naming this very node, on its revision), then at once
 *   a second write on the take's revision recording the epoch. The epoch is
 *   the KV revision of the take (a stream sequence of the bucket), so no two
 *   takes ever get one epoch, and a later take always a higher one.
 * - Renewing: every TTL/3 a write conditional on the revision the holder
 *   wrote last. A renewal that finds another revision (someone took the
 *   lease after it expired) loses the lease at once; one that cannot reach
 *   JetStream retries, and the lease is lost locally when nothing was renewed
 *   for the TTL less a tenth (counted from the moment each renewal was sent,
 *   so the holder always gives up before the engine lets anyone else take).
 *   Either way the owner's lost callback is called once: it stops writes
 *   (jrn_stop_appends(KR_ENOTPRIMARY)). An optional healthy callback is asked
 *   before each renewal: a node that is not fit to write lets its lease lapse.
 * - Observing: every lease watches its key (a follower opens one and never
 *   takes it) and tells its owner who holds it and when it lapses (a lapse is
 *   seen as the TTL passing without a renewal, then confirmed by reading the
 *   key: an expired value leaves no message behind to watch).
 *
 * A value that is not one of ours (malformed JSON, unknown keys, over-long
 * or unprintable fields: KR_LEASE_VALUE_MAX) is a holder nobody can name:
 * the lease is held (taking it would break someone's lease), by "?".
 *
 * Threads: each lease runs one thread (renewals and the watch); callbacks are
 * called on it, never with a lock held, and must return quickly. Every
 * function may be called from any thread except lease_close from a callback.
 */
#ifndef KR_API_LEASE_H
#define KR_API_LEASE_H

#include "kr_error.h"
#include "kr_limits.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The bucket holding every shard's lease. */
#define LEASE_BUCKET "KIROKU_LEASE"

/* Who holds a lease, as its value says. */
struct lease_holder {
    char node[KR_NODE_NAME_MAX + 1];
    char endpoint[KR_ENDPOINT_MAX + 1]; /* "" if the holder named none */
    uint64_t epoch;                     /* the revision of the take */
    uint64_t size;                      /* the holder's journal size when it took the lease */
    uint64_t revision;                  /* the value's revision (the newest renewal) */
};

struct lease_options {
    const char *shard;    /* [a-z0-9-]{1,32} */
    const char *node;     /* this node: [A-Za-z0-9._-]{1,KR_NODE_NAME_MAX}, unique */
    const char *endpoint; /* this node's client endpoint(s); NULL = none */
    uint32_t ttl_ms;      /* 0 = KR_LEASE_TTL_DEFAULT_MS; used when the bucket is made */
    int replicas;         /* the bucket's replicas when it is made; 0 = 1 */
    void *ctx;            /* passed to the callbacks */
    /* The holder changed, was renewed for the first time by another node, or
     * lapsed (h NULL). On the lease's thread. NULL = not told. */
    void (*changed)(void *ctx, const struct lease_holder *h);
    /* This node held the lease and lost it: `why` says how ("taken by node
     * b2 at epoch 900", "not renewed within the TTL"). Called once per
     * lease_acquire that succeeded. Stop writes. NULL = not told. */
    void (*lost)(void *ctx, const char *why);
    /* Asked before each renewal: false skips it (the lease lapses unless a
     * later answer is true in time). NULL = always healthy. */
    bool (*healthy)(void *ctx);
};

struct lease;

/* Opens the lease of shard o->shard over connection nc (which must outlive
 * the lease): binds to (or makes) the bucket and starts the watch. The
 * lease's TTL is the bucket's (lease_ttl_ms). Strings of o are copied.
 * KR_EINVAL for a bad shard, node or endpoint or a TTL outside
 * [KR_LEASE_TTL_MIN_MS, KR_LEASE_TTL_MAX_MS]; KR_EIO if JetStream could not
 * be reached; KR_ENOMEM. */
KR_MUST_CHECK kr_err lease_open(natsConnection *nc, const struct lease_options *o,
                                struct lease **out);

/* Takes the lease for this node, recording the journal's `size`. KR_OK:
 * held, *epoch (may be NULL) its epoch, renewed from now on. KR_EBUSY: held
 * by another node (lease_holder says who). KR_EEXIST: this lease already
 * holds it. KR_EIO: JetStream could not be reached (try again). */
KR_MUST_CHECK kr_err lease_acquire(struct lease *l, uint64_t size, uint64_t *epoch);

/* Whether this node holds the lease now (as far as it knows: not lost, and
 * renewed within the TTL); *epoch (may be NULL) its epoch. */
bool lease_held(struct lease *l, uint64_t *epoch);

/* The holder as last seen (the watch, a take or a renewal). KR_ENOTFOUND if
 * the lease is vacant or nothing was seen yet. */
KR_MUST_CHECK kr_err lease_holder(struct lease *l, struct lease_holder *out);

/* The holder's client endpoint into out (cap bytes, NUL-ended), "" when the
 * lease is vacant or nothing was seen yet. `lease` is a struct lease: the
 * signature is the domain's follower callback (dom_set_follower), so a
 * follower's not_primary replies name whoever holds the lease now. */
void lease_endpoint(void *lease, char *out, size_t cap);

/* Gives the lease up, if held: a write on the held revision marking it
 * vacant (node ""), so another node can take it without waiting for the
 * TTL. The lost callback is not called. KR_OK also when it was not held. */
KR_MUST_CHECK kr_err lease_release(struct lease *l);

/* The lease's TTL in milliseconds (the bucket's). */
uint32_t lease_ttl_ms(const struct lease *l);

/* Stops the thread (within about KR_KV_WATCH_POLL_MS) and frees l (the
 * lease is not released: it lapses). NULL ok. */
void lease_close(struct lease *l);

/* The holder of shard `shard`'s lease now, read once over js without
 * opening a lease (nor making the bucket): KR_ENOTFOUND if there is no
 * bucket, no value or a vacant one; a value not of ours is holder "?";
 * KR_EIO. For operators' tools. */
KR_MUST_CHECK kr_err lease_peek(jsCtx *js, const char *shard, struct lease_holder *out);

/* Strict reading of a lease value v[0..len) (hostile bytes: from the
 * bucket). KR_ECORRUPT if it is not exactly one of ours. For tests. */
KR_MUST_CHECK kr_err lease_decode(const void *v, size_t len, struct lease_holder *out);

#endif
