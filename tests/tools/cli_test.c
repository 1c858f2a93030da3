/*
 * cli_test.c: the kiroku command as scripts and operators use it: exit codes,
 * --help everywhere, --json output that parses and carries the documented
 * fields, and the first bad seq reported for a damaged journal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jst.h"
#include "test_util.h"

#define OUT_MAX (1u << 20)

static char root[1024], dir[1100];

/* Runs kiroku with args (NULL-terminated), stdout into out (NUL-terminated,
 * stderr into err when not NULL); returns the exit status. */
static int run(char *out, char *err, const char *const *args)
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

/* Background kiroku processes of the running test: killed by the teardown
 * whatever way the test ends, and by the kernel if this process dies. */
static pid_t children[4];

static pid_t spawn(const char *const *args)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        const char *argv[32] = {"kiroku"};
        size_t n = 1;
        for (; args[n - 1] && n < 31; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(KR_KIROKU_BIN, (char *const *)argv);
        _exit(127);
    }
    for (size_t i = 0; i < sizeof children / sizeof children[0]; i++) {
        if (children[i] == 0) {
            children[i] = pid;
            break;
        }
    }
    return pid;
}

static void reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (size_t i = 0; i < sizeof children / sizeof children[0]; i++)
        if (children[i] == pid)
            children[i] = 0;
}

static int setup(void **state)
{
    (void)state;
    kr_test_tmpdir(root, sizeof root);
    snprintf(dir, sizeof dir, "%s/data", root);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof children / sizeof children[0]; i++)
        if (children[i] > 0)
            reap(children[i]);
    kr_test_rmrf(root);
    return 0;
}

static void test_help_and_usage(void **state)
{
    (void)state;
    static char out[OUT_MAX], err[OUT_MAX];
    static const char *const helps[][4] = {
        {"--help", NULL},
        {"init", "--help", NULL},
        {"verify", "--help", NULL},
        {"dump", "--help", NULL},
        {"keys", "--help", NULL},
        {"bench", "--help", NULL},
        {"bench", "append", "--help", NULL},
    };
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        assert_int_equal(run(out, err, helps[i]), 0);
        assert_non_null(strstr(out, "usage: kiroku"));
    }
    static const char *const bad[][6] = {
        {"bogus", NULL},
        {"verify", "--threads", "0", NULL},
        {"verify", "--pubkey", "AAAA", NULL},
        {"dump", "--from", "0", NULL},
        {"dump", "--limit", "-1", NULL},
        {"bench", "append", "--events", "0", NULL},
        {"bench", "append", "--payload", "65537", NULL},
        {"init", "extra", NULL},
        {"keys", "frobnicate", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(run(out, err, bad[i]), 2);
    assert_int_equal(run(out, err, (const char *const[]){NULL}), 2);
}

static void test_journal_commands(void **state)
{
    (void)state;
    static char out[OUT_MAX], err[OUT_MAX];

    /* No journal yet: operational failure with advice. */
    assert_int_equal(run(out, err, (const char *const[]){"dump", "--data", dir, NULL}), 3);
    assert_non_null(strstr(err, "kiroku init"));

    /* init --json gives the public key; init again refuses. */
    assert_int_equal(run(out, err, (const char *const[]){"init", "--data", dir, "--json", NULL}),
                     0);
    json_t *j = parse(out);
    const char *pk = json_string_value(json_object_get(j, "public_key"));
    assert_non_null(pk);
    char pubkey[64];
    snprintf(pubkey, sizeof pubkey, "%s", pk);
    assert_int_equal(json_integer_value(json_object_get(j, "key_id")), 1);
    assert_non_null(json_string_value(json_object_get(j, "origin")));
    json_decref(j);
    assert_int_equal(run(out, err, (const char *const[]){"init", "--data", dir, NULL}), 3);

    /* Some records, then verify in both modes with the pinned key. */
    assert_int_equal(
        run(out, err,
            (const char *const[]){"bench", "append", "--data", dir, "--events", "3000",
                                  "--producers", "4", "--window", "8", "--json", NULL}),
        0);
    j = parse(out);
    assert_int_equal(json_integer_value(json_object_get(j, "events")), 3000);
    assert_int_equal(json_integer_value(json_object_get(j, "failures")), 0);
    assert_true(json_is_number(json_object_get(j, "events_per_s")));
    assert_true(json_is_integer(json_object_get(j, "p50_us")));
    assert_true(json_is_integer(json_object_get(j, "p99_us")));
    /* The ceiling beside the figure, measured in the same run. */
    assert_true(json_number_value(json_object_get(j, "sign_ceiling_per_s")) > 0);
    assert_true(json_integer_value(json_object_get(j, "sign_ceiling_threads")) >= 1);
    assert_true(json_is_number(json_object_get(j, "events_over_ceiling")));
    assert_true(json_number_value(json_object_get(j, "flushes_per_commit_measured")) >= 1);
    json_decref(j);
    for (int fast = 0; fast < 2; fast++) {
        const char *args[] = {
            "verify", "--data", dir, "--pubkey", pubkey, "--json", fast ? "--fast" : NULL, NULL};
        assert_int_equal(run(out, err, args), 0);
        j = parse(out);
        assert_true(json_is_true(json_object_get(j, "ok")));
        assert_int_equal(json_integer_value(json_object_get(j, "records")), 3001);
        assert_string_equal(json_string_value(json_object_get(j, "mode")), fast ? "fast" : "full");
        json_decref(j);
    }
    /* bench verify over the same journal, beside its ceiling. */
    assert_int_equal(
        run(out, err, (const char *const[]){"bench", "verify", "--data", dir, "--json", NULL}), 0);
    j = parse(out);
    assert_int_equal(json_integer_value(json_object_get(j, "records")), 3001);
    assert_true(json_number_value(json_object_get(j, "verify_ceiling_per_s")) > 0);
    assert_true(json_is_number(json_object_get(j, "full_over_ceiling")));
    json_decref(j);

    /* dump --json: one object per line, in seq order, from --from. */
    assert_int_equal(run(out, err,
                         (const char *const[]){"dump", "--data", dir, "--from", "10", "--limit",
                                               "5", "--json", NULL}),
                     0);
    size_t lines = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        j = parse(line);
        assert_int_equal(json_integer_value(json_object_get(j, "seq")), 10 + (json_int_t)lines);
        assert_non_null(json_string_value(json_object_get(j, "commitment")));
        /* The time in JST beside UTC. */
        char jst[JST_LEN + 1];
        jst_format(strtoull(json_string_value(json_object_get(j, "time_ns")), NULL, 10), jst);
        assert_string_equal(json_string_value(json_object_get(j, "time_jst")), jst);
        json_decref(j);
    }
    assert_int_equal(lines, 5);
    assert_int_equal(
        run(out, err,
            (const char *const[]){"dump", "--data", dir, "--from", "10", "--limit", "1", NULL}),
        0);
    assert_non_null(strstr(out, "#10 "));
    assert_non_null(strstr(out, "Z (JST "));
    assert_non_null(strstr(out, "+09:00) tenant="));

    /* Rotate the key; still verifies, now with two keys. */
    assert_int_equal(run(out, err, (const char *const[]){"keys", "rotate", "--data", dir, NULL}),
                     0);
    assert_int_equal(run(out, err, (const char *const[]){"verify", "--data", dir, "--json", NULL}),
                     0);
    j = parse(out);
    assert_int_equal(json_integer_value(json_object_get(j, "keys")), 2);
    json_decref(j);

    /* Damage record 1234's payload: exit 1 and the first bad seq. */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, "events", &txn, &dbi);
    uint8_t key[8];
    kr_test_be64(key, 1234);
    MDB_val k = {8, key}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t *copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size - 1] ^= 1; /* the last payload byte */
    MDB_val nv = {v.mv_size, copy};
    assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
    assert_int_equal(run(out, err, (const char *const[]){"verify", "--data", dir, "--json", NULL}),
                     1);
    j = parse(out);
    assert_true(json_is_false(json_object_get(j, "ok")));
    assert_int_equal(json_integer_value(json_object_get(j, "bad_seq")), 1234);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "corrupt");
    json_decref(j);
    assert_int_equal(run(out, err, (const char *const[]){"verify", "--data", dir, NULL}), 1);
    assert_non_null(strstr(out, "FAILED at seq 1234"));
}

/* The reader table as `mdb_stat -r` prints it (another LMDB client). */
static void reader_table(char *out)
{
    char env[1200];
    snprintf(env, sizeof env, "%s/journal", dir);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        execlp("mdb_stat", "mdb_stat", "-r", env, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t r;
    while ((r = read(p[0], out + len, OUT_MAX - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* mdb_stat 0.9.24 exits 1 whenever it printed the table (it takes
     * fputs' return value for an error), so read what it printed instead. */
    if (!WIFEXITED(status) || strstr(out, "Reader Table Status") == NULL)
        fail_msg("mdb_stat -r %s failed (status %d): %s", env, status, out);
}

/* A reader killed in the middle of its read transaction leaves its slot in
 * LMDB's reader table, pinning old pages; the running writer reclaims it. */
/* A verify process being waited for (test_stale_reader_reclaimed). */
struct reader_wait {
    char *out; /* the reader table, as last read */
    char pidtext[32];
    struct kr_test_child child;
};

/* Whether the reader holds a slot in the journal's reader table, or exited. */
static bool reader_in_or_exited(void *arg)
{
    struct reader_wait *w = arg;
    reader_table(w->out);
    return strstr(w->out, w->pidtext) || kr_test_child_exited(&w->child);
}

/* Whether the reader's slot is gone from the table. */
static bool reader_gone(void *arg)
{
    struct reader_wait *w = arg;
    reader_table(w->out);
    return strstr(w->out, w->pidtext) == NULL;
}

static void test_stale_reader_reclaimed(void **state)
{
    (void)state;
    static char out[OUT_MAX], err[OUT_MAX];
    assert_int_equal(run(out, err,
                         (const char *const[]){"bench", "append", "--data", dir, "--events",
                                               "60000", "--ceiling", "0", NULL}),
                     0);
    pid_t writer = spawn((const char *const[]){"bench", "append", "--data", dir, "--events",
                                               "100000000", "--producers", "4", NULL});
    int tries = 0;
    pid_t reader;
    struct reader_wait w = {.out = out};
    for (;;) {
        /* Kill a full verification once it holds a reader slot (one of
         * 60,000+ records takes ~50 us a core: it reads for seconds). */
        reader = spawn((const char *const[]){"verify", "--data", dir, NULL});
        w.child = (struct kr_test_child){.pid = reader};
        snprintf(w.pidtext, sizeof w.pidtext, " %d ", (int)reader);
        assert_true(
            kr_test_wait_for(reader_in_or_exited, &w, KR_TEST_WAIT_MS, "verify's reader slot"));
        if (strstr(out, w.pidtext))
            break;
        for (size_t i = 0; i < sizeof children / sizeof children[0]; i++)
            if (children[i] == reader)
                children[i] = 0; /* it finished on its own and was reaped */
        assert_true(++tries < 5);
    }
    reap(reader);
    /* The dead reader's slot: it was in the table when the reader was
     * killed; the writer reclaims it within a second of a commit (it may
     * have done so already, so the table is not read in between). */
    bool gone = kr_test_wait_for(reader_gone, &w, KR_TEST_WAIT_MS, "the dead reader's slot freed");
    reap(writer);
    assert_true(gone);
    assert_int_equal(run(out, err, (const char *const[]){"verify", "--data", dir, "--fast", NULL}),
                     0);
}

/* --json output is valid JSON whatever bytes it prints: a data directory
 * whose name is not UTF-8 comes out with U+FFFD for the bad byte (the one
 * escaper, jsonmp_escape). */
static void test_json_not_utf8(void **state)
{
    (void)state;
    static char out[OUT_MAX], err[OUT_MAX];
    char bad[1200];
    snprintf(bad, sizeof bad,
             "%s/bad\xff"
             "dir",
             root);
    assert_int_equal(run(out, err, (const char *const[]){"init", "--data", bad, "--json", NULL}),
                     0);
    json_t *j = parse(out); /* jansson refuses invalid UTF-8 */
    const char *data = json_string_value(json_object_get(j, "data"));
    assert_non_null(data);
    char want[1200];
    snprintf(want, sizeof want,
             "%s/bad\xef\xbf\xbd"
             "dir",
             root);
    assert_string_equal(data, want);
    assert_non_null(strstr(out, "/bad\\ufffddir\""));
    json_decref(j);
}

/* verify --save-state, then --since with the same file, day after day; bad
 * states refused with exit status 3. */
static void test_verify_since(void **state)
{
    (void)state;
    static char out[OUT_MAX], err[OUT_MAX];
    char st[1200], other[1200];
    snprintf(st, sizeof st, "%s/audit.state", root);
    snprintf(other, sizeof other, "%s/other", root);
    const char *const fill[] = {"bench",       "append", "--data",   dir, "--events", "2000",
                                "--producers", "2",      "--window", "8", NULL};
    assert_int_equal(run(out, err, fill), 0);
    assert_int_equal(
        run(out, err, (const char *const[]){"verify", "--data", dir, "--save-state", st, NULL}), 0);
    for (int day = 1; day <= 2; day++) {
        assert_int_equal(run(out, err, fill), 0);
        const char *args[] = {"verify",       "--data", dir,      "--since", st,
                              "--save-state", st,       "--json", NULL};
        assert_int_equal(run(out, err, args), 0);
        json_t *j = parse(out);
        assert_true(json_is_true(json_object_get(j, "ok")));
        assert_string_equal(json_string_value(json_object_get(j, "mode")), "since");
        assert_int_equal(json_integer_value(json_object_get(j, "records")), 2001 + 2000 * day);
        assert_int_equal(json_integer_value(json_object_get(j, "checked")), 2000);
        json_decref(j);
    }
    /* Nothing new: nothing checked. */
    assert_int_equal(
        run(out, err, (const char *const[]){"verify", "--data", dir, "--since", st, NULL}), 0);
    assert_non_null(strstr(out, "0 records checked since the saved state"));

    /* Another journal's state; a truncated one; none. */
    assert_int_equal(run(out, err, (const char *const[]){"init", "--data", other, NULL}), 0);
    assert_int_equal(
        run(out, err, (const char *const[]){"verify", "--data", other, "--since", st, NULL}), 3);
    assert_non_null(strstr(err, "another journal"));
    assert_int_equal(truncate(st, 100), 0);
    assert_int_equal(
        run(out, err, (const char *const[]){"verify", "--data", dir, "--since", st, NULL}), 3);
    assert_non_null(strstr(err, "cannot use as a verification state"));
    assert_int_equal(remove(st), 0);
    assert_int_equal(
        run(out, err, (const char *const[]){"verify", "--data", dir, "--since", st, NULL}), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage),
        cmocka_unit_test_setup_teardown(test_journal_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_reader_reclaimed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_not_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_since, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
