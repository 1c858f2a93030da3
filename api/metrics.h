/*
 * metrics.h: what operators watch: counters of the server's work, rendered
 * in the Prometheus text format (/metrics), and a health verdict with its
 * reasons (/healthz). api/http.h serves both.
 *
 * Counters are process-wide atomics, bounded in number: requests by op and
 * result (a fixed table: every op of the schema times "ok" and every API
 * error code), a request latency histogram, events appended by type (the
 * schema's events). Nothing is kept per tenant or per address. Counters
 * start at zero with the process, as Prometheus expects of counters.
 *
 * Events appended by type are counted from the journal itself: a scrape
 * reads the records committed since the last one (at most
 * KR_METRICS_SCAN_MAX per scrape; the rest on the next), so only committed
 * records count and an aborted batch never does. Lockouts and alerts are
 * such event types (account.locked, alert.raised), and so are delivery
 * failures (outbox.refused).
 *
 * Gauges are read at the scrape: journal records, LMDB map size and use,
 * commit latency (the journal's histogram of commits), the age of the newest
 * signed checkpoint (the time of the newest record: each commit signs one),
 * the checkpoint file's lag, the newest backup's age (the newest
 * backup.completed record), open connections, stored sessions and the
 * outbox backlog (entries of the views).
 *
 * Threads: api_metrics_request may run on any thread at any time;
 * api_metrics_render and api_metrics_health on many threads at once (a lock
 * serialises their journal scans).
 */
#ifndef KR_API_METRICS_H
#define KR_API_METRICS_H

#include "cluster.h"
#include "domain.h"
#include "kr_error.h"
#include "wbuf.h"

#include <stdbool.h>
#include <stdint.h>

/* The result column of a request for a reply with ok true. Error replies
 * use their API error code (enum kr_api_err, 0..KR_ERR__COUNT-1). */
#define API_METRICS_OK KR_ERR__COUNT

/* Counts one request: op (enum kr_op, or -1 when the request named none
 * that could be read), result (API_METRICS_OK or an API error code) and how
 * long it took to handle, in nanoseconds. Lock-free. */
void api_metrics_request(int op, int result, uint64_t ns);

/* What /healthz holds against. Zero fields take the defaults. */
struct api_metrics_options {
    /* Backups are taken by this server (serve --backups): the newest
     * backup.completed, or the journal's first record when there is none,
     * must be younger than backup_max_age_s. */
    bool backups_expected;
    uint64_t backup_max_age_s;      /* 0 = API_METRICS_BACKUP_MAX_AGE_S */
    uint64_t outbox_backlog_max;    /* 0 = API_METRICS_OUTBOX_BACKLOG_MAX */
    uint64_t checkpoint_file_lag_s; /* 0 = API_METRICS_CHECKPOINT_LAG_S */
    uint64_t map_use_max_pct;       /* 0 = API_METRICS_MAP_USE_MAX_PCT */
};
#define API_METRICS_BACKUP_MAX_AGE_S   ((uint64_t)26 * 3600u) /* daily, with 2 hours' slack */
#define API_METRICS_OUTBOX_BACKLOG_MAX 1000u
#define API_METRICS_CHECKPOINT_LAG_S   60u
#define API_METRICS_MAP_USE_MAX_PCT    90u

/* The scrape state over one domain (which must outlive it): where the event
 * tail stands (the journal's size when it was made) and the options.
 * KR_ENOMEM. */
struct api_metrics;
KR_MUST_CHECK kr_err api_metrics_new(struct kr_domain *d, const struct api_metrics_options *o,
                                     struct api_metrics **out);
void api_metrics_free(struct api_metrics *m); /* accepts NULL */

/* Where the open connections come from: conns(arg), e.g. api_server_conns
 * of the server (which must outlive the scrapes); NULL = not reported. Set
 * before serving. A callback, so this module does not pull in the server. */
void api_metrics_set_conns(struct api_metrics *m, unsigned (*conns)(const void *arg),
                           const void *arg);

/* A follower (kiroku follow, api/follower.h) whose status the page and the
 * health verdict report: applied and received seqs, lag in records and
 * messages, the connection, faults; /healthz fails while it is not
 * connected or once it stopped. It must outlive the scrapes; NULL = none.
 * Set before serving. */
struct api_follower;
void api_metrics_set_follower(struct api_metrics *m, struct api_follower *f);

/* The publisher (serve --nats; api/cluster.h) whose replication metrics
 * (published seq, lag in records and seconds, publish latency, errors,
 * connected, fenced) the page shows and whose fence, "not the primary" or
 * lost connection fails /healthz. NULL = none. Set before serving; it must
 * outlive the scrapes. */
void api_metrics_set_cluster(struct api_metrics *m, struct cluster *cl);

struct api_platform;
/* A tenant shard's importer of the platform journal (serve --platform;
 * api/platform.h): its copy's size, the platform seq it scanned and the
 * highest imported, imports since it started; a stopped importer fails
 * /healthz. NULL = none. Set before serving; it must outlive the scrapes. */
void api_metrics_set_platform(struct api_metrics *m, struct api_platform *p);

/* A role-changing node's (serve --node, tools/serve_node.h) state, as its
 * callback gives it at each scrape: its role now (1 primary, 0 follower),
 * the lease epoch it holds (0 when following), promotions and records
 * discarded (committed here, never in the stream) since it started, and
 * whether it could be promoted. */
struct api_node_stats {
    bool primary;
    uint64_t epoch, promotions, discarded;
    /* The node found no current signing key (neither DIR/keys nor the
     * keyring has it): it stays a follower and never takes the lease;
     * kiroku_node_promotable 0 and /healthz fails saying so. */
    bool no_key;
};
/* node(arg, out) is called at each scrape (any thread; keep it short);
 * NULL = none. Set before serving. */
void api_metrics_set_node(struct api_metrics *m,
                          void (*node)(void *arg, struct api_node_stats *out), void *arg);

/* Writes the whole /metrics page (Prometheus text format 0.0.4) into out
 * (reset first; init it with a ceiling of KR_METRICS_PAGE_MAX). Errors:
 * KR_ETOOLARGE or KR_ENOMEM from the buffer; a journal read error. */
KR_MUST_CHECK kr_err api_metrics_render(struct api_metrics *m, struct kr_wbuf *out);

/* Checks health and writes the verdict into out (reset first): "ok\n", or
 * one line per reason, each "<what>: <why>\n". *healthy is whether nothing
 * is wrong. What it checks: the journal takes writes (no stop after an I/O
 * error, no append refused for space since the last that succeeded), the
 * LMDB map is below map_use_max_pct, the checkpoint file trails the journal
 * by at most checkpoint_file_lag_s and its last write succeeded, the backup
 * age (when expected), the outbox backlog, and a node that cannot be
 * promoted (api_node_stats.no_key). Errors as api_metrics_render. */
KR_MUST_CHECK kr_err api_metrics_health(struct api_metrics *m, struct kr_wbuf *out, bool *healthy);

#endif
