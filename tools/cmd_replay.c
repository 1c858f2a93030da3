/*
 * cmd_replay.c: `kiroku replay`, which rebuilds the views from the journal
 * and prints or checks their digests.
 *
 * `replay` drops and rebuilds every view from the journal and prints a
 * digest per view. `replay --check` touches nothing live: it copies the
 * journal environment (a compacting LMDB copy, a consistent snapshot of the
 * journal and of the views it was applied to, safe while a server writes)
 * into a scratch directory beside the data directory, takes the digests of
 * the copied views, rebuilds them there and compares.
 */
#include "cli.h"
#include "domain.h"
#include "journal.h"
#include "path.h"
#include "views.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char replay_usage[] =
    "usage: kiroku replay [--data DIR] [--check] [--json]\n"
    "\n"
    "Drops every view and rebuilds it from the journal, then prints each view's\n"
    "name, entries and SHA-256 digest. Run it while the server is stopped.\n"
    "--check changes nothing: it copies the journal (a consistent snapshot, safe\n"
    "while a server runs) to a scratch directory beside DIR, rebuilds the views\n"
    "there and compares every digest with the views as they were.\n"
    "\n"
    "Exit status: 0 done (--check: every view equals its rebuild); 1 --check\n"
    "found views that differ (they are listed); 2 usage; 3 could not run.\n";

struct digests {
    uint8_t d[VIEW__COUNT][32];
    uint64_t n[VIEW__COUNT];
};

static kr_err take_digests(MDB_env *env, struct kr_views *v, struct digests *out)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    kr_err err = KR_OK;
    for (int i = 0; i < VIEW__COUNT && !err; i++)
        err = views_digest(v, txn, (enum kr_view)i, out->d[i], &out->n[i]);
    mdb_txn_abort(txn);
    return err;
}

static bool replay_progress(void *arg, uint64_t done, uint64_t total)
{
    (void)arg;
    fprintf(stderr, "\rreplaying: %" PRIu64 " / %" PRIu64 " records", done, total);
    if (done == total)
        fputc('\n', stderr);
    return true;
}

static void print_views(const struct digests *dg, const bool *differs, bool json, const char *head,
                        uint64_t records, double secs)
{
    char h[65];
    if (json) {
        printf("{%s\"records\":%" PRIu64 ",\"seconds\":%.3f,\"views\":[", head, records, secs);
        for (int i = 0; i < VIEW__COUNT; i++) {
            sodium_bin2hex(h, sizeof h, dg->d[i], 32);
            printf("%s{\"name\":\"%s\",\"entries\":%" PRIu64 ",\"digest\":\"%s\"", i ? "," : "",
                   views_name((enum kr_view)i), dg->n[i], h);
            if (differs)
                printf(",\"equal\":%s", differs[i] ? "false" : "true");
            printf("}");
        }
        printf("]}\n");
        return;
    }
    for (int i = 0; i < VIEW__COUNT; i++) {
        sodium_bin2hex(h, sizeof h, dg->d[i], 32);
        printf("%-20s %10" PRIu64 " %s%s\n", views_name((enum kr_view)i), dg->n[i], h,
               differs && differs[i] ? "  DIFFERS" : "");
    }
}

static int replay_live(const char *data, bool json)
{
    struct kr_domain_options o = {.dir = data, .no_catch_up = true, .no_appends = true};
    struct kr_domain *d;
    kr_err err = dom_open(&o, &d);
    if (err)
        return cli_fail_open(data, err);
    double t0 = cli_now();
    err = jrn_views_rebuild(d->j, !json && isatty(STDERR_FILENO) ? replay_progress : NULL, NULL);
    double secs = cli_now() - t0;
    struct digests dg = {0};
    if (!err)
        err = take_digests(jrn_env(d->j), &d->views, &dg);
    uint64_t records = jrn_size(d->j);
    dom_close(d);
    if (err)
        return cli_fail("replay", err);
    if (!json)
        printf("rebuilt the views from %" PRIu64 " records in %.2f s\n", records, secs);
    print_views(&dg, NULL, json, "\"ok\":true,", records, secs);
    return CLI_OK;
}

/* Makes scratch (a fresh directory beside data) a data directory holding a
 * compacted copy of data's journal environment: the records and the views
 * as they are now. No key is copied: the rebuild needs none. */
static kr_err scratch_copy(const char *data, char *scratch, size_t cap, bool *made)
{
    /* A read-only open: a snapshot of the journal and its views, whether or
     * not a server holds the journal. */
    struct jrn_options jo = {.dir = data, .read_only = true};
    struct journal *j;
    kr_err err = jrn_open(&jo, &j);
    if (err)
        return err;
    size_t dl = strlen(data);
    while (dl > 1 && data[dl - 1] == '/')
        dl--;
    char sub[KR_PATH_MAX];
    int n = snprintf(scratch, cap, "%.*s.check-XXXXXX", (int)dl, data);
    if (n < 0 || (size_t)n >= cap) {
        err = KR_ETOOLARGE;
        goto out;
    }
    if (!mkdtemp(scratch)) {
        err = kr_err_from_errno(errno);
        goto out;
    }
    *made = true;
    if (kr_path_join(sub, sizeof sub, scratch, "journal")) {
        err = KR_ETOOLARGE;
        goto out;
    }
    if (mkdir(sub, 0700) != 0) {
        err = kr_err_from_errno(errno);
        goto out;
    }
    err = kr_err_from_mdb(mdb_env_copy2(jrn_env(j), sub, MDB_CP_COMPACT));
out:
    jrn_close(j);
    return err;
}

static int replay_check(const char *data, bool json)
{
    char scratch[KR_PATH_MAX + 64];
    double t0 = cli_now();
    bool made = false;
    kr_err err = scratch_copy(data, scratch, sizeof scratch, &made);
    struct kr_views v;
    struct journal *j = NULL;
    struct digests live = {0}, rebuilt = {0};
    uint64_t records = 0;
    bool views_ok = false;
    if (err == KR_OK && (err = views_init(&v)) == KR_OK) {
        views_ok = true;
        struct jrn_options jo = {.dir = scratch,
                                 .views = views_hooks(&v),
                                 .views_no_catch_up = true,
                                 .no_appends = true};
        if ((err = jrn_open(&jo, &j)) == KR_OK &&
            (err = take_digests(jrn_env(j), &v, &live)) == KR_OK &&
            (err = jrn_views_rebuild(j, !json && isatty(STDERR_FILENO) ? replay_progress : NULL,
                                     NULL)) == KR_OK)
            err = take_digests(jrn_env(j), &v, &rebuilt);
        records = j ? jrn_size(j) : 0;
    }
    jrn_close(j);
    if (views_ok)
        views_fini(&v);
    if (made)
        cli_rmtree(scratch);
    double secs = cli_now() - t0;
    if (err == KR_ENOTFOUND || err == KR_EBUSY)
        return cli_fail_open(data, err);
    if (err)
        return cli_fail("replay --check", err);
    bool differs[VIEW__COUNT];
    int bad = 0;
    for (int i = 0; i < VIEW__COUNT; i++) {
        differs[i] = live.n[i] != rebuilt.n[i] || memcmp(live.d[i], rebuilt.d[i], 32) != 0;
        bad += differs[i];
    }
    if (json) {
        char head[VIEW__COUNT * 32 + 64];
        size_t at =
            (size_t)snprintf(head, sizeof head, "\"ok\":%s,\"differ\":[", bad ? "false" : "true");
        for (int i = 0, k = 0; i < VIEW__COUNT; i++)
            if (differs[i])
                at += (size_t)snprintf(head + at, sizeof head - at, "%s\"%s\"", k++ ? "," : "",
                                       views_name((enum kr_view)i));
        snprintf(head + at, sizeof head - at, "],");
        print_views(&live, differs, true, head, records, secs);
    } else {
        print_views(&live, differs, false, "", records, secs);
        if (bad) {
            printf("FAILED: %d %s from the rebuild:", bad,
                   bad == 1 ? "view differs" : "views differ");
            for (int i = 0; i < VIEW__COUNT; i++)
                if (differs[i])
                    printf(" %s", views_name((enum kr_view)i));
            printf("\n");
        } else {
            printf("ok: every view equals its rebuild from %" PRIu64 " records (%.2f s)\n", records,
                   secs);
        }
    }
    return bad ? CLI_BAD : CLI_OK;
}

int cmd_replay(int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS, {"check", no_argument, 0, 'c'}, {0, 0, 0, 0}};
    struct cli_common co = {0};
    bool check = false;
    int rc, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            check = true;
            break;
        default:
            if ((rc = cli_common_option(c, replay_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc)
        return cli_usage(replay_usage);
    const char *data = cli_data_dir(co.data);
    return check ? replay_check(data, co.json) : replay_live(data, co.json);
}
