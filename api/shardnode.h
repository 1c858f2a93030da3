/*
 * shardnode.h: one serving node's part in a sharded cluster, put together
 * from the lease (lease.h) and the shard map (shardmap.h) so that `kiroku
 * serve` and `kiroku follow` need a few calls: open it (the map loaded, the
 * lease watched, the API server's router ready), promote it when the node is
 * to take writes (the lease taken, the shard's endpoint announced, and the
 * domain's tenants published into the map while the lease is held), close
 * it.
 *
 * While the node holds the lease, a thread publishes the domain's tenants
 * (kr_shardmap_publish) every KR_SHARDNODE_PUBLISH_MS, so new tenants and
 * their codes reach the map (and the placement counts) within that time.
 * When the lease is lost the owner's lost callback is called once (stop
 * writes: jrn_stop_appends(KR_ENOTPRIMARY)) and publishing stops.
 *
 * Threads: the lease's and the map's own, plus the publisher; every function
 * may be called from any thread but shardnode_close from a callback.
 */
#ifndef KR_API_SHARDNODE_H
#define KR_API_SHARDNODE_H

#include "kr_error.h"
#include "lease.h"
#include "server.h"
#include "shardmap.h"

#include <stdbool.h>
#include <stdint.h>

struct kr_domain;

struct shardnode_options {
    const char *urls;      /* the NATS servers, "nats://h:p[,...]" */
    const char *shard;     /* this node's shard */
    const char *node;      /* this node's name, unique in the deployment */
    const char *endpoint;  /* its client endpoint(s), as clients should dial them */
    uint32_t lease_ttl_ms; /* 0 = KR_LEASE_TTL_DEFAULT_MS (when the bucket is made) */
    int replicas;          /* the buckets' replicas when made; 0 = 1 */
    struct kr_domain *d;   /* the node's domain; must outlive the node */
    /* The lease was lost (why): stop writes. NULL = not told. */
    void (*lost)(void *ctx, const char *why);
    /* Asked before each renewal (lease_options.healthy). NULL = healthy. */
    bool (*healthy)(void *ctx);
    /* The lease's holder changed or lapsed (h NULL): lease_options.changed,
     * for a follower that promotes itself once it lapses (after applying
     * everything in the stream). NULL = not told. */
    void (*changed)(void *ctx, const struct lease_holder *h);
    void *ctx;
};

struct shardnode;

/* Connects, opens the map (loaded) and the lease (watched). Strings are
 * copied. KR_EINVAL (a bad name, endpoint or URL list), KR_EIO (NATS not
 * reached), KR_ENOMEM. */
KR_MUST_CHECK kr_err shardnode_open(const struct shardnode_options *o, struct shardnode **out);

/* The router for api_server_options.router (redirects to other shards);
 * valid until shardnode_close. */
const struct api_router *shardnode_router(struct shardnode *n);

/* The lease, for lease_endpoint (a follower's not_primary replies) and
 * lease_held. Owned by n. */
struct lease *shardnode_lease(struct shardnode *n);

/* The map, for lookups. Owned by n. */
struct kr_shardmap *shardnode_map(struct shardnode *n);

/* Takes the lease for writes with the journal's `size` (*epoch: its epoch,
 * may be NULL), announces the endpoint and publishes the domain's tenants
 * (first round before returning), then every KR_SHARDNODE_PUBLISH_MS while
 * the lease is held. KR_EBUSY: another node holds the lease (lease_holder);
 * KR_EEXIST: already held; KR_EIO. */
KR_MUST_CHECK kr_err shardnode_promote(struct shardnode *n, uint64_t size, uint64_t *epoch);

/* Publishing rounds done and placements written since open (for tests and
 * metrics). */
void shardnode_published(struct shardnode *n, uint64_t *rounds, uint64_t *written);

/* Stops the threads, gives the lease up if held (lease_release: another node
 * may take it at once) and frees n. NULL ok. */
void shardnode_close(struct shardnode *n);

#endif
