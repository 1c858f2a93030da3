/*
 * cmd_operators.c: `kiroku operators add EMAIL`, the bootstrap of a data
 * directory's first operator account (and of more while no server runs),
 * and `kiroku operators list`.
 *
 * Design notes.
 * - add opens DIR's domain itself and calls dom_operator_create (an
 *   account.created of role operator, actor "system"), so it needs the
 *   journal's exclusive lock: with a server on DIR (KR_EBUSY) it changes
 *   nothing and says to use operators.create from an existing operator,
 *   which the journal records with that operator's name.
 * - The password is generated (libsodium's randombytes_uniform, 24 of 32
 *   letters and digits: 120 bits) and printed once, unless
 *   --password-stdin gives one (first line of stdin, at most
 *   KR_OPERATORS_PASSWORD_LINE_MAX bytes); it follows kr_password_check either way.
 * - A tenant shard that imports the platform journal (cluster.platform in
 *   DIR/kiroku.conf, or a copy in DIR/platform) is refused: operators are the
 *   platform shard's, which every shard imports (docs/operations.md, "The
 *   platform journal").
 * - list runs operators.list on the domain as an operator would, so it shows
 *   what the op shows.
 */
#include "accounts.h"
#include "cli.h"
#include "config.h"
#include "domain.h"
#include "jsonmp.h"
#include "path.h"

#include <getopt.h>
#include <inttypes.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A generated password's length, from GEN_ALPHABET (32 symbols: 5 bits each). */
#define GEN_PASSWORD_LEN 24u
#define GEN_ALPHABET     "abcdefghijkmnpqrstuvwxyz23456789"

static const char operators_usage[] =
    "usage: kiroku operators add EMAIL [--data DIR] [--password-stdin] [--json]\n"
    "       kiroku operators list [--data DIR] [--json]\n"
    "\n"
    "Operator accounts (tenant 0) of the journal in DIR, while no server runs on it.\n"
    "  add    makes an operator account for EMAIL (the first one of a deployment,\n"
    "         before serve starts). Without --password-stdin a strong password is\n"
    "         generated and printed once: give it to the operator, who changes it\n"
    "         with operators.password. --password-stdin reads it from stdin's first\n"
    "         line instead. Refused on a tenant shard that imports the platform\n"
    "         journal: operators are made on the platform shard.\n"
    "  list   the operator accounts, as operators.list shows them.\n"
    "With a server on DIR, an operator uses operators.create and operators.list over\n"
    "the operator endpoint instead (kiroku call --operator --data DIR ...).\n"
    "\n"
    "Exit status: 0 done; 1 refused (the e-mail is taken, the password is weak,\n"
    "the shard imports the platform); 2 usage; 3 could not open DIR.\n";

struct operators_opts {
    struct cli_common co;
    bool password_stdin;
};

static int operators_parse(int argc, char **argv, struct operators_opts *o)
{
    static const struct option opts[] = {
        {"password-stdin", no_argument, 0, 'p'},
        CLI_COMMON_OPTIONS,
        {0, 0, 0, 0},
    };
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'p')
            o->password_stdin = true;
        else if ((rc = cli_common_option(c, operators_usage, &o->co)) != CLI_CONTINUE)
            return rc;
    }
    return CLI_CONTINUE;
}

/* Whether DIR is a tenant shard that imports the platform journal: its
 * kiroku.conf sets cluster.platform, or it holds the copy DIR/platform. */
static bool imports_platform(const char *dir)
{
    char path[KR_PATH_MAX];
    struct stat st;
    if (kr_path_join(path, sizeof path, dir, "platform") == KR_OK && stat(path, &st) == 0 &&
        S_ISDIR(st.st_mode))
        return true;
    struct kr_config *cfg = NULL;
    if (kr_path_join(path, sizeof path, dir, "kiroku.conf") != KR_OK ||
        kr_config_load(path, &cfg, NULL, 0) != KR_OK)
        return false; /* none (or serve would refuse it too, and say why) */
    bool on = kr_config_bool(cfg, "cluster.platform");
    kr_config_free(cfg);
    return on;
}

/* The first line of stdin into pw (without its line end). */
static bool read_password(char pw[KR_OPERATORS_PASSWORD_LINE_MAX + 2])
{
    if (!fgets(pw, KR_OPERATORS_PASSWORD_LINE_MAX + 2, stdin))
        return false;
    size_t n = strlen(pw);
    bool whole = n > 0 && pw[n - 1] == '\n';
    if (!whole && !feof(stdin))
        return false; /* longer than any password */
    while (n > 0 && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
        pw[--n] = '\0';
    return n > 0;
}

static void generate_password(char pw[GEN_PASSWORD_LEN + 1])
{
    static const char abc[] = GEN_ALPHABET;
    for (size_t i = 0; i < GEN_PASSWORD_LEN; i++)
        pw[i] = abc[randombytes_uniform(sizeof abc - 1)];
    pw[GEN_PASSWORD_LEN] = '\0';
}

/* Says why dom_operator_create refused and returns the exit status. */
static int add_refused(const char *email, const char *pw, kr_err err)
{
    const char *why = NULL;
    if (err == KR_ECONFLICT) {
        fprintf(stderr, "kiroku: operators add: an operator account has the e-mail %s\n", email);
        return CLI_BAD;
    }
    if (err == KR_EINVAL && kr_password_check(pw, strlen(pw), email, strlen(email), &why)) {
        fprintf(stderr, "kiroku: operators add: password: %s\n", why);
        return CLI_BAD;
    }
    if (err == KR_EINVAL) {
        fprintf(stderr, "kiroku: operators add: %s is not an e-mail address\n", email);
        return CLI_BAD;
    }
    return cli_fail("operators add", err);
}

static void print_added(const char *email, const uint8_t id[16], const char *generated, bool json)
{
    char hex[33];
    sodium_bin2hex(hex, sizeof hex, id, 16);
    if (json) {
        printf("{\"email\":");
        cli_json_str(stdout, email, strlen(email));
        printf(",\"account\":\"%s\"", hex);
        if (generated)
            printf(",\"password\":\"%s\"", generated);
        printf("}\n");
        return;
    }
    printf("operator %s added (account %s)\n", email, hex);
    if (generated)
        printf("password: %s\n(shown this once: hand it over safely; the operator logs in with "
               "tenant code %s over the operator endpoint and changes it with "
               "operators.password)\n",
               generated, KR_PLATFORM_CODE);
}

static int operators_add(const struct operators_opts *o, const char *email)
{
    const char *dir = cli_data_dir(o->co.data);
    char pw[KR_OPERATORS_PASSWORD_LINE_MAX + 2];
    if (imports_platform(dir)) {
        fprintf(stderr,
                "kiroku: operators add: %s is a tenant shard that imports the platform journal "
                "(cluster.platform): operator accounts are made on the platform shard (shard "
                "%s), and every shard imports them\n",
                dir, KR_PLATFORM_SHARD);
        return CLI_BAD;
    }
    if (o->password_stdin && !read_password(pw)) {
        fprintf(stderr, "kiroku: operators add: --password-stdin: no password on stdin's first "
                        "line (or one longer than 128 bytes)\n");
        return CLI_USAGE;
    }
    if (!o->password_stdin)
        generate_password(pw);
    struct kr_domain_options dopt = {.dir = dir};
    struct kr_domain *d = NULL;
    kr_err err = dom_open(&dopt, &d);
    if (err == KR_EBUSY) {
        fprintf(stderr,
                "kiroku: operators add: a server runs on %s (the journal is in use): nothing "
                "changed. An existing operator adds one with operators.create over the operator "
                "endpoint (kiroku call --operator --data %s operators.create -)\n",
                dir, dir);
        sodium_memzero(pw, sizeof pw);
        return CLI_FAIL;
    }
    if (err) {
        sodium_memzero(pw, sizeof pw);
        return cli_fail_open(dir, err);
    }
    uint8_t id[16];
    err = dom_operator_create(d, email, pw, id);
    dom_close(d);
    int rc = CLI_OK;
    if (err)
        rc = add_refused(email, pw, err);
    else
        print_added(email, id, o->password_stdin ? NULL : pw, o->co.json);
    sodium_memzero(pw, sizeof pw);
    if (fflush(stdout) != 0)
        return CLI_FAIL;
    return rc;
}

/* A str or nil msgpack value as text ("-" for nil). */
static void print_str(const msgpack_object *o)
{
    if (o && o->type == MSGPACK_OBJECT_STR)
        printf("%.*s", (int)o->via.str.size, o->via.str.ptr);
    else
        printf("-");
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key)
{
    if (m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

/* operators.list's reply (one page) as text: one operator a line. */
static void print_list_text(const msgpack_object *res)
{
    const msgpack_object *l = map_get(res, "operators");
    if (!l || l->type != MSGPACK_OBJECT_ARRAY)
        return;
    for (uint32_t i = 0; i < l->via.array.size; i++) {
        const msgpack_object *e = &l->via.array.ptr[i];
        const msgpack_object *a = map_get(e, "account"), *v = map_get(e, "version");
        const msgpack_object *locked = map_get(e, "locked");
        char hex[33] = "?";
        if (a && a->type == MSGPACK_OBJECT_BIN && a->via.bin.size == 16)
            sodium_bin2hex(hex, sizeof hex, (const unsigned char *)a->via.bin.ptr, 16);
        printf("%s  ", hex);
        print_str(map_get(e, "email"));
        printf("  ");
        print_str(map_get(e, "display_name"));
        printf("  version %" PRIu64,
               v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0);
        if (locked && locked->type == MSGPACK_OBJECT_BOOLEAN && locked->via.boolean) {
            printf("  locked (");
            print_str(map_get(e, "lock_reason"));
            printf(")");
        }
        printf("\n");
    }
    printf("%" PRIu32 " operator%s\n", l->via.array.size, l->via.array.size == 1 ? "" : "s");
}

static int print_list(const struct kr_wbuf *out, bool json)
{
    if (json) {
        char *text = NULL;
        size_t len;
        struct jsonmp_diag jd;
        kr_err err = jsonmp_to_json((const uint8_t *)out->data, out->size, &text, &len, &jd);
        if (err)
            return cli_fail("operators list", err);
        printf("%s\n", text);
        free(text);
        return CLI_OK;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, (const char *)out->data, out->size, &off) !=
        MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&u);
        return cli_fail("operators list", KR_ECORRUPT);
    }
    print_list_text(&u.data);
    msgpack_unpacked_destroy(&u);
    return CLI_OK;
}

static int operators_list(const struct operators_opts *o)
{
    const char *dir = cli_data_dir(o->co.data);
    struct kr_domain_options dopt = {.dir = dir};
    struct kr_domain *d = NULL;
    kr_err err = dom_open(&dopt, &d);
    if (err == KR_EBUSY) {
        fprintf(stderr,
                "kiroku: operators list: a server runs on %s (the journal is in use): ask it "
                "(kiroku call --operator --data %s operators.list)\n",
                dir, dir);
        return CLI_FAIL;
    }
    if (err)
        return cli_fail_open(dir, err);
    struct kr_caller op = {.role = KR_ROLE_OPERATOR, .operator_endpoint = true};
    struct kr_payload *args = kr_payload_new();
    struct kr_wbuf out;
    struct kr_diag diag;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    int rc = CLI_OK;
    if (!args) {
        err = KR_ENOMEM;
    } else {
        kr_payload_reset(args, -1);
        kr_set_u64(args, KR_FLD_LIMIT, KR_PAGE_MAX);
        err = dom_exec(d, &op, KR_OP_OPERATORS_LIST, args, &out, &diag);
    }
    if (err)
        rc = cli_fail("operators list", err);
    else
        rc = print_list(&out, o->co.json);
    kr_wbuf_free(&out);
    kr_payload_free(args);
    dom_close(d);
    return fflush(stdout) != 0 ? CLI_FAIL : rc;
}

int cmd_operators(int argc, char **argv)
{
    struct operators_opts o = {0};
    int rc = operators_parse(argc, argv, &o);
    if (rc != CLI_CONTINUE)
        return rc;
    if (sodium_init() < 0)
        return cli_fail("operators", KR_ENOMEM);
    int left = argc - optind;
    if (left == 2 && strcmp(argv[optind], "add") == 0)
        return operators_add(&o, argv[optind + 1]);
    if (left == 1 && strcmp(argv[optind], "list") == 0 && !o.password_stdin)
        return operators_list(&o);
    return cli_usage(operators_usage);
}
