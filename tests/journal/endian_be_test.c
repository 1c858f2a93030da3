/* endian_be_test.c: the byte-order helpers (journal/endian_be.h) write and
 * read the bytes their names say, at any alignment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "endian_be.h"

#include <string.h>

static void test_big_endian(void **state)
{
    (void)state;
    uint8_t b[9 + 8];
    static const uint8_t want64[8] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    static const uint8_t want32[4] = {0xde, 0xad, 0xbe, 0xef};
    static const uint8_t want16[2] = {0xbe, 0xef};
    for (size_t off = 0; off < 9; off++) { /* every alignment */
        memset(b, 0x55, sizeof b);
        kr_put_be64(b + off, 0x0123456789abcdefull);
        assert_memory_equal(b + off, want64, 8);
        assert_int_equal(b[off + 8], 0x55); /* nothing written past it */
        assert_true(kr_get_be64(b + off) == 0x0123456789abcdefull);
        kr_put_be32(b + off, 0xdeadbeefu);
        assert_memory_equal(b + off, want32, 4);
        assert_int_equal(kr_get_be32(b + off), 0xdeadbeefu);
        kr_put_be16(b + off, 0xbeef);
        assert_memory_equal(b + off, want16, 2);
        assert_int_equal(kr_get_be16(b + off), 0xbeef);
    }
    /* Big-endian keys sort as their numbers do. */
    uint8_t x[8], y[8];
    kr_put_be64(x, 255);
    kr_put_be64(y, 256);
    assert_true(memcmp(x, y, 8) < 0);
}

static void test_little_endian(void **state)
{
    (void)state;
    uint8_t b[8];
    static const uint8_t want[8] = {0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01};
    kr_put_le64(b, 0x0123456789abcdefull);
    assert_memory_equal(b, want, 8);
    assert_true(kr_get_le64(b) == 0x0123456789abcdefull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_big_endian),
        cmocka_unit_test(test_little_endian),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
