/*
 * powercut.c: an LD_PRELOAD shim that simulates a power cut under a data
 * directory, for tests/tools/powercut_test.c.
 *
 * Every write to a regular file under KR_PC_DIR (write, pwrite, writev,
 * pwritev and their 64/v2 forms; lock.mdb excepted: it holds no durable
 * state) and every flush of one (fsync, fdatasync) is an event. For each
 * write not yet covered by a flush the shim keeps an undo record: the file,
 * the offset and the bytes the write overwrote (read with pread first; zeros
 * past the end). A flush of a file makes its writes durable (their undo
 * records are dropped). A write on an O_DSYNC descriptor (LMDB's meta page)
 * is durable when it returns. A rename whose new name is under KR_PC_DIR is an
 * event too; it is durable once the new name's directory is flushed (fsync
 * of the directory). A file it replaced is kept aside (hard link NEW.pc-old)
 * until then, so the cut can put it back.
 *
 * At event number KR_PC_CUT_AT (1-based, counted before the event is
 * performed), the calling thread takes the shim's lock (so no other write
 * to a target proceeds), chooses which of the writes issued since their
 * file's last flush reached the disk, undoes the others (newest first), and
 * undoes the renames not made durable that did not happen (newest first),
 * and kills the process with SIGKILL. The choice (KR_PC_MODE):
 *   none   no unflushed write reached the disk;
 *   all    every one did;
 *   some   each write did or did not, from KR_PC_SEED;
 *   torn   each 512-byte sector of each write did or did not, from the seed.
 * An unflushed rename happened or not: never with none, always with all,
 * from the seed otherwise.
 * Undoing newest first restores, byte for byte, what the file held before
 * the dropped pieces, except where a kept later write overlaps a dropped
 * earlier one (then the earlier write's old bytes win); LMDB does not write
 * one page twice between flushes, so this does not arise for the journal.
 * Bytes a dropped write added past the file's old end come back as zeros
 * (the file keeps its new length, as after a cut that made the size but not
 * the data durable). Creating and unlinking files are not undone: only
 * renames, which is how kiroku makes files appear atomically.
 *
 * KR_PC_LOST_FLUSHES=1 plants a storage bug for the test to catch: flushes
 * return success but make nothing durable (as a disk that ignores cache
 * flushes), and O_DSYNC writes are not durable either.
 *
 * KR_PC_SKIP_ENV_SYNC=1 plants a journal bug for the test to catch: LMDB's
 * mdb_env_sync (interposed here: liblmdb is a shared library) returns success
 * without flushing, so with one flush per commit a batch whose meta page only
 * that call would make durable is acknowledged before any flush covers it.
 *
 * KR_PC_COUNT=FILE: at exit (when no cut happened), "events N\nrenames M\n" is
 * written to FILE, so a test can first count a run's events and then cut inside it.
 *
 * Built without sanitizers, like fsfault.c. Undo records are bounded
 * (PC_MAX_RECORDS, PC_MAX_BYTES); past them the shim aborts the process,
 * which the test reports.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define EXPORT         __attribute__((visibility("default")))
#define PC_MAX_RECORDS 8192u
#define PC_MAX_BYTES   (256u << 20)
#define PC_SECTOR      512u
#define PC_MAX_RENAMES 64u
#define PC_SAVED       ".pc-old"

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*pwritev2_fn)(int, const struct iovec *, int, off_t, int);
typedef int (*sync_fn)(int);
typedef int (*rename_fn)(const char *, const char *);
struct MDB_env;
typedef int (*env_sync_fn)(struct MDB_env *, int);

static write_fn real_write;
static pwrite_fn real_pwrite, real_pwrite64;
static writev_fn real_writev;
static pwritev_fn real_pwritev, real_pwritev64;
static pwritev2_fn real_pwritev2, real_pwritev64v2;
static sync_fn real_fsync, real_fdatasync;
static rename_fn real_rename;
static env_sync_fn real_env_sync;

enum { MODE_NONE, MODE_ALL, MODE_SOME, MODE_TORN };

static char cfg_dir[PATH_MAX], cfg_count[PATH_MAX];
static uint64_t cfg_cut_at; /* 0 = never */
static uint64_t cfg_seed = 1;
static int cfg_mode = MODE_SOME;
static bool cfg_lost_flushes, cfg_skip_env_sync;

struct undo {
    dev_t dev;
    ino_t ino;
    char path[PATH_MAX];
    off_t off;
    size_t len;
    uint8_t *old;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct undo *undo;
static size_t n_undo, undo_bytes;
static uint64_t n_events, n_renames_seen;

/* A rename not yet made durable; saved: the replaced file was linked aside. */
struct pending_rename {
    char from[PATH_MAX], to[PATH_MAX];
    bool saved;
};
static struct pending_rename renames[PC_MAX_RENAMES];
static size_t n_renames;

static void resolve(void)
{
    real_write = (write_fn)dlsym(RTLD_NEXT, "write");
    real_pwrite = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite64");
    real_writev = (writev_fn)dlsym(RTLD_NEXT, "writev");
    real_pwritev = (pwritev_fn)dlsym(RTLD_NEXT, "pwritev");
    real_pwritev64 = (pwritev_fn)dlsym(RTLD_NEXT, "pwritev64");
    real_pwritev2 = (pwritev2_fn)dlsym(RTLD_NEXT, "pwritev2");
    real_pwritev64v2 = (pwritev2_fn)dlsym(RTLD_NEXT, "pwritev64v2");
    real_fsync = (sync_fn)dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (sync_fn)dlsym(RTLD_NEXT, "fdatasync");
    real_rename = (rename_fn)dlsym(RTLD_NEXT, "rename");
    real_env_sync = (env_sync_fn)dlsym(RTLD_NEXT, "mdb_env_sync");
}

static void die(const char *what)
{
    fprintf(stderr, "powercut: %s\n", what);
    abort();
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        die("bad numeric setting");
    return (uint64_t)v;
}

__attribute__((constructor)) static void powercut_init(void)
{
    resolve();
    const char *d = getenv("KR_PC_DIR"), *c = getenv("KR_PC_COUNT"), *m = getenv("KR_PC_MODE");
    /* Resolved, as /proc/self/fd shows paths; as given if it does not exist. */
    if (!d || !realpath(d, cfg_dir))
        snprintf(cfg_dir, sizeof cfg_dir, "%s", d ? d : "");
    snprintf(cfg_count, sizeof cfg_count, "%s", c ? c : "");
    cfg_cut_at = env_u64("KR_PC_CUT_AT", 0);
    cfg_seed = env_u64("KR_PC_SEED", 1);
    cfg_lost_flushes = env_u64("KR_PC_LOST_FLUSHES", 0) != 0;
    cfg_skip_env_sync = env_u64("KR_PC_SKIP_ENV_SYNC", 0) != 0;
    if (!m || !*m || strcmp(m, "some") == 0)
        cfg_mode = MODE_SOME;
    else if (strcmp(m, "none") == 0)
        cfg_mode = MODE_NONE;
    else if (strcmp(m, "all") == 0)
        cfg_mode = MODE_ALL;
    else if (strcmp(m, "torn") == 0)
        cfg_mode = MODE_TORN;
    else
        die("bad KR_PC_MODE");
    undo = calloc(PC_MAX_RECORDS, sizeof *undo);
    if (!undo)
        die("out of memory");
}

__attribute__((destructor)) static void powercut_fini(void)
{
    if (!*cfg_count)
        return;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "events %llu\nrenames %llu\n", (unsigned long long)n_events,
                     (unsigned long long)n_renames_seen);
    int fd = open(cfg_count, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (real_write(fd, buf, (size_t)n) != n)
            fprintf(stderr, "powercut: cannot write %s\n", cfg_count);
        close(fd);
    }
}

/* splitmix64: the seed's stream of choices. */
static uint64_t rnd(void)
{
    uint64_t z = (cfg_seed += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* True (and *path set) when fd is a regular file under KR_PC_DIR, not lock.mdb. */
static bool target(int fd, struct stat *st, char *path)
{
    if (!*cfg_dir || fd < 0 || fstat(fd, st) != 0 || !S_ISREG(st->st_mode))
        return false;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, PATH_MAX - 1);
    if (n < 0)
        return false;
    path[n] = '\0';
    size_t dl = strlen(cfg_dir), nl = (size_t)n;
    if (nl <= dl || strncmp(path, cfg_dir, dl) != 0 || path[dl] != '/')
        return false;
    return !(nl >= 9 && strcmp(path + nl - 9, "/lock.mdb") == 0);
}

/* Undoes the pieces of the unflushed writes that did not reach the disk,
 * newest first, and kills the process. Called with the lock held. */
static void cut(void)
{
    for (size_t i = n_undo; i-- > 0;) {
        struct undo *u = &undo[i];
        int fd = open(u->path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        bool whole = cfg_mode == MODE_SOME ? (rnd() & 1) != 0 : cfg_mode == MODE_ALL;
        for (size_t at = 0; at < u->len; at += PC_SECTOR) {
            size_t piece = u->len - at < PC_SECTOR ? u->len - at : PC_SECTOR;
            bool keep = cfg_mode == MODE_TORN ? (rnd() & 1) != 0 : whole;
            if (!keep && real_pwrite(fd, u->old + at, piece, u->off + (off_t)at) != (ssize_t)piece)
                fprintf(stderr, "powercut: cannot undo a write to %s\n", u->path);
        }
        close(fd);
    }
    for (size_t i = n_renames; i-- > 0;) {
        struct pending_rename *r = &renames[i];
        char saved[PATH_MAX + 8];
        snprintf(saved, sizeof saved, "%s%s", r->to, PC_SAVED);
        bool happened = cfg_mode == MODE_ALL || (cfg_mode != MODE_NONE && (rnd() & 1) != 0);
        if (happened) {
            if (r->saved)
                unlink(saved);
        } else if (real_rename(r->to, r->from) != 0 ||
                   (r->saved && real_rename(saved, r->to) != 0)) {
            fprintf(stderr, "powercut: cannot undo the rename to %s\n", r->to);
        }
    }
    kill(getpid(), SIGKILL);
    for (;;)
        pause();
}

/* Counts an event; cuts the power when it is the chosen one. Lock held. */
static void event(void)
{
    if (++n_events == cfg_cut_at)
        cut();
}

/* Before a write of len bytes at off (-1: the descriptor's position) to fd:
 * counts it and records what it will overwrite. Returns with the lock held
 * when fd is a target (then *locked is true). */
static void before_write(int fd, size_t len, off_t off, bool *locked)
{
    *locked = false;
    struct stat st;
    char path[PATH_MAX];
    int saved = errno;
    if (!target(fd, &st, path)) {
        errno = saved;
        return;
    }
    pthread_mutex_lock(&lock);
    *locked = true;
    event();
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_DSYNC) && !cfg_lost_flushes) {
        errno = saved;
        return; /* durable when it returns */
    }
    if (off < 0)
        off = (fl >= 0 && (fl & O_APPEND)) ? st.st_size : lseek(fd, 0, SEEK_CUR);
    if (off < 0 || n_undo >= PC_MAX_RECORDS || undo_bytes + len > PC_MAX_BYTES)
        die("too many unflushed writes to track");
    struct undo *u = &undo[n_undo];
    u->old = calloc(1, len ? len : 1);
    if (!u->old)
        die("out of memory");
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    if (rfd >= 0) {
        size_t got = 0;
        while (got < len) {
            ssize_t r = pread(rfd, u->old + got, len - got, off + (off_t)got);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        close(rfd);
    }
    u->dev = st.st_dev;
    u->ino = st.st_ino;
    snprintf(u->path, sizeof u->path, "%s", path);
    u->off = off;
    u->len = len;
    n_undo++;
    undo_bytes += len;
    errno = saved;
}

static size_t iov_len(const struct iovec *iov, int cnt)
{
    size_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    return n;
}

#define WRITE_BODY(real, len, off, ...)                                                            \
    do {                                                                                           \
        if (!real)                                                                                 \
            resolve();                                                                             \
        bool locked_;                                                                              \
        before_write(fd, (len), (off), &locked_);                                                  \
        ssize_t rc_ = real(__VA_ARGS__);                                                           \
        if (locked_)                                                                               \
            pthread_mutex_unlock(&lock);                                                           \
        return rc_;                                                                                \
    } while (0)

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    WRITE_BODY(real_write, n, -1, fd, buf, n);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    WRITE_BODY(real_pwrite, n, off, fd, buf, n, off);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    WRITE_BODY(real_pwrite64, n, off, fd, buf, n, off);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    WRITE_BODY(real_writev, iov_len(iov, cnt), -1, fd, iov, cnt);
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    WRITE_BODY(real_pwritev, iov_len(iov, cnt), off, fd, iov, cnt, off);
}

EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    WRITE_BODY(real_pwritev64, iov_len(iov, cnt), off, fd, iov, cnt, off);
}

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    WRITE_BODY(real_pwritev2, iov_len(iov, cnt), off, fd, iov, cnt, off, flags);
}

EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    WRITE_BODY(real_pwritev64v2, iov_len(iov, cnt), off, fd, iov, cnt, off, flags);
}

/* True (and *path set) when fd is KR_PC_DIR or a directory under it. */
static bool dir_target(int fd, char *path)
{
    struct stat st;
    if (!*cfg_dir || fd < 0 || fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode))
        return false;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, PATH_MAX - 1);
    if (n < 0)
        return false;
    path[n] = '\0';
    size_t dl = strlen(cfg_dir);
    return strncmp(path, cfg_dir, dl) == 0 && (path[dl] == '\0' || path[dl] == '/');
}

/* The renames into directory dir are durable. Lock held. */
static void renames_durable(const char *dir)
{
    size_t k = 0, dl = strlen(dir);
    for (size_t i = 0; i < n_renames; i++) {
        struct pending_rename *r = &renames[i];
        const char *slash = strrchr(r->to, '/');
        if (slash && (size_t)(slash - r->to) == dl && strncmp(r->to, dir, dl) == 0) {
            if (r->saved) {
                char saved[PATH_MAX + 8];
                snprintf(saved, sizeof saved, "%s%s", r->to, PC_SAVED);
                unlink(saved);
            }
        } else {
            renames[k++] = *r;
        }
    }
    n_renames = k;
}

static int sync_body(sync_fn real, int fd)
{
    struct stat st;
    char path[PATH_MAX];
    int saved = errno;
    if (dir_target(fd, path)) {
        pthread_mutex_lock(&lock);
        event();
        int rc = real(fd);
        if (rc == 0 && !cfg_lost_flushes)
            renames_durable(path);
        pthread_mutex_unlock(&lock);
        return rc;
    }
    if (!target(fd, &st, path)) {
        errno = saved;
        return real(fd);
    }
    pthread_mutex_lock(&lock);
    event();
    int rc = real(fd);
    if (rc == 0 && !cfg_lost_flushes) {
        /* This file's writes are durable: drop their undo records. */
        size_t k = 0;
        for (size_t i = 0; i < n_undo; i++) {
            if (undo[i].dev == st.st_dev && undo[i].ino == st.st_ino) {
                undo_bytes -= undo[i].len;
                free(undo[i].old);
            } else {
                undo[k++] = undo[i];
            }
        }
        n_undo = k;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

EXPORT int fsync(int fd)
{
    if (!real_fsync)
        resolve();
    return sync_body(real_fsync, fd);
}

EXPORT int fdatasync(int fd)
{
    if (!real_fdatasync)
        resolve();
    return sync_body(real_fdatasync, fd);
}

EXPORT int mdb_env_sync(struct MDB_env *env, int force);
EXPORT int mdb_env_sync(struct MDB_env *env, int force)
{
    if (!real_env_sync)
        resolve();
    if (cfg_skip_env_sync)
        return 0; /* the planted bug: an acknowledgement without its flush */
    if (!real_env_sync)
        die("mdb_env_sync not found");
    return real_env_sync(env, force);
}

EXPORT int rename(const char *from, const char *to)
{
    if (!real_rename)
        resolve();
    char full[PATH_MAX];
    size_t dl = strlen(cfg_dir);
    if (!*cfg_dir || !realpath(from, full) || strncmp(full, cfg_dir, dl) != 0 || full[dl] != '/')
        return real_rename(from, to);
    pthread_mutex_lock(&lock);
    event();
    if (n_renames >= PC_MAX_RENAMES)
        die("too many unflushed renames to track");
    struct pending_rename *r = &renames[n_renames];
    snprintf(r->from, sizeof r->from, "%s", full);
    /* The new name, absolute: its directory resolved, its last part kept. */
    const char *slash = strrchr(to, '/');
    char dir[PATH_MAX], where[PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - to) : 1, slash ? to : ".");
    if (!realpath(*dir ? dir : "/", where))
        die("cannot resolve a rename's directory");
    size_t wl = strlen(where), bl = strlen(slash ? slash + 1 : to);
    if (wl + 1 + bl >= sizeof r->to)
        die("a rename's path is too long");
    memcpy(r->to, where, wl);
    r->to[wl] = '/';
    memcpy(r->to + wl + 1, slash ? slash + 1 : to, bl + 1);
    char saved[PATH_MAX + 8];
    snprintf(saved, sizeof saved, "%s%s", r->to, PC_SAVED);
    unlink(saved);
    r->saved = link(r->to, saved) == 0;
    int rc = real_rename(from, to);
    if (rc == 0) {
        /* Unflushed writes to the file now have its new name. */
        for (size_t i = 0; i < n_undo; i++)
            if (strcmp(undo[i].path, r->from) == 0)
                snprintf(undo[i].path, sizeof undo[i].path, "%s", r->to);
        n_renames++;
        n_renames_seen++;
    } else if (r->saved) {
        unlink(saved);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}
