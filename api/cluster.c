/*
 * cluster.c: publishing committed ranges to JetStream (cluster.h).
 *
 * Design notes.
 * - One publisher thread, one message in flight. Throughput comes from
 *   coalescing, not from pipelining: while a chunk waits for its
 *   acknowledgement more commits become durable, and the next range takes
 *   them all (up to KR_REPL_MSG_MAX bytes or KR_REPL_CHUNK_RECORDS records
 *   per chunk). With one message in flight ExpectLastSeq is always the
 *   acknowledged sequence of the one before, and a retry after a timeout is
 *   the same message: if the first attempt was stored, the duplicate window
 *   answers with its sequence; past the window the server refuses it for a
 *   wrong last sequence, and the stream's last message is then read: if it
 *   is this very chunk (same message id), publishing goes on.
 * - The hook runs on the journal's writer thread: it copies the note and
 *   the size under the mutex and signals. Nothing else.
 * - The publisher reads the journal through jrn_repl_encode (stored bytes)
 *   and jrn_checkpoint_after (notes at kept sizes), never past what the hook
 *   said is durable.
 */
#include "cluster.h"

#include "kr_limits.h"
#include "natskv.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HDR_FIRST "Kiroku-First"
#define HDR_LAST  "Kiroku-Last"
#define HDR_EPOCH "Kiroku-Epoch"
#define HDR_MSGID "Nats-Msg-Id"
/* "<32 hex>.<epoch>.<first>.<last>": three u64 in decimal, dots, NUL */
#define MSGID_MAX (32 + 3 * 21 + 4)

const uint64_t cluster_pub_bucket_us[CLUSTER_PUB_BUCKETS] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000};

/* A size that became durable, and when (monotonic ns). */
struct durable_at {
    uint64_t size, t_ns;
};

struct cluster {
    struct cluster_options o; /* urls and shard point into this struct */
    struct jrn_durable_hook hook;
    struct journal *j;
    natsConnection *nc;
    jsCtx *js;
    pthread_t th;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC; signalled by the hook and stop */
    /* under mu */
    uint64_t durable; /* newest durable size the hook told */
    size_t note_len;
    size_t nwaiting;
    uint64_t stop_by_ns; /* 0: no stop asked; else publish until then, then stop */
    struct durable_at waiting[KR_CLUSTER_DURABLE_TIMES]; /* sizes > published, oldest first */

    /* the publisher thread's own (and cluster_start's before it runs) */
    uint64_t epoch;
    uint64_t sys_version; /* the journal's own stream's version epoch was read at */
    uint8_t *buf;         /* KR_REPL_MSG_MAX */
    uint64_t last_log_ns;

    /* stats, read by cluster_stats */
    _Atomic uint64_t published, stream_seq, messages, ranges, errors, pub_ns_sum;
    _Atomic uint64_t pub_hist[CLUSTER_PUB_BUCKETS];
    pthread_mutex_t smu;       /* the samples */
    uint32_t *pub_us, *lag_us; /* rings of KR_CLUSTER_SAMPLES */
    size_t npub, nlag;

    _Atomic bool started, fenced, behind;
    bool stop; /* under mu */
    bool thread_running;
    bool stopped;          /* cluster_stop ran */
    bool publish_from_set; /* o->publish_from was given */
    uint8_t journal_id[16];
    char jid_hex[33];
    char shard[KR_CLUSTER_SHARD_MAX + 1];
    char stream[KR_CLUSTER_NAME_MAX], subject[KR_CLUSTER_NAME_MAX];
    char note[KR_NOTE_MAX]; /* under mu: the note signed at durable */
    char urls[KR_CLUSTER_URLS_MAX + 1];
};

static void *publisher_main(void *arg);

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- Names and options ---- */

kr_err cluster_names(const char *shard, char *stream, char *subject, size_t cap)
{
    if (!shard || !nkv_shard_name_ok(shard) || cap < KR_CLUSTER_NAME_MAX)
        return KR_EINVAL;
    size_t n = strlen(shard);
    memcpy(stream, "KIROKU_", 7);
    for (size_t i = 0; i < n; i++)
        stream[7 + i] = shard[i] == '-' ? '_' : (char)toupper((unsigned char)shard[i]);
    stream[7 + n] = '\0';
    snprintf(subject, cap, "kiroku.%s.journal", shard);
    return KR_OK;
}

kr_err cluster_check(const struct cluster_options *o, const char **why)
{
    *why = "";
    if (!o->urls || strlen(o->urls) > KR_CLUSTER_URLS_MAX) {
        *why = "the NATS URL list is missing or too long";
        return KR_EINVAL;
    }
    if (!nkv_urls_ok(o->urls)) {
        *why = "the NATS URLs are nats://HOST:PORT, comma-separated (at most 16)";
        return KR_EINVAL;
    }
    if (o->shard && !nkv_shard_name_ok(o->shard)) {
        *why = "a shard is named by 1 to 32 of a-z, 0-9 and -";
        return KR_EINVAL;
    }
    if (o->max_age_s > KR_CLUSTER_MAX_AGE_S_MAX) {
        *why = "the stream's max age is at most 29 days (the erasure deadline is 30)";
        return KR_EINVAL;
    }
    if (o->replicas > KR_CLUSTER_REPLICAS_MAX) {
        *why = "a stream has at most 5 replicas";
        return KR_EINVAL;
    }
    if (o->mode != CLUSTER_ASYNC && o->mode != CLUSTER_QUORUM) {
        *why = "replication is async or quorum";
        return KR_EINVAL;
    }
    return KR_OK;
}

/* ---- The hook (writer thread) ---- */

static void on_durable(void *ctx, uint64_t size, const char *note, size_t len)
{
    struct cluster *c = ctx;
    uint64_t now = mono_ns();
    pthread_mutex_lock(&c->mu);
    if (size > c->durable && len <= sizeof c->note) {
        c->durable = size;
        memcpy(c->note, note, len);
        c->note_len = len;
        if (c->nwaiting < KR_CLUSTER_DURABLE_TIMES)
            c->waiting[c->nwaiting++] = (struct durable_at){size, now};
        else
            c->waiting[c->nwaiting - 1].size = size; /* keeps the older time */
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

kr_err cluster_new(const struct cluster_options *o, const char **why, struct cluster **out)
{
    kr_err err = cluster_check(o, why);
    if (err)
        return err;
    struct cluster *c = calloc(1, sizeof *c);
    if (!c)
        return KR_ENOMEM;
    c->o = *o;
    snprintf(c->urls, sizeof c->urls, "%s", o->urls);
    snprintf(c->shard, sizeof c->shard, "%s", o->shard ? o->shard : CLUSTER_SHARD_DEFAULT);
    c->o.urls = c->urls;
    c->o.shard = c->shard;
    if (!c->o.max_age_s)
        c->o.max_age_s = KR_CLUSTER_MAX_AGE_S_DEFAULT;
    if (!c->o.start_timeout_ms)
        c->o.start_timeout_ms = KR_CLUSTER_START_TIMEOUT_MS;
    c->publish_from_set = o->publish_from != 0;
    if (!c->o.publish_from)
        c->o.publish_from = 1;
    if (cluster_names(c->shard, c->stream, c->subject, sizeof c->stream) != KR_OK) {
        free(c);
        return KR_EINVAL;
    }
    c->buf = malloc(KR_REPL_MSG_MAX);
    c->pub_us = calloc(KR_CLUSTER_SAMPLES, sizeof *c->pub_us);
    c->lag_us = calloc(KR_CLUSTER_SAMPLES, sizeof *c->lag_us);
    if (!c->buf || !c->pub_us || !c->lag_us) {
        free(c->buf);
        free(c->pub_us);
        free(c->lag_us);
        free(c);
        return KR_ENOMEM;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->smu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->hook.ctx = c;
    c->hook.durable = on_durable;
    c->hook.hold = o->mode == CLUSTER_QUORUM;
    *out = c;
    return KR_OK;
}

const struct jrn_durable_hook *cluster_hook(struct cluster *c)
{
    return &c->hook;
}

/* ---- Small helpers ---- */

/* Whether the publisher must stop now: stop asked and its grace over.
 * Under mu. */
static bool must_stop(const struct cluster *c)
{
    return c->stop && (c->stop_by_ns == 0 || mono_ns() >= c->stop_by_ns);
}

/* The pause between two attempts: ms, whatever commits meanwhile (a
 * failing NATS is not asked again at the commit rate), cut short only by
 * a stop whose grace is over. True if the publisher must stop. */
static bool nap(struct cluster *c, unsigned ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)ms * 1000000ull;
    until.tv_sec += (time_t)(ns / 1000000000ull);
    until.tv_nsec = (long)(ns % 1000000000ull);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (!must_stop(c) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cv, &c->mu, &until);
    bool stop = must_stop(c);
    pthread_mutex_unlock(&c->mu);
    return stop;
}

/* A line on stderr about a failure, at most once per KR_CLUSTER_LOG_EVERY_NS. */
static void log_failure(struct cluster *c, const char *what, natsStatus s, jsErrCode jerr)
{
    uint64_t now = mono_ns();
    if (c->last_log_ns && now - c->last_log_ns < KR_CLUSTER_LOG_EVERY_NS)
        return;
    c->last_log_ns = now;
    fprintf(stderr, "kiroku: cluster: %s: %s (JetStream error %d); retrying\n", what,
            natsStatus_GetText(s), (int)jerr);
}

static void sample(struct cluster *c, uint32_t *ring, size_t *n, uint64_t ns)
{
    uint64_t us = ns / 1000;
    pthread_mutex_lock(&c->smu);
    ring[*n % KR_CLUSTER_SAMPLES] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    (*n)++;
    pthread_mutex_unlock(&c->smu);
}

static void count_pub(struct cluster *c, uint64_t ns)
{
    uint64_t us = ns / 1000;
    for (size_t i = 0; i < CLUSTER_PUB_BUCKETS; i++)
        if (us <= cluster_pub_bucket_us[i]) {
            atomic_fetch_add(&c->pub_hist[i], 1);
            break;
        }
    atomic_fetch_add(&c->pub_ns_sum, ns);
    atomic_fetch_add(&c->messages, 1);
    sample(c, c->pub_us, &c->npub, ns);
}

/* A decimal header of msg into *v; false if absent or not a number. */
static bool header_u64(natsMsg *msg, const char *key, uint64_t *v)
{
    const char *s = NULL;
    if (natsMsgHeader_Get(msg, key, &s) != NATS_OK || !s || !*s || strlen(s) > 20)
        return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || errno || !isdigit((unsigned char)s[0]))
        return false;
    *v = x;
    return true;
}

static void msg_id(const struct cluster *c, uint64_t first, uint64_t last, char out[MSGID_MAX])
{
    snprintf(out, MSGID_MAX, "%s.%" PRIu64 ".%" PRIu64 ".%" PRIu64, c->jid_hex, c->epoch, first,
             last);
}

/* ---- Connecting and the stream ---- */

static void nats_close(struct cluster *c)
{
    pthread_mutex_lock(&c->mu);
    natsConnection *nc = c->nc;
    jsCtx *js = c->js;
    c->nc = NULL;
    c->js = NULL;
    pthread_mutex_unlock(&c->mu);
    jsCtx_Destroy(js);
    if (nc) {
        natsConnection_Close(nc);
        natsConnection_Destroy(nc);
    }
}

/* One attempt at connecting (reconnecting forever afterwards). */
static natsStatus connect_once(struct cluster *c)
{
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = NATS_INVALID_ARG;
    if (nkv_options(c->urls, "kiroku serve", KR_CLUSTER_PUB_WAIT_MS, &opts) == KR_OK)
        s = natsConnection_Connect(&nc, opts);
    natsOptions_Destroy(opts);
    jsOptions jo;
    if (s == NATS_OK && (s = jsOptions_Init(&jo)) == NATS_OK) {
        jo.Wait = KR_CLUSTER_PUB_WAIT_MS;
        s = natsConnection_JetStream(&js, nc, &jo);
    }
    if (s != NATS_OK) {
        natsConnection_Destroy(nc);
        return s;
    }
    pthread_mutex_lock(&c->mu);
    c->nc = nc;
    c->js = js;
    pthread_mutex_unlock(&c->mu);
    return NATS_OK;
}

/* Replicas: the setting, else min(3, the servers the connection knows). */
static int64_t stream_replicas(struct cluster *c)
{
    if (c->o.replicas)
        return c->o.replicas;
    char **srv = NULL;
    int known = 0;
    if (natsConnection_GetServers(c->nc, &srv, &known) == NATS_OK) {
        for (int i = 0; i < known; i++)
            free(srv[i]);
        free(srv);
    }
    return known >= 3 ? 3 : known < 1 ? 1 : known;
}

/* Creates the stream, or updates it to these settings. */
static natsStatus stream_ensure(struct cluster *c, jsErrCode *jerr)
{
    jsStreamConfig sc;
    natsStatus s = jsStreamConfig_Init(&sc);
    if (s != NATS_OK)
        return s;
    const char *subjects[1] = {c->subject};
    sc.Name = c->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Retention = js_LimitsPolicy;
    sc.Storage = js_FileStorage;
    sc.MaxAge = (int64_t)(c->o.max_age_s * 1000000000ull);
    sc.Replicas = stream_replicas(c);
    sc.Duplicates = (int64_t)KR_CLUSTER_DUP_WINDOW_NS;
    sc.AllowDirect = true;
    jsStreamInfo *si = NULL;
    *jerr = 0;
    s = js_AddStream(&si, c->js, &sc, NULL, jerr);
    if (s != NATS_OK && *jerr == JSStreamNameExistErr) {
        *jerr = 0;
        s = js_UpdateStream(&si, c->js, &sc, NULL, jerr);
    }
    jsStreamInfo_Destroy(si);
    return s;
}

/* Connects and sets up the stream, retrying until the start timeout. */
static kr_err start_connect(struct cluster *c, char *why, size_t cap)
{
    uint64_t until = mono_ns() + c->o.start_timeout_ms * 1000000ull;
    unsigned wait_ms = 100;
    for (;;) {
        jsErrCode jerr = 0;
        natsStatus s = c->nc ? NATS_OK : connect_once(c);
        const char *what = "connecting";
        if (s == NATS_OK) {
            what = "setting up the stream";
            s = stream_ensure(c, &jerr);
        }
        if (s == NATS_OK)
            return KR_OK;
        if (s == NATS_NO_MEMORY)
            return KR_ENOMEM;
        snprintf(why, cap, "%s %s at %s: %s (JetStream error %d)", what, c->stream, c->urls,
                 natsStatus_GetText(s), (int)jerr);
        if (mono_ns() >= until)
            return KR_EIO;
        if (!c->o.quiet)
            fprintf(stderr, "kiroku: cluster: %s; retrying\n", why);
        struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        wait_ms = wait_ms * 2 > 2000 ? 2000 : wait_ms * 2;
    }
}

/* Whether the last record of the stream's message m (holding seqs up to
 * `last`) is the local journal's record `last` (same leaf hash: a record
 * stripped since it was published still matches). KR_OK, KR_ENOTPRIMARY
 * (it differs), KR_EEXIST (m is not a chunk of this journal), a read error. */
static kr_err tail_matches(struct cluster *c, natsMsg *m, uint64_t last)
{
    const uint8_t **rec = calloc(KR_REPL_CHUNK_RECORDS, sizeof *rec);
    size_t *rec_len = calloc(KR_REPL_CHUNK_RECORDS, sizeof *rec_len);
    struct jrn_repl_chunk ch = {.rec = rec, .rec_len = rec_len};
    struct jrn_recbuf rb = {0};
    struct jrn_record theirs;
    kr_err err = rec && rec_len ? KR_OK : KR_ENOMEM;
    int len = natsMsg_GetDataLength(m);
    if (!err &&
        (len <= 0 ||
         jrn_repl_decode((const uint8_t *)natsMsg_GetData(m), (size_t)len, &ch,
                         KR_REPL_CHUNK_RECORDS) != KR_OK ||
         ch.n == 0 || memcmp(ch.journal_id, c->journal_id, 16) != 0 || ch.first + ch.n - 1 != last))
        err = KR_EEXIST;
    if (!err && jrn_record_decode(rec[ch.n - 1], rec_len[ch.n - 1], &theirs) != KR_OK)
        err = KR_EEXIST;
    if (!err)
        err = jrn_read(c->j, last, &rb);
    if (!err) {
        uint8_t a[KR_HASH_LEN], b[KR_HASH_LEN];
        jrn_record_leaf_hash(&theirs, a);
        jrn_record_leaf_hash(&rb.rec, b);
        if (memcmp(a, b, KR_HASH_LEN) != 0)
            err = KR_ENOTPRIMARY;
    }
    jrn_recbuf_fini(&rb);
    free(rec);
    free(rec_len);
    return err;
}

/* Reads the id and seqs of a kiroku chunk's headers; false if not one. */
static bool chunk_headers(natsMsg *m, char jid[33], uint64_t *first, uint64_t *last,
                          uint64_t *epoch)
{
    const char *id = NULL;
    if (natsMsgHeader_Get(m, HDR_MSGID, &id) != NATS_OK || !id || strlen(id) < 33 || id[32] != '.')
        return false;
    for (int i = 0; i < 32; i++)
        if (!isxdigit((unsigned char)id[i]))
            return false;
    memcpy(jid, id, 32);
    jid[32] = '\0';
    return header_u64(m, HDR_FIRST, first) && header_u64(m, HDR_LAST, last) &&
           header_u64(m, HDR_EPOCH, epoch) && *first >= 1 && *first <= *last;
}

/* Where publishing starts, from the stream's last message (cluster.h). */
static kr_err stream_tail(struct cluster *c, uint64_t size, uint64_t *published,
                          uint64_t *stream_seq, char *why, size_t cap)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, c->js, c->stream, NULL, &jerr);
    if (s != NATS_OK) {
        snprintf(why, cap, "reading stream %s: %s", c->stream, natsStatus_GetText(s));
        return KR_EIO;
    }
    uint64_t last_seq = si->State.LastSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    if (msgs == 0) {
        if (c->o.publish_from > size + 1) {
            snprintf(why, cap, "--publish-from %" PRIu64 " is past the journal (%" PRIu64 ")",
                     c->o.publish_from, size);
            return KR_EINVAL;
        }
        *published = c->o.publish_from - 1;
        *stream_seq = last_seq;
        if (last_seq > 0 && !c->publish_from_set) {
            /* Every message aged out (an idle primary past max_age): what
             * the journal holds was published before they expired. */
            *published = size;
            if (!c->o.quiet)
                fprintf(stderr,
                        "kiroku: cluster: stream %s is empty at sequence %" PRIu64
                        " (its messages aged out): publishing from seq %" PRIu64 "\n",
                        c->stream, last_seq, size + 1);
        }
        return KR_OK;
    }
    natsMsg *m = NULL;
    s = js_GetLastMsg(&m, c->js, c->stream, c->subject, NULL, &jerr);
    if (s != NATS_OK) {
        snprintf(why, cap, "reading the last message of %s: %s", c->stream, natsStatus_GetText(s));
        return KR_EIO;
    }
    char jid[33];
    uint64_t first, last, epoch;
    kr_err err = KR_OK;
    if (!chunk_headers(m, jid, &first, &last, &epoch)) {
        snprintf(why, cap, "stream %s ends with a message that is not kiroku's", c->stream);
        err = KR_EEXIST;
    } else if (strcmp(jid, c->jid_hex) != 0) {
        snprintf(why, cap, "stream %s holds journal %s, not this one (%s)", c->stream, jid,
                 c->jid_hex);
        err = KR_EEXIST;
    } else if (epoch > c->epoch || last > size) {
        snprintf(why, cap,
                 "stream %s is ahead (seq %" PRIu64 ", epoch %" PRIu64 "; this journal: %" PRIu64
                 ", epoch %" PRIu64 "): not the primary, follow it first",
                 c->stream, last, epoch, size, c->epoch);
        err = KR_ENOTPRIMARY;
    } else if ((err = tail_matches(c, m, last)) != KR_OK) {
        snprintf(why, cap, "stream %s differs from this journal at seq %" PRIu64 ": %s", c->stream,
                 last,
                 err == KR_ENOTPRIMARY ? "not the primary, follow it first" : kr_strerror(err));
    }
    uint64_t seq = natsMsg_GetSequence(m);
    natsMsg_Destroy(m);
    if (err)
        return err;
    *published = last;
    *stream_seq = seq ? seq : last_seq;
    return KR_OK;
}

kr_err cluster_start(struct cluster *c, struct journal *j, char *why, size_t cap)
{
    char note[KR_NOTE_MAX];
    size_t nlen = 0;
    struct jrn_info info;
    why[0] = '\0';
    c->j = j;
    jrn_get_info(j, &info);
    memcpy(c->journal_id, info.journal_id, 16);
    for (int i = 0; i < 16; i++)
        snprintf(c->jid_hex + (size_t)2 * (size_t)i, 3, "%02x", info.journal_id[i]);
    kr_err err = jrn_epoch(j, &c->epoch);
    uint64_t size = jrn_size(j);
    if (!err)
        err = jrn_checkpoint(j, note, sizeof note, &nlen);
    if (err) {
        snprintf(why, cap, "reading the journal: %s", kr_strerror(err));
        return err;
    }
    on_durable(c, size, note, nlen);
    uint64_t published = 0, stream_seq = 0;
    if ((err = start_connect(c, why, cap)) ||
        (err = stream_tail(c, size, &published, &stream_seq, why, cap))) {
        if (err == KR_ENOTPRIMARY)
            atomic_store(&c->behind, true);
        return err;
    }
    atomic_store(&c->published, published);
    atomic_store(&c->stream_seq, stream_seq);
    pthread_mutex_lock(&c->mu);
    size_t k = 0; /* sizes already published are not waiting */
    while (k < c->nwaiting && c->waiting[k].size <= published)
        k++;
    memmove(c->waiting, c->waiting + k, (c->nwaiting - k) * sizeof c->waiting[0]);
    c->nwaiting -= k;
    pthread_mutex_unlock(&c->mu);
    if (!c->o.quiet)
        fprintf(stderr,
                "kiroku: cluster: stream %s at %" PRIu64 " (journal seq %" PRIu64
                "); publishing from seq %" PRIu64 " (%s)\n",
                c->stream, stream_seq, published, published + 1,
                c->o.mode == CLUSTER_QUORUM ? "quorum" : "async");
    if (pthread_create(&c->th, NULL, publisher_main, c) != 0) {
        snprintf(why, cap, "starting the publisher thread");
        return KR_ENOMEM;
    }
    c->thread_running = true;
    atomic_store(&c->started, true);
    return KR_OK;
}

/* ---- Publishing ---- */

/* Whether the stream's last message is the one with message id `id`
 * (a publish of it that was stored, then retried past the duplicate
 * window): KR_OK with its stream sequence, KR_ENOTPRIMARY (another writer
 * published), KR_EIO (could not read: retry). */
static kr_err last_is(struct cluster *c, const char *id, uint64_t *seq)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    if (js_GetLastMsg(&m, c->js, c->stream, c->subject, NULL, &jerr) != NATS_OK)
        return KR_EIO;
    const char *got = NULL;
    kr_err err = KR_ENOTPRIMARY;
    if (natsMsgHeader_Get(m, HDR_MSGID, &got) == NATS_OK && got && strcmp(got, id) == 0 &&
        (*seq = natsMsg_GetSequence(m)) != 0)
        err = KR_OK;
    natsMsg_Destroy(m);
    return err;
}

/* The message of one chunk, with its headers. */
static natsStatus chunk_msg(struct cluster *c, size_t len, uint64_t first, uint64_t last,
                            natsMsg **out)
{
    char f[24], l[24], e[24];
    snprintf(f, sizeof f, "%" PRIu64, first);
    snprintf(l, sizeof l, "%" PRIu64, last);
    snprintf(e, sizeof e, "%" PRIu64, c->epoch);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, c->subject, NULL, (const char *)c->buf, (int)len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, HDR_FIRST, f);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, HDR_LAST, l);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, HDR_EPOCH, e);
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        m = NULL;
    }
    *out = m;
    return s;
}

/* One attempt: KR_OK with the stream sequence, KR_ENOTPRIMARY (fenced),
 * KR_EIO (transient: retry the same). */
static kr_err publish_once(struct cluster *c, size_t len, uint64_t first, uint64_t last,
                           const char *id, uint64_t *seq)
{
    natsMsg *m = NULL;
    natsStatus s = chunk_msg(c, len, first, last, &m);
    if (s != NATS_OK)
        return s == NATS_NO_MEMORY ? KR_ENOMEM : KR_EIO;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    /* The stream's sequence of the message before; into a stream that
     * never had one, "no message on the subject yet" (the stream has only
     * this subject): a sequence of 0 would not be sent at all. */
    po.ExpectLastSeq = atomic_load(&c->stream_seq);
    po.ExpectNoMessage = po.ExpectLastSeq == 0;
    po.MaxWait = KR_CLUSTER_PUB_WAIT_MS;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    uint64_t t0 = mono_ns();
    s = js_PublishMsg(&pa, c->js, m, &po, &jerr);
    natsMsg_Destroy(m);
    if (s == NATS_OK) {
        *seq = pa->Sequence;
        jsPubAck_Destroy(pa);
        count_pub(c, mono_ns() - t0);
        return KR_OK;
    }
    atomic_fetch_add(&c->errors, 1);
    if (jerr == JSStreamWrongLastSequenceErr) {
        kr_err err = last_is(c, id, seq);
        if (err != KR_EIO)
            return err;
    }
    log_failure(c, "publishing", s, jerr);
    return KR_EIO;
}

/* Publishes the chunk starting at `first` of the range ending at `last`
 * (note attached when the chunk reaches it), retrying transient failures
 * forever. *chunk_last = its last seq. KR_ENOTPRIMARY (fenced), KR_ECLOSED
 * (stop asked meanwhile), a journal error. */
static kr_err publish_chunk(struct cluster *c, uint64_t first, uint64_t last, const char *note,
                            size_t nlen, uint64_t *chunk_last)
{
    size_t len = 0;
    kr_err err = jrn_repl_encode(c->j, first, last, note, nlen, c->epoch, c->buf, KR_REPL_MSG_MAX,
                                 &len, chunk_last);
    if (err)
        return err;
    char id[MSGID_MAX];
    msg_id(c, first, *chunk_last, id);
    unsigned backoff = KR_CLUSTER_BACKOFF_MIN_MS;
    for (;;) {
        uint64_t seq = 0;
        err = publish_once(c, len, first, *chunk_last, id, &seq);
        if (err == KR_OK) {
            atomic_store(&c->stream_seq, seq);
            atomic_store(&c->published, *chunk_last);
            c->last_log_ns = 0;
            return KR_OK;
        }
        if (err != KR_EIO)
            return err;
        if (nap(c, backoff))
            return KR_ECLOSED;
        backoff = backoff * 2 > KR_CLUSTER_BACKOFF_MAX_MS ? KR_CLUSTER_BACKOFF_MAX_MS : backoff * 2;
    }
}

/* The next range after `published`: its last seq and note. Live ranges
 * end where the hook's newest note is; a longer one (a backlog) ends at the
 * next kept checkpoint. KR_ENOTFOUND when nothing is durable past it. */
static kr_err next_range(struct cluster *c, uint64_t published, uint64_t *last, char *note,
                         size_t *nlen)
{
    pthread_mutex_lock(&c->mu);
    uint64_t durable = c->durable;
    bool live = durable - published <= KR_CLUSTER_RANGE_RECORDS;
    *last = durable;
    *nlen = c->note_len;
    memcpy(note, c->note, c->note_len);
    pthread_mutex_unlock(&c->mu);
    if (durable <= published)
        return KR_ENOTFOUND;
    if (live)
        return KR_OK;
    char kept[KR_NOTE_MAX];
    size_t klen = 0;
    uint64_t size = 0;
    kr_err err = jrn_checkpoint_after(c->j, published, &size, kept, sizeof kept, &klen);
    if (err == KR_ENOTFOUND || (!err && size > durable))
        return KR_OK; /* the hook's note, over the whole of it */
    if (err)
        return err;
    *last = size;
    memcpy(note, kept, klen);
    *nlen = klen;
    return KR_OK;
}

/* A range acknowledged up to `last`: held appends released, lag sampled,
 * the durable sizes it covers forgotten. */
static void range_done(struct cluster *c, uint64_t last)
{
    if (c->o.mode == CLUSTER_QUORUM)
        jrn_release(c->j, last);
    atomic_fetch_add(&c->ranges, 1);
    uint64_t now = mono_ns(), since = 0;
    pthread_mutex_lock(&c->mu);
    if (c->nwaiting)
        since = c->waiting[0].t_ns;
    size_t k = 0;
    while (k < c->nwaiting && c->waiting[k].size <= last)
        k++;
    memmove(c->waiting, c->waiting + k, (c->nwaiting - k) * sizeof c->waiting[0]);
    c->nwaiting -= k;
    pthread_mutex_unlock(&c->mu);
    if (since)
        sample(c, c->lag_us, &c->nlag, now - since);
}

/* Waits until something durable is unpublished; false when it should
 * stop (stop asked, and nothing left or its grace over). */
static bool wait_work(struct cluster *c, uint64_t published)
{
    pthread_mutex_lock(&c->mu);
    while (!c->stop && c->durable <= published)
        pthread_cond_wait(&c->cv, &c->mu);
    bool go = !c->stop || (c->durable > published && mono_ns() < c->stop_by_ns);
    pthread_mutex_unlock(&c->mu);
    return go;
}

static void fence(struct cluster *c)
{
    atomic_store(&c->fenced, true);
    jrn_stop_appends(c->j, KR_ENOTPRIMARY);
    fprintf(stderr,
            "kiroku: cluster: FENCED: stream %s was written by another publisher (a newer "
            "primary); this node takes no more writes (not_primary) and publishes nothing\n",
            c->stream);
}

/* The epoch again when the journal's own stream moved (a key added, a new
 * epoch started while serving): one index lookup per range otherwise. */
static kr_err refresh_epoch(struct cluster *c)
{
    uint64_t v = 0;
    kr_err err = jrn_stream_version(c->j, 0, JRN_SYSTEM_STREAM, strlen(JRN_SYSTEM_STREAM), &v);
    if (!err && v != c->sys_version && !(err = jrn_epoch(c->j, &c->epoch)))
        c->sys_version = v;
    return err;
}

static void *publisher_main(void *arg)
{
    struct cluster *c = arg;
    char *note = malloc(KR_NOTE_MAX);
    unsigned backoff = KR_CLUSTER_BACKOFF_MIN_MS;
    while (note && wait_work(c, atomic_load(&c->published))) {
        uint64_t published = atomic_load(&c->published), last = 0, chunk_last = 0;
        size_t nlen = 0;
        kr_err err = refresh_epoch(c);
        if (!err)
            err = next_range(c, published, &last, note, &nlen);
        for (uint64_t first = published + 1; !err && first <= last; first = chunk_last + 1)
            err = publish_chunk(c, first, last, note, nlen, &chunk_last);
        if (!err) {
            range_done(c, last);
            backoff = KR_CLUSTER_BACKOFF_MIN_MS;
            continue;
        }
        if (err == KR_ENOTPRIMARY) {
            fence(c);
            break;
        }
        if (err == KR_ECLOSED)
            break;
        if (err != KR_ENOTFOUND) { /* a journal error: said, and tried again */
            atomic_fetch_add(&c->errors, 1);
            fprintf(stderr, "kiroku: cluster: reading the journal after seq %" PRIu64 ": %s\n",
                    published, kr_strerror(err));
        }
        if (nap(c, backoff))
            break;
        backoff = backoff * 2 > KR_CLUSTER_BACKOFF_MAX_MS ? KR_CLUSTER_BACKOFF_MAX_MS : backoff * 2;
    }
    free(note);
    return NULL;
}

/* ---- Stopping, stats ---- */

void cluster_stop(struct cluster *c, unsigned grace_ms)
{
    if (!c || c->stopped)
        return;
    pthread_mutex_lock(&c->mu);
    if (!c->stop) {
        c->stop = true;
        c->stop_by_ns = mono_ns() + (uint64_t)grace_ms * 1000000ull;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->thread_running) {
        pthread_join(c->th, NULL);
        c->thread_running = false;
    }
    if (c->j && c->o.mode == CLUSTER_QUORUM && !atomic_load(&c->fenced))
        jrn_stop_appends(c->j, KR_ECLOSED);
    nats_close(c);
    c->stopped = true;
}

void cluster_free(struct cluster *c)
{
    if (!c)
        return;
    c->j = NULL; /* closed by now: cluster_stop must not touch it */
    cluster_stop(c, 0);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->smu);
    pthread_cond_destroy(&c->cv);
    free(c->buf);
    free(c->pub_us);
    free(c->lag_us);
    free(c);
}

void cluster_stats(struct cluster *c, struct cluster_stats *out)
{
    memset(out, 0, sizeof *out);
    out->started = atomic_load(&c->started);
    out->fenced = atomic_load(&c->fenced);
    out->behind = atomic_load(&c->behind);
    out->mode = c->o.mode;
    out->published = atomic_load(&c->published);
    out->stream_seq = atomic_load(&c->stream_seq);
    out->messages = atomic_load(&c->messages);
    out->ranges = atomic_load(&c->ranges);
    out->errors = atomic_load(&c->errors);
    out->pub_ns_sum = atomic_load(&c->pub_ns_sum);
    for (size_t i = 0; i < CLUSTER_PUB_BUCKETS; i++)
        out->pub_hist[i] = atomic_load(&c->pub_hist[i]);
    uint64_t now = mono_ns();
    pthread_mutex_lock(&c->mu);
    out->connected = c->nc && natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
    out->durable = c->durable;
    if (c->nwaiting && c->waiting[0].size > out->published)
        out->lag_s = (double)(now - c->waiting[0].t_ns) / 1e9;
    pthread_mutex_unlock(&c->mu);
    out->lag_records = out->durable > out->published ? out->durable - out->published : 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Percentile p (0..100) of the newest samples of a ring; 0 when empty. */
static uint32_t ring_pct(const uint32_t *ring, size_t n, const unsigned *pcts, uint32_t *outs,
                         size_t k)
{
    size_t have = n < KR_CLUSTER_SAMPLES ? n : KR_CLUSTER_SAMPLES;
    for (size_t i = 0; i < k; i++)
        outs[i] = 0;
    if (!have)
        return 0;
    uint32_t *tmp = malloc(have * sizeof *tmp);
    if (!tmp)
        return 0;
    memcpy(tmp, ring, have * sizeof *tmp);
    qsort(tmp, have, sizeof *tmp, cmp_u32);
    for (size_t i = 0; i < k; i++)
        outs[i] = tmp[(have * pcts[i]) / 100 < have ? (have * pcts[i]) / 100 : have - 1];
    free(tmp);
    return outs[0];
}

void cluster_latencies(struct cluster *c, uint32_t *pub_p50_us, uint32_t *pub_p99_us,
                       uint32_t *lag_p99_us)
{
    static const unsigned pub_pcts[2] = {50, 99}, lag_pcts[1] = {99};
    uint32_t pub[2], lag[1];
    pthread_mutex_lock(&c->smu);
    ring_pct(c->pub_us, c->npub, pub_pcts, pub, 2);
    ring_pct(c->lag_us, c->nlag, lag_pcts, lag, 1);
    pthread_mutex_unlock(&c->smu);
    *pub_p50_us = pub[0];
    *pub_p99_us = pub[1];
    *lag_p99_us = lag[0];
}
