/*
 * rate.h: fixed-window counters of requests per key, for the limits on what
 * anonymous callers may do (signup.apply per e-mail address and per source
 * address).
 *
 * A limiter is a table of KR_RATE_SLOTS counters. Keys are hashed with a
 * random key drawn when the table is made (BLAKE2b, keyed), so neither the
 * table's layout nor the keys it holds can be predicted from outside, and no
 * address is kept in clear. A counter counts the requests of its key since
 * its window started; when KR_RATE window has passed, it starts again at
 * zero. The counts live in memory only: a restart of the server forgets them
 * (the limits bound floods, they are not an audit record).
 *
 * A key that finds no slot of its own nor a free one among the
 * KR_RATE_PROBES slots it may use is refused like a key at its limit, until
 * the earliest of those windows ends: a flood of distinct keys large enough
 * to fill the table slows every newcomer, it does not reset anyone's count.
 *
 * Threads: every function may be called from any thread.
 */
#ifndef KR_RATE_H
#define KR_RATE_H

#include "kr_error.h"
#include "kr_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kr_rate; /* opaque; kr_rate_new / kr_rate_free */

/* One key to count a request against, with its own limit per window. */
struct kr_rate_key {
    const char *kind; /* what the key is ("email", "source"): part of the hash */
    const void *p;    /* the key's bytes */
    size_t n;
    uint32_t max; /* requests allowed per window */
};

/* A limiter whose windows last window_ns. NULL if out of memory. */
struct kr_rate *kr_rate_new(uint64_t window_ns);
void kr_rate_free(struct kr_rate *r); /* accepts NULL */

/* Counts one request against every key of keys[0..n) (n <= KR_RATE_KEYS_MAX)
 * at time now (UTC ns), all or none: KR_OK if each key is under its max
 * (each count goes up by one); else KR_ERATE, nothing counted, *which the
 * index of the first key refused, *retry_ns how long until it would be
 * accepted, and *first whether this is that key's first refusal in its
 * window (so a caller can record a flood once per key and window, not once
 * per request). */
KR_MUST_CHECK kr_err kr_rate_take(struct kr_rate *r, const struct kr_rate_key *keys, size_t n,
                                  uint64_t now, size_t *which, uint64_t *retry_ns, bool *first);

/* Gives back one request counted by a kr_rate_take of the same keys that
 * then came to nothing (the command was decided again, or failed before it
 * was recorded). Keys whose window ended meanwhile are left alone. */
void kr_rate_give_back(struct kr_rate *r, const struct kr_rate_key *keys, size_t n, uint64_t now);

#endif
