/*
 * keyring.c: wrapped keys in a JetStream key-value bucket (see keyring.h).
 */
#include "keyring.h"

#include "kr_limits.h"
#include "natskv.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "journal." + 32 hex + "." + 10 digits, or "tenant." + 20 digits */
#define NAME_MAX_LEN 64

#define KEYRING_STREAM "KV_" KR_KEYRING_BUCKET

struct kr_keyring {
    jsCtx *js;
    kvStore *kv;
    bool erasable; /* the bucket's stream allows message deletes */
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

/* Writes KR_KEYRING_SCRUB_BYTES of filler under "scrub" and purges it: the
 * RAFT log of the bucket's stream then passes nats-server's compaction
 * threshold on every replica, which snapshots and drops the log entries that
 * carried an erased key (keyring.h). */
static kr_err scrub(struct kr_keyring *k)
{
    uint8_t *fill = malloc(KR_KEYRING_SCRUB_CHUNK);
    if (!fill)
        return KR_ENOMEM;
    /* Random: nats-server compresses what it writes to the RAFT log, and
     * filler that compresses would not reach the threshold. */
    randombytes_buf(fill, KR_KEYRING_SCRUB_CHUNK);
    natsStatus s = NATS_OK;
    for (size_t done = 0; s == NATS_OK && done < KR_KEYRING_SCRUB_BYTES;
         done += KR_KEYRING_SCRUB_CHUNK)
        s = kvStore_Put(NULL, k->kv, "scrub", fill, (int)KR_KEYRING_SCRUB_CHUNK);
    free(fill);
    if (s == NATS_OK)
        s = kvStore_Purge(k->kv, "scrub", NULL);
    return nkv_err(s);
}

/* Erases the tenant's key from every copy the NATS servers keep: the
 * message is deleted with erase (overwritten on disk by every replica), a
 * purge marker replaces the name, and the RAFT log is scrubbed. */
static kr_err remote_purge(void *ctx, uint64_t tenant)
{
    struct kr_keyring *k = ctx;
    char name[NAME_MAX_LEN];
    tenant_name(name, tenant);
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, k->kv, name);
    if (s == NATS_NOT_FOUND) /* none, or erased before */
        return KR_OK;
    if (s != NATS_OK)
        return nkv_err(s);
    uint64_t seq = kvEntry_Revision(e);
    kvEntry_Destroy(e);
    if (!k->erasable)
        return KR_EIO; /* a bucket made by an older kiroku: see keyring.h */
    jsErrCode jerr = 0;
    s = js_EraseMsg(k->js, KEYRING_STREAM, seq, NULL, &jerr);
    if (s != NATS_OK && jerr != JSNoMessageFoundErr)
        return nkv_err(s);
    /* A purge leaves one marker and drops every earlier value of the name. */
    kr_err err = nkv_err(kvStore_Purge(k->kv, name, NULL));
    return err ? err : scrub(k);
}

/* Makes the bucket's stream as js_CreateKeyValue does, but allowing message
 * deletes, which a key's erasure needs; binds it either way. */
static kr_err bucket_open(struct kr_keyring *k, int replicas)
{
    natsStatus s = js_KeyValue(&k->kv, k->js, KR_KEYRING_BUCKET);
    if (s == NATS_NOT_FOUND) {
        const char *subjects[] = {"$KV." KR_KEYRING_BUCKET ".>"};
        jsStreamConfig c;
        jsStreamConfig_Init(&c);
        c.Name = KEYRING_STREAM;
        c.Subjects = subjects;
        c.SubjectsLen = 1;
        c.MaxMsgsPerSubject = 1;
        c.MaxMsgSize = -1;
        c.Storage = js_FileStorage;
        c.Replicas = replicas;
        c.AllowRollup = true;
        c.DenyDelete = false;
        c.AllowDirect = true;
        jsStreamInfo *si = NULL;
        (void)js_AddStream(&si, k->js, &c, NULL, NULL); /* or another node made it */
        jsStreamInfo_Destroy(si);
        s = js_KeyValue(&k->kv, k->js, KR_KEYRING_BUCKET);
    }
    if (s != NATS_OK) {
        k->kv = NULL;
        return nkv_err(s);
    }
    jsStreamInfo *si = NULL;
    if ((s = js_GetStreamInfo(&si, k->js, KEYRING_STREAM, NULL, NULL)) != NATS_OK) {
        kvStore_Destroy(k->kv);
        k->kv = NULL;
        return nkv_err(s);
    }
    k->erasable = !si->Config->DenyDelete;
    jsStreamInfo_Destroy(si);
    return KR_OK;
}

kr_err kr_keyring_open(jsCtx *js, int replicas, struct kr_keyring **out)
{
    *out = NULL;
    if (!js || replicas < 1 || replicas > 5)
        return KR_EINVAL;
    struct kr_keyring *k = calloc(1, sizeof *k);
    if (!k)
        return KR_ENOMEM;
    k->js = js;
    kr_err err = bucket_open(k, replicas);
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
