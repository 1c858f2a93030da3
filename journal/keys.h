/*
 * keys.h: the journal's Ed25519 signing keys and their files.
 *
 * A signing key lives in DIR/keys/journal-<id>.key, mode 0600, as text:
 *   "kiroku-journal-key 1\n<base64 of the 32-byte Ed25519 seed>\n"
 * Its public half is in DIR/keys/journal-<id>.pub as "<base64 public key>\n",
 * which is all an auditor needs. Loading refuses a key file that group or
 * others can read or write (KR_EKEY), as ssh does.
 */
#ifndef KR_KEYS_H
#define KR_KEYS_H

#include "kr_error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KR_PUBKEY_LEN 32
#define KR_SECKEY_LEN 64
/* base64 (standard, padded) of a 32-byte key, with NUL. */
#define KR_PUBKEY_B64_LEN 45

/* A signing key pair; caller-owned. Wipe with kr_key_wipe when done. */
struct kr_signing_key {
    uint32_t key_id;
    uint8_t pk[KR_PUBKEY_LEN];
    uint8_t sk[KR_SECKEY_LEN];
};

/* Makes a new random key pair with the given id. */
KR_MUST_CHECK kr_err kr_key_generate(uint32_t key_id, struct kr_signing_key *out);

/* Writes the key and public key files under dir/keys (created, mode 0700, if
 * missing). The key file is created with O_EXCL and mode 0600 and synced;
 * KR_EEXIST if it exists already. */
KR_MUST_CHECK kr_err kr_key_save(const char *dir, const struct kr_signing_key *k);

/* Reads key `key_id` from dir/keys. KR_ENOTFOUND if absent, KR_EKEY if its mode
 * lets anyone but the owner in, KR_ECORRUPT if malformed. */
KR_MUST_CHECK kr_err kr_key_load(const char *dir, uint32_t key_id, struct kr_signing_key *out);

/* Reads the public key of `key_id` from dir/keys/journal-<id>.pub. */
KR_MUST_CHECK kr_err kr_pubkey_load(const char *dir, uint32_t key_id, uint8_t pk[KR_PUBKEY_LEN]);

/* Standard padded base64 of a public key into out (KR_PUBKEY_B64_LEN bytes). */
void kr_pubkey_to_b64(const uint8_t pk[KR_PUBKEY_LEN], char out[KR_PUBKEY_B64_LEN]);

/* Parses a base64 public key (surrounding whitespace allowed). KR_EINVAL if it
 * is not exactly 32 bytes of base64. */
KR_MUST_CHECK kr_err kr_pubkey_from_b64(const char *s, uint8_t pk[KR_PUBKEY_LEN]);

/* Removes the key and public key files of key_id (missing ones are fine). For
 * a key no record names yet, e.g. one left by a rotation that never committed. */
void kr_key_remove(const char *dir, uint32_t key_id);

/* Erases the secret half. Accepts NULL. */
void kr_key_wipe(struct kr_signing_key *k);

/* An array of n zeroed keys in sodium_malloc'd memory (guard pages, mlocked
 * where the system allows, canary), for keys a process keeps: NULL on
 * failure. Free with kr_keys_free, which wipes them. */
struct kr_signing_key *kr_keys_alloc(size_t n);
/* Wipes and frees an array from kr_keys_alloc. Accepts NULL. */
void kr_keys_free(struct kr_signing_key *keys);

/* ---- Secret files (also the keystore's KEK) ---- */

/* Writes len bytes to path, created exclusively (KR_EEXIST if it exists)
 * with mode, then fsyncs; removes it again on failure. */
KR_MUST_CHECK kr_err kr_file_write_new(const char *path, const void *data, size_t len, mode_t mode);

/* Writes len bytes to path as a whole or not at all: a temporary file
 * path.tmp beside it (a stale one is removed; created exclusively, with
 * mode, never through a symlink), fsync, rename over path. The one writer of
 * secret files that may be replaced (TLS keys: `kiroku certs --force`).
 * The caller fsyncs the directory when the rename must survive a crash. */
KR_MUST_CHECK kr_err kr_file_replace(const char *path, const void *data, size_t len, mode_t mode);

/* Reads a small file whole into buf (NUL-terminated; at most cap - 1 bytes,
 * else KR_ECORRUPT). Refuses, with KR_EKEY, a symlink, a FIFO or any file
 * that is not regular, and when private_only a file readable or writable by
 * group or others or owned by another user. A NUL inside is KR_ECORRUPT
 * (parsers would stop at it). buf is wiped on failure. */
KR_MUST_CHECK kr_err kr_file_read_small(const char *path, char *buf, size_t cap, bool private_only);

/* Reads a whole regular file of at most max bytes into *out (malloc'd, the
 * caller frees it), its length in *len; for files that are not secret but
 * are hostile input (verification states). Opened without following a
 * symlink or blocking on a FIFO. Errors: KR_ENOTFOUND, KR_ETOOLARGE (over
 * max), KR_EIO (not a regular file, a symlink, a read error), KR_ENOMEM. */
KR_MUST_CHECK kr_err kr_file_read_bounded(const char *path, size_t max, uint8_t **out, size_t *len);

#endif
