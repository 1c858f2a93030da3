/*
 * platform_import.h: a tenant shard's copy of the platform's notices,
 * incidents and operator accounts. The platform shard (KR_PLATFORM_SHARD,
 * domain.h) is the one journal where operators publish notices, open,
 * notify, update and resolve incidents and manage operator accounts; every tenant shard follows it
 * (api/platform.h) and imports its records of those types into its own journal with
 * dom_platform_import, so its tenants read them (notices.list, notices.ack,
 * the login reply, incidents.list and history) and its masters get their
 * e-mails from the shard that hosts them.
 *
 * An import appends the same event type with the same plain fields (ids
 * stay the platform's) plus `origin`, the platform record's seq, on the
 * same stream of this journal, with actor the platform record's operator
 * (or "system"). The views keep the highest origin applied (v.meta
 * "platform", views_platform_origin) and refuse an import at or below it,
 * so each platform record is imported once even across crashes, restarts
 * and failovers (a new primary resumes from its views, which its followers
 * and `kiroku replay` rebuild alike).
 *
 * What is imported: notice.published, incident.opened, incident.updated and
 * incident.resolved, all of them (the views then owe a notice's e-mail, or
 * make an incident's notification due, only for the tenants this shard
 * holds data for); incident.notified only for a tenant this shard hosts
 * (holds data) and the incident affects here; for the channel email, when
 * this shard has not e-mailed the tenant the incident's notice yet, the
 * incident_notice e-mail to the tenant's master is queued in the same
 * append, as incidents.notify does on the platform of a single journal (the
 * platform's deadline scheduler records these notifications, and this
 * shard's leaves the imported incidents to it: dom_incident_mail). A tenant
 * without a master account here cannot be e-mailed: that notification is
 * not imported, and the tenant stays due on this shard.
 *
 * Operator accounts (tenant 0) come the same way, so an operator made on
 * the platform logs in to every shard's operator endpoint with one
 * password: account.created (role operator), account.deleted,
 * account.password_changed, account.permissions_granted and _revoked,
 * account.locked for any reason but failures, and account.unlocked, each
 * on the account's stream at this shard's version of it (the shard's own
 * lockouts after failed logins stay on that stream: they are per endpoint,
 * never imported; an imported unlock lifts one). Deletion, lock and
 * password change also close the operator's sessions here, as the ops do.
 * Skipped: an unlock when the account is not locked here, records of an
 * account never created here, and an account.created whose e-mail a local
 * operator of this shard holds (DOM_IMPORT_EMAIL_HELD: the local one keeps
 * working, and the platform's account's later records are then of an
 * account never created here). Their sealed fields (e-mail, display name,
 * password hash) are opened with this shard's tenant-0 key and sealed again
 * by the append: the AEAD's associated data is tenant, stream and type,
 * not the journal, and email_mac is keyed by the same key. So this works
 * where the shard's tenant-0 key is the platform's (one key for the whole
 * deployment through KIROKU_KEYS, api/keyring.h); where it is another one
 * (a shard's own key from before the bucket), the record does not open and
 * is skipped (DOM_IMPORT_UNREADABLE). login_*, session.* and lockouts for
 * failures are never imported.
 *
 * Threads: any thread; imports of one shard are meant to come from one
 * importer (a second one only meets refusals).
 */
#ifndef KR_PLATFORM_IMPORT_H
#define KR_PLATFORM_IMPORT_H

#include "domain.h"

#include <stdbool.h>
#include <stdint.h>

/* Whether r is a record of a type dom_platform_import takes (tenant 0, one
 * of the types above). */
bool dom_platform_importable(const struct jrn_record *r);

/* What dom_platform_import_record did with a record. */
enum dom_import {
    DOM_IMPORT_NONE,       /* nothing: not for this shard, or imported already */
    DOM_IMPORT_APPENDED,   /* imported */
    DOM_IMPORT_UNREADABLE, /* its sealed fields do not open with this shard's
                            * tenant-0 key: skipped (the key is not the platform's) */
    DOM_IMPORT_EMAIL_HELD, /* an operator whose e-mail a local operator holds: skipped */
};

/* Imports platform record r (read from the platform journal, verified
 * there) into d, appending synchronously. *imported (may be NULL) says
 * whether it appended; KR_OK without appending when the record is not for
 * this shard (an incident.notified for a tenant it does not host, an
 * incident it never saw, a stripped payload) or was imported already
 * (r->seq at or below views_platform_origin). Errors: KR_EINVAL (r is not
 * importable: another type, a tenant's record, a record that carries an
 * origin itself), KR_ECORRUPT (its payload does not decode), KR_ECONFLICT
 * (a stream of this journal moved on KR_CMD_RETRIES times meanwhile), the
 * journal's (KR_ENOTPRIMARY, KR_ECLOSED...) and LMDB's errors. */
KR_MUST_CHECK kr_err dom_platform_import(struct kr_domain *d, const struct jrn_record *r,
                                         bool *imported);

/* dom_platform_import, saying in *what what it did (DOM_IMPORT_NONE on an
 * error). An operator account's record whose tenant-0 key is missing here,
 * or is in the keyring under another KEK, is DOM_IMPORT_UNREADABLE. Errors
 * as dom_platform_import's, and the keystore's (KR_EIO: the keyring did
 * not answer for tenant 0's key). */
KR_MUST_CHECK kr_err dom_platform_import_record(struct kr_domain *d, const struct jrn_record *r,
                                                enum dom_import *what);

/* The highest platform seq imported into d (views_platform_origin), 0 if
 * none: where an importer resumes. LMDB errors, KR_ECORRUPT. */
KR_MUST_CHECK kr_err dom_platform_origin(struct kr_domain *d, uint64_t *origin);

#endif
