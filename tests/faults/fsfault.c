/*
 * fsfault.c: an LD_PRELOAD shim that injects storage faults into a journal's
 * LMDB data file, for tests/tools/fault_test.c.
 *
 * What LMDB 0.9.24 (Debian 12) calls, checked with strace and
 * `nm -D liblmdb.so.0`: a commit writes dirty pages with pwrite (one page) or
 * lseek + writev (runs of pages) on the data.mdb descriptor, syncs it with
 * fdatasync, then writes the meta page with pwrite on a second data.mdb
 * descriptor opened O_DSYNC. write is used when a new environment is
 * initialised, fsync by mdb_env_sync(force) and copies. All of these are
 * interposed here (pwrite64, pwritev, pwritev2 too, for other builds), plus
 * close to forget descriptors.
 *
 * Only descriptors whose path (readlink /proc/self/fd/N) ends in
 * "/journal/data.mdb" are affected. The classification is cached per
 * descriptor together with the file's device and inode, which are checked on
 * every call with fstat, so a descriptor number reused for another file (even
 * after a close the shim did not see, such as fclose's) is looked up again.
 *
 * Environment, read once at load:
 *   KR_FAULT_SYNC_EIO_AFTER=N  the first N syncs (fdatasync or fsync) of
 *                              data.mdb succeed, every later one fails with EIO
 *                              (the data is in fact synced first: the fault is
 *                              in the report only, as after a real failed
 *                              writeback whose pages the kernel dropped).
 *   KR_FAULT_ENOSPC_AFTER=N    after N successful writes to data.mdb, the next
 *                              KR_FAULT_ENOSPC_COUNT writes (default: all of
 *                              them) fail with ENOSPC, writing nothing; then
 *                              writes succeed again.
 *   KR_FAULT_ENOSPC_COUNT=M    see above.
 *   KR_FAULT_ENOSPC_WHERE=W    which writes count and fail: "all" (default),
 *                              "pages" (the page descriptor only) or "meta"
 *                              (the O_DSYNC meta page descriptor only). A real
 *                              disk full hits only block allocation: LMDB's
 *                              meta pages are allocated with the file and
 *                              rewritten in place, so on ext4 or xfs only page
 *                              writes get ENOSPC; on copy-on-write file systems
 *                              (btrfs, zfs, reflinked files) the meta write can
 *                              get it too.
 *   KR_FAULT_STATS=FILE        at exit, append "key value" lines with the
 *                              counters below to FILE.
 *   KR_FAULT_MARK=FILE         append a line "# fault <event>" to FILE when
 *                              the first sync fails ("sync-eio"), when the
 *                              first write fails ("enospc-begin") and at the
 *                              first successful write after the ENOSPC window
 *                              ("enospc-end"). Pointed at the acks file of
 *                              `kiroku bench append`, whose lines are written
 *                              by the journal's writer thread (the thread that
 *                              commits), the marks fall exactly between the
 *                              acknowledgements before and after the event.
 *
 * Counters (all for data.mdb only; writes_failed and writes_after_enospc count
 * the writes selected by KR_FAULT_ENOSPC_WHERE, the others all writes):
 *   syncs                     sync calls
 *   syncs_failed              syncs that returned EIO
 *   syncs_after_sync_fail     sync calls after the first failed one
 *   writes                    write calls (all kinds)
 *   writes_failed             writes that returned ENOSPC
 *   writes_after_sync_fail    write calls after the first failed sync
 *   writes_after_enospc       successful writes after the ENOSPC window ended
 *
 * Built without sanitizers (it must load into sanitized binaries, after the
 * sanitizer runtime) and with no allocation on the I/O path.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define TARGET_SUFFIX "/journal/data.mdb"
#define FD_CACHE      4096

/* The shim exports only the interposed functions. */
#define EXPORT __attribute__((visibility("default")))

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*pwritev2_fn)(int, const struct iovec *, int, off_t, int);
typedef int (*sync_fn)(int);
typedef int (*close_fn)(int);

static write_fn real_write;
static pwrite_fn real_pwrite, real_pwrite64;
static writev_fn real_writev;
static pwritev_fn real_pwritev, real_pwritev64;
static pwritev2_fn real_pwritev2, real_pwritev64v2;
static sync_fn real_fsync, real_fdatasync;
static close_fn real_close;

/* Configuration; UINT64_MAX = off / unlimited. */
static uint64_t cfg_sync_eio_after = UINT64_MAX;
static uint64_t cfg_enospc_after = UINT64_MAX;
static uint64_t cfg_enospc_count = UINT64_MAX;
static char cfg_stats[PATH_MAX], cfg_mark[PATH_MAX];
enum { WHERE_ALL, WHERE_PAGES, WHERE_META };
static int cfg_where = WHERE_ALL;

static _Atomic uint64_t n_syncs, n_syncs_failed, n_syncs_after_fail;
static _Atomic uint64_t n_writes, n_writes_ok, n_writes_failed, n_writes_after_sync_fail,
    n_writes_after_enospc;
static atomic_bool sync_failed_once, enospc_began, enospc_ended;

/* Descriptor kinds. */
enum { FD_UNKNOWN, FD_OTHER, FD_PAGES, FD_META };

/* Per descriptor: its kind, with the file identity it was classified for.
 * Not fully race-free (two threads classifying one descriptor at once could
 * mix entries), which is enough here: in kiroku only the journal's writer
 * thread writes and syncs data.mdb. */
struct fd_entry {
    _Atomic int kind;
    _Atomic dev_t dev;
    _Atomic ino_t ino;
};
static struct fd_entry fd_cache[FD_CACHE];

static uint64_t env_u64(const char *name)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return UINT64_MAX;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) {
        fprintf(stderr, "fsfault: bad %s=%s\n", name, s);
        abort();
    }
    return (uint64_t)v;
}

static void env_path(const char *name, char *out, size_t cap)
{
    const char *s = getenv(name);
    snprintf(out, cap, "%s", s ? s : "");
}

static void *next_sym(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

static void resolve(void)
{
    real_write = (write_fn)next_sym("write");
    real_pwrite = (pwrite_fn)next_sym("pwrite");
    real_pwrite64 = (pwrite_fn)next_sym("pwrite64");
    real_writev = (writev_fn)next_sym("writev");
    real_pwritev = (pwritev_fn)next_sym("pwritev");
    real_pwritev64 = (pwritev_fn)next_sym("pwritev64");
    real_pwritev2 = (pwritev2_fn)next_sym("pwritev2");
    real_pwritev64v2 = (pwritev2_fn)next_sym("pwritev64v2");
    real_fsync = (sync_fn)next_sym("fsync");
    real_fdatasync = (sync_fn)next_sym("fdatasync");
    real_close = (close_fn)next_sym("close");
}

__attribute__((constructor)) static void fsfault_init(void)
{
    resolve();
    cfg_sync_eio_after = env_u64("KR_FAULT_SYNC_EIO_AFTER");
    cfg_enospc_after = env_u64("KR_FAULT_ENOSPC_AFTER");
    cfg_enospc_count = env_u64("KR_FAULT_ENOSPC_COUNT");
    env_path("KR_FAULT_STATS", cfg_stats, sizeof cfg_stats);
    env_path("KR_FAULT_MARK", cfg_mark, sizeof cfg_mark);
    const char *w = getenv("KR_FAULT_ENOSPC_WHERE");
    if (!w || !*w || strcmp(w, "all") == 0) {
        cfg_where = WHERE_ALL;
    } else if (strcmp(w, "pages") == 0) {
        cfg_where = WHERE_PAGES;
    } else if (strcmp(w, "meta") == 0) {
        cfg_where = WHERE_META;
    } else {
        fprintf(stderr, "fsfault: bad KR_FAULT_ENOSPC_WHERE=%s\n", w);
        abort();
    }
}

/* Appends a short text to a file with the real write, keeping errno. */
static void append_line(const char *path, const char *text)
{
    if (!*path)
        return;
    int saved = errno;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        size_t len = strlen(text);
        if (real_write(fd, text, len) != (ssize_t)len)
            fprintf(stderr, "fsfault: cannot write %s\n", path);
        real_close(fd);
    }
    errno = saved;
}

__attribute__((destructor)) static void fsfault_fini(void)
{
    if (!*cfg_stats)
        return;
    char buf[1024];
    snprintf(buf, sizeof buf,
             "pid %ld\nsyncs %llu\nsyncs_failed %llu\nsyncs_after_sync_fail %llu\n"
             "writes %llu\nwrites_failed %llu\nwrites_after_sync_fail %llu\n"
             "writes_after_enospc %llu\n",
             (long)getpid(), (unsigned long long)n_syncs, (unsigned long long)n_syncs_failed,
             (unsigned long long)n_syncs_after_fail, (unsigned long long)n_writes,
             (unsigned long long)n_writes_failed, (unsigned long long)n_writes_after_sync_fail,
             (unsigned long long)n_writes_after_enospc);
    append_line(cfg_stats, buf);
}

/* FD_PAGES or FD_META for a journal's data.mdb (LMDB opens the meta page
 * descriptor O_DSYNC), FD_OTHER for anything else. */
static int classify(int fd, const struct stat *st)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return FD_OTHER;
    path[n] = '\0';
    size_t sl = strlen(TARGET_SUFFIX);
    if (!S_ISREG(st->st_mode) || (size_t)n < sl || memcmp(path + n - sl, TARGET_SUFFIX, sl) != 0)
        return FD_OTHER;
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_DSYNC) ? FD_META : FD_PAGES;
}

/* The kind of fd. Keeps errno. */
static int fd_kind(int fd)
{
    if (fd < 0)
        return FD_OTHER;
    int saved = errno;
    struct stat st;
    int kind = FD_OTHER;
    if (fstat(fd, &st) == 0) {
        if (fd < FD_CACHE) {
            struct fd_entry *e = &fd_cache[fd];
            int k = atomic_load(&e->kind);
            if (k != FD_UNKNOWN && atomic_load(&e->dev) == st.st_dev &&
                atomic_load(&e->ino) == st.st_ino) {
                kind = k;
            } else {
                kind = classify(fd, &st);
                atomic_store(&e->kind, FD_UNKNOWN);
                atomic_store(&e->dev, st.st_dev);
                atomic_store(&e->ino, st.st_ino);
                atomic_store(&e->kind, kind);
            }
        } else {
            kind = classify(fd, &st);
        }
    }
    errno = saved;
    return kind;
}

static bool is_target(int fd)
{
    return fd_kind(fd) != FD_OTHER;
}

static bool selected(int kind)
{
    return cfg_where == WHERE_ALL || (cfg_where == WHERE_PAGES && kind == FD_PAGES) ||
           (cfg_where == WHERE_META && kind == FD_META);
}

/* Called before a write to data.mdb; true = fail it with ENOSPC. */
static bool write_fault(int kind)
{
    atomic_fetch_add(&n_writes, 1);
    if (atomic_load(&sync_failed_once))
        atomic_fetch_add(&n_writes_after_sync_fail, 1);
    if (cfg_enospc_after == UINT64_MAX || !selected(kind))
        return false;
    /* Only the writer thread writes data.mdb, so this needs no more care. */
    uint64_t ok = atomic_load(&n_writes_ok), failed = atomic_load(&n_writes_failed);
    if (ok >= cfg_enospc_after && failed < cfg_enospc_count) {
        atomic_fetch_add(&n_writes_failed, 1);
        if (!atomic_exchange(&enospc_began, true))
            append_line(cfg_mark, "# fault enospc-begin\n");
        return true;
    }
    return false;
}

static void write_done(int kind, ssize_t rc)
{
    if (rc < 0 || !selected(kind))
        return;
    atomic_fetch_add(&n_writes_ok, 1);
    if (atomic_load(&enospc_began)) {
        atomic_fetch_add(&n_writes_after_enospc, 1);
        if (!atomic_exchange(&enospc_ended, true))
            append_line(cfg_mark, "# fault enospc-end\n");
    }
}

#define WRITE_BODY(real, ...)                                                                      \
    do {                                                                                           \
        if (!real)                                                                                 \
            resolve();                                                                             \
        if (!real) {                                                                               \
            errno = ENOSYS;                                                                        \
            return -1;                                                                             \
        }                                                                                          \
        int kind_ = fd_kind(fd);                                                                   \
        if (kind_ == FD_OTHER)                                                                     \
            return real(__VA_ARGS__);                                                              \
        if (write_fault(kind_)) {                                                                  \
            errno = ENOSPC;                                                                        \
            return -1;                                                                             \
        }                                                                                          \
        ssize_t rc_ = real(__VA_ARGS__);                                                           \
        write_done(kind_, rc_);                                                                    \
        return rc_;                                                                                \
    } while (0)

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    WRITE_BODY(real_write, fd, buf, n);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    WRITE_BODY(real_pwrite, fd, buf, n, off);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    WRITE_BODY(real_pwrite64, fd, buf, n, off);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    WRITE_BODY(real_writev, fd, iov, cnt);
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    WRITE_BODY(real_pwritev, fd, iov, cnt, off);
}

EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    WRITE_BODY(real_pwritev64, fd, iov, cnt, off);
}

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    WRITE_BODY(real_pwritev2, fd, iov, cnt, off, flags);
}

EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    WRITE_BODY(real_pwritev64v2, fd, iov, cnt, off, flags);
}

static int sync_body(sync_fn real, int fd)
{
    if (!is_target(fd))
        return real(fd);
    uint64_t k = atomic_fetch_add(&n_syncs, 1); /* this is sync number k + 1 */
    if (atomic_load(&sync_failed_once))
        atomic_fetch_add(&n_syncs_after_fail, 1);
    int rc = real(fd);
    if (rc != 0 || cfg_sync_eio_after == UINT64_MAX || k < cfg_sync_eio_after)
        return rc;
    atomic_fetch_add(&n_syncs_failed, 1);
    if (!atomic_exchange(&sync_failed_once, true))
        append_line(cfg_mark, "# fault sync-eio\n");
    errno = EIO;
    return -1;
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

EXPORT int close(int fd)
{
    if (!real_close)
        resolve();
    if (fd >= 0 && fd < FD_CACHE)
        atomic_store(&fd_cache[fd].kind, 0);
    return real_close(fd);
}
