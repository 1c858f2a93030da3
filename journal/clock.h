/*
 * clock.h: the time source seam. Production reads CLOCK_REALTIME; tests inject
 * a clock that jumps backwards or stands still, to prove record times never
 * decrease and that the same inputs give the same events.
 */
#ifndef KR_CLOCK_H
#define KR_CLOCK_H

#include <stdint.h>

/* A clock: now_ns returns UTC nanoseconds since the Unix epoch. It may be
 * called from several threads at once. Caller-owned; must outlive its users. */
struct kr_clock {
    uint64_t (*now_ns)(void *ctx);
    void *ctx;
};

/* The current time from c, or from the system's real-time clock when c is NULL. */
uint64_t kr_clock_now(const struct kr_clock *c);

#endif
