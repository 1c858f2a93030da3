/*
 * alerts_test.c: security alerts (projections/alerts.c, v_alerts.c,
 * cmd_alerts.c): each rule fires on its pattern, once per window, with the
 * seqs that made it fire as evidence; nothing fires below a threshold or
 * across a window; a restarted scanner raises nothing twice; operators list,
 * acknowledge and report alerts, tenants' callers cannot; and the normal
 * traffic of `kiroku seed` raises nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "cmd.h"
#include "retention.h"
#include "test_domain.h"
#include "test_util.h"

#define S 1000000000ull

struct fx {
    struct td *t;
    uint64_t a, b; /* two tenants */
    char code_a[40];
    struct kr_caller ma, mb, op;
    struct alr_options o;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->t = td_new(23);
    f->a = td_signup(f->t, "owner@a.example", "correct horse 1", &f->ma, f->code_a);
    f->b = td_signup(f->t, "owner@b.example", "correct horse 2", &f->mb, NULL);
    f->op = td_operator();
    /* small thresholds, so a test makes each pattern with a few ops */
    alr_defaults(&f->o);
    for (int i = 0; i <= KR_ALERT_RULE_BULK_EXPORT; i++)
        f->o.rule[i] = (struct alr_rule_limit){3, 600};
    f->o.rule[KR_ALERT_RULE_LOCKOUT].count = 1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    td_free(f->t);
    free(f);
    return 0;
}

/* Runs a scanner (from seq 1, no cursor file) over the whole journal;
 * returns how many alerts it raised. */
static uint64_t scan_all(struct fx *f)
{
    struct alr_options o = f->o;
    o.from_seq = 1;
    o.no_cursor = true;
    struct alr_scanner *s;
    assert_int_equal(alr_new(f->t->d, &o, &s), KR_OK);
    uint64_t n = 0, total = 0;
    bool more = true;
    while (more) {
        kr_err err = alr_scan(s, &n, &more);
        if (err)
            fail_msg("scan: %s", kr_strerror(err));
        total += n;
    }
    alr_free(s);
    return total;
}

static kr_err login(struct fx *f, const char *email, const char *pw)
{
    struct kr_caller anon = td_anonymous();
    struct kr_payload *a = td_args(f->t);
    kr_set_str(a, KR_FLD_TENANT_CODE, f->code_a);
    kr_set_str(a, KR_FLD_EMAIL, email);
    kr_set_str(a, KR_FLD_PASSWORD, pw);
    return td_exec(f->t, &anon, KR_OP_AUTH_LOGIN);
}

/* A user of tenant a with no permission; its account id into acct. */
static void user(struct fx *f, const char *email, uint8_t acct[16])
{
    struct kr_payload *a = td_args(f->t);
    kr_set_str(a, KR_FLD_EMAIL, email);
    kr_set_str(a, KR_FLD_PASSWORD, "staff password 9");
    kr_set_u64(a, KR_FLD_ROLE, KR_ROLE_USER);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_USERS_CREATE), KR_OK);
    td_get_id(f->t, "account", acct);
}

static void grant(struct fx *f, const uint8_t acct[16])
{
    struct kr_payload *a = td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_USERS_LIST), KR_OK);
    const msgpack_object *users = td_get(f->t, "users");
    uint64_t version = 0;
    for (uint32_t i = 0; i < users->via.array.size; i++) {
        const msgpack_object *u = &users->via.array.ptr[i];
        const msgpack_object *id = td_map_get(u, "account");
        if (id->via.bin.size == 16 && memcmp(id->via.bin.ptr, acct, 16) == 0)
            version = td_map_get(u, "version")->via.u64;
    }
    assert_true(version > 0);
    a = td_args(f->t);
    kr_set_bytes(a, KR_FLD_ACCOUNT, acct, 16);
    kr_set_u64(a, KR_FLD_PERMISSIONS, 1u << KR_PERMISSION_TAGS_WRITE);
    kr_set_u64(a, KR_FLD_VERSION, version);
    kr_err err = td_exec(f->t, &f->ma, KR_OP_USERS_GRANT);
    if (err)
        fail_msg("grant: %s (%s: %s)", kr_strerror(err), f->t->diag.field, f->t->diag.why);
}

/* alerts.list (or alerts.report for tenant) as the operator: the array. */
static const msgpack_object *list(struct fx *f, uint64_t tenant, bool open_only)
{
    struct kr_payload *a = td_args(f->t);
    if (open_only)
        kr_set_bool(a, KR_FLD_OPEN_ONLY, true);
    if (tenant)
        kr_set_u64(a, KR_FLD_TENANT, tenant);
    kr_err err = td_exec(f->t, &f->op, tenant ? KR_OP_ALERTS_REPORT : KR_OP_ALERTS_LIST);
    if (err)
        fail_msg("list: %s (%s: %s)", kr_strerror(err), f->t->diag.field, f->t->diag.why);
    const msgpack_object *l = td_get(f->t, "alerts");
    assert_non_null(l);
    assert_int_equal(l->type, MSGPACK_OBJECT_ARRAY);
    return l;
}

static bool str_is(const msgpack_object *o, const char *want)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(want) &&
           memcmp(o->via.str.ptr, want, o->via.str.size) == 0;
}

/* The number of alerts of rule in l; the last one's evidence seqs into ev. */
static uint32_t count_rule(const msgpack_object *l, int rule, uint64_t *ev, uint32_t *nev)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < l->via.array.size; i++) {
        const msgpack_object *it = &l->via.array.ptr[i];
        if (!str_is(td_map_get(it, "alert_rule"), kr_enums[KR_ENUM_ALERT_RULE].values[rule]))
            continue;
        n++;
        const msgpack_object *e = td_map_get(it, "evidence");
        assert_int_equal(e->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(e->via.bin.size % 8, 0);
        if (ev) {
            *nev = e->via.bin.size / 8;
            for (uint32_t k = 0; k < *nev; k++)
                ev[k] = kr_get_be64((const uint8_t *)e->via.bin.ptr + 8 * k);
        }
    }
    return n;
}

/* The seq of the journal's last record. */
static uint64_t last_seq(struct fx *f)
{
    return jrn_size(f->t->d->j);
}

static void test_login_failures_and_lockout(void **state)
{
    struct fx *f = *state;
    uint64_t seqs[3];
    for (int i = 0; i < 2; i++)
        assert_int_equal(login(f, "owner@a.example", "wrong horse"), KR_EAUTH);
    assert_int_equal(scan_all(f), 0); /* two: below the count */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(login(f, "owner@a.example", "wrong horse"),
                         KR_EAUTH); /* the fifth locks */
        if (i == 0)
            seqs[2] = last_seq(f);
    }
    assert_int_equal(scan_all(f), 2);
    const msgpack_object *l = list(f, 0, false);
    uint64_t ev[KR_ALERT_EVIDENCE_MAX];
    uint32_t nev = 0;
    assert_int_equal(count_rule(l, KR_ALERT_RULE_LOGIN_FAILURES, ev, &nev), 1);
    assert_int_equal(nev, 3); /* the first three failures */
    assert_true(ev[0] < ev[1] && ev[1] < seqs[2] + 1 && ev[2] == seqs[2]);
    assert_int_equal(count_rule(l, KR_ALERT_RULE_LOCKOUT, ev, &nev), 1);
    assert_int_equal(nev, 1);
    /* the lockout's evidence is the account.locked record */
    struct jrn_recbuf b = {0};
    assert_int_equal(jrn_read(f->t->d->j, ev[0], &b), KR_OK);
    assert_int_equal(kr_event_lookup(b.rec.type, b.rec.type_len), KR_EV_ACCOUNT_LOCKED);
    jrn_recbuf_fini(&b);
    assert_int_equal(l->via.array.size, 2);
    const msgpack_object *it = &l->via.array.ptr[0];
    assert_int_equal(td_map_get(it, "tenant")->via.u64, f->a);
    assert_true(td_map_get(it, "account")->type == MSGPACK_OBJECT_BIN);
    assert_false(td_map_get(it, "acknowledged")->via.boolean);
    assert_int_equal(td_map_get(it, "version")->via.u64, 1);
    assert_non_null(td_map_get(it, "raised_jst"));
}

static void test_once_per_window_and_rescan(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(login(f, "owner@a.example", "wrong horse"), KR_EAUTH);
    assert_int_equal(scan_all(f), 1); /* four failures, one alert */
    /* a second scanner over the same journal raises nothing again */
    assert_int_equal(scan_all(f), 0);
    /* nor a scanner reopened on its cursor after a restart */
    struct alr_options o = f->o;
    struct alr_scanner *s;
    assert_int_equal(alr_new(f->t->d, &o, &s), KR_OK);
    uint64_t n = 9;
    bool more = true;
    while (more)
        assert_int_equal(alr_scan(s, &n, &more), KR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(alr_next_seq(s), last_seq(f) + 1);
    alr_free(s);
    td_reopen(f->t);
    assert_int_equal(alr_new(f->t->d, &o, &s), KR_OK);
    assert_true(alr_next_seq(s) <= last_seq(f)); /* it warms its windows again */
    more = true;
    while (more)
        assert_int_equal(alr_scan(s, &n, &more), KR_OK);
    assert_int_equal(n, 0);
    alr_free(s);
    /* after the window, the same pattern raises again */
    f->t->now += 601 * S;
    assert_int_equal(login(f, "owner@a.example", "correct horse 1"), KR_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(login(f, "owner@a.example", "wrong horse"), KR_EAUTH);
    assert_int_equal(scan_all(f), 1);
    assert_int_equal(count_rule(list(f, 0, false), KR_ALERT_RULE_LOGIN_FAILURES, NULL, NULL), 2);
}

static void test_failures_spread_over_windows_are_quiet(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(login(f, "owner@a.example", "wrong horse"), KR_EAUTH);
        if (i % 2 == 1) {
            f->t->now += 601 * S; /* two per window, and a success between */
            assert_int_equal(login(f, "owner@a.example", "correct horse 1"), KR_OK);
        }
    }
    assert_int_equal(scan_all(f), 0);
}

static void test_login_spray(void **state)
{
    struct fx *f = *state;
    uint8_t u1[16];
    user(f, "staff1@a.example", u1);
    assert_int_equal(login(f, "staff1@a.example", "wrong horse"), KR_EAUTH);
    assert_int_equal(login(f, "nobody1@a.example", "wrong horse"), KR_EAUTH);
    assert_int_equal(login(f, "owner@a.example", "wrong horse"), KR_EAUTH);
    assert_int_equal(scan_all(f), 1);
    const msgpack_object *l = list(f, 0, false);
    uint64_t ev[KR_ALERT_EVIDENCE_MAX];
    uint32_t nev = 0;
    assert_int_equal(count_rule(l, KR_ALERT_RULE_LOGIN_SPRAY, ev, &nev), 1);
    assert_int_equal(nev, 3);
    assert_int_equal(td_map_get(&l->via.array.ptr[0], "account")->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(td_map_get(&l->via.array.ptr[0], "tenant")->via.u64, f->a);
}

static void test_session_burst(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 2; i++)
        assert_int_equal(login(f, "owner@a.example", "correct horse 1"), KR_OK);
    assert_int_equal(scan_all(f), 0);
    assert_int_equal(login(f, "owner@a.example", "correct horse 1"), KR_OK);
    /* three sessions of the master within the window */
    assert_int_equal(scan_all(f), 1);
    assert_int_equal(count_rule(list(f, 0, false), KR_ALERT_RULE_SESSION_BURST, NULL, NULL), 1);
}

static void test_grants(void **state)
{
    struct fx *f = *state;
    uint8_t u[3][16];
    char email[40];
    for (int i = 0; i < 3; i++) {
        snprintf(email, sizeof email, "staff%d@a.example", i);
        user(f, email, u[i]);
    }
    grant(f, u[0]);
    grant(f, u[1]);
    assert_int_equal(scan_all(f), 0);
    grant(f, u[2]); /* a third user: grant_many */
    assert_int_equal(scan_all(f), 1);
    grant(f, u[2]);
    grant(f, u[2]); /* a third time to one user: grant_repeated */
    assert_int_equal(scan_all(f), 1);
    const msgpack_object *l = list(f, 0, false);
    assert_int_equal(count_rule(l, KR_ALERT_RULE_GRANT_MANY, NULL, NULL), 1);
    assert_int_equal(count_rule(l, KR_ALERT_RULE_GRANT_REPEATED, NULL, NULL), 1);
}

static void test_access_denied(void **state)
{
    struct fx *f = *state;
    uint8_t u[16];
    user(f, "staff@a.example", u);
    struct kr_caller who = td_account(f->a, u, KR_ROLE_USER, 0);
    for (int i = 0; i < 3; i++) {
        td_args(f->t);
        assert_int_equal(td_exec(f->t, &who, KR_OP_USERS_LIST), KR_EFORBIDDEN);
    }
    assert_int_equal(scan_all(f), 1);
    assert_int_equal(count_rule(list(f, 0, false), KR_ALERT_RULE_ACCESS_DENIED, NULL, NULL), 1);
}

static void test_bulk_export(void **state)
{
    struct fx *f = *state;
    f->o.rule[KR_ALERT_RULE_BULK_EXPORT] = (struct alr_rule_limit){4, 600};
    for (int i = 0; i < 2; i++) {
        kr_set_str(td_args(f->t), KR_FLD_NAME, "山田 花子");
        assert_int_equal(td_exec(f->t, &f->ma, KR_OP_CONTACTS_REGISTER), KR_OK);
    }
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_UTILITY_EXPORT), KR_OK);
    assert_int_equal(td_get(f->t, "contacts")->via.array.size, 2);
    uint64_t first = last_seq(f);
    struct jrn_recbuf b = {0};
    assert_int_equal(jrn_read(f->t->d->j, first, &b), KR_OK);
    assert_int_equal(kr_event_lookup(b.rec.type, b.rec.type_len), KR_EV_UTILITY_EXPORTED);
    jrn_recbuf_fini(&b);
    assert_int_equal(scan_all(f), 0); /* two records */
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_UTILITY_EXPORT), KR_OK);
    assert_int_equal(scan_all(f), 1); /* four */
    const msgpack_object *l = list(f, 0, false);
    uint64_t ev[KR_ALERT_EVIDENCE_MAX];
    uint32_t nev = 0;
    assert_int_equal(count_rule(l, KR_ALERT_RULE_BULK_EXPORT, ev, &nev), 1);
    assert_int_equal(nev, 2);
    assert_int_equal(ev[0], first);
    assert_int_equal(ev[1], last_seq(f) - 1); /* the alert itself is the last record */
    const msgpack_object *sum = td_map_get(&l->via.array.ptr[0], "alert_summary");
    char text[300];
    snprintf(text, sizeof text, "%.*s", (int)sum->via.str.size, sum->via.str.ptr);
    if (!strstr(text, "bulk_export: 4 records exported within 600 s"))
        fail_msg("summary: %s", text);
    /* a limit past what the evidence can hold is refused */
    struct alr_scanner *s;
    f->o.rule[KR_ALERT_RULE_BULK_EXPORT].count = KR_ALERT_RECORDS_MAX + 1;
    assert_int_equal(alr_new(f->t->d, &f->o, &s), KR_EINVAL);
}

/* An incident for tenant a detected `ago` before now; its id into id. */
static void open_incident(struct fx *f, uint64_t ago, uint8_t id[16])
{
    struct kr_payload *p = td_args(f->t);
    uint64_t ts[1] = {f->a};
    kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_OUTAGE);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_HIGH);
    kr_set_str(p, KR_FLD_TITLE, "API outage");
    kr_set_str(p, KR_FLD_SUMMARY, "The API did not answer for 20 minutes.");
    kr_set_u64(p, KR_FLD_DETECTED, f->t->now - ago);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    kr_set_tenants(p, KR_FLD_TENANTS, ts, 1);
    kr_err err = td_exec(f->t, &f->op, KR_OP_INCIDENTS_OPEN);
    if (err)
        fail_msg("open: %s (%s: %s)", kr_strerror(err), f->t->diag.field, f->t->diag.why);
    td_get_id(f->t, "incident", id);
}

/* An incident detected 71 hours ago is due (its deadline within the 24-hour
 * warning), one detected 73 hours ago overdue: each raises its alert once,
 * naming the incident.opened record; a notified one raises nothing. */
static void test_incident_deadlines(void **state)
{
    struct fx *f = *state;
    uint8_t due[16], over[16], done[16];
    open_incident(f, 71 * 3600 * S, due);
    uint64_t due_seq = last_seq(f);
    open_incident(f, 73 * 3600 * S, over);
    uint64_t over_seq = last_seq(f);
    open_incident(f, 73 * 3600 * S, done);
    struct kr_payload *p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, done, 16);
    kr_set_u64(p, KR_FLD_TENANT, f->a);
    kr_set_u64(p, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_NOTIFY), KR_OK);
    open_incident(f, 40 * 3600 * S, done); /* 32 hours left: not yet */

    assert_int_equal(scan_all(f), 2);
    assert_int_equal(scan_all(f), 0); /* once each */
    const msgpack_object *l = list(f, 0, false);
    uint64_t ev[KR_ALERT_EVIDENCE_MAX];
    uint32_t nev = 0;
    assert_int_equal(count_rule(l, KR_ALERT_RULE_INCIDENT_DUE, ev, &nev), 1);
    assert_int_equal(nev, 1);
    assert_int_equal(ev[0], due_seq);
    assert_int_equal(count_rule(l, KR_ALERT_RULE_INCIDENT_OVERDUE, ev, &nev), 1);
    assert_int_equal(ev[0], over_seq);
    for (uint32_t i = 0; i < l->via.array.size; i++) {
        const msgpack_object *it = &l->via.array.ptr[i];
        const msgpack_object *acct = td_map_get(it, "account");
        assert_int_equal(td_map_get(it, "tenant")->via.u64, f->a);
        assert_true(memcmp(acct->via.bin.ptr,
                           str_is(td_map_get(it, "alert_rule"), "incident_due") ? due : over,
                           16) == 0);
    }
    /* the due one passes its deadline: now it is overdue too, once */
    f->t->now += 2 * 3600 * S;
    assert_int_equal(scan_all(f), 1);
    assert_int_equal(scan_all(f), 0);
    assert_int_equal(count_rule(list(f, 0, false), KR_ALERT_RULE_INCIDENT_OVERDUE, NULL, NULL), 2);
}

/* With the rule on, no completed backup within its window raises one alert
 * per window; a completed backup quiets it. */
static void test_backup_missed(void **state)
{
    struct fx *f = *state;
    f->o.rule[KR_ALERT_RULE_BACKUP_MISSED] = (struct alr_rule_limit){1, 3600};
    assert_int_equal(ret_backup_recorded(f->t->d, true, "2026-04-01", last_seq(f), 4096, NULL),
                     KR_OK);
    uint64_t ok_seq = last_seq(f);
    assert_int_equal(scan_all(f), 0);
    f->t->now += 3601 * S;
    assert_int_equal(ret_backup_recorded(f->t->d, false, NULL, 0, 0, "the disk is full"), KR_OK);
    uint64_t failed_seq = last_seq(f);
    (void)ok_seq;
    assert_int_equal(scan_all(f), 1);
    assert_int_equal(scan_all(f), 0); /* once per window */
    uint64_t ev[KR_ALERT_EVIDENCE_MAX];
    uint32_t nev = 0;
    const msgpack_object *l = list(f, 0, false);
    assert_int_equal(count_rule(l, KR_ALERT_RULE_BACKUP_MISSED, ev, &nev), 1);
    assert_int_equal(ev[0], failed_seq); /* the newest backup record */
    assert_int_equal(td_map_get(&l->via.array.ptr[0], "tenant")->type, MSGPACK_OBJECT_NIL);
    f->t->now += 3601 * S;
    assert_int_equal(scan_all(f), 1); /* still missing, a window later */
    assert_int_equal(ret_backup_recorded(f->t->d, true, "2026-04-02", last_seq(f), 4096, NULL),
                     KR_OK);
    f->t->now += 3601 * S / 2;
    assert_int_equal(scan_all(f), 0);
    /* off by default */
    alr_defaults(&f->o);
    assert_int_equal(f->o.rule[KR_ALERT_RULE_BACKUP_MISSED].count, 0);
}

/* A journal of its own with a 4 MiB map: storage_low fires at a per cent
 * of the map it has passed, once per window, and not at 100. */
static void test_storage_low(void **state)
{
    (void)state;
    char dir[512];
    kr_test_tmpdir(dir, sizeof dir);
    struct jrn_options jo = {.dir = dir, .map_size = 4ull << 20};
    assert_int_equal(jrn_create(&jo, NULL), KR_OK);
    struct kr_domain_options o = {.dir = dir, .map_size = 4ull << 20};
    struct kr_domain *d;
    assert_int_equal(dom_open(&o, &d), KR_OK);
    MDB_envinfo info;
    MDB_stat st;
    assert_int_equal(mdb_env_info(jrn_env(d->j), &info), 0);
    assert_int_equal(mdb_env_stat(jrn_env(d->j), &st), 0);
    assert_int_equal(info.me_mapsize, 4ull << 20);
    uint64_t pct = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize * 100 / info.me_mapsize;
    assert_true(pct >= 1);
    struct alr_options ao;
    alr_defaults(&ao);
    ao.from_seq = 1;
    ao.no_cursor = true;
    ao.rule[KR_ALERT_RULE_INCIDENT_DUE].count = 0;
    ao.rule[KR_ALERT_RULE_INCIDENT_OVERDUE].count = 0;
    ao.rule[KR_ALERT_RULE_STORAGE_LOW].count = 100;
    uint64_t n = 9;
    bool more;
    struct alr_scanner *s;
    assert_int_equal(alr_new(d, &ao, &s), KR_OK);
    assert_int_equal(alr_scan(s, &n, &more), KR_OK);
    assert_int_equal(n, 0);
    alr_free(s);
    ao.rule[KR_ALERT_RULE_STORAGE_LOW].count = (uint32_t)pct;
    assert_int_equal(alr_new(d, &ao, &s), KR_OK);
    assert_int_equal(alr_scan(s, &n, &more), KR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(alr_scan(s, &n, &more), KR_OK);
    assert_int_equal(n, 0); /* once per window */
    alr_free(s);
    ao.rule[KR_ALERT_RULE_STORAGE_LOW].count = 101;
    assert_int_equal(alr_new(d, &ao, &s), KR_EINVAL);
    dom_close(d);
    kr_test_rmrf(dir);
}

/* Appends refused for space are counted while the journal is full and
 * raise one alert once writes succeed again. */
static void test_writes_refused(void **state)
{
    (void)state;
    char dir[512];
    kr_test_tmpdir(dir, sizeof dir);
    struct jrn_options jo = {.dir = dir, .map_size = 2ull << 20};
    assert_int_equal(jrn_create(&jo, NULL), KR_OK);
    struct kr_domain_options o = {.dir = dir, .map_size = 2ull << 20};
    struct kr_domain *d;
    assert_int_equal(dom_open(&o, &d), KR_OK);
    struct alr_options ao;
    alr_defaults(&ao);
    ao.no_cursor = true;
    ao.from_seq = 1;
    ao.rule[KR_ALERT_RULE_STORAGE_LOW].count = 0;
    struct alr_scanner *s;
    assert_int_equal(alr_new(d, &ao, &s), KR_OK);
    /* fill the map */
    struct kr_payload *p = kr_payload_new();
    assert_non_null(p);
    char reason[256];
    memset(reason, 'x', 255);
    reason[255] = '\0';
    kr_err err = KR_OK;
    unsigned appended = 0;
    while (appended < 100000) {
        kr_payload_reset(p, KR_EV_BACKUP_FAILED);
        kr_set_str(p, KR_FLD_REASON, reason);
        if ((err = dom_append_plain(d, 0, "system", p, NULL, NULL)))
            break;
        appended++;
    }
    assert_int_equal(err, KR_EFULL);
    for (int i = 0; i < 2; i++) {
        kr_payload_reset(p, KR_EV_BACKUP_FAILED);
        kr_set_str(p, KR_FLD_REASON, reason);
        assert_int_equal(dom_append_plain(d, 0, "system", p, NULL, NULL), KR_EFULL);
    }
    uint64_t n = 9, size = jrn_size(d->j);
    bool more = true;
    while (more)
        assert_int_equal(alr_scan(s, &n, &more), KR_OK);
    assert_int_equal(n, 0); /* still full: nothing raised, nothing lost */
    assert_int_equal(jrn_size(d->j), size);
    /* room again: the map grows (the operator's remedy, here in-process) */
    assert_int_equal(mdb_env_set_mapsize(jrn_env(d->j), 8ull << 20), 0);
    assert_int_equal(alr_scan(s, &n, &more), KR_OK);
    assert_int_equal(n, 1);
    struct jrn_recbuf b = {0};
    assert_int_equal(jrn_read(d->j, jrn_size(d->j), &b), KR_OK);
    assert_int_equal(kr_event_lookup(b.rec.type, b.rec.type_len), KR_EV_ALERT_RAISED);
    struct kr_diag dg;
    assert_int_equal(kr_event_decode(KR_EV_ALERT_RAISED, &b.rec, NULL, p, &dg), KR_OK);
    assert_int_equal(p->v[KR_FLD_ALERT_RULE].u, KR_ALERT_RULE_WRITES_REFUSED);
    char sum[300];
    snprintf(sum, sizeof sum, "%.*s", (int)p->v[KR_FLD_ALERT_SUMMARY].n,
             (const char *)p->v[KR_FLD_ALERT_SUMMARY].p);
    assert_string_equal(
        sum, "writes_refused: 3 appends refused for lack of space; writes succeed again");
    jrn_recbuf_fini(&b);
    assert_int_equal(alr_scan(s, &n, &more), KR_OK);
    assert_int_equal(n, 0); /* once */
    alr_free(s);
    kr_payload_free(p);
    dom_close(d);
    kr_test_rmrf(dir);
}

static void register_contact(struct fx *f)
{
    kr_set_str(td_args(f->t), KR_FLD_NAME, "佐藤 一郎");
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_CONTACTS_REGISTER), KR_OK);
}

/* A tenant that writes a record a minute for five minutes, then ten in one
 * minute: request_rate fires at the tenth (five times its usual, and at
 * least rate_min), once in that window; tenant b, quiet, raises nothing. */
static void test_request_rate(void **state)
{
    struct fx *f = *state;
    f->o.rule[KR_ALERT_RULE_REQUEST_RATE] = (struct alr_rule_limit){5, 60};
    f->o.rate_min = 10;
    for (int i = 0; i < 5; i++) {
        f->t->now += 61 * S;
        register_contact(f);
    }
    f->t->now += 61 * S;
    for (int i = 0; i < 9; i++)
        register_contact(f);
    assert_int_equal(scan_all(f), 0); /* nine: under rate_min */
    register_contact(f);
    uint64_t tenth = last_seq(f);
    assert_int_equal(scan_all(f), 1);
    for (int i = 0; i < 5; i++)
        register_contact(f);
    assert_int_equal(scan_all(f), 0); /* once per window */
    const msgpack_object *l = list(f, 0, false);
    uint64_t ev[KR_ALERT_EVIDENCE_MAX];
    uint32_t nev = 0;
    assert_int_equal(count_rule(l, KR_ALERT_RULE_REQUEST_RATE, ev, &nev), 1);
    assert_int_equal(nev, 10);
    assert_int_equal(ev[9], tenth);
    assert_int_equal(td_map_get(&l->via.array.ptr[0], "tenant")->via.u64, f->a);
    assert_int_equal(td_map_get(&l->via.array.ptr[0], "account")->type, MSGPACK_OBJECT_NIL);
    /* without history, a first busy window raises nothing */
    f->o.rule[KR_ALERT_RULE_REQUEST_RATE] = (struct alr_rule_limit){5, 600};
    assert_int_equal(scan_all(f), 0);
}

static void test_rule_off(void **state)
{
    struct fx *f = *state;
    f->o.rule[KR_ALERT_RULE_LOGIN_FAILURES].count = 0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(login(f, "owner@a.example", "wrong horse"), KR_EAUTH);
    assert_int_equal(scan_all(f), 0);
    /* and limits out of bounds are refused */
    struct alr_scanner *s;
    f->o.rule[KR_ALERT_RULE_LOGIN_FAILURES] =
        (struct alr_rule_limit){KR_ALERT_EVIDENCE_MAX + 1, 60};
    assert_int_equal(alr_new(f->t->d, &f->o, &s), KR_EINVAL);
    f->o.rule[KR_ALERT_RULE_LOGIN_FAILURES] = (struct alr_rule_limit){3, 0};
    assert_int_equal(alr_new(f->t->d, &f->o, &s), KR_EINVAL);
}

static void test_ack_report_and_access(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(login(f, "owner@a.example", "wrong horse"), KR_EAUTH);
    assert_int_equal(scan_all(f), 1);
    const msgpack_object *l = list(f, 0, false);
    uint8_t id[16];
    memcpy(id, td_map_get(&l->via.array.ptr[0], "alert")->via.bin.ptr, 16);

    /* the report for tenant a has it; tenant b's is empty */
    assert_int_equal(list(f, f->a, false)->via.array.size, 1);
    assert_int_equal(list(f, f->b, false)->via.array.size, 0);
    kr_set_u64(td_args(f->t), KR_FLD_TENANT, 0);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_ALERTS_REPORT), KR_EINVAL);

    /* tenants' callers never see alerts */
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_ALERTS_LIST), KR_EFORBIDDEN);
    kr_set_u64(td_args(f->t), KR_FLD_TENANT, f->a);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_ALERTS_REPORT), KR_EFORBIDDEN);

    /* ack: a wrong version, an unknown id, then the right one, then again */
    struct kr_payload *a = td_args(f->t);
    kr_set_bytes(a, KR_FLD_ALERT, id, 16);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    uint64_t size = last_seq(f);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_ALERTS_ACK), KR_ECONFLICT);
    uint8_t other[16] = {1};
    a = td_args(f->t);
    kr_set_bytes(a, KR_FLD_ALERT, other, 16);
    kr_set_u64(a, KR_FLD_VERSION, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_ALERTS_ACK), KR_ENOTFOUND);
    assert_true(td_unchanged_since(f->t, size));
    a = td_args(f->t);
    kr_set_bytes(a, KR_FLD_ALERT, id, 16);
    kr_set_u64(a, KR_FLD_VERSION, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_ALERTS_ACK), KR_OK);
    assert_int_equal(td_get_u64(f->t, "version"), 2);
    a = td_args(f->t);
    kr_set_bytes(a, KR_FLD_ALERT, id, 16);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_ALERTS_ACK), KR_ECONFLICT);

    l = list(f, 0, false);
    assert_int_equal(l->via.array.size, 1);
    assert_true(td_map_get(&l->via.array.ptr[0], "acknowledged")->via.boolean);
    assert_int_equal(list(f, 0, true)->via.array.size, 0);
}

static void test_paging(void **state)
{
    struct fx *f = *state;
    f->o.rule[KR_ALERT_RULE_LOGIN_FAILURES].count = 1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(login(f, "owner@a.example", "wrong horse"), KR_EAUTH);
        f->t->now += 601 * S;
    }
    assert_int_equal(scan_all(f), 3);
    uint8_t cur[8];
    size_t seen = 0;
    bool first = true;
    for (;;) {
        struct kr_payload *a = td_args(f->t);
        kr_set_u64(a, KR_FLD_LIMIT, 2);
        if (!first)
            kr_set_bytes(a, KR_FLD_CURSOR, cur, 8);
        first = false;
        assert_int_equal(td_exec(f->t, &f->op, KR_OP_ALERTS_LIST), KR_OK);
        seen += td_get(f->t, "alerts")->via.array.size;
        const msgpack_object *c = td_get(f->t, "cursor");
        if (c->type == MSGPACK_OBJECT_NIL)
            break;
        assert_int_equal(c->via.bin.size, 8);
        memcpy(cur, c->via.bin.ptr, 8);
    }
    assert_int_equal(seen, 3);
    uint8_t bad[4] = {0};
    kr_set_bytes(td_args(f->t), KR_FLD_CURSOR, bad, sizeof bad);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_ALERTS_LIST), KR_EINVAL);
}

/* Views rebuilt from the journal equal the live ones. */
static void test_rebuild_equal(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(login(f, "owner@a.example", "wrong horse"), KR_EAUTH);
    assert_int_equal(scan_all(f), 1);
    const msgpack_object *l = list(f, 0, false);
    uint8_t id[16];
    memcpy(id, td_map_get(&l->via.array.ptr[0], "alert")->via.bin.ptr, 16);
    struct kr_payload *a = td_args(f->t);
    kr_set_bytes(a, KR_FLD_ALERT, id, 16);
    kr_set_u64(a, KR_FLD_VERSION, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_ALERTS_ACK), KR_OK);
    enum kr_view vs[] = {VIEW_ALERTS, VIEW_ALERT_IDS, VIEW_ALERT_TENANTS, VIEW_ALERT_LAST};
    uint8_t live[4][32], again[4][32];
    uint64_t n;
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(f->t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(views_digest(&f->t->d->views, txn, vs[i], live[i], &n), KR_OK);
        assert_true(n > 0);
    }
    mdb_txn_abort(txn);
    /* drop the alert views and apply the journal again */
    assert_int_equal(mdb_txn_begin(jrn_env(f->t->d->j), NULL, 0, &txn), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(mdb_drop(txn, f->t->d->views.db[vs[i]], 0), 0);
    struct jrn_recbuf b = {0};
    for (uint64_t seq = 1; seq <= last_seq(f); seq++) {
        assert_int_equal(jrn_read(f->t->d->j, seq, &b), KR_OK);
        int ev = kr_event_lookup(b.rec.type, b.rec.type_len);
        if (ev != KR_EV_ALERT_RAISED && ev != KR_EV_ALERT_ACKNOWLEDGED)
            continue;
        struct kr_diag d;
        assert_int_equal(kr_event_decode(ev, &b.rec, NULL, f->t->d->views.scratch, &d), KR_OK);
        struct va va = {&f->t->d->views, txn, &b.rec, f->t->d->views.scratch, ev};
        assert_int_equal(va_alerts(&va), KR_OK);
    }
    jrn_recbuf_fini(&b);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(views_digest(&f->t->d->views, txn, vs[i], again[i], &n), KR_OK);
        assert_memory_equal(live[i], again[i], 32);
    }
    mdb_txn_abort(txn);
}

struct wait_alerts {
    struct kr_domain *d;
    size_t want;
};

/* Whether v.alerts holds w->want rows. */
static bool alerts_at_least(void *arg)
{
    struct wait_alerts *w = arg;
    MDB_txn *txn;
    MDB_stat st;
    if (mdb_txn_begin(jrn_env(w->d->j), NULL, MDB_RDONLY, &txn))
        return false;
    int rc = mdb_stat(txn, w->d->views.db[VIEW_ALERTS], &st);
    mdb_txn_abort(txn);
    return rc == 0 && st.ms_entries >= w->want;
}

struct wait_rounds {
    struct alr_runner *r;
    uint64_t want;
};

static bool rounds_done(void *arg)
{
    struct wait_rounds *w = arg;
    return alr_rounds(w->r) >= w->want;
}

/* serve's thread: raises what appears while it runs, and resumes from its
 * cursor after a restart without raising anything twice. */
static void test_runner(void **state)
{
    struct fx *f = *state;
    struct alr_runner *r;
    assert_int_equal(alr_start(f->t->d, &f->o, 10, &r), KR_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(login(f, "owner@a.example", "wrong horse"), KR_EAUTH);
    struct wait_alerts w = {f->t->d, 1};
    assert_true(kr_test_wait_for(alerts_at_least, &w, KR_TEST_WAIT_MS, "the first alert"));
    alr_stop(r);
    uint64_t size = last_seq(f);
    td_reopen(f->t);
    assert_int_equal(alr_start(f->t->d, &f->o, 10, &r), KR_OK);
    struct wait_rounds wr = {r, alr_rounds(r) + 2}; /* two whole rounds after the start */
    assert_true(kr_test_wait_for(rounds_done, &wr, KR_TEST_WAIT_MS, "two rounds"));
    alr_stop(r);
    assert_int_equal(last_seq(f), size);
    assert_int_equal(alr_start(f->t->d, &f->o, 0, &r), KR_EINVAL);
}

/* The normal traffic of `kiroku seed` raises nothing with the default rules:
 * seeding runs the scanner itself, and the one alert it raises is the
 * lockout it stages (five wrong passwords on one account), acknowledged; a
 * scan of the whole journal again by every other rule raises nothing (they
 * have no earlier alert that could hide one). */
static void test_seed_traffic_is_quiet(void **state)
{
    (void)state;
    char dir[512], out[4096], err[4096];
    kr_test_tmpdir(dir, sizeof dir);
    int rc = kr_test_run(KR_KIROKU_BIN,
                         (const char *const[]){"seed", "--data", dir, "--tenants", "4",
                                               "--contacts", "30", "--seed", "7", NULL},
                         out, err, sizeof out);
    if (rc != 0)
        fail_msg("seed exited %d: %s", rc, err);
    struct kr_domain_options o = {.dir = dir, .pwhash_ops = 1, .pwhash_mem = 8192};
    struct kr_domain *d;
    assert_int_equal(dom_open(&o, &d), KR_OK);
    struct kr_wbuf reply;
    struct kr_diag diag;
    kr_wbuf_init(&reply, KR_API_REPLY_MAX);
    struct kr_payload *args = kr_payload_new();
    assert_non_null(args);
    kr_payload_reset(args, -1);
    struct kr_caller op = td_operator();
    assert_int_equal(dom_exec(d, &op, KR_OP_ALERTS_LIST, args, &reply, &diag), KR_OK);
    msgpack_unpacked res;
    msgpack_unpacked_init(&res);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&res, (const char *)reply.data, reply.size, &off),
                     MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *l = td_map_get(&res.data, "alerts");
    assert_non_null(l);
    assert_int_equal(l->via.array.size, 1);
    assert_true(str_is(td_map_get(&l->via.array.ptr[0], "alert_rule"), "lockout"));
    assert_true(td_map_get(&l->via.array.ptr[0], "acknowledged")->via.boolean);
    msgpack_unpacked_destroy(&res);
    kr_payload_free(args);
    kr_wbuf_free(&reply);

    struct alr_options ao;
    alr_defaults(&ao);
    ao.rule[KR_ALERT_RULE_LOCKOUT].count = 0;
    /* this domain runs on the real clock, months after the seeded one: its
     * incidents are long overdue now (seeding checked them on its clock) */
    ao.rule[KR_ALERT_RULE_INCIDENT_DUE].count = 0;
    ao.rule[KR_ALERT_RULE_INCIDENT_OVERDUE].count = 0;
    ao.from_seq = 1;
    ao.no_cursor = true;
    struct alr_scanner *s;
    assert_int_equal(alr_new(d, &ao, &s), KR_OK);
    uint64_t n = 0, total = 0;
    bool more = true;
    while (more) {
        assert_int_equal(alr_scan(s, &n, &more), KR_OK);
        total += n;
    }
    assert_true(alr_next_seq(s) > 100);
    alr_free(s);
    dom_close(d);
    assert_int_equal(total, 0);
    kr_test_rmrf(dir);
}

/* serve's settings (tools/config.c, printed by --config-help) have the
 * defaults alr_defaults documents, but backup_missed, which serve turns on
 * only with its daily backups. */
static void test_settings_match_defaults(void **state)
{
    (void)state;
    static char out[65536], err[4096];
    int rc = kr_test_run(KR_KIROKU_BIN, (const char *const[]){"serve", "--config-help", NULL}, out,
                         err, sizeof out);
    assert_int_equal(rc, 0);
    struct alr_options o;
    alr_defaults(&o);
    for (int i = 0; i < KR_ALERT_RULE__COUNT; i++) {
        const char *rule = kr_enums[KR_ENUM_ALERT_RULE].values[i];
        char key[96];
        snprintf(key, sizeof key, "| `alerts.%s.count` | ", rule);
        const char *p = strstr(out, key);
        if (!p)
            fail_msg("no setting alerts.%s.count", rule);
        p = strstr(p + strlen(key), "| `");
        assert_non_null(p);
        unsigned long long v = strtoull(p + 3, NULL, 10);
        if (i == KR_ALERT_RULE_BACKUP_MISSED)
            assert_int_equal(v, 1);
        else if (v != o.rule[i].count)
            fail_msg("alerts.%s.count: setting %llu, alr_defaults %u", rule, v, o.rule[i].count);
        if (i == KR_ALERT_RULE_INCIDENT_OVERDUE || i == KR_ALERT_RULE_WRITES_REFUSED)
            continue;
        snprintf(key, sizeof key, "| `alerts.%s.window_s` | ", rule);
        p = strstr(out, key);
        if (!p)
            fail_msg("no setting alerts.%s.window_s", rule);
        p = strstr(p + strlen(key), "| `");
        v = strtoull(p + 3, NULL, 10);
        if (v != o.rule[i].window_s)
            fail_msg("alerts.%s.window_s: setting %llu, alr_defaults %llu", rule, v,
                     (unsigned long long)o.rule[i].window_s);
    }
    const char *p = strstr(out, "| `alerts.request_rate.min` | ");
    assert_non_null(p);
    p = strstr(p + 30, "| `");
    assert_int_equal(strtoull(p + 3, NULL, 10), o.rate_min);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_login_failures_and_lockout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_once_per_window_and_rescan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures_spread_over_windows_are_quiet, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_login_spray, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incident_deadlines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_missed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_rate, setup, teardown),
        cmocka_unit_test(test_storage_low),
        cmocka_unit_test(test_writes_refused),
        cmocka_unit_test_setup_teardown(test_rule_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_report_and_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_equal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runner, setup, teardown),
        cmocka_unit_test(test_seed_traffic_is_quiet),
        cmocka_unit_test(test_settings_match_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
