/*
 * keystore_test.c: tests for projections/keystore.c: the KEK file, tenant data
 * keys and their destruction, sealing and blind-index hashes.
 *
 * Stored bytes are read and tampered with through LMDB directly, with the
 * keystore closed (an environment must not be open twice in one process) or
 * from a forked child (another process may open it). What sealing and the
 * keyed hash produce is recomputed here from keystore.h's definitions with
 * libsodium. Erasure is checked the hard way: by searching every byte of every
 * file in the data directory for the destroyed keys, wrapped and unwrapped.
 *
 * cmocka's assertions run only on the test's thread: the worker threads of the
 * concurrency test count what went wrong in atomics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keystore.h"
#include "kr_error.h"
#include "kr_limits.h"
#include "rng.h"
#include "test_util.h"

#define COUNT(a)  (sizeof(a) / sizeof((a)[0]))
#define DIR_CAP   1024
#define PATH_CAP  4096
#define KEK_MAGIC "kiroku-kek 1\n"
#define WRAP_LEN  73
#define T0        1700000000000000000ull

struct fixture {
    char dir[DIR_CAP];
};

static int setup(void **state)
{
    if (sodium_init() < 0)
        return -1;
    umask(022);
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    kr_test_tmpdir(f->dir, sizeof f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kr_test_rmrf(f->dir);
    free(f);
    return 0;
}

/* ---- Helpers ---- */

static void sub(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_CAP, "%s/%s", dir, name);
    assert_true(n > 0 && n < PATH_CAP);
}

static struct kr_keystore *open_ok(const char *dir, bool create)
{
    struct kr_keystore *ks = NULL;
    kr_err err = ks_open(dir, create, &ks);
    if (err != KR_OK)
        fail_msg("ks_open(%s): %s", create ? "create" : "existing", kr_strerror(err));
    assert_non_null(ks);
    return ks;
}

static kr_err open_err(const char *dir, bool create)
{
    struct kr_keystore *ks = (struct kr_keystore *)&ks; /* must be set to NULL */
    kr_err err = ks_open(dir, create, &ks);
    if (err == KR_OK)
        ks_close(ks);
    else
        assert_null(ks);
    return err;
}

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static size_t slurp(const char *path, char *out, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(out, 1, cap - 1, fp);
    fclose(fp);
    out[n] = '\0';
    return n;
}

/* Raw LMDB access to DIR/keystore; the keystore must not be open in this
 * process. */
static void raw_open(const char *dir, MDB_env **env, MDB_txn **txn, const char *db, MDB_dbi *dbi,
                     bool write)
{
    char path[PATH_CAP];
    sub(path, dir, "keystore");
    if (mdb_env_create(env) || mdb_env_set_maxdbs(*env, 8) ||
        mdb_env_set_mapsize(*env, KR_KEYSTORE_MAP_SIZE) || mdb_env_open(*env, path, 0, 0600))
        fail_msg("cannot open %s", path);
    if (mdb_txn_begin(*env, NULL, write ? 0 : MDB_RDONLY, txn) || mdb_dbi_open(*txn, db, 0, dbi))
        fail_msg("cannot open database %s", db);
}

static void raw_close(MDB_env *env, MDB_txn *txn, bool commit)
{
    if (commit)
        assert_int_equal(mdb_txn_commit(txn), 0);
    else
        mdb_txn_abort(txn);
    mdb_env_close(env);
}

/* Reads the stored value of key `tenant` in database db into out. */
static size_t raw_get(const char *dir, const char *db, uint64_t tenant, uint8_t *out, size_t cap)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi = 0;
    uint8_t kb[8];
    kr_test_be64(kb, tenant);
    MDB_val k = {sizeof kb, kb}, v = {0, NULL};
    raw_open(dir, &env, &txn, db, &dbi, false);
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    assert_true(v.mv_size <= cap);
    memcpy(out, v.mv_data, v.mv_size);
    raw_close(env, txn, false);
    return v.mv_size;
}

static void raw_put(const char *dir, const char *db, const void *key, size_t klen, const void *data,
                    size_t len)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi = 0;
    MDB_val k = {klen, (void *)key}, v = {len, (void *)data};
    raw_open(dir, &env, &txn, db, &dbi, true);
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    raw_close(env, txn, true);
}

static void raw_put_key(const char *dir, uint64_t tenant, const void *data, size_t len)
{
    uint8_t kb[8];
    kr_test_be64(kb, tenant);
    raw_put(dir, "keys", kb, sizeof kb, data, len);
}

/* Wrapped keys of tenants[0..n) into out[i], read by a child process while
 * this one keeps the keystore open. */
static void snapshot_wrapped(const char *dir, const uint64_t *tenants, size_t n,
                             uint8_t (*out)[WRAP_LEN])
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        char path[PATH_CAP];
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        sub(path, dir, "keystore");
        if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 8) ||
            mdb_env_set_mapsize(env, KR_KEYSTORE_MAP_SIZE) || mdb_env_open(env, path, 0, 0600) ||
            mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) || mdb_dbi_open(txn, "keys", 0, &dbi))
            _exit(2);
        for (size_t i = 0; i < n; i++) {
            uint8_t kb[8];
            kr_test_be64(kb, tenants[i]);
            MDB_val k = {sizeof kb, kb}, v;
            if (mdb_get(txn, dbi, &k, &v) || v.mv_size != WRAP_LEN ||
                write(p[1], v.mv_data, WRAP_LEN) != WRAP_LEN)
                _exit(3);
        }
        mdb_txn_abort(txn);
        mdb_env_close(env);
        _exit(0);
    }
    close(p[1]);
    size_t got = 0, want = n * WRAP_LEN;
    uint8_t *dst = (uint8_t *)out;
    while (got < want) {
        ssize_t r = read(p[0], dst + got, want - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(got, want);
}

/* Counts the occurrences of a byte string in all regular files under a
 * directory. */
static const uint8_t *scan_needle;
static size_t scan_len, scan_hits;

static int scan_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag != FTW_F || !S_ISREG(st->st_mode) || st->st_size == 0)
        return 0;
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t *buf = malloc((size_t)st->st_size);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (size_t)st->st_size, fp);
    fclose(fp);
    for (size_t i = 0; i + scan_len <= n; i++)
        if (buf[i] == scan_needle[0] && memcmp(buf + i, scan_needle, scan_len) == 0)
            scan_hits++;
    free(buf);
    return 0;
}

static size_t count_in_files(const char *dir, const void *needle, size_t len)
{
    scan_needle = needle;
    scan_len = len;
    scan_hits = 0;
    assert_int_equal(nftw(dir, scan_entry, 16, FTW_PHYS), 0);
    return scan_hits;
}

static void kek_path(char *out, const char *dir)
{
    sub(out, dir, "keys/kek.key");
}

static void kek_text(char *out, size_t cap, const uint8_t kek[32])
{
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, kek, 32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(out, cap, KEK_MAGIC "%s\n", b64);
}

static void expect_mode(const char *path, mode_t want, bool dir)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
    if ((st.st_mode & 0777) != want)
        fail_msg("%s: mode %04o, want %04o", path, (unsigned)(st.st_mode & 0777), (unsigned)want);
}

/* ---- Keys ---- */

static void test_create_get_reopen(void **state)
{
    struct fixture *f = *state;
    char path[PATH_CAP], text[256];
    struct kr_keystore *ks = open_ok(f->dir, true);

    /* Files, modes and the KEK's text form. */
    sub(path, f->dir, "keys");
    expect_mode(path, 0700, true);
    kek_path(path, f->dir);
    expect_mode(path, 0600, false);
    assert_int_equal(slurp(path, text, sizeof text), strlen(KEK_MAGIC) + 44 + 1);
    assert_memory_equal(text, KEK_MAGIC, strlen(KEK_MAGIC));
    uint8_t kek[32];
    size_t kek_len = 0;
    assert_int_equal(sodium_base642bin(kek, sizeof kek, text + strlen(KEK_MAGIC), 44, NULL,
                                       &kek_len, NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(kek_len, 32);
    assert_false(all_zero(kek, sizeof kek));
    sub(path, f->dir, "keystore");
    expect_mode(path, 0700, true);
    static const char *files[] = {"keystore/data.mdb", "keystore/lock.mdb", "keystore/open.lock"};
    for (size_t i = 0; i < COUNT(files); i++) {
        sub(path, f->dir, files[i]);
        expect_mode(path, 0600, false);
    }

    struct kr_data_key k1, got, k2, again;
    assert_int_equal(ks_create(ks, 1, NULL, &k1), KR_OK);
    assert_true(k1.tenant == 1);
    assert_false(all_zero(k1.key, sizeof k1.key));
    memset(&got, 0xaa, sizeof got);
    assert_int_equal(ks_get(ks, 1, &got), KR_OK);
    assert_true(got.tenant == 1);
    assert_memory_equal(got.key, k1.key, sizeof k1.key);
    memset(&got, 0xaa, sizeof got);
    assert_int_equal(ks_get(ks, 2, &got), KR_ENOTFOUND);
    assert_true(all_zero(got.key, sizeof got.key)); /* wiped on error */
    /* The raw key is nowhere on disk, not even while it is live. */
    assert_int_equal(count_in_files(f->dir, k1.key, sizeof k1.key), 0);
    ks_close(ks);

    /* From disk, without the cache. */
    ks = open_ok(f->dir, false);
    assert_int_equal(ks_get(ks, 1, &got), KR_OK);
    assert_memory_equal(got.key, k1.key, sizeof k1.key);
    assert_int_equal(ks_get_or_create(ks, 2, NULL, &k2), KR_OK);
    assert_true(k2.tenant == 2);
    assert_memory_not_equal(k2.key, k1.key, sizeof k1.key);
    assert_int_equal(ks_get_or_create(ks, 2, NULL, &again), KR_OK);
    assert_memory_equal(again.key, k2.key, sizeof k2.key);
    /* The extreme ids are ids like any other. */
    struct kr_data_key k0, kmax;
    assert_int_equal(ks_create(ks, 0, NULL, &k0), KR_OK);
    assert_int_equal(ks_create(ks, UINT64_MAX, NULL, &kmax), KR_OK);
    assert_memory_not_equal(k0.key, kmax.key, sizeof k0.key);
    ks_close(ks);

    ks = open_ok(f->dir, true); /* create on an existing keystore just opens it */
    assert_int_equal(ks_get(ks, 2, &got), KR_OK);
    assert_memory_equal(got.key, k2.key, sizeof k2.key);
    assert_int_equal(ks_get(ks, 0, &got), KR_OK);
    assert_memory_equal(got.key, k0.key, sizeof k0.key);
    assert_int_equal(ks_get(ks, UINT64_MAX, &got), KR_OK);
    assert_memory_equal(got.key, kmax.key, sizeof kmax.key);
    assert_int_equal(ks_get(ks, 1, &got), KR_OK);
    assert_memory_equal(got.key, k1.key, sizeof k1.key);
    /* The stored form: version 1, then nonce and ciphertext that open with
     * the KEK file's key and additional data "kiroku.dek.v1" || be64(1). */
    ks_close(ks);
    static const uint8_t prefix[13] = {'k', 'i', 'r', 'o', 'k', 'u', '.',
                                       'd', 'e', 'k', '.', 'v', '1'};
    uint8_t w[WRAP_LEN + 8], ad[sizeof prefix + 8], plain[32];
    assert_int_equal(raw_get(f->dir, "keys", 1, w, sizeof w), WRAP_LEN);
    assert_int_equal(w[0], 1);
    memcpy(ad, prefix, sizeof prefix);
    kr_test_be64(ad + sizeof prefix, 1);
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, w + 25, 48, ad,
                                                                sizeof ad, w + 1, kek),
                     0);
    assert_memory_equal(plain, k1.key, 32);
    kr_data_key_wipe(&k1);
    kr_data_key_wipe(&k2);
    kr_data_key_wipe(&got);
}

static void test_create_from_rng(void **state)
{
    struct fixture *f = *state;
    char other[PATH_CAP];
    sub(other, f->dir, "other");
    assert_int_equal(mkdir(other, 0700), 0);

    /* The key is the rng's next 32 bytes; the wrapping nonce is not from it. */
    struct kr_rng_det d, d2, dref;
    struct kr_rng r, r2, rref;
    kr_rng_det_init(&d, 11, &r);
    kr_rng_det_init(&d2, 11, &r2);
    kr_rng_det_init(&dref, 11, &rref);
    uint8_t want[32];
    kr_rng_fill(&rref, want, sizeof want);

    struct kr_keystore *a = open_ok(f->dir, true), *b = open_ok(other, true);
    struct kr_data_key ka, kb;
    assert_int_equal(ks_create(a, 9, &r, &ka), KR_OK);
    assert_int_equal(ks_create(b, 9, &r2, &kb), KR_OK);
    assert_memory_equal(ka.key, want, sizeof want);
    assert_memory_equal(kb.key, want, sizeof want);
    /* get_or_create draws from the rng only when it creates. */
    struct kr_data_key g;
    assert_int_equal(ks_get_or_create(a, 9, &r, &g), KR_OK);
    assert_int_equal(ks_get_or_create(a, 10, &r, &g), KR_OK);
    kr_rng_fill(&rref, want, sizeof want);
    assert_memory_equal(g.key, want, sizeof want);
    ks_close(a);
    ks_close(b);

    uint8_t wa[WRAP_LEN], wb[WRAP_LEN];
    raw_get(f->dir, "keys", 9, wa, sizeof wa);
    raw_get(other, "keys", 9, wb, sizeof wb);
    assert_memory_not_equal(wa + 1, wb + 1, 24);
    kr_rng_det_fini(&d);
    kr_rng_det_fini(&d2);
    kr_rng_det_fini(&dref);
}

static void test_create_twice(void **state)
{
    struct fixture *f = *state;
    struct kr_keystore *ks = open_ok(f->dir, true);
    struct kr_data_key k, again, got;
    assert_int_equal(ks_create(ks, 5, NULL, &k), KR_OK);
    memset(&again, 0xaa, sizeof again);
    assert_int_equal(ks_create(ks, 5, NULL, &again), KR_EEXIST);
    assert_true(all_zero(again.key, sizeof again.key));
    assert_int_equal(ks_get(ks, 5, &got), KR_OK);
    assert_memory_equal(got.key, k.key, sizeof k.key);
    ks_close(ks);
    ks = open_ok(f->dir, false);
    assert_int_equal(ks_create(ks, 5, NULL, &again), KR_EEXIST);
    assert_int_equal(ks_get(ks, 5, &got), KR_OK);
    assert_memory_equal(got.key, k.key, sizeof k.key);
    ks_close(ks);
}

static void test_destroy(void **state)
{
    struct fixture *f = *state;
    struct kr_keystore *ks = open_ok(f->dir, true);
    struct kr_data_key k, got, other;
    bool destroyed = true;
    assert_int_equal(ks_create(ks, 7, NULL, &k), KR_OK);
    assert_int_equal(ks_create(ks, 8, NULL, &other), KR_OK);
    assert_int_equal(ks_is_destroyed(ks, 7, &destroyed), KR_OK);
    assert_false(destroyed);

    assert_int_equal(ks_destroy(ks, 7, T0), KR_OK);
    memset(&got, 0xaa, sizeof got);
    assert_int_equal(ks_get(ks, 7, &got), KR_ENOTFOUND);
    assert_true(all_zero(got.key, sizeof got.key));
    assert_int_equal(ks_is_destroyed(ks, 7, &destroyed), KR_OK);
    assert_true(destroyed);
    assert_int_equal(ks_is_destroyed(ks, 8, &destroyed), KR_OK);
    assert_false(destroyed);
    /* Never again. */
    assert_int_equal(ks_create(ks, 7, NULL, &got), KR_EKEY);
    assert_int_equal(ks_get_or_create(ks, 7, NULL, &got), KR_EKEY);
    assert_true(all_zero(got.key, sizeof got.key));
    assert_int_equal(ks_get(ks, 7, &got), KR_ENOTFOUND);
    /* Again: no change, the first time stays. */
    assert_int_equal(ks_destroy(ks, 7, T0 + 5), KR_OK);
    /* The neighbour is untouched. */
    assert_int_equal(ks_get(ks, 8, &got), KR_OK);
    assert_memory_equal(got.key, other.key, sizeof other.key);
    /* A tenant that never had a key can be destroyed, and then never has one. */
    assert_int_equal(ks_destroy(ks, 9, T0 + 9), KR_OK);
    assert_int_equal(ks_create(ks, 9, NULL, &got), KR_EKEY);
    assert_int_equal(ks_get_or_create(ks, 9, NULL, &got), KR_EKEY);
    assert_int_equal(ks_is_destroyed(ks, 9, &destroyed), KR_OK);
    assert_true(destroyed);
    assert_int_equal(ks_scrub(ks), KR_OK);
    ks_close(ks);

    ks = open_ok(f->dir, false);
    assert_int_equal(ks_get(ks, 7, &got), KR_ENOTFOUND);
    assert_int_equal(ks_create(ks, 7, NULL, &got), KR_EKEY);
    assert_int_equal(ks_is_destroyed(ks, 7, &destroyed), KR_OK);
    assert_true(destroyed);
    assert_int_equal(ks_get(ks, 8, &got), KR_OK);
    assert_memory_equal(got.key, other.key, sizeof other.key);
    ks_close(ks);

    uint8_t t[16], want[8];
    assert_int_equal(raw_get(f->dir, "destroyed", 7, t, sizeof t), 8);
    kr_test_be64(want, T0);
    assert_memory_equal(t, want, 8);
    assert_int_equal(raw_get(f->dir, "destroyed", 9, t, sizeof t), 8);
    kr_test_be64(want, T0 + 9);
    assert_memory_equal(t, want, 8);
}

/* After destruction, neither the key nor its wrapped form is in any file:
 * tenants created, destroyed and created again in one session, so LMDB's
 * reused page buffers and freed pages get their chance to keep old bytes. */
enum { FIRST = 150, SECOND = FIRST / 3 };

static void test_destroy_leaves_no_bytes(void **state)
{
    struct fixture *f = *state;
    static uint64_t ids1[FIRST], ids2[SECOND];
    static uint8_t w1[FIRST][WRAP_LEN], w2[SECOND][WRAP_LEN];
    static struct kr_data_key k1[FIRST], k2[SECOND];
    struct kr_keystore *ks = open_ok(f->dir, true);

    for (size_t i = 0; i < FIRST; i++) {
        ids1[i] = 100 + i;
        assert_int_equal(ks_create(ks, ids1[i], NULL, &k1[i]), KR_OK);
    }
    snapshot_wrapped(f->dir, ids1, FIRST, w1);
    /* Destroy every third, creating a new tenant after each. */
    for (size_t i = 0, j = 0; i < FIRST; i++) {
        if (i % 3 != 0)
            continue;
        assert_int_equal(ks_destroy(ks, ids1[i], T0 + i), KR_OK);
        ids2[j] = 5000 + j;
        assert_int_equal(ks_create(ks, ids2[j], NULL, &k2[j]), KR_OK);
        j++;
    }
    _Static_assert(FIRST / 3 >= SECOND, "one new tenant per destruction");
    snapshot_wrapped(f->dir, ids2, SECOND, w2);
    for (size_t j = 0; j < SECOND; j += 2)
        assert_int_equal(ks_destroy(ks, ids2[j], T0 + j), KR_OK);
    ks_close(ks);

    for (size_t i = 0; i < FIRST; i++) {
        size_t n = count_in_files(f->dir, w1[i], WRAP_LEN);
        if (i % 3 == 0 && n != 0)
            fail_msg("tenant %llu: wrapped key found %zu times after destruction",
                     (unsigned long long)ids1[i], n);
        /* The search finds what is there: live keys are. */
        if (i % 3 != 0 && n == 0)
            fail_msg("tenant %llu: live wrapped key not found", (unsigned long long)ids1[i]);
        assert_int_equal(count_in_files(f->dir, k1[i].key, 32), 0);
        /* Not even half of a destroyed one. */
        if (i % 3 == 0)
            assert_int_equal(count_in_files(f->dir, w1[i] + 25, 24), 0);
    }
    for (size_t j = 0; j < SECOND; j++) {
        size_t n = count_in_files(f->dir, w2[j], WRAP_LEN);
        if (j % 2 == 0 ? n != 0 : n == 0)
            fail_msg("second batch, tenant %llu: wrapped key found %zu times",
                     (unsigned long long)ids2[j], n);
        assert_int_equal(count_in_files(f->dir, k2[j].key, 32), 0);
    }

    /* And the survivors are all there. */
    ks = open_ok(f->dir, false);
    struct kr_data_key got;
    for (size_t i = 0; i < FIRST; i++) {
        kr_err err = ks_get(ks, ids1[i], &got);
        assert_int_equal(err, i % 3 == 0 ? KR_ENOTFOUND : KR_OK);
        if (err == KR_OK)
            assert_memory_equal(got.key, k1[i].key, 32);
    }
    for (size_t j = 0; j < SECOND; j++) {
        kr_err err = ks_get(ks, ids2[j], &got);
        assert_int_equal(err, j % 2 == 0 ? KR_ENOTFOUND : KR_OK);
        if (err == KR_OK)
            assert_memory_equal(got.key, k2[j].key, 32);
    }
    ks_close(ks);
}

/* Many keys destroyed with one scrub: ks_destroy_unscrubbed leaves the
 * scrub owed, across a close and open too; one ks_scrub then leaves none of
 * their bytes in any file, and the live keys all there. */
enum { MANY = 60 };

static void test_destroy_many_one_scrub(void **state)
{
    struct fixture *f = *state;
    static uint64_t ids[MANY];
    static uint8_t w[MANY][WRAP_LEN];
    static struct kr_data_key k[MANY];
    struct kr_keystore *ks = open_ok(f->dir, true);
    for (size_t i = 0; i < MANY; i++) {
        ids[i] = 300 + i;
        assert_int_equal(ks_create(ks, ids[i], NULL, &k[i]), KR_OK);
    }
    snapshot_wrapped(f->dir, ids, MANY, w);
    for (size_t i = 0; i < MANY; i += 2)
        assert_int_equal(ks_destroy_unscrubbed(ks, ids[i], T0 + i), KR_OK);
    struct kr_data_key got;
    bool destroyed;
    assert_int_equal(ks_get(ks, ids[0], &got), KR_ENOTFOUND);
    assert_int_equal(ks_is_destroyed(ks, ids[0], &destroyed), KR_OK);
    assert_true(destroyed);
    ks_close(ks);

    ks = open_ok(f->dir, false);
    assert_int_equal(ks_scrub(ks), KR_OK);
    ks_close(ks);
    for (size_t i = 0; i < MANY; i++) {
        size_t n = count_in_files(f->dir, w[i], WRAP_LEN);
        if (i % 2 == 0 ? n != 0 : n == 0)
            fail_msg("tenant %llu: wrapped key found %zu times", (unsigned long long)ids[i], n);
    }
    ks = open_ok(f->dir, false);
    for (size_t i = 0; i < MANY; i++) {
        kr_err err = ks_get(ks, ids[i], &got);
        assert_int_equal(err, i % 2 == 0 ? KR_ENOTFOUND : KR_OK);
        if (err == KR_OK)
            assert_memory_equal(got.key, k[i].key, 32);
    }
    ks_close(ks);
}

/* Takes a shared lock on open.lock as another process's ks_open would. */
static int hold_open_lock(const char *dir)
{
    char path[PATH_CAP];
    sub(path, dir, "keystore/open.lock");
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_RDLCK;
    fl.l_whence = SEEK_SET;
    assert_int_equal(fcntl(fd, F_OFD_SETLK, &fl), 0);
    return fd;
}

static void test_scrub_waits_for_other_processes(void **state)
{
    struct fixture *f = *state;
    uint64_t ids[20];
    uint8_t w[20][WRAP_LEN];
    struct kr_keystore *ks = open_ok(f->dir, true);
    struct kr_data_key k;
    for (size_t i = 0; i < COUNT(ids); i++) {
        ids[i] = i + 1;
        assert_int_equal(ks_create(ks, ids[i], NULL, &k), KR_OK);
    }
    snapshot_wrapped(f->dir, ids, COUNT(ids), w);
    assert_int_equal(ks_scrub(ks), KR_OK); /* nothing owed */

    /* Another process has it open: the destruction stands, the scrub waits. */
    int fd = hold_open_lock(f->dir);
    assert_int_equal(ks_destroy(ks, 5, T0), KR_OK);
    assert_int_equal(ks_get(ks, 5, &k), KR_ENOTFOUND);
    assert_int_equal(ks_scrub(ks), KR_EBUSY);
    assert_true(count_in_files(f->dir, w[4], WRAP_LEN) > 0); /* the old page */
    close(fd);
    assert_int_equal(ks_scrub(ks), KR_OK);
    assert_int_equal(count_in_files(f->dir, w[4], WRAP_LEN), 0);
    assert_int_equal(ks_scrub(ks), KR_OK);

    /* Owed across a close: the next open that has the keystore to itself
     * does it. */
    fd = hold_open_lock(f->dir);
    assert_int_equal(ks_destroy(ks, 6, T0), KR_OK);
    ks_close(ks);
    ks = open_ok(f->dir, false); /* still shared: stays owed */
    assert_true(count_in_files(f->dir, w[5], WRAP_LEN) > 0);
    ks_close(ks);
    close(fd);
    ks = open_ok(f->dir, false);
    assert_int_equal(count_in_files(f->dir, w[5], WRAP_LEN), 0);
    for (size_t i = 0; i < COUNT(ids); i++) {
        kr_err err = ks_get(ks, ids[i], &k);
        assert_int_equal(err, i == 4 || i == 5 ? KR_ENOTFOUND : KR_OK);
        if (err == KR_OK)
            assert_true(count_in_files(f->dir, w[i], WRAP_LEN) > 0);
    }
    ks_close(ks);
    /* No scrub file is left behind. */
    char path[PATH_CAP];
    sub(path, f->dir, "keystore/data.mdb.scrub");
    assert_int_not_equal(access(path, F_OK), 0);
}

static void test_moved_key(void **state)
{
    struct fixture *f = *state;
    struct kr_keystore *ks = open_ok(f->dir, true);
    struct kr_data_key a, b, got;
    assert_int_equal(ks_create(ks, 1, NULL, &a), KR_OK);
    assert_int_equal(ks_create(ks, 2, NULL, &b), KR_OK);
    ks_close(ks);

    /* Tenant 1's wrapped key in tenant 2's slot. */
    uint8_t w[WRAP_LEN];
    raw_get(f->dir, "keys", 1, w, sizeof w);
    raw_put_key(f->dir, 2, w, sizeof w);
    ks = open_ok(f->dir, false);
    memset(&got, 0xaa, sizeof got);
    assert_int_equal(ks_get(ks, 2, &got), KR_ECORRUPT);
    assert_true(all_zero(got.key, sizeof got.key));
    assert_int_equal(ks_get_or_create(ks, 2, NULL, &got), KR_ECORRUPT);
    assert_int_equal(ks_create(ks, 2, NULL, &got), KR_EEXIST);
    assert_int_equal(ks_get(ks, 1, &got), KR_OK);
    assert_memory_equal(got.key, a.key, 32);
    /* A damaged key can still be destroyed. */
    assert_int_equal(ks_destroy(ks, 2, T0), KR_OK);
    assert_int_equal(ks_get(ks, 2, &got), KR_ENOTFOUND);
    ks_close(ks);

    /* And into a slot that had no key. */
    raw_put_key(f->dir, 3, w, sizeof w);
    ks = open_ok(f->dir, false);
    assert_int_equal(ks_get(ks, 3, &got), KR_ECORRUPT);
    ks_close(ks);
}

static void expect_get(const char *dir, uint64_t tenant, kr_err want, const char *what)
{
    struct kr_keystore *ks = open_ok(dir, false);
    struct kr_data_key got;
    kr_err err = ks_get(ks, tenant, &got);
    ks_close(ks);
    if (err != want)
        fail_msg("%s: got %s, want %s", what, kr_strerror(err), kr_strerror(want));
}

static void test_tampered_key(void **state)
{
    struct fixture *f = *state;
    struct kr_keystore *ks = open_ok(f->dir, true);
    struct kr_data_key k;
    assert_int_equal(ks_create(ks, 3, NULL, &k), KR_OK);
    ks_close(ks);
    uint8_t w[WRAP_LEN], bad[WRAP_LEN + 1];
    raw_get(f->dir, "keys", 3, w, sizeof w);
    char what[64];
    for (size_t i = 0; i < WRAP_LEN; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, w, WRAP_LEN);
            bad[i] ^= (uint8_t)(1u << bit);
            raw_put_key(f->dir, 3, bad, WRAP_LEN);
            snprintf(what, sizeof what, "bit %d of byte %zu", bit, i);
            expect_get(f->dir, 3, KR_ECORRUPT, what);
        }
    }
    for (size_t len = 0; len < WRAP_LEN; len++) {
        raw_put_key(f->dir, 3, w, len);
        snprintf(what, sizeof what, "truncated to %zu bytes", len);
        expect_get(f->dir, 3, KR_ECORRUPT, what);
    }
    memcpy(bad, w, WRAP_LEN);
    bad[WRAP_LEN] = 0;
    raw_put_key(f->dir, 3, bad, WRAP_LEN + 1);
    expect_get(f->dir, 3, KR_ECORRUPT, "one byte longer");
    /* Control: the original opens. */
    raw_put_key(f->dir, 3, w, WRAP_LEN);
    ks = open_ok(f->dir, false);
    struct kr_data_key got;
    assert_int_equal(ks_get(ks, 3, &got), KR_OK);
    assert_memory_equal(got.key, k.key, 32);
    ks_close(ks);
}

/* ---- The KEK file and opening ---- */

static void make_keystore(const char *dir)
{
    struct kr_keystore *ks = open_ok(dir, true);
    struct kr_data_key k;
    assert_int_equal(ks_create(ks, 1, NULL, &k), KR_OK);
    ks_close(ks);
}

static void test_kek_modes(void **state)
{
    struct fixture *f = *state;
    char path[PATH_CAP];
    make_keystore(f->dir);
    kek_path(path, f->dir);
    static const mode_t bad[] = {0644, 0640, 0604, 0660, 0606, 0620, 0602, 0610, 0601, 0666, 0777};
    for (size_t i = 0; i < COUNT(bad); i++) {
        assert_int_equal(chmod(path, bad[i]), 0);
        kr_err err = open_err(f->dir, false);
        if (err != KR_EKEY)
            fail_msg("mode %04o: got %s", (unsigned)bad[i], kr_strerror(err));
        assert_int_equal(open_err(f->dir, true), KR_EKEY);
    }
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(open_err(f->dir, false), KR_OK);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(open_err(f->dir, false), KR_OK);
    /* Not ours (only root can make that happen here). */
    if (geteuid() == 0) {
        assert_int_equal(chown(path, 12345, 12345), 0);
        assert_int_equal(open_err(f->dir, false), KR_EKEY);
        assert_int_equal(chown(path, 0, 0), 0);
        assert_int_equal(open_err(f->dir, false), KR_OK);
    }
}

static void test_kek_malformed(void **state)
{
    struct fixture *f = *state;
    char path[PATH_CAP], good[256], text[512];
    make_keystore(f->dir);
    kek_path(path, f->dir);
    size_t n = slurp(path, good, sizeof good);
    assert_int_equal(n, strlen(KEK_MAGIC) + 45);

    for (size_t len = 0; len < n; len++) {
        write_file(path, good, len, 0600);
        kr_err err = open_err(f->dir, false);
        if (err != KR_EKEY)
            fail_msg("truncated to %zu bytes: got %s", len, kr_strerror(err));
    }
    struct {
        const char *what;
        const char *suffix;
        size_t suffix_len;
    } tails[] = {
        {"trailing byte", "x", 1},
        {"extra newline", "\n", 1},
        {"NUL", "\0", 1},
        {"NUL and junk", "\0junk", 5},
    };
    for (size_t i = 0; i < COUNT(tails); i++) {
        memcpy(text, good, n);
        memcpy(text + n, tails[i].suffix, tails[i].suffix_len);
        write_file(path, text, n + tails[i].suffix_len, 0600);
        kr_err err = open_err(f->dir, false);
        if (err != KR_EKEY)
            fail_msg("%s: got %s", tails[i].what, kr_strerror(err));
    }
    /* Same length, broken inside. */
    static const struct {
        size_t at;
        char c;
    } flips[] = {{0, 'K'}, {11, '2'}, {12, ' '}, {13, '!'}, {13 + 43, 'A'}, {13 + 44, '\r'}};
    for (size_t i = 0; i < COUNT(flips); i++) {
        memcpy(text, good, n);
        text[flips[i].at] = flips[i].c;
        write_file(path, text, n, 0600);
        kr_err err = open_err(f->dir, false);
        if (err != KR_EKEY)
            fail_msg("byte %zu set to 0x%02x: got %s", flips[i].at, (unsigned)flips[i].c,
                     kr_strerror(err));
    }
    /* CRLF, URL-safe base64, a 31-byte key padded out. */
    memcpy(text, good, n - 1);
    text[n - 1] = '\r';
    text[n] = '\n';
    write_file(path, text, n + 1, 0600);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);
    uint8_t fb[32];
    memset(fb, 0xfb, sizeof fb);
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, fb, sizeof fb, sodium_base64_VARIANT_URLSAFE);
    snprintf(text, sizeof text, KEK_MAGIC "%s\n", b64);
    write_file(path, text, strlen(text), 0600);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);
    sodium_bin2base64(b64, sizeof b64, fb, 31, sodium_base64_VARIANT_ORIGINAL);
    snprintf(text, sizeof text, KEK_MAGIC "%sAAAA\n", b64);
    write_file(path, text, strlen(text), 0600);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);
    /* Oversized. */
    char big[4096];
    memcpy(big, good, n);
    memset(big + n, 'A', sizeof big - n);
    write_file(path, big, sizeof big, 0600);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);

    /* A well-formed KEK that is not this keystore's. */
    uint8_t other[32];
    randombytes_buf(other, sizeof other);
    kek_text(text, sizeof text, other);
    write_file(path, text, strlen(text), 0600);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);
    assert_int_equal(open_err(f->dir, true), KR_EKEY);

    /* Control: the original text opens. */
    write_file(path, good, n, 0600);
    struct kr_keystore *ks = open_ok(f->dir, false);
    struct kr_data_key k;
    assert_int_equal(ks_get(ks, 1, &k), KR_OK);
    ks_close(ks);
}

static void test_kek_not_a_file(void **state)
{
    struct fixture *f = *state;
    char path[PATH_CAP], moved[PATH_CAP];
    make_keystore(f->dir);
    kek_path(path, f->dir);
    sub(moved, f->dir, "keys/kek.key.real");
    assert_int_equal(rename(path, moved), 0);
    /* A symlink to a good KEK file, relative and absolute. */
    assert_int_equal(symlink("kek.key.real", path), 0);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);
    unlink(path);
    assert_int_equal(symlink(moved, path), 0);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);
    unlink(path);
    /* A directory, a FIFO (refused without waiting for a writer). */
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);
    rmdir(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(10);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);
    assert_int_equal(open_err(f->dir, true), KR_EKEY);
    alarm(0);
    unlink(path);
    assert_int_equal(rename(moved, path), 0);
    assert_int_equal(open_err(f->dir, false), KR_OK);
}

static void test_kek_missing(void **state)
{
    struct fixture *f = *state;
    char path[PATH_CAP], text[256];
    /* Nothing at all. */
    assert_int_equal(open_err(f->dir, false), KR_ENOTFOUND);
    sub(path, f->dir, "keys");
    assert_int_not_equal(access(path, F_OK), 0); /* nothing was made */
    sub(path, f->dir, "keystore");
    assert_int_not_equal(access(path, F_OK), 0);

    /* A keystore whose KEK is gone: refused, and no new KEK is made. */
    make_keystore(f->dir);
    kek_path(path, f->dir);
    size_t n = slurp(path, text, sizeof text);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);
    assert_int_equal(open_err(f->dir, true), KR_EKEY);
    assert_int_not_equal(access(path, F_OK), 0);

    /* A KEK and no keystore: not found without create; with create the KEK
     * given is used, not replaced. */
    write_file(path, text, n, 0600);
    char ks_dir[PATH_CAP];
    sub(ks_dir, f->dir, "keystore");
    kr_test_rmrf(ks_dir);
    assert_int_equal(open_err(f->dir, false), KR_ENOTFOUND);
    assert_int_equal(open_err(f->dir, true), KR_OK);
    char after[256];
    assert_int_equal(slurp(path, after, sizeof after), n);
    assert_memory_equal(after, text, n);
    /* No temporary KEK files are left in keys/. */
    sub(path, f->dir, "keys");
    DIR *dp = opendir(path);
    assert_non_null(dp);
    unsigned entries = 0;
    for (struct dirent *e; (e = readdir(dp));)
        entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(dp);
    assert_int_equal(entries, 1);
}

static void test_not_a_keystore(void **state)
{
    struct fixture *f = *state;
    char path[PATH_CAP];
    make_keystore(f->dir);
    /* An unknown format version. */
    uint8_t fmt[4] = {0, 0, 0, 2};
    raw_put(f->dir, "meta", "format", 6, fmt, sizeof fmt);
    assert_int_equal(open_err(f->dir, false), KR_EVERSION);
    fmt[3] = 1;
    raw_put(f->dir, "meta", "format", 6, fmt, sizeof fmt);
    assert_int_equal(open_err(f->dir, false), KR_OK);
    raw_put(f->dir, "meta", "format", 6, fmt, 3);
    assert_int_equal(open_err(f->dir, false), KR_ECORRUPT);
    raw_put(f->dir, "meta", "format", 6, fmt, sizeof fmt);
    /* A damaged KEK check value is a wrong KEK as far as anyone can tell. */
    uint8_t check[41];
    memset(check, 1, sizeof check);
    raw_put(f->dir, "meta", "kek_check", 9, check, sizeof check);
    assert_int_equal(open_err(f->dir, false), KR_EKEY);

    /* Junk where data.mdb should be. */
    char junk_dir[PATH_CAP];
    sub(junk_dir, f->dir, "junk");
    assert_int_equal(mkdir(junk_dir, 0700), 0);
    sub(path, junk_dir, "keys");
    assert_int_equal(mkdir(path, 0700), 0);
    char src[PATH_CAP];
    kek_path(src, f->dir);
    char text[256];
    size_t n = slurp(src, text, sizeof text);
    kek_path(path, junk_dir);
    write_file(path, text, n, 0600);
    sub(path, junk_dir, "keystore");
    assert_int_equal(mkdir(path, 0700), 0);
    sub(path, junk_dir, "keystore/data.mdb");
    static uint8_t junk[16384];
    memset(junk, 0x5a, sizeof junk);
    write_file(path, junk, sizeof junk, 0600);
    kr_err err = open_err(junk_dir, false);
    if (err == KR_OK)
        fail_msg("junk data.mdb opened");
}

static void test_open_twice(void **state)
{
    struct fixture *f = *state;
    char alias[PATH_CAP];
    struct kr_keystore *ks = open_ok(f->dir, true);
    assert_int_equal(open_err(f->dir, false), KR_EBUSY);
    assert_int_equal(open_err(f->dir, true), KR_EBUSY);
    snprintf(alias, sizeof alias, "%s/./", f->dir);
    assert_int_equal(open_err(alias, false), KR_EBUSY);
    /* The refused opens did not disturb the open one. */
    struct kr_data_key k, got;
    assert_int_equal(ks_create(ks, 4, NULL, &k), KR_OK);
    ks_close(ks);
    ks = open_ok(alias, false);
    assert_int_equal(ks_get(ks, 4, &got), KR_OK);
    assert_memory_equal(got.key, k.key, 32);
    ks_close(ks);
}

static void test_long_dir(void **state)
{
    (void)state;
    char dir[KR_PATH_MAX + 64];
    memset(dir, 'd', sizeof dir - 1);
    dir[0] = '/';
    dir[sizeof dir - 1] = '\0';
    assert_int_equal(open_err(dir, true), KR_ETOOLARGE);
    assert_int_equal(open_err(dir, false), KR_ETOOLARGE);
}

/* More tenants than the cache holds: every key still comes back right. */
static void test_cache_eviction(void **state)
{
    struct fixture *f = *state;
    enum { N = KR_KEYCACHE_MAX + 512 };
    struct kr_data_key *keys = calloc(N, sizeof *keys);
    assert_non_null(keys);
    struct kr_rng_det d;
    struct kr_rng r;
    kr_rng_det_init(&d, 3, &r);
    struct kr_keystore *ks = open_ok(f->dir, true);
    for (uint64_t t = 0; t < N; t++)
        assert_int_equal(ks_create(ks, t * 7919, &r, &keys[t]), KR_OK);
    struct kr_data_key got;
    for (int round = 0; round < 2; round++) {
        for (uint64_t t = 0; t < N; t++) {
            uint64_t i = round == 0 ? t : N - 1 - t;
            assert_int_equal(ks_get(ks, i * 7919, &got), KR_OK);
            assert_true(got.tenant == i * 7919);
            assert_memory_equal(got.key, keys[i].key, 32);
        }
    }
    /* Destroy some that are cached and some that are not. */
    for (uint64_t t = 0; t < N; t += 97)
        assert_int_equal(ks_destroy(ks, t * 7919, T0), KR_OK);
    for (uint64_t t = 0; t < N; t++) {
        kr_err err = ks_get(ks, t * 7919, &got);
        assert_int_equal(err, t % 97 == 0 ? KR_ENOTFOUND : KR_OK);
        if (err == KR_OK)
            assert_memory_equal(got.key, keys[t].key, 32);
    }
    ks_close(ks);
    kr_rng_det_fini(&d);
    for (size_t i = 0; i < N; i++)
        kr_data_key_wipe(&keys[i]);
    free(keys);
}

/* ---- Many threads ---- */

enum { WORKERS = 8, TENANTS = 48, ITERS = 1500, DESTROY_EVERY = 60 };

struct shared {
    struct kr_keystore *ks;
    pthread_mutex_t mu;
    bool known[TENANTS];
    uint8_t key[TENANTS][32];
    atomic_bool destroyed[TENANTS];
    atomic_uint bad_err, bad_key, resurrected, ok_gets, destroys;
};

static uint64_t mix(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Every key seen for a tenant must be the first one seen for it. */
static void check_key(struct shared *s, const struct kr_data_key *k, uint64_t t)
{
    pthread_mutex_lock(&s->mu);
    if (k->tenant != t + 1 || (s->known[t] && memcmp(s->key[t], k->key, 32) != 0)) {
        atomic_fetch_add(&s->bad_key, 1);
    } else if (!s->known[t]) {
        s->known[t] = true;
        memcpy(s->key[t], k->key, 32);
    }
    pthread_mutex_unlock(&s->mu);
}

struct worker {
    struct shared *s;
    unsigned id;
};

static void *worker_main(void *p)
{
    struct worker *w = p;
    struct shared *s = w->s;
    uint64_t seed = w->id * 1000003ull + 1;
    struct kr_data_key k;
    for (unsigned i = 0; i < ITERS; i++) {
        uint64_t t = mix(&seed) % TENANTS, op = mix(&seed) % 100;
        bool was_destroyed = atomic_load(&s->destroyed[t]);
        kr_err err;
        if (w->id == 0 && i % DESTROY_EVERY == DESTROY_EVERY - 1) {
            err = ks_destroy(s->ks, t + 1, T0 + i);
            if (err != KR_OK)
                atomic_fetch_add(&s->bad_err, 1);
            atomic_store(&s->destroyed[t], true);
            atomic_fetch_add(&s->destroys, 1);
            continue;
        }
        if (op < 75) {
            err = ks_get(s->ks, t + 1, &k);
        } else if (op < 88) {
            err = ks_get_or_create(s->ks, t + 1, NULL, &k);
        } else if (op < 95) {
            err = ks_create(s->ks, t + 1, NULL, &k);
        } else {
            bool d = false;
            err = ks_is_destroyed(s->ks, t + 1, &d);
            if (err != KR_OK || (was_destroyed && !d))
                atomic_fetch_add(&s->bad_err, 1);
            continue;
        }
        if (err == KR_OK) {
            check_key(s, &k, t);
            atomic_fetch_add(&s->ok_gets, 1);
            if (was_destroyed)
                atomic_fetch_add(&s->resurrected, 1);
        } else if (err != KR_ENOTFOUND && err != KR_EEXIST && err != KR_EKEY) {
            atomic_fetch_add(&s->bad_err, 1);
        } else if (was_destroyed && err == KR_EEXIST) {
            atomic_fetch_add(&s->resurrected, 1); /* "has a key" after destruction */
        }
    }
    kr_data_key_wipe(&k);
    return NULL;
}

static void test_threads(void **state)
{
    struct fixture *f = *state;
    struct shared *s = calloc(1, sizeof *s);
    assert_non_null(s);
    pthread_mutex_init(&s->mu, NULL);
    s->ks = open_ok(f->dir, true);
    struct worker w[WORKERS];
    pthread_t th[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i].s = s;
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&s->bad_err), 0);
    assert_int_equal(atomic_load(&s->bad_key), 0);
    assert_int_equal(atomic_load(&s->resurrected), 0);
    assert_true(atomic_load(&s->ok_gets) > 1000);
    assert_int_equal(atomic_load(&s->destroys), ITERS / DESTROY_EVERY);

    /* After the storm, the keystore agrees with what the threads saw. */
    struct kr_data_key k;
    for (unsigned t = 0; t < TENANTS; t++) {
        kr_err err = ks_get(s->ks, t + 1, &k);
        if (atomic_load(&s->destroyed[t])) {
            assert_int_equal(err, KR_ENOTFOUND);
        } else if (s->known[t]) {
            assert_int_equal(err, KR_OK);
            assert_memory_equal(k.key, s->key[t], 32);
        }
    }
    ks_close(s->ks);
    s->ks = open_ok(f->dir, false);
    for (unsigned t = 0; t < TENANTS; t++) {
        kr_err err = ks_get(s->ks, t + 1, &k);
        if (atomic_load(&s->destroyed[t]))
            assert_int_equal(err, KR_ENOTFOUND);
        else if (s->known[t])
            assert_memory_equal(k.key, s->key[t], 32);
    }
    ks_close(s->ks);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- Sealing ---- */

static void sample_key(struct kr_data_key *k, uint64_t tenant, uint8_t first)
{
    k->tenant = tenant;
    for (size_t i = 0; i < 32; i++)
        k->key[i] = (uint8_t)(first + 7 * i);
}

/* kr_seal's output, from keystore.h's definition, for rng bytes r. */
static size_t spec_seal(const struct kr_data_key *k, const uint8_t r[24], const void *ad,
                        size_t adlen, const void *pt, size_t ptlen, uint8_t *out)
{
    uint8_t ek[32], nk[32], adlen_le[8];
    crypto_kdf_derive_from_key(ek, 32, 1, "krseal01", k->key);
    crypto_kdf_derive_from_key(nk, 32, 2, "krseal01", k->key);
    for (size_t i = 0; i < 8; i++)
        adlen_le[i] = (uint8_t)((uint64_t)adlen >> (8 * i));
    crypto_generichash_state st;
    crypto_generichash_init(&st, nk, 32, 24);
    crypto_generichash_update(&st, r, 24);
    crypto_generichash_update(&st, adlen_le, 8);
    crypto_generichash_update(&st, ad, adlen);
    crypto_generichash_update(&st, pt, ptlen);
    crypto_generichash_final(&st, out, 24);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + 24, &clen, pt, ptlen, ad, adlen, NULL, out,
                                               ek);
    return 24 + (size_t)clen;
}

static void test_seal_roundtrip(void **state)
{
    (void)state;
    struct kr_data_key k;
    sample_key(&k, 1, 3);
    static const size_t sizes[] = {0, 1, 15, 16, 17, 100, 1000, KR_PAYLOAD_MAX};
    uint8_t *pt = malloc(KR_PAYLOAD_MAX), *sealed = malloc(KR_PAYLOAD_MAX + KR_SEAL_OVERHEAD),
            *back = malloc(KR_PAYLOAD_MAX), *want = malloc(KR_PAYLOAD_MAX + KR_SEAL_OVERHEAD);
    assert_true(pt && sealed && back && want);
    randombytes_buf(pt, KR_PAYLOAD_MAX);
    static const char ad[] = "tenant 1|contact/abc|contact.created";
    for (size_t i = 0; i < COUNT(sizes); i++) {
        size_t n = sizes[i], outlen = 0, backlen = 0;
        assert_int_equal(
            kr_seal(&k, NULL, ad, sizeof ad, pt, n, sealed, n + KR_SEAL_OVERHEAD, &outlen), KR_OK);
        assert_int_equal(outlen, n + KR_SEAL_OVERHEAD);
        assert_int_equal(kr_unseal(&k, ad, sizeof ad, sealed, outlen, back, n, &backlen), KR_OK);
        assert_int_equal(backlen, n);
        if (n)
            assert_memory_equal(back, pt, n);
    }
    /* Exactly the documented construction (rng bytes known through a
     * deterministic stream). */
    struct kr_rng_det d, dref;
    struct kr_rng r, rref;
    kr_rng_det_init(&d, 8, &r);
    kr_rng_det_init(&dref, 8, &rref);
    for (size_t i = 0; i < COUNT(sizes); i++) {
        size_t n = sizes[i], outlen = 0;
        uint8_t rb[24];
        kr_rng_fill(&rref, rb, sizeof rb);
        size_t wlen = spec_seal(&k, rb, ad, sizeof ad, pt, n, want);
        assert_int_equal(kr_seal(&k, &r, ad, sizeof ad, pt, n, sealed,
                                 KR_PAYLOAD_MAX + KR_SEAL_OVERHEAD, &outlen),
                         KR_OK);
        assert_int_equal(outlen, wlen);
        assert_memory_equal(sealed, want, wlen);
    }
    kr_rng_det_fini(&d);
    kr_rng_det_fini(&dref);
    /* No additional data, no plaintext, NULL pointers. */
    size_t outlen = 0, backlen = 1;
    assert_int_equal(kr_seal(&k, NULL, NULL, 0, NULL, 0, sealed, KR_SEAL_OVERHEAD, &outlen), KR_OK);
    assert_int_equal(outlen, KR_SEAL_OVERHEAD);
    assert_int_equal(kr_unseal(&k, NULL, 0, sealed, outlen, back, 0, &backlen), KR_OK);
    assert_int_equal(backlen, 0);
    assert_int_equal(kr_unseal(&k, "x", 1, sealed, outlen, back, 0, &backlen), KR_ECORRUPT);
    free(pt);
    free(sealed);
    free(back);
    free(want);
}

static void test_seal_tampered(void **state)
{
    (void)state;
    struct kr_data_key k, other;
    sample_key(&k, 1, 3);
    sample_key(&other, 2, 4);
    static const char ad[] = "1|contact/abc|contact.created";
    static const char pt[] = "Yamada Taro <taro@example.jp>";
    uint8_t sealed[128], bad[129], back[128];
    size_t len = 0, backlen = 0;
    assert_int_equal(kr_seal(&k, NULL, ad, sizeof ad, pt, sizeof pt, sealed, sizeof sealed, &len),
                     KR_OK);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, sealed, len);
            bad[i] ^= (uint8_t)(1u << bit);
            memset(back, 0xaa, sizeof back);
            kr_err err = kr_unseal(&k, ad, sizeof ad, bad, len, back, sizeof back, &backlen);
            if (err != KR_ECORRUPT)
                fail_msg("bit %d of byte %zu: got %s", bit, i, kr_strerror(err));
            assert_true(all_zero(back, sizeof pt)); /* nothing half-decrypted */
        }
    }
    for (size_t cut = 0; cut < len; cut++) {
        kr_err err = kr_unseal(&k, ad, sizeof ad, sealed, cut, back, sizeof back, &backlen);
        if (err != KR_ECORRUPT)
            fail_msg("truncated to %zu: got %s", cut, kr_strerror(err));
    }
    memcpy(bad, sealed, len);
    bad[len] = 0;
    assert_int_equal(kr_unseal(&k, ad, sizeof ad, bad, len + 1, back, sizeof back, &backlen),
                     KR_ECORRUPT);
    /* Another context or another tenant's key. */
    static const char other_ad[] = "2|contact/abc|contact.created";
    assert_int_equal(
        kr_unseal(&k, other_ad, sizeof other_ad, sealed, len, back, sizeof back, &backlen),
        KR_ECORRUPT);
    assert_int_equal(kr_unseal(&k, ad, sizeof ad - 1, sealed, len, back, sizeof back, &backlen),
                     KR_ECORRUPT);
    assert_int_equal(kr_unseal(&k, NULL, 0, sealed, len, back, sizeof back, &backlen), KR_ECORRUPT);
    assert_int_equal(kr_unseal(&other, ad, sizeof ad, sealed, len, back, sizeof back, &backlen),
                     KR_ECORRUPT);
    /* Control. */
    assert_int_equal(kr_unseal(&k, ad, sizeof ad, sealed, len, back, sizeof back, &backlen), KR_OK);
    assert_memory_equal(back, pt, sizeof pt);
}

static void test_seal_caps(void **state)
{
    (void)state;
    struct kr_data_key k;
    sample_key(&k, 1, 5);
    uint8_t pt[100], sealed[200], back[200];
    memset(pt, 'p', sizeof pt);
    memset(sealed, 0x77, sizeof sealed);
    size_t len = 12345, backlen = 6789;
    assert_int_equal(
        kr_seal(&k, NULL, NULL, 0, pt, sizeof pt, sealed, sizeof pt + KR_SEAL_OVERHEAD - 1, &len),
        KR_ETOOLARGE);
    assert_int_equal(len, 12345);
    for (size_t i = 0; i < sizeof sealed; i++)
        assert_int_equal(sealed[i], 0x77); /* untouched */
    assert_int_equal(kr_seal(&k, NULL, NULL, 0, pt, 0, sealed, KR_SEAL_OVERHEAD - 1, &len),
                     KR_ETOOLARGE);
    assert_int_equal(kr_seal(&k, NULL, NULL, 0, pt, SIZE_MAX - 8, sealed, sizeof sealed, &len),
                     KR_ETOOLARGE);
    assert_int_equal(
        kr_seal(&k, NULL, NULL, 0, pt, sizeof pt, sealed, sizeof pt + KR_SEAL_OVERHEAD, &len),
        KR_OK);
    assert_int_equal(kr_unseal(&k, NULL, 0, sealed, len, back, sizeof pt - 1, &backlen),
                     KR_ETOOLARGE);
    assert_int_equal(backlen, 6789);
    assert_int_equal(kr_unseal(&k, NULL, 0, sealed, len, back, sizeof pt, &backlen), KR_OK);
    assert_int_equal(backlen, sizeof pt);
    /* Too short is corrupt whatever the room. */
    assert_int_equal(kr_unseal(&k, NULL, 0, sealed, KR_SEAL_OVERHEAD - 1, back, 0, &backlen),
                     KR_ECORRUPT);
}

/* A source that repeats itself cannot make two messages share a nonce. */
static void stuck_fill(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    memset(buf, 0x42, n);
}

static void test_seal_nonces(void **state)
{
    (void)state;
    struct kr_data_key k;
    sample_key(&k, 1, 9);
    struct kr_rng stuck = {stuck_fill, NULL};
    uint8_t a[64], b[64], c[64];
    size_t la, lb, lc;
    assert_int_equal(kr_seal(&k, &stuck, "ad", 2, "message one", 11, a, sizeof a, &la), KR_OK);
    assert_int_equal(kr_seal(&k, &stuck, "ad", 2, "message two", 11, b, sizeof b, &lb), KR_OK);
    assert_int_equal(kr_seal(&k, &stuck, "ae", 2, "message one", 11, c, sizeof c, &lc), KR_OK);
    assert_memory_not_equal(a, b, 24);
    assert_memory_not_equal(a, c, 24);
    /* The same message with the same rng bytes: the same output, nothing
     * more is revealed than that equality. */
    assert_int_equal(kr_seal(&k, &stuck, "ad", 2, "message one", 11, b, sizeof b, &lb), KR_OK);
    assert_memory_equal(a, b, la);
    /* With the system generator, the same message twice seals differently. */
    assert_int_equal(kr_seal(&k, NULL, "ad", 2, "message one", 11, a, sizeof a, &la), KR_OK);
    assert_int_equal(kr_seal(&k, NULL, "ad", 2, "message one", 11, b, sizeof b, &lb), KR_OK);
    assert_memory_not_equal(a, b, la);
}

static void test_mac(void **state)
{
    (void)state;
    struct kr_data_key k1, k2;
    sample_key(&k1, 1, 1);
    sample_key(&k2, 2, 2);
    static const char email[] = "taro@example.jp";
    uint8_t a[32], b[32], c[32], d[32], want[32];
    kr_data_key_mac(&k1, "emailmac", email, strlen(email), a);
    kr_data_key_mac(&k1, "emailmac", email, strlen(email), b);
    assert_memory_equal(a, b, 32);
    kr_data_key_mac(&k1, "phonemac", email, strlen(email), c);
    assert_memory_not_equal(a, c, 32);
    kr_data_key_mac(&k2, "emailmac", email, strlen(email), d);
    assert_memory_not_equal(a, d, 32);
    kr_data_key_mac(&k1, "emailmac", "taro@example.jq", strlen(email), b);
    assert_memory_not_equal(a, b, 32);
    /* The documented construction. */
    uint8_t sub_key[32];
    crypto_kdf_derive_from_key(sub_key, 32, 3, "emailmac", k1.key);
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, sub_key, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)email, strlen(email));
    crypto_auth_hmacsha256_final(&st, want);
    assert_memory_equal(a, want, 32);
    /* Not the plain key either. */
    crypto_auth_hmacsha256(want, (const uint8_t *)email, strlen(email), k1.key);
    assert_memory_not_equal(a, want, 32);
    /* Empty message. */
    kr_data_key_mac(&k1, "emailmac", NULL, 0, c);
    assert_memory_not_equal(a, c, 32);
}

static void test_wipe(void **state)
{
    (void)state;
    struct kr_data_key k;
    sample_key(&k, 77, 1);
    kr_data_key_wipe(&k);
    assert_true(all_zero(k.key, sizeof k.key));
    assert_true(k.tenant == 77);
    kr_data_key_wipe(NULL);
    ks_close(NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_create_get_reopen),
        T(test_create_from_rng),
        T(test_create_twice),
        T(test_destroy),
        T(test_destroy_leaves_no_bytes),
        T(test_destroy_many_one_scrub),
        T(test_scrub_waits_for_other_processes),
        T(test_moved_key),
        T(test_tampered_key),
        T(test_kek_modes),
        T(test_kek_malformed),
        T(test_kek_not_a_file),
        T(test_kek_missing),
        T(test_not_a_keystore),
        T(test_open_twice),
        T(test_long_dir),
        T(test_cache_eviction),
        T(test_threads),
        T(test_seal_roundtrip),
        T(test_seal_tampered),
        T(test_seal_caps),
        T(test_seal_nonces),
        T(test_mac),
        T(test_wipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
