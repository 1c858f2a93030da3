/*
 * serve_jobs.h: the background jobs of a primary: what plain `kiroku serve`
 * runs for its whole life, and what a `serve --node` runs only while it is
 * its shard's primary (tools/serve_node.h).
 *
 *   the daily scheduler (tools/daily.h): the retention job at start and
 *     every 24 hours (ret_run, then outbox files older than
 *     mail.outbox_keep_days deleted), the backup at backup_at_min JST when
 *     backups are asked for (tools_backup_daily), and the minute job: the
 *     incident notices owed (dom_incident_mail, incidents.warn_before_h);
 *   the alert scanner (projections/alerts.h) with the alerts.* thresholds.
 *
 * The e-mail worker is not here: it belongs to the API server
 * (api_server_options.mail, no_mailer), which a node starts with it only
 * while primary.
 *
 * Every job appends through the domain given to serve_jobs_start; a domain
 * whose appends stopped (KR_ENOTPRIMARY: the lease lost, a fenced publish)
 * makes the job under way fail cleanly with that error, logged, and nothing
 * is half done (each job is safe to cut, see daily.h). Stop the jobs
 * (serve_jobs_stop) before the domain closes, and on a step-down before
 * the node follows.
 */
#ifndef KR_TOOLS_SERVE_JOBS_H
#define KR_TOOLS_SERVE_JOBS_H

#include "alerts.h"
#include "clock.h"
#include "domain.h"
#include "kr_error.h"
#include "retention_hooks.h"

#include <stdbool.h>
#include <stdint.h>

struct kr_config;

/* What the jobs do, from the command line and the settings; set once
 * (serve_jobs_configure), then given to every start. */
struct serve_jobs_options {
    const struct kr_clock *clock; /* NULL = system */
    /* The backup generations (tools/retention_hooks.h); backups_dir is where
     * the daily backup goes. Must outlive every start. */
    struct tools_ret *tr;
    bool backups;              /* --backups given: the daily backup runs */
    unsigned backup_at_min;    /* --backup-at, minutes after midnight JST */
    bool json;                 /* --json: fewer progress lines */
    uint64_t incident_warn_ns; /* incidents.warn_before_h */
    bool incident_auto;        /* incidents.auto_notify: false = operators notify */
    uint64_t outbox_keep_ns;   /* mail.outbox_keep_days */
    struct alr_options alerts; /* alerts.* (backup_missed off without backups) */
    unsigned alert_scan_ms;    /* alerts.scan_interval_s */
};

/* Fills o from the settings cfg and the options given (tr must outlive
 * every start). */
void serve_jobs_configure(struct serve_jobs_options *o, const struct kr_config *cfg,
                          const struct kr_clock *clock, struct tools_ret *tr, bool backups,
                          unsigned backup_at_min, bool json);

struct serve_jobs;

/* Starts the scheduler's thread and the alert scanner over d (a primary's
 * domain, which must outlive serve_jobs_stop). o is copied. daily_start's
 * and alr_start's errors (nothing left running on error). */
KR_MUST_CHECK kr_err serve_jobs_start(const struct serve_jobs_options *o, struct kr_domain *d,
                                      struct serve_jobs **out);

/* Stops both after the job and the scan they run (if any), frees them.
 * Accepts NULL. */
void serve_jobs_stop(struct serve_jobs *sj);

#endif
