/*
 * notices.h: reading the notices, incidents and outbox views outside their
 * own ops: unread notices for the login reply (auth.login), the outbox for
 * the e-mail delivery worker, and the argument check the handlers of this
 * area share.
 *
 * The views themselves (row layouts) are described at the top of
 * v_notices.c; the ops are in cmd_notices.c (notices.*, incidents.*) and
 * cmd_audit.c (audit.list, journal.*).
 */
#ifndef KR_NOTICES_H
#define KR_NOTICES_H

#include "cmd.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Notice of an incident is due this long after its detection (the white
 * paper's promise: within 72 hours). */
#define INCIDENT_NOTICE_NS (72ull * 3600ull * 1000000000ull)

/* ---- Notices ---- */

/* One unread notice: enough to find and show it. */
struct notice_unread {
    uint8_t notice[16];
    uint64_t seq;       /* the notice.published record (title, body) */
    uint64_t effective; /* UTC ns */
    uint8_t kind;       /* enum kr_enum_notice_kind */
};

/* The notices of `tenant` (audience all, and those listing it) that
 * `account` has not acknowledged, newest first by (effective, notice),
 * at most cap of them into out; *n says how many. Reads under txn (a read
 * transaction over the journal's environment, e.g. a handler's c->txn).
 * Errors: LMDB failures (KR_EIO...), KR_ECORRUPT for a malformed row. */
KR_MUST_CHECK kr_err notices_unread(struct kr_domain *d, MDB_txn *txn, uint64_t tenant,
                                    const uint8_t account[16], struct notice_unread *out,
                                    size_t cap, size_t *n);

/* Writes the "notices" entry of a result map for auth.login: the key, then
 * an array of maps {notice, notice_kind, title, body, effective}, the
 * account's unread notices (at most KR_LOGIN_NOTICES_MAX, newest first). It is
 * one entry of the map the caller opened with res_map. Call it after
 * cmd_commit succeeded, before writing anything that could fail: on error
 * the result is incomplete and the caller must return the error. */
KR_MUST_CHECK kr_err notices_pack_unread(struct cmd *c, uint64_t tenant, const uint8_t account[16]);

/* ---- Incidents ---- */

/* Writes the "incidents" entry of a result map for auth.login: the key, then
 * an array of maps {incident, incident_scope, severity, title, summary,
 * detected, deadline, resolved} (as incidents.list has them), the newest
 * KR_LOGIN_INCIDENTS_MAX incidents affecting tenant by time of detection,
 * newest first, open and resolved. Like notices_pack_unread: after
 * cmd_commit, and on error the result is incomplete (return the error). */
KR_MUST_CHECK kr_err incidents_pack_login(struct cmd *c, uint64_t tenant);

/* ---- Outbox ---- */

/* What an incident or notice e-mail is about, as it is when handed over:
 * for a message naming an incident (incident_notice, incident_update,
 * incident_resolved) the incident's title, newest summary (of the opening,
 * an update or the resolution), severity, scope, detection, deadline and
 * whether it is resolved; for one naming a notice (notice_of_change) the
 * notice's kind, title, body and effective time. Values borrow like m->p. */
struct outbox_about {
    bool incident, notice;          /* which of the two (or neither) */
    const struct kr_value *title;   /* both */
    const struct kr_value *summary; /* incident */
    const struct kr_value *body;    /* notice */
    uint64_t detected, deadline;    /* incident, UTC ns */
    uint64_t effective;             /* notice, UTC ns */
    uint8_t scope, severity;        /* incident: enum kr_enum_incident_scope, severity */
    uint8_t notice_kind;            /* notice: enum kr_enum_notice_kind */
    bool resolved;                  /* incident */
};

/* One pending e-mail as the delivery worker sees it. Everything borrows from
 * the call that hands it over and is valid only during the callback. */
struct outbox_msg {
    uint64_t seq;  /* the outbox.queued record; messages come in seq order */
    uint64_t time; /* when it was queued (the record's UTC ns) */
    uint64_t tenant;
    uint8_t message[16];
    uint8_t template_id; /* enum kr_enum_template */
    /* The decoded outbox.queued payload with its personal fields opened:
     * KR_FLD_EMAIL (recipient), and as the template needs them
     * KR_FLD_AUTH_CODE, KR_FLD_TENANT_CODE, KR_FLD_INCIDENT, KR_FLD_NOTICE,
     * KR_FLD_APPLICATION, KR_FLD_LANGUAGE (check .set). Secret values: do not log them. */
    const struct kr_payload *p;
    /* What the message is about (never NULL; both flags false for the
     * sign-up and account mails). */
    const struct outbox_about *about;
};

/* Return false to stop the iteration. */
typedef bool (*outbox_fn)(void *arg, const struct outbox_msg *m);

/* Calls fn for each e-mail queued and not yet sent, in seq order, starting
 * after seq `after` (0 = from the first), at most max (0 = KR_OUTBOX_BATCH_MAX).
 * Messages of a tenant whose key was destroyed or whose payloads were
 * stripped (an erased tenant) are skipped: there is nobody to write to.
 * *last (may be NULL) gets the seq of the last message looked at (handed
 * over or skipped), or `after` if none, so the worker can continue from
 * there. fn runs inside
 * this call's read transaction: keep it short (collect, then deliver and
 * call dom_outbox_sent after it returns), and keep no pointer from m.
 * Errors: LMDB and keystore failures, KR_ECORRUPT for a row or record that
 * fails to decode, KR_ENOMEM. */
KR_MUST_CHECK kr_err outbox_pending(struct kr_domain *d, uint64_t after, size_t max, outbox_fn fn,
                                    void *arg, uint64_t *last);

/* Records that message `message` of `tenant` was handed over: appends
 * outbox.sent with actor "system", so it leaves the pending list.
 * Idempotent: a message already sent is KR_OK without a new event.
 * KR_ENOTFOUND if the tenant has no such message; journal errors
 * (KR_ECONFLICT if another sender recorded it meanwhile: retry or ignore). */
KR_MUST_CHECK kr_err dom_outbox_sent(struct kr_domain *d, uint64_t tenant,
                                     const uint8_t message[16]);

/* Queues the notice-of-change e-mails owed (v.notice_mail): for each owed
 * (tenant, notice), an outbox.queued of template notice_of_change to the
 * tenant's master, actor "system", one append each, at most max (0 =
 * KR_OUTBOX_BATCH_MAX) per call. Each is queued exactly once even with
 * several callers (the view refuses a second). The delivery worker runs it
 * before handing e-mails over. *queued (may be NULL) counts the e-mails
 * queued; a tenant without a master account is skipped. */
KR_MUST_CHECK kr_err dom_notice_mail(struct kr_domain *d, size_t max, size_t *queued);

/* Queues the incident notices owed by now: every affected tenant not yet
 * notified over any channel (v.incident_due) whose incident's deadline is
 * at or before now + warn_ns (the domain's clock) is notified by e-mail:
 * incident.notified (channel email) and an incident_notice outbox.queued to
 * the tenant's master account, actor "system", in one append per tenant, at
 * most max (0 = KR_OUTBOX_BATCH_MAX) per call, earliest deadline first.
 * The platform is the one deadline authority for its incidents:
 *  - On the platform shard (d->platform) it records the notification alone
 *    (incident.notified, channel email, actor "system"): the tenants live on
 *    other shards, which import that record and queue the e-mail there
 *    (platform_import.h). *queued then counts these notifications.
 *  - On a tenant shard, the incidents imported from the platform journal
 *    that list their tenants (incident.opened with an origin) are passed
 *    over: the platform notifies them, and until it has their tenants stay
 *    due here (incidents.overdue, the incident_overdue alert). Incidents of
 *    audience all (the platform hosts no tenant to name) and those this
 *    journal opened itself are notified here as above.
 * Each tenant is notified once even with several callers or across
 * restarts: the notification is checked on a fresh snapshot and appended
 * on the incident's stream version, so a racing one conflicts and is
 * skipped. A tenant without a master account is skipped (it stays due, and
 * incidents.overdue shows it). Then, within what is left of max, the
 * update and resolution e-mails owed (v.incident_mail: incident_update or
 * incident_resolved to each tenant e-mailed the notice, queued once each
 * like a notice's; none on the platform shard). *queued (may be NULL)
 * counts the e-mails queued (on the platform, the notifications recorded).
 * serve's scheduler runs it every minute (tools/daily.c), or with
 * incidents.auto_notify = false dom_incident_update_mail instead.
 * Errors: LMDB and journal failures, KR_ECORRUPT for a malformed row,
 * KR_ENOMEM. */
KR_MUST_CHECK kr_err dom_incident_mail(struct kr_domain *d, uint64_t warn_ns, size_t max,
                                       size_t *queued);

/* The second half of dom_incident_mail alone: the update and resolution
 * e-mails owed (v.incident_mail), at most max (0 = KR_OUTBOX_BATCH_MAX),
 * and no notification at any deadline. serve's scheduler runs it instead
 * when incidents.auto_notify is false: operators then notify each tenant,
 * and the tenants they e-mailed still get the incident's updates and its
 * resolution. *queued (may be NULL) counts the e-mails queued (none on the
 * platform shard). Errors as dom_incident_mail's. */
KR_MUST_CHECK kr_err dom_incident_update_mail(struct kr_domain *d, size_t max, size_t *queued);

/* ---- Shared by this area's handlers ---- */

/* The e-mail address of tenant's master account into p (KR_FLD_EMAIL set,
 * with the rest of its account.created record opened), read under c->txn.
 * KR_ENOTFOUND when the tenant has no master account here (none, or a
 * tenant this shard does not host); KR_ECORRUPT, LMDB and keystore errors. */
KR_MUST_CHECK kr_err notices_master_email(struct cmd *c, uint64_t tenant, struct kr_payload *p);

/* The channels tenant was notified of incident over here (bit 1 << enum
 * kr_enum_channel), read under c->txn; KR_ENOTFOUND if the incident does
 * not affect the tenant here. */
KR_MUST_CHECK kr_err notices_incident_channels(struct cmd *c, const uint8_t incident[16],
                                               uint64_t tenant, uint8_t *channels);

/* Adds to c the incident_notice e-mail of incident to tenant's master
 * account (outbox.queued, its address read with notices_master_email).
 * KR_ENOTFOUND (nothing added) when the tenant has no master account here. */
KR_MUST_CHECK kr_err notices_queue_incident_notice(struct cmd *c, const uint8_t incident[16],
                                                   uint64_t tenant);

#endif
