/*
 * gateway_test.c: the JSON gateway over HTTP (api/gateway.h), against a
 * real `kiroku serve --gateway --gateway-operator`, with libcurl (and raw
 * sockets where curl would tidy up what a hostile client sends).
 *
 * The gateway must answer what the nng endpoint answers for the same
 * request: the same reply (without its id) for requests JSON can carry, the
 * same error code for hostile ones; browser sessions (cookie flags, CSRF,
 * logout), the headers on every kind of answer, the console's files and odd
 * paths, the listeners' separation, and the limits. wrong_shard is tested in
 * process, with a router that sends every client request elsewhere.
 */
#include "api_client.h"
#include "gateway.h"
#include "jsonmp.h"
#include "kr_limits.h"
#include "protocol.h"
#include "server.h"
#include "test_domain.h"
#include "test_util.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* cmocka's header needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define BODY_MAX (1u << 20)
#define HEAD_MAX 16384u

/* ---- HTTP with libcurl ---- */

struct hres {
    long status;
    char *body; /* NUL-terminated */
    size_t blen;
    char head[HEAD_MAX];
    size_t hlen;
};

static size_t on_body(char *p, size_t sz, size_t n, void *u)
{
    struct hres *r = u;
    size_t k = sz * n;
    if (r->blen + k >= BODY_MAX)
        return 0;
    memcpy(r->body + r->blen, p, k);
    r->blen += k;
    r->body[r->blen] = '\0';
    return k;
}

static size_t on_head(char *p, size_t sz, size_t n, void *u)
{
    struct hres *r = u;
    size_t k = sz * n;
    if (r->hlen + k >= HEAD_MAX)
        return 0;
    memcpy(r->head + r->hlen, p, k);
    r->hlen += k;
    r->head[r->hlen] = '\0';
    return k;
}

/* For https:// (test_https): the CA to trust and the name to reach. */
static const char *tls_ca;
static struct curl_slist *tls_resolve;

static void hres_free(struct hres *r)
{
    free(r->body);
    r->body = NULL;
}

/* One request: method to base+path, body (NULL = none), extra headers
 * (NULL-terminated, may be NULL). Fails the test if it cannot be made. */
static void http(const char *base, const char *method, const char *path, const char *body,
                 size_t blen, const char *const *headers, struct hres *r)
{
    memset(r, 0, sizeof *r);
    r->body = calloc(1, BODY_MAX);
    assert_non_null(r->body);
    char url[512];
    snprintf(url, sizeof url, "%s%s", base, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        h = curl_slist_append(h, headers[i]);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_head);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)AC_WAIT_MS);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (tls_ca) {
        curl_easy_setopt(c, CURLOPT_CAINFO, tls_ca);
        curl_easy_setopt(c, CURLOPT_RESOLVE, tls_resolve);
    }
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)blen);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

/* POST of a JSON body with Content-Type application/json and more headers. */
static void post(const char *base, const char *path, const char *json, const char *h1,
                 const char *h2, struct hres *r)
{
    const char *hs[] = {"Content-Type: application/json", h1, h2, NULL};
    if (!h1)
        hs[1] = h2, hs[2] = NULL;
    http(base, "POST", path, json, strlen(json), hs, r);
}

/* The value of response header name (first one), or NULL. */
static const char *header(const struct hres *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = r->head; p && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL) {
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1, *end = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(end ? end - v : (long)strlen(v)), v);
            return out;
        }
    }
    return NULL;
}

/* The JSON answer's error code, or "ok". */
static void answer_code(const struct hres *r, char *out, size_t cap)
{
    json_error_t e;
    json_t *j = json_loads(r->body, 0, &e);
    if (!j)
        fail_msg("not JSON (%s): %s", e.text, r->body);
    if (json_is_true(json_object_get(j, "ok")))
        snprintf(out, cap, "ok");
    else
        snprintf(out, cap, "%s",
                 json_string_value(json_object_get(json_object_get(j, "error"), "code")));
    json_decref(j);
}

/* A string member of the answer's result, copied to out. */
static void result_str(const struct hres *r, const char *key, char *out, size_t cap)
{
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    const char *v = json_string_value(json_object_get(json_object_get(j, "result"), key));
    if (!v)
        fail_msg("no %s in %s", key, r->body);
    snprintf(out, cap, "%s", v);
    json_decref(j);
}

/* ---- The server ---- */

static struct ac_server srv;
static char gw[128], gwop[128];
static char master_token[65], op_token[65];

static void url_from(const char *json, const char *key, char *out, size_t cap)
{
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    const char *v = json_string_value(json_object_get(j, key));
    if (!v)
        fail_msg("no %s in %s", key, json);
    snprintf(out, cap, "%s", v);
    json_decref(j);
}

static void login(const char *base, const char *code, const char *email, const char *pw,
                  char token[65])
{
    char body[512];
    struct hres r;
    snprintf(body, sizeof body, "{\"tenant_code\":\"%s\",\"email\":\"%s\",\"password\":\"%s\"}",
             code, email, pw);
    post(base, "/api/auth.login", body, NULL, NULL, &r);
    if (r.status != 200)
        fail_msg("login: %ld %s", r.status, r.body);
    result_str(&r, "token", token, 65);
    hres_free(&r);
}

static int setup(void **state)
{
    (void)state;
    static const char *const extra[] = {"--gateway", "http://127.0.0.1:0", "--gateway-operator",
                                        "http://127.0.0.1:0", NULL};
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ac_server_start_with(&srv, extra);
    url_from(srv.json, "gateway", gw, sizeof gw);
    url_from(srv.json, "gateway_operator", gwop, sizeof gwop);
    login(gw, srv.demo_code, srv.demo_email, srv.demo_password, master_token);
    login(gwop, "platform", srv.op_email, srv.op_password, op_token);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    assert_int_equal(ac_server_stop(&srv), 0);
    curl_global_cleanup();
    return 0;
}

static void bearer(const char *token, char *out, size_t cap)
{
    snprintf(out, cap, "Authorization: Bearer %s", token);
}

/* ---- The same request over nng ---- */

/* Sends req[0..len) to the nng client endpoint; the reply as JSON without
 * its id into *out (jansson). */
static json_t *nng_json(const uint8_t *req, size_t len)
{
    struct ac c;
    ac_open(&c, srv.tcp);
    assert_int_equal(nng_send(c.sock, (void *)req, len, 0), 0);
    char *rep = NULL;
    size_t rlen = 0;
    assert_int_equal(nng_recv(c.sock, &rep, &rlen, NNG_FLAG_ALLOC), 0);
    char *text = NULL;
    size_t tlen = 0;
    struct jsonmp_diag d;
    assert_int_equal(jsonmp_to_json((const uint8_t *)rep, rlen, &text, &tlen, &d), KR_OK);
    nng_free(rep, rlen);
    ac_close(&c);
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    free(text);
    json_object_del(j, "id");
    return j;
}

/* The envelope {op, id, token?, args?} with args packed by pack_args (or
 * none). */
static size_t envelope(int op, const char *token_hex, void (*pack_args)(msgpack_packer *, void *),
                       void *arg, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2u + (token_hex ? 1u : 0u) + (pack_args ? 1u : 0u));
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, kr_ops[op].name, strlen(kr_ops[op].name));
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, 9);
    if (token_hex) {
        uint8_t t[32];
        assert_int_equal(sodium_hex2bin(t, 32, token_hex, 64, NULL, NULL, NULL), 0);
        msgpack_pack_str_with_body(&pk, "token", 5);
        msgpack_pack_bin_with_body(&pk, t, 32);
    }
    if (pack_args) {
        msgpack_pack_str_with_body(&pk, "args", 4);
        pack_args(&pk, arg);
    }
    return sb->size;
}

/* pack_args for a JSON text the schema maps (jsonmp_args). */
struct json_args {
    int op;
    const char *json;
};
static void pack_json(msgpack_packer *pk, void *arg)
{
    const struct json_args *a = arg;
    uint8_t buf[KR_API_REQUEST_MAX];
    struct kr_mp_fixbuf fb = {.p = buf, .cap = sizeof buf};
    struct jsonmp_diag d;
    if (jsonmp_args(a->op, a->json, strlen(a->json), &fb, &d) != KR_OK)
        fail_msg("jsonmp_args %s: %s: %s", a->json, d.key, d.why);
    msgpack_sbuffer *sb = pk->data;
    msgpack_sbuffer_write(sb, (const char *)buf, fb.len);
}

/* A request JSON can carry: the gateway's answer equals the nng reply
 * without its id, and its status the code's. */
static void same_reply(int op, const char *token, const char *json, long status)
{
    char auth[128];
    struct hres r;
    char path[128];
    snprintf(path, sizeof path, "/api/%s", kr_ops[op].name);
    bearer(token ? token : "", auth, sizeof auth);
    post(gw, path, json ? json : "", token ? auth : NULL, NULL, &r);
    msgpack_sbuffer sb;
    struct json_args a = {op, json};
    size_t len = envelope(op, token, json ? pack_json : NULL, &a, &sb);
    json_t *n = nng_json((const uint8_t *)sb.data, len);
    msgpack_sbuffer_destroy(&sb);
    json_t *g = json_loads(r.body, 0, NULL);
    assert_non_null(g);
    if (!json_equal(g, n)) {
        char *ns = json_dumps(n, JSON_COMPACT);
        fail_msg("%s %s: gateway %s, nng %s", kr_ops[op].name, json ? json : "", r.body, ns);
    }
    if (r.status != status)
        fail_msg("%s: status %ld, want %ld: %s", kr_ops[op].name, r.status, status, r.body);
    json_decref(g);
    json_decref(n);
    hres_free(&r);
}

static void test_same_replies(void **state)
{
    (void)state;
    same_reply(KR_OP_AUTH_WHOAMI, master_token, NULL, 200);
    same_reply(KR_OP_CONTACTS_LIST, master_token, "{}", 200);
    same_reply(KR_OP_CONTACTS_LIST, master_token, "{\"limit\":2}", 200);
    same_reply(KR_OP_TAGS_LIST, master_token, NULL, 200);
    same_reply(KR_OP_USERS_LIST, master_token, NULL, 200);
    same_reply(KR_OP_NOTICES_LIST, master_token, NULL, 200);
    same_reply(KR_OP_CONTACTS_GET, master_token,
               "{\"contact\":\"00000000000000000000000000000001\"}", 404);
    same_reply(KR_OP_TENANTS_LIST, master_token, NULL, 403);
    same_reply(KR_OP_AUTH_WHOAMI,
               "0101010101010101010101010101010101010101010101010101010101010101", NULL, 401);
    same_reply(KR_OP_AUTH_LOGIN, NULL,
               "{\"tenant_code\":\"nosuchcode\",\"email\":\"a@b.example\",\"password\":\"wrong "
               "password\"}",
               401);
}

/* Hostile requests: the gateway's JSON and the nng endpoint's msgpack for
 * the same thing are refused with the same code. */
static void pack_int_contact(msgpack_packer *pk, void *arg)
{
    (void)arg;
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "contact", 7);
    msgpack_pack_int(pk, 5);
}
static void pack_unknown(msgpack_packer *pk, void *arg)
{
    (void)arg;
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "bogus", 5);
    msgpack_pack_int(pk, 1);
}
static void pack_huge(msgpack_packer *pk, void *arg)
{
    const char *s = arg;
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "tag_name", 8);
    msgpack_pack_str_with_body(pk, s, strlen(s));
}
static void pack_bad_utf8(msgpack_packer *pk, void *arg)
{
    (void)arg;
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "tag_name", 8);
    msgpack_pack_str_with_body(pk, "a\xff\xfe", 3);
}
static void pack_deep(msgpack_packer *pk, void *arg)
{
    (void)arg;
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "limit", 5);
    for (int i = 0; i < 6; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_int(pk, 1);
}
static void pack_empty(msgpack_packer *pk, void *arg)
{
    (void)arg;
    msgpack_pack_map(pk, 0);
}
static void pack_array(msgpack_packer *pk, void *arg)
{
    (void)arg;
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, 2);
}

static void same_code(int op, const char *json, size_t jlen, void (*pack)(msgpack_packer *, void *),
                      void *arg)
{
    char auth[128], path[128], code[32];
    struct hres r;
    bearer(master_token, auth, sizeof auth);
    snprintf(path, sizeof path, "/api/%s", kr_ops[op].name);
    const char *hs[] = {"Content-Type: application/json", auth, NULL};
    http(gw, "POST", path, json, jlen, hs, &r);
    answer_code(&r, code, sizeof code);
    msgpack_sbuffer sb;
    size_t len = envelope(op, master_token, pack, arg, &sb);
    json_t *n = nng_json((const uint8_t *)sb.data, len);
    msgpack_sbuffer_destroy(&sb);
    const char *ncode = json_string_value(json_object_get(json_object_get(n, "error"), "code"));
    assert_non_null(ncode);
    if (strcmp(code, ncode) != 0)
        fail_msg("%s %.60s: gateway %s (%s), nng %s", kr_ops[op].name, json, code, r.body, ncode);
    long want = strcmp(code, "bad_request") == 0 ? 400 : strcmp(code, "too_large") == 0 ? 413 : 0;
    assert_int_equal(r.status, want);
    json_decref(n);
    hres_free(&r);
}

static void test_hostile_same_codes(void **state)
{
    (void)state;
    same_code(KR_OP_CONTACTS_GET, "{\"contact\":5}", 13, pack_int_contact, NULL);
    same_code(KR_OP_CONTACTS_LIST, "{\"bogus\":1}", 11, pack_unknown, NULL);
    char *big = malloc(60001), *json = malloc(60100);
    assert_non_null(big);
    assert_non_null(json);
    memset(big, 'x', 60000);
    big[60000] = '\0';
    int n = snprintf(json, 60100, "{\"tag_name\":\"%s\"}", big);
    same_code(KR_OP_TAGS_CREATE, json, (size_t)n, pack_huge, big);
    free(big);
    free(json);
    same_code(KR_OP_TAGS_CREATE, "{\"tag_name\":\"a\xff\xfe\"}", 19, pack_bad_utf8, NULL);
    same_code(KR_OP_CONTACTS_LIST, "{\"limit\":[[[[[[1]]]]]]}", 23, pack_deep, NULL);
    same_code(KR_OP_CONTACTS_LIST, "[1,2]", 5, pack_array, NULL);
    same_code(KR_OP_CONTACTS_GET, "{}", 2, pack_empty, NULL);
}

/* ---- Browser sessions ---- */

/* Logs the master in with POST /session: the cookie's value and csrf. */
static void session_login(char cookie[128], char csrf[65])
{
    char body[512], setc[512];
    struct hres r;
    snprintf(body, sizeof body, "{\"tenant_code\":\"%s\",\"email\":\"%s\",\"password\":\"%s\"}",
             srv.demo_code, srv.demo_email, srv.demo_password);
    post(gw, "/session", body, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(header(&r, "Set-Cookie", setc, sizeof setc));
    /* The token goes only into the cookie, with its flags (no Secure over
     * http://). */
    assert_non_null(strstr(setc, "; Path=/"));
    assert_non_null(strstr(setc, "; HttpOnly"));
    assert_non_null(strstr(setc, "; SameSite=Strict"));
    assert_null(strstr(setc, "Secure"));
    assert_int_equal(strncmp(setc, API_GATEWAY_COOKIE "=", strlen(API_GATEWAY_COOKIE) + 1), 0);
    char token[65];
    snprintf(token, sizeof token, "%.64s", setc + strlen(API_GATEWAY_COOKIE) + 1);
    assert_null(strstr(r.body, token));
    assert_null(strstr(r.body, "\"token\""));
    result_str(&r, "csrf", csrf, 65);
    char ep[16];
    result_str(&r, "endpoint", ep, sizeof ep);
    assert_string_equal(ep, "client");
    snprintf(cookie, 128, "Cookie: " API_GATEWAY_COOKIE "=%s", token);
    hres_free(&r);
}

/* How many audit entries the master's tenant has and whether a tag named
 * name exists, over nng: what a refused request must not change. */
static size_t audit_count(void)
{
    struct hres r;
    char auth[128];
    bearer(master_token, auth, sizeof auth);
    post(gw, "/api/audit.list", "{\"limit\":500}", auth, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    json_t *res = json_object_get(j, "result");
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(res, k, v) if (json_is_array(v)) n = json_array_size(v);
    json_decref(j);
    hres_free(&r);
    return n;
}

static void test_session_csrf(void **state)
{
    (void)state;
    char cookie[128], csrf[65], hdr[128], code[32];
    struct hres r;
    session_login(cookie, csrf);
    /* GET /session: whoami plus csrf and endpoint. */
    const char *hs[] = {cookie, NULL};
    http(gw, "GET", "/session", NULL, 0, hs, &r);
    assert_int_equal(r.status, 200);
    char got[65];
    result_str(&r, "csrf", got, sizeof got);
    assert_string_equal(got, csrf);
    result_str(&r, "role", got, sizeof got);
    assert_string_equal(got, "master");
    hres_free(&r);
    http(gw, "GET", "/session", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 401);
    hres_free(&r);

    /* A cookie POST without the header, or with a wrong one, runs nothing. */
    size_t before = audit_count();
    post(gw, "/api/tags.create", "{\"tag_name\":\"csrf-probe\"}", cookie, NULL, &r);
    assert_int_equal(r.status, 403);
    answer_code(&r, code, sizeof code);
    assert_string_equal(code, "forbidden");
    assert_non_null(strstr(r.body, "\"csrf\""));
    hres_free(&r);
    char wrong[65];
    memcpy(wrong, csrf, 65);
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    snprintf(hdr, sizeof hdr, API_GATEWAY_CSRF_HEADER ": %s", wrong);
    post(gw, "/api/tags.create", "{\"tag_name\":\"csrf-probe\"}", cookie, hdr, &r);
    assert_int_equal(r.status, 403);
    hres_free(&r);
    post(gw, "/api/tags.create", "{\"tag_name\":\"csrf-probe\"}", cookie,
         API_GATEWAY_CSRF_HEADER ": short", &r);
    assert_int_equal(r.status, 403);
    hres_free(&r);
    assert_int_equal(audit_count(), before);
    post(gw, "/api/tags.list", "{}", cookie, API_GATEWAY_CSRF_HEADER ": 00", &r);
    assert_int_equal(r.status, 403);
    hres_free(&r);
    /* A form post from another site: not JSON, refused before anything. */
    const char *form[] = {"Content-Type: application/x-www-form-urlencoded", cookie, NULL};
    http(gw, "POST", "/api/tags.create", "tag_name=x", 10, form, &r);
    assert_int_equal(r.status, 415);
    hres_free(&r);
    assert_int_equal(audit_count(), before);

    /* With the right header it runs. */
    snprintf(hdr, sizeof hdr, API_GATEWAY_CSRF_HEADER ": %s", csrf);
    post(gw, "/api/tags.create", "{\"tag_name\":\"csrf-ok\"}", cookie, hdr, &r);
    assert_int_equal(r.status, 200);
    hres_free(&r);

    /* Logout (CSRF checked) clears the cookie and ends the session. */
    post(gw, "/session/logout", "", cookie, NULL, &r);
    assert_int_equal(r.status, 403);
    hres_free(&r);
    post(gw, "/session/logout", "", cookie, hdr, &r);
    assert_int_equal(r.status, 200);
    char setc[256];
    assert_non_null(header(&r, "Set-Cookie", setc, sizeof setc));
    assert_int_equal(strncmp(setc, API_GATEWAY_COOKIE "=;", strlen(API_GATEWAY_COOKIE) + 2), 0);
    assert_non_null(strstr(setc, "Max-Age=0"));
    hres_free(&r);
    http(gw, "GET", "/session", NULL, 0, hs, &r);
    assert_int_equal(r.status, 401);
    hres_free(&r);
    post(gw, "/api/tags.list", "{}", cookie, hdr, &r);
    assert_int_equal(r.status, 401);
    hres_free(&r);
    /* The old cookie does not stand in the way of logging in again: the
     * ops for callers without a session never take it. */
    char body[512];
    snprintf(body, sizeof body, "{\"tenant_code\":\"%s\",\"email\":\"%s\",\"password\":\"%s\"}",
             srv.demo_code, srv.demo_email, srv.demo_password);
    post(gw, "/session", body, cookie, NULL, &r);
    assert_int_equal(r.status, 200);
    hres_free(&r);
    post(gw, "/api/auth.login", body, cookie, NULL, &r);
    assert_int_equal(r.status, 200);
    hres_free(&r);
}

/* ---- Headers, files, paths ---- */

static void check_headers(const struct hres *r, bool no_store, const char *what)
{
    char v[512];
    if (!header(r, "Content-Security-Policy", v, sizeof v) ||
        strcmp(v, "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                  "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                  "base-uri 'none'") != 0)
        fail_msg("%s: no or another CSP: %s", what, r->head);
    assert_non_null(header(r, "X-Content-Type-Options", v, sizeof v));
    assert_string_equal(v, "nosniff");
    assert_non_null(header(r, "Referrer-Policy", v, sizeof v));
    assert_string_equal(v, "no-referrer");
    assert_non_null(header(r, "X-Frame-Options", v, sizeof v));
    assert_string_equal(v, "DENY");
    if (no_store) {
        assert_non_null(header(r, "Cache-Control", v, sizeof v));
        assert_string_equal(v, "no-store");
    }
}

static void test_headers_everywhere(void **state)
{
    (void)state;
    char auth[128];
    struct hres r;
    bearer(master_token, auth, sizeof auth);
    const char *json[] = {"Content-Type: application/json", NULL};
    struct {
        const char *method, *path, *body;
        bool json_type, auth;
        long status;
        bool no_store;
    } cases[] = {
        {"POST", "/api/auth.whoami", "", true, true, 200, true},
        {"POST", "/api/contacts.get", "{}", true, true, 400, true},
        {"POST", "/api/tenants.list", "", true, true, 403, true},
        {"POST", "/api/no.such", "", true, true, 404, true},
        {"GET", "/api/auth.whoami", NULL, false, true, 405, true},
        {"POST", "/api/auth.whoami", "", false, true, 415, true},
        {"POST", "/api/auth.whoami", "", true, false, 401, true},
        {"GET", "/session", NULL, false, false, 401, true},
        {"PUT", "/session", "", false, false, 405, true},
        {"GET", "/", NULL, false, false, 200, false},
        {"HEAD", "/index.html", NULL, false, false, 200, false},
        {"GET", "/nothing.js", NULL, false, false, 404, false},
        {"POST", "/index.html", "", false, false, 405, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *hs[] = {cases[i].json_type ? json[0] : NULL, cases[i].auth ? auth : NULL, NULL};
        if (!hs[0])
            hs[0] = hs[1], hs[1] = NULL;
        http(gw, cases[i].method, cases[i].path, cases[i].body,
             cases[i].body ? strlen(cases[i].body) : 0, hs, &r);
        if (r.status != cases[i].status)
            fail_msg("%s %s: %ld, want %ld", cases[i].method, cases[i].path, r.status,
                     cases[i].status);
        check_headers(&r, cases[i].no_store, cases[i].path);
        hres_free(&r);
    }
}

static void test_static_files(void **state)
{
    (void)state;
    struct hres r;
    char etag[128], type[128], inm[160];
    http(gw, "GET", "/", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "<html"));
    assert_non_null(header(&r, "ETag", etag, sizeof etag));
    assert_non_null(header(&r, "Content-Type", type, sizeof type));
    assert_string_equal(type, "text/html; charset=utf-8");
    char *index = strdup(r.body);
    hres_free(&r);
    http(gw, "GET", "/index.html", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, index);
    free(index);
    hres_free(&r);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *hs[] = {inm, NULL};
    http(gw, "GET", "/index.html", NULL, 0, hs, &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.blen, 0);
    hres_free(&r);
    /* Odd paths: nothing outside the embedded files, nothing decoded into
     * a way out. */
    static const char *const odd[] = {"/../etc/passwd",
                                      "/%2e%2e/etc/passwd",
                                      "/..%2fetc%2fpasswd",
                                      "/INDEX.HTML",
                                      "/.index.html",
                                      "/index.html/",
                                      "/a/index.html",
                                      "//index.html",
                                      "/index.html%00",
                                      "/%00",
                                      "/api",
                                      "/api/",
                                      "/session/",
                                      "/index.html.bak",
                                      "/embed_console.cmake"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        http(gw, "GET", odd[i], NULL, 0, NULL, &r);
        if (r.status != 404 && r.status != 405)
            fail_msg("GET %s: %ld", odd[i], r.status);
        check_headers(&r, false, odd[i]);
        hres_free(&r);
    }
}

/* ---- The listeners ---- */

static void test_listeners(void **state)
{
    (void)state;
    char auth[128], code[32];
    struct hres r;
    /* A master's session runs no operator op, on either listener. */
    bearer(master_token, auth, sizeof auth);
    post(gw, "/api/tenants.list", "", auth, NULL, &r);
    assert_int_equal(r.status, 403);
    hres_free(&r);
    post(gwop, "/api/tenants.list", "", auth, NULL, &r);
    assert_int_equal(r.status, 403);
    hres_free(&r);
    /* The client listener refuses operator ops whoever asks. */
    bearer(op_token, auth, sizeof auth);
    post(gw, "/api/tenants.list", "", auth, NULL, &r);
    assert_int_equal(r.status, 403);
    answer_code(&r, code, sizeof code);
    assert_string_equal(code, "forbidden");
    hres_free(&r);
    post(gwop, "/api/tenants.list", "", auth, NULL, &r);
    assert_int_equal(r.status, 200);
    hres_free(&r);
    /* The operator listener's session says so. */
    const char *hs[] = {auth, NULL};
    http(gwop, "GET", "/session", NULL, 0, hs, &r);
    assert_int_equal(r.status, 200);
    char ep[16];
    result_str(&r, "endpoint", ep, sizeof ep);
    assert_string_equal(ep, "operator");
    hres_free(&r);
}

/* ---- Limits ---- */

static int dial(const char *base)
{
    unsigned port = (unsigned)atoi(strrchr(base, ':') + 1);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server may close first */
        p += w;
        n -= (size_t)w;
    }
}

/* Reads until the peer closes (or the buffer is full); the bytes read. */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (n + 1 < cap && poll(&p, 1, AC_WAIT_MS) == 1) {
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

static bool fd_closed(void *arg)
{
    int fd = *(int *)arg;
    char c;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) != 1)
        return false;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

static void test_limits(void **state)
{
    (void)state;
    static const char *const extra[] = {
        "--gateway", "http://127.0.0.1:0", "--conns-per-peer", "3", "--idle-timeout", "1", NULL};
    struct ac_server s2;
    char base[128], *buf = malloc(BODY_MAX);
    assert_non_null(buf);
    ac_server_start_with(&s2, extra);
    url_from(s2.json, "gateway", base, sizeof base);

    /* Connections from one address beyond --conns-per-peer are closed. */
    int fds[4];
    for (int i = 0; i < 3; i++) {
        fds[i] = dial(base);
        send_all(fds[i], "GET / HTTP/1.1\r\nHost: x\r\n", 25); /* held open */
    }
    fds[3] = dial(base);
    assert_true(kr_test_wait_for(fd_closed, &fds[3], KR_TEST_WAIT_MS, "the 4th connection closed"));
    /* A request that stops coming is closed after the idle timeout. */
    assert_true(kr_test_wait_for(fd_closed, &fds[0], KR_TEST_WAIT_MS, "a slow request closed"));
    for (int i = 0; i < 4; i++)
        close(fds[i]);

    /* Headers over the memory bound: refused by libmicrohttpd. */
    size_t big = KR_GATEWAY_MEMORY_LIMIT + 1024;
    int fd = dial(base);
    int n = snprintf(buf, BODY_MAX, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(buf + n, 'b', big);
    memcpy(buf + (size_t)n + big, "\r\n\r\n", 4);
    send_all(fd, buf, (size_t)n + big + 4);
    read_all(fd, buf, BODY_MAX);
    close(fd);
    if (strncmp(buf, "HTTP/1.1 431", 12) != 0)
        fail_msg("headers over the bound: %.200s", buf);

    /* A body over the bound: 413 before it is read (Content-Length)... */
    fd = dial(base);
    n = snprintf(buf, BODY_MAX,
                 "POST /api/auth.login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 (size_t)KR_GATEWAY_BODY_MAX + 1);
    send_all(fd, buf, (size_t)n);
    read_all(fd, buf, BODY_MAX);
    close(fd);
    if (strncmp(buf, "HTTP/1.1 413", 12) != 0)
        fail_msg("Content-Length over the bound: %.200s", buf);
    assert_non_null(strstr(buf, "Content-Security-Policy:"));
    /* ... and chunked: 413 once it ends. */
    fd = dial(base);
    n = snprintf(buf, BODY_MAX,
                 "POST /api/auth.login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
    send_all(fd, buf, (size_t)n);
    char chunk[8192 + 16];
    int cl = snprintf(chunk, sizeof chunk, "2000\r\n");
    memset(chunk + cl, 'a', 8192);
    memcpy(chunk + cl + 8192, "\r\n", 2);
    for (size_t sent = 0; sent <= KR_GATEWAY_BODY_MAX; sent += 8192)
        send_all(fd, chunk, (size_t)cl + 8194);
    send_all(fd, "0\r\n\r\n", 5);
    read_all(fd, buf, BODY_MAX);
    close(fd);
    if (strncmp(buf, "HTTP/1.1 413", 12) != 0)
        fail_msg("chunked body over the bound: %.200s", buf);
    free(buf);
    assert_int_equal(ac_server_stop(&s2), 0);
}

/* ---- https:// ---- */

/* Over TLS the cookie is Secure too, and the certificate is serve's
 * --cert. */
static void test_https(void **state)
{
    (void)state;
    if (!api_gateway_tls_available())
        skip();
    char tmp[512], data[600], cert[700], key[700], ca[700], out[4096], err[4096];
    kr_test_tmpdir(tmp, sizeof tmp);
    snprintf(data, sizeof data, "%s/certs", tmp);
    const char *const init[] = {"init", "--data", data, NULL};
    const char *const args[] = {"certs", "--data", data, "--host", "localhost", NULL};
    if (kr_test_run(KR_KIROKU_BIN, init, out, err, sizeof out) != 0 ||
        kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out) != 0)
        fail_msg("kiroku certs: %s", err);
    snprintf(cert, sizeof cert, "%s/tls/server.pem", data);
    snprintf(key, sizeof key, "%s/tls/server.key", data);
    snprintf(ca, sizeof ca, "%s/tls/ca.pem", data);
    const char *const extra[] = {"--gateway", "https://127.0.0.1:0", "--cert", cert, "--key", key,
                                 NULL};
    struct ac_server s3;
    ac_server_start_with(&s3, extra);
    char url[128], base[160], resolve[160], body[512], setc[512];
    url_from(s3.json, "gateway", url, sizeof url);
    assert_int_equal(strncmp(url, "https://127.0.0.1:", 18), 0);
    const char *port = strrchr(url, ':') + 1;
    snprintf(base, sizeof base, "https://localhost:%s", port);
    snprintf(resolve, sizeof resolve, "localhost:%s:127.0.0.1", port);
    tls_ca = ca;
    tls_resolve = curl_slist_append(NULL, resolve);
    struct hres r;
    snprintf(body, sizeof body, "{\"tenant_code\":\"%s\",\"email\":\"%s\",\"password\":\"%s\"}",
             s3.demo_code, s3.demo_email, s3.demo_password);
    post(base, "/session", body, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(header(&r, "Set-Cookie", setc, sizeof setc));
    assert_non_null(strstr(setc, "; HttpOnly"));
    assert_non_null(strstr(setc, "; SameSite=Strict"));
    assert_non_null(strstr(setc, "; Secure"));
    check_headers(&r, true, "https /session");
    hres_free(&r);
    curl_slist_free_all(tls_resolve);
    tls_resolve = NULL;
    tls_ca = NULL;
    assert_int_equal(ac_server_stop(&s3), 0);
    kr_test_rmrf(tmp);
}

/* ---- wrong_shard, in process ---- */

static bool everything_elsewhere(void *ctx, const struct api_route *r,
                                 char endpoint[KR_ENDPOINT_MAX + 1])
{
    (void)ctx;
    (void)r;
    snprintf(endpoint, KR_ENDPOINT_MAX + 1, "tcp://b1.example:7450");
    return true;
}

static void test_wrong_shard(void **state)
{
    (void)state;
    struct td *td = td_new(1);
    struct api_router router = {.elsewhere = everything_elsewhere};
    struct api_gateway_options o = {.url = "http://127.0.0.1:0", .router = &router};
    struct api_gateway *g = NULL;
    const char *why = "";
    assert_int_equal(api_gateway_start(&o, td->d, &g, &why), KR_OK);
    struct hres r;
    post(api_gateway_url(g), "/api/auth.login",
         "{\"tenant_code\":\"elsewhere\",\"email\":\"a@b.example\",\"password\":\"a password "
         "long enough\"}",
         NULL, NULL, &r);
    assert_int_equal(r.status, 421);
    char code[32];
    answer_code(&r, code, sizeof code);
    assert_string_equal(code, "wrong_shard");
    assert_non_null(strstr(r.body, "tcp://b1.example:7450\""));
    check_headers(&r, true, "wrong_shard");
    hres_free(&r);
    api_gateway_stop(g);
    td_free(td);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_replies), cmocka_unit_test(test_hostile_same_codes),
        cmocka_unit_test(test_session_csrf), cmocka_unit_test(test_headers_everywhere),
        cmocka_unit_test(test_static_files), cmocka_unit_test(test_listeners),
        cmocka_unit_test(test_limits),       cmocka_unit_test(test_https),
        cmocka_unit_test(test_wrong_shard),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
