/*
 * alerts.h: security alerts over the event stream (CLD.12.4.5).
 *
 * A scanner reads the journal in seq order from where it stopped and feeds
 * each record to the alert rules (enum kr_enum_alert_rule, schemas/fields.json):
 *
 *   login_failures  account.login_failed on one account        (count in a window)
 *   login_spray     failed logins on many accounts of a tenant  (distinct accounts,
 *                   an unknown address's login.unknown counting as one)
 *   lockout         account.locked for failures                  (count)
 *   session_burst   session.opened for one account              (count)
 *   grant_many      account.permissions_granted to many users   (distinct accounts)
 *   grant_repeated  account.permissions_granted to one user     (count)
 *   access_denied   access.denied for one account                (count)
 *   request_rate    records of one tenant in a window, far above its usual
 *                   (records stand for requests: reads are not recorded)
 *   bulk_export     records one account exported with utility.export
 *                   (utility.exported; the sum of their records, over
 *                   the newest KR_ALERT_EVIDENCE_MAX pages)
 *
 * and, after each scan that read to the end, rules over state:
 *
 *   incident_due      an incident notification still owed within window_s
 *                     of its deadline (v.incident_due); once per incident and tenant
 *   incident_overdue  the same past its deadline; once per incident and tenant
 *   backup_missed     no backup.completed within window_s (off by default:
 *                     serve turns it on with its daily backups)
 *   storage_low       the journal's LMDB map `count` per cent used; once per window
 *   writes_refused    `count` appends refused for space (jrn_stats.full),
 *                     raised once an append succeeds again (its own)
 *
 * A rule over records fires when `count` matching records fall within `window_s` seconds
 * of record time (the record's own time, so a scan is a function of the
 * journal); it appends alert.raised (platform record, stream alert/{alert})
 * with the tenant, the account when the rule has one, the seqs that made it
 * fire as evidence, and a one-line summary of ids and counts. One rule and
 * subject (tenant, account) raises at most once per window: the view
 * v.alert_last keeps, for each subject, the time of the newest record of
 * its last alert's evidence (the event's `seen`), so a rescan
 * after a restart raises nothing twice.
 *
 * Memory is bounded: KR_ALERT_SLOTS subjects are watched at once (a new
 * subject takes the slot of one whose window has passed, else of the one
 * seen longest ago), each holding at most KR_ALERT_EVIDENCE_MAX records.
 *
 * Where it resumes: the last seq scanned is kept in DIR/alerts.cursor
 * (decimal, written by rename). A scan starts from the first record within
 * the longest window before that record's time, so the windows fill again;
 * with no cursor, from the first record within the longest window before now
 * (an old journal raises nothing about its distant past).
 *
 * Threads: one thread drives a scanner; it appends through the domain, which
 * is shared with every other thread.
 */
#ifndef KR_ALERTS_H
#define KR_ALERTS_H

#include "domain.h"
#include "views.h"

/* v.alerts row length (v_alerts.c). */
#define ALR_ROW_LEN 16u

/* Whom an alert is about: its rule, tenant (0 = none) and account (zeros =
 * none, or the rule counts a tenant's accounts). */
struct alr_subject {
    uint16_t rule;
    uint64_t tenant;
    uint8_t account[16];
};
/* The v.alert_last key of s. */
void alr_subject_key(const struct alr_subject *s, struct vkey *k);

struct alr_rule_limit {
    uint32_t count; /* records (or distinct accounts) that make it fire: 1..KR_ALERT_EVIDENCE_MAX;
                     * 0 = the rule is off */
    uint64_t window_s; /* within this many seconds: 1..KR_ALERT_WINDOW_MAX_S */
};

struct alr_options {
    struct alr_rule_limit rule[KR_ALERT_RULE__COUNT];
    /* request_rate: count is the factor over the tenant's usual number of
     * records per window (an average over past windows, 1/8 weight to the
     * newest), rate_min the fewest records in a window that can fire, and
     * it fires only after KR_ALERT_RATE_HISTORY windows of history */
    uint32_t rate_min;
    uint64_t from_seq; /* 0 = resume as above; else scan from this seq (tests, seeding) */
    bool no_cursor;    /* neither read nor write DIR/alerts.cursor */
};

/* The documented defaults (docs/operations.md, Security alerts). */
void alr_defaults(struct alr_options *o);

struct alr_scanner;

/* A scanner over d's journal. KR_EINVAL for a limit out of bounds, KR_ENOMEM;
 * KR_ECORRUPT if DIR/alerts.cursor does not hold a seq. */
KR_MUST_CHECK kr_err alr_new(struct kr_domain *d, const struct alr_options *o,
                             struct alr_scanner **out);
/* Scans every record appended since the last call (at most
 * KR_ALERT_SCAN_BATCH per call: call again while *more), raising alerts;
 * *raised (may be NULL) gets how many. Stores the cursor. A record that does
 * not decode is skipped (reported on stderr with its seq); journal and
 * append errors are returned, and the next call retries from the same
 * place. */
KR_MUST_CHECK kr_err alr_scan(struct alr_scanner *s, uint64_t *raised, bool *more);
/* The next seq it will read. */
uint64_t alr_next_seq(const struct alr_scanner *s);
void alr_free(struct alr_scanner *s); /* accepts NULL */

/* serve's scanner thread: scans (alr_scan until nothing is left) every
 * interval_ms of real time, logging errors on stderr and trying again at the
 * next round. */
struct alr_runner;
/* Makes a scanner (alr_new's errors) and starts its thread (KR_EIO if it
 * cannot). */
KR_MUST_CHECK kr_err alr_start(struct kr_domain *d, const struct alr_options *o,
                               unsigned interval_ms, struct alr_runner **out);
/* Stops the thread after the scan it runs (at most KR_ALERT_SCAN_BATCH
 * records), frees it. Accepts NULL. */
void alr_stop(struct alr_runner *r);
/* Rounds the thread has finished (for tests that wait for one). */
uint64_t alr_rounds(struct alr_runner *r);

#endif
