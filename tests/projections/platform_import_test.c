/*
 * platform_import_test.c: the platform journal's notices and incidents
 * imported into a tenant shard (projections/platform_import.c), in process:
 * a platform domain (shard "platform": tenants checked as ids only, no
 * e-mail queued there) whose records are imported into a tenant shard's
 * domain hosting one tenant. The notice reaches the hosted tenant and owes
 * it an e-mail; an incident notified by e-mail queues it for the hosted
 * tenant only; every import happens once (a second pass, and a reopen,
 * import nothing); a rebuild of the shard's views is byte-identical (the
 * platform origin included); other records are refused; the platform ops
 * on an importing shard answer wrong_shard naming the platform's endpoint.
 *
 * Operator accounts: the platform and the shard share one KEK and an
 * in-memory keyring (one tenant-0 key, as KIROKU_KEYS gives a deployment).
 * An operator made on the platform logs in on the shard with its password;
 * a password change ends its sessions there and the old password fails;
 * lock and deletion close them; lockouts after failed logins stay on their
 * endpoint and an imported unlock lifts the shard's; a shard with another
 * key skips the records as unreadable; an e-mail a local operator holds is
 * skipped; imports happen once and a rebuild is byte-identical.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "notices.h"
#include "platform_import.h"
#include "test_domain.h"

#define HOUR (3600ull * 1000000000ull)

/* A tenant id no shard here hosts (the platform checks ids only). */
#define ELSEWHERE 987654321ull

/* The keyring every shard of a deployment shares (KIROKU_KEYS), in memory:
 * a few tenants' wrapped keys. */
#define RING_SLOTS 8
struct ring {
    uint64_t tenant[RING_SLOTS];
    uint8_t wrapped[RING_SLOTS][KS_WRAPPED_LEN];
    size_t n;
};

static int ring_find(const struct ring *r, uint64_t tenant)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->tenant[i] == tenant)
            return (int)i;
    return -1;
}

static kr_err ring_get(void *ctx, uint64_t tenant, uint8_t out[KS_WRAPPED_LEN])
{
    struct ring *r = ctx;
    int i = ring_find(r, tenant);
    if (i < 0)
        return KR_ENOTFOUND;
    memcpy(out, r->wrapped[i], KS_WRAPPED_LEN);
    return KR_OK;
}

static kr_err ring_create(void *ctx, uint64_t tenant, const uint8_t w[KS_WRAPPED_LEN])
{
    struct ring *r = ctx;
    if (ring_find(r, tenant) >= 0)
        return KR_EEXIST;
    assert_true(r->n < RING_SLOTS);
    r->tenant[r->n] = tenant;
    memcpy(r->wrapped[r->n++], w, KS_WRAPPED_LEN);
    return KR_OK;
}

static kr_err ring_purge(void *ctx, uint64_t tenant)
{
    struct ring *r = ctx;
    int i = ring_find(r, tenant);
    if (i >= 0)
        r->tenant[i] = UINT64_MAX;
    return KR_OK;
}

struct fx {
    struct td *p; /* the platform shard */
    struct td *a; /* a tenant shard: the platform's KEK and keyring */
    uint64_t ta;  /* a's tenant */
    struct kr_caller ma, op;
    struct ring ring;
    struct ks_remote remote;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->remote = (struct ks_remote){&f->ring, ring_get, ring_create, ring_purge};
    f->p = td_new(31);
    f->p->shard = KR_PLATFORM_SHARD;
    td_reopen(f->p);
    assert_true(f->p->d->platform);
    ks_set_remote(f->p->d->ks, &f->remote);
    f->a = td_new_kek(32, f->p);
    ks_set_remote(f->a->d->ks, &f->remote);
    f->ta = td_signup(f->a, "owner@a.example", "correct horse 1", &f->ma, NULL);
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

static void publish(struct fx *f, uint8_t id[16])
{
    struct kr_payload *p = td_args(f->p);
    kr_set_u64(p, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_MAINTENANCE);
    kr_set_str(p, KR_FLD_TITLE, "Maintenance");
    kr_set_str(p, KR_FLD_BODY, "The service stops for an hour on Sunday.");
    kr_set_u64(p, KR_FLD_EFFECTIVE, atomic_load(&f->p->now));
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_ALL);
    assert_int_equal(td_exec(f->p, &f->op, KR_OP_NOTICES_PUBLISH), KR_OK);
    td_get_id(f->p, "notice", id);
}

/* An incident on the platform listing a's tenant and one elsewhere, both
 * notified by e-mail, then updated. */
static void incident(struct fx *f, uint8_t id[16])
{
    uint64_t ts[2] = {f->ta, ELSEWHERE}; /* increasing, as the schema wants */
    if (ts[0] > ts[1]) {
        ts[0] = ELSEWHERE;
        ts[1] = f->ta;
    }
    struct kr_payload *p = td_args(f->p);
    kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_OUTAGE);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_HIGH);
    kr_set_str(p, KR_FLD_TITLE, "API outage");
    kr_set_str(p, KR_FLD_SUMMARY, "The API did not answer for 20 minutes.");
    kr_set_u64(p, KR_FLD_DETECTED, atomic_load(&f->p->now) - HOUR);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    kr_set_tenants(p, KR_FLD_TENANTS, ts, 2);
    kr_err err = td_exec(f->p, &f->op, KR_OP_INCIDENTS_OPEN);
    if (err)
        fail_msg("open: %s (%s: %s)", kr_strerror(err), f->p->diag.field, f->p->diag.why);
    td_get_id(f->p, "incident", id);
    for (int i = 0; i < 2; i++) {
        p = td_args(f->p);
        kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
        kr_set_u64(p, KR_FLD_TENANT, ts[i]);
        kr_set_u64(p, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
        err = td_exec(f->p, &f->op, KR_OP_INCIDENTS_NOTIFY);
        if (err)
            fail_msg("notify: %s (%s: %s)", kr_strerror(err), f->p->diag.field, f->p->diag.why);
    }
    p = td_args(f->p);
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    kr_set_u64(p, KR_FLD_VERSION, 3);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_MEDIUM);
    kr_set_str(p, KR_FLD_SUMMARY, "Mostly back.");
    assert_int_equal(td_exec(f->p, &f->op, KR_OP_INCIDENTS_UPDATE), KR_OK);
}

/* Imports every importable platform record from seq `from` into a; returns
 * how many were imported; *seen counts the importable ones. */
static size_t import_all(struct fx *f, uint64_t from, size_t *seen)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = from};
    struct jrn_cursor *c;
    struct jrn_record r;
    size_t n = 0, s = 0;
    kr_err err;
    assert_int_equal(jrn_cursor_new(f->p->d->j, &q, &c), KR_OK);
    while ((err = jrn_cursor_next(c, &r)) == KR_OK) {
        if (!dom_platform_importable(&r))
            continue;
        bool imported = false;
        s++;
        err = dom_platform_import(f->a->d, &r, &imported);
        if (err)
            fail_msg("import of %llu: %s", (unsigned long long)r.seq, kr_strerror(err));
        n += imported;
    }
    assert_int_equal(err, KR_ENOTFOUND);
    jrn_cursor_free(c);
    if (seen)
        *seen = s;
    return n;
}

struct mails {
    size_t n, incident_notices, notices;
    uint64_t tenant[8];
};

static bool collect(void *arg, const struct outbox_msg *m)
{
    struct mails *ms = arg;
    if (ms->n < 8)
        ms->tenant[ms->n] = m->tenant;
    ms->n++;
    ms->incident_notices += m->template_id == KR_TEMPLATE_INCIDENT_NOTICE;
    ms->notices += m->template_id == KR_TEMPLATE_NOTICE_OF_CHANGE;
    return true;
}

static struct mails mails_of(struct td *t)
{
    struct mails ms = {0};
    assert_int_equal(outbox_pending(t->d, 0, 0, collect, &ms, NULL), KR_OK);
    return ms;
}

static uint64_t origin_of(struct td *t)
{
    uint64_t o = 99;
    assert_int_equal(dom_platform_origin(t->d, &o), KR_OK);
    return o;
}

/* The platform checks listed tenants as ids only and queues no e-mail. */
static void test_platform_shard(void **state)
{
    struct fx *f = *state;
    uint8_t n[16], i[16];
    publish(f, n);
    incident(f, i);
    struct mails ms = mails_of(f->p);
    assert_int_equal(ms.n, 0);
    size_t queued = 9;
    assert_int_equal(dom_incident_mail(f->p->d, 100 * HOUR, 0, &queued), KR_OK);
    assert_int_equal(queued, 0);
    assert_int_equal(dom_notice_mail(f->p->d, 0, &queued), KR_OK);
    assert_int_equal(queued, 0);
    assert_int_equal(origin_of(f->p), 0);
}

static void test_imports_reach_hosted_tenant(void **state)
{
    struct fx *f = *state;
    uint8_t n[16], i[16];
    size_t seen;
    publish(f, n);
    incident(f, i);
    uint64_t before = jrn_size(f->a->d->j);
    struct mails m0 = mails_of(f->a);
    /* published, opened, notified x2, updated; the one elsewhere skipped */
    assert_int_equal(import_all(f, 1, &seen), 4);
    assert_int_equal(seen, 5);
    assert_int_equal(jrn_size(f->a->d->j), before + 5); /* and the e-mail queued */
    assert_int_equal(origin_of(f->a), jrn_size(f->p->d->j));

    /* The notice: listed for the master, acknowledged on its shard. */
    td_args(f->a);
    assert_int_equal(td_exec(f->a, &f->ma, KR_OP_NOTICES_LIST), KR_OK);
    const msgpack_object *ns = td_get(f->a, "notices");
    assert_non_null(ns);
    assert_int_equal(ns->via.array.size, 1);
    kr_set_bytes(td_args(f->a), KR_FLD_NOTICE, n, 16);
    assert_int_equal(td_exec(f->a, &f->ma, KR_OP_NOTICES_ACK), KR_OK);

    /* The incident: listed for the master, with the platform's id. */
    td_args(f->a);
    assert_int_equal(td_exec(f->a, &f->ma, KR_OP_INCIDENTS_LIST), KR_OK);
    const msgpack_object *is = td_get(f->a, "incidents");
    assert_non_null(is);
    assert_int_equal(is->via.array.size, 1);
    const msgpack_object *id = td_map_get(&is->via.array.ptr[0], "incident");
    assert_non_null(id);
    assert_memory_equal(id->via.bin.ptr, i, 16);

    /* E-mails: the incident notice queued with its import, for a's tenant
     * only; the notice's owed to it and queued by the usual path. */
    struct mails m1 = mails_of(f->a);
    assert_int_equal(m1.incident_notices, m0.incident_notices + 1);
    size_t queued = 0;
    assert_int_equal(dom_notice_mail(f->a->d, 0, &queued), KR_OK);
    assert_int_equal(queued, 1);
    struct mails m2 = mails_of(f->a);
    assert_int_equal(m2.notices, m0.notices + 1);
    for (size_t k = 0; k < m2.n && k < 8; k++)
        assert_int_equal(m2.tenant[k], f->ta);
    /* the update owes the tenant e-mailed the notice its e-mail, here */
    assert_int_equal(dom_incident_mail(f->a->d, 0, 0, &queued), KR_OK);
    assert_int_equal(queued, 1);
}

static void test_imports_once(void **state)
{
    struct fx *f = *state;
    uint8_t n[16], i[16];
    publish(f, n);
    incident(f, i);
    assert_int_equal(import_all(f, 1, NULL), 4);
    uint64_t size = jrn_size(f->a->d->j);
    assert_int_equal(import_all(f, 1, NULL), 0);
    td_reopen(f->a);
    ks_set_remote(f->a->d->ks, &f->remote);
    assert_int_equal(import_all(f, 1, NULL), 0);
    assert_int_equal(jrn_size(f->a->d->j), size);
    /* new platform records after a reopen: only they come */
    publish(f, n);
    assert_int_equal(import_all(f, origin_of(f->a) + 1, NULL), 1);
    assert_int_equal(import_all(f, 1, NULL), 0);
    assert_int_equal(origin_of(f->a), jrn_size(f->p->d->j));
}

static void digests(struct td *t, uint8_t out[VIEW__COUNT][32], uint64_t n[VIEW__COUNT])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (int v = 0; v < VIEW__COUNT; v++)
        assert_int_equal(views_digest(&t->d->views, txn, (enum kr_view)v, out[v], &n[v]), KR_OK);
    mdb_txn_abort(txn);
}

static void test_rebuild_identical(void **state)
{
    struct fx *f = *state;
    uint8_t n[16], i[16];
    publish(f, n);
    incident(f, i);
    assert_int_equal(import_all(f, 1, NULL), 4);
    uint64_t origin = origin_of(f->a);
    static uint8_t before[VIEW__COUNT][32], after[VIEW__COUNT][32];
    uint64_t nb[VIEW__COUNT], na[VIEW__COUNT];
    digests(f->a, before, nb);
    assert_int_equal(jrn_views_rebuild(f->a->d->j, NULL, NULL), KR_OK);
    digests(f->a, after, na);
    for (int v = 0; v < VIEW__COUNT; v++) {
        assert_int_equal(na[v], nb[v]);
        assert_memory_equal(after[v], before[v], 32);
    }
    assert_int_equal(origin_of(f->a), origin);
    assert_int_equal(import_all(f, 1, NULL), 0);
}

/* Only the platform's notice and incident records are imported. */
static void test_other_records_refused(void **state)
{
    struct fx *f = *state;
    uint8_t n[16];
    struct jrn_record r;
    struct jrn_cursor *c;
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1};
    publish(f, n);
    uint64_t size = jrn_size(f->a->d->j);
    /* the platform's genesis record, and every record of a's own journal
     * (a tenant's; the platform's own) */
    struct jrn_recbuf b = {0};
    assert_int_equal(jrn_read(f->p->d->j, 1, &b), KR_OK);
    assert_false(dom_platform_importable(&b.rec));
    assert_int_equal(dom_platform_import(f->a->d, &b.rec, NULL), KR_EINVAL);
    assert_int_equal(jrn_cursor_new(f->a->d->j, &q, &c), KR_OK);
    size_t refused = 0;
    while (jrn_cursor_next(c, &r) == KR_OK) {
        assert_false(dom_platform_importable(&r));
        bool imported = true;
        assert_int_equal(dom_platform_import(f->a->d, &r, &imported), KR_EINVAL);
        assert_false(imported);
        refused++;
    }
    jrn_cursor_free(c);
    assert_true(refused > 5);
    /* an import is not a platform record: importing it again is refused */
    assert_int_equal(import_all(f, 1, NULL), 1);
    assert_int_equal(jrn_read(f->a->d->j, jrn_size(f->a->d->j), &b), KR_OK);
    assert_true(dom_platform_importable(&b.rec));
    assert_int_equal(dom_platform_import(f->a->d, &b.rec, NULL), KR_EINVAL);
    jrn_recbuf_fini(&b);
    assert_int_equal(jrn_size(f->a->d->j), size + 1);
}

static void platform_url(void *arg, char *out, size_t cap)
{
    (void)arg;
    snprintf(out, cap, "tcp://platform.example:7450");
}

/* On an importing shard the platform's ops answer wrong_shard, naming the
 * platform's endpoint; reads go on. */
static void test_importing_refuses_platform_ops(void **state)
{
    struct fx *f = *state;
    uint8_t n[16];
    publish(f, n);
    assert_int_equal(import_all(f, 1, NULL), 1);
    dom_set_importing(f->a->d, platform_url, NULL);
    uint64_t size = jrn_size(f->a->d->j);
    struct kr_payload *p = td_args(f->a);
    kr_set_u64(p, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_CHANGE);
    kr_set_str(p, KR_FLD_TITLE, "t");
    kr_set_str(p, KR_FLD_BODY, "b");
    kr_set_u64(p, KR_FLD_EFFECTIVE, 1);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_ALL);
    assert_int_equal(td_exec(f->a, &f->op, KR_OP_NOTICES_PUBLISH), KR_EWRONGSHARD);
    const char *w = f->a->diag.why;
    const char *url = "tcp://platform.example:7450";
    assert_true(strlen(w) > strlen(url) && strcmp(w + strlen(w) - strlen(url), url) == 0);
    kr_set_bytes(td_args(f->a), KR_FLD_INCIDENT, n, 16);
    kr_set_u64(f->a->args, KR_FLD_VERSION, 1);
    kr_set_str(f->a->args, KR_FLD_SUMMARY, "s");
    assert_int_equal(td_exec(f->a, &f->op, KR_OP_INCIDENTS_RESOLVE), KR_EWRONGSHARD);
    /* a master is still refused for its role, not told where to go */
    assert_int_equal(td_exec(f->a, &f->ma, KR_OP_INCIDENTS_RESOLVE), KR_EFORBIDDEN);
    assert_true(td_unchanged_since(f->a, size));
    td_args(f->a);
    assert_int_equal(td_exec(f->a, &f->op, KR_OP_NOTICES_ALL), KR_OK);
    assert_int_equal(td_get(f->a, "notices")->via.array.size, 1);
    assert_true(dom_op_is_platform(KR_OP_INCIDENTS_OPEN));
    assert_false(dom_op_is_platform(KR_OP_NOTICES_ACK));
}

/* ---- Operator accounts ---- */

#define OP_EMAIL "ops@platform.example"
#define OP_PW    "platform pass 1"
#define OP_PW2   "platform pass 2"

static kr_err op_login(struct td *t, const char *email, const char *pw, uint8_t token[32])
{
    struct kr_caller anon = td_anonymous();
    anon.operator_endpoint = true;
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_TENANT_CODE, KR_PLATFORM_CODE);
    kr_set_str(a, KR_FLD_EMAIL, email);
    kr_set_str(a, KR_FLD_PASSWORD, pw);
    kr_err err = td_exec(t, &anon, KR_OP_AUTH_LOGIN);
    if (!err && token) {
        const msgpack_object *o = td_get(t, "token");
        assert_non_null(o);
        assert_int_equal(o->via.bin.size, 32);
        memcpy(token, o->via.bin.ptr, 32);
    }
    return err;
}

/* The caller a token is on t (KR_EAUTH once its session is closed). */
static kr_err op_resolve(struct td *t, const uint8_t token[32], struct kr_caller *who)
{
    kr_err err = dom_session_resolve(t->d, token, who);
    dom_wait_plain(t->d);
    who->operator_endpoint = true;
    return err;
}

/* operators.password on t by the operator of token. */
static kr_err op_password(struct td *t, const uint8_t token[32], const char *pw, const char *npw)
{
    struct kr_caller who;
    assert_int_equal(op_resolve(t, token, &who), KR_OK);
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_PASSWORD, pw);
    kr_set_str(a, KR_FLD_NEW_PASSWORD, npw);
    return td_exec(t, &who, KR_OP_OPERATORS_PASSWORD);
}

static struct va_account account_of(struct td *t, const uint8_t id[16])
{
    struct va_account o;
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    kr_err err = va_account_get(&t->d->views, txn, 0, id, &o);
    mdb_txn_abort(txn);
    if (err)
        memset(&o, 0, sizeof o);
    o.role = err ? -1 : o.role;
    return o;
}

/* operators.lock, unlock or delete (op) on the platform by the operator of
 * token, naming account id at its version there. */
static void platform_op(struct fx *f, const uint8_t token[32], int op, const uint8_t id[16])
{
    struct kr_caller who;
    uint64_t version = account_of(f->p, id).version;
    assert_int_equal(op_resolve(f->p, token, &who), KR_OK);
    struct kr_payload *a = td_args(f->p);
    kr_set_bytes(a, KR_FLD_ACCOUNT, id, 16);
    kr_set_u64(a, KR_FLD_VERSION, version);
    assert_int_equal(td_exec(f->p, &who, op), KR_OK);
}

/* A plain account event on the platform, as an operator op appends it. */
static void platform_account_event(struct fx *f, int ev, const uint8_t id[16], int fld,
                                   uint64_t value)
{
    struct kr_payload *p = kr_payload_new();
    assert_non_null(p);
    kr_payload_reset(p, ev);
    kr_set_bytes(p, KR_FLD_ACCOUNT, id, 16);
    if (fld >= 0)
        kr_set_u64(p, fld, value);
    assert_int_equal(
        dom_append_plain(f->p->d, 0, "operator/0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f", p, NULL, NULL),
        KR_OK);
    kr_payload_free(p);
}

/* Imports every importable platform record from seq `from` into t, counting
 * what each did (n[DOM_IMPORT_*]). */
static void import_into(struct fx *f, struct td *t, uint64_t from, size_t n[4])
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = from};
    struct jrn_cursor *c;
    struct jrn_record r;
    kr_err err;
    memset(n, 0, 4 * sizeof n[0]);
    assert_int_equal(jrn_cursor_new(f->p->d->j, &q, &c), KR_OK);
    while ((err = jrn_cursor_next(c, &r)) == KR_OK) {
        if (!dom_platform_importable(&r))
            continue;
        enum dom_import what = DOM_IMPORT_APPENDED;
        err = dom_platform_import_record(t->d, &r, &what);
        if (err)
            fail_msg("import of %llu: %s", (unsigned long long)r.seq, kr_strerror(err));
        n[what]++;
    }
    assert_int_equal(err, KR_ENOTFOUND);
    jrn_cursor_free(c);
}

/* An operator made on the platform logs in to the shard with the platform's
 * password: its sealed fields opened and sealed again with the one tenant-0
 * key; the e-mail is found by the same MAC. */
static void test_operator_imported(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], tok[32];
    size_t n[4];
    assert_int_equal(dom_operator_create(f->p->d, OP_EMAIL, OP_PW, id), KR_OK);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, tok), KR_EAUTH); /* not yet */
    uint64_t size = jrn_size(f->a->d->j);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 1);
    assert_int_equal(n[DOM_IMPORT_UNREADABLE], 0);
    assert_int_equal(jrn_size(f->a->d->j), size + 1);
    struct jrn_recbuf b = {0};
    assert_int_equal(jrn_read(f->a->d->j, size + 1, &b), KR_OK);
    assert_true(jrn_type_is(&b.rec, "account.created"));
    assert_int_equal(b.rec.tenant, 0);
    jrn_recbuf_fini(&b);
    struct va_account o = account_of(f->a, id);
    assert_int_equal(o.role, KR_ROLE_OPERATOR);
    assert_int_equal(o.version, 1);
    assert_int_equal(origin_of(f->a), jrn_size(f->p->d->j));
    assert_int_equal(op_login(f->a, OP_EMAIL, "wrong password 1", NULL), KR_EAUTH);
    assert_int_equal(op_login(f->a, "OPS@platform.example", OP_PW, tok), KR_OK);
    assert_memory_equal(td_get(f->a, "account")->via.bin.ptr, id, 16);
    /* over the client endpoint, never */
    struct kr_caller anon = td_anonymous();
    struct kr_payload *a = td_args(f->a);
    kr_set_str(a, KR_FLD_TENANT_CODE, KR_PLATFORM_CODE);
    kr_set_str(a, KR_FLD_EMAIL, OP_EMAIL);
    kr_set_str(a, KR_FLD_PASSWORD, OP_PW);
    assert_int_equal(td_exec(f->a, &anon, KR_OP_AUTH_LOGIN), KR_EAUTH);
}

/* A password changed on the platform ends the operator's sessions on the
 * shard; the old password fails there, the new one works. */
static void test_password_change_imported(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], tp[32], ta[32], tb[32];
    struct kr_caller who;
    size_t n[4];
    assert_int_equal(dom_operator_create(f->p->d, OP_EMAIL, OP_PW, id), KR_OK);
    import_into(f, f->a, 1, n);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, ta), KR_OK);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, tb), KR_OK);
    assert_int_equal(op_login(f->p, OP_EMAIL, OP_PW, tp), KR_OK);
    assert_int_equal(op_password(f->p, tp, OP_PW, OP_PW2), KR_OK);
    uint64_t size = jrn_size(f->a->d->j);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 1);
    /* password_changed and session.closed for both sessions, in one append */
    assert_int_equal(jrn_size(f->a->d->j), size + 3);
    assert_int_equal(op_resolve(f->a, ta, &who), KR_EAUTH);
    assert_int_equal(op_resolve(f->a, tb, &who), KR_EAUTH);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, NULL), KR_EAUTH);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW2, ta), KR_OK);
    assert_int_equal(op_resolve(f->a, ta, &who), KR_OK);
    /* the shard's own version of the stream: created, password changed */
    assert_int_equal(account_of(f->a, id).version, 2);
}

/* operators.lock and operators.delete on the platform close the
 * operator's sessions on the shard; permissions follow; operators.unlock
 * lifts the lock there. */
static void test_lock_delete_imported(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], boss_id[16], boss[32], ta[32];
    struct kr_caller who;
    size_t n[4];
    assert_int_equal(dom_operator_create(f->p->d, OP_EMAIL, OP_PW, id), KR_OK);
    assert_int_equal(dom_operator_create(f->p->d, "boss@platform.example", OP_PW2, boss_id), KR_OK);
    assert_int_equal(op_login(f->p, "boss@platform.example", OP_PW2, boss), KR_OK);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 2);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, ta), KR_OK);
    platform_account_event(f, KR_EV_ACCOUNT_PERMISSIONS_GRANTED, id, KR_FLD_PERMISSIONS, 3);
    platform_account_event(f, KR_EV_ACCOUNT_PERMISSIONS_REVOKED, id, KR_FLD_PERMISSIONS, 1);
    platform_op(f, boss, KR_OP_OPERATORS_LOCK, id);
    uint64_t size = jrn_size(f->a->d->j);
    import_into(f, f->a, origin_of(f->a) + 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 3);
    assert_int_equal(jrn_size(f->a->d->j), size + 4); /* and the session closed */
    struct va_account o = account_of(f->a, id);
    assert_int_equal(o.perms, 2);
    assert_true(o.locked);
    assert_int_equal(o.lock_reason, KR_LOCK_REASON_OPERATOR);
    assert_int_equal(op_resolve(f->a, ta, &who), KR_EAUTH);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, NULL), KR_ELOCKED);
    platform_op(f, boss, KR_OP_OPERATORS_UNLOCK, id);
    import_into(f, f->a, origin_of(f->a) + 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 1);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, ta), KR_OK);
    platform_op(f, boss, KR_OP_OPERATORS_DELETE, id);
    size = jrn_size(f->a->d->j);
    import_into(f, f->a, origin_of(f->a) + 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 1);
    assert_int_equal(jrn_size(f->a->d->j), size + 2);
    assert_int_equal(account_of(f->a, id).role, -1);
    assert_int_equal(op_resolve(f->a, ta, &who), KR_EAUTH);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, NULL), KR_EAUTH);
}

/* Lockouts after failed logins are per endpoint: the platform's is not
 * imported, the shard's stays on the shard (the imports go on at its
 * version of the stream), and an imported unlock lifts it. An unlock with
 * nothing locked here is skipped. */
static void test_failure_lockouts_stay_local(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], tp[32];
    size_t n[4];
    assert_int_equal(dom_operator_create(f->p->d, OP_EMAIL, OP_PW, id), KR_OK);
    import_into(f, f->a, 1, n);
    /* the platform's lockout: wrong current passwords on account.password */
    assert_int_equal(op_login(f->p, OP_EMAIL, OP_PW, tp), KR_OK);
    for (unsigned i = 0; i + 1 < KR_LOGIN_FAILURES_MAX; i++)
        assert_int_equal(op_password(f->p, tp, "wrong password 1", OP_PW2), KR_EAUTH);
    assert_int_equal(op_password(f->p, tp, "wrong password 1", OP_PW2), KR_ELOCKED);
    assert_true(account_of(f->p, id).locked);
    uint64_t size = jrn_size(f->a->d->j);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 0);
    assert_int_equal(jrn_size(f->a->d->j), size);
    assert_false(account_of(f->a, id).locked);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, NULL), KR_OK);
    /* the shard's own lockout */
    for (unsigned i = 0; i < KR_LOGIN_FAILURES_MAX; i++)
        assert_int_equal(op_login(f->a, OP_EMAIL, "wrong password 2", NULL), KR_EAUTH);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, NULL), KR_ELOCKED);
    struct va_account o = account_of(f->a, id);
    assert_true(o.locked);
    assert_int_equal(o.lock_reason, KR_LOCK_REASON_FAILURES);
    /* a grant on the platform lands at the shard's version, the lock kept */
    platform_account_event(f, KR_EV_ACCOUNT_PERMISSIONS_GRANTED, id, KR_FLD_PERMISSIONS, 1);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 1);
    assert_int_equal(account_of(f->a, id).version, o.version + 1);
    assert_true(account_of(f->a, id).locked);
    /* the platform's unlock lifts the shard's lock too */
    platform_account_event(f, KR_EV_ACCOUNT_UNLOCKED, id, -1, 0);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 1);
    assert_false(account_of(f->a, id).locked);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, NULL), KR_OK);
    /* a second unlock: nothing locked here, skipped */
    platform_account_event(f, KR_EV_ACCOUNT_UNLOCKED, id, -1, 0);
    size = jrn_size(f->a->d->j);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 0);
    assert_int_equal(jrn_size(f->a->d->j), size);
}

/* A shard whose tenant-0 key is not the platform's (another KEK, no
 * keyring): its records do not open, so they are skipped and say so, with
 * or without a key of the shard's own; the account's later records are of
 * an account never created there. */
static void test_other_key_unreadable(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], tp[32];
    size_t n[4];
    struct td *b = td_new(33);
    assert_int_equal(dom_operator_create(f->p->d, OP_EMAIL, OP_PW, id), KR_OK);
    assert_int_equal(op_login(f->p, OP_EMAIL, OP_PW, tp), KR_OK);
    assert_int_equal(op_password(f->p, tp, OP_PW, OP_PW2), KR_OK);
    platform_account_event(f, KR_EV_ACCOUNT_LOCKED, id, KR_FLD_LOCK_REASON,
                           KR_LOCK_REASON_OPERATOR);
    uint64_t size = jrn_size(b->d->j);
    import_into(f, b, 1, n);                       /* b has no tenant-0 key */
    assert_int_equal(n[DOM_IMPORT_UNREADABLE], 2); /* created, password changed */
    assert_int_equal(n[DOM_IMPORT_APPENDED], 0);
    assert_int_equal(n[DOM_IMPORT_NONE], 1); /* the lock: never created there */
    struct kr_data_key k;
    assert_int_equal(ks_get_or_create(b->d->ks, 0, &b->rng, &k), KR_OK);
    kr_data_key_wipe(&k);
    import_into(f, b, 1, n); /* b's own tenant-0 key */
    assert_int_equal(n[DOM_IMPORT_UNREADABLE], 2);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 0);
    assert_int_equal(jrn_size(b->d->j), size);
    assert_int_equal(op_login(b, OP_EMAIL, OP_PW, NULL), KR_EAUTH);
    td_free(b);
}

/* An operator whose e-mail a local operator of the shard holds is not
 * imported: the local one keeps its password; the platform account's later
 * records are skipped as never created here. */
static void test_email_held_locally(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], local[16], tp[32];
    size_t n[4];
    assert_int_equal(dom_operator_create(f->p->d, OP_EMAIL, OP_PW, id), KR_OK);
    assert_int_equal(dom_operator_create(f->a->d, "Ops@Platform.example", "local pass 77", local),
                     KR_OK);
    assert_int_equal(op_login(f->p, OP_EMAIL, OP_PW, tp), KR_OK);
    assert_int_equal(op_password(f->p, tp, OP_PW, OP_PW2), KR_OK);
    uint64_t size = jrn_size(f->a->d->j);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_EMAIL_HELD], 1);
    assert_int_equal(n[DOM_IMPORT_NONE], 1);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 0);
    assert_int_equal(jrn_size(f->a->d->j), size);
    assert_int_equal(account_of(f->a, id).role, -1);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW2, NULL), KR_EAUTH);
    assert_int_equal(op_login(f->a, OP_EMAIL, "local pass 77", NULL), KR_OK);
    assert_memory_equal(td_get(f->a, "account")->via.bin.ptr, local, 16);
}

/* Operator accounts are imported once (again, after a reopen), and a
 * rebuild of the shard's views is byte-identical. */
static void test_accounts_once_and_rebuilt(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], tp[32], ta[32];
    size_t n[4];
    assert_int_equal(dom_operator_create(f->p->d, OP_EMAIL, OP_PW, id), KR_OK);
    import_into(f, f->a, 1, n);
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW, ta), KR_OK);
    assert_int_equal(op_login(f->p, OP_EMAIL, OP_PW, tp), KR_OK);
    assert_int_equal(op_password(f->p, tp, OP_PW, OP_PW2), KR_OK);
    platform_account_event(f, KR_EV_ACCOUNT_LOCKED, id, KR_FLD_LOCK_REASON,
                           KR_LOCK_REASON_OPERATOR);
    platform_account_event(f, KR_EV_ACCOUNT_UNLOCKED, id, -1, 0);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 3);
    uint64_t size = jrn_size(f->a->d->j);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 0);
    td_reopen(f->a);
    ks_set_remote(f->a->d->ks, &f->remote);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 0);
    assert_int_equal(jrn_size(f->a->d->j), size);
    /* a record already imported is refused by the views, whoever appends it */
    struct jrn_recbuf b = {0};
    assert_int_equal(jrn_read(f->a->d->j, size, &b), KR_OK);
    assert_true(jrn_type_is(&b.rec, "account.unlocked"));
    jrn_recbuf_fini(&b);
    static uint8_t before[VIEW__COUNT][32], after[VIEW__COUNT][32];
    uint64_t nb[VIEW__COUNT], na[VIEW__COUNT];
    digests(f->a, before, nb);
    assert_int_equal(jrn_views_rebuild(f->a->d->j, NULL, NULL), KR_OK);
    digests(f->a, after, na);
    for (int v = 0; v < VIEW__COUNT; v++) {
        assert_int_equal(na[v], nb[v]);
        assert_memory_equal(after[v], before[v], 32);
    }
    assert_int_equal(op_login(f->a, OP_EMAIL, OP_PW2, NULL), KR_OK);
    import_into(f, f->a, 1, n);
    assert_int_equal(n[DOM_IMPORT_APPENDED], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_platform_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_imports_reach_hosted_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_imports_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_records_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_importing_refuses_platform_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_imported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_change_imported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_delete_imported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_lockouts_stay_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_key_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_email_held_locally, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accounts_once_and_rebuilt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
