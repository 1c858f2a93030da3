/*
 * seed.c: demo data (cli_seed, seed.h) for `kiroku seed` and the benchmarks.
 *
 * Everything goes through the domain's ops (dom_exec), as a client
 * and an operator would drive them, so the journal holds what the service
 * would record, every event type of schemas/events.json included. It is
 * deterministic for a given --seed: the domain gets a deterministic rng
 * (kr_rng_det: ids, data keys, nonces, codes, tokens) and a clock the seeder
 * sets itself (2026-04-01T00:00:00Z, advanced SEED_STEP_NS per command), and
 * the seeder takes its own choices from a second deterministic stream. One
 * thread issues every command in a fixed order, so the same seed gives the
 * same records (types, streams, tenants, versions, times, actors, payload
 * commitments); only the journal's signing key, made by `init`, differs.
 *
 * Volume comes from DOM_ASYNC: a tenant's contacts are loaded in phases
 * (register all, then tag all, then set attributes...), each phase's
 * commands touching distinct streams and naming the stream versions the
 * seeder tracks itself, with dom_wait between phases so that every phase
 * decides on committed views.
 */
#include "seed.h"
#include "accounts.h"
#include "alerts.h"
#include "cli.h"
#include "domain.h"
#include "journal.h"
#include "notices.h"
#include "retention.h"
#include "views.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The seeded clock starts at 2026-04-01T00:00:00Z and moves this much per
 * command, so 1,000,000 events span under an hour of simulated time. */
#define SEED_NS       1000000000ull /* a second */
#define SEED_EPOCH_NS (1775001600ull * SEED_NS)
#define SEED_STEP_NS  1000000ull /* 1 ms */
#define HOUR_NS       (3600ull * SEED_NS)
/* Tags per tenant: tag 0 on every third contact, the others spread over the
 * rest; the second last is renamed, the last deleted. */
#define SEED_TAGS 8u

#ifndef KIROKU_VERSION
#define KIROKU_VERSION "unknown"
#endif

static void hex(char *out, const uint8_t *p, size_t n)
{
    sodium_bin2hex(out, 2 * n + 1, p, n);
}

/* ---- The seeder ---- */

struct seed_clock {
    _Atomic uint64_t now;
};

static uint64_t seed_clock_now(void *ctx)
{
    return atomic_load(&((struct seed_clock *)ctx)->now);
}

struct seed_tenant {
    uint64_t id;
    char code[KR_TENANT_CODE_MAX + 1];
    struct kr_caller master;
    uint8_t tags[SEED_TAGS][16];
    uint8_t attrs[KR_ATTRIBUTE_TYPE__COUNT][16];
    char attr_keys[KR_ATTRIBUTE_TYPE__COUNT][16];
};

struct seeder {
    const struct cli_seed_options *o;
    struct kr_domain *d;
    struct seed_clock clk;
    struct kr_clock clock;
    struct kr_rng_det det; /* the domain's randomness */
    struct kr_rng rng;
    struct kr_rng_det wdet; /* the seeder's own choices */
    struct kr_rng wrng;
    struct kr_payload *args;
    struct kr_wbuf out;
    msgpack_unpacked res;
    struct kr_diag diag;
    struct kr_caller op;   /* the platform operator */
    struct kr_caller anon; /* no session */
    struct seed_tenant *tenants;
    uint64_t ntenants;
    uint64_t contacts;   /* registered in all */
    uint64_t start_size; /* journal size before seeding */
    double t0, last_progress;
    bool touch_next; /* the next login comes back later (session.touched) */
    /* one tenant's contacts while its workload runs */
    uint8_t (*cid)[16];
    uint64_t *cver;
};

/* Fresh arguments for the next op. */
static struct kr_payload *A(struct seeder *s)
{
    kr_payload_reset(s->args, -1);
    return s->args;
}

static kr_err exec(struct seeder *s, const struct kr_caller *who, int op, unsigned flags)
{
    atomic_fetch_add(&s->clk.now, SEED_STEP_NS);
    return dom_exec_flags(s->d, who, op, s->args, &s->out, &s->diag, flags);
}

/* Runs an op that must succeed; says which and why when it does not. */
static kr_err must(struct seeder *s, const struct kr_caller *who, int op, unsigned flags)
{
    kr_err err = exec(s, who, op, flags);
    if (err)
        fprintf(stderr, "kiroku: seed: %s: %s (%s: %s)\n", kr_ops[op].name, kr_strerror(err),
                s->diag.field, s->diag.why);
    return err;
}

/* Runs an op expected to be refused (a wrong password or code: the refusal
 * is an event too). KR_OK if it was refused, KR_EINVAL if it succeeded. */
static kr_err refused(struct seeder *s, const struct kr_caller *who, int op)
{
    kr_err err = exec(s, who, op, 0);
    if (err == KR_OK) {
        fprintf(stderr, "kiroku: seed: %s succeeded where it should fail\n", kr_ops[op].name);
        return KR_EINVAL;
    }
    return KR_OK;
}

static kr_err wait_all(struct seeder *s, const char *what)
{
    kr_err err = dom_wait(s->d);
    if (err)
        fprintf(stderr, "kiroku: seed: %s: %s\n", what, kr_strerror(err));
    return err;
}

/* The value of field fld in the last result, or NULL. */
static const msgpack_object *out_get(struct seeder *s, int fld)
{
    size_t off = 0;
    if (msgpack_unpack_next(&s->res, s->out.data, s->out.size, &off) != MSGPACK_UNPACK_SUCCESS ||
        s->res.data.type != MSGPACK_OBJECT_MAP)
        return NULL;
    const char *name = kr_fields[fld].name;
    size_t n = strlen(name);
    const msgpack_object_map *m = &s->res.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, name, n) == 0)
            return &m->ptr[i].val;
    }
    return NULL;
}

static kr_err out_id(struct seeder *s, int fld, uint8_t out[16])
{
    const msgpack_object *o = out_get(s, fld);
    if (!o || o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != 16) {
        fprintf(stderr, "kiroku: seed: result lacks %s\n", kr_fields[fld].name);
        return KR_ECORRUPT;
    }
    memcpy(out, o->via.bin.ptr, 16);
    return KR_OK;
}

static kr_err out_bytes(struct seeder *s, int fld, void *out, size_t cap, size_t *len)
{
    const msgpack_object *o = out_get(s, fld);
    const char *p = NULL;
    size_t n = 0;
    if (o && o->type == MSGPACK_OBJECT_BIN) {
        p = o->via.bin.ptr;
        n = o->via.bin.size;
    } else if (o && o->type == MSGPACK_OBJECT_STR) {
        p = o->via.str.ptr;
        n = o->via.str.size;
    }
    if (!p || n >= cap) {
        fprintf(stderr, "kiroku: seed: result lacks %s\n", kr_fields[fld].name);
        return KR_ECORRUPT;
    }
    memcpy(out, p, n);
    ((uint8_t *)out)[n] = 0;
    *len = n;
    return KR_OK;
}

static kr_err out_u64(struct seeder *s, int fld, uint64_t *out)
{
    const msgpack_object *o = out_get(s, fld);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        fprintf(stderr, "kiroku: seed: result lacks %s\n", kr_fields[fld].name);
        return KR_ECORRUPT;
    }
    *out = o->via.u64;
    return KR_OK;
}

/* The current version of stream <prefix of event ev>/<id hex> of tenant. */
static kr_err stream_version(struct seeder *s, uint64_t tenant, int ev, const uint8_t id[16],
                             uint64_t *version)
{
    char stream[KR_STREAM_MAX + 1], h[33];
    hex(h, id, 16);
    int n = snprintf(stream, sizeof stream, "%s/%s", kr_events[ev].stream_prefix, h);
    return jrn_stream_version(s->d->j, tenant, stream, (size_t)n, version);
}

static void progress(struct seeder *s, const char *phase, uint64_t t, bool force)
{
    if (!s->o->progress)
        return;
    double now = cli_now();
    if (!force && now - s->last_progress < 1.0)
        return;
    s->last_progress = now;
    uint64_t events = jrn_size(s->d->j) - s->start_size;
    fprintf(stderr, "seeding: tenant %" PRIu64 "/%" PRIu64 " %-12s %" PRIu64 " events, %.0f/s\n",
            t + 1, s->ntenants, phase, events, (double)events / (now - s->t0 + 1e-9));
}

/* ---- Sign-up, users, sessions ---- */

struct code_find {
    uint64_t tenant;
    char code[24];
};

static bool find_code(void *arg, const struct outbox_msg *m)
{
    struct code_find *f = arg;
    const struct kr_value *v = &m->p->v[KR_FLD_AUTH_CODE];
    if (m->tenant != f->tenant || m->template_id != KR_TEMPLATE_AUTH_CODE || !v->set ||
        v->n >= sizeof f->code)
        return true;
    memcpy(f->code, v->p, v->n);
    f->code[v->n] = 0;
    return false;
}

/* Logs an account in and returns its caller as the server would make it. */
static kr_err login(struct seeder *s, const struct seed_tenant *t, const char *email,
                    const char *password, struct kr_caller *who)
{
    struct kr_payload *a = A(s);
    kr_set_str(a, KR_FLD_TENANT_CODE, t->code);
    kr_set_str(a, KR_FLD_EMAIL, email);
    kr_set_str(a, KR_FLD_PASSWORD, password);
    kr_err err = must(s, &s->anon, KR_OP_AUTH_LOGIN, 0);
    uint8_t token[32 + 1]; /* out_bytes adds a NUL */
    size_t n;
    if (err || (err = out_bytes(s, KR_FLD_TOKEN, token, sizeof token, &n)))
        return err;
    if (n != 32)
        return KR_ECORRUPT;
    err = dom_session_resolve(s->d, token, who);
    if (!err && s->touch_next) {
        /* Someone comes back to the dashboard 20 minutes later: the
         * session's idle limit moves on (session.touched). */
        s->touch_next = false;
        atomic_fetch_add(&s->clk.now, 20ull * 60 * 1000000000ull);
        err = dom_session_resolve(s->d, token, who);
    }
    sodium_memzero(token, sizeof token);
    if (err)
        fprintf(stderr, "kiroku: seed: session: %s\n", kr_strerror(err));
    return err;
}

static kr_err wrong_login(struct seeder *s, const struct seed_tenant *t, const char *email)
{
    struct kr_payload *a = A(s);
    kr_set_str(a, KR_FLD_TENANT_CODE, t->code);
    kr_set_str(a, KR_FLD_EMAIL, email);
    kr_set_str(a, KR_FLD_PASSWORD, "not-the-password-9");
    return refused(s, &s->anon, KR_OP_AUTH_LOGIN);
}

/* An application never completed, expired by the retention job's step
 * once the seeded clock has passed its expiry (signup.expired). */
static kr_err abandoned_application(struct seeder *s)
{
    uint8_t app[16];
    uint64_t tenant;
    kr_err err;
    kr_set_str(A(s), KR_FLD_EMAIL, "abandoned@shop.example.jp");
    if ((err = must(s, &s->anon, KR_OP_SIGNUP_APPLY, 0)) ||
        (err = out_id(s, KR_FLD_APPLICATION, app)))
        return err;
    MDB_txn *txn;
    int rc = mdb_txn_begin(jrn_env(s->d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    err = va_signup_tenant(&s->d->views, txn, app, &tenant);
    mdb_txn_abort(txn);
    if (err)
        return err;
    atomic_fetch_add(&s->clk.now, RET_SIGNUP_EXPIRE_NS + RET_MARGIN_NS);
    return ret_expire_application(s->d, tenant, NULL);
}

static kr_err signup(struct seeder *s, uint64_t ti, struct seed_tenant *t)
{
    char email[96], pw[64], name[96], ref[64];
    uint8_t app[16];
    kr_err err;
    snprintf(email, sizeof email, "owner%" PRIu64 "@shop%" PRIu64 ".example.jp", ti, ti);
    snprintf(pw, sizeof pw, "seed-Master-%" PRIu64 "-pw", ti);
    snprintf(name, sizeof name, "株式会社サンプル商店 %" PRIu64, ti);
    snprintf(ref, sizeof ref, "pay-%016" PRIx64 "-%" PRIu64, s->o->seed, ti);

    kr_set_str(A(s), KR_FLD_EMAIL, email);
    if ((err = must(s, &s->anon, KR_OP_SIGNUP_APPLY, 0)) ||
        (err = out_id(s, KR_FLD_APPLICATION, app)))
        return err;
    MDB_txn *txn;
    int rc = mdb_txn_begin(jrn_env(s->d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    err = va_signup_tenant(&s->d->views, txn, app, &t->id);
    mdb_txn_abort(txn);
    if (err)
        return err;

    uint64_t before = jrn_size(s->d->j);
    struct kr_payload *a = A(s);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, ref);
    if ((err = must(s, &s->op, KR_OP_SIGNUP_CONFIRM_PAYMENT, 0)))
        return err;
    /* The auth code, as the applicant reads it in the e-mail. */
    struct code_find f = {.tenant = t->id};
    if ((err = outbox_pending(s->d, before, 0, find_code, &f, NULL)))
        return err;
    if (!f.code[0]) {
        fprintf(stderr, "kiroku: seed: no auth code e-mail for tenant %" PRIu64 "\n", t->id);
        return KR_ENOTFOUND;
    }
    /* Every third applicant mistypes the code first. */
    if (ti % 3 == 0) {
        a = A(s);
        kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
        kr_set_str(a, KR_FLD_AUTH_CODE, strcmp(f.code, "000000") ? "000000" : "111111");
        kr_set_str(a, KR_FLD_PASSWORD, pw);
        kr_set_str(a, KR_FLD_TENANT_NAME, name);
        if ((err = refused(s, &s->anon, KR_OP_SIGNUP_COMPLETE)))
            return err;
    }
    a = A(s);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_AUTH_CODE, f.code);
    kr_set_str(a, KR_FLD_PASSWORD, pw);
    kr_set_str(a, KR_FLD_TENANT_NAME, name);
    err = must(s, &s->anon, KR_OP_SIGNUP_COMPLETE, 0);
    sodium_memzero(f.code, sizeof f.code);
    size_t n;
    if (err || (err = out_bytes(s, KR_FLD_TENANT_CODE, t->code, sizeof t->code, &n)))
        return err;
    return login(s, t, email, pw, &t->master);
}

/* The users each tenant's master makes. */
static const struct {
    const char *who;
    int role;
    uint64_t perms;
} seed_users[] = {
    {"staff", KR_ROLE_USER,
     1u << KR_PERMISSION_CONTACTS_READ | 1u << KR_PERMISSION_CONTACTS_WRITE |
         1u << KR_PERMISSION_TAGS_WRITE},
    {"auditor", KR_ROLE_AUDITOR, 1u << KR_PERMISSION_AUDIT_READ},
    {"temp", KR_ROLE_USER, 1u << KR_PERMISSION_USERS_READ},
};
enum { SEED_USERS = sizeof seed_users / sizeof seed_users[0] };

/* One user's address, password and account, as made by users_create. */
struct seed_user {
    char email[64], pw[48];
    uint8_t acct[16];
};

/* The master makes every user of seed_users. */
static kr_err users_create(struct seeder *s, uint64_t ti, struct seed_tenant *t,
                           struct seed_user u[SEED_USERS])
{
    kr_err err;
    for (size_t i = 0; i < SEED_USERS; i++) {
        char dn[48];
        snprintf(u[i].email, sizeof u[i].email, "%s%" PRIu64 "@shop%" PRIu64 ".example.jp",
                 seed_users[i].who, ti, ti);
        snprintf(u[i].pw, sizeof u[i].pw, "seed-%s-%" PRIu64 "-pw", seed_users[i].who, ti);
        snprintf(dn, sizeof dn, "%s %" PRIu64, seed_users[i].who, ti);
        struct kr_payload *a = A(s);
        kr_set_str(a, KR_FLD_EMAIL, u[i].email);
        kr_set_str(a, KR_FLD_PASSWORD, u[i].pw);
        kr_set_u64(a, KR_FLD_ROLE, (uint64_t)seed_users[i].role);
        kr_set_u64(a, KR_FLD_PERMISSIONS, seed_users[i].perms);
        kr_set_str(a, KR_FLD_DISPLAY_NAME, dn);
        if ((err = must(s, &t->master, KR_OP_USERS_CREATE, 0)) ||
            (err = out_id(s, KR_FLD_ACCOUNT, u[i].acct)))
            return err;
    }
    return KR_OK;
}

/* The master grants and revokes permissions of the staff account. */
static kr_err users_permissions(struct seeder *s, struct seed_tenant *t, const uint8_t acct[16])
{
    struct kr_payload *a;
    uint64_t ver;
    kr_err err;
    if ((err = stream_version(s, t->id, KR_EV_ACCOUNT_CREATED, acct, &ver)))
        return err;
    a = A(s);
    kr_set_bytes(a, KR_FLD_ACCOUNT, acct, 16);
    kr_set_u64(a, KR_FLD_PERMISSIONS,
               1u << KR_PERMISSION_ATTRIBUTES_WRITE | 1u << KR_PERMISSION_AUDIT_READ);
    kr_set_u64(a, KR_FLD_VERSION, ver);
    if ((err = must(s, &t->master, KR_OP_USERS_GRANT, 0)) ||
        (err = out_u64(s, KR_FLD_VERSION, &ver)))
        return err;
    a = A(s);
    kr_set_bytes(a, KR_FLD_ACCOUNT, acct, 16);
    kr_set_u64(a, KR_FLD_PERMISSIONS, 1u << KR_PERMISSION_AUDIT_READ);
    kr_set_u64(a, KR_FLD_VERSION, ver);
    return must(s, &t->master, KR_OP_USERS_REVOKE, 0);
}

/* The staff member mistypes twice, logs in, is locked out by the master and
 * let back in; logs in again, comes back later; is refused users.list;
 * every other tenant's staff member changes the password. Someone guesses
 * at an address that has no account. */
static kr_err users_staff(struct seeder *s, uint64_t ti, struct seed_tenant *t,
                          const struct seed_user *u)
{
    struct kr_payload *a;
    struct kr_caller staff;
    uint64_t ver;
    kr_err err;
    if ((err = wrong_login(s, t, u->email)) || (err = wrong_login(s, t, u->email)) ||
        (err = login(s, t, u->email, u->pw, &staff)))
        return err;
    for (int lock = 0; lock < 2; lock++) {
        if ((err = stream_version(s, t->id, KR_EV_ACCOUNT_CREATED, u->acct, &ver)))
            return err;
        a = A(s);
        kr_set_bytes(a, KR_FLD_ACCOUNT, u->acct, 16);
        kr_set_u64(a, KR_FLD_VERSION, ver);
        if ((err = must(s, &t->master, lock == 0 ? KR_OP_USERS_LOCK : KR_OP_USERS_UNLOCK, 0)))
            return err;
    }
    if ((err = login(s, t, u->email, u->pw, &staff)))
        return err;
    /* The staff member logs in and comes back to it later. */
    s->touch_next = true;
    if ((err = login(s, t, u->email, u->pw, &staff)))
        return err;
    if ((err = wrong_login(s, t, "nobody@example.invalid")))
        return err;
    /* The staff member may not list users: refused, and recorded. */
    A(s);
    if ((err = refused(s, &staff, KR_OP_USERS_LIST)))
        return err;
    if (ti % 2 == 0) {
        char npw[48];
        snprintf(npw, sizeof npw, "seed-staff-%" PRIu64 "-new", ti);
        a = A(s);
        kr_set_str(a, KR_FLD_PASSWORD, u->pw);
        kr_set_str(a, KR_FLD_NEW_PASSWORD, npw);
        if ((err = must(s, &staff, KR_OP_ACCOUNT_PASSWORD, 0)))
            return err;
    }
    return KR_OK;
}

/* Users with permissions; logins, failures, a lock and an unlock, a password
 * change, a logout, a deletion. */
static kr_err users(struct seeder *s, uint64_t ti, struct seed_tenant *t)
{
    struct seed_user u[SEED_USERS];
    struct kr_caller auditor;
    uint64_t ver;
    kr_err err;
    if ((err = users_create(s, ti, t, u)) || (err = users_permissions(s, t, u[0].acct)) ||
        (err = users_staff(s, ti, t, &u[0])))
        return err;
    /* The auditor looks in, takes an export of the tenant's records and logs
     * out. */
    if ((err = login(s, t, u[1].email, u[1].pw, &auditor)))
        return err;
    A(s);
    if ((err = must(s, &auditor, KR_OP_AUDIT_EXPORT, 0)))
        return err;
    A(s);
    if ((err = must(s, &auditor, KR_OP_AUTH_LOGOUT, 0)))
        return err;
    /* In the first tenant, someone guesses the temporary account's password
     * until it locks: the one pattern of the seeded traffic that raises a
     * security alert (seed_alerts). */
    for (unsigned i = 0; ti == 0 && i < KR_LOGIN_FAILURES_MAX; i++)
        if ((err = wrong_login(s, t, u[2].email)))
            return err;
    /* The temporary account goes. */
    if ((err = stream_version(s, t->id, KR_EV_ACCOUNT_CREATED, u[2].acct, &ver)))
        return err;
    struct kr_payload *a = A(s);
    kr_set_bytes(a, KR_FLD_ACCOUNT, u[2].acct, 16);
    kr_set_u64(a, KR_FLD_VERSION, ver);
    return must(s, &t->master, KR_OP_USERS_DELETE, 0);
}

/* Tags (one renamed) and one attribute of each type. */
static kr_err labels(struct seeder *s, struct seed_tenant *t)
{
    static const char *const tag_names[SEED_TAGS] = {
        "VIP", "新規", "リピーター", "東京", "大阪", "メルマガ", "休眠", "キャンペーン2026",
    };
    static const char *const attr_keys[KR_ATTRIBUTE_TYPE__COUNT] = {
        [KR_ATTRIBUTE_TYPE_STRING] = "prefecture",
        [KR_ATTRIBUTE_TYPE_NUMBER] = "points",
        [KR_ATTRIBUTE_TYPE_DATE] = "birthday",
        [KR_ATTRIBUTE_TYPE_BOOL] = "newsletter",
    };
    kr_err err;
    for (unsigned i = 0; i < SEED_TAGS; i++) {
        kr_set_str(A(s), KR_FLD_TAG_NAME, tag_names[i]);
        if ((err = must(s, &t->master, KR_OP_TAGS_CREATE, 0)) ||
            (err = out_id(s, KR_FLD_TAG, t->tags[i])))
            return err;
    }
    struct kr_payload *a = A(s);
    kr_set_bytes(a, KR_FLD_TAG, t->tags[SEED_TAGS - 2], 16);
    kr_set_str(a, KR_FLD_TAG_NAME, "休眠顧客");
    kr_set_u64(a, KR_FLD_VERSION, 1);
    if ((err = must(s, &t->master, KR_OP_TAGS_RENAME, 0)))
        return err;
    for (int i = 0; i < KR_ATTRIBUTE_TYPE__COUNT; i++) {
        snprintf(t->attr_keys[i], sizeof t->attr_keys[i], "%s", attr_keys[i]);
        a = A(s);
        kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, attr_keys[i]);
        kr_set_u64(a, KR_FLD_ATTRIBUTE_TYPE, (uint64_t)i);
        if ((err = must(s, &t->master, KR_OP_ATTRIBUTES_DEFINE, 0)) ||
            (err = out_id(s, KR_FLD_ATTRIBUTE, t->attrs[i])))
            return err;
    }
    return KR_OK;
}

/* ---- Contacts ---- */

static const char *const family[][2] = {
    {"佐藤", "サトウ"},   {"鈴木", "スズキ"},   {"高橋", "タカハシ"}, {"田中", "タナカ"},
    {"伊藤", "イトウ"},   {"渡辺", "ワタナベ"}, {"山本", "ヤマモト"}, {"中村", "ナカムラ"},
    {"小林", "コバヤシ"}, {"加藤", "カトウ"},
};
static const char *const given[][2] = {
    {"太郎", "タロウ"}, {"花子", "ハナコ"}, {"翔太", "ショウタ"}, {"陽菜", "ヒナ"},
    {"蓮", "レン"},     {"結衣", "ユイ"},   {"大輝", "ダイキ"},   {"美咲", "ミサキ"},
};
static const char *const prefectures[] = {"東京都", "大阪府",   "北海道", "福岡県",
                                          "愛知県", "神奈川県", "京都府", "沖縄県"};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Fills a register/update argument set for contact i of tenant ti. */
static void contact_fields(struct seeder *s, struct kr_payload *a, uint64_t ti, uint64_t i,
                           bool updated, char buf[4][96])
{
    const char *const *f = family[kr_rng_below(&s->wrng, NELEM(family))];
    const char *const *g = given[kr_rng_below(&s->wrng, NELEM(given))];
    snprintf(buf[0], 96, "%s %s", f[0], g[0]);
    kr_set_str(a, KR_FLD_NAME, buf[0]);
    snprintf(buf[1], 96, "%s %s", f[1], g[1]);
    kr_set_str(a, KR_FLD_NAME_KANA, buf[1]);
    uint64_t r = kr_rng_u64(&s->wrng);
    if (r % 10 < 7) {
        snprintf(buf[2], 96, "c%" PRIu64 "%s.t%" PRIu64 "@mail.example.jp", i, updated ? "n" : "",
                 ti);
        kr_set_str(a, KR_FLD_EMAIL, buf[2]);
    }
    if ((r >> 8) % 2 == 0) {
        snprintf(buf[3], 96, "090-%04u-%04u", (unsigned)((r >> 16) % 10000),
                 (unsigned)((r >> 32) % 10000));
        kr_set_str(a, KR_FLD_PHONE, buf[3]);
    }
    if ((r >> 48) % 10 < 6) {
        /* "U" and 32 hex digits: the shape of a LINE user id. */
        static _Thread_local char line[34];
        uint8_t b[16];
        kr_rng_fill(&s->wrng, b, sizeof b);
        line[0] = 'U';
        hex(line + 1, b, sizeof b);
        kr_set_str(a, KR_FLD_LINE_USER_ID, line);
    }
    if ((r >> 56) % 10 == 0)
        kr_set_str(a, KR_FLD_NOTE,
                   updated ? "住所変更あり。次回来店時に確認。" : "電話よりメール連絡を希望。");
}

/* One phase: for each contact i with pick(i), one async command. */
enum phase { PH_REGISTER, PH_TAG1, PH_TAG2, PH_SET1, PH_SET2, PH_UPDATE, PH_UNTAG, PH_DELETE };

/* Which tag contact i gets first: tag 0 ("VIP") on every third contact, so a
 * tenant of 3,000 contacts or more has a tag on 1,000 of them (bench query). */
static unsigned first_tag(uint64_t i)
{
    return i % 3 == 0 ? 0 : 1 + (unsigned)(i % (SEED_TAGS - 1));
}

static kr_err contact_phase(struct seeder *s, uint64_t ti, struct seed_tenant *t, enum phase ph,
                            uint64_t m)
{
    kr_err err;
    char buf[4][96];
    for (uint64_t i = 0; i < m; i++) {
        struct kr_payload *a = A(s);
        int op;
        switch (ph) {
        case PH_REGISTER:
            contact_fields(s, a, ti, i, false, buf);
            op = KR_OP_CONTACTS_REGISTER;
            break;
        case PH_TAG1:
        case PH_TAG2: {
            unsigned tag = first_tag(i);
            if (ph == PH_TAG2) {
                if (i % 2)
                    continue;
                tag = 1 + (tag + (unsigned)kr_rng_below(&s->wrng, SEED_TAGS - 2)) % (SEED_TAGS - 1);
            }
            kr_set_bytes(a, KR_FLD_CONTACT, s->cid[i], 16);
            kr_set_bytes(a, KR_FLD_TAG, t->tags[tag], 16);
            op = KR_OP_CONTACTS_TAG;
            break;
        }
        case PH_SET1:
        case PH_SET2: {
            unsigned at = (unsigned)(i % KR_ATTRIBUTE_TYPE__COUNT);
            if (ph == PH_SET2) {
                if (i % 5)
                    continue;
                at = (at + 1) % KR_ATTRIBUTE_TYPE__COUNT;
            }
            kr_set_bytes(a, KR_FLD_CONTACT, s->cid[i], 16);
            kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, t->attr_keys[at]);
            uint64_t r = kr_rng_u64(&s->wrng);
            switch (at) {
            case KR_ATTRIBUTE_TYPE_STRING: {
                const char *p = prefectures[r % NELEM(prefectures)];
                kr_set_value_str(a, KR_FLD_VALUE, p, strlen(p));
                break;
            }
            case KR_ATTRIBUTE_TYPE_NUMBER:
                kr_set_value_int(a, KR_FLD_VALUE, (int64_t)(r % 100000));
                break;
            case KR_ATTRIBUTE_TYPE_DATE: {
                int n = snprintf(buf[0], sizeof buf[0], "%04u-%02u-%02u", 1950 + (unsigned)(r % 60),
                                 1 + (unsigned)((r >> 8) % 12), 1 + (unsigned)((r >> 16) % 28));
                kr_set_value_str(a, KR_FLD_VALUE, buf[0], (size_t)n);
                break;
            }
            default:
                kr_set_value_bool(a, KR_FLD_VALUE, r & 1);
                break;
            }
            op = KR_OP_CONTACTS_SET;
            break;
        }
        case PH_UPDATE:
            if (i % 10 != 1)
                continue;
            kr_set_bytes(a, KR_FLD_CONTACT, s->cid[i], 16);
            contact_fields(s, a, ti, i, true, buf);
            op = KR_OP_CONTACTS_UPDATE;
            break;
        case PH_UNTAG:
            if (i % 20 != 2)
                continue;
            kr_set_bytes(a, KR_FLD_CONTACT, s->cid[i], 16);
            kr_set_bytes(a, KR_FLD_TAG, t->tags[first_tag(i)], 16);
            op = KR_OP_CONTACTS_UNTAG;
            break;
        default:
            if (i % 50 != 3)
                continue;
            kr_set_bytes(a, KR_FLD_CONTACT, s->cid[i], 16);
            op = KR_OP_CONTACTS_DELETE;
            break;
        }
        if (ph != PH_REGISTER)
            kr_set_u64(a, KR_FLD_VERSION, s->cver[i]);
        if ((err = must(s, &t->master, op, DOM_ASYNC)))
            return err;
        if (ph == PH_REGISTER) {
            if ((err = out_id(s, KR_FLD_CONTACT, s->cid[i])))
                return err;
            s->cver[i] = 1;
        } else {
            s->cver[i]++;
        }
        if ((i & 1023) == 0)
            progress(s, "contacts", ti, false);
    }
    return wait_all(s,
                    kr_ops[ph == PH_REGISTER ? KR_OP_CONTACTS_REGISTER : KR_OP_CONTACTS_TAG].name);
}

static kr_err contacts(struct seeder *s, uint64_t ti, struct seed_tenant *t)
{
    uint64_t m = s->o->contacts;
    kr_err err;
    for (int ph = PH_REGISTER; ph <= PH_DELETE; ph++)
        if ((err = contact_phase(s, ti, t, (enum phase)ph, m)))
            return err;
    s->contacts += m;
    /* The last tag goes, and with it its place on every contact. */
    struct kr_payload *a = A(s);
    kr_set_bytes(a, KR_FLD_TAG, t->tags[SEED_TAGS - 1], 16);
    kr_set_u64(a, KR_FLD_VERSION, 1);
    return must(s, &t->master, KR_OP_TAGS_DELETE, 0);
}

/* ---- The platform: notices, incidents, outbox, cancellation ---- */

/* Tenants a listed notice or incident names at most (the tenants field's
 * limit in fields.json). */
#define SEED_LISTED_MAX 1000u

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct seed_notices {
    uint8_t id[2][16];
    uint8_t incident[16]; /* the breach, which listed tenants' masters read */
    uint64_t *listed;     /* tenant ids of the listed notice */
    size_t nlisted;
};

static kr_err notices(struct seeder *s, struct seed_notices *sn)
{
    kr_err err;
    uint64_t now = atomic_load(&s->clk.now);
    /* A change for everyone, and a vulnerability notice for every other tenant. */
    struct kr_payload *a = A(s);
    kr_set_u64(a, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_CHANGE);
    kr_set_str(a, KR_FLD_TITLE, "利用規約改定のお知らせ");
    kr_set_str(a, KR_FLD_BODY,
               "2026年5月1日より利用規約を改定します。主な変更点は管理画面で"
               "ご確認ください。");
    kr_set_u64(a, KR_FLD_EFFECTIVE, now + 30ull * 24 * HOUR_NS);
    kr_set_u64(a, KR_FLD_AUDIENCE, KR_AUDIENCE_ALL);
    if ((err = must(s, &s->op, KR_OP_NOTICES_PUBLISH, 0)) ||
        (err = out_id(s, KR_FLD_NOTICE, sn->id[0])))
        return err;
    sn->nlisted = 0;
    for (uint64_t i = 0; i < s->ntenants && sn->nlisted < SEED_LISTED_MAX; i += 2)
        sn->listed[sn->nlisted++] = s->tenants[i].id;
    qsort(sn->listed, sn->nlisted, sizeof *sn->listed, cmp_u64); /* a list is a sorted set */
    a = A(s);
    kr_set_u64(a, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_VULNERABILITY);
    kr_set_str(a, KR_FLD_TITLE, "脆弱性対応のためのメンテナンス");
    kr_set_str(a, KR_FLD_BODY,
               "ライブラリの脆弱性に対応するため、緊急メンテナンスを実施しました。");
    kr_set_u64(a, KR_FLD_EFFECTIVE, now);
    kr_set_u64(a, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    kr_set_tenants(a, KR_FLD_TENANTS, sn->listed, sn->nlisted);
    if ((err = must(s, &s->op, KR_OP_NOTICES_PUBLISH, 0)) ||
        (err = out_id(s, KR_FLD_NOTICE, sn->id[1])))
        return err;
    return KR_OK;
}

static kr_err incidents(struct seeder *s, struct seed_notices *sn)
{
    kr_err err;
    uint8_t inc[2][16];
    uint64_t now = atomic_load(&s->clk.now), ver;
    /* A breach affecting the listed tenants: opened, notified, updated,
     * resolved. An outage for all: opened, notified on the dashboard, left
     * open. */
    for (int k = 0; k < 2; k++) {
        struct kr_payload *a = A(s);
        kr_set_u64(a, KR_FLD_INCIDENT_SCOPE,
                   k == 0 ? KR_INCIDENT_SCOPE_BREACH : KR_INCIDENT_SCOPE_OUTAGE);
        kr_set_u64(a, KR_FLD_SEVERITY, k == 0 ? KR_SEVERITY_HIGH : KR_SEVERITY_MEDIUM);
        kr_set_str(a, KR_FLD_TITLE, k == 0 ? "不正アクセスの可能性" : "APIの一時的な停止");
        kr_set_str(a, KR_FLD_SUMMARY,
                   k == 0 ? "一部テナントの管理画面に不審なログイン試行を検知しました。"
                          : "データベース障害によりAPIが応答しませんでした。");
        kr_set_u64(a, KR_FLD_DETECTED, now - (k == 0 ? 2 : 1) * HOUR_NS);
        kr_set_u64(a, KR_FLD_AUDIENCE, k == 0 ? KR_AUDIENCE_LISTED : KR_AUDIENCE_ALL);
        if (k == 0)
            kr_set_tenants(a, KR_FLD_TENANTS, sn->listed, sn->nlisted);
        if ((err = must(s, &s->op, KR_OP_INCIDENTS_OPEN, 0)) ||
            (err = out_id(s, KR_FLD_INCIDENT, inc[k])))
            return err;
    }
    memcpy(sn->incident, inc[0], 16);
    for (size_t i = 0; i < sn->nlisted; i++) {
        struct kr_payload *a = A(s);
        kr_set_bytes(a, KR_FLD_INCIDENT, inc[0], 16);
        kr_set_u64(a, KR_FLD_TENANT, sn->listed[i]);
        kr_set_u64(a, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
        if ((err = must(s, &s->op, KR_OP_INCIDENTS_NOTIFY, 0)))
            return err;
    }
    if (s->ntenants > 0) {
        struct kr_payload *a = A(s);
        kr_set_bytes(a, KR_FLD_INCIDENT, inc[1], 16);
        kr_set_u64(a, KR_FLD_TENANT, s->tenants[0].id);
        kr_set_u64(a, KR_FLD_CHANNEL, KR_CHANNEL_DASHBOARD);
        if ((err = must(s, &s->op, KR_OP_INCIDENTS_NOTIFY, 0)))
            return err;
    }
    if ((err = stream_version(s, 0, KR_EV_INCIDENT_OPENED, inc[0], &ver)))
        return err;
    struct kr_payload *a = A(s);
    kr_set_bytes(a, KR_FLD_INCIDENT, inc[0], 16);
    kr_set_u64(a, KR_FLD_SEVERITY, KR_SEVERITY_CRITICAL);
    kr_set_str(a, KR_FLD_SUMMARY, "調査の結果、3件のアカウントで不正ログインを確認しました。");
    kr_set_u64(a, KR_FLD_VERSION, ver);
    if ((err = must(s, &s->op, KR_OP_INCIDENTS_UPDATE, 0)) ||
        (err = out_u64(s, KR_FLD_VERSION, &ver)))
        return err;
    a = A(s);
    kr_set_bytes(a, KR_FLD_INCIDENT, inc[0], 16);
    kr_set_str(a, KR_FLD_SUMMARY, "対象アカウントのパスワードをリセットし、対応を完了しました。");
    kr_set_u64(a, KR_FLD_VERSION, ver);
    return must(s, &s->op, KR_OP_INCIDENTS_RESOLVE, 0);
}

/* The tenant's side: acknowledging what it sees, reporting something. */
static kr_err tenant_notices(struct seeder *s, uint64_t ti, struct seed_tenant *t,
                             const struct seed_notices *sn)
{
    kr_err err;
    for (int k = 0; k < 2; k++) {
        if (k == 1 && ti % 2 != 0)
            continue; /* only listed tenants see the second */
        kr_set_bytes(A(s), KR_FLD_NOTICE, sn->id[k], 16);
        if ((err = must(s, &t->master, KR_OP_NOTICES_ACK, 0)))
            return err;
    }
    if (ti % 2 == 0) {
        kr_set_bytes(A(s), KR_FLD_INCIDENT, sn->incident, 16);
        if ((err = must(s, &t->master, KR_OP_INCIDENTS_ACK, 0)))
            return err;
        struct kr_payload *a = A(s);
        kr_set_u64(a, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
        kr_set_str(a, KR_FLD_DETAILS,
                   "見覚えのないIPアドレスからのログイン通知メールが届きました。");
        if ((err = must(s, &t->master, KR_OP_INCIDENTS_REPORT, 0)))
            return err;
    }
    return KR_OK;
}

struct sent_list {
    uint64_t *tenant;
    uint8_t (*message)[16];
    size_t n, cap;
    kr_err err;
};

static bool collect_sent(void *arg, const struct outbox_msg *m)
{
    struct sent_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        uint64_t *t = realloc(l->tenant, cap * sizeof *t);
        if (t)
            l->tenant = t;
        uint8_t(*msg)[16] = realloc(l->message, cap * sizeof *msg);
        if (msg)
            l->message = msg;
        if (!t || !msg) {
            l->err = KR_ENOMEM;
            return false;
        }
        l->cap = cap;
    }
    l->tenant[l->n] = m->tenant;
    memcpy(l->message[l->n], m->message, 16);
    l->n++;
    return true;
}

/* A relay's temporary refusal of a message's first attempt, as the
 * delivery worker records it (api/mailer.c). */
static kr_err seed_failed(struct seeder *s, uint64_t tenant, const uint8_t message[16])
{
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    kr_payload_reset(p, KR_EV_OUTBOX_FAILED);
    kr_set_bytes(p, KR_FLD_MESSAGE, message, 16);
    kr_set_u64(p, KR_FLD_DELIVERY_ATTEMPT, 1);
    kr_set_str(p, KR_FLD_REASON, "the relay replied 451");
    kr_set_bool(p, KR_FLD_PERMANENT, false);
    kr_err err = dom_append_plain(s->d, tenant, JRN_SYSTEM_ACTOR, p, NULL, NULL);
    kr_payload_free(p);
    return err;
}

/* The delivery worker hands over every queued e-mail; one in 16 is
 * refused once first. */
static kr_err deliver(struct seeder *s)
{
    struct sent_list l = {0};
    uint64_t after = 0, last;
    size_t queued;
    kr_err err;
    /* The notice-of-change e-mails owed to each tenant's master first. */
    do {
        if ((err = dom_notice_mail(s->d, 0, &queued))) {
            fprintf(stderr, "kiroku: seed: notice e-mails: %s\n", kr_strerror(err));
            return err;
        }
    } while (queued > 0);
    for (;;) {
        size_t before = l.n;
        if ((err = outbox_pending(s->d, after, 0, collect_sent, &l, &last)) || (err = l.err))
            break;
        if (l.n == before)
            break;
        after = last;
    }
    for (size_t i = 0; !err && i < l.n; i++) {
        atomic_fetch_add(&s->clk.now, SEED_STEP_NS);
        if (i % 16 == 0 && (err = seed_failed(s, l.tenant[i], l.message[i])))
            fprintf(stderr, "kiroku: seed: outbox: %s\n", kr_strerror(err));
        else if ((err = dom_outbox_sent(s->d, l.tenant[i], l.message[i])))
            fprintf(stderr, "kiroku: seed: outbox: %s\n", kr_strerror(err));
    }
    free(l.tenant);
    free(l.message);
    return err;
}

/* ---- Running it ---- */

static kr_err seed_open(struct seeder *s)
{
    struct kr_domain_options o = {
        .dir = s->o->dir,
        .clock = &s->clock,
        .rng = &s->rng,
        .pwhash_ops = crypto_pwhash_OPSLIMIT_MIN,
        .pwhash_mem = crypto_pwhash_MEMLIMIT_MIN,
        .no_signup_limits = true, /* seeding signs up every tenant from here */
    };
    kr_err err = dom_open(&o, &s->d);
    if (err == KR_ENOTFOUND) {
        /* A new journal, its genesis record on the seeded clock too. */
        struct jrn_options jo = {.dir = s->o->dir, .clock = &s->clock};
        if ((err = jrn_create(&jo, NULL)))
            return err;
        err = dom_open(&o, &s->d);
    }
    if (err)
        return err;
    /* Record times never decrease: in a journal already past the epoch (one
     * made by `kiroku init`), the seeded clock starts a second after its
     * newest record instead. */
    struct jrn_recbuf b = {0};
    if ((err = jrn_read(s->d->j, jrn_size(s->d->j), &b)) == KR_OK &&
        b.rec.time_ns >= atomic_load(&s->clk.now))
        atomic_store(&s->clk.now, (b.rec.time_ns / SEED_NS + 1) * SEED_NS);
    jrn_recbuf_fini(&b);
    return err;
}

/* Sets up a seeder for o (clock, deterministic streams, buffers); the
 * domain is opened by seed_open. Free it with seeder_free. */
static kr_err seeder_new(const struct cli_seed_options *o, struct seeder **out,
                         struct seed_notices *sn)
{
    struct seeder *s = calloc(1, sizeof *s);
    *out = s;
    if (!s)
        return KR_ENOMEM;
    s->o = o;
    s->ntenants = o->tenants;
    atomic_store(&s->clk.now, SEED_EPOCH_NS);
    s->clock = (struct kr_clock){.now_ns = seed_clock_now, .ctx = &s->clk};
    kr_rng_det_init(&s->det, o->seed, &s->rng);
    kr_rng_det_init(&s->wdet, o->seed ^ 0x5eed5eed5eed5eedull, &s->wrng);
    kr_wbuf_init(&s->out, KR_API_REPLY_MAX);
    msgpack_unpacked_init(&s->res);
    s->anon.role = -1;
    s->args = kr_payload_new();
    s->tenants = calloc(o->tenants ? o->tenants : 1, sizeof *s->tenants);
    sn->listed = calloc(o->tenants ? o->tenants : 1, sizeof *sn->listed);
    s->cid = calloc(o->contacts ? o->contacts : 1, sizeof *s->cid);
    s->cver = calloc(o->contacts ? o->contacts : 1, sizeof *s->cver);
    if (!s->args || !s->tenants || !sn->listed || !s->cid || !s->cver)
        return KR_ENOMEM;
    return KR_OK;
}

/* Waits for what is in flight, closes the domain and frees s (NULL too);
 * returns err, or the wait's error if err is KR_OK. */
static kr_err seeder_free(struct seeder *s, struct seed_notices *sn, kr_err err)
{
    free(sn->listed);
    if (!s)
        return err;
    if (s->d) {
        kr_err e = dom_wait(s->d);
        err = err ? err : e;
    }
    dom_close(s->d);
    kr_payload_free(s->args);
    msgpack_unpacked_destroy(&s->res);
    kr_wbuf_free(&s->out);
    kr_rng_det_fini(&s->det);
    kr_rng_det_fini(&s->wdet);
    free(s->tenants);
    free(s->cid);
    free(s->cver);
    free(s);
    return err;
}

/* The platform's operator and its own history: a start, the operator's
 * work, backups. */
static kr_err seed_platform(struct seeder *s)
{
    const struct cli_seed_options *o = s->o;
    kr_err err;
    char email[64], pw[64];
    snprintf(email, sizeof email, "ops-%016" PRIx64 "@platform.example.jp", o->seed);
    snprintf(pw, sizeof pw, "seed-Operator-%016" PRIx64, o->seed);
    s->op = (struct kr_caller){.tenant = 0, .role = KR_ROLE_OPERATOR, .operator_endpoint = true};
    atomic_fetch_add(&s->clk.now, SEED_STEP_NS);
    if ((err = dom_operator_create(s->d, email, pw, s->op.account))) {
        fprintf(stderr, "kiroku: seed: operator: %s\n", kr_strerror(err));
        return err;
    }
    char previous[33];
    kr_set_str(A(s), KR_FLD_WORK, "seeded the demo data");
    kr_set_str(s->args, KR_FLD_HOST, "seed.example.jp");
    if ((err = ret_serve_started(s->d, KIROKU_VERSION, "seed.example.jp", previous)) ||
        (err = must(s, &s->op, KR_OP_MAINTENANCE_RECORD, 0)) ||
        (err = ret_backup_recorded(s->d, true, "2026-04-01", jrn_size(s->d->j), 4096, NULL)) ||
        (err = ret_backup_recorded(s->d, false, NULL, 0, 0, "the backups disk is full"))) {
        fprintf(stderr, "kiroku: seed: the platform's records: %s\n", kr_strerror(err));
        return err;
    }
    return KR_OK;
}

/* The alert scanner over what was seeded, with the default rules: the
 * lockout of the first tenant's temporary account raises an alert
 * (alert.raised; the only one, alerts_test checks, for the sizes it seeds),
 * and the operator acknowledges the first alert (alert.acknowledged). */
static kr_err seed_alerts(struct seeder *s)
{
    struct alr_options o;
    alr_defaults(&o);
    o.from_seq = s->start_size + 1;
    o.no_cursor = true;
    struct alr_scanner *sc = NULL;
    uint64_t n = 0, step = 0;
    bool more = true;
    kr_err err = alr_new(s->d, &o, &sc);
    while (!err && more && !(err = alr_scan(sc, &step, &more)))
        n += step;
    if (sc)
        alr_free(sc);
    if (err)
        return err;
    A(s);
    if ((err = must(s, &s->op, KR_OP_ALERTS_LIST, 0)))
        return err;
    /* the first alert of the list: its id and version */
    size_t off = 0;
    uint8_t id[16];
    uint64_t version = 0;
    bool found = false;
    if (msgpack_unpack_next(&s->res, s->out.data, s->out.size, &off) == MSGPACK_UNPACK_SUCCESS &&
        s->res.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *m = &s->res.data.via.map;
        for (uint32_t i = 0; i < m->size && !found; i++) {
            const msgpack_object *v = &m->ptr[i].val;
            if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size == 0 ||
                v->via.array.ptr[0].type != MSGPACK_OBJECT_MAP)
                continue;
            const msgpack_object_map *it = &v->via.array.ptr[0].via.map;
            for (uint32_t k = 0; k < it->size; k++) {
                const msgpack_object *key = &it->ptr[k].key, *val = &it->ptr[k].val;
                if (key->type != MSGPACK_OBJECT_STR)
                    continue;
                if (key->via.str.size == 5 && memcmp(key->via.str.ptr, "alert", 5) == 0 &&
                    val->type == MSGPACK_OBJECT_BIN && val->via.bin.size == 16) {
                    memcpy(id, val->via.bin.ptr, 16);
                    found = true;
                } else if (key->via.str.size == 7 && memcmp(key->via.str.ptr, "version", 7) == 0 &&
                           val->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                    version = val->via.u64;
                }
            }
        }
    }
    if (!found || n == 0) {
        fprintf(stderr, "kiroku: seed: the alert scanner raised no alert\n");
        return KR_ECORRUPT;
    }
    struct kr_payload *a = A(s);
    kr_set_bytes(a, KR_FLD_ALERT, id, 16);
    kr_set_u64(a, KR_FLD_VERSION, version);
    return must(s, &s->op, KR_OP_ALERTS_ACK, 0);
}

/* Every tenant's sign-up, users, labels, notices and contacts; the outbox
 * delivered; the last tenant cancelled and (unless left) erased. */
static kr_err seed_tenants(struct seeder *s, struct seed_notices *sn)
{
    const struct cli_seed_options *o = s->o;
    kr_err err;
    for (uint64_t ti = 0; ti < o->tenants; ti++) {
        struct seed_tenant *t = &s->tenants[ti];
        if ((err = signup(s, ti, t)) || (err = users(s, ti, t)) || (err = labels(s, t)))
            return err;
        progress(s, "sign-up", ti, false);
    }
    if (o->tenants && ((err = notices(s, sn)) || (err = incidents(s, sn))))
        return err;
    for (uint64_t ti = 0; ti < o->tenants; ti++) {
        struct seed_tenant *t = &s->tenants[ti];
        if ((err = tenant_notices(s, ti, t, sn)) || (err = contacts(s, ti, t)))
            return err;
        /* The first tenant's master takes a page of its contacts with the
         * export utility (utility.exported). */
        if (ti == 0 && ((err = wait_all(s, "contacts")) || (A(s), false) ||
                        (err = must(s, &t->master, KR_OP_UTILITY_EXPORT, 0))))
            return err;
        progress(s, "contacts", ti, true);
    }
    if ((err = deliver(s)))
        return err;
    if (o->tenants && ((err = wait_all(s, "seed")) || (err = seed_alerts(s)))) {
        fprintf(stderr, "kiroku: seed: security alerts: %s\n", kr_strerror(err));
        return err;
    }
    if (o->cancel && o->tenants) {
        kr_set_u64(A(s), KR_FLD_TENANT, s->tenants[o->tenants - 1].id);
        if ((err = must(s, &s->op, KR_OP_TENANTS_CANCEL, 0)))
            return err;
    }
    if ((err = wait_all(s, "seed")))
        return err;
    /* The cancelled tenant's erasure (the retention job's, done at once here). */
    if (o->cancel && !o->leave_cancelled && o->tenants &&
        (err = ret_erase_tenant(s->d, s->tenants[o->tenants - 1].id, NULL))) {
        fprintf(stderr, "kiroku: seed: erasing a tenant: %s\n", kr_strerror(err));
        return err;
    }
    if (o->tenants && (err = abandoned_application(s))) {
        fprintf(stderr, "kiroku: seed: an abandoned application: %s\n", kr_strerror(err));
        return err;
    }
    return KR_OK;
}

kr_err cli_seed(const struct cli_seed_options *o, struct cli_seed_result *r)
{
    struct seeder *s;
    struct seed_notices sn = {0};
    memset(r, 0, sizeof *r);
    kr_err err = seeder_new(o, &s, &sn);
    if (err)
        return seeder_free(s, &sn, err);
    if ((err = seed_open(s))) {
        fprintf(stderr, "kiroku: seed: %s: %s\n", o->dir, kr_strerror(err));
        return seeder_free(s, &sn, err);
    }
    s->start_size = jrn_size(s->d->j);
    s->t0 = s->last_progress = cli_now();
    if ((err = seed_platform(s)) || (err = seed_tenants(s, &sn)))
        return seeder_free(s, &sn, err);
    r->events = jrn_size(s->d->j) - s->start_size;
    r->seconds = cli_now() - s->t0;
    r->tenants = o->tenants;
    r->contacts = s->contacts;
    if (o->tenants) {
        r->tenant = s->tenants[0].id;
        memcpy(r->master, s->tenants[0].master.account, 16);
        memcpy(r->tag, s->tenants[0].tags[0], 16);
        r->cancelled = o->cancel ? s->tenants[o->tenants - 1].id : 0;
    }
    return seeder_free(s, &sn, KR_OK);
}
