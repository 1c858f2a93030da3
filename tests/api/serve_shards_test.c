/*
 * serve_shards_test.c: two shards as real `kiroku serve --nats --shard S
 * --node N` processes, each on its own data directory (made by `serve
 * --demo`, then stopped), on one nats-server (tools/nats_cluster.h). Each
 * node takes its shard's lease and publishes its demo tenant into the shard
 * map; a session token of shard alpha and a login naming alpha's tenant
 * code, sent to beta, are answered wrong_shard naming alpha's endpoint (its
 * first --listen URL), and `kiroku call` follows them; `kiroku shards list`
 * shows both shards with their lease holders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "api_client.h"
#include "nats_cluster.h"
#include "test_util.h"

struct shard {
    struct ac_server s; /* the demo data and its endpoints */
    const char *name, *node;
    char out[700], err[700];
    pid_t pid;
};

static struct kr_nats_cluster *g_nats;
static struct shard g_a = {.name = "alpha", .node = "a1"}, g_b = {.name = "beta", .node = "b1"};

/* For kr_test_wait_for: whether the node printed that it is the primary. */
static bool is_primary(void *arg)
{
    const struct shard *sh = arg;
    FILE *f = fopen(sh->out, "rb");
    if (!f)
        return false;
    char line[2048];
    bool yes = false;
    while (fgets(line, sizeof line, f))
        yes = yes || strncmp(line, "{\"role\":\"primary\"", 17) == 0;
    fclose(f);
    return yes;
}

/* serve --demo makes the shard's data and stops; the node then serves it. */
static void start(struct shard *sh)
{
    ac_server_start(&sh->s);
    assert_int_equal(kill(sh->s.pid, SIGTERM), 0);
    assert_int_equal(waitpid(sh->s.pid, NULL, 0), sh->s.pid);
    sh->s.pid = 0;
    snprintf(sh->out, sizeof sh->out, "%s/node.out", sh->s.dir);
    snprintf(sh->err, sizeof sh->err, "%s/node.err", sh->s.dir);
    const char *argv[] = {
        "kiroku",   "serve",   "--data",     sh->s.data,   "--nats",      kr_nats_urls(g_nats),
        "--shard",  sh->name,  "--node",     sh->node,     "--listen",    sh->s.ipc,
        "--listen", sh->s.tcp, "--operator", sh->s.op_url, "--lease-ttl", "3000",
        "--json",   NULL};
    sh->pid = kr_test_spawn(KR_KIROKU_BIN, argv, sh->out, sh->err, false);
    if (!kr_test_wait_for(is_primary, sh, KR_TEST_WAIT_MS, "the shard's primary")) {
        kr_test_print_log(sh->err);
        fail();
    }
}

static void stop(struct shard *sh)
{
    if (sh->pid > 0) {
        kill(sh->pid, SIGTERM);
        struct kr_test_child ch = {sh->pid, 0};
        if (!kr_test_wait_for(kr_test_child_exited, &ch, KR_TEST_WAIT_MS, "the node's exit")) {
            kill(sh->pid, SIGKILL);
            waitpid(sh->pid, NULL, 0);
        }
        sh->pid = 0;
    }
    ac_server_stop(&sh->s);
}

static int setup(void **state)
{
    (void)state;
    if (!(g_nats = kr_nats_start(1)))
        return -1;
    start(&g_a);
    start(&g_b);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stop(&g_b);
    stop(&g_a);
    kr_nats_free(g_nats);
    return 0;
}

static void login(struct ac *c, const struct ac_server *s, uint8_t token[32])
{
    ac_str(c, KR_FLD_TENANT_CODE, s->demo_code);
    ac_str(c, KR_FLD_EMAIL, s->demo_email);
    ac_str(c, KR_FLD_PASSWORD, s->demo_password);
    assert_int_equal(ac_call(c, KR_OP_AUTH_LOGIN, NULL), AC_OK);
    const msgpack_object *t = ac_get(ac_result(c), KR_FLD_TOKEN);
    assert_true(t && t->type == MSGPACK_OBJECT_BIN && t->via.bin.size == 32);
    memcpy(token, t->via.bin.ptr, 32);
}

/* The message of the last reply, which must be wrong_shard. */
static void expect_wrong_shard(const struct ac *c, int rc, const char *endpoint)
{
    if (rc != KR_ERR_WRONG_SHARD) {
        char out[8192], err[8192];
        const char *args[] = {"shards", "--nats", kr_nats_urls(g_nats), "list", NULL};
        kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out);
        print_message("reply %d; the map:\n%s%s", rc, out, err);
        kr_test_print_log(g_b.err);
    }
    assert_int_equal(rc, KR_ERR_WRONG_SHARD);
    const msgpack_object *e = NULL;
    for (uint32_t i = 0; i < c->u.data.via.map.size; i++)
        if (ac_str_eq(&c->u.data.via.map.ptr[i].key, "error"))
            e = &c->u.data.via.map.ptr[i].val;
    assert_non_null(e);
    char want[700];
    snprintf(want, sizeof want, "the tenant lives on another shard: %s", endpoint);
    bool found = false;
    for (uint32_t i = 0; i < e->via.map.size; i++)
        if (ac_str_eq(&e->via.map.ptr[i].key, "message")) {
            found = true;
            if (!ac_str_eq(&e->via.map.ptr[i].val, want))
                fail_msg("wrong_shard's message is not \"%s\"", want);
        }
    assert_true(found);
}

/* Whether the shard map places tenant code `code` on alpha (kiroku shards
 * where). */
static bool code_placed(void *code)
{
    char out[1024], err[1024];
    const char *args[] = {"shards", "--nats", kr_nats_urls(g_nats), "where", "--code", code, NULL};
    return kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out) == 0 &&
           strcmp(out, "alpha\n") == 0;
}

static void test_redirected(void **state)
{
    (void)state;
    struct ac a, b;
    uint8_t token[32];
    ac_open(&a, g_a.s.tcp);
    login(&a, &g_a.s, token);
    ac_open(&b, g_b.s.tcp);
    assert_int_equal(ac_call(&a, KR_OP_AUTH_WHOAMI, token), AC_OK);
    /* alpha's endpoint is its first --listen URL. */
    expect_wrong_shard(&b, ac_call(&b, KR_OP_AUTH_WHOAMI, token), g_a.s.ipc);
    /* alpha publishes its demo tenant into the map within a round. */
    assert_true(kr_test_wait_for(code_placed, g_a.s.demo_code, KR_TEST_WAIT_MS, "alpha's code"));
    ac_str(&b, KR_FLD_TENANT_CODE, g_a.s.demo_code);
    ac_str(&b, KR_FLD_EMAIL, g_a.s.demo_email);
    ac_str(&b, KR_FLD_PASSWORD, g_a.s.demo_password);
    expect_wrong_shard(&b, ac_call(&b, KR_OP_AUTH_LOGIN, NULL), g_a.s.ipc);
    /* kiroku call follows it. */
    char hex[65], out[8192], err[8192];
    sodium_bin2hex(hex, sizeof hex, token, sizeof token);
    const char *args[] = {"call", "--url", g_b.s.tcp, "--token", hex, "auth.whoami", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out), 0);
    assert_non_null(strstr(out, "\"ok\":true"));
    assert_non_null(strstr(err, "wrong_shard: sending the request to ipc://"));
    ac_close(&b);
    ac_close(&a);
}

static void test_shards_list(void **state)
{
    (void)state;
    char out[8192], err[8192];
    const char *args[] = {"shards", "--nats", kr_nats_urls(g_nats), "list", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out), 0);
    assert_non_null(strstr(out, "alpha"));
    assert_non_null(strstr(out, "beta"));
    assert_non_null(strstr(out, "lease a1 (epoch"));
    assert_non_null(strstr(out, "lease b1 (epoch"));
}

int main(void)
{
    if (!kr_nats_available()) {
        fprintf(stderr, "nats-server not found: skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redirected),
        cmocka_unit_test(test_shards_list),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
