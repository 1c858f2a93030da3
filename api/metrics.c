/*
 * metrics.c: counters, the Prometheus page and the health verdict (see
 * metrics.h).
 *
 * Design notes. Request counters are a fixed table of relaxed atomics
 * indexed by op and result: a request costs three atomic adds and a bucket
 * search, no lock. Everything else is read when scraped, from the journal's
 * statistics and LMDB's own counts (mdb_stat of a view: its entries, without
 * reading them), so the server pays nothing between scrapes. The event tail
 * is the one piece of state a scrape changes: it is under a mutex, so two
 * scrapes at once never count a record twice.
 */
#include "metrics.h"
#include "follower.h"
#include "platform.h"

#include "journal.h"
#include "kr_limits.h"
#include "schema.h"
#include "views.h"

#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Request latency buckets, in microseconds (the page says seconds). */
#define REQ_BUCKETS 14
static const uint64_t req_bucket_us[REQ_BUCKETS] = {500,     1000,    2500,    5000,    10000,
                                                    25000,   50000,   100000,  250000,  500000,
                                                    1000000, 2500000, 5000000, 10000000};

/* Row KR_OP__COUNT: requests whose op could not be read. */
static _Atomic uint64_t req_count[KR_OP__COUNT + 1][KR_ERR__COUNT + 1];
static _Atomic uint64_t req_hist[REQ_BUCKETS + 1]; /* the last: slower than every bound */
static _Atomic uint64_t req_ns_sum;

void api_metrics_request(int op, int result, uint64_t ns)
{
    size_t row = op >= 0 && op < KR_OP__COUNT ? (size_t)op : KR_OP__COUNT;
    size_t col = result >= 0 && result <= KR_ERR__COUNT ? (size_t)result : KR_ERR_INTERNAL;
    atomic_fetch_add_explicit(&req_count[row][col], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < REQ_BUCKETS && ns > req_bucket_us[b] * 1000u)
        b++;
    atomic_fetch_add_explicit(&req_hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&req_ns_sum, ns, memory_order_relaxed);
}

struct api_metrics {
    struct kr_domain *d;
    struct api_metrics_options o;
    unsigned (*conns)(const void *arg);
    const void *conns_arg;
    struct api_follower *follower; /* kiroku follow's, or NULL */
    struct api_platform *platform; /* serve --platform's importer, or NULL */
    pthread_mutex_t mu;
    /* Under mu: the event tail and the write-refusal state. */
    uint64_t tail;                     /* records counted: 1..tail */
    uint64_t events[KR_EV__COUNT + 1]; /* by type; the last: unknown types */
    uint64_t full_seen;                /* the journal's refused_full at the last look */
    uint64_t full_events;              /* its events when refused_full last grew */
    bool full_now;                     /* refused since the last success */
    uint64_t first_time_ns;            /* record 1's time, once read (0 = not yet) */
    struct cluster *cl;                /* the publisher (serve --nats), or NULL */
    void (*node)(void *arg, struct api_node_stats *out); /* serve --node, or NULL */
    void *node_arg;
};

kr_err api_metrics_new(struct kr_domain *d, const struct api_metrics_options *o,
                       struct api_metrics **out)
{
    *out = NULL;
    struct api_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return KR_ENOMEM;
    m->d = d;
    if (o)
        m->o = *o;
    if (!m->o.backup_max_age_s)
        m->o.backup_max_age_s = API_METRICS_BACKUP_MAX_AGE_S;
    if (!m->o.outbox_backlog_max)
        m->o.outbox_backlog_max = API_METRICS_OUTBOX_BACKLOG_MAX;
    if (!m->o.checkpoint_file_lag_s)
        m->o.checkpoint_file_lag_s = API_METRICS_CHECKPOINT_LAG_S;
    if (!m->o.map_use_max_pct)
        m->o.map_use_max_pct = API_METRICS_MAP_USE_MAX_PCT;
    m->tail = jrn_size(d->j);
    struct jrn_stats st;
    jrn_get_stats(d->j, &st);
    m->full_seen = st.refused_full;
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return KR_OK;
}

void api_metrics_free(struct api_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void api_metrics_set_conns(struct api_metrics *m, unsigned (*conns)(const void *arg),
                           const void *arg)
{
    m->conns = conns;
    m->conns_arg = arg;
}

void api_metrics_set_platform(struct api_metrics *m, struct api_platform *p)
{
    m->platform = p;
}

void api_metrics_set_follower(struct api_metrics *m, struct api_follower *f)
{
    m->follower = f;
}

void api_metrics_set_cluster(struct api_metrics *m, struct cluster *cl)
{
    m->cl = cl;
}

void api_metrics_set_node(struct api_metrics *m,
                          void (*node)(void *arg, struct api_node_stats *out), void *arg)
{
    m->node = node;
    m->node_arg = arg;
}

/* ---- What a scrape reads ---- */

struct snapshot {
    uint64_t now_ns;
    uint64_t records;
    struct jrn_stats js;
    kr_err failed;
    uint64_t map_size, map_used;
    uint64_t sessions, outbox_backlog;
    bool has_last_time;
    uint64_t last_time_ns; /* the newest record's: its commit signed a checkpoint */
    bool has_backup;
    uint64_t backup_time_ns; /* newest backup.completed, else 0 */
    uint64_t first_time_ns;
    unsigned conns;
    bool has_conns;
};

/* Counts the records committed since the last scrape by type, at most
 * KR_METRICS_SCAN_MAX of them. Under m->mu. */
static kr_err tail_events(struct api_metrics *m, uint64_t size)
{
    if (size <= m->tail)
        return KR_OK;
    uint64_t to = size - m->tail > KR_METRICS_SCAN_MAX ? m->tail + KR_METRICS_SCAN_MAX : size;
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = m->tail + 1, .to = to};
    struct jrn_cursor *c;
    kr_err err = jrn_cursor_new(m->d->j, &q, &c);
    if (err)
        return err;
    struct jrn_record r;
    while ((err = jrn_cursor_next(c, &r)) == KR_OK) {
        int ev = kr_event_lookup(r.type, r.type_len);
        m->events[ev >= 0 ? (size_t)ev : KR_EV__COUNT]++;
        m->tail = r.seq;
    }
    jrn_cursor_free(c);
    return err == KR_ENOTFOUND ? KR_OK : err;
}

/* The time of record seq into *t. */
static kr_err record_time(struct journal *j, uint64_t seq, uint64_t *t)
{
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    kr_err err = jrn_read(j, seq, &b);
    if (!err)
        *t = b.rec.time_ns;
    jrn_recbuf_fini(&b);
    return err;
}

/* The newest backup.completed among the last KR_METRICS_BACKUP_SCAN
 * records of the backups stream. */
static kr_err newest_backup(struct journal *j, bool *found, uint64_t *t)
{
    const struct kr_event_def *ev = &kr_events[KR_EV_BACKUP_COMPLETED];
    const char *stream = ev->stream_prefix;
    uint64_t version = 0;
    *found = false;
    kr_err err = jrn_stream_version(j, 0, stream, strlen(stream), &version);
    if (err == KR_ENOTFOUND || (!err && version == 0))
        return KR_OK;
    if (err)
        return err;
    struct jrn_query q = {
        .kind = JRN_Q_STREAM,
        .from = version > KR_METRICS_BACKUP_SCAN ? version - KR_METRICS_BACKUP_SCAN + 1 : 1,
        .tenant = 0,
        .stream = stream,
        .stream_len = strlen(stream)};
    struct jrn_cursor *c;
    if ((err = jrn_cursor_new(j, &q, &c)))
        return err;
    struct jrn_record r;
    for (unsigned n = 0; n < KR_METRICS_BACKUP_SCAN && (err = jrn_cursor_next(c, &r)) == KR_OK; n++)
        if (kr_event_lookup(r.type, r.type_len) == KR_EV_BACKUP_COMPLETED) {
            *found = true;
            *t = r.time_ns;
        }
    jrn_cursor_free(c);
    return err == KR_ENOTFOUND ? KR_OK : err;
}

/* Map size and use, stored sessions and the outbox backlog. */
static kr_err storage_read(struct api_metrics *m, struct snapshot *s)
{
    MDB_env *env = jrn_env(m->d->j);
    MDB_envinfo info;
    MDB_stat est;
    if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &est) != 0)
        return KR_EIO;
    s->map_size = info.me_mapsize;
    s->map_used = ((uint64_t)info.me_last_pgno + 1) * est.ms_psize;
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return KR_EIO;
    MDB_stat st;
    if ((rc = mdb_stat(txn, m->d->views.db[VIEW_SESSIONS], &st)) == 0)
        s->sessions = st.ms_entries;
    if (!rc && (rc = mdb_stat(txn, m->d->views.db[VIEW_OUTBOX_PENDING], &st)) == 0)
        s->outbox_backlog = st.ms_entries;
    mdb_txn_abort(txn);
    return rc ? KR_EIO : KR_OK;
}

/* Everything a page or a verdict needs, and the event tail moved on. */
static kr_err snapshot_take(struct api_metrics *m, struct snapshot *s)
{
    struct journal *j = m->d->j;
    memset(s, 0, sizeof *s);
    s->now_ns = kr_clock_now(m->d->clock);
    s->records = jrn_size(j);
    jrn_get_stats(j, &s->js);
    s->failed = jrn_failed(j);
    kr_err err = storage_read(m, s);
    if (!err && s->records > 0 && !(err = record_time(j, s->records, &s->last_time_ns)))
        s->has_last_time = true;
    if (!err)
        err = newest_backup(j, &s->has_backup, &s->backup_time_ns);
    if (m->conns) {
        s->conns = m->conns(m->conns_arg);
        s->has_conns = true;
    }
    pthread_mutex_lock(&m->mu);
    if (!err && !m->first_time_ns && s->records > 0)
        err = record_time(j, 1, &m->first_time_ns);
    s->first_time_ns = m->first_time_ns;
    if (!err)
        err = tail_events(m, s->records);
    /* Refused for space: from a refusal until an append succeeds again. */
    if (s->js.refused_full != m->full_seen) {
        m->full_seen = s->js.refused_full;
        m->full_events = s->js.events;
        m->full_now = true;
    } else if (m->full_now && s->js.events > m->full_events) {
        m->full_now = false;
    }
    pthread_mutex_unlock(&m->mu);
    return err;
}

/* ---- Writing ---- */

static void put(struct kr_wbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct kr_wbuf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) {
        b->failed = b->failed ? b->failed : KR_ETOOLARGE;
        return;
    }
    if (kr_wbuf_add(b, line, (size_t)n) != KR_OK)
        return; /* the buffer remembers the failure */
}

static void head(struct kr_wbuf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static double secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

static uint64_t age_ns(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}

static void render_requests(struct kr_wbuf *b)
{
    head(b, "kiroku_requests_total", "counter", "Requests handled, by op and result.");
    for (size_t op = 0; op <= KR_OP__COUNT; op++)
        for (size_t r = 0; r <= KR_ERR__COUNT; r++) {
            uint64_t n = atomic_load_explicit(&req_count[op][r], memory_order_relaxed);
            if (n)
                put(b, "kiroku_requests_total{op=\"%s\",result=\"%s\"} %" PRIu64 "\n",
                    op < KR_OP__COUNT ? kr_ops[op].name : "unknown",
                    r < KR_ERR__COUNT ? kr_api_errors[r].name : "ok", n);
        }
    head(b, "kiroku_request_duration_seconds", "histogram",
         "Time to handle a request (decode, run, encode the reply).");
    uint64_t cum = 0;
    for (size_t i = 0; i < REQ_BUCKETS; i++) {
        cum += atomic_load_explicit(&req_hist[i], memory_order_relaxed);
        put(b, "kiroku_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
            (double)req_bucket_us[i] / 1e6, cum);
    }
    cum += atomic_load_explicit(&req_hist[REQ_BUCKETS], memory_order_relaxed);
    put(b, "kiroku_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    put(b, "kiroku_request_duration_seconds_sum %.9f\n",
        secs(atomic_load_explicit(&req_ns_sum, memory_order_relaxed)));
    put(b, "kiroku_request_duration_seconds_count %" PRIu64 "\n", cum);
}

static void render_events(struct api_metrics *m, struct kr_wbuf *b)
{
    head(b, "kiroku_events_appended_total", "counter",
         "Journal records committed since the server started, by event type "
         "(lockouts: account.locked; alerts: alert.raised; delivery failures: outbox.refused).");
    pthread_mutex_lock(&m->mu);
    for (size_t ev = 0; ev < KR_EV__COUNT; ev++)
        put(b, "kiroku_events_appended_total{type=\"%s\"} %" PRIu64 "\n", kr_events[ev].name,
            m->events[ev]);
    if (m->events[KR_EV__COUNT])
        put(b, "kiroku_events_appended_total{type=\"unknown\"} %" PRIu64 "\n",
            m->events[KR_EV__COUNT]);
    pthread_mutex_unlock(&m->mu);
}

static void render_journal(const struct snapshot *s, struct kr_wbuf *b)
{
    head(b, "kiroku_journal_records", "gauge", "Records in the journal (its durable size).");
    put(b, "kiroku_journal_records %" PRIu64 "\n", s->records);
    head(b, "kiroku_journal_map_size_bytes", "gauge", "The LMDB map size.");
    put(b, "kiroku_journal_map_size_bytes %" PRIu64 "\n", s->map_size);
    head(b, "kiroku_journal_map_used_bytes", "gauge",
         "Bytes of the LMDB map in use (journal, views and free pages): the journal's size.");
    put(b, "kiroku_journal_map_used_bytes %" PRIu64 "\n", s->map_used);
    head(b, "kiroku_journal_commit_duration_seconds", "histogram",
         "Time of each journal commit (page writes and fsync), which every append waits for.");
    uint64_t cum = 0;
    for (size_t i = 0; i < JRN_COMMIT_BUCKETS; i++) {
        cum += s->js.commit_hist[i];
        put(b, "kiroku_journal_commit_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
            (double)jrn_commit_bucket_us[i] / 1e6, cum);
    }
    put(b, "kiroku_journal_commit_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
        s->js.batches);
    put(b, "kiroku_journal_commit_duration_seconds_sum %.9f\n", secs(s->js.commit_ns));
    put(b, "kiroku_journal_commit_duration_seconds_count %" PRIu64 "\n", s->js.batches);
    head(b, "kiroku_journal_appends_refused_full_total", "counter",
         "Appends refused because the disk or the LMDB map was full.");
    put(b, "kiroku_journal_appends_refused_full_total %" PRIu64 "\n", s->js.refused_full);
    head(b, "kiroku_journal_writable", "gauge",
         "1 while the journal takes writes, 0 after an I/O error stopped them.");
    put(b, "kiroku_journal_writable %d\n", s->failed ? 0 : 1);
    if (s->has_last_time) {
        head(b, "kiroku_checkpoint_age_seconds", "gauge",
             "Age of the newest signed checkpoint (signed with the newest record).");
        put(b, "kiroku_checkpoint_age_seconds %.3f\n", secs(age_ns(s->now_ns, s->last_time_ns)));
    }
    head(b, "kiroku_checkpoint_file_lag_records", "gauge",
         "Records the checkpoint file (rollback detection) trails the journal by.");
    put(b, "kiroku_checkpoint_file_lag_records %" PRIu64 "\n",
        s->records > s->js.file_size ? s->records - s->js.file_size : 0);
    if (s->has_backup) {
        head(b, "kiroku_backup_age_seconds", "gauge", "Age of the newest completed backup.");
        put(b, "kiroku_backup_age_seconds %.3f\n", secs(age_ns(s->now_ns, s->backup_time_ns)));
    }
}

static void render_service(const struct snapshot *s, struct kr_wbuf *b)
{
    if (s->has_conns) {
        head(b, "kiroku_connections", "gauge", "API connections open (both endpoints).");
        put(b, "kiroku_connections %u\n", s->conns);
    }
    head(b, "kiroku_sessions", "gauge", "Login sessions stored (expired ones until swept).");
    put(b, "kiroku_sessions %" PRIu64 "\n", s->sessions);
    head(b, "kiroku_outbox_backlog", "gauge", "E-mails queued and not yet delivered.");
    put(b, "kiroku_outbox_backlog %" PRIu64 "\n", s->outbox_backlog);
}

static void render_follower(struct api_follower *f, struct kr_wbuf *b)
{
    struct api_follower_status st;
    api_follower_status(f, &st);
    head(b, "kiroku_follower_applied_seq", "gauge",
         "The last record a follower verified and applied from the stream.");
    put(b, "kiroku_follower_applied_seq %" PRIu64 "\n", st.applied);
    head(b, "kiroku_follower_received_seq", "gauge",
         "The last record of the newest stream message the follower received.");
    put(b, "kiroku_follower_received_seq %" PRIu64 "\n", st.received);
    head(b, "kiroku_follower_lag_records", "gauge",
         "Records received and not yet applied (their range's checkpoint not yet come).");
    put(b, "kiroku_follower_lag_records %" PRIu64 "\n",
        st.received > st.applied ? st.received - st.applied : 0);
    head(b, "kiroku_follower_lag_messages", "gauge",
         "Stream messages beyond the newest one received, when it was received.");
    put(b, "kiroku_follower_lag_messages %" PRIu64 "\n", st.pending_msgs);
    head(b, "kiroku_follower_connected", "gauge", "1 while the follower has a NATS connection.");
    put(b, "kiroku_follower_connected %d\n", st.connected ? 1 : 0);
    head(b, "kiroku_follower_faults_total", "counter",
         "Records or checkpoints in the stream that failed verification (the follower stops).");
    put(b, "kiroku_follower_faults_total %" PRIu64 "\n", st.faults);
}

static void render_platform(struct api_platform *p, struct kr_wbuf *b)
{
    struct api_platform_status st;
    api_platform_status(p, &st);
    head(b, "kiroku_platform_copy_seq", "gauge",
         "Records in this shard's verified copy of the platform journal (DIR/platform).");
    put(b, "kiroku_platform_copy_seq %" PRIu64 "\n", st.copied);
    head(b, "kiroku_platform_scanned_seq", "gauge",
         "The last platform record the importer looked at.");
    put(b, "kiroku_platform_scanned_seq %" PRIu64 "\n", st.scanned);
    head(b, "kiroku_platform_origin_seq", "gauge",
         "The highest platform record imported into this shard's journal.");
    put(b, "kiroku_platform_origin_seq %" PRIu64 "\n", st.origin);
    head(b, "kiroku_platform_imported_total", "counter",
         "Platform records imported since serve started.");
    put(b, "kiroku_platform_imported_total %" PRIu64 "\n", st.imported);
    head(b, "kiroku_platform_accounts_unreadable", "counter",
         "Operator account records of the platform skipped since serve started: their sealed "
         "fields do not open with this shard's tenant-0 key (not the platform's).");
    put(b, "kiroku_platform_accounts_unreadable %" PRIu64 "\n", st.unreadable);
    head(b, "kiroku_platform_stopped", "gauge", "1 once the importer stopped on a fault.");
    put(b, "kiroku_platform_stopped %d\n", st.stopped ? 1 : 0);
}

/* What /healthz says of a follower: stopped, or not connected. */
static void health_follower(struct api_follower *f, struct kr_wbuf *out)
{
    struct api_follower_status st;
    api_follower_status(f, &st);
    if (st.stopped)
        put(out, "follower: stopped at seq %" PRIu64 ": %s\n", st.seq, st.what);
    else if (!st.connected)
        put(out, "follower: not connected to NATS\n");
}

static void render_cluster(struct cluster *cl, struct kr_wbuf *b)
{
    struct cluster_stats cs;
    cluster_stats(cl, &cs);
    head(b, "kiroku_replication_published_seq", "gauge",
         "The last journal seq JetStream acknowledged (serve --nats).");
    put(b, "kiroku_replication_published_seq %" PRIu64 "\n", cs.published);
    head(b, "kiroku_replication_stream_seq", "gauge", "The stream sequence of the last message.");
    put(b, "kiroku_replication_stream_seq %" PRIu64 "\n", cs.stream_seq);
    head(b, "kiroku_replication_lag_records", "gauge",
         "Durable records not yet acknowledged by JetStream.");
    put(b, "kiroku_replication_lag_records %" PRIu64 "\n", cs.lag_records);
    head(b, "kiroku_replication_lag_seconds", "gauge",
         "How long the oldest durable record not yet acknowledged by JetStream has waited.");
    put(b, "kiroku_replication_lag_seconds %.3f\n", cs.lag_s);
    head(b, "kiroku_replication_fenced", "gauge",
         "1 once a publish was refused because another node wrote the stream (writes stopped).");
    put(b, "kiroku_replication_fenced %d\n", cs.fenced ? 1 : 0);
    head(b, "kiroku_replication_connected", "gauge", "1 while connected to NATS.");
    put(b, "kiroku_replication_connected %d\n", cs.connected ? 1 : 0);
    head(b, "kiroku_replication_publish_errors_total", "counter",
         "Publish attempts that failed (each retried; a fence counts once).");
    put(b, "kiroku_replication_publish_errors_total %" PRIu64 "\n", cs.errors);
    head(b, "kiroku_replication_publish_duration_seconds", "histogram",
         "Time from sending a message to JetStream's acknowledgement.");
    uint64_t cum = 0;
    for (size_t i = 0; i < CLUSTER_PUB_BUCKETS; i++) {
        cum += cs.pub_hist[i];
        put(b, "kiroku_replication_publish_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
            (double)cluster_pub_bucket_us[i] / 1e6, cum);
    }
    put(b, "kiroku_replication_publish_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
        cs.messages);
    put(b, "kiroku_replication_publish_duration_seconds_sum %.9f\n", secs(cs.pub_ns_sum));
    put(b, "kiroku_replication_publish_duration_seconds_count %" PRIu64 "\n", cs.messages);
}

/* The publisher's reasons for ill health. */
static void health_cluster(struct cluster *cl, struct kr_wbuf *out)
{
    struct cluster_stats cs;
    cluster_stats(cl, &cs);
    if (cs.fenced)
        put(out, "replication: fenced: another node published to the stream (a newer primary); "
                 "writes refused\n");
    else if (cs.behind)
        put(out, "replication: not the primary: the stream is ahead of this journal; writes "
                 "refused\n");
    else if (!cs.connected)
        put(out, "replication: not connected to NATS (%" PRIu64 " records waiting)\n",
            cs.lag_records);
}

static void render_node(const struct api_metrics *m, struct kr_wbuf *b)
{
    struct api_node_stats st = {0};
    m->node(m->node_arg, &st);
    head(b, "kiroku_node_primary", "gauge", "1 while this node is its shard's primary.");
    put(b, "kiroku_node_primary %d\n", st.primary ? 1 : 0);
    head(b, "kiroku_node_lease_epoch", "gauge", "The lease epoch this node holds (0: following).");
    put(b, "kiroku_node_lease_epoch %" PRIu64 "\n", st.epoch);
    head(b, "kiroku_node_promotions_total", "counter",
         "Times this node took the lease and started an epoch.");
    put(b, "kiroku_node_promotions_total %" PRIu64 "\n", st.promotions);
    head(b, "kiroku_node_discarded_records_total", "counter",
         "Records this node committed that the stream never got, discarded when it rejoined "
         "(listed in DIR/discarded-*.json).");
    put(b, "kiroku_node_discarded_records_total %" PRIu64 "\n", st.discarded);
    head(b, "kiroku_node_promotable", "gauge",
         "0 while this node has no current signing key and cannot become the primary.");
    put(b, "kiroku_node_promotable %d\n", st.no_key ? 0 : 1);
}

kr_err api_metrics_render(struct api_metrics *m, struct kr_wbuf *out)
{
    struct snapshot s;
    kr_wbuf_reset(out);
    kr_err err = snapshot_take(m, &s);
    if (err)
        return err;
    render_requests(out);
    render_events(m, out);
    render_journal(&s, out);
    render_service(&s, out);
    if (m->follower)
        render_follower(m->follower, out);
    if (m->platform)
        render_platform(m->platform, out);
    if (m->cl)
        render_cluster(m->cl, out);
    if (m->node)
        render_node(m, out);
    return kr_wbuf_failed(out);
}

/* ---- Health ---- */

kr_err api_metrics_health(struct api_metrics *m, struct kr_wbuf *out, bool *healthy)
{
    struct snapshot s;
    kr_wbuf_reset(out);
    *healthy = false;
    kr_err err = snapshot_take(m, &s);
    if (err)
        return err;
    pthread_mutex_lock(&m->mu);
    bool full = m->full_now;
    pthread_mutex_unlock(&m->mu);
    size_t before = out->size;
    if (s.failed == KR_ENOTPRIMARY) /* fenced, or the stream is ahead */
        put(out, "journal: not writable: this node is not the primary\n");
    else if (s.failed)
        put(out, "journal: not writable: writes stopped: %s (restart once the storage is fixed)\n",
            kr_strerror(s.failed));
    if (full)
        put(out, "journal: not writable: appends refused, the disk or the map is full\n");
    if (s.map_size && s.map_used * 100 / s.map_size >= m->o.map_use_max_pct)
        put(out, "journal: the map is %" PRIu64 "%% used (at most %" PRIu64 "%%)\n",
            s.map_used * 100 / s.map_size, m->o.map_use_max_pct);
    if (s.js.file_error)
        put(out, "checkpoint: writing the checkpoint file failed: %s\n",
            kr_strerror(s.js.file_error));
    /* The file is rewritten after commits: with none since the journal
     * opened, it holds what the last run wrote and is not behind. */
    else if (s.js.batches > 0 && s.records > s.js.file_size && s.has_last_time &&
             age_ns(s.now_ns, s.last_time_ns) > m->o.checkpoint_file_lag_s * (uint64_t)1000000000u)
        put(out, "checkpoint: the checkpoint file trails the journal by %" PRIu64 " records\n",
            s.records - s.js.file_size);
    if (m->o.backups_expected) {
        uint64_t since = s.has_backup ? s.backup_time_ns : s.first_time_ns;
        uint64_t age = age_ns(s.now_ns, since);
        if (age > m->o.backup_max_age_s * (uint64_t)1000000000u)
            put(out, "backup: %s %" PRIu64 " h ago (at most %" PRIu64 " h)\n",
                s.has_backup ? "the newest completed" : "none completed since the journal began",
                age / (uint64_t)3600000000000u, m->o.backup_max_age_s / 3600);
    }
    if (m->cl)
        health_cluster(m->cl, out);
    if (s.outbox_backlog > m->o.outbox_backlog_max)
        put(out, "outbox: %" PRIu64 " e-mails waiting (at most %" PRIu64 ")\n", s.outbox_backlog,
            m->o.outbox_backlog_max);
    if (m->follower)
        health_follower(m->follower, out);
    if (m->platform) {
        struct api_platform_status st;
        api_platform_status(m->platform, &st);
        if (st.stopped)
            put(out, "platform import: stopped at seq %" PRIu64 ": %s\n", st.seq, st.what);
    }
    if (m->node) {
        struct api_node_stats st = {0};
        m->node(m->node_arg, &st);
        if (st.no_key)
            put(out, "node: cannot be promoted: no current signing key (DIR/keys, the keyring)\n");
    }
    *healthy = out->size == before && !kr_wbuf_failed(out);
    if (*healthy)
        put(out, "ok\n");
    return kr_wbuf_failed(out);
}
