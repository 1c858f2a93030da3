/*
 * powercut_test.c: power cuts under the journal, simulated with an LD_PRELOAD
 * shim (tests/faults/powercut.c) in `kiroku bench append` (TESTING.md "Crash
 * and storage faults").
 *
 * A first run of the bench under the shim counts its storage events (writes
 * and flushes of the data directory's files). Then, for each cut point k
 * spread over those events, a fresh journal (`kiroku init`) gets the same
 * bench with the power cut at event k: the shim keeps every write made
 * durable by a flush and a subset of the later ones (none, all, some whole
 * writes, or torn 512-byte sectors, cycling, from the seed k), and kills the
 * process. Then, without the shim:
 *   - the journal opens (a refusal is a failure too: with LMDB's flushes in
 *     place no cut may corrupt it);
 *   - `kiroku verify` passes;
 *   - every acknowledged event ("seq commitment" lines of --acks, written
 *     by the writer thread after the flush) is at its seq with its
 *     commitment, and seqs run 1..jrn_size without a gap.
 *
 * planted_lost_flush runs the same cuts with KR_PC_LOST_FLUSHES=1 (flushes
 * report success but make nothing durable, as a disk that drops cache
 * flushes: every acknowledgement is then an early one) and requires that
 * some cut point fails the checks, and that one finds an acknowledged event
 * missing: the test would catch an acknowledgement issued before the flush.
 *
 * planted_early_ack runs cuts with KR_PC_SKIP_ENV_SYNC=1 (mdb_env_sync does
 * nothing: with one flush per commit, a batch no later commit covers is then
 * acknowledged before its meta page is durable) and requires that some cut
 * finds an acknowledged event missing.
 *
 * key_rotation_cuts cuts `kiroku keys rotate` (keystore files written, synced
 * and renamed into place, and the key record appended) at every one of its
 * storage events in every mode: the journal then opens, takes an append
 * signed with the key it records as current, a second rotation succeeds and
 * `kiroku verify` passes.
 *
 * The number of cut points is CUTS_DEFAULT (about a minute of CI time on two
 * shared cores); KR_POWERCUT_CUTS=N runs N (docs/operations.md, "Power cut
 * tests"). Every child is bounded (CHILD_TIMEOUT_S); nothing asserts on
 * timing.
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

#define BENCH_EVENTS    300
#define CHILD_TIMEOUT_S 300u
/* One acknowledgement line: decimal seq, space, 64 hex digits, newline. */
#define ACK_LINE_MAX (20 + 1 + 2 * KR_HASH_LEN + 1)

/* Fails the test with a message unless cond holds. */
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg(__VA_ARGS__);                                                                 \
    } while (0)

struct paths {
    char tmp[KR_PATH_MAX], dir[KR_PATH_MAX + 16], acks[KR_PATH_MAX + 16], count[KR_PATH_MAX + 16],
        log[KR_PATH_MAX + 16];
};

struct ack {
    uint64_t seq;
    uint8_t commitment[KR_HASH_LEN];
};

/* The acknowledgements in the acks file, in order. */
struct acks {
    struct ack *v;
    uint64_t n;
};

static void setup_paths(struct paths *p, const char *name)
{
    kr_test_tmpdir(p->tmp, sizeof p->tmp);
    snprintf(p->dir, sizeof p->dir, "%s/data", p->tmp);
    snprintf(p->acks, sizeof p->acks, "%s/acks", p->tmp);
    snprintf(p->count, sizeof p->count, "%s/count", p->tmp);
    snprintf(p->log, sizeof p->log, "%s/log", p->tmp);
    fprintf(stderr, "%s: in %s (kept if the test fails)\n", name, p->tmp);
}

/* Runs kiroku with argv (argv[0] ignored) and the environment of this process
 * minus any LD_PRELOAD and KR_PC_* plus `extra` (NULL-terminated, may be
 * NULL), output to `log`. Returns the wait status. */
static int run_kiroku(char **argv, const char *const *extra, const char *log)
{
    return kr_test_run_env(KR_KIROKU_BIN, argv, extra, "KR_PC_", log, CHILD_TIMEOUT_S);
}

/* `kiroku init`, and the number of records it made. */
static uint64_t init_journal(const struct paths *p)
{
    char *argv[] = {NULL, "init", "--data", (char *)p->dir, NULL};
    int rc = run_kiroku(argv, NULL, p->log);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
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

#define CUTS_DEFAULT 256u
#define CUTS_MAX     100000u

static const char *const modes[] = {"none", "all", "some", "torn"};

/* Runs the bench on p->dir under the shim with `extra` settings; returns the
 * wait status. */
static int run_bench_shim(const struct paths *p, const char *const *extra)
{
    char preload[2 * KR_PATH_MAX + 16], dir[KR_PATH_MAX + 32];
    kr_test_preload(preload, sizeof preload, KR_POWERCUT_LIB);
    snprintf(dir, sizeof dir, "KR_PC_DIR=%s", p->dir);
    const char *env[16];
    size_t n = 0;
    env[n++] = preload;
    env[n++] = dir;
    for (size_t i = 0; extra[i]; i++) {
        assert_true(n < 15);
        env[n++] = extra[i];
    }
    env[n] = NULL;
    char events[24];
    snprintf(events, sizeof events, "%u", BENCH_EVENTS);
    char *argv[] = {
        NULL, "bench",    "append", "--data", (char *)p->dir,  "--events",  events, "--producers",
        "4",  "--window", "2",      "--acks", (char *)p->acks, "--ceiling", "0",    NULL};
    return run_kiroku(argv, env, p->log);
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
            break; /* the cut can fall inside the last line's write */
        size_t ll = (size_t)(nl - (buf + at)) + 1;
        assert_true(ll <= ACK_LINE_MAX);
        if (!kr_test_parse_ack(buf + at, ll, &out->v[out->n].seq, out->v[out->n].commitment))
            fail_msg("malformed acknowledgement line: %.*s", (int)ll, buf + at);
        out->n++;
        at += ll;
    }
    free(buf);
}

/* The checks after a cut (see the top); false with why[] on a failure. */
static bool check_in_process(const struct paths *p, const struct acks *a, char *why, size_t cap)
{
    struct journal *j;
    struct jrn_options o = {.dir = p->dir};
    kr_err err = jrn_open(&o, &j);
    if (err) {
        snprintf(why, cap, "the journal does not open: %s", kr_strerror(err));
        return false;
    }
    uint64_t size = jrn_size(j);
    bool ok = true;
    struct jrn_recbuf rb;
    memset(&rb, 0, sizeof rb);
    for (uint64_t i = 0; ok && i < a->n; i++) {
        uint64_t seq = a->v[i].seq;
        if (seq > size) {
            snprintf(why, cap, "acknowledged seq %" PRIu64 " lost (journal has %" PRIu64 ")", seq,
                     size);
            ok = false;
        } else if ((err = jrn_read(j, seq, &rb))) {
            snprintf(why, cap, "acknowledged seq %" PRIu64 " unreadable: %s", seq,
                     kr_strerror(err));
            ok = false;
        } else if (rb.rec.seq != seq ||
                   memcmp(rb.rec.commitment, a->v[i].commitment, KR_HASH_LEN) != 0) {
            snprintf(why, cap, "seq %" PRIu64 " is not the record acknowledged", seq);
            ok = false;
        }
    }
    jrn_recbuf_fini(&rb);
    if (ok) {
        struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1, .to = 0};
        struct jrn_cursor *c;
        struct jrn_record rec;
        uint64_t want = 1;
        if ((err = jrn_cursor_new(j, &q, &c)) == KR_OK) {
            while ((err = jrn_cursor_next(c, &rec)) == KR_OK && rec.seq == want)
                want++;
            jrn_cursor_free(c);
        }
        if (err != KR_ENOTFOUND || want - 1 != size) {
            snprintf(why, cap, "records do not run 1..%" PRIu64 " (stopped at %" PRIu64 ": %s)",
                     size, want, kr_strerror(err));
            ok = false;
        }
    }
    jrn_close(j);
    if (!ok)
        return false;
    char *argv[] = {NULL, "verify", "--data", (char *)p->dir, NULL};
    int rc = run_kiroku(argv, NULL, p->log);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        char *text = kr_test_slurp(p->log, NULL);
        snprintf(why, cap, "kiroku verify failed: %s", text);
        free(text);
        return false;
    }
    return true;
}

/* check_in_process in a child: LMDB trusts its file, so a journal a planted
 * bug broke may crash the reader; that is reported as a failed cut (never
 * as a crash of the test). */
static bool check_after_cut(const struct paths *p, const struct acks *a, char *why, size_t cap)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        char text[512] = "";
        bool ok = check_in_process(p, a, text, sizeof text);
        size_t n = strlen(text);
        _exit(write(fds[1], text, n) == (ssize_t)n && ok ? 0 : 1);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < cap && (r = read(fds[0], why + got, cap - 1 - got)) > 0)
        got += (size_t)r;
    why[got] = 0;
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        snprintf(why, cap, "the checks crashed on the journal (signal %d)", WTERMSIG(status));
        return false;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* How many events the bench makes under the shim, uncut. */
static uint64_t count_events(void)
{
    struct paths p;
    setup_paths(&p, "powercut count");
    init_journal(&p);
    char count[KR_PATH_MAX + 32];
    snprintf(count, sizeof count, "KR_PC_COUNT=%s", p.count);
    const char *extra[] = {count, NULL};
    int rc = run_bench_shim(&p, extra);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        kr_test_print_log(p.log);
        fail_msg("the uncut bench failed (status %d)", rc);
    }
    char *text = kr_test_slurp(p.count, NULL);
    unsigned long long n = 0, renames = 0;
    if (sscanf(text, "events %llu\nrenames %llu", &n, &renames) != 2 || n < 10)
        fail_msg("the shim counted no events: %s", text);
    free(text);
    kr_test_rmrf(p.tmp);
    fprintf(stderr, "the bench makes %llu storage events, %llu of them renames\n", n, renames);
    return (uint64_t)n;
}

static unsigned cuts_wanted(void)
{
    const char *s = getenv("KR_POWERCUT_CUTS");
    if (!s || !*s)
        return CUTS_DEFAULT;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v == 0 || v > CUTS_MAX)
        fail_msg("KR_POWERCUT_CUTS=%s: want 1..%u", s, CUTS_MAX);
    return (unsigned)v;
}

/* Cuts at `cuts` points spread over `events`, with the shim's setting
 * `plant` (a planted bug, or NULL), in mode mode_only (NULL: the modes in
 * turn); returns how many failed the checks (each
 * printed). */
static unsigned run_cuts(uint64_t events, unsigned cuts, const char *plant, const char *mode_only,
                         unsigned *lost)
{
    unsigned failed = 0;
    *lost = 0;
    for (unsigned i = 0; i < cuts; i++) {
        /* Spread over 2..events, with an offset so that runs of different
         * lengths do not all hit the same kind of event. */
        uint64_t k = 2 + ((uint64_t)i * (events - 2) + (uint64_t)i / 3) / cuts;
        const char *mode = mode_only ? mode_only : modes[i % 4];
        struct paths p;
        setup_paths(&p, "powercut");
        init_journal(&p);
        char at[48], seed[48], m[32];
        snprintf(at, sizeof at, "KR_PC_CUT_AT=%" PRIu64, k);
        snprintf(seed, sizeof seed, "KR_PC_SEED=%" PRIu64, k);
        snprintf(m, sizeof m, "KR_PC_MODE=%s", mode);
        const char *extra[] = {at, seed, m, plant, NULL};
        int rc = run_bench_shim(&p, extra);
        /* The number of events varies with the batching: a run that ends
         * before event k is checked all the same. */
        bool cut = WIFSIGNALED(rc) && WTERMSIG(rc) == SIGKILL;
        if (!cut && (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0)) {
            kr_test_print_log(p.log);
            fail_msg("cut at event %" PRIu64 ": the bench failed (status %d)", k, rc);
        }
        struct acks a;
        read_acks(&p, &a);
        char why[512];
        bool ok = check_after_cut(&p, &a, why, sizeof why);
        fprintf(
            stderr,
            "cut at event %" PRIu64 " (%s, seed %" PRIu64 ")%s: %" PRIu64 " acknowledged, %s%s\n",
            k, mode, k, cut ? "" : " (ran to the end)", a.n, ok ? "ok" : "FAILED: ", ok ? "" : why);
        if (!ok)
            failed++;
        if (!ok && strncmp(why, "acknowledged seq", 16) == 0)
            (*lost)++;
        else
            kr_test_rmrf(p.tmp);
        free(a.v);
    }
    return failed;
}

/* Runs kiroku with argv under the shim, cutting under pcdir, with `extra`
 * settings; returns the wait status. */
static int run_shim_in(const char *pcdir, const struct paths *p, char **argv,
                       const char *const *extra)
{
    char preload[2 * KR_PATH_MAX + 16], dir[KR_PATH_MAX + 32];
    kr_test_preload(preload, sizeof preload, KR_POWERCUT_LIB);
    snprintf(dir, sizeof dir, "KR_PC_DIR=%s", pcdir);
    const char *env[8] = {preload, dir};
    size_t n = 2;
    for (size_t i = 0; extra[i]; i++) {
        assert_true(n < 7);
        env[n++] = extra[i];
    }
    env[n] = NULL;
    return run_kiroku(argv, env, p->log);
}

/* run_shim_in over the data directory alone. */
static int run_shim(const struct paths *p, char **argv, const char *const *extra)
{
    return run_shim_in(p->dir, p, argv, extra);
}

/* Appends one event with the journal's current key; KR_OK or the error. */
static kr_err append_one(struct journal *j)
{
    static const uint8_t payload[] = "after the power cut";
    struct jrn_event e;
    memset(&e, 0, sizeof e);
    e.tenant = 1;
    e.stream = "powercut/after";
    e.stream_len = strlen(e.stream);
    e.type = "test.appended";
    e.type_len = strlen(e.type);
    e.actor = "powercut_test";
    e.actor_len = strlen(e.actor);
    e.payload = payload;
    e.payload_len = sizeof payload;
    return jrn_append(j, &e, 1);
}

/* `kiroku keys rotate` cut at each of its storage events in each mode: the
 * journal opens and takes an append signed with whichever key it records as
 * current, verifies, and a second rotation succeeds and verifies too (a key
 * file written but never recorded is no obstacle). */
static void test_key_rotation_cuts(void **state)
{
    (void)state;
    struct paths p;
    setup_paths(&p, "powercut keys rotate count");
    init_journal(&p);
    char count[KR_PATH_MAX + 32];
    snprintf(count, sizeof count, "KR_PC_COUNT=%s", p.count);
    char *rotate[] = {NULL, "keys", "rotate", "--data", (char *)p.dir, NULL};
    const char *cextra[] = {count, NULL};
    int rc = run_shim(&p, rotate, cextra);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        kr_test_print_log(p.log);
        fail_msg("the uncut rotation failed (status %d)", rc);
    }
    char *text = kr_test_slurp(p.count, NULL);
    unsigned long long events = 0, renames = 0;
    if (sscanf(text, "events %llu\nrenames %llu", &events, &renames) != 2 || events < 2)
        fail_msg("the shim counted no events: %s", text);
    free(text);
    kr_test_rmrf(p.tmp);
    fprintf(stderr, "keys rotate makes %llu storage events, %llu of them renames\n", events,
            renames);

    unsigned failed = 0;
    for (uint64_t k = 1; k <= events; k++) {
        for (size_t m = 0; m < 4; m++) {
            setup_paths(&p, "powercut keys rotate");
            init_journal(&p);
            char at[48], seed[48], mode[32];
            snprintf(at, sizeof at, "KR_PC_CUT_AT=%" PRIu64, k);
            snprintf(seed, sizeof seed, "KR_PC_SEED=%" PRIu64, k);
            snprintf(mode, sizeof mode, "KR_PC_MODE=%s", modes[m]);
            const char *extra[] = {at, seed, mode, NULL};
            char *argv[] = {NULL, "keys", "rotate", "--data", (char *)p.dir, NULL};
            rc = run_shim(&p, argv, extra);
            if (!WIFSIGNALED(rc) || WTERMSIG(rc) != SIGKILL) {
                kr_test_print_log(p.log);
                fail_msg("rotation cut at event %" PRIu64 ": not cut (status %d)", k, rc);
            }
            char why[512] = "";
            struct journal *j;
            struct jrn_options o = {.dir = p.dir};
            kr_err err = jrn_open(&o, &j);
            if (err) {
                snprintf(why, sizeof why, "the journal does not open: %s", kr_strerror(err));
            } else {
                if ((err = append_one(j)))
                    snprintf(why, sizeof why, "append after the cut: %s", kr_strerror(err));
                jrn_close(j);
            }
            char *again[] = {NULL, "keys", "rotate", "--data", (char *)p.dir, NULL};
            char *verify[] = {NULL, "verify", "--data", (char *)p.dir, NULL};
            if (!*why && (rc = run_kiroku(again, NULL, p.log)) != 0)
                snprintf(why, sizeof why, "a second rotation failed (status %d)", rc);
            if (!*why && (rc = run_kiroku(verify, NULL, p.log)) != 0)
                snprintf(why, sizeof why, "kiroku verify failed (status %d)", rc);
            fprintf(stderr, "rotation cut at event %" PRIu64 " (%s, seed %" PRIu64 "): %s%s\n", k,
                    modes[m], k, *why ? "FAILED: " : "ok", why);
            if (*why) {
                kr_test_print_log(p.log);
                failed++;
            } else {
                kr_test_rmrf(p.tmp);
            }
        }
    }
    EXPECT(failed == 0, "%u rotation cut points broke the journal or its keys", failed);
}

static void test_cuts(void **state)
{
    (void)state;
    uint64_t events = count_events();
    unsigned lost;
    unsigned failed = run_cuts(events, cuts_wanted(), NULL, NULL, &lost);
    EXPECT(failed == 0, "%u cut points lost acknowledged events or broke the journal", failed);
}

static void test_planted_lost_flush(void **state)
{
    (void)state;
    uint64_t events = count_events();
    unsigned lost;
    unsigned failed = run_cuts(events, 8, "KR_PC_LOST_FLUSHES=1", NULL, &lost);
    EXPECT(failed > 0, "with flushes lost (acknowledgements before durability) no cut point "
                       "failed: the test cannot catch an early acknowledgement");
    /* Mode none at a cut point after the first acknowledgements puts the
     * files back to before the bench: acknowledged events are missing. */
    EXPECT(lost > 0, "with flushes lost no cut point found an acknowledged event missing");
}

/* The journal's own rule for one flush per commit: a batch whose meta page
 * no later commit's flush covers is acknowledged only after mdb_env_sync.
 * With that call planted to do nothing, the bench's acknowledgements come
 * early, and some cut must find an acknowledged event missing. */
static void test_planted_early_ack(void **state)
{
    (void)state;
    uint64_t events = count_events();
    unsigned lost;
    /* Mode none: a meta page written but not flushed is then always lost. */
    unsigned failed = run_cuts(events, 32, "KR_PC_SKIP_ENV_SYNC=1", "none", &lost);
    EXPECT(failed > 0, "with the meta page's flush skipped no cut point failed: the test "
                       "cannot catch an acknowledgement before the covering flush");
    EXPECT(lost > 0, "with the meta page's flush skipped no cut point found an acknowledged "
                     "event missing");
}

/* ---- Beyond appends: the domain's ops and backups ---- */

#define OPS_CUTS_DEFAULT 24u

/* What is cut: `kiroku seed` on a new journal (every op of the domain: view
 * updates in the journal's transactions, tenant keys made in the keystore, a
 * cancelled tenant's erasure: key destroyed, payloads stripped), or
 * `kiroku backup` of a seeded data directory (copies, manifest, the
 * generation renamed into place, old ones pruned). */
enum op_kind { OP_SEED, OP_BACKUP };

/* p->dir is PC/data and *bk PC/bk, PC = p->tmp/pc being what the shim cuts;
 * the data directory as the op finds it. */
static void ops_setup(struct paths *p, char *pc, char *bk, size_t cap, enum op_kind op,
                      const char *name)
{
    setup_paths(p, name);
    snprintf(pc, cap, "%s/pc", p->tmp);
    snprintf(p->dir, sizeof p->dir, "%s/data", pc);
    snprintf(bk, cap, "%s/bk", pc);
    assert_int_equal(mkdir(pc, 0700), 0);
    assert_int_equal(mkdir(bk, 0700), 0);
    init_journal(p);
    if (op == OP_BACKUP) {
        char *seed[] = {NULL, "seed", "--data", p->dir, "--contacts", "5", NULL};
        int rc = run_kiroku(seed, NULL, p->log);
        if (rc != 0) {
            kr_test_print_log(p->log);
            fail_msg("kiroku seed exited %d", rc);
        }
    }
}

static int ops_run(const struct paths *p, const char *pc, const char *bk, enum op_kind op,
                   const char *const *extra)
{
    char *seed[] = {NULL, "seed", "--data", (char *)p->dir, "--contacts", "5", NULL};
    char *backup[] = {NULL, "backup", "--data", (char *)p->dir, "--to", (char *)bk, NULL};
    return run_shim_in(pc, p, op == OP_SEED ? seed : backup, extra);
}

/* After a cut: the journal verifies; `kiroku retention` on a clock 31 days
 * on finishes an erasure the cut interrupted (mid-erasure, the erased
 * tenant's view rows still point at stripped payloads, which a rebuild
 * cannot reproduce: the next run finishes it, as the daily job would); then
 * the views are what a rebuild from the journal makes (every committed view
 * change there, none other: replay --check opens the domain, keystore
 * included), and every backup generation present checks (its manifest,
 * digests and journal). */
static bool ops_check(const struct paths *p, const char *bk, char *why, size_t cap)
{
    char *verify[] = {NULL, "verify", "--data", (char *)p->dir, NULL};
    char *retention[] = {NULL,        "retention", "--data", (char *)p->dir,
                         "--backups", (char *)bk,  NULL};
    static const char *const later[] = {"KIROKU_CLOCK_OFFSET=31d", NULL};
    char *replay[] = {NULL, "replay", "--data", (char *)p->dir, "--check", NULL};
    char *check[] = {NULL, "backup", "check", (char *)bk, "--data", (char *)p->dir, NULL};
    int rc;
    if ((rc = run_kiroku(verify, NULL, p->log)) != 0)
        snprintf(why, cap, "kiroku verify failed (status %d)", rc);
    else if ((rc = run_kiroku(retention, later, p->log)) != 0)
        snprintf(why, cap, "kiroku retention failed (status %d)", rc);
    else if ((rc = run_kiroku(replay, NULL, p->log)) != 0)
        snprintf(why, cap, "kiroku replay --check failed (status %d)", rc);
    else if ((rc = run_kiroku(check, NULL, p->log)) != 0)
        snprintf(why, cap, "kiroku backup check failed (status %d)", rc);
    else
        return true;
    return false;
}

static void ops_cuts(enum op_kind op, const char *what)
{
    struct paths p;
    char pc[KR_PATH_MAX + 8], bk[KR_PATH_MAX + 16], count[KR_PATH_MAX + 32];
    ops_setup(&p, pc, bk, sizeof pc, op, what);
    snprintf(count, sizeof count, "KR_PC_COUNT=%s", p.count);
    const char *cextra[] = {count, NULL};
    int rc = ops_run(&p, pc, bk, op, cextra);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        kr_test_print_log(p.log);
        fail_msg("the uncut %s failed (status %d)", what, rc);
    }
    char *text = kr_test_slurp(p.count, NULL);
    unsigned long long events = 0, renames = 0;
    if (sscanf(text, "events %llu\nrenames %llu", &events, &renames) != 2 || events < 4)
        fail_msg("the shim counted no events: %s", text);
    free(text);
    kr_test_rmrf(p.tmp);
    fprintf(stderr, "%s makes %llu storage events, %llu of them renames\n", what, events, renames);

    const char *s = getenv("KR_POWERCUT_CUTS");
    unsigned cuts = s && *s ? cuts_wanted() : OPS_CUTS_DEFAULT, failed = 0;
    for (unsigned i = 0; i < cuts; i++) {
        uint64_t k = 1 + ((uint64_t)i * (events - 1) + i / 3) / cuts;
        const char *mode = modes[i % 4];
        ops_setup(&p, pc, bk, sizeof pc, op, what);
        char at[48], seed[48], m[32];
        snprintf(at, sizeof at, "KR_PC_CUT_AT=%" PRIu64, k);
        snprintf(seed, sizeof seed, "KR_PC_SEED=%" PRIu64, k);
        snprintf(m, sizeof m, "KR_PC_MODE=%s", mode);
        const char *extra[] = {at, seed, m, NULL};
        rc = ops_run(&p, pc, bk, op, extra);
        bool cut = WIFSIGNALED(rc) && WTERMSIG(rc) == SIGKILL;
        char why[256] = "";
        if (!cut && rc != 0)
            snprintf(why, sizeof why, "the uncut run failed (status %d)", rc);
        else
            ops_check(&p, bk, why, sizeof why);
        fprintf(stderr, "%s cut at event %" PRIu64 " (%s)%s: %s%s\n", what, k, mode,
                cut ? "" : " (ran to the end)", *why ? "FAILED: " : "ok", why);
        if (*why) {
            kr_test_print_log(p.log);
            failed++;
        } else {
            kr_test_rmrf(p.tmp);
        }
    }
    EXPECT(failed == 0, "%u %s cut points broke the data directory or its backups", failed, what);
}

static void test_seed_cuts(void **state)
{
    (void)state;
    ops_cuts(OP_SEED, "powercut seed");
}

static void test_backup_cuts(void **state)
{
    (void)state;
    ops_cuts(OP_BACKUP, "powercut backup");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuts),
        cmocka_unit_test(test_planted_lost_flush),
        cmocka_unit_test(test_planted_early_ack),
        cmocka_unit_test(test_key_rotation_cuts),
        cmocka_unit_test(test_seed_cuts),
        cmocka_unit_test(test_backup_cuts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
