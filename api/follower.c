/*
 * follower.c: `kiroku follow`'s engine (follower.h): one thread that
 * connects to NATS, finds the stream message holding the journal's next
 * record, consumes the stream in order and applies each range once its
 * checkpoint verifies it.
 *
 * Design notes.
 * - The apply logic (chunk_apply) sees only decoded chunks and three numbers
 *   from the message (its two headers and its stream sequence): everything
 *   NATS-specific stays in the thread's loop, and every check is made on
 *   bytes the stream handed over, never assumed from the publisher.
 * - An ordered consumer delivers the stream in order without gaps and
 *   recreates itself after a missed heartbeat. Any other trouble with the
 *   subscription drops it and the open session with it; the follower then
 *   finds its place again from what it committed, so a range is never
 *   applied from half of its messages.
 * - After a reconnection (possibly to another server of the cluster, where
 *   the consumer may not exist) the follower subscribes again from what it
 *   committed rather than trust the consumer was recreated.
 * - Erasures are carried out after the commit that applied their record,
 *   outside the apply session (jrn_strip takes LMDB's write lock itself).
 * - nats.c's status codes are translated in one place (nkv_err, natskv.h).
 */
#include "follower.h"

#include "cluster.h"
#include "natskv.h"
#include "replica.h"
#include "retention.h"
#include "schema.h"

#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HDR_FIRST "Kiroku-First"
#define HDR_LAST  "Kiroku-Last"

struct api_follower {
    struct api_follower_options o;
    char urls[KR_CLUSTER_URLS_MAX + 1]; /* the --nats list */
    unsigned verify_threads;            /* jrn_replica_add_chunk's: one per core */
    char stream[KR_CLUSTER_NAME_MAX];
    char subject[KR_CLUSTER_NAME_MAX];
    pthread_t th;
    atomic_bool stop;
    atomic_bool reconnected; /* set by nats.c's thread: subscribe again */
    pthread_mutex_t mu;      /* guards st */
    struct api_follower_status st;
    /* the thread's own */
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    struct jrn_replica *r; /* the open apply session, or NULL */
    uint64_t next;         /* the first seq not yet given to the session */
    uint64_t epoch;        /* the newest epoch a message carried */
    uint8_t journal_id[16];
    const uint8_t **rec; /* KR_REPL_CHUNK_RECORDS each */
    size_t *rec_len;
    bool said_waiting; /* "waiting for the stream" printed once */
    bool said_connect; /* "no NATS server answers" printed once */
};

/* ---- Status ---- */

static void status_set(struct api_follower *f, void (*fn)(struct api_follower_status *, void *),
                       void *arg)
{
    pthread_mutex_lock(&f->mu);
    fn(&f->st, arg);
    pthread_mutex_unlock(&f->mu);
}

struct fault_arg {
    kr_err err;
    uint64_t seq;
    const char *what;
};

static void set_fault(struct api_follower_status *st, void *arg)
{
    const struct fault_arg *a = arg;
    st->stopped = true;
    st->err = a->err;
    st->seq = a->seq;
    st->faults = a->err == KR_ECORRUPT || a->err == KR_EBADSIG ? 1 : 0;
    snprintf(st->what, sizeof st->what, "%s", a->what);
}

/* Stops the follower for good: the session is aborted (nothing of it is
 * kept) and the status says why. Returns err. */
static kr_err fault(struct api_follower *f, kr_err err, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static kr_err fault(struct api_follower *f, kr_err err, uint64_t seq, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    jrn_replica_abort(f->r);
    f->r = NULL;
    struct fault_arg a = {err, seq, what};
    status_set(f, set_fault, &a);
    return err;
}

static void set_applied(struct api_follower_status *st, void *arg)
{
    const uint64_t *v = arg;
    st->applied = v[0];
    st->position = v[1];
    st->commits++;
}

/* ---- Applying one chunk ---- */

/* Opens the apply session for the chunks to come. */
static kr_err session_begin(struct api_follower *f)
{
    kr_err err = jrn_replica_begin(f->o.d->j, &f->r);
    if (err)
        return fault(f, err, jrn_size(f->o.d->j) + 1, "cannot begin applying: %s",
                     kr_strerror(err));
    f->next = jrn_size(f->o.d->j) + 1;
    return KR_OK;
}

/* Whether r records a tenant's erasure (tenant.erased; signup.expired, an
 * unconfirmed application's). */
static bool is_erasure(const struct jrn_record *r)
{
    return !jrn_is_system(r) && (jrn_type_is(r, kr_events[KR_EV_TENANT_ERASED].name) ||
                                 jrn_type_is(r, kr_events[KR_EV_SIGNUP_EXPIRED].name));
}

/* Carries out the erasure r records (tenant.erased, signup.expired): the
 * primary destroyed the tenant's data key and stripped its payloads before
 * it recorded the erasure, so the follower does the same on its own
 * keystore, its backup generations when its domain has retention hooks
 * (dom_set_retention), and its journal (up to the record before the
 * erasure's, as the primary did; the views dropped the tenant's rows when
 * they applied it). *step names what failed. */
static kr_err carry_out_erasure(struct kr_domain *d, const struct jrn_record *r, const char **step)
{
    uint64_t stripped = 0, generations = 0;
    struct jrn_strip_spec s = {.tenant = r->tenant, .to_seq = r->seq - 1};
    const struct ret_hooks *h = d->ret_hooks;
    kr_err err = KR_OK;
    if (d->ks && (err = ks_destroy(d->ks, r->tenant, r->time_ns)))
        *step = "destroying the key of tenant";
    else if (h && h->backup_erase && (err = h->backup_erase(h->arg, r->tenant, &generations)))
        *step = "destroying in the backup generations the key of tenant";
    else if ((err = jrn_strip(d->j, &s, &stripped)))
        *step = "stripping the payloads of tenant";
    return err;
}

/* The erasures and log truncations records from..to hold reach this copy
 * (carry_out_erasure; ret_logs_stripped_apply strips the platform logs the
 * primary stripped before it recorded retention.logs_stripped). */
static kr_err apply_erasures(struct api_follower *f, uint64_t from, uint64_t to)
{
    struct kr_domain *d = f->o.d;
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = from, .to = to};
    struct jrn_cursor *c = NULL;
    kr_err err = jrn_cursor_new(d->j, &q, &c);
    struct jrn_record r;
    const char *step = "reading the records applied";
    uint64_t seq = from, tenant = 0, stripped = 0;
    bool of_tenant = false; /* step names a tenant */
    while (!err && !(err = jrn_cursor_next(c, &r))) {
        if (jrn_is_system(&r))
            continue;
        if (is_erasure(&r)) {
            seq = r.seq, tenant = r.tenant, of_tenant = true;
            err = carry_out_erasure(d, &r, &step);
        } else if (jrn_type_is(&r, kr_events[KR_EV_RETENTION_LOGS_STRIPPED].name)) {
            seq = r.seq, of_tenant = false;
            step = "stripping the platform logs the truncation recorded";
            err = ret_logs_stripped_apply(d, &r, &stripped);
        }
    }
    jrn_cursor_free(c);
    if (err == KR_ENOTFOUND)
        return KR_OK;
    if (!of_tenant)
        return fault(f, err, seq, "%s: %s", step, kr_strerror(err));
    return fault(f, err, seq, "%s %" PRIu64 ": %s", step, tenant, kr_strerror(err));
}

/* Commits the session with the checkpoint note the chunk carries. */
static kr_err session_commit(struct api_follower *f, const struct jrn_repl_chunk *c, uint64_t sseq)
{
    struct jrn_start_fault sf = {0};
    struct jrn_replica *r = f->r;
    f->r = NULL; /* commit frees it either way */
    uint64_t before = jrn_size(f->o.d->j);
    kr_err err = jrn_replica_commit(r, c->note, c->note_len, sseq, &sf);
    if (err)
        return fault(f, err, sf.seq ? sf.seq : f->next - 1, "message %" PRIu64 ": %s", sseq,
                     sf.what[0] ? sf.what : kr_strerror(err));
    if (jrn_size(f->o.d->j) > before && (err = apply_erasures(f, before + 1, jrn_size(f->o.d->j))))
        return err;
    uint64_t v[2] = {jrn_size(f->o.d->j), sseq};
    status_set(f, set_applied, v);
    if (f->o.applied)
        f->o.applied(f->o.arg, v[0]);
    return KR_OK;
}

/* Checks chunk c of stream message sseq (whose headers said first..last)
 * against the journal and the messages before it, and adds its records to
 * the session; commits at its note. KR_OK, or the fault that stopped it. */
static kr_err chunk_apply(struct api_follower *f, const struct jrn_repl_chunk *c, uint64_t first,
                          uint64_t last, uint64_t sseq)
{
    uint64_t at = f->r ? f->next : jrn_size(f->o.d->j) + 1;
    if (memcmp(c->journal_id, f->journal_id, sizeof f->journal_id) != 0)
        return fault(f, KR_ECORRUPT, at, "message %" PRIu64 " is of another journal", sseq);
    if (c->n == 0 || c->first != first || c->first + c->n - 1 != last)
        return fault(f, KR_ECORRUPT, at,
                     "message %" PRIu64 ": its headers say records %" PRIu64 "..%" PRIu64
                     ", it holds %zu from %" PRIu64,
                     sseq, first, last, c->n, c->first);
    if (c->epoch < f->epoch)
        return fault(f, KR_ECORRUPT, at,
                     "message %" PRIu64 " is of epoch %" PRIu64 ", after one of epoch %" PRIu64,
                     sseq, c->epoch, f->epoch);
    f->epoch = c->epoch;
    /* History this journal holds whole (a stream read from its start, by a
     * journal restored past it): nothing to apply, and its note signs a
     * size this journal has passed. */
    if (!f->r && last <= jrn_size(f->o.d->j))
        return KR_OK;
    kr_err err;
    if (!f->r && (err = session_begin(f)))
        return err;
    if (c->first > f->next)
        return fault(f, KR_ECORRUPT, f->next,
                     "message %" PRIu64 " begins at record %" PRIu64
                     ": the stream lacks records %" PRIu64 "..%" PRIu64,
                     sseq, c->first, f->next, c->first - 1);
    /* Signatures checked on every core ahead, records applied in order. */
    struct jrn_start_fault sf = {0};
    if ((err = jrn_replica_add_chunk(f->r, c, f->verify_threads, &sf)))
        return fault(f, err, sf.seq ? sf.seq : c->first, "message %" PRIu64 ": %s", sseq,
                     sf.what[0] ? sf.what : kr_strerror(err));
    if (c->first + c->n > f->next)
        f->next = c->first + c->n;
    if (c->note)
        return session_commit(f, c, sseq);
    /* jrn_replica_add refuses a range past KR_REPL_PENDING_MAX records or
     * KR_REPL_PENDING_BYTES_MAX bytes without its checkpoint. */
    return KR_OK;
}

/* ---- Messages ---- */

/* A decimal u64 header of m; false if absent or malformed. */
static bool header_u64(natsMsg *m, const char *key, uint64_t *out)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK || !v || *v < '0' || *v > '9' || strlen(v) > 20)
        return false;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end)
        return false;
    *out = n;
    return true;
}

struct received {
    uint64_t last, pending;
};
static void set_received(struct api_follower_status *st, void *arg)
{
    const struct received *r = arg;
    st->received = r->last;
    st->pending_msgs = r->pending;
}

/* One message from the subscription: checked, decoded and applied. */
static kr_err msg_apply(struct api_follower *f, natsMsg *m)
{
    uint64_t at = f->r ? f->next : jrn_size(f->o.d->j) + 1;
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, m) != NATS_OK)
        return fault(f, KR_ECORRUPT, at, "a message without JetStream metadata");
    uint64_t sseq = meta->Sequence.Stream;
    struct received rv = {0, meta->NumPending};
    jsMsgMetaData_Destroy(meta);
    uint64_t first, last;
    if (!header_u64(m, HDR_FIRST, &first) || !header_u64(m, HDR_LAST, &last))
        return fault(f, KR_ECORRUPT, at,
                     "message %" PRIu64 " lacks a well-formed " HDR_FIRST " or " HDR_LAST " header",
                     sseq);
    rv.last = last;
    status_set(f, set_received, &rv);
    const uint8_t *data = (const uint8_t *)natsMsg_GetData(m);
    int len = natsMsg_GetDataLength(m);
    struct jrn_repl_chunk c = {.rec = f->rec, .rec_len = f->rec_len};
    kr_err err = len <= 0 || !data ? KR_ECORRUPT
                                   : jrn_repl_decode(data, (size_t)len, &c, KR_REPL_CHUNK_RECORDS);
    if (err)
        return fault(f, KR_ECORRUPT, at, "message %" PRIu64 " does not decode: %s", sseq,
                     kr_strerror(err));
    return chunk_apply(f, &c, first, last, sseq);
}

/* ---- Connecting and finding the start ---- */

static bool sleep_ms(struct api_follower *f, unsigned ms)
{
    for (unsigned done = 0; done < ms && !atomic_load(&f->stop); done += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return !atomic_load(&f->stop);
}

static void set_connected(struct api_follower_status *st, void *arg)
{
    st->connected = *(bool *)arg;
    if (!st->connected)
        st->following = false;
}

static void disconnect(struct api_follower *f)
{
    jrn_replica_abort(f->r);
    f->r = NULL;
    natsSubscription_Destroy(f->sub);
    f->sub = NULL;
    jsCtx_Destroy(f->js);
    f->js = NULL;
    natsConnection_Destroy(f->nc);
    f->nc = NULL;
    bool no = false;
    status_set(f, set_connected, &no);
}

/* After a reconnection the consumer the subscription used may be gone with
 * the server that held it: the thread subscribes again from what it
 * committed rather than trust it was recreated. */
static void on_reconnected(natsConnection *nc, void *arg)
{
    (void)nc;
    struct api_follower *f = arg;
    atomic_store(&f->reconnected, true);
}

static kr_err connect_nats(struct api_follower *f)
{
    natsOptions *opts = NULL;
    jsOptions jo;
    natsStatus s = NATS_INVALID_ARG;
    if (nkv_options(f->urls, "kiroku follow", KR_FOLLOW_REQUEST_MS, &opts) == KR_OK)
        s = natsOptions_SetReconnectedCB(opts, on_reconnected, f);
    if (s == NATS_OK)
        s = natsConnection_Connect(&f->nc, opts);
    natsOptions_Destroy(opts);
    if (s == NATS_OK && (s = jsOptions_Init(&jo)) == NATS_OK) {
        jo.Wait = KR_FOLLOW_REQUEST_MS;
        s = natsConnection_JetStream(&f->js, f->nc, &jo);
    }
    if (s != NATS_OK) {
        disconnect(f);
        return nkv_err(s);
    }
    bool yes = true;
    status_set(f, set_connected, &yes);
    return KR_OK;
}

/* The Kiroku-First/Last headers of stream message seq. */
static kr_err msg_range(struct api_follower *f, uint64_t seq, uint64_t *first, uint64_t *last)
{
    natsMsg *m = NULL;
    jsDirectGetMsgOptions o;
    jsDirectGetMsgOptions_Init(&o);
    o.Sequence = seq;
    natsStatus s = js_DirectGetMsg(&m, f->js, f->stream, NULL, &o);
    if (s != NATS_OK && s != NATS_NOT_FOUND) /* a stream without AllowDirect */
        s = js_GetMsg(&m, f->js, f->stream, seq, NULL, NULL);
    if (s != NATS_OK)
        return nkv_err(s);
    kr_err err =
        header_u64(m, HDR_FIRST, first) && header_u64(m, HDR_LAST, last) ? KR_OK : KR_ECORRUPT;
    natsMsg_Destroy(m);
    return err;
}

static void set_stream_first(struct api_follower_status *st, void *arg)
{
    st->stream_first = *(uint64_t *)arg;
}

/* The stream message to start from when the journal never followed it (or
 * its position is gone): the first whose records reach past the journal's
 * size, found by a binary search over [lo, hi]; hi + 1 when none does.
 * KR_ENOTFOUND (after a fault) when the stream begins past the journal. */
static kr_err search_start(struct api_follower *f, uint64_t lo, uint64_t hi, uint64_t *start)
{
    uint64_t size = jrn_size(f->o.d->j), first, last, at = lo;
    kr_err err = msg_range(f, at, &first, &last);
    if (err)
        goto failed;
    status_set(f, set_stream_first, &first);
    if (first > size + 1)
        return fault(f, KR_ENOTFOUND, size + 1,
                     "the stream %s begins at record %" PRIu64 " (message %" PRIu64
                     "), and this journal holds %" PRIu64 " records: restore a backup generation "
                     "holding at least %" PRIu64 " records",
                     f->stream, first, lo, size, first - 1);
    if ((err = msg_range(f, at = hi, &first, &last)))
        goto failed;
    if (last <= size) {
        *start = hi + 1;
        return KR_OK;
    }
    while (lo < hi) { /* invariant: message hi reaches past size */
        at = lo + (hi - lo) / 2;
        if ((err = msg_range(f, at, &first, &last)))
            goto failed;
        if (last > size)
            hi = at;
        else
            lo = at + 1;
    }
    *start = lo;
    return KR_OK;
failed: /* a message without our headers is not one to wait out */
    if (err == KR_ECORRUPT)
        return fault(f, err, size + 1,
                     "message %" PRIu64 " of the stream %s lacks a well-formed " HDR_FIRST
                     " or " HDR_LAST " header",
                     at, f->stream);
    return err;
}

/* Where to subscribe from: after the stored position, else (a journal
 * that never followed, a position expired or in a stream since recreated)
 * by search.
 * KR_EBUSY when the stream does not exist yet. */
static kr_err find_start(struct api_follower *f, uint64_t *start)
{
    uint64_t pos = 0;
    kr_err err = jrn_replica_position(f->o.d->j, &pos);
    if (err)
        return fault(f, err, jrn_size(f->o.d->j) + 1, "reading the stream position: %s",
                     kr_strerror(err));
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, f->js, f->stream, NULL, &jerr);
    if (s != NATS_OK)
        return jerr == JSStreamNotFoundErr ? KR_EBUSY : nkv_err(s);
    uint64_t lo = si->State.FirstSeq, hi = si->State.LastSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    /* The position holds only if its message is there and ends where the
     * journal does (a stream recreated since holds other messages there). */
    uint64_t first = 0, last = 0;
    if (pos && msgs > 0 && pos >= lo && pos <= hi) {
        err = msg_range(f, pos, &first, &last);
        if (err && err != KR_ENOTFOUND && err != KR_ECORRUPT)
            return err; /* NATS trouble: try again */
        if (!err && last == jrn_size(f->o.d->j)) {
            *start = pos + 1;
            return KR_OK;
        }
    }
    if (msgs == 0) {
        *start = hi + 1; /* the first message to come must begin at or before our next */
        return KR_OK;
    }
    return search_start(f, lo, hi, start);
}

static void set_following(struct api_follower_status *st, void *arg)
{
    (void)arg;
    st->following = true;
}

static kr_err subscribe(struct api_follower *f)
{
    uint64_t start = 0;
    kr_err err = find_start(f, &start);
    if (err == KR_EBUSY && !f->said_waiting) {
        fprintf(stderr, "kiroku: follow: waiting for the stream %s\n", f->stream);
        f->said_waiting = true;
    }
    if (err)
        return err;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = f->stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = start;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&f->sub, f->js, f->subject, NULL, &so, &jerr);
    if (s != NATS_OK)
        return nkv_err(s);
    status_set(f, set_following, NULL);
    return KR_OK;
}

/* ---- The thread ---- */

static bool stopped(struct api_follower *f)
{
    pthread_mutex_lock(&f->mu);
    bool st = f->st.stopped;
    pthread_mutex_unlock(&f->mu);
    return st;
}

/* The subscription broke or may have: drop it and the open session, and
 * find our place again from what is committed. */
static void resubscribe(struct api_follower *f, const char *why)
{
    fprintf(stderr, "kiroku: follow: %s; resuming from the stream position\n", why);
    jrn_replica_abort(f->r);
    f->r = NULL;
    natsSubscription_Destroy(f->sub);
    f->sub = NULL;
    f->said_waiting = false;
}

/* One step: connect, subscribe, or take one message. false when the
 * follower stopped on its own. */
static bool step(struct api_follower *f, unsigned *backoff)
{
    kr_err err = KR_OK;
    if (atomic_exchange(&f->reconnected, false) && f->sub)
        resubscribe(f, "reconnected");
    if (!f->nc && (err = connect_nats(f)) && !f->said_connect) {
        fprintf(stderr, "kiroku: follow: no NATS server answers (%s); retrying\n", f->o.nats);
        f->said_connect = true;
    } else if (!err && f->said_connect) {
        fprintf(stderr, "kiroku: follow: connected\n");
        f->said_connect = false;
    }
    if (!err && !f->sub)
        err = subscribe(f);
    if (stopped(f))
        return false;
    if (err) {
        if (!sleep_ms(f, *backoff))
            return true;
        *backoff = *backoff * 2 > KR_FOLLOW_RETRY_MAX_MS ? KR_FOLLOW_RETRY_MAX_MS : *backoff * 2;
        return true;
    }
    natsMsg *m = NULL;
    natsStatus s = natsSubscription_NextMsg(&m, f->sub, KR_FOLLOW_WAIT_MS);
    if (s == NATS_TIMEOUT)
        return true;
    if (s != NATS_OK) {
        resubscribe(f, natsStatus_GetText(s));
        return true;
    }
    *backoff = 100;
    err = msg_apply(f, m);
    natsMsg_Destroy(m);
    return !err;
}

static void *follower_main(void *arg)
{
    struct api_follower *f = arg;
    pthread_setname_np(pthread_self(), "kr-follow");
    unsigned backoff = 100;
    while (!atomic_load(&f->stop))
        if (!step(f, &backoff)) {
            if (f->o.stopped)
                f->o.stopped(f->o.arg);
            break;
        }
    disconnect(f);
    return NULL;
}

_Static_assert(KR_NATS_URLS_MAX == 16u, "the message below says 16");

/* The URL list, checked, into f->urls. */
static kr_err take_urls(struct api_follower *f, const char *list)
{
    if (!nkv_urls_ok(list))
        return KR_EINVAL;
    snprintf(f->urls, sizeof f->urls, "%s", list);
    return KR_OK;
}

kr_err api_follower_start(const struct api_follower_options *o, struct api_follower **out,
                          const char **why)
{
    static const char *none = "";
    *why = none;
    *out = NULL;
    const char *shard = o->shard ? o->shard : CLUSTER_SHARD_DEFAULT;
    if (!o->d || !o->nats || !o->nats[0]) {
        *why = "no NATS URL";
        return KR_EINVAL;
    }
    struct api_follower *f = calloc(1, sizeof *f);
    if (!f)
        return KR_ENOMEM;
    f->o = *o;
    f->rec = calloc(KR_REPL_CHUNK_RECORDS, sizeof *f->rec);
    f->rec_len = calloc(KR_REPL_CHUNK_RECORDS, sizeof *f->rec_len);
    kr_err err = f->rec && f->rec_len ? KR_OK : KR_ENOMEM;
    if (!err && (err = cluster_names(shard, f->stream, f->subject, KR_CLUSTER_NAME_MAX)))
        *why = "the shard name is not [a-z0-9-]{1,32}";
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    f->verify_threads = cores < 1 ? 1u : (unsigned)cores;
    if (!err && (err = take_urls(f, o->nats)))
        *why = "the NATS URLs are nats://HOST:PORT, comma-separated (at most 16)";
    if (err) {
        free(f->rec);
        free(f->rec_len);
        free(f);
        return err;
    }
    struct jrn_info info;
    jrn_get_info(o->d->j, &info);
    memcpy(f->journal_id, info.journal_id, sizeof f->journal_id);
    f->st.applied = info.size;
    pthread_mutex_init(&f->mu, NULL);
    if (pthread_create(&f->th, NULL, follower_main, f) != 0) {
        pthread_mutex_destroy(&f->mu);
        free(f->rec);
        free(f->rec_len);
        free(f);
        *why = "starting its thread";
        return KR_EIO;
    }
    *out = f;
    return KR_OK;
}

void api_follower_status(struct api_follower *f, struct api_follower_status *out)
{
    pthread_mutex_lock(&f->mu);
    *out = f->st;
    pthread_mutex_unlock(&f->mu);
    out->applied = jrn_size(f->o.d->j);
}

void api_follower_stop(struct api_follower *f)
{
    if (!f)
        return;
    atomic_store(&f->stop, true);
    pthread_join(f->th, NULL);
    pthread_mutex_destroy(&f->mu);
    free(f->rec);
    free(f->rec_len);
    free(f);
}
