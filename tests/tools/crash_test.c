/*
 * crash_test.c: kill -9 of a writer during a stream of acknowledged appends,
 * in a loop (TESTING.md "Crash and storage faults").
 *
 * Each round starts `kiroku bench append` on the same data directory, lets it
 * run a random 20..700 ms, kills it with SIGKILL and then checks the journal as
 * the killed writer left it:
 *   - it verifies (jrn_verify), and holds as many records as its newest
 *     checkpoint says, never fewer than after the round before;
 *   - it opens read-write (no stale lock or reader slot from the dead writer);
 *   - every event the bench acknowledged ("seq commitment" lines written
 *     after the event was durable) is at its seq with its commitment, in this
 *     round and in every round before;
 *   - seqs run 1..jrn_size without a gap.
 *
 * Design notes
 * - Verification runs before jrn_open, not while the journal is open: LMDB
 *   forbids one process opening the same environment twice (closing the
 *   second one drops the first one's locks), and the state a crash leaves is
 *   the one worth verifying.
 * - Full verification (Ed25519 per record) costs ~35 us a record per core and
 *   the journal grows every round, so verifying fully every round is
 *   quadratic: ~100 s for 20 rounds on two cores. Rounds verify in fast mode
 *   (chain links, commitments, Merkle tree, every checkpoint), every
 *   FULL_EVERY-th round fully, and the journal left at the end fully.
 * - Round 1 starts its random delay only after the first acknowledgement, so
 *   the kill never lands inside jrn_create (a separate case: creation is
 *   not crash-atomic yet). Later rounds time from the spawn, so kills during
 *   open and recovery happen too.
 * - The delays come from a seeded PRNG; the seed is printed and can be
 *   replayed with KR_CRASH_SEED=<seed>. Nothing here asserts on timing.
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
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "journal.h"
#include "test_util.h"
#include "verify.h"

/* Bounds of the loop: at least MIN_ROUNDS are intended; stop after
 * MAX_ROUNDS or once MAX_SECONDS have passed, whichever comes first. */
#define MIN_ROUNDS  20
#define MAX_ROUNDS  25
#define MAX_SECONDS 90.0
/* How long the bench runs before the kill, in ms. */
#define RUN_MIN_MS 20
#define RUN_MAX_MS 700
/* Round 1 waits at most this long for the journal's first acknowledgement. */
#define FIRST_ACK_WAIT_MS 10000u
/* Every FULL_EVERY-th round verifies signatures and indexes too. */
#define FULL_EVERY 4
/* One acknowledgement line: decimal seq, space, 64 hex digits, newline. */
#define ACK_LINE_MAX (20 + 1 + 2 * KR_HASH_LEN + 1)

static char g_tmp[KR_PATH_MAX], g_dir[KR_PATH_MAX + 16], g_acks[KR_PATH_MAX + 16],
    g_log[KR_PATH_MAX + 16];

/* What was acknowledged at each seq, over all rounds: round 0 = nothing. */
struct acked {
    uint8_t commitment[KR_HASH_LEN];
    unsigned round;
};
static struct acked *g_acked;
static uint64_t g_acked_cap;

static uint64_t g_rng;

/* splitmix64: small, seedable, good enough for delays. */
static uint64_t rng_next(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void print_log(void)
{
    FILE *f = fopen(g_log, "r");
    char line[512];
    if (!f)
        return;
    fprintf(stderr, "---- bench output ----\n");
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

/* Starts the bench with its output in g_log. The child gets SIGKILL if this
 * process dies first, so a failed or killed test leaves no writer running. */
static pid_t spawn_bench(void)
{
    char *argv[] = {(char *)KR_KIROKU_BIN,
                    "bench",
                    "append",
                    "--data",
                    g_dir,
                    "--events",
                    "100000000",
                    "--producers",
                    "16",
                    "--window",
                    "8",
                    "--acks",
                    g_acks,
                    "--ceiling",
                    "0",
                    NULL};
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(126);
        int in = open("/dev/null", O_RDONLY), out = open(g_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
            _exit(126);
        execv(KR_KIROKU_BIN, argv);
        _exit(127);
    }
    return pid;
}

/* Fails the test if the bench has already ended on its own. */
static void check_still_running(pid_t pid)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    assert_int_not_equal(r, -1);
    if (r == pid) {
        print_log();
        fail_msg("bench ended on its own before the kill (status 0x%x)", (unsigned)st);
    }
}

/* For kr_test_wait_for: whether the bench (*(pid_t *)arg) acknowledged an
 * append; fails the test if it ended meanwhile. */
static bool first_ack(void *arg)
{
    check_still_running(*(const pid_t *)arg);
    return file_size(g_acks) > 0;
}

static void kill_bench(pid_t pid)
{
    int st;
    assert_int_equal(kill(pid, SIGKILL), 0);
    while (waitpid(pid, &st, 0) < 0)
        assert_int_equal(errno, EINTR);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
        print_log();
        fail_msg("bench was not killed by SIGKILL (status 0x%x)", (unsigned)st);
    }
}

/* Parses one complete line "seq hex\n" of len bytes (newline included). */
static void parse_ack(const char *line, size_t len, uint64_t *seq, uint8_t c[KR_HASH_LEN])
{
    if (!kr_test_parse_ack(line, len, seq, c))
        fail_msg("malformed acknowledgement line: %.*s", (int)len, line);
}

static void acked_reserve(uint64_t seq)
{
    if (seq < g_acked_cap)
        return;
    uint64_t cap = g_acked_cap ? g_acked_cap : 65536;
    while (cap <= seq)
        cap *= 2;
    struct acked *n = realloc(g_acked, cap * sizeof *n);
    assert_non_null(n);
    memset(n + g_acked_cap, 0, (cap - g_acked_cap) * sizeof *n);
    g_acked = n;
    g_acked_cap = cap;
}

/* Reads this round's acknowledgements (a final partial line is ignored: the
 * kill may cut a write short), records them in g_acked and checks each one
 * with jrn_read. Returns the count; *max_seq gets the highest seq. */
static uint64_t check_round_acks(struct journal *j, unsigned round, uint64_t size,
                                 uint64_t *max_seq)
{
    off_t fsz = file_size(g_acks);
    assert_true(fsz >= 0);
    char *buf = malloc((size_t)fsz + 1);
    assert_non_null(buf);
    int fd = open(g_acks, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    size_t got = 0;
    while (got < (size_t)fsz) {
        ssize_t n = read(fd, buf + got, (size_t)fsz - got);
        assert_true(n >= 0);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);

    struct jrn_recbuf rb;
    memset(&rb, 0, sizeof rb);
    uint64_t count = 0;
    *max_seq = 0;
    size_t at = 0;
    for (;;) {
        char *nl = memchr(buf + at, '\n', got - at);
        if (!nl)
            break; /* nothing or a partial line left */
        size_t len = (size_t)(nl - (buf + at)) + 1;
        assert_true(len <= ACK_LINE_MAX);
        uint64_t seq;
        uint8_t c[KR_HASH_LEN];
        parse_ack(buf + at, len, &seq, c);
        at += len;

        if (seq == 0 || seq > size)
            fail_msg("round %u: acknowledged seq %" PRIu64 " but the journal has %" PRIu64
                     " records",
                     round, seq, size);
        acked_reserve(seq);
        if (g_acked[seq].round != 0)
            fail_msg("round %u: seq %" PRIu64 " acknowledged again (first in round %u)", round, seq,
                     g_acked[seq].round);
        memcpy(g_acked[seq].commitment, c, KR_HASH_LEN);
        g_acked[seq].round = round;

        kr_err err = jrn_read(j, seq, &rb);
        if (err)
            fail_msg("round %u: acknowledged seq %" PRIu64 " unreadable: %s", round, seq,
                     kr_strerror(err));
        assert_int_equal(rb.rec.seq, seq);
        if (memcmp(rb.rec.commitment, c, KR_HASH_LEN) != 0)
            fail_msg("round %u: seq %" PRIu64 " has another commitment than acknowledged", round,
                     seq);
        if (seq > *max_seq)
            *max_seq = seq;
        count++;
    }
    jrn_recbuf_fini(&rb);
    free(buf);
    return count;
}

/* Walks every record: seqs 1..size without a gap, and every event
 * acknowledged in any round so far still has its commitment. */
static void check_all_records(struct journal *j, unsigned round, uint64_t size)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1, .to = 0};
    struct jrn_cursor *c;
    struct jrn_record rec;
    assert_int_equal(jrn_cursor_new(j, &q, &c), KR_OK);
    uint64_t want = 1;
    kr_err err;
    while ((err = jrn_cursor_next(c, &rec)) == KR_OK) {
        if (rec.seq != want)
            fail_msg("round %u: record seq %" PRIu64 " where %" PRIu64 " was due", round, rec.seq,
                     want);
        if (rec.seq < g_acked_cap && g_acked[rec.seq].round != 0 &&
            memcmp(rec.commitment, g_acked[rec.seq].commitment, KR_HASH_LEN) != 0)
            fail_msg("round %u: seq %" PRIu64 " (acknowledged in round %u) changed", round, rec.seq,
                     g_acked[rec.seq].round);
        want++;
    }
    if (err != KR_ENOTFOUND)
        fail_msg("round %u: cursor stopped at seq %" PRIu64 ": %s", round, want, kr_strerror(err));
    jrn_cursor_free(c);
    if (want - 1 != size)
        fail_msg("round %u: cursor read %" PRIu64 " records, jrn_size says %" PRIu64, round,
                 want - 1, size);
}

static void verify_dir(unsigned round, bool fast, uint64_t *records)
{
    struct jrn_verify_options vo = {.fast = fast};
    struct jrn_verify_report rep;
    double t0 = now_s();
    kr_err err = jrn_verify(g_dir, &vo, &rep);
    if (err)
        fail_msg("round %u: verify could not run: %s", round, kr_strerror(err));
    if (rep.result != KR_OK)
        fail_msg("round %u: %s verify: %s at seq %" PRIu64 ": %s", round, fast ? "fast" : "full",
                 kr_strerror(rep.result), rep.bad_seq, rep.what);
    fprintf(stderr, "  %s verify: %" PRIu64 " records, %" PRIu64 " checkpoints, %.2f s\n",
            fast ? "fast" : "full", rep.records, rep.checkpoints, now_s() - t0);
    *records = rep.records;
}

static void test_kill9_loop(void **state)
{
    (void)state;
    const char *env = getenv("KR_CRASH_SEED");
    uint64_t seed =
        env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    g_rng = seed;
    fprintf(stderr, "crash_test: seed %" PRIu64 " (KR_CRASH_SEED=%" PRIu64 " repeats it)\n", seed,
            seed);

    kr_test_tmpdir(g_tmp, sizeof g_tmp);
    snprintf(g_dir, sizeof g_dir, "%s/data", g_tmp);
    snprintf(g_acks, sizeof g_acks, "%s/acks", g_tmp);
    snprintf(g_log, sizeof g_log, "%s/bench.log", g_tmp);
    fprintf(stderr, "crash_test: journal in %s (kept if the test fails)\n", g_dir);

    double t_start = now_s();
    uint64_t total_acks = 0, prev_size = 0;
    unsigned round = 0;
    while (round < MAX_ROUNDS && now_s() - t_start < MAX_SECONDS) {
        round++;
        /* A fresh acks file per round, so the lines belong to this round. */
        int fd = open(g_acks, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);

        unsigned run_ms = RUN_MIN_MS + (unsigned)(rng_next() % (RUN_MAX_MS - RUN_MIN_MS + 1));
        pid_t pid = spawn_bench();
        if (round == 1 &&
            !kr_test_wait_for(first_ack, &pid, FIRST_ACK_WAIT_MS, "the first acknowledgement")) {
            kill_bench(pid);
            print_log();
            fail_msg("no acknowledgement within %u ms", FIRST_ACK_WAIT_MS);
        }
        sleep_ms(run_ms);
        check_still_running(pid);
        kill_bench(pid);

        fprintf(stderr, "round %u: killed after %u ms\n", round, run_ms);
        uint64_t records;
        verify_dir(round, round % FULL_EVERY != 0, &records);

        struct journal *j = NULL;
        struct jrn_options o = {.dir = g_dir};
        kr_err err = jrn_open(&o, &j);
        if (err)
            fail_msg("round %u: jrn_open after kill -9: %s", round, kr_strerror(err));
        uint64_t size = jrn_size(j);
        if (size != records)
            fail_msg("round %u: verify saw %" PRIu64 " records, jrn_size is %" PRIu64, round,
                     records, size);
        if (size < prev_size)
            fail_msg("round %u: the journal shrank from %" PRIu64 " to %" PRIu64 " records", round,
                     prev_size, size);
        uint64_t max_seq;
        uint64_t n = check_round_acks(j, round, size, &max_seq);
        check_all_records(j, round, size);
        jrn_close(j);
        fprintf(stderr, "  %" PRIu64 " acknowledged (up to seq %" PRIu64 "), %" PRIu64 " records\n",
                n, max_seq, size);
        total_acks += n;
        prev_size = size;
    }

    /* Everything the loop left, signatures and indexes included. */
    uint64_t records;
    verify_dir(round, false, &records);
    assert_int_equal(records, prev_size);
    fprintf(stderr, "crash_test: %u rounds in %.1f s, %" PRIu64 " events acknowledged\n", round,
            now_s() - t_start, total_acks);
    if (round < MIN_ROUNDS)
        fprintf(stderr, "crash_test: note: only %u of %u rounds fit in %.0f s\n", round, MIN_ROUNDS,
                MAX_SECONDS);
    /* A run that acknowledged nothing checked nothing. */
    assert_true(total_acks > 0);

    free(g_acked);
    g_acked = NULL;
    g_acked_cap = 0;
    kr_test_rmrf(g_tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
