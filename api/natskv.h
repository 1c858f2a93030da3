/*
 * natskv.h: the few things the lease (lease.h) and the shard map
 * (shardmap.h) do with NATS JetStream key-value buckets, in one place: NATS
 * statuses translated to kr_err, a bucket bound (made when absent), and a
 * conditional write that says whether the condition failed.
 *
 * A bucket is a JetStream stream KV_<bucket>; key k is the subject
 * $KV.<bucket>.<k>, and a key's revision is the stream sequence of its newest
 * message. A conditional write is a publish with JetStream's
 * expected-last-subject-sequence, so of two nodes writing on the same
 * revision exactly one wins: the engine decides, not the nodes.
 *
 * Threads: what the NATS client allows (a jsCtx and a kvStore may be used
 * from many threads).
 */
#ifndef KR_API_NATSKV_H
#define KR_API_NATSKV_H

#include "kr_error.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The one translation of NATS statuses: NATS_OK -> KR_OK; NATS_NOT_FOUND ->
 * KR_ENOTFOUND; NATS_NO_MEMORY -> KR_ENOMEM; NATS_INVALID_ARG ->
 * KR_EINVAL; every other status (a timeout, no responders, the connection
 * down, an error the server returned) -> KR_EIO: the engine could not be
 * reached or refused, try again later. */
kr_err nkv_err(natsStatus s);

/* Binds *out to bucket `bucket`, creating it when absent with `history`
 * revisions kept per key, `ttl_ms` (0: values never expire) and `replicas`
 * (0: 1; < 0: never create it: KR_ENOTFOUND when absent). An existing bucket is used as it is:
 * *ttl_ms_out (may be NULL) gets its TTL in milliseconds (0: none), which may differ from ttl_ms.
 * The caller destroys *out with kvStore_Destroy. KR_EIO if JetStream could
 * not be reached or refused. */
KR_MUST_CHECK kr_err nkv_bucket(jsCtx *js, const char *bucket, uint8_t history, int64_t ttl_ms,
                                int replicas, kvStore **out, int64_t *ttl_ms_out);

/* Writes value v[0..len) to key `key` of bucket `bucket` only if the key's
 * newest revision is `expect` (0: the key holds no message at all, neither a
 * value nor a delete marker). *rev (may be NULL) gets the new revision.
 * KR_ECONFLICT when the key's revision is another (someone wrote first, or
 * the value expired); KR_EIO when JetStream could not be reached in wait_ms
 * or refused otherwise (the write may or may not have happened: read the key
 * again). */
KR_MUST_CHECK kr_err nkv_write(jsCtx *js, const char *bucket, const char *key, const void *v,
                               size_t len, uint64_t expect, int64_t wait_ms, uint64_t *rev);

/* Whether urls is a list of NATS servers as kiroku takes them:
 * "nats://HOST:PORT[,nats://HOST:PORT...]", 1 to KR_NATS_URLS_MAX entries,
 * at most KR_CLUSTER_URLS_MAX bytes. */
bool nkv_urls_ok(const char *urls);

/* The client options of every NATS connection kiroku makes: the servers of
 * urls, tried in the list's order (as an array: libnats 3.4's
 * natsOptions_SetURL takes one server, a comma-separated list finds none),
 * reconnecting for ever every 250 ms once connected, timeout_ms for
 * connecting, the client's name as the servers show it. The caller may set
 * more (callbacks), connects, and destroys *out (natsOptions_Destroy).
 * KR_EINVAL for a list nkv_urls_ok refuses; KR_ENOMEM. */
KR_MUST_CHECK kr_err nkv_options(const char *urls, const char *name, int64_t timeout_ms,
                                 natsOptions **out);

/* Connects to the NATS servers of urls ("nats://h1:4222,nats://h2:4222":
 * at most KR_NATS_URLS_MAX, tried in that order), reconnecting for ever
 * once connected. The caller destroys *out (natsConnection_Destroy).
 * KR_EINVAL for a malformed list; KR_EIO if no server answers. */
KR_MUST_CHECK kr_err nkv_connect(const char *urls, natsConnection **out);

/* Sleeps a moment (KR_KV_PAUSE_MS): between two tries of a watch that
 * failed at once (the connection is down), so a thread does not spin. */
void nkv_pause(void);

/* Whether s is a shard's name: [a-z0-9-]{1,KR_SHARD_NAME_MAX}. */
bool nkv_shard_name_ok(const char *s);

/* Whether s is a node's name: [A-Za-z0-9._-]{1,KR_NODE_NAME_MAX}. */
bool nkv_node_name_ok(const char *s);

/* Whether s is an endpoint list as the lease and the shard map hold it:
 * printable ASCII without spaces, quotes or backslashes, 1 to
 * KR_ENDPOINT_MAX bytes (it is shown to clients in redirects). */
bool nkv_endpoint_ok(const char *s, size_t len);

#endif
