/*
 * jst.h: times rendered in Japan Standard Time for people reading the audit
 * view and exports ("2026-04-01T09:00:00.123+09:00").
 *
 * JST is UTC+9 all year (Japan has no daylight saving time), so rendering is
 * libc's UTC calendar (gmtime_r) of the instant shifted by 9 hours: no libc
 * time-zone state (localtime, TZ), nothing that could differ between hosts or
 * threads.
 */
#ifndef KR_JST_H
#define KR_JST_H

#include <stddef.h>
#include <stdint.h>

/* Characters of a rendered time: "YYYY-MM-DDThh:mm:ss.mmm+09:00". Every u64
 * nanosecond count falls in years 1970..2554, so the year has 4 digits. */
#define JST_LEN 29

/* Writes utc_ns (UTC nanoseconds since the Unix epoch) as JST into out,
 * NUL-terminated, with milliseconds (truncated, not rounded). Returns JST_LEN.
 * Thread-safe; never fails. */
size_t jst_format(uint64_t utc_ns, char out[JST_LEN + 1]);

#endif
