/*
 * bench_api.c: `kiroku bench api`, the API server's benchmark
 * (docs/benchmarks.md, issue 4's targets).
 *
 * One process holds everything: a scratch domain seeded with one tenant of
 * a few hundred contacts (cli_seed), the API server on it (api_server_start,
 * tcp loopback, a random port), a bare nng echo server built like the API
 * server (a rep0 socket with as many contexts as the server has requests in
 * flight, each an aio callback: receive, send back), and C client threads,
 * each with its
 * own req0 socket and so its own TCP connection, each sending one request
 * and waiting for its reply, again, for --seconds per phase:
 *
 *   echo   contacts.get requests to the echo server (the bytes come back);
 *   read   the same requests, byte for byte, to the API server;
 *   gateway the same contacts.get as JSON over HTTP (POST /api/contacts.get
 *          with a Bearer token) to the server's JSON gateway, one keep-alive
 *          connection per client: its rate beside the read phase's, measured
 *          just before in the same run, is the gateway's figure;
 *   write  contacts.tag / contacts.untag of a tag of the bench's own on the
 *          client's own contacts, alternating, so that every request appends
 *          one event and is answered after that event is durable; beside
 *          it, the journal's own `bench append --producers CLIENTS --window
 *          1` on a scratch journal, just before and just after the phase
 *          (bench_append_rate), their mean the ceiling;
 *   login  auth.login of one account per client at the domain's production
 *          Argon2id cost, with the process's memory over the phase: peak
 *          anonymous memory (sampled), which the Argon2id cap bounds, and
 *          peak resident memory (VmHWM, reset through /proc/self/clear_refs).
 *
 * Rates count the requests answered ok over the phase; a request that fails
 * is counted apart and makes the command exit 3. Latency is per request,
 * from before the send to after the reply was received. The clients run in
 * the server's process, on the same cores, in every phase alike.
 */
#include "accounts.h"
#include "cli.h"
#include "domain.h"
#include "mp.h"
#include "protocol.h"
#include "seed.h"
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Each client is one connection: well under KR_API_CONNS_MAX. */
#define BAPI_CLIENTS_DEFAULT 32u
#define BAPI_CLIENTS_MAX     256u
#define BAPI_SECONDS_DEFAULT 3u
#define BAPI_SECONDS_MAX     3600u
/* Contacts seeded: every client toggles a tag on contacts of its own. */
#define BAPI_CONTACTS_DEFAULT 320u
#define BAPI_CONTACTS_MAX     100000u
/* Latency samples kept per client and phase (64 MiB at most); requests
 * beyond are counted but not sampled. */
#define BAPI_LAT_MAX (1u << 24)
/* A request of this bench: the envelope, a token and three short args. */
#define BAPI_REQ_MAX 512u
/* A reply not received within this is a failure (logins queue for the
 * Argon2id places, so a slow one can take seconds). */
#define BAPI_TIMEOUT_MS 60000
/* Random ports tried before giving up on finding a free one. */
#define BAPI_PORT_TRIES 32u
/* A client answered `unavailable` (too many logins waiting) waits this long
 * before trying again, at most BAPI_BUSY_TRIES times during set-up. */
#define BAPI_BUSY_BACKOFF_MS 5u
#define BAPI_BUSY_TRIES      2000u
/* Nesting and elements the reply reader skips over (contacts.list pages). */
#define BAPI_MP_DEPTH 16u
#define BAPI_MP_ITEMS (1u << 20)

/* Events of the journal's own run beside the write phase (`bench append
 * --producers CLIENTS --window 1`), per second of --seconds: about as long
 * as the phase at the rates seen here. */
#define BAPI_APPEND_EVENTS_PER_S 20000u

/* An answer of the gateway phase: headers and a contacts.get reply as JSON. */
#define BAPI_HTTP_ANSWER_MAX 16384u

#define BAPI_READER_EMAIL "reader@bench.kiroku.example"
#define BAPI_WRITE_TAG    "bench-write"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A field of /proc/self/status in kB ("VmRSS:", "VmHWM:"), -1 if unknown. */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(key);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, n) == 0) {
            char *end;
            kb = strtol(line + n, &end, 10);
            if (end == line + n)
                kb = -1;
            break;
        }
    }
    fclose(f);
    return kb;
}

/* Resets VmHWM to the present resident size (Linux >= 4.0). */
static bool reset_peak_rss(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* A random password: "bench-" and 24 letters and digits. */
static void bench_password(char out[32])
{
    static const char abc[] = "abcdefghijkmnopqrstuvwxyz23456789";
    memcpy(out, "bench-", 6);
    for (size_t i = 0; i < 24; i++)
        out[6 + i] = abc[randombytes_uniform(sizeof abc - 1)];
    out[30] = '\0';
}

/* ---- msgpack: requests and replies ---- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str_with_body(pk, s, n);
}

/* The envelope up to the args map's header: {op, id, token?, args: {nargs}}. */
static void pack_head(msgpack_packer *pk, int op, uint64_t id, const uint8_t *token, uint32_t nargs)
{
    msgpack_pack_map(pk, token ? 4 : 3);
    pack_str(pk, kr_fields[KR_FLD_OP].name);
    pack_str(pk, kr_ops[op].name);
    pack_str(pk, API_KEY_ID);
    msgpack_pack_uint64(pk, id);
    if (token) {
        pack_str(pk, kr_fields[KR_FLD_TOKEN].name);
        msgpack_pack_bin_with_body(pk, token, 32);
    }
    pack_str(pk, API_KEY_ARGS);
    msgpack_pack_map(pk, nargs);
}

static void pack_id(msgpack_packer *pk, int fld, const uint8_t id[16])
{
    pack_str(pk, kr_fields[fld].name);
    msgpack_pack_bin_with_body(pk, id, 16);
}

static void pack_kv(msgpack_packer *pk, int fld, const char *s)
{
    pack_str(pk, kr_fields[fld].name);
    pack_str(pk, s);
}

/* Positions r (at a map) on the value of key; false if absent or malformed. */
static bool mp_find(struct kr_mp_reader *r, const char *key)
{
    uint32_t n;
    size_t kl = strlen(key);
    if (kr_mp_read_map(r, &n))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t len;
        if (kr_mp_read_str(r, &k, &len))
            return false;
        if (len == kl && memcmp(k, key, kl) == 0)
            return true;
        if (kr_mp_check(r, BAPI_MP_DEPTH, BAPI_MP_ITEMS))
            return false;
    }
    return false;
}

/* Whether a reply says ok: true; *result (if given) is then on its result. */
static bool reply_ok(const void *p, size_t n, struct kr_mp_reader *result)
{
    struct kr_mp_reader r;
    bool ok = false;
    kr_mp_reader_init(&r, p, n, false);
    if (!mp_find(&r, API_KEY_OK) || kr_mp_read_bool(&r, &ok) || !ok)
        return false;
    if (result) {
        kr_mp_reader_init(result, p, n, false);
        return mp_find(result, API_KEY_RESULT);
    }
    return true;
}

/* Whether a reply is the error `unavailable` (the server asks to try again). */
static bool reply_unavailable(const void *p, size_t n)
{
    struct kr_mp_reader r;
    const char *code;
    size_t len;
    const char *want = kr_api_errors[KR_ERR_UNAVAILABLE].name;
    kr_mp_reader_init(&r, p, n, false);
    if (!mp_find(&r, API_KEY_ERROR) || !mp_find(&r, API_KEY_CODE) ||
        kr_mp_read_str(&r, &code, &len))
        return false;
    return len == strlen(want) && memcmp(code, want, len) == 0;
}

/* Copies the bin or str value of field fld of the map at r into out. */
static kr_err mp_bytes(struct kr_mp_reader r, int fld, void *out, size_t cap, size_t *len)
{
    const uint8_t *b = NULL;
    const char *s = NULL;
    size_t n = 0;
    if (!mp_find(&r, kr_fields[fld].name))
        return KR_ENOTFOUND;
    if (kr_mp_peek(&r) == KR_MP_STR) {
        if (kr_mp_read_str(&r, &s, &n))
            return KR_ECORRUPT;
        b = (const uint8_t *)s;
    } else if (kr_mp_read_bin(&r, &b, &n)) {
        return KR_ECORRUPT;
    }
    if (n > cap)
        return KR_ETOOLARGE;
    memcpy(out, b, n);
    *len = n;
    return KR_OK;
}

static kr_err result_id(const struct kr_wbuf *out, int fld, uint8_t id[16])
{
    struct kr_mp_reader r;
    size_t n = 0;
    kr_mp_reader_init(&r, out->data, out->size, false);
    kr_err err = mp_bytes(r, fld, id, 16, &n);
    return err ? err : n == 16 ? KR_OK : KR_ECORRUPT;
}

/* ---- The echo server: the API server's shape with nothing inside ---- */

/* As many contexts as the API server has requests in flight, each with one
 * aio whose callback sends back what it received, then receives again: no
 * thread of its own, as the server's contexts (api/server.c). */
struct echo_ctx {
    nng_ctx ctx;
    nng_aio *aio;
    bool sending;
};

struct echo_server {
    nng_socket sock;
    bool open;
    struct echo_ctx *c;
    unsigned n;
};

static void echo_cb(void *arg)
{
    struct echo_ctx *c = arg;
    int rv = nng_aio_result(c->aio);
    if (c->sending) {
        if (rv)
            nng_msg_free(nng_aio_get_msg(c->aio));
        if (rv == NNG_ECLOSED)
            return;
        c->sending = false;
        nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (rv) {
        nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    c->sending = true;
    nng_aio_set_msg(c->aio, nng_aio_get_msg(c->aio));
    nng_ctx_send(c->ctx, c->aio);
}

static void echo_stop(struct echo_server *e)
{
    if (e->open)
        nng_close(e->sock);
    e->open = false;
    for (unsigned i = 0; e->c && i < e->n; i++)
        if (e->c[i].aio)
            nng_aio_stop(e->c[i].aio);
    for (unsigned i = 0; e->c && i < e->n; i++)
        if (e->c[i].aio)
            nng_aio_free(e->c[i].aio);
    free(e->c);
    e->c = NULL;
}

static kr_err echo_start(struct echo_server *e, const char *url, unsigned contexts)
{
    int rv = nng_rep0_open(&e->sock);
    if (rv)
        return kr_err_from_nng(rv);
    e->open = true;
    if ((rv = nng_socket_set_size(e->sock, NNG_OPT_RECVMAXSZ, KR_API_REQUEST_MAX)) ||
        (rv = nng_listen(e->sock, url, NULL, 0)))
        return kr_err_from_nng(rv);
    if (!(e->c = calloc(contexts, sizeof *e->c)))
        return KR_ENOMEM;
    e->n = contexts;
    for (unsigned i = 0; i < contexts; i++) {
        struct echo_ctx *c = &e->c[i];
        if ((rv = nng_aio_alloc(&c->aio, echo_cb, c)) || (rv = nng_ctx_open(&c->ctx, e->sock)))
            return kr_err_from_nng(rv);
        nng_ctx_recv(c->ctx, c->aio);
    }
    return KR_OK;
}

/* ---- Clients and phases ---- */

struct bapi;

struct bclient {
    struct bapi *b;
    unsigned i;
    pthread_t tid;
    nng_socket api, echo;
    bool api_open, echo_open;
    int http; /* a keep-alive connection to the gateway, -1 if none */
    /* the phase's counts and latency samples (µs); busy: answered
     * `unavailable` (too many logins waiting for Argon2id), retried */
    uint64_t ok, failed, busy;
    uint32_t *lat;
    size_t nlat, cap;
    const char *why; /* the first failure */
    uint64_t seq;    /* request ids */
    /* writes: this client's contacts (indexes into bapi.contacts) and
     * whether the write tag is on each */
    size_t *own;
    bool *tagged;
    size_t nown, next;
    /* logins: this client's account */
    char email[64];
    char pw[32];
};

struct phase {
    const char *name;
    kr_err (*prep)(struct bclient *c); /* before the clock starts; may be NULL */
    bool echo;                         /* to the echo server */
    bool http;                         /* JSON over HTTP to the gateway (build, check unused) */
    size_t (*build)(struct bclient *c, uint64_t k, uint8_t *req, size_t cap);
    bool (*check)(struct bclient *c, const uint8_t *req, size_t len, const uint8_t *rep,
                  size_t rlen);
};

struct bapi {
    struct kr_domain *d;
    struct kr_caller master;
    char tenant_code[KR_TENANT_CODE_MAX + 1];
    uint8_t token[32];          /* the reader's session */
    struct sockaddr_in gateway; /* the gateway's address */
    uint8_t (*contacts)[16];
    size_t ncontacts;
    uint8_t wtag[16];
    unsigned nclients;
    unsigned seconds;
    struct bclient *c;
    const struct phase *ph;
    atomic_bool stop;
    atomic_uint finished; /* clients done with the phase */
    /* the start gate: clients count themselves ready, then wait for go */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready;
    bool go;
};

struct phase_result {
    uint64_t ok, failed, busy;
    double seconds, per_s;
    uint32_t p50_us, p99_us, max_us;
    const char *why;
};

static void lat_add(struct bclient *c, uint64_t ns)
{
    if (c->nlat == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 4096;
        uint32_t *p = cap <= BAPI_LAT_MAX ? realloc(c->lat, cap * sizeof *p) : NULL;
        if (!p)
            return;
        c->lat = p;
        c->cap = cap;
    }
    uint64_t us = ns / 1000;
    c->lat[c->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void http_loop(struct bclient *c);

static void *client_main(void *arg)
{
    struct bclient *c = arg;
    struct bapi *b = c->b;
    const struct phase *ph = b->ph;
    kr_err err = ph->prep ? ph->prep(c) : KR_OK;
    if (err) {
        c->why = kr_strerror(err);
        c->failed++;
    }
    pthread_mutex_lock(&b->mu);
    b->ready++;
    pthread_cond_broadcast(&b->cv);
    while (!b->go)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    if (ph->http) {
        http_loop(c);
        atomic_fetch_add(&b->finished, 1);
        return NULL;
    }
    nng_socket sock = ph->echo ? c->echo : c->api;
    uint8_t req[BAPI_REQ_MAX];
    for (uint64_t k = 0; !err && !atomic_load_explicit(&b->stop, memory_order_relaxed); k++) {
        size_t len = ph->build(c, k, req, sizeof req);
        if (!len) {
            c->why = "request too large";
            c->failed++;
            break;
        }
        nng_msg *rep = NULL;
        uint64_t t0 = now_ns();
        int rv = nng_send(sock, req, len, 0);
        if (!rv)
            rv = nng_recvmsg(sock, &rep, 0);
        uint64_t t = now_ns() - t0;
        if (rv) {
            c->why = nng_strerror(rv);
            c->failed++;
            break;
        }
        if (ph->check(c, req, len, nng_msg_body(rep), nng_msg_len(rep))) {
            c->ok++;
            lat_add(c, t);
        } else if (reply_unavailable(nng_msg_body(rep), nng_msg_len(rep))) {
            c->busy++; /* a client would back off and try again */
            sleep_ms(BAPI_BUSY_BACKOFF_MS);
        } else {
            c->failed++;
            if (!c->why)
                c->why = "a reply was not ok";
        }
        nng_msg_free(rep);
    }
    atomic_fetch_add(&b->finished, 1);
    return NULL;
}

/* What the login phase measures of memory (kB, -1 if unknown). Resident
 * memory (VmRSS) counts the pages of the LMDB map the phase reads as well;
 * anonymous memory (RssAnon: heap, stacks, Argon2id's blocks) is what the
 * Argon2id cap bounds, and its peak is sampled every BAPI_SAMPLE_MS. */
struct mem_sample {
    long rss_base, rss_peak;   /* VmRSS as the clock starts; VmHWM at the end */
    long anon_base, anon_peak; /* RssAnon as the clock starts; the most sampled */
};
#define BAPI_SAMPLE_MS 5u

/* ---- JSON over HTTP: the gateway phase ----
 *
 * A client of its own over one keep-alive connection, written for the
 * bench rather than libcurl so that the client's share of the two cores is
 * about what an nng client's is: one write of the request, reads until the
 * headers and Content-Length bytes of body are in. */

/* Connects c to the gateway (TCP_NODELAY, as nng's tcp transport sets):
 * the phase's prep, so that the connection is fresh (the gateway closes one
 * idle for its timeout, which the phases before may outlast). */
static kr_err http_connect(struct bclient *c)
{
    if (c->http >= 0)
        close(c->http);
    c->http = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return KR_EIO;
    struct timeval tv = {.tv_sec = BAPI_TIMEOUT_MS / 1000};
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (const struct sockaddr *)&c->b->gateway, sizeof c->b->gateway) != 0) {
        close(fd);
        return KR_EIO;
    }
    c->http = fd;
    return KR_OK;
}

/* The request: POST /api/contacts.get of the client's next contact (the
 * read phase's request, as JSON) with the reader's token. */
static size_t http_request(struct bclient *c, uint64_t k, char *out, size_t cap)
{
    struct bapi *b = c->b;
    char token[65], contact[33], body[64];
    sodium_bin2hex(token, sizeof token, b->token, sizeof b->token);
    sodium_bin2hex(contact, sizeof contact, b->contacts[(c->i + k * b->nclients) % b->ncontacts],
                   16);
    int blen = snprintf(body, sizeof body, "{\"contact\":\"%s\"}", contact);
    int n = snprintf(out, cap,
                     "POST /api/contacts.get HTTP/1.1\r\nHost: bench\r\n"
                     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     token, blen, body);
    sodium_memzero(token, sizeof token);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Sends req and reads one answer into buf; true if it is 200 with an ok
 * reply. *why says what failed otherwise. */
static bool http_exchange(struct bclient *c, const char *req, size_t len, char *buf, size_t cap,
                          const char **why)
{
    for (size_t off = 0; off < len;) {
        ssize_t w = send(c->http, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) {
            *why = "gateway: send failed";
            return false;
        }
        off += (size_t)w;
    }
    size_t have = 0, need = 0;
    char *body = NULL;
    while (!body || have < need) {
        if (have == cap - 1) {
            *why = "gateway: answer too large";
            return false;
        }
        ssize_t r = recv(c->http, buf + have, cap - 1 - have, 0);
        if (r <= 0) {
            *why = "gateway: connection closed";
            return false;
        }
        have += (size_t)r;
        buf[have] = '\0';
        char *end = body ? NULL : strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            if (!cl || cl > end) {
                *why = "gateway: no Content-Length";
                return false;
            }
            body = end + 4;
            need = (size_t)(body - buf) + strtoul(cl + 17, NULL, 10);
        }
    }
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 || strncmp(body, "{\"ok\":true,", 11) != 0) {
        *why = "gateway: an answer was not ok";
        return false;
    }
    return true;
}

static void http_loop(struct bclient *c)
{
    struct bapi *b = c->b;
    char req[BAPI_REQ_MAX], buf[BAPI_HTTP_ANSWER_MAX];
    for (uint64_t k = 0; !atomic_load_explicit(&b->stop, memory_order_relaxed); k++) {
        size_t len = http_request(c, k, req, sizeof req);
        const char *why = "request too large";
        uint64_t t0 = now_ns();
        bool ok = len && http_exchange(c, req, len, buf, sizeof buf, &why);
        uint64_t t = now_ns() - t0;
        if (!ok) {
            c->why = why;
            c->failed++;
            break;
        }
        c->ok++;
        lat_add(c, t);
    }
    sodium_memzero(req, sizeof req);
    close(c->http); /* its thread in the gateway ends with it */
    c->http = -1;
}

/* Runs one phase: every client prepares, then all send for b->seconds. With
 * `mem`, the peak resident memory is reset as the clock starts and memory is
 * sampled while the phase runs. */
static kr_err run_phase(struct bapi *b, const struct phase *ph, struct phase_result *r,
                        struct mem_sample *mem)
{
    memset(r, 0, sizeof *r);
    for (unsigned i = 0; i < b->nclients; i++) {
        struct bclient *c = &b->c[i];
        c->ok = c->failed = 0;
        c->nlat = 0;
        c->why = NULL;
    }
    b->ph = ph;
    atomic_store(&b->stop, false);
    atomic_store(&b->finished, 0);
    b->ready = 0;
    b->go = false;
    unsigned started = 0;
    kr_err err = KR_OK;
    for (; started < b->nclients; started++)
        if (pthread_create(&b->c[started].tid, NULL, client_main, &b->c[started]) != 0) {
            err = KR_ENOMEM;
            atomic_store(&b->stop, true);
            break;
        }
    pthread_mutex_lock(&b->mu);
    while (b->ready < started)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    if (mem) {
        mem->rss_base = status_kb("VmRSS:");
        mem->anon_base = mem->anon_peak = status_kb("RssAnon:");
        if (!reset_peak_rss())
            fprintf(stderr, "kiroku: bench api: cannot reset the peak RSS; it counts from the "
                            "start\n");
    }
    pthread_mutex_lock(&b->mu);
    b->go = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    double t0 = cli_now();
    if (!err && !mem) {
        sleep_ms(b->seconds * 1000);
    } else if (!err) {
        /* Sampling goes on until every client is done (the last logins). */
        while (cli_now() - t0 < b->seconds || atomic_load(&b->finished) < started) {
            if (cli_now() - t0 >= b->seconds)
                atomic_store(&b->stop, true);
            sleep_ms(BAPI_SAMPLE_MS);
            long kb = status_kb("RssAnon:");
            if (kb > mem->anon_peak)
                mem->anon_peak = kb;
        }
    }
    atomic_store(&b->stop, true);
    for (unsigned i = 0; i < started; i++)
        pthread_join(b->c[i].tid, NULL);
    r->seconds = cli_now() - t0;
    if (mem)
        mem->rss_peak = status_kb("VmHWM:");

    size_t total = 0;
    for (unsigned i = 0; i < b->nclients; i++) {
        struct bclient *c = &b->c[i];
        r->ok += c->ok;
        r->failed += c->failed;
        r->busy += c->busy;
        total += c->nlat;
        if (c->why && !r->why)
            r->why = c->why;
    }
    uint32_t *all = malloc((total ? total : 1) * sizeof *all);
    if (!all)
        return KR_ENOMEM;
    size_t k = 0;
    for (unsigned i = 0; i < b->nclients; i++) {
        memcpy(all + k, b->c[i].lat, b->c[i].nlat * sizeof *all);
        k += b->c[i].nlat;
    }
    if (k) {
        qsort(all, k, sizeof *all, cmp_u32);
        r->p50_us = all[k / 2];
        r->p99_us = all[k * 99 / 100];
        r->max_us = all[k - 1];
    }
    free(all);
    r->per_s = r->seconds > 0 ? (double)r->ok / r->seconds : 0;
    return err;
}

/* echo and read: contacts.get of the client's next contact; the same bytes
 * to both servers. */
static size_t build_get(struct bclient *c, uint64_t k, uint8_t *req, size_t cap)
{
    struct bapi *b = c->b;
    struct kr_mp_fixbuf fb = {.p = req, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    pack_head(&pk, KR_OP_CONTACTS_GET, k + 1, b->token, 1);
    pack_id(&pk, KR_FLD_CONTACT, b->contacts[(c->i + k * b->nclients) % b->ncontacts]);
    return fb.overflow ? 0 : fb.len;
}

static bool check_echo(struct bclient *c, const uint8_t *req, size_t len, const uint8_t *rep,
                       size_t rlen)
{
    (void)c;
    return len == rlen && memcmp(req, rep, len) == 0;
}

static bool check_ok(struct bclient *c, const uint8_t *req, size_t len, const uint8_t *rep,
                     size_t rlen)
{
    (void)c;
    (void)req;
    (void)len;
    return reply_ok(rep, rlen, NULL);
}

/* write: the write tag goes on the client's next contact if it is off, and
 * off if it is on, so every request appends one event. */
static size_t build_tag(struct bclient *c, uint64_t k, uint8_t *req, size_t cap)
{
    struct bapi *b = c->b;
    (void)k;
    size_t x = c->own[c->next];
    struct kr_mp_fixbuf fb = {.p = req, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    pack_head(&pk, c->tagged[c->next] ? KR_OP_CONTACTS_UNTAG : KR_OP_CONTACTS_TAG, ++c->seq,
              b->token, 2);
    pack_id(&pk, KR_FLD_CONTACT, b->contacts[x]);
    pack_id(&pk, KR_FLD_TAG, b->wtag);
    return fb.overflow ? 0 : fb.len;
}

static bool check_tag(struct bclient *c, const uint8_t *req, size_t len, const uint8_t *rep,
                      size_t rlen)
{
    (void)req;
    (void)len;
    if (!reply_ok(rep, rlen, NULL))
        return false;
    c->tagged[c->next] = !c->tagged[c->next];
    c->next = (c->next + 1) % c->nown;
    return true;
}

/* login: each client's own account, made (at the production cost) before
 * the clock starts. */
static kr_err prep_login(struct bclient *c)
{
    struct bapi *b = c->b;
    snprintf(c->email, sizeof c->email, "login%u@bench.kiroku.example", c->i);
    bench_password(c->pw);
    struct kr_payload *a = kr_payload_new();
    struct kr_wbuf out;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    if (!a)
        return KR_ENOMEM;
    kr_set_str(a, KR_FLD_EMAIL, c->email);
    kr_set_str(a, KR_FLD_PASSWORD, c->pw);
    kr_set_u64(a, KR_FLD_ROLE, KR_ROLE_USER);
    kr_set_u64(a, KR_FLD_PERMISSIONS, 1u << KR_PERMISSION_CONTACTS_READ);
    struct kr_diag diag;
    kr_err err;
    /* All clients make their accounts at once: past the Argon2id queue the
     * domain says busy, and the client tries again. */
    for (unsigned tries = 0;; tries++) {
        err = dom_exec(b->d, &b->master, KR_OP_USERS_CREATE, a, &out, &diag);
        if (err != KR_EBUSY || tries == BAPI_BUSY_TRIES)
            break;
        sleep_ms(BAPI_BUSY_BACKOFF_MS);
    }
    if (err)
        fprintf(stderr, "kiroku: bench api: %s: %s (%s: %s)\n", kr_ops[KR_OP_USERS_CREATE].name,
                kr_strerror(err), diag.field, diag.why);
    kr_payload_free(a);
    kr_wbuf_free(&out);
    return err;
}

static size_t build_login(struct bclient *c, uint64_t k, uint8_t *req, size_t cap)
{
    struct kr_mp_fixbuf fb = {.p = req, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    pack_head(&pk, KR_OP_AUTH_LOGIN, k + 1, NULL, 3);
    pack_kv(&pk, KR_FLD_TENANT_CODE, c->b->tenant_code);
    pack_kv(&pk, KR_FLD_EMAIL, c->email);
    pack_kv(&pk, KR_FLD_PASSWORD, c->pw);
    return fb.overflow ? 0 : fb.len;
}

static const struct phase ph_echo = {"echo", NULL, true, false, build_get, check_echo};
static const struct phase ph_read = {"read", NULL, false, false, build_get, check_ok};
static const struct phase ph_write = {"write", NULL, false, false, build_tag, check_tag};
static const struct phase ph_login = {"login", prep_login, false, false, build_login, check_ok};
static const struct phase ph_gateway = {"gateway", http_connect, false, true, build_get, check_ok};

/* ---- Set-up ---- */

static kr_err exec_must(struct bapi *b, int op, struct kr_payload *a, struct kr_wbuf *out)
{
    struct kr_diag diag;
    kr_err err = dom_exec(b->d, &b->master, op, a, out, &diag);
    if (err)
        fprintf(stderr, "kiroku: bench api: %s: %s (%s: %s)\n", kr_ops[op].name, kr_strerror(err),
                diag.field, diag.why);
    return err;
}

/* Every live contact of the tenant, through contacts.list pages. */
static kr_err list_contacts(struct bapi *b, struct kr_payload *a, struct kr_wbuf *out)
{
    uint8_t cursor[64];
    size_t cursor_len = 0, cap = 0;
    kr_err err;
    do {
        kr_payload_reset(a, -1);
        kr_set_u64(a, KR_FLD_LIMIT, KR_PAGE_DEFAULT);
        if (cursor_len)
            kr_set_bytes(a, KR_FLD_CURSOR, cursor, cursor_len);
        if ((err = exec_must(b, KR_OP_CONTACTS_LIST, a, out)))
            return err;
        struct kr_mp_reader r, c;
        kr_mp_reader_init(&r, out->data, out->size, false);
        c = r;
        cursor_len = 0;
        if (mp_bytes(c, KR_FLD_CURSOR, cursor, sizeof cursor, &cursor_len) != KR_OK)
            cursor_len = 0;
        /* The page's one list. */
        uint32_t n, items = 0;
        if (kr_mp_read_map(&r, &n))
            return KR_ECORRUPT;
        for (uint32_t i = 0; i < n; i++) {
            const char *k;
            size_t kl;
            if (kr_mp_read_str(&r, &k, &kl))
                return KR_ECORRUPT;
            if (kr_mp_peek(&r) == KR_MP_ARRAY && kr_mp_read_array(&r, &items) == KR_OK)
                break;
            if (kr_mp_check(&r, BAPI_MP_DEPTH, BAPI_MP_ITEMS))
                return KR_ECORRUPT;
        }
        for (uint32_t i = 0; i < items && b->ncontacts < BAPI_CONTACTS_MAX; i++) {
            struct kr_mp_reader item = r;
            if (kr_mp_check(&r, BAPI_MP_DEPTH, BAPI_MP_ITEMS))
                return KR_ECORRUPT;
            if (b->ncontacts == cap) {
                cap = cap ? 2 * cap : 256;
                void *p = realloc(b->contacts, cap * sizeof *b->contacts);
                if (!p)
                    return KR_ENOMEM;
                b->contacts = p;
            }
            size_t len;
            if ((err = mp_bytes(item, KR_FLD_CONTACT, b->contacts[b->ncontacts], 16, &len)))
                return err;
            if (len != 16)
                return KR_ECORRUPT;
            b->ncontacts++;
        }
    } while (cursor_len && b->ncontacts < BAPI_CONTACTS_MAX);
    return KR_OK;
}

/* The seeded tenant's code, the bench's write tag, its contacts and a
 * reader account (contacts.read and .write) whose password is returned. */
static kr_err setup_tenant(struct bapi *b, const struct cli_seed_result *sr, char reader_pw[32])
{
    MDB_txn *txn;
    struct va_tenant t;
    int rc = mdb_txn_begin(jrn_env(b->d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    kr_err err = va_tenant_get(&b->d->views, txn, sr->tenant, &t);
    mdb_txn_abort(txn);
    if (err)
        return err;
    if (t.code_len >= sizeof b->tenant_code)
        return KR_ECORRUPT;
    memcpy(b->tenant_code, t.code, t.code_len);
    b->tenant_code[t.code_len] = '\0';
    /* The master as the server would make it from a session (as bench query). */
    b->master = (struct kr_caller){.tenant = sr->tenant, .role = KR_ROLE_MASTER, .perms = ~0ull};
    memcpy(b->master.account, sr->master, 16);

    struct kr_payload *a = kr_payload_new();
    struct kr_wbuf out;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    if (!a)
        return KR_ENOMEM;
    kr_set_str(a, KR_FLD_TAG_NAME, BAPI_WRITE_TAG);
    if (!(err = exec_must(b, KR_OP_TAGS_CREATE, a, &out)))
        err = result_id(&out, KR_FLD_TAG, b->wtag);
    if (!err)
        err = list_contacts(b, a, &out);
    if (!err) {
        bench_password(reader_pw);
        kr_payload_reset(a, -1);
        kr_set_str(a, KR_FLD_EMAIL, BAPI_READER_EMAIL);
        kr_set_str(a, KR_FLD_PASSWORD, reader_pw);
        kr_set_u64(a, KR_FLD_ROLE, KR_ROLE_USER);
        kr_set_u64(a, KR_FLD_PERMISSIONS,
                   1u << KR_PERMISSION_CONTACTS_READ | 1u << KR_PERMISSION_CONTACTS_WRITE);
        err = exec_must(b, KR_OP_USERS_CREATE, a, &out);
    }
    kr_payload_free(a);
    kr_wbuf_free(&out);
    return err;
}

/* Logs the reader in over the wire (client 0's connection): its token. */
static kr_err login_reader(struct bapi *b, const char *pw)
{
    uint8_t req[BAPI_REQ_MAX];
    struct kr_mp_fixbuf fb = {.p = req, .cap = sizeof req};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    pack_head(&pk, KR_OP_AUTH_LOGIN, 1, NULL, 3);
    pack_kv(&pk, KR_FLD_TENANT_CODE, b->tenant_code);
    pack_kv(&pk, KR_FLD_EMAIL, BAPI_READER_EMAIL);
    pack_kv(&pk, KR_FLD_PASSWORD, pw);
    if (fb.overflow)
        return KR_ETOOLARGE;
    nng_msg *rep = NULL;
    int rv = nng_send(b->c[0].api, req, fb.len, 0);
    if (!rv)
        rv = nng_recvmsg(b->c[0].api, &rep, 0);
    sodium_memzero(req, sizeof req);
    if (rv)
        return kr_err_from_nng(rv);
    struct kr_mp_reader r;
    size_t n = 0;
    kr_err err = KR_EAUTH;
    if (reply_ok(nng_msg_body(rep), nng_msg_len(rep), &r))
        err = mp_bytes(r, KR_FLD_TOKEN, b->token, sizeof b->token, &n);
    nng_msg_free(rep);
    return err ? err : n == 32 ? KR_OK : KR_ECORRUPT;
}

static kr_err client_dial(nng_socket *s, bool *open, const char *url)
{
    int rv = nng_req0_open(s);
    if (rv)
        return kr_err_from_nng(rv);
    *open = true;
    if ((rv = nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, KR_API_REPLY_MAX)) ||
        (rv = nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, BAPI_TIMEOUT_MS)) ||
        (rv = nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, BAPI_TIMEOUT_MS)) ||
        (rv = nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) ||
        (rv = nng_dial(*s, url, NULL, 0)))
        return kr_err_from_nng(rv);
    return KR_OK;
}

/* Workers of the API server when --workers is not given: its own default. */
static unsigned workers_default(void)
{
    return KR_API_WORKERS_DEFAULT;
}

static void random_url(char *url, size_t cap)
{
    snprintf(url, cap, "tcp://127.0.0.1:%u", 20000u + randombytes_uniform(40000));
}

static kr_err start_servers(struct bapi *b, unsigned workers, struct api_server **srv,
                            struct echo_server *echo, char *api_url, char *echo_url, size_t cap)
{
    kr_err err = KR_EBUSY;
    const char *why = "";
    for (unsigned t = 0; t < BAPI_PORT_TRIES && err == KR_EBUSY; t++) {
        random_url(api_url, cap);
        const char *listen[] = {api_url};
        /* Every client comes from loopback: no per-address bounds. */
        struct api_server_options so = {.listen = listen,
                                        .nlisten = 1,
                                        .workers = workers,
                                        .conns_per_peer = KR_API_CONNS_MAX,
                                        .no_mailer = true,
                                        .gateway_url = "http://127.0.0.1:0"};
        err = api_server_start(&so, b->d, srv, &why);
    }
    if (!err) {
        const char *gw = api_server_gateway_url(*srv, false), *port = strrchr(gw, ':');
        b->gateway.sin_family = AF_INET;
        b->gateway.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        b->gateway.sin_port = htons((uint16_t)strtoul(port + 1, NULL, 10));
    }
    if (err) {
        fprintf(stderr, "kiroku: bench api: server: %s: %s\n", why, kr_strerror(err));
        return err;
    }
    err = KR_EBUSY;
    for (unsigned t = 0; t < BAPI_PORT_TRIES && err == KR_EBUSY; t++) {
        random_url(echo_url, cap);
        if ((err = echo_start(echo, echo_url, KR_API_INFLIGHT_DEFAULT)) == KR_EBUSY)
            echo_stop(echo);
    }
    return err;
}

/* ---- The command ---- */

static const char api_usage[] =
    "usage: kiroku bench api [--data DIR] [--seconds N] [--clients N] [--workers N]\n"
    "                        [--contacts N] [--phase read|write|login|all] [--json]\n"
    "\n"
    "Measures the API server over tcp loopback in one process: a scratch domain\n"
    "seeded with one tenant of N contacts (default 320), the server on a random\n"
    "port with --workers deciding threads (default the server's, 4), a bare\n"
    "nng echo server shaped like it (aio callbacks on as many contexts), and\n"
    "--clients client threads (default 32),\n"
    "each with its own connection and one request in flight. Phases of --seconds\n"
    "each (default 3): echo (contacts.get bytes, echoed), read (the same requests\n"
    "to the server), gateway (the same op as JSON over HTTP to the server's\n"
    "gateway, keep-alive; printed as a ratio to read), write (contacts.tag/untag: one durable "
    "event each, printed\n"
    "beside `bench append --producers CLIENTS --window 1` run on a scratch\n"
    "journal just before and just after, their mean), login\n"
    "(auth.login at the production Argon2id cost, with the process's peak RSS).\n"
    "Prints requests/s and p50/p99 latency per phase; --phase runs one (read\n"
    "includes echo and gateway; a phase not run prints zeros). --data DIR seeds the tenant\n"
    "into DIR's journal (made if missing) and keeps it; without, a scratch one is\n"
    "used and removed.\n";

static void print_phase_json(const char *name, const struct phase_result *r)
{
    printf("\"%s_req_per_s\":%.0f,\"%s_p50_us\":%u,\"%s_p99_us\":%u,\"%s_max_us\":%u,"
           "\"%s_requests\":%" PRIu64 ",",
           name, r->per_s, name, r->p50_us, name, r->p99_us, name, r->max_us, name, r->ok);
}

static void print_phase_text(const char *name, const struct phase_result *r)
{
    printf("%-7s %9.0f req/s  p50 %7u us  p99 %7u us  max %7u us  (%" PRIu64 " in %.2f s)\n", name,
           r->per_s, r->p50_us, r->p99_us, r->max_us, r->ok, r->seconds);
}

/* What `bench api` measured, for the report. */
struct bapi_report {
    struct phase_result echo, read, gateway, write, login;
    struct mem_sample mem;
    uint64_t write_events, write_batches, write_conflicts, login_conflicts;
    /* the journal alone: bench append --producers clients --window 1, just
     * before and just after the write phase, and their mean */
    double append_before, append_after, append_per_s;
    unsigned pwhash_peak;
    double commit_avg_us;
    size_t pw_mem; /* the domain's Argon2id memory cost */
};

/* Each client's share of the contacts (every nclients-th), and its
 * connections to the server and to the echo server. */
static kr_err connect_clients(struct bapi *b, const char *api_url, const char *echo_url)
{
    if (!(b->c = calloc(b->nclients, sizeof *b->c)))
        return KR_ENOMEM;
    kr_err err = KR_OK;
    for (unsigned i = 0; i < b->nclients && !err; i++) {
        struct bclient *cl = &b->c[i];
        cl->b = b;
        cl->i = i;
        cl->nown = (b->ncontacts - i + b->nclients - 1) / b->nclients;
        cl->own = calloc(cl->nown, sizeof *cl->own);
        cl->tagged = calloc(cl->nown, sizeof *cl->tagged);
        if (!cl->own || !cl->tagged)
            return KR_ENOMEM;
        for (size_t x = 0; x < cl->nown; x++)
            cl->own[x] = i + x * b->nclients;
        cl->http = -1;
        if (!(err = client_dial(&cl->api, &cl->api_open, api_url)))
            err = client_dial(&cl->echo, &cl->echo_open, echo_url);
    }
    return err;
}

/* The phases `only` asks for (0 read with echo, 1 write, 2 login, 3 all),
 * with the journal's counts around the write and login phases; *step names
 * the phase an error stopped. */
static kr_err run_phases(struct bapi *b, unsigned only, struct bapi_report *r, const char **step)
{
    struct jrn_stats st0, st1;
    kr_err err;
    *step = "echo";
    if ((only == 3 || only == 0) && (err = run_phase(b, &ph_echo, &r->echo, NULL)))
        return err;
    *step = "read";
    if ((only == 3 || only == 0) && (err = run_phase(b, &ph_read, &r->read, NULL)))
        return err;
    *step = "gateway";
    if ((only == 3 || only == 0) && (err = run_phase(b, &ph_gateway, &r->gateway, NULL)))
        return err;
    /* The journal's own rate just before and just after the write phase:
     * their mean is the ceiling (the machine's load moves it between runs). */
    uint64_t append_events = (uint64_t)BAPI_APPEND_EVENTS_PER_S * b->seconds;
    *step = "the journal's own appends";
    if ((only == 3 || only == 1) &&
        (err = bench_append_rate(append_events, b->nclients, 1, &r->append_before)))
        return err;
    *step = "write";
    uint64_t size0 = jrn_size(b->d->j);
    jrn_get_stats(b->d->j, &st0);
    if ((only == 3 || only == 1) && (err = run_phase(b, &ph_write, &r->write, NULL)))
        return err;
    jrn_get_stats(b->d->j, &st1);
    r->write_events = jrn_size(b->d->j) - size0;
    r->write_batches = st1.batches - st0.batches;
    r->write_conflicts = st1.conflicts - st0.conflicts;
    if (r->write_batches)
        r->commit_avg_us = (double)(st1.commit_ns - st0.commit_ns) / 1e3 / (double)r->write_batches;
    *step = "the journal's own appends";
    if ((only == 3 || only == 1) &&
        (err = bench_append_rate(append_events, b->nclients, 1, &r->append_after)))
        return err;
    r->append_per_s = (r->append_before + r->append_after) / 2;
    *step = "login";
    jrn_get_stats(b->d->j, &st0);
    if ((only == 3 || only == 2) && (err = run_phase(b, &ph_login, &r->login, &r->mem)))
        return err;
    jrn_get_stats(b->d->j, &st1);
    r->login_conflicts = st1.conflicts - st0.conflicts;
    r->pwhash_peak = b->d->pwhash_peak;
    *step = NULL;
    return KR_OK;
}

/* Prints the report; returns how many requests failed (each phase's first
 * failure named on stderr). */
static uint64_t print_report(const struct bapi *b, const struct bapi_report *r, uint64_t workers,
                             uint64_t seconds, bool json)
{
    uint64_t failures =
        r->echo.failed + r->read.failed + r->gateway.failed + r->write.failed + r->login.failed;
    const struct phase_result *rs[] = {&r->echo, &r->read, &r->gateway, &r->write, &r->login};
    const char *names[] = {"echo", "read", "gateway", "write", "login"};
    for (size_t i = 0; i < 5; i++)
        if (rs[i]->failed)
            fprintf(stderr, "kiroku: bench api: %s: %" PRIu64 " requests failed, first: %s\n",
                    names[i], rs[i]->failed, rs[i]->why ? rs[i]->why : "?");
    double ratio = r->echo.per_s > 0 ? r->read.per_s / r->echo.per_s : 0;
    double gratio = r->read.per_s > 0 ? r->gateway.per_s / r->read.per_s : 0;
    double wratio = r->append_per_s > 0 ? r->write.per_s / r->append_per_s : 0;
    const struct mem_sample *mem = &r->mem;
    size_t pw_mem = r->pw_mem;
    /* The bound the Argon2id cap states: the anonymous memory before the
     * logins plus that many hashes' blocks. */
    long limit = mem->anon_base < 0
                     ? -1
                     : mem->anon_base + (long)((size_t)KR_PWHASH_CONCURRENT_MAX * pw_mem / 1024);
    if (json) {
        printf("{\"clients\":%u,\"workers\":%" PRIu64 ",\"seconds\":%" PRIu64 ",\"contacts\":%zu,",
               b->nclients, workers, seconds, b->ncontacts);
        for (size_t i = 0; i < 5; i++)
            print_phase_json(names[i], rs[i]);
        printf("\"gateway_read_ratio\":%.3f,", gratio);
        printf("\"append_per_s\":%.0f,\"append_before_per_s\":%.0f,\"append_after_per_s\":%.0f,"
               "\"append_producers\":%u,\"append_window\":1,\"write_append_ratio\":%.3f,",
               r->append_per_s, r->append_before, r->append_after, b->nclients, wratio);
        printf("\"read_echo_ratio\":%.3f,\"write_events\":%" PRIu64 ",\"write_commits\":%" PRIu64
               ",\"write_commit_avg_us\":%.0f,\"write_conflicts\":%" PRIu64
               ",\"login_per_s\":%.1f,\"login_conflicts\":%" PRIu64
               ",\"login_unavailable\":%" PRIu64 ",\"login_rss_base_kb\":%ld,"
               "\"login_rss_peak_kb\":%ld,\"login_anon_base_kb\":%ld,\"login_anon_peak_kb\":%ld,"
               "\"login_anon_limit_kb\":%ld,\"pwhash_peak\":%u,\"pwhash_concurrent_max\":%u,"
               "\"pwhash_mem_kb\":%zu,\"failures\":%" PRIu64 "}\n",
               ratio, r->write_events, r->write_batches, r->commit_avg_us, r->write_conflicts,
               r->login.per_s, r->login_conflicts, r->login.busy, mem->rss_base, mem->rss_peak,
               mem->anon_base, mem->anon_peak, limit, r->pwhash_peak, KR_PWHASH_CONCURRENT_MAX,
               pw_mem / 1024, failures);
        return failures;
    }
    for (size_t i = 0; i < 5; i++)
        print_phase_text(names[i], rs[i]);
    printf("JSON over HTTP (the gateway, keep-alive) at %.0f%% of the nng read rate\n",
           100 * gratio);
    printf("writes at %.0f%% of the journal's own rate with %u producers, 1 in flight each "
           "(bench append: %.0f events/s, the mean of %.0f before and %.0f after)\n",
           100 * wratio, b->nclients, r->append_per_s, r->append_before, r->append_after);
    printf("reads at %.0f%% of the echo server's rate\n"
           "writes: %" PRIu64 " events appended in %" PRIu64
           " commits (%.1f per commit, %.0f us each)\n"
           "logins: %.1f/s, at most %u Argon2id runs at once (cap %u, %zu kB each)\n"
           "  anonymous memory %ld kB before, peak %ld kB; limit %ld kB (before + cap x %zu kB)\n"
           "  resident memory %ld kB before, peak %ld kB (with the LMDB pages read)\n",
           100 * ratio, r->write_events, r->write_batches,
           r->write_batches ? (double)r->write_events / (double)r->write_batches : 0.0,
           r->commit_avg_us, r->login.per_s, r->pwhash_peak, KR_PWHASH_CONCURRENT_MAX,
           pw_mem / 1024, mem->anon_base, mem->anon_peak, limit, pw_mem / 1024, mem->rss_base,
           mem->rss_peak);
    return failures;
}

/* Closes and frees what bench_api set up, in the order it must go:
 * clients, servers (srv may be NULL), the domain. */
static void bapi_fini(struct bapi *b, struct api_server *srv, struct echo_server *echo)
{
    for (unsigned i = 0; b->c && i < b->nclients; i++) {
        if (b->c[i].api_open)
            nng_close(b->c[i].api);
        if (b->c[i].echo_open)
            nng_close(b->c[i].echo);
        if (b->c[i].http >= 0)
            close(b->c[i].http);
        free(b->c[i].lat);
        free(b->c[i].own);
        free(b->c[i].tagged);
        sodium_memzero(b->c[i].pw, sizeof b->c[i].pw);
    }
    free(b->c);
    api_server_stop(srv);
    echo_stop(echo);
    dom_close(b->d);
    free(b->contacts);
    sodium_memzero(b->token, sizeof b->token);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
}

/* `bench api`'s options. */
struct bapi_options {
    struct cli_common co;
    uint64_t seconds, clients, workers, contacts;
    unsigned only; /* --phase: 0 read (with echo), 1 write, 2 login, 3 all */
};

/* Parses `bench api`'s options into *o: CLI_CONTINUE, or the exit status. */
static int bapi_parse(int argc, char **argv, struct bapi_options *o)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"seconds", required_argument, 0, 's'},
                                         {"clients", required_argument, 0, 'c'},
                                         {"workers", required_argument, 0, 'w'},
                                         {"contacts", required_argument, 0, 'n'},
                                         {"phase", required_argument, 0, 'p'},
                                         {0, 0, 0, 0}};
    *o = (struct bapi_options){.seconds = BAPI_SECONDS_DEFAULT,
                               .clients = BAPI_CLIENTS_DEFAULT,
                               .contacts = BAPI_CONTACTS_DEFAULT,
                               .only = 3};
    static const char *const phase_names[] = {"read", "write", "login"};
    int rc, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 's':
            ok = cli_parse_u64(optarg, 1, BAPI_SECONDS_MAX, &o->seconds);
            break;
        case 'c':
            ok = cli_parse_u64(optarg, 1, BAPI_CLIENTS_MAX, &o->clients);
            break;
        case 'w':
            ok = cli_parse_u64(optarg, 1, KR_API_WORKERS_MAX, &o->workers);
            break;
        case 'n':
            ok = cli_parse_u64(optarg, 1, BAPI_CONTACTS_MAX, &o->contacts);
            break;
        case 'p':
            for (o->only = 0; o->only < 3 && strcmp(optarg, phase_names[o->only]) != 0; o->only++)
                ;
            ok = o->only < 3 || strcmp(optarg, "all") == 0;
            break;
        default:
            if ((rc = cli_common_option(c, api_usage, &o->co)) != CLI_CONTINUE)
                return rc;
        }
        if (!ok)
            return cli_usage(api_usage);
    }
    if (optind != argc)
        return cli_usage(api_usage);
    if (!o->workers)
        o->workers = workers_default();
    return CLI_CONTINUE;
}

int bench_api(int argc, char **argv)
{
    struct bapi_options opt;
    int rc = bapi_parse(argc, argv, &opt);
    if (rc != CLI_CONTINUE)
        return rc;
    const struct cli_common co = opt.co;
    uint64_t seconds = opt.seconds, clients = opt.clients, workers = opt.workers,
             contacts = opt.contacts;
    unsigned only = opt.only;
    signal(SIGPIPE, SIG_IGN);

    char dir[KR_PATH_MAX];
    kr_err err;
    if (co.data) {
        snprintf(dir, sizeof dir, "%s", co.data);
    } else {
        if ((err = cli_scratch_dir(dir, sizeof dir)))
            return cli_fail("bench api: scratch directory", err);
    }
    struct bapi b = {.nclients = (unsigned)clients, .seconds = (unsigned)seconds};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    struct api_server *srv = NULL;
    struct echo_server echo = {0};
    char api_url[64], echo_url[64], reader_pw[32] = "";
    struct bapi_report r = {.mem = {-1, -1, -1, -1}};
    struct kr_domain_options o = {.dir = dir};
    const char *step = "seeding";

    /* The seed makes its passwords cheap; the domain opened after it hashes
     * new ones (the reader's, the login accounts') at the production cost. */
    struct cli_seed_result sr = {0};
    struct cli_seed_options so = {.dir = dir, .tenants = 1, .contacts = contacts, .seed = 1};
    if (!co.json)
        fprintf(stderr, "seeding %s: one tenant of %" PRIu64 " contacts\n", dir, contacts);
    if ((err = cli_seed(&so, &sr)))
        goto out;
    step = "opening the domain";
    if ((err = dom_open(&o, &b.d)))
        goto out;
    r.pw_mem = b.d->pwhash_mem;
    step = "setting up the tenant";
    if ((err = setup_tenant(&b, &sr, reader_pw)))
        goto out;
    step = "too few contacts for the clients (--contacts)";
    if (b.ncontacts < b.nclients) {
        err = KR_EINVAL;
        goto out;
    }
    step = "starting the servers";
    if ((err =
             start_servers(&b, (unsigned)workers, &srv, &echo, api_url, echo_url, sizeof api_url)))
        goto out;
    step = "connecting the clients";
    if ((err = connect_clients(&b, api_url, echo_url)))
        goto out;
    step = "logging in";
    if ((err = login_reader(&b, reader_pw)))
        goto out;
    if (!co.json)
        fprintf(stderr,
                "%u clients, %" PRIu64 " workers, %zu contacts, %" PRIu64 " s per phase; "
                "server %s, echo %s\n",
                b.nclients, workers, b.ncontacts, seconds, api_url, echo_url);
    err = run_phases(&b, only, &r, &step);

out:
    bapi_fini(&b, srv, &echo);
    sodium_memzero(reader_pw, sizeof reader_pw);
    if (!co.data)
        cli_rmtree(dir);
    if (err) {
        fprintf(stderr, "kiroku: bench api: %s: %s\n", step, kr_strerror(err));
        return CLI_FAIL;
    }
    return print_report(&b, &r, workers, seconds, co.json) ? CLI_FAIL : CLI_OK;
}
