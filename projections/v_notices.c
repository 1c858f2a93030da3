/*
 * v_notices.c: the views of notices, incidents, tenant reports and the
 * outbox (notice.*, incident.*, outbox.* events).
 *
 * Row layouts (integers big-endian; ids 16 bytes; enums one byte, their
 * index in the schema's enum):
 *
 *   v.notices          notice -> seq(8) effective(8) kind(1) audience(1)
 *                      seq: the notice.published record (title, body).
 *   v.notice_tenants   tenant(8) effective(8) notice -> (empty)
 *                      who sees a notice: tenant 0 for audience all, else
 *                      one row per listed tenant. The effective time in the
 *                      key makes a tenant's notices two sorted ranges (its
 *                      own and tenant 0's) that merge into pages ordered by
 *                      (effective, notice).
 *   v.notice_acks      tenant(8) account notice -> time(8) of the ack.
 *   v.notice_mail      tenant(8) notice -> (empty): a notice-of-change
 *                      e-mail owed to the tenant's master (the tenants
 *                      holding data when it was published: listed ones, or
 *                      for audience all every one; so on a tenant shard
 *                      importing the platform's notices, only the tenants it
 *                      hosts, and on the platform shard none). dom_notice_mail queues them; the
 *                      outbox.queued of template notice_of_change removes the
 *                      row, and is refused (KR_ECONFLICT) without one, so each
 *                      is queued exactly once.
 *   v.incidents        incident -> version(8) opened_seq(8) text_seq(8)
 *                      detected(8) deadline(8) scope(1) severity(1)
 *                      audience(1) resolved(1)
 *                      version: the incident stream's; opened_seq: the
 *                      incident.opened record (title); text_seq: the newest
 *                      record carrying the summary (opened, updated or
 *                      resolved).
 *   v.incident_tenants tenant(8) incident -> channels(1)
 *                      one row per affected tenant; bit (1 << channel) set
 *                      once it was notified over that channel. For
 *                      audience all, the affected tenants are those in
 *                      v.tenants when the incident was opened; for an
 *                      incident imported from the platform journal (origin
 *                      set), the listed ones only if they hold data here
 *                      (the tenants this shard hosts).
 *   v.incident_due     deadline(8) incident tenant(8) -> (empty)
 *                      an affected tenant not yet notified by any channel;
 *                      resolving an incident does not remove it (notice is
 *                      still owed).
 *   v.incident_emailed incident tenant(8) -> (empty)
 *                      a tenant notified over the channel email: the ones
 *                      an update or the resolution is e-mailed to. Erasure
 *                      finds a tenant's rows through its v.incident_tenants
 *                      rows (va_notices_erase).
 *   v.incident_mail    tenant(8) incident template(1) -> (empty)
 *                      an incident_update or incident_resolved e-mail owed
 *                      to the tenant's master: set by incident.updated /
 *                      incident.resolved for each tenant in
 *                      v.incident_emailed; the outbox.queued of that
 *                      template removes it, and is refused (KR_ECONFLICT)
 *                      without one, so each is queued exactly once. Two
 *                      updates before the e-mail is queued owe one e-mail
 *                      (it tells the incident as it is then).
 *   v.incident_acks    incident tenant(8) account -> time(8) of the
 *                      incident.acknowledged record: who has read the
 *                      notice (incidents.readers), keyed by incident first
 *                      so the operator's list is one range; incidents.list
 *                      looks up the caller's own row. Erasure finds a
 *                      tenant's rows through its v.incident_tenants rows,
 *                      as for v.incident_emailed (only an affected tenant
 *                      can acknowledge).
 *   v.reports          tenant(8) report -> seq(8) of the incident.reported
 *                      record (details are personal: only in the record).
 *   v.outbox           tenant(8) message -> seq(8) template(1) sent(1)
 *   v.outbox_pending   seq(8) -> tenant(8) message: queued, not yet sent,
 *                      in delivery order.
 *
 * Records imported from the platform journal (origin set) raise v.meta
 * "platform" and are refused (KR_ECONFLICT) at or below it
 * (va_platform_origin): each is imported once.
 *
 * Apply trusts what the handlers checked under stream versions (the
 * incident's stream orders its events; a notification names a tenant the
 * incident affects) and refuses with KR_EINVAL a record that breaks what
 * only the views can know (a notification for a tenant the incident does not
 * affect, an outbox.sent for a message never queued).
 */
#include "accounts.h"
#include "views.h"

#include <errno.h>
#include <string.h>

#define NOTICE_ROW   18u
#define INCIDENT_ROW 44u
#define OUTBOX_ROW   10u

static const uint8_t *id_of(const struct va *a, int fld)
{
    const struct kr_value *v = &a->p->v[fld];
    KR_ASSERT(v->set && v->n == 16);
    return v->p;
}

/* ---- Notices ---- */

/* Whether tenant t holds data (active or cancelled, not erased): those are
 * the ones an audience of "all" reaches. */
static kr_err holds_data(const struct va *a, uint64_t t, bool *yes)
{
    struct va_tenant row;
    kr_err err = va_tenant_get(a->v, a->txn, t, &row);
    *yes = false;
    if (err == KR_ENOTFOUND)
        return KR_OK;
    if (err)
        return err;
    *yes =
        t != 0 && (row.state == KR_TENANT_STATE_ACTIVE || row.state == KR_TENANT_STATE_CANCELLED);
    return KR_OK;
}

static kr_err owe_mail(const struct va *a, uint64_t tenant, const uint8_t *notice)
{
    struct vkey k;
    vk_init(&k);
    vk_u64(&k, tenant);
    vk_bytes(&k, notice, 16);
    return v_put(a, VIEW_NOTICE_MAIL, &k, NULL, 0);
}

/* Calls each(a, t, arg) for every tenant t holding data (see holds_data),
 * in id order: the tenants an audience of "all" reaches. Stops at the first
 * error. */
static kr_err each_data_tenant(const struct va *a,
                               kr_err (*each)(const struct va *a, uint64_t t, const void *arg),
                               const void *arg)
{
    MDB_cursor *c;
    MDB_val k, v;
    kr_err err = KR_OK;
    int rc = mdb_cursor_open(a->txn, a->v->db[VIEW_TENANTS], &c);
    if (rc)
        return kr_err_from_mdb(rc);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        bool yes;
        if (k.mv_size != 8) {
            err = KR_ECORRUPT;
            break;
        }
        uint64_t t = v_get_u64(k.mv_data);
        if ((err = holds_data(a, t, &yes)) || (yes && (err = each(a, t, arg))))
            break;
    }
    mdb_cursor_close(c);
    if (err)
        return err;
    return rc == MDB_NOTFOUND ? KR_OK : kr_err_from_mdb(rc);
}

/* each_data_tenant's step for a notice of audience all: arg is the notice. */
static kr_err owe_mail_each(const struct va *a, uint64_t t, const void *notice)
{
    return owe_mail(a, t, notice);
}

static kr_err notice_published(const struct va *a)
{
    const struct kr_payload *p = a->p;
    const uint8_t *notice = id_of(a, KR_FLD_NOTICE);
    uint64_t effective = p->v[KR_FLD_EFFECTIVE].u;
    uint8_t row[NOTICE_ROW];
    struct vkey k;
    MDB_val old;
    kr_err err;

    vk_init(&k);
    vk_bytes(&k, notice, 16);
    if ((err = v_get(a->v, a->txn, VIEW_NOTICES, &k, &old)) != KR_ENOTFOUND)
        return err ? err : KR_ECONFLICT; /* ids are random: a repeat is a replayed command */
    v_put_u64(row, a->r->seq);
    v_put_u64(row + 8, effective);
    row[16] = (uint8_t)p->v[KR_FLD_NOTICE_KIND].u;
    row[17] = (uint8_t)p->v[KR_FLD_AUDIENCE].u;
    if ((err = v_put(a, VIEW_NOTICES, &k, row, sizeof row)))
        return err;

    const struct kr_value *ts = &p->v[KR_FLD_TENANTS];
    bool all = p->v[KR_FLD_AUDIENCE].u == KR_AUDIENCE_ALL;
    uint32_t n = all ? 1u : ts->n;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t t = 0;
        if (!all)
            memcpy(&t, ts->p + 8 * (size_t)i, 8);
        vk_init(&k);
        vk_u64(&k, t);
        vk_u64(&k, effective);
        vk_bytes(&k, notice, 16);
        if ((err = v_put(a, VIEW_NOTICE_TENANTS, &k, NULL, 0)))
            return err;
        bool here = false;
        if (!all && ((err = holds_data(a, t, &here)) || (here && (err = owe_mail(a, t, notice)))))
            return err;
    }
    return all ? each_data_tenant(a, owe_mail_each, notice) : KR_OK;
}

static kr_err notice_acknowledged(const struct va *a)
{
    struct vkey k;
    uint8_t t[8];
    vk_init(&k);
    vk_u64(&k, a->r->tenant);
    vk_bytes(&k, id_of(a, KR_FLD_ACCOUNT), 16);
    vk_bytes(&k, id_of(a, KR_FLD_NOTICE), 16);
    v_put_u64(t, a->r->time_ns);
    return v_put(a, VIEW_NOTICE_ACKS, &k, t, sizeof t);
}

/* ---- Incidents ---- */

static kr_err affect(const struct va *a, const uint8_t *incident, uint64_t deadline,
                     uint64_t tenant)
{
    struct vkey k;
    uint8_t channels = 0;
    kr_err err;
    vk_init(&k);
    vk_u64(&k, tenant);
    vk_bytes(&k, incident, 16);
    if ((err = v_put(a, VIEW_INCIDENT_TENANTS, &k, &channels, 1)))
        return err;
    vk_init(&k);
    vk_u64(&k, deadline);
    vk_bytes(&k, incident, 16);
    vk_u64(&k, tenant);
    return v_put(a, VIEW_INCIDENT_DUE, &k, NULL, 0);
}

/* An incident of audience all, for each_data_tenant: every tenant holding
 * data is affected. */
struct affected {
    const uint8_t *incident;
    uint64_t deadline;
};

static kr_err affect_each(const struct va *a, uint64_t t, const void *arg)
{
    const struct affected *x = arg;
    return affect(a, x->incident, x->deadline, t);
}

static kr_err incident_opened(const struct va *a)
{
    const struct kr_payload *p = a->p;
    const uint8_t *incident = id_of(a, KR_FLD_INCIDENT);
    uint64_t deadline = p->v[KR_FLD_DEADLINE].u;
    uint8_t row[INCIDENT_ROW];
    struct vkey k;
    MDB_val old;
    kr_err err;

    vk_init(&k);
    vk_bytes(&k, incident, 16);
    if ((err = v_get(a->v, a->txn, VIEW_INCIDENTS, &k, &old)) != KR_ENOTFOUND)
        return err ? err : KR_ECONFLICT;
    v_put_u64(row, a->r->version);
    v_put_u64(row + 8, a->r->seq);
    v_put_u64(row + 16, a->r->seq);
    v_put_u64(row + 24, p->v[KR_FLD_DETECTED].u);
    v_put_u64(row + 32, deadline);
    row[40] = (uint8_t)p->v[KR_FLD_INCIDENT_SCOPE].u;
    row[41] = (uint8_t)p->v[KR_FLD_SEVERITY].u;
    row[42] = (uint8_t)p->v[KR_FLD_AUDIENCE].u;
    row[43] = 0;
    if ((err = v_put(a, VIEW_INCIDENTS, &k, row, sizeof row)))
        return err;
    if (p->v[KR_FLD_AUDIENCE].u == KR_AUDIENCE_ALL)
        return each_data_tenant(a, affect_each, &(struct affected){incident, deadline});
    const struct kr_value *ts = &p->v[KR_FLD_TENANTS];
    bool imported = p->v[KR_FLD_ORIGIN].set;
    for (uint32_t i = 0; i < ts->n; i++) {
        uint64_t t;
        bool here = true;
        memcpy(&t, ts->p + 8 * (size_t)i, 8);
        if (imported && (err = holds_data(a, t, &here)))
            return err;
        if (here && (err = affect(a, incident, deadline, t)))
            return err;
    }
    return KR_OK;
}

/* Loads the incident row of the record's incident into row; KR_EINVAL if the
 * incident does not exist (its stream's first event is incident.opened). */
static kr_err incident_row(const struct va *a, uint8_t row[INCIDENT_ROW])
{
    struct vkey k;
    MDB_val v;
    vk_init(&k);
    vk_bytes(&k, id_of(a, KR_FLD_INCIDENT), 16);
    kr_err err = v_get(a->v, a->txn, VIEW_INCIDENTS, &k, &v);
    if (err)
        return err == KR_ENOTFOUND ? KR_EINVAL : err;
    if (v.mv_size != INCIDENT_ROW)
        return KR_ECORRUPT;
    memcpy(row, v.mv_data, INCIDENT_ROW);
    return KR_OK;
}

static kr_err incident_row_put(const struct va *a, uint8_t row[INCIDENT_ROW])
{
    struct vkey k;
    vk_init(&k);
    vk_bytes(&k, id_of(a, KR_FLD_INCIDENT), 16);
    v_put_u64(row, a->r->version);
    return v_put(a, VIEW_INCIDENTS, &k, row, INCIDENT_ROW);
}

static kr_err incident_notified(const struct va *a)
{
    const uint8_t *incident = id_of(a, KR_FLD_INCIDENT);
    uint64_t tenant = a->p->v[KR_FLD_TENANT].u;
    uint8_t row[INCIDENT_ROW], channels;
    struct vkey k;
    MDB_val v;
    kr_err err;

    if ((err = incident_row(a, row)))
        return err;
    vk_init(&k);
    vk_u64(&k, tenant);
    vk_bytes(&k, incident, 16);
    err = v_get(a->v, a->txn, VIEW_INCIDENT_TENANTS, &k, &v);
    if (err == KR_ENOTFOUND) {
        /* Not an affected tenant, unless the views do not know the tenant
         * at all: an erased tenant's records are stripped, so a rebuild
         * never made its row, and an incident for "all" did not reach it.
         * The notice it got then changes nothing the erasure keeps. */
        struct va_tenant t;
        kr_err terr = va_tenant_get(a->v, a->txn, tenant, &t);
        if (terr == KR_ENOTFOUND)
            return incident_row_put(a, row);
        return terr ? terr : KR_EINVAL;
    }
    if (err)
        return err;
    if (v.mv_size != 1)
        return KR_ECORRUPT;
    channels = (uint8_t)(*(const uint8_t *)v.mv_data | 1u << a->p->v[KR_FLD_CHANNEL].u);
    if ((err = v_put(a, VIEW_INCIDENT_TENANTS, &k, &channels, 1)))
        return err;
    if (a->p->v[KR_FLD_CHANNEL].u == KR_CHANNEL_EMAIL) {
        vk_init(&k);
        vk_bytes(&k, incident, 16);
        vk_u64(&k, tenant);
        if ((err = v_put(a, VIEW_INCIDENT_EMAILED, &k, NULL, 0)))
            return err;
    }
    vk_init(&k);
    vk_bytes(&k, row + 32, 8); /* deadline */
    vk_bytes(&k, incident, 16);
    vk_u64(&k, tenant);
    if ((err = v_del(a, VIEW_INCIDENT_DUE, &k)))
        return err;
    return incident_row_put(a, row);
}

/* An update or the resolution: an e-mail of template tpl owed to every
 * tenant e-mailed the incident's notice (v.incident_emailed). */
static kr_err owe_incident_mail(const struct va *a, const uint8_t *incident, uint8_t tpl)
{
    MDB_cursor *c;
    MDB_val k, v;
    kr_err err = KR_OK;
    int rc = mdb_cursor_open(a->txn, a->v->db[VIEW_INCIDENT_EMAILED], &c);
    if (rc)
        return kr_err_from_mdb(rc);
    k = (MDB_val){16, (void *)incident};
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 24 || memcmp(k.mv_data, incident, 16) != 0)
            break;
        struct vkey mk;
        vk_init(&mk);
        vk_bytes(&mk, (const uint8_t *)k.mv_data + 16, 8); /* tenant */
        vk_bytes(&mk, incident, 16);
        vk_bytes(&mk, &tpl, 1);
        if ((err = v_put(a, VIEW_INCIDENT_MAIL, &mk, NULL, 0)))
            break;
    }
    mdb_cursor_close(c);
    if (err)
        return err;
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? KR_OK : kr_err_from_mdb(rc);
}

static kr_err incident_changed(const struct va *a, bool resolved)
{
    uint8_t row[INCIDENT_ROW];
    kr_err err = incident_row(a, row);
    if (err)
        return err;
    v_put_u64(row + 16, a->r->seq);
    if (resolved)
        row[43] = 1;
    else
        row[41] = (uint8_t)a->p->v[KR_FLD_SEVERITY].u;
    if ((err = incident_row_put(a, row)))
        return err;
    return owe_incident_mail(a, id_of(a, KR_FLD_INCIDENT),
                             resolved ? KR_TEMPLATE_INCIDENT_RESOLVED
                                      : KR_TEMPLATE_INCIDENT_UPDATE);
}

/* incident.acknowledged: refused (KR_EINVAL) when the incident does not
 * affect the record's tenant, KR_ECONFLICT when the account has already
 * acknowledged it (the handler then answers the first time). */
static kr_err incident_acknowledged(const struct va *a)
{
    struct vkey k;
    MDB_val v;
    uint8_t t[8];
    kr_err err;
    vk_init(&k);
    vk_u64(&k, a->r->tenant);
    vk_bytes(&k, id_of(a, KR_FLD_INCIDENT), 16);
    if ((err = v_get(a->v, a->txn, VIEW_INCIDENT_TENANTS, &k, &v)))
        return err == KR_ENOTFOUND ? KR_EINVAL : err;
    vk_init(&k);
    vk_bytes(&k, id_of(a, KR_FLD_INCIDENT), 16);
    vk_u64(&k, a->r->tenant);
    vk_bytes(&k, id_of(a, KR_FLD_ACCOUNT), 16);
    if ((err = v_get(a->v, a->txn, VIEW_INCIDENT_ACKS, &k, &v)) != KR_ENOTFOUND)
        return err ? err : KR_ECONFLICT;
    v_put_u64(t, a->r->time_ns);
    return v_put(a, VIEW_INCIDENT_ACKS, &k, t, sizeof t);
}

/* Deletes the keys of db that start with prefix (n bytes). */
static int del_range(MDB_txn *txn, MDB_dbi db, const uint8_t *prefix, size_t n)
{
    MDB_cursor *c;
    MDB_val k = {n, (void *)prefix}, val;
    int rc = mdb_cursor_open(txn, db, &c);
    if (rc)
        return rc;
    for (rc = mdb_cursor_get(c, &k, &val, MDB_SET_RANGE);
         rc == MDB_SUCCESS && k.mv_size >= n && memcmp(k.mv_data, prefix, n) == 0;
         rc = mdb_cursor_get(c, &k, &val, MDB_GET_CURRENT))
        if ((rc = mdb_cursor_del(c, 0)))
            break;
    mdb_cursor_close(c);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND || rc == EINVAL ? MDB_SUCCESS : rc;
}

kr_err va_notices_erase(struct kr_views *v, MDB_txn *txn, uint64_t tenant)
{
    MDB_cursor *c;
    MDB_val k, val;
    uint8_t prefix[8];
    int rc = mdb_cursor_open(txn, v->db[VIEW_INCIDENT_TENANTS], &c);
    if (rc)
        return kr_err_from_mdb(rc);
    v_put_u64(prefix, tenant);
    k = (MDB_val){8, prefix};
    for (rc = mdb_cursor_get(c, &k, &val, MDB_SET_RANGE); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
        if (k.mv_size != 24 || memcmp(k.mv_data, prefix, 8) != 0)
            break;
        uint8_t key[24];
        memcpy(key, (const uint8_t *)k.mv_data + 8, 16);
        memcpy(key + 16, prefix, 8);
        MDB_val ek = {sizeof key, key};
        int drc = mdb_del(txn, v->db[VIEW_INCIDENT_EMAILED], &ek, NULL);
        if (!drc || drc == MDB_NOTFOUND)
            drc = del_range(txn, v->db[VIEW_INCIDENT_ACKS], key, sizeof key);
        if (drc) {
            rc = drc;
            break;
        }
    }
    mdb_cursor_close(c);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? KR_OK : kr_err_from_mdb(rc);
}

static kr_err incident_reported(const struct va *a)
{
    struct vkey k;
    uint8_t seq[8];
    vk_init(&k);
    vk_u64(&k, a->r->tenant);
    vk_bytes(&k, id_of(a, KR_FLD_REPORT), 16);
    v_put_u64(seq, a->r->seq);
    return v_put(a, VIEW_REPORTS, &k, seq, sizeof seq);
}

/* ---- Outbox ---- */

static kr_err outbox_queued(const struct va *a)
{
    const uint8_t *message = id_of(a, KR_FLD_MESSAGE);
    uint8_t row[OUTBOX_ROW];
    struct vkey k, pk;
    MDB_val old;
    kr_err err;

    vk_init(&k);
    vk_u64(&k, a->r->tenant);
    vk_bytes(&k, message, 16);
    if ((err = v_get(a->v, a->txn, VIEW_OUTBOX, &k, &old)) != KR_ENOTFOUND)
        return err ? err : KR_ECONFLICT;
    if (a->p->v[KR_FLD_TEMPLATE].u == KR_TEMPLATE_NOTICE_OF_CHANGE) {
        /* Owed once: the first of racing queuers wins, the others conflict. */
        const struct kr_value *notice = &a->p->v[KR_FLD_NOTICE];
        struct vkey mk;
        if (!notice->set)
            return KR_EINVAL;
        vk_init(&mk);
        vk_u64(&mk, a->r->tenant);
        vk_val(&mk, notice);
        if ((err = v_get(a->v, a->txn, VIEW_NOTICE_MAIL, &mk, &old)))
            return err == KR_ENOTFOUND ? KR_ECONFLICT : err;
        if ((err = v_del(a, VIEW_NOTICE_MAIL, &mk)))
            return err;
    }
    uint64_t tpl = a->p->v[KR_FLD_TEMPLATE].u;
    if (tpl == KR_TEMPLATE_INCIDENT_UPDATE || tpl == KR_TEMPLATE_INCIDENT_RESOLVED) {
        /* Owed once, like a notice's e-mail. */
        const struct kr_value *incident = &a->p->v[KR_FLD_INCIDENT];
        struct vkey mk;
        uint8_t t = (uint8_t)tpl;
        if (!incident->set || incident->n != 16)
            return KR_EINVAL;
        vk_init(&mk);
        vk_u64(&mk, a->r->tenant);
        vk_val(&mk, incident);
        vk_bytes(&mk, &t, 1);
        if ((err = v_get(a->v, a->txn, VIEW_INCIDENT_MAIL, &mk, &old)))
            return err == KR_ENOTFOUND ? KR_ECONFLICT : err;
        if ((err = v_del(a, VIEW_INCIDENT_MAIL, &mk)))
            return err;
    }
    v_put_u64(row, a->r->seq);
    row[8] = (uint8_t)a->p->v[KR_FLD_TEMPLATE].u;
    row[9] = 0;
    if ((err = v_put(a, VIEW_OUTBOX, &k, row, sizeof row)))
        return err;
    vk_init(&pk);
    vk_u64(&pk, a->r->seq);
    return v_put(a, VIEW_OUTBOX_PENDING, &pk, k.b, k.n);
}

static kr_err outbox_sent(const struct va *a)
{
    uint8_t row[OUTBOX_ROW];
    struct vkey k, pk;
    MDB_val v;
    kr_err err;

    vk_init(&k);
    vk_u64(&k, a->r->tenant);
    vk_bytes(&k, id_of(a, KR_FLD_MESSAGE), 16);
    if ((err = v_get(a->v, a->txn, VIEW_OUTBOX, &k, &v)))
        return err == KR_ENOTFOUND ? KR_EINVAL : err;
    if (v.mv_size != OUTBOX_ROW)
        return KR_ECORRUPT;
    memcpy(row, v.mv_data, OUTBOX_ROW);
    if (row[9])
        return KR_OK;
    row[9] = 1;
    vk_init(&pk);
    vk_bytes(&pk, row, 8);
    if ((err = v_del(a, VIEW_OUTBOX_PENDING, &pk)))
        return err;
    return v_put(a, VIEW_OUTBOX, &k, row, sizeof row);
}

/* A failed delivery: a permanent one leaves the pending list as a refusal
 * does; a temporary one changes nothing here (the worker reads the retry
 * schedule from the message's stream). */
static kr_err outbox_failed(const struct va *a)
{
    if (a->p->v[KR_FLD_PERMANENT].b)
        return outbox_sent(a);
    return KR_OK;
}

kr_err va_notices(const struct va *a)
{
    kr_err err = va_platform_origin(a); /* an import: once only */
    if (err)
        return err;
    switch (a->ev) {
    case KR_EV_NOTICE_PUBLISHED:
        return notice_published(a);
    case KR_EV_NOTICE_ACKNOWLEDGED:
        return notice_acknowledged(a);
    case KR_EV_INCIDENT_OPENED:
        return incident_opened(a);
    case KR_EV_INCIDENT_NOTIFIED:
        return incident_notified(a);
    case KR_EV_INCIDENT_UPDATED:
        return incident_changed(a, false);
    case KR_EV_INCIDENT_RESOLVED:
        return incident_changed(a, true);
    case KR_EV_INCIDENT_ACKNOWLEDGED:
        return incident_acknowledged(a);
    case KR_EV_INCIDENT_REPORTED:
        return incident_reported(a);
    case KR_EV_OUTBOX_QUEUED:
        return outbox_queued(a);
    case KR_EV_OUTBOX_SENT:
    case KR_EV_OUTBOX_REFUSED: /* handled too: it leaves the pending list, unsent */
        return outbox_sent(a);
    case KR_EV_OUTBOX_FAILED:
        return outbox_failed(a);
    default:
        return KR_EINVAL; /* an event of this area that this module does not know */
    }
}
