/*
 * mailer.h: the e-mail delivery worker. Every e-mail the outbox holds is
 * delivered one of two ways:
 *
 * - With an SMTP relay configured (struct mailer_options, from the
 *   smtp.* settings): handed to the relay (smtp.h), at least once. A
 *   delivered message is recorded as sent (outbox.sent) and leaves no copy
 *   on disk. A failed attempt is recorded as outbox.failed with its attempt
 *   number and reason; a temporary failure is tried again after a backoff
 *   that doubles from retry_min_s up to retry_max_s, counted from the last
 *   recorded failure, so a restart keeps the schedule; after give_up_s since
 *   it was queued (and at least one attempt) a message fails permanently.
 *   A relay's 5xx refusal is permanent at once. A crash between the relay's
 *   acknowledgement and the outbox.sent record sends it again: the
 *   Message-ID, made from the message id, is the same every time, so the
 *   receiving side can drop the duplicate.
 *
 * - Without a relay: written as an RFC 5322 message file under DIR/outbox/
 *   (the demo and the tests read sign-up auth codes there), and then
 *   recorded as sent. Files: DIR/outbox/ is mode 0700, each message 0600,
 *   named "<seq>-<message id hex>.eml" (seq of its outbox.queued record),
 *   written to a temporary name, fsynced and renamed, so a reader never sees
 *   half a message. A crash between the rename and dom_outbox_sent writes
 *   the same file again on the next round. The daily job deletes files
 *   older than mail.outbox_keep_days (mailer_prune_files).
 *
 * Either way the message is written by compose.h from the templates
 * compose_current() gives, with what mail_info.h reads about its tenant,
 * notice or incident.
 *
 * Message bodies hold auth codes: nothing here logs a message's contents
 * or its recipient.
 */
#ifndef KR_API_MAILER_H
#define KR_API_MAILER_H

#include "domain.h"
#include "kr_error.h"
#include "smtp.h"

#include <stddef.h>
#include <stdint.h>

/* How e-mail leaves. Strings are borrowed and must outlive the worker. */
struct mailer_options {
    /* The relay; relay.url NULL or "" = none: .eml files as above.
     * relay.from (mail.from) is also the From: address of every message,
     * files included; NULL or "" = noreply@kiroku.invalid. */
    struct smtp_options relay;
    uint64_t retry_min_s; /* backoff after the first failure; 0 = 60 */
    uint64_t retry_max_s; /* backoff at most; 0 = 3600 */
    uint64_t give_up_s;   /* permanent failure this long after queuing; 0 = 3 days */
};

/* What one round did. */
struct mailer_stats {
    size_t written;   /* .eml files written (no relay) */
    size_t delivered; /* acknowledged by the relay */
    size_t failed;    /* attempts that failed (temporary or permanent) */
    size_t waiting;   /* pending e-mails not yet due for another attempt */
};

/* Runs one delivery round: queues the notice-of-change e-mails owed
 * (dom_notice_mail, up to KR_MAILER_NOTICE_ROUNDS batches), then writes every
 * pending e-mail (up to KR_OUTBOX_BATCH_MAX) and records it sent. *written
 * (may be NULL) counts the files written. Errors: I/O (KR_EIO...), journal
 * and view errors; what was written before the error stays written. */
KR_MUST_CHECK kr_err mailer_run(struct kr_domain *d, size_t *written);

/* mailer_run with options o (NULL = no relay); *st (may be NULL) says what
 * the round did. With a relay, a round stops early when the relay cannot be
 * reached or times out (the next messages would wait for it as well).
 * Errors as mailer_run's; a failed delivery is not an error (it is
 * recorded). */
KR_MUST_CHECK kr_err mailer_round(struct kr_domain *d, const struct mailer_options *o,
                                  struct mailer_stats *st);

/* Deletes the .eml files in DIR/outbox older than max_age_ns by the
 * domain's clock (their modification time), and stale temporary files.
 * *deleted (may be NULL) counts them. KR_OK when there is no DIR/outbox;
 * I/O errors otherwise (what was deleted stays deleted). */
KR_MUST_CHECK kr_err mailer_prune_files(struct kr_domain *d, uint64_t max_age_ns, size_t *deleted);

/* The worker thread: runs mailer_round every KR_MAILER_PERIOD_MS. */
struct mailer;

/* Starts the worker over d (which must outlive it) with options o (NULL =
 * no relay; copied, its strings borrowed). KR_ENOMEM, or KR_EIO if the
 * thread or curl cannot start. */
KR_MUST_CHECK kr_err mailer_start(struct kr_domain *d, const struct mailer_options *o,
                                  struct mailer **out);

/* Wakes the worker at once (after an op queued an e-mail, say). */
void mailer_kick(struct mailer *m);

/* Runs a last round, stops the worker and frees it. Accepts NULL. */
void mailer_stop(struct mailer *m);

#endif
