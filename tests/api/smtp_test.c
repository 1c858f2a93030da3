/*
 * smtp_test.c: e-mail delivery over SMTP (api/smtp.c and the delivery loop
 * of api/mailer.c) against a real SMTP relay on loopback: tests/api/
 * smtp_relay.py (Debian python3-aiosmtpd), which stores what it accepts in
 * a directory and can be told to refuse (4xx, 5xx), stall, drop the
 * connection before its reply, or take a message and lose its reply.
 *
 * The delivery rounds run in this process (mailer_round) over a test domain
 * whose clock the tests move, so backoffs and the give-up time are tried
 * without waiting for them. What arrived is decoded (base64 bodies too) and
 * must carry the message's auth code and its stable Message-ID.
 */
#include "api_client.h"
#include "compose.h"
#include "mailer.h"
#include "notices.h"
#include "smtp.h"
#include "test_domain.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define PYTHON   "/usr/bin/python3"
#define RELAY_PY KR_SOURCE_DIR "/tests/api/smtp_relay.py"
#define TO       "shop@example.jp"
#define SEC      1000000000ull

/* ---- The relay ---- */

struct relay {
    char dir[256];
    char url[64];
    pid_t pid;
};

static void wait_file(const char *path, unsigned seconds)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (access(path, F_OK) == 0)
            return;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > (time_t)seconds)
            fail_msg("%s did not appear within %u s", path, seconds);
        usleep(10000);
    }
}

/* Starts the relay; with tls, it offers STARTTLS with a certificate for
 * "localhost" made here (r->dir/cert.pem, its own CA). */
static void relay_start_auth(struct relay *r, bool tls, const char *user, const char *password)
{
    char path[300], buf[32], cmd[1024], cert[300], key[300];
    snprintf(r->dir, sizeof r->dir, "/tmp/kr-smtp-relay-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    snprintf(cert, sizeof cert, "%s/cert.pem", r->dir);
    snprintf(key, sizeof key, "%s/key.pem", r->dir);
    if (tls) {
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                 "-keyout '%s' -out '%s' -days 2 -subj /CN=localhost "
                 "-addext subjectAltName=DNS:localhost 2>/dev/null",
                 key, cert);
        assert_int_equal(system(cmd), 0);
    }
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* it dies with the test, even a failed one */
        if (user)
            execl(PYTHON, PYTHON, RELAY_PY, r->dir, cert, key, user, password, (char *)NULL);
        else if (tls)
            execl(PYTHON, PYTHON, RELAY_PY, r->dir, cert, key, (char *)NULL);
        else
            execl(PYTHON, PYTHON, RELAY_PY, r->dir, (char *)NULL);
        _exit(127);
    }
    snprintf(path, sizeof path, "%s/port", r->dir);
    wait_file(path, 20);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    snprintf(r->url, sizeof r->url, "smtp://%s:%d", tls ? "localhost" : "127.0.0.1", atoi(buf));
}

static void relay_start_tls(struct relay *r, bool tls)
{
    relay_start_auth(r, tls, NULL, NULL);
}

static void relay_start(struct relay *r)
{
    relay_start_tls(r, false);
}

static void relay_stop(struct relay *r)
{
    char cmd[300];
    kill(r->pid, SIGTERM);
    waitpid(r->pid, NULL, 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    assert_int_equal(system(cmd), 0);
}

static void relay_mode(struct relay *r, const char *mode)
{
    char path[300];
    snprintf(path, sizeof path, "%s/mode", r->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", mode);
    fclose(f);
}

/* Messages the relay stored. */
static unsigned relay_stored(struct relay *r)
{
    DIR *dh = opendir(r->dir);
    unsigned n = 0;
    assert_non_null(dh);
    for (struct dirent *e; (e = readdir(dh)) != NULL;)
        n += strncmp(e->d_name, "msg-", 4) == 0 && strstr(e->d_name, ".eml") != NULL;
    closedir(dh);
    return n;
}

/* DATA commands the relay answered (or not), in any mode. */
static unsigned relay_attempts(struct relay *r)
{
    char path[300], line[64];
    unsigned n = 0;
    snprintf(path, sizeof path, "%s/log", r->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        n++;
    fclose(f);
    return n;
}

/* Message k (from 1) as stored, into a malloc'd NUL-terminated buffer. */
static char *relay_message(struct relay *r, unsigned k, const char *ext)
{
    char path[300];
    snprintf(path, sizeof path, "%s/msg-%u.%s", r->dir, k, ext);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* ---- The domain ---- */

struct fx {
    struct td *t;
    struct relay r;
    struct mailer_options o;
    uint64_t tenant;
    uint8_t message[16];
    char code[64]; /* the auth code the queued message carries */
};

struct pending_one {
    unsigned n;
    uint64_t tenant;
    uint8_t message[16];
    char code[64];
};

static bool pending_cb(void *arg, const struct outbox_msg *m)
{
    struct pending_one *p = arg;
    if (p->n++ == 0) {
        p->tenant = m->tenant;
        memcpy(p->message, m->message, 16);
        const struct kr_value *c = &m->p->v[KR_FLD_AUTH_CODE];
        if (c->set && c->n < sizeof p->code) {
            memcpy(p->code, c->p, c->n);
            p->code[c->n] = '\0';
        }
    }
    return true;
}

static unsigned pending(struct fx *x)
{
    struct pending_one p = {0};
    assert_int_equal(outbox_pending(x->t->d, 0, 0, pending_cb, &p, NULL), KR_OK);
    return p.n;
}

/* Queues one e-mail: an application, its payment confirmed, whose auth code
 * mail is the one pending message. */
static void queue_mail(struct fx *x)
{
    struct kr_caller anon = td_anonymous(), op = td_operator();
    uint8_t app[16];
    kr_set_str(td_args(x->t), KR_FLD_EMAIL, TO);
    assert_int_equal(td_exec(x->t, &anon, KR_OP_SIGNUP_APPLY), KR_OK);
    td_get_id(x->t, "application", app);
    /* signup.apply e-mails the payment link: handed over here, so the auth
     * code's mail is the one the relay gets. */
    struct pending_one link = {0};
    assert_int_equal(outbox_pending(x->t->d, 0, 0, pending_cb, &link, NULL), KR_OK);
    assert_int_equal(link.n, 1);
    assert_int_equal(dom_outbox_sent(x->t->d, link.tenant, link.message), KR_OK);
    struct kr_payload *a = td_args(x->t);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, "pay-1");
    assert_int_equal(td_exec(x->t, &op, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_OK);
    struct pending_one p = {0};
    assert_int_equal(outbox_pending(x->t->d, 0, 0, pending_cb, &p, NULL), KR_OK);
    assert_int_equal(p.n, 1);
    assert_true(p.code[0] != '\0');
    x->tenant = p.tenant;
    memcpy(x->message, p.message, 16);
    memcpy(x->code, p.code, sizeof x->code);
}

static struct fx *fx_new(void)
{
    struct fx *x = calloc(1, sizeof *x);
    assert_non_null(x);
    x->t = td_new(7);
    relay_start(&x->r);
    x->o = (struct mailer_options){
        .relay = {.url = x->r.url,
                  .starttls = SMTP_STARTTLS_OFF,
                  .from = "noreply@kiroku.test",
                  .timeout_s = 2},
        .retry_min_s = 60,
        .retry_max_s = 600,
        .give_up_s = 3600,
    };
    assert_int_equal(smtp_global_init(), KR_OK);
    queue_mail(x);
    return x;
}

static void fx_free(struct fx *x)
{
    relay_stop(&x->r);
    td_free(x->t);
    free(x);
}

static void advance(struct fx *x, uint64_t ns)
{
    x->t->now += ns;
}

/* One round; its stats. */
static struct mailer_stats round_(struct fx *x)
{
    struct mailer_stats st;
    assert_int_equal(mailer_round(x->t->d, &x->o, &st), KR_OK);
    return st;
}

/* The outbox records of the message: sent and failed counts; the last
 * failure's attempt, permanence and reason. */
struct history {
    unsigned sent, failed;
    uint64_t attempt;
    bool permanent;
    char reason[256];
};

static struct history history(struct fx *x)
{
    struct history h = {0};
    char stream[7 + 33];
    memcpy(stream, "outbox/", 7);
    sodium_bin2hex(stream + 7, 33, x->message, 16);
    struct jrn_query q = {.kind = JRN_Q_STREAM,
                          .from = 1,
                          .tenant = x->tenant,
                          .stream = stream,
                          .stream_len = strlen(stream)};
    struct jrn_cursor *cur;
    struct jrn_record r;
    struct kr_payload *p = kr_payload_new();
    assert_non_null(p);
    assert_int_equal(jrn_cursor_new(x->t->d->j, &q, &cur), KR_OK);
    while (jrn_cursor_next(cur, &r) == KR_OK) {
        int ev = kr_event_lookup(r.type, r.type_len);
        if (ev == KR_EV_OUTBOX_SENT)
            h.sent++;
        if (ev != KR_EV_OUTBOX_FAILED)
            continue;
        h.failed++;
        assert_int_equal(kr_event_decode(ev, &r, NULL, p, NULL), KR_OK);
        h.attempt = p->v[KR_FLD_DELIVERY_ATTEMPT].u;
        h.permanent = p->v[KR_FLD_PERMANENT].b;
        const struct kr_value *v = &p->v[KR_FLD_REASON];
        memcpy(h.reason, v->p, v->n);
        h.reason[v->n] = '\0';
    }
    jrn_cursor_free(cur);
    kr_payload_free(p);
    return h;
}

/* ---- Reading what arrived ---- */

/* The body of message text, decoded if it is base64; malloc'd. */
static char *decoded_body(const char *text)
{
    const char *body = strstr(text, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    const char *cte = strstr(text, "Content-Transfer-Encoding: base64");
    char *out = calloc(1, strlen(body) + 1);
    assert_non_null(out);
    if (!cte || cte > body) {
        memcpy(out, body, strlen(body));
        return out;
    }
    size_t n;
    assert_int_equal(sodium_base642bin((unsigned char *)out, strlen(body), body, strlen(body),
                                       "\r\n", &n, NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    out[n] = '\0';
    return out;
}

/* Message k of the relay is x's message: envelope, Message-ID, the code. */
static void check_arrived(struct fx *x, unsigned k)
{
    char hex[33], want[64];
    sodium_bin2hex(hex, sizeof hex, x->message, 16);
    char *env = relay_message(&x->r, k, "env");
    assert_string_equal(env, "noreply@kiroku.test\n" TO "\n");
    free(env);
    char *text = relay_message(&x->r, k, "eml");
    snprintf(want, sizeof want, "\r\nMessage-ID: <%s@", hex);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "\r\nTo: <" TO ">\r\n"));
    assert_non_null(strstr(text, "\r\nFrom: kiroku <noreply@kiroku.test>\r\n"));
    char *body = decoded_body(text);
    assert_non_null(strstr(body, x->code));
    sodium_memzero(text, strlen(text));
    free(body);
    free(text);
}

/* No .eml file of the message is left in DIR/outbox. */
static void check_no_copy(struct fx *x)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/outbox", x->t->dir);
    DIR *dh = opendir(dir);
    if (!dh) {
        assert_int_equal(errno, ENOENT);
        return;
    }
    for (struct dirent *e; (e = readdir(dh)) != NULL;)
        assert_true(e->d_name[0] == '.');
    closedir(dh);
    assert_false(td_dir_contains(x->t->dir, x->code, strlen(x->code)));
}

/* ---- Tests ---- */

static void test_delivered(void **state)
{
    (void)state;
    struct fx *x = fx_new();
    struct mailer_stats st = round_(x);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(relay_stored(&x->r), 1);
    check_arrived(x, 1);
    struct history h = history(x);
    assert_int_equal(h.sent, 1);
    assert_int_equal(h.failed, 0);
    assert_int_equal(pending(x), 0);
    check_no_copy(x);
    /* Nothing twice: the next round, and one after reopening, send nothing. */
    st = round_(x);
    assert_int_equal(st.delivered + st.failed + st.waiting, 0);
    td_reopen(x->t);
    st = round_(x);
    assert_int_equal(st.delivered + st.failed + st.waiting, 0);
    assert_int_equal(relay_attempts(&x->r), 1);
    fx_free(x);
}

static void test_temporary_refusal_retried(void **state)
{
    (void)state;
    struct fx *x = fx_new();
    relay_mode(&x->r, "temp");
    struct mailer_stats st = round_(x);
    assert_int_equal(st.failed, 1);
    struct history h = history(x);
    assert_int_equal(h.failed, 1);
    assert_int_equal(h.attempt, 1);
    assert_false(h.permanent);
    assert_string_equal(h.reason, "the relay replied 451");
    assert_int_equal(pending(x), 1);

    /* Not before its backoff (60 s), even across a restart. */
    relay_mode(&x->r, "accept");
    st = round_(x);
    assert_int_equal(st.waiting, 1);
    td_reopen(x->t);
    advance(x, 59 * SEC);
    st = round_(x);
    assert_int_equal(st.waiting, 1);
    assert_int_equal(relay_attempts(&x->r), 1);

    /* Second failure: the backoff doubles to 120 s. */
    relay_mode(&x->r, "temp");
    advance(x, 2 * SEC);
    st = round_(x);
    assert_int_equal(st.failed, 1);
    assert_int_equal(history(x).attempt, 2);
    relay_mode(&x->r, "accept");
    advance(x, 100 * SEC);
    st = round_(x);
    assert_int_equal(st.waiting, 1);
    advance(x, 21 * SEC);
    st = round_(x);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(relay_stored(&x->r), 1);
    check_arrived(x, 1);
    h = history(x);
    assert_int_equal(h.sent, 1);
    assert_int_equal(h.failed, 2);
    assert_int_equal(pending(x), 0);
    check_no_copy(x);
    fx_free(x);
}

static void test_permanent_refusal(void **state)
{
    (void)state;
    struct fx *x = fx_new();
    relay_mode(&x->r, "perm");
    struct mailer_stats st = round_(x);
    assert_int_equal(st.failed, 1);
    struct history h = history(x);
    assert_int_equal(h.failed, 1);
    assert_true(h.permanent);
    assert_string_equal(h.reason, "the relay replied 550");
    assert_int_equal(h.sent, 0);
    assert_int_equal(pending(x), 0);
    /* Never tried again. */
    relay_mode(&x->r, "accept");
    advance(x, 3600 * SEC);
    st = round_(x);
    assert_int_equal(st.delivered + st.failed + st.waiting, 0);
    assert_int_equal(relay_attempts(&x->r), 1);
    assert_int_equal(relay_stored(&x->r), 0);
    fx_free(x);
}

static void test_drop_and_stall_retried(void **state)
{
    (void)state;
    struct fx *x = fx_new();
    relay_mode(&x->r, "drop");
    struct mailer_stats st = round_(x);
    assert_int_equal(st.failed, 1);
    struct history h = history(x);
    assert_false(h.permanent);
    assert_int_equal(pending(x), 1);

    relay_mode(&x->r, "stall"); /* the session times out after 2 s */
    advance(x, 61 * SEC);
    st = round_(x);
    assert_int_equal(st.failed, 1);
    h = history(x);
    assert_int_equal(h.attempt, 2);
    assert_false(h.permanent);
    assert_non_null(strstr(h.reason, "timed out"));
    assert_int_equal(relay_stored(&x->r), 0);

    relay_mode(&x->r, "accept");
    advance(x, 121 * SEC);
    st = round_(x);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(relay_stored(&x->r), 1);
    check_arrived(x, 1);
    assert_int_equal(history(x).sent, 1);
    assert_int_equal(relay_attempts(&x->r), 3);
    fx_free(x);
}

/* A relay that took the message but whose reply was lost: it is sent
 * again, with the same Message-ID, so the receiver can drop the copy. */
static void test_lost_reply_same_message_id(void **state)
{
    (void)state;
    struct fx *x = fx_new();
    relay_mode(&x->r, "lost");
    struct mailer_stats st = round_(x);
    assert_int_equal(st.failed, 1);
    assert_int_equal(relay_stored(&x->r), 1);
    relay_mode(&x->r, "accept");
    advance(x, 61 * SEC);
    st = round_(x);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(relay_stored(&x->r), 2);
    check_arrived(x, 1);
    check_arrived(x, 2);
    struct history h = history(x);
    assert_int_equal(h.sent, 1);
    assert_int_equal(h.failed, 1);
    fx_free(x);
}

/* Undelivered past give_up_s since it was queued: a permanent failure,
 * without another attempt. */
static void test_gives_up(void **state)
{
    (void)state;
    struct fx *x = fx_new();
    relay_mode(&x->r, "temp");
    assert_int_equal(round_(x).failed, 1);
    advance(x, 3601 * SEC);
    struct mailer_stats st = round_(x);
    assert_int_equal(st.failed, 1);
    struct history h = history(x);
    assert_int_equal(h.failed, 2);
    assert_int_equal(h.attempt, 2);
    assert_true(h.permanent);
    assert_string_equal(h.reason, "not delivered within 1 hours of queuing");
    assert_int_equal(relay_attempts(&x->r), 1);
    assert_int_equal(pending(x), 0);
    fx_free(x);
}

/* STARTTLS required and the relay does not offer it: nothing goes in
 * clear, and it stays pending. */
static void test_starttls_required(void **state)
{
    (void)state;
    struct fx *x = fx_new();
    x->o.relay.starttls = SMTP_STARTTLS_REQUIRED;
    struct mailer_stats st = round_(x);
    assert_int_equal(st.failed, 1);
    struct history h = history(x);
    assert_false(h.permanent);
    assert_string_equal(h.reason, "the relay did not offer STARTTLS (required)");
    assert_int_equal(relay_attempts(&x->r), 0);
    assert_int_equal(pending(x), 1);
    /* optional: sent in clear to a relay without it. */
    x->o.relay.starttls = SMTP_STARTTLS_OPTIONAL;
    advance(x, 61 * SEC);
    assert_int_equal(round_(x).delivered, 1);
    check_arrived(x, 1);
    fx_free(x);
}

/* Without a relay the .eml files stay; the daily prune deletes those older
 * than the age it is given, and nothing else. */
static void test_prune_files(void **state)
{
    (void)state;
    struct fx *x = fx_new();
    size_t written, deleted;
    char dir[600], path[1024], keep[800];
    assert_int_equal(mailer_run(x->t->d, &written), KR_OK);
    assert_int_equal(written, 1);
    snprintf(dir, sizeof dir, "%s/outbox", x->t->dir);
    DIR *dh = opendir(dir);
    assert_non_null(dh);
    path[0] = '\0';
    for (struct dirent *e; (e = readdir(dh)) != NULL;)
        if (e->d_name[0] != '.')
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    closedir(dh);
    assert_true(path[0] != '\0');
    snprintf(keep, sizeof keep, "%s/notes.txt", dir); /* not the mailer's */
    FILE *f = fopen(keep, "w");
    assert_non_null(f);
    fclose(f);

    uint64_t now = x->t->now, day = 86400 * SEC;
    struct timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = (time_t)((now - 6 * day) / SEC);
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    assert_int_equal(utimensat(AT_FDCWD, keep, ts, 0), 0);
    assert_int_equal(mailer_prune_files(x->t->d, 7 * day, &deleted), KR_OK);
    assert_int_equal(deleted, 0);
    assert_int_equal(access(path, F_OK), 0);

    ts[0].tv_sec = ts[1].tv_sec = (time_t)((now - 8 * day) / SEC);
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    assert_int_equal(utimensat(AT_FDCWD, keep, ts, 0), 0);
    assert_int_equal(mailer_prune_files(x->t->d, 7 * day, &deleted), KR_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(keep, F_OK), 0);
    assert_false(td_dir_contains(x->t->dir, x->code, strlen(x->code)));
    fx_free(x);
}

/* STARTTLS to a relay whose certificate the configured CA signed: sent
 * encrypted; against the system's CAs the certificate is refused and
 * nothing is sent. */
static void test_starttls_verified(void **state)
{
    (void)state;
    struct relay r;
    struct smtp_options o = {
        .starttls = SMTP_STARTTLS_REQUIRED, .from = "noreply@kiroku.test", .timeout_s = 5};
    struct smtp_failure f;
    const char msg[] = "Subject: tls\r\nMessage-ID: <tls@kiroku.test>\r\n\r\nover TLS\r\n";
    char ca[300];
    relay_start_tls(&r, true);
    o.url = r.url;
    assert_int_equal(smtp_global_init(), KR_OK);
    assert_int_equal(smtp_send(&o, TO, (const uint8_t *)msg, strlen(msg), &f), KR_EIO);
    assert_false(f.permanent);
    assert_non_null(strstr(f.reason, "peer certificate"));
    assert_int_equal(relay_attempts(&r), 0);
    snprintf(ca, sizeof ca, "%s/cert.pem", r.dir);
    o.ca_file = ca;
    assert_int_equal(smtp_send(&o, TO, (const uint8_t *)msg, strlen(msg), &f), KR_OK);
    assert_int_equal(relay_stored(&r), 1);
    char *text = relay_message(&r, 1, "eml");
    assert_non_null(strstr(text, "over TLS"));
    free(text);
    relay_stop(&r);
}

/* smtps://: TLS from the first byte (no STARTTLS), the relay's certificate
 * checked as with STARTTLS. */
static void test_smtps(void **state)
{
    (void)state;
    struct relay r;
    struct smtp_options o = {
        .starttls = SMTP_STARTTLS_OFF, .from = "noreply@kiroku.test", .timeout_s = 5};
    struct smtp_failure f;
    const char msg[] = "Subject: smtps\r\nMessage-ID: <smtps@kiroku.test>\r\n\r\nimplicit TLS\r\n";
    char ca[300], url[sizeof r.url + 8];
    setenv("KIROKU_RELAY_IMPLICIT_TLS", "1", 1);
    relay_start_tls(&r, true);
    unsetenv("KIROKU_RELAY_IMPLICIT_TLS");
    assert_true(strncmp(r.url, "smtp://", 7) == 0);
    snprintf(url, sizeof url, "smtps://%s", r.url + 7);
    o.url = url;
    assert_int_equal(smtp_global_init(), KR_OK);
    /* Unknown CA: refused before anything is sent. */
    assert_int_equal(smtp_send(&o, TO, (const uint8_t *)msg, strlen(msg), &f), KR_EIO);
    assert_false(f.permanent);
    assert_int_equal(relay_attempts(&r), 0);
    snprintf(ca, sizeof ca, "%s/cert.pem", r.dir);
    o.ca_file = ca;
    assert_int_equal(smtp_send(&o, TO, (const uint8_t *)msg, strlen(msg), &f), KR_OK);
    assert_int_equal(relay_stored(&r), 1);
    char *text = relay_message(&r, 1, "eml");
    assert_non_null(strstr(text, "implicit TLS"));
    free(text);
    /* Plain smtp:// to a TLS-only port gets no reply it can read: a
     * temporary failure, nothing delivered. */
    o.url = r.url;
    o.timeout_s = 2;
    assert_int_equal(smtp_send(&o, TO, (const uint8_t *)msg, strlen(msg), &f), KR_EIO);
    assert_false(f.permanent);
    assert_int_equal(relay_stored(&r), 1);
    relay_stop(&r);
}

/* A relay that requires AUTH: the wrong password is a temporary failure
 * (a configuration to fix, not the message's fault); the right one
 * delivers. */
static void test_auth(void **state)
{
    (void)state;
    struct relay r;
    struct smtp_options o = {.starttls = SMTP_STARTTLS_REQUIRED,
                             .from = "noreply@kiroku.test",
                             .user = "kiroku",
                             .password = "not-the-password",
                             .timeout_s = 5};
    struct smtp_failure f;
    const char msg[] = "Subject: auth\r\nMessage-ID: <auth@kiroku.test>\r\n\r\nlogged in\r\n";
    char ca[300];
    relay_start_auth(&r, true, "kiroku", "Relay-Secret-9");
    snprintf(ca, sizeof ca, "%s/cert.pem", r.dir);
    o.url = r.url;
    o.ca_file = ca;
    assert_int_equal(smtp_global_init(), KR_OK);
    assert_int_equal(smtp_send(&o, TO, (const uint8_t *)msg, strlen(msg), &f), KR_EIO);
    assert_false(f.permanent);
    assert_string_equal(f.reason, "the relay refused the login");
    assert_null(strstr(f.reason, "not-the-password"));
    assert_int_equal(relay_stored(&r), 0);
    o.password = "Relay-Secret-9";
    assert_int_equal(smtp_send(&o, TO, (const uint8_t *)msg, strlen(msg), &f), KR_OK);
    assert_int_equal(relay_stored(&r), 1);
    /* Without a login the relay refuses MAIL FROM (530): not permanent. */
    o.user = NULL;
    assert_int_equal(smtp_send(&o, TO, (const uint8_t *)msg, strlen(msg), &f), KR_EIO);
    assert_false(f.permanent);
    assert_int_equal(relay_stored(&r), 1);
    relay_stop(&r);
}

/* kiroku serve with conf: its exit status, stderr into err (cap bytes). */
static int serve_with(const char *dir, const char *conf, char *err, size_t cap)
{
    char data[400], log[400], cmd[1400];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/serve.err", dir);
    snprintf(cmd, sizeof cmd, "'%s' serve --data '%s' --config '%s' 2>'%s' >/dev/null",
             KR_KIROKU_BIN, data, conf, log);
    int st = system(cmd);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    size_t n = fread(err, 1, cap - 1, f);
    err[n] = '\0';
    fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* serve refuses a relay password file others can read, and bad e-mail
 * settings, before it opens anything. */
static void test_serve_refuses_bad_settings(void **state)
{
    (void)state;
    char dir[64] = "/tmp/kr-smtp-conf-XXXXXX", conf[200], pw[200], err[1024], cmd[200];
    assert_non_null(mkdtemp(dir));
    snprintf(conf, sizeof conf, "%s/kiroku.conf", dir);
    snprintf(pw, sizeof pw, "%s/smtp.pass", dir);
    FILE *f = fopen(pw, "w");
    assert_non_null(f);
    fprintf(f, "Relay-Secret-9\n");
    fclose(f);
    assert_int_equal(chmod(pw, 0644), 0);
    f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "smtp.url = smtp://127.0.0.1:1\nsmtp.user = kiroku\nsmtp.password_file = %s\n", pw);
    fclose(f);
    assert_int_equal(chmod(conf, 0600), 0);
    assert_int_equal(serve_with(dir, conf, err, sizeof err), 3);
    assert_non_null(strstr(err, "smtp.password_file"));
    assert_null(strstr(err, "Relay-Secret-9"));

    f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "smtp.url = http://127.0.0.1:1\n");
    fclose(f);
    assert_int_equal(serve_with(dir, conf, err, sizeof err), 2);
    assert_non_null(strstr(err, "smtp.url"));
    f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "mail.from = a@b.example, c@d.example\n");
    fclose(f);
    assert_int_equal(serve_with(dir, conf, err, sizeof err), 2);
    assert_non_null(strstr(err, "mail.from"));
    f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "smtp.url = smtp://127.0.0.1:1\nsmtp.starttls = sometimes\n");
    fclose(f);
    assert_int_equal(serve_with(dir, conf, err, sizeof err), 2);
    assert_non_null(strstr(err, "smtp.starttls"));
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_bad_options_refused(void **state)
{
    (void)state;
    struct smtp_options o = {.url = "http://127.0.0.1:1", .from = "a@b.example"};
    struct smtp_failure f;
    const uint8_t msg[] = "x";
    assert_int_equal(smtp_send(&o, "c@d.example", msg, 1, &f), KR_EINVAL);
    o.url = "smtp://127.0.0.1:1";
    assert_int_equal(smtp_send(&o, "c@d.example>\r\nRCPT TO:<e@f.example", msg, 1, &f), KR_EINVAL);
    o.from = "a b@c.example";
    assert_int_equal(smtp_send(&o, "c@d.example", msg, 1, &f), KR_EINVAL);
    enum smtp_starttls s;
    assert_true(smtp_starttls_parse("optional", &s));
    assert_int_equal(s, SMTP_STARTTLS_OPTIONAL);
    assert_false(smtp_starttls_parse("maybe", &s));
}

/* ---- Across restarts of serve ---- */

#define PASSWORD "Quiet-Harbour-Lantern-42"

/* Messages the relay stored for rcpt. */
static unsigned relay_count_to(struct relay *r, const char *rcpt)
{
    unsigned n = 0, total = relay_stored(r);
    char want[160];
    snprintf(want, sizeof want, "\n%s\n", rcpt);
    for (unsigned k = 1; k <= total; k++) {
        char *env = relay_message(r, k, "env");
        n += strstr(env, want) != NULL;
        free(env);
    }
    return n;
}

static void wait_count_to(struct relay *r, const char *rcpt, unsigned n)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (relay_count_to(r, rcpt) < n) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 > AC_WAIT_MS)
            fail_msg("no e-mail to %s arrived in time", rcpt);
        usleep(20000);
    }
}

static void wait_attempts(struct relay *r, unsigned n)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (relay_attempts(r) < n) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 > AC_WAIT_MS)
            fail_msg("the relay saw no attempt in time");
        usleep(20000);
    }
}

/* Every stored message has a Message-ID, and no two the same. */
static void check_no_duplicates(struct relay *r)
{
    unsigned total = relay_stored(r);
    char ids[64][80];
    assert_true(total <= 64);
    for (unsigned k = 1; k <= total; k++) {
        char *text = relay_message(r, k, "eml");
        const char *m = strstr(text, "\r\nMessage-ID: <");
        assert_non_null(m);
        m += 15;
        size_t n = strcspn(m, ">");
        assert_true(n < sizeof ids[0]);
        memcpy(ids[k - 1], m, n);
        ids[k - 1][n] = '\0';
        for (unsigned j = 0; j + 1 < k; j++)
            assert_string_not_equal(ids[j], ids[k - 1]);
        free(text);
    }
}

static void user_create(struct ac_server *srv, const char *email)
{
    struct ac c;
    uint8_t token[32];
    ac_open(&c, srv->ipc);
    ac_str(&c, KR_FLD_TENANT_CODE, srv->demo_code);
    ac_str(&c, KR_FLD_EMAIL, srv->demo_email);
    ac_str(&c, KR_FLD_PASSWORD, srv->demo_password);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_LOGIN, NULL), AC_OK);
    const msgpack_object *t = ac_get(ac_result(&c), KR_FLD_TOKEN);
    assert_non_null(t);
    assert_int_equal(t->via.bin.size, 32);
    memcpy(token, t->via.bin.ptr, 32);
    ac_str(&c, KR_FLD_EMAIL, email);
    ac_str(&c, KR_FLD_PASSWORD, PASSWORD);
    ac_enum(&c, KR_FLD_ROLE, KR_ROLE_USER);
    assert_int_equal(ac_call(&c, KR_OP_USERS_CREATE, token), AC_OK);
    ac_close(&c);
}

/* kiroku serve with a relay: a delivered e-mail is never delivered again
 * after a restart; one that failed before the restart is delivered after
 * it; no .eml copy is left. */
static void test_serve_restart(void **state)
{
    (void)state;
    struct relay r;
    struct ac_server srv;
    char conf[300];
    relay_start(&r);
    snprintf(conf, sizeof conf, "%s/kiroku.conf", r.dir);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "smtp.url = %s\nsmtp.starttls = off\nsmtp.timeout_s = 5\n"
            "smtp.retry_min_s = 1\nsmtp.retry_max_s = 1\nmail.from = noreply@kiroku.test\n",
            r.url);
    fclose(f);
    assert_int_equal(chmod(conf, 0600), 0);
    const char *extra[] = {"--config", conf, NULL};
    ac_server_start_with(&srv, extra);

    user_create(&srv, "first@relay.example.jp");
    wait_count_to(&r, "first@relay.example.jp", 1);

    /* The relay refuses for now: a failure is recorded, then serve stops. */
    relay_mode(&r, "temp");
    unsigned before = relay_attempts(&r);
    user_create(&srv, "second@relay.example.jp");
    wait_attempts(&r, before + 1);
    assert_int_equal(kill(srv.pid, SIGTERM), 0);
    assert_int_equal(waitpid(srv.pid, NULL, 0), srv.pid);
    srv.pid = 0;
    assert_int_equal(relay_count_to(&r, "second@relay.example.jp"), 0);

    relay_mode(&r, "accept");
    ac_server_restart(&srv);
    wait_count_to(&r, "second@relay.example.jp", 1);
    user_create(&srv, "third@relay.example.jp");
    wait_count_to(&r, "third@relay.example.jp", 1);

    assert_int_equal(relay_count_to(&r, "first@relay.example.jp"), 1);
    assert_int_equal(relay_count_to(&r, "second@relay.example.jp"), 1);
    check_no_duplicates(&r);
    char outbox[700];
    snprintf(outbox, sizeof outbox, "%s/outbox", srv.data);
    assert_true(access(outbox, F_OK) != 0 || !td_dir_contains(outbox, "@", 1));
    assert_int_equal(ac_server_stop(&srv), 0);
    relay_stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options_refused),
        cmocka_unit_test(test_delivered),
        cmocka_unit_test(test_temporary_refusal_retried),
        cmocka_unit_test(test_permanent_refusal),
        cmocka_unit_test(test_drop_and_stall_retried),
        cmocka_unit_test(test_lost_reply_same_message_id),
        cmocka_unit_test(test_gives_up),
        cmocka_unit_test(test_starttls_required),
        cmocka_unit_test(test_starttls_verified),
        cmocka_unit_test(test_smtps),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_serve_refuses_bad_settings),
        cmocka_unit_test(test_prune_files),
        cmocka_unit_test(test_serve_restart),
    };
    /* The templates serve would load, with this relay's sender (serve makes
     * the From header from mail.from the same way). */
    struct compose_opts co = {.from = "kiroku <noreply@kiroku.test>"};
    struct compose_set *templates;
    char why[256];
    if (compose_load(&co, &templates, why, sizeof why) != KR_OK) {
        fprintf(stderr, "smtp_test: templates: %s\n", why);
        return 1;
    }
    compose_install(templates);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    compose_install(NULL);
    compose_free(templates);
    return rc;
}
