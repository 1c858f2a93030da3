/*
 * serve_jobs.c: a primary's background jobs (serve_jobs.h).
 */
#include "serve_jobs.h"

#include "backup.h"
#include "config.h"
#include "daily.h"
#include "mailer.h"
#include "notices.h"
#include "retention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct serve_jobs {
    struct serve_jobs_options o;
    struct kr_domain *d;
    struct daily *sched;
    struct alr_runner *alerts;
};

void serve_jobs_configure(struct serve_jobs_options *o, const struct kr_config *cfg,
                          const struct kr_clock *clock, struct tools_ret *tr, bool backups,
                          unsigned backup_at_min, bool json)
{
    memset(o, 0, sizeof *o);
    o->clock = clock;
    o->tr = tr;
    o->backups = backups;
    o->backup_at_min = backup_at_min;
    o->json = json;
    o->incident_warn_ns = kr_config_u64(cfg, "incidents.warn_before_h") * 3600ull * 1000000000ull;
    o->incident_auto = kr_config_bool(cfg, "incidents.auto_notify");
    o->outbox_keep_ns = kr_config_u64(cfg, "mail.outbox_keep_days") * 86400ull * 1000000000ull;
    struct alr_options *a = &o->alerts;
    alr_defaults(a);
    for (int i = 0; i < KR_ALERT_RULE__COUNT; i++) {
        char name[64];
        const char *rule = kr_enums[KR_ENUM_ALERT_RULE].values[i];
        snprintf(name, sizeof name, "alerts.%s.count", rule);
        a->rule[i].count = (uint32_t)kr_config_u64(cfg, name);
        if (i == KR_ALERT_RULE_INCIDENT_OVERDUE || i == KR_ALERT_RULE_WRITES_REFUSED)
            continue; /* once per incident and tenant, once per full spell: no window */
        snprintf(name, sizeof name, "alerts.%s.window_s", rule);
        a->rule[i].window_s = kr_config_u64(cfg, name);
    }
    a->rate_min = (uint32_t)kr_config_u64(cfg, "alerts.request_rate.min");
    if (!backups)
        a->rule[KR_ALERT_RULE_BACKUP_MISSED].count = 0;
    o->alert_scan_ms = (unsigned)kr_config_u64(cfg, "alerts.scan_interval_s") * 1000u;
}

static void job_retention(void *arg)
{
    struct serve_jobs *sj = arg;
    struct ret_report *r = malloc(sizeof *r);
    if (!r) {
        fprintf(stderr, "kiroku: serve: retention: %s\n", kr_strerror(KR_ENOMEM));
        return;
    }
    kr_err err = ret_run(sj->d, false, r);
    size_t erased = 0;
    for (size_t i = 0; i < r->n; i++) {
        erased += r->tenants[i].erased;
        if (r->tenants[i].err)
            fprintf(stderr,
                    "kiroku: serve: retention: tenant %llu stopped at step %s: %s (it stays due)\n",
                    (unsigned long long)r->tenants[i].tenant, r->tenants[i].step,
                    kr_strerror(r->tenants[i].err));
    }
    if (r->applications_expired)
        fprintf(stderr, "kiroku: serve: retention: %llu unconfirmed application%s expired\n",
                (unsigned long long)r->applications_expired,
                r->applications_expired == 1 ? "" : "s");
    if (err)
        fprintf(stderr, "kiroku: serve: retention: %s\n", kr_strerror(err));
    else if (erased || r->stripped)
        fprintf(stderr,
                "kiroku: serve: retention: %zu tenant%s erased, %llu log record%s stripped\n",
                erased, erased == 1 ? "" : "s", (unsigned long long)r->stripped,
                r->stripped == 1 ? "" : "s");
    free(r);
    size_t pruned = 0;
    if ((err = mailer_prune_files(sj->d, sj->o.outbox_keep_ns, &pruned)))
        fprintf(stderr, "kiroku: serve: retention: outbox files: %s\n", kr_strerror(err));
    else if (pruned)
        fprintf(stderr, "kiroku: serve: retention: %zu outbox file%s deleted\n", pruned,
                pruned == 1 ? "" : "s");
}

static void job_backup(void *arg)
{
    struct serve_jobs *sj = arg;
    char reason[256];
    kr_err err = tools_backup_daily(sj->o.tr, sj->d, reason);
    if (err)
        fprintf(stderr, "kiroku: serve: backup failed: %s\n", reason);
}

/* The minute job: the incident notices owed (near or past their deadline)
 * queued by e-mail, in rounds of KR_OUTBOX_BATCH_MAX; the mailer delivers
 * them. On the platform shard: the notifications recorded, which the
 * tenants' shards import and e-mail. With incidents.auto_notify = false
 * operators notify, and the job queues only the update and resolution
 * e-mails owed to the tenants they e-mailed. */
static void job_incidents(void *arg)
{
    struct serve_jobs *sj = arg;
    size_t queued = 0, total = 0;
    kr_err err = KR_OK;
    for (unsigned i = 0; i < KR_INCIDENT_MAIL_ROUNDS; i++) {
        if (sj->o.incident_auto)
            err = dom_incident_mail(sj->d, sj->o.incident_warn_ns, 0, &queued);
        else
            err = dom_incident_update_mail(sj->d, 0, &queued);
        if (err || queued == 0)
            break;
        total += queued;
    }
    if (err)
        fprintf(stderr, "kiroku: serve: incident notices: %s (tried again in a minute)\n",
                kr_strerror(err));
    if (total && !sj->o.json && sj->d->platform)
        fprintf(stderr,
                "kiroku: serve: incident notices: %zu tenant%s notified (their shards e-mail "
                "them)\n",
                total, total == 1 ? "" : "s");
    else if (total && !sj->o.json)
        fprintf(stderr, "kiroku: serve: incident notices: %zu e-mail%s queued\n", total,
                total == 1 ? "" : "s");
}

kr_err serve_jobs_start(const struct serve_jobs_options *o, struct kr_domain *d,
                        struct serve_jobs **out)
{
    *out = NULL;
    struct serve_jobs *sj = calloc(1, sizeof *sj);
    if (!sj)
        return KR_ENOMEM;
    sj->o = *o;
    sj->d = d;
    struct daily_options dopt = {
        .clock = o->clock,
        .retention = job_retention,
        .backup = o->backups ? job_backup : NULL,
        .backup_at_min = o->backup_at_min,
        .minutely = job_incidents,
        .arg = sj,
    };
    kr_err err = daily_start(&dopt, &sj->sched);
    if (err) {
        fprintf(stderr, "kiroku: serve: the daily jobs: %s\n", kr_strerror(err));
        free(sj);
        return err;
    }
    if ((err = alr_start(d, &o->alerts, o->alert_scan_ms, &sj->alerts))) {
        fprintf(stderr, "kiroku: serve: the alert scanner: %s\n", kr_strerror(err));
        daily_stop(sj->sched);
        free(sj);
        return err;
    }
    *out = sj;
    return KR_OK;
}

void serve_jobs_stop(struct serve_jobs *sj)
{
    if (!sj)
        return;
    daily_stop(sj->sched); /* after the job it runs, if any */
    alr_stop(sj->alerts);  /* after the scan it runs */
    free(sj);
}
