/*
 * backup_test.c: `kiroku backup`, `backup list|check` and `restore` as an
 * operator uses them, through the binary:
 * - a backup taken while another process appends restores, verifies and
 *   rebuilds views equal to the copied ones;
 * - one generation per JST day (test clock), the newest 7 kept, a second
 *   backup on one day replacing it;
 * - tampered manifests (a flipped byte, a changed seq), a tampered, missing,
 *   extra or truncated file, a rolled-back journal and a wrong public key are
 *   refused by `check` and by `restore`, naming the failed check, and restore
 *   leaves no NEWDIR behind;
 * - restore refuses a NEWDIR with a journal, a backup older than the known
 *   checkpoint, and a known checkpoint of another history;
 * - kill -9 during backup never leaves a half generation under a day's name
 *   (and the next backup clears the leftovers); during restore NEWDIR never
 *   appears unfinished;
 * - a journal with the legacy stream index (meta format 2) backs up as it is
 *   and is migrated by a restore.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "journal.h"
#include "journal_internal.h"
#include "keystore.h"
#include "test_util.h"

#define OUT_MAX (1u << 20)
/* 2026-12-06T00:00:00Z, 09:00 JST */
#define DAY0 1796515200ull
#define DAY  86400ull

static char root[1024], data[1100], backups[1100], pk[64];
static char *out, *err;

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

static void path(char *buf, size_t cap, const char *a, const char *b)
{
    int n = snprintf(buf, cap, "%s/%s", a, b);
    assert_true(n > 0 && (size_t)n < cap);
}

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static void read_pubkey(void)
{
    char p[1200];
    path(p, sizeof p, data, "keys/journal-1.pub");
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    assert_non_null(fgets(pk, sizeof pk, f));
    fclose(f);
    pk[strcspn(pk, "\n")] = '\0';
}

static int setup(void **state)
{
    (void)state;
    out = malloc(OUT_MAX);
    err = malloc(OUT_MAX);
    kr_test_tmpdir(root, sizeof root);
    path(data, sizeof data, root, "data");
    path(backups, sizeof backups, root, "backups");
    const char *seed[] = {"seed",       "--data", data,     "--tenants", "2",
                          "--contacts", "40",     "--json", NULL};
    if (run(seed) != 0)
        fail_msg("seed: %s", err);
    read_pubkey();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kr_test_rmrf(root);
    free(out);
    free(err);
    unsetenv("KIROKU_CLOCK_OFFSET");
    return 0;
}

/* Sets the clock override to start at secs (UTC seconds). */
static void clock_at(uint64_t secs)
{
    char now[32];
    snprintf(now, sizeof now, "@%llu", (unsigned long long)secs);
    setenv("KIROKU_CLOCK_OFFSET", now, 1);
}

/* `backup` at secs (UTC seconds, the test clock) into dir; returns the
 * JSON's last_seq. */
static uint64_t backup_at(const char *dir, uint64_t secs)
{
    clock_at(secs);
    const char *args[] = {"backup", "--data", data, "--to", dir, "--test-clock", "--json", NULL};
    int rc = run(args);
    unsetenv("KIROKU_CLOCK_OFFSET");
    if (rc != 0)
        fail_msg("backup: %s", err);
    json_t *j = parse(out);
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(j, "last_seq"));
    json_decref(j);
    return seq;
}

static void append_events(const char *dir, const char *n)
{
    const char *args[] = {"bench", "append",      "--data", dir,      "--events",
                          n,       "--producers", "2",      "--json", NULL};
    if (run(args) != 0)
        fail_msg("bench append: %s", err);
}

/* Spawns kiroku with args (NULL-terminated), output discarded. */
static pid_t spawn(const char *const *args)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        const char *argv[32] = {"kiroku"};
        size_t n = 1;
        for (; args[n - 1] && n < 31; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(KR_KIROKU_BIN, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_status(pid_t pid)
{
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- A backup under writes ---- */

/* The journal size DATA/checkpoint shows (its second line; 0 if unreadable). */
static uint64_t checkpoint_size(void)
{
    char p[1200], buf[256];
    path(p, sizeof p, data, "checkpoint");
    FILE *f = fopen(p, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    return nl ? strtoull(nl + 1, NULL, 10) : 0;
}

/* For kr_test_wait_for: whether the journal grew past *(uint64_t *)arg. */
static bool journal_grew(void *arg)
{
    return checkpoint_size() > *(const uint64_t *)arg;
}

static void test_backup_during_writes_restores(void **state)
{
    (void)state;
    char bk[1200], gen[1300], newdir[1200];
    path(bk, sizeof bk, root, "bk-writes");
    path(newdir, sizeof newdir, root, "restored-writes");
    const char *writer[] = {"bench", "append",      "--data", data, "--events",
                            "60000", "--producers", "4",      NULL};
    uint64_t before = checkpoint_size();
    assert_true(before > 0);
    pid_t w = spawn(writer);
    assert_true(kr_test_wait_for(journal_grew, &before, KR_TEST_WAIT_MS, "the writer's appends"));
    const char *b[] = {"backup", "--data", data, "--to", bk, "--json", NULL};
    if (run(b) != 0)
        fail_msg("backup: %s", err);
    json_t *j = parse(out);
    const char *name = json_string_value(json_object_get(j, "generation"));
    assert_non_null(name);
    path(gen, sizeof gen, bk, name);
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(j, "last_seq"));
    json_decref(j);
    int st = wait_status(w);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(seq > 100);

    const char *check[] = {"backup", "check", bk, "--pubkey", pk, NULL};
    if (run(check) != 0)
        fail_msg("check: %s%s", out, err);
    const char *r[] = {"restore", gen, "--data", newdir, "--pubkey", pk, "--json", NULL};
    if (run(r) != 0)
        fail_msg("restore: %s%s", out, err);
    j = parse(out);
    assert_int_equal(json_integer_value(json_object_get(j, "records")), seq);
    json_decref(j);
    const char *v[] = {"verify", "--data", newdir, "--pubkey", pk, NULL};
    if (run(v) != 0)
        fail_msg("verify: %s%s", out, err);
    const char *rc[] = {"replay", "--check", "--data", newdir, NULL};
    if (run(rc) != 0)
        fail_msg("replay --check: %s%s", out, err);
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.restore-tmp", newdir);
    assert_false(exists(tmp));

    /* A NEWDIR that holds a journal is refused, untouched. */
    if (run(r) != 3)
        fail_msg("restore over a journal: %s%s", out, err);
    assert_non_null(strstr(err, "holds a journal"));
}

/* ---- Generations ---- */

static size_t count_gens(const char *dir, char names[][16], size_t cap)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    size_t n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n < cap)
            snprintf(names[n], 16, "%.15s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static void test_seven_generations_and_same_day(void **state)
{
    (void)state;
    char bk[1200], names[16][16];
    path(bk, sizeof bk, root, "bk-days");
    for (unsigned d = 0; d < 9; d++)
        backup_at(bk, DAY0 + d * DAY + 3600);
    size_t n = count_gens(bk, names, 16);
    assert_int_equal(n, 7);
    char want[16];
    for (unsigned d = 0; d < 2; d++) {
        snprintf(want, sizeof want, "2026-12-%02u", 6 + d);
        char p[1300];
        path(p, sizeof p, bk, want);
        assert_false(exists(p));
    }
    char p[1300];
    path(p, sizeof p, bk, "2026-12-14");
    assert_true(exists(p));

    /* The same JST day again (23:59 JST is 14:59 UTC): replaced, not added. */
    append_events(data, "50");
    uint64_t seq = backup_at(bk, DAY0 + 8 * DAY + 14 * 3600 + 59 * 60);
    assert_int_equal(count_gens(bk, names, 16), 7);
    const char *l[] = {"backup", "list", bk, "--pubkey", pk, "--json", NULL};
    assert_int_equal(run(l), 0);
    json_t *j = parse(out);
    json_t *g = json_array_get(json_object_get(j, "generations"), 0);
    assert_string_equal(json_string_value(json_object_get(g, "generation")), "2026-12-14");
    assert_int_equal(json_integer_value(json_object_get(g, "last_seq")), seq);
    assert_true(json_is_true(json_object_get(g, "ok")));
    assert_int_equal(json_array_size(json_object_get(j, "generations")), 7);
    json_decref(j);
    /* Midnight JST (15:00 UTC) is the next day. */
    backup_at(bk, DAY0 + 8 * DAY + 15 * 3600);
    path(p, sizeof p, bk, "2026-12-15");
    assert_true(exists(p));
    assert_int_equal(count_gens(bk, names, 16), 7);
}

/* ---- Tampering ---- */

static void flip_byte(const char *file, long off)
{
    int fd = open(file, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    if (off < 0)
        off += st.st_size;
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x01;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static void replace_in_file(const char *file, const char *from, const char *to)
{
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *at = strstr(buf, from);
    assert_non_null(at);
    f = fopen(file, "w");
    assert_non_null(f);
    fwrite(buf, 1, (size_t)(at - buf), f);
    fputs(to, f);
    fputs(at + strlen(from), f);
    fclose(f);
}

struct tamper {
    const char *name;
    const char *want; /* in the message */
};

/* Applies tamper case i to generation dir g (older: an older generation). */
static void do_tamper(int i, const char *g, const char *older)
{
    char p[1400], q[1400];
    switch (i) {
    case 0: /* a flipped byte in the signed text */
        path(p, sizeof p, g, "manifest");
        flip_byte(p, 40);
        break;
    case 1: { /* a changed seq */
        path(p, sizeof p, g, "manifest");
        FILE *f = fopen(p, "r");
        char line[256];
        while (fgets(line, sizeof line, f) && strncmp(line, "last-seq ", 9) != 0) {
        }
        fclose(f);
        char to[256];
        unsigned long long s = strtoull(line + 9, NULL, 10);
        snprintf(to, sizeof to, "last-seq %llu\n", s - 1);
        replace_in_file(p, line, to);
        break;
    }
    case 2: { /* another signature (its first base64 digit changed: still canonical) */
        path(p, sizeof p, g, "manifest");
        FILE *f = fopen(p, "r");
        char line[256];
        while (fgets(line, sizeof line, f) && strncmp(line, "signature ", 10) != 0) {
        }
        fclose(f);
        char to[256];
        snprintf(to, sizeof to, "%s", line);
        to[10] = to[10] == 'A' ? 'B' : 'A';
        replace_in_file(p, line, to);
        break;
    }
    case 3: /* a tampered file */
        path(p, sizeof p, g, "journal/data.mdb");
        flip_byte(p, 5000);
        break;
    case 4: /* a file left out */
        path(p, sizeof p, g, "keys/kek.key");
        assert_int_equal(unlink(p), 0);
        break;
    case 5: { /* an extra file */
        path(p, sizeof p, g, "keys/journal-9.key");
        FILE *f = fopen(p, "w");
        fputs("x", f);
        fclose(f);
        break;
    }
    case 6: /* rolled back: an older generation's journal in its place */
        path(p, sizeof p, older, "journal/data.mdb");
        path(q, sizeof q, g, "journal/data.mdb");
        assert_int_equal(unlink(q), 0);
        kr_test_copytree(p, q);
        break;
    case 7: /* truncated */
        path(p, sizeof p, g, "journal/data.mdb");
        assert_int_equal(truncate(p, 8192), 0);
        break;
    case 8: /* the keystore swapped for an empty file */
        path(p, sizeof p, g, "keystore/data.mdb");
        assert_int_equal(truncate(p, 0), 0);
        break;
    default:
        break;
    }
}

static void test_tampered_generations_refused(void **state)
{
    (void)state;
    static const struct tamper cases[] = {
        {"flipped manifest byte", "manifest"},
        {"changed seq", "manifest signature"},
        {"flipped signature", "manifest signature"},
        {"tampered file", "digest of journal/data.mdb"},
        {"file left out", "missing file keys/kek.key"},
        {"extra file", "extra file keys/journal-9.key"},
        {"rolled back journal", "journal/data.mdb"},
        {"truncated data.mdb", "size of journal/data.mdb"},
        {"emptied keystore", "size of keystore/data.mdb"},
    };
    char bk[1200], good_old[1300], good[1300];
    path(bk, sizeof bk, root, "bk-tamper");
    backup_at(bk, DAY0);
    append_events(data, "300");
    backup_at(bk, DAY0 + DAY);
    path(good_old, sizeof good_old, bk, "2026-12-06");
    path(good, sizeof good, bk, "2026-12-07");
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        char tb[1300], g[1400], newdir[1300];
        snprintf(tb, sizeof tb, "%s/t%d", root, i);
        assert_int_equal(mkdir(tb, 0700), 0);
        path(g, sizeof g, tb, "2026-12-07");
        kr_test_copytree(good, g);
        do_tamper(i, g, good_old);
        const char *check[] = {"backup", "check", tb, "--pubkey", pk, "--json", NULL};
        int rc = run(check);
        if (rc != 1 || !strstr(out, cases[i].want))
            fail_msg("%s: check gave %d: %s %s", cases[i].name, rc, out, err);
        snprintf(newdir, sizeof newdir, "%s/new%d", root, i);
        const char *r[] = {"restore", g, "--data", newdir, "--pubkey", pk, NULL};
        rc = run(r);
        if (rc != 1 || !strstr(err, cases[i].want))
            fail_msg("%s: restore gave %d: %s %s", cases[i].name, rc, out, err);
        assert_false(exists(newdir));
        char tmp[1400];
        snprintf(tmp, sizeof tmp, "%s.restore-tmp", newdir);
        assert_false(exists(tmp));
    }
    /* The right generations under a wrong public key. */
    const char *wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const char *check[] = {"backup", "check", bk, "--pubkey", wrong, NULL};
    assert_int_equal(run(check), 1);
    assert_non_null(strstr(out, "manifest signature: the journal's key 1 is not the trusted"));
    char newdir[1300];
    path(newdir, sizeof newdir, root, "new-wrongkey");
    const char *r[] = {"restore", good, "--data", newdir, "--pubkey", wrong, NULL};
    assert_int_equal(run(r), 1);
    assert_non_null(strstr(err, "manifest signature"));
    assert_false(exists(newdir));
    /* The untouched ones still verify. */
    const char *ok[] = {"backup", "check", bk, "--data", data, NULL};
    if (run(ok) != 0)
        fail_msg("check: %s %s", out, err);
}

/* ---- Known checkpoints ---- */

static void copy_file(const char *from, const char *to)
{
    kr_test_copytree(from, to);
}

static void test_known_checkpoint(void **state)
{
    (void)state;
    char bk[1200], gen_old[1300], gen_new[1300], newdir[1300], cp[1300], fork_dir[1300];
    path(bk, sizeof bk, root, "bk-known");
    backup_at(bk, DAY0);
    path(gen_old, sizeof gen_old, bk, "2026-12-06");
    append_events(data, "200");
    /* The live checkpoint, newer than the old backup. */
    path(cp, sizeof cp, data, "checkpoint");

    /* Older than the known checkpoint: refused without --new-epoch. */
    path(newdir, sizeof newdir, root, "known-a");
    assert_int_equal(mkdir(newdir, 0700), 0);
    char kp[1400];
    path(kp, sizeof kp, newdir, "checkpoint");
    copy_file(cp, kp);
    const char *r1[] = {"restore", gen_old, "--data", newdir, "--pubkey", pk, NULL};
    assert_int_equal(run(r1), 1);
    assert_non_null(strstr(err, "before the newest known checkpoint"));
    assert_true(exists(kp));
    char jp[1400];
    path(jp, sizeof jp, newdir, "journal");
    assert_false(exists(jp));

    /* A fork: the old backup restored elsewhere takes different writes, so
     * its checkpoint at some size differs from the live journal's. */
    path(fork_dir, sizeof fork_dir, root, "fork");
    const char *r2[] = {"restore", gen_old, "--data", fork_dir, "--pubkey", pk, NULL};
    if (run(r2) != 0)
        fail_msg("restore: %s", err);
    append_events(fork_dir, "20");
    backup_at(bk, DAY0 + DAY);
    path(gen_new, sizeof gen_new, bk, "2026-12-07");
    char fcp[1400];
    path(fcp, sizeof fcp, fork_dir, "checkpoint");
    path(newdir, sizeof newdir, root, "known-b");
    const char *r3[] = {"restore", gen_new, "--data", newdir, "--pubkey", pk, "--known-checkpoint",
                        fcp,       NULL};
    assert_int_equal(run(r3), 1);
    assert_non_null(strstr(err, "not consistent"));
    assert_false(exists(newdir));

    /* The live checkpoint is consistent with the newer backup. */
    const char *r4[] = {"restore", gen_new, "--data", newdir, "--pubkey", pk, "--known-checkpoint",
                        cp,        NULL};
    if (run(r4) != 0)
        fail_msg("restore: %s", err);
}

/* ---- kill -9 ---- */

/* Every generation under a day's name verifies. */
static void check_all(const char *bk, const char *when)
{
    const char *check[] = {"backup", "check", bk, "--pubkey", pk, NULL};
    int rc = run(check);
    if (rc != 0)
        fail_msg("%s: check gave %d: %s %s", when, rc, out, err);
}

static size_t leftovers(const char *bk)
{
    DIR *d = opendir(bk);
    assert_non_null(d);
    struct dirent *e;
    size_t n = 0;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, ".tmp-", 5) == 0 || strncmp(e->d_name, ".old-", 5) == 0;
    closedir(d);
    return n;
}

static void test_kill9_during_backup(void **state)
{
    (void)state;
    char bk[1200];
    path(bk, sizeof bk, root, "bk-kill");
    append_events(data, "40000");
    /* Kills land anywhere from the start to past a whole run. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    backup_at(bk, DAY0); /* a generation to replace */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    unsigned span =
        (unsigned)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
    span = 2 * span + 1;
    unsigned seed = (unsigned)time(NULL);
    fprintf(stderr, "kill seed %u\n", seed);
    srand(seed);
    size_t killed_mid = 0;
    for (int round = 0; round < 8; round++) {
        clock_at(DAY0 + 100); /* the same day: a replacement */
        const char *args[] = {"backup", "--data", data, "--to", bk, "--test-clock", NULL};
        pid_t pid = spawn(args);
        unsetenv("KIROKU_CLOCK_OFFSET");
        sleep_ms((unsigned)rand() % span);
        kill(pid, SIGKILL);
        int st = wait_status(pid);
        killed_mid += WIFSIGNALED(st);
        check_all(bk, "after kill -9");
        char g[1300];
        path(g, sizeof g, bk, "2026-12-06");
        assert_true(exists(g));
    }
    fprintf(stderr, "%zu of 8 backups killed before they finished\n", killed_mid);
    backup_at(bk, DAY0 + 600);
    assert_int_equal(leftovers(bk), 0);
    check_all(bk, "after a clean backup");
}

static void test_kill9_during_restore(void **state)
{
    (void)state;
    char bk[1200], gen[1300];
    path(bk, sizeof bk, root, "bk-rkill");
    backup_at(bk, DAY0);
    path(gen, sizeof gen, bk, "2026-12-06");
    unsigned seed = (unsigned)time(NULL) ^ 0x5a5a;
    srand(seed);
    unsigned span;
    {
        char newdir[1300];
        snprintf(newdir, sizeof newdir, "%s/rk-timed", root);
        const char *args[] = {"restore", gen, "--data", newdir, "--pubkey", pk, NULL};
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(run(args), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        span = (unsigned)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
        span = 2 * span + 1;
    }
    size_t finished = 0;
    for (int round = 0; round < 8; round++) {
        char newdir[1300];
        snprintf(newdir, sizeof newdir, "%s/rk%d", root, round);
        const char *args[] = {"restore", gen, "--data", newdir, "--pubkey", pk, NULL};
        pid_t pid = spawn(args);
        sleep_ms((unsigned)rand() % span);
        kill(pid, SIGKILL);
        int st = wait_status(pid);
        if (exists(newdir)) {
            /* Only a finished restore has the name: the kill may still come
             * after the rename (while the process exits, which takes long
             * under the sanitizers), but what has the name is complete. */
            (void)st;
            finished++;
            const char *v[] = {"verify", "--data", newdir, "--pubkey", pk, NULL};
            assert_int_equal(run(v), 0);
            const char *c[] = {"replay", "--data", newdir, "--check", NULL};
            assert_int_equal(run(c), 0);
        } else {
            /* A rerun finishes, clearing what the killed one left. */
            if (run(args) != 0)
                fail_msg("restore after kill: %s", err);
            assert_true(exists(newdir));
        }
        char tmp[1400];
        snprintf(tmp, sizeof tmp, "%s.restore-tmp", newdir);
        assert_false(exists(tmp));
    }
    fprintf(stderr, "%zu of 8 restores finished before the kill\n", finished);
}

/* ---- Point in time, new epochs ---- */

#ifdef JRN_TYPE_EPOCH_STARTED
/* The type of record seq in dir. */
static void type_at(const char *dir, uint64_t seq, char *type, size_t cap)
{
    char from[32];
    snprintf(from, sizeof from, "%llu", (unsigned long long)seq);
    const char *d[] = {"dump", "--data", dir, "--from", from, "--limit", "1", "--json", NULL};
    assert_int_equal(run(d), 0);
    json_t *j = parse(out);
    snprintf(type, cap, "%s", json_string_value(json_object_get(j, "type")));
    json_decref(j);
}

static void test_until_and_new_epoch(void **state)
{
    (void)state;
    char bk[1200], gen[1300], newdir[1300], cp[1300], type[128];
    path(bk, sizeof bk, root, "bk-epoch");
    uint64_t last = backup_at(bk, DAY0);
    path(gen, sizeof gen, bk, "2026-12-06");
    uint64_t until = last / 2;
    char u[32];
    snprintf(u, sizeof u, "%llu", (unsigned long long)until);

    /* Point in time: records 1..until, then a new epoch. */
    path(newdir, sizeof newdir, root, "until");
    const char *r[] = {"restore", gen,       "--data", newdir,   "--pubkey",
                       pk,        "--until", u,        "--json", NULL};
    if (run(r) != 0)
        fail_msg("restore --until: %s %s", out, err);
    json_t *j = parse(out);
    assert_true(json_is_true(json_object_get(j, "new_epoch")));
    json_decref(j);
    type_at(newdir, until, type, sizeof type);
    type_at(newdir, until + 1, type, sizeof type);
    assert_string_equal(type, JRN_TYPE_EPOCH_STARTED);
    const char *v[] = {"verify", "--data", newdir, "--pubkey", pk, NULL};
    if (run(v) != 0)
        fail_msg("verify: %s %s", out, err);
    const char *rc[] = {"replay", "--check", "--data", newdir, NULL};
    assert_int_equal(run(rc), 0);
    /* It takes writes, and backs up with the epoch in its key chain. */
    append_events(newdir, "50");
    assert_int_equal(run(v), 0);
    char bk2[1300];
    path(bk2, sizeof bk2, root, "bk-epoch2");
    const char *b[] = {"backup", "--data", newdir, "--to", bk2, NULL};
    assert_int_equal(run(b), 0);
    const char *check[] = {"backup", "check", bk2, "--pubkey", pk, NULL};
    if (run(check) != 0)
        fail_msg("check of an epoch's backup: %s %s", out, err);

    /* Beyond the backup. */
    snprintf(u, sizeof u, "%llu", (unsigned long long)(last + 5));
    path(newdir, sizeof newdir, root, "until-beyond");
    assert_int_equal(run(r), 2);
    assert_false(exists(newdir));

    /* Older than the known checkpoint: --new-epoch restores it as a new epoch. */
    append_events(data, "100");
    path(newdir, sizeof newdir, root, "new-epoch");
    assert_int_equal(mkdir(newdir, 0700), 0);
    char kp[1400];
    path(cp, sizeof cp, data, "checkpoint");
    path(kp, sizeof kp, newdir, "checkpoint");
    kr_test_copytree(cp, kp);
    const char *ne[] = {"restore", gen, "--data", newdir, "--pubkey", pk, "--new-epoch", NULL};
    if (run(ne) != 0)
        fail_msg("restore --new-epoch: %s %s", out, err);
    type_at(newdir, last + 1, type, sizeof type);
    assert_string_equal(type, JRN_TYPE_EPOCH_STARTED);
    const char *v2[] = {"verify", "--data", newdir, "--pubkey", pk, NULL};
    if (run(v2) != 0)
        fail_msg("verify: %s %s", out, err);
}
#endif

/* ---- Key rotations: the manifest carries the chain ---- */

static void test_rotated_keys(void **state)
{
    (void)state;
    char d[1200], bk[1200], newdir[1200], p1[1300], k1[128];
    path(d, sizeof d, root, "rotated");
    path(bk, sizeof bk, root, "bk-rotated");
    path(newdir, sizeof newdir, root, "rotated-restored");
    const char *init[] = {"init", "--data", d, NULL};
    assert_int_equal(run(init), 0);
    const char *rot[] = {"keys", "rotate", "--data", d, NULL};
    append_events(d, "100");
    assert_int_equal(run(rot), 0);
    append_events(d, "100");
    assert_int_equal(run(rot), 0);
    const char *b[] = {"backup", "--data", d, "--to", bk, "--json", NULL};
    if (run(b) != 0)
        fail_msg("backup: %s", err);
    json_t *j = parse(out);
    char gen[1300];
    path(gen, sizeof gen, bk, json_string_value(json_object_get(j, "generation")));
    json_decref(j);
    char man[1400];
    path(man, sizeof man, gen, "manifest");
    FILE *f = fopen(man, "r");
    char line[8192];
    int keyrecs = 0, signed3 = 0;
    while (fgets(line, sizeof line, f)) {
        keyrecs += strncmp(line, "key-record ", 11) == 0;
        signed3 += strcmp(line, "signed-by 3\n") == 0;
    }
    fclose(f);
    assert_int_equal(keyrecs, 3);
    assert_int_equal(signed3, 1);
    path(p1, sizeof p1, d, "keys/journal-1.pub");
    f = fopen(p1, "r");
    assert_non_null(fgets(k1, sizeof k1, f));
    fclose(f);
    k1[strcspn(k1, "\n")] = '\0';
    const char *check[] = {"backup", "check", bk, "--pubkey", k1, NULL};
    if (run(check) != 0)
        fail_msg("check: %s %s", out, err);
    const char *r[] = {"restore", gen, "--data", newdir, "--pubkey", k1, "--full", NULL};
    if (run(r) != 0)
        fail_msg("restore: %s %s", out, err);
    const char *v[] = {"verify", "--data", newdir, "--pubkey", k1, NULL};
    assert_int_equal(run(v), 0);
    /* Key 1 of this journal, not of the seeded one. */
    const char *other[] = {"backup", "check", bk, "--pubkey", pk, NULL};
    assert_int_equal(run(other), 1);
}

/* ---- Erasing a tenant from every generation ---- */

/* The tenants with a key in the keystore of data directory dir (read with
 * LMDB directly, on a copy: the test trusts its own files). */
static size_t keystore_tenants(const char *dir, uint64_t *tenants, size_t cap,
                               uint8_t wrapped[][73])
{
    char env_dir[1300];
    path(env_dir, sizeof env_dir, dir, "keystore");
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *c;
    MDB_val k, v;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, env_dir, MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "keys", 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &c), 0);
    size_t n = 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && n < cap;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint64_t t = 0;
        for (size_t i = 0; i < 8; i++)
            t = t << 8 | ((const uint8_t *)k.mv_data)[i];
        if (wrapped && v.mv_size == 73)
            memcpy(wrapped[n], v.mv_data, 73);
        tenants[n++] = t;
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return n;
}

static bool file_holds(const char *file, const uint8_t *needle, size_t len)
{
    FILE *f = fopen(file, "rb");
    assert_non_null(f);
    static uint8_t buf[4 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    for (size_t i = 0; i + len <= n; i++)
        if (memcmp(buf + i, needle, len) == 0)
            return true;
    return false;
}

static void test_erase_tenant_in_every_generation(void **state)
{
    (void)state;
    char bk[1200], g1[1300], g2[1300], copy[1300];
    path(bk, sizeof bk, root, "bk-erase");
    backup_at(bk, DAY0);
    backup_at(bk, DAY0 + DAY);
    path(g1, sizeof g1, bk, "2026-12-06");
    path(g2, sizeof g2, bk, "2026-12-07");
    path(copy, sizeof copy, root, "erase-copy");
    kr_test_copytree(g1, copy);
    uint64_t tenants[8];
    uint8_t wrapped[8][73];
    size_t n = keystore_tenants(copy, tenants, 8, wrapped);
    kr_test_rmrf(copy);
    assert_true(n >= 1);
    uint64_t victim = tenants[0];

    uint64_t gens = 0;
    assert_int_equal(backup_erase_tenant(bk, data, victim, &gens), KR_OK);
    assert_int_equal(gens, 2);
    const char *check[] = {"backup", "check", bk, "--pubkey", pk, NULL};
    if (run(check) != 0)
        fail_msg("check after erase: %s %s", out, err);
    const char *gens_[] = {g1, g2};
    for (int i = 0; i < 2; i++) {
        char ks[1400];
        path(ks, sizeof ks, gens_[i], "keystore/data.mdb");
        assert_false(file_holds(ks, wrapped[0], sizeof wrapped[0]));
        kr_test_copytree(gens_[i], copy);
        uint64_t left[8];
        size_t m = keystore_tenants(copy, left, 8, NULL);
        assert_int_equal(m, n - 1);
        for (size_t k = 0; k < m; k++)
            assert_true(left[k] != victim);
        struct kr_keystore *k;
        assert_int_equal(ks_open(copy, false, &k), KR_OK);
        struct kr_data_key dk;
        assert_int_equal(ks_get(k, victim, &dk), KR_ENOTFOUND);
        bool destroyed = false;
        assert_int_equal(ks_is_destroyed(k, victim, &destroyed), KR_OK);
        assert_true(destroyed);
        ks_close(k);
        kr_test_rmrf(copy);
    }
    /* Again: nothing left to do. */
    assert_int_equal(backup_erase_tenant(bk, data, victim, &gens), KR_OK);
    assert_int_equal(gens, 0);
    assert_int_equal(leftovers(bk), 0);
}

/* Files and directories directly in dir. */
static size_t entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static uint64_t json_u64(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", key);
    return (uint64_t)json_integer_value(v);
}

/* bench backup's erasure phase, small: the tenant erased, every record of it
 * stripped, its generation rewritten, every scratch file removed. */
static void test_bench_erase(void **state)
{
    (void)state;
    if (system("command -v mdb_copy >/dev/null 2>&1") != 0)
        skip(); /* the bench compares with mdb_copy (lmdb-utils) */
    char tmp[1200];
    path(tmp, sizeof tmp, root, "bench-tmp");
    assert_int_equal(mkdir(tmp, 0700), 0);
    setenv("TMPDIR", tmp, 1);
    const char *args[] = {"bench", "backup", "--events", "3000", "--rounds", "1", "--json", NULL};
    int rc = run(args);
    unsetenv("TMPDIR");
    if (rc != 0)
        fail_msg("bench backup: exit %d: %s", rc, err);
    json_t *j = parse(out);
    assert_true(json_is_real(json_object_get(j, "erase_s")));
    uint64_t records = json_u64(j, "erase_tenant_records");
    assert_true(records > 0);
    assert_true(records < json_u64(j, "erase_journal_records"));
    assert_true(json_u64(j, "erase_stripped") == records);
    assert_true(json_u64(j, "erase_generations") == 1);
    json_decref(j);
    assert_int_equal(entries(tmp), 0);

    const char *skip_args[] = {"bench", "backup", "--events",   "3000", "--rounds",
                               "1",     "--json", "--no-erase", NULL};
    setenv("TMPDIR", tmp, 1);
    rc = run(skip_args);
    unsetenv("TMPDIR");
    assert_int_equal(rc, 0);
    j = parse(out);
    assert_true(json_is_null(json_object_get(j, "erase_s")));
    json_decref(j);
    assert_int_equal(entries(tmp), 0);
}

static void test_usage(void **state)
{
    (void)state;
    const char *h[] = {"backup", "--help", NULL};
    assert_int_equal(run(h), 0);
    assert_non_null(strstr(out, "DIR/../backups"));
    const char *rh[] = {"restore", "--help", NULL};
    assert_int_equal(run(rh), 0);
    const char *nopk[] = {"restore", "x", "--data", "y", NULL};
    assert_int_equal(run(nopk), 2);
    /* The clock override: refused without --test-clock, malformed refused,
     * and nothing written either way. */
    const char *noflag[] = {"backup", "--data", data, "--to", "/nonexistent/x", NULL};
    const char *flag[] = {"backup", "--data", data, "--to", "/nonexistent/x", "--test-clock", NULL};
    setenv("KIROKU_CLOCK_OFFSET", "30d", 1);
    assert_int_equal(run(noflag), 2);
    assert_non_null(strstr(err, "KIROKU_CLOCK_OFFSET"));
    setenv("KIROKU_CLOCK_OFFSET", "@1796515200x", 1);
    assert_int_equal(run(flag), 2);
    setenv("KIROKU_CLOCK_OFFSET", "@", 1);
    assert_int_equal(run(flag), 2);
    unsetenv("KIROKU_CLOCK_OFFSET");
    assert_false(exists("/nonexistent/x"));
}

/* A generation whose path is too long for DIR/manifest to be named: `backup
 * check` says the path is too long (exit 3) instead of cutting the path
 * short, missing the manifest and reporting "ok: 0 of 0 generations". */
static void test_check_path_too_long(void **state)
{
    (void)state;
    char dir[KR_PATH_MAX + 256], name[201];
    memset(name, 'd', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(dir, sizeof dir, "%s/long", root);
    assert_int_equal(mkdir(dir, 0700), 0);
    /* Components of 200 bytes until DIR/manifest no longer fits KR_PATH_MAX
     * while DIR itself still does. */
    while (strlen(dir) + 201 < KR_PATH_MAX - 12) {
        size_t n = strlen(dir);
        snprintf(dir + n, sizeof dir - n, "/%s", name);
        assert_int_equal(mkdir(dir, 0700), 0);
    }
    size_t n = strlen(dir), pad = KR_PATH_MAX - 4 - n;
    dir[n] = '/';
    memset(dir + n + 1, 'e', pad - 1);
    dir[n + pad] = '\0';
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_true(strlen(dir) < KR_PATH_MAX && strlen(dir) + sizeof "/manifest" > KR_PATH_MAX);
    char mf[sizeof dir + sizeof "/manifest"];
    snprintf(mf, sizeof mf, "%s/manifest", dir);
    FILE *f = fopen(mf, "w");
    assert_non_null(f);
    fputs("not a manifest\n", f);
    fclose(f);
    const char *check[] = {"backup", "check", dir, "--pubkey", pk, NULL};
    assert_int_equal(run(check), 3);
    assert_non_null(strstr(err, kr_strerror(KR_ETOOLARGE)));
    assert_null(strstr(out, "ok:"));
}

/* ---- A backup of a journal with the legacy stream index ---- */

/* Rewrites dir's journal to the stream index older kiroku wrote (meta format
 * 2: one `streams` entry per record, no heads or links), from its records. */
static void make_legacy_index(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi events, streams, heads, links, meta;
    MDB_cursor *c;
    MDB_val k, v;
    kr_test_env_open(dir, &env);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_EVENTS, 0, &events), 0);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_STREAMS, MDB_CREATE, &streams), 0);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_HEADS, 0, &heads), 0);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_LINKS, 0, &links), 0);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_META, 0, &meta), 0);
    assert_int_equal(mdb_cursor_open(txn, events, &c), 0);
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct jrn_record r;
        uint8_t key[JRN_STREAM_KEY_MAX];
        assert_int_equal(jrn_record_decode(v.mv_data, v.mv_size, &r), KR_OK);
        size_t plen = jrn_stream_prefix(key, r.tenant, r.stream, r.stream_len);
        kr_test_be64(key + plen, r.version);
        MDB_val sk = {plen + 8, key}, sv = {8, k.mv_data};
        assert_int_equal(mdb_put(txn, streams, &sk, &sv, MDB_NOOVERWRITE), 0);
    }
    mdb_cursor_close(c);
    assert_int_equal(mdb_drop(txn, heads, 1), 0);
    assert_int_equal(mdb_drop(txn, links, 1), 0);
    uint8_t fmt[4] = {0, 0, 0, JRN_META_FORMAT_2};
    k = (MDB_val){strlen(JRN_META_FORMAT), JRN_META_FORMAT};
    v = (MDB_val){4, fmt};
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* A data directory whose journal has the legacy stream index is backed up as
 * it is (the backup checks and verifies), and a restore, whole or to a point
 * in time, migrates its copy: the restored journal has meta format 3 and
 * verifies, and the live one is left as it was. */
static void test_restore_legacy_index(void **state)
{
    (void)state;
    char old[1200], bk[1200], gen[1300], newdir[1300];
    path(old, sizeof old, root, "legacy");
    kr_test_copytree(data, old);
    make_legacy_index(old);
    assert_int_equal(kr_test_meta_format(old), JRN_META_FORMAT_2);
    const char *v0[] = {"verify", "--data", old, "--pubkey", pk, NULL};
    if (run(v0) != 0)
        fail_msg("verify of the legacy journal: %s %s", out, err);

    path(bk, sizeof bk, root, "bk-legacy");
    clock_at(DAY0);
    const char *b[] = {"backup", "--data", old, "--to", bk, "--test-clock", "--json", NULL};
    int rc = run(b);
    unsetenv("KIROKU_CLOCK_OFFSET");
    if (rc != 0)
        fail_msg("backup: %s", err);
    json_t *j = parse(out);
    uint64_t last = (uint64_t)json_integer_value(json_object_get(j, "last_seq"));
    json_decref(j);
    assert_int_equal(kr_test_meta_format(old), JRN_META_FORMAT_2);
    const char *check[] = {"backup", "check", bk, "--pubkey", pk, NULL};
    if (run(check) != 0)
        fail_msg("check: %s %s", out, err);

    path(gen, sizeof gen, bk, "2026-12-06");
    path(newdir, sizeof newdir, root, "legacy-restored");
    const char *r[] = {"restore", gen, "--data", newdir, "--pubkey", pk, "--full", NULL};
    if (run(r) != 0)
        fail_msg("restore: %s %s", out, err);
    assert_int_equal(kr_test_meta_format(newdir), JRN_META_FORMAT_CURRENT);
    const char *v[] = {"verify", "--data", newdir, "--pubkey", pk, NULL};
    if (run(v) != 0)
        fail_msg("verify of the restored journal: %s %s", out, err);
    const char *rc2[] = {"replay", "--check", "--data", newdir, NULL};
    assert_int_equal(run(rc2), 0);

#ifdef JRN_TYPE_EPOCH_STARTED
    char u[32];
    snprintf(u, sizeof u, "%llu", (unsigned long long)(last / 2));
    path(newdir, sizeof newdir, root, "legacy-until");
    const char *ru[] = {"restore", gen, "--data", newdir, "--pubkey", pk, "--until", u, NULL};
    if (run(ru) != 0)
        fail_msg("restore --until: %s %s", out, err);
    assert_int_equal(kr_test_meta_format(newdir), JRN_META_FORMAT_CURRENT);
    const char *vu[] = {"verify", "--data", newdir, "--pubkey", pk, NULL};
    if (run(vu) != 0)
        fail_msg("verify of the journal restored --until: %s %s", out, err);
#else
    (void)last;
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_check_path_too_long),
        cmocka_unit_test(test_backup_during_writes_restores),
        cmocka_unit_test(test_seven_generations_and_same_day),
        cmocka_unit_test(test_tampered_generations_refused),
        cmocka_unit_test(test_known_checkpoint),
        cmocka_unit_test(test_rotated_keys),
#ifdef JRN_TYPE_EPOCH_STARTED
        cmocka_unit_test(test_until_and_new_epoch),
#endif
        cmocka_unit_test(test_erase_tenant_in_every_generation),
        cmocka_unit_test(test_kill9_during_backup),
        cmocka_unit_test(test_kill9_during_restore),
        cmocka_unit_test(test_bench_erase),
        cmocka_unit_test(test_restore_legacy_index),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
