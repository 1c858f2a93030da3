/*
 * shardmap_test.c: api/shardmap.c against a real nats-server (one JetStream
 * node on loopback: tools/nats_cluster.h): placement by the documented
 * policy (fewest tenants among announced shards, ties by name), one
 * placement per tenant and one tenant per code even when two nodes race,
 * lookups by id, code and token tag from a map another node wrote, a map
 * loaded whole at open, and keys or values that are not of the map's form
 * ignored; a map closed while updates keep arriving leaks nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "nats_cluster.h"
#include "shardmap.h"
#include "test_util.h"

/* ---- One nats-server (tools/nats_cluster.h) ---- */

static struct kr_nats_cluster *g_nats;
static const char *g_url;

static int nats_start(void **state)
{
    (void)state;
    g_nats = kr_nats_start(1);
    if (!g_nats)
        return -1;
    g_url = kr_nats_urls(g_nats);
    return 0;
}

static int nats_stop(void **state)
{
    (void)state;
    kr_nats_free(g_nats);
    nats_Close();
    return 0;
}

/* ---- Nodes ---- */

struct node {
    natsConnection *nc;
    struct kr_shardmap *m;
};

static void node_open(struct node *n)
{
    assert_int_equal(natsConnection_ConnectTo(&n->nc, g_url), NATS_OK);
    assert_int_equal(kr_shardmap_open(n->nc, 1, &n->m), KR_OK);
}

static void node_close(struct node *n)
{
    kr_shardmap_close(n->m);
    natsConnection_Destroy(n->nc);
}

static void expect_shard(struct node *n, uint64_t tenant, const char *want)
{
    char s[KR_SHARD_NAME_MAX + 1];
    if (!want) {
        assert_int_equal(kr_shardmap_get(n->m, tenant, s), KR_ENOTFOUND);
        assert_string_equal(s, "");
        return;
    }
    assert_int_equal(kr_shardmap_get(n->m, tenant, s), KR_OK);
    assert_string_equal(s, want);
}

/* Every test below runs on the one bucket, in order. */

static void test_empty(void **state)
{
    (void)state;
    struct node a;
    node_open(&a);
    char s[KR_SHARD_NAME_MAX + 1], e[KR_ENDPOINT_MAX + 1];
    expect_shard(&a, 1, NULL);
    assert_int_equal(kr_shardmap_get_code(a.m, "tabc", 4, s), KR_ENOTFOUND);
    assert_int_equal(kr_shardmap_endpoint(a.m, "main", e), KR_ENOTFOUND);
    assert_int_equal(kr_shardmap_place(a.m, 1, "tabc", KR_PLACE_FEWEST, s), KR_ENOTFOUND);
    assert_int_equal(kr_shardmap_place(a.m, 0, NULL, KR_PLACE_FEWEST, s), KR_EINVAL);
    assert_int_equal(kr_shardmap_announce(a.m, "Bad", "tcp://x:1"), KR_EINVAL);
    assert_int_equal(kr_shardmap_announce(a.m, "ok", "tcp://x :1"), KR_EINVAL);
    assert_int_equal(kr_shardmap_assign(a.m, 5, "t!", "ok"), KR_EINVAL);
    assert_int_equal(kr_shardmap_assign(a.m, 5, NULL, "No"), KR_EINVAL);
    assert_int_equal(kr_shardmap_assign(a.m, 5, NULL, KR_PLATFORM_SHARD), KR_EINVAL);
    node_close(&a);
}

static void test_place_policy(void **state)
{
    (void)state;
    struct node a, b;
    node_open(&a);
    node_open(&b);
    assert_int_equal(kr_shardmap_announce(a.m, "beta", "tcp://beta.example:7000"), KR_OK);
    assert_int_equal(kr_shardmap_announce(b.m, "alpha", "tcp://alpha.example:7000"), KR_OK);
    /* The platform shard, holding no tenant, is never chosen. */
    assert_int_equal(kr_shardmap_announce(b.m, KR_PLATFORM_SHARD, "tcp://p.example:7000"), KR_OK);
    assert_int_equal(kr_shardmap_sync(a.m), KR_OK);
    char s[KR_SHARD_NAME_MAX + 1], e[KR_ENDPOINT_MAX + 1];
    assert_int_equal(kr_shardmap_endpoint(a.m, "alpha", e), KR_OK);
    assert_string_equal(e, "tcp://alpha.example:7000");
    /* Ties go to the smaller name; then the one with fewer tenants. */
    assert_int_equal(kr_shardmap_place(a.m, 1, "tone", KR_PLACE_FEWEST, s), KR_OK);
    assert_string_equal(s, "alpha");
    assert_int_equal(kr_shardmap_place(a.m, 2, "ttwo", KR_PLACE_FEWEST, s), KR_OK);
    assert_string_equal(s, "beta");
    assert_int_equal(kr_shardmap_place(a.m, 3, NULL, KR_PLACE_FEWEST, s), KR_OK);
    assert_string_equal(s, "alpha");
    /* b, having seen a's placements, places the next on beta. */
    assert_int_equal(kr_shardmap_sync(b.m), KR_OK);
    assert_int_equal(kr_shardmap_place(b.m, 4, NULL, KR_PLACE_FEWEST, s), KR_OK);
    assert_string_equal(s, "beta");
    /* Placed once: again answers where. */
    assert_int_equal(kr_shardmap_sync(a.m), KR_OK);
    assert_int_equal(kr_shardmap_place(a.m, 4, NULL, KR_PLACE_FEWEST, s), KR_EEXIST);
    assert_string_equal(s, "beta");
    expect_shard(&b, 1, "alpha");
    expect_shard(&b, 2, "beta");
    expect_shard(&b, 3, "alpha");
    expect_shard(&a, 5, NULL);
    assert_int_equal(kr_shardmap_get_code(b.m, "tone", 4, s), KR_OK);
    assert_string_equal(s, "alpha");
    assert_int_equal(kr_shardmap_get_code(b.m, "ttwo", 4, s), KR_OK);
    assert_string_equal(s, "beta");
    assert_int_equal(kr_shardmap_get_code(b.m, "tone!", 5, s), KR_ENOTFOUND);
    /* A code names one tenant: another tenant cannot take it. */
    assert_int_equal(kr_shardmap_assign(b.m, 6, "tone", "beta"), KR_EEXIST);
    node_close(&b);
    node_close(&a);
}

static void test_tags(void **state)
{
    (void)state;
    struct node a;
    node_open(&a);
    uint8_t tag[4];
    char s[KR_SHARD_NAME_MAX + 1];
    dom_token_tag("beta", tag);
    assert_int_equal(kr_shardmap_by_tag(a.m, tag, s), KR_OK);
    assert_string_equal(s, "beta");
    dom_token_tag("gamma", tag); /* never announced */
    assert_int_equal(kr_shardmap_by_tag(a.m, tag, s), KR_ENOTFOUND);
    node_close(&a);
}

/* Two nodes place one new tenant at once: one placement wins, both say it. */
struct racer {
    struct node *n;
    uint64_t tenant;
    kr_err err;
    char shard[KR_SHARD_NAME_MAX + 1];
};

static void *race(void *arg)
{
    struct racer *r = arg;
    r->err = kr_shardmap_assign(r->n->m, r->tenant, NULL, r->shard);
    return NULL;
}

static void test_race(void **state)
{
    (void)state;
    struct node a, b;
    node_open(&a);
    node_open(&b);
    for (uint64_t t = 100; t < 120; t++) {
        struct racer ra = {&a, t, KR_OK, "alpha"}, rb = {&b, t, KR_OK, "beta"};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, race, &ra), 0);
        race(&rb);
        pthread_join(th, NULL);
        assert_true((ra.err == KR_OK) != (rb.err == KR_OK));
        assert_true(ra.err == KR_EEXIST || rb.err == KR_EEXIST);
        const char *won = ra.err == KR_OK ? "alpha" : "beta";
        assert_int_equal(kr_shardmap_sync(a.m), KR_OK);
        assert_int_equal(kr_shardmap_sync(b.m), KR_OK);
        expect_shard(&a, t, won);
        expect_shard(&b, t, won);
    }
    node_close(&b);
    node_close(&a);
}

/* Keys and values not of the map's form change nothing. */
static void test_hostile(void **state)
{
    (void)state;
    struct node a;
    node_open(&a);
    struct kr_shardmap_stats before, after;
    kr_shardmap_stats(a.m, &before);
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    assert_int_equal(natsConnection_JetStream(&js, a.nc, NULL), NATS_OK);
    assert_int_equal(js_KeyValue(&kv, js, SHARDMAP_BUCKET), NATS_OK);
    static const char *bad[][2] = {
        {"tenant.007", "alpha"},     {"tenant.abc", "alpha"},
        {"tenant.0", "alpha"},       {"tenant.18446744073709551616", "alpha"},
        {"tenant.9", "Alpha"},       {"tenant.10", "a/b"},
        {"code.x", "alpha"},         {"code.tbad", "no shard!"},
        {"shard.UP", "tcp://x:1"},   {"shard.delta", "tcp://has space"},
        {"something.else", "alpha"}, {"shard.epsilon", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(kvStore_PutString(NULL, kv, bad[i][0], bad[i][1]), NATS_OK);
    char big[KR_ENDPOINT_MAX + 2];
    memset(big, 'e', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(kvStore_PutString(NULL, kv, "shard.zeta", big), NATS_OK);
    assert_int_equal(kvStore_Put(NULL, kv, "tenant.11", "al\0pha", 6), NATS_OK);
    assert_int_equal(kr_shardmap_sync(a.m), KR_OK);
    kr_shardmap_stats(a.m, &after);
    assert_int_equal(after.shards, before.shards);
    assert_int_equal(after.tenants, before.tenants);
    assert_int_equal(after.codes, before.codes);
    assert_true(after.ignored >= before.ignored + 13);
    expect_shard(&a, 7, NULL);
    expect_shard(&a, 9, NULL);
    expect_shard(&a, 11, NULL);
    char e[KR_ENDPOINT_MAX + 1];
    assert_int_equal(kr_shardmap_endpoint(a.m, "delta", e), KR_ENOTFOUND);
    assert_int_equal(kr_shardmap_endpoint(a.m, "zeta", e), KR_ENOTFOUND);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    node_close(&a);
}

/* A node that opens later loads the whole map. */
static void test_load(void **state)
{
    (void)state;
    struct node a;
    node_open(&a);
    struct kr_shardmap_stats st;
    kr_shardmap_stats(a.m, &st);
    assert_int_equal(st.shards, 3); /* alpha, beta and the platform */
    assert_int_equal(st.tenants, 4 + 20);
    assert_int_equal(st.codes, 2);
    expect_shard(&a, 1, "alpha");
    expect_shard(&a, 4, "beta");
    node_close(&a);
}

/* On a 3-node cluster (an R3 bucket), the NATS node a map is connected to is
 * killed: the map reconnects and its watch goes on seeing what another node
 * writes, while the node is down and after it returns. */
static bool sees_tenant(void *arg)
{
    struct racer *r = arg;
    char s[KR_SHARD_NAME_MAX + 1];
    return kr_shardmap_get(r->n->m, r->tenant, s) == KR_OK && strcmp(s, r->shard) == 0;
}

static bool assigned(void *arg)
{
    struct racer *r = arg;
    r->err = kr_shardmap_assign(r->n->m, r->tenant, NULL, r->shard);
    return r->err != KR_EIO; /* a new R3 bucket, or a lost node: try again */
}

static void connect_all(struct node *n, const struct kr_nats_cluster *cl, size_t first)
{
    const char *urls[KR_NATS_NODES_MAX];
    for (size_t i = 0; i < cl->n; i++)
        urls[i] = cl->node[(first + i) % cl->n].url;
    natsOptions *o = NULL;
    assert_int_equal(natsOptions_Create(&o), NATS_OK);
    assert_int_equal(natsOptions_SetServers(o, urls, (int)cl->n), NATS_OK);
    assert_int_equal(natsOptions_SetNoRandomize(o, true), NATS_OK);
    assert_int_equal(natsOptions_SetMaxReconnect(o, -1), NATS_OK);
    assert_int_equal(natsOptions_SetReconnectWait(o, 50), NATS_OK);
    assert_int_equal(natsConnection_Connect(&n->nc, o), NATS_OK);
    natsOptions_Destroy(o);
    kr_err err = KR_EIO;
    for (int i = 0; i < 100 && err == KR_EIO; i++) /* the R3 bucket's leader */
        err = kr_shardmap_open(n->nc, 3, &n->m);
    assert_int_equal(err, KR_OK);
}

static void test_nats_node_lost(void **state)
{
    (void)state;
    struct kr_nats_cluster *cl = kr_nats_start(3);
    assert_non_null(cl);
    struct node a, b;
    connect_all(&a, cl, 0); /* on node 0 */
    connect_all(&b, cl, 1); /* on node 1 */
    struct racer r = {&b, 1000, KR_OK, "alpha"};
    assert_true(kr_test_wait_for(assigned, &r, KR_TEST_WAIT_MS, "b places 1000"));
    assert_int_equal(r.err, KR_OK);
    struct racer seen = {&a, 1000, KR_OK, "alpha"};
    assert_true(kr_test_wait_for(sees_tenant, &seen, KR_TEST_WAIT_MS, "a sees 1000"));
    kr_nats_stop_node(cl, 0, SIGKILL);
    r.tenant = seen.tenant = 1001;
    assert_true(kr_test_wait_for(assigned, &r, KR_TEST_WAIT_MS, "b places 1001"));
    assert_int_equal(r.err, KR_OK);
    assert_true(kr_test_wait_for(sees_tenant, &seen, KR_TEST_WAIT_MS, "a sees 1001"));
    assert_true(kr_nats_start_node(cl, 0));
    r.tenant = seen.tenant = 1002;
    assert_true(kr_test_wait_for(assigned, &r, KR_TEST_WAIT_MS, "b places 1002"));
    assert_int_equal(r.err, KR_OK);
    assert_true(kr_test_wait_for(sees_tenant, &seen, KR_TEST_WAIT_MS, "a sees 1002"));
    node_close(&b);
    node_close(&a);
    kr_nats_free(cl);
}

/* A writer that keeps changing a key the map ignores until told to stop. */
struct churn {
    pthread_t th;
    atomic_bool stop;
    unsigned puts;
};

static void *churn_main(void *arg)
{
    struct churn *c = arg;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    if (natsConnection_ConnectTo(&nc, g_url) == NATS_OK &&
        natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
        js_KeyValue(&kv, js, SHARDMAP_BUCKET) == NATS_OK)
        while (!atomic_load(&c->stop))
            if (kvStore_PutString(NULL, kv, "churn.key", c->puts % 2 ? "a" : "b") == NATS_OK)
                c->puts++;
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return NULL;
}

struct ignored {
    struct node *n;
    uint64_t past;
};

static bool ignored_more(void *arg)
{
    struct ignored *w = arg;
    struct kr_shardmap_stats st;
    kr_shardmap_stats(w->n->m, &st);
    return st.ignored > w->past;
}

/* A map closed while updates keep arriving frees every update its watch
 * received: libnats 3.4.1's kvWatcher_Next leaks the one it holds when
 * kvWatcher_Stop comes from another thread, as kr_shardmap_close did.
 * LeakSanitizer finds it in the sanitizer build. */
static void test_close_amid_updates(void **state)
{
    (void)state;
    struct churn c = {.puts = 0};
    atomic_init(&c.stop, false);
    struct node a;
    node_open(&a); /* the bucket exists before the writer starts */
    assert_int_equal(pthread_create(&c.th, NULL, churn_main, &c), 0);
    for (int i = 0; i < 100; i++) {
        if (i > 0)
            node_open(&a);
        struct kr_shardmap_stats st;
        kr_shardmap_stats(a.m, &st);
        struct ignored w = {&a, st.ignored + 1};
        assert_true(kr_test_wait_for(ignored_more, &w, KR_TEST_WAIT_MS, "the writer's updates"));
        node_close(&a);
    }
    atomic_store(&c.stop, true);
    assert_int_equal(pthread_join(c.th, NULL), 0);
    assert_true(c.puts > 0);
    assert_true(kr_test_no_leaks());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),          cmocka_unit_test(test_place_policy),
        cmocka_unit_test(test_tags),           cmocka_unit_test(test_race),
        cmocka_unit_test(test_hostile),        cmocka_unit_test(test_load),
        cmocka_unit_test(test_nats_node_lost), cmocka_unit_test(test_close_amid_updates),
    };
    return cmocka_run_group_tests(tests, nats_start, nats_stop);
}
