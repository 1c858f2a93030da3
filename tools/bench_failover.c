/*
 * bench_failover.c: `kiroku bench failover`: how long a shard is without a
 * primary when its primary dies (tools/serve_node.h).
 *
 * The run, all on loopback in a scratch directory: a 3-node JetStream
 * cluster (nats_cluster.h); a new journal with a keystore, its genesis backed
 * up and restored as the second node's directory, then N records of 200
 * bytes (bench_fill) in the first; node a (`kiroku serve --nats --node a`,
 * quorum) starts, takes the lease and publishes them; once the stream holds
 * them all, a is killed with SIGKILL and node b started on the restored
 * genesis at once: b follows (catching up N records) while a's lease runs
 * out, then takes over. Printed: the time from the kill to b's first
 * "primary" line (the failover), the catch-up time, and beside them the
 * floor measured in the same run: the lease's TTL (nobody may take a lease
 * before it expires), with failover / TTL and failover / max(TTL, catch-up).
 */
#include "backup.h"
#include "cli.h"
#include "journal.h"
#include "keystore.h"
#include "nats_cluster.h"
#include "natskv.h"
#include "node_rejoin.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char bench_failover_usage[] =
    "usage: kiroku bench failover [--events N] [--lease-ttl MS] [--json]\n"
    "\n"
    "Starts 3 nats-server processes on loopback and two `kiroku serve --node`\n"
    "processes of one shard (quorum mode) in a scratch directory, fills the\n"
    "primary's journal with N records (default 20000), kills the primary with\n"
    "SIGKILL once they are in the stream and starts the other node on a copy\n"
    "of the genesis: it catches up while the lease (TTL --lease-ttl, default\n"
    "10000 ms) runs out, then takes over. Prints the failover time (kill to\n"
    "the new primary), the catch-up time and the floor: the lease's TTL.\n";

#define BFO_WAIT_S 600.0 /* the most a phase may take before the bench gives up */

struct bench_failover {
    char dir[KR_PATH_MAX], a[KR_PATH_MAX], b[KR_PATH_MAX], backups[KR_PATH_MAX];
    char exe[KR_PATH_MAX];
    uint64_t events, ttl_ms, size;
    double failover_s, catch_up_s;
    pid_t pa, pb;
};

static void bfo_pause(void)
{
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
}

/* The journal in a with a keystore, its genesis restored into b, then N
 * records appended to a. */
static kr_err bfo_make(struct bench_failover *f, const char **step)
{
    struct jrn_info info;
    struct jrn_options jo = {.dir = f->a};
    struct kr_keystore *ks = NULL;
    *step = "creating the journal";
    kr_err err = jrn_create(&jo, &info);
    if (!err && !(err = ks_open(f->a, true, &ks)))
        ks_close(ks);
    struct backup_options bo = {.data_dir = f->a, .backups_dir = f->backups};
    struct backup_result br = {0};
    if (!err && !(err = backup_run(&bo, &br))) {
        char gen[KR_PATH_MAX + 80];
        snprintf(gen, sizeof gen, "%s/%s", f->backups, br.generation);
        struct backup_restore_options ro = {
            .generation = gen, .data_dir = f->b, .trusted_pk = info.pk};
        struct backup_restore_result rr = {0};
        *step = "restoring the genesis";
        err = backup_restore(&ro, &rr);
    }
    struct journal *j = NULL;
    if (!err && !(err = jrn_open(&jo, &j))) {
        *step = "appending";
        err = bench_fill(j, f->events);
        jrn_close(j);
    }
    return err;
}

/* Starts node `name` on data (stdout into DIR/name.out, stderr into DIR/name.err). */
static pid_t bfo_node(const struct bench_failover *f, const char *name, const char *data,
                      const char *urls)
{
    char out[KR_PATH_MAX + 16], ipc[KR_PATH_MAX + 32], op[KR_PATH_MAX + 32], ttl[24];
    snprintf(out, sizeof out, "%.900s/%s.out", f->dir, name);
    snprintf(ipc, sizeof ipc, "ipc://%.900s/%s.sock", f->dir, name);
    snprintf(op, sizeof op, "ipc://%.900s/%s.op", f->dir, name);
    snprintf(ttl, sizeof ttl, "%" PRIu64, f->ttl_ms);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || dup2(fd, 1) < 0)
        _exit(127);
    snprintf(out, sizeof out, "%.900s/%s.err", f->dir, name);
    int fe = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fe < 0 || dup2(fe, 2) < 0)
        _exit(127);
    const char *argv[] = {"kiroku",        "serve",  "--data",      data, "--nats",     urls,
                          "--node",        name,     "--listen",    ipc,  "--operator", op,
                          "--replication", "quorum", "--lease-ttl", ttl,  "--json",     NULL};
    execv(f->exe, (char *const *)argv);
    _exit(127);
}

/* Whether node `name`'s last line says it is the primary. */
static bool bfo_primary(const struct bench_failover *f, const char *name)
{
    char path[KR_PATH_MAX + 16], line[2048], last[2048] = "";
    snprintf(path, sizeof path, "%.900s/%s.out", f->dir, name);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    while (fgets(line, sizeof line, fp))
        if (strchr(line, '\n'))
            snprintf(last, sizeof last, "%s", line);
    fclose(fp);
    return strncmp(last, "{\"role\":\"primary\"", 17) == 0;
}

static uint64_t bfo_size(const char *dir)
{
    struct journal *j = NULL;
    struct jrn_options o = {.dir = dir, .read_only = true};
    if (jrn_open(&o, &j) != KR_OK)
        return 0;
    uint64_t n = jrn_size(j);
    jrn_close(j);
    return n;
}

/* Node a primary with everything in the stream. */
static kr_err bfo_publish(struct bench_failover *f, const char *urls, const char **step)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    *step = "connecting";
    if (nkv_connect(urls, &nc) != KR_OK || natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        natsConnection_Destroy(nc);
        return KR_EIO;
    }
    f->pa = bfo_node(f, "a", f->a, urls);
    double t0 = cli_now();
    kr_err err = f->pa < 0 ? KR_EIO : KR_OK;
    *step = "node a becoming the primary and publishing";
    uint64_t last = 0;
    while (!err && (!bfo_primary(f, "a") || last < (f->size = bfo_size(f->a)) || f->size < 2)) {
        bfo_pause();
        if (node_stream_last(js, "KIROKU_MAIN", "kiroku.main.journal", &last) != KR_OK)
            last = 0;
        if (cli_now() - t0 > BFO_WAIT_S)
            err = KR_EIO;
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return err;
}

/* Kills a, starts b, times its catch-up and its promotion. */
static kr_err bfo_failover(struct bench_failover *f, const char *urls, const char **step)
{
    kill(f->pa, SIGKILL);
    waitpid(f->pa, NULL, 0);
    f->pa = 0;
    double t0 = cli_now();
    f->pb = bfo_node(f, "b", f->b, urls);
    *step = "node b taking over";
    kr_err err = f->pb < 0 ? KR_EIO : KR_OK;
    while (!err && !bfo_primary(f, "b")) {
        if (f->catch_up_s == 0 && bfo_size(f->b) >= f->size)
            f->catch_up_s = cli_now() - t0;
        bfo_pause();
        if (cli_now() - t0 > BFO_WAIT_S)
            err = KR_EIO;
    }
    f->failover_s = cli_now() - t0;
    if (f->catch_up_s == 0)
        f->catch_up_s = f->failover_s; /* level only when it took over */
    return err;
}

static void bfo_print(const struct bench_failover *f, bool json)
{
    double ttl = (double)f->ttl_ms / 1000.0;
    double floor = ttl > f->catch_up_s ? ttl : f->catch_up_s;
    if (json) {
        printf("{\"records\":%" PRIu64 ",\"lease_ttl_s\":%.3f,\"catch_up_s\":%.3f,"
               "\"failover_s\":%.3f,\"failover_over_ttl\":%.3f,\"failover_over_floor\":%.3f}\n",
               f->size, ttl, f->catch_up_s, f->failover_s, f->failover_s / ttl,
               f->failover_s / floor);
        return;
    }
    printf("failover: %.2f s from the primary's SIGKILL to the new primary (%" PRIu64
           " records caught up in %.2f s)\n",
           f->failover_s, f->size, f->catch_up_s);
    printf("floor: the lease TTL %.2f s (same run): failover / TTL %.2f, "
           "failover / max(TTL, catch-up) %.2f\n",
           ttl, f->failover_s / ttl, f->failover_s / floor);
}

static int bfo_run(struct bench_failover *f, bool json)
{
    const char *step = "starting nats-server";
    struct kr_nats_cluster *nc = kr_nats_start(3);
    kr_err err = nc ? KR_OK : KR_EIO;
    if (!err)
        err = bfo_make(f, &step);
    if (!err)
        err = bfo_publish(f, kr_nats_urls(nc), &step);
    if (!err)
        err = bfo_failover(f, kr_nats_urls(nc), &step);
    for (pid_t *p = &f->pa; p <= &f->pb; p++)
        if (*p > 0) {
            kill(*p, SIGTERM);
            waitpid(*p, NULL, 0);
        }
    kr_nats_free(nc);
    if (err) {
        fprintf(stderr, "kiroku: bench failover: %s: %s\n", step, kr_strerror(err));
        return CLI_FAIL;
    }
    bfo_print(f, json);
    return CLI_OK;
}

int bench_failover(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"events", required_argument, 0, 'e'},
                                         {"lease-ttl", required_argument, 0, 't'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    struct bench_failover f = {.events = 20000, .ttl_ms = KR_LEASE_TTL_DEFAULT_MS};
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'e'   ? !cli_parse_u64(optarg, 1, 100000000, &f.events)
            : c == 't' ? !cli_parse_u64(optarg, KR_LEASE_TTL_MIN_MS, KR_LEASE_TTL_MAX_MS, &f.ttl_ms)
                       : false)
            return cli_usage(bench_failover_usage);
        if (c != 'e' && c != 't' &&
            (rc = cli_common_option(c, bench_failover_usage, &co)) != CLI_CONTINUE)
            return rc;
    }
    if (optind != argc)
        return cli_usage(bench_failover_usage);
    ssize_t n = readlink("/proc/self/exe", f.exe, sizeof f.exe - 1);
    if (n <= 0)
        return cli_fail("bench failover: /proc/self/exe", KR_EIO);
    f.exe[n] = '\0';
    signal(SIGPIPE, SIG_IGN);
    kr_err err = cli_scratch_dir(f.dir, sizeof f.dir);
    if (err)
        return cli_fail("bench failover: scratch directory", err);
    snprintf(f.a, sizeof f.a, "%.900s/a", f.dir);
    snprintf(f.b, sizeof f.b, "%.900s/b", f.dir);
    snprintf(f.backups, sizeof f.backups, "%.900s/backups", f.dir);
    rc = bfo_run(&f, co.json);
    cli_rmtree(f.dir);
    return rc;
}
