/*
 * verify_state_fuzz.c: libFuzzer target for jrn_verify_state_parse, the
 * strict parser of a saved verification state (hostile input: an auditor's
 * file may have been swapped). Half of the inputs get a valid checksum
 * appended, so the fuzzer reaches the parser behind it.
 */
#include "hash.h"
#include "kr_limits.h"
#include "verify.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jrn_verify_state *s;
    if (jrn_verify_state_parse(data, size, &s) == KR_OK)
        jrn_verify_state_free(s);
    if (size < 1 || size > 1u << 20)
        return 0;
    /* First byte odd: the rest, sealed with its SHA-256. */
    if (data[0] & 1) {
        uint8_t *buf = malloc(size - 1 + KR_HASH_LEN);
        if (!buf)
            return 0;
        memcpy(buf, data + 1, size - 1);
        kr_sha256(buf + size - 1, buf, size - 1);
        if (jrn_verify_state_parse(buf, size - 1 + KR_HASH_LEN, &s) == KR_OK) {
            (void)jrn_verify_state_size(s);
            jrn_verify_state_free(s);
        }
        free(buf);
    }
    return 0;
}
