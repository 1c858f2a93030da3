/*
 * keyring.c: wrapped keys in a JetStream key-value bucket (see keyring.h).
 */
#include "keyring.h"

#include "natskv.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "journal." + 32 hex + "." + 10 digits, or "tenant." + 20 digits */
#define NAME_MAX_LEN 64

struct kr_keyring {
    kvStore *kv;
    struct ks_remote remote;
};

static void tenant_name(char out[NAME_MAX_LEN], uint64_t tenant)
{
    snprintf(out, NAME_MAX_LEN, "tenant.%llu", (unsigned long long)tenant);
}

static void journal_name(char out[NAME_MAX_LEN], const uint8_t id[16], uint32_t key_id)
{
    char hex[33];
    sodium_bin2hex(hex, sizeof hex, id, 16);
    snprintf(out, NAME_MAX_LEN, "journal.%s.%u", hex, key_id);
}

/* The value under name into out (exactly KS_WRAPPED_LEN bytes, else
 * KR_ECORRUPT). */
static kr_err kv_read(struct kr_keyring *k, const char *name, uint8_t out[KS_WRAPPED_LEN])
{
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, k->kv, name);
    kr_err err = nkv_err(s);
    if (err)
        return err;
    if (kvEntry_ValueLen(e) != KS_WRAPPED_LEN)
        err = KR_ECORRUPT;
    else
        memcpy(out, kvEntry_Value(e), KS_WRAPPED_LEN);
    kvEntry_Destroy(e);
    return err;
}

/* Creates name with value v unless it exists: KR_EEXIST then. */
static kr_err kv_create(struct kr_keyring *k, const char *name, const uint8_t v[KS_WRAPPED_LEN])
{
    natsStatus s = kvStore_Create(NULL, k->kv, name, v, KS_WRAPPED_LEN);
    if (s == NATS_OK)
        return KR_OK;
    /* The client tells a name that exists from other failures only by the
     * server's text: look instead. */
    uint8_t there[KS_WRAPPED_LEN];
    kr_err err = kv_read(k, name, there);
    sodium_memzero(there, sizeof there);
    return err == KR_OK ? KR_EEXIST : err == KR_ECORRUPT ? KR_EEXIST : KR_EIO;
}

static kr_err remote_get(void *ctx, uint64_t tenant, uint8_t out[KS_WRAPPED_LEN])
{
    char name[NAME_MAX_LEN];
    tenant_name(name, tenant);
    return kv_read(ctx, name, out);
}

static kr_err remote_create(void *ctx, uint64_t tenant, const uint8_t wrapped[KS_WRAPPED_LEN])
{
    char name[NAME_MAX_LEN];
    tenant_name(name, tenant);
    return kv_create(ctx, name, wrapped);
}

static kr_err remote_purge(void *ctx, uint64_t tenant)
{
    struct kr_keyring *k = ctx;
    char name[NAME_MAX_LEN];
    tenant_name(name, tenant);
    /* A purge leaves one marker and drops every earlier value of the name. */
    return nkv_err(kvStore_Purge(k->kv, name, NULL));
}

kr_err kr_keyring_open(jsCtx *js, int replicas, struct kr_keyring **out)
{
    *out = NULL;
    if (!js || replicas < 1 || replicas > 5)
        return KR_EINVAL;
    struct kr_keyring *k = calloc(1, sizeof *k);
    if (!k)
        return KR_ENOMEM;
    kr_err err = nkv_bucket(js, KR_KEYRING_BUCKET, 1, 0, replicas, &k->kv, NULL);
    if (err) {
        free(k);
        return err;
    }
    k->remote = (struct ks_remote){k, remote_get, remote_create, remote_purge};
    *out = k;
    return KR_OK;
}

void kr_keyring_close(struct kr_keyring *k)
{
    if (!k)
        return;
    kvStore_Destroy(k->kv);
    free(k);
}

const struct ks_remote *kr_keyring_remote(struct kr_keyring *k)
{
    return &k->remote;
}

kr_err kr_keyring_put_signing_key(struct kr_keyring *k, struct kr_keystore *ks,
                                  const uint8_t journal_id[16], const struct kr_signing_key *key)
{
    char name[NAME_MAX_LEN];
    uint8_t w[KS_WRAPPED_LEN];
    journal_name(name, journal_id, key->key_id);
    /* libsodium's Ed25519 secret key is seed || public key */
    kr_err err = ks_wrap_secret(ks, name, strlen(name), key->sk, w);
    if (err == KR_OK)
        err = kv_create(k, name, w);
    if (err == KR_EEXIST) {
        struct kr_signing_key there;
        err = kr_keyring_get_signing_key(k, ks, journal_id, key->key_id, &there);
        if (err == KR_OK && sodium_memcmp(there.pk, key->pk, KR_PUBKEY_LEN) != 0)
            err = KR_EEXIST;
        else if (err == KR_ECORRUPT)
            err = KR_EEXIST;
        kr_key_wipe(&there);
    }
    return err;
}

kr_err kr_keyring_get_signing_key(struct kr_keyring *k, struct kr_keystore *ks,
                                  const uint8_t journal_id[16], uint32_t key_id,
                                  struct kr_signing_key *out)
{
    char name[NAME_MAX_LEN];
    uint8_t w[KS_WRAPPED_LEN], seed[32];
    memset(out, 0, sizeof *out);
    journal_name(name, journal_id, key_id);
    kr_err err = kv_read(k, name, w);
    if (err == KR_OK)
        err = ks_unwrap_secret(ks, name, strlen(name), w, sizeof w, seed);
    if (err == KR_OK && crypto_sign_seed_keypair(out->pk, out->sk, seed) != 0)
        err = KR_ECRYPTO;
    sodium_memzero(seed, sizeof seed);
    if (err) {
        kr_key_wipe(out);
        return err;
    }
    out->key_id = key_id;
    return KR_OK;
}
