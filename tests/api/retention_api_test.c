/*
 * retention_api_test.c: `kiroku serve`'s daily jobs and records, through the
 * real binary: the clock override refused without --test-clock; with it,
 * serve.started (and the previous version on the next start), the backup
 * taken at start by --backups (backups.list over the operator endpoint),
 * `kiroku maintenance` and `kiroku retention` asking the running server,
 * the erase-by date in tenants.list, and a clean stop with SIGTERM.
 */
#include "api_client.h"
#include "test_util.h"

#include "accounts.h"
#include "retention.h"

#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define OUT_CAP 65536

static char out[OUT_CAP], err[OUT_CAP];

static int run(const char *const *args)
{
    return kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out);
}

static void op_login(struct ac_server *s, uint8_t token[32])
{
    struct ac op;
    ac_open(&op, s->op_url);
    ac_str(&op, KR_FLD_TENANT_CODE, KR_PLATFORM_CODE);
    ac_str(&op, KR_FLD_EMAIL, s->op_email);
    ac_str(&op, KR_FLD_PASSWORD, s->op_password);
    assert_int_equal(ac_call(&op, KR_OP_AUTH_LOGIN, NULL), AC_OK);
    const msgpack_object *t = ac_get(ac_result(&op), KR_FLD_TOKEN);
    assert_non_null(t);
    memcpy(token, t->via.bin.ptr, 32);
    ac_close(&op);
}

/* serve refuses the clock override without --test-clock, and a malformed one. */
static void test_serve_refuses_clock_override(void **state)
{
    (void)state;
    char dir[512], data[600];
    kr_test_tmpdir(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/data", dir);
    setenv("KIROKU_CLOCK_OFFSET", "30d", 1);
    assert_int_equal(
        run((const char *const[]){"serve", "--data", data, "--listen", "tcp://127.0.0.1:1", NULL}),
        3);
    assert_non_null(strstr(err, "KIROKU_CLOCK_OFFSET"));
    assert_non_null(strstr(err, "--test-clock"));
    setenv("KIROKU_CLOCK_OFFSET", "30 days", 1);
    assert_int_equal(run((const char *const[]){"serve", "--data", data, "--test-clock", NULL}), 3);
    assert_non_null(strstr(err, "30 days"));
    /* The CLI's own commands take it, and refuse a malformed one too. */
    assert_int_equal(run((const char *const[]){"retention", "--data", data, "--dry-run", NULL}), 2);
    unsetenv("KIROKU_CLOCK_OFFSET");
    kr_test_rmrf(dir);
}

static bool has_generation(struct ac_server *s, const uint8_t token[32])
{
    struct ac op;
    ac_open(&op, s->op_url);
    int rc = ac_call(&op, KR_OP_BACKUPS_LIST, token);
    bool found = false;
    if (rc == AC_OK) {
        const msgpack_object *list = ac_res_list(&op);
        for (uint32_t i = 0; list && i < list->via.array.size; i++)
            found |= ac_get(&list->via.array.ptr[i], KR_FLD_VERIFIED)->via.boolean;
    }
    ac_close(&op);
    return found;
}

/* For kr_test_wait_for: has_generation of a server logged in as an operator. */
struct op_server {
    struct ac_server *s;
    const uint8_t *token;
};
static bool generation_listed(void *arg)
{
    const struct op_server *o = arg;
    return has_generation(o->s, o->token);
}

/* For kr_test_wait_for: whether the journal of the server's data directory
 * (arg) has a backup.failed record, `kiroku dump` into out. */
static bool backup_failed_recorded(void *arg)
{
    const char *data = arg;
    assert_int_equal(run((const char *const[]){"dump", "--data", data, "--json", NULL}), 0);
    return strstr(out, "backup.failed") != NULL;
}

static void test_serve_daily_jobs(void **state)
{
    (void)state;
    static char backups[700];
    static const char *extra[8];
    char tmp[512];
    kr_test_tmpdir(tmp, sizeof tmp);
    snprintf(backups, sizeof backups, "%s/backups", tmp);
    extra[0] = "--test-clock";
    extra[1] = "--backups";
    extra[2] = backups;
    extra[3] = "--backup-at";
    extra[4] = "00:00"; /* passed today whatever the hour: a backup at start */
    extra[5] = NULL;
    setenv("KIROKU_CLOCK_OFFSET", "3d", 1);
    struct ac_server s;
    ac_server_start_with(&s, extra);
    uint8_t token[32];
    op_login(&s, token);

    /* The backup at start shows in backups.list, verified. */
    struct op_server o = {&s, token};
    assert_true(kr_test_wait_for(generation_listed, &o, KR_TEST_WAIT_MS, "the backup at start"));

    /* kiroku maintenance, over the operator endpoint. */
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, token, 32);
    setenv("KIROKU_TOKEN", hex, 1);
    assert_int_equal(
        run((const char *const[]){"maintenance", "rotated the TLS certificate", "--host",
                                  "web-1.example.jp", "--url", s.op_url, NULL}),
        0);
    /* Refused: no work. */
    assert_int_equal(run((const char *const[]){"maintenance", "", "--url", s.op_url, NULL}), 2);

    /* The demo tenant cancelled: tenants.list has its erase-by date, and
     * kiroku retention asks the running server (it holds the journal). */
    struct ac op;
    ac_open(&op, s.op_url);
    ac_u64(&op, KR_FLD_LIMIT, 10);
    assert_int_equal(ac_call(&op, KR_OP_TENANTS_LIST, token), AC_OK);
    const msgpack_object *l = ac_res_list(&op);
    assert_int_equal(l->via.array.size, 1);
    uint64_t tenant = ac_get(&l->via.array.ptr[0], KR_FLD_TENANT)->via.u64;
    ac_close(&op);
    ac_open(&op, s.op_url);
    ac_u64(&op, KR_FLD_TENANT, tenant);
    assert_int_equal(ac_call(&op, KR_OP_TENANTS_CANCEL, token), AC_OK);
    uint64_t cancelled = ac_res_u64(&op, KR_FLD_CANCELLED);
    ac_close(&op);
    ac_open(&op, s.op_url);
    ac_u64(&op, KR_FLD_LIMIT, 10);
    assert_int_equal(ac_call(&op, KR_OP_TENANTS_LIST, token), AC_OK);
    l = ac_res_list(&op);
    assert_true(ac_get(&l->via.array.ptr[0], KR_FLD_ERASE_BY)->via.u64 ==
                cancelled + RET_ERASE_AFTER_NS);
    ac_close(&op);
    /* The server runs 3 days ahead: the cancellation is stamped then. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t real = (uint64_t)ts.tv_sec * 1000000000ull;
    assert_true(cancelled > real + 2 * RET_NS_PER_DAY);

    assert_int_equal(run((const char *const[]){"retention", "--data", s.data, "--url", s.op_url,
                                               "--dry-run", NULL}),
                     0);
    assert_non_null(strstr(out, "\"erase_by\""));
    unsetenv("KIROKU_TOKEN");

    /* The records: serve.started, maintenance.recorded, backup.completed
     * (read-only, beside the running server). */
    assert_int_equal(run((const char *const[]){"dump", "--data", s.data, "--json", NULL}), 0);
    assert_non_null(strstr(out, "serve.started"));
    assert_non_null(strstr(out, "maintenance.recorded"));
    assert_non_null(strstr(out, "backup.completed"));

    /* A clean stop with SIGTERM. */
    assert_int_equal(ac_server_stop(&s), 0);
    unsetenv("KIROKU_CLOCK_OFFSET");
    kr_test_rmrf(tmp);
}

/* A backup that cannot be written is recorded as backup.failed, with why. */
static void test_serve_backup_failed(void **state)
{
    (void)state;
    static char notdir[700];
    static const char *extra[8];
    char tmp[512];
    kr_test_tmpdir(tmp, sizeof tmp);
    snprintf(notdir, sizeof notdir, "%s/a-file", tmp);
    FILE *f = fopen(notdir, "w");
    assert_non_null(f);
    fclose(f);
    extra[0] = "--backups";
    extra[1] = notdir; /* a regular file: no generation can be made there */
    extra[2] = "--backup-at";
    extra[3] = "00:00";
    extra[4] = NULL;
    struct ac_server s;
    ac_server_start_with(&s, extra);
    assert_true(kr_test_wait_for(backup_failed_recorded, s.data, KR_TEST_WAIT_MS, "backup.failed"));
    assert_null(strstr(out, "backup.completed"));
    assert_int_equal(ac_server_stop(&s), 0);
    kr_test_rmrf(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serve_refuses_clock_override),
        cmocka_unit_test(test_serve_daily_jobs),
        cmocka_unit_test(test_serve_backup_failed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
