/*
 * follow_test.c: `kiroku follow` against a real nats-server (the harness,
 * tools/nats_cluster.h). The primary is `kiroku serve --demo`; the test
 * publishes its journal into the shard's stream as a publisher does
 * (ranges ending at signed checkpoints, chunked by jrn_repl_encode, with the
 * Kiroku-First/Last/Epoch headers), reading it through a read-only handle.
 * Followers start from a restored backup generation of the primary.
 *
 * - A follower catches up, its `replay --check` digests equal the primary's,
 *   `kiroku verify` passes on it, a read through its endpoint answers what
 *   the primary answers (with a session made on the primary) and a write is
 *   answered not_primary naming the primary's endpoint: the lease holder's
 *   while the shard's lease is held, else --primary.
 * - In a 3-node cluster, the node a follower is connected to is killed while
 *   the stream goes on: it reconnects to another node and is level again.
 * - Stopped, and with its NATS server stopped, while the primary writes on:
 *   restarted, it resumes from its stored position and is level again; its
 *   /healthz says it is not connected meanwhile, and /metrics shows the seq
 *   applied, no lag and no fault after.
 * - A range altered in the stream (a bad signature, a broken prev link,
 *   two records swapped, a checkpoint of another size, a record left out,
 *   another journal's id, headers that lie, a message cut short) stops a
 *   follower with exit status 1 and the seq on stderr, with nothing after
 *   the last verified checkpoint applied.
 * - A stream that begins past the follower's journal is refused (exit 3).
 * - With `kiroku serve --nats --replication quorum` publishing, a follower
 *   from its backup keeps level with the API's writes, with equal views; a
 *   tenant the primary erases is erased on the follower (its key destroyed,
 *   its payloads stripped as on the primary).
 */
#include "api_client.h"
#include "nats_cluster.h"
#include "test_http.h"
#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>

#include "accounts.h"
#include "journal.h"
#include "keystore.h"
#include "lease.h"
#include "natskv.h"
#include "replica.h"
#include "wbuf.h"

#include <fcntl.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define OUT_MAX  (1u << 20)
#define NOTE_MAX 4096u

/* What the tests share: the primary, NATS, the restored backup. */
struct fx {
    struct ac_server p;
    struct kr_nats_cluster *nats;
    natsConnection *nc;
    jsCtx *js;
    struct journal *pj; /* the primary's journal, read-only */
    char base[600];     /* the restored backup generation (never followed) */
    char pk[64];        /* journal key 1, base64 */
    uint8_t token[32];  /* the demo master's session, made on the primary */
    uint64_t backup_size;
    uint64_t cut;            /* chunks published that did not end their range */
    const char *follow_urls; /* what followers get as --nats; NULL = every node */
    bool keep_serving;       /* followers get --keep-serving */
    char *out, *err;
};
static struct fx fx;

/* A follower process. */
struct follower {
    char data[700], out[720], errf[720], ipc[760];
    char http[128]; /* its /metrics and /healthz (follower_http) */
    pid_t pid;
};

static int run(const char *const *args)
{
    int rc = kr_test_run(KR_KIROKU_BIN, args, fx.out, fx.err, OUT_MAX);
    assert_true(rc >= 0);
    return rc;
}

/* ---- Publishing as the primary would ---- */

static void stream_add(const char *shard)
{
    char name[64], subj[64];
    snprintf(name, sizeof name, "KIROKU_%s", shard);
    for (char *c = name + 7; *c; c++)
        *c = *c == '-' ? '_' : (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
    snprintf(subj, sizeof subj, "kiroku.%s.journal", shard);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    const char *subjects[] = {subj};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.AllowDirect = true;
    cfg.Duplicates = (int64_t)120 * 1000000000;
    cfg.Replicas = (int64_t)fx.nats->n;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_AddStream(&si, fx.js, &cfg, NULL, &jerr), NATS_OK);
    jsStreamInfo_Destroy(si);
}

/* Publishes one message (a chunk of records first..last, or any bytes). */
static void publish(const char *shard, const uint8_t *buf, size_t len, uint64_t first,
                    uint64_t last)
{
    char subj[64], v[32], id[128];
    snprintf(subj, sizeof subj, "kiroku.%s.journal", shard);
    natsMsg *m = NULL;
    assert_int_equal(natsMsg_Create(&m, subj, NULL, (const char *)buf, (int)len), NATS_OK);
    snprintf(id, sizeof id, "%s.%" PRIu64 ".%" PRIu64, shard, first, last);
    natsMsgHeader_Set(m, "Nats-Msg-Id", id);
    snprintf(v, sizeof v, "%" PRIu64, first);
    natsMsgHeader_Set(m, "Kiroku-First", v);
    snprintf(v, sizeof v, "%" PRIu64, last);
    natsMsgHeader_Set(m, "Kiroku-Last", v);
    natsMsgHeader_Set(m, "Kiroku-Epoch", "1");
    /* Retried while a NATS server comes back (the message id makes a
     * publish that did land before its acknowledgement was lost a no-op). */
    natsStatus st = NATS_ERR;
    for (unsigned waited = 0; st != NATS_OK && waited < KR_TEST_WAIT_MS; waited += 250) {
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        if ((st = js_PublishMsg(&pa, fx.js, m, NULL, &jerr)) != NATS_OK)
            kr_test_pause_ms(250);
        jsPubAck_Destroy(pa);
    }
    assert_int_equal(st, NATS_OK);
    natsMsg_Destroy(m);
}

/* Chunks are cut at this many bytes (a few records each) rather than
 * KR_REPL_MSG_MAX, so that ranges span several messages: a follower from a
 * backup then starts inside a range, and a session spans messages. */
#define CHUNK_CAP 4096u

/* Publishes records from..to with the note signed at `to`, in chunks. */
static void publish_range(const char *shard, uint64_t from, uint64_t to, const char *note,
                          size_t note_len)
{
    uint8_t *buf = malloc(KR_REPL_MSG_MAX);
    assert_non_null(buf);
    uint64_t epoch = 0;
    assert_int_equal(jrn_epoch(fx.pj, &epoch), KR_OK);
    while (from <= to) {
        size_t len = 0;
        uint64_t last = 0;
        kr_err err =
            jrn_repl_encode(fx.pj, from, to, note, note_len, epoch, buf, CHUNK_CAP, &len, &last);
        if (err == KR_ETOOLARGE) /* one record, or the note, past CHUNK_CAP */
            err = jrn_repl_encode(fx.pj, from, to, note, note_len, epoch, buf, KR_REPL_MSG_MAX,
                                  &len, &last);
        assert_int_equal(err, KR_OK);
        fx.cut += last < to;
        publish(shard, buf, len, from, last);
        from = last + 1;
    }
    free(buf);
}

/* The size a checkpoint note is signed at (its second line). */
static uint64_t note_size(const char *note)
{
    const char *nl = strchr(note, '\n');
    assert_non_null(nl);
    return strtoull(nl + 1, NULL, 10);
}

/* The primary's newest checkpoint into note; its size. */
static uint64_t newest(char *note, size_t *len)
{
    assert_int_equal(jrn_checkpoint(fx.pj, note, NOTE_MAX, len), KR_OK);
    return note_size(note);
}

/* Publishes the primary's records from..upto (upto has the note given) in
 * ranges ending at its kept checkpoints, as a publisher's backlog does. */
static void publish_upto(const char *shard, uint64_t from, uint64_t upto, const char *note,
                         size_t len)
{
    char kept[NOTE_MAX];
    while (from <= upto) {
        uint64_t size = 0;
        size_t klen = 0;
        kr_err err = jrn_checkpoint_after(fx.pj, from - 1, &size, kept, sizeof kept, &klen);
        if (err == KR_ENOTFOUND || size >= upto)
            break;
        assert_int_equal(err, KR_OK);
        publish_range(shard, from, size, kept, klen);
        from = size + 1;
    }
    if (from <= upto)
        publish_range(shard, from, upto, note, len);
}

/* Publishes everything the primary has committed past `from`; the new end. */
static uint64_t publish_tail(const char *shard, uint64_t from)
{
    char note[NOTE_MAX];
    size_t len = 0;
    uint64_t size = newest(note, &len);
    publish_upto(shard, from, size, note, len);
    return size;
}

/* ---- Followers ---- */

/* Starts `kiroku follow` of shard's stream in DIR/name beside primary p
 * (a copy of the restored backup `base` the first time), naming p's tcp
 * endpoint as the primary's. */
static void follower_start_on(struct follower *f, const struct ac_server *p, const char *base,
                              const char *name, const char *shard)
{
    memset(f, 0, sizeof *f);
    snprintf(f->data, sizeof f->data, "%s/%s", p->dir, name);
    snprintf(f->out, sizeof f->out, "%s.out", f->data);
    snprintf(f->errf, sizeof f->errf, "%s.err", f->data);
    snprintf(f->ipc, sizeof f->ipc, "ipc://%s.sock", f->data);
    if (access(f->data, F_OK) != 0)
        kr_test_copytree(base, f->data);
    unlink(f->out); /* a restart's line is not the last run's */
    char op[780];
    snprintf(op, sizeof op, "ipc://%s.op", f->data);
    const char *argv[] = {"kiroku",
                          "follow",
                          "--nats",
                          fx.follow_urls ? fx.follow_urls : kr_nats_urls(fx.nats),
                          "--data",
                          f->data,
                          "--shard",
                          shard,
                          "--listen",
                          f->ipc,
                          "--operator",
                          op,
                          "--primary",
                          p->tcp,
                          "--json",
                          "--http",
                          "http://127.0.0.1:0",
                          fx.keep_serving ? "--keep-serving" : NULL,
                          NULL};
    f->pid = kr_test_spawn(KR_KIROKU_BIN, argv, f->out, f->errf, false);
}

static void follower_start(struct follower *f, const char *name, const char *shard)
{
    follower_start_on(f, &fx.p, fx.base, name, shard);
}

/* Whether the follower printed its JSON line. */
static bool printed(void *arg)
{
    const struct follower *f = arg;
    FILE *fp = fopen(f->out, "rb");
    if (!fp)
        return false;
    char line[2048];
    bool whole = fgets(line, sizeof line, fp) && strchr(line, '\n');
    fclose(fp);
    return whole;
}

/* Reads the follower's HTTP endpoint from its JSON line into f->http. */
static void follower_http(struct follower *f)
{
    assert_true(kr_test_wait_for(printed, f, KR_TEST_WAIT_MS, "the follower's JSON line"));
    char *line = kr_test_slurp(f->out, NULL);
    json_error_t je;
    json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, &je);
    assert_non_null(j);
    snprintf(f->http, sizeof f->http, "%s", json_string_value(json_object_get(j, "http")));
    assert_true(strncmp(f->http, "http://127.0.0.1:", 17) == 0);
    json_decref(j);
    free(line);
}

/* GET path from the follower's HTTP endpoint: its status, its body in b. */
static long http_get(const struct follower *f, const char *path, struct kr_wbuf *b)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->http, path);
    return kr_test_http_get(url, b);
}

/* Whether /healthz says what ((struct health_is *)arg) wants. */
struct health_is {
    const struct follower *f;
    long status;
    const char *text;
};
static bool health_is(void *arg)
{
    const struct health_is *h = arg;
    struct kr_wbuf b;
    kr_wbuf_init(&b, 1u << 20);
    long st = http_get(h->f, "/healthz", &b);
    bool yes = st == h->status && strstr((const char *)b.data, h->text) != NULL;
    kr_wbuf_free(&b);
    return yes;
}

/* The value of /metrics' sample `name` (the line that starts with it). */
static uint64_t metric(const struct follower *f, const char *name)
{
    return kr_test_metric(f->http, name);
}

/* Waits for the follower to exit; its exit status (-1 if signalled). */
static int follower_wait(struct follower *f)
{
    struct kr_test_child ch = {f->pid, 0};
    if (!kr_test_wait_for(kr_test_child_exited, &ch, KR_TEST_WAIT_MS, "the follower's exit")) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
        kr_test_print_log(f->errf);
        fail();
    }
    f->pid = 0;
    return WIFEXITED(ch.status) ? WEXITSTATUS(ch.status) : -1;
}

static int follower_stop(struct follower *f)
{
    assert_int_equal(kill(f->pid, SIGTERM), 0);
    return follower_wait(f);
}

/* The size of the journal in dir (opened read-only, beside its writer). */
static uint64_t size_of(const char *dir)
{
    struct journal *j = NULL;
    struct jrn_options o = {.dir = dir, .read_only = true};
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    uint64_t n = jrn_size(j);
    jrn_close(j);
    return n;
}

struct level {
    const char *dir;
    uint64_t size;
};
static bool reached(void *arg)
{
    const struct level *l = arg;
    return size_of(l->dir) >= l->size;
}

static void wait_level(struct follower *f, uint64_t size)
{
    struct level l = {f->data, size};
    if (!kr_test_wait_for(reached, &l, KR_TEST_WAIT_MS, "the follower to catch up")) {
        kr_test_print_log(f->errf);
        fail();
    }
    assert_int_equal(size_of(f->data), size);
}

/* `kiroku replay --check --json` of dir: its records and views (caller
 * frees). */
static json_t *digests(const char *dir, uint64_t *records)
{
    const char *a[] = {"replay", "--check", "--json", "--data", dir, NULL};
    if (run(a) != 0)
        fail_msg("replay --check %s: %s %s", dir, fx.out, fx.err);
    json_error_t je;
    json_t *j = json_loads(fx.out, 0, &je);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "ok")));
    *records = (uint64_t)json_integer_value(json_object_get(j, "records"));
    json_t *v = json_incref(json_object_get(j, "views"));
    json_decref(j);
    return v;
}

/* Brings f level with the primary (publishing its tail) and compares the
 * views' digests; the primary may commit meanwhile, so it tries again. */
static void assert_same_views(struct follower *f, uint64_t *published)
{
    for (int tries = 0; tries < 20; tries++) {
        *published = publish_tail("main", *published + 1);
        wait_level(f, *published);
        uint64_t pr = 0, fr = 0;
        json_t *pv = digests(fx.p.data, &pr), *fv = digests(f->data, &fr);
        bool same = pr == fr && json_equal(pv, fv);
        json_decref(pv);
        json_decref(fv);
        if (same)
            return;
        assert_true(pr > fr); /* only the primary may be ahead */
    }
    fail_msg("the follower's views never equalled the primary's");
}

static void write_to(const struct ac_server *p, const uint8_t *token, int n)
{
    struct ac c;
    ac_open(&c, p->ipc);
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "followed %d", i);
        ac_str(&c, KR_FLD_NAME, name);
        assert_int_equal(ac_call(&c, KR_OP_CONTACTS_REGISTER, token), AC_OK);
    }
    ac_close(&c);
}

static void write_contacts(int n)
{
    write_to(&fx.p, fx.token, n);
}

/* ---- Set-up ---- */

/* The demo master's session on p into token. */
static void login_to(const struct ac_server *p, uint8_t token[32])
{
    struct ac c;
    ac_open(&c, p->ipc);
    ac_str(&c, KR_FLD_TENANT_CODE, p->demo_code);
    ac_str(&c, KR_FLD_EMAIL, p->demo_email);
    ac_str(&c, KR_FLD_PASSWORD, p->demo_password);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_LOGIN, NULL), AC_OK);
    const msgpack_object *t = ac_get(ac_result(&c), KR_FLD_TOKEN);
    assert_non_null(t);
    assert_int_equal(t->via.bin.size, 32);
    memcpy(token, t->via.bin.ptr, 32);
    ac_close(&c);
}

/* A backup generation of p's running server, restored into base (with
 * key 1's public key into pk); the restored journal's size. */
static uint64_t backup_restore(const struct ac_server *p, char *base, size_t cap, char pk[64])
{
    char backups[600], gen[800];
    snprintf(backups, sizeof backups, "%.500s/backups", p->dir);
    const char *b[] = {"backup", "--data", p->data, "--to", backups, "--json", NULL};
    if (run(b) != 0)
        fail_msg("backup: %s %s", fx.out, fx.err);
    json_error_t je;
    json_t *j = json_loads(fx.out, 0, &je);
    assert_non_null(j);
    snprintf(gen, sizeof gen, "%s/%s", backups,
             json_string_value(json_object_get(j, "generation")));
    json_decref(j);
    char pkpath[700];
    snprintf(pkpath, sizeof pkpath, "%s/keys/journal-1.pub", p->data);
    char *text = kr_test_slurp(pkpath, NULL);
    snprintf(pk, 64, "%.*s", (int)strcspn(text, "\n"), text);
    free(text);
    snprintf(base, cap, "%.500s/base", p->dir);
    const char *r[] = {"restore", gen, "--data", base, "--pubkey", pk, NULL};
    if (run(r) != 0)
        fail_msg("restore: %s %s", fx.out, fx.err);
    return size_of(base);
}

/* The primary with some contacts, backed up and restored into fx.base. */
static int setup(void **state)
{
    (void)state;
    fx.out = malloc(OUT_MAX);
    fx.err = malloc(OUT_MAX);
    assert_non_null(fx.out);
    assert_non_null(fx.err);
    fx.nats = kr_nats_start(1);
    assert_non_null(fx.nats);
    assert_int_equal(natsConnection_ConnectTo(&fx.nc, fx.nats->node[0].url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&fx.js, fx.nc, NULL), NATS_OK);
    ac_server_start(&fx.p);
    login_to(&fx.p, fx.token);
    write_contacts(5);
    fx.backup_size = backup_restore(&fx.p, fx.base, sizeof fx.base, fx.pk);
    write_contacts(5); /* after the backup: only the stream has them */
    struct jrn_options o = {.dir = fx.p.data, .read_only = true};
    assert_int_equal(jrn_open(&o, &fx.pj), KR_OK);
    stream_add("main");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    jrn_close(fx.pj);
    jsCtx_Destroy(fx.js);
    natsConnection_Destroy(fx.nc);
    ac_server_stop(&fx.p);
    kr_nats_free(fx.nats);
    free(fx.out);
    free(fx.err);
    return 0;
}

/* ---- Tests ---- */

/* The reply to contacts.list with the master's token at url, as JSON-ish
 * bytes to compare (the result map re-packed). */
static void list_contacts_as(const char *url, const uint8_t *token, msgpack_sbuffer *out)
{
    struct ac c;
    ac_open(&c, url);
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_LIST, token), AC_OK);
    msgpack_sbuffer_init(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *ac_result(&c));
    ac_close(&c);
}

/* Cancels and erases p's demo tenant as an operator would; its id. */
static uint64_t erase_demo_tenant(const struct ac_server *p)
{
    uint8_t token[32];
    struct ac op;
    ac_open(&op, p->op_url);
    ac_str(&op, KR_FLD_TENANT_CODE, KR_PLATFORM_CODE);
    ac_str(&op, KR_FLD_EMAIL, p->op_email);
    ac_str(&op, KR_FLD_PASSWORD, p->op_password);
    assert_int_equal(ac_call(&op, KR_OP_AUTH_LOGIN, NULL), AC_OK);
    const msgpack_object *t = ac_get(ac_result(&op), KR_FLD_TOKEN);
    assert_non_null(t);
    memcpy(token, t->via.bin.ptr, 32);
    ac_u64(&op, KR_FLD_LIMIT, 10);
    assert_int_equal(ac_call(&op, KR_OP_TENANTS_LIST, token), AC_OK);
    const msgpack_object *l = ac_res_list(&op);
    assert_int_equal(l->via.array.size, 1);
    uint64_t tenant = ac_get(&l->via.array.ptr[0], KR_FLD_TENANT)->via.u64;
    ac_u64(&op, KR_FLD_TENANT, tenant);
    assert_int_equal(ac_call(&op, KR_OP_TENANTS_CANCEL, token), AC_OK);
    ac_u64(&op, KR_FLD_TENANT, tenant);
    assert_int_equal(ac_call(&op, KR_OP_TENANTS_ERASE, token), AC_OK);
    ac_close(&op);
    return tenant;
}

/* `kiroku verify --json` of dir: the payloads it found stripped. */
static uint64_t stripped_in(const char *dir, const char *pk)
{
    const char *v[] = {"verify", "--data", dir, "--pubkey", pk, "--json", NULL};
    if (run(v) != 0)
        fail_msg("verify %s: %s %s", dir, fx.out, fx.err);
    json_error_t je;
    json_t *j = json_loads(fx.out, 0, &je);
    assert_non_null(j);
    uint64_t n = (uint64_t)json_integer_value(json_object_get(j, "stripped"));
    json_decref(j);
    return n;
}

static void list_contacts(const char *url, msgpack_sbuffer *out)
{
    list_contacts_as(url, fx.token, out);
}

/* Waits until f holds what p has committed and their views' digests are
 * equal (p may commit meanwhile: then again). */
static void assert_level_with(struct follower *f, const struct ac_server *p)
{
    for (int tries = 0; tries < 20; tries++) {
        struct level l = {f->data, size_of(p->data)};
        if (!kr_test_wait_for(reached, &l, KR_TEST_WAIT_MS, "the follower to catch up")) {
            kr_test_print_log(f->errf);
            fail();
        }
        uint64_t pr = 0, fr = 0;
        json_t *pv = digests(p->data, &pr), *fv = digests(f->data, &fr);
        bool same = pr == fr && json_equal(pv, fv);
        json_decref(pv);
        json_decref(fv);
        if (same)
            return;
    }
    fail_msg("the follower's views never equalled the primary's");
}

/* The primary publishes itself (serve --nats, quorum mode): a follower
 * started from its backup while it writes keeps level with it, its views
 * equal the primary's, it answers reads as the primary does, and it
 * verifies. */
static void test_follows_serve_nats(void **state)
{
    (void)state;
    struct ac_server p;
    const char *extra[] = {
        "--nats", kr_nats_urls(fx.nats), "--replication", "quorum", "--shard", "live", NULL};
    ac_server_start_with(&p, extra);
    uint8_t token[32];
    login_to(&p, token);
    write_to(&p, token, 5);
    char base[600], pk[64];
    uint64_t at = backup_restore(&p, base, sizeof base, pk);
    write_to(&p, token, 5);
    struct follower f;
    follower_start_on(&f, &p, base, "f-live", "live");
    write_to(&p, token, 5);
    assert_level_with(&f, &p);
    assert_true(size_of(f.data) > at);
    msgpack_sbuffer a, b;
    list_contacts_as(p.ipc, token, &a);
    list_contacts_as(f.ipc, token, &b);
    assert_int_equal(a.size, b.size);
    assert_memory_equal(a.data, b.data, a.size);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);

    /* The tenant erased on the primary is erased on the follower: its key
     * destroyed, its payloads stripped as the primary stripped them. */
    uint64_t tenant = erase_demo_tenant(&p);
    assert_level_with(&f, &p);
    assert_int_equal(follower_stop(&f), 0);
    uint64_t stripped = stripped_in(f.data, pk);
    assert_true(stripped > 0);
    assert_int_equal(stripped, stripped_in(p.data, pk));
    struct kr_keystore *ks = NULL;
    assert_int_equal(ks_open(f.data, false, &ks), KR_OK);
    struct kr_data_key key;
    assert_int_not_equal(ks_get(ks, tenant, &key), KR_OK);
    ks_close(ks);
    assert_int_equal(ac_server_stop(&p), 0);
}

/* Whether a write through the follower at url is refused with not_primary
 * naming `name`. */
struct refusal {
    const char *url, *name;
};
static bool refused_naming(void *arg)
{
    const struct refusal *r = arg;
    struct ac c;
    ac_open(&c, r->url);
    ac_str(&c, KR_FLD_NAME, "on a follower");
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_REGISTER, fx.token), KR_ERR_NOT_PRIMARY);
    const msgpack_object *e = NULL;
    for (uint32_t i = 0; i < c.u.data.via.map.size; i++)
        if (ac_str_eq(&c.u.data.via.map.ptr[i].key, "error"))
            e = &c.u.data.via.map.ptr[i].val;
    assert_non_null(e);
    bool named = false;
    for (uint32_t i = 0; i < e->via.map.size; i++)
        if (ac_str_eq(&e->via.map.ptr[i].key, "message")) {
            const msgpack_object_str *s = &e->via.map.ptr[i].val.via.str;
            named = memmem(s->ptr, s->size, r->name, strlen(r->name)) != NULL;
        }
    ac_close(&c);
    return named;
}

static void test_follows_serves_reads_refuses_writes(void **state)
{
    (void)state;
    struct follower f;
    follower_start(&f, "f1", "main");
    uint64_t published = publish_tail("main", 1);
    assert_true(published > fx.backup_size);
    assert_true(fx.cut > 0); /* ranges of several messages */
    wait_level(&f, published);

    /* A read with a session made on the primary answers the same. */
    msgpack_sbuffer a, b;
    list_contacts(fx.p.ipc, &a);
    list_contacts(f.ipc, &b);
    assert_int_equal(a.size, b.size);
    assert_memory_equal(a.data, b.data, a.size);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);

    /* A write is refused, naming the primary: --primary while nobody holds
     * the shard's lease, the holder's endpoint while one does. */
    struct refusal r = {f.ipc, fx.p.tcp};
    assert_true(kr_test_wait_for(refused_naming, &r, KR_TEST_WAIT_MS, "not_primary, --primary"));
    natsConnection *lnc = NULL;
    struct lease *l = NULL;
    assert_int_equal(nkv_connect(kr_nats_urls(fx.nats), &lnc), KR_OK);
    struct lease_options lo = {
        .shard = "main", .node = "primary-1", .endpoint = "tcp://lease-holder.example:7450"};
    assert_int_equal(lease_open(lnc, &lo, &l), KR_OK);
    assert_int_equal(lease_acquire(l, published, NULL), KR_OK);
    r.name = lo.endpoint;
    assert_true(kr_test_wait_for(refused_naming, &r, KR_TEST_WAIT_MS, "not_primary, the holder"));
    assert_int_equal(lease_release(l), KR_OK);
    lease_close(l);
    natsConnection_Destroy(lnc);
    r.name = fx.p.tcp;
    assert_true(kr_test_wait_for(refused_naming, &r, KR_TEST_WAIT_MS, "not_primary, released"));

    assert_same_views(&f, &published);
    const char *v[] = {"verify", "--data", f.data, "--pubkey", fx.pk, NULL};
    if (run(v) != 0)
        fail_msg("verify of the follower: %s %s", fx.out, fx.err);

    /* Stopped, with its NATS server down while the primary writes on. */
    assert_int_equal(follower_stop(&f), 0);
    write_contacts(3);
    kr_nats_stop_node(fx.nats, 0, SIGTERM);
    follower_start(&f, "f1", "main"); /* resumes at its stored position */
    follower_http(&f);
    struct health_is down = {&f, 503, "follower: not connected to NATS"};
    assert_true(kr_test_wait_for(health_is, &down, KR_TEST_WAIT_MS, "health: not connected"));
    write_contacts(3);
    assert_true(kr_nats_start_node(fx.nats, 0));
    assert_same_views(&f, &published);
    struct health_is up = {&f, 200, "ok"};
    assert_true(kr_test_wait_for(health_is, &up, KR_TEST_WAIT_MS, "health: ok"));
    assert_int_equal(metric(&f, "kiroku_follower_applied_seq"), published);
    assert_int_equal(metric(&f, "kiroku_follower_received_seq"), published);
    assert_int_equal(metric(&f, "kiroku_follower_lag_records"), 0);
    assert_int_equal(metric(&f, "kiroku_follower_faults_total"), 0);
    assert_int_equal(metric(&f, "kiroku_follower_connected"), 1);
    assert_int_equal(follower_stop(&f), 0);
    if (run(v) != 0)
        fail_msg("verify of the follower after resuming: %s %s", fx.out, fx.err);
}

/* ---- An altered range ---- */

enum alter {
    ALTER_SIG,       /* a record's signature */
    ALTER_PREV,      /* a record's prev link */
    ALTER_SWAP,      /* two records swapped */
    ALTER_NOTE,      /* the checkpoint of another size */
    ALTER_GAP,       /* the range's first record left out */
    ALTER_FOREIGN,   /* another journal's id */
    ALTER_HEADERS,   /* Kiroku-Last saying one record more */
    ALTER_TRUNCATED, /* the message cut short */
};

/* Flips the first byte of the copy of `what` (n bytes) inside rec. */
static void flip_in(uint8_t *rec, size_t len, const uint8_t *what, size_t n)
{
    uint8_t *at = memmem(rec, len, what, n);
    assert_non_null(at);
    at[0] ^= 0x01;
}

/* The primary's range s1+1..s2 (with note n2; n1 is the one at s1), altered
 * as `how` says, published as one message into shard's stream. Returns the
 * seq the follower must stop at. */
static uint64_t publish_altered(const char *shard, enum alter how, uint64_t s1, uint64_t s2,
                                const char *n1, size_t l1, const char *n2, size_t l2)
{
    uint8_t *buf = malloc(KR_REPL_MSG_MAX), *alt = malloc(KR_REPL_MSG_MAX);
    assert_non_null(buf);
    assert_non_null(alt);
    const uint8_t *rp[KR_REPL_CHUNK_RECORDS];
    size_t rl[KR_REPL_CHUNK_RECORDS], len = 0;
    uint8_t *rec[KR_REPL_CHUNK_RECORDS];
    uint64_t last = 0, epoch = 0, bad = s1 + 2; /* the second record of the range */
    assert_int_equal(jrn_epoch(fx.pj, &epoch), KR_OK);
    assert_int_equal(
        jrn_repl_encode(fx.pj, s1 + 1, s2, n2, l2, epoch, buf, KR_REPL_MSG_MAX, &len, &last),
        KR_OK);
    assert_int_equal(last, s2); /* a few records: one chunk */
    struct jrn_repl_chunk c = {.rec = rp, .rec_len = rl};
    assert_int_equal(jrn_repl_decode(buf, len, &c, KR_REPL_CHUNK_RECORDS), KR_OK);
    for (size_t i = 0; i < c.n; i++) {
        rec[i] = malloc(rl[i]);
        memcpy(rec[i], rp[i], rl[i]);
    }
    struct jrn_recbuf rb = {0};
    assert_int_equal(jrn_read(fx.pj, bad, &rb), KR_OK);
    uint64_t first = s1 + 1, hdr_last = s2;
    if (how == ALTER_SIG) {
        flip_in(rec[1], rl[1], rb.rec.sig, sizeof rb.rec.sig);
    } else if (how == ALTER_PREV) {
        flip_in(rec[1], rl[1], rb.rec.prev, sizeof rb.rec.prev);
    } else if (how == ALTER_SWAP) {
        uint8_t *t = rec[1];
        size_t tl = rl[1];
        rec[1] = rec[2], rl[1] = rl[2];
        rec[2] = t, rl[2] = tl;
    } else if (how == ALTER_NOTE) {
        n2 = n1, l2 = l1, bad = s2;
    } else if (how == ALTER_GAP) {
        free(rec[0]);
        memmove(rec, rec + 1, (c.n - 1) * sizeof *rec);
        memmove(rl, rl + 1, (c.n - 1) * sizeof *rl);
        c.n--, c.first++, first++, bad = s1 + 1;
    } else if (how == ALTER_FOREIGN) {
        c.journal_id[0] ^= 0x01, bad = s1 + 1;
    } else {
        bad = s1 + 1;
        hdr_last += how == ALTER_HEADERS;
    }
    jrn_recbuf_fini(&rb);
    for (size_t i = 0; i < c.n; i++)
        rp[i] = rec[i];
    c.note = n2;
    c.note_len = l2;
    assert_int_equal(jrn_repl_pack(&c, alt, KR_REPL_MSG_MAX, &len), KR_OK);
    publish(shard, alt, how == ALTER_TRUNCATED ? len - 1 : len, first, hdr_last);
    for (size_t i = 0; i < c.n; i++)
        free(rec[i]);
    free(alt);
    free(buf);
    return bad;
}

/* Publishes the primary's records up to s1 into a new shard's stream, then
 * the range s1+1..s2 altered as `how` says; a follower from the backup must
 * stop with exit status 1 at the seq altered, holding exactly s1 records,
 * and verify. */
/* A new shard's stream holding the primary's records up to *s1 and then
 * the next range altered as `how` says; the seq a follower must stop at. */
static uint64_t stream_altered(const char *shard, enum alter how, uint64_t *s1)
{
    char n1[NOTE_MAX], n2[NOTE_MAX];
    size_t l1 = 0, l2 = 0;
    *s1 = newest(n1, &l1);
    write_contacts(3);
    uint64_t s2 = newest(n2, &l2);
    assert_true(s2 >= *s1 + 3);
    stream_add(shard);
    publish_upto(shard, 1, *s1, n1, l1);
    return publish_altered(shard, how, *s1, s2, n1, l1, n2, l2);
}

static void altered(const char *shard, enum alter how)
{
    uint64_t s1 = 0, bad = stream_altered(shard, how, &s1);
    struct follower f;
    char name[64], want[64];
    snprintf(name, sizeof name, "f-%s", shard);
    follower_start(&f, name, shard);
    int rc = follower_wait(&f);
    char *err = kr_test_slurp(f.errf, NULL);
    if (rc != 1)
        fail_msg("follower exit %d, want 1: %s", rc, err);
    snprintf(want, sizeof want, "stopped at seq %" PRIu64 ":", bad);
    if (!strstr(err, want))
        fail_msg("want \"%s\" in: %s", want, err);
    free(err);
    assert_int_equal(size_of(f.data), s1); /* nothing of the altered range */
    const char *v[] = {"verify", "--data", f.data, "--pubkey", fx.pk, NULL};
    if (run(v) != 0)
        fail_msg("verify after the fault: %s %s", fx.out, fx.err);
}

static void test_bad_signature_stops(void **state)
{
    (void)state;
    altered("bad-sig", ALTER_SIG);
}

static void test_broken_prev_stops(void **state)
{
    (void)state;
    altered("bad-prev", ALTER_PREV);
}

static void test_reordered_stops(void **state)
{
    (void)state;
    altered("swapped", ALTER_SWAP);
}

static void test_wrong_checkpoint_stops(void **state)
{
    (void)state;
    altered("bad-note", ALTER_NOTE);
}

/* With --keep-serving a fault does not end the process: reads of what was
 * verified go on, /healthz says where it stopped, and SIGTERM ends it with
 * the fault's exit status. */
static void test_fault_keeps_serving_when_asked(void **state)
{
    (void)state;
    uint64_t s1 = 0, bad = stream_altered("kept", ALTER_SIG, &s1);
    struct follower f;
    fx.keep_serving = true;
    follower_start(&f, "f-kept", "kept");
    fx.keep_serving = false;
    follower_http(&f);
    char want[64];
    snprintf(want, sizeof want, "follower: stopped at seq %" PRIu64 ":", bad);
    struct health_is stopped = {&f, 503, want};
    assert_true(kr_test_wait_for(health_is, &stopped, KR_TEST_WAIT_MS, "health: stopped"));
    assert_int_equal(metric(&f, "kiroku_follower_faults_total"), 1);
    assert_int_equal(metric(&f, "kiroku_follower_applied_seq"), s1);
    msgpack_sbuffer a;
    list_contacts(f.ipc, &a); /* reads go on */
    msgpack_sbuffer_destroy(&a);
    assert_int_equal(follower_stop(&f), 1);
    assert_int_equal(size_of(f.data), s1);
}

/* A range that leaves a record out, another journal's chunk, headers that
 * say other records than the body holds, a message cut short. */
static void test_gap_foreign_headers_truncated_stop(void **state)
{
    (void)state;
    altered("gap", ALTER_GAP);
    altered("foreign", ALTER_FOREIGN);
    altered("headers", ALTER_HEADERS);
    altered("truncated", ALTER_TRUNCATED);
}

/* A stream that begins past the journal's next record cannot bring it
 * level: refused, naming the backup needed. */
static void test_stream_past_the_backup_is_refused(void **state)
{
    (void)state;
    char note[NOTE_MAX];
    size_t len = 0;
    uint64_t size = newest(note, &len);
    assert_true(size > fx.backup_size + 2);
    stream_add("late");
    publish_upto("late", fx.backup_size + 2, size, note, len);
    struct follower f;
    follower_start(&f, "f-late", "late");
    assert_int_equal(follower_wait(&f), 3);
    char *err = kr_test_slurp(f.errf, NULL);
    if (!strstr(err, "restore a backup generation"))
        fail_msg("no advice in: %s", err);
    free(err);
    assert_int_equal(size_of(f.data), fx.backup_size);
}

/* A stream message without our headers, met while searching where to
 * start, stops the follower (it is not a NATS outage to wait out). */
static void test_message_without_headers_stops(void **state)
{
    (void)state;
    stream_add("bare");
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_Publish(&pa, fx.js, "kiroku.bare.journal", "x", 1, NULL, &jerr), NATS_OK);
    jsPubAck_Destroy(pa);
    struct follower f;
    follower_start(&f, "f-bare", "bare");
    assert_int_equal(follower_wait(&f), 1);
    char *err = kr_test_slurp(f.errf, NULL);
    if (!strstr(err, "message 1 of the stream KIROKU_BARE lacks a well-formed Kiroku-First"))
        fail_msg("not said: %s", err);
    free(err);
    assert_int_equal(size_of(f.data), fx.backup_size);
}

/* Without --nats and --shard, the settings cluster.nats and cluster.shard
 * of DIR/kiroku.conf name the servers and the stream. */
static void test_settings_name_the_stream(void **state)
{
    (void)state;
    stream_add("conf-bare");
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_Publish(&pa, fx.js, "kiroku.conf-bare.journal", "x", 1, NULL, &jerr),
                     NATS_OK);
    jsPubAck_Destroy(pa);
    char dir[700], conf[720];
    snprintf(dir, sizeof dir, "%s/f-conf", fx.p.dir);
    kr_test_copytree(fx.base, dir);
    snprintf(conf, sizeof conf, "%s/kiroku.conf", dir);
    FILE *fp = fopen(conf, "w");
    assert_non_null(fp);
    fprintf(fp, "cluster.nats = %s\ncluster.shard = conf-bare\n", kr_nats_urls(fx.nats));
    fclose(fp);
    const char *a[] = {"follow", "--data", dir, NULL};
    assert_int_equal(run(a), 1); /* the bare message: a fault */
    assert_non_null(strstr(fx.err, "of the stream KIROKU_CONF_BARE lacks"));
    snprintf(conf, sizeof conf, "%s/empty.conf", dir);
    fp = fopen(conf, "w");
    assert_non_null(fp);
    fclose(fp);
    const char *none[] = {"follow", "--data", dir, "--config", conf, NULL};
    assert_int_equal(run(none), 2);
    assert_non_null(strstr(fx.err, "no NATS servers"));
}

/* A follower started before its stream exists waits for it. In a
 * three-node cluster, the node a follower is connected to (the one URL it
 * was given) is killed while the primary's writes go on into the stream (R3: two nodes are a
 * majority): the follower reconnects to a node it learnt of, resumes from what it committed and is
 * level again; the node comes back; the journal verifies. */
static void test_its_node_killed_in_a_cluster(void **state)
{
    (void)state;
    struct kr_nats_cluster *one = fx.nats, *c3 = kr_nats_start(3);
    assert_non_null(c3);
    jsCtx *js1 = fx.js, *js3 = NULL;
    natsConnection *nc3 = NULL;
    assert_int_equal(nkv_connect(kr_nats_urls(c3), &nc3), KR_OK);
    assert_int_equal(natsConnection_JetStream(&js3, nc3, NULL), NATS_OK);
    fx.nats = c3, fx.js = js3, fx.follow_urls = c3->node[1].url;
    struct follower f;
    follower_start(&f, "f-parted", "parted"); /* before the stream exists: it waits */
    follower_http(&f);
    stream_add("parted");
    uint64_t published = publish_tail("parted", 1);
    wait_level(&f, published);
    kr_nats_stop_node(c3, 1, SIGKILL);
    write_contacts(3);
    published = publish_tail("parted", published + 1);
    wait_level(&f, published);
    assert_true(kr_nats_start_node(c3, 1));
    write_contacts(2);
    published = publish_tail("parted", published + 1);
    wait_level(&f, published);
    assert_int_equal(follower_stop(&f), 0);
    const char *v[] = {"verify", "--data", f.data, "--pubkey", fx.pk, NULL};
    if (run(v) != 0)
        fail_msg("verify of the follower: %s %s", fx.out, fx.err);
    fx.nats = one, fx.js = js1, fx.follow_urls = NULL;
    jsCtx_Destroy(js3);
    natsConnection_Destroy(nc3);
    kr_nats_free(c3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_follows_serves_reads_refuses_writes),
        cmocka_unit_test(test_bad_signature_stops),
        cmocka_unit_test(test_broken_prev_stops),
        cmocka_unit_test(test_reordered_stops),
        cmocka_unit_test(test_wrong_checkpoint_stops),
        cmocka_unit_test(test_gap_foreign_headers_truncated_stop),
        cmocka_unit_test(test_fault_keeps_serving_when_asked),
        cmocka_unit_test(test_stream_past_the_backup_is_refused),
        cmocka_unit_test(test_message_without_headers_stops),
        cmocka_unit_test(test_settings_name_the_stream),
        cmocka_unit_test(test_its_node_killed_in_a_cluster),
        cmocka_unit_test(test_follows_serve_nats),
    };
    if (!kr_nats_available()) {
        fprintf(stderr, "follow_test: no nats-server here: skipped\n");
        return 0;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
