/*
 * shards_cli_test.c: `kiroku shards` (tools/cmd_shards.c) against a real
 * nats-server (tools/nats_cluster.h): no map yet; announce; assign once (a
 * second placement is refused naming where the tenant is); where by id and
 * code; list in JSON with each shard's lease holder (a lease this test
 * holds) and the map's counts; usage errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "lease.h"
#include "nats_cluster.h"
#include "test_util.h"

#define CAP 16384

static struct kr_nats_cluster *g_nats;
static char g_out[CAP], g_err[CAP];

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

/* kiroku shards --nats URL ARGS... (NULL-ended, at most 8). */
static int shards(const char *a1, const char *a2, const char *a3, const char *a4, const char *a5,
                  const char *a6)
{
    const char *args[12] = {"shards", "--nats", kr_nats_urls(g_nats), a1, a2, a3, a4, a5, a6, NULL};
    return kr_test_run(KR_KIROKU_BIN, args, g_out, g_err, CAP);
}

static void test_shards(void **state)
{
    (void)state;
    assert_int_equal(shards("list", NULL, NULL, NULL, NULL, NULL), 1);
    assert_string_equal(g_err, "kiroku: shards: no shard map in this NATS cluster yet\n");
    assert_int_equal(shards("announce", "alpha", "tcp://alpha.example:7450", NULL, NULL, NULL), 0);
    assert_int_equal(shards("announce", "beta", "tcp://beta.example:7450", NULL, NULL, NULL), 0);
    assert_int_equal(shards("assign", "--tenant", "5", "--code", "tfive", "alpha"), 0);
    assert_int_equal(shards("assign", "--tenant", "5", "beta", NULL, NULL), 1);
    assert_non_null(strstr(g_err, "tenant 5 is on shard alpha"));
    assert_int_equal(shards("assign", "--tenant", "6", "platform", NULL, NULL), 2);
    assert_non_null(strstr(g_err, "holds the platform's records"));
    assert_int_equal(shards("where", "--tenant", "5", NULL, NULL, NULL), 0);
    assert_string_equal(g_out, "alpha\n");
    assert_int_equal(shards("--json", "where", "--code", "tfive", NULL, NULL), 0);
    assert_string_equal(g_out, "{\"shard\":\"alpha\"}\n");
    assert_int_equal(shards("where", "--tenant", "6", NULL, NULL, NULL), 1);

    /* alpha's lease, held here. */
    natsConnection *nc = NULL;
    struct lease *l = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, kr_nats_urls(g_nats)), NATS_OK);
    struct lease_options o = {
        .shard = "alpha", .node = "a1", .endpoint = "tcp://alpha.example:7450"};
    assert_int_equal(lease_open(nc, &o, &l), KR_OK);
    uint64_t epoch = 0;
    assert_int_equal(lease_acquire(l, 77, &epoch), KR_OK);

    assert_int_equal(shards("--json", "list", NULL, NULL, NULL, NULL), 0);
    json_error_t je;
    json_t *j = json_loads(g_out, 0, &je);
    assert_non_null(j);
    json_t *sh = json_object_get(j, "shards");
    assert_int_equal(json_array_size(sh), 2);
    json_t *a = json_array_get(sh, 0), *b = json_array_get(sh, 1);
    assert_string_equal(json_string_value(json_object_get(a, "shard")), "alpha");
    assert_string_equal(json_string_value(json_object_get(a, "endpoint")),
                        "tcp://alpha.example:7450");
    assert_int_equal(json_integer_value(json_object_get(a, "tenants")), 1);
    json_t *al = json_object_get(a, "lease");
    assert_string_equal(json_string_value(json_object_get(al, "node")), "a1");
    assert_int_equal(json_integer_value(json_object_get(al, "epoch")), epoch);
    assert_int_equal(json_integer_value(json_object_get(al, "size")), 77);
    assert_string_equal(json_string_value(json_object_get(b, "shard")), "beta");
    assert_int_equal(json_integer_value(json_object_get(b, "tenants")), 0);
    assert_true(json_is_null(json_object_get(b, "lease")));
    assert_int_equal(json_integer_value(json_object_get(j, "tenants")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "codes")), 1);
    json_decref(j);
    assert_int_equal(shards("list", NULL, NULL, NULL, NULL, NULL), 0);
    assert_non_null(strstr(g_out, "lease a1 (epoch"));
    assert_non_null(strstr(g_out, "lease vacant"));
    lease_close(l);
    natsConnection_Destroy(nc);
}

static void test_usage(void **state)
{
    (void)state;
    const char *bad[] = {"shards", "--nats", "http://127.0.0.1:1", "list", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, bad, g_out, g_err, CAP), 2);
    const char *none[] = {"shards", "list", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, none, g_out, g_err, CAP), 2);
    assert_int_equal(shards("frobnicate", NULL, NULL, NULL, NULL, NULL), 2);
    assert_int_equal(shards("announce", "Bad", "tcp://x:1", NULL, NULL, NULL), 2);
    assert_int_equal(shards("assign", "alpha", NULL, NULL, NULL, NULL), 2);
    assert_int_equal(shards("where", NULL, NULL, NULL, NULL, NULL), 2);
    /* Nobody there: NATS unreachable. */
    const char *down[] = {"shards", "--nats", "nats://127.0.0.1:1", "list", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, down, g_out, g_err, CAP), 3);
    assert_non_null(strstr(g_err, "kiroku: shards: NATS"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
