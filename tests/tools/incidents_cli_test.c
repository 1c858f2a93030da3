/*
 * incidents_cli_test.c: incidents run themselves inside `kiroku serve`
 * (KR_KIROKU_BIN): the scheduler's minute job (tools/daily.c,
 * dom_incident_mail) queues the incident notices owed, and the mailer
 * delivers them (DIR/outbox/ without a relay), once, across restarts.
 *
 * Three tenants, each affected by one incident: A's detected 71 hours ago
 * (due in one hour), B's 73 hours ago (overdue), C's 10 hours ago (62 hours
 * left). serve started: A and B are notified by e-mail, C is not. serve
 * stopped and started again on a clock 39 hours ahead (KIROKU_CLOCK_OFFSET
 * with --test-clock), where C's incident has 23 hours left: C is notified,
 * and A and B are not notified a second time. After each run the journal
 * holds exactly one incident.notified and one incident_notice e-mail per
 * notified tenant, every e-mail was handed over (none pending), and the
 * outbox directory holds exactly one file more per notification. Then a
 * crash: serve killed (SIGKILL) once a fourth incident's e-mail is written,
 * and started again for a fifth: the fourth is not notified twice. And the
 * setting incidents.warn_before_h = 0 in DIR/kiroku.conf: only what is past
 * its deadline is e-mailed. And incidents.auto_notify = false: nobody is
 * notified at a deadline, but an incident's update is still e-mailed to the
 * tenant the operator e-mailed.
 */
#include "test_domain.h"
#include "test_util.h"

#include "notices.h"

#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define S    1000000000ull
#define HOUR (3600ull * S)

static uint64_t real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The e-mail files under DIR/outbox. */
static size_t mail_files(const char *data)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/outbox", data);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".eml") == 0)
            n++;
    }
    closedir(d);
    return n;
}

struct files_at {
    const char *data;
    size_t want;
};

static bool files_reached(void *arg)
{
    const struct files_at *f = arg;
    return mail_files(f->data) >= f->want;
}

/* Runs serve on data (the clock offset from the environment, if any) until
 * the outbox holds `want` files, then stops it with sig: SIGTERM (it must
 * exit 0) or SIGKILL (a crash). */
static void serve_until(const char *data, size_t want, int sig)
{
    char lc[700], lo[700];
    snprintf(lc, sizeof lc, "ipc://%s/c.sock", data);
    snprintf(lo, sizeof lo, "ipc://%s/o.sock", data);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(127);
        execl(KR_KIROKU_BIN, "kiroku", "serve", "--data", data, "--listen", lc, "--operator", lo,
              "--test-clock", (char *)NULL);
        _exit(127);
    }
    struct files_at f = {data, want};
    bool found = kr_test_wait_for(files_reached, &f, KR_TEST_WAIT_MS, "the incident e-mails");
    kill(pid, sig);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(found);
    if (sig == SIGKILL)
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    else
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* What the journal says about the incidents' notifications. */
#define NINC 5

struct tally {
    size_t notified[NINC];    /* incident.notified per incident */
    size_t mailed[NINC];      /* incident_notice e-mails queued per incident */
    uint64_t mailed_to[NINC]; /* the tenant each was queued in */
    size_t pending;           /* e-mails queued and not handed over */
};

static bool count_pending(void *arg, const struct outbox_msg *m)
{
    (void)m;
    (*(size_t *)arg)++;
    return true;
}

static void tally(struct td *t, uint8_t ids[NINC][16], struct tally *out)
{
    memset(out, 0, sizeof *out);
    struct kr_payload *p = kr_payload_new();
    struct jrn_recbuf b;
    assert_non_null(p);
    memset(&b, 0, sizeof b);
    uint64_t size = jrn_size(t->d->j);
    for (uint64_t seq = 1; seq <= size; seq++) {
        assert_int_equal(jrn_read(t->d->j, seq, &b), KR_OK);
        int ev = kr_event_lookup(b.rec.type, b.rec.type_len);
        if (ev != KR_EV_INCIDENT_NOTIFIED && ev != KR_EV_OUTBOX_QUEUED)
            continue;
        assert_int_equal(kr_event_decode(ev, &b.rec, NULL, p, NULL), KR_OK);
        if (ev == KR_EV_OUTBOX_QUEUED && p->v[KR_FLD_TEMPLATE].u != KR_TEMPLATE_INCIDENT_NOTICE)
            continue;
        const struct kr_value *inc = &p->v[KR_FLD_INCIDENT];
        assert_true(inc->set && inc->n == 16);
        for (int i = 0; i < NINC; i++) {
            if (memcmp(inc->p, ids[i], 16) != 0)
                continue;
            if (ev == KR_EV_INCIDENT_NOTIFIED) {
                out->notified[i]++;
                assert_int_equal(p->v[KR_FLD_CHANNEL].u, KR_CHANNEL_EMAIL);
            } else {
                out->mailed[i]++;
                out->mailed_to[i] = b.rec.tenant;
            }
        }
    }
    jrn_recbuf_fini(&b);
    kr_payload_free(p);
    assert_int_equal(outbox_pending(t->d, 0, 0, count_pending, &out->pending, NULL), KR_OK);
}

/* Opens an incident for tenant detected 80 hours before now (real time). */
static void open_overdue(struct td *t, const struct kr_caller *op, uint64_t tenant, uint8_t id[16])
{
    struct kr_payload *p = td_args(t);
    kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_BREACH);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_CRITICAL);
    kr_set_str(p, KR_FLD_TITLE, "Leaked export");
    kr_set_str(p, KR_FLD_SUMMARY, "An export file was readable by others.");
    kr_set_u64(p, KR_FLD_DETECTED, real_now() - 80 * HOUR);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    kr_set_tenants(p, KR_FLD_TENANTS, &tenant, 1);
    assert_int_equal(td_exec(t, op, KR_OP_INCIDENTS_OPEN), KR_OK);
    td_get_id(t, "incident", id);
}

static void test_notified_once_across_restarts(void **state)
{
    (void)state;
    struct td *t = td_new(71);
    atomic_store(&t->now, real_now());
    struct kr_caller ma, mb, mc, op = td_operator();
    uint64_t tenants[3];
    tenants[0] = td_signup(t, "owner@a.example", "correct horse 1", &ma, NULL);
    tenants[1] = td_signup(t, "owner@b.example", "correct horse 2", &mb, NULL);
    tenants[2] = td_signup(t, "owner@c.example", "correct horse 3", &mc, NULL);
    static const uint64_t age_h[3] = {71, 73, 10};
    uint8_t ids[NINC][16];
    memset(ids, 0, sizeof ids);
    for (int i = 0; i < 3; i++) {
        struct kr_payload *p = td_args(t);
        kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_OUTAGE);
        kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_HIGH);
        kr_set_str(p, KR_FLD_TITLE, "API outage");
        kr_set_str(p, KR_FLD_SUMMARY, "The API did not answer for 20 minutes.");
        kr_set_u64(p, KR_FLD_DETECTED, real_now() - age_h[i] * HOUR);
        kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
        kr_set_tenants(p, KR_FLD_TENANTS, &tenants[i], 1);
        assert_int_equal(td_exec(t, &op, KR_OP_INCIDENTS_OPEN), KR_OK);
        td_get_id(t, "incident", ids[i]);
    }
    struct tally tl;
    tally(t, ids, &tl);
    size_t signup_mail = tl.pending; /* the sign-ups' e-mails, delivered by the first run */
    assert_true(signup_mail > 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tl.notified[i] + tl.mailed[i], 0);
    dom_close(t->d);
    t->d = NULL;
    char data[600];
    snprintf(data, sizeof data, "%s", t->dir);

    /* Now: A's (due in 1 h) and B's (overdue) are e-mailed, C's waits. */
    unsetenv("KIROKU_CLOCK_OFFSET");
    serve_until(data, signup_mail + 2, SIGTERM);
    assert_int_equal(mail_files(data), signup_mail + 2);
    td_reopen(t);
    tally(t, ids, &tl);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tl.notified[i], i < 2 ? 1 : 0);
        assert_int_equal(tl.mailed[i], i < 2 ? 1 : 0);
    }
    assert_int_equal(tl.mailed_to[0], tenants[0]);
    assert_int_equal(tl.mailed_to[1], tenants[1]);
    assert_int_equal(tl.pending, 0);
    dom_close(t->d);
    t->d = NULL;

    /* 39 hours on: C's has 23 hours left and is e-mailed; A and B are not
     * written to again. */
    setenv("KIROKU_CLOCK_OFFSET", "39h", 1);
    serve_until(data, signup_mail + 3, SIGTERM);
    unsetenv("KIROKU_CLOCK_OFFSET");
    assert_int_equal(mail_files(data), signup_mail + 3);
    td_reopen(t);
    tally(t, ids, &tl);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tl.notified[i], 1);
        assert_int_equal(tl.mailed[i], 1);
    }
    assert_int_equal(tl.mailed_to[2], tenants[2]);
    assert_int_equal(tl.pending, 0);

    /* A crash: a fourth incident, overdue, e-mailed; serve killed (SIGKILL)
     * once its e-mail is written, perhaps before it was recorded sent. Then
     * a fifth, and serve started again: the fifth is e-mailed, the fourth
     * not again (its file, written again if it was not recorded sent, is
     * the same file). */
    open_overdue(t, &op, tenants[0], ids[3]);
    dom_close(t->d);
    t->d = NULL;
    setenv("KIROKU_CLOCK_OFFSET", "39h", 1);
    serve_until(data, signup_mail + 4, SIGKILL);
    td_reopen(t);
    open_overdue(t, &op, tenants[1], ids[4]);
    dom_close(t->d);
    t->d = NULL;
    serve_until(data, signup_mail + 5, SIGTERM);
    unsetenv("KIROKU_CLOCK_OFFSET");
    assert_int_equal(mail_files(data), signup_mail + 5);
    td_reopen(t);
    tally(t, ids, &tl);
    for (int i = 0; i < NINC; i++) {
        assert_int_equal(tl.notified[i], 1);
        assert_int_equal(tl.mailed[i], 1);
    }
    assert_int_equal(tl.mailed_to[3], tenants[0]);
    assert_int_equal(tl.mailed_to[4], tenants[1]);
    assert_int_equal(tl.pending, 0);
    td_free(t);
}

/* incidents.warn_before_h from the configuration file: at 0, serve e-mails
 * only what is past its deadline; an incident due in an hour waits. Both
 * are looked at in the same run of the minute job, so once the overdue
 * one's e-mail is written, the other one was passed over. */
static void test_warning_setting(void **state)
{
    (void)state;
    struct td *t = td_new(72);
    atomic_store(&t->now, real_now());
    struct kr_caller ma, mb, op = td_operator();
    uint64_t tenants[2];
    tenants[0] = td_signup(t, "owner@a.example", "correct horse 1", &ma, NULL);
    tenants[1] = td_signup(t, "owner@b.example", "correct horse 2", &mb, NULL);
    uint8_t ids[NINC][16];
    memset(ids, 0, sizeof ids);
    struct kr_payload *p = td_args(t);
    kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_OUTAGE);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    kr_set_str(p, KR_FLD_TITLE, "Slow search");
    kr_set_str(p, KR_FLD_SUMMARY, "Searches took seconds.");
    kr_set_u64(p, KR_FLD_DETECTED, real_now() - 71 * HOUR);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    kr_set_tenants(p, KR_FLD_TENANTS, &tenants[0], 1);
    assert_int_equal(td_exec(t, &op, KR_OP_INCIDENTS_OPEN), KR_OK);
    td_get_id(t, "incident", ids[0]);
    open_overdue(t, &op, tenants[1], ids[1]);
    struct tally tl;
    tally(t, ids, &tl);
    size_t signup_mail = tl.pending;
    dom_close(t->d);
    t->d = NULL;
    char data[600], conf[700];
    snprintf(data, sizeof data, "%s", t->dir);
    snprintf(conf, sizeof conf, "%s/kiroku.conf", data);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs("# only what is past its deadline\nincidents.warn_before_h = 0\n", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(conf, 0600), 0);

    unsetenv("KIROKU_CLOCK_OFFSET");
    serve_until(data, signup_mail + 1, SIGTERM);
    assert_int_equal(mail_files(data), signup_mail + 1);
    td_reopen(t);
    tally(t, ids, &tl);
    assert_int_equal(tl.notified[0], 0); /* due in an hour: not yet, at 0 hours' warning */
    assert_int_equal(tl.mailed[0], 0);
    assert_int_equal(tl.notified[1], 1);
    assert_int_equal(tl.mailed[1], 1);
    assert_int_equal(tl.pending, 0);
    td_free(t);
}

/* incidents.auto_notify = false: serve notifies nobody at a deadline (an
 * overdue incident stays due), but a tenant the operator e-mailed still gets
 * the incident's update: the one e-mail file more than what was queued
 * before serve started is that update. */
static void test_auto_notify_off(void **state)
{
    (void)state;
    struct td *t = td_new(73);
    atomic_store(&t->now, real_now());
    struct kr_caller ma, op = td_operator();
    uint64_t tenant = td_signup(t, "owner@a.example", "correct horse 1", &ma, NULL);
    uint8_t ids[NINC][16];
    memset(ids, 0, sizeof ids);
    open_overdue(t, &op, tenant, ids[0]);
    struct kr_payload *p = td_args(t);
    kr_set_bytes(p, KR_FLD_INCIDENT, ids[0], 16);
    kr_set_u64(p, KR_FLD_TENANT, tenant);
    kr_set_u64(p, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
    assert_int_equal(td_exec(t, &op, KR_OP_INCIDENTS_NOTIFY), KR_OK);
    p = td_args(t);
    kr_set_bytes(p, KR_FLD_INCIDENT, ids[0], 16);
    kr_set_u64(p, KR_FLD_VERSION, 2);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    kr_set_str(p, KR_FLD_SUMMARY, "Contained.");
    assert_int_equal(td_exec(t, &op, KR_OP_INCIDENTS_UPDATE), KR_OK);
    open_overdue(t, &op, tenant, ids[1]);
    struct tally tl;
    tally(t, ids, &tl);
    size_t queued = tl.pending; /* the sign-up's e-mails and the operator's notice */
    dom_close(t->d);
    t->d = NULL;
    char data[600], conf[700];
    snprintf(data, sizeof data, "%s", t->dir);
    snprintf(conf, sizeof conf, "%s/kiroku.conf", data);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs("incidents.auto_notify = false\n", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(conf, 0600), 0);

    unsetenv("KIROKU_CLOCK_OFFSET");
    serve_until(data, queued + 1, SIGTERM);
    assert_int_equal(mail_files(data), queued + 1);
    td_reopen(t);
    tally(t, ids, &tl);
    assert_int_equal(tl.notified[0], 1); /* by the operator */
    assert_int_equal(tl.mailed[0], 1);
    assert_int_equal(tl.notified[1], 0); /* overdue, and left to the operators */
    assert_int_equal(tl.mailed[1], 0);
    assert_int_equal(tl.pending, 0);
    td_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notified_once_across_restarts),
        cmocka_unit_test(test_warning_setting),
        cmocka_unit_test(test_auto_notify_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
