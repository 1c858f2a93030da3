/*
 * accounts.h: tenants, sign-up applications, accounts and sessions: reading
 * their views (v_tenants.c, v_accounts.c keep them), the session API the
 * server authenticates requests with, bootstrapping the first operator, and
 * the password rules (passwords.c).
 *
 * Rows hold ids, roles, permission masks, counters, times, versions, seqs and
 * tenant codes: no personal data. E-mail addresses, display names, tenant
 * names and password hashes live only in the (encrypted) records the rows
 * point at by seq; accounts are found by e-mail through a keyed hash
 * (email_mac) under the tenant's data key.
 *
 * Row readers borrow nothing: they copy the row into the caller's struct.
 * Errors: KR_ENOTFOUND when there is no such row (in that tenant);
 * KR_ECORRUPT for a row of the wrong shape; LMDB errors.
 */
#ifndef KR_ACCOUNTS_H
#define KR_ACCOUNTS_H

#include "domain.h"
#include "views.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Failed logins in a row that lock an account (the white paper's lockout). */
#define KR_LOGIN_FAILURES_MAX 5u
/* How long a lock for failures lasts: 15 minutes for the first, doubling
 * with each lock that follows without a successful login in between, up to
 * 2^KR_LOCKOUT_DOUBLINGS_MAX times (16 hours). A lock by the master lasts
 * until the master lifts it. A lock that times out lifts at the next login
 * attempt: a correct password succeeds, a wrong one locks again, longer. */
#define KR_LOCKOUT_BASE_NS       (15ull * 60 * 1000000000ull)
#define KR_LOCKOUT_DOUBLINGS_MAX 6u
/* A session's absolute lifetime and its idle limit. A request with less
 * than half the idle time left moves it on (session.touched), so a session
 * in use lasts until the absolute limit. */
#define KR_SESSION_TTL_NS  (12ull * 3600 * 1000000000ull)
#define KR_SESSION_IDLE_NS (30ull * 60 * 1000000000ull)
/* A sign-up auth code's lifetime and the wrong codes it allows. */
#define KR_AUTH_CODE_TTL_NS (15ull * 60 * 1000000000ull)
#define KR_AUTH_CODE_TRIES  5u
/* The tenant code operators log in with (tenant 0): never generated for a
 * customer, whose codes are "t" + 9 random [a-z0-9]. */
#define KR_PLATFORM_CODE "platform"
/* Bytes of a tenant code kept in a row: what fields.json allows. */
#define KR_TENANT_CODE_MAX KR_FLD_TENANT_CODE_MAX

/* Sign-up states kept in v.signups. */
enum va_signup_state { VA_SIGNUP_APPLIED, VA_SIGNUP_PAID, VA_SIGNUP_COMPLETED };

/* A tenant's row (v.tenants). */
struct va_tenant {
    int state;                         /* enum kr_enum_tenant_state */
    uint64_t version;                  /* the "tenant" stream's version (0 before provisioned) */
    uint8_t application[16];           /* the sign-up that made it */
    uint64_t cancelled;                /* when it cancelled (UTC ns), 0 if not */
    uint64_t provisioned_seq;          /* the tenant.provisioned record (its name), 0 if none */
    char code[KR_TENANT_CODE_MAX + 1]; /* "" before provisioned */
    size_t code_len;
};

/* A sign-up application's row (v.signups). */
struct va_signup {
    int state;            /* enum va_signup_state */
    uint64_t version;     /* the signup stream's version */
    uint64_t applied_seq; /* the signup.applied record (its e-mail) */
    uint64_t expires;     /* the current code's expiry (UTC ns), 0 if none */
    uint32_t tries_left;
    uint8_t code_hash[32];
};

/* An account's row (v.accounts). */
struct va_account {
    int role; /* enum kr_enum_role */
    bool locked;
    int lock_reason;      /* enum kr_enum_lock_reason when locked */
    uint32_t failures;    /* failed logins since the last success or unlock */
    uint32_t lockouts;    /* locks for failures since the last success or unlock */
    uint64_t locked_at;   /* time of the newest account.locked (UTC ns) */
    uint64_t perms;       /* enum kr_enum_permission bits */
    uint64_t version;     /* the account stream's version */
    uint64_t created_seq; /* account.created (e-mail, display name) */
    uint64_t pw_seq;      /* the record holding the current password hash */
    int pw_ev;            /* its event: account.created or account.password_changed */
    uint8_t email_mac[32];
};

/* Whether account o is locked at time now (a lock for failures times out,
 * see KR_LOCKOUT_BASE_NS). */
bool va_account_locked(const struct va_account *o, uint64_t now);
/* When account o's lock for failures lifts (UTC ns; UINT64_MAX if never),
 * or 0 if it is not locked for failures (not locked, or locked by the
 * master until the master lifts it). */
uint64_t va_account_locked_until(const struct va_account *o);

/* A session's row (v.sessions, found by the token's SHA-256). */
struct va_session {
    uint64_t tenant;
    uint8_t session[16];
    uint8_t account[16];
    uint64_t expires;
    uint64_t idle_expires;
    uint64_t version; /* the session stream's version */
};

KR_MUST_CHECK kr_err va_tenant_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                   struct va_tenant *out);
/* The tenant with the smallest id above `after` (*tenant) and its row.
 * KR_ENOTFOUND past the last. For walking every tenant (the shard map). */
KR_MUST_CHECK kr_err va_tenant_next(struct kr_views *v, MDB_txn *txn, uint64_t after,
                                    uint64_t *tenant, struct va_tenant *out);
/* The tenant with login code code[0..len). */
KR_MUST_CHECK kr_err va_tenant_by_code(struct kr_views *v, MDB_txn *txn, const void *code,
                                       size_t len, uint64_t *tenant);
/* The tenant an application reserved (applications are known by id alone). */
KR_MUST_CHECK kr_err va_signup_tenant(struct kr_views *v, MDB_txn *txn,
                                      const uint8_t application[16], uint64_t *tenant);
KR_MUST_CHECK kr_err va_signup_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                   const uint8_t application[16], struct va_signup *out);
KR_MUST_CHECK kr_err va_account_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                    const uint8_t account[16], struct va_account *out);
/* The account of a tenant with e-mail MAC mac. */
KR_MUST_CHECK kr_err va_account_by_mac(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                       const uint8_t mac[32], uint8_t account[16]);
KR_MUST_CHECK kr_err va_session_get(struct kr_views *v, MDB_txn *txn, const uint8_t token_hash[32],
                                    struct va_session *out);
/* The session row of session id `session` in tenant. */
KR_MUST_CHECK kr_err va_session_by_id(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                      const uint8_t session[16], struct va_session *out);

/* The e-mail MAC accounts are found by: kr_data_key_mac(key, "emailmac", the
 * address lower-cased). */
void va_email_mac(const struct kr_data_key *key, const uint8_t *email, size_t len, uint8_t out[32]);

/* ---- Sessions (for the server) ---- */

/* Authenticates a request's token: finds the session by SHA-256(token),
 * checks its absolute and idle expiry against the domain clock, that its
 * account still exists and is not locked and that its tenant is active, and
 * fills *out (tenant, account, role, permissions as they are now, session;
 * operator_endpoint false: the server sets it). Any failure is KR_EAUTH, the
 * same for every reason, with *out zeroed (role -1); KR_ENOMEM or LMDB errors
 * only for a fault of ours. */
KR_MUST_CHECK kr_err dom_session_resolve(struct kr_domain *d, const uint8_t token[32],
                                         struct kr_caller *out);

/* Creates a platform operator (tenant 0), for tools to bootstrap the first
 * one: appends account.created with role operator, actor "system". The
 * password follows the rules of kr_password_check. *account gets the new id.
 * KR_EINVAL (bad e-mail or password), KR_ECONFLICT (an operator with that
 * e-mail exists), journal and keystore errors. Operators log in with tenant
 * code KR_PLATFORM_CODE over the operator endpoint. */
KR_MUST_CHECK kr_err dom_operator_create(struct kr_domain *d, const char *email,
                                         const char *password, uint8_t account[16]);

/* ---- Shared by the handlers of this area (cmd_signup.c, cmd_accounts.c) ---- */

struct cmd;

/* Hashes pw[0..len) with Argon2id at the domain's cost into out (a
 * NUL-terminated crypto_pwhash_str string). KR_ENOMEM if libsodium fails
 * (it can only run out of memory); KR_EBUSY if too many hashes wait already
 * (dom_pwhash_acquire). */
#define ACCT_HASH_MAX 128u
KR_MUST_CHECK kr_err acct_hash_password(struct kr_domain *d, const void *pw, size_t len,
                                        char out[ACCT_HASH_MAX]);

/* Whether pw[0..len) matches the crypto_pwhash_str hash h[0..hlen), into
 * *ok. KR_EBUSY (nothing checked) if too many checks wait already. */
KR_MUST_CHECK kr_err acct_verify_password(struct kr_domain *d, const void *h, size_t hlen,
                                          const void *pw, size_t len, bool *ok);

/* Appends session.closed (close_reason `reason`) to c's events for the
 * account's open sessions, as many as the append has room for beside one
 * more event: the caller's account.deleted, account.locked or
 * account.password_changed, whose apply ends them all in the views anyway.
 * Also for the platform's imports (platform_import.c). LMDB errors,
 * KR_ENOMEM. */
KR_MUST_CHECK kr_err acct_close_sessions(struct cmd *c, uint64_t tenant, const uint8_t acct[16],
                                         int reason);

/* ---- Passwords (passwords.c) ---- */

/* Whether pw[0..len) may be a password: 8..128 bytes, not in the list of
 * common passwords (compared lower-cased), not the account's e-mail address
 * (compared lower-cased; email may be NULL). KR_EINVAL with *why set to a
 * static reason otherwise. */
KR_MUST_CHECK kr_err kr_password_check(const void *pw, size_t len, const void *email,
                                       size_t email_len, const char **why);
/* Whether pw[0..len) is in the common-password list (case-insensitive). */
bool kr_password_is_common(const void *pw, size_t len);

/* The embedded list (generated at build time from common_passwords.txt:
 * lower-cased, sorted, one per line). */
extern const unsigned char kr_common_passwords_txt[];
extern const size_t kr_common_passwords_len;

#endif
