/*
 * lease.c: the failover lease in the KIROKU_LEASE bucket (see lease.h).
 *
 * Design notes.
 * - Safety rests on the engine: every write is conditional on the revision
 *   the writer last saw (natskv.h), so two nodes can never both take or
 *   renew one revision. The local deadline (valid_until) only makes a holder
 *   that cannot reach JetStream give up before the engine could let another
 *   node take the lease: it is counted from when the last successful renewal
 *   was *sent*, and the server's TTL runs from when it stored it, later.
 * - A write whose acknowledgement is lost (a timeout while a JetStream node
 *   fails over) may still have happened: a renewal that then finds another
 *   revision reads the key, and a value naming this node and epoch is its
 *   own (nobody else writes those): it renews on that revision instead of
 *   giving the lease up.
 * - Two locks: wmu serialises the lease's writes (take, renew, release),
 *   which wait on the network; mu guards the state that lease_held and
 *   lease_holder read, and is never held across a network call or a
 *   callback. The thread gathers what to tell into a `news` and calls the
 *   callbacks after letting go of both.
 * - The watch is stopped only once the thread has left kvWatcher_Next: the
 *   thread waits at most KR_KV_WATCH_POLL_MS for an update and then looks
 *   at `stopping` (libnats 3.4.1 leaks the update a kvWatcher_Next holds
 *   when kvWatcher_Stop comes from another thread; kr_limits.h).
 * - A lapse leaves nothing to watch (an expired value is simply gone), so
 *   the observer keeps the deadline of the value it saw (from the value's
 *   creation time, at most the TTL ahead) and reads the key when it passes.
 */
#include "lease.h"

#include "natskv.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct lease {
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
    kvWatcher *w;
    char shard[KR_SHARD_NAME_MAX + 1];
    char node[KR_NODE_NAME_MAX + 1];
    char endpoint[KR_ENDPOINT_MAX + 1];
    uint32_t ttl_ms;
    struct lease_options o; /* callbacks and ctx; its strings are not kept */
    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;
    pthread_mutex_t wmu; /* the writes */
    pthread_mutex_t mu;  /* everything below */
    /* As the holder. */
    bool holding;
    uint64_t epoch, size, rev;
    uint64_t renew_due, valid_until; /* monotonic ms */
    /* As an observer. */
    bool seen, vacant;
    struct lease_holder obs;
    uint64_t obs_deadline; /* monotonic ms; 0 = none */
    /* What the changed callback was last told (the thread's only). */
    bool told, told_vacant;
    struct lease_holder told_h;
};

/* What the thread tells the owner after a step. */
struct news {
    bool lost;
    char why[160];
    bool changed;
    bool vacant;
    struct lease_holder h;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- The value ---- */

/* value into out (cap KR_LEASE_VALUE_MAX + 1), *len its length. */
static kr_err encode(const char *node, const char *endpoint, uint64_t epoch, uint64_t size,
                     char *out, size_t *len)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "node", node, "endpoint", endpoint, "epoch",
                          (json_int_t)epoch, "size", (json_int_t)size);
    if (!o)
        return KR_ENOMEM;
    size_t n = json_dumpb(o, out, KR_LEASE_VALUE_MAX, JSON_COMPACT);
    json_decref(o);
    if (n == 0 || n > KR_LEASE_VALUE_MAX)
        return KR_ETOOLARGE;
    out[n] = '\0';
    *len = n;
    return KR_OK;
}

static kr_err dec_str(json_t *o, const char *key, char *out, size_t cap, bool node)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return KR_ECORRUPT;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n >= cap || strlen(s) != n)
        return KR_ECORRUPT;
    if (n > 0 && !(node ? nkv_node_name_ok(s) : nkv_endpoint_ok(s, n)))
        return KR_ECORRUPT;
    memcpy(out, s, n + 1);
    return KR_OK;
}

static kr_err dec_u64(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return KR_ECORRUPT;
    *out = (uint64_t)json_integer_value(v);
    return KR_OK;
}

kr_err lease_decode(const void *v, size_t len, struct lease_holder *out)
{
    memset(out, 0, sizeof *out);
    if (!v || len == 0 || len > KR_LEASE_VALUE_MAX)
        return KR_ECORRUPT;
    json_t *o = json_loadb(v, len, JSON_REJECT_DUPLICATES, NULL);
    kr_err err = KR_ECORRUPT;
    if (json_is_object(o) && json_object_size(o) == 4 &&
        !dec_str(o, "node", out->node, sizeof out->node, true) &&
        !dec_str(o, "endpoint", out->endpoint, sizeof out->endpoint, false) &&
        !dec_u64(o, "epoch", &out->epoch) && !dec_u64(o, "size", &out->size))
        err = KR_OK;
    json_decref(o);
    if (err)
        memset(out, 0, sizeof *out);
    return err;
}

/* The holder an entry names; a value not of ours is held by "?". */
static void entry_holder(kvEntry *e, struct lease_holder *h, bool *vacant)
{
    uint64_t rev = kvEntry_Revision(e);
    *vacant = false;
    if (kvEntry_Operation(e) != kvOp_Put) {
        memset(h, 0, sizeof *h);
        *vacant = true;
        return;
    }
    int n = kvEntry_ValueLen(e);
    if (n <= 0 || lease_decode(kvEntry_Value(e), (size_t)n, h) != KR_OK) {
        memset(h, 0, sizeof *h);
        snprintf(h->node, sizeof h->node, "?");
    } else if (h->node[0] == '\0') {
        *vacant = true;
    }
    if (h->epoch == 0)
        h->epoch = rev; /* the take itself: its revision is its epoch */
    h->revision = rev;
}

/* ---- Observing ---- */

/* Records what entry e (NULL: the key is absent) says; with n (the
 * thread), fills *n when the owner should hear of it. Called with mu held. */
static void observe(struct lease *l, kvEntry *e, struct news *n)
{
    struct lease_holder h;
    bool vacant = true;
    uint64_t now = mono_ms();
    if (e)
        entry_holder(e, &h, &vacant);
    else
        memset(&h, 0, sizeof h);
    l->seen = true;
    l->vacant = vacant;
    l->obs = h;
    l->obs_deadline = 0;
    if (!vacant) {
        uint64_t created = (uint64_t)kvEntry_Created(e), wall = wall_ns();
        uint64_t age = wall > created ? (wall - created) / 1000000u : 0;
        l->obs_deadline = now + (age < l->ttl_ms ? l->ttl_ms - age : 0) + 1;
    }
    if (!n)
        return;
    bool moved = !l->told || vacant != l->told_vacant ||
                 (!vacant && (h.epoch != l->told_h.epoch || strcmp(h.node, l->told_h.node) != 0));
    if (moved) {
        l->told = true;
        l->told_vacant = vacant;
        l->told_h = h;
        n->changed = true;
        n->vacant = vacant;
        n->h = h;
    }
    /* Another node's take while this one believes it holds: lost at once. */
    if (l->holding && !vacant && h.revision > l->rev &&
        (h.epoch != l->epoch || strcmp(h.node, l->node) != 0)) {
        l->holding = false;
        n->lost = true;
        snprintf(n->why, sizeof n->why, "taken by node %s at epoch %llu", h.node,
                 (unsigned long long)h.epoch);
    }
}

/* Reads the key (the watch has nothing to say about an expiry). */
static void look(struct lease *l, struct news *n)
{
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, l->kv, l->shard);
    pthread_mutex_lock(&l->mu);
    if (s == NATS_OK)
        observe(l, e, n);
    else if (s == NATS_NOT_FOUND)
        observe(l, NULL, n);
    else /* unreachable: look again soon */
        l->obs_deadline = mono_ms() + l->ttl_ms / 10;
    pthread_mutex_unlock(&l->mu);
    kvEntry_Destroy(e);
}

/* ---- Holding ---- */

/* Writes this node's value on revision expect; *rev the new one. */
static kr_err write_value(struct lease *l, bool vacate, uint64_t epoch, uint64_t expect,
                          uint64_t *rev)
{
    char v[KR_LEASE_VALUE_MAX + 1];
    size_t len;
    kr_err err = vacate ? encode("", "", 0, 0, v, &len)
                        : encode(l->node, l->endpoint, epoch, l->size, v, &len);
    if (err)
        return err;
    return nkv_write(l->js, LEASE_BUCKET, l->shard, v, len, expect, KR_KV_WAIT_MS, rev);
}

static void lose(struct lease *l, struct news *n, const char *why)
{
    l->holding = false;
    n->lost = true;
    snprintf(n->why, sizeof n->why, "%s", why);
}

/* Whether the key's newest value is this holder's own (this node, this
 * epoch): a write of ours whose acknowledgement was lost moved the revision.
 * *rev gets that value's revision. */
static bool own_value(struct lease *l, uint64_t epoch, uint64_t *rev)
{
    kvEntry *e = NULL;
    struct lease_holder h;
    bool vacant = true, own = false;
    if (kvStore_Get(&e, l->kv, l->shard) == NATS_OK) {
        entry_holder(e, &h, &vacant);
        own = !vacant && h.epoch == epoch && strcmp(h.node, l->node) == 0;
        *rev = h.revision;
    }
    kvEntry_Destroy(e);
    return own;
}

/* One renewal, if due. */
static void renew(struct lease *l, struct news *n)
{
    pthread_mutex_lock(&l->wmu);
    pthread_mutex_lock(&l->mu);
    uint64_t now = mono_ms();
    bool due = l->holding && now >= l->renew_due;
    uint64_t epoch = l->epoch, expect = l->rev;
    pthread_mutex_unlock(&l->mu);
    if (!due) {
        pthread_mutex_unlock(&l->wmu);
        return;
    }
    bool fit = !l->o.healthy || l->o.healthy(l->o.ctx);
    uint64_t sent = mono_ms(), rev = 0, own = 0;
    kr_err err = fit ? write_value(l, false, epoch, expect, &rev) : KR_OK;
    bool adopt = err == KR_ECONFLICT && own_value(l, epoch, &own);
    pthread_mutex_lock(&l->mu);
    if (!l->holding || l->rev != expect) {
        /* lost or released meanwhile */
    } else if (fit && err == KR_OK) {
        l->rev = rev;
        l->renew_due = sent + l->ttl_ms / 3;
        l->valid_until = sent + l->ttl_ms - l->ttl_ms / 10;
    } else if (fit && adopt) {
        l->rev = own; /* renew on it at once: its time is unknown */
        l->renew_due = sent;
    } else if (fit && err == KR_ECONFLICT) {
        lose(l, n, "the lease moved on (taken by another node, or expired)");
    } else {
        l->renew_due = sent + l->ttl_ms / 20; /* unfit, or unreachable: again soon */
    }
    if (l->holding && mono_ms() >= l->valid_until)
        lose(l, n, "not renewed within the TTL");
    pthread_mutex_unlock(&l->mu);
    pthread_mutex_unlock(&l->wmu);
}

static void tell(struct lease *l, struct news *n)
{
    if (n->changed && l->o.changed)
        l->o.changed(l->o.ctx, n->vacant ? NULL : &n->h);
    if (n->lost && l->o.lost)
        l->o.lost(l->o.ctx, n->why);
    memset(n, 0, sizeof *n);
}

/* How long the thread may wait for the watch before its next duty. */
static int64_t wait_ms(struct lease *l)
{
    uint64_t now = mono_ms(), next = now + l->ttl_ms / 3;
    pthread_mutex_lock(&l->mu);
    if (l->holding) {
        if (l->renew_due < next)
            next = l->renew_due;
        if (l->valid_until < next)
            next = l->valid_until;
    }
    if (l->obs_deadline && l->obs_deadline < next)
        next = l->obs_deadline;
    pthread_mutex_unlock(&l->mu);
    return next > now ? (int64_t)(next - now) : 1;
}

static void *lease_main(void *arg)
{
    struct lease *l = arg;
    struct news n;
    memset(&n, 0, sizeof n);
    while (!atomic_load(&l->stopping)) {
        renew(l, &n);
        pthread_mutex_lock(&l->mu);
        uint64_t now = mono_ms();
        if (l->holding && now >= l->valid_until)
            lose(l, &n, "not renewed within the TTL");
        bool lapse = l->obs_deadline && now >= l->obs_deadline;
        pthread_mutex_unlock(&l->mu);
        if (lapse)
            look(l, &n);
        tell(l, &n);
        kvEntry *e = NULL;
        int64_t wait = wait_ms(l);
        natsStatus s =
            kvWatcher_Next(&e, l->w, wait < KR_KV_WATCH_POLL_MS ? wait : KR_KV_WATCH_POLL_MS);
        if (s == NATS_OK && e) {
            pthread_mutex_lock(&l->mu);
            observe(l, e, &n);
            pthread_mutex_unlock(&l->mu);
            tell(l, &n);
        } else if (s == NATS_OK) {
            /* The end of the initial values: an absent key is vacant. */
            pthread_mutex_lock(&l->mu);
            if (!l->seen)
                observe(l, NULL, &n);
            pthread_mutex_unlock(&l->mu);
            tell(l, &n);
        } else if (s == NATS_ILLEGAL_STATE) {
            break; /* stopped */
        } else if (s != NATS_TIMEOUT) {
            nkv_pause(); /* the connection is down: no busy loop */
        }
        kvEntry_Destroy(e);
    }
    return NULL;
}

/* ---- The public face ---- */

static kr_err check_options(const struct lease_options *o)
{
    if (!o || !nkv_shard_name_ok(o->shard) || !nkv_node_name_ok(o->node))
        return KR_EINVAL;
    if (o->endpoint && !nkv_endpoint_ok(o->endpoint, strlen(o->endpoint)))
        return KR_EINVAL;
    if (o->ttl_ms && (o->ttl_ms < KR_LEASE_TTL_MIN_MS || o->ttl_ms > KR_LEASE_TTL_MAX_MS))
        return KR_EINVAL;
    return KR_OK;
}

static kr_err open_nats(struct lease *l, const struct lease_options *o)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = KR_KV_WAIT_MS;
    natsStatus s = natsConnection_JetStream(&l->js, l->nc, &jo);
    if (s != NATS_OK)
        return nkv_err(s);
    int64_t ttl = o->ttl_ms ? o->ttl_ms : KR_LEASE_TTL_DEFAULT_MS, have = 0;
    kr_err err = nkv_bucket(l->js, LEASE_BUCKET, 1, ttl, o->replicas, &l->kv, &have);
    if (err)
        return err;
    if (have < KR_LEASE_TTL_MIN_MS || have > KR_LEASE_TTL_MAX_MS)
        return KR_EINVAL; /* a bucket made by hand without a usable TTL */
    l->ttl_ms = (uint32_t)have;
    s = kvStore_Watch(&l->w, l->kv, l->shard, NULL);
    return nkv_err(s);
}

kr_err lease_open(natsConnection *nc, const struct lease_options *o, struct lease **out)
{
    *out = NULL;
    kr_err err = check_options(o);
    if (err)
        return err;
    struct lease *l = calloc(1, sizeof *l);
    if (!l)
        return KR_ENOMEM;
    l->nc = nc;
    l->o = *o;
    l->o.shard = l->o.node = l->o.endpoint = NULL;
    snprintf(l->shard, sizeof l->shard, "%s", o->shard);
    snprintf(l->node, sizeof l->node, "%s", o->node);
    snprintf(l->endpoint, sizeof l->endpoint, "%s", o->endpoint ? o->endpoint : "");
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->wmu, NULL);
    atomic_init(&l->stopping, false);
    if ((err = open_nats(l, o))) {
        lease_close(l);
        return err;
    }
    if (pthread_create(&l->thread, NULL, lease_main, l) != 0) {
        lease_close(l);
        return KR_ENOMEM;
    }
    l->thread_started = true;
    *out = l;
    return KR_OK;
}

/* The revision a take must be conditional on: 0 for an absent key, the
 * value's for a vacant one or one naming this node. KR_EBUSY if another
 * node holds it (then l->obs names it). */
static kr_err take_from(struct lease *l, uint64_t *expect)
{
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, l->kv, l->shard);
    if (s == NATS_NOT_FOUND) {
        *expect = 0;
        return KR_OK;
    }
    if (s != NATS_OK)
        return nkv_err(s);
    struct lease_holder h;
    bool vacant;
    entry_holder(e, &h, &vacant);
    pthread_mutex_lock(&l->mu);
    observe(l, e, NULL);
    pthread_mutex_unlock(&l->mu);
    kvEntry_Destroy(e);
    if (!vacant && strcmp(h.node, l->node) != 0)
        return KR_EBUSY;
    *expect = h.revision;
    return KR_OK;
}

static kr_err acquire_locked(struct lease *l, uint64_t size, uint64_t *epoch)
{
    uint64_t expect = 0, rev1 = 0, rev2 = 0;
    kr_err err = take_from(l, &expect);
    if (err)
        return err;
    uint64_t sent = mono_ms();
    l->size = size;
    if ((err = write_value(l, false, 0, expect, &rev1)))
        return err == KR_ECONFLICT ? KR_EBUSY : err;
    /* Record the epoch in the value; if this write is lost, readers take the
     * revision of a value with epoch 0 as its epoch, and renewals write it. */
    err = write_value(l, false, rev1, rev1, &rev2);
    if (err == KR_ECONFLICT)
        return KR_EBUSY;
    pthread_mutex_lock(&l->mu);
    l->holding = true;
    l->epoch = rev1;
    l->rev = err ? rev1 : rev2;
    l->renew_due = err ? sent : sent + l->ttl_ms / 3;
    l->valid_until = sent + l->ttl_ms - l->ttl_ms / 10;
    pthread_mutex_unlock(&l->mu);
    if (epoch)
        *epoch = rev1;
    return KR_OK;
}

kr_err lease_acquire(struct lease *l, uint64_t size, uint64_t *epoch)
{
    pthread_mutex_lock(&l->wmu);
    pthread_mutex_lock(&l->mu);
    bool holding = l->holding;
    pthread_mutex_unlock(&l->mu);
    kr_err err = holding ? KR_EEXIST : acquire_locked(l, size, epoch);
    pthread_mutex_unlock(&l->wmu);
    return err;
}

bool lease_held(struct lease *l, uint64_t *epoch)
{
    pthread_mutex_lock(&l->mu);
    bool held = l->holding && mono_ms() < l->valid_until;
    if (held && epoch)
        *epoch = l->epoch;
    pthread_mutex_unlock(&l->mu);
    return held;
}

kr_err lease_holder(struct lease *l, struct lease_holder *out)
{
    pthread_mutex_lock(&l->mu);
    kr_err err = l->seen && !l->vacant ? KR_OK : KR_ENOTFOUND;
    if (!err)
        *out = l->obs;
    pthread_mutex_unlock(&l->mu);
    if (err)
        memset(out, 0, sizeof *out);
    return err;
}

void lease_endpoint(void *lease, char *out, size_t cap)
{
    struct lease_holder h;
    if (cap == 0)
        return;
    out[0] = '\0';
    if (lease_holder(lease, &h) == KR_OK)
        snprintf(out, cap, "%s", h.endpoint);
}

kr_err lease_release(struct lease *l)
{
    pthread_mutex_lock(&l->wmu);
    pthread_mutex_lock(&l->mu);
    bool holding = l->holding;
    uint64_t expect = l->rev;
    l->holding = false;
    pthread_mutex_unlock(&l->mu);
    kr_err err = holding ? write_value(l, true, 0, expect, NULL) : KR_OK;
    pthread_mutex_unlock(&l->wmu);
    return err == KR_ECONFLICT ? KR_OK : err;
}

kr_err lease_peek(jsCtx *js, const char *shard, struct lease_holder *out)
{
    memset(out, 0, sizeof *out);
    if (!nkv_shard_name_ok(shard))
        return KR_EINVAL;
    kvStore *kv = NULL;
    kvEntry *e = NULL;
    kr_err err = nkv_err(js_KeyValue(&kv, js, LEASE_BUCKET));
    if (!err)
        err = nkv_err(kvStore_Get(&e, kv, shard));
    bool vacant = true;
    if (!err)
        entry_holder(e, out, &vacant);
    kvEntry_Destroy(e);
    kvStore_Destroy(kv);
    if (!err && vacant)
        err = KR_ENOTFOUND;
    if (err)
        memset(out, 0, sizeof *out);
    return err;
}

uint32_t lease_ttl_ms(const struct lease *l)
{
    return l->ttl_ms;
}

void lease_close(struct lease *l)
{
    if (!l)
        return;
    atomic_store(&l->stopping, true);
    if (l->thread_started) /* it sees stopping within KR_KV_WATCH_POLL_MS */
        pthread_join(l->thread, NULL);
    kvWatcher_Destroy(l->w); /* no kvWatcher_Next runs: kr_limits.h says why */
    kvStore_Destroy(l->kv);
    jsCtx_Destroy(l->js);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->wmu);
    free(l);
}
