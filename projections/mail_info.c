/*
 * mail_info.c: what an e-mail says about its subject (see mail_info.h).
 *
 * Rows read (layouts at the top of v_notices.c and v_tenants.c):
 * v.notices (the notice.published seq), v.incidents (the incident.opened
 * seq for the title and detection, the newest text seq for the summary, the
 * current severity), v.tenants (the tenant.provisioned seq for the name).
 */
#include "mail_info.h"

#include "accounts.h"
#include "keystore.h"
#include "payload.h"
#include "schema.h"
#include "views.h"

#include <string.h>

#define NOTICE_ROW   18u
#define INCIDENT_ROW 44u

static void copy_str(char *out, size_t cap, const struct kr_value *v)
{
    out[0] = '\0';
    if (!v->set || !v->p || v->n >= cap)
        return;
    memcpy(out, v->p, v->n);
    out[v->n] = '\0';
}

/* Decodes record seq (of a platform event, or of tenant t with its key when
 * t is not 0) into p. */
static kr_err read_rec(struct kr_domain *d, MDB_txn *txn, uint64_t t, uint64_t seq,
                       struct kr_payload *p)
{
    struct jrn_record r;
    kr_err err = jrn_read_in(d->j, txn, seq, &r);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err; /* rows point at records that exist */
    if (r.payload_stripped)
        return KR_ENOTFOUND;
    int ev = kr_event_lookup(r.type, r.type_len);
    if (ev < 0)
        return KR_ECORRUPT;
    if (t == 0)
        return kr_event_decode(ev, &r, NULL, p, NULL);
    struct kr_data_key key;
    if ((err = ks_get(d->ks, t, &key)))
        return err == KR_EKEY ? KR_ENOTFOUND : err; /* erased: no name */
    err = kr_event_decode(ev, &r, &key, p, NULL);
    kr_data_key_wipe(&key);
    return err;
}

/* The row of id in view db into row (size n): false if there is none. */
static kr_err get_row(struct kr_domain *d, MDB_txn *txn, int db, const uint8_t id[16], size_t n,
                      const uint8_t **row)
{
    MDB_val k = {16, (void *)id}, v;
    int rc = mdb_get(txn, d->views.db[db], &k, &v);
    *row = NULL;
    if (rc == MDB_NOTFOUND)
        return KR_OK;
    if (rc)
        return kr_err_from_mdb(rc);
    if (v.mv_size != n)
        return KR_ECORRUPT;
    *row = v.mv_data;
    return KR_OK;
}

static kr_err tenant_name(struct kr_domain *d, MDB_txn *txn, uint64_t t, struct kr_payload *p,
                          struct mail_info *out)
{
    struct va_tenant row;
    kr_err err = va_tenant_get(&d->views, txn, t, &row);
    if (err == KR_ENOTFOUND || (!err && row.provisioned_seq == 0))
        return KR_OK;
    if (!err)
        err = read_rec(d, txn, t, row.provisioned_seq, p);
    if (err == KR_ENOTFOUND)
        return KR_OK;
    if (!err) {
        copy_str(out->tenant_name, sizeof out->tenant_name, &p->v[KR_FLD_TENANT_NAME]);
        const struct kr_value *lang = &p->v[KR_FLD_LANGUAGE];
        if (lang->set && lang->u < KR_LANGUAGE__COUNT)
            out->language = (int)lang->u;
    }
    kr_payload_reset(p, -1);
    return err;
}

static kr_err notice_info(struct kr_domain *d, MDB_txn *txn, const uint8_t id[16],
                          struct kr_payload *p, struct mail_info *out)
{
    const uint8_t *row;
    kr_err err = get_row(d, txn, VIEW_NOTICES, id, NOTICE_ROW, &row);
    if (err || !row)
        return err;
    if ((err = read_rec(d, txn, 0, v_get_u64(row), p)))
        return err == KR_ENOTFOUND ? KR_OK : err;
    copy_str(out->title, sizeof out->title, &p->v[KR_FLD_TITLE]);
    copy_str(out->body, sizeof out->body, &p->v[KR_FLD_BODY]);
    out->effective = p->v[KR_FLD_EFFECTIVE].u;
    out->notice_kind = row[16] < KR_NOTICE_KIND__COUNT ? row[16] : -1;
    kr_payload_reset(p, -1);
    return KR_OK;
}

static kr_err incident_info(struct kr_domain *d, MDB_txn *txn, const uint8_t id[16],
                            struct kr_payload *p, struct mail_info *out)
{
    const uint8_t *row;
    kr_err err = get_row(d, txn, VIEW_INCIDENTS, id, INCIDENT_ROW, &row);
    if (err || !row)
        return err;
    out->detected = v_get_u64(row + 24);
    out->deadline = v_get_u64(row + 32);
    out->severity = row[41] < KR_SEVERITY__COUNT ? row[41] : -1;
    out->resolved = row[43] != 0;
    if ((err = read_rec(d, txn, 0, v_get_u64(row + 8), p)))
        return err == KR_ENOTFOUND ? KR_OK : err;
    copy_str(out->title, sizeof out->title, &p->v[KR_FLD_TITLE]);
    kr_payload_reset(p, -1);
    if ((err = read_rec(d, txn, 0, v_get_u64(row + 16), p)))
        return err == KR_ENOTFOUND ? KR_OK : err;
    copy_str(out->summary, sizeof out->summary, &p->v[KR_FLD_SUMMARY]);
    kr_payload_reset(p, -1);
    return KR_OK;
}

kr_err mail_info_get(struct kr_domain *d, uint64_t tenant, const uint8_t *incident,
                     const uint8_t *notice, struct mail_info *out)
{
    memset(out, 0, sizeof *out);
    out->notice_kind = out->severity = out->language = -1;
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    MDB_txn *txn;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc) {
        kr_payload_free(p);
        return kr_err_from_mdb(rc);
    }
    kr_err err = tenant ? tenant_name(d, txn, tenant, p, out) : KR_OK;
    if (!err && notice)
        err = notice_info(d, txn, notice, p, out);
    if (!err && incident)
        err = incident_info(d, txn, incident, p, out);
    mdb_txn_abort(txn);
    kr_payload_free(p);
    return err;
}
