/*
 * gateway.c: JSON over HTTP in front of the protocol (see gateway.h).
 *
 * Design notes. libmicrohttpd calls answer() several times per request: once
 * with the headers (*state NULL), then once per piece of body, then once
 * with no body left. Everything that can be refused without the body is
 * refused at the first call (path, method, Content-Type, Content-Length,
 * credentials, CSRF), so a refused request runs nothing and its body is
 * never read; a chunked body past the bound is dropped as it comes (answer()).
 * At the last call the request is built exactly as `kiroku call` builds it
 * and handed to the protocol (api_handle_from) after the router, as the
 * nng server does (server.c slot_decide), so no check, limit, metric or
 * audit record differs between the two. The reply's envelope is read with
 * the bounded reader; its result (or error) is turned into JSON by jsonmp,
 * and the id is dropped (HTTP pairs requests and replies).
 *
 * Threads: libmicrohttpd's thread per connection, so an op that waits
 * (Argon2id, a flush, an export) holds its own connection only. Buffers
 * that may hold a token or a password (the body, the request, the reply and
 * its JSON) are wiped when freed; libmicrohttpd's copies of headers are not
 * (the Set-Cookie header of a login, the request's own headers).
 */
#include "gateway.h"

#include "console.h"
#include "http.h"
#include "jsonmp.h"
#include "kr_limits.h"
#include "mp.h"
#include "payload.h"
#include "protocol.h"
#include "schema.h"
#include "server.h"
#include "wbuf.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define GW_TOKEN_LEN ((size_t)32)
#define GW_HEX_LEN   (2u * GW_TOKEN_LEN)
/* The envelope besides the arguments: op name, id, token, map headers. */
#define GW_ENVELOPE_MAX 256u

#define GW_CSP                                                                                     \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

struct api_gateway {
    struct MHD_Daemon *daemon;
    struct kr_domain *d;
    const struct api_router *router; /* NULL or elsewhere NULL: none */
    bool operator_ep, tls;
    atomic_bool stopping;
    char *cert, *key; /* PEM text for https (wiped when freed) */
    char url[API_GATEWAY_URL_MAX];
};

/* What a request asks for, known from its first line. */
enum gw_kind {
    GW_API,    /* POST /api/OP */
    GW_LOGIN,  /* POST /session */
    GW_WHOAMI, /* GET /session */
    GW_LOGOUT, /* POST /session/logout */
};

/* One request being received (libmicrohttpd's per-request state). */
struct gw_req {
    enum gw_kind kind;
    int op; /* enum kr_op */
    bool have_token, by_cookie;
    bool refused;   /* the body passed KR_GATEWAY_BODY_MAX: 413 at its end */
    size_t dropped; /* bytes of body dropped since */
    uint8_t token[GW_TOKEN_LEN];
    struct kr_wbuf body; /* ceiling KR_GATEWAY_BODY_MAX */
};

/* The state of a request answered at its first call (nothing to free), and
 * of a GET or HEAD until its second call: answered there, as libmicrohttpd
 * keeps a connection alive only for a request answered once read whole. */
static char gw_answered, gw_deferred;

/* ---- CSRF: HMAC-SHA-256 of the session token under a key of the process ---- */

static uint8_t csrf_key[crypto_auth_hmacsha256_KEYBYTES];
static pthread_once_t gw_once = PTHREAD_ONCE_INIT;
/* Each connection thread's scratch for decoded arguments (70 KiB, as a
 * server worker keeps one), freed (wiped) when the thread ends. */
static pthread_key_t args_key;
static bool args_key_ok;

static void args_free(void *p)
{
    kr_payload_free(p);
}

static void gw_init(void)
{
    crypto_auth_hmacsha256_keygen(csrf_key);
    args_key_ok = pthread_key_create(&args_key, args_free) == 0;
}

/* This thread's scratch for arguments, or NULL (out of memory). */
static struct kr_payload *thread_args(void)
{
    struct kr_payload *p = args_key_ok ? pthread_getspecific(args_key) : NULL;
    if (p || !args_key_ok || !(p = kr_payload_new()))
        return p;
    if (pthread_setspecific(args_key, p) != 0) {
        kr_payload_free(p);
        return NULL;
    }
    return p;
}

static void csrf_of(const uint8_t token[GW_TOKEN_LEN], char hex[GW_HEX_LEN + 1])
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, token, GW_TOKEN_LEN, csrf_key);
    sodium_bin2hex(hex, GW_HEX_LEN + 1, mac, sizeof mac);
}

/* Whether header (may be NULL) is the csrf of token; constant time. */
static bool csrf_ok(const uint8_t token[GW_TOKEN_LEN], const char *header)
{
    uint8_t got[crypto_auth_hmacsha256_BYTES], mac[crypto_auth_hmacsha256_BYTES];
    size_t n = 0;
    if (!header || strlen(header) != GW_HEX_LEN ||
        sodium_hex2bin(got, sizeof got, header, GW_HEX_LEN, NULL, &n, NULL) != 0 || n != sizeof got)
        return false;
    crypto_auth_hmacsha256(mac, token, GW_TOKEN_LEN, csrf_key);
    return crypto_verify_32(got, mac) == 0;
}

/* ---- Answers ---- */

/* The HTTP status of an API error code. */
static unsigned status_of(int code)
{
    switch (code) {
    case KR_ERR_BAD_REQUEST:
        return MHD_HTTP_BAD_REQUEST;
    case KR_ERR_UNAUTHENTICATED:
        return MHD_HTTP_UNAUTHORIZED;
    case KR_ERR_FORBIDDEN:
        return MHD_HTTP_FORBIDDEN;
    case KR_ERR_NOT_FOUND:
        return MHD_HTTP_NOT_FOUND;
    case KR_ERR_CONFLICT:
        return MHD_HTTP_CONFLICT;
    case KR_ERR_LOCKED:
        return MHD_HTTP_LOCKED;
    case KR_ERR_EXPIRED:
        return MHD_HTTP_GONE;
    case KR_ERR_TOO_LARGE:
        return MHD_HTTP_CONTENT_TOO_LARGE;
    case KR_ERR_RATE_LIMITED:
        return MHD_HTTP_TOO_MANY_REQUESTS;
    case KR_ERR_UNAVAILABLE:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    case KR_ERR_NOT_PRIMARY:
    case KR_ERR_WRONG_SHARD:
        return MHD_HTTP_MISDIRECTED_REQUEST;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

/* The headers every answer carries; no_store for /api and /session. */
static bool add_headers(struct MHD_Response *r, bool no_store)
{
    return MHD_add_response_header(r, "Content-Security-Policy", GW_CSP) == MHD_YES &&
           MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") == MHD_YES &&
           MHD_add_response_header(r, "Referrer-Policy", "no-referrer") == MHD_YES &&
           MHD_add_response_header(r, "X-Frame-Options", "DENY") == MHD_YES &&
           MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
                                   no_store ? "no-store" : "no-cache") == MHD_YES;
}

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
                             const char *type, bool no_store, const char *cookie)
{
    if (!r)
        return MHD_NO;
    enum MHD_Result ok = add_headers(r, no_store) ? MHD_YES : MHD_NO;
    if (ok == MHD_YES && type)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (ok == MHD_YES && cookie)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    if (ok == MHD_YES && status == MHD_HTTP_METHOD_NOT_ALLOWED)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "POST, GET, HEAD");
    if (ok == MHD_YES)
        ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* A JSON text handed to libmicrohttpd, wiped and freed once sent. */
struct gw_text {
    char *p;
    size_t len;
};

static void text_free(void *cls)
{
    struct gw_text *t = cls;
    if (t->p)
        sodium_memzero(t->p, t->len);
    free(t->p);
    free(t);
}

/* Sends JSON text p[0..len) (malloc'd; taken in every case). */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, char *p, size_t len,
                                 const char *cookie)
{
    struct gw_text *t = malloc(sizeof *t);
    if (!t) {
        sodium_memzero(p, len);
        free(p);
        return MHD_NO;
    }
    t->p = p;
    t->len = len;
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback_cls(len, p, text_free, t);
    if (!r) {
        text_free(t);
        return MHD_NO;
    }
    return queue(c, status, r, "application/json", true, cookie);
}

/* Sends {"ok":false,"error":{"code":CODE,"message":MSG}} with status (0 =
 * the code's). */
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, int code,
                                  const char *msg, const char *cookie)
{
    char buf[KR_ENDPOINT_MAX + 512];
    size_t len = 0;
    len += (size_t)snprintf(
        buf, sizeof buf,
        "{\"ok\":false,\"error\":{\"code\":\"%s\",\"message\":", kr_api_errors[code].name);
    if (!jsonmp_buf_str(buf, sizeof buf - 2, &len, msg, strlen(msg)))
        len += (size_t)snprintf(buf + len, sizeof buf - len, "\"\"");
    len += (size_t)snprintf(buf + len, sizeof buf - len, "}}");
    char *p = malloc(len);
    if (!p)
        return MHD_NO;
    memcpy(p, buf, len);
    return send_json(c, status ? status : status_of(code), p, len, cookie);
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    return queue(c, status, r, "text/plain; charset=utf-8", false, NULL);
}

/* ---- The console's files ---- */

static bool file_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > KR_GATEWAY_FILE_NAME_MAX ||
        !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static enum MHD_Result serve_file(struct MHD_Connection *c, const char *url)
{
    const char *name = strcmp(url, "/") == 0 ? "index.html" : url + 1;
    const struct api_console_file *f =
        file_name_ok(name) ? api_console_find(name, strlen(name)) : NULL;
    if (!f)
        return send_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
    const char *inm =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    bool same = inm && strcmp(inm, f->etag) == 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        same ? 0 : f->len, same ? NULL : (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (r && MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, f->etag) != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return queue(c, same ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, r, api_console_type(f->name), false,
                 NULL);
}

/* ---- Requests ---- */

/* The caller's source: the peer's address, IPv4 as ::ffff:a.b.c.d. */
static void source_of(struct MHD_Connection *c, uint8_t out[16])
{
    memset(out, 0, 16);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    }
}

static bool hex_token(const char *s, uint8_t out[GW_TOKEN_LEN])
{
    size_t n = 0;
    return s && strlen(s) == GW_HEX_LEN &&
           sodium_hex2bin(out, GW_TOKEN_LEN, s, GW_HEX_LEN, NULL, &n, NULL) == 0 &&
           n == GW_TOKEN_LEN;
}

/* The request's token: Authorization: Bearer, else the cookie (not for the
 * ops only callers without a session use: a browser signing up or logging
 * in again may still hold an old cookie). Returns a message for a malformed
 * one (401), else NULL (q->have_token says if any). */
static const char *read_token(struct MHD_Connection *c, struct gw_req *q)
{
    const char *auth =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth) {
        if (strncasecmp(auth, "Bearer ", 7) != 0 || !hex_token(auth + 7, q->token))
            return "authorization: Bearer and the session token's 64 hex digits";
        q->have_token = true;
        return NULL;
    }
    const char *cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, API_GATEWAY_COOKIE);
    if (cookie && cookie[0] && kr_ops[q->op].roles != KR_ROLEBIT_ANONYMOUS) {
        if (!hex_token(cookie, q->token))
            return API_GATEWAY_COOKIE ": not a session token";
        q->have_token = q->by_cookie = true;
    }
    return NULL;
}

static bool json_type(struct MHD_Connection *c)
{
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    static const char want[] = "application/json";
    if (!t || strncasecmp(t, want, strlen(want)) != 0)
        return false;
    t += strlen(want);
    while (*t == ' ' || *t == '\t')
        t++;
    return *t == '\0' || *t == ';';
}

/* Whether Content-Length, when given, is within the bound. */
static bool length_ok(struct MHD_Connection *c)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!v)
        return true;
    size_t n = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || n > KR_GATEWAY_BODY_MAX)
            return false;
        n = n * 10 + (size_t)(*v - '0');
    }
    return n <= KR_GATEWAY_BODY_MAX;
}

static void req_free(struct gw_req *q)
{
    if (!q)
        return;
    kr_wbuf_free(&q->body);
    sodium_memzero(q, sizeof *q);
    free(q);
}

static void completed(void *cls, struct MHD_Connection *c, void **state,
                      enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)c;
    (void)why;
    if (*state && *state != &gw_answered && *state != &gw_deferred)
        req_free(*state);
    *state = NULL;
}

/* What the path and method ask for: GW_* in *kind (and the op), or an
 * answer already queued (returns true with *answered). */
static enum MHD_Result classify(struct MHD_Connection *c, const char *url, const char *method,
                                enum gw_kind *kind, int *op, bool *answered)
{
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    bool get =
        strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    *answered = true;
    *op = -1;
    if (strncmp(url, "/api/", 5) == 0) {
        *op = kr_op_lookup(url + 5, strlen(url + 5));
        if (*op < 0)
            return send_error(c, 0, KR_ERR_NOT_FOUND, "op: no such op", NULL);
        if (!post)
            return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, KR_ERR_BAD_REQUEST,
                              "method: an op is POST", NULL);
        *kind = GW_API;
    } else if (strcmp(url, "/session") == 0) {
        if (!post && !get)
            return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, KR_ERR_BAD_REQUEST,
                              "method: GET or POST", NULL);
        *kind = post ? GW_LOGIN : GW_WHOAMI;
        *op = post ? KR_OP_AUTH_LOGIN : KR_OP_AUTH_WHOAMI;
    } else if (strcmp(url, "/session/logout") == 0) {
        if (!post)
            return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, KR_ERR_BAD_REQUEST, "method: POST",
                              NULL);
        *kind = GW_LOGOUT;
        *op = KR_OP_AUTH_LOGOUT;
    } else if (!get) {
        return strcmp(url, "/") == 0 || (url[0] == '/' && file_name_ok(url + 1))
                   ? send_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n")
                   : send_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
    } else {
        return serve_file(c, url);
    }
    *answered = false;
    return MHD_YES;
}

/* The first call of a request (headers only): refuses what it can without
 * the body; else makes the request's state. */
static enum MHD_Result begin(struct api_gateway *g, struct MHD_Connection *c, const char *url,
                             const char *method, void **state)
{
    enum gw_kind kind = GW_API;
    int op;
    bool answered;
    *state = &gw_answered;
    enum MHD_Result rc = classify(c, url, method, &kind, &op, &answered);
    if (answered)
        return rc;
    if (atomic_load(&g->stopping))
        return send_error(c, 0, KR_ERR_UNAVAILABLE, "the server is stopping", NULL);
    if (kind != GW_WHOAMI && !json_type(c))
        return send_error(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, KR_ERR_BAD_REQUEST,
                          "content-type: application/json", NULL);
    if (!length_ok(c))
        return send_error(c, 0, KR_ERR_TOO_LARGE, "body: too large", NULL);
    struct gw_req *q = calloc(1, sizeof *q);
    if (!q)
        return MHD_NO;
    q->kind = kind;
    q->op = op;
    kr_wbuf_init(&q->body, KR_GATEWAY_BODY_MAX);
    const char *bad = read_token(c, q);
    if (bad)
        rc = send_error(c, 0, KR_ERR_UNAUTHENTICATED, bad, NULL);
    else if ((kind == GW_WHOAMI || kind == GW_LOGOUT) && !q->have_token)
        rc = send_error(c, 0, KR_ERR_UNAUTHENTICATED, "session: none (log in first)", NULL);
    else if (q->by_cookie && kind != GW_WHOAMI &&
             !csrf_ok(q->token,
                      MHD_lookup_connection_value(c, MHD_HEADER_KIND, API_GATEWAY_CSRF_HEADER)))
        rc = send_error(c, 0, KR_ERR_FORBIDDEN, "csrf", NULL);
    else {
        *state = q;
        return MHD_YES;
    }
    req_free(q);
    return rc;
}

/* How deep JSON text t[0..n) nests (objects and arrays; strings skipped). */
static unsigned json_depth(const char *t, size_t n)
{
    unsigned depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '{' || ch == '[') {
            if (++depth > max)
                max = depth;
        } else if ((ch == '}' || ch == ']') && depth) {
            depth--;
        }
    }
    return max;
}

/* Packs the request {op, id, token?, args?} of q (arguments from its body)
 * into *req. On a refusal returns false with *code and msg set. */
static bool build_request(const struct gw_req *q, struct kr_wbuf *req, int *code, char *msg,
                          size_t cap)
{
    const char *json = q->body.data;
    size_t len = q->body.size;
    size_t room = GW_ENVELOPE_MAX + 2 * len + 64;
    uint8_t *p = malloc(room);
    if (!p) {
        *code = KR_ERR_INTERNAL;
        snprintf(msg, cap, "out of memory");
        return false;
    }
    struct kr_mp_fixbuf fb = {.p = p, .cap = room};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    msgpack_pack_map(&pk, 2u + (q->have_token ? 1u : 0u) + (len ? 1u : 0u));
    const char *op = kr_ops[q->op].name, *fop = kr_fields[KR_FLD_OP].name;
    msgpack_pack_str_with_body(&pk, fop, strlen(fop));
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    msgpack_pack_str_with_body(&pk, API_KEY_ID, strlen(API_KEY_ID));
    msgpack_pack_uint64(&pk, 1);
    if (q->have_token) {
        const char *ft = kr_fields[KR_FLD_TOKEN].name;
        msgpack_pack_str_with_body(&pk, ft, strlen(ft));
        msgpack_pack_bin_with_body(&pk, q->token, GW_TOKEN_LEN);
    }
    bool ok = true;
    /* Arguments nest one below the envelope: deeper than the protocol takes
     * is refused as the protocol refuses it, before any value is read. */
    if (len && json_depth(json, len) + 1 > KR_API_DEPTH_MAX) {
        *code = KR_ERR_TOO_LARGE;
        snprintf(msg, cap, "request: nested deeper than %u levels", KR_API_DEPTH_MAX);
        ok = false;
    } else if (len) {
        msgpack_pack_str_with_body(&pk, API_KEY_ARGS, strlen(API_KEY_ARGS));
        struct kr_mp_fixbuf args = {.p = p + fb.len, .cap = fb.overflow ? 0 : room - fb.len};
        struct jsonmp_diag d;
        kr_err err = jsonmp_args(q->op, json, len, &args, &d);
        if (err) {
            *code = err == KR_ETOOLARGE ? KR_ERR_TOO_LARGE
                    : err == KR_ENOMEM  ? KR_ERR_INTERNAL
                                        : KR_ERR_BAD_REQUEST;
            snprintf(msg, cap, "%s%s%s", d.key, d.key[0] ? ": " : "", d.why);
            ok = false;
        }
        fb.len += args.len;
    }
    if (ok && (fb.overflow || fb.len > KR_API_REQUEST_MAX)) {
        *code = KR_ERR_TOO_LARGE;
        snprintf(msg, cap, "request: larger than %zu bytes", KR_API_REQUEST_MAX);
        ok = false;
    }
    if (ok && kr_wbuf_add(req, p, fb.len) != KR_OK) {
        *code = KR_ERR_INTERNAL;
        snprintf(msg, cap, "out of memory");
        ok = false;
    }
    sodium_memzero(p, room);
    free(p);
    return ok;
}

/* Runs request req as the nng endpoint would (router first, on the client
 * listener only), the reply into *reply. */
static kr_err run(struct api_gateway *g, const uint8_t source[16], const struct kr_wbuf *req,
                  struct kr_wbuf *reply)
{
    const uint8_t *body = (const uint8_t *)req->data;
    size_t len = req->size;
    if (atomic_load(&g->stopping))
        return api_reply_refusal(body, len, KR_ERR_UNAVAILABLE, "the server is stopping", reply);
    struct api_route r;
    char endpoint[KR_ENDPOINT_MAX + 1], msg[KR_ENDPOINT_MAX + 64];
    if (!g->operator_ep && g->router && g->router->elsewhere &&
        api_request_route(body, len, &r) == KR_OK &&
        g->router->elsewhere(g->router->ctx, &r, endpoint)) {
        snprintf(msg, sizeof msg, "%s: %s", kr_strerror(KR_EWRONGSHARD), endpoint);
        return api_reply_refusal(body, len, KR_ERR_WRONG_SHARD, msg, reply);
    }
    struct kr_payload *args = thread_args();
    if (!args)
        return KR_ENOMEM;
    return api_handle_from(g->d, g->operator_ep, source, body, len, args, reply);
}

/* The parts of a reply envelope (pointers into it). */
struct gw_reply {
    bool ok;
    int code;            /* enum kr_api_err when !ok */
    const uint8_t *part; /* the result or error map */
    size_t part_len;
};

static bool key_is(const char *k, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(k, want, n) == 0;
}

/* Reads the envelope mp[0..len) the protocol wrote. */
static kr_err read_reply(const uint8_t *mp, size_t len, struct gw_reply *out)
{
    struct kr_mp_reader r, e;
    memset(out, 0, sizeof *out);
    out->code = KR_ERR_INTERNAL;
    kr_mp_reader_init(&r, mp, len, false);
    uint32_t n, m;
    if (kr_mp_check(&r, JSONMP_DEPTH_MAX, len) || kr_mp_remaining(&r))
        return KR_ECORRUPT;
    kr_mp_reader_init(&r, mp, len, false);
    if (kr_mp_read_map(&r, &n))
        return KR_ECORRUPT;
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *s;
        size_t kn, sn;
        if (kr_mp_read_str(&r, &k, &kn))
            return KR_ECORRUPT;
        const uint8_t *start = r.p;
        if (key_is(k, kn, API_KEY_OK)) {
            if (kr_mp_read_bool(&r, &out->ok))
                return KR_ECORRUPT;
            continue;
        }
        if (kr_mp_check(&r, JSONMP_DEPTH_MAX, len))
            return KR_ECORRUPT;
        if (!key_is(k, kn, API_KEY_RESULT) && !key_is(k, kn, API_KEY_ERROR))
            continue;
        out->part = start;
        out->part_len = (size_t)(r.p - start);
        kr_mp_reader_init(&e, start, out->part_len, false);
        if (!key_is(k, kn, API_KEY_ERROR) || kr_mp_read_map(&e, &m))
            continue;
        for (uint32_t j = 0; j < m; j++) {
            if (kr_mp_read_str(&e, &k, &kn))
                return KR_ECORRUPT;
            if (key_is(k, kn, API_KEY_CODE) && kr_mp_peek(&e) == KR_MP_STR) {
                if (kr_mp_read_str(&e, &s, &sn))
                    return KR_ECORRUPT;
                for (int c = 0; c < KR_ERR__COUNT; c++)
                    if (key_is(s, sn, kr_api_errors[c].name))
                        out->code = c;
            } else if (kr_mp_check(&e, JSONMP_DEPTH_MAX, len)) {
                return KR_ECORRUPT;
            }
        }
    }
    return out->part ? KR_OK : KR_ECORRUPT;
}

/* The session's view of a result map (auth.login's, auth.whoami's): the
 * same map without its token (copied to token), plus csrf and endpoint,
 * packed into *out. */
static kr_err session_result(const struct api_gateway *g, const uint8_t *mp, size_t len,
                             const uint8_t *known_token, uint8_t token[GW_TOKEN_LEN],
                             struct kr_wbuf *out)
{
    struct kr_mp_reader r;
    uint32_t n;
    bool have = known_token != NULL;
    if (have)
        memcpy(token, known_token, GW_TOKEN_LEN);
    kr_mp_reader_init(&r, mp, len, false);
    if (kr_mp_read_map(&r, &n))
        return KR_ECORRUPT;
    const uint8_t *first = r.p;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kn;
        const uint8_t *b;
        size_t bn;
        if (kr_mp_read_str(&r, &k, &kn))
            return KR_ECORRUPT;
        bool tok = key_is(k, kn, kr_fields[KR_FLD_TOKEN].name);
        if (tok && !kr_mp_read_bin(&r, &b, &bn) && bn == GW_TOKEN_LEN) {
            memcpy(token, b, GW_TOKEN_LEN);
            have = true;
        } else if (tok || kr_mp_check(&r, JSONMP_DEPTH_MAX, len)) {
            return KR_ECORRUPT;
        } else {
            kept++;
        }
    }
    if (!have)
        return KR_ECORRUPT;
    char csrf[GW_HEX_LEN + 1];
    csrf_of(token, csrf);
    const char *ep = g->operator_ep ? "operator" : "client";
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, kr_wbuf_write);
    msgpack_pack_map(&pk, kept + 2);
    kr_mp_reader_init(&r, first, len - (size_t)(first - mp), false);
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kn;
        const uint8_t *kstart = r.p;
        if (kr_mp_read_str(&r, &k, &kn) || kr_mp_check(&r, JSONMP_DEPTH_MAX, len))
            return KR_ECORRUPT;
        if (!key_is(k, kn, kr_fields[KR_FLD_TOKEN].name) &&
            kr_wbuf_add(out, kstart, (size_t)(r.p - kstart)) != KR_OK)
            return kr_wbuf_failed(out);
    }
    msgpack_pack_str_with_body(&pk, "csrf", 4);
    msgpack_pack_str_with_body(&pk, csrf, GW_HEX_LEN);
    msgpack_pack_str_with_body(&pk, "endpoint", 8);
    msgpack_pack_str_with_body(&pk, ep, strlen(ep));
    return kr_wbuf_failed(out);
}

/* Sends {"ok":..,"result"|"error":JSON of part[0..len)}. */
static enum MHD_Result send_part(struct MHD_Connection *c, bool ok, int code, const uint8_t *part,
                                 size_t len, const char *cookie)
{
    char *json = NULL;
    size_t jlen = 0;
    struct jsonmp_diag d;
    if (jsonmp_to_json(part, len, &json, &jlen, &d) != KR_OK)
        return send_error(c, 0, KR_ERR_INTERNAL, "the reply does not convert to JSON", cookie);
    const char *head = ok ? "{\"ok\":true,\"result\":" : "{\"ok\":false,\"error\":";
    size_t hlen = strlen(head), total = hlen + jlen + 1;
    char *p = malloc(total);
    if (!p) {
        sodium_memzero(json, jlen);
        free(json);
        return MHD_NO;
    }
    /* A body of total bytes, not a string: no NUL. */
    memcpy(p, head, hlen); /* NOLINT(bugprone-not-null-terminated-result) */
    memcpy(p + hlen, json, jlen);
    p[total - 1] = '}';
    sodium_memzero(json, jlen);
    free(json);
    return send_json(c, ok ? MHD_HTTP_OK : status_of(code), p, total, cookie);
}

/* Answers the reply: the op's, or a session's (cookie set or cleared). */
static enum MHD_Result answer_reply(const struct api_gateway *g, struct MHD_Connection *c,
                                    const struct gw_req *q, const struct kr_wbuf *reply)
{
    struct gw_reply rp;
    char cookie[sizeof API_GATEWAY_COOKIE + GW_HEX_LEN + 80];
    const char *secure = g->tls ? "; Secure" : "";
    const char *set = NULL;
    if (read_reply((const uint8_t *)reply->data, reply->size, &rp) != KR_OK)
        return send_error(c, 0, KR_ERR_INTERNAL, "the reply does not read", NULL);
    if (q->kind == GW_LOGOUT) {
        snprintf(cookie, sizeof cookie,
                 API_GATEWAY_COOKIE "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict%s", secure);
        set = cookie;
    }
    if (!rp.ok || (q->kind != GW_LOGIN && q->kind != GW_WHOAMI))
        return send_part(c, rp.ok, rp.code, rp.part, rp.part_len, set);
    struct kr_wbuf out;
    uint8_t token[GW_TOKEN_LEN];
    kr_wbuf_init(&out, KR_API_REPLY_MAX + 256);
    kr_err err = session_result(g, rp.part, rp.part_len, q->kind == GW_WHOAMI ? q->token : NULL,
                                token, &out);
    enum MHD_Result rc;
    if (err) {
        rc = send_error(c, 0, KR_ERR_INTERNAL, "the session reply does not read", NULL);
    } else {
        if (q->kind == GW_LOGIN) {
            char hex[GW_HEX_LEN + 1];
            sodium_bin2hex(hex, sizeof hex, token, GW_TOKEN_LEN);
            snprintf(cookie, sizeof cookie,
                     API_GATEWAY_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict%s", hex, secure);
            sodium_memzero(hex, sizeof hex);
            set = cookie;
        }
        rc = send_part(c, true, 0, (const uint8_t *)out.data, out.size, set);
    }
    sodium_memzero(token, sizeof token);
    sodium_memzero(cookie, sizeof cookie);
    kr_wbuf_free(&out);
    return rc;
}

/* The last call of a request: the body is all there. */
static enum MHD_Result finish(struct api_gateway *g, struct MHD_Connection *c, struct gw_req *q)
{
    struct kr_wbuf req, reply;
    char msg[256];
    int code = KR_ERR_INTERNAL;
    uint8_t source[16];
    enum MHD_Result rc;
    source_of(c, source);
    kr_wbuf_init(&req, KR_API_REQUEST_MAX);
    kr_wbuf_init(&reply, KR_API_REPLY_MAX);
    if (!build_request(q, &req, &code, msg, sizeof msg))
        rc = send_error(c, 0, code, msg, NULL);
    else if (run(g, source, &req, &reply) != KR_OK)
        rc = send_error(c, 0, KR_ERR_INTERNAL, "out of memory", NULL);
    else
        rc = answer_reply(g, c, q, &reply);
    kr_wbuf_free(&req);
    kr_wbuf_free(&reply);
    return rc;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    (void)version;
    struct api_gateway *g = cls;
    struct gw_req *q = *state;
    if (!q &&
        (strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0)) {
        *state = &gw_deferred;
        return MHD_YES;
    }
    if (!q)
        return begin(g, c, url, method, state);
    if ((void *)q == &gw_deferred) {
        *upload_size = 0; /* a GET's body is dropped */
        enum MHD_Result rc = begin(g, c, url, method, state);
        q = *state;
        return (void *)q == &gw_answered ? rc : finish(g, c, q);
    }
    if ((void *)q == &gw_answered) {
        *upload_size = 0; /* answered: the rest of the body is dropped */
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (!q->refused && kr_wbuf_add(&q->body, upload, n) == KR_OK)
            return MHD_YES;
        /* Past the bound: libmicrohttpd answers only a request read whole,
         * so the rest is dropped unread up to as much again, then the
         * connection is closed. */
        kr_wbuf_free(&q->body);
        q->refused = true;
        q->dropped += n;
        return q->dropped <= KR_GATEWAY_BODY_MAX ? MHD_YES : MHD_NO;
    }
    if (q->refused)
        return send_error(c, 0, KR_ERR_TOO_LARGE, "body: too large", NULL);
    return finish(g, c, q);
}

/* ---- Starting and stopping ---- */

bool api_gateway_tls_available(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

/* url as http:// (for api_http_parse_url), *tls whether it was https. */
static bool plain_url(const char *url, char out[API_GATEWAY_URL_MAX], bool *tls)
{
    *tls = url && strncmp(url, "https://", 8) == 0;
    if (!url || strlen(url) >= API_GATEWAY_URL_MAX - 1)
        return false;
    snprintf(out, API_GATEWAY_URL_MAX, "http://%s", *tls ? url + 8 : url + 7);
    return *tls || strncmp(url, "http://", 7) == 0;
}

bool api_gateway_url_ok(const char *url, bool *tls)
{
    char plain[API_GATEWAY_URL_MAX];
    struct sockaddr_storage sa;
    size_t salen;
    return plain_url(url, plain, tls) && api_http_parse_url(plain, &sa, &salen) == KR_OK;
}

static kr_err read_pem(const char *path, char **out)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return KR_EKEY;
    char *p = calloc(1, KR_API_PEM_MAX + 1);
    size_t n = p ? fread(p, 1, KR_API_PEM_MAX + 1, f) : 0;
    fclose(f);
    if (!p)
        return KR_ENOMEM;
    if (n == 0 || n > KR_API_PEM_MAX) {
        sodium_memzero(p, KR_API_PEM_MAX + 1);
        free(p);
        return KR_EKEY;
    }
    *out = p;
    return KR_OK;
}

static void gateway_free(struct api_gateway *g)
{
    if (!g)
        return;
    if (g->key) {
        sodium_memzero(g->key, KR_API_PEM_MAX + 1);
        free(g->key);
    }
    if (g->cert) {
        sodium_memzero(g->cert, KR_API_PEM_MAX + 1);
        free(g->cert);
    }
    free(g);
}

/* Paths are taken as sent: no op or file name needs a %-escape, and
 * decoding one (%2e%2e, %00) could only turn a path into another. */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

/* libmicrohttpd's daemon for g on sa, with o's limits. */
static struct MHD_Daemon *daemon_start(struct api_gateway *g, const struct api_gateway_options *o,
                                       const struct sockaddr_storage *sa)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
    if (sa->ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (g->tls)
        flags |= MHD_USE_TLS;
    unsigned conns =
        o->conns_max && o->conns_max < KR_GATEWAY_CONNS_MAX ? o->conns_max : KR_GATEWAY_CONNS_MAX;
    unsigned per_ip = o->per_ip ? o->per_ip : KR_API_CONNS_PER_PEER_DEFAULT;
    unsigned timeout = o->timeout_s ? o->timeout_s : KR_GATEWAY_TIMEOUT_S;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, (void *)sa},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)conns, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)per_ip, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)timeout, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)KR_GATEWAY_MEMORY_LIMIT, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, NULL},
        {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape_none, NULL},
        {g->tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, g->key},
        {g->tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, g->cert},
        {MHD_OPTION_END, 0, NULL},
    };
    return MHD_start_daemon(flags, 0, NULL, NULL, answer, g, MHD_OPTION_ARRAY, opts,
                            MHD_OPTION_END);
}

kr_err api_gateway_start(const struct api_gateway_options *o, struct kr_domain *d,
                         struct api_gateway **out, const char **why)
{
    const char *scratch;
    if (!why)
        why = &scratch;
    *out = NULL;
    char plain[API_GATEWAY_URL_MAX];
    bool tls = false;
    struct sockaddr_storage sa;
    size_t salen = 0;
    if (!plain_url(o->url, plain, &tls) || api_http_parse_url(plain, &sa, &salen) != KR_OK) {
        *why = "a gateway URL is http://HOST:PORT or https://HOST:PORT (an IP address or "
               "localhost)";
        return KR_EINVAL;
    }
    if (tls && (!o->cert_file || !o->key_file || !api_gateway_tls_available())) {
        *why = !api_gateway_tls_available() ? "https: this libmicrohttpd has no TLS"
                                            : "https needs --cert and --key";
        return KR_EINVAL;
    }
    pthread_once(&gw_once, gw_init);
    struct api_gateway *g = calloc(1, sizeof *g);
    if (!g)
        return KR_ENOMEM;
    g->d = d;
    g->router = o->router;
    g->operator_ep = o->operator_endpoint;
    g->tls = tls;
    atomic_init(&g->stopping, false);
    kr_err err;
    if (tls &&
        ((err = read_pem(o->cert_file, &g->cert)) || (err = read_pem(o->key_file, &g->key)))) {
        gateway_free(g);
        *why = "https: the certificate or key file does not read";
        return err;
    }
    if (!(g->daemon = daemon_start(g, o, &sa))) {
        gateway_free(g);
        *why = "the gateway did not start (is the address in use? the certificate valid?)";
        return KR_EBUSY;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(g->daemon, MHD_DAEMON_INFO_BIND_PORT);
    char host[INET6_ADDRSTRLEN] = "";
    if (sa.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, host, sizeof host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, host, sizeof host);
    /* localhost stays localhost: a browser keeps one cookie per host name,
     * so the two listeners are told apart by the names they were given. */
    const char *given = strstr(plain, "://");
    if (given && strncmp(given + 3, "localhost:", 10) == 0)
        snprintf(host, sizeof host, "localhost");
    snprintf(g->url, sizeof g->url, sa.ss_family == AF_INET6 ? "%s://[%s]:%u" : "%s://%s:%u",
             tls ? "https" : "http", host, info ? info->port : 0u);
    *out = g;
    return KR_OK;
}

const char *api_gateway_url(const struct api_gateway *g)
{
    return g->url;
}

void api_gateway_stop_begin(struct api_gateway *g)
{
    if (g)
        atomic_store(&g->stopping, true);
}

void api_gateway_stop(struct api_gateway *g)
{
    if (!g)
        return;
    api_gateway_stop_begin(g);
    MHD_stop_daemon(g->daemon);
    gateway_free(g);
}
