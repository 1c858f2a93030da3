/*
 * report.h: `kiroku audit report`, what a tenant's auditor reads first: the
 * tenant's accounts and permission changes, logins and lockouts, incidents
 * and their notices (72-hour deadline met or missed), notices published,
 * exports and erasures, all in JST, as Markdown or one self-contained HTML
 * file (inline CSS, no script, nothing fetched) with a timeline that prints.
 *
 * It reads the data directory read-only (safe while a server runs) and opens
 * the keystore read-only to unseal the one personal field it shows (account
 * e-mail addresses); an erased tenant's addresses show as "(erased)".
 */
#ifndef KR_REPORT_H
#define KR_REPORT_H

#include "kr_error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum rpt_format { RPT_MD, RPT_HTML };

struct rpt_options {
    const char *data_dir;
    uint64_t tenant;
    enum rpt_format format;
    uint64_t now_ns; /* "as of" time for open deadlines; 0 = the real clock */
};

/* Writes the report of o->tenant to f. Errors: KR_ENOTFOUND (no journal, or
 * no such tenant), journal and keystore errors. */
KR_MUST_CHECK kr_err rpt_write(const struct rpt_options *o, FILE *f);

/* The `audit report` subcommand (argv[0] is "report"). */
int audit_report_cmd(int argc, char **argv);

#endif
