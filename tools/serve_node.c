/*
 * serve_node.c: a node of a shard that changes role (serve_node.h).
 *
 * Design notes. The node is a small state machine run by the main thread:
 * LEAD (try to become the primary), REJOIN (truncate what the stream never
 * got), FOLLOW, EXIT. Each role opens the domain the way it needs it (for
 * the replica only, or for appends with the publisher's hook) and closes it
 * whole before the next: an LMDB environment cannot change its mode in
 * place, and a closed domain leaves no half-state behind. The main thread
 * waits on its signals with a timeout (sigtimedwait, KR_NODE_POLL_MS):
 * SIGINT/SIGTERM stop the node, SIGUSR1 is the node's own wake-up (the lease
 * lost, the follower stopped), and each timeout looks at the lease, the
 * stream and the publisher. The node has its own NATS connection for the
 * keyring and its looks at the stream; the follower, the publisher and the
 * shard node each have theirs.
 */
#include "serve_node.h"

#include "cli.h"
#include "domain.h"
#include "follower.h"
#include "http.h"
#include "keyring.h"
#include "keys.h"
#include "lease.h"
#include "metrics.h"
#include "natskv.h"
#include "node_rejoin.h"
#include "platform.h"
#include "replica.h"
#include "retention.h"
#include "shardnode.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum node_role { NODE_LEAD, NODE_REJOIN, NODE_FOLLOW, NODE_EXIT };

struct node {
    const struct serve_node_options *o;
    sigset_t sigs; /* the caller's and SIGUSR1 */
    natsConnection *nc;
    jsCtx *js;
    struct kr_keyring *kr;
    char stream[KR_CLUSTER_NAME_MAX], subject[KR_CLUSTER_NAME_MAX];
    struct jrn_key_hook kh;
    struct kr_keystore *_Atomic ks; /* the open domain's keystore (the key hook) */
    struct journal *_Atomic j;      /* the primary's journal (the lost callback) */
    atomic_bool lost;               /* the lease was lost */
    int replicas;                   /* the buckets': min(3, servers) */
    atomic_bool primary;            /* for the metrics: */
    atomic_uint_fast64_t epoch, promotions, discarded;
    struct api_metrics *m; /* this role's /metrics, or NULL */
    struct api_http *h;
    atomic_bool no_key;   /* no current signing key: never promoted */
    uint64_t key_next_ms; /* when to look for it again (CLOCK_MONOTONIC) */
    int rc;               /* the exit code (NODE_EXIT) */
    bool rebuild;         /* views to rebuild (after a truncation) */
};

/* ---- Callbacks (other threads) ---- */

static kr_err node_key_made(void *ctx, const uint8_t journal_id[16],
                            const struct kr_signing_key *key)
{
    struct node *n = ctx;
    struct kr_keystore *ks = atomic_load(&n->ks);
    return ks ? kr_keyring_put_signing_key(n->kr, ks, journal_id, key) : KR_EIO;
}

static void node_lost(void *ctx, const char *why)
{
    struct node *n = ctx;
    struct journal *j = atomic_load(&n->j);
    if (j)
        jrn_stop_appends(j, KR_ENOTPRIMARY); /* before anything else: no more writes */
    atomic_store(&n->lost, true);
    fprintf(stderr, "kiroku: serve: the lease was lost (%s): stepping down\n", why);
    kill(getpid(), SIGUSR1);
}

/* Asked before each renewal: a primary whose journal stopped (an I/O
 * error) lets its lease lapse rather than hold the shard's writes. */
static bool node_healthy(void *ctx)
{
    struct node *n = ctx;
    struct journal *j = atomic_load(&n->j);
    return !j || jrn_failed(j) == KR_OK;
}

static void node_wake(void *arg)
{
    (void)arg;
    kill(getpid(), SIGUSR1);
}

static void node_stats(void *arg, struct api_node_stats *out)
{
    struct node *n = arg;
    out->primary = atomic_load(&n->primary);
    out->epoch = out->primary ? atomic_load(&n->epoch) : 0;
    out->promotions = atomic_load(&n->promotions);
    out->discarded = atomic_load(&n->discarded);
    out->no_key = atomic_load(&n->no_key);
}

/* ---- Helpers ---- */

/* This role's /metrics and /healthz (--http): the follower's or the
 * publisher's, and the node's. A failure is said, not fatal. */
static void http_start(struct node *n, struct kr_domain *d, struct api_follower *f,
                       struct cluster *cl, struct api_platform *plat)
{
    if (!n->o->http)
        return;
    const char *why = "";
    struct api_metrics_options mo = {0};
    if (n->o->health)
        mo = *n->o->health;
    mo.backups_expected = mo.backups_expected && cl; /* a follower takes no backups */
    kr_err err = api_metrics_new(d, &mo, &n->m);
    if (!err) {
        api_metrics_set_follower(n->m, f);
        api_metrics_set_cluster(n->m, cl);
        api_metrics_set_platform(n->m, plat);
        api_metrics_set_node(n->m, node_stats, n);
        err = api_http_start(n->o->http, n->m, &n->h, &why);
    }
    if (err) {
        fprintf(stderr, "kiroku: serve: --http %s: %s%s%s\n", n->o->http, why, why[0] ? ": " : "",
                kr_strerror(err));
        api_metrics_free(n->m);
        n->m = NULL;
    }
}

static void http_stop(struct node *n)
{
    api_http_stop(n->h);
    api_metrics_free(n->m);
    n->h = NULL;
    n->m = NULL;
}

/* The next signal, or 0 after KR_NODE_POLL_MS. */
static int node_wait(struct node *n)
{
    struct timespec ts = {0, (long)KR_NODE_POLL_MS * 1000000L};
    int sig = sigtimedwait(&n->sigs, NULL, &ts);
    return sig > 0 ? sig : 0;
}

static bool stop_signal(int sig)
{
    return sig == SIGINT || sig == SIGTERM;
}

static void node_print(const struct node *n, const char *role, uint64_t size, uint64_t epoch,
                       const struct api_server *s)
{
    const char *const *urls = NULL;
    size_t nurls = s ? api_server_urls(s, &urls) : 0;
    if (n->o->json) {
        printf("{\"role\":\"%s\",\"node\":", role);
        cli_json_str(stdout, n->o->node, strlen(n->o->node));
        printf(",\"size\":%" PRIu64 ",\"epoch\":%" PRIu64 ",\"listen\":[", size, epoch);
        for (size_t i = 0; i + 1 < nurls; i++) {
            printf(i ? "," : "");
            cli_json_str(stdout, urls[i], strlen(urls[i]));
        }
        printf("]");
        if (n->h) {
            printf(",\"http\":");
            cli_json_str(stdout, api_http_url(n->h), strlen(api_http_url(n->h)));
        }
        if (s)
            serve_print_gateways(s, true);
        printf(",\"pid\":%ld}\n", (long)getpid());
    } else {
        printf("kiroku: node %s: %s of shard %s (%" PRIu64 " records", n->o->node, role,
               n->o->shard, size);
        if (epoch)
            printf(", lease epoch %" PRIu64, epoch);
        printf(")\n");
        for (size_t i = 0; i + 1 < nurls; i++)
            printf("  client: %s\n", urls[i]);
        if (s)
            serve_print_gateways(s, false);
    }
    fflush(stdout);
}

static kr_err node_shard_open(struct node *n, struct kr_domain *d, struct shardnode **sn)
{
    struct shardnode_options so = {
        .urls = n->o->urls,
        .shard = n->o->shard,
        .node = n->o->node,
        .endpoint = n->o->so->listen[0],
        .lease_ttl_ms = n->o->lease_ttl_ms,
        .replicas = n->replicas,
        .d = d,
        .lost = node_lost,
        .healthy = node_healthy,
        .ctx = n,
    };
    return shardnode_open(&so, sn);
}

/* ---- Following ---- */

/* Whether a follower may be promoted: the lease vacant (as watched, then
 * read) and every record the stream holds applied (the follower verified
 * each against the stream, so its journal holds the stream's records). */
static bool may_promote(struct node *n, struct shardnode *sn, const struct api_follower_status *st)
{
    struct lease_holder h;
    uint64_t last = 0;
    if (st->stopped || lease_holder(shardnode_lease(sn), &h) == KR_OK)
        return false;
    if (lease_peek(n->js, n->o->shard, &h) != KR_ENOTFOUND)
        return false;
    return node_stream_last(n->js, n->stream, n->subject, &last) == KR_OK && st->applied >= last;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Says why a node stays a follower, once per finding: err KR_ENOTFOUND
 * (neither DIR/keys nor the keyring has the key), else why the keyring's
 * copy could not be read (another KEK, a forged value, NATS). */
static void no_key_say(struct node *n, uint32_t key_id, kr_err err)
{
    if (atomic_exchange(&n->no_key, true))
        return;
    if (err == KR_ENOTFOUND)
        fprintf(stderr,
                "kiroku: serve: node %s cannot become the primary: the journal's current "
                "signing key (%" PRIu32 ") is neither in DIR/keys nor in the keyring; it "
                "stays a follower and never takes the lease (looked for again every %u s)\n",
                n->o->node, key_id, KR_NODE_KEY_RETRY_MS / 1000u);
    else
        fprintf(stderr,
                "kiroku: serve: node %s cannot become the primary: the journal's current "
                "signing key (%" PRIu32 ") is not in DIR/keys and the keyring's could not be "
                "read (%s); it stays a follower (looked for again every %u s)\n",
                n->o->node, key_id, kr_strerror(err), KR_NODE_KEY_RETRY_MS / 1000u);
}

/* Whether this node has the current signing key of the follower's journal
 * (d, open for the replica): its secret in DIR/keys, or in the keyring
 * (read through d's keystore, not saved: lead_key saves it once the
 * follower closed). Without it, looked for again at most every
 * KR_NODE_KEY_RETRY_MS. */
static bool follow_has_key(struct node *n, struct kr_domain *d)
{
    if (atomic_load(&n->no_key) && mono_ms() < n->key_next_ms)
        return false;
    n->key_next_ms = mono_ms() + KR_NODE_KEY_RETRY_MS;
    struct jrn_info info;
    jrn_get_info(d->j, &info);
    struct kr_signing_key k;
    kr_err err = kr_key_load(n->o->data, info.key_id, &k);
    if (err == KR_ENOTFOUND)
        err = kr_keyring_get_signing_key(n->kr, d->ks, info.journal_id, info.key_id, &k);
    kr_key_wipe(&k);
    if (err) {
        no_key_say(n, info.key_id, err);
        return false;
    }
    if (atomic_exchange(&n->no_key, false))
        fprintf(stderr, "kiroku: serve: node %s: signing key %" PRIu32 " found\n", n->o->node,
                info.key_id);
    return true;
}

/* Follows until promoted (NODE_LEAD) or stopped. */
static enum node_role follow_loop(struct node *n, struct kr_domain *d, struct shardnode *sn,
                                  struct api_follower *f)
{
    for (;;) {
        int sig = node_wait(n);
        if (stop_signal(sig)) {
            n->rc = CLI_OK;
            return NODE_EXIT;
        }
        struct api_follower_status st;
        api_follower_status(f, &st);
        if (st.stopped) {
            fprintf(stderr, "kiroku: serve: follower stopped at seq %" PRIu64 ": %s (%s)\n", st.seq,
                    st.what, kr_strerror(st.err));
            n->rc = st.faults ? CLI_BAD : CLI_FAIL;
            return NODE_EXIT;
        }
        if (may_promote(n, sn, &st) && follow_has_key(n, d))
            return NODE_LEAD;
    }
}

static kr_err follow_open(struct node *n, struct kr_domain **d)
{
    struct kr_domain_options o = {.dir = n->o->data,
                                  .clock = n->o->clock,
                                  .follower = true,
                                  .no_catch_up = n->rebuild,
                                  .shard = n->o->shard};
    kr_err err = dom_open(&o, d);
    if (!err && n->rebuild && (err = jrn_views_rebuild((*d)->j, NULL, NULL))) {
        dom_close(*d);
        *d = NULL;
    }
    if (!err) {
        n->rebuild = false;
        ks_set_remote((*d)->ks, kr_keyring_remote(n->kr));
        if (n->o->ret_hooks)
            dom_set_retention(*d, n->o->ret_hooks, n->o->log_days);
    }
    return err;
}

/* --platform on a follower node: its copy of the platform journal kept
 * level, so that it imports at once from a current copy when promoted. */
static kr_err follow_platform(struct node *n, struct api_platform **out, const char **why)
{
    static char line[512];
    *out = NULL;
    if (!n->o->platform)
        return KR_OK;
    struct api_platform_options o = {
        .nats = n->o->urls, .dir = n->o->data, .clock = n->o->clock, .copy_only = true};
    kr_err err = api_platform_start(&o, out, line, sizeof line);
    *why = line;
    return err;
}

static enum node_role node_follow(struct node *n)
{
    struct kr_domain *d = NULL;
    struct shardnode *sn = NULL;
    struct api_follower *f = NULL;
    struct api_platform *plat = NULL;
    struct api_server *s = NULL;
    const char *why = "";
    enum node_role next = NODE_EXIT;
    kr_err err = follow_open(n, &d);
    if (err)
        why = "the journal (as a follower)";
    else if ((err = node_shard_open(n, d, &sn)))
        why = "the lease and the shard map";
    else
        err = follow_platform(n, &plat, &why);
    if (!err) {
        dom_set_follower(d, lease_endpoint, shardnode_lease(sn));
        struct api_follower_options fo = {
            .nats = n->o->urls, .shard = n->o->shard, .d = d, .stopped = node_wake};
        err = api_follower_start(&fo, &f, &why);
    }
    if (!err) {
        struct api_server_options so = *n->o->so;
        so.router = shardnode_router(sn);
        so.no_mailer = true;
        err = api_server_start(&so, d, &s, &why);
    }
    if (err) {
        fprintf(stderr, "kiroku: serve: following: %s: %s\n", why, kr_strerror(err));
        n->rc = CLI_FAIL;
    } else {
        http_start(n, d, f, NULL, NULL);
        node_print(n, "follower", jrn_size(d->j), 0, s);
        next = follow_loop(n, d, sn, f);
    }
    http_stop(n);
    api_server_stop(s);
    api_follower_stop(f);
    api_platform_stop(plat);
    shardnode_close(sn);
    dom_close(d);
    return next;
}

/* ---- Leading ---- */

/* The journal's id and current key, with the key's secret in DIR/keys
 * (fetched from the keyring if missing; *missing when neither has it). */
static kr_err lead_key(struct node *n, struct jrn_info *info, bool *missing)
{
    struct journal *j = NULL;
    struct jrn_options jo = {.dir = n->o->data, .no_appends = true};
    *missing = false;
    kr_err err = jrn_open(&jo, &j);
    if (err)
        return err;
    jrn_get_info(j, info);
    jrn_close(j);
    err = node_key_ensure(n->o->data, n->kr, info->journal_id, info->key_id);
    *missing = err == KR_ENOTFOUND;
    return err;
}

/* The current key into the keyring (a primary that made it before the
 * keyring existed, or the genesis key). */
static void lead_put_key(struct node *n, struct kr_domain *d, const struct jrn_info *info)
{
    struct kr_signing_key k;
    kr_err err = kr_key_load(n->o->data, info->key_id, &k);
    if (!err)
        err = kr_keyring_put_signing_key(n->kr, d->ks, info->journal_id, &k);
    kr_key_wipe(&k);
    if (err)
        fprintf(stderr, "kiroku: serve: signing key %" PRIu32 " not stored in the keyring: %s\n",
                info->key_id, kr_strerror(err));
}

/* The promotion's epoch record, after the checkpoint the journal ends with. */
static kr_err lead_epoch(struct kr_domain *d)
{
    char *note = malloc(KR_NOTE_MAX);
    size_t len = 0;
    uint64_t at = 0, size = jrn_size(d->j);
    kr_err err =
        note ? jrn_checkpoint_after(d->j, size - 1, &at, note, KR_NOTE_MAX, &len) : KR_ENOMEM;
    if (!err && at != size)
        err = KR_ENOTFOUND;
    if (!err)
        err = jrn_new_epoch(d->j, note, len, NULL);
    free(note);
    return err;
}

/* Serves as the primary until a signal (NODE_EXIT), a lost lease, a
 * fenced publish or a stopped journal (NODE_REJOIN). */
static enum node_role lead_loop(struct node *n, struct cluster *cl, struct journal *j)
{
    for (;;) {
        int sig = node_wait(n);
        if (stop_signal(sig)) {
            n->rc = CLI_OK;
            return NODE_EXIT;
        }
        struct cluster_stats cs;
        cluster_stats(cl, &cs);
        if (cs.fenced) {
            fprintf(stderr,
                    "kiroku: serve: fenced: another node wrote the stream; stepping down\n");
            return NODE_REJOIN;
        }
        if (atomic_load(&n->lost))
            return NODE_REJOIN;
        kr_err jf = jrn_failed(j);
        if (jf && jf != KR_ENOTPRIMARY) { /* I/O: give the lease up now, not at its TTL */
            fprintf(stderr, "kiroku: serve: the journal stopped (%s): stepping down\n",
                    kr_strerror(jf));
            return NODE_REJOIN;
        }
    }
}

struct lead {
    struct cluster *cl;
    struct kr_domain *d;
    struct shardnode *sn;
    struct api_platform *plat; /* the platform journal's importer, or NULL */
    struct api_server *s;
    struct serve_jobs *jobs; /* the background jobs (serve_jobs.h), or NULL */
    uint64_t epoch;
    char why[512]; /* cluster_start's line */
};

/* Opens the journal for appends with the publisher's hook, takes the lease,
 * starts publishing and the epoch. NODE_LEAD when serving may begin, else
 * the next role (n->rc set for NODE_EXIT). */
static enum node_role lead_start(struct node *n, struct lead *l, const char **why)
{
    struct jrn_info info;
    bool missing;
    kr_err err = lead_key(n, &info, &missing);
    if (missing) { /* before the lease is taken: follow, truncating nothing */
        no_key_say(n, info.key_id, KR_ENOTFOUND);
        return NODE_FOLLOW;
    }
    if (err) {
        *why = "the journal and its current signing key (DIR/keys, the keyring)";
        goto fail;
    }
    atomic_store(&n->no_key, false);
    struct cluster_options co = {.urls = n->o->urls,
                                 .mode = n->o->mode,
                                 .shard = n->o->shard,
                                 .max_age_s = n->o->max_age_s,
                                 .replicas = n->o->replicas,
                                 .quiet = n->o->json};
    if ((err = cluster_new(&co, why, &l->cl)))
        goto fail;
    struct kr_domain_options o = {.dir = n->o->data,
                                  .clock = n->o->clock,
                                  .two_flushes = n->o->two_flushes,
                                  .durable = cluster_hook(l->cl),
                                  .key_made = &n->kh,
                                  .shard = n->o->shard};
    if ((err = dom_open(&o, &l->d))) {
        *why = "the journal";
        goto fail;
    }
    atomic_store(&n->ks, l->d->ks);
    ks_set_remote(l->d->ks, kr_keyring_remote(n->kr));
    if (n->o->ret_hooks)
        dom_set_retention(l->d, n->o->ret_hooks, n->o->log_days);
    atomic_store(&n->lost, false);
    if ((err = node_shard_open(n, l->d, &l->sn))) {
        *why = "the lease and the shard map";
        goto fail;
    }
    err = shardnode_promote(l->sn, jrn_size(l->d->j), &l->epoch);
    if (err == KR_EBUSY || err == KR_EIO)
        return NODE_REJOIN; /* another node holds it: follow it */
    if (err) {
        *why = "the lease";
        goto fail;
    }
    atomic_store(&n->j, l->d->j);
    lead_put_key(n, l->d, &info);
    err = cluster_start(l->cl, l->d->j, l->why, sizeof l->why);
    if (err == KR_ENOTPRIMARY) {
        fprintf(stderr, "kiroku: serve: %s: stepping down\n", l->why);
        return NODE_REJOIN;
    }
    if (err) {
        *why = l->why;
        goto fail;
    }
    if ((err = lead_epoch(l->d))) {
        *why = "starting the epoch";
        goto fail;
    }
    return NODE_LEAD;
fail:
    fprintf(stderr, "kiroku: serve: becoming the primary: %s: %s\n", *why, kr_strerror(err));
    n->rc = CLI_FAIL;
    return NODE_EXIT;
}

/* Stops everything the lead role opened; a step-down stops appends first. */
static void lead_stop(struct node *n, struct lead *l, bool clean)
{
    if (l->d && !clean)
        jrn_stop_appends(l->d->j, KR_ENOTPRIMARY);
    serve_jobs_stop(l->jobs); /* a job under way finishes (or fails: not_primary) */
    api_server_stop(l->s);
    api_platform_stop(l->plat); /* an import under way finishes (or fails, stepping down) */
    if (l->cl)
        cluster_stop(l->cl, clean ? KR_SERVE_PUBLISH_GRACE_MS : 0);
    shardnode_close(l->sn); /* gives the lease up: a follower takes it at once */
    atomic_store(&n->j, NULL);
    atomic_store(&n->ks, NULL);
    dom_close(l->d);
    cluster_free(l->cl);
}

/* --platform: the importer, started before the server (it marks the domain
 * importing, which must be so before any request). */
static kr_err lead_platform(struct node *n, struct lead *l, const char **why)
{
    static char line[512];
    if (!n->o->platform)
        return KR_OK;
    struct api_platform_options o = {.nats = n->o->urls,
                                     .dir = n->o->data,
                                     .d = l->d,
                                     .m = shardnode_map(l->sn),
                                     .clock = n->o->clock};
    kr_err err = api_platform_start(&o, &l->plat, line, sizeof line);
    *why = line;
    return err;
}

static enum node_role node_lead(struct node *n)
{
    struct lead l = {0};
    const char *why = "";
    enum node_role next = lead_start(n, &l, &why);
    if (next == NODE_LEAD) {
        struct api_server_options so = *n->o->so;
        so.router = shardnode_router(l.sn);
        kr_err err = serve_record_start(l.d, n->o->json);
        if (err)
            why = "recording the start";
        if (!err)
            err = lead_platform(n, &l, &why);
        if (!err)
            err = api_server_start(&so, l.d, &l.s, &why);
        if (!err && n->o->jobs && (err = serve_jobs_start(n->o->jobs, l.d, &l.jobs)))
            why = "the background jobs";
        if (err) {
            fprintf(stderr, "kiroku: serve: %s: %s\n", why, kr_strerror(err));
            n->rc = CLI_FAIL;
            next = NODE_EXIT;
        } else {
            atomic_store(&n->epoch, l.epoch);
            atomic_store(&n->primary, true);
            atomic_fetch_add(&n->promotions, 1);
            http_start(n, l.d, NULL, l.cl, l.plat);
            node_print(n, "primary", jrn_size(l.d->j), l.epoch, l.s);
            next = lead_loop(n, l.cl, l.d->j);
            atomic_store(&n->primary, false);
            http_stop(n);
        }
    }
    lead_stop(n, &l, next == NODE_EXIT);
    return next;
}

/* ---- Rejoining ---- */

static enum node_role node_rejoin_step(struct node *n)
{
    struct node_rejoin_result r;
    const char *why = "";
    kr_err err = node_rejoin(n->o->data, n->js, n->stream, n->kr, &r, &why);
    if (err) {
        fprintf(stderr, "kiroku: serve: rejoining the stream: %s%s%s\n", why, why[0] ? ": " : "",
                kr_strerror(err));
        n->rc = CLI_FAIL;
        return NODE_EXIT;
    }
    if (r.discarded) {
        n->rebuild = true;
        atomic_fetch_add(&n->discarded, r.discarded);
    }
    return NODE_FOLLOW;
}

/* ---- The node ---- */

static int count_urls(const char *urls)
{
    int c = 1;
    for (const char *p = urls; *p; p++)
        c += *p == ',';
    return c < 3 ? c : 3;
}

static kr_err node_connect(struct node *n)
{
    kr_err err = cluster_names(n->o->shard, n->stream, n->subject, sizeof n->stream);
    if (!err)
        err = nkv_connect(n->o->urls, &n->nc);
    if (!err && natsConnection_JetStream(&n->js, n->nc, NULL) != NATS_OK)
        err = KR_EIO;
    if (!err)
        err = kr_keyring_open(n->js, n->replicas, &n->kr);
    return err;
}

int serve_node_run(const struct serve_node_options *o, const sigset_t *sigs)
{
    struct node *n = calloc(1, sizeof *n);
    if (!n)
        return cli_fail("serve", KR_ENOMEM);
    n->o = o;
    n->sigs = *sigs;
    sigaddset(&n->sigs, SIGUSR1);
    n->kh.ctx = n;
    n->kh.key_made = node_key_made;
    n->replicas = count_urls(o->urls);
    kr_err err = node_connect(n);
    enum node_role role = NODE_LEAD;
    if (err) {
        fprintf(stderr, "kiroku: serve: --nats %s: %s\n", o->urls, kr_strerror(err));
        n->rc = CLI_FAIL;
        role = NODE_EXIT;
    }
    struct lease_holder h;
    if (!err && lease_peek(n->js, o->shard, &h) == KR_OK && strcmp(h.node, o->node) != 0)
        role = NODE_REJOIN; /* another node holds the lease: follow it */
    while (role != NODE_EXIT) {
        switch (role) {
        case NODE_LEAD:
            role = node_lead(n);
            break;
        case NODE_REJOIN:
            role = node_rejoin_step(n);
            break;
        default:
            role = node_follow(n);
            break;
        }
    }
    int rc = n->rc;
    kr_keyring_close(n->kr);
    jsCtx_Destroy(n->js);
    natsConnection_Destroy(n->nc);
    free(n);
    return rc;
}
