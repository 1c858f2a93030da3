/*
 * server_test.c: api/server.c through real sockets: nng req clients over
 * ipc:// and tcp://, and raw TCP peers that misbehave (frames over the
 * receive cap, half a frame then silence, more connections than the cap, a
 * peer that never reads its replies). Also the endpoints' separation, the
 * operator socket's mode, a graceful stop with a request in flight, and the
 * e-mail worker's files.
 *
 * The server runs in this process on a domain in a scratch directory; the
 * tcp port is a random high one, retried when taken.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "accounts.h"
#include "kr_limits.h"
#include "mailer.h"
#include "protocol.h"
#include "server.h"
#include "test_domain.h"
#include "test_util.h"

#define CONNS_CAP   16u
#define WAIT_MS     30000 /* how long a client waits for what must come */
#define OP_EMAIL    "ops@platform.example.jp"
#define OP_PASSWORD "operator-password-77"

/* ---- A clock that can hold one request inside dom_exec ---- */

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned armed, entered; /* workers still to hold; workers held */
    bool open;
};
static struct gate g_gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, false};
/* Holds the journal's writer (thread kr-writer) at its next clock read once
 * armed: the batch it commits, or its next one, waits, and every append
 * submitted meanwhile stays in flight. */
static struct gate g_writer = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, false};

/* Holds the first `armed` threads that pass `g` named by prefix `name`. */
static void gate_pass(struct gate *g, const char *name, const char *prefix)
{
    if (strncmp(name, prefix, strlen(prefix)) != 0)
        return;
    pthread_mutex_lock(&g->mu);
    if (g->armed) {
        g->armed--;
        g->entered++;
        pthread_cond_broadcast(&g->cv);
        while (!g->open)
            pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
}

static void gate_arm(struct gate *g, unsigned n)
{
    pthread_mutex_lock(&g->mu);
    g->armed = n;
    g->entered = 0;
    g->open = false;
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->armed = 0;
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Holds the first `armed` API workers that read the clock once armed (only workers:
 * the mailer and the journal's writer read it too, on their own schedule). */
static uint64_t gate_now(void *ctx)
{
    struct td *t = ctx;
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    gate_pass(&g_writer, name, "kr-writer");
    bool worker = strncmp(name, "kr-api", 6) == 0; /* deciding threads and the pool */
    pthread_mutex_lock(&g_gate.mu);
    if (g_gate.armed && worker) {
        g_gate.armed--;
        g_gate.entered++;
        pthread_cond_broadcast(&g_gate.cv);
        while (!g_gate.open)
            pthread_cond_wait(&g_gate.cv, &g_gate.mu);
    }
    pthread_mutex_unlock(&g_gate.mu);
    return atomic_fetch_add(&t->now, 1000000ull);
}

/* ---- Fixture ---- */

struct fx {
    struct td *t;
    struct api_server *s;
    char client_ipc[600], op_ipc[600], tcp[64];
    int port;
};

/* Server options tests change (reset by setup). */
static unsigned g_workers, g_inflight, g_conns_max, g_conns_per_peer;
static int g_send_timeout_ms, g_idle_timeout_ms;

static void options_reset(void)
{
    g_workers = 4;
    g_inflight = 0;
    g_conns_max = CONNS_CAP;
    g_conns_per_peer = 0;
    g_send_timeout_ms = 300;
    g_idle_timeout_ms = -1; /* never: only test_idle_connections times idleness */
}

static kr_err start(struct fx *f, bool mailer)
{
    const char *listen[] = {f->client_ipc, f->tcp};
    struct api_server_options o = {
        .listen = listen,
        .nlisten = 2,
        .operator_url = f->op_ipc,
        .workers = g_workers,
        .inflight = g_inflight,
        .conns_max = g_conns_max,
        .send_timeout_ms = g_send_timeout_ms,
        .conns_per_peer = g_conns_per_peer,
        .idle_timeout_ms = g_idle_timeout_ms,
        .no_mailer = !mailer,
    };
    kr_err err = KR_EBUSY;
    for (int tries = 0; tries < 50 && err == KR_EBUSY; tries++) {
        f->port = 20000 + (int)randombytes_uniform(40000);
        snprintf(f->tcp, sizeof f->tcp, "tcp://127.0.0.1:%d", f->port);
        const char *why;
        err = api_server_start(&o, f->t->d, &f->s, &why);
    }
    return err;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->t = td_new(21);
    f->t->clock.now_ns = gate_now; /* before any other thread reads it */
    snprintf(f->client_ipc, sizeof f->client_ipc, "ipc://%s/client.sock", f->t->dir);
    snprintf(f->op_ipc, sizeof f->op_ipc, "ipc://%s/op.sock", f->t->dir);
    uint8_t account[16];
    assert_int_equal(dom_operator_create(f->t->d, OP_EMAIL, OP_PASSWORD, account), KR_OK);
    options_reset();
    assert_int_equal(start(f, false), KR_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    api_server_stop(f->s);
    td_free(f->t);
    free(f);
    return 0;
}

/* ---- Requests ---- */

static void pstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* {op, id, [token], args: {email}} (email NULL: no args). */
static void build(msgpack_sbuffer *b, int op, uint64_t id, const uint8_t *token, const char *email)
{
    msgpack_packer pk;
    b->size = 0;
    msgpack_packer_init(&pk, b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2u + (token != NULL) + (email != NULL));
    pstr(&pk, kr_fields[KR_FLD_OP].name);
    pstr(&pk, kr_ops[op].name);
    pstr(&pk, API_KEY_ID);
    msgpack_pack_uint64(&pk, id);
    if (token) {
        pstr(&pk, kr_fields[KR_FLD_TOKEN].name);
        msgpack_pack_bin(&pk, 32);
        msgpack_pack_bin_body(&pk, token, 32);
    }
    if (email) {
        pstr(&pk, API_KEY_ARGS);
        msgpack_pack_map(&pk, 1);
        pstr(&pk, kr_fields[KR_FLD_EMAIL].name);
        pstr(&pk, email);
    }
}

struct client {
    nng_socket sock;
    char *reply; /* the last reply's bytes: decoded objects point into them */
    size_t reply_len;
};

static void client_open(struct client *c, const char *url)
{
    c->reply = NULL;
    c->reply_len = 0;
    assert_int_equal(nng_req0_open(&c->sock), 0);
    assert_int_equal(nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, WAIT_MS), 0);
    assert_int_equal(nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, WAIT_MS), 0);
    assert_int_equal(nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, KR_API_REPLY_MAX), 0);
    assert_int_equal(nng_dial(c->sock, url, NULL, 0), 0);
}

static void client_close(struct client *c)
{
    nng_close(c->sock);
    if (c->reply)
        nng_free(c->reply, c->reply_len);
    c->reply = NULL;
}

/* Sends b and decodes the reply into *u; returns the nng error (0 = a reply). */
static int client_call(struct client *c, const msgpack_sbuffer *b, msgpack_unpacked *u)
{
    int rv = nng_send(c->sock, b->data, b->size, 0);
    if (rv)
        return rv;
    char *buf;
    size_t n;
    if ((rv = nng_recv(c->sock, &buf, &n, NNG_FLAG_ALLOC)))
        return rv;
    if (c->reply)
        nng_free(c->reply, c->reply_len);
    c->reply = buf;
    c->reply_len = n;
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(u, buf, n, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, n);
    return 0;
}

/* The error code of reply u, or NULL when it is ok. */
static const char *reply_error(const msgpack_unpacked *u)
{
    const msgpack_object *ok = td_map_get(&u->data, API_KEY_OK);
    assert_non_null(ok);
    assert_int_equal(ok->type, MSGPACK_OBJECT_BOOLEAN);
    if (ok->via.boolean)
        return NULL;
    static __thread char code[32];
    const msgpack_object *c = td_map_get(td_map_get(&u->data, API_KEY_ERROR), API_KEY_CODE);
    assert_non_null(c);
    assert_true(c->via.str.size < sizeof code);
    memcpy(code, c->via.str.ptr, c->via.str.size);
    code[c->via.str.size] = '\0';
    return code;
}

static uint64_t reply_id(const msgpack_unpacked *u)
{
    const msgpack_object *id = td_map_get(&u->data, API_KEY_ID);
    assert_non_null(id);
    assert_int_equal(id->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    return id->via.u64;
}

/* One signup.apply over url must succeed. */
static void expect_serves(const char *url)
{
    struct client c;
    msgpack_sbuffer b;
    msgpack_unpacked u;
    msgpack_sbuffer_init(&b);
    msgpack_unpacked_init(&u);
    client_open(&c, url);
    build(&b, KR_OP_SIGNUP_APPLY, 4242, NULL, "served@shop.example.jp");
    assert_int_equal(client_call(&c, &b, &u), 0);
    assert_null(reply_error(&u));
    assert_true(reply_id(&u) == 4242);
    const msgpack_object *r = td_map_get(&u.data, API_KEY_RESULT);
    assert_non_null(td_map_get(r, kr_fields[KR_FLD_APPLICATION].name));
    client_close(&c);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&b);
}

/* ---- Raw TCP peers ---- */

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* The SP header of a req0 peer; the rep0 server answers with its own. */
static const uint8_t sp_req_header[8] = {0x00, 'S', 'P', 0x00, 0x00, 0x30, 0x00, 0x00};

static void raw_handshake(int fd)
{
    assert_int_equal(write(fd, sp_req_header, 8), 8);
    uint8_t h[8];
    size_t got = 0;
    while (got < 8) {
        ssize_t r = read(fd, h + got, 8 - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    static const uint8_t rep_header[8] = {0x00, 'S', 'P', 0x00, 0x00, 0x31, 0x00, 0x00};
    assert_memory_equal(h, rep_header, 8);
}

/* Reads until the server closes the connection; false if it did not within
 * the socket's receive timeout. */
static bool raw_wait_closed(int fd)
{
    char buf[65536];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return false;
    }
}

static void be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

/* ---- Tests ---- */

static void test_requests(void **state)
{
    struct fx *f = *state;
    expect_serves(f->client_ipc);
    expect_serves(f->tcp);
    expect_serves(f->op_ipc);
    /* Many requests on one connection, each answered with its own id. */
    struct client c;
    msgpack_sbuffer b;
    msgpack_unpacked u;
    msgpack_sbuffer_init(&b);
    msgpack_unpacked_init(&u);
    client_open(&c, f->tcp);
    for (uint64_t id = 1; id <= 50; id++) {
        build(&b, KR_OP_AUTH_WHOAMI, id, NULL, NULL);
        assert_int_equal(client_call(&c, &b, &u), 0);
        assert_string_equal(reply_error(&u), kr_api_errors[KR_ERR_UNAUTHENTICATED].name);
        assert_true(reply_id(&u) == id);
    }
    /* A malformed request gets its error reply too. */
    b.size = 0;
    msgpack_sbuffer_write(&b, "\xc1", 1);
    assert_int_equal(client_call(&c, &b, &u), 0);
    assert_string_equal(reply_error(&u), kr_api_errors[KR_ERR_BAD_REQUEST].name);
    client_close(&c);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&b);
}

static void test_operator_endpoint(void **state)
{
    struct fx *f = *state;
    struct client c;
    msgpack_sbuffer b;
    msgpack_unpacked u;
    msgpack_sbuffer_init(&b);
    msgpack_unpacked_init(&u);
    /* The operator logs in over the operator socket. */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pstr(&pk, kr_fields[KR_FLD_OP].name);
    pstr(&pk, kr_ops[KR_OP_AUTH_LOGIN].name);
    pstr(&pk, API_KEY_ID);
    msgpack_pack_uint64(&pk, 1);
    pstr(&pk, API_KEY_ARGS);
    msgpack_pack_map(&pk, 3);
    pstr(&pk, kr_fields[KR_FLD_TENANT_CODE].name);
    pstr(&pk, KR_PLATFORM_CODE);
    pstr(&pk, kr_fields[KR_FLD_EMAIL].name);
    pstr(&pk, OP_EMAIL);
    pstr(&pk, kr_fields[KR_FLD_PASSWORD].name);
    pstr(&pk, OP_PASSWORD);
    client_open(&c, f->op_ipc);
    assert_int_equal(client_call(&c, &b, &u), 0);
    assert_null(reply_error(&u));
    const msgpack_object *tk =
        td_map_get(td_map_get(&u.data, API_KEY_RESULT), kr_fields[KR_FLD_TOKEN].name);
    assert_non_null(tk);
    assert_int_equal(tk->via.bin.size, 32);
    uint8_t token[32];
    memcpy(token, tk->via.bin.ptr, 32);
    /* An operator op: allowed on the operator endpoint... */
    build(&b, KR_OP_TENANTS_LIST, 2, token, NULL);
    assert_int_equal(client_call(&c, &b, &u), 0);
    assert_null(reply_error(&u));
    client_close(&c);
    /* ...refused on the client endpoint, over ipc and tcp alike. */
    const char *client_urls[] = {f->client_ipc, f->tcp};
    for (int i = 0; i < 2; i++) {
        client_open(&c, client_urls[i]);
        build(&b, KR_OP_TENANTS_LIST, 3, token, NULL);
        assert_int_equal(client_call(&c, &b, &u), 0);
        assert_string_equal(reply_error(&u), kr_api_errors[KR_ERR_FORBIDDEN].name);
        client_close(&c);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&b);
}

static void test_operator_socket_mode(void **state)
{
    struct fx *f = *state;
    struct stat st;
    assert_int_equal(lstat(f->op_ipc + strlen("ipc://"), &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_frame_over_cap(void **state)
{
    struct fx *f = *state;
    int fd = raw_connect(f->port);
    raw_handshake(fd);
    /* A frame header one byte over the cap, and the start of its body. */
    uint8_t frame[8 + 4096] = {0};
    be64(frame, KR_API_REQUEST_MAX + 1);
    assert_int_equal(write(fd, frame, sizeof frame), (ssize_t)sizeof frame);
    assert_true(raw_wait_closed(fd));
    close(fd);
    /* The largest header there is. */
    fd = raw_connect(f->port);
    raw_handshake(fd);
    be64(frame, UINT64_MAX);
    assert_int_equal(write(fd, frame, 8), 8);
    assert_true(raw_wait_closed(fd));
    close(fd);
    expect_serves(f->tcp);
    expect_serves(f->client_ipc);
}

static void test_half_frame_stall(void **state)
{
    struct fx *f = *state;
    /* Half a handshake. */
    int a = raw_connect(f->port);
    assert_int_equal(write(a, sp_req_header, 4), 4);
    /* A whole handshake, then half a frame. */
    int b = raw_connect(f->port);
    raw_handshake(b);
    uint8_t frame[8 + 10] = {0};
    be64(frame, 100);
    frame[8] = 0x80;
    frame[11] = 0x01;
    assert_int_equal(write(b, frame, sizeof frame), (ssize_t)sizeof frame);
    /* Half a frame header. */
    int c = raw_connect(f->port);
    raw_handshake(c);
    assert_int_equal(write(c, frame, 3), 3);
    /* Others are served meanwhile, on every endpoint. */
    for (int i = 0; i < 3; i++) {
        expect_serves(f->tcp);
        expect_serves(f->client_ipc);
    }
    expect_serves(f->op_ipc);
    close(a);
    close(b);
    close(c);
    expect_serves(f->tcp);
}

static void test_many_connections(void **state)
{
    struct fx *f = *state;
    enum { N = CONNS_CAP + 24 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect(f->port);
        raw_handshake(fds[i]);
    }
    /* Exactly the ones over the cap are closed by the server. */
    bool closed[N] = {false};
    unsigned nclosed = 0;
    struct pollfd p[N];
    while (nclosed < N - CONNS_CAP) {
        for (int i = 0; i < N; i++)
            p[i] = (struct pollfd){.fd = closed[i] ? -1 : fds[i], .events = POLLIN};
        int r = poll(p, N, WAIT_MS);
        assert_true(r > 0);
        for (int i = 0; i < N; i++) {
            if (closed[i] || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char x;
            ssize_t n = read(fds[i], &x, 1);
            assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
            closed[i] = true;
            nclosed++;
        }
    }
    assert_int_equal(nclosed, N - CONNS_CAP);
    for (int i = 0; i < N; i++)
        p[i] = (struct pollfd){.fd = closed[i] ? -1 : fds[i], .events = POLLIN};
    assert_int_equal(poll(p, N, 0), 0); /* the rest stay open and quiet */
    assert_int_equal(api_server_conns(f->s), CONNS_CAP);
    /* The connections within the cap are served. */
    uint8_t req[8 + 4 + 1] = {[8] = 0x80, [11] = 0x07, [12] = 0xc1}; /* request id 7, 0xc1 */
    be64(req, 5);
    for (int i = 0; i < N; i++) {
        if (closed[i])
            continue;
        assert_int_equal(write(fds[i], req, sizeof req), (ssize_t)sizeof req);
        uint8_t hdr[8 + 4];
        size_t got = 0;
        while (got < sizeof hdr) {
            ssize_t r = read(fds[i], hdr + got, sizeof hdr - got);
            assert_true(r > 0);
            got += (size_t)r;
        }
        assert_memory_equal(hdr + 8, "\x80\x00\x00\x07", 4);
    }
    for (int i = 0; i < N; i++)
        close(fds[i]);
    /* Once they are gone, new clients get in again. */
    expect_serves(f->tcp);
}

static void test_never_reads(void **state)
{
    struct fx *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int small = 2048;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    raw_handshake(fd);
    /* Requests until the server stops taking them (its replies pile up). */
    uint8_t req[8 + 4 + 1];
    be64(req, 5);
    req[12] = 0xc1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    for (uint32_t i = 0; i < 2000000; i++) {
        uint32_t id = 0x80000000u | (i + 1);
        req[8] = (uint8_t)(id >> 24);
        req[9] = (uint8_t)(id >> 16);
        req[10] = (uint8_t)(id >> 8);
        req[11] = (uint8_t)id;
        ssize_t w = write(fd, req, sizeof req);
        if ((w < 0 && errno == EAGAIN) || (w >= 0 && (size_t)w < sizeof req))
            break; /* full (the last frame may be half written: fine too) */
        /* Cut off already: its first replies waited out the send timeout
         * while the flood went on (a slow machine). */
        if (w < 0 && (errno == ECONNRESET || errno == EPIPE))
            break;
        assert_int_equal(w, (ssize_t)sizeof req);
    }
    /* Others are served, and the peer that does not read is cut off
     * (reading here would unblock the server: only wait for the hang-up). */
    expect_serves(f->tcp);
    expect_serves(f->client_ipc);
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    assert_true(p.revents & (POLLHUP | POLLERR | POLLRDHUP));
    close(fd);
    expect_serves(f->tcp);
}

/* ---- Slow readers (issue pattern: pipelined exports, 4 KiB receive buffer) ---- */

#define SLOW_CONNS     24u /* attacker connections */
#define SLOW_PIPELINED 32u /* utility.export requests each sends at once */
#define SLOW_CONTACTS  1000u
#define SLOW_NOTE      2000u

/* Logs the master of a fresh tenant with SLOW_CONTACTS large contacts in
 * over the wire; *token gets its session. */
static void slow_tenant(struct fx *f, unsigned contacts, uint8_t token[32])
{
    struct kr_caller master;
    char code[40];
    td_signup(f->t, "slow@shop.example.jp", "slow-password-123", &master, code);
    char note[SLOW_NOTE + 1];
    memset(note, 'n', SLOW_NOTE);
    note[SLOW_NOTE] = '\0';
    for (unsigned i = 0; i < contacts; i++) {
        struct kr_payload *a = td_args(f->t);
        kr_set_str(a, KR_FLD_NAME, "Slow Reader");
        kr_set_str(a, KR_FLD_NOTE, note);
        assert_int_equal(td_exec(f->t, &master, KR_OP_CONTACTS_REGISTER), KR_OK);
    }
    msgpack_sbuffer b;
    msgpack_unpacked u;
    msgpack_sbuffer_init(&b);
    msgpack_unpacked_init(&u);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pstr(&pk, kr_fields[KR_FLD_OP].name);
    pstr(&pk, kr_ops[KR_OP_AUTH_LOGIN].name);
    pstr(&pk, API_KEY_ID);
    msgpack_pack_uint64(&pk, 1);
    pstr(&pk, API_KEY_ARGS);
    msgpack_pack_map(&pk, 3);
    pstr(&pk, kr_fields[KR_FLD_TENANT_CODE].name);
    pstr(&pk, code);
    pstr(&pk, kr_fields[KR_FLD_EMAIL].name);
    pstr(&pk, "slow@shop.example.jp");
    pstr(&pk, kr_fields[KR_FLD_PASSWORD].name);
    pstr(&pk, "slow-password-123");
    struct client c;
    client_open(&c, f->tcp);
    assert_int_equal(client_call(&c, &b, &u), 0);
    assert_null(reply_error(&u));
    const msgpack_object *tk =
        td_map_get(td_map_get(&u.data, API_KEY_RESULT), kr_fields[KR_FLD_TOKEN].name);
    assert_non_null(tk);
    assert_int_equal(tk->via.bin.size, 32);
    memcpy(token, tk->via.bin.ptr, 32);
    client_close(&c);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&b);
}

/* A raw req0 peer with a 4 KiB receive buffer that pipelines
 * SLOW_PIPELINED utility.export requests and never reads. */
static int slow_reader(struct fx *f, const uint8_t token[32])
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int small = 4096;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    raw_handshake(fd);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    for (uint32_t i = 0; i < SLOW_PIPELINED; i++) {
        b.size = 0;
        msgpack_packer pk;
        msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        pstr(&pk, kr_fields[KR_FLD_OP].name);
        pstr(&pk, kr_ops[KR_OP_UTILITY_EXPORT].name);
        pstr(&pk, API_KEY_ID);
        msgpack_pack_uint64(&pk, i + 1);
        pstr(&pk, kr_fields[KR_FLD_TOKEN].name);
        msgpack_pack_bin(&pk, 32);
        msgpack_pack_bin_body(&pk, token, 32);
        pstr(&pk, API_KEY_ARGS);
        msgpack_pack_map(&pk, 1);
        pstr(&pk, kr_fields[KR_FLD_LIMIT].name);
        msgpack_pack_uint64(&pk, 1000);
        uint8_t head[12];
        be64(head, 4 + b.size);
        uint32_t id = 0x80000000u | (i + 1);
        head[8] = (uint8_t)(id >> 24);
        head[9] = (uint8_t)(id >> 16);
        head[10] = (uint8_t)(id >> 8);
        head[11] = (uint8_t)id;
        /* The server may cut it off before all are written: fine. */
        if (write(fd, head, sizeof head) != (ssize_t)sizeof head ||
            write(fd, b.data, b.size) != (ssize_t)b.size)
            break;
    }
    msgpack_sbuffer_destroy(&b);
    return fd;
}

/* auth.whoami with token over url must succeed. */
static void expect_whoami(const char *url, const uint8_t token[32])
{
    struct client c;
    msgpack_sbuffer b;
    msgpack_unpacked u;
    msgpack_sbuffer_init(&b);
    msgpack_unpacked_init(&u);
    client_open(&c, url);
    build(&b, KR_OP_AUTH_WHOAMI, 77, token, NULL);
    assert_int_equal(client_call(&c, &b, &u), 0);
    assert_null(reply_error(&u));
    assert_true(reply_id(&u) == 77);
    client_close(&c);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&b);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits until the server counts `want` connections; fails the test after
 * WAIT_MS. */
static void wait_conns(struct fx *f, unsigned want)
{
    uint64_t until = mono_ms() + WAIT_MS;
    while (api_server_conns(f->s) != want) {
        if (mono_ms() > until)
            fail_msg("connections: %u, expected %u\n", api_server_conns(f->s), want);
        poll(NULL, 0, 10);
    }
}

struct stopper {
    struct api_server *s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static void *stopper_main(void *arg)
{
    struct stopper *st = arg;
    api_server_stop(st->s);
    pthread_mutex_lock(&st->mu);
    st->done = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* Stops the server on another thread; fails the test if it does not stop
 * within WAIT_MS. */
static void stop_within_bound(struct fx *f)
{
    struct stopper st = {.s = f->s, .done = false};
    pthread_mutex_init(&st.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st.cv, &ca);
    f->s = NULL;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stopper_main, &st), 0);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&st.mu);
    int rc = 0;
    while (!st.done && rc == 0)
        rc = pthread_cond_timedwait(&st.cv, &st.mu, &until);
    bool done = st.done;
    pthread_mutex_unlock(&st.mu);
    if (!done)
        fail_msg("the server did not stop within %d ms", WAIT_MS);
    pthread_join(th, NULL);
}

static void test_slow_readers(void **state)
{
    struct fx *f = *state;
    uint8_t token[32];
    slow_tenant(f, SLOW_CONTACTS, token);
    /* As `kiroku serve` runs: 64 workers, so that every pipelined request
     * runs at once and the replies race the connection's closing. */
    api_server_stop(f->s);
    g_workers = 64;
    g_send_timeout_ms = 1000;
    /* An attacker whose requests were all refused (`unavailable`, small
     * replies that fit its socket buffers) has nothing blocked to time out:
     * it is cut off as idle, as `kiroku serve` does by default. */
    g_idle_timeout_ms = 2000;
    assert_int_equal(start(f, false), KR_OK);
    wait_conns(f, 0);
    int fds[SLOW_CONNS];
    for (unsigned i = 0; i < SLOW_CONNS; i++)
        fds[i] = slow_reader(f, token);
    /* Plain requests are served meanwhile, on both endpoints. */
    expect_whoami(f->tcp, token);
    expect_whoami(f->client_ipc, token);
    expect_serves(f->op_ipc);
    /* The server cuts the attackers off (they never read). */
    for (unsigned i = 0; i < SLOW_CONNS; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLRDHUP};
        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        close(fds[i]);
    }
    /* Every later connection is freed again: the count returns to idle. */
    for (unsigned i = 0; i < 2 * CONNS_CAP; i++)
        expect_whoami(f->tcp, token);
    wait_conns(f, 0);
    expect_whoami(f->tcp, token);
    /* And the server stops on request within a bound. */
    stop_within_bound(f);
}

/* ---- Idle connections, per-peer cap ---- */

/* A raw connection from source address src (host order, 127.x.y.z). */
static int raw_connect_from(int port, uint32_t src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    me.sin_addr.s_addr = htonl(src);
    assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof me), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Whether the server closed fd: waits at most ms for it. */
static bool raw_closed_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, ms) != 1)
        return false;
    char x;
    ssize_t n = read(fd, &x, 1);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void test_idle_connections(void **state)
{
    struct fx *f = *state;
    api_server_stop(f->s);
    g_idle_timeout_ms = 3000;
    g_conns_per_peer = CONNS_CAP + 8; /* the endpoint's cap is what fills */
    assert_int_equal(start(f, false), KR_OK);
    /* More idle connections than the cap: the SP header only, then half a
     * frame, half a frame header, and half an SP header (never a pipe). */
    enum { N = CONNS_CAP + 8 };
    int fds[N + 1];
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect(f->port);
        raw_handshake(fds[i]);
        if (i % 3 == 1) {
            uint8_t frame[8 + 6] = {[8] = 0x80, [11] = 0x01};
            be64(frame, 100);
            assert_int_equal(write(fds[i], frame, sizeof frame), (ssize_t)sizeof frame);
        } else if (i % 3 == 2) {
            assert_int_equal(write(fds[i], "\0\0\0", 3), 3);
        }
    }
    fds[N] = raw_connect(f->port);
    assert_int_equal(write(fds[N], sp_req_header, 4), 4);
    /* The client endpoint is full; the operator endpoint answers. */
    wait_conns(f, CONNS_CAP);
    expect_serves(f->op_ipc);
    /* Every idle one is closed after the idle timeout (the half SP header by
     * nng's own negotiation timeout), none of them having sent a request. */
    for (int i = 0; i < N; i++)
        assert_true(raw_closed_within(fds[i], WAIT_MS));
    wait_conns(f, 0);
    /* New clients are served again, and the operator throughout. */
    expect_serves(f->tcp);
    expect_serves(f->op_ipc);
    for (int i = 0; i <= N; i++)
        close(fds[i]);
}

static void test_conns_per_peer(void **state)
{
    struct fx *f = *state;
    api_server_stop(f->s);
    g_conns_per_peer = 3;
    assert_int_equal(start(f, false), KR_OK);
    int a[5];
    for (int i = 0; i < 5; i++) {
        a[i] = raw_connect_from(f->port, 0x7f000001u);
        raw_handshake(a[i]);
    }
    /* Two of the five from 127.0.0.1 are over the cap and closed (which two
     * depends on the order nng finishes their handshakes)... */
    bool closed[5] = {false};
    unsigned nclosed = 0;
    uint64_t until = mono_ms() + WAIT_MS;
    while (nclosed < 2) {
        assert_true(mono_ms() < until);
        for (int i = 0; i < 5; i++)
            if (!closed[i] && raw_closed_within(a[i], 10)) {
                closed[i] = true;
                nclosed++;
            }
    }
    wait_conns(f, 3);
    /* ...while another address gets in, and those within the cap stay. */
    int b = raw_connect_from(f->port, 0x7f000002u);
    raw_handshake(b);
    wait_conns(f, 4);
    for (int i = 0; i < 5; i++)
        if (!closed[i])
            assert_false(raw_closed_within(a[i], 0));
    close(b);
    for (int i = 0; i < 5; i++)
        close(a[i]);
    wait_conns(f, 0);
    expect_serves(f->tcp);
}

static void test_source(void **state)
{
    (void)state;
    uint8_t out[16];
    nng_sockaddr v4 = {.s_in = {.sa_family = NNG_AF_INET}};
    v4.s_in.sa_addr = htonl(0xc0000201u); /* 192.0.2.1 */
    assert_true(api_server_source(&v4, out));
    static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
    assert_memory_equal(out, mapped, 16);
    nng_sockaddr v6 = {.s_in6 = {.sa_family = NNG_AF_INET6}};
    static const uint8_t doc6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 7};
    memcpy(v6.s_in6.sa_addr, doc6, 16);
    assert_true(api_server_source(&v6, out));
    assert_memory_equal(out, doc6, 16);
    nng_sockaddr ipc = {.s_ipc = {.sa_family = NNG_AF_IPC, .sa_path = "/tmp/x.sock"}};
    static const uint8_t zero[16];
    assert_false(api_server_source(&ipc, out));
    assert_memory_equal(out, zero, 16);
}

/* Writes request b as one frame with SP request id id on raw connection fd. */
static void raw_send(int fd, const msgpack_sbuffer *b, uint32_t id)
{
    uint8_t head[12];
    be64(head, 4 + b->size);
    id |= 0x80000000u;
    head[8] = (uint8_t)(id >> 24);
    head[9] = (uint8_t)(id >> 16);
    head[10] = (uint8_t)(id >> 8);
    head[11] = (uint8_t)id;
    assert_int_equal(write(fd, head, sizeof head), (ssize_t)sizeof head);
    assert_int_equal(write(fd, b->data, b->size), (ssize_t)b->size);
}

/* Reads one reply frame from raw connection fd into buf (its msgpack body;
 * *n bytes); returns its SP request id. */
static uint32_t raw_recv(int fd, char *buf, size_t cap, size_t *n)
{
    uint8_t head[12];
    size_t got = 0;
    while (got < sizeof head) {
        ssize_t r = read(fd, head + got, sizeof head - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    uint64_t len = 0;
    for (int i = 0; i < 8; i++)
        len = len << 8 | head[i];
    assert_true(len >= 4 && len - 4 <= cap);
    *n = (size_t)len - 4;
    for (got = 0; got < *n;) {
        ssize_t r = read(fd, buf + got, *n - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    return ((uint32_t)head[8] << 24 | (uint32_t)head[9] << 16 | (uint32_t)head[10] << 8 |
            head[11]) &
           0x7fffffffu;
}

static void test_inflight_bound(void **state)
{
    struct fx *f = *state;
    uint8_t token[32];
    slow_tenant(f, 0, token);
    api_server_stop(f->s);
    g_workers = 2 * KR_API_PIPE_INFLIGHT_MAX;
    assert_int_equal(start(f, false), KR_OK);
    /* KR_API_PIPE_INFLIGHT_MAX requests of one connection held while they
     * run... */
    pthread_mutex_lock(&g_gate.mu);
    g_gate.armed = KR_API_PIPE_INFLIGHT_MAX;
    g_gate.entered = 0;
    g_gate.open = false;
    pthread_mutex_unlock(&g_gate.mu);
    int fd = raw_connect(f->port);
    raw_handshake(fd);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    for (uint32_t i = 1; i <= KR_API_PIPE_INFLIGHT_MAX; i++) {
        build(&b, KR_OP_AUTH_WHOAMI, i, token, NULL);
        raw_send(fd, &b, i);
    }
    pthread_mutex_lock(&g_gate.mu);
    while (g_gate.entered < KR_API_PIPE_INFLIGHT_MAX)
        pthread_cond_wait(&g_gate.cv, &g_gate.mu);
    pthread_mutex_unlock(&g_gate.mu);
    /* ...one more is answered `unavailable` at once, though workers are free. */
    build(&b, KR_OP_AUTH_WHOAMI, 99, token, NULL);
    raw_send(fd, &b, 99);
    char *buf = malloc(KR_API_REPLY_MAX);
    assert_non_null(buf);
    size_t n;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(raw_recv(fd, buf, KR_API_REPLY_MAX, &n), 99);
    assert_int_equal(msgpack_unpack_next(&u, buf, n, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_string_equal(reply_error(&u), kr_api_errors[KR_ERR_UNAVAILABLE].name);
    assert_true(reply_id(&u) == 99);
    /* The operator endpoint answers meanwhile; the held ones finish. */
    expect_serves(f->op_ipc);
    pthread_mutex_lock(&g_gate.mu);
    g_gate.open = true;
    pthread_cond_broadcast(&g_gate.cv);
    pthread_mutex_unlock(&g_gate.mu);
    bool seen[KR_API_PIPE_INFLIGHT_MAX + 1] = {false};
    for (unsigned i = 0; i < KR_API_PIPE_INFLIGHT_MAX; i++) {
        uint32_t id = raw_recv(fd, buf, KR_API_REPLY_MAX, &n);
        assert_true(id >= 1 && id <= KR_API_PIPE_INFLIGHT_MAX && !seen[id]);
        seen[id] = true;
        assert_int_equal(msgpack_unpack_next(&u, buf, n, NULL), MSGPACK_UNPACK_SUCCESS);
        assert_null(reply_error(&u));
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&b);
    free(buf);
    close(fd);
}

/* Sends auth.whoami with token as SP request id on raw connection fd. */
static void raw_whoami(int fd, const uint8_t token[32], uint32_t id)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    build(&b, KR_OP_AUTH_WHOAMI, id, token, NULL);
    raw_send(fd, &b, id);
    msgpack_sbuffer_destroy(&b);
}

/* Reads the next reply on raw connection fd, which must have SP request id
 * and envelope id `id`; returns its error code (enum kr_api_err; -1 = ok). */
static int raw_reply_code(int fd, uint32_t id)
{
    char *buf = malloc(KR_API_REPLY_MAX);
    assert_non_null(buf);
    size_t n;
    assert_int_equal(raw_recv(fd, buf, KR_API_REPLY_MAX, &n), id);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, buf, n, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_true(reply_id(&u) == id);
    const char *e = reply_error(&u);
    int code = -1;
    for (int i = 0; e && i < KR_ERR__COUNT; i++)
        if (strcmp(e, kr_api_errors[i].name) == 0)
            code = i;
    assert_true(!e || code >= 0);
    msgpack_unpacked_destroy(&u);
    free(buf);
    return code;
}

/* Reads the next reply on raw connection fd: SP request id and envelope id
 * `id`, error code `code` (enum kr_api_err; -1 = ok). */
static void raw_expect(int fd, uint32_t id, int code)
{
    char *buf = malloc(KR_API_REPLY_MAX);
    assert_non_null(buf);
    size_t n;
    assert_int_equal(raw_recv(fd, buf, KR_API_REPLY_MAX, &n), id);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, buf, n, NULL), MSGPACK_UNPACK_SUCCESS);
    if (code < 0)
        assert_null(reply_error(&u));
    else
        assert_string_equal(reply_error(&u), kr_api_errors[code].name);
    assert_true(reply_id(&u) == id);
    msgpack_unpacked_destroy(&u);
    free(buf);
}

static void test_peer_inflight(void **state)
{
    struct fx *f = *state;
    uint8_t token[32];
    slow_tenant(f, 0, token);
    api_server_stop(f->s);
    g_inflight = 4;       /* one address may have 2 in flight at once */
    g_conns_per_peer = 8; /* under the endpoint's cap: addresses are bounded */
    assert_int_equal(start(f, false), KR_OK);
    pthread_mutex_lock(&g_gate.mu);
    g_gate.armed = 2;
    g_gate.entered = 0;
    g_gate.open = false;
    pthread_mutex_unlock(&g_gate.mu);
    int a = raw_connect_from(f->port, 0x7f000001u), b = raw_connect_from(f->port, 0x7f000001u);
    raw_handshake(a);
    raw_handshake(b);
    raw_whoami(a, token, 1);
    raw_whoami(b, token, 2);
    pthread_mutex_lock(&g_gate.mu);
    while (g_gate.entered < 2)
        pthread_cond_wait(&g_gate.cv, &g_gate.mu);
    pthread_mutex_unlock(&g_gate.mu);
    /* A third connection from 127.0.0.1 is refused while two workers are
     * free; another address is served by them. */
    int c = raw_connect_from(f->port, 0x7f000001u), d = raw_connect_from(f->port, 0x7f000002u);
    raw_handshake(c);
    raw_handshake(d);
    raw_whoami(c, token, 3);
    raw_expect(c, 3, KR_ERR_UNAVAILABLE);
    raw_whoami(d, token, 4);
    raw_expect(d, 4, -1);
    pthread_mutex_lock(&g_gate.mu);
    g_gate.open = true;
    pthread_cond_broadcast(&g_gate.cv);
    pthread_mutex_unlock(&g_gate.mu);
    raw_expect(a, 1, -1);
    raw_expect(b, 2, -1);
    /* Once they are let go (just after their replies are handed over), the
     * address is served again. */
    uint64_t until = mono_ms() + WAIT_MS;
    for (uint32_t id = 5;; id++) {
        assert_true(mono_ms() < until);
        raw_whoami(c, token, id);
        if (raw_reply_code(c, id) < 0)
            break;
        poll(NULL, 0, 10);
    }
    close(a);
    close(b);
    close(c);
    close(d);
}

struct inflight {
    const char *url;
    struct client c; /* closed by the test, after it read the reply */
    msgpack_unpacked u;
    int rv;
};

static void *inflight_main(void *arg)
{
    struct inflight *x = arg;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    build(&b, KR_OP_SIGNUP_APPLY, 1001, NULL, "inflight@shop.example.jp");
    x->rv = client_call(&x->c, &b, &x->u);
    msgpack_sbuffer_destroy(&b);
    return NULL;
}

static void test_graceful_stop(void **state)
{
    struct fx *f = *state;
    /* A request held inside dom_exec. */
    pthread_mutex_lock(&g_gate.mu);
    g_gate.armed = true;
    g_gate.entered = g_gate.open = false;
    pthread_mutex_unlock(&g_gate.mu);
    struct inflight x = {.url = f->tcp};
    msgpack_unpacked_init(&x.u);
    client_open(&x.c, x.url);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, inflight_main, &x), 0);
    struct timespec end; /* the condition variable's clock */
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&g_gate.mu);
    while (!g_gate.entered && pthread_cond_timedwait(&g_gate.cv, &g_gate.mu, &end) == 0)
        ;
    bool entered = g_gate.entered;
    pthread_mutex_unlock(&g_gate.mu);
    assert_true(entered); /* the request reached dom_exec */

    /* Stopping begins: a new request is refused as unavailable, with its id. */
    api_server_stop_begin(f->s);
    struct client c;
    msgpack_sbuffer b;
    msgpack_unpacked u;
    msgpack_sbuffer_init(&b);
    msgpack_unpacked_init(&u);
    client_open(&c, f->client_ipc);
    build(&b, KR_OP_SIGNUP_APPLY, 1002, NULL, "late@shop.example.jp");
    assert_int_equal(client_call(&c, &b, &u), 0);
    assert_string_equal(reply_error(&u), kr_api_errors[KR_ERR_UNAVAILABLE].name);
    assert_true(reply_id(&u) == 1002);
    uint64_t size = jrn_size(f->t->d->j);

    /* The request in flight finishes and is answered whole. */
    pthread_mutex_lock(&g_gate.mu);
    g_gate.open = true;
    pthread_cond_broadcast(&g_gate.cv);
    pthread_mutex_unlock(&g_gate.mu);
    pthread_join(th, NULL);
    assert_int_equal(x.rv, 0);
    assert_null(reply_error(&x.u));
    assert_true(reply_id(&x.u) == 1001);
    assert_true(jrn_size(f->t->d->j) > size); /* its events were appended */
    msgpack_unpacked_destroy(&x.u);
    client_close(&x.c);

    api_server_stop(f->s);
    f->s = NULL;
    /* Nothing answers any more. */
    nng_socket_set_ms(c.sock, NNG_OPT_RECVTIMEO, 200);
    nng_socket_set_ms(c.sock, NNG_OPT_SENDTIMEO, 200);
    assert_int_not_equal(client_call(&c, &b, &u), 0);
    client_close(&c);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&b);
}

/* ---- The asynchronous write path ---- */

/* {op, id, token, args: {contact?, tag?, name?}}: a write of the test. */
static void build_write(msgpack_sbuffer *b, int op, uint64_t id, const uint8_t token[32],
                        const uint8_t *contact, const uint8_t *tag, const char *name)
{
    msgpack_packer pk;
    b->size = 0;
    msgpack_packer_init(&pk, b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pstr(&pk, kr_fields[KR_FLD_OP].name);
    pstr(&pk, kr_ops[op].name);
    pstr(&pk, API_KEY_ID);
    msgpack_pack_uint64(&pk, id);
    pstr(&pk, kr_fields[KR_FLD_TOKEN].name);
    msgpack_pack_bin(&pk, 32);
    msgpack_pack_bin_body(&pk, token, 32);
    pstr(&pk, API_KEY_ARGS);
    msgpack_pack_map(&pk, (uint32_t)(contact != NULL) + (tag != NULL) + (name != NULL));
    if (contact) {
        pstr(&pk, kr_fields[KR_FLD_CONTACT].name);
        msgpack_pack_bin(&pk, 16);
        msgpack_pack_bin_body(&pk, contact, 16);
    }
    if (tag) {
        pstr(&pk, kr_fields[KR_FLD_TAG].name);
        msgpack_pack_bin(&pk, 16);
        msgpack_pack_bin_body(&pk, tag, 16);
    }
    if (name) {
        pstr(&pk, kr_fields[op == KR_OP_TAGS_CREATE ? KR_FLD_TAG_NAME : KR_FLD_NAME].name);
        pstr(&pk, name);
    }
}

/* Reads the next reply on raw connection fd: ok, with envelope id = SP id;
 * copies its result's field `fld` (bin 16, or uint into *u64). */
static uint32_t raw_ok(int fd, char *buf, int fld, uint8_t id16[16], uint64_t *u64)
{
    size_t n;
    uint32_t id = raw_recv(fd, buf, KR_API_REPLY_MAX, &n);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, buf, n, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_null(reply_error(&u));
    assert_true(reply_id(&u) == id);
    const msgpack_object *v = td_map_get(td_map_get(&u.data, API_KEY_RESULT), kr_fields[fld].name);
    assert_non_null(v);
    if (id16) {
        assert_int_equal(v->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(v->via.bin.size, 16);
        memcpy(id16, v->via.bin.ptr, 16);
    } else {
        *u64 = v->via.u64;
    }
    msgpack_unpacked_destroy(&u);
    return id;
}

struct pending_wait {
    struct fx *f;
    unsigned n;
};

static bool pending_reached(void *arg)
{
    struct pending_wait *w = arg;
    return api_server_pending(w->f->s) >= w->n;
}

/* Waits until n requests wait for their append (the writer being held). */
static void wait_pending(struct fx *f, unsigned n)
{
    struct pending_wait w = {f, n};
    assert_true(kr_test_wait_for(pending_reached, &w, WAIT_MS, "requests pending on the journal"));
    assert_int_equal(api_server_pending(f->s), n);
}

/* Many more writes in flight than deciding threads: 2 threads, 256 writes
 * pipelined over 32 connections, all decided and waiting for the journal at
 * once (its writer held), then all acknowledged, each after its commit. */
static void test_pipelined_writes(void **state)
{
    struct fx *f = *state;
    uint8_t token[32];
    slow_tenant(f, 0, token);
    api_server_stop(f->s);
    enum { CONNS = 32, PER = KR_API_PIPE_INFLIGHT_MAX, N = CONNS * PER };
    g_workers = 2;
    g_inflight = N;
    g_conns_max = CONNS;
    assert_int_equal(start(f, false), KR_OK);
    uint64_t size = jrn_size(f->t->d->j);
    gate_arm(&g_writer, 1);
    int fd[CONNS];
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    for (unsigned i = 0; i < CONNS; i++) {
        fd[i] = raw_connect(f->port);
        raw_handshake(fd[i]);
        for (uint32_t k = 0; k < PER; k++) {
            build_write(&b, KR_OP_CONTACTS_REGISTER, 1 + i * PER + k, token, NULL, NULL,
                        "Pipelined");
            raw_send(fd[i], &b, 1 + i * PER + k);
        }
    }
    wait_pending(f, N);
    assert_int_equal(jrn_size(f->t->d->j), size); /* none committed yet */
    gate_open(&g_writer);
    char *buf = malloc(KR_API_REPLY_MAX);
    assert_non_null(buf);
    static uint8_t ids[N][16];
    bool seen[N + 1] = {false};
    for (unsigned i = 0; i < CONNS; i++)
        for (unsigned k = 0; k < PER; k++) {
            uint8_t id[16];
            uint32_t rid = raw_ok(fd[i], buf, KR_FLD_CONTACT, id, NULL);
            assert_true(rid > i * PER && rid <= (i + 1) * PER && !seen[rid]);
            seen[rid] = true;
            memcpy(ids[rid - 1], id, 16);
        }
    /* Every acknowledged write is in the journal, each a new contact. */
    assert_int_equal(jrn_size(f->t->d->j), size + N);
    for (unsigned i = 0; i < N; i++)
        for (unsigned k = i + 1; k < N; k++)
            assert_memory_not_equal(ids[i], ids[k], 16);
    for (unsigned i = 0; i < CONNS; i++)
        close(fd[i]);
    free(buf);
    msgpack_sbuffer_destroy(&b);
}

/* A conflict at the append is decided again through the asynchronous path:
 * two tags put on one contact at once, both decided on its version 1. */
static void test_conflict_retried(void **state)
{
    struct fx *f = *state;
    uint8_t token[32], contact[16], tag[2][16];
    slow_tenant(f, 0, token);
    char *buf = malloc(KR_API_REPLY_MAX);
    assert_non_null(buf);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    int a = raw_connect(f->port), c = raw_connect(f->port);
    raw_handshake(a);
    raw_handshake(c);
    build_write(&b, KR_OP_CONTACTS_REGISTER, 1, token, NULL, NULL, "Tagged Twice");
    raw_send(a, &b, 1);
    raw_ok(a, buf, KR_FLD_CONTACT, contact, NULL);
    for (uint32_t i = 0; i < 2; i++) {
        build_write(&b, KR_OP_TAGS_CREATE, 2 + i, token, NULL, NULL, i ? "tag-b" : "tag-a");
        raw_send(a, &b, 2 + i);
        raw_ok(a, buf, KR_FLD_TAG, tag[i], NULL);
    }
    struct jrn_stats st0, st1;
    jrn_get_stats(f->t->d->j, &st0);
    gate_arm(&g_writer, 1);
    build_write(&b, KR_OP_CONTACTS_TAG, 10, token, contact, tag[0], NULL);
    raw_send(a, &b, 10);
    build_write(&b, KR_OP_CONTACTS_TAG, 11, token, contact, tag[1], NULL);
    raw_send(c, &b, 11);
    wait_pending(f, 2);
    gate_open(&g_writer);
    uint64_t v[2];
    assert_int_equal(raw_ok(a, buf, KR_FLD_VERSION, NULL, &v[0]), 10);
    assert_int_equal(raw_ok(c, buf, KR_FLD_VERSION, NULL, &v[1]), 11);
    /* One committed on version 1, the other met the conflict and was
     * decided again on version 2. */
    assert_true((v[0] == 2 && v[1] == 3) || (v[0] == 3 && v[1] == 2));
    jrn_get_stats(f->t->d->j, &st1);
    assert_int_equal(st1.conflicts - st0.conflicts, 1);
    close(a);
    close(c);
    free(buf);
    msgpack_sbuffer_destroy(&b);
}

/* Names of the threads that asked for an Argon2id place. */
struct pw_threads {
    pthread_mutex_t mu;
    unsigned n, on_pool, elsewhere;
    char main[16];
};

static void pw_hook(void *arg)
{
    struct pw_threads *p = arg;
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    pthread_mutex_lock(&p->mu);
    p->n++;
    if (strcmp(name, "kr-api-pool") == 0)
        p->on_pool++;
    else if (strcmp(name, p->main) != 0)
        p->elsewhere++;
    pthread_mutex_unlock(&p->mu);
}

/* A login (Argon2id) runs on the pool, never on nng's threads or the
 * deciding ones. */
static void test_login_on_pool(void **state)
{
    struct fx *f = *state;
    struct pw_threads p = {.mu = PTHREAD_MUTEX_INITIALIZER};
    pthread_getname_np(pthread_self(), p.main, sizeof p.main);
    f->t->d->pwhash_hook_arg = &p;
    f->t->d->pwhash_hook = pw_hook;
    uint8_t token[32];
    slow_tenant(f, 0, token); /* signs up here, logs in over the API */
    f->t->d->pwhash_hook = NULL;
    assert_int_equal(p.on_pool, 1);
    assert_int_equal(p.elsewhere, 0);
}

struct write_stopper {
    struct api_server *s;
};

static void *stop_main(void *arg)
{
    struct write_stopper *x = arg;
    api_server_stop(x->s);
    return NULL;
}

/* Stopping with writes in flight: stop waits for their appends, and every
 * one is answered and in the journal. */
static void test_stop_with_writes(void **state)
{
    struct fx *f = *state;
    uint8_t token[32];
    slow_tenant(f, 0, token);
    enum { CONNS = 2, PER = KR_API_PIPE_INFLIGHT_MAX, N = CONNS * PER };
    uint64_t size = jrn_size(f->t->d->j);
    gate_arm(&g_writer, 1);
    int fd[CONNS];
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    for (unsigned i = 0; i < CONNS; i++) {
        fd[i] = raw_connect(f->port);
        raw_handshake(fd[i]);
        for (uint32_t k = 0; k < PER; k++) {
            build_write(&b, KR_OP_CONTACTS_REGISTER, 1 + i * PER + k, token, NULL, NULL, "Late");
            raw_send(fd[i], &b, 1 + i * PER + k);
        }
    }
    wait_pending(f, N);
    api_server_stop_begin(f->s);
    struct write_stopper x = {f->s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stop_main, &x), 0);
    gate_open(&g_writer);
    char *buf = malloc(KR_API_REPLY_MAX);
    assert_non_null(buf);
    for (unsigned i = 0; i < CONNS; i++)
        for (unsigned k = 0; k < PER; k++) {
            uint8_t id[16];
            raw_ok(fd[i], buf, KR_FLD_CONTACT, id, NULL);
        }
    pthread_join(th, NULL);
    f->s = NULL;
    assert_int_equal(jrn_size(f->t->d->j), size + N);
    for (unsigned i = 0; i < CONNS; i++)
        close(fd[i]);
    free(buf);
    msgpack_sbuffer_destroy(&b);
}

static void test_mailer_files(void **state)
{
    struct fx *f = *state;
    struct kr_caller master;
    char code[40];
    td_signup(f->t, "mail@shop.example.jp", "mail-password-123", &master, code);
    size_t written = 0;
    assert_int_equal(mailer_run(f->t->d, &written), KR_OK);
    assert_int_equal(written, 3); /* the payment link, the auth code, the account info */
    assert_int_equal(mailer_run(f->t->d, &written), KR_OK);
    assert_int_equal(written, 0); /* sent: not again */
    char dir[700];
    snprintf(dir, sizeof dir, "%s/outbox", f->t->dir);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    struct dirent *de;
    int files = 0;
    bool saw_code = false, saw_tenant = false, saw_payment = false;
    while ((de = readdir(dp))) {
        if (de->d_name[0] == '.')
            continue;
        assert_non_null(strstr(de->d_name, ".eml"));
        char path[1000], text[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        int fd = open(path, O_RDONLY);
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        assert_true(n > 0);
        text[n] = '\0';
        assert_non_null(strstr(text, "To: <mail@shop.example.jp>\r\n"));
        assert_non_null(strstr(text, " +0900\r\n"));
        assert_non_null(strstr(text, "Content-Transfer-Encoding: base64\r\n"));
        char *body = strstr(text, "\r\n\r\n"), plain[4096];
        size_t plen;
        assert_non_null(body);
        assert_int_equal(sodium_base642bin((unsigned char *)plain, sizeof plain - 1, body + 4,
                                           strlen(body + 4), "\r\n", &plen, NULL,
                                           sodium_base64_VARIANT_ORIGINAL),
                         0);
        plain[plen] = '\0';
        saw_code |= strstr(plain, "Auth code: ") != NULL;
        saw_tenant |= strstr(plain, code) != NULL;
        saw_payment |= strstr(plain, "Please complete your payment at:") != NULL;
        files++;
    }
    closedir(dp);
    assert_int_equal(files, 3);
    assert_true(saw_code);
    assert_true(saw_tenant);
    assert_true(saw_payment);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* peers the server cut off fail with EPIPE instead */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_socket_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_over_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_frame_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conns_per_peer, setup, teardown),
        cmocka_unit_test(test_source),
        cmocka_unit_test_setup_teardown(test_inflight_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_on_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailer_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
