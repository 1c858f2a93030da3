/*
 * backup.c: backup generations, their checks and restore (see backup.h).
 *
 * Design notes
 * - Consistency. LMDB's compacting copy (mdb_env_copyfd2 with
 *   MDB_CP_COMPACT) walks one read transaction's snapshot, so the journal
 *   copy is a committed state: its records, tree, checkpoints and views
 *   agree, and its newest checkpoint (stored in the same transaction as the
 *   records it covers) is at its last seq. Which snapshot the copy took is
 *   learned afterwards by opening the copy, our own file, read-only.
 * - The manifest names the files of the generation; a check walks the
 *   directory and refuses anything it does not list, so nothing unproven is
 *   ever opened. LMDB's own lock file (journal/lock.mdb, made by a read-only
 *   open during `backup check`) is the one exception: it is never read as
 *   data and restore never copies it.
 * - Atomic replacement. renameat2(RENAME_EXCHANGE) swaps the finished
 *   generation with the day's old one in one step; where the file system
 *   lacks it, the old one is renamed aside first and a crash in between is
 *   repaired by the next run (an ".old-<day>-*" whose day is missing is
 *   renamed back rather than removed).
 */
#include "backup.h"

#include "backup_manifest.h"
#include "journal.h"
#include "jst.h"
#include "keystore.h"
#include "note.h"
#include "path.h"
#include "verify.h"
#include "views.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef KIROKU_VERSION
#define KIROKU_VERSION "0.1.0"
#endif

/* Bytes read or written per call when copying and hashing files. */
#define COPY_BUF (1u << 20)
/* Depth of a generation's tree: GEN/dir/file. */
#define GEN_DEPTH_MAX 2

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void say(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(char *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    vsnprintf(why, BACKUP_REASON_MAX, fmt, ap);
    va_end(ap);
}

static kr_err fsync_path(const char *path, bool dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return kr_err_from_errno(errno);
    kr_err err = fsync(fd) == 0 ? KR_OK : kr_err_from_errno(errno);
    close(fd);
    return err;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rmtree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static kr_err mkdir_p(const char *path, mode_t mode)
{
    char tmp[KR_PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return KR_ETOOLARGE;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST)
            return kr_err_from_errno(errno);
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return kr_err_from_errno(errno);
    return KR_OK;
}

/* gen/f and tmp/f into src and dst (KR_PATH_MAX each), and the directories
 * of tmp/f made (a manifest's paths are checked: no "..", no empty part). */
static kr_err file_paths(const char *gen, const char *tmp, const struct bmf_file *f,
                         char src[KR_PATH_MAX], char dst[KR_PATH_MAX])
{
    kr_err err;
    if ((err = kr_path_join(src, KR_PATH_MAX, gen, f->path)) ||
        (err = kr_path_join(dst, KR_PATH_MAX, tmp, f->path)))
        return err;
    char *slash = strrchr(dst, '/');
    if (slash && slash > dst + strlen(tmp)) {
        *slash = '\0';
        if ((err = mkdir_p(dst, 0700)))
            return err;
        *slash = '/';
    }
    return KR_OK;
}

/* Hashes the copy as LMDB writes it: a second thread reads behind the
 * writer, up to the size written so far (LMDB's compacting copy writes its
 * output once, front to back: `mdb_copy -c` can write it to a pipe), and
 * starts the write-back of what it has read, so that hashing and most of the
 * final fsync overlap LMDB's walk of the tree. */
struct follower {
    int fd; /* read-only, on the file being written */
    struct kr_sha256_ctx sha;
    uint64_t bytes;
    atomic_bool writer_done;
    kr_err err;
};

static void *follow_main(void *arg)
{
    struct follower *f = arg;
    uint8_t *buf = malloc(COPY_BUF);
    if (!buf) {
        f->err = KR_ENOMEM;
        return NULL;
    }
    for (;;) {
        bool done = atomic_load(&f->writer_done); /* before the size: see below */
        struct stat st;
        if (fstat(f->fd, &st) != 0) {
            f->err = kr_err_from_errno(errno);
            break;
        }
        if ((uint64_t)st.st_size <= f->bytes) {
            if (done)
                break; /* the size read after the writer ended: the whole file */
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
            continue;
        }
        uint64_t want = (uint64_t)st.st_size - f->bytes;
        ssize_t n = pread(f->fd, buf, want < COPY_BUF ? (size_t)want : COPY_BUF, (off_t)f->bytes);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            f->err = n < 0 ? kr_err_from_errno(errno) : KR_EIO;
            break;
        }
        kr_sha256_update(&f->sha, buf, (size_t)n);
        (void)sync_file_range(f->fd, (off_t)f->bytes, n, SYNC_FILE_RANGE_WRITE);
        f->bytes += (uint64_t)n;
    }
    free(buf);
    return NULL;
}

/* Starts a follower on path (being written through another descriptor). */
static kr_err follow_start(const char *path, struct follower *f, pthread_t *tid)
{
    memset(f, 0, sizeof *f);
    f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f->fd < 0)
        return kr_err_from_errno(errno);
    kr_sha256_init(&f->sha);
    if (pthread_create(tid, NULL, follow_main, f) != 0) {
        close(f->fd);
        f->fd = -1;
        return KR_ENOMEM;
    }
    return KR_OK;
}

/* Tells the follower the writer is done, fsyncs out meanwhile, waits for the
 * follower and checks that it hashed the whole file. */
static kr_err follow_finish(struct follower *f, pthread_t tid, int out, kr_err err,
                            uint8_t sha[KR_HASH_LEN], uint64_t *size)
{
    atomic_store(&f->writer_done, true);
    if (err == KR_OK && fsync(out) != 0)
        err = kr_err_from_errno(errno);
    pthread_join(tid, NULL);
    kr_sha256_final(&f->sha, sha);
    if (err == KR_OK)
        err = f->err;
    struct stat st;
    if (err == KR_OK && (fstat(out, &st) != 0 || (uint64_t)st.st_size != f->bytes))
        err = KR_EIO; /* the file is not what was hashed */
    *size = f->bytes;
    close(f->fd);
    return err;
}

/* Files this large are copied with copy_file_range and hashed by a follower. */
#define BIG_FILE ((uint64_t)16 << 20)

static kr_err copy_big(int in, int out, const char *dst, uint8_t sha[KR_HASH_LEN], uint64_t *size)
{
    struct follower f;
    pthread_t tid = 0;
    kr_err err = follow_start(dst, &f, &tid);
    if (err)
        return err;
    bool kernel = true;
    uint8_t *buf = NULL;
    for (;;) {
        ssize_t n;
        if (kernel) {
            n = copy_file_range(in, NULL, out, NULL, (size_t)1 << 24, 0);
            if (n < 0 &&
                (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
                kernel = false; /* not here: read and write (offsets unmoved) */
                if (!(buf = malloc(COPY_BUF))) {
                    err = KR_ENOMEM;
                    break;
                }
                continue;
            }
        } else {
            n = read(in, buf, COPY_BUF);
            for (ssize_t off = 0; n > 0 && off < n;) {
                ssize_t w = write(out, buf + off, (size_t)(n - off));
                if (w < 0 && errno != EINTR) {
                    n = -1;
                    break;
                }
                off += w > 0 ? w : 0;
            }
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = kr_err_from_errno(errno);
            break;
        }
        if (n == 0)
            break;
    }
    free(buf);
    return follow_finish(&f, tid, out, err, sha, size);
}

/* Reads in to its end, hashing it into sha (and writing it to out unless out
 * is -1); *total bytes. The buffer is wiped: key files pass through it. */
static kr_err hash_stream(int in, int out, uint8_t sha[KR_HASH_LEN], uint64_t *total)
{
    uint8_t *buf = malloc(COPY_BUF);
    if (!buf)
        return KR_ENOMEM;
    struct kr_sha256_ctx hs;
    kr_sha256_init(&hs);
    kr_err err = KR_OK;
    *total = 0;
    while (err == KR_OK) {
        ssize_t n = read(in, buf, COPY_BUF);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = kr_err_from_errno(errno);
            break;
        }
        if (n == 0)
            break;
        kr_sha256_update(&hs, buf, (size_t)n);
        *total += (uint64_t)n;
        for (ssize_t off = 0; out >= 0 && off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                err = kr_err_from_errno(errno);
                break;
            }
            off += w;
        }
    }
    kr_sha256_final(&hs, sha);
    sodium_memzero(buf, COPY_BUF);
    free(buf);
    return err;
}

/* Copies the regular file src to dst (created exclusively with mode),
 * hashing what it copies, fsynced. src is opened without following links
 * and without blocking (a FIFO swapped in must not hang us) and must be a
 * regular file. */
static kr_err copy_file(const char *src, const char *dst, mode_t mode, uint8_t sha[KR_HASH_LEN],
                        uint64_t *size)
{
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (in < 0)
        return kr_err_from_errno(errno);
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        return KR_ECORRUPT;
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (out < 0) {
        close(in);
        return kr_err_from_errno(errno);
    }
    if ((uint64_t)st.st_size >= BIG_FILE) {
        /* A journal: copied by the kernel, hashed by a reader behind it. */
        kr_err err = copy_big(in, out, dst, sha, size);
        if (err == KR_OK && fchmod(out, mode) != 0)
            err = kr_err_from_errno(errno);
        if (close(out) != 0 && err == KR_OK)
            err = kr_err_from_errno(errno);
        close(in);
        if (err)
            (void)unlink(dst);
        return err;
    }
    uint64_t total = 0;
    kr_err err = hash_stream(in, out, sha, &total);
    if (err == KR_OK && fchmod(out, mode) != 0)
        err = kr_err_from_errno(errno);
    if (err == KR_OK && fsync(out) != 0)
        err = kr_err_from_errno(errno);
    if (close(out) != 0 && err == KR_OK)
        err = kr_err_from_errno(errno);
    close(in);
    if (err)
        (void)unlink(dst);
    *size = total;
    return err;
}

/* SHA-256 and size of a regular file (not following links). */
static kr_err hash_file(const char *path, uint8_t sha[KR_HASH_LEN], uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return kr_err_from_errno(errno);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return KR_ECORRUPT;
    }
    uint64_t total = 0;
    kr_err err = hash_stream(fd, -1, sha, &total);
    close(fd);
    *size = total;
    return err;
}

static kr_err write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return kr_err_from_errno(errno);
    kr_err err = KR_OK;
    const uint8_t *p = data;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            err = kr_err_from_errno(errno);
            break;
        }
        off += (size_t)w;
    }
    if (err == KR_OK && fchmod(fd, mode) != 0)
        err = kr_err_from_errno(errno);
    if (err == KR_OK && fsync(fd) != 0)
        err = kr_err_from_errno(errno);
    if (close(fd) != 0 && err == KR_OK)
        err = kr_err_from_errno(errno);
    if (err)
        (void)unlink(path);
    return err;
}

/* Reads a small regular file whole (not following links); *buf malloc'd
 * and NUL-terminated. KR_ETOOLARGE beyond max. */
static kr_err read_whole(const char *path, size_t max, char **buf, size_t *len)
{
    *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? KR_ENOTFOUND : kr_err_from_errno(errno);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return KR_ECORRUPT;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return KR_ETOOLARGE;
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        close(fd);
        return KR_ENOMEM;
    }
    size_t got = 0;
    kr_err err = KR_OK;
    while (got <= (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size + 1 - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = kr_err_from_errno(errno);
            break;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (err == KR_OK && got != (size_t)st.st_size)
        err = KR_ECORRUPT; /* changed while read */
    if (err) {
        free(b);
        return err;
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    return KR_OK;
}

/* ---- Checking a generation ---- */

/* Files LMDB makes on its own when a copy is opened read-only: never read
 * as data, never copied by restore. */
static bool tolerated(const char *rel)
{
    return strcmp(rel, "journal/lock.mdb") == 0 || strcmp(rel, "keystore/lock.mdb") == 0;
}

struct walk {
    const char *root;
    const struct bmf_manifest *m;
    char *why;
    size_t entries;
    kr_err err;
};

/* Walks dir (rel to the generation, "" at the top): every entry must be a
 * directory or a regular file the manifest lists. */
static void walk_dir(struct walk *w, const char *rel, int depth)
{
    char path[KR_PATH_MAX];
    if (kr_path_join(path, sizeof path, w->root, rel[0] ? rel : ".")) {
        w->err = KR_ETOOLARGE;
        return;
    }
    DIR *d = opendir(path);
    if (!d) {
        w->err = kr_err_from_errno(errno);
        say(w->why, "cannot read %s: %s", rel[0] ? rel : "the generation", strerror(errno));
        return;
    }
    struct dirent *e;
    while (!w->err && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (++w->entries > KR_BACKUP_FILES_MAX + 16) {
            w->err = KR_ECORRUPT;
            say(w->why, "the generation holds too many files");
            break;
        }
        char sub[KR_PATH_MAX], full[KR_PATH_MAX];
        int n = rel[0] ? snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name)
                       : snprintf(sub, sizeof sub, "%s", e->d_name);
        if (n < 0 || (size_t)n >= sizeof sub || kr_path_join(full, sizeof full, w->root, sub)) {
            w->err = KR_ECORRUPT;
            say(w->why, "extra file with a long name in %s", rel[0] ? rel : "the generation");
            break;
        }
        struct stat st;
        if (lstat(full, &st) != 0) {
            w->err = kr_err_from_errno(errno);
            say(w->why, "cannot read %s", sub);
            break;
        }
        if (S_ISDIR(st.st_mode) && depth < GEN_DEPTH_MAX) {
            walk_dir(w, sub, depth + 1);
        } else if (!S_ISREG(st.st_mode)) {
            w->err = KR_ECORRUPT;
            say(w->why, "extra file %s (not a regular file)", sub);
        } else if (!(depth == 0 && strcmp(sub, BMF_NAME) == 0) && !tolerated(sub) &&
                   !bmf_find(w->m, sub)) {
            w->err = KR_ECORRUPT;
            say(w->why, "extra file %s (not in the manifest)", sub);
        }
    }
    closedir(d);
}

/* Reads, parses and verifies gen/manifest. *text is malloc'd. */
static kr_err load_manifest(const char *gen, const uint8_t pk[32], struct bmf_manifest *m,
                            struct bmf_chain *chain, char **text, size_t *len, char *why)
{
    char path[KR_PATH_MAX];
    kr_err err = kr_path_join(path, sizeof path, gen, BMF_NAME);
    if (err)
        return err;
    err = read_whole(path, KR_BACKUP_MANIFEST_MAX, text, len);
    if (err) {
        say(why, "manifest: %s", err == KR_ENOTFOUND ? "missing" : kr_strerror(err));
        return err == KR_ENOTFOUND || err == KR_ETOOLARGE ? KR_ECORRUPT : err;
    }
    if ((err = bmf_parse(*text, *len, m, why, BACKUP_REASON_MAX)) ||
        (err = bmf_verify(m, *text, *len, pk, chain, why, BACKUP_REASON_MAX))) {
        free(*text);
        *text = NULL;
        return err == KR_ETOOLARGE ? KR_ECORRUPT : err;
    }
    return KR_OK;
}

/* The manifest's files against the directory: nothing extra, nothing
 * missing, and (when hash) every size and digest. */
static kr_err check_files(const char *gen, const struct bmf_manifest *m, bool hash, char *why,
                          uint64_t *bytes)
{
    struct walk w = {gen, m, why, 0, KR_OK};
    walk_dir(&w, "", 0);
    if (w.err)
        return w.err == KR_ENOMEM || w.err == KR_EIO ? w.err : KR_ECORRUPT;
    *bytes = 0;
    for (size_t i = 0; i < m->nfiles; i++) {
        const struct bmf_file *f = &m->files[i];
        char path[KR_PATH_MAX];
        uint8_t sha[KR_HASH_LEN];
        uint64_t size = 0;
        if (kr_path_join(path, sizeof path, gen, f->path))
            return KR_ETOOLARGE;
        struct stat st;
        if (lstat(path, &st) != 0) {
            say(why, "missing file %s", f->path);
            return KR_ECORRUPT;
        }
        if (!S_ISREG(st.st_mode)) {
            say(why, "%s is not a regular file", f->path);
            return KR_ECORRUPT;
        }
        if ((uint64_t)st.st_size != f->size) {
            say(why, "size of %s: %" PRIu64 " bytes, the manifest says %" PRIu64, f->path,
                (uint64_t)st.st_size, f->size);
            return KR_ECORRUPT;
        }
        *bytes += f->size;
        if (!hash)
            continue;
        kr_err err = hash_file(path, sha, &size);
        if (err) {
            say(why, "cannot read %s: %s", f->path, kr_strerror(err));
            return err == KR_ECORRUPT ? err : KR_EIO;
        }
        if (size != f->size || sodium_memcmp(sha, f->sha256, sizeof sha) != 0) {
            say(why, "digest of %s does not match the manifest", f->path);
            return KR_ECORRUPT;
        }
    }
    return KR_OK;
}

static void gen_fill(struct backup_gen *g, const struct bmf_manifest *m)
{
    g->last_seq = m->last_seq;
    g->time_ns = m->time_ns;
    snprintf(g->time_jst, sizeof g->time_jst, "%s", m->time_jst);
}

/* A bad backup (1) or a failure to look (3)? */
static bool is_verdict(kr_err err)
{
    return err == KR_ECORRUPT || err == KR_EBADSIG || err == KR_EVERSION;
}

kr_err backup_check(const char *gen_dir, const uint8_t trusted_pk[32], bool with_journal,
                    struct backup_gen *out)
{
    memset(out, 0, sizeof *out);
    const char *base = strrchr(gen_dir, '/');
    snprintf(out->name, sizeof out->name, "%s", base && base[1] ? base + 1 : gen_dir);
    struct bmf_manifest *m = bmf_new();
    if (!m)
        return KR_ENOMEM;
    char *text = NULL;
    size_t len = 0;
    kr_err err = load_manifest(gen_dir, trusted_pk, m, NULL, &text, &len, out->reason);
    if (err == KR_OK) {
        gen_fill(out, m);
        if (strcmp(m->generation, out->name) != 0) {
            say(out->reason, "manifest: generation %s under the name %s", m->generation, out->name);
            err = KR_ECORRUPT;
        }
    }
    if (err == KR_OK)
        err = check_files(gen_dir, m, true, out->reason, &out->bytes);
    if (err == KR_OK && with_journal) {
        /* Only now: every file is the one the signed manifest names. */
        struct jrn_verify_options vo = {.fast = true, .have_root_key = true};
        memcpy(vo.root_key, trusted_pk, 32);
        struct jrn_verify_report rep;
        err = jrn_verify(gen_dir, &vo, &rep);
        if (err) {
            say(out->reason, "journal: cannot verify: %s", kr_strerror(err));
        } else if (rep.result) {
            say(out->reason, "journal verification: seq %" PRIu64 ": %s", rep.bad_seq, rep.what);
            err = KR_ECORRUPT;
        } else if (rep.records != m->last_seq) {
            say(out->reason, "journal holds %" PRIu64 " records, the manifest says %" PRIu64,
                rep.records, m->last_seq);
            err = KR_ECORRUPT;
        }
        char lock[KR_PATH_MAX];
        if (kr_path_join(lock, sizeof lock, gen_dir, "journal/lock.mdb") == KR_OK)
            (void)unlink(lock);
    }
    free(text);
    bmf_free(m);
    out->result = err;
    out->verified = err == KR_OK;
    return err == KR_OK || is_verdict(err) ? KR_OK : err;
}

/* ---- Listing ---- */

static int cmp_name_desc(const void *a, const void *b)
{
    return -strcmp(*(char *const *)a, *(char *const *)b);
}

/* Generation names in dir, newest first, into names (malloc'd strings). */
static kr_err list_names(const char *dir, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? KR_ENOTFOUND : kr_err_from_errno(errno);
    char **v = calloc(KR_BACKUP_DIR_ENTRIES_MAX, sizeof *v);
    if (!v) {
        closedir(d);
        return KR_ENOMEM;
    }
    size_t k = 0, seen = 0;
    kr_err err = KR_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (++seen > KR_BACKUP_DIR_ENTRIES_MAX + 2) {
            err = KR_ETOOLARGE;
            break;
        }
        if (!bmf_gen_name_ok(e->d_name))
            continue;
        if (!(v[k] = strdup(e->d_name))) {
            err = KR_ENOMEM;
            break;
        }
        k++;
    }
    closedir(d);
    if (err) {
        for (size_t i = 0; i < k; i++)
            free(v[i]);
        free(v);
        return err;
    }
    qsort(v, k, sizeof *v, cmp_name_desc);
    *names = v;
    *n = k;
    return KR_OK;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

kr_err backup_list(const char *backups_dir, const uint8_t trusted_pk[32], struct backup_gen *out,
                   size_t cap, size_t *n)
{
    char **names;
    size_t k;
    *n = 0;
    kr_err err = list_names(backups_dir, &names, &k);
    if (err)
        return err;
    for (size_t i = 0; i < k && *n < cap && !err; i++) {
        char gen[KR_PATH_MAX];
        if ((err = kr_path_join(gen, sizeof gen, backups_dir, names[i])))
            break;
        err = backup_check(gen, trusted_pk, false, &out[*n]);
        if (err == KR_OK)
            (*n)++;
    }
    free_names(names, k);
    return err;
}

/* ---- Taking a backup ---- */

/* Removes what interrupted runs left in dir: ".tmp-*" trees, and ".old-*"
 * trees whose generation is in place; an ".old-<day>-*" whose day is missing
 * (a crash between the two renames of the fallback) is put back. */
static void clean_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    size_t seen = 0;
    while ((e = readdir(d)) && ++seen <= KR_BACKUP_DIR_ENTRIES_MAX) {
        bool tmp = strncmp(e->d_name, ".tmp-", 5) == 0, old = strncmp(e->d_name, ".old-", 5) == 0;
        if (!tmp && !old)
            continue;
        char path[KR_PATH_MAX];
        if (kr_path_join(path, sizeof path, dir, e->d_name))
            continue;
        if (old && strlen(e->d_name) > 15 && e->d_name[15] == '-') {
            char day[11], target[KR_PATH_MAX];
            memcpy(day, e->d_name + 5, 10);
            day[10] = '\0';
            struct stat st;
            if (bmf_gen_name_ok(day) && kr_path_join(target, sizeof target, dir, day) == KR_OK &&
                lstat(target, &st) != 0 && errno == ENOENT && rename(path, target) == 0)
                continue;
        }
        rmtree(path);
    }
    closedir(d);
    (void)fsync_path(dir, true);
}

/* Puts the finished tree tmp in place as dir/name. */
static kr_err install(const char *dir, const char *tmp, const char *name)
{
    char target[KR_PATH_MAX], aside[KR_PATH_MAX];
    kr_err err;
    if ((err = kr_path_join(target, sizeof target, dir, name)))
        return err;
    struct stat st;
    if (lstat(target, &st) != 0) {
        if (errno != ENOENT)
            return kr_err_from_errno(errno);
        if (rename(tmp, target) != 0)
            return kr_err_from_errno(errno);
        return fsync_path(dir, true);
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, target, RENAME_EXCHANGE) == 0) {
        /* tmp now names the old generation. */
        if ((err = fsync_path(dir, true)))
            return err;
        rmtree(tmp);
        return KR_OK;
    }
    if (errno != EINVAL && errno != ENOSYS)
        return kr_err_from_errno(errno);
    int n = snprintf(aside, sizeof aside, "%s/.old-%s-%016" PRIx64, dir, name,
                     (uint64_t)randombytes_random() << 32 | randombytes_random());
    if (n < 0 || (size_t)n >= sizeof aside)
        return KR_ETOOLARGE;
    if (rename(target, aside) != 0)
        return kr_err_from_errno(errno);
    if (rename(tmp, target) != 0) {
        err = kr_err_from_errno(errno);
        (void)rename(aside, target);
        return err;
    }
    if ((err = fsync_path(dir, true)))
        return err;
    rmtree(aside);
    return KR_OK;
}

/* Keeps the newest `keep` generations of dir; *removed counts the others. */
static kr_err prune(const char *dir, size_t keep, uint64_t *removed)
{
    char **names;
    size_t n;
    kr_err err = list_names(dir, &names, &n);
    if (err)
        return err;
    for (size_t i = keep; i < n && !err; i++) {
        char path[KR_PATH_MAX], aside[KR_PATH_MAX];
        int k = snprintf(aside, sizeof aside, "%s/.old-%s-%016" PRIx64, dir, names[i],
                         (uint64_t)randombytes_random() << 32 | randombytes_random());
        if (k < 0 || (size_t)k >= sizeof aside || kr_path_join(path, sizeof path, dir, names[i])) {
            err = KR_ETOOLARGE;
            break;
        }
        /* Out of the list in one step, then removed at leisure. */
        if (rename(path, aside) != 0) {
            err = kr_err_from_errno(errno);
            break;
        }
        (void)fsync_path(dir, true);
        rmtree(aside);
        (*removed)++;
    }
    free_names(names, n);
    return err;
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const struct bmf_file *)a)->path, ((const struct bmf_file *)b)->path);
}

/* Is name one of the key files a restore needs? */
static bool key_file(const char *name, mode_t *mode)
{
    if (strcmp(name, "kek.key") == 0) {
        *mode = 0600;
        return true;
    }
    /* journal-<id>.key|pub, id a decimal without leading zeros */
    const char *p = name + 8;
    if (strncmp(name, "journal-", 8) != 0 || *p < '1' || *p > '9')
        return false;
    size_t digits = 0;
    while (p[digits] >= '0' && p[digits] <= '9')
        digits++;
    if (digits > 10 || p[digits] != '.')
        return false;
    const char *ext = p + digits + 1;
    if (strcmp(ext, "key") == 0)
        *mode = 0600;
    else if (strcmp(ext, "pub") == 0)
        *mode = 0644;
    else
        return false;
    return true;
}

/* Copies DATA/keys/{kek.key,journal-N.key,journal-N.pub} into tmp/keys. */
static kr_err copy_keys(const char *data, const char *tmp, char *why)
{
    char src[KR_PATH_MAX], dst[KR_PATH_MAX];
    kr_err err;
    if ((err = kr_path_join(src, sizeof src, data, "keys")) ||
        (err = kr_path_join(dst, sizeof dst, tmp, "keys")))
        return err;
    DIR *d = opendir(src);
    if (!d) {
        say(why, "cannot read %s: %s", src, strerror(errno));
        return kr_err_from_errno(errno);
    }
    struct dirent *e;
    size_t n = 0;
    while (!err && (e = readdir(d))) {
        mode_t mode;
        if (!key_file(e->d_name, &mode))
            continue;
        if (++n > KR_BACKUP_FILES_MAX - 8) {
            err = KR_ETOOLARGE;
            break;
        }
        char a[KR_PATH_MAX], b[KR_PATH_MAX];
        uint8_t sha[KR_HASH_LEN];
        uint64_t size;
        if ((err = kr_path_join(a, sizeof a, src, e->d_name)) ||
            (err = kr_path_join(b, sizeof b, dst, e->d_name)))
            break;
        if ((err = copy_file(a, b, mode, sha, &size)))
            say(why, "copying keys/%s: %s", e->d_name, kr_strerror(err));
    }
    closedir(d);
    if (err == KR_OK)
        err = fsync_path(dst, true);
    return err;
}

/* The journal's LMDB environment copied into tmp/journal/data.mdb; its
 * digest and size into jf. */
static kr_err copy_env(MDB_env *env, const char *tmp, struct bmf_file *jf)
{
    char path[KR_PATH_MAX];
    kr_err err = kr_path_join(path, sizeof path, tmp, "journal/data.mdb");
    if (err)
        return err;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return kr_err_from_errno(errno);
    struct follower f;
    pthread_t tid = 0;
    err = follow_start(path, &f, &tid);
    if (err == KR_OK) {
        err = kr_err_from_mdb(mdb_env_copyfd2(env, fd, MDB_CP_COMPACT));
        err = follow_finish(&f, tid, fd, err, jf->sha256, &jf->size);
    }
    if (close(fd) != 0 && err == KR_OK)
        err = kr_err_from_errno(errno);
    return err;
}

/* Reads what the manifest needs from the copy in tmp: identity, size, the
 * newest checkpoint and the key records; and writes tmp/checkpoint. */
static kr_err read_copy(const char *tmp, struct bmf_manifest *m, char *why)
{
    struct jrn_options jo = {.dir = tmp, .read_only = true};
    struct journal *cj;
    kr_err err = jrn_open(&jo, &cj);
    if (err) {
        say(why, "opening the journal copy: %s", kr_strerror(err));
        return err;
    }
    struct jrn_info info;
    jrn_get_info(cj, &info);
    memcpy(m->journal_id, info.journal_id, sizeof m->journal_id);
    snprintf(m->origin, sizeof m->origin, "%s", info.origin);
    m->last_seq = jrn_size(cj);
    err = jrn_checkpoint(cj, m->checkpoint, sizeof m->checkpoint, &m->checkpoint_len);
    struct jrn_cursor *cur = NULL;
    struct jrn_query q = {.kind = JRN_Q_STREAM,
                          .tenant = 0,
                          .stream = JRN_SYSTEM_STREAM,
                          .stream_len = strlen(JRN_SYSTEM_STREAM)};
    if (err == KR_OK)
        err = jrn_cursor_new(cj, &q, &cur);
    uint8_t *buf = malloc(KR_BACKUP_KEYREC_MAX);
    if (err == KR_OK && !buf)
        err = KR_ENOMEM;
    struct jrn_record r;
    while (err == KR_OK && (err = jrn_cursor_next(cur, &r)) == KR_OK) {
        size_t len = 0, hlen = 0;
        /* Records have one byte form: encoding the decoded record gives the
         * stored bytes back; the header comparison proves it. */
        if ((err = jrn_record_encode(&r, buf, KR_BACKUP_KEYREC_MAX, &len, &hlen)))
            break;
        if (hlen != r.header_len || memcmp(buf + JRN_HEADER_OFFSET, r.header, r.header_len) != 0) {
            err = KR_ECORRUPT;
            break;
        }
        err = bmf_add_keyrec(m, buf, len);
    }
    if (err == KR_ENOTFOUND)
        err = KR_OK;
    free(buf);
    jrn_cursor_free(cur);
    jrn_close(cj);
    if (err) {
        say(why, "reading the journal copy: %s", kr_strerror(err));
        return err;
    }
    /* A read-only open may leave LMDB's lock file: not part of a generation. */
    char lock[KR_PATH_MAX], cp[KR_PATH_MAX];
    if (kr_path_join(lock, sizeof lock, tmp, "journal/lock.mdb") == KR_OK)
        (void)unlink(lock);
    if ((err = kr_path_join(cp, sizeof cp, tmp, "checkpoint")) ||
        (err = write_file(cp, m->checkpoint, m->checkpoint_len, 0644)))
        say(why, "writing the checkpoint: %s", kr_strerror(err));
    return err;
}

/* Adds every file under tmp (but the manifest) to m, hashed, in order. */
static kr_err hash_tree(const char *tmp, const char *rel, struct bmf_manifest *m, int depth,
                        uint64_t *bytes, const struct bmf_file *known)
{
    char path[KR_PATH_MAX];
    kr_err err = kr_path_join(path, sizeof path, tmp, rel[0] ? rel : ".");
    if (err)
        return err;
    DIR *d = opendir(path);
    if (!d)
        return kr_err_from_errno(errno);
    struct dirent *e;
    while (!err && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[KR_PATH_MAX], full[KR_PATH_MAX];
        int n = rel[0] ? snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name)
                       : snprintf(sub, sizeof sub, "%s", e->d_name);
        if (n < 0 || (size_t)n >= sizeof sub || (err = kr_path_join(full, sizeof full, tmp, sub)))
            return KR_ETOOLARGE;
        struct stat st;
        if (lstat(full, &st) != 0) {
            err = kr_err_from_errno(errno);
            break;
        }
        if (S_ISDIR(st.st_mode) && depth < GEN_DEPTH_MAX) {
            err = hash_tree(tmp, sub, m, depth + 1, bytes, known);
            continue;
        }
        if (!S_ISREG(st.st_mode) || strlen(sub) > KR_BACKUP_PATH_MAX ||
            m->nfiles >= KR_BACKUP_FILES_MAX) {
            err = KR_ETOOLARGE;
            break;
        }
        struct bmf_file *f = &m->files[m->nfiles++];
        memcpy(f->path, sub, strlen(sub) + 1); /* fits: checked above */
        f->mode = st.st_mode & 0755;
        if (strcmp(sub, known->path) == 0 && (uint64_t)st.st_size == known->size) {
            /* Hashed on its way in (copy_env). */
            memcpy(f->sha256, known->sha256, sizeof f->sha256);
            f->size = known->size;
        } else {
            err = hash_file(full, f->sha256, &f->size);
        }
        *bytes += f->size;
    }
    closedir(d);
    return err;
}

static void progress(const struct backup_options *o, const char *step, uint64_t done)
{
    if (o->progress)
        o->progress(o->progress_arg, step, done, 5);
}

/* The JST day of utc_ns, "YYYY-MM-DD". */
static void jst_day(uint64_t utc_ns, char out[11])
{
    char t[JST_LEN + 1];
    jst_format(utc_ns, t);
    memcpy(out, t, 10);
    out[10] = '\0';
}

static void utc_text(uint64_t ns, char *out, size_t cap)
{
    time_t s = (time_t)(ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* build's journal: the open one's environment (o->j), or a read-only open
 * here, copied into tmp/journal/data.mdb; its digest and size into jf. */
static kr_err build_journal(const struct backup_options *o, const char *tmp, struct bmf_file *jf,
                            char *why)
{
    struct journal *own = NULL;
    kr_err err;
    if (!o->j) {
        struct jrn_options jo = {.dir = o->data_dir, .read_only = true};
        if ((err = jrn_open(&jo, &own))) {
            say(why, "opening the journal in %s: %s", o->data_dir, kr_strerror(err));
            return err;
        }
    }
    err = copy_env(jrn_env(o->j ? o->j : own), tmp, jf);
    jrn_close(own);
    if (err)
        say(why, "copying the journal: %s", kr_strerror(err));
    return err;
}

/* build's keystore: the open one (o->ks), or one opened here, copied into
 * tmp/keystore; a data directory without a keystore (init only) gives a
 * generation without one. */
static kr_err build_keystore(const struct backup_options *o, const char *tmp, char *why)
{
    char p[KR_PATH_MAX];
    kr_err err;
    if ((err = kr_path_join(p, sizeof p, tmp, "keystore")))
        return err;
    struct kr_keystore *ks = o->ks;
    if (!ks) {
        err = ks_open(o->data_dir, false, &ks);
        if (err == KR_ENOTFOUND) {
            ks = NULL;
            err = KR_OK;
        } else if (err) {
            say(why, "opening the keystore: %s", kr_strerror(err));
            return err;
        }
    }
    if (ks)
        err = ks_copy(ks, p);
    else if (rmdir(p) != 0)
        err = kr_err_from_errno(errno);
    if (ks != o->ks)
        ks_close(ks);
    if (err)
        say(why, "copying the keystore: %s", kr_strerror(err));
    return err;
}

/* build's manifest m signed and written to tmp/manifest, by the newest key
 * of the copy's key chain, which the live directory's key 1 roots. */
static kr_err build_sign(const struct backup_options *o, const char *tmp, struct bmf_manifest *m,
                         char *why)
{
    uint8_t pk1[KR_PUBKEY_LEN];
    struct bmf_chain *chain = malloc(sizeof *chain);
    kr_err err;
    if (!chain)
        return KR_ENOMEM;
    struct kr_signing_key key;
    memset(&key, 0, sizeof key);
    if ((err = kr_pubkey_load(o->data_dir, 1, pk1)))
        say(why, "reading keys/journal-1.pub: %s", kr_strerror(err));
    else if ((err = bmf_verify_chain(m, pk1, chain, why, BACKUP_REASON_MAX)) == KR_OK &&
             (err = kr_key_load(o->data_dir, chain->key_id[chain->n - 1], &key)))
        say(why, "loading signing key %u: %s", chain->key_id[chain->n - 1], kr_strerror(err));
    free(chain);
    if (err)
        return err;
    size_t cap = KR_BACKUP_MANIFEST_MAX + 64, len = 0;
    char *text = malloc(cap);
    if (!text) {
        kr_key_wipe(&key);
        return KR_ENOMEM;
    }
    char p[KR_PATH_MAX];
    err = bmf_write(m, &key, text, cap, &len);
    kr_key_wipe(&key);
    if (err == KR_OK && (err = kr_path_join(p, sizeof p, tmp, BMF_NAME)) == KR_OK)
        err = write_file(p, text, len, 0600);
    free(text);
    if (err)
        say(why, "writing the manifest: %s", kr_strerror(err));
    return err;
}

/* Builds the generation in tmp (made here). */
static kr_err build(const struct backup_options *o, const char *tmp, struct bmf_manifest *m,
                    uint64_t *bytes, char *why)
{
    char p[KR_PATH_MAX];
    kr_err err;
    if (mkdir(tmp, 0700) != 0) {
        say(why, "cannot make %s: %s", tmp, strerror(errno));
        return kr_err_from_errno(errno);
    }
    static const char *const subdirs[] = {"journal", "keystore", "keys"};
    for (size_t i = 0; i < 3; i++) {
        if ((err = kr_path_join(p, sizeof p, tmp, subdirs[i])))
            return err;
        if (mkdir(p, 0700) != 0)
            return kr_err_from_errno(errno);
    }

    progress(o, "journal", 0);
    struct bmf_file jf = {.path = "journal/data.mdb", .mode = 0600};
    if ((err = build_journal(o, tmp, &jf, why)))
        return err;

    progress(o, "keystore", 1);
    if ((err = build_keystore(o, tmp, why)))
        return err;

    progress(o, "keys", 2);
    if ((err = copy_keys(o->data_dir, tmp, why)))
        return err;

    progress(o, "manifest", 3);
    if ((err = read_copy(tmp, m, why)))
        return err;
    if ((err = hash_tree(tmp, "", m, 0, bytes, &jf))) {
        say(why, "hashing the generation: %s", kr_strerror(err));
        return err;
    }
    qsort(m->files, m->nfiles, sizeof m->files[0], cmp_file);

    if ((err = build_sign(o, tmp, m, why)))
        return err;
    for (size_t i = 0; i < 3 && !err; i++) {
        if ((err = kr_path_join(p, sizeof p, tmp, subdirs[i])))
            break;
        err = fsync_path(p, true);
        if (err == KR_ENOTFOUND || err == kr_err_from_errno(ENOENT))
            err = KR_OK; /* no keystore */
    }
    if (err == KR_OK)
        err = fsync_path(tmp, true);
    return err;
}

kr_err backup_run(const struct backup_options *o, struct backup_result *r)
{
    memset(r, 0, sizeof *r);
    double t0 = mono_now();
    if (!o || !o->data_dir || !o->backups_dir)
        return KR_EINVAL;
    if (sodium_init() < 0)
        return KR_ECRYPTO;
    kr_err err = mkdir_p(o->backups_dir, 0700);
    if (err) {
        say(r->reason, "cannot make %s: %s", o->backups_dir, kr_strerror(err));
        return err;
    }
    char lock[KR_PATH_MAX], tmp[KR_PATH_MAX];
    if ((err = kr_path_join(lock, sizeof lock, o->backups_dir, ".lock")))
        return err;
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0) {
        err = kr_err_from_errno(errno);
        say(r->reason, "cannot open %s: %s", lock, strerror(errno));
        return err;
    }
    if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        close(lfd);
        say(r->reason, "another backup into %s is running", o->backups_dir);
        return KR_EBUSY;
    }
    clean_leftovers(o->backups_dir);

    uint64_t now = kr_clock_now(o->clock);
    jst_day(now, r->generation);
    int n = snprintf(tmp, sizeof tmp, "%s/.tmp-%s-%016" PRIx64, o->backups_dir, r->generation,
                     (uint64_t)randombytes_random() << 32 | randombytes_random());
    struct bmf_manifest *m = bmf_new();
    if (n < 0 || (size_t)n >= sizeof tmp)
        err = KR_ETOOLARGE;
    else if (!m)
        err = KR_ENOMEM;
    if (err == KR_OK) {
        snprintf(m->kiroku_version, sizeof m->kiroku_version, "%s", KIROKU_VERSION);
        snprintf(m->generation, sizeof m->generation, "%s", r->generation);
        m->time_ns = now;
        utc_text(now, m->time_utc, sizeof m->time_utc);
        jst_format(now, m->time_jst);
        err = build(o, tmp, m, &r->bytes, r->reason);
        r->last_seq = m->last_seq;
    }
    if (err == KR_OK) {
        progress(o, "install", 4);
        if ((err = install(o->backups_dir, tmp, r->generation)))
            say(r->reason, "putting the generation in place: %s", kr_strerror(err));
    }
    if (err)
        rmtree(tmp);
    else if ((err = prune(o->backups_dir, KR_BACKUP_GENERATIONS, &r->removed)))
        say(r->reason, "removing old generations: %s", kr_strerror(err));
    bmf_free(m);
    close(lfd);
    if (err == KR_OK)
        progress(o, "done", 5);
    r->seconds = mono_now() - t0;
    return err;
}

/* ---- Restore ---- */

static void rprogress(const struct backup_restore_options *o, const char *step, uint64_t done)
{
    if (o->progress)
        o->progress(o->progress_arg, step, done, 5);
}

/* NEWDIR must not exist, or hold nothing but a checkpoint file. */
static kr_err newdir_check(const char *dir, bool *exists, char *why)
{
    struct stat st;
    *exists = false;
    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT)
            return KR_OK;
        say(why, "cannot look at %s: %s", dir, strerror(errno));
        return kr_err_from_errno(errno);
    }
    if (!S_ISDIR(st.st_mode)) {
        say(why, "%s exists and is not a directory", dir);
        return KR_EEXIST;
    }
    *exists = true;
    DIR *d = opendir(dir);
    if (!d) {
        say(why, "cannot read %s: %s", dir, strerror(errno));
        return kr_err_from_errno(errno);
    }
    kr_err err = KR_OK;
    struct dirent *e;
    while (!err && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, "checkpoint") == 0)
            continue;
        if (strcmp(e->d_name, "journal") == 0)
            say(why, "%s holds a journal: restore into a new data directory", dir);
        else
            say(why, "%s is not empty (it holds %s): restore into a new data directory", dir,
                e->d_name);
        err = KR_EEXIST;
    }
    closedir(d);
    return err;
}

/* Copies every file the manifest lists from gen into tmp, comparing each
 * digest as it copies (so what lands in tmp is what the manifest signed,
 * whatever happens to gen meanwhile). */
static kr_err copy_generation(const char *gen, const char *tmp, const struct bmf_manifest *m,
                              char *why)
{
    for (size_t i = 0; i < m->nfiles; i++) {
        const struct bmf_file *f = &m->files[i];
        char src[KR_PATH_MAX], dst[KR_PATH_MAX];
        uint8_t sha[KR_HASH_LEN];
        uint64_t size = 0;
        kr_err err;
        if ((err = file_paths(gen, tmp, f, src, dst)))
            return err;
        err = copy_file(src, dst, f->mode, sha, &size);
        if (err == KR_ECORRUPT ||
            (err == KR_OK && (size != f->size || sodium_memcmp(sha, f->sha256, sizeof sha))))
            say(why, "digest of %s does not match the manifest", f->path);
        else if (err)
            say(why, "copying %s: %s", f->path, kr_strerror(err));
        if (err == KR_OK && (size != f->size || sodium_memcmp(sha, f->sha256, sizeof sha)))
            err = KR_ECORRUPT;
        if (err)
            return err;
    }
    static const char *const subdirs[] = {"journal", "keystore", "keys", "."};
    for (size_t i = 0; i < 4; i++) {
        char p[KR_PATH_MAX];
        kr_err err = kr_path_join(p, sizeof p, tmp, subdirs[i]);
        struct stat st;
        if (err == KR_OK && lstat(p, &st) == 0)
            err = fsync_path(p, true);
        if (err)
            return err;
    }
    return KR_OK;
}

static kr_err dir_parent_sync(const char *dir)
{
    char parent[KR_PATH_MAX];
    int n = snprintf(parent, sizeof parent, "%s", dir);
    if (n < 0 || (size_t)n >= sizeof parent)
        return KR_ETOOLARGE;
    char *slash = strrchr(parent, '/');
    if (!slash)
        return fsync_path(".", true);
    if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    return fsync_path(parent, true);
}

/* The views rebuilt in tmp, and a new epoch started when asked. */
static kr_err rebuild(const char *tmp, bool epoch, const char *prev_note, size_t prev_len,
                      char *why)
{
    struct kr_views v;
    memset(&v, 0, sizeof v);
    kr_err err = views_init(&v);
    if (err)
        return err;
    struct jrn_options jo = {
        .dir = tmp, .views = views_hooks(&v), .views_no_catch_up = true, .no_appends = !epoch};
    struct journal *j = NULL;
    if ((err = jrn_open(&jo, &j)))
        say(why, "opening the restored journal: %s", kr_strerror(err));
    else if ((err = jrn_views_rebuild(j, NULL, NULL)))
        say(why, "rebuilding the views: %s", kr_strerror(err));
#ifdef JRN_TYPE_EPOCH_STARTED
    if (err == KR_OK && epoch) {
        struct jrn_info info;
        if ((err = jrn_new_epoch(j, prev_note, prev_len, &info)))
            say(why, "starting a new epoch: %s", kr_strerror(err));
    }
#else
    (void)prev_note;
    (void)prev_len;
    if (err == KR_OK && epoch) {
        say(why, "starting a new epoch: not supported by this journal yet");
        err = KR_EINVAL;
    }
#endif
    jrn_close(j);
    views_fini(&v);
    return err;
}

/* The newest checkpoint known to backup_restore: o->known_checkpoint, else
 * DIR/checkpoint (a file that outlives restores), into known (NUL-ended);
 * *len 0 if there is none. */
static kr_err restore_known(const struct backup_restore_options *o, const char *dir,
                            char known[KR_NOTE_MAX + 1], size_t *known_len, char *why)
{
    char path[KR_PATH_MAX];
    const char *kp = o->known_checkpoint;
    kr_err err;
    *known_len = 0;
    if (!kp && (err = kr_path_join(path, sizeof path, dir, "checkpoint")) == KR_OK)
        kp = path;
    char *text = NULL;
    size_t len = 0;
    err = kp ? read_whole(kp, KR_NOTE_MAX, &text, &len) : KR_ENOTFOUND;
    if (err == KR_OK) {
        memcpy(known, text, len);
        known[len] = '\0';
        *known_len = len;
        free(text);
    } else if (err != KR_ENOTFOUND || o->known_checkpoint) {
        say(why, "known checkpoint %s: %s", kp, kr_strerror(err));
        return err == KR_ETOOLARGE ? KR_ECONFLICT : err;
    }
    return KR_OK;
}

/* The known checkpoint opened with the keys of the backup's chain into
 * *kcp: it must be this journal's, and (unless o->new_epoch) no larger than
 * the backup, which would fork history. */
static kr_err restore_open_known(const struct backup_restore_options *o,
                                 const struct bmf_manifest *m, const struct bmf_chain *chain,
                                 const char *known, size_t known_len, struct kr_checkpoint *kcp,
                                 struct backup_restore_result *r)
{
    struct kr_note_key *nk = calloc(chain->n, sizeof *nk);
    if (!nk)
        return KR_ENOMEM;
    for (size_t i = 0; i < chain->n; i++) {
        snprintf(nk[i].name, sizeof nk[i].name, "%s", m->origin);
        memcpy(nk[i].pk, chain->pk[i], KR_PUBKEY_LEN);
        nk[i].key_id = chain->key_id[i];
    }
    uint32_t kid;
    kr_err cerr = kr_checkpoint_open(known, known_len, nk, chain->n, kcp, &kid);
    free(nk);
    if (cerr || strcmp(kcp->origin, m->origin) != 0) {
        say(r->reason, "known checkpoint: not a checkpoint of this journal's keys (%s)",
            cerr ? kr_strerror(cerr) : "another origin");
        return KR_ECONFLICT;
    }
    r->known_size = kcp->size;
    if (kcp->size > m->last_seq && !o->new_epoch) {
        say(r->reason,
            "the backup ends at seq %" PRIu64 ", before the newest known checkpoint at %" PRIu64
            ": restoring it forks history (--new-epoch restores it as a new epoch)",
            m->last_seq, kcp->size);
        return KR_ECONFLICT;
    }
    return KR_OK;
}

/* The generation's files, each checked against the manifest, copied into
 * tmp (made here, with the parents of dir; *made once it exists). */
static kr_err restore_copy(const struct backup_restore_options *o, const char *dir, const char *tmp,
                           const struct bmf_manifest *m, bool *made, char *why)
{
    rmtree(tmp); /* left by an interrupted restore */
    char parent[KR_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        (void)mkdir_p(parent, 0700); /* mkdir below says what went wrong */
    }
    if (mkdir(tmp, 0700) != 0) {
        kr_err err = kr_err_from_errno(errno);
        say(why, "cannot make %s: %s", tmp, strerror(errno));
        return err;
    }
    *made = true;
    uint64_t bytes = 0;
    kr_err err;
    if ((err = check_files(o->generation, m, false, why, &bytes)) ||
        (err = copy_generation(o->generation, tmp, m, why)))
        return err;
    return KR_OK;
}

/* The copy in tmp verified (fully with o->full) and as long as the manifest
 * says; with a known checkpoint within it (kcp, NULL if none), its tree
 * root the checkpoint's. */
static kr_err restore_verify(const struct backup_restore_options *o, const char *tmp,
                             const struct bmf_manifest *m, const struct kr_checkpoint *kcp,
                             char *why)
{
    struct jrn_verify_options vo = {.fast = !o->full, .have_root_key = true};
    memcpy(vo.root_key, o->trusted_pk, 32);
    struct jrn_verify_report rep;
    kr_err err;
    if ((err = jrn_verify(tmp, &vo, &rep))) {
        say(why, "journal: cannot verify: %s", kr_strerror(err));
        return err;
    }
    if (rep.result) {
        say(why, "journal verification: seq %" PRIu64 ": %s", rep.bad_seq, rep.what);
        return KR_ECORRUPT;
    }
    if (rep.records != m->last_seq) {
        say(why, "journal holds %" PRIu64 " records, the manifest says %" PRIu64, rep.records,
            m->last_seq);
        return KR_ECORRUPT;
    }
    if (!kcp || kcp->size > m->last_seq)
        return KR_OK;
    struct jrn_options jo = {.dir = tmp, .read_only = true};
    struct journal *cj;
    uint8_t root[KR_HASH_LEN];
    if ((err = jrn_open(&jo, &cj)))
        return err;
    err = jrn_root(cj, kcp->size, root);
    jrn_close(cj);
    if (err)
        return err;
    if (sodium_memcmp(root, kcp->root, KR_HASH_LEN) != 0) {
        say(why, "known checkpoint at %" PRIu64 " not consistent with the backup's tree",
            kcp->size);
        return KR_ECONFLICT;
    }
    return KR_OK;
}

/* The restored tmp put in place as dir: exchanged with an existing dir
 * (which tmp then names), else renamed. */
static kr_err restore_install(const char *tmp, const char *dir, bool exists, char *why)
{
    kr_err err;
    if ((err = fsync_path(tmp, true)))
        return err;
    if (exists ? renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) != 0
               : rename(tmp, dir) != 0) {
        err = kr_err_from_errno(errno);
        say(why, "putting %s in place: %s", dir, strerror(errno));
        return err;
    }
    (void)dir_parent_sync(dir);
    return KR_OK;
}

kr_err backup_restore(const struct backup_restore_options *o, struct backup_restore_result *r)
{
    memset(r, 0, sizeof *r);
    double t0 = mono_now();
    if (!o || !o->generation || !o->data_dir || !o->trusted_pk)
        return KR_EINVAL;
    if (sodium_init() < 0)
        return KR_ECRYPTO;
    char dir[KR_PATH_MAX], tmp[KR_PATH_MAX + 16];
    int n = snprintf(dir, sizeof dir, "%s", o->data_dir);
    if (n < 0 || (size_t)n >= sizeof dir - 64)
        return KR_ETOOLARGE;
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = '\0';
    snprintf(tmp, sizeof tmp, "%s.restore-tmp", dir);

    bool exists = false;
    kr_err err = newdir_check(dir, &exists, r->reason);
    if (err)
        return err;
    char known[KR_NOTE_MAX + 1];
    size_t known_len = 0;
    if ((err = restore_known(o, dir, known, &known_len, r->reason)))
        return err;

    struct bmf_manifest *m = bmf_new();
    struct bmf_chain *chain = malloc(sizeof *chain);
    char *text = NULL;
    size_t len = 0;
    bool made = false;
    if (!m || !chain) {
        err = KR_ENOMEM;
        goto out;
    }
    rprogress(o, "manifest", 0);
    if ((err = load_manifest(o->generation, o->trusted_pk, m, chain, &text, &len, r->reason)))
        goto out;
    if (o->until > m->last_seq) {
        say(r->reason, "--until %" PRIu64 " is beyond the backup's last seq %" PRIu64, o->until,
            m->last_seq);
        err = KR_EINVAL;
        goto out;
    }
    uint64_t size = o->until ? o->until : m->last_seq;
    struct kr_checkpoint kcp = {0};
    if (known_len && (err = restore_open_known(o, m, chain, known, known_len, &kcp, r)))
        goto out;

    rprogress(o, "copy", 1);
    if ((err = restore_copy(o, dir, tmp, m, &made, r->reason)))
        goto out;

    /* Every file is proven: now LMDB may read the copy. */
    rprogress(o, "verify", 2);
    double tv = mono_now();
    if ((err = restore_verify(o, tmp, m, known_len ? &kcp : NULL, r->reason)))
        goto out;
    r->verify_s = mono_now() - tv;

    /* Truncation and epochs: a restore that will take writes after a point
     * some checkpoint already signed a larger tree for must not sign again
     * with the same key. */
    bool epoch = size < m->last_seq || (known_len && kcp.size > size);
    if (size < m->last_seq) {
#ifdef JRN_TYPE_EPOCH_STARTED
        rprogress(o, "truncate", 3);
        if ((err = jrn_truncate(tmp, size))) {
            say(r->reason, "truncating to %" PRIu64 ": %s", size, kr_strerror(err));
            goto out;
        }
#else
        say(r->reason, "--until: point-in-time restore is not supported by this journal yet");
        err = KR_EINVAL;
        goto out;
#endif
    }
    rprogress(o, "views", 3);
    double tr = mono_now();
    const char *prev = known_len && kcp.size > m->last_seq ? known : m->checkpoint;
    size_t prev_len = known_len && kcp.size > m->last_seq ? known_len : m->checkpoint_len;
    if ((err = rebuild(tmp, epoch, prev, prev_len, r->reason)))
        goto out;
    r->rebuild_s = mono_now() - tr;
    r->epoch_started = epoch;
    r->records = size + (epoch ? 1 : 0);

    rprogress(o, "install", 4);
    if ((err = restore_install(tmp, dir, exists, r->reason)))
        goto out;
    if (!exists)
        made = false;
    rprogress(o, "done", 5);
out:
    if (made)
        rmtree(tmp); /* the unproven copy, or (after an exchange) the old NEWDIR */
    free(text);
    free(chain);
    bmf_free(m);
    r->seconds = mono_now() - t0;
    return err;
}

/* ---- Erasing a tenant from every generation ---- */

/* Links (or, across file systems, copies) gen/f into tmp/f. */
static kr_err link_file(const char *gen, const char *tmp, const struct bmf_file *f)
{
    char src[KR_PATH_MAX], dst[KR_PATH_MAX];
    kr_err err;
    if ((err = file_paths(gen, tmp, f, src, dst)))
        return err;
    if (link(src, dst) == 0)
        return KR_OK;
    if (errno != EXDEV && errno != EPERM)
        return kr_err_from_errno(errno);
    uint8_t sha[KR_HASH_LEN];
    uint64_t size = 0;
    err = copy_file(src, dst, f->mode, sha, &size);
    if (err == KR_OK && (size != f->size || sodium_memcmp(sha, f->sha256, sizeof sha) != 0))
        err = KR_ECORRUPT;
    return err;
}

/* Rewrites one verified generation without `tenant`'s key. *done is false
 * when there was nothing to do (no keystore, or the key destroyed already). */
static kr_err erase_gen(const char *backups, const char *name, const char *data_dir,
                        struct bmf_manifest *m, const struct bmf_chain *chain, uint64_t tenant,
                        uint64_t now, bool *done, char *why)
{
    char gen[KR_PATH_MAX], tmp[KR_PATH_MAX], p[KR_PATH_MAX];
    kr_err err;
    *done = false;
    if ((err = kr_path_join(gen, sizeof gen, backups, name)))
        return err;
    struct bmf_file *ksf = (struct bmf_file *)bmf_find(m, "keystore/data.mdb");
    if (!ksf)
        return KR_OK;
    int n = snprintf(tmp, sizeof tmp, "%s/.tmp-%s-%016" PRIx64, backups, name,
                     (uint64_t)randombytes_random() << 32 | randombytes_random());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return KR_ETOOLARGE;
    if (mkdir(tmp, 0700) != 0)
        return kr_err_from_errno(errno);
    /* Everything but the keystore is the same bytes: hard links. */
    for (size_t i = 0; i < m->nfiles && !err; i++) {
        const struct bmf_file *f = &m->files[i];
        if (f == ksf)
            continue;
        if ((err = link_file(gen, tmp, f)))
            say(why, "%s: linking %s: %s", name, f->path, kr_strerror(err));
    }
    char src[KR_PATH_MAX], ksdir[KR_PATH_MAX];
    uint8_t sha[KR_HASH_LEN];
    uint64_t size = 0;
    if (err == KR_OK && ((err = kr_path_join(src, sizeof src, gen, ksf->path)) ||
                         (err = kr_path_join(ksdir, sizeof ksdir, tmp, "keystore")) ||
                         (err = kr_path_join(p, sizeof p, tmp, ksf->path))))
        goto out;
    if (err == KR_OK && mkdir(ksdir, 0700) != 0 && errno != EEXIST)
        err = kr_err_from_errno(errno);
    if (err == KR_OK && (err = copy_file(src, p, ksf->mode, sha, &size)) == KR_OK &&
        (size != ksf->size || sodium_memcmp(sha, ksf->sha256, sizeof sha) != 0)) {
        say(why, "%s: digest of keystore/data.mdb does not match the manifest", name);
        err = KR_ECORRUPT;
    }
    if (err)
        goto out;
    /* The copy is proven: open it, destroy, scrub (nobody else has it). */
    struct kr_keystore *ks = NULL;
    bool destroyed = false;
    if ((err = ks_open(tmp, false, &ks))) {
        say(why, "%s: opening the keystore copy: %s", name, kr_strerror(err));
        goto out;
    }
    err = ks_is_destroyed(ks, tenant, &destroyed);
    if (err == KR_OK && !destroyed) {
        if ((err = ks_destroy(ks, tenant, now)) == KR_OK)
            err = ks_scrub(ks);
        if (err)
            say(why, "%s: destroying the key: %s", name, kr_strerror(err));
    }
    ks_close(ks);
    if (err || destroyed)
        goto out; /* destroyed already: this generation is done */
    static const char *const lmdb_files[] = {"keystore/lock.mdb", "keystore/open.lock",
                                             "keystore/data.mdb.scrub"};
    for (size_t i = 0; i < 3; i++)
        if (kr_path_join(p, sizeof p, tmp, lmdb_files[i]) == KR_OK)
            (void)unlink(p);
    if ((err = kr_path_join(p, sizeof p, tmp, ksf->path)) ||
        (err = hash_file(p, ksf->sha256, &ksf->size)) || (err = fsync_path(ksdir, true)))
        goto out;

    /* Signed again by the key the manifest's chain ends in: from the live
     * directory, or the generation's own (proven) copy of it. */
    struct kr_signing_key key;
    uint32_t kid = chain->key_id[chain->n - 1];
    if ((err = kr_key_load(data_dir, kid, &key)) && (err = kr_key_load(tmp, kid, &key))) {
        say(why, "%s: loading signing key %u: %s", name, kid, kr_strerror(err));
        goto out;
    }
    size_t cap = KR_BACKUP_MANIFEST_MAX + 64, len = 0;
    char *text = malloc(cap);
    err = text ? bmf_write(m, &key, text, cap, &len) : KR_ENOMEM;
    kr_key_wipe(&key);
    if (err == KR_OK && (err = kr_path_join(p, sizeof p, tmp, BMF_NAME)) == KR_OK)
        err = write_file(p, text, len, 0600);
    free(text);
    if (err == KR_OK)
        err = fsync_path(tmp, true);
    if (err == KR_OK && (err = install(backups, tmp, name)) == KR_OK)
        *done = true;
    if (err)
        say(why, "%s: writing the new generation: %s", name, kr_strerror(err));
out:
    if (!*done)
        rmtree(tmp);
    return err;
}

kr_err backup_erase_tenant(const char *backups_dir, const char *data_dir, uint64_t tenant,
                           uint64_t *generations)
{
    *generations = 0;
    if (sodium_init() < 0)
        return KR_ECRYPTO;
    uint8_t pk1[KR_PUBKEY_LEN];
    kr_err err = kr_pubkey_load(data_dir, 1, pk1);
    if (err)
        return err;
    char lock[KR_PATH_MAX];
    if ((err = kr_path_join(lock, sizeof lock, backups_dir, ".lock")))
        return err;
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0)
        return errno == ENOENT ? KR_OK : kr_err_from_errno(errno); /* no backups at all */
    /* Waits for a running backup: its generation must be erased too. */
    while (flock(lfd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            err = kr_err_from_errno(errno);
            close(lfd);
            return err;
        }
    }
    clean_leftovers(backups_dir);
    char **names = NULL;
    size_t n = 0;
    struct bmf_manifest *m = bmf_new();
    struct bmf_chain *chain = malloc(sizeof *chain);
    kr_err first_bad = KR_OK;
    if (!m || !chain)
        err = KR_ENOMEM;
    else
        err = list_names(backups_dir, &names, &n);
    uint64_t now = kr_clock_now(NULL);
    for (size_t i = 0; err == KR_OK && i < n; i++) {
        char gen[KR_PATH_MAX], why[BACKUP_REASON_MAX] = "";
        char *text = NULL;
        size_t len = 0;
        uint64_t bytes = 0;
        bool done = false;
        if ((err = kr_path_join(gen, sizeof gen, backups_dir, names[i])))
            break;
        kr_err e = load_manifest(gen, pk1, m, chain, &text, &len, why);
        free(text);
        if (e == KR_OK)
            e = check_files(gen, m, true, why, &bytes);
        if (e == KR_OK)
            e = erase_gen(backups_dir, names[i], data_dir, m, chain, tenant, now, &done, why);
        if (e && is_verdict(e)) {
            /* Left as it is; the others still get done. */
            fprintf(stderr, "kiroku: backup %s not erased: %s\n", names[i], why);
            first_bad = e;
        } else if (e) {
            err = e;
        }
        *generations += done;
    }
    if (names)
        free_names(names, n);
    free(chain);
    bmf_free(m);
    close(lfd);
    return err ? err : first_bad;
}
