/*
 * rng_test.c: tests for journal/rng.c, the randomness seam.
 *
 * The deterministic stream is checked against its definition in rng.h,
 * recomputed here with libsodium's BLAKE2b and ChaCha20, so that demo data
 * seeded today comes out the same in later versions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kr_limits.h"
#include "rng.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The first len bytes of the stream for seed, from rng.h's definition. */
static void spec_stream(uint64_t seed, uint8_t *out, size_t len)
{
    static const char ctx[] = "kiroku.rng.det.v1";
    uint8_t msg[sizeof ctx - 1 + 8], key[32], nonce[8] = {0};
    memcpy(msg, ctx, sizeof ctx - 1);
    for (size_t i = 0; i < 8; i++)
        msg[sizeof ctx - 1 + i] = (uint8_t)(seed >> (8 * i));
    assert_int_equal(crypto_generichash(key, sizeof key, msg, sizeof msg, NULL, 0), 0);
    assert_int_equal(crypto_stream_chacha20(out, len, nonce, key), 0);
}

static void test_matches_spec(void **state)
{
    (void)state;
    static const uint64_t seeds[] = {0, 1, 42, UINT64_MAX};
    for (size_t s = 0; s < COUNT(seeds); s++) {
        uint8_t want[1000], got[1000];
        spec_stream(seeds[s], want, sizeof want);
        struct kr_rng_det d;
        struct kr_rng r;
        kr_rng_det_init(&d, seeds[s], &r);
        kr_rng_fill(&r, got, sizeof got);
        assert_memory_equal(got, want, sizeof want);
        kr_rng_det_fini(&d);
    }
}

/* Same seed, same bytes, however the calls cut the stream. */
static void test_call_sizes(void **state)
{
    (void)state;
    uint8_t want[4096], got[4096];
    spec_stream(7, want, sizeof want);
    /* Call sizes, used in turn until the buffer is full. */
    static const size_t cuts[][4] = {{1},  {7},    {63, 1},           {64},
                                     {65}, {4096}, {100, 3, 64, 129}, {0, 5}};
    static const size_t ncuts[] = {1, 1, 2, 1, 1, 1, 4, 2};
    for (size_t t = 0; t < COUNT(cuts); t++) {
        struct kr_rng_det d;
        struct kr_rng r;
        kr_rng_det_init(&d, 7, &r);
        memset(got, 0, sizeof got);
        for (size_t pos = 0, i = 0; pos < sizeof got; i++) {
            size_t n = cuts[t][i % ncuts[t]];
            if (n > sizeof got - pos)
                n = sizeof got - pos;
            kr_rng_fill(&r, got + pos, n);
            pos += n;
        }
        if (memcmp(got, want, sizeof want) != 0)
            fail_msg("cut pattern %zu gives other bytes", t);
        kr_rng_det_fini(&d);
    }
}

static void test_seeds_differ(void **state)
{
    (void)state;
    struct kr_rng_det a, b, c;
    struct kr_rng ra, rb, rc;
    kr_rng_det_init(&a, 1, &ra);
    kr_rng_det_init(&b, 2, &rb);
    kr_rng_det_init(&c, 1, &rc);
    uint8_t x[64], y[64], z[64];
    kr_rng_fill(&ra, x, sizeof x);
    kr_rng_fill(&rb, y, sizeof y);
    kr_rng_fill(&rc, z, sizeof z);
    assert_memory_not_equal(x, y, sizeof x);
    assert_memory_equal(x, z, sizeof x);
    /* The stream moves on: the next bytes are not the first again. */
    kr_rng_fill(&ra, y, sizeof y);
    assert_memory_not_equal(x, y, sizeof x);
    kr_rng_det_fini(&a);
    kr_rng_det_fini(&b);
    kr_rng_det_fini(&c);
}

/* kr_rng_u64 reads the next 8 stream bytes little-endian. */
static void test_u64_layout(void **state)
{
    (void)state;
    uint8_t want[16];
    spec_stream(99, want, sizeof want);
    struct kr_rng_det d;
    struct kr_rng r;
    kr_rng_det_init(&d, 99, &r);
    for (size_t k = 0; k < 2; k++) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
            v = (v << 8) | want[8 * k + (size_t)i];
        assert_true(kr_rng_u64(&r) == v);
    }
    kr_rng_det_fini(&d);
}

static void test_below_bounds(void **state)
{
    (void)state;
    struct kr_rng_det d;
    struct kr_rng r;
    kr_rng_det_init(&d, 5, &r);
    static const uint64_t ns[] = {
        1, 2, 3, 7, 10, 1000, 1u << 31, UINT32_MAX, (1ull << 63) + 1, UINT64_MAX};
    for (size_t i = 0; i < COUNT(ns); i++) {
        for (int k = 0; k < 2000; k++) {
            uint64_t v = kr_rng_below(&r, ns[i]);
            if (v >= ns[i])
                fail_msg("below(%llu) gave %llu", (unsigned long long)ns[i], (unsigned long long)v);
        }
    }
    assert_true(kr_rng_below(&r, 1) == 0);
    /* Around 2^63 + 1 nearly half the draws are rejected; the results still
     * use both halves of the range. */
    bool low = false, high = false;
    for (int k = 0; k < 200; k++) {
        uint64_t v = kr_rng_below(&r, (1ull << 63) + 1);
        low |= v < (1ull << 62);
        high |= v > (1ull << 62);
    }
    assert_true(low && high);
    kr_rng_det_fini(&d);
}

/* Chi-square over 10 buckets: 99.9% quantile for 9 degrees of freedom is
 * 27.88. The seed is fixed, so this never flakes. */
static void test_below_uniform(void **state)
{
    (void)state;
    struct kr_rng_det d;
    struct kr_rng r;
    kr_rng_det_init(&d, 1234, &r);
    enum { N = 10, DRAWS = 100000 };
    unsigned counts[N] = {0};
    for (int k = 0; k < DRAWS; k++)
        counts[kr_rng_below(&r, N)]++;
    double chi = 0, expect = (double)DRAWS / N;
    for (int i = 0; i < N; i++)
        chi += ((double)counts[i] - expect) * ((double)counts[i] - expect) / expect;
    assert_true(chi < 27.88);

    /* n = 3 * 2^62: plain x % n would put half the mass on [0, 2^62). */
    uint64_t n = 3ull << 62, low = 0;
    for (int k = 0; k < 30000; k++)
        low += kr_rng_below(&r, n) < (1ull << 62);
    /* Unbiased: a third, 10000 +- 3 sd (sd ~ 82). Biased: 15000. */
    assert_true(low > 9750 && low < 10250);
    kr_rng_det_fini(&d);
}

/* A source stuck at zero would be rejected forever for n not a power of
 * two; below() stops after KR_RNG_BELOW_TRIES draws. */
static _Atomic unsigned zero_calls;
static void zero_fill(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    atomic_fetch_add(&zero_calls, 1);
    memset(buf, 0, n);
}

static void test_below_stuck_source(void **state)
{
    (void)state;
    struct kr_rng zero = {zero_fill, NULL};
    atomic_store(&zero_calls, 0);
    assert_true(kr_rng_below(&zero, 3) == 0);
    assert_int_equal(atomic_load(&zero_calls), KR_RNG_BELOW_TRIES);
    /* A power of two rejects nothing: one draw. */
    atomic_store(&zero_calls, 0);
    assert_true(kr_rng_below(&zero, 8) == 0);
    assert_int_equal(atomic_load(&zero_calls), 1);
}

static void test_system_source(void **state)
{
    (void)state;
    uint8_t a[64], b[64], zero[64];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    memset(zero, 0, sizeof zero);
    kr_rng_fill(NULL, a, sizeof a);
    kr_rng_fill(NULL, b, sizeof b);
    assert_memory_not_equal(a, zero, sizeof a);
    assert_memory_not_equal(a, b, sizeof a);
    kr_rng_fill(NULL, NULL, 0);
    assert_true(kr_rng_u64(NULL) != kr_rng_u64(NULL));
    for (int k = 0; k < 1000; k++)
        assert_true(kr_rng_below(NULL, 6) < 6);
}

/* Threads sharing one stream each get whole calls: the values they draw are
 * exactly the first values of the stream, in some order. */
enum { THREADS = 4, PER_THREAD = 2000 };

struct draw_arg {
    const struct kr_rng *r;
    uint64_t out[PER_THREAD];
};

static void *draw_main(void *p)
{
    struct draw_arg *a = p;
    for (int i = 0; i < PER_THREAD; i++)
        a->out[i] = kr_rng_u64(a->r);
    return NULL;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static void test_threads(void **state)
{
    (void)state;
    struct kr_rng_det d, seq;
    struct kr_rng r, rs;
    kr_rng_det_init(&d, 77, &r);
    kr_rng_det_init(&seq, 77, &rs);
    struct draw_arg *args = calloc(THREADS, sizeof *args);
    uint64_t *all = calloc((size_t)THREADS * PER_THREAD, sizeof *all);
    uint64_t *want = calloc((size_t)THREADS * PER_THREAD, sizeof *want);
    assert_non_null(args);
    assert_non_null(all);
    assert_non_null(want);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i].r = &r;
        assert_int_equal(pthread_create(&t[i], NULL, draw_main, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++)
        memcpy(all + (size_t)i * PER_THREAD, args[i].out, sizeof args[i].out);
    for (int i = 0; i < THREADS * PER_THREAD; i++)
        want[i] = kr_rng_u64(&rs);
    qsort(all, (size_t)THREADS * PER_THREAD, sizeof *all, cmp_u64);
    qsort(want, (size_t)THREADS * PER_THREAD, sizeof *want, cmp_u64);
    assert_memory_equal(all, want, (size_t)THREADS * PER_THREAD * sizeof *all);
    free(args);
    free(all);
    free(want);
    kr_rng_det_fini(&d);
    kr_rng_det_fini(&seq);
}

static void test_fini(void **state)
{
    (void)state;
    kr_rng_det_fini(NULL);
    struct kr_rng_det zeroed;
    memset(&zeroed, 0, sizeof zeroed);
    kr_rng_det_fini(&zeroed);
    struct kr_rng_det d;
    struct kr_rng r;
    kr_rng_det_init(&d, 3, &r);
    kr_rng_det_fini(&d);
    uint8_t zero[32];
    memset(zero, 0, sizeof zero);
    assert_memory_equal(d.key, zero, sizeof zero); /* the key is wiped */
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_spec),
        cmocka_unit_test(test_call_sizes),
        cmocka_unit_test(test_seeds_differ),
        cmocka_unit_test(test_u64_layout),
        cmocka_unit_test(test_below_bounds),
        cmocka_unit_test(test_below_uniform),
        cmocka_unit_test(test_below_stuck_source),
        cmocka_unit_test(test_system_source),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_fini),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
