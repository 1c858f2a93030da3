/*
 * cmd_follow.c: `kiroku follow`: keeps a copy of a primary's journal level
 * with the primary's JetStream stream (api/follower.h), verifying every
 * record and checkpoint before applying it, and with --listen serves every
 * read op over the same views; an op that would append is answered
 * not_primary, naming the primary's client endpoint (--primary).
 *
 * Signals are blocked in every thread and taken by sigwait in the main
 * thread, as in serve; the follower's thread tells the main thread that it
 * stopped on its own (a fault) with SIGUSR1.
 */
#include "cli.h"
#include "cluster.h"
#include "config.h"
#include "domain.h"
#include "follower.h"
#include "gateway.h"
#include "http.h"
#include "keyring.h"
#include "lease.h"
#include "metrics.h"
#include "natskv.h"
#include "path.h"
#include "serve_node.h"
#include "server.h"

#include <getopt.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char follow_usage[] =
    "usage: kiroku follow [--nats URL[,URL...]] [--data DIR] [--shard NAME]\n"
    "                     [--listen URL]... [--operator URL] [--primary URL]\n"
    "                     [--http URL] [--gateway URL] [--gateway-operator URL]\n"
    "                     [--node NAME] [--keep-serving]\n"
    "                     [--config FILE] [--json]\n"
    "\n"
    "Follows the primary's journal stream (KIROKU_<SHARD> on NATS JetStream):\n"
    "every record is verified as an auditor would (its signature with the key\n"
    "valid at its seq, its prev link, its time, its payload's commitment) and\n"
    "each range is applied, with the views, only once its signed checkpoint\n"
    "verifies it. DIR holds a journal restored from a backup generation of the\n"
    "primary (kiroku restore), or an earlier follower's data: the follower\n"
    "resumes where it stopped, or finds the stream message holding the\n"
    "journal's next record; a stream that no longer holds it is refused, naming\n"
    "the backup needed. --shard NAME (default main) names the stream. --nats\n"
    "and --shard default to the settings cluster.nats and cluster.shard of\n"
    "--config FILE (default DIR/kiroku.conf if it exists), as for serve.\n"
    "\n"
    "--listen URL (repeatable; tcp://, tls+tcp://, ipc://) serves every read op\n"
    "over the follower's views, with an operator endpoint (--operator, default\n"
    "ipc://DIR/operator.sock); an op that would append is answered not_primary,\n"
    "naming the client endpoint of the shard's lease holder (watched in the\n"
    "KIROKU_LEASE bucket; this node is --node NAME, default the host name),\n"
    "else --primary URL.\n"
    "--gateway URL and --gateway-operator URL (http://HOST:PORT; with --listen)\n"
    "serve the same reads as JSON over HTTP and the console, as serve's do.\n"
    "--http URL (http://HOST:PORT) serves /metrics and /healthz: the seq applied,\n"
    "the lag behind the stream, faults; unhealthy while not connected to NATS.\n"
    "--json prints one line of JSON once following.\n"
    "\n"
    "A record or checkpoint that does not verify stops the follower: nothing\n"
    "after the last verified checkpoint is applied, and the seq and the reason\n"
    "are printed; the process ends, unless --keep-serving: then it goes on\n"
    "serving reads of what was verified, /healthz saying it stopped, until\n"
    "SIGINT or SIGTERM.\n"
    "\n"
    "Exit status: 0 after SIGINT or SIGTERM; 1 stopped by a fault in the stream\n"
    "(with --keep-serving, at the signal after it); 2 usage; 3 could not start,\n"
    "or the stream cannot bring this journal level (restore a newer backup).\n";

struct follow_args {
    struct cli_common co;
    const char *nats, *shard, *primary, *operator_url, *http, *node;
    const char *gateway, *gateway_op; /* --gateway, --gateway-operator, or NULL */
    bool keep_serving;                /* --keep-serving: a fault does not end the process */
    const char *config_path;          /* --config, or NULL: DIR/kiroku.conf if it exists */
    struct kr_config *cfg;            /* loaded by follow_config */
    natsConnection *lease_nc;         /* the lease's connection, or NULL */
    struct lease *lease;              /* the shard's lease, watched, or NULL */
    jsCtx *js;                        /* over lease_nc, for the keyring; or NULL */
    struct kr_keyring *kr;            /* tenant keys fetched where missing; or NULL */
    const char *listen[KR_API_LISTEN_MAX];
    size_t nlisten;
};

static int follow_parse(int argc, char **argv, struct follow_args *a)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"nats", required_argument, 0, 'n'},
                                         {"shard", required_argument, 0, 's'},
                                         {"listen", required_argument, 0, 'l'},
                                         {"operator", required_argument, 0, 'o'},
                                         {"primary", required_argument, 0, 'p'},
                                         {"http", required_argument, 0, 'H'},
                                         {"gateway", required_argument, 0, 'G'},
                                         {"gateway-operator", required_argument, 0, 'g'},
                                         {"node", required_argument, 0, 'N'},
                                         {"keep-serving", no_argument, 0, 'K'},
                                         {"config", required_argument, 0, 'c'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            a->nats = optarg;
            break;
        case 's':
            a->shard = optarg;
            break;
        case 'o':
            a->operator_url = optarg;
            break;
        case 'p':
            a->primary = optarg;
            break;
        case 'H':
            a->http = optarg;
            break;
        case 'G':
            a->gateway = optarg;
            break;
        case 'g':
            a->gateway_op = optarg;
            break;
        case 'N':
            a->node = optarg;
            break;
        case 'K':
            a->keep_serving = true;
            break;
        case 'c':
            a->config_path = optarg;
            break;
        case 'l':
            if (a->nlisten == KR_API_LISTEN_MAX) {
                fprintf(stderr, "kiroku: follow: at most %u --listen\n", KR_API_LISTEN_MAX);
                return CLI_USAGE;
            }
            a->listen[a->nlisten++] = optarg;
            break;
        default:
            if ((rc = cli_common_option(c, follow_usage, &a->co)) != CLI_CONTINUE)
                return rc;
        }
    }
    bool tls = false;
    for (int i = 0; i < 2; i++) {
        const char *url = i ? a->gateway_op : a->gateway;
        if (url && (!a->nlisten || !api_gateway_url_ok(url, &tls) || tls)) {
            fprintf(stderr, "kiroku: follow: %s %s: http://HOST:PORT, with --listen\n",
                    i ? "--gateway-operator" : "--gateway", url);
            return CLI_USAGE;
        }
    }
    return optind == argc ? CLI_CONTINUE : cli_usage(follow_usage);
}

/* The settings file (--config, else DIR/kiroku.conf when there is one):
 * cluster.nats and cluster.shard stand in for --nats and --shard, as for
 * serve --nats; then both are checked. CLI_CONTINUE or the exit code. */
static int follow_config(struct follow_args *a, const char *data)
{
    char dflt[KR_PATH_MAX], why[256];
    const char *path = a->config_path;
    if (!path && kr_path_join(dflt, sizeof dflt, data, "kiroku.conf") != KR_OK)
        return cli_fail("follow: --data", KR_ETOOLARGE);
    path = path ? path : dflt;
    kr_err err = kr_config_load(path, &a->cfg, why, sizeof why);
    if (err == KR_ENOTFOUND && !a->config_path)
        err = kr_config_load(NULL, &a->cfg, why, sizeof why);
    if (err) {
        fprintf(stderr, "kiroku: follow: %s: %s\n", path,
                err == KR_EINVAL ? why : kr_strerror(err));
        return err == KR_EINVAL ? CLI_USAGE : CLI_FAIL;
    }
    if (!a->nats)
        a->nats = kr_config_str(a->cfg, "cluster.nats");
    if (!a->shard)
        a->shard = kr_config_str(a->cfg, "cluster.shard");
    if (!a->nats || !a->nats[0]) {
        fprintf(stderr, "kiroku: follow: no NATS servers (--nats, or the setting cluster.nats)\n");
        return CLI_USAGE;
    }
    char stream[KR_CLUSTER_NAME_MAX], subject[KR_CLUSTER_NAME_MAX];
    if (a->shard && cluster_names(a->shard, stream, subject, sizeof stream) != KR_OK) {
        fprintf(stderr, "kiroku: follow: shard %s: a shard is named [a-z0-9-]{1,32}\n", a->shard);
        return CLI_USAGE;
    }
    return CLI_CONTINUE;
}

/* The primary's client endpoint, for not_primary replies: the lease
 * holder's, else --primary. */
static void follow_primary(void *arg, char *out, size_t cap)
{
    const struct follow_args *a = arg;
    out[0] = '\0';
    if (a->lease)
        lease_endpoint(a->lease, out, cap);
    if (!out[0])
        snprintf(out, cap, "%s", a->primary ? a->primary : "");
}

/* The follower stopped on its own: wake the main thread. */
static void follow_stopped(void *arg)
{
    (void)arg;
    kill(getpid(), SIGUSR1);
}

static void follow_print(const struct follow_args *a, const struct api_server *s,
                         const struct api_http *h, const char *data, uint64_t size)
{
    const char *const *urls = NULL;
    size_t nurls = s ? api_server_urls(s, &urls) : 0;
    char stream[KR_CLUSTER_NAME_MAX], subject[KR_CLUSTER_NAME_MAX];
    if (cluster_names(a->shard ? a->shard : CLUSTER_SHARD_DEFAULT, stream, subject,
                      sizeof stream) != KR_OK)
        stream[0] = '\0';
    if (a->co.json) {
        printf("{\"data\":");
        cli_json_str(stdout, data, strlen(data));
        printf(",\"stream\":");
        cli_json_str(stdout, stream, strlen(stream));
        printf(",\"size\":%" PRIu64 ",\"listen\":[", size);
        for (size_t i = 0; i + 1 < nurls; i++) {
            printf(i ? "," : "");
            cli_json_str(stdout, urls[i], strlen(urls[i]));
        }
        printf("]");
        if (nurls) {
            printf(",\"operator\":");
            cli_json_str(stdout, urls[nurls - 1], strlen(urls[nurls - 1]));
        }
        if (h) {
            printf(",\"http\":");
            cli_json_str(stdout, api_http_url(h), strlen(api_http_url(h)));
        }
        if (s)
            serve_print_gateways(s, true);
        printf(",\"pid\":%ld}\n", (long)getpid());
    } else {
        printf("kiroku: following %s into %s (%" PRIu64 " records)\n", stream, data, size);
        for (size_t i = 0; i + 1 < nurls; i++)
            printf("  client (reads):  %s\n", urls[i]);
        if (nurls)
            printf("  operator:        %s\n", urls[nurls - 1]);
        if (h)
            printf("  http:            %s (/metrics, /healthz)\n", api_http_url(h));
        if (s)
            serve_print_gateways(s, false);
        printf("stop with Ctrl-C (SIGINT) or SIGTERM\n");
    }
    fflush(stdout);
}

/* Waits for a signal; returns the exit code (a fault's is printed). */
static int follow_wait(struct api_follower *f, const sigset_t *sigs, bool json, bool keep)
{
    int sig = 0;
    while (sigwait(sigs, &sig) != 0)
        ;
    if (sig != SIGUSR1) {
        if (!json)
            fprintf(stderr, "kiroku: stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        return CLI_OK;
    }
    struct api_follower_status st;
    api_follower_status(f, &st);
    fprintf(stderr, "kiroku: follow: stopped at seq %" PRIu64 ": %s (%s)\n", st.seq, st.what,
            kr_strerror(st.err));
    int rc = st.faults ? CLI_BAD : CLI_FAIL;
    if (keep) { /* reads of what was verified, and /healthz saying why, until told */
        fprintf(stderr, "kiroku: follow: still serving reads until SIGINT or SIGTERM\n");
        while (sigwait(sigs, &sig) != 0 || sig == SIGUSR1)
            ;
    }
    return rc;
}

/* The operators' HTTP endpoint with the follower's metrics and health. */
static kr_err follow_http(const char *url, struct kr_domain *d, struct api_follower *f,
                          struct api_metrics **m, struct api_http **h)
{
    const char *why = "";
    kr_err err = api_metrics_new(d, NULL, m);
    if (!err) {
        api_metrics_set_follower(*m, f);
        err = api_http_start(url, *m, h, &why);
    }
    if (err) {
        fprintf(stderr, "kiroku: follow: --http %s: %s%s%s\n", url, why, why[0] ? ": " : "",
                kr_strerror(err));
        api_metrics_free(*m);
        *m = NULL;
    }
    return err;
}

/* Opens the follower's domain in data (kr_domain_options.follower: no
 * appends, the keystore required); CLI_CONTINUE or the exit code. */
static int follow_open(const char *data, struct kr_domain **d)
{
    struct jrn_start_fault sf = {0};
    struct kr_domain_options o = {.dir = data, .follower = true, .start_fault = &sf};
    kr_err err = dom_open(&o, d);
    if (err == KR_ECORRUPT && sf.what[0]) {
        fprintf(stderr, "kiroku: follow: %s fails the start check at seq %" PRIu64 ": %s\n", data,
                sf.seq, sf.what);
        return CLI_FAIL;
    }
    if (err == KR_ENOTFOUND) {
        fprintf(stderr,
                "kiroku: follow: no journal, or no keystore, in %s (restore a backup "
                "generation of the primary into it first: kiroku restore GEN --data %s "
                "--pubkey B64)\n",
                data, data);
        return CLI_FAIL;
    }
    return err ? cli_fail_open(data, err) : CLI_CONTINUE;
}

/* Watches the shard's lease (api/lease.h), so that not_primary names
 * whoever holds it now. Without NATS at start, or a lease that will not
 * open, not_primary names --primary: said once, not fatal. */
static void follow_lease_open(struct follow_args *a)
{
    char host[KR_NODE_NAME_MAX + 1] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !nkv_node_name_ok(host))
        snprintf(host, sizeof host, "follower");
    struct lease_options lo = {.shard = a->shard ? a->shard : CLUSTER_SHARD_DEFAULT,
                               .node = a->node ? a->node : host};
    kr_err err = nkv_connect(a->nats, &a->lease_nc);
    if (!err && (err = lease_open(a->lease_nc, &lo, &a->lease))) {
        natsConnection_Destroy(a->lease_nc);
        a->lease_nc = NULL;
    }
    if (err)
        fprintf(stderr, "kiroku: follow: the lease cannot be watched (%s): not_primary names %s\n",
                kr_strerror(err), a->primary ? a->primary : "no primary");
    int replicas = 1;
    for (const char *p = a->nats; *p && replicas < 3; p++)
        replicas += *p == ',';
    if (!err && natsConnection_JetStream(&a->js, a->lease_nc, NULL) == NATS_OK &&
        (err = kr_keyring_open(a->js, replicas, &a->kr)))
        fprintf(stderr,
                "kiroku: follow: the keyring cannot be opened (%s): tenant keys come "
                "only from this keystore\n",
                kr_strerror(err));
}

static void follow_lease_close(struct follow_args *a)
{
    kr_keyring_close(a->kr);
    jsCtx_Destroy(a->js);
    a->kr = NULL;
    a->js = NULL;
    lease_close(a->lease);
    natsConnection_Destroy(a->lease_nc);
    a->lease = NULL;
    a->lease_nc = NULL;
}

/* With the domain open: the follower, the server, the HTTP endpoint, then
 * waiting for a signal and stopping. */
static int follow_serve(struct follow_args *a, struct kr_domain *d, const char *data,
                        const sigset_t *sigs)
{
    struct api_follower_options fo = {
        .nats = a->nats, .shard = a->shard, .d = d, .stopped = follow_stopped};
    struct api_follower *f = NULL;
    const char *why = "";
    kr_err err = api_follower_start(&fo, &f, &why);
    if (err) {
        fprintf(stderr, "kiroku: follow: %s: %s\n", why, kr_strerror(err));
        return CLI_FAIL;
    }
    struct api_server *s = NULL;
    struct api_server_options so = {.listen = a->listen,
                                    .nlisten = a->nlisten,
                                    .operator_url = a->operator_url,
                                    .no_mailer = true,
                                    .gateway_url = a->gateway,
                                    .gateway_operator_url = a->gateway_op};
    if (a->nlisten && (err = api_server_start(&so, d, &s, &why))) {
        fprintf(stderr, "kiroku: follow: %s: %s\n", why, kr_strerror(err));
        api_follower_stop(f);
        return CLI_FAIL;
    }
    struct api_metrics *m = NULL;
    struct api_http *h = NULL;
    if (a->http && (err = follow_http(a->http, d, f, &m, &h))) {
        api_server_stop(s);
        api_follower_stop(f);
        return CLI_FAIL;
    }
    follow_print(a, s, h, data, jrn_size(d->j));
    int rc = follow_wait(f, sigs, a->co.json, a->keep_serving);
    api_http_stop(h);
    api_metrics_free(m);
    api_server_stop(s);
    api_follower_stop(f);
    return rc;
}

static int follow_run(struct follow_args *a, const char *data, const sigset_t *sigs)
{
    struct kr_domain *d = NULL;
    int rc = follow_open(data, &d);
    if (rc != CLI_CONTINUE)
        return rc;
    follow_lease_open(a);
    if (a->kr)
        ks_set_remote(d->ks, kr_keyring_remote(a->kr));
    dom_set_follower(d, follow_primary, a);
    rc = follow_serve(a, d, data, sigs);
    dom_close(d);
    follow_lease_close(a);
    return rc;
}

int cmd_follow(int argc, char **argv)
{
    struct follow_args a;
    int rc = follow_parse(argc, argv, &a);
    if (rc == CLI_CONTINUE)
        rc = follow_config(&a, cli_data_dir(a.co.data));
    if (rc != CLI_CONTINUE) {
        kr_config_free(a.cfg);
        return rc;
    }
    /* Before any thread exists, so that every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = follow_run(&a, cli_data_dir(a.co.data), &sigs);
    nats_Close(); /* the client library's threads and memory */
    kr_config_free(a.cfg);
    return rc;
}
