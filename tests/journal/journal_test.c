/*
 * journal_test.c: tests for journal/journal.c and journal/cursor.c through the
 * public interface (journal.h), each in its own data directory.
 *
 * What the journal claims is checked against things computed here: payload
 * commitments and leaf hashes with libsodium's SHA-256, signatures with
 * libsodium's Ed25519, tree roots with a frontier fed from the records read
 * back, proofs with merkle.h's verifiers, checkpoints with note.h, and the
 * whole journal with jrn_verify.
 *
 * cmocka's assertions may only run on the test's own thread: worker threads
 * and completion callbacks count what went wrong in atomics that the test
 * thread then asserts on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "journal.h"
#include "journal_internal.h"
#include "keys.h"
#include "kr_error.h"
#include "kr_limits.h"
#include "merkle.h"
#include "mp.h"
#include "note.h"
#include "record.h"
#include "test_util.h"
#include "verify.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define DIR_CAP  1024
#define PATH_CAP 4096
/* A fixed point in time (2023-11-14) for the test clock. */
#define T0    1700000000000000000ull
#define ACTOR "account/test"
#define TYPE  "test.event"

/* ---- Test clock ---- */

/* A clock the test sets by hand, or that jumps around at random. */
struct tclock {
    _Atomic uint64_t now;
    atomic_bool chaotic;
    _Atomic uint64_t ticks;
};

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t tclock_now(void *ctx)
{
    struct tclock *c = ctx;
    if (atomic_load(&c->chaotic)) {
        /* Up to a second either way of `now`, in no order. */
        uint64_t r = splitmix64(atomic_fetch_add(&c->ticks, 1));
        return atomic_load(&c->now) + r % 2000000000ull - 1000000000ull;
    }
    return atomic_load(&c->now);
}

/* ---- Fixture: a data directory and an open journal ---- */

struct fx {
    char root[DIR_CAP]; /* temp directory, removed afterwards */
    char dir[DIR_CAP];  /* the data directory, root/data */
    struct tclock tc;
    struct kr_clock clock;
    struct jrn_info info; /* from jrn_create */
    struct journal *j;
    uint64_t map_size;
};

static int fx_setup(void **state)
{
    if (sodium_init() < 0)
        return -1;
    umask(022);
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    kr_test_tmpdir(f->root, sizeof f->root);
    snprintf(f->dir, sizeof f->dir, "%.1000s/data", f->root);
    atomic_store(&f->tc.now, T0);
    f->clock.now_ns = tclock_now;
    f->clock.ctx = &f->tc;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    jrn_close(f->j);
    kr_test_rmrf(f->root);
    free(f);
    return 0;
}

static struct jrn_options fx_opts(struct fx *f)
{
    struct jrn_options o;
    memset(&o, 0, sizeof o);
    o.dir = f->dir;
    o.clock = &f->clock;
    o.map_size = f->map_size;
    return o;
}

static void fx_create(struct fx *f)
{
    struct jrn_options o = fx_opts(f);
    assert_int_equal(jrn_create(&o, &f->info), KR_OK);
}

static void fx_open(struct fx *f)
{
    struct jrn_options o = fx_opts(f);
    assert_null(f->j);
    kr_err err = jrn_open(&o, &f->j);
    if (err)
        fail_msg("jrn_open: %s", kr_strerror(err));
}

static void fx_close(struct fx *f)
{
    jrn_close(f->j);
    f->j = NULL;
}

static void fx_create_open(struct fx *f)
{
    fx_create(f);
    fx_open(f);
}

/* ---- Events and records ---- */

static struct jrn_event ev(uint64_t tenant, const char *stream, uint64_t expected,
                           const void *payload, size_t len)
{
    struct jrn_event e;
    memset(&e, 0, sizeof e);
    e.tenant = tenant;
    e.stream = stream;
    e.stream_len = strlen(stream);
    e.type = TYPE;
    e.type_len = strlen(TYPE);
    e.actor = ACTOR;
    e.actor_len = strlen(ACTOR);
    e.expected_version = expected;
    e.payload = payload;
    e.payload_len = len;
    return e;
}

static uint64_t stream_version(struct journal *j, uint64_t tenant, const char *stream)
{
    uint64_t v = 12345;
    assert_int_equal(jrn_stream_version(j, tenant, stream, strlen(stream), &v), KR_OK);
    return v;
}

static void sha256(uint8_t out[KR_HASH_LEN], const void *p, size_t n)
{
    crypto_hash_sha256(out, p, n);
}

/* SHA-256(0x00 || header bytes), computed here. */
static void leaf_of(const struct jrn_record *r, uint8_t out[KR_HASH_LEN])
{
    crypto_hash_sha256_state st;
    const uint8_t zero = 0;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, &zero, 1);
    crypto_hash_sha256_update(&st, r->header, r->header_len);
    crypto_hash_sha256_final(&st, out);
}

static bool sig_ok(const struct jrn_record *r, const uint8_t pk[KR_PUBKEY_LEN])
{
    uint8_t msg[JRN_SIGN_INPUT_MAX];
    size_t len;
    jrn_record_sign_input(r, msg, &len);
    return crypto_sign_verify_detached(r->sig, msg, len, pk) == 0;
}

static bool str_is(const char *s, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* The record matches the event appended and its outputs, field by field. */
static void assert_record_is_event(const struct jrn_record *r, const struct jrn_event *e,
                                   const uint8_t pk[KR_PUBKEY_LEN])
{
    assert_true(r->seq == e->seq);
    assert_true(r->time_ns == e->time_ns);
    assert_true(r->tenant == e->tenant);
    assert_true(r->version == e->expected_version + 1);
    assert_int_equal(r->key_id, e->key_id);
    assert_int_equal(r->stream_len, e->stream_len);
    assert_memory_equal(r->stream, e->stream, e->stream_len);
    assert_int_equal(r->type_len, e->type_len);
    assert_memory_equal(r->type, e->type, e->type_len);
    assert_int_equal(r->actor_len, e->actor_len);
    if (e->actor_len)
        assert_memory_equal(r->actor, e->actor, e->actor_len);
    assert_memory_equal(r->commitment, e->commitment, KR_HASH_LEN);
    assert_memory_equal(r->sig, e->sig, JRN_SIG_LEN);
    assert_false(r->payload_stripped);
    assert_int_equal(r->payload_len, e->payload_len);
    if (e->payload_len)
        assert_memory_equal(r->payload, e->payload, e->payload_len);
    uint8_t c[KR_HASH_LEN];
    sha256(c, r->payload, r->payload_len);
    assert_memory_equal(r->commitment, c, KR_HASH_LEN);
    assert_true(sig_ok(r, pk));
}

static void verify_full(const char *dir, uint64_t records, uint64_t keys)
{
    struct jrn_verify_options o;
    struct jrn_verify_report rep;
    memset(&o, 0, sizeof o);
    memset(&rep, 0, sizeof rep);
    assert_int_equal(jrn_verify(dir, &o, &rep), KR_OK);
    if (rep.result != KR_OK)
        fail_msg("verify: %s at %" PRIu64 ": %s", kr_strerror(rep.result), rep.bad_seq, rep.what);
    assert_true(rep.records == records);
    if (keys)
        assert_true(rep.keys == keys);
    assert_true(rep.checkpoints >= 1);
}

/* Reads a public key file's key. */
static void pubkey(const char *dir, uint32_t id, uint8_t pk[KR_PUBKEY_LEN])
{
    assert_int_equal(kr_pubkey_load(dir, id, pk), KR_OK);
}

/* ---- Completion tracking for asynchronous appends ---- */

struct tracker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t done;             /* completions seen */
    atomic_int *calls;       /* per append: completions */
    _Atomic int *errs;       /* per append: the last outcome */
    struct jrn_append *base; /* appends are base[0..n) */
    size_t n;
    atomic_int *seen; /* per seq: records reported, when set */
    uint64_t seen_cap;
    atomic_int bad; /* anything out of range */
};

static void tracker_init(struct tracker *t, struct jrn_append *base, size_t n, uint64_t seen_cap)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->base = base;
    t->n = n;
    t->calls = calloc(n ? n : 1, sizeof *t->calls);
    t->errs = calloc(n ? n : 1, sizeof *t->errs);
    assert_non_null(t->calls);
    assert_non_null(t->errs);
    if (seen_cap) {
        t->seen = calloc(seen_cap, sizeof *t->seen);
        assert_non_null(t->seen);
        t->seen_cap = seen_cap;
    }
}

static void tracker_fini(struct tracker *t)
{
    free(t->calls);
    free((void *)t->errs);
    free(t->seen);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
}

static void tracker_seq(struct tracker *t, uint64_t seq)
{
    if (seq >= t->seen_cap)
        atomic_fetch_add(&t->bad, 1);
    else
        atomic_fetch_add(&t->seen[seq], 1);
}

static void tracker_done(struct jrn_append *a, kr_err err)
{
    struct tracker *t = a->arg;
    ptrdiff_t i = a - t->base;
    if (i < 0 || (size_t)i >= t->n) {
        atomic_fetch_add(&t->bad, 1);
    } else {
        atomic_fetch_add(&t->calls[i], 1);
        atomic_store(&t->errs[i], (int)err);
    }
    if (err == KR_OK && t->seen)
        for (size_t e = 0; e < a->n; e++)
            tracker_seq(t, a->events[e].seq);
    pthread_mutex_lock(&t->mu);
    t->done++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* Waits until want completions were counted; false (reported) if that took
 * longer than KR_TEST_WAIT_MS. */
__attribute__((warn_unused_result)) static bool tracker_wait(struct tracker *t, size_t want)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end); /* the condition variable's clock */
    end.tv_sec += KR_TEST_WAIT_MS / 1000u;
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    while (t->done < want && rc == 0)
        rc = pthread_cond_timedwait(&t->cv, &t->mu, &end);
    bool ok = t->done >= want;
    pthread_mutex_unlock(&t->mu);
    if (!ok)
        fprintf(stderr, "timed out waiting for %zu completions\n", want);
    return ok;
}

/* For kr_test_wait_for: whether a counter reached want. */
struct count_at {
    atomic_int *count;
    int want;
};
static bool count_reached(void *arg)
{
    const struct count_at *c = arg;
    return atomic_load(c->count) >= c->want;
}
struct size_at {
    atomic_size_t *count;
    size_t want;
};
static bool size_reached(void *arg)
{
    const struct size_at *c = arg;
    return atomic_load(c->count) >= c->want;
}

/* ==== Create and open ==== */

/* Parses the genesis payload {journal_id, origin, key_id, public_key}. */
static void check_genesis_payload(const struct jrn_record *r, const struct jrn_info *info)
{
    struct kr_mp_reader rd;
    uint32_t n;
    const char *k;
    size_t kl;
    const uint8_t *b;
    const char *s;
    size_t len;
    uint64_t u;
    kr_mp_reader_init(&rd, r->payload, r->payload_len, true);
    assert_int_equal(kr_mp_read_map(&rd, &n), KR_OK);
    assert_int_equal(n, 4);
    assert_int_equal(kr_mp_read_str(&rd, &k, &kl), KR_OK);
    assert_true(str_is(k, kl, "journal_id"));
    assert_int_equal(kr_mp_read_bin(&rd, &b, &len), KR_OK);
    assert_int_equal(len, 16);
    assert_memory_equal(b, info->journal_id, 16);
    assert_int_equal(kr_mp_read_str(&rd, &k, &kl), KR_OK);
    assert_true(str_is(k, kl, "origin"));
    assert_int_equal(kr_mp_read_str(&rd, &s, &len), KR_OK);
    assert_true(str_is(s, len, info->origin));
    assert_int_equal(kr_mp_read_str(&rd, &k, &kl), KR_OK);
    assert_true(str_is(k, kl, "key_id"));
    assert_int_equal(kr_mp_read_uint(&rd, &u), KR_OK);
    assert_true(u == 1);
    assert_int_equal(kr_mp_read_str(&rd, &k, &kl), KR_OK);
    assert_true(str_is(k, kl, "public_key"));
    assert_int_equal(kr_mp_read_bin(&rd, &b, &len), KR_OK);
    assert_int_equal(len, KR_PUBKEY_LEN);
    assert_memory_equal(b, info->pk, KR_PUBKEY_LEN);
    assert_int_equal(kr_mp_remaining(&rd), 0);
}

/* An init that died (kill -9) leaves at most DIR.init-tmp behind: the next
 * create starts over, and a directory holding other files is refused. */
static void test_create_after_died_init(void **state)
{
    struct fx *f = *state;
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s.init-tmp", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s.init-tmp/keys", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s.init-tmp/keys/journal-1.key", f->dir);
    FILE *junk = fopen(path, "w");
    assert_non_null(junk);
    fclose(junk);
    /* An empty DIR is fine too. */
    assert_int_equal(mkdir(f->dir, 0700), 0);
    fx_create(f);
    snprintf(path, sizeof path, "%s.init-tmp", f->dir);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
    fx_open(f);
    assert_true(jrn_size(f->j) == 1);

    /* A directory with something else in it is not ours to fill. */
    char other[PATH_CAP];
    snprintf(other, sizeof other, "%.1000s/other", f->root);
    assert_int_equal(mkdir(other, 0700), 0);
    snprintf(path, sizeof path, "%.1000s/notes.txt", other);
    junk = fopen(path, "w");
    assert_non_null(junk);
    fclose(junk);
    struct jrn_options o = fx_opts(f);
    o.dir = other;
    assert_int_equal(jrn_create(&o, NULL), KR_EEXIST);
}

/* The open journal's signing keys live in sodium_malloc'd memory (its own
 * guarded pages: mprotect works on them), the current key among them. */
static void test_signing_keys_guarded(void **state)
{
    struct fx *f = *state;
    fx_create(f);
    fx_open(f);
    assert_true(f->j->signing >= f->j->keys && f->j->signing < f->j->keys + KR_KEYS_MAX);
    assert_int_equal(sodium_mprotect_readonly(f->j->keys), 0);
    assert_int_equal(sodium_mprotect_readwrite(f->j->keys), 0);
}

static void test_create_open(void **state)
{
    struct fx *f = *state;
    struct stat st;
    char path[PATH_CAP];
    fx_create(f);

    /* What create reports. */
    assert_true(f->info.size == 1);
    assert_int_equal(f->info.key_id, 1);
    char hex[33], origin[64];
    sodium_bin2hex(hex, sizeof hex, f->info.journal_id, sizeof f->info.journal_id);
    snprintf(origin, sizeof origin, "kiroku/%s", hex);
    assert_string_equal(f->info.origin, origin);
    uint8_t pk[KR_PUBKEY_LEN];
    pubkey(f->dir, 1, pk);
    assert_memory_equal(f->info.pk, pk, KR_PUBKEY_LEN);

    /* What create made. */
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof path, "%s/keys/journal-1.key", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/journal/data.mdb", f->dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/checkpoint", f->dir);
    assert_int_equal(stat(path, &st), 0);

    /* Creating again, in any way, refuses and changes nothing. */
    struct jrn_options o = fx_opts(f);
    struct jrn_info again;
    assert_int_equal(jrn_create(&o, &again), KR_EEXIST);
    assert_int_equal(jrn_create(&o, NULL), KR_EEXIST);
    o.read_only = true;
    assert_int_equal(jrn_create(&o, NULL), KR_EINVAL);
    o.read_only = false;
    o.dir = NULL;
    assert_int_equal(jrn_create(&o, NULL), KR_EINVAL);
    assert_int_equal(jrn_create(NULL, NULL), KR_EINVAL);

    fx_open(f);
    struct jrn_info info;
    jrn_get_info(f->j, &info);
    assert_memory_equal(info.journal_id, f->info.journal_id, 16);
    assert_string_equal(info.origin, f->info.origin);
    assert_int_equal(info.key_id, 1);
    assert_memory_equal(info.pk, pk, KR_PUBKEY_LEN);
    assert_true(info.size == 1);
    assert_true(jrn_size(f->j) == 1);

    /* The genesis record. */
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_read(f->j, 1, &b), KR_OK);
    const struct jrn_record *r = &b.rec;
    assert_true(r->seq == 1);
    assert_true(r->tenant == 0);
    assert_true(r->version == 1);
    assert_true(r->time_ns == T0);
    assert_int_equal(r->key_id, 1);
    assert_true(str_is(r->stream, r->stream_len, JRN_SYSTEM_STREAM));
    assert_true(str_is(r->stream, r->stream_len, "journal"));
    assert_true(str_is(r->type, r->type_len, JRN_TYPE_CREATED));
    assert_true(str_is(r->type, r->type_len, "journal.created"));
    assert_true(str_is(r->actor, r->actor_len, JRN_SYSTEM_ACTOR));
    static const uint8_t zero[KR_HASH_LEN];
    assert_memory_equal(r->prev, zero, KR_HASH_LEN);
    assert_false(r->payload_stripped);
    uint8_t c[KR_HASH_LEN];
    sha256(c, r->payload, r->payload_len);
    assert_memory_equal(r->commitment, c, KR_HASH_LEN);
    assert_true(sig_ok(r, pk));
    check_genesis_payload(r, &f->info);
    uint8_t leaf1[KR_HASH_LEN];
    leaf_of(r, leaf1);
    assert_true(stream_version(f->j, 0, JRN_SYSTEM_STREAM) == 1);

    /* Nothing before or after it. */
    assert_int_equal(jrn_read(f->j, 0, &b), KR_ENOTFOUND);
    assert_int_equal(jrn_read(f->j, 2, &b), KR_ENOTFOUND);
    assert_int_equal(jrn_read(f->j, UINT64_MAX, &b), KR_ENOTFOUND);
    jrn_recbuf_fini(&b);
    jrn_recbuf_fini(&b); /* twice is harmless */
    jrn_recbuf_fini(NULL);

    /* The checkpoint covers it; the tree of one leaf has the leaf as root. */
    char note[KR_NOTE_MAX + 1], file[KR_NOTE_MAX + 1];
    size_t nl = 0;
    assert_int_equal(jrn_checkpoint(f->j, note, sizeof note, &nl), KR_OK);
    assert_int_equal(strlen(note), nl);
    struct kr_note_key nk;
    memset(&nk, 0, sizeof nk);
    snprintf(nk.name, sizeof nk.name, "%s", f->info.origin);
    memcpy(nk.pk, pk, KR_PUBKEY_LEN);
    nk.key_id = 1;
    struct kr_checkpoint cp;
    uint32_t kid = 0;
    assert_int_equal(kr_checkpoint_open(note, nl, &nk, 1, &cp, &kid), KR_OK);
    assert_int_equal(kid, 1);
    assert_true(cp.size == 1);
    assert_string_equal(cp.origin, f->info.origin);
    assert_memory_equal(cp.root, leaf1, KR_HASH_LEN);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t fl = fread(file, 1, sizeof file - 1, fp);
    fclose(fp);
    assert_int_equal(fl, nl);
    assert_memory_equal(file, note, nl);

    fx_close(f);
    verify_full(f->dir, 1, 1);
}

static void test_open_errors(void **state)
{
    struct fx *f = *state;
    struct jrn_options o;
    struct journal *j = NULL;
    char empty[PATH_CAP], missing[PATH_CAP];

    /* An empty directory and a missing one hold no journal. */
    snprintf(empty, sizeof empty, "%s/empty", f->root);
    snprintf(missing, sizeof missing, "%s/missing", f->root);
    assert_int_equal(mkdir(empty, 0700), 0);
    memset(&o, 0, sizeof o);
    o.dir = empty;
    assert_int_equal(jrn_open(&o, &j), KR_ENOTFOUND);
    assert_null(j);
    o.read_only = true;
    assert_int_equal(jrn_open(&o, &j), KR_ENOTFOUND);
    o.dir = missing;
    assert_int_equal(jrn_open(&o, &j), KR_ENOTFOUND);
    o.read_only = false;
    assert_int_equal(jrn_open(&o, &j), KR_ENOTFOUND);
    assert_null(j);
    /* The failed opens left nothing that stops a create. */
    o.dir = empty;
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    jrn_close(j);
    jrn_close(NULL);
    assert_int_equal(jrn_open(&o, NULL), KR_EINVAL);
    assert_int_equal(jrn_open(NULL, &j), KR_EINVAL);
}

static void test_one_writer(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    struct jrn_options o = fx_opts(f);
    struct journal *j2 = NULL, *ro = NULL;

    /* A second writer is refused, and so is a create. */
    assert_int_equal(jrn_open(&o, &j2), KR_EBUSY);
    assert_null(j2);
    assert_int_equal(jrn_create(&o, NULL), KR_EEXIST);
    /* In this process even a reader is refused: LMDB must not open one
     * environment twice in a process (closing one handle drops the other's
     * locks). Readers live in other processes, or use the writer's handle. */
    o.read_only = true;
    assert_int_equal(jrn_open(&o, &ro), KR_EBUSY);
    assert_null(ro);
    struct jrn_verify_report rep;
    struct jrn_verify_options vo = {.fast = true};
    assert_int_equal(jrn_verify(f->dir, &vo, &rep), KR_EBUSY);
    fx_close(f);

    /* A reader reads, and cannot write. */
    assert_int_equal(jrn_open(&o, &ro), KR_OK);
    assert_true(jrn_size(ro) == 1);
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_read(ro, 1, &b), KR_OK);
    assert_true(b.rec.seq == 1);
    char note[KR_NOTE_MAX + 1];
    size_t nl;
    assert_int_equal(jrn_checkpoint(ro, note, sizeof note, &nl), KR_OK);
    uint8_t p[4] = {1, 2, 3, 4};
    struct jrn_event e = ev(1, "ro", 0, p, sizeof p);
    assert_int_equal(jrn_append(ro, &e, 1), KR_ECLOSED);
    assert_int_equal(jrn_rotate_key(ro, NULL), KR_ECLOSED);
    struct jrn_append a;
    memset(&a, 0, sizeof a);
    a.events = &e;
    a.n = 1;
    a.done = tracker_done;
    assert_int_equal(jrn_submit(ro, &a), KR_ECLOSED);

    /* A writer in another process writes while the reader is open; the
     * reader sees the record. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A process of its own (LMDB handles must not cross a fork). */
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execl(KR_KIROKU_BIN, "kiroku", "bench", "append", "--data", f->dir, "--events", "1",
              "--producers", "1", "--window", "1", "--ceiling", "0", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(jrn_size(ro) == 2);
    assert_int_equal(jrn_read(ro, 2, &b), KR_OK);
    assert_true(b.rec.seq == 2);
    jrn_recbuf_fini(&b);
    jrn_close(ro);

    /* Once the reader closes, a writer may open here. */
    o.read_only = false;
    assert_int_equal(jrn_open(&o, &j2), KR_OK);
    assert_true(jrn_size(j2) == 2);
    struct journal *j3 = NULL;
    assert_int_equal(jrn_open(&o, &j3), KR_EBUSY);
    jrn_close(j2);
    verify_full(f->dir, 2, 1);
}

/* ==== Appending ==== */

static void test_append_one(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint8_t pk[KR_PUBKEY_LEN];
    pubkey(f->dir, 1, pk);
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_read(f->j, 1, &b), KR_OK);
    uint8_t leaf1[KR_HASH_LEN];
    leaf_of(&b.rec, leaf1);

    atomic_store(&f->tc.now, T0 + 5000);
    static const uint8_t payload[] = "\x82\xa4name\xa6Taro Y\xa3tel\xad+81-3-0000-00";
    struct jrn_event e =
        ev(7, "contact/0123456789abcdef0123456789abcdef", 0, payload, sizeof payload - 1);
    e.type = "contact.created";
    e.type_len = strlen(e.type);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);

    /* The outputs. */
    assert_true(e.seq == 2);
    assert_true(e.time_ns == T0 + 5000);
    assert_int_equal(e.key_id, 1);
    uint8_t c[KR_HASH_LEN];
    sha256(c, payload, sizeof payload - 1);
    assert_memory_equal(e.commitment, c, KR_HASH_LEN);
    struct jrn_record sr;
    memset(&sr, 0, sizeof sr);
    sr.tenant = 7;
    sr.stream = e.stream;
    sr.stream_len = e.stream_len;
    sr.version = 1;
    sr.type = e.type;
    sr.type_len = e.type_len;
    sr.time_ns = T0 + 5000;
    sr.actor = ACTOR;
    sr.actor_len = strlen(ACTOR);
    sr.key_id = 1;
    memcpy(sr.commitment, c, KR_HASH_LEN);
    uint8_t msg[JRN_SIGN_INPUT_MAX];
    size_t ml;
    jrn_record_sign_input(&sr, msg, &ml);
    assert_int_equal(crypto_sign_verify_detached(e.sig, msg, ml, pk), 0);
    /* The signature binds the tenant: the same record in tenant 8 fails. */
    sr.tenant = 8;
    jrn_record_sign_input(&sr, msg, &ml);
    assert_int_not_equal(crypto_sign_verify_detached(e.sig, msg, ml, pk), 0);

    /* Read back, every field. */
    assert_true(jrn_size(f->j) == 2);
    assert_int_equal(jrn_read(f->j, 2, &b), KR_OK);
    assert_record_is_event(&b.rec, &e, pk);
    assert_true(b.rec.version == 1);
    assert_memory_equal(b.rec.prev, leaf1, KR_HASH_LEN);
    assert_true(stream_version(f->j, 7, e.stream) == 1);
    assert_true(stream_version(f->j, 6, e.stream) == 0);

    /* An empty payload and an empty actor are fine. */
    struct jrn_event e2 = ev(7, "s", 0, NULL, 0);
    e2.actor = "";
    e2.actor_len = 0;
    assert_int_equal(jrn_append(f->j, &e2, 1), KR_OK);
    assert_true(e2.seq == 3);
    assert_int_equal(jrn_read(f->j, 3, &b), KR_OK);
    assert_record_is_event(&b.rec, &e2, pk);

    struct jrn_stats st;
    jrn_get_stats(f->j, &st);
    assert_true(st.events == 2);
    assert_true(st.batches == 2);
    assert_true(st.conflicts == 0);
    jrn_recbuf_fini(&b);
    fx_close(f);
    verify_full(f->dir, 3, 1);
}

/* ---- One flush per commit ---- */

/* What a completion saw: the journal's flush counters at the moment the
 * append was acknowledged. */
struct ack_seen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    kr_err err;
    struct journal *j;
    struct jrn_stats at_ack;
};

static void ack_seen_done(struct jrn_append *a, kr_err err)
{
    struct ack_seen *s = a->arg;
    jrn_get_stats(s->j, &s->at_ack);
    pthread_mutex_lock(&s->mu);
    s->err = err;
    s->done = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Submits one append and waits (30 s at most) for its completion. */
static void submit_and_wait(struct fx *f, struct ack_seen *s, uint64_t expected)
{
    static const uint8_t payload[] = "lone";
    struct jrn_event e = ev(3, "lone/stream", expected, payload, sizeof payload - 1);
    struct jrn_append a = {.events = &e, .n = 1, .done = ack_seen_done, .arg = s};
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->done = false;
    s->j = f->j;
    assert_int_equal(jrn_submit(f->j, &a), KR_OK);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (!s->done && rc == 0)
        rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    pthread_mutex_unlock(&s->mu);
    assert_true(s->done);
    assert_int_equal(s->err, KR_OK);
    assert_int_equal(e.seq, jrn_size(f->j));
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

/* A lone producer's append (nothing else queued) is acknowledged once
 * mdb_env_sync has flushed its commit's meta page, without waiting for
 * another commit: at the acknowledgement the sync is already counted and no
 * second commit happened. With two_flushes the commit flushes its own meta
 * page and no sync is made. */
static void test_one_flush_lone_append(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    struct jrn_stats s0;
    jrn_get_stats(f->j, &s0);
    struct ack_seen s;
    memset(&s, 0, sizeof s);
    submit_and_wait(f, &s, 0);
    assert_int_equal(s.at_ack.batches, s0.batches + 1);
    assert_int_equal(s.at_ack.meta_syncs, s0.meta_syncs + 1);
    submit_and_wait(f, &s, 1);
    assert_int_equal(s.at_ack.batches, s0.batches + 2);
    assert_int_equal(s.at_ack.meta_syncs, s0.meta_syncs + 2);
    fx_close(f);

    /* Two flushes per commit: LMDB's own, no meta sync of the journal's. */
    struct jrn_options o = fx_opts(f);
    o.two_flushes = true;
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    jrn_get_stats(f->j, &s0);
    submit_and_wait(f, &s, 2);
    assert_int_equal(s.at_ack.batches, s0.batches + 1);
    assert_int_equal(s.at_ack.meta_syncs, 0);
    fx_close(f);

    /* Both kinds of commit are there after a reopen. */
    fx_open(f);
    assert_int_equal(jrn_size(f->j), 4);
}

static void test_optimistic_concurrency(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint8_t p[8] = "payload";
    struct jrn_event e = ev(1, "order/1", 0, p, sizeof p);

    /* A new stream expects 0. */
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    assert_true(e.seq == 2);
    assert_true(stream_version(f->j, 1, "order/1") == 1);

    /* Stale and future versions conflict and write nothing. */
    static const uint64_t wrong[] = {0, 2, 5, UINT64_MAX - 1};
    for (size_t i = 0; i < COUNT(wrong); i++) {
        e = ev(1, "order/1", wrong[i], p, sizeof p);
        assert_int_equal(jrn_append(f->j, &e, 1), KR_ECONFLICT);
        assert_true(jrn_size(f->j) == 2);
        assert_true(stream_version(f->j, 1, "order/1") == 1);
    }
    /* The next seq is the one after the last record: nothing was used up. */
    e = ev(1, "order/1", 1, p, sizeof p);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    assert_true(e.seq == 3);
    assert_true(stream_version(f->j, 1, "order/1") == 2);

    uint64_t ver;
    assert_int_equal(jrn_stream_version(f->j, 1, "", 0, &ver), KR_EINVAL);
    char too_long[KR_STREAM_MAX + 1];
    memset(too_long, 'x', sizeof too_long);
    assert_int_equal(jrn_stream_version(f->j, 1, too_long, sizeof too_long, &ver), KR_EINVAL);

    /* Streams are per tenant and per exact name. */
    struct jrn_event same_name[3] = {ev(2, "order/1", 0, p, sizeof p),
                                     ev(1, "order/10", 0, p, sizeof p),
                                     ev(1, "order/", 0, p, sizeof p)};
    assert_int_equal(jrn_append(f->j, same_name, 3), KR_OK);
    assert_true(same_name[0].seq == 4 && same_name[1].seq == 5 && same_name[2].seq == 6);

    /* A multi-event append whose third event conflicts writes none of them. */
    struct jrn_event multi[4] = {ev(1, "a", 0, p, sizeof p), ev(1, "order/1", 2, p, sizeof p),
                                 ev(1, "c", 3, p, sizeof p), ev(1, "d", 0, p, sizeof p)};
    assert_int_equal(jrn_append(f->j, multi, 4), KR_ECONFLICT);
    assert_true(jrn_size(f->j) == 6);
    assert_true(stream_version(f->j, 1, "a") == 0);
    assert_true(stream_version(f->j, 1, "order/1") == 2);
    assert_true(stream_version(f->j, 1, "d") == 0);

    /* Consecutive versions of one stream in one append. */
    struct jrn_event run[4] = {ev(1, "run", 0, p, sizeof p), ev(1, "run", 1, p, sizeof p),
                               ev(1, "run", 2, p, sizeof p), ev(1, "run", 3, p, sizeof p)};
    assert_int_equal(jrn_append(f->j, run, 4), KR_OK);
    for (size_t i = 0; i < 4; i++)
        assert_true(run[i].seq == 7 + i);
    assert_true(stream_version(f->j, 1, "run") == 4);
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    for (uint64_t i = 0; i < 4; i++) {
        assert_int_equal(jrn_read(f->j, 7 + i, &b), KR_OK);
        assert_true(b.rec.version == i + 1);
        assert_true(b.rec.time_ns == run[0].time_ns); /* one append, one time */
    }
    jrn_recbuf_fini(&b);

    /* Inside one append, versions must follow each other exactly. */
    struct jrn_event gaps[][2] = {
        {ev(1, "g", 0, p, sizeof p), ev(1, "g", 0, p, sizeof p)},
        {ev(1, "g", 0, p, sizeof p), ev(1, "g", 2, p, sizeof p)},
        {ev(1, "run", 4, p, sizeof p), ev(1, "run", 4, p, sizeof p)},
        {ev(1, "run", 3, p, sizeof p), ev(1, "run", 4, p, sizeof p)},
    };
    for (size_t i = 0; i < COUNT(gaps); i++) {
        assert_int_equal(jrn_append(f->j, gaps[i], 2), KR_ECONFLICT);
        assert_true(jrn_size(f->j) == 10);
    }
    assert_true(stream_version(f->j, 1, "g") == 0);
    assert_true(stream_version(f->j, 1, "run") == 4);

    struct jrn_stats st;
    jrn_get_stats(f->j, &st);
    assert_true(st.conflicts == COUNT(wrong) + 1 + COUNT(gaps));
    assert_true(st.events == 9);
    fx_close(f);
    verify_full(f->dir, 10, 1);
}

/* Threads racing to append the same version of one stream. */
#define RACE_THREADS 4
#define RACE_ROUNDS  20

struct racer {
    struct journal *j;
    pthread_barrier_t *go;
    uint64_t expected;
    kr_err result;
    uint64_t seq;
    uint8_t payload[8];
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    struct jrn_event e = ev(3, "race", r->expected, r->payload, sizeof r->payload);
    pthread_barrier_wait(r->go);
    r->result = jrn_append(r->j, &e, 1);
    r->seq = e.seq;
    return NULL;
}

static void test_occ_race(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint64_t size = 1;
    for (uint64_t round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, RACE_THREADS);
        struct racer r[RACE_THREADS];
        pthread_t t[RACE_THREADS];
        for (int i = 0; i < RACE_THREADS; i++) {
            memset(&r[i], 0, sizeof r[i]);
            r[i].j = f->j;
            r[i].go = &go;
            r[i].expected = round;
            r[i].payload[0] = (uint8_t)i;
            r[i].payload[1] = (uint8_t)round;
            assert_int_equal(pthread_create(&t[i], NULL, racer_main, &r[i]), 0);
        }
        int won = -1, lost = 0;
        for (int i = 0; i < RACE_THREADS; i++) {
            pthread_join(t[i], NULL);
            if (r[i].result == KR_OK) {
                assert_int_equal(won, -1);
                won = i;
            } else {
                assert_int_equal(r[i].result, KR_ECONFLICT);
                lost++;
            }
        }
        pthread_barrier_destroy(&go);
        assert_int_not_equal(won, -1);
        assert_int_equal(lost, RACE_THREADS - 1);
        size++;
        assert_true(jrn_size(f->j) == size);
        assert_true(r[won].seq == size);
        assert_true(stream_version(f->j, 3, "race") == round + 1);
        /* The record is the winner's. */
        struct jrn_recbuf b;
        memset(&b, 0, sizeof b);
        assert_int_equal(jrn_read(f->j, size, &b), KR_OK);
        assert_int_equal(b.rec.payload[0], won);
        jrn_recbuf_fini(&b);
    }
    fx_close(f);
    verify_full(f->dir, size, 1);
}

static void expect_refused(struct fx *f, struct jrn_event *events, size_t n, kr_err want,
                           const char *what, struct tracker *t)
{
    kr_err got = jrn_append(f->j, events, n);
    if (got != want)
        fail_msg("jrn_append %s: want %s, got %s", what, kr_strerror(want), kr_strerror(got));
    struct jrn_append a;
    memset(&a, 0, sizeof a);
    a.events = events;
    a.n = n;
    a.done = tracker_done;
    a.arg = t;
    got = jrn_submit(f->j, &a);
    if (got != want)
        fail_msg("jrn_submit %s: want %s, got %s", what, kr_strerror(want), kr_strerror(got));
}

static void test_validation(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    struct tracker t;
    tracker_init(&t, NULL, 0, 0);
    uint8_t *big = calloc(1, KR_PAYLOAD_MAX + 1);
    assert_non_null(big);
    uint8_t p[4] = {9, 9, 9, 9};
    char long_stream[KR_STREAM_MAX + 2], long_type[KR_TYPE_MAX + 2], long_actor[KR_ACTOR_MAX + 2];
    memset(long_stream, 's', sizeof long_stream - 1);
    long_stream[sizeof long_stream - 1] = '\0';
    memset(long_type, 't', sizeof long_type - 1);
    long_type[sizeof long_type - 1] = '\0';
    memset(long_actor, 'a', sizeof long_actor - 1);
    long_actor[sizeof long_actor - 1] = '\0';

    struct jrn_event e = ev(1, "v", 0, p, sizeof p);
    expect_refused(f, &e, 0, KR_EINVAL, "n = 0", &t);
    expect_refused(f, NULL, 1, KR_EINVAL, "no events", &t);

    struct jrn_event *many = calloc(KR_APPEND_MAX_EVENTS + 1, sizeof *many);
    assert_non_null(many);
    for (size_t i = 0; i <= KR_APPEND_MAX_EVENTS; i++)
        many[i] = ev(1, "many", i, p, sizeof p);
    expect_refused(f, many, KR_APPEND_MAX_EVENTS + 1, KR_ETOOLARGE, "too many events", &t);

    e = ev(1, "v", 0, big, KR_PAYLOAD_MAX + 1);
    expect_refused(f, &e, 1, KR_ETOOLARGE, "payload too large", &t);
    e = ev(1, "v", 0, NULL, 3);
    expect_refused(f, &e, 1, KR_EINVAL, "payload NULL", &t);
    e = ev(1, "a b", 0, p, sizeof p);
    expect_refused(f, &e, 1, KR_EINVAL, "stream with space", &t);
    e = ev(1, "", 0, p, sizeof p);
    expect_refused(f, &e, 1, KR_EINVAL, "empty stream", &t);
    e = ev(1, "caf\xc3\xa9", 0, p, sizeof p);
    expect_refused(f, &e, 1, KR_EINVAL, "non-ASCII stream", &t);
    e = ev(1, long_stream, 0, p, sizeof p);
    expect_refused(f, &e, 1, KR_ETOOLARGE, "stream too long", &t);
    e = ev(1, "v", 0, p, sizeof p);
    e.type = "Contact.created";
    e.type_len = strlen(e.type);
    expect_refused(f, &e, 1, KR_EINVAL, "type upper case", &t);
    e.type_len = 0;
    expect_refused(f, &e, 1, KR_EINVAL, "empty type", &t);
    e.type = long_type;
    e.type_len = strlen(long_type);
    expect_refused(f, &e, 1, KR_ETOOLARGE, "type too long", &t);
    e = ev(1, "v", 0, p, sizeof p);
    e.actor = long_actor;
    e.actor_len = strlen(long_actor);
    expect_refused(f, &e, 1, KR_ETOOLARGE, "actor too long", &t);
    e.actor = "a b";
    e.actor_len = 3;
    expect_refused(f, &e, 1, KR_EINVAL, "actor with space", &t);
    e = ev(1, "v", UINT64_MAX, p, sizeof p);
    expect_refused(f, &e, 1, KR_EINVAL, "expected version 2^64-1", &t);

    /* One bad event spoils the append: the good ones before it are not queued. */
    struct jrn_event mixed[3] = {ev(1, "m1", 0, p, sizeof p), ev(1, "m2", 0, p, sizeof p),
                                 ev(1, "m 3", 0, p, sizeof p)};
    expect_refused(f, mixed, 3, KR_EINVAL, "bad third event", &t);

    /* Events of at most KR_PAYLOAD_MAX each, but more than a batch can hold. */
    for (size_t i = 0; i < KR_APPEND_MAX_EVENTS; i++)
        many[i] = ev(1, "bulk", i, big, KR_PAYLOAD_MAX);
    expect_refused(f, many, KR_APPEND_MAX_EVENTS, KR_ETOOLARGE, "append over batch bytes", &t);

    /* jrn_submit needs a completion. */
    struct jrn_append a;
    memset(&a, 0, sizeof a);
    e = ev(1, "v", 0, p, sizeof p);
    a.events = &e;
    a.n = 1;
    assert_int_equal(jrn_submit(f->j, &a), KR_EINVAL);

    /* Nothing was queued: the next good append is seq 2, no callback ever ran. */
    assert_true(jrn_size(f->j) == 1);
    e = ev(1, "v", 0, p, sizeof p);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    assert_true(e.seq == 2);
    static const char *untouched[] = {"many", "m1", "m2", "bulk"};
    for (size_t i = 0; i < COUNT(untouched); i++)
        assert_true(stream_version(f->j, 1, untouched[i]) == 0);
    assert_int_equal(t.done, 0);
    assert_int_equal(atomic_load(&t.bad), 0);

    /* The limits themselves are allowed. */
    for (size_t i = 0; i < KR_APPEND_MAX_EVENTS; i++)
        many[i] = ev(1, "many", i, p, sizeof p);
    assert_int_equal(jrn_append(f->j, many, KR_APPEND_MAX_EVENTS), KR_OK);
    assert_true(many[KR_APPEND_MAX_EVENTS - 1].seq == 2 + KR_APPEND_MAX_EVENTS);
    long_stream[KR_STREAM_MAX] = '\0';
    long_type[KR_TYPE_MAX] = '\0';
    long_actor[KR_ACTOR_MAX] = '\0';
    e = ev(1, long_stream, 0, big, KR_PAYLOAD_MAX);
    e.type = long_type;
    e.type_len = KR_TYPE_MAX;
    e.actor = long_actor;
    e.actor_len = KR_ACTOR_MAX;
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    uint64_t size = jrn_size(f->j);
    assert_true(size == 3 + KR_APPEND_MAX_EVENTS);
    uint8_t pk[KR_PUBKEY_LEN];
    pubkey(f->dir, 1, pk);
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_read(f->j, size, &b), KR_OK);
    assert_record_is_event(&b.rec, &e, pk);
    jrn_recbuf_fini(&b);

    free(many);
    free(big);
    tracker_fini(&t);
    fx_close(f);
    verify_full(f->dir, size, 1);
}

/* The journal's own stream takes only the journal's own records: one written
 * by a caller would be read as a key change on the next open. */
static void test_system_stream_reserved(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint8_t p[4] = {1, 2, 3, 4};
    struct jrn_event e = ev(0, JRN_SYSTEM_STREAM, 1, p, sizeof p);
    e.type = JRN_TYPE_KEY_ADDED;
    e.type_len = strlen(e.type);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_EINVAL);
    e.type = TYPE;
    e.type_len = strlen(e.type);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_EINVAL);
    struct jrn_event two[2] = {ev(0, "other", 0, p, sizeof p), ev(0, JRN_SYSTEM_STREAM, 1, p, 4)};
    assert_int_equal(jrn_append(f->j, two, 2), KR_EINVAL);
    assert_true(jrn_size(f->j) == 1);
    /* Other streams of tenant 0, and "journal" streams of other tenants, are fine. */
    e = ev(0, "journalx", 0, p, sizeof p);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    e = ev(1, JRN_SYSTEM_STREAM, 0, p, sizeof p);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    /* The journal reopens with its key and still verifies. */
    fx_close(f);
    fx_open(f);
    assert_true(jrn_size(f->j) == 3);
    e = ev(0, "journalx", 1, p, sizeof p);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    fx_close(f);
    verify_full(f->dir, 4, 1);
}

/* ==== Time ==== */

struct burst {
    struct journal *j;
    int id;
    int n;
    atomic_int *failures;
};

static void *burst_main(void *arg)
{
    struct burst *b = arg;
    char stream[32];
    snprintf(stream, sizeof stream, "burst/%d", b->id);
    uint8_t p[8];
    for (int i = 0; i < b->n; i++) {
        memcpy(p, &i, sizeof i);
        if (i % 5 == 4) {
            struct jrn_event two[2] = {
                ev(2, stream, (uint64_t)i + (uint64_t)i / 5, p, sizeof p),
                ev(2, stream, (uint64_t)i + (uint64_t)i / 5 + 1, p, sizeof p)};
            if (jrn_append(b->j, two, 2) != KR_OK || two[0].time_ns != two[1].time_ns)
                atomic_fetch_add(b->failures, 1);
        } else {
            struct jrn_event e = ev(2, stream, (uint64_t)i + (uint64_t)i / 5, p, sizeof p);
            if (jrn_append(b->j, &e, 1) != KR_OK)
                atomic_fetch_add(b->failures, 1);
        }
    }
    return NULL;
}

/* Times along seq, from a RANGE cursor. */
static uint64_t check_times_never_decrease(struct journal *j, uint64_t *count)
{
    struct jrn_query q;
    memset(&q, 0, sizeof q);
    q.kind = JRN_Q_RANGE;
    struct jrn_cursor *c;
    struct jrn_record r;
    assert_int_equal(jrn_cursor_new(j, &q, &c), KR_OK);
    uint64_t last = 0, n = 0;
    kr_err err;
    while ((err = jrn_cursor_next(c, &r)) == KR_OK) {
        n++;
        assert_true(r.seq == n);
        if (r.time_ns < last)
            fail_msg("seq %" PRIu64 ": time %" PRIu64 " < %" PRIu64, r.seq, r.time_ns, last);
        last = r.time_ns;
    }
    assert_int_equal(err, KR_ENOTFOUND);
    jrn_cursor_free(c);
    *count = n;
    return last;
}

static void test_time(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint8_t p[2] = {0, 0};
    /* The clock's path, and the time each append must get. */
    static const struct {
        int64_t clock; /* offset from T0 */
        int64_t want;
    } steps[] = {
        {1000, 1000},
        {1000, 1000},               /* stands still */
        {500, 1000},                /* goes back: time stands still */
        {-(int64_t)(T0 / 2), 1000}, /* far back */
        {1001, 1001},               /* forward again */
        {5000000000, 5000000000},   /* jumps ahead */
        {2000, 5000000000},         /* and back */
        {5000000001, 5000000001},
    };
    for (size_t i = 0; i < COUNT(steps); i++) {
        atomic_store(&f->tc.now, (uint64_t)((int64_t)T0 + steps[i].clock));
        p[0] = (uint8_t)i;
        struct jrn_event e = ev(1, "clock", i, p, sizeof p);
        assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
        assert_true(e.time_ns == (uint64_t)((int64_t)T0 + steps[i].want));
        struct jrn_recbuf b;
        memset(&b, 0, sizeof b);
        assert_int_equal(jrn_read(f->j, e.seq, &b), KR_OK);
        assert_true(b.rec.time_ns == e.time_ns);
        jrn_recbuf_fini(&b);
    }
    uint64_t high = T0 + 5000000001ull;

    /* A burst from several threads under a clock that jumps about. */
    atomic_store(&f->tc.now, high + 10000000000ull);
    atomic_store(&f->tc.chaotic, true);
    enum { THREADS = 4, PER = 150 };
    atomic_int failures = 0;
    struct burst bs[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        bs[i] = (struct burst){.j = f->j, .id = i, .n = PER, .failures = &failures};
        assert_int_equal(pthread_create(&t[i], NULL, burst_main, &bs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&failures), 0);
    atomic_store(&f->tc.chaotic, false);
    uint64_t n;
    uint64_t last = check_times_never_decrease(f->j, &n);
    uint64_t want_n = 1 + COUNT(steps) + THREADS * (PER + PER / 5);
    assert_true(n == want_n);
    assert_true(last >= high);

    /* After a reopen under a clock far behind, times still do not decrease. */
    fx_close(f);
    atomic_store(&f->tc.now, 5);
    fx_open(f);
    struct jrn_event e = ev(1, "after", 0, p, sizeof p);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    assert_true(e.time_ns == last);
    atomic_store(&f->tc.now, last + 7);
    e = ev(1, "after", 1, p, sizeof p);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    assert_true(e.time_ns == last + 7);
    check_times_never_decrease(f->j, &n);
    assert_true(n == want_n + 2);
    fx_close(f);
    verify_full(f->dir, want_n + 2, 1);
}

/* ==== Many appenders ==== */

#define CONC_THREADS 8
#define CONC_PER     2000
#define CONC_PAYLOAD 24

struct appender {
    struct journal *j;
    int id;
    struct jrn_append *apps; /* CONC_PER, for the asynchronous ones */
    struct jrn_event *events;
    uint8_t (*payloads)[CONC_PAYLOAD];
    char stream[32];
    struct tracker *t; /* shared */
    size_t submitted;  /* asynchronous appends submitted */
    atomic_int sync_failures;
    atomic_int submit_failures;
};

/* A heap-allocated append that its completion frees. */
struct owned {
    struct jrn_append a;
    struct jrn_event e;
    uint8_t payload[CONC_PAYLOAD];
    struct tracker *t;
};

static atomic_int owned_done, owned_bad;

static void owned_done_fn(struct jrn_append *a, kr_err err)
{
    struct owned *o = a->arg;
    if (err != KR_OK || a != &o->a)
        atomic_fetch_add(&owned_bad, 1);
    else
        tracker_seq(o->t, o->e.seq);
    memset(o, 0xdd, sizeof *o);
    free(o);
    atomic_fetch_add(&owned_done, 1);
}

static void payload_for(uint8_t out[CONC_PAYLOAD], int thread, int i)
{
    memset(out, 0, CONC_PAYLOAD);
    snprintf((char *)out, CONC_PAYLOAD, "t%d/i%d", thread, i);
}

static void *appender_main(void *arg)
{
    struct appender *ap = arg;
    snprintf(ap->stream, sizeof ap->stream, "thread/%d", ap->id);
    for (int i = 0; i < CONC_PER; i++) {
        payload_for(ap->payloads[i], ap->id, i);
        ap->events[i] =
            ev((uint64_t)ap->id % 3 + 1, ap->stream, (uint64_t)i, ap->payloads[i], CONC_PAYLOAD);
        if (i % 7 == 3) {
            /* Synchronous, between asynchronous ones of the same stream. */
            if (jrn_append(ap->j, &ap->events[i], 1) != KR_OK)
                atomic_fetch_add(&ap->sync_failures, 1);
            else
                tracker_seq(ap->t, ap->events[i].seq);
        } else if (i % 7 == 5) {
            struct owned *o = calloc(1, sizeof *o);
            if (!o) {
                atomic_fetch_add(&ap->submit_failures, 1);
                continue;
            }
            memcpy(o->payload, ap->payloads[i], CONC_PAYLOAD);
            o->e = ap->events[i];
            o->e.payload = o->payload;
            o->t = ap->t;
            o->a.events = &o->e;
            o->a.n = 1;
            o->a.done = owned_done_fn;
            o->a.arg = o;
            if (jrn_submit(ap->j, &o->a) != KR_OK) {
                atomic_fetch_add(&ap->submit_failures, 1);
                free(o);
            }
        } else {
            struct jrn_append *a = &ap->apps[i];
            memset(a, 0, sizeof *a);
            a->events = &ap->events[i];
            a->n = 1;
            a->done = tracker_done;
            a->arg = ap->t;
            if (jrn_submit(ap->j, a) != KR_OK)
                atomic_fetch_add(&ap->submit_failures, 1);
            else
                ap->submitted++;
        }
    }
    return NULL;
}

static void test_concurrent_appends(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    const uint64_t total = (uint64_t)CONC_THREADS * CONC_PER;
    /* One tracker over every thread's appends: base is one big array. */
    struct jrn_append *apps = calloc((size_t)total, sizeof *apps);
    struct jrn_event *events = calloc((size_t)total, sizeof *events);
    uint8_t(*payloads)[CONC_PAYLOAD] = calloc((size_t)total, CONC_PAYLOAD);
    assert_non_null(apps);
    assert_non_null(events);
    assert_non_null(payloads);
    struct tracker t;
    tracker_init(&t, apps, (size_t)total, total + 2);
    atomic_store(&owned_done, 0);
    atomic_store(&owned_bad, 0);

    struct appender ap[CONC_THREADS];
    pthread_t th[CONC_THREADS];
    for (int i = 0; i < CONC_THREADS; i++) {
        memset(&ap[i], 0, sizeof ap[i]);
        ap[i].j = f->j;
        ap[i].id = i;
        ap[i].apps = apps + (size_t)i * CONC_PER;
        ap[i].events = events + (size_t)i * CONC_PER;
        ap[i].payloads = payloads + (size_t)i * CONC_PER;
        ap[i].t = &t;
        assert_int_equal(pthread_create(&th[i], NULL, appender_main, &ap[i]), 0);
    }
    size_t async = 0, owned = 0, sync = 0;
    for (int i = 0; i < CONC_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&ap[i].sync_failures), 0);
        assert_int_equal(atomic_load(&ap[i].submit_failures), 0);
        async += ap[i].submitted;
    }
    for (int i = 0; i < CONC_PER; i++) {
        sync += i % 7 == 3;
        owned += i % 7 == 5;
    }
    sync *= CONC_THREADS;
    owned *= CONC_THREADS;
    assert_int_equal(async + owned + sync, total);
    assert_true(tracker_wait(&t, async));
    struct count_at owned_at = {&owned_done, (int)owned};
    assert_true(kr_test_wait_for(count_reached, &owned_at, KR_TEST_WAIT_MS,
                                 "the owned appends' callbacks"));

    /* Every completion exactly once, with KR_OK. */
    assert_int_equal(atomic_load(&t.bad), 0);
    assert_int_equal(atomic_load(&owned_bad), 0);
    for (size_t i = 0; i < total; i++) {
        bool is_async = (i % CONC_PER) % 7 != 3 && (i % CONC_PER) % 7 != 5;
        assert_int_equal(atomic_load(&t.calls[i]), is_async ? 1 : 0);
        if (is_async)
            assert_int_equal(atomic_load(&t.errs[i]), KR_OK);
    }
    /* Seqs 2..total+1, each once. */
    assert_int_equal(atomic_load(&t.seen[0]), 0);
    assert_int_equal(atomic_load(&t.seen[1]), 0);
    for (uint64_t s = 2; s < total + 2; s++)
        if (atomic_load(&t.seen[s]) != 1)
            fail_msg("seq %" PRIu64 " reported %d times", s, atomic_load(&t.seen[s]));
    assert_true(jrn_size(f->j) == total + 1);
    struct jrn_stats st;
    jrn_get_stats(f->j, &st);
    assert_true(st.events == total);
    assert_true(st.conflicts == 0);
    assert_true(st.max_batch >= 1 && st.max_batch <= KR_BATCH_MAX_EVENTS);

    /* Each thread's stream holds its appends in order. */
    for (int i = 0; i < CONC_THREADS; i++) {
        struct jrn_query q;
        memset(&q, 0, sizeof q);
        q.kind = JRN_Q_STREAM;
        q.tenant = (uint64_t)i % 3 + 1;
        q.stream = ap[i].stream;
        q.stream_len = strlen(ap[i].stream);
        struct jrn_cursor *c;
        struct jrn_record r;
        assert_int_equal(jrn_cursor_new(f->j, &q, &c), KR_OK);
        uint8_t want[CONC_PAYLOAD];
        uint64_t prev_seq = 0;
        for (int k = 0; k < CONC_PER; k++) {
            assert_int_equal(jrn_cursor_next(c, &r), KR_OK);
            assert_true(r.version == (uint64_t)k + 1);
            assert_true(r.seq > prev_seq);
            prev_seq = r.seq;
            payload_for(want, i, k);
            assert_int_equal(r.payload_len, CONC_PAYLOAD);
            assert_memory_equal(r.payload, want, CONC_PAYLOAD);
        }
        assert_int_equal(jrn_cursor_next(c, &r), KR_ENOTFOUND);
        jrn_cursor_free(c);
    }
    tracker_fini(&t);
    free(apps);
    free(events);
    free(payloads);
    fx_close(f);
    verify_full(f->dir, total + 1, 1);
}

/* ==== Cursors ==== */

#define CUR_EVENTS  900 /* tenants 1..3, 300 each */
#define CUR_LARGE   40  /* tenant 4: payloads near the maximum */
#define LARGE_BYTES (60 * 1024)

/* The stream and payload of event i of the cursor test. */
static void cur_event(int i, uint64_t *tenant, char *stream, size_t cap, char *payload, size_t pcap)
{
    *tenant = (uint64_t)(i % 3) + 1;
    if (*tenant == 1)
        snprintf(stream, cap, "big");
    else if (*tenant == 2)
        snprintf(stream, cap, "s/%d", (i / 3) % 4);
    else
        snprintf(stream, cap, "u/%d", (i / 3) % 2);
    snprintf(payload, pcap, "event %d", i);
}

struct cur_fixture {
    char streams[CUR_EVENTS][16];
    char payloads[CUR_EVENTS][16];
    uint64_t seq[CUR_EVENTS]; /* seq of event i */
    uint8_t *large;
};

static void cur_populate(struct fx *f, struct cur_fixture *cf)
{
    struct jrn_event *evs = calloc(CUR_EVENTS, sizeof *evs);
    assert_non_null(evs);
    /* Versions per (tenant, stream), counted here. */
    uint64_t big = 0, s[4] = {0}, u[2] = {0};
    for (int i = 0; i < CUR_EVENTS; i++) {
        uint64_t tenant, *v;
        cur_event(i, &tenant, cf->streams[i], sizeof cf->streams[i], cf->payloads[i],
                  sizeof cf->payloads[i]);
        v = tenant == 1 ? &big : tenant == 2 ? &s[(i / 3) % 4] : &u[(i / 3) % 2];
        evs[i] = ev(tenant, cf->streams[i], (*v)++, cf->payloads[i], strlen(cf->payloads[i]));
    }
    for (int i = 0; i < CUR_EVENTS; i += 150)
        assert_int_equal(jrn_append(f->j, evs + i, 150), KR_OK);
    for (int i = 0; i < CUR_EVENTS; i++)
        cf->seq[i] = evs[i].seq;
    assert_true(cf->seq[0] == 2 && cf->seq[CUR_EVENTS - 1] == CUR_EVENTS + 1);
    free(evs);

    cf->large = malloc((size_t)CUR_LARGE * LARGE_BYTES);
    assert_non_null(cf->large);
    for (size_t i = 0; i < (size_t)CUR_LARGE * LARGE_BYTES; i++)
        cf->large[i] = (uint8_t)(i * 7 + i / LARGE_BYTES);
    for (int i = 0; i < CUR_LARGE; i += 8) {
        struct jrn_event le[8];
        for (int k = 0; k < 8; k++)
            le[k] = ev(4, "large", (uint64_t)(i + k), cf->large + (size_t)(i + k) * LARGE_BYTES,
                       LARGE_BYTES);
        assert_int_equal(jrn_append(f->j, le, 8), KR_OK);
    }
    assert_true(jrn_size(f->j) == 1 + CUR_EVENTS + CUR_LARGE);
}

/* Reads a cursor to its end into seqs (cap entries); returns the count. */
static size_t drain(struct journal *j, const struct jrn_query *q, uint64_t *seqs, size_t cap)
{
    struct jrn_cursor *c;
    struct jrn_record r;
    kr_err err;
    size_t n = 0;
    assert_int_equal(jrn_cursor_new(j, q, &c), KR_OK);
    while ((err = jrn_cursor_next(c, &r)) == KR_OK) {
        assert_true(n < cap);
        seqs[n++] = r.seq;
        if (q->kind == JRN_Q_STREAM) {
            assert_true(r.tenant == q->tenant);
            assert_int_equal(r.stream_len, q->stream_len);
            assert_memory_equal(r.stream, q->stream, q->stream_len);
        } else if (q->kind == JRN_Q_TENANT) {
            assert_true(r.tenant == q->tenant);
        }
    }
    assert_int_equal(err, KR_ENOTFOUND);
    /* The end stays the end. */
    assert_int_equal(jrn_cursor_next(c, &r), KR_ENOTFOUND);
    jrn_cursor_free(c);
    return n;
}

static struct jrn_query query(enum jrn_query_kind kind, uint64_t tenant, const char *stream,
                              uint64_t from, uint64_t to)
{
    struct jrn_query q;
    memset(&q, 0, sizeof q);
    q.kind = kind;
    q.tenant = tenant;
    q.stream = stream;
    q.stream_len = stream ? strlen(stream) : 0;
    q.from = from;
    q.to = to;
    return q;
}

static void assert_seq_run(const uint64_t *seqs, size_t n, uint64_t first, uint64_t last)
{
    assert_true(n == last - first + 1);
    for (size_t i = 0; i < n; i++)
        assert_true(seqs[i] == first + i);
}

static void test_cursors(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    struct cur_fixture *cf = calloc(1, sizeof *cf);
    assert_non_null(cf);
    cur_populate(f, cf);
    const uint64_t size = 1 + CUR_EVENTS + CUR_LARGE;
    uint64_t *seqs = calloc(2 * size, sizeof *seqs);
    assert_non_null(seqs);
    struct jrn_query q;
    size_t n;

    /* RANGE: everything (several pages, by count and by bytes), compared with
     * jrn_read record by record. */
    q = query(JRN_Q_RANGE, 0, NULL, 0, 0);
    struct jrn_cursor *c;
    struct jrn_record r;
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_cursor_new(f->j, &q, &c), KR_OK);
    for (uint64_t s = 1; s <= size; s++) {
        assert_int_equal(jrn_cursor_next(c, &r), KR_OK);
        assert_true(r.seq == s);
        assert_int_equal(jrn_read(f->j, s, &b), KR_OK);
        assert_int_equal(r.header_len, b.rec.header_len);
        assert_memory_equal(r.header, b.rec.header, r.header_len);
        assert_int_equal(r.payload_len, b.rec.payload_len);
        assert_memory_equal(r.payload, b.rec.payload, r.payload_len);
    }
    assert_int_equal(jrn_cursor_next(c, &r), KR_ENOTFOUND);
    jrn_cursor_free(c);
    jrn_recbuf_fini(&b);

    q = query(JRN_Q_RANGE, 0, NULL, 100, 400);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_seq_run(seqs, n, 100, 400);
    q = query(JRN_Q_RANGE, 0, NULL, size - 1, 0);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_seq_run(seqs, n, size - 1, size);
    q = query(JRN_Q_RANGE, 0, NULL, 1, 1);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_seq_run(seqs, n, 1, 1);
    q = query(JRN_Q_RANGE, 0, NULL, 200, size + 1000); /* to past the end */
    n = drain(f->j, &q, seqs, 2 * size);
    assert_seq_run(seqs, n, 200, size);
    q = query(JRN_Q_RANGE, 0, NULL, 1, 256); /* exactly one page */
    n = drain(f->j, &q, seqs, 2 * size);
    assert_seq_run(seqs, n, 1, 256);
    q = query(JRN_Q_RANGE, 0, NULL, 1, 257);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_seq_run(seqs, n, 1, 257);
    static const uint64_t empty_ranges[][2] = {
        {size + 1, 0}, {size + 100, 0}, {UINT64_MAX, 0}, {10, 5}, {size + 1, size + 5}};
    for (size_t i = 0; i < COUNT(empty_ranges); i++) {
        q = query(JRN_Q_RANGE, 0, NULL, empty_ranges[i][0], empty_ranges[i][1]);
        assert_int_equal(drain(f->j, &q, seqs, 2 * size), 0);
    }

    /* STREAM: tenant 1's "big" has 300 versions. */
    q = query(JRN_Q_STREAM, 1, "big", 0, 0);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_int_equal(n, 300);
    for (size_t i = 0; i < n; i++)
        assert_true(seqs[i] == cf->seq[3 * i]);
    q = query(JRN_Q_STREAM, 1, "big", 250, 0);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_int_equal(n, 51);
    assert_true(seqs[0] == cf->seq[3 * 249]);
    q = query(JRN_Q_STREAM, 1, "big", 300, 0);
    assert_int_equal(drain(f->j, &q, seqs, 2 * size), 1);
    q = query(JRN_Q_STREAM, 1, "big", 301, 0);
    assert_int_equal(drain(f->j, &q, seqs, 2 * size), 0);
    q = query(JRN_Q_STREAM, 2, "s/1", 0, 0);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_int_equal(n, 75);
    for (size_t i = 1; i < n; i++)
        assert_true(seqs[i] > seqs[i - 1]);
    q = query(JRN_Q_STREAM, 4, "large", 0, 0);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_seq_run(seqs, n, 2 + CUR_EVENTS, size);
    /* Unknown streams, near names and other tenants' streams are empty. */
    static const struct {
        uint64_t tenant;
        const char *stream;
    } unknown[] = {{1, "bi"},  {1, "bigg"}, {1, "big/"}, {2, "big"}, {0, "big"},
                   {9, "big"}, {2, "s/"},   {2, "s/4"},  {1, "s/1"}, {UINT64_MAX, "big"}};
    for (size_t i = 0; i < COUNT(unknown); i++) {
        q = query(JRN_Q_STREAM, unknown[i].tenant, unknown[i].stream, 0, 0);
        assert_int_equal(drain(f->j, &q, seqs, 2 * size), 0);
    }

    /* TENANT: only that tenant's records, in seq order. */
    for (uint64_t tenant = 1; tenant <= 3; tenant++) {
        q = query(JRN_Q_TENANT, tenant, NULL, 0, 0);
        n = drain(f->j, &q, seqs, 2 * size);
        assert_int_equal(n, 300);
        for (size_t i = 0; i < n; i++)
            assert_true(seqs[i] == cf->seq[3 * i + (tenant - 1)]);
    }
    q = query(JRN_Q_TENANT, 2, NULL, 500, 0);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_true(n > 0 && seqs[0] >= 500 && seqs[0] <= 502);
    assert_int_equal(n, (size_t)(300 - (seqs[0] - 3) / 3));
    q = query(JRN_Q_TENANT, 0, NULL, 0, 0);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_seq_run(seqs, n, 1, 1);
    q = query(JRN_Q_TENANT, 4, NULL, 0, 0);
    n = drain(f->j, &q, seqs, 2 * size);
    assert_seq_run(seqs, n, 2 + CUR_EVENTS, size);
    q = query(JRN_Q_TENANT, 5, NULL, 0, 0);
    assert_int_equal(drain(f->j, &q, seqs, 2 * size), 0);
    q = query(JRN_Q_TENANT, 1, NULL, size + 1, 0);
    assert_int_equal(drain(f->j, &q, seqs, 2 * size), 0);

    /* Bad queries. */
    q = query(JRN_Q_STREAM, 1, "big", 0, 0);
    q.stream_len = 0;
    assert_int_equal(jrn_cursor_new(f->j, &q, &c), KR_EINVAL);
    q.stream_len = KR_STREAM_MAX + 1;
    assert_int_equal(jrn_cursor_new(f->j, &q, &c), KR_EINVAL);
    q = query((enum jrn_query_kind)99, 1, NULL, 0, 0);
    assert_int_equal(jrn_cursor_new(f->j, &q, &c), KR_EINVAL);
    q = query(JRN_Q_RANGE, 0, NULL, 0, 0);
    assert_int_equal(jrn_cursor_new(f->j, &q, NULL), KR_EINVAL);
    assert_int_equal(jrn_cursor_new(f->j, NULL, &c), KR_EINVAL);
    jrn_cursor_free(NULL);

    /* The query's stream is copied. */
    char name[8] = "big";
    q = query(JRN_Q_STREAM, 1, name, 299, 0);
    assert_int_equal(jrn_cursor_new(f->j, &q, &c), KR_OK);
    memcpy(name, "zzz", 4);
    assert_int_equal(jrn_cursor_next(c, &r), KR_OK);
    assert_true(str_is(r.stream, r.stream_len, "big") && r.version == 299);
    jrn_cursor_free(c);

    jrn_recbuf_fini(&b);
    free(cf->large);
    free(cf);
    free(seqs);
    fx_close(f);
    verify_full(f->dir, size, 1);
}

/* Records appended while a cursor is open are seen when it gets to them. */
static void test_cursor_sees_new_records(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint8_t p[4] = {1, 2, 3, 4};
    /* 600 records: the RANGE cursor's first page is full. */
    struct jrn_event *evs = calloc(600, sizeof *evs);
    assert_non_null(evs);
    for (int i = 0; i < 600; i++)
        evs[i] = ev(5, "grow", (uint64_t)i, p, sizeof p);
    for (int i = 0; i < 600; i += 200)
        assert_int_equal(jrn_append(f->j, evs + i, 200), KR_OK);
    free(evs);

    struct jrn_query qr = query(JRN_Q_RANGE, 0, NULL, 0, 0);
    struct jrn_query qs = query(JRN_Q_STREAM, 5, "grow", 0, 0);
    struct jrn_query qt = query(JRN_Q_TENANT, 5, NULL, 0, 0);
    struct jrn_cursor *cr, *cs, *ct;
    struct jrn_record r;
    assert_int_equal(jrn_cursor_new(f->j, &qr, &cr), KR_OK);
    assert_int_equal(jrn_cursor_new(f->j, &qs, &cs), KR_OK);
    assert_int_equal(jrn_cursor_new(f->j, &qt, &ct), KR_OK);
    /* Each reads a little, mid-page. */
    for (uint64_t s = 1; s <= 10; s++) {
        assert_int_equal(jrn_cursor_next(cr, &r), KR_OK);
        assert_true(r.seq == s);
        assert_int_equal(jrn_cursor_next(cs, &r), KR_OK);
        assert_true(r.version == s);
        assert_int_equal(jrn_cursor_next(ct, &r), KR_OK);
        assert_true(r.seq == s + 1);
    }
    struct jrn_event e = ev(5, "grow", 600, p, sizeof p);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    assert_true(e.seq == 602);
    /* They read on through the new record to the end. */
    for (uint64_t s = 11; s <= 602; s++) {
        assert_int_equal(jrn_cursor_next(cr, &r), KR_OK);
        assert_true(r.seq == s);
    }
    for (uint64_t v = 11; v <= 601; v++) {
        assert_int_equal(jrn_cursor_next(cs, &r), KR_OK);
        assert_true(r.version == v);
        assert_int_equal(jrn_cursor_next(ct, &r), KR_OK);
        assert_true(r.seq == v + 1);
    }
    assert_int_equal(jrn_cursor_next(cr, &r), KR_ENOTFOUND);
    assert_int_equal(jrn_cursor_next(cs, &r), KR_ENOTFOUND);
    assert_int_equal(jrn_cursor_next(ct, &r), KR_ENOTFOUND);
    /* At the end, a new record (and one of another stream) arrives. */
    struct jrn_event two[2] = {ev(6, "other", 0, p, sizeof p), ev(5, "grow", 601, p, sizeof p)};
    assert_int_equal(jrn_append(f->j, two, 2), KR_OK);
    assert_int_equal(jrn_cursor_next(cr, &r), KR_OK);
    assert_true(r.seq == 603 && r.tenant == 6);
    assert_int_equal(jrn_cursor_next(cr, &r), KR_OK);
    assert_true(r.seq == 604);
    assert_int_equal(jrn_cursor_next(cs, &r), KR_OK);
    assert_true(r.seq == 604 && r.version == 602);
    assert_int_equal(jrn_cursor_next(ct, &r), KR_OK);
    assert_true(r.seq == 604);
    assert_int_equal(jrn_cursor_next(cr, &r), KR_ENOTFOUND);
    assert_int_equal(jrn_cursor_next(cs, &r), KR_ENOTFOUND);
    assert_int_equal(jrn_cursor_next(ct, &r), KR_ENOTFOUND);
    jrn_cursor_free(cr);
    jrn_cursor_free(cs);
    jrn_cursor_free(ct);
    fx_close(f);
    verify_full(f->dir, 604, 1);
}

/* ==== Checkpoints and proofs ==== */

/* Leaf hashes of records 1..n, read back and hashed here; also checks the chain. */
static uint8_t (*leaves_of(struct journal *j, uint64_t n))[KR_HASH_LEN]
{
    uint8_t(*leaves)[KR_HASH_LEN] = calloc((size_t)n + 1, KR_HASH_LEN);
    assert_non_null(leaves);
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    static const uint8_t zero[KR_HASH_LEN];
    for (uint64_t s = 1; s <= n; s++) {
        assert_int_equal(jrn_read(j, s, &b), KR_OK);
        assert_memory_equal(b.rec.prev, s == 1 ? zero : leaves[s - 2], KR_HASH_LEN);
        leaf_of(&b.rec, leaves[s - 1]);
    }
    jrn_recbuf_fini(&b);
    return leaves;
}

/* jrn_root of every size 0..n equals the root of a frontier fed the leaves. */
static void check_roots(struct journal *j, uint8_t (*leaves)[KR_HASH_LEN], uint64_t n)
{
    struct mrk_frontier fr;
    mrk_frontier_init(&fr);
    uint8_t want[KR_HASH_LEN], got[KR_HASH_LEN];
    assert_int_equal(jrn_root(j, 0, got), KR_OK);
    sha256(want, "", 0);
    assert_memory_equal(got, want, KR_HASH_LEN);
    for (uint64_t s = 1; s <= n; s++) {
        mrk_frontier_append(&fr, leaves[s - 1], NULL, NULL);
        mrk_frontier_root(&fr, want);
        assert_int_equal(jrn_root(j, s, got), KR_OK);
        if (memcmp(got, want, KR_HASH_LEN) != 0)
            fail_msg("root of size %" PRIu64 " differs", s);
    }
}

static void checkpoint_check(struct journal *j, const char *origin, const uint8_t pk[32],
                             uint32_t key_id, uint64_t want_size)
{
    char note[KR_NOTE_MAX + 1];
    size_t nl = 0;
    assert_int_equal(jrn_checkpoint(j, note, sizeof note, &nl), KR_OK);
    struct kr_note_key nk;
    memset(&nk, 0, sizeof nk);
    snprintf(nk.name, sizeof nk.name, "%s", origin);
    memcpy(nk.pk, pk, KR_PUBKEY_LEN);
    nk.key_id = key_id;
    struct kr_checkpoint cp;
    uint32_t kid = 0;
    kr_err err = kr_checkpoint_open(note, nl, &nk, 1, &cp, &kid);
    if (err)
        fail_msg("checkpoint at %" PRIu64 ": %s", want_size, kr_strerror(err));
    assert_int_equal(kid, key_id);
    assert_true(cp.size == want_size);
    assert_string_equal(cp.origin, origin);
    uint8_t root[KR_HASH_LEN];
    assert_int_equal(jrn_root(j, want_size, root), KR_OK);
    assert_memory_equal(cp.root, root, KR_HASH_LEN);
}

#define PROOF_N 135 /* crosses 128 */

static void test_checkpoints_and_proofs(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint8_t pk[KR_PUBKEY_LEN];
    pubkey(f->dir, 1, pk);
    uint8_t p[4] = {0};
    struct jrn_event evs[16];
    uint64_t size = 1, k = 0;
    checkpoint_check(f->j, f->info.origin, pk, 1, 1);
    while (size < PROOF_N) {
        size_t n = (size_t)(k % 16) + 1;
        if (size + n > PROOF_N)
            n = (size_t)(PROOF_N - size);
        for (size_t i = 0; i < n; i++)
            evs[i] = ev(1, "proof", size - 1 + i, p, sizeof p);
        assert_int_equal(jrn_append(f->j, evs, n), KR_OK);
        size += n;
        k++;
        assert_true(jrn_size(f->j) == size);
        checkpoint_check(f->j, f->info.origin, pk, 1, size);
    }

    uint8_t(*leaves)[KR_HASH_LEN] = leaves_of(f->j, PROOF_N);
    check_roots(f->j, leaves, PROOF_N);
    uint8_t root[KR_HASH_LEN];
    assert_int_equal(jrn_root(f->j, PROOF_N + 1, root), KR_EINVAL);

    /* Inclusion of every record in every tree that holds it. */
    uint8_t(*roots)[KR_HASH_LEN] = calloc(PROOF_N + 1, KR_HASH_LEN);
    assert_non_null(roots);
    for (uint64_t s = 0; s <= PROOF_N; s++)
        assert_int_equal(jrn_root(f->j, s, roots[s]), KR_OK);
    uint8_t proof[KR_PROOF_MAX][KR_HASH_LEN];
    size_t n;
    for (uint64_t s = 1; s <= PROOF_N; s++) {
        for (uint64_t seq = 1; seq <= s; seq++) {
            assert_int_equal(jrn_inclusion_proof(f->j, seq, s, proof, KR_PROOF_MAX, &n), KR_OK);
            kr_err err = mrk_verify_inclusion(leaves[seq - 1], seq - 1, s,
                                              (const uint8_t(*)[KR_HASH_LEN])proof, n, roots[s]);
            if (err)
                fail_msg("inclusion of %" PRIu64 " in %" PRIu64 ": %s", seq, s, kr_strerror(err));
            /* The proof is for this leaf, and for this position. */
            if (s > 1) {
                uint64_t other = seq == 1 ? 2 : seq - 1;
                assert_int_not_equal(mrk_verify_inclusion(leaves[other - 1], seq - 1, s,
                                                          (const uint8_t(*)[KR_HASH_LEN])proof, n,
                                                          roots[s]),
                                     KR_OK);
                proof[n / 2][seq % KR_HASH_LEN] ^= 0x10;
                assert_int_not_equal(mrk_verify_inclusion(leaves[seq - 1], seq - 1, s,
                                                          (const uint8_t(*)[KR_HASH_LEN])proof, n,
                                                          roots[s]),
                                     KR_OK);
            }
        }
    }
    /* Consistency between every pair of sizes. */
    for (uint64_t s1 = 1; s1 <= PROOF_N; s1++) {
        for (uint64_t s2 = s1; s2 <= PROOF_N; s2++) {
            assert_int_equal(jrn_consistency_proof(f->j, s1, s2, proof, KR_PROOF_MAX, &n), KR_OK);
            if (s1 == s2)
                assert_int_equal(n, 0);
            kr_err err = mrk_verify_consistency(s1, s2, roots[s1], roots[s2],
                                                (const uint8_t(*)[KR_HASH_LEN])proof, n);
            if (err)
                fail_msg("consistency %" PRIu64 " -> %" PRIu64 ": %s", s1, s2, kr_strerror(err));
            if (s1 < s2 && n > 0) {
                proof[0][0] ^= 1;
                assert_int_not_equal(mrk_verify_consistency(s1, s2, roots[s1], roots[s2],
                                                            (const uint8_t(*)[KR_HASH_LEN])proof,
                                                            n),
                                     KR_OK);
            }
        }
    }

    /* Arguments outside the journal. */
    assert_int_equal(jrn_inclusion_proof(f->j, 0, 5, proof, KR_PROOF_MAX, &n), KR_EINVAL);
    assert_int_equal(jrn_inclusion_proof(f->j, 6, 5, proof, KR_PROOF_MAX, &n), KR_EINVAL);
    assert_int_equal(jrn_inclusion_proof(f->j, 1, PROOF_N + 1, proof, KR_PROOF_MAX, &n), KR_EINVAL);
    assert_int_equal(jrn_inclusion_proof(f->j, 1, PROOF_N, proof, 2, &n), KR_ETOOLARGE);
    assert_int_equal(jrn_consistency_proof(f->j, 6, 5, proof, KR_PROOF_MAX, &n), KR_EINVAL);
    assert_int_equal(jrn_consistency_proof(f->j, 5, PROOF_N + 1, proof, KR_PROOF_MAX, &n),
                     KR_EINVAL);
    assert_int_equal(jrn_consistency_proof(f->j, 5, PROOF_N, proof, 1, &n), KR_ETOOLARGE);

    /* The note needs room for itself and its NUL. */
    char note[KR_NOTE_MAX + 1];
    size_t nl = 0, nl2 = 0;
    assert_int_equal(jrn_checkpoint(f->j, note, sizeof note, &nl), KR_OK);
    char *tight = malloc(nl + 1);
    assert_non_null(tight);
    assert_int_equal(jrn_checkpoint(f->j, tight, nl + 1, &nl2), KR_OK);
    assert_int_equal(nl2, nl);
    assert_string_equal(tight, note);
    assert_int_equal(jrn_checkpoint(f->j, tight, nl, &nl2), KR_ETOOLARGE);
    free(tight);

    /* On close the newest checkpoint is also in DIR/checkpoint. */
    fx_close(f);
    char path[PATH_CAP], file[KR_NOTE_MAX + 1];
    snprintf(path, sizeof path, "%s/checkpoint", f->dir);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t fl = fread(file, 1, sizeof file - 1, fp);
    fclose(fp);
    assert_int_equal(fl, nl);
    assert_memory_equal(file, note, nl);
    free(roots);
    free(leaves);
    verify_full(f->dir, PROOF_N, 1);
}

/* ==== Reopening ==== */

static void append_n(struct fx *f, const char *stream, uint64_t *version, size_t n)
{
    uint8_t p[8];
    for (size_t i = 0; i < n; i++) {
        memcpy(p, version, sizeof p);
        struct jrn_event e = ev(1, stream, *version, p, sizeof p);
        assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
        (*version)++;
    }
}

static void test_reopen(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint8_t pk[KR_PUBKEY_LEN];
    pubkey(f->dir, 1, pk);
    uint64_t v = 0;
    /* 37 records: the frontier is 32 + 4 + 1, three perfect subtrees. */
    append_n(f, "r", &v, 36);
    assert_true(jrn_size(f->j) == 37);
    uint8_t root[KR_HASH_LEN], root2[KR_HASH_LEN];
    assert_int_equal(jrn_root(f->j, 37, root), KR_OK);
    char note[KR_NOTE_MAX + 1], note2[KR_NOTE_MAX + 1];
    size_t nl, nl2;
    assert_int_equal(jrn_checkpoint(f->j, note, sizeof note, &nl), KR_OK);
    struct jrn_info info, info2;
    jrn_get_info(f->j, &info);
    fx_close(f);

    fx_open(f);
    jrn_get_info(f->j, &info2);
    assert_memory_equal(info2.journal_id, info.journal_id, 16);
    assert_string_equal(info2.origin, info.origin);
    assert_int_equal(info2.key_id, 1);
    assert_memory_equal(info2.pk, pk, KR_PUBKEY_LEN);
    assert_true(info2.size == 37);
    assert_true(jrn_size(f->j) == 37);
    assert_int_equal(jrn_root(f->j, 37, root2), KR_OK);
    assert_memory_equal(root, root2, KR_HASH_LEN);
    assert_int_equal(jrn_checkpoint(f->j, note2, sizeof note2, &nl2), KR_OK);
    assert_int_equal(nl2, nl);
    assert_string_equal(note2, note);
    assert_true(stream_version(f->j, 1, "r") == 36);
    /* Versions carry over: a stale append still conflicts. */
    uint8_t p[1] = {0};
    struct jrn_event e = ev(1, "r", 0, p, 1);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_ECONFLICT);

    /* Appends continue the chain and the tree across 64 and 128. */
    append_n(f, "r", &v, 100);
    assert_true(jrn_size(f->j) == 137);
    uint8_t(*leaves)[KR_HASH_LEN] = leaves_of(f->j, 137);
    check_roots(f->j, leaves, 137);
    free(leaves);
    checkpoint_check(f->j, f->info.origin, pk, 1, 137);
    fx_close(f);
    verify_full(f->dir, 137, 1);

    /* Reopen at a power of two, and once more with no appends in between. */
    fx_open(f);
    append_n(f, "r", &v, 119);
    assert_true(jrn_size(f->j) == 256);
    fx_close(f);
    fx_open(f);
    fx_close(f);
    fx_open(f);
    append_n(f, "r", &v, 1);
    leaves = leaves_of(f->j, 257);
    check_roots(f->j, leaves, 257);
    free(leaves);
    fx_close(f);
    verify_full(f->dir, 257, 1);

    /* A read-only open sees the same journal. */
    struct jrn_options o = fx_opts(f);
    o.read_only = true;
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    assert_true(jrn_size(f->j) == 257);
    leaves = leaves_of(f->j, 257);
    check_roots(f->j, leaves, 257);
    free(leaves);
}

/* ==== Key rotation ==== */

static void read_rec(struct journal *j, uint64_t seq, struct jrn_recbuf *b)
{
    kr_err err = jrn_read(j, seq, b);
    if (err)
        fail_msg("jrn_read %" PRIu64 ": %s", seq, kr_strerror(err));
}

/* Parses a journal.key_added payload {key_id, public_key}. */
static void check_key_added(const struct jrn_record *r, uint32_t key_id, const uint8_t pk[32])
{
    assert_true(r->tenant == 0);
    assert_true(str_is(r->stream, r->stream_len, JRN_SYSTEM_STREAM));
    assert_true(str_is(r->type, r->type_len, JRN_TYPE_KEY_ADDED));
    assert_true(str_is(r->actor, r->actor_len, JRN_SYSTEM_ACTOR));
    struct kr_mp_reader rd;
    uint32_t n;
    const char *k;
    size_t kl, len;
    uint64_t u;
    const uint8_t *bp;
    kr_mp_reader_init(&rd, r->payload, r->payload_len, true);
    assert_int_equal(kr_mp_read_map(&rd, &n), KR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(kr_mp_read_str(&rd, &k, &kl), KR_OK);
    assert_true(str_is(k, kl, "key_id"));
    assert_int_equal(kr_mp_read_uint(&rd, &u), KR_OK);
    assert_true(u == key_id);
    assert_int_equal(kr_mp_read_str(&rd, &k, &kl), KR_OK);
    assert_true(str_is(k, kl, "public_key"));
    assert_int_equal(kr_mp_read_bin(&rd, &bp, &len), KR_OK);
    assert_int_equal(len, KR_PUBKEY_LEN);
    assert_memory_equal(bp, pk, KR_PUBKEY_LEN);
    assert_int_equal(kr_mp_remaining(&rd), 0);
}

static void test_rotate_key(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint8_t pk1[KR_PUBKEY_LEN], pk2[KR_PUBKEY_LEN], pk3[KR_PUBKEY_LEN];
    pubkey(f->dir, 1, pk1);
    uint64_t v = 0;
    append_n(f, "k", &v, 3); /* seqs 2..4, key 1 */

    struct jrn_info ni;
    assert_int_equal(jrn_rotate_key(f->j, &ni), KR_OK);
    assert_int_equal(ni.key_id, 2);
    pubkey(f->dir, 2, pk2);
    assert_memory_equal(ni.pk, pk2, KR_PUBKEY_LEN);
    assert_memory_not_equal(pk1, pk2, KR_PUBKEY_LEN);
    assert_true(ni.size == 5);
    assert_memory_equal(ni.journal_id, f->info.journal_id, 16);
    struct jrn_info cur;
    jrn_get_info(f->j, &cur);
    assert_int_equal(cur.key_id, 2);
    char path[PATH_CAP];
    struct stat st;
    snprintf(path, sizeof path, "%s/keys/journal-2.key", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* The key change: signed by the key it replaces, naming the new one. */
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    read_rec(f->j, 5, &b);
    check_key_added(&b.rec, 2, pk2);
    assert_int_equal(b.rec.key_id, 1);
    assert_true(b.rec.version == 2);
    assert_true(sig_ok(&b.rec, pk1));
    /* The checkpoint of that commit is still key 1's. */
    checkpoint_check(f->j, f->info.origin, pk1, 1, 5);

    append_n(f, "k", &v, 3); /* seqs 6..8, key 2 */
    for (uint64_t s = 1; s <= 8; s++) {
        read_rec(f->j, s, &b);
        uint32_t want = s <= 5 ? 1 : 2;
        assert_int_equal(b.rec.key_id, want);
        assert_true(sig_ok(&b.rec, want == 1 ? pk1 : pk2));
        assert_false(sig_ok(&b.rec, want == 1 ? pk2 : pk1));
    }
    checkpoint_check(f->j, f->info.origin, pk2, 2, 8);
    fx_close(f);
    verify_full(f->dir, 8, 2);

    /* After a reopen the journal signs with key 2. */
    fx_open(f);
    jrn_get_info(f->j, &cur);
    assert_int_equal(cur.key_id, 2);
    assert_memory_equal(cur.pk, pk2, KR_PUBKEY_LEN);
    append_n(f, "k", &v, 1);
    read_rec(f->j, 9, &b);
    assert_int_equal(b.rec.key_id, 2);
    assert_true(sig_ok(&b.rec, pk2));

    /* And rotates on to key 3. */
    assert_int_equal(jrn_rotate_key(f->j, &ni), KR_OK);
    assert_int_equal(ni.key_id, 3);
    pubkey(f->dir, 3, pk3);
    assert_memory_equal(ni.pk, pk3, KR_PUBKEY_LEN);
    read_rec(f->j, 10, &b);
    check_key_added(&b.rec, 3, pk3);
    assert_int_equal(b.rec.key_id, 2);
    assert_true(b.rec.version == 3);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK); /* key 4, info not wanted */
    append_n(f, "k", &v, 2);
    read_rec(f->j, 13, &b);
    assert_int_equal(b.rec.key_id, 4);
    jrn_recbuf_fini(&b);
    assert_true(stream_version(f->j, 0, JRN_SYSTEM_STREAM) == 4);
    fx_close(f);
    verify_full(f->dir, 13, 4);
}

/* Rotations while another thread keeps appending. */
struct loader {
    struct journal *j;
    size_t n;
    struct jrn_append *apps;
    struct jrn_event *evs;
    uint8_t (*payloads)[8];
    struct tracker *t;
    atomic_size_t submitted;
    atomic_int failures;
    atomic_int rotations; /* rotations the test thread has begun */
};

static void *loader_main(void *arg)
{
    struct loader *l = arg;
    for (size_t i = 0; i < l->n; i++) {
        /* At a quarter and at half way, let a rotation begin first (for at
         * most ten seconds), so that appends follow each key change. */
        int want = i == l->n / 4 ? 1 : i == l->n / 2 ? 2 : 0;
        struct count_at rot = {&l->rotations, want};
        if (want && !kr_test_wait_for(count_reached, &rot, KR_TEST_WAIT_MS, "a rotation")) {
            atomic_fetch_add(&l->failures, 1);
            return NULL;
        }
        memcpy(l->payloads[i], &i, sizeof i);
        l->evs[i] = ev(1, "load", i, l->payloads[i], 8);
        memset(&l->apps[i], 0, sizeof l->apps[i]);
        l->apps[i].events = &l->evs[i];
        l->apps[i].n = 1;
        l->apps[i].done = tracker_done;
        l->apps[i].arg = l->t;
        if (jrn_submit(l->j, &l->apps[i]) != KR_OK)
            atomic_fetch_add(&l->failures, 1);
        atomic_fetch_add(&l->submitted, 1);
        /* Now and then wait for what is in flight, so the appends spread over
         * time and the rotations land between them rather than after. */
        if (i % 100 == 99 && !tracker_wait(l->t, i + 1)) {
            atomic_fetch_add(&l->failures, 1);
            return NULL;
        }
    }
    return NULL;
}

static void test_rotate_under_load(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    enum { N = 3000 };
    struct loader l;
    memset(&l, 0, sizeof l);
    l.j = f->j;
    l.n = N;
    l.apps = calloc(N, sizeof *l.apps);
    l.evs = calloc(N, sizeof *l.evs);
    l.payloads = calloc(N, 8);
    assert_non_null(l.apps);
    assert_non_null(l.evs);
    assert_non_null(l.payloads);
    struct tracker t;
    tracker_init(&t, l.apps, N, N + 16);
    l.t = &t;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, loader_main, &l), 0);
    struct size_at sub = {&l.submitted, N / 4};
    assert_true(kr_test_wait_for(size_reached, &sub, KR_TEST_WAIT_MS, "a quarter submitted"));
    atomic_store(&l.rotations, 1);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK);
    sub.want = N / 2;
    assert_true(kr_test_wait_for(size_reached, &sub, KR_TEST_WAIT_MS, "half submitted"));
    atomic_store(&l.rotations, 2);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&l.failures), 0);
    assert_true(tracker_wait(&t, N));
    assert_int_equal(atomic_load(&t.bad), 0);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&t.calls[i]), 1);
        assert_int_equal(atomic_load(&t.errs[i]), KR_OK);
    }
    const uint64_t size = 1 + N + 2;
    assert_true(jrn_size(f->j) == size);

    /* Along seq, each key signs from just after its key_added record on. */
    uint8_t pks[4][KR_PUBKEY_LEN];
    for (uint32_t k = 1; k <= 3; k++)
        pubkey(f->dir, k, pks[k]);
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    uint32_t key = 1;
    int changes = 0;
    bool switch_next = false;
    for (uint64_t s = 1; s <= size; s++) {
        read_rec(f->j, s, &b);
        if (switch_next) {
            key++;
            switch_next = false;
        }
        assert_int_equal(b.rec.key_id, key);
        assert_true(sig_ok(&b.rec, pks[key]));
        if (b.rec.tenant == 0 && str_is(b.rec.type, b.rec.type_len, JRN_TYPE_KEY_ADDED)) {
            check_key_added(&b.rec, key + 1, pks[key + 1]);
            switch_next = true;
            changes++;
        }
    }
    /* Both rotations landed among the appends: key 3 signed some of them. */
    assert_int_equal(changes, 2);
    assert_false(switch_next);
    assert_int_equal(key, 3);
    jrn_recbuf_fini(&b);
    tracker_fini(&t);
    free(l.apps);
    free(l.evs);
    free(l.payloads);
    fx_close(f);
    verify_full(f->dir, size, 3);
}

/* A rotation whose record never committed (a crash after the key files were
 * written) leaves files under the next id; the next rotation must still work. */
static void test_rotate_after_orphan_key(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    struct kr_signing_key orphan;
    assert_int_equal(kr_key_generate(2, &orphan), KR_OK);
    assert_int_equal(kr_key_save(f->dir, &orphan), KR_OK);
    struct jrn_info ni;
    assert_int_equal(jrn_rotate_key(f->j, &ni), KR_OK);
    assert_int_equal(ni.key_id, 2);
    assert_memory_not_equal(ni.pk, orphan.pk, KR_PUBKEY_LEN);
    uint8_t pk2[KR_PUBKEY_LEN];
    pubkey(f->dir, 2, pk2);
    assert_memory_equal(pk2, ni.pk, KR_PUBKEY_LEN);
    kr_key_wipe(&orphan);
    uint64_t v = 0;
    append_n(f, "o", &v, 2);
    fx_close(f);
    fx_open(f);
    append_n(f, "o", &v, 1);
    fx_close(f);
    verify_full(f->dir, 5, 2);
}

/* ==== Map full ==== */

/* Appends `per`-event appends of small events until the map is full; returns
 * how many records went in. */
static uint64_t fill_small(struct fx *f, size_t per, int *names)
{
    static char streams[256][32];
    struct jrn_event evs[256];
    uint8_t p[1] = {7};
    uint64_t added = 0;
    for (int round = 0; round < 10000; round++) {
        for (size_t k = 0; k < per; k++) {
            snprintf(streams[k], sizeof streams[k], "fill/%d", (*names)++);
            evs[k] = ev(2, streams[k], 0, p, sizeof p);
        }
        kr_err err = jrn_append(f->j, evs, per);
        if (err == KR_EFULL)
            return added;
        assert_int_equal(err, KR_OK);
        added += per;
    }
    fail_msg("the map never filled");
    return 0;
}

static void test_map_full(void **state)
{
    struct fx *f = *state;
    f->map_size = 1u << 20;
    fx_create_open(f);
    enum { BIG = 16 * 1024, PER = 4 };
    uint8_t *payload = malloc(BIG);
    assert_non_null(payload);
    for (size_t i = 0; i < BIG; i++)
        payload[i] = (uint8_t)(i * 131);
    char names[PER][32];
    struct jrn_event evs[PER];
    kr_err err = KR_OK;
    int round;
    for (round = 0; round < 200; round++) {
        for (int k = 0; k < PER; k++) {
            snprintf(names[k], sizeof names[k], "full/%d/%d", round, k);
            evs[k] = ev(1, names[k], 0, payload, BIG);
        }
        err = jrn_append(f->j, evs, PER);
        if (err != KR_OK)
            break;
    }
    assert_int_equal(err, KR_EFULL);
    assert_true(round > 0);
    const uint64_t big_end = 1 + (uint64_t)round * PER;

    /* The failed append wrote nothing. */
    assert_true(jrn_size(f->j) == big_end);
    for (int k = 0; k < PER; k++)
        assert_true(stream_version(f->j, 1, names[k]) == 0);
    /* It failed alone: the journal did not stop, a retry is refused the same way. */
    assert_int_equal(jrn_append(f->j, evs, PER), KR_EFULL);
    assert_true(jrn_size(f->j) == big_end);

    /* Fill what is left with ever smaller appends, down to single events. */
    int fill_names = 0;
    uint64_t size = big_end;
    static const size_t pers[] = {64, 8, 1};
    for (size_t i = 0; i < COUNT(pers); i++)
        size += fill_small(f, pers[i], &fill_names);
    assert_true(jrn_size(f->j) == size);

    /* A rotation either cannot commit its record either, and then changes no
     * key, or it just fits. */
    uint32_t keys = 1;
    struct jrn_info info;
    err = jrn_rotate_key(f->j, &info);
    if (err == KR_OK) {
        assert_int_equal(info.key_id, 2);
        keys = 2;
        size++;
    } else {
        assert_int_equal(err, KR_EFULL);
        jrn_get_info(f->j, &info);
        assert_int_equal(info.key_id, 1);
    }
    assert_true(jrn_size(f->j) == size);

    /* Reads still work. */
    uint8_t pk[KR_PUBKEY_LEN];
    pubkey(f->dir, keys, pk);
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    for (uint64_t s = 2; s < big_end; s++) {
        read_rec(f->j, s, &b);
        assert_int_equal(b.rec.payload_len, BIG);
        assert_memory_equal(b.rec.payload, payload, BIG);
    }
    jrn_recbuf_fini(&b);
    struct jrn_query q = query(JRN_Q_RANGE, 0, NULL, 0, 0);
    uint64_t *seqs = calloc((size_t)size + 1, sizeof *seqs);
    assert_non_null(seqs);
    size_t n = drain(f->j, &q, seqs, (size_t)size + 1);
    assert_seq_run(seqs, n, 1, size);
    free(seqs);
    checkpoint_check(f->j, f->info.origin, pk, keys, size);
    fx_close(f);
    verify_full(f->dir, size, keys);

    /* With more room, appends and rotations work again. */
    f->map_size = 64u << 20;
    fx_open(f);
    assert_true(jrn_size(f->j) == size);
    assert_int_equal(jrn_append(f->j, evs, PER), KR_OK);
    assert_true(evs[0].seq == size + 1);
    assert_int_equal(jrn_rotate_key(f->j, &info), KR_OK);
    assert_int_equal(info.key_id, keys + 1);
    uint64_t v = 0;
    append_n(f, "after", &v, 2);
    fx_close(f);
    verify_full(f->dir, size + PER + 3, keys + 1);
    free(payload);
}

/* ==== Callers that break or bend the rules ==== */

/* Three appends: X's done callback submits Y and Z (allowed from a callback),
 * waits until Y is signed, then changes Y's payload before the writer's next
 * batch writes it. The journal must notice and fail Y alone with KR_EINVAL,
 * write Z, and still verify. jrn_append from a callback must not deadlock. */
struct cb_test {
    struct journal *j;
    struct jrn_append x, y, z;
    struct jrn_event ex, ey, ez;
    uint8_t py[32], pz[32];
    atomic_int done_x, done_y, done_z;
    atomic_int err_y, err_z, submit_err, append_err;
    atomic_bool y_unsigned; /* Y was not signed within the wait's deadline */
};

/* For kr_test_wait_for. */
static bool y_signed(void *arg)
{
    return atomic_load(&((struct cb_test *)arg)->y.ready_);
}

static bool y_and_z_done(void *arg)
{
    struct cb_test *t = arg;
    return atomic_load(&t->done_y) && atomic_load(&t->done_z);
}

static void cb_yz_done(struct jrn_append *a, kr_err err)
{
    struct cb_test *t = a->arg;
    if (a == &t->y) {
        atomic_store(&t->err_y, (int)err);
        atomic_store(&t->done_y, 1);
    } else {
        atomic_store(&t->err_z, (int)err);
        atomic_store(&t->done_z, 1);
    }
}

static void cb_x_done(struct jrn_append *a, kr_err err)
{
    struct cb_test *t = a->arg;
    (void)err;
    /* From the writer thread: a synchronous append would wait for itself. */
    struct jrn_event e = ev(5, "cb-sync", 0, t->pz, sizeof t->pz);
    atomic_store(&t->append_err, (int)jrn_append(t->j, &e, 1));
    t->y = (struct jrn_append){.events = &t->ey, .n = 1, .done = cb_yz_done, .arg = t};
    t->z = (struct jrn_append){.events = &t->ez, .n = 1, .done = cb_yz_done, .arg = t};
    kr_err e1 = jrn_submit(t->j, &t->y), e2 = jrn_submit(t->j, &t->z);
    atomic_store(&t->submit_err, (int)(e1 ? e1 : e2));
    if (e1 == KR_OK) {
        /* Signed by a signer thread (this is the writer: no test failure from here). */
        if (!kr_test_wait_for(y_signed, t, KR_TEST_WAIT_MS, "Y signed"))
            atomic_store(&t->y_unsigned, true);
        t->py[0] ^= 0xff; /* the caller breaks its promise */
    }
    atomic_store(&t->done_x, 1);
}

static void test_payload_changed_and_callbacks(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    struct cb_test *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->j = f->j;
    memset(t->py, 'y', sizeof t->py);
    memset(t->pz, 'z', sizeof t->pz);
    t->ex = ev(5, "cb-x", 0, t->pz, sizeof t->pz);
    t->ey = ev(5, "cb-y", 0, t->py, sizeof t->py);
    t->ez = ev(5, "cb-z", 0, t->pz, sizeof t->pz);
    t->x = (struct jrn_append){.events = &t->ex, .n = 1, .done = cb_x_done, .arg = t};
    assert_int_equal(jrn_submit(f->j, &t->x), KR_OK);
    assert_true(kr_test_wait_for(y_and_z_done, t, KR_TEST_WAIT_MS, "Y's and Z's callbacks"));
    assert_false(atomic_load(&t->y_unsigned));
    assert_int_equal(atomic_load(&t->append_err), KR_EINVAL);
    assert_int_equal(atomic_load(&t->submit_err), KR_OK);
    assert_int_equal(atomic_load(&t->err_y), KR_EINVAL);
    assert_int_equal(atomic_load(&t->err_z), KR_OK);
    assert_true(t->ex.seq == 2);
    assert_true(t->ez.seq == 3); /* Y took no seq */
    assert_true(jrn_size(f->j) == 3);
    assert_true(stream_version(f->j, 5, "cb-y") == 0);
    free(t);
    fx_close(f);
    verify_full(f->dir, 3, 1);
}

/* ==== Verifying while the writer works ==== */

struct live_writer {
    struct journal *j;
    atomic_bool stop;
    atomic_int failures;
    uint64_t appended;
};

static void *live_writer_main(void *arg)
{
    struct live_writer *w = arg;
    static const char payload[] = "live";
    uint64_t version = 0;
    while (!atomic_load(&w->stop)) {
        struct jrn_event e[50];
        for (size_t i = 0; i < 50; i++)
            e[i] = ev(3, "live", version + i, payload, sizeof payload);
        if (jrn_append(w->j, e, 50) != KR_OK) {
            atomic_fetch_add(&w->failures, 1);
            break;
        }
        version += 50;
        w->appended += 50;
    }
    return NULL;
}

/* An auditor may verify while the server writes (here in the server's own
 * process, through its handle). The writer updates DIR/checkpoint after each
 * commit (at most once a second), so verify must read it before its snapshot,
 * or a fresh file looks like a rollback. */
static void test_verify_while_writing(void **state)
{
    struct fx *f = *state;
    struct jrn_options o = fx_opts(f);
    o.clock = NULL; /* the real clock: the file is rewritten once a second */
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    struct live_writer w = {.j = f->j};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, live_writer_main, &w), 0);
    struct jrn_verify_options vo = {.fast = true, .threads = 1};
    uint64_t t_end = (uint64_t)time(NULL) + 4, runs = 0;
    int bad = 0;
    char what[320] = "";
    while ((uint64_t)time(NULL) < t_end) {
        struct jrn_verify_report r;
        assert_int_equal(jrn_verify_journal(f->j, &vo, &r), KR_OK);
        if (r.result != KR_OK && bad++ == 0)
            snprintf(what, sizeof what, "seq %" PRIu64 ": %s", r.bad_seq, r.what);
        runs++;
    }
    atomic_store(&w.stop, true);
    pthread_join(tid, NULL);
    assert_int_equal(atomic_load(&w.failures), 0);
    assert_true(w.appended > 0);
    assert_true(runs > 0);
    if (bad)
        fail_msg("%d of %" PRIu64 " verifications failed, first at %s", bad, runs, what);
    fx_close(f);
    verify_full(f->dir, 1 + w.appended, 1);
}

/* ==== Close with appends in flight ==== */

static void test_close_in_flight(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    enum { N = 3000 };
    struct jrn_append *apps = calloc(N, sizeof *apps);
    struct jrn_event *evs = calloc(N, sizeof *evs);
    uint32_t *payloads = calloc(N, sizeof *payloads);
    assert_non_null(apps);
    assert_non_null(evs);
    assert_non_null(payloads);
    struct tracker t;
    tracker_init(&t, apps, N, N + 2);
    for (size_t i = 0; i < N; i++) {
        payloads[i] = (uint32_t)i;
        evs[i] = ev(1 + i % 2, "inflight", i / 2, &payloads[i], sizeof payloads[i]);
        apps[i].events = &evs[i];
        apps[i].n = 1;
        apps[i].done = tracker_done;
        apps[i].arg = &t;
        assert_int_equal(jrn_submit(f->j, &apps[i]), KR_OK);
    }
    /* Close at once: it returns only when every append has completed. */
    fx_close(f);
    assert_int_equal(t.done, N);
    assert_int_equal(atomic_load(&t.bad), 0);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&t.calls[i]), 1);
        assert_int_equal(atomic_load(&t.errs[i]), KR_OK);
    }
    for (uint64_t s = 2; s < N + 2; s++)
        assert_int_equal(atomic_load(&t.seen[s]), 1);
    /* And they are all on disk. */
    fx_open(f);
    assert_true(jrn_size(f->j) == N + 1);
    assert_true(stream_version(f->j, 1, "inflight") == N / 2);
    assert_true(stream_version(f->j, 2, "inflight") == N / 2);
    fx_close(f);
    verify_full(f->dir, N + 1, 1);
    tracker_fini(&t);
    free(apps);
    free(evs);
    free(payloads);
}

/* ==== Per-tenant numbers (tseq) ==== */

/* Every record read back in seq order: format 2 (from `from` on) and each
 * tenant's tseq 1, 2, 3, ... counting format-1 records too. Returns the
 * records of `tenant`. */
#define TSEQ_TENANTS_MAX 256
static uint64_t check_tseqs(struct journal *j, uint64_t from_format2, uint64_t tenant)
{
    static uint64_t tenants_seen[TSEQ_TENANTS_MAX], counts[TSEQ_TENANTS_MAX];
    size_t n = 0;
    struct jrn_query q = {.kind = JRN_Q_RANGE};
    struct jrn_cursor *c;
    struct jrn_record r;
    kr_err err;
    assert_int_equal(jrn_cursor_new(j, &q, &c), KR_OK);
    while ((err = jrn_cursor_next(c, &r)) == KR_OK) {
        size_t i = 0;
        while (i < n && tenants_seen[i] != r.tenant)
            i++;
        if (i == n) {
            assert_true(n < TSEQ_TENANTS_MAX);
            tenants_seen[n] = r.tenant;
            counts[n++] = 0;
        }
        counts[i]++;
        if (r.seq >= from_format2) {
            assert_int_equal(r.format, JRN_FORMAT);
            if (r.tseq != counts[i])
                fail_msg("seq %" PRIu64 " tenant %" PRIu64 ": tseq %" PRIu64 ", want %" PRIu64,
                         r.seq, r.tenant, r.tseq, counts[i]);
        } else {
            assert_int_equal(r.format, JRN_FORMAT_1);
            assert_true(r.tseq == 0);
        }
    }
    assert_int_equal(err, KR_ENOTFOUND);
    jrn_cursor_free(c);
    for (size_t i = 0; i < n; i++) {
        uint64_t next = 0;
        assert_int_equal(jrn_tenant_next_tseq(j, tenants_seen[i], &next), KR_OK);
        assert_true(next == counts[i] + 1);
        if (tenants_seen[i] == tenant)
            return counts[i];
    }
    return 0;
}

/* The writer numbers each tenant's records from 1 (the platform's genesis is
 * its 1), within one append and across appends. */
static void test_tseq(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint64_t next = 0;
    assert_int_equal(jrn_tenant_next_tseq(f->j, 0, &next), KR_OK);
    assert_true(next == 2);
    assert_int_equal(jrn_tenant_next_tseq(f->j, 77, &next), KR_OK);
    assert_true(next == 1);
    uint8_t p = 1;
    struct jrn_event e[6] = {
        ev(5, "a", 0, &p, 1),   ev(9, "a", 0, &p, 1), ev(5, "a", 1, &p, 1),
        ev(0, "ops", 0, &p, 1), ev(5, "b", 0, &p, 1), ev(UINT64_MAX, "a", 0, &p, 1),
    };
    assert_int_equal(jrn_append(f->j, e, 6), KR_OK);
    const uint64_t want[6] = {1, 1, 2, 2, 3, 1};
    for (size_t i = 0; i < 6; i++)
        assert_true(e[i].tseq == want[i]);
    struct jrn_event e2 = ev(9, "a", 1, &p, 1);
    assert_int_equal(jrn_append(f->j, &e2, 1), KR_OK);
    assert_true(e2.tseq == 2);
    /* A refused append takes no number. */
    struct jrn_event stale = ev(9, "a", 0, &p, 1);
    assert_int_equal(jrn_append(f->j, &stale, 1), KR_ECONFLICT);
    e2 = ev(9, "a", 2, &p, 1);
    assert_int_equal(jrn_append(f->j, &e2, 1), KR_OK);
    assert_true(e2.tseq == 3);
    struct jrn_recbuf b = {0};
    assert_int_equal(jrn_read(f->j, e2.seq, &b), KR_OK);
    assert_int_equal(b.rec.format, JRN_FORMAT);
    assert_true(b.rec.tseq == 3);
    jrn_recbuf_fini(&b);
    assert_true(check_tseqs(f->j, 1, 5) == 3);
    /* A key rotation is the platform's record 3; after a reopen the count goes on. */
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK);
    fx_close(f);
    fx_open(f);
    struct jrn_event e3 = ev(0, "ops", 1, &p, 1);
    assert_int_equal(jrn_append(f->j, &e3, 1), KR_OK);
    assert_true(e3.tseq == 4);
    fx_close(f);
    struct jrn_verify_options o = {0};
    struct jrn_verify_report rep;
    assert_int_equal(jrn_verify(f->dir, &o, &rep), KR_OK);
    assert_int_equal(rep.result, KR_OK);
    assert_true(rep.tenants == 4); /* 0, 5, 9, 2^64-1 */
}

/* Many threads appending for many tenants at once: every tenant's numbers
 * are gap-free in seq order, whatever the batching. */
#define TSEQ_THREADS 4
#define TSEQ_ROUNDS  150
#define TSEQ_NT      40
struct tseq_thread {
    struct journal *j;
    int id;
    atomic_int failures;
};

static void *tseq_main(void *arg)
{
    struct tseq_thread *t = arg;
    uint8_t p = (uint8_t)t->id;
    char stream[16];
    snprintf(stream, sizeof stream, "t%d", t->id);
    uint64_t version[TSEQ_NT] = {0};
    for (int r = 0; r < TSEQ_ROUNDS; r++) {
        /* 1 to 5 events of different tenants, one stream per thread and tenant. */
        struct jrn_event e[5];
        size_t n = 1 + (size_t)(r % 5);
        size_t tenant[5];
        for (size_t i = 0; i < n; i++) {
            tenant[i] = ((size_t)r * 7 + i * 13 + (size_t)t->id) % TSEQ_NT;
            for (size_t k = 0; k < i; k++)
                if (tenant[k] == tenant[i])
                    tenant[i] = (tenant[i] + 1) % TSEQ_NT;
        }
        bool dup = false;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < i; k++)
                dup |= tenant[k] == tenant[i];
        if (dup)
            n = 1;
        for (size_t i = 0; i < n; i++)
            e[i] = ev(tenant[i], stream, version[tenant[i]], &p, 1);
        if (jrn_append(t->j, e, n) != KR_OK) {
            atomic_fetch_add(&t->failures, 1);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            version[tenant[i]]++;
    }
    return NULL;
}

static void test_tseq_concurrent(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    struct tseq_thread t[TSEQ_THREADS];
    pthread_t th[TSEQ_THREADS];
    for (int i = 0; i < TSEQ_THREADS; i++) {
        t[i] = (struct tseq_thread){.j = f->j, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, tseq_main, &t[i]), 0);
    }
    for (int i = 0; i < TSEQ_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&t[i].failures), 0);
    }
    check_tseqs(f->j, 1, 0);
    uint64_t size = jrn_size(f->j);
    fx_close(f);
    verify_full(f->dir, size, 1);
}

/* Sets meta `format` and one tenants index value, as a migration that died
 * half-way (or a journal of older kiroku) leaves them. */
static void set_format1_state(const char *dir, uint64_t tenant, uint64_t seq, const void *val,
                              size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, tenants;
    uint8_t fmt[4] = {0, 0, 0, JRN_META_FORMAT_1}, tk[16];
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, JRN_DB_META, &txn, &meta);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_TENANTS, 0, &tenants), 0);
    MDB_val k = {strlen(JRN_META_FORMAT), JRN_META_FORMAT}, v = {4, fmt};
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    kr_test_be64(tk, tenant);
    kr_test_be64(tk + 8, seq);
    k = (MDB_val){16, tk};
    v = (MDB_val){len, (void *)val};
    assert_int_equal(mdb_put(txn, tenants, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* A journal written by older kiroku (format-1 records, meta format 1) is
 * migrated on its first writable open: each tenant's count goes on. A
 * read-only open reads it as it is. */
static void test_migrate_format1(void **state)
{
    struct fx *f = *state;
    uint8_t p = 7;
    atomic_store(&jrn_testing_format1, 1);
    fx_create_open(f);
    uint64_t ver[3] = {0, 0, 0};
    for (int i = 0; i < 30; i++) {
        uint64_t tenant = (uint64_t)(i % 3);
        struct jrn_event e = ev(tenant, "old", ver[tenant]++, &p, 1);
        assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
        assert_true(e.tseq == 0);
        if (i == 10)
            assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK);
    }
    uint64_t old_size = jrn_size(f->j); /* 1 + 30 + 1 */
    assert_true(old_size == 32);
    fx_close(f);
    assert_int_equal(kr_test_meta_format(f->dir), JRN_META_FORMAT_1);
    verify_full(f->dir, old_size, 2);
    atomic_store(&jrn_testing_format1, 0);

    /* Read-only: no migration, every record readable, counts by counting. */
    struct jrn_options o = fx_opts(f);
    o.read_only = true;
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    assert_true(check_tseqs(f->j, old_size + 1, 1) == 10);
    fx_close(f);
    assert_int_equal(kr_test_meta_format(f->dir), JRN_META_FORMAT_1);

    /* A migration that died half-way (meta still 1, some values written,
     * one wrong) is done again on the next writable open. */
    uint8_t wrong[8];
    kr_test_be64(wrong, 99);
    set_format1_state(f->dir, 1, 3, wrong, 8); /* seq 2 + i is tenant i % 3 */
    set_format1_state(f->dir, 2, 4, "", 0);
    struct jrn_verify_options vo = {0};
    struct jrn_verify_report rep;
    assert_int_equal(jrn_verify(f->dir, &vo, &rep), KR_OK);
    assert_int_equal(rep.result, KR_ECORRUPT); /* the wrong value, seen by full mode */

    /* Writable: migrated (tenant counts, then the stream index); tenant 0
     * has genesis, a key change and 10 events. */
    fx_open(f);
    assert_int_equal(kr_test_meta_format(f->dir), JRN_META_FORMAT_CURRENT);
    struct jrn_event e[3] = {ev(0, "old", ver[0], &p, 1), ev(1, "old", ver[1], &p, 1),
                             ev(4, "new", 0, &p, 1)};
    assert_int_equal(jrn_append(f->j, e, 3), KR_OK);
    assert_true(e[0].tseq == 13);
    assert_true(e[1].tseq == 11);
    assert_true(e[2].tseq == 1);
    assert_true(check_tseqs(f->j, old_size + 1, 1) == 11);
    fx_close(f);
    assert_int_equal(jrn_verify(f->dir, &vo, &rep), KR_OK);
    if (rep.result != KR_OK)
        fail_msg("verify: %s", rep.what);
    assert_true(rep.tenants == 4);
    fx_open(f);
    assert_int_equal(kr_test_meta_format(f->dir), JRN_META_FORMAT_CURRENT);
    ver[0]++;
    struct jrn_event e4 = ev(0, "old", ver[0], &p, 1);
    assert_int_equal(jrn_append(f->j, &e4, 1), KR_OK);
    assert_true(e4.tseq == 14);
    fx_close(f);
    verify_full(f->dir, old_size + 4, 2);
}

/* ==== The stream index: heads and links (meta format 3) ==== */

/* The steps jrn_link_seek takes from version v down to t (the versions
 * alone: which links it follows depends on nothing else). */
static unsigned seek_steps(uint64_t v, uint64_t t)
{
    unsigned n = 0;
    for (; v > t; n++) {
        uint64_t jv = jrn_skew_jump(v);
        v = jv >= t && jv < v - 1 ? jv : v - 1;
    }
    return n;
}

/* The skew-binary jumps: the first values, J(v) always v-1 or J(J(v-1)) (so
 * the writer finds a new record's jump near its stream's head), and seeks
 * within KR_STREAM_SEEK_MAX up to the largest journal. */
static void test_skew_jump(void **state)
{
    (void)state;
    const uint64_t want[] = {1, 1, 2, 1, 4, 5, 4, 1, 8, 9, 8, 11, 12, 11, 8, 1};
    for (uint64_t v = 1; v <= 16; v++)
        assert_true(jrn_skew_jump(v) == want[v - 1]);
    for (uint64_t v = 2; v < 100000; v++) {
        uint64_t j = jrn_skew_jump(v), p = jrn_skew_jump(v - 1);
        assert_true(j < v && (j == v - 1 || j == jrn_skew_jump(p)));
    }
    for (uint64_t v = 1; v < 600; v++)
        for (uint64_t t = 1; t <= v; t++)
            assert_true(seek_steps(v, t) <= 3 * 10 - 5);
    for (unsigned b = 12; b <= 62; b++)
        assert_true(seek_steps((UINT64_C(1) << b) - b + 1, 2) == 3 * b - 5);
    assert_true(3 * 62 - 5 < KR_STREAM_SEEK_MAX);
}

#define MIG_STREAMS 5
#define MIG_EVENTS  400u
static const char *const mig_streams[MIG_STREAMS] = {"m/a", "m/b", "m/c", "m/d", "m/e"};

/* The seqs of stream (tenant, s) from version `from` on, read by a cursor
 * (each record checked: its tenant, stream and version); their number. */
static size_t stream_seqs(struct journal *j, uint64_t tenant, const char *s, uint64_t from,
                          uint64_t *out, size_t cap)
{
    struct jrn_query q = {
        .kind = JRN_Q_STREAM, .tenant = tenant, .stream = s, .stream_len = strlen(s), .from = from};
    struct jrn_cursor *c;
    struct jrn_record r;
    kr_err err;
    size_t n = 0;
    assert_int_equal(jrn_cursor_new(j, &q, &c), KR_OK);
    while ((err = jrn_cursor_next(c, &r)) == KR_OK) {
        assert_true(n < cap);
        assert_true(r.tenant == tenant && str_is(r.stream, r.stream_len, s));
        assert_true(r.version == (from ? from : 1) + n);
        out[n++] = r.seq;
    }
    assert_int_equal(err, KR_ENOTFOUND);
    jrn_cursor_free(c);
    return n;
}

/* Every stream of the migration test read through j matches want (seqs of
 * each stream from version 1, MIG_EVENTS slots each; only those <= size). */
static void mig_check_streams(struct journal *j, uint64_t want[2][MIG_STREAMS][MIG_EVENTS],
                              const size_t nwant[2][MIG_STREAMS], uint64_t size)
{
    static uint64_t got[MIG_EVENTS];
    for (uint64_t t = 0; t < 2; t++)
        for (size_t s = 0; s < MIG_STREAMS; s++) {
            size_t n = 0;
            while (n < nwant[t][s] && want[t][s][n] <= size)
                n++;
            assert_int_equal(stream_seqs(j, t + 1, mig_streams[s], 0, got, MIG_EVENTS), n);
            assert_memory_equal(got, want[t][s], n * sizeof *got);
            assert_true(stream_version(j, t + 1, mig_streams[s]) == n);
            /* From a version in the middle: a seek down the links. */
            if (n > 2) {
                assert_int_equal(stream_seqs(j, t + 1, mig_streams[s], n / 2, got, MIG_EVENTS),
                                 n - n / 2 + 1);
                assert_memory_equal(got, want[t][s] + n / 2 - 1, (n - n / 2 + 1) * sizeof *got);
            }
        }
}

/* Builds a journal with the legacy stream index, as kiroku before meta
 * format 3 wrote it: MIG_EVENTS events of two tenants over MIG_STREAMS
 * streams of uneven lengths, a key rotation among them. */
static void mig_build_legacy(struct fx *f, uint64_t ver[2][MIG_STREAMS])
{
    static uint8_t p[MIG_EVENTS];
    struct jrn_event e[50];
    atomic_store(&jrn_testing_legacy_index, 1);
    fx_create_open(f);
    for (uint32_t i = 0; i < MIG_EVENTS; i += 50) {
        for (uint32_t k = 0; k < 50; k++) {
            uint32_t n = i + k, t = n % 2, s = (n * 7 + n / 3) % MIG_STREAMS;
            p[n] = (uint8_t)n;
            e[k] = ev(t + 1, mig_streams[s], ver[t][s]++, &p[n], 1);
        }
        assert_int_equal(jrn_append(f->j, e, 50), KR_OK);
        if (i == 150)
            assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK);
    }
    fx_close(f);
    atomic_store(&jrn_testing_legacy_index, 0);
}

/* Whether DIR's environment still has the legacy `streams` database. */
static bool has_legacy_streams(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    kr_test_env_open(dir, &env);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    int rc = mdb_dbi_open(txn, JRN_DB_STREAMS, 0, &dbi);
    assert_true(rc == 0 || rc == MDB_NOTFOUND);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc == 0;
}

/* A journal with the legacy stream index (an entry per record) is read as it
 * is by a read-only open, and migrated by a writable one: a migration that
 * dies half-way is resumed, a truncation of a half-migrated journal starts it
 * again, and afterwards every stream reads the same, versions are checked as
 * before, and the journal verifies. */
static void test_migrate_stream_index(void **state)
{
    struct fx *f = *state;
    static uint64_t want[2][MIG_STREAMS][MIG_EVENTS];
    size_t nwant[2][MIG_STREAMS];
    uint64_t ver[2][MIG_STREAMS] = {{0}};
    uint8_t p = 9;
    mig_build_legacy(f, ver);
    const uint64_t size = 2 + MIG_EVENTS; /* genesis, events, a key change */
    assert_int_equal(kr_test_meta_format(f->dir), JRN_META_FORMAT_2);
    assert_true(has_legacy_streams(f->dir));
    verify_full(f->dir, size, 2);

    /* Read-only: the legacy index, read as it is. */
    struct jrn_options o = fx_opts(f);
    o.read_only = true;
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    for (uint64_t t = 0; t < 2; t++)
        for (size_t s = 0; s < MIG_STREAMS; s++) {
            nwant[t][s] = stream_seqs(f->j, t + 1, mig_streams[s], 0, want[t][s], MIG_EVENTS);
            assert_true(nwant[t][s] == ver[t][s] && nwant[t][s] > 20);
        }
    mig_check_streams(f->j, want, nwant, size);
    fx_close(f);

    /* A migration that dies after three transactions of 37 records. */
    atomic_store(&jrn_testing_migrate_records, 37);
    atomic_store(&jrn_testing_migrate_txns, 3);
    o.read_only = false;
    assert_int_equal(jrn_open(&o, &f->j), KR_EIO);
    f->j = NULL;
    atomic_store(&jrn_testing_migrate_txns, 0);
    assert_int_equal(kr_test_meta_format(f->dir), JRN_META_FORMAT_2);
    verify_full(f->dir, size, 2);
    o.read_only = true;
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    mig_check_streams(f->j, want, nwant, size);
    fx_close(f);

    /* Truncating the half-migrated journal: its migration starts again. */
    char cut[KR_PATH_MAX];
    snprintf(cut, sizeof cut, "%.1000s/cut", f->root);
    kr_test_copytree(f->dir, cut);
    assert_int_equal(jrn_truncate(cut, 300), KR_OK);
    struct jrn_options oc = fx_opts(f);
    oc.dir = cut;
    oc.no_appends = true;
    assert_int_equal(jrn_open(&oc, &f->j), KR_OK);
    mig_check_streams(f->j, want, nwant, 300);
    fx_close(f);
    assert_int_equal(kr_test_meta_format(cut), JRN_META_FORMAT_CURRENT);
    assert_false(has_legacy_streams(cut));
    verify_full(cut, 300, 2);

    /* The next writable open resumes and finishes. */
    fx_open(f);
    atomic_store(&jrn_testing_migrate_records, 0);
    assert_int_equal(kr_test_meta_format(f->dir), JRN_META_FORMAT_CURRENT);
    assert_false(has_legacy_streams(f->dir));
    mig_check_streams(f->j, want, nwant, size);
    struct jrn_event stale = ev(1, mig_streams[0], ver[0][0] - 1, &p, 1);
    assert_int_equal(jrn_append(f->j, &stale, 1), KR_ECONFLICT);
    struct jrn_event e[2] = {ev(1, mig_streams[0], ver[0][0], &p, 1),
                             ev(2, mig_streams[4], ver[1][4], &p, 1)};
    assert_int_equal(jrn_append(f->j, e, 2), KR_OK);
    assert_true(e[0].seq == size + 1 && e[1].seq == size + 2);
    want[0][0][nwant[0][0]++] = e[0].seq;
    want[1][4][nwant[1][4]++] = e[1].seq;
    mig_check_streams(f->j, want, nwant, size + 2);
    fx_close(f);
    verify_full(f->dir, size + 2, 2);
}

/* Versions far past where jumps start to skip: every version of a long
 * stream is found from its head, and reads from any version page through. */
static void test_stream_links_long(void **state)
{
    struct fx *f = *state;
    static uint8_t p[100];
    static uint64_t seqs[1300];
    struct jrn_event e[100];
    fx_create_open(f);
    uint64_t v = 0;
    for (int i = 0; i < 13; i++) {
        for (int k = 0; k < 100; k++) {
            e[k] =
                ev(3, k % 3 ? "long" : "other", k % 3 ? v++ : (uint64_t)(i * 34 + k / 3), &p[k], 1);
        }
        assert_int_equal(jrn_append(f->j, e, 100), KR_OK);
    }
    assert_true(stream_version(f->j, 3, "long") == v);
    size_t n = stream_seqs(f->j, 3, "long", 0, seqs, 1300);
    assert_true(n == v);
    static uint64_t got[1300];
    const uint64_t from[] = {1, 2, 3, 255, 256, 257, 511, 512, 700, v - 1, v};
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
        assert_int_equal(stream_seqs(f->j, 3, "long", from[i], got, 1300), v - from[i] + 1);
        assert_memory_equal(got, seqs + from[i] - 1, (v - from[i] + 1) * sizeof *got);
    }
    assert_int_equal(stream_seqs(f->j, 3, "long", v + 1, got, 1300), 0);
    fx_close(f);
    verify_full(f->dir, 1 + 1300, 1);

    /* Truncated in the middle: each stream's head steps back to its last
     * remaining record, and the links reach every version left. */
    assert_int_equal(jrn_truncate(f->dir, 700), KR_OK);
    size_t left = 0;
    while (left < n && seqs[left] <= 700)
        left++;
    struct jrn_options o = fx_opts(f);
    o.read_only = true;
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    assert_true(stream_version(f->j, 3, "long") == left);
    assert_int_equal(stream_seqs(f->j, 3, "long", 0, got, 1300), left);
    assert_memory_equal(got, seqs, left * sizeof *got);
    assert_int_equal(stream_seqs(f->j, 3, "long", left / 3, got, 1300), left - left / 3 + 1);
    assert_true(stream_version(f->j, 3, "other") == 699 - left);
    fx_close(f);
    verify_full(f->dir, 700, 1);
}

/* ==== Stripping payloads ==== */

/* Appends n events of `tenant` to stream `stream` (payload: the index i as
 * 4 bytes and filler), one jrn_append of up to 100 at a time. */
static void append_many(struct journal *j, uint64_t tenant, const char *stream, size_t n)
{
    static uint8_t payloads[100][24];
    struct jrn_event e[100];
    uint64_t version = stream_version(j, tenant, stream);
    for (size_t done = 0; done < n;) {
        size_t k = n - done < 100 ? n - done : 100;
        for (size_t i = 0; i < k; i++) {
            memset(payloads[i], 0x5a, sizeof payloads[i]);
            memcpy(payloads[i], &done, sizeof done);
            e[i] = ev(tenant, stream, version++, payloads[i], sizeof payloads[i]);
        }
        assert_int_equal(jrn_append(j, e, k), KR_OK);
        done += k;
    }
}

/* Counts records: stripped ones, and of them `tenant`'s; fails on a stripped
 * record of the journal's own stream. */
static void count_stripped(struct journal *j, uint64_t tenant, uint64_t *all, uint64_t *of_tenant,
                           uint64_t *tenant_total)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE};
    struct jrn_cursor *c;
    struct jrn_record r;
    kr_err err;
    *all = *of_tenant = *tenant_total = 0;
    assert_int_equal(jrn_cursor_new(j, &q, &c), KR_OK);
    while ((err = jrn_cursor_next(c, &r)) == KR_OK) {
        *tenant_total += r.tenant == tenant;
        if (!r.payload_stripped)
            continue;
        assert_false(r.tenant == 0 && str_is(r.stream, r.stream_len, "journal"));
        assert_null(r.payload);
        (*all)++;
        *of_tenant += r.tenant == tenant;
    }
    assert_int_equal(err, KR_ENOTFOUND);
    jrn_cursor_free(c);
}

static struct jrn_verify_report verify_report(const char *dir)
{
    struct jrn_verify_options o = {0};
    struct jrn_verify_report rep;
    assert_int_equal(jrn_verify(dir, &o, &rep), KR_OK);
    if (rep.result != KR_OK)
        fail_msg("verify: %s at %" PRIu64 ": %s", kr_strerror(rep.result), rep.bad_seq, rep.what);
    return rep;
}

struct strip_load {
    struct journal *j;
    atomic_bool stop;
    atomic_int failures;
    _Atomic uint64_t appended;
};

/* For kr_test_wait_for: whether the load appended 200 events. */
static bool load_appended(void *arg)
{
    return atomic_load(&((struct strip_load *)arg)->appended) >= 200;
}

static void *strip_load_main(void *arg)
{
    struct strip_load *l = arg;
    uint8_t p[16] = {1};
    uint64_t v1 = 0, v3 = 0;
    while (!atomic_load(&l->stop)) {
        struct jrn_event e[2] = {ev(1, "live", v1, p, sizeof p), ev(3, "live", v3, p, sizeof p)};
        if (jrn_append(l->j, e, 2) != KR_OK) {
            atomic_fetch_add(&l->failures, 1);
            break;
        }
        v1++;
        v3++;
        atomic_fetch_add(&l->appended, 2);
    }
    return NULL;
}

/* One tenant among several is stripped while others append: only its
 * payloads go, everything still verifies, a rerun strips nothing. */
static void test_strip_tenant(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    append_many(f->j, 1, "a", 3000);
    append_many(f->j, 2, "a", 5000);
    append_many(f->j, 3, "b", 2000);
    append_many(f->j, 2, "c", 3000);
    append_many(f->j, 0, "ops", 10);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK);
    struct strip_load load = {.j = f->j};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, strip_load_main, &load), 0);
    assert_true(kr_test_wait_for(load_appended, &load, KR_TEST_WAIT_MS, "200 appends under load"));
    struct jrn_strip_spec spec = {.tenant = 2};
    uint64_t n = 0;
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_OK);
    assert_true(n == 8000);
    atomic_store(&load.stop, true);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&load.failures), 0);
    assert_true(atomic_load(&load.appended) > 200);
    uint64_t all, of2, total2;
    count_stripped(f->j, 2, &all, &of2, &total2);
    assert_true(all == 8000 && of2 == 8000 && total2 == 8000);
    /* Idempotent. */
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_OK);
    assert_true(n == 0);
    /* Proofs against the old checkpoints still hold (the leaves are the same). */
    uint64_t size = jrn_size(f->j);
    fx_close(f);
    struct jrn_verify_report rep = verify_report(f->dir);
    assert_true(rep.records == size);
    assert_true(rep.stripped == 8000);
    /* The platform: its own stream never, even with any_tenant. */
    fx_open(f);
    spec = (struct jrn_strip_spec){.tenant = 0};
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_OK);
    assert_true(n == 10); /* the ops stream only */
    spec = (struct jrn_strip_spec){.any_tenant = true};
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_OK);
    assert_true(n == size - 8000 - 10 - 2); /* all but genesis and key_added */
    struct jrn_recbuf b = {0};
    assert_int_equal(jrn_read(f->j, 1, &b), KR_OK);
    assert_false(b.rec.payload_stripped);
    jrn_recbuf_fini(&b);
    /* The journal still opens (its key history is intact) and appends. */
    fx_close(f);
    fx_open(f);
    append_many(f->j, 2, "a", 1);
    fx_close(f);
    rep = verify_report(f->dir);
    assert_true(rep.stripped == size - 2);
    /* Read-only handles refuse. */
    struct jrn_options o = fx_opts(f);
    o.read_only = true;
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_ECLOSED);
    assert_int_equal(jrn_strip(f->j, NULL, &n), KR_EINVAL);
}

static bool want_even(void *arg, const struct jrn_record *r)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    return r->seq % 2 == 0;
}

/* to_seq, before_ns and want narrow what is stripped. */
static void test_strip_filters(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    append_many(f->j, 4, "a", 100); /* seq 2..101 at T0 */
    atomic_store(&f->tc.now, T0 + 1000);
    append_many(f->j, 4, "a", 100); /* seq 102..201 at T0 + 1000 */
    append_many(f->j, 5, "a", 100); /* seq 202..301 */
    uint64_t n = 0, all, of4, total4;
    struct jrn_strip_spec spec = {.tenant = 4, .to_seq = 51};
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_OK);
    assert_true(n == 50);
    spec = (struct jrn_strip_spec){.tenant = 4, .before_ns = T0 + 1000};
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_OK);
    assert_true(n == 50); /* 52..101 */
    atomic_int calls = 0;
    spec = (struct jrn_strip_spec){.tenant = 4, .want = want_even, .arg = &calls};
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_OK);
    assert_true(n == 50);                       /* the even seqs of 102..201 */
    assert_int_equal(atomic_load(&calls), 100); /* asked only about unstripped ones */
    count_stripped(f->j, 4, &all, &of4, &total4);
    assert_true(all == 150 && of4 == 150 && total4 == 200);
    /* any_tenant with bounds: tenant 5's first ten. */
    spec = (struct jrn_strip_spec){.any_tenant = true, .to_seq = 211};
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_OK);
    assert_true(n == 50 + 10);
    fx_close(f);
    assert_true(verify_report(f->dir).stripped == 210);
}

/* A strip that dies after its first transaction leaves those records
 * stripped; a rerun finishes, and the journal verifies throughout. */
static void test_strip_resume(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    const uint64_t total = 2 * KR_STRIP_TXN_RECORDS + 100;
    append_many(f->j, 6, "x", (size_t)total);
    append_many(f->j, 7, "x", 10);
    uint64_t n = 0;
    struct jrn_strip_spec spec = {.tenant = 6};
    atomic_store(&jrn_testing_strip_txns, 1);
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_EIO);
    atomic_store(&jrn_testing_strip_txns, 0);
    assert_true(n == KR_STRIP_TXN_RECORDS);
    fx_close(f);
    assert_true(verify_report(f->dir).stripped == KR_STRIP_TXN_RECORDS);
    fx_open(f);
    assert_int_equal(jrn_strip(f->j, &spec, &n), KR_OK);
    assert_true(n == total - KR_STRIP_TXN_RECORDS);
    fx_close(f);
    assert_true(verify_report(f->dir).stripped == total);
}

/* ==== Epochs ==== */

static size_t checkpoint_of(struct journal *j, char note[KR_NOTE_MAX + 1])
{
    size_t len = 0;
    assert_int_equal(jrn_checkpoint(j, note, KR_NOTE_MAX + 1, &len), KR_OK);
    return len;
}

static void put_kept_checkpoint(const char *dir, uint64_t size, const char *note, size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t key[8];
    kr_test_be64(key, size);
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, JRN_DB_CHECKPOINTS, &txn, &dbi);
    MDB_val k = {8, key}, v = {len, (void *)note};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Truncate, start a new epoch, append: the journal verifies, each tenant's
 * count goes on from the fork, and no key signs two roots for one size. */
static void test_truncate_new_epoch(void **state)
{
    struct fx *f = *state;
    static char note_k2[KR_NOTE_MAX + 1], note_k3[KR_NOTE_MAX + 1], note[KR_NOTE_MAX + 1];
    fx_create_open(f);
    append_many(f->j, 1, "a", 150);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK); /* key 2 at seq 152 */
    append_many(f->j, 1, "a", 100);
    append_many(f->j, 2, "b", 100); /* up to 352 */
    const uint64_t fork = 300;
    uint64_t t1_at_fork = 250; /* tenant 1: 150 + 100 */
    uint64_t t2_at_fork = fork - 1 - 1 - 250;
    size_t len_k2 = checkpoint_of(f->j, note_k2);        /* size 352, key 2 */
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK); /* key 3 at 353 */
    append_many(f->j, 2, "b", 50);
    size_t len_k3 = checkpoint_of(f->j, note_k3); /* size 403, key 3 */
    uint64_t old_size = jrn_size(f->j);
    assert_true(old_size == 403);

    /* Open here (writable, then read-only): refused. */
    assert_int_equal(jrn_truncate(f->dir, fork), KR_EBUSY);
    fx_close(f);
    struct jrn_options ro = fx_opts(f);
    ro.read_only = true;
    assert_int_equal(jrn_open(&ro, &f->j), KR_OK);
    assert_int_equal(jrn_truncate(f->dir, fork), KR_EBUSY);
    fx_close(f);
    /* Bad sizes. */
    assert_int_equal(jrn_truncate(f->dir, 0), KR_EINVAL);
    assert_int_equal(jrn_truncate(f->dir, old_size + 1), KR_EINVAL);
    assert_int_equal(jrn_truncate(NULL, fork), KR_EINVAL);

    assert_int_equal(jrn_truncate(f->dir, fork), KR_OK);
    struct jrn_verify_report rep = verify_report(f->dir);
    assert_true(rep.records == fork);
    assert_true(rep.keys == 2);
    assert_true(rep.epochs == 1);

    /* Until a new epoch, key 2 may sign nothing more. */
    fx_open(f);
    assert_true(jrn_size(f->j) == fork);
    uint8_t p = 3;
    struct jrn_event e = ev(1, "a", stream_version(f->j, 1, "a"), &p, 1);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_EKEY);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_EKEY);
    /* The previous checkpoint must be a note of this journal by a key its
     * history names (key 3 came after the fork) at or beyond the fork. */
    assert_int_not_equal(jrn_new_epoch(f->j, "garbage\n", 8, NULL), KR_OK);
    assert_int_not_equal(jrn_new_epoch(f->j, note_k3, len_k3, NULL), KR_OK);
    assert_true(jrn_size(f->j) == fork); /* nothing appended */
    struct jrn_info info;
    assert_int_equal(jrn_new_epoch(f->j, note_k2, len_k2, &info), KR_OK);
    assert_int_equal(info.key_id, 4); /* 3 is the dropped history's */
    assert_true(info.size == fork + 1);
    /* Appends again, each tenant's count going on from the fork. */
    e = ev(1, "a", stream_version(f->j, 1, "a"), &p, 1);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    assert_true(e.tseq == t1_at_fork + 1);
    assert_int_equal(e.key_id, 4);
    e = ev(2, "b", stream_version(f->j, 2, "b"), &p, 1);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_OK);
    assert_true(e.tseq == t2_at_fork + 1);
    append_many(f->j, 2, "b", 100);
    check_tseqs(f->j, 1, 0);
    uint64_t size = jrn_size(f->j);
    assert_true(size > 352);
    uint8_t root301[KR_HASH_LEN];
    assert_int_equal(jrn_root(f->j, fork + 1, root301), KR_OK);
    fx_close(f);
    rep = verify_report(f->dir);
    assert_true(rep.records == size);
    assert_true(rep.epochs == 2);
    assert_true(rep.keys == 3);

    /* The dropped history's checkpoint at 352, signed by key 2: not this
     * history's (key 2 signs no size past the fork now). */
    char dir2[DIR_CAP + 8];
    snprintf(dir2, sizeof dir2, "%s.2", f->dir);
    kr_test_copytree(f->dir, dir2);
    put_kept_checkpoint(dir2, 352, note_k2, len_k2);
    struct jrn_verify_options vo = {0};
    assert_int_equal(jrn_verify(dir2, &vo, &rep), KR_OK);
    assert_int_equal(rep.result, KR_EBADSIG);
    assert_true(rep.bad_seq == 352);
    assert_non_null(strstr(rep.what, "signed by key 2, which may not sign size 352"));
    kr_test_rmrf(dir2);
    /* Nor may key 2 sign the new root at the epoch's first size. */
    kr_test_copytree(f->dir, dir2);
    struct kr_signing_key k2;
    assert_int_equal(kr_key_load(f->dir, 2, &k2), KR_OK);
    struct kr_checkpoint cp;
    size_t len;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "%s", info.origin);
    cp.size = fork + 1;
    memcpy(cp.root, root301, KR_HASH_LEN);
    assert_int_equal(kr_checkpoint_sign(&cp, info.origin, k2.pk, k2.sk, note, sizeof note, &len),
                     KR_OK);
    kr_key_wipe(&k2);
    put_kept_checkpoint(dir2, fork + 1, note, len);
    assert_int_equal(jrn_verify(dir2, &vo, &rep), KR_OK);
    assert_int_equal(rep.result, KR_EBADSIG);
    assert_true(rep.bad_seq == fork + 1);
    kr_test_rmrf(dir2);
}

/* A writer in another process (it holds DIR/journal/writer.lock): truncation
 * is refused while it runs, and works once it is gone. */
static void test_truncate_busy(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    append_many(f->j, 1, "a", 5);
    fx_close(f);
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char path[PATH_CAP], c = 'x';
        snprintf(path, sizeof path, "%s/journal/writer.lock", f->dir);
        int fd = open(path, O_RDWR);
        if (fd < 0 || flock(fd, LOCK_EX) != 0 || write(up[1], &c, 1) != 1)
            _exit(1);
        _exit(read(down[0], &c, 1) == 1 ? 0 : 2); /* holds the lock until told */
    }
    char c;
    assert_int_equal(read(up[0], &c, 1), 1);
    assert_int_equal(jrn_truncate(f->dir, 3), KR_EBUSY);
    assert_int_equal(write(down[1], &c, 1), 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
    assert_true(verify_report(f->dir).records == 6);
    assert_int_equal(jrn_truncate(f->dir, 3), KR_OK);
    assert_true(verify_report(f->dir).records == 3);
    /* Not a journal at all. */
    char none[DIR_CAP + 8];
    snprintf(none, sizeof none, "%s.none", f->dir);
    assert_int_equal(jrn_truncate(none, 3), KR_ENOTFOUND);
}

/* A crash inside jrn_truncate: after the checkpoint file, before the
 * transaction commits, what is left is the old journal with the new file, and
 * it verifies (the file's root is the old history's at that size) and goes on. */
static void test_truncate_crash(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    append_many(f->j, 1, "a", 40);
    uint64_t size = jrn_size(f->j);
    fx_close(f);
    char old[DIR_CAP + 8], path[PATH_CAP], from[PATH_CAP];
    snprintf(old, sizeof old, "%s.old", f->dir);
    kr_test_copytree(f->dir, old);
    assert_int_equal(jrn_truncate(f->dir, 10), KR_OK);
    snprintf(from, sizeof from, "%s/checkpoint", f->dir);
    snprintf(path, sizeof path, "%s/checkpoint", old);
    assert_int_equal(rename(from, path), 0);
    struct jrn_verify_report rep = verify_report(old);
    assert_true(rep.records == size);
    struct jrn_options o = fx_opts(f);
    o.dir = old;
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    append_many(f->j, 1, "a", 3); /* not truncated: no epoch needed */
    fx_close(f);
    assert_true(verify_report(old).records == size + 3);
    kr_test_rmrf(old);
}

/* ---- Forged epoch records ---- */

struct forge_tree {
    MDB_txn *txn;
    MDB_dbi dbi;
};

static void forge_tree_put(void *ctx, unsigned level, uint64_t index,
                           const uint8_t hash[KR_HASH_LEN])
{
    struct forge_tree *t = ctx;
    uint8_t key[8];
    kr_test_be64(key, mrk_postorder(level, index));
    MDB_val k = {8, key}, v = {KR_HASH_LEN, (void *)hash};
    assert_int_equal(mdb_put(t->txn, t->dbi, &k, &v, 0), 0);
}

/* {epoch, key_id, public_key, previous_checkpoint}, as the journal writes it. */
static size_t epoch_payload(uint8_t *out, size_t cap, uint64_t epoch, uint32_t key_id,
                            const uint8_t pk[KR_PUBKEY_LEN], const char *prev, size_t len)
{
    struct kr_mp_fixbuf fb = {.p = out, .cap = cap};
    msgpack_packer w;
    msgpack_packer_init(&w, &fb, kr_mp_fixbuf_write);
    msgpack_pack_map(&w, 4);
    msgpack_pack_str_with_body(&w, "epoch", 5);
    msgpack_pack_uint64(&w, epoch);
    msgpack_pack_str_with_body(&w, "key_id", 6);
    msgpack_pack_uint32(&w, key_id);
    msgpack_pack_str_with_body(&w, "public_key", 10);
    msgpack_pack_bin_with_body(&w, pk, KR_PUBKEY_LEN);
    msgpack_pack_str_with_body(&w, "previous_checkpoint", 19);
    msgpack_pack_str_with_body(&w, prev, len);
    assert_false(fb.overflow);
    return fb.len;
}

/* Replaces the payload of the journal's last record (an epoch_started one) as
 * a holder of every key could: the record re-signed by its key, the tree
 * rebuilt, the checkpoints at its size re-signed by the epoch's new key. Only
 * the epoch rules can tell. */
static void forge_last_epoch(const char *dir, uint64_t seq, uint64_t epoch, const char *prev,
                             size_t prev_len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi events, tree, meta, cps;
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, JRN_DB_EVENTS, &txn, &events);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_TREE, 0, &tree), 0);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_META, 0, &meta), 0);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_CHECKPOINTS, 0, &cps), 0);
    uint8_t key[8];
    kr_test_be64(key, seq);
    MDB_val k = {8, key}, v;
    assert_int_equal(mdb_get(txn, events, &k, &v), 0);
    static uint8_t copy[KR_RECORD_MAX], enc[KR_RECORD_MAX], payload[KR_NOTE_MAX + 256];
    memcpy(copy, v.mv_data, v.mv_size);
    struct jrn_record r;
    assert_int_equal(jrn_record_decode(copy, v.mv_size, &r), KR_OK);
    struct jrn_key_payload kp;
    assert_int_equal(jrn_parse_key_payload(r.payload, r.payload_len, &kp), KR_OK);
    assert_true(kp.has_epoch);
    uint32_t new_id = kp.key_id;
    uint8_t new_pk[KR_PUBKEY_LEN];
    memcpy(new_pk, kp.pk, KR_PUBKEY_LEN);
    r.payload_len = epoch_payload(payload, sizeof payload, epoch, new_id, new_pk, prev, prev_len);
    r.payload = payload;
    crypto_hash_sha256(r.commitment, r.payload, r.payload_len);
    struct kr_signing_key old, nk;
    assert_int_equal(kr_key_load(dir, r.key_id, &old), KR_OK);
    assert_int_equal(kr_key_load(dir, new_id, &nk), KR_OK);
    uint8_t msg[JRN_SIGN_INPUT_MAX];
    size_t mlen, len;
    jrn_record_sign_input(&r, msg, &mlen);
    crypto_sign_detached(r.sig, NULL, msg, mlen, old.sk);
    assert_int_equal(jrn_record_encode(&r, enc, sizeof enc, &len, NULL), KR_OK);
    MDB_val nv = {len, enc};
    assert_int_equal(mdb_put(txn, events, &k, &nv, 0), 0);
    /* The tree, from every record. */
    assert_int_equal(mdb_drop(txn, tree, 0), 0);
    struct forge_tree t = {txn, tree};
    struct mrk_frontier fr;
    mrk_frontier_init(&fr);
    MDB_cursor *c;
    assert_int_equal(mdb_cursor_open(txn, events, &c), 0);
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct jrn_record x;
        uint8_t leaf[KR_HASH_LEN];
        assert_int_equal(jrn_record_decode(v.mv_data, v.mv_size, &x), KR_OK);
        jrn_record_leaf_hash(&x, leaf);
        mrk_frontier_append(&fr, leaf, forge_tree_put, &t);
    }
    mdb_cursor_close(c);
    assert_true(fr.size == seq);
    /* The checkpoints at this size, by the new key. */
    char origin[KR_ORIGIN_MAX + 1];
    k = (MDB_val){strlen(JRN_META_ID), JRN_META_ID};
    assert_int_equal(mdb_get(txn, meta, &k, &v), 0);
    char hex[33];
    sodium_bin2hex(hex, sizeof hex, v.mv_data, 16);
    snprintf(origin, sizeof origin, "kiroku/%s", hex);
    struct kr_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "%s", origin);
    cp.size = seq;
    mrk_frontier_root(&fr, cp.root);
    static char note[KR_NOTE_MAX + 1];
    size_t nlen;
    assert_int_equal(kr_checkpoint_sign(&cp, origin, nk.pk, nk.sk, note, sizeof note, &nlen),
                     KR_OK);
    k = (MDB_val){strlen(JRN_META_CHECKPOINT), JRN_META_CHECKPOINT};
    nv = (MDB_val){nlen, note};
    assert_int_equal(mdb_put(txn, meta, &k, &nv, 0), 0);
    k = (MDB_val){8, key};
    if (mdb_get(txn, cps, &k, &v) == 0)
        assert_int_equal(mdb_put(txn, cps, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(note, 1, nlen, fp), nlen);
    assert_int_equal(fclose(fp), 0);
    kr_key_wipe(&old);
    kr_key_wipe(&nk);
}

/* The key hook (jrn_key_hook): told of every key a rotation or an epoch
 * makes, with its files written and before any record of it; its error
 * stops the call with nothing appended; KR_EEXIST makes an epoch take the
 * next id. */
struct key_seen {
    uint32_t ids[8];
    size_t n;
    uint64_t size_then[8];
    struct journal *j;
    const char *dir;
    bool files[8];
    kr_err answer[8]; /* per call */
};
static kr_err key_hook_cb(void *ctx, const uint8_t journal_id[16], const struct kr_signing_key *key)
{
    (void)journal_id;
    struct key_seen *k = ctx;
    assert_true(k->n < 8);
    k->ids[k->n] = key->key_id;
    k->size_then[k->n] = k->j ? jrn_size(k->j) : 0;
    uint8_t pk[KR_PUBKEY_LEN];
    k->files[k->n] =
        kr_pubkey_load(k->dir, key->key_id, pk) == KR_OK && memcmp(pk, key->pk, sizeof pk) == 0;
    return k->answer[k->n++];
}

static void test_key_hook(void **state)
{
    struct fx *f = *state;
    static char prev[KR_NOTE_MAX + 1];
    struct key_seen k = {.dir = f->dir};
    struct jrn_key_hook h = {.ctx = &k, .key_made = key_hook_cb};
    fx_create(f);
    struct jrn_options o = fx_opts(f);
    o.key_made = &h;
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    k.j = f->j;
    append_many(f->j, 1, "a", 3);
    uint64_t size = jrn_size(f->j);
    /* A refusal: no record, no key files, the current key stays. */
    k.answer[0] = KR_EIO;
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_EIO);
    assert_int_equal(jrn_size(f->j), size);
    uint8_t pk[KR_PUBKEY_LEN];
    assert_int_equal(kr_pubkey_load(f->dir, 2, pk), KR_ENOTFOUND);
    /* Told before the key_added record. */
    struct jrn_info info;
    assert_int_equal(jrn_rotate_key(f->j, &info), KR_OK);
    assert_int_equal(k.n, 2);
    assert_int_equal(k.ids[1], 2);
    assert_true(k.files[1]);
    assert_int_equal(k.size_then[1], size);
    assert_int_equal(jrn_size(f->j), size + 1);
    /* An epoch whose first id another node has taken: the next one. */
    size_t len = checkpoint_of(f->j, prev);
    k.answer[2] = KR_EEXIST;
    assert_int_equal(jrn_new_epoch(f->j, prev, len, &info), KR_OK);
    assert_int_equal(k.n, 4);
    assert_int_equal(k.ids[3], k.ids[2] + 1);
    assert_int_equal(info.key_id, k.ids[3]);
    assert_int_equal(k.size_then[3], size + 1);
    assert_int_equal(kr_pubkey_load(f->dir, k.ids[2], pk), KR_ENOTFOUND);
    fx_close(f);
    assert_true(verify_report(f->dir).epochs == 2);
}

/* verify checks what an epoch_started record claims: the next epoch number,
 * and a previous checkpoint of this journal, by a key it had, at or beyond
 * the fork. */
static void test_epoch_record_checks(void **state)
{
    struct fx *f = *state;
    static char prev[KR_NOTE_MAX + 1], early[KR_NOTE_MAX + 1], other[KR_NOTE_MAX + 1];
    fx_create_open(f);
    append_many(f->j, 1, "a", 9);
    size_t early_len = checkpoint_of(f->j, early); /* size 10 */
    append_many(f->j, 1, "a", 10);
    size_t prev_len = checkpoint_of(f->j, prev); /* size 20 */
    assert_int_equal(jrn_new_epoch(f->j, prev, prev_len, NULL), KR_OK);
    uint64_t seq = jrn_size(f->j);
    fx_close(f);
    struct jrn_verify_report rep = verify_report(f->dir);
    assert_true(rep.epochs == 2);
    /* The forger itself is sound: the same payload re-forged verifies. */
    char dir2[DIR_CAP + 8];
    snprintf(dir2, sizeof dir2, "%s.2", f->dir);
    kr_test_copytree(f->dir, dir2);
    forge_last_epoch(dir2, seq, 2, prev, prev_len);
    assert_true(verify_report(dir2).epochs == 2);
    kr_test_rmrf(dir2);
    /* A note of another journal (same key names no key of it). */
    char odir[DIR_CAP + 8];
    snprintf(odir, sizeof odir, "%s.other", f->dir);
    struct jrn_options oo = fx_opts(f);
    oo.dir = odir;
    struct journal *oj;
    assert_int_equal(jrn_create(&oo, NULL), KR_OK);
    assert_int_equal(jrn_open(&oo, &oj), KR_OK);
    size_t other_len = checkpoint_of(oj, other);
    jrn_close(oj);
    kr_test_rmrf(odir);
    const struct {
        uint64_t epoch;
        const char *note;
        size_t len;
        kr_err want;
        const char *what;
    } cases[] = {
        {3, prev, prev_len, KR_ECORRUPT, "epoch 3 follows epoch 1"},
        {2, early, early_len, KR_ECORRUPT, "before the fork"},
        {2, other, other_len, KR_EBADSIG, "previous checkpoint"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        kr_test_copytree(f->dir, dir2);
        forge_last_epoch(dir2, seq, cases[i].epoch, cases[i].note, cases[i].len);
        struct jrn_verify_options o = {0};
        assert_int_equal(jrn_verify(dir2, &o, &rep), KR_OK);
        if (rep.result != cases[i].want || rep.bad_seq != seq || !strstr(rep.what, cases[i].what))
            fail_msg("case %zu: %s at %" PRIu64 ": %s", i, kr_errname(rep.result), rep.bad_seq,
                     rep.what);
        kr_test_rmrf(dir2);
    }
}

/* Truncating to the last record drops nothing and needs no new epoch; to an
 * epoch's first record, the checkpoint is the new key's. */
static void test_truncate_edges(void **state)
{
    struct fx *f = *state;
    static char note[KR_NOTE_MAX + 1];
    fx_create_open(f);
    append_many(f->j, 1, "a", 20);
    size_t len = checkpoint_of(f->j, note);
    uint64_t size = jrn_size(f->j);
    fx_close(f);
    assert_int_equal(jrn_truncate(f->dir, size), KR_OK);
    fx_open(f);
    append_many(f->j, 1, "a", 5);                                      /* no epoch needed */
    assert_int_equal(jrn_new_epoch(f->j, note, len, NULL), KR_EINVAL); /* before this size */
    len = checkpoint_of(f->j, note);
    assert_int_equal(jrn_new_epoch(f->j, note, len, NULL), KR_OK);
    uint64_t epoch_seq = jrn_size(f->j);
    append_many(f->j, 1, "a", 5);
    fx_close(f);
    assert_int_equal(jrn_truncate(f->dir, epoch_seq), KR_OK);
    struct jrn_verify_report rep = verify_report(f->dir);
    assert_true(rep.records == epoch_seq);
    assert_true(rep.epochs == 2);
    fx_open(f);
    uint8_t p = 1;
    struct jrn_event e = ev(1, "a", stream_version(f->j, 1, "a"), &p, 1);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_EKEY);
    fx_close(f);
    assert_int_equal(jrn_truncate(f->dir, 1), KR_OK); /* back to the genesis record */
    assert_true(verify_report(f->dir).records == 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_create_open),
        T(test_signing_keys_guarded),
        T(test_create_after_died_init),
        T(test_open_errors),
        T(test_one_writer),
        T(test_append_one),
        T(test_one_flush_lone_append),
        T(test_optimistic_concurrency),
        T(test_occ_race),
        T(test_validation),
        T(test_system_stream_reserved),
        T(test_time),
        T(test_concurrent_appends),
        T(test_cursors),
        T(test_cursor_sees_new_records),
        T(test_checkpoints_and_proofs),
        T(test_reopen),
        T(test_rotate_key),
        T(test_rotate_under_load),
        T(test_rotate_after_orphan_key),
        T(test_map_full),
        T(test_close_in_flight),
        T(test_verify_while_writing),
        T(test_payload_changed_and_callbacks),
        T(test_tseq),
        T(test_tseq_concurrent),
        T(test_migrate_format1),
        T(test_skew_jump),
        T(test_migrate_stream_index),
        T(test_stream_links_long),
        T(test_strip_tenant),
        T(test_strip_filters),
        T(test_strip_resume),
        T(test_truncate_new_epoch),
        T(test_truncate_edges),
        T(test_truncate_crash),
        T(test_truncate_busy),
        T(test_epoch_record_checks),
        T(test_key_hook),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
