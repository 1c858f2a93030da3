/*
 * daily_test.c: tests for tools/daily.c, serve's scheduler: the JST time of
 * day of the daily backup (HH:MM parsing, the next time at or after now
 * across midnight in Japan and in UTC), and the jobs running on the thread at
 * start (retention at once; the backup at once when today's time has passed,
 * not before it), the minute job (at start, then a minute later by the
 * clock) and stopping while a job runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "daily.h"
#include "retention.h"
#include "test_util.h"

#include <stdatomic.h>
#include <unistd.h>

#define S   1000000000ull
#define MIN (60ull * S)

/* 2026-04-01T00:00:00Z is 09:00 JST. */
#define T0 (1775001600ull * S)

static void test_parse(void **state)
{
    (void)state;
    unsigned m = 7;
    assert_true(daily_parse_hhmm("00:00", &m) && m == 0);
    assert_true(daily_parse_hhmm("03:00", &m) && m == 180);
    assert_true(daily_parse_hhmm("23:59", &m) && m == 1439);
    m = 7;
    assert_false(daily_parse_hhmm("24:00", &m));
    assert_false(daily_parse_hhmm("12:60", &m));
    assert_false(daily_parse_hhmm("3:00", &m));
    assert_false(daily_parse_hhmm("03:000", &m));
    assert_false(daily_parse_hhmm("03-00", &m));
    assert_false(daily_parse_hhmm("ab:cd", &m));
    assert_false(daily_parse_hhmm("", &m));
    assert_int_equal(m, 7);
}

static void test_next_jst(void **state)
{
    (void)state;
    /* 09:00 JST: 03:00 JST is tomorrow's, 18:00 UTC today. */
    assert_true(daily_next_jst(T0, 180) == T0 + MIN * 18 * 60);
    /* 09:00 JST exactly: now. */
    assert_true(daily_next_jst(T0, 540) == T0);
    assert_true(daily_next_jst(T0 + 1, 540) == T0 + RET_NS_PER_DAY);
    /* 23:30 JST (14:30 UTC): 00:10 JST is the next JST day, 40 minutes on. */
    uint64_t t = T0 + (14 * 60 + 30) * MIN;
    assert_true(daily_next_jst(t, 10) == t + 40 * MIN);
}

struct jobs {
    atomic_int retention, backup, minute;
    atomic_int retention_done; /* retention jobs that returned */
    unsigned run_ms;           /* how long the retention job takes */
};

static void job_r(void *arg)
{
    struct jobs *j = arg;
    atomic_fetch_add(&j->retention, 1);
    if (j->run_ms)
        kr_test_pause_ms(j->run_ms); /* a job that takes a while, not a wait */
    atomic_fetch_add(&j->retention_done, 1);
}

static void job_b(void *arg)
{
    struct jobs *j = arg;
    atomic_fetch_add(&j->backup, 1);
}

static void job_m(void *arg)
{
    struct jobs *j = arg;
    atomic_fetch_add(&j->minute, 1);
}

/* A clock the test sets, counting its reads (the thread reads it on every
 * look, so reads tell the test the thread has looked again). */
struct tclock {
    _Atomic uint64_t now;
    atomic_int reads;
};

static uint64_t fixed(void *ctx)
{
    struct tclock *t = ctx;
    atomic_fetch_add(&t->reads, 1);
    return atomic_load(&t->now);
}

struct count_at {
    atomic_int *x;
    int want;
};

static bool count_reached(void *arg)
{
    const struct count_at *c = arg;
    return atomic_load(c->x) >= c->want;
}

static void wait_for(atomic_int *x, int want)
{
    struct count_at c = {x, want};
    assert_true(kr_test_wait_for(count_reached, &c, KR_TEST_WAIT_MS, "a job"));
}

static void test_jobs_at_start(void **state)
{
    (void)state;
    struct tclock tc = {T0, 0}; /* 09:00 JST */
    struct kr_clock c = {.now_ns = fixed, .ctx = &tc};
    struct jobs j = {0};
    /* Backup at 03:00 JST: passed today, so it runs at start. */
    struct daily_options o = {
        .clock = &c, .retention = job_r, .backup = job_b, .backup_at_min = 180, .arg = &j};
    struct daily *d;
    assert_int_equal(daily_start(&o, &d), KR_OK);
    wait_for(&j.retention, 1);
    wait_for(&j.backup, 1);
    daily_stop(d);
    assert_int_equal(atomic_load(&j.retention), 1);
    assert_int_equal(atomic_load(&j.backup), 1);

    /* Backup at 18:00 JST: not yet; nine hours later it runs. */
    struct jobs k = {0};
    o.arg = &k;
    o.backup_at_min = 18 * 60;
    assert_int_equal(daily_start(&o, &d), KR_OK);
    wait_for(&k.retention, 1);
    /* Three more looks at the clock: the one after the job and the next,
     * on which the thread decided what was due, have been acted on: no
     * backup yet. */
    struct count_at looks = {&tc.reads, atomic_load(&tc.reads) + 3};
    assert_true(kr_test_wait_for(count_reached, &looks, KR_TEST_WAIT_MS, "a tick"));
    assert_int_equal(atomic_load(&k.backup), 0);
    atomic_store(&tc.now, T0 + MIN * 9 * 60);
    wait_for(&k.backup, 1);
    /* A day later: retention and the backup again. */
    atomic_fetch_add(&tc.now, RET_NS_PER_DAY);
    wait_for(&k.retention, 2);
    wait_for(&k.backup, 2);
    daily_stop(d);
}

/* The minute job: at start, not again until a minute has passed by the
 * clock, then again. */
static void test_minute_job(void **state)
{
    (void)state;
    struct tclock tc = {T0, 0};
    struct kr_clock c = {.now_ns = fixed, .ctx = &tc};
    struct jobs j = {0};
    struct daily_options o = {.clock = &c, .retention = job_r, .minutely = job_m, .arg = &j};
    struct daily *d;
    assert_int_equal(daily_start(&o, &d), KR_OK);
    wait_for(&j.minute, 1);
    assert_int_equal(atomic_load(&j.retention), 1); /* the daily job came first */
    /* Three more looks at the clock, 59 s on: acted on, no second run. */
    atomic_store(&tc.now, T0 + 59 * S);
    struct count_at looks = {&tc.reads, atomic_load(&tc.reads) + 3};
    assert_true(kr_test_wait_for(count_reached, &looks, KR_TEST_WAIT_MS, "a tick"));
    assert_int_equal(atomic_load(&j.minute), 1);
    atomic_store(&tc.now, T0 + MIN);
    wait_for(&j.minute, 2);
    daily_stop(d);
    assert_int_equal(atomic_load(&j.minute), 2);
}

/* Stopping while a job runs waits for it, and returns. */
static void test_stop_during_job(void **state)
{
    (void)state;
    struct jobs j = {.run_ms = 500};
    struct daily_options o = {.retention = job_r, .arg = &j};
    struct daily *d;
    assert_int_equal(daily_start(&o, &d), KR_OK);
    wait_for(&j.retention, 1);
    daily_stop(d);
    assert_int_equal(atomic_load(&j.retention), 1);
    assert_int_equal(atomic_load(&j.retention_done), 1); /* it returned before daily_stop */
    daily_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),           cmocka_unit_test(test_next_jst),
        cmocka_unit_test(test_jobs_at_start),   cmocka_unit_test(test_minute_job),
        cmocka_unit_test(test_stop_during_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
