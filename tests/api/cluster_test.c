/*
 * cluster_test.c: tests for api/cluster.c (publishing committed ranges to
 * JetStream) against a real 3-node NATS cluster started by the test
 * (tests/nats_cluster.h), with the journal opened with the publisher's hook.
 *
 * What the stream holds is read back here with libnats (js_GetMsg of every
 * stream sequence) and checked against the journal's stored bytes read
 * through LMDB: chunks continuous in journal seqs and in stream sequences,
 * records byte for byte, the note only on a range's last chunk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api_client.h"
#include "cluster.h"
#include "journal.h"
#include "journal_internal.h"
#include "kr_error.h"
#include "kr_limits.h"
#include "nats_cluster.h"
#include "replica.h"
#include "test_util.h"

#define DIR_CAP 1024
#define ACTOR   "account/test"
#define TYPE    "test.event"
#define SHARD   "t-1"
#define STREAM  "KIROKU_T_1"
#define SUBJECT "kiroku.t-1.journal"

struct fx {
    char root[DIR_CAP];
    char dir[DIR_CAP];
    struct kr_nats_cluster *nc;
    struct cluster *cl;
    struct journal *j;
    natsConnection *conn; /* the test's own, to read and write the stream */
    jsCtx *js;
};

static int fx_setup(void **state)
{
    if (sodium_init() < 0)
        return -1;
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    kr_test_tmpdir(f->root, sizeof f->root);
    snprintf(f->dir, sizeof f->dir, "%.1000s/p", f->root);
    f->nc = kr_nats_start(3);
    assert_non_null(f->nc);
    assert_int_equal(natsConnection_ConnectTo(&f->conn, kr_nats_urls(f->nc)), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&f->js, f->conn, NULL), NATS_OK);
    struct jrn_options o = {.dir = f->dir};
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    *state = f;
    return 0;
}

static void fx_close(struct fx *f)
{
    cluster_stop(f->cl, 0);
    jrn_close(f->j);
    cluster_free(f->cl);
    f->j = NULL;
    f->cl = NULL;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    fx_close(f);
    jsCtx_Destroy(f->js);
    natsConnection_Destroy(f->conn);
    kr_nats_free(f->nc);
    kr_test_rmrf(f->root);
    free(f);
    return 0;
}

/* Opens dir's journal with a publisher in `mode` and starts it: the result
 * of cluster_start. */
static kr_err fx_open_dir(struct fx *f, const char *dir, enum cluster_mode mode)
{
    const char *why = "";
    struct cluster_options co = {
        .urls = kr_nats_urls(f->nc), .mode = mode, .shard = SHARD, .quiet = true};
    assert_int_equal(cluster_new(&co, &why, &f->cl), KR_OK);
    struct jrn_options o = {.dir = dir, .durable = cluster_hook(f->cl)};
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    char buf[512];
    kr_err err = cluster_start(f->cl, f->j, buf, sizeof buf);
    if (err)
        fprintf(stderr, "cluster_start: %s\n", buf);
    return err;
}

static struct jrn_event ev(const char *stream, uint64_t expected, const void *p, size_t len)
{
    struct jrn_event e;
    memset(&e, 0, sizeof e);
    e.tenant = 7;
    e.stream = stream;
    e.stream_len = strlen(stream);
    e.type = TYPE;
    e.type_len = strlen(TYPE);
    e.actor = ACTOR;
    e.actor_len = strlen(ACTOR);
    e.expected_version = expected;
    e.payload = p;
    e.payload_len = len;
    return e;
}

/* Appends n events (k per append) to `stream`; every append is expected to
 * give `want`. In quorum mode each acknowledged one must already be in the
 * stream: published >= its seq when jrn_append returns. */
static void append_n(struct fx *f, const char *stream, size_t n, size_t k, kr_err want)
{
    static uint8_t payloads[16][300];
    struct jrn_event e[16];
    uint64_t version;
    assert_int_equal(jrn_stream_version(f->j, 7, stream, strlen(stream), &version), KR_OK);
    for (size_t done = 0; done < n;) {
        size_t m = n - done < k ? n - done : k;
        for (size_t i = 0; i < m; i++) {
            randombytes_buf(payloads[i], sizeof payloads[i]);
            e[i] = ev(stream, version + i, payloads[i], 100 + (done + i) % 200);
        }
        assert_int_equal(jrn_append(f->j, e, m), want);
        if (want != KR_OK)
            return;
        struct cluster_stats cs;
        cluster_stats(f->cl, &cs);
        if (cs.mode == CLUSTER_QUORUM)
            assert_true(cs.published >= e[m - 1].seq);
        version += m;
        done += m;
    }
}

static bool caught_up(void *arg)
{
    struct fx *f = arg;
    struct cluster_stats cs;
    cluster_stats(f->cl, &cs);
    return cs.published == jrn_size(f->j);
}

/* The stored value of record seq (a copy), through LMDB. */
static uint8_t *stored(struct journal *j, uint64_t seq, size_t *len)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(j), NULL, MDB_RDONLY, &txn), 0);
    uint8_t kb[8];
    kr_test_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    assert_int_equal(mdb_get(txn, j->db_events, &k, &v), 0);
    uint8_t *out = malloc(v.mv_size);
    assert_non_null(out);
    memcpy(out, v.mv_data, v.mv_size);
    *len = v.mv_size;
    mdb_txn_abort(txn);
    return out;
}

static uint64_t header(natsMsg *m, const char *key)
{
    const char *v = NULL;
    assert_int_equal(natsMsgHeader_Get(m, key, &v), NATS_OK);
    return strtoull(v, NULL, 10);
}

/* Reads the whole stream and checks it against the journal j: stream
 * sequences 1..last, chunks continuous from journal seq 1 (to jrn_size
 * when `whole`, else a prefix of the journal), every record equal to the
 * stored one, message ids and headers as documented, a note on the last
 * message. Returns the number of messages; *covered (may be NULL) the last
 * journal seq the stream holds. */
static uint64_t check_stream_of(struct fx *f, struct journal *j, bool whole, uint64_t *covered)
{
    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, f->js, STREAM, NULL, NULL), NATS_OK);
    uint64_t last_seq = si->State.LastSeq;
    assert_int_equal(si->State.Msgs, last_seq);
    jsStreamInfo_Destroy(si);
    static const uint8_t *rec[KR_REPL_CHUNK_RECORDS];
    static size_t rec_len[KR_REPL_CHUNK_RECORDS];
    struct jrn_info info;
    jrn_get_info(j, &info);
    uint64_t next = 1;
    const char *note = NULL;
    for (uint64_t s = 1; s <= last_seq; s++) {
        natsMsg *m = NULL;
        assert_int_equal(js_GetMsg(&m, f->js, STREAM, s, NULL, NULL), NATS_OK);
        struct jrn_repl_chunk ch = {.rec = rec, .rec_len = rec_len};
        assert_int_equal(jrn_repl_decode((const uint8_t *)natsMsg_GetData(m),
                                         (size_t)natsMsg_GetDataLength(m), &ch,
                                         KR_REPL_CHUNK_RECORDS),
                         KR_OK);
        assert_memory_equal(ch.journal_id, info.journal_id, 16);
        assert_int_equal(ch.first, next);
        assert_int_equal(header(m, "Kiroku-First"), next);
        assert_int_equal(header(m, "Kiroku-Last"), next + ch.n - 1);
        assert_int_equal(header(m, "Kiroku-Epoch"), ch.epoch);
        char id[128], hex[33];
        sodium_bin2hex(hex, sizeof hex, info.journal_id, 16);
        snprintf(id, sizeof id, "%s.%" PRIu64 ".%" PRIu64 ".%" PRIu64, hex, ch.epoch, next,
                 next + ch.n - 1);
        const char *got = NULL;
        assert_int_equal(natsMsgHeader_Get(m, "Nats-Msg-Id", &got), NATS_OK);
        assert_string_equal(got, id);
        for (size_t i = 0; i < ch.n; i++) {
            size_t len;
            uint8_t *want = stored(j, next + i, &len);
            assert_int_equal(rec_len[i], len);
            assert_memory_equal(rec[i], want, len);
            free(want);
        }
        next += ch.n;
        note = ch.note;
        natsMsg_Destroy(m);
    }
    if (whole)
        assert_int_equal(next - 1, jrn_size(j));
    else
        assert_true(next - 1 <= jrn_size(j));
    if (covered)
        *covered = next - 1;
    if (last_seq)
        assert_non_null(note); /* the newest range is complete */
    return last_seq;
}

static uint64_t check_stream(struct fx *f, struct journal *j)
{
    return check_stream_of(f, j, true, NULL);
}

/* Quorum: every acknowledged append is in the stream when acknowledged,
 * and the stream is the journal, chunk by chunk. */
static void test_quorum_publishes_the_journal(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_QUORUM), KR_OK);
    append_n(f, "s/a", 300, 7, KR_OK);
    append_n(f, "s/b", 40, 1, KR_OK);
    assert_true(kr_test_wait_for(caught_up, f, KR_TEST_WAIT_MS, "the publisher"));
    assert_true(check_stream(f, f->j) >= 2);
    struct cluster_stats cs;
    cluster_stats(f->cl, &cs);
    assert_false(cs.fenced);
    assert_int_equal(cs.lag_records, 0);
}

/* A restart publishes nothing twice, and publishes what was committed while
 * no publisher ran (the unpublished tail). */
static void test_restart_publishes_the_tail_once(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_ASYNC), KR_OK);
    append_n(f, "s/a", 100, 5, KR_OK);
    assert_true(kr_test_wait_for(caught_up, f, KR_TEST_WAIT_MS, "the publisher"));
    uint64_t before = check_stream(f, f->j);
    fx_close(f);
    /* commits with no publisher */
    struct jrn_options o = {.dir = f->dir};
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    static uint8_t p[100];
    for (uint64_t v = 0; v < 50; v++) {
        struct jrn_event e = ev("s/quiet", v, p, sizeof p);
        assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    }
    jrn_close(f->j);
    f->j = NULL;
    /* a restart: the tail goes out after what was there */
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_QUORUM), KR_OK);
    assert_true(kr_test_wait_for(caught_up, f, KR_TEST_WAIT_MS, "the tail"));
    uint64_t after = check_stream(f, f->j);
    assert_true(after > before);
    /* a restart with nothing new publishes nothing */
    fx_close(f);
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_QUORUM), KR_OK);
    assert_true(kr_test_wait_for(caught_up, f, KR_TEST_WAIT_MS, "the publisher"));
    assert_int_equal(check_stream(f, f->j), after);
    struct cluster_stats cs;
    cluster_stats(f->cl, &cs);
    assert_int_equal(cs.messages, 0);
}

/* Another writer on the stream fences the publisher: the held quorum
 * append fails with KR_ENOTPRIMARY, so does every later one. */
static void test_foreign_message_fences(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_QUORUM), KR_OK);
    append_n(f, "s/a", 10, 2, KR_OK);
    assert_int_equal(kr_nats_publish(f->js, SUBJECT, "intruder", 8), NATS_OK);
    append_n(f, "s/a", 1, 1, KR_ENOTPRIMARY);
    struct cluster_stats cs;
    cluster_stats(f->cl, &cs);
    assert_true(cs.fenced);
    uint8_t p[8] = {0};
    struct jrn_event e = ev("s/other", 0, p, sizeof p);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_ENOTPRIMARY);
}

/* One of three NATS servers killed: quorum writes are still acknowledged
 * (the stream's R3 has a majority), and the stream is still the journal. */
static void test_node_down_quorum_goes_on(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_QUORUM), KR_OK);
    append_n(f, "s/a", 20, 4, KR_OK);
    kr_nats_stop_node(f->nc, 0, SIGKILL);
    append_n(f, "s/a", 60, 3, KR_OK);
    assert_true(kr_test_wait_for(caught_up, f, KR_TEST_WAIT_MS, "the publisher"));
    check_stream(f, f->j);
    assert_true(kr_nats_start_node(f->nc, 0));
    append_n(f, "s/b", 10, 1, KR_OK);
}

/* NATS entirely down for a while: async appends go on, the publisher
 * retries, and once the servers are back the stream is the journal, in
 * order, nothing skipped or doubled. */
static void test_all_nodes_down_then_caught_up(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_ASYNC), KR_OK);
    append_n(f, "s/a", 30, 3, KR_OK);
    assert_true(kr_test_wait_for(caught_up, f, KR_TEST_WAIT_MS, "the publisher"));
    for (size_t i = 0; i < 3; i++)
        kr_nats_stop_node(f->nc, i, SIGTERM);
    append_n(f, "s/a", 200, 5, KR_OK);
    struct cluster_stats cs;
    cluster_stats(f->cl, &cs);
    assert_true(cs.lag_records > 0);
    for (size_t i = 0; i < 3; i++)
        assert_true(kr_nats_start_node(f->nc, i));
    assert_true(kr_test_wait_for(caught_up, f, KR_TEST_WAIT_MS, "the publisher after NATS"));
    /* the test's own connection reconnects too */
    check_stream(f, f->j);
    cluster_stats(f->cl, &cs);
    assert_false(cs.fenced);
    assert_true(cs.errors > 0);
}

/* --publish-from: an empty stream starts at that record (followers are
 * restored from a backup of the records before it). */
static void test_publish_from(void **state)
{
    struct fx *f = *state;
    struct jrn_options o = {.dir = f->dir};
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    static uint8_t p[50];
    for (uint64_t v = 0; v < 20; v++) {
        struct jrn_event e = ev("s/old", v, p, sizeof p);
        assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    }
    jrn_close(f->j);
    f->j = NULL;
    const char *why = "";
    struct cluster_options co = {.urls = kr_nats_urls(f->nc),
                                 .mode = CLUSTER_QUORUM,
                                 .shard = SHARD,
                                 .publish_from = 23, /* past the journal (21 records) */
                                 .quiet = true};
    assert_int_equal(cluster_new(&co, &why, &f->cl), KR_OK);
    o.durable = cluster_hook(f->cl);
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    char buf[512];
    assert_int_equal(cluster_start(f->cl, f->j, buf, sizeof buf), KR_EINVAL);
    fx_close(f);
    co.publish_from = 15;
    assert_int_equal(cluster_new(&co, &why, &f->cl), KR_OK);
    o.durable = cluster_hook(f->cl);
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    assert_int_equal(cluster_start(f->cl, f->j, buf, sizeof buf), KR_OK);
    append_n(f, "s/new", 5, 1, KR_OK);
    natsMsg *m = NULL;
    assert_int_equal(js_GetMsg(&m, f->js, STREAM, 1, NULL, NULL), NATS_OK);
    assert_int_equal(header(m, "Kiroku-First"), 15);
    natsMsg_Destroy(m);
    assert_true(kr_test_wait_for(caught_up, f, KR_TEST_WAIT_MS, "the publisher"));
}

/* The very first publish into a stream is fenced too: another writer's
 * message there first (here the journal has nothing to publish at start:
 * publish_from is past it) makes the publisher stop. */
static void test_first_publish_fenced(void **state)
{
    struct fx *f = *state;
    const char *why = "";
    struct cluster_options co = {.urls = kr_nats_urls(f->nc),
                                 .mode = CLUSTER_QUORUM,
                                 .shard = SHARD,
                                 .publish_from = 2, /* the journal holds 1 record */
                                 .quiet = true};
    assert_int_equal(cluster_new(&co, &why, &f->cl), KR_OK);
    struct jrn_options o = {.dir = f->dir, .durable = cluster_hook(f->cl)};
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    char buf[512];
    assert_int_equal(cluster_start(f->cl, f->j, buf, sizeof buf), KR_OK);
    assert_int_equal(kr_nats_publish(f->js, SUBJECT, "first!", 6), NATS_OK);
    append_n(f, "s/a", 1, 1, KR_ENOTPRIMARY);
    struct cluster_stats cs;
    cluster_stats(f->cl, &cs);
    assert_true(cs.fenced);
    assert_int_equal(cs.messages, 0);
}

/* A stream whose messages all went (aged out; purged here) goes on from
 * the journal's next record, at the next stream sequence. */
static void test_emptied_stream(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_QUORUM), KR_OK);
    append_n(f, "s/a", 12, 3, KR_OK);
    uint64_t size = jrn_size(f->j), msgs = check_stream(f, f->j);
    fx_close(f);
    assert_int_equal(js_PurgeStream(f->js, STREAM, NULL, NULL), NATS_OK);
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_QUORUM), KR_OK);
    struct cluster_stats cs;
    cluster_stats(f->cl, &cs);
    assert_int_equal(cs.published, size);
    assert_int_equal(cs.stream_seq, msgs);
    append_n(f, "s/a", 1, 1, KR_OK);
    natsMsg *m = NULL;
    assert_int_equal(js_GetMsg(&m, f->js, STREAM, msgs + 1, NULL, NULL), NATS_OK);
    assert_int_equal(header(m, "Kiroku-First"), size + 1);
    natsMsg_Destroy(m);
}

/* At start: a stream of another journal is refused; a stream ahead of
 * this journal (a copy left behind) is not the primary's. */
static void test_start_checks(void **state)
{
    struct fx *f = *state;
    char behind[DIR_CAP + 8], other[DIR_CAP + 8];
    snprintf(behind, sizeof behind, "%s/behind", f->root);
    snprintf(other, sizeof other, "%s/other", f->root);
    kr_test_copytree(f->dir, behind);
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_QUORUM), KR_OK);
    append_n(f, "s/a", 20, 4, KR_OK);
    fx_close(f);

    assert_int_equal(fx_open_dir(f, behind, CLUSTER_QUORUM), KR_ENOTPRIMARY);
    struct cluster_stats cs;
    cluster_stats(f->cl, &cs);
    assert_true(cs.behind);
    fx_close(f);

    struct jrn_options o = {.dir = other};
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    assert_int_equal(fx_open_dir(f, other, CLUSTER_QUORUM), KR_EEXIST);
    fx_close(f);

    /* the journal itself starts again where it was */
    assert_int_equal(fx_open_dir(f, f->dir, CLUSTER_QUORUM), KR_OK);
    append_n(f, "s/a", 5, 1, KR_OK);
}

/* A free TCP port on 127.0.0.1 (bind 0, read it back, close). */
static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* The body of an HTTP GET (curl), NUL-terminated. */
static void http_get(const char *base, const char *path, char *out, size_t cap)
{
    char url[256], err[4096];
    snprintf(url, sizeof url, "%s%s", base, path);
    const char *args[] = {"-s", url, NULL};
    assert_int_equal(kr_test_run("/usr/bin/curl", args, out, err, cap), 0);
}

/* promtool's verdict on a /metrics page. */
static void promtool_ok(const char *dir, const char *page)
{
    char path[DIR_CAP + 16], cmd[DIR_CAP + 64];
    static char out[65536], err[65536];
    snprintf(path, sizeof path, "%s/metrics.txt", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(page, 1, strlen(page), fp), strlen(page));
    assert_int_equal(fclose(fp), 0);
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s'", path);
    const char *args[] = {"-c", cmd, NULL};
    int rc = kr_test_run("/bin/sh", args, out, err, sizeof out);
    if (rc)
        fprintf(stderr, "promtool: %s%s\n", out, err);
    assert_int_equal(rc, 0);
}

/* kiroku serve --nats in quorum mode: writes acknowledged and in the
 * stream; a restart publishes nothing twice; a foreign message fences it:
 * writes answer not_primary. */
static void test_serve_quorum(void **state)
{
    struct fx *f = *state;
    char http[64];
    snprintf(http, sizeof http, "http://127.0.0.1:%u", free_port());
    const char *extra[] = {
        "--nats", kr_nats_urls(f->nc), "--replication", "quorum", "--shard", SHARD, "--http", http,
        NULL};
    static char page[256 * 1024];
    static struct ac_server srv;
    ac_server_start_with(&srv, extra);
    struct ac c;
    ac_open(&c, srv.tcp);
    ac_str(&c, KR_FLD_EMAIL, "first@example.jp");
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_APPLY, NULL), AC_OK);
    uint64_t covered = 0, size = 0;
    struct journal *j;
    struct jrn_options ro = {.dir = srv.data, .read_only = true};
    assert_int_equal(jrn_open(&ro, &j), KR_OK);
    size = jrn_size(j); /* the signup's record is acknowledged: so published */
    check_stream_of(f, j, false, &covered);
    jrn_close(j);
    assert_true(covered >= size - 1 && covered > 10);
    ac_close(&c);
    http_get(http, "/metrics", page, sizeof page);
    assert_non_null(strstr(page, "\nkiroku_replication_fenced 0\n"));
    assert_non_null(strstr(page, "\nkiroku_replication_connected 1\n"));
    promtool_ok(f->root, page);
    http_get(http, "/healthz", page, sizeof page);
    assert_string_equal(page, "ok\n");

    /* commits while no serve publishes (kiroku seed), then a restart:
     * they are published, continuously, nothing twice */
    assert_int_equal(kill(srv.pid, SIGTERM), 0);
    struct kr_test_child ch = {.pid = srv.pid};
    assert_true(kr_test_wait_for(kr_test_child_exited, &ch, KR_TEST_WAIT_MS, "serve to stop"));
    srv.pid = 0;
    static char out[65536], err[65536];
    const char *seed[] = {"seed",       "--data", srv.data, "--tenants", "1",
                          "--contacts", "5",      "--seed", "7",         NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, seed, out, err, sizeof out), 0);
    assert_int_equal(jrn_open(&ro, &j), KR_OK);
    uint64_t seeded = jrn_size(j);
    jrn_close(j);
    assert_true(seeded > size + 50);
    ac_server_restart(&srv);
    ac_open(&c, srv.tcp);
    ac_str(&c, KR_FLD_EMAIL, "second@example.jp");
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_APPLY, NULL), AC_OK);
    assert_int_equal(jrn_open(&ro, &j), KR_OK);
    uint64_t after = 0;
    check_stream_of(f, j, false, &after);
    jrn_close(j);
    assert_true(after > seeded); /* the seeded tail and the signup after it */

    /* another writer: fenced */
    assert_int_equal(kr_nats_publish(f->js, SUBJECT, "intruder", 8), NATS_OK);
    ac_str(&c, KR_FLD_EMAIL, "third@example.jp");
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_APPLY, NULL), KR_ERR_NOT_PRIMARY);
    ac_str(&c, KR_FLD_EMAIL, "fourth@example.jp");
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_APPLY, NULL), KR_ERR_NOT_PRIMARY);
    ac_close(&c);
    http_get(http, "/metrics", page, sizeof page);
    assert_non_null(strstr(page, "\nkiroku_replication_fenced 1\n"));
    http_get(http, "/healthz", page, sizeof page);
    assert_non_null(strstr(page, "replication: fenced"));
    assert_non_null(strstr(page, "journal: not writable: this node is not the primary"));

    /* the stream now ends with a message that is not kiroku's: serve
     * refuses to start on it */
    assert_int_equal(kill(srv.pid, SIGTERM), 0);
    ch.pid = srv.pid;
    assert_true(kr_test_wait_for(kr_test_child_exited, &ch, KR_TEST_WAIT_MS, "serve to stop"));
    srv.pid = 0;
    assert_true(WIFEXITED(ch.status) && WEXITSTATUS(ch.status) == 0); /* a clean stop, fenced */
    const char *again[] = {"serve",
                           "--data",
                           srv.data,
                           "--listen",
                           "tcp://127.0.0.1:0",
                           "--nats",
                           kr_nats_urls(f->nc),
                           "--shard",
                           SHARD,
                           NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, again, out, err, sizeof out), 3);
    assert_non_null(strstr(err, "ends with a message that is not kiroku's"));
    ac_server_stop(&srv); /* not running: removes the directory */
}

static void test_options(void **state)
{
    (void)state;
    const char *why;
    struct cluster_options o = {.urls = "nats://127.0.0.1:4222"};
    assert_int_equal(cluster_check(&o, &why), KR_OK);
    o.shard = "Main";
    assert_int_equal(cluster_check(&o, &why), KR_EINVAL);
    o.shard = "eu-1";
    o.max_age_s = KR_CLUSTER_MAX_AGE_S_MAX + 1;
    assert_int_equal(cluster_check(&o, &why), KR_EINVAL);
    o.max_age_s = 0;
    o.urls = "http://127.0.0.1:4222";
    assert_int_equal(cluster_check(&o, &why), KR_EINVAL);
    o.urls = "";
    assert_int_equal(cluster_check(&o, &why), KR_EINVAL);
    char stream[KR_CLUSTER_NAME_MAX], subject[KR_CLUSTER_NAME_MAX];
    assert_int_equal(cluster_names("eu-1", stream, subject, sizeof stream), KR_OK);
    assert_string_equal(stream, "KIROKU_EU_1");
    assert_string_equal(subject, "kiroku.eu-1.journal");
    char long_name[40];
    memset(long_name, 'a', 33);
    long_name[33] = '\0';
    assert_int_equal(cluster_names(long_name, stream, subject, sizeof stream), KR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test_setup_teardown(test_quorum_publishes_the_journal, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_publishes_the_tail_once, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_foreign_message_fences, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_node_down_quorum_goes_on, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_start_checks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_all_nodes_down_then_caught_up, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_publish_from, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_emptied_stream, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_first_publish_fenced, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_serve_quorum, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
