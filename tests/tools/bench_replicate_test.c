/*
 * bench_replicate_test.c: `kiroku bench replicate` starts its own 3-node
 * NATS cluster, runs both modes and prints the documented keys
 * (docs/benchmarks.md). Timings are never asserted; counts are: every event
 * acknowledged was published (messages > 0, no publish error), and the
 * ratios are present.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nats_cluster.h"
#include "test_util.h"

#define OUT_MAX (1u << 20)

static char *out, *err;

static int run(const char *const *args)
{
    int rc = kr_test_run(KR_KIROKU_BIN, args, out, err, OUT_MAX);
    assert_true(rc >= 0);
    return rc;
}

static void test_usage(void **state)
{
    (void)state;
    assert_int_equal(run((const char *const[]){"bench", "replicate", "--help", NULL}), 0);
    assert_non_null(strstr(out, "usage: kiroku bench replicate"));
    assert_int_equal(run((const char *const[]){"bench", "replicate", "--window", "0", NULL}), 2);
}

static void check_mode(json_t *root, const char *name)
{
    json_t *m = json_object_get(root, name);
    assert_true(json_is_object(m));
    static const char *const keys[] = {"events_per_s",       "append_p50_us",  "append_p99_us",
                                       "messages",           "messages_per_s", "publish_p50_us",
                                       "publish_p99_us",     "lag_p99_us",     "publish_errors",
                                       "events_over_ceiling"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_true(json_is_number(json_object_get(m, keys[i])));
    assert_true(json_number_value(json_object_get(m, "events_per_s")) > 0);
    assert_true(json_number_value(json_object_get(m, "messages")) >= 1);
    assert_int_equal(json_integer_value(json_object_get(m, "publish_errors")), 0);
}

static void test_both_modes(void **state)
{
    (void)state;
    if (!kr_nats_available())
        skip();
    int rc = run((const char *const[]){"bench", "replicate", "--events", "3000", "--producers", "4",
                                       "--window", "8", "--json", NULL});
    if (rc != 0)
        fprintf(stderr, "%s%s", out, err);
    assert_int_equal(rc, 0);
    json_error_t je;
    json_t *root = json_loads(out, 0, &je);
    assert_non_null(root);
    assert_int_equal(json_integer_value(json_object_get(root, "events")), 3000);
    check_mode(root, "async");
    check_mode(root, "quorum");
    assert_true(json_number_value(json_object_get(root, "quorum_over_async")) > 0);
    assert_true(json_number_value(json_object_get(root, "ceiling_jetstream_r3_msgs_per_s")) > 0);
    json_decref(root);
}

int main(void)
{
    out = malloc(OUT_MAX);
    err = malloc(OUT_MAX);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_both_modes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(out);
    free(err);
    return rc;
}
