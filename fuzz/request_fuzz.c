/*
 * request_fuzz.c: libFuzzer target for request decoding and dispatch
 * (api/protocol.h): hostile bytes through api_handle into a real domain.
 *
 * An input is one selector byte s, then the request bytes B: B goes to
 * api_handle as if it arrived over the operator endpoint when s is odd, the
 * client endpoint otherwise. The domain lives in a scratch directory made at
 * the first input (removed at exit), with a deterministic rng and clock and
 * the cheapest Argon2id, seeded with one signed-up tenant and one operator,
 * so ops that reach the handlers find objects. Whatever B is, api_handle
 * must return KR_OK with exactly one well-formed reply: a map of {id, ok,
 * result} or {id, ok: false, error: {code, message}} whose code is one of
 * the API's error names, echoing no more than one id.
 *
 * The protocol module is compiled into the fuzzer (as payload.c is into
 * payload_fuzz) so libFuzzer sees its coverage. The seeds in
 * fuzz/corpus/request/ are a selector byte and a valid request of a few ops
 * (with and without tokens and arguments), written by hand.
 */
#include "accounts.h"
#include "domain.h"
#include "notices.h"
#include "protocol.h"
#include "rng.h"

#include <ftw.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_START_NS 1775001600000000000ull /* 2026-04-01T00:00:00Z */

static struct kr_domain *g_d;
static char g_dir[64];
static _Atomic uint64_t g_now = FUZZ_START_NS;
static struct kr_clock g_clock;
static struct kr_rng_det g_det;
static struct kr_rng g_rng;
static struct kr_wbuf g_reply;
static msgpack_unpacked g_u;

_Noreturn static void fail(const char *what)
{
    fprintf(stderr, "request_fuzz: %s\n", what);
    abort();
}

static uint64_t fuzz_now(void *ctx)
{
    (void)ctx;
    return atomic_fetch_add(&g_now, 1000000ull);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    dom_close(g_d);
    g_d = NULL;
    if (g_dir[0])
        nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Runs op with args for who, which must succeed; the result stays in g_reply. */
static void must(const struct kr_caller *who, int op, struct kr_payload *a)
{
    struct kr_diag diag;
    if (dom_exec(g_d, who, op, a, &g_reply, &diag) != KR_OK)
        fail("seeding the domain failed");
}

static bool take_code(void *arg, const struct outbox_msg *m)
{
    const struct kr_value *v = &m->p->v[KR_FLD_AUTH_CODE];
    if (m->template_id != KR_TEMPLATE_AUTH_CODE || !v->set || v->n >= 24)
        return true;
    memcpy(arg, v->p, v->n);
    ((char *)arg)[v->n] = '\0';
    return false;
}

static void seed(void)
{
    struct kr_payload *a = kr_payload_new();
    struct kr_caller anon = {.role = -1};
    struct kr_caller op = {.role = KR_ROLE_OPERATOR, .operator_endpoint = true};
    if (!a || dom_operator_create(g_d, "ops@platform.example.jp", "fuzz-operator-pw-1",
                                  op.account) != KR_OK)
        fail("operator");
    kr_set_str(a, KR_FLD_EMAIL, "owner@shop.example.jp");
    must(&anon, KR_OP_SIGNUP_APPLY, a);
    msgpack_unpacked_init(&g_u);
    if (msgpack_unpack_next(&g_u, g_reply.data, g_reply.size, NULL) != MSGPACK_UNPACK_SUCCESS ||
        g_u.data.type != MSGPACK_OBJECT_MAP || g_u.data.via.map.size < 1 ||
        g_u.data.via.map.ptr[0].val.type != MSGPACK_OBJECT_BIN ||
        g_u.data.via.map.ptr[0].val.via.bin.size != 16)
        fail("signup.apply result");
    uint8_t app[16];
    memcpy(app, g_u.data.via.map.ptr[0].val.via.bin.ptr, 16);
    kr_payload_reset(a, -1);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, "pay-1");
    must(&op, KR_OP_SIGNUP_CONFIRM_PAYMENT, a);
    char code[24] = "";
    if (outbox_pending(g_d, 0, 0, take_code, code, NULL) != KR_OK || !code[0])
        fail("auth code");
    kr_payload_reset(a, -1);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_AUTH_CODE, code);
    kr_set_str(a, KR_FLD_PASSWORD, "fuzz-master-pw-1");
    kr_set_str(a, KR_FLD_TENANT_NAME, "Fuzz shop");
    must(&anon, KR_OP_SIGNUP_COMPLETE, a);
    kr_payload_free(a);
}

static void init(void)
{
    if (g_d)
        return;
    snprintf(g_dir, sizeof g_dir, "/tmp/kiroku-request-fuzz-XXXXXX");
    if (!mkdtemp(g_dir))
        fail("mkdtemp");
    rmdir(g_dir); /* jrn_create wants it absent or empty; absent is simplest */
    g_clock = (struct kr_clock){.now_ns = fuzz_now};
    kr_rng_det_init(&g_det, 5, &g_rng);
    struct jrn_options jo = {.dir = g_dir, .clock = &g_clock, .map_size = 1ull << 30};
    if (jrn_create(&jo, NULL) != KR_OK)
        fail("jrn_create");
    struct kr_domain_options o = {
        .dir = g_dir,
        .clock = &g_clock,
        .rng = &g_rng,
        .signers = 1,
        .map_size = 1ull << 30,
        .pwhash_ops = crypto_pwhash_OPSLIMIT_MIN,
        .pwhash_mem = crypto_pwhash_MEMLIMIT_MIN,
    };
    if (dom_open(&o, &g_d) != KR_OK)
        fail("dom_open");
    atexit(cleanup);
    kr_wbuf_init(&g_reply, KR_API_REPLY_MAX);
    seed();
}

static const msgpack_object *get(const msgpack_object *m, const char *k)
{
    size_t n = strlen(k);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *key = &m->via.map.ptr[i].key;
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == n &&
            memcmp(key->via.str.ptr, k, n) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

/* The reply must be exactly one map of the documented shape. */
static void check_reply(void)
{
    size_t off = 0;
    if (msgpack_unpack_next(&g_u, g_reply.data, g_reply.size, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != g_reply.size)
        fail("the reply is not one msgpack object");
    const msgpack_object *r = &g_u.data;
    if (r->type != MSGPACK_OBJECT_MAP || r->via.map.size != 3)
        fail("the reply is not a map of three");
    const msgpack_object *id = get(r, API_KEY_ID), *ok = get(r, API_KEY_OK);
    if (!id || (id->type != MSGPACK_OBJECT_NIL && id->type != MSGPACK_OBJECT_POSITIVE_INTEGER))
        fail("reply id");
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN)
        fail("reply ok");
    if (ok->via.boolean) {
        const msgpack_object *res = get(r, API_KEY_RESULT);
        if (!res || res->type != MSGPACK_OBJECT_MAP)
            fail("reply result");
        return;
    }
    const msgpack_object *e = get(r, API_KEY_ERROR);
    if (!e || e->type != MSGPACK_OBJECT_MAP)
        fail("reply error");
    const msgpack_object *code = get(e, API_KEY_CODE), *msg = get(e, API_KEY_MESSAGE);
    if (!code || code->type != MSGPACK_OBJECT_STR || !msg || msg->type != MSGPACK_OBJECT_STR)
        fail("reply error fields");
    for (int i = 0; i < KR_ERR__COUNT; i++)
        if (code->via.str.size == strlen(kr_api_errors[i].name) &&
            memcmp(code->via.str.ptr, kr_api_errors[i].name, code->via.str.size) == 0)
            return;
    fail("an error code that is not one of the API's");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    init();
    /* An exact-size heap copy, so ASan sees any read past the end. */
    size_t n = size - 1;
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        abort();
    memcpy(b, data + 1, n);
    if (api_handle(g_d, data[0] & 1, b, n, &g_reply) != KR_OK)
        fail("api_handle built no reply");
    check_reply();
    /* The shard route is read from the same hostile bytes (server.c asks it
     * before api_handle): what it points at lies inside them. */
    struct api_route r;
    if (api_request_route(b, n, &r) == KR_OK) {
        if (r.token && (r.token < b || r.token + 32 > b + n))
            fail("route token outside the request");
        if (r.code && (r.code_len == 0 ? (const uint8_t *)r.code > b + n
                                       : ((const uint8_t *)r.code < b ||
                                          (const uint8_t *)r.code + r.code_len > b + n)))
            fail("route code outside the request");
    }
    free(b);
    return 0;
}
