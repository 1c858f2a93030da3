/*
 * lease_fuzz.c: libFuzzer target for lease_decode (api/lease.h), the strict
 * reader of a lease value: bytes any client of the NATS server can write
 * into the KIROKU_LEASE bucket. A value read as one of ours must hold a
 * valid node name (or none: vacant) and endpoint, and encode back the same.
 */
#include "lease.h"
#include "natskv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy, so ASan sees any read past the end. */
    uint8_t *b = malloc(size ? size : 1);
    if (!b)
        abort();
    memcpy(b, data, size);
    struct lease_holder h;
    if (lease_decode(b, size, &h) == KR_OK) {
        if (h.node[0] && !nkv_node_name_ok(h.node))
            abort();
        if (h.endpoint[0] && !nkv_endpoint_ok(h.endpoint, strlen(h.endpoint)))
            abort();
    } else if (h.node[0] || h.endpoint[0] || h.epoch || h.size) {
        abort(); /* a refused value leaves nothing behind */
    }
    free(b);
    return 0;
}
