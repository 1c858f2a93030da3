/*
 * fault_test.c: storage faults under the journal, injected with an LD_PRELOAD
 * shim (tests/faults/fsfault.c) into `kiroku bench append` (TESTING.md "Crash
 * and storage faults").
 *
 * Each case creates a journal with `kiroku init`, runs the bench on it with
 * the shim preloaded and one kind of fault switched on, then, without the
 * shim, checks what the bench left:
 *   - `kiroku verify` passes;
 *   - every acknowledged event ("seq commitment" lines of --acks, written
 *     after the event was durable) is at its seq with its commitment, seqs
 *     run 1..jrn_size without a gap and the journal holds exactly the records
 *     from before plus the acknowledged ones (a failed commit left nothing);
 *   - after the reopen an append succeeds and the journal verifies fully.
 *
 * The cases:
 *   sync_eio           fdatasync of data.mdb fails with EIO from the 21st on:
 *                      the journal stops (every later append KR_EIO), with
 *                      no further sync and no further write of data.mdb
 *                      (no silent retry), and nothing after the failure is
 *                      acknowledged.
 *   enospc_transient   a few page writes fail with ENOSPC: those batches fail
 *                      with KR_EFULL, the journal goes on, and appends are
 *                      acknowledged again after the disk-full window.
 *   enospc_permanent   every page write fails with ENOSPC from some point
 *                      on: every later append fails with KR_EFULL (none is
 *                      refused as if the journal had stopped), nothing
 *                      acknowledged is lost, and appending works after the
 *                      reopen without the shim.
 *
 * The ENOSPC cases run the bench with two flushes per commit (LMDB's own
 * commit, the meta page written through its O_DSYNC descriptor): with one
 * flush per commit a batch held for its meta page's flush may rightly be
 * acknowledged after a later batch's write failed (mdb_env_sync covers it),
 * which the marks' ordering check would take for a lost fault. sync_eio
 * also runs with two: with one, a batch held when the next flush fails is
 * answered KR_EIO although its meta page may have reached the disk (an error
 * leaves the outcome unknown), so the exact "records = acknowledged" ledger
 * does not hold. One flush per commit is covered by journal_test and
 * crash_test.
 *
 * Design notes
 * - The shim writes a "# fault <event>" line into the acks file when a fault
 *   begins or ends. Both the acks and the faulted writes happen on the
 *   journal's writer thread, so the mark falls exactly between the
 *   acknowledgements before and after it. The shim's counters reach the test
 *   through KR_FAULT_STATS, written when the bench exits.
 * - ENOSPC is injected on page writes only (KR_FAULT_ENOSPC_WHERE=pages): a
 *   real disk full hits block allocation, and LMDB rewrites its meta pages in
 *   place. (An ENOSPC on the meta write, possible on copy-on-write file
 *   systems, puts LMDB's environment into its fatal state; that case is not
 *   tested here.)
 * - In the sanitized build the ASan runtime must come first in the process's
 *   libraries, so LD_PRELOAD names it (found among this test's own loaded
 *   libraries) before the shim, which is built without sanitizers.
 * - Every child is bounded (CHILD_TIMEOUT_S, then SIGKILL and a failure);
 *   nothing asserts on timing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "journal.h"
#include "test_util.h"
#include "verify.h"

#define BENCH_EVENTS    20000
#define CHILD_TIMEOUT_S 300u
/* One acknowledgement line: decimal seq, space, 64 hex digits, newline. */
#define ACK_LINE_MAX (20 + 1 + 2 * KR_HASH_LEN + 1)
#define MAX_MARKS    8

/* Fails the test with a message unless cond holds. */
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg(__VA_ARGS__);                                                                 \
    } while (0)

struct paths {
    char tmp[KR_PATH_MAX], dir[KR_PATH_MAX + 16], acks[KR_PATH_MAX + 16], stats[KR_PATH_MAX + 16],
        log[KR_PATH_MAX + 16];
    bool two_flushes; /* the bench runs with --two-flushes */
};

struct ack {
    uint64_t seq;
    uint8_t commitment[KR_HASH_LEN];
};

/* The acks file: the acknowledgements in order, and the shim's marks, each
 * with the number of acknowledgements before it. */
struct acks {
    struct ack *v;
    uint64_t n;
    struct {
        char what[32];
        uint64_t at;
    } marks[MAX_MARKS];
    size_t nmarks;
};

static void setup_paths(struct paths *p, const char *name)
{
    p->two_flushes = false;
    kr_test_tmpdir(p->tmp, sizeof p->tmp);
    snprintf(p->dir, sizeof p->dir, "%s/data", p->tmp);
    snprintf(p->acks, sizeof p->acks, "%s/acks", p->tmp);
    snprintf(p->stats, sizeof p->stats, "%s/stats", p->tmp);
    snprintf(p->log, sizeof p->log, "%s/log", p->tmp);
    fprintf(stderr, "%s: in %s (kept if the test fails)\n", name, p->tmp);
}

/* Runs kiroku with argv (argv[0] ignored) and the environment of this process
 * minus any LD_PRELOAD and KR_FAULT_* plus `extra` (NULL-terminated, may be
 * NULL), output to `log`. Returns the exit status; fails on a signal or on
 * CHILD_TIMEOUT_S. */
static int run_kiroku(char **argv, const char *const *extra, const char *log)
{
    int st = kr_test_run_env(KR_KIROKU_BIN, argv, extra, "KR_FAULT_", log, CHILD_TIMEOUT_S);
    if (!WIFEXITED(st)) {
        kr_test_print_log(log);
        fail_msg("kiroku %s ended by signal %d", argv[1], WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    }
    return WEXITSTATUS(st);
}

/* `kiroku init`, and the number of records it made. */
static uint64_t init_journal(const struct paths *p)
{
    char *argv[] = {NULL, "init", "--data", (char *)p->dir, NULL};
    int rc = run_kiroku(argv, NULL, p->log);
    if (rc != 0) {
        kr_test_print_log(p->log);
        fail_msg("kiroku init exited %d", rc);
    }
    struct journal *j;
    struct jrn_options o = {.dir = p->dir};
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    uint64_t size = jrn_size(j);
    jrn_close(j);
    assert_true(size >= 1);
    return size;
}

/* Runs the bench on p->dir with the shim and `faults` (NULL-terminated
 * "KR_FAULT_...=..." settings); returns its exit status and its output in
 * *out (to free). */
static int run_bench_faulted(const struct paths *p, const char *const *faults, char **out)
{
    char preload[2 * KR_PATH_MAX + 16], stats[KR_PATH_MAX + 32], mark[KR_PATH_MAX + 32];
    kr_test_preload(preload, sizeof preload, KR_FSFAULT_LIB);
    snprintf(stats, sizeof stats, "KR_FAULT_STATS=%s", p->stats);
    snprintf(mark, sizeof mark, "KR_FAULT_MARK=%s", p->acks);
    const char *env[16];
    size_t n = 0;
    env[n++] = preload;
    env[n++] = stats;
    env[n++] = mark;
    for (size_t i = 0; faults[i]; i++) {
        assert_true(n < 15);
        env[n++] = faults[i];
    }
    env[n] = NULL;
    char events[24];
    snprintf(events, sizeof events, "%u", BENCH_EVENTS);
    char *argv[] = {NULL,       "bench",  "append",        "--data",    (char *)p->dir,
                    "--events", events,   "--producers",   "8",         "--window",
                    "8",        "--acks", (char *)p->acks, "--ceiling", "0",
                    NULL,       NULL};
    if (p->two_flushes)
        argv[15] = "--two-flushes";
    int rc = run_kiroku(argv, env, p->log);
    *out = kr_test_slurp(p->log, NULL);
    fprintf(stderr, "---- bench (exit %d) ----\n%s---- end ----\n", rc, *out);
    return rc;
}

/* One counter from the shim's stats file. */
static uint64_t stat_get(const struct paths *p, const char *key)
{
    char *text = kr_test_slurp(p->stats, NULL);
    size_t kl = strlen(key);
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, key, kl) == 0 && line[kl] == ' ') {
            uint64_t v = strtoull(line + kl + 1, NULL, 10);
            free(text);
            return v;
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    free(text);
    fail_msg("no counter %s in the shim's stats (did the shim load?)", key);
    return 0;
}

/* Parses one complete line "seq hex\n" of len bytes (newline included). */
static void parse_ack(const char *line, size_t len, struct ack *a)
{
    if (!kr_test_parse_ack(line, len, &a->seq, a->commitment))
        fail_msg("malformed acknowledgement line: %.*s", (int)len, line);
}

static void read_acks(const struct paths *p, struct acks *out)
{
    size_t len;
    char *buf = kr_test_slurp(p->acks, &len);
    memset(out, 0, sizeof *out);
    out->v = malloc((len / (2 * KR_HASH_LEN) + 1) * sizeof *out->v);
    assert_non_null(out->v);
    size_t at = 0;
    while (at < len) {
        char *nl = memchr(buf + at, '\n', len - at);
        if (!nl)
            fail_msg("acks file ends in a partial line");
        size_t ll = (size_t)(nl - (buf + at)) + 1;
        if (buf[at] == '#') {
            const char *pre = "# fault ";
            if (ll < strlen(pre) + 2 || strncmp(buf + at, pre, strlen(pre)) != 0)
                fail_msg("unexpected line in acks: %.*s", (int)ll, buf + at);
            assert_true(out->nmarks < MAX_MARKS);
            snprintf(out->marks[out->nmarks].what, sizeof out->marks[0].what, "%.*s",
                     (int)(ll - strlen(pre) - 1), buf + at + strlen(pre));
            out->marks[out->nmarks].at = out->n;
            out->nmarks++;
        } else {
            assert_true(ll <= ACK_LINE_MAX);
            parse_ack(buf + at, ll, &out->v[out->n++]);
        }
        at += ll;
    }
    free(buf);
    fprintf(stderr, "%" PRIu64 " acknowledged", out->n);
    for (size_t i = 0; i < out->nmarks; i++)
        fprintf(stderr, ", mark '%s' after %" PRIu64, out->marks[i].what, out->marks[i].at);
    fprintf(stderr, "\n");
}

/* Where mark `what` is (the number of acknowledgements before it), or -1. */
static int64_t mark_at(const struct acks *a, const char *what)
{
    for (size_t i = 0; i < a->nmarks; i++)
        if (strcmp(a->marks[i].what, what) == 0)
            return (int64_t)a->marks[i].at;
    return -1;
}

/* "kiroku: N appends failed, first: TEXT" from the bench: N, and checks TEXT. */
static uint64_t bench_failures(const char *out, const char *first)
{
    const char *s = strstr(out, "appends failed, first: ");
    if (!s)
        fail_msg("the bench did not report failed appends");
    const char *line = s;
    while (line > out && line[-1] != '\n')
        line--;
    unsigned long long n;
    if (sscanf(line, "kiroku: %llu appends failed", &n) != 1)
        fail_msg("cannot parse the bench's failure line");
    const char *text = s + strlen("appends failed, first: ");
    if (strncmp(text, first, strlen(first)) != 0 || text[strlen(first)] != '\n')
        fail_msg("the bench's first failure is not \"%s\"", first);
    return n;
}

static void append_after(struct journal *j, uint64_t size)
{
    static const uint8_t payload[] = "after the fault";
    struct jrn_event e;
    memset(&e, 0, sizeof e);
    e.tenant = 1;
    e.stream = "fault/after";
    e.stream_len = strlen(e.stream);
    e.type = "test.appended";
    e.type_len = strlen(e.type);
    e.actor = "fault_test";
    e.actor_len = strlen(e.actor);
    e.expected_version = 0;
    e.payload = payload;
    e.payload_len = sizeof payload;
    kr_err err = jrn_append(j, &e, 1);
    if (err)
        fail_msg("append after the reopen: %s", kr_strerror(err));
    assert_int_equal(e.seq, size + 1);
    assert_int_equal(jrn_size(j), size + 1);
}

/* The checks after the bench, without the shim (see the top). */
static void check_journal(const struct paths *p, const struct acks *a, uint64_t base)
{
    char *argv[] = {NULL, "verify", "--data", (char *)p->dir, NULL};
    int rc = run_kiroku(argv, NULL, p->log);
    if (rc != 0) {
        kr_test_print_log(p->log);
        fail_msg("kiroku verify exited %d after the faults", rc);
    }

    struct journal *j;
    struct jrn_options o = {.dir = p->dir};
    kr_err err = jrn_open(&o, &j);
    if (err)
        fail_msg("jrn_open after the faults: %s", kr_strerror(err));
    uint64_t size = jrn_size(j);
    fprintf(stderr, "journal: %" PRIu64 " records (%" PRIu64 " before the bench)\n", size, base);

    uint8_t *seen = calloc(size + 1, 1);
    assert_non_null(seen);
    struct jrn_recbuf rb;
    memset(&rb, 0, sizeof rb);
    for (uint64_t i = 0; i < a->n; i++) {
        uint64_t seq = a->v[i].seq;
        if (seq <= base || seq > size)
            fail_msg("acknowledged seq %" PRIu64 " outside %" PRIu64 "..%" PRIu64, seq, base + 1,
                     size);
        if (seen[seq]++)
            fail_msg("seq %" PRIu64 " acknowledged twice", seq);
        if ((err = jrn_read(j, seq, &rb)))
            fail_msg("acknowledged seq %" PRIu64 " unreadable: %s", seq, kr_strerror(err));
        assert_int_equal(rb.rec.seq, seq);
        if (memcmp(rb.rec.commitment, a->v[i].commitment, KR_HASH_LEN) != 0)
            fail_msg("seq %" PRIu64 " has another commitment than acknowledged", seq);
    }
    jrn_recbuf_fini(&rb);
    free(seen);
    /* Nothing failed was committed: the journal is what it was plus what
     * was acknowledged. */
    if (size != base + a->n)
        fail_msg("%" PRIu64 " records, but %" PRIu64 " before plus %" PRIu64 " acknowledged", size,
                 base, a->n);

    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1, .to = 0};
    struct jrn_cursor *c;
    struct jrn_record rec;
    assert_int_equal(jrn_cursor_new(j, &q, &c), KR_OK);
    uint64_t want = 1;
    while ((err = jrn_cursor_next(c, &rec)) == KR_OK) {
        if (rec.seq != want)
            fail_msg("record seq %" PRIu64 " where %" PRIu64 " was due", rec.seq, want);
        want++;
    }
    if (err != KR_ENOTFOUND)
        fail_msg("cursor stopped at seq %" PRIu64 ": %s", want, kr_strerror(err));
    jrn_cursor_free(c);
    assert_int_equal(want - 1, size);

    append_after(j, size);
    jrn_close(j);

    struct jrn_verify_options vo = {.fast = false};
    struct jrn_verify_report rep;
    assert_int_equal(jrn_verify(p->dir, &vo, &rep), KR_OK);
    if (rep.result != KR_OK)
        fail_msg("verify after the new append: %s at seq %" PRIu64 ": %s", kr_strerror(rep.result),
                 rep.bad_seq, rep.what);
    assert_int_equal(rep.records, size + 1);
}

static void finish(struct paths *p, struct acks *a, char *out)
{
    free(a->v);
    free(out);
    kr_test_rmrf(p->tmp);
}

/* fdatasync fails with EIO from the (SYNC_OK + 1)-th on. */
#define SYNC_OK 20

static void test_sync_eio(void **state)
{
    (void)state;
    struct paths p;
    setup_paths(&p, "sync_eio");
    p.two_flushes = true; /* exact ledger: see the header */
    uint64_t base = init_journal(&p);

    char after[48];
    snprintf(after, sizeof after, "KR_FAULT_SYNC_EIO_AFTER=%d", SYNC_OK);
    const char *faults[] = {after, NULL};
    char *out;
    int rc = run_bench_faulted(&p, faults, &out);
    EXPECT(rc == 3, "bench exited %d, not 3 (appends failed)", rc);
    uint64_t failures = bench_failures(out, kr_strerror(KR_EIO));

    /* No silent retry: the failing sync was the last sync and the last
     * write of data.mdb (observed: LMDB aborts the transaction and the
     * journal runs no other). */
    uint64_t syncs = stat_get(&p, "syncs"), failed = stat_get(&p, "syncs_failed"),
             syncs_after = stat_get(&p, "syncs_after_sync_fail"),
             writes_after = stat_get(&p, "writes_after_sync_fail");
    EXPECT(syncs == SYNC_OK + 1 && failed == 1,
           "%" PRIu64 " syncs of data.mdb, %" PRIu64 " failed; expected %d, the last failing",
           syncs, failed, SYNC_OK + 1);
    EXPECT(syncs_after == 0 && writes_after == 0,
           "after the failed sync, data.mdb was synced %" PRIu64 " and written %" PRIu64
           " more times: the journal retried instead of stopping",
           syncs_after, writes_after);

    struct acks a;
    read_acks(&p, &a);
    EXPECT(a.n > 0 && a.n < BENCH_EVENTS, "%" PRIu64 " of %d events acknowledged", a.n,
           BENCH_EVENTS);
    /* Nothing acknowledged after the failed sync. */
    EXPECT(mark_at(&a, "sync-eio") == (int64_t)a.n,
           "events acknowledged after the failed sync (mark after %" PRId64 " of %" PRIu64 ")",
           mark_at(&a, "sync-eio"), a.n);
    /* The journal stopped: submissions were refused, so not every event was
     * even tried. */
    EXPECT(a.n + failures < BENCH_EVENTS,
           "%" PRIu64 " acknowledged + %" PRIu64 " failed = every event: the journal kept taking "
           "appends after the I/O error",
           a.n, failures);

    check_journal(&p, &a, base);
    finish(&p, &a, out);
}

/* Page writes fail with ENOSPC after ENOSPC_OK successful ones. */
#define ENOSPC_OK    200
#define ENOSPC_COUNT 4

static void test_enospc_transient(void **state)
{
    (void)state;
    struct paths p;
    setup_paths(&p, "enospc_transient");
    p.two_flushes = true; /* LMDB's commit, meta page on its O_DSYNC descriptor */
    uint64_t base = init_journal(&p);

    char after[48], count[48];
    snprintf(after, sizeof after, "KR_FAULT_ENOSPC_AFTER=%d", ENOSPC_OK);
    snprintf(count, sizeof count, "KR_FAULT_ENOSPC_COUNT=%d", ENOSPC_COUNT);
    const char *faults[] = {"KR_FAULT_ENOSPC_WHERE=pages", after, count, NULL};
    char *out;
    int rc = run_bench_faulted(&p, faults, &out);
    EXPECT(rc == 3, "bench exited %d, not 3 (appends failed)", rc);
    uint64_t failures = bench_failures(out, kr_strerror(KR_EFULL));

    struct acks a;
    read_acks(&p, &a);
    uint64_t wfailed = stat_get(&p, "writes_failed");
    EXPECT(wfailed == ENOSPC_COUNT, "%" PRIu64 " writes failed, %d injected", wfailed,
           ENOSPC_COUNT);
    /* Each failed write failed one batch of at least one append. */
    EXPECT(failures >= ENOSPC_COUNT, "%" PRIu64 " appends failed for %d failed writes", failures,
           ENOSPC_COUNT);
    /* The journal went on: every event was tried, none refused. */
    EXPECT(a.n + failures == BENCH_EVENTS,
           "%" PRIu64 " acknowledged + %" PRIu64 " failed of %d: the journal stopped taking "
           "appends after KR_EFULL",
           a.n, failures, BENCH_EVENTS);
    /* Acknowledged before the disk filled, none while it was full, and
     * again after. */
    int64_t begin = mark_at(&a, "enospc-begin"), end = mark_at(&a, "enospc-end");
    EXPECT(begin > 0, "nothing acknowledged before the disk filled (mark at %" PRId64 ")", begin);
    EXPECT(end == begin,
           "writes did not resume, or appends were acknowledged while the disk was full "
           "(marks at %" PRId64 " and %" PRId64 ")",
           begin, end);
    EXPECT((uint64_t)end < a.n, "nothing acknowledged after the disk had room again");

    check_journal(&p, &a, base);
    finish(&p, &a, out);
}

static void test_enospc_permanent(void **state)
{
    (void)state;
    struct paths p;
    setup_paths(&p, "enospc_permanent");
    p.two_flushes = true; /* LMDB's commit, meta page on its O_DSYNC descriptor */
    uint64_t base = init_journal(&p);

    char after[48];
    snprintf(after, sizeof after, "KR_FAULT_ENOSPC_AFTER=%d", ENOSPC_OK);
    const char *faults[] = {"KR_FAULT_ENOSPC_WHERE=pages", after, NULL};
    char *out;
    int rc = run_bench_faulted(&p, faults, &out);
    EXPECT(rc == 3, "bench exited %d, not 3 (appends failed)", rc);
    uint64_t failures = bench_failures(out, kr_strerror(KR_EFULL));

    struct acks a;
    read_acks(&p, &a);
    EXPECT(a.n > 0 && failures > 0, "%" PRIu64 " acknowledged, %" PRIu64 " failed", a.n, failures);
    /* Every event was tried and failed with KR_EFULL once the disk was full;
     * none was refused as by a stopped journal. */
    EXPECT(a.n + failures == BENCH_EVENTS,
           "%" PRIu64 " acknowledged + %" PRIu64 " failed of %d: the journal stopped taking "
           "appends after KR_EFULL",
           a.n, failures, BENCH_EVENTS);
    EXPECT(mark_at(&a, "enospc-begin") == (int64_t)a.n,
           "events acknowledged after the disk filled (mark after %" PRId64 " of %" PRIu64 ")",
           mark_at(&a, "enospc-begin"), a.n);
    EXPECT(mark_at(&a, "enospc-end") == -1 && stat_get(&p, "writes_after_enospc") == 0,
           "a write of data.mdb succeeded on the full disk");
    EXPECT(stat_get(&p, "writes_failed") > 0, "no write failed");

    check_journal(&p, &a, base);
    finish(&p, &a, out);
}

/* A full disk on LMDB's meta page write (copy-on-write file systems): LMDB
 * cannot go on, so the journal must stop as after an I/O error (appends then
 * fail with KR_EIO), lose nothing acknowledged, and verify afterwards. */
static void test_enospc_meta(void **state)
{
    (void)state;
    struct paths p;
    setup_paths(&p, "enospc_meta");
    p.two_flushes = true; /* LMDB's commit, meta page on its O_DSYNC descriptor */
    uint64_t base = init_journal(&p);

    const char *faults[] = {"KR_FAULT_ENOSPC_WHERE=meta", "KR_FAULT_ENOSPC_AFTER=20",
                            "KR_FAULT_ENOSPC_COUNT=1", NULL};
    char *out;
    int rc = run_bench_faulted(&p, faults, &out);
    EXPECT(rc == 3, "bench exited %d, not 3 (appends failed)", rc);
    /* The batch that hit it already reports the journal stopped. */
    uint64_t io = bench_failures(out, kr_strerror(KR_EIO));
    struct acks a;
    read_acks(&p, &a);
    EXPECT(a.n > 0 && a.n < BENCH_EVENTS, "%" PRIu64 " of %d events acknowledged", a.n,
           BENCH_EVENTS);
    EXPECT(io > 0 && a.n + io < BENCH_EVENTS,
           "%" PRIu64 " acknowledged + %" PRIu64 " failed: the journal did not stop", a.n, io);
    EXPECT(stat_get(&p, "writes_after_enospc") == 0,
           "data.mdb was written %" PRIu64 " more times after LMDB failed",
           stat_get(&p, "writes_after_enospc"));

    check_journal(&p, &a, base);
    finish(&p, &a, out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_eio),
        cmocka_unit_test(test_enospc_transient),
        cmocka_unit_test(test_enospc_permanent),
        cmocka_unit_test(test_enospc_meta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
