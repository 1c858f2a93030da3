/*
 * shardnode.c: a serving node's lease, shard map and router (shardnode.h).
 *
 * Design notes. The node owns its own NATS connection (the publisher of
 * replication has its own): leases and placements never queue behind
 * journal chunks. The publisher thread sleeps on a condition variable
 * (CLOCK_MONOTONIC) so close wakes it at once; it announces the endpoint
 * until that succeeds once, then publishes the domain's tenants each round
 * while lease_held says the lease is this node's, skipping the scan when the
 * journal has not grown since the last complete one.
 */
#include "shardnode.h"

#include "domain.h"
#include "natskv.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct shardnode {
    natsConnection *nc;
    struct kr_shardmap *m;
    struct lease *l;
    struct kr_shardmap_router rt;
    struct api_router router;
    char endpoint[KR_ENDPOINT_MAX + 1];
    struct kr_domain *d;
    void (*lost)(void *ctx, const char *why);
    bool (*healthy)(void *ctx);
    void (*changed)(void *ctx, const struct lease_holder *h);
    void *ctx;
    pthread_t pub;
    bool pub_started;
    pthread_mutex_t mu; /* with cv: stop, promoted, announced */
    pthread_cond_t cv;
    bool stop, promoted, announced;
    uint64_t published_at; /* the journal's size at the last complete round */
    atomic_uint_fast64_t rounds, written;
};

static bool node_healthy(void *ctx)
{
    struct shardnode *n = ctx;
    return !n->healthy || n->healthy(n->ctx);
}

static void on_changed(void *ctx, const struct lease_holder *h)
{
    struct shardnode *n = ctx;
    if (n->changed)
        n->changed(n->ctx, h);
}

static void on_lost(void *ctx, const char *why)
{
    struct shardnode *n = ctx;
    pthread_mutex_lock(&n->mu);
    n->promoted = false;
    pthread_mutex_unlock(&n->mu);
    if (n->lost)
        n->lost(n->ctx, why);
}

/* One publishing round: the endpoint until announced, then the tenants. */
static void publish_round(struct shardnode *n)
{
    pthread_mutex_lock(&n->mu);
    bool announced = n->announced;
    pthread_mutex_unlock(&n->mu);
    if (!announced && kr_shardmap_announce(n->m, n->rt.self, n->endpoint) == KR_OK) {
        pthread_mutex_lock(&n->mu);
        n->announced = true;
        pthread_mutex_unlock(&n->mu);
    }
    /* Tenants come only with records: an idle journal needs no scan. */
    uint64_t size = jrn_size(n->d->j);
    if (size == n->published_at)
        return;
    size_t w = 0;
    if (kr_shardmap_publish(n->m, n->d, n->rt.self, &w, NULL) == KR_OK) {
        atomic_fetch_add(&n->written, w);
        if (w < KR_SHARDMAP_PUBLISH_MAX)
            n->published_at = size; /* else more to write next round */
    }
    atomic_fetch_add(&n->rounds, 1);
}

static void *publisher_main(void *arg)
{
    struct shardnode *n = arg;
    pthread_mutex_lock(&n->mu);
    while (!n->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += KR_SHARDNODE_PUBLISH_MS / 1000;
        ts.tv_nsec += (long)(KR_SHARDNODE_PUBLISH_MS % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&n->cv, &n->mu, &ts);
        bool go = !n->stop && n->promoted;
        pthread_mutex_unlock(&n->mu);
        if (go && lease_held(n->l, NULL))
            publish_round(n);
        pthread_mutex_lock(&n->mu);
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

static kr_err open_parts(struct shardnode *n, const struct shardnode_options *o)
{
    kr_err err = nkv_connect(o->urls, &n->nc);
    if (!err)
        err = kr_shardmap_open(n->nc, o->replicas, &n->m);
    if (err)
        return err;
    struct lease_options lo = {
        .shard = o->shard,
        .node = o->node,
        .endpoint = o->endpoint,
        .ttl_ms = o->lease_ttl_ms,
        .replicas = o->replicas,
        .ctx = n, /* the callbacks below pass the owner's ctx on */
        .lost = on_lost,
        .healthy = node_healthy,
        .changed = on_changed,
    };
    return lease_open(n->nc, &lo, &n->l);
}

kr_err shardnode_open(const struct shardnode_options *o, struct shardnode **out)
{
    *out = NULL;
    if (!o || !o->d || !nkv_shard_name_ok(o->shard) || !o->endpoint ||
        !nkv_endpoint_ok(o->endpoint, strlen(o->endpoint)))
        return KR_EINVAL;
    struct shardnode *n = calloc(1, sizeof *n);
    if (!n)
        return KR_ENOMEM;
    snprintf(n->endpoint, sizeof n->endpoint, "%s", o->endpoint);
    snprintf(n->rt.self, sizeof n->rt.self, "%s", o->shard);
    n->rt.place_slack = KR_SHARDMAP_PLACE_SLACK;
    n->d = o->d;
    n->lost = o->lost;
    n->healthy = o->healthy;
    n->changed = o->changed;
    n->ctx = o->ctx;
    pthread_mutex_init(&n->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cv, &ca);
    pthread_condattr_destroy(&ca);
    kr_err err = open_parts(n, o);
    if (!err && pthread_create(&n->pub, NULL, publisher_main, n) != 0)
        err = KR_ENOMEM;
    n->pub_started = !err;
    if (err) {
        shardnode_close(n);
        return err;
    }
    n->rt.m = n->m;
    n->router.elsewhere = kr_shardmap_route;
    n->router.ctx = &n->rt;
    *out = n;
    return KR_OK;
}

const struct api_router *shardnode_router(struct shardnode *n)
{
    return &n->router;
}

struct lease *shardnode_lease(struct shardnode *n)
{
    return n->l;
}

struct kr_shardmap *shardnode_map(struct shardnode *n)
{
    return n->m;
}

kr_err shardnode_promote(struct shardnode *n, uint64_t size, uint64_t *epoch)
{
    kr_err err = lease_acquire(n->l, size, epoch);
    if (err)
        return err;
    publish_round(n);
    pthread_mutex_lock(&n->mu);
    n->promoted = true;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    return KR_OK;
}

void shardnode_published(struct shardnode *n, uint64_t *rounds, uint64_t *written)
{
    *rounds = atomic_load(&n->rounds);
    *written = atomic_load(&n->written);
}

void shardnode_close(struct shardnode *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    n->stop = true;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    if (n->pub_started)
        pthread_join(n->pub, NULL);
    if (n->l && lease_release(n->l) != KR_OK)
        fprintf(stderr, "kiroku: the lease could not be given up: it lapses after its TTL\n");
    lease_close(n->l);
    kr_shardmap_close(n->m);
    natsConnection_Destroy(n->nc);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n);
}
