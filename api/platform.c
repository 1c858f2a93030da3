/*
 * platform.c: a tenant shard's importer of the platform journal
 * (platform.h).
 *
 * Design notes. The copy in DIR/platform is a domain opened no_appends: the
 * follower writes it through apply sessions, as `kiroku follow` does, and
 * its views are built alike (nobody queries them; they cost little, the
 * platform journal being small, and keep the copy an ordinary journal that
 * `kiroku verify` and `replay` read). The importer reads the copy, never the
 * stream: it only ever sees records the follower verified and committed.
 * It is woken by the follower after each applied range, and otherwise
 * looks every KR_PLATFORM_POLL_MS (its stop latency). Where it resumes is
 * the shard's own views' origin, read once at the start and then followed
 * in memory; records the shard does not take (another shard's tenant) are
 * read again after a restart and skipped again.
 */
#include "platform.h"

#include "cluster.h"
#include "follower.h"
#include "keyring.h"
#include "natskv.h"
#include "path.h"
#include "platform_import.h"
#include "shardmap.h"

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct api_platform {
    struct api_platform_options o;
    char urls[KR_CLUSTER_URLS_MAX + 1];
    char dir[KR_PATH_MAX];
    struct kr_domain *copy; /* DIR/platform */
    struct api_follower *f;
    natsConnection *nc;    /* the map's, when the importer opened it */
    struct kr_shardmap *m; /* o.m, or the importer's own, or NULL */
    pthread_t th;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu; /* guards st, woken */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC */
    bool woken;
    struct api_platform_status st;
    uint64_t next;        /* the importer's own: the next platform seq to look at */
    bool said_unreadable; /* the importer's own: stderr told what to do */
};

/* ---- Status ---- */

static void fault(struct api_platform *p, kr_err err, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fault(struct api_platform *p, kr_err err, uint64_t seq, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&p->mu);
    p->st.stopped = true;
    p->st.err = err;
    p->st.seq = seq;
    va_start(ap, fmt);
    vsnprintf(p->st.what, sizeof p->st.what, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&p->mu);
    fprintf(stderr, "kiroku: serve: the platform journal's import stopped at seq %" PRIu64 ": %s\n",
            seq, p->st.what);
}

void api_platform_status(struct api_platform *p, struct api_platform_status *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->st;
    pthread_mutex_unlock(&p->mu);
    out->copied = jrn_size(p->copy->j);
}

void api_platform_endpoint(void *arg, char *out, size_t cap)
{
    struct api_platform *p = arg;
    char e[KR_ENDPOINT_MAX + 1];
    out[0] = '\0';
    if (p && p->m && kr_shardmap_endpoint(p->m, KR_PLATFORM_SHARD, e) == KR_OK)
        snprintf(out, cap, "%s", e);
}

/* ---- The importer ---- */

static void wake(void *arg, uint64_t size)
{
    struct api_platform *p = arg;
    (void)size;
    pthread_mutex_lock(&p->mu);
    p->woken = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Waits until woken or KR_PLATFORM_POLL_MS passed. */
static void nap(struct api_platform *p)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)(KR_PLATFORM_POLL_MS % 1000u) * 1000000L;
    until.tv_sec += KR_PLATFORM_POLL_MS / 1000u + until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while (!p->woken && rc == 0 && !atomic_load(&p->stop))
        rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
    p->woken = false;
    pthread_mutex_unlock(&p->mu);
}

enum round { ROUND_DONE, ROUND_AGAIN, ROUND_FAULT };

/* What stderr says of an operator account record the shard skipped: once
 * for a key that is not the platform's, each time for an e-mail held here. */
static void say_skipped(struct api_platform *p, const struct jrn_record *r, enum dom_import what)
{
    if (what == DOM_IMPORT_UNREADABLE && !p->said_unreadable) {
        p->said_unreadable = true;
        fprintf(stderr,
                "kiroku: serve: platform record %" PRIu64 " (%.*s) does not open with this "
                "shard's tenant-0 data key: the shard made its own before it shared keys "
                "through the bucket %s, so the platform's operator accounts are not imported "
                "here (kiroku_platform_accounts_unreadable counts the records skipped) and "
                "this shard's own operators go on working. The platform and every shard "
                "need one KEK and %s; a shard whose journal starts with them takes the "
                "platform's key (docs/operations.md, \"The platform journal\")\n",
                r->seq, (int)r->type_len, r->type, KR_KEYRING_BUCKET, KR_KEYRING_BUCKET);
    } else if (what == DOM_IMPORT_EMAIL_HELD) {
        fprintf(stderr,
                "kiroku: serve: platform record %" PRIu64 " (account.created) names an "
                "operator whose e-mail an operator of this shard holds: not imported (the "
                "local operator keeps working here, and the platform's account is not "
                "used here)\n",
                r->seq);
    }
}

/* Whether an import's failure may pass: a stream of the shard's journal kept
 * moving (conflicts past the retries), or its storage was full or busy. The
 * importer tries the record again after a nap. */
static bool transient(kr_err err)
{
    return err == KR_ECONFLICT || err == KR_EBUSY || err == KR_EFULL;
}

/* Imports the copy's records from p->next on, at most KR_PLATFORM_ROUND_MAX:
 * ROUND_DONE, ROUND_AGAIN after a transient failure (the record is tried
 * again), ROUND_FAULT after a fault (the importer stops). */
static enum round import_round(struct api_platform *p)
{
    uint64_t size = jrn_size(p->copy->j);
    if (p->next > size)
        return ROUND_DONE;
    uint64_t to =
        size - p->next >= KR_PLATFORM_ROUND_MAX ? p->next + KR_PLATFORM_ROUND_MAX - 1 : size;
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = p->next, .to = to};
    struct jrn_cursor *c = NULL;
    struct jrn_record r;
    uint64_t n = 0, unreadable = 0, seq = p->next;
    kr_err err = jrn_cursor_new(p->copy->j, &q, &c);
    while (!err && !(err = jrn_cursor_next(c, &r))) {
        enum dom_import what = DOM_IMPORT_NONE;
        seq = r.seq;
        if (dom_platform_importable(&r) && (err = dom_platform_import_record(p->o.d, &r, &what)))
            break;
        n += what == DOM_IMPORT_APPENDED;
        unreadable += what == DOM_IMPORT_UNREADABLE;
        say_skipped(p, &r, what);
        p->next = r.seq + 1;
    }
    jrn_cursor_free(c);
    uint64_t origin = 0;
    kr_err oerr = dom_platform_origin(p->o.d, &origin);
    pthread_mutex_lock(&p->mu);
    p->st.scanned = p->next - 1;
    p->st.imported += n;
    p->st.unreadable += unreadable;
    if (!oerr)
        p->st.origin = origin;
    pthread_mutex_unlock(&p->mu);
    if (err == KR_ENOTFOUND || !err)
        return ROUND_DONE;
    if (transient(err)) {
        fprintf(stderr, "kiroku: serve: importing platform record %" PRIu64 ": %s (trying again)\n",
                seq, kr_strerror(err));
        return ROUND_AGAIN;
    }
    fault(p, err, seq, "importing platform record %" PRIu64 ": %s", seq, kr_strerror(err));
    return ROUND_FAULT;
}

static void *importer_main(void *arg)
{
    struct api_platform *p = arg;
    pthread_setname_np(pthread_self(), "kr-platform");
    while (!atomic_load(&p->stop)) {
        enum round r = import_round(p);
        if (r == ROUND_FAULT)
            break;
        if (r == ROUND_AGAIN) {
            nap(p);
            continue;
        }
        struct api_follower_status fs;
        api_follower_status(p->f, &fs);
        if (fs.stopped && p->next > jrn_size(p->copy->j)) {
            /* Everything verified is imported; nothing after the fault is. */
            fault(p, fs.err, fs.seq, "the platform journal's copy stopped: %s", fs.what);
            break;
        }
        if (p->next > jrn_size(p->copy->j))
            nap(p);
    }
    bool faulted;
    pthread_mutex_lock(&p->mu);
    faulted = p->st.stopped;
    pthread_mutex_unlock(&p->mu);
    if (faulted && !atomic_load(&p->stop) && p->o.stopped)
        p->o.stopped(p->o.arg);
    return NULL;
}

/* ---- Start and stop ---- */

/* A secret key file in DIR/platform/keys (a restored platform backup
 * brings the platform's signing key and KEK): its name into name, or false.
 * A tenant shard must not hold the platform's secrets: the copy verifies
 * with public keys only. */
static bool secret_key_in(const char *dir, char *name, size_t cap)
{
    char keys[KR_PATH_MAX];
    if (kr_path_join(keys, sizeof keys, dir, "keys") != KR_OK)
        return false;
    DIR *d = opendir(keys);
    if (!d)
        return false;
    struct dirent *e;
    bool found = false;
    while (!found && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".key") == 0) {
            snprintf(name, cap, "%s/%s", keys, e->d_name);
            found = true;
        }
    }
    closedir(d);
    return found;
}

/* The copy: DIR/platform opened for the follower's apply sessions. */
static kr_err copy_open(struct api_platform *p, char *why, size_t cap)
{
    char secret[KR_PATH_MAX + 300];
    kr_err err = kr_path_join(p->dir, sizeof p->dir, p->o.dir, KR_PLATFORM_SHARD);
    if (!err && secret_key_in(p->dir, secret, sizeof secret)) {
        snprintf(why, cap,
                 "%.300s is a secret key of the platform shard, which a tenant shard must not "
                 "hold: delete %.200s/keys/*.key (the copy verifies with public keys only)",
                 secret, p->dir);
        return KR_EEXIST;
    }
    struct kr_domain_options o = {
        .dir = p->dir,
        .clock = p->o.clock,
        .no_appends = true, /* writable for apply sessions only; no keys needed */
        .no_signup_limits = true,
    };
    if (!err)
        err = dom_open(&o, &p->copy);
    if (err == KR_ENOTFOUND)
        snprintf(why, cap,
                 "%s holds no copy of the platform journal: restore a backup generation of the "
                 "platform shard there (kiroku backup on a platform node, then kiroku restore "
                 "GEN --data %s)",
                 p->dir, p->dir);
    else if (err)
        snprintf(why, cap, "opening the platform journal's copy in %s: %s", p->dir,
                 kr_strerror(err));
    return err;
}

/* The shard map for the platform's endpoint, when the caller has none: a
 * map that does not exist yet (nobody announced) leaves it unknown. */
static void map_open(struct api_platform *p)
{
    p->m = p->o.m;
    if (p->m || nkv_connect(p->urls, &p->nc) != KR_OK)
        return;
    if (kr_shardmap_open(p->nc, -1, &p->m) != KR_OK) {
        p->m = NULL;
        natsConnection_Destroy(p->nc);
        p->nc = NULL;
    }
}

kr_err api_platform_start(const struct api_platform_options *o, struct api_platform **out,
                          char *why, size_t cap)
{
    *out = NULL;
    why[0] = '\0';
    if ((!o->d && !o->copy_only) || !o->dir || !o->nats || !nkv_urls_ok(o->nats)) {
        snprintf(why, cap, "the NATS URLs are nats://HOST:PORT, comma-separated");
        return KR_EINVAL;
    }
    struct api_platform *p = calloc(1, sizeof *p);
    if (!p)
        return KR_ENOMEM;
    p->o = *o;
    snprintf(p->urls, sizeof p->urls, "%s", o->nats);
    p->o.nats = p->urls;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    uint64_t origin = 0;
    kr_err err = copy_open(p, why, cap);
    if (!err && !o->copy_only && (err = dom_platform_origin(o->d, &origin)))
        snprintf(why, cap, "reading the platform origin of the shard's views");
    p->next = origin + 1;
    p->st.origin = origin;
    p->st.scanned = origin;
    if (!err) {
        if (!o->copy_only)
            map_open(p);
        const char *fwhy = "";
        struct api_follower_options fo = {
            .nats = p->urls, .shard = KR_PLATFORM_SHARD, .d = p->copy, .applied = wake, .arg = p};
        if ((err = api_follower_start(&fo, &p->f, &fwhy)))
            snprintf(why, cap, "following the platform journal: %s", fwhy);
    }
    if (!err && !o->copy_only && pthread_create(&p->th, NULL, importer_main, p) != 0) {
        snprintf(why, cap, "starting the importer's thread");
        err = KR_EIO;
    }
    if (err) {
        api_platform_stop(p);
        return err;
    }
    if (o->copy_only) {
        *out = p;
        return KR_OK;
    }
    p->started = true;
    dom_set_importing(o->d, api_platform_endpoint, p);
    *out = p;
    return KR_OK;
}

void api_platform_stop(struct api_platform *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    wake(p, 0);
    if (p->started)
        pthread_join(p->th, NULL);
    api_follower_stop(p->f);
    if (p->m != p->o.m)
        kr_shardmap_close(p->m);
    if (p->nc)
        natsConnection_Destroy(p->nc);
    dom_close(p->copy);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
