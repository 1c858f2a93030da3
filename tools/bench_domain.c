/*
 * bench_domain.c: `kiroku bench replay` and `kiroku bench query`, the
 * domain's benchmarks (docs/benchmarks.md).
 *
 * replay: times jrn_views_rebuild (drop every view, apply every record
 * again) over a seeded journal, DIR's or a scratch one of about N events.
 *
 * query: times contacts.list pages of 100 contacts of one tag through
 * dom_exec, as the tenant's master, over a tenant of N contacts (seeded, so
 * that one tag is on every third contact). Latency is per page, from the
 * call to the decoded-ready result bytes.
 */
#include "cli.h"
#include "domain.h"
#include "journal.h"
#include "path.h"
#include "seed.h"
#include "views.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Contacts per seeded tenant in bench replay: tenants of realistic size. */
#define BENCH_CONTACTS_PER_TENANT 10000u
/* Pages of contacts.list bench query times by default. */
#define BENCH_PAGES_DEFAULT 5000u
#define BENCH_PAGES_MAX     10000000u
#define BENCH_PAGE          100u

static bool has_journal(const char *dir)
{
    char p[KR_PATH_MAX];
    struct stat st;
    return kr_path_join(p, sizeof p, dir, "journal/data.mdb") == KR_OK && stat(p, &st) == 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- bench replay ---- */

static const char replay_usage[] =
    "usage: kiroku bench replay [--data DIR] [--events N] [--json]\n"
    "\n"
    "Times a rebuild of every view from the journal (what `kiroku replay` does)\n"
    "and prints events per second. Without --data, a scratch journal of about N\n"
    "events (default 1000000) is seeded first (`kiroku seed`, tenants of 10,000\n"
    "contacts) and removed afterwards; --data DIR uses DIR's journal, seeding it\n"
    "first if it has none. Run it while no server uses DIR.\n";

int bench_replay(int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS, {"events", required_argument, 0, 'n'}, {0, 0, 0, 0}};
    struct cli_common co = {0};
    uint64_t events = 1000000;
    int rc, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'n':
            ok = cli_parse_u64(optarg, 1, UINT32_MAX, &events);
            break;
        default:
            if ((rc = cli_common_option(c, replay_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
        if (!ok)
            return cli_usage(replay_usage);
    }
    if (optind != argc)
        return cli_usage(replay_usage);
    char dir[KR_PATH_MAX];
    kr_err err;
    if (co.data)
        snprintf(dir, sizeof dir, "%s", co.data);
    else if ((err = cli_scratch_dir(dir, sizeof dir)))
        return cli_fail("bench replay: scratch directory", err);
    struct cli_seed_result sr = {0};
    if (!has_journal(dir)) {
        /* Tenants of BENCH_CONTACTS_PER_TENANT contacts, enough of them. */
        uint64_t per_tenant = BENCH_EVENTS_PER_TENANT +
                              (uint64_t)(BENCH_EVENTS_PER_CONTACT * BENCH_CONTACTS_PER_TENANT);
        uint64_t tenants = (events + per_tenant / 2) / per_tenant;
        if (tenants == 0)
            tenants = 1;
        double left = (double)events / (double)tenants - BENCH_EVENTS_PER_TENANT;
        uint64_t contacts = left > 0 ? (uint64_t)(left / BENCH_EVENTS_PER_CONTACT) : 0;
        struct cli_seed_options so = {.dir = dir,
                                      .tenants = tenants,
                                      .contacts = contacts,
                                      .seed = 1,
                                      .cancel = true,
                                      .progress = !co.json};
        if (!co.json)
            fprintf(stderr, "seeding %s: %" PRIu64 " tenants of %" PRIu64 " contacts\n", dir,
                    tenants, contacts);
        if ((err = cli_seed(&so, &sr))) {
            if (!co.data)
                cli_rmtree(dir);
            return cli_fail("bench replay: seeding", err);
        }
    }
    struct kr_domain_options o = {.dir = dir, .no_catch_up = true};
    struct kr_domain *d;
    if ((err = dom_open(&o, &d))) {
        if (!co.data)
            cli_rmtree(dir);
        return cli_fail_open(dir, err);
    }
    uint64_t records = jrn_size(d->j);
    double t0 = cli_now();
    err = jrn_views_rebuild(d->j, NULL, NULL);
    double secs = cli_now() - t0;
    dom_close(d);
    if (!co.data)
        cli_rmtree(dir);
    if (err)
        return cli_fail("bench replay", err);
    double rate = secs > 0 ? (double)records / secs : 0;
    if (co.json)
        printf("{\"events\":%" PRIu64 ",\"seconds\":%.3f,\"events_per_s\":%.0f,"
               "\"seed_seconds\":%.3f}\n",
               records, secs, rate, sr.seconds);
    else
        printf("rebuilt the views from %" PRIu64 " events in %.3f s: %.0f events/s\n", records,
               secs, rate);
    return CLI_OK;
}

/* ---- bench query ---- */

static const char query_usage[] =
    "usage: kiroku bench query [--data DIR] [--contacts N] [--pages P] [--json]\n"
    "\n"
    "Times contacts.list pages of 100 contacts of one tag, through the domain as\n"
    "the tenant's master, P times (default 5000), and prints the p50, p99 and\n"
    "max latency per page and pages per second. Without --data, a scratch\n"
    "journal with one tenant of N contacts (default 100000; a tag on every third)\n"
    "is seeded first and removed afterwards; --data DIR seeds DIR if it has no\n"
    "journal, and otherwise pages through its tag with the most contacts.\n";

/* The (tenant, tag) with the most contacts in v.tag_contacts
 * (tenant|tag|contact keys). */
static kr_err biggest_tag(struct kr_domain *d, uint64_t *tenant, uint8_t tag[16], uint64_t *count)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t run[24] = {0}, best[24] = {0};
    uint64_t n = 0, bestn = 0;
    int rc = mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((rc = mdb_cursor_open(txn, d->views.db[VIEW_TAG_CONTACTS], &cur))) {
        mdb_txn_abort(txn);
        return kr_err_from_mdb(rc);
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 24)
            continue;
        if (n && memcmp(run, k.mv_data, 24) == 0) {
            n++;
        } else {
            memcpy(run, k.mv_data, 24);
            n = 1;
        }
        if (n > bestn) {
            bestn = n;
            memcpy(best, run, 24);
        }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    if (!bestn)
        return KR_ENOTFOUND;
    *tenant = v_get_u64(best);
    memcpy(tag, best + 8, 16);
    *count = bestn;
    return KR_OK;
}

/* The contacts in a contacts.list result and its cursor (cap bytes). */
static kr_err page_parse(const struct kr_wbuf *out, uint32_t *items, uint8_t *cursor,
                         size_t *cursor_len)
{
    msgpack_unpacked u;
    size_t off = 0;
    kr_err err = KR_ECORRUPT;
    msgpack_unpacked_init(&u);
    *items = 0;
    *cursor_len = 0;
    if (msgpack_unpack_next(&u, out->data, out->size, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        err = KR_OK;
        const msgpack_object_map *m = &u.data.via.map;
        for (uint32_t i = 0; i < m->size; i++) {
            const msgpack_object *key = &m->ptr[i].key, *val = &m->ptr[i].val;
            if (key->type != MSGPACK_OBJECT_STR)
                continue;
            const char *cname = kr_fields[KR_FLD_CURSOR].name;
            if (key->via.str.size == strlen(cname) &&
                memcmp(key->via.str.ptr, cname, key->via.str.size) == 0) {
                if (val->type == MSGPACK_OBJECT_BIN && val->via.bin.size <= 64) {
                    memcpy(cursor, val->via.bin.ptr, val->via.bin.size);
                    *cursor_len = val->via.bin.size;
                }
            } else if (val->type == MSGPACK_OBJECT_ARRAY) {
                *items = val->via.array.size;
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    return err;
}

/* What page_through saw. */
struct page_stats {
    uint64_t listed, full; /* contacts listed, pages that were full */
    double seconds;        /* in contacts.list, all pages */
};

/* `bench query`'s pages: contacts.list of tag as who, BENCH_PAGE contacts
 * a page, each page's latency in lat (microseconds); after the tag's last
 * page (no cursor) it starts again from the first. */
static kr_err page_through(struct kr_domain *d, const struct kr_caller *who, const uint8_t tag[16],
                           uint64_t pages, uint32_t *lat, struct page_stats *ps)
{
    struct kr_payload *args = kr_payload_new();
    if (!args)
        return KR_ENOMEM;
    struct kr_wbuf out;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    uint8_t cursor[64];
    size_t cursor_len = 0;
    kr_err err = KR_OK;
    for (uint64_t i = 0; !err && i < pages; i++) {
        kr_payload_reset(args, -1);
        kr_set_bytes(args, KR_FLD_TAG, tag, 16);
        kr_set_u64(args, KR_FLD_LIMIT, BENCH_PAGE);
        if (cursor_len)
            kr_set_bytes(args, KR_FLD_CURSOR, cursor, cursor_len);
        struct kr_diag diag;
        double t0 = cli_now();
        err = dom_exec(d, who, KR_OP_CONTACTS_LIST, args, &out, &diag);
        double t = cli_now() - t0;
        ps->seconds += t;
        if (err) {
            fprintf(stderr, "kiroku: contacts.list: %s (%s: %s)\n", kr_strerror(err), diag.field,
                    diag.why);
            break;
        }
        lat[i] = (uint32_t)(t * 1e6 + 0.5);
        uint32_t items;
        if ((err = page_parse(&out, &items, cursor, &cursor_len)))
            break;
        ps->listed += items;
        ps->full += items == BENCH_PAGE;
    }
    kr_wbuf_free(&out);
    kr_payload_free(args);
    return err;
}

int bench_query(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"contacts", required_argument, 0, 'n'},
                                         {"pages", required_argument, 0, 'p'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    uint64_t contacts = 100000, pages = BENCH_PAGES_DEFAULT;
    int rc, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'n':
            ok = cli_parse_u64(optarg, 1, CLI_SEED_CONTACTS_MAX, &contacts);
            break;
        case 'p':
            ok = cli_parse_u64(optarg, 1, BENCH_PAGES_MAX, &pages);
            break;
        default:
            if ((rc = cli_common_option(c, query_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
        if (!ok)
            return cli_usage(query_usage);
    }
    if (optind != argc)
        return cli_usage(query_usage);
    char dir[KR_PATH_MAX];
    kr_err err;
    if (co.data)
        snprintf(dir, sizeof dir, "%s", co.data);
    else if ((err = cli_scratch_dir(dir, sizeof dir)))
        return cli_fail("bench query: scratch directory", err);
    struct cli_seed_result sr = {0};
    bool seeded = false;
    if (!has_journal(dir)) {
        struct cli_seed_options so = {
            .dir = dir, .tenants = 1, .contacts = contacts, .seed = 1, .progress = !co.json};
        if (!co.json)
            fprintf(stderr, "seeding %s: one tenant of %" PRIu64 " contacts\n", dir, contacts);
        if ((err = cli_seed(&so, &sr))) {
            if (!co.data)
                cli_rmtree(dir);
            return cli_fail("bench query: seeding", err);
        }
        seeded = true;
    }
    struct kr_domain_options o = {.dir = dir};
    struct kr_domain *d;
    if ((err = dom_open(&o, &d))) {
        if (!co.data)
            cli_rmtree(dir);
        return cli_fail_open(dir, err);
    }
    /* The master of the tenant whose tag is paged through. (An existing
     * journal's master is not looked up: the op checks role and tenant.) */
    struct kr_caller who = {.role = KR_ROLE_MASTER, .perms = ~0ull};
    uint8_t tag[16];
    uint64_t tagged = 0;
    if ((err = biggest_tag(d, &who.tenant, tag, &tagged)) == KR_OK && seeded &&
        (who.tenant != sr.tenant || memcmp(tag, sr.tag, 16) != 0))
        err = KR_ECORRUPT; /* the seeded tag must be the biggest */
    if (seeded)
        memcpy(who.account, sr.master, 16);
    uint32_t *lat = calloc(pages, sizeof *lat);
    struct page_stats ps = {0};
    if (!err && !lat)
        err = KR_ENOMEM;
    if (!err)
        err = page_through(d, &who, tag, pages, lat, &ps);
    dom_close(d);
    if (!co.data)
        cli_rmtree(dir);
    if (err) {
        free(lat);
        return cli_fail("bench query", err);
    }
    qsort(lat, pages, sizeof *lat, cmp_u32);
    uint32_t p50 = lat[pages / 2], p99 = lat[pages * 99 / 100], max = lat[pages - 1];
    free(lat);
    double rate = ps.seconds > 0 ? (double)pages / ps.seconds : 0;
    if (co.json)
        printf("{\"pages\":%" PRIu64 ",\"page_size\":%u,\"tagged\":%" PRIu64
               ",\"contacts_listed\":%" PRIu64 ",\"full_pages\":%" PRIu64
               ",\"list_p50_us\":%u,\"list_p99_us\":%u,\"list_max_us\":%u,\"pages_per_s\":%.0f}\n",
               pages, BENCH_PAGE, tagged, ps.listed, ps.full, p50, p99, max, rate);
    else
        printf("%" PRIu64 " pages of up to %u contacts of a tag on %" PRIu64 " contacts\n"
               "page latency: p50 %u us, p99 %u us, max %u us; %.0f pages/s\n",
               pages, BENCH_PAGE, tagged, p50, p99, max, rate);
    return CLI_OK;
}
