/* test_util.c: see test_util.h. */
#include "test_util.h"

#include "endian_be.h"
#include "journal_internal.h"

#include <errno.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif
#include <fcntl.h>
#include <ftw.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#if defined(__SANITIZE_ADDRESS__)
#define KR_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KR_TEST_ASAN 1
#endif
#endif
#ifndef KR_TEST_ASAN
#define KR_TEST_ASAN 0
#endif

static void die(const char *what)
{
    fprintf(stderr, "test_util: %s: %s\n", what, strerror(errno));
    abort();
}

void kr_test_tmpdir(char *out, size_t cap)
{
    const char *base = getenv("TMPDIR");
    snprintf(out, cap, "%s/kiroku-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(out))
        die("mkdtemp");
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void kr_test_rmrf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *copy_from, *copy_to;

static int copy_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    char dst[4096];
    snprintf(dst, sizeof dst, "%s%s", copy_to, path + strlen(copy_from));
    if (flag == FTW_D) {
        if (mkdir(dst, st->st_mode & 07777) != 0 && errno != EEXIST)
            die("mkdir");
        return 0;
    }
    if (flag != FTW_F || !S_ISREG(st->st_mode))
        return 0;
    int in = open(path, O_RDONLY),
        out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, st->st_mode & 07777);
    if (in < 0 || out < 0)
        die("open");
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            die("write");
    close(in);
    close(out);
    return 0;
}

void kr_test_copytree(const char *from, const char *to)
{
    copy_from = from;
    copy_to = to;
    if (nftw(from, copy_entry, 16, FTW_PHYS) != 0)
        die("copytree");
}

void kr_test_env_open(const char *dir, MDB_env **env)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/journal", dir);
    if (mdb_env_create(env) || mdb_env_set_maxdbs(*env, 64) ||
        mdb_env_set_mapsize(*env, 1ull << 32) || mdb_env_open(*env, path, 0, 0600)) {
        fprintf(stderr, "test_util: cannot open %s\n", path);
        abort();
    }
}

void kr_test_txn_db(MDB_env *env, const char *name, MDB_txn **txn, MDB_dbi *dbi)
{
    if (mdb_txn_begin(env, NULL, 0, txn) || mdb_dbi_open(*txn, name, 0, dbi)) {
        fprintf(stderr, "test_util: cannot open database %s\n", name);
        abort();
    }
}

char *kr_test_slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "test_util: cannot open %s: %s\n", path, strerror(errno));
        abort();
    }
    size_t cap = 4096, got = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            die("out of memory");
        if (got + 1 >= cap) {
            cap *= 2;
            char *more = realloc(buf, cap);
            if (!more)
                free(buf);
            buf = more;
            continue;
        }
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("read");
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    if (len)
        *len = got;
    return buf;
}

void kr_test_print_log(const char *path)
{
    char *text = kr_test_slurp(path, NULL);
    fprintf(stderr, "---- output ----\n%s---- end ----\n", text);
    free(text);
}

#if KR_TEST_ASAN
static int find_asan(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    if (info->dlpi_name && strstr(info->dlpi_name, "/libasan.so")) {
        snprintf(data, 4096, "%s", info->dlpi_name);
        return 1;
    }
    return 0;
}
#endif

void kr_test_preload(char *out, size_t cap, const char *lib)
{
#if KR_TEST_ASAN
    char asan[4096] = "";
    dl_iterate_phdr(find_asan, asan);
    if (!*asan)
        die("built with ASan, but no libasan.so is loaded (static runtime?)");
    snprintf(out, cap, "LD_PRELOAD=%s:%s", asan, lib);
#else
    snprintf(out, cap, "LD_PRELOAD=%s", lib);
#endif
}

int kr_test_run_env(const char *bin, char **argv, const char *const *extra, const char *drop_prefix,
                    const char *log, unsigned timeout_s)
{
    size_t n = 0, ne = 0, dl = strlen(drop_prefix);
    while (environ[n])
        n++;
    while (extra && extra[ne])
        ne++;
    char **envp = calloc(n + ne + 1, sizeof *envp);
    if (!envp)
        die("out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 &&
            strncmp(environ[i], drop_prefix, dl) != 0)
            envp[k++] = environ[i];
    for (size_t i = 0; i < ne; i++)
        envp[k++] = (char *)extra[i];
    envp[k] = NULL;
    argv[0] = (char *)bin;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(126);
        int in = open("/dev/null", O_RDONLY), out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
            _exit(126);
        execve(bin, argv, envp);
        _exit(127);
    }
    free(envp);
    struct kr_test_child child = {.pid = pid};
    if (!kr_test_wait_for(kr_test_child_exited, &child, timeout_s * 1000u, "a child")) {
        int st;
        kill(pid, SIGKILL);
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        kr_test_print_log(log);
        fprintf(stderr, "test_util: %s %s did not end within %u s\n", argv[1] ? argv[1] : "",
                argv[1] && argv[2] ? argv[2] : "", timeout_s);
        abort();
    }
    return child.status;
}

pid_t kr_test_spawn(const char *bin, const char *const *argv, const char *out, const char *err,
                    bool append_err)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(126);
        int in = open("/dev/null", O_RDONLY);
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(err, O_WRONLY | O_CREAT | (append_err ? O_APPEND : O_TRUNC), 0600);
        if (in < 0 || fo < 0 || fe < 0 || dup2(in, 0) < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
            _exit(126);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

void kr_test_node_argv(const char *argv[KR_TEST_NODE_ARGV_MAX], const struct kr_test_node_args *a)
{
    const char *base[] = {"kiroku",        "serve",  "--data",      a->data, "--nats",     a->nats,
                          "--node",        a->name,  "--listen",    a->ipc,  "--operator", a->op,
                          "--replication", "quorum", "--lease-ttl", "2000",  "--json"};
    size_t n = sizeof base / sizeof base[0];
    memcpy(argv, base, sizeof base);
    for (const char *const *e = a->extra; e && *e; e++) {
        if (n + 1 >= KR_TEST_NODE_ARGV_MAX) {
            errno = E2BIG;
            die("kr_test_node_argv");
        }
        argv[n++] = *e;
    }
    argv[n] = NULL;
}

uint32_t kr_test_meta_format(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {strlen(JRN_META_FORMAT), JRN_META_FORMAT}, v;
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, JRN_DB_META, &txn, &dbi);
    if (mdb_get(txn, dbi, &k, &v) || v.mv_size != 4) {
        fprintf(stderr, "test_util: no meta format in %s\n", dir);
        abort();
    }
    uint32_t fmt = kr_get_be32(v.mv_data);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return fmt;
}

void kr_test_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool kr_test_parse_ack(const char *line, size_t len, uint64_t *seq, uint8_t commitment[32])
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < len && line[i] >= '0' && line[i] <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(line[i] - '0');
        i++;
    }
    if (i == 0 || i + 1 + 2 * (size_t)32 + 1 != len || line[i] != ' ' || line[len - 1] != '\n')
        return false;
    i++;
    for (size_t k = 0; k < 32; k++, i += 2) {
        int hi = hexval(line[i]), lo = hexval(line[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        commitment[k] = (uint8_t)(hi << 4 | lo);
    }
    *seq = v;
    return true;
}

int kr_test_run(const char *bin, const char *const *args, char *out, char *err, size_t cap)
{
    int po[2], pe[2];
    if (pipe(po) != 0)
        return -1;
    if (pipe(pe) != 0) {
        close(po[0]);
        close(po[1]);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        const char *argv[32] = {"kiroku"};
        size_t n = 1;
        for (; args[n - 1] && n < 31; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    size_t len[2] = {0, 0};
    char scratch[4096];
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    while (fds[0].fd >= 0 || fds[1].fd >= 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !fds[i].revents)
                continue;
            char *buf = i == 0 ? out : err;
            ssize_t r;
            if (buf && len[i] + 1 < cap)
                r = read(fds[i].fd, buf + len[i], cap - 1 - len[i]);
            else
                r = read(fds[i].fd, scratch, sizeof scratch); /* discard */
            if (r <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
            } else if (buf && len[i] + 1 < cap) {
                len[i] += (size_t)r;
            }
        }
    }
    if (fds[0].fd >= 0)
        close(fds[0].fd);
    if (fds[1].fd >= 0)
        close(fds[1].fd);
    if (out && cap)
        out[len[0]] = '\0';
    if (err && cap)
        err[len[1]] = '\0';
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* ---- Waiting ---- */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void kr_test_pause_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

bool kr_test_no_leaks(void)
{
#ifdef __SANITIZE_ADDRESS__
    return __lsan_do_recoverable_leak_check() == 0;
#else
    return true;
#endif
}

bool kr_test_wait_for(bool (*ready)(void *arg), void *arg, unsigned deadline_ms, const char *what)
{
    uint64_t end = mono_ns() + (uint64_t)deadline_ms * 1000000ull;
    unsigned pause = 1;
    for (;;) {
        if (ready(arg))
            return true;
        if (mono_ns() >= end)
            break;
        kr_test_pause_ms(pause);
        pause = pause * 2 > KR_TEST_POLL_MS ? KR_TEST_POLL_MS : pause * 2;
    }
    fprintf(stderr, "timed out after %u ms waiting for %s\n", deadline_ms, what);
    return false;
}

bool kr_test_child_exited(void *child)
{
    struct kr_test_child *c = child;
    return waitpid(c->pid, &c->status, WNOHANG) == c->pid;
}

int kr_test_stop(pid_t pid, int sig, const char *errlog)
{
    if (kill(pid, sig) != 0)
        return -1;
    struct kr_test_child ch = {pid, 0};
    if (!kr_test_wait_for(kr_test_child_exited, &ch, KR_TEST_WAIT_MS, "a child's exit")) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (errlog)
            kr_test_print_log(errlog);
        return -1;
    }
    return WIFEXITED(ch.status) ? WEXITSTATUS(ch.status) : 128 + WTERMSIG(ch.status);
}

struct role_line {
    const char *out;
    char want[64];
};

static bool role_line_is(void *arg)
{
    const struct role_line *r = arg;
    FILE *f = fopen(r->out, "rb");
    if (!f)
        return false;
    char line[2048], last[2048] = "";
    while (fgets(line, sizeof line, f))
        if (strchr(line, '\n'))
            snprintf(last, sizeof last, "%s", line);
    fclose(f);
    return strncmp(last, r->want, strlen(r->want)) == 0;
}

bool kr_test_wait_role(const char *out, const char *role, const char *errlog)
{
    struct role_line r = {.out = out};
    snprintf(r.want, sizeof r.want, "{\"role\":\"%s\"", role);
    if (kr_test_wait_for(role_line_is, &r, KR_TEST_WAIT_MS, role))
        return true;
    if (errlog)
        kr_test_print_log(errlog);
    return false;
}
