/*
 * gateway.h: the JSON gateway over HTTP (`serve --gateway URL`,
 * `--gateway-operator URL`), served with libmicrohttpd, and the console's
 * files.
 *
 * One gateway is one listener, for the client endpoint or the operator
 * endpoint. It runs every op through the very path the nng endpoint runs it:
 * the request becomes the msgpack envelope {op, id, token?, args} that
 * `kiroku call` sends (the path names the op, the JSON body is its
 * arguments, jsonmp_args; the credentials give the token), the router
 * (client listener only) may answer it `wrong_shard`, then api_handle_from
 * runs it with the peer's address as the caller's source and
 * operator_endpoint set on the operator listener, and the reply is turned
 * into JSON (jsonmp_to_json) without its id. No op is implemented here.
 *
 * Paths (anything else is 404, other methods 405):
 *   POST /api/OP          the op; body: a JSON object of its arguments
 *                         (empty = none); Content-Type application/json
 *   POST /session         browser login (auth.login's arguments): sets the
 *                         cookie kiroku_session, answers auth.login's result
 *                         without the token, plus csrf and endpoint
 *   GET  /session         auth.whoami plus csrf and endpoint (401 without a
 *                         session)
 *   POST /session/logout  auth.logout; the cookie is cleared
 *   GET  /, GET /NAME     the console's files (index.html at /)
 * Credentials: `Authorization: Bearer <64 hex>` or the cookie (which the
 * ops for callers without a session, auth.login and signup.*, never take,
 * so an old cookie does not stand in the way of logging in). A request the
 * cookie authenticates must carry `X-Kiroku-CSRF: <csrf>` on every POST,
 * else it is 403 forbidden "csrf" and nothing runs. csrf is the hex of
 * HMAC-SHA-256 of the session token under a random secret of the process.
 * The answer is {"ok":true,"result":{...}} or {"ok":false,"error":{"code",
 * "message"}} with an HTTP status from the code (gateway.c: status_of).
 *
 * Every answer carries the Content-Security-Policy and the other headers of
 * docs/security.md; answers of /api and /session are not cached.
 *
 * Bounds, enforced by libmicrohttpd: conns_max connections at once, per_ip
 * from one address (more are closed as they arrive), timeout_s without
 * traffic closes a connection, KR_GATEWAY_MEMORY_LIMIT for a request's
 * headers; and here: a body over KR_GATEWAY_BODY_MAX is 413, answered before
 * it is read (Content-Length), or once it ends when it is chunked (what
 * passes the bound is dropped, not kept; past twice the bound the
 * connection is closed without an answer).
 *
 * Threads: one per connection (libmicrohttpd's thread-per-connection mode):
 * an op may wait (Argon2id, a flush) without holding up other connections.
 * The domain must outlive the gateway.
 */
#ifndef KR_API_GATEWAY_H
#define KR_API_GATEWAY_H

#include "domain.h"
#include "kr_error.h"

#include <stdbool.h>
#include <stddef.h>

struct api_router;

#define API_GATEWAY_URL_MAX 128
/* The session cookie and the CSRF header. */
#define API_GATEWAY_COOKIE      "kiroku_session"
#define API_GATEWAY_CSRF_HEADER "X-Kiroku-CSRF"

struct api_gateway_options {
    /* http://HOST:PORT or https://HOST:PORT (HOST an IP address, [IPv6] or
     * localhost); port 0 takes a free one. */
    const char *url;
    bool operator_endpoint; /* the operator listener */
    /* PEM files of the certificate (chain) and key, for https:// (which
     * needs libmicrohttpd built with TLS). */
    const char *cert_file, *key_file;
    /* Requests of other shards (client listener only); NULL = none. Must
     * outlive the gateway. */
    const struct api_router *router;
    unsigned conns_max; /* 0 = KR_GATEWAY_CONNS_MAX; at most that */
    unsigned per_ip;    /* 0 = KR_API_CONNS_PER_PEER_DEFAULT */
    unsigned timeout_s; /* 0 = KR_GATEWAY_TIMEOUT_S */
};

struct api_gateway;

/* Serves o->url over d. On failure *why says what failed. Errors: KR_EINVAL
 * (not such a URL; https without cert and key, or without TLS in
 * libmicrohttpd), KR_EKEY (a PEM file unreadable), KR_EBUSY (the address in
 * use, or libmicrohttpd would not start), KR_ENOMEM. */
KR_MUST_CHECK kr_err api_gateway_start(const struct api_gateway_options *o, struct kr_domain *d,
                                       struct api_gateway **out, const char **why);

/* The URL it serves, with the port it got: "http://127.0.0.1:7452". Valid
 * until api_gateway_stop. */
const char *api_gateway_url(const struct api_gateway *g);

/* From now on every request is answered 503 `unavailable`; requests
 * running go on. Accepts NULL. */
void api_gateway_stop_begin(struct api_gateway *g);

/* Stops serving (waits for the requests running, closes the connections)
 * and frees it. Accepts NULL. */
void api_gateway_stop(struct api_gateway *g);

/* Whether url is a gateway URL (http:// or https://HOST:PORT); *tls says
 * which. For a usage check before anything opens. */
bool api_gateway_url_ok(const char *url, bool *tls);

/* Whether this libmicrohttpd serves https://. */
bool api_gateway_tls_available(void);

#endif
