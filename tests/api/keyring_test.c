/*
 * keyring_test.c: the shard's keys in a real JetStream key-value bucket
 * (api/keyring.h): two nodes (two data directories with one KEK, each with
 * its own NATS connection) share tenant keys and signing keys; what the bucket
 * holds is only ciphertext, and a forged or moved value is refused; erasure
 * leaves no value of the key in the bucket's history, nor its bytes in any
 * file of the NATS server's store; a bucket that denies deletes (made by
 * js_CreateKeyValue, as an older kiroku did) refuses erasure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <nats/nats.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyring.h"
#include "keys.h"
#include "keystore.h"
#include "nats_cluster.h"
#include "test_domain.h"
#include "test_util.h"

struct node {
    char dir[1024];
    natsConnection *nc;
    jsCtx *js;
    struct kr_keyring *kr;
    struct kr_keystore *ks;
};

struct fixture {
    struct kr_nats_cluster *cl;
    struct node a, b;
};

static void node_connect(struct node *n, const struct kr_nats_cluster *cl)
{
    natsOptions *o = NULL;
    const char *urls[KR_NATS_NODES_MAX];
    for (size_t i = 0; i < cl->n; i++)
        urls[i] = cl->node[i].url;
    assert_int_equal(natsOptions_Create(&o), NATS_OK);
    assert_int_equal(natsOptions_SetServers(o, urls, (int)cl->n), NATS_OK);
    assert_int_equal(natsConnection_Connect(&n->nc, o), NATS_OK);
    natsOptions_Destroy(o);
    assert_int_equal(natsConnection_JetStream(&n->js, n->nc, NULL), NATS_OK);
    assert_int_equal(kr_keyring_open(n->js, (int)cl->n, &n->kr), KR_OK);
}

static void node_close(struct node *n)
{
    ks_close(n->ks);
    kr_keyring_close(n->kr);
    jsCtx_Destroy(n->js);
    natsConnection_Destroy(n->nc);
    kr_test_rmrf(n->dir);
}

static int setup(void **state)
{
    if (sodium_init() < 0 || !kr_nats_available())
        return -1;
    struct fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->cl = kr_nats_start(1)))
        return -1;
    kr_test_tmpdir(f->a.dir, sizeof f->a.dir);
    kr_test_tmpdir(f->b.dir, sizeof f->b.dir);
    node_connect(&f->a, f->cl);
    node_connect(&f->b, f->cl);
    assert_int_equal(ks_open(f->a.dir, true, &f->a.ks), KR_OK);
    char from[1200], to[1200];
    snprintf(from, sizeof from, "%s/keys", f->a.dir);
    snprintf(to, sizeof to, "%s/keys", f->b.dir);
    kr_test_copytree(from, to); /* the deployment places one KEK on both */
    assert_int_equal(ks_open(f->b.dir, true, &f->b.ks), KR_OK);
    ks_set_remote(f->a.ks, kr_keyring_remote(f->a.kr));
    ks_set_remote(f->b.ks, kr_keyring_remote(f->b.kr));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    node_close(&f->a);
    node_close(&f->b);
    kr_nats_free(f->cl);
    free(f);
    return 0;
}

/* Every value the bucket ever held for name (its history). */
static int history_len(struct node *n, const char *name, bool *only_markers)
{
    kvStore *kv = NULL;
    assert_int_equal(js_KeyValue(&kv, n->js, KR_KEYRING_BUCKET), NATS_OK);
    kvEntryList l = {0};
    natsStatus s = kvStore_History(&l, kv, name, NULL);
    int count = 0;
    *only_markers = true;
    if (s == NATS_OK) {
        count = l.Count;
        for (int i = 0; i < l.Count; i++)
            if (kvEntry_Operation(l.Entries[i]) == kvOp_Put)
                *only_markers = false;
        kvEntryList_Destroy(&l);
    }
    kvStore_Destroy(kv);
    return count;
}

static void test_tenant_keys_shared(void **state)
{
    struct fixture *f = *state;
    struct kr_data_key ka, kb;
    assert_int_equal(ks_get_or_create(f->a.ks, 1001, NULL, &ka), KR_OK);
    assert_int_equal(ks_get(f->b.ks, 1001, &kb), KR_OK);
    assert_memory_equal(ka.key, kb.key, KR_DATA_KEY_LEN);
    assert_int_equal(ks_create(f->b.ks, 1001, NULL, &kb), KR_EEXIST);
    /* the bucket holds ciphertext, not the key */
    kvStore *kv = NULL;
    kvEntry *e = NULL;
    assert_int_equal(js_KeyValue(&kv, f->a.js, KR_KEYRING_BUCKET), NATS_OK);
    assert_int_equal(kvStore_Get(&e, kv, "tenant.1001"), NATS_OK);
    assert_int_equal(kvEntry_ValueLen(e), KS_WRAPPED_LEN);
    assert_null(memmem(kvEntry_Value(e), KS_WRAPPED_LEN, ka.key, 8));
    kvEntry_Destroy(e);
    /* a forged value: another tenant's wrapped key under this name */
    struct kr_data_key k2;
    assert_int_equal(ks_get_or_create(f->a.ks, 1002, NULL, &k2), KR_OK);
    assert_int_equal(kvStore_Get(&e, kv, "tenant.1002"), NATS_OK);
    assert_int_equal(kvStore_Put(NULL, kv, "tenant.1003", kvEntry_Value(e), KS_WRAPPED_LEN),
                     NATS_OK);
    kvEntry_Destroy(e);
    assert_int_equal(kvStore_Put(NULL, kv, "tenant.1004", "short", 5), NATS_OK);
    kvStore_Destroy(kv);
    assert_int_equal(ks_get(f->b.ks, 1003, &kb), KR_ECORRUPT);
    assert_int_equal(ks_get(f->b.ks, 1004, &kb), KR_ECORRUPT);
    kr_data_key_wipe(&ka);
    kr_data_key_wipe(&kb);
}

static void test_erasure_purges_history(void **state)
{
    struct fixture *f = *state;
    struct kr_data_key k;
    assert_int_equal(ks_get_or_create(f->a.ks, 2001, NULL, &k), KR_OK);
    bool markers;
    assert_int_equal(history_len(&f->a, "tenant.2001", &markers), 1);
    assert_false(markers);
    assert_int_equal(ks_destroy(f->a.ks, 2001, 1), KR_OK);
    history_len(&f->a, "tenant.2001", &markers);
    assert_true(markers); /* no value of the key is left, only the purge */
    assert_int_equal(ks_get(f->b.ks, 2001, &k), KR_ENOTFOUND);
    assert_int_equal(ks_destroy(f->b.ks, 2001, 1), KR_OK); /* idempotent there */
}

/* The wrapped key of tenant in the bucket (KS_WRAPPED_LEN bytes). */
static void wrapped_of(struct node *n, uint64_t tenant, uint8_t out[KS_WRAPPED_LEN])
{
    char name[64];
    snprintf(name, sizeof name, "tenant.%llu", (unsigned long long)tenant);
    kvStore *kv = NULL;
    kvEntry *e = NULL;
    assert_int_equal(js_KeyValue(&kv, n->js, KR_KEYRING_BUCKET), NATS_OK);
    assert_int_equal(kvStore_Get(&e, kv, name), NATS_OK);
    assert_int_equal(kvEntry_ValueLen(e), KS_WRAPPED_LEN);
    memcpy(out, kvEntry_Value(e), KS_WRAPPED_LEN);
    kvEntry_Destroy(e);
    kvStore_Destroy(kv);
}

static void test_erasure_leaves_no_bytes_on_disk(void **state)
{
    struct fixture *f = *state;
    struct kr_data_key k, keep;
    uint8_t w[KS_WRAPPED_LEN], wkeep[KS_WRAPPED_LEN];
    assert_int_equal(ks_get_or_create(f->a.ks, 3001, NULL, &k), KR_OK);
    assert_int_equal(ks_get_or_create(f->a.ks, 3002, NULL, &keep), KR_OK);
    wrapped_of(&f->a, 3001, w);
    wrapped_of(&f->a, 3002, wkeep);
    assert_true(td_dir_contains(f->cl->dir, w, sizeof w)); /* control: on disk */
    assert_int_equal(ks_destroy(f->a.ks, 3001, 1), KR_OK);
    assert_false(td_dir_contains(f->cl->dir, w, sizeof w));
    assert_true(td_dir_contains(f->cl->dir, wkeep, sizeof wkeep)); /* the other stays */
    struct kr_data_key got;
    assert_int_equal(ks_get(f->b.ks, 3002, &got), KR_OK);
    assert_memory_equal(got.key, keep.key, KR_DATA_KEY_LEN);
    assert_int_equal(ks_destroy(f->a.ks, 3001, 1), KR_OK); /* again: nothing to do */
    kr_data_key_wipe(&k);
    kr_data_key_wipe(&keep);
    kr_data_key_wipe(&got);
}

/* A bucket made as js_CreateKeyValue makes it denies message deletes for
 * good: erasing a key it holds is refused rather than left on disk. */
static void test_bucket_denying_deletes(void **state)
{
    struct fixture *f = *state;
    kr_keyring_close(f->a.kr);
    f->a.kr = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_DeleteStream(f->a.js, "KV_" KR_KEYRING_BUCKET, NULL, &jerr), NATS_OK);
    kvConfig c;
    kvConfig_Init(&c);
    c.Bucket = KR_KEYRING_BUCKET;
    c.History = 1;
    c.StorageType = js_FileStorage;
    kvStore *kv = NULL;
    assert_int_equal(js_CreateKeyValue(&kv, f->a.js, &c), NATS_OK);
    kvStore_Destroy(kv);
    assert_int_equal(kr_keyring_open(f->a.js, 1, &f->a.kr), KR_OK);
    ks_set_remote(f->a.ks, kr_keyring_remote(f->a.kr));
    struct kr_data_key k;
    assert_int_equal(ks_get_or_create(f->a.ks, 4001, NULL, &k), KR_OK);
    assert_int_equal(ks_destroy(f->a.ks, 4001, 1), KR_EIO);
    assert_int_equal(ks_get(f->a.ks, 4001, &k), KR_ENOTFOUND); /* the local one is gone */
    kr_data_key_wipe(&k);
}

static void test_signing_keys(void **state)
{
    struct fixture *f = *state;
    uint8_t jid[16], other[16];
    memset(jid, 0xab, sizeof jid);
    memset(other, 0xcd, sizeof other);
    struct kr_signing_key key, got, another;
    assert_int_equal(kr_key_generate(3, &key), KR_OK);
    assert_int_equal(kr_keyring_get_signing_key(f->b.kr, f->b.ks, jid, 3, &got), KR_ENOTFOUND);
    assert_int_equal(kr_keyring_put_signing_key(f->a.kr, f->a.ks, jid, &key), KR_OK);
    assert_int_equal(kr_keyring_put_signing_key(f->a.kr, f->a.ks, jid, &key), KR_OK); /* again */
    assert_int_equal(kr_keyring_get_signing_key(f->b.kr, f->b.ks, jid, 3, &got), KR_OK);
    assert_int_equal(got.key_id, 3);
    assert_memory_equal(got.pk, key.pk, KR_PUBKEY_LEN);
    assert_memory_equal(got.sk, key.sk, KR_SECKEY_LEN);
    /* a name is written once: another key under that id is refused */
    assert_int_equal(kr_key_generate(3, &another), KR_OK);
    assert_int_equal(kr_keyring_put_signing_key(f->b.kr, f->b.ks, jid, &another), KR_EEXIST);
    /* another journal's key 3 is another name */
    assert_int_equal(kr_keyring_get_signing_key(f->b.kr, f->b.ks, other, 3, &got), KR_ENOTFOUND);
    /* a value moved to another name does not unwrap */
    kvStore *kv = NULL;
    kvEntry *e = NULL;
    char from[80], to[80], hex[33];
    sodium_bin2hex(hex, sizeof hex, jid, 16);
    snprintf(from, sizeof from, "journal.%s.3", hex);
    snprintf(to, sizeof to, "journal.%s.4", hex);
    assert_int_equal(js_KeyValue(&kv, f->a.js, KR_KEYRING_BUCKET), NATS_OK);
    assert_int_equal(kvStore_Get(&e, kv, from), NATS_OK);
    assert_int_equal(kvStore_Put(NULL, kv, to, kvEntry_Value(e), kvEntry_ValueLen(e)), NATS_OK);
    kvEntry_Destroy(e);
    kvStore_Destroy(kv);
    assert_int_equal(kr_keyring_get_signing_key(f->b.kr, f->b.ks, jid, 4, &got), KR_ECORRUPT);
    kr_key_wipe(&key);
    kr_key_wipe(&got);
    kr_key_wipe(&another);
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    struct kr_keyring *k = (void *)1;
    assert_int_equal(kr_keyring_open(f->a.js, 0, &k), KR_EINVAL);
    assert_null(k);
    assert_int_equal(kr_keyring_open(NULL, 1, &k), KR_EINVAL);
    kr_keyring_close(NULL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_tenant_keys_shared),
        T(test_erasure_purges_history),
        T(test_erasure_leaves_no_bytes_on_disk),
        T(test_bucket_denying_deletes),
        T(test_signing_keys),
        T(test_bad_arguments),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    return rc;
}
