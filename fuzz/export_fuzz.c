/*
 * export_fuzz.c: libFuzzer target for exp_verify, the parser and verifier of
 * tenant exports (journal/export.h), which reads hostile files.
 *
 * Input: the trusted public key of key 1 (32 bytes), then the export
 * document. The seed (fuzz/corpus/export/) is a real export prefixed with its
 * journal's key, so mutations start from a document that verifies and reach
 * the signature, proof and per-tenant number checks, not only the JSON. It
 * was made by hand (make_corpus does not build journals): `kiroku init`,
 * `kiroku seed --tenants 2 --contacts 2`, `kiroku export --tenant T --to 6`
 * of the first tenant, prefixed with the bytes of DIR/keys/journal-1.pub.
 *
 * Properties: nothing crashes or leaks; the verdict is a documented error;
 * a failure names where and what; an accepted export has at least one
 * record, from <= to, a checkpoint covering `to`, and verifies again to the
 * same report.
 */
#include "export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

_Noreturn static void fail(const char *what)
{
    fprintf(stderr, "export_fuzz: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < KR_PUBKEY_LEN)
        return 0;
    const uint8_t *pk = data;
    struct exp_report r, r2;
    kr_err err = exp_verify(data + KR_PUBKEY_LEN, size - KR_PUBKEY_LEN, pk, &r);
    if (err != r.result)
        fail("the verdict returned differs from the report's");
    if (err != KR_OK) {
        if (err != KR_ECORRUPT && err != KR_EBADSIG && err != KR_ETOOLARGE && err != KR_ENOMEM)
            fail("an undocumented error");
        if (r.what[0] == '\0' || r.where[0] == '\0')
            fail("a failure that says not what or where");
        return 0;
    }
    if (r.records == 0 || r.from == 0 || r.from > r.to || r.to > r.checkpoint_size ||
        r.checkpoints == 0 || r.keys == 0 || r.where[0] != '\0')
        fail("an accepted export with an inconsistent report");
    if (exp_verify(data + KR_PUBKEY_LEN, size - KR_PUBKEY_LEN, pk, &r2) != KR_OK ||
        memcmp(&r, &r2, sizeof r) != 0)
        fail("verifying again gives another report");
    return 0;
}
