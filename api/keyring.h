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
 * fetched by any node that lacks it, and erased when the tenant is erased.
 *
 * Erasure. A purged JetStream message stays on the servers' disks (in the
 * stream's message blocks and in its RAFT log) until they compact, so a
 * tenant's key is erased in three steps, each undone by nothing:
 *   1. the message is deleted with erase (JetStream's secure delete: every
 *      replica overwrites its bytes on disk); this needs a bucket whose
 *      stream allows deletes, which kr_keyring_open makes (a key-value
 *      bucket made by js_CreateKeyValue denies them, for good: a bucket
 *      made so by an older kiroku answers every erasure KR_EIO, until it is
 *      deleted and made again, see docs/operations.md);
 *   2. the name is purged (a marker replaces it: fetching it is
 *      KR_ENOTFOUND from then on);
 *   3. the RAFT log is scrubbed: KR_KEYRING_SCRUB_BYTES of filler are
 *      written through the bucket and purged, which makes every replica
 *      snapshot the stream and drop the log entries that carried the key.
 * A retried erasure of a name already purged does nothing (a crash between
 * 2 and 3 leaves the log to nats-server's own compaction, every 2 to 3
 * minutes).
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
 * copies: 1..5, message deletes allowed) if it does not exist. js must outlive the keyring.
 * KR_EINVAL for bad replicas, KR_EIO if JetStream does not answer or refuses. */
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
