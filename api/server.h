/*
 * server.h: `kiroku serve`'s engine: nng REP sockets in front of api_handle.
 *
 * Two endpoints, one REP socket each: the client endpoint (one or more
 * listen URLs, tcp://, tls+tcp:// or ipc://) and the operator endpoint (one
 * URL, by default ipc://DIR/operator.sock with the socket file mode 0600).
 * Requests that arrive on the operator socket run with
 * caller.operator_endpoint set; nothing else distinguishes them.
 *
 * Many requests run at once: each endpoint has a fixed number of nng
 * contexts (the requests in flight, `inflight`), deciding threads
 * (`workers`) that never wait for a flush, and a pool of threads for the ops
 * that may wait (Argon2id, heavy reads); a write is answered from its
 * append's completion (server.c says how). Bounds: every socket's
 * NNG_OPT_RECVMAXSZ is KR_API_REQUEST_MAX, set before it listens and read
 * back after (the server refuses to start otherwise). Each endpoint has its
 * own connection cap, contexts and threads, so the operator endpoint stays
 * reachable whatever the client endpoint suffers; connections beyond an
 * endpoint's cap, or beyond the cap per peer address, are closed as they
 * arrive. A connection is closed when it sent no complete request within
 * the idle timeout, when a reply waits longer than the send timeout for it
 * to take it, or when the replies waiting for it pass
 * KR_API_PIPE_QUEUED_MAX bytes; more than KR_API_PIPE_INFLIGHT_MAX requests
 * of one connection, or half the endpoint's contexts for one peer address
 * (unless conns_per_peer is the endpoint's cap), at once are answered
 * `unavailable`. Connections are closed by one janitor thread, never by a
 * request's thread (server.c says why). Each request runs with the caller's
 * source (struct kr_caller) set to the peer's address.
 *
 * Stopping is graceful: requests received after api_server_stop began are
 * answered `unavailable`, requests already running finish (their appends
 * complete) and are answered, then the sockets close. A reply is a whole nng message: never half of
 * one.
 */
#ifndef KR_API_SERVER_H
#define KR_API_SERVER_H

#include "domain.h"
#include "kr_error.h"
#include "kr_limits.h"

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mailer_options;
struct api_route;

/* Where requests of other shards go (api/shardmap.h: kr_shardmap_route). */
struct api_router {
    /* Whether the request whose route is r belongs to another shard: then
     * true with that shard's client endpoint(s) in endpoint. Called on the
     * deciding threads for every client request: must not wait. */
    bool (*elsewhere)(void *ctx, const struct api_route *r, char endpoint[KR_ENDPOINT_MAX + 1]);
    void *ctx;
};

#define API_LISTEN_DEFAULT "tcp://127.0.0.1:7450"

struct api_server_options {
    /* Client endpoint URLs; none = API_LISTEN_DEFAULT. At most KR_API_LISTEN_MAX. */
    const char *const *listen;
    size_t nlisten;
    /* Operator endpoint URL; NULL = ipc://<domain dir>/operator.sock. */
    const char *operator_url;
    /* PEM files for tls+tcp:// URLs: the server's certificate (chain) and
     * key; required when any URL is tls+tcp://. */
    const char *cert_file;
    const char *key_file;
    /* CA the operator endpoint requires client certificates from (only with
     * a tls+tcp:// operator URL); NULL = no client certificates. */
    const char *client_ca_file;
    /* Client endpoint: threads that decide requests (never waiting for a
     * flush); 0 = KR_API_WORKERS_DEFAULT; <= KR_API_WORKERS_MAX. */
    unsigned workers;
    /* Client endpoint: requests in flight at once (nng contexts); 0 =
     * KR_API_INFLIGHT_DEFAULT; <= KR_API_INFLIGHT_MAX. */
    unsigned inflight;
    unsigned conns_max;          /* client endpoint; 0 = KR_API_CONNS_MAX; at most that */
    unsigned operator_conns_max; /* 0 = KR_API_OPERATOR_CONNS_MAX; at most that */
    /* Connections from one peer address (tcp, tls+tcp) at once; 0 =
     * KR_API_CONNS_PER_PEER_DEFAULT; at most KR_API_CONNS_MAX. */
    unsigned conns_per_peer;
    int send_timeout_ms; /* 0 = KR_API_SEND_TIMEOUT_MS */
    /* Close a connection that sent no complete request for this long; 0 =
     * KR_API_IDLE_TIMEOUT_MS_DEFAULT, < 0 = never; at most
     * KR_API_IDLE_TIMEOUT_MS_MAX. */
    int idle_timeout_ms;
    bool no_mailer; /* do not run the e-mail worker (mailer.h) */
    /* How the e-mail worker delivers (mailer.h); NULL = .eml files. Must
     * outlive the server. */
    const struct mailer_options *mail;
    /* Requests of the client endpoint whose token names another shard, or
     * whose login names another shard's tenant code, are answered
     * `wrong_shard` with that shard's endpoint before anything else is done
     * with them (the same reply whatever the token or code is worth there).
     * NULL = every request is this node's. Must outlive the server. */
    const struct api_router *router;
    /* The JSON gateway (gateway.h): a client listener and an operator
     * listener, http:// or https:// (with cert_file and key_file); NULL =
     * none. They run every request through the same router and protocol,
     * with the connection caps above (conns_max, operator_conns_max,
     * conns_per_peer) and the idle timeout in seconds. */
    const char *gateway_url;
    const char *gateway_operator_url;
};

struct api_server;

/* Starts listening on every URL and the workers (and the mailer). The
 * domain must outlive the server. On failure nothing is left running and
 * *why says what failed (a static string naming the step). Errors:
 * KR_EINVAL (a bad URL or option; TLS without cert and key), KR_EBUSY (an
 * address in use), KR_EKEY (a TLS file unreadable or refused), KR_ETOOLARGE
 * (too many URLs or a URL too long), KR_EIO (an nng failure, or the receive
 * cap or socket mode did not take), KR_ENOMEM. */
KR_MUST_CHECK kr_err api_server_start(const struct api_server_options *o, struct kr_domain *d,
                                      struct api_server **out, const char **why);

/* The URLs it listens on, in order: the client URLs, then the operator URL.
 * Valid until api_server_stop. */
size_t api_server_urls(const struct api_server *s, const char *const **urls);

/* The gateway's URLs with the ports they got (NULL for one not asked
 * for). Valid until api_server_stop. */
const char *api_server_gateway_url(const struct api_server *s, bool operator_endpoint);

/* Connections open now over both endpoints (for tests and metrics): from
 * nng's accepting them until nng freed them. */
unsigned api_server_conns(const struct api_server *s);

/* Requests decided and waiting for their append's completion (for tests
 * and metrics): what a group commit can gather from the API. */
unsigned api_server_pending(const struct api_server *s);

/* Begins stopping without waiting: from now on every request received is
 * answered `unavailable` (over the gateway too); requests already running
 * go on. */
void api_server_stop_begin(struct api_server *s);

/* Stops gracefully (see above; begins it if api_server_stop_begin did not),
 * stops the mailer after a last round, and frees the server. Accepts NULL. */
void api_server_stop(struct api_server *s);

/* The caller's source (struct kr_caller) for a peer address: 16 bytes,
 * IPv4 as ::ffff:a.b.c.d, IPv6 as is; false (and all zero) when it is not
 * an IP address (ipc://). */
bool api_server_source(const nng_sockaddr *sa, uint8_t out[16]);

/* The translation of an nng error code into a kiroku error (the one place). */
kr_err kr_err_from_nng(int rv);

#endif
