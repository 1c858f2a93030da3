/*
 * jst.c: UTC nanoseconds to an ISO 8601 string in Japan time (see jst.h).
 *
 * The calendar conversion is the proleptic Gregorian days-to-civil algorithm
 * of Howard Hinnant ("chrono-Compatible Low-Level Date Algorithms"), on
 * unsigned arithmetic since times before 1970 cannot occur.
 */
#include "jst.h"

#include "kr_error.h"

#include <stdio.h>

#define NS_PER_S   1000000000ull
#define NS_PER_MS  1000000ull
#define S_PER_DAY  86400ull
#define JST_OFFSET (9ull * 3600ull)

size_t jst_format(uint64_t utc_ns, char out[JST_LEN + 1])
{
    uint64_t secs = utc_ns / NS_PER_S + JST_OFFSET;
    unsigned ms = (unsigned)(utc_ns / NS_PER_MS % 1000u);
    uint64_t days = secs / S_PER_DAY, sod = secs % S_PER_DAY;

    /* Days since 0000-03-01, counted in 400-year eras of 146097 days. */
    uint64_t z = days + 719468u;
    uint64_t era = z / 146097u;
    uint64_t doe = z - era * 146097u;                                         /* [0, 146096] */
    uint64_t yoe = (doe - doe / 1460u + doe / 36524u - doe / 146096u) / 365u; /* [0, 399] */
    uint64_t doy = doe - (365u * yoe + yoe / 4u - yoe / 100u);                /* [0, 365] */
    uint64_t mp = (5u * doy + 2u) / 153u; /* [0, 11], March = 0 */
    unsigned day = (unsigned)(doy - (153u * mp + 2u) / 5u + 1u);
    unsigned month = (unsigned)(mp < 10u ? mp + 3u : mp - 9u);
    unsigned year = (unsigned)(yoe + era * 400u + (month <= 2u));

    int n =
        snprintf(out, JST_LEN + 1, "%04u-%02u-%02uT%02u:%02u:%02u.%03u+09:00", year, month, day,
                 (unsigned)(sod / 3600u), (unsigned)(sod / 60u % 60u), (unsigned)(sod % 60u), ms);
    KR_ASSERT(n == JST_LEN);
    return JST_LEN;
}
