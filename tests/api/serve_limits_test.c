/*
 * serve_limits_test.c: `kiroku serve`'s connection options as an operator
 * sets them: --idle-timeout closes connections that send no request,
 * --conns-per-peer caps one address, and the server still serves new
 * clients and stops cleanly on SIGTERM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api_client.h"
#include "test_util.h"

static int tcp_port(const struct ac_server *s)
{
    const char *colon = strrchr(s->tcp, ':');
    assert_non_null(colon);
    return atoi(colon + 1);
}

/* A raw TCP connection that completes the SP handshake of a req0 peer. */
static int raw_peer(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    static const uint8_t req[8] = {0x00, 'S', 'P', 0x00, 0x00, 0x30, 0x00, 0x00};
    assert_int_equal(write(fd, req, 8), 8);
    uint8_t h[8];
    size_t got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (got < 8) {
        assert_int_equal(poll(&p, 1, AC_WAIT_MS), 1);
        ssize_t r = read(fd, h + got, 8 - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    return fd;
}

/* Whether the server closed fd within ms. */
static bool closed_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, ms) != 1)
        return false;
    char x;
    ssize_t n = read(fd, &x, 1);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void test_idle_and_per_peer(void **state)
{
    (void)state;
    static const char *const extra[] = {"--idle-timeout", "1", "--conns-per-peer", "2", NULL};
    struct ac_server s;
    ac_server_start_with(&s, extra);
    int port = tcp_port(&s);
    int a = raw_peer(port), b = raw_peer(port), c = raw_peer(port);
    /* The third from 127.0.0.1 is over the cap: closed at once; the other
     * two after the idle second, though they never sent anything wrong. */
    assert_true(closed_within(c, AC_WAIT_MS));
    assert_true(closed_within(a, AC_WAIT_MS));
    assert_true(closed_within(b, AC_WAIT_MS));
    /* New clients are served. */
    struct ac cl;
    ac_open(&cl, s.tcp);
    assert_int_equal(ac_call(&cl, KR_OP_AUTH_WHOAMI, NULL), KR_ERR_UNAUTHENTICATED);
    ac_close(&cl);
    close(a);
    close(b);
    close(c);
    assert_int_equal(ac_server_stop(&s), 0);
}

/* Few contexts and one deciding thread still serve reads and writes. */
static void test_few_contexts(void **state)
{
    (void)state;
    static const char *const extra[] = {"--inflight", "2", "--workers", "1", NULL};
    struct ac_server s;
    ac_server_start_with(&s, extra);
    struct ac cl;
    ac_open(&cl, s.tcp);
    assert_int_equal(ac_call(&cl, KR_OP_AUTH_WHOAMI, NULL), KR_ERR_UNAUTHENTICATED);
    ac_close(&cl);
    assert_int_equal(ac_server_stop(&s), 0);
}

static void test_options_refused(void **state)
{
    (void)state;
    static const char *const bad[][3] = {
        {"serve", "--idle-timeout", "3601"}, {"serve", "--conns-per-peer", "0"},
        {"serve", "--conns", "513"},         {"serve", "--inflight", "0"},
        {"serve", "--inflight", "2049"},
    };
    char out[4096], err[4096];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {bad[i][0], bad[i][1], bad[i][2], NULL};
        assert_int_equal(kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out), 2);
        assert_non_null(strstr(err, bad[i][1]));
    }
}

/* The configuration file: a bad line stops serve before it opens anything
 * (exit 2, with the line); --config naming no file is an error; the
 * settings are listed by --config-help. */
static void test_config(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiroku-serve-conf-XXXXXX", conf[128], out[8192], err[4096];
    assert_non_null(mkdtemp(dir));
    snprintf(conf, sizeof conf, "%s/kiroku.conf", dir);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs("# the default place\nservice.nme = x\n", f);
    fclose(f);
    const char *dflt[] = {"serve", "--data", dir, NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, dflt, out, err, sizeof out), 2);
    assert_non_null(strstr(err, "line 2: no setting is called \"service.nme\""));
    const char *none[] = {"serve", "--data", dir, "--config", "/nonexistent/kiroku.conf", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, none, out, err, sizeof out), 3);
    assert_non_null(strstr(err, "/nonexistent/kiroku.conf"));
    const char *help[] = {"serve", "--config-help", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, help, out, err, sizeof out), 0);
    assert_non_null(strstr(out, "| `service.name` |"));
    assert_non_null(strstr(out, "| `api.inflight` |"));
    unlink(conf);
    assert_int_equal(rmdir(dir), 0); /* nothing was made in DIR */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_and_per_peer),
        cmocka_unit_test(test_few_contexts),
        cmocka_unit_test(test_options_refused),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
