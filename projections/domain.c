/*
 * domain.c: opening the domain, running ops (access checks, retries on
 * conflict, result buffers) and the helpers handlers share (cmd.h).
 *
 * Design notes. A handler runs under one read transaction, so everything it
 * decides on is one consistent snapshot; the journal then checks, in the
 * writer, that the streams it decided on have not moved. Views hold no
 * personal data, so a handler that must show some (a contact's name) opens
 * the record that holds it with the tenant's key.
 */
#include "cmd.h"

#include "accounts.h"
#include "hash.h"
#include "rate.h"
#include "res_jst.h"

#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every op's handler, from the schema (KR_OP_HANDLERS; see cmd.h). */
#define HANDLER_ENTRY(op, name) [op] = name,
static const cmd_fn handlers[KR_OP__COUNT] = {KR_OP_HANDLERS(HANDLER_ENTRY)};
#undef HANDLER_ENTRY

bool dom_has_handler(int op)
{
    return op >= 0 && op < KR_OP__COUNT && handlers[op] != NULL;
}

/* How a request server runs each op (domain.h). An op is ASYNC only when
 * its handler's append is its last step and its result names nothing the
 * commit decides (ids are drawn and versions are expected + 1 before it):
 * contacts.*, tags.*, attributes.define, incidents.report, notices.ack,
 * alerts.ack, auth.logout and the master's users.* ops but users.create,
 * and operators.delete, lock and unlock.
 * POOL: every op that runs Argon2id (signup.complete, auth.login,
 * account.password, users.create, operators.create and password, and
 * signup.apply's rate limits and e-mail), the heavy reads (utility.export,
 * audit.export, journal.read), the ops that append more than once or answer
 * from the commit (operator incidents and notices, signup.confirm_payment,
 * tenants.cancel, erasure, retention, maintenance.record), and any op not
 * listed here. */
static const unsigned char routes[KR_OP__COUNT] = {
    [KR_OP_AUTH_LOGOUT] = DOM_ROUTE_ASYNC,       [KR_OP_AUTH_WHOAMI] = DOM_ROUTE_READ,
    [KR_OP_USERS_DELETE] = DOM_ROUTE_ASYNC,      [KR_OP_USERS_LIST] = DOM_ROUTE_READ,
    [KR_OP_USERS_GRANT] = DOM_ROUTE_ASYNC,       [KR_OP_USERS_REVOKE] = DOM_ROUTE_ASYNC,
    [KR_OP_USERS_LOCK] = DOM_ROUTE_ASYNC,        [KR_OP_USERS_UNLOCK] = DOM_ROUTE_ASYNC,
    [KR_OP_CONTACTS_REGISTER] = DOM_ROUTE_ASYNC, [KR_OP_CONTACTS_UPDATE] = DOM_ROUTE_ASYNC,
    [KR_OP_CONTACTS_DELETE] = DOM_ROUTE_ASYNC,   [KR_OP_CONTACTS_GET] = DOM_ROUTE_READ,
    [KR_OP_CONTACTS_LIST] = DOM_ROUTE_READ,      [KR_OP_CONTACTS_TAG] = DOM_ROUTE_ASYNC,
    [KR_OP_CONTACTS_UNTAG] = DOM_ROUTE_ASYNC,    [KR_OP_CONTACTS_SET] = DOM_ROUTE_ASYNC,
    [KR_OP_TAGS_CREATE] = DOM_ROUTE_ASYNC,       [KR_OP_TAGS_RENAME] = DOM_ROUTE_ASYNC,
    [KR_OP_TAGS_DELETE] = DOM_ROUTE_ASYNC,       [KR_OP_TAGS_LIST] = DOM_ROUTE_READ,
    [KR_OP_ATTRIBUTES_DEFINE] = DOM_ROUTE_ASYNC, [KR_OP_ATTRIBUTES_LIST] = DOM_ROUTE_READ,
    [KR_OP_AUDIT_LIST] = DOM_ROUTE_READ,         [KR_OP_NOTICES_LIST] = DOM_ROUTE_READ,
    [KR_OP_NOTICES_ACK] = DOM_ROUTE_ASYNC,       [KR_OP_INCIDENTS_REPORT] = DOM_ROUTE_ASYNC,
    [KR_OP_INCIDENTS_LIST] = DOM_ROUTE_READ,     [KR_OP_INCIDENTS_HISTORY] = DOM_ROUTE_READ,
    [KR_OP_INCIDENTS_OVERDUE] = DOM_ROUTE_READ,  [KR_OP_INCIDENTS_ALL] = DOM_ROUTE_READ,
    [KR_OP_INCIDENTS_REPORTS] = DOM_ROUTE_READ,  [KR_OP_NOTICES_ALL] = DOM_ROUTE_READ,
    [KR_OP_ALERTS_LIST] = DOM_ROUTE_READ,        [KR_OP_ALERTS_ACK] = DOM_ROUTE_ASYNC,
    [KR_OP_ALERTS_REPORT] = DOM_ROUTE_READ,      [KR_OP_TENANTS_LIST] = DOM_ROUTE_READ,
    [KR_OP_JOURNAL_CHECKPOINT] = DOM_ROUTE_READ, [KR_OP_JOURNAL_PROOF] = DOM_ROUTE_READ,
    [KR_OP_BACKUPS_LIST] = DOM_ROUTE_READ,       [KR_OP_OPERATORS_LIST] = DOM_ROUTE_READ,
    [KR_OP_OPERATORS_DELETE] = DOM_ROUTE_ASYNC,  [KR_OP_OPERATORS_LOCK] = DOM_ROUTE_ASYNC,
    [KR_OP_OPERATORS_UNLOCK] = DOM_ROUTE_ASYNC,
};

void dom_token_tag(const char *shard, uint8_t tag[4])
{
    static const char prefix[] = "kiroku.shard:";
    struct kr_sha256_ctx c;
    uint8_t h[KR_HASH_LEN];
    kr_sha256_init(&c);
    kr_sha256_update(&c, prefix, sizeof prefix - 1);
    kr_sha256_update(&c, shard, strlen(shard));
    kr_sha256_final(&c, h);
    memcpy(tag, h, 4);
}

int dom_op_route(int op)
{
    return op >= 0 && op < KR_OP__COUNT ? routes[op] : DOM_ROUTE_POOL;
}

kr_err dom_open(const struct kr_domain_options *o, struct kr_domain **out)
{
    kr_err err;
    if (!o || !o->dir || !out)
        return KR_EINVAL;
    struct kr_domain *d = calloc(1, sizeof *d);
    if (!d)
        return KR_ENOMEM;
    snprintf(d->dir, sizeof d->dir, "%s", o->dir);
    pthread_mutex_init(&d->async_mu, NULL);
    pthread_mutex_init(&d->ret_mu, NULL);
    pthread_mutex_init(&d->pwhash_mu, NULL);
    pthread_cond_init(&d->pwhash_cv, NULL);
    pthread_cond_init(&d->async_cv, NULL);
    d->clock = o->clock;
    d->rng = o->rng;
    if (o->shard) {
        d->token_tagged = true;
        dom_token_tag(o->shard, d->token_tag);
        d->platform = strcmp(o->shard, KR_PLATFORM_SHARD) == 0;
    }
    d->pwhash_ops = o->pwhash_ops ? o->pwhash_ops : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    d->pwhash_mem = o->pwhash_mem ? o->pwhash_mem : crypto_pwhash_MEMLIMIT_INTERACTIVE;
    if ((err = views_init(&d->views)))
        goto fail;
    if (!o->no_signup_limits && !(d->signup_rate = kr_rate_new(KR_SIGNUP_WINDOW_NS))) {
        err = KR_ENOMEM;
        goto fail;
    }
    struct jrn_options jo = {
        .dir = o->dir,
        .clock = o->clock,
        .signers = o->signers,
        .map_size = o->map_size,
        .two_flushes = o->two_flushes,
        .views = views_hooks(&d->views),
        .views_no_catch_up = o->no_catch_up,
        .no_appends = o->no_appends || o->follower,
        .durable = o->durable,
        .key_made = o->key_made,
        .start_fault = o->start_fault,
    };
    if ((err = jrn_open(&jo, &d->j)))
        goto fail;
    err = ks_open(o->dir, !o->no_appends && !o->follower, &d->ks);
    if ((err == KR_ENOTFOUND || err == KR_EKEY) && o->no_appends && !o->follower)
        err = KR_OK; /* views need no keys: a copy without them still rebuilds */
    if (err)
        goto fail;
    *out = d;
    return KR_OK;
fail:
    dom_close(d);
    return err;
}

void dom_close(struct kr_domain *d)
{
    if (!d)
        return;
    if (d->j) {
        kr_err err = dom_wait(d); /* failures belong to whoever submitted */
        (void)err;
        dom_wait_plain(d);
    }
    jrn_close(d->j);
    ks_close(d->ks);
    views_fini(&d->views);
    kr_rate_free(d->signup_rate);
    pthread_mutex_destroy(&d->async_mu);
    pthread_mutex_destroy(&d->ret_mu);
    pthread_mutex_destroy(&d->pwhash_mu);
    pthread_cond_destroy(&d->pwhash_cv);
    pthread_cond_destroy(&d->async_cv);
    free(d);
}

void dom_actor(const struct kr_caller *who, char out[KR_ACTOR_MAX + 1])
{
    char hex[33];
    if (who->system) {
        snprintf(out, KR_ACTOR_MAX + 1, "%s", JRN_SYSTEM_ACTOR);
        return;
    }
    if (who->role < 0) {
        snprintf(out, KR_ACTOR_MAX + 1, "anonymous");
        return;
    }
    sodium_bin2hex(hex, sizeof hex, who->account, 16);
    snprintf(out, KR_ACTOR_MAX + 1, "%s/%s", who->role == KR_ROLE_OPERATOR ? "operator" : "account",
             hex);
}

int dom_api_error(kr_err err)
{
    switch (err) {
    case KR_OK:
        return -1;
    case KR_EINVAL:
        return KR_ERR_BAD_REQUEST;
    case KR_ECORRUPT:
        return KR_ERR_INTERNAL; /* stored data: never the caller's fault */
    case KR_ETOOLARGE:
        return KR_ERR_TOO_LARGE;
    case KR_EAUTH:
        return KR_ERR_UNAUTHENTICATED;
    case KR_EFORBIDDEN:
        return KR_ERR_FORBIDDEN;
    case KR_ENOTFOUND:
        return KR_ERR_NOT_FOUND;
    case KR_ECONFLICT:
    case KR_EEXIST:
        return KR_ERR_CONFLICT;
    case KR_ELOCKED:
        return KR_ERR_LOCKED;
    case KR_EEXPIRED:
        return KR_ERR_EXPIRED;
    case KR_ERATE:
        return KR_ERR_RATE_LIMITED;
    case KR_ENOTPRIMARY:
        return KR_ERR_NOT_PRIMARY;
    case KR_EWRONGSHARD:
        return KR_ERR_WRONG_SHARD;
    case KR_EFULL:
    case KR_ECLOSED:
    case KR_EBUSY:
        return KR_ERR_UNAVAILABLE;
    default:
        return KR_ERR_INTERNAL;
    }
}

/* ---- Argon2id places, shared fairly ---- */

/* The share of the op this thread runs (set by dom_exec_flags). */
static _Thread_local struct dom_pwhash_share pwhash_cur;

struct dom_pwhash_waiter {
    struct dom_pwhash_share share;
    pthread_cond_t cv;
    enum { PW_WAITING, PW_GRANTED, PW_REFUSED } state;
};

/* The share of an op: its source, and the tenant code a login names (keyed
 * hash, so the table holds no codes) or else the caller's tenant. */
static struct dom_pwhash_share pwhash_share_of(const struct kr_caller *who,
                                               const struct kr_payload *args)
{
    struct dom_pwhash_share s;
    memset(&s, 0, sizeof s);
    memcpy(s.source, who->source, 16);
    const struct kr_value *code = args ? &args->v[KR_FLD_TENANT_CODE] : NULL;
    if (code && code->set && code->n > 0) {
        static const uint8_t k[crypto_generichash_KEYBYTES] = "kiroku pwhash tenant share";
        crypto_generichash(s.tenant, 16, code->p, code->n, k, sizeof k);
    } else {
        s.tenant[0] = 1; /* not a code's hash by its first bytes' chance alone */
        for (int i = 0; i < 8; i++)
            s.tenant[8 + i] = (uint8_t)(who->tenant >> (56 - 8 * i));
    }
    return s;
}

static unsigned running_of(const struct kr_domain *d, const uint8_t *key, size_t off)
{
    unsigned n = 0;
    for (unsigned i = 0; i < KR_PWHASH_CONCURRENT_MAX; i++)
        n += d->pwhash_running_used[i] &&
             memcmp((const uint8_t *)&d->pwhash_running[i] + off, key, 16) == 0;
    return n;
}

static unsigned waiting_of(const struct kr_domain *d, const uint8_t *key, size_t off)
{
    unsigned n = 0;
    for (unsigned i = 0; i < d->pwhash_waiting; i++)
        n += memcmp((const uint8_t *)&d->pwhash_queue[i]->share + off, key, 16) == 0;
    return n;
}

static void run_share(struct kr_domain *d, const struct dom_pwhash_share *s)
{
    for (unsigned i = 0; i < KR_PWHASH_CONCURRENT_MAX; i++)
        if (!d->pwhash_running_used[i]) {
            d->pwhash_running_used[i] = true;
            d->pwhash_running[i] = *s;
            break;
        }
    d->pwhash_busy++;
    KR_ASSERT(d->pwhash_busy <= KR_PWHASH_CONCURRENT_MAX);
    if (d->pwhash_busy > d->pwhash_peak)
        d->pwhash_peak = d->pwhash_busy;
}

static void dequeue(struct kr_domain *d, unsigned i)
{
    memmove(&d->pwhash_queue[i], &d->pwhash_queue[i + 1],
            (d->pwhash_waiting - i - 1) * sizeof(struct dom_pwhash_waiter *));
    d->pwhash_waiting--;
}

/* Hands free places to waiters: fewest running of its source, then of its
 * tenant, then the oldest. */
static void grant(struct kr_domain *d)
{
    while (d->pwhash_busy < KR_PWHASH_CONCURRENT_MAX && d->pwhash_waiting > 0) {
        unsigned best = 0, best_s = UINT32_MAX, best_t = UINT32_MAX;
        for (unsigned i = 0; i < d->pwhash_waiting; i++) {
            const struct dom_pwhash_share *s = &d->pwhash_queue[i]->share;
            unsigned rs = running_of(d, s->source, offsetof(struct dom_pwhash_share, source));
            unsigned rt = running_of(d, s->tenant, offsetof(struct dom_pwhash_share, tenant));
            if (rs < best_s || (rs == best_s && rt < best_t)) {
                best = i, best_s = rs, best_t = rt;
            }
        }
        struct dom_pwhash_waiter *w = d->pwhash_queue[best];
        dequeue(d, best);
        run_share(d, &w->share);
        w->state = PW_GRANTED;
        pthread_cond_signal(&w->cv);
    }
}

/* With every waiting place taken: the newest waiter of the share part (at
 * off) with the most waiters, if it has two or more waiters more than s's. */
static int victim_by(const struct kr_domain *d, const struct dom_pwhash_share *s, size_t off)
{
    unsigned most = 0;
    int victim = -1;
    for (unsigned i = 0; i < d->pwhash_waiting; i++) {
        unsigned n = waiting_of(d, (const uint8_t *)&d->pwhash_queue[i]->share + off, off);
        if (n >= most) { /* ties: the newest */
            most = n;
            victim = (int)i;
        }
    }
    unsigned mine = waiting_of(d, (const uint8_t *)s + off, off);
    if (victim < 0 || most < mine + 2)
        return -1;
    /* the newest waiter of that part */
    const uint8_t *key = (const uint8_t *)&d->pwhash_queue[victim]->share + off;
    for (int i = (int)d->pwhash_waiting - 1; i >= 0; i--)
        if (memcmp((const uint8_t *)&d->pwhash_queue[i]->share + off, key, 16) == 0)
            return i;
    return victim;
}

kr_err dom_pwhash_acquire(struct kr_domain *d)
{
    struct dom_pwhash_waiter w = {.share = pwhash_cur, .state = PW_WAITING};
    if (d->pwhash_hook)
        d->pwhash_hook(d->pwhash_hook_arg);
    pthread_mutex_lock(&d->pwhash_mu);
    if (d->pwhash_busy < KR_PWHASH_CONCURRENT_MAX && d->pwhash_waiting == 0) {
        run_share(d, &w.share);
        pthread_mutex_unlock(&d->pwhash_mu);
        return KR_OK;
    }
    if (d->pwhash_waiting >= KR_PWHASH_WAITERS_MAX) {
        int v = victim_by(d, &w.share, offsetof(struct dom_pwhash_share, source));
        if (v < 0)
            v = victim_by(d, &w.share, offsetof(struct dom_pwhash_share, tenant));
        if (v < 0) {
            pthread_mutex_unlock(&d->pwhash_mu);
            return KR_EBUSY;
        }
        struct dom_pwhash_waiter *out = d->pwhash_queue[v];
        dequeue(d, (unsigned)v);
        out->state = PW_REFUSED;
        d->pwhash_pushed_out++;
        pthread_cond_signal(&out->cv);
    }
    pthread_cond_init(&w.cv, NULL);
    d->pwhash_queue[d->pwhash_waiting++] = &w;
    while (w.state == PW_WAITING)
        pthread_cond_wait(&w.cv, &d->pwhash_mu);
    pthread_mutex_unlock(&d->pwhash_mu);
    pthread_cond_destroy(&w.cv);
    return w.state == PW_GRANTED ? KR_OK : KR_EBUSY;
}

void dom_pwhash_release(struct kr_domain *d)
{
    pthread_mutex_lock(&d->pwhash_mu);
    KR_ASSERT(d->pwhash_busy > 0);
    d->pwhash_busy--;
    /* This thread's share's place (any, if it changed share meanwhile). */
    int slot = -1;
    for (unsigned i = 0; i < KR_PWHASH_CONCURRENT_MAX; i++)
        if (d->pwhash_running_used[i]) {
            if (slot < 0)
                slot = (int)i;
            if (memcmp(&d->pwhash_running[i], &pwhash_cur, sizeof pwhash_cur) == 0) {
                slot = (int)i;
                break;
            }
        }
    KR_ASSERT(slot >= 0);
    d->pwhash_running_used[slot] = false;
    grant(d);
    pthread_mutex_unlock(&d->pwhash_mu);
}

/* ---- Access ---- */

static uint32_t role_bit(int role)
{
    switch (role) {
    case KR_ROLE_MASTER:
        return KR_ROLEBIT_MASTER;
    case KR_ROLE_USER:
        return KR_ROLEBIT_USER;
    case KR_ROLE_AUDITOR:
        return KR_ROLEBIT_AUDITOR;
    case KR_ROLE_OPERATOR:
        return KR_ROLEBIT_OPERATOR;
    default:
        return KR_ROLEBIT_ANONYMOUS;
    }
}

bool cmd_has_perm(const struct cmd *c, int perm)
{
    if (perm < 0 || c->who->role == KR_ROLE_MASTER)
        return true;
    if (c->who->role == KR_ROLE_OPERATOR)
        return false;
    return (c->who->perms >> perm) & 1u;
}

static kr_err check_access(const struct kr_caller *who, int op, struct kr_diag *diag)
{
    const struct kr_op_def *o = &kr_ops[op];
    uint32_t bit = role_bit(who->role);
    if (!(o->roles & bit)) {
        if (who->role < 0) {
            snprintf(diag->field, sizeof diag->field, "token");
            snprintf(diag->why, sizeof diag->why, "this op needs a session");
            return KR_EAUTH;
        }
        if (o->roles == KR_ROLEBIT_ANONYMOUS) { /* sign-up and login: say what to do */
            snprintf(diag->field, sizeof diag->field, "token");
            snprintf(diag->why, sizeof diag->why,
                     "%s is for callers without a session: send no token", o->name);
            return KR_EFORBIDDEN;
        }
        snprintf(diag->field, sizeof diag->field, "op");
        snprintf(diag->why, sizeof diag->why, "not allowed for this role");
        return KR_EFORBIDDEN;
    }
    /* Operator ops only over the operator endpoint; auditors may read the
     * journal over the client endpoint, within their scope. */
    if (o->endpoint == KR_ENDPOINT_OPERATOR && !who->operator_endpoint &&
        !(who->role == KR_ROLE_AUDITOR && (o->roles & KR_ROLEBIT_AUDITOR))) {
        snprintf(diag->field, sizeof diag->field, "op");
        snprintf(diag->why, sizeof diag->why, "only on the operator endpoint");
        return KR_EFORBIDDEN;
    }
    if (o->endpoint == KR_ENDPOINT_CLIENT && who->role == KR_ROLE_OPERATOR &&
        !who->operator_endpoint) {
        snprintf(diag->field, sizeof diag->field, "op");
        snprintf(diag->why, sizeof diag->why, "operators use the operator endpoint");
        return KR_EFORBIDDEN;
    }
    if (o->permission >= 0 && who->role == KR_ROLE_USER && !((who->perms >> o->permission) & 1u)) {
        snprintf(diag->field, sizeof diag->field, "op");
        snprintf(diag->why, sizeof diag->why, "needs permission %s",
                 kr_enums[KR_ENUM_PERMISSION].values[o->permission]);
        return KR_EFORBIDDEN;
    }
    return KR_OK;
}

/* Checks args against op's argument list: every key one the op takes, every
 * value valid, every required one present. The wire decoder (kr_args_decode)
 * did this already; arguments built in C (tools, tests) get the same checks,
 * so no handler sees an argument its op does not declare. */
static kr_err check_args(int op, const struct kr_payload *a, struct kr_diag *diag)
{
    const struct kr_op_def *o = &kr_ops[op];
    kr_err err;
    for (uint32_t i = 0; a && i < a->nused; i++) {
        int fld = a->used[i];
        if (!a->v[fld].set)
            continue;
        bool known = false;
        for (uint32_t j = 0; j < o->nargs && !known; j++)
            known = o->args[j].field == fld;
        if (!known) {
            snprintf(diag->field, sizeof diag->field, "%s", kr_fields[fld].name);
            snprintf(diag->why, sizeof diag->why, "unknown key");
            return KR_EINVAL;
        }
        if ((err = kr_value_check(fld, &a->v[fld], diag)))
            return err;
    }
    for (uint32_t j = 0; j < o->nargs; j++) {
        if (!o->args[j].optional && !(a && a->v[o->args[j].field].set)) {
            snprintf(diag->field, sizeof diag->field, "%s", kr_fields[o->args[j].field].name);
            snprintf(diag->why, sizeof diag->why, "missing");
            return KR_EINVAL;
        }
    }
    return KR_OK;
}

kr_err dom_append_plain(struct kr_domain *d, uint64_t tenant, const char *actor,
                        const struct kr_payload *p, const uint64_t *expected, uint64_t *time_ns)
{
    char stream[KR_STREAM_MAX + 1];
    uint8_t buf[KR_PLAIN_EVENT_MAX];
    size_t slen, len;
    kr_err err;
    if ((err = kr_event_stream(p, stream, sizeof stream, &slen)) ||
        (err = kr_event_encode(p, NULL, buf, sizeof buf, &len, NULL)))
        return err;
    const char *type = kr_events[p->ev].name;
    for (int attempt = 0; attempt < KR_CMD_RETRIES; attempt++) {
        uint64_t version;
        if (expected)
            version = *expected;
        else if ((err = jrn_stream_version(d->j, tenant, stream, slen, &version)))
            return err;
        struct jrn_event e = {
            .tenant = tenant,
            .stream = stream,
            .stream_len = slen,
            .type = type,
            .type_len = strlen(type),
            .actor = actor,
            .actor_len = strlen(actor),
            .expected_version = version,
            .payload = buf,
            .payload_len = len,
        };
        err = jrn_append(d->j, &e, 1);
        if (err == KR_OK && time_ns)
            *time_ns = e.time_ns;
        if (err != KR_ECONFLICT || expected)
            return err;
    }
    return KR_ECONFLICT;
}

/* One record of dom_submit_plain, until its completion. */
struct plain_append {
    struct jrn_append a;
    struct jrn_event e;
    struct kr_domain *d;
    char stream[KR_STREAM_MAX + 1];
    char actor[KR_ACTOR_MAX + 1];
    uint8_t buf[KR_PLAIN_EVENT_MAX];
};

static void plain_done(struct jrn_append *a, kr_err err)
{
    (void)err; /* best effort: see dom_submit_plain */
    struct plain_append *x = a->arg;
    struct kr_domain *d = x->d;
    free(x);
    pthread_mutex_lock(&d->async_mu);
    d->bg_n--;
    pthread_cond_broadcast(&d->async_cv);
    pthread_mutex_unlock(&d->async_mu);
}

void dom_wait_plain(struct kr_domain *d)
{
    pthread_mutex_lock(&d->async_mu);
    while (d->bg_n > 0)
        pthread_cond_wait(&d->async_cv, &d->async_mu);
    pthread_mutex_unlock(&d->async_mu);
}

kr_err dom_submit_plain(struct kr_domain *d, uint64_t tenant, const char *actor,
                        const struct kr_payload *p, uint64_t expected)
{
    struct plain_append *x = calloc(1, sizeof *x);
    size_t slen, len, alen = strlen(actor);
    kr_err err;
    if (!x)
        return KR_ENOMEM;
    if (alen > KR_ACTOR_MAX) {
        free(x);
        return KR_EINVAL;
    }
    if ((err = kr_event_stream(p, x->stream, sizeof x->stream, &slen)) ||
        (err = kr_event_encode(p, NULL, x->buf, sizeof x->buf, &len, NULL))) {
        free(x);
        return err;
    }
    memcpy(x->actor, actor, alen + 1);
    const char *type = kr_events[p->ev].name;
    x->d = d;
    x->e = (struct jrn_event){.tenant = tenant,
                              .stream = x->stream,
                              .stream_len = slen,
                              .type = type,
                              .type_len = strlen(type),
                              .actor = x->actor,
                              .actor_len = alen,
                              .expected_version = expected,
                              .payload = x->buf,
                              .payload_len = len};
    x->a = (struct jrn_append){.events = &x->e, .n = 1, .done = plain_done, .arg = x};
    pthread_mutex_lock(&d->async_mu);
    d->bg_n++;
    pthread_mutex_unlock(&d->async_mu);
    if ((err = jrn_submit(d->j, &x->a))) {
        free(x);
        pthread_mutex_lock(&d->async_mu);
        d->bg_n--;
        pthread_cond_broadcast(&d->async_cv);
        pthread_mutex_unlock(&d->async_mu);
    }
    return err;
}

/* Records that who was refused op (access.denied), for the tenant's audit
 * view and abuse monitoring. Best effort: the refusal stands whatever
 * happens here, so an error here is not the caller's. */
static void record_denial(struct kr_domain *d, const struct kr_caller *who, int op)
{
    if (who->role < 0)
        return;
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return;
    char actor[KR_ACTOR_MAX + 1];
    dom_actor(who, actor);
    kr_payload_reset(p, KR_EV_ACCESS_DENIED);
    kr_set_bytes(p, KR_FLD_ACCOUNT, who->account, 16);
    kr_set_str(p, KR_FLD_OP, kr_ops[op].name);
    kr_err err = dom_append_plain(d, who->tenant, actor, p, NULL, NULL);
    (void)err;
    kr_payload_free(p);
}

/* ---- Running ops ---- */

static void cmd_reset(struct cmd *c)
{
    for (size_t i = 0; i < c->nev; i++) {
        kr_payload_free(c->ev[i].p);
        c->ev[i].p = NULL;
    }
    c->nev = 0;
}

kr_err dom_exec(struct kr_domain *d, const struct kr_caller *who, int op,
                const struct kr_payload *args, struct kr_wbuf *out, struct kr_diag *diag)
{
    return dom_exec_flags(d, who, op, args, out, diag, 0);
}

/* How exec runs an op: dom_exec_flags's flags, or dom_exec_async's
 * completion (done set). */
struct exec_mode {
    unsigned flags;
    dom_done_fn done;
    void *arg;
    enum dom_outcome outcome; /* set by exec */
};

static struct cmd *cmd_new(struct kr_domain *d, const struct kr_caller *who,
                           const struct kr_payload *args, struct kr_diag *diag,
                           const struct exec_mode *m)
{
    struct cmd *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->d = d;
    c->who = who;
    c->args = args;
    c->diag = diag;
    c->async = m->flags & DOM_ASYNC;
    c->done = m->done;
    c->done_arg = m->arg;
    if (!(c->scratch = kr_payload_new())) {
        free(c);
        return NULL;
    }
    return c;
}

/* Runs the handler on fresh views, again on a conflict seen while deciding
 * (unless the caller pinned the version). */
static kr_err exec_handler(struct cmd *c, int op, struct kr_wbuf *out)
{
    /* A caller-given version pins the decision: a conflict is the caller's
     * to resolve. Otherwise decide again on fresh views. */
    bool pinned = c->args && c->args->v[KR_FLD_VERSION].set;
    kr_err err;
    for (int attempt = 0;; attempt++) {
        kr_wbuf_reset(out);
        msgpack_packer_init(&c->res, out, kr_wbuf_write);
        c->now = kr_clock_now(c->d->clock);
        int rc = mdb_txn_begin(jrn_env(c->d->j), NULL, MDB_RDONLY, &c->txn);
        if (rc)
            return kr_err_from_mdb(rc);
        err = handlers[op](c);
        /* A result past the caller's ceiling stops while it is built. */
        if (kr_wbuf_failed(out) == KR_ETOOLARGE)
            err = cmd_fail(c, KR_ETOOLARGE, "result", "too large for one reply");
        else if (kr_wbuf_failed(out))
            err = kr_wbuf_failed(out);
        mdb_txn_abort(c->txn);
        c->txn = NULL;
        cmd_reset(c);
        if (c->submitted || err != KR_ECONFLICT || pinned || attempt + 1 >= KR_CMD_RETRIES ||
            c->diag->field[0])
            return err;
        memset(c->diag, 0, sizeof *c->diag);
    }
}

void dom_set_follower(struct kr_domain *d, void (*primary)(void *arg, char *out, size_t cap),
                      void *arg)
{
    d->follower = true;
    d->primary = primary;
    d->primary_arg = arg;
}

/* The refusal of an op that would append, on a follower. */
static kr_err not_primary(const struct kr_domain *d, struct kr_diag *diag)
{
    char url[KR_PATH_MAX] = "";
    if (d->primary)
        d->primary(d->primary_arg, url, sizeof url);
    url[sizeof url - 1] = '\0';
    if (url[0])
        snprintf(diag->why, sizeof diag->why,
                 "this node is a follower: writes go to the primary at %.200s", url);
    else
        snprintf(diag->why, sizeof diag->why,
                 "this node is a follower: writes go to the primary (not known here)");
    return KR_ENOTPRIMARY;
}

void dom_set_importing(struct kr_domain *d, void (*endpoint)(void *arg, char *out, size_t cap),
                       void *arg)
{
    d->importing = true;
    d->platform_endpoint = endpoint;
    d->platform_arg = arg;
}

bool dom_op_is_platform(int op)
{
    return op == KR_OP_NOTICES_PUBLISH || op == KR_OP_INCIDENTS_OPEN ||
           op == KR_OP_INCIDENTS_NOTIFY || op == KR_OP_INCIDENTS_UPDATE ||
           op == KR_OP_INCIDENTS_RESOLVE || op == KR_OP_OPERATORS_CREATE ||
           op == KR_OP_OPERATORS_DELETE || op == KR_OP_OPERATORS_LOCK ||
           op == KR_OP_OPERATORS_UNLOCK || op == KR_OP_OPERATORS_PASSWORD;
}

/* The refusal of a platform op on a tenant shard that imports them. */
static kr_err wrong_shard(const struct kr_domain *d, struct kr_diag *diag)
{
    char url[KR_PATH_MAX] = "";
    if (d->platform_endpoint)
        d->platform_endpoint(d->platform_arg, url, sizeof url);
    url[sizeof url - 1] = '\0';
    if (url[0])
        snprintf(diag->why, sizeof diag->why,
                 "notices, incidents and operator accounts are the platform shard's: send it to "
                 "%.150s",
                 url);
    else
        snprintf(diag->why, sizeof diag->why,
                 "notices, incidents and operator accounts are the platform shard's (its endpoint "
                 "is not known here)");
    return KR_EWRONGSHARD;
}

static kr_err exec(struct kr_domain *d, const struct kr_caller *who, int op,
                   const struct kr_payload *args, struct kr_wbuf *out, struct kr_diag *diag,
                   struct exec_mode *m)
{
    struct kr_diag scratch_diag;
    if (!diag)
        diag = &scratch_diag;
    memset(diag, 0, sizeof *diag);
    m->outcome = DOM_DONE;
    if (op < 0 || op >= KR_OP__COUNT)
        return KR_EINVAL;
    if (d->follower && kr_ops[op].nevents > 0)
        return not_primary(d, diag);
    kr_err err = check_access(who, op, diag);
    if (err == KR_EFORBIDDEN && m->done) {
        m->outcome = DOM_RUN_SYNC; /* the refusal's record waits for its append */
        return KR_OK;
    }
    if (err == KR_EFORBIDDEN)
        record_denial(d, who, op);
    if (err || (err = check_args(op, args, diag)))
        return err;
    if (d->importing && dom_op_is_platform(op)) /* an operator's, checked above */
        return wrong_shard(d, diag);
    if (!handlers[op]) {
        snprintf(diag->why, sizeof diag->why, "op not available");
        return KR_EINVAL;
    }
    struct cmd *c = cmd_new(d, who, args, diag, m);
    if (!c)
        return KR_ENOMEM;
    /* Argon2id work this op does is charged to its share. */
    struct dom_pwhash_share outer = pwhash_cur;
    pwhash_cur = pwhash_share_of(who, args);
    err = exec_handler(c, op, out);
    /* Every time of the result also in JST (res_jst.h). */
    if (!err && res_has_time(op) && (err = res_add_jst(out)) == KR_ETOOLARGE)
        err = cmd_fail(c, KR_ETOOLARGE, "result", "too large for one reply");
    if (err == KR_EFORBIDDEN && m->done && !c->submitted) {
        m->outcome = DOM_RUN_SYNC; /* refused by the handler: as above */
        err = KR_OK;
    } else if (err == KR_EFORBIDDEN) { /* refused by the handler (the master's own account, …) */
        record_denial(d, who, op);
    }
    if (err)
        kr_wbuf_reset(out);
    if (err == KR_ECORRUPT) /* for the operator: the caller only gets `internal` */
        fprintf(stderr, "kiroku: %s: corrupt stored data: %s%s%s\n", kr_ops[op].name, diag->field,
                diag->field[0] ? ": " : "", diag->why[0] ? diag->why : "(no place)");
    if (c->submitted)
        m->outcome = DOM_PENDING;
    pwhash_cur = outer;
    kr_payload_free(c->scratch);
    free(c);
    return err;
}

kr_err dom_exec_flags(struct kr_domain *d, const struct kr_caller *who, int op,
                      const struct kr_payload *args, struct kr_wbuf *out, struct kr_diag *diag,
                      unsigned flags)
{
    struct exec_mode m = {.flags = flags};
    return exec(d, who, op, args, out, diag, &m);
}

kr_err dom_exec_async(struct kr_domain *d, const struct kr_caller *who, int op,
                      const struct kr_payload *args, struct kr_wbuf *out, struct kr_diag *diag,
                      dom_done_fn done, void *arg, enum dom_outcome *outcome)
{
    *outcome = DOM_DONE;
    if (!done || dom_op_route(op) == DOM_ROUTE_POOL)
        return KR_EINVAL;
    struct exec_mode m = {.done = done, .arg = arg};
    kr_err err = exec(d, who, op, args, out, diag, &m);
    *outcome = m.outcome;
    return err;
}

/* ---- Handler helpers ---- */

kr_err cmd_corrupt(struct cmd *c, uint64_t seq, const char *event, const struct kr_diag *d)
{
    snprintf(c->diag->field, sizeof c->diag->field, "record %llu", (unsigned long long)seq);
    int n = snprintf(c->diag->why, sizeof c->diag->why, "%.40s does not decode: %.39s%s%.60s",
                     event, d->field, d->field[0] ? ": " : "", d->why[0] ? d->why : "corrupt");
    (void)n; /* a long reason is cut: the seq and event come first */
    return KR_ECORRUPT;
}

kr_err cmd_fail(struct cmd *c, kr_err err, const char *field, const char *why)
{
    snprintf(c->diag->field, sizeof c->diag->field, "%s", field ? field : "");
    snprintf(c->diag->why, sizeof c->diag->why, "%s", why ? why : kr_strerror(err));
    return err;
}

struct kr_payload *cmd_event(struct cmd *c, int ev, uint64_t tenant, uint64_t expected)
{
    if (c->nev >= KR_CMD_EVENTS_MAX)
        return NULL;
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return NULL;
    kr_payload_reset(p, ev);
    c->ev[c->nev++] = (struct cmd_event){.p = p, .tenant = tenant, .expected = expected};
    return p;
}

kr_err cmd_key(struct cmd *c, uint64_t tenant, bool create, struct kr_data_key *out)
{
    if (!c->d->ks)
        return KR_EKEY;
    kr_err err = ks_get(c->d->ks, tenant, out);
    if (err == KR_ENOTFOUND && create)
        err = ks_get_or_create(c->d->ks, tenant, c->d->rng, out);
    return err;
}

void cmd_new_id(struct cmd *c, uint8_t id[16])
{
    kr_rng_fill(c->d->rng, id, 16);
}

uint32_t cmd_limit(const struct cmd *c)
{
    const struct kr_value *v = &c->args->v[KR_FLD_LIMIT];
    return v->set ? (uint32_t)v->u : KR_PAGE_DEFAULT;
}

kr_err cmd_stream_version(struct cmd *c, uint64_t tenant, const char *prefix, const uint8_t id[16],
                          uint64_t *version)
{
    char s[KR_STREAM_MAX + 1];
    size_t pl = strlen(prefix);
    if (pl + 34 > sizeof s)
        return KR_EINVAL;
    memcpy(s, prefix, pl); /* NOLINT(bugprone-not-null-terminated-result): bin2hex ends it */
    s[pl] = '/';
    sodium_bin2hex(s + pl + 1, 33, id, 16);
    return jrn_stream_version_in(c->d->j, c->txn, tenant, s, pl + 33, version);
}

kr_err cmd_read(struct cmd *c, uint64_t seq, int ev, struct kr_payload *p)
{
    struct jrn_record r;
    struct kr_data_key key;
    kr_err err = jrn_read_in(c->d->j, c->txn, seq, &r);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err; /* views point at records that exist */
    if (r.payload_stripped)
        return KR_ENOTFOUND;
    if (!c->d->ks)
        return KR_EKEY;
    if ((err = ks_get(c->d->ks, r.tenant, &key)))
        return err;
    struct kr_diag d = {{0}, {0}};
    err = kr_event_decode(ev, &r, &key, p, &d);
    kr_data_key_wipe(&key);
    if (err && err != KR_ENOTFOUND && err != KR_ENOMEM)
        return cmd_corrupt(c, seq, kr_events[ev].name, &d);
    return err;
}

/* Everything one append needs until it completes (async) or returns. */
struct inflight {
    struct jrn_append a;
    dom_done_fn done; /* dom_exec_async's completion */
    void *done_arg;
    struct jrn_event events[KR_CMD_EVENTS_MAX];
    char streams[KR_CMD_EVENTS_MAX][KR_STREAM_MAX + 1];
    char actor[KR_ACTOR_MAX + 1];
    uint8_t *buf[KR_CMD_EVENTS_MAX];
    struct kr_domain *d;
};

static void inflight_free(struct inflight *f)
{
    for (size_t i = 0; i < KR_CMD_EVENTS_MAX; i++)
        free(f->buf[i]);
    free(f);
}

static void async_done(struct jrn_append *a, kr_err err)
{
    struct inflight *f = a->arg;
    struct kr_domain *d = f->d;
    inflight_free(f);
    pthread_mutex_lock(&d->async_mu);
    d->async_n--;
    if (err && !d->async_err)
        d->async_err = err;
    pthread_cond_broadcast(&d->async_cv);
    pthread_mutex_unlock(&d->async_mu);
}

/* The completion of an append of dom_exec_async: frees what the append
 * needed, then tells the caller. */
static void request_done(struct jrn_append *a, kr_err err)
{
    struct inflight *f = a->arg;
    dom_done_fn done = f->done;
    void *arg = f->done_arg;
    inflight_free(f);
    done(arg, err);
}

/* Submits f's n events with the completion of dom_exec_async. */
static kr_err commit_request(struct cmd *c, struct inflight *f)
{
    if (c->submitted) { /* one append per op answered from its completion */
        inflight_free(f);
        return KR_EINVAL;
    }
    f->done = c->done;
    f->done_arg = c->done_arg;
    f->a = (struct jrn_append){.events = f->events, .n = c->nev, .done = request_done, .arg = f};
    kr_err err = jrn_submit(c->d->j, &f->a);
    if (err) {
        inflight_free(f);
        return err;
    }
    c->submitted = true;
    for (size_t i = 0; i < c->nev; i++)
        c->ev[i].version = c->ev[i].expected + 1;
    return KR_OK;
}

kr_err dom_wait(struct kr_domain *d)
{
    pthread_mutex_lock(&d->async_mu);
    while (d->async_n > 0)
        pthread_cond_wait(&d->async_cv, &d->async_mu);
    kr_err err = d->async_err;
    d->async_err = KR_OK;
    pthread_mutex_unlock(&d->async_mu);
    return err;
}

kr_err cmd_commit(struct cmd *c)
{
    struct inflight *f = calloc(1, sizeof *f);
    kr_err err = KR_OK;
    if (!f)
        return KR_ENOMEM;
    f->d = c->d;
    dom_actor(c->who, f->actor);
    for (size_t i = 0; i < c->nev; i++) {
        struct cmd_event *ce = &c->ev[i];
        struct jrn_event *e = &f->events[i];
        const struct kr_event_def *def = &kr_events[ce->p->ev];
        size_t slen, len;
        if ((err = kr_event_stream(ce->p, f->streams[i], sizeof f->streams[i], &slen)))
            break;
        if (!(f->buf[i] = malloc(KR_PAYLOAD_MAX))) {
            err = KR_ENOMEM;
            break;
        }
        struct kr_data_key key;
        bool have_key = false;
        if (def->has_personal) {
            if ((err = cmd_key(c, ce->tenant, true, &key)))
                break;
            have_key = true;
        }
        struct kr_pd_ctx pd = {
            .key = have_key ? &key : NULL,
            .rng = c->d->rng,
            .tenant = ce->tenant,
            .stream = f->streams[i],
            .stream_len = slen,
        };
        err = kr_event_encode(ce->p, &pd, f->buf[i], KR_PAYLOAD_MAX, &len, c->diag);
        if (have_key)
            kr_data_key_wipe(&key);
        if (err)
            break;
        *e = (struct jrn_event){
            .tenant = ce->tenant,
            .stream = f->streams[i],
            .stream_len = slen,
            .type = def->name,
            .type_len = strlen(def->name),
            .actor = f->actor,
            .actor_len = strlen(f->actor),
            .expected_version = ce->expected,
            .payload = f->buf[i],
            .payload_len = len,
        };
    }
    if (err) {
        inflight_free(f);
        return err;
    }
    if (c->done)
        return commit_request(c, f);
    if (c->async) {
        pthread_mutex_lock(&c->d->async_mu);
        while (c->d->async_n >= KR_CMD_INFLIGHT_MAX)
            pthread_cond_wait(&c->d->async_cv, &c->d->async_mu);
        c->d->async_n++;
        pthread_mutex_unlock(&c->d->async_mu);
        f->a = (struct jrn_append){.events = f->events, .n = c->nev, .done = async_done, .arg = f};
        if ((err = jrn_submit(c->d->j, &f->a))) {
            pthread_mutex_lock(&c->d->async_mu);
            c->d->async_n--;
            pthread_cond_broadcast(&c->d->async_cv);
            pthread_mutex_unlock(&c->d->async_mu);
            inflight_free(f);
            return err;
        }
        for (size_t i = 0; i < c->nev; i++)
            c->ev[i].version = c->ev[i].expected + 1;
        return KR_OK;
    }
    err = jrn_append(c->d->j, f->events, c->nev);
    if (err == KR_OK) {
        for (size_t i = 0; i < c->nev; i++) {
            c->ev[i].seq = f->events[i].seq;
            c->ev[i].version = c->ev[i].expected + 1;
        }
    }
    inflight_free(f);
    return err;
}

/* ---- Results ---- */

static void pack_name(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void res_map(struct cmd *c, uint32_t n)
{
    msgpack_pack_map(&c->res, n);
}

void res_key(struct cmd *c, int fld)
{
    pack_name(&c->res, kr_fields[fld].name);
}

void res_keyname(struct cmd *c, const char *name)
{
    pack_name(&c->res, name);
}

void res_val(struct cmd *c, int fld, const struct kr_value *v)
{
    res_key(c, fld);
    if (!v->set)
        msgpack_pack_nil(&c->res);
    else
        kr_value_pack(&c->res, fld, v);
}

void res_u64(struct cmd *c, int fld, uint64_t x)
{
    res_key(c, fld);
    msgpack_pack_uint64(&c->res, x);
}

void res_bool(struct cmd *c, int fld, bool x)
{
    res_key(c, fld);
    if (x)
        msgpack_pack_true(&c->res);
    else
        msgpack_pack_false(&c->res);
}

void res_bytes(struct cmd *c, int fld, const void *p, size_t n)
{
    res_key(c, fld);
    msgpack_pack_bin(&c->res, n);
    msgpack_pack_bin_body(&c->res, p, n);
}

void res_str(struct cmd *c, int fld, const char *s, size_t n)
{
    res_key(c, fld);
    msgpack_pack_str(&c->res, n);
    msgpack_pack_str_body(&c->res, s, n);
}

void res_enum(struct cmd *c, int fld, uint64_t idx)
{
    res_key(c, fld);
    pack_name(&c->res, kr_enums[kr_fields[fld].enum_id].values[idx]);
}

void res_nil(struct cmd *c, int fld)
{
    res_key(c, fld);
    msgpack_pack_nil(&c->res);
}

void res_cursor(struct cmd *c, bool more, const void *last, size_t n)
{
    if (more)
        res_bytes(c, KR_FLD_CURSOR, last, n);
    else
        res_nil(c, KR_FLD_CURSOR);
}
