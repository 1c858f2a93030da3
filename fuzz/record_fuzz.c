/*
 * record_fuzz.c: libFuzzer target for jrn_record_decode, the strict decoder of
 * stored journal records (journal/record.h).
 *
 * Arbitrary bytes must never crash the decoder. Bytes it accepts must be the
 * one canonical form of the record they decode to: encoding the decoded
 * record again gives the input back byte for byte, header included, and the
 * leaf hash is SHA-256(0x00 || header bytes), computed here with libsodium so
 * the check does not lean on the code under test.
 */
#include "record.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reports a broken property and aborts, so libFuzzer saves the input. */
_Noreturn static void fail(const char *what)
{
    fprintf(stderr, "record_fuzz: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[KR_RECORD_MAX];
    struct jrn_record r;

    kr_err err = jrn_record_decode(data, size, &r);
    if (err == KR_OK) {
        /* The header borrows from the input, right after the fixarray(2) byte. */
        if (r.header != data + JRN_HEADER_OFFSET || r.header_len == 0 ||
            r.header_len > size - JRN_HEADER_OFFSET)
            fail("header does not point at the input's header bytes");
        if (r.header_len > KR_HEADER_MAX)
            fail("accepted header is longer than KR_HEADER_MAX");
        if (!r.payload_stripped && r.payload_len > 0 &&
            (r.payload < data || r.payload + r.payload_len > data + size))
            fail("payload points outside the input");
        if (r.payload_stripped && r.payload != NULL)
            fail("stripped record has a payload pointer");
        if (jrn_record_check_fields(&r) != KR_OK)
            fail("accepted record fails jrn_record_check_fields");
        /* Format 2 numbers its tenant's records from 1; format 1 has no number. */
        if (r.format == JRN_FORMAT ? r.tseq == 0 : r.format != JRN_FORMAT_1 || r.tseq != 0)
            fail("accepted record has a format or tseq the format does not allow");

        /* Canonical form: re-encoding gives the input back. */
        size_t len = 0, header_len = 0;
        if (jrn_record_encode(&r, out, sizeof out, &len, &header_len) != KR_OK)
            fail("accepted record does not encode");
        if (len != size || memcmp(out, data, size) != 0)
            fail("accepted bytes are not the canonical encoding");
        if (header_len != r.header_len)
            fail("encoded header length differs from the decoded one");
        if (jrn_record_encode_header(&r, out, sizeof out, &len) != KR_OK || len != r.header_len ||
            memcmp(out, r.header, len) != 0)
            fail("jrn_record_encode_header differs from the header bytes");

        /* Leaf hash = SHA-256(0x00 || header). */
        uint8_t leaf[KR_HASH_LEN], want[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_state st;
        static const uint8_t zero = 0;
        jrn_record_leaf_hash(&r, leaf);
        crypto_hash_sha256_init(&st);
        crypto_hash_sha256_update(&st, &zero, 1);
        crypto_hash_sha256_update(&st, r.header, r.header_len);
        crypto_hash_sha256_final(&st, want);
        if (memcmp(leaf, want, KR_HASH_LEN) != 0)
            fail("leaf hash is not SHA-256(0x00 || header)");

        /* The signing input of any valid record fits its bound. */
        uint8_t sin[JRN_SIGN_INPUT_MAX];
        size_t sin_len = 0;
        jrn_record_sign_input(&r, sin, &sin_len);
        if (sin_len == 0 || sin_len > sizeof sin)
            fail("signing input length out of bounds");
    } else if (err != KR_ECORRUPT && err != KR_EVERSION) {
        fail("decode returned an error other than KR_ECORRUPT or KR_EVERSION");
    }
    return 0;
}
