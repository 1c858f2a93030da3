/*
 * nats_cluster.h: a NATS JetStream cluster on loopback, for tests and for
 * `kiroku bench replicate`
 * (replication, leases and the shard map).
 *
 * kr_nats_start runs n `nats-server` processes (Debian's nats-server, found
 * on PATH or in /usr/sbin), each with JetStream on, a client port and (n > 1)
 * a cluster port picked free on 127.0.0.1, a store directory and a log file
 * under one scratch directory. It returns once the cluster takes a stream of
 * n replicas (a JetStream meta leader is elected and every node is routed), so
 * a test can create its streams and buckets at once. Each process is told to
 * die with the test process (PR_SET_PDEATHSIG), so an aborted test leaves no
 * server behind.
 *
 * Not thread-safe: one thread drives a cluster.
 */
#ifndef KR_NATS_CLUSTER_H
#define KR_NATS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define KR_NATS_NODES_MAX 5

struct kr_nats_node {
    pid_t pid; /* 0 when stopped */
    int port;  /* client port */
    int cluster_port;
    char url[64]; /* nats://127.0.0.1:PORT */
    char conf[512];
    char log[512];
    /* While the node is stopped: sockets bound to its two ports, so that no
     * other process (another test's server) takes them before it restarts;
     * -1 when not held. */
    int reserve[2];
};

struct kr_nats_cluster {
    size_t n;
    char dir[256]; /* scratch directory: configs, stores, logs */
    char urls[KR_NATS_NODES_MAX * 64];
    struct kr_nats_node node[KR_NATS_NODES_MAX];
};

/* Starts an n-node cluster (1 <= n <= KR_NATS_NODES_MAX) and waits until it
 * takes an n-replica stream. NULL when a server cannot be started or the
 * cluster is not ready within its deadline (its logs are printed). */
struct kr_nats_cluster *kr_nats_start(size_t n);

/* "nats://127.0.0.1:P1,nats://127.0.0.1:P2,...": every node's client URL. */
const char *kr_nats_urls(const struct kr_nats_cluster *c);

/* Sends node i signal sig (SIGTERM: a clean stop; SIGKILL: a crash) and
 * waits for it to exit. Its store and configuration stay, and its ports stay
 * reserved for it (bound by this process) until it starts again. */
void kr_nats_stop_node(struct kr_nats_cluster *c, size_t i, int sig);

/* Starts stopped node i again on the same ports and store, and waits until
 * it answers clients; a server that exits at once (a port not yet free) is
 * started again. False, with its log printed, if it does not answer within
 * the deadline. */
bool kr_nats_start_node(struct kr_nats_cluster *c, size_t i);

/* js_Publish of data[0..len) to subj, tried again while JetStream answers
 * that nobody takes it (NATS_NO_RESPONDERS, NATS_TIMEOUT: a stream leader
 * being elected, which a loaded machine makes seconds long), for at most
 * 30 s. The last status. (jsCtx is libnats'.) */
typedef struct __jsCtx jsCtx;
int kr_nats_publish(jsCtx *js, const char *subj, const void *data, int len);

/* Whether `nats-server` can be run here (tests without it skip). */
bool kr_nats_available(void);

/* Stops every node and removes the scratch directory. Accepts NULL. */
void kr_nats_free(struct kr_nats_cluster *c);

#endif
