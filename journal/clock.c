/* clock.c: the real-time clock behind the kr_clock seam. */
#include "clock.h"

#include <time.h>

uint64_t kr_clock_now(const struct kr_clock *c)
{
    if (c != NULL)
        return c->now_ns(c->ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
