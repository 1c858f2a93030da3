/*
 * test_domain.h: a domain in a scratch directory for tests of projections/:
 * deterministic clock and rng, cheap Argon2id, and helpers to run ops and
 * read their msgpack results.
 */
#ifndef KR_TEST_DOMAIN_H
#define KR_TEST_DOMAIN_H

#include "domain.h"
#include "rng.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

struct td {
    char dir[512];
    struct kr_domain *d;
    struct kr_clock clock;
    _Atomic uint64_t now; /* the clock's time (UTC ns); tests move it */
    struct kr_rng_det det;
    struct kr_rng rng;
    struct kr_wbuf out;      /* the last op's result bytes */
    msgpack_unpacked result; /* the last op's result, decoded */
    struct kr_diag diag;     /* the last op's diagnostics */
    struct kr_payload *args; /* arguments being built for the next op */
    bool signup_limits;      /* signup.apply's limits on (off unless a test sets
                              * it and calls td_reopen: tests apply freely) */
    const char *shard;       /* kr_domain_options.shard (NULL unless a test sets
                              * it and calls td_reopen) */
};

/* Creates a journal in a fresh scratch directory and opens a domain on it.
 * The clock starts at 2026-04-01T00:00:00Z and advances 1 ms per read. */
struct td *td_new(uint64_t seed);
/* td_new with the KEK of kek_from (its DIR/keys/kek.key copied in before
 * the keystore is made), as a deployment places one KEK on its nodes: with
 * one ks_remote set on both keystores, they share tenant keys. */
struct td *td_new_kek(uint64_t seed, const struct td *kek_from);
/* Closes and reopens the domain (same directory). */
void td_reopen(struct td *t);
/* Closes the domain and removes the directory. */
void td_free(struct td *t);

/* Callers. */
struct kr_caller td_anonymous(void);
struct kr_caller td_operator(void); /* tenant 0, role operator, operator endpoint */
struct kr_caller td_account(uint64_t tenant, const uint8_t account[16], int role, uint64_t perms);

/* Arguments: td_args(t) clears and returns t->args; then kr_set_* on it. */
struct kr_payload *td_args(struct td *t);

/* Runs op with t->args for who. Returns dom_exec's error; on KR_OK the result
 * is decoded into t->result. */
kr_err td_exec(struct td *t, const struct kr_caller *who, int op);

/* Looking into t->result (or any map): the value of key `name`, or NULL. */
const msgpack_object *td_get(const struct td *t, const char *name);
const msgpack_object *td_map_get(const msgpack_object *map, const char *name);
/* Copies a 16-byte bin at key name of the result into id (asserts it is one). */
void td_get_id(const struct td *t, const char *name, uint8_t id[16]);
uint64_t td_get_u64(const struct td *t, const char *name);

/* Signs up a tenant the whole way (apply, payment, code from the outbox view
 * or by the test hook, complete) and logs its master in; fills *master with
 * the master's caller. Returns the tenant id. `code` is the tenant code
 * returned. */
uint64_t td_signup(struct td *t, const char *email, const char *password, struct kr_caller *master,
                   char code[40]);

/* Whether nothing changed since journal size `size` but access.denied
 * records (which refused ops append on purpose). */
bool td_unchanged_since(struct td *t, uint64_t size);

/* Whether `needle` occurs in any file under dir (recursively). */
bool td_dir_contains(const char *dir, const void *needle, size_t n);

#endif
