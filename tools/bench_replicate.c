/*
 * bench_replicate.c: `kiroku bench replicate`: the `bench append` load on a
 * fresh journal published to NATS JetStream (api/cluster.h), once in async
 * mode and once in quorum mode, against a 3-node cluster the bench starts on
 * loopback (nats_cluster.h) unless --nats names one.
 *
 * Printed: events/s of each mode and quorum over async (the target:
 * at least 0.5), the append latency, JetStream's publish latency p50/p99 per
 * message and the replication lag p99 (a range's first record durable to its
 * last chunk acknowledged), the messages each run took; and beside them the
 * ceiling measured in the same run: bare JetStream publishes of BYTES-byte
 * messages to an R3 stream (asynchronous, up to CEILING_PENDING in flight),
 * messages/s: what one message per record could reach at best, with each
 * mode's events/s over it.
 *
 * Streams: KIROKU_BENCH_ASYNC, KIROKU_BENCH_QUORUM and KIROKU_BENCH_CEILING,
 * deleted before and after each run (so do not point --nats at a cluster
 * whose streams of those names matter).
 */
#include "cli.h"
#include "cluster.h"
#include "journal.h"
#include "nats_cluster.h"
#include "path.h"

#include <getopt.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CEILING_STREAM  "KIROKU_BENCH_CEILING"
#define CEILING_SUBJECT "kiroku.bench.ceiling"
#define CEILING_PENDING 4096
#define CEILING_SECONDS 2.0
#define DRAIN_MS        120000u /* the publisher catching up after the load */
#define NODES           3u

static const char replicate_usage[] =
    "usage: kiroku bench replicate [--nats URL[,URL...]] [--events N] [--producers P]\n"
    "                              [--window W] [--payload BYTES] [--json]\n"
    "\n"
    "Appends N events (default 100000) of BYTES (default 200) with P producers\n"
    "(default 64) keeping W appends in flight each (default 256) to a fresh\n"
    "journal published to NATS JetStream, in async mode then in quorum mode,\n"
    "and prints events/s of both, quorum over async, the publish latency\n"
    "p50/p99, the replication lag p99, and the ceiling: bare JetStream\n"
    "publishes of BYTES-byte messages to an R3 stream, messages/s, measured in\n"
    "the same run. Without --nats it starts 3 nats-server processes on\n"
    "loopback (nats-server on PATH) in a temporary directory, removed after.\n"
    "Streams KIROKU_BENCH_ASYNC, KIROKU_BENCH_QUORUM and KIROKU_BENCH_CEILING are\n"
    "deleted before and after.\n";

struct mode_run {
    struct bench_append_figures a;
    uint32_t pub_p50_us, pub_p99_us, lag_p99_us;
    uint64_t messages, ranges, errors;
};

static kr_err js_connect(const char *urls, natsConnection **nc, jsCtx **js)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = CEILING_PENDING;
    if (natsConnection_ConnectTo(nc, urls) != NATS_OK)
        return KR_EIO;
    if (natsConnection_JetStream(js, *nc, &jo) != NATS_OK) {
        natsConnection_Destroy(*nc);
        return KR_EIO;
    }
    return KR_OK;
}

static void js_close(natsConnection *nc, jsCtx *js)
{
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* Deletes a stream if it exists. */
static void drop_stream(const char *urls, const char *name)
{
    natsConnection *nc;
    jsCtx *js;
    if (js_connect(urls, &nc, &js) != KR_OK)
        return;
    js_DeleteStream(js, name, NULL, NULL);
    js_close(nc, js);
}

/* The ceiling: asynchronous publishes of `payload` bytes to an R3 stream for
 * about CEILING_SECONDS, acknowledged, per second. */
static kr_err ceiling_js(const char *urls, size_t payload, double *msgs_per_s)
{
    natsConnection *nc;
    jsCtx *js;
    *msgs_per_s = 0;
    kr_err err = js_connect(urls, &nc, &js);
    if (err)
        return err;
    js_DeleteStream(js, CEILING_STREAM, NULL, NULL);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subj[1] = {CEILING_SUBJECT};
    sc.Name = CEILING_STREAM;
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = NODES;
    jsStreamInfo *si = NULL;
    char *data = calloc(1, payload ? payload : 1);
    if (!data || js_AddStream(&si, js, &sc, NULL, NULL) != NATS_OK)
        err = data ? KR_EIO : KR_ENOMEM;
    jsStreamInfo_Destroy(si);
    uint64_t sent = 0;
    double t0 = cli_now(), t1 = t0;
    while (!err && t1 - t0 < CEILING_SECONDS) {
        for (int i = 0; i < 256 && !err; i++, sent++)
            if (js_PublishAsync(js, CEILING_SUBJECT, data, (int)payload, NULL) != NATS_OK)
                err = KR_EIO;
        t1 = cli_now();
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    if (!err && js_PublishAsyncComplete(js, &po) != NATS_OK)
        err = KR_EIO;
    t1 = cli_now();
    if (!err) {
        if (js_GetStreamInfo(&si, js, CEILING_STREAM, NULL, NULL) == NATS_OK &&
            si->State.Msgs == sent)
            *msgs_per_s = (double)sent / (t1 - t0);
        else
            err = KR_EIO; /* not every publish was stored */
        jsStreamInfo_Destroy(si);
    }
    js_DeleteStream(js, CEILING_STREAM, NULL, NULL);
    free(data);
    js_close(nc, js);
    return err;
}

static bool wait_published(struct cluster *cl, struct journal *j)
{
    double until = cli_now() + DRAIN_MS / 1000.0;
    struct cluster_stats cs;
    for (;;) {
        cluster_stats(cl, &cs);
        if (cs.published == jrn_size(j) || cs.fenced || cli_now() > until)
            return cs.published == jrn_size(j);
        struct timespec nap = {0, 10000000L};
        nanosleep(&nap, NULL);
    }
}

/* One mode on a fresh journal in a scratch directory. */
static kr_err run_mode(const char *urls, enum cluster_mode mode, uint64_t events,
                       unsigned producers, unsigned window, size_t payload, struct mode_run *r)
{
    const char *shard = mode == CLUSTER_QUORUM ? "bench-quorum" : "bench-async";
    char stream[KR_CLUSTER_NAME_MAX], subject[KR_CLUSTER_NAME_MAX], dir[KR_PATH_MAX], why[512];
    memset(r, 0, sizeof *r);
    kr_err err = cluster_names(shard, stream, subject, sizeof stream);
    if (!err)
        err = cli_scratch_dir(dir, sizeof dir);
    if (err)
        return err;
    drop_stream(urls, stream);
    struct jrn_options o = {.dir = dir};
    struct cluster *cl = NULL;
    struct journal *j = NULL;
    struct cluster_options co = {.urls = urls, .mode = mode, .shard = shard, .quiet = true};
    const char *bad = "";
    if (!(err = jrn_create(&o, NULL)) && !(err = cluster_new(&co, &bad, &cl))) {
        o.durable = cluster_hook(cl);
        if (!(err = jrn_open(&o, &j)) && (err = cluster_start(cl, j, why, sizeof why)))
            fprintf(stderr, "kiroku: bench replicate: %s\n", why);
    }
    if (!err)
        err = bench_append_on(j, events, producers, window, payload, &r->a);
    if (!err && !(err = r->a.err) && !wait_published(cl, j))
        err = KR_EIO;
    if (cl) {
        struct cluster_stats cs;
        cluster_stats(cl, &cs);
        r->messages = cs.messages;
        r->ranges = cs.ranges;
        r->errors = cs.errors;
        cluster_latencies(cl, &r->pub_p50_us, &r->pub_p99_us, &r->lag_p99_us);
    }
    cluster_stop(cl, 0);
    jrn_close(j);
    cluster_free(cl);
    drop_stream(urls, stream);
    cli_rmtree(dir);
    return err;
}

static void print_mode(const char *name, const struct mode_run *r, double ceiling, bool json)
{
    double mps = r->a.seconds > 0 ? (double)r->messages / r->a.seconds : 0;
    if (json) {
        printf("\"%s\":{\"events_per_s\":%.0f,\"append_p50_us\":%u,\"append_p99_us\":%u,"
               "\"messages\":%" PRIu64 ",\"messages_per_s\":%.0f,\"records_per_message\":%.1f,"
               "\"publish_p50_us\":%u,\"publish_p99_us\":%u,\"lag_p99_us\":%u,"
               "\"publish_errors\":%" PRIu64 ",\"events_over_ceiling\":%.3f}",
               name, r->a.events_per_s, r->a.p50_us, r->a.p99_us, r->messages, mps,
               r->messages ? (double)r->a.events / (double)r->messages : 0, r->pub_p50_us,
               r->pub_p99_us, r->lag_p99_us, r->errors,
               ceiling > 0 ? r->a.events_per_s / ceiling : 0);
        return;
    }
    printf("%-7s %10.0f events/s (%.3f of the ceiling)  append p50 %6u us p99 %7u us | %" PRIu64
           " messages (%.1f records each, %.0f/s), publish p50 %u us p99 %u us, lag p99 %u us\n",
           name, r->a.events_per_s, ceiling > 0 ? r->a.events_per_s / ceiling : 0, r->a.p50_us,
           r->a.p99_us, r->messages, r->messages ? (double)r->a.events / (double)r->messages : 0,
           mps, r->pub_p50_us, r->pub_p99_us, r->lag_p99_us);
}

static void print_all(const struct mode_run *as, const struct mode_run *qu, double ceiling,
                      const char *where, uint64_t events, unsigned producers, unsigned window,
                      size_t payload, bool json)
{
    double ratio = as->a.events_per_s > 0 ? qu->a.events_per_s / as->a.events_per_s : 0;
    if (json) {
        printf("{\"events\":%" PRIu64 ",\"producers\":%u,\"window\":%u,\"payload\":%zu,"
               "\"nats\":\"%s\",",
               events, producers, window, payload, where);
        print_mode("async", as, ceiling, true);
        printf(",");
        print_mode("quorum", qu, ceiling, true);
        printf(",\"quorum_over_async\":%.3f,\"ceiling_jetstream_r3_msgs_per_s\":%.0f}\n", ratio,
               ceiling);
        return;
    }
    printf("%" PRIu64 " events of %zu bytes, %u producers x %u in flight, NATS: %s\n", events,
           payload, producers, window, where);
    print_mode("async", as, ceiling, false);
    print_mode("quorum", qu, ceiling, false);
    printf("quorum over async: %.3f (target >= 0.5)\n", ratio);
    printf("ceiling: bare JetStream R3 publishes of %zu bytes: %.0f messages/s\n", payload,
           ceiling);
}

/* The options into its arguments; CLI_CONTINUE or the exit code. */
static int replicate_parse(int argc, char **argv, struct cli_common *co, const char **nats,
                           uint64_t *events, uint64_t *producers, uint64_t *window,
                           uint64_t *payload)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"nats", required_argument, 0, 'N'},
                                         {"events", required_argument, 0, 'n'},
                                         {"producers", required_argument, 0, 'p'},
                                         {"window", required_argument, 0, 'w'},
                                         {"payload", required_argument, 0, 'b'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    memset(co, 0, sizeof *co);
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'N':
            *nats = optarg;
            break;
        case 'n':
            ok = cli_parse_u64(optarg, 1, 100000000, events);
            break;
        case 'p':
            ok = cli_parse_u64(optarg, 1, 1024, producers);
            break;
        case 'w':
            ok = cli_parse_u64(optarg, 1, 1024, window);
            break;
        case 'b':
            ok = cli_parse_u64(optarg, 1, KR_PAYLOAD_MAX, payload);
            break;
        default: {
            int rc = cli_common_option(c, replicate_usage, co);
            if (rc != CLI_CONTINUE)
                return rc;
        }
        }
        if (!ok)
            return cli_usage(replicate_usage);
    }
    return optind == argc ? CLI_CONTINUE : cli_usage(replicate_usage);
}

int bench_replicate(int argc, char **argv)
{
    struct cli_common co;
    const char *nats = NULL;
    uint64_t events = 100000, producers = 64, window = 256, payload = 200;
    int rc = replicate_parse(argc, argv, &co, &nats, &events, &producers, &window, &payload);
    if (rc != CLI_CONTINUE)
        return rc;
    struct kr_nats_cluster *nr = NULL;
    kr_err err = KR_OK;
    if (!nats && !(nr = kr_nats_start(NODES))) {
        fprintf(stderr, "kiroku: bench replicate: the NATS cluster did not start\n");
        return cli_fail("bench replicate", KR_EIO);
    }
    const char *urls = nats ? nats : kr_nats_urls(nr);
    double ceiling = 0;
    struct mode_run as, qu;
    if ((err = ceiling_js(urls, (size_t)payload, &ceiling)))
        fprintf(stderr, "kiroku: bench replicate: the JetStream ceiling: %s\n", kr_strerror(err));
    if (!err)
        err = run_mode(urls, CLUSTER_ASYNC, events, (unsigned)producers, (unsigned)window,
                       (size_t)payload, &as);
    if (!err)
        err = run_mode(urls, CLUSTER_QUORUM, events, (unsigned)producers, (unsigned)window,
                       (size_t)payload, &qu);
    kr_nats_free(nr);
    if (err)
        return cli_fail("bench replicate", err);
    print_all(&as, &qu, ceiling, nats ? "--nats" : "3 nodes on loopback", events,
              (unsigned)producers, (unsigned)window, (size_t)payload, co.json);
    return CLI_OK;
}
