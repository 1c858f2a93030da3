/* clock.c: the real-time clock behind the kr_clock seam, and the offset
 * clock of the drill and test override. */
#include "clock.h"

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

uint64_t kr_clock_now(const struct kr_clock *c)
{
    if (c != NULL)
        return c->now_ns(c->ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

kr_err kr_clock_offset_parse(const char *s, int64_t *offset_ns)
{
    if (!s || !offset_ns)
        return KR_EINVAL;
    bool neg = false;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    int64_t n = 0;
    size_t digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (n > KR_CLOCK_OFFSET_MAX_S)
            return KR_ETOOLARGE; /* stops before n could overflow */
        n = n * 10 + (*s - '0');
    }
    if (digits == 0)
        return KR_EINVAL;
    int64_t unit = 1;
    switch (*s) {
    case '\0':
    case 's':
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        return KR_EINVAL;
    }
    if (*s && s[1] != '\0')
        return KR_EINVAL;
    if (n > KR_CLOCK_OFFSET_MAX_S / unit)
        return KR_ETOOLARGE;
    int64_t secs = n * unit;
    *offset_ns = (neg ? -secs : secs) * 1000000000LL;
    return KR_OK;
}

kr_err kr_clock_override_parse(const char *s, uint64_t now_ns, int64_t *offset_ns)
{
    if (!s || !offset_ns)
        return KR_EINVAL;
    if (*s != '@')
        return kr_clock_offset_parse(s, offset_ns);
    s++;
    const uint64_t max_s = UINT64_MAX / 1000000000ull;
    uint64_t secs = 0;
    size_t digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (secs > max_s)
            return KR_ETOOLARGE; /* stops before secs could overflow */
        secs = secs * 10 + (uint64_t)(*s - '0');
    }
    if (digits == 0 || *s != '\0')
        return KR_EINVAL;
    if (secs > max_s)
        return KR_ETOOLARGE;
    uint64_t t = secs * 1000000000ull;
    uint64_t dist = t >= now_ns ? t - now_ns : now_ns - t;
    if (dist > (uint64_t)KR_CLOCK_OFFSET_MAX_S * 1000000000ull)
        return KR_ETOOLARGE;
    *offset_ns = t >= now_ns ? (int64_t)dist : -(int64_t)dist;
    return KR_OK;
}

static uint64_t offset_now(void *ctx)
{
    const struct kr_offset_clock *oc = ctx;
    uint64_t t = kr_clock_now(oc->base);
    if (oc->offset_ns >= 0) {
        uint64_t o = (uint64_t)oc->offset_ns;
        return t > UINT64_MAX - o ? UINT64_MAX : t + o;
    }
    uint64_t o = (uint64_t)(-(oc->offset_ns + 1)) + 1u;
    return t < o ? 0 : t - o;
}

void kr_clock_offset_init(struct kr_offset_clock *oc, const struct kr_clock *base,
                          int64_t offset_ns)
{
    oc->base = base;
    oc->offset_ns = offset_ns;
    oc->clock = (struct kr_clock){.now_ns = offset_now, .ctx = oc};
}
