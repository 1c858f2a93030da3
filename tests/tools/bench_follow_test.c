/*
 * bench_follow_test.c: `kiroku bench follow` brings its restored copy level
 * with the stream and prints the documented keys (docs/benchmarks.md), the
 * ceiling beside the figure. Timings are never asserted; the count is.
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

static void test_bench_follow(void **state)
{
    (void)state;
    if (!kr_nats_available())
        skip();
    char *out = malloc(OUT_MAX), *err = malloc(OUT_MAX);
    assert_non_null(out);
    assert_non_null(err);
    const char *usage[] = {"bench", "follow", "--help", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, usage, out, err, OUT_MAX), 0);
    assert_non_null(strstr(out, "usage: kiroku bench follow"));
    const char *bad[] = {"bench", "follow", "--events", "0", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, bad, out, err, OUT_MAX), 2);

    const char *args[] = {"bench", "follow", "--events", "3000", "--json", NULL};
    int rc = kr_test_run(KR_KIROKU_BIN, args, out, err, OUT_MAX);
    if (rc != 0)
        fail_msg("bench follow: %d: %s %s", rc, out, err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "records")), 3000);
    assert_true(json_is_number(json_object_get(j, "publish_seconds")));
    static const char *const keys[] = {"follow_seconds",
                                       "records_per_s",
                                       "ceiling_verify_per_s",
                                       "cores",
                                       "ceiling_verify_per_s_1_core",
                                       "ratio"};
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
        cmocka_unit_test(test_bench_follow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
