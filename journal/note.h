/*
 * note.h: checkpoints as C2SP signed notes (c2sp.org/signed-note,
 * c2sp.org/tlog-checkpoint), signed with Ed25519.
 *
 * A checkpoint commits the journal to its Merkle tree at one size. In note form
 * it reads
 *
 *     kiroku/<32 hex>                               origin
 *     1234                                          tree size, decimal
 *     CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=  root hash, base64
 *
 *     — <key name> base64(key hash[4] || Ed25519 signature[64])
 *
 * and the signature covers the three body lines including the last newline.
 * Using the C2SP format lets any tlog tool or witness check our checkpoints.
 *
 * Every function here is reentrant and allocates nothing (kr_checkpoint_open
 * takes about 7 KiB of stack). They call sodium_init() themselves, which is
 * cheap once done.
 */
#ifndef KR_NOTE_H
#define KR_NOTE_H

#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "kr_error.h"
#include "kr_limits.h"

/* Ed25519 sizes, as in libsodium; repeated so callers need not include it. */
#define KR_NOTE_PK_LEN 32
#define KR_NOTE_SK_LEN 64
/* The C2SP key hash (key ID) that prefixes each signature. */
#define KR_NOTE_KEY_HASH_LEN 4

/*
 * The C2SP key hash of an Ed25519 key: the first 4 bytes of
 * SHA-256(name || 0x0A || 0x01 || pk).
 *
 * `name` is a NUL-terminated key name. kiroku's names are stricter than the
 * spec requires: 1..KR_ORIGIN_MAX bytes of printable ASCII (0x21..0x7E) other
 * than '+', so no spaces, newlines or non-ASCII.
 *
 * Returns KR_OK, or KR_EINVAL for a NULL argument or a name breaking the rule
 * above (then `out` is unchanged).
 */
KR_MUST_CHECK kr_err kr_note_key_hash(const char *name, const uint8_t pk[KR_NOTE_PK_LEN],
                                      uint8_t out[KR_NOTE_KEY_HASH_LEN]);

/* A tree head: the log's origin line, its size in leaves and its RFC 6962 root.
 * Plain value; `origin` is NUL-terminated. */
struct kr_checkpoint {
    char origin[KR_ORIGIN_MAX + 1];
    uint64_t size;
    uint8_t root[KR_HASH_LEN];
};

/*
 * Write `cp` as a signed note into out[0..cap): the body (origin, size, root,
 * each followed by "\n"), a blank line, and one signature line
 * "— key_name base64(key hash || signature)\n". out is NUL-terminated and
 * *out_len gets the note's length without the NUL (at most KR_NOTE_MAX).
 *
 * cp->origin must be 1..KR_ORIGIN_MAX bytes of valid UTF-8 without control
 * characters (bytes below 0x20). key_name follows kr_note_key_hash()'s rule.
 * sk is libsodium's 64-byte secret key (seed || pk) and must belong to pk.
 * The public half stored in sk must equal pk. The signature is not verified
 * here: the writer signs one checkpoint per commit and cannot spend a
 * verification on each; `kiroku verify` checks every kept checkpoint.
 * Nothing secret is kept.
 *
 * Returns KR_OK; KR_EINVAL for a NULL argument, a bad origin or key name;
 * KR_ETOOLARGE if cap cannot hold the note and its NUL; KR_EKEY if sk does not
 * match pk; KR_ECRYPTO if libsodium fails. On
 * any error *out_len is unchanged and out, if cap > 0, holds "".
 */
KR_MUST_CHECK kr_err kr_checkpoint_sign(const struct kr_checkpoint *cp, const char *key_name,
                                        const uint8_t pk[KR_NOTE_PK_LEN],
                                        const uint8_t sk[KR_NOTE_SK_LEN], char *out, size_t cap,
                                        size_t *out_len);

/* A public key trusted to sign checkpoints. `name` is NUL-terminated and
 * follows kr_note_key_hash()'s rule; `key_id` is the caller's own label for the
 * key (an index, a row id), handed back by kr_checkpoint_open(). */
struct kr_note_key {
    char name[KR_ORIGIN_MAX + 1];
    uint8_t pk[KR_NOTE_PK_LEN];
    uint32_t key_id;
};

/*
 * Parse and verify the signed checkpoint note[0..len), which may be hostile.
 * note need not be NUL-terminated.
 *
 * The note must be at most KR_NOTE_MAX bytes of valid UTF-8 without control
 * characters other than "\n" (so no NUL and no CR), end in "\n", and split at
 * its last blank line into the body and 1..KR_NOTE_MAX_SIGS signature lines,
 * each "— name base64\n" with a spec-valid name and canonical padded base64 of
 * at least 5 bytes. The body must be a tlog-checkpoint: a non-empty origin of at
 * most KR_ORIGIN_MAX bytes, a decimal size without sign or leading zeros that
 * fits in 64 bits, the base64 of exactly 32 bytes, then any non-empty extension
 * lines, which are ignored.
 *
 * A signature line counts as from a known key when both its name and key hash
 * match one of keys[0..nkeys) (the first such key); other lines are ignored, as
 * the spec requires. Every line from a known key must verify, and at least one
 * must exist. The body is interpreted only after that.
 *
 * The origin is not checked against anything: the caller must compare
 * out->origin with the log it expects.
 *
 * Returns KR_OK with *out filled and *key_id set to the key_id of the first
 * known key (in line order) that signed. Otherwise *out and *key_id are
 * unchanged and the result is: KR_EINVAL for a NULL argument, more than
 * KR_KEYS_MAX keys or a key with a bad name; KR_ETOOLARGE if len > KR_NOTE_MAX;
 * KR_ECORRUPT for malformed text (note or body); KR_EBADSIG when a signature by
 * a known key fails or no known key signed; KR_ECRYPTO if libsodium fails.
 */
KR_MUST_CHECK kr_err kr_checkpoint_open(const char *note, size_t len,
                                        const struct kr_note_key *keys, size_t nkeys,
                                        struct kr_checkpoint *out, uint32_t *key_id);

#endif
