/*
 * retention_test.c: tests for projections/retention.c and cmd_retention.c:
 * the 30-day rule at its boundary, the erasure steps in their order, a
 * crash (an error injected by the test hook) after every step followed by a
 * rerun that completes, reruns that change nothing, the ops tenants.erase,
 * retention.run, maintenance.record and backups.list (happy paths and each
 * rejection), the erase-by date in tenants.list, serve.started with the
 * previous version, and which records log truncation picks.
 *
 * The journal's payload stripping and the backups are the tools layer's
 * (hooks): here they are fakes that record what they were asked, and the
 * log fake walks the journal to apply the `want` filter it was given.
 */
#include "test_domain.h"
#include "test_util.h"

#include "accounts.h"
#include "retention.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

struct fake {
    struct ret_hooks h;
    int calls[RET_STEP__COUNT]; /* steps seen done, by the after_step hook */
    int fail_after;             /* step after which to fail, -1 none */
    int strips, backup_erases, lists;
    struct ret_strip_spec last;
    uint64_t matched; /* records the last strip's want filter picked */
    bool backup_fails;
    char order[64];
};

static kr_err fake_strip(void *arg, struct journal *j, const struct ret_strip_spec *s,
                         uint64_t *stripped)
{
    struct fake *f = arg;
    f->strips++;
    f->last = *s;
    f->matched = 0;
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1, .to = s->to_seq};
    struct jrn_cursor *c;
    struct jrn_record r;
    assert_int_equal(jrn_cursor_new(j, &q, &c), KR_OK);
    kr_err err;
    while ((err = jrn_cursor_next(c, &r)) == KR_OK) {
        if (!s->any_tenant && r.tenant != s->tenant)
            continue;
        if (s->before_ns && r.time_ns >= s->before_ns)
            continue;
        if (s->want && !s->want(s->arg, &r))
            continue;
        f->matched++;
    }
    jrn_cursor_free(c);
    assert_int_equal(err, KR_ENOTFOUND);
    *stripped = f->matched;
    if (strlen(f->order) + 1 < sizeof f->order)
        f->order[strlen(f->order)] = 's'; /* order[] is zeroed */
    return KR_OK;
}

static kr_err fake_backup_erase(void *arg, uint64_t tenant, uint64_t *generations)
{
    struct fake *f = arg;
    (void)tenant;
    f->backup_erases++;
    if (strlen(f->order) + 1 < sizeof f->order)
        f->order[strlen(f->order)] = 'b';
    *generations = 7;
    return f->backup_fails ? KR_EIO : KR_OK;
}

static kr_err fake_list(void *arg, struct ret_generation *out, size_t cap, size_t *n)
{
    struct fake *f = arg;
    f->lists++;
    assert_true(cap >= 2);
    out[0] =
        (struct ret_generation){.last_seq = 40, .taken = 2000, .bytes = 4096, .verified = true};
    snprintf(out[0].generation, sizeof out[0].generation, "2026-04-02");
    out[1] = (struct ret_generation){.last_seq = 20, .taken = 1000, .bytes = 2048};
    snprintf(out[1].generation, sizeof out[1].generation, "2026-04-01");
    snprintf(out[1].reason, sizeof out[1].reason, "digest of journal/data.mdb");
    *n = 2;
    return KR_OK;
}

static kr_err fake_after(void *arg, uint64_t tenant, enum ret_step step)
{
    struct fake *f = arg;
    (void)tenant;
    f->calls[step]++;
    return f->fail_after == (int)step ? KR_EIO : KR_OK;
}

static void fake_init(struct fake *f)
{
    memset(f, 0, sizeof *f);
    f->fail_after = -1;
    f->h = (struct ret_hooks){.backup_erase = fake_backup_erase,
                              .backup_list = fake_list,
                              .strip = fake_strip,
                              .after_step = fake_after,
                              .arg = f};
}

/* Records of type ev in the journal. */
static uint64_t count_type(struct td *t, int ev)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1};
    struct jrn_cursor *c;
    struct jrn_record r;
    uint64_t n = 0;
    const char *name = kr_events[ev].name;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &c), KR_OK);
    while (jrn_cursor_next(c, &r) == KR_OK)
        n += r.type_len == strlen(name) && memcmp(r.type, name, r.type_len) == 0;
    jrn_cursor_free(c);
    return n;
}

static int tenant_state(struct td *t, uint64_t tenant)
{
    MDB_txn *txn;
    struct va_tenant row;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    kr_err err = va_tenant_get(&t->d->views, txn, tenant, &row);
    mdb_txn_abort(txn);
    assert_int_equal(err, KR_OK);
    return row.state;
}

static bool key_alive(struct td *t, uint64_t tenant)
{
    struct kr_data_key k;
    kr_err err = ks_get(t->d->ks, tenant, &k);
    kr_data_key_wipe(&k);
    assert_true(err == KR_OK || err == KR_ENOTFOUND);
    return err == KR_OK;
}

static uint64_t cancel(struct td *t, uint64_t tenant)
{
    struct kr_caller op = td_operator();
    kr_set_u64(td_args(t), KR_FLD_TENANT, tenant);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_CANCEL), KR_OK);
    return td_get_u64(t, "cancelled");
}

/* ---- The rule ---- */

static void test_due_rule(void **state)
{
    (void)state;
    const uint64_t c = 1775001600ull * 1000000000ull, h = RET_NS_PER_HOUR, day = RET_NS_PER_DAY;
    assert_true(ret_erase_by(c) == c + 30 * day);
    assert_true(RET_DUE_AFTER_NS == 28 * day + 23 * h);
    assert_false(ret_is_due(c, c));
    assert_false(ret_is_due(c, c + 28 * day + 23 * h - 1));
    assert_true(ret_is_due(c, c + 28 * day + 23 * h));
    assert_true(ret_is_due(c, c + 29 * day + 23 * h));
    assert_true(ret_is_due(c, c + 30 * day));
    assert_false(ret_is_due(0, c));     /* not cancelled */
    assert_false(ret_is_due(c, c - 1)); /* a clock behind the cancellation */
    /* Whatever hour the daily job runs, the first run at or after the due
     * time comes before the erase-by date, with the margin to spare. */
    for (uint64_t phase = 0; phase < day; phase += h / 4) {
        uint64_t run = c - phase; /* some run before the cancellation */
        while (!ret_is_due(c, run))
            run += RET_JOB_INTERVAL_NS;
        assert_true(run + RET_MARGIN_NS <= ret_erase_by(c));
    }
    assert_true(ret_erase_by(UINT64_MAX - 5) == UINT64_MAX);
    assert_string_equal(ret_step_name(RET_STEP_KEY), "key");
    assert_string_equal(ret_step_name(RET_STEP_EVENT), "event");
}

/* ---- Erasure ---- */

static void test_erase_steps_and_rerun(void **state)
{
    (void)state;
    struct td *t = td_new(11);
    struct fake f;
    fake_init(&f);
    dom_set_retention(t->d, &f.h, 0);
    struct kr_caller a, b;
    uint64_t ta = td_signup(t, "a@example.jp", "correct horse 1", &a, NULL);
    uint64_t tb = td_signup(t, "b@example.jp", "correct horse 2", &b, NULL);
    kr_set_str(td_args(t), KR_FLD_NAME, "Erase Me");
    assert_int_equal(td_exec(t, &a, KR_OP_CONTACTS_REGISTER), KR_OK);

    struct kr_diag diag;
    /* Only a cancelled tenant is erased. */
    assert_int_equal(ret_erase_tenant(t->d, ta, &diag), KR_ECONFLICT);
    assert_string_equal(diag.field, "tenant");
    assert_int_equal(ret_erase_tenant(t->d, 123456789, &diag), KR_ENOTFOUND);
    assert_true(key_alive(t, ta));
    cancel(t, ta);

    uint64_t size = jrn_size(t->d->j);
    assert_int_equal(ret_erase_tenant(t->d, ta, &diag), KR_OK);
    /* Every step once, in order: key, backups, outbox, strip, event. */
    for (int s = 0; s < RET_STEP__COUNT; s++)
        assert_int_equal(f.calls[s], 1);
    assert_string_equal(f.order, "bs");
    assert_true(f.last.tenant == ta && !f.last.any_tenant && f.last.to_seq == size &&
                f.last.before_ns == 0 && f.last.want == NULL);
    assert_false(key_alive(t, ta));
    assert_true(key_alive(t, tb));
    assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_ERASED);
    assert_int_equal(count_type(t, KR_EV_TENANT_ERASED), 1);

    /* A rerun changes nothing. */
    size = jrn_size(t->d->j);
    assert_int_equal(ret_erase_tenant(t->d, ta, &diag), KR_OK);
    assert_true(jrn_size(t->d->j) == size);
    assert_int_equal(f.strips, 1);
    td_free(t);
}

/* Every view's digest. */
static void digests(struct td *t, uint8_t out[VIEW__COUNT][32])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (int v = 0; v < VIEW__COUNT; v++)
        assert_int_equal(views_digest(&t->d->views, txn, (enum kr_view)v, out[v], NULL), KR_OK);
    mdb_txn_abort(txn);
}

/* A crash after each step (the hook's error stops the erasure there), with
 * the journal's own strip: the tenant stays cancelled, due, even across a
 * view rebuild in between, and the next run completes it; the views are
 * then what a rebuild gives. */
static void test_erase_crash_after_each_step(void **state)
{
    (void)state;
    for (int step = 0; step < RET_STEP__COUNT; step++) {
        struct td *t = td_new(20 + (uint64_t)step);
        struct fake f;
        fake_init(&f);
        f.h.strip = NULL; /* the real one */
        dom_set_retention(t->d, &f.h, 0);
        struct kr_caller a;
        uint64_t ta = td_signup(t, "a@example.jp", "correct horse 1", &a, NULL);
        kr_set_str(td_args(t), KR_FLD_NAME, "Erase Me");
        assert_int_equal(td_exec(t, &a, KR_OP_CONTACTS_REGISTER), KR_OK);
        uint64_t cancelled = cancel(t, ta);
        f.fail_after = step;
        struct kr_diag diag;
        assert_int_equal(ret_erase_tenant(t->d, ta, &diag), KR_EIO);
        assert_string_equal(diag.field, "step");
        assert_non_null(strstr(diag.why, ret_step_name((enum ret_step)step)));
        /* The key is gone from the first step on. */
        assert_false(key_alive(t, ta));
        if (step < RET_STEP_EVENT) {
            assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_CANCELLED);
            assert_int_equal(count_type(t, KR_EV_TENANT_ERASED), 0);
        }
        /* A restart, and even a view rebuild, in between. */
        td_reopen(t);
        assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
        dom_set_retention(t->d, &f.h, 0);
        if (step < RET_STEP_EVENT) {
            assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_CANCELLED);
            struct ret_report *r = malloc(sizeof *r);
            assert_int_equal(ret_run(t->d, true, r), KR_OK);
            assert_int_equal(r->n, 1);
            assert_true(r->tenants[0].tenant == ta);
            /* From the rebuilt row: the cancellation's time, or the record's
             * (a few ms later) once its payload is stripped. */
            assert_true(r->tenants[0].cancelled >= cancelled &&
                        r->tenants[0].cancelled - cancelled < RET_NS_PER_HOUR);
            free(r);
        }
        f.fail_after = -1;
        assert_int_equal(ret_erase_tenant(t->d, ta, &diag), KR_OK);
        assert_false(key_alive(t, ta));
        assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_ERASED);
        assert_int_equal(count_type(t, KR_EV_TENANT_ERASED), 1);
        uint8_t live[VIEW__COUNT][32], rebuilt[VIEW__COUNT][32];
        digests(t, live);
        assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
        digests(t, rebuilt);
        for (int v = 0; v < VIEW__COUNT; v++)
            if (memcmp(live[v], rebuilt[v], 32) != 0)
                fail_msg("after a crash after %s: view %s differs after a rebuild",
                         ret_step_name((enum ret_step)step), views_name((enum kr_view)v));
        td_free(t);
    }
}

/* A step that cannot be done leaves the tenant due (a failing backup);
 * without hooks the journal's own jrn_strip does the stripping for real. */
static void test_erase_stays_due(void **state)
{
    (void)state;
    struct td *t = td_new(31);
    struct fake f;
    fake_init(&f);
    struct kr_caller a, b;
    uint64_t ta = td_signup(t, "a@example.jp", "correct horse 1", &a, NULL);
    uint64_t tb = td_signup(t, "b@example.jp", "correct horse 2", &b, NULL);
    kr_set_str(td_args(t), KR_FLD_NAME, "Keep Me");
    assert_int_equal(td_exec(t, &b, KR_OP_CONTACTS_REGISTER), KR_OK);
    /* An incident for all tenants, a notified: a platform record naming a
     * tenant whose own records the rebuild will not see. */
    struct kr_caller op = td_operator();
    struct kr_payload *p = td_args(t);
    kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_OUTAGE);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    kr_set_str(p, KR_FLD_TITLE, "API down");
    kr_set_str(p, KR_FLD_SUMMARY, "The API did not answer for 20 minutes.");
    kr_set_u64(p, KR_FLD_DETECTED, t->now - 1000);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_ALL);
    assert_int_equal(td_exec(t, &op, KR_OP_INCIDENTS_OPEN), KR_OK);
    uint8_t incident[16];
    td_get_id(t, "incident", incident);
    p = td_args(t);
    kr_set_bytes(p, KR_FLD_INCIDENT, incident, 16);
    kr_set_u64(p, KR_FLD_TENANT, ta);
    kr_set_u64(p, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
    assert_int_equal(td_exec(t, &op, KR_OP_INCIDENTS_NOTIFY), KR_OK);
    cancel(t, ta);
    struct kr_diag diag;
    /* A backup that fails stops before the journal is touched. */
    f.backup_fails = true;
    dom_set_retention(t->d, &f.h, 0);
    assert_int_equal(ret_erase_tenant(t->d, ta, &diag), KR_EIO);
    assert_non_null(strstr(diag.why, "backups"));
    assert_int_equal(f.strips, 0);
    assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_CANCELLED);
    /* No hooks (no backups, the real strip): erased, every record of the
     * tenant before tenant.erased stripped, none of b's. */
    dom_set_retention(t->d, NULL, 0);
    assert_int_equal(ret_erase_tenant(t->d, ta, &diag), KR_OK);
    assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_ERASED);
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1};
    struct jrn_cursor *c;
    struct jrn_record r;
    uint64_t a_kept = 0, a_stripped = 0, b_stripped = 0;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &c), KR_OK);
    while (jrn_cursor_next(c, &r) == KR_OK) {
        if (r.tenant == ta) {
            if (r.payload_stripped)
                a_stripped++;
            else
                a_kept += kr_event_lookup(r.type, r.type_len) != KR_EV_TENANT_ERASED;
        }
        if (r.tenant == tb && r.payload_stripped)
            b_stripped++;
    }
    jrn_cursor_free(c);
    assert_true(a_stripped > 5);
    assert_true(a_kept == 0);
    assert_true(b_stripped == 0);
    /* Views rebuilt from the stripped journal are the live ones. */
    uint8_t live[VIEW__COUNT][32], rebuilt[32];
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (int v = 0; v < VIEW__COUNT; v++)
        assert_int_equal(views_digest(&t->d->views, txn, (enum kr_view)v, live[v], NULL), KR_OK);
    mdb_txn_abort(txn);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (int v = 0; v < VIEW__COUNT; v++) {
        assert_int_equal(views_digest(&t->d->views, txn, (enum kr_view)v, rebuilt, NULL), KR_OK);
        if (memcmp(live[v], rebuilt, 32) != 0)
            fail_msg("view %s differs after a rebuild", views_name((enum kr_view)v));
    }
    mdb_txn_abort(txn);
    assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_ERASED);
    td_free(t);
}

/* The outbox step deletes the tenant's e-mail files and nobody else's. */
static void test_erase_outbox_files(void **state)
{
    (void)state;
    struct td *t = td_new(41);
    struct fake f;
    fake_init(&f);
    dom_set_retention(t->d, &f.h, 0);
    struct kr_caller a, b;
    uint64_t ta = td_signup(t, "a@example.jp", "correct horse 1", &a, NULL);
    td_signup(t, "b@example.jp", "correct horse 2", &b, NULL);
    /* The files the mailer would have written: one per outbox.queued. */
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/outbox", t->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1};
    struct jrn_cursor *c;
    struct jrn_record r;
    int mine = 0, theirs = 0;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &c), KR_OK);
    while (jrn_cursor_next(c, &r) == KR_OK) {
        if (r.type_len != strlen("outbox.queued") ||
            memcmp(r.type, "outbox.queued", r.type_len) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%llu-00112233445566778899aabbccddeeff.eml", dir,
                 (unsigned long long)r.seq);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs("To: someone\n", fp);
        fclose(fp);
        if (r.tenant == ta)
            mine++;
        else
            theirs++;
    }
    jrn_cursor_free(c);
    assert_true(mine > 0 && theirs > 0);
    snprintf(path, sizeof path, "%s/notes.txt", dir); /* not an e-mail: left alone */
    FILE *fp = fopen(path, "w");
    fclose(fp);
    cancel(t, ta);
    struct kr_diag diag;
    assert_int_equal(ret_erase_tenant(t->d, ta, &diag), KR_OK);
    int left_mine = 0, left_theirs = 0, others = 0;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &c), KR_OK);
    while (jrn_cursor_next(c, &r) == KR_OK) {
        snprintf(path, sizeof path, "%s/%llu-00112233445566778899aabbccddeeff.eml", dir,
                 (unsigned long long)r.seq);
        if (access(path, F_OK) == 0) {
            if (r.tenant == ta)
                left_mine++;
            else
                left_theirs++;
        }
    }
    jrn_cursor_free(c);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    others = access(path, F_OK) == 0;
    assert_int_equal(left_mine, 0);
    assert_int_equal(left_theirs, theirs);
    assert_int_equal(others, 1);
    td_free(t);
}

/* ---- The job and its op ---- */

static void test_retention_run(void **state)
{
    (void)state;
    struct td *t = td_new(51);
    struct fake f;
    fake_init(&f);
    dom_set_retention(t->d, &f.h, 1);
    struct kr_caller a, b, c, op = td_operator();
    uint64_t ta = td_signup(t, "a@example.jp", "correct horse 1", &a, NULL);
    uint64_t tb = td_signup(t, "b@example.jp", "correct horse 2", &b, NULL);
    uint64_t tc = td_signup(t, "c@example.jp", "correct horse 3", &c, NULL);
    uint64_t ca = cancel(t, ta);
    t->now += 2 * RET_NS_PER_DAY;
    uint64_t cb = cancel(t, tb);
    (void)tc;

    /* tenants.list: the erase-by date of the cancelled ones only. */
    td_args(t);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_LIST), KR_OK);
    const msgpack_object *list = td_get(t, "tenants");
    assert_int_equal(list->via.array.size, 3);
    for (uint32_t i = 0; i < 3; i++) {
        const msgpack_object *row = &list->via.array.ptr[i];
        uint64_t id = td_map_get(row, "tenant")->via.u64;
        const msgpack_object *eb = td_map_get(row, "erase_by");
        if (id == ta)
            assert_true(eb->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                        eb->via.u64 == ca + RET_ERASE_AFTER_NS);
        else if (id == tb)
            assert_true(eb->via.u64 == cb + RET_ERASE_AFTER_NS);
        else
            assert_int_equal(eb->type, MSGPACK_OBJECT_NIL);
    }

    /* One tick before a's due time: nothing due. */
    t->now = ca + RET_DUE_AFTER_NS - 1000000000ull;
    kr_set_bool(td_args(t), KR_FLD_DRY_RUN, false);
    assert_int_equal(td_exec(t, &op, KR_OP_RETENTION_RUN), KR_OK);
    list = td_get(t, "tenants");
    assert_int_equal(list->via.array.size, 2);
    for (uint32_t i = 0; i < 2; i++)
        assert_false(td_map_get(&list->via.array.ptr[i], "erased")->via.boolean);
    assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_CANCELLED);
    /* The log truncation ran with the period configured (1 day). */
    assert_true(f.last.any_tenant && f.last.want != NULL && f.last.before_ns > 0);

    /* At a's due time: a dry run lists, changes nothing. */
    t->now = ca + RET_DUE_AFTER_NS;
    uint64_t size = jrn_size(t->d->j);
    kr_set_bool(td_args(t), KR_FLD_DRY_RUN, true);
    int strips = f.strips;
    assert_int_equal(td_exec(t, &op, KR_OP_RETENTION_RUN), KR_OK);
    assert_true(jrn_size(t->d->j) == size);
    assert_int_equal(f.strips, strips);
    assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_CANCELLED);
    assert_true(key_alive(t, ta));

    /* The run erases a, not b (cancelled two days later). */
    td_args(t);
    assert_int_equal(td_exec(t, &op, KR_OP_RETENTION_RUN), KR_OK);
    list = td_get(t, "tenants");
    assert_int_equal(list->via.array.size, 2);
    for (uint32_t i = 0; i < 2; i++) {
        uint64_t id = td_map_get(&list->via.array.ptr[i], "tenant")->via.u64;
        assert_int_equal(td_map_get(&list->via.array.ptr[i], "erased")->via.boolean, id == ta);
    }
    assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_ERASED);
    assert_int_equal(tenant_state(t, tb), KR_TENANT_STATE_CANCELLED);
    assert_false(key_alive(t, ta));
    assert_true(key_alive(t, tb));

    /* Operators only, over the operator endpoint. */
    assert_int_equal(td_exec(t, &b, KR_OP_RETENTION_RUN), KR_EFORBIDDEN);
    struct kr_caller op_client = op;
    op_client.operator_endpoint = false;
    assert_int_equal(td_exec(t, &op_client, KR_OP_RETENTION_RUN), KR_EFORBIDDEN);
    td_free(t);
}

static void test_tenants_erase_op(void **state)
{
    (void)state;
    struct td *t = td_new(61);
    struct fake f;
    fake_init(&f);
    dom_set_retention(t->d, &f.h, 0);
    struct kr_caller a, op = td_operator();
    uint64_t ta = td_signup(t, "a@example.jp", "correct horse 1", &a, NULL);
    kr_set_u64(td_args(t), KR_FLD_TENANT, ta);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_ERASE), KR_ECONFLICT); /* active */
    assert_string_equal(t->diag.field, "tenant");
    kr_set_u64(td_args(t), KR_FLD_TENANT, 987654321);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_ERASE), KR_ENOTFOUND);
    td_args(t);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_ERASE), KR_EINVAL); /* no tenant */
    cancel(t, ta);
    kr_set_u64(td_args(t), KR_FLD_TENANT, ta);
    assert_int_equal(td_exec(t, &a, KR_OP_TENANTS_ERASE), KR_EFORBIDDEN);
    /* Early: right after the cancellation, long before it is due. */
    kr_set_u64(td_args(t), KR_FLD_TENANT, ta);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_ERASE), KR_OK);
    assert_true(td_get_u64(t, "tenant") == ta);
    assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_ERASED);
    assert_false(key_alive(t, ta));
    /* Again: done already, nothing appended. */
    uint64_t size = jrn_size(t->d->j);
    kr_set_u64(td_args(t), KR_FLD_TENANT, ta);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_ERASE), KR_OK);
    assert_true(jrn_size(t->d->j) == size);
    td_free(t);
}

/* The ops with the journal's own strip (no hooks), inside dom_exec's read
 * transaction: the op's snapshot does not stand in the strip's way. */
static void test_ops_real_strip(void **state)
{
    (void)state;
    struct td *t = td_new(65);
    struct kr_caller a, b, op = td_operator();
    uint64_t ta = td_signup(t, "a@example.jp", "correct horse 1", &a, NULL);
    uint64_t tb = td_signup(t, "b@example.jp", "correct horse 2", &b, NULL);
    cancel(t, ta);
    kr_set_u64(td_args(t), KR_FLD_TENANT, ta);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_ERASE), KR_OK);
    assert_int_equal(tenant_state(t, ta), KR_TENANT_STATE_ERASED);
    cancel(t, tb);
    t->now += RET_ERASE_AFTER_NS;
    td_args(t);
    assert_int_equal(td_exec(t, &op, KR_OP_RETENTION_RUN), KR_OK);
    assert_int_equal(tenant_state(t, tb), KR_TENANT_STATE_ERASED);
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1};
    struct jrn_cursor *c;
    struct jrn_record r;
    uint64_t stripped = 0, kept = 0;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &c), KR_OK);
    while (jrn_cursor_next(c, &r) == KR_OK)
        if (r.tenant == ta || r.tenant == tb) {
            if (r.payload_stripped)
                stripped++;
            else
                kept += kr_event_lookup(r.type, r.type_len) != KR_EV_TENANT_ERASED;
        }
    jrn_cursor_free(c);
    assert_true(stripped > 10 && kept == 0);
    td_free(t);
}

/* ---- Records ---- */

static void test_maintenance_record(void **state)
{
    (void)state;
    struct td *t = td_new(71);
    struct kr_caller a, op = td_operator();
    memset(op.account, 0x5a, 16);
    td_signup(t, "a@example.jp", "correct horse 1", &a, NULL);
    kr_set_str(td_args(t), KR_FLD_WORK, "replaced the disk of db-2");
    kr_set_str(t->args, KR_FLD_HOST, "db-2.example.jp");
    assert_int_equal(td_exec(t, &op, KR_OP_MAINTENANCE_RECORD), KR_OK);
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_read(t->d->j, jrn_size(t->d->j), &b), KR_OK);
    assert_true(b.rec.tenant == 0);
    assert_int_equal(kr_event_lookup(b.rec.type, b.rec.type_len), KR_EV_MAINTENANCE_RECORDED);
    assert_true(b.rec.actor_len > 9 && memcmp(b.rec.actor, "operator/", 9) == 0);
    struct kr_payload *p = kr_payload_new();
    assert_int_equal(kr_event_decode(KR_EV_MAINTENANCE_RECORDED, &b.rec, NULL, p, NULL), KR_OK);
    assert_memory_equal(p->v[KR_FLD_ACCOUNT].p, op.account, 16);
    assert_int_equal(p->v[KR_FLD_WORK].n, strlen("replaced the disk of db-2"));
    assert_memory_equal(p->v[KR_FLD_HOST].p, "db-2.example.jp", strlen("db-2.example.jp"));
    kr_payload_free(p);
    jrn_recbuf_fini(&b);
    /* Rejections: missing what or host, bad host, not an operator. */
    uint64_t size = jrn_size(t->d->j);
    kr_set_str(td_args(t), KR_FLD_HOST, "db-2");
    assert_int_equal(td_exec(t, &op, KR_OP_MAINTENANCE_RECORD), KR_EINVAL);
    assert_string_equal(t->diag.field, "work");
    kr_set_str(td_args(t), KR_FLD_WORK, "x");
    assert_int_equal(td_exec(t, &op, KR_OP_MAINTENANCE_RECORD), KR_EINVAL);
    assert_string_equal(t->diag.field, "host");
    kr_set_str(td_args(t), KR_FLD_WORK, "x");
    kr_set_str(t->args, KR_FLD_HOST, "bad\nhost");
    assert_int_equal(td_exec(t, &op, KR_OP_MAINTENANCE_RECORD), KR_EINVAL);
    assert_true(td_unchanged_since(t, size));
    kr_set_str(td_args(t), KR_FLD_WORK, "x");
    kr_set_str(t->args, KR_FLD_HOST, "h");
    assert_int_equal(td_exec(t, &a, KR_OP_MAINTENANCE_RECORD), KR_EFORBIDDEN);
    td_free(t);
}

static void test_backups_list(void **state)
{
    (void)state;
    struct td *t = td_new(81);
    struct kr_caller a, op = td_operator();
    td_signup(t, "a@example.jp", "correct horse 1", &a, NULL);
    td_args(t);
    assert_int_equal(td_exec(t, &op, KR_OP_BACKUPS_LIST), KR_ENOTFOUND); /* no backups */
    struct fake f;
    fake_init(&f);
    dom_set_retention(t->d, &f.h, 0);
    td_args(t);
    assert_int_equal(td_exec(t, &op, KR_OP_BACKUPS_LIST), KR_OK);
    const msgpack_object *g = td_get(t, "generations");
    assert_int_equal(g->via.array.size, 2);
    const msgpack_object *g0 = &g->via.array.ptr[0], *g1 = &g->via.array.ptr[1];
    assert_true(td_map_get(g0, "verified")->via.boolean);
    assert_int_equal(td_map_get(g0, "reason")->type, MSGPACK_OBJECT_NIL);
    assert_true(td_map_get(g0, "last_seq")->via.u64 == 40);
    assert_false(td_map_get(g1, "verified")->via.boolean);
    assert_int_equal(td_map_get(g1, "reason")->type, MSGPACK_OBJECT_STR);
    assert_int_equal(td_exec(t, &a, KR_OP_BACKUPS_LIST), KR_EFORBIDDEN);
    td_free(t);
}

static void test_serve_started_and_backup_events(void **state)
{
    (void)state;
    struct td *t = td_new(91);
    char prev[33];
    assert_int_equal(ret_serve_started(t->d, "0.1.0", "a.example.jp", prev), KR_OK);
    assert_string_equal(prev, "");
    assert_int_equal(ret_serve_started(t->d, "0.1.0", "a.example.jp", prev), KR_OK);
    assert_string_equal(prev, "0.1.0");
    assert_int_equal(ret_serve_started(t->d, "0.2.0", "a.example.jp", prev), KR_OK);
    assert_string_equal(prev, "0.1.0");
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_read(t->d->j, jrn_size(t->d->j), &b), KR_OK);
    struct kr_payload *p = kr_payload_new();
    assert_int_equal(kr_event_decode(KR_EV_SERVE_STARTED, &b.rec, NULL, p, NULL), KR_OK);
    assert_memory_equal(p->v[KR_FLD_KIROKU_VERSION].p, "0.2.0", 5);
    assert_memory_equal(p->v[KR_FLD_PREVIOUS_VERSION].p, "0.1.0", 5);
    assert_int_equal(ret_backup_recorded(t->d, true, "2026-04-01", 10, 4096, NULL), KR_OK);
    assert_int_equal(ret_backup_recorded(t->d, false, NULL, 0, 0, "disk\nfull"), KR_OK);
    assert_int_equal(jrn_read(t->d->j, jrn_size(t->d->j), &b), KR_OK);
    assert_int_equal(kr_event_decode(KR_EV_BACKUP_FAILED, &b.rec, NULL, p, NULL), KR_OK);
    assert_memory_equal(p->v[KR_FLD_REASON].p, "disk full", 9);
    assert_int_equal(count_type(t, KR_EV_BACKUP_COMPLETED), 1);
    kr_payload_free(p);
    jrn_recbuf_fini(&b);
    td_free(t);
}

/* Log truncation picks the log types, older than the period, of every
 * tenant and the platform. */
/* Logs in as email/password of tenant code `code`; the session's caller in *who. */
static void login(struct td *t, const char *code, const char *email, const char *password,
                  struct kr_caller *who)
{
    struct kr_caller anon = td_anonymous();
    struct kr_payload *p = td_args(t);
    kr_set_str(p, KR_FLD_TENANT_CODE, code);
    kr_set_str(p, KR_FLD_EMAIL, email);
    kr_set_str(p, KR_FLD_PASSWORD, password);
    assert_int_equal(td_exec(t, &anon, KR_OP_AUTH_LOGIN), KR_OK);
    const msgpack_object *tok = td_get(t, "token");
    assert_non_null(tok);
    uint8_t token[32];
    memcpy(token, tok->via.bin.ptr, 32);
    assert_int_equal(dom_session_resolve(t->d, token, who), KR_OK);
}

/* An erased tenant's code is simply unknown: its master's login, right
 * password or not, gets exactly the reply of a code nobody has. */
static void test_login_erased_tenant(void **state)
{
    (void)state;
    struct td *t = td_new(62);
    struct fake f;
    fake_init(&f);
    dom_set_retention(t->d, &f.h, 0);
    struct kr_caller a, who, anon = td_anonymous(), op = td_operator();
    char code[40];
    td_signup(t, "a@example.jp", "correct horse 1", &a, code);
    login(t, code, "a@example.jp", "correct horse 1", &who);
    struct kr_payload *p = td_args(t);
    kr_set_str(p, KR_FLD_TENANT_CODE, "tnosuchcode");
    kr_set_str(p, KR_FLD_EMAIL, "a@example.jp");
    kr_set_str(p, KR_FLD_PASSWORD, "correct horse 1");
    assert_int_equal(td_exec(t, &anon, KR_OP_AUTH_LOGIN), KR_EAUTH);
    struct kr_diag unknown = t->diag;
    cancel(t, a.tenant);
    kr_set_u64(td_args(t), KR_FLD_TENANT, a.tenant);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_ERASE), KR_OK);
    const char *pws[] = {"correct horse 1", "wrong horse 1"};
    for (int i = 0; i < 2; i++) {
        p = td_args(t);
        kr_set_str(p, KR_FLD_TENANT_CODE, code);
        kr_set_str(p, KR_FLD_EMAIL, "a@example.jp");
        kr_set_str(p, KR_FLD_PASSWORD, pws[i]);
        uint64_t before = jrn_size(t->d->j);
        assert_int_equal(td_exec(t, &anon, KR_OP_AUTH_LOGIN), KR_EAUTH);
        assert_memory_equal(&t->diag, &unknown, sizeof unknown);
        /* Recorded as an unknown code is: login.unknown in the platform. */
        assert_int_equal(jrn_size(t->d->j), before + 1);
    }
    td_free(t);
}

/* Records of tenant `tenant` whose type is ev and whose payload is stripped
 * (stripped true) or kept. */
static uint64_t count_state(struct td *t, int ev, bool stripped)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1};
    struct jrn_cursor *c;
    struct jrn_record r;
    uint64_t n = 0;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &c), KR_OK);
    while (jrn_cursor_next(c, &r) == KR_OK)
        n += kr_event_lookup(r.type, r.type_len) == ev && r.payload_stripped == stripped;
    jrn_cursor_free(c);
    return n;
}

/* Log truncation picks the log types, and the sessions closed, older than
 * the period, of every tenant and the platform; a rebuild then gives the
 * live views. */
/* Platform logs that a 10-day period then finds old: a denial, an
 * operator's work, failed logins that lock the account, a session opened and
 * closed (s1), a session opened and left to expire (s2); then, 11 days on, a
 * new denial. *failed: the account.login_failed records; *old_logs: the log
 * records (ret_is_log_type) among the old ones. */
static void make_old_logs(struct td *t, struct kr_caller *a, uint64_t *ta, uint64_t *failed,
                          uint64_t *old_logs, struct kr_caller *s2)
{
    struct kr_caller op = td_operator();
    memset(op.account, 0x11, 16);
    char code[40];
    *ta = td_signup(t, "a@example.jp", "correct horse 1", a, code);
    /* Old logs: a denial, an operator's work, a session opened and closed,
     * a session opened and left to expire. */
    assert_int_equal(td_exec(t, a, KR_OP_TENANTS_LIST), KR_EFORBIDDEN); /* access.denied */
    kr_set_str(td_args(t), KR_FLD_WORK, "old work");
    kr_set_str(t->args, KR_FLD_HOST, "h");
    assert_int_equal(td_exec(t, &op, KR_OP_MAINTENANCE_RECORD), KR_OK);
    struct kr_caller s1, anon = td_anonymous();
    struct kr_payload *lp = td_args(t); /* a wrong password first */
    kr_set_str(lp, KR_FLD_TENANT_CODE, code);
    kr_set_str(lp, KR_FLD_EMAIL, "a@example.jp");
    kr_set_str(lp, KR_FLD_PASSWORD, "wrong horse 1");
    assert_int_equal(td_exec(t, &anon, KR_OP_AUTH_LOGIN), KR_EAUTH);
    /* ... and enough of them to lock the account for failures, which times
     * out: the lock and its count are state a rebuild must reproduce. */
    for (int i = 0; i < 6; i++) {
        lp = td_args(t);
        kr_set_str(lp, KR_FLD_TENANT_CODE, code);
        kr_set_str(lp, KR_FLD_EMAIL, "a@example.jp");
        kr_set_str(lp, KR_FLD_PASSWORD, "wrong horse 1");
        /* Wrong until the failure that locks (the first was above), locked after. */
        assert_int_equal(td_exec(t, &anon, KR_OP_AUTH_LOGIN),
                         i + 2 <= (int)KR_LOGIN_FAILURES_MAX ? KR_EAUTH : KR_ELOCKED);
    }
    assert_true(count_type(t, KR_EV_ACCOUNT_LOCKED) >= 1);
    t->now += 2 * RET_NS_PER_HOUR;
    *failed = count_type(t, KR_EV_ACCOUNT_LOGIN_FAILED);
    login(t, code, "a@example.jp", "correct horse 1", &s1);
    td_args(t);
    assert_int_equal(td_exec(t, &s1, KR_OP_AUTH_LOGOUT), KR_OK);
    login(t, code, "a@example.jp", "correct horse 1", s2);
    *old_logs = count_type(t, KR_EV_ACCESS_DENIED) + count_type(t, KR_EV_LOGIN_UNKNOWN) +
                count_type(t, KR_EV_MAINTENANCE_RECORDED);
    assert_true(*old_logs >= 2);
    assert_int_equal(count_type(t, KR_EV_SESSION_OPENED), 2);
    assert_int_equal(count_type(t, KR_EV_SESSION_CLOSED), 1);
    t->now += 11 * RET_NS_PER_DAY;
    /* New ones, inside the period. */
    assert_int_equal(td_exec(t, a, KR_OP_TENANTS_LIST), KR_EFORBIDDEN);
}

/* A truncation is recorded (retention.logs_stripped, after its strip) so
 * that a copy holding the same records strips the same payloads. A run
 * whose strip only counts (the fake hook) leaves the journal as a follower
 * has it when the record arrives: applying the record then strips exactly
 * what a real run strips, and applying it again nothing; a record naming
 * records not before it is refused. */
static void test_log_truncation_recorded(void **state)
{
    (void)state;
    struct td *t = td_new(101);
    struct fake f;
    fake_init(&f);
    dom_set_retention(t->d, &f.h, 10);
    struct kr_caller a, s2;
    uint64_t ta, failed, old_logs;
    make_old_logs(t, &a, &ta, &failed, &old_logs, &s2);
    uint64_t size = jrn_size(t->d->j), want = old_logs + 4 + failed;
    struct ret_report *r = malloc(sizeof *r);
    assert_non_null(r);
    assert_int_equal(ret_run(t->d, false, r), KR_OK);
    assert_true(r->stripped == want); /* counted, not stripped */
    /* The record: the last one, after s2's close. */
    struct jrn_recbuf ev;
    memset(&ev, 0, sizeof ev);
    assert_int_equal(jrn_read(t->d->j, jrn_size(t->d->j), &ev), KR_OK);
    assert_true(kr_event_lookup(ev.rec.type, ev.rec.type_len) == KR_EV_RETENTION_LOGS_STRIPPED);
    assert_true(ev.rec.tenant == 0);
    struct kr_payload *p = kr_payload_new();
    assert_int_equal(kr_event_decode(KR_EV_RETENTION_LOGS_STRIPPED, &ev.rec, NULL, p, NULL), KR_OK);
    assert_true(p->v[KR_FLD_LOG_BEFORE].u == f.last.before_ns);
    assert_true(p->v[KR_FLD_LOG_TO_SEQ].u == f.last.to_seq);
    assert_true(p->v[KR_FLD_FROM_SEQ].set && p->v[KR_FLD_FROM_SEQ].u > size);
    assert_true(p->v[KR_FLD_TO_SEQ].u >= p->v[KR_FLD_FROM_SEQ].u &&
                p->v[KR_FLD_TO_SEQ].u < ev.rec.seq);
    kr_payload_free(p);
    assert_int_equal(count_state(t, KR_EV_SESSION_OPENED, true), 0);
    /* A follower's apply of it, with the journal's strip. */
    dom_set_retention(t->d, NULL, 10);
    uint64_t stripped = 0;
    assert_int_equal(ret_logs_stripped_apply(t->d, &ev.rec, &stripped), KR_OK);
    assert_true(stripped == want);
    assert_int_equal(count_state(t, KR_EV_SESSION_OPENED, true), 2);
    assert_true(count_state(t, KR_EV_ACCOUNT_LOGIN_FAILED, true) == failed);
    assert_int_equal(ret_logs_stripped_apply(t->d, &ev.rec, &stripped), KR_OK);
    assert_true(stripped == 0);
    /* A real run finds nothing left, and records nothing. */
    uint64_t end = jrn_size(t->d->j);
    assert_int_equal(ret_run(t->d, false, r), KR_OK);
    assert_true(r->stripped == 0 && jrn_size(t->d->j) == end);
    /* Naming records not before it: refused. */
    struct jrn_record forged = ev.rec;
    forged.seq = f.last.to_seq;
    assert_int_equal(ret_logs_stripped_apply(t->d, &forged, &stripped), KR_ECORRUPT);
    jrn_recbuf_fini(&ev);
    free(r);
    td_free(t);
}

static void test_log_truncation(void **state)
{
    (void)state;
    struct td *t = td_new(101);
    struct fake f;
    fake_init(&f);
    dom_set_retention(t->d, &f.h, 10);
    struct kr_caller a, s2;
    uint64_t ta, failed, old_logs;
    make_old_logs(t, &a, &ta, &failed, &old_logs, &s2);
    /* The journal's strip: the old logs and both sessions' old records lose
     * their payloads (s2, expired 12 hours after its login, is closed now as
     * expired: that new record stays); the new denial, the logins and every
     * other record keep theirs. */
    dom_set_retention(t->d, NULL, 10);
    struct ret_report *r = malloc(sizeof *r);
    assert_int_equal(ret_run(t->d, false, r), KR_OK);
    assert_true(r->stripped == old_logs + 4 + failed);
    uint64_t logs_stripped = 0, others_stripped = 0, logs_kept = 0;
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1};
    struct jrn_cursor *c;
    struct jrn_record rec;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &c), KR_OK);
    while (jrn_cursor_next(c, &rec) == KR_OK) {
        bool log = ret_is_log_type(rec.type, rec.type_len);
        if (rec.payload_stripped && log)
            logs_stripped++;
        else if (rec.payload_stripped)
            others_stripped++;
        else if (log)
            logs_kept++;
    }
    jrn_cursor_free(c);
    assert_true(logs_stripped == old_logs && others_stripped == 4 + failed && logs_kept == 1);
    assert_int_equal(count_state(t, KR_EV_SESSION_OPENED, true), 2);
    assert_int_equal(count_state(t, KR_EV_SESSION_CLOSED, true), 1);
    assert_int_equal(count_state(t, KR_EV_SESSION_CLOSED, false), 1); /* s2's, new */
    /* Login outcomes before the account's newest reset (s2's login) go; it
     * stays. */
    assert_true(count_state(t, KR_EV_ACCOUNT_LOGIN_FAILED, true) == failed);
    assert_int_equal(count_state(t, KR_EV_ACCOUNT_LOCKED, true), 0);
    assert_int_equal(count_state(t, KR_EV_ACCOUNT_LOGIN_SUCCEEDED, true), 1);
    assert_int_equal(count_state(t, KR_EV_ACCOUNT_LOGIN_SUCCEEDED, false), 1);
    struct va_session row;
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(va_session_by_id(&t->d->views, txn, ta, s2.session, &row), KR_ENOTFOUND);
    mdb_txn_abort(txn);
    /* The pass is bounded to the records before the period (the fake sees
     * the spec): the new denial is after. */
    dom_set_retention(t->d, &f.h, 10);
    assert_int_equal(ret_run(t->d, false, r), KR_OK);
    assert_true(f.last.any_tenant && f.last.to_seq > 0 && f.last.to_seq < jrn_size(t->d->j));
    dom_set_retention(t->d, NULL, 10);
    assert_int_equal(ret_run(t->d, false, r), KR_OK); /* again: nothing more */
    assert_true(r->stripped == 0);
    free(r);
    /* A rebuild of the truncated journal gives the live views. */
    uint8_t live[VIEW__COUNT][32], rebuilt[VIEW__COUNT][32];
    digests(t, live);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    digests(t, rebuilt);
    for (int v = 0; v < VIEW__COUNT; v++)
        if (memcmp(live[v], rebuilt[v], 32) != 0)
            fail_msg("view %s differs after a rebuild", views_name((enum kr_view)v));
    assert_true(ret_is_log_type("access.denied", 13));
    assert_true(ret_is_log_type("maintenance.recorded", 20));
    assert_true(ret_is_log_type("login.unknown", 13));
    assert_false(ret_is_log_type("contact.registered", 18));
    assert_false(ret_is_log_type("serve.started", 13));
    assert_false(ret_is_log_type("access.denie", 12));
    td_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_due_rule),
        cmocka_unit_test(test_login_erased_tenant),
        cmocka_unit_test(test_erase_steps_and_rerun),
        cmocka_unit_test(test_erase_crash_after_each_step),
        cmocka_unit_test(test_erase_stays_due),
        cmocka_unit_test(test_erase_outbox_files),
        cmocka_unit_test(test_retention_run),
        cmocka_unit_test(test_tenants_erase_op),
        cmocka_unit_test(test_ops_real_strip),
        cmocka_unit_test(test_maintenance_record),
        cmocka_unit_test(test_backups_list),
        cmocka_unit_test(test_serve_started_and_backup_events),
        cmocka_unit_test(test_log_truncation),
        cmocka_unit_test(test_log_truncation_recorded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
