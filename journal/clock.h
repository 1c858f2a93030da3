/*
 * clock.h: the time source seam. Production reads CLOCK_REALTIME; tests inject
 * a clock that jumps backwards or stands still, to prove record times never
 * decrease and that the same inputs give the same events.
 *
 * The offset clock is the documented override for drills and tests: the real
 * clock plus a fixed offset, so a test can live 30 days ahead ("advance the
 * clock") or start at a given instant while time still passes. It is chosen with the environment
 * variable KR_CLOCK_OFFSET_ENV (KIROKU_CLOCK_OFFSET), read by the tools only (see
 * docs/operations.md, "The clock override"). The journal keeps record times
 * monotonic whatever a clock does, so a smaller offset on a later run gives
 * records stamped at the newest time already written, never earlier ones.
 */
#ifndef KR_CLOCK_H
#define KR_CLOCK_H

#include "kr_error.h"

#include <stdint.h>

/* A clock: now_ns returns UTC nanoseconds since the Unix epoch. It may be
 * called from several threads at once. Caller-owned; must outlive its users. */
struct kr_clock {
    uint64_t (*now_ns)(void *ctx);
    void *ctx;
};

/* The current time from c, or from the system's real-time clock when c is NULL. */
uint64_t kr_clock_now(const struct kr_clock *c);

/* The environment variable of the override. */
#define KR_CLOCK_OFFSET_ENV "KIROKU_CLOCK_OFFSET"

/* The largest offset either way: 100 years, so real time plus the offset
 * stays far inside uint64 nanoseconds (year 2554) and above the epoch. */
#define KR_CLOCK_OFFSET_MAX_S (100LL * 366 * 86400)

/* Parses an offset: an optional sign ('+' or '-'), decimal digits, and an
 * optional unit: s (seconds, the default), m (minutes), h (hours), d (days).
 * "30d", "-90m", "3600", "+1h" are offsets; nothing else is (no spaces, no
 * fractions, no empty number, no other suffix). Sets *offset_ns.
 * KR_EINVAL for anything malformed, KR_ETOOLARGE beyond KR_CLOCK_OFFSET_MAX_S. */
KR_MUST_CHECK kr_err kr_clock_offset_parse(const char *s, int64_t *offset_ns);

/* Parses the override's value, KIROKU_CLOCK_OFFSET: an offset as
 * kr_clock_offset_parse takes it, or "@" and decimal digits, an absolute
 * instant (UTC seconds since 1970, e.g. "@1796515200") that the clock is to
 * read at now_ns (the real time when the override is read): *offset_ns gets
 * that instant minus now_ns, so the clock starts there and time passes from
 * it. Tests use it to land on an exact instant (a JST midnight). Errors as
 * kr_clock_offset_parse; KR_ETOOLARGE also when the instant is more than
 * KR_CLOCK_OFFSET_MAX_S away from now_ns. */
KR_MUST_CHECK kr_err kr_clock_override_parse(const char *s, uint64_t now_ns, int64_t *offset_ns);

/* A clock that reads base (NULL: real time) plus offset_ns, clamped to
 * [0, UINT64_MAX]. Caller-owned; fill it with kr_clock_offset_init and pass
 * &oc->clock. */
struct kr_offset_clock {
    struct kr_clock clock;
    const struct kr_clock *base;
    int64_t offset_ns;
};
void kr_clock_offset_init(struct kr_offset_clock *oc, const struct kr_clock *base,
                          int64_t offset_ns);

#endif
