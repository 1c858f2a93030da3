/*
 * cmd_signup.c: the sign-up flow and the operators' tenant ops:
 * signup.apply, signup.confirm_payment, signup.complete, tenants.list,
 * tenants.cancel. Also the password hashing the account ops share.
 *
 * Design notes. An application reserves its tenant id at once (a random id
 * in 1..2^63-1; the view refuses one already reserved) and that tenant's data
 * key exists from then on, so the applicant's e-mail is sealed under the key
 * of the tenant it will belong to, and erasing the tenant erases it too. The
 * auth code is in clear only inside the sealed outbox record; the sign-up
 * keeps a keyed hash of it (the tenant key, purpose "authcode", over
 * application | code). Wrong codes are counted on the signup stream, decided
 * on its version, so parallel guesses serialize and cannot get more than
 * KR_AUTH_CODE_TRIES tries. The applicant's password is checked before the
 * code, so a refused password says nothing about whether the code was right.
 */
#include "accounts.h"
#include "cmd.h"
#include "rate.h"
#include "retention.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Random tenant ids drawn before giving up: with 2^63 ids, a collision is
 * already beyond belief; 16 only bounds the loop. */
#define SIGNUP_TENANT_TRIES 16
/* Random tenant codes drawn before giving up (36^9 codes). */
#define SIGNUP_CODE_TRIES 16
/* A generated tenant code: "t" + 9 of [a-z0-9]. */
#define TENANT_CODE_RANDOM 9u

kr_err acct_hash_password(struct kr_domain *d, const void *pw, size_t len, char out[ACCT_HASH_MAX])
{
    /* crypto_pwhash_str's format, with the salt from the domain's rng so
     * the same inputs give the same events (seeding, tests); in production
     * the rng is the system's. crypto_pwhash_str_verify reads it. */
    enum { SALT = crypto_pwhash_SALTBYTES, HASH = 32 };
    uint8_t salt[SALT], h[HASH];
    char s64[sodium_base64_ENCODED_LEN(SALT, sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];
    char h64[sodium_base64_ENCODED_LEN(HASH, sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];
    kr_rng_fill(d->rng, salt, sizeof salt);
    if (dom_pwhash_acquire(d))
        return KR_EBUSY;
    int rc = crypto_pwhash(h, sizeof h, pw, len, salt, d->pwhash_ops, d->pwhash_mem,
                           crypto_pwhash_ALG_ARGON2ID13);
    dom_pwhash_release(d);
    if (rc != 0)
        return KR_ENOMEM;
    sodium_bin2base64(s64, sizeof s64, salt, sizeof salt,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    sodium_bin2base64(h64, sizeof h64, h, sizeof h, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    sodium_memzero(h, sizeof h);
    int n = snprintf(out, ACCT_HASH_MAX, "$argon2id$v=19$m=%zu,t=%llu,p=1$%s$%s",
                     d->pwhash_mem / 1024, d->pwhash_ops, s64, h64);
    sodium_memzero(h64, sizeof h64);
    return n > 0 && (size_t)n < ACCT_HASH_MAX ? KR_OK : KR_ETOOLARGE;
}

kr_err acct_verify_password(struct kr_domain *d, const void *h, size_t hlen, const void *pw,
                            size_t len, bool *ok)
{
    char hs[ACCT_HASH_MAX + 1];
    *ok = false;
    if (hlen > ACCT_HASH_MAX)
        return KR_OK;
    if (dom_pwhash_acquire(d))
        return KR_EBUSY;
    memcpy(hs, h, hlen);
    hs[hlen] = 0;
    *ok = crypto_pwhash_str_verify(hs, pw, len) == 0;
    dom_pwhash_release(d);
    sodium_memzero(hs, sizeof hs);
    return KR_OK;
}

/* The keyed hash of an auth code. */
static void code_hash(const struct kr_data_key *key, const uint8_t app[16], const char *code,
                      size_t len, uint8_t out[32])
{
    uint8_t m[16 + KR_FLD_AUTH_CODE_MAX];
    KR_ASSERT(len <= KR_FLD_AUTH_CODE_MAX); /* the payload decoder checked it */
    memcpy(m, app, 16);
    memcpy(m + 16, code, len);
    kr_data_key_mac(key, "authcode", m, 16 + len, out);
    sodium_memzero(m, sizeof m);
}

/* ---- signup.apply ---- */

/* Records access.rate_limited (platform, plain: the op and which limit,
 * never the address). Best effort: the refusal stands either way. */
static void record_limited(struct cmd *c, const char *limit)
{
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return;
    kr_payload_reset(p, KR_EV_ACCESS_RATE_LIMITED);
    kr_set_str(p, KR_FLD_OP, kr_ops[KR_OP_SIGNUP_APPLY].name);
    kr_set_str(p, KR_FLD_REASON, limit);
    kr_err err = dom_append_plain(c->d, 0, JRN_SYSTEM_ACTOR, p, NULL, NULL);
    (void)err;
    kr_payload_free(p);
}

/* Counts this application against its e-mail address (lower-cased, as
 * accounts are found) and its source: KR_ERATE, saying when to retry, past
 * KR_SIGNUP_PER_EMAIL_MAX / KR_SIGNUP_PER_SOURCE_MAX in a window. */
static kr_err signup_rate(struct cmd *c, const struct kr_value *email, bool give_back)
{
    uint8_t low[256];
    if (!c->d->signup_rate)
        return KR_OK;
    if (email->n > sizeof low)
        return cmd_fail(c, KR_ETOOLARGE, "email", "too long");
    for (size_t i = 0; i < email->n; i++)
        low[i] =
            email->p[i] >= 'A' && email->p[i] <= 'Z' ? (uint8_t)(email->p[i] + 32) : email->p[i];
    const struct kr_rate_key keys[2] = {
        {"email", low, email->n, KR_SIGNUP_PER_EMAIL_MAX},
        {"source", c->who->source, sizeof c->who->source, KR_SIGNUP_PER_SOURCE_MAX},
    };
    if (give_back) {
        kr_rate_give_back(c->d->signup_rate, keys, 2, c->now);
        sodium_memzero(low, sizeof low);
        return KR_OK;
    }
    size_t which;
    uint64_t retry_ns;
    bool first;
    kr_err err = kr_rate_take(c->d->signup_rate, keys, 2, c->now, &which, &retry_ns, &first);
    sodium_memzero(low, sizeof low);
    if (err != KR_ERATE)
        return err;
    if (first) /* recorded once per limit and window: a flood is seen, not copied */
        record_limited(c, which == 0 ? "email" : "source");
    char why[sizeof c->diag->why];
    unsigned long long s = (unsigned long long)((retry_ns + 999999999ull) / 1000000000ull);
    snprintf(why, sizeof why, "too many applications %s in the last hour: try again in %llu s",
             which == 0 ? "for this address" : "from this source address", s ? s : 1);
    return cmd_fail(c, KR_ERATE, which == 0 ? "email" : "source", why);
}

/* The e-mail language a language value names: ja when it is absent (an
 * application or tenant recorded before languages existed). */
static uint64_t language_of(const struct kr_value *v)
{
    return v->set && v->u < KR_LANGUAGE__COUNT ? v->u : KR_LANGUAGE_JA;
}

/* The application, once counted: a tenant id and key, the record and the
 * payment-link e-mail. */
static kr_err apply_counted(struct cmd *c, const struct kr_value *email)
{
    struct kr_data_key key;
    uint64_t tenant = 0;
    kr_err err = KR_OK;
    for (int i = 0;; i++) {
        if (i == SIGNUP_TENANT_TRIES)
            return cmd_fail(c, KR_EEXIST, "tenant", "no free tenant id");
        struct va_tenant t;
        uint64_t cand = kr_rng_below(c->d->rng, (uint64_t)INT64_MAX) + 1;
        err = va_tenant_get(&c->d->views, c->txn, cand, &t);
        if (err == KR_OK)
            continue;
        if (err != KR_ENOTFOUND)
            return err;
        err = cmd_key(c, cand, true, &key);
        if (err == KR_EKEY)
            continue; /* an erased tenant's id is never used again */
        if (err)
            return err;
        tenant = cand;
        break;
    }
    uint8_t app[16], mac[32];
    cmd_new_id(c, app);
    if (c->d->token_tagged) { /* the shard's redirect tag, as tokens carry it */
        app[0] = DOM_TOKEN_TAGGED;
        memcpy(app + 1, c->d->token_tag, sizeof c->d->token_tag);
    }
    va_email_mac(&key, email->p, email->n, mac);
    kr_data_key_wipe(&key);
    /* The payment link is e-mailed in the same append. */
    uint8_t msg[16];
    cmd_new_id(c, msg);
    uint64_t lang = language_of(&c->args->v[KR_FLD_LANGUAGE]);
    struct kr_payload *p = cmd_event(c, KR_EV_SIGNUP_APPLIED, tenant, 0);
    struct kr_payload *q = cmd_event(c, KR_EV_OUTBOX_QUEUED, tenant, 0);
    if (!p || !q)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_APPLICATION, app, 16);
    kr_set_bytes(p, KR_FLD_EMAIL, email->p, email->n);
    kr_set_bytes(p, KR_FLD_EMAIL_MAC, mac, 32);
    kr_set_u64(p, KR_FLD_LANGUAGE, lang);
    kr_set_bytes(q, KR_FLD_MESSAGE, msg, 16);
    kr_set_u64(q, KR_FLD_TEMPLATE, KR_TEMPLATE_PAYMENT_LINK);
    kr_set_bytes(q, KR_FLD_EMAIL, email->p, email->n);
    kr_set_bytes(q, KR_FLD_APPLICATION, app, 16);
    kr_set_u64(q, KR_FLD_LANGUAGE, lang);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 1);
    res_bytes(c, KR_FLD_APPLICATION, app, 16);
    return KR_OK;
}

kr_err cmd_signup_apply(struct cmd *c)
{
    const struct kr_value *email = &c->args->v[KR_FLD_EMAIL];
    kr_err err = signup_rate(c, email, false);
    if (err)
        return err;
    if ((err = apply_counted(c, email))) {
        /* Nothing applied (dom_exec may decide it again): not counted. */
        kr_err gb = signup_rate(c, email, true);
        (void)gb;
    }
    return err;
}

/* The application named in the arguments: its tenant and row. */
static kr_err find_signup(struct cmd *c, uint64_t *tenant, struct va_signup *s)
{
    const uint8_t *app = c->args->v[KR_FLD_APPLICATION].p;
    kr_err err = va_signup_tenant(&c->d->views, c->txn, app, tenant);
    if (!err)
        err = va_signup_get(&c->d->views, c->txn, *tenant, app, s);
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, KR_ENOTFOUND, "application", "no such application");
    return err;
}

/* KR_EEXPIRED if application s (not completed) is older than
 * RET_SIGNUP_EXPIRE_NS: the retention job erases it (retention.h). */
static kr_err check_not_expired(struct cmd *c, const struct va_signup *s)
{
    struct jrn_record r;
    kr_err err = jrn_read_in(c->d->j, c->txn, s->applied_seq, &r);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err; /* views point at records that exist */
    if (ret_signup_expired(r.time_ns, c->now))
        return cmd_fail(c, KR_EEXPIRED, "application",
                        "the application expired (7 days): apply again");
    return KR_OK;
}

/* ---- signup.confirm_payment ---- */

kr_err cmd_signup_confirm_payment(struct cmd *c)
{
    const struct kr_value *app = &c->args->v[KR_FLD_APPLICATION];
    const struct kr_value *ref = &c->args->v[KR_FLD_PAYMENT_REF];
    struct va_signup s = {0};
    struct kr_data_key key;
    uint64_t tenant;
    kr_err err = KR_OK;

    if ((err = find_signup(c, &tenant, &s)))
        return err;
    if (s.state == VA_SIGNUP_COMPLETED)
        return cmd_fail(c, KR_ECONFLICT, "application", "sign-up already completed");
    if ((err = check_not_expired(c, &s)))
        return err;
    if ((err = cmd_read(c, s.applied_seq, KR_EV_SIGNUP_APPLIED, c->scratch)))
        return err;
    const struct kr_value *email = &c->scratch->v[KR_FLD_EMAIL];
    if ((err = cmd_key(c, tenant, false, &key)))
        return err;
    /* A new code each time: confirming again re-sends a fresh one. */
    char code[9];
    size_t len = 6 + (size_t)kr_rng_below(c->d->rng, 3);
    for (size_t i = 0; i < len; i++)
        code[i] = (char)('0' + kr_rng_below(c->d->rng, 10));
    code[len] = 0;
    uint8_t hash[32], msg[16];
    code_hash(&key, app->p, code, len, hash);
    kr_data_key_wipe(&key);
    uint64_t expires = c->now + KR_AUTH_CODE_TTL_NS;
    cmd_new_id(c, msg);

    struct kr_payload *p1 = cmd_event(c, KR_EV_SIGNUP_PAYMENT_CONFIRMED, tenant, s.version);
    struct kr_payload *p2 = cmd_event(c, KR_EV_SIGNUP_CODE_ISSUED, tenant, s.version + 1);
    struct kr_payload *p3 = cmd_event(c, KR_EV_OUTBOX_QUEUED, tenant, 0);
    if (!p1 || !p2 || !p3) {
        sodium_memzero(code, sizeof code);
        return KR_ENOMEM;
    }
    kr_set_bytes(p1, KR_FLD_APPLICATION, app->p, 16);
    kr_set_bytes(p1, KR_FLD_PAYMENT_REF, ref->p, ref->n);
    kr_set_bytes(p2, KR_FLD_APPLICATION, app->p, 16);
    kr_set_bytes(p2, KR_FLD_CODE_HASH, hash, 32);
    kr_set_u64(p2, KR_FLD_EXPIRES, expires);
    kr_set_u64(p2, KR_FLD_TRIES_LEFT, KR_AUTH_CODE_TRIES);
    kr_set_bytes(p3, KR_FLD_MESSAGE, msg, 16);
    kr_set_u64(p3, KR_FLD_TEMPLATE, KR_TEMPLATE_AUTH_CODE);
    kr_set_bytes(p3, KR_FLD_EMAIL, email->p, email->n);
    kr_set_bytes(p3, KR_FLD_AUTH_CODE, code, len);
    kr_set_bytes(p3, KR_FLD_APPLICATION, app->p, 16);
    kr_set_u64(p3, KR_FLD_LANGUAGE, language_of(&c->scratch->v[KR_FLD_LANGUAGE]));
    err = cmd_commit(c);
    sodium_memzero(code, sizeof code);
    if (err)
        return err;
    res_map(c, 1);
    res_u64(c, KR_FLD_EXPIRES, expires);
    return KR_OK;
}

/* ---- signup.complete ---- */

/* A tenant code no tenant has: "t" + TENANT_CODE_RANDOM of [a-z0-9]. */
static kr_err new_tenant_code(struct cmd *c, char out[TENANT_CODE_RANDOM + 2])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (int tries = 0; tries < SIGNUP_CODE_TRIES; tries++) {
        uint64_t t;
        out[0] = 't';
        for (size_t i = 1; i <= TENANT_CODE_RANDOM; i++)
            out[i] = alphabet[kr_rng_below(c->d->rng, sizeof alphabet - 1)];
        out[TENANT_CODE_RANDOM + 1] = 0;
        kr_err err = va_tenant_by_code(&c->d->views, c->txn, out, TENANT_CODE_RANDOM + 1, &t);
        if (err == KR_ENOTFOUND)
            return KR_OK;
        if (err)
            return err;
    }
    return cmd_fail(c, KR_EEXIST, "tenant_code", "no free tenant code");
}

kr_err cmd_signup_complete(struct cmd *c)
{
    const struct kr_value *app = &c->args->v[KR_FLD_APPLICATION];
    const struct kr_value *code = &c->args->v[KR_FLD_AUTH_CODE];
    const struct kr_value *pw = &c->args->v[KR_FLD_PASSWORD];
    const struct kr_value *name = &c->args->v[KR_FLD_TENANT_NAME];
    struct va_signup s = {0};
    struct va_tenant t;
    struct kr_data_key key;
    uint64_t tenant;
    const char *why;
    kr_err err = KR_OK;

    if ((err = find_signup(c, &tenant, &s)))
        return err;
    if (s.state == VA_SIGNUP_COMPLETED)
        return cmd_fail(c, KR_EEXPIRED, "application", "sign-up already completed");
    if ((err = check_not_expired(c, &s)))
        return err;
    if (s.state != VA_SIGNUP_PAID || s.expires == 0)
        return cmd_fail(c, KR_EEXPIRED, "auth_code", "no auth code was issued");
    if (c->now >= s.expires || s.tries_left == 0)
        return cmd_fail(c, KR_EEXPIRED, "auth_code",
                        "the auth code expired or its tries are used up");
    if ((err = cmd_read(c, s.applied_seq, KR_EV_SIGNUP_APPLIED, c->scratch)))
        return err;
    const struct kr_value *email = &c->scratch->v[KR_FLD_EMAIL];
    if (kr_password_check(pw->p, pw->n, email->p, email->n, &why))
        return cmd_fail(c, KR_EINVAL, "password", why);
    if ((err = cmd_key(c, tenant, false, &key)))
        return err;
    uint8_t want[32];
    code_hash(&key, app->p, (const char *)code->p, code->n, want);
    if (crypto_verify_32(want, s.code_hash) != 0) {
        kr_data_key_wipe(&key);
        struct kr_payload *p = cmd_event(c, KR_EV_SIGNUP_CODE_FAILED, tenant, s.version);
        if (!p)
            return KR_ENOMEM;
        kr_set_bytes(p, KR_FLD_APPLICATION, app->p, 16);
        kr_set_u64(p, KR_FLD_TRIES_LEFT, s.tries_left - 1);
        if ((err = cmd_commit(c)))
            return err; /* a conflict: another try got in first; decide again */
        return cmd_fail(c, KR_EAUTH, "auth_code", "wrong auth code");
    }
    if ((err = va_tenant_get(&c->d->views, c->txn, tenant, &t))) {
        kr_data_key_wipe(&key);
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
    }
    char tcode[TENANT_CODE_RANDOM + 2];
    if ((err = new_tenant_code(c, tcode))) {
        kr_data_key_wipe(&key);
        return err;
    }
    uint8_t account[16], msg[16], mac[32];
    char hash[ACCT_HASH_MAX];
    cmd_new_id(c, account);
    cmd_new_id(c, msg);
    va_email_mac(&key, email->p, email->n, mac);
    kr_data_key_wipe(&key);
    if ((err = acct_hash_password(c->d, pw->p, pw->n, hash)))
        return err;

    struct kr_payload *p1 = cmd_event(c, KR_EV_SIGNUP_COMPLETED, tenant, s.version);
    struct kr_payload *p2 = cmd_event(c, KR_EV_TENANT_PROVISIONED, tenant, t.version);
    struct kr_payload *p3 = cmd_event(c, KR_EV_ACCOUNT_CREATED, tenant, 0);
    struct kr_payload *p4 = cmd_event(c, KR_EV_OUTBOX_QUEUED, tenant, 0);
    if (!p1 || !p2 || !p3 || !p4) {
        sodium_memzero(hash, sizeof hash);
        return KR_ENOMEM;
    }
    kr_set_bytes(p1, KR_FLD_APPLICATION, app->p, 16);
    kr_set_bytes(p1, KR_FLD_ACCOUNT, account, 16);
    kr_set_bytes(p2, KR_FLD_APPLICATION, app->p, 16);
    kr_set_str(p2, KR_FLD_TENANT_CODE, tcode);
    kr_set_bytes(p2, KR_FLD_TENANT_NAME, name->p, name->n);
    kr_set_u64(p2, KR_FLD_REGION, KR_REGION_JP);
    uint64_t lang = language_of(&c->scratch->v[KR_FLD_LANGUAGE]);
    kr_set_u64(p2, KR_FLD_LANGUAGE, lang);
    kr_set_bytes(p3, KR_FLD_ACCOUNT, account, 16);
    kr_set_u64(p3, KR_FLD_ROLE, KR_ROLE_MASTER);
    kr_set_u64(p3, KR_FLD_PERMISSIONS, (1ull << KR_PERMISSION__COUNT) - 1);
    kr_set_bytes(p3, KR_FLD_EMAIL, email->p, email->n);
    kr_set_bytes(p3, KR_FLD_EMAIL_MAC, mac, 32);
    kr_set_str(p3, KR_FLD_PASSWORD_HASH, hash);
    kr_set_bytes(p4, KR_FLD_MESSAGE, msg, 16);
    kr_set_u64(p4, KR_FLD_TEMPLATE, KR_TEMPLATE_ACCOUNT_INFO);
    kr_set_bytes(p4, KR_FLD_EMAIL, email->p, email->n);
    kr_set_str(p4, KR_FLD_TENANT_CODE, tcode);
    kr_set_u64(p4, KR_FLD_LANGUAGE, lang);
    err = cmd_commit(c);
    sodium_memzero(hash, sizeof hash);
    if (err)
        return err;
    res_map(c, 2);
    res_str(c, KR_FLD_TENANT_CODE, tcode, strlen(tcode));
    res_bytes(c, KR_FLD_ACCOUNT, account, 16);
    return KR_OK;
}

/* ---- tenants.list ---- */

kr_err cmd_tenants_list(struct cmd *c)
{
    const struct kr_value *cur = &c->args->v[KR_FLD_CURSOR];
    uint32_t limit = cmd_limit(c);
    uint64_t from = 1;
    kr_err err = KR_OK;
    if (cur->set) {
        if (cur->n != 8)
            return cmd_fail(c, KR_EINVAL, "cursor", "not a cursor of this list");
        from = v_get_u64(cur->p) + 1;
        if (from == 0 || from > (uint64_t)INT64_MAX)
            return cmd_fail(c, KR_EINVAL, "cursor", "not a cursor of this list");
    }
    uint64_t *ids = calloc(limit, sizeof *ids);
    struct va_tenant *rows = calloc(limit, sizeof *rows);
    if (!ids || !rows) {
        free(ids);
        free(rows);
        return KR_ENOMEM;
    }
    MDB_cursor *mc;
    uint32_t n = 0;
    bool more = false;
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_TENANTS], &mc);
    if (rc) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    uint8_t kb[8];
    v_put_u64(kb, from);
    MDB_val k = {8, kb}, val;
    for (rc = mdb_cursor_get(mc, &k, &val, MDB_SET_RANGE); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(mc, &k, &val, MDB_NEXT)) {
        if (k.mv_size != 8) {
            rc = MDB_CORRUPTED;
            break;
        }
        if (n == limit) {
            more = true;
            break;
        }
        ids[n] = v_get_u64(k.mv_data);
        if ((err = va_tenant_get(&c->d->views, c->txn, ids[n], &rows[n]))) {
            if (err == KR_ECORRUPT) /* the place, for the operator */
                err = views_corrupt(VIEW_TENANTS, k.mv_data, 8, "the row does not decode", c->diag);
            break;
        }
        n++;
    }
    mdb_cursor_close(mc);
    if (err)
        goto out;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    res_map(c, 2);
    res_keyname(c, "tenants");
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n; i++) {
        res_map(c, 5);
        res_u64(c, KR_FLD_TENANT, ids[i]);
        if (rows[i].code_len)
            res_str(c, KR_FLD_TENANT_CODE, rows[i].code, rows[i].code_len);
        else
            res_nil(c, KR_FLD_TENANT_CODE);
        res_enum(c, KR_FLD_TENANT_STATE, (uint64_t)rows[i].state);
        if (rows[i].cancelled)
            res_u64(c, KR_FLD_CANCELLED, rows[i].cancelled);
        else
            res_nil(c, KR_FLD_CANCELLED);
        /* Only while the erasure is owed: an erased tenant's row is bare. */
        if (rows[i].state == KR_TENANT_STATE_CANCELLED)
            res_u64(c, KR_FLD_ERASE_BY, ret_erase_by(rows[i].cancelled));
        else
            res_nil(c, KR_FLD_ERASE_BY);
    }
    if (more && n > 0) {
        uint8_t cb[8];
        v_put_u64(cb, ids[n - 1]);
        res_bytes(c, KR_FLD_CURSOR, cb, 8);
    } else {
        res_nil(c, KR_FLD_CURSOR);
    }
out:
    free(ids);
    free(rows);
    return err;
}

/* ---- tenants.cancel ---- */

kr_err cmd_tenants_cancel(struct cmd *c)
{
    uint64_t tenant = c->args->v[KR_FLD_TENANT].u;
    struct va_tenant t;
    kr_err err = KR_OK;
    err = va_tenant_get(&c->d->views, c->txn, tenant, &t);
    if (err == KR_ENOTFOUND || (!err && t.state == KR_TENANT_STATE_APPLIED))
        return cmd_fail(c, KR_ENOTFOUND, "tenant", "no such tenant");
    if (err)
        return err;
    if (t.state != KR_TENANT_STATE_ACTIVE)
        return cmd_fail(c, KR_ECONFLICT, "tenant", "the tenant is not active");
    struct kr_payload *p = cmd_event(c, KR_EV_TENANT_CANCELLED, tenant, t.version);
    if (!p)
        return KR_ENOMEM;
    kr_set_u64(p, KR_FLD_CANCELLED, c->now);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 1);
    res_u64(c, KR_FLD_CANCELLED, c->now);
    return KR_OK;
}
