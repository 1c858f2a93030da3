/*
 * node_jobs_test.c: a `kiroku serve --nats --node` that is its shard's
 * primary runs the background jobs plain serve runs (tools/serve_jobs.h)
 * and the e-mail worker, and a follower node runs none of them; a node
 * without its journal's current signing key stays a follower. Three
 * nats-servers (tools/nats_cluster.h), two kiroku nodes, lease TTL 2 s, the
 * clock moved (--test-clock, KIROKU_CLOCK_OFFSET) to 3 s before a daily
 * backup time (--backup-at 12:00 JST).
 *
 * - jobs follow the lease: on the primary a sign-up e-mail is delivered to
 *   its outbox (the mailer), three failed logins raise an alert (the
 *   scanner, alerts.login_failures.count = 3, its cursor file written), the
 *   backup runs at 12:00 (backup.completed, a generation in its --backups);
 *   the follower has the records and none of the work (no e-mail file, no
 *   cursor, no generation). After a clean stop of the primary the follower
 *   is promoted and runs them: its backup (at start, 12:00 having passed),
 *   the e-mail of another sign-up, and an alert (two more failures lock the
 *   account: the lockout rule), with its own cursor.
 * - no key: a follower node whose data holds no secret signing key, with
 *   the keyring's signing keys deleted, stays a follower when the lease is
 *   vacant: it says why, /healthz fails with "cannot be promoted",
 *   kiroku_node_promotable is 0, and writes are answered not_primary.
 *   Started alone (the lease vacant, the stream empty), such a node follows
 *   the empty stream; a node with the key then leads and it follows that.
 * - e-mail over SMTP (tests/api/smtp_relay.py, smtp.url): each sign-up's
 *   e-mail reaches the relay exactly once, from the primary of the moment.
 */
#include "accounts.h"
#include "api_client.h"
#include "keyring.h"
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

#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OUT_MAX    (1u << 20)
#define WRITES_MAX 40 /* under contacts.list's default page */

struct node {
    char name[8], data[700], out[720], errf[720], ipc[760], op[760], backups[720];
    pid_t pid;
};

struct fx {
    struct ac_server p; /* made the data: serve --demo, then stopped */
    struct kr_nats_cluster *nats;
    uint8_t token[32];
    char *out, *err;
    char conf[700];
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
    snprintf(n->backups, sizeof n->backups, "%s/%s-backups", fx.p.dir, name);
    mkdir(n->backups, 0700);
}

static void node_start(struct node *n)
{
    unlink(n->out);
    const char *argv[KR_TEST_NODE_ARGV_MAX];
    kr_test_node_argv(argv, &(struct kr_test_node_args){
                                n->name, n->data, kr_nats_urls(fx.nats), n->ipc, n->op,
                                (const char *const[]){"--http", "http://127.0.0.1:0", "--config",
                                                      fx.conf, "--test-clock", "--backups",
                                                      n->backups, "--backup-at", "12:00", NULL}});
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

/* The value of sample `name` on the /metrics page the node's newest line
 * names. */
static uint64_t metric(const struct node *n, const char *name)
{
    char http[256];
    kr_test_http_of(n->out, n->errf, http, sizeof http);
    return kr_test_metric(http, name);
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

/* ---- Reads and metrics ---- */

/* ---- Jobs ---- */

/* KIROKU_CLOCK_OFFSET that puts the clock 3 s before 12:00 JST of the next
 * day: the daily backup (--backup-at 12:00) is not due at the start and
 * falls due 3 s later. Set only while nodes start. */
static void clock_offset(char out[32])
{
    time_t now = time(NULL);
    long long day = ((long long)now + 9 * 3600) / 86400 + 1;
    long long at = day * 86400 + 12 * 3600 - 9 * 3600 - 3; /* 11:59:57 JST, in UTC */
    snprintf(out, 32, "%llds", at - (long long)now);
}

static void nodes_start(struct node *const *nodes, size_t n, const char *role)
{
    char off[32];
    clock_offset(off);
    setenv("KIROKU_CLOCK_OFFSET", off, 1);
    for (size_t i = 0; i < n; i++) {
        node_start(nodes[i]);
        wait_role(nodes[i], i == 0 ? role : "follower");
    }
    unsetenv("KIROKU_CLOCK_OFFSET");
}

static void signup(const char *url, const char *email)
{
    struct ac c;
    ac_open(&c, url);
    ac_str(&c, KR_FLD_EMAIL, email);
    assert_int_equal(ac_call(&c, KR_OP_SIGNUP_APPLY, NULL), AC_OK);
    ac_close(&c);
}

/* A fake ac_server naming only the data directory (for the outbox). */
static void mail_dir(struct ac_server *s, const char *data)
{
    memset(s, 0, sizeof *s);
    snprintf(s->data, sizeof s->data, "%.550s", data);
}

/* n logins of the demo master with a wrong password. */
static void fail_logins(const char *url, int n)
{
    for (int i = 0; i < n; i++) {
        struct ac c;
        ac_open(&c, url);
        ac_str(&c, KR_FLD_TENANT_CODE, fx.p.demo_code);
        ac_str(&c, KR_FLD_EMAIL, fx.p.demo_email);
        ac_str(&c, KR_FLD_PASSWORD, "not-the-password-1");
        assert_int_equal(ac_call(&c, KR_OP_AUTH_LOGIN, NULL), KR_ERR_UNAUTHENTICATED);
        ac_close(&c);
    }
}

/* Backup generations in dir. */
static size_t generations(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static bool has_cursor(const char *data)
{
    char path[800];
    snprintf(path, sizeof path, "%s/alerts.cursor", data);
    return access(path, F_OK) == 0;
}

struct count_of {
    const struct node *n;
    const char *type;
};
/* Whether the node's /metrics counts an event of that type since its role
 * began. */
static bool counted(void *arg)
{
    const struct count_of *c = arg;
    char name[128];
    snprintf(name, sizeof name, "kiroku_events_appended_total{type=\"%s\"}", c->type);
    return metric(c->n, name) >= 1;
}

static void wait_counted(const struct node *n, const char *type)
{
    struct count_of c = {n, type};
    if (!kr_test_wait_for(counted, &c, KR_TEST_WAIT_MS, type)) {
        kr_test_print_log(n->errf);
        fail_msg("node %s: no %s", n->name, type);
    }
}

/* Records of event `type` in the journal of a stopped node. */
static size_t records_of(const char *data, const char *type)
{
    char needle[96];
    snprintf(needle, sizeof needle, "\"type\":\"%s\"", type);
    assert_int_equal(run((const char *const[]){"dump", "--data", data, "--json", NULL}), 0);
    size_t n = 0;
    for (const char *p = fx.out; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static bool has_generation(void *arg)
{
    return generations(((const struct node *)arg)->backups) >= 1;
}

static void test_jobs_follow_the_lease(void **state)
{
    (void)state;
    struct node a, b;
    char bdata[700];
    snprintf(bdata, sizeof bdata, "%.600s/b-data", fx.p.dir);
    node_init(&a, "a", fx.p.data);
    node_init(&b, "b", bdata);
    backup_restore(a.data, b.data);
    size_t starts = records_of(a.data, "serve.started"); /* the demo's */
    nodes_start((struct node *const[]){&a, &b}, 2, "primary");
    struct ac_server ma, mb;
    mail_dir(&ma, a.data);
    mail_dir(&mb, b.data);

    /* The primary: the mailer, the alert scanner, the daily backup. */
    signup(a.ipc, "first@jobs.example.jp");
    assert_true(ac_mail_wait(&ma, "first@jobs.example.jp", "", NULL, 0));
    fail_logins(a.ipc, 3); /* alerts.login_failures.count = 3 */
    wait_counted(&a, "alert.raised");
    assert_true(has_cursor(a.data));
    wait_counted(&a, "backup.completed");
    assert_true(kr_test_wait_for(has_generation, &a, KR_TEST_WAIT_MS, "a's backup"));

    /* The follower has the records and ran none of it. */
    wait_counted(&b, "backup.completed");
    wait_counted(&b, "alert.raised");
    assert_int_equal(ac_mail_count(&mb, "first@jobs.example.jp"), 0);
    assert_false(has_cursor(b.data));
    assert_int_equal(generations(b.backups), 0);

    /* A clean stop hands the lease over: the new primary runs them. */
    node_kill(&a, SIGTERM);
    wait_role(&b, "primary");
    assert_true(kr_test_wait_for(has_generation, &b, KR_TEST_WAIT_MS, "b's backup"));
    wait_counted(&b, "backup.completed");
    signup(b.ipc, "second@jobs.example.jp");
    assert_true(ac_mail_wait(&mb, "second@jobs.example.jp", "", NULL, 0));
    /* Two more: the fifth locks the account (KR_LOGIN_FAILURES_MAX), a new
     * alert (lockout; login_failures raised once in its window already). */
    fail_logins(b.ipc, KR_LOGIN_FAILURES_MAX - 3);
    wait_counted(&b, "alert.raised");
    assert_true(has_cursor(b.data));
    node_kill(&b, SIGTERM);

    /* Each promotion recorded a start (serve.started), as plain serve does:
     * a's journal has its own after the demo's, b's has a's and its own. */
    assert_int_equal(records_of(a.data, "serve.started"), starts + 1);
    assert_int_equal(records_of(b.data, "serve.started"), starts + 2);
}

/* ---- No signing key ---- */

/* Deletes every signing key of the keyring bucket (journal.*). */
static void keyring_drop_signing_keys(void)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    kvKeysList keys = {0};
    assert_int_equal(natsConnection_ConnectTo(&nc, kr_nats_urls(fx.nats)), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    assert_int_equal(js_KeyValue(&kv, js, KR_KEYRING_BUCKET), NATS_OK);
    assert_int_equal(kvStore_Keys(&keys, kv, NULL), NATS_OK);
    int dropped = 0;
    for (int i = 0; i < keys.Count; i++)
        if (strncmp(keys.Keys[i], "journal.", 8) == 0) {
            assert_int_equal(kvStore_Purge(kv, keys.Keys[i], NULL), NATS_OK);
            dropped++;
        }
    assert_true(dropped >= 1);
    kvKeysList_Destroy(&keys);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* Deletes the secret signing keys of a data directory (keys/journal-N.key). */
static void drop_secret_keys(const char *data)
{
    char dir[800], path[1200];
    snprintf(dir, sizeof dir, "%s/keys", data);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "journal-", 8) == 0 && n > 4 &&
            strcmp(e->d_name + n - 4, ".pub") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            assert_int_equal(unlink(path), 0);
        }
    }
    closedir(d);
}

static bool said(void *arg)
{
    const struct node *n = arg;
    char *err = kr_test_slurp(n->errf, NULL);
    bool yes = err && strstr(err, "cannot become the primary");
    free(err);
    return yes;
}

/* GET /healthz of the node's newest line's http URL: the status and body. */
static long healthz(const struct node *n, struct kr_wbuf *b)
{
    char http[256], url[300];
    kr_test_http_of(n->out, n->errf, http, sizeof http);
    snprintf(url, sizeof url, "%s/healthz", http);
    return kr_test_http_get(url, b);
}

static void test_no_key_stays_follower(void **state)
{
    (void)state;
    struct node a, c;
    char cdata[700];
    snprintf(cdata, sizeof cdata, "%.600s/c-data", fx.p.dir);
    node_init(&a, "a", fx.p.data);
    node_init(&c, "c", cdata);
    backup_restore(a.data, c.data);
    drop_secret_keys(c.data);
    nodes_start((struct node *const[]){&a, &c}, 2, "primary");
    keyring_drop_signing_keys();

    /* The lease is given up: c may not take it. */
    node_kill(&a, SIGTERM);
    if (!kr_test_wait_for(said, &c, KR_TEST_WAIT_MS, "c saying why it stays a follower")) {
        kr_test_print_log(c.errf);
        fail();
    }
    assert_true(kr_test_wait_role(c.out, "follower", c.errf));
    assert_int_equal(metric(&c, "kiroku_node_promotable"), 0);
    struct kr_wbuf b;
    kr_wbuf_init(&b, 1u << 16);
    assert_int_equal(healthz(&c, &b), 503);
    assert_non_null(strstr((const char *)b.data, "node: cannot be promoted"));
    kr_wbuf_free(&b);
    struct ac w;
    ac_open(&w, c.ipc);
    ac_str(&w, KR_FLD_EMAIL, "nokey@jobs.example.jp");
    assert_int_equal(ac_call(&w, KR_OP_SIGNUP_APPLY, NULL), KR_ERR_NOT_PRIMARY);
    ac_close(&w);
    assert_true(kr_test_wait_role(c.out, "follower", c.errf));
    node_kill(&c, SIGTERM);
}

/* The first node of a shard, started alone without the signing key, does
 * not take the vacant lease: it follows the (empty) stream; a node with the
 * key started then becomes the primary, and the keyless one follows it. */
static void test_no_key_first_node_follows(void **state)
{
    (void)state;
    struct node a, c;
    char cdata[700];
    snprintf(cdata, sizeof cdata, "%.600s/c-data", fx.p.dir);
    node_init(&a, "a", fx.p.data);
    node_init(&c, "c", cdata);
    backup_restore(a.data, c.data);
    drop_secret_keys(c.data);
    nodes_start((struct node *const[]){&c}, 1, "follower");
    if (!kr_test_wait_for(said, &c, KR_TEST_WAIT_MS, "c saying why it stays a follower")) {
        kr_test_print_log(c.errf);
        fail();
    }
    assert_int_equal(metric(&c, "kiroku_node_promotable"), 0);

    nodes_start((struct node *const[]){&a}, 1, "primary");
    signup(a.ipc, "third@jobs.example.jp");
    wait_counted(&c, "signup.applied"); /* c follows a */
    assert_true(kr_test_wait_role(c.out, "follower", c.errf));
    node_kill(&a, SIGTERM);
    node_kill(&c, SIGTERM);
}

/* ---- E-mail over SMTP (tests/api/smtp_relay.py) ---- */

#define RELAY_PY KR_SOURCE_DIR "/tests/api/smtp_relay.py"

struct relay {
    char dir[256], url[64];
    pid_t pid;
};

static bool has_file(void *arg)
{
    return access(arg, F_OK) == 0;
}

static void relay_start(struct relay *r)
{
    char path[300], buf[32];
    snprintf(r->dir, sizeof r->dir, "/tmp/kr-node-relay-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl("/usr/bin/python3", "python3", RELAY_PY, r->dir, (char *)NULL);
        _exit(127);
    }
    snprintf(path, sizeof path, "%s/port", r->dir);
    assert_true(kr_test_wait_for(has_file, path, KR_TEST_WAIT_MS, "the relay's port"));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    snprintf(r->url, sizeof r->url, "smtp://127.0.0.1:%d", atoi(buf));
}

static void relay_stop(struct relay *r)
{
    char cmd[300];
    kill(r->pid, SIGTERM);
    waitpid(r->pid, NULL, 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    assert_int_equal(system(cmd), 0);
}

/* Messages the relay stored. */
static unsigned relay_stored(const struct relay *r)
{
    DIR *dh = opendir(r->dir);
    assert_non_null(dh);
    unsigned n = 0;
    for (struct dirent *e; (e = readdir(dh)) != NULL;)
        n += strncmp(e->d_name, "msg-", 4) == 0 && strstr(e->d_name, ".eml") != NULL;
    closedir(dh);
    return n;
}

struct relayed {
    const struct relay *r;
    const char *to;
};
/* Whether the relay stored a message whose envelope is addressed to `to`. */
static bool relayed_to(void *arg)
{
    const struct relayed *w = arg;
    for (unsigned k = 1; k <= relay_stored(w->r); k++) {
        char path[300];
        snprintf(path, sizeof path, "%s/msg-%u.env", w->r->dir, k);
        char *env = kr_test_slurp(path, NULL);
        bool yes = env && strstr(env, w->to);
        free(env);
        if (yes)
            return true;
    }
    return false;
}

/* The e-mail worker runs on the primary only, with serve's delivery
 * settings (smtp.url): each sign-up's e-mail reaches the relay once, from
 * whichever node is the primary, and a follower sends nothing. */
static void test_smtp_from_the_primary(void **state)
{
    (void)state;
    struct relay r;
    relay_start(&r);
    FILE *f = fopen(fx.conf, "a");
    assert_non_null(f);
    fprintf(f, "smtp.url = %s\nsmtp.starttls = off\n", r.url);
    assert_int_equal(fclose(f), 0);
    struct node a, b;
    char bdata[700];
    snprintf(bdata, sizeof bdata, "%.600s/b-data", fx.p.dir);
    node_init(&a, "a", fx.p.data);
    node_init(&b, "b", bdata);
    backup_restore(a.data, b.data);
    nodes_start((struct node *const[]){&a, &b}, 2, "primary");

    signup(a.ipc, "first@jobs.example.jp");
    struct relayed w1 = {&r, "first@jobs.example.jp"};
    assert_true(kr_test_wait_for(relayed_to, &w1, KR_TEST_WAIT_MS, "a's e-mail at the relay"));
    wait_counted(&b, "outbox.sent"); /* the delivery, recorded, reached the follower */
    node_kill(&a, SIGTERM);
    wait_role(&b, "primary");
    signup(b.ipc, "second@jobs.example.jp");
    struct relayed w2 = {&r, "second@jobs.example.jp"};
    assert_true(kr_test_wait_for(relayed_to, &w2, KR_TEST_WAIT_MS, "b's e-mail at the relay"));
    assert_int_equal(relay_stored(&r), 2); /* nothing sent twice, nothing by a follower */
    node_kill(&b, SIGTERM);
    relay_stop(&r);
}

/* ---- Set-up ---- */

static int setup(void **state)
{
    (void)state;
    fx.out = malloc(OUT_MAX);
    fx.err = malloc(OUT_MAX);
    assert_non_null(fx.out);
    assert_non_null(fx.err);
    ac_server_start(&fx.p);
    assert_int_equal(kill(fx.p.pid, SIGTERM), 0);
    waitpid(fx.p.pid, NULL, 0);
    fx.p.pid = 0;
    snprintf(fx.conf, sizeof fx.conf, "%.600s/kiroku-test.conf", fx.p.dir);
    FILE *f = fopen(fx.conf, "w");
    assert_non_null(f);
    fputs("alerts.login_failures.count = 3\n"
          "alerts.scan_interval_s = 1\n",
          f);
    assert_int_equal(fclose(f), 0);
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

int main(void)
{
    if (!kr_nats_available()) {
        fprintf(stderr, "nats-server not found: skipped\n");
        return 0;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jobs_follow_the_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_key_stays_follower, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_key_first_node_follows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smtp_from_the_primary, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
