/*
 * v_alerts.c: the security alerts' views (views.h): every alert.raised in
 * journal order with its acknowledgement, the alerts concerning each tenant,
 * and the time of the last alert of each rule and subject, which the scanner
 * (alerts.h) reads so that one pattern raises one alert per window, also
 * across restarts and rescans.
 *
 * Row of v.alerts (16 bytes): version (u64: the alert stream's version, 1
 * raised, 2 acknowledged) | seq of the alert.acknowledged record (0 if none).
 */
#include "alerts.h"
#include "views.h"

#include <string.h>

static kr_err alert_raised(const struct va *a)
{
    const struct kr_value *id = &a->p->v[KR_FLD_ALERT];
    KR_ASSERT(id->set && id->n == 16);
    struct vkey k;
    uint8_t seq[8], row[ALR_ROW_LEN] = {0};
    v_put_u64(seq, a->r->seq);
    vk_init(&k);
    vk_bytes(&k, id->p, 16);
    MDB_val old;
    kr_err err = v_get(a->v, a->txn, VIEW_ALERT_IDS, &k, &old);
    if (err == KR_OK)
        return KR_ECONFLICT; /* the id is taken (the stream version said new) */
    if (err != KR_ENOTFOUND)
        return err;
    if ((err = v_put(a, VIEW_ALERT_IDS, &k, seq, sizeof seq)))
        return err;
    v_put_u64(row, 1);
    vk_init(&k);
    vk_u64(&k, a->r->seq);
    if ((err = v_put(a, VIEW_ALERTS, &k, row, sizeof row)))
        return err;
    const struct kr_value *tenant = &a->p->v[KR_FLD_TENANT];
    if (tenant->set) {
        vk_init(&k);
        vk_u64(&k, tenant->u);
        vk_u64(&k, a->r->seq);
        if ((err = v_put(a, VIEW_ALERT_TENANTS, &k, NULL, 0)))
            return err;
    }
    static const uint8_t none[16];
    const struct kr_value *acct = &a->p->v[KR_FLD_ACCOUNT];
    struct alr_subject s = {.rule = (uint16_t)a->p->v[KR_FLD_ALERT_RULE].u,
                            .tenant = tenant->set ? tenant->u : 0};
    memcpy(s.account, acct->set ? acct->p : none, 16);
    alr_subject_key(&s, &k);
    uint8_t t[8];
    v_put_u64(t, a->p->v[KR_FLD_SEEN].u);
    return v_put(a, VIEW_ALERT_LAST, &k, t, sizeof t);
}

static kr_err alert_acknowledged(const struct va *a)
{
    const struct kr_value *id = &a->p->v[KR_FLD_ALERT];
    KR_ASSERT(id->set && id->n == 16);
    struct vkey k;
    vk_init(&k);
    vk_bytes(&k, id->p, 16);
    MDB_val v;
    kr_err err = v_get(a->v, a->txn, VIEW_ALERT_IDS, &k, &v);
    if (err == KR_ENOTFOUND)
        return KR_EINVAL; /* no such alert: can never be valid */
    if (err)
        return err;
    if (v.mv_size != 8)
        return views_corrupt(VIEW_ALERT_IDS, id->p, 16, "the row is not a seq", NULL);
    uint64_t raised = v_get_u64(v.mv_data);
    vk_init(&k);
    vk_u64(&k, raised);
    if ((err = v_get(a->v, a->txn, VIEW_ALERTS, &k, &v)))
        return err == KR_ENOTFOUND ? views_corrupt(VIEW_ALERTS, k.b, k.n, "no row", NULL) : err;
    if (v.mv_size != ALR_ROW_LEN)
        return views_corrupt(VIEW_ALERTS, k.b, k.n, "the row's length", NULL);
    uint8_t row[ALR_ROW_LEN];
    memcpy(row, v.mv_data, sizeof row);
    if (v_get_u64(row + 8) != 0)
        return KR_ECONFLICT; /* acknowledged meanwhile */
    v_put_u64(row, a->r->version);
    v_put_u64(row + 8, a->r->seq);
    return v_put(a, VIEW_ALERTS, &k, row, sizeof row);
}

kr_err va_alerts(const struct va *a)
{
    switch (a->ev) {
    case KR_EV_ALERT_RAISED:
        return alert_raised(a);
    case KR_EV_ALERT_ACKNOWLEDGED:
        return alert_acknowledged(a);
    default:
        return KR_EINVAL;
    }
}
