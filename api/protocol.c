/*
 * protocol.c: decoding requests and encoding replies (see protocol.h).
 *
 * Design notes. The request is checked whole by kr_mp_check before any
 * field is read, so every later read works on bytes proven to be one
 * complete, bounded object: skipping a value is another kr_mp_check over it.
 * The envelope is read twice: a lenient first pass only looks for a readable
 * id, so that even a request refused for its other keys gets a reply the
 * client can match; the second pass is the strict one. Messages are built
 * from the schema's names and fixed texts; the bytes of a value are never
 * echoed (an unknown key is, made printable and cut short, since it names
 * what was wrong).
 */
#include "protocol.h"

#include "accounts.h"
#include "kr_limits.h"
#include "metrics.h"
#include "mp.h"
#include "payload.h"
#include "schema.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* What the envelope of a request holds once read. */
struct envelope {
    bool has_id;
    uint64_t id;
    int op;
    bool has_token;
    const uint8_t *token;
    size_t token_len;
    bool has_args;
    struct kr_mp_reader args; /* exactly the args value */
    int result;               /* the reply's: API_METRICS_OK or its error code */
};

static kr_err fail(struct kr_diag *d, kr_err err, const char *field, const char *why)
{
    snprintf(d->field, sizeof d->field, "%s", field);
    snprintf(d->why, sizeof d->why, "%s", why);
    return err;
}

static bool key_is(const char *k, size_t kl, const char *name)
{
    size_t n = strlen(name);
    return kl == n && memcmp(k, name, n) == 0;
}

/* Skips one object already proven bounded by the whole-request check. */
static kr_err skip(struct kr_mp_reader *r)
{
    return kr_mp_check(r, KR_API_DEPTH_MAX, KR_API_ITEMS_MAX);
}

/* Proves req[0..len) is one bounded msgpack map and positions r after its
 * header with *count pairs. */
static kr_err check_whole(const uint8_t *req, size_t len, struct kr_mp_reader *r, uint32_t *count,
                          struct kr_diag *d)
{
    if (len == 0)
        return fail(d, KR_EINVAL, "request", "empty");
    if (len > KR_API_REQUEST_MAX)
        return fail(d, KR_ETOOLARGE, "request", "larger than the request limit");
    kr_mp_reader_init(r, req, len, false);
    kr_err err = kr_mp_check(r, KR_API_DEPTH_MAX, KR_API_ITEMS_MAX);
    if (err == KR_ETOOLARGE)
        return fail(d, err, "request", "nested too deep or too many elements");
    if (err)
        return fail(d, KR_EINVAL, "request", "not one complete msgpack object");
    if (kr_mp_remaining(r) != 0)
        return fail(d, KR_EINVAL, "request", "trailing bytes after the request");
    kr_mp_reader_init(r, req, len, false);
    if (kr_mp_peek(r) != KR_MP_MAP || kr_mp_read_map(r, count))
        return fail(d, KR_EINVAL, "request", "must be a map");
    return KR_OK;
}

/* The lenient pass: the first "id" key with an unsigned value, if any. */
static void find_id(const uint8_t *req, size_t len, struct envelope *e)
{
    struct kr_mp_reader r;
    struct kr_diag d;
    uint32_t n;
    if (check_whole(req, len, &r, &n, &d))
        return;
    for (uint32_t i = 0; i < n; i++) {
        const char *k = NULL;
        size_t kl = 0;
        if (kr_mp_peek(&r) == KR_MP_STR ? kr_mp_read_str(&r, &k, &kl) != KR_OK : skip(&r) != KR_OK)
            return;
        if (k && key_is(k, kl, API_KEY_ID) && kr_mp_read_uint(&r, &e->id) == KR_OK) {
            e->has_id = true;
            return;
        }
        if (skip(&r))
            return;
    }
}

static void printable(char *out, size_t cap, const char *s, size_t n)
{
    size_t m = n < cap - 1 ? n : cap - 1;
    for (size_t i = 0; i < m; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[m] = '\0';
}

/* The strict pass. */
static kr_err read_envelope(const uint8_t *req, size_t len, struct envelope *e, struct kr_diag *d)
{
    struct kr_mp_reader r;
    uint32_t n;
    kr_err err = check_whole(req, len, &r, &n, d);
    if (err)
        return err;
    const char *op_key = kr_fields[KR_FLD_OP].name, *token_key = kr_fields[KR_FLD_TOKEN].name;
    bool has_op = false, has_id = false;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        if (kr_mp_read_str(&r, &k, &kl))
            return fail(d, KR_EINVAL, "request", "keys must be strings");
        if (key_is(k, kl, op_key)) {
            const char *s;
            size_t sl;
            if (has_op)
                return fail(d, KR_EINVAL, op_key, "repeated key");
            if (kr_mp_read_str(&r, &s, &sl))
                return fail(d, KR_EINVAL, op_key, "must be a string");
            if ((e->op = kr_op_lookup(s, sl)) < 0)
                return fail(d, KR_EINVAL, op_key, "no such op");
            has_op = true;
        } else if (key_is(k, kl, API_KEY_ID)) {
            if (has_id)
                return fail(d, KR_EINVAL, API_KEY_ID, "repeated key");
            if (kr_mp_read_uint(&r, &e->id))
                return fail(d, KR_EINVAL, API_KEY_ID, "must be an unsigned integer");
            has_id = true;
        } else if (key_is(k, kl, token_key)) {
            if (e->has_token)
                return fail(d, KR_EINVAL, token_key, "repeated key");
            if (kr_mp_read_bin(&r, &e->token, &e->token_len))
                return fail(d, KR_EINVAL, token_key, "must be bin");
            e->has_token = true;
        } else if (key_is(k, kl, API_KEY_ARGS)) {
            if (e->has_args)
                return fail(d, KR_EINVAL, API_KEY_ARGS, "repeated key");
            if (kr_mp_peek(&r) != KR_MP_MAP)
                return fail(d, KR_EINVAL, API_KEY_ARGS, "must be a map");
            const uint8_t *start = r.p;
            if (skip(&r))
                return fail(d, KR_EINVAL, API_KEY_ARGS, "malformed");
            kr_mp_reader_init(&e->args, start, (size_t)(r.p - start), false);
            e->has_args = true;
        } else {
            char name[sizeof d->field];
            printable(name, sizeof name, k, kl);
            return fail(d, KR_EINVAL, name, "unknown key");
        }
    }
    if (!has_op)
        return fail(d, KR_EINVAL, op_key, "missing");
    if (!has_id)
        return fail(d, KR_EINVAL, API_KEY_ID, "missing");
    e->has_id = true;
    return KR_OK;
}

/* ---- Replies ---- */

static int pack_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, k, n);
}

static int pack_head(msgpack_packer *pk, const struct envelope *e, bool ok)
{
    int rc = msgpack_pack_map(pk, 3) | pack_key(pk, API_KEY_ID);
    rc |= e->has_id ? msgpack_pack_uint64(pk, e->id) : msgpack_pack_nil(pk);
    rc |= pack_key(pk, API_KEY_OK);
    rc |= ok ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    return rc;
}

static kr_err reply_error(struct envelope *e, int code, const char *msg, struct kr_wbuf *reply)
{
    msgpack_packer pk;
    e->result = code;
    kr_wbuf_reset(reply);
    msgpack_packer_init(&pk, reply, kr_wbuf_write);
    int rc = pack_head(&pk, e, false) | pack_key(&pk, API_KEY_ERROR) | msgpack_pack_map(&pk, 2);
    rc |= pack_key(&pk, API_KEY_CODE) | pack_key(&pk, kr_api_errors[code].name);
    rc |= pack_key(&pk, API_KEY_MESSAGE) | pack_key(&pk, msg);
    return rc ? KR_ENOMEM : KR_OK;
}

/* The error reply for err with diagnostics d. Faults of ours say only what
 * kind of fault: their details are for the logs, not for clients. */
static kr_err reply_err(struct envelope *e, kr_err err, const struct kr_diag *d,
                        struct kr_wbuf *reply)
{
    int code = dom_api_error(err);
    if (code < 0)
        code = KR_ERR_INTERNAL;
    char msg[sizeof d->field + sizeof d->why + 4];
    if (code == KR_ERR_INTERNAL || code == KR_ERR_UNAVAILABLE || !d->why[0])
        snprintf(msg, sizeof msg, "%s", kr_strerror(err));
    else if (d->field[0])
        snprintf(msg, sizeof msg, "%s: %s", d->field, d->why);
    else
        snprintf(msg, sizeof msg, "%s", d->why);
    return reply_error(e, code, msg, reply);
}

kr_err api_reply_refusal(const uint8_t *req, size_t len, int code, const char *msg,
                         struct kr_wbuf *reply)
{
    KR_ASSERT(code >= 0 && code < KR_ERR__COUNT);
    struct envelope e;
    memset(&e, 0, sizeof e);
    find_id(req, len, &e);
    api_metrics_request(-1, code, 0);
    return reply_error(&e, code, msg, reply);
}

/* ---- Handling ---- */

kr_err api_handle_with(struct kr_domain *d, bool operator_endpoint, const uint8_t *req, size_t len,
                       struct kr_payload *args, struct kr_wbuf *reply)
{
    static const uint8_t unknown[16];
    return api_handle_from(d, operator_endpoint, unknown, req, len, args, reply);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* How handle runs the op: synchronously (done NULL), or as api_handle_async. */
struct run_mode {
    dom_done_fn done;
    void *arg;
    enum api_outcome outcome; /* set by handle */
};

static kr_err handle(struct kr_domain *d, bool operator_endpoint, const uint8_t source[16],
                     const uint8_t *req, size_t len, struct kr_payload *args, struct envelope *ep,
                     struct kr_wbuf *reply, struct run_mode *m);

/* Handles the request and counts it (metrics.h): its op, its result, how
 * long it took. */
kr_err api_handle_from(struct kr_domain *d, bool operator_endpoint, const uint8_t source[16],
                       const uint8_t *req, size_t len, struct kr_payload *args,
                       struct kr_wbuf *reply)
{
    struct envelope e;
    uint64_t t0 = mono_ns();
    memset(&e, 0, sizeof e);
    e.op = -1;
    e.result = API_METRICS_OK;
    struct run_mode m = {0};
    kr_err err = handle(d, operator_endpoint, source, req, len, args, &e, reply, &m);
    api_metrics_request(e.op, err ? KR_ERR_INTERNAL : e.result, mono_ns() - t0);
    return err;
}

kr_err api_handle_async(struct kr_domain *d, bool operator_endpoint, const uint8_t source[16],
                        const uint8_t *req, size_t len, struct kr_payload *args,
                        struct kr_wbuf *reply, dom_done_fn done, void *arg, struct api_async *out)
{
    struct envelope e;
    uint64_t t0 = mono_ns();
    memset(&e, 0, sizeof e);
    e.op = -1;
    e.result = API_METRICS_OK;
    struct run_mode m = {.done = done, .arg = arg, .outcome = API_REPLY};
    kr_err err = handle(d, operator_endpoint, source, req, len, args, &e, reply, &m);
    /* A pending append completes whatever happened to the reply. */
    out->outcome = m.outcome == API_PENDING ? API_PENDING : err ? API_REPLY : m.outcome;
    out->op = e.op;
    out->result = err ? KR_ERR_INTERNAL : e.result;
    out->t0 = t0;
    if (out->outcome == API_REPLY)
        api_metrics_request(e.op, out->result, mono_ns() - t0);
    return err;
}

void api_count_async(const struct api_async *a, kr_err commit)
{
    int result = commit ? dom_api_error(commit) : a->result;
    api_metrics_request(a->op, result < 0 ? KR_ERR_INTERNAL : result, mono_ns() - a->t0);
}

static kr_err handle(struct kr_domain *d, bool operator_endpoint, const uint8_t source[16],
                     const uint8_t *req, size_t len, struct kr_payload *args, struct envelope *e,
                     struct kr_wbuf *reply, struct run_mode *m)
{
    struct kr_diag diag;
    memset(&diag, 0, sizeof diag);
    kr_err err = read_envelope(req, len, e, &diag);
    if (err) {
        e->op = -1;
        find_id(req, len, e);
        return reply_err(e, err, &diag, reply);
    }
    if (m->done && dom_op_route(e->op) == DOM_ROUTE_POOL) {
        m->outcome = API_POOL; /* may wait: nothing decoded further */
        return KR_OK;
    }
    /* Arguments before the session: refusing malformed bytes costs no lookup. */
    static const uint8_t empty_map = 0x80;
    struct kr_mp_reader ar;
    if (e->has_args)
        ar = e->args;
    else
        kr_mp_reader_init(&ar, &empty_map, 1, false);
    if ((err = kr_args_decode(e->op, &ar, args, &diag)))
        return reply_err(e, err == KR_ETOOLARGE ? err : KR_EINVAL, &diag, reply);
    if (kr_mp_remaining(&ar) != 0)
        return reply_err(e, fail(&diag, KR_EINVAL, API_KEY_ARGS, "malformed"), &diag, reply);

    struct kr_caller who;
    memset(&who, 0, sizeof who);
    who.role = -1;
    if (e->has_token) {
        if (e->token_len != 32) {
            err = fail(&diag, KR_EAUTH, kr_fields[KR_FLD_TOKEN].name, "not a valid session");
        } else {
            uint8_t token[32];
            memcpy(token, e->token, 32);
            err = dom_session_resolve(d, token, &who);
            sodium_memzero(token, sizeof token);
            if (err == KR_EAUTH)
                fail(&diag, err, kr_fields[KR_FLD_TOKEN].name, "not a valid session");
        }
        if (err) {
            kr_payload_reset(args, -1);
            return reply_err(e, err, &diag, reply);
        }
    }
    who.operator_endpoint = operator_endpoint;
    memcpy(who.source, source, sizeof who.source);

    /* The result is bounded while it is built: the reply's head first, then
     * a result buffer with the rest of the reply's ceiling. Results carry
     * tokens (auth.login): the buffer wipes every block it outgrows or frees. */
    msgpack_packer pk;
    kr_wbuf_reset(reply);
    msgpack_packer_init(&pk, reply, kr_wbuf_write);
    int rc = pack_head(&pk, e, true) | pack_key(&pk, API_KEY_RESULT);
    struct kr_wbuf result;
    kr_wbuf_init(&result, rc || reply->size >= reply->max ? 1 : reply->max - reply->size);
    enum dom_outcome how = DOM_DONE;
    if (rc)
        err = KR_ENOMEM;
    else if (m->done)
        err = dom_exec_async(d, &who, e->op, args, &result, &diag, m->done, m->arg, &how);
    else
        err = dom_exec(d, &who, e->op, args, &result, &diag);
    kr_payload_reset(args, -1); /* wipes passwords and codes */
    if (how == DOM_RUN_SYNC) {
        sodium_memzero(&who, sizeof who);
        kr_wbuf_free(&result);
        m->outcome = API_POOL;
        return KR_OK;
    }
    if (how == DOM_PENDING)
        m->outcome = API_PENDING;
    sodium_memzero(&who, sizeof who);
    if (err) {
        kr_wbuf_free(&result);
        return reply_err(e, err, &diag, reply);
    }
    rc |= kr_wbuf_write(reply, result.data, result.size);
    kr_wbuf_free(&result);
    if (rc) {
        kr_err why = kr_wbuf_failed(reply);
        if (why == KR_ETOOLARGE)
            return reply_err(e,
                             fail(&diag, KR_ETOOLARGE, API_KEY_RESULT, "too large for one reply"),
                             &diag, reply);
        return KR_ENOMEM;
    }
    return KR_OK;
}

/* The value of key `want` in the args map r (proven bounded): a str (*s,
 * *n) or bin; false if absent or of another type. */
static bool route_arg(struct kr_mp_reader r, const char *want, bool bin, const uint8_t **v,
                      size_t *n)
{
    uint32_t count;
    if (kr_mp_read_map(&r, &count))
        return false;
    for (uint32_t i = 0; i < count; i++) {
        const char *k;
        size_t kl;
        if (kr_mp_peek(&r) != KR_MP_STR || kr_mp_read_str(&r, &k, &kl))
            return false;
        if (key_is(k, kl, want)) {
            const char *s;
            if (bin)
                return kr_mp_peek(&r) == KR_MP_BIN && kr_mp_read_bin(&r, v, n) == KR_OK;
            if (kr_mp_peek(&r) != KR_MP_STR || kr_mp_read_str(&r, &s, n))
                return false;
            *v = (const uint8_t *)s;
            return true;
        }
        if (skip(&r))
            return false;
    }
    return false;
}

kr_err api_request_route(const uint8_t *req, size_t len, struct api_route *out)
{
    struct envelope e;
    struct kr_diag diag;
    memset(out, 0, sizeof *out);
    memset(&e, 0, sizeof e);
    out->op = -1;
    if (read_envelope(req, len, &e, &diag))
        return KR_EINVAL;
    out->op = e.op;
    if (e.has_token && e.token_len == 32)
        out->token = e.token;
    const uint8_t *v;
    size_t n;
    if (e.op == KR_OP_AUTH_LOGIN && e.has_args &&
        route_arg(e.args, kr_fields[KR_FLD_TENANT_CODE].name, false, &v, &n)) {
        out->code = (const char *)v;
        out->code_len = n;
    }
    if (e.op == KR_OP_SIGNUP_COMPLETE && e.has_args &&
        route_arg(e.args, kr_fields[KR_FLD_APPLICATION].name, true, &v, &n) && n == 16)
        out->application = v;
    return KR_OK;
}

kr_err api_handle(struct kr_domain *d, bool operator_endpoint, const uint8_t *req, size_t len,
                  struct kr_wbuf *reply)
{
    struct kr_payload *args = kr_payload_new();
    if (!args)
        return KR_ENOMEM;
    kr_err err = api_handle_with(d, operator_endpoint, req, len, args, reply);
    kr_payload_free(args);
    return err;
}
