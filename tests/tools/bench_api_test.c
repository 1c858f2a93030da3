/*
 * bench_api_test.c: `kiroku bench api` runs every phase against a real
 * server and prints the documented keys (docs/benchmarks.md). Timings are
 * never asserted; counts are: no request failed, and every write appended
 * exactly one event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

#define OUT_MAX (1u << 20)

static char root[1024], dir[1100];
static char *out, *err;

/* Runs kiroku with args (NULL-terminated), stdout into out and stderr into
 * err (NUL-terminated); returns the exit status. The child dies with us. */
static int run(const char *const *args)
{
    int rc = kr_test_run(KR_KIROKU_BIN, args, out, err, OUT_MAX);
    assert_true(rc >= 0);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    kr_test_tmpdir(root, sizeof root);
    snprintf(dir, sizeof dir, "%s/d", root);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kr_test_rmrf(root);
    return 0;
}

static void test_usage(void **state)
{
    (void)state;
    assert_int_equal(run((const char *const[]){"bench", "api", "--help", NULL}), 0);
    assert_non_null(strstr(out, "usage: kiroku bench api"));
    static const char *const bad[][4] = {
        {"--clients", "0"},   {"--seconds", "0"}, {"--workers", "0"},
        {"--phase", "bogus"}, {"--bogus"},        {"--contacts", "x"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[6] = {"bench", "api", bad[i][0], bad[i][1], NULL};
        assert_int_equal(run(args), 2);
    }
    /* Fewer contacts than clients cannot give each client its own. */
    assert_int_equal(
        run((const char *const[]){"bench", "api", "--data", dir, "--contacts", "2", "--clients",
                                  "4", "--phase", "write", "--json", NULL}),
        3);
    assert_non_null(strstr(err, "too few contacts"));
}

static json_int_t num(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_number(v))
        fail_msg("no number %s in %s", key, out);
    return json_is_integer(v) ? json_integer_value(v) : (json_int_t)json_real_value(v);
}

static void test_runs_every_phase(void **state)
{
    (void)state;
    int rc =
        run((const char *const[]){"bench", "api", "--data", dir, "--seconds", "1", "--json", NULL});
    if (rc != 0)
        fail_msg("bench api exited %d: %s", rc, err);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    if (!j)
        fail_msg("not JSON (%s): %s", e.text, out);
    static const char *const keys[] = {
        "read_req_per_s",      "echo_req_per_s",     "read_echo_ratio",    "read_p50_us",
        "read_p99_us",         "echo_p50_us",        "echo_p99_us",        "write_req_per_s",
        "write_p50_us",        "write_p99_us",       "write_commits",      "write_commit_avg_us",
        "write_conflicts",     "login_per_s",        "login_p50_us",       "login_p99_us",
        "login_rss_base_kb",   "login_rss_peak_kb",  "login_anon_base_kb", "login_anon_peak_kb",
        "login_anon_limit_kb", "pwhash_peak",        "pwhash_mem_kb",      "workers",
        "append_per_s",        "write_append_ratio", "gateway_req_per_s",  "gateway_p50_us",
        "gateway_p99_us",      "gateway_read_ratio",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        (void)num(j, keys[i]);
    assert_int_equal(num(j, "clients"), 32);
    assert_int_equal(num(j, "failures"), 0);
    assert_true(num(j, "echo_requests") > 0);
    assert_true(num(j, "read_requests") > 0);
    /* The gateway answered the same reads as JSON over HTTP, every one ok. */
    assert_true(num(j, "gateway_requests") > 0);
    assert_true(num(j, "login_requests") > 0);
    assert_true(num(j, "write_requests") > 0);
    /* The journal's own rate is measured beside the writes, with as many
     * producers as clients, one append in flight each. */
    assert_true(num(j, "append_per_s") > 0);
    assert_int_equal(num(j, "append_producers"), 32);
    assert_int_equal(num(j, "append_window"), 1);
    /* Each write was answered after appending exactly one event. */
    assert_int_equal(num(j, "write_events"), num(j, "write_requests"));
    /* Never more Argon2id runs at once than the cap; the stated memory limit
     * is the base plus that many hashes' memory. */
    assert_true(num(j, "pwhash_peak") >= 1);
    assert_true(num(j, "pwhash_peak") <= num(j, "pwhash_concurrent_max"));
    assert_int_equal(num(j, "login_anon_limit_kb"),
                     num(j, "login_anon_base_kb") +
                         num(j, "pwhash_concurrent_max") * num(j, "pwhash_mem_kb"));
    json_decref(j);
}

int main(void)
{
    out = malloc(OUT_MAX);
    err = malloc(OUT_MAX);
    if (!out || !err)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_every_phase, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(out);
    free(err);
    return rc;
}
