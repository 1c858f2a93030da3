/*
 * views.c: the view databases, the hooks the journal calls, tenant erasure
 * and digests (see views.h). Each area's rows are applied by its own module
 * (v_tenants.c, v_accounts.c, v_contacts.c, v_notices.c).
 */
#include "views.h"

#include "endian_be.h"
#include "hash.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define META_APPLIED  "applied"
#define META_FORMAT   "format"
#define META_PLATFORM "platform"
/* The views' layout. Bump it when a view is added or its rows change:
 * a writable open of views in an older layout drops them and the journal's
 * catch-up rebuilds them from seq 1 (an upgrade needs no `kiroku replay`).
 * 2: sign-in streams, incident e-mail and alert views, expired applications.
 * 3: incident read acknowledgements (v.incident_acks). */
#define VIEWS_FORMAT 3u

static const char *const view_names[VIEW__COUNT] = {
    [VIEW_META] = "v.meta",
    [VIEW_TENANTS] = "v.tenants",
    [VIEW_TENANT_CODES] = "v.tenant_codes",
    [VIEW_SIGNUPS] = "v.signups",
    [VIEW_ACCOUNTS] = "v.accounts",
    [VIEW_ACCOUNT_EMAILS] = "v.account_emails",
    [VIEW_SESSIONS] = "v.sessions",
    [VIEW_SESSION_IDS] = "v.session_ids",
    [VIEW_ACCOUNT_SESSIONS] = "v.account_sessions",
    [VIEW_CONTACTS] = "v.contacts",
    [VIEW_CONTACT_TAGS] = "v.contact_tags",
    [VIEW_TAG_CONTACTS] = "v.tag_contacts",
    [VIEW_TAGS] = "v.tags",
    [VIEW_TAG_NAMES] = "v.tag_names",
    [VIEW_ATTRIBUTES] = "v.attributes",
    [VIEW_ATTRIBUTE_KEYS] = "v.attribute_keys",
    [VIEW_ATTRIBUTE_VALUES] = "v.attribute_values",
    [VIEW_NOTICES] = "v.notices",
    [VIEW_NOTICE_TENANTS] = "v.notice_tenants",
    [VIEW_NOTICE_ACKS] = "v.notice_acks",
    [VIEW_NOTICE_MAIL] = "v.notice_mail",
    [VIEW_INCIDENTS] = "v.incidents",
    [VIEW_INCIDENT_TENANTS] = "v.incident_tenants",
    [VIEW_INCIDENT_DUE] = "v.incident_due",
    [VIEW_INCIDENT_EMAILED] = "v.incident_emailed",
    [VIEW_INCIDENT_MAIL] = "v.incident_mail",
    [VIEW_INCIDENT_ACKS] = "v.incident_acks",
    [VIEW_REPORTS] = "v.reports",
    [VIEW_OUTBOX] = "v.outbox",
    [VIEW_OUTBOX_PENDING] = "v.outbox_pending",
    [VIEW_ALERTS] = "v.alerts",
    [VIEW_ALERT_IDS] = "v.alert_ids",
    [VIEW_ALERT_TENANTS] = "v.alert_tenants",
    [VIEW_ALERT_LAST] = "v.alert_last",
};

const char *views_name(enum kr_view v)
{
    return (unsigned)v < VIEW__COUNT ? view_names[v] : "?";
}

/* Events that only the audit view (the journal's tenant index) shows. */
static kr_err va_audit_only(const struct va *a)
{
    (void)a;
    return KR_OK;
}

/* Which area applies each event: the event's name prefix decides, so a new
 * event of an existing area needs no change here. */
static va_fn area_by_prefix(int ev)
{
    const char *n = kr_events[ev].name;
    static const struct {
        const char *prefix;
        va_fn fn;
    } areas[] = {
        {"signup.", va_tenants},
        {"tenant.", va_tenants},
        {"account.", va_accounts},
        {"session.", va_accounts},
        {"contact.", va_contacts},
        {"tag.", va_contacts},
        {"attribute.", va_contacts},
        {"notice.", va_notices},
        {"incident.", va_notices},
        {"outbox.", va_notices},
        {"access.", va_audit_only},
        {"login.", va_audit_only},
        /* the platform's own history: serve starts, operator work, backups,
         * log truncations */
        {"serve.", va_audit_only},
        {"maintenance.", va_audit_only},
        {"backup.", va_audit_only},
        {"retention.", va_audit_only},
        {"audit.", va_audit_only},
        {"alert.", va_alerts},
        {"utility.", va_audit_only},
    };
    for (size_t i = 0; i < sizeof areas / sizeof areas[0]; i++)
        if (strncmp(n, areas[i].prefix, strlen(areas[i].prefix)) == 0)
            return areas[i].fn;
    return NULL;
}

/* area_by_prefix for every event, worked out once (it runs per record). */
static va_fn area_table[KR_EV__COUNT];
static pthread_once_t area_once = PTHREAD_ONCE_INIT;

static void area_init(void)
{
    for (int ev = 0; ev < KR_EV__COUNT; ev++)
        area_table[ev] = area_by_prefix(ev);
}

static va_fn area_of(int ev)
{
    pthread_once(&area_once, area_init);
    return area_table[ev];
}

/* ---- Small helpers ---- */

void vk_init(struct vkey *k)
{
    k->n = 0;
}

void vk_bytes(struct vkey *k, const void *p, size_t n)
{
    KR_ASSERT(n <= sizeof k->b - k->n);
    memcpy(k->b + k->n, p, n);
    k->n += n;
}

void vk_u64(struct vkey *k, uint64_t x)
{
    KR_ASSERT(k->n + 8 <= sizeof k->b);
    v_put_u64(k->b + k->n, x);
    k->n += 8;
}

void vk_u16(struct vkey *k, uint16_t x)
{
    uint8_t b[2];
    kr_put_be16(b, x);
    vk_bytes(k, b, 2);
}

void vk_val(struct vkey *k, const struct kr_value *v)
{
    KR_ASSERT(v->set);
    vk_bytes(k, v->p, v->n);
}

kr_err v_put(const struct va *a, enum kr_view db, const struct vkey *k, const void *val, size_t len)
{
    MDB_val kv = {k->n, (void *)k->b}, vv = {len, (void *)val};
    return kr_err_from_mdb(mdb_put(a->txn, a->v->db[db], &kv, &vv, 0));
}

kr_err v_del(const struct va *a, enum kr_view db, const struct vkey *k)
{
    MDB_val kv = {k->n, (void *)k->b};
    int rc = mdb_del(a->txn, a->v->db[db], &kv, NULL);
    return rc == MDB_NOTFOUND ? KR_OK : kr_err_from_mdb(rc);
}

kr_err v_get(struct kr_views *v, MDB_txn *txn, enum kr_view db, const struct vkey *k, MDB_val *out)
{
    MDB_val kv = {k->n, (void *)k->b};
    int rc = mdb_get(txn, v->db[db], &kv, out);
    return rc == MDB_NOTFOUND ? KR_ENOTFOUND : kr_err_from_mdb(rc);
}

kr_err v_del_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t n)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc)
        return kr_err_from_mdb(rc);
    MDB_val k = {n, (void *)prefix}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS && k.mv_size >= n && memcmp(k.mv_data, prefix, n) == 0) {
        if ((rc = mdb_cursor_del(c, 0)))
            break;
        rc = mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT);
        if (rc == MDB_NOTFOUND || rc == EINVAL) /* deleted the last entry */
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? KR_OK : kr_err_from_mdb(rc);
}

/* ---- Corruption reports ---- */

kr_err views_corrupt(enum kr_view v, const void *key, size_t klen, const char *why,
                     struct kr_diag *diag)
{
    struct kr_diag local;
    char hex[2 * 32 + 1];
    const uint8_t *k = key;
    size_t n = klen < 32 ? klen : 32;
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", k[i]);
    hex[2 * n] = '\0';
    if (!diag)
        diag = &local;
    snprintf(diag->field, sizeof diag->field, "view %s", views_name(v));
    snprintf(diag->why, sizeof diag->why, "key %s%s: %s", hex, klen > n ? "..." : "",
             why ? why : "does not decode");
    fprintf(stderr, "kiroku: corrupt stored data: %s: %s\n", diag->field, diag->why);
    return KR_ECORRUPT;
}

kr_err views_corrupt_record(uint64_t seq, const char *event, const char *why, struct kr_diag *diag)
{
    struct kr_diag local;
    if (!diag)
        diag = &local;
    snprintf(diag->field, sizeof diag->field, "record %llu", (unsigned long long)seq);
    snprintf(diag->why, sizeof diag->why, "%.40s: %s", event ? event : "?",
             why ? why : "does not decode");
    fprintf(stderr, "kiroku: corrupt stored data: %s: %s\n", diag->field, diag->why);
    return KR_ECORRUPT;
}

/* ---- The journal's hooks ---- */

static kr_err hook_batch_end(void *ctx, MDB_txn *txn, uint64_t size);
static kr_err hook_drop(void *ctx, MDB_txn *txn);

static kr_err hook_open(void *ctx, MDB_txn *txn, bool create)
{
    struct kr_views *v = ctx;
    for (int i = 0; i < VIEW__COUNT; i++) {
        int rc = mdb_dbi_open(txn, view_names[i], create ? MDB_CREATE : 0, &v->db[i]);
        if (rc)
            return rc == MDB_NOTFOUND ? KR_ENOTFOUND : kr_err_from_mdb(rc);
    }
    if (!create)
        return KR_OK;
    MDB_val k = {sizeof META_FORMAT - 1, (void *)META_FORMAT}, val;
    int rc = mdb_get(txn, v->db[VIEW_META], &k, &val);
    if (rc && rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    if (rc == 0 && val.mv_size != 4)
        return views_corrupt(VIEW_META, META_FORMAT, sizeof META_FORMAT - 1,
                             "the format is not 4 bytes", &v->corrupt);
    uint32_t have = rc == 0 ? kr_get_be32(val.mv_data) : VIEWS_FORMAT;
    if (have > VIEWS_FORMAT)
        return KR_EVERSION; /* written by a newer kiroku */
    if (have < VIEWS_FORMAT) {
        /* An older layout: empty every view and mark nothing applied, so the
         * journal's catch-up at this open rebuilds them all. */
        fprintf(stderr, "kiroku: views in format %u: rebuilding them in format %u\n", have,
                VIEWS_FORMAT);
        kr_err err = hook_drop(v, txn);
        if (err || (err = hook_batch_end(v, txn, 0)))
            return err;
    }
    if (rc == MDB_NOTFOUND || have != VIEWS_FORMAT) {
        uint8_t f[4];
        kr_put_be32(f, VIEWS_FORMAT);
        val = (MDB_val){4, f};
        if ((rc = mdb_put(txn, v->db[VIEW_META], &k, &val, 0)))
            return kr_err_from_mdb(rc);
    }
    return KR_OK;
}

static kr_err hook_applied(void *ctx, MDB_txn *txn, uint64_t *size)
{
    struct kr_views *v = ctx;
    MDB_val k = {sizeof META_APPLIED - 1, (void *)META_APPLIED}, val;
    int rc = mdb_get(txn, v->db[VIEW_META], &k, &val);
    if (rc == MDB_NOTFOUND) {
        *size = 0;
        return KR_OK;
    }
    if (rc)
        return kr_err_from_mdb(rc);
    if (val.mv_size != 8)
        return views_corrupt(VIEW_META, META_APPLIED, sizeof META_APPLIED - 1,
                             "the applied size is not 8 bytes", &v->corrupt);
    *size = v_get_u64(val.mv_data);
    return KR_OK;
}

static kr_err hook_batch_end(void *ctx, MDB_txn *txn, uint64_t size)
{
    struct kr_views *v = ctx;
    uint8_t b[8];
    v_put_u64(b, size);
    MDB_val k = {sizeof META_APPLIED - 1, (void *)META_APPLIED}, val = {8, b};
    return kr_err_from_mdb(mdb_put(txn, v->db[VIEW_META], &k, &val, 0));
}

static kr_err hook_drop(void *ctx, MDB_txn *txn)
{
    struct kr_views *v = ctx;
    /* The platform origin is content (the imports' apply sets it): a
     * rebuild sets it again. */
    MDB_val pk = {sizeof META_PLATFORM - 1, (void *)META_PLATFORM};
    int prc = mdb_del(txn, v->db[VIEW_META], &pk, NULL);
    if (prc && prc != MDB_NOTFOUND)
        return kr_err_from_mdb(prc);
    for (int i = 0; i < VIEW__COUNT; i++) {
        if (i == VIEW_META)
            continue;
        int rc = mdb_drop(txn, v->db[i], 0);
        if (rc)
            return kr_err_from_mdb(rc);
    }
    return KR_OK;
}

kr_err views_platform_origin(struct kr_views *v, MDB_txn *txn, uint64_t *origin)
{
    MDB_val k = {sizeof META_PLATFORM - 1, (void *)META_PLATFORM}, val;
    int rc = mdb_get(txn, v->db[VIEW_META], &k, &val);
    *origin = 0;
    if (rc == MDB_NOTFOUND)
        return KR_OK;
    if (rc)
        return kr_err_from_mdb(rc);
    if (val.mv_size != 8)
        return views_corrupt(VIEW_META, META_PLATFORM, sizeof META_PLATFORM - 1,
                             "the platform origin is not 8 bytes", &v->corrupt);
    *origin = v_get_u64(val.mv_data);
    return KR_OK;
}

kr_err va_platform_origin(const struct va *a)
{
    const struct kr_value *o = &a->p->v[KR_FLD_ORIGIN];
    uint64_t have;
    kr_err err;
    if (!o->set)
        return KR_OK;
    if ((err = views_platform_origin(a->v, a->txn, &have)))
        return err;
    if (o->u <= have)
        return KR_ECONFLICT;
    uint8_t b[8];
    v_put_u64(b, o->u);
    MDB_val k = {sizeof META_PLATFORM - 1, (void *)META_PLATFORM}, val = {8, b};
    return kr_err_from_mdb(mdb_put(a->txn, a->v->db[VIEW_META], &k, &val, 0));
}

/* Views whose keys start with the tenant id. */
static const enum kr_view tenant_views[] = {
    VIEW_SIGNUPS,
    VIEW_ACCOUNTS,
    VIEW_ACCOUNT_EMAILS,
    VIEW_SESSION_IDS,
    VIEW_ACCOUNT_SESSIONS,
    VIEW_CONTACTS,
    VIEW_CONTACT_TAGS,
    VIEW_TAG_CONTACTS,
    VIEW_TAGS,
    VIEW_TAG_NAMES,
    VIEW_ATTRIBUTES,
    VIEW_ATTRIBUTE_KEYS,
    VIEW_ATTRIBUTE_VALUES,
    VIEW_NOTICE_TENANTS,
    VIEW_NOTICE_ACKS,
    VIEW_INCIDENT_TENANTS,
    VIEW_REPORTS,
    VIEW_OUTBOX,
    /* e-mails owed to it: a rebuild, which skips its stripped outbox.queued
     * records, would otherwise still owe them */
    VIEW_NOTICE_MAIL,
    VIEW_INCIDENT_MAIL,
};

/* Deletes the entries of db whose key (at key_off) or value (at val_off)
 * holds tenant as a u64; -1 = not that part. For the few global views that
 * name tenants inside their keys or values; they are small (pending work). */
static kr_err drop_matching(MDB_txn *txn, MDB_dbi dbi, uint64_t tenant, int key_off, int val_off)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc)
        return kr_err_from_mdb(rc);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;) {
        bool hit = (key_off >= 0 && k.mv_size >= (size_t)key_off + 8 &&
                    v_get_u64((const uint8_t *)k.mv_data + key_off) == tenant) ||
                   (val_off >= 0 && v.mv_size >= (size_t)val_off + 8 &&
                    v_get_u64((const uint8_t *)v.mv_data + val_off) == tenant);
        if (hit) {
            if ((rc = mdb_cursor_del(c, 0)))
                break;
            rc = mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT);
            if (rc == EINVAL)
                rc = MDB_NOTFOUND;
            continue;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? KR_OK : kr_err_from_mdb(rc);
}

/* tenant.erased: every row of the tenant goes, in every view (the area
 * module keeps what it documents, such as a bare "erased" tenant row). */
static kr_err erase_tenant(struct kr_views *v, MDB_txn *txn, uint64_t tenant)
{
    uint8_t prefix[8];
    kr_err err;
    v_put_u64(prefix, tenant);
    if ((err = va_notices_erase(v, txn, tenant)))
        return err;
    for (size_t i = 0; i < sizeof tenant_views / sizeof tenant_views[0]; i++)
        if ((err = v_del_prefix(txn, v->db[tenant_views[i]], prefix, 8)))
            return err;
    /* incident_due: deadline(8)|incident(16)|tenant(8); outbox_pending: seq -> tenant|message */
    if ((err = drop_matching(txn, v->db[VIEW_INCIDENT_DUE], tenant, 24, -1)) ||
        (err = drop_matching(txn, v->db[VIEW_OUTBOX_PENDING], tenant, -1, 0)))
        return err;
    return KR_OK;
}

/* Applies record r. stored: r was in the journal already (catch-up,
 * rebuild), so a record the views cannot apply is corruption, reported with
 * its seq; otherwise (an append) KR_EINVAL / KR_ECONFLICT refuse the append. */
static kr_err apply_record(struct kr_views *v, MDB_txn *txn, const struct jrn_record *r,
                           bool stored)
{
    int ev = kr_event_lookup(r->type, r->type_len);
    if (ev < 0) {
        v->unknown_types++; /* the journal's own records, or types of a newer schema */
        return KR_OK;
    }
    kr_err err;
    if (r->payload_stripped) /* an erased tenant's record: its rows are gone with the tenant */
        return ev == KR_EV_TENANT_CANCELLED && r->tenant != 0
                   ? va_tenant_cancelled_stripped(v, txn, r)
                   : va_account_stripped(v, txn, r); /* or a log: its account version counts */
    /* Plain fields only: apply never needs personal data. */
    struct kr_diag d = {{0}, {0}};
    if ((err = kr_event_decode(ev, r, NULL, v->scratch, &d))) {
        if (!stored)
            return KR_EINVAL; /* an append whose payload changed: refuse it */
        char why[sizeof d.why];
        snprintf(why, sizeof why, "does not decode: %.38s%s%.100s", d.field, d.field[0] ? ": " : "",
                 d.why);
        return views_corrupt_record(r->seq, kr_events[ev].name, why, &v->corrupt);
    }
    if (kr_events[ev].platform && r->tenant != 0)
        return stored ? views_corrupt_record(r->seq, kr_events[ev].name,
                                             "a platform event with a tenant", &v->corrupt)
                      : KR_EINVAL;
    va_fn fn = area_of(ev);
    KR_ASSERT(fn != NULL); /* views_test checks every event has an area */
    struct va a = {.v = v, .txn = txn, .r = r, .p = v->scratch, .ev = ev};
    if ((err = fn(&a))) {
        if (stored && (err == KR_EINVAL || err == KR_ECONFLICT))
            return views_corrupt_record(r->seq, kr_events[ev].name,
                                        "the views cannot apply it to what came before",
                                        &v->corrupt);
        return err;
    }
    return ev == KR_EV_TENANT_ERASED || ev == KR_EV_SIGNUP_EXPIRED ? erase_tenant(v, txn, r->tenant)
                                                                   : KR_OK;
}

static kr_err hook_apply(void *ctx, MDB_txn *txn, const struct jrn_record *r)
{
    return apply_record(ctx, txn, r, false);
}

static kr_err hook_apply_stored(void *ctx, MDB_txn *txn, const struct jrn_record *r)
{
    return apply_record(ctx, txn, r, true);
}

kr_err views_init(struct kr_views *v)
{
    memset(v, 0, sizeof *v);
    v->scratch = kr_payload_new();
    if (!v->scratch)
        return KR_ENOMEM;
    v->hooks = (struct jrn_views){
        .ctx = v,
        .open = hook_open,
        .apply = hook_apply,
        .apply_stored = hook_apply_stored,
        .batch_end = hook_batch_end,
        .applied = hook_applied,
        .drop = hook_drop,
    };
    return KR_OK;
}

void views_fini(struct kr_views *v)
{
    if (!v)
        return;
    kr_payload_free(v->scratch);
    v->scratch = NULL;
}

const struct jrn_views *views_hooks(struct kr_views *v)
{
    return &v->hooks;
}

bool views_event_has_area(int ev)
{
    return area_of(ev) != NULL;
}

kr_err views_digest(struct kr_views *v, MDB_txn *txn, enum kr_view which, uint8_t out[32],
                    uint64_t *entries)
{
    struct kr_sha256_ctx sha;
    MDB_cursor *c;
    MDB_val k, val;
    uint64_t n = 0;
    int rc = mdb_cursor_open(txn, v->db[which], &c);
    if (rc)
        return kr_err_from_mdb(rc);
    kr_sha256_init(&sha);
    for (rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
        if (which == VIEW_META && k.mv_size == sizeof META_APPLIED - 1 &&
            memcmp(k.mv_data, META_APPLIED, k.mv_size) == 0)
            continue; /* how far views got is bookkeeping, not content */
        uint8_t l[4];
        for (int i = 0; i < 2; i++) {
            MDB_val *m = i == 0 ? &k : &val;
            kr_put_be32(l, (uint32_t)m->mv_size);
            kr_sha256_update(&sha, l, 4);
            kr_sha256_update(&sha, m->mv_data, m->mv_size);
        }
        n++;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    kr_sha256_final(&sha, out);
    if (entries)
        *entries = n;
    return KR_OK;
}
