/*
 * cmd_journal.c: the journal subcommands: init, verify, dump and keys.
 */
#include "cli.h"
#include "journal.h"
#include "jst.h"
#include "verify.h"

#include <getopt.h>
#include <inttypes.h>
#include <sodium.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void print_hex(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", p[i]);
}

/* ---- init ---- */

static const char init_usage[] =
    "usage: kiroku init [--data DIR] [--json]\n"
    "\n"
    "Creates a journal in DIR: a signing key (DIR/keys/journal-1.key, mode 0600),\n"
    "the LMDB journal and its genesis record. Prints the public key and key id;\n"
    "give the public key to auditors: it is all they need to verify.\n";

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, {0, 0, 0, 0}};
    struct cli_common co = {0};
    int rc;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        default:
            if ((rc = cli_common_option(c, init_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc)
        return cli_usage(init_usage);
    const char *data = cli_data_dir(co.data);
    bool json = co.json;
    struct jrn_options o = {.dir = data};
    struct jrn_info info;
    kr_err err = jrn_create(&o, &info);
    if (err == KR_EEXIST) {
        fprintf(stderr, "kiroku: %s already holds a journal (or its signing key)\n", data);
        return CLI_FAIL;
    }
    if (err)
        return cli_fail("init", err);
    char pk[KR_PUBKEY_B64_LEN];
    kr_pubkey_to_b64(info.pk, pk);
    if (json) {
        printf("{\"data\":");
        cli_json_str(stdout, data, strlen(data));
        printf(",\"origin\":\"%s\",\"key_id\":%u,\"public_key\":\"%s\"}\n", info.origin,
               info.key_id, pk);
    } else {
        printf("created journal in %s\n"
               "  origin:     %s\n"
               "  key id:     %u\n"
               "  public key: %s\n"
               "auditors verify with: kiroku verify --data %s --pubkey %s\n",
               data, info.origin, info.key_id, pk, data, pk);
    }
    return CLI_OK;
}

/* ---- verify ---- */

static const char verify_usage[] =
    "usage: kiroku verify [--data DIR] [--fast] [--pubkey BASE64] [--threads N]\n"
    "                     [--since STATE] [--save-state STATE] [--json]\n"
    "\n"
    "Replays every record and checks its hash, its link to the record before,\n"
    "its payload commitment and signature, the Merkle tree and every signed\n"
    "checkpoint. --fast skips the per-record signatures and index checks.\n"
    "--pubkey pins the journal's first public key (as printed by init); without\n"
    "it, DIR/keys/journal-1.pub is trusted.\n"
    "--save-state STATE writes, after a verification that holds, what the next\n"
    "one needs to continue from it; --since STATE checks only the records\n"
    "appended after STATE's checkpoint, and the consistency proof from it (give\n"
    "both, the same file, to check daily). STATE is checked against this journal\n"
    "and the trusted key before use; records before it are not read again (a\n"
    "full verification checks them). See docs/auditing.md.\n"
    "\n"
    "Exit status: 0 all holds; 1 a check failed (the first bad seq is printed);\n"
    "3 the journal or STATE could not be read, or STATE was refused.\n";

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    fprintf(stderr, "\rverifying: %" PRIu64 " / %" PRIu64 " records", done, total);
    if (done == total)
        fputc('\n', stderr);
}

/* What the command line asks of `verify`. */
struct verify_args {
    struct jrn_verify_options vo;
    const char *since, *save;
    struct cli_common co;
};

/* The command line into a; CLI_CONTINUE, or the exit code to end with. */
static int verify_parse(int argc, char **argv, struct verify_args *a)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"fast", no_argument, 0, 'f'},
                                         {"pubkey", required_argument, 0, 'p'},
                                         {"threads", required_argument, 0, 't'},
                                         {"since", required_argument, 0, 's'},
                                         {"save-state", required_argument, 0, 'S'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    uint64_t n;
    int c, rc;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            a->vo.fast = true;
            break;
        case 'p':
            if (kr_pubkey_from_b64(optarg, a->vo.root_key) != KR_OK) {
                fprintf(stderr, "kiroku: --pubkey is not a base64 Ed25519 public key\n");
                return CLI_USAGE;
            }
            a->vo.have_root_key = true;
            break;
        case 't':
            if (!cli_parse_u64(optarg, 1, 64, &n)) {
                fprintf(stderr, "kiroku: --threads must be 1..64\n");
                return CLI_USAGE;
            }
            a->vo.threads = (unsigned)n;
            break;
        case 's':
            a->since = optarg;
            break;
        case 'S':
            a->save = optarg;
            break;
        default:
            if ((rc = cli_common_option(c, verify_usage, &a->co)) != CLI_CONTINUE)
                return rc;
        }
    }
    return optind != argc ? cli_usage(verify_usage) : CLI_CONTINUE;
}

/* Prints the verdict r (of secs seconds), as text or one JSON line. */
static void verify_print(const struct verify_args *a, const struct jrn_verify_report *r,
                         double secs)
{
    bool fast = a->vo.fast;
    if (a->co.json) {
        printf("{\"ok\":%s,\"mode\":\"%s\",\"records\":%" PRIu64 ",\"checkpoints\":%" PRIu64
               ",\"keys\":%" PRIu64 ",\"stripped\":%" PRIu64 ",\"tenants\":%" PRIu64
               ",\"epochs\":%" PRIu64 ",\"checked\":%" PRIu64 ",\"seconds\":%.3f",
               r->result == KR_OK ? "true" : "false",
               a->since ? (fast ? "fast-since" : "since")
               : fast   ? "fast"
                        : "full",
               r->records, r->checkpoints, r->keys, r->stripped, r->tenants, r->epochs, r->checked,
               secs);
        if (r->result == KR_OK) {
            printf(",\"root\":\"");
            print_hex(stdout, r->root, sizeof r->root);
            printf("\"}\n");
        } else {
            printf(",\"bad_seq\":%" PRIu64 ",\"error\":\"%s\",\"what\":", r->bad_seq,
                   kr_errname(r->result));
            cli_json_str(stdout, r->what, strlen(r->what));
            printf("}\n");
        }
    } else if (r->result == KR_OK) {
        printf("ok: %" PRIu64 " records, %" PRIu64 " checkpoints, %" PRIu64
               " keys, %s verification in %.2f s",
               r->records, r->checkpoints, r->keys, fast ? "fast" : "full", secs);
        if (a->since)
            printf(", %" PRIu64 " records checked since the saved state", r->checked);
        if (r->stripped)
            printf(", %" PRIu64 " erased payloads", r->stripped);
        printf("\nroot: ");
        print_hex(stdout, r->root, sizeof r->root);
        printf("\n");
    } else {
        printf("FAILED at seq %" PRIu64 ": %s (%s)\n", r->bad_seq, r->what, kr_errname(r->result));
    }
}

int cmd_verify(int argc, char **argv)
{
    struct verify_args a;
    int rc = verify_parse(argc, argv, &a);
    if (rc != CLI_CONTINUE)
        return rc;
    const char *data = cli_data_dir(a.co.data);
    if (!a.co.json && isatty(STDERR_FILENO))
        a.vo.progress = progress;
    struct jrn_verify_report r;
    struct jrn_verify_state *st = NULL;
    double t0 = cli_now();
    if (a.since) {
        kr_err serr = jrn_verify_state_load(a.since, &st);
        if (serr) {
            fprintf(stderr, "kiroku: %s: cannot use as a verification state: %s\n", a.since,
                    kr_strerror(serr));
            return CLI_FAIL;
        }
        a.vo.since = st;
    }
    a.vo.want_state = a.save != NULL;
    kr_err err = jrn_verify(data, &a.vo, &r);
    double secs = cli_now() - t0;
    jrn_verify_state_free(st);
    if (err && r.what[0]) {
        fprintf(stderr, "kiroku: %s refused: %s (%s)\n", a.since ? a.since : "state", r.what,
                kr_errname(err));
        return CLI_FAIL;
    }
    if (err)
        return cli_fail_open(data, err);
    if (r.state) {
        kr_err serr = jrn_verify_state_save(r.state, a.save);
        jrn_verify_state_free(r.state);
        if (serr) {
            fprintf(stderr, "kiroku: %s: cannot write the verification state: %s\n", a.save,
                    kr_strerror(serr));
            return CLI_FAIL;
        }
    }
    verify_print(&a, &r, secs);
    return r.result == KR_OK ? CLI_OK : CLI_BAD;
}

/* ---- dump ---- */

static const char dump_usage[] =
    "usage: kiroku dump [--data DIR] [--from SEQ] [--limit N] [--json]\n"
    "\n"
    "Prints records from seq SEQ (default 1), at most N (default all): one line\n"
    "each with seq, UTC time, the same time in JST (+09:00), tenant, stream,\n"
    "version, type, actor, key id, payload size and the first bytes of commitment\n"
    "and prev. --json prints one JSON object per line, with full hashes and the\n"
    "payload in base64 (time, time_jst, time_ns).\n";

static void format_time(uint64_t ns, char out[40])
{
    time_t s = (time_t)(ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%09lluZ", (unsigned long long)(ns % 1000000000ull));
}

static void dump_json(const struct jrn_record *r)
{
    char t[40], jst[JST_LEN + 1];
    format_time(r->time_ns, t);
    jst_format(r->time_ns, jst);
    /* Tenant ids and times as decimal strings (docs/api.md). */
    printf("{\"seq\":%" PRIu64 ",\"time\":\"%s\",\"time_jst\":\"%s\",\"time_ns\":\"%" PRIu64
           "\",\"tenant\":\"%" PRIu64 "\",\"format\":%u,\"tseq\":%" PRIu64 ",\"stream\":",
           r->seq, t, jst, r->time_ns, r->tenant, r->format, r->tseq);
    cli_json_str(stdout, r->stream, r->stream_len);
    printf(",\"version\":%" PRIu64 ",\"type\":", r->version);
    cli_json_str(stdout, r->type, r->type_len);
    printf(",\"actor\":");
    cli_json_str(stdout, r->actor, r->actor_len);
    printf(",\"key_id\":%u,\"commitment\":\"", r->key_id);
    print_hex(stdout, r->commitment, KR_HASH_LEN);
    printf("\",\"prev\":\"");
    print_hex(stdout, r->prev, KR_HASH_LEN);
    printf("\",\"sig\":\"");
    print_hex(stdout, r->sig, JRN_SIG_LEN);
    printf("\",\"payload\":");
    if (r->payload_stripped) {
        printf("null");
    } else {
        size_t cap = sodium_base64_ENCODED_LEN(r->payload_len, sodium_base64_VARIANT_ORIGINAL);
        char *b = malloc(cap);
        if (b) {
            sodium_bin2base64(b, cap, r->payload, r->payload_len, sodium_base64_VARIANT_ORIGINAL);
            printf("\"%s\"", b);
            free(b);
        } else {
            printf("null");
        }
    }
    printf("}\n");
}

static void dump_text(const struct jrn_record *r)
{
    char t[40], jst[JST_LEN + 1];
    format_time(r->time_ns, t);
    jst_format(r->time_ns, jst);
    printf("#%" PRIu64 " %s (JST %s) tenant=%" PRIu64 " stream=%.*s v=%" PRIu64
           " type=%.*s actor=%.*s key=%u",
           r->seq, t, jst, r->tenant, (int)r->stream_len, r->stream, r->version, (int)r->type_len,
           r->type, (int)r->actor_len, r->actor, r->key_id);
    if (r->payload_stripped)
        printf(" payload=erased");
    else
        printf(" payload=%zuB", r->payload_len);
    printf(" commitment=");
    print_hex(stdout, r->commitment, 6);
    printf(" prev=");
    print_hex(stdout, r->prev, 6);
    printf("\n");
}

int cmd_dump(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"from", required_argument, 0, 'f'},
                                         {"limit", required_argument, 0, 'l'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    uint64_t from = 1, limit = UINT64_MAX;
    int rc;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (!cli_parse_u64(optarg, 1, UINT64_MAX, &from)) {
                fprintf(stderr, "kiroku: --from must be a seq >= 1\n");
                return CLI_USAGE;
            }
            break;
        case 'l':
            if (!cli_parse_u64(optarg, 0, UINT64_MAX, &limit)) {
                fprintf(stderr, "kiroku: --limit must be a number\n");
                return CLI_USAGE;
            }
            break;
        default:
            if ((rc = cli_common_option(c, dump_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc)
        return cli_usage(dump_usage);
    const char *data = cli_data_dir(co.data);
    bool json = co.json;
    struct jrn_options o = {.dir = data, .read_only = true};
    struct journal *j;
    kr_err err = jrn_open(&o, &j);
    if (err)
        return cli_fail_open(data, err);
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = from};
    struct jrn_cursor *cur;
    if ((err = jrn_cursor_new(j, &q, &cur))) {
        jrn_close(j);
        return cli_fail("dump", err);
    }
    struct jrn_record r;
    for (uint64_t i = 0; i < limit && (err = jrn_cursor_next(cur, &r)) == KR_OK; i++) {
        if (json)
            dump_json(&r);
        else
            dump_text(&r);
    }
    jrn_cursor_free(cur);
    jrn_close(j);
    if (err && err != KR_ENOTFOUND)
        return cli_fail("dump", err);
    return CLI_OK;
}

/* ---- keys ---- */

static const char keys_usage[] =
    "usage: kiroku keys rotate [--data DIR] [--json]\n"
    "\n"
    "rotate: makes a new signing key, records it in the journal (signed by the\n"
    "current key) and signs every later record and checkpoint with it. Records\n"
    "signed by the old key still verify. Run it while the server is stopped.\n";

int cmd_keys(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, {0, 0, 0, 0}};
    struct cli_common co = {0};
    int rc;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        default:
            if ((rc = cli_common_option(c, keys_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc - 1 || strcmp(argv[optind], "rotate") != 0) {
        fputs(keys_usage, stderr);
        return CLI_USAGE;
    }
    const char *data = cli_data_dir(co.data);
    bool json = co.json;
    struct jrn_options o = {.dir = data};
    struct journal *j;
    kr_err err = jrn_open(&o, &j);
    if (err)
        return cli_fail_open(data, err);
    struct jrn_info info;
    err = jrn_rotate_key(j, &info);
    jrn_close(j);
    if (err)
        return cli_fail("keys rotate", err);
    char pk[KR_PUBKEY_B64_LEN];
    kr_pubkey_to_b64(info.pk, pk);
    if (json)
        printf("{\"key_id\":%u,\"public_key\":\"%s\"}\n", info.key_id, pk);
    else
        printf("new signing key %u: %s\n", info.key_id, pk);
    return CLI_OK;
}
