/*
 * v_tenants.c: the tenant and sign-up views (signup.* and tenant.* events).
 *
 * Row layouts (integers big-endian):
 *
 *   v.tenants       tenant -> state(1: enum tenant_state) | version(8: the
 *                   "tenant" stream's, 0 before provisioned) | application(16)
 *                   | cancelled(8: UTC ns, 0 = not) | provisioned_seq(8: the
 *                   tenant.provisioned record, which holds the sealed name; 0
 *                   = none) | code_len(1) | code
 *                   A tenant id is reserved by signup.applied (state applied),
 *                   so a second application drawing the same id is refused.
 *   v.tenant_codes  code -> tenant(8). Global: the code is what a login names
 *                   (not personal: generated, "t" + 9 of [a-z0-9]).
 *   v.signups       tenant|application -> state(1: enum va_signup_state) |
 *                   version(8: the signup stream's) | applied_seq(8: the
 *                   signup.applied record, which holds the sealed e-mail) |
 *                   expires(8: the current code's, 0 = none) | tries_left(1) |
 *                   code_hash(32: zeros when none)
 *                   0(8)|application -> tenant(8): the platform's index of
 *                   applications, which the operator and the applicant name
 *                   by id alone (tenant 0 is the platform, so the key still
 *                   starts with the id of whom the row belongs to).
 *
 * Constraints re-checked here (KR_ECONFLICT rejects the append and the
 * handler decides again): a reserved tenant id, an application id, a tenant
 * code already taken.
 *
 * tenant.erased (and signup.expired, an unconfirmed application's erasure)
 * drops every row of the tenant in the tenant, sign-up,
 * account and session views (and the global entries pointing at it: code,
 * application index, session tokens) and leaves a bare row in state erased.
 * A rebuild skips the stripped records of an erased tenant and then applies
 * tenant.erased the same way, so both give the same bytes. One stripped
 * record still counts: tenant.cancelled (header only) makes the tenant
 * "cancelled" (from the record's time), so a tenant whose erasure stopped
 * after its payloads were stripped and before tenant.erased (a crash) stays
 * due after a rebuild (va_tenant_cancelled_stripped).
 */
#include "accounts.h"

#include <string.h>

#define TROW_FIXED (1 + 8 + 16 + 8 + 8 + 1)
#define SROW_LEN   (1 + 8 + 8 + 8 + 1 + 32)
/* v.tenants rows hold the code's length in one byte. */
_Static_assert(KR_TENANT_CODE_MAX <= UINT8_MAX, "v.tenants: code_len is one byte");

static void tkey(struct vkey *k, uint64_t tenant)
{
    vk_init(k);
    vk_u64(k, tenant);
}

static void skey(struct vkey *k, uint64_t tenant, const uint8_t app[16])
{
    vk_init(k);
    vk_u64(k, tenant);
    vk_bytes(k, app, 16);
}

/* ---- Readers ---- */

static kr_err tenant_decode(const MDB_val *val, struct va_tenant *t)
{
    const uint8_t *b = val->mv_data;
    memset(t, 0, sizeof *t);
    if (val->mv_size < TROW_FIXED || val->mv_size != TROW_FIXED + (size_t)b[TROW_FIXED - 1] ||
        b[TROW_FIXED - 1] > KR_TENANT_CODE_MAX)
        return KR_ECORRUPT;
    t->state = b[0];
    t->version = v_get_u64(b + 1);
    memcpy(t->application, b + 9, 16);
    t->cancelled = v_get_u64(b + 25);
    t->provisioned_seq = v_get_u64(b + 33);
    t->code_len = b[41];
    memcpy(t->code, b + 42, t->code_len);
    t->code[t->code_len] = 0;
    return KR_OK;
}

static kr_err tenant_put(const struct va *a, uint64_t tenant, const struct va_tenant *t)
{
    uint8_t b[TROW_FIXED + KR_TENANT_CODE_MAX];
    struct vkey k;
    KR_ASSERT(t->code_len <= KR_TENANT_CODE_MAX);
    b[0] = (uint8_t)t->state;
    v_put_u64(b + 1, t->version);
    memcpy(b + 9, t->application, 16);
    v_put_u64(b + 25, t->cancelled);
    v_put_u64(b + 33, t->provisioned_seq);
    b[41] = (uint8_t)t->code_len;
    memcpy(b + 42, t->code, t->code_len);
    tkey(&k, tenant);
    return v_put(a, VIEW_TENANTS, &k, b, TROW_FIXED + t->code_len);
}

kr_err va_tenant_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant, struct va_tenant *out)
{
    struct vkey k;
    MDB_val val;
    tkey(&k, tenant);
    kr_err err = v_get(v, txn, VIEW_TENANTS, &k, &val);
    return err ? err : tenant_decode(&val, out);
}

kr_err va_tenant_next(struct kr_views *v, MDB_txn *txn, uint64_t after, uint64_t *tenant,
                      struct va_tenant *out)
{
    if (after == UINT64_MAX)
        return KR_ENOTFOUND;
    struct vkey k;
    tkey(&k, after + 1);
    MDB_cursor *mc;
    int rc = mdb_cursor_open(txn, v->db[VIEW_TENANTS], &mc);
    if (rc)
        return kr_err_from_mdb(rc);
    MDB_val key = {k.n, k.b}, val;
    rc = mdb_cursor_get(mc, &key, &val, MDB_SET_RANGE);
    kr_err err = KR_OK;
    if (rc == MDB_NOTFOUND)
        err = KR_ENOTFOUND;
    else if (rc)
        err = kr_err_from_mdb(rc);
    else if (key.mv_size != 8)
        err = KR_ECORRUPT;
    else
        *tenant = v_get_u64(key.mv_data);
    if (!err)
        err = tenant_decode(&val, out);
    mdb_cursor_close(mc);
    return err;
}

kr_err va_tenant_by_code(struct kr_views *v, MDB_txn *txn, const void *code, size_t len,
                         uint64_t *tenant)
{
    struct vkey k;
    MDB_val val;
    if (len == 0 || len > KR_TENANT_CODE_MAX)
        return KR_ENOTFOUND;
    vk_init(&k);
    vk_bytes(&k, code, len);
    kr_err err = v_get(v, txn, VIEW_TENANT_CODES, &k, &val);
    if (err)
        return err;
    if (val.mv_size != 8)
        return KR_ECORRUPT;
    *tenant = v_get_u64(val.mv_data);
    return KR_OK;
}

kr_err va_signup_tenant(struct kr_views *v, MDB_txn *txn, const uint8_t application[16],
                        uint64_t *tenant)
{
    struct vkey k;
    MDB_val val;
    skey(&k, 0, application);
    kr_err err = v_get(v, txn, VIEW_SIGNUPS, &k, &val);
    if (err)
        return err;
    if (val.mv_size != 8)
        return KR_ECORRUPT;
    *tenant = v_get_u64(val.mv_data);
    return KR_OK;
}

static kr_err signup_decode(const MDB_val *val, struct va_signup *s)
{
    const uint8_t *b = val->mv_data;
    memset(s, 0, sizeof *s);
    if (val->mv_size != SROW_LEN)
        return KR_ECORRUPT;
    s->state = b[0];
    s->version = v_get_u64(b + 1);
    s->applied_seq = v_get_u64(b + 9);
    s->expires = v_get_u64(b + 17);
    s->tries_left = b[25];
    memcpy(s->code_hash, b + 26, 32);
    return KR_OK;
}

static kr_err signup_put(const struct va *a, uint64_t tenant, const uint8_t app[16],
                         const struct va_signup *s)
{
    uint8_t b[SROW_LEN];
    struct vkey k;
    b[0] = (uint8_t)s->state;
    v_put_u64(b + 1, s->version);
    v_put_u64(b + 9, s->applied_seq);
    v_put_u64(b + 17, s->expires);
    b[25] = (uint8_t)s->tries_left;
    memcpy(b + 26, s->code_hash, 32);
    skey(&k, tenant, app);
    return v_put(a, VIEW_SIGNUPS, &k, b, sizeof b);
}

kr_err va_signup_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                     const uint8_t application[16], struct va_signup *out)
{
    struct vkey k;
    MDB_val val;
    if (tenant == 0)
        return KR_ENOTFOUND; /* tenant 0 holds the application index, not sign-ups */
    skey(&k, tenant, application);
    kr_err err = v_get(v, txn, VIEW_SIGNUPS, &k, &val);
    return err ? err : signup_decode(&val, out);
}

/* ---- Apply ---- */

static kr_err apply_signup(const struct va *a)
{
    const struct jrn_record *r = a->r;
    const uint8_t *app = a->p->v[KR_FLD_APPLICATION].p;
    struct va_signup s;
    struct vkey k;
    MDB_val val;
    kr_err err;

    if (a->ev == KR_EV_SIGNUP_APPLIED) {
        struct va_tenant t = {.state = KR_TENANT_STATE_APPLIED};
        tkey(&k, r->tenant);
        if ((err = v_get(a->v, a->txn, VIEW_TENANTS, &k, &val)) != KR_ENOTFOUND)
            return err ? err : KR_ECONFLICT; /* the tenant id is taken */
        skey(&k, 0, app);
        if ((err = v_get(a->v, a->txn, VIEW_SIGNUPS, &k, &val)) != KR_ENOTFOUND)
            return err ? err : KR_ECONFLICT;
        uint8_t tb[8];
        v_put_u64(tb, r->tenant);
        if ((err = v_put(a, VIEW_SIGNUPS, &k, tb, 8)))
            return err;
        memcpy(t.application, app, 16);
        if ((err = tenant_put(a, r->tenant, &t)))
            return err;
        s = (struct va_signup){
            .state = VA_SIGNUP_APPLIED, .version = r->version, .applied_seq = r->seq};
        return signup_put(a, r->tenant, app, &s);
    }
    if ((err = va_signup_get(a->v, a->txn, r->tenant, app, &s)))
        return err == KR_ENOTFOUND ? KR_EINVAL : err;
    s.version = r->version;
    switch (a->ev) {
    case KR_EV_SIGNUP_PAYMENT_CONFIRMED:
        if (s.state == VA_SIGNUP_COMPLETED)
            return KR_ECONFLICT;
        s.state = VA_SIGNUP_PAID;
        break;
    case KR_EV_SIGNUP_CODE_ISSUED:
        if (s.state == VA_SIGNUP_COMPLETED)
            return KR_ECONFLICT;
        s.expires = a->p->v[KR_FLD_EXPIRES].u;
        s.tries_left = (uint32_t)a->p->v[KR_FLD_TRIES_LEFT].u;
        memcpy(s.code_hash, a->p->v[KR_FLD_CODE_HASH].p, 32);
        break;
    case KR_EV_SIGNUP_CODE_FAILED:
        s.tries_left = (uint32_t)a->p->v[KR_FLD_TRIES_LEFT].u;
        break;
    case KR_EV_SIGNUP_COMPLETED:
        if (s.state == VA_SIGNUP_COMPLETED)
            return KR_ECONFLICT;
        s.state = VA_SIGNUP_COMPLETED;
        s.expires = 0;
        s.tries_left = 0;
        memset(s.code_hash, 0, 32);
        break;
    default:
        return KR_EINVAL;
    }
    return signup_put(a, r->tenant, app, &s);
}

/* Ends every session of tenant (their token rows are global). */
static kr_err drop_sessions(const struct va *a, uint64_t tenant)
{
    MDB_cursor *cur;
    MDB_val k, val;
    uint8_t prefix[8];
    v_put_u64(prefix, tenant);
    int rc = mdb_cursor_open(a->txn, a->v->db[VIEW_SESSION_IDS], &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    k = (MDB_val){8, prefix};
    for (rc = mdb_cursor_get(cur, &k, &val, MDB_SET_RANGE);
         rc == MDB_SUCCESS && k.mv_size >= 8 && memcmp(k.mv_data, prefix, 8) == 0;
         rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
        MDB_val tk = val;
        int drc = mdb_del(a->txn, a->v->db[VIEW_SESSIONS], &tk, NULL);
        if (drc && drc != MDB_NOTFOUND) {
            rc = drc;
            break;
        }
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND && rc != MDB_SUCCESS)
        return kr_err_from_mdb(rc);
    kr_err err = v_del_prefix(a->txn, a->v->db[VIEW_SESSION_IDS], prefix, 8);
    if (!err)
        err = v_del_prefix(a->txn, a->v->db[VIEW_ACCOUNT_SESSIONS], prefix, 8);
    return err;
}

static kr_err apply_erased(const struct va *a, uint64_t tenant)
{
    struct va_tenant t;
    struct vkey k;
    uint8_t prefix[8];
    kr_err err = va_tenant_get(a->v, a->txn, tenant, &t);
    if (err == KR_OK) {
        if (t.code_len) {
            vk_init(&k);
            vk_bytes(&k, t.code, t.code_len);
            if ((err = v_del(a, VIEW_TENANT_CODES, &k)))
                return err;
        }
        skey(&k, 0, t.application);
        if ((err = v_del(a, VIEW_SIGNUPS, &k)))
            return err;
    } else if (err != KR_ENOTFOUND) {
        return err;
    }
    v_put_u64(prefix, tenant);
    if ((err = drop_sessions(a, tenant)) ||
        (err = v_del_prefix(a->txn, a->v->db[VIEW_SIGNUPS], prefix, 8)) ||
        (err = v_del_prefix(a->txn, a->v->db[VIEW_ACCOUNTS], prefix, 8)) ||
        (err = v_del_prefix(a->txn, a->v->db[VIEW_ACCOUNT_EMAILS], prefix, 8)))
        return err;
    t = (struct va_tenant){.state = KR_TENANT_STATE_ERASED, .version = a->r->version};
    return tenant_put(a, tenant, &t);
}

static kr_err apply_tenant(const struct va *a)
{
    const struct jrn_record *r = a->r;
    struct va_tenant t;
    struct vkey k;
    MDB_val val;
    kr_err err;

    if (a->ev == KR_EV_TENANT_ERASED || a->ev == KR_EV_SIGNUP_EXPIRED)
        return apply_erased(a, r->tenant);
    if ((err = va_tenant_get(a->v, a->txn, r->tenant, &t)))
        return err == KR_ENOTFOUND ? KR_EINVAL : err;
    switch (a->ev) {
    case KR_EV_TENANT_PROVISIONED: {
        const struct kr_value *code = &a->p->v[KR_FLD_TENANT_CODE];
        if (t.state != KR_TENANT_STATE_APPLIED || code->n > KR_TENANT_CODE_MAX)
            return KR_EINVAL;
        vk_init(&k);
        vk_val(&k, code);
        if ((err = v_get(a->v, a->txn, VIEW_TENANT_CODES, &k, &val)) != KR_ENOTFOUND)
            return err ? err : KR_ECONFLICT; /* the code is taken */
        uint8_t tb[8];
        v_put_u64(tb, r->tenant);
        if ((err = v_put(a, VIEW_TENANT_CODES, &k, tb, 8)))
            return err;
        t.state = KR_TENANT_STATE_ACTIVE;
        t.provisioned_seq = r->seq;
        t.code_len = code->n;
        memcpy(t.code, code->p, code->n);
        t.code[t.code_len] = 0;
        break;
    }
    case KR_EV_TENANT_CANCELLED:
        if (t.state != KR_TENANT_STATE_ACTIVE)
            return KR_ECONFLICT;
        t.state = KR_TENANT_STATE_CANCELLED;
        t.cancelled = a->p->v[KR_FLD_CANCELLED].u;
        break;
    default:
        return KR_EINVAL;
    }
    t.version = r->version;
    return tenant_put(a, r->tenant, &t);
}

kr_err va_tenant_cancelled_stripped(struct kr_views *v, MDB_txn *txn, const struct jrn_record *r)
{
    struct va_tenant t;
    kr_err err = va_tenant_get(v, txn, r->tenant, &t);
    if (err == KR_ENOTFOUND)
        memset(&t, 0, sizeof t);
    else if (err)
        return err;
    if (t.state == KR_TENANT_STATE_ERASED)
        return KR_OK;
    t.state = KR_TENANT_STATE_CANCELLED;
    if (t.cancelled == 0)
        t.cancelled = r->time_ns; /* the payload's time is gone: the record's */
    t.version = r->version;
    struct va a = {.v = v, .txn = txn, .r = r};
    return tenant_put(&a, r->tenant, &t);
}

kr_err va_tenants(const struct va *a)
{
    if (a->r->tenant == 0)
        return KR_EINVAL; /* sign-ups and tenants are a customer's */
    switch (a->ev) {
    case KR_EV_SIGNUP_APPLIED:
    case KR_EV_SIGNUP_PAYMENT_CONFIRMED:
    case KR_EV_SIGNUP_CODE_ISSUED:
    case KR_EV_SIGNUP_CODE_FAILED:
    case KR_EV_SIGNUP_COMPLETED:
        return apply_signup(a);
    case KR_EV_TENANT_PROVISIONED:
    case KR_EV_TENANT_CANCELLED:
    case KR_EV_TENANT_ERASED:
    case KR_EV_SIGNUP_EXPIRED: /* an unconfirmed application erased: as tenant.erased */
        return apply_tenant(a);
    default:
        return KR_EINVAL;
    }
}
