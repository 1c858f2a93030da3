/*
 * bench.c: `kiroku bench append` and `kiroku bench verify`.
 *
 * append: P producer threads each keep a window of W asynchronous appends in
 * flight; each window slot owns a stream, so its next expected version is
 * always known. Latency is measured per append from submission (signing
 * included) to the durable completion. With --acks FILE every acknowledged
 * event is written to FILE as "seq commitment-hex\n" after it is durable,
 * which is how the crash test checks that nothing acknowledged was lost.
 *
 * verify: runs full and fast verification over a journal (a given one, or a
 * fresh one filled by the append benchmark) and reports records per second.
 */
#include "ceiling.h"
#include "cli.h"
#include "journal.h"
#include "path.h"
#include "verify.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PRODUCERS_MAX  1024
#define BENCH_WINDOW_MAX     1024
#define BENCH_FLUSH_PROBES   200 /* write + fdatasync timings of flush_probe */
#define BENCH_CEILING_S      1   /* default --ceiling: seconds of every core signing */
#define BENCH_CEILING_S_MAX  60
#define BENCH_VERIFY_PAYLOAD 200 /* the payload of the events bench verify fills with */
/* Memory is sampled at every tenth of the run. */
#define RSS_SAMPLES 11

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Anonymous resident memory in KiB: the heap and stacks, not the LMDB map. */
static long rss_anon_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "RssAnon:", 8) == 0) {
            char *end;
            kb = strtol(line + 8, &end, 10);
            if (end == line + 8)
                kb = -1;
            break;
        }
    }
    fclose(f);
    return kb;
}

struct slot {
    struct jrn_append a;
    struct jrn_event e;
    struct producer *p;
    uint8_t *payload; /* its own copy: each event's bytes (and commitment) differ */
    char stream[64];
    uint64_t version;
    uint64_t t_submit;
};

struct producer {
    pthread_t tid;
    struct bench *b;
    unsigned id;
    uint64_t events;  /* to append */
    uint32_t *lat_us; /* one per event */
    _Atomic uint64_t done;
    struct slot *slots;
    /* Free-slot stack, guarded by mu. The producer sleeps when the window is
     * full and is woken when half of it is free again, so completions cost a
     * wake-up per half window rather than one each. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool waiting;
    struct slot **stack;
    size_t top;
};

struct bench {
    struct journal *j;
    uint64_t events;
    unsigned producers, window;
    size_t payload_len;
    uint8_t *payload;
    char run[17];
    int acks_fd;
    _Atomic uint64_t failures;
    _Atomic kr_err first_err;
    _Atomic uint64_t completed;
    _Atomic uint64_t acked; /* completed with KR_OK: durable */
};

static void on_done(struct jrn_append *a, kr_err err)
{
    struct slot *s = a->arg;
    struct producer *p = s->p;
    uint64_t d = atomic_fetch_add(&p->done, 1);
    uint64_t us = (now_ns() - s->t_submit) / 1000;
    if (d < p->events)
        p->lat_us[d] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    if (err == KR_OK) {
        atomic_fetch_add(&p->b->acked, 1);
        s->version++;
        if (p->b->acks_fd >= 0) {
            char line[128];
            int n = snprintf(line, sizeof line, "%" PRIu64 " ", s->e.seq);
            for (int i = 0; i < KR_HASH_LEN; i++)
                n += snprintf(line + n, sizeof line - (size_t)n, "%02x", s->e.commitment[i]);
            line[n++] = '\n';
            if (write(p->b->acks_fd, line, (size_t)n) != n)
                atomic_fetch_add(&p->b->failures, 1);
        }
    } else {
        kr_err none = KR_OK;
        atomic_compare_exchange_strong(&p->b->first_err, &none, err);
        atomic_fetch_add(&p->b->failures, 1);
    }
    atomic_fetch_add(&p->b->completed, 1);
    pthread_mutex_lock(&p->mu);
    p->stack[p->top++] = s;
    if (p->waiting && (p->top >= (p->b->window + 1) / 2 || p->top == p->b->window))
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Takes a free slot, sleeping while the window is full; NULL never. */
static struct slot *take_slot(struct producer *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->top == 0) {
        p->waiting = true;
        pthread_cond_wait(&p->cv, &p->mu);
        p->waiting = false;
    }
    struct slot *s = p->stack[--p->top];
    pthread_mutex_unlock(&p->mu);
    return s;
}

/* Waits until every slot is back. */
static void drain_slots(struct producer *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->top < p->b->window) {
        p->waiting = true;
        pthread_cond_wait(&p->cv, &p->mu);
        p->waiting = false;
    }
    pthread_mutex_unlock(&p->mu);
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    struct bench *b = p->b;
    for (uint64_t i = 0; i < p->events; i++) {
        struct slot *s = take_slot(p);
        memset(&s->e, 0, sizeof s->e);
        s->e.tenant = 1 + p->id % 8;
        s->e.stream = s->stream;
        s->e.stream_len = strlen(s->stream);
        s->e.type = "bench.appended";
        s->e.type_len = strlen("bench.appended");
        s->e.actor = "bench";
        s->e.actor_len = 5;
        s->e.expected_version = s->version;
        /* A distinct payload per event, so each acknowledged commitment names
         * one record and a lost or misplaced record cannot hide behind a twin. */
        uint64_t tag = (uint64_t)p->id << 40 | i;
        memcpy(s->payload, &tag, b->payload_len < sizeof tag ? b->payload_len : sizeof tag);
        s->e.payload = s->payload;
        s->e.payload_len = b->payload_len;
        s->a = (struct jrn_append){.events = &s->e, .n = 1, .done = on_done, .arg = s};
        s->t_submit = now_ns();
        kr_err err = jrn_submit(b->j, &s->a);
        if (err) {
            kr_err none = KR_OK;
            atomic_compare_exchange_strong(&b->first_err, &none, err);
            atomic_fetch_add(&b->failures, 1);
            pthread_mutex_lock(&p->mu);
            p->stack[p->top++] = s;
            pthread_mutex_unlock(&p->mu);
            break;
        }
    }
    drain_slots(p);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

struct append_result {
    uint64_t events;
    double seconds, events_per_s;
    uint32_t p50_us, p99_us, max_us;
    uint64_t batches, max_batch, failures;
    double commit_avg_us, commit_max_us;
    uint64_t meta_syncs;      /* one flush per commit: mdb_env_sync calls (no commit followed) */
    double meta_sync_avg_us;  /* their average time */
    double cpu_us_per_event;  /* the process's CPU time (user + system) over the events */
    long rss_kb[RSS_SAMPLES]; /* anonymous RSS at 0%, 10%, ... 100% of the run */
    kr_err err;
};

/* What the machine can do, measured in the same run as an append bench. */
struct append_machine {
    double sign_per_s;                   /* every core signing (ceiling_sign) */
    unsigned threads;                    /* the cores that signed */
    uint32_t flush_p50_us, flush_p99_us; /* a 4 KiB write + fdatasync (flush_probe) */
};

/* Each producer's latency array, slots and payloads. KR_ENOMEM leaves what
 * was made for append_free. */
static kr_err append_setup(struct bench *b, struct producer *ps)
{
    unsigned producers = b->producers, window = b->window;
    uint64_t events = b->events;
    size_t payload_len = b->payload_len;
    kr_err err = KR_OK;
    for (unsigned i = 0; i < producers && !err; i++) {
        struct producer *p = &ps[i];
        p->b = b;
        p->id = i;
        p->events = events / producers + (i < events % producers);
        p->lat_us = calloc(p->events ? p->events : 1, sizeof *p->lat_us);
        /* Touch it now, so the memory samples show the journal, not this. */
        if (p->lat_us)
            memset(p->lat_us, 0xff, (p->events ? p->events : 1) * sizeof *p->lat_us);
        p->slots = calloc(window, sizeof *p->slots);
        p->stack = calloc(window, sizeof(struct slot *));
        if (!p->lat_us || !p->slots || !p->stack) {
            err = KR_ENOMEM;
            break;
        }
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->cv, NULL);
        for (unsigned w = 0; w < window && !err; w++) {
            struct slot *s = &p->slots[w];
            s->p = p;
            s->payload = malloc(payload_len ? payload_len : 1);
            if (!s->payload) {
                err = KR_ENOMEM;
                break;
            }
            memcpy(s->payload, b->payload, payload_len);
            snprintf(s->stream, sizeof s->stream, "bench/%s/%u/%u", b->run, i, w);
            p->stack[p->top++] = s;
        }
    }
    return err;
}

/* Starts the producers (none when err, the setup's error, is set), samples
 * memory until every event is acknowledged or one fails, and joins them: the
 * run's time and memory into res, the journal's statistics before and after
 * into st0 and st1. Returns err or the error starting a producer. */
static kr_err append_drive(struct bench *b, struct producer *ps, kr_err err, struct jrn_stats *st0,
                           struct jrn_stats *st1, struct append_result *res)
{
    unsigned producers = b->producers;
    uint64_t events = b->events;
    jrn_get_stats(b->j, st0);
    res->rss_kb[0] = rss_anon_kb();
    double t0 = cli_now();
    unsigned started = 0;
    for (unsigned i = 0; i < producers && !err; i++, started++)
        if (pthread_create(&ps[i].tid, NULL, producer_main, &ps[i]) != 0)
            err = KR_ENOMEM;
    unsigned sampled = 1;
    while (!err && atomic_load(&b->completed) < events && atomic_load(&b->failures) == 0) {
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
        uint64_t done = atomic_load(&b->completed);
        while (sampled < RSS_SAMPLES - 1 && done >= events * sampled / (RSS_SAMPLES - 1))
            res->rss_kb[sampled++] = rss_anon_kb();
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(ps[i].tid, NULL);
    res->seconds = cli_now() - t0;
    long end_kb = rss_anon_kb();
    while (sampled < RSS_SAMPLES)
        res->rss_kb[sampled++] = end_kb;
    jrn_get_stats(b->j, st1);
    return err;
}

/* Latency percentiles over every append. */
static void append_latencies(struct producer *ps, unsigned producers, struct append_result *res)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < producers; i++)
        total += ps[i].lat_us ? atomic_load(&ps[i].done) : 0;
    uint32_t *all = calloc(total ? total : 1, sizeof *all);
    uint64_t k = 0;
    for (unsigned i = 0; all && i < producers; i++) {
        uint64_t d = atomic_load(&ps[i].done);
        for (uint64_t x = 0; x < d && x < ps[i].events; x++)
            all[k++] = ps[i].lat_us[x];
    }
    if (all && k) {
        qsort(all, k, sizeof *all, cmp_u32);
        res->p50_us = all[k / 2];
        res->p99_us = all[(k * 99) / 100];
        res->max_us = all[k - 1];
    }
    free(all);
}

static void append_free(struct producer *ps, unsigned producers, unsigned window)
{
    for (unsigned i = 0; i < producers; i++) {
        for (unsigned w = 0; ps[i].slots && w < window; w++)
            free(ps[i].slots[w].payload);
        free(ps[i].lat_us);
        free(ps[i].slots);
        free(ps[i].stack);
        if (ps[i].b) {
            pthread_mutex_destroy(&ps[i].mu);
            pthread_cond_destroy(&ps[i].cv);
        }
    }
}

/* The process's CPU time so far (every thread, user and system), seconds:
 * on a shared machine what the work costs, where events/s also shows what
 * the other tenants of the machine took. */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Runs the append benchmark on an open journal. */
static kr_err run_append(struct journal *j, uint64_t events, unsigned producers, unsigned window,
                         size_t payload_len, int acks_fd, struct append_result *res)
{
    struct bench b = {.j = j,
                      .events = events,
                      .producers = producers,
                      .window = window,
                      .payload_len = payload_len,
                      .acks_fd = acks_fd};
    memset(res, 0, sizeof *res);
    uint8_t rnd[8];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(b.run, sizeof b.run, rnd, sizeof rnd);
    b.payload = malloc(payload_len ? payload_len : 1);
    struct producer *ps = calloc(producers, sizeof *ps);
    if (!b.payload || !ps) {
        free(b.payload);
        free(ps);
        return KR_ENOMEM;
    }
    randombytes_buf(b.payload, payload_len);
    kr_err err = append_setup(&b, ps);
    struct jrn_stats st0, st1;
    double cpu0 = cpu_seconds();
    err = append_drive(&b, ps, err, &st0, &st1, res);
    double cpu = cpu_seconds() - cpu0;
    append_latencies(ps, producers, res);
    res->events = atomic_load(&b.acked);
    res->events_per_s = res->seconds > 0 ? (double)res->events / res->seconds : 0;
    res->cpu_us_per_event = res->events ? cpu * 1e6 / (double)res->events : 0;
    res->batches = st1.batches - st0.batches;
    if (res->batches)
        res->commit_avg_us = (double)(st1.commit_ns - st0.commit_ns) / 1e3 / (double)res->batches;
    res->commit_max_us = (double)st1.commit_ns_max / 1e3;
    res->meta_syncs = st1.meta_syncs - st0.meta_syncs;
    if (res->meta_syncs)
        res->meta_sync_avg_us =
            (double)(st1.meta_sync_ns - st0.meta_sync_ns) / 1e3 / (double)res->meta_syncs;
    res->max_batch = st1.max_batch;
    res->failures = atomic_load(&b.failures);
    res->err = atomic_load(&b.first_err);
    append_free(ps, producers, window);
    free(ps);
    free(b.payload);
    return err;
}

kr_err bench_append_on(struct journal *j, uint64_t events, unsigned producers, unsigned window,
                       size_t payload, struct bench_append_figures *out)
{
    struct append_result r;
    kr_err err = run_append(j, events, producers, window, payload, -1, &r);
    *out = (struct bench_append_figures){.events = r.events,
                                         .seconds = r.seconds,
                                         .events_per_s = r.events_per_s,
                                         .p50_us = r.p50_us,
                                         .p99_us = r.p99_us,
                                         .failures = r.failures,
                                         .err = r.err};
    return err;
}

kr_err bench_fill(struct journal *j, uint64_t events)
{
    struct append_result r;
    kr_err err = run_append(j, events, 16, 64, 200, -1, &r);
    return err ? err : r.err;
}

/* A fresh journal in a new directory under $TMPDIR (or /tmp). */
static kr_err temp_journal(char *dir, size_t cap)
{
    kr_err err = cli_scratch_dir(dir, cap);
    if (err)
        return err;
    struct jrn_options o = {.dir = dir};
    return jrn_create(&o, NULL);
}

kr_err bench_append_rate(uint64_t events, unsigned producers, unsigned window, double *events_per_s)
{
    char tmp[KR_PATH_MAX];
    struct journal *j;
    struct append_result r;
    *events_per_s = 0;
    kr_err err = temp_journal(tmp, sizeof tmp);
    if (err)
        return err;
    struct jrn_options o = {.dir = tmp};
    if (!(err = jrn_open(&o, &j))) {
        err = run_append(j, events, producers, window, 200, -1, &r);
        jrn_close(j);
        if (!err && !(err = r.err))
            *events_per_s = r.events_per_s;
    }
    cli_rmtree(tmp);
    return err;
}

/* Opens dir's journal for writing, creating it when dir holds none. */
static kr_err open_or_create_flushes(const char *dir, bool two_flushes, struct journal **j)
{
    struct jrn_options o = {.dir = dir, .two_flushes = two_flushes};
    kr_err err = jrn_open(&o, j);
    if (err == KR_ENOTFOUND) {
        if ((err = jrn_create(&o, NULL)))
            return err;
        err = jrn_open(&o, j);
    }
    return err;
}

static kr_err open_or_create(const char *dir, struct journal **j)
{
    return open_or_create_flushes(dir, false, j);
}

/* The machine's flush: BENCH_FLUSH_PROBES times a 4096-byte write and
 * fdatasync of a scratch file in dir; p50 and p99 in microseconds. */
static kr_err flush_probe(const char *dir, uint32_t *p50, uint32_t *p99)
{
    char path[KR_PATH_MAX];
    uint32_t us[BENCH_FLUSH_PROBES];
    uint8_t page[4096] = {0};
    kr_err err = kr_path_join(path, sizeof path, dir, "flush-probe.tmp");
    if (err)
        return err;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return kr_err_from_errno(errno);
    for (size_t i = 0; i < BENCH_FLUSH_PROBES && !err; i++) {
        page[0] = (uint8_t)i;
        double t0 = cli_now();
        if (pwrite(fd, page, sizeof page, 0) != (ssize_t)sizeof page || fdatasync(fd) != 0)
            err = KR_EIO;
        us[i] = (uint32_t)((cli_now() - t0) * 1e6);
    }
    close(fd);
    unlink(path);
    if (err)
        return err;
    for (size_t i = 1; i < BENCH_FLUSH_PROBES; i++) /* insertion sort: a few hundred */
        for (size_t k = i; k > 0 && us[k - 1] > us[k]; k--) {
            uint32_t t = us[k];
            us[k] = us[k - 1];
            us[k - 1] = t;
        }
    *p50 = us[BENCH_FLUSH_PROBES / 2];
    *p99 = us[(BENCH_FLUSH_PROBES * 99) / 100];
    return KR_OK;
}

static const char bench_usage[] =
    "usage: kiroku bench append [--data DIR] [--events N] [--producers P] [--payload BYTES]\n"
    "                           [--window W] [--acks FILE] [--two-flushes]\n"
    "                           [--compare-flushes] [--compare-fresh] [--ceiling S]\n"
    "                           [--json]\n"
    "       kiroku bench verify [--data DIR] [--events N] [--threads T] [--since M]\n"
    "                           [--ceiling S] [--json]\n"
    "       kiroku bench replay [--data DIR] [--events N] [--json]\n"
    "       kiroku bench query [--data DIR] [--contacts N] [--pages P] [--json]\n"
    "       kiroku bench api [--data DIR] [--seconds N] [--clients N] [--workers N]\n"
    "                        [--contacts N] [--phase P] [--json]\n"
    "       kiroku bench backup [--events N] [--json]\n"
    "       kiroku bench replicate [--nats URL] [--events N] [--producers P]\n"
    "                              [--window W] [--payload BYTES] [--json]\n"
    "       kiroku bench failover [--events N] [--lease-ttl MS] [--json]\n"
    "\n"
    "append: P threads (default 64) append N events (default 200000) of BYTES\n"
    "  (default 200) to many streams, each keeping W (default 256) asynchronous\n"
    "  appends in flight; W=1 measures one-at-a-time appends. Prints events/s and\n"
    "  the p50/p99 latency from submission to durable completion. With --data the\n"
    "  journal stays in DIR (created if missing); without, a temporary one is used\n"
    "  and removed. --acks writes \"seq commitment\" per durable event to FILE.\n"
    "  --two-flushes flushes each commit's meta page on its own (LMDB's default)\n"
    "  instead of one flush per commit. --compare-flushes runs the bench twice\n"
    "  on temporary journals, one flush per commit then two, and prints both,\n"
    "  their ratio and this disk's flush time (p50/p99 of write + fdatasync).\n"
    "  --compare-fresh (with --data) runs the default bench (200000 events) on a\n"
    "  temporary fresh journal before and after the run on DIR and prints all\n"
    "  three and over_fresh: DIR's events/s over the better fresh one.\n"
    "  Beside the figures: the ceiling, every core signing such events for\n"
    "  --ceiling S seconds (default 1; 0 skips it) before the run, the ratio to\n"
    "  it, this disk's flush time and the flushes paid per commit and per append.\n"
    "verify: full and fast verification speed over DIR's journal, or over a\n"
    "  temporary journal filled with N events (default 200000). --since M then\n"
    "  saves the state of a fast verification, appends M events, and times a full\n"
    "  verify --since beside a full verification of a fresh journal of M events\n"
    "  (best of 3 each). Beside full verification: the ceiling, T threads (default\n"
    "  one per CPU) verifying such records' signatures for --ceiling S seconds\n"
    "  (default 1), and the ratio to it.\n"
    "replay: rebuilds every view from DIR's journal, or from a temporary seeded\n"
    "  journal of about N events (default 1000000); prints events/s.\n"
    "query: contacts.list pages of 100 contacts of one tag, in a tenant of N\n"
    "  contacts (default 100000); prints p50/p99 latency.\n"
    "api: the API server over tcp loopback: contacts.get against a bare nng echo\n"
    "  server, contacts.tag writes, logins with memory; see kiroku bench api --help.\n"
    "backup: backup_run against mdb_copy -c of a journal of N events (default\n"
    "  1000000) while appends go on, then restore; see kiroku bench backup --help.\n"
    "replicate: the append load with the journal published to NATS JetStream, in\n"
    "  async then quorum mode; see kiroku bench replicate --help.\n"
    "failover: a primary (serve --node) killed with SIGKILL and another node\n"
    "  taking over; see kiroku bench failover --help.\n";

/* bench append's defaults, also the fresh run of --compare-fresh. */
#define APPEND_EVENTS    200000u
#define APPEND_PRODUCERS 64u
#define APPEND_WINDOW    256u
#define APPEND_PAYLOAD   200u

/* One append run on dir (a temporary journal when NULL). */
static kr_err append_once(const char *data, bool two_flushes, uint64_t events, unsigned producers,
                          unsigned window, size_t payload, int acks_fd, bool json,
                          struct append_result *r)
{
    char tmp[KR_PATH_MAX];
    kr_err err;
    if (data)
        snprintf(tmp, sizeof tmp, "%s", data);
    else if ((err = temp_journal(tmp, sizeof tmp)))
        return err;
    struct journal *j;
    if ((err = open_or_create_flushes(tmp, two_flushes, &j))) {
        if (!data)
            cli_rmtree(tmp);
        return err;
    }
    if (!json)
        fprintf(stderr,
                "appending %" PRIu64 " events of %zu bytes with %u producers, %u in flight each, "
                "%s per commit, to %s\n",
                events, payload, producers, window, two_flushes ? "two flushes" : "one flush", tmp);
    err = run_append(j, events, producers, window, payload, acks_fd, r);
    jrn_close(j);
    if (!data)
        cli_rmtree(tmp);
    return err;
}

static void append_print(const struct append_result *r, const struct append_machine *m,
                         uint64_t producers, uint64_t window, uint64_t payload, bool two_flushes,
                         bool json)
{
    /* Flushes: each commit's own (its pages; with two flushes also its meta
     * page's O_DSYNC write), plus the meta pages flushed by mdb_env_sync. */
    double flushes = (double)r->batches * (two_flushes ? 2 : 1) + (double)r->meta_syncs;
    double per_commit = r->batches ? flushes / (double)r->batches : 0;
    double per_append = r->events ? flushes / (double)r->events : 0;
    double ratio = m->sign_per_s > 0 ? r->events_per_s / m->sign_per_s : 0;
    char rss[RSS_SAMPLES * 16];
    size_t at = 0;
    for (int i = 0; i < RSS_SAMPLES; i++)
        at += (size_t)snprintf(rss + at, sizeof rss - at, "%s%ld", i ? "," : "", r->rss_kb[i]);
    if (r->err)
        fprintf(stderr, "kiroku: %" PRIu64 " appends failed, first: %s\n", r->failures,
                kr_strerror(r->err));
    if (json) {
        printf("{\"events\":%" PRIu64 ",\"producers\":%" PRIu64 ",\"window\":%" PRIu64
               ",\"payload\":%" PRIu64 ",\"flushes_per_commit\":%d,\"seconds\":%.3f,"
               "\"events_per_s\":%.0f,\"p50_us\":%u,"
               "\"p99_us\":%u,\"max_us\":%u,\"batches\":%" PRIu64 ",\"max_batch\":%" PRIu64
               ",\"commit_avg_us\":%.0f,\"commit_max_us\":%.0f,\"meta_syncs\":%" PRIu64
               ",\"meta_sync_avg_us\":%.0f,\"cpu_us_per_event\":%.1f,"
               "\"flushes_per_commit_measured\":%.2f,"
               "\"flushes_per_append\":%.3f,\"flush_p50_us\":%u,\"flush_p99_us\":%u,"
               "\"sign_ceiling_per_s\":%.0f,\"sign_ceiling_threads\":%u,"
               "\"events_over_ceiling\":%.2f,\"failures\":%" PRIu64 ",\"rss_anon_kb\":[%s]}",
               r->events, producers, window, payload, two_flushes ? 2 : 1, r->seconds,
               r->events_per_s, r->p50_us, r->p99_us, r->max_us, r->batches, r->max_batch,
               r->commit_avg_us, r->commit_max_us, r->meta_syncs, r->meta_sync_avg_us,
               r->cpu_us_per_event, per_commit, per_append, m->flush_p50_us, m->flush_p99_us,
               m->sign_per_s, m->threads, ratio, r->failures, rss);
    } else {
        printf("%" PRIu64 " events in %.2f s: %.0f events/s (%s per commit)\n"
               "append latency: p50 %u us, p99 %u us, max %u us\n"
               "%" PRIu64 " commits, %.1f events per commit (max %" PRIu64 "), "
               "commit with fsync %.0f us on average (max %.0f us); %.1f us of CPU per event\n"
               "flushes: %.2f per commit, %.3f per append (meta pages by mdb_env_sync: %" PRIu64
               ", %.0f us on average); this disk's flush (4 KiB write + fdatasync): p50 %u us, "
               "p99 %u us\n"
               "ceiling: %u cores sign %.0f events/s; this run: %.2fx of it\n"
               "resident anonymous memory (kB) at each tenth of the run: %s\n",
               r->events, r->seconds, r->events_per_s, two_flushes ? "two flushes" : "one flush",
               r->p50_us, r->p99_us, r->max_us, r->batches,
               r->batches ? (double)r->events / (double)r->batches : 0.0, r->max_batch,
               r->commit_avg_us, r->commit_max_us, r->cpu_us_per_event, per_commit, per_append,
               r->meta_syncs, r->meta_sync_avg_us, m->flush_p50_us, m->flush_p99_us, m->threads,
               m->sign_per_s, ratio, rss);
    }
}

/* The machine's ceilings for an append bench of payload-byte events: every
 * core signing, and the disk's flush (in a scratch directory: the same file
 * system as temporary journals). */
static kr_err append_machine_measure(size_t payload, double seconds, struct append_machine *m)
{
    char probe_dir[KR_PATH_MAX];
    *m = (struct append_machine){.threads = ceiling_threads(0)};
    if (seconds <= 0)
        return KR_OK; /* --ceiling 0: not measured (printed as zeros) */
    kr_err err = cli_scratch_dir(probe_dir, sizeof probe_dir);
    if (!err) {
        err = flush_probe(probe_dir, &m->flush_p50_us, &m->flush_p99_us);
        cli_rmtree(probe_dir);
    }
    if (err)
        return err;
    m->sign_per_s = ceiling_sign(m->threads, payload, seconds);
    return m->sign_per_s > 0 ? KR_OK : KR_ENOMEM;
}

/* --compare-flushes: one flush per commit, then two, on temporary journals,
 * beside the disk's own flush time. */
static int append_compare(uint64_t events, uint64_t producers, uint64_t window, uint64_t payload,
                          double ceiling_s, bool json)
{
    struct append_result one, two;
    struct append_machine m;
    kr_err err = append_machine_measure((size_t)payload, ceiling_s, &m);
    if (err)
        return cli_fail("bench: the machine's ceilings", err);
    if ((err = append_once(NULL, false, events, (unsigned)producers, (unsigned)window,
                           (size_t)payload, -1, json, &one)) ||
        (err = append_once(NULL, true, events, (unsigned)producers, (unsigned)window,
                           (size_t)payload, -1, json, &two)))
        return cli_fail("bench append", err);
    double ratio = two.events_per_s > 0 ? one.events_per_s / two.events_per_s : 0;
    if (json) {
        printf("{\"one_flush\":");
        append_print(&one, &m, producers, window, payload, false, true);
        printf(",\"two_flushes\":");
        append_print(&two, &m, producers, window, payload, true, true);
        printf(",\"one_over_two\":%.2f,\"flush_p50_us\":%u,\"flush_p99_us\":%u}\n", ratio,
               m.flush_p50_us, m.flush_p99_us);
    } else {
        append_print(&one, &m, producers, window, payload, false, false);
        append_print(&two, &m, producers, window, payload, true, false);
        printf("one flush per commit / two: %.2fx\n", ratio);
    }
    return one.failures || two.failures ? CLI_FAIL : CLI_OK;
}

/* --compare-fresh: the run on data beside the default bench on a fresh
 * temporary journal, run before and after it; the ratio is to the better
 * fresh run, so it is the lower bound the machine's noise allows. */
static int append_compare_fresh(const char *data, uint64_t events, uint64_t producers,
                                uint64_t window, uint64_t payload, double ceiling_s, bool json)
{
    struct append_result fresh, run, again;
    struct append_machine m;
    kr_err err = append_machine_measure((size_t)payload, ceiling_s, &m);
    if (err)
        return cli_fail("bench: the machine's ceilings", err);
    if ((err = append_once(NULL, false, APPEND_EVENTS, APPEND_PRODUCERS, APPEND_WINDOW,
                           APPEND_PAYLOAD, -1, json, &fresh)) ||
        (err = append_once(data, false, events, (unsigned)producers, (unsigned)window,
                           (size_t)payload, -1, json, &run)) ||
        (err = append_once(NULL, false, APPEND_EVENTS, APPEND_PRODUCERS, APPEND_WINDOW,
                           APPEND_PAYLOAD, -1, json, &again)))
        return cli_fail("bench append", err);
    double best = fresh.events_per_s > again.events_per_s ? fresh.events_per_s : again.events_per_s;
    double ratio = best > 0 ? run.events_per_s / best : 0;
    printf(json ? "{\"fresh\":" : "fresh journal, before:\n");
    append_print(&fresh, &m, APPEND_PRODUCERS, APPEND_WINDOW, APPEND_PAYLOAD, false, json);
    printf(json ? ",\"run\":" : "%s:\n", data);
    append_print(&run, &m, producers, window, payload, false, json);
    printf(json ? ",\"fresh_again\":" : "fresh journal, after:\n");
    append_print(&again, &m, APPEND_PRODUCERS, APPEND_WINDOW, APPEND_PAYLOAD, false, json);
    if (json)
        printf(",\"fresh_events_per_s\":%.0f,\"over_fresh\":%.2f}\n", best, ratio);
    else
        printf("%s over the better fresh run: %.2fx\n", data, ratio);
    return fresh.failures || run.failures || again.failures ? CLI_FAIL : CLI_OK;
}

static int bench_append(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"events", required_argument, 0, 'n'},
                                         {"producers", required_argument, 0, 'p'},
                                         {"payload", required_argument, 0, 's'},
                                         {"window", required_argument, 0, 'w'},
                                         {"acks", required_argument, 0, 'a'},
                                         {"two-flushes", no_argument, 0, 'T'},
                                         {"ceiling", required_argument, 0, 'L'},
                                         {"compare-flushes", no_argument, 0, 'C'},
                                         {"compare-fresh", no_argument, 0, 'F'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    const char *acks = NULL;
    bool two_flushes = false, compare = false, fresh = false;
    int rc;
    uint64_t events = APPEND_EVENTS, producers = APPEND_PRODUCERS, payload = APPEND_PAYLOAD,
             window = APPEND_WINDOW, ceiling = BENCH_CEILING_S;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'n':
            ok = cli_parse_u64(optarg, 1, UINT32_MAX, &events);
            break;
        case 'p':
            ok = cli_parse_u64(optarg, 1, BENCH_PRODUCERS_MAX, &producers);
            break;
        case 's':
            ok = cli_parse_u64(optarg, 0, KR_PAYLOAD_MAX, &payload);
            break;
        case 'w':
            ok = cli_parse_u64(optarg, 1, BENCH_WINDOW_MAX, &window);
            break;
        case 'a':
            acks = optarg;
            break;
        case 'T':
            two_flushes = true;
            break;
        case 'C':
            compare = true;
            break;
        case 'F':
            fresh = true;
            break;
        case 'L':
            ok = cli_parse_u64(optarg, 0, BENCH_CEILING_S_MAX, &ceiling);
            break;
        default:
            if ((rc = cli_common_option(c, bench_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
        if (!ok)
            return cli_usage(bench_usage);
    }
    double ceiling_s = (double)ceiling;
    if (optind != argc || (compare && (two_flushes || co.data || acks || fresh)) ||
        (fresh && (two_flushes || !co.data || acks)))
        return cli_usage(bench_usage);
    if (compare)
        return append_compare(events, producers, window, payload, ceiling_s, co.json);
    if (fresh)
        return append_compare_fresh(co.data, events, producers, window, payload, ceiling_s,
                                    co.json);
    int acks_fd = -1;
    if (acks && (acks_fd = open(acks, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        perror(acks);
        return CLI_FAIL;
    }
    struct append_result r;
    struct append_machine m;
    kr_err err = append_machine_measure((size_t)payload, ceiling_s, &m);
    if (err) {
        if (acks_fd >= 0)
            close(acks_fd);
        return cli_fail("bench: the machine's ceilings", err);
    }
    err = append_once(co.data, two_flushes, events, (unsigned)producers, (unsigned)window,
                      (size_t)payload, acks_fd, co.json, &r);
    if (acks_fd >= 0)
        close(acks_fd);
    if (err)
        return cli_fail(co.data ? co.data : "bench append", err);
    append_print(&r, &m, producers, window, payload, two_flushes, co.json);
    if (co.json)
        printf("\n");
    return r.failures ? CLI_FAIL : CLI_OK;
}

/* A verification of dir with o, timed; a failed verdict is an error. */
static kr_err timed_verify(const char *dir, const struct jrn_verify_options *o,
                           struct jrn_verify_report *r, double *secs)
{
    double t0 = cli_now();
    kr_err err = jrn_verify(dir, o, r);
    *secs = cli_now() - t0;
    if (!err && r->result) {
        fprintf(stderr, "kiroku: the journal does not verify: seq %" PRIu64 ": %s\n", r->bad_seq,
                r->what);
        err = r->result;
    }
    return err;
}

/* Appends n events to the journal in dir (made if missing). */
static kr_err verify_fill(const char *dir, uint64_t n)
{
    struct journal *j;
    struct append_result r;
    kr_err err = open_or_create(dir, &j);
    if (err)
        return err;
    err = run_append(j, n, 16, 64, 200, -1, &r);
    jrn_close(j);
    return err ? err : r.failures ? r.err : KR_OK;
}

#define BENCH_VERIFY_ROUNDS 3

/* bench verify --since M: a journal of N events (DIR's, or a temporary one)
 * verified with a state; M events appended; verify --since timed beside a
 * full verification of a fresh journal of M events. */
static int bench_verify_since(const char *data, uint64_t events, unsigned threads, uint64_t m,
                              bool json)
{
    char big[KR_PATH_MAX], small[KR_PATH_MAX];
    kr_err err;
    if (data)
        snprintf(big, sizeof big, "%s", data);
    else if ((err = temp_journal(big, sizeof big)) || (err = verify_fill(big, events)))
        return cli_fail("bench verify: filling", err);
    if ((err = temp_journal(small, sizeof small)) || (err = verify_fill(small, m))) {
        if (!data)
            cli_rmtree(big);
        return cli_fail("bench verify: filling", err);
    }
    /* The base state by a fast pass: what is timed is the pass after it. */
    struct jrn_verify_options vo = {.threads = threads, .want_state = true, .fast = true};
    struct jrn_verify_report base, inc, alone;
    double t_base = 0, t_inc = 1e9, t_alone = 1e9;
    memset(&inc, 0, sizeof inc);
    memset(&alone, 0, sizeof alone);
    err = timed_verify(big, &vo, &base, &t_base);
    vo.fast = false;
    vo.want_state = false;
    if (!err)
        err = verify_fill(big, m);
    /* Best of BENCH_VERIFY_ROUNDS each, alternating, against a shared machine's noise. */
    for (int round = 0; !err && round < BENCH_VERIFY_ROUNDS; round++) {
        double t;
        vo.since = base.state;
        err = timed_verify(big, &vo, &inc, &t);
        t_inc = t < t_inc ? t : t_inc;
        vo.since = NULL;
        if (!err)
            err = timed_verify(small, &vo, &alone, &t);
        t_alone = t < t_alone ? t : t_alone;
    }
    jrn_verify_state_free(base.state);
    if (!data)
        cli_rmtree(big);
    cli_rmtree(small);
    if (err)
        return cli_fail("bench verify --since", err);
    double ratio = t_inc / t_alone;
    if (json)
        printf("{\"records\":%" PRIu64 ",\"new_records\":%" PRIu64 ",\"checked\":%" PRIu64
               ",\"since_seconds\":%.4f,\"alone_records\":%" PRIu64
               ",\"alone_seconds\":%.4f,\"since_over_alone\":%.3f,\"base_fast_seconds\":%.3f}\n",
               inc.records, m, inc.checked, t_inc, alone.records, t_alone, ratio, t_base);
    else
        printf("%" PRIu64 " records, %" PRIu64 " of them new\n"
               "verify --since: %.4f s for %" PRIu64 " records checked\n"
               "full verify of a journal of %" PRIu64 " records alone: %.4f s\n"
               "since / alone: %.2fx, best of %d (base fast verification: %.2f s)\n",
               inc.records, m, t_inc, inc.checked, alone.records, t_alone, ratio,
               BENCH_VERIFY_ROUNDS, t_base);
    return CLI_OK;
}

static int bench_verify(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"events", required_argument, 0, 'n'},
                                         {"threads", required_argument, 0, 't'},
                                         {"since", required_argument, 0, 's'},
                                         {"ceiling", required_argument, 0, 'L'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    uint64_t events = 200000, threads = 0, since = 0, ceiling_s = BENCH_CEILING_S;
    int rc;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'n':
            ok = cli_parse_u64(optarg, 1, UINT32_MAX, &events);
            break;
        case 't':
            ok = cli_parse_u64(optarg, 1, 64, &threads);
            break;
        case 's':
            ok = cli_parse_u64(optarg, 1, UINT32_MAX, &since);
            break;
        case 'L':
            ok = cli_parse_u64(optarg, 0, BENCH_CEILING_S_MAX, &ceiling_s);
            break;
        default:
            if ((rc = cli_common_option(c, bench_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
        if (!ok)
            return cli_usage(bench_usage);
    }
    if (optind != argc)
        return cli_usage(bench_usage);
    if (since)
        return bench_verify_since(co.data, events, (unsigned)threads, since, co.json);
    const char *data = co.data;
    bool json = co.json;
    char tmp[KR_PATH_MAX];
    kr_err err;
    if (data) {
        snprintf(tmp, sizeof tmp, "%s", data);
    } else {
        if ((err = temp_journal(tmp, sizeof tmp)))
            return cli_fail("bench: temporary journal", err);
        if (!json)
            fprintf(stderr, "filling %s with %" PRIu64 " events\n", tmp, events);
        struct journal *j;
        struct append_result r;
        if ((err = open_or_create(tmp, &j)))
            return cli_fail(tmp, err);
        err = run_append(j, events, 16, 64, 200, -1, &r);
        jrn_close(j);
        if (err || r.failures)
            return cli_fail("bench verify: filling", err ? err : r.err);
    }
    struct jrn_verify_report full, fast;
    struct jrn_verify_options vo = {.threads = (unsigned)threads};
    /* The ceiling: as many threads as verification uses, each verifying
     * signatures of such records with nothing around them. */
    unsigned cthreads = ceiling_threads((unsigned)threads);
    double ceiling = ceiling_verify(cthreads, BENCH_VERIFY_PAYLOAD, (double)ceiling_s);
    if (ceiling_s && ceiling <= 0) {
        if (!data)
            cli_rmtree(tmp);
        return cli_fail("bench: the machine's ceiling", KR_ENOMEM);
    }
    double t0 = cli_now();
    err = jrn_verify(tmp, &vo, &full);
    double t_full = cli_now() - t0;
    vo.fast = true;
    t0 = cli_now();
    kr_err err2 = jrn_verify(tmp, &vo, &fast);
    double t_fast = cli_now() - t0;
    if (!data)
        cli_rmtree(tmp);
    if (err || err2)
        return cli_fail("bench verify", err ? err : err2);
    if (full.result || fast.result) {
        fprintf(stderr, "kiroku: the journal does not verify: seq %" PRIu64 ": %s\n",
                full.result ? full.bad_seq : fast.bad_seq, full.result ? full.what : fast.what);
        return CLI_BAD;
    }
    double full_rate = (double)full.records / t_full, fast_rate = (double)fast.records / t_fast;
    double ratio = ceiling > 0 ? full_rate / ceiling : 0;
    if (json)
        printf("{\"records\":%" PRIu64 ",\"full_seconds\":%.3f,\"full_events_per_s\":%.0f,"
               "\"fast_seconds\":%.3f,\"fast_events_per_s\":%.0f,\"verify_ceiling_per_s\":%.0f,"
               "\"verify_ceiling_threads\":%u,\"full_over_ceiling\":%.2f}\n",
               full.records, t_full, full_rate, t_fast, fast_rate, ceiling, cthreads, ratio);
    else
        printf("%" PRIu64 " records\nfull verification: %.2f s, %.0f events/s\n"
               "fast verification: %.3f s, %.0f events/s\n"
               "ceiling: %u threads verify %.0f signatures/s; full verification: %.2fx of it\n",
               full.records, t_full, full_rate, t_fast, fast_rate, cthreads, ceiling, ratio);
    return CLI_OK;
}

int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "append") == 0)
        return bench_append(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return bench_verify(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(bench_usage, stdout);
        return CLI_OK;
    }
    fputs(bench_usage, stderr);
    return CLI_USAGE;
}
