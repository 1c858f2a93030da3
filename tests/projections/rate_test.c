/*
 * rate_test.c: the fixed-window request counters (projections/rate.c):
 * limits per key, all-or-none takes, give-back, windows ending, first
 * refusals, and a table full of other keys.
 */
#include "rate.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define W  1000000000ull /* a window of 1 s */
#define T0 1000000000000ull

static struct kr_rate_key key(const char *kind, const char *s, uint32_t max)
{
    return (struct kr_rate_key){kind, s, strlen(s), max};
}

static void test_limit_window_give_back(void **state)
{
    (void)state;
    struct kr_rate *r = kr_rate_new(W);
    assert_non_null(r);
    struct kr_rate_key k[2] = {key("email", "a@b.jp", 2), key("source", "src-1", 3)};
    size_t which;
    uint64_t retry;
    bool first;
    assert_int_equal(kr_rate_take(r, k, 2, T0, &which, &retry, &first), KR_OK);
    assert_int_equal(kr_rate_take(r, k, 2, T0 + 10, &which, &retry, &first), KR_OK);
    assert_int_equal(kr_rate_take(r, k, 2, T0 + 20, &which, &retry, &first), KR_ERATE);
    assert_int_equal(which, 0);
    assert_int_equal(retry, W - 20);
    assert_true(first);
    assert_int_equal(kr_rate_take(r, k, 2, T0 + 30, &which, &retry, &first), KR_ERATE);
    assert_false(first); /* the second refusal in the window */
    /* All or none: the email key refused, the source key was not counted,
     * so another address from the same source still has one left. */
    struct kr_rate_key k2[2] = {key("email", "c@d.jp", 2), key("source", "src-1", 3)};
    assert_int_equal(kr_rate_take(r, k2, 2, T0 + 40, &which, &retry, &first), KR_OK);
    assert_int_equal(kr_rate_take(r, k2, 2, T0 + 50, &which, &retry, &first), KR_ERATE);
    assert_int_equal(which, 1);
    /* A take that came to nothing is given back. */
    kr_rate_give_back(r, k2, 2, T0 + 60);
    assert_int_equal(kr_rate_take(r, k2, 2, T0 + 70, &which, &retry, &first), KR_OK);
    /* The same bytes of another kind are another key. */
    struct kr_rate_key k3[1] = {key("source", "a@b.jp", 1)};
    assert_int_equal(kr_rate_take(r, k3, 1, T0 + 80, &which, &retry, &first), KR_OK);
    /* The window ends: counts start again. */
    assert_int_equal(kr_rate_take(r, k, 2, T0 + W, &which, &retry, &first), KR_OK);
    kr_rate_free(r);
}

/* More live keys than the table holds: a newcomer whose slots are all taken
 * is refused until the first of them frees, nobody's count is reset. */
static void test_table_full(void **state)
{
    (void)state;
    struct kr_rate *r = kr_rate_new(W);
    assert_non_null(r);
    char name[32];
    size_t which, refused = 0;
    uint64_t retry = 0, longest = 0;
    bool first;
    for (unsigned i = 0; i < KR_RATE_SLOTS + KR_RATE_SLOTS / 2; i++) {
        snprintf(name, sizeof name, "key-%u", i);
        struct kr_rate_key k = key("source", name, 5);
        if (kr_rate_take(r, &k, 1, T0 + i, &which, &retry, &first) == KR_ERATE) {
            refused++;
            assert_true(retry > 0 && retry <= W);
            if (retry > longest)
                longest = retry;
        }
    }
    assert_true(refused >= KR_RATE_SLOTS / 2);
    /* Once the windows end, newcomers fit again. */
    struct kr_rate_key k = key("source", "late", 5);
    assert_int_equal(kr_rate_take(r, &k, 1, T0 + 2 * W, &which, &retry, &first), KR_OK);
    kr_rate_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_window_give_back),
        cmocka_unit_test(test_table_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
