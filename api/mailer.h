/*
 * mailer.h: the e-mail delivery worker. Until SMTP delivery exists, every
 * e-mail the outbox holds is written as an RFC 5322 message file under
 * DIR/outbox/ (the demo and the tests read sign-up auth codes there), and
 * then recorded as sent (dom_outbox_sent). The message is written by
 * compose.h from the templates compose_current() gives, with what
 * mail_info.h reads about its tenant, notice or incident.
 *
 * Files: DIR/outbox/ is mode 0700, each message 0600, named
 * "<seq>-<message id hex>.eml" (seq of its outbox.queued record), written to
 * a temporary name, fsynced and renamed, so a reader never sees half a
 * message. A crash between the rename and dom_outbox_sent writes the same
 * file again on the next round. Message bodies hold auth codes: nothing here
 * logs a message's contents.
 */
#ifndef KR_API_MAILER_H
#define KR_API_MAILER_H

#include "domain.h"
#include "kr_error.h"

#include <stddef.h>

/* Runs one delivery round: queues the notice-of-change e-mails owed
 * (dom_notice_mail, up to KR_MAILER_NOTICE_ROUNDS batches), then writes every
 * pending e-mail (up to KR_OUTBOX_BATCH_MAX) and records it sent. *written
 * (may be NULL) counts the files written. Errors: I/O (KR_EIO...), journal
 * and view errors; what was written before the error stays written. */
KR_MUST_CHECK kr_err mailer_run(struct kr_domain *d, size_t *written);

/* The worker thread: runs mailer_run every KR_MAILER_PERIOD_MS. */
struct mailer;

/* Starts the worker over d (which must outlive it). KR_ENOMEM, or KR_EIO if
 * the thread cannot start. */
KR_MUST_CHECK kr_err mailer_start(struct kr_domain *d, struct mailer **out);

/* Wakes the worker at once (after an op queued an e-mail, say). */
void mailer_kick(struct mailer *m);

/* Runs a last round, stops the worker and frees it. Accepts NULL. */
void mailer_stop(struct mailer *m);

#endif
