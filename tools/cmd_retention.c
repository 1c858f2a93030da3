/*
 * cmd_retention.c: `kiroku retention` (erase the cancelled tenants that are
 * due, truncate old platform logs) and `kiroku maintenance` (record an
 * operator's maintenance work).
 *
 * `retention` opens the data directory itself when no server has it open;
 * when one does (the journal's exclusive lock: KR_EBUSY), it asks that
 * server over the operator endpoint (op retention.run, with the operator
 * session in KIROKU_TOKEN), so the two never fight for the keystore.
 * `maintenance` always goes through the operator endpoint: the record names
 * the operator's account from the session.
 */
#include "cli.h"
#include "domain.h"
#include "jsonmp.h"
#include "jst.h"
#include "retention.h"
#include "retention_hooks.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char retention_usage[] =
    "usage: kiroku retention [--data DIR] [--dry-run] [--backups DIR]\n"
    "                        [--log-retention-days N] [--url URL] [--json]\n"
    "\n"
    "Erases every cancelled tenant that is due (cancelled at least 28 days 23\n"
    "hours ago, so that a daily run erases it before its erase-by date,\n"
    "cancellation + 30 days): its data key in the live keystore and in every\n"
    "backup generation under --backups, its e-mail files, its payloads in the\n"
    "journal, then tenant.erased. Then erases, the same way, every sign-up\n"
    "application not completed within 7 days (signup.expired, an hour later at\n"
    "the earliest, at most 1000 a run). Then strips the payloads of platform logs\n"
    "older than --log-retention-days (default 400). --dry-run lists what is due\n"
    "and changes nothing. A crash anywhere is finished by the next run.\n"
    "\n"
    "With a server running on DIR, asks it (op retention.run over the operator\n"
    "endpoint, ipc://DIR/operator.sock or --url, operator session in\n"
    "KIROKU_TOKEN); the server uses its own\n"
    "--backups and --log-retention-days.\n"
    "KIROKU_CLOCK_OFFSET (e.g. 30d) runs on a shifted clock, for drills.\n"
    "\n"
    "Exit status: 0 everything due is done; 1 some erasure stopped (it stays\n"
    "due); 2 usage; 3 could not open or ask.\n";

static void print_time(const char *label, uint64_t t)
{
    char j[JST_LEN + 1];
    jst_format(t, j);
    printf("%s%s %s", *label ? " " : "", label, j);
}

static int ask_server(const char *dir, const char *url, bool dry_run, bool json)
{
    char *argv[8];
    int argc = 0;
    argv[argc++] = (char *)"call";
    if (url) {
        argv[argc++] = (char *)"--url";
        argv[argc++] = (char *)url;
    } else {
        argv[argc++] = (char *)"--operator";
        argv[argc++] = (char *)"--data";
        argv[argc++] = (char *)dir;
    }
    argv[argc++] = (char *)"retention.run";
    argv[argc++] = (char *)(dry_run ? "{\"dry_run\":true}" : "{\"dry_run\":false}");
    argv[argc] = NULL;
    if (!json)
        fprintf(stderr, "kiroku: retention: a server runs on %s: asking it\n", dir);
    return cmd_call(argc, argv);
}

/* What the command line asks for. */
struct retention_opts {
    struct cli_common co;
    bool dry_run;
    const char *backups, *url;
    uint64_t days;
};

/* Options. CLI_CONTINUE or the exit status. */
static int retention_parse_options(int argc, char **argv, struct retention_opts *o)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"dry-run", no_argument, 0, 'n'},
                                         {"backups", required_argument, 0, 'b'},
                                         {"log-retention-days", required_argument, 0, 'L'},
                                         {"url", required_argument, 0, 'u'},
                                         {0, 0, 0, 0}};
    o->days = RET_LOG_DAYS_DEFAULT;
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            o->dry_run = true;
            break;
        case 'b':
            o->backups = optarg;
            break;
        case 'u':
            o->url = optarg;
            break;
        case 'L':
            if (!cli_parse_u64(optarg, 1, KR_LOG_RETENTION_DAYS_MAX, &o->days)) {
                fprintf(stderr, "kiroku: retention: --log-retention-days is 1..%u\n",
                        KR_LOG_RETENTION_DAYS_MAX);
                return CLI_USAGE;
            }
            break;
        default:
            if ((rc = cli_common_option(c, retention_usage, &o->co)) != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc)
        return cli_usage(retention_usage);
    return CLI_CONTINUE;
}

/* The run's report as one JSON object; err is the run's error. */
static void retention_print_json(const struct ret_report *r, bool dry_run, kr_err err)
{
    printf("{\"dry_run\":%s,\"tenants\":[", dry_run ? "true" : "false");
    for (size_t i = 0; i < r->n; i++) {
        const struct ret_tenant *t = &r->tenants[i];
        /* Tenant ids and times as decimal strings (docs/api.md). */
        printf("%s{\"tenant\":\"%" PRIu64 "\",\"cancelled\":\"%" PRIu64 "\",\"erase_by\":\"%" PRIu64
               "\",\"due\":%s,\"erased\":%s",
               i ? "," : "", t->tenant, t->cancelled, t->erase_by, t->due ? "true" : "false",
               t->erased ? "true" : "false");
        if (t->err) {
            printf(",\"step\":");
            cli_json_str(stdout, t->step, strlen(t->step));
            printf(",\"error\":");
            cli_json_str(stdout, kr_strerror(t->err), strlen(kr_strerror(t->err)));
        }
        printf("}");
    }
    printf("],\"log_before\":\"%" PRIu64 "\",\"stripped\":%" PRIu64, r->log_before_ns, r->stripped);
    printf(",\"applications_due\":%" PRIu64 ",\"applications_expired\":%" PRIu64,
           r->applications_due, r->applications_expired);
    if (err) {
        printf(",\"error\":");
        cli_json_str(stdout, kr_strerror(err), strlen(kr_strerror(err)));
    }
    if (err == KR_ECORRUPT && r->corrupt.field[0]) {
        printf(",\"corrupt\":");
        cli_json_str(stdout, r->corrupt.field, strlen(r->corrupt.field));
        printf(",\"why\":");
        cli_json_str(stdout, r->corrupt.why, strlen(r->corrupt.why));
    }
    printf("}\n");
}

/* The run's report as text; err, the run's error, goes to stderr. */
static void retention_print_text(const struct ret_report *r, bool dry_run, kr_err err)
{
    size_t due = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct ret_tenant *t = &r->tenants[i];
        due += t->due;
        printf("tenant %" PRIu64 ":", t->tenant);
        print_time("cancelled", t->cancelled);
        print_time("erase-by", t->erase_by);
        if (!t->due)
            printf(" not due yet\n");
        else if (dry_run)
            printf(" due: would be erased\n");
        else if (t->erased)
            printf(" erased\n");
        else
            printf(" due: stopped at step %s: %s (it stays due)\n", t->step, kr_strerror(t->err));
    }
    printf("%zu cancelled tenant%s, %zu due%s\n", r->n, r->n == 1 ? "" : "s", due,
           dry_run ? " (dry run: nothing changed)" : "");
    printf("%" PRIu64 " unconfirmed application%s due to expire, %" PRIu64 " erased\n",
           r->applications_due, r->applications_due == 1 ? "" : "s", r->applications_expired);
    if (!dry_run) {
        printf("platform logs before");
        print_time("", r->log_before_ns);
        printf(": %" PRIu64 " record%s stripped\n", r->stripped, r->stripped == 1 ? "" : "s");
    }
    if (err == KR_ECORRUPT && r->corrupt.field[0])
        fprintf(stderr, "kiroku: retention: %s: %s: %s\n", kr_strerror(err), r->corrupt.field,
                r->corrupt.why);
    else if (err)
        fprintf(stderr, "kiroku: retention: %s\n", kr_strerror(err));
}

int cmd_retention(int argc, char **argv)
{
    struct retention_opts ro = {0};
    int rc = retention_parse_options(argc, argv, &ro);
    if (rc != CLI_CONTINUE)
        return rc;
    bool dry_run = ro.dry_run;
    const char *dir = cli_data_dir(ro.co.data);
    struct kr_offset_clock oc;
    const struct kr_clock *clock;
    if (!cli_clock("retention", true, &oc, &clock))
        return CLI_USAGE;
    struct tools_ret tr;
    if (!tools_ret_init(&tr, dir, ro.backups, clock != NULL))
        return CLI_USAGE;

    struct kr_domain_options o = {.dir = dir, .clock = clock};
    struct kr_domain *d = NULL;
    kr_err err = dom_open(&o, &d);
    if (err == KR_EBUSY)
        return ask_server(dir, ro.url, dry_run, ro.co.json);
    if (err)
        return cli_fail_open(dir, err);
    dom_set_retention(d, &tr.hooks, (uint32_t)ro.days);
    struct ret_report *r = malloc(sizeof *r);
    if (!r) {
        dom_close(d);
        return cli_fail("retention", KR_ENOMEM);
    }
    err = ret_run(d, dry_run, r);
    dom_close(d);
    if (ro.co.json)
        retention_print_json(r, dry_run, err);
    else
        retention_print_text(r, dry_run, err);
    free(r);
    if (fflush(stdout) != 0)
        return CLI_FAIL;
    return err ? CLI_BAD : CLI_OK;
}

/* ---- kiroku maintenance ---- */

static const char maintenance_usage[] =
    "usage: kiroku maintenance WHAT [--host HOST] [--data DIR | --url URL]\n"
    "\n"
    "Records maintenance work in the operator work log (op maintenance.record,\n"
    "event maintenance.recorded): who (the operator session in KIROKU_TOKEN),\n"
    "WHAT was done (1..1000 bytes, no personal data) and on which host\n"
    "(default: this host's name). Sent to the operator endpoint of the server\n"
    "on DIR (ipc://DIR/operator.sock), or to --url.\n"
    "\n"
    "Exit status: 0 recorded; 1 refused (the reply says why); 2 usage; 3 could\n"
    "not ask.\n";

/* Appends s as a JSON string (quoted) to buf; false if it does not fit. */
static bool json_append(char *buf, size_t cap, size_t *len, const char *s)
{
    return jsonmp_buf_str(buf, cap, len, s, strlen(s));
}

int cmd_maintenance(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"host", required_argument, 0, 'H'},
                                         {"url", required_argument, 0, 'u'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    const char *host = NULL, *url = NULL;
    char hostbuf[256];
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            host = optarg;
            break;
        case 'u':
            url = optarg;
            break;
        default:
            if ((rc = cli_common_option(c, maintenance_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind + 1 != argc || !*argv[optind])
        return cli_usage(maintenance_usage);
    if (!host) {
        if (gethostname(hostbuf, sizeof hostbuf) != 0 || !hostbuf[0]) {
            fprintf(stderr, "kiroku: maintenance: this host has no name: give --host\n");
            return CLI_USAGE;
        }
        hostbuf[sizeof hostbuf - 1] = '\0';
        host = hostbuf;
    }
    char json[4096];
    size_t len = (size_t)snprintf(json, sizeof json, "{\"work\":");
    if (!json_append(json, sizeof json, &len, argv[optind]) || len + 9 >= sizeof json) {
        fprintf(stderr, "kiroku: maintenance: WHAT is too long\n");
        return CLI_USAGE;
    }
    len += (size_t)snprintf(json + len, sizeof json - len, ",\"host\":");
    if (!json_append(json, sizeof json, &len, host) || len + 2 >= sizeof json) {
        fprintf(stderr, "kiroku: maintenance: --host is too long\n");
        return CLI_USAGE;
    }
    json[len++] = '}';
    json[len] = '\0';
    char *cargv[8];
    int cargc = 0;
    cargv[cargc++] = (char *)"call";
    if (url) {
        cargv[cargc++] = (char *)"--url";
        cargv[cargc++] = (char *)url;
    } else {
        cargv[cargc++] = (char *)"--operator";
        cargv[cargc++] = (char *)"--data";
        cargv[cargc++] = (char *)cli_data_dir(co.data);
    }
    cargv[cargc++] = (char *)"maintenance.record";
    cargv[cargc++] = json;
    cargv[cargc] = NULL;
    return cmd_call(cargc, cargv);
}
