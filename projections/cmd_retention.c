/*
 * cmd_retention.c: the operator's retention and records ops: tenants.erase,
 * retention.run, maintenance.record, backups.list (see retention.h for the
 * erasure they share with the daily job).
 */
#include "cmd.h"

#include "accounts.h"
#include "retention.h"

#include <stdlib.h>
#include <string.h>

/* ---- tenants.erase ---- */

kr_err cmd_tenants_erase(struct cmd *c)
{
    uint64_t tenant = c->args->v[KR_FLD_TENANT].u;
    struct kr_diag diag;
    kr_err err = ret_erase_tenant(c->d, tenant, &diag);
    if (err)
        return cmd_fail(c, err, diag.field[0] ? diag.field : "tenant",
                        diag.why[0] ? diag.why : NULL);
    res_map(c, 1);
    res_u64(c, KR_FLD_TENANT, tenant);
    return KR_OK;
}

/* ---- retention.run ---- */

kr_err cmd_retention_run(struct cmd *c)
{
    const struct kr_value *dry = &c->args->v[KR_FLD_DRY_RUN];
    struct ret_report *r = malloc(sizeof *r);
    if (!r)
        return KR_ENOMEM;
    kr_err err = ret_run(c->d, dry->set && dry->b, r);
    if (err) {
        char why[128];
        snprintf(why, sizeof why, "%s", kr_strerror(err));
        for (size_t i = 0; i < r->n; i++)
            if (r->tenants[i].err) {
                snprintf(why, sizeof why, "tenant %llu: %s: %s",
                         (unsigned long long)r->tenants[i].tenant, r->tenants[i].step,
                         kr_strerror(r->tenants[i].err));
                break;
            }
        if (err == KR_ECORRUPT && r->corrupt.field[0]) { /* the place, for the operator */
            *c->diag = r->corrupt;
            free(r);
            return KR_ECORRUPT;
        }
        free(r);
        /* The ECONFLICT of a tenant that changed meanwhile is not retried
         * here: the next run picks it up. */
        return cmd_fail(c, err == KR_ECONFLICT ? KR_ECONFLICT : err, "retention", why);
    }
    res_map(c, 2);
    res_keyname(c, "tenants");
    msgpack_pack_array(&c->res, (uint32_t)r->n);
    for (size_t i = 0; i < r->n; i++) {
        res_map(c, 4);
        res_u64(c, KR_FLD_TENANT, r->tenants[i].tenant);
        res_u64(c, KR_FLD_CANCELLED, r->tenants[i].cancelled);
        res_u64(c, KR_FLD_ERASE_BY, r->tenants[i].erase_by);
        res_bool(c, KR_FLD_ERASED, r->tenants[i].erased);
    }
    res_u64(c, KR_FLD_STRIPPED, r->stripped);
    free(r);
    return KR_OK;
}

/* ---- maintenance.record ---- */

kr_err cmd_maintenance_record(struct cmd *c)
{
    uint64_t version;
    kr_err err = cmd_stream_version(c, 0, "maintenance", c->who->account, &version);
    if (err)
        return err;
    struct kr_payload *p = cmd_event(c, KR_EV_MAINTENANCE_RECORDED, 0, version);
    if (!p)
        return KR_ENOMEM;
    const struct kr_value *work = &c->args->v[KR_FLD_WORK], *host = &c->args->v[KR_FLD_HOST];
    kr_set_bytes(p, KR_FLD_ACCOUNT, c->who->account, 16);
    kr_set_bytes(p, KR_FLD_WORK, work->p, work->n);
    kr_set_bytes(p, KR_FLD_HOST, host->p, host->n);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 0);
    return KR_OK;
}

/* ---- backups.list ---- */

kr_err cmd_backups_list(struct cmd *c)
{
    const struct ret_hooks *h = c->d->ret_hooks;
    if (!h || !h->backup_list)
        return cmd_fail(c, KR_ENOTFOUND, "backups",
                        "this server keeps no backups (serve --backups)");
    struct ret_generation *g = calloc(KR_BACKUP_GENERATIONS_MAX, sizeof *g);
    if (!g)
        return KR_ENOMEM;
    size_t n = 0;
    kr_err err = h->backup_list(h->arg, g, KR_BACKUP_GENERATIONS_MAX, &n);
    if (err) {
        free(g);
        return cmd_fail(c, err, "backups", "the backups directory cannot be read");
    }
    res_map(c, 1);
    res_keyname(c, "generations");
    msgpack_pack_array(&c->res, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        res_map(c, 6);
        res_str(c, KR_FLD_GENERATION, g[i].generation, strlen(g[i].generation));
        res_u64(c, KR_FLD_LAST_SEQ, g[i].last_seq);
        res_u64(c, KR_FLD_TAKEN, g[i].taken);
        res_u64(c, KR_FLD_BYTES, g[i].bytes);
        res_bool(c, KR_FLD_VERIFIED, g[i].verified);
        if (g[i].reason[0])
            res_str(c, KR_FLD_REASON, g[i].reason, strlen(g[i].reason));
        else
            res_nil(c, KR_FLD_REASON);
    }
    free(g);
    return KR_OK;
}
