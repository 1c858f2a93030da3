/*
 * keys_test.c: tests for journal/keys.c, signing keys and their files.
 *
 * Key files are written here byte by byte from the format in keys.h, with
 * libsodium's own base64, so that loading is checked against the spec and not
 * only against kr_key_save.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keys.h"
#include "kr_error.h"
#include "kr_limits.h"
#include "test_util.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define MAGIC    "kiroku-journal-key 1\n"
#define DIR_CAP  1024
#define PATH_CAP 4096
#define SEED_LEN 32
#define TEXT_MAX 512

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

static void key_path(char *out, const char *dir, uint32_t id, const char *ext)
{
    snprintf(out, PATH_CAP, "%s/keys/journal-%u.%s", dir, id, ext);
}

/* Reads a whole small file into out (NUL-terminated); returns its length. */
static size_t slurp(const char *path, char *out, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(out, 1, cap - 1, fp);
    fclose(fp);
    out[n] = '\0';
    return n;
}

static void mkdir_keys(const char *dir)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/keys", dir);
    assert_true(mkdir(path, 0700) == 0 || errno == EEXIST);
}

/* Writes a key file of exactly `len` bytes with the given mode. */
static void write_key_file(const char *dir, uint32_t id, const char *ext, const void *data,
                           size_t len, mode_t mode)
{
    char path[PATH_CAP];
    mkdir_keys(dir);
    key_path(path, dir, id, ext);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

/* The key file text for a seed, as keys.h defines it. */
static void key_text(char *out, size_t cap, const uint8_t *seed, size_t seed_len)
{
    char b64[128];
    sodium_bin2base64(b64, sizeof b64, seed, seed_len, sodium_base64_VARIANT_ORIGINAL);
    snprintf(out, cap, MAGIC "%s\n", b64);
}

static void seed_fill(uint8_t seed[SEED_LEN], uint8_t first)
{
    for (size_t i = 0; i < SEED_LEN; i++)
        seed[i] = (uint8_t)(first + 3 * i);
}

/* ---- Tests ---- */

static void test_generate(void **state)
{
    (void)state;
    struct kr_signing_key a, b;
    assert_int_equal(kr_key_generate(7, &a), KR_OK);
    assert_int_equal(kr_key_generate(8, &b), KR_OK);
    assert_int_equal(a.key_id, 7);
    assert_int_equal(b.key_id, 8);
    assert_memory_not_equal(a.pk, b.pk, KR_PUBKEY_LEN);
    assert_memory_not_equal(a.sk, b.sk, KR_SECKEY_LEN);
    /* libsodium's secret key is seed || pk, and it signs for pk. */
    assert_memory_equal(a.sk + 32, a.pk, KR_PUBKEY_LEN);
    uint8_t sig[crypto_sign_BYTES];
    const uint8_t msg[] = "hello";
    assert_int_equal(crypto_sign_detached(sig, NULL, msg, sizeof msg, a.sk), 0);
    assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof msg, a.pk), 0);
    assert_int_not_equal(crypto_sign_verify_detached(sig, msg, sizeof msg, b.pk), 0);
    kr_key_wipe(&a);
    kr_key_wipe(&b);
}

static void test_save_load_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct kr_signing_key k, got;
    char path[PATH_CAP], text[TEXT_MAX], want[TEXT_MAX];
    struct stat st;

    assert_int_equal(kr_key_generate(1, &k), KR_OK);
    assert_int_equal(kr_key_save(f->dir, &k), KR_OK);

    /* The files and their modes. */
    snprintf(path, sizeof path, "%s/keys", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    key_path(path, f->dir, 1, "key");
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Exactly the documented text: magic, base64 of the seed, newline. */
    slurp(path, text, sizeof text);
    key_text(want, sizeof want, k.sk, SEED_LEN);
    assert_string_equal(text, want);
    key_path(path, f->dir, 1, "pub");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    slurp(path, text, sizeof text);
    char b64[KR_PUBKEY_B64_LEN];
    sodium_bin2base64(b64, sizeof b64, k.pk, KR_PUBKEY_LEN, sodium_base64_VARIANT_ORIGINAL);
    snprintf(want, sizeof want, "%s\n", b64);
    assert_string_equal(text, want);

    /* Loading gives back the same pair. */
    memset(&got, 0, sizeof got);
    assert_int_equal(kr_key_load(f->dir, 1, &got), KR_OK);
    assert_int_equal(got.key_id, 1);
    assert_memory_equal(got.pk, k.pk, KR_PUBKEY_LEN);
    assert_memory_equal(got.sk, k.sk, KR_SECKEY_LEN);
    uint8_t pk[KR_PUBKEY_LEN];
    assert_int_equal(kr_pubkey_load(f->dir, 1, pk), KR_OK);
    assert_memory_equal(pk, k.pk, KR_PUBKEY_LEN);

    /* A second key lives next to the first; ids are not mixed up. */
    struct kr_signing_key k2, got2;
    assert_int_equal(kr_key_generate(2, &k2), KR_OK);
    assert_int_equal(kr_key_save(f->dir, &k2), KR_OK);
    assert_int_equal(kr_key_load(f->dir, 2, &got2), KR_OK);
    assert_int_equal(got2.key_id, 2);
    assert_memory_equal(got2.pk, k2.pk, KR_PUBKEY_LEN);
    assert_int_equal(kr_key_load(f->dir, 1, &got), KR_OK);
    assert_memory_equal(got.pk, k.pk, KR_PUBKEY_LEN);

    /* The largest id has a file name like any other. */
    struct kr_signing_key kmax, gmax;
    assert_int_equal(kr_key_generate(UINT32_MAX, &kmax), KR_OK);
    assert_int_equal(kr_key_save(f->dir, &kmax), KR_OK);
    snprintf(path, sizeof path, "%s/keys/journal-4294967295.key", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(kr_key_load(f->dir, UINT32_MAX, &gmax), KR_OK);
    assert_memory_equal(gmax.sk, kmax.sk, KR_SECKEY_LEN);

    kr_key_wipe(&k);
    kr_key_wipe(&got);
    kr_key_wipe(&k2);
    kr_key_wipe(&got2);
    kr_key_wipe(&kmax);
    kr_key_wipe(&gmax);
}

/* A key file written here from a known seed loads to that seed's key pair. */
static void test_load_known_seed(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[SEED_LEN], pk[KR_PUBKEY_LEN], sk[KR_SECKEY_LEN];
    char text[TEXT_MAX];
    seed_fill(seed, 9);
    assert_int_equal(crypto_sign_seed_keypair(pk, sk, seed), 0);
    key_text(text, sizeof text, seed, SEED_LEN);
    write_key_file(f->dir, 5, "key", text, strlen(text), 0600);
    struct kr_signing_key k;
    assert_int_equal(kr_key_load(f->dir, 5, &k), KR_OK);
    assert_int_equal(k.key_id, 5);
    assert_memory_equal(k.pk, pk, KR_PUBKEY_LEN);
    assert_memory_equal(k.sk, sk, KR_SECKEY_LEN);
    kr_key_wipe(&k);
    /* Owner-only modes other than 0600 are fine. */
    write_key_file(f->dir, 5, "key", text, strlen(text), 0400);
    assert_int_equal(kr_key_load(f->dir, 5, &k), KR_OK);
    assert_memory_equal(k.pk, pk, KR_PUBKEY_LEN);
    kr_key_wipe(&k);
}

static void test_save_twice(void **state)
{
    struct fixture *f = *state;
    struct kr_signing_key k, other, got;
    char path[PATH_CAP], before[TEXT_MAX], after[TEXT_MAX];
    assert_int_equal(kr_key_generate(3, &k), KR_OK);
    assert_int_equal(kr_key_save(f->dir, &k), KR_OK);
    key_path(path, f->dir, 3, "key");
    slurp(path, before, sizeof before);
    assert_int_equal(kr_key_save(f->dir, &k), KR_EEXIST);
    /* Another key under the same id does not replace the first. */
    assert_int_equal(kr_key_generate(3, &other), KR_OK);
    assert_int_equal(kr_key_save(f->dir, &other), KR_EEXIST);
    slurp(path, after, sizeof after);
    assert_string_equal(before, after);
    assert_int_equal(kr_key_load(f->dir, 3, &got), KR_OK);
    assert_memory_equal(got.pk, k.pk, KR_PUBKEY_LEN);
    uint8_t pk[KR_PUBKEY_LEN];
    assert_int_equal(kr_pubkey_load(f->dir, 3, pk), KR_OK);
    assert_memory_equal(pk, k.pk, KR_PUBKEY_LEN);
    kr_key_wipe(&k);
    kr_key_wipe(&other);
    kr_key_wipe(&got);
}

static void test_load_missing(void **state)
{
    struct fixture *f = *state;
    struct kr_signing_key k;
    uint8_t pk[KR_PUBKEY_LEN];
    /* No keys directory at all, then an empty one. */
    assert_int_equal(kr_key_load(f->dir, 1, &k), KR_ENOTFOUND);
    assert_int_equal(kr_pubkey_load(f->dir, 1, pk), KR_ENOTFOUND);
    mkdir_keys(f->dir);
    assert_int_equal(kr_key_load(f->dir, 1, &k), KR_ENOTFOUND);
    assert_int_equal(kr_pubkey_load(f->dir, 1, pk), KR_ENOTFOUND);
    /* A data directory that does not exist cannot take a key. */
    char missing[PATH_CAP + 16];
    snprintf(missing, sizeof missing, "%s/nope/deeper", f->dir);
    assert_int_equal(kr_key_generate(1, &k), KR_OK);
    assert_int_equal(kr_key_save(missing, &k), KR_ENOTFOUND);
    kr_key_wipe(&k);
}

static void test_load_refuses_open_modes(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[SEED_LEN];
    char text[TEXT_MAX];
    seed_fill(seed, 1);
    key_text(text, sizeof text, seed, SEED_LEN);
    static const mode_t bad[] = {0640, 0604, 0660, 0644, 0666, 0620, 0602, 0610, 0601, 0700 | 07};
    struct kr_signing_key k;
    for (size_t i = 0; i < COUNT(bad); i++) {
        write_key_file(f->dir, 1, "key", text, strlen(text), bad[i]);
        kr_err err = kr_key_load(f->dir, 1, &k);
        if (err != KR_EKEY)
            fail_msg("mode %04o: got %s", (unsigned)bad[i], kr_strerror(err));
    }
    /* Back to 0600 it loads: the refusals were about the mode alone. */
    write_key_file(f->dir, 1, "key", text, strlen(text), 0600);
    assert_int_equal(kr_key_load(f->dir, 1, &k), KR_OK);
    kr_key_wipe(&k);
}

static void test_load_refuses_symlink(void **state)
{
    struct fixture *f = *state;
    struct kr_signing_key k, got;
    char target[PATH_CAP], link[PATH_CAP];
    assert_int_equal(kr_key_generate(1, &k), KR_OK);
    assert_int_equal(kr_key_save(f->dir, &k), KR_OK);
    /* journal-2.key -> journal-1.key, a valid 0600 key file. */
    key_path(target, f->dir, 1, "key");
    key_path(link, f->dir, 2, "key");
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(kr_key_load(f->dir, 2, &got), KR_EKEY);
    /* A relative link, and a dangling one. */
    unlink(link);
    assert_int_equal(symlink("journal-1.key", link), 0);
    assert_int_equal(kr_key_load(f->dir, 2, &got), KR_EKEY);
    unlink(link);
    assert_int_equal(symlink("/nonexistent/journal.key", link), 0);
    assert_int_equal(kr_key_load(f->dir, 2, &got), KR_EKEY);
    /* The target itself is fine. */
    assert_int_equal(kr_key_load(f->dir, 1, &got), KR_OK);
    kr_key_wipe(&k);
    kr_key_wipe(&got);
}

static void test_load_refuses_non_files(void **state)
{
    struct fixture *f = *state;
    struct kr_signing_key k;
    char path[PATH_CAP];
    mkdir_keys(f->dir);
    /* A directory where the key file should be. */
    key_path(path, f->dir, 1, "key");
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(kr_key_load(f->dir, 1, &k), KR_EKEY);
    /* A FIFO: refused, without waiting for a writer that never comes. */
    key_path(path, f->dir, 2, "key");
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(10);
    assert_int_equal(kr_key_load(f->dir, 2, &k), KR_EKEY);
    alarm(0);
}

static void expect_corrupt(const char *dir, const void *data, size_t len, const char *what)
{
    struct kr_signing_key k;
    write_key_file(dir, 1, "key", data, len, 0600);
    kr_err err = kr_key_load(dir, 1, &k);
    if (err != KR_ECORRUPT)
        fail_msg("%s: got %s", what, kr_strerror(err));
}

static void test_load_malformed(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[40];
    char b64[128], good[TEXT_MAX], text[TEXT_MAX];
    for (size_t i = 0; i < sizeof seed; i++)
        seed[i] = (uint8_t)(0x40 + i);
    key_text(good, sizeof good, seed, SEED_LEN);
    sodium_bin2base64(b64, sizeof b64, seed, SEED_LEN, sodium_base64_VARIANT_ORIGINAL);

    /* Control: the good text loads. */
    struct kr_signing_key k;
    write_key_file(f->dir, 1, "key", good, strlen(good), 0600);
    assert_int_equal(kr_key_load(f->dir, 1, &k), KR_OK);
    kr_key_wipe(&k);

    expect_corrupt(f->dir, "", 0, "empty file");
    expect_corrupt(f->dir, MAGIC, strlen(MAGIC), "magic only");
    expect_corrupt(f->dir, "\n", 1, "newline only");

    snprintf(text, sizeof text, "kiroku-journal-key 2\n%s\n", b64);
    expect_corrupt(f->dir, text, strlen(text), "format 2");
    snprintf(text, sizeof text, "Kiroku-journal-key 1\n%s\n", b64);
    expect_corrupt(f->dir, text, strlen(text), "magic case");
    snprintf(text, sizeof text, "kiroku-journal-key 1 %s\n", b64);
    expect_corrupt(f->dir, text, strlen(text), "magic without newline");
    snprintf(text, sizeof text, "%s\n", b64);
    expect_corrupt(f->dir, text, strlen(text), "no magic");

    /* The seed: bad characters, wrong sizes, wrong variant, no padding. */
    snprintf(text, sizeof text, MAGIC "%s\n", b64);
    text[strlen(MAGIC) + 5] = '!';
    expect_corrupt(f->dir, text, strlen(text), "bad base64 character");
    snprintf(text, sizeof text, MAGIC "%.43s\n", b64);
    expect_corrupt(f->dir, text, strlen(text), "missing padding");
    snprintf(text, sizeof text, MAGIC "%.40s\n", b64);
    expect_corrupt(f->dir, text, strlen(text), "truncated base64");
    key_text(text, sizeof text, seed, 31);
    expect_corrupt(f->dir, text, strlen(text), "31-byte seed");
    key_text(text, sizeof text, seed, 16);
    expect_corrupt(f->dir, text, strlen(text), "16-byte seed");
    key_text(text, sizeof text, seed, 33);
    expect_corrupt(f->dir, text, strlen(text), "33-byte seed");
    key_text(text, sizeof text, seed, 0);
    expect_corrupt(f->dir, text, strlen(text), "empty seed");
    char url[128];
    uint8_t ff[SEED_LEN];
    memset(ff, 0xfb, sizeof ff); /* base64 full of '+' and '/' */
    sodium_bin2base64(url, sizeof url, ff, sizeof ff, sodium_base64_VARIANT_URLSAFE);
    snprintf(text, sizeof text, MAGIC "%s\n", url);
    expect_corrupt(f->dir, text, strlen(text), "URL-safe base64");

    /* What surrounds the seed. */
    snprintf(text, sizeof text, MAGIC "%s", b64);
    expect_corrupt(f->dir, text, strlen(text), "no final newline");
    snprintf(text, sizeof text, MAGIC "%s\r\n", b64);
    expect_corrupt(f->dir, text, strlen(text), "CRLF");
    snprintf(text, sizeof text, MAGIC "%s\n\n", b64);
    expect_corrupt(f->dir, text, strlen(text), "extra newline");
    snprintf(text, sizeof text, MAGIC "%s\njunk\n", b64);
    expect_corrupt(f->dir, text, strlen(text), "trailing line");
    snprintf(text, sizeof text, MAGIC "%s \n", b64);
    expect_corrupt(f->dir, text, strlen(text), "space before newline");
    snprintf(text, sizeof text, MAGIC " %s\n", b64);
    expect_corrupt(f->dir, text, strlen(text), "space before seed");
    snprintf(text, sizeof text, MAGIC "%.20s\n%s\n", b64, b64 + 20);
    expect_corrupt(f->dir, text, strlen(text), "seed split over lines");
    /* Junk hidden behind a NUL byte is still junk. */
    size_t n = strlen(good);
    memcpy(text, good, n);
    memcpy(text + n, "\0junk", 5);
    expect_corrupt(f->dir, text, n + 5, "NUL and junk after the key");
    memcpy(text, good, n);
    text[n] = '\0';
    expect_corrupt(f->dir, text, n + 1, "NUL after the key");
    /* A file much larger than any key file. */
    char big[4096];
    memcpy(big, good, n);
    memset(big + n, 'A', sizeof big - n);
    expect_corrupt(f->dir, big, sizeof big, "oversized file");
}

static void test_pubkey_load_malformed(void **state)
{
    struct fixture *f = *state;
    uint8_t pk[KR_PUBKEY_LEN], got[KR_PUBKEY_LEN];
    char b64[KR_PUBKEY_B64_LEN], text[TEXT_MAX];
    for (size_t i = 0; i < sizeof pk; i++)
        pk[i] = (uint8_t)(200 - i);
    kr_pubkey_to_b64(pk, b64);
    snprintf(text, sizeof text, "%s\n", b64);
    write_key_file(f->dir, 4, "pub", text, strlen(text), 0644);
    assert_int_equal(kr_pubkey_load(f->dir, 4, got), KR_OK);
    assert_memory_equal(got, pk, KR_PUBKEY_LEN);
    static const char *bad[] = {"", "\n", "AAAA\n", "not base64 at all\n"};
    for (size_t i = 0; i < COUNT(bad); i++) {
        write_key_file(f->dir, 4, "pub", bad[i], strlen(bad[i]), 0644);
        assert_int_equal(kr_pubkey_load(f->dir, 4, got), KR_ECORRUPT);
    }
    snprintf(text, sizeof text, "%s\nextra\n", b64);
    write_key_file(f->dir, 4, "pub", text, strlen(text), 0644);
    assert_int_equal(kr_pubkey_load(f->dir, 4, got), KR_ECORRUPT);
    /* A public key symlinked elsewhere is refused like a secret one. */
    char target[PATH_CAP], link[PATH_CAP];
    snprintf(text, sizeof text, "%s\n", b64);
    write_key_file(f->dir, 4, "pub", text, strlen(text), 0644);
    key_path(target, f->dir, 4, "pub");
    key_path(link, f->dir, 6, "pub");
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(kr_pubkey_load(f->dir, 6, got), KR_EKEY);
    /* Junk behind a NUL byte. */
    size_t n = strlen(text);
    memcpy(text + n, "\0junk", 5);
    write_key_file(f->dir, 4, "pub", text, n + 5, 0644);
    assert_int_equal(kr_pubkey_load(f->dir, 4, got), KR_ECORRUPT);
}

static void test_pubkey_b64(void **state)
{
    (void)state;
    uint8_t pk[KR_PUBKEY_LEN], got[KR_PUBKEY_LEN];
    char b64[KR_PUBKEY_B64_LEN], text[128];

    /* Known answers. */
    memset(pk, 0, sizeof pk);
    memset(b64, 'x', sizeof b64);
    kr_pubkey_to_b64(pk, b64);
    assert_string_equal(b64, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    memset(pk, 0xff, sizeof pk);
    kr_pubkey_to_b64(pk, b64);
    assert_string_equal(b64, "//////////////////////////////////////////8=");
    assert_int_equal(strlen(b64), KR_PUBKEY_B64_LEN - 1);

    /* Round trips of random keys. */
    for (int i = 0; i < 64; i++) {
        randombytes_buf(pk, sizeof pk);
        kr_pubkey_to_b64(pk, b64);
        assert_int_equal(strlen(b64), 44);
        memset(got, 0, sizeof got);
        assert_int_equal(kr_pubkey_from_b64(b64, got), KR_OK);
        assert_memory_equal(got, pk, KR_PUBKEY_LEN);
    }

    /* Surrounding whitespace is allowed. */
    for (size_t i = 0; i < sizeof pk; i++)
        pk[i] = (uint8_t)(i * 13);
    kr_pubkey_to_b64(pk, b64);
    static const char *wrap[][2] = {{"", "\n"},   {" ", ""},        {"\t", "\r\n"},
                                    {"\n\n", ""}, {"  ", "  \n  "}, {"", "\t"}};
    for (size_t i = 0; i < COUNT(wrap); i++) {
        snprintf(text, sizeof text, "%s%s%s", wrap[i][0], b64, wrap[i][1]);
        memset(got, 0, sizeof got);
        assert_int_equal(kr_pubkey_from_b64(text, got), KR_OK);
        assert_memory_equal(got, pk, KR_PUBKEY_LEN);
    }

    /* Not exactly 32 bytes of standard padded base64. */
    uint8_t longer[33];
    memset(longer, 7, sizeof longer);
    char b31[64], b33[64], url[64];
    sodium_bin2base64(b31, sizeof b31, longer, 31, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(b33, sizeof b33, longer, 33, sodium_base64_VARIANT_ORIGINAL);
    memset(pk, 0xfb, sizeof pk);
    sodium_bin2base64(url, sizeof url, pk, sizeof pk, sodium_base64_VARIANT_URLSAFE);
    char nopad[64], trunc[64], junk[80], extra[80], twice[128];
    kr_pubkey_to_b64(pk, b64);
    snprintf(nopad, sizeof nopad, "%.43s", b64);
    snprintf(trunc, sizeof trunc, "%.40s", b64);
    snprintf(junk, sizeof junk, "%s x", b64);
    snprintf(extra, sizeof extra, "%s=", b64);
    snprintf(twice, sizeof twice, "%s%s", b64, b64);
    const char *bad[] = {
        "",
        " ",
        "\n",
        "=",
        "!",
        "AAAA",
        "A===",
        b31,
        b33,
        url,
        nopad,
        trunc,
        junk,
        extra,
        twice,
        /* the zero key with set bits in the last character's unused bits */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
        /* 31 bytes with double padding; the zero key with a character after the padding */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=A",
    };
    for (size_t i = 0; i < COUNT(bad); i++) {
        kr_err err = kr_pubkey_from_b64(bad[i], got);
        if (err != KR_EINVAL)
            fail_msg("\"%s\": got %s", bad[i], kr_strerror(err));
    }
}

static void test_wipe(void **state)
{
    (void)state;
    struct kr_signing_key k;
    uint8_t zero[KR_SECKEY_LEN], pk[KR_PUBKEY_LEN];
    memset(zero, 0, sizeof zero);
    assert_int_equal(kr_key_generate(9, &k), KR_OK);
    assert_memory_not_equal(k.sk, zero, KR_SECKEY_LEN);
    memcpy(pk, k.pk, sizeof pk);
    kr_key_wipe(&k);
    assert_memory_equal(k.sk, zero, KR_SECKEY_LEN);
    /* The public half and the id are not secret and stay. */
    assert_memory_equal(k.pk, pk, KR_PUBKEY_LEN);
    assert_int_equal(k.key_id, 9);
    kr_key_wipe(NULL);
    /* A wiped key that is wiped again stays zero. */
    kr_key_wipe(&k);
    assert_memory_equal(k.sk, zero, KR_SECKEY_LEN);
}

static void test_long_dir(void **state)
{
    (void)state;
    char dir[KR_PATH_MAX + 64];
    memset(dir, 'd', sizeof dir - 1);
    dir[0] = '/';
    dir[sizeof dir - 1] = '\0';
    struct kr_signing_key k;
    uint8_t pk[KR_PUBKEY_LEN];
    assert_int_equal(kr_key_generate(1, &k), KR_OK);
    assert_int_equal(kr_key_save(dir, &k), KR_ETOOLARGE);
    assert_int_equal(kr_key_load(dir, 1, &k), KR_ETOOLARGE);
    assert_int_equal(kr_pubkey_load(dir, 1, pk), KR_ETOOLARGE);
    kr_key_wipe(&k);
}

/* Keys a process keeps live in sodium_malloc'd memory: zeroed, usable, and
 * the guarded allocation can be made read-only and inaccessible (mprotect on
 * its own pages, which ordinary heap memory does not have). */
static void test_keys_in_guarded_memory(void **state)
{
    (void)state;
    struct kr_signing_key *k = kr_keys_alloc(KR_KEYS_MAX);
    assert_non_null(k);
    static const uint8_t zero[KR_SECKEY_LEN];
    assert_memory_equal(k[KR_KEYS_MAX - 1].sk, zero, sizeof zero);
    assert_int_equal(kr_key_generate(7, &k[KR_KEYS_MAX - 1]), KR_OK);
    assert_int_equal(sodium_mprotect_readonly(k), 0);
    assert_int_equal(k[KR_KEYS_MAX - 1].key_id, 7);
    assert_int_equal(sodium_mprotect_noaccess(k), 0);
    assert_int_equal(sodium_mprotect_readwrite(k), 0);
    kr_keys_free(k);
    kr_keys_free(NULL);
    assert_null(kr_keys_alloc(0));
}

/* The one writer of replaceable secret files: over an old file (mode 0644),
 * the new bytes, exactly the mode asked for whatever the umask, no temporary
 * left; a stale temporary is no obstacle; a symlink at the temporary's name
 * is removed, not followed. */
/* kr_file_read_bounded: the whole file within its bound; a file over it, a
 * missing one, a symlink, a directory and a FIFO (which must not block) are
 * refused. */
static void test_file_read_bounded(void **state)
{
    struct fixture *f = *state;
    char path[PATH_CAP], other[PATH_CAP];
    uint8_t *buf;
    size_t len;
    snprintf(path, sizeof path, "%s/state", f->dir);
    assert_int_equal(kr_file_write_new(path, "a\0b", 3, 0644), KR_OK);
    assert_int_equal(kr_file_read_bounded(path, 3, &buf, &len), KR_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "a\0b", 3);
    free(buf);
    assert_int_equal(kr_file_read_bounded(path, 2, &buf, &len), KR_ETOOLARGE);
    assert_null(buf);
    snprintf(other, sizeof other, "%s/none", f->dir);
    assert_int_equal(kr_file_read_bounded(other, 64, &buf, &len), KR_ENOTFOUND);
    snprintf(other, sizeof other, "%s/link", f->dir);
    assert_int_equal(symlink(path, other), 0);
    assert_int_equal(kr_file_read_bounded(other, 64, &buf, &len), KR_EIO);
    assert_int_equal(kr_file_read_bounded(f->dir, 64, &buf, &len), KR_EIO);
    snprintf(other, sizeof other, "%s/fifo", f->dir);
    assert_int_equal(mkfifo(other, 0600), 0);
    assert_int_equal(kr_file_read_bounded(other, 64, &buf, &len), KR_EIO);
    /* An empty file is read as empty. */
    snprintf(other, sizeof other, "%s/empty", f->dir);
    assert_int_equal(kr_file_write_new(other, "", 0, 0644), KR_OK);
    assert_int_equal(kr_file_read_bounded(other, 64, &buf, &len), KR_OK);
    assert_int_equal(len, 0);
    free(buf);
}

static void test_file_replace(void **state)
{
    struct fixture *f = *state;
    char path[PATH_CAP], tmp[PATH_CAP + 8], out[64], victim[PATH_CAP];
    snprintf(path, sizeof path, "%s/server.key", f->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(victim, sizeof victim, "%s/victim", f->dir);
    assert_int_equal(kr_file_write_new(path, "old", 3, 0644), KR_OK);
    assert_int_equal(kr_file_write_new(tmp, "stale", 5, 0644), KR_OK);
    mode_t old = umask(0);
    assert_int_equal(kr_file_replace(path, "secret", 6, 0600), KR_OK);
    umask(old);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(kr_file_read_small(path, out, sizeof out, true), KR_OK);
    assert_string_equal(out, "secret");
    assert_int_equal(access(tmp, F_OK), -1);

    assert_int_equal(kr_file_write_new(victim, "v", 1, 0600), KR_OK);
    assert_int_equal(symlink(victim, tmp), 0);
    assert_int_equal(kr_file_replace(path, "again", 5, 0600), KR_OK);
    assert_int_equal(kr_file_read_small(victim, out, sizeof out, true), KR_OK);
    assert_string_equal(out, "v");
    assert_int_equal(kr_file_read_small(path, out, sizeof out, true), KR_OK);
    assert_string_equal(out, "again");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_generate),
        T(test_keys_in_guarded_memory),
        T(test_file_replace),
        T(test_file_read_bounded),
        T(test_save_load_roundtrip),
        T(test_load_known_seed),
        T(test_save_twice),
        T(test_load_missing),
        T(test_load_refuses_open_modes),
        T(test_load_refuses_symlink),
        T(test_load_refuses_non_files),
        T(test_load_malformed),
        T(test_pubkey_load_malformed),
        T(test_pubkey_b64),
        T(test_wipe),
        T(test_long_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
