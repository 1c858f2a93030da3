/*
 * platform_deadline_test.c: the platform shard is the one deadline
 * authority for its incidents (dom_incident_mail, projections/notices.h),
 * in process: a platform domain (shard "platform") and a tenant shard's
 * domain hosting one tenant, whose records are imported with
 * dom_platform_import.
 *
 * The platform's deadline job records the notifications of a listed
 * incident's due tenants and queues no e-mail, and its incidents.overdue
 * then lists none of them; the shard importing them queues exactly one
 * e-mail; the shard's own job notifies nobody for the imported incident
 * (before and after a reopen) but still e-mails its update and resolution;
 * the shard's own incidents and the platform's incidents of audience all
 * (which name no tenant on the platform) stay the shard's to notify; a
 * tenant without a master account on its shard stays due there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "notices.h"
#include "platform_import.h"
#include "test_domain.h"

#define HOUR (3600ull * 1000000000ull)

/* A tenant id no shard here hosts (the platform checks ids only). */
#define ELSEWHERE 987654321ull

struct fx {
    struct td *p; /* the platform shard */
    struct td *a; /* a tenant shard */
    uint64_t ta;  /* a's tenant */
    struct kr_caller ma, op;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->p = td_new(41);
    f->p->shard = KR_PLATFORM_SHARD;
    td_reopen(f->p);
    assert_true(f->p->d->platform);
    f->a = td_new(42);
    f->ta = td_signup(f->a, "owner@a.example", "correct horse 1", &f->ma, NULL);
    atomic_store(&f->p->now, atomic_load(&f->a->now));
    f->op = td_operator();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    td_free(f->p);
    td_free(f->a);
    free(f);
    return 0;
}

static uint64_t now(struct fx *f)
{
    return atomic_load(&f->a->now);
}

/* Opens an incident on t detected `ago` before now: listed for a's tenant
 * and one elsewhere, or of audience all. */
static void open_incident(struct fx *f, struct td *t, uint64_t ago, int audience, uint8_t id[16])
{
    uint64_t ts[2] = {f->ta < ELSEWHERE ? f->ta : ELSEWHERE, f->ta < ELSEWHERE ? ELSEWHERE : f->ta};
    struct kr_payload *p = td_args(t);
    kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_OUTAGE);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_HIGH);
    kr_set_str(p, KR_FLD_TITLE, "API outage");
    kr_set_str(p, KR_FLD_SUMMARY, "The API did not answer for 20 minutes.");
    kr_set_u64(p, KR_FLD_DETECTED, now(f) - ago);
    kr_set_u64(p, KR_FLD_AUDIENCE, (uint64_t)audience);
    if (audience == KR_AUDIENCE_LISTED)
        kr_set_tenants(p, KR_FLD_TENANTS, t == f->p ? ts : &f->ta, t == f->p ? 2 : 1);
    kr_err err = td_exec(t, &f->op, KR_OP_INCIDENTS_OPEN);
    if (err)
        fail_msg("open: %s (%s: %s)", kr_strerror(err), t->diag.field, t->diag.why);
    td_get_id(t, "incident", id);
}

/* incidents.update or, with resolve, incidents.resolve on the platform. */
static void change(struct fx *f, const uint8_t id[16], uint64_t version, bool resolve)
{
    struct kr_payload *p = td_args(f->p);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    kr_set_u64(p, KR_FLD_VERSION, version);
    kr_set_str(p, KR_FLD_SUMMARY, resolve ? "Fixed." : "Mostly back.");
    if (!resolve)
        kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_MEDIUM);
    assert_int_equal(
        td_exec(f->p, &f->op, resolve ? KR_OP_INCIDENTS_RESOLVE : KR_OP_INCIDENTS_UPDATE), KR_OK);
}

/* Imports the importable platform records from seq `from` into a; returns
 * how many were imported. */
static size_t import_from(struct fx *f, uint64_t from)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = from};
    struct jrn_cursor *c;
    struct jrn_record r;
    size_t n = 0;
    kr_err err;
    assert_int_equal(jrn_cursor_new(f->p->d->j, &q, &c), KR_OK);
    while ((err = jrn_cursor_next(c, &r)) == KR_OK) {
        if (!dom_platform_importable(&r))
            continue;
        bool imported = false;
        if ((err = dom_platform_import(f->a->d, &r, &imported)))
            fail_msg("import of %llu: %s", (unsigned long long)r.seq, kr_strerror(err));
        n += imported;
    }
    assert_int_equal(err, KR_ENOTFOUND);
    jrn_cursor_free(c);
    return n;
}

struct mails {
    size_t n, notices, updates, resolutions;
    uint64_t tenant[8];
};

static bool collect(void *arg, const struct outbox_msg *m)
{
    struct mails *ms = arg;
    if (ms->n < 8)
        ms->tenant[ms->n] = m->tenant;
    ms->n++;
    ms->notices += m->template_id == KR_TEMPLATE_INCIDENT_NOTICE;
    ms->updates += m->template_id == KR_TEMPLATE_INCIDENT_UPDATE;
    ms->resolutions += m->template_id == KR_TEMPLATE_INCIDENT_RESOLVED;
    return true;
}

static struct mails mails_of(struct td *t)
{
    struct mails ms = {0};
    assert_int_equal(outbox_pending(t->d, 0, 0, collect, &ms, NULL), KR_OK);
    return ms;
}

/* incidents.overdue on t within `hours`: the number of due entries. */
static uint32_t overdue(struct fx *f, struct td *t, uint64_t hours)
{
    kr_set_u64(td_args(t), KR_FLD_WITHIN_HOURS, hours);
    assert_int_equal(td_exec(t, &f->op, KR_OP_INCIDENTS_OVERDUE), KR_OK);
    const msgpack_object *a = td_get(t, "due");
    assert_non_null(a);
    assert_int_equal(a->type, MSGPACK_OBJECT_ARRAY);
    return a->via.array.size;
}

/* Runs t's deadline job with 24 hours of warning; returns what it counts. */
static size_t deadline_job(struct td *t)
{
    size_t queued = 99;
    assert_int_equal(dom_incident_mail(t->d, 24 * HOUR, 0, &queued), KR_OK);
    return queued;
}

/* The platform's job records the notification of every due tenant of a
 * listed incident (channel email, actor system), queues no e-mail, and its
 * incidents.overdue no longer lists them; once only. */
static void test_platform_records_notifications(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    open_incident(f, f->p, 71 * HOUR, KR_AUDIENCE_LISTED, id);
    assert_int_equal(overdue(f, f->p, 24), 2);
    uint64_t size = jrn_size(f->p->d->j);
    assert_int_equal(deadline_job(f->p), 2);
    assert_int_equal(jrn_size(f->p->d->j), size + 2);
    for (uint64_t seq = size + 1; seq <= size + 2; seq++) {
        struct jrn_recbuf b = {0};
        assert_int_equal(jrn_read(f->p->d->j, seq, &b), KR_OK);
        assert_int_equal(kr_event_lookup(b.rec.type, b.rec.type_len), KR_EV_INCIDENT_NOTIFIED);
        assert_int_equal(b.rec.actor_len, strlen(JRN_SYSTEM_ACTOR));
        assert_memory_equal(b.rec.actor, JRN_SYSTEM_ACTOR, b.rec.actor_len);
        struct kr_payload *p = kr_payload_new();
        struct kr_diag diag = {{0}, {0}};
        assert_int_equal(kr_event_decode(KR_EV_INCIDENT_NOTIFIED, &b.rec, NULL, p, &diag), KR_OK);
        assert_int_equal(p->v[KR_FLD_CHANNEL].u, KR_CHANNEL_EMAIL);
        assert_memory_equal(p->v[KR_FLD_INCIDENT].p, id, 16);
        kr_payload_free(p);
        jrn_recbuf_fini(&b);
    }
    assert_int_equal(mails_of(f->p).n, 0);
    assert_int_equal(overdue(f, f->p, 72), 0);
    /* again, and after an update: nothing more (no e-mail owed there) */
    change(f, id, 3, false);
    size = jrn_size(f->p->d->j);
    assert_int_equal(deadline_job(f->p), 0);
    assert_true(td_unchanged_since(f->p, size));
    assert_int_equal(mails_of(f->p).n, 0);
}

/* The shard leaves the imported incident's deadline to the platform: its
 * job notifies nobody (the tenant stays due there until the platform's
 * notification arrives), then the import queues exactly one e-mail; update
 * and resolution e-mails are still the shard's. */
static void test_shard_follows_platform(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    open_incident(f, f->p, 71 * HOUR, KR_AUDIENCE_LISTED, id);
    assert_int_equal(import_from(f, 1), 1);
    assert_int_equal(overdue(f, f->a, 24), 1);
    uint64_t size = jrn_size(f->a->d->j);
    struct mails m0 = mails_of(f->a);
    assert_int_equal(deadline_job(f->a), 0);
    assert_true(td_unchanged_since(f->a, size));
    td_reopen(f->a); /* what it knows is in the journal: the same after a restart */
    assert_int_equal(deadline_job(f->a), 0);
    assert_true(td_unchanged_since(f->a, size));

    uint64_t from = jrn_size(f->p->d->j) + 1;
    assert_int_equal(deadline_job(f->p), 2);
    assert_int_equal(import_from(f, from), 1); /* a's tenant's; the other is elsewhere */
    struct mails m1 = mails_of(f->a);
    assert_int_equal(m1.n, m0.n + 1);
    assert_int_equal(m1.notices, m0.notices + 1);
    assert_int_equal(m1.tenant[m1.n - 1], f->ta);
    assert_int_equal(overdue(f, f->a, 72), 0);
    size = jrn_size(f->a->d->j);
    assert_int_equal(deadline_job(f->a), 0);
    assert_true(td_unchanged_since(f->a, size));

    from = jrn_size(f->p->d->j) + 1;
    change(f, id, 3, false);
    assert_int_equal(import_from(f, from), 1);
    assert_int_equal(deadline_job(f->a), 1);
    from = jrn_size(f->p->d->j) + 1;
    change(f, id, 4, true);
    assert_int_equal(import_from(f, from), 1);
    assert_int_equal(deadline_job(f->a), 1);
    struct mails m2 = mails_of(f->a);
    assert_int_equal(m2.n, m1.n + 2);
    assert_int_equal(m2.updates, m1.updates + 1);
    assert_int_equal(m2.resolutions, m1.resolutions + 1);
    assert_int_equal(mails_of(f->p).n, 0);
}

/* What the platform cannot notify stays the shard's: an incident of
 * audience all (no tenant is named on the platform) and the shard's own;
 * an imported listed incident due before them is passed over. */
static void test_shard_notifies_its_own_and_all(void **state)
{
    struct fx *f = *state;
    uint8_t all[16], own[16], listed[16];
    open_incident(f, f->p, 71 * HOUR, KR_AUDIENCE_ALL, all);
    assert_int_equal(overdue(f, f->p, 72), 0);
    uint64_t psize = jrn_size(f->p->d->j);
    assert_int_equal(deadline_job(f->p), 0);
    assert_true(td_unchanged_since(f->p, psize));
    /* and a listed one, the earliest deadline: the shard's job passes over
     * it to reach the others */
    open_incident(f, f->p, 75 * HOUR, KR_AUDIENCE_LISTED, listed);
    assert_int_equal(import_from(f, 1), 2);
    open_incident(f, f->a, 73 * HOUR, KR_AUDIENCE_LISTED, own);
    assert_int_equal(overdue(f, f->a, 24), 3);
    struct mails m0 = mails_of(f->a);
    /* with incidents.auto_notify = false serve runs only the second half */
    size_t queued = 99, size = jrn_size(f->a->d->j);
    assert_int_equal(dom_incident_update_mail(f->a->d, 0, &queued), KR_OK);
    assert_int_equal(queued, 0);
    assert_true(td_unchanged_since(f->a, size));
    assert_int_equal(deadline_job(f->a), 2);
    struct mails m1 = mails_of(f->a);
    assert_int_equal(m1.notices, m0.notices + 2);
    assert_int_equal(overdue(f, f->a, 72), 1); /* the listed one: the platform's to notify */
    assert_int_equal(deadline_job(f->a), 0);
}

/* Deletes the master account of a's tenant (as users.delete would record
 * it for another account): a hosted tenant with nobody to write to. */
static void drop_master(struct fx *f)
{
    struct kr_payload *p = kr_payload_new();
    assert_non_null(p);
    kr_payload_reset(p, KR_EV_ACCOUNT_DELETED);
    kr_set_bytes(p, KR_FLD_ACCOUNT, f->ma.account, 16);
    char stream[KR_STREAM_MAX + 1];
    size_t slen;
    uint64_t version;
    assert_int_equal(kr_event_stream(p, stream, sizeof stream, &slen), KR_OK);
    assert_int_equal(jrn_stream_version(f->a->d->j, f->ta, stream, slen, &version), KR_OK);
    assert_int_equal(dom_append_plain(f->a->d, f->ta, JRN_SYSTEM_ACTOR, p, &version, NULL), KR_OK);
    kr_payload_free(p);
}

/* A tenant without a master account on its shard: the platform records it
 * notified (it cannot know); the shard queues nothing and does not take the
 * notification, so its incidents.overdue still lists the tenant, until a
 * notification over another channel recorded on the platform arrives. */
static void test_no_master_stays_due_on_shard(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    drop_master(f);
    open_incident(f, f->p, 73 * HOUR, KR_AUDIENCE_LISTED, id);
    assert_int_equal(import_from(f, 1), 1);
    uint64_t from = jrn_size(f->p->d->j) + 1;
    assert_int_equal(deadline_job(f->p), 2);
    assert_int_equal(overdue(f, f->p, 0), 0);
    uint64_t size = jrn_size(f->a->d->j);
    size_t mails = mails_of(f->a).n; /* the sign-up's */
    assert_int_equal(import_from(f, from), 0);
    assert_true(td_unchanged_since(f->a, size));
    assert_int_equal(mails_of(f->a).n, mails);
    assert_int_equal(overdue(f, f->a, 0), 1);
    assert_int_equal(deadline_job(f->a), 0);
    /* the operator tells the tenant on the dashboard, on the platform */
    from = jrn_size(f->p->d->j) + 1;
    struct kr_payload *p = td_args(f->p);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    kr_set_u64(p, KR_FLD_TENANT, f->ta);
    kr_set_u64(p, KR_FLD_CHANNEL, KR_CHANNEL_DASHBOARD);
    kr_err err = td_exec(f->p, &f->op, KR_OP_INCIDENTS_NOTIFY);
    if (err)
        fail_msg("notify: %s (%s: %s)", kr_strerror(err), f->p->diag.field, f->p->diag.why);
    assert_int_equal(import_from(f, from), 1);
    assert_int_equal(overdue(f, f->a, 0), 0);
    assert_int_equal(mails_of(f->a).n, mails);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_platform_records_notifications, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shard_follows_platform, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shard_notifies_its_own_and_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_master_stays_due_on_shard, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
