/*
 * keys.c: Ed25519 signing keys (libsodium) and their files in the data
 * directory. Only the 32-byte seed is stored; the key pair is derived on load.
 * Secrets are wiped from every buffer that held them.
 */
#include "keys.h"

#include "path.h"

#include "b64.h"

#include "kr_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_MAGIC "kiroku-journal-key 1\n"
#define SEED_LEN  32
/* Key file: magic, base64 seed (44 chars), newline. */
#define KEY_FILE_MAX 128

static kr_err key_path(char *out, size_t cap, const char *dir, uint32_t id, const char *ext)
{
    int n = snprintf(out, cap, "%s/keys/journal-%u.%s", dir, id, ext);
    if (n < 0 || (size_t)n >= cap)
        return KR_ETOOLARGE;
    return KR_OK;
}

kr_err kr_key_generate(uint32_t key_id, struct kr_signing_key *out)
{
    if (sodium_init() < 0)
        return KR_ECRYPTO;
    out->key_id = key_id;
    if (crypto_sign_keypair(out->pk, out->sk) != 0)
        return KR_ECRYPTO;
    return KR_OK;
}

void kr_key_remove(const char *dir, uint32_t key_id)
{
    char path[KR_PATH_MAX];
    if (key_path(path, sizeof path, dir, key_id, "key") == KR_OK)
        unlink(path);
    if (key_path(path, sizeof path, dir, key_id, "pub") == KR_OK)
        unlink(path);
}

struct kr_signing_key *kr_keys_alloc(size_t n)
{
    if (n == 0 || n > SIZE_MAX / sizeof(struct kr_signing_key))
        return NULL;
    struct kr_signing_key *k = sodium_allocarray(n, sizeof *k);
    if (k)
        sodium_memzero(k, n * sizeof *k);
    return k;
}

void kr_keys_free(struct kr_signing_key *keys)
{
    sodium_free(keys); /* wipes before it frees */
}

void kr_key_wipe(struct kr_signing_key *k)
{
    if (k)
        sodium_memzero(k->sk, sizeof k->sk);
}

void kr_pubkey_to_b64(const uint8_t pk[KR_PUBKEY_LEN], char out[KR_PUBKEY_B64_LEN])
{
    sodium_bin2base64(out, KR_PUBKEY_B64_LEN, pk, KR_PUBKEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

kr_err kr_pubkey_from_b64(const char *s, uint8_t pk[KR_PUBKEY_LEN])
{
    size_t len = strlen(s), n = 0;
    while (len > 0 &&
           (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' || s[len - 1] == '\n'))
        len--;
    while (len > 0 && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
        s++;
        len--;
    }
    if (kr_b64_decode(pk, KR_PUBKEY_LEN, s, len, &n) != KR_OK || n != KR_PUBKEY_LEN)
        return KR_EINVAL;
    return KR_OK;
}

kr_err kr_file_write_new(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return kr_err_from_errno(errno);
    kr_err err = KR_OK;
    if (fchmod(fd, mode) != 0) /* exactly mode, whatever the umask */
        err = kr_err_from_errno(errno);
    const char *p = data;
    size_t left = err ? 0 : len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = kr_err_from_errno(errno ? errno : EIO);
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (err == KR_OK && fsync(fd) != 0)
        err = kr_err_from_errno(errno);
    close(fd);
    if (err)
        unlink(path);
    return err;
}

kr_err kr_file_replace(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[KR_PATH_MAX + 8];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return KR_ETOOLARGE;
    if (unlink(tmp) != 0 && errno != ENOENT)
        return kr_err_from_errno(errno);
    kr_err err = kr_file_write_new(tmp, data, len, mode);
    if (err)
        return err;
    if (rename(tmp, path) != 0) {
        err = kr_err_from_errno(errno);
        unlink(tmp);
    }
    return err;
}

kr_err kr_key_save(const char *dir, const struct kr_signing_key *k)
{
    char path[KR_PATH_MAX];
    char text[KEY_FILE_MAX];
    char b64[KR_PUBKEY_B64_LEN];
    kr_err err;

    if ((err = kr_path_join(path, sizeof path, dir, "keys")))
        return err;
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return kr_err_from_errno(errno);

    /* The seed is the first half of libsodium's 64-byte secret key. */
    char seed_b64[sodium_base64_ENCODED_LEN(SEED_LEN, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(seed_b64, sizeof seed_b64, k->sk, SEED_LEN, sodium_base64_VARIANT_ORIGINAL);
    snprintf(text, sizeof text, "%s%s\n", KEY_MAGIC, seed_b64);
    sodium_memzero(seed_b64, sizeof seed_b64);
    if ((err = key_path(path, sizeof path, dir, k->key_id, "key")) == KR_OK)
        err = kr_file_write_new(path, text, strlen(text), 0600);
    sodium_memzero(text, sizeof text);
    if (err)
        return err;

    kr_pubkey_to_b64(k->pk, b64);
    char pub[KR_PUBKEY_B64_LEN + 1];
    snprintf(pub, sizeof pub, "%s\n", b64);
    if ((err = key_path(path, sizeof path, dir, k->key_id, "pub")) ||
        (err = kr_file_write_new(path, pub, strlen(pub), 0644)))
        return err;
    /* The new names must survive a power loss too: a record naming this key
     * may commit right after we return. */
    if ((err = kr_path_join(path, sizeof path, dir, "keys")))
        return err;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return kr_err_from_errno(errno);
    err = fsync(dfd) == 0 ? KR_OK : kr_err_from_errno(errno);
    close(dfd);
    return err;
}

kr_err kr_file_read_small(const char *path, char *buf, size_t cap, bool private_only)
{
    /* O_NONBLOCK: a FIFO in place of a key file is refused below instead of
     * blocking the open until some writer appears. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ELOOP ? KR_EKEY : kr_err_from_errno(errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return kr_err_from_errno(e);
    }
    if (!S_ISREG(st.st_mode) ||
        (private_only && ((st.st_mode & 077) != 0 || st.st_uid != geteuid()))) {
        close(fd);
        return KR_EKEY;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            sodium_memzero(buf, cap);
            return kr_err_from_errno(e);
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == cap - 1) {
            close(fd);
            sodium_memzero(buf, cap);
            return KR_ECORRUPT;
        }
    }
    close(fd);
    /* The parsers stop at a NUL: bytes hidden behind one would go unchecked. */
    if (memchr(buf, '\0', len)) {
        sodium_memzero(buf, cap);
        return KR_ECORRUPT;
    }
    buf[len] = '\0';
    return KR_OK;
}

kr_err kr_key_load(const char *dir, uint32_t key_id, struct kr_signing_key *out)
{
    char path[KR_PATH_MAX];
    char text[KEY_FILE_MAX];
    uint8_t seed[SEED_LEN];
    size_t n = 0;
    kr_err err;

    if (sodium_init() < 0)
        return KR_ECRYPTO;
    if ((err = key_path(path, sizeof path, dir, key_id, "key")))
        return err;
    if ((err = kr_file_read_small(path, text, sizeof text, true)))
        return err;
    err = KR_ECORRUPT;
    if (strncmp(text, KEY_MAGIC, strlen(KEY_MAGIC)) == 0) {
        const char *b = text + strlen(KEY_MAGIC);
        size_t blen = strlen(b);
        if (blen >= 1 && b[blen - 1] == '\n' &&
            kr_b64_decode(seed, sizeof seed, b, blen - 1, &n) == KR_OK && n == SEED_LEN) {
            out->key_id = key_id;
            err = crypto_sign_seed_keypair(out->pk, out->sk, seed) == 0 ? KR_OK : KR_ECRYPTO;
        }
    }
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(text, sizeof text);
    return err;
}

kr_err kr_pubkey_load(const char *dir, uint32_t key_id, uint8_t pk[KR_PUBKEY_LEN])
{
    char path[KR_PATH_MAX];
    char text[KEY_FILE_MAX] = "";
    kr_err err;
    if ((err = key_path(path, sizeof path, dir, key_id, "pub")))
        return err;
    if ((err = kr_file_read_small(path, text, sizeof text, false)))
        return err;
    return kr_pubkey_from_b64(text, pk) == KR_OK ? KR_OK : KR_ECORRUPT;
}

kr_err kr_file_read_bounded(const char *path, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? KR_ENOTFOUND : KR_EIO;
    struct stat st;
    kr_err err = KR_OK;
    uint8_t *buf = NULL;
    size_t n = 0, got = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        err = KR_EIO;
    else if ((uint64_t)st.st_size > max)
        err = KR_ETOOLARGE;
    else if (!(buf = malloc((n = (size_t)st.st_size) ? n : 1)))
        err = KR_ENOMEM;
    while (!err && got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            err = KR_EIO;
        else
            got += (size_t)r;
    }
    close(fd);
    if (err) {
        free(buf);
        return err;
    }
    *out = buf;
    *len = n;
    return KR_OK;
}
