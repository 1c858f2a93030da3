/*
 * failover_test.c: `kiroku serve --nats --node` (tools/serve_node.h) on a
 * 3-node NATS cluster (the harness, tools/nats_cluster.h), with two kiroku
 * nodes of one shard, in quorum mode, lease TTL 2 s.
 *
 * - kill -9 of the primary while a client writes: the follower takes over
 *   (a "primary" line, within the TTL and its catch-up: waited for as an
 *   event); every write the old primary acknowledged is readable on the new
 *   one; the new one takes writes. The old primary restarted is a follower
 *   (writes answered not_primary), lists any record it had to discard in
 *   DIR/discarded-*.json (then named on its stderr), and is brought level:
 *   its `replay --check` digests equal the new primary's; `kiroku verify`
 *   passes on both data directories.
 * - A clean stop hands the lease over at once; records the old primary then
 *   commits offline (kiroku seed) are discarded at its restart (exactly
 *   those, listed in the report) and it follows, level with the new one.
 * - A message published into the stream by someone else fences the
 *   primary: its next write is answered not_primary and it steps down: the
 *   record of that write, committed but never published, is discarded (the
 *   report lists it, the journal verifies), and the node then stops at the
 *   foreign message as a follower would (exit 1).
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

#include "journal.h"
#include "kr_limits.h"
#include "wbuf.h"

#include <dirent.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define OUT_MAX    (1u << 20)
#define WRITES_MAX 40 /* under contacts.list's default page */

struct node {
    char name[8], data[700], out[720], errf[720], ipc[760], op[760];
    pid_t pid;
};

struct fx {
    struct ac_server p; /* made the data: serve --demo, then stopped */
    struct kr_nats_cluster *nats;
    uint8_t token[32];
    char *out, *err;
};
static struct fx fx;

static int run(const char *const *args)
{
    int rc = kr_test_run(KR_KIROKU_BIN, args, fx.out, fx.err, OUT_MAX);
    assert_true(rc >= 0);
    return rc;
}

/* ---- Nodes ---- */

static void node_init(struct node *n, const char *name, const char *data)
{
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    snprintf(n->data, sizeof n->data, "%s", data);
    snprintf(n->out, sizeof n->out, "%s/%s.out", fx.p.dir, name);
    snprintf(n->errf, sizeof n->errf, "%s/%s.err", fx.p.dir, name);
    snprintf(n->ipc, sizeof n->ipc, "ipc://%s/%s.sock", fx.p.dir, name);
    snprintf(n->op, sizeof n->op, "ipc://%s/%s.op", fx.p.dir, name);
}

static void node_start(struct node *n)
{
    unlink(n->out);
    const char *argv[KR_TEST_NODE_ARGV_MAX];
    kr_test_node_argv(argv, &(struct kr_test_node_args){
                                n->name, n->data, kr_nats_urls(fx.nats), n->ipc, n->op,
                                (const char *const[]){"--http", "http://127.0.0.1:0", NULL}});
    n->pid = kr_test_spawn(KR_KIROKU_BIN, argv, n->out, n->errf, true);
}

static void wait_role(const struct node *n, const char *role)
{
    assert_true(kr_test_wait_role(n->out, role, n->errf));
}

/* Signals the node and waits for it; a SIGTERM must end it cleanly. */
static void node_kill(struct node *n, int sig)
{
    if (n->pid <= 0)
        return;
    int rc = kr_test_stop(n->pid, sig, n->errf);
    n->pid = 0;
    assert_int_not_equal(rc, -1);
    if (sig == SIGTERM && rc != 0) {
        kr_test_print_log(n->errf);
        fail_msg("node %s exited %d after SIGTERM", n->name, rc);
    }
}

/* ---- Reads and writes ---- */

static int write_one(const char *url, const char *name)
{
    struct ac c;
    ac_open(&c, url);
    ac_str(&c, KR_FLD_NAME, name);
    int rc = ac_call(&c, KR_OP_CONTACTS_REGISTER, fx.token);
    ac_close(&c);
    return rc;
}

/* A client process (a shell running `kiroku call`: nng is not to be used
 * in a forked child) writing contacts fo-NNN to url until killed, a write
 * fails or WRITES_MAX, appending the name of each acknowledged one to path. */
static pid_t writer_start(const char *url, const char *path)
{
    char hex[65], script[2048];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", fx.token[i]);
    snprintf(script, sizeof script,
             "i=0; while [ $i -lt %d ]; do n=$(printf 'fo-%%03d' $i); "
             "'%s' call --url '%s' --token %s --timeout 5000 --no-follow contacts.register "
             "\"{\\\"name\\\":\\\"$n\\\"}\" >/dev/null 2>&1 || exit 0; "
             "echo $n >> '%s'; i=$((i+1)); done",
             WRITES_MAX, KR_KIROKU_BIN, url, hex, path);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    execl("/bin/sh", "sh", "-c", script, (char *)NULL);
    _exit(127);
}

static size_t acked(const char *path, char names[][8])
{
    size_t len = 0, n = 0;
    if (access(path, F_OK) != 0)
        return 0;
    char *text = kr_test_slurp(path, &len);
    for (size_t i = 0; text && i + 7 <= len && n < WRITES_MAX; i += 7, n++)
        snprintf(names[n], 8, "%.6s", text + i);
    free(text);
    return n;
}

struct enough {
    const char *path;
    size_t n;
};
static bool enough_acked(void *arg)
{
    const struct enough *e = arg;
    char names[WRITES_MAX][8];
    return acked(e->path, names) >= e->n;
}

/* Whether every name is in contacts.list at url. */
static void assert_listed(const char *url, char names[][8], size_t n)
{
    struct ac c;
    ac_open(&c, url);
    assert_int_equal(ac_call(&c, KR_OP_CONTACTS_LIST, fx.token), AC_OK);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *ac_result(&c));
    for (size_t i = 0; i < n; i++)
        if (!memmem(sb.data, sb.size, names[i], 6))
            fail_msg("acknowledged write %s is not on the new primary", names[i]);
    msgpack_sbuffer_destroy(&sb);
    ac_close(&c);
}

/* The value of sample `name` on the /metrics page the node's newest line
 * names. */
static uint64_t metric(const struct node *n, const char *name)
{
    char http[256];
    kr_test_http_of(n->out, n->errf, http, sizeof http);
    return kr_test_metric(http, name);
}

static json_t *digests(const char *dir, uint64_t *records)
{
    const char *a[] = {"replay", "--check", "--json", "--data", dir, NULL};
    if (run(a) != 0)
        fail_msg("replay --check %s: %s %s", dir, fx.out, fx.err);
    json_error_t je;
    json_t *j = json_loads(fx.out, 0, &je);
    assert_non_null(j);
    *records = (uint64_t)json_integer_value(json_object_get(j, "records"));
    json_t *v = json_incref(json_object_get(j, "views"));
    json_decref(j);
    return v;
}

struct pair {
    const char *a, *b;
};
static bool same_views(void *arg)
{
    const struct pair *p = arg;
    uint64_t ra = 0, rb = 0;
    json_t *va = digests(p->a, &ra), *vb = digests(p->b, &rb);
    bool same = ra == rb && json_equal(va, vb);
    json_decref(va);
    json_decref(vb);
    return same;
}

static void assert_verifies(const char *dir)
{
    const char *a[] = {"verify", "--data", dir, NULL};
    if (run(a) != 0)
        fail_msg("verify %s: %s %s", dir, fx.out, fx.err);
}

/* The discarded-*.json report in dir, if any: its record count (-1: none). */
static int discarded_report(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "discarded-", 10) != 0)
            continue;
        char path[1000];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        json_error_t je;
        json_t *j = json_load_file(path, 0, &je);
        assert_non_null(j);
        count = (int)json_array_size(json_object_get(j, "records"));
        assert_true(count > 0);
        json_decref(j);
    }
    closedir(d);
    return count;
}

/* ---- Set-up ---- */

static void login(void)
{
    struct ac c;
    ac_open(&c, fx.p.ipc);
    ac_str(&c, KR_FLD_TENANT_CODE, fx.p.demo_code);
    ac_str(&c, KR_FLD_EMAIL, fx.p.demo_email);
    ac_str(&c, KR_FLD_PASSWORD, fx.p.demo_password);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_LOGIN, NULL), AC_OK);
    const msgpack_object *t = ac_get(ac_result(&c), KR_FLD_TOKEN);
    assert_non_null(t);
    assert_int_equal(t->via.bin.size, 32);
    memcpy(fx.token, t->via.bin.ptr, 32);
    ac_close(&c);
}

/* A backup of dir restored into to (a follower's start). */
static void backup_restore(const char *dir, const char *to)
{
    char backups[700], gen[900], pkpath[760];
    snprintf(backups, sizeof backups, "%.600s/backups", fx.p.dir);
    const char *b[] = {"backup", "--data", dir, "--to", backups, "--json", NULL};
    if (run(b) != 0)
        fail_msg("backup: %s %s", fx.out, fx.err);
    json_error_t je;
    json_t *j = json_loads(fx.out, 0, &je);
    assert_non_null(j);
    snprintf(gen, sizeof gen, "%s/%s", backups,
             json_string_value(json_object_get(j, "generation")));
    json_decref(j);
    snprintf(pkpath, sizeof pkpath, "%s/keys/journal-1.pub", dir);
    char *text = kr_test_slurp(pkpath, NULL);
    char pk[64];
    snprintf(pk, sizeof pk, "%.*s", (int)strcspn(text, "\n"), text);
    free(text);
    const char *r[] = {"restore", gen, "--data", to, "--pubkey", pk, NULL};
    if (run(r) != 0)
        fail_msg("restore: %s %s", fx.out, fx.err);
}

/* serve --demo makes the data (a tenant, its master's session, contacts),
 * then stops; each test gets a fresh NATS cluster. */
static int setup(void **state)
{
    (void)state;
    fx.out = malloc(OUT_MAX);
    fx.err = malloc(OUT_MAX);
    assert_non_null(fx.out);
    assert_non_null(fx.err);
    ac_server_start(&fx.p);
    login();
    for (int i = 0; i < 3; i++)
        assert_int_equal(write_one(fx.p.ipc, "before"), AC_OK);
    assert_int_equal(kill(fx.p.pid, SIGTERM), 0);
    waitpid(fx.p.pid, NULL, 0);
    fx.p.pid = 0;
    fx.nats = kr_nats_start(3);
    assert_non_null(fx.nats);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kr_nats_free(fx.nats);
    ac_server_stop(&fx.p);
    free(fx.out);
    free(fx.err);
    return 0;
}

/* ---- Tests ---- */

static void test_kill9_failover_and_rejoin(void **state)
{
    (void)state;
    struct node a, b;
    char bdata[700], acks[760];
    snprintf(bdata, sizeof bdata, "%.600s/b-data", fx.p.dir);
    snprintf(acks, sizeof acks, "%.600s/acked", fx.p.dir);
    node_init(&a, "a", fx.p.data);
    node_init(&b, "b", bdata);
    backup_restore(a.data, b.data);
    node_start(&a);
    wait_role(&a, "primary");
    node_start(&b);
    wait_role(&b, "follower");

    /* Quorum writes stream in; the primary dies mid-stream. */
    pid_t w = writer_start(a.ipc, acks);
    struct enough e = {acks, 10};
    assert_true(kr_test_wait_for(enough_acked, &e, KR_TEST_WAIT_MS, "10 acknowledged writes"));
    node_kill(&a, SIGKILL);
    kill(w, SIGKILL);
    waitpid(w, NULL, 0);
    char names[WRITES_MAX][8];
    size_t n = acked(acks, names);
    assert_true(n >= 10);

    /* The follower takes over: every acknowledged write is there. */
    wait_role(&b, "primary");
    assert_listed(b.ipc, names, n);
    assert_int_equal(write_one(b.ipc, "fo-new"), AC_OK);

    /* The old primary comes back: a follower, level with the new one. */
    node_start(&a);
    wait_role(&a, "follower");
    assert_int_equal(write_one(a.ipc, "fo-no"), KR_ERR_NOT_PRIMARY);
    struct pair p = {a.data, b.data};
    assert_true(kr_test_wait_for(same_views, &p, KR_TEST_WAIT_MS, "equal views"));
    int discarded = discarded_report(a.data);
    char *err = kr_test_slurp(a.errf, NULL);
    assert_true((discarded > 0) == (strstr(err, "discarded") != NULL));
    free(err);

    node_kill(&a, SIGTERM);
    node_kill(&b, SIGTERM);
    assert_verifies(a.data);
    assert_verifies(b.data);
}

static uint64_t size_of(const char *dir)
{
    struct journal *j = NULL;
    struct jrn_options o = {.dir = dir, .read_only = true};
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    uint64_t n = jrn_size(j);
    jrn_close(j);
    return n;
}

/* A clean stop hands the lease over at once; records the old primary then
 * commits offline (kiroku seed) are what a stream written by another epoch
 * never got: at its restart they are discarded, listed, and it follows. */
static void test_handover_then_discard(void **state)
{
    (void)state;
    struct node a, b;
    char bdata[700];
    snprintf(bdata, sizeof bdata, "%.600s/b-data", fx.p.dir);
    node_init(&a, "a", fx.p.data);
    node_init(&b, "b", bdata);
    backup_restore(a.data, b.data);
    node_start(&a);
    wait_role(&a, "primary");
    node_start(&b);
    wait_role(&b, "follower");
    assert_int_equal(write_one(a.ipc, "fo-a"), AC_OK);
    node_kill(&a, SIGTERM); /* gives the lease up: b takes over without the TTL */
    wait_role(&b, "primary");
    assert_int_equal(write_one(b.ipc, "fo-b"), AC_OK);

    uint64_t before = size_of(a.data);
    const char *seed[] = {"seed",       "--data", a.data,   "--tenants", "1",
                          "--contacts", "2",      "--seed", "9",         NULL};
    if (run(seed) != 0)
        fail_msg("seed: %s %s", fx.out, fx.err);
    uint64_t seeded = size_of(a.data) - before;
    assert_true(seeded > 0);

    node_start(&a);
    wait_role(&a, "follower");
    assert_int_equal(discarded_report(a.data), (int)seeded);
    assert_int_equal(metric(&a, "kiroku_node_discarded_records_total"), seeded);
    assert_int_equal(metric(&a, "kiroku_node_primary"), 0);
    assert_int_equal(metric(&b, "kiroku_node_primary"), 1);
    assert_int_equal(metric(&b, "kiroku_node_promotions_total"), 1);
    struct pair p = {a.data, b.data};
    assert_true(kr_test_wait_for(same_views, &p, KR_TEST_WAIT_MS, "equal views"));
    node_kill(&a, SIGTERM);
    node_kill(&b, SIGTERM);
    assert_verifies(a.data);
    assert_verifies(b.data);
}

static void test_foreign_publish_fences(void **state)
{
    (void)state;
    struct node a;
    node_init(&a, "a", fx.p.data);
    node_start(&a);
    wait_role(&a, "primary");
    assert_int_equal(write_one(a.ipc, "fo-one"), AC_OK);

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, fx.nats->node[0].url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    assert_int_equal(kr_nats_publish(js, "kiroku.main.journal", "not ours", 8), NATS_OK);

    int rc = write_one(a.ipc, "fo-two");
    assert_int_equal(rc, KR_ERR_NOT_PRIMARY);
    assert_int_equal(kr_test_stop(a.pid, 0, a.errf), 1); /* stepped down, then stopped at it */
    a.pid = 0;
    char *err = kr_test_slurp(a.errf, NULL);
    assert_non_null(strstr(err, "fenced"));
    /* The refused write was committed here, never published: discarded. */
    assert_int_equal(discarded_report(a.data), 1);
    assert_non_null(strstr(err, "discarded record"));
    assert_verifies(a.data);
    free(err);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

int main(void)
{
    if (!kr_nats_available()) {
        fprintf(stderr, "nats-server not found: skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill9_failover_and_rejoin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handover_then_discard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_publish_fences, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
