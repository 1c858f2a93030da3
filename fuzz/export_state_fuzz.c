/*
 * export_state_fuzz.c: libFuzzer target for exp_state_parse, the strict
 * parser of a saved export state (kiroku audit verify --since; hostile
 * input: an auditor's file may have been swapped).
 */
#include "export.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct exp_state *s;
    if (exp_state_parse(data, size, &s) == KR_OK) {
        /* What parses dumps back to the same bytes. */
        size_t len;
        char *again = exp_state_dump(s, &len);
        if (again && (len != size || memcmp(again, data, size) != 0))
            abort();
        free(again);
        (void)exp_state_size(s);
        exp_state_free(s);
    }
    return 0;
}
