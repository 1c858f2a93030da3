/*
 * keystore.c: per-tenant data keys wrapped by the KEK, their cache, and
 * sealing with them (see keystore.h for the files and formats).
 *
 * Design notes
 * - Two locks. `cache_mu` guards the key cache and is held only for a set's
 *   few comparisons and a 32-byte copy, so a server's workers asking for keys
 *   at once barely wait on each other. `env_lock` is held shared by every call
 *   that uses the LMDB environment (LMDB does its own locking under it) and
 *   exclusively only by a scrub, which closes and reopens the environment.
 *   Unwrapping happens outside both.
 * - A cache fill never brings back a destroyed key. Destroying bumps `gen`
 *   (after its commit, and before it as well to stop serving the key early);
 *   a reader notes `gen` before its LMDB read and caches what it read only if
 *   `gen` has not moved since. A read that overlapped a destruction may still
 *   return the key to its caller: it is ordered before the destruction.
 * - The cache is set-associative: KR_KEYCACHE_MAX / KR_KEYCACHE_WAYS sets, a
 *   tenant's set chosen by a mixed hash of its id, least recently used way
 *   evicted. It and the KEK live in one sodium_malloc'd block (locked in
 *   memory, guard pages around it), wiped by sodium_free at close.
 * - A destruction zeroes the wrapped key and deletes it in one transaction,
 *   with the destruction record: there is never a state in which a zeroed key
 *   sits in its slot. Zeroing first means the bytes LMDB leaves behind in
 *   that page when it shifts the remaining entries are zeros. The old page
 *   itself is still in the file (LMDB copies on write), and so may be stray
 *   copies in the unused space of pages LMDB wrote later from recycled
 *   buffers. Hence the scrub: a compacting copy (mdb_env_copyfd2 with
 *   MDB_CP_COMPACT walks the live trees into zeroed buffers, so the pages it
 *   writes hold live entries and zeros) that replaces data.mdb by rename;
 *   keystore_test searches every file for destroyed keys. Copying needs no
 *   other process to have the environment open, which the open.lock
 *   protocol tells: shared open-file-description locks while open, upgraded
 *   in place (atomically: a failed upgrade keeps the shared lock) to scrub.
 * - Wrapping nonces and the KEK always come from the system generator: a
 *   caller's deterministic rng seeds data keys (tests, demo data), and must
 *   never make two wraps under the one KEK share a nonce.
 */
#include "keystore.h"

#include "keys.h"

#include "b64.h"
#include "endian_be.h"
#include "envreg.h"
#include "kr_limits.h"
#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The KEK file: magic line, base64 of 32 bytes (44 characters), newline. */
#define KEK_MAGIC    "kiroku-kek 1\n"
#define KEK_LEN      32
#define KEK_B64_LEN  44
#define KEK_FILE_LEN (sizeof KEK_MAGIC - 1 + KEK_B64_LEN + 1)
/* Read buffer for it: anything longer than the format is refused unread. */
#define KEK_FILE_CAP 128

#define AEAD_NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define AEAD_TAG_LEN   crypto_aead_xchacha20poly1305_ietf_ABYTES
#define WRAP_VERSION   1u
#define WRAP_LEN       (1 + AEAD_NONCE_LEN + KR_DATA_KEY_LEN + AEAD_TAG_LEN)
#define WRAP_AD        "kiroku.dek.v1"
#define WRAP_AD_LEN    (sizeof WRAP_AD - 1 + 8)
#define CHECK_LEN      (1 + AEAD_NONCE_LEN + AEAD_TAG_LEN)
#define CHECK_AD       "kiroku.kek.check.v1"
#define FORMAT_VERSION 1u

#define DB_KEYS        "keys"
#define DB_DESTROYED   "destroyed"
#define DB_META        "meta"
#define META_FORMAT    "format"
#define META_KEK_CHECK "kek_check"
#define META_SCRUB     "scrub"
#define KS_MAX_DBS     4

/* Key derivation for sealing and blind indexes (keystore.h). */
#define SEAL_CONTEXT  "krseal01"
#define SEAL_KEY_ID   1
#define SEAL_NONCE_ID 2
#define MAC_KEY_ID    3

#define CACHE_SETS (KR_KEYCACHE_MAX / KR_KEYCACHE_WAYS)
_Static_assert(CACHE_SETS > 0 && (CACHE_SETS & (CACHE_SETS - 1)) == 0,
               "the cache's set count must be a power of two");
_Static_assert(KR_SEAL_NONCE_LEN == AEAD_NONCE_LEN && KR_SEAL_TAG_LEN == AEAD_TAG_LEN,
               "sealed layout is XChaCha20-Poly1305-IETF's");

/* A cached key; stamp 0 marks an empty way. */
struct ks_slot {
    uint64_t tenant;
    uint64_t stamp;
    uint8_t key[KR_DATA_KEY_LEN];
};

/* Everything secret the keystore holds, in one sodium_malloc'd block. */
struct ks_secrets {
    uint8_t kek[KEK_LEN];
    struct ks_slot slots[KR_KEYCACHE_MAX];
};

struct kr_keystore {
    char env_dir[KR_PATH_MAX]; /* DIR/keystore */

    pthread_rwlock_t env_lock;
    MDB_env *env;
    MDB_dbi db_keys, db_destroyed, db_meta;
    kr_err broken; /* set if a scrub could not reopen the environment */
    int lock_fd;   /* DIR/keystore/open.lock, OFD-locked */

    pthread_mutex_t cache_mu;
    uint64_t gen;   /* bumped by every destruction */
    uint64_t clock; /* last stamp handed to a cache way */
    struct ks_secrets *sec;

    struct kr_env_reg reg;          /* DIR/keystore in the process's open environments */
    const struct ks_remote *remote; /* the cluster's shared store, or NULL */
};

_Static_assert(KS_WRAPPED_LEN == WRAP_LEN, "the wrapped layout is the keystore's");

/* The error of an LMDB call that failed (rc != 0): never KR_OK, which the
 * static analyzer cannot tell from kr_err_from_mdb alone. */
static kr_err mdb_failed(int rc)
{
    kr_err err = kr_err_from_mdb(rc);
    return err != KR_OK ? err : KR_EIO;
}

static kr_err fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return kr_err_from_errno(errno);
    kr_err err = fsync(fd) == 0 ? KR_OK : kr_err_from_errno(errno);
    close(fd);
    return err;
}

/* ---- The KEK file ---- */

/* Reads and parses a KEK file. KR_ENOTFOUND if absent; KR_EKEY for a file
 * that is not an owner-only regular file of ours or is not exactly the
 * format. The text is wiped from the stack either way. */
static kr_err kek_read(const char *path, uint8_t kek[KEK_LEN])
{
    char text[KEK_FILE_CAP];
    kr_err err = kr_file_read_small(path, text, sizeof text, true);
    if (err == KR_ECORRUPT)
        err = KR_EKEY; /* too long, or a NUL inside */
    size_t n = 0;
    const size_t magic = sizeof KEK_MAGIC - 1;
    if (err == KR_OK &&
        (strlen(text) != KEK_FILE_LEN || memcmp(text, KEK_MAGIC, magic) != 0 ||
         text[KEK_FILE_LEN - 1] != '\n' ||
         kr_b64_decode(kek, KEK_LEN, text + magic, KEK_B64_LEN, &n) != KR_OK || n != KEK_LEN))
        err = KR_EKEY;
    sodium_memzero(text, sizeof text);
    if (err)
        sodium_memzero(kek, KEK_LEN);
    return err;
}

/* Makes DIR/keys/kek.key from fresh random bytes. The file is written and
 * synced under a temporary name and linked into place, so no reader ever sees
 * half a KEK; if another process linked one first, that one stays (KR_OK). */
static kr_err kek_make(const char *dir)
{
    char keys[KR_PATH_MAX], path[KR_PATH_MAX], tmp[KR_PATH_MAX];
    kr_err err;
    if ((err = kr_path_join(keys, sizeof keys, dir, "keys")) ||
        (err = kr_path_join(path, sizeof path, keys, "kek.key")))
        return err;
    /* A name of its own, even against another thread of this process. */
    int n = snprintf(tmp, sizeof tmp, "%s.%016" PRIx64 ".tmp", path, kr_rng_u64(NULL));
    if (n < 0 || (size_t)n >= sizeof tmp)
        return KR_ETOOLARGE;
    if (mkdir(keys, 0700) != 0 && errno != EEXIST)
        return kr_err_from_errno(errno);

    uint8_t kek[KEK_LEN];
    char text[KEK_FILE_LEN + 1];
    char b64[sodium_base64_ENCODED_LEN(KEK_LEN, sodium_base64_VARIANT_ORIGINAL)];
    kr_rng_fill(NULL, kek, sizeof kek);
    sodium_bin2base64(b64, sizeof b64, kek, sizeof kek, sodium_base64_VARIANT_ORIGINAL);
    snprintf(text, sizeof text, "%s%s\n", KEK_MAGIC, b64);
    sodium_memzero(kek, sizeof kek);
    sodium_memzero(b64, sizeof b64);

    err = kr_file_write_new(tmp, text, KEK_FILE_LEN, 0600);
    sodium_memzero(text, sizeof text);
    if (err == KR_OK && link(tmp, path) != 0 && errno != EEXIST)
        err = kr_err_from_errno(errno);
    (void)unlink(tmp);
    if (err == KR_OK)
        err = fsync_dir(keys);
    return err;
}

/* ---- Wrapping ---- */

static void wrap_ad(uint8_t ad[WRAP_AD_LEN], uint64_t tenant)
{
    memcpy(ad, WRAP_AD, sizeof WRAP_AD - 1);
    kr_put_be64(ad + sizeof WRAP_AD - 1, tenant);
}

static void wrap_bound(const uint8_t kek[KEK_LEN], const void *ad, size_t adlen,
                       const uint8_t key[KR_DATA_KEY_LEN], uint8_t out[WRAP_LEN])
{
    out[0] = WRAP_VERSION;
    kr_rng_fill(NULL, out + 1, AEAD_NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + AEAD_NONCE_LEN, NULL, key, KR_DATA_KEY_LEN,
                                               ad, adlen, NULL, out + 1, kek);
}

static kr_err unwrap_bound(const uint8_t kek[KEK_LEN], const void *ad, size_t adlen,
                           const uint8_t *in, size_t len, uint8_t key[KR_DATA_KEY_LEN])
{
    if (len != WRAP_LEN || in[0] != WRAP_VERSION ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL, in + 1 + AEAD_NONCE_LEN,
                                                   len - 1 - AEAD_NONCE_LEN, ad, adlen, in + 1,
                                                   kek) != 0) {
        sodium_memzero(key, KR_DATA_KEY_LEN);
        return KR_ECORRUPT;
    }
    return KR_OK;
}

static void wrap(const uint8_t kek[KEK_LEN], uint64_t tenant, const uint8_t key[KR_DATA_KEY_LEN],
                 uint8_t out[WRAP_LEN])
{
    uint8_t ad[WRAP_AD_LEN];
    wrap_ad(ad, tenant);
    wrap_bound(kek, ad, sizeof ad, key, out);
}

static kr_err unwrap(const uint8_t kek[KEK_LEN], uint64_t tenant, const uint8_t *in, size_t len,
                     uint8_t key[KR_DATA_KEY_LEN])
{
    uint8_t ad[WRAP_AD_LEN];
    wrap_ad(ad, tenant);
    return unwrap_bound(kek, ad, sizeof ad, in, len, key);
}

/* The tenant-key domain string must not be a prefix a caller of
 * ks_wrap_secret could reproduce: those ads are prefixed with this. */
#define SECRET_AD     "kiroku.secret.v1:"
#define SECRET_AD_MAX 256

static kr_err secret_ad(uint8_t out[SECRET_AD_MAX], size_t *len, const void *ad, size_t adlen)
{
    _Static_assert(KS_SECRET_AD_MAX + sizeof SECRET_AD - 1 <= SECRET_AD_MAX, "room for the ad");
    if (adlen > KS_SECRET_AD_MAX)
        return KR_ETOOLARGE;
    memcpy(out, SECRET_AD, sizeof SECRET_AD - 1);
    memcpy(out + sizeof SECRET_AD - 1, ad, adlen);
    *len = sizeof SECRET_AD - 1 + adlen;
    return KR_OK;
}

kr_err ks_wrap_secret(struct kr_keystore *ks, const void *ad, size_t adlen,
                      const uint8_t secret[32], uint8_t out[KS_WRAPPED_LEN])
{
    uint8_t full[SECRET_AD_MAX];
    size_t n;
    kr_err err = secret_ad(full, &n, ad, adlen);
    if (err == KR_OK)
        wrap_bound(ks->sec->kek, full, n, secret, out);
    return err;
}

kr_err ks_unwrap_secret(struct kr_keystore *ks, const void *ad, size_t adlen, const uint8_t *in,
                        size_t len, uint8_t secret[32])
{
    uint8_t full[SECRET_AD_MAX];
    size_t n;
    kr_err err = secret_ad(full, &n, ad, adlen);
    if (err) {
        sodium_memzero(secret, 32);
        return err;
    }
    return unwrap_bound(ks->sec->kek, full, n, in, len, secret);
}

static void kek_check_make(const uint8_t kek[KEK_LEN], uint8_t out[CHECK_LEN])
{
    out[0] = WRAP_VERSION;
    kr_rng_fill(NULL, out + 1, AEAD_NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + AEAD_NONCE_LEN, NULL, NULL, 0,
                                               (const uint8_t *)CHECK_AD, sizeof CHECK_AD - 1, NULL,
                                               out + 1, kek);
}

static bool kek_check_ok(const uint8_t kek[KEK_LEN], const uint8_t *in, size_t len)
{
    uint8_t none[1];
    return len == CHECK_LEN && in[0] == WRAP_VERSION &&
           crypto_aead_xchacha20poly1305_ietf_decrypt(none, NULL, NULL, in + 1 + AEAD_NONCE_LEN,
                                                      AEAD_TAG_LEN, (const uint8_t *)CHECK_AD,
                                                      sizeof CHECK_AD - 1, in + 1, kek) == 0;
}

/* ---- The key cache ---- */

static struct ks_slot *cache_set(struct kr_keystore *ks, uint64_t tenant)
{
    /* splitmix64's finalizer: sequential tenant ids spread over all sets. */
    uint64_t h = tenant;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
    return &ks->sec->slots[(h & (CACHE_SETS - 1)) * KR_KEYCACHE_WAYS];
}

static bool cache_get(struct kr_keystore *ks, uint64_t tenant, struct kr_data_key *out)
{
    bool found = false;
    pthread_mutex_lock(&ks->cache_mu);
    struct ks_slot *set = cache_set(ks, tenant);
    for (unsigned w = 0; w < KR_KEYCACHE_WAYS; w++) {
        if (set[w].stamp != 0 && set[w].tenant == tenant) {
            set[w].stamp = ++ks->clock;
            out->tenant = tenant;
            memcpy(out->key, set[w].key, KR_DATA_KEY_LEN);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&ks->cache_mu);
    return found;
}

static uint64_t cache_gen(struct kr_keystore *ks)
{
    pthread_mutex_lock(&ks->cache_mu);
    uint64_t g = ks->gen;
    pthread_mutex_unlock(&ks->cache_mu);
    return g;
}

/* Caches key for tenant, unless a destruction happened since gen was read. */
static void cache_put(struct kr_keystore *ks, uint64_t tenant, const uint8_t *key, uint64_t gen)
{
    pthread_mutex_lock(&ks->cache_mu);
    if (gen == ks->gen) {
        struct ks_slot *set = cache_set(ks, tenant), *victim = &set[0];
        for (unsigned w = 0; w < KR_KEYCACHE_WAYS; w++) {
            if (set[w].stamp != 0 && set[w].tenant == tenant) {
                victim = &set[w];
                break;
            }
            if (set[w].stamp < victim->stamp)
                victim = &set[w]; /* an empty way (0) or an older one */
        }
        victim->tenant = tenant;
        victim->stamp = ++ks->clock;
        memcpy(victim->key, key, KR_DATA_KEY_LEN);
    }
    pthread_mutex_unlock(&ks->cache_mu);
}

static void cache_drop(struct kr_keystore *ks, uint64_t tenant)
{
    pthread_mutex_lock(&ks->cache_mu);
    ks->gen++;
    struct ks_slot *set = cache_set(ks, tenant);
    for (unsigned w = 0; w < KR_KEYCACHE_WAYS; w++)
        if (set[w].stamp != 0 && set[w].tenant == tenant)
            sodium_memzero(&set[w], sizeof set[w]);
    pthread_mutex_unlock(&ks->cache_mu);
}

/* Takes (or converts to) an open-file-description lock of `type` on all of
 * fd's file. KR_EBUSY if it would have to wait and wait is false; a failed
 * conversion leaves the lock held before as it was. */
static kr_err ofd_lock(int fd, short type, bool wait)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    for (;;) {
        if (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0)
            return KR_OK;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EACCES)
            return KR_EBUSY;
        return kr_err_from_errno(errno);
    }
}

/* ---- The LMDB environment ---- */

static kr_err meta_get(MDB_txn *txn, MDB_dbi db, const char *name, MDB_val *v)
{
    MDB_val k = {strlen(name), (void *)name};
    return kr_err_from_mdb(mdb_get(txn, db, &k, v));
}

static kr_err meta_put(MDB_txn *txn, MDB_dbi db, const char *name, const void *data, size_t len)
{
    MDB_val k = {strlen(name), (void *)name}, v = {len, (void *)data};
    return kr_err_from_mdb(mdb_put(txn, db, &k, &v, 0));
}

/* Checks (or, when create finds an empty environment, writes) the format
 * and the KEK check value, and sets *scrub if a scrub is owed. */
static kr_err env_check_meta(struct kr_keystore *ks, MDB_txn *txn, bool create, bool *scrub)
{
    MDB_val v;
    kr_err err = meta_get(txn, ks->db_meta, META_FORMAT, &v);
    if (err == KR_ENOTFOUND && create) {
        MDB_stat st;
        int rc = mdb_stat(txn, ks->db_keys, &st);
        if (rc)
            return mdb_failed(rc);
        if (st.ms_entries != 0)
            return KR_ECORRUPT; /* keys but no format: not ours */
        uint8_t fmt[4], check[CHECK_LEN];
        kr_put_be32(fmt, FORMAT_VERSION);
        kek_check_make(ks->sec->kek, check);
        if ((err = meta_put(txn, ks->db_meta, META_FORMAT, fmt, sizeof fmt)) ||
            (err = meta_put(txn, ks->db_meta, META_KEK_CHECK, check, sizeof check)))
            return err;
        *scrub = false;
        return KR_OK;
    }
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
    if (v.mv_size != 4)
        return KR_ECORRUPT;
    const uint8_t *f = v.mv_data;
    if (kr_get_be32(f) != FORMAT_VERSION)
        return KR_EVERSION;
    if ((err = meta_get(txn, ks->db_meta, META_KEK_CHECK, &v)))
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
    if (!kek_check_ok(ks->sec->kek, v.mv_data, v.mv_size))
        return KR_EKEY;
    err = meta_get(txn, ks->db_meta, META_SCRUB, &v);
    if (err && err != KR_ENOTFOUND)
        return err;
    *scrub = err == KR_OK;
    return KR_OK;
}

/* Opens ks->env on ks->env_dir and its databases. On error ks->env is closed
 * and NULL. */
static kr_err env_open(struct kr_keystore *ks, bool create, bool *scrub)
{
    int rc;
    kr_err err;
    MDB_txn *txn = NULL;
    if ((rc = mdb_env_create(&ks->env)))
        return mdb_failed(rc);
    if ((rc = mdb_env_set_maxdbs(ks->env, KS_MAX_DBS)) ||
        (rc = mdb_env_set_maxreaders(ks->env, KR_KEYSTORE_READERS)) ||
        (rc = mdb_env_set_mapsize(ks->env, KR_KEYSTORE_MAP_SIZE))) {
        err = mdb_failed(rc);
        goto fail;
    }
    /* Durability: no MDB_NOSYNC, MDB_NOMETASYNC, MDB_WRITEMAP or MDB_MAPASYNC.
     * MDB_NOTLS: reader slots belong to transactions, not to threads, so a
     * pool of workers does not pin one slot each. MDB_NOMEMINIT stays off:
     * LMDB zeroes the unused parts of new pages it writes. */
    if ((rc = mdb_env_open(ks->env, ks->env_dir, MDB_NOTLS, 0600))) {
        err = mdb_failed(rc);
        goto fail;
    }
    int dead = 0;
    (void)mdb_reader_check(ks->env, &dead); /* slots of killed readers */

    if ((rc = mdb_txn_begin(ks->env, NULL, 0, &txn))) {
        err = mdb_failed(rc);
        goto fail;
    }
    unsigned flags = create ? MDB_CREATE : 0;
    rc = mdb_dbi_open(txn, DB_META, flags, &ks->db_meta);
    if (rc == MDB_NOTFOUND) {
        /* An environment whose first commit never happened. */
        err = KR_ENOTFOUND;
        goto fail;
    }
    if (rc || (rc = mdb_dbi_open(txn, DB_KEYS, flags, &ks->db_keys)) ||
        (rc = mdb_dbi_open(txn, DB_DESTROYED, flags, &ks->db_destroyed))) {
        err = rc == MDB_NOTFOUND ? KR_ECORRUPT : mdb_failed(rc);
        goto fail;
    }
    if ((err = env_check_meta(ks, txn, create, scrub)))
        goto fail;
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc) {
        err = mdb_failed(rc);
        goto fail;
    }
    return KR_OK;
fail:
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(ks->env);
    ks->env = NULL;
    return err;
}

/* Rewrites data.mdb as a compacting copy of itself. Called with env_lock
 * held exclusively and the open.lock held exclusively. */
static kr_err compact(struct kr_keystore *ks)
{
    char data[KR_PATH_MAX], tmp[KR_PATH_MAX];
    kr_err err;
    if ((err = kr_path_join(data, sizeof data, ks->env_dir, "data.mdb")) ||
        (err = kr_path_join(tmp, sizeof tmp, ks->env_dir, "data.mdb.scrub")))
        return err;
    (void)unlink(tmp); /* left by a scrub that crashed */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return kr_err_from_errno(errno);
    err = kr_err_from_mdb(mdb_env_copyfd2(ks->env, fd, MDB_CP_COMPACT));
    if (err == KR_OK && fsync(fd) != 0)
        err = kr_err_from_errno(errno);
    close(fd);
    if (err) {
        (void)unlink(tmp);
        return err;
    }

    mdb_env_close(ks->env);
    ks->env = NULL;
    if (rename(tmp, data) != 0) {
        err = kr_err_from_errno(errno);
        (void)unlink(tmp);
    } else {
        /* If this sync is lost the old file may come back after a crash;
         * it still records that a scrub is owed. */
        err = fsync_dir(ks->env_dir);
    }

    bool scrub = false;
    kr_err open_err = env_open(ks, false, &scrub);
    if (open_err) {
        ks->broken = open_err == KR_ENOTFOUND ? KR_EIO : open_err;
        return ks->broken;
    }
    if (err)
        return err;
    /* The copy still says a scrub is owed (it was made before this). */
    MDB_txn *txn;
    int rc = mdb_txn_begin(ks->env, NULL, 0, &txn);
    if (rc)
        return mdb_failed(rc);
    MDB_val k = {sizeof META_SCRUB - 1, (void *)META_SCRUB};
    rc = mdb_del(txn, ks->db_meta, &k, NULL);
    if (rc && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return mdb_failed(rc);
    }
    return kr_err_from_mdb(mdb_txn_commit(txn));
}

/* The scrub, if one is owed. Called with env_lock held exclusively. */
static kr_err scrub_locked(struct kr_keystore *ks)
{
    if (ks->broken)
        return ks->broken;
    MDB_txn *txn;
    MDB_val v;
    int rc = mdb_txn_begin(ks->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return mdb_failed(rc);
    kr_err err = meta_get(txn, ks->db_meta, META_SCRUB, &v);
    mdb_txn_abort(txn);
    if (err == KR_ENOTFOUND)
        return KR_OK;
    if (err)
        return err;
    /* Only with no other process in the keystore: its LMDB handle would go
     * on using the file this replaces. */
    if ((err = ofd_lock(ks->lock_fd, F_WRLCK, false)))
        return err;
    err = compact(ks);
    /* Back to shared: a conversion downwards cannot conflict. */
    KR_ASSERT(ofd_lock(ks->lock_fd, F_RDLCK, false) == KR_OK);
    return err;
}

kr_err ks_scrub(struct kr_keystore *ks)
{
    pthread_rwlock_wrlock(&ks->env_lock);
    kr_err err = scrub_locked(ks);
    pthread_rwlock_unlock(&ks->env_lock);
    return err;
}

/* ---- Open and close ---- */

static struct kr_keystore *ks_alloc(void)
{
    struct kr_keystore *ks = calloc(1, sizeof *ks);
    if (!ks)
        return NULL;
    ks->sec = sodium_malloc(sizeof *ks->sec);
    if (!ks->sec) {
        free(ks);
        return NULL;
    }
    sodium_memzero(ks->sec, sizeof *ks->sec); /* sodium_malloc fills with junk */
    ks->lock_fd = -1;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* A scrub must not wait behind an endless stream of readers. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ks->env_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&ks->cache_mu, NULL);
    return ks;
}

void ks_close(struct kr_keystore *ks)
{
    if (!ks)
        return;
    if (ks->env)
        mdb_env_close(ks->env);
    kr_env_unregister(&ks->reg);
    if (ks->lock_fd >= 0)
        close(ks->lock_fd); /* drops the OFD lock */
    sodium_free(ks->sec);   /* wipes it */
    pthread_rwlock_destroy(&ks->env_lock);
    pthread_mutex_destroy(&ks->cache_mu);
    free(ks);
}

kr_err ks_open(const char *dir, bool create, struct kr_keystore **out)
{
    char kek_path[KR_PATH_MAX], data[KR_PATH_MAX], lock[KR_PATH_MAX];
    struct kr_keystore *ks = NULL;
    kr_err err;

    *out = NULL;
    if (sodium_init() < 0)
        return KR_ECRYPTO;
    if (!(ks = ks_alloc()))
        return KR_ENOMEM;
    if ((err = kr_path_join(ks->env_dir, sizeof ks->env_dir, dir, "keystore")) ||
        (err = kr_path_join(kek_path, sizeof kek_path, dir, "keys/kek.key")) ||
        (err = kr_path_join(data, sizeof data, ks->env_dir, "data.mdb")) ||
        (err = kr_path_join(lock, sizeof lock, ks->env_dir, "open.lock")))
        goto fail;

    struct stat st;
    bool have_data = stat(data, &st) == 0;
    if (!have_data && errno != ENOENT) {
        err = kr_err_from_errno(errno);
        goto fail;
    }
    if (!have_data && !create) {
        err = KR_ENOTFOUND;
        goto fail;
    }
    err = kek_read(kek_path, ks->sec->kek);
    if (err == KR_ENOTFOUND) {
        /* A keystore that lost its KEK never gets a new one: its keys
         * would be unreadable, and new ones mixed in with them. */
        if (have_data)
            err = KR_EKEY;
        else if ((err = kek_make(dir)) == KR_OK)
            err = kek_read(kek_path, ks->sec->kek);
    }
    if (err)
        goto fail;

    if (create && mkdir(ks->env_dir, 0700) != 0 && errno != EEXIST) {
        err = kr_err_from_errno(errno);
        goto fail;
    }
    if ((err = kr_env_register(&ks->reg, ks->env_dir)))
        goto fail;
    ks->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (ks->lock_fd < 0) {
        err = kr_err_from_errno(errno);
        goto fail;
    }
    /* Waits only while another process scrubs. */
    if ((err = ofd_lock(ks->lock_fd, F_RDLCK, true)))
        goto fail;
    bool scrub = false;
    if ((err = env_open(ks, create, &scrub)))
        goto fail;
    if (scrub) {
        /* Owed by a destruction whose scrub could not run or did not
         * finish. Busy is fine: it stays owed. */
        kr_err serr = scrub_locked(ks);
        if (ks->broken) {
            err = serr;
            goto fail;
        }
    }
    *out = ks;
    return KR_OK;
fail:
    ks_close(ks);
    return err;
}

/* ---- Keys ---- */

void kr_data_key_wipe(struct kr_data_key *k)
{
    if (k)
        sodium_memzero(k->key, sizeof k->key);
}

/* Reads tenant's entry of db (db_keys or db_destroyed) in a read
 * transaction of its own and, if out is not NULL, copies it there: len
 * bytes, KR_ECORRUPT if the entry has another size. KR_ENOTFOUND if the
 * tenant has no entry. */
static kr_err read_tenant_entry(struct kr_keystore *ks, MDB_dbi db, uint64_t tenant, void *out,
                                size_t len)
{
    uint8_t kb[8];
    kr_put_be64(kb, tenant);
    MDB_val k = {sizeof kb, kb}, v;
    MDB_txn *txn;
    kr_err err;
    pthread_rwlock_rdlock(&ks->env_lock);
    if ((err = ks->broken))
        goto out;
    int rc = mdb_txn_begin(ks->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        err = mdb_failed(rc);
        goto out;
    }
    rc = mdb_get(txn, db, &k, &v);
    if (rc)
        err = mdb_failed(rc);
    else if (out && v.mv_size != len)
        err = KR_ECORRUPT;
    else if (out)
        memcpy(out, v.mv_data, len);
    mdb_txn_abort(txn);
out:
    pthread_rwlock_unlock(&ks->env_lock);
    return err;
}

/* Copies the wrapped key of tenant out of the keystore. */
static kr_err read_wrapped(struct kr_keystore *ks, uint64_t tenant, uint8_t out[WRAP_LEN])
{
    return read_tenant_entry(ks, ks->db_keys, tenant, out, WRAP_LEN);
}

static kr_err create_txn(struct kr_keystore *ks, uint64_t tenant, const struct kr_rng *rng,
                         struct kr_data_key *out, uint8_t existing[WRAP_LEN],
                         const uint8_t *import);
static kr_err fetch_remote(struct kr_keystore *ks, uint64_t tenant, uint8_t *key);

kr_err ks_get(struct kr_keystore *ks, uint64_t tenant, struct kr_data_key *out)
{
    if (cache_get(ks, tenant, out))
        return KR_OK;
    uint64_t gen = cache_gen(ks); /* before the read: see the design notes */
    uint8_t wrapped[WRAP_LEN];
    kr_err err = read_wrapped(ks, tenant, wrapped);
    if (err == KR_OK)
        err = unwrap(ks->sec->kek, tenant, wrapped, sizeof wrapped, out->key);
    else if (err == KR_ENOTFOUND && ks->remote)
        err = fetch_remote(ks, tenant, out->key);
    if (err) {
        kr_data_key_wipe(out);
        return err;
    }
    out->tenant = tenant;
    cache_put(ks, tenant, out->key, gen);
    return KR_OK;
}

/* In one write transaction: refuses a destroyed tenant (KR_EKEY); if the
 * tenant has a key, copies it wrapped to existing and answers KR_EEXIST;
 * otherwise stores `import` (a wrapped key already checked to unwrap, whose
 * key is in out->key) or, when import is NULL, makes a key from rng into
 * out->key and stores it. */
static kr_err create_txn(struct kr_keystore *ks, uint64_t tenant, const struct kr_rng *rng,
                         struct kr_data_key *out, uint8_t existing[WRAP_LEN], const uint8_t *import)
{
    uint8_t kb[8], wrapped[WRAP_LEN];
    kr_put_be64(kb, tenant);
    MDB_val k = {sizeof kb, kb}, v;
    MDB_txn *txn = NULL;
    kr_err err;
    int rc;
    pthread_rwlock_rdlock(&ks->env_lock);
    if ((err = ks->broken))
        goto out;
    if ((rc = mdb_txn_begin(ks->env, NULL, 0, &txn))) {
        err = mdb_failed(rc);
        txn = NULL;
        goto out;
    }
    rc = mdb_get(txn, ks->db_destroyed, &k, &v);
    if (rc == 0) {
        err = KR_EKEY;
        goto out;
    }
    if (rc != MDB_NOTFOUND) {
        err = mdb_failed(rc);
        goto out;
    }
    rc = mdb_get(txn, ks->db_keys, &k, &v);
    if (rc == 0) {
        if (v.mv_size != WRAP_LEN) {
            err = KR_ECORRUPT;
        } else {
            memcpy(existing, v.mv_data, WRAP_LEN);
            err = KR_EEXIST;
        }
        goto out;
    }
    if (rc != MDB_NOTFOUND) {
        err = mdb_failed(rc);
        goto out;
    }
    out->tenant = tenant;
    if (import) {
        memcpy(wrapped, import, WRAP_LEN);
    } else {
        kr_rng_fill(rng, out->key, KR_DATA_KEY_LEN);
        wrap(ks->sec->kek, tenant, out->key, wrapped);
    }
    v.mv_size = sizeof wrapped;
    v.mv_data = wrapped;
    if ((rc = mdb_put(txn, ks->db_keys, &k, &v, MDB_NOOVERWRITE))) {
        err = mdb_failed(rc);
        goto out;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    err = kr_err_from_mdb(rc);
out:
    if (txn)
        mdb_txn_abort(txn);
    pthread_rwlock_unlock(&ks->env_lock);
    return err;
}

/* Keeps a wrapped key that unwrapped as tenant's into key (the remote's):
 * stored locally unless the tenant was destroyed here (KR_EKEY) or has a key
 * already, which wins (copied into key). */
static kr_err keep_remote(struct kr_keystore *ks, uint64_t tenant, const uint8_t wrapped[WRAP_LEN],
                          uint8_t *key)
{
    uint8_t existing[WRAP_LEN] = {0};
    struct kr_data_key k = {.tenant = tenant};
    memcpy(k.key, key, KR_DATA_KEY_LEN);
    kr_err err = create_txn(ks, tenant, NULL, &k, existing, wrapped);
    if (err == KR_EEXIST)
        err = unwrap(ks->sec->kek, tenant, existing, sizeof existing, key);
    kr_data_key_wipe(&k);
    return err;
}

/* A key this keystore lacks, from the remote store: KR_ENOTFOUND when the
 * tenant's key was destroyed here or the remote has none. */
static kr_err fetch_remote(struct kr_keystore *ks, uint64_t tenant, uint8_t *key)
{
    bool destroyed;
    uint8_t wrapped[WRAP_LEN];
    kr_err err = ks_is_destroyed(ks, tenant, &destroyed);
    if (err == KR_OK && destroyed)
        err = KR_ENOTFOUND;
    if (err == KR_OK)
        err = ks->remote->get(ks->remote->ctx, tenant, wrapped);
    if (err == KR_OK)
        err = unwrap(ks->sec->kek, tenant, wrapped, sizeof wrapped, key);
    if (err == KR_OK)
        err = keep_remote(ks, tenant, wrapped, key);
    if (err == KR_EKEY) /* destroyed meanwhile */
        err = KR_ENOTFOUND;
    return err;
}

kr_err ks_share(struct kr_keystore *ks, uint64_t tenant)
{
    uint8_t wrapped[WRAP_LEN], there[WRAP_LEN];
    if (!ks->remote)
        return KR_EINVAL;
    kr_err err = read_wrapped(ks, tenant, wrapped);
    if (!err)
        err = ks->remote->create(ks->remote->ctx, tenant, wrapped);
    if (err == KR_EEXIST && (err = ks->remote->get(ks->remote->ctx, tenant, there)) == KR_OK)
        err = sodium_memcmp(there, wrapped, WRAP_LEN) == 0 ? KR_OK : KR_EEXIST;
    sodium_memzero(wrapped, sizeof wrapped);
    sodium_memzero(there, sizeof there);
    return err;
}

/* Makes a key with a remote store: the remote takes it first, if it has none;
 * else its key is used (*made false). Nothing is kept locally on error. */
static kr_err create_remote(struct kr_keystore *ks, uint64_t tenant, const struct kr_rng *rng,
                            uint8_t *key, bool *made)
{
    bool destroyed;
    uint8_t wrapped[WRAP_LEN];
    *made = false;
    kr_err err = ks_is_destroyed(ks, tenant, &destroyed);
    if (err == KR_OK && destroyed)
        return KR_EKEY;
    if (err)
        return err;
    err = fetch_remote(ks, tenant, key);
    if (err != KR_ENOTFOUND)
        return err;
    kr_rng_fill(rng, key, KR_DATA_KEY_LEN);
    wrap(ks->sec->kek, tenant, key, wrapped);
    err = ks->remote->create(ks->remote->ctx, tenant, wrapped);
    if (err == KR_EEXIST) /* another node made one first: that one */
        return fetch_remote(ks, tenant, key);
    if (err == KR_OK) {
        *made = true;
        err = keep_remote(ks, tenant, wrapped, key);
    }
    return err;
}

kr_err ks_create(struct kr_keystore *ks, uint64_t tenant, const struct kr_rng *rng,
                 struct kr_data_key *out)
{
    uint8_t existing[WRAP_LEN] = {0};
    uint64_t gen = cache_gen(ks);
    kr_err err;
    if (ks->remote) {
        bool made;
        err = create_remote(ks, tenant, rng, out->key, &made);
        out->tenant = tenant;
        if (err == KR_OK && !made)
            err = KR_EEXIST;
    } else {
        err = create_txn(ks, tenant, rng, out, existing, NULL);
    }
    if (err) {
        kr_data_key_wipe(out);
        return err;
    }
    cache_put(ks, tenant, out->key, gen);
    return KR_OK;
}

kr_err ks_get_or_create(struct kr_keystore *ks, uint64_t tenant, const struct kr_rng *rng,
                        struct kr_data_key *out)
{
    kr_err err = ks_get(ks, tenant, out);
    if (err != KR_ENOTFOUND)
        return err;
    /* None, or destroyed: decide under the write lock, so that two racing
     * creators agree on one key. */
    uint8_t existing[WRAP_LEN] = {0};
    uint64_t gen = cache_gen(ks);
    if (ks->remote) {
        bool made;
        err = create_remote(ks, tenant, rng, out->key, &made);
        out->tenant = tenant;
    } else {
        err = create_txn(ks, tenant, rng, out, existing, NULL);
    }
    if (err == KR_EEXIST) {
        err = unwrap(ks->sec->kek, tenant, existing, sizeof existing, out->key);
        out->tenant = tenant;
    }
    if (err) {
        kr_data_key_wipe(out);
        return err;
    }
    cache_put(ks, tenant, out->key, gen);
    return KR_OK;
}

static kr_err destroy(struct kr_keystore *ks, uint64_t tenant, uint64_t time_ns, bool scrub)
{
    uint8_t kb[8], tb[8], zeros[WRAP_LEN];
    kr_put_be64(kb, tenant);
    kr_put_be64(tb, time_ns);
    memset(zeros, 0, sizeof zeros);
    MDB_val k = {sizeof kb, kb}, v;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    bool removed = false;
    kr_err err;
    int rc;

    cache_drop(ks, tenant);
    pthread_rwlock_rdlock(&ks->env_lock);
    if ((err = ks->broken))
        goto out;
    if ((rc = mdb_txn_begin(ks->env, NULL, 0, &txn)) ||
        (rc = mdb_cursor_open(txn, ks->db_keys, &cur))) {
        err = mdb_failed(rc);
        goto out;
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
    if (rc == 0) {
        /* Zeros over the wrapped key, then away with it (design notes). A
         * value of the wrong size is no key: it is only deleted. */
        MDB_val z = {v.mv_size, zeros};
        if ((v.mv_size == WRAP_LEN && (rc = mdb_cursor_put(cur, &k, &z, MDB_CURRENT))) ||
            (rc = mdb_cursor_del(cur, 0))) {
            err = mdb_failed(rc);
            goto out;
        }
        removed = true;
    } else if (rc != MDB_NOTFOUND) {
        err = mdb_failed(rc);
        goto out;
    }
    mdb_cursor_close(cur);
    cur = NULL;
    v.mv_size = sizeof tb;
    v.mv_data = tb;
    rc = mdb_put(txn, ks->db_destroyed, &k, &v, MDB_NOOVERWRITE);
    if (rc && rc != MDB_KEYEXIST) {
        err = mdb_failed(rc);
        goto out;
    }
    if (removed && (err = meta_put(txn, ks->db_meta, META_SCRUB, "", 0)))
        goto out;
    rc = mdb_txn_commit(txn);
    txn = NULL;
    err = kr_err_from_mdb(rc);
out:
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        mdb_txn_abort(txn);
    pthread_rwlock_unlock(&ks->env_lock);
    cache_drop(ks, tenant);
    if (err == KR_OK && removed && scrub) {
        /* The destruction stands whatever the scrub does; ks_scrub tells. */
        pthread_rwlock_wrlock(&ks->env_lock);
        (void)scrub_locked(ks);
        pthread_rwlock_unlock(&ks->env_lock);
    }
    return err;
}

kr_err ks_destroy(struct kr_keystore *ks, uint64_t tenant, uint64_t time_ns)
{
    kr_err err = destroy(ks, tenant, time_ns, true);
    if (err == KR_OK && ks->remote)
        err = ks->remote->purge(ks->remote->ctx, tenant);
    return err;
}

kr_err ks_destroy_unscrubbed(struct kr_keystore *ks, uint64_t tenant, uint64_t time_ns)
{
    kr_err err = destroy(ks, tenant, time_ns, false);
    if (err == KR_OK && ks->remote)
        err = ks->remote->purge(ks->remote->ctx, tenant);
    return err;
}

void ks_set_remote(struct kr_keystore *ks, const struct ks_remote *remote)
{
    ks->remote = remote;
}

kr_err ks_copy(struct kr_keystore *ks, const char *dest_dir)
{
    char path[KR_PATH_MAX];
    kr_err err = kr_path_join(path, sizeof path, dest_dir, "data.mdb");
    if (err)
        return err;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return kr_err_from_errno(errno);
    /* Shared: other copies and every call but a scrub go on meanwhile. */
    pthread_rwlock_rdlock(&ks->env_lock);
    if ((err = ks->broken) == KR_OK)
        err = kr_err_from_mdb(mdb_env_copyfd2(ks->env, fd, MDB_CP_COMPACT));
    pthread_rwlock_unlock(&ks->env_lock);
    if (err == KR_OK && fsync(fd) != 0)
        err = kr_err_from_errno(errno);
    if (close(fd) != 0 && err == KR_OK)
        err = kr_err_from_errno(errno);
    if (err)
        (void)unlink(path);
    else
        err = fsync_dir(dest_dir);
    return err;
}

kr_err ks_is_destroyed(struct kr_keystore *ks, uint64_t tenant, bool *destroyed)
{
    kr_err err = read_tenant_entry(ks, ks->db_destroyed, tenant, NULL, 0);
    *destroyed = err == KR_OK;
    return err == KR_ENOTFOUND ? KR_OK : err;
}

/* ---- Sealing ---- */

kr_err kr_seal(const struct kr_data_key *k, const struct kr_rng *rng, const void *ad, size_t adlen,
               const void *pt, size_t ptlen, uint8_t *out, size_t cap, size_t *outlen)
{
    if (cap < KR_SEAL_OVERHEAD || ptlen > cap - KR_SEAL_OVERHEAD)
        return KR_ETOOLARGE;
    uint8_t ek[crypto_aead_xchacha20poly1305_ietf_KEYBYTES], nk[crypto_generichash_KEYBYTES];
    uint8_t r[KR_SEAL_NONCE_LEN], adlen_le[8];
    crypto_generichash_state st;

    crypto_kdf_derive_from_key(ek, sizeof ek, SEAL_KEY_ID, SEAL_CONTEXT, k->key);
    crypto_kdf_derive_from_key(nk, sizeof nk, SEAL_NONCE_ID, SEAL_CONTEXT, k->key);
    kr_rng_fill(rng, r, sizeof r);
    kr_put_le64(adlen_le, (uint64_t)adlen);
    /* The nonce: a keyed hash of the random bytes and the whole message (a
     * synthetic IV), so a repeating rng cannot repeat it for new data. */
    crypto_generichash_init(&st, nk, sizeof nk, KR_SEAL_NONCE_LEN);
    crypto_generichash_update(&st, r, sizeof r);
    crypto_generichash_update(&st, adlen_le, sizeof adlen_le);
    crypto_generichash_update(&st, ad, adlen);
    crypto_generichash_update(&st, pt, ptlen);
    crypto_generichash_final(&st, out, KR_SEAL_NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + KR_SEAL_NONCE_LEN, NULL, pt, ptlen, ad, adlen,
                                               NULL, out, ek);
    *outlen = ptlen + KR_SEAL_OVERHEAD;
    sodium_memzero(ek, sizeof ek);
    sodium_memzero(nk, sizeof nk);
    sodium_memzero(&st, sizeof st);
    return KR_OK;
}

kr_err kr_unseal(const struct kr_data_key *k, const void *ad, size_t adlen, const uint8_t *in,
                 size_t inlen, uint8_t *out, size_t cap, size_t *outlen)
{
    if (inlen < KR_SEAL_OVERHEAD)
        return KR_ECORRUPT;
    size_t ptlen = inlen - KR_SEAL_OVERHEAD;
    if (cap < ptlen)
        return KR_ETOOLARGE;
    uint8_t ek[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    crypto_kdf_derive_from_key(ek, sizeof ek, SEAL_KEY_ID, SEAL_CONTEXT, k->key);
    int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
        out, NULL, NULL, in + KR_SEAL_NONCE_LEN, inlen - KR_SEAL_NONCE_LEN, ad, adlen, in, ek);
    sodium_memzero(ek, sizeof ek);
    if (rc != 0) {
        if (ptlen > 0)
            sodium_memzero(out, ptlen);
        return KR_ECORRUPT;
    }
    *outlen = ptlen;
    return KR_OK;
}

void kr_data_key_mac(const struct kr_data_key *k, const char purpose[8], const void *msg,
                     size_t len, uint8_t out[32])
{
    uint8_t sub[crypto_auth_hmacsha256_KEYBYTES];
    crypto_auth_hmacsha256_state st;
    crypto_kdf_derive_from_key(sub, sizeof sub, MAC_KEY_ID, purpose, k->key);
    crypto_auth_hmacsha256_init(&st, sub, sizeof sub);
    crypto_auth_hmacsha256_update(&st, msg, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(sub, sizeof sub);
    sodium_memzero(&st, sizeof st);
}
