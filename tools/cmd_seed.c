/*
 * cmd_seed.c: `kiroku seed`, demo data through the domain's ops (the seeder
 * itself is seed.c).
 */
#include "cli.h"
#include "seed.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char seed_usage[] =
    "usage: kiroku seed [--data DIR] [--tenants N] [--contacts M] [--seed S] [--json]\n"
    "\n"
    "Fills DIR's journal (made first if DIR has none) with demo data through the\n"
    "domain's ops: N tenants (default 3) signed up the whole way, their users,\n"
    "logins (some failed), a lock and unlock, password changes, tags, attribute\n"
    "definitions, M contacts each (default 100) tagged, with attribute values,\n"
    "some updated and deleted; notices published and acknowledged, incidents\n"
    "opened, notified, updated and resolved, reports, the outbox delivered, and\n"
    "the last tenant cancelled. Every event type of the schema occurs. The same\n"
    "--seed S (default 1) gives the same events (ids, times from\n"
    "2026-04-01T00:00:00Z, payloads); seed an empty DIR, or give another seed.\n"
    "Demo data only: the rng is predictable and passwords are cheap to hash.\n";

int cmd_seed(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"tenants", required_argument, 0, 't'},
                                         {"contacts", required_argument, 0, 'c'},
                                         {"seed", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    struct cli_seed_options so = {.tenants = 3, .contacts = 100, .seed = 1, .cancel = true};
    int rc, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 't':
            ok = cli_parse_u64(optarg, 1, CLI_SEED_TENANTS_MAX, &so.tenants);
            break;
        case 'c':
            ok = cli_parse_u64(optarg, 0, CLI_SEED_CONTACTS_MAX, &so.contacts);
            break;
        case 's':
            ok = cli_parse_u64(optarg, 0, UINT64_MAX, &so.seed);
            break;
        default:
            if ((rc = cli_common_option(c, seed_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
        if (!ok)
            return cli_usage(seed_usage);
    }
    if (optind != argc)
        return cli_usage(seed_usage);
    so.dir = cli_data_dir(co.data);
    so.progress = !co.json && so.tenants * so.contacts >= 20000;
    struct cli_seed_result r;
    kr_err err = cli_seed(&so, &r);
    if (err)
        return err == KR_EBUSY ? cli_fail_open(so.dir, err) : cli_fail("seed", err);
    double rate = r.seconds > 0 ? (double)r.events / r.seconds : 0;
    if (co.json) {
        printf("{\"data\":");
        cli_json_str(stdout, so.dir, strlen(so.dir));
        printf(",\"seed\":%" PRIu64 ",\"events\":%" PRIu64 ",\"tenants\":%" PRIu64
               ",\"contacts\":%" PRIu64 ",\"seconds\":%.3f,\"events_per_s\":%.0f}\n",
               so.seed, r.events, r.tenants, r.contacts, r.seconds, rate);
    } else {
        printf("seeded %s: %" PRIu64 " events, %" PRIu64 " tenants, %" PRIu64
               " contacts in %.2f s (%.0f events/s)\n",
               so.dir, r.events, r.tenants, r.contacts, r.seconds, rate);
    }
    return CLI_OK;
}
