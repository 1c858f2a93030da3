/*
 * platform_import.c: importing the platform journal's notices and incidents
 * into a tenant shard's journal (platform_import.h).
 *
 * Design notes. An import is a command like any other (struct cmd, one
 * append on the stream versions read from a snapshot), decided by kiroku
 * itself: the actor is the platform record's operator, so the tenant's audit
 * view names who published. Exactly once rests on the views, not on the
 * importer: the apply of an event with an origin refuses it at or below
 * v.meta "platform" (va_platform_origin), so a second importer, or one
 * resuming after a crash, meets a conflict and finds the origin passed. A
 * record this shard does not take (an incident.notified for a tenant it
 * does not host) is skipped without an append, so the origin is that of the
 * last record taken: an importer resuming reads the skipped ones again and
 * skips them again.
 */
#include "platform_import.h"

#include "accounts.h"
#include "cmd.h"
#include "notices.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static int importable_event(const struct jrn_record *r)
{
    if (r->tenant != 0 || jrn_is_system(r))
        return -1;
    int ev = kr_event_lookup(r->type, r->type_len);
    switch (ev) {
    case KR_EV_NOTICE_PUBLISHED:
    case KR_EV_INCIDENT_OPENED:
    case KR_EV_INCIDENT_UPDATED:
    case KR_EV_INCIDENT_RESOLVED:
    case KR_EV_INCIDENT_NOTIFIED:
        return ev;
    default:
        return -1;
    }
}

bool dom_platform_importable(const struct jrn_record *r)
{
    return importable_event(r) >= 0;
}

kr_err dom_platform_origin(struct kr_domain *d, uint64_t *origin)
{
    MDB_txn *txn;
    *origin = 0;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    kr_err err = views_platform_origin(&d->views, txn, origin);
    mdb_txn_abort(txn);
    return err;
}

/* The caller an import runs as: the platform record's operator
 * ("operator/<32 hex>"), else kiroku itself. */
static void import_caller(const struct jrn_record *r, struct kr_caller *who)
{
    static const char prefix[] = "operator/";
    const size_t pl = sizeof prefix - 1;
    char hex[33];
    memset(who, 0, sizeof *who);
    who->role = -1;
    who->system = true;
    if (r->actor_len != pl + 32 || memcmp(r->actor, prefix, pl) != 0)
        return;
    memcpy(hex, r->actor + pl, 32);
    hex[32] = '\0';
    size_t n = 0;
    if (sodium_hex2bin(who->account, 16, hex, 32, NULL, &n, NULL) != 0 || n != 16)
        return;
    who->system = false;
    who->role = KR_ROLE_OPERATOR;
}

/* Whether tenant t holds data here (active, or cancelled and not erased):
 * the tenants this shard hosts. */
static kr_err hosted(struct cmd *c, uint64_t t, bool *yes)
{
    struct va_tenant row;
    kr_err err = va_tenant_get(&c->d->views, c->txn, t, &row);
    *yes = false;
    if (err == KR_ENOTFOUND)
        return KR_OK;
    if (err)
        return err;
    *yes = row.state == KR_TENANT_STATE_ACTIVE || row.state == KR_TENANT_STATE_CANCELLED;
    return KR_OK;
}

/* The notification channels of tenant for incident here (1 << channel), or
 * KR_ENOTFOUND when the incident does not affect it here. */
static kr_err channels_of(struct cmd *c, const uint8_t incident[16], uint64_t tenant,
                          uint8_t *channels)
{
    struct vkey k;
    MDB_val val;
    vk_init(&k);
    vk_u64(&k, tenant);
    vk_bytes(&k, incident, 16);
    kr_err err = v_get(&c->d->views, c->txn, VIEW_INCIDENT_TENANTS, &k, &val);
    if (err)
        return err;
    if (val.mv_size != 1)
        return KR_ECORRUPT;
    *channels = *(const uint8_t *)val.mv_data;
    return KR_OK;
}

/* incident.notified: whether it is this shard's (*take), and for the channel
 * email the incident_notice e-mail to add when the tenant was not e-mailed
 * here yet. A tenant without a master account here cannot be e-mailed: the
 * record is not taken, so the tenant stays due on this shard
 * (incidents.overdue, the incident_overdue alert) while the platform counts
 * it notified. */
static kr_err notified_extra(struct cmd *c, const struct kr_payload *src, bool *take)
{
    const uint8_t *incident = src->v[KR_FLD_INCIDENT].p;
    uint64_t tenant = src->v[KR_FLD_TENANT].u;
    uint8_t channels = 0;
    bool here;
    kr_err err;
    *take = false;
    if ((err = hosted(c, tenant, &here)) || !here)
        return err;
    if ((err = channels_of(c, incident, tenant, &channels)))
        return err == KR_ENOTFOUND ? KR_OK : err; /* not affected here */
    *take = true;
    if (src->v[KR_FLD_CHANNEL].u != KR_CHANNEL_EMAIL ||
        ((unsigned)channels >> KR_CHANNEL_EMAIL) & 1u)
        return KR_OK;
    if ((err = notices_master_email(c, tenant, c->scratch)) == KR_ENOTFOUND) {
        *take = false; /* nobody to write to */
        return KR_OK;
    }
    if (err)
        return err;
    struct kr_payload *m = cmd_event(c, KR_EV_OUTBOX_QUEUED, tenant, 0);
    if (!m)
        return KR_ENOMEM;
    uint8_t message[16];
    cmd_new_id(c, message);
    const struct kr_value *email = &c->scratch->v[KR_FLD_EMAIL];
    if ((err = kr_set_copy(m, KR_FLD_MESSAGE, message, 16)) ||
        (err = kr_set_copy(m, KR_FLD_EMAIL, email->p, email->n)) ||
        (err = kr_set_copy(m, KR_FLD_INCIDENT, incident, 16)))
        return err;
    kr_set_u64(m, KR_FLD_TEMPLATE, KR_TEMPLATE_INCIDENT_NOTICE);
    return KR_OK;
}

/* Decides the import of src (event ev, platform seq `origin`) on c's
 * snapshot: the copied event first, with any e-mail after it. *take false:
 * nothing to append. */
static kr_err decide(struct cmd *c, int ev, const struct kr_payload *src, uint64_t origin,
                     bool *take)
{
    const struct kr_event_def *def = &kr_events[ev];
    uint64_t have = 0, version = 0;
    kr_err err;
    *take = false;
    if ((err = views_platform_origin(&c->d->views, c->txn, &have)) || origin <= have)
        return err;
    const uint8_t *id = src->v[def->stream_key].p;
    if ((err = cmd_stream_version(c, 0, def->stream_prefix, id, &version)))
        return err;
    bool opens = ev == KR_EV_NOTICE_PUBLISHED || ev == KR_EV_INCIDENT_OPENED;
    if (opens != (version == 0))
        return KR_OK; /* opened here already, or an incident never opened here */
    struct kr_payload *p = cmd_event(c, ev, 0, version);
    if (!p)
        return KR_ENOMEM;
    for (uint32_t i = 0; i < def->nfields; i++) {
        int f = def->fields[i].field;
        if (f == KR_FLD_ORIGIN || !src->v[f].set)
            continue;
        kr_set_u64(p, f, 0); /* takes the field's slot; the value borrows from src */
        p->v[f] = src->v[f];
    }
    kr_set_u64(p, KR_FLD_ORIGIN, origin);
    *take = true;
    if (ev == KR_EV_INCIDENT_NOTIFIED)
        return notified_extra(c, src, take);
    return KR_OK;
}

/* One attempt on a fresh snapshot. */
static kr_err attempt(struct cmd *c, int ev, const struct kr_payload *src, uint64_t origin,
                      bool *done)
{
    bool take = false;
    *done = false;
    int rc = mdb_txn_begin(jrn_env(c->d->j), NULL, MDB_RDONLY, &c->txn);
    if (rc) {
        c->txn = NULL;
        return kr_err_from_mdb(rc);
    }
    c->now = kr_clock_now(c->d->clock);
    kr_err err = decide(c, ev, src, origin, &take);
    if (!err && take && !(err = cmd_commit(c)))
        *done = true;
    for (size_t e = 0; e < c->nev; e++)
        kr_payload_free(c->ev[e].p);
    c->nev = 0;
    mdb_txn_abort(c->txn);
    c->txn = NULL;
    return err;
}

kr_err dom_platform_import(struct kr_domain *d, const struct jrn_record *r, bool *imported)
{
    struct kr_caller who;
    struct kr_diag diag = {{0}, {0}};
    int ev = importable_event(r);
    bool done = false;
    if (imported)
        *imported = false;
    if (ev < 0)
        return KR_EINVAL;
    if (r->payload_stripped)
        return KR_OK; /* nothing left to copy */
    struct kr_payload *src = kr_payload_new();
    struct cmd c = {.d = d, .who = &who, .diag = &diag};
    if (!src || !(c.scratch = kr_payload_new())) {
        kr_payload_free(src);
        return KR_ENOMEM;
    }
    import_caller(r, &who);
    kr_err err = kr_event_decode(ev, r, NULL, src, &diag);
    if (err)
        err = err == KR_ENOMEM ? err : KR_ECORRUPT;
    else if (src->v[KR_FLD_ORIGIN].set)
        err = KR_EINVAL; /* an import itself: not a platform journal's record */
    /* A conflict: a stream moved on, or the views refused an origin
     * imported meanwhile (the next attempt sees it and skips). */
    for (unsigned i = 0; !err && i < KR_CMD_RETRIES; i++)
        if ((err = attempt(&c, ev, src, r->seq, &done)) == KR_ECONFLICT && i + 1 < KR_CMD_RETRIES)
            err = KR_OK;
        else
            break;
    kr_payload_free(c.scratch);
    kr_payload_free(src);
    if (imported)
        *imported = done && !err;
    return err;
}
