/*
 * keystore.h: per-tenant data keys, wrapped by the key-encryption key (KEK);
 * sealing tenant data with them; keyed hashes for blind indexes.
 *
 * Every tenant's personal data is encrypted under that tenant's 32-byte data
 * key. Erasing a tenant destroys its key (crypto-shredding): the ciphertext
 * left anywhere (journal, backups) can then no longer be read.
 *
 * Files, under the data directory DIR:
 *   DIR/keys/kek.key   the KEK, mode 0600, as text:
 *                        "kiroku-kek 1\n<base64 of 32 random bytes>\n"
 *                      (standard padded base64, nothing before or after).
 *                      Loading refuses (KR_EKEY) a file that group or others
 *                      may access, that is not owned by the process's user,
 *                      that is a symlink, FIFO or anything but a regular file,
 *                      or that is malformed in any way.
 *   DIR/keystore/      a small LMDB environment of its own (directory 0700,
 *                      files 0600, durable commits), with named databases
 *     keys       tenant (u64 big-endian) -> wrapped key, 73 bytes:
 *                  0x01 | nonce (24) | XChaCha20-Poly1305-IETF(KEK, key) (32+16)
 *                with additional data "kiroku.dek.v1" || be64(tenant), so a
 *                wrapped key copied into another tenant's slot fails to open.
 *     destroyed  tenant -> be64(destruction time, UTC ns): a destroyed
 *                tenant's key is never created again.
 *     meta       "format" -> be32(1); "kek_check" -> 0x01 | nonce (24) | tag
 *                (16) of an empty message under the KEK with additional data
 *                "kiroku.kek.check.v1", so a wrong KEK is found at open;
 *                "scrub" -> present while a scrub (below) is owed.
 *   DIR/keystore/open.lock  every process with the keystore open holds a
 *                shared lock on it (an open-file-description lock); a scrub
 *                needs it exclusively.
 *
 * Erasure (ks_destroy). LMDB never writes in place: deleting a value leaves
 * its old bytes in freed pages and in the unused parts of pages written
 * later. So after removing a key, the keystore is rewritten: a compacting
 * copy (which holds only live entries) replaces DIR/keystore/data.mdb
 * atomically. That rewrite needs the keystore to itself, so it runs only when
 * no other process has it open; otherwise it is owed (recorded durably) and
 * done by the next ks_destroy, ks_scrub or ks_open that finds the keystore
 * unshared. Below the file level (freed filesystem blocks, SSD remapping,
 * snapshots, backups of DIR/keystore) the old bytes may live on; what they
 * hold is a KEK-wrapped key, useless without the KEK. Against someone who
 * also holds the KEK only a KEK rotation (re-wrap every live key, then
 * destroy the old KEK) reaches those copies; there is none yet, and the
 * version byte of wrapped keys leaves room for it. Other LMDB tools
 * (mdb_dump, mdb_copy) do not take open.lock: do not point them at
 * DIR/keystore while kiroku runs.
 *
 * Thread-safety: every function here may be called from any number of
 * threads at once, except ks_close, which must be the last call on a
 * keystore. Unwrapped keys are cached (KR_KEYCACHE_MAX of them, least
 * recently used evicted) in locked memory with guard pages, wiped on
 * eviction, destruction and close; a cache hit holds one mutex for a few
 * comparisons and a copy.
 *
 * One keystore may be open once per process: a second ks_open of the same
 * directory gets KR_EBUSY (LMDB must not open an environment twice in one
 * process). Other processes may open it at the same time.
 */
#ifndef KR_KEYSTORE_H
#define KR_KEYSTORE_H

#include "kr_error.h"
#include "rng.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KR_DATA_KEY_LEN 32

/* A tenant's data key. Caller-owned, usually on the stack; wipe it with
 * kr_data_key_wipe as soon as it is no longer needed. Never log it. */
struct kr_data_key {
    uint64_t tenant;
    uint8_t key[KR_DATA_KEY_LEN];
};

/* An open keystore. Opaque; from ks_open, released by ks_close. */
struct kr_keystore;

/* Opens the keystore of data directory `dir`.
 * With create, makes what is missing: DIR/keys (0700) and the KEK (written to
 * DIR/keys/kek.key.<random>.tmp, synced, linked into place, the directory
 * synced; a crash may leave the temporary file), and DIR/keystore. A KEK is made only while
 * DIR/keystore holds no data: a keystore whose KEK is gone is never given a new one. Errors:
 * KR_ENOTFOUND without create when there is no keystore (or, with no keystore, no KEK); KR_EKEY if
 * the keystore exists but its KEK is missing, if the KEK file is refused (see the top of this file)
 * or malformed, or if it is not the KEK this keystore was made with; KR_EBUSY if this process has
 * it open already; KR_EVERSION for an unknown keystore format; KR_ECORRUPT
 * if DIR/keystore is not a keystore; KR_ETOOLARGE if dir is longer than
 * KR_PATH_MAX allows; KR_ENOMEM; LMDB and I/O errors as kr_err_from_mdb /
 * kr_err_from_errno give them. On error *out is NULL. */
KR_MUST_CHECK kr_err ks_open(const char *dir, bool create, struct kr_keystore **out);

/* Closes ks and wipes the KEK and every cached key. Accepts NULL. No other
 * call on ks may be running or follow. */
void ks_close(struct kr_keystore *ks);

/* Makes a new key for `tenant` from rng (NULL: the system generator; the
 * nonce that wraps it always comes from the system generator) and stores it
 * wrapped; the commit is durable (fsync) before this returns. The new key is
 * copied to *out.
 * Errors: KR_EEXIST if the tenant has a key; KR_EKEY if the tenant's key was
 * destroyed (ks_is_destroyed tells the two "no" apart too); KR_EFULL if the
 * map or the disk is full; KR_EIO. On any error *out is wiped. */
KR_MUST_CHECK kr_err ks_create(struct kr_keystore *ks, uint64_t tenant, const struct kr_rng *rng,
                               struct kr_data_key *out);

/* Copies the key of `tenant` to *out.
 * Errors: KR_ENOTFOUND if the tenant has no key, never had one or had it
 * destroyed; KR_ECORRUPT if the stored key fails to unwrap (tampered with,
 * or moved from another tenant); KR_EIO. On any error *out is wiped. */
KR_MUST_CHECK kr_err ks_get(struct kr_keystore *ks, uint64_t tenant, struct kr_data_key *out);

/* ks_get, or ks_create if the tenant has no key; atomic: two threads or
 * processes racing on a new tenant get the same key.
 * Errors: KR_EKEY if the tenant's key was destroyed; as ks_get and ks_create
 * otherwise. On any error *out is wiped. */
KR_MUST_CHECK kr_err ks_get_or_create(struct kr_keystore *ks, uint64_t tenant,
                                      const struct kr_rng *rng, struct kr_data_key *out);

/* Destroys the key of `tenant`: removes it and records the destruction at
 * time_ns (UTC ns) in one durable commit, and drops it from the cache. From
 * then on ks_get answers KR_ENOTFOUND and ks_create / ks_get_or_create refuse
 * the tenant. Then scrubs (see the top of this file) if no other process has
 * the keystore open. A scrub copies the whole keystore (about 100 bytes per
 * tenant, plus three fsyncs), and meanwhile every call on ks but cache hits
 * waits. KR_OK means the destruction is durable, scrubbed or not (ks_scrub
 * tells). Destroying a tenant that has no key records the destruction all
 * the same; destroying it again changes nothing (the first time is kept).
 * Errors: KR_EFULL, KR_EIO (nothing destroyed). */
KR_MUST_CHECK kr_err ks_destroy(struct kr_keystore *ks, uint64_t tenant, uint64_t time_ns);

/* ks_destroy without the scrub: the destruction is durable and the scrub
 * stays owed (recorded in the keystore, so a crash does not lose it) until
 * ks_scrub or the next ks_destroy does it. For destroying many keys with one
 * scrub: call this for each, then ks_scrub once; until then the destroyed
 * keys' bytes may remain in freed pages of DIR/keystore. Errors: as
 * ks_destroy. */
KR_MUST_CHECK kr_err ks_destroy_unscrubbed(struct kr_keystore *ks, uint64_t tenant,
                                           uint64_t time_ns);

/* Does the scrub owed by earlier destructions, if any (KR_OK at once if none
 * is owed). KR_EBUSY if another process has the keystore open: the scrub
 * stays owed. KR_EFULL (no room for the copy) or KR_EIO: the scrub stays
 * owed. If the environment cannot be opened again after the copy replaced
 * it, ks is stopped: this and every later call but ks_close return that
 * error, and the keystore must be opened anew. */
KR_MUST_CHECK kr_err ks_scrub(struct kr_keystore *ks);

/* Copies the keystore as it is in one read snapshot into `dest_dir`/data.mdb
 * (a compacting copy: live entries only, so no freed page carries a
 * destroyed key), fsynced. dest_dir must exist; data.mdb must not (KR_EEXIST).
 * Safe while other processes and threads use the keystore: it reads under a
 * read transaction and the shared open.lock this handle holds (a scrub in
 * another process waits for it), and writes nothing to DIR/keystore. The
 * copy is wrapped by the same KEK: whoever holds it and DIR/keys/kek.key can
 * read every live tenant key. Errors: KR_EEXIST, KR_EFULL, KR_EIO,
 * KR_ETOOLARGE (path), or the error that stopped ks. */
KR_MUST_CHECK kr_err ks_copy(struct kr_keystore *ks, const char *dest_dir);

/* Sets *destroyed to whether `tenant`'s key was destroyed. KR_EIO. */
KR_MUST_CHECK kr_err ks_is_destroyed(struct kr_keystore *ks, uint64_t tenant, bool *destroyed);

/* ---- Keys shared by the nodes of a cluster ----
 *
 * In a cluster every node of a shard holds the same KEK (placed by the
 * deployment, like a TLS key) and a key-value store the nodes share (NATS
 * JetStream: api/keyring.h) holds each tenant's key exactly as the keystore
 * does, wrapped by the KEK: whoever reads that store without the KEK learns
 * nothing. With a remote set:
 *   - ks_get of a key this keystore lacks (and never destroyed) fetches it,
 *     checks that it unwraps under the KEK as this tenant's key (a value
 *     moved from another tenant, or forged, is KR_ECORRUPT), and keeps it;
 *   - ks_create / ks_get_or_create make a key only after the remote store has
 *     taken it, and only if it had none (create-if-absent): two nodes, or a
 *     new primary after a failover, never give one tenant two keys. A key the
 *     remote store already holds is used instead (ks_create: KR_EEXIST);
 *   - ks_destroy and ks_destroy_unscrubbed remove the key from the remote
 *     store too, with its history, after the local destruction is durable;
 *     if that fails they return the remote's error and the local destruction
 *     stands: calling them again retries the remote removal.
 * A remote's errors are its own (KR_EIO for a store that does not answer, or
 * as it documents); the keystore passes them on and changes nothing local. */
#define KS_WRAPPED_LEN 73 /* 0x01 | nonce (24) | sealed key (32 + 16) */

struct ks_remote {
    void *ctx;
    /* The tenant's wrapped key into out: KR_OK, KR_ENOTFOUND, or an error. */
    kr_err (*get)(void *ctx, uint64_t tenant, uint8_t out[KS_WRAPPED_LEN]);
    /* Stores it only if the tenant has none there: KR_OK, KR_EEXIST (one is
     * there already), or an error. */
    kr_err (*create)(void *ctx, uint64_t tenant, const uint8_t wrapped[KS_WRAPPED_LEN]);
    /* Removes the tenant's key and every earlier value of it: KR_OK (also
     * when there is none), or an error. */
    kr_err (*purge)(void *ctx, uint64_t tenant);
};

/* Sets the remote store (caller-owned; it must outlive ks), or NULL for none.
 * Call it before other threads use ks. */
void ks_set_remote(struct kr_keystore *ks, const struct ks_remote *remote);

/* Offers the tenant's key this keystore holds to the remote store
 * (create-if-absent), for a key made before the remote was set (the
 * platform's tenant-0 key, made by a bootstrap before serve shares keys).
 * KR_OK when the remote took it or already holds this very key; KR_EEXIST
 * when it holds another key for the tenant (that one stays); KR_ENOTFOUND
 * when this keystore has none; KR_EINVAL without a remote; the remote's
 * errors. */
KR_MUST_CHECK kr_err ks_share(struct kr_keystore *ks, uint64_t tenant);

/* Wraps a 32-byte secret that is not a tenant key (a journal signing key's
 * seed, shipped to the other nodes of a shard) under the KEK, bound to `ad`
 * (its purpose and name: a value moved to another name fails to unwrap), in
 * the same layout as a tenant key. KR_ETOOLARGE if adlen > KS_SECRET_AD_MAX. */
#define KS_SECRET_AD_MAX 200
KR_MUST_CHECK kr_err ks_wrap_secret(struct kr_keystore *ks, const void *ad, size_t adlen,
                                    const uint8_t secret[32], uint8_t out[KS_WRAPPED_LEN]);

/* Opens what ks_wrap_secret made with the same ad. KR_ECORRUPT if it does not
 * unwrap (secret is then wiped). */
KR_MUST_CHECK kr_err ks_unwrap_secret(struct kr_keystore *ks, const void *ad, size_t adlen,
                                      const uint8_t *in, size_t len, uint8_t secret[32]);

/* Erases k's key bytes (the tenant id stays). Accepts NULL. */
void kr_data_key_wipe(struct kr_data_key *k);

/* ---- Sealing tenant data ---- */

/* Bytes a sealed message has beyond its plaintext: nonce and tag. */
#define KR_SEAL_NONCE_LEN 24
#define KR_SEAL_TAG_LEN   16
#define KR_SEAL_OVERHEAD  (KR_SEAL_NONCE_LEN + KR_SEAL_TAG_LEN)

/* Encrypts pt under k with XChaCha20-Poly1305-IETF into out as
 *     nonce (24) | ciphertext (ptlen) | tag (16)
 * and sets *outlen = ptlen + KR_SEAL_OVERHEAD. ad (not stored) binds the
 * sealed bytes to their context: the caller passes e.g. tenant | stream |
 * type, and must pass the same bytes to unseal. out must not overlap pt or ad.
 * Keys and nonce, with KDF = crypto_kdf_derive_from_key (BLAKE2b) on k->key:
 *     key   = KDF(id 1, context "krseal01")
 *     nonce = BLAKE2b-192 keyed with KDF(id 2, "krseal01") over
 *             r (24 bytes from rng) || le64(adlen) || ad || pt
 * The nonce depends on the message as well as on rng, so a deterministic rng
 * (tests, demo data) gives reproducible output, and even an rng that repeats
 * never reuses a nonce for two different messages. rng NULL: system.
 * Errors: KR_ETOOLARGE if cap < ptlen + KR_SEAL_OVERHEAD (out untouched). */
KR_MUST_CHECK kr_err kr_seal(const struct kr_data_key *k, const struct kr_rng *rng, const void *ad,
                             size_t adlen, const void *pt, size_t ptlen, uint8_t *out, size_t cap,
                             size_t *outlen);

/* Opens what kr_seal made: plaintext into out, *outlen = inlen -
 * KR_SEAL_OVERHEAD. out must not overlap in or ad.
 * Errors: KR_ECORRUPT if in is shorter than KR_SEAL_OVERHEAD or does not
 * authenticate under k and ad (out is then wiped); KR_ETOOLARGE if cap <
 * inlen - KR_SEAL_OVERHEAD. */
KR_MUST_CHECK kr_err kr_unseal(const struct kr_data_key *k, const void *ad, size_t adlen,
                               const uint8_t *in, size_t inlen, uint8_t *out, size_t cap,
                               size_t *outlen);

/* A keyed hash for blind indexes (finding an account by e-mail address
 * without storing the address): HMAC-SHA-256 of msg under
 * KDF(id 3, context `purpose`) of k->key. `purpose` is exactly 8 characters
 * (e.g. "emailmac"; no NUL needed), one per kind of index, so hashes of one
 * index say nothing about another. Different tenants' keys give unrelated
 * hashes of the same message; after the key is destroyed, nothing can
 * recompute them. */
void kr_data_key_mac(const struct kr_data_key *k, const char purpose[8], const void *msg,
                     size_t len, uint8_t out[32]);

#endif
