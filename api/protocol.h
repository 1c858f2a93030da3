/*
 * protocol.h: kiroku's wire protocol: one msgpack request in, one msgpack
 * reply out. Pure functions over bytes and a domain; no sockets (server.c
 * moves the bytes).
 *
 * Request: one msgpack map
 *     {op: str, id: uint, token?: bin(32), args?: map}
 * Reply:
 *     {id, ok: true,  result: <the op's result map>}
 *     {id, ok: false, error: {code: str, message: str}}
 * id echoes the request's id, or is nil when it could not be read. code is
 * one of the fixed API error names (kr_api_errors, docs/ops.md); message
 * says "field: why" and never carries a secret or a value sent.
 *
 * Every request is proven bounded before anything decodes it: at most
 * KR_API_REQUEST_MAX bytes, one complete msgpack object nested at most
 * KR_API_DEPTH_MAX deep with at most KR_API_ITEMS_MAX elements (kr_mp_check),
 * and nothing after it. Then the envelope is read strictly: a map, string
 * keys, no unknown, repeated or mistyped key, op and id present, op known.
 * The arguments are decoded against the op's schema (kr_args_decode); an
 * absent args is an empty map. A token is resolved to its session; a token
 * that does not resolve is `unauthenticated`, even for an op anonymous
 * callers may use. The tenant always comes from the session.
 *
 * Threads: api_handle may run on many threads at once over one domain.
 */
#ifndef KR_API_PROTOCOL_H
#define KR_API_PROTOCOL_H

#include "domain.h"
#include "kr_error.h"
#include "wbuf.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Keys of the envelope. "op" and "token" are the schema's fields of those
 * names (kr_fields); these are the envelope's own. */
#define API_KEY_ID      "id"
#define API_KEY_ARGS    "args"
#define API_KEY_OK      "ok"
#define API_KEY_RESULT  "result"
#define API_KEY_ERROR   "error"
#define API_KEY_CODE    "code"
#define API_KEY_MESSAGE "message"

/* Handles one request req[0..len) that arrived over the client endpoint, or
 * the operator endpoint when operator_endpoint: decodes it, authenticates it,
 * runs the op (dom_exec) and writes the reply into *reply (reset first;
 * init it with the ceiling KR_API_REPLY_MAX: a result that would not fit is
 * refused with `too_large` while it is built).
 * Every failure of the request is a reply with ok false; the return value is
 * KR_OK whenever *reply holds a reply, KR_ENOMEM if none could be built. */
KR_MUST_CHECK kr_err api_handle(struct kr_domain *d, bool operator_endpoint, const uint8_t *req,
                                size_t len, struct kr_wbuf *reply);

/* As api_handle, with caller-owned scratch for the decoded arguments (a
 * worker keeps one instead of allocating 70 KiB per request). */
KR_MUST_CHECK kr_err api_handle_with(struct kr_domain *d, bool operator_endpoint,
                                     const uint8_t *req, size_t len, struct kr_payload *args,
                                     struct kr_wbuf *reply);

/* As api_handle_with, for a request from peer address `source` (16 bytes,
 * IPv4 as ::ffff:a.b.c.d, all zero = unknown): the caller's source
 * (struct kr_caller), which per-source limits count by. */
KR_MUST_CHECK kr_err api_handle_from(struct kr_domain *d, bool operator_endpoint,
                                     const uint8_t source[16], const uint8_t *req, size_t len,
                                     struct kr_payload *args, struct kr_wbuf *reply);

/* What api_handle_async did with a request. */
enum api_outcome {
    API_REPLY,   /* *reply is the reply: send it */
    API_PENDING, /* *reply is the reply once done(arg, KR_OK) is called (exactly
                  * once, on the journal's writer thread); with an error
                  * nothing was appended: KR_ECONFLICT, handle it again */
    API_POOL,    /* nothing done: the op may wait (Argon2id, a heavy read, an
                  * append the reply depends on, a refusal to record): run it
                  * with api_handle_from on a thread that may wait */
};
struct api_async {
    enum api_outcome outcome;
    int op;      /* the op (-1 if the request did not name one) */
    int result;  /* for the metrics: API_METRICS_OK or the reply's error code */
    uint64_t t0; /* when handling began (CLOCK_MONOTONIC ns) */
};

/* As api_handle_from, but never waits for a flush or for Argon2id: reads run
 * on their own read transaction and are answered at once; writes of
 * DOM_ROUTE_ASYNC ops are decided and submitted (dom_exec_async) and
 * answered from done; every other op is left for a thread that may wait
 * (API_POOL). The request is counted in the metrics when answered here;
 * a pending one by api_count_async. KR_ENOMEM if no reply could be built. */
KR_MUST_CHECK kr_err api_handle_async(struct kr_domain *d, bool operator_endpoint,
                                      const uint8_t source[16], const uint8_t *req, size_t len,
                                      struct kr_payload *args, struct kr_wbuf *reply,
                                      dom_done_fn done, void *arg, struct api_async *out);

/* Counts a request api_handle_async left pending, once its append completed
 * with `commit` (metrics.h). */
void api_count_async(const struct api_async *a, kr_err commit);

/* Writes an error reply with API error code `code` (enum kr_api_err) and
 * message msg into *reply (reset first), echoing the id of req[0..len) when
 * the request is well-formed enough to read one. For the server's own
 * refusals (`unavailable` while it stops). KR_ENOMEM only. */
KR_MUST_CHECK kr_err api_reply_refusal(const uint8_t *req, size_t len, int code, const char *msg,
                                       struct kr_wbuf *reply);

/* What routes a request to its shard (api/shardmap.h), read from the
 * envelope alone: no op runs and no session is looked up. */
struct api_route {
    int op;               /* enum kr_op */
    const uint8_t *token; /* its 32 bytes, NULL if it has none (or not 32) */
    const char *code;     /* the tenant code auth.login names (not ended), or NULL */
    size_t code_len;
    const uint8_t *application; /* the 16 bytes signup.complete names, or NULL */
};

/* Reads the route of request req[0..len) (the pointers point into req).
 * KR_EINVAL if the envelope does not read strictly: then there is no route,
 * and api_handle will refuse the request itself. */
KR_MUST_CHECK kr_err api_request_route(const uint8_t *req, size_t len, struct api_route *out);

#endif
