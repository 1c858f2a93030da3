/*
 * main.c: the kiroku command: dispatch to subcommands and the helpers they
 * share (cli.h).
 */
#include "cli.h"
#include "jsonmp.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char main_usage[] =
    "usage: kiroku <command> [options]\n"
    "\n"
    "commands:\n"
    "  init     create a journal and its signing key\n"
    "  verify   replay the journal and check every hash, link, signature and checkpoint\n"
    "  dump     print records as text\n"
    "  keys     manage signing keys (keys rotate)\n"
    "  seed     fill a journal with deterministic demo data of every event type\n"
    "  replay   rebuild the views from the journal; --check compares without changing\n"
    "  bench    measure speed (append, verify, replay, query, api, backup, replicate, follow)\n"
    "  serve    serve the API (clients over tcp, operators over a local socket)\n"
    "  follow   follow a primary's journal stream on NATS, verify and apply it, serve reads\n"
    "  call     send one API request and print the reply as JSON\n"
    "  certs    make a CA and TLS certificates for the server and clients\n"
    "  backup   a signed, consistent copy of the data directory (backup list|check)\n"
    "  restore  check a backup generation and restore it into a new data directory\n"
    "  retention erase cancelled tenants that are due and truncate old logs\n"
    "  maintenance record an operator's maintenance work (over the operator endpoint)\n"
    "  export   one tenant's records with signatures and proofs, for an auditor\n"
    "  audit    verify an export offline (audit verify); a tenant's report (audit report)\n"
    "  shards   the shard map and leases in NATS JetStream (list, where, assign, announce)\n"
    "  operators add the first operator account (operators add EMAIL), list them\n"
    "\n"
    "Every command takes --data DIR (default $KIROKU_DATA or " CLI_DATA_DEFAULT ")\n"
    "and --help.\n";

const char *cli_data_dir(const char *flag)
{
    if (flag)
        return flag;
    const char *env = getenv("KIROKU_DATA");
    return env && *env ? env : CLI_DATA_DEFAULT;
}

bool cli_clock(const char *what, bool allowed, struct kr_offset_clock *oc,
               const struct kr_clock **out)
{
    const char *env = getenv(KR_CLOCK_OFFSET_ENV);
    *out = NULL;
    if (!env || !*env)
        return true;
    if (!allowed) {
        fprintf(stderr,
                "kiroku: %s: refusing to run with " KR_CLOCK_OFFSET_ENV
                " set (a clock override is for drills and tests: unset it, or pass --test-clock)\n",
                what);
        return false;
    }
    int64_t off;
    kr_err err = kr_clock_override_parse(env, kr_clock_now(NULL), &off);
    if (err) {
        fprintf(stderr,
                "kiroku: %s: " KR_CLOCK_OFFSET_ENV "=%s: %s (want e.g. 30d, -90m, 3600: "
                "a signed number of s, m, h or d, at most 36600d; or @SECONDS, an instant "
                "within 36600d of now)\n",
                what, env, kr_strerror(err));
        return false;
    }
    kr_clock_offset_init(oc, NULL, off);
    *out = &oc->clock;
    if (off != 0)
        fprintf(stderr, "kiroku: %s: clock override " KR_CLOCK_OFFSET_ENV "=%s in effect\n", what,
                env);
    return true;
}

int cli_common_option(int c, const char *usage, struct cli_common *co)
{
    switch (c) {
    case 'd':
        co->data = optarg;
        return CLI_CONTINUE;
    case 'j':
        co->json = true;
        return CLI_CONTINUE;
    case 'h':
        fputs(usage, stdout);
        return CLI_OK;
    default:
        return cli_usage(usage);
    }
}

int cli_usage(const char *usage)
{
    fputs(usage, stderr);
    return CLI_USAGE;
}

bool cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int cli_fail(const char *what, kr_err err)
{
    fprintf(stderr, "kiroku: %s: %s\n", what, kr_strerror(err));
    return CLI_FAIL;
}

int cli_fail_open(const char *dir, kr_err err)
{
    if (err == KR_ENOTFOUND)
        fprintf(stderr, "kiroku: no journal in %s (create one with: kiroku init --data %s)\n", dir,
                dir);
    else if (err == KR_EBUSY)
        fprintf(stderr, "kiroku: %s is in use by another kiroku process\n", dir);
    else
        fprintf(stderr, "kiroku: %s: %s\n", dir, kr_strerror(err));
    return CLI_FAIL;
}

void cli_json_str(FILE *f, const char *s, size_t len)
{
    jsonmp_fput_str(f, s, len); /* the project's one JSON string escaper */
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void cli_rmtree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

kr_err cli_scratch_dir(char *dir, size_t cap)
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(dir, cap, "%s/kiroku-bench-XXXXXX", base && *base ? base : "/tmp");
    if (n < 0 || (size_t)n >= cap)
        return KR_ETOOLARGE;
    return mkdtemp(dir) ? KR_OK : kr_err_from_errno(errno);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } cmds[] = {
        {"init", cmd_init},           {"verify", cmd_verify},
        {"dump", cmd_dump},           {"keys", cmd_keys},
        {"bench", cmd_bench},         {"seed", cmd_seed},
        {"replay", cmd_replay},       {"serve", cmd_serve},
        {"call", cmd_call},           {"certs", cmd_certs},
        {"backup", cmd_backup},       {"restore", cmd_restore},
        {"retention", cmd_retention}, {"maintenance", cmd_maintenance},
        {"export", cmd_export},       {"audit", cmd_audit},
        {"follow", cmd_follow},       {"shards", cmd_shards},
        {"operators", cmd_operators},
    };
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(main_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    /* The domain's benchmarks live beside the domain commands (bench_domain.c). */
    if (strcmp(argv[1], "bench") == 0 && argc >= 3 && strcmp(argv[2], "replay") == 0)
        return bench_replay(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0 && argc >= 3 && strcmp(argv[2], "query") == 0)
        return bench_query(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0 && argc >= 3 && strcmp(argv[2], "api") == 0)
        return bench_api(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0 && argc >= 3 && strcmp(argv[2], "backup") == 0)
        return bench_backup(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0 && argc >= 3 && strcmp(argv[2], "follow") == 0)
        return bench_follow(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0 && argc >= 3 && strcmp(argv[2], "failover") == 0)
        return bench_failover(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0 && argc >= 3 && strcmp(argv[2], "replicate") == 0)
        return bench_replicate(argc - 2, argv + 2);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "kiroku: unknown command '%s'\n\n%s", argv[1], main_usage);
    return CLI_USAGE;
}
