/*
 * schema_test.c: the generated schema tables and their lookups
 * (projections/schema.c), the committed docs being in sync with the schema,
 * and schemagen refusing broken schemas with a message naming what is wrong.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "schema.h"
#include "test_util.h"

#define ERR_MAX 65536

/* ---- Lookups ---- */

static void test_lookup_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < KR_EV__COUNT; i++)
        assert_int_equal(kr_event_lookup(kr_events[i].name, strlen(kr_events[i].name)), i);
    for (int i = 0; i < KR_OP__COUNT; i++)
        assert_int_equal(kr_op_lookup(kr_ops[i].name, strlen(kr_ops[i].name)), i);
    for (int i = 0; i < KR_FLD__COUNT; i++)
        assert_int_equal(kr_field_lookup(kr_fields[i].name, strlen(kr_fields[i].name)), i);
    for (int e = 0; e < KR_ENUM__COUNT; e++) {
        assert_true(kr_enums[e].count > 0);
        for (uint32_t v = 0; v < kr_enums[e].count; v++) {
            const char *name = kr_enums[e].values[v];
            assert_int_equal(kr_enum_lookup(e, name, strlen(name)), (int)v);
        }
    }
}

/* One name table: its lookup, and its names by id for the linear oracle. */
struct table {
    int (*lookup)(const char *name, size_t len);
    const char *(*name_at)(int id);
    int count;
};

static int event_lookup(const char *n, size_t l)
{
    return kr_event_lookup(n, l);
}
static const char *event_name(int i)
{
    return kr_events[i].name;
}
static int op_lookup(const char *n, size_t l)
{
    return kr_op_lookup(n, l);
}
static const char *op_name(int i)
{
    return kr_ops[i].name;
}
static int field_lookup(const char *n, size_t l)
{
    return kr_field_lookup(n, l);
}
static const char *field_name(int i)
{
    return kr_fields[i].name;
}
static int enum_id; /* the enum the two below look in */
static int value_lookup(const char *n, size_t l)
{
    return kr_enum_lookup(enum_id, n, l);
}
static const char *value_name(int i)
{
    return kr_enums[enum_id].values[i];
}

/* The lookup gives what a linear search of the names gives. */
static void expect_oracle(const struct table *t, const char *name, size_t len)
{
    int want = -1;
    for (int i = 0; i < t->count; i++)
        if (strlen(t->name_at(i)) == len && memcmp(t->name_at(i), name, len) == 0)
            want = i;
    int got = t->lookup(name, len);
    if (got != want)
        fail_msg("lookup of \"%.*s\" (%zu bytes): %d, expected %d", (int)len, name, len, got, want);
}

/* Every way a name can be almost right: prefixes, suffixes, one byte more,
 * an embedded or trailing NUL, another case, a high byte. */
static void expect_near_misses(const struct table *t, const char *name)
{
    size_t len = strlen(name);
    char buf[256];
    assert_true(len > 0 && len + 2 < sizeof buf);
    for (size_t n = 0; n < len; n++) {
        expect_oracle(t, name, n);
        expect_oracle(t, name + len - n, n);
    }
    memcpy(buf, name, len);
    buf[len] = 'x';
    expect_oracle(t, buf, len + 1);
    buf[len] = '\0';
    assert_int_equal(t->lookup(buf, len + 1), -1);
    for (size_t i = 0; i < len; i++) {
        memcpy(buf, name, len);
        buf[i] = '\0';
        assert_int_equal(t->lookup(buf, len), -1);
        buf[i] = (char)0xff;
        assert_int_equal(t->lookup(buf, len), -1);
        if (name[i] >= 'a' && name[i] <= 'z') {
            buf[i] = (char)(name[i] - 'a' + 'A');
            assert_int_equal(t->lookup(buf, len), -1);
        }
    }
}

static void test_lookup_misses(void **state)
{
    (void)state;
    struct table tables[] = {
        {event_lookup, event_name, KR_EV__COUNT},
        {op_lookup, op_name, KR_OP__COUNT},
        {field_lookup, field_name, KR_FLD__COUNT},
        {value_lookup, value_name, 0},
    };
    size_t big = (size_t)1 << 20;
    char *huge = malloc(big);
    assert_non_null(huge);
    for (enum_id = 0; enum_id < KR_ENUM__COUNT; enum_id++) {
        tables[3].count = (int)kr_enums[enum_id].count;
        for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
            const struct table *tb = &tables[t];
            assert_int_equal(tb->lookup("", 0), -1);
            assert_int_equal(tb->lookup(NULL, 0), -1);
            assert_int_equal(tb->lookup("no.such_name", 12), -1);
            assert_int_equal(tb->lookup("\0\0\0\0", 4), -1);
            for (int i = 0; i < tb->count; i++) {
                expect_near_misses(tb, tb->name_at(i));
                /* A huge name that starts like a real one. */
                memset(huge, 'a', big);
                memcpy(huge, tb->name_at(i), strlen(tb->name_at(i)));
                assert_int_equal(tb->lookup(huge, big), -1);
            }
        }
    }
    free(huge);

    /* Bad enum ids. */
    const char *v0 = kr_enums[0].values[0];
    assert_int_equal(kr_enum_lookup(0, v0, strlen(v0)), 0);
    assert_int_equal(kr_enum_lookup(-1, v0, strlen(v0)), -1);
    assert_int_equal(kr_enum_lookup(KR_ENUM__COUNT, v0, strlen(v0)), -1);
    assert_int_equal(kr_enum_lookup(INT32_MAX, v0, strlen(v0)), -1);
    assert_int_equal(kr_enum_lookup(INT32_MIN, v0, strlen(v0)), -1);
}

/* ---- The tables ---- */

static bool event_has(const struct kr_event_def *ev, int field, bool *optional)
{
    for (uint32_t i = 0; i < ev->nfields; i++) {
        if (ev->fields[i].field == field) {
            *optional = ev->fields[i].optional;
            return true;
        }
    }
    return false;
}

static void test_stream_keys(void **state)
{
    (void)state;
    for (int i = 0; i < KR_EV__COUNT; i++) {
        const struct kr_event_def *ev = &kr_events[i];
        assert_true(ev->stream_prefix[0] != '\0');
        if (ev->stream_key < 0)
            continue;
        assert_true(ev->stream_key < KR_FLD__COUNT);
        bool optional = true;
        if (!event_has(ev, ev->stream_key, &optional))
            fail_msg("%s: stream key %s is not one of its fields", ev->name,
                     kr_fields[ev->stream_key].name);
        assert_false(optional);
        assert_int_equal(kr_fields[ev->stream_key].type, KR_FT_ID);
    }
}

static void test_secret_args_not_echoed(void **state)
{
    (void)state;
    for (int i = 0; i < KR_OP__COUNT; i++) {
        const struct kr_op_def *op = &kr_ops[i];
        for (uint32_t a = 0; a < op->nargs; a++) {
            int f = op->args[a].field;
            if (!kr_fields[f].secret)
                continue;
            for (uint32_t r = 0; r < op->nresult; r++) {
                const struct kr_result_item *res = &op->result[r];
                if (res->field == f)
                    fail_msg("%s echoes secret arg %s", op->name, kr_fields[f].name);
                for (uint32_t k = 0; k < res->nitems; k++)
                    if (res->items[k] == f)
                        fail_msg("%s echoes secret arg %s in %s", op->name, kr_fields[f].name,
                                 res->list_name);
            }
        }
    }
}

static void test_tables_consistent(void **state)
{
    (void)state;
    uint32_t max_fields = 0, max_args = 0;
    for (int i = 0; i < KR_EV__COUNT; i++) {
        const struct kr_event_def *ev = &kr_events[i];
        bool personal = false;
        for (uint32_t k = 0; k < ev->nfields; k++) {
            assert_true(ev->fields[k].field < KR_FLD__COUNT);
            personal |= kr_fields[ev->fields[k].field].personal;
        }
        assert_int_equal(ev->has_personal, personal);
        assert_false(ev->platform && ev->has_personal);
        max_fields = ev->nfields > max_fields ? ev->nfields : max_fields;
    }
    assert_int_equal(max_fields, KR_FLD_MAX_PER_EVENT);
    for (int i = 0; i < KR_OP__COUNT; i++) {
        const struct kr_op_def *op = &kr_ops[i];
        max_args = op->nargs > max_args ? op->nargs : max_args;
        assert_true(op->roles != 0 && op->roles < 32u);
        assert_true(op->permission >= -1 && op->permission < KR_PERMISSION__COUNT);
        for (uint32_t k = 0; k < op->nevents; k++)
            assert_true(op->events[k] < KR_EV__COUNT);
        for (uint32_t r = 0; r < op->nresult; r++) {
            const struct kr_result_item *res = &op->result[r];
            assert_true(res->field >= 0 ? res->list_name == NULL && res->nitems == 0
                                        : res->list_name != NULL && res->nitems > 0);
        }
    }
    assert_int_equal(max_args, KR_ARGS_MAX);
    for (int i = 0; i < KR_FLD__COUNT; i++) {
        const struct kr_field_def *f = &kr_fields[i];
        assert_true(f->min <= f->max || f->type == KR_FT_LIST);
        bool has_enum = f->type == KR_FT_ENUM || (f->type == KR_FT_LIST && f->of == KR_FT_ENUM);
        assert_int_equal(f->enum_id >= 0, has_enum);
        assert_true(f->enum_id < KR_ENUM__COUNT);
        if (f->type == KR_FT_ID)
            assert_true(f->min == 16 && f->max == 16);
        if (f->type == KR_FT_HASH)
            assert_true(f->min == 32 && f->max == 32);
        if (f->type == KR_FT_TENANT)
            assert_true(f->min == 1 && f->max == INT64_MAX);
        if (f->type == KR_FT_EMAIL)
            assert_true(f->min == 3);
    }
    for (int i = 0; i < KR_ERR__COUNT; i++)
        assert_true(kr_api_errors[i].name[0] != '\0' && kr_api_errors[i].doc[0] != '\0');
}

/* ---- Files and running schemagen ---- */

/* The whole file at path, NUL-terminated (*len bytes before the NUL); NULL if absent. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    assert_false(ferror(f));
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Runs schemagen SCHEMA OUT DOCS; stderr into err (NUL-terminated). Returns
 * the exit status. */
static int schemagen(const char *schema, const char *out, const char *docs, char *err)
{
    int pe[2];
    assert_int_equal(pipe(pe), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(pe[1], 2);
        close(pe[0]);
        execl(KR_SCHEMAGEN_BIN, "schemagen", schema, out, docs, (char *)NULL);
        _exit(127);
    }
    close(pe[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(pe[0], err + n, ERR_MAX - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = '\0';
    close(pe[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void expect_same_file(const char *built, const char *committed)
{
    size_t nb, nc;
    char *b = slurp(built, &nb), *c = slurp(committed, &nc);
    if (!b || !c) {
        free(b);
        free(c);
        fail_msg("%s is missing: %s", b ? committed : built,
                 b ? "run cmake --build build --target schema-docs" : "build the kr_schema target");
        return;
    }
    if (nb != nc || memcmp(b, c, nb) != 0) {
        size_t i = 0, line = 1;
        while (i < nb && i < nc && b[i] == c[i])
            line += b[i++] == '\n';
        fail_msg("%s differs from the schema from line %zu on: run cmake --build build "
                 "--target schema-docs and commit it",
                 committed, line);
    }
    free(b);
    free(c);
}

/* The committed reference docs are what the schema gives, byte for byte. */
static void test_docs_in_sync(void **state)
{
    (void)state;
    expect_same_file(KR_SCHEMA_DOCS_DIR "/events.md", KR_SOURCE_DIR "/docs/events.md");
    expect_same_file(KR_SCHEMA_DOCS_DIR "/ops.md", KR_SOURCE_DIR "/docs/ops.md");
}

/* ---- schemagen on small schemas ---- */

static const char good_fields[] =
    "{\"about\": \"Fields.\",\n"
    " \"enums\": {\"role\": [\"master\", \"user\"], \"permission\": [\"things.read\"]},\n"
    " \"fields\": {\n"
    "  \"thing\": {\"type\": \"id\", \"doc\": \"A thing.\"},\n"
    "  \"label\": {\"type\": \"str\", \"max\": 10, \"personal\": true, \"doc\": \"A label.\"},\n"
    "  \"role\": {\"type\": \"enum\", \"enum\": \"role\", \"doc\": \"A role.\"},\n"
    "  \"version\": {\"type\": \"u64\", \"doc\": \"A version.\"},\n"
    "  \"secret\": {\"type\": \"str\", \"max\": 10, \"secret\": true, \"doc\": \"A secret.\"}\n"
    " }}\n";
static const char good_events[] =
    "{\"events\": [\n"
    " {\"name\": \"thing.made\", \"scope\": \"tenant\", \"stream\": \"thing/{thing}\",\n"
    "  \"fields\": [\"thing\", \"version\", \"label?\"], \"doc\": \"A thing was made.\"}\n"
    "]}\n";
static const char good_ops[] =
    "{\"errors\": {\"bad_request\": \"Bad.\"},\n"
    " \"ops\": [\n"
    " {\"name\": \"things.make\", \"endpoint\": \"client\", \"roles\": [\"user\"],\n"
    "  \"permission\": \"things.read\", \"args\": [\"label\", \"secret?\"],\n"
    "  \"result\": [\"thing\", {\"list\": \"items\", \"items\": [\"label\"]}],\n"
    "  \"events\": [\"thing.made\"], \"errors\": [\"bad_request\"], \"doc\": \"Makes a thing.\"}\n"
    "]}\n";

enum { F_FIELDS, F_EVENTS, F_OPS };
static const char *const file_names[] = {"fields.json", "events.json", "ops.json"};

struct scratch {
    char root[512], schema[600], out[600], docs[600];
};

static void scratch_init(struct scratch *s)
{
    kr_test_tmpdir(s->root, sizeof s->root);
    snprintf(s->schema, sizeof s->schema, "%s/schema", s->root);
    snprintf(s->out, sizeof s->out, "%s/out", s->root);
    snprintf(s->docs, sizeof s->docs, "%s/docs", s->root);
    assert_int_equal(mkdir(s->schema, 0700), 0);
    assert_int_equal(mkdir(s->out, 0700), 0);
    assert_int_equal(mkdir(s->docs, 0700), 0);
}

/* Writes the good schema with file `which` replaced by text (which < 0: none). */
static void write_schema(const struct scratch *s, int which, const char *text)
{
    const char *const good[] = {good_fields, good_events, good_ops};
    char path[700];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", s->schema, file_names[i]);
        spit(path, i == which ? text : good[i]);
    }
}

static ino_t inode_of(const char *dir, const char *name, struct timespec *mtime)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    if (stat(path, &st) != 0)
        fail_msg("%s was not written", path);
    *mtime = st.st_mtim;
    return st.st_ino;
}

static void test_schemagen_good(void **state)
{
    (void)state;
    static char err[ERR_MAX];
    struct scratch s;
    scratch_init(&s);
    write_schema(&s, -1, NULL);
    if (schemagen(s.schema, s.out, s.docs, err) != 0)
        fail_msg("schemagen refused the good schema: %s", err);

    /* The header lists each op's handler (projections/cmd.h declares them and
     * domain.c's table refers to them) and the byte bound of each sized field. */
    char hpath[700];
    size_t hlen;
    snprintf(hpath, sizeof hpath, "%s/schema_gen.h", s.out);
    char *h = slurp(hpath, &hlen);
    assert_non_null(h);
    assert_non_null(
        strstr(h, "#define KR_OP_HANDLERS(X) \\\n    X(KR_OP_THINGS_MAKE, cmd_things_make)\n"));
    assert_non_null(strstr(h, "#define KR_FLD_LABEL_MAX 10u\n"));
    assert_non_null(strstr(h, "#define KR_FLD_SECRET_MAX 10u\n"));
    assert_null(strstr(h, "KR_FLD_VERSION_MAX")); /* a u64's max is a value, not a size */
    assert_null(strstr(h, "KR_FLD_THING_MAX"));
    free(h);

    /* A second run with nothing changed rewrites nothing. */
    const char *const outs[] = {"schema_gen.h", "schema_gen.c", "events.md", "ops.md"};
    ino_t ino[4];
    struct timespec mt[4], mt2;
    for (int i = 0; i < 4; i++)
        ino[i] = inode_of(i < 2 ? s.out : s.docs, outs[i], &mt[i]);
    assert_int_equal(schemagen(s.schema, s.out, s.docs, err), 0);
    for (int i = 0; i < 4; i++) {
        assert_true(inode_of(i < 2 ? s.out : s.docs, outs[i], &mt2) == ino[i]);
        assert_true(mt2.tv_sec == mt[i].tv_sec && mt2.tv_nsec == mt[i].tv_nsec);
    }

    /* A doc change replaces the files it shows in, and only those. */
    char *fields = strdup(good_fields);
    assert_non_null(fields);
    char *doc = strstr(fields, "A thing.");
    assert_non_null(doc);
    doc[4] = 'o'; /* "A thong." */
    write_schema(&s, F_FIELDS, fields);
    free(fields);
    assert_int_equal(schemagen(s.schema, s.out, s.docs, err), 0);
    assert_true(inode_of(s.out, "schema_gen.h", &mt2) == ino[0]);
    assert_true(inode_of(s.out, "schema_gen.c", &mt2) != ino[1]);
    assert_true(inode_of(s.docs, "events.md", &mt2) != ino[2]);

    /* The real schema gives the same output every run. */
    struct scratch s2;
    scratch_init(&s2);
    assert_int_equal(schemagen(KR_SOURCE_DIR "/schemas", s.out, s.docs, err), 0);
    assert_int_equal(schemagen(KR_SOURCE_DIR "/schemas", s2.out, s2.docs, err), 0);
    char a[700], b[700];
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s", i < 2 ? s.out : s.docs, outs[i]);
        snprintf(b, sizeof b, "%s/%s", i < 2 ? s2.out : s2.docs, outs[i]);
        expect_same_file(a, b);
    }
    kr_test_rmrf(s.root);
    kr_test_rmrf(s2.root);
}

/* One broken schema: in file `file`, `from` replaced by `to`; schemagen must
 * exit 1, write nothing, and say `expect` about that file. */
struct bad_case {
    int file;
    const char *from, *to, *expect;
};

static const struct bad_case bad_cases[] = {
    /* Malformed and unknown keys. */
    {F_FIELDS, "{\"about\"", "{about", "fields.json:1:"},
    {F_FIELDS, "\"thing\": {\"type\": \"id\",", "\"thing\": {\"type\": \"id\", \"type\": \"id\",",
     "duplicate object key"},
    {F_FIELDS, "\"doc\": \"A thing.\"}", "\"doc\": \"A thing.\", \"colour\": \"red\"}",
     "field \"thing\": unknown key \"colour\""},
    {F_FIELDS, "\"type\": \"id\"", "\"type\": \"id\", \"max\": 16",
     "field \"thing\": unknown key \"max\""},
    {F_OPS, "{\"errors\"", "{\"extra\": 1, \"errors\"", "top level: unknown key \"extra\""},
    {F_EVENTS, "\"scope\": \"tenant\", ", "", "event \"thing.made\": missing key \"scope\""},
    {F_EVENTS, "\"doc\": \"A thing was made.\"", "\"doc\": \"\"", "event \"thing.made\": \"doc\""},
    {F_EVENTS, "\"doc\": \"A thing was made.\"", "\"doc\": \"Two\\nlines.\"",
     "event \"thing.made\": \"doc\""},
    /* Types and limits. */
    {F_FIELDS, "\"type\": \"u64\"", "\"type\": \"u128\"",
     "field \"version\": type \"u128\" is not one of"},
    {F_FIELDS, "\"type\": \"u64\"", "\"type\": 64", "field \"version\": \"type\" must be a string"},
    {F_FIELDS, "\"max\": 10, \"personal\"", "\"max\": \"10\", \"personal\"",
     "field \"label\": \"max\" must be a non-negative integer"},
    {F_FIELDS, "\"max\": 10, \"personal\"", "\"max\": -1, \"personal\"",
     "field \"label\": \"max\" must be a non-negative integer"},
    {F_FIELDS, "\"max\": 10, \"personal\"", "\"min\": 11, \"max\": 10, \"personal\"",
     "field \"label\": min 11 > max 10"},
    {F_FIELDS, "\"max\": 10, \"personal\"", "\"max\": 10, \"charset\": \"ascii\", \"personal\"",
     "field \"label\": charset \"ascii\""},
    {F_FIELDS, "\"max\": 10, \"personal\"", "\"max\": 0, \"personal\"",
     "field \"label\": max 0 must be at least 1"},
    {F_FIELDS, "\"personal\": true", "\"personal\": 1",
     "field \"label\": \"personal\" must be true or false"},
    /* References. */
    {F_FIELDS, "\"enum\": \"role\"", "\"enum\": \"rank\"",
     "field \"role\": enum \"rank\" is not in \"enums\""},
    {F_EVENTS, "\"label?\"", "\"lable?\"",
     "event \"thing.made\": field \"lable\" is not a field in fields.json"},
    {F_OPS, "\"args\": [\"label\"", "\"args\": [\"labels\"",
     "op \"things.make\": arg \"labels\" is not a field in fields.json"},
    {F_OPS, "\"items\": [\"label\"]", "\"items\": [\"label?\"]", "'?' (optional) is not allowed"},
    {F_OPS, "\"events\": [\"thing.made\"]", "\"events\": [\"thing.lost\"]",
     "op \"things.make\": event \"thing.lost\" is not in events.json"},
    {F_OPS, "\"errors\": [\"bad_request\"]", "\"errors\": [\"teapot\"]",
     "op \"things.make\": error \"teapot\" is not in ops.json \"errors\""},
    /* Duplicates. */
    {F_FIELDS, "[\"master\", \"user\"]", "[\"master\", \"master\"]",
     "enum \"role\": duplicate value \"master\""},
    {F_EVENTS, "\"label?\"]", "\"label?\", \"thing\"]",
     "event \"thing.made\": field \"thing\" is listed twice"},
    {F_EVENTS, "]}",
     ", {\"name\": \"thing.made\", \"scope\": \"tenant\", \"stream\": \"thing\", "
     "\"fields\": [], \"doc\": \"Again.\"}]}",
     "event \"thing.made\": duplicate event name"},
    {F_OPS, "\"items\": [\"label\"]}", "\"items\": [\"label\"]}, \"thing\"",
     "op \"things.make\": result key \"thing\" appears twice"},
    {F_FIELDS, "[\"things.read\"]", "[\"things.read\", \"things-read\"]",
     "value \"things-read\" of enum \"permission\": its C name KR_PERMISSION_THINGS_READ "
     "clashes with value \"things.read\""},
    {F_FIELDS, "\"permission\": [", "\"err\": [\"bad_request\"], \"permission\": [",
     "enum \"err\": its C name KR_ERR__COUNT clashes with a name schema.h defines"},
    {F_EVENTS, "]}",
     ", {\"name\": \"thing.made-x\", \"scope\": \"tenant\", \"stream\": \"t\", "
     "\"fields\": [], \"doc\": \"X.\"}, {\"name\": \"thing.made_x\", \"scope\": "
     "\"tenant\", \"stream\": \"t\", \"fields\": [], \"doc\": \"X.\"}]}",
     "event \"thing.made_x\": its C name KR_EV_THING_MADE_X clashes with event \"thing.made-x\""},
    {F_FIELDS, "\"role\": {\"type\"",
     "\"label_max\": {\"type\": \"id\", \"doc\": \"X.\"}, \"role\": {\"type\"",
     "field \"label_max\": its C name KR_FLD_LABEL_MAX clashes with field \"label\""},
    {F_OPS, "\"name\": \"things.make\"", "\"name\": \"new.id\"",
     "op \"new.id\": its C name cmd_new_id clashes with a name cmd.h defines"},
    /* Streams. */
    {F_EVENTS, "thing/{thing}", "thing/{role}",
     "event \"thing.made\": stream \"thing/{role}\": {role} is not a field of the event"},
    {F_EVENTS, "thing/{thing}", "thing/{version}",
     "stream \"thing/{version}\": {version} must be an id field, not u64"},
    {F_EVENTS, "[\"thing\", \"version\"", "[\"thing?\", \"version\"",
     "field \"thing\" keys the stream, so it cannot be optional"},
    {F_EVENTS, "thing/{thing}", "thing/{thing?}", "the stream key cannot be optional"},
    {F_EVENTS, "thing/{thing}", "thing/thing", "must be PREFIX or PREFIX/{FIELD}"},
    {F_EVENTS, "thing/{thing}", "Thing/{thing}", "the part before '/' must match"},
    {F_EVENTS, "\"scope\": \"tenant\"", "\"scope\": \"global\"",
     "scope must be \"tenant\" or \"platform\""},
    {F_EVENTS, "\"scope\": \"tenant\"", "\"scope\": \"platform\"",
     "field \"label\" is personal, but a platform event"},
    /* Event names. */
    {F_EVENTS, "\"thing.made\"", "\"Thing.made\"", "event \"Thing.made\": name must match"},
    {F_EVENTS, "\"thing.made\"", "\"thing\"", "event \"thing\": name must match"},
    {F_EVENTS, "\"thing.made\"", "\"thing.\"", "event \"thing.\": name must match"},
    {F_EVENTS, "\"thing.made\"", "\"thing..made\"", "event \"thing..made\": name must match"},
    {F_EVENTS, "\"thing.made\"", "\"thing.Made\"", "event \"thing.Made\": name must match"},
    {F_EVENTS, "\"thing.made\"", "\"thing.-made\"", "event \"thing.-made\": name must match"},
    {F_EVENTS, "\"thing.made\"", "\"1thing.made\"", "event \"1thing.made\": name must match"},
    {F_EVENTS, "\"thing.made\"", "\"thing.made \"", "name must match"},
    {F_EVENTS, "\"thing.made\"",
     "\"thing.made_made_made_made_made_made_made_made_made_made_made_made\"", "name must match"},
    /* Callers. */
    {F_OPS, "\"roles\": [\"user\"]", "\"roles\": [\"admin\"]",
     "op \"things.make\": role \"admin\" is not one of"},
    {F_OPS, "\"roles\": [\"user\"]", "\"roles\": []", "op \"things.make\": \"roles\" must be"},
    {F_OPS, "\"roles\": [\"user\"]", "\"roles\": [\"user\", \"user\"]",
     "role \"user\" is listed twice"},
    {F_OPS, "\"roles\": [\"user\"]", "\"roles\": [\"operator\"]",
     "has a permission but no caller role that holds permissions"},
    {F_OPS, "\"permission\": \"things.read\"", "\"permission\": \"things.write\"",
     "op \"things.make\": permission \"things.write\" is not a value of enum \"permission\""},
    {F_OPS, "\"endpoint\": \"client\"", "\"endpoint\": \"web\"",
     "endpoint must be \"client\" or \"operator\""},
    {F_FIELDS, "[\"master\", \"user\"]", "[\"master\", \"admin\"]",
     "value \"admin\" is not a caller role"},
    /* Secrets. */
    {F_OPS, "\"result\": [\"thing\"", "\"result\": [\"thing\", \"secret\"",
     "op \"things.make\": secret arg \"secret\" is echoed in the result"},
    {F_OPS, "\"items\": [\"label\"]", "\"items\": [\"label\", \"secret\"]",
     "secret arg \"secret\" is echoed in the result"},
};

static void test_schemagen_refuses(void **state)
{
    (void)state;
    static char err[ERR_MAX];
    const char *const good[] = {good_fields, good_events, good_ops};
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        const char *at = strstr(good[c->file], c->from);
        if (!at) {
            fail_msg("case %zu: \"%s\" is not in the good %s", i, c->from, file_names[c->file]);
            return;
        }
        size_t len = strlen(good[c->file]) - strlen(c->from) + strlen(c->to) + 1;
        char *text = malloc(len);
        assert_non_null(text);
        snprintf(text, len, "%.*s%s%s", (int)(at - good[c->file]), good[c->file], c->to,
                 at + strlen(c->from));

        struct scratch s;
        scratch_init(&s);
        write_schema(&s, c->file, text);
        free(text);
        int rc = schemagen(s.schema, s.out, s.docs, err);
        if (rc != 1 || !strstr(err, c->expect) || !strstr(err, file_names[c->file]))
            fail_msg("case %zu (%s: %s -> %s): exit %d, expected 1 and \"%s\"; got:\n%s", i,
                     file_names[c->file], c->from, c->to, rc, c->expect, err);
        char path[700];
        snprintf(path, sizeof path, "%s/schema_gen.c", s.out);
        assert_int_equal(access(path, F_OK), -1);
        kr_test_rmrf(s.root);
    }
}

static void test_schemagen_usage(void **state)
{
    (void)state;
    static char err[ERR_MAX];
    struct scratch s;
    scratch_init(&s);
    /* No schema files at all. */
    assert_int_equal(schemagen(s.schema, s.out, s.docs, err), 1);
    assert_non_null(strstr(err, "fields.json"));
    /* An output directory that does not exist. */
    write_schema(&s, -1, NULL);
    char missing[700];
    snprintf(missing, sizeof missing, "%s/nope", s.root);
    assert_int_equal(schemagen(s.schema, missing, s.docs, err), 2);
    assert_non_null(strstr(err, "nope"));
    kr_test_rmrf(s.root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_round_trip), cmocka_unit_test(test_lookup_misses),
        cmocka_unit_test(test_stream_keys),       cmocka_unit_test(test_secret_args_not_echoed),
        cmocka_unit_test(test_tables_consistent), cmocka_unit_test(test_docs_in_sync),
        cmocka_unit_test(test_schemagen_good),    cmocka_unit_test(test_schemagen_refuses),
        cmocka_unit_test(test_schemagen_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
