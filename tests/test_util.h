/*
 * test_util.h: helpers shared by the test binaries: scratch directories, and
 * direct access to a journal's LMDB environment for tests that tamper with
 * stored bytes.
 */
#ifndef KR_TEST_UTIL_H
#define KR_TEST_UTIL_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Makes a fresh empty directory under $TMPDIR (or /tmp) and writes its path
 * into out (cap bytes). Aborts the test binary on failure. */
void kr_test_tmpdir(char *out, size_t cap);

/* Removes a directory tree. Silently ignores what is not there. */
void kr_test_rmrf(const char *path);

/* Copies a directory tree (regular files and directories only, modes kept). */
void kr_test_copytree(const char *from, const char *to);

/* Opens the LMDB environment of the journal in data directory dir for
 * tampering (read-write, no journal lock). *env must be closed with
 * mdb_env_close. Aborts on failure. */
void kr_test_env_open(const char *dir, MDB_env **env);

/* Opens named database `name` in a new write transaction of env. */
void kr_test_txn_db(MDB_env *env, const char *name, MDB_txn **txn, MDB_dbi *dbi);

/* The whole of a small file, NUL-terminated (*len, may be NULL, gets its
 * length). Aborts if it cannot be read. */
char *kr_test_slurp(const char *path, size_t *len);

/* Prints the file at path (a child's output) to stderr between markers. */
void kr_test_print_log(const char *path);

/* "LD_PRELOAD=<lib>" into out for an LD_PRELOAD shim; in the sanitized build
 * the ASan runtime this test runs with comes first. Aborts if it cannot. */
void kr_test_preload(char *out, size_t cap, const char *lib);

/* Runs bin with argv (argv[0] is set to bin) and the environment of this
 * process minus LD_PRELOAD and every variable starting with drop_prefix,
 * plus `extra` (NULL-terminated, may be NULL); stdin /dev/null, stdout and
 * stderr to the file `log`. The child dies with this process. Returns its
 * wait status; past timeout_s it is killed, its output printed, and the test
 * aborts. */
int kr_test_run_env(const char *bin, char **argv, const char *const *extra, const char *drop_prefix,
                    const char *log, unsigned timeout_s);

/* Starts bin with argv (NULL-terminated; argv[0] is the program's name) in
 * the background, stdin /dev/null, stdout to the file `out` (truncated) and
 * stderr to `err` (appended to when append_err, else truncated). The child
 * dies with this process. Returns its pid; aborts the test if it cannot
 * fork. Wait for it with kr_test_wait_for and kr_test_child_exited. */
pid_t kr_test_spawn(const char *bin, const char *const *argv, const char *out, const char *err,
                    bool append_err);

/* A cluster node a test starts: `kiroku serve --data DATA --nats NATS
 * --node NAME --listen IPC --operator OP --replication quorum --lease-ttl
 * 2000 --json`, then `extra` (NULL-terminated; NULL = none). */
struct kr_test_node_args {
    const char *name, *data, *nats, *ipc, *op;
    const char *const *extra;
};
#define KR_TEST_NODE_ARGV_MAX 40
/* Fills argv (KR_TEST_NODE_ARGV_MAX entries) with a's command line,
 * NULL-terminated, for kr_test_spawn; too many extra arguments abort the
 * test. */
void kr_test_node_argv(const char *argv[KR_TEST_NODE_ARGV_MAX], const struct kr_test_node_args *a);

/* The meta `format` of the journal in data directory dir, read directly. */
uint32_t kr_test_meta_format(const char *dir);

/* Parses one acknowledgement line of `kiroku bench append --acks`: "seq hex\n"
 * of len bytes, newline included, hex being the 32-byte commitment. False if
 * the line is malformed. */
bool kr_test_parse_ack(const char *line, size_t len, uint64_t *seq, uint8_t commitment[32]);

/* Big-endian u64 key helper. */
void kr_test_be64(uint8_t out[8], uint64_t v);

/* Runs program `bin` (argv[0] "kiroku") with args (NULL-terminated, at most
 * 30), its stdout into out and stderr into err (each NUL-terminated, at most
 * cap - 1 bytes kept; err may be NULL to discard), reading both pipes at once
 * so the child never blocks on a full one. The child dies with the test
 * (PR_SET_PDEATHSIG). Returns the exit status, or -1 if it did not exit. */
int kr_test_run(const char *bin, const char *const *args, char *out, char *err, size_t cap);

/* ---- Waiting for something to happen ----
 *
 * A test that needs another thread or process to get somewhere waits for
 * that event, never for a guessed time, and a wait that runs out fails the
 * test: assert the result (assert_true(kr_test_wait_for(...))). */

/* Between two looks at what is awaited: from 1 ms, doubling up to this
 * (quick events are seen at once, slow checks do not hog the machine). */
#define KR_TEST_POLL_MS 100u
/* The deadline of a wait for something that normally takes milliseconds to
 * a few seconds: generous, since sanitizer builds and parallel tests share
 * the machine. */
#define KR_TEST_WAIT_MS 60000u

/* Calls ready(arg) until it returns true (then true), pausing between calls
 * (up to KR_TEST_POLL_MS); false once deadline_ms have passed on the
 * monotonic clock, after printing "timed out after N ms waiting for WHAT" on
 * stderr. */
__attribute__((warn_unused_result)) bool kr_test_wait_for(bool (*ready)(void *arg), void *arg,
                                                          unsigned deadline_ms, const char *what);

/* Pauses ms milliseconds (between the looks of a wait).
 * Never a way to synchronise: wait for the event instead. */
void kr_test_pause_ms(unsigned ms);

/* For kr_test_wait_for: whether child ((struct kr_test_child *)arg)->pid
 * has exited (then reaped, its wait status in ->status); false while it runs. */
struct kr_test_child {
    pid_t pid;
    int status;
};
bool kr_test_child_exited(void *child);

/* Sends pid signal sig (0: none, only wait) and waits for it to end
 * (KR_TEST_WAIT_MS): its exit
 * code, 128 + the signal that ended it, or -1 when it did not end in time
 * (then it is killed, reaped, and errlog, if not NULL, printed). */
int kr_test_stop(pid_t pid, int sig, const char *errlog);

/* Waits (KR_TEST_WAIT_MS) until the newest complete line of a kiroku node's
 * JSON output file `out` starts {"role":"ROLE"; false, with errlog (if not
 * NULL) printed, when it does not. */
bool kr_test_wait_role(const char *out, const char *role, const char *errlog);

/* Whether LeakSanitizer finds no unreachable memory in this process now
 * (its report, if any, on stderr; tests/lsan.supp applies). Always true in
 * a build without the sanitizer: a test of a leak fails only under it. */
bool kr_test_no_leaks(void);

#endif
