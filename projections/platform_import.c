/*
 * platform_import.c: importing the platform journal's notices, incidents
 * and operator accounts into a tenant shard's journal (platform_import.h).
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
 *
 * Operator accounts. The whole record is decoded before any snapshot: its
 * plain fields without a key, then its sealed ones with the shard's tenant-0
 * key (ks_get, which fetches it from the keyring where the shard lacks it).
 * A record that does not open is not appended and says so
 * (DOM_IMPORT_UNREADABLE): the importer counts it. Its version here is the
 * shard's own (its failure lockouts move the stream too), so the import is
 * decided like any command, and a lockout committed meanwhile is a conflict
 * that decides again.
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
    case KR_EV_ACCOUNT_CREATED:
    case KR_EV_ACCOUNT_DELETED:
    case KR_EV_ACCOUNT_PASSWORD_CHANGED:
    case KR_EV_ACCOUNT_PERMISSIONS_GRANTED:
    case KR_EV_ACCOUNT_PERMISSIONS_REVOKED:
    case KR_EV_ACCOUNT_LOCKED:
    case KR_EV_ACCOUNT_UNLOCKED:
        return ev;
    default:
        return -1;
    }
}

/* Whether ev is one of an operator account's events. */
static bool account_event(int ev)
{
    return strcmp(kr_events[ev].stream_prefix, kr_events[KR_EV_ACCOUNT_CREATED].stream_prefix) == 0;
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
    if ((err = notices_incident_channels(c, incident, tenant, &channels)))
        return err == KR_ENOTFOUND ? KR_OK : err; /* not affected here */
    *take = true;
    if (src->v[KR_FLD_CHANNEL].u != KR_CHANNEL_EMAIL ||
        ((unsigned)channels >> KR_CHANNEL_EMAIL) & 1u)
        return KR_OK;
    if ((err = notices_queue_incident_notice(c, incident, tenant)) == KR_ENOTFOUND) {
        *take = false; /* nobody to write to */
        return KR_OK;
    }
    return err;
}

/* Whether an operator account's record is taken here (*go), decided on c's
 * snapshot at the account stream's version here; *what says why not where
 * that is worth saying. */
static kr_err account_check(struct cmd *c, int ev, const struct kr_payload *src, uint64_t version,
                            bool *go, enum dom_import *what)
{
    struct va_account o;
    uint8_t held[16];
    kr_err err;
    *go = false;
    if (ev == KR_EV_ACCOUNT_CREATED) {
        if (version != 0 || src->v[KR_FLD_ROLE].u != KR_ROLE_OPERATOR)
            return KR_OK;
        err = va_account_by_mac(&c->d->views, c->txn, 0, src->v[KR_FLD_EMAIL_MAC].p, held);
        if (err == KR_OK)
            *what = DOM_IMPORT_EMAIL_HELD; /* a local operator's: it keeps working */
        *go = err == KR_ENOTFOUND;
        return err == KR_ENOTFOUND ? KR_OK : err;
    }
    if (ev == KR_EV_ACCOUNT_LOCKED && src->v[KR_FLD_LOCK_REASON].u == KR_LOCK_REASON_FAILURES)
        return KR_OK; /* the platform endpoint's lockout; this one counts its own */
    if (version == 0)
        return KR_OK; /* never created here */
    err = va_account_get(&c->d->views, c->txn, 0, src->v[KR_FLD_ACCOUNT].p, &o);
    if (err == KR_ENOTFOUND)
        return KR_OK; /* deleted here already */
    if (err)
        return err;
    *go = ev != KR_EV_ACCOUNT_UNLOCKED || o.locked; /* an unlock lifts a lock for failures too */
    return KR_OK;
}

/* The sessions an operator account's event ends here (their close_reason),
 * or -1. */
static int account_close_reason(int ev)
{
    switch (ev) {
    case KR_EV_ACCOUNT_DELETED:
        return KR_CLOSE_REASON_ACCOUNT_DELETED;
    case KR_EV_ACCOUNT_LOCKED:
        return KR_CLOSE_REASON_ACCOUNT_LOCKED;
    case KR_EV_ACCOUNT_PASSWORD_CHANGED:
        return KR_CLOSE_REASON_PASSWORD_CHANGED;
    default:
        return -1;
    }
}

/* Whether the record is taken here at all (*go), on c's snapshot at stream
 * version `version`. */
static kr_err check(struct cmd *c, int ev, const struct kr_payload *src, uint64_t version, bool *go,
                    enum dom_import *what)
{
    if (account_event(ev))
        return account_check(c, ev, src, version, go, what);
    bool opens = ev == KR_EV_NOTICE_PUBLISHED || ev == KR_EV_INCIDENT_OPENED;
    /* not opened here already, nor an incident never opened here */
    *go = opens == (version == 0);
    return KR_OK;
}

/* Decides the import of src (event ev, platform seq `origin`) on c's
 * snapshot: the copied event first, with any e-mail or session.closed after
 * it. *take false: nothing to append. */
static kr_err decide(struct cmd *c, int ev, const struct kr_payload *src, uint64_t origin,
                     bool *take, enum dom_import *what)
{
    const struct kr_event_def *def = &kr_events[ev];
    uint64_t have = 0, version = 0;
    bool go = false;
    kr_err err;
    *take = false;
    if ((err = views_platform_origin(&c->d->views, c->txn, &have)) || origin <= have)
        return err;
    const uint8_t *id = src->v[def->stream_key].p;
    if ((err = cmd_stream_version(c, 0, def->stream_prefix, id, &version)) ||
        (err = check(c, ev, src, version, &go, what)) || !go)
        return err;
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
    int reason = account_close_reason(ev);
    if (reason >= 0)
        return acct_close_sessions(c, 0, id, reason);
    return KR_OK;
}

/* One attempt on a fresh snapshot. */
static kr_err attempt(struct cmd *c, int ev, const struct kr_payload *src, uint64_t origin,
                      bool *done, enum dom_import *what)
{
    bool take = false;
    *done = false;
    int rc = mdb_txn_begin(jrn_env(c->d->j), NULL, MDB_RDONLY, &c->txn);
    if (rc) {
        c->txn = NULL;
        return kr_err_from_mdb(rc);
    }
    c->now = kr_clock_now(c->d->clock);
    *what = DOM_IMPORT_NONE;
    kr_err err = decide(c, ev, src, origin, &take, what);
    if (!err && take && !(err = cmd_commit(c)))
        *done = true;
    for (size_t e = 0; e < c->nev; e++)
        kr_payload_free(c->ev[e].p);
    c->nev = 0;
    mdb_txn_abort(c->txn);
    c->txn = NULL;
    return err;
}

/* An operator account's record with sealed fields (account.created: the
 * e-mail, display name and password hash; account.password_changed: the
 * hash), decoded again into src with this shard's tenant-0 key, which must
 * be the platform's (one key through KIROKU_KEYS). *readable false when it
 * does not open, or when the e-mail's MAC under this key is not the
 * record's (email_mac is keyed by the same key). */
static kr_err open_sealed(struct kr_domain *d, int ev, const struct jrn_record *r,
                          struct kr_payload *src, bool *readable)
{
    struct kr_data_key key;
    struct kr_diag diag = {{0}, {0}};
    *readable = false;
    kr_err err = ks_get(d->ks, 0, &key);
    if (err == KR_ENOTFOUND || err == KR_ECORRUPT)
        return KR_OK; /* no tenant-0 key here, nor one in the keyring that opens
                       * with this shard's KEK */
    if (err)
        return err;
    err = kr_event_decode(ev, r, &key, src, &diag);
    if (err == KR_ECORRUPT) {
        err = KR_OK; /* it decoded without the key: the key is another */
    } else if (!err && ev == KR_EV_ACCOUNT_CREATED) {
        const struct kr_value *e = &src->v[KR_FLD_EMAIL];
        uint8_t mac[32];
        va_email_mac(&key, e->p, e->n, mac);
        *readable = sodium_memcmp(mac, src->v[KR_FLD_EMAIL_MAC].p, 32) == 0;
    } else if (!err) {
        *readable = true;
    }
    kr_data_key_wipe(&key);
    return err;
}

/* Decodes r as event ev into src: its plain fields, and its sealed ones with
 * this shard's key (*what DOM_IMPORT_UNREADABLE when they do not open). */
static kr_err source(struct kr_domain *d, int ev, const struct jrn_record *r,
                     struct kr_payload *src, enum dom_import *what)
{
    struct kr_diag diag = {{0}, {0}};
    bool readable = true;
    kr_err err = kr_event_decode(ev, r, NULL, src, &diag);
    if (err)
        return err == KR_ENOMEM ? err : KR_ECORRUPT;
    if (src->v[KR_FLD_ORIGIN].set)
        return KR_EINVAL; /* an import itself: not a platform journal's record */
    if (src->pd_sealed && (err = open_sealed(d, ev, r, src, &readable)))
        return err;
    if (!readable)
        *what = DOM_IMPORT_UNREADABLE;
    return KR_OK;
}

kr_err dom_platform_import_record(struct kr_domain *d, const struct jrn_record *r,
                                  enum dom_import *what)
{
    struct kr_caller who;
    struct kr_diag diag = {{0}, {0}};
    int ev = importable_event(r);
    bool done = false;
    uint64_t have = 0;
    *what = DOM_IMPORT_NONE;
    if (ev < 0)
        return KR_EINVAL;
    if (r->payload_stripped)
        return KR_OK; /* nothing left to copy */
    kr_err err = dom_platform_origin(d, &have);
    if (err || r->seq <= have)
        return err; /* imported already (before its key is looked at) */
    struct kr_payload *src = kr_payload_new();
    struct cmd c = {.d = d, .who = &who, .diag = &diag};
    if (!src || !(c.scratch = kr_payload_new())) {
        kr_payload_free(src);
        return KR_ENOMEM;
    }
    import_caller(r, &who);
    err = source(d, ev, r, src, what);
    /* A conflict: a stream moved on, or the views refused an origin
     * imported meanwhile (the next attempt sees it and skips). */
    for (unsigned i = 0; !err && *what != DOM_IMPORT_UNREADABLE && i < KR_CMD_RETRIES; i++)
        if ((err = attempt(&c, ev, src, r->seq, &done, what)) == KR_ECONFLICT &&
            i + 1 < KR_CMD_RETRIES)
            err = KR_OK;
        else
            break;
    kr_payload_free(c.scratch);
    kr_payload_free(src);
    if (!err && done)
        *what = DOM_IMPORT_APPENDED;
    return err;
}

kr_err dom_platform_import(struct kr_domain *d, const struct jrn_record *r, bool *imported)
{
    enum dom_import what = DOM_IMPORT_NONE;
    kr_err err = dom_platform_import_record(d, r, &what);
    if (imported)
        *imported = !err && what == DOM_IMPORT_APPENDED;
    return err;
}
