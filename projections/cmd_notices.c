/*
 * cmd_notices.c: notices (published by operators, acknowledged by
 * accounts), incidents (opened, notified, updated, resolved by operators;
 * reported by tenants), and the readers other modules use: unread notices
 * for the login reply and the outbox for the delivery worker (notices.h).
 *
 * Design notes. Notices and incidents are platform objects (tenant 0): an
 * operator's handler finds them by id alone, and a tenant's query finds them
 * only through its own rows (v.notice_tenants, v.incident_tenants), so a
 * notice or incident that does not concern the caller's tenant is "not
 * found", exactly like a missing one. Titles, bodies and summaries are plain
 * fields of the records; rows keep the seqs of the records that hold them.
 *
 * A notice's e-mails are not queued by notices.publish: an audience may list
 * up to 1000 tenants, past what one append may hold (KR_CMD_EVENTS_MAX).
 * The views owe one to each concerned tenant (v.notice_mail) and
 * dom_notice_mail queues them, one append per tenant, exactly once. An
 * incident notified over the channel email queues one incident_notice e-mail
 * to the tenant's master account in the same append (on a tenant's own
 * shard: the platform shard records the notification and queues nothing).
 *
 * Deadlines have one authority per incident: the journal that opened it
 * notifies its affected tenants at the deadline (dom_incident_mail). For the
 * platform shard's incidents that list their tenants, that is the platform:
 * a tenant shard importing them leaves their deadline to it and e-mails the
 * notifications it imports. An incident of audience all names no tenant on
 * the platform (it hosts none), so each importing shard notifies its own.
 */
#include "accounts.h"
#include "notices.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ---- Shared helpers ---- */

/* The key of op's first list result ("notices"), from the schema. */
static const char *list_name(int op)
{
    const struct kr_op_def *o = &kr_ops[op];
    for (uint32_t i = 0; i < o->nresult; i++)
        if (o->result[i].field < 0)
            return o->result[i].list_name;
    KR_ASSERT(!"op has no list result");
    return "";
}

/* Sets field fld of event payload p to the caller's argument (borrowed: the
 * arguments outlive the commit). */
static void set_arg(struct kr_payload *p, const struct cmd *c, int fld)
{
    kr_set_u64(p, fld, 0); /* takes the field's slot */
    p->v[fld] = c->args->v[fld];
}

/* Reads record seq of a platform event (no personal fields) and decodes its
 * plain fields into p; the event type comes from the record. */
static kr_err read_plain(struct cmd *c, uint64_t seq, struct kr_payload *p)
{
    struct jrn_record r;
    kr_err err = jrn_read_in(c->d->j, c->txn, seq, &r);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err; /* rows point at records that exist */
    int ev = kr_event_lookup(r.type, r.type_len);
    if (ev < 0)
        return KR_ECORRUPT;
    struct kr_diag d = {{0}, {0}};
    err = kr_event_decode(ev, &r, NULL, p, &d);
    if (err && err != KR_ENOTFOUND && err != KR_ENOMEM)
        return cmd_corrupt(c, seq, kr_events[ev].name, &d);
    return err;
}

/* Whether tenant t is a customer with data (active, or cancelled and not yet
 * erased): the only tenants a notice or incident can concern. */
static kr_err tenant_check(struct cmd *c, uint64_t t)
{
    if (c->d->platform) /* the platform shard hosts no tenant: ids only */
        return KR_OK;
    struct va_tenant row;
    kr_err err = va_tenant_get(&c->d->views, c->txn, t, &row);
    if (err == KR_OK && row.state != KR_TENANT_STATE_ACTIVE &&
        row.state != KR_TENANT_STATE_CANCELLED)
        err = KR_ENOTFOUND;
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, err, kr_fields[KR_FLD_TENANTS].name, "no such tenant");
    return err;
}

/* The audience and tenants arguments of notices.publish and incidents.open:
 * "listed" needs a non-empty list of existing tenants, "all" no list. */
static kr_err audience_check(struct cmd *c)
{
    const struct kr_value *ts = &c->args->v[KR_FLD_TENANTS];
    if (c->args->v[KR_FLD_AUDIENCE].u == KR_AUDIENCE_ALL) {
        if (ts->set && ts->n)
            return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_TENANTS].name,
                            "only for audience listed");
        return KR_OK;
    }
    if (!ts->set || ts->n == 0)
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_TENANTS].name,
                        "audience listed needs at least one tenant");
    for (uint32_t i = 0; i < ts->n; i++) {
        uint64_t t;
        memcpy(&t, ts->p + 8 * (size_t)i, 8);
        kr_err err = tenant_check(c, t);
        if (err)
            return err;
    }
    return KR_OK;
}

static void set_audience(struct kr_payload *p, const struct cmd *c)
{
    set_arg(p, c, KR_FLD_AUDIENCE);
    if (c->args->v[KR_FLD_AUDIENCE].u == KR_AUDIENCE_ALL)
        kr_set_tenants(p, KR_FLD_TENANTS, NULL, 0);
    else
        set_arg(p, c, KR_FLD_TENANTS);
}

/* ---- Notice rows ---- */

struct notice_row {
    uint64_t seq, effective;
    uint8_t kind, audience;
};

static kr_err notice_get(struct kr_views *v, MDB_txn *txn, const uint8_t notice[16],
                         struct notice_row *out)
{
    struct vkey k;
    MDB_val val;
    vk_init(&k);
    vk_bytes(&k, notice, 16);
    kr_err err = v_get(v, txn, VIEW_NOTICES, &k, &val);
    if (err)
        return err;
    if (val.mv_size != 18)
        return KR_ECORRUPT;
    const uint8_t *b = val.mv_data;
    out->seq = v_get_u64(b);
    out->effective = v_get_u64(b + 8);
    out->kind = b[16];
    out->audience = b[17];
    return KR_OK;
}

static kr_err notice_acked(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                           const uint8_t account[16], const uint8_t notice[16], bool *acked)
{
    struct vkey k;
    MDB_val val;
    vk_init(&k);
    vk_u64(&k, tenant);
    vk_bytes(&k, account, 16);
    vk_bytes(&k, notice, 16);
    kr_err err = v_get(v, txn, VIEW_NOTICE_ACKS, &k, &val);
    *acked = err == KR_OK;
    return err == KR_ENOTFOUND ? KR_OK : err;
}

/* A tenant's notices in (effective, notice) order, either way: a merge of
 * its own rows in v.notice_tenants with tenant 0's (audience all). The
 * position is the 24-byte suffix effective|notice. */
#define NT_POS 24u

struct nt_iter {
    MDB_cursor *cur[2];
    uint64_t prefix[2];
    bool valid[2];
    uint8_t pos[2][NT_POS];
    int n;
    bool desc;
};

static void nt_load(struct nt_iter *it, int i, int rc, const MDB_val *k)
{
    it->valid[i] = false;
    if (rc != MDB_SUCCESS || k->mv_size != 8 + NT_POS)
        return;
    if (v_get_u64(k->mv_data) != it->prefix[i])
        return;
    memcpy(it->pos[i], (const uint8_t *)k->mv_data + 8, NT_POS);
    it->valid[i] = true;
}

/* Positions the iterator after `from` (exclusive; NULL = from the first, or
 * the last when desc). */
static kr_err nt_open(struct nt_iter *it, struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                      const uint8_t *from, bool desc)
{
    memset(it, 0, sizeof *it);
    it->desc = desc;
    it->n = tenant == 0 ? 1 : 2;
    it->prefix[0] = 0;
    it->prefix[1] = tenant;
    for (int i = 0; i < it->n; i++) {
        int rc = mdb_cursor_open(txn, v->db[VIEW_NOTICE_TENANTS], &it->cur[i]);
        if (rc)
            return kr_err_from_mdb(rc);
        uint8_t key[8 + NT_POS];
        MDB_val k, val;
        if (from) {
            v_put_u64(key, it->prefix[i]);
            memcpy(key + 8, from, NT_POS);
        } else {
            /* asc: the prefix itself; desc: the first key past the prefix */
            v_put_u64(key, it->prefix[i] + (desc ? 1u : 0u));
            memset(key + 8, 0, NT_POS);
        }
        k = (MDB_val){sizeof key, key};
        rc = mdb_cursor_get(it->cur[i], &k, &val, MDB_SET_RANGE);
        if (desc) {
            /* the last key before `key` */
            if (rc == MDB_NOTFOUND)
                rc = mdb_cursor_get(it->cur[i], &k, &val, MDB_LAST);
            else if (rc == MDB_SUCCESS)
                rc = mdb_cursor_get(it->cur[i], &k, &val, MDB_PREV);
        } else if (rc == MDB_SUCCESS && from && k.mv_size == sizeof key &&
                   memcmp(k.mv_data, key, sizeof key) == 0) {
            rc = mdb_cursor_get(it->cur[i], &k, &val, MDB_NEXT); /* exclusive */
        }
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            return kr_err_from_mdb(rc);
        nt_load(it, i, rc, &k);
    }
    return KR_OK;
}

/* The next notice position into pos (copy); false at the end. */
static kr_err nt_next(struct nt_iter *it, uint8_t pos[NT_POS], bool *got)
{
    int pick = -1;
    for (int i = 0; i < it->n; i++) {
        if (!it->valid[i])
            continue;
        if (pick < 0) {
            pick = i;
            continue;
        }
        int cmp = memcmp(it->pos[i], it->pos[pick], NT_POS);
        if (it->desc ? cmp > 0 : cmp < 0)
            pick = i;
    }
    *got = pick >= 0;
    if (pick < 0)
        return KR_OK;
    memcpy(pos, it->pos[pick], NT_POS);
    for (int i = 0; i < it->n; i++) {
        if (!it->valid[i] || memcmp(it->pos[i], pos, NT_POS) != 0)
            continue;
        MDB_val k, val;
        int rc = mdb_cursor_get(it->cur[i], &k, &val, it->desc ? MDB_PREV : MDB_NEXT);
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            return kr_err_from_mdb(rc);
        nt_load(it, i, rc, &k);
    }
    return KR_OK;
}

static void nt_close(struct nt_iter *it)
{
    for (int i = 0; i < 2; i++)
        if (it->cur[i])
            mdb_cursor_close(it->cur[i]);
}

/* ---- Unread notices (auth.login) ---- */

kr_err notices_unread(struct kr_domain *d, MDB_txn *txn, uint64_t tenant, const uint8_t account[16],
                      struct notice_unread *out, size_t cap, size_t *n)
{
    struct nt_iter it;
    kr_err err = nt_open(&it, &d->views, txn, tenant, NULL, true);
    *n = 0;
    for (uint32_t scanned = 0; !err && *n < cap && scanned < KR_NOTICES_SCAN_MAX; scanned++) {
        uint8_t pos[NT_POS];
        bool got, acked;
        struct notice_row row;
        if ((err = nt_next(&it, pos, &got)) || !got)
            break;
        if ((err = notice_acked(&d->views, txn, tenant, account, pos + 8, &acked)))
            break;
        if (acked)
            continue;
        if ((err = notice_get(&d->views, txn, pos + 8, &row)))
            break;
        struct notice_unread *u = &out[(*n)++];
        memcpy(u->notice, pos + 8, 16);
        u->seq = row.seq;
        u->effective = row.effective;
        u->kind = row.kind;
    }
    nt_close(&it);
    if (err == KR_ENOTFOUND)
        err = KR_ECORRUPT; /* a tenant row names a notice that is not there */
    return err;
}

/* One notice as a map of the given fields, read from its record. */
static kr_err pack_notice(struct cmd *c, struct kr_payload *p, uint64_t seq, bool with_ack,
                          bool acked)
{
    kr_err err = read_plain(c, seq, p);
    if (err)
        return err;
    res_map(c, with_ack ? 6 : 5);
    res_val(c, KR_FLD_NOTICE, &p->v[KR_FLD_NOTICE]);
    res_val(c, KR_FLD_NOTICE_KIND, &p->v[KR_FLD_NOTICE_KIND]);
    res_val(c, KR_FLD_TITLE, &p->v[KR_FLD_TITLE]);
    res_val(c, KR_FLD_BODY, &p->v[KR_FLD_BODY]);
    res_val(c, KR_FLD_EFFECTIVE, &p->v[KR_FLD_EFFECTIVE]);
    if (with_ack)
        res_bool(c, KR_FLD_ACKNOWLEDGED, acked);
    return KR_OK;
}

kr_err notices_pack_unread(struct cmd *c, uint64_t tenant, const uint8_t account[16])
{
    struct notice_unread u[KR_LOGIN_NOTICES_MAX];
    size_t n;
    kr_err err = notices_unread(c->d, c->txn, tenant, account, u, KR_LOGIN_NOTICES_MAX, &n);
    if (err)
        return err;
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    res_keyname(c, list_name(KR_OP_AUTH_LOGIN));
    msgpack_pack_array(&c->res, n);
    for (size_t i = 0; i < n && !err; i++)
        err = pack_notice(c, p, u[i].seq, false, false);
    kr_payload_free(p);
    return err;
}

/* ---- notices.publish (operator) ---- */

kr_err cmd_notices_publish(struct cmd *c)
{
    uint8_t id[16];
    kr_err err = KR_OK;
    if ((err = audience_check(c)))
        return err;
    cmd_new_id(c, id);
    struct kr_payload *p = cmd_event(c, KR_EV_NOTICE_PUBLISHED, 0, 0);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_NOTICE, id, 16);
    set_arg(p, c, KR_FLD_NOTICE_KIND);
    set_arg(p, c, KR_FLD_TITLE);
    set_arg(p, c, KR_FLD_BODY);
    set_arg(p, c, KR_FLD_EFFECTIVE);
    set_audience(p, c);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 1);
    res_bytes(c, KR_FLD_NOTICE, id, 16);
    return KR_OK;
}

/* ---- notices.list, notices.ack (client) ---- */

/* Whether notice `notice` concerns tenant (published to all, or listing
 * it); KR_ENOTFOUND otherwise, as for a missing notice. */
static kr_err notice_visible(struct cmd *c, uint64_t tenant, const uint8_t notice[16],
                             struct notice_row *row)
{
    kr_err err = notice_get(&c->d->views, c->txn, notice, row);
    if (err)
        return err;
    struct vkey k;
    MDB_val val;
    vk_init(&k);
    vk_u64(&k, row->audience == KR_AUDIENCE_ALL ? 0 : tenant);
    vk_u64(&k, row->effective);
    vk_bytes(&k, notice, 16);
    return v_get(&c->d->views, c->txn, VIEW_NOTICE_TENANTS, &k, &val);
}

kr_err cmd_notices_list(struct cmd *c)
{
    const struct kr_value *cur = &c->args->v[KR_FLD_CURSOR];
    uint64_t tenant = c->who->tenant;
    uint32_t limit = cmd_limit(c);
    struct nt_iter it;
    kr_err err = KR_OK;
    if (cur->set && cur->n != NT_POS)
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_CURSOR].name, "not a cursor of this list");
    uint8_t(*pos)[NT_POS] = calloc(limit, NT_POS);
    if (!pos)
        return KR_ENOMEM;
    uint32_t n = 0;
    bool more = false;
    err = nt_open(&it, &c->d->views, c->txn, tenant, cur->set ? cur->p : NULL, false);
    while (!err) {
        uint8_t next[NT_POS];
        bool got;
        if ((err = nt_next(&it, next, &got)) || !got)
            break;
        if (n == limit) {
            more = true;
            break;
        }
        memcpy(pos[n++], next, NT_POS);
    }
    nt_close(&it);

    if (!err) {
        res_map(c, 2);
        res_keyname(c, list_name(KR_OP_NOTICES_LIST));
        msgpack_pack_array(&c->res, n);
    }
    for (uint32_t i = 0; i < n && !err; i++) {
        struct notice_row row;
        bool acked;
        if ((err = notice_get(&c->d->views, c->txn, pos[i] + 8, &row)) ||
            (err = notice_acked(&c->d->views, c->txn, tenant, c->who->account, pos[i] + 8, &acked)))
            break;
        err = pack_notice(c, c->scratch, row.seq, true, acked);
    }
    if (!err) {
        res_cursor(c, more, pos[n - 1], NT_POS);
    }
    free(pos);
    return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
}

kr_err cmd_notices_ack(struct cmd *c)
{
    uint64_t tenant = c->who->tenant, version;
    struct notice_row row;
    bool acked;
    kr_err err = KR_OK;
    const uint8_t *notice = c->args->v[KR_FLD_NOTICE].p;
    if ((err = notice_visible(c, tenant, notice, &row)))
        return err == KR_ENOTFOUND
                   ? cmd_fail(c, err, kr_fields[KR_FLD_NOTICE].name, "no such notice")
                   : err;
    if ((err = notice_acked(&c->d->views, c->txn, tenant, c->who->account, notice, &acked)))
        return err;
    if (!acked) {
        if ((err = cmd_stream_version(c, tenant, kr_events[KR_EV_NOTICE_ACKNOWLEDGED].stream_prefix,
                                      c->who->account, &version)))
            return err;
        struct kr_payload *p = cmd_event(c, KR_EV_NOTICE_ACKNOWLEDGED, tenant, version);
        if (!p)
            return KR_ENOMEM;
        kr_set_bytes(p, KR_FLD_ACCOUNT, c->who->account, 16);
        kr_set_bytes(p, KR_FLD_NOTICE, notice, 16);
        if ((err = cmd_commit(c)))
            return err;
    }
    res_map(c, 0);
    return KR_OK;
}

/* ---- Incident rows ---- */

struct incident_row {
    uint64_t version, opened_seq, text_seq, detected, deadline;
    uint8_t scope, severity, audience;
    bool resolved;
};

static kr_err incident_get(struct cmd *c, const uint8_t incident[16], struct incident_row *out)
{
    struct vkey k;
    MDB_val val;
    vk_init(&k);
    vk_bytes(&k, incident, 16);
    kr_err err = v_get(&c->d->views, c->txn, VIEW_INCIDENTS, &k, &val);
    if (err)
        return err;
    if (val.mv_size != 44)
        return KR_ECORRUPT;
    const uint8_t *b = val.mv_data;
    out->version = v_get_u64(b);
    out->opened_seq = v_get_u64(b + 8);
    out->text_seq = v_get_u64(b + 16);
    out->detected = v_get_u64(b + 24);
    out->deadline = v_get_u64(b + 32);
    out->scope = b[40];
    out->severity = b[41];
    out->audience = b[42];
    out->resolved = b[43] != 0;
    return KR_OK;
}

/* The incident named by the argument; KR_ENOTFOUND with the diagnostics set. */
static kr_err incident_arg(struct cmd *c, struct incident_row *row)
{
    kr_err err = incident_get(c, c->args->v[KR_FLD_INCIDENT].p, row);
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, err, kr_fields[KR_FLD_INCIDENT].name, "no such incident");
    return err;
}

static kr_err version_arg(struct cmd *c, uint64_t version)
{
    if (c->args->v[KR_FLD_VERSION].u != version)
        return cmd_fail(c, KR_ECONFLICT, kr_fields[KR_FLD_VERSION].name,
                        "the incident changed since this version");
    return KR_OK;
}

/* ---- incidents.open, notify, update, resolve, overdue (operator) ---- */

kr_err cmd_incidents_open(struct cmd *c)
{
    uint8_t id[16];
    kr_err err = KR_OK;
    if ((err = audience_check(c)))
        return err;
    uint64_t detected = c->args->v[KR_FLD_DETECTED].u;
    if (detected > c->now)
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_DETECTED].name, "is in the future");
    uint64_t deadline = detected + INCIDENT_NOTICE_NS;
    cmd_new_id(c, id);
    struct kr_payload *p = cmd_event(c, KR_EV_INCIDENT_OPENED, 0, 0);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_INCIDENT, id, 16);
    set_arg(p, c, KR_FLD_INCIDENT_SCOPE);
    set_arg(p, c, KR_FLD_SEVERITY);
    set_arg(p, c, KR_FLD_TITLE);
    set_arg(p, c, KR_FLD_SUMMARY);
    set_arg(p, c, KR_FLD_DETECTED);
    kr_set_u64(p, KR_FLD_DEADLINE, deadline);
    set_audience(p, c);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 3);
    res_bytes(c, KR_FLD_INCIDENT, id, 16);
    res_u64(c, KR_FLD_DEADLINE, deadline);
    res_u64(c, KR_FLD_VERSION, c->ev[0].version);
    return KR_OK;
}

/* The e-mail address of tenant's master account into p (KR_FLD_EMAIL, with
 * the rest of its account.created record). The master is the one account of
 * role master; accounts are found by id, so this looks through the tenant's
 * accounts (a handful in practice, KR_MASTER_SCAN_MAX at most). */
kr_err notices_master_email(struct cmd *c, uint64_t tenant, struct kr_payload *p)
{
    MDB_cursor *cur;
    MDB_val k, val;
    uint8_t prefix[8];
    kr_err err = KR_ENOTFOUND;
    uint64_t seq = 0;
    v_put_u64(prefix, tenant);
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_ACCOUNTS], &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    k = (MDB_val){8, prefix};
    rc = mdb_cursor_get(cur, &k, &val, MDB_SET_RANGE);
    for (uint32_t i = 0; rc == MDB_SUCCESS && i < KR_MASTER_SCAN_MAX; i++) {
        if (k.mv_size != 24 || memcmp(k.mv_data, prefix, 8) != 0)
            break;
        struct va_account acc;
        if ((err = va_account_get(&c->d->views, c->txn, tenant, (const uint8_t *)k.mv_data + 8,
                                  &acc)))
            break;
        if (acc.role == KR_ROLE_MASTER) {
            seq = acc.created_seq;
            break;
        }
        err = KR_ENOTFOUND;
        rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    if (!seq)
        return err ? err : KR_ENOTFOUND;
    if ((err = cmd_read(c, seq, KR_EV_ACCOUNT_CREATED, p)))
        return err;
    return p->v[KR_FLD_EMAIL].set ? KR_OK : KR_ECORRUPT;
}

/* Adds to c the events that record tenant notified of incident (at stream
 * version `version`) over channel: incident.notified and, for the channel
 * email, an incident_notice e-mail queued to the tenant's master account.
 * KR_ENOTFOUND if the tenant has no master account (diagnostics set). */
static kr_err notify_events(struct cmd *c, const uint8_t incident[16], uint64_t version,
                            uint64_t tenant, uint64_t channel)
{
    kr_err err;
    struct kr_payload *p = cmd_event(c, KR_EV_INCIDENT_NOTIFIED, 0, version);
    if (!p)
        return KR_ENOMEM;
    if ((err = kr_set_copy(p, KR_FLD_INCIDENT, incident, 16)))
        return err;
    kr_set_u64(p, KR_FLD_TENANT, tenant);
    kr_set_u64(p, KR_FLD_CHANNEL, channel);
    if (channel != KR_CHANNEL_EMAIL || c->d->platform)
        return KR_OK; /* on the platform: the tenant's shard queues it when it imports this */
    err = notices_queue_incident_notice(c, incident, tenant);
    return err == KR_ENOTFOUND
               ? cmd_fail(c, err, kr_fields[KR_FLD_TENANT].name, "the tenant has no master account")
               : err;
}

kr_err notices_queue_incident_notice(struct cmd *c, const uint8_t incident[16], uint64_t tenant)
{
    uint8_t message[16];
    kr_err err = notices_master_email(c, tenant, c->scratch);
    if (err)
        return err;
    struct kr_payload *m = cmd_event(c, KR_EV_OUTBOX_QUEUED, tenant, 0);
    if (!m)
        return KR_ENOMEM;
    cmd_new_id(c, message);
    const struct kr_value *email = &c->scratch->v[KR_FLD_EMAIL];
    if ((err = kr_set_copy(m, KR_FLD_MESSAGE, message, 16)) ||
        (err = kr_set_copy(m, KR_FLD_EMAIL, email->p, email->n)) ||
        (err = kr_set_copy(m, KR_FLD_INCIDENT, incident, 16)))
        return err;
    kr_set_u64(m, KR_FLD_TEMPLATE, KR_TEMPLATE_INCIDENT_NOTICE);
    return KR_OK;
}

kr_err notices_incident_channels(struct cmd *c, const uint8_t incident[16], uint64_t tenant,
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

kr_err cmd_incidents_notify(struct cmd *c)
{
    struct incident_row row = {0};
    uint8_t channels;
    kr_err err = KR_OK;
    if ((err = incident_arg(c, &row)))
        return err;
    const uint8_t *incident = c->args->v[KR_FLD_INCIDENT].p;
    uint64_t tenant = c->args->v[KR_FLD_TENANT].u;
    uint64_t channel = c->args->v[KR_FLD_CHANNEL].u;
    if ((err = notices_incident_channels(c, incident, tenant, &channels)))
        return err == KR_ENOTFOUND ? cmd_fail(c, err, kr_fields[KR_FLD_TENANT].name,
                                              "not affected by this incident")
                                   : err;
    if (((unsigned)channels >> channel) & 1u) {
        res_map(c, 1); /* notified over this channel already */
        res_u64(c, KR_FLD_VERSION, row.version);
        return KR_OK;
    }
    if ((err = notify_events(c, incident, row.version, tenant, channel)) || (err = cmd_commit(c)))
        return err;
    res_map(c, 1);
    res_u64(c, KR_FLD_VERSION, c->ev[0].version);
    return KR_OK;
}

kr_err cmd_incidents_update(struct cmd *c)
{
    struct incident_row row = {0};
    kr_err err = KR_OK;
    if ((err = incident_arg(c, &row)) || (err = version_arg(c, row.version)))
        return err;
    struct kr_payload *p = cmd_event(c, KR_EV_INCIDENT_UPDATED, 0, row.version);
    if (!p)
        return KR_ENOMEM;
    set_arg(p, c, KR_FLD_INCIDENT);
    set_arg(p, c, KR_FLD_SEVERITY);
    set_arg(p, c, KR_FLD_SUMMARY);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 1);
    res_u64(c, KR_FLD_VERSION, c->ev[0].version);
    return KR_OK;
}

kr_err cmd_incidents_resolve(struct cmd *c)
{
    struct incident_row row = {0};
    kr_err err = KR_OK;
    if ((err = incident_arg(c, &row)) || (err = version_arg(c, row.version)))
        return err;
    if (row.resolved)
        return cmd_fail(c, KR_ECONFLICT, kr_fields[KR_FLD_INCIDENT].name, "already resolved");
    struct kr_payload *p = cmd_event(c, KR_EV_INCIDENT_RESOLVED, 0, row.version);
    if (!p)
        return KR_ENOMEM;
    set_arg(p, c, KR_FLD_INCIDENT);
    set_arg(p, c, KR_FLD_SUMMARY);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 1);
    res_u64(c, KR_FLD_VERSION, c->ev[0].version);
    return KR_OK;
}

struct due {
    uint64_t deadline, tenant, version;
    uint8_t incident[16];
};

kr_err cmd_incidents_overdue(struct cmd *c)
{
    const struct kr_value *w = &c->args->v[KR_FLD_WITHIN_HOURS];
    uint64_t horizon = c->now + (w->set ? w->u : 0) * 3600ull * 1000000000ull;
    struct due *due = calloc(KR_DUE_LIST_MAX, sizeof *due);
    MDB_cursor *cur;
    MDB_val k, val;
    uint32_t n = 0;
    if (!due)
        return KR_ENOMEM;
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_INCIDENT_DUE], &cur);
    if (rc == MDB_SUCCESS) {
        for (rc = mdb_cursor_get(cur, &k, &val, MDB_FIRST);
             rc == MDB_SUCCESS && n < KR_DUE_LIST_MAX;
             rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
            if (k.mv_size != 32) {
                rc = MDB_CORRUPTED;
                break;
            }
            const uint8_t *b = k.mv_data;
            uint64_t deadline = v_get_u64(b);
            if (deadline > horizon)
                break;
            due[n].deadline = deadline;
            memcpy(due[n].incident, b + 8, 16);
            due[n].tenant = v_get_u64(b + 24);
            n++;
        }
        mdb_cursor_close(cur);
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        free(due);
        return rc == MDB_CORRUPTED ? KR_ECORRUPT : kr_err_from_mdb(rc);
    }
    for (uint32_t i = 0; i < n; i++) {
        struct incident_row row = {0};
        kr_err err = incident_get(c, due[i].incident, &row);
        if (err) {
            free(due);
            return err == KR_ENOTFOUND ? KR_ECORRUPT : err; /* a due entry without its incident */
        }
        due[i].version = row.version;
    }
    res_map(c, 1);
    res_keyname(c, list_name(KR_OP_INCIDENTS_OVERDUE));
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n; i++) {
        res_map(c, 5);
        res_bytes(c, KR_FLD_INCIDENT, due[i].incident, 16);
        res_u64(c, KR_FLD_TENANT, due[i].tenant);
        res_u64(c, KR_FLD_DEADLINE, due[i].deadline);
        res_bool(c, KR_FLD_OVERDUE, due[i].deadline <= c->now);
        res_u64(c, KR_FLD_VERSION, due[i].version);
    }
    free(due);
    return KR_OK;
}

/* ---- incidents.report, incidents.list (client) ---- */

kr_err cmd_incidents_report(struct cmd *c)
{
    uint8_t id[16];
    kr_err err = KR_OK;
    cmd_new_id(c, id);
    struct kr_payload *p = cmd_event(c, KR_EV_INCIDENT_REPORTED, c->who->tenant, 0);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_REPORT, id, 16);
    set_arg(p, c, KR_FLD_SEVERITY);
    set_arg(p, c, KR_FLD_DETAILS);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 1);
    res_bytes(c, KR_FLD_REPORT, id, 16);
    return KR_OK;
}

struct open_incident {
    uint8_t id[16];
    struct incident_row row;
};

static int open_incident_cmp(const void *x, const void *y)
{
    const struct open_incident *a = x, *b = y;
    if (a->row.detected != b->row.detected)
        return a->row.detected < b->row.detected ? -1 : 1;
    return memcmp(a->id, b->id, 16);
}

/* Writes key, then an array of the incidents affecting tenant (open and
 * resolved, as incidents.list lists them), by time of detection, oldest
 * first or newest first, at most cap of them (the newest when cut). It is one
 * entry of a map the caller opened. */
/* When account of tenant acknowledged having read incident (*at, 0 if it
 * has not). */
static kr_err incident_acked(struct cmd *c, const uint8_t incident[16], uint64_t tenant,
                             const uint8_t account[16], uint64_t *at)
{
    struct vkey k;
    MDB_val val;
    vk_init(&k);
    vk_bytes(&k, incident, 16);
    vk_u64(&k, tenant);
    vk_bytes(&k, account, 16);
    kr_err err = v_get(&c->d->views, c->txn, VIEW_INCIDENT_ACKS, &k, &val);
    *at = 0;
    if (err)
        return err == KR_ENOTFOUND ? KR_OK : err;
    if (val.mv_size != 8)
        return views_corrupt(VIEW_INCIDENT_ACKS, k.b, k.n, "row is not 8 bytes", c->diag);
    *at = v_get_u64(val.mv_data);
    return KR_OK;
}

static kr_err incidents_pack(struct cmd *c, uint64_t tenant, const char *key, uint32_t cap,
                             bool newest_first, bool with_ack)
{
    kr_err err = KR_OK;
    struct open_incident *inc = calloc(KR_INCIDENTS_LIST_MAX, sizeof *inc);
    struct kr_payload *title = kr_payload_new();
    MDB_cursor *cur = NULL;
    MDB_val k, val;
    uint8_t prefix[8];
    uint32_t n = 0;
    if (!inc || !title) {
        err = KR_ENOMEM;
        goto out;
    }
    v_put_u64(prefix, tenant);
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_INCIDENT_TENANTS], &cur);
    if (rc) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    k = (MDB_val){8, prefix};
    for (rc = mdb_cursor_get(cur, &k, &val, MDB_SET_RANGE);
         rc == MDB_SUCCESS && n < KR_INCIDENTS_LIST_MAX;
         rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
        if (k.mv_size != 24 || memcmp(k.mv_data, prefix, 8) != 0)
            break;
        memcpy(inc[n].id, (const uint8_t *)k.mv_data + 8, 16);
        if ((err = incident_get(c, inc[n].id, &inc[n].row)))
            goto out;
        n++; /* open or resolved: a resolved incident stays, marked */
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    qsort(inc, n, sizeof *inc, open_incident_cmp);
    uint32_t shown = n < cap ? n : cap;
    res_keyname(c, key);
    msgpack_pack_array(&c->res, shown);
    for (uint32_t j = 0; j < shown; j++) {
        uint32_t i = newest_first ? n - 1 - j : j;
        const struct incident_row *r = &inc[i].row;
        if ((err = read_plain(c, r->opened_seq, title)) ||
            (err = read_plain(c, r->text_seq, c->scratch)))
            goto out;
        uint64_t at = 0;
        if (with_ack && (err = incident_acked(c, inc[i].id, tenant, c->who->account, &at)))
            goto out;
        res_map(c, with_ack ? 9 : 8);
        res_bytes(c, KR_FLD_INCIDENT, inc[i].id, 16);
        res_enum(c, KR_FLD_INCIDENT_SCOPE, r->scope);
        res_enum(c, KR_FLD_SEVERITY, r->severity);
        res_val(c, KR_FLD_TITLE, &title->v[KR_FLD_TITLE]);
        res_val(c, KR_FLD_SUMMARY, &c->scratch->v[KR_FLD_SUMMARY]);
        res_u64(c, KR_FLD_DETECTED, r->detected);
        res_u64(c, KR_FLD_DEADLINE, r->deadline);
        res_bool(c, KR_FLD_RESOLVED, r->resolved);
        if (with_ack && at)
            res_u64(c, KR_FLD_ACKNOWLEDGED_AT, at);
        else if (with_ack)
            res_nil(c, KR_FLD_ACKNOWLEDGED_AT);
    }
out:
    if (cur)
        mdb_cursor_close(cur);
    kr_payload_free(title);
    free(inc);
    return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
}

kr_err cmd_incidents_list(struct cmd *c)
{
    res_map(c, 1);
    return incidents_pack(c, c->who->tenant, list_name(KR_OP_INCIDENTS_LIST), KR_INCIDENTS_LIST_MAX,
                          false, true);
}

kr_err incidents_pack_login(struct cmd *c, uint64_t tenant)
{
    const struct kr_op_def *o = &kr_ops[KR_OP_AUTH_LOGIN];
    const char *key = NULL;
    for (uint32_t i = 0, lists = 0; i < o->nresult && !key; i++)
        if (o->result[i].field < 0 && lists++ == 1)
            key = o->result[i].list_name; /* the second list: "incidents" */
    KR_ASSERT(key != NULL);
    return incidents_pack(c, tenant, key, KR_LOGIN_INCIDENTS_MAX, true, false);
}

/* ---- incidents.ack (client), incidents.readers (operator) ---- */

kr_err cmd_incidents_ack(struct cmd *c)
{
    const uint8_t *incident = c->args->v[KR_FLD_INCIDENT].p;
    uint64_t tenant = c->who->tenant, version, at;
    uint8_t channels;
    /* Only an incident that affects the caller's tenant exists for it. */
    kr_err err = notices_incident_channels(c, incident, tenant, &channels);
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, err, kr_fields[KR_FLD_INCIDENT].name, "no such incident");
    if (err || (err = incident_acked(c, incident, tenant, c->who->account, &at)))
        return err;
    if (!at) {
        if ((err =
                 cmd_stream_version(c, tenant, kr_events[KR_EV_INCIDENT_ACKNOWLEDGED].stream_prefix,
                                    incident, &version)))
            return err;
        struct kr_payload *p = cmd_event(c, KR_EV_INCIDENT_ACKNOWLEDGED, tenant, version);
        if (!p)
            return KR_ENOMEM;
        kr_set_bytes(p, KR_FLD_INCIDENT, incident, 16);
        kr_set_bytes(p, KR_FLD_ACCOUNT, c->who->account, 16);
        if ((err = cmd_commit(c)))
            return err;
    }
    res_map(c, 0);
    return KR_OK;
}

#define READER_POS 24u /* tenant(8) account(16): the cursor of incidents.readers */

kr_err cmd_incidents_readers(struct cmd *c)
{
    const uint8_t *incident = c->args->v[KR_FLD_INCIDENT].p;
    const struct kr_value *cur = &c->args->v[KR_FLD_CURSOR];
    uint32_t limit = cmd_limit(c), n = 0;
    struct incident_row row;
    kr_err err = incident_arg(c, &row);
    if (err)
        return err;
    if (cur->set && cur->n != READER_POS)
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_CURSOR].name, "not a cursor of this list");
    uint8_t *rows = calloc(limit, READER_POS + 8), from[16 + READER_POS];
    if (!rows)
        return KR_ENOMEM;
    MDB_cursor *mc;
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_INCIDENT_ACKS], &mc);
    if (rc) {
        free(rows);
        return kr_err_from_mdb(rc);
    }
    memcpy(from, incident, 16);
    memset(from + 16, 0, READER_POS);
    if (cur->set)
        memcpy(from + 16, cur->p, READER_POS);
    MDB_val k = {cur->set ? sizeof from : 16, from}, v;
    bool more = false;
    rc = mdb_cursor_get(mc, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_SUCCESS && cur->set && k.mv_size == sizeof from &&
        memcmp(k.mv_data, from, sizeof from) == 0)
        rc = mdb_cursor_get(mc, &k, &v, MDB_NEXT); /* after the cursor */
    for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(mc, &k, &v, MDB_NEXT)) {
        if (k.mv_size != sizeof from || memcmp(k.mv_data, incident, 16) != 0)
            break; /* past this incident's rows (every key of the view is 40 bytes) */
        if (v.mv_size != 8) {
            err = views_corrupt(VIEW_INCIDENT_ACKS, k.mv_data, k.mv_size, "row is not 8 bytes",
                                c->diag);
            break;
        }
        if (n == limit) {
            more = true;
            break;
        }
        memcpy(rows + (size_t)n * (READER_POS + 8), (const uint8_t *)k.mv_data + 16, READER_POS);
        memcpy(rows + (size_t)n * (READER_POS + 8) + READER_POS, v.mv_data, 8);
        n++;
    }
    mdb_cursor_close(mc);
    if (!err && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
    if (!err) {
        res_map(c, 2);
        res_keyname(c, list_name(KR_OP_INCIDENTS_READERS));
        msgpack_pack_array(&c->res, n);
        for (uint32_t i = 0; i < n; i++) {
            const uint8_t *r = rows + (size_t)i * (READER_POS + 8);
            res_map(c, 3);
            res_u64(c, KR_FLD_TENANT, v_get_u64(r));
            res_bytes(c, KR_FLD_ACCOUNT, r + 8, 16);
            res_u64(c, KR_FLD_TIME, v_get_u64(r + READER_POS));
        }
        res_cursor(c, more, n ? rows + (size_t)(n - 1) * (READER_POS + 8) : NULL, READER_POS);
    }
    free(rows);
    return err;
}

/* ---- incidents.history (client) ---- */

/* The seqs of the incident's opening, updates and resolution, in order, up
 * to stream version `version` (what the command's snapshot holds). */
static kr_err history_seqs(struct cmd *c, const uint8_t incident[16], uint64_t version,
                           uint64_t *seqs, uint32_t *n)
{
    char s[KR_STREAM_MAX + 1];
    const char *prefix = kr_events[KR_EV_INCIDENT_OPENED].stream_prefix;
    size_t pl = strlen(prefix);
    *n = 0;
    if (pl + 34 > sizeof s)
        return KR_EINVAL;
    memcpy(s, prefix, pl);
    s[pl] = '/';
    sodium_bin2hex(s + pl + 1, 33, incident, 16);
    struct jrn_query q = {.kind = JRN_Q_STREAM, .tenant = 0, .stream = s, .stream_len = pl + 33};
    struct jrn_cursor *cur;
    struct jrn_record r;
    kr_err err = jrn_cursor_new(c->d->j, &q, &cur);
    if (err)
        return err;
    for (uint32_t scanned = 0; scanned < KR_INCIDENT_HISTORY_SCAN_MAX; scanned++) {
        if ((err = jrn_cursor_next(cur, &r)) || r.version > version)
            break;
        int ev = kr_event_lookup(r.type, r.type_len);
        if (ev != KR_EV_INCIDENT_OPENED && ev != KR_EV_INCIDENT_UPDATED &&
            ev != KR_EV_INCIDENT_RESOLVED)
            continue; /* notifications name other tenants: never shown */
        if (*n == KR_INCIDENT_HISTORY_MAX)
            break;
        seqs[(*n)++] = r.seq;
    }
    jrn_cursor_free(cur);
    return err == KR_ENOTFOUND ? KR_OK : err;
}

kr_err cmd_incidents_history(struct cmd *c)
{
    const uint8_t *incident = c->args->v[KR_FLD_INCIDENT].p;
    struct incident_row row = {0};
    uint8_t channels;
    uint64_t seqs[KR_INCIDENT_HISTORY_MAX];
    uint32_t n = 0;
    /* Only an incident that affects the caller's tenant exists for it. */
    kr_err err = notices_incident_channels(c, incident, c->who->tenant, &channels);
    if (!err)
        err = incident_get(c, incident, &row);
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, err, kr_fields[KR_FLD_INCIDENT].name, "no such incident");
    if (err || (err = history_seqs(c, incident, row.version, seqs, &n)))
        return err;
    res_map(c, 1);
    res_keyname(c, list_name(KR_OP_INCIDENTS_HISTORY));
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n; i++) {
        struct jrn_record r;
        if ((err = jrn_read_in(c->d->j, c->txn, seqs[i], &r)) ||
            (err = read_plain(c, seqs[i], c->scratch)))
            return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
        res_map(c, 5);
        res_u64(c, KR_FLD_SEQ, seqs[i]);
        res_u64(c, KR_FLD_TIME, r.time_ns);
        res_str(c, KR_FLD_TYPE, r.type, r.type_len);
        if (c->scratch->v[KR_FLD_SEVERITY].set)
            res_val(c, KR_FLD_SEVERITY, &c->scratch->v[KR_FLD_SEVERITY]);
        else
            res_nil(c, KR_FLD_SEVERITY);
        res_val(c, KR_FLD_SUMMARY, &c->scratch->v[KR_FLD_SUMMARY]);
    }
    return KR_OK;
}

/* ---- incidents.all, incidents.reports, notices.all (operator) ---- */

/* A page of an operator's list over one view in key order: the keys (of
 * klen bytes) after the cursor argument that keep (NULL = all) keeps, at
 * most cap, into keys; *more says whether more follow, and next (klen bytes)
 * is then the cursor of the next page: the last key kept, or the last looked
 * at when KR_OPERATOR_SCAN_MAX keys were looked at first. */
static kr_err page_keys(struct cmd *c, enum kr_view view, size_t klen, uint8_t *keys, uint32_t cap,
                        bool (*keep)(struct cmd *c, const uint8_t *key, void *arg), void *arg,
                        uint32_t *n, bool *more, uint8_t *next)
{
    const struct kr_value *cur = &c->args->v[KR_FLD_CURSOR];
    MDB_cursor *mc;
    MDB_val k, v;
    *n = 0;
    *more = false;
    if (cur->set && cur->n != klen)
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_CURSOR].name, "not a cursor of this list");
    int rc = mdb_cursor_open(c->txn, c->d->views.db[view], &mc);
    if (rc)
        return kr_err_from_mdb(rc);
    if (cur->set) {
        k = (MDB_val){klen, (void *)cur->p};
        rc = mdb_cursor_get(mc, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_SUCCESS && k.mv_size == klen && memcmp(k.mv_data, cur->p, klen) == 0)
            rc = mdb_cursor_get(mc, &k, &v, MDB_NEXT); /* after the cursor */
    } else {
        rc = mdb_cursor_get(mc, &k, &v, MDB_FIRST);
    }
    for (uint32_t scanned = 0; rc == MDB_SUCCESS;
         scanned++, rc = mdb_cursor_get(mc, &k, &v, MDB_NEXT)) {
        if (k.mv_size != klen) {
            rc = MDB_CORRUPTED;
            break;
        }
        if (*n == cap || scanned == KR_OPERATOR_SCAN_MAX) {
            *more = true;
            break;
        }
        memcpy(next, k.mv_data, klen); /* the last looked at */
        if (keep && !keep(c, k.mv_data, arg))
            continue;
        memcpy(keys + klen * (*n)++, k.mv_data, klen);
    }
    mdb_cursor_close(mc);
    if (rc == MDB_CORRUPTED)
        return KR_ECORRUPT;
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? KR_OK : kr_err_from_mdb(rc);
}

/* How many affected tenants of the incident (deadline, id) still owe a
 * notification (v.incident_due), counted up to KR_DUE_LIST_MAX. */
static kr_err unnotified(struct cmd *c, uint64_t deadline, const uint8_t incident[16],
                         uint64_t *count)
{
    uint8_t prefix[24];
    MDB_cursor *mc;
    MDB_val k, v;
    *count = 0;
    v_put_u64(prefix, deadline);
    memcpy(prefix + 8, incident, 16);
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_INCIDENT_DUE], &mc);
    if (rc)
        return kr_err_from_mdb(rc);
    k = (MDB_val){sizeof prefix, prefix};
    for (rc = mdb_cursor_get(mc, &k, &v, MDB_SET_RANGE);
         rc == MDB_SUCCESS && *count < KR_DUE_LIST_MAX; rc = mdb_cursor_get(mc, &k, &v, MDB_NEXT)) {
        if (k.mv_size < sizeof prefix || memcmp(k.mv_data, prefix, sizeof prefix) != 0)
            break;
        (*count)++;
    }
    mdb_cursor_close(mc);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? KR_OK : kr_err_from_mdb(rc);
}

struct state_filter {
    int state; /* enum kr_enum_incident_state, or -1 for every incident */
    kr_err err;
};

/* Whether an incident (v.incidents key) is in the state asked for. */
static bool incident_in_state(struct cmd *c, const uint8_t *key, void *arg)
{
    struct state_filter *f = arg;
    struct incident_row row;
    uint64_t owed = 0;
    if (f->state < 0 || f->err)
        return !f->err;
    if ((f->err = incident_get(c, key, &row)))
        return false;
    if (f->state == KR_INCIDENT_STATE_OPEN)
        return !row.resolved;
    if (f->state == KR_INCIDENT_STATE_RESOLVED)
        return row.resolved;
    if (row.deadline > c->now)
        return false;
    f->err = unnotified(c, row.deadline, key, &owed);
    return !f->err && owed > 0;
}

kr_err cmd_incidents_all(struct cmd *c)
{
    const struct kr_value *st = &c->args->v[KR_FLD_INCIDENT_STATE];
    struct state_filter f = {st->set ? (int)st->u : -1, KR_OK};
    struct kr_payload *title = kr_payload_new();
    uint32_t limit = cmd_limit(c), n = 0;
    uint8_t *ids = calloc(limit, 16), next[16];
    bool more;
    kr_err err = KR_OK;
    if (!ids || !title) {
        err = KR_ENOMEM;
        goto out;
    }
    if ((err = page_keys(c, VIEW_INCIDENTS, 16, ids, limit, incident_in_state, &f, &n, &more,
                         next)) ||
        (err = f.err))
        goto out;
    res_map(c, 2);
    res_keyname(c, list_name(KR_OP_INCIDENTS_ALL));
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n; i++) {
        struct incident_row r;
        uint64_t owed;
        const uint8_t *id = ids + 16 * (size_t)i;
        if ((err = incident_get(c, id, &r)) || (err = unnotified(c, r.deadline, id, &owed)) ||
            (err = read_plain(c, r.opened_seq, title)) ||
            (err = read_plain(c, r.text_seq, c->scratch)))
            goto out;
        res_map(c, 11);
        res_bytes(c, KR_FLD_INCIDENT, id, 16);
        res_enum(c, KR_FLD_INCIDENT_SCOPE, r.scope);
        res_enum(c, KR_FLD_SEVERITY, r.severity);
        res_val(c, KR_FLD_TITLE, &title->v[KR_FLD_TITLE]);
        res_val(c, KR_FLD_SUMMARY, &c->scratch->v[KR_FLD_SUMMARY]);
        res_u64(c, KR_FLD_DETECTED, r.detected);
        res_u64(c, KR_FLD_DEADLINE, r.deadline);
        res_bool(c, KR_FLD_RESOLVED, r.resolved);
        res_bool(c, KR_FLD_OVERDUE, owed > 0 && r.deadline <= c->now);
        res_u64(c, KR_FLD_UNNOTIFIED, owed);
        res_u64(c, KR_FLD_VERSION, r.version);
    }
    res_cursor(c, more, next, 16);
out:
    kr_payload_free(title);
    free(ids);
    return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
}

kr_err cmd_incidents_reports(struct cmd *c)
{
    uint32_t limit = cmd_limit(c), n = 0;
    uint8_t *keys = calloc(limit, 24), next[24];
    bool more;
    kr_err err = KR_OK;
    if (!keys)
        return KR_ENOMEM;
    if ((err = page_keys(c, VIEW_REPORTS, 24, keys, limit, NULL, NULL, &n, &more, next)))
        goto out;
    res_map(c, 2);
    res_keyname(c, list_name(KR_OP_INCIDENTS_REPORTS));
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *key = keys + 24 * (size_t)i;
        struct vkey k;
        MDB_val v;
        struct jrn_record r;
        vk_init(&k);
        vk_bytes(&k, key, 24);
        if ((err = v_get(&c->d->views, c->txn, VIEW_REPORTS, &k, &v)))
            goto out;
        if (v.mv_size != 8) {
            err = KR_ECORRUPT;
            goto out;
        }
        uint64_t seq = v_get_u64(v.mv_data);
        if ((err = jrn_read_in(c->d->j, c->txn, seq, &r)))
            goto out;
        uint64_t time = r.time_ns;
        /* The details are personal: opened with the tenant's key. */
        if ((err = cmd_read(c, seq, KR_EV_INCIDENT_REPORTED, c->scratch)))
            goto out;
        res_map(c, 5);
        res_u64(c, KR_FLD_TENANT, v_get_u64(key));
        res_bytes(c, KR_FLD_REPORT, key + 8, 16);
        res_u64(c, KR_FLD_TIME, time);
        res_val(c, KR_FLD_SEVERITY, &c->scratch->v[KR_FLD_SEVERITY]);
        res_val(c, KR_FLD_DETAILS, &c->scratch->v[KR_FLD_DETAILS]);
    }
    res_cursor(c, more, next, 24);
out:
    free(keys);
    return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
}

kr_err cmd_notices_all(struct cmd *c)
{
    uint32_t limit = cmd_limit(c), n = 0;
    uint8_t *ids = calloc(limit, 16), next[16];
    bool more;
    kr_err err = KR_OK;
    if (!ids)
        return KR_ENOMEM;
    if ((err = page_keys(c, VIEW_NOTICES, 16, ids, limit, NULL, NULL, &n, &more, next)))
        goto out;
    res_map(c, 2);
    res_keyname(c, list_name(KR_OP_NOTICES_ALL));
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n; i++) {
        struct notice_row row;
        if ((err = notice_get(&c->d->views, c->txn, ids + 16 * (size_t)i, &row)) ||
            (err = read_plain(c, row.seq, c->scratch)))
            goto out;
        const struct kr_payload *p = c->scratch;
        res_map(c, 6);
        res_val(c, KR_FLD_NOTICE, &p->v[KR_FLD_NOTICE]);
        res_val(c, KR_FLD_NOTICE_KIND, &p->v[KR_FLD_NOTICE_KIND]);
        res_val(c, KR_FLD_TITLE, &p->v[KR_FLD_TITLE]);
        res_val(c, KR_FLD_BODY, &p->v[KR_FLD_BODY]);
        res_val(c, KR_FLD_EFFECTIVE, &p->v[KR_FLD_EFFECTIVE]);
        res_val(c, KR_FLD_AUDIENCE, &p->v[KR_FLD_AUDIENCE]);
    }
    res_cursor(c, more, next, 16);
out:
    free(ids);
    return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
}

/* ---- The outbox (delivery worker) ---- */

/* Decodes the plain fields of platform record seq (event ev) into p, in txn. */
static kr_err plain_in(struct kr_domain *d, MDB_txn *txn, uint64_t seq, int ev,
                       struct kr_payload *p)
{
    struct jrn_record r;
    kr_err err = jrn_read_in(d->j, txn, seq, &r);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
    if (kr_event_lookup(r.type, r.type_len) != ev)
        return KR_ECORRUPT;
    return kr_event_decode(ev, &r, NULL, p, NULL);
}

/* What an incident or notice e-mail tells, from the views and the records
 * they point at (payloads title, text: borrowed by out). KR_OK with nothing
 * set when the message names neither. */
static kr_err outbox_subject(struct kr_domain *d, MDB_txn *txn, const struct kr_payload *m,
                             struct kr_payload *title, struct kr_payload *text,
                             struct outbox_about *out)
{
    struct vkey k;
    MDB_val v;
    kr_err err;
    memset(out, 0, sizeof *out);
    const struct kr_value *inc = &m->v[KR_FLD_INCIDENT], *notice = &m->v[KR_FLD_NOTICE];
    if (inc->set && inc->n == 16) {
        vk_init(&k);
        vk_bytes(&k, inc->p, 16);
        if ((err = v_get(&d->views, txn, VIEW_INCIDENTS, &k, &v)))
            return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
        if (v.mv_size != 44)
            return KR_ECORRUPT;
        const uint8_t *b = v.mv_data;
        uint64_t text_seq = v_get_u64(b + 16);
        struct jrn_record r;
        if ((err = plain_in(d, txn, v_get_u64(b + 8), KR_EV_INCIDENT_OPENED, title)) ||
            (err = jrn_read_in(d->j, txn, text_seq, &r)))
            return err;
        int text_ev = kr_event_lookup(r.type, r.type_len); /* opened, updated or resolved */
        if (text_ev != KR_EV_INCIDENT_OPENED && text_ev != KR_EV_INCIDENT_UPDATED &&
            text_ev != KR_EV_INCIDENT_RESOLVED)
            return KR_ECORRUPT;
        if ((err = plain_in(d, txn, text_seq, text_ev, text)))
            return err;
        out->incident = true;
        out->title = &title->v[KR_FLD_TITLE];
        out->summary = &text->v[KR_FLD_SUMMARY];
        out->detected = v_get_u64(b + 24);
        out->deadline = v_get_u64(b + 32);
        out->scope = b[40];
        out->severity = b[41];
        out->resolved = b[43] != 0;
    } else if (notice->set && notice->n == 16) {
        vk_init(&k);
        vk_bytes(&k, notice->p, 16);
        if ((err = v_get(&d->views, txn, VIEW_NOTICES, &k, &v)))
            return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
        if (v.mv_size != 18)
            return KR_ECORRUPT;
        if ((err = plain_in(d, txn, v_get_u64(v.mv_data), KR_EV_NOTICE_PUBLISHED, title)))
            return err;
        out->notice = true;
        out->title = &title->v[KR_FLD_TITLE];
        out->body = &title->v[KR_FLD_BODY];
        out->effective = title->v[KR_FLD_EFFECTIVE].u;
        out->notice_kind = (uint8_t)title->v[KR_FLD_NOTICE_KIND].u;
    }
    return KR_OK;
}

kr_err outbox_pending(struct kr_domain *d, uint64_t after, size_t max, outbox_fn fn, void *arg,
                      uint64_t *last)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    MDB_val k, val;
    uint8_t start[8];
    size_t handed = 0;
    kr_err err = KR_OK;
    if (last)
        *last = after;
    if (max == 0 || max > KR_OUTBOX_BATCH_MAX)
        max = KR_OUTBOX_BATCH_MAX;
    struct kr_payload *p = kr_payload_new(), *title = kr_payload_new(), *text = kr_payload_new();
    struct outbox_about about;
    if (!p || !title || !text) {
        kr_payload_free(p);
        kr_payload_free(title);
        kr_payload_free(text);
        return KR_ENOMEM;
    }
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc) {
        kr_payload_free(p);
        kr_payload_free(title);
        kr_payload_free(text);
        return kr_err_from_mdb(rc);
    }
    if ((rc = mdb_cursor_open(txn, d->views.db[VIEW_OUTBOX_PENDING], &cur)))
        goto done;
    v_put_u64(start, after + 1);
    k = (MDB_val){8, start};
    for (rc = mdb_cursor_get(cur, &k, &val, MDB_SET_RANGE); rc == MDB_SUCCESS && handed < max;
         rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
        if (k.mv_size != 8 || val.mv_size != 24) {
            err = KR_ECORRUPT;
            break;
        }
        struct outbox_msg m = {.seq = v_get_u64(k.mv_data), .p = p};
        const uint8_t *b = val.mv_data;
        m.tenant = v_get_u64(b);
        memcpy(m.message, b + 8, 16);
        if (last)
            *last = m.seq;
        struct jrn_record r;
        struct kr_data_key key;
        if ((err = jrn_read_in(d->j, txn, m.seq, &r)))
            break;
        if (r.payload_stripped || r.tenant != m.tenant)
            continue;
        if ((err = ks_get(d->ks, m.tenant, &key))) {
            if (err == KR_ENOTFOUND || err == KR_EKEY) {
                err = KR_OK; /* erased: nobody to write to */
                continue;
            }
            break;
        }
        err = kr_event_decode(KR_EV_OUTBOX_QUEUED, &r, &key, p, NULL);
        kr_data_key_wipe(&key);
        if (err)
            break;
        m.time = r.time_ns;
        m.template_id = (uint8_t)p->v[KR_FLD_TEMPLATE].u;
        if ((err = outbox_subject(d, txn, p, title, text, &about))) {
            kr_payload_reset(p, -1);
            break;
        }
        m.about = &about;
        handed++;
        bool go_on = fn(arg, &m);
        kr_payload_reset(p, -1); /* wipes the opened personal data */
        kr_payload_reset(title, -1);
        kr_payload_reset(text, -1);
        if (!go_on)
            break;
    }
done:
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    kr_payload_free(p);
    kr_payload_free(title);
    kr_payload_free(text);
    if (!err && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
    return err;
}

kr_err dom_notice_mail(struct kr_domain *d, size_t max, size_t *queued)
{
    struct kr_caller sys = {.role = -1, .system = true};
    struct kr_diag diag;
    struct cmd c = {.d = d, .who = &sys, .diag = &diag};
    struct {
        uint64_t tenant;
        uint8_t notice[16];
    } *owed = NULL;
    size_t n = 0, done = 0;
    kr_err err = KR_OK;
    if (max == 0 || max > KR_OUTBOX_BATCH_MAX)
        max = KR_OUTBOX_BATCH_MAX;
    if (queued)
        *queued = 0;
    if (!(owed = calloc(max, sizeof *owed)) || !(c.scratch = kr_payload_new())) {
        free(owed);
        return KR_ENOMEM;
    }
    /* What is owed, from one snapshot. */
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &c.txn);
    if (rc) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    MDB_cursor *cur;
    MDB_val k, v;
    if ((rc = mdb_cursor_open(c.txn, d->views.db[VIEW_NOTICE_MAIL], &cur)) == 0) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < max;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size != 24) {
                rc = MDB_CORRUPTED;
                break;
            }
            owed[n].tenant = v_get_u64(k.mv_data);
            memcpy(owed[n].notice, (const uint8_t *)k.mv_data + 8, 16);
            n++;
        }
        mdb_cursor_close(cur);
    }
    if (rc && rc != MDB_NOTFOUND) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    for (size_t i = 0; i < n && !err; i++) {
        uint8_t message[16];
        c.now = kr_clock_now(d->clock);
        err = notices_master_email(&c, owed[i].tenant, c.scratch);
        if (err == KR_ENOTFOUND) { /* no master to write to */
            err = KR_OK;
            continue;
        }
        struct kr_payload *m = err ? NULL : cmd_event(&c, KR_EV_OUTBOX_QUEUED, owed[i].tenant, 0);
        if (!err && !m)
            err = KR_ENOMEM;
        if (!err) {
            const struct kr_value *email = &c.scratch->v[KR_FLD_EMAIL];
            cmd_new_id(&c, message);
            kr_set_bytes(m, KR_FLD_MESSAGE, message, 16);
            kr_set_u64(m, KR_FLD_TEMPLATE, KR_TEMPLATE_NOTICE_OF_CHANGE);
            kr_set_bytes(m, KR_FLD_NOTICE, owed[i].notice, 16);
            if ((err = kr_set_copy(m, KR_FLD_EMAIL, email->p, email->n)) == KR_OK) {
                err = cmd_commit(&c);
                if (err == KR_OK)
                    done++;
                else if (err == KR_ECONFLICT)
                    err = KR_OK; /* queued by someone else meanwhile */
            }
        }
        for (size_t e = 0; e < c.nev; e++)
            kr_payload_free(c.ev[e].p);
        c.nev = 0;
    }
out:
    if (c.txn)
        mdb_txn_abort(c.txn);
    kr_payload_free(c.scratch);
    free(owed);
    if (queued)
        *queued = done;
    return err;
}

kr_err dom_outbox_sent(struct kr_domain *d, uint64_t tenant, const uint8_t message[16])
{
    MDB_txn *txn;
    MDB_val val;
    struct vkey k;
    bool sent;
    vk_init(&k);
    vk_u64(&k, tenant);
    vk_bytes(&k, message, 16);
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    kr_err err = v_get(&d->views, txn, VIEW_OUTBOX, &k, &val);
    if (!err && val.mv_size != 10)
        err = KR_ECORRUPT;
    sent = !err && ((const uint8_t *)val.mv_data)[9] != 0;
    mdb_txn_abort(txn);
    if (err || sent)
        return err;

    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    kr_payload_reset(p, KR_EV_OUTBOX_SENT);
    kr_set_bytes(p, KR_FLD_MESSAGE, message, 16);
    /* On the version the check above saw: another sender recording it
     * meanwhile is KR_ECONFLICT, not a second outbox.sent. */
    char stream[KR_STREAM_MAX + 1];
    size_t slen;
    uint64_t version;
    if (!(err = kr_event_stream(p, stream, sizeof stream, &slen)) &&
        !(err = jrn_stream_version(d->j, tenant, stream, slen, &version)))
        err = dom_append_plain(d, tenant, JRN_SYSTEM_ACTOR, p, &version, NULL);
    kr_payload_free(p);
    return err;
}

/* ---- Incident notices owed (serve's scheduler) ---- */

/* One notification owed: a row of v.incident_due. */
struct owed_notice {
    uint64_t deadline, tenant;
    uint8_t incident[16];
};

/* Whether the platform notifies incident's tenants at its deadline, not
 * this shard: an incident imported from the platform journal (its
 * incident.opened carries an origin: true after a restart, a failover and a
 * replay alike) that lists its tenants. One of audience all names none on
 * the platform (it hosts no tenant), so its tenants here stay this shard's
 * to notify, as do the incidents this journal opened itself. Reads under
 * c->txn; uses c->scratch. */
static kr_err platform_notifies(struct cmd *c, const uint8_t incident[16], bool *yes)
{
    struct incident_row row = {0};
    *yes = false;
    if (c->d->platform)
        return KR_OK; /* the authority itself */
    kr_err err = incident_get(c, incident, &row);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err; /* a due row without its incident */
    if (row.audience != KR_AUDIENCE_LISTED)
        return KR_OK;
    if ((err = read_plain(c, row.opened_seq, c->scratch)))
        return err;
    *yes = c->scratch->v[KR_FLD_ORIGIN].set;
    return KR_OK;
}

/* Moves cur past the rows of v.incident_due of the incident of row key b
 * (deadline incident tenant: one incident's rows are next to each other). */
static int due_skip_incident(MDB_cursor *cur, const uint8_t *b, MDB_val *k, MDB_val *v)
{
    uint8_t past[32];
    memcpy(past, b, 24);
    memset(past + 24, 0xff, 8);
    *k = (MDB_val){sizeof past, past};
    int rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
    if (rc == MDB_SUCCESS && k->mv_size == sizeof past && memcmp(k->mv_data, past, 32) == 0)
        rc = mdb_cursor_get(cur, k, v, MDB_NEXT); /* tenant UINT64_MAX itself */
    return rc;
}

/* The rows of v.incident_due with deadline <= horizon, at most max, into
 * owed (from one snapshot, under c->txn, which it opens and closes); *n
 * says how many. The rows of incidents the platform notifies
 * (platform_notifies) are passed over, at most KR_INCIDENT_DUE_SKIP_MAX
 * incidents of them. */
static kr_err owed_notices(struct cmd *c, uint64_t horizon, struct owed_notice *owed, size_t max,
                           size_t *n)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t last[16];
    bool have_last = false, skip = false;
    kr_err err = KR_OK;
    *n = 0;
    int rc = mdb_txn_begin(jrn_env(c->d->j), NULL, MDB_RDONLY, &c->txn);
    if (rc) {
        c->txn = NULL;
        return kr_err_from_mdb(rc);
    }
    if ((rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_INCIDENT_DUE], &cur)) == 0) {
        uint32_t skipped = 0;
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (rc == 0 && *n < max) {
            if (k.mv_size != 32) {
                rc = MDB_CORRUPTED;
                break;
            }
            const uint8_t *b = k.mv_data;
            if (v_get_u64(b) > horizon)
                break;
            if (!have_last || memcmp(last, b + 8, 16) != 0) {
                memcpy(last, b + 8, 16);
                have_last = true;
                if ((err = platform_notifies(c, last, &skip)))
                    break;
            }
            if (skip) {
                if (++skipped > KR_INCIDENT_DUE_SKIP_MAX)
                    break; /* the pass ends here (see the bound) */
                rc = due_skip_incident(cur, b, &k, &v);
                continue;
            }
            struct owed_notice *o = &owed[(*n)++];
            o->deadline = v_get_u64(b);
            memcpy(o->incident, b + 8, 16);
            o->tenant = v_get_u64(b + 24);
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(c->txn);
    c->txn = NULL;
    if (err)
        return err;
    if (rc == MDB_CORRUPTED)
        return KR_ECORRUPT;
    return rc && rc != MDB_NOTFOUND ? kr_err_from_mdb(rc) : KR_OK;
}

/* Notifies o's tenant by e-mail, if it is still owed, in one append on a
 * fresh snapshot (the incident's version moves with every notification).
 * *done says whether it appended. */
static kr_err notify_owed(struct cmd *c, const struct owed_notice *o, bool *done)
{
    struct incident_row row = {0};
    uint8_t channels = 0;
    *done = false;
    int rc = mdb_txn_begin(jrn_env(c->d->j), NULL, MDB_RDONLY, &c->txn);
    if (rc) {
        c->txn = NULL;
        return kr_err_from_mdb(rc);
    }
    c->now = kr_clock_now(c->d->clock);
    kr_err err = incident_get(c, o->incident, &row);
    if (err == KR_ENOTFOUND)
        err = KR_ECORRUPT; /* a due row without its incident */
    if (!err)
        err = notices_incident_channels(c, o->incident, o->tenant, &channels);
    if (!err && channels == 0) { /* else notified meanwhile, over some channel */
        err = notify_events(c, o->incident, row.version, o->tenant, KR_CHANNEL_EMAIL);
        if (!err && !(err = cmd_commit(c)))
            *done = true;
    }
    if (err == KR_ENOTFOUND || err == KR_ECONFLICT)
        err = KR_OK; /* no master account to write to (it stays due), or notified meanwhile */
    for (size_t e = 0; e < c->nev; e++)
        kr_payload_free(c->ev[e].p);
    c->nev = 0;
    mdb_txn_abort(c->txn);
    c->txn = NULL;
    return err;
}

/* One update or resolution e-mail owed: a row of v.incident_mail. */
struct owed_mail {
    uint64_t tenant;
    uint8_t incident[16];
    uint8_t template_id;
};

/* Up to max rows of v.incident_mail into owed (one snapshot). */
static kr_err owed_mails(struct kr_domain *d, struct owed_mail *owed, size_t max, size_t *n)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    *n = 0;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((rc = mdb_cursor_open(txn, d->views.db[VIEW_INCIDENT_MAIL], &cur)) == 0) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && *n < max;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size != 25) {
                rc = MDB_CORRUPTED;
                break;
            }
            const uint8_t *b = k.mv_data;
            owed[*n].tenant = v_get_u64(b);
            memcpy(owed[*n].incident, b + 8, 16);
            owed[*n].template_id = b[24];
            (*n)++;
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    if (rc == MDB_CORRUPTED)
        return KR_ECORRUPT;
    return rc && rc != MDB_NOTFOUND ? kr_err_from_mdb(rc) : KR_OK;
}

/* Queues the e-mail o owes to its tenant's master, one append; *done says
 * whether it did (not if the master is gone, or another queuer won). */
static kr_err queue_owed_mail(struct cmd *c, const struct owed_mail *o, bool *done)
{
    *done = false;
    int rc = mdb_txn_begin(jrn_env(c->d->j), NULL, MDB_RDONLY, &c->txn);
    if (rc) {
        c->txn = NULL;
        return kr_err_from_mdb(rc);
    }
    c->now = kr_clock_now(c->d->clock);
    kr_err err = notices_master_email(c, o->tenant, c->scratch);
    struct kr_payload *m = err ? NULL : cmd_event(c, KR_EV_OUTBOX_QUEUED, o->tenant, 0);
    if (!err && !m)
        err = KR_ENOMEM;
    if (!err) {
        uint8_t message[16];
        const struct kr_value *email = &c->scratch->v[KR_FLD_EMAIL];
        cmd_new_id(c, message);
        kr_set_u64(m, KR_FLD_TEMPLATE, o->template_id);
        if (!(err = kr_set_copy(m, KR_FLD_MESSAGE, message, 16)) &&
            !(err = kr_set_copy(m, KR_FLD_EMAIL, email->p, email->n)) &&
            !(err = kr_set_copy(m, KR_FLD_INCIDENT, o->incident, 16)) && !(err = cmd_commit(c)))
            *done = true;
    }
    if (err == KR_ENOTFOUND || err == KR_ECONFLICT)
        err = KR_OK; /* no master to write to (it stays owed), or queued meanwhile */
    for (size_t e = 0; e < c->nev; e++)
        kr_payload_free(c->ev[e].p);
    c->nev = 0;
    mdb_txn_abort(c->txn);
    c->txn = NULL;
    return err;
}

/* dom_incident_mail, and with notify false dom_incident_update_mail. */
static kr_err incident_mail(struct kr_domain *d, bool notify, uint64_t warn_ns, size_t max,
                            size_t *queued)
{
    struct kr_caller sys = {.role = -1, .system = true};
    struct kr_diag diag;
    struct cmd c = {.d = d, .who = &sys, .diag = &diag};
    struct owed_notice *owed = NULL;
    struct owed_mail *mails = NULL;
    size_t n = 0, done = 0;
    kr_err err = KR_OK;
    if (max == 0 || max > KR_OUTBOX_BATCH_MAX)
        max = KR_OUTBOX_BATCH_MAX;
    if (queued)
        *queued = 0;
    if (!(owed = calloc(max, sizeof *owed)) || !(mails = calloc(max, sizeof *mails)) ||
        !(c.scratch = kr_payload_new())) {
        free(owed);
        free(mails);
        return KR_ENOMEM;
    }
    uint64_t now = kr_clock_now(d->clock);
    uint64_t horizon = warn_ns > UINT64_MAX - now ? UINT64_MAX : now + warn_ns;
    if (notify)
        err = owed_notices(&c, horizon, owed, max, &n);
    for (size_t i = 0; i < n && !err; i++) {
        bool one;
        if (!(err = notify_owed(&c, &owed[i], &one)) && one)
            done++;
    }
    /* Then the updates and resolutions, within what is left of max; none on
     * the platform (the tenants' shards e-mail them). */
    if (!err && done < max && !d->platform)
        err = owed_mails(d, mails, max - done, &n);
    else
        n = 0;
    for (size_t i = 0; i < n && !err; i++) {
        bool one;
        if (!(err = queue_owed_mail(&c, &mails[i], &one)) && one)
            done++;
    }
    kr_payload_free(c.scratch);
    free(owed);
    free(mails);
    if (queued)
        *queued = done;
    return err;
}

kr_err dom_incident_mail(struct kr_domain *d, uint64_t warn_ns, size_t max, size_t *queued)
{
    return incident_mail(d, true, warn_ns, max, queued);
}

kr_err dom_incident_update_mail(struct kr_domain *d, size_t max, size_t *queued)
{
    return incident_mail(d, false, 0, max, queued);
}
