/*
 * shardnode_test.c: api/shardnode.c against a real nats-server
 * (tools/nats_cluster.h) and domains in scratch directories: a node
 * promoted takes the lease, announces its endpoint and publishes its
 * tenants, and goes on publishing new ones; a second node of the shard is
 * refused the lease and names the holder's endpoint for not_primary; the
 * router redirects a token of another shard; a node whose lease is taken
 * from it is told, and a follower is told when that lease lapses and takes
 * it; closing a node gives its lease up at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "nats_cluster.h"
#include "protocol.h"
#include "shardnode.h"
#include "test_domain.h"
#include "test_util.h"

static struct kr_nats_cluster *g_nats;

static int setup(void **state)
{
    (void)state;
    return (g_nats = kr_nats_start(1)) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kr_nats_free(g_nats);
    nats_Close();
    return 0;
}

struct told {
    pthread_mutex_t mu;
    unsigned losts, lapses;
    char last[KR_NODE_NAME_MAX + 1]; /* the last holder told */
    unsigned lapses_then;            /* lapses when it was told */
};

static void on_changed(void *ctx, const struct lease_holder *h)
{
    struct told *t = ctx;
    pthread_mutex_lock(&t->mu);
    t->lapses += h == NULL;
    if (h) {
        snprintf(t->last, sizeof t->last, "%s", h->node);
        t->lapses_then = t->lapses;
    }
    pthread_mutex_unlock(&t->mu);
}

/* Told that g9 held the lease, then that it lapsed. */
static bool g9_lapsed(void *arg)
{
    struct told *t = arg;
    pthread_mutex_lock(&t->mu);
    bool yes = strcmp(t->last, "g9") == 0 && t->lapses > t->lapses_then;
    pthread_mutex_unlock(&t->mu);
    return yes;
}

static void on_lost(void *ctx, const char *why)
{
    struct told *t = ctx;
    (void)why;
    pthread_mutex_lock(&t->mu);
    t->losts++;
    pthread_mutex_unlock(&t->mu);
}

static bool was_told(void *arg)
{
    struct told *t = arg;
    pthread_mutex_lock(&t->mu);
    bool yes = t->losts > 0;
    pthread_mutex_unlock(&t->mu);
    return yes;
}

static struct td *domain(const char *shard, uint64_t seed)
{
    struct td *t = td_new(seed);
    t->shard = shard;
    td_reopen(t);
    return t;
}

static struct shardnode *node(struct td *t, const char *shard, const char *name,
                              const char *endpoint, struct told *told)
{
    struct shardnode_options o = {
        .urls = kr_nats_urls(g_nats),
        .shard = shard,
        .node = name,
        .endpoint = endpoint,
        .lease_ttl_ms = 3000,
        .d = t->d,
        .lost = on_lost,
        .changed = on_changed,
        .ctx = told,
    };
    struct shardnode *n = NULL;
    assert_int_equal(shardnode_open(&o, &n), KR_OK);
    return n;
}

struct placed {
    struct shardnode *n;
    uint64_t tenant;
};

static bool is_placed(void *arg)
{
    struct placed *p = arg;
    char s[KR_SHARD_NAME_MAX + 1];
    return kr_shardmap_get(shardnode_map(p->n), p->tenant, s) == KR_OK && strcmp(s, "alpha") == 0;
}

static void test_promote_publish(void **state)
{
    (void)state;
    struct told ta = {PTHREAD_MUTEX_INITIALIZER, 0, 0, "", 0},
                tb = {PTHREAD_MUTEX_INITIALIZER, 0, 0, "", 0};
    struct td *da = domain("alpha", 1), *db = domain("alpha", 2);
    char code[40], s[KR_SHARD_NAME_MAX + 1], e[KR_ENDPOINT_MAX + 1];
    uint64_t t1 = td_signup(da, "m1@alpha.example.jp", "correct-horse-77", NULL, code);
    struct shardnode *a = node(da, "alpha", "a1", "tcp://a1.example:7450", &ta);
    struct shardnode *b = node(db, "alpha", "a2", "tcp://a2.example:7450", &tb);
    uint64_t epoch = 0;
    assert_int_equal(shardnode_promote(a, jrn_size(da->d->j), &epoch), KR_OK);
    assert_true(epoch > 0);
    /* The first round ran before promote returned. */
    assert_int_equal(kr_shardmap_endpoint(shardnode_map(a), "alpha", e), KR_OK);
    assert_string_equal(e, "tcp://a1.example:7450");
    assert_int_equal(kr_shardmap_get(shardnode_map(a), t1, s), KR_OK);
    assert_string_equal(s, "alpha");
    assert_int_equal(kr_shardmap_get_code(shardnode_map(a), code, strlen(code), s), KR_OK);
    /* A new tenant reaches the map on a later round. */
    struct placed p = {b, td_signup(da, "m2@alpha.example.jp", "correct-horse-77", NULL, NULL)};
    assert_true(kr_test_wait_for(is_placed, &p, KR_TEST_WAIT_MS, "the new tenant published"));
    /* The other node of the shard: refused, and names the primary. */
    assert_int_equal(shardnode_promote(b, 0, NULL), KR_EBUSY);
    lease_endpoint(shardnode_lease(b), e, sizeof e);
    assert_string_equal(e, "tcp://a1.example:7450");
    /* The router sends another shard's token there. */
    assert_int_equal(kr_shardmap_announce(shardnode_map(a), "beta", "tcp://b1.example:7450"),
                     KR_OK);
    assert_int_equal(kr_shardmap_sync(shardnode_map(a)), KR_OK);
    uint8_t token[32] = {DOM_TOKEN_TAGGED};
    dom_token_tag("beta", token + 1);
    struct api_route r = {.op = -1, .token = token};
    const struct api_router *rt = shardnode_router(a);
    assert_true(rt->elsewhere(rt->ctx, &r, e));
    assert_string_equal(e, "tcp://b1.example:7450");
    dom_token_tag("alpha", token + 1);
    assert_false(rt->elsewhere(rt->ctx, &r, e));
    /* Closing the primary gives the lease up: the other takes it at once. */
    shardnode_close(a);
    uint64_t epoch2 = 0;
    assert_int_equal(shardnode_promote(b, 0, &epoch2), KR_OK);
    assert_true(epoch2 > epoch);
    assert_int_equal(ta.losts, 0);
    shardnode_close(b);
    td_free(db);
    td_free(da);
}

static void test_lost(void **state)
{
    (void)state;
    struct told ta = {PTHREAD_MUTEX_INITIALIZER, 0, 0, "", 0},
                tf = {PTHREAD_MUTEX_INITIALIZER, 0, 0, "", 0};
    struct td *da = domain("gamma", 3), *df = domain("gamma", 5);
    struct shardnode *f = node(df, "gamma", "g2", "tcp://g2.example:7450", &tf);
    struct shardnode *a = node(da, "gamma", "g1", "tcp://g1.example:7450", &ta);
    assert_int_equal(shardnode_promote(a, 0, NULL), KR_OK);
    /* Someone takes the lease behind its back. */
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, kr_nats_urls(g_nats)), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    assert_int_equal(js_KeyValue(&kv, js, LEASE_BUCKET), NATS_OK);
    assert_int_equal(kvStore_PutString(NULL, kv, "gamma",
                                       "{\"node\":\"g9\",\"endpoint\":\"tcp://g9:1\",\"epoch\":0,"
                                       "\"size\":0}"),
                     NATS_OK);
    assert_true(kr_test_wait_for(was_told, &ta, KR_TEST_WAIT_MS, "g1 told it lost the lease"));
    assert_false(lease_held(shardnode_lease(a), NULL));
    /* Nobody renews g9's value: a follower is told when it lapses, and takes
     * the lease then. */
    assert_true(kr_test_wait_for(g9_lapsed, &tf, KR_TEST_WAIT_MS, "g2 told of g9, then the lapse"));
    assert_int_equal(shardnode_promote(f, 0, NULL), KR_OK);
    shardnode_close(f);
    td_free(df);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    shardnode_close(a);
    td_free(da);
}

static void test_bad_options(void **state)
{
    (void)state;
    struct td *t = domain("delta", 4);
    struct shardnode_options o = {.urls = kr_nats_urls(g_nats),
                                  .shard = "delta",
                                  .node = "d1",
                                  .endpoint = "tcp://d1:1",
                                  .d = t->d};
    struct shardnode *n = NULL;
    o.urls = "http://127.0.0.1:1";
    assert_int_equal(shardnode_open(&o, &n), KR_EINVAL);
    o.urls = kr_nats_urls(g_nats);
    o.endpoint = "tcp://d 1";
    assert_int_equal(shardnode_open(&o, &n), KR_EINVAL);
    o.endpoint = "tcp://d1:1";
    o.node = "d/1";
    assert_int_equal(shardnode_open(&o, &n), KR_EINVAL);
    assert_null(n);
    td_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promote_publish),
        cmocka_unit_test(test_lost),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
