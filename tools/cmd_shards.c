/*
 * cmd_shards.c: `kiroku shards`, the operator's view of the shard map and the
 * leases (api/shardmap.h, api/lease.h) in NATS JetStream: list the shards
 * with their endpoints, tenant counts and lease holders; tell where a tenant
 * lives; place a tenant by hand; announce a shard's endpoint.
 *
 * Design notes: the map is opened like any node opens it (loaded whole, then
 * closed); leases are read once (lease_peek), never taken, so the command
 * can run beside the nodes at any time. Writes are the map's own conditional
 * ones: assigning a tenant already placed changes nothing and says where.
 */
#include "cli.h"
#include "domain.h"
#include "lease.h"
#include "natskv.h"
#include "shardmap.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char shards_usage[] =
    "usage: kiroku shards --nats URL[,URL...] [--json] list\n"
    "       kiroku shards --nats URL[,URL...] [--json] where (--tenant ID | --code CODE)\n"
    "       kiroku shards --nats URL[,URL...] [--replicas N] assign --tenant ID [--code CODE] "
    "SHARD\n"
    "       kiroku shards --nats URL[,URL...] [--replicas N] announce SHARD ENDPOINT\n"
    "\n"
    "The shard map (bucket KIROKU_SHARDS) and the leases (KIROKU_LEASE) in NATS\n"
    "JetStream (docs/operations.md, \"Several machines\").\n"
    "  list       every shard: its endpoint, its tenants in the map, its lease's holder\n"
    "  where      the shard of a tenant (by id or tenant code)\n"
    "  assign     places a tenant (and its code) on SHARD, if the map has no place\n"
    "             for it yet (exit 1 naming where it is, if it has)\n"
    "  announce   writes SHARD's client endpoint(s) (its primary does this itself)\n"
    "  --nats URL the NATS servers, comma-separated (nats://host:4222,...)\n"
    "  --replicas N  the map's copies if assign or announce makes it (default 1);\n"
    "             list and where never make it\n"
    "\n"
    "Exit status: 0 done; 1 not found or already placed elsewhere; 2 usage;\n"
    "3 NATS could not be reached.\n";

struct shards_opts {
    struct cli_common co;
    const char *nats, *code;
    uint64_t tenant, replicas;
    bool has_tenant;
};

static int shards_parse(int argc, char **argv, struct shards_opts *o)
{
    static const struct option opts[] = {
        {"nats", required_argument, 0, 'n'},
        {"tenant", required_argument, 0, 't'},
        {"code", required_argument, 0, 'c'},
        {"replicas", required_argument, 0, 'r'},
        CLI_COMMON_OPTIONS,
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            o->nats = optarg;
            break;
        case 't':
            if (!cli_parse_u64(optarg, 1, UINT64_MAX, &o->tenant)) {
                fprintf(stderr, "kiroku: shards: --tenant is a tenant id (decimal, > 0)\n");
                return CLI_USAGE;
            }
            o->has_tenant = true;
            break;
        case 'c':
            o->code = optarg;
            break;
        case 'r':
            if (!cli_parse_u64(optarg, 1, 5, &o->replicas)) {
                fprintf(stderr, "kiroku: shards: --replicas is 1..5\n");
                return CLI_USAGE;
            }
            break;
        default: {
            int rc = cli_common_option(c, shards_usage, &o->co);
            if (rc != CLI_CONTINUE)
                return rc;
        }
        }
    }
    if (!o->nats || optind >= argc)
        return cli_usage(shards_usage);
    return CLI_CONTINUE;
}

static void print_lease(jsCtx *js, const char *shard, bool json)
{
    struct lease_holder h;
    kr_err err = lease_peek(js, shard, &h);
    if (json && err) {
        fputs("null", stdout);
    } else if (json) {
        fputs("{\"node\":", stdout);
        cli_json_str(stdout, h.node, strlen(h.node));
        fputs(",\"endpoint\":", stdout);
        cli_json_str(stdout, h.endpoint, strlen(h.endpoint));
        printf(",\"epoch\":%llu,\"size\":%llu}", (unsigned long long)h.epoch,
               (unsigned long long)h.size);
    } else if (err) {
        fputs(err == KR_ENOTFOUND ? "lease vacant" : "lease unknown", stdout);
    } else {
        printf("lease %s (epoch %llu, size %llu)", h.node, (unsigned long long)h.epoch,
               (unsigned long long)h.size);
    }
}

static int shards_list(struct kr_shardmap *m, jsCtx *js, bool json)
{
    struct kr_shardmap_shard s[KR_SHARDS_MAX];
    struct kr_shardmap_stats st;
    size_t n;
    kr_shardmap_shards(m, s, KR_SHARDS_MAX, &n);
    kr_shardmap_stats(m, &st);
    if (json)
        fputs("{\"shards\":[", stdout);
    for (size_t i = 0; i < n && i < KR_SHARDS_MAX; i++) {
        if (json) {
            fputs(i ? ",{\"shard\":" : "{\"shard\":", stdout);
            cli_json_str(stdout, s[i].name, strlen(s[i].name));
            fputs(",\"endpoint\":", stdout);
            cli_json_str(stdout, s[i].endpoint, strlen(s[i].endpoint));
            printf(",\"tenants\":%zu,\"lease\":", s[i].tenants);
        } else {
            printf("%-32s %s  tenants %zu  ", s[i].name, s[i].endpoint[0] ? s[i].endpoint : "-",
                   s[i].tenants);
        }
        print_lease(js, s[i].name, json);
        fputs(json ? "}" : "\n", stdout);
    }
    if (json)
        printf("],\"tenants\":%zu,\"codes\":%zu,\"ignored\":%llu}\n", st.tenants, st.codes,
               (unsigned long long)st.ignored);
    else
        printf("%zu tenants, %zu codes in the map; %llu keys ignored\n", st.tenants, st.codes,
               (unsigned long long)st.ignored);
    return CLI_OK;
}

static int shards_where(struct kr_shardmap *m, const struct shards_opts *o)
{
    char shard[KR_SHARD_NAME_MAX + 1];
    kr_err err;
    if (o->has_tenant == (o->code != NULL))
        return cli_usage(shards_usage);
    if (o->has_tenant)
        err = kr_shardmap_get(m, o->tenant, shard);
    else
        err = kr_shardmap_get_code(m, o->code, strlen(o->code), shard);
    if (err) {
        fprintf(stderr, "kiroku: shards: the map places no such tenant\n");
        return CLI_BAD;
    }
    if (o->co.json) {
        fputs("{\"shard\":", stdout);
        cli_json_str(stdout, shard, strlen(shard));
        fputs("}\n", stdout);
    } else {
        printf("%s\n", shard);
    }
    return CLI_OK;
}

static int shards_assign(struct kr_shardmap *m, const struct shards_opts *o, const char *shard)
{
    if (!o->has_tenant)
        return cli_usage(shards_usage);
    if (strcmp(shard, KR_PLATFORM_SHARD) == 0) {
        fprintf(stderr,
                "kiroku: shards: the shard %s holds the platform's records, never a "
                "tenant\n",
                KR_PLATFORM_SHARD);
        return CLI_USAGE;
    }
    kr_err err = kr_shardmap_assign(m, o->tenant, o->code, shard);
    if (err == KR_EEXIST) {
        char where[KR_SHARD_NAME_MAX + 1] = "";
        if (kr_shardmap_sync(m) != KR_OK || kr_shardmap_get(m, o->tenant, where) != KR_OK)
            snprintf(where, sizeof where, "?");
        fprintf(stderr,
                "kiroku: shards: already placed: tenant %llu is on shard %s (or its code names "
                "another tenant); nothing changed\n",
                (unsigned long long)o->tenant, where);
        return CLI_BAD;
    }
    if (err == KR_EINVAL) {
        fprintf(stderr, "kiroku: shards: a shard is [a-z0-9-]{1,32}, a code [a-z0-9-]{4,32}\n");
        return CLI_USAGE;
    }
    return err ? cli_fail("shards: assign", err) : CLI_OK;
}

static int shards_run(struct kr_shardmap *m, jsCtx *js, const struct shards_opts *o, int argc,
                      char **argv)
{
    const char *what = argv[optind];
    int rest = argc - optind - 1;
    if (strcmp(what, "list") == 0 && rest == 0)
        return shards_list(m, js, o->co.json);
    if (strcmp(what, "where") == 0 && rest == 0)
        return shards_where(m, o);
    if (strcmp(what, "assign") == 0 && rest == 1)
        return shards_assign(m, o, argv[optind + 1]);
    if (strcmp(what, "announce") == 0 && rest == 2) {
        kr_err err = kr_shardmap_announce(m, argv[optind + 1], argv[optind + 2]);
        if (err == KR_EINVAL) {
            fprintf(stderr, "kiroku: shards: a shard is [a-z0-9-]{1,32}, an endpoint printable "
                            "without spaces or quotes\n");
            return CLI_USAGE;
        }
        return err ? cli_fail("shards: announce", err) : CLI_OK;
    }
    return cli_usage(shards_usage);
}

int cmd_shards(int argc, char **argv)
{
    struct shards_opts o = {0};
    int rc = shards_parse(argc, argv, &o);
    if (rc != CLI_CONTINUE)
        return rc;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    struct kr_shardmap *m = NULL;
    kr_err err = nkv_connect(o.nats, &nc);
    if (err == KR_EINVAL) {
        fprintf(stderr, "kiroku: shards: --nats takes nats://HOST:PORT URLs, comma-separated\n");
        return CLI_USAGE;
    }
    if (!err)
        err = nkv_err(natsConnection_JetStream(&js, nc, NULL));
    bool reads = strcmp(argv[optind], "list") == 0 || strcmp(argv[optind], "where") == 0;
    if (!err)
        err = kr_shardmap_open(nc, reads ? -1 : (int)(o.replicas ? o.replicas : 1), &m);
    if (err == KR_ENOTFOUND) {
        fprintf(stderr, "kiroku: shards: no shard map in this NATS cluster yet\n");
        rc = CLI_BAD;
    } else {
        rc = err ? cli_fail("shards: NATS", err) : shards_run(m, js, &o, argc, argv);
    }
    kr_shardmap_close(m);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}
