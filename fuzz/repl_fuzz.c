/*
 * repl_fuzz.c: libFuzzer target for jrn_repl_decode, the strict decoder of
 * replication chunks (journal/replica.h), which reads bytes from the stream.
 *
 * Arbitrary bytes must never crash the decoder, and whatever it accepts is
 * the one canonical form of the chunk it decodes to: packing the decoded
 * chunk again (jrn_repl_pack) gives the input back byte for byte. Every
 * pointer it hands out lies inside the input, and every bound holds.
 */
#include "replica.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

_Noreturn static void fail(const char *what)
{
    fprintf(stderr, "repl_fuzz: %s\n", what);
    abort();
}

static bool inside(const void *p, size_t n, const uint8_t *data, size_t size)
{
    const uint8_t *b = p;
    return b >= data && n <= size && b - data <= (ptrdiff_t)(size - n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t *rec[KR_REPL_CHUNK_RECORDS];
    static size_t rec_len[KR_REPL_CHUNK_RECORDS];
    static uint8_t out[KR_REPL_MSG_MAX];
    struct jrn_repl_chunk c = {.rec = rec, .rec_len = rec_len};

    kr_err err = jrn_repl_decode(data, size, &c, KR_REPL_CHUNK_RECORDS);
    if (err == KR_OK) {
        if (c.n == 0 || c.n > KR_REPL_CHUNK_RECORDS || c.epoch == 0 || c.first == 0 ||
            c.first + c.n - 1 >= (1ull << 62))
            fail("accepted a chunk out of bounds");
        for (size_t i = 0; i < c.n; i++)
            if (rec_len[i] == 0 || rec_len[i] > KR_RECORD_MAX ||
                !inside(rec[i], rec_len[i], data, size))
                fail("a record is empty, too long or outside the input");
        if (c.note && (c.note_len == 0 || c.note_len > KR_NOTE_MAX ||
                       !inside(c.note, c.note_len, data, size)))
            fail("the note is empty, too long or outside the input");
        size_t len = 0;
        if (jrn_repl_pack(&c, out, sizeof out, &len) != KR_OK)
            fail("an accepted chunk does not pack");
        if (len != size || memcmp(out, data, size) != 0)
            fail("accepted bytes are not the canonical encoding");
    } else if (err != KR_ECORRUPT && err != KR_EVERSION && err != KR_ETOOLARGE) {
        fail("decode returned an unexpected error");
    }
    return 0;
}
