/*
 * bench_follow.c: `kiroku bench follow`: how fast a follower brings a
 * restored backup level with the primary's stream (api/follower.h).
 *
 * The run: a new journal, backed up and restored at its genesis (the
 * follower's directory, as an operator makes one), then N records of 200
 * bytes appended (bench_fill), published to a one-node JetStream stream the
 * bench starts (never a deployment's servers) by the publisher of `serve --nats`
 * (api/cluster.h), and only then a follower started on the restored copy:
 * the figure is the records it verifies and applies per second until it is
 * level. The ceiling, measured in the same run, is every core's Ed25519
 * verifications per second with the commitment's SHA-256 (ceiling_verify):
 * a follower checks a chunk's records on every core before it applies them
 * in order on one (jrn_replica_add_chunk), and the ratio says how much of
 * that the rest (decoding, the tree, LMDB, the views, NATS) leaves. One
 * core's rate is printed beside it.
 */
#include "backup.h"
#include "ceiling.h"
#include "cli.h"
#include "cluster.h"
#include "domain.h"
#include "follower.h"
#include "nats_cluster.h"
#include "path.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char bench_follow_usage[] =
    "usage: kiroku bench follow [--events N] [--json]\n"
    "\n"
    "Appends N records of 200 bytes (default 100000) to a new journal whose\n"
    "genesis was backed up and restored, publishes them to JetStream (a\n"
    "one-node nats-server the bench starts and stops) as serve --nats\n"
    "does, then times `kiroku follow`'s engine bringing the restored copy\n"
    "level. Prints records/s beside the ceiling: every core's record\n"
    "verifications per second (and one core's), measured in the same run.\n";

#define BF_RECORD_BYTES 200u
#define BF_WAIT_S       600.0 /* the most a phase may take before the bench gives up */

struct bench_follow {
    char dir[KR_PATH_MAX], primary[KR_PATH_MAX], follower[KR_PATH_MAX], backups[KR_PATH_MAX];
    uint64_t events, size;
    double publish_s, follow_s, ceiling, ceiling_1;
    unsigned cores;
};

/* The primary (a new journal) and the follower's directory (its genesis,
 * backed up and restored). */
static kr_err bf_make(struct bench_follow *b, const char **step)
{
    struct jrn_info info;
    struct jrn_options jo = {.dir = b->primary};
    kr_err err = jrn_create(&jo, &info);
    *step = "creating the journal";
    struct backup_options bo = {.data_dir = b->primary, .backups_dir = b->backups};
    struct backup_result br = {0};
    if (!err && !(err = backup_run(&bo, &br))) {
        char gen[KR_PATH_MAX + 80];
        snprintf(gen, sizeof gen, "%s/%s", b->backups, br.generation);
        struct backup_restore_options ro = {
            .generation = gen, .data_dir = b->follower, .trusted_pk = info.pk};
        struct backup_restore_result rr = {0};
        *step = "restoring the backup";
        err = backup_restore(&ro, &rr);
    } else if (!err) {
        *step = "backing up the genesis";
    }
    return err;
}

/* Fills the primary and publishes it all; b->size, b->publish_s. */
static kr_err bf_publish(struct bench_follow *b, const char *urls, const char **step)
{
    struct cluster_options co = {.urls = urls, .quiet = true};
    struct cluster *cl = NULL;
    kr_err err = cluster_new(&co, step, &cl);
    struct journal *j = NULL;
    struct jrn_options jo = {.dir = b->primary, .durable = cl ? cluster_hook(cl) : NULL};
    if (!err && !(err = jrn_open(&jo, &j))) {
        *step = "appending";
        err = bench_fill(j, b->events);
    }
    char why[256] = "";
    double t0 = cli_now();
    if (!err && (err = cluster_start(cl, j, why, sizeof why)))
        *step = "starting the publisher";
    b->size = j ? jrn_size(j) : 0;
    struct cluster_stats cs = {0};
    while (!err && cs.published < b->size) {
        if (cli_now() - t0 > BF_WAIT_S) {
            *step = "publishing (timed out)";
            err = KR_EIO;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        cluster_stats(cl, &cs);
    }
    b->publish_s = cli_now() - t0;
    if (cl)
        cluster_stop(cl, 0);
    jrn_close(j);
    cluster_free(cl);
    return err;
}

/* Starts the follower on the restored copy and times it until it is level. */
static kr_err bf_follow(struct bench_follow *b, const char *urls, const char **step)
{
    struct kr_domain *d = NULL;
    struct kr_domain_options o = {.dir = b->follower, .no_appends = true};
    kr_err err = dom_open(&o, &d);
    *step = "opening the follower";
    struct api_follower *f = NULL;
    struct api_follower_options fo = {.nats = urls, .d = d};
    double t0 = cli_now();
    if (!err)
        err = api_follower_start(&fo, &f, step);
    struct api_follower_status st = {0};
    while (!err && st.applied < b->size) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        api_follower_status(f, &st);
        if (st.stopped) {
            *step = st.what;
            err = st.err ? st.err : KR_EIO;
        } else if (cli_now() - t0 > BF_WAIT_S) {
            *step = "following (timed out)";
            err = KR_EIO;
        }
    }
    b->follow_s = cli_now() - t0;
    api_follower_stop(f);
    dom_close(d);
    return err;
}

static void bf_print(const struct bench_follow *b, bool json)
{
    double rate = b->follow_s > 0 ? (double)(b->size - 1) / b->follow_s : 0;
    double ratio = b->ceiling > 0 ? rate / b->ceiling : 0;
    if (json) {
        printf("{\"records\":%" PRIu64 ",\"publish_seconds\":%.3f,\"follow_seconds\":%.3f,"
               "\"records_per_s\":%.0f,\"ceiling_verify_per_s\":%.0f,\"cores\":%u,"
               "\"ceiling_verify_per_s_1_core\":%.0f,\"ratio\":%.3f}\n",
               b->size - 1, b->publish_s, b->follow_s, rate, b->ceiling, b->cores, b->ceiling_1,
               ratio);
        return;
    }
    printf("follow: %" PRIu64 " records verified and applied in %.2f s: %.0f records/s\n",
           b->size - 1, b->follow_s, rate);
    printf("ceiling: %.0f record verifications/s on %u cores, %.0f on one (same run): ratio %.2f\n",
           b->ceiling, b->cores, b->ceiling_1, ratio);
    printf("(publishing them took %.2f s)\n", b->publish_s);
}

static int bf_run(struct bench_follow *b, bool json)
{
    const char *step = "starting nats-server";
    struct kr_nats_cluster *nc = kr_nats_start(1);
    if (!nc) {
        fprintf(stderr, "kiroku: bench follow: %s failed\n", step);
        return CLI_FAIL;
    }
    const char *urls = kr_nats_urls(nc);
    kr_err err = bf_make(b, &step);
    if (!err)
        err = bf_publish(b, urls, &step);
    if (!err)
        err = bf_follow(b, urls, &step);
    if (!err) {
        b->cores = ceiling_threads(0);
        b->ceiling = ceiling_verify(0, BF_RECORD_BYTES, 1.0);
        b->ceiling_1 = ceiling_verify(1, BF_RECORD_BYTES, 1.0);
    }
    kr_nats_free(nc);
    if (err) {
        fprintf(stderr, "kiroku: bench follow: %s: %s\n", step, kr_strerror(err));
        return CLI_FAIL;
    }
    if (b->ceiling <= 0 || b->ceiling_1 <= 0) {
        fprintf(stderr, "kiroku: bench follow: the ceiling could not be measured\n");
        return CLI_FAIL;
    }
    bf_print(b, json);
    return CLI_OK;
}

int bench_follow(int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS, {"events", required_argument, 0, 'e'}, {0, 0, 0, 0}};
    struct cli_common co = {0};
    struct bench_follow b = {.events = 100000};
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'e') {
            if (!cli_parse_u64(optarg, 1, 100000000, &b.events))
                return cli_usage(bench_follow_usage);
        } else if ((rc = cli_common_option(c, bench_follow_usage, &co)) != CLI_CONTINUE) {
            return rc;
        }
    }
    if (optind != argc)
        return cli_usage(bench_follow_usage);
    signal(SIGPIPE, SIG_IGN);
    kr_err err = cli_scratch_dir(b.dir, sizeof b.dir);
    if (err)
        return cli_fail("bench follow: scratch directory", err);
    snprintf(b.primary, sizeof b.primary, "%.900s/primary", b.dir);
    snprintf(b.follower, sizeof b.follower, "%.900s/follower", b.dir);
    snprintf(b.backups, sizeof b.backups, "%.900s/backups", b.dir);
    rc = bf_run(&b, co.json);
    cli_rmtree(b.dir);
    return rc;
}
