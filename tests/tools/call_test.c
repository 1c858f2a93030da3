/*
 * call_test.c: `kiroku call` against a tiny nng rep0 server of the test's own:
 * the request it sends (decoded here with msgpack-c: op, id, token, args), the
 * reply printed as JSON, and the exit codes: 0 ok, 1 an error reply, 2 bad
 * arguments (nothing sent), 3 no server, no reply, or a reply that is not one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

#define OUT_MAX 65536

static const char TOKEN_HEX[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
static const char CONTACT_HEX[] = "000102030405060708090a0b0c0d0e0f";

static char root[1024], url[1200], outpath[1100], errpath[1100];

/* What the test server does with the one request it takes. */
enum reply_kind { REPLY_OK, REPLY_ERROR, REPLY_WRONG_ID, REPLY_GARBAGE, REPLY_NONE };

struct server {
    nng_socket sock;
    pthread_t thread;
    enum reply_kind kind;
    bool got;          /* a request arrived */
    uint8_t req[4096]; /* its bytes */
    size_t req_len;
};

static void pack_s(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* The id of a request (0 if none). */
static uint64_t request_id(const uint8_t *b, size_t n)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    uint64_t id = 0;
    if (msgpack_unpack_next(&u, (const char *)b, n, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            msgpack_object_kv *kv = &u.data.via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 2 &&
                memcmp(kv->key.via.str.ptr, "id", 2) == 0 &&
                kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                id = kv->val.via.u64;
        }
    msgpack_unpacked_destroy(&u);
    return id;
}

static void *serve_one(void *arg)
{
    struct server *s = arg;
    void *msg;
    size_t len;
    if (nng_recv(s->sock, &msg, &len, NNG_FLAG_ALLOC) != 0)
        return NULL;
    s->got = true;
    s->req_len = len < sizeof s->req ? len : sizeof s->req;
    memcpy(s->req, msg, s->req_len);
    nng_free(msg, len);
    if (s->kind == REPLY_NONE)
        return NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = request_id(s->req, s->req_len);
    if (s->kind == REPLY_GARBAGE) {
        msgpack_sbuffer_write(&sb, "\x83\xa2id\xdd\xff\xff\xff\xff", 9);
    } else {
        msgpack_pack_map(&pk, 3);
        pack_s(&pk, "id");
        msgpack_pack_uint64(&pk, s->kind == REPLY_WRONG_ID ? id + 1 : id);
        pack_s(&pk, "ok");
        if (s->kind == REPLY_ERROR) {
            msgpack_pack_false(&pk);
            pack_s(&pk, "error");
            msgpack_pack_map(&pk, 2);
            pack_s(&pk, "code");
            pack_s(&pk, "not_found");
            pack_s(&pk, "message");
            pack_s(&pk, "contact: not found");
        } else {
            msgpack_pack_true(&pk);
            pack_s(&pk, "result");
            msgpack_pack_map(&pk, 3);
            pack_s(&pk, "contact");
            msgpack_pack_bin_with_body(&pk,
                                       "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b"
                                       "\x0c\x0d\x0e\x0f",
                                       16);
            pack_s(&pk, "name");
            pack_s(&pk, "山田 \"Taro\"");
            pack_s(&pk, "version");
            msgpack_pack_uint64(&pk, 3);
        }
    }
    nng_send(s->sock, sb.data, sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    return NULL;
}

static struct server srv;
static bool srv_running;

/* Starts the test server on u; it answers one request as `kind` says. */
static void start(const char *u, enum reply_kind kind)
{
    memset(&srv, 0, sizeof srv);
    srv.kind = kind;
    assert_int_equal(nng_rep0_open(&srv.sock), 0);
    assert_int_equal(nng_socket_set_size(srv.sock, NNG_OPT_RECVMAXSZ, 65536), 0);
    assert_int_equal(nng_socket_set_ms(srv.sock, NNG_OPT_RECVTIMEO, 30000), 0);
    assert_int_equal(nng_listen(srv.sock, u, NULL, 0), 0);
    assert_int_equal(pthread_create(&srv.thread, NULL, serve_one, &srv), 0);
    srv_running = true;
}

static void stop(void)
{
    if (!srv_running)
        return;
    nng_close(srv.sock); /* ends a recv still waiting */
    pthread_join(srv.thread, NULL);
    srv_running = false;
}

/* Runs kiroku call with args; KIROKU_TOKEN set to env_token when not NULL;
 * stdin from the file stdin_path when not NULL. Stdout and stderr into
 * out / err (NUL-terminated). Returns the exit status. */
static int call(const char *env_token, const char *stdin_path, char *out, char *err,
                const char *const *args)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fi = open(stdin_path ? stdin_path : "/dev/null", O_RDONLY);
        dup2(fo, 1);
        dup2(fe, 2);
        dup2(fi, 0);
        if (env_token)
            setenv("KIROKU_TOKEN", env_token, 1);
        else
            unsetenv("KIROKU_TOKEN");
        const char *argv[32] = {"kiroku", "call"};
        size_t n = 2;
        for (size_t i = 0; args[i] && n < 31; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(KR_KIROKU_BIN, (char *const *)argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    const char *paths[2] = {outpath, errpath};
    char *bufs[2] = {out, err};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "rb");
        assert_non_null(f);
        size_t n = fread(bufs[i], 1, OUT_MAX - 1, f);
        bufs[i][n] = '\0';
        fclose(f);
    }
    return WEXITSTATUS(status);
}

/* Looks up key in map m. */
static const msgpack_object *get(const msgpack_object *m, const char *key)
{
    assert_int_equal(m->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        assert_int_equal(kv->key.type, MSGPACK_OBJECT_STR);
        if (kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    return NULL;
}

static void assert_str(const msgpack_object *o, const char *s)
{
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_STR);
    assert_int_equal(o->via.str.size, strlen(s));
    assert_memory_equal(o->via.str.ptr, s, strlen(s));
}

/* Checks the request the server got: op, an id (returned), the token (hex,
 * or NULL for none) and the contact argument (or no args when NULL). */
static uint64_t check_request(const char *op, const char *token_hex, const char *contact_hex)
{
    assert_true(srv.got);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, (const char *)srv.req, srv.req_len, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, srv.req_len);
    const msgpack_object *m = &u.data;
    assert_int_equal(m->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(m->via.map.size, 2u + (token_hex ? 1u : 0u) + (contact_hex ? 1u : 0u));
    assert_str(get(m, "op"), op);
    const msgpack_object *id = get(m, "id");
    assert_non_null(id);
    assert_int_equal(id->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    uint64_t idv = id->via.u64;
    assert_true(idv >= 1);
    const msgpack_object *tok = get(m, "token");
    if (token_hex) {
        uint8_t want[32];
        for (int i = 0; i < 32; i++)
            sscanf(token_hex + 2 * i, "%2hhx", &want[i]);
        assert_non_null(tok);
        assert_int_equal(tok->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(tok->via.bin.size, 32);
        assert_memory_equal(tok->via.bin.ptr, want, 32);
    } else {
        assert_null(tok);
    }
    const msgpack_object *args = get(m, "args");
    if (contact_hex) {
        assert_non_null(args);
        assert_int_equal(args->type, MSGPACK_OBJECT_MAP);
        assert_int_equal(args->via.map.size, 1);
        const msgpack_object *c = get(args, "contact");
        assert_non_null(c);
        assert_int_equal(c->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(c->via.bin.size, 16);
        uint8_t want[16];
        for (int i = 0; i < 16; i++)
            sscanf(contact_hex + 2 * i, "%2hhx", &want[i]);
        assert_memory_equal(c->via.bin.ptr, want, 16);
    } else {
        assert_null(args);
    }
    msgpack_unpacked_destroy(&u);
    return idv;
}

static char out[OUT_MAX], err[OUT_MAX], args_json[256];

static int setup(void **state)
{
    (void)state;
    kr_test_tmpdir(root, sizeof root);
    snprintf(url, sizeof url, "ipc://%s/s.sock", root);
    snprintf(outpath, sizeof outpath, "%s/out", root);
    snprintf(errpath, sizeof errpath, "%s/err", root);
    snprintf(args_json, sizeof args_json, "{\"contact\":\"%s\"}", CONTACT_HEX);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stop();
    kr_test_rmrf(root);
    return 0;
}

static void test_ok(void **state)
{
    (void)state;
    start(url, REPLY_OK);
    assert_int_equal(
        call(NULL, NULL, out, err,
             (const char *[]){"--url", url, "--token", TOKEN_HEX, "contacts.get", args_json, NULL}),
        0);
    stop();
    uint64_t id = check_request("contacts.get", TOKEN_HEX, CONTACT_HEX);
    char want[512];
    snprintf(want, sizeof want,
             "{\"id\":%llu,\"ok\":true,\"result\":{\"contact\":\"%s\",\"name\":\"山田 "
             "\\\"Taro\\\"\",\"version\":3}}\n",
             (unsigned long long)id, CONTACT_HEX);
    assert_string_equal(out, want);
    assert_string_equal(err, "");
}

static void test_error_reply(void **state)
{
    (void)state;
    start(url, REPLY_ERROR);
    assert_int_equal(call(TOKEN_HEX, NULL, out, err,
                          (const char *[]){"--url", url, "contacts.get", args_json, NULL}),
                     1);
    stop();
    /* The token came from KIROKU_TOKEN. */
    uint64_t id = check_request("contacts.get", TOKEN_HEX, CONTACT_HEX);
    char want[512];
    snprintf(want, sizeof want,
             "{\"id\":%llu,\"ok\":false,\"error\":{\"code\":\"not_found\",\"message\":"
             "\"contact: not found\"}}\n",
             (unsigned long long)id);
    assert_string_equal(out, want);
}

static void test_no_token_no_args_stdin(void **state)
{
    (void)state;
    /* No token anywhere, no arguments: neither key is sent. */
    start(url, REPLY_OK);
    assert_int_equal(
        call(NULL, NULL, out, err, (const char *[]){"--url", url, "auth.whoami", NULL}), 0);
    stop();
    check_request("auth.whoami", NULL, NULL);
    /* Arguments from stdin; --token beats KIROKU_TOKEN. */
    char path[1200];
    snprintf(path, sizeof path, "%s/args.json", root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(args_json, f);
    fclose(f);
    static const char other[] = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    start(url, REPLY_OK);
    assert_int_equal(
        call(other, path, out, err,
             (const char *[]){"--url", url, "--token", TOKEN_HEX, "contacts.get", "-", NULL}),
        0);
    stop();
    check_request("contacts.get", TOKEN_HEX, CONTACT_HEX);
}

/* The ops anonymous callers use refuse a token: an exported KIROKU_TOKEN (the
 * session of earlier calls) is not sent with them, and --token with one is a
 * usage error that says what to do, with nothing sent. */
static void test_anonymous_ops_no_token(void **state)
{
    (void)state;
    static const char login[] =
        "{\"tenant_code\":\"acme\",\"email\":\"m@acme.example\",\"password\":\"pw-12345678\"}";
    start(url, REPLY_OK);
    assert_int_equal(
        call(TOKEN_HEX, NULL, out, err, (const char *[]){"--url", url, "auth.login", login, NULL}),
        0);
    stop();
    assert_true(srv.got);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, (const char *)srv.req, srv.req_len, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    assert_str(get(&u.data, "op"), "auth.login");
    assert_null(get(&u.data, "token"));
    assert_non_null(get(&u.data, "args"));
    msgpack_unpacked_destroy(&u);
    /* The same environment still sends it with an op that needs it. */
    start(url, REPLY_OK);
    assert_int_equal(
        call(TOKEN_HEX, NULL, out, err, (const char *[]){"--url", url, "auth.whoami", NULL}), 0);
    stop();
    check_request("auth.whoami", TOKEN_HEX, NULL);
    /* An explicit --token with an anonymous op. */
    start(url, REPLY_OK);
    assert_int_equal(
        call(NULL, NULL, out, err,
             (const char *[]){"--url", url, "--token", TOKEN_HEX, "auth.login", login, NULL}),
        2);
    stop();
    assert_false(srv.got);
    assert_non_null(strstr(err, "auth.login is for callers without a session: leave out --token"));
}

static void test_operator_endpoint(void **state)
{
    (void)state;
    char dir[1100], opurl[1200];
    snprintf(dir, sizeof dir, "%s/data", root);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(opurl, sizeof opurl, "ipc://%s/operator.sock", dir);
    start(opurl, REPLY_OK);
    assert_int_equal(call(NULL, NULL, out, err,
                          (const char *[]){"--operator", "--data", dir, "tenants.cancel",
                                           "{\"tenant\":7}", NULL}),
                     0);
    stop();
    assert_true(srv.got);
}

static void test_transport_failures(void **state)
{
    (void)state;
    /* Nobody listening. */
    assert_int_equal(
        call(NULL, NULL, out, err, (const char *[]){"--url", url, "contacts.get", args_json, NULL}),
        3);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "cannot connect"));
    /* A server that never answers. */
    start(url, REPLY_NONE);
    assert_int_equal(call(NULL, NULL, out, err,
                          (const char *[]){"--url", url, "--timeout", "300", "auth.whoami", NULL}),
                     3);
    stop();
    assert_non_null(strstr(err, "no reply"));
    /* A reply to another request, and one that is not msgpack. */
    start(url, REPLY_WRONG_ID);
    assert_int_equal(
        call(NULL, NULL, out, err, (const char *[]){"--url", url, "auth.whoami", NULL}), 3);
    stop();
    assert_string_equal(out, "");
    start(url, REPLY_GARBAGE);
    assert_int_equal(
        call(NULL, NULL, out, err, (const char *[]){"--url", url, "auth.whoami", NULL}), 3);
    stop();
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "malformed reply"));
}

static void test_usage(void **state)
{
    (void)state;
    /* Nothing is sent for bad arguments: the server sees no request. */
    start(url, REPLY_OK);
    static const char *const bad_args[] = {
        "{\"contact\":\"00\"}", "{\"contact\":", "[]", "{\"nope\":1}", "{}",
    };
    for (size_t i = 0; i < sizeof bad_args / sizeof bad_args[0]; i++)
        assert_int_equal(call(NULL, NULL, out, err,
                              (const char *[]){"--url", url, "contacts.get", bad_args[i], NULL}),
                         2);
    assert_non_null(strstr(err, "contact: missing"));
    assert_int_equal(call(NULL, NULL, out, err, (const char *[]){"--url", url, "no.such", NULL}),
                     2);
    assert_int_equal(
        call("abc", NULL, out, err, (const char *[]){"--url", url, "auth.whoami", NULL}), 2);
    assert_int_equal(call(NULL, NULL, out, err,
                          (const char *[]){"--url", url, "--token", "zz", "auth.whoami", NULL}),
                     2);
    assert_int_equal(call(NULL, NULL, out, err, (const char *[]){"--url", url, NULL}), 2);
    assert_int_equal(call(NULL, NULL, out, err,
                          (const char *[]){"--url", url, "--operator", "auth.whoami", NULL}),
                     2);
    assert_int_equal(
        call(NULL, NULL, out, err, (const char *[]){"--url", "nope://x", "auth.whoami", NULL}), 2);
    assert_int_equal(call(NULL, NULL, out, err, (const char *[]){"--help", NULL}), 0);
    assert_non_null(strstr(out, "usage: kiroku call"));
    stop();
    assert_false(srv.got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_token_no_args_stdin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anonymous_ops_no_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
