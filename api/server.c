/*
 * server.c: the nng REP endpoints, their contexts and threads (see server.h).
 *
 * Design notes. Requests. Each endpoint has a fixed number of nng
 * contexts (slots: `serve --inflight`), each with one aio whose callback
 * (slot_cb, on nng's threads) only admits the request and queues it: nng's
 * threads never run a handler. A deciding thread (pool "kr-api", `serve
 * --workers`, about one per core) decodes and decides it
 * (api_handle_async): a read runs on its own read transaction and its reply
 * is sent at once; a write of an ASYNC op (dom_op_route) is decided and its
 * append submitted to the journal without waiting, and the reply, built at
 * once and its bytes counted against the connection, is sent by the
 * append's completion on the journal's writer thread, which for a durable
 * append takes no lock: atomics and nng_ctx_send (slot_committed /
 * slot_answer; a counter makes whichever of the decision and the completion
 * comes last send it; only the last request to end takes the server's lock,
 * to wake a stop). A failed append is queued (one short lock) to be
 * answered, or a conflict decided again, on a deciding thread (past
 * KR_CMD_RETRIES, on the pool). Every other op
 * (Argon2id, heavy reads, ops answered from their commit, refusals that
 * are recorded) runs whole with api_handle_from on the pool ("kr-api-pool",
 * KR_API_POOL_THREADS), the only threads that may wait. So no thread waits
 * for a flush on the write path, and the requests in flight are bounded by
 * the contexts, not by threads; the send's completion makes the context
 * receive again. Hostile peers are handled by nng and the bounds set here:
 * a frame over the receive cap makes nng drop that connection before it
 * buffers the frame; half a frame only holds that connection's own receive
 * (transports read asynchronously); a peer that does not read its replies
 * holds a context at most the send timeout, after which its connection is
 * closed.
 *
 * Connections: a table (struct conn, under conn_mu) has one row per open
 * pipe, added at ADD_PRE (where the endpoint's cap and the per-peer cap
 * refuse it) and removed at REM_POST. Contexts count requests in flight and
 * reply bytes waiting per row, and mark rows for closing; one janitor thread
 * closes marked and idle connections (see "Connections" below for why never
 * a request's thread, and how).
 *
 * Stopping: `stopping` is set under the lock, after which a request
 * received is answered `unavailable` instead of running; stop waits until
 * no request is running (`busy` is 0: every one decided, its append
 * completed and its reply handed to nng), gives the transports
 * KR_API_DRAIN_MS to write the queued replies, has the janitor close every
 * connection (at most KR_API_STOP_CONNS_MS), then closes the sockets, which
 * ends every context's receive, stops their aios, and joins the threads
 * and the janitor.
 */
#include "server.h"

#include "gateway.h"
#include "keys.h"
#include "mailer.h"
#include "protocol.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

kr_err kr_err_from_nng(int rv)
{
    switch (rv) {
    case 0:
        return KR_OK;
    case NNG_ENOMEM:
        return KR_ENOMEM;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
    case NNG_ENOTSUP:
    case NNG_EBADTYPE:
        return KR_EINVAL;
    case NNG_EADDRINUSE:
    case NNG_EBUSY:
        return KR_EBUSY;
    case NNG_ECLOSED:
    case NNG_ESTATE:
        return KR_ECLOSED;
    case NNG_EMSGSIZE:
        return KR_ETOOLARGE;
    case NNG_ENOENT:
        return KR_ENOTFOUND;
    case NNG_ECRYPTO:
    case NNG_EPEERAUTH:
        return KR_ECRYPTO;
    default:
        return KR_EIO;
    }
}

enum { EP_CLIENT, EP_OPERATOR, EP__COUNT };

enum admit { ADMIT_RUN, ADMIT_REFUSE, ADMIT_DROP };

struct api_server;
struct slot;

/* Threads that take requests from a queue (see "Requests"). */
struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct slot *head, *tail;
    bool stop, inited;
    const char *name;
    pthread_t *threads;
    unsigned n;
};

enum job {
    JOB_DECIDE, /* api_handle_async, on a deciding thread */
    JOB_RUN,    /* api_handle_from, on the pool */
    JOB_FAIL,   /* answer the failed append (commit_err) */
};

/* One request in flight: an nng context with its aio, from receive to send. */
struct slot {
    struct api_server *s;
    struct endpoint *ep;
    nng_ctx ctx;
    bool ctx_open;
    nng_aio *aio;  /* callback slot_cb */
    bool sending;  /* the aio is on a send */
    nng_msg *msg;  /* the request, kept until its reply goes out */
    nng_msg *rep;  /* a pending request's reply */
    uint32_t pipe; /* the connection it came on */
    uint8_t source[16];
    enum admit admit;
    bool busy;     /* counted in the server's busy */
    size_t queued; /* reply bytes counted against the connection */
    enum job job;
    unsigned attempts; /* appends that met a conflict */
    atomic_int parts;  /* decision and append: the last one answers */
    kr_err commit_err; /* the append's outcome */
    struct api_async info;
    struct kr_wbuf reply; /* capped at KR_API_REPLY_MAX, wiped */
    struct slot *next;    /* in a pool's queue */
};

struct endpoint {
    struct api_server *s;
    nng_socket sock;
    bool open;
    bool operator_ep;
    nng_tls_config *tls;
    struct slot *slots;
    unsigned nslots;
    struct pool fast; /* decides requests: never waits for a flush */
    struct pool slow; /* the pool: Argon2id, heavy reads, ops that wait */
    /* Under the server's conn_mu: */
    unsigned conns_max;
    unsigned nconns;
    unsigned idle_ctx; /* contexts waiting for a request */
    /* Requests of one peer address (tcp) in flight at once: half the
     * contexts (at least 1), so one address cannot take them all; UINT_MAX
     * (no bound) when the per-peer cap is the endpoint's cap (behind a
     * proxy every client has one address). */
    unsigned peer_inflight_max;
    uint64_t busy_end_ms; /* when every context was last busy */
};

/* One open connection (nng pipe), from ADD_PRE to REM_POST. */
struct conn {
    uint32_t id; /* nng pipe id; 0 = a free slot */
    uint8_t ep;
    bool tcp;     /* tcp:// or tls+tcp://: it has addresses and a socket */
    bool closing; /* to be closed by the janitor */
    bool shut;    /* the janitor began closing it */
    bool forced;  /* the janitor closed it through nng */
    uint8_t source[16];
    unsigned inflight; /* requests admitted, not yet answered */
    size_t queued;     /* bytes of replies waiting for it to take them */
    uint64_t last_ms;  /* opened, or its last complete request */
    uint64_t shut_ms;
};

struct api_server {
    struct kr_domain *d;
    struct endpoint ep[EP__COUNT];
    char urls[KR_API_LISTEN_MAX + 1][KR_API_URL_MAX];
    const char *url_ptrs[KR_API_LISTEN_MAX + 1];
    size_t nurls;
    unsigned conns_per_peer;
    int send_timeout_ms;
    int idle_timeout_ms; /* 0 = never */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping; /* under mu */
    /* Requests running: raised under mu (with stopping), lowered without it;
     * the one that lowers it to 0 broadcasts cv under mu. */
    atomic_uint busy;
    atomic_uint pending; /* requests waiting for their append's completion */
    /* Connections: conn_mu guards the table, the endpoints' counts and the
     * janitor's state; no nng call is made while it is held. */
    pthread_mutex_t conn_mu;
    pthread_cond_t janitor_cv; /* CLOCK_MONOTONIC */
    struct conn *conns;
    unsigned nslots;
    bool janitor_running, janitor_stop;
    pthread_t janitor;
    struct mailer *mailer;
    struct api_router router;          /* elsewhere NULL = none */
    struct api_gateway *gw[EP__COUNT]; /* NULL = not asked for */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- Connections ----
 *
 * Why request threads never call nng_pipe_close. nng 1.5.2's tcp transport (and
 * tls's, built the same way) finishes a read or write of part of a message
 * on a task thread, which then submits the next part. If the pipe is closed
 * in between, nni_aio_begin refuses that submission without completing it,
 * so the protocol's aio on that pipe never completes; nng frees pipes on one
 * reaper thread, which then waits on that aio forever: no connection is ever
 * freed again (sockets stay open in TCP CLOSED, each holding a slot) and
 * nng_close, hence SIGTERM, hangs. (Upstream fixed the receive side after
 * 1.5.2, nng #1636.) Closing at a moment nng chose is safe: so the janitor
 * disconnects a tcp connection's socket (connect(2) to AF_UNSPEC: a reset to
 * the peer, the descriptor stays nng's), after which every transfer on it
 * fails and nng closes the pipe from its own error path. Only a pipe nng did not close within
 * KR_API_CLOSE_GRACE_MS (one with no transfer pending, waiting for a context)
 * and ipc:// pipes (no socket to find; local peers) are closed through
 * nng_pipe_close. Pipes are closed through nng at ADD_PRE too, before any
 * transfer. The reset does not close every window: nng's error path is one
 * direction's (a send that fails closes the pipe) while the other may have
 * just read a frame's length on a task thread and not yet asked for its
 * body; that request is refused as above and the reaper waits forever (nng
 * a1bc737b, in 1.6.0, checks for it in the tcp transport). A peer that
 * floods requests and never reads, cut off while the machine is loaded,
 * meets it now and then (server_test's test_never_reads): the remedy
 * is an nng with that check. */

static struct conn *conn_find(struct api_server *s, uint32_t id)
{
    for (unsigned i = 0; i < s->nslots; i++)
        if (s->conns[i].id == id)
            return &s->conns[i];
    return NULL;
}

static unsigned conns_from(const struct api_server *s, const uint8_t source[16])
{
    unsigned n = 0;
    for (unsigned i = 0; i < s->nslots; i++)
        if (s->conns[i].id && s->conns[i].tcp && memcmp(s->conns[i].source, source, 16) == 0)
            n++;
    return n;
}

bool api_server_source(const nng_sockaddr *sa, uint8_t out[16])
{
    memset(out, 0, 16);
    if (sa->s_family == NNG_AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &sa->s_in.sa_addr, 4);
        return true;
    }
    if (sa->s_family == NNG_AF_INET6) {
        memcpy(out, sa->s_in6.sa_addr, 16);
        return true;
    }
    return false;
}

static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct endpoint *ep = arg;
    struct api_server *s = ep->s;
    uint32_t id = (uint32_t)nng_pipe_id(p);
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        uint8_t src[16] = {0};
        nng_sockaddr sa;
        bool tcp = nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0 && api_server_source(&sa, src);
        struct conn *c = NULL;
        pthread_mutex_lock(&s->conn_mu);
        if (ep->nconns < ep->conns_max && (!tcp || conns_from(s, src) < s->conns_per_peer))
            c = conn_find(s, 0);
        if (c) {
            memset(c, 0, sizeof *c);
            c->id = id;
            c->ep = (uint8_t)(ep - s->ep);
            c->tcp = tcp;
            memcpy(c->source, src, 16);
            c->last_ms = now_ms();
            ep->nconns++;
        }
        pthread_mutex_unlock(&s->conn_mu);
        if (!c)
            nng_pipe_close(p); /* before any transfer: safe */
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        pthread_mutex_lock(&s->conn_mu);
        struct conn *c = id ? conn_find(s, id) : NULL;
        if (c) {
            s->ep[c->ep].nconns--;
            memset(c, 0, sizeof *c);
        }
        pthread_cond_broadcast(&s->janitor_cv);
        pthread_mutex_unlock(&s->conn_mu);
    }
}

unsigned api_server_conns(const struct api_server *s)
{
    struct api_server *m = (struct api_server *)s;
    pthread_mutex_lock(&m->conn_mu);
    unsigned n = s->ep[EP_CLIENT].nconns + s->ep[EP_OPERATOR].nconns;
    pthread_mutex_unlock(&m->conn_mu);
    return n;
}

static bool same_addr(const struct sockaddr_storage *a, const nng_sockaddr *n)
{
    if (a->ss_family == AF_INET && n->s_family == NNG_AF_INET) {
        const struct sockaddr_in *i = (const struct sockaddr_in *)a;
        return i->sin_port == n->s_in.sa_port && i->sin_addr.s_addr == n->s_in.sa_addr;
    }
    if (a->ss_family == AF_INET6 && n->s_family == NNG_AF_INET6) {
        const struct sockaddr_in6 *i = (const struct sockaddr_in6 *)a;
        return i->sin6_port == n->s_in6.sa_port && memcmp(&i->sin6_addr, n->s_in6.sa_addr, 16) == 0;
    }
    return false;
}

/* The descriptor of a tcp pipe's socket (the one whose local and remote
 * addresses are the pipe's), or -1. The pipe holds it open until nng frees
 * the pipe, which happens after REM_POST: the caller knows it is not yet. */
static int pipe_socket_fd(nng_pipe p)
{
    nng_sockaddr loc, rem;
    if (nng_pipe_get_addr(p, NNG_OPT_LOCADDR, &loc) != 0 ||
        nng_pipe_get_addr(p, NNG_OPT_REMADDR, &rem) != 0)
        return -1;
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return -1;
    int found = -1, dfd = dirfd(dir);
    struct dirent *de;
    for (unsigned n = 0; found < 0 && n < KR_API_FD_SCAN_MAX && (de = readdir(dir)); n++) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end || end == de->d_name || fd < 0 || fd == dfd)
            continue;
        struct sockaddr_storage a;
        socklen_t len = sizeof a;
        if (getpeername((int)fd, (struct sockaddr *)&a, &len) != 0 || !same_addr(&a, &rem))
            continue;
        len = sizeof a;
        if (getsockname((int)fd, (struct sockaddr *)&a, &len) == 0 && same_addr(&a, &loc))
            found = (int)fd;
    }
    closedir(dir);
    return found;
}

/* Begins closing pipe id (see "Why request threads never call nng_pipe_close"). */
static void conn_shut(uint32_t id, bool tcp)
{
    nng_pipe p = {.id = id};
    int fd = tcp ? pipe_socket_fd(p) : -1;
    /* connect(AF_UNSPEC) disconnects a TCP socket without closing the
     * descriptor: the peer gets a reset, both queues are dropped, and every
     * transfer on it fails at once (shutdown(2) would still let a peer's
     * buffered flood be read first, and wait for the peer to read before its
     * FIN). */
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    if (fd < 0 || connect(fd, &unspec, sizeof unspec) != 0)
        nng_pipe_close(p);
}

/* ---- The janitor ---- */

struct janitor_job {
    uint32_t id;
    bool tcp;
    bool force;
};

/* Decides, under conn_mu, what to close now (at most KR_API_JANITOR_BATCH). */
static unsigned janitor_pick(struct api_server *s, uint64_t now, struct janitor_job *jobs)
{
    unsigned n = 0;
    for (unsigned i = 0; i < s->nslots && n < KR_API_JANITOR_BATCH; i++) {
        struct conn *c = &s->conns[i];
        if (!c->id)
            continue;
        const struct endpoint *ep = &s->ep[c->ep];
        uint64_t since = c->last_ms > ep->busy_end_ms ? c->last_ms : ep->busy_end_ms;
        /* Idle: no complete request for the timeout. While every context is
         * busy a request can wait unseen inside nng: nothing is idle then. */
        if (!c->closing && s->idle_timeout_ms > 0 && c->inflight == 0 && ep->idle_ctx > 0 &&
            now > since && now - since >= (uint64_t)s->idle_timeout_ms)
            c->closing = true;
        if (c->closing && !c->shut) {
            c->shut = true;
            c->shut_ms = now;
            c->forced = !c->tcp;
            jobs[n++] = (struct janitor_job){.id = c->id, .tcp = c->tcp};
        } else if (c->shut && !c->forced && c->inflight == 0 &&
                   now - c->shut_ms >= KR_API_CLOSE_GRACE_MS) {
            c->forced = true;
            jobs[n++] = (struct janitor_job){.id = c->id, .force = true};
        }
    }
    return n;
}

static void janitor_run(const struct janitor_job *jobs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (jobs[i].force)
            nng_pipe_close((nng_pipe){.id = jobs[i].id});
        else
            conn_shut(jobs[i].id, jobs[i].tcp);
    }
}

static void *janitor_main(void *arg)
{
    struct api_server *s = arg;
    pthread_setname_np(pthread_self(), "kr-janitor");
    struct janitor_job jobs[KR_API_JANITOR_BATCH];
    pthread_mutex_lock(&s->conn_mu);
    while (!s->janitor_stop) {
        unsigned n = janitor_pick(s, now_ms(), jobs);
        if (n) {
            pthread_mutex_unlock(&s->conn_mu);
            janitor_run(jobs, n);
            pthread_mutex_lock(&s->conn_mu);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)KR_API_JANITOR_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->janitor_cv, &s->conn_mu, &until);
    }
    pthread_mutex_unlock(&s->conn_mu);
    return NULL;
}

/* Marks connection id for closing and wakes the janitor. */
static void conn_mark_closing_locked(struct api_server *s, struct conn *c)
{
    if (c && !c->closing) {
        c->closing = true;
        pthread_cond_broadcast(&s->janitor_cv);
    }
}

/* ---- Requests ---- */

static void slot_answer(struct slot *sl);

/* Requests in flight from every connection of c's peer address (0 when the
 * endpoint does not bound them per address: ipc://, or behind a proxy). */
static unsigned peer_inflight(const struct api_server *s, const struct endpoint *ep,
                              const struct conn *c)
{
    if (!c->tcp || ep->peer_inflight_max == UINT_MAX)
        return 0;
    unsigned n = 0;
    for (unsigned i = 0; i < s->nslots; i++)
        if (s->conns[i].id && s->conns[i].tcp && memcmp(s->conns[i].source, c->source, 16) == 0)
            n += s->conns[i].inflight;
    return n;
}

/* A context received a request from its pipe: counts it against the
 * connection. DROP: the connection is closing (or gone): the request is not
 * run, so a client that resends it on a new connection does not run it
 * twice. */
static enum admit conn_take(struct slot *sl)
{
    struct api_server *s = sl->s;
    enum admit a = ADMIT_DROP;
    pthread_mutex_lock(&s->conn_mu);
    sl->ep->idle_ctx--;
    struct conn *c = conn_find(s, sl->pipe);
    if (c && !c->closing) {
        c->last_ms = now_ms();
        a = c->inflight >= KR_API_PIPE_INFLIGHT_MAX ||
                    peer_inflight(s, sl->ep, c) >= sl->ep->peer_inflight_max
                ? ADMIT_REFUSE
                : ADMIT_RUN;
        memcpy(sl->source, c->source, 16);
        if (a == ADMIT_RUN)
            c->inflight++;
    }
    pthread_mutex_unlock(&s->conn_mu);
    return a;
}

/* Bytes of replies waiting for every connection from c's peer address. */
static size_t peer_queued(const struct api_server *s, const struct conn *c)
{
    if (!c->tcp)
        return c->queued;
    size_t n = 0;
    for (unsigned i = 0; i < s->nslots; i++)
        if (s->conns[i].id && s->conns[i].tcp && memcmp(s->conns[i].source, c->source, 16) == 0)
            n += s->conns[i].queued;
    return n;
}

/* Before sending a reply of n bytes: false if the connection is gone or
 * closing, or the bytes waiting for it would pass KR_API_PIPE_QUEUED_MAX, or
 * those waiting for its peer address KR_API_PEER_QUEUED_MAX (then it is
 * marked for closing: it does not read its replies). */
static bool conn_queue(struct slot *sl, size_t n)
{
    struct api_server *s = sl->s;
    pthread_mutex_lock(&s->conn_mu);
    struct conn *c = conn_find(s, sl->pipe);
    bool ok = c && !c->closing && c->queued + n <= KR_API_PIPE_QUEUED_MAX &&
              peer_queued(s, c) + n <= KR_API_PEER_QUEUED_MAX;
    if (ok)
        c->queued += n;
    else
        conn_mark_closing_locked(s, c);
    pthread_mutex_unlock(&s->conn_mu);
    return ok;
}

/* The context is done with its request: the queued bytes it counted (0 if
 * none), whether it ran (counted in flight), and whether the connection did
 * not take the reply in time. */
static void conn_release(struct slot *sl, bool timed_out)
{
    struct api_server *s = sl->s;
    pthread_mutex_lock(&s->conn_mu);
    struct conn *c = conn_find(s, sl->pipe);
    if (c) {
        c->queued -= sl->queued;
        if (sl->admit == ADMIT_RUN)
            c->inflight--;
        if (timed_out)
            conn_mark_closing_locked(s, c);
    }
    if (sl->ep->idle_ctx++ == 0)
        sl->ep->busy_end_ms = now_ms();
    pthread_mutex_unlock(&s->conn_mu);
    sl->queued = 0;
}

/* Gives back the reply bytes the slot counted for a reply it will not send
 * (a pending write whose append failed). */
static void conn_unqueue(struct slot *sl)
{
    struct api_server *s = sl->s;
    if (!sl->queued)
        return;
    pthread_mutex_lock(&s->conn_mu);
    struct conn *c = conn_find(s, sl->pipe);
    if (c)
        c->queued -= sl->queued;
    pthread_mutex_unlock(&s->conn_mu);
    sl->queued = 0;
}

/* The request no longer runs: stop may go on once none does. */
static void busy_end(struct slot *sl)
{
    struct api_server *s = sl->s;
    if (!sl->busy)
        return;
    sl->busy = false;
    if (atomic_fetch_sub(&s->busy, 1) == 1) {
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Wipes and frees a message (requests carry passwords and codes, replies
 * tokens). */
static void msg_wipe_free(nng_msg *m)
{
    if (m) {
        sodium_memzero(nng_msg_body(m), nng_msg_len(m));
        nng_msg_free(m);
    }
}

static void slot_recv(struct slot *sl)
{
    sl->sending = false;
    nng_aio_set_timeout(sl->aio, NNG_DURATION_INFINITE);
    nng_ctx_recv(sl->ctx, sl->aio);
}

/* Sends reply m for the slot's request (the request is freed): a refusal only
 * if the connection takes it at once, a reply within the send timeout. No
 * reply (m NULL): the context receives again. Never waits. */
static void slot_send(struct slot *sl, nng_msg *m)
{
    if (sl->msg != m)
        msg_wipe_free(sl->msg);
    sl->msg = NULL;
    bool refusal = sl->admit != ADMIT_RUN;
    if (m && !refusal && !conn_queue(sl, nng_msg_len(m))) {
        msg_wipe_free(m);
        m = NULL;
    } else if (m && !refusal) {
        sl->queued = nng_msg_len(m);
    }
    busy_end(sl);
    if (!m) {
        conn_release(sl, false);
        slot_recv(sl);
        return;
    }
    sl->sending = true;
    nng_aio_set_msg(sl->aio, m);
    nng_aio_set_timeout(sl->aio, refusal ? NNG_DURATION_ZERO : sl->s->send_timeout_ms);
    nng_ctx_send(sl->ctx, sl->aio);
}

/* The slot's reply buffer as a message (the request's, reused); NULL if it
 * could not be built. */
static nng_msg *reply_msg(struct slot *sl, bool reuse)
{
    nng_msg *m = NULL;
    if (reuse) {
        m = sl->msg;
        sodium_memzero(nng_msg_body(m), nng_msg_len(m));
        nng_msg_clear(m);
        sl->msg = NULL;
    } else if (nng_msg_alloc(&m, 0) != 0) {
        m = NULL;
    }
    if (m && nng_msg_append(m, sl->reply.data, sl->reply.size) != 0) {
        nng_msg_free(m);
        m = NULL;
    }
    /* A large reply's block goes back: idle contexts do not each hold up to
     * KR_API_REPLY_MAX after a burst of large replies. */
    kr_wbuf_reset_keep(&sl->reply, KR_API_REPLY_KEEP);
    return m;
}

/* A refusal of the request in the slot, sent at once (on nng's thread). */
static void slot_refuse(struct slot *sl, const char *why)
{
    kr_err err = api_reply_refusal(nng_msg_body(sl->msg), nng_msg_len(sl->msg), KR_ERR_UNAVAILABLE,
                                   why, &sl->reply);
    slot_send(sl, err ? NULL : reply_msg(sl, true));
}

static void pool_push(struct pool *p, struct slot *sl)
{
    pthread_mutex_lock(&p->mu);
    sl->next = NULL;
    if (p->tail)
        p->tail->next = sl;
    else
        p->head = sl;
    p->tail = sl;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* The append of a pending request completed (on the journal's writer
 * thread): whichever of this and the deciding thread comes last goes on. */
static void slot_committed(void *arg, kr_err err)
{
    struct slot *sl = arg;
    sl->commit_err = err;
    if (atomic_fetch_sub(&sl->parts, 1) == 1)
        slot_answer(sl);
}

/* Both the decision and the append of a pending request are done. Durable:
 * its reply goes out now (nng_ctx_send only: this may be the writer).
 * Failed: a conflict is decided again, other failures answered, on the
 * deciding threads (a conflict past KR_CMD_RETRIES on the pool, where
 * dom_exec retries it in its own way). */
static void slot_answer(struct slot *sl)
{
    atomic_fetch_sub(&sl->s->pending, 1);
    if (!sl->commit_err && sl->rep) {
        /* Its bytes were counted when it was decided: atomics and
         * nng_ctx_send only; the send's completion frees the request. */
        api_count_async(&sl->info, KR_OK); /* a failure is counted by its answer */
        nng_msg *m = sl->rep;
        sl->rep = NULL;
        busy_end(sl);
        sl->sending = true;
        nng_aio_set_msg(sl->aio, m);
        nng_aio_set_timeout(sl->aio, sl->s->send_timeout_ms);
        nng_ctx_send(sl->ctx, sl->aio);
        return;
    }
    if (!sl->commit_err) { /* durable, but no reply could be built or queued */
        api_count_async(&sl->info, KR_OK);
        slot_send(sl, NULL);
        return;
    }
    msg_wipe_free(sl->rep);
    sl->rep = NULL;
    if (sl->commit_err == KR_ECONFLICT && ++sl->attempts < KR_CMD_RETRIES) {
        sl->job = JOB_DECIDE;
        pool_push(&sl->ep->fast, sl);
    } else if (sl->commit_err == KR_ECONFLICT) {
        sl->job = JOB_RUN;
        pool_push(&sl->ep->slow, sl);
    } else {
        sl->job = JOB_FAIL;
        pool_push(&sl->ep->fast, sl);
    }
}

/* Answers a request that belongs to another shard (api_server_options.router)
 * with wrong_shard naming its endpoint; false if it is this node's. */
static bool slot_redirect(struct slot *sl)
{
    const uint8_t *body = nng_msg_body(sl->msg);
    size_t len = nng_msg_len(sl->msg);
    struct api_route r;
    char endpoint[KR_ENDPOINT_MAX + 1], msg[KR_ENDPOINT_MAX + 64];
    if (api_request_route(body, len, &r) != KR_OK ||
        !sl->s->router.elsewhere(sl->s->router.ctx, &r, endpoint))
        return false;
    snprintf(msg, sizeof msg, "%s: %s", kr_strerror(KR_EWRONGSHARD), endpoint);
    kr_err err = api_reply_refusal(body, len, KR_ERR_WRONG_SHARD, msg, &sl->reply);
    slot_send(sl, err ? NULL : reply_msg(sl, true));
    return true;
}

/* On a deciding thread: decides the request (api_handle_async) and sends its
 * reply, leaves it pending on its append, or passes it to the pool. */
static void slot_decide(struct slot *sl, struct kr_payload *args)
{
    const uint8_t *body = nng_msg_body(sl->msg);
    size_t len = nng_msg_len(sl->msg);
    if (!sl->ep->operator_ep && sl->s->router.elsewhere && sl->attempts == 0 && slot_redirect(sl))
        return;
    conn_unqueue(sl); /* decided again after a conflict */
    atomic_store(&sl->parts, 2);
    kr_err err = api_handle_async(sl->s->d, sl->ep->operator_ep, sl->source, body, len, args,
                                  &sl->reply, slot_committed, sl, &sl->info);
    if (sl->info.outcome == API_POOL) {
        sl->job = JOB_RUN;
        pool_push(&sl->ep->slow, sl);
        return;
    }
    if (sl->info.outcome == API_REPLY) {
        slot_send(sl, err ? NULL : reply_msg(sl, true));
        return;
    }
    /* Pending: the reply is built before the append may complete it; the
     * request is kept for a retry. */
    sl->rep = err ? NULL : reply_msg(sl, false);
    if (sl->rep && !conn_queue(sl, nng_msg_len(sl->rep))) {
        msg_wipe_free(sl->rep); /* the connection is going: nothing to send */
        sl->rep = NULL;
    } else if (sl->rep) {
        sl->queued = nng_msg_len(sl->rep);
    }
    atomic_fetch_add(&sl->s->pending, 1);
    if (atomic_fetch_sub(&sl->parts, 1) == 1)
        slot_answer(sl);
}

/* On a thread that may wait: runs the request whole (api_handle_from). */
static void slot_run(struct slot *sl, struct kr_payload *args)
{
    kr_err err;
    conn_unqueue(sl); /* a pending write's reply that will not be sent */
    if (sl->job == JOB_FAIL) {
        int code = dom_api_error(sl->commit_err);
        err = api_reply_refusal(nng_msg_body(sl->msg), nng_msg_len(sl->msg),
                                code < 0 ? KR_ERR_INTERNAL : code, kr_strerror(sl->commit_err),
                                &sl->reply);
    } else {
        err = api_handle_from(sl->s->d, sl->ep->operator_ep, sl->source, nng_msg_body(sl->msg),
                              nng_msg_len(sl->msg), args, &sl->reply);
    }
    slot_send(sl, err ? NULL : reply_msg(sl, true));
}

/* nng's completion of the slot's aio (a receive or a send). */
static void slot_cb(void *arg)
{
    struct slot *sl = arg;
    struct api_server *s = sl->s;
    int rv = nng_aio_result(sl->aio);
    if (sl->sending) {
        if (rv)
            msg_wipe_free(nng_aio_get_msg(sl->aio));
        msg_wipe_free(sl->msg); /* a pending write's request, kept for a retry */
        sl->msg = NULL;
        conn_release(sl, rv == NNG_ETIMEDOUT && sl->admit == ADMIT_RUN);
        if (rv != NNG_ECLOSED)
            slot_recv(sl);
        return;
    }
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (rv != 0) {
        slot_recv(sl);
        return;
    }
    sl->msg = nng_aio_get_msg(sl->aio);
    sl->pipe = (uint32_t)nng_pipe_id(nng_msg_get_pipe(sl->msg));
    sl->admit = conn_take(sl);
    sl->attempts = 0;
    if (sl->admit == ADMIT_DROP) {
        slot_send(sl, NULL);
        return;
    }
    if (sl->admit == ADMIT_REFUSE) {
        slot_refuse(sl, "too many requests in flight on this connection");
        return;
    }
    pthread_mutex_lock(&s->mu);
    bool stopping = s->stopping;
    if (!stopping)
        atomic_fetch_add(&s->busy, 1);
    pthread_mutex_unlock(&s->mu);
    if (stopping) {
        slot_refuse(sl, "the server is stopping");
        return;
    }
    sl->busy = true;
    sl->job = JOB_DECIDE;
    pool_push(&sl->ep->fast, sl);
}

static void *pool_main(void *arg)
{
    struct pool *p = arg;
    pthread_setname_np(pthread_self(), p->name);
    /* The decoded arguments of the request it runs (about 70 KiB): one per
     * thread, not one per context. */
    struct kr_payload *args = kr_payload_new();
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        struct slot *sl = p->head;
        if (!sl)
            break;
        if (!(p->head = sl->next))
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        if (!args) /* out of memory: answer nothing, free the context */
            slot_send(sl, NULL);
        else if (sl->job == JOB_DECIDE)
            slot_decide(sl, args);
        else
            slot_run(sl, args);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    kr_payload_free(args);
    return NULL;
}

static kr_err pool_start(struct pool *p, unsigned n, const char *name)
{
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->inited = true;
    p->name = name;
    if (!(p->threads = calloc(n, sizeof *p->threads)))
        return KR_ENOMEM;
    for (; p->n < n; p->n++)
        if (pthread_create(&p->threads[p->n], NULL, pool_main, p) != 0)
            return KR_EIO;
    return KR_OK;
}

/* Ends the pool's threads once its queue is empty, and frees it. */
static void pool_stop(struct pool *p)
{
    if (!p->inited)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    memset(p, 0, sizeof *p);
}

/* The endpoint's contexts, each receiving, and its threads. */
static kr_err slots_start(struct api_server *s, struct endpoint *ep, unsigned n, unsigned fast,
                          unsigned slow, bool op)
{
    ep->operator_ep = op;
    kr_err err = pool_start(&ep->fast, fast, "kr-api");
    if (!err)
        err = pool_start(&ep->slow, slow, "kr-api-pool");
    if (err)
        return err;
    if (!(ep->slots = calloc(n, sizeof *ep->slots)))
        return KR_ENOMEM;
    pthread_mutex_lock(&s->conn_mu);
    ep->idle_ctx = n; /* each begins by waiting for a request */
    ep->peer_inflight_max = s->conns_per_peer >= ep->conns_max ? UINT_MAX : n > 1 ? n / 2 : 1;
    pthread_mutex_unlock(&s->conn_mu);
    for (unsigned i = 0; i < n; i++) {
        struct slot *sl = &ep->slots[i];
        sl->s = s;
        sl->ep = ep;
        kr_wbuf_init(&sl->reply, KR_API_REPLY_MAX);
        ep->nslots++;
        int rv = nng_aio_alloc(&sl->aio, slot_cb, sl);
        if (rv == 0 && (rv = nng_ctx_open(&sl->ctx, ep->sock)) == 0)
            sl->ctx_open = true;
        if (rv)
            return kr_err_from_nng(rv);
    }
    for (unsigned i = 0; i < n; i++)
        slot_recv(&ep->slots[i]);
    return KR_OK;
}

/* Stops (the socket must be closed: every receive ends) and frees an
 * endpoint's contexts and threads. */
static void slots_free(struct endpoint *ep)
{
    for (unsigned i = 0; i < ep->nslots; i++)
        if (ep->slots[i].aio)
            nng_aio_stop(ep->slots[i].aio);
    pool_stop(&ep->fast);
    pool_stop(&ep->slow);
    for (unsigned i = 0; i < ep->nslots; i++) {
        struct slot *sl = &ep->slots[i];
        if (sl->aio)
            nng_aio_free(sl->aio);
        msg_wipe_free(sl->msg);
        msg_wipe_free(sl->rep);
        kr_wbuf_free(&sl->reply);
    }
    free(ep->slots);
    ep->slots = NULL;
    ep->nslots = 0;
}

/* ---- Listening ---- */

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* Reads a PEM file (at most KR_API_PEM_MAX bytes) into a NUL-terminated
 * heap buffer with the project's one reader of secret files
 * (kr_file_read_small: read(2), no symlinks, FIFOs or other non-regular
 * files, and for a key only a file of its owner's that no one else may read
 * or write). The buffer is wiped on failure. */
static kr_err read_pem(const char *path, bool secret, char **out)
{
    *out = NULL;
    char *buf = malloc(KR_API_PEM_MAX + 1);
    if (!buf)
        return KR_ENOMEM;
    kr_err err = kr_file_read_small(path, buf, KR_API_PEM_MAX + 1, secret);
    if (err) {
        free(buf); /* wiped by the reader */
        return err == KR_ECORRUPT ? KR_ETOOLARGE : err;
    }
    *out = buf;
    return KR_OK;
}

static kr_err tls_config(const struct api_server_options *o, bool op, nng_tls_config **out,
                         const char **why)
{
    if (!o->cert_file || !o->key_file) {
        *why = "tls+tcp:// needs --cert and --key";
        return KR_EINVAL;
    }
    char *cert = NULL, *key = NULL;
    nng_tls_config *cfg = NULL;
    kr_err err = read_pem(o->cert_file, false, &cert);
    if (err)
        *why = "reading the certificate file (a regular file, not a symlink)";
    else if ((err = read_pem(o->key_file, true, &key)))
        *why = err == KR_EKEY ? "the key file must be a regular file (not a symlink), yours, "
                                "mode 0600 (no group or other access)"
                              : "reading the key file";
    else if (nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER) != 0)
        err = KR_ENOMEM, *why = "TLS configuration";
    else if (nng_tls_config_own_cert(cfg, cert, key, NULL) != 0)
        err = KR_EKEY, *why = "the certificate or key was refused";
    else if (op && o->client_ca_file &&
             (nng_tls_config_ca_file(cfg, o->client_ca_file) != 0 ||
              nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED) != 0))
        err = KR_EKEY, *why = "the client CA file was refused";
    else if ((!op || !o->client_ca_file) &&
             nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_NONE) != 0)
        err = KR_EIO, *why = "TLS configuration";
    if (key) {
        sodium_memzero(key, KR_API_PEM_MAX + 1);
        free(key);
    }
    free(cert);
    if (err && cfg)
        nng_tls_config_free(cfg);
    *out = err ? NULL : cfg;
    return err;
}

/* The socket file of an ipc:// URL must be 0600: set before listening,
 * enforced and checked after. */
static kr_err ipc_check_mode(const char *url, const char **why)
{
    const char *path = url + strlen("ipc://");
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        *why = "the operator socket file is missing";
        return KR_EIO;
    }
    if ((st.st_mode & 0777) != 0600 && chmod(path, 0600) != 0) {
        *why = "chmod 0600 of the operator socket";
        return kr_err_from_errno(errno);
    }
    if (lstat(path, &st) != 0 || (st.st_mode & 0777) != 0600) {
        *why = "the operator socket is not mode 0600";
        return KR_EIO;
    }
    return KR_OK;
}

static kr_err listen_one(const struct api_server_options *o, struct endpoint *ep, bool op,
                         const char *url, const char **why)
{
    nng_listener l;
    int rv = nng_listener_create(&l, ep->sock, url);
    if (rv) {
        *why = "the URL was refused";
        return kr_err_from_nng(rv);
    }
    size_t cap = 0;
    if (nng_listener_get_size(l, NNG_OPT_RECVMAXSZ, &cap) != 0 || cap != KR_API_REQUEST_MAX) {
        *why = "the receive size cap did not take on the listener";
        return KR_EIO;
    }
    if (has_prefix(url, "tls+tcp://")) {
        kr_err err;
        if (!ep->tls && (err = tls_config(o, op, &ep->tls, why)))
            return err;
        if ((rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, ep->tls))) {
            *why = "setting the TLS configuration";
            return kr_err_from_nng(rv);
        }
    } else if (op && o->client_ca_file) {
        *why = "--client-ca needs a tls+tcp:// operator URL";
        return KR_EINVAL;
    }
    bool ipc = has_prefix(url, "ipc://");
    if (ipc && op && (rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600))) {
        *why = "setting the operator socket's mode";
        return kr_err_from_nng(rv);
    }
    if ((rv = nng_listener_start(l, 0))) {
        *why = rv == NNG_EADDRINUSE ? "the address is in use" : "listening failed";
        return kr_err_from_nng(rv);
    }
    if (nng_listener_get_size(l, NNG_OPT_RECVMAXSZ, &cap) != 0 || cap != KR_API_REQUEST_MAX) {
        *why = "the receive size cap did not take on the listener";
        return KR_EIO;
    }
    if (ipc && op)
        return ipc_check_mode(url, why);
    return KR_OK;
}

static kr_err endpoint_open(struct api_server *s, const struct api_server_options *o,
                            struct endpoint *ep, bool op, const char *const *urls, size_t n,
                            const char **why)
{
    int rv = nng_rep0_open(&ep->sock);
    if (rv) {
        *why = "opening a socket";
        return kr_err_from_nng(rv);
    }
    ep->open = true;
    size_t cap = 0;
    /* Before any listener exists: listeners take the socket's value. */
    if ((rv = nng_socket_set_size(ep->sock, NNG_OPT_RECVMAXSZ, KR_API_REQUEST_MAX)) ||
        nng_socket_get_size(ep->sock, NNG_OPT_RECVMAXSZ, &cap) || cap != KR_API_REQUEST_MAX) {
        *why = "setting the receive size cap";
        return KR_EIO;
    }
    ep->s = s;
    if ((rv = nng_pipe_notify(ep->sock, NNG_PIPE_EV_ADD_PRE, pipe_event, ep)) ||
        (rv = nng_pipe_notify(ep->sock, NNG_PIPE_EV_REM_POST, pipe_event, ep))) {
        *why = "registering the connection cap";
        return kr_err_from_nng(rv);
    }
    for (size_t i = 0; i < n; i++) {
        kr_err err = listen_one(o, ep, op, urls[i], why);
        if (err)
            return err;
    }
    /* Read back once everything listens: the cap is what nng enforces. */
    if (nng_socket_get_size(ep->sock, NNG_OPT_RECVMAXSZ, &cap) || cap != KR_API_REQUEST_MAX) {
        *why = "the receive size cap did not take";
        return KR_EIO;
    }
    return KR_OK;
}

static void endpoint_close(struct endpoint *ep)
{
    if (ep->open)
        nng_close(ep->sock);
    ep->open = false;
    slots_free(ep);
    if (ep->tls)
        nng_tls_config_free(ep->tls);
    ep->tls = NULL;
}

static void server_free(struct api_server *s)
{
    for (int i = 0; i < EP__COUNT; i++)
        api_gateway_stop(s->gw[i]);
    for (int i = 0; i < EP__COUNT; i++)
        endpoint_close(&s->ep[i]);
    if (s->janitor_running) {
        pthread_mutex_lock(&s->conn_mu);
        s->janitor_stop = true;
        pthread_cond_broadcast(&s->janitor_cv);
        pthread_mutex_unlock(&s->conn_mu);
        pthread_join(s->janitor, NULL);
    }
    mailer_stop(s->mailer);
    free(s->conns);
    pthread_cond_destroy(&s->janitor_cv);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Waits on cv (a CLOCK_MONOTONIC one) at most ms. */
static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &until);
}

/* At stop: every connection is closed by the janitor (safely, see
 * "Connections"), waiting at most KR_API_STOP_CONNS_MS for them to go, so
 * that nng_close finds no transfer in flight. */
static void conns_close_all(struct api_server *s)
{
    uint64_t until = now_ms() + KR_API_STOP_CONNS_MS;
    pthread_mutex_lock(&s->conn_mu);
    while (s->janitor_running) {
        unsigned open = 0;
        for (unsigned i = 0; i < s->nslots; i++)
            if (s->conns[i].id) {
                conn_mark_closing_locked(s, &s->conns[i]);
                open++;
            }
        if (!open || now_ms() >= until)
            break;
        cond_wait_ms(&s->janitor_cv, &s->conn_mu, KR_API_JANITOR_MS);
    }
    pthread_mutex_unlock(&s->conn_mu);
}

/* The connection table, its lock and the janitor, before any endpoint. */
static kr_err janitor_start(struct api_server *s)
{
    s->nslots = s->ep[EP_CLIENT].conns_max + s->ep[EP_OPERATOR].conns_max;
    if (!(s->conns = calloc(s->nslots, sizeof *s->conns)))
        return KR_ENOMEM;
    if (pthread_create(&s->janitor, NULL, janitor_main, s) != 0)
        return KR_EIO;
    s->janitor_running = true;
    return KR_OK;
}

static kr_err add_url(struct api_server *s, const char *url, const char **why)
{
    size_t n = strlen(url);
    if (n == 0 || n >= KR_API_URL_MAX) {
        *why = "a URL is empty or too long";
        return KR_ETOOLARGE;
    }
    memcpy(s->urls[s->nurls], url, n + 1);
    s->url_ptrs[s->nurls] = s->urls[s->nurls];
    s->nurls++;
    return KR_OK;
}

/* The gateway listeners asked for (gateway.h), over the server's router. */
static kr_err gateways_start(struct api_server *s, const struct api_server_options *o,
                             const char **why)
{
    const char *urls[EP__COUNT] = {
        [EP_CLIENT] = o->gateway_url, [EP_OPERATOR] = o->gateway_operator_url};
    for (int i = 0; i < EP__COUNT; i++) {
        if (!urls[i])
            continue;
        struct api_gateway_options go = {
            .url = urls[i],
            .operator_endpoint = i == EP_OPERATOR,
            .cert_file = o->cert_file,
            .key_file = o->key_file,
            .router = i == EP_CLIENT ? &s->router : NULL,
            .conns_max = i == EP_CLIENT          ? (o->conns_max ? o->conns_max : KR_API_CONNS_MAX)
                         : o->operator_conns_max ? o->operator_conns_max
                                                 : KR_API_OPERATOR_CONNS_MAX,
            .per_ip = o->conns_per_peer,
            .timeout_s = o->idle_timeout_ms > 0   ? (unsigned)(o->idle_timeout_ms + 999) / 1000u
                         : o->idle_timeout_ms < 0 ? KR_API_IDLE_TIMEOUT_MS_MAX / 1000u
                                                  : 0u,
        };
        kr_err err = api_gateway_start(&go, s->d, &s->gw[i], why);
        if (err)
            return err;
    }
    return KR_OK;
}

const char *api_server_gateway_url(const struct api_server *s, bool operator_endpoint)
{
    const struct api_gateway *g = s->gw[operator_endpoint ? EP_OPERATOR : EP_CLIENT];
    return g ? api_gateway_url(g) : NULL;
}

kr_err api_server_start(const struct api_server_options *o, struct kr_domain *d,
                        struct api_server **out, const char **why)
{
    static const char *const defaults[] = {API_LISTEN_DEFAULT};
    const char *scratch_why;
    if (!why)
        why = &scratch_why;
    *why = "";
    *out = NULL;
    if (o->nlisten > KR_API_LISTEN_MAX) {
        *why = "too many listen URLs";
        return KR_ETOOLARGE;
    }
    if (o->workers > KR_API_WORKERS_MAX || o->inflight > KR_API_INFLIGHT_MAX ||
        o->conns_max > KR_API_CONNS_MAX || o->operator_conns_max > KR_API_OPERATOR_CONNS_MAX ||
        o->conns_per_peer > KR_API_CONNS_MAX || o->idle_timeout_ms > KR_API_IDLE_TIMEOUT_MS_MAX) {
        *why = "workers, in-flight requests, connections or the idle timeout beyond their limit";
        return KR_EINVAL;
    }
    struct api_server *s = calloc(1, sizeof *s);
    if (!s)
        return KR_ENOMEM;
    s->d = d;
    s->ep[EP_CLIENT].conns_max = o->conns_max ? o->conns_max : KR_API_CONNS_MAX;
    s->ep[EP_OPERATOR].conns_max =
        o->operator_conns_max ? o->operator_conns_max : KR_API_OPERATOR_CONNS_MAX;
    s->conns_per_peer = o->conns_per_peer ? o->conns_per_peer : KR_API_CONNS_PER_PEER_DEFAULT;
    s->send_timeout_ms = o->send_timeout_ms > 0 ? o->send_timeout_ms : KR_API_SEND_TIMEOUT_MS;
    s->idle_timeout_ms = o->idle_timeout_ms == 0  ? KR_API_IDLE_TIMEOUT_MS_DEFAULT
                         : o->idle_timeout_ms < 0 ? 0
                                                  : o->idle_timeout_ms;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->janitor_cv, &ca);
    pthread_condattr_destroy(&ca);

    const char *const *listen = o->nlisten ? o->listen : defaults;
    size_t nlisten = o->nlisten ? o->nlisten : 1;
    if (o->router) /* before the contexts that read it start */
        s->router = *o->router;
    kr_err err = KR_OK;
    for (size_t i = 0; i < nlisten && !err; i++)
        err = add_url(s, listen[i], why);
    char op_url[KR_API_URL_MAX];
    if (!err && o->operator_url) {
        err = add_url(s, o->operator_url, why);
    } else if (!err) {
        if ((size_t)snprintf(op_url, sizeof op_url, "ipc://%s/operator.sock", d->dir) >=
            sizeof op_url) {
            *why = "the data directory path is too long for the operator socket";
            err = KR_ETOOLARGE;
        } else {
            err = add_url(s, op_url, why);
        }
    }
    if (!err && (err = janitor_start(s)))
        *why = "starting the connection janitor";
    if (!err)
        err = endpoint_open(s, o, &s->ep[EP_CLIENT], false, s->url_ptrs, nlisten, why);
    if (!err)
        err = endpoint_open(s, o, &s->ep[EP_OPERATOR], true, &s->url_ptrs[nlisten], 1, why);
    if (!err && (err = slots_start(
                     s, &s->ep[EP_CLIENT], o->inflight ? o->inflight : KR_API_INFLIGHT_DEFAULT,
                     o->workers ? o->workers : KR_API_WORKERS_DEFAULT, KR_API_POOL_THREADS, false)))
        *why = "starting the request contexts and threads";
    if (!err && (err = slots_start(s, &s->ep[EP_OPERATOR], KR_API_OPERATOR_INFLIGHT,
                                   KR_API_OPERATOR_WORKERS, KR_API_OPERATOR_WORKERS, true)))
        *why = "starting the request contexts and threads";
    if (!err && !o->no_mailer && (err = mailer_start(d, o->mail, &s->mailer)))
        *why = "starting the mailer";
    if (!err)
        err = gateways_start(s, o, why);
    if (err) {
        server_free(s);
        return err;
    }
    *out = s;
    return KR_OK;
}

unsigned api_server_pending(const struct api_server *s)
{
    return atomic_load(&((struct api_server *)s)->pending);
}

size_t api_server_urls(const struct api_server *s, const char *const **urls)
{
    *urls = s->url_ptrs;
    return s->nurls;
}

void api_server_stop_begin(struct api_server *s)
{
    for (int i = 0; i < EP__COUNT; i++)
        api_gateway_stop_begin(s->gw[i]);
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
}

void api_server_stop(struct api_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < EP__COUNT; i++) { /* its requests finish first */
        api_gateway_stop(s->gw[i]);
        s->gw[i] = NULL;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    while (atomic_load(&s->busy) > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    struct timespec drain = {.tv_sec = KR_API_DRAIN_MS / 1000,
                             .tv_nsec = (long)(KR_API_DRAIN_MS % 1000) * 1000000L};
    while (nanosleep(&drain, &drain) != 0 && errno == EINTR)
        ;
    conns_close_all(s);
    server_free(s);
}
