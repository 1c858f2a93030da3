/*
 * daily.h: serve's scheduler thread: the retention job at start and once a
 * day, the backup once a day at a JST time of day, and the minute job (the
 * incident notices owed) at start and every minute.
 *
 * Times come from the domain's clock (overridable for drills, see clock.h):
 * the thread wakes at least every DAILY_TICK_MS of real time and runs what
 * is due by that clock, so a test that starts serve 30 days ahead sees the
 * jobs run as they would then. A job that fails is logged (and, for the
 * backup, recorded as backup.failed by the job itself) and tried again at
 * its next time.
 *
 * Stopping (daily_stop) waits for a running job to finish: jobs are
 * bounded (retention: KR_RETENTION_TENANTS_MAX tenants; backup: one copy),
 * and each leaves nothing half-done if the process dies instead.
 */
#ifndef KR_TOOLS_DAILY_H
#define KR_TOOLS_DAILY_H

#include "clock.h"
#include "kr_error.h"

#include <stdbool.h>
#include <stdint.h>

/* Real time between two looks at the clock. */
#define DAILY_TICK_MS 1000u
/* Between two runs of the minute job, by the clock. */
#define DAILY_MINUTE_NS (60ull * 1000000000ull)

struct daily_options {
    const struct kr_clock *clock; /* NULL = real time */
    /* The retention job: at start, then every RET_JOB_INTERVAL_NS. */
    void (*retention)(void *arg);
    /* The backup job (NULL = none): daily at backup_at_min minutes after
     * midnight JST (0..1439); also at start when today's (JST) time has
     * passed, so a server restarted after it still takes the day's backup
     * (a second one the same day replaces the first). */
    void (*backup)(void *arg);
    unsigned backup_at_min;
    /* The minute job (NULL = none): at start, then every DAILY_MINUTE_NS
     * by the clock, after any daily job that is due. */
    void (*minutely)(void *arg);
    void *arg;
};

struct daily;

/* Starts the thread; the jobs run on it, one at a time. KR_ENOMEM, KR_EIO. */
KR_MUST_CHECK kr_err daily_start(const struct daily_options *o, struct daily **out);

/* Stops the thread after the job it runs (if any), frees it. Accepts NULL. */
void daily_stop(struct daily *s);

/* The next UTC ns at or after now that is min minutes past midnight JST. */
uint64_t daily_next_jst(uint64_t now, unsigned min);

/* Parses "HH:MM" (00:00..23:59) into minutes; false if malformed. */
bool daily_parse_hhmm(const char *s, unsigned *min);

#endif
