/*
 * cmd_serve.c: `kiroku serve`: opens the domain (making the journal on the
 * first run), starts the API server (api/server.h) with its e-mail worker,
 * and runs until SIGINT or SIGTERM, then stops gracefully.
 *
 * Signals are blocked in every thread (the mask is set before any thread
 * starts, so nng's and ours inherit it) and taken by sigwait in the main
 * thread: no handler runs in the middle of a request.
 *
 * --demo makes a demo tenant through the ops themselves, as a customer and
 * an operator would (sign-up, payment, the auth code from the outbox,
 * completion), plus a bootstrap operator, with random passwords. They are
 * written to DIR/demo.txt (mode 0600) and printed with the commands to use
 * them, which run as printed from the repository root; later runs print that
 * file again, but not a password the account no longer has.
 */
#include "accounts.h"
#include "alerts.h"
#include "cli.h"
#include "cluster.h"
#include "compose.h"
#include "config.h"
#include "daily.h"
#include "domain.h"
#include "gateway.h"
#include "http.h"
#include "keys.h"
#include "mailer.h"
#include "metrics.h"
#include "natskv.h"
#include "notices.h"
#include "path.h"
#include "platform.h"
#include "retention.h"
#include "retention_hooks.h"
#include "serve_jobs.h"
#include "serve_node.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char serve_usage[] =
    "usage: kiroku serve [--data DIR] [--listen URL]... [--operator URL]\n"
    "                    [--cert FILE --key FILE] [--client-ca FILE] [--workers N]\n"
    "                    [--inflight N]\n"
    "                    [--backups DIR [--backup-at HH:MM]] [--log-retention-days N]\n"
    "                    [--idle-timeout SECONDS] [--conns-per-peer N] [--conns N]\n"
    "                    [--config FILE] [--config-help] [--test-clock] [--demo] [--json]\n"
    "                    [--http URL] [--gateway URL] [--gateway-operator URL]\n"
    "                    [--nats URL[,URL...] [--replication async|quorum]\n"
    "                    [--shard NAME] [--publish-from SEQ]\n"
    "                    [--node NAME [--lease-ttl MS]] [--platform]]\n"
    "\n"
    "Serves the API over nng request/reply until SIGINT or SIGTERM. Clients\n"
    "connect to --listen (default " API_LISTEN_DEFAULT "; tcp://, tls+tcp://,\n"
    "ipc://; repeatable), operators to --operator (default ipc://DIR/operator.sock,\n"
    "mode 0600). tls+tcp:// needs --cert and --key (PEM); --client-ca makes a\n"
    "tls+tcp:// operator endpoint require client certificates from that CA.\n"
    "--inflight N: requests in flight at once on the client endpoint (default\n"
    "256, setting api.inflight; writes wait for their group commit without a\n"
    "thread each); --workers N: threads that decide them (default 4). A\n"
    "journal is made in DIR if it has none. E-mails go to the SMTP relay of\n"
    "smtp.url (the configuration), else are written to DIR/outbox/*.eml. --demo makes a demo "
    "tenant and operator when the journal\n"
    "has no tenant yet and prints how to log in (credentials in DIR/demo.txt).\n"
    "--json prints one line of JSON once listening. --config FILE: settings\n"
    "(default DIR/kiroku.conf if it exists; `name = value` lines);\n"
    "--config-help lists every setting with its default.\n"
    "--http URL (http://HOST:PORT, e.g. http://127.0.0.1:7451; setting\n"
    "http.listen; off by default) serves /metrics (Prometheus) and /healthz\n"
    "to operators: give a loopback address unless a scraper elsewhere needs it.\n"
    "--gateway URL (http://HOST:PORT or https://HOST:PORT with --cert/--key;\n"
    "setting api.gateway; off by default) serves the client ops as JSON over\n"
    "HTTP (POST /api/OP), browser sessions (/session) and the console (/);\n"
    "--gateway-operator URL (setting api.gateway_operator) the same for the\n"
    "operator ops: give a loopback address. Port 0 takes a free port. See\n"
    "docs/api.md, \"JSON over HTTP\".\n"
    "\n"
    "Replication: --nats URL[,URL...] (setting cluster.nats) publishes every\n"
    "committed range of the journal to the JetStream stream of --shard NAME\n"
    "(default main; stream KIROKU_<NAME>), which serve creates if needed.\n"
    "--replication async (default) acknowledges a write after the local flush;\n"
    "quorum also waits for JetStream's acknowledgement. At start serve reads the\n"
    "stream: one of another journal stops it; one ahead of this journal (a newer\n"
    "primary wrote it) makes it refuse writes (not_primary). A publish refused\n"
    "because another node wrote the stream meanwhile fences serve the same way.\n"
    "--publish-from SEQ: the first record an empty stream gets (default 1); for\n"
    "a journal joining a cluster whose followers start from a backup of SEQ-1\n"
    "records. See docs/operations.md, \"Running on several machines\".\n"
    "--node NAME (setting cluster.node) runs a node of the shard that changes\n"
    "role: it follows the primary (reads served, writes answered not_primary\n"
    "naming the lease holder) and, once the shard's lease lapses and it has\n"
    "applied the whole stream, takes the lease, starts a new epoch and takes\n"
    "writes; a primary that loses its lease or is fenced discards what the\n"
    "stream never got (listed in DIR/discarded-*.json), truncates and follows.\n"
    "--lease-ttl MS (setting cluster.lease_ttl, default 10000) when the lease\n"
    "bucket is made. --http serves the role's metrics and the node's. While\n"
    "primary, and only then, a node runs the daily jobs (with --backups DIR,\n"
    "its backups there at --backup-at), the incident notices, the alert scanner\n"
    "and the e-mail worker as serve does; they stop when it steps down. --backups\n"
    "DIR also names the generations an erasure reaches (tenants.erase on the\n"
    "primary, tenant.erased applied by a follower). A node that finds no current\n"
    "signing key (DIR/keys, the keyring) stays a follower and says so (/healthz).\n"
    "See docs/operations.md, \"Failover\".\n"
    "--platform (setting cluster.platform) makes a tenant shard's primary follow\n"
    "the platform shard's journal (--shard platform elsewhere) into DIR/platform,\n"
    "which must hold a restored backup of it, and import its notices and\n"
    "incidents; the platform's ops are then answered wrong_shard here. See\n"
    "docs/operations.md, \"The platform journal\".\n"
    "\n"
    "Connections: a connection that sent no complete request for\n"
    "--idle-timeout SECONDS (default 10; 0 = never) is closed; one peer address\n"
    "may hold --conns-per-peer N connections at once (default 64); the client\n"
    "endpoint takes --conns N at once (default 512), the operator endpoint 32\n"
    "of its own. A client that does not take its replies within 5 s, or lets\n"
    "16 MiB of them wait, is disconnected.\n"
    "\n"
    "Daily jobs (on a thread of their own): the retention job at start and\n"
    "every 24 hours (erases cancelled tenants that are due, strips platform\n"
    "logs older than --log-retention-days, default 400), and with --backups a\n"
    "backup into DIR every day at --backup-at (JST, default 03:00; at start\n"
    "too when that time has passed today), recorded as backup.completed or\n"
    "backup.failed. Each start is recorded (serve.started, with the version\n"
    "and the previous start's). KIROKU_CLOCK_OFFSET (drills and tests) is\n"
    "refused unless --test-clock is given.\n"
    "\n"
    "Exit status: 0 after a clean stop; 2 usage; 3 could not start, or\n"
    "stopping took over 60 s.\n";

/* ---- --demo ---- */

#define DEMO_MASTER_EMAIL   "owner@demo.kiroku.example"
#define DEMO_OPERATOR_EMAIL "operator@demo.kiroku.example"
#define DEMO_TENANT_NAME    "Demo shop"
#define DEMO_FILE           "demo.txt"
#define DEMO_TEXT_MAX       4096u

/* A random password: "demo-" and 20 letters and digits (about 103 bits). */
static void demo_password(char out[32])
{
    static const char abc[] = "abcdefghijkmnopqrstuvwxyz23456789";
    memcpy(out, "demo-", 5);
    for (size_t i = 0; i < 20; i++)
        out[5 + i] = abc[randombytes_uniform(sizeof abc - 1)];
    out[25] = '\0';
}

struct demo {
    struct kr_domain *d;
    struct kr_payload *a;
    struct kr_wbuf out;
    struct kr_diag diag;
};

static kr_err demo_exec(struct demo *m, const struct kr_caller *who, int op)
{
    kr_err err = dom_exec(m->d, who, op, m->a, &m->out, &m->diag);
    if (err)
        fprintf(stderr, "kiroku: serve --demo: %s: %s (%s: %s)\n", kr_ops[op].name,
                kr_strerror(err), m->diag.field, m->diag.why);
    return err;
}

/* Copies the bytes of result field fld (str or bin) into out. */
static kr_err demo_result(struct demo *m, int fld, void *out, size_t cap, size_t *len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    kr_err err = KR_ECORRUPT;
    const char *name = kr_fields[fld].name;
    if (msgpack_unpack_next(&u, m->out.data, m->out.size, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object *k = &u.data.via.map.ptr[i].key, *v = &u.data.via.map.ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != strlen(name) ||
                memcmp(k->via.str.ptr, name, k->via.str.size) != 0)
                continue;
            const char *p = v->type == MSGPACK_OBJECT_STR   ? v->via.str.ptr
                            : v->type == MSGPACK_OBJECT_BIN ? v->via.bin.ptr
                                                            : NULL;
            size_t n = v->type == MSGPACK_OBJECT_STR ? v->via.str.size : v->via.bin.size;
            if (p && n < cap) {
                memcpy(out, p, n);
                ((char *)out)[n] = '\0';
                *len = n;
                err = KR_OK;
            }
            break;
        }
    }
    msgpack_unpacked_destroy(&u);
    return err;
}

/* Whether the journal has any tenant (tenants.list, as an operator). */
static kr_err demo_has_tenants(struct demo *m, bool *has)
{
    struct kr_caller op = {.role = KR_ROLE_OPERATOR, .operator_endpoint = true, .system = true};
    kr_payload_reset(m->a, -1);
    kr_set_u64(m->a, KR_FLD_LIMIT, 1);
    kr_err err = demo_exec(m, &op, KR_OP_TENANTS_LIST);
    if (err)
        return err;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    *has = true;
    if (msgpack_unpack_next(&u, m->out.data, m->out.size, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < u.data.via.map.size; i++)
            if (u.data.via.map.ptr[i].val.type == MSGPACK_OBJECT_ARRAY)
                *has = u.data.via.map.ptr[i].val.via.array.size > 0;
    msgpack_unpacked_destroy(&u);
    return KR_OK;
}

struct code_find {
    uint64_t tenant;
    char code[24];
};

static bool find_code(void *arg, const struct outbox_msg *msg)
{
    struct code_find *f = arg;
    const struct kr_value *v = &msg->p->v[KR_FLD_AUTH_CODE];
    if (msg->tenant != f->tenant || msg->template_id != KR_TEMPLATE_AUTH_CODE || !v->set ||
        v->n >= sizeof f->code)
        return true;
    memcpy(f->code, v->p, v->n);
    f->code[v->n] = '\0';
    return false;
}

/* The command the printed instructions run: tools/run.sh builds it there, and
 * they are run from the repository root. */
#define DEMO_KIROKU "build/tools/kiroku"
/* The label of demo.txt's line of account ids, which later runs read to tell
 * whether a password printed is still the account's. */
#define DEMO_ACCOUNTS "  accounts:    "

/* What the instructions name. */
struct demo_names {
    const char *data, *client_url, *op_url;
    const char *tenant_code, *master_pw, *op_pw;
    uint64_t tenant;
    uint8_t master[16], op[16];
};

/* The demo's instructions, from the schema's names. Every command line runs
 * as printed from the repository root, in this order, whatever KIROKU_TOKEN
 * held before (auth.login does not send it). */
static int demo_text(char *out, size_t cap, const struct demo_names *n)
{
    const char *tc = kr_fields[KR_FLD_TENANT_CODE].name, *em = kr_fields[KR_FLD_EMAIL].name,
               *pw = kr_fields[KR_FLD_PASSWORD].name, *tok = kr_fields[KR_FLD_TOKEN].name,
               *login = kr_ops[KR_OP_AUTH_LOGIN].name;
    char master_hex[33], op_hex[33];
    sodium_bin2hex(master_hex, sizeof master_hex, n->master, 16);
    sodium_bin2hex(op_hex, sizeof op_hex, n->op, 16);
    return snprintf(
        out, cap,
        "demo tenant:   %s (\"%s\")\n"
        "  master:      %s  password %s\n"
        "  operator:    %s  password %s  (tenant code %s, operator endpoint)\n" DEMO_ACCOUNTS
        "master %s, operator %s, tenant \"%" PRIu64 "\"\n"
        "log in and call it (from the repository root):\n"
        "  export KIROKU_TOKEN=$(" DEMO_KIROKU " call --url %s %s "
        "'{\"%s\":\"%s\",\"%s\":\"%s\",\"%s\":\"%s\"}' | sed -n "
        "'s/.*\"%s\":\"\\([0-9a-f]*\\)\".*/\\1/p')\n"
        "  " DEMO_KIROKU " call --url %s %s\n"
        "  " DEMO_KIROKU " call --url %s %s\n"
        "as the operator:\n"
        "  " DEMO_KIROKU " call --url %s %s '{\"%s\":\"%s\",\"%s\":\"%s\",\"%s\":\"%s\"}'\n"
        "sign-up e-mails (auth codes) are written to %s/outbox/\n",
        n->tenant_code, DEMO_TENANT_NAME, DEMO_MASTER_EMAIL, n->master_pw, DEMO_OPERATOR_EMAIL,
        n->op_pw, KR_PLATFORM_CODE, master_hex, op_hex, n->tenant, n->client_url, login, tc,
        n->tenant_code, em, DEMO_MASTER_EMAIL, pw, n->master_pw, tok, n->client_url,
        kr_ops[KR_OP_AUTH_WHOAMI].name, n->client_url, kr_ops[KR_OP_CONTACTS_LIST].name, n->op_url,
        login, tc, KR_PLATFORM_CODE, em, DEMO_OPERATOR_EMAIL, pw, n->op_pw, n->data);
}

static kr_err demo_write(const char *path, const char *text, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return kr_err_from_errno(errno);
    kr_err err = KR_OK;
    if (write(fd, text, n) != (ssize_t)n || fsync(fd) != 0)
        err = KR_EIO;
    if (close(fd) != 0 && !err)
        err = KR_EIO;
    return err;
}

/* The word after `label` on the line of text that holds it (at most cap-1
 * bytes), or false. */
static bool demo_word(const char *text, const char *label, char *out, size_t cap)
{
    const char *p = strstr(text, label);
    if (!p)
        return false;
    p += strlen(label);
    size_t n = strcspn(p, " ,\"\n");
    if (n == 0 || n >= cap)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* Whether the account whose id is hex in `tenant` still has the password it
 * was made with (no account.password_changed since): false if it changed,
 * was deleted, or the ids cannot be read. */
static bool demo_password_current(struct kr_domain *d, uint64_t tenant, const char *hex)
{
    uint8_t id[16];
    size_t n = 0;
    if (sodium_hex2bin(id, sizeof id, hex, strlen(hex), NULL, &n, NULL) != 0 || n != 16)
        return false;
    MDB_txn *txn;
    if (mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn))
        return false;
    struct va_account a;
    kr_err err = va_account_get(&d->views, txn, tenant, id, &a);
    mdb_txn_abort(txn);
    return err == KR_OK && a.pw_ev == KR_EV_ACCOUNT_CREATED;
}

/* Replaces every `pw` in the NUL-terminated text with a
 * placeholder no longer than a password, so the text only shrinks. */
static void demo_hide(char *text, const char *pw)
{
    static const char gone[] = "(changed)";
    size_t pl = strlen(pw);
    if (pl < sizeof gone - 1)
        return;
    for (char *p = strstr(text, pw); p; p = strstr(p, pw)) {
        memcpy(p, gone, sizeof gone - 1);
        memmove(p + sizeof gone - 1, p + pl, strlen(p + pl) + 1);
        p += sizeof gone - 1;
    }
}

/* Prints DIR/demo.txt if it exists. A password that is no longer the
 * account's (changed through account.password, or the account deleted) is
 * not reprinted: it is shown as "(changed)", with a note. */
static bool demo_print_file(struct kr_domain *d, const char *path)
{
    char text[DEMO_TEXT_MAX], word[64], hex[40];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return false;
    text[n] = '\0';
    static const struct {
        const char *who, *label, *id_label;
    } people[] = {
        {"master", "  master:      ", "master "},
        {"operator", "  operator:    ", ", operator "},
    };
    /* The ids are read from their own line only. */
    const char *ids = strstr(text, DEMO_ACCOUNTS);
    uint64_t tenant = 0;
    char tenant_dec[24];
    bool have_ids = ids && demo_word(ids, ", tenant \"", tenant_dec, sizeof tenant_dec) &&
                    cli_parse_u64(tenant_dec, 1, UINT64_MAX, &tenant);
    /* First which passwords are stale, then hide them (which moves text). */
    char stale[2][64] = {"", ""}, notes[256] = "";
    for (size_t i = 0; i < sizeof people / sizeof people[0]; i++) {
        const char *line = strstr(text, people[i].label);
        char *pw = line ? strstr(line, "password ") : NULL;
        if (!pw || !demo_word(pw, "password ", word, sizeof word))
            continue;
        if (!have_ids) { /* a file of an older kiroku: nothing to check by */
            snprintf(notes, sizeof notes,
                     "note: these are the passwords first set; they may have been changed "
                     "since (account.password)\n");
            break;
        }
        if (demo_word(ids, people[i].id_label, hex, sizeof hex) &&
            demo_password_current(d, i == 0 ? tenant : 0, hex))
            continue;
        memcpy(stale[i], word, sizeof word);
        size_t used = strlen(notes);
        snprintf(notes + used, sizeof notes - used,
                 "note: the %s's password was changed since this demo was made: ask its "
                 "owner, or start over with an empty data directory\n",
                 people[i].who);
    }
    for (size_t i = 0; i < 2; i++)
        if (stale[i][0])
            demo_hide(text, stale[i]);
    fputs(text, stdout);
    fputs(notes, stdout);
    sodium_memzero(text, sizeof text);
    sodium_memzero(word, sizeof word);
    sodium_memzero(stale, sizeof stale);
    return true;
}

static kr_err demo_setup(struct kr_domain *d, const char *data, const char *client_url,
                         const char *op_url)
{
    char path[KR_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/" DEMO_FILE, data);
    struct demo m = {.d = d};
    kr_wbuf_init(&m.out, KR_API_REPLY_MAX);
    if (!(m.a = kr_payload_new()))
        return KR_ENOMEM;
    bool has = false;
    char op_pw[32], master_pw[32], tenant_code[KR_TENANT_CODE_MAX + 1], text[DEMO_TEXT_MAX];
    uint8_t app[16 + 1]; /* demo_result adds a NUL */
    size_t n;
    struct code_find f = {0};
    kr_err err = demo_has_tenants(&m, &has);
    if (err || has) {
        if (!err && !demo_print_file(d, path))
            printf("the journal has tenants already: no demo tenant made\n");
        goto out;
    }
    demo_password(op_pw);
    demo_password(master_pw);
    struct kr_caller op = {.role = KR_ROLE_OPERATOR, .operator_endpoint = true};
    struct kr_caller anon = {.role = -1};
    if ((err = dom_operator_create(d, DEMO_OPERATOR_EMAIL, op_pw, op.account))) {
        fprintf(stderr, "kiroku: serve --demo: operator: %s\n", kr_strerror(err));
        goto out;
    }
    kr_payload_reset(m.a, -1);
    kr_set_str(m.a, KR_FLD_EMAIL, DEMO_MASTER_EMAIL);
    if ((err = demo_exec(&m, &anon, KR_OP_SIGNUP_APPLY)) ||
        (err = demo_result(&m, KR_FLD_APPLICATION, app, sizeof app, &n)))
        goto out;
    if (n != 16) {
        err = KR_ECORRUPT;
        goto out;
    }
    MDB_txn *txn;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    err = va_signup_tenant(&d->views, txn, app, &f.tenant);
    mdb_txn_abort(txn);
    if (err)
        goto out;
    kr_payload_reset(m.a, -1);
    kr_set_bytes(m.a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(m.a, KR_FLD_PAYMENT_REF, "demo");
    if ((err = demo_exec(&m, &op, KR_OP_SIGNUP_CONFIRM_PAYMENT)))
        goto out;
    /* The auth code, as the applicant reads it in the e-mail. */
    if ((err = outbox_pending(d, 0, 0, find_code, &f, NULL)))
        goto out;
    if (!f.code[0]) {
        err = KR_ENOTFOUND;
        goto out;
    }
    kr_payload_reset(m.a, -1);
    kr_set_bytes(m.a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(m.a, KR_FLD_AUTH_CODE, f.code);
    kr_set_str(m.a, KR_FLD_PASSWORD, master_pw);
    kr_set_str(m.a, KR_FLD_TENANT_NAME, DEMO_TENANT_NAME);
    uint8_t master[16 + 1]; /* demo_result adds a NUL */
    size_t master_len = 0;
    if ((err = demo_exec(&m, &anon, KR_OP_SIGNUP_COMPLETE)) ||
        (err = demo_result(&m, KR_FLD_TENANT_CODE, tenant_code, sizeof tenant_code, &n)) ||
        (err = demo_result(&m, KR_FLD_ACCOUNT, master, sizeof master, &master_len)))
        goto out;
    if (master_len != 16) {
        err = KR_ECORRUPT;
        goto out;
    }
    struct demo_names names = {.data = data,
                               .client_url = client_url,
                               .op_url = op_url,
                               .tenant_code = tenant_code,
                               .master_pw = master_pw,
                               .op_pw = op_pw,
                               .tenant = f.tenant};
    memcpy(names.master, master, 16);
    memcpy(names.op, op.account, 16);
    int len = demo_text(text, sizeof text, &names);
    if (len < 0 || (size_t)len >= sizeof text) {
        err = KR_ETOOLARGE;
        goto out;
    }
    if ((err = demo_write(path, text, (size_t)len)))
        fprintf(stderr, "kiroku: serve --demo: writing %s: %s\n", path, kr_strerror(err));
    fputs(text, stdout);
out:
    sodium_memzero(op_pw, sizeof op_pw);
    sodium_memzero(master_pw, sizeof master_pw);
    sodium_memzero(&f, sizeof f);
    sodium_memzero(text, sizeof text);
    kr_payload_free(m.a);
    kr_wbuf_free(&m.out);
    return err;
}

/* ---- serve ---- */

/* Every connection holds a descriptor, and so does a connection still in
 * nng's SP handshake (at most 10 s, before the connection caps count it):
 * the soft limit is raised to the hard one, so that a flood of handshakes on
 * the client endpoint does not leave the operator endpoint without one. */
static void serve_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            fprintf(stderr, "kiroku: serve: raising the descriptor limit: %s\n", strerror(errno));
    }
}

static kr_err serve_open(const char *data, const struct kr_clock *clock, bool two_flushes,
                         const struct jrn_durable_hook *hook, struct kr_domain **d)
{
    struct jrn_start_fault sf = {0};
    struct kr_domain_options o = {.dir = data,
                                  .clock = clock,
                                  .two_flushes = two_flushes,
                                  .start_fault = &sf,
                                  .durable = hook};
    kr_err err = dom_open(&o, d);
    if (err == KR_ECORRUPT && sf.what[0]) {
        fprintf(stderr,
                "kiroku: serve: %s fails the start check at seq %" PRIu64 ": %s; "
                "not starting (run kiroku verify --data %s)\n",
                data, sf.seq, sf.what, data);
        return err;
    }
    if (err == KR_ENOTFOUND) {
        struct jrn_options jo = {.dir = data, .clock = clock};
        if ((err = jrn_create(&jo, NULL)))
            return err;
        fprintf(stderr, "kiroku: created a journal in %s\n", data);
        err = dom_open(&o, d);
    }
    return err;
}

/* ---- The state ---- */

#ifndef KIROKU_VERSION
#define KIROKU_VERSION "unknown"
#endif

/* What serve holds open. */
struct serve_state {
    struct kr_domain *d;
    struct cluster *cl;        /* --nats: the publisher, else NULL */
    struct api_platform *plat; /* --platform: the importer, else NULL */
    bool not_primary;          /* the stream is ahead: writes refused */
    struct tools_ret tr;
};

/* ---- A bound on stopping ----
 *
 * Stopping waits for the requests running and then for nng to close every
 * connection. The server closes connections so that nng 1.5.2 cannot hang
 * there (api/server.c), but a stop that still does not finish within
 * KR_SERVE_STOP_MAX_MS ends the process with exit status 3 and a line saying
 * so, rather than waiting for kill -9: every reply given was durable before
 * it was sent, and the next start checks the journal's tail. */

struct stop_watch {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool done;
};

static void *stop_watch_main(void *arg)
{
    struct stop_watch *sw = arg;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += KR_SERVE_STOP_MAX_MS / 1000;
    pthread_mutex_lock(&sw->mu);
    int rc = 0;
    while (!sw->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&sw->cv, &sw->mu, &until);
    bool done = sw->done;
    pthread_mutex_unlock(&sw->mu);
    if (!done) {
        static const char msg[] = "kiroku: serve: stopping did not finish within 60 s; "
                                  "exiting without a clean stop\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(CLI_FAIL);
    }
    return NULL;
}

/* One serve per process: the watch is static. */
static struct stop_watch serve_stop_watch = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Starts the watch (NULL if it could not: stopping is then unbounded). */
static struct stop_watch *stop_watch_start(void)
{
    struct stop_watch *sw = &serve_stop_watch;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sw->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t th;
    if (pthread_create(&th, NULL, stop_watch_main, sw) != 0)
        return NULL;
    pthread_detach(th);
    return sw;
}

/* The stop finished: the watch ends. */
static void stop_watch_done(struct stop_watch *sw)
{
    if (!sw)
        return;
    pthread_mutex_lock(&sw->mu);
    sw->done = true;
    pthread_cond_broadcast(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
}

/* What the command line asks of `serve`. */
struct serve_args {
    struct cli_common co;
    struct api_server_options so;
    const char *listen[KR_API_LISTEN_MAX];
    bool demo, test_clock;
    const char *backups;
    unsigned backup_at;
    uint64_t log_days;
    const char *config_path; /* --config, or NULL: DIR/kiroku.conf if it exists */
    const char *http;        /* --http URL, or NULL: the setting http.listen */
    const char *gateway;     /* --gateway URL, or NULL: the setting api.gateway */
    const char *gateway_op;  /* --gateway-operator URL, or NULL: api.gateway_operator */
    const char *nats;        /* --nats, or NULL: the setting cluster.nats */
    const char *replication; /* --replication, or NULL: cluster.replication */
    const char *shard;       /* --shard, or NULL: cluster.shard */
    uint64_t publish_from;   /* --publish-from, 0 = 1 */
    const char *node;        /* --node, or NULL: cluster.node (a role-changing node) */
    uint64_t lease_ttl_ms;   /* --lease-ttl, 0: cluster.lease_ttl */
    bool platform;           /* --platform, or the setting cluster.platform */
    bool config_help;
    struct kr_config *cfg;                        /* loaded by serve_config */
    struct compose_set *templates;                /* loaded by serve_templates */
    struct mailer_options mail;                   /* from cfg: serve_mail */
    char smtp_password[KR_SMTP_PASSWORD_MAX + 2]; /* wiped at the end */
};

/* A number option of serve in lo..hi, or a usage line saying so. */
static bool serve_number(const char *arg, uint64_t lo, uint64_t hi, const char *what, uint64_t *out)
{
    if (cli_parse_u64(arg, lo, hi, out))
        return true;
    fprintf(stderr, "kiroku: serve: %s is %" PRIu64 "..%" PRIu64 "\n", what, lo, hi);
    return false;
}

/* One option of serve's own (not a common one) into a; CLI_CONTINUE, or the
 * exit code of a usage error. */
static int serve_option(int c, struct serve_args *a)
{
    uint64_t n;
    switch (c) {
    case 'l':
        if (a->so.nlisten == KR_API_LISTEN_MAX) {
            fprintf(stderr, "kiroku: serve: at most %u --listen\n", KR_API_LISTEN_MAX);
            return CLI_USAGE;
        }
        a->listen[a->so.nlisten++] = optarg;
        return CLI_CONTINUE;
    case 'o':
        a->so.operator_url = optarg;
        return CLI_CONTINUE;
    case 'c':
        a->so.cert_file = optarg;
        return CLI_CONTINUE;
    case 'k':
        a->so.key_file = optarg;
        return CLI_CONTINUE;
    case 'a':
        a->so.client_ca_file = optarg;
        return CLI_CONTINUE;
    case 'w':
        if (!cli_parse_u64(optarg, 1, KR_API_WORKERS_MAX, &n))
            return cli_usage(serve_usage);
        a->so.workers = (unsigned)n;
        return CLI_CONTINUE;
    case 'I':
        if (!cli_parse_u64(optarg, 0, KR_API_IDLE_TIMEOUT_MS_MAX / 1000, &n)) {
            fprintf(stderr, "kiroku: serve: --idle-timeout is 0..%d seconds (0 = never)\n",
                    KR_API_IDLE_TIMEOUT_MS_MAX / 1000);
            return CLI_USAGE;
        }
        a->so.idle_timeout_ms = n ? (int)n * 1000 : -1;
        return CLI_CONTINUE;
    case 'P':
        if (!serve_number(optarg, 1, KR_API_CONNS_MAX, "--conns-per-peer", &n))
            return CLI_USAGE;
        a->so.conns_per_peer = (unsigned)n;
        return CLI_CONTINUE;
    case 'i':
        if (!serve_number(optarg, 1, KR_API_INFLIGHT_MAX, "--inflight", &n))
            return CLI_USAGE;
        a->so.inflight = (unsigned)n;
        return CLI_CONTINUE;
    case 'C':
        if (!serve_number(optarg, 1, KR_API_CONNS_MAX, "--conns", &n))
            return CLI_USAGE;
        a->so.conns_max = (unsigned)n;
        return CLI_CONTINUE;
    case 'D':
        a->demo = true;
        return CLI_CONTINUE;
    case 'T':
        a->test_clock = true;
        return CLI_CONTINUE;
    case 'B':
        a->backups = optarg;
        return CLI_CONTINUE;
    case 'A':
        if (!daily_parse_hhmm(optarg, &a->backup_at)) {
            fprintf(stderr, "kiroku: serve: --backup-at is HH:MM (JST), 00:00..23:59\n");
            return CLI_USAGE;
        }
        return CLI_CONTINUE;
    case 'F':
        a->config_path = optarg;
        return CLI_CONTINUE;
    case 'H':
        a->config_help = true;
        return CLI_CONTINUE;
    case 'W':
        a->http = optarg;
        return CLI_CONTINUE;
    case 'G':
        a->gateway = optarg;
        return CLI_CONTINUE;
    case 'g':
        a->gateway_op = optarg;
        return CLI_CONTINUE;
    case 'N':
        a->nats = optarg;
        return CLI_CONTINUE;
    case 'R':
        a->replication = optarg;
        return CLI_CONTINUE;
    case 'S':
        a->shard = optarg;
        return CLI_CONTINUE;
    case 'O':
        a->node = optarg;
        return CLI_CONTINUE;
    case 'X':
        a->platform = true;
        return CLI_CONTINUE;
    case 'E':
        return serve_number(optarg, KR_LEASE_TTL_MIN_MS, KR_LEASE_TTL_MAX_MS, "--lease-ttl",
                            &a->lease_ttl_ms)
                   ? CLI_CONTINUE
                   : CLI_USAGE;
    case 'Y':
        return serve_number(optarg, 1, UINT64_MAX >> 2, "--publish-from", &a->publish_from)
                   ? CLI_CONTINUE
                   : CLI_USAGE;
    case 'L':
        return serve_number(optarg, 1, KR_LOG_RETENTION_DAYS_MAX, "--log-retention-days",
                            &a->log_days)
                   ? CLI_CONTINUE
                   : CLI_USAGE;
    default:
        return cli_common_option(c, serve_usage, &a->co);
    }
}

/* The command line into a; CLI_CONTINUE, or the exit code to end with. */
static int serve_parse(int argc, char **argv, struct serve_args *a)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"listen", required_argument, 0, 'l'},
                                         {"operator", required_argument, 0, 'o'},
                                         {"cert", required_argument, 0, 'c'},
                                         {"key", required_argument, 0, 'k'},
                                         {"client-ca", required_argument, 0, 'a'},
                                         {"workers", required_argument, 0, 'w'},
                                         {"demo", no_argument, 0, 'D'},
                                         {"test-clock", no_argument, 0, 'T'},
                                         {"backups", required_argument, 0, 'B'},
                                         {"backup-at", required_argument, 0, 'A'},
                                         {"log-retention-days", required_argument, 0, 'L'},
                                         {"idle-timeout", required_argument, 0, 'I'},
                                         {"conns-per-peer", required_argument, 0, 'P'},
                                         {"conns", required_argument, 0, 'C'},
                                         {"inflight", required_argument, 0, 'i'},
                                         {"config", required_argument, 0, 'F'},
                                         {"config-help", no_argument, 0, 'H'},
                                         {"http", required_argument, 0, 'W'},
                                         {"gateway", required_argument, 0, 'G'},
                                         {"gateway-operator", required_argument, 0, 'g'},
                                         {"nats", required_argument, 0, 'N'},
                                         {"replication", required_argument, 0, 'R'},
                                         {"shard", required_argument, 0, 'S'},
                                         {"publish-from", required_argument, 0, 'Y'},
                                         {"node", required_argument, 0, 'O'},
                                         {"lease-ttl", required_argument, 0, 'E'},
                                         {"platform", no_argument, 0, 'X'},
                                         {0, 0, 0, 0}};
    int c, rc;
    memset(a, 0, sizeof *a);
    a->backup_at = 3 * 60;
    a->log_days = RET_LOG_DAYS_DEFAULT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
        if ((rc = serve_option(c, a)) != CLI_CONTINUE)
            return rc;
    if (optind != argc || (!a->so.cert_file != !a->so.key_file))
        return cli_usage(serve_usage);
    a->so.listen = a->listen;
    return CLI_CONTINUE;
}

/* Loads the configuration: --config FILE (which must exist), else
 * DIR/kiroku.conf if it exists, else every default. CLI_CONTINUE or the
 * exit code. */
static int serve_config(struct serve_args *a, const char *data)
{
    char dflt[KR_PATH_MAX], why[256];
    const char *path = a->config_path;
    if (!path) {
        if (kr_path_join(dflt, sizeof dflt, data, "kiroku.conf") != KR_OK)
            return cli_fail("serve: --data", KR_ETOOLARGE);
        path = dflt;
    }
    kr_err err = kr_config_load(path, &a->cfg, why, sizeof why);
    if (err == KR_ENOTFOUND && !a->config_path)
        err = kr_config_load(NULL, &a->cfg, why, sizeof why);
    if (err == KR_EINVAL) {
        fprintf(stderr, "kiroku: serve: %s: %s\n", path, why);
        return CLI_USAGE;
    }
    if (err) {
        fprintf(stderr, "kiroku: serve: %s: %s\n", path, kr_strerror(err));
        return CLI_FAIL;
    }
    return CLI_CONTINUE;
}

/* Loads the e-mail templates and settings (compose.h) and makes them the
 * ones the mailer uses: a missing or malformed template stops serve here.
 * CLI_CONTINUE or the exit code. */
static int serve_templates(struct serve_args *a)
{
    char from[KR_SMTP_ADDRESS_MAX + 16];
    snprintf(from, sizeof from, "kiroku <%s>", kr_config_str(a->cfg, "mail.from"));
    struct compose_opts o = {
        .templates_dir = kr_config_str(a->cfg, "mail.templates_dir"),
        .from = from,
        .payment_url = kr_config_str(a->cfg, "mail.payment_url"),
        .login_url = kr_config_str(a->cfg, "service.login_url"),
        .support = kr_config_str(a->cfg, "service.support"),
    };
    char why[512];
    kr_err err = compose_load(&o, &a->templates, why, sizeof why);
    if (err) {
        fprintf(stderr, "kiroku: serve: mail templates: %s\n", why[0] ? why : kr_strerror(err));
        return CLI_FAIL;
    }
    compose_install(a->templates);
    return CLI_CONTINUE;
}

/* The e-mail settings (smtp.*, mail.from) into a->mail, checked; the
 * relay's password read from smtp.password_file (private). CLI_CONTINUE or
 * the exit code. */
static int serve_mail(struct serve_args *a)
{
    const struct kr_config *c = a->cfg;
    struct mailer_options *m = &a->mail;
    memset(m, 0, sizeof *m);
    m->relay.url = kr_config_str(c, "smtp.url");
    m->relay.user = kr_config_str(c, "smtp.user");
    m->relay.from = kr_config_str(c, "mail.from");
    m->relay.ca_file = kr_config_str(c, "smtp.ca_file");
    m->relay.timeout_s = (unsigned)kr_config_u64(c, "smtp.timeout_s");
    m->retry_min_s = kr_config_u64(c, "smtp.retry_min_s");
    m->retry_max_s = kr_config_u64(c, "smtp.retry_max_s");
    m->give_up_s = kr_config_u64(c, "smtp.give_up_h") * 3600;
    a->so.mail = m;
    const char *from = m->relay.from, *at = strchr(from, '@');
    if (!at || at == from || !at[1] || strchr(at + 1, '@') || strpbrk(from, " <>\",;:()[]\\")) {
        fprintf(stderr, "kiroku: serve: mail.from is one address (name@host)\n");
        return CLI_USAGE;
    }
    if (!m->relay.url[0])
        return CLI_CONTINUE; /* .eml files */
    if (strncmp(m->relay.url, "smtp://", 7) && strncmp(m->relay.url, "smtps://", 8)) {
        fprintf(stderr, "kiroku: serve: smtp.url is smtp://host:port or smtps://host:port\n");
        return CLI_USAGE;
    }
    if (!smtp_starttls_parse(kr_config_str(c, "smtp.starttls"), &m->relay.starttls)) {
        fprintf(stderr, "kiroku: serve: smtp.starttls is required, optional or off\n");
        return CLI_USAGE;
    }
    const char *pw = kr_config_str(c, "smtp.password_file");
    if (pw[0]) {
        kr_err err = kr_file_read_small(pw, a->smtp_password, sizeof a->smtp_password, true);
        if (err) {
            fprintf(stderr, "kiroku: serve: smtp.password_file %s: %s\n", pw, kr_strerror(err));
            return CLI_FAIL;
        }
        a->smtp_password[strcspn(a->smtp_password, "\r\n")] = '\0';
        m->relay.password = a->smtp_password;
    }
    return CLI_CONTINUE;
}

kr_err serve_record_start(struct kr_domain *d, bool json)
{
    char host[256], previous[33];
    if (gethostname(host, sizeof host) != 0 || !host[0])
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    kr_err err = ret_serve_started(d, KIROKU_VERSION, host, previous);
    if (!err && previous[0] && strcmp(previous, KIROKU_VERSION) != 0 && !json)
        fprintf(stderr, "kiroku: serve: upgraded: %s, previously %s\n", KIROKU_VERSION, previous);
    return err;
}

/* The gateway's URLs: JSON members ("gateway", "gateway_operator") or
 * text lines. */
void serve_print_gateways(const struct api_server *s, bool json)
{
    static const char *const names[2] = {"gateway", "gateway_operator"};
    for (int i = 0; i < 2; i++) {
        const char *url = api_server_gateway_url(s, i == 1);
        if (!url)
            continue;
        if (json) {
            printf(",\"%s\":", names[i]);
            cli_json_str(stdout, url, strlen(url));
        } else {
            printf("  %s %s (JSON over HTTP, the console)\n",
                   i ? "gateway (operator):" : "gateway:", url);
        }
    }
}

/* Prints where it serves, as text or one JSON line. */
static void serve_print(const struct api_server *s, const struct api_http *h, const char *data,
                        bool json)
{
    const char *const *urls;
    size_t nurls = api_server_urls(s, &urls);
    if (json) {
        printf("{\"data\":");
        cli_json_str(stdout, data, strlen(data));
        printf(",\"listen\":[");
        for (size_t i = 0; i + 1 < nurls; i++) {
            printf(i ? "," : "");
            cli_json_str(stdout, urls[i], strlen(urls[i]));
        }
        printf("],\"operator\":");
        cli_json_str(stdout, urls[nurls - 1], strlen(urls[nurls - 1]));
        if (h) {
            printf(",\"http\":");
            cli_json_str(stdout, api_http_url(h), strlen(api_http_url(h)));
        }
        serve_print_gateways(s, true);
        printf(",\"pid\":%ld}\n", (long)getpid());
    } else {
        printf("kiroku: serving %s\n", data);
        for (size_t i = 0; i + 1 < nurls; i++)
            printf("  client:   %s\n", urls[i]);
        printf("  operator: %s\n", urls[nurls - 1]);
        if (h)
            printf("  http:     %s (/metrics, /healthz)\n", api_http_url(h));
        serve_print_gateways(s, false);
        printf("stop with Ctrl-C (SIGINT) or SIGTERM\n");
    }
    fflush(stdout);
}

/* The operators' HTTP endpoint (--http, else the setting http.listen; off
 * when neither) with its metrics. */
struct serve_http {
    struct api_metrics *m;
    struct api_http *h;
};

/* A bad --http URL (or http.listen) is a usage error, before anything opens. */
static int serve_http_check(const struct serve_args *a)
{
    const char *url = a->http ? a->http : kr_config_str(a->cfg, "http.listen");
    struct sockaddr_storage sa;
    size_t salen;
    if (url && url[0] && api_http_parse_url(url, &sa, &salen) != KR_OK) {
        fprintf(stderr,
                "kiroku: serve: --http %s: not http://HOST:PORT (HOST an IP address, "
                "[IPv6] or localhost)\n",
                url);
        return CLI_USAGE;
    }
    return CLI_CONTINUE;
}

/* The gateway's URLs (--gateway, --gateway-operator, else the settings
 * api.gateway, api.gateway_operator) into the server's options; a bad one is
 * a usage error, before anything opens. */
static int serve_gateway_check(struct serve_args *a)
{
    const char *urls[2] = {a->gateway ? a->gateway : kr_config_str(a->cfg, "api.gateway"),
                           a->gateway_op ? a->gateway_op
                                         : kr_config_str(a->cfg, "api.gateway_operator")};
    const char *flags[2] = {"--gateway", "--gateway-operator"};
    for (int i = 0; i < 2; i++) {
        bool tls = false;
        if (!urls[i] || !urls[i][0]) {
            urls[i] = NULL;
            continue;
        }
        if (!api_gateway_url_ok(urls[i], &tls)) {
            fprintf(stderr,
                    "kiroku: serve: %s %s: not http://HOST:PORT or https://HOST:PORT (HOST an "
                    "IP address, [IPv6] or localhost)\n",
                    flags[i], urls[i]);
            return CLI_USAGE;
        }
        if (tls && (!a->so.cert_file || !api_gateway_tls_available())) {
            fprintf(stderr, "kiroku: serve: %s %s: %s\n", flags[i], urls[i],
                    a->so.cert_file ? "this libmicrohttpd has no TLS: use http://"
                                    : "https:// needs --cert and --key");
            return CLI_USAGE;
        }
    }
    a->so.gateway_url = urls[0];
    a->so.gateway_operator_url = urls[1];
    return CLI_CONTINUE;
}

static unsigned serve_conns(const void *server)
{
    return api_server_conns(server);
}

/* What /healthz holds against (health.*; the backup age with --backups). */
static void serve_health_options(const struct serve_args *a, struct api_metrics_options *mo)
{
    *mo = (struct api_metrics_options){
        .backups_expected = a->backups != NULL,
        .backup_max_age_s = kr_config_u64(a->cfg, "health.backup_max_age_h") * 3600u,
        .outbox_backlog_max = kr_config_u64(a->cfg, "health.outbox_backlog_max"),
        .map_use_max_pct = kr_config_u64(a->cfg, "health.map_use_max_pct"),
        .checkpoint_file_lag_s = kr_config_u64(a->cfg, "health.checkpoint_lag_s"),
    };
}

static int serve_http_start(const struct serve_args *a, struct kr_domain *d,
                            const struct api_server *s, const struct serve_state *sj,
                            struct serve_http *out)
{
    memset(out, 0, sizeof *out);
    const char *url = a->http ? a->http : kr_config_str(a->cfg, "http.listen");
    if (!url || !url[0])
        return CLI_CONTINUE;
    struct api_metrics_options mo;
    serve_health_options(a, &mo);
    const char *why = "";
    kr_err err = api_metrics_new(d, &mo, &out->m);
    if (!err) {
        api_metrics_set_conns(out->m, serve_conns, s);
        api_metrics_set_cluster(out->m, sj->cl);
        api_metrics_set_platform(out->m, sj->plat);
        err = api_http_start(url, out->m, &out->h, &why);
    }
    if (err) {
        fprintf(stderr, "kiroku: serve: --http %s: %s%s%s\n", url, why, why[0] ? ": " : "",
                kr_strerror(err));
        api_metrics_free(out->m);
        out->m = NULL;
        return CLI_FAIL;
    }
    return CLI_CONTINUE;
}

/* Before the server stops: the metrics read its connections. */
static void serve_http_stop(struct serve_http *sh)
{
    api_http_stop(sh->h);
    api_metrics_free(sh->m);
    sh->h = NULL;
    sh->m = NULL;
}

/* ---- Replication (--nats) ---- */

/* Whether this serve imports the platform journal (--platform, or the
 * setting cluster.platform); CLI_USAGE is said when it cannot. */
static int serve_platform_wanted(const struct serve_args *a, bool *yes)
{
    const struct kr_config *cfg = a->cfg;
    const char *urls = a->nats ? a->nats : kr_config_str(cfg, "cluster.nats");
    const char *shard = a->shard ? a->shard : kr_config_str(cfg, "cluster.shard");
    *yes = a->platform || kr_config_bool(cfg, "cluster.platform");
    if (!*yes)
        return CLI_CONTINUE;
    if (!urls[0] || strcmp(shard, KR_PLATFORM_SHARD) == 0) {
        fprintf(stderr, "kiroku: serve: --platform is for a tenant shard's serve --nats (not "
                        "--shard " KR_PLATFORM_SHARD ")\n");
        return CLI_USAGE;
    }
    return CLI_CONTINUE;
}

/* The publisher from the options and settings, not connected yet (NULL
 * without --nats or cluster.nats). CLI_CONTINUE or the exit code. */
static int serve_cluster_new(const struct serve_args *a, struct cluster **out)
{
    *out = NULL;
    const struct kr_config *cfg = a->cfg;
    const char *urls = a->nats ? a->nats : kr_config_str(cfg, "cluster.nats");
    if (!urls[0])
        return CLI_CONTINUE;
    const char *mode = a->replication ? a->replication : kr_config_str(cfg, "cluster.replication");
    struct cluster_options o = {
        .urls = urls,
        .mode = strcmp(mode, "quorum") == 0 ? CLUSTER_QUORUM : CLUSTER_ASYNC,
        .shard = a->shard ? a->shard : kr_config_str(cfg, "cluster.shard"),
        .max_age_s = kr_config_u64(cfg, "cluster.max_age") * 86400u,
        .replicas = (unsigned)kr_config_u64(cfg, "cluster.replicas"),
        .publish_from = a->publish_from,
        .quiet = a->co.json,
    };
    if (strcmp(mode, "quorum") != 0 && strcmp(mode, "async") != 0) {
        fprintf(stderr, "kiroku: serve: --replication is async or quorum\n");
        return CLI_USAGE;
    }
    const char *why = "";
    kr_err err = cluster_new(&o, &why, out);
    if (err == KR_EINVAL) {
        fprintf(stderr, "kiroku: serve: --nats: %s\n", why);
        return CLI_USAGE;
    }
    return err ? cli_fail("serve", err) : CLI_CONTINUE;
}

/* --node (cluster.node) with --nats: a node that changes role
 * (serve_node.h) instead of a primary. CLI_CONTINUE when not asked. */
static int serve_node(const struct serve_args *a, const char *data, const struct kr_clock *clock,
                      const sigset_t *sigs)
{
    const struct kr_config *cfg = a->cfg;
    const char *urls = a->nats ? a->nats : kr_config_str(cfg, "cluster.nats");
    const char *node = a->node ? a->node : kr_config_str(cfg, "cluster.node");
    if (!urls[0] || !node[0])
        return CLI_CONTINUE;
    const char *mode = a->replication ? a->replication : kr_config_str(cfg, "cluster.replication");
    if (strcmp(mode, "quorum") != 0 && strcmp(mode, "async") != 0) {
        fprintf(stderr, "kiroku: serve: --replication is async or quorum\n");
        return CLI_USAGE;
    }
    if (!nkv_node_name_ok(node) || a->so.nlisten == 0) {
        fprintf(stderr, "kiroku: serve: --node needs a name ([A-Za-z0-9._-]) and --listen URL "
                        "(the endpoint clients are sent to)\n");
        return CLI_USAGE;
    }
    bool platform = false;
    int prc = serve_platform_wanted(a, &platform);
    if (prc != CLI_CONTINUE)
        return prc;
    struct serve_node_options o = {
        .platform = platform,
        .data = data,
        .urls = urls,
        .shard = a->shard ? a->shard : kr_config_str(cfg, "cluster.shard"),
        .node = node,
        .so = &a->so,
        .mode = strcmp(mode, "quorum") == 0 ? CLUSTER_QUORUM : CLUSTER_ASYNC,
        .max_age_s = kr_config_u64(cfg, "cluster.max_age") * 86400u,
        .replicas = (unsigned)kr_config_u64(cfg, "cluster.replicas"),
        .lease_ttl_ms =
            (uint32_t)(a->lease_ttl_ms ? a->lease_ttl_ms : kr_config_u64(cfg, "cluster.lease_ttl")),
        .clock = clock,
        .two_flushes = kr_config_bool(cfg, "journal.two_flushes"),
        .json = a->co.json,
        .http = a->http ? a->http : kr_config_str(cfg, "http.listen"),
        .log_days = (uint32_t)a->log_days,
    };
    if (!o.http[0])
        o.http = NULL;
    struct tools_ret tr; /* the backups an erasure reaches (--backups, or the default) */
    if (!tools_ret_init(&tr, data, a->backups, a->test_clock && clock != NULL))
        return CLI_USAGE;
    o.ret_hooks = &tr.hooks;
    struct serve_jobs_options jo; /* run while the node is the primary */
    serve_jobs_configure(&jo, a->cfg, clock, &tr, a->backups != NULL, a->backup_at, a->co.json);
    o.jobs = &jo;
    struct api_metrics_options mo;
    serve_health_options(a, &mo);
    o.health = &mo;
    sigset_t node_sigs = *sigs;
    sigaddset(&node_sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &node_sigs, NULL);
    return serve_node_run(&o, &node_sigs);
}

/* Starts publishing on the open journal. A stream ahead of it leaves serve
 * running with writes refused (not_primary); any other failure stops it.
 * CLI_CONTINUE or the exit code. */
static int serve_cluster_start(struct serve_state *sj)
{
    if (!sj->cl)
        return CLI_CONTINUE;
    char why[512];
    kr_err err = cluster_start(sj->cl, sj->d->j, why, sizeof why);
    if (err == KR_ENOTPRIMARY) {
        fprintf(stderr, "kiroku: serve: %s; serving reads only\n", why);
        jrn_stop_appends(sj->d->j, KR_ENOTPRIMARY);
        sj->not_primary = true;
        return CLI_CONTINUE;
    }
    if (err) {
        fprintf(stderr, "kiroku: serve: --nats: %s; not starting\n",
                why[0] ? why : kr_strerror(err));
        return CLI_FAIL;
    }
    return CLI_CONTINUE;
}

/* --platform: the importer of the platform journal into sj->d (a primary's
 * domain), marking it importing. CLI_CONTINUE or the exit code. */
static int serve_platform_start(const struct serve_args *a, const char *data,
                                const struct kr_clock *clock, struct kr_shardmap *m,
                                struct kr_domain *d, struct api_platform **out)
{
    bool yes;
    int rc = serve_platform_wanted(a, &yes);
    *out = NULL;
    if (rc != CLI_CONTINUE || !yes)
        return rc;
    const char *urls = a->nats ? a->nats : kr_config_str(a->cfg, "cluster.nats");
    struct api_platform_options o = {.nats = urls, .dir = data, .d = d, .m = m, .clock = clock};
    char why[512];
    kr_err err = api_platform_start(&o, out, why, sizeof why);
    if (err) {
        fprintf(stderr, "kiroku: serve: --platform: %s: %s\n", why, kr_strerror(err));
        return CLI_FAIL;
    }
    struct api_platform_status st;
    api_platform_status(*out, &st);
    if (!a->co.json)
        fprintf(stderr,
                "kiroku: serve: importing the platform journal (its copy holds %" PRIu64
                " records; imported up to platform seq %" PRIu64 ")\n",
                st.copied, st.origin);
    return CLI_CONTINUE;
}

/* With the domain open: the start recorded, the demo, the server and the
 * daily jobs, then serving until a signal, then stopping. */
static int serve_run(struct serve_args *a, const char *data, const struct kr_clock *clock,
                     struct serve_state *sj, const sigset_t *sigs)
{
    struct kr_domain *d = sj->d;
    kr_err err;
    if (!sj->not_primary && (err = serve_record_start(d, a->co.json)))
        return cli_fail("serve: recording the start", err);
    const char *client_url = a->so.nlisten ? a->listen[0] : API_LISTEN_DEFAULT;
    char op_url[KR_PATH_MAX + 32];
    if (a->so.operator_url)
        snprintf(op_url, sizeof op_url, "%s", a->so.operator_url);
    else
        snprintf(op_url, sizeof op_url, "ipc://%s/operator.sock", data);
    if (a->demo && (err = demo_setup(d, data, client_url, op_url)))
        return cli_fail("serve --demo", err);
    struct api_server *s;
    const char *why = "";
    if ((err = api_server_start(&a->so, d, &s, &why))) {
        fprintf(stderr, "kiroku: serve: %s: %s\n", why, kr_strerror(err));
        return CLI_FAIL;
    }
    struct serve_http http;
    if (serve_http_start(a, d, s, sj, &http) != CLI_CONTINUE) {
        api_server_stop(s);
        return CLI_FAIL;
    }
    struct serve_jobs_options jo;
    struct serve_jobs *jobs = NULL;
    serve_jobs_configure(&jo, a->cfg, clock, &sj->tr, a->backups != NULL, a->backup_at, a->co.json);
    if (!sj->not_primary && serve_jobs_start(&jo, d, &jobs)) { /* nothing to do on a replica */
        serve_http_stop(&http);
        api_server_stop(s);
        return CLI_FAIL;
    }
    serve_print(s, http.h, data, a->co.json);

    int sig = 0;
    while (sigwait(sigs, &sig) != 0)
        ;
    if (!a->co.json)
        fprintf(stderr, "kiroku: stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    api_server_stop_begin(s);
    serve_jobs_stop(jobs); /* after the job and the scan they run, if any */
    struct stop_watch *sw = stop_watch_start();
    serve_http_stop(&http);
    api_server_stop(s);
    api_platform_stop(sj->plat); /* an import under way finishes */
    sj->plat = NULL;
    cluster_stop(sj->cl, KR_SERVE_PUBLISH_GRACE_MS); /* what is durable, published */
    dom_close(d);
    sj->d = NULL;
    stop_watch_done(sw);
    return CLI_OK;
}

/* With the configuration loaded: the clock, the jobs, the signals, the
 * domain; then serve_run. */
static int serve_main(struct serve_args *a, const char *data)
{
    int rc;
    struct kr_offset_clock oc;
    const struct kr_clock *clock;
    if (!cli_clock("serve", a->test_clock, &oc, &clock))
        return CLI_FAIL;
    struct serve_state *sj = calloc(1, sizeof *sj);
    if (!sj)
        return cli_fail("serve", KR_ENOMEM);
    if (!tools_ret_init(&sj->tr, data, a->backups, a->test_clock && clock != NULL)) {
        free(sj);
        return CLI_USAGE;
    }

    /* Before any thread exists, so that every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    serve_raise_nofile();

    bool platform = false; /* --platform checked before anything connects */
    if ((rc = serve_platform_wanted(a, &platform)) != CLI_CONTINUE ||
        (rc = serve_node(a, data, clock, &sigs)) != CLI_CONTINUE) {
        free(sj);
        return rc;
    }
    if ((rc = serve_cluster_new(a, &sj->cl)) != CLI_CONTINUE) {
        free(sj);
        return rc;
    }
    kr_err err = serve_open(data, clock, kr_config_bool(a->cfg, "journal.two_flushes"),
                            sj->cl ? cluster_hook(sj->cl) : NULL, &sj->d);
    if (err) {
        cluster_free(sj->cl);
        free(sj);
        return cli_fail_open(data, err);
    }
    if (sj->cl && strcmp(a->shard ? a->shard : kr_config_str(a->cfg, "cluster.shard"),
                         KR_PLATFORM_SHARD) == 0)
        sj->d->platform = true; /* its notices' tenants live on other shards */
    if ((rc = serve_cluster_start(sj)) != CLI_CONTINUE ||
        (!sj->not_primary &&
         (rc = serve_platform_start(a, data, clock, NULL, sj->d, &sj->plat)) != CLI_CONTINUE)) {
        cluster_stop(sj->cl, 0);
        dom_close(sj->d);
        cluster_free(sj->cl);
        free(sj);
        return rc;
    }
    dom_set_retention(sj->d, &sj->tr.hooks, (uint32_t)a->log_days);
    rc = serve_run(a, data, clock, sj, &sigs);
    api_platform_stop(sj->plat); /* NULL when serve_run stopped it */
    cluster_stop(sj->cl, 0);     /* idempotent: serve_run stopped it after serving */
    dom_close(sj->d);            /* accepts NULL: serve_run closed it after stopping */
    cluster_free(sj->cl);        /* after the journal: its hook runs until then */
    free(sj);
    return rc;
}

int cmd_serve(int argc, char **argv)
{
    struct serve_args a;
    int rc = serve_parse(argc, argv, &a);
    if (rc != CLI_CONTINUE)
        return rc;
    if (a.config_help) {
        kr_config_describe(stdout);
        return CLI_OK;
    }
    const char *data = cli_data_dir(a.co.data);
    if ((rc = serve_config(&a, data)) != CLI_CONTINUE)
        return rc;
    if (!a.so.inflight) /* --inflight wins over the setting */
        a.so.inflight = (unsigned)kr_config_u64(a.cfg, "api.inflight");
    if ((rc = serve_http_check(&a)) == CLI_CONTINUE &&
        (rc = serve_gateway_check(&a)) == CLI_CONTINUE && (rc = serve_mail(&a)) == CLI_CONTINUE &&
        (rc = serve_templates(&a)) == CLI_CONTINUE)
        rc = serve_main(&a, data);
    compose_install(NULL);
    compose_free(a.templates);
    sodium_memzero(a.smtp_password, sizeof a.smtp_password);
    kr_config_free(a.cfg);
    return rc;
}
