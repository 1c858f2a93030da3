/*
 * nats_cluster.c: n nats-server processes on loopback (see nats_cluster.h).
 */
#include "nats_cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a cluster may take to elect its JetStream meta leader and take a
 * replicated stream, and a restarted node to answer. */
#define READY_MS   60000u
#define RESTART_MS 60000u

static const char *server_bin(void)
{
    static const char *const where[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server",
                                        "/usr/local/bin/nats-server"};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++)
        if (access(where[i], X_OK) == 0)
            return where[i];
    return NULL;
}

bool kr_nats_available(void)
{
    return server_bin() != NULL;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A port the kernel says is free now on 127.0.0.1 (another process may take
 * it before the server binds it; start retries with fresh ports then). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Binds a socket to 127.0.0.1:port with SO_REUSEADDR (so a port in
 * TIME_WAIT is taken too), not listening: the kernel gives the port to no
 * other socket meanwhile, and the server, which also binds with
 * SO_REUSEADDR, takes it back once this one is closed. -1 on failure. */
static int reserve_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void release_ports(struct kr_nats_node *nd)
{
    for (int k = 0; k < 2; k++) {
        if (nd->reserve[k] >= 0)
            close(nd->reserve[k]);
        nd->reserve[k] = -1;
    }
}

static bool write_conf(const struct kr_nats_cluster *c, size_t i)
{
    const struct kr_nats_node *nd = &c->node[i];
    FILE *f = fopen(nd->conf, "w");
    if (!f)
        return false;
    fprintf(f,
            "server_name: n%zu\nlisten: 127.0.0.1:%d\nlog_file: \"%s\"\n"
            "jetstream {\n  store_dir: \"%s/store%zu\"\n  max_memory_store: 256MB\n"
            "  max_file_store: 4GB\n}\n",
            i, nd->port, nd->log, c->dir, i);
    if (c->n > 1) {
        fprintf(f, "cluster {\n  name: kiroku-test\n  listen: 127.0.0.1:%d\n  routes: [\n",
                nd->cluster_port);
        for (size_t k = 0; k < c->n; k++)
            if (k != i)
                fprintf(f, "    nats-route://127.0.0.1:%d\n", c->node[k].cluster_port);
        fprintf(f, "  ]\n}\n");
    }
    return fclose(f) == 0;
}

static bool spawn(struct kr_nats_node *nd)
{
    const char *bin = server_bin();
    if (!bin)
        return false;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(126);
        int in = open("/dev/null", O_RDWR);
        if (in < 0 || dup2(in, 0) < 0 || dup2(in, 1) < 0 || dup2(in, 2) < 0)
            _exit(126);
        execl(bin, bin, "-c", nd->conf, (char *)NULL);
        _exit(127);
    }
    nd->pid = pid;
    return true;
}

static void print_logs(const struct kr_nats_cluster *c)
{
    for (size_t i = 0; i < c->n; i++) {
        FILE *f = fopen(c->node[i].log, "r");
        if (!f)
            continue;
        fprintf(stderr, "---- nats-server n%zu ----\n", i);
        char line[512];
        while (fgets(line, sizeof line, f))
            fputs(line, stderr);
        fclose(f);
    }
}

/* Whether the cluster takes a stream of n replicas now. */
static bool takes_stream(const struct kr_nats_cluster *c)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsOptions *o = NULL;
    bool ok = false;
    /* libnats 3.4 takes a list of servers only as an array (natsOptions_SetURL
     * with a comma-separated list finds no server) */
    const char *urls[KR_NATS_NODES_MAX];
    for (size_t i = 0; i < c->n; i++)
        urls[i] = c->node[i].url;
    if (natsOptions_Create(&o) != NATS_OK ||
        natsOptions_SetServers(o, urls, (int)c->n) != NATS_OK ||
        natsOptions_SetTimeout(o, 2000) != NATS_OK || natsConnection_Connect(&nc, o) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        goto out;
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = "KR_HARNESS_READY";
    const char *subj = "kr.harness.ready";
    sc.Subjects = &subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_MemoryStorage;
    sc.Replicas = (int64_t)c->n;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    if (js_AddStream(&si, js, &sc, &jo, &jerr) == NATS_OK) {
        jsStreamInfo_Destroy(si);
        jsPubAck *pa = NULL;
        /* a publish acknowledged by the stream's leader: replication works */
        if (js_Publish(&pa, js, subj, "x", 1, NULL, &jerr) == NATS_OK) {
            jsPubAck_Destroy(pa);
            ok = true;
        }
        (void)js_DeleteStream(js, sc.Name, &jo, &jerr);
    }
out:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    return ok;
}

int kr_nats_publish(jsCtx *js, const char *subj, const void *data, int len)
{
    natsStatus s = NATS_ERR;
    for (int i = 0; i < 300; i++) {
        jsPubAck *pa = NULL;
        s = js_Publish(&pa, js, subj, data, len, NULL, NULL);
        jsPubAck_Destroy(pa);
        if (s != NATS_NO_RESPONDERS && s != NATS_TIMEOUT)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
    }
    return (int)s;
}

static bool answers(const struct kr_nats_node *nd)
{
    natsConnection *nc = NULL;
    natsOptions *o = NULL;
    bool ok = natsOptions_Create(&o) == NATS_OK && natsOptions_SetURL(o, nd->url) == NATS_OK &&
              natsOptions_SetTimeout(o, 1000) == NATS_OK &&
              natsConnection_Connect(&nc, o) == NATS_OK;
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    return ok;
}

static bool wait_until(bool (*ready)(const void *), const void *arg, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    unsigned pause = 10;
    while (!ready(arg)) {
        if (now_ms() >= end)
            return false;
        pause_ms(pause);
        pause = pause < 500 ? pause * 2 : pause;
    }
    return true;
}

static bool cluster_ready(const void *c)
{
    return takes_stream(c);
}

static bool node_answers(const void *nd)
{
    return answers(nd);
}

static bool make_dir(struct kr_nats_cluster *c)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof c->dir, "%s/kiroku-nats-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(c->dir) != NULL;
}

static void setup_nodes(struct kr_nats_cluster *c)
{
    size_t off = 0;
    c->urls[0] = '\0';
    for (size_t i = 0; i < c->n; i++) {
        struct kr_nats_node *nd = &c->node[i];
        nd->reserve[0] = nd->reserve[1] = -1;
        nd->port = free_port();
        nd->cluster_port = free_port();
        snprintf(nd->url, sizeof nd->url, "nats://127.0.0.1:%d", nd->port);
        snprintf(nd->conf, sizeof nd->conf, "%s/n%zu.conf", c->dir, i);
        snprintf(nd->log, sizeof nd->log, "%s/n%zu.log", c->dir, i);
        off += (size_t)snprintf(c->urls + off, sizeof c->urls - off, "%s%s", i ? "," : "", nd->url);
    }
}

struct kr_nats_cluster *kr_nats_start(size_t n)
{
    if (n < 1 || n > KR_NATS_NODES_MAX || !kr_nats_available())
        return NULL;
    struct kr_nats_cluster *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->n = n;
    if (!make_dir(c)) {
        free(c);
        return NULL;
    }
    setup_nodes(c);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = write_conf(c, i) && spawn(&c->node[i]);
    if (ok && !wait_until(cluster_ready, c, READY_MS)) {
        fprintf(stderr, "nats_cluster: %zu-node cluster not ready within %u ms\n", n, READY_MS);
        print_logs(c);
        ok = false;
    }
    if (!ok) {
        kr_nats_free(c);
        return NULL;
    }
    return c;
}

const char *kr_nats_urls(const struct kr_nats_cluster *c)
{
    return c->urls;
}

void kr_nats_stop_node(struct kr_nats_cluster *c, size_t i, int sig)
{
    if (i >= c->n || c->node[i].pid <= 0)
        return;
    kill(c->node[i].pid, sig);
    int st;
    while (waitpid(c->node[i].pid, &st, 0) < 0 && errno == EINTR)
        ;
    c->node[i].pid = 0;
    c->node[i].reserve[0] = reserve_port(c->node[i].port);
    c->node[i].reserve[1] = c->n > 1 ? reserve_port(c->node[i].cluster_port) : -1;
}

/* Whether node nd's server is still running (it exits at once when it
 * cannot bind its ports). */
static bool running(struct kr_nats_node *nd)
{
    int st;
    if (nd->pid <= 0)
        return false;
    if (waitpid(nd->pid, &st, WNOHANG) == nd->pid) {
        nd->pid = 0;
        return false;
    }
    return true;
}

bool kr_nats_start_node(struct kr_nats_cluster *c, size_t i)
{
    if (i >= c->n || c->node[i].pid > 0) {
        fprintf(stderr, "nats_cluster: node %zu is not a stopped node\n", i);
        return false;
    }
    struct kr_nats_node *nd = &c->node[i];
    release_ports(nd);
    uint64_t end = now_ms() + RESTART_MS;
    while (now_ms() < end) {
        if (!running(nd) && !spawn(nd))
            break;
        if (wait_until(node_answers, nd, 2000))
            return true;
    }
    fprintf(stderr, "nats_cluster: node %zu did not answer within %u ms\n", i, RESTART_MS);
    print_logs(c);
    return false;
}

static void rmrf(const char *path)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", "--", path, (char *)NULL);
        _exit(127);
    }
    int st;
    if (pid > 0)
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
}

void kr_nats_free(struct kr_nats_cluster *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        kr_nats_stop_node(c, i, SIGTERM);
        release_ports(&c->node[i]);
    }
    if (c->dir[0])
        rmrf(c->dir);
    free(c);
}
