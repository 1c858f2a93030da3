/*
 * keyring.h: the keys every node of a shard needs, kept in a NATS JetStream
 * key-value bucket, always wrapped by the KEK.
 *
 * A cluster's nodes share one KEK, placed on each by the deployment (as its
 * TLS keys are: DIR/keys/kek.key, mode 0600). Everything else secret travels
 * through the bucket KR_KEYRING_BUCKET, wrapped by that KEK
 * (XChaCha20-Poly1305, 73 bytes, bound to its name), so the NATS servers and
 * whoever reads their disks hold only ciphertext:
 *
 *   tenant.<tenant id, decimal>          a tenant's data key, exactly as the
 *                                        keystore stores it (keystore.h)
 *   journal.<journal id, hex>.<key id>   a journal signing key's seed
 *
 * Tenant keys: kr_keyring_remote gives the keystore its remote store
 * (ks_set_remote): a key is made once for the whole shard (create-if-absent),
 * fetched by any node that lacks it, and purged, with its history, when the
 * tenant is erased.
 *
 * Signing keys: a primary stores each signing key it makes (a rotation, an
 * epoch) before that key signs anything; a follower that is promoted fetches
 * the current key to sign the record that starts its epoch. The bucket keeps
 * one value per name (history 1); a name is written once.
 *
 * Threads: every call may run on any thread; the bucket handle is libnats',
 * which is thread-safe. Every call waits at most the JetStream context's
 * timeout; a store that does not answer is KR_EIO.
 */
#ifndef KR_KEYRING_H
#define KR_KEYRING_H

#include "keys.h"
#include "keystore.h"
#include "kr_error.h"

#include <nats/nats.h>
#include <stdint.h>

#define KR_KEYRING_BUCKET "KIROKU_KEYS"

struct kr_keyring;

/* Binds the bucket on js, creating it (file storage, history 1, `replicas`
 * copies: 1..5) if it does not exist. js must outlive the keyring. KR_EINVAL
 * for bad replicas, KR_EIO if JetStream does not answer or refuses. */
KR_MUST_CHECK kr_err kr_keyring_open(jsCtx *js, int replicas, struct kr_keyring **out);
void kr_keyring_close(struct kr_keyring *k); /* accepts NULL */

/* The keystore's remote store (keystore.h), valid until kr_keyring_close. */
const struct ks_remote *kr_keyring_remote(struct kr_keyring *k);

/* Stores signing key `key` of journal `journal_id`, wrapped by ks's KEK,
 * unless the bucket has that name already: KR_OK if it holds this very key,
 * KR_EEXIST if it holds another one under that id (never overwritten). */
KR_MUST_CHECK kr_err kr_keyring_put_signing_key(struct kr_keyring *k, struct kr_keystore *ks,
                                                const uint8_t journal_id[16],
                                                const struct kr_signing_key *key);

/* Fetches signing key `key_id` of journal `journal_id` and rebuilds the pair
 * from its seed. KR_ENOTFOUND if the bucket has none; KR_ECORRUPT if it does
 * not unwrap under ks's KEK as that name's key (forged, moved or made under
 * another KEK). On error *out is wiped. */
KR_MUST_CHECK kr_err kr_keyring_get_signing_key(struct kr_keyring *k, struct kr_keystore *ks,
                                                const uint8_t journal_id[16], uint32_t key_id,
                                                struct kr_signing_key *out);

#endif
