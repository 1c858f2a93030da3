/*
 * redirect_test.c: two shards, each an API server in this process over its
 * own domain (shard "alpha", shard "beta"), with one shard map in a real
 * nats-server (tools/nats_cluster.h). A tenant of beta asks alpha: a request
 * with its session token, or its login naming its tenant code, is answered
 * wrong_shard with beta's endpoint; a forged token with beta's tag gets the
 * very same reply bytes (a probe learns nothing about sessions); untagged
 * tokens, unknown tags and unknown codes are served (and refused) by the
 * node they reach; the operator endpoint never redirects. A shard publishes
 * its tenants' placements into the map, leaving clashes alone. Sign-ups go
 * to the policy's shard, and their completion to the shard the application
 * was made on. `kiroku call`
 * follows a wrong_shard once, says so on stderr, and does not with
 * --no-follow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "nats_cluster.h"
#include "protocol.h"
#include "server.h"
#include "shardmap.h"
#include "test_domain.h"
#include "test_util.h"

#define WAIT_MS  30000
#define PASSWORD "correct-horse-77"
#define EMAIL    "master@beta.example.jp"

struct shard {
    const char *name;
    struct td *t;
    natsConnection *nc;
    struct kr_shardmap *m;
    struct kr_shardmap_router rt; /* place_slack 0: strictly the policy */
    struct api_router router;
    struct api_server *s;
    char tcp[64], op[600];
};

static struct kr_nats_cluster *g_nats;
static struct shard g_a = {.name = "alpha"}, g_b = {.name = "beta"};
static uint64_t g_tenant;
static char g_code[40];
static uint8_t g_token[32]; /* the beta master's session */

static void shard_start(struct shard *sh, uint64_t seed)
{
    sh->t = td_new(seed);
    sh->t->shard = sh->name;
    td_reopen(sh->t);
    assert_int_equal(natsConnection_ConnectTo(&sh->nc, kr_nats_urls(g_nats)), NATS_OK);
    assert_int_equal(kr_shardmap_open(sh->nc, 1, &sh->m), KR_OK);
    sh->rt.m = sh->m;
    snprintf(sh->rt.self, sizeof sh->rt.self, "%s", sh->name);
    sh->router.elsewhere = kr_shardmap_route;
    sh->router.ctx = &sh->rt;
    snprintf(sh->op, sizeof sh->op, "ipc://%s/op.sock", sh->t->dir);
    const char *listen[] = {sh->tcp};
    struct api_server_options o = {
        .listen = listen,
        .nlisten = 1,
        .operator_url = sh->op,
        .no_mailer = true,
        .router = &sh->router,
    };
    kr_err err = KR_EBUSY;
    for (int tries = 0; tries < 50 && err == KR_EBUSY; tries++) {
        snprintf(sh->tcp, sizeof sh->tcp, "tcp://127.0.0.1:%d",
                 20000 + (int)randombytes_uniform(40000));
        const char *why;
        err = api_server_start(&o, sh->t->d, &sh->s, &why);
    }
    assert_int_equal(err, KR_OK);
    assert_int_equal(kr_shardmap_announce(sh->m, sh->name, sh->tcp), KR_OK);
}

static void shard_stop(struct shard *sh)
{
    api_server_stop(sh->s);
    kr_shardmap_close(sh->m);
    natsConnection_Destroy(sh->nc);
    td_free(sh->t);
}

static int setup(void **state)
{
    (void)state;
    if (!(g_nats = kr_nats_start(1)))
        return -1;
    shard_start(&g_a, 11);
    shard_start(&g_b, 22);
    /* A tenant signs up on beta; its master logs in there. */
    struct kr_caller anon = td_anonymous();
    g_tenant = td_signup(g_b.t, EMAIL, PASSWORD, NULL, g_code);
    struct kr_payload *a = td_args(g_b.t);
    kr_set_str(a, KR_FLD_TENANT_CODE, g_code);
    kr_set_str(a, KR_FLD_EMAIL, EMAIL);
    kr_set_str(a, KR_FLD_PASSWORD, PASSWORD);
    assert_int_equal(td_exec(g_b.t, &anon, KR_OP_AUTH_LOGIN), KR_OK);
    const msgpack_object *tok = td_get(g_b.t, "token");
    assert_non_null(tok);
    assert_int_equal(tok->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(tok->via.bin.size, 32);
    memcpy(g_token, tok->via.bin.ptr, 32);
    assert_int_equal(kr_shardmap_assign(g_a.m, g_tenant, g_code, "beta"), KR_OK);
    assert_int_equal(kr_shardmap_sync(g_a.m), KR_OK);
    assert_int_equal(kr_shardmap_sync(g_b.m), KR_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    shard_stop(&g_b);
    shard_stop(&g_a);
    kr_nats_free(g_nats);
    nats_Close();
    return 0;
}

/* ---- A client ---- */

/* Sends one request (op, id 7, token or NULL, args: a packed map or NULL)
 * to url and returns the reply's bytes (*len), malloc'd. */
static uint8_t *call_args(const char *url, const char *op, const uint8_t *token,
                          const msgpack_sbuffer *args, size_t *len)
{
    msgpack_sbuffer b;
    msgpack_packer pk;
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2u + (token != NULL) + (args != NULL));
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, 7);
    if (token) {
        msgpack_pack_str_with_body(&pk, "token", 5);
        msgpack_pack_bin_with_body(&pk, token, 32);
    }
    if (args) {
        msgpack_pack_str_with_body(&pk, "args", 4);
        msgpack_sbuffer_write(&b, args->data, args->size);
    }
    nng_socket sock;
    assert_int_equal(nng_req0_open(&sock), 0);
    assert_int_equal(nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, WAIT_MS), 0);
    assert_int_equal(nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, WAIT_MS), 0);
    assert_int_equal(nng_dial(sock, url, NULL, 0), 0);
    assert_int_equal(nng_send(sock, b.data, b.size, 0), 0);
    char *buf;
    size_t n;
    assert_int_equal(nng_recv(sock, &buf, &n, NNG_FLAG_ALLOC), 0);
    uint8_t *out = malloc(n);
    memcpy(out, buf, n);
    *len = n;
    nng_free(buf, n);
    nng_close(sock);
    msgpack_sbuffer_destroy(&b);
    return out;
}

/* As call_args, with a login's arguments when code is not NULL. */
static uint8_t *call(const char *url, const char *op, const uint8_t *token, const char *code,
                     size_t *len)
{
    if (!code)
        return call_args(url, op, token, NULL, len);
    msgpack_sbuffer a;
    msgpack_packer pk;
    msgpack_sbuffer_init(&a);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "tenant_code", 11);
    msgpack_pack_str_with_body(&pk, code, strlen(code));
    msgpack_pack_str_with_body(&pk, "email", 5);
    msgpack_pack_str_with_body(&pk, EMAIL, strlen(EMAIL));
    msgpack_pack_str_with_body(&pk, "password", 8);
    msgpack_pack_str_with_body(&pk, PASSWORD, strlen(PASSWORD));
    uint8_t *r = call_args(url, op, token, &a, len);
    msgpack_sbuffer_destroy(&a);
    return r;
}

/* The reply's error code ("" if ok) and message into code / msg. */
static void reply_error(const uint8_t *r, size_t len, char code[32], char msg[600])
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, (const char *)r, len, &off), MSGPACK_UNPACK_SUCCESS);
    code[0] = msg[0] = '\0';
    const msgpack_object *ok = td_map_get(&u.data, API_KEY_OK);
    assert_non_null(ok);
    if (!ok->via.boolean) {
        const msgpack_object *e = td_map_get(&u.data, API_KEY_ERROR);
        const msgpack_object *c = td_map_get(e, API_KEY_CODE), *m = td_map_get(e, API_KEY_MESSAGE);
        assert_true(c && m && c->via.str.size < 32 && m->via.str.size < 600);
        memcpy(code, c->via.str.ptr, c->via.str.size);
        code[c->via.str.size] = '\0';
        memcpy(msg, m->via.str.ptr, m->via.str.size);
        msg[m->via.str.size] = '\0';
    }
    msgpack_unpacked_destroy(&u);
}

static void expect(const char *url, const char *op, const uint8_t *token, const char *code,
                   const char *want_code, const char *want_msg)
{
    size_t len;
    char c[32], m[600];
    uint8_t *r = call(url, op, token, code, &len);
    reply_error(r, len, c, m);
    free(r);
    assert_string_equal(c, want_code);
    if (want_msg)
        assert_string_equal(m, want_msg);
}

/* ---- Tests ---- */

static void test_token_redirected(void **state)
{
    (void)state;
    char msg[600];
    snprintf(msg, sizeof msg, "the tenant lives on another shard: %s", g_b.tcp);
    assert_int_equal(g_token[0], DOM_TOKEN_TAGGED);
    expect(g_a.tcp, "auth.whoami", g_token, NULL, "wrong_shard", msg);
    expect(g_b.tcp, "auth.whoami", g_token, NULL, "", NULL);
    /* A forged token with beta's tag: byte for byte the same reply. */
    uint8_t forged[32];
    randombytes_buf(forged, sizeof forged);
    memcpy(forged, g_token, 5);
    size_t l1, l2;
    uint8_t *r1 = call(g_a.tcp, "auth.whoami", g_token, NULL, &l1);
    uint8_t *r2 = call(g_a.tcp, "auth.whoami", forged, NULL, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(r1, r2, l1);
    free(r1);
    free(r2);
    expect(g_b.tcp, "auth.whoami", forged, NULL, "unauthenticated", NULL);
    /* A write op too, before anything runs: nothing appended on alpha. */
    uint64_t size = jrn_size(g_a.t->d->j);
    expect(g_a.tcp, "auth.logout", g_token, NULL, "wrong_shard", msg);
    assert_int_equal(jrn_size(g_a.t->d->j), size);
}

static void test_login_redirected(void **state)
{
    (void)state;
    char msg[600];
    snprintf(msg, sizeof msg, "the tenant lives on another shard: %s", g_b.tcp);
    expect(g_a.tcp, "auth.login", NULL, g_code, "wrong_shard", msg);
    expect(g_b.tcp, "auth.login", NULL, g_code, "", NULL);
    /* A code the map does not know is this node's to refuse. */
    expect(g_a.tcp, "auth.login", NULL, "tnosuchcode", "unauthenticated", NULL);
}

static void test_served_here(void **state)
{
    (void)state;
    uint8_t tok[32];
    /* Untagged, and tagged with a shard nobody announced: served (refused) here. */
    randombytes_buf(tok, sizeof tok);
    tok[0] = 0;
    expect(g_a.tcp, "auth.whoami", tok, NULL, "unauthenticated", NULL);
    tok[0] = DOM_TOKEN_TAGGED;
    dom_token_tag("gamma", tok + 1);
    expect(g_a.tcp, "auth.whoami", tok, NULL, "unauthenticated", NULL);
    /* alpha's own tag: served here. */
    dom_token_tag("alpha", tok + 1);
    expect(g_a.tcp, "auth.whoami", tok, NULL, "unauthenticated", NULL);
    /* The operator endpoint never redirects. */
    expect(g_a.op, "auth.whoami", g_token, NULL, "unauthenticated", NULL);
}

/* A shard publishes its tenants' placements: once, the codes too, leaving
 * alone what the map gives another shard; then logins are redirected to it. */
static void test_publish(void **state)
{
    (void)state;
    char c1[40], c2[40], s[KR_SHARD_NAME_MAX + 1], msg[600];
    uint64_t t1 = td_signup(g_a.t, "m1@alpha.example.jp", PASSWORD, NULL, c1);
    uint64_t t2 = td_signup(g_a.t, "m2@alpha.example.jp", PASSWORD, NULL, c2);
    assert_int_equal(kr_shardmap_assign(g_b.m, t2, NULL, "beta"), KR_OK); /* a clash */
    assert_int_equal(kr_shardmap_sync(g_a.m), KR_OK);
    size_t w = 99, c = 99;
    assert_int_equal(kr_shardmap_publish(g_a.m, g_a.t->d, "alpha", &w, &c), KR_OK);
    assert_int_equal(w, 3); /* t1 and its code, t2's code */
    assert_int_equal(c, 1); /* t2 */
    assert_int_equal(kr_shardmap_publish(g_a.m, g_a.t->d, "alpha", &w, &c), KR_OK);
    assert_int_equal(w, 0);
    assert_int_equal(c, 1);
    assert_int_equal(kr_shardmap_publish(g_b.m, g_b.t->d, "beta", &w, &c), KR_OK);
    assert_int_equal(w, 0);
    assert_int_equal(c, 0);
    assert_int_equal(kr_shardmap_sync(g_b.m), KR_OK);
    assert_int_equal(kr_shardmap_get(g_b.m, t1, s), KR_OK);
    assert_string_equal(s, "alpha");
    assert_int_equal(kr_shardmap_get(g_a.m, t2, s), KR_OK);
    assert_string_equal(s, "beta");
    assert_int_equal(kr_shardmap_get_code(g_b.m, c1, strlen(c1), s), KR_OK);
    assert_string_equal(s, "alpha");
    snprintf(msg, sizeof msg, "the tenant lives on another shard: %s", g_a.tcp);
    expect(g_b.tcp, "auth.login", NULL, c1, "wrong_shard", msg);
}

/* Sign-ups go to the shard the placement policy chooses (alpha: fewer
 * tenants in the map), and signup.complete to the shard the application was
 * made on (its id's tag). */
static void test_signup_placed(void **state)
{
    (void)state;
    char msg_a[600], code[32], m[600];
    snprintf(msg_a, sizeof msg_a, "the tenant lives on another shard: %s", g_a.tcp);
    msgpack_sbuffer a;
    msgpack_packer pk;
    msgpack_sbuffer_init(&a);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "email", 5);
    msgpack_pack_str_with_body(&pk, "new@shop.example.jp", 19);
    size_t len;
    uint64_t size_b = jrn_size(g_b.t->d->j);
    uint8_t *r = call_args(g_b.tcp, "signup.apply", NULL, &a, &len);
    reply_error(r, len, code, m);
    free(r);
    assert_string_equal(code, "wrong_shard");
    assert_string_equal(m, msg_a);
    assert_int_equal(jrn_size(g_b.t->d->j), size_b); /* nothing done on beta */
    r = call_args(g_a.tcp, "signup.apply", NULL, &a, &len);
    reply_error(r, len, code, m);
    assert_string_equal(code, "");
    msgpack_sbuffer_destroy(&a);
    /* The application's id carries alpha's tag. */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, (const char *)r, len, NULL), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *app = td_map_get(td_map_get(&u.data, API_KEY_RESULT), "application");
    assert_true(app && app->type == MSGPACK_OBJECT_BIN && app->via.bin.size == 16);
    uint8_t tag[4];
    dom_token_tag("alpha", tag);
    assert_int_equal((uint8_t)app->via.bin.ptr[0], DOM_TOKEN_TAGGED);
    assert_memory_equal(app->via.bin.ptr + 1, tag, 4);
    msgpack_sbuffer_init(&a);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "application", 11);
    msgpack_pack_bin_with_body(&pk, app->via.bin.ptr, 16);
    msgpack_pack_str_with_body(&pk, "auth_code", 9);
    msgpack_pack_str_with_body(&pk, "123456", 6);
    msgpack_pack_str_with_body(&pk, "password", 8);
    msgpack_pack_str_with_body(&pk, PASSWORD, strlen(PASSWORD));
    msgpack_pack_str_with_body(&pk, "tenant_name", 11);
    msgpack_pack_str_with_body(&pk, "Shop", 4);
    msgpack_unpacked_destroy(&u);
    free(r);
    r = call_args(g_b.tcp, "signup.complete", NULL, &a, &len);
    reply_error(r, len, code, m);
    free(r);
    assert_string_equal(code, "wrong_shard");
    assert_string_equal(m, msg_a);
    /* On alpha it is alpha's to answer (no payment confirmed yet). */
    r = call_args(g_a.tcp, "signup.complete", NULL, &a, &len);
    reply_error(r, len, code, m);
    free(r);
    assert_string_equal(code, "expired");
    msgpack_sbuffer_destroy(&a);
}

/* kiroku call follows a wrong_shard once. */
static void test_call_follows(void **state)
{
    (void)state;
    char hex[65], out[8192], err[8192];
    sodium_bin2hex(hex, sizeof hex, g_token, sizeof g_token);
    const char *args[] = {"call", "--url", g_a.tcp, "--token", hex, "auth.whoami", NULL};
    int rc = kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\"ok\":true"));
    char said[700];
    snprintf(said, sizeof said, "kiroku: call: wrong_shard: sending the request to %s\n", g_b.tcp);
    assert_string_equal(err, said);
    const char *nofollow[] = {"call", "--url",       g_a.tcp,       "--token",
                              hex,    "--no-follow", "auth.whoami", NULL};
    rc = kr_test_run(KR_KIROKU_BIN, nofollow, out, err, sizeof out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "\"code\":\"wrong_shard\""));
    assert_string_equal(err, "");
    /* A login names its code: followed too. */
    char json[300];
    snprintf(json, sizeof json, "{\"tenant_code\":\"%s\",\"email\":\"%s\",\"password\":\"%s\"}",
             g_code, EMAIL, PASSWORD);
    const char *login[] = {"call", "--url", g_a.tcp, "auth.login", json, NULL};
    rc = kr_test_run(KR_KIROKU_BIN, login, out, err, sizeof out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\"token\":"));
    assert_string_equal(err, said);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_redirected), cmocka_unit_test(test_login_redirected),
        cmocka_unit_test(test_served_here),      cmocka_unit_test(test_publish),
        cmocka_unit_test(test_signup_placed),    cmocka_unit_test(test_call_follows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
