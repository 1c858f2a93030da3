/*
 * cmd_backup.c: `kiroku backup`, `kiroku backup list|check`, `kiroku restore`
 * and `kiroku bench backup` (the library is backup.h).
 */
#include "accounts.h"
#include "backup.h"
#include "cli.h"
#include "domain.h"
#include "journal.h"
#include "keystore.h"
#include "path.h"
#include "retention.h"
#include "retention_hooks.h"
#include "seed.h"
#include "verify.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Generations `backup list` shows at most (a directory keeps 7). */
#define LIST_MAX 64

static void progress_tty(void *arg, const char *step, uint64_t done, uint64_t total)
{
    fprintf(stderr, "\r%s: %-10s %" PRIu64 "/%" PRIu64, (const char *)arg, step, done, total);
    if (done == total)
        fputc('\n', stderr);
}

/* The trusted key of `list`, `check`: --pubkey, else DATA/keys/journal-1.pub. */
static int trusted_key(const char *b64, const char *data, uint8_t pk[32])
{
    if (b64) {
        if (kr_pubkey_from_b64(b64, pk) != KR_OK) {
            fprintf(stderr, "kiroku: --pubkey is not a base64 Ed25519 public key\n");
            return CLI_USAGE;
        }
        return CLI_OK;
    }
    kr_err err = kr_pubkey_load(data, 1, pk);
    if (err) {
        fprintf(stderr,
                "kiroku: no trusted public key: give --pubkey, or --data DIR with "
                "DIR/keys/journal-1.pub (%s)\n",
                kr_strerror(err));
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* ---- backup ---- */

static const char backup_usage[] =
    "usage: kiroku backup [--data DIR] [--to BACKUPS] [--json]\n"
    "       kiroku backup list BACKUPS [--pubkey B64 | --data DIR] [--json]\n"
    "       kiroku backup check BACKUPS [--pubkey B64 | --data DIR] [--json]\n"
    "\n"
    "backup: a consistent copy of DIR taken while a server may be writing: the\n"
    "  journal and the keystore (LMDB compacting copies of one snapshot each), the\n"
    "  key files (KEK, signing and public keys), the checkpoint and a manifest\n"
    "  signed with the journal's key, holding every file's SHA-256. One generation\n"
    "  per JST day, BACKUPS/YYYY-MM-DD (a second backup the same day replaces it\n"
    "  atomically); the newest 7 are kept. BACKUPS defaults to $KIROKU_BACKUPS,\n"
    "  else DIR/../backups (for var/kiroku: var/backups). Generations hold the\n"
    "  KEK and signing keys: keep BACKUPS as private as DIR.\n"
    "list: every generation, newest first, with last seq, time (JST), size and\n"
    "  whether its manifest signature and every file digest hold.\n"
    "check: list, and also verify each generation's journal (fast verification,\n"
    "  only once its files are proven). BACKUPS may also be one generation.\n"
    "  The trusted key is --pubkey (key 1, as `init` printed it), else\n"
    "  DIR/keys/journal-1.pub.\n"
    "\n"
    "For drills and tests, --test-clock lets KIROKU_CLOCK_OFFSET shift the clock\n"
    "that decides the day (e.g. 30d, -90m; or @SECONDS: start at that UTC instant,\n"
    "as `kiroku retention` and `kiroku serve --test-clock` take it); without\n"
    "--test-clock a backup refuses to run with it set (exit 2).\n"
    "\n"
    "Exit status: 0 done (check: every generation verifies); 1 check found a bad\n"
    "generation (what failed is printed); 2 usage; 3 could not run.\n";

static void print_gen_json(const struct backup_gen *g)
{
    printf("{\"generation\":\"%s\",\"ok\":%s,\"last_seq\":%" PRIu64 ",\"time_ns\":\"%" PRIu64
           "\",\"time_jst\":",
           g->name, g->verified ? "true" : "false", g->last_seq, g->time_ns);
    cli_json_str(stdout, g->time_jst, strlen(g->time_jst));
    printf(",\"bytes\":%" PRIu64, g->bytes);
    if (!g->verified) {
        printf(",\"error\":\"%s\",\"reason\":", kr_errname(g->result));
        cli_json_str(stdout, g->reason, strlen(g->reason));
    }
    printf("}");
}

static void print_gen_text(const struct backup_gen *g)
{
    if (g->verified)
        printf("%-12s ok   seq %-10" PRIu64 " %s %10.1f MiB\n", g->name, g->last_seq, g->time_jst,
               (double)g->bytes / (1024.0 * 1024.0));
    else
        printf("%-12s BAD  %s\n", g->name, g->reason);
}

static int backup_list_cmd(int argc, char **argv, bool check)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS, {"pubkey", required_argument, 0, 'p'}, {0, 0, 0, 0}};
    struct cli_common co = {0};
    const char *b64 = NULL;
    int rc, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'p')
            b64 = optarg;
        else if ((rc = cli_common_option(c, backup_usage, &co)) != CLI_CONTINUE)
            return rc;
    }
    if (optind != argc - 1)
        return cli_usage(backup_usage);
    const char *dir = argv[optind];
    uint8_t pk[32];
    if ((rc = trusted_key(b64, cli_data_dir(co.data), pk)) != CLI_OK)
        return rc;
    struct backup_gen *gens = calloc(LIST_MAX, sizeof *gens);
    if (!gens)
        return cli_fail("backup", KR_ENOMEM);
    size_t n = 0;
    kr_err err;
    char probe[KR_PATH_MAX];
    struct stat st;
    if ((err = kr_path_join(probe, sizeof probe, dir, "manifest"))) {
        free(gens);
        return cli_fail(dir, err);
    }
    bool one = lstat(probe, &st) == 0;
    if (one) {
        err = backup_check(dir, pk, check, &gens[0]);
        n = err ? 0 : 1;
    } else {
        err = backup_list(dir, pk, gens, LIST_MAX, &n);
        for (size_t i = 0; check && err == KR_OK && i < n; i++) {
            if (!gens[i].verified)
                continue;
            char gen[KR_PATH_MAX];
            if ((err = kr_path_join(gen, sizeof gen, dir, gens[i].name)) == KR_OK)
                err = backup_check(gen, pk, true, &gens[i]);
        }
    }
    if (err) {
        free(gens);
        if (err == KR_ENOTFOUND) {
            fprintf(stderr, "kiroku: no backups directory %s\n", dir);
            return CLI_FAIL;
        }
        return cli_fail(dir, err);
    }
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !gens[i].verified;
    if (co.json) {
        printf("{\"ok\":%s,\"generations\":[", bad ? "false" : "true");
        for (size_t i = 0; i < n; i++) {
            if (i)
                printf(",");
            print_gen_json(&gens[i]);
        }
        printf("]}\n");
    } else {
        if (n == 0)
            printf("no generations in %s\n", dir);
        for (size_t i = 0; i < n; i++)
            print_gen_text(&gens[i]);
        if (check)
            printf("%s: %zu of %zu generations verify%s\n", bad ? "FAILED" : "ok", n - bad, n,
                   check ? " (manifest, digests, journal)" : "");
    }
    free(gens);
    return check && bad ? CLI_BAD : CLI_OK;
}

int cmd_backup(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "list") == 0)
        return backup_list_cmd(argc - 1, argv + 1, false);
    if (argc >= 2 && strcmp(argv[1], "check") == 0)
        return backup_list_cmd(argc - 1, argv + 1, true);
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"to", required_argument, 0, 't'},
                                         {"test-clock", no_argument, 0, 'c'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    const char *to = NULL;
    bool test_clock = false;
    int rc, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 't')
            to = optarg;
        else if (c == 'c')
            test_clock = true;
        else if ((rc = cli_common_option(c, backup_usage, &co)) != CLI_CONTINUE)
            return rc;
    }
    if (optind != argc)
        return cli_usage(backup_usage);
    const char *data = cli_data_dir(co.data);
    char backups[KR_PATH_MAX];
    const char *env = getenv("KIROKU_BACKUPS");
    if (to)
        snprintf(backups, sizeof backups, "%s", to);
    else if (env && *env)
        snprintf(backups, sizeof backups, "%s", env);
    else
        tools_ret_default_backups(data, backups, sizeof backups);
    struct kr_offset_clock oc;
    const struct kr_clock *clock;
    if (!cli_clock("backup", test_clock, &oc, &clock))
        return CLI_USAGE;
    struct backup_options o = {.data_dir = data, .backups_dir = backups, .clock = clock};
    if (!co.json && isatty(STDERR_FILENO)) {
        o.progress = progress_tty;
        o.progress_arg = "backup";
    }
    struct backup_result r;
    kr_err err = backup_run(&o, &r);
    if (err) {
        if (err == KR_ENOTFOUND && !r.reason[0])
            return cli_fail_open(data, err);
        fprintf(stderr, "kiroku: backup: %s (%s)\n", r.reason[0] ? r.reason : kr_strerror(err),
                kr_errname(err));
        return CLI_FAIL;
    }
    if (co.json) {
        printf("{\"ok\":true,\"generation\":\"%s\",\"path\":", r.generation);
        char path[KR_PATH_MAX + 80];
        snprintf(path, sizeof path, "%s/%s", backups, r.generation);
        cli_json_str(stdout, path, strlen(path));
        printf(",\"last_seq\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"seconds\":%.3f,\"removed\":%" PRIu64 "}\n",
               r.last_seq, r.bytes, r.seconds, r.removed);
    } else {
        printf("backup %s/%s: %" PRIu64 " records, %.1f MiB in %.2f s", backups, r.generation,
               r.last_seq, (double)r.bytes / (1024.0 * 1024.0), r.seconds);
        if (r.removed)
            printf("; %" PRIu64 " old generation%s removed", r.removed, r.removed == 1 ? "" : "s");
        printf("\n");
    }
    return CLI_OK;
}

/* ---- restore ---- */

static const char restore_usage[] =
    "usage: kiroku restore GENERATION --data NEWDIR --pubkey B64 [--until SEQ] [--full]\n"
    "                      [--new-epoch] [--known-checkpoint FILE] [--json]\n"
    "\n"
    "Restores a backup generation (BACKUPS/YYYY-MM-DD) into NEWDIR, which must not\n"
    "exist, be empty, or hold only a checkpoint file. The backup is checked before\n"
    "anything opens it: the manifest's signature (by the journal's key chain,\n"
    "rooted in --pubkey, key 1 as `init` printed it), every file's SHA-256 and\n"
    "size, then the journal (links, tree, every checkpoint signature; --full adds\n"
    "every record signature). The work happens in NEWDIR.restore-tmp; NEWDIR\n"
    "appears only when everything is done, views rebuilt.\n"
    "\n"
    "The newest checkpoint known (NEWDIR/checkpoint, or --known-checkpoint FILE,\n"
    "e.g. a copy of the old data directory's checkpoint) must be consistent with\n"
    "the backup; a backup older than it is refused unless --new-epoch: the\n"
    "restored journal then starts a new epoch (a new signing key announced by a\n"
    "journal.epoch_started record naming the old epoch's last checkpoint), since\n"
    "one key must never sign two roots for one tree size. --until SEQ restores\n"
    "records 1..SEQ only, and starts a new epoch for the same reason.\n"
    "\n"
    "Exit status: 0 restored; 1 the backup is bad or refused (what failed is\n"
    "printed); 2 usage; 3 could not run (NEWDIR holds a journal, I/O).\n";

int cmd_restore(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"pubkey", required_argument, 0, 'p'},
                                         {"until", required_argument, 0, 'u'},
                                         {"full", no_argument, 0, 'f'},
                                         {"new-epoch", no_argument, 0, 'e'},
                                         {"known-checkpoint", required_argument, 0, 'k'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    struct backup_restore_options o = {0};
    uint8_t pk[32];
    bool have_pk = false;
    int rc, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (kr_pubkey_from_b64(optarg, pk) != KR_OK) {
                fprintf(stderr, "kiroku: --pubkey is not a base64 Ed25519 public key\n");
                return CLI_USAGE;
            }
            have_pk = true;
            break;
        case 'u':
            if (!cli_parse_u64(optarg, 1, UINT64_MAX, &o.until)) {
                fprintf(stderr, "kiroku: --until must be a seq >= 1\n");
                return CLI_USAGE;
            }
            break;
        case 'f':
            o.full = true;
            break;
        case 'e':
            o.new_epoch = true;
            break;
        case 'k':
            o.known_checkpoint = optarg;
            break;
        default:
            if ((rc = cli_common_option(c, restore_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc - 1 || !co.data)
        return cli_usage(restore_usage);
    if (!have_pk) {
        fprintf(stderr, "kiroku: restore needs --pubkey (the journal's key 1, as `kiroku init` "
                        "printed it): a backup's own keys prove nothing\n");
        return CLI_USAGE;
    }
    o.generation = argv[optind];
    o.data_dir = co.data;
    o.trusted_pk = pk;
    if (!co.json && isatty(STDERR_FILENO)) {
        o.progress = progress_tty;
        o.progress_arg = "restore";
    }
    struct backup_restore_result r;
    kr_err err = backup_restore(&o, &r);
    if (err) {
        bool bad =
            err == KR_ECORRUPT || err == KR_EBADSIG || err == KR_ECONFLICT || err == KR_EVERSION;
        if (co.json) {
            printf("{\"ok\":false,\"error\":\"%s\",\"reason\":", kr_errname(err));
            cli_json_str(stdout, r.reason, strlen(r.reason));
            printf("}\n");
        }
        fprintf(stderr, "kiroku: restore refused: %s (%s)\n",
                r.reason[0] ? r.reason : kr_strerror(err), kr_errname(err));
        if (err == KR_EINVAL)
            return CLI_USAGE;
        return bad ? CLI_BAD : CLI_FAIL;
    }
    if (co.json) {
        printf("{\"ok\":true,\"data\":");
        cli_json_str(stdout, co.data, strlen(co.data));
        printf(",\"records\":%" PRIu64 ",\"known_checkpoint\":%" PRIu64
               ",\"new_epoch\":%s,\"verify_s\":%.3f,\"rebuild_s\":%.3f,\"seconds\":%.3f}\n",
               r.records, r.known_size, r.epoch_started ? "true" : "false", r.verify_s, r.rebuild_s,
               r.seconds);
    } else {
        printf("restored %" PRIu64 " records into %s in %.2f s (journal check %.2f s, views "
               "%.2f s)%s\n",
               r.records, co.data, r.seconds, r.verify_s, r.rebuild_s,
               r.epoch_started ? "; a new epoch started" : "");
    }
    return CLI_OK;
}

/* ---- bench backup ---- */

static const char bench_backup_usage[] =
    "usage: kiroku bench backup [--events N] [--rounds R] [--no-erase] [--json]\n"
    "\n"
    "Fills a temporary journal with N events (default 1000000), then, while\n"
    "appends go on in another thread, takes R times (default 3) in turn a backup\n"
    "(backup_s, with its fsyncs and SHA-256 of every file) and an `mdb_copy -c`\n"
    "of the same journal (mdb_copy_s); prints the median of each and their\n"
    "ratio. Then restores the last backup (restore_s: manifest, digests, fast\n"
    "journal check and view rebuild).\n"
    "Then the erasure (erase_s): seeds another journal of about N events with\n"
    "100 tenants (`kiroku seed`), the last one cancelled, takes one backup\n"
    "generation of it, and times ret_erase_tenant on that tenant with the hooks\n"
    "`kiroku retention` uses (live key, the generation rewritten, payloads\n"
    "stripped, tenant.erased); then checks that the journal verifies (fast) and\n"
    "that the tenant is erased, and fails otherwise. --no-erase skips it\n"
    "(erase_s: null).\n"
    "For N = 1000000 on two shared cores, about 1.5 min in all: filling, the\n"
    "rounds and the restore ~45 s; the erasure phase ~50 s, nearly all of it\n"
    "seeding (the erasure itself ~1 s).\n"
    "Everything happens under $TMPDIR (or /tmp), removed at the end.\n"
    "Needs mdb_copy (lmdb-utils) on PATH.\n";

struct appender {
    struct journal *j;
    atomic_bool stop;
    uint64_t appended;
    kr_err err;
};

static void *append_main(void *arg)
{
    struct appender *a = arg;
    uint8_t payload[200] = {0};
    uint64_t version = 0;
    while (!atomic_load(&a->stop)) {
        struct jrn_event e[16];
        memset(e, 0, sizeof e);
        for (int i = 0; i < 16; i++) {
            e[i].tenant = 1;
            e[i].stream = "bench/backup";
            e[i].stream_len = strlen(e[i].stream);
            e[i].type = "bench.appended";
            e[i].type_len = strlen(e[i].type);
            e[i].actor = "bench";
            e[i].actor_len = 5;
            e[i].expected_version = version + (uint64_t)i;
            e[i].payload = payload;
            e[i].payload_len = sizeof payload;
        }
        /* One stream, 16 versions in a row: valid as one append. */
        kr_err err = jrn_append(a->j, e, 16);
        if (err) {
            a->err = err;
            break;
        }
        version += 16;
        a->appended += 16;
    }
    return NULL;
}

/* Rounds of `bench backup` at most. */
#define BENCH_ROUNDS_MAX 15

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, uint64_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double run_mdb_copy(const char *src, const char *dst)
{
    double t0 = cli_now();
    pid_t pid = fork();
    if (pid == 0) {
        execlp("mdb_copy", "mdb_copy", "-c", src, dst, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    return cli_now() - t0;
}

/* ---- bench backup: the erasure phase ---- */

/* Tenants of the erasure phase's journal: one of them is erased. */
#define BENCH_ERASE_TENANTS 100u

/* What the erasure phase measured. */
struct bench_erase {
    uint64_t records;        /* in the seeded journal */
    uint64_t tenant;         /* the tenant erased */
    uint64_t tenant_records; /* its records before the erasure */
    uint64_t stripped;       /* of those, stripped after it */
    uint64_t generations;    /* backup generations rewritten */
    double seed_s, erase_s, verify_s;
};

/* The real hooks (tools_ret's), with the generations the backup step
 * rewrote counted on the way. */
struct counted_hooks {
    struct ret_hooks hooks;
    const struct ret_hooks *real;
    uint64_t generations;
};

static kr_err counted_backup_erase(void *arg, uint64_t tenant, uint64_t *generations)
{
    struct counted_hooks *c = arg;
    kr_err err = c->real->backup_erase(c->real->arg, tenant, generations);
    c->generations += *generations;
    return err;
}

static kr_err counted_backup_list(void *arg, struct ret_generation *out, size_t cap, size_t *n)
{
    const struct counted_hooks *c = arg;
    return c->real->backup_list(c->real->arg, out, cap, n);
}

/* Counts tenant's records up to seq `to` and how many of them are stripped. */
static kr_err tenant_records(struct journal *j, uint64_t tenant, uint64_t to, uint64_t *n,
                             uint64_t *stripped)
{
    struct jrn_query q = {.kind = JRN_Q_TENANT, .tenant = tenant};
    struct jrn_cursor *cur;
    struct jrn_record rec;
    *n = *stripped = 0;
    kr_err err = jrn_cursor_new(j, &q, &cur);
    if (err)
        return err;
    while ((err = jrn_cursor_next(cur, &rec)) == KR_OK && rec.seq <= to) {
        (*n)++;
        *stripped += rec.payload_stripped;
    }
    jrn_cursor_free(cur);
    return err == KR_ENOTFOUND || err == KR_OK ? KR_OK : err;
}

/* Whether tenant's view row says erased and its live key is destroyed. */
static kr_err tenant_erased(struct kr_domain *d, uint64_t tenant, bool *erased)
{
    MDB_txn *txn;
    struct va_tenant t;
    bool destroyed = false;
    *erased = false;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    kr_err err = va_tenant_get(&d->views, txn, tenant, &t);
    mdb_txn_abort(txn);
    if (!err)
        err = ks_is_destroyed(d->ks, tenant, &destroyed);
    if (!err)
        *erased = t.state == KR_TENANT_STATE_ERASED && destroyed;
    return err;
}

/* bench_erase's checks after the erasure of e->tenant: every record of
 * the tenant stripped, its key destroyed and view row erased, a generation
 * rewritten, the journal verifying (fast, timed) and the rewritten
 * generation gen checking. Prints why and returns false if not. */
static bool erase_check(struct kr_domain *d, const char *dir, const char *gen,
                        struct bench_erase *e)
{
    bool erased = false;
    uint64_t stripped;
    kr_err err;
    if ((err = tenant_records(d->j, e->tenant, e->records, &stripped, &e->stripped)) ||
        (err = tenant_erased(d, e->tenant, &erased))) {
        cli_fail("bench backup: checking the erasure", err);
        return false;
    }
    if (!erased || e->stripped != e->tenant_records || e->generations < 1) {
        fprintf(stderr,
                "kiroku: bench backup: tenant %" PRIu64 " is not erased: %s, %" PRIu64
                " of %" PRIu64 " records stripped, %" PRIu64 " generations rewritten\n",
                e->tenant, erased ? "key destroyed and view erased" : "key or view left",
                e->stripped, e->tenant_records, e->generations);
        return false;
    }
    struct jrn_verify_options vo = {.fast = true};
    struct jrn_verify_report vr;
    double t0 = cli_now();
    err = jrn_verify_journal(d->j, &vo, &vr);
    e->verify_s = cli_now() - t0;
    if (err || vr.result) {
        fprintf(stderr, "kiroku: bench backup: the journal does not verify after the erasure: %s\n",
                err ? kr_strerror(err) : vr.what);
        return false;
    }
    uint8_t pk1[32];
    struct backup_gen g;
    if ((err = kr_pubkey_load(dir, 1, pk1)) || (err = backup_check(gen, pk1, true, &g))) {
        cli_fail("bench backup: checking the rewritten generation", err);
        return false;
    }
    if (!g.verified) {
        fprintf(stderr, "kiroku: bench backup: the rewritten generation does not check: %s\n",
                g.reason);
        return false;
    }
    return true;
}

/* Seeds root/erase with BENCH_ERASE_TENANTS tenants, about `events` records
 * in all, the last one cancelled; opens it as `kiroku retention` does (the
 * tools' retention hooks, backups in root/erase-backups), takes one backup
 * generation, and times ret_erase_tenant on the cancelled tenant. Then
 * checks that the journal verifies (fast), that every record of the tenant
 * is stripped, its key destroyed, its view row erased, and that the
 * rewritten generation still checks. Prints why and returns false if not. */
static bool bench_erase(const char *root, uint64_t events, bool json, struct bench_erase *e)
{
    char dir[KR_PATH_MAX + 16], bk[KR_PATH_MAX + 32], gen[KR_PATH_MAX + 100];
    snprintf(dir, sizeof dir, "%s/erase", root);
    snprintf(bk, sizeof bk, "%s/erase-backups", root);
    memset(e, 0, sizeof *e);
    double left = (double)events / BENCH_ERASE_TENANTS - BENCH_EVENTS_PER_TENANT;
    struct cli_seed_options so = {
        .dir = dir,
        .tenants = BENCH_ERASE_TENANTS,
        .contacts = left > 0 ? (uint64_t)(left / BENCH_EVENTS_PER_CONTACT) : 0,
        .seed = 1,
        .cancel = true,
        .leave_cancelled = true,
        .progress = !json,
    };
    if (!json)
        fprintf(stderr, "seeding %s: %u tenants of %" PRIu64 " contacts, the last cancelled\n", dir,
                BENCH_ERASE_TENANTS, so.contacts);
    struct cli_seed_result sr;
    kr_err err = cli_seed(&so, &sr);
    if (err) {
        cli_fail("bench backup: seeding", err);
        return false;
    }
    e->seed_s = sr.seconds;
    e->tenant = sr.cancelled;

    struct tools_ret tr;
    if (!tools_ret_init(&tr, dir, bk, false))
        return false;
    struct kr_domain_options o = {.dir = dir};
    struct kr_domain *d = NULL;
    if ((err = dom_open(&o, &d))) {
        cli_fail_open(dir, err);
        return false;
    }
    bool ok = false;
    struct counted_hooks ch = {.real = &tr.hooks};
    ch.hooks = (struct ret_hooks){
        .backup_erase = counted_backup_erase, .backup_list = counted_backup_list, .arg = &ch};
    dom_set_retention(d, &ch.hooks, 0);
    struct backup_options bo = {.data_dir = dir, .backups_dir = bk, .j = d->j, .ks = d->ks};
    struct backup_result br;
    memset(&br, 0, sizeof br);
    if ((err = backup_run(&bo, &br))) {
        fprintf(stderr, "kiroku: bench backup: erasure phase backup: %s\n", br.reason);
        goto out;
    }
    snprintf(gen, sizeof gen, "%s/%s", bk, br.generation);
    e->records = jrn_size(d->j);
    uint64_t stripped;
    if ((err = tenant_records(d->j, e->tenant, e->records, &e->tenant_records, &stripped))) {
        cli_fail("bench backup: the tenant's records", err);
        goto out;
    }
    if (!json)
        fprintf(stderr, "erasing tenant %" PRIu64 " (%" PRIu64 " of %" PRIu64 " records)\n",
                e->tenant, e->tenant_records, e->records);
    struct kr_diag diag;
    double t0 = cli_now();
    err = ret_erase_tenant(d, e->tenant, &diag);
    e->erase_s = cli_now() - t0;
    e->generations = ch.generations;
    if (err) {
        fprintf(stderr, "kiroku: bench backup: erasure stopped at %s: %s (%s)\n", diag.field,
                diag.why, kr_strerror(err));
        goto out;
    }
    ok = erase_check(d, dir, gen, e);
out:
    dom_close(d);
    return ok;
}

/* What `bench backup` measured. */
struct bench_backup_result {
    uint64_t events, rounds;
    uint64_t appended; /* records appended while the backups ran */
    struct backup_result br;
    struct backup_restore_result rr;
    double backup_s, copy_s, restore_s; /* medians of the rounds, and the restore */
    bool erase;
    struct bench_erase be;
};

/* `bench backup`'s rounds: a backup of j (and ks) into backups, then
 * `mdb_copy -c` of src into copy, each timed; medians into b. */
static bool backup_rounds(const struct backup_options *bo, const char *src, const char *copy,
                          struct bench_backup_result *b)
{
    double bs[BENCH_ROUNDS_MAX], cs[BENCH_ROUNDS_MAX];
    for (uint64_t i = 0; i < b->rounds; i++) {
        double t0 = cli_now();
        kr_err err = backup_run(bo, &b->br);
        bs[i] = cli_now() - t0;
        if (err) {
            fprintf(stderr, "kiroku: bench backup: %s\n", b->br.reason);
            return false;
        }
        cli_rmtree(copy);
        if (mkdir(copy, 0700) != 0 || (cs[i] = run_mdb_copy(src, copy)) < 0) {
            fprintf(stderr,
                    "kiroku: bench backup: mdb_copy -c failed (is lmdb-utils installed?)\n");
            return false;
        }
    }
    b->backup_s = median(bs, b->rounds);
    b->copy_s = median(cs, b->rounds);
    return true;
}

/* `bench backup`'s restore of the last generation in backups into
 * restored, timed, trusting data's key 1. */
static bool backup_restore_timed(const char *data, const char *backups, const char *restored,
                                 struct bench_backup_result *b)
{
    char gen[KR_PATH_MAX + 100];
    snprintf(gen, sizeof gen, "%s/%s", backups, b->br.generation);
    uint8_t pk1[32];
    kr_err err;
    if ((err = kr_pubkey_load(data, 1, pk1))) {
        cli_fail("bench backup: public key", err);
        return false;
    }
    struct backup_restore_options ro = {.generation = gen, .data_dir = restored, .trusted_pk = pk1};
    double t0 = cli_now();
    err = backup_restore(&ro, &b->rr);
    b->restore_s = cli_now() - t0;
    if (err) {
        fprintf(stderr, "kiroku: bench backup: restore: %s\n", b->rr.reason);
        return false;
    }
    return true;
}

static void bench_backup_print(const struct bench_backup_result *b, bool json)
{
    const struct bench_erase *be = &b->be;
    double ratio = b->copy_s > 0 ? b->backup_s / b->copy_s : 0;
    if (json) {
        printf("{\"events\":%" PRIu64 ",\"rounds\":%" PRIu64 ",\"backup_records\":%" PRIu64
               ",\"appended_meanwhile\":%" PRIu64 ",\"backup_bytes\":%" PRIu64
               ",\"backup_s\":%.3f,\"mdb_copy_s\":%.3f,"
               "\"ratio\":%.2f,\"restore_s\":%.3f,\"restore_verify_s\":%.3f,"
               "\"restore_rebuild_s\":%.3f,",
               b->events, b->rounds, b->br.last_seq, b->appended, b->br.bytes, b->backup_s,
               b->copy_s, ratio, b->restore_s, b->rr.verify_s, b->rr.rebuild_s);
        if (b->erase)
            printf("\"erase_s\":%.3f,\"erase_journal_records\":%" PRIu64
                   ",\"erase_tenant_records\":%" PRIu64 ",\"erase_stripped\":%" PRIu64
                   ",\"erase_generations\":%" PRIu64
                   ",\"erase_seed_s\":%.3f,\"erase_verify_s\":%.3f}\n",
                   be->erase_s, be->records, be->tenant_records, be->stripped, be->generations,
                   be->seed_s, be->verify_s);
        else
            printf("\"erase_s\":null}\n");
        return;
    }
    printf("%" PRIu64 " records backed up (%.1f MiB) while %" PRIu64
           " more were appended\nbackup_s %.3f  mdb_copy_s %.3f  ratio %.2f (medians of %" PRIu64
           " rounds)\n"
           "restore_s %.3f (journal check %.3f, views %.3f)\n",
           b->br.last_seq, (double)b->br.bytes / (1024.0 * 1024.0), b->appended, b->backup_s,
           b->copy_s, ratio, b->rounds, b->restore_s, b->rr.verify_s, b->rr.rebuild_s);
    if (b->erase)
        printf("erase_s %.3f: one tenant of %u, %" PRIu64 " of %" PRIu64 " records, %" PRIu64
               " stripped, %" PRIu64
               " backup generation%s rewritten; the journal verifies (fast, %.3f s)\n",
               be->erase_s, BENCH_ERASE_TENANTS, be->tenant_records, be->records, be->stripped,
               be->generations, be->generations == 1 ? "" : "s", be->verify_s);
    else
        printf("erase_s: not measured (--no-erase)\n");
}

int bench_backup(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"events", required_argument, 0, 'n'},
                                         {"rounds", required_argument, 0, 'r'},
                                         {"no-erase", no_argument, 0, 'E'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    struct bench_backup_result bb = {.events = 1000000, .rounds = 3, .erase = true}, *b = &bb;
    int rc, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'n') {
            if (!cli_parse_u64(optarg, 1, UINT32_MAX, &b->events))
                return cli_usage(bench_backup_usage);
        } else if (c == 'r') {
            if (!cli_parse_u64(optarg, 1, BENCH_ROUNDS_MAX, &b->rounds))
                return cli_usage(bench_backup_usage);
        } else if (c == 'E') {
            b->erase = false;
        } else if ((rc = cli_common_option(c, bench_backup_usage, &co)) != CLI_CONTINUE) {
            return rc;
        }
    }
    if (optind != argc)
        return cli_usage(bench_backup_usage);
    char root[KR_PATH_MAX], data[KR_PATH_MAX + 16], backups[KR_PATH_MAX + 16],
        copy[KR_PATH_MAX + 16], src[KR_PATH_MAX + 32], restored[KR_PATH_MAX + 16];
    kr_err err = cli_scratch_dir(root, sizeof root);
    if (err)
        return cli_fail("bench backup: scratch directory", err);
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(backups, sizeof backups, "%s/backups", root);
    snprintf(copy, sizeof copy, "%s/mdb-copy", root);
    snprintf(src, sizeof src, "%s/journal", data);
    snprintf(restored, sizeof restored, "%s/restored", root);
    struct jrn_options jo = {.dir = data};
    struct journal *j = NULL;
    struct kr_keystore *ks = NULL;
    struct appender ap = {0};
    pthread_t tid;
    bool started = false;
    int result = CLI_FAIL;
    if ((err = jrn_create(&jo, NULL)) || (err = jrn_open(&jo, &j)) ||
        (err = ks_open(data, true, &ks))) {
        cli_fail("bench backup: journal", err);
        goto out;
    }
    if (!co.json)
        fprintf(stderr, "filling %s with %" PRIu64 " events\n", data, b->events);
    if ((err = bench_fill(j, b->events))) {
        cli_fail("bench backup: filling", err);
        goto out;
    }
    ap.j = j;
    if (pthread_create(&tid, NULL, append_main, &ap) != 0)
        goto out;
    started = true;
    struct backup_options bo = {.data_dir = data, .backups_dir = backups, .j = j, .ks = ks};
    if (!backup_rounds(&bo, src, copy, b))
        goto out;
    atomic_store(&ap.stop, true);
    pthread_join(tid, NULL);
    started = false;
    b->appended = ap.appended;
    if (ap.err) {
        cli_fail("bench backup: appends", ap.err);
        goto out;
    }
    if (!backup_restore_timed(data, backups, restored, b))
        goto out;
    /* The first journal's part is done: free its memory and disk. */
    ks_close(ks);
    ks = NULL;
    jrn_close(j);
    j = NULL;
    cli_rmtree(data);
    cli_rmtree(restored);
    cli_rmtree(backups);
    cli_rmtree(copy);
    if (b->erase && !bench_erase(root, b->events, co.json, &b->be))
        goto out;
    bench_backup_print(b, co.json);
    result = CLI_OK;
out:
    if (started) {
        atomic_store(&ap.stop, true);
        pthread_join(tid, NULL);
    }
    ks_close(ks);
    jrn_close(j);
    cli_rmtree(root);
    return result;
}
