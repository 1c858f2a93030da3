/*
 * export_fuzz.c: libFuzzer target for exp_verify, the parser and verifier of
 * tenant exports (journal/export.h), which reads hostile files.
 *
 * Input: the trusted public key of key 1 (32 bytes), a mode byte, then the
 * export document. Mode even: the document is verified as it is. Mode odd:
 * it is parsed as any JSON and written back in the export's one byte form
 * first, so mutations that break the form (spacing, escapes, member order)
 * still reach the checks behind it. The seed (fuzz/corpus/export/) is a real export prefixed with
 * its journal's key, so mutations start from a document that verifies and reach the signature,
 * proof and per-tenant number checks, not only the JSON. It was made by hand (make_corpus does not
 * build journals): `kiroku init`, `kiroku seed --tenants 2 --contacts 2`, `kiroku export --tenant T
 * --to 6` of the first tenant, prefixed with the bytes of DIR/keys/journal-1.pub and a mode byte
 * (seed-1: 0, seed-2: 1).
 *
 * Properties: nothing crashes or leaks; the verdict is a documented error;
 * a failure names where and what; an accepted export has at least one
 * record, from <= to, a checkpoint covering `to`, and verifies again to the
 * same report.
 */
#include "export.h"

#include <jansson.h>
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
    if (size < KR_PUBKEY_LEN + 1)
        return 0;
    const uint8_t *pk = data, *doc = data + KR_PUBKEY_LEN + 1;
    size_t len = size - KR_PUBKEY_LEN - 1;
    char *canon = NULL;
    if (data[KR_PUBKEY_LEN] & 1) {
        json_error_t je;
        json_t *j = json_loadb((const char *)doc, len, 0, &je);
        if (!j)
            return 0;
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!s)
            return 0;
        size_t n = strlen(s);
        canon = malloc(n + 1);
        if (!canon) {
            free(s);
            return 0;
        }
        memcpy(canon, s, n);
        canon[n] = '\n';
        free(s);
        doc = (const uint8_t *)canon;
        len = n + 1;
    }
    struct exp_report r, r2;
    kr_err err = exp_verify(doc, len, pk, &r);
    if (err != r.result)
        fail("the verdict returned differs from the report's");
    if (err != KR_OK) {
        if (err != KR_ECORRUPT && err != KR_EBADSIG && err != KR_ETOOLARGE && err != KR_ENOMEM)
            fail("an undocumented error");
        if (r.what[0] == '\0' || r.where[0] == '\0')
            fail("a failure that says not what or where");
        free(canon);
        return 0;
    }
    if (r.records == 0 || r.from == 0 || r.from > r.to || r.to > r.checkpoint_size ||
        r.checkpoints == 0 || r.keys == 0 || r.where[0] != '\0')
        fail("an accepted export with an inconsistent report");
    if (exp_verify(doc, len, pk, &r2) != KR_OK || memcmp(&r, &r2, sizeof r) != 0)
        fail("verifying again gives another report");
    free(canon);
    return 0;
}
