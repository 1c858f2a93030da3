/*
 * serve_node.h: `kiroku serve --nats URLS --node NAME`: one node of a shard
 * that changes role, built from the follower (api/follower.h), the
 * publisher (api/cluster.h), the lease and shard map (api/shardnode.h) and
 * the keyring (api/keyring.h).
 *
 * Roles. The node starts as the primary when nobody else holds the shard's
 * lease and the stream is not ahead of its journal, else as a follower:
 *
 *   follower: the journal opened for the replica only (kr_domain_options.
 *     follower), the stream applied as `kiroku follow` applies it, reads
 *     served, every op that would append answered not_primary naming the
 *     lease holder's endpoint. Once the lease is vacant (lapsed or given up,
 *     confirmed by reading the key) and the follower has applied everything
 *     the stream holds (its position is the stream's last sequence: no
 *     quorum-acknowledged write is left behind), it is promoted.
 *   promotion: the follower stops, the journal's current signing key is
 *     fetched from the keyring unless DIR/keys has it, the journal is opened
 *     for appends with the publisher's hook, the lease is taken
 *     (shardnode_promote), the publisher starts (ExpectLastSeq = the
 *     stream's last), and a new epoch is started (jrn_new_epoch with the
 *     checkpoint the stream carried last): every promotion is a
 *     journal.epoch_started record. Then writes are taken.
 *   primary: until its lease is lost or a publish is fenced (another node
 *     wrote the stream); then appends stop (KR_ENOTPRIMARY) and it steps down.
 *     A journal stopped by an I/O error makes it step down too (giving the
 *     lease up at once), and skips renewals meanwhile (lease_options.healthy).
 *   stepping down (and at start when the stream is ahead): the records this
 *     journal holds that the stream never got, or holds otherwise, are found
 *     (the last stream message whose first record is this journal's), written
 *     to DIR/discarded-<first>-<last>.json (seq, time, type, tenant; no
 *     payload) and named on stderr, the journal is truncated to the stream's
 *     point (jrn_truncate), its views rebuilt, and it follows.
 *
 * Keys. The keystore of every role has the keyring as its remote store
 * (tenant keys made once per shard, fetched where missing). Every signing
 * key the journal makes is put into the keyring by the journal's key hook
 * (jrn_key_hook) before it signs anything; a primary also puts its current
 * key when it starts.
 *
 * Background jobs (jobs; tools/serve_jobs.h) and the e-mail worker run in
 * the primary role only: started once it serves (after the epoch record and
 * the server), stopped when it leaves the role: on a step-down after appends
 * stopped (a job under way fails with KR_ENOTPRIMARY), on a clean exit
 * before (it finishes). A follower's server runs no e-mail worker.
 *
 * No signing key. Before it takes a vacant lease the node checks that it
 * holds the journal's current signing key (DIR/keys, else the keyring; a
 * follower looks at most every KR_NODE_KEY_RETRY_MS). Without it the node
 * never takes the lease: it says why once, keeps (or starts) following, and
 * its /healthz fails ("node: cannot be promoted"; kiroku_node_promotable 0).
 *
 * The platform journal (platform, cluster.platform; api/platform.h): every
 * role keeps the node's copy in DIR/platform level with the platform's
 * stream; the primary also imports from it (started before its server, so
 * the platform's ops are refused from the first request), a follower only
 * keeps the copy, so that it imports from a current copy once promoted.
 *
 * Metrics (--http, restarted with each role on the same URL): the
 * follower's or the publisher's, and kiroku_node_primary,
 * kiroku_node_lease_epoch, kiroku_node_promotions_total and
 * kiroku_node_discarded_records_total (api_metrics_set_node).
 *
 * stdout gets a line per role taken (--json: {"role": "primary"|"follower",
 * "size": N, "epoch": E, "listen": [...], "http": URL, "pid": P}).
 */
#ifndef KR_TOOLS_SERVE_NODE_H
#define KR_TOOLS_SERVE_NODE_H

#include "clock.h"
#include "cluster.h"
#include "metrics.h"
#include "serve_jobs.h"
#include "server.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct serve_node_options {
    const char *data;  /* the data directory */
    const char *urls;  /* the NATS servers */
    const char *shard; /* the shard (never NULL) */
    const char *node;  /* this node's name, unique in the deployment */
    /* The API server's options (listen[0], nlisten >= 1, is the endpoint
     * announced and named in not_primary replies); copied per role, with the
     * shard map's router (and no e-mail worker while following). */
    const struct api_server_options *so;
    enum cluster_mode mode;       /* replication mode while primary */
    uint64_t max_age_s;           /* cluster_options.max_age_s */
    unsigned replicas;            /* cluster_options.replicas */
    uint32_t lease_ttl_ms;        /* when the lease bucket is made; 0 = default */
    const char *http;             /* /metrics and /healthz per role; NULL = none */
    const struct kr_clock *clock; /* NULL = system */
    bool two_flushes, json;
    /* The retention hooks (tools/retention_hooks.h: the backup generations
     * an erasure reaches) and log period given to every role's domain
     * (dom_set_retention): the primary's tenants.erase and retention.run,
     * and a follower carrying out an erasure, destroy the tenant's key in
     * those generations too. NULL = none. */
    const struct ret_hooks *ret_hooks;
    uint32_t log_days;
    /* The background jobs (tools/serve_jobs.h: the daily scheduler, the
     * incident notices, the alert scanner), run while the node is the
     * primary, as plain serve runs them; NULL = none. */
    const struct serve_jobs_options *jobs;
    /* What /healthz holds against (health.*); backups_expected applies to
     * the primary only (a follower takes none). NULL = the defaults. */
    const struct api_metrics_options *health;
    /* While primary, import the platform journal (api/platform.h) from
     * DIR/platform; for a tenant shard (cluster.platform). */
    bool platform;
};

/* Runs the node until SIGINT or SIGTERM (blocked in the caller's mask
 * `sigs`, to which the node adds SIGUSR1 for its own wake-ups; the caller
 * blocks all three before any thread starts). Returns the exit code: 0 after
 * a signal, 1 a fault in the stream stopped the follower, 3 could not
 * start or could not change role. */
int serve_node_run(const struct serve_node_options *o, const sigset_t *sigs);

/* Prints the gateway's URLs of s (tools/cmd_serve.c): JSON members
 * ,"gateway":URL,"gateway_operator":URL, or text lines. */
void serve_print_gateways(const struct api_server *s, bool json);

/* Records a start of serving in d's journal (serve.started: this version,
 * this host, tools/cmd_serve.c), saying on stderr (unless json) when the
 * version changed since the last one. Plain serve calls it once at start; a
 * node each time it becomes the primary, after its epoch record. */
KR_MUST_CHECK kr_err serve_record_start(struct kr_domain *d, bool json);

#endif
