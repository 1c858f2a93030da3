/*
 * shardmap.h: which shard holds which tenant, in the JetStream key-value
 * bucket KIROKU_SHARDS (history 5, no TTL), with a cached copy every node
 * keeps current by watching the bucket.
 *
 * Keys (values are plain strings):
 *     shard.<name>      -> the shard's client endpoint(s) ("tls+tcp://a1:7000,...")
 *     tenant.<id>       -> the tenant's shard name  (id: decimal, no leading zero, > 0)
 *     code.<tenant code> -> the tenant's shard name (so a login, which names a
 *                          code and not an id, can be redirected)
 * A shard's primary announces its endpoint (kr_shardmap_announce) when it
 * takes the lease. A tenant's keys are written once, with a write conditional
 * on the key holding nothing (natskv.h): two nodes can never place one tenant
 * twice, nor give one code to two tenants; the loser reads the winner's
 * placement. Keys and values that are not of this form are ignored (and
 * counted: kr_shardmap_stats).
 *
 * Placement policy (kr_shardmap_place, KR_PLACE_FEWEST): among the shards
 * that announced an endpoint, the one holding the fewest tenants (tenant.*
 * keys naming it), ties broken by the smaller name in byte order. The
 * platform shard (KR_PLATFORM_SHARD, projections/domain.h) is never chosen
 * and cannot be assigned a tenant: it holds the platform's records only. It is a
 * pure function of the map, so every node that sees the same map places
 * alike; the conditional write settles races between nodes that do not.
 *
 * Redirect tags: a session token (and a sign-up application id) made on a
 * shard carries the shard's tag in its bytes (dom_token_tag,
 * projections/domain.h), so any node can tell its shard without looking it
 * up: kr_shardmap_by_tag. The tag only routes; authority stays with the
 * session (or application) lookup on the right shard.
 *
 * Threads: one watcher thread per map; lookups take a read lock and never
 * wait on the network; place, assign and announce wait for JetStream.
 */
#ifndef KR_API_SHARDMAP_H
#define KR_API_SHARDMAP_H

#include "kr_error.h"
#include "kr_limits.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHARDMAP_BUCKET "KIROKU_SHARDS"

enum kr_shardmap_policy {
    KR_PLACE_FEWEST = 0, /* fewest tenants among announced shards, ties by name */
};

struct kr_shardmap;

/* Opens the map over connection nc (which must outlive it): binds to (or
 * makes, with `replicas`, 0 = 1; < 0: never makes it, KR_ENOTFOUND if it is
 * absent) the bucket, and loads every key into the cache before returning.
 * KR_EIO if JetStream could not be reached or the
 * load did not finish within KR_SHARDMAP_LOAD_MS; KR_ENOMEM. */
KR_MUST_CHECK kr_err kr_shardmap_open(natsConnection *nc, int replicas, struct kr_shardmap **out);

/* Stops the watch (within about KR_KV_WATCH_POLL_MS) and frees m. NULL ok. */
void kr_shardmap_close(struct kr_shardmap *m);

/* Writes shard.<shard> = endpoint (unconditionally: the shard's primary
 * owns its key). KR_EINVAL for a bad name or endpoint; KR_EIO. */
KR_MUST_CHECK kr_err kr_shardmap_announce(struct kr_shardmap *m, const char *shard,
                                          const char *endpoint);

/* The shard of tenant `tenant`, from the cache, into shard (NUL-ended).
 * KR_ENOTFOUND if the map does not name one. */
KR_MUST_CHECK kr_err kr_shardmap_get(struct kr_shardmap *m, uint64_t tenant,
                                     char shard[KR_SHARD_NAME_MAX + 1]);

/* The shard of the tenant whose code is code[0..len), from the cache.
 * KR_ENOTFOUND if the map does not name one (or the code is malformed). */
KR_MUST_CHECK kr_err kr_shardmap_get_code(struct kr_shardmap *m, const char *code, size_t len,
                                          char shard[KR_SHARD_NAME_MAX + 1]);

/* The endpoint shard `shard` announced. KR_ENOTFOUND if none. */
KR_MUST_CHECK kr_err kr_shardmap_endpoint(struct kr_shardmap *m, const char *shard,
                                          char endpoint[KR_ENDPOINT_MAX + 1]);

/* The announced shard whose redirect tag (dom_token_tag) is tag. KR_ENOTFOUND
 * if none. */
KR_MUST_CHECK kr_err kr_shardmap_by_tag(struct kr_shardmap *m, const uint8_t tag[4],
                                        char shard[KR_SHARD_NAME_MAX + 1]);

/* Places a new tenant (id `tenant` > 0, code `code` or NULL) by `policy` and
 * writes its keys; *shard gets the shard. KR_EEXIST if the tenant was already
 * placed (then *shard is where) or the code already names another shard's
 * tenant; KR_ENOTFOUND if no shard announced an endpoint; KR_EINVAL; KR_EIO. */
KR_MUST_CHECK kr_err kr_shardmap_place(struct kr_shardmap *m, uint64_t tenant, const char *code,
                                       enum kr_shardmap_policy policy,
                                       char shard[KR_SHARD_NAME_MAX + 1]);

/* As kr_shardmap_place with the shard chosen by the caller (an operator
 * placing a tenant by hand, or a deployment's first shard taking its existing
 * tenants): the code's key first, then the tenant's. KR_EEXIST if either is
 * taken (by another shard's value; writing what a key already holds is
 * KR_OK only when a write's answer was lost); KR_EINVAL for a bad name and
 * for the platform shard. */
KR_MUST_CHECK kr_err kr_shardmap_assign(struct kr_shardmap *m, uint64_t tenant, const char *code,
                                        const char *shard);

struct api_route;

/* An api_router (server.h) over m for shard `self`: the caller owns it and
 * keeps it (and m) alive while the server runs. */
struct kr_shardmap_router {
    struct kr_shardmap *m;
    char self[KR_SHARD_NAME_MAX + 1];
    /* signup.apply is taken here while this shard holds at most this many
     * tenants more than the policy's choice (KR_SHARDMAP_PLACE_SLACK is a
     * good value): a sign-up redirected to the choice is then taken there
     * even if placements moved meanwhile. */
    uint64_t place_slack;
};

/* Whether the request whose route is r (protocol.h) belongs to a shard other
 * than rt->self; then true, with that shard's endpoint:
 * - a token carrying another announced shard's tag;
 * - without a tagged token: a login naming a tenant code the map places on
 *   another shard; signup.complete naming an application another shard's
 *   tag made; signup.apply when this shard holds more than place_slack
 *   tenants beyond the placement policy's choice (KR_PLACE_FEWEST), or is
 *   the platform shard: sent to the choice.
 * Untagged tokens and applications, unknown tags, unknown codes and this
 * shard's own are false: the request is served here (and fails here, alike
 * for every kind of unknown). Never waits. */
bool kr_shardmap_elsewhere(const struct kr_shardmap_router *rt, const struct api_route *r,
                           char endpoint[KR_ENDPOINT_MAX + 1]);

/* kr_shardmap_elsewhere for api_router.elsewhere (router: a struct
 * kr_shardmap_router). */
bool kr_shardmap_route(void *router, const struct api_route *r, char endpoint[KR_ENDPOINT_MAX + 1]);

struct kr_domain;

/* Writes the placement of the tenants of domain d, whose journal is shard
 * `self`, that the map lacks: tenant.<id> for every tenant not erased (an
 * application reserves its id), code.<code> once it has one. At most
 * KR_SHARDMAP_PUBLISH_MAX writes a call: *written (may be NULL) counts them;
 * call again while it writes any. A tenant or code the map gives another
 * shard is left alone and counted in *conflicts (may be NULL): two shards
 * reserved one id, or a code, which the operator settles. The primary runs
 * this at start (a deployment's first shard publishes its existing tenants)
 * and after sign-ups: placement counts what it published. KR_EIO;
 * KR_ECORRUPT (a view row). */
KR_MUST_CHECK kr_err kr_shardmap_publish(struct kr_shardmap *m, struct kr_domain *d,
                                         const char *self, size_t *written, size_t *conflicts);

/* One shard as the cache knows it. */
struct kr_shardmap_shard {
    char name[KR_SHARD_NAME_MAX + 1];
    char endpoint[KR_ENDPOINT_MAX + 1]; /* "" if it announced none */
    size_t tenants;                     /* tenant.* keys naming it */
};

/* Every shard the cache knows (announced, or named by a tenant), in name
 * order, into out[0..cap); *n gets how many there are (may exceed cap). */
void kr_shardmap_shards(struct kr_shardmap *m, struct kr_shardmap_shard *out, size_t cap,
                        size_t *n);

/* What the cache holds. */
struct kr_shardmap_stats {
    size_t shards, tenants, codes;
    uint64_t ignored; /* keys or values not of the map's form */
};
void kr_shardmap_stats(struct kr_shardmap *m, struct kr_shardmap_stats *out);

/* Waits until the cache has seen every write made to the bucket before the
 * call (a write by another node). For tests and for a sign-up that must see
 * the newest placements. KR_EIO if it could not tell within KR_KV_WAIT_MS *
 * 10. */
KR_MUST_CHECK kr_err kr_shardmap_sync(struct kr_shardmap *m);

#endif
