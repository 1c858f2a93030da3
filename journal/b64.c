/* b64.c: strict canonical base64 decoding (see b64.h). */
#include "b64.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

/* Longest text we check by re-encoding on the stack: 64 KiB of data. */
#define B64_MAX_TEXT 87384u

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

kr_err kr_b64_decode(uint8_t *out, size_t cap, const char *in, size_t len, size_t *out_len)
{
    if (len % 4 != 0 || len > B64_MAX_TEXT)
        return KR_ECORRUPT;
    size_t pad = 0;
    if (len >= 1 && in[len - 1] == '=')
        pad = len >= 2 && in[len - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < len - pad; i++)
        if (!b64_char(in[i]))
            return KR_ECORRUPT;
    size_t n = len / 4 * 3 - pad;
    if (n > cap)
        return KR_ETOOLARGE;
    size_t got = 0;
    if (sodium_base642bin(out, cap, in, len, NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL) !=
            0 ||
        got != n)
        return KR_ECORRUPT;
    /* Unused low bits of the last symbol must be zero: re-encode and compare. */
    if (pad) {
        char back[8];
        size_t tail = n % 3 == 0 ? 3 : n % 3;
        sodium_bin2base64(back, sizeof back, out + n - tail, tail, sodium_base64_VARIANT_ORIGINAL);
        if (memcmp(back, in + len - 4, 4) != 0)
            return KR_ECORRUPT;
    }
    *out_len = n;
    return KR_OK;
}
