/*
 * cmd_alerts.c: the operator's security alerts: alerts.list, alerts.ack and
 * alerts.report (the alerts concerning one tenant). Alerts are platform
 * records (alert.raised, appended by the scanner of alerts.h); they have no
 * personal fields, so a list decodes them without a key. Only the operator
 * endpoint has these ops: tenants' callers never see alerts.
 */
#include "alerts.h"
#include "cmd.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One alert of a page: where its alert.raised is and its row. */
struct alert_item {
    uint64_t seq, version;
    bool acked;
};

/* The page's cursor argument: the seq after which to go on (0 = start). */
static kr_err cursor_arg(struct cmd *c, uint64_t *after)
{
    const struct kr_value *cur = &c->args->v[KR_FLD_CURSOR];
    *after = 0;
    if (!cur->set)
        return KR_OK;
    if (cur->n != 8 || v_get_u64(cur->p) == 0 || v_get_u64(cur->p) > (uint64_t)INT64_MAX)
        return cmd_fail(c, KR_EINVAL, "cursor", "not a cursor of this list");
    *after = v_get_u64(cur->p);
    return KR_OK;
}

static kr_err alert_row(struct cmd *c, uint64_t seq, struct alert_item *it)
{
    struct vkey k;
    vk_init(&k);
    vk_u64(&k, seq);
    MDB_val v;
    kr_err err = v_get(&c->d->views, c->txn, VIEW_ALERTS, &k, &v);
    if (err == KR_ENOTFOUND)
        return views_corrupt(VIEW_ALERTS, k.b, k.n, "no row for an indexed alert", c->diag);
    if (err)
        return err;
    if (v.mv_size != ALR_ROW_LEN)
        return views_corrupt(VIEW_ALERTS, k.b, k.n, "the row's length", c->diag);
    it->seq = seq;
    it->version = v_get_u64(v.mv_data);
    it->acked = v_get_u64((const uint8_t *)v.mv_data + 8) != 0;
    return KR_OK;
}

/* Collects up to limit alerts after `after`: from v.alerts (tenant 0) or
 * from v.alert_tenants under tenant. */
static kr_err collect(struct cmd *c, uint64_t tenant, bool open_only, uint64_t after,
                      uint32_t limit, struct alert_item *items, uint32_t *n, bool *more)
{
    enum kr_view db = tenant ? VIEW_ALERT_TENANTS : VIEW_ALERTS;
    size_t pre = tenant ? 8 : 0;
    uint8_t kb[16];
    v_put_u64(kb, tenant);
    v_put_u64(kb + pre, after + 1);
    MDB_cursor *mc;
    int rc = mdb_cursor_open(c->txn, c->d->views.db[db], &mc);
    if (rc)
        return kr_err_from_mdb(rc);
    kr_err err = KR_OK;
    MDB_val k = {pre + 8, kb}, v;
    *n = 0;
    *more = false;
    for (rc = mdb_cursor_get(mc, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(mc, &k, &v, MDB_NEXT)) {
        if (k.mv_size != pre + 8) {
            err = views_corrupt(db, k.mv_data, k.mv_size, "the key's length", c->diag);
            break;
        }
        if (tenant && v_get_u64(k.mv_data) != tenant)
            break;
        struct alert_item it = {0};
        if ((err = alert_row(c, v_get_u64((const uint8_t *)k.mv_data + pre), &it)))
            break;
        if (open_only && it.acked)
            continue;
        if (*n == limit) {
            *more = true;
            break;
        }
        items[(*n)++] = it;
    }
    mdb_cursor_close(mc);
    if (!err && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
    return err;
}

static kr_err write_item(struct cmd *c, const struct alert_item *it)
{
    struct jrn_record r;
    kr_err err = jrn_read_in(c->d->j, c->txn, it->seq, &r);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
    struct kr_diag d = {{0}, {0}};
    if ((err = kr_event_decode(KR_EV_ALERT_RAISED, &r, NULL, c->scratch, &d)))
        return cmd_corrupt(c, it->seq, kr_events[KR_EV_ALERT_RAISED].name, &d);
    const struct kr_value *v = c->scratch->v;
    res_map(c, 9);
    res_val(c, KR_FLD_ALERT, &v[KR_FLD_ALERT]);
    res_val(c, KR_FLD_ALERT_RULE, &v[KR_FLD_ALERT_RULE]);
    if (v[KR_FLD_TENANT].set)
        res_val(c, KR_FLD_TENANT, &v[KR_FLD_TENANT]);
    else
        res_nil(c, KR_FLD_TENANT);
    if (v[KR_FLD_ACCOUNT].set)
        res_val(c, KR_FLD_ACCOUNT, &v[KR_FLD_ACCOUNT]);
    else
        res_nil(c, KR_FLD_ACCOUNT);
    res_u64(c, KR_FLD_RAISED, r.time_ns);
    res_val(c, KR_FLD_ALERT_SUMMARY, &v[KR_FLD_ALERT_SUMMARY]);
    res_val(c, KR_FLD_EVIDENCE, &v[KR_FLD_EVIDENCE]);
    res_bool(c, KR_FLD_ACKNOWLEDGED, it->acked);
    res_u64(c, KR_FLD_VERSION, it->version);
    return KR_OK;
}

static kr_err list_alerts(struct cmd *c, uint64_t tenant)
{
    uint64_t after;
    kr_err err = cursor_arg(c, &after);
    if (err)
        return err;
    uint32_t limit = cmd_limit(c), n = 0;
    bool more = false;
    const struct kr_value *oo = &c->args->v[KR_FLD_OPEN_ONLY];
    struct alert_item *items = calloc(limit, sizeof *items);
    if (!items)
        return KR_ENOMEM;
    if ((err = collect(c, tenant, oo->set && oo->b, after, limit, items, &n, &more)))
        goto out;
    res_map(c, 2);
    res_keyname(c, "alerts");
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n && !err; i++)
        err = write_item(c, &items[i]);
    if (err)
        goto out;
    if (more && n) {
        uint8_t cb[8];
        v_put_u64(cb, items[n - 1].seq);
        res_bytes(c, KR_FLD_CURSOR, cb, sizeof cb);
    } else {
        res_nil(c, KR_FLD_CURSOR);
    }
out:
    free(items);
    return err;
}

kr_err cmd_alerts_list(struct cmd *c)
{
    return list_alerts(c, 0);
}

kr_err cmd_alerts_report(struct cmd *c)
{
    uint64_t tenant = c->args->v[KR_FLD_TENANT].u;
    if (tenant == 0)
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_TENANT].name, "not a customer's tenant");
    return list_alerts(c, tenant);
}

kr_err cmd_alerts_ack(struct cmd *c)
{
    const struct kr_value *id = &c->args->v[KR_FLD_ALERT];
    struct vkey k;
    vk_init(&k);
    vk_bytes(&k, id->p, 16);
    MDB_val v;
    kr_err err = v_get(&c->d->views, c->txn, VIEW_ALERT_IDS, &k, &v);
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, KR_ENOTFOUND, kr_fields[KR_FLD_ALERT].name, "no such alert");
    if (err)
        return err;
    if (v.mv_size != 8)
        return views_corrupt(VIEW_ALERT_IDS, id->p, 16, "the row is not a seq", c->diag);
    struct alert_item it = {0};
    if ((err = alert_row(c, v_get_u64(v.mv_data), &it)))
        return err;
    if (it.acked)
        return cmd_fail(c, KR_ECONFLICT, kr_fields[KR_FLD_ALERT].name, "already acknowledged");
    if (c->args->v[KR_FLD_VERSION].u != it.version)
        return cmd_fail(c, KR_ECONFLICT, kr_fields[KR_FLD_VERSION].name,
                        "the alert changed since this version");
    struct kr_payload *p = cmd_event(c, KR_EV_ALERT_ACKNOWLEDGED, 0, it.version);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_ALERT, id->p, 16);
    kr_set_bytes(p, KR_FLD_ACCOUNT, c->who->account, 16);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 1);
    res_u64(c, KR_FLD_VERSION, c->ev[0].version);
    return KR_OK;
}
