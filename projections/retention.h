/*
 * retention.h: erasing cancelled tenants within 30 days of their
 * cancellation, crash-safe and idempotent, and truncating platform logs past
 * their retention period. Run daily by `kiroku serve`, by `kiroku retention`
 * on a stopped server, and by the ops retention.run and tenants.erase.
 *
 * When a tenant is due. A cancelled tenant's data must be gone by its
 * erase-by date, cancelled + RET_ERASE_AFTER_NS (30 days). The job runs once
 * every RET_JOB_INTERVAL_NS (a day) at whatever hour, so it erases a tenant
 * as soon as
 *
 *     now >= cancelled + 30 days - 1 day (interval) - 1 hour (margin)
 *         =  cancelled + 28 days 23 hours                (RET_DUE_AFTER_NS)
 *
 * A tenant not yet due at one run is due at the next, a day later, which is
 * at the latest 1 hour before its erase-by date: the margin is for the run
 * itself (erasing a tenant of a 1,000,000-record journal takes seconds).
 *
 * Erasing one tenant (ret_erase_tenant) takes these steps, each idempotent,
 * in this order:
 *
 *   1. RET_STEP_KEY      destroy the data key in the live keystore and scrub
 *                        it (ks_destroy, ks_scrub): from here on nothing of
 *                        the tenant can be opened, and no new e-mail file is
 *                        written for it (the mailer skips keyless tenants);
 *   2. RET_STEP_BACKUPS  destroy the key in every backup generation
 *                        (hooks->backup_erase; skipped without backups);
 *   3. RET_STEP_OUTBOX   delete the tenant's e-mail files in DIR/outbox;
 *   4. RET_STEP_STRIP    strip the payloads of every record of the tenant
 *                        (hooks->strip, the journal's jrn_strip);
 *   5. RET_STEP_EVENT    append tenant.erased, which drops its views.
 *
 * The tenant's view row says "cancelled" until step 5 commits, so a crash
 * anywhere before it leaves the tenant due, and the next run does every
 * step again (each finds its work done or finishes it). tenant.erased is
 * appended only after every key is destroyed and every payload stripped,
 * so a journal that records an erasure never has the key alive anywhere.
 * A step that fails stops the tenant's erasure there: it stays due.
 *
 * Platform logs (ret_truncate_logs): records of the types ret_is_log_type
 * names, and the session.* records of sessions closed (or expired: the run
 * closes those first, session.closed "expired"), older than the configured
 * period, get their payloads stripped; their headers, hashes and proofs
 * stay, and the views stay what a rebuild gives (a closed session has no
 * view row; login outcomes go only before the account's newest reset, which
 * stays and sets every field they set). The run then appends
 * retention.logs_stripped (the cut-off and the records the selection read),
 * which followers carry out (ret_logs_stripped_apply). See
 * docs/operations.md.
 *
 * Threads: every function here may be called from any thread; erasures and
 * truncations of one domain run one at a time (the domain's retention
 * mutex), so serve's daily job and the ops never race each other.
 */
#ifndef KR_RETENTION_H
#define KR_RETENTION_H

#include "domain.h"

#define RET_NS_PER_HOUR     (3600ull * 1000000000ull)
#define RET_NS_PER_DAY      (24ull * RET_NS_PER_HOUR)
#define RET_ERASE_AFTER_NS  (30ull * RET_NS_PER_DAY) /* the promise: erased by then */
#define RET_JOB_INTERVAL_NS RET_NS_PER_DAY           /* the daily job */
#define RET_MARGIN_NS       RET_NS_PER_HOUR          /* time one run may take */
#define RET_DUE_AFTER_NS    (RET_ERASE_AFTER_NS - RET_JOB_INTERVAL_NS - RET_MARGIN_NS)

/* Unconfirmed sign-up applications. One not completed within
 * RET_SIGNUP_EXPIRE_NS (7 days: payment and the auth code take minutes to
 * days, not weeks) of being made has expired: signup.confirm_payment and
 * signup.complete refuse it (`expired`) from then on. The retention job
 * erases it at its first run at least RET_MARGIN_NS after that (so a
 * command that read the application just before it expired has long
 * finished): the same steps as a tenant's erasure (key, backups, outbox,
 * strip), then signup.expired instead of tenant.erased. A flood of
 * applications thus leaves nothing readable behind after 7 days and 2 at
 * most (docs/operations.md). */
#define RET_SIGNUP_EXPIRE_NS (7ull * RET_NS_PER_DAY)

/* Whether an application made at `applied` (UTC ns) has expired at `now`,
 * and whether the job erases it at `now`. */
bool ret_signup_expired(uint64_t applied, uint64_t now);
bool ret_signup_due(uint64_t applied, uint64_t now);

/* How long platform logs are kept when nothing is configured: 400 days, one
 * annual audit cycle (the auditor's report covers a year) plus a month for
 * the audit to take place (docs/operations.md says why). */
#define RET_LOG_DAYS_DEFAULT 400u

/* The erase-by date of a tenant cancelled at `cancelled` (UTC ns). */
uint64_t ret_erase_by(uint64_t cancelled);
/* Whether a tenant cancelled at `cancelled` is due for erasure at `now`. */
bool ret_is_due(uint64_t cancelled, uint64_t now);

enum ret_step {
    RET_STEP_KEY,
    RET_STEP_BACKUPS,
    RET_STEP_OUTBOX,
    RET_STEP_STRIP,
    RET_STEP_EVENT,
    RET_STEP__COUNT
};
/* "key", "backups", "outbox", "strip", "event". */
const char *ret_step_name(enum ret_step s);

/* What to strip: the journal's jrn_strip spec, passed through. */
struct ret_strip_spec {
    uint64_t tenant;
    bool any_tenant;
    uint64_t to_seq;    /* 0 = no bound */
    uint64_t before_ns; /* 0 = no bound */
    bool (*want)(void *arg, const struct jrn_record *r);
    void *arg;
};

/* One backup generation as backups.list shows it. */
struct ret_generation {
    char generation[64];
    uint64_t last_seq, taken, bytes;
    bool verified;
    char reason[256]; /* why it does not verify; "" if it does */
};

/* What the retention job needs from outside projections/: the tools layer
 * (which sees tools/backup.h) fills it; see dom_set_retention. Any hook may
 * be NULL: no backup_erase means no backups are configured (the step is
 * skipped); no strip means the journal's jrn_strip (tests pass a fake); no
 * backup_list makes backups.list answer not_found. */
struct ret_hooks {
    /* Destroys tenant's data key in every backup generation. */
    kr_err (*backup_erase)(void *arg, uint64_t tenant, uint64_t *generations);
    /* Lists up to cap generations, newest first. */
    kr_err (*backup_list)(void *arg, struct ret_generation *out, size_t cap, size_t *n);
    /* Strips payloads of the open journal j; NULL = jrn_strip. */
    kr_err (*strip)(void *arg, struct journal *j, const struct ret_strip_spec *s,
                    uint64_t *stripped);
    /* Tests: called after each step of an erasure completed; an error stops
     * the erasure right there, as a crash would. NULL in production. */
    kr_err (*after_step)(void *arg, uint64_t tenant, enum ret_step step);
    void *arg;
};

/* Sets d's retention hooks (h must outlive d, or be replaced first) and the
 * log retention period in days (0 = RET_LOG_DAYS_DEFAULT; at most
 * KR_LOG_RETENTION_DAYS_MAX). Call before serving requests. */
void dom_set_retention(struct kr_domain *d, const struct ret_hooks *h, uint32_t log_days);

/* Erases tenant (steps above) if it is cancelled: now, whether due or not
 * (the retention job checks ret_is_due first; tenants.erase does not).
 * KR_OK if the tenant is erased now or was already; KR_ENOTFOUND (no such
 * tenant), KR_ECONFLICT (the tenant is active: not cancelled); otherwise the
 * error of the step that failed, named in *diag's field ("step") and why. */
KR_MUST_CHECK kr_err ret_erase_tenant(struct kr_domain *d, uint64_t tenant, struct kr_diag *diag);

/* Erases an unconfirmed application's tenant (steps above, then
 * signup.expired) if it is still unconfirmed and due at the domain clock's
 * now. KR_OK if erased now or before; KR_ENOTFOUND (no such tenant),
 * KR_ECONFLICT (completed, or not due yet); KR_ECORRUPT (a view row or
 * record that does not decode, *diag naming it); otherwise the error of the
 * step that failed, as ret_erase_tenant. */
KR_MUST_CHECK kr_err ret_expire_application(struct kr_domain *d, uint64_t tenant,
                                            struct kr_diag *diag);

/* Whether records of this type are platform logs that ret_truncate_logs
 * strips whatever they belong to (login.unknown, access.denied,
 * maintenance.recorded); session.* records are stripped too, but only those
 * of sessions closed before the cut-off. */
bool ret_is_log_type(const char *type, size_t len);

/* Closes the sessions that expired before before_ns (session.closed,
 * expired), then strips the payloads of every log record (ret_is_log_type)
 * older than before_ns, of every record before it of a session closed, and
 * of the login outcomes before each account's newest reset before it (up
 * to KR_RETENTION_SESSIONS_MAX sessions and resets a call). *stripped
 * counts records stripped now. */
KR_MUST_CHECK kr_err ret_truncate_logs(struct kr_domain *d, uint64_t before_ns, uint64_t *stripped);

/* A follower's part of a truncation (api/follower.c): r is a
 * retention.logs_stripped record this journal applied; strips the payloads
 * the primary stripped before it recorded it (the same selection, made from
 * records before r alone: sessions closed in 1..log_to_seq and in
 * from_seq..to_seq, resets in 1..log_to_seq). *stripped counts records
 * stripped now (0 when this copy had them stripped already). KR_ECORRUPT if
 * r does not decode or names records not before it. */
KR_MUST_CHECK kr_err ret_logs_stripped_apply(struct kr_domain *d, const struct jrn_record *r,
                                             uint64_t *stripped);

/* One cancelled tenant a run looked at. */
struct ret_tenant {
    uint64_t tenant, cancelled, erase_by;
    bool due;    /* due now */
    bool erased; /* erased by this run */
    kr_err err;  /* why its erasure stopped (erased false, due true) */
    char step[16];
};

struct ret_report {
    struct ret_tenant tenants[KR_RETENTION_TENANTS_MAX]; /* cancelled tenants, by id */
    size_t n;
    /* Unconfirmed applications (up to KR_SIGNUP_EXPIRE_BATCH_MAX a run):
     * due for erasure, and erased by this run. */
    uint64_t applications_due, applications_expired;
    uint64_t log_before_ns; /* logs older than this are truncated */
    uint64_t stripped;      /* log records stripped by this run */
    kr_err err;             /* the first failure (KR_OK: everything due is done) */
    struct kr_diag corrupt; /* KR_ECORRUPT: the view row or record that does not
                             * decode ("view v.tenants" / "record 42", and why);
                             * also reported on stderr */
};

/* The retention job at the domain clock's now: every cancelled tenant
 * (up to KR_RETENTION_TENANTS_MAX), erased when due, the unconfirmed
 * applications due erased (ret_expire_application), and the logs truncated.
 * dry_run: only fill r. A failure for one tenant does not stop the others;
 * r->err is the first failure and is returned. */
KR_MUST_CHECK kr_err ret_run(struct kr_domain *d, bool dry_run, struct ret_report *r);

/* Appends serve.started with version and host and the version of the last
 * serve.started before it, which *previous gets ("" if none; 33 bytes). */
KR_MUST_CHECK kr_err ret_serve_started(struct kr_domain *d, const char *version, const char *host,
                                       char previous[33]);

/* Appends backup.completed (ok) or backup.failed (reason) for serve's
 * daily backup. */
KR_MUST_CHECK kr_err ret_backup_recorded(struct kr_domain *d, bool ok, const char *generation,
                                         uint64_t last_seq, uint64_t bytes, const char *reason);

#endif
