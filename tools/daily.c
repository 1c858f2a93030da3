/* daily.c: serve's scheduler thread (see daily.h). */
#include "daily.h"

#include "retention.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JST_OFFSET_NS (9ull * RET_NS_PER_HOUR)

struct daily {
    struct daily_options o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

uint64_t daily_next_jst(uint64_t now, unsigned min)
{
    uint64_t jst = now + JST_OFFSET_NS;
    uint64_t day = jst - jst % RET_NS_PER_DAY;
    uint64_t at = day + (uint64_t)min * 60ull * 1000000000ull; /* JST */
    if (at < jst)
        at += RET_NS_PER_DAY;
    return at - JST_OFFSET_NS;
}

bool daily_parse_hhmm(const char *s, unsigned *min)
{
    if (strlen(s) != 5 || s[2] != ':')
        return false;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return false;
    unsigned h = (unsigned)(s[0] - '0') * 10u + (unsigned)(s[1] - '0');
    unsigned m = (unsigned)(s[3] - '0') * 10u + (unsigned)(s[4] - '0');
    if (h > 23 || m > 59)
        return false;
    *min = h * 60u + m;
    return true;
}

/* Waits up to DAILY_TICK_MS of real time; true if asked to stop. */
static bool tick(struct daily *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)(DAILY_TICK_MS % 1000u) * 1000000L;
    ts.tv_sec += (time_t)(DAILY_TICK_MS / 1000u) + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        int rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        if (rc == ETIMEDOUT)
            break;
    }
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static bool stopping(struct daily *s)
{
    pthread_mutex_lock(&s->mu);
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void *run(void *arg)
{
    struct daily *s = arg;
    uint64_t now = kr_clock_now(s->o.clock);
    uint64_t next_retention = now;
    uint64_t next_backup = UINT64_MAX;
    uint64_t next_minute = now;
    if (s->o.backup) {
        /* Today's (JST) time: passed already means take today's backup now. */
        uint64_t jst = now + JST_OFFSET_NS;
        uint64_t slot = jst - jst % RET_NS_PER_DAY +
                        (uint64_t)s->o.backup_at_min * 60ull * 1000000000ull - JST_OFFSET_NS;
        next_backup = now >= slot ? now : slot;
    }
    while (!stopping(s)) {
        now = kr_clock_now(s->o.clock);
        if (now >= next_retention) {
            s->o.retention(s->o.arg);
            now = kr_clock_now(s->o.clock);
            next_retention = now + RET_JOB_INTERVAL_NS;
            continue;
        }
        if (s->o.backup && now >= next_backup) {
            s->o.backup(s->o.arg);
            now = kr_clock_now(s->o.clock);
            next_backup = daily_next_jst(now + 1, s->o.backup_at_min);
            continue;
        }
        if (s->o.minutely && now >= next_minute) {
            s->o.minutely(s->o.arg);
            next_minute = kr_clock_now(s->o.clock) + DAILY_MINUTE_NS;
            continue;
        }
        if (tick(s))
            break;
    }
    return NULL;
}

kr_err daily_start(const struct daily_options *o, struct daily **out)
{
    struct daily *s = calloc(1, sizeof *s);
    if (!s)
        return KR_ENOMEM;
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return KR_EIO;
    }
    *out = s;
    return KR_OK;
}

void daily_stop(struct daily *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
