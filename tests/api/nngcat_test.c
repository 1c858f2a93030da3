/*
 * nngcat_test.c: the wire is plain nng req/rep. Debian's nngcat (nng-utils),
 * an SP client we did not write, sends msgpack requests built here to a
 * running `kiroku serve` over ipc:// and tcp://, and the replies it prints
 * (--raw: the message bytes as received) are decoded and checked: the id is
 * echoed, ok and the error code are exact. A whole login goes through it:
 * auth.login, then auth.whoami with the token it returned.
 *
 * Skipped when /usr/bin/nngcat is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api_client.h"

#include "kr_limits.h"
#include "protocol.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NNGCAT "/usr/bin/nngcat"

static struct ac_server srv;

static int group_setup(void **state)
{
    (void)state;
    if (access(NNGCAT, X_OK) != 0)
        return 0; /* each test skips */
    ac_server_start(&srv);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (srv.pid > 0)
        assert_int_equal(ac_server_stop(&srv), 0);
    return 0;
}

/* Runs nngcat as a req0 client: dials url, sends the bytes of req once and
 * writes the reply's bytes into *out (malloc'd, *len bytes). Returns
 * nngcat's exit status. */
static int nngcat(const char *url, const msgpack_sbuffer *req, char **out, size_t *len)
{
    char reqpath[700], outpath[700];
    snprintf(reqpath, sizeof reqpath, "%s/request.mp", srv.dir);
    snprintf(outpath, sizeof outpath, "%s/reply.mp", srv.dir);
    FILE *f = fopen(reqpath, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(req->data, 1, req->size, f), req->size);
    assert_int_equal(fclose(f), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fi = open("/dev/null", O_RDONLY);
        dup2(fo, 1);
        dup2(fi, 0);
        /* --count 1 needs an --interval: nngcat 1.5.2 computes its receive
         * timeout as interval - elapsed, and with the default interval (-1)
         * that is an invalid negative timeout once a reply takes a
         * millisecond ("Cannot set recv timeout: Invalid argument"). */
        const char *argv[] = {"nngcat", "--req0",         "--dial",  url, "--file",
                              reqpath,  "--raw",          "--count", "1", "--interval",
                              "60",     "--recv-timeout", "60",      NULL};
        execv(NNGCAT, (char *const *)argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    f = fopen(outpath, "rb");
    assert_non_null(f);
    *out = malloc(KR_API_REPLY_MAX);
    assert_non_null(*out);
    *len = fread(*out, 1, KR_API_REPLY_MAX, f);
    fclose(f);
    return WEXITSTATUS(status);
}

/* Sends the request c holds for op through nngcat and decodes the reply into
 * *u (whose bytes stay in *buf until the caller frees it). */
static int call(struct ac *c, const char *url, int op, const uint8_t *token, msgpack_unpacked *u,
                char **buf)
{
    msgpack_sbuffer req;
    msgpack_sbuffer_init(&req);
    uint64_t id = ac_request(c, op, token, &req);
    size_t len;
    assert_int_equal(nngcat(url, &req, buf, &len), 0);
    msgpack_sbuffer_destroy(&req);
    uint64_t got;
    int rc = ac_decode(*buf, len, u, &got);
    assert_true(got == id);
    return rc;
}

static void run(const char *url)
{
    if (access(NNGCAT, X_OK) != 0)
        skip();
    struct ac c; /* builds requests; its socket is not used */
    ac_open(&c, url);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char *buf;

    /* Anonymous whoami: unauthenticated. */
    assert_int_equal(call(&c, url, KR_OP_AUTH_WHOAMI, NULL, &u, &buf), KR_ERR_UNAUTHENTICATED);
    free(buf);

    /* A sign-up application: ok, with a 16-byte application id. */
    ac_str(&c, KR_FLD_EMAIL, "nngcat@interop.example.jp");
    assert_int_equal(call(&c, url, KR_OP_SIGNUP_APPLY, NULL, &u, &buf), AC_OK);
    const msgpack_object *r = NULL;
    for (uint32_t i = 0; i < u.data.via.map.size; i++)
        if (ac_str_eq(&u.data.via.map.ptr[i].key, API_KEY_RESULT))
            r = &u.data.via.map.ptr[i].val;
    const msgpack_object *app = ac_get(r, KR_FLD_APPLICATION);
    assert_true(app && app->type == MSGPACK_OBJECT_BIN && app->via.bin.size == 16);
    free(buf);

    /* A malformed argument: bad_request, id echoed. */
    ac_str(&c, KR_FLD_EMAIL, "not an e-mail address");
    assert_int_equal(call(&c, url, KR_OP_SIGNUP_APPLY, NULL, &u, &buf), KR_ERR_BAD_REQUEST);
    free(buf);

    /* Login as the demo tenant's master, then whoami with that token. */
    ac_str(&c, KR_FLD_TENANT_CODE, srv.demo_code);
    ac_str(&c, KR_FLD_EMAIL, srv.demo_email);
    ac_str(&c, KR_FLD_PASSWORD, srv.demo_password);
    assert_int_equal(call(&c, url, KR_OP_AUTH_LOGIN, NULL, &u, &buf), AC_OK);
    for (uint32_t i = 0; i < u.data.via.map.size; i++)
        if (ac_str_eq(&u.data.via.map.ptr[i].key, API_KEY_RESULT))
            r = &u.data.via.map.ptr[i].val;
    const msgpack_object *tk = ac_get(r, KR_FLD_TOKEN);
    assert_true(tk && tk->type == MSGPACK_OBJECT_BIN && tk->via.bin.size == 32);
    uint8_t token[32];
    memcpy(token, tk->via.bin.ptr, 32);
    free(buf);
    assert_int_equal(call(&c, url, KR_OP_AUTH_WHOAMI, token, &u, &buf), AC_OK);
    for (uint32_t i = 0; i < u.data.via.map.size; i++)
        if (ac_str_eq(&u.data.via.map.ptr[i].key, API_KEY_RESULT))
            r = &u.data.via.map.ptr[i].val;
    assert_true(ac_str_eq(ac_get(r, KR_FLD_TENANT_CODE), srv.demo_code));
    assert_true(ac_str_eq(ac_get(r, KR_FLD_ROLE), kr_enums[KR_ENUM_ROLE].values[KR_ROLE_MASTER]));
    free(buf);

    msgpack_unpacked_destroy(&u);
    ac_close(&c);
}

static void test_tcp(void **state)
{
    (void)state;
    run(srv.tcp);
}

static void test_ipc(void **state)
{
    (void)state;
    run(srv.ipc);
}

/* Bytes that are not a request at all still get a reply (id nil). */
static void test_garbage(void **state)
{
    (void)state;
    if (access(NNGCAT, X_OK) != 0)
        skip();
    msgpack_sbuffer req;
    msgpack_sbuffer_init(&req);
    msgpack_sbuffer_write(&req, "\xc1", 1);
    char *buf;
    size_t len;
    assert_int_equal(nngcat(srv.tcp, &req, &buf, &len), 0);
    msgpack_sbuffer_destroy(&req);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    const msgpack_object *id = NULL, *ok = NULL, *err = NULL;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
        if (ac_str_eq(&kv->key, API_KEY_ID))
            id = &kv->val;
        else if (ac_str_eq(&kv->key, API_KEY_OK))
            ok = &kv->val;
        else if (ac_str_eq(&kv->key, API_KEY_ERROR))
            err = &kv->val;
    }
    assert_true(id && id->type == MSGPACK_OBJECT_NIL);
    assert_true(ok && ok->type == MSGPACK_OBJECT_BOOLEAN && !ok->via.boolean);
    const msgpack_object *code = NULL;
    for (uint32_t i = 0; err && i < err->via.map.size; i++)
        if (ac_str_eq(&err->via.map.ptr[i].key, API_KEY_CODE))
            code = &err->via.map.ptr[i].val;
    assert_true(ac_str_eq(code, kr_api_errors[KR_ERR_BAD_REQUEST].name));
    msgpack_unpacked_destroy(&u);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_ipc),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
