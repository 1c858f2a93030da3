/*
 * jst.c: UTC nanoseconds to an ISO 8601 string in Japan time (see jst.h).
 *
 * The instant is shifted by 9 hours and handed to gmtime_r, which converts
 * with the proleptic Gregorian calendar and reads no time-zone state
 * (unlike localtime_r, which consults TZ). Every u64 nanosecond count plus
 * 9 hours fits time_t (64-bit on the platforms we build for, asserted below).
 */
#include "jst.h"

#include "kr_error.h"

#include <stdio.h>
#include <time.h>

_Static_assert(sizeof(time_t) >= 8, "jst_format needs a 64-bit time_t");

#define NS_PER_S   1000000000ull
#define NS_PER_MS  1000000ull
#define JST_OFFSET (9ull * 3600ull)

size_t jst_format(uint64_t utc_ns, char out[JST_LEN + 1])
{
    time_t secs = (time_t)(utc_ns / NS_PER_S + JST_OFFSET);
    unsigned ms = (unsigned)(utc_ns / NS_PER_MS % 1000u);
    struct tm tm;

    struct tm *ok = gmtime_r(&secs, &tm); /* years 1970..2554: always representable */
    KR_ASSERT(ok != NULL);
    int n =
        snprintf(out, JST_LEN + 1, "%04d-%02d-%02dT%02d:%02d:%02d.%03u+09:00", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    KR_ASSERT(n == JST_LEN);
    return JST_LEN;
}
