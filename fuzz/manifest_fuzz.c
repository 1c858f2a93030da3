/*
 * manifest_fuzz.c: libFuzzer target for the backup manifest parser and
 * verifier (tools/backup_manifest.h): the first thing kiroku reads of a
 * backup, which is hostile input until its signature holds.
 *
 * The input is a manifest's text. Properties: nothing crashes; an accepted
 * manifest is one the writer accepts too, and writing it (signed with a
 * fixed key) and parsing the result gives the same fields; verification
 * against a fixed trusted key returns only documented errors and never
 * accepts (no input can carry the fixed key's signature).
 */
#include "backup_manifest.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bmf_manifest *g_m, *g_m2;
static struct bmf_chain g_chain;
static struct kr_signing_key g_key;
static char *g_out;

static void init(void)
{
    if (g_m)
        return;
    if (sodium_init() < 0)
        abort();
    g_m = bmf_new();
    g_m2 = bmf_new();
    g_out = malloc(KR_BACKUP_MANIFEST_MAX + 64);
    if (!g_m || !g_m2 || !g_out)
        abort();
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(i + 1);
    crypto_sign_seed_keypair(g_key.pk, g_key.sk, seed);
    g_key.key_id = 7;
}

static void same(const struct bmf_manifest *a, const struct bmf_manifest *b)
{
    if (strcmp(a->kiroku_version, b->kiroku_version) != 0 ||
        strcmp(a->generation, b->generation) != 0 ||
        memcmp(a->journal_id, b->journal_id, 16) != 0 || strcmp(a->origin, b->origin) != 0 ||
        a->last_seq != b->last_seq || a->time_ns != b->time_ns ||
        strcmp(a->time_utc, b->time_utc) != 0 || strcmp(a->time_jst, b->time_jst) != 0 ||
        a->checkpoint_len != b->checkpoint_len ||
        memcmp(a->checkpoint, b->checkpoint, a->checkpoint_len) != 0 ||
        a->nkeyrecs != b->nkeyrecs || a->nfiles != b->nfiles || b->signed_by != g_key.key_id)
        abort();
    for (size_t i = 0; i < a->nkeyrecs; i++)
        if (a->keyrec_len[i] != b->keyrec_len[i] ||
            memcmp(a->keybuf + a->keyrec_off[i], b->keybuf + b->keyrec_off[i], a->keyrec_len[i]) !=
                0)
            abort();
    for (size_t i = 0; i < a->nfiles; i++)
        if (strcmp(a->files[i].path, b->files[i].path) != 0 ||
            a->files[i].size != b->files[i].size || a->files[i].mode != b->files[i].mode ||
            memcmp(a->files[i].sha256, b->files[i].sha256, KR_HASH_LEN) != 0)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    char why[256];
    kr_err err = bmf_parse((const char *)data, size, g_m, why, sizeof why);
    if (err != KR_OK) {
        if (err != KR_ECORRUPT && err != KR_ETOOLARGE)
            abort();
        return 0;
    }
    uint8_t trusted[32] = {1};
    err = bmf_verify(g_m, (const char *)data, size, trusted, &g_chain, why, sizeof why);
    if (err != KR_ECORRUPT && err != KR_EBADSIG && err != KR_ENOMEM) {
        fprintf(stderr, "bmf_verify: %s: %s\n", kr_errname(err), why);
        abort();
    }
    size_t len = 0;
    err = bmf_write(g_m, &g_key, g_out, KR_BACKUP_MANIFEST_MAX + 64, &len);
    if (err == KR_ETOOLARGE)
        return 0; /* a longer signed-by line may not fit where the input did */
    if (err != KR_OK) {
        fprintf(stderr, "bmf_write refused what bmf_parse accepted: %s\n", kr_errname(err));
        abort();
    }
    if (bmf_parse(g_out, len, g_m2, why, sizeof why) != KR_OK)
        abort();
    same(g_m, g_m2);
    return 0;
}
