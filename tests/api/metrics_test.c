/*
 * metrics_test.c: the operators' HTTP endpoint (api/http.h) and what it
 * reports (api/metrics.h).
 *
 * Against a real `kiroku serve --http`: /metrics parses with Prometheus's
 * own `promtool check metrics`, and its counters move by exactly the traffic
 * they count (requests by op and result, events by type, lockouts, the
 * request histogram, connections); /healthz is 200 "ok" on a fresh server
 * and 503 naming the backup when serve's daily backup has not completed for
 * longer than allowed (the test clock moved three days on), and 200 again
 * once a backup completed; a journal stopped by a failed flush (the storage
 * fault shim) makes it 503 naming the journal. In-process: a full LMDB map
 * and an outbox backlog make /healthz 503 with their reasons; the endpoint
 * refuses what it does not serve (other paths, methods, bad URLs, a taken
 * port), closes one address's connection past its cap, and closes idle
 * connections.
 */
#include "accounts.h"
#include "api_client.h"
#include "http.h"
#include "metrics.h"
#include "retention.h"
#include "test_domain.h"
#include "test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <link.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define PAGE_MAX (1024u * 1024u)

/* ---- An HTTP client: one request over a raw socket ---- */

struct resp {
    int status;
    char *body; /* NUL-terminated; freed by resp_free */
};

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* Sends `request` (a whole HTTP/1.0 request) to the endpoint at url and
 * reads the reply to the end (bounded by AC_WAIT_MS per read). */
static void http_raw(const char *url, const char *request, struct resp *r)
{
    struct sockaddr_storage sa;
    size_t salen;
    assert_int_equal(api_http_parse_url(url, &sa, &salen), KR_OK);
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = AC_WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, (socklen_t)salen), 0);
    size_t len = strlen(request);
    assert_int_equal(write(fd, request, len), (ssize_t)len);
    char *buf = malloc(PAGE_MAX + 1);
    assert_non_null(buf);
    size_t n = 0;
    for (;;) {
        ssize_t got = read(fd, buf + n, PAGE_MAX - n);
        if (got < 0 && errno == EINTR)
            continue;
        assert_true(got >= 0); /* a timeout fails the test */
        if (got == 0)
            break;
        n += (size_t)got;
        assert_true(n < PAGE_MAX);
    }
    close(fd);
    buf[n] = '\0';
    assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &r->status), 1);
    char *body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    r->body = strdup(body + 4);
    assert_non_null(r->body);
    free(buf);
}

static void http_get(const char *url, const char *path, struct resp *r)
{
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: kiroku\r\n\r\n", path);
    http_raw(url, req, r);
}

/* The value of the sample whose line starts with `series ` (name and
 * labels exactly as printed); 0 when the page has no such line (a counter
 * not moved yet). */
static double sample(const char *page, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = page; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return 0;
}

static bool has_series(const char *page, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = page; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return true;
    return false;
}

/* The http URL from serve's JSON line. */
static void http_url_of(const struct ac_server *s, char *out, size_t cap)
{
    const char *p = strstr(s->json, "\"http\":\"");
    assert_non_null(p);
    p += strlen("\"http\":\"");
    size_t n = strcspn(p, "\"");
    assert_true(n > 0 && n < cap);
    memcpy(out, p, n);
    out[n] = '\0';
}

/* promtool check metrics over page: its exit status. */
static int promtool(const char *dir, const char *page)
{
    char path[600], cmd[1400];
    snprintf(path, sizeof path, "%s/metrics.txt", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(page, 1, strlen(page), f), strlen(page));
    assert_int_equal(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s'", path);
    static char out[65536], err[65536];
    const char *args[] = {"-c", cmd, NULL};
    int rc = kr_test_run("/bin/sh", args, out, err, sizeof out);
    if (rc != 0)
        print_error("promtool: %s%s\n", out, err);
    return rc;
}

static int login(struct ac *c, const struct ac_server *s, const char *password)
{
    ac_str(c, KR_FLD_TENANT_CODE, s->demo_code);
    ac_str(c, KR_FLD_EMAIL, s->demo_email);
    ac_str(c, KR_FLD_PASSWORD, password);
    return ac_call(c, KR_OP_AUTH_LOGIN, NULL);
}

/* ---- Against kiroku serve ---- */

static void test_metrics_count_the_traffic(void **state)
{
    (void)state;
    static const char *const extra[] = {"--http", "http://127.0.0.1:0", NULL};
    struct ac_server srv;
    ac_server_start_with(&srv, extra);
    char url[128];
    http_url_of(&srv, url, sizeof url);

    struct resp before, after;
    http_get(url, "/metrics", &before);
    assert_int_equal(before.status, 200);
    assert_int_equal(promtool(srv.dir, before.body), 0);

    struct ac c;
    ac_open(&c, srv.tcp);
    for (int i = 0; i < 3; i++)
        assert_int_equal(login(&c, &srv, srv.demo_password), AC_OK);
    struct resp mid;
    http_get(url, "/metrics", &mid);
    assert_true(sample(mid.body, "kiroku_sessions") >= 3);
    resp_free(&mid);
    /* Failed logins up to the lockout: one account.locked. */
    for (unsigned i = 0; i < KR_LOGIN_FAILURES_MAX; i++)
        assert_int_equal(login(&c, &srv, "not the password at all"), KR_ERR_UNAUTHENTICATED);
    http_get(url, "/metrics", &after);
    assert_int_equal(after.status, 200);
    assert_int_equal(promtool(srv.dir, after.body), 0);

    const char *ok = "kiroku_requests_total{op=\"auth.login\",result=\"ok\"}";
    const char *bad = "kiroku_requests_total{op=\"auth.login\",result=\"unauthenticated\"}";
    assert_true(sample(after.body, ok) == sample(before.body, ok) + 3);
    assert_true(sample(after.body, bad) == sample(before.body, bad) + KR_LOGIN_FAILURES_MAX);
    const char *count = "kiroku_request_duration_seconds_count";
    assert_true(sample(after.body, count) ==
                sample(before.body, count) + 3 + KR_LOGIN_FAILURES_MAX);
    assert_true(sample(after.body, "kiroku_request_duration_seconds_sum") >
                sample(before.body, "kiroku_request_duration_seconds_sum"));
    const char *inf = "kiroku_request_duration_seconds_bucket{le=\"+Inf\"}";
    assert_true(sample(after.body, inf) == sample(after.body, count));

    const char *opened = "kiroku_events_appended_total{type=\"session.opened\"}";
    const char *locked = "kiroku_events_appended_total{type=\"account.locked\"}";
    const char *failed = "kiroku_events_appended_total{type=\"account.login_failed\"}";
    assert_true(has_series(before.body, locked));
    assert_true(sample(after.body, opened) == sample(before.body, opened) + 3);
    assert_true(sample(after.body, locked) == sample(before.body, locked) + 1);
    assert_true(sample(after.body, failed) >= sample(before.body, failed) + 1);
    /* Records appended and commits move with them; the map is in use. */
    assert_true(sample(after.body, "kiroku_journal_records") >=
                sample(before.body, "kiroku_journal_records") + 3 + 1);
    assert_true(sample(after.body, "kiroku_journal_commit_duration_seconds_count") >
                sample(before.body, "kiroku_journal_commit_duration_seconds_count"));
    assert_true(sample(after.body, "kiroku_journal_map_used_bytes") > 0);
    assert_true(sample(after.body, "kiroku_journal_writable") == 1);
    assert_true(has_series(after.body, "kiroku_sessions"));
    /* This client's one connection. */
    assert_true(sample(after.body, "kiroku_connections") == 1);
    /* Nothing per tenant or per address. */
    assert_null(strstr(after.body, srv.demo_code));
    assert_null(strstr(after.body, "127.0.0.1"));
    ac_close(&c);
    resp_free(&before);
    resp_free(&after);

    struct resp h;
    http_get(url, "/healthz", &h);
    assert_int_equal(h.status, 200);
    assert_string_equal(h.body, "ok\n");
    resp_free(&h);
    assert_int_equal(ac_server_stop(&srv), 0);
}

/* Waits (bounded) for /healthz to answer `status`; returns its body. */
static void health_wait(const char *url, int status, struct resp *r)
{
    for (int waited = 0;; waited += 100) {
        http_get(url, "/healthz", r);
        if (r->status == status)
            return;
        if (waited >= AC_WAIT_MS)
            fail_msg("/healthz stayed %d: %s", r->status, r->body);
        resp_free(r);
        kr_test_pause_ms(100);
    }
}

static void test_healthz_fails_when_backups_are_stale(void **state)
{
    (void)state;
    /* Backups into a path that is a file: every backup fails. */
    char backups[700];
    struct ac_server srv;
    static const char *extra[] = {"--http", "http://127.0.0.1:0", "--backups",
                                  NULL,     "--test-clock",       NULL};
    char scratch[512];
    kr_test_tmpdir(scratch, sizeof scratch);
    snprintf(backups, sizeof backups, "%s/not-a-directory", scratch);
    FILE *f = fopen(backups, "wb");
    assert_non_null(f);
    fclose(f);
    extra[3] = backups;
    unsetenv("KIROKU_CLOCK_OFFSET");
    ac_server_start_with(&srv, extra);
    char url[128];
    http_url_of(&srv, url, sizeof url);
    struct resp r;
    /* A journal begun now: no backup is owed yet. */
    http_get(url, "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    resp_free(&r);
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;

    /* Three days on, no backup has completed. */
    char when[32];
    snprintf(when, sizeof when, "@%llu", (unsigned long long)time(NULL) + 3 * 86400ull);
    setenv("KIROKU_CLOCK_OFFSET", when, 1);
    ac_server_restart(&srv);
    http_url_of(&srv, url, sizeof url);
    http_get(url, "/healthz", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "backup: none completed since the journal began 7"));
    assert_non_null(strstr(r.body, " h ago (at most 26 h)\n"));
    resp_free(&r);
    http_get(url, "/metrics", &r);
    assert_false(has_series(r.body, "kiroku_backup_age_seconds"));
    resp_free(&r);
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;

    /* A real backup directory: the backup at start (03:00 JST has passed
     * today, or runs tonight... --backup-at 00:00 has always passed) makes it
     * healthy again. */
    snprintf(backups, sizeof backups, "%s/backups", scratch);
    static const char *extra2[] = {"--http", "http://127.0.0.1:0", "--backups", NULL, "--backup-at",
                                   "00:00",  "--test-clock",       NULL};
    extra2[3] = backups;
    srv.extra = extra2;
    ac_server_restart(&srv);
    http_url_of(&srv, url, sizeof url);
    health_wait(url, 200, &r);
    assert_string_equal(r.body, "ok\n");
    resp_free(&r);
    http_get(url, "/metrics", &r);
    assert_true(has_series(r.body, "kiroku_backup_age_seconds"));
    assert_true(sample(r.body, "kiroku_backup_age_seconds") < 3600);
    resp_free(&r);
    unsetenv("KIROKU_CLOCK_OFFSET");
    assert_int_equal(ac_server_stop(&srv), 0);
    kr_test_rmrf(scratch);
}

#if defined(__SANITIZE_ADDRESS__)
#define KR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KR_ASAN 1
#endif
#endif
#ifndef KR_ASAN
#define KR_ASAN 0
#endif

#if KR_ASAN
static int find_asan(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    if (info->dlpi_name && strstr(info->dlpi_name, "/libasan.so")) {
        snprintf(data, 512, "%s", info->dlpi_name);
        return 1;
    }
    return 0;
}
#endif

/* LD_PRELOAD for the storage fault shim (tests/faults/fsfault.c); in the
 * sanitized build the ASan runtime this test runs with comes first. */
static void preload_shim(void)
{
    char v[1200];
#if KR_ASAN
    char asan[512] = "";
    dl_iterate_phdr(find_asan, asan);
    if (!*asan)
        fail_msg("built with ASan, but no libasan.so is loaded (static runtime?)");
    snprintf(v, sizeof v, "%s:%s", asan, KR_FSFAULT_LIB);
#else
    snprintf(v, sizeof v, "%s", KR_FSFAULT_LIB);
#endif
    setenv("LD_PRELOAD", v, 1);
}

static void test_healthz_fails_when_the_journal_stops(void **state)
{
    (void)state;
    static const char *const extra[] = {"--http", "http://127.0.0.1:0", NULL};
    struct ac_server srv;
    ac_server_start_with(&srv, extra);
    kill(srv.pid, SIGTERM);
    assert_int_equal(waitpid(srv.pid, NULL, 0), srv.pid);
    srv.pid = 0;
    /* A start over a journal made before commits once (serve.started) and
     * flushes twice for it (its pages, then its meta page by mdb_env_sync):
     * every flush of the journal after those fails with EIO. */
    preload_shim();
    setenv("KR_FAULT_SYNC_EIO_AFTER", "2", 1);
    ac_server_restart(&srv);
    unsetenv("LD_PRELOAD");
    unsetenv("KR_FAULT_SYNC_EIO_AFTER");
    char url[128];
    http_url_of(&srv, url, sizeof url);
    struct resp r;
    struct ac c;
    ac_open(&c, srv.ipc); /* the same path after a restart */
    assert_int_not_equal(login(&c, &srv, srv.demo_password), AC_OK);
    ac_close(&c);
    http_get(url, "/healthz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "journal: not writable: writes stopped: input/output error "
                                "(restart once the storage is fixed)\n");
    resp_free(&r);
    http_get(url, "/metrics", &r);
    assert_true(has_series(r.body, "kiroku_journal_writable"));
    assert_true(sample(r.body, "kiroku_journal_writable") == 0);
    resp_free(&r);
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;
    (void)ac_server_stop(&srv); /* removes the scratch directory */
}

/* ---- In-process ---- */

static void test_healthz_fails_when_the_map_is_full(void **state)
{
    (void)state;
    struct td *t = td_new(7);
    /* Reopen with a map far too small for what follows. */
    dom_close(t->d);
    struct kr_domain_options o = {.dir = t->dir,
                                  .clock = &t->clock,
                                  .rng = &t->rng,
                                  .map_size = 1u << 20,
                                  .pwhash_ops = 1,
                                  .pwhash_mem = 8192};
    assert_int_equal(dom_open(&o, &t->d), KR_OK);
    struct api_metrics *m;
    assert_int_equal(api_metrics_new(t->d, NULL, &m), KR_OK);
    struct api_http *h;
    const char *why = "";
    assert_int_equal(api_http_start("http://127.0.0.1:0", m, &h, &why), KR_OK);
    struct resp r;
    http_get(api_http_url(h), "/healthz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);

    char prev[33];
    kr_err err = KR_OK;
    unsigned n = 0;
    while (!err && n++ < 100000)
        err = ret_serve_started(t->d, "9.9.9-test", "host", prev);
    assert_int_equal(err, KR_EFULL);
    http_get(api_http_url(h), "/healthz", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(
        strstr(r.body, "journal: not writable: appends refused, the disk or the map is full\n"));
    assert_non_null(strstr(r.body, "journal: the map is "));
    resp_free(&r);
    http_get(api_http_url(h), "/metrics", &r);
    assert_true(sample(r.body, "kiroku_journal_appends_refused_full_total") >= 1);
    assert_true(sample(r.body, "kiroku_events_appended_total{type=\"serve.started\"}") ==
                (double)(n - 1));
    resp_free(&r);
    api_http_stop(h);
    api_metrics_free(m);
    td_free(t);
}

static void test_healthz_fails_when_email_backs_up(void **state)
{
    (void)state;
    struct td *t = td_new(9);
    struct api_metrics_options o = {.outbox_backlog_max = 1};
    struct api_metrics *m;
    assert_int_equal(api_metrics_new(t->d, &o, &m), KR_OK);
    struct kr_wbuf b;
    kr_wbuf_init(&b, KR_METRICS_PAGE_MAX);
    bool healthy = false;
    assert_int_equal(api_metrics_health(m, &b, &healthy), KR_OK);
    assert_true(healthy);
    /* A sign-up queues e-mails (the auth code, the account information) that
     * no mailer delivers here. */
    struct kr_caller master;
    char code[40];
    td_signup(t, "owner@example.jp", "correct horse battery", &master, code);
    assert_int_equal(api_metrics_render(m, &b), KR_OK);
    assert_int_equal(kr_wbuf_add(&b, "", 1), KR_OK);
    double backlog = sample(b.data, "kiroku_outbox_backlog");
    assert_true(backlog >= 2);
    assert_int_equal(api_metrics_health(m, &b, &healthy), KR_OK);
    assert_false(healthy);
    char want[128];
    snprintf(want, sizeof want, "outbox: %.0f e-mails waiting (at most 1)\n", backlog);
    assert_int_equal(b.size, strlen(want));
    assert_memory_equal(b.data, want, b.size);
    kr_wbuf_free(&b);
    api_metrics_free(m);
    td_free(t);
}

/* A connection to the endpoint at url from source address src (a loopback
 * address: all of 127/8 is), connected and idle. */
static int idle_conn(const char *url, const char *src)
{
    struct sockaddr_storage sa;
    size_t salen;
    assert_int_equal(api_http_parse_url(url, &sa, &salen), KR_OK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in from = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &from.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&from, sizeof from), 0);
    struct timeval tv = {.tv_sec = AC_WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, (socklen_t)salen), 0);
    return fd;
}

/* Whether a GET /healthz on a new connection from src is answered (false:
 * the endpoint closed the connection without a reply). */
static bool answered_from(const char *url, const char *src)
{
    int fd = idle_conn(url, src);
    static const char req[] = "GET /healthz HTTP/1.0\r\n\r\n";
    bool sent = write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1);
    char buf[16] = "";
    ssize_t got = sent ? read(fd, buf, sizeof buf - 1) : -1;
    if (got < 0 && errno != ECONNRESET && errno != EPIPE)
        fail_msg("reading a reply: %s", strerror(errno));
    close(fd);
    return got > 0 && strncmp(buf, "HTTP/1.", 7) == 0;
}

struct answered_arg {
    const char *url, *src;
};

static bool answered_now(void *arg)
{
    const struct answered_arg *a = arg;
    return answered_from(a->url, a->src);
}

static void test_endpoint_bounds_connections(void **state)
{
    (void)state;
    struct td *t = td_new(10);
    struct api_metrics *m;
    assert_int_equal(api_metrics_new(t->d, NULL, &m), KR_OK);
    struct api_http *h;
    const char *why = "";
    assert_int_equal(api_http_start("http://127.0.0.1:0", m, &h, &why), KR_OK);
    const char *url = api_http_url(h);
    int fds[KR_HTTP_CONNS_PER_IP];
    /* One address holds KR_HTTP_CONNS_PER_IP idle connections: its next one
     * is closed unanswered, another address is answered. */
    for (unsigned i = 0; i < KR_HTTP_CONNS_PER_IP; i++)
        fds[i] = idle_conn(url, "127.0.0.2");
    assert_false(answered_from(url, "127.0.0.2"));
    assert_true(answered_from(url, "127.0.0.3"));
    /* Once they close, that address is answered again. */
    for (unsigned i = 0; i < KR_HTTP_CONNS_PER_IP; i++)
        close(fds[i]);
    struct answered_arg arg = {url, "127.0.0.2"};
    assert_true(
        kr_test_wait_for(answered_now, &arg, KR_TEST_WAIT_MS, "an answer once they closed"));
    /* A connection that sends nothing is closed by the endpoint (after
     * KR_HTTP_TIMEOUT_S): the read ends, within the test's deadline. */
    int idle = idle_conn(url, "127.0.0.2");
    char c;
    ssize_t got = read(idle, &c, 1);
    if (got < 0)
        fail_msg("the idle connection was not closed: %s", strerror(errno));
    assert_int_equal(got, 0);
    close(idle);
    api_http_stop(h);
    api_metrics_free(m);
    td_free(t);
}

static void test_endpoint_refuses_what_it_does_not_serve(void **state)
{
    (void)state;
    struct td *t = td_new(8);
    struct api_metrics *m;
    assert_int_equal(api_metrics_new(t->d, NULL, &m), KR_OK);
    struct api_http *h;
    const char *why = "";
    static const char *const bad[] = {"",
                                      "http://",
                                      "http://127.0.0.1",
                                      "http://127.0.0.1:",
                                      "http://127.0.0.1:65536",
                                      "http://example.com:80",
                                      "https://127.0.0.1:80",
                                      "http://[::1:80",
                                      "http://127.0.0.1:8x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(api_http_start(bad[i], m, &h, &why), KR_EINVAL);
    assert_int_equal(api_http_start("http://127.0.0.1:0", m, &h, &why), KR_OK);
    /* The port taken: refused, not shared. */
    struct api_http *h2;
    assert_int_equal(api_http_start(api_http_url(h), m, &h2, &why), KR_EBUSY);
    struct resp r;
    http_get(api_http_url(h), "/", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http_get(api_http_url(h), "/metrics/../etc", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http_raw(api_http_url(h), "DELETE /metrics HTTP/1.0\r\n\r\n", &r);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    http_raw(api_http_url(h), "POST /healthz HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello", &r);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    http_raw(api_http_url(h), "GET /healthz HTTP/1.0\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    api_http_stop(h);
    api_metrics_free(m);
    td_free(t);
}

static void test_serve_refuses_a_bad_url_before_opening(void **state)
{
    (void)state;
    char dir[512], data[600];
    kr_test_tmpdir(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/data", dir);
    static char out[4096], err[4096];
    static const char *const bad[] = {"http://example.com:7451", "https://127.0.0.1:7451",
                                      "127.0.0.1:7451", "http://127.0.0.1:99999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"serve", "--data", data, "--http", bad[i], NULL};
        assert_int_equal(kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out), 2);
        assert_non_null(strstr(err, "not http://HOST:PORT"));
        assert_int_equal(access(data, F_OK), -1); /* nothing made */
    }
    kr_test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_count_the_traffic),
        cmocka_unit_test(test_healthz_fails_when_backups_are_stale),
        cmocka_unit_test(test_healthz_fails_when_the_journal_stops),
        cmocka_unit_test(test_healthz_fails_when_the_map_is_full),
        cmocka_unit_test(test_healthz_fails_when_email_backs_up),
        cmocka_unit_test(test_endpoint_refuses_what_it_does_not_serve),
        cmocka_unit_test(test_endpoint_bounds_connections),
        cmocka_unit_test(test_serve_refuses_a_bad_url_before_opening),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
