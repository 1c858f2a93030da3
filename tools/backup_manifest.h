/*
 * backup_manifest.h: the signed manifest of a backup generation: what it
 * holds, the text format, writing and signing it, and reading and verifying
 * one that may be hostile (docs/backup-format.md is the same contract for
 * people).
 *
 * A manifest is UTF-8 text, one field per line, in this order, every line
 * ending in "\n" and nothing after the last:
 *
 *   kiroku-backup-manifest 1
 *   kiroku-version 0.1.0
 *   generation 2026-12-06
 *   journal-id <32 lowercase hex>
 *   origin <the journal's checkpoint origin>
 *   last-seq <decimal>
 *   time-ns <decimal, UTC nanoseconds>
 *   time-utc 2026-12-06T01:02:03Z
 *   time-jst 2026-12-06T10:02:03.000+09:00
 *   checkpoint <base64 of the signed checkpoint note at last-seq>
 *   key-record <base64 of a stored journal record>       1..KR_BACKUP_KEYRECS_MAX
 *   file <sha256 hex> <size> <mode, 4 octal digits> <path>   0..KR_BACKUP_FILES_MAX
 *   signed-by <key id>
 *   signature <base64 of the 64-byte Ed25519 signature>
 *
 * Decimals have no sign and no leading zeros; base64 is canonical padded
 * standard base64 (journal/b64.h); file paths are relative, '/'-separated,
 * of [A-Za-z0-9._-], with no empty, "." or ".." component, strictly
 * ascending (so unique), at most KR_BACKUP_PATH_MAX bytes, never "manifest".
 *
 * The signature is Ed25519 over BMF_SIGN_DOMAIN followed by every byte of
 * the manifest before the "signature " line, by the journal key named in
 * signed-by. The key records are the raw stored bytes of record 1
 * (journal.created) and of every later record of the journal's own stream
 * (journal.key_added, journal.epoch_started) up to last-seq, so a verifier
 * needs only the trusted public key of key 1, never LMDB: record 1 must name
 * that key, each later key record must be signed by the key before it, and
 * signed-by must be the newest key of that chain.
 *
 * Nothing here allocates except bmf_new; every function is reentrant.
 */
#ifndef KR_BACKUP_MANIFEST_H
#define KR_BACKUP_MANIFEST_H

#include "hash.h"
#include "keys.h"
#include "kr_error.h"
#include "kr_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BMF_MAGIC       "kiroku-backup-manifest 1\n"
#define BMF_SIGN_DOMAIN "kiroku.backup.manifest.v1\n"
#define BMF_NAME        "manifest"
#define BMF_VERSION_MAX 32u
#define BMF_GEN_MAX     63u
#define BMF_TIME_MAX    40u

struct bmf_file {
    char path[KR_BACKUP_PATH_MAX + 1];
    uint64_t size;
    uint32_t mode; /* permission bits, at most 0755, never group/other-writable */
    uint8_t sha256[KR_HASH_LEN];
};

/* A manifest, from bmf_new (key records are held whole in keybuf, up to
 * KR_BACKUP_MANIFEST_MAX bytes, allocated lazily by the system), freed with
 * bmf_free. */
struct bmf_manifest {
    char kiroku_version[BMF_VERSION_MAX + 1];
    char generation[BMF_GEN_MAX + 1];
    uint8_t journal_id[16];
    char origin[KR_ORIGIN_MAX + 1];
    uint64_t last_seq;
    uint64_t time_ns;
    char time_utc[BMF_TIME_MAX + 1];
    char time_jst[BMF_TIME_MAX + 1];
    char checkpoint[KR_NOTE_MAX + 1]; /* NUL-terminated */
    size_t checkpoint_len;
    size_t nkeyrecs;
    size_t keyrec_off[KR_BACKUP_KEYRECS_MAX]; /* record i is keybuf[off[i] .. off[i] + len[i]) */
    size_t keyrec_len[KR_BACKUP_KEYRECS_MAX];
    uint8_t *keybuf; /* KR_BACKUP_MANIFEST_MAX bytes */
    size_t keybuf_used;
    size_t nfiles;
    struct bmf_file files[KR_BACKUP_FILES_MAX];
    uint32_t signed_by;
    uint8_t sig[64];
};

/* A zeroed manifest; NULL when out of memory. */
struct bmf_manifest *bmf_new(void);
/* Appends a stored record to m's key records. KR_ETOOLARGE past the bounds. */
KR_MUST_CHECK kr_err bmf_add_keyrec(struct bmf_manifest *m, const uint8_t *rec, size_t len);
void bmf_free(struct bmf_manifest *m); /* accepts NULL */

/* Writes m as text, signed with key (whose key_id becomes signed-by), into
 * out (cap bytes), *len bytes. KR_ETOOLARGE if it does not fit; KR_EINVAL if
 * a field breaks the rules above (so a writer cannot make a manifest its
 * reader refuses). */
KR_MUST_CHECK kr_err bmf_write(struct bmf_manifest *m, const struct kr_signing_key *key, char *out,
                               size_t cap, size_t *len);

/* Parses text[0..len) strictly into m. KR_ETOOLARGE beyond
 * KR_BACKUP_MANIFEST_MAX; KR_ECORRUPT for anything else that is not exactly
 * the format, with the line and what is wrong in why (cap bytes). Checks no
 * signature: see bmf_verify. */
KR_MUST_CHECK kr_err bmf_parse(const char *text, size_t len, struct bmf_manifest *m, char *why,
                               size_t cap);

/* The public keys a verified chain names, in order. */
struct bmf_chain {
    size_t n;
    uint32_t key_id[KR_BACKUP_KEYRECS_MAX];
    uint8_t pk[KR_BACKUP_KEYRECS_MAX][KR_PUBKEY_LEN];
};

/* Verifies a parsed manifest (m from bmf_parse of text[0..len)) against the
 * trusted public key of key 1: the key chain, the signature, and the
 * checkpoint (signed by a chain key, this origin, size last-seq). KR_OK, or
 * KR_EBADSIG / KR_ECORRUPT with what failed in why, starting with
 * "manifest signature" or "manifest checkpoint". Fills *chain when not NULL
 * (it is about 40 KiB). */
KR_MUST_CHECK kr_err bmf_verify(const struct bmf_manifest *m, const char *text, size_t len,
                                const uint8_t trusted_pk[KR_PUBKEY_LEN], struct bmf_chain *chain,
                                char *why, size_t cap);

/* Only the key chain of bmf_verify (no signature, no checkpoint): for the
 * writer, to learn which key signs. */
KR_MUST_CHECK kr_err bmf_verify_chain(const struct bmf_manifest *m,
                                      const uint8_t trusted_pk[KR_PUBKEY_LEN],
                                      struct bmf_chain *chain, char *why, size_t cap);

/* The file entry named path, or NULL. */
const struct bmf_file *bmf_find(const struct bmf_manifest *m, const char *path);

/* True when name is a generation name: "YYYY-MM-DD" (a JST day). */
bool bmf_gen_name_ok(const char *name);

#endif
