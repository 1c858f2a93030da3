/*
 * domain_cli_test.c: the domain's commands as operators use them: `kiroku
 * seed` is deterministic and covers every event type of the schema; `kiroku
 * replay --check` passes on a seeded journal, fails naming the view when a
 * view entry was tampered with (and changes nothing live), and passes again
 * after `kiroku replay` rebuilt the views; --help and usage errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <lmdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "schema.h"
#include "test_util.h"
#include "views.h"

#define OUT_MAX (64u << 20)

static char root[1024], dir_a[1100], dir_b[1100], dir_c[1100];
static char *out, *err;
/* The facts of three dumps (test_seed_deterministic_and_complete), freed by
 * the teardown however the test ends. */
static char *dumps[3];

/* Runs kiroku with args (NULL-terminated), stdout into out and stderr into
 * err (NUL-terminated); returns the exit status. */
static int run(const char *const *args)
{
    int rc = kr_test_run(KR_KIROKU_BIN, args, out, err, OUT_MAX);
    assert_true(rc >= 0);
    return rc;
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("not JSON (%s): %s", e.text, text);
    return j;
}

static int setup(void **state)
{
    (void)state;
    kr_test_tmpdir(root, sizeof root);
    snprintf(dir_a, sizeof dir_a, "%s/a", root);
    snprintf(dir_b, sizeof dir_b, "%s/b", root);
    snprintf(dir_c, sizeof dir_c, "%s/c", root);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kr_test_rmrf(root);
    for (int i = 0; i < 3; i++) {
        free(dumps[i]);
        dumps[i] = NULL;
    }
    return 0;
}

static void seed(const char *dir, const char *seedv, json_int_t tenants, json_int_t contacts)
{
    char t[24], c[24];
    snprintf(t, sizeof t, "%lld", (long long)tenants);
    snprintf(c, sizeof c, "%lld", (long long)contacts);
    int rc = run((const char *const[]){"seed", "--data", dir, "--tenants", t, "--contacts", c,
                                       "--seed", seedv, "--json", NULL});
    if (rc != 0)
        fail_msg("seed exited %d: %s", rc, err);
    json_t *j = parse(out);
    assert_int_equal(json_integer_value(json_object_get(j, "tenants")), tenants);
    assert_int_equal(json_integer_value(json_object_get(j, "contacts")), tenants * contacts);
    assert_true(json_integer_value(json_object_get(j, "events")) > tenants * contacts * 3);
    json_decref(j);
}

static void test_help_and_usage(void **state)
{
    (void)state;
    static const char *const helps[][4] = {
        {"seed", "--help", NULL},
        {"replay", "--help", NULL},
        {"bench", "replay", "--help", NULL},
        {"bench", "query", "--help", NULL},
    };
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        assert_int_equal(run(helps[i]), 0);
        char want[64];
        snprintf(want, sizeof want, "usage: kiroku %s", helps[i][0]);
        assert_non_null(strstr(out, want));
    }
    assert_int_equal(run((const char *const[]){"--help", NULL}), 0);
    assert_non_null(strstr(out, "seed"));
    assert_non_null(strstr(out, "replay"));
    static const char *const bad[][6] = {
        {"seed", "--tenants", "0", NULL},
        {"seed", "--tenants", "x", NULL},
        {"seed", "--contacts", "-1", NULL},
        {"seed", "--seed", "", NULL},
        {"seed", "--bogus", NULL},
        {"seed", "extra", NULL},
        {"replay", "--check", "extra", NULL},
        {"replay", "--frobnicate", NULL},
        {"bench", "replay", "--events", "0", NULL},
        {"bench", "query", "--contacts", "0", NULL},
        {"bench", "query", "--pages", "0", NULL},
        {"bench", "query", "--bogus", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run(bad[i]);
        if (rc != 2)
            fail_msg("%s %s: exit %d, want 2", bad[i][0], bad[i][1], rc);
        assert_non_null(strstr(err, "usage: kiroku"));
    }
    /* No journal: could not run (3), with advice. */
    assert_int_equal(run((const char *const[]){"replay", "--data", dir_a, NULL}), 3);
    assert_non_null(strstr(err, "kiroku init"));
    assert_int_equal(run((const char *const[]){"replay", "--check", "--data", dir_a, NULL}), 3);
}

/* The "views" array of replay's JSON output as name -> digest. */
static void view_digests(json_t *j, char digests[VIEW__COUNT][65])
{
    json_t *views = json_object_get(j, "views");
    assert_int_equal(json_array_size(views), VIEW__COUNT);
    for (size_t i = 0; i < VIEW__COUNT; i++) {
        json_t *v = json_array_get(views, i);
        assert_string_equal(json_string_value(json_object_get(v, "name")),
                            views_name((enum kr_view)i));
        const char *d = json_string_value(json_object_get(v, "digest"));
        assert_non_null(d);
        assert_int_equal(strlen(d), 64);
        snprintf(digests[i], 65, "%s", d);
    }
}

/* Flips one byte of the first value of view database `name`. */
static void tamper(const char *dir, const char *name)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, name, &txn, &dbi);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
    assert_true(v.mv_size > 0);
    uint8_t *copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size - 1] ^= 0x01;
    MDB_val nv = {v.mv_size, copy};
    assert_int_equal(mdb_cursor_put(cur, &k, &nv, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
}

/* Entries of root: the check's scratch copy must not be left behind. */
static size_t root_entries(void)
{
    DIR *d = opendir(root);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void test_replay_check(void **state)
{
    (void)state;
    char live[VIEW__COUNT][65], rebuilt[VIEW__COUNT][65];
    seed(dir_a, "7", 3, 50);

    /* Incremental views equal rebuilt ones. */
    assert_int_equal(
        run((const char *const[]){"replay", "--check", "--data", dir_a, "--json", NULL}), 0);
    json_t *j = parse(out);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(json_array_size(json_object_get(j, "differ")), 0);
    view_digests(j, live);
    json_int_t records = json_integer_value(json_object_get(j, "records"));
    assert_true(records > 150);
    json_decref(j);
    assert_int_equal(root_entries(), 1);

    /* One byte of one contact row changed: the check fails and names the
     * view, and twice, since it changed nothing live. */
    tamper(dir_a, "v.contacts");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(
            run((const char *const[]){"replay", "--check", "--data", dir_a, "--json", NULL}), 1);
        j = parse(out);
        assert_true(json_is_false(json_object_get(j, "ok")));
        json_t *differ = json_object_get(j, "differ");
        assert_int_equal(json_array_size(differ), 1);
        assert_string_equal(json_string_value(json_array_get(differ, 0)), "v.contacts");
        json_decref(j);
    }
    assert_int_equal(run((const char *const[]){"replay", "--check", "--data", dir_a, NULL}), 1);
    assert_non_null(strstr(out, "FAILED: 1 view differs from the rebuild: v.contacts"));
    assert_int_equal(root_entries(), 1);

    /* replay rebuilds: its digests are the untampered ones, and the check
     * passes again. */
    assert_int_equal(run((const char *const[]){"replay", "--data", dir_a, "--json", NULL}), 0);
    j = parse(out);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(json_integer_value(json_object_get(j, "records")), records);
    view_digests(j, rebuilt);
    json_decref(j);
    for (int i = 0; i < VIEW__COUNT; i++)
        assert_string_equal(rebuilt[i], live[i]);
    assert_int_equal(run((const char *const[]){"replay", "--check", "--data", dir_a, NULL}), 0);
    assert_non_null(strstr(out, "ok: every view equals its rebuild"));

    /* The journal itself still verifies. */
    assert_int_equal(run((const char *const[]){"verify", "--data", dir_a, NULL}), 0);
}

/* The fields of each dump line that the seed decides (not sig or prev,
 * which depend on the journal's own key), from seq 2 on (seq 1 is the
 * journal's genesis, naming its key). */
static char *dump_facts(const char *dir, bool types[KR_EV__COUNT])
{
    assert_int_equal(
        run((const char *const[]){"dump", "--data", dir, "--from", "2", "--json", NULL}), 0);
    size_t cap = strlen(out) + 1, at = 0;
    char *facts = malloc(cap);
    assert_non_null(facts);
    static const char *const keys[] = {"seq",  "time_ns", "tenant",     "stream",  "version",
                                       "type", "actor",   "commitment", "payload", "key_id"};
    for (char *save, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = parse(line);
        json_t *sub = json_object();
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            json_t *v = json_object_get(j, keys[i]);
            assert_non_null(v);
            json_object_set(sub, keys[i], v);
        }
        const char *type = json_string_value(json_object_get(j, "type"));
        int ev = kr_event_lookup(type, strlen(type));
        if (types && ev >= 0)
            types[ev] = true;
        char *text = json_dumps(sub, JSON_SORT_KEYS | JSON_COMPACT);
        size_t n = strlen(text);
        assert_true(at + n + 1 < cap);
        memcpy(facts + at, text, n);
        at += n;
        facts[at++] = '\n';
        free(text);
        json_decref(sub);
        json_decref(j);
    }
    facts[at] = '\0';
    return facts;
}

/* Fails naming the first record (line) where two dumps' facts differ. */
static void same_facts(const char *a, const char *b)
{
    for (size_t line = 1;; line++) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        if (!ea || !eb) {
            if (ea || eb || *a || *b)
                fail_msg("the dumps differ in length after line %zu", line);
            return;
        }
        if (ea - a != eb - b || memcmp(a, b, (size_t)(ea - a)) != 0)
            fail_msg("record %zu of the dumps differs:\n  %.300s\n  %.300s", line + 1, a, b);
        a = ea + 1;
        b = eb + 1;
    }
}

static void test_seed_deterministic_and_complete(void **state)
{
    (void)state;
    seed(dir_a, "42", 3, 40);
    seed(dir_b, "42", 3, 40);
    seed(dir_c, "43", 3, 40);
    bool types[KR_EV__COUNT] = {false};
    char *a = dumps[0] = dump_facts(dir_a, types);
    char *b = dumps[1] = dump_facts(dir_b, NULL);
    char *c = dumps[2] = dump_facts(dir_c, NULL);
    /* The same seed: the same events, byte for byte (each init made its own
     * signing key, so the journals' signatures differ: see verify). */
    assert_true(strlen(a) > 1000);
    same_facts(a, b);
    /* Another seed: other ids, so other streams and payloads. */
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a) > 0 && strchr(a, '\n') != NULL, 1);
    /* The signing keys do differ. */
    assert_int_equal(
        run((const char *const[]){"dump", "--data", dir_a, "--limit", "1", "--json", NULL}), 0);
    json_t *ja = parse(out);
    assert_int_equal(
        run((const char *const[]){"dump", "--data", dir_b, "--limit", "1", "--json", NULL}), 0);
    json_t *jb = parse(out);
    assert_string_not_equal(json_string_value(json_object_get(ja, "sig")),
                            json_string_value(json_object_get(jb, "sig")));
    json_decref(ja);
    json_decref(jb);

    /* Every event type of the schema occurs. */
    for (int ev = 0; ev < KR_EV__COUNT; ev++) {
        /* Only a journal written before the addr-spec rule can hold an
         * address the mailer refuses (mailer_test makes one by hand). */
        if (ev == KR_EV_OUTBOX_REFUSED)
            continue;
        /* Seeding runs without the sign-up limits (signup_test.c has them). */
        if (ev == KR_EV_ACCESS_RATE_LIMITED)
            continue;
        /* Seeded logs are days old, within any log period (retention_test.c
         * truncates them). */
        if (ev == KR_EV_RETENTION_LOGS_STRIPPED)
            continue;
        if (!types[ev])
            fail_msg("seed made no %s event", kr_events[ev].name);
    }
    assert_int_equal(run((const char *const[]){"verify", "--data", dir_b, NULL}), 0);
}

/* The benchmarks run and print the documented keys (their timings are for
 * docs/benchmarks.md, never asserted). */
static void test_bench_runs(void **state)
{
    (void)state;
    assert_int_equal(run((const char *const[]){"bench", "replay", "--data", dir_a, "--events",
                                               "2000", "--json", NULL}),
                     0);
    json_t *j = parse(out);
    assert_true(json_integer_value(json_object_get(j, "events")) >= 1000);
    assert_true(json_is_number(json_object_get(j, "events_per_s")));
    json_decref(j);
    /* It seeded DIR, which had no journal, and left the views whole. */
    assert_int_equal(run((const char *const[]){"replay", "--check", "--data", dir_a, NULL}), 0);

    assert_int_equal(run((const char *const[]){"bench", "query", "--data", dir_b, "--contacts",
                                               "3000", "--pages", "30", "--json", NULL}),
                     0);
    j = parse(out);
    assert_int_equal(json_integer_value(json_object_get(j, "pages")), 30);
    /* The seed tags every third of 3,000 contacts (1,000), then takes the
     * tag off 50 of them (i = 42 mod 60) and deletes 20 (i = 3 mod 150).
     * Pages wrap around at the tag's end: 9 full pages and one of 30. */
    assert_int_equal(json_integer_value(json_object_get(j, "tagged")), 930);
    assert_int_equal(json_integer_value(json_object_get(j, "contacts_listed")), 3 * 930);
    assert_int_equal(json_integer_value(json_object_get(j, "full_pages")), 27);
    assert_true(json_is_integer(json_object_get(j, "list_p50_us")));
    assert_true(json_is_integer(json_object_get(j, "list_p99_us")));
    json_decref(j);
}

int main(void)
{
    out = malloc(OUT_MAX);
    err = malloc(OUT_MAX);
    if (!out || !err)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_help_and_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed_deterministic_and_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench_runs, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(out);
    free(err);
    return rc;
}
