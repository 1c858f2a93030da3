/*
 * jst_test.c: rendering UTC nanoseconds in Japan time (projections/jst.c):
 * known instants across day, month, year and leap-year boundaries, the ends
 * of the u64 range, and agreement with libc's UTC calendar (gmtime_r, which
 * reads no time-zone state) over the whole range.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jst.h"

#define S  1000000000ull
#define MS 1000000ull

static void expect(uint64_t ns, const char *want)
{
    char out[JST_LEN + 1];
    memset(out, 'x', sizeof out);
    assert_int_equal(jst_format(ns, out), JST_LEN);
    assert_int_equal(strlen(out), JST_LEN);
    assert_string_equal(out, want);
}

static void test_epoch(void **state)
{
    (void)state;
    expect(0, "1970-01-01T09:00:00.000+09:00");
    expect(999999, "1970-01-01T09:00:00.000+09:00"); /* below a millisecond: truncated */
    expect(1 * MS, "1970-01-01T09:00:00.001+09:00");
    expect(15 * 3600 * S - 1, "1970-01-01T23:59:59.999+09:00");
    expect(15 * 3600 * S, "1970-01-02T00:00:00.000+09:00");
}

static void test_known_instants(void **state)
{
    (void)state;
    /* 2026-04-01T00:00:00Z */
    expect(1775001600 * S + 123 * MS, "2026-04-01T09:00:00.123+09:00");
    /* 2026-03-31T15:00:00Z is midnight in Japan: day and month change */
    expect(1774969200 * S - 1, "2026-03-31T23:59:59.999+09:00");
    expect(1774969200 * S, "2026-04-01T00:00:00.000+09:00");
    /* 2025-12-31T15:00:00Z: the year changes in Japan before it does in UTC */
    expect(1767193200 * S - 1 * MS, "2025-12-31T23:59:59.999+09:00");
    expect(1767193200 * S, "2026-01-01T00:00:00.000+09:00");
}

static void test_leap_years(void **state)
{
    (void)state;
    /* 2024 is a leap year: 02-28 -> 02-29 -> 03-01 */
    expect(1709132400 * S, "2024-02-29T00:00:00.000+09:00");
    expect(1709218800 * S - 1, "2024-02-29T23:59:59.999+09:00");
    expect(1709218800 * S, "2024-03-01T00:00:00.000+09:00");
    /* 2023 is not */
    expect(1677596400 * S, "2023-03-01T00:00:00.000+09:00");
    /* 2000 is (divisible by 400), 2100 is not (by 100 only) */
    expect(951750000 * S, "2000-02-29T00:00:00.000+09:00");
    expect(4107510000 * S, "2100-03-01T00:00:00.000+09:00");
}

static void test_u64_max(void **state)
{
    (void)state;
    /* 18446744073.709551615 s = 2554-07-21T23:34:33.709Z */
    expect(UINT64_MAX, "2554-07-22T08:34:33.709+09:00");
}

/* Every ~97 hours and 1 ms over the whole range, against gmtime_r of the
 * instant shifted by 9 hours. */
static void test_against_libc(void **state)
{
    (void)state;
    const uint64_t step = (97ull * 3600 + 7) * S + 1 * MS;
    uint64_t checked = 0;
    for (uint64_t ns = 0; ns <= UINT64_MAX - step; ns += step) {
        time_t t = (time_t)(ns / S + 9 * 3600);
        struct tm tm;
        assert_non_null(gmtime_r(&t, &tm));
        char want[64], got[JST_LEN + 1];
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03u+09:00", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (unsigned)(ns / MS % 1000));
        jst_format(ns, got);
        assert_string_equal(got, want);
        checked++;
    }
    assert_true(checked > 50000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epoch),        cmocka_unit_test(test_known_instants),
        cmocka_unit_test(test_leap_years),   cmocka_unit_test(test_u64_max),
        cmocka_unit_test(test_against_libc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
