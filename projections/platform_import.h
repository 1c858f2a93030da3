/*
 * platform_import.h: a tenant shard's copy of the platform's notices and
 * incidents. The platform shard (KR_PLATFORM_SHARD, domain.h) is the one
 * journal where operators publish notices and open, notify, update and
 * resolve incidents; every tenant shard follows it (api/platform.h) and
 * imports its records of those types into its own journal with
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
 * Threads: any thread; imports of one shard are meant to come from one
 * importer (a second one only meets refusals).
 */
#ifndef KR_PLATFORM_IMPORT_H
#define KR_PLATFORM_IMPORT_H

#include "domain.h"

#include <stdbool.h>
#include <stdint.h>

/* Whether r is a record of a type dom_platform_import takes (tenant 0, one
 * of the five types above). */
bool dom_platform_importable(const struct jrn_record *r);

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

/* The highest platform seq imported into d (views_platform_origin), 0 if
 * none: where an importer resumes. LMDB errors, KR_ECORRUPT. */
KR_MUST_CHECK kr_err dom_platform_origin(struct kr_domain *d, uint64_t *origin);

#endif
