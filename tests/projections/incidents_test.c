/*
 * incidents_test.c: incidents (projections/cmd_notices.c, v_notices.c):
 * the 72-hour deadline, affected tenants (listed, or every existing tenant),
 * notifications clearing what is due, overdue and due-within queries as the
 * clock moves, updates and resolution, reports by tenants, the outbox the
 * delivery worker reads, every rejection, and the views rebuilding
 * byte-identical from the journal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "notices.h"
#include "test_domain.h"

#define S    1000000000ull
#define HOUR (3600ull * S)

struct fx {
    struct td *t;
    uint64_t a, b, c; /* three tenants */
    struct kr_caller ma, mb, mc, op;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->t = td_new(23);
    f->a = td_signup(f->t, "owner@a.example", "correct horse 1", &f->ma, NULL);
    f->b = td_signup(f->t, "owner@b.example", "correct horse 2", &f->mb, NULL);
    f->c = td_signup(f->t, "owner@c.example", "correct horse 3", &f->mc, NULL);
    f->op = td_operator();
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

static uint64_t now(struct fx *f)
{
    return atomic_load(&f->t->now);
}

static struct kr_payload *open_args(struct fx *f, uint64_t detected, int audience,
                                    const uint64_t *tenants, size_t n)
{
    struct kr_payload *p = td_args(f->t);
    kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_OUTAGE);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_HIGH);
    kr_set_str(p, KR_FLD_TITLE, "API outage");
    kr_set_str(p, KR_FLD_SUMMARY, "The API did not answer for 20 minutes.");
    kr_set_u64(p, KR_FLD_DETECTED, detected);
    kr_set_u64(p, KR_FLD_AUDIENCE, (uint64_t)audience);
    if (tenants)
        kr_set_tenants(p, KR_FLD_TENANTS, tenants, n);
    return p;
}

static void open_incident(struct fx *f, uint64_t detected, int audience, const uint64_t *tenants,
                          size_t n, uint8_t id[16])
{
    open_args(f, detected, audience, tenants, n);
    kr_err err = td_exec(f->t, &f->op, KR_OP_INCIDENTS_OPEN);
    if (err)
        fail_msg("open: %s (%s: %s)", kr_strerror(err), f->t->diag.field, f->t->diag.why);
    td_get_id(f->t, "incident", id);
    assert_int_equal(td_get_u64(f->t, "deadline"), detected + 72 * HOUR);
}

static kr_err notify(struct fx *f, const uint8_t id[16], uint64_t tenant, int channel)
{
    struct kr_payload *p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    kr_set_u64(p, KR_FLD_TENANT, tenant);
    kr_set_u64(p, KR_FLD_CHANNEL, (uint64_t)channel);
    return td_exec(f->t, &f->op, KR_OP_INCIDENTS_NOTIFY);
}

/* incidents.overdue; returns the "due" array. */
static const msgpack_object *overdue(struct fx *f, int64_t within_hours)
{
    struct kr_payload *p = td_args(f->t);
    if (within_hours >= 0)
        kr_set_u64(p, KR_FLD_WITHIN_HOURS, (uint64_t)within_hours);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_OVERDUE), KR_OK);
    const msgpack_object *a = td_get(f->t, "due");
    assert_non_null(a);
    assert_int_equal(a->type, MSGPACK_OBJECT_ARRAY);
    return a;
}

static const msgpack_object *list(struct fx *f, const struct kr_caller *who)
{
    td_args(f->t);
    assert_int_equal(td_exec(f->t, who, KR_OP_INCIDENTS_LIST), KR_OK);
    const msgpack_object *a = td_get(f->t, "incidents");
    assert_non_null(a);
    assert_int_equal(a->type, MSGPACK_OBJECT_ARRAY);
    return a;
}

static bool bin_is(const msgpack_object *o, const void *want, size_t n)
{
    return o && o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == n &&
           memcmp(o->via.bin.ptr, want, n) == 0;
}

static bool str_is(const msgpack_object *o, const char *want)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(want) &&
           memcmp(o->via.str.ptr, want, o->via.str.size) == 0;
}

/* Pending e-mails, as the delivery worker sees them. */
struct mail {
    uint64_t seq, tenant;
    uint8_t message[16];
    int template_id;
    char email[256];
    uint8_t incident[16];
    bool has_incident;
    /* what it is about (outbox_about) */
    bool about_incident, resolved;
    char title[256], summary[2048];
    uint64_t deadline;
    int severity;
};

struct mails {
    struct mail m[32];
    size_t n;
};

static bool collect(void *arg, const struct outbox_msg *m)
{
    struct mails *ms = arg;
    assert_true(ms->n < 32);
    struct mail *x = &ms->m[ms->n++];
    memset(x, 0, sizeof *x);
    x->seq = m->seq;
    x->tenant = m->tenant;
    memcpy(x->message, m->message, 16);
    x->template_id = m->template_id;
    const struct kr_value *e = &m->p->v[KR_FLD_EMAIL];
    assert_true(e->set && e->n < sizeof x->email);
    memcpy(x->email, e->p, e->n);
    x->has_incident = m->p->v[KR_FLD_INCIDENT].set;
    if (x->has_incident)
        memcpy(x->incident, m->p->v[KR_FLD_INCIDENT].p, 16);
    assert_non_null(m->about);
    x->about_incident = m->about->incident;
    assert_true(x->about_incident == x->has_incident);
    if (x->about_incident) {
        assert_true(m->about->title->n < sizeof x->title);
        memcpy(x->title, m->about->title->p, m->about->title->n);
        assert_true(m->about->summary->n < sizeof x->summary);
        memcpy(x->summary, m->about->summary->p, m->about->summary->n);
        x->deadline = m->about->deadline;
        x->severity = m->about->severity;
        x->resolved = m->about->resolved;
    }
    return true;
}

static void pending(struct fx *f, struct mails *ms)
{
    uint64_t last;
    ms->n = 0;
    assert_int_equal(outbox_pending(f->t->d, 0, 0, collect, ms, &last), KR_OK);
    if (ms->n)
        assert_int_equal(last, ms->m[ms->n - 1].seq);
}

static void test_open_listed_deadline_and_list(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    uint64_t detected = now(f) - 2 * HOUR;
    uint64_t ts[1] = {f->a};
    open_incident(f, detected, KR_AUDIENCE_LISTED, ts, 1, id);

    const msgpack_object *a = list(f, &f->ma);
    assert_int_equal(a->via.array.size, 1);
    const msgpack_object *x = &a->via.array.ptr[0];
    /* detected, deadline and acknowledged_at also in JST */
    assert_int_equal(x->via.map.size, 12);
    assert_int_equal(td_map_get(x, "acknowledged_at")->type, MSGPACK_OBJECT_NIL);
    assert_non_null(td_map_get(x, "detected_jst"));
    assert_non_null(td_map_get(x, "deadline_jst"));
    assert_true(bin_is(td_map_get(x, "incident"), id, 16));
    assert_true(str_is(td_map_get(x, "incident_scope"), "outage"));
    assert_true(str_is(td_map_get(x, "severity"), "high"));
    assert_true(str_is(td_map_get(x, "title"), "API outage"));
    assert_true(str_is(td_map_get(x, "summary"), "The API did not answer for 20 minutes."));
    assert_int_equal(td_map_get(x, "detected")->via.u64, detected);
    assert_int_equal(td_map_get(x, "deadline")->via.u64, detected + 72 * HOUR);
    assert_false(td_map_get(x, "resolved")->via.boolean);

    /* B is not affected */
    assert_int_equal(list(f, &f->mb)->via.array.size, 0);
    /* auditors see their tenant's incidents too */
    uint8_t acc[16];
    memset(acc, 0x31, 16);
    struct kr_caller aud = td_account(f->a, acc, KR_ROLE_AUDITOR, 0);
    assert_int_equal(list(f, &aud)->via.array.size, 1);
}

static void test_overdue_and_due_within(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    uint64_t detected = now(f) - 2 * HOUR;
    uint64_t deadline = detected + 72 * HOUR;
    uint64_t ts[2] = {f->a < f->b ? f->a : f->b, f->a < f->b ? f->b : f->a};
    open_incident(f, detected, KR_AUDIENCE_LISTED, ts, 2, id);

    assert_int_equal(overdue(f, -1)->via.array.size, 0); /* nothing past its deadline */
    assert_int_equal(overdue(f, 69)->via.array.size, 0); /* due in 70 h: not within 69 */
    const msgpack_object *a = overdue(f, 70);
    assert_int_equal(a->via.array.size, 2);
    for (uint32_t i = 0; i < 2; i++) {
        const msgpack_object *x = &a->via.array.ptr[i];
        assert_int_equal(x->via.map.size, 6); /* and deadline_jst */
        assert_true(bin_is(td_map_get(x, "incident"), id, 16));
        assert_int_equal(td_map_get(x, "tenant")->via.u64, ts[i]);
        assert_int_equal(td_map_get(x, "deadline")->via.u64, deadline);
        assert_false(td_map_get(x, "overdue")->via.boolean);
        assert_int_equal(td_map_get(x, "version")->via.u64, 1); /* what update/resolve need */
    }

    /* the clock passes the deadline */
    atomic_store(&f->t->now, deadline + 1);
    a = overdue(f, -1);
    assert_int_equal(a->via.array.size, 2);
    assert_true(td_map_get(&a->via.array.ptr[0], "overdue")->via.boolean);

    /* notifying A (dashboard) clears A's entry only */
    assert_int_equal(notify(f, id, f->a, KR_CHANNEL_DASHBOARD), KR_OK);
    a = overdue(f, 0);
    assert_int_equal(a->via.array.size, 1);
    assert_int_equal(td_map_get(&a->via.array.ptr[0], "tenant")->via.u64, f->b);

    /* an earlier incident comes first */
    uint8_t early[16];
    uint64_t one[1] = {f->c};
    open_incident(f, detected - 10 * HOUR, KR_AUDIENCE_LISTED, one, 1, early);
    a = overdue(f, 0);
    assert_int_equal(a->via.array.size, 2);
    assert_true(bin_is(td_map_get(&a->via.array.ptr[0], "incident"), early, 16));
    assert_int_equal(td_map_get(&a->via.array.ptr[0], "deadline")->via.u64,
                     detected - 10 * HOUR + 72 * HOUR);

    /* within_hours out of range */
    kr_set_u64(td_args(f->t), KR_FLD_WITHIN_HOURS, 8761);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_OVERDUE), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "within_hours");
    /* an operator's query: tenants may not ask */
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_OVERDUE), KR_EFORBIDDEN);
}

static void test_audience_all(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_ALL, NULL, 0, id);
    const msgpack_object *a = overdue(f, 72);
    assert_int_equal(a->via.array.size, 3);
    uint64_t seen = 0;
    for (uint32_t i = 0; i < 3; i++) {
        uint64_t t = td_map_get(&a->via.array.ptr[i], "tenant")->via.u64;
        seen |= (t == f->a ? 1u : 0u) | (t == f->b ? 2u : 0u) | (t == f->c ? 4u : 0u);
    }
    assert_int_equal(seen, 7);
    assert_int_equal(list(f, &f->ma)->via.array.size, 1);
    assert_int_equal(list(f, &f->mb)->via.array.size, 1);
    assert_int_equal(list(f, &f->mc)->via.array.size, 1);

    /* a tenant that signs up later was not affected */
    struct kr_caller md;
    uint64_t d = td_signup(f->t, "owner@d.example", "correct horse 4", &md, NULL);
    assert_int_equal(list(f, &md)->via.array.size, 0);
    assert_int_equal(notify(f, id, d, KR_CHANNEL_DASHBOARD), KR_ENOTFOUND);
    assert_string_equal(f->t->diag.field, "tenant");
    for (int i = 0; i < 3; i++)
        assert_int_equal(notify(f, id,
                                i == 0   ? f->a
                                : i == 1 ? f->b
                                         : f->c,
                                KR_CHANNEL_DASHBOARD),
                         KR_OK);
    assert_int_equal(overdue(f, 72)->via.array.size, 0);
}

static void test_notify_email_queues_mail(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    uint64_t ts[1] = {f->b};
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_LISTED, ts, 1, id);

    struct mails before, after;
    pending(f, &before);
    uint64_t size = jrn_size(f->t->d->j);
    assert_int_equal(notify(f, id, f->b, KR_CHANNEL_EMAIL), KR_OK);
    assert_int_equal(jrn_size(f->t->d->j), size + 2); /* notified + queued */
    pending(f, &after);
    assert_int_equal(after.n, before.n + 1);
    struct mail *m = &after.m[after.n - 1];
    assert_int_equal(m->tenant, f->b);
    assert_int_equal(m->template_id, KR_TEMPLATE_INCIDENT_NOTICE);
    assert_string_equal(m->email, "owner@b.example");
    assert_true(m->has_incident);
    assert_memory_equal(m->incident, id, 16);
    assert_int_equal(overdue(f, 72)->via.array.size, 0);

    /* the same channel again: nothing new; another channel: recorded */
    assert_int_equal(notify(f, id, f->b, KR_CHANNEL_EMAIL), KR_OK);
    assert_int_equal(jrn_size(f->t->d->j), size + 2);
    assert_int_equal(notify(f, id, f->b, KR_CHANNEL_DASHBOARD), KR_OK);
    assert_int_equal(jrn_size(f->t->d->j), size + 3);

    /* the worker hands it over: it leaves the pending list, once */
    assert_int_equal(dom_outbox_sent(f->t->d, m->tenant, m->message), KR_OK);
    size = jrn_size(f->t->d->j);
    assert_int_equal(dom_outbox_sent(f->t->d, m->tenant, m->message), KR_OK);
    assert_true(td_unchanged_since(f->t, size));
    struct mails later;
    pending(f, &later);
    assert_int_equal(later.n, before.n);
    for (size_t i = 0; i < later.n; i++)
        assert_memory_not_equal(later.m[i].message, m->message, 16);
    /* another tenant's message id is not found */
    assert_int_equal(dom_outbox_sent(f->t->d, f->a, m->message), KR_ENOTFOUND);

    /* the recipient's address is never stored in clear */
    assert_false(td_dir_contains(f->t->dir, "owner@b.example", 15));
}

static void test_outbox_paging(void **state)
{
    struct fx *f = *state;
    struct mails all, part;
    pending(f, &all);
    assert_true(all.n >= 3); /* each sign-up queued e-mails */
    for (size_t i = 1; i < all.n; i++)
        assert_true(all.m[i].seq > all.m[i - 1].seq);
    uint64_t last;
    part.n = 0;
    assert_int_equal(outbox_pending(f->t->d, 0, 2, collect, &part, &last), KR_OK);
    assert_int_equal(part.n, 2);
    assert_int_equal(last, all.m[1].seq);
    part.n = 0;
    assert_int_equal(outbox_pending(f->t->d, last, 0, collect, &part, &last), KR_OK);
    assert_int_equal(part.n, all.n - 2);
    assert_int_equal(part.m[0].seq, all.m[2].seq);
}

static void test_update_and_resolve(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    uint64_t ts[1] = {f->a};
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_LISTED, ts, 1, id);

    struct kr_payload *p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_CRITICAL);
    kr_set_str(p, KR_FLD_SUMMARY, "Data of some tenants was exposed.");
    kr_set_u64(p, KR_FLD_VERSION, 2); /* the incident is at version 1 */
    uint64_t size = jrn_size(f->t->d->j);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_UPDATE), KR_ECONFLICT);
    assert_string_equal(f->t->diag.field, "version");
    assert_true(td_unchanged_since(f->t, size));
    kr_set_u64(p, KR_FLD_VERSION, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_UPDATE), KR_OK);
    assert_int_equal(td_get_u64(f->t, "version"), 2);
    const msgpack_object *x = &list(f, &f->ma)->via.array.ptr[0];
    assert_true(str_is(td_map_get(x, "severity"), "critical"));
    assert_true(str_is(td_map_get(x, "summary"), "Data of some tenants was exposed."));
    assert_true(str_is(td_map_get(x, "title"), "API outage"));

    /* resolve: still in the tenant's list, marked resolved; notice is still owed */
    p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    kr_set_str(p, KR_FLD_SUMMARY, "Fixed.");
    kr_set_u64(p, KR_FLD_VERSION, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_RESOLVE), KR_ECONFLICT);
    kr_set_u64(p, KR_FLD_VERSION, 2);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_RESOLVE), KR_OK);
    assert_int_equal(td_get_u64(f->t, "version"), 3);
    const msgpack_object *l = list(f, &f->ma);
    assert_int_equal(l->via.array.size, 1);
    x = &l->via.array.ptr[0];
    assert_true(td_map_get(x, "resolved")->via.boolean);
    assert_true(str_is(td_map_get(x, "summary"), "Fixed."));
    assert_true(str_is(td_map_get(x, "title"), "API outage"));

    /* its history: opened, updated, resolved, in order */
    kr_set_bytes(td_args(f->t), KR_FLD_INCIDENT, id, 16);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_HISTORY), KR_OK);
    const msgpack_object *h = td_get(f->t, "entries");
    assert_non_null(h);
    assert_int_equal(h->via.array.size, 3);
    static const char *const types[3] = {"incident.opened", "incident.updated",
                                         "incident.resolved"};
    static const char *const sums[3] = {"The API did not answer for 20 minutes.",
                                        "Data of some tenants was exposed.", "Fixed."};
    for (uint32_t i = 0; i < 3; i++) {
        const msgpack_object *e = &h->via.array.ptr[i];
        assert_true(str_is(td_map_get(e, "type"), types[i]));
        assert_true(str_is(td_map_get(e, "summary"), sums[i]));
        if (i)
            assert_true(td_map_get(e, "seq")->via.u64 >
                        td_map_get(&h->via.array.ptr[i - 1], "seq")->via.u64);
    }
    assert_true(str_is(td_map_get(&h->via.array.ptr[0], "severity"), "high"));
    assert_true(str_is(td_map_get(&h->via.array.ptr[1], "severity"), "critical"));
    assert_int_equal(td_map_get(&h->via.array.ptr[2], "severity")->type, MSGPACK_OBJECT_NIL);
    /* another tenant's incident is not found, like a missing one */
    kr_set_bytes(td_args(f->t), KR_FLD_INCIDENT, id, 16);
    assert_int_equal(td_exec(f->t, &f->mb, KR_OP_INCIDENTS_HISTORY), KR_ENOTFOUND);
    assert_string_equal(f->t->diag.field, "incident");
    uint8_t missing[16];
    memset(missing, 0x77, 16);
    kr_set_bytes(td_args(f->t), KR_FLD_INCIDENT, missing, 16);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_HISTORY), KR_ENOTFOUND);
    assert_int_equal(overdue(f, 72)->via.array.size, 1);
    p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    kr_set_str(p, KR_FLD_SUMMARY, "Fixed again.");
    kr_set_u64(p, KR_FLD_VERSION, 3);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_RESOLVE), KR_ECONFLICT);
    assert_string_equal(f->t->diag.field, "incident");
    /* a resolved incident can still be notified */
    assert_int_equal(notify(f, id, f->a, KR_CHANNEL_DASHBOARD), KR_OK);
    assert_int_equal(overdue(f, 72)->via.array.size, 0);
}

static void test_rejections(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], missing[16];
    uint64_t ts[1] = {f->a};
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_LISTED, ts, 1, id);
    memset(missing, 0x5a, 16);
    uint64_t size = jrn_size(f->t->d->j);

    /* open: detected in the future, missing field, too long, bad enum,
     * tenants for audience all, an unknown tenant, no tenants for listed */
    open_args(f, now(f) + HOUR, KR_AUDIENCE_ALL, NULL, 0);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_OPEN), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "detected");
    struct kr_payload *p = td_args(f->t);
    kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_BREACH);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    kr_set_str(p, KR_FLD_TITLE, "t");
    kr_set_u64(p, KR_FLD_DETECTED, now(f));
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_ALL);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_OPEN), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "summary");
    char big[2002];
    memset(big, 's', 2001);
    big[2001] = '\0';
    p = open_args(f, now(f), KR_AUDIENCE_ALL, NULL, 0);
    kr_set_str(p, KR_FLD_SUMMARY, big);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_OPEN), KR_ETOOLARGE);
    assert_string_equal(f->t->diag.field, "summary");
    p = open_args(f, now(f), KR_AUDIENCE_ALL, NULL, 0);
    kr_set_u64(p, KR_FLD_SEVERITY, 17);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_OPEN), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "severity");
    open_args(f, now(f), KR_AUDIENCE_ALL, ts, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_OPEN), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "tenants");
    uint64_t nope[1] = {42}; /* a valid id no tenant has (theirs are random 63-bit) */
    open_args(f, now(f), KR_AUDIENCE_LISTED, nope, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_OPEN), KR_ENOTFOUND);
    assert_string_equal(f->t->diag.field, "tenants");
    open_args(f, now(f), KR_AUDIENCE_LISTED, NULL, 0);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_OPEN), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "tenants");
    open_args(f, now(f), KR_AUDIENCE_ALL, NULL, 0);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_OPEN), KR_EFORBIDDEN);

    /* notify, update, resolve: unknown incident, tenant not affected, missing args */
    assert_int_equal(notify(f, missing, f->a, KR_CHANNEL_EMAIL), KR_ENOTFOUND);
    assert_string_equal(f->t->diag.field, "incident");
    assert_int_equal(notify(f, id, f->b, KR_CHANNEL_EMAIL), KR_ENOTFOUND);
    assert_string_equal(f->t->diag.field, "tenant");
    assert_int_equal(notify(f, id, f->a, KR_CHANNEL__COUNT), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "channel");
    kr_set_bytes(td_args(f->t), KR_FLD_INCIDENT, id, 16);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_NOTIFY), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "tenant");
    p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, missing, 16);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    kr_set_str(p, KR_FLD_SUMMARY, "s");
    kr_set_u64(p, KR_FLD_VERSION, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_UPDATE), KR_ENOTFOUND);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_UPDATE), KR_EFORBIDDEN);
    p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, missing, 16);
    kr_set_str(p, KR_FLD_SUMMARY, "s");
    kr_set_u64(p, KR_FLD_VERSION, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_RESOLVE), KR_ENOTFOUND);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    assert_int_equal(td_exec(f->t, &f->mb, KR_OP_INCIDENTS_RESOLVE), KR_EFORBIDDEN);
    assert_true(td_unchanged_since(f->t, size));
}

static void test_report(void **state)
{
    struct fx *f = *state;
    const char *marker = "Marker-7c1f: a stranger called our customers";
    struct kr_payload *p = td_args(f->t);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_MEDIUM);
    kr_set_str(p, KR_FLD_DETAILS, marker);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_REPORT), KR_OK);
    uint8_t report[16];
    td_get_id(f->t, "report", report);

    /* the view keeps the record's seq under the reporting tenant */
    MDB_txn *txn;
    MDB_val k, v;
    uint8_t key[24];
    for (int i = 7; i >= 0; i--)
        key[7 - i] = (uint8_t)(f->a >> (8 * i));
    memcpy(key + 8, report, 16);
    k = (MDB_val){24, key};
    assert_int_equal(mdb_txn_begin(jrn_env(f->t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_get(txn, f->t->d->views.db[VIEW_REPORTS], &k, &v), 0);
    assert_int_equal(v.mv_size, 8);
    assert_int_equal(v_get_u64(v.mv_data), jrn_size(f->t->d->j));
    mdb_txn_abort(txn);
    assert_false(td_dir_contains(f->t->dir, marker, strlen(marker)));

    /* a user may report; an auditor may not; details are required and bounded */
    uint8_t acc[16];
    memset(acc, 0x44, 16);
    struct kr_caller user = td_account(f->a, acc, KR_ROLE_USER, 0);
    struct kr_caller aud = td_account(f->a, acc, KR_ROLE_AUDITOR, 0);
    p = td_args(f->t);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    kr_set_str(p, KR_FLD_DETAILS, "x");
    assert_int_equal(td_exec(f->t, &user, KR_OP_INCIDENTS_REPORT), KR_OK);
    uint64_t size = jrn_size(f->t->d->j);
    assert_int_equal(td_exec(f->t, &aud, KR_OP_INCIDENTS_REPORT), KR_EFORBIDDEN);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_REPORT), KR_EFORBIDDEN);
    kr_set_u64(td_args(f->t), KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    assert_int_equal(td_exec(f->t, &user, KR_OP_INCIDENTS_REPORT), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "details");
    char big[4002];
    memset(big, 'd', 4001);
    big[4001] = '\0';
    p = td_args(f->t);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    kr_set_str(p, KR_FLD_DETAILS, big);
    assert_int_equal(td_exec(f->t, &user, KR_OP_INCIDENTS_REPORT), KR_ETOOLARGE);
    assert_string_equal(f->t->diag.field, "details");
    assert_true(td_unchanged_since(f->t, size));
}

/* serve's scheduler (dom_incident_mail): with 24 hours of warning, an
 * incident detected 71 hours ago (due in 1 h) and one detected 73 hours ago
 * (overdue) get their e-mails queued and the notifications recorded, once;
 * one detected 10 hours ago (62 h left) waits until the clock is within
 * 24 hours of its deadline; a tenant the operator notified already is not
 * written to again. */
static void test_scheduler_queues_owed_once(void **state)
{
    struct fx *f = *state;
    uint8_t due[16], late[16], later[16];
    uint64_t ta[1] = {f->a}, tb[2] = {f->a < f->b ? f->a : f->b, f->a < f->b ? f->b : f->a};
    uint64_t tc[1] = {f->c};
    open_incident(f, now(f) - 71 * HOUR, KR_AUDIENCE_LISTED, ta, 1, due);
    open_incident(f, now(f) - 73 * HOUR, KR_AUDIENCE_LISTED, tb, 2, late);
    open_incident(f, now(f) - 10 * HOUR, KR_AUDIENCE_LISTED, tc, 1, later);
    /* the operator told B about the late one on the dashboard already */
    assert_int_equal(notify(f, late, f->b, KR_CHANNEL_DASHBOARD), KR_OK);

    const msgpack_object *a = overdue(f, 24);
    assert_int_equal(a->via.array.size, 2); /* late for A (overdue), due for A (in 1 h) */
    assert_true(bin_is(td_map_get(&a->via.array.ptr[0], "incident"), late, 16));
    assert_true(td_map_get(&a->via.array.ptr[0], "overdue")->via.boolean);
    assert_true(bin_is(td_map_get(&a->via.array.ptr[1], "incident"), due, 16));
    assert_false(td_map_get(&a->via.array.ptr[1], "overdue")->via.boolean);

    struct mails before, after;
    pending(f, &before);
    uint64_t size = jrn_size(f->t->d->j);
    size_t queued = 99;
    assert_int_equal(dom_incident_mail(f->t->d, 24 * HOUR, 0, &queued), KR_OK);
    assert_int_equal(queued, 2);
    assert_int_equal(jrn_size(f->t->d->j), size + 4); /* notified + queued, twice */
    pending(f, &after);
    assert_int_equal(after.n, before.n + 2);
    /* earliest deadline first: the late one, then the due one, both to A */
    for (size_t i = 0; i < 2; i++) {
        const struct mail *m = &after.m[before.n + i];
        assert_int_equal(m->tenant, f->a);
        assert_int_equal(m->template_id, KR_TEMPLATE_INCIDENT_NOTICE);
        assert_string_equal(m->email, "owner@a.example");
        assert_true(m->has_incident);
        assert_memory_equal(m->incident, i == 0 ? late : due, 16);
    }
    assert_int_equal(overdue(f, 24)->via.array.size, 0);
    assert_int_equal(overdue(f, 72)->via.array.size, 1); /* C's, not yet within 24 h */

    /* again: nothing is owed, nothing is appended */
    size = jrn_size(f->t->d->j);
    assert_int_equal(dom_incident_mail(f->t->d, 24 * HOUR, 0, &queued), KR_OK);
    assert_int_equal(queued, 0);
    assert_true(td_unchanged_since(f->t, size));
    /* an operator's notify by e-mail afterwards changes nothing either */
    assert_int_equal(notify(f, due, f->a, KR_CHANNEL_EMAIL), KR_OK);
    assert_true(td_unchanged_since(f->t, size));

    /* 39 hours on, C's incident is 49 h old: 23 h left, within the warning */
    atomic_store(&f->t->now, now(f) + 39 * HOUR);
    assert_int_equal(dom_incident_mail(f->t->d, 24 * HOUR, 0, &queued), KR_OK);
    assert_int_equal(queued, 1);
    pending(f, &after);
    assert_int_equal(after.m[after.n - 1].tenant, f->c);
    assert_memory_equal(after.m[after.n - 1].incident, later, 16);
    assert_int_equal(overdue(f, 72)->via.array.size, 0);
    size = jrn_size(f->t->d->j);
    assert_int_equal(dom_incident_mail(f->t->d, 24 * HOUR, 0, &queued), KR_OK);
    assert_int_equal(queued, 0);
    assert_true(td_unchanged_since(f->t, size));
}

/* A batch bound of one: each call queues one, in deadline order, and the
 * rest stays owed for the next call. */
static void test_scheduler_batches(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    open_incident(f, now(f) - 80 * HOUR, KR_AUDIENCE_ALL, NULL, 0, id);
    size_t queued, total = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(dom_incident_mail(f->t->d, 0, 1, &queued), KR_OK);
        assert_int_equal(queued, 1);
        total += queued;
        assert_int_equal(overdue(f, 0)->via.array.size, 2 - (size_t)i);
    }
    assert_int_equal(dom_incident_mail(f->t->d, 0, 1, &queued), KR_OK);
    assert_int_equal(queued, 0);
    assert_int_equal(total, 3);
}

static int u64_cmp(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static void update(struct fx *f, const uint8_t id[16], uint64_t version, const char *summary)
{
    struct kr_payload *p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_CRITICAL);
    kr_set_str(p, KR_FLD_SUMMARY, summary);
    kr_set_u64(p, KR_FLD_VERSION, version);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_UPDATE), KR_OK);
}

/* Updates and the resolution are e-mailed to the tenants e-mailed the
 * notice, once each; a tenant told on the dashboard only, or not yet told,
 * gets none; two updates before the scheduler runs make one e-mail. */
static void test_update_and_resolution_mail(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    uint64_t ts[3] = {f->a, f->b, f->c};
    qsort(ts, 3, sizeof ts[0], u64_cmp);
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_LISTED, ts, 3, id);
    assert_int_equal(notify(f, id, f->a, KR_CHANNEL_EMAIL), KR_OK);     /* version 2 */
    assert_int_equal(notify(f, id, f->b, KR_CHANNEL_DASHBOARD), KR_OK); /* version 3 */
    struct mails before, after;
    size_t queued;
    pending(f, &before);

    update(f, id, 3, "Worse than we thought.");
    update(f, id, 4, "Worse still.");
    /* no warning window: C's notice (71 h away) is not due, A's update is */
    assert_int_equal(dom_incident_mail(f->t->d, 0, 0, &queued), KR_OK);
    assert_int_equal(queued, 1);
    pending(f, &after);
    assert_int_equal(after.n, before.n + 1);
    const struct mail *m = &after.m[after.n - 1];
    assert_int_equal(m->tenant, f->a);
    assert_int_equal(m->template_id, KR_TEMPLATE_INCIDENT_UPDATE);
    assert_string_equal(m->email, "owner@a.example");
    assert_memory_equal(m->incident, id, 16);
    /* the worker is told what to write: the incident as it is now */
    assert_string_equal(m->title, "API outage");
    assert_string_equal(m->summary, "Worse still.");
    assert_int_equal(m->severity, KR_SEVERITY_CRITICAL);
    assert_false(m->resolved);
    assert_true(m->deadline > now(f));
    uint64_t size = jrn_size(f->t->d->j);
    assert_int_equal(dom_incident_mail(f->t->d, 0, 0, &queued), KR_OK);
    assert_int_equal(queued, 0);
    assert_true(td_unchanged_since(f->t, size));

    /* resolved: A gets the resolution; C, e-mailed its notice when due
     * (after the resolution), gets the notice and no resolution */
    struct kr_payload *p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    kr_set_str(p, KR_FLD_SUMMARY, "Fixed.");
    kr_set_u64(p, KR_FLD_VERSION, 5);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_RESOLVE), KR_OK);
    assert_int_equal(dom_incident_mail(f->t->d, 72 * HOUR, 0, &queued), KR_OK);
    assert_int_equal(queued, 2);
    pending(f, &after);
    assert_int_equal(after.n, before.n + 3);
    bool resolved_a = false, notice_c = false;
    for (size_t i = before.n + 1; i < after.n; i++) {
        const struct mail *x = &after.m[i];
        resolved_a |= x->tenant == f->a && x->template_id == KR_TEMPLATE_INCIDENT_RESOLVED;
        notice_c |= x->tenant == f->c && x->template_id == KR_TEMPLATE_INCIDENT_NOTICE;
        assert_memory_equal(x->incident, id, 16);
    }
    assert_true(resolved_a && notice_c);
    for (size_t i = before.n + 1; i < after.n; i++) {
        assert_true(after.m[i].resolved);
        assert_string_equal(after.m[i].summary, "Fixed.");
    }
    size = jrn_size(f->t->d->j);
    assert_int_equal(dom_incident_mail(f->t->d, 72 * HOUR, 0, &queued), KR_OK);
    assert_int_equal(queued, 0);
    assert_true(td_unchanged_since(f->t, size));
}

/* incidents.all: the incidents of one state (or all), a page at a time.
 * Returns the number seen over every page; first gets the first item. */
static uint32_t all_incidents(struct fx *f, int state, uint64_t limit)
{
    uint8_t cursor[16];
    bool has_cursor = false;
    uint32_t total = 0;
    for (int page = 0; page < 10; page++) {
        struct kr_payload *p = td_args(f->t);
        if (state >= 0)
            kr_set_u64(p, KR_FLD_INCIDENT_STATE, (uint64_t)state);
        if (limit)
            kr_set_u64(p, KR_FLD_LIMIT, limit);
        if (has_cursor)
            kr_set_bytes(p, KR_FLD_CURSOR, cursor, 16);
        assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_ALL), KR_OK);
        const msgpack_object *a = td_get(f->t, "incidents");
        assert_non_null(a);
        total += a->via.array.size;
        if (limit)
            assert_true(a->via.array.size <= limit);
        const msgpack_object *cur = td_get(f->t, "cursor");
        if (cur->type == MSGPACK_OBJECT_NIL)
            return total;
        assert_int_equal(cur->via.bin.size, 16);
        memcpy(cursor, cur->via.bin.ptr, 16);
        has_cursor = true;
    }
    fail_msg("incidents.all does not end");
    return 0;
}

/* The operator's lists: incidents by state, tenants' reports (their
 * details opened), published notices; paged; tenants may not ask. */
static void test_operator_lists(void **state)
{
    struct fx *f = *state;
    uint8_t late[16], open[16], done[16];
    uint64_t ta[1] = {f->a}, tb[1] = {f->b}, tc[1] = {f->c};
    open_incident(f, now(f) - 80 * HOUR, KR_AUDIENCE_LISTED, ta, 1, late);
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_LISTED, tb, 1, open);
    open_incident(f, now(f) - 2 * HOUR, KR_AUDIENCE_LISTED, tc, 1, done);
    struct kr_payload *p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, done, 16);
    kr_set_str(p, KR_FLD_SUMMARY, "Fixed.");
    kr_set_u64(p, KR_FLD_VERSION, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_RESOLVE), KR_OK);

    assert_int_equal(all_incidents(f, -1, 0), 3);
    assert_int_equal(all_incidents(f, -1, 1), 3); /* three pages of one */
    assert_int_equal(all_incidents(f, -1, 2), 3);
    assert_int_equal(all_incidents(f, KR_INCIDENT_STATE_OPEN, 1), 2);
    assert_int_equal(all_incidents(f, KR_INCIDENT_STATE_RESOLVED, 0), 1);
    assert_int_equal(all_incidents(f, KR_INCIDENT_STATE_OVERDUE, 0), 1);
    const msgpack_object *x = &td_get(f->t, "incidents")->via.array.ptr[0];
    assert_int_equal(x->via.map.size, 13); /* and detected_jst, deadline_jst */
    assert_true(bin_is(td_map_get(x, "incident"), late, 16));
    assert_true(td_map_get(x, "overdue")->via.boolean);
    assert_false(td_map_get(x, "resolved")->via.boolean);
    assert_int_equal(td_map_get(x, "unnotified")->via.u64, 1);
    assert_int_equal(td_map_get(x, "version")->via.u64, 1);
    assert_true(str_is(td_map_get(x, "title"), "API outage"));
    all_incidents(f, KR_INCIDENT_STATE_RESOLVED, 0);
    x = &td_get(f->t, "incidents")->via.array.ptr[0];
    assert_true(bin_is(td_map_get(x, "incident"), done, 16));
    assert_true(td_map_get(x, "resolved")->via.boolean);
    assert_true(str_is(td_map_get(x, "summary"), "Fixed."));
    /* notified: no longer overdue */
    assert_int_equal(notify(f, late, f->a, KR_CHANNEL_EMAIL), KR_OK);
    assert_int_equal(all_incidents(f, KR_INCIDENT_STATE_OVERDUE, 0), 0);
    /* a cursor of the wrong size; a tenant asking */
    p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_CURSOR, late, 8);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_ALL), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "cursor");
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_ALL), KR_EFORBIDDEN);

    /* reports: A's and B's, details opened for the operator */
    const char *what[2] = {"A stranger called our customers.", "Our export went missing."};
    const struct kr_caller *who[2] = {&f->ma, &f->mb};
    for (int i = 0; i < 2; i++) {
        p = td_args(f->t);
        kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_MEDIUM);
        kr_set_str(p, KR_FLD_DETAILS, what[i]);
        assert_int_equal(td_exec(f->t, who[i], KR_OP_INCIDENTS_REPORT), KR_OK);
    }
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_REPORTS), KR_OK);
    const msgpack_object *r = td_get(f->t, "reports");
    assert_int_equal(r->via.array.size, 2);
    assert_int_equal(td_get(f->t, "cursor")->type, MSGPACK_OBJECT_NIL);
    int seen = 0;
    for (uint32_t i = 0; i < 2; i++) {
        const msgpack_object *e = &r->via.array.ptr[i];
        uint64_t t = td_map_get(e, "tenant")->via.u64;
        int k = t == f->a ? 0 : 1;
        assert_true(t == f->a || t == f->b);
        assert_true(str_is(td_map_get(e, "details"), what[k]));
        assert_true(str_is(td_map_get(e, "severity"), "medium"));
        assert_int_equal(td_map_get(e, "report")->via.bin.size, 16);
        assert_non_null(td_map_get(e, "time_jst"));
        seen |= 1 << k;
    }
    assert_int_equal(seen, 3);
    kr_set_u64(td_args(f->t), KR_FLD_LIMIT, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_REPORTS), KR_OK);
    assert_int_equal(td_get(f->t, "reports")->via.array.size, 1);
    assert_int_equal(td_get(f->t, "cursor")->via.bin.size, 24);
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_REPORTS), KR_EFORBIDDEN);

    /* published notices */
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_NOTICES_ALL), KR_OK);
    assert_int_equal(td_get(f->t, "notices")->via.array.size, 0);
    p = td_args(f->t);
    kr_set_u64(p, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_VULNERABILITY);
    kr_set_str(p, KR_FLD_TITLE, "OpenSSL update");
    kr_set_str(p, KR_FLD_BODY, "We update OpenSSL on Friday.");
    kr_set_u64(p, KR_FLD_EFFECTIVE, now(f) + 24 * HOUR);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    kr_set_tenants(p, KR_FLD_TENANTS, tb, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_NOTICES_PUBLISH), KR_OK);
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_NOTICES_ALL), KR_OK);
    const msgpack_object *n = td_get(f->t, "notices");
    assert_int_equal(n->via.array.size, 1);
    x = &n->via.array.ptr[0];
    assert_true(str_is(td_map_get(x, "title"), "OpenSSL update"));
    assert_true(str_is(td_map_get(x, "notice_kind"), "vulnerability"));
    assert_true(str_is(td_map_get(x, "audience"), "listed"));
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_NOTICES_ALL), KR_EFORBIDDEN);

    /* bad arguments: an unknown state, limits out of range, cursors of
     * another list; nothing is appended */
    uint64_t size = jrn_size(f->t->d->j);
    kr_set_u64(td_args(f->t), KR_FLD_INCIDENT_STATE, KR_INCIDENT_STATE__COUNT);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_ALL), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "incident_state");
    kr_set_u64(td_args(f->t), KR_FLD_LIMIT, 0);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_ALL), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "limit");
    kr_set_u64(td_args(f->t), KR_FLD_LIMIT, 1001);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_REPORTS), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "limit");
    kr_set_bytes(td_args(f->t), KR_FLD_CURSOR, late, 16);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_REPORTS), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "cursor");
    uint8_t c24[24] = {0};
    kr_set_bytes(td_args(f->t), KR_FLD_CURSOR, c24, 24);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_NOTICES_ALL), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "cursor");
    /* a cursor past every key: an empty last page */
    uint8_t ff[16];
    memset(ff, 0xff, 16);
    kr_set_bytes(td_args(f->t), KR_FLD_CURSOR, ff, 16);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_NOTICES_ALL), KR_OK);
    assert_int_equal(td_get(f->t, "notices")->via.array.size, 0);
    assert_int_equal(td_get(f->t, "cursor")->type, MSGPACK_OBJECT_NIL);
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_HISTORY), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "incident");
    assert_true(td_unchanged_since(f->t, size));
}

/* The login reply carries the tenant's incidents, newest first, a resolved
 * one marked; another tenant's are not there. */
static void test_login_shows_incidents(void **state)
{
    struct fx *f = *state;
    char code[40];
    struct kr_caller md;
    uint64_t d = td_signup(f->t, "owner@d.example", "correct horse 4", &md, code);
    uint8_t old[16], fresh[16], other[16];
    uint64_t td1[1] = {d}, ta[1] = {f->a};
    open_incident(f, now(f) - 5 * HOUR, KR_AUDIENCE_LISTED, td1, 1, old);
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_LISTED, td1, 1, fresh);
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_LISTED, ta, 1, other);
    struct kr_payload *p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, old, 16);
    kr_set_str(p, KR_FLD_SUMMARY, "Fixed.");
    kr_set_u64(p, KR_FLD_VERSION, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_RESOLVE), KR_OK);

    struct kr_caller anon = td_anonymous();
    p = td_args(f->t);
    kr_set_str(p, KR_FLD_TENANT_CODE, code);
    kr_set_str(p, KR_FLD_EMAIL, "owner@d.example");
    kr_set_str(p, KR_FLD_PASSWORD, "correct horse 4");
    assert_int_equal(td_exec(f->t, &anon, KR_OP_AUTH_LOGIN), KR_OK);
    const msgpack_object *a = td_get(f->t, "incidents");
    assert_non_null(a);
    assert_int_equal(a->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(a->via.array.size, 2);
    assert_true(bin_is(td_map_get(&a->via.array.ptr[0], "incident"), fresh, 16));
    assert_false(td_map_get(&a->via.array.ptr[0], "resolved")->via.boolean);
    assert_true(bin_is(td_map_get(&a->via.array.ptr[1], "incident"), old, 16));
    assert_true(td_map_get(&a->via.array.ptr[1], "resolved")->via.boolean);
    assert_true(str_is(td_map_get(&a->via.array.ptr[1], "summary"), "Fixed."));
    assert_true(str_is(td_map_get(&a->via.array.ptr[1], "title"), "API outage"));
    assert_non_null(td_get(f->t, "notices"));
}

/* An erased tenant leaves no row in the incident views (v.incident_emailed
 * names it past its first key bytes), owes no e-mail, and a rebuild agrees. */
static kr_err ack(struct fx *f, const struct kr_caller *who, const uint8_t id[16])
{
    kr_set_bytes(td_args(f->t), KR_FLD_INCIDENT, id, 16);
    return td_exec(f->t, who, KR_OP_INCIDENTS_ACK);
}

/* incidents.readers of id (a page of at most limit, after cursor when set);
 * returns the "readers" array. */
static const msgpack_object *readers(struct fx *f, const uint8_t id[16], uint64_t limit,
                                     const msgpack_object *cursor)
{
    struct kr_payload *p = td_args(f->t);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    if (limit)
        kr_set_u64(p, KR_FLD_LIMIT, limit);
    if (cursor)
        kr_set_bytes(p, KR_FLD_CURSOR, cursor->via.bin.ptr, cursor->via.bin.size);
    kr_err err = td_exec(f->t, &f->op, KR_OP_INCIDENTS_READERS);
    if (err)
        fail_msg("readers: %s (%s: %s)", kr_strerror(err), f->t->diag.field, f->t->diag.why);
    const msgpack_object *a = td_get(f->t, "readers");
    assert_non_null(a);
    assert_int_equal(a->type, MSGPACK_OBJECT_ARRAY);
    return a;
}

static uint64_t acked_at(struct fx *f, const struct kr_caller *who, const uint8_t id[16])
{
    const msgpack_object *a = list(f, who);
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *x = &a->via.array.ptr[i];
        if (!bin_is(td_map_get(x, "incident"), id, 16))
            continue;
        const msgpack_object *at = td_map_get(x, "acknowledged_at");
        assert_non_null(at);
        if (at->type == MSGPACK_OBJECT_NIL) {
            assert_int_equal(td_map_get(x, "acknowledged_at_jst")->type, MSGPACK_OBJECT_NIL);
            return 0;
        }
        assert_int_equal(at->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        assert_int_equal(td_map_get(x, "acknowledged_at_jst")->type, MSGPACK_OBJECT_STR);
        return at->via.u64;
    }
    fail_msg("incident not listed");
    return 0;
}

static void test_erased_tenant(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    uint64_t ts[2] = {f->a < f->b ? f->a : f->b, f->a < f->b ? f->b : f->a};
    open_incident(f, now(f) - 80 * HOUR, KR_AUDIENCE_LISTED, ts, 2, id);
    size_t queued;
    assert_int_equal(dom_incident_mail(f->t->d, 0, 0, &queued), KR_OK);
    assert_int_equal(queued, 2);
    assert_int_equal(ack(f, &f->ma, id), KR_OK);
    assert_int_equal(ack(f, &f->mb, id), KR_OK);
    assert_int_equal(readers(f, id, 0, NULL)->via.array.size, 2);
    kr_set_u64(td_args(f->t), KR_FLD_TENANT, f->a);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_TENANTS_CANCEL), KR_OK);
    kr_set_u64(td_args(f->t), KR_FLD_TENANT, f->a);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_TENANTS_ERASE), KR_OK);
    update(f, id, 3, "Still down.");                    /* owes B only */
    const msgpack_object *rd = readers(f, id, 0, NULL); /* A's read went with A */
    assert_int_equal(rd->via.array.size, 1);
    assert_int_equal(td_map_get(&rd->via.array.ptr[0], "tenant")->via.u64, f->b);

    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    size_t rows = 0;
    assert_int_equal(mdb_txn_begin(jrn_env(f->t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_cursor_open(txn, f->t->d->views.db[VIEW_INCIDENT_EMAILED], &cur), 0);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), rows++)
        assert_int_equal(v_get_u64((const uint8_t *)k.mv_data + 16), f->b);
    mdb_cursor_close(cur);
    uint8_t before[32], after[32];
    uint64_t n_before, n_after;
    assert_int_equal(views_digest(&f->t->d->views, txn, VIEW_INCIDENT_EMAILED, before, &n_before),
                     KR_OK);
    uint8_t acks_before[32], acks_after[32];
    uint64_t na_before, na_after;
    assert_int_equal(
        views_digest(&f->t->d->views, txn, VIEW_INCIDENT_ACKS, acks_before, &na_before), KR_OK);
    mdb_txn_abort(txn);
    assert_int_equal(rows, 1);
    assert_int_equal(na_before, 1); /* B's read */
    assert_int_equal(dom_incident_mail(f->t->d, 0, 0, &queued), KR_OK);
    assert_int_equal(queued, 1); /* B's update */
    assert_int_equal(jrn_views_rebuild(f->t->d->j, NULL, NULL), KR_OK);
    assert_int_equal(mdb_txn_begin(jrn_env(f->t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(views_digest(&f->t->d->views, txn, VIEW_INCIDENT_EMAILED, after, &n_after),
                     KR_OK);
    assert_int_equal(views_digest(&f->t->d->views, txn, VIEW_INCIDENT_ACKS, acks_after, &na_after),
                     KR_OK);
    mdb_txn_abort(txn);
    assert_int_equal(n_after, n_before);
    assert_memory_equal(after, before, 32);
    assert_int_equal(na_after, na_before); /* A's stripped read is not brought back */
    assert_memory_equal(acks_after, acks_before, 32);
    assert_int_equal(dom_incident_mail(f->t->d, 0, 0, &queued), KR_OK);
    assert_int_equal(queued, 0); /* nothing owed after the rebuild either */
}

/* The views of this area rebuilt from the journal are byte-identical. */
static void test_ack_and_readers(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], other[16], missing[16], acct[16];
    uint64_t ts[2] = {f->a < f->b ? f->a : f->b, f->a < f->b ? f->b : f->a};
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_LISTED, ts, 2, id);
    uint64_t tc[1] = {f->c};
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_LISTED, tc, 1, other);
    memset(missing, 0x5a, 16);
    memset(acct, 0x33, 16);
    struct kr_caller auditor = td_account(f->a, acct, KR_ROLE_AUDITOR, 0);
    assert_int_equal(readers(f, id, 0, NULL)->via.array.size, 0);
    assert_int_equal(td_get(f->t, "cursor")->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(acked_at(f, &f->ma, id), 0);

    /* A's master reads it: one event, on A's stream of the incident */
    uint64_t size = jrn_size(f->t->d->j), t0 = now(f);
    assert_int_equal(ack(f, &f->ma, id), KR_OK);
    assert_int_equal(f->t->result.data.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(f->t->result.data.via.map.size, 0);
    assert_int_equal(jrn_size(f->t->d->j), size + 1);
    struct jrn_recbuf rb = {0};
    assert_int_equal(jrn_read(f->t->d->j, size + 1, &rb), KR_OK);
    assert_int_equal(rb.rec.tenant, f->a);
    assert_int_equal(rb.rec.type_len, strlen("incident.acknowledged"));
    assert_memory_equal(rb.rec.type, "incident.acknowledged", rb.rec.type_len);
    uint64_t at = acked_at(f, &f->ma, id);
    assert_true(at > t0 && at == rb.rec.time_ns);
    jrn_recbuf_fini(&rb);
    assert_int_equal(acked_at(f, &auditor, id), 0); /* per account */
    assert_int_equal(acked_at(f, &f->mb, id), 0);

    /* again: nothing appended, the first time stays */
    size = jrn_size(f->t->d->j);
    assert_int_equal(ack(f, &f->ma, id), KR_OK);
    assert_true(td_unchanged_since(f->t, size));
    assert_int_equal(acked_at(f, &f->ma, id), at);

    /* not affected, missing, malformed: not_found / invalid, nothing appended */
    assert_int_equal(ack(f, &f->ma, other), KR_ENOTFOUND);
    assert_string_equal(f->t->diag.field, "incident");
    assert_int_equal(ack(f, &f->mc, id), KR_ENOTFOUND);
    assert_int_equal(ack(f, &f->ma, missing), KR_ENOTFOUND);
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_ACK), KR_EINVAL); /* no incident */
    kr_set_bytes(td_args(f->t), KR_FLD_INCIDENT, id, 15);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_ACK), KR_EINVAL);
    assert_int_equal(ack(f, &f->op, id), KR_EFORBIDDEN); /* the operator has no tenant */
    kr_set_bytes(td_args(f->t), KR_FLD_INCIDENT, id, 16);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_INCIDENTS_READERS), KR_EFORBIDDEN);
    assert_true(td_unchanged_since(f->t, size));

    /* B's master and A's auditor read it too */
    assert_int_equal(ack(f, &f->mb, id), KR_OK);
    assert_int_equal(ack(f, &auditor, id), KR_OK);
    const msgpack_object *a = readers(f, id, 0, NULL);
    assert_int_equal(a->via.array.size, 3);
    uint64_t seen_a = 0, seen_b = 0;
    for (uint32_t i = 0; i < 3; i++) {
        const msgpack_object *x = &a->via.array.ptr[i];
        assert_int_equal(x->via.map.size, 4); /* tenant, account, time, time_jst */
        uint64_t t = td_map_get(x, "tenant")->via.u64;
        if (i > 0) /* by tenant, then account */
            assert_true(t >= a->via.array.ptr[i - 1].via.map.ptr[0].val.via.u64);
        seen_a += t == f->a;
        seen_b += t == f->b;
        if (t == f->a && bin_is(td_map_get(x, "account"), f->ma.account, 16))
            assert_int_equal(td_map_get(x, "time")->via.u64, at);
    }
    assert_true(seen_a == 2 && seen_b == 1);
    assert_int_equal(readers(f, other, 0, NULL)->via.array.size, 0);

    /* a page at a time */
    uint8_t cur[24];
    uint32_t pages = 0, rows = 0;
    const msgpack_object *c = NULL;
    msgpack_object next = {.type = MSGPACK_OBJECT_BIN, .via.bin = {24, (const char *)cur}};
    for (;; pages++) {
        rows += readers(f, id, 2, c)->via.array.size;
        c = td_get(f->t, "cursor");
        if (c->type == MSGPACK_OBJECT_NIL)
            break;
        assert_int_equal(c->via.bin.size, 24);
        memcpy(cur, c->via.bin.ptr, 24);
        c = &next;
    }
    assert_true(pages == 1 && rows == 3);

    /* the operator's errors */
    kr_set_bytes(td_args(f->t), KR_FLD_INCIDENT, missing, 16);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_READERS), KR_ENOTFOUND);
    kr_set_bytes(td_args(f->t), KR_FLD_INCIDENT, id, 16);
    kr_set_bytes(f->t->args, KR_FLD_CURSOR, cur, 23);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_INCIDENTS_READERS), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "cursor");
}

static void test_rebuild_identical(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], id2[16];
    uint64_t ts[1] = {f->c};
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_ALL, NULL, 0, id);
    open_incident(f, now(f) - HOUR, KR_AUDIENCE_LISTED, ts, 1, id2);
    assert_int_equal(notify(f, id, f->a, KR_CHANNEL_EMAIL), KR_OK);
    assert_int_equal(notify(f, id, f->b, KR_CHANNEL_EMAIL), KR_OK);
    update(f, id, 3, "Still down."); /* owes A and B an e-mail */
    size_t queued;
    assert_int_equal(dom_incident_mail(f->t->d, 0, 1, &queued), KR_OK); /* one of them */
    assert_int_equal(queued, 1);
    kr_set_u64(td_args(f->t), KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    kr_set_str(f->t->args, KR_FLD_DETAILS, "d");
    assert_int_equal(td_exec(f->t, &f->mb, KR_OP_INCIDENTS_REPORT), KR_OK);
    assert_int_equal(ack(f, &f->ma, id), KR_OK);
    assert_int_equal(ack(f, &f->mc, id2), KR_OK);

    static const enum kr_view views[] = {
        VIEW_NOTICES,          VIEW_NOTICE_TENANTS,   VIEW_NOTICE_ACKS,   VIEW_INCIDENTS,
        VIEW_INCIDENT_TENANTS, VIEW_INCIDENT_DUE,     VIEW_REPORTS,       VIEW_OUTBOX,
        VIEW_OUTBOX_PENDING,   VIEW_INCIDENT_EMAILED, VIEW_INCIDENT_MAIL, VIEW_INCIDENT_ACKS,
    };
    enum { NV = sizeof views / sizeof views[0] };
    uint8_t before[NV][32], after[NV][32];
    uint64_t n_before[NV], n_after[NV];
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(f->t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (size_t i = 0; i < NV; i++)
        assert_int_equal(views_digest(&f->t->d->views, txn, views[i], before[i], &n_before[i]),
                         KR_OK);
    mdb_txn_abort(txn);
    assert_true(n_before[3] == 2 && n_before[4] == 4 && n_before[5] == 2);
    assert_true(n_before[9] == 2 && n_before[10] == 1); /* A and B e-mailed; one still owed */
    assert_int_equal(n_before[11], 2);                  /* A's and C's reads */
    assert_int_equal(jrn_views_rebuild(f->t->d->j, NULL, NULL), KR_OK);
    assert_int_equal(mdb_txn_begin(jrn_env(f->t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (size_t i = 0; i < NV; i++) {
        assert_int_equal(views_digest(&f->t->d->views, txn, views[i], after[i], &n_after[i]),
                         KR_OK);
        assert_int_equal(n_after[i], n_before[i]);
        assert_memory_equal(after[i], before[i], 32);
    }
    mdb_txn_abort(txn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_listed_deadline_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overdue_and_due_within, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audience_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_email_queues_mail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_and_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scheduler_queues_owed_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scheduler_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_and_resolution_mail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_shows_incidents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erased_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_and_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_identical, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
