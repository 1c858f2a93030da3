/*
 * bench_failover_test.c: `kiroku bench failover` kills its primary, sees the
 * other node take over and prints the documented keys (docs/benchmarks.md),
 * the floor (the lease's TTL) beside the figure. Timings are never asserted;
 * the record count is.
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

static void test_bench_failover(void **state)
{
    (void)state;
    if (!kr_nats_available())
        skip();
    char *out = malloc(OUT_MAX), *err = malloc(OUT_MAX);
    assert_non_null(out);
    assert_non_null(err);
    const char *usage[] = {"bench", "failover", "--help", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, usage, out, err, OUT_MAX), 0);
    assert_non_null(strstr(out, "usage: kiroku bench failover"));
    const char *bad[] = {"bench", "failover", "--lease-ttl", "10", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, bad, out, err, OUT_MAX), 2);

    const char *args[] = {"bench",       "failover", "--events", "500",
                          "--lease-ttl", "1000",     "--json",   NULL};
    int rc = kr_test_run(KR_KIROKU_BIN, args, out, err, OUT_MAX);
    if (rc != 0)
        fail_msg("bench failover: %d: %s %s", rc, out, err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    /* genesis, the 500, node a's epoch record and its serve.started */
    assert_int_equal(json_integer_value(json_object_get(j, "records")), 503);
    assert_true(json_number_value(json_object_get(j, "lease_ttl_s")) == 1.0);
    static const char *const keys[] = {"catch_up_s", "failover_s", "failover_over_ttl",
                                       "failover_over_floor"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(j, keys[i]);
        if (!json_is_number(v) || json_number_value(v) <= 0)
            fail_msg("%s: not a positive number in %s", keys[i], out);
    }
    json_decref(j);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_failover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
