/*
 * shardmap.c: the tenant -> shard map in KIROKU_SHARDS (see shardmap.h).
 *
 * Design notes.
 * - The cache is two open-addressing tables (tenant ids; tenant codes) whose
 *   slots hold an index into the shard list, plus the list itself (at most
 *   KR_SHARDS_MAX, with each shard's tenant count for placement). A removed
 *   key keeps its slot with the index -1, so probing needs no tombstones.
 *   Tables double up to KR_SHARDMAP_TENANTS_MAX; past that a new key is not
 *   cached and counted as ignored (lookups of it fail: the request is then
 *   served, or refused, by the shard it reached).
 * - The watcher (kvStore_WatchAll) delivers every key's newest value first,
 *   then an end marker: kr_shardmap_open waits for the marker, so a node
 *   never redirects from a half-loaded map. Later writes arrive in revision
 *   order; `seen` is the newest revision applied, which kr_shardmap_sync
 *   compares with the bucket's last sequence.
 * - Writes made by this node go into the cache at once as well, so a
 *   placement is visible to its own node before the watch echoes it.
 * - The watch is stopped only once the thread has left kvWatcher_Next (it
 *   waits at most KR_KV_WATCH_POLL_MS, then looks at `stopping`): libnats
 *   3.4.1 leaks the update a kvWatcher_Next holds when kvWatcher_Stop comes
 *   from another thread (kr_limits.h).
 */
#include "shardmap.h"

#include "accounts.h"
#include "domain.h"
#include "natskv.h"
#include "protocol.h"
#include "schema.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct shard {
    char name[KR_SHARD_NAME_MAX + 1];
    char endpoint[KR_ENDPOINT_MAX + 1]; /* "" until announced */
    uint8_t tag[4];
    size_t tenants;
};

struct tslot {
    uint64_t tenant; /* 0 = empty */
    int16_t shard;   /* -1 = removed */
};

struct cslot {
    char code[KR_SHARDMAP_CODE_MAX + 1]; /* "" = empty */
    int16_t shard;
};

struct kr_shardmap {
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
    kvWatcher *w;
    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;
    pthread_rwlock_t lock;
    pthread_mutex_t mu; /* loaded, seen: with cv */
    pthread_cond_t cv;
    bool loaded;
    uint64_t seen;
    /* under lock */
    struct shard shards[KR_SHARDS_MAX];
    size_t nshards;
    struct tslot *t;
    size_t tcap, tn;
    struct cslot *c;
    size_t ccap, cn;
    uint64_t ignored;
};

/* ---- The cache ---- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int shard_index(struct kr_shardmap *m, const char *name, bool add)
{
    for (size_t i = 0; i < m->nshards; i++)
        if (strcmp(m->shards[i].name, name) == 0)
            return (int)i;
    if (!add || m->nshards == KR_SHARDS_MAX)
        return -1;
    struct shard *s = &m->shards[m->nshards];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    dom_token_tag(name, s->tag);
    return (int)m->nshards++;
}

static struct tslot *t_find(struct tslot *t, size_t cap, uint64_t tenant)
{
    for (size_t i = mix(tenant) & (cap - 1);; i = (i + 1) & (cap - 1))
        if (t[i].tenant == tenant || t[i].tenant == 0)
            return &t[i];
}

static struct cslot *c_find(struct cslot *c, size_t cap, const char *code)
{
    for (size_t i = str_hash(code) & (cap - 1);; i = (i + 1) & (cap - 1))
        if (c[i].code[0] == '\0' || strcmp(c[i].code, code) == 0)
            return &c[i];
}

/* Doubles a table when it is half full; false if it may not grow. */
static bool t_room(struct kr_shardmap *m)
{
    if (m->t && (m->tn + 1) * 2 <= m->tcap)
        return true;
    size_t cap = m->tcap ? m->tcap * 2 : 1024;
    if (cap / 2 > KR_SHARDMAP_TENANTS_MAX)
        return false;
    struct tslot *t = calloc(cap, sizeof *t);
    if (!t)
        return false;
    for (size_t i = 0; m->t && i < m->tcap; i++)
        if (m->t[i].tenant)
            *t_find(t, cap, m->t[i].tenant) = m->t[i];
    free(m->t);
    m->t = t;
    m->tcap = cap;
    return true;
}

static bool c_room(struct kr_shardmap *m)
{
    if (m->c && (m->cn + 1) * 2 <= m->ccap)
        return true;
    size_t cap = m->ccap ? m->ccap * 2 : 1024;
    if (cap / 2 > KR_SHARDMAP_TENANTS_MAX)
        return false;
    struct cslot *c = calloc(cap, sizeof *c);
    if (!c)
        return false;
    for (size_t i = 0; m->c && i < m->ccap; i++)
        if (m->c[i].code[0])
            *c_find(c, cap, m->c[i].code) = m->c[i];
    free(m->c);
    m->c = c;
    m->ccap = cap;
    return true;
}

/* Sets (shard >= 0) or removes (shard -1) tenant's entry. Under lock. */
static void t_set(struct kr_shardmap *m, uint64_t tenant, int shard)
{
    struct tslot *s = m->t ? t_find(m->t, m->tcap, tenant) : NULL;
    if (!s || s->tenant == 0) {
        if (shard < 0)
            return;
        if (!t_room(m)) {
            m->ignored++;
            return;
        }
        s = t_find(m->t, m->tcap, tenant);
        s->tenant = tenant;
        s->shard = -1;
        m->tn++;
    }
    if (s->shard >= 0)
        m->shards[s->shard].tenants--;
    s->shard = (int16_t)shard;
    if (shard >= 0)
        m->shards[shard].tenants++;
}

static void c_set(struct kr_shardmap *m, const char *code, int shard)
{
    struct cslot *s = m->c ? c_find(m->c, m->ccap, code) : NULL;
    if (!s || s->code[0] == '\0') {
        if (shard < 0)
            return;
        if (!c_room(m)) {
            m->ignored++;
            return;
        }
        s = c_find(m->c, m->ccap, code);
        snprintf(s->code, sizeof s->code, "%s", code);
        m->cn++;
    }
    s->shard = (int16_t)shard;
}

/* ---- Keys ---- */

static bool parse_tenant(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 20 || s[0] == '0')
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool code_ok(const char *s, size_t n)
{
    if (n < 4 || n > KR_SHARDMAP_CODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* A value as a NUL-ended string in out (cap bytes); false if it does not
 * fit or holds a NUL. */
static bool value_str(kvEntry *e, char *out, size_t cap)
{
    int n = kvEntry_ValueLen(e);
    if (n <= 0 || (size_t)n >= cap)
        return false;
    memcpy(out, kvEntry_Value(e), (size_t)n);
    out[n] = '\0';
    return strlen(out) == (size_t)n;
}

/* Applies one key's newest value (put) or removal. Under lock. */
static void apply(struct kr_shardmap *m, const char *key, kvEntry *e)
{
    bool put = kvEntry_Operation(e) == kvOp_Put;
    char v[KR_ENDPOINT_MAX + 1];
    uint64_t tenant;
    if (put && !value_str(e, v, sizeof v)) {
        m->ignored++;
        return;
    }
    if (strncmp(key, "shard.", 6) == 0 && nkv_shard_name_ok(key + 6)) {
        int i = shard_index(m, key + 6, put);
        if (i < 0) {
            m->ignored += put;
            return;
        }
        if (put && !nkv_endpoint_ok(v, strlen(v))) {
            m->ignored++;
            return;
        }
        snprintf(m->shards[i].endpoint, sizeof m->shards[i].endpoint, "%s", put ? v : "");
        return;
    }
    bool is_tenant = strncmp(key, "tenant.", 7) == 0 && parse_tenant(key + 7, &tenant);
    bool is_code = strncmp(key, "code.", 5) == 0 && code_ok(key + 5, strlen(key + 5));
    if (!is_tenant && !is_code) {
        m->ignored++;
        return;
    }
    int i = -1;
    if (put && (!nkv_shard_name_ok(v) || (i = shard_index(m, v, true)) < 0)) {
        m->ignored++;
        return;
    }
    if (is_tenant)
        t_set(m, tenant, i);
    else
        c_set(m, key + 5, i);
}

static void *watch_main(void *arg)
{
    struct kr_shardmap *m = arg;
    while (!atomic_load(&m->stopping)) {
        kvEntry *e = NULL;
        natsStatus s = kvWatcher_Next(&e, m->w, KR_KV_WATCH_POLL_MS);
        if (s == NATS_ILLEGAL_STATE)
            break;
        if (s != NATS_OK) {
            if (s != NATS_TIMEOUT)
                nkv_pause(); /* the connection is down: no busy loop */
            continue;
        }
        if (e) {
            pthread_rwlock_wrlock(&m->lock);
            apply(m, kvEntry_Key(e), e);
            pthread_rwlock_unlock(&m->lock);
        }
        pthread_mutex_lock(&m->mu);
        if (e && kvEntry_Revision(e) > m->seen)
            m->seen = kvEntry_Revision(e);
        if (!e)
            m->loaded = true;
        pthread_cond_broadcast(&m->cv);
        pthread_mutex_unlock(&m->mu);
        kvEntry_Destroy(e);
    }
    return NULL;
}

/* ---- The public face ---- */

static void deadline_in(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits until pred holds (under mu) or ms pass. */
static bool wait_until(struct kr_shardmap *m, bool (*pred)(struct kr_shardmap *, uint64_t),
                       uint64_t arg, unsigned ms)
{
    struct timespec ts;
    deadline_in(&ts, ms);
    pthread_mutex_lock(&m->mu);
    int rc = 0;
    while (!pred(m, arg) && rc == 0)
        rc = pthread_cond_timedwait(&m->cv, &m->mu, &ts);
    bool ok = pred(m, arg);
    pthread_mutex_unlock(&m->mu);
    return ok;
}

static bool is_loaded(struct kr_shardmap *m, uint64_t unused)
{
    (void)unused;
    return m->loaded;
}

static bool has_seen(struct kr_shardmap *m, uint64_t rev)
{
    return m->loaded && m->seen >= rev;
}

kr_err kr_shardmap_open(natsConnection *nc, int replicas, struct kr_shardmap **out)
{
    *out = NULL;
    struct kr_shardmap *m = calloc(1, sizeof *m);
    if (!m)
        return KR_ENOMEM;
    m->nc = nc;
    pthread_rwlock_init(&m->lock, NULL);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    atomic_init(&m->stopping, false);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = KR_KV_WAIT_MS;
    kr_err err = nkv_err(natsConnection_JetStream(&m->js, nc, &jo));
    if (!err)
        err = nkv_bucket(m->js, SHARDMAP_BUCKET, 5, 0, replicas, &m->kv, NULL);
    if (!err)
        err = nkv_err(kvStore_WatchAll(&m->w, m->kv, NULL));
    if (!err && pthread_create(&m->thread, NULL, watch_main, m) != 0)
        err = KR_ENOMEM;
    m->thread_started = !err;
    if (!err && !wait_until(m, is_loaded, 0, KR_SHARDMAP_LOAD_MS))
        err = KR_EIO;
    if (err) {
        kr_shardmap_close(m);
        return err;
    }
    *out = m;
    return KR_OK;
}

void kr_shardmap_close(struct kr_shardmap *m)
{
    if (!m)
        return;
    atomic_store(&m->stopping, true);
    if (m->thread_started) /* it sees stopping within KR_KV_WATCH_POLL_MS */
        pthread_join(m->thread, NULL);
    kvWatcher_Destroy(m->w); /* no kvWatcher_Next runs: kr_limits.h says why */
    kvStore_Destroy(m->kv);
    jsCtx_Destroy(m->js);
    free(m->t);
    free(m->c);
    pthread_rwlock_destroy(&m->lock);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
}

kr_err kr_shardmap_announce(struct kr_shardmap *m, const char *shard, const char *endpoint)
{
    if (!nkv_shard_name_ok(shard) || !nkv_endpoint_ok(endpoint, strlen(endpoint)))
        return KR_EINVAL;
    char key[KR_SHARD_NAME_MAX + 8];
    snprintf(key, sizeof key, "shard.%s", shard);
    kr_err err = nkv_err(kvStore_PutString(NULL, m->kv, key, endpoint));
    if (err)
        return err;
    pthread_rwlock_wrlock(&m->lock);
    int i = shard_index(m, shard, true);
    if (i >= 0)
        snprintf(m->shards[i].endpoint, sizeof m->shards[i].endpoint, "%s", endpoint);
    pthread_rwlock_unlock(&m->lock);
    return i < 0 ? KR_ETOOLARGE : KR_OK;
}

static kr_err name_of(struct kr_shardmap *m, int i, char shard[KR_SHARD_NAME_MAX + 1])
{
    if (i < 0)
        return KR_ENOTFOUND;
    memcpy(shard, m->shards[i].name, KR_SHARD_NAME_MAX + 1);
    return KR_OK;
}

kr_err kr_shardmap_get(struct kr_shardmap *m, uint64_t tenant, char shard[KR_SHARD_NAME_MAX + 1])
{
    shard[0] = '\0';
    if (tenant == 0)
        return KR_ENOTFOUND;
    pthread_rwlock_rdlock(&m->lock);
    struct tslot *s = m->t ? t_find(m->t, m->tcap, tenant) : NULL;
    kr_err err = name_of(m, s && s->tenant ? s->shard : -1, shard);
    pthread_rwlock_unlock(&m->lock);
    return err;
}

kr_err kr_shardmap_get_code(struct kr_shardmap *m, const char *code, size_t len,
                            char shard[KR_SHARD_NAME_MAX + 1])
{
    shard[0] = '\0';
    if (!code_ok(code, len))
        return KR_ENOTFOUND;
    char c[KR_SHARDMAP_CODE_MAX + 1];
    memcpy(c, code, len);
    c[len] = '\0';
    pthread_rwlock_rdlock(&m->lock);
    struct cslot *s = m->c ? c_find(m->c, m->ccap, c) : NULL;
    kr_err err = name_of(m, s && s->code[0] ? s->shard : -1, shard);
    pthread_rwlock_unlock(&m->lock);
    return err;
}

kr_err kr_shardmap_endpoint(struct kr_shardmap *m, const char *shard,
                            char endpoint[KR_ENDPOINT_MAX + 1])
{
    endpoint[0] = '\0';
    pthread_rwlock_rdlock(&m->lock);
    int i = shard_index(m, shard, false);
    kr_err err = i >= 0 && m->shards[i].endpoint[0] ? KR_OK : KR_ENOTFOUND;
    if (!err)
        memcpy(endpoint, m->shards[i].endpoint, KR_ENDPOINT_MAX + 1);
    pthread_rwlock_unlock(&m->lock);
    return err;
}

kr_err kr_shardmap_by_tag(struct kr_shardmap *m, const uint8_t tag[4],
                          char shard[KR_SHARD_NAME_MAX + 1])
{
    shard[0] = '\0';
    pthread_rwlock_rdlock(&m->lock);
    int found = -1;
    for (size_t i = 0; i < m->nshards && found < 0; i++)
        if (m->shards[i].endpoint[0] && memcmp(m->shards[i].tag, tag, 4) == 0)
            found = (int)i;
    kr_err err = name_of(m, found, shard);
    pthread_rwlock_unlock(&m->lock);
    return err;
}

/* Writes key = shard if the key holds nothing; KR_EEXIST (with *held, if
 * not NULL, the shard it names) if it holds something. */
static kr_err write_once(struct kr_shardmap *m, const char *key, const char *shard,
                         char held[KR_SHARD_NAME_MAX + 1])
{
    kr_err err =
        nkv_write(m->js, SHARDMAP_BUCKET, key, shard, strlen(shard), 0, KR_KV_WAIT_MS, NULL);
    if (err != KR_ECONFLICT && err != KR_EIO)
        return err;
    /* Taken, or an unanswered write that may have happened: read it. */
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, m->kv, key);
    char v[KR_SHARD_NAME_MAX + 1] = "";
    if (s == NATS_OK && !value_str(e, v, sizeof v))
        s = NATS_ERR;
    kvEntry_Destroy(e);
    if (s != NATS_OK)
        return err;
    if (held)
        memcpy(held, v, sizeof v);
    return strcmp(v, shard) == 0 && err == KR_EIO ? KR_OK : KR_EEXIST;
}

kr_err kr_shardmap_assign(struct kr_shardmap *m, uint64_t tenant, const char *code,
                          const char *shard)
{
    char key[KR_SHARDMAP_CODE_MAX + 8], held[KR_SHARD_NAME_MAX + 1];
    if (tenant == 0 || !nkv_shard_name_ok(shard) || (code && !code_ok(code, strlen(code))) ||
        strcmp(shard, KR_PLATFORM_SHARD) == 0) /* it holds no tenant */
        return KR_EINVAL;
    /* The code first: a code another tenant holds leaves nothing written. A
     * tenant placed before leaves its new code naming the tenant's shard,
     * where the code is unknown (a login with it fails there as anywhere). */
    kr_err err = KR_OK;
    if (code) {
        snprintf(key, sizeof key, "code.%s", code);
        if ((err = write_once(m, key, shard, held)))
            return err;
    }
    snprintf(key, sizeof key, "tenant.%llu", (unsigned long long)tenant);
    if ((err = write_once(m, key, shard, held)))
        return err;
    pthread_rwlock_wrlock(&m->lock);
    int i = shard_index(m, shard, true);
    if (i >= 0) {
        t_set(m, tenant, i);
        if (code)
            c_set(m, code, i);
    }
    pthread_rwlock_unlock(&m->lock);
    return KR_OK;
}

/* The policy's choice, under lock. */
static int choose(struct kr_shardmap *m)
{
    int best = -1;
    for (size_t i = 0; i < m->nshards; i++) {
        const struct shard *s = &m->shards[i];
        if (!s->endpoint[0] || strcmp(s->name, KR_PLATFORM_SHARD) == 0)
            continue;
        if (best < 0 || s->tenants < m->shards[best].tenants ||
            (s->tenants == m->shards[best].tenants && strcmp(s->name, m->shards[best].name) < 0))
            best = (int)i;
    }
    return best;
}

kr_err kr_shardmap_place(struct kr_shardmap *m, uint64_t tenant, const char *code,
                         enum kr_shardmap_policy policy, char shard[KR_SHARD_NAME_MAX + 1])
{
    shard[0] = '\0';
    if (policy != KR_PLACE_FEWEST || tenant == 0)
        return KR_EINVAL;
    if (kr_shardmap_get(m, tenant, shard) == KR_OK)
        return KR_EEXIST;
    pthread_rwlock_rdlock(&m->lock);
    kr_err err = name_of(m, choose(m), shard);
    pthread_rwlock_unlock(&m->lock);
    if (err)
        return err;
    char chosen[KR_SHARD_NAME_MAX + 1];
    memcpy(chosen, shard, sizeof chosen);
    err = kr_shardmap_assign(m, tenant, code, chosen);
    if (err == KR_EEXIST && kr_shardmap_sync(m) == KR_OK &&
        kr_shardmap_get(m, tenant, shard) != KR_OK)
        shard[0] = '\0';
    return err;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct kr_shardmap_shard *)a)->name,
                  ((const struct kr_shardmap_shard *)b)->name);
}

void kr_shardmap_shards(struct kr_shardmap *m, struct kr_shardmap_shard *out, size_t cap, size_t *n)
{
    struct kr_shardmap_shard all[KR_SHARDS_MAX];
    pthread_rwlock_rdlock(&m->lock);
    size_t k = m->nshards;
    for (size_t i = 0; i < k; i++) {
        memcpy(all[i].name, m->shards[i].name, sizeof all[i].name);
        memcpy(all[i].endpoint, m->shards[i].endpoint, sizeof all[i].endpoint);
        all[i].tenants = m->shards[i].tenants;
    }
    pthread_rwlock_unlock(&m->lock);
    qsort(all, k, sizeof all[0], by_name);
    memcpy(out, all, (k < cap ? k : cap) * sizeof all[0]);
    *n = k;
}

void kr_shardmap_stats(struct kr_shardmap *m, struct kr_shardmap_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&m->lock);
    for (size_t i = 0; i < m->nshards; i++)
        out->shards += m->shards[i].endpoint[0] != '\0';
    for (size_t i = 0; i < m->tcap; i++)
        out->tenants += m->t[i].tenant && m->t[i].shard >= 0;
    for (size_t i = 0; i < m->ccap; i++)
        out->codes += m->c[i].code[0] && m->c[i].shard >= 0;
    out->ignored = m->ignored;
    pthread_rwlock_unlock(&m->lock);
}

kr_err kr_shardmap_sync(struct kr_shardmap *m)
{
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, m->js, "KV_" SHARDMAP_BUCKET, NULL, NULL);
    if (s != NATS_OK)
        return nkv_err(s);
    uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    return wait_until(m, has_seen, last, KR_KV_WAIT_MS * 10) ? KR_OK : KR_EIO;
}

/* Where signup.apply goes: the policy's choice, unless this shard is within
 * the slack of it. Under lock. */
static int signup_shard(struct kr_shardmap *m, const char *self, uint64_t slack)
{
    int best = choose(m), me = shard_index(m, self, false);
    if (best < 0 || best == me)
        return -1;
    if (strcmp(self, KR_PLATFORM_SHARD) == 0)
        return best; /* it holds no tenant */
    if (me >= 0 && m->shards[me].endpoint[0] &&
        m->shards[me].tenants <= m->shards[best].tenants + slack)
        return -1;
    return best;
}

bool kr_shardmap_elsewhere(const struct kr_shardmap_router *rt, const struct api_route *r,
                           char endpoint[KR_ENDPOINT_MAX + 1])
{
    struct kr_shardmap *m = rt->m;
    char shard[KR_SHARD_NAME_MAX + 1];
    kr_err err = KR_ENOTFOUND;
    endpoint[0] = '\0';
    if (r->token && r->token[0] == DOM_TOKEN_TAGGED) {
        err = kr_shardmap_by_tag(m, r->token + 1, shard);
    } else if (r->token) {
        return false;
    } else if (r->code) {
        err = kr_shardmap_get_code(m, r->code, r->code_len, shard);
    } else if (r->application && r->application[0] == DOM_TOKEN_TAGGED) {
        err = kr_shardmap_by_tag(m, r->application + 1, shard);
    } else if (r->op == KR_OP_SIGNUP_APPLY) {
        pthread_rwlock_rdlock(&m->lock);
        err = name_of(m, signup_shard(m, rt->self, rt->place_slack), shard);
        pthread_rwlock_unlock(&m->lock);
    }
    if (err || strcmp(shard, rt->self) == 0)
        return false;
    return kr_shardmap_endpoint(m, shard, endpoint) == KR_OK;
}

bool kr_shardmap_route(void *router, const struct api_route *r, char endpoint[KR_ENDPOINT_MAX + 1])
{
    return kr_shardmap_elsewhere(router, r, endpoint);
}

/* Tenants read per read transaction by kr_shardmap_publish (the network
 * writes happen with no transaction open). */
#define PUBLISH_PAGE 256u

struct pending {
    uint64_t tenant;
    char code[KR_SHARDMAP_CODE_MAX + 1];
    bool need_tenant, need_code;
};

/* Reads the next page of tenants after *after that the map lacks. */
static kr_err publish_page(struct kr_shardmap *m, struct kr_domain *d, const char *self,
                           uint64_t *after, struct pending *p, size_t *n, bool *done,
                           size_t *conflicts)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    kr_err err = KR_OK;
    char have[KR_SHARD_NAME_MAX + 1];
    *n = 0;
    *done = false;
    for (size_t i = 0; i < PUBLISH_PAGE && !err; i++) {
        struct va_tenant t;
        uint64_t id;
        if ((err = va_tenant_next(&d->views, txn, *after, &id, &t))) {
            *done = err == KR_ENOTFOUND;
            err = *done ? KR_OK : err;
            break;
        }
        *after = id;
        if (t.state == KR_TENANT_STATE_ERASED)
            continue;
        struct pending *q = &p[*n];
        memset(q, 0, sizeof *q);
        q->tenant = id;
        kr_err g = kr_shardmap_get(m, id, have);
        q->need_tenant = g == KR_ENOTFOUND;
        *conflicts += g == KR_OK && strcmp(have, self) != 0;
        if (t.code_len && t.code_len <= KR_SHARDMAP_CODE_MAX && code_ok(t.code, t.code_len)) {
            memcpy(q->code, t.code, t.code_len);
            g = kr_shardmap_get_code(m, t.code, t.code_len, have);
            q->need_code = g == KR_ENOTFOUND;
            *conflicts += g == KR_OK && strcmp(have, self) != 0;
        }
        *n += q->need_tenant || q->need_code;
    }
    mdb_txn_abort(txn);
    return err;
}

/* Writes one key if absent: counts a write, or a conflict if another shard
 * holds it; *mine says whether the key names self now. */
static kr_err publish_key(struct kr_shardmap *m, const char *key, const char *self, size_t *written,
                          size_t *conflicts, bool *mine)
{
    char held[KR_SHARD_NAME_MAX + 1] = "";
    kr_err err = write_once(m, key, self, held);
    *mine = err == KR_OK || (err == KR_EEXIST && strcmp(held, self) == 0);
    if (err == KR_EEXIST) {
        *conflicts += !*mine;
        return KR_OK;
    }
    *written += err == KR_OK;
    return err;
}

kr_err kr_shardmap_publish(struct kr_shardmap *m, struct kr_domain *d, const char *self,
                           size_t *written, size_t *conflicts)
{
    size_t w = 0, c = 0, n = 0;
    uint64_t after = 0;
    bool done = false;
    kr_err err = nkv_shard_name_ok(self) ? KR_OK : KR_EINVAL;
    struct pending *p = err ? NULL : calloc(PUBLISH_PAGE, sizeof *p);
    if (!err && !p)
        err = KR_ENOMEM;
    int self_i = -1;
    while (!err && !done && w < KR_SHARDMAP_PUBLISH_MAX) {
        if ((err = publish_page(m, d, self, &after, p, &n, &done, &c)))
            break;
        for (size_t i = 0; i < n && !err && w < KR_SHARDMAP_PUBLISH_MAX; i++) {
            char key[KR_SHARDMAP_CODE_MAX + 8];
            bool code_mine = false, tenant_mine = false;
            if (p[i].need_code) {
                snprintf(key, sizeof key, "code.%s", p[i].code);
                err = publish_key(m, key, self, &w, &c, &code_mine);
            }
            if (!err && p[i].need_tenant) {
                snprintf(key, sizeof key, "tenant.%llu", (unsigned long long)p[i].tenant);
                err = publish_key(m, key, self, &w, &c, &tenant_mine);
            }
            pthread_rwlock_wrlock(&m->lock);
            if ((code_mine || tenant_mine) && (self_i = shard_index(m, self, true)) >= 0) {
                if (tenant_mine)
                    t_set(m, p[i].tenant, self_i);
                if (code_mine)
                    c_set(m, p[i].code, self_i);
            }
            pthread_rwlock_unlock(&m->lock);
        }
    }
    free(p);
    if (written)
        *written = w;
    if (conflicts)
        *conflicts = c;
    return err;
}
