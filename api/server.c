/*
 * server.c: the nng REP endpoints and their workers (see server.h).
 *
 * Design notes. A worker is a thread with its own REP context and one
 * synchronous aio: receive, handle, send, again. The domain's calls are
 * synchronous, so a worker never holds more than one request, and the
 * number of requests in flight is the number of workers. Hostile peers are
 * handled by nng and the bounds set here: a frame over the receive cap makes
 * nng drop that connection before it buffers the frame; half a frame only
 * holds that connection's own receive (transports read asynchronously, no
 * worker waits on a peer); a peer that does not read its replies holds a
 * worker at most the send timeout, after which its connection is closed.
 *
 * Stopping: `stopping` is set under the lock, after which a worker that
 * receives a request answers `unavailable` instead of running it; stop waits
 * until no worker is running a request (`busy` is 0), gives the transports
 * KR_API_DRAIN_MS to write the queued replies, then closes the sockets,
 * which ends every worker's receive, and joins them.
 */
#include "server.h"

#include "keys.h"
#include "mailer.h"
#include "protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

struct api_server;

struct worker {
    struct api_server *s;
    bool operator_ep;
    nng_ctx ctx;
    nng_aio *aio;
    struct kr_payload *args;
    struct kr_wbuf reply; /* capped at KR_API_REPLY_MAX, wiped */
    pthread_t thread;
    bool running;
};

struct endpoint {
    nng_socket sock;
    bool open;
    nng_tls_config *tls;
    struct worker *workers;
    unsigned nworkers;
};

struct api_server {
    struct kr_domain *d;
    struct endpoint ep[EP__COUNT];
    char urls[KR_API_LISTEN_MAX + 1][KR_API_URL_MAX];
    const char *url_ptrs[KR_API_LISTEN_MAX + 1];
    size_t nurls;
    atomic_uint conns;
    unsigned conns_max;
    int send_timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping; /* under mu */
    unsigned busy; /* requests running (under mu) */
    struct mailer *mailer;
};

/* ---- Connections ---- */

static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct api_server *s = arg;
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        /* Every pipe that sees ADD_PRE also sees REM_POST, closed here or not. */
        unsigned n = atomic_fetch_add(&s->conns, 1) + 1;
        if (n > s->conns_max)
            nng_pipe_close(p);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        atomic_fetch_sub(&s->conns, 1);
    }
}

unsigned api_server_conns(const struct api_server *s)
{
    unsigned n = atomic_load(&s->conns);
    return n > s->conns_max ? s->conns_max : n;
}

/* ---- Workers ---- */

/* Runs the request in msg (or refuses it while stopping) and turns msg into
 * the reply. false if no reply could be built (msg is then freed). */
static bool serve_one(struct worker *w, nng_msg *msg)
{
    struct api_server *s = w->s;
    pthread_mutex_lock(&s->mu);
    bool refuse = s->stopping;
    if (!refuse)
        s->busy++;
    pthread_mutex_unlock(&s->mu);

    const uint8_t *body = nng_msg_body(msg);
    size_t len = nng_msg_len(msg);
    kr_err err;
    if (refuse)
        err = api_reply_refusal(body, len, KR_ERR_UNAVAILABLE, "the server is stopping", &w->reply);
    else
        err = api_handle_with(s->d, w->operator_ep, body, len, w->args, &w->reply);
    /* Requests carry passwords and codes, replies tokens: wipe our copies. */
    sodium_memzero(nng_msg_body(msg), len);
    nng_msg_clear(msg);
    if (!err && nng_msg_append(msg, w->reply.data, w->reply.size) != 0)
        err = KR_ENOMEM;
    kr_wbuf_reset(&w->reply);

    if (!refuse) {
        pthread_mutex_lock(&s->mu);
        if (--s->busy == 0)
            pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    if (err) {
        nng_msg_free(msg);
        return false;
    }
    return true;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_setname_np(pthread_self(), "kr-api");
    for (;;) {
        nng_aio_set_timeout(w->aio, NNG_DURATION_INFINITE);
        nng_ctx_recv(w->ctx, w->aio);
        nng_aio_wait(w->aio);
        int rv = nng_aio_result(w->aio);
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
            break;
        if (rv != 0)
            continue;
        nng_msg *msg = nng_aio_get_msg(w->aio);
        nng_pipe pipe = nng_msg_get_pipe(msg);
        if (!serve_one(w, msg))
            continue; /* the client's request times out; nothing half-sent */
        nng_aio_set_msg(w->aio, msg);
        nng_aio_set_timeout(w->aio, w->s->send_timeout_ms);
        nng_ctx_send(w->ctx, w->aio);
        nng_aio_wait(w->aio);
        if ((rv = nng_aio_result(w->aio)) != 0) {
            nng_msg_free(nng_aio_get_msg(w->aio));
            /* A client that does not take its reply loses its connection. */
            if (rv == NNG_ETIMEDOUT)
                nng_pipe_close(pipe);
            if (rv == NNG_ECLOSED)
                break;
        }
    }
    return NULL;
}

static kr_err workers_start(struct api_server *s, struct endpoint *ep, unsigned n, bool op)
{
    ep->workers = calloc(n, sizeof *ep->workers);
    if (!ep->workers)
        return KR_ENOMEM;
    ep->nworkers = n;
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &ep->workers[i];
        w->s = s;
        w->operator_ep = op;
        kr_wbuf_init(&w->reply, KR_API_REPLY_MAX);
        if (!(w->args = kr_payload_new()))
            return KR_ENOMEM;
        int rv = nng_aio_alloc(&w->aio, NULL, NULL);
        if (rv == 0)
            rv = nng_ctx_open(&w->ctx, ep->sock);
        if (rv)
            return kr_err_from_nng(rv);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return KR_EIO;
        w->running = true;
    }
    return KR_OK;
}

/* Joins (the socket must be closed) and frees an endpoint's workers. */
static void workers_free(struct endpoint *ep)
{
    for (unsigned i = 0; ep->workers && i < ep->nworkers; i++) {
        struct worker *w = &ep->workers[i];
        if (w->running)
            pthread_join(w->thread, NULL);
        if (w->aio)
            nng_aio_free(w->aio);
        kr_payload_free(w->args);
        kr_wbuf_free(&w->reply);
    }
    free(ep->workers);
    ep->workers = NULL;
    ep->nworkers = 0;
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
    if ((rv = nng_pipe_notify(ep->sock, NNG_PIPE_EV_ADD_PRE, pipe_event, s)) ||
        (rv = nng_pipe_notify(ep->sock, NNG_PIPE_EV_REM_POST, pipe_event, s))) {
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
    workers_free(ep);
    if (ep->tls)
        nng_tls_config_free(ep->tls);
    ep->tls = NULL;
}

static void server_free(struct api_server *s)
{
    for (int i = 0; i < EP__COUNT; i++)
        endpoint_close(&s->ep[i]);
    mailer_stop(s->mailer);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Workers spend most of a write waiting for the journal's commit, and one
 * commit carries the appends of every worker waiting on it: the worker count
 * bounds the appends a commit can group, not the CPU used. */
static unsigned default_workers(void)
{
    return KR_API_WORKERS_DEFAULT;
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
    if (o->workers > KR_API_WORKERS_MAX || o->conns_max > KR_API_CONNS_MAX) {
        *why = "workers or connections beyond their limit";
        return KR_EINVAL;
    }
    struct api_server *s = calloc(1, sizeof *s);
    if (!s)
        return KR_ENOMEM;
    s->d = d;
    s->conns_max = o->conns_max ? o->conns_max : KR_API_CONNS_MAX;
    s->send_timeout_ms = o->send_timeout_ms > 0 ? o->send_timeout_ms : KR_API_SEND_TIMEOUT_MS;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);

    const char *const *listen = o->nlisten ? o->listen : defaults;
    size_t nlisten = o->nlisten ? o->nlisten : 1;
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
    if (!err)
        err = endpoint_open(s, o, &s->ep[EP_CLIENT], false, s->url_ptrs, nlisten, why);
    if (!err)
        err = endpoint_open(s, o, &s->ep[EP_OPERATOR], true, &s->url_ptrs[nlisten], 1, why);
    if (!err && (err = workers_start(s, &s->ep[EP_CLIENT],
                                     o->workers ? o->workers : default_workers(), false)))
        *why = "starting the workers";
    if (!err && (err = workers_start(s, &s->ep[EP_OPERATOR], KR_API_OPERATOR_WORKERS, true)))
        *why = "starting the workers";
    if (!err && !o->no_mailer && (err = mailer_start(d, &s->mailer)))
        *why = "starting the mailer";
    if (err) {
        server_free(s);
        return err;
    }
    *out = s;
    return KR_OK;
}

size_t api_server_urls(const struct api_server *s, const char *const **urls)
{
    *urls = s->url_ptrs;
    return s->nurls;
}

void api_server_stop_begin(struct api_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
}

void api_server_stop(struct api_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    while (s->busy > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    struct timespec drain = {.tv_sec = KR_API_DRAIN_MS / 1000,
                             .tv_nsec = (long)(KR_API_DRAIN_MS % 1000) * 1000000L};
    while (nanosleep(&drain, &drain) != 0 && errno == EINTR)
        ;
    server_free(s);
}
