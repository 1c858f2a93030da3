/*
 * keystore_remote_test.c: tenant keys shared by the nodes of a cluster
 * (keystore.h, "Keys shared by the nodes of a cluster"), against an
 * in-memory remote store that can fail on demand. Two keystores in two data
 * directories with one KEK play two nodes of a shard.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keystore.h"
#include "kr_error.h"
#include "test_util.h"

#define SLOTS 8

/* The shared store: a few tenants' wrapped keys, and errors to answer. */
struct fake_remote {
    uint64_t tenant[SLOTS];
    uint8_t wrapped[SLOTS][KS_WRAPPED_LEN];
    bool used[SLOTS];
    kr_err fail_get, fail_create, fail_purge;
    unsigned gets, creates, purges;
    /* answer the next create with KR_EEXIST after storing this value, as if
     * another node had won the race */
    bool race;
    uint8_t race_value[KS_WRAPPED_LEN];
};

static int slot_of(struct fake_remote *r, uint64_t tenant)
{
    for (int i = 0; i < SLOTS; i++)
        if (r->used[i] && r->tenant[i] == tenant)
            return i;
    return -1;
}

static void put(struct fake_remote *r, uint64_t tenant, const uint8_t *w)
{
    int i = slot_of(r, tenant);
    for (int k = 0; i < 0 && k < SLOTS; k++)
        if (!r->used[k])
            i = k;
    assert_true(i >= 0);
    r->used[i] = true;
    r->tenant[i] = tenant;
    memcpy(r->wrapped[i], w, KS_WRAPPED_LEN);
}

static kr_err fake_get(void *ctx, uint64_t tenant, uint8_t out[KS_WRAPPED_LEN])
{
    struct fake_remote *r = ctx;
    r->gets++;
    if (r->fail_get)
        return r->fail_get;
    int i = slot_of(r, tenant);
    if (i < 0)
        return KR_ENOTFOUND;
    memcpy(out, r->wrapped[i], KS_WRAPPED_LEN);
    return KR_OK;
}

static kr_err fake_create(void *ctx, uint64_t tenant, const uint8_t w[KS_WRAPPED_LEN])
{
    struct fake_remote *r = ctx;
    r->creates++;
    if (r->fail_create)
        return r->fail_create;
    if (r->race) {
        r->race = false;
        put(r, tenant, r->race_value);
        return KR_EEXIST;
    }
    if (slot_of(r, tenant) >= 0)
        return KR_EEXIST;
    put(r, tenant, w);
    return KR_OK;
}

static kr_err fake_purge(void *ctx, uint64_t tenant)
{
    struct fake_remote *r = ctx;
    r->purges++;
    if (r->fail_purge)
        return r->fail_purge;
    int i = slot_of(r, tenant);
    if (i >= 0)
        r->used[i] = false;
    return KR_OK;
}

struct fixture {
    char a[1024], b[1024];
    struct kr_keystore *ka, *kb;
    struct fake_remote fr;
    struct ks_remote remote;
};

static int setup(void **state)
{
    if (sodium_init() < 0)
        return -1;
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    kr_test_tmpdir(f->a, sizeof f->a);
    kr_test_tmpdir(f->b, sizeof f->b);
    f->remote = (struct ks_remote){&f->fr, fake_get, fake_create, fake_purge};
    /* node A makes the KEK; the deployment places the same KEK on node B */
    assert_int_equal(ks_open(f->a, true, &f->ka), KR_OK);
    char from[1200], to[1200];
    snprintf(from, sizeof from, "%s/keys", f->a);
    snprintf(to, sizeof to, "%s/keys", f->b);
    kr_test_copytree(from, to);
    assert_int_equal(ks_open(f->b, true, &f->kb), KR_OK);
    ks_set_remote(f->ka, &f->remote);
    ks_set_remote(f->kb, &f->remote);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    ks_close(f->ka);
    ks_close(f->kb);
    kr_test_rmrf(f->a);
    kr_test_rmrf(f->b);
    free(f);
    return 0;
}

static void assert_same_key(const struct kr_data_key *x, const struct kr_data_key *y)
{
    assert_int_equal(x->tenant, y->tenant);
    assert_memory_equal(x->key, y->key, KR_DATA_KEY_LEN);
}

/* A key made on one node is the key every other node reads. */
static void test_made_once_read_everywhere(void **state)
{
    struct fixture *f = *state;
    struct kr_data_key ka, kb, kb2;
    assert_int_equal(ks_get(f->kb, 7, &kb), KR_ENOTFOUND); /* nowhere yet */
    assert_int_equal(ks_get_or_create(f->ka, 7, NULL, &ka), KR_OK);
    assert_int_equal(f->fr.creates, 1);
    assert_true(slot_of(&f->fr, 7) >= 0);
    assert_int_equal(ks_get(f->kb, 7, &kb), KR_OK);
    assert_same_key(&ka, &kb);
    /* kept locally: no more remote reads for it */
    unsigned gets = f->fr.gets;
    assert_int_equal(ks_get(f->kb, 7, &kb2), KR_OK);
    assert_same_key(&ka, &kb2);
    assert_int_equal(f->fr.gets, gets);
    /* node B, asked to make one for the same tenant, uses the one there */
    struct kr_data_key kc;
    assert_int_equal(ks_create(f->kb, 7, NULL, &kc), KR_EEXIST);
    assert_int_equal(ks_get_or_create(f->kb, 7, NULL, &kc), KR_OK);
    assert_same_key(&ka, &kc);
    assert_int_equal(f->fr.creates, 1);
}

/* A new primary that lacks a tenant's key (it was made on the old one) must
 * not make a second one: get_or_create finds the remote one. */
static void test_no_second_key_after_failover(void **state)
{
    struct fixture *f = *state;
    struct kr_data_key ka, kb;
    assert_int_equal(ks_create(f->ka, 9, NULL, &ka), KR_OK);
    assert_int_equal(ks_get_or_create(f->kb, 9, NULL, &kb), KR_OK);
    assert_same_key(&ka, &kb);
    assert_int_equal(f->fr.creates, 1); /* B never tried to make one */
}

/* Two nodes race to make a tenant's key: the loser takes the winner's. */
static void test_create_race(void **state)
{
    struct fixture *f = *state;
    struct kr_data_key winner, got, again;
    /* the winner's key, as node A would have stored it */
    assert_int_equal(ks_create(f->ka, 11, NULL, &winner), KR_OK);
    int i = slot_of(&f->fr, 11);
    assert_true(i >= 0);
    memcpy(f->fr.race_value, f->fr.wrapped[i], KS_WRAPPED_LEN);
    f->fr.used[i] = false; /* B does not see it before its create */
    f->fr.race = true;
    assert_int_equal(ks_get_or_create(f->kb, 11, NULL, &got), KR_OK);
    assert_same_key(&winner, &got);
    assert_int_equal(ks_get(f->kb, 11, &again), KR_OK);
    assert_same_key(&winner, &again);
}

/* What the remote store holds is untrusted: a value that does not unwrap as
 * this tenant's key under the KEK is refused and not kept. */
static void test_forged_remote_value(void **state)
{
    struct fixture *f = *state;
    struct kr_data_key k;
    assert_int_equal(ks_create(f->ka, 20, NULL, &k), KR_OK);
    int i = slot_of(&f->fr, 20);
    uint8_t moved[KS_WRAPPED_LEN];
    memcpy(moved, f->fr.wrapped[i], sizeof moved);
    put(&f->fr, 21, moved); /* tenant 20's key under tenant 21's name */
    assert_int_equal(ks_get(f->kb, 21, &k), KR_ECORRUPT);
    uint8_t flipped[KS_WRAPPED_LEN];
    memcpy(flipped, moved, sizeof flipped);
    flipped[40] ^= 1;
    put(&f->fr, 22, flipped);
    assert_int_equal(ks_get(f->kb, 22, &k), KR_ECORRUPT);
    /* nothing was kept: with the remote gone, B has neither */
    ks_set_remote(f->kb, NULL);
    assert_int_equal(ks_get(f->kb, 21, &k), KR_ENOTFOUND);
    assert_int_equal(ks_get(f->kb, 22, &k), KR_ENOTFOUND);
}

/* A key is made only once the remote store has taken it. */
static void test_remote_down_makes_nothing(void **state)
{
    struct fixture *f = *state;
    struct kr_data_key k;
    f->fr.fail_create = KR_EIO;
    assert_int_equal(ks_get_or_create(f->ka, 30, NULL, &k), KR_EIO);
    f->fr.fail_create = KR_OK;
    ks_set_remote(f->ka, NULL);
    assert_int_equal(ks_get(f->ka, 30, &k), KR_ENOTFOUND);
    ks_set_remote(f->ka, &f->remote);
    f->fr.fail_get = KR_EIO;
    assert_int_equal(ks_get(f->ka, 31, &k), KR_EIO);
    assert_int_equal(ks_get_or_create(f->ka, 31, NULL, &k), KR_EIO);
}

/* Erasure reaches the remote store; a failed removal is retried by the next
 * destroy; a tenant destroyed on a node is never fetched back there. */
static void test_destroy_reaches_remote(void **state)
{
    struct fixture *f = *state;
    struct kr_data_key k, kb;
    assert_int_equal(ks_create(f->ka, 40, NULL, &k), KR_OK);
    assert_int_equal(ks_get(f->kb, 40, &kb), KR_OK);
    f->fr.fail_purge = KR_EIO;
    assert_int_equal(ks_destroy(f->ka, 40, 1), KR_EIO);
    assert_true(slot_of(&f->fr, 40) >= 0);
    bool destroyed = false;
    assert_int_equal(ks_is_destroyed(f->ka, 40, &destroyed), KR_OK);
    assert_true(destroyed); /* the local destruction stands */
    /* destroyed here: the remote copy still there is not fetched back */
    assert_int_equal(ks_get(f->ka, 40, &k), KR_ENOTFOUND);
    assert_int_equal(ks_get_or_create(f->ka, 40, NULL, &k), KR_EKEY);
    f->fr.fail_purge = KR_OK;
    assert_int_equal(ks_destroy(f->ka, 40, 2), KR_OK);
    assert_int_equal(slot_of(&f->fr, 40), -1);
    /* node B destroys its copy when it applies the erasure */
    assert_int_equal(ks_destroy_unscrubbed(f->kb, 40, 2), KR_OK);
    assert_int_equal(ks_get(f->kb, 40, &kb), KR_ENOTFOUND);
    assert_int_equal(ks_scrub(f->kb), KR_OK);
}

/* Secrets other than tenant keys (journal signing keys) wrap under the KEK,
 * bound to their name, and never open as a tenant key or under another
 * name. */
static void test_wrap_secret(void **state)
{
    struct fixture *f = *state;
    uint8_t secret[32], back[32], w[KS_WRAPPED_LEN];
    memset(secret, 0x5a, sizeof secret);
    assert_int_equal(ks_wrap_secret(f->ka, "journal.ab.2", 12, secret, w), KR_OK);
    assert_int_equal(ks_unwrap_secret(f->kb, "journal.ab.2", 12, w, sizeof w, back), KR_OK);
    assert_memory_equal(secret, back, sizeof secret);
    assert_int_equal(ks_unwrap_secret(f->kb, "journal.ab.3", 12, w, sizeof w, back), KR_ECORRUPT);
    assert_int_equal(ks_unwrap_secret(f->kb, "journal.ab.2", 12, w, sizeof w - 1, back),
                     KR_ECORRUPT);
    /* not a tenant key either */
    struct kr_data_key k;
    put(&f->fr, 50, w);
    assert_int_equal(ks_get(f->kb, 50, &k), KR_ECORRUPT);
    char big[KS_SECRET_AD_MAX + 1];
    memset(big, 'x', sizeof big);
    assert_int_equal(ks_wrap_secret(f->ka, big, sizeof big, secret, w), KR_ETOOLARGE);
    assert_int_equal(ks_unwrap_secret(f->ka, big, sizeof big, w, sizeof w, back), KR_ETOOLARGE);
}

/* A key made before the remote was set is offered to it once there:
 * taken when the remote has none, kept when it holds the same one, refused
 * (the remote's stays) when it holds another. */
static void test_share_local_key(void **state)
{
    struct fixture *f = *state;
    struct kr_data_key ka, kb, k;
    ks_set_remote(f->ka, NULL);
    ks_set_remote(f->kb, NULL);
    assert_int_equal(ks_share(f->ka, 0), KR_EINVAL); /* no remote */
    assert_int_equal(ks_get_or_create(f->ka, 0, NULL, &ka), KR_OK);
    assert_int_equal(ks_get_or_create(f->kb, 0, NULL, &kb), KR_OK);
    ks_set_remote(f->ka, &f->remote);
    ks_set_remote(f->kb, &f->remote);
    assert_int_equal(ks_share(f->ka, 9), KR_ENOTFOUND); /* none here */
    assert_int_equal(f->fr.creates, 0);
    assert_int_equal(ks_share(f->ka, 0), KR_OK);
    assert_true(slot_of(&f->fr, 0) >= 0);
    assert_int_equal(ks_share(f->ka, 0), KR_OK); /* the same one */
    assert_int_equal(ks_share(f->kb, 0), KR_EEXIST);
    /* a keystore without one takes the shared key */
    char c[1024];
    struct kr_keystore *kc;
    kr_test_tmpdir(c, sizeof c);
    char from[1200], to[1200];
    snprintf(from, sizeof from, "%s/keys", f->a);
    snprintf(to, sizeof to, "%s/keys", c);
    kr_test_copytree(from, to);
    assert_int_equal(ks_open(c, true, &kc), KR_OK);
    ks_set_remote(kc, &f->remote);
    assert_int_equal(ks_get(kc, 0, &k), KR_OK);
    assert_same_key(&k, &ka);
    assert_int_equal(ks_get(f->kb, 0, &k), KR_OK); /* b keeps its own */
    assert_same_key(&k, &kb);
    ks_close(kc);
    kr_test_rmrf(c);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_made_once_read_everywhere),
        T(test_no_second_key_after_failover),
        T(test_create_race),
        T(test_forged_remote_value),
        T(test_remote_down_makes_nothing),
        T(test_destroy_reaches_remote),
        T(test_wrap_secret),
        T(test_share_local_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
