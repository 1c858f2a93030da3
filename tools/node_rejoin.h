/*
 * node_rejoin.h: an old primary rejoining its shard's stream as a follower
 * (serve_node.h): what it committed that the stream never got is found,
 * reported and truncated away.
 *
 * The stream's point. Every record the stream holds was verified by the
 * followers against the record before it (prev links), so the records this
 * journal shares with the stream are a prefix: the point is the last seq at
 * which the stream's record is this journal's record (same seq, key, prev,
 * commitment and signature). It is found by a binary search over the stream's
 * messages (direct gets, Kiroku-First/Last headers, decoding only the probed
 * chunks: O(log messages) gets), then within the last message that starts
 * with a shared record.
 *
 * Records past the point (never published, or published by nobody: another
 * epoch wrote other records at those seqs) are discarded: written first to
 * DIR/discarded-<first>-<last>.json ({"stream_point": P, "size": S,
 * "records": [{"seq", "time_ns", "type", "tenant", "stream", "key_id"}...]},
 * no payload), named on stderr, then dropped by jrn_truncate. In quorum mode
 * none of them was acknowledged to a client (an acknowledgement waits for the
 * stream's quorum); in async mode some may have been.
 *
 * Keys. jrn_truncate signs the checkpoint at the point with the key valid
 * there: a key missing from DIR/keys is fetched from the keyring first.
 */
#ifndef KR_TOOLS_NODE_REJOIN_H
#define KR_TOOLS_NODE_REJOIN_H

#include "keyring.h"
#include "kr_error.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

struct node_rejoin_result {
    uint64_t size;      /* the journal's size before */
    uint64_t point;     /* the stream's point (== size: nothing discarded) */
    uint64_t discarded; /* size - point when truncated, else 0 */
    char report[1100];  /* the JSON file written, "" if none */
};

/* Compares the (closed) journal in dir with the stream `stream` over js and
 * truncates it to the stream's point if it is ahead of it or differs from
 * it. kr may be NULL (no key fetched). Errors: KR_ECORRUPT with *why (the
 * journal differs from the stream's very first message: the stream cannot
 * bring it back; restore a backup), KR_EIO (the stream did not answer), a
 * journal or truncation error. */
KR_MUST_CHECK kr_err node_rejoin(const char *dir, jsCtx *js, const char *stream,
                                 struct kr_keyring *kr, struct node_rejoin_result *out,
                                 const char **why);

/* The last journal seq the stream holds (the Kiroku-Last header of the
 * last message on subject), 0 for an empty or absent stream. KR_EIO if the
 * stream did not answer, KR_ECORRUPT if that message is not kiroku's. */
KR_MUST_CHECK kr_err node_stream_last(jsCtx *js, const char *stream, const char *subject,
                                      uint64_t *last);

/* Fetches signing key key_id of the journal into dir/keys from the keyring
 * unless dir/keys has its secret already (wrapped by dir's keystore KEK).
 * KR_ENOTFOUND if neither has it. */
KR_MUST_CHECK kr_err node_key_ensure(const char *dir, struct kr_keyring *kr,
                                     const uint8_t journal_id[16], uint32_t key_id);

#endif
