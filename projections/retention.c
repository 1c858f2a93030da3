/*
 * retention.c: crash-safe erasure of cancelled tenants, platform log
 * truncation, and kiroku's own records of serve starts and backups (see
 * retention.h).
 *
 * Design notes. The tenant's view row is the erasure's progress marker: it
 * says "cancelled" until tenant.erased commits, and tenant.erased is the last
 * step, so "due" needs no state of its own and a crash can only leave work to
 * redo, never work taken as done. Every step before it is idempotent: a
 * destroyed key stays destroyed (ks_destroy keeps the first time), a
 * generation whose key is gone is left as it is (backup_erase_tenant), a
 * deleted file is not there to delete, a stripped record is skipped by the
 * strip.
 */
#include "retention.h"

#include "accounts.h"
#include "cmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t ret_erase_by(uint64_t cancelled)
{
    return cancelled > UINT64_MAX - RET_ERASE_AFTER_NS ? UINT64_MAX
                                                       : cancelled + RET_ERASE_AFTER_NS;
}

bool ret_is_due(uint64_t cancelled, uint64_t now)
{
    return cancelled != 0 && now >= cancelled && now - cancelled >= RET_DUE_AFTER_NS;
}

bool ret_signup_expired(uint64_t applied, uint64_t now)
{
    return now >= applied && now - applied >= RET_SIGNUP_EXPIRE_NS;
}

bool ret_signup_due(uint64_t applied, uint64_t now)
{
    return now >= applied && now - applied >= RET_SIGNUP_EXPIRE_NS + RET_MARGIN_NS;
}

const char *ret_step_name(enum ret_step s)
{
    static const char *const names[RET_STEP__COUNT] = {"key", "backups", "outbox", "strip",
                                                       "event"};
    return (unsigned)s < RET_STEP__COUNT ? names[s] : "?";
}

void dom_set_retention(struct kr_domain *d, const struct ret_hooks *h, uint32_t log_days)
{
    pthread_mutex_lock(&d->ret_mu);
    d->ret_hooks = h;
    d->log_days = log_days == 0                          ? RET_LOG_DAYS_DEFAULT
                  : log_days > KR_LOG_RETENTION_DAYS_MAX ? KR_LOG_RETENTION_DAYS_MAX
                                                         : log_days;
    pthread_mutex_unlock(&d->ret_mu);
}

static uint32_t log_days(const struct kr_domain *d)
{
    return d->log_days ? d->log_days : RET_LOG_DAYS_DEFAULT;
}

/* Strips what spec selects: through the hook when there is one (tests),
 * else with the journal's jrn_strip. */
static kr_err strip(struct kr_domain *d, const struct ret_strip_spec *spec, uint64_t *stripped)
{
    const struct ret_hooks *h = d->ret_hooks;
    if (h && h->strip)
        return h->strip(h->arg, d->j, spec, stripped);
    struct jrn_strip_spec js = {
        .tenant = spec->tenant,
        .any_tenant = spec->any_tenant,
        .to_seq = spec->to_seq,
        .before_ns = spec->before_ns,
        .want = spec->want,
        .arg = spec->arg,
    };
    return jrn_strip(d->j, &js, stripped);
}

/* ---- Erasing one tenant ---- */

/* The seq an outbox file name starts with: "<seq>-<hex>.eml" or the
 * mailer's temporary ".tmp-<seq>-<hex>.eml". 0 if the name is neither. */
static uint64_t outbox_name_seq(const char *name)
{
    if (strncmp(name, ".tmp-", 5) == 0)
        name += 5;
    uint64_t seq = 0;
    size_t digits = 0;
    for (; *name >= '0' && *name <= '9' && digits < 20; name++, digits++) {
        uint64_t dgt = (uint64_t)(*name - '0');
        if (seq > (UINT64_MAX - dgt) / 10)
            return 0;
        seq = seq * 10 + dgt;
    }
    if (digits == 0 || *name != '-')
        return 0;
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".eml") == 0 ? seq : 0;
}

/* Deletes DIR/outbox's files of e-mails queued by tenant's records. */
static kr_err outbox_delete(struct kr_domain *d, uint64_t tenant, uint64_t *deleted)
{
    char dir[KR_PATH_MAX + 16];
    *deleted = 0;
    if ((size_t)snprintf(dir, sizeof dir, "%s/outbox", d->dir) >= sizeof dir)
        return KR_ETOOLARGE;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return errno == ENOENT ? KR_OK : kr_err_from_errno(errno);
    DIR *dh = fdopendir(dfd);
    if (!dh) {
        kr_err err = kr_err_from_errno(errno);
        close(dfd);
        return err;
    }
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    kr_err err = KR_OK;
    uint64_t seen = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(dh)) != NULL) {
        if (++seen > KR_RETENTION_OUTBOX_FILES_MAX) {
            err = KR_ETOOLARGE;
            break;
        }
        uint64_t seq = outbox_name_seq(e->d_name);
        if (seq == 0)
            continue;
        kr_err rerr = jrn_read(d->j, seq, &b);
        if (rerr == KR_ENOTFOUND)
            continue; /* not a record of this journal: not ours to judge */
        if (rerr) {
            err = rerr == KR_ECORRUPT ? views_corrupt_record(seq, "an outbox file's record",
                                                             "does not decode", NULL)
                                      : rerr;
            break;
        }
        if (b.rec.tenant != tenant)
            continue;
        if (unlinkat(dfd, e->d_name, 0) != 0 && errno != ENOENT) {
            err = kr_err_from_errno(errno);
            break;
        }
        (*deleted)++;
        errno = 0;
    }
    if (!err && errno != 0)
        err = kr_err_from_errno(errno);
    jrn_recbuf_fini(&b);
    if (!err && *deleted && fsync(dfd) != 0)
        err = kr_err_from_errno(errno);
    closedir(dh);
    return err;
}

static kr_err step_fail(struct kr_diag *diag, enum ret_step s, kr_err err, const char *why)
{
    if (diag) {
        snprintf(diag->field, sizeof diag->field, "step");
        snprintf(diag->why, sizeof diag->why, "%s: %s", ret_step_name(s),
                 why ? why : kr_strerror(err));
    }
    return err;
}

/* The test hook after step s. */
static kr_err after(struct kr_domain *d, uint64_t tenant, enum ret_step s, struct kr_diag *diag)
{
    const struct ret_hooks *h = d->ret_hooks;
    if (!h || !h->after_step)
        return KR_OK;
    kr_err err = h->after_step(h->arg, tenant, s);
    return err ? step_fail(diag, s, err, "stopped after this step (test hook)") : KR_OK;
}

/* Steps 1 to 5 of erasing tenant (retention.h), ending with event ev
 * (tenant.erased, or signup.expired naming application app) on the tenant
 * stream's version `version`. */
static kr_err erase_steps(struct kr_domain *d, uint64_t tenant, int ev, const uint8_t *app,
                          uint64_t version, struct kr_diag *diag)
{
    const struct ret_hooks *h = d->ret_hooks;
    kr_err err;
    uint64_t now = kr_clock_now(d->clock);

    /* 1. The live key, and its bytes in freed pages. */
    if (!d->ks)
        return step_fail(diag, RET_STEP_KEY, KR_EKEY, "no keystore");
    if ((err = ks_destroy(d->ks, tenant, now)))
        return step_fail(diag, RET_STEP_KEY, err, NULL);
    if ((err = ks_scrub(d->ks)))
        return step_fail(diag, RET_STEP_KEY, err,
                         err == KR_EBUSY ? "another process has the keystore open: the scrub "
                                           "is owed, the tenant stays due"
                                         : NULL);
    if ((err = after(d, tenant, RET_STEP_KEY, diag)))
        return err;

    /* 2. The key in every backup generation. */
    if (h && h->backup_erase) {
        uint64_t gens = 0;
        if ((err = h->backup_erase(h->arg, tenant, &gens)))
            return step_fail(diag, RET_STEP_BACKUPS, err, NULL);
    }
    if ((err = after(d, tenant, RET_STEP_BACKUPS, diag)))
        return err;

    /* 3. Its e-mail files. */
    uint64_t deleted;
    if ((err = outbox_delete(d, tenant, &deleted)))
        return step_fail(diag, RET_STEP_OUTBOX, err, NULL);
    if ((err = after(d, tenant, RET_STEP_OUTBOX, diag)))
        return err;

    /* 4. Its payloads in the journal, up to now (later records of it, such
     * as a delivery receipt, carry no personal data in clear). */
    struct ret_strip_spec spec = {.tenant = tenant, .to_seq = jrn_size(d->j)};
    uint64_t stripped = 0;
    if ((err = strip(d, &spec, &stripped)))
        return step_fail(diag, RET_STEP_STRIP, err, NULL);
    if ((err = after(d, tenant, RET_STEP_STRIP, diag)))
        return err;

    /* 5. The record of it all, which drops its views. */
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    kr_payload_reset(p, ev);
    if (app)
        kr_set_bytes(p, KR_FLD_APPLICATION, app, 16);
    err = dom_append_plain(d, tenant, JRN_SYSTEM_ACTOR, p, &version, NULL);
    kr_payload_free(p);
    if (err)
        return step_fail(diag, RET_STEP_EVENT, err,
                         err == KR_ECONFLICT ? "the tenant changed meanwhile: it stays due" : NULL);
    if ((err = after(d, tenant, RET_STEP_EVENT, diag)))
        return err;
    /* A mailer round that read the tenant's e-mail before step 1 may have
     * written its file after step 3: sweep once more (best effort; the
     * file's content is sealed nowhere, so it must go). */
    err = outbox_delete(d, tenant, &deleted);
    (void)err;
    return KR_OK;
}

static kr_err erase_locked(struct kr_domain *d, uint64_t tenant, struct kr_diag *diag)
{
    struct va_tenant t;
    MDB_txn *txn;
    kr_err err;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    err = va_tenant_get(&d->views, txn, tenant, &t);
    mdb_txn_abort(txn);
    if (err == KR_ENOTFOUND || (!err && t.state == KR_TENANT_STATE_APPLIED)) {
        if (diag) {
            snprintf(diag->field, sizeof diag->field, "tenant");
            snprintf(diag->why, sizeof diag->why, "no such tenant");
        }
        return KR_ENOTFOUND;
    }
    if (err)
        return err;
    if (t.state == KR_TENANT_STATE_ERASED)
        return KR_OK; /* done before: nothing changes */
    if (t.state != KR_TENANT_STATE_CANCELLED) {
        if (diag) {
            snprintf(diag->field, sizeof diag->field, "tenant");
            snprintf(diag->why, sizeof diag->why, "the tenant is not cancelled");
        }
        return KR_ECONFLICT;
    }
    return erase_steps(d, tenant, KR_EV_TENANT_ERASED, NULL, t.version, diag);
}

kr_err ret_erase_tenant(struct kr_domain *d, uint64_t tenant, struct kr_diag *diag)
{
    if (diag)
        memset(diag, 0, sizeof *diag);
    pthread_mutex_lock(&d->ret_mu);
    kr_err err = erase_locked(d, tenant, diag);
    pthread_mutex_unlock(&d->ret_mu);
    return err;
}

/* ---- Expiring unconfirmed applications ---- */

static kr_err expire_refuse(struct kr_diag *diag, kr_err err, const char *why)
{
    if (diag) {
        snprintf(diag->field, sizeof diag->field, "tenant");
        snprintf(diag->why, sizeof diag->why, "%s", why);
    }
    return err;
}

/* The application of tenant t (state applied) and when it was made, read in
 * txn. */
static kr_err application_of(struct kr_domain *d, MDB_txn *txn, uint64_t tenant,
                             const struct va_tenant *t, uint64_t *applied, struct kr_diag *diag)
{
    struct va_signup s;
    struct jrn_record r;
    kr_err err = va_signup_get(&d->views, txn, tenant, t->application, &s);
    if (err == KR_ENOTFOUND || err == KR_ECORRUPT) {
        uint8_t key[24];
        v_put_u64(key, tenant);
        memcpy(key + 8, t->application, 16);
        return views_corrupt(VIEW_SIGNUPS, key, sizeof key,
                             err == KR_ENOTFOUND ? "the tenant's application has no row"
                                                 : "the row does not decode",
                             diag);
    }
    if (err)
        return err;
    if (s.state == VA_SIGNUP_COMPLETED)
        return expire_refuse(diag, KR_ECONFLICT, "the application was completed");
    if ((err = jrn_read_in(d->j, txn, s.applied_seq, &r)))
        return err == KR_ENOTFOUND ? views_corrupt_record(s.applied_seq, "signup.applied",
                                                          "the view names a record that is not "
                                                          "there",
                                                          diag)
                                   : err;
    *applied = r.time_ns;
    return KR_OK;
}

static kr_err expire_locked(struct kr_domain *d, uint64_t tenant, struct kr_diag *diag)
{
    struct va_tenant t = {0};
    uint64_t applied = 0, version = 0;
    uint8_t app[16];
    MDB_txn *txn;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    kr_err err = va_tenant_get(&d->views, txn, tenant, &t);
    if (err == KR_ECORRUPT) {
        uint8_t key[8];
        v_put_u64(key, tenant);
        err = views_corrupt(VIEW_TENANTS, key, 8, "the row does not decode", diag);
    } else if (err == KR_ENOTFOUND) {
        err = expire_refuse(diag, KR_ENOTFOUND, "no such tenant");
    } else if (!err && t.state == KR_TENANT_STATE_ERASED) {
        mdb_txn_abort(txn);
        return KR_OK; /* done before */
    } else if (!err && t.state != KR_TENANT_STATE_APPLIED) {
        err = expire_refuse(diag, KR_ECONFLICT, "the application was completed");
    } else if (!err && !(err = application_of(d, txn, tenant, &t, &applied, diag)) &&
               !ret_signup_due(applied, kr_clock_now(d->clock))) {
        err = expire_refuse(diag, KR_ECONFLICT, "the application is not due to expire");
    }
    memcpy(app, t.application, 16);
    version = t.version;
    mdb_txn_abort(txn);
    if (err)
        return err;
    return erase_steps(d, tenant, KR_EV_SIGNUP_EXPIRED, app, version, diag);
}

kr_err ret_expire_application(struct kr_domain *d, uint64_t tenant, struct kr_diag *diag)
{
    if (diag)
        memset(diag, 0, sizeof *diag);
    pthread_mutex_lock(&d->ret_mu);
    kr_err err = expire_locked(d, tenant, diag);
    pthread_mutex_unlock(&d->ret_mu);
    return err;
}

/* The tenants of unconfirmed applications due at now, up to
 * KR_SIGNUP_EXPIRE_BATCH_MAX, into ids (*n of them). */
static kr_err list_expired(struct kr_domain *d, uint64_t now, uint64_t *ids, size_t *n,
                           struct kr_diag *diag)
{
    MDB_txn *txn;
    MDB_cursor *mc;
    MDB_val k, val;
    *n = 0;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((rc = mdb_cursor_open(txn, d->views.db[VIEW_TENANTS], &mc))) {
        mdb_txn_abort(txn);
        return kr_err_from_mdb(rc);
    }
    kr_err err = KR_OK;
    for (rc = mdb_cursor_get(mc, &k, &val, MDB_FIRST);
         rc == MDB_SUCCESS && *n < KR_SIGNUP_EXPIRE_BATCH_MAX;
         rc = mdb_cursor_get(mc, &k, &val, MDB_NEXT)) {
        struct va_tenant t;
        uint64_t applied = 0;
        if (k.mv_size != 8) {
            err =
                views_corrupt(VIEW_TENANTS, k.mv_data, k.mv_size, "a key is not a tenant id", diag);
            break;
        }
        uint64_t id = v_get_u64(k.mv_data);
        if ((err = va_tenant_get(&d->views, txn, id, &t))) {
            if (err == KR_ECORRUPT)
                err = views_corrupt(VIEW_TENANTS, k.mv_data, 8, "the row does not decode", diag);
            break;
        }
        if (t.state != KR_TENANT_STATE_APPLIED)
            continue;
        if ((err = application_of(d, txn, id, &t, &applied, diag)))
            break;
        if (ret_signup_due(applied, now))
            ids[(*n)++] = id;
    }
    mdb_cursor_close(mc);
    mdb_txn_abort(txn);
    if (!err && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
    return err;
}

/* Erases every unconfirmed application due now (up to the batch). */
static kr_err expire_applications(struct kr_domain *d, uint64_t now, struct ret_report *r)
{
    uint64_t *ids = calloc(KR_SIGNUP_EXPIRE_BATCH_MAX, sizeof *ids);
    size_t n = 0;
    struct kr_diag diag;
    if (!ids)
        return KR_ENOMEM;
    memset(&diag, 0, sizeof diag);
    kr_err first = list_expired(d, now, ids, &n, &r->corrupt);
    r->applications_due = n;
    /* Every due key destroyed first and scrubbed once (a scrub copies the
     * whole keystore): each erasure's own key step then finds its key gone
     * and no scrub owed. Safe because a listed application is past its
     * expiry and the margin, so signup.complete refuses it. */
    pthread_mutex_lock(&d->ret_mu);
    for (size_t i = 0; d->ks && i < n; i++) {
        kr_err err = ks_destroy_unscrubbed(d->ks, ids[i], now);
        if (err && !first)
            first = err;
    }
    pthread_mutex_unlock(&d->ret_mu);
    for (size_t i = 0; i < n; i++) {
        kr_err err = ret_expire_application(d, ids[i], &diag);
        if (err == KR_OK)
            r->applications_expired++;
        else if (err != KR_ECONFLICT && !first)
            first = err; /* completed meanwhile (conflict) is no failure */
    }
    free(ids);
    return first;
}

/* ---- Platform logs ---- */

bool ret_is_log_type(const char *type, size_t len)
{
    /* Records the views never read back (audit-only): stripping them keeps
     * a view rebuild identical. See docs/operations.md for the list and why. */
    static const int logs[] = {KR_EV_LOGIN_UNKNOWN, KR_EV_ACCESS_DENIED, KR_EV_MAINTENANCE_RECORDED,
                               KR_EV_ACCESS_RATE_LIMITED};
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
        const char *n = kr_events[logs[i]].name;
        if (strlen(n) == len && memcmp(n, type, len) == 0)
            return true;
    }
    return false;
}

/* Sessions closed before the cut-off: every record of such a session
 * (opened, touched, closed) is older than it, and a closed session has no
 * view row left, so stripping all of them gives a rebuild the views the live
 * journal has. Sorted ids, for bsearch. */
struct closed_set {
    uint8_t (*ids)[16];
    size_t n;
    struct kr_payload *p; /* scratch for decoding plain fields */
    /* Login outcomes: each account's newest reset (account.login_succeeded
     * or account.unlocked, payload present) before the cut-off. A reset sets
     * every field a login outcome sets (failures, lockouts, lock), and the
     * account's later records its version, so the outcomes before it can go
     * while it stays: a rebuild ends on the same row. */
    struct reset *resets;
    size_t nresets;
    struct kr_diag *diag; /* where a record or row did not decode (may be NULL) */
};

struct reset {
    uint64_t tenant;
    uint8_t account[16];
    uint64_t seq;
};

static int reset_cmp(const void *a, const void *b)
{
    const struct reset *x = a, *y = b;
    if (x->tenant != y->tenant)
        return x->tenant < y->tenant ? -1 : 1;
    int c = memcmp(x->account, y->account, 16);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts the resets and keeps each account's newest. */
static void resets_newest(struct closed_set *set)
{
    qsort(set->resets, set->nresets, sizeof *set->resets, reset_cmp);
    size_t w = 0;
    for (size_t i = 0; i < set->nresets; i++) {
        if (w > 0 && set->resets[w - 1].tenant == set->resets[i].tenant &&
            memcmp(set->resets[w - 1].account, set->resets[i].account, 16) == 0)
            w--; /* a newer one of the same account replaces it */
        set->resets[w++] = set->resets[i];
    }
    set->nresets = w;
}

/* The account of a login outcome or reset record (plain field), or false. */
static bool account_of(struct kr_payload *p, const struct jrn_record *r, int ev, uint8_t id[16])
{
    if (r->payload_stripped || kr_event_decode(ev, r, NULL, p, NULL) != KR_OK)
        return false;
    const struct kr_value *v = &p->v[KR_FLD_ACCOUNT];
    if (!v->set || v->n != 16)
        return false;
    memcpy(id, v->p, 16);
    return true;
}

static int type_of(const struct jrn_record *r, const int *types, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *name = kr_events[types[i]].name;
        if (strlen(name) == r->type_len && memcmp(name, r->type, r->type_len) == 0)
            return types[i];
    }
    return -1;
}

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static bool is_session_type(const struct jrn_record *r, int *ev)
{
    static const int types[] = {KR_EV_SESSION_OPENED, KR_EV_SESSION_TOUCHED, KR_EV_SESSION_CLOSED};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const char *n = kr_events[types[i]].name;
        if (strlen(n) == r->type_len && memcmp(n, r->type, r->type_len) == 0) {
            *ev = types[i];
            return true;
        }
    }
    return false;
}

/* The session id of a session.* record (plain field), or false. */
static bool session_of(struct kr_payload *p, const struct jrn_record *r, int ev, uint8_t id[16])
{
    if (r->payload_stripped || kr_event_decode(ev, r, NULL, p, NULL) != KR_OK)
        return false;
    const struct kr_value *v = &p->v[KR_FLD_SESSION];
    if (!v->set || v->n != 16)
        return false;
    memcpy(id, v->p, 16);
    return true;
}

/* Collects, up to KR_RETENTION_SESSIONS_MAX each, the sessions closed in
 * records from..to and (with resets) the login resets there. */
static kr_err closed_scan(struct kr_domain *d, uint64_t from, uint64_t to, bool resets_too,
                          struct closed_set *set)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = from, .to = to};
    struct jrn_cursor *c;
    struct jrn_record r;
    kr_err err = jrn_cursor_new(d->j, &q, &c);
    if (err)
        return err;
    static const int resets[] = {KR_EV_ACCOUNT_LOGIN_SUCCEEDED, KR_EV_ACCOUNT_UNLOCKED};
    static const int outcomes[] = {KR_EV_ACCOUNT_LOGIN_FAILED};
    while (set->n < KR_RETENTION_SESSIONS_MAX && set->nresets < KR_RETENTION_SESSIONS_MAX &&
           (err = jrn_cursor_next(c, &r)) == KR_OK) {
        int ev;
        /* Every record this job may strip by its fields must decode: one
         * that does not is corruption, reported, never silently kept. */
        if (!r.payload_stripped &&
            (is_session_type(&r, &ev) || (ev = type_of(&r, resets, 2)) >= 0 ||
             (ev = type_of(&r, outcomes, 1)) >= 0)) {
            struct kr_diag why = {{0}, {0}};
            if (kr_event_decode(ev, &r, NULL, set->p, &why) != KR_OK) {
                char w[sizeof why.why];
                snprintf(w, sizeof w, "does not decode: %.38s%s%.100s", why.field,
                         why.field[0] ? ": " : "", why.why);
                err = views_corrupt_record(r.seq, kr_events[ev].name, w, set->diag);
                break;
            }
        }
        if (is_session_type(&r, &ev) && ev == KR_EV_SESSION_CLOSED &&
            session_of(set->p, &r, ev, set->ids[set->n]))
            set->n++;
        else if (resets_too && (ev = type_of(&r, resets, 2)) >= 0) {
            struct reset *x = &set->resets[set->nresets];
            if (account_of(set->p, &r, ev, x->account)) {
                x->tenant = r.tenant;
                x->seq = r.seq;
                set->nresets++;
            }
        }
    }
    jrn_cursor_free(c);
    return err == KR_ENOTFOUND ? KR_OK : err;
}

/* What a truncation strips, read from the journal alone (so a follower
 * applying retention.logs_stripped finds the same): the sessions closed in
 * records 1..to_seq (all before the cut-off) and in the records closed_from..
 * closed_to where the run closed the expired ones (0: none), and the logins'
 * resets in 1..to_seq. */
static kr_err closed_sessions(struct kr_domain *d, uint64_t to_seq, uint64_t closed_from,
                              uint64_t closed_to, struct closed_set *set)
{
    kr_err err = closed_scan(d, 1, to_seq, true, set);
    if (!err && closed_from > 0 && closed_from <= closed_to)
        err = closed_scan(d, closed_from, closed_to, false, set);
    qsort(set->ids, set->n, 16, id_cmp);
    resets_newest(set);
    return err;
}

/* Closes (session.closed, expired) every session whose absolute expiry came
 * before before_ns but whose row is still in the views: an expired session
 * is never closed by itself, and its row would keep its records from being
 * stripped. *from..*to get the records those closes are among (0..0 when
 * none), whose sessions' records before the cut-off are then stripped; the
 * close records themselves are new, kept for the period. */
static kr_err close_expired(struct kr_domain *d, uint64_t before_ns, struct kr_diag *diag,
                            uint64_t *from, uint64_t *to)
{
    *from = *to = 0;
    struct closing {
        uint64_t tenant;
        uint8_t session[16];
    };
    size_t cap = KR_RETENTION_SESSIONS_MAX, n = 0;
    struct closing *list = calloc(cap ? cap : 1, sizeof *list);
    if (!list)
        return KR_ENOMEM;
    MDB_txn *txn;
    MDB_cursor *mc;
    MDB_val k, v;
    kr_err err = KR_OK;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc) {
        free(list);
        return kr_err_from_mdb(rc);
    }
    if ((rc = mdb_cursor_open(txn, d->views.db[VIEW_SESSIONS], &mc)) == 0) {
        for (rc = mdb_cursor_get(mc, &k, &v, MDB_FIRST); rc == 0 && n < cap;
             rc = mdb_cursor_get(mc, &k, &v, MDB_NEXT)) {
            struct va_session row;
            if (k.mv_size != 32) {
                err = views_corrupt(VIEW_SESSIONS, k.mv_data, k.mv_size,
                                    "a key is not a token hash", diag);
                break;
            }
            if ((err = va_session_get(&d->views, txn, k.mv_data, &row))) {
                if (err == KR_ECORRUPT)
                    err = views_corrupt(VIEW_SESSIONS, k.mv_data, 32, "the row does not decode",
                                        diag);
                break;
            }
            if (row.expires >= before_ns)
                continue;
            list[n].tenant = row.tenant;
            memcpy(list[n].session, row.session, 16);
            n++;
        }
        mdb_cursor_close(mc);
    }
    mdb_txn_abort(txn);
    if (!err && rc != 0 && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
    struct kr_payload *p = err ? NULL : kr_payload_new();
    if (!err && !p)
        err = KR_ENOMEM;
    uint64_t before = jrn_size(d->j);
    for (size_t i = 0; !err && i < n; i++) {
        kr_payload_reset(p, KR_EV_SESSION_CLOSED);
        kr_set_bytes(p, KR_FLD_SESSION, list[i].session, 16);
        kr_set_u64(p, KR_FLD_CLOSE_REASON, KR_CLOSE_REASON_EXPIRED);
        err = dom_append_plain(d, list[i].tenant, JRN_SYSTEM_ACTOR, p, NULL, NULL);
    }
    if (n > 0 && jrn_size(d->j) > before) { /* other writers' records may be among them */
        *from = before + 1;
        *to = jrn_size(d->j);
    }
    kr_payload_free(p);
    free(list);
    return err;
}

static bool want_log(void *arg, const struct jrn_record *r)
{
    struct closed_set *set = arg;
    if (ret_is_log_type(r->type, r->type_len))
        return true;
    if (!set)
        return false;
    int ev;
    uint8_t id[16];
    if (is_session_type(r, &ev))
        return set->n && session_of(set->p, r, ev, id) &&
               bsearch(id, set->ids, set->n, 16, id_cmp) != NULL;
    static const int outcomes[] = {KR_EV_ACCOUNT_LOGIN_SUCCEEDED, KR_EV_ACCOUNT_LOGIN_FAILED};
    if ((ev = type_of(r, outcomes, 2)) < 0 || !set->nresets)
        return false;
    struct reset key = {.tenant = r->tenant, .seq = UINT64_MAX};
    if (!account_of(set->p, r, ev, key.account))
        return false;
    /* The account's newest reset: the entry with this tenant and account. */
    size_t lo = 0, hi = set->nresets;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (reset_cmp(&set->resets[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    const struct reset *newest = &set->resets[lo - 1];
    return newest->tenant == r->tenant && memcmp(newest->account, key.account, 16) == 0 &&
           r->seq < newest->seq;
}

/* The last seq whose time is before before_ns (0 if none): record times never
 * decrease along seq, so a binary search over reads finds it. */
static kr_err last_before(struct kr_domain *d, uint64_t before_ns, uint64_t *out)
{
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    uint64_t lo = 0, hi = jrn_size(d->j) + 1; /* time(lo) < before <= time(hi) */
    kr_err err = KR_OK;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if ((err = jrn_read(d->j, mid, &b))) {
            if (err == KR_ECORRUPT)
                err = views_corrupt_record(mid, "?", "does not decode", NULL);
            break;
        }
        if (b.rec.time_ns < before_ns)
            lo = mid;
        else
            hi = mid;
    }
    jrn_recbuf_fini(&b);
    *out = lo;
    return err;
}

/* One truncation: what retention.logs_stripped records. */
struct log_cut {
    uint64_t before_ns, to_seq, closed_from, closed_to;
};

/* Strips what cut names (the caller holds ret_mu). */
static kr_err strip_logs(struct kr_domain *d, const struct log_cut *cut, uint64_t *stripped,
                         struct kr_diag *diag)
{
    struct closed_set set = {.ids = malloc((size_t)KR_RETENTION_SESSIONS_MAX * 16),
                             .resets =
                                 malloc((size_t)KR_RETENTION_SESSIONS_MAX * sizeof(struct reset)),
                             .p = kr_payload_new(),
                             .diag = diag};
    kr_err err = set.ids && set.resets && set.p ? KR_OK : KR_ENOMEM;
    if (!err)
        err = closed_sessions(d, cut->to_seq, cut->closed_from, cut->closed_to, &set);
    if (!err) {
        /* to_seq bounds the pass to the old records: the rest of the journal
         * is not read at all. */
        struct ret_strip_spec spec = {.any_tenant = true,
                                      .to_seq = cut->to_seq,
                                      .before_ns = cut->before_ns,
                                      .want = want_log,
                                      .arg = &set};
        err = strip(d, &spec, stripped);
    }
    free(set.ids);
    free(set.resets);
    kr_payload_free(set.p);
    return err;
}

static kr_err record_cut(struct kr_domain *d, const struct log_cut *cut)
{
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    kr_payload_reset(p, KR_EV_RETENTION_LOGS_STRIPPED);
    kr_set_u64(p, KR_FLD_LOG_BEFORE, cut->before_ns);
    kr_set_u64(p, KR_FLD_LOG_TO_SEQ, cut->to_seq);
    if (cut->closed_from) {
        kr_set_u64(p, KR_FLD_FROM_SEQ, cut->closed_from);
        kr_set_u64(p, KR_FLD_TO_SEQ, cut->closed_to);
    }
    kr_err err = dom_append_plain(d, 0, JRN_SYSTEM_ACTOR, p, NULL, NULL);
    kr_payload_free(p);
    return err;
}

static kr_err truncate_logs(struct kr_domain *d, uint64_t before_ns, uint64_t *stripped,
                            struct kr_diag *diag)
{
    *stripped = 0;
    if (before_ns == 0)
        return KR_OK;
    struct log_cut cut = {.before_ns = before_ns};
    pthread_mutex_lock(&d->ret_mu);
    kr_err err = last_before(d, before_ns, &cut.to_seq);
    if (!err && cut.to_seq > 0)
        err = close_expired(d, before_ns, diag, &cut.closed_from, &cut.closed_to);
    if (!err && cut.to_seq > 0)
        err = strip_logs(d, &cut, stripped, diag);
    /* Recorded after the stripping, so that followers strip the same. */
    if (!err && (*stripped > 0 || cut.closed_from > 0))
        err = record_cut(d, &cut);
    pthread_mutex_unlock(&d->ret_mu);
    return err;
}

kr_err ret_truncate_logs(struct kr_domain *d, uint64_t before_ns, uint64_t *stripped)
{
    return truncate_logs(d, before_ns, stripped, NULL);
}

kr_err ret_logs_stripped_apply(struct kr_domain *d, const struct jrn_record *r, uint64_t *stripped)
{
    *stripped = 0;
    if (r->payload_stripped)
        return KR_OK;
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    kr_err err = kr_event_decode(KR_EV_RETENTION_LOGS_STRIPPED, r, NULL, p, NULL);
    struct log_cut cut = {0};
    if (!err) {
        cut.before_ns = p->v[KR_FLD_LOG_BEFORE].u;
        cut.to_seq = p->v[KR_FLD_LOG_TO_SEQ].u;
        cut.closed_from = p->v[KR_FLD_FROM_SEQ].set ? p->v[KR_FLD_FROM_SEQ].u : 0;
        cut.closed_to = p->v[KR_FLD_TO_SEQ].set ? p->v[KR_FLD_TO_SEQ].u : 0;
        /* What it names lies before it. */
        if (cut.to_seq >= r->seq || cut.closed_to >= r->seq || cut.closed_from > cut.closed_to)
            err = KR_ECORRUPT;
    }
    kr_payload_free(p);
    if (err)
        return err == KR_ENOMEM ? err : KR_ECORRUPT;
    pthread_mutex_lock(&d->ret_mu);
    err = strip_logs(d, &cut, stripped, NULL);
    pthread_mutex_unlock(&d->ret_mu);
    return err;
}

/* ---- The job ---- */

/* Every cancelled tenant (up to the report's capacity), by id. */
static kr_err list_cancelled(struct kr_domain *d, uint64_t now, struct ret_report *r)
{
    MDB_txn *txn;
    MDB_cursor *mc;
    MDB_val k, val;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((rc = mdb_cursor_open(txn, d->views.db[VIEW_TENANTS], &mc))) {
        mdb_txn_abort(txn);
        return kr_err_from_mdb(rc);
    }
    kr_err err = KR_OK;
    for (rc = mdb_cursor_get(mc, &k, &val, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(mc, &k, &val, MDB_NEXT)) {
        struct va_tenant t;
        if (k.mv_size != 8) {
            err = views_corrupt(VIEW_TENANTS, k.mv_data, k.mv_size, "a key is not a tenant id",
                                &r->corrupt);
            break;
        }
        uint64_t id = v_get_u64(k.mv_data);
        if ((err = va_tenant_get(&d->views, txn, id, &t))) {
            if (err == KR_ECORRUPT)
                err = views_corrupt(VIEW_TENANTS, k.mv_data, 8, "the row does not decode",
                                    &r->corrupt);
            break;
        }
        if (t.state != KR_TENANT_STATE_CANCELLED)
            continue;
        if (r->n == KR_RETENTION_TENANTS_MAX)
            break; /* the rest wait for the next run */
        r->tenants[r->n++] = (struct ret_tenant){
            .tenant = id,
            .cancelled = t.cancelled,
            .erase_by = ret_erase_by(t.cancelled),
            .due = ret_is_due(t.cancelled, now),
        };
    }
    mdb_cursor_close(mc);
    mdb_txn_abort(txn);
    if (!err && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
    return err;
}

kr_err ret_run(struct kr_domain *d, bool dry_run, struct ret_report *r)
{
    memset(r, 0, sizeof *r);
    uint64_t now = kr_clock_now(d->clock);
    uint64_t period = (uint64_t)log_days(d) * RET_NS_PER_DAY;
    r->log_before_ns = now > period ? now - period : 0;
    kr_err err = list_cancelled(d, now, r);
    if (err)
        return r->err = err;
    if (dry_run) {
        uint64_t *ids = calloc(KR_SIGNUP_EXPIRE_BATCH_MAX, sizeof *ids);
        size_t n = 0;
        if (!ids)
            return r->err = KR_ENOMEM;
        err = list_expired(d, now, ids, &n, &r->corrupt);
        free(ids);
        r->applications_due = n;
        return r->err = err;
    }
    for (size_t i = 0; i < r->n; i++) {
        struct ret_tenant *t = &r->tenants[i];
        if (!t->due)
            continue;
        struct kr_diag diag;
        t->err = ret_erase_tenant(d, t->tenant, &diag);
        t->erased = t->err == KR_OK;
        if (t->err) {
            const char *colon = strchr(diag.why, ':');
            size_t n = colon ? (size_t)(colon - diag.why) : 0;
            if (n >= sizeof t->step)
                n = sizeof t->step - 1;
            memcpy(t->step, diag.why, n);
            t->step[n] = '\0';
            if (!r->err)
                r->err = t->err;
        }
    }
    if ((err = expire_applications(d, now, r)) && !r->err)
        r->err = err;
    if ((err = truncate_logs(d, r->log_before_ns, &r->stripped, &r->corrupt)) && !r->err)
        r->err = err;
    return r->err;
}

/* ---- kiroku's own records ---- */

/* The kiroku_version of the newest serve.started, into out ("" if none). */
static kr_err previous_start(struct kr_domain *d, const char *stream, uint64_t version,
                             char out[33])
{
    out[0] = '\0';
    if (version == 0)
        return KR_OK;
    struct jrn_query q = {.kind = JRN_Q_STREAM,
                          .from = version,
                          .tenant = 0,
                          .stream = stream,
                          .stream_len = strlen(stream)};
    struct jrn_cursor *cur;
    struct jrn_record rec;
    kr_err err = jrn_cursor_new(d->j, &q, &cur);
    if (err)
        return err;
    if ((err = jrn_cursor_next(cur, &rec)) == KR_OK && !rec.payload_stripped) {
        struct kr_payload *p = kr_payload_new();
        if (!p) {
            err = KR_ENOMEM;
        } else {
            struct kr_diag why = {{0}, {0}};
            if (kr_event_decode(KR_EV_SERVE_STARTED, &rec, NULL, p, &why) != KR_OK) {
                err = views_corrupt_record(rec.seq, kr_events[KR_EV_SERVE_STARTED].name,
                                           why.why[0] ? why.why : "does not decode", NULL);
            } else {
                const struct kr_value *v = &p->v[KR_FLD_KIROKU_VERSION];
                if (v->set && v->n < 33) {
                    memcpy(out, v->p, v->n);
                    out[v->n] = '\0';
                }
            }
            kr_payload_free(p);
        }
    } else if (err == KR_ENOTFOUND) {
        err = KR_OK;
    }
    jrn_cursor_free(cur);
    return err;
}

kr_err ret_serve_started(struct kr_domain *d, const char *version, const char *host,
                         char previous[33])
{
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    kr_payload_reset(p, KR_EV_SERVE_STARTED);
    char stream[KR_STREAM_MAX + 1];
    size_t slen;
    kr_set_str(p, KR_FLD_KIROKU_VERSION, version);
    kr_set_str(p, KR_FLD_HOST, host);
    kr_err err = kr_event_stream(p, stream, sizeof stream, &slen);
    uint64_t v = 0;
    for (int attempt = 0; !err && attempt < KR_CMD_RETRIES; attempt++) {
        if ((err = jrn_stream_version(d->j, 0, stream, slen, &v)) ||
            (err = previous_start(d, stream, v, previous)))
            break;
        if (previous[0])
            kr_set_str(p, KR_FLD_PREVIOUS_VERSION, previous);
        err = dom_append_plain(d, 0, JRN_SYSTEM_ACTOR, p, &v, NULL);
        if (err != KR_ECONFLICT)
            break;
    }
    kr_payload_free(p);
    return err;
}

kr_err ret_backup_recorded(struct kr_domain *d, bool ok, const char *generation, uint64_t last_seq,
                           uint64_t bytes, const char *reason)
{
    /* Lives as long as p: the payload refers to the strings it is given. */
    char why[256];
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    if (ok) {
        kr_payload_reset(p, KR_EV_BACKUP_COMPLETED);
        kr_set_str(p, KR_FLD_GENERATION, generation && *generation ? generation : "?");
        kr_set_u64(p, KR_FLD_LAST_SEQ, last_seq);
        kr_set_u64(p, KR_FLD_BYTES, bytes);
    } else {
        snprintf(why, sizeof why, "%s", reason && *reason ? reason : "unknown");
        /* Printable ASCII only: a reason is an error message, not data, and
         * cutting it to size may have split a multi-byte character. */
        for (char *c = why; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                *c = (unsigned char)*c >= 0x80 ? '?' : ' ';
        kr_payload_reset(p, KR_EV_BACKUP_FAILED);
        kr_set_str(p, KR_FLD_REASON, why);
    }
    kr_err err = dom_append_plain(d, 0, JRN_SYSTEM_ACTOR, p, NULL, NULL);
    kr_payload_free(p);
    return err;
}
