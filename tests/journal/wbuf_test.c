/* wbuf_test.c: the capped, wiping write buffer (journal/wbuf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "wbuf.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The allocator seam: remembers each block's size, and at free whether every
 * byte of it was zero. */
#define SEEN_MAX 64
static struct {
    void *p;
    size_t n;
} seen[SEEN_MAX];
static size_t frees, dirty_frees;

static void *t_alloc(size_t n)
{
    void *p = malloc(n);
    for (size_t i = 0; p && i < SEEN_MAX; i++)
        if (!seen[i].p) {
            seen[i].p = p;
            seen[i].n = n;
            break;
        }
    return p;
}

static void t_free(void *p)
{
    for (size_t i = 0; i < SEEN_MAX; i++)
        if (seen[i].p == p) {
            const unsigned char *c = p;
            for (size_t k = 0; k < seen[i].n; k++)
                if (c[k]) {
                    dirty_frees++;
                    break;
                }
            seen[i].p = NULL;
        }
    frees++;
    free(p);
}

static int setup(void **state)
{
    (void)state;
    memset(seen, 0, sizeof seen);
    frees = dirty_frees = 0;
    kr_wbuf_set_allocator(t_alloc, t_free);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kr_wbuf_set_allocator(NULL, NULL);
    return 0;
}

static void fill(struct kr_wbuf *b, size_t n, kr_err want)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    memset(p, 'S', n);
    assert_int_equal(kr_wbuf_add(b, p, n), want);
    free(p);
}

static void test_ceiling_exact(void **state)
{
    (void)state;
    const size_t max = 1000;
    struct kr_wbuf b;
    kr_wbuf_init(&b, max);
    fill(&b, max - 1, KR_OK);
    assert_int_equal(b.size, max - 1);
    fill(&b, 1, KR_OK); /* = max */
    assert_int_equal(b.size, max);
    fill(&b, 1, KR_ETOOLARGE); /* max + 1 */
    assert_int_equal(b.size, max);
    assert_int_equal(kr_wbuf_failed(&b), KR_ETOOLARGE);
    kr_wbuf_reset(&b);
    assert_int_equal(kr_wbuf_failed(&b), KR_OK);
    fill(&b, max + 1, KR_ETOOLARGE); /* in one write, from empty */
    assert_int_equal(b.size, 0);
    kr_wbuf_free(&b);
    assert_null(b.data);
}

static void test_growth_wipes_old_blocks(void **state)
{
    (void)state;
    struct kr_wbuf b;
    kr_wbuf_init(&b, 1u << 20);
    for (int i = 0; i < 100; i++)
        fill(&b, 100, KR_OK); /* 10,000 bytes: several blocks outgrown */
    assert_true(frees >= 3);
    assert_int_equal(dirty_frees, 0);
    for (size_t i = 0; i < b.size; i++)
        assert_int_equal(b.data[i], 'S');
    size_t before = frees;
    kr_wbuf_free(&b);
    assert_int_equal(frees, before + 1);
    assert_int_equal(dirty_frees, 0);
}

/* A buffer reused after one large write gives its large block back (wiped)
 * and keeps a small one. */
static void test_reset_keep(void **state)
{
    (void)state;
    struct kr_wbuf b;
    kr_wbuf_init(&b, 1u << 20);
    fill(&b, 100, KR_OK);
    size_t small = b.alloc, before = frees;
    kr_wbuf_reset_keep(&b, 4096);
    assert_int_equal(frees, before); /* small: kept */
    assert_int_equal(b.alloc, small);
    assert_int_equal(b.size, 0);
    fill(&b, 100000, KR_OK);
    assert_true(b.alloc > 4096);
    before = frees;
    kr_wbuf_reset_keep(&b, 4096);
    assert_int_equal(frees, before + 1); /* the large block, wiped */
    assert_int_equal(dirty_frees, 0);
    assert_null(b.data);
    assert_int_equal(b.alloc, 0);
    assert_int_equal(b.size, 0);
    fill(&b, 10, KR_OK); /* usable again */
    assert_int_equal(b.size, 10);
    kr_wbuf_free(&b);
}

static void test_packer_stops_at_ceiling(void **state)
{
    (void)state;
    struct kr_wbuf b;
    kr_wbuf_init(&b, 64);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, kr_wbuf_write);
    assert_int_equal(msgpack_pack_str_with_body(&pk, "token", 5), 0);
    assert_int_equal(b.size, 6);
    char big[100];
    memset(big, 'x', sizeof big);
    assert_int_equal(msgpack_pack_bin_with_body(&pk, big, sizeof big), -1);
    assert_int_equal(kr_wbuf_failed(&b), KR_ETOOLARGE);
    /* Once failed, later writes fail too: a packed result is never torn. */
    assert_int_equal(msgpack_pack_nil(&pk), -1);
    kr_wbuf_free(&b);
    assert_int_equal(dirty_frees, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ceiling_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_growth_wipes_old_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_packer_stops_at_ceiling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_keep, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
