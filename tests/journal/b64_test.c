/* b64_test.c: strict canonical base64 decoding (journal/b64.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "b64.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

static kr_err dec(const char *in, uint8_t *out, size_t cap, size_t *n)
{
    return kr_b64_decode(out, cap, in, strlen(in), n);
}

static void test_roundtrip_all_lengths(void **state)
{
    (void)state;
    uint8_t data[64], back[64];
    char text[128];
    for (size_t len = 0; len <= sizeof data; len++) {
        randombytes_buf(data, len);
        sodium_bin2base64(text, sizeof text, data, len, sodium_base64_VARIANT_ORIGINAL);
        size_t n = 99;
        assert_int_equal(dec(text, back, sizeof back, &n), KR_OK);
        assert_int_equal(n, len);
        assert_memory_equal(back, data, len);
        if (len > 0) {
            assert_int_equal(kr_b64_decode(back, len - 1, text, strlen(text), &n), KR_ETOOLARGE);
        }
    }
}

static void test_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "QQ",               /* unpadded */
        "QQ=",              /* short padding */
        "QQ==QQ==",         /* padding in the middle */
        "Q===",             /* three pad characters */
        "QR==",             /* nonzero unused bits ("A" is QQ==) */
        "QUI=X",            /* length not a multiple of 4 */
        "QU-=",             /* URL-safe alphabet */
        "QU_=",     "QU I", /* space */
        "QUJD\n",           /* newline */
        "=QUJ",
    };
    uint8_t out[16];
    size_t n;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(dec(bad[i], out, sizeof out, &n), KR_ECORRUPT);
    /* Every byte outside the alphabet, in every position of a group. */
    for (int c = 0; c < 256; c++) {
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/';
        for (int pos = 0; pos < 4; pos++) {
            char t[5] = "QUJD";
            t[pos] = (char)c;
            kr_err err = kr_b64_decode(out, sizeof out, t, 4, &n);
            if (ok)
                assert_int_equal(err, KR_OK);
            else if (!(c == '=' && pos >= 2))
                assert_int_equal(err, KR_ECORRUPT);
        }
    }
}

static void test_padding_bits(void **state)
{
    (void)state;
    uint8_t out[4];
    size_t n;
    assert_int_equal(dec("QQ==", out, sizeof out, &n), KR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 'A');
    assert_int_equal(dec("QUI=", out, sizeof out, &n), KR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(dec("QUJ=", out, sizeof out, &n), KR_ECORRUPT); /* low bits set */
    assert_int_equal(dec("", out, sizeof out, &n), KR_OK);
    assert_int_equal(n, 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_lengths),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_padding_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
