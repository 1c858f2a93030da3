/*
 * cmd_audit.c: the auditor's commands: `kiroku export` (a tenant's records
 * with their proofs, journal/export.h), `kiroku audit verify` (checks an
 * export offline with the trusted public key) and `kiroku audit report` (what
 * an auditor reads first, report.h).
 */
#include "cli.h"
#include "export.h"
#include "journal.h"
#include "keys.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes data to path through a temporary file beside it and a rename, so a
 * reader never sees half a file. Mode 0600: an export holds sealed payloads. */
static kr_err write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[KR_PATH_MAX + 16];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return KR_ETOOLARGE;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return kr_err_from_errno(errno);
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            kr_err err = kr_err_from_errno(w < 0 ? errno : EIO);
            close(fd);
            unlink(tmp);
            return err;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return KR_EIO;
    }
    if (rename(tmp, path) != 0) {
        kr_err err = kr_err_from_errno(errno);
        unlink(tmp);
        return err;
    }
    return KR_OK;
}

/* Reads a whole file of at most max bytes into a malloc'd buffer. */
static kr_err read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kr_err_from_errno(errno);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return KR_EINVAL;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return KR_ETOOLARGE;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return KR_ENOMEM;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            kr_err err = kr_err_from_errno(errno);
            free(buf);
            close(fd);
            return err;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) { /* grew while read: more than it said */
            free(buf);
            close(fd);
            return KR_ETOOLARGE;
        }
    }
    close(fd);
    *out = buf;
    *len = n;
    return KR_OK;
}

/* ---- export ---- */

static const char export_usage[] =
    "usage: kiroku export --tenant T [--from SEQ] [--to SEQ] [--since STATE] --out FILE\n"
    "                     [--data DIR] [--json]\n"
    "\n"
    "Writes tenant T's records with seq in [SEQ, SEQ] (default: all of them up to the\n"
    "newest checkpoint) to FILE: each record as stored, with its per-tenant number,\n"
    "its time in UTC and JST and an inclusion proof, the signed checkpoints and the\n"
    "consistency proofs between them, and the journal's key chain. It holds nothing\n"
    "of other tenants but proof hashes. Check it with `kiroku audit verify`.\n"
    "Reads DIR read-only: safe while a server runs.\n"
    "\n"
    "An export holds at most 100,000 records and about 192 MiB; a longer history is\n"
    "cut there, and the command says which --from continues it (exit status 0).\n"
    "\n"
    "--since STATE (saved by `kiroku audit verify --save-state` of the previous\n"
    "export) adds the consistency proof from that export's newest checkpoint, which\n"
    "`kiroku audit verify --since STATE` needs, and starts after its last record\n"
    "unless --from is given.\n";

/* A state file that is missing or unreadable is an I/O failure; one that
 * does not parse is a failed check (exit status 1). */
static int load_state(const char *path, struct exp_state **out)
{
    kr_err err = exp_state_load(path, out);
    if (err == KR_ECORRUPT || err == KR_ETOOLARGE) {
        fprintf(stderr, "kiroku: %s: not an export state (%s)\n", path, kr_errname(err));
        return CLI_BAD;
    }
    return err ? cli_fail(path, err) : CLI_OK;
}

/* --since: the proof from the state's size, and --from after its last record. */
static int since_options(const char *path, struct exp_options *eo)
{
    struct exp_state *st = NULL;
    int rc = load_state(path, &st);
    if (rc != CLI_OK)
        return rc;
    if (exp_state_tenant(st) != eo->tenant) {
        fprintf(stderr, "kiroku: %s: a state of tenant %" PRIu64 ", not %" PRIu64 "\n", path,
                exp_state_tenant(st), eo->tenant);
        exp_state_free(st);
        return CLI_USAGE;
    }
    eo->since_size = exp_state_size(st);
    if (!eo->from)
        eo->from = exp_state_last_seq(st) + 1;
    exp_state_free(st);
    return CLI_OK;
}

int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"tenant", required_argument, 0, 't'},
                                         {"from", required_argument, 0, 'f'},
                                         {"to", required_argument, 0, 'T'},
                                         {"out", required_argument, 0, 'o'},
                                         {"since", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    struct exp_options eo = {0};
    const char *out = NULL, *since = NULL;
    int rc, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!cli_parse_u64(optarg, 1, INT64_MAX, &eo.tenant)) {
                fprintf(stderr, "kiroku: --tenant must be a tenant id >= 1\n");
                return CLI_USAGE;
            }
            break;
        case 'f':
            if (!cli_parse_u64(optarg, 1, INT64_MAX, &eo.from)) {
                fprintf(stderr, "kiroku: --from must be a seq >= 1\n");
                return CLI_USAGE;
            }
            break;
        case 'T':
            if (!cli_parse_u64(optarg, 1, INT64_MAX, &eo.to)) {
                fprintf(stderr, "kiroku: --to must be a seq >= 1\n");
                return CLI_USAGE;
            }
            break;
        case 'o':
            out = optarg;
            break;
        case 's':
            since = optarg;
            break;
        default:
            if ((rc = cli_common_option(c, export_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc || !eo.tenant || !out)
        return cli_usage(export_usage);
    if (since && (rc = since_options(since, &eo)) != CLI_OK)
        return rc;
    if (eo.to && eo.from > eo.to) {
        fprintf(stderr, "kiroku: --from is after --to\n");
        return CLI_USAGE;
    }
    const char *data = cli_data_dir(co.data);
    struct jrn_options o = {.dir = data, .read_only = true};
    struct journal *j;
    kr_err err = jrn_open(&o, &j);
    if (err)
        return cli_fail_open(data, err);
    char *doc = NULL;
    size_t len = 0;
    struct exp_built built;
    err = exp_build(j, &eo, &doc, &len, &built);
    jrn_close(j);
    if (err == KR_ENOTFOUND) {
        fprintf(stderr, "kiroku: tenant %" PRIu64 " has no records in that range\n", eo.tenant);
        return CLI_FAIL;
    }
    if (err)
        return cli_fail("export", err);
    err = write_file_atomic(out, doc, len);
    free(doc);
    if (err)
        return cli_fail(out, err);
    if (co.json) {
        printf("{\"out\":");
        cli_json_str(stdout, out, strlen(out));
        printf(",\"bytes\":%zu,\"records\":%" PRIu64 ",\"from\":%" PRIu64 ",\"to\":%" PRIu64
               ",\"next_from\":%" PRIu64 "}\n",
               len, built.records, built.first, built.last, built.next_from);
    } else {
        printf("wrote %s: %" PRIu64 " records of tenant %" PRIu64 ", seq %" PRIu64 "..%" PRIu64
               " (%zu bytes)\n",
               out, built.records, eo.tenant, built.first, built.last, len);
        if (built.next_from)
            printf("cut short at the export's limits: continue with --from %" PRIu64 "\n",
                   built.next_from);
    }
    return CLI_OK;
}

/* ---- audit verify ---- */

static const char audit_usage[] =
    "usage: kiroku audit verify FILE --pubkey KEY [--since STATE] [--save-state STATE] [--json]\n"
    "       kiroku audit report --tenant T [--format md|html] [--out FILE] [--data DIR]\n"
    "\n"
    "verify: checks an export (kiroku export, or the audit.export op) offline with\n"
    "only the journal's first public key KEY (base64, or a .pub file): the key\n"
    "chain, every checkpoint's signature and consistency, every record's encoding,\n"
    "signature, payload commitment, tenant and inclusion proof, and that the\n"
    "per-tenant numbers run without a gap from the first record to the last.\n"
    "--since STATE checks that the export continues the one that state was saved\n"
    "from (same journal, origin and tenant; its newest checkpoint a prefix of this\n"
    "one's; its first record the next of the tenant); --save-state STATE writes,\n"
    "when all holds, the state for the next export (kiroku export --since STATE).\n"
    "Exit status: 0 all holds; 1 a check failed (what and where is printed);\n"
    "3 the file could not be read.\n"
    "\n"
    "report: the tenant's accounts and permission changes, logins and lockouts,\n"
    "incidents and their notices (72-hour deadline met or missed), notices, exports\n"
    "and erasures, in JST, as Markdown (default) or one self-contained HTML file.\n";

static void print_hex(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", p[i]);
}

static kr_err load_pubkey(const char *arg, uint8_t pk[KR_PUBKEY_LEN])
{
    if (kr_pubkey_from_b64(arg, pk) == KR_OK)
        return KR_OK;
    char buf[256];
    kr_err err = kr_file_read_small(arg, buf, sizeof buf, false);
    if (err)
        return err;
    return kr_pubkey_from_b64(buf, pk);
}

/* audit verify's verdict on the report r of exp_verify_since (outcome err),
 * as JSON or as text. */
static void verify_print(const struct exp_report *r, kr_err err, bool json, const char *since_path,
                         const char *save)
{
    if (json) {
        printf("{\"ok\":%s,\"tenant\":\"%" PRIu64 "\",\"from\":%" PRIu64 ",\"to\":%" PRIu64
               ",\"records\":%" PRIu64 ",\"first_tseq\":%" PRIu64 ",\"last_tseq\":%" PRIu64
               ",\"from_start\":%s,\"format1\":%" PRIu64 ",\"stripped\":%" PRIu64
               ",\"keys\":%" PRIu64 ",\"checkpoints\":%" PRIu64 ",\"checkpoint_size\":%" PRIu64,
               err == KR_OK ? "true" : "false", r->tenant, r->from, r->to, r->records,
               r->first_tseq, r->last_tseq, r->from_start ? "true" : "false", r->format1,
               r->stripped, r->keys, r->checkpoints, r->checkpoint_size);
        if (err == KR_OK) {
            printf(",\"root\":\"");
            print_hex(stdout, r->root, sizeof r->root);
            printf("\"}\n");
        } else {
            printf(",\"error\":\"%s\",\"bad_seq\":%" PRIu64 ",\"bad_tseq\":%" PRIu64 ",\"where\":",
                   kr_errname(err), r->bad_seq, r->bad_tseq);
            cli_json_str(stdout, r->where, strlen(r->where));
            printf(",\"what\":");
            cli_json_str(stdout, r->what, strlen(r->what));
            printf("}\n");
        }
    } else if (err == KR_OK) {
        printf("ok: tenant %" PRIu64 ", %" PRIu64 " records, seq %" PRIu64 "..%" PRIu64
               ", tseq %" PRIu64 "..%" PRIu64 "%s\n",
               r->tenant, r->records, r->from, r->to, r->first_tseq, r->last_tseq,
               r->from_start ? " (from the tenant's first record)" : "");
        if (r->format1)
            printf("  %" PRIu64 " format-1 records (before per-tenant numbers)%s\n", r->format1,
                   r->from_start ? ", all counted" : ": their completeness is not proven");
        if (r->stripped)
            printf("  %" PRIu64 " erased payloads\n", r->stripped);
        printf("  %" PRIu64 " keys, %" PRIu64 " checkpoints, the newest at size %" PRIu64
               "\n  root: ",
               r->keys, r->checkpoints, r->checkpoint_size);
        print_hex(stdout, r->root, sizeof r->root);
        if (since_path)
            printf("\n  continues %s: no record of the tenant left out between them", since_path);
        printf("\n  records after seq %" PRIu64 " are not covered by this export\n", r->to);
        if (save)
            printf("  state saved to %s\n", save);
    } else {
        printf("FAILED: %s: %s (%s)\n", r->where, r->what, kr_errname(err));
    }
}

static int audit_verify(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"pubkey", required_argument, 0, 'p'},
                                         {"since", required_argument, 0, 's'},
                                         {"save-state", required_argument, 0, 'S'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    const char *key = NULL, *since_path = NULL, *save = NULL;
    int rc, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            key = optarg;
            break;
        case 's':
            since_path = optarg;
            break;
        case 'S':
            save = optarg;
            break;
        default:
            if ((rc = cli_common_option(c, audit_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc - 1 || !key)
        return cli_usage(audit_usage);
    const char *file = argv[optind];
    uint8_t pk[KR_PUBKEY_LEN];
    if (load_pubkey(key, pk) != KR_OK) {
        fprintf(stderr, "kiroku: --pubkey is neither a base64 Ed25519 public key nor a file "
                        "holding one\n");
        return CLI_USAGE;
    }
    struct exp_state *since = NULL, *next = NULL;
    if (since_path && (rc = load_state(since_path, &since)) != CLI_OK)
        return rc;
    uint8_t *buf = NULL;
    size_t len = 0;
    kr_err err = read_file(file, KR_EXPORT_FILE_MAX, &buf, &len);
    if (err)
        exp_state_free(since);
    if (err == KR_ETOOLARGE) {
        fprintf(stderr, "kiroku: %s: larger than an export may be (%zu bytes)\n", file,
                KR_EXPORT_FILE_MAX);
        return CLI_BAD;
    }
    if (err)
        return cli_fail(file, err);
    struct exp_report r;
    err = exp_verify_since(buf, len, pk, since, save ? &next : NULL, &r);
    free(buf);
    exp_state_free(since);
    if (err == KR_ENOMEM)
        return cli_fail(file, err);
    if (next) {
        kr_err serr = exp_state_save(next, save);
        exp_state_free(next);
        if (serr)
            return cli_fail(save, serr);
    }
    verify_print(&r, err, co.json, since_path, save);
    return err == KR_OK ? CLI_OK : CLI_BAD;
}

int cmd_audit(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return audit_verify(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "report") == 0)
        return audit_report_cmd(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(audit_usage, stdout);
        return CLI_OK;
    }
    return cli_usage(audit_usage);
}
