/*
 * seed.h: demo data, made through the domain's ops as a client and an
 * operator would drive them (`kiroku seed`, and the benchmarks that need a
 * populated journal). Deterministic for a given seed; see seed.c.
 */
#ifndef KIROKU_SEED_H
#define KIROKU_SEED_H

#include "kr_error.h"

#include <stdbool.h>
#include <stdint.h>

/* Bounds of `kiroku seed`: tenants are signed up one by one and their ids
 * listed in notices (a list field holds 1000), contacts per tenant are held
 * in memory while the tenant is seeded (24 bytes each). */
#define CLI_SEED_TENANTS_MAX  100000u
#define CLI_SEED_CONTACTS_MAX 10000000u

/* Events a seeded tenant makes besides its contacts (sign-up, users,
 * sessions, tags, attributes, notices, incidents, outbox), roughly, and
 * events per contact (register, tags, attribute values, some updates,
 * untags, deletions): for the benchmarks that seed about N events. */
#define BENCH_EVENTS_PER_TENANT  60u
#define BENCH_EVENTS_PER_CONTACT 3.87

struct cli_seed_options {
    const char *dir;      /* data directory; a journal is made there if it has none */
    uint64_t tenants;     /* 1..CLI_SEED_TENANTS_MAX */
    uint64_t contacts;    /* per tenant, 0..CLI_SEED_CONTACTS_MAX */
    uint64_t seed;        /* the deterministic streams' seed */
    bool cancel;          /* cancel the last tenant at the end, and erase it */
    bool leave_cancelled; /* with cancel: do not erase it (bench backup erases it) */
    bool progress;        /* progress lines on stderr */
};

/* What a seeding run made. */
struct cli_seed_result {
    uint64_t events; /* records appended */
    double seconds;
    uint64_t tenants, contacts;
    /* The first tenant, its master account and its tag on every third
     * contact (for bench query). */
    uint64_t tenant;
    uint8_t master[16];
    uint8_t tag[16];
    uint64_t cancelled; /* the tenant cancelled, 0 if none */
};

/* Seeds o->dir (see `kiroku seed --help`); errors are printed to stderr as
 * well as returned. */
KR_MUST_CHECK kr_err cli_seed(const struct cli_seed_options *o, struct cli_seed_result *r);

#endif
