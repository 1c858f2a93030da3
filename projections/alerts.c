/*
 * alerts.c: the alert scanner (alerts.h).
 *
 * Design notes. Each rule consumes records of one or two event types and
 * keeps, per subject, a ring of the records still within its window, in seq
 * order. A "count" rule's subject is (tenant, account) and every record is an
 * entry; a "distinct" rule's subject is (tenant) and an entry per account,
 * moved to the end when the account appears again. When the ring holds the
 * rule's count the rule fires, unless the subject's last alert (v.alert_last,
 * or the slot's own memory) is within the window; the ring is then emptied,
 * so a continuing pattern fires again only after another window.
 */
#include "alerts.h"

#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000ull

_Static_assert(KR_ALERT_RECORDS_MAX == KR_ALERT_EVIDENCE_MAX * KR_PAGE_MAX,
               "the bulk export rule sums at most the evidence's pages of a page's records");

struct alr_entry {
    uint64_t time, seq;
    uint64_t weight; /* records, for a sum rule */
    uint8_t who[16];
};

struct alr_slot {
    bool used;
    struct alr_subject s;
    uint64_t last_seen;   /* time of the newest entry */
    uint64_t last_raised; /* time of this subject's last alert (0 = none known) */
    uint32_t n;
    struct alr_entry e[KR_ALERT_EVIDENCE_MAX];
    /* request_rate: the current window and the usual records per window */
    uint64_t bucket_start, bucket_n, usual16; /* usual16: the average times 16 */
    uint32_t buckets;                         /* windows of history */
};

struct alr_scanner {
    struct kr_domain *d;
    uint64_t full_seen; /* the journal's refused-for-space count already alerted on */
    uint64_t full_own;  /* of those since, the scanner's own alert appends */
    uint64_t started;   /* the domain clock when it was made */
    struct alr_options o;
    uint64_t next; /* next seq to read */
    char cursor_path[KR_PATH_MAX];
    struct kr_payload *p;
    struct alr_slot slot[KR_ALERT_SLOTS];
};

/* Which rules an event feeds, and how. */
enum alr_mode { ALR_COUNT, ALR_DISTINCT, ALR_SUM };
static const struct {
    int ev;
    int rule;
    enum alr_mode mode;
} alr_feeds[] = {
    {KR_EV_ACCOUNT_LOGIN_FAILED, KR_ALERT_RULE_LOGIN_FAILURES, ALR_COUNT},
    {KR_EV_ACCOUNT_LOGIN_FAILED, KR_ALERT_RULE_LOGIN_SPRAY, ALR_DISTINCT},
    {KR_EV_LOGIN_UNKNOWN, KR_ALERT_RULE_LOGIN_SPRAY, ALR_DISTINCT},
    {KR_EV_ACCOUNT_LOCKED, KR_ALERT_RULE_LOCKOUT, ALR_COUNT},
    {KR_EV_SESSION_OPENED, KR_ALERT_RULE_SESSION_BURST, ALR_COUNT},
    {KR_EV_ACCOUNT_PERMISSIONS_GRANTED, KR_ALERT_RULE_GRANT_MANY, ALR_DISTINCT},
    {KR_EV_ACCOUNT_PERMISSIONS_GRANTED, KR_ALERT_RULE_GRANT_REPEATED, ALR_COUNT},
    {KR_EV_ACCESS_DENIED, KR_ALERT_RULE_ACCESS_DENIED, ALR_COUNT},
    {KR_EV_UTILITY_EXPORTED, KR_ALERT_RULE_BULK_EXPORT, ALR_SUM},
};
#define NFEEDS (sizeof alr_feeds / sizeof alr_feeds[0])

void alr_defaults(struct alr_options *o)
{
    memset(o, 0, sizeof *o);
    o->rule[KR_ALERT_RULE_LOGIN_FAILURES] = (struct alr_rule_limit){10, 600};
    o->rule[KR_ALERT_RULE_LOGIN_SPRAY] = (struct alr_rule_limit){10, 600};
    o->rule[KR_ALERT_RULE_LOCKOUT] = (struct alr_rule_limit){1, 3600};
    o->rule[KR_ALERT_RULE_SESSION_BURST] = (struct alr_rule_limit){20, 3600};
    o->rule[KR_ALERT_RULE_GRANT_MANY] = (struct alr_rule_limit){10, 600};
    o->rule[KR_ALERT_RULE_GRANT_REPEATED] = (struct alr_rule_limit){5, 600};
    o->rule[KR_ALERT_RULE_ACCESS_DENIED] = (struct alr_rule_limit){10, 600};
    o->rule[KR_ALERT_RULE_BULK_EXPORT] = (struct alr_rule_limit){5000, 3600};
    o->rule[KR_ALERT_RULE_INCIDENT_DUE] = (struct alr_rule_limit){1, 86400};
    o->rule[KR_ALERT_RULE_INCIDENT_OVERDUE] = (struct alr_rule_limit){1, 3600};
    o->rule[KR_ALERT_RULE_BACKUP_MISSED] = (struct alr_rule_limit){0, 93600};
    o->rule[KR_ALERT_RULE_STORAGE_LOW] = (struct alr_rule_limit){90, 3600};
    o->rule[KR_ALERT_RULE_WRITES_REFUSED] = (struct alr_rule_limit){1, 3600};
    o->rule[KR_ALERT_RULE_REQUEST_RATE] = (struct alr_rule_limit){10, 300};
    o->rate_min = 1000;
}

/* Rules over the state of the views at the time of a scan, not over records. */
static bool rule_timed(int rule)
{
    return rule == KR_ALERT_RULE_INCIDENT_DUE || rule == KR_ALERT_RULE_INCIDENT_OVERDUE ||
           rule == KR_ALERT_RULE_BACKUP_MISSED || rule == KR_ALERT_RULE_STORAGE_LOW ||
           rule == KR_ALERT_RULE_WRITES_REFUSED;
}

/* The most a rule's count may be: records for bulk_export, else records or
 * accounts, each named in the evidence. */
static uint32_t count_max(int rule)
{
    if (rule == KR_ALERT_RULE_STORAGE_LOW)
        return 100; /* per cent of the map */
    if (rule == KR_ALERT_RULE_REQUEST_RATE)
        return 1000; /* times the usual rate */
    if (rule == KR_ALERT_RULE_WRITES_REFUSED)
        return UINT32_MAX; /* appends refused */
    if (rule_timed(rule))
        return 1;
    return rule == KR_ALERT_RULE_BULK_EXPORT ? KR_ALERT_RECORDS_MAX : KR_ALERT_EVIDENCE_MAX;
}

void alr_subject_key(const struct alr_subject *s, struct vkey *k)
{
    vk_init(k);
    vk_u16(k, s->rule);
    vk_u64(k, s->tenant);
    vk_bytes(k, s->account, 16);
}

uint64_t alr_next_seq(const struct alr_scanner *s)
{
    return s->next;
}

/* ---- Where to start ---- */

static uint64_t longest_window_ns(const struct alr_options *o)
{
    uint64_t w = 0;
    for (int i = 0; i < KR_ALERT_RULE__COUNT; i++)
        if (!rule_timed(i) && o->rule[i].count && o->rule[i].window_s > w)
            w = o->rule[i].window_s;
    return w * NS_PER_S;
}

/* The first seq whose record time is >= t (jrn_size + 1 if none). */
static kr_err first_at(struct journal *j, uint64_t t, uint64_t *out)
{
    uint64_t lo = 1, hi = jrn_size(j) + 1; /* answer in [lo, hi] */
    struct jrn_recbuf b = {0};
    kr_err err = KR_OK;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if ((err = jrn_read(j, mid, &b)))
            break;
        if (b.rec.time_ns >= t)
            hi = mid;
        else
            lo = mid + 1;
    }
    jrn_recbuf_fini(&b);
    *out = lo;
    return err;
}

static kr_err cursor_read(struct alr_scanner *s, bool *found, uint64_t *seq)
{
    *found = false;
    char buf[32];
    kr_err err = kr_file_read_small(s->cursor_path, buf, sizeof buf, false);
    if (err == KR_ENOTFOUND)
        return KR_OK;
    if (err)
        return err;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf || (*end != '\n' && *end != '\0') || buf[0] == '-') {
        fprintf(stderr, "kiroku: %s: not a seq\n", s->cursor_path);
        return KR_ECORRUPT;
    }
    *found = true;
    *seq = v;
    return KR_OK;
}

static kr_err cursor_write(struct alr_scanner *s)
{
    if (s->o.no_cursor)
        return KR_OK;
    char tmp[KR_PATH_MAX + 8], buf[32];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", s->cursor_path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return KR_ETOOLARGE;
    n = snprintf(buf, sizeof buf, "%" PRIu64 "\n", s->next - 1);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return kr_err_from_errno(errno);
    kr_err err = KR_OK;
    if (write(fd, buf, (size_t)n) != n || fsync(fd) != 0)
        err = kr_err_from_errno(errno ? errno : EIO);
    if (close(fd) != 0 && !err)
        err = kr_err_from_errno(errno);
    if (!err && rename(tmp, s->cursor_path) != 0)
        err = kr_err_from_errno(errno);
    if (err)
        (void)unlink(tmp);
    return err;
}

static kr_err start_seq(struct alr_scanner *s)
{
    struct journal *j = s->d->j;
    if (s->o.from_seq) {
        s->next = s->o.from_seq;
        return KR_OK;
    }
    uint64_t w = longest_window_ns(&s->o), from_time;
    bool found = false;
    uint64_t cur = 0;
    kr_err err = s->o.no_cursor ? KR_OK : cursor_read(s, &found, &cur);
    if (err)
        return err;
    if (found && cur >= 1 && cur <= jrn_size(j)) {
        struct jrn_recbuf b = {0};
        err = jrn_read(j, cur, &b);
        from_time = b.rec.time_ns;
        jrn_recbuf_fini(&b);
        if (err)
            return err;
    } else if (found && cur == 0) {
        s->next = 1;
        return KR_OK;
    } else {
        from_time = kr_clock_now(s->d->clock);
    }
    return first_at(j, from_time > w ? from_time - w : 0, &s->next);
}

kr_err alr_new(struct kr_domain *d, const struct alr_options *o, struct alr_scanner **out)
{
    *out = NULL;
    for (int i = 0; i < KR_ALERT_RULE__COUNT; i++)
        if (o->rule[i].count > count_max(i) ||
            (o->rule[i].count &&
             (o->rule[i].window_s == 0 || o->rule[i].window_s > KR_ALERT_WINDOW_MAX_S)))
            return KR_EINVAL;
    struct alr_scanner *s = calloc(1, sizeof *s);
    if (!s)
        return KR_ENOMEM;
    s->d = d;
    s->o = *o;
    s->started = kr_clock_now(d->clock);
    struct jrn_stats st;
    jrn_get_stats(d->j, &st);
    s->full_seen = st.full;
    kr_err err = kr_path_join(s->cursor_path, sizeof s->cursor_path, d->dir, "alerts.cursor");
    if (!err && !(s->p = kr_payload_new()))
        err = KR_ENOMEM;
    if (!err)
        err = start_seq(s);
    if (err) {
        alr_free(s);
        return err;
    }
    *out = s;
    return KR_OK;
}

void alr_free(struct alr_scanner *s)
{
    if (!s)
        return;
    kr_payload_free(s->p);
    free(s);
}

/* ---- Windows ---- */

static uint64_t subject_hash(const struct alr_subject *s)
{
    uint64_t h = 1469598103934665603ull ^ s->rule;
    h = (h ^ s->tenant) * 1099511628211ull;
    for (int i = 0; i < 16; i++)
        h = (h ^ s->account[i]) * 1099511628211ull;
    return h;
}

#define ALR_PROBE 8u

/* The slot of subject sub, taking one (a free or expired one, else the one
 * seen longest ago among ALR_PROBE candidates) when it has none. */
static struct alr_slot *slot_for(struct alr_scanner *s, const struct alr_subject *sub, uint64_t now,
                                 uint64_t window)
{
    uint64_t h = subject_hash(sub);
    struct alr_slot *victim = NULL;
    for (unsigned i = 0; i < ALR_PROBE; i++) {
        struct alr_slot *sl = &s->slot[(h + i) % KR_ALERT_SLOTS];
        if (sl->used && sl->s.rule == sub->rule && sl->s.tenant == sub->tenant &&
            memcmp(sl->s.account, sub->account, 16) == 0)
            return sl;
        if (!sl->used || sl->last_seen + window < now) {
            if (!victim || victim->used)
                victim = sl;
        } else if (!victim || (victim->used && sl->last_seen < victim->last_seen)) {
            victim = sl;
        }
    }
    memset(victim, 0, sizeof *victim);
    victim->used = true;
    victim->s = *sub;
    return victim;
}

static void drop_old(struct alr_slot *sl, uint64_t now, uint64_t window)
{
    uint32_t k = 0;
    while (k < sl->n && sl->e[k].time + window < now)
        k++;
    if (k) {
        memmove(sl->e, sl->e + k, (sl->n - k) * sizeof sl->e[0]);
        sl->n -= k;
    }
}

static void add_entry(struct alr_slot *sl, enum alr_mode mode, const struct alr_entry *e,
                      uint32_t cap)
{
    if (mode == ALR_DISTINCT)
        for (uint32_t i = 0; i < sl->n; i++)
            if (memcmp(sl->e[i].who, e->who, 16) == 0) {
                memmove(sl->e + i, sl->e + i + 1, (sl->n - i - 1) * sizeof sl->e[0]);
                sl->n--;
                break;
            }
    if (sl->n == cap) {
        memmove(sl->e, sl->e + 1, (sl->n - 1) * sizeof sl->e[0]);
        sl->n--;
    }
    sl->e[sl->n++] = *e;
}

/* The time of the subject's last alert from v.alert_last (0 if none). */
static kr_err last_raised(struct alr_scanner *s, const struct alr_subject *sub, uint64_t *t)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(jrn_env(s->d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    struct vkey k;
    alr_subject_key(sub, &k);
    MDB_val v;
    kr_err err = v_get(&s->d->views, txn, VIEW_ALERT_LAST, &k, &v);
    *t = 0;
    if (err == KR_OK) {
        if (v.mv_size == 8)
            *t = v_get_u64(v.mv_data);
        else
            err = views_corrupt(VIEW_ALERT_LAST, k.b, k.n, "the row is not a time", NULL);
    } else if (err == KR_ENOTFOUND) {
        err = KR_OK;
    }
    mdb_txn_abort(txn);
    return err;
}

/* Appends alert.raised for subject sub with evidence (n seqs, increasing),
 * seen and summary. */
static kr_err append_alert(struct alr_scanner *s, const struct alr_subject *sub,
                           const uint64_t *seqs, uint32_t n, uint64_t seen, const char *summary)
{
    struct kr_payload *p = s->p;
    uint8_t id[16], ev[KR_ALERT_EVIDENCE_MAX * 8];
    static const uint8_t none[16];
    KR_ASSERT(n >= 1 && n <= KR_ALERT_EVIDENCE_MAX);
    kr_rng_fill(s->d->rng, id, sizeof id);
    for (uint32_t i = 0; i < n; i++)
        v_put_u64(ev + (size_t)8 * i, seqs[i]);
    kr_payload_reset(p, KR_EV_ALERT_RAISED);
    kr_set_bytes(p, KR_FLD_ALERT, id, 16);
    kr_set_u64(p, KR_FLD_ALERT_RULE, sub->rule);
    if (sub->tenant)
        kr_set_u64(p, KR_FLD_TENANT, sub->tenant);
    if (memcmp(sub->account, none, 16) != 0)
        kr_set_bytes(p, KR_FLD_ACCOUNT, sub->account, 16);
    kr_set_bytes(p, KR_FLD_EVIDENCE, ev, (size_t)8 * n);
    kr_set_u64(p, KR_FLD_SEEN, seen);
    kr_set_str(p, KR_FLD_ALERT_SUMMARY, summary);
    uint64_t zero = 0, t = 0;
    return dom_append_plain(s->d, 0, "system", p, &zero, &t);
}

static void hex16(char out[33], const uint8_t id[16])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + (size_t)2 * (size_t)i, 3, "%02x", id[i]);
}

static kr_err raise_alert(struct alr_scanner *s, struct alr_slot *sl, uint64_t window_s)
{
    /* the evidence in seq order: a distinct rule's ring is ordered by each
     * account's latest record, which is seq order too */
    uint64_t seqs[KR_ALERT_EVIDENCE_MAX];
    for (uint32_t i = 0; i < sl->n; i++)
        seqs[i] = sl->e[i].seq;
    char sum[KR_FLD_ALERT_SUMMARY_MAX + 1];
    static const uint8_t none[16];
    bool has_acct = memcmp(sl->s.account, none, 16) != 0;
    const char *rule = kr_enums[KR_ENUM_ALERT_RULE].values[sl->s.rule];
    uint64_t amount = sl->n;
    const char *what = has_acct ? "records" : "accounts";
    if (sl->s.rule == KR_ALERT_RULE_BULK_EXPORT) {
        amount = 0;
        for (uint32_t i = 0; i < sl->n; i++)
            amount += sl->e[i].weight;
        what = "records exported";
    }
    if (has_acct) {
        char hex[33];
        hex16(hex, sl->s.account);
        snprintf(sum, sizeof sum,
                 "%s: %" PRIu64 " %s within %" PRIu64 " s, tenant %" PRIu64 ", account %s", rule,
                 amount, what, window_s, sl->s.tenant, hex);
    } else {
        snprintf(sum, sizeof sum, "%s: %" PRIu64 " %s within %" PRIu64 " s, tenant %" PRIu64, rule,
                 amount, what, window_s, sl->s.tenant);
    }
    return append_alert(s, &sl->s, seqs, sl->n, sl->e[sl->n - 1].time, sum);
}

/* Feeds one entry to one rule's subject; raises when it fires. */
static kr_err feed(struct alr_scanner *s, int rule, enum alr_mode mode, uint64_t tenant,
                   const uint8_t account[16], const struct alr_entry *e, uint64_t *raised)
{
    const struct alr_rule_limit *lim = &s->o.rule[rule];
    if (lim->count == 0)
        return KR_OK;
    uint64_t window = lim->window_s * NS_PER_S;
    struct alr_subject sub = {.rule = (uint16_t)rule, .tenant = tenant};
    if (mode != ALR_DISTINCT)
        memcpy(sub.account, account, 16);
    struct alr_slot *sl = slot_for(s, &sub, e->time, window);
    drop_old(sl, e->time, window);
    add_entry(sl, mode, e, mode == ALR_SUM ? KR_ALERT_EVIDENCE_MAX : lim->count);
    sl->last_seen = e->time;
    uint64_t amount = sl->n;
    if (mode == ALR_SUM) {
        amount = 0;
        for (uint32_t i = 0; i < sl->n; i++)
            amount += sl->e[i].weight;
    }
    if (amount < lim->count)
        return KR_OK;
    if (sl->last_raised && sl->last_raised + window > e->time)
        return KR_OK;
    uint64_t last = 0;
    kr_err err = last_raised(s, &sub, &last);
    if (err)
        return err;
    if (last && last + window > e->time) {
        sl->last_raised = last;
        return KR_OK;
    }
    if ((err = raise_alert(s, sl, lim->window_s)))
        return err;
    sl->last_raised = e->time;
    sl->n = 0;
    (*raised)++;
    return KR_OK;
}

/* request_rate: counts a tenant's records per window against its usual. */
static kr_err feed_rate(struct alr_scanner *s, const struct jrn_record *r, uint64_t *raised)
{
    const struct alr_rule_limit *lim = &s->o.rule[KR_ALERT_RULE_REQUEST_RATE];
    if (!lim->count || r->tenant == 0)
        return KR_OK;
    uint64_t window = lim->window_s * NS_PER_S;
    struct alr_subject sub = {.rule = KR_ALERT_RULE_REQUEST_RATE, .tenant = r->tenant};
    /* a tenant's slot lives as long as its history matters */
    struct alr_slot *sl = slot_for(s, &sub, r->time_ns, window * KR_ALERT_RATE_DECAY_MAX);
    if (sl->bucket_start == 0)
        sl->bucket_start = r->time_ns;
    if (r->time_ns >= sl->bucket_start + window) {
        uint64_t passed = (r->time_ns - sl->bucket_start) / window;
        sl->usual16 = (sl->usual16 * 7 + sl->bucket_n * 16) / 8;
        for (uint64_t i = 1; i < passed && i < KR_ALERT_RATE_DECAY_MAX; i++)
            sl->usual16 = sl->usual16 * 7 / 8; /* empty windows */
        sl->buckets =
            (uint32_t)(passed >= KR_ALERT_RATE_HISTORY - sl->buckets ? KR_ALERT_RATE_HISTORY
                                                                     : sl->buckets + passed);
        sl->bucket_start += passed * window;
        sl->bucket_n = 0;
        sl->n = 0;
    }
    sl->bucket_n++;
    struct alr_entry e = {.time = r->time_ns, .seq = r->seq};
    add_entry(sl, ALR_COUNT, &e, KR_ALERT_EVIDENCE_MAX);
    sl->last_seen = r->time_ns;
    if (sl->buckets < KR_ALERT_RATE_HISTORY || sl->bucket_n < s->o.rate_min ||
        sl->bucket_n * 16 < (uint64_t)lim->count * sl->usual16)
        return KR_OK;
    if (sl->last_raised && sl->last_raised + window > r->time_ns)
        return KR_OK;
    uint64_t last = 0;
    kr_err err = last_raised(s, &sub, &last);
    if (err)
        return err;
    if (last && last + window > r->time_ns) {
        sl->last_raised = last;
        return KR_OK;
    }
    uint64_t seqs[KR_ALERT_EVIDENCE_MAX];
    for (uint32_t i = 0; i < sl->n; i++)
        seqs[i] = sl->e[i].seq;
    char sum[KR_FLD_ALERT_SUMMARY_MAX + 1];
    snprintf(sum, sizeof sum,
             "request_rate: %" PRIu64 " records within %" PRIu64 " s, tenant %" PRIu64
             ", usual %" PRIu64 ".%" PRIu64 " (the evidence: the newest %" PRIu32 ")",
             sl->bucket_n, lim->window_s, r->tenant, sl->usual16 / 16, (sl->usual16 % 16) * 10 / 16,
             sl->n);
    if ((err = append_alert(s, &sub, seqs, sl->n, r->time_ns, sum)))
        return err;
    sl->last_raised = r->time_ns;
    (*raised)++;
    return KR_OK;
}

/* The rules a record feeds. */
static kr_err scan_record(struct alr_scanner *s, const struct jrn_record *r, uint64_t *raised)
{
    kr_err err = feed_rate(s, r, raised);
    if (err)
        return err;
    int ev = kr_event_lookup(r->type, r->type_len);
    bool wanted = false;
    for (size_t i = 0; i < NFEEDS; i++)
        wanted |= alr_feeds[i].ev == ev;
    if (!wanted || r->payload_stripped || r->tenant == 0)
        return KR_OK;
    struct kr_diag d = {{0}, {0}};
    err = kr_event_decode(ev, r, NULL, s->p, &d);
    if (err) {
        fprintf(stderr, "kiroku: alerts: record %" PRIu64 " skipped: %s: %s\n", r->seq, d.field,
                d.why);
        return KR_OK;
    }
    const struct kr_value *who =
        &s->p->v[ev == KR_EV_LOGIN_UNKNOWN ? KR_FLD_ATTEMPT : KR_FLD_ACCOUNT];
    if (!who->set || who->n != 16)
        return KR_OK;
    if (ev == KR_EV_ACCOUNT_LOCKED && s->p->v[KR_FLD_LOCK_REASON].u != KR_LOCK_REASON_FAILURES)
        return KR_OK;
    struct alr_entry e = {.time = r->time_ns, .seq = r->seq};
    if (ev == KR_EV_UTILITY_EXPORTED)
        e.weight = s->p->v[KR_FLD_RECORDS].u;
    memcpy(e.who, who->p, 16);
    for (size_t i = 0; i < NFEEDS && !err; i++)
        if (alr_feeds[i].ev == ev)
            err = feed(s, alr_feeds[i].rule, alr_feeds[i].mode, r->tenant, e.who, &e, raised);
    return err;
}

/* ---- Rules over state: incident deadlines, backups ---- */

/* The deadline notifications pending (v.incident_due), soonest first, up to
 * KR_ALERT_DUE_MAX: each due within the incident_due rule's window, or past,
 * raises its alert once per incident and tenant (subject: the tenant, the
 * incident id as account). */
struct due_item {
    uint64_t deadline, tenant, opened_seq;
    uint8_t incident[16];
};

static kr_err due_collect(struct alr_scanner *s, MDB_txn *txn, uint64_t horizon,
                          struct due_item *items, uint32_t *n)
{
    MDB_cursor *c;
    MDB_val k, v;
    *n = 0;
    int rc = mdb_cursor_open(txn, s->d->views.db[VIEW_INCIDENT_DUE], &c);
    if (rc)
        return kr_err_from_mdb(rc);
    kr_err err = KR_OK;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS && *n < KR_ALERT_DUE_MAX;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 32) {
            err = views_corrupt(VIEW_INCIDENT_DUE, k.mv_data, k.mv_size, "the key's length", NULL);
            break;
        }
        struct due_item *it = &items[*n];
        it->deadline = v_get_u64(k.mv_data);
        if (it->deadline > horizon)
            break;
        memcpy(it->incident, (const uint8_t *)k.mv_data + 8, 16);
        it->tenant = v_get_u64((const uint8_t *)k.mv_data + 24);
        struct vkey ik;
        vk_init(&ik);
        vk_bytes(&ik, it->incident, 16);
        MDB_val row;
        if ((err = v_get(&s->d->views, txn, VIEW_INCIDENTS, &ik, &row)))
            break;
        if (row.mv_size < 16) {
            err = views_corrupt(VIEW_INCIDENTS, it->incident, 16, "the row's length", NULL);
            break;
        }
        it->opened_seq = v_get_u64((const uint8_t *)row.mv_data + 8);
        (*n)++;
    }
    mdb_cursor_close(c);
    if (!err && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
    return err;
}

static kr_err check_incidents(struct alr_scanner *s, uint64_t now, uint64_t *raised)
{
    const struct alr_rule_limit *due = &s->o.rule[KR_ALERT_RULE_INCIDENT_DUE];
    const struct alr_rule_limit *over = &s->o.rule[KR_ALERT_RULE_INCIDENT_OVERDUE];
    if (!due->count && !over->count)
        return KR_OK;
    uint64_t horizon = due->count ? now + due->window_s * NS_PER_S : now;
    struct due_item *items = calloc(KR_ALERT_DUE_MAX, sizeof *items);
    if (!items)
        return KR_ENOMEM;
    MDB_txn *txn;
    uint32_t n = 0;
    int rc = mdb_txn_begin(jrn_env(s->d->j), NULL, MDB_RDONLY, &txn);
    kr_err err = rc ? kr_err_from_mdb(rc) : due_collect(s, txn, horizon, items, &n);
    if (!rc)
        mdb_txn_abort(txn);
    for (uint32_t i = 0; i < n && !err; i++) {
        bool passed = items[i].deadline <= now;
        int rule = passed ? KR_ALERT_RULE_INCIDENT_OVERDUE : KR_ALERT_RULE_INCIDENT_DUE;
        if (!s->o.rule[rule].count)
            continue;
        struct alr_subject sub = {.rule = (uint16_t)rule, .tenant = items[i].tenant};
        memcpy(sub.account, items[i].incident, 16);
        uint64_t last = 0;
        if ((err = last_raised(s, &sub, &last)) || last)
            continue; /* once per incident and tenant */
        char hex[33], sum[KR_FLD_ALERT_SUMMARY_MAX + 1];
        hex16(hex, items[i].incident);
        uint64_t left = passed ? (now - items[i].deadline) : (items[i].deadline - now);
        snprintf(sum, sizeof sum,
                 "%s: incident %s, tenant %" PRIu64 " not notified, deadline %s %" PRIu64 " min",
                 kr_enums[KR_ENUM_ALERT_RULE].values[rule], hex, items[i].tenant,
                 passed ? "passed" : "in", (uint64_t)(left / (60 * NS_PER_S)));
        if (!(err = append_alert(s, &sub, &items[i].opened_seq, 1, items[i].deadline, sum)))
            (*raised)++;
    }
    free(items);
    return err;
}

/* The newest backup.completed (its seq and time; 0 if none among the last
 * KR_ALERT_BACKUP_LOOKBACK records of the backups stream) and the newest
 * record of that stream (0 if none). */
static kr_err last_backup(struct alr_scanner *s, uint64_t *seq, uint64_t *time, uint64_t *newest)
{
    const char *stream = kr_events[KR_EV_BACKUP_COMPLETED].stream_prefix;
    uint64_t version = 0;
    *seq = *time = *newest = 0;
    kr_err err = jrn_stream_version(s->d->j, 0, stream, strlen(stream), &version);
    if (err || version == 0)
        return err;
    struct jrn_query q = {
        .kind = JRN_Q_STREAM,
        .from = version > KR_ALERT_BACKUP_LOOKBACK ? version - KR_ALERT_BACKUP_LOOKBACK + 1 : 1,
        .stream = stream,
        .stream_len = strlen(stream)};
    struct jrn_cursor *c;
    if ((err = jrn_cursor_new(s->d->j, &q, &c)))
        return err;
    struct jrn_record r;
    while (!(err = jrn_cursor_next(c, &r))) {
        *newest = r.seq;
        if (kr_event_lookup(r.type, r.type_len) == KR_EV_BACKUP_COMPLETED) {
            *seq = r.seq;
            *time = r.time_ns;
        }
    }
    jrn_cursor_free(c);
    return err == KR_ENOTFOUND ? KR_OK : err;
}

/* No backup completed within the rule's window (since the scanner started,
 * when there is none): one alert per window while it lasts. */
static kr_err check_backup(struct alr_scanner *s, uint64_t now, uint64_t *raised)
{
    const struct alr_rule_limit *lim = &s->o.rule[KR_ALERT_RULE_BACKUP_MISSED];
    if (!lim->count)
        return KR_OK;
    uint64_t window = lim->window_s * NS_PER_S, seq, time, newest;
    kr_err err = last_backup(s, &seq, &time, &newest);
    if (err)
        return err;
    uint64_t since = seq ? time : s->started;
    if (since + window > now)
        return KR_OK;
    struct alr_subject sub = {.rule = KR_ALERT_RULE_BACKUP_MISSED};
    uint64_t last = 0;
    if ((err = last_raised(s, &sub, &last)) || (last && last + window > now))
        return err;
    uint64_t ev = newest ? newest : s->next - 1; /* the last backup record, or the last read */
    if (ev == 0)
        return KR_OK;
    char sum[KR_FLD_ALERT_SUMMARY_MAX + 1];
    snprintf(sum, sizeof sum, "backup_missed: no backup completed for %" PRIu64 " h%s",
             (uint64_t)((now - since) / (3600 * NS_PER_S)), seq ? "" : " (none recorded)");
    if (!(err = append_alert(s, &sub, &ev, 1, now, sum)))
        (*raised)++;
    return err;
}

/* The journal's LMDB map over the rule's per cent: one alert per window
 * while it lasts. */
static kr_err check_storage(struct alr_scanner *s, uint64_t now, uint64_t *raised)
{
    const struct alr_rule_limit *lim = &s->o.rule[KR_ALERT_RULE_STORAGE_LOW];
    if (!lim->count || s->next <= 1)
        return KR_OK;
    MDB_envinfo info;
    MDB_stat st;
    MDB_env *env = jrn_env(s->d->j);
    int rc = mdb_env_info(env, &info);
    if (!rc)
        rc = mdb_env_stat(env, &st);
    if (rc)
        return kr_err_from_mdb(rc);
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize, map = info.me_mapsize;
    if (map == 0 || used * 100 < map * lim->count)
        return KR_OK;
    uint64_t window = lim->window_s * NS_PER_S, last = 0;
    struct alr_subject sub = {.rule = KR_ALERT_RULE_STORAGE_LOW};
    kr_err err = last_raised(s, &sub, &last);
    if (err || (last && last + window > now))
        return err;
    char sum[KR_FLD_ALERT_SUMMARY_MAX + 1];
    snprintf(sum, sizeof sum,
             "storage_low: the journal's map is %" PRIu64 "%% used (%" PRIu64 " of %" PRIu64
             " MiB)",
             used * 100 / map, used >> 20, map >> 20);
    uint64_t ev = s->next - 1;
    if (!(err = append_alert(s, &sub, &ev, 1, now, sum)))
        (*raised)++;
    return err;
}

/* Appends the journal refused for space since the last alert about them:
 * raised once writes succeed again (the alert's own append is the first
 * write that must), counted until then. */
static kr_err check_refused(struct alr_scanner *s, uint64_t now, uint64_t *raised)
{
    const struct alr_rule_limit *lim = &s->o.rule[KR_ALERT_RULE_WRITES_REFUSED];
    struct jrn_stats st;
    jrn_get_stats(s->d->j, &st);
    if (!lim->count) {
        s->full_seen = st.full;
        return KR_OK;
    }
    uint64_t refused = st.full - s->full_seen - s->full_own;
    if (refused < lim->count || s->next <= 1)
        return KR_OK;
    char sum[KR_FLD_ALERT_SUMMARY_MAX + 1];
    snprintf(sum, sizeof sum,
             "writes_refused: %" PRIu64 " appends refused for lack of space; writes succeed again",
             refused);
    struct alr_subject sub = {.rule = KR_ALERT_RULE_WRITES_REFUSED};
    uint64_t ev = s->next - 1;
    kr_err err = append_alert(s, &sub, &ev, 1, now, sum);
    if (err == KR_EFULL) {
        s->full_own++; /* still full: counted on, raised at a later scan */
        return KR_OK;
    }
    if (!err) {
        s->full_seen = st.full;
        s->full_own = 0;
        (*raised)++;
    }
    return err;
}

kr_err alr_scan(struct alr_scanner *s, uint64_t *raised, bool *more)
{
    uint64_t n = 0, read = 0;
    if (more)
        *more = false;
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = s->next};
    struct jrn_cursor *c;
    kr_err err = jrn_cursor_new(s->d->j, &q, &c);
    if (err)
        return err;
    struct jrn_record r;
    while (read < KR_ALERT_SCAN_BATCH && !(err = jrn_cursor_next(c, &r))) {
        if ((err = scan_record(s, &r, &n)))
            break;
        s->next = r.seq + 1;
        read++;
    }
    jrn_cursor_free(c);
    if (err == KR_ENOTFOUND) {
        /* read to the end: the rules over state look at the views now */
        uint64_t now = kr_clock_now(s->d->clock);
        if (!(err = check_refused(s, now, &n)) && !(err = check_incidents(s, now, &n)) &&
            !(err = check_backup(s, now, &n)))
            err = check_storage(s, now, &n);
    } else if (!err && more) {
        *more = true;
    }
    if (raised)
        *raised = n;
    kr_err werr = read ? cursor_write(s) : KR_OK;
    return err ? err : werr;
}

/* ---- serve's thread ---- */

struct alr_runner {
    struct alr_scanner *s;
    unsigned interval_ms;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool stop;
    uint64_t rounds;
};

static void runner_round(struct alr_runner *r)
{
    bool more = true;
    uint64_t n = 0;
    while (more) {
        kr_err err = alr_scan(r->s, &n, &more);
        if (err) {
            fprintf(stderr, "kiroku: alerts: scanning from seq %" PRIu64 ": %s\n",
                    alr_next_seq(r->s), kr_strerror(err));
            return;
        }
        pthread_mutex_lock(&r->mu);
        bool stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            return;
    }
}

static void *runner_main(void *arg)
{
    struct alr_runner *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        pthread_mutex_unlock(&r->mu);
        runner_round(r);
        pthread_mutex_lock(&r->mu);
        r->rounds++;
        pthread_cond_broadcast(&r->cv);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)(r->interval_ms / 1000u);
        until.tv_nsec += (long)(r->interval_ms % 1000u) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

kr_err alr_start(struct kr_domain *d, const struct alr_options *o, unsigned interval_ms,
                 struct alr_runner **out)
{
    *out = NULL;
    if (interval_ms == 0)
        return KR_EINVAL;
    struct alr_runner *r = calloc(1, sizeof *r);
    if (!r)
        return KR_ENOMEM;
    kr_err err = alr_new(d, o, &r->s);
    if (err) {
        free(r);
        return err;
    }
    r->interval_ms = interval_ms;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&r->mu, NULL);
    if (pthread_create(&r->th, NULL, runner_main, r) != 0) {
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        alr_free(r->s);
        free(r);
        return KR_EIO;
    }
    *out = r;
    return KR_OK;
}

void alr_stop(struct alr_runner *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->th, NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    alr_free(r->s);
    free(r);
}

uint64_t alr_rounds(struct alr_runner *r)
{
    pthread_mutex_lock(&r->mu);
    uint64_t n = r->rounds;
    pthread_mutex_unlock(&r->mu);
    return n;
}
