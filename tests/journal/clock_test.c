/*
 * clock_test.c: tests for journal/clock.c: the offset syntax of the
 * KIROKU_CLOCK_OFFSET override (every unit, signs, every malformed form, the
 * bounds, the absolute "@SECONDS" form) and the offset clock over a fixed base clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "clock.h"

#define S 1000000000LL

static void parses(const char *s, int64_t want)
{
    int64_t got = 12345;
    assert_int_equal(kr_clock_offset_parse(s, &got), KR_OK);
    assert_true(got == want);
}

static void refused(const char *s, kr_err want)
{
    int64_t got = 12345;
    assert_int_equal(kr_clock_offset_parse(s, &got), want);
    assert_true(got == 12345); /* untouched on error */
}

static void test_units(void **state)
{
    (void)state;
    parses("0", 0);
    parses("3600", 3600 * S);
    parses("45s", 45 * S);
    parses("90m", S * 90 * 60);
    parses("2h", S * 2 * 3600);
    parses("30d", S * 30 * 86400);
    parses("+1d", 86400 * S);
    parses("-90m", -S * 90 * 60);
    parses("-0", 0);
    parses("007d", S * 7 * 86400);
}

static void test_malformed(void **state)
{
    (void)state;
    refused("", KR_EINVAL);
    refused("+", KR_EINVAL);
    refused("-", KR_EINVAL);
    refused("d", KR_EINVAL);
    refused("30 d", KR_EINVAL);
    refused(" 30d", KR_EINVAL);
    refused("30d ", KR_EINVAL);
    refused("30dd", KR_EINVAL);
    refused("30w", KR_EINVAL);
    refused("1.5d", KR_EINVAL);
    refused("+-1", KR_EINVAL);
    refused("0x10", KR_EINVAL);
    refused("30D", KR_EINVAL);
    int64_t x;
    assert_int_equal(kr_clock_offset_parse(NULL, &x), KR_EINVAL);
    assert_int_equal(kr_clock_offset_parse("1", NULL), KR_EINVAL);
}

/* The override's absolute form, "@SECONDS", against a fixed now. */
static void test_absolute(void **state)
{
    (void)state;
    const uint64_t now = 1796515200ull * S + 250000000ull; /* 2026-12-07T00:00:00.25Z */
    int64_t got = 12345;
    assert_int_equal(kr_clock_override_parse("@1796515200", now, &got), KR_OK);
    assert_true(got == -250000000LL);
    assert_int_equal(kr_clock_override_parse("@1796518800", now, &got), KR_OK);
    assert_true(got == 3600 * S - 250000000LL);
    assert_int_equal(kr_clock_override_parse("@0", 5 * S, &got), KR_OK);
    assert_true(got == -5 * S);
    /* The relative forms go through as kr_clock_offset_parse takes them. */
    assert_int_equal(kr_clock_override_parse("-90m", now, &got), KR_OK);
    assert_true(got == -S * 90 * 60);
    assert_int_equal(kr_clock_override_parse("30w", now, &got), KR_EINVAL);
    /* Malformed: no digits, a sign, a unit, spaces, anything after. */
    static const char *const bad[] = {"@",   "@-1",          "@+1",          "@1d", "@ 1",
                                      "@1 ", "@1.5",         "@0x10",        "@@1", "1@",
                                      "",    "@1796515200s", "@1796515200\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        got = 12345;
        assert_int_equal(kr_clock_override_parse(bad[i], now, &got), KR_EINVAL);
        assert_true(got == 12345);
    }
    /* Bounds: at most KR_CLOCK_OFFSET_MAX_S away from now, no overflow. */
    char buf[64];
    snprintf(buf, sizeof buf, "@%llu", (unsigned long long)KR_CLOCK_OFFSET_MAX_S);
    assert_int_equal(kr_clock_override_parse(buf, 0, &got), KR_OK);
    assert_true(got == KR_CLOCK_OFFSET_MAX_S * S);
    snprintf(buf, sizeof buf, "@%llu", (unsigned long long)KR_CLOCK_OFFSET_MAX_S + 1);
    assert_int_equal(kr_clock_override_parse(buf, 0, &got), KR_ETOOLARGE);
    assert_int_equal(kr_clock_override_parse("@99999999999999999999999", now, &got), KR_ETOOLARGE);
    assert_int_equal(kr_clock_override_parse("@18446744073", now, &got), KR_ETOOLARGE);
    assert_int_equal(kr_clock_override_parse(NULL, now, &got), KR_EINVAL);
    assert_int_equal(kr_clock_override_parse("@1", now, NULL), KR_EINVAL);
}

static void test_bounds(void **state)
{
    (void)state;
    char buf[64];
    parses("36600d", KR_CLOCK_OFFSET_MAX_S * S);
    parses("-36600d", -KR_CLOCK_OFFSET_MAX_S * S);
    refused("36601d", KR_ETOOLARGE);
    snprintf(buf, sizeof buf, "%lld", KR_CLOCK_OFFSET_MAX_S + 1);
    refused(buf, KR_ETOOLARGE);
    refused("99999999999999999999999999999", KR_ETOOLARGE);
    refused("-99999999999999999999999999999h", KR_ETOOLARGE);
}

static uint64_t fixed_now(void *ctx)
{
    return *(const uint64_t *)ctx;
}

static void test_offset_clock(void **state)
{
    (void)state;
    uint64_t base_t = 1000 * (uint64_t)S;
    struct kr_clock base = {.now_ns = fixed_now, .ctx = &base_t};
    struct kr_offset_clock oc;
    kr_clock_offset_init(&oc, &base, S * 30 * 86400);
    assert_true(kr_clock_now(&oc.clock) == base_t + 30ull * 86400 * S);
    kr_clock_offset_init(&oc, &base, -10 * S);
    assert_true(kr_clock_now(&oc.clock) == base_t - 10ull * S);
    kr_clock_offset_init(&oc, &base, -2000 * S); /* before the epoch: clamped */
    assert_true(kr_clock_now(&oc.clock) == 0);
    kr_clock_offset_init(&oc, &base, INT64_MIN);
    assert_true(kr_clock_now(&oc.clock) == 0);
    base_t = UINT64_MAX - 5;
    kr_clock_offset_init(&oc, &base, 10);
    assert_true(kr_clock_now(&oc.clock) == UINT64_MAX);
    /* Over the real clock: ahead of it by the offset, give or take the time
     * between the two readings (an hour is far more than that). */
    kr_clock_offset_init(&oc, NULL, 86400 * S);
    uint64_t real = kr_clock_now(NULL), ahead = kr_clock_now(&oc.clock);
    assert_true(ahead >= real + 86400ull * S && ahead < real + 86400ull * S + 3600ull * S);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units),        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_bounds),       cmocka_unit_test(test_absolute),
        cmocka_unit_test(test_offset_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
