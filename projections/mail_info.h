/*
 * mail_info.h: what an e-mail says about the things it is about, read from
 * the views and the journal for the delivery worker (api/mailer.c): the
 * tenant's name and language, a notice's kind, title, body and effective time, an
 * incident's title, severity, newest summary, detection and deadline.
 *
 * Secrets and personal data: the tenant's name is personal (opened with the
 * tenant's key); the caller wipes the struct (sodium_memzero) when done.
 */
#ifndef KR_MAIL_INFO_H
#define KR_MAIL_INFO_H

#include "domain.h"
#include "kr_error.h"

#include <stdbool.h>
#include <stdint.h>

struct mail_info {
    char tenant_name[KR_FLD_TENANT_NAME_MAX + 1]; /* "" if unknown */
    char title[KR_FLD_TITLE_MAX + 1];             /* the notice's or incident's */
    char body[KR_FLD_BODY_MAX + 1];               /* the notice's */
    char summary[KR_FLD_SUMMARY_MAX + 1];         /* the incident's newest */
    uint64_t effective;                           /* the notice's (UTC ns), 0 if none */
    uint64_t detected, deadline;                  /* the incident's (UTC ns), 0 if none */
    int notice_kind;                              /* enum kr_enum_notice_kind, -1 if none */
    int severity;                                 /* enum kr_enum_severity (current), -1 */
    bool resolved;
    int language; /* the tenant's (enum kr_enum_language), -1 if not recorded */
};

/* Fills *out for a message of tenant `tenant` about incident (may be NULL)
 * or notice (may be NULL). What is not found stays empty (a tenant erased or
 * not yet provisioned has no name; an unknown id leaves the texts ""): the
 * e-mail is still written, with "-" there. Errors: LMDB and keystore
 * failures, KR_ECORRUPT for a row or record that does not decode,
 * KR_ENOMEM. */
KR_MUST_CHECK kr_err mail_info_get(struct kr_domain *d, uint64_t tenant, const uint8_t *incident,
                                   const uint8_t *notice, struct mail_info *out);

#endif
