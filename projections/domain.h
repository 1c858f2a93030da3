/*
 * domain.h: kiroku's domain: commands that decide events and queries over the
 * views, for every op in schemas/ops.json.
 *
 * A domain is a journal opened with the views, plus the keystore of tenant
 * data keys. dom_exec runs one op for one caller: it checks the caller's role
 * and permissions against the op's schema entry, runs the op's handler with
 * a read transaction over the views, and writes the op's result. A handler
 * that changes state decides its events from the views and the arguments,
 * names the stream versions it read, and appends; if another command changed
 * those streams meanwhile (KR_ECONFLICT from the journal) and the caller gave
 * no version of its own, dom_exec runs it again on fresh views, up to
 * KR_CMD_RETRIES times.
 *
 * Isolation: a handler only ever looks up objects under the caller's tenant,
 * so another tenant's object is KR_ENOTFOUND, exactly like a missing one.
 *
 * Threads: dom_exec may be called from many threads at once; appends from
 * all of them share the journal's group commit.
 */
#ifndef KR_DOMAIN_H
#define KR_DOMAIN_H

#include "clock.h"
#include "journal.h"
#include "keystore.h"
#include "payload.h"
#include "rng.h"
#include "views.h"
#include "wbuf.h"

#include <msgpack.h>
#include <pthread.h>

struct kr_domain_options {
    const char *dir;              /* data directory made by `kiroku init` (required) */
    const struct kr_clock *clock; /* NULL = system clock */
    const struct kr_rng *rng;     /* ids, keys, codes, nonces; NULL = system randomness */
    unsigned signers;             /* journal signer threads; 0 = one per CPU */
    uint64_t map_size;            /* 0 = default */
    bool two_flushes;             /* jrn_options.two_flushes */
    bool no_catch_up;             /* open without applying records the views miss
                                   * (replay rebuilds them itself) */
    bool no_appends;              /* for rebuilding views only: no signing key,
                                   * no writer, no keystore made (ops that
                                   * append or need a tenant key fail) */
    /* A follower's data directory (kiroku follow): the journal is opened
     * no_appends (records come only through jrn_replica_* on d->j, which
     * apply them to the views) and the keystore must be there (reads decrypt
     * with it: KR_ENOTFOUND / KR_EKEY otherwise); ops that append fail with
     * the journal's KR_ECLOSED, or KR_ENOTPRIMARY before they run once
     * dom_set_follower was called. */
    bool follower;
    /* jrn_options.durable: a publisher's hook (serve --nats); NULL = none. */
    const struct jrn_durable_hook *durable;
    /* jrn_options.key_made: told of each signing key made (a cluster's
     * keyring); NULL = none. */
    const struct jrn_key_hook *key_made;
    /* Argon2id cost for new password hashes; 0 = libsodium's INTERACTIVE
     * limits. Tests and demo seeding use the minimum. Existing hashes carry
     * their own cost. */
    unsigned long long pwhash_ops;
    size_t pwhash_mem;
    struct jrn_start_fault *start_fault; /* NULL, or where the journal's start
                                          * check failed (journal.h) */
    bool no_signup_limits;               /* signup.apply unlimited (seeding, benches):
                                          * else KR_SIGNUP_PER_* apply (cmd_signup.c) */
    /* The shard this domain's journal is (cluster.shard), or NULL when not
     * sharded: session tokens then carry its redirect tag (dom_token_tag). */
    const char *shard;
};

/* The platform shard's name (reserved: no tenant is placed on it). Its
 * journal holds the platform-wide records (notices, incidents: tenant 0)
 * that every tenant shard imports (dom_platform_import, api/platform.h). */
#define KR_PLATFORM_SHARD "platform"

/* Session tokens of a sharded domain: byte 0 is DOM_TOKEN_TAGGED, bytes 1..4
 * the shard's tag, bytes 5..31 random (216 bits). The tag lets any node
 * send a request to the token's shard without knowing its session
 * (api/shardmap.h); it grants nothing: the session is looked up by the
 * SHA-256 of the whole token on that shard, as always. Sign-up application
 * ids of a sharded domain carry the tag the same way (bytes 5..15 random),
 * so signup.complete finds the shard the application was made on. */
#define DOM_TOKEN_TAGGED 0x53u
/* A shard's redirect tag: the first 4 bytes of SHA-256("kiroku.shard:" name). */
void dom_token_tag(const char *shard, uint8_t tag[4]);

/* Whose turn an Argon2id computation is: the request's source address and
 * its tenant (a keyed hash of the tenant code a login names, else the
 * caller's tenant id). See dom_pwhash_acquire. */
struct dom_pwhash_share {
    uint8_t source[16];
    uint8_t tenant[16];
};
struct dom_pwhash_waiter; /* domain.c */

struct ret_hooks; /* retention.h */
struct kr_rate;   /* rate.h */

struct kr_domain {
    struct journal *j;
    struct kr_keystore *ks;
    struct kr_views views;
    const struct kr_clock *clock;
    const struct kr_rng *rng;
    unsigned long long pwhash_ops;
    size_t pwhash_mem;
    char dir[KR_PATH_MAX];
    /* Argon2id runs at once (each holds pwhash_mem bytes): at most
     * KR_PWHASH_CONCURRENT_MAX, shared fairly; see dom_pwhash_acquire */
    pthread_mutex_t pwhash_mu;
    pthread_cond_t pwhash_cv;
    unsigned pwhash_busy;
    unsigned pwhash_waiting;
    unsigned pwhash_peak;       /* the most ever running at once (for tests and stats) */
    unsigned pwhash_pushed_out; /* waiters refused to make room for another share */
    /* For tests: called on the thread that asks for an Argon2id place,
     * before it waits (NULL = none). */
    void (*pwhash_hook)(void *arg);
    void *pwhash_hook_arg;
    struct dom_pwhash_share pwhash_running[KR_PWHASH_CONCURRENT_MAX]; /* whose, when used */
    bool pwhash_running_used[KR_PWHASH_CONCURRENT_MAX];
    struct dom_pwhash_waiter *pwhash_queue[KR_PWHASH_WAITERS_MAX]; /* oldest first */
    /* asynchronous commands in flight (DOM_ASYNC) */
    pthread_mutex_t async_mu;
    pthread_cond_t async_cv;
    size_t async_n;
    kr_err async_err; /* the first failure since the last dom_wait */
    size_t bg_n;      /* kiroku's own appends submitted and not done (dom_submit_plain) */
    /* retention (retention.h): hooks from the tools layer, the log period,
     * and the mutex that runs one erasure or truncation at a time */
    const struct ret_hooks *ret_hooks;
    uint32_t log_days;
    pthread_mutex_t ret_mu;
    /* signup.apply's counts per e-mail address and per source (rate.h);
     * NULL when the domain was opened with no_signup_limits */
    struct kr_rate *signup_rate;
    /* A follower's domain (dom_set_follower): set before serving, then
     * only read */
    bool follower;
    void (*primary)(void *arg, char *out, size_t cap);
    void *primary_arg;
    /* session tokens carry token_tag (dom_token_tag) when tagged */
    bool token_tagged;
    uint8_t token_tag[4];
    /* The platform shard's domain (kr_domain_options.shard is
     * KR_PLATFORM_SHARD): the tenants its notices and incidents list live
     * on other shards, so they are checked as ids only, and it queues no
     * e-mail to them. Set by dom_open. */
    bool platform;
    /* A tenant shard importing the platform journal (dom_set_importing):
     * set before serving, then only read. */
    bool importing;
    void (*platform_endpoint)(void *arg, char *out, size_t cap);
    void *platform_arg;
};

/* Opens the journal in o->dir with the views (catching the views up with the
 * journal) and the keystore (made on first use). KR_ENOTFOUND if there is no
 * journal. *out is closed with dom_close. */
KR_MUST_CHECK kr_err dom_open(const struct kr_domain_options *o, struct kr_domain **out);
void dom_close(struct kr_domain *d); /* accepts NULL */

/* Makes d a follower's domain (`kiroku follow`): its journal takes records
 * only from the primary's stream, so every op that would append (an op whose
 * schema entry lists events, auth.login included) is refused with
 * KR_ENOTPRIMARY before it runs, its diagnostic naming the primary's client
 * endpoint: primary(arg, out, cap) writes it (an empty string when it is
 * not known; NULL = never known). Reads run as on the primary, over the
 * views the stream keeps up to date; sessions made on the primary are valid
 * here (they are views), though a follower cannot move their idle limit on.
 * Call it before any dom_exec. */
void dom_set_follower(struct kr_domain *d, void (*primary)(void *arg, char *out, size_t cap),
                      void *arg);

/* Makes d a tenant shard that imports the platform journal (api/platform.h):
 * the operator ops that create or change platform objects (notices.publish,
 * incidents.open, notify, update, resolve; operators.create, delete, lock,
 * unlock, password: operator accounts are the platform's) are refused with KR_EWRONGSHARD
 * before they run, the diagnostic ending with the platform shard's client
 * endpoint, which endpoint(arg, out, cap) writes (an empty string when it
 * is not known; NULL = never known). Call it before any dom_exec. */
void dom_set_importing(struct kr_domain *d, void (*endpoint)(void *arg, char *out, size_t cap),
                       void *arg);

/* Whether op creates or changes a platform object (the ops above). */
bool dom_op_is_platform(int op);

/* Who is calling. The API fills it from the session (the tenant is never
 * taken from arguments); tools fill it for the platform's own actors. */
struct kr_caller {
    uint64_t tenant;        /* the session's tenant; 0 = platform (operators) */
    uint8_t account[16];    /* the account, when role != -1 */
    int role;               /* enum kr_enum_role, or -1 for anonymous */
    uint64_t perms;         /* permission bits (enum kr_enum_permission) */
    bool operator_endpoint; /* the request came over the operator endpoint */
    bool has_session;
    uint8_t session[16];
    bool system; /* kiroku's own jobs (actor "system"); role -1 */
    /* Where the request came from, for per-source limits: the peer's IP
     * address as 16 bytes (IPv4 as ::ffff:a.b.c.d); all zero = unknown
     * (ipc://, in-process callers). Filled by the API server. */
    uint8_t source[16];
};

/* Runs op `op` with arguments `args` (decoded against the op's schema by
 * kr_args_decode or built by the caller) for `who`. On KR_OK the result is
 * one msgpack map in *out (reset first; its ceiling bounds the result:
 * a result that would pass it fails with KR_ETOOLARGE, field "result"). Errors, each with *diag
 * saying what: KR_EINVAL / KR_ETOOLARGE (bad_request / too_large), KR_EAUTH, KR_EFORBIDDEN,
 * KR_ENOTFOUND, KR_ECONFLICT, KR_ELOCKED, KR_EEXPIRED, KR_EFULL / KR_ECLOSED
 * (unavailable), others (internal). Nothing is appended on error, except the
 * security events an op records on purpose (failed logins, denied access). */
KR_MUST_CHECK kr_err dom_exec(struct kr_domain *d, const struct kr_caller *who, int op,
                              const struct kr_payload *args, struct kr_wbuf *out,
                              struct kr_diag *diag);

/* dom_exec_flags: DOM_ASYNC submits the op's append and returns without
 * waiting for it to be durable. The result is written at once (ids are
 * decided before the append); the views do not show the change until it
 * commits, so a caller must only issue async commands that do not depend on
 * each other's effects, and call dom_wait before reading them. For loading
 * large volumes from one thread (kiroku seed): the journal still orders
 * appends as submitted. */
#define DOM_ASYNC 1u
KR_MUST_CHECK kr_err dom_exec_flags(struct kr_domain *d, const struct kr_caller *who, int op,
                                    const struct kr_payload *args, struct kr_wbuf *out,
                                    struct kr_diag *diag, unsigned flags);
/* Waits for every async command; returns the first failure among them. */
KR_MUST_CHECK kr_err dom_wait(struct kr_domain *d);

/* How a request server may run an op without any thread waiting for a
 * flush (dom_op_route; the table in domain.c says why for each op):
 * DOM_ROUTE_READ: a read on its own read transaction, no append; it never
 *     waits for anything but the views (run it with dom_exec_async);
 * DOM_ROUTE_ASYNC: decides from the views, appends as its last step, and
 *     its result (ids, versions) is decided before the append: run it with
 *     dom_exec_async and answer from the append's completion;
 * DOM_ROUTE_POOL: may wait (Argon2id, a heavy read, several appends, or a
 *     reply that depends on the commit): run it with dom_exec on a thread
 *     that may wait. */
enum dom_route { DOM_ROUTE_POOL, DOM_ROUTE_READ, DOM_ROUTE_ASYNC };
int dom_op_route(int op); /* enum dom_route; DOM_ROUTE_POOL for an unknown op */

/* The completion of an op dom_exec_async left pending: called exactly once,
 * from the journal's writer thread, when the op's append is durable (KR_OK)
 * or failed (nothing appended; KR_ECONFLICT: a stream moved on since the
 * decision, run the op again). Keep it short: the writer waits for it. */
typedef void (*dom_done_fn)(void *arg, kr_err err);

/* What dom_exec_async did. */
enum dom_outcome {
    DOM_DONE,     /* finished: its outcome is the return value, its result in *out */
    DOM_PENDING,  /* appended asynchronously: the return value and *out stand once
                   * done(arg, KR_OK) is called; done is called exactly once */
    DOM_RUN_SYNC, /* nothing done: run the op with dom_exec (it must record a
                   * refusal, which waits for its append) */
};

/* Runs op like dom_exec, for a DOM_ROUTE_READ or DOM_ROUTE_ASYNC op, without
 * waiting for any flush: the op's append is submitted and *outcome is
 * DOM_PENDING. A conflict seen while deciding is retried as dom_exec does; a
 * conflict at the append comes to done. Any other op: KR_EINVAL. */
KR_MUST_CHECK kr_err dom_exec_async(struct kr_domain *d, const struct kr_caller *who, int op,
                                    const struct kr_payload *args, struct kr_wbuf *out,
                                    struct kr_diag *diag, dom_done_fn done, void *arg,
                                    enum dom_outcome *outcome);

/* Whether op has a handler (every op must; see domain_test). */
bool dom_has_handler(int op);

/* Takes / gives back one of KR_PWHASH_CONCURRENT_MAX places for an Argon2id
 * hash or verification, so concurrent logins hold at most that many times
 * pwhash_mem bytes: the rest wait their turn, at most KR_PWHASH_WAITERS_MAX
 * of them; past that acquire returns KR_EBUSY (the caller answers
 * `unavailable`) and must not release.
 *
 * Fair shares. Each computation is charged to the share of the op that
 * dom_exec is running on this thread (struct dom_pwhash_share: its source
 * address and tenant; a thread outside dom_exec is the zero share). A freed
 * place goes to the waiter whose source, then whose tenant, has the fewest
 * places running, oldest first. When every waiting place is taken, a
 * newcomer whose source (or else tenant) has fewer waiters than the one
 * with the most by two or more takes the place of that one's newest waiter,
 * which gets KR_EBUSY; otherwise the newcomer gets KR_EBUSY. So a flood
 * from one source (or at one tenant code) can keep the places busy, but
 * never keeps another source's login from its turn. */
KR_MUST_CHECK kr_err dom_pwhash_acquire(struct kr_domain *d);
void dom_pwhash_release(struct kr_domain *d);

/* Appends one event p (p->ev, plain fields only: no personal data) for
 * tenant with actor `actor`, on the version of its stream given by
 * *expected, or (expected NULL) on the stream's current version, retried on
 * a conflict up to KR_CMD_RETRIES times. For kiroku's own records (refusals,
 * session touches, sent e-mails, erasures) that need no command. *time_ns
 * (may be NULL) gets the record's time. Encoding and journal errors. */
KR_MUST_CHECK kr_err dom_append_plain(struct kr_domain *d, uint64_t tenant, const char *actor,
                                      const struct kr_payload *p, const uint64_t *expected,
                                      uint64_t *time_ns);

/* As dom_append_plain on version *expected, without waiting: the append is
 * submitted and its outcome dropped (for best-effort records such as session
 * touches, which lose nothing when another request wins the version).
 * dom_close waits for the ones still in flight. Encoding and submit errors. */
KR_MUST_CHECK kr_err dom_submit_plain(struct kr_domain *d, uint64_t tenant, const char *actor,
                                      const struct kr_payload *p, uint64_t expected);

/* Waits until every dom_submit_plain append has completed (tests; dom_close). */
void dom_wait_plain(struct kr_domain *d);

/* Erasing a cancelled tenant, crash-safe (key destroyed everywhere, payloads
 * stripped, then tenant.erased): ret_erase_tenant in retention.h. */

/* The API error code (enum kr_api_err) for a dom_exec error. */
int dom_api_error(kr_err err);

/* Actor strings for record headers ("account/<32 hex>", "system"). */
void dom_actor(const struct kr_caller *who, char out[KR_ACTOR_MAX + 1]);

#endif
