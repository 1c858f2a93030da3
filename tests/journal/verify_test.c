/*
 * verify_test.c: tests for journal/verify.c, the auditor's check of a journal.
 *
 * One journal is built once per run: FIX_RECORDS records from three tenants and
 * several streams, payloads from empty to KR_PAYLOAD_MAX, and a key rotation at
 * ROTATE_SEQ. Verification splits it into chunks of 2^KR_VERIFY_CHUNK_LOG2
 * records: two full ones and a partial last one. The clean journal is checked
 * first (both modes, exact counts and root), so a broken fixture cannot make a
 * tamper case pass vacuously.
 *
 * Every case copies the journal, damages the copy as an attacker or a failing
 * disk would (in LMDB through tests/test_util.h, or in the files), and checks
 * that jrn_verify fails with the exact error, the exact first bad seq and a
 * sensible text. Damage goes in the first chunk, on both sides of the first
 * chunk boundary and in the last, partial chunk. Edits that claim to flip one
 * bit are checked to change exactly one bit of the stored bytes.
 *
 * Modes. Fast mode runs at every position. Full mode checks a signature per
 * record up to the damage: about a second for damage past the first chunk on
 * two cores, against milliseconds in fast mode. So full mode runs at the
 * first-chunk position of every case, and past it where full mode decides
 * something fast mode does not (signatures, keys, the stream index, the order
 * of its checks on a chunk's first record) at one position per case, rotating
 * among the cases; the chunk and tree logic it shares with fast mode is covered
 * everywhere by fast mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <lmdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal.h"
#include "journal_internal.h"
#include "kr_limits.h"
#include "merkle.h"
#include "note.h"
#include "record.h"
#include "test_util.h"
#include "verify.h"

#define CHUNK       (UINT64_C(1) << KR_VERIFY_CHUNK_LOG2)
#define FIX_RECORDS (2 * CHUNK + 7232) /* 40,000: two full chunks and a partial one */
#define ROTATE_SEQ  5000u              /* the journal.key_added record */
/* Events per jrn_append while building the fixture. */
#define BUILD_APPEND_EVENTS 250
#define PATH_CAP            1024

/* Where damage goes: in the first chunk (signed by key 1, before the rotation),
 * the last record of the first chunk, the first of the second, and inside the
 * last, partial chunk. Every one holds a user record with a non-empty payload
 * and actor (checked when the fixture is built). */
#define POS_FIRST 4321u
#define POS_LAST  39321u
static const uint64_t positions[] = {POS_FIRST, CHUNK, CHUNK + 1, POS_LAST};
#define NPOS (sizeof positions / sizeof positions[0])

static const uint64_t tenants[] = {1, 2, 7};
static const char *const streams[] = {"acct-1", "acct-22", "inbox", "orders/2024", "x"};
static const char *const types[] = {"account.created", "note.added", "order.placed"};
static const char *const actors[] = {"u-1", "svc_billing", "admin@tenant"};
#define NTENANTS (sizeof tenants / sizeof tenants[0])
#define NSTREAMS (sizeof streams / sizeof streams[0])

/* The journal built once per run. */
static struct {
    char dir[PATH_CAP];
    uint64_t kept;             /* checkpoints in the checkpoints database */
    uint8_t root[KR_HASH_LEN]; /* jrn_root of the whole journal */
} fx;

/* ---- Scratch copies ---- */

/* Per test: a directory holding the copies it damages. */
struct scratch {
    char root[PATH_CAP];
    char copy[PATH_CAP];
    unsigned n;
};

static int scratch_setup(void **state)
{
    struct scratch *s = calloc(1, sizeof *s);
    assert_non_null(s);
    kr_test_tmpdir(s->root, sizeof s->root);
    *state = s;
    return 0;
}

static int scratch_teardown(void **state)
{
    struct scratch *s = *state;
    kr_test_rmrf(s->root);
    free(s);
    return 0;
}

/* A fresh copy of the fixture; the previous copy is removed. */
static const char *fresh_copy(struct scratch *s)
{
    if (s->n > 0)
        kr_test_rmrf(s->copy);
    int n = snprintf(s->copy, sizeof s->copy, "%s/copy-%u", s->root, ++s->n);
    assert_true(n > 0 && (size_t)n < sizeof s->copy);
    kr_test_copytree(fx.dir, s->copy);
    return s->copy;
}

/* ---- Direct LMDB access ---- */

struct db {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
};

static void db_open(struct db *d, const char *dir, const char *name)
{
    kr_test_env_open(dir, &d->env);
    kr_test_txn_db(d->env, name, &d->txn, &d->dbi);
}

static void db_commit(struct db *d)
{
    assert_int_equal(mdb_txn_commit(d->txn), 0);
    mdb_env_close(d->env);
}

/* The value under key in database `name`, in a malloc'd buffer; NULL if absent. */
static uint8_t *value_get(const char *dir, const char *name, const void *key, size_t klen,
                          size_t *len)
{
    struct db d;
    db_open(&d, dir, name);
    MDB_val k = {klen, (void *)key}, v;
    uint8_t *out = NULL;
    *len = 0;
    if (mdb_get(d.txn, d.dbi, &k, &v) == 0) {
        out = malloc(v.mv_size + 1);
        assert_non_null(out);
        memcpy(out, v.mv_data, v.mv_size);
        *len = v.mv_size;
    }
    mdb_txn_abort(d.txn);
    mdb_env_close(d.env);
    return out;
}

static void value_put(const char *dir, const char *name, const void *key, size_t klen,
                      const void *val, size_t len)
{
    struct db d;
    db_open(&d, dir, name);
    MDB_val k = {klen, (void *)key}, v = {len, (void *)val};
    assert_int_equal(mdb_put(d.txn, d.dbi, &k, &v, 0), 0);
    db_commit(&d);
}

static void value_del(const char *dir, const char *name, const void *key, size_t klen)
{
    struct db d;
    db_open(&d, dir, name);
    MDB_val k = {klen, (void *)key};
    assert_int_equal(mdb_del(d.txn, d.dbi, &k, NULL), 0);
    db_commit(&d);
}

static uint8_t *rec_get(const char *dir, uint64_t seq, size_t *len)
{
    uint8_t key[8];
    kr_test_be64(key, seq);
    uint8_t *v = value_get(dir, JRN_DB_EVENTS, key, 8, len);
    assert_non_null(v);
    return v;
}

static void rec_put(const char *dir, uint64_t seq, const void *val, size_t len)
{
    uint8_t key[8];
    kr_test_be64(key, seq);
    value_put(dir, JRN_DB_EVENTS, key, 8, val, len);
}

static void rec_del(const char *dir, uint64_t seq)
{
    uint8_t key[8];
    kr_test_be64(key, seq);
    value_del(dir, JRN_DB_EVENTS, key, 8);
}

static unsigned bits_differing(const uint8_t *a, const uint8_t *b, size_t len)
{
    unsigned n = 0;
    for (size_t i = 0; i < len; i++)
        n += (unsigned)__builtin_popcount((unsigned)(a[i] ^ b[i]));
    return n;
}

/* ---- Editing records ---- */

/* Changes a decoded record; may point its strings into `scratch`. */
typedef void (*rec_edit_fn)(struct jrn_record *r, char *scratch, void *arg);

/* Decodes record seq of dir, lets fn change it, re-encodes and stores it. When
 * one_bit, the stored bytes must differ from the old ones in exactly one bit. */
static void rec_edit(const char *dir, uint64_t seq, rec_edit_fn fn, void *arg, bool one_bit)
{
    size_t len, nlen;
    uint8_t *old = rec_get(dir, seq, &len);
    uint8_t *enc = malloc(KR_RECORD_MAX);
    char *scratch = malloc(KR_RECORD_MAX);
    assert_true(enc && scratch);
    struct jrn_record r;
    assert_int_equal(jrn_record_decode(old, len, &r), KR_OK);
    fn(&r, scratch, arg);
    assert_int_equal(jrn_record_encode(&r, enc, KR_RECORD_MAX, &nlen, NULL), KR_OK);
    if (one_bit) {
        assert_int_equal(nlen, len);
        assert_int_equal(bits_differing(old, enc, len), 1);
    }
    rec_put(dir, seq, enc, nlen);
    free(scratch);
    free(enc);
    free(old);
}

/* Flips one bit of a stored value in place, at byte offset off. */
static void value_flip(const char *dir, const char *name, const void *key, size_t klen, size_t off,
                       uint8_t mask)
{
    size_t len;
    uint8_t *v = value_get(dir, name, key, klen, &len);
    assert_non_null(v);
    assert_true(off < len);
    v[off] ^= mask;
    value_put(dir, name, key, klen, v, len);
    free(v);
}

static bool printable(char c)
{
    return c >= 0x21 && c <= 0x7e;
}

static bool type_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_';
}

/* Copies a string field to scratch with the first bit flip that keeps it valid
 * (so the record still decodes and only the signature or the tree can tell). */
static void flip_string(const char **s, size_t len, char *scratch, bool (*ok)(char))
{
    assert_true(len > 0);
    memcpy(scratch, *s, len);
    for (size_t i = 0; i < len; i++) {
        for (unsigned b = 0; b < 7; b++) {
            char c = (char)(scratch[i] ^ (1 << b));
            if (ok(c)) {
                scratch[i] = c;
                *s = scratch;
                return;
            }
        }
    }
    fail_msg("no bit of the string can flip and keep it valid");
}

enum field {
    F_SEQ,
    F_TIME_UP,   /* a clear bit set: later, so only the signature or tree can tell */
    F_TIME_DOWN, /* a set bit cleared: earlier than the record before */
    F_TENANT,
    F_STREAM,
    F_VERSION,
    F_TYPE,
    F_ACTOR,
    F_KEY_ID,
    F_COMMITMENT,
    F_PREV,
    F_SIG,
    F_PAYLOAD,
    F_TSEQ,
};

static void flip_field(struct jrn_record *r, char *scratch, void *arg)
{
    enum field f = *(const enum field *)arg;
    switch (f) {
    case F_SEQ:
        r->seq ^= 1;
        break;
    case F_TIME_UP:
        r->time_ns |= r->time_ns + 1; /* sets the lowest clear bit */
        break;
    case F_TIME_DOWN:
        assert_true(r->time_ns >> 40);
        r->time_ns ^= UINT64_C(1) << (63 - __builtin_clzll(r->time_ns));
        break;
    case F_TENANT:
        r->tenant ^= 1;
        break;
    case F_STREAM:
        flip_string(&r->stream, r->stream_len, scratch, printable);
        break;
    case F_VERSION:
        r->version ^= r->version == 1 ? 2 : 1; /* version 0 would not decode */
        break;
    case F_TYPE:
        flip_string(&r->type, r->type_len, scratch, type_char);
        break;
    case F_ACTOR:
        flip_string(&r->actor, r->actor_len, scratch, printable);
        break;
    case F_KEY_ID:
        r->key_id ^= 1;
        break;
    case F_COMMITMENT:
        r->commitment[7] ^= 0x10;
        break;
    case F_PREV:
        r->prev[31] ^= 0x01;
        break;
    case F_SIG:
        r->sig[40] ^= 0x08;
        break;
    case F_TSEQ:
        r->tseq ^= r->tseq == 1 ? 2 : 1; /* tseq 0 would not decode */
        break;
    case F_PAYLOAD:
        assert_true(!r->payload_stripped && r->payload_len > 0);
        memcpy(scratch, r->payload, r->payload_len);
        scratch[r->payload_len / 2] ^= 0x20;
        r->payload = (const uint8_t *)scratch;
        break;
    }
}

static void flip(const char *dir, uint64_t seq, enum field f)
{
    rec_edit(dir, seq, flip_field, &f, true);
}

/* ---- Verifying ---- */

struct expect {
    kr_err result; /* KR_OK: must verify */
    uint64_t seq;
    const char *what; /* must occur in the report's text */
};

static void verify_opts(const char *dir, const struct jrn_verify_options *o,
                        struct jrn_verify_report *r)
{
    assert_int_equal(jrn_verify(dir, o, r), KR_OK);
}

/* Runs one verification and checks the verdict against e. */
static struct jrn_verify_report check(const char *dir, bool fast, struct expect e,
                                      const char *label)
{
    struct jrn_verify_options o = {.fast = fast};
    struct jrn_verify_report r;
    verify_opts(dir, &o, &r);
    bool ok = r.result == e.result && r.bad_seq == (e.result ? e.seq : 0) &&
              (e.result == KR_OK ? r.what[0] == '\0' : strstr(r.what, e.what) != NULL);
    if (!ok)
        print_error("%s, %s mode: want %s at seq %llu (%s), got %s at seq %llu: \"%s\"\n", label,
                    fast ? "fast" : "full", kr_errname(e.result), (unsigned long long)e.seq,
                    e.what ? e.what : "", kr_errname(r.result), (unsigned long long)r.bad_seq,
                    r.what);
    assert_true(ok);
    return r;
}

static struct expect ex(kr_err result, uint64_t seq, const char *what)
{
    return (struct expect){result, seq, what};
}

static const struct expect verifies = {KR_OK, 0, NULL};

/* Both modes expect the same. */
static void check_both(const char *dir, struct expect e, const char *label)
{
    (void)check(dir, false, e, label);
    (void)check(dir, true, e, label);
}

/* Which modes run (see the top comment). */
enum modes {
    FAST = 1,
    BOTH = 3,
};

/* Full mode at the first-chunk position, and at positions[late] if late > 0. */
static enum modes modes_at(size_t p, size_t late)
{
    return p == 0 || (late > 0 && p == late) ? BOTH : FAST;
}

static void check_modes(const char *dir, enum modes m, struct expect full, struct expect fast,
                        const char *label)
{
    if (m == BOTH)
        (void)check(dir, false, full, label);
    (void)check(dir, true, fast, label);
}

/* ---- Building the fixture ---- */

static size_t payload_len_for(uint64_t i)
{
    if (i % 101 == 7)
        return 0;
    if (i % 4999 == 11)
        return KR_PAYLOAD_MAX;
    if (i % 211 == 3)
        return 4096 + i % 1000;
    return 24 + (i * 37) % 400;
}

/* Event i of the fixture (deterministic); versions tracks every stream. */
static void make_event(uint64_t i, struct jrn_event *e, uint8_t **payload,
                       uint64_t versions[NTENANTS][NSTREAMS])
{
    size_t t = i % NTENANTS, s = (i / NTENANTS + i / 7) % NSTREAMS;
    size_t len = payload_len_for(i);
    uint8_t *p = len ? malloc(len) : NULL;
    char marker[32];
    int mlen = snprintf(marker, sizeof marker, "evt-%08llu:", (unsigned long long)i);
    for (size_t k = 0; k < len; k++)
        p[k] = k < (size_t)mlen ? (uint8_t)marker[k] : (uint8_t)(i * 131 + k * 7);
    memset(e, 0, sizeof *e);
    e->tenant = tenants[t];
    e->stream = streams[s];
    e->stream_len = strlen(streams[s]);
    e->type = types[i % 3];
    e->type_len = strlen(e->type);
    e->actor = actors[(i / 5) % 3];
    e->actor_len = i % 997 == 500 ? 0 : strlen(e->actor);
    e->expected_version = versions[t][s]++;
    e->payload = p;
    e->payload_len = len;
    *payload = p;
}

static uint64_t count_entries(const char *dir, const char *name)
{
    struct db d;
    MDB_stat st;
    db_open(&d, dir, name);
    assert_int_equal(mdb_stat(d.txn, d.dbi, &st), 0);
    mdb_txn_abort(d.txn);
    mdb_env_close(d.env);
    return st.ms_entries;
}

static int fixture_build(void **state)
{
    (void)state;
    static uint64_t versions[NTENANTS][NSTREAMS];
    static uint64_t tseqs[NTENANTS];
    static struct jrn_event ev[BUILD_APPEND_EVENTS];
    static uint8_t *payloads[BUILD_APPEND_EVENTS];
    struct jrn_options o = {.dir = fx.dir};
    struct jrn_info info;
    struct journal *j;

    assert_true(sodium_init() >= 0);
    kr_test_tmpdir(fx.dir, sizeof fx.dir);
    assert_int_equal(jrn_create(&o, &info), KR_OK);
    assert_int_equal(info.key_id, 1);
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    uint64_t next = 2, i = 0;
    while (next <= FIX_RECORDS) {
        if (next == ROTATE_SEQ) {
            assert_int_equal(jrn_rotate_key(j, &info), KR_OK);
            assert_int_equal(info.key_id, 2);
            assert_int_equal(info.size, ROTATE_SEQ);
            next++;
            continue;
        }
        uint64_t end = next < ROTATE_SEQ ? ROTATE_SEQ : FIX_RECORDS + 1;
        size_t n = end - next < BUILD_APPEND_EVENTS ? (size_t)(end - next) : BUILD_APPEND_EVENTS;
        for (size_t e = 0; e < n; e++)
            make_event(i++, &ev[e], &payloads[e], versions);
        assert_int_equal(jrn_append(j, ev, n), KR_OK);
        for (size_t e = 0; e < n; e++) {
            /* Each tenant's records are numbered 1, 2, 3, ... */
            size_t t = 0;
            while (tenants[t] != ev[e].tenant)
                t++;
            assert_int_equal(ev[e].tseq, ++tseqs[t]);
            assert_int_equal(ev[e].seq, next + e);
            assert_int_equal(ev[e].key_id, next + e < ROTATE_SEQ ? 1 : 2);
            free(payloads[e]);
        }
        next += n;
    }
    assert_int_equal(jrn_size(j), FIX_RECORDS);
    jrn_close(j);

    o.read_only = true;
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    assert_int_equal(jrn_root(j, FIX_RECORDS, fx.root), KR_OK);
    jrn_close(j);
    fx.kept = count_entries(fx.dir, JRN_DB_CHECKPOINTS);

    /* The damage positions hold what the cases need. */
    for (size_t p = 0; p < NPOS; p++) {
        size_t len;
        struct jrn_record r;
        uint8_t *v = rec_get(fx.dir, positions[p], &len);
        assert_int_equal(jrn_record_decode(v, len, &r), KR_OK);
        assert_true(r.tenant != 0 && r.payload_len > 0 && r.actor_len > 0);
        assert_int_equal(r.key_id, positions[p] < ROTATE_SEQ ? 1 : 2);
        free(v);
    }
    return 0;
}

static int fixture_teardown(void **state)
{
    (void)state;
    kr_test_rmrf(fx.dir);
    return 0;
}

/* ---- The clean journal ---- */

struct progress_seen {
    uint64_t last;  /* newest `done` */
    unsigned final; /* calls with done == total */
};

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress_seen *p = ctx;
    assert_int_equal(total, FIX_RECORDS);
    assert_true(done >= p->last && done <= total);
    p->last = done;
    p->final += done == total;
}

static void test_clean(void **state)
{
    (void)state;
    for (int fast = 0; fast <= 1; fast++) {
        struct progress_seen seen = {0, 0};
        struct jrn_verify_options o = {.fast = fast, .progress = progress, .progress_ctx = &seen};
        struct jrn_verify_report r;
        verify_opts(fx.dir, &o, &r);
        if (r.result != KR_OK)
            print_error("clean journal: %s at %llu: %s\n", kr_errname(r.result),
                        (unsigned long long)r.bad_seq, r.what);
        assert_int_equal(r.result, KR_OK);
        assert_int_equal(r.bad_seq, 0);
        assert_string_equal(r.what, "");
        assert_int_equal(r.records, FIX_RECORDS);
        assert_int_equal(r.keys, 2);
        assert_int_equal(r.stripped, 0);
        assert_int_equal(r.tenants, 1 + NTENANTS); /* the platform's too */
        /* The newest, every kept one, and DIR/checkpoint. */
        assert_true(fx.kept >= 4); /* one at least every 10,000 records */
        assert_int_equal(r.checkpoints, fx.kept + 2);
        assert_memory_equal(r.root, fx.root, KR_HASH_LEN);
        /* It ends at the total, once (the CLI ends its progress line then). */
        assert_int_equal(seen.last, FIX_RECORDS);
        assert_int_equal(seen.final, 1);
    }
    /* One thread, more threads than chunks, and the root key given
     * explicitly: the same verdict. */
    unsigned threads[] = {1, 5};
    for (size_t t = 0; t < 2; t++) {
        struct jrn_verify_options o = {.fast = true, .threads = threads[t], .have_root_key = true};
        struct jrn_verify_report r;
        assert_int_equal(kr_pubkey_load(fx.dir, 1, o.root_key), KR_OK);
        verify_opts(fx.dir, &o, &r);
        assert_int_equal(r.result, KR_OK);
        assert_memory_equal(r.root, fx.root, KR_HASH_LEN);
    }
}

/* ---- Flipped bits in records ---- */

static const char *const field_names[] = {
    [F_SEQ] = "seq",
    [F_TIME_UP] = "time (later)",
    [F_TIME_DOWN] = "time (earlier)",
    [F_TENANT] = "tenant",
    [F_STREAM] = "stream",
    [F_VERSION] = "version",
    [F_TYPE] = "type",
    [F_ACTOR] = "actor",
    [F_KEY_ID] = "key_id",
    [F_COMMITMENT] = "commitment",
    [F_PREV] = "prev",
    [F_SIG] = "signature",
    [F_PAYLOAD] = "payload",
    [F_TSEQ] = "tseq",
};

#define COMMITMENT_MISMATCH "payload does not match its commitment"
#define BAD_SIGNATURE       "signature does not verify"
#define LEAF_MISMATCH       "leaf hash differs from the stored tree"
#define PREV_MISMATCH       "prev does not match the previous record's leaf hash"

/* Flips one bit of field f of record seq in a fresh copy and verifies it. */
static void flip_case(struct scratch *s, enum field f, uint64_t seq, enum modes m,
                      struct expect full, struct expect fast)
{
    char label[96];
    const char *dir = fresh_copy(s);
    flip(dir, seq, f);
    snprintf(label, sizeof label, "%s flipped at seq %llu", field_names[f],
             (unsigned long long)seq);
    check_modes(dir, m, full, fast, label);
}

/* A check both modes make: the same verdict at every position. */
static void same_verdict_case(void **state, enum field f, const char *what, size_t late)
{
    for (size_t p = 0; p < NPOS; p++) {
        struct expect e = ex(KR_ECORRUPT, positions[p], what);
        flip_case(*state, f, positions[p], modes_at(p, late), e, e);
    }
}

/* A signed header field: full mode finds the signature bad, fast mode finds the
 * leaf no longer matching the stored tree, both at that seq. */
static void signed_field_case(void **state, enum field f, const char *full_what, size_t late)
{
    for (size_t p = 0; p < NPOS; p++)
        flip_case(*state, f, positions[p], modes_at(p, late),
                  ex(KR_EBADSIG, positions[p], full_what),
                  ex(KR_ECORRUPT, positions[p], LEAF_MISMATCH));
}

/* Payload and commitment: both modes recompute the commitment. */
static void test_flip_payload(void **state)
{
    same_verdict_case(state, F_PAYLOAD, COMMITMENT_MISMATCH, 0);
    struct expect e = ex(KR_ECORRUPT, FIX_RECORDS, COMMITMENT_MISMATCH);
    flip_case(*state, F_PAYLOAD, FIX_RECORDS, FAST, e, e);
}

static void test_flip_commitment(void **state)
{
    same_verdict_case(state, F_COMMITMENT, COMMITMENT_MISMATCH, 0);
}

static void test_flip_tenant(void **state)
{
    signed_field_case(state, F_TENANT, BAD_SIGNATURE, 1);
}

static void test_flip_stream(void **state)
{
    signed_field_case(state, F_STREAM, BAD_SIGNATURE, 2);
}

static void test_flip_version(void **state)
{
    signed_field_case(state, F_VERSION, BAD_SIGNATURE, 0);
}

static void test_flip_type(void **state)
{
    signed_field_case(state, F_TYPE, BAD_SIGNATURE, 0);
}

static void test_flip_actor(void **state)
{
    signed_field_case(state, F_ACTOR, BAD_SIGNATURE, 0);
}

static void test_flip_time(void **state)
{
    signed_field_case(state, F_TIME_UP, BAD_SIGNATURE, 0);
    /* Earlier than the record before: caught before the signature, in both
     * modes, except on a chunk's first record, whose predecessor another
     * worker reads: there the signature (full) or the tree (fast) tells. */
    for (size_t p = 0; p < NPOS; p++) {
        uint64_t seq = positions[p];
        if (seq == CHUNK + 1) {
            flip_case(*state, F_TIME_DOWN, seq, FAST, ex(KR_EBADSIG, seq, BAD_SIGNATURE),
                      ex(KR_ECORRUPT, seq, LEAF_MISMATCH));
        } else {
            struct expect e = ex(KR_ECORRUPT, seq, "time goes backwards");
            flip_case(*state, F_TIME_DOWN, seq, modes_at(p, 0), e, e);
        }
    }
}

/* Key 1 -> 0, key 2 -> 3: keys the journal never had. */
static void test_flip_key_id(void **state)
{
    signed_field_case(state, F_KEY_ID, "signed by unknown key", 2);
}

static void test_flip_signature(void **state)
{
    signed_field_case(state, F_SIG, BAD_SIGNATURE, 3);
    flip_case(*state, F_SIG, FIX_RECORDS, FAST, ex(KR_EBADSIG, FIX_RECORDS, BAD_SIGNATURE),
              ex(KR_ECORRUPT, FIX_RECORDS, LEAF_MISMATCH));
}

/* seq is not signed (the writer assigns it), but a record must state its own. */
static void test_flip_seq(void **state)
{
    same_verdict_case(state, F_SEQ, "says seq", 0);
}

/* tseq is not signed (the writer assigns it) but the leaf covers it; full mode
 * first finds the tenants index holding another number. */
static void test_flip_tseq(void **state)
{
    for (size_t p = 0; p < NPOS; p++)
        flip_case(*state, F_TSEQ, positions[p], modes_at(p, 1),
                  ex(KR_ECORRUPT, positions[p], "tenant index holds tseq"),
                  ex(KR_ECORRUPT, positions[p], LEAF_MISMATCH));
}

/* The format field (2 -> 3): the record no longer decodes. */
static void test_flip_format(void **state)
{
    for (size_t p = 0; p < NPOS; p++) {
        const char *dir = fresh_copy(*state);
        uint8_t key[8];
        size_t len;
        kr_test_be64(key, positions[p]);
        uint8_t *v = rec_get(dir, positions[p], &len);
        /* fixarray(2), fixarray(13), format 2 */
        assert_true(v[0] == 0x92 && v[1] == 0x9d && v[2] == JRN_FORMAT);
        free(v);
        value_flip(dir, JRN_DB_EVENTS, key, 8, 2, 0x01);
        struct expect e = ex(KR_ECORRUPT, positions[p], "does not decode");
        check_modes(dir, modes_at(p, 0), e, e, "format flipped");
    }
}

/* prev is not signed either; the chain link catches it. On a chunk's first
 * record the link is checked after the chunks, and the record's leaf no longer
 * matching the stored tree is found first. */
static void test_flip_prev(void **state)
{
    for (size_t p = 0; p < NPOS; p++) {
        uint64_t seq = positions[p];
        struct expect e = ex(KR_ECORRUPT, seq, seq == CHUNK + 1 ? LEAF_MISMATCH : PREV_MISMATCH);
        flip_case(*state, F_PREV, seq, modes_at(p, 2), e, e);
    }
    struct expect e = ex(KR_ECORRUPT, FIX_RECORDS, PREV_MISMATCH);
    flip_case(*state, F_PREV, FIX_RECORDS, FAST, e, e);
}

/* ---- Records moved to another tenant or stream ---- */

struct move {
    uint64_t tenant;
    const char *stream;
};

static void move_fn(struct jrn_record *r, char *scratch, void *arg)
{
    const struct move *m = arg;
    (void)scratch;
    r->tenant = m->tenant;
    r->stream = m->stream;
    r->stream_len = strlen(m->stream);
}

/* Another tenant of the fixture, or another stream of the same tenant. */
static struct move move_for(const char *dir, uint64_t seq, bool tenant)
{
    size_t len;
    struct jrn_record r;
    uint8_t *v = rec_get(dir, seq, &len);
    assert_int_equal(jrn_record_decode(v, len, &r), KR_OK);
    struct move m = {r.tenant, NULL};
    size_t si = 0;
    while (si < NSTREAMS && !(strlen(streams[si]) == r.stream_len &&
                              memcmp(streams[si], r.stream, r.stream_len) == 0))
        si++;
    assert_true(si < NSTREAMS);
    if (tenant) {
        m.tenant = r.tenant == tenants[0] ? tenants[1] : tenants[0];
        m.stream = streams[si];
    } else {
        m.stream = streams[(si + 1) % NSTREAMS];
    }
    free(v);
    return m;
}

static void move_case(void **state, bool tenant, size_t late)
{
    for (size_t p = 0; p < NPOS; p++) {
        uint64_t seq = positions[p];
        const char *dir = fresh_copy(*state);
        struct move m = move_for(dir, seq, tenant);
        rec_edit(dir, seq, move_fn, &m, false);
        check_modes(dir, modes_at(p, late), ex(KR_EBADSIG, seq, BAD_SIGNATURE),
                    ex(KR_ECORRUPT, seq, LEAF_MISMATCH), tenant ? "moved tenant" : "moved stream");
    }
}

static void test_moved_tenant(void **state)
{
    move_case(state, true, 1);
}

static void test_moved_stream(void **state)
{
    move_case(state, false, 0);
    /* Into the journal's own stream: fast mode, which checks no signature,
     * still refuses a key record the key history does not know. */
    const char *dir = fresh_copy(*state);
    struct move m = {0, JRN_SYSTEM_STREAM};
    rec_edit(dir, POS_FIRST, move_fn, &m, false);
    check_modes(dir, BOTH, ex(KR_EBADSIG, POS_FIRST, BAD_SIGNATURE),
                ex(KR_ECORRUPT, POS_FIRST, "missing from the key history"),
                "moved to the journal stream");
}

/* ---- Signatures by the wrong key ---- */

/* Signs the record with key k: a valid signature, by a key that may not sign
 * at this seq. */
static void resign_fn(struct jrn_record *r, char *scratch, void *arg)
{
    const struct kr_signing_key *k = arg;
    uint8_t msg[JRN_SIGN_INPUT_MAX];
    size_t mlen;
    (void)scratch;
    r->key_id = k->key_id;
    jrn_record_sign_input(r, msg, &mlen);
    assert_int_equal(crypto_sign_detached(r->sig, NULL, msg, mlen, k->sk), 0);
    assert_int_equal(crypto_sign_verify_detached(r->sig, msg, mlen, k->pk), 0);
}

static const char *resign(struct scratch *s, uint64_t seq, uint32_t key_id)
{
    const char *dir = fresh_copy(s);
    struct kr_signing_key k;
    assert_int_equal(kr_key_load(dir, key_id, &k), KR_OK); /* from journal-<id>.key */
    rec_edit(dir, seq, resign_fn, &k, false);
    kr_key_wipe(&k);
    return dir;
}

/* Key 1 was retired by the rotation at ROTATE_SEQ: it signs nothing after. */
static void test_retired_key(void **state)
{
    const struct {
        uint64_t seq;
        enum modes m;
    } at[] = {
        {ROTATE_SEQ + 1, BOTH}, {12345, FAST}, {CHUNK, FAST}, {CHUNK + 1, FAST}, {POS_LAST, BOTH}};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        const char *dir = resign(*state, at[i].seq, 1);
        check_modes(dir, at[i].m, ex(KR_EBADSIG, at[i].seq, "signed by key 1, retired at this seq"),
                    ex(KR_ECORRUPT, at[i].seq, LEAF_MISMATCH), "signed by the retired key");
    }
}

/* Key 2 signs nothing before the record that introduced it, nor that record. */
static void test_key_not_yet_valid(void **state)
{
    const char *dir = resign(*state, POS_FIRST, 2);
    check_modes(dir, BOTH, ex(KR_EBADSIG, POS_FIRST, "signed by key 2, not yet valid"),
                ex(KR_ECORRUPT, POS_FIRST, LEAF_MISMATCH), "signed by a later key");
    dir = resign(*state, ROTATE_SEQ, 2);
    check_both(dir, ex(KR_EBADSIG, ROTATE_SEQ, "key change not signed by the key it replaces"),
               "key change signed by the new key");
}

/* ---- Missing, reordered and misplaced records ---- */

static void test_missing_record(void **state)
{
    for (size_t p = 0; p < NPOS; p++) {
        const char *dir = fresh_copy(*state);
        rec_del(dir, positions[p]);
        struct expect e = ex(KR_ECORRUPT, positions[p], "record is missing");
        check_modes(dir, modes_at(p, 0), e, e, "deleted");
    }
}

static void swap_values(const char *dir, uint64_t a, uint64_t b)
{
    size_t alen, blen;
    uint8_t *va = rec_get(dir, a, &alen), *vb = rec_get(dir, b, &blen);
    rec_put(dir, a, vb, blen);
    rec_put(dir, b, va, alen);
    free(va);
    free(vb);
}

static void test_swapped_records(void **state)
{
    const uint64_t at[] = {POS_FIRST, CHUNK, CHUNK + 1, POS_LAST, FIX_RECORDS - 1};
    for (size_t p = 0; p < sizeof at / sizeof at[0]; p++) {
        const char *dir = fresh_copy(*state);
        swap_values(dir, at[p], at[p] + 1);
        struct expect e = ex(KR_ECORRUPT, at[p], "says seq");
        check_modes(dir, modes_at(p, 0), e, e, "swapped");
    }
}

static void set_seq_fn(struct jrn_record *r, char *scratch, void *arg)
{
    (void)scratch;
    r->seq = *(const uint64_t *)arg;
}

/* Records k and k + 1 exchanged and renumbered, each stating its new seq. */
static void swap_renumbered(const char *dir, uint64_t k)
{
    uint64_t k1 = k + 1;
    swap_values(dir, k, k1);
    rec_edit(dir, k, set_seq_fn, &k, false);
    rec_edit(dir, k1, set_seq_fn, &k1, false);
}

/* The chain breaks at the first. On a chunk's first record, the stream index
 * (full) or the tree (fast) notices first. */
static void test_reordered_renumbered(void **state)
{
    for (size_t p = 0; p < NPOS; p++) {
        uint64_t k = positions[p];
        const char *dir = fresh_copy(*state);
        swap_renumbered(dir, k);
        if (k == CHUNK + 1) {
            check_modes(dir, modes_at(p, 2), ex(KR_ECORRUPT, k, "stream index"),
                        ex(KR_ECORRUPT, k, LEAF_MISMATCH), "reordered");
        } else {
            struct expect e = ex(KR_ECORRUPT, k, PREV_MISMATCH);
            check_modes(dir, modes_at(p, 2), e, e, "reordered");
        }
    }
}

/* A record intact, byte for byte, but stored under another seq. */
static void test_record_under_wrong_seq(void **state)
{
    const uint64_t at[] = {POS_FIRST, CHUNK, POS_LAST};
    for (size_t p = 0; p < sizeof at / sizeof at[0]; p++) {
        const char *dir = fresh_copy(*state);
        size_t len;
        uint8_t *v = rec_get(dir, at[p], &len);
        rec_put(dir, at[p] + 1, v, len); /* over the next record */
        free(v);
        struct expect e = ex(KR_ECORRUPT, at[p] + 1, "says seq");
        check_modes(dir, modes_at(p, 0), e, e, "copied over the next");
    }
    /* Moved past the end: its own place is now empty. */
    const char *dir = fresh_copy(*state);
    size_t len;
    uint8_t *v = rec_get(dir, CHUNK, &len);
    rec_del(dir, CHUNK);
    rec_put(dir, FIX_RECORDS + 1, v, len);
    struct expect e = ex(KR_ECORRUPT, CHUNK, "record is missing");
    check_modes(dir, FAST, e, e, "moved past the end");
    /* Copied past the end: an extra record, which the tree and checkpoints lack. */
    dir = fresh_copy(*state);
    rec_put(dir, FIX_RECORDS + 1, v, len);
    e = ex(KR_ECORRUPT, FIX_RECORDS + 1, "says seq");
    check_modes(dir, FAST, e, e, "copied past the end");
    free(v);
}

/* Random bytes, nothing, a byte short and a byte long. */
static void test_garbage_value(void **state)
{
    uint8_t junk[200];
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < sizeof junk; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        junk[i] = (uint8_t)x;
    }
    struct jrn_record r;
    assert_int_not_equal(jrn_record_decode(junk, sizeof junk, &r), KR_OK);
    for (size_t p = 0; p < NPOS; p++) {
        const char *dir = fresh_copy(*state);
        rec_put(dir, positions[p], junk, sizeof junk);
        struct expect e = ex(KR_ECORRUPT, positions[p], "does not decode");
        check_modes(dir, modes_at(p, 0), e, e, "random bytes");
    }
    const char *dir = fresh_copy(*state);
    rec_put(dir, CHUNK + 1, "", 0);
    struct expect e = ex(KR_ECORRUPT, CHUNK + 1, "does not decode");
    check_modes(dir, FAST, e, e, "empty value");

    size_t len;
    dir = fresh_copy(*state);
    uint8_t *v = rec_get(dir, POS_LAST, &len);
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, v, len);
    longer[len] = 0xc0;
    rec_put(dir, POS_LAST, v, len - 1);
    e = ex(KR_ECORRUPT, POS_LAST, "does not decode");
    check_modes(dir, FAST, e, e, "a byte short");
    dir = fresh_copy(*state);
    rec_put(dir, POS_LAST, longer, len + 1);
    check_modes(dir, FAST, e, e, "a trailing byte");
    free(longer);
    free(v);
}

/* ---- The stored Merkle tree ---- */

static void node_flip(const char *dir, unsigned level, uint64_t index)
{
    uint8_t key[8];
    kr_test_be64(key, mrk_postorder(level, index));
    value_flip(dir, JRN_DB_TREE, key, 8, 13, 0x40);
}

static void test_tree_leaf_node(void **state)
{
    for (size_t p = 0; p < NPOS; p++) {
        const char *dir = fresh_copy(*state);
        node_flip(dir, 0, positions[p] - 1);
        struct expect e = ex(KR_ECORRUPT, positions[p], LEAF_MISMATCH);
        check_modes(dir, modes_at(p, 0), e, e, "leaf node flipped");
    }
}

/* A node is checked when the record completing it is hashed: bad_seq is the
 * last record under it, whether it lies inside a chunk or above them. */
static void test_tree_upper_node(void **state)
{
    const struct {
        unsigned level;
        uint64_t index;
    } nodes[] = {
        {3, (POS_FIRST - 1) >> 3},     /* inside the first chunk */
        {KR_VERIFY_CHUNK_LOG2, 0},     /* the first chunk's root */
        {KR_VERIFY_CHUNK_LOG2, 1},     /* the second chunk's root */
        {KR_VERIFY_CHUNK_LOG2 + 1, 0}, /* above the chunks */
        {10, (POS_LAST - 1) >> 10},    /* inside the partial chunk */
    };
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        const char *dir = fresh_copy(*state);
        node_flip(dir, nodes[i].level, nodes[i].index);
        char what[64];
        snprintf(what, sizeof what, "stored Merkle node (level %u, index %llu) differs",
                 nodes[i].level, (unsigned long long)nodes[i].index);
        uint64_t last = (nodes[i].index + 1) << nodes[i].level;
        assert_true(last <= FIX_RECORDS);
        struct expect e = ex(KR_ECORRUPT, last, what);
        check_modes(dir, i == 0 ? BOTH : FAST, e, e, "tree node flipped");
    }
    /* A node missing. */
    const char *dir = fresh_copy(*state);
    uint8_t key[8];
    kr_test_be64(key, mrk_postorder(2, CHUNK / 4));
    value_del(dir, JRN_DB_TREE, key, 8);
    struct expect e = ex(KR_ECORRUPT, CHUNK + 4, "lacks node (level 2");
    check_modes(dir, FAST, e, e, "tree node deleted");
}

struct tree_put {
    MDB_txn *txn;
    MDB_dbi dbi;
};

static void tree_put(void *ctx, unsigned level, uint64_t index, const uint8_t hash[KR_HASH_LEN])
{
    struct tree_put *t = ctx;
    uint8_t key[8];
    kr_test_be64(key, mrk_postorder(level, index));
    MDB_val k = {8, key}, v = {KR_HASH_LEN, (void *)hash};
    assert_int_equal(mdb_put(t->txn, t->dbi, &k, &v, 0), 0);
}

#define NOTE_CAP (KR_NOTE_MAX + 1)

/* Re-signs a checkpoint note for the tree now stored, with the key (of two)
 * that signed it. */
static size_t forge_note(const char *dir, MDB_txn *txn, MDB_dbi tree,
                         const struct kr_signing_key keys[2], struct kr_note_key nk[2],
                         const void *note, size_t len, char out[NOTE_CAP])
{
    struct kr_checkpoint cp;
    uint32_t key_id = 0;
    (void)dir;
    (void)tree;
    const char *nl = memchr(note, '\n', len);
    assert_non_null(nl);
    for (int i = 0; i < 2; i++)
        snprintf(nk[i].name, sizeof nk[i].name, "%.*s", (int)(nl - (const char *)note),
                 (const char *)note);
    assert_int_equal(kr_checkpoint_open(note, len, nk, 2, &cp, &key_id), KR_OK);
    static struct journal j; /* only its environment and tree handle are read */
    j.env = mdb_txn_env(txn);
    j.db_tree = tree;
    struct jrn_tree_ctx tc = {&j, txn};
    assert_int_equal(mrk_root(jrn_tree_node, &tc, cp.size, cp.root), KR_OK);
    const struct kr_signing_key *k = &keys[key_id - 1];
    size_t n;
    assert_int_equal(kr_checkpoint_sign(&cp, cp.origin, k->pk, k->sk, out, NOTE_CAP, &n), KR_OK);
    return n;
}

/* Recomputes the whole stored tree from the (damaged) records, as an attacker
 * without the signing key can: then only the chain, the signatures and the
 * checkpoints are left to tell. */
static void tree_rebuild(const char *dir)
{
    struct db d;
    struct tree_put t;
    MDB_dbi events;
    MDB_cursor *c;
    MDB_val k, v;
    struct mrk_frontier fr;
    db_open(&d, dir, JRN_DB_TREE);
    t.txn = d.txn;
    t.dbi = d.dbi;
    assert_int_equal(mdb_drop(d.txn, d.dbi, 0), 0);
    assert_int_equal(mdb_dbi_open(d.txn, JRN_DB_EVENTS, 0, &events), 0);
    assert_int_equal(mdb_cursor_open(d.txn, events, &c), 0);
    mrk_frontier_init(&fr);
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct jrn_record r;
        uint8_t leaf[KR_HASH_LEN];
        assert_int_equal(jrn_record_decode(v.mv_data, v.mv_size, &r), KR_OK);
        jrn_record_leaf_hash(&r, leaf);
        mrk_frontier_append(&fr, leaf, tree_put, &t);
    }
    mdb_cursor_close(c);
    db_commit(&d);
}

/* With the tree rewritten to fit, the chain links must still name the first
 * bad seq, on the boundary between chunks too. */
static void test_tree_rebuilt(void **state)
{
    for (size_t p = 0; p < NPOS; p++) {
        const char *dir = fresh_copy(*state);
        flip(dir, positions[p], F_PREV);
        tree_rebuild(dir);
        struct expect e = ex(KR_ECORRUPT, positions[p], PREV_MISMATCH);
        check_modes(dir, modes_at(p, 2), e, e, "prev flipped, tree rebuilt");
    }
    /* A signed field: fast mode, which checks no signatures, finds the
     * per-tenant numbers broken (before the next record's link). */
    const uint64_t at[] = {POS_FIRST, CHUNK, CHUNK + 1, FIX_RECORDS};
    for (size_t p = 0; p < sizeof at / sizeof at[0]; p++) {
        const char *dir = fresh_copy(*state);
        flip(dir, at[p], F_TENANT);
        tree_rebuild(dir);
        /* The record now breaks its new tenant's count (and the old one's). */
        struct expect fast = ex(KR_ECORRUPT, at[p], "tseq");
        check_modes(dir, modes_at(p, 0), ex(KR_EBADSIG, at[p], BAD_SIGNATURE), fast,
                    "tenant flipped, tree rebuilt");
    }
    /* Time going back across the chunk boundary. */
    const char *dir = fresh_copy(*state);
    flip(dir, CHUNK + 1, F_TIME_DOWN);
    tree_rebuild(dir);
    check_modes(dir, FAST, ex(KR_EBADSIG, CHUNK + 1, BAD_SIGNATURE),
                ex(KR_ECORRUPT, CHUNK + 1, "time goes backwards"), "time back, tree rebuilt");
    /* The first two records of a chunk exchanged and renumbered: the first no
     * longer links to the chunk before. */
    dir = fresh_copy(*state);
    swap_renumbered(dir, CHUNK + 1);
    tree_rebuild(dir);
    check_modes(dir, FAST, ex(KR_ECORRUPT, CHUNK + 1, "stream index"),
                ex(KR_ECORRUPT, CHUNK + 1, PREV_MISMATCH), "reordered, tree rebuilt");
}

/* ---- Checkpoints ---- */

static size_t note_copy(uint8_t *v, size_t len, char note[NOTE_CAP])
{
    assert_non_null(v);
    assert_true(len < NOTE_CAP);
    memcpy(note, v, len);
    note[len] = '\0';
    free(v);
    return len;
}

static size_t meta_note_get(const char *dir, char note[NOTE_CAP])
{
    size_t len;
    uint8_t *v =
        value_get(dir, JRN_DB_META, JRN_META_CHECKPOINT, strlen(JRN_META_CHECKPOINT), &len);
    return note_copy(v, len, note);
}

static void meta_note_put(const char *dir, const char *note, size_t len)
{
    value_put(dir, JRN_DB_META, JRN_META_CHECKPOINT, strlen(JRN_META_CHECKPOINT), note, len);
}

static size_t kept_note_get(const char *dir, uint64_t size, char note[NOTE_CAP])
{
    uint8_t key[8];
    size_t len;
    kr_test_be64(key, size);
    uint8_t *v = value_get(dir, JRN_DB_CHECKPOINTS, key, 8, &len);
    return note_copy(v, len, note);
}

static void kept_note_put(const char *dir, uint64_t size, const char *note, size_t len)
{
    uint8_t key[8];
    kr_test_be64(key, size);
    value_put(dir, JRN_DB_CHECKPOINTS, key, 8, note, len);
}

#define KEPT_MAX 64

/* The sizes of the kept checkpoints, ascending. */
static size_t kept_sizes(const char *dir, uint64_t out[KEPT_MAX])
{
    struct db d;
    MDB_cursor *c;
    MDB_val k, v;
    size_t n = 0;
    db_open(&d, dir, JRN_DB_CHECKPOINTS);
    assert_int_equal(mdb_cursor_open(d.txn, d.dbi, &c), 0);
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        assert_int_equal(k.mv_size, 8);
        assert_true(n < KEPT_MAX);
        out[n++] = kr_get_be64(k.mv_data);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(d.txn);
    mdb_env_close(d.env);
    return n;
}

static size_t file_get(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    assert_true(n > 0 && (size_t)n < cap - 1);
    buf[n] = '\0';
    return (size_t)n;
}

static void file_put(const char *path, const char *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

static void checkpoint_path(const char *dir, char *out, size_t cap)
{
    assert_true((size_t)snprintf(out, cap, "%s/checkpoint", dir) < cap);
}

/* Flips bit 0 of the last digit of the size line: the size moves by one, the
 * signature no longer covers the body. */
static void note_flip_size(char *note)
{
    char *nl = strchr(note, '\n');
    assert_non_null(nl);
    char *end = strchr(nl + 1, '\n');
    assert_non_null(end);
    assert_true(end[-1] >= '0' && end[-1] <= '9');
    end[-1] ^= 1;
}

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Flips a bit of the signature line's base64, keeping it base64. */
static void note_flip_signature(char *note)
{
    char *sig = strstr(note, "\n\n");
    assert_non_null(sig);
    sig = strrchr(sig, ' ');
    assert_non_null(sig);
    for (char *c = sig + 10; *c != '\n'; c++) {
        if (b64_char(*c) && b64_char((char)(*c ^ 1))) {
            *c ^= 1;
            return;
        }
    }
    fail_msg("no base64 character to flip");
}

/* Opens a note with the journal's own keys. */
static void note_open(const char *dir, const char *note, size_t len, struct kr_checkpoint *cp)
{
    struct kr_note_key keys[2];
    const char *nl = strchr(note, '\n');
    assert_non_null(nl);
    for (uint32_t i = 0; i < 2; i++) {
        snprintf(keys[i].name, sizeof keys[i].name, "%.*s", (int)(nl - note), note);
        keys[i].key_id = i + 1;
        assert_int_equal(kr_pubkey_load(dir, i + 1, keys[i].pk), KR_OK);
    }
    uint32_t key_id;
    assert_int_equal(kr_checkpoint_open(note, len, keys, 2, cp, &key_id), KR_OK);
}

/* Signs cp with a key the journal never had, under the journal's key name. */
static size_t note_sign_stranger(const struct kr_checkpoint *cp, char note[NOTE_CAP])
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    size_t len;
    assert_int_equal(crypto_sign_keypair(pk, sk), 0);
    assert_int_equal(kr_checkpoint_sign(cp, cp->origin, pk, sk, note, NOTE_CAP, &len), KR_OK);
    sodium_memzero(sk, sizeof sk);
    return len;
}

/* Signs cp with the journal's own key 2, as a thief of it could. */
static size_t note_sign_key2(const char *dir, const struct kr_checkpoint *cp, char note[NOTE_CAP])
{
    struct kr_signing_key k;
    size_t len;
    assert_int_equal(kr_key_load(dir, 2, &k), KR_OK);
    assert_int_equal(kr_checkpoint_sign(cp, cp->origin, k.pk, k.sk, note, NOTE_CAP, &len), KR_OK);
    kr_key_wipe(&k);
    return len;
}

/* The newest checkpoint (meta) must be sound and cover every record; a bad
 * one is named by the journal's size. */
static void test_checkpoint_newest(void **state)
{
    char note[NOTE_CAP];
    const struct expect bad = ex(KR_EBADSIG, FIX_RECORDS, "newest checkpoint");

    const char *dir = fresh_copy(*state);
    size_t len = meta_note_get(dir, note);
    note_flip_size(note);
    meta_note_put(dir, note, len);
    check_modes(dir, BOTH, bad, bad, "newest checkpoint: size flipped");

    dir = fresh_copy(*state);
    len = meta_note_get(dir, note);
    note_flip_signature(note);
    meta_note_put(dir, note, len);
    check_modes(dir, FAST, bad, bad, "newest checkpoint: signature flipped");

    dir = fresh_copy(*state);
    struct kr_checkpoint cp;
    len = meta_note_get(dir, note);
    note_open(dir, note, len, &cp);
    assert_int_equal(cp.size, FIX_RECORDS);
    len = note_sign_stranger(&cp, note);
    meta_note_put(dir, note, len);
    check_modes(dir, FAST, bad, bad, "newest checkpoint: signed by a stranger");

    /* Validly signed (the signing key stolen) but with another root. */
    dir = fresh_copy(*state);
    cp.root[0] ^= 1;
    len = note_sign_key2(dir, &cp, note);
    meta_note_put(dir, note, len);
    struct expect e = ex(KR_ECORRUPT, FIX_RECORDS, "newest checkpoint: root at size 40000");
    check_modes(dir, FAST, e, e, "newest checkpoint: forged root");

    /* Gone, or an older one in its place. */
    dir = fresh_copy(*state);
    value_del(dir, JRN_DB_META, JRN_META_CHECKPOINT, strlen(JRN_META_CHECKPOINT));
    e = ex(KR_ECORRUPT, FIX_RECORDS, "no newest checkpoint");
    check_modes(dir, FAST, e, e, "newest checkpoint deleted");

    dir = fresh_copy(*state);
    uint64_t sizes[KEPT_MAX];
    size_t n = kept_sizes(dir, sizes);
    assert_true(n >= 2);
    len = kept_note_get(dir, sizes[n - 2], note);
    meta_note_put(dir, note, len);
    e = ex(KR_ECORRUPT, sizes[n - 2], "newest checkpoint covers");
    check_modes(dir, FAST, e, e, "newest checkpoint older");
}

/* Every kept checkpoint must be sound; a bad one is named by its size. */
static void test_checkpoint_kept(void **state)
{
    char note[NOTE_CAP], what[64];
    uint64_t sizes[KEPT_MAX];
    size_t n = kept_sizes(fx.dir, sizes);
    assert_int_equal(n, fx.kept);
    assert_true(n >= 3);
    const uint64_t first = sizes[0], mid = sizes[n / 2];
    assert_int_equal(first, 1); /* the genesis commit */
    snprintf(what, sizeof what, "checkpoint %llu", (unsigned long long)mid);

    const char *dir = fresh_copy(*state);
    size_t len = kept_note_get(dir, mid, note);
    note_flip_size(note);
    kept_note_put(dir, mid, note, len);
    struct expect e = ex(KR_EBADSIG, mid, what);
    check_modes(dir, FAST, e, e, "kept checkpoint: size flipped");

    dir = fresh_copy(*state);
    len = kept_note_get(dir, first, note);
    note_flip_signature(note);
    kept_note_put(dir, first, note, len);
    e = ex(KR_EBADSIG, first, "checkpoint 1:");
    check_modes(dir, FAST, e, e, "kept checkpoint: signature flipped");

    dir = fresh_copy(*state);
    struct kr_checkpoint cp;
    len = kept_note_get(dir, mid, note);
    note_open(dir, note, len, &cp);
    assert_int_equal(cp.size, mid);
    len = note_sign_stranger(&cp, note);
    kept_note_put(dir, mid, note, len);
    e = ex(KR_EBADSIG, mid, what);
    check_modes(dir, FAST, e, e, "kept checkpoint: signed by a stranger");

    dir = fresh_copy(*state);
    cp.root[31] ^= 0x80;
    len = note_sign_key2(dir, &cp, note);
    kept_note_put(dir, mid, note, len);
    e = ex(KR_ECORRUPT, mid, "does not match the records");
    check_modes(dir, FAST, e, e, "kept checkpoint: forged root");

    /* A sound checkpoint filed under another size. */
    dir = fresh_copy(*state);
    len = kept_note_get(dir, mid, note);
    kept_note_put(dir, mid + 1, note, len);
    e = ex(KR_ECORRUPT, mid + 1, "stored under the wrong size");
    check_modes(dir, FAST, e, e, "kept checkpoint: wrong size");
}

/* DIR/checkpoint, kept outside LMDB; a bad one is named by the journal's size. */
static void test_checkpoint_file(void **state)
{
    char path[PATH_CAP], note[NOTE_CAP], meta[NOTE_CAP];
    const char *dir = fresh_copy(*state);
    checkpoint_path(dir, path, sizeof path);
    size_t len = file_get(path, note, sizeof note);
    assert_int_equal(meta_note_get(dir, meta), len);
    assert_memory_equal(meta, note, len); /* written at close */
    note_flip_size(note);
    file_put(path, note, len);
    struct expect e = ex(KR_EBADSIG, FIX_RECORDS, "checkpoint file");
    check_modes(dir, FAST, e, e, "checkpoint file: size flipped");

    dir = fresh_copy(*state);
    checkpoint_path(dir, path, sizeof path);
    len = file_get(path, note, sizeof note);
    note_flip_signature(note);
    file_put(path, note, len);
    check_modes(dir, FAST, e, e, "checkpoint file: signature flipped");

    dir = fresh_copy(*state);
    checkpoint_path(dir, path, sizeof path);
    file_put(path, "kiroku\n", 7);
    e = ex(KR_ECORRUPT, FIX_RECORDS, "checkpoint file");
    check_modes(dir, FAST, e, e, "checkpoint file: garbage");

    /* An older sound checkpoint is no rollback: the journal may have grown
     * since the file was written (a crash skips the write at close). */
    dir = fresh_copy(*state);
    checkpoint_path(dir, path, sizeof path);
    uint64_t sizes[KEPT_MAX];
    size_t n = kept_sizes(dir, sizes);
    len = kept_note_get(dir, sizes[n / 2], note);
    file_put(path, note, len);
    check_modes(dir, FAST, verifies, verifies, "checkpoint file: older");

    /* Deleting the file would hide a rollback: its absence is a fault. */
    dir = fresh_copy(*state);
    checkpoint_path(dir, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    e = ex(KR_ECORRUPT, FIX_RECORDS, "missing");
    check_modes(dir, FAST, e, e, "checkpoint file: deleted");
}

/* Appends n events to the journal in dir, each payload the text tag. */
static void append_more(const char *dir, const char *tag, size_t n)
{
    struct jrn_options o = {.dir = dir};
    struct journal *j;
    struct jrn_event ev[16];
    assert_true(n <= 16);
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    for (size_t i = 0; i < n; i++) {
        memset(&ev[i], 0, sizeof ev[i]);
        ev[i].tenant = 2;
        ev[i].stream = "late";
        ev[i].stream_len = 4;
        ev[i].type = "note.added";
        ev[i].type_len = strlen(ev[i].type);
        ev[i].expected_version = i;
        ev[i].payload = (const uint8_t *)tag;
        ev[i].payload_len = strlen(tag);
    }
    assert_int_equal(jrn_append(j, ev, n), KR_OK);
    assert_int_equal(ev[n - 1].seq, FIX_RECORDS + n);
    jrn_close(j);
}

/* An old copy of the journal put back under the newer DIR/checkpoint. */
static void test_rollback(void **state)
{
    struct scratch *s = *state;
    char old[PATH_CAP], from[PATH_CAP], to[PATH_CAP], note[NOTE_CAP];
    const char *dir = fresh_copy(s);
    assert_true((size_t)snprintf(old, sizeof old, "%s/old", s->root) < sizeof old);
    kr_test_copytree(dir, old);
    append_more(dir, "after the copy", 10);
    /* Each alone is sound. */
    struct jrn_verify_report r = check(dir, true, verifies, "grown journal");
    assert_int_equal(r.records, FIX_RECORDS + 10);
    r = check(old, true, verifies, "old copy");
    assert_int_equal(r.records, FIX_RECORDS);

    checkpoint_path(dir, from, sizeof from);
    checkpoint_path(old, to, sizeof to);
    size_t len = file_get(from, note, sizeof note);
    file_put(to, note, len);
    struct expect e = ex(KR_ECORRUPT, FIX_RECORDS + 10, "checkpoint file: size 40010 beyond");
    check_modes(old, BOTH, e, e, "rolled back");
}

/* Two journals that share a prefix and then differ: the checkpoint file of one
 * does not fit the other, though both have the same size. */
static void test_fork(void **state)
{
    struct scratch *s = *state;
    char b[PATH_CAP], from[PATH_CAP], to[PATH_CAP], note[NOTE_CAP];
    const char *a = fresh_copy(s);
    assert_true((size_t)snprintf(b, sizeof b, "%s/fork-b", s->root) < sizeof b);
    kr_test_copytree(a, b);
    append_more(a, "branch a", 5);
    append_more(b, "branch b", 5);
    checkpoint_path(a, from, sizeof from);
    checkpoint_path(b, to, sizeof to);
    size_t len = file_get(from, note, sizeof note);
    file_put(to, note, len);
    struct expect e = ex(KR_ECORRUPT, FIX_RECORDS + 5, "checkpoint file: root at size 40005");
    check_modes(b, FAST, e, e, "forked");
}

/* The last records deleted. */
static void test_truncated(void **state)
{
    /* Only the records: the newest checkpoint covers more than is left. */
    const char *dir = fresh_copy(*state);
    struct db d;
    db_open(&d, dir, JRN_DB_EVENTS);
    for (uint64_t seq = FIX_RECORDS - 9; seq <= FIX_RECORDS; seq++) {
        uint8_t key[8];
        kr_test_be64(key, seq);
        MDB_val k = {8, key};
        assert_int_equal(mdb_del(d.txn, d.dbi, &k, NULL), 0);
    }
    db_commit(&d);
    struct expect e = ex(KR_ECORRUPT, FIX_RECORDS, "newest checkpoint: size 40000 beyond");
    check_modes(dir, FAST, e, e, "truncated");

    /* Consistently, back to the kept checkpoint before the newest, made the
     * newest again: only DIR/checkpoint tells. */
    dir = fresh_copy(*state);
    uint64_t sizes[KEPT_MAX];
    char note[NOTE_CAP];
    size_t n = kept_sizes(dir, sizes);
    assert_true(n >= 2 && sizes[n - 2] < FIX_RECORDS);
    uint64_t keep = sizes[n - 2];
    db_open(&d, dir, JRN_DB_EVENTS);
    for (uint64_t seq = keep + 1; seq <= FIX_RECORDS; seq++) {
        uint8_t key[8];
        kr_test_be64(key, seq);
        MDB_val k = {8, key};
        assert_int_equal(mdb_del(d.txn, d.dbi, &k, NULL), 0);
    }
    db_commit(&d);
    size_t len = kept_note_get(dir, keep, note);
    meta_note_put(dir, note, len);
    uint8_t key[8];
    kr_test_be64(key, sizes[n - 1]);
    value_del(dir, JRN_DB_CHECKPOINTS, key, 8);
    e = ex(KR_ECORRUPT, FIX_RECORDS, "checkpoint file: size 40000 beyond");
    check_modes(dir, FAST, e, e, "rolled back in place");
}

/* An auditor's own copy of key 1 is the only trust anchor. */
static void test_wrong_root_key(void **state)
{
    (void)state;
    for (int fast = 0; fast <= 1; fast++) {
        struct jrn_verify_options o = {.fast = fast, .have_root_key = true};
        struct jrn_verify_report r;
        randombytes_buf(o.root_key, sizeof o.root_key);
        verify_opts(fx.dir, &o, &r);
        assert_int_equal(r.result, KR_EBADSIG);
        assert_int_equal(r.bad_seq, 1);
        assert_non_null(strstr(r.what, "genesis key is not the trusted public key"));
        /* Nor is the second key an anchor. */
        assert_int_equal(kr_pubkey_load(fx.dir, 2, o.root_key), KR_OK);
        verify_opts(fx.dir, &o, &r);
        assert_int_equal(r.result, KR_EBADSIG);
        assert_int_equal(r.bad_seq, 1);
    }
}

/* ---- Erasure ---- */

static void strip_fn(struct jrn_record *r, char *scratch, void *arg)
{
    (void)scratch;
    (void)arg;
    r->payload = NULL;
    r->payload_len = 0;
    r->payload_stripped = true;
}

/* A payload stripped to nil, as erasure does, leaves the leaf as it was. */
static void test_stripped_payload(void **state)
{
    const char *dir = fresh_copy(*state);
    const uint64_t at[] = {POS_FIRST, CHUNK + 1, POS_LAST};
    for (size_t i = 0; i < 3; i++)
        rec_edit(dir, at[i], strip_fn, NULL, false);
    for (int fast = 0; fast <= 1; fast++) {
        struct jrn_verify_report r = check(dir, fast, verifies, "stripped");
        assert_int_equal(r.stripped, 3);
        assert_int_equal(r.records, FIX_RECORDS);
        assert_int_equal(r.keys, 2);
        assert_memory_equal(r.root, fx.root, KR_HASH_LEN);
    }
    /* A stripped record is still signed and chained like any other. */
    flip(dir, POS_FIRST, F_COMMITMENT);
    check_modes(dir, BOTH, ex(KR_EBADSIG, POS_FIRST, BAD_SIGNATURE),
                ex(KR_ECORRUPT, POS_FIRST, LEAF_MISMATCH), "stripped, then flipped");
}

/* ---- Per-tenant numbers ---- */

/* Adds d to the tseq of the tenant of record `from`: of that record alone, or
 * (all) of it and every later one of the tenant. */
struct tseq_edit {
    uint64_t tenant, from;
    int64_t d;
    bool all;
};

/* Rewrites the journal in dir as a holder of its signing keys could after
 * editing records' tseq: every prev link, the tenants index values (unless
 * keep_index), the whole tree and every checkpoint (meta, kept ones, the
 * file) recomputed and re-signed by the key that signed each. Then only the
 * per-tenant numbers themselves can tell. */
static void forge_rechain(const char *dir, bool keep_index, const struct tseq_edit *e)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi events, tenants_db, tree, meta, cps;
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, JRN_DB_EVENTS, &txn, &events);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_TENANTS, 0, &tenants_db), 0);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_TREE, 0, &tree), 0);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_META, 0, &meta), 0);
    assert_int_equal(mdb_dbi_open(txn, JRN_DB_CHECKPOINTS, 0, &cps), 0);
    assert_int_equal(mdb_drop(txn, tree, 0), 0);
    struct tree_put t = {txn, tree};
    struct mrk_frontier fr;
    mrk_frontier_init(&fr);
    uint8_t prev[KR_HASH_LEN] = {0};
    uint8_t *enc = malloc(KR_RECORD_MAX), *copy = malloc(KR_RECORD_MAX);
    assert_true(enc && copy);
    for (uint64_t seq = 1; seq <= FIX_RECORDS; seq++) {
        uint8_t key[8];
        kr_test_be64(key, seq);
        MDB_val k = {8, key}, v;
        assert_int_equal(mdb_get(txn, events, &k, &v), 0);
        memcpy(copy, v.mv_data, v.mv_size);
        struct jrn_record r;
        size_t len;
        assert_int_equal(jrn_record_decode(copy, v.mv_size, &r), KR_OK);
        memcpy(r.prev, prev, KR_HASH_LEN);
        if (e && r.tenant == e->tenant && seq >= e->from && (e->all || seq == e->from))
            r.tseq = (uint64_t)((int64_t)r.tseq + e->d);
        assert_int_equal(jrn_record_encode(&r, enc, KR_RECORD_MAX, &len, NULL), KR_OK);
        MDB_val nv = {len, enc};
        assert_int_equal(mdb_put(txn, events, &k, &nv, 0), 0);
        assert_int_equal(jrn_record_decode(enc, len, &r), KR_OK);
        jrn_record_leaf_hash(&r, prev);
        mrk_frontier_append(&fr, prev, tree_put, &t);
        if (!keep_index) {
            uint8_t tk[16], tv[8];
            kr_test_be64(tk, r.tenant);
            kr_test_be64(tk + 8, seq);
            kr_test_be64(tv, r.tseq);
            MDB_val ik = {16, tk}, iv = {8, tv};
            assert_int_equal(mdb_put(txn, tenants_db, &ik, &iv, 0), 0);
        }
    }
    /* Every checkpoint, re-signed by the key that signed it. */
    struct kr_signing_key keys[2];
    struct kr_note_key nk[2];
    for (uint32_t i = 0; i < 2; i++) {
        assert_int_equal(kr_key_load(dir, i + 1, &keys[i]), KR_OK);
        nk[i].key_id = i + 1;
        memcpy(nk[i].pk, keys[i].pk, KR_PUBKEY_LEN);
    }
    char note[NOTE_CAP];
    MDB_cursor *c;
    assert_int_equal(mdb_cursor_open(txn, cps, &c), 0);
    MDB_val k, v;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        size_t len = forge_note(dir, txn, tree, keys, nk, v.mv_data, v.mv_size, note);
        MDB_val nv = {len, note};
        assert_int_equal(mdb_cursor_put(c, &k, &nv, MDB_CURRENT), 0);
    }
    mdb_cursor_close(c);
    k = (MDB_val){strlen(JRN_META_CHECKPOINT), JRN_META_CHECKPOINT};
    assert_int_equal(mdb_get(txn, meta, &k, &v), 0);
    size_t len = forge_note(dir, txn, tree, keys, nk, v.mv_data, v.mv_size, note);
    MDB_val nv = {len, note};
    assert_int_equal(mdb_put(txn, meta, &k, &nv, 0), 0);
    char path[PATH_CAP];
    checkpoint_path(dir, path, sizeof path);
    file_put(path, note, len);
    kr_key_wipe(&keys[0]);
    kr_key_wipe(&keys[1]);
    free(enc);
    free(copy);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static uint64_t tenant_of(const char *dir, uint64_t seq)
{
    size_t len;
    struct jrn_record r;
    uint8_t *v = rec_get(dir, seq, &len);
    assert_int_equal(jrn_record_decode(v, len, &r), KR_OK);
    uint64_t t = r.tenant;
    free(v);
    return t;
}

/* A gap: from one record on, a tenant's numbers skip one. The chain, the
 * tree, the index and every checkpoint are re-signed to fit; the numbers
 * alone tell, in both modes, at the first renumbered record (inside a chunk,
 * at a chunk's first record, in the last chunk). */
static void test_tseq_gap(void **state)
{
    for (size_t p = 0; p < NPOS; p++) {
        const char *dir = fresh_copy(*state);
        struct tseq_edit ed = {tenant_of(dir, positions[p]), positions[p], +1, true};
        forge_rechain(dir, false, &ed);
        struct expect e = ex(KR_ECORRUPT, positions[p], "tseq");
        check_modes(dir, modes_at(p, 2), e, e, "tseq gap");
    }
}

/* A duplicate: one record takes the number of the tenant's record before. */
static void test_tseq_duplicate(void **state)
{
    for (size_t p = 0; p < NPOS; p++) {
        const char *dir = fresh_copy(*state);
        struct tseq_edit ed = {tenant_of(dir, positions[p]), positions[p], -1, false};
        forge_rechain(dir, false, &ed);
        struct expect e = ex(KR_ECORRUPT, positions[p], "tseq");
        check_modes(dir, modes_at(p, 3), e, e, "tseq duplicate");
    }
    /* And the index, left as it was, disagrees with the record first. */
    const char *dir = fresh_copy(*state);
    struct tseq_edit ed = {tenant_of(dir, POS_FIRST), POS_FIRST, -1, false};
    forge_rechain(dir, true, &ed);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, POS_FIRST, "tenant index holds tseq"),
                ex(KR_ECORRUPT, POS_FIRST, "repeats"), "tseq duplicate, index kept");
}

/* The tenants index holding a wrong count for a record: full mode compares
 * every entry with its record; fast mode reads no index. */
static void test_tseq_index_count(void **state)
{
    for (size_t p = 0; p < NPOS; p++) {
        const char *dir = fresh_copy(*state);
        uint8_t tk[16], tv[8];
        size_t len;
        kr_test_be64(tk, tenant_of(dir, positions[p]));
        kr_test_be64(tk + 8, positions[p]);
        uint8_t *v = value_get(dir, JRN_DB_TENANTS, tk, 16, &len);
        assert_non_null(v);
        assert_int_equal(len, 8);
        kr_test_be64(tv, kr_get_be64(v) + 1);
        free(v);
        value_put(dir, JRN_DB_TENANTS, tk, 16, tv, 8);
        check_modes(dir, p == 0 || p == 3 ? BOTH : FAST,
                    ex(KR_ECORRUPT, positions[p], "tenant index holds tseq"), verifies,
                    "tenant index count");
        /* An empty value (a format-1 entry) in a format-2 journal. */
        value_put(dir, JRN_DB_TENANTS, tk, 16, "", 0);
        if (p == 0)
            check_modes(dir, BOTH, ex(KR_ECORRUPT, positions[p], "holds no tseq"), verifies,
                        "tenant index without tseq");
    }
}

/* ---- Indexes and the key history ---- */

/* The heads key of record seq's stream into key (its length returned), and
 * the record's version into *version. */
static size_t head_key_of(const char *dir, uint64_t seq, uint8_t key[JRN_STREAM_KEY_MAX],
                          uint64_t *version)
{
    size_t len;
    struct jrn_record r;
    uint8_t *v = rec_get(dir, seq, &len);
    assert_int_equal(jrn_record_decode(v, len, &r), KR_OK);
    size_t plen = jrn_stream_prefix(key, r.tenant, r.stream, r.stream_len);
    *version = r.version;
    free(v);
    return plen;
}

/* The head (version, seq) under key; fails if absent. */
static void head_get(const char *dir, const uint8_t *key, size_t klen, uint64_t *version,
                     uint64_t *seq)
{
    size_t len;
    uint8_t *v = value_get(dir, JRN_DB_HEADS, key, klen, &len);
    assert_non_null(v);
    assert_int_equal(len, JRN_HEAD_LEN);
    *version = kr_get_be64(v);
    *seq = kr_get_be64(v + 8);
    free(v);
}

static void head_put(const char *dir, const uint8_t *key, size_t klen, uint64_t version,
                     uint64_t seq)
{
    uint8_t v[JRN_HEAD_LEN];
    kr_test_be64(v, version);
    kr_test_be64(v + 8, seq);
    value_put(dir, JRN_DB_HEADS, key, klen, v, sizeof v);
}

static void link_get(const char *dir, uint64_t seq, uint64_t *prev, uint64_t *jump)
{
    uint8_t k[8];
    size_t len;
    kr_test_be64(k, seq);
    uint8_t *v = value_get(dir, JRN_DB_LINKS, k, 8, &len);
    assert_non_null(v);
    assert_int_equal(len, JRN_LINK_LEN);
    *prev = kr_get_be64(v);
    *jump = kr_get_be64(v + 8);
    free(v);
}

static void link_put(const char *dir, uint64_t seq, uint64_t prev, uint64_t jump)
{
    uint8_t k[8], v[JRN_LINK_LEN];
    kr_test_be64(k, seq);
    kr_test_be64(v, prev);
    kr_test_be64(v + 8, jump);
    value_put(dir, JRN_DB_LINKS, k, 8, v, sizeof v);
}

/* The seq of the first record of record seq's stream, through the journal. */
static uint64_t stream_first_seq(const char *dir, uint64_t seq)
{
    struct jrn_options o = {.dir = dir, .read_only = true};
    struct journal *j;
    struct jrn_recbuf b;
    struct jrn_cursor *c;
    struct jrn_record r;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    assert_int_equal(jrn_read(j, seq, &b), KR_OK);
    struct jrn_query q = {.kind = JRN_Q_STREAM,
                          .tenant = b.rec.tenant,
                          .stream = b.rec.stream,
                          .stream_len = b.rec.stream_len};
    assert_int_equal(jrn_cursor_new(j, &q, &c), KR_OK);
    assert_int_equal(jrn_cursor_next(c, &r), KR_OK);
    uint64_t first = r.seq;
    jrn_cursor_free(c);
    jrn_recbuf_fini(&b);
    jrn_close(j);
    return first;
}

/* Reads the stream of record seq to its end: its error (KR_ENOTFOUND at a
 * clean end). A damaged index must end it with KR_ECORRUPT, never hand out a
 * record of another stream or tenant. */
static kr_err read_stream(const char *dir, uint64_t tenant, const char *stream, size_t len)
{
    struct jrn_options o = {.dir = dir, .read_only = true};
    struct journal *j;
    struct jrn_cursor *c;
    struct jrn_record r;
    kr_err err;
    uint64_t n = 0;
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    struct jrn_query q = {
        .kind = JRN_Q_STREAM, .tenant = tenant, .stream = stream, .stream_len = len};
    assert_int_equal(jrn_cursor_new(j, &q, &c), KR_OK);
    while ((err = jrn_cursor_next(c, &r)) == KR_OK && n < FIX_RECORDS) {
        assert_true(r.tenant == tenant && r.stream_len == len &&
                    memcmp(r.stream, stream, len) == 0);
        assert_true(r.version == ++n);
    }
    jrn_cursor_free(c);
    jrn_close(j);
    return err;
}

/* Index entries that name records they should not: a reader must refuse them
 * (one tenant's record must never come back to another tenant's cursor, and a
 * version of 2^64-1 must not wrap a cursor around), and full verification
 * finds them. */
static void test_index_extra_entries(void **state)
{
    const char *dir = fresh_copy(*state);
    size_t len;
    struct jrn_record r;
    uint8_t *v = rec_get(dir, POS_FIRST, &len);
    assert_int_equal(jrn_record_decode(v, len, &r), KR_OK);
    uint64_t other = r.tenant == 1 ? 2 : 1;
    uint8_t tkey[16];
    kr_test_be64(tkey, other);
    kr_test_be64(tkey + 8, POS_FIRST);
    value_put(dir, JRN_DB_TENANTS, tkey, sizeof tkey, "", 0);

    struct jrn_options o = {.dir = dir, .read_only = true};
    struct journal *j;
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    struct jrn_query q = {.kind = JRN_Q_TENANT, .tenant = other, .from = POS_FIRST};
    struct jrn_cursor *c;
    struct jrn_record got;
    assert_int_equal(jrn_cursor_new(j, &q, &c), KR_OK);
    assert_int_equal(jrn_cursor_next(c, &got), KR_ECORRUPT);
    jrn_cursor_free(c);
    jrn_close(j);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, FIX_RECORDS, "tenant index holds"), verifies,
                "extra tenant index entry");

    /* The head of a real stream at version 2^64-1. */
    dir = fresh_copy(*state);
    uint8_t skey[JRN_STREAM_KEY_MAX];
    uint64_t version;
    size_t klen = head_key_of(dir, POS_FIRST, skey, &version);
    uint64_t first = stream_first_seq(dir, POS_FIRST);
    head_put(dir, skey, klen, UINT64_MAX, POS_FIRST);
    assert_int_equal(read_stream(dir, r.tenant, r.stream, r.stream_len), KR_ECORRUPT);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, first, "stream index head"), verifies,
                "stream head at version 2^64-1");

    /* A head of a stream another tenant does not have, naming the record. */
    dir = fresh_copy(*state);
    static const char none[] = "no-such/stream";
    klen = jrn_stream_prefix(skey, other, none, strlen(none));
    head_put(dir, skey, klen, 1, POS_FIRST);
    assert_int_equal(read_stream(dir, other, none, strlen(none)), KR_ECORRUPT);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, FIX_RECORDS, "stream index head names no record"),
                verifies, "extra stream head");
    free(v);
}

/* A forged record at a huge seq: verify must give a verdict (not run out of
 * memory sizing the pass), and opening must refuse it, not abort. */
static void test_forged_huge_seq(void **state)
{
    const char *dir = fresh_copy(*state);
    size_t len;
    uint8_t *v = rec_get(dir, FIX_RECORDS, &len);
    struct jrn_record r;
    assert_int_equal(jrn_record_decode(v, len, &r), KR_OK);
    r.seq = (UINT64_C(1) << 63) + 1; /* in the key and in the record */
    static uint8_t forged[KR_RECORD_MAX];
    size_t flen;
    assert_int_equal(jrn_record_encode(&r, forged, sizeof forged, &flen, NULL), KR_OK);
    uint8_t key[8];
    kr_test_be64(key, r.seq);
    value_put(dir, JRN_DB_EVENTS, key, sizeof key, forged, flen);
    free(v);
    check_modes(dir, FAST, ex(KR_ECORRUPT, FIX_RECORDS + 1, "missing"),
                ex(KR_ECORRUPT, FIX_RECORDS + 1, "missing"), "record at seq 2^63+1");
    struct jrn_options o = {.dir = dir, .read_only = true};
    struct journal *j = NULL;
    assert_int_equal(jrn_open(&o, &j), KR_ECORRUPT);
    assert_null(j);
}

/* Full mode checks the stream index (each record's link, each stream's
 * head); fast mode does not. Readers refuse what a damaged one names. */
static void test_stream_index(void **state)
{
    uint8_t key[JRN_STREAM_KEY_MAX];
    uint64_t version, hv, hs, prev, jump;
    const char *dir = fresh_copy(*state);
    uint8_t lk[8];
    kr_test_be64(lk, CHUNK + 1);
    value_del(dir, JRN_DB_LINKS, lk, 8);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, CHUNK + 1, "stream index link"), verifies,
                "link deleted");

    /* A prev link naming another record: the verifier and a reader see it. */
    dir = fresh_copy(*state);
    size_t klen = head_key_of(dir, POS_LAST, key, &version);
    assert_true(version > 4);
    link_get(dir, POS_LAST, &prev, &jump);
    link_put(dir, POS_LAST, prev - 1, jump);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, POS_LAST, "stream index link: prev"), verifies,
                "prev link wrong");
    size_t len;
    struct jrn_record r;
    uint8_t *v = rec_get(dir, POS_LAST, &len);
    assert_int_equal(jrn_record_decode(v, len, &r), KR_OK);
    assert_int_equal(read_stream(dir, r.tenant, r.stream, r.stream_len), KR_ECORRUPT);

    /* A jump link that skips nothing where it must skip. */
    dir = fresh_copy(*state);
    uint64_t at = POS_LAST;
    while (jrn_skew_jump(version) == version - 1) {
        link_get(dir, at, &prev, &jump);
        at = prev;
        version--;
    }
    link_get(dir, at, &prev, &jump);
    link_put(dir, at, prev, prev);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, at, "stream index link: jump"), verifies,
                "jump link wrong");

    /* A stream's head gone, or naming another record at its version. */
    dir = fresh_copy(*state);
    uint64_t first = stream_first_seq(dir, POS_LAST);
    value_del(dir, JRN_DB_HEADS, key, klen);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, first, "stream index head"), verifies, "head deleted");
    dir = fresh_copy(*state);
    head_get(dir, key, klen, &hv, &hs);
    head_put(dir, key, klen, hv, hs - 1);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, hs, "stream index head"), verifies, "head misplaced");
    assert_int_equal(read_stream(dir, r.tenant, r.stream, r.stream_len), KR_ECORRUPT);

    /* A head one version ahead of its stream. */
    dir = fresh_copy(*state);
    head_put(dir, key, klen, hv + 1, hs);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, FIX_RECORDS, "stream index head names no record"),
                verifies, "head ahead");
    free(v);

    /* The tenant index, likewise, in full mode. */
    dir = fresh_copy(*state);
    uint8_t tkey[16];
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    struct jrn_options o = {.dir = dir, .read_only = true};
    struct journal *j;
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    assert_int_equal(jrn_read(j, CHUNK + 1, &b), KR_OK);
    kr_test_be64(tkey, b.rec.tenant);
    jrn_recbuf_fini(&b);
    jrn_close(j);
    kr_test_be64(tkey + 8, CHUNK + 1);
    value_del(dir, JRN_DB_TENANTS, tkey, sizeof tkey);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, CHUNK + 1, "tenant index"), verifies,
                "tenant index entry deleted");
}

/* The records that introduce keys, and the index that finds them. */
static void test_key_history(void **state)
{
    /* A bit of the key record's payload: the commitment tells. */
    const char *dir = fresh_copy(*state);
    flip(dir, ROTATE_SEQ, F_PAYLOAD);
    check_both(dir, ex(KR_ECORRUPT, ROTATE_SEQ, COMMITMENT_MISMATCH), "key record flipped");

    /* A bit of the new public key: still the commitment, whatever key the
     * verifier learned from it. */
    dir = fresh_copy(*state);
    size_t len;
    uint8_t *v = rec_get(dir, ROTATE_SEQ, &len);
    v[len - 1] ^= 1; /* the last byte of the public key */
    rec_put(dir, ROTATE_SEQ, v, len);
    free(v);
    check_both(dir, ex(KR_ECORRUPT, ROTATE_SEQ, COMMITMENT_MISMATCH), "new public key flipped");

    /* The genesis key differs from the trusted one. */
    dir = fresh_copy(*state);
    v = rec_get(dir, 1, &len);
    v[len - 1] ^= 1;
    rec_put(dir, 1, v, len);
    free(v);
    check_both(dir, ex(KR_EBADSIG, 1, "trusted public key"), "genesis key flipped");

    /* The key change hidden from the index (the journal stream's head back
     * at the genesis record): the record is still there. */
    uint8_t key[JRN_STREAM_KEY_MAX];
    uint64_t version;
    dir = fresh_copy(*state);
    size_t klen = head_key_of(dir, ROTATE_SEQ, key, &version);
    assert_true(version == 2);
    head_put(dir, key, klen, 1, 1);
    check_modes(dir, BOTH, ex(KR_ECORRUPT, ROTATE_SEQ, "stream index"),
                ex(KR_ECORRUPT, ROTATE_SEQ, "missing from the key history"),
                "key change unindexed");

    /* The key change or the genesis record deleted, the index still naming it. */
    dir = fresh_copy(*state);
    rec_del(dir, ROTATE_SEQ);
    check_both(dir, ex(KR_ECORRUPT, ROTATE_SEQ, "journal key record is missing"),
               "key change deleted");
    dir = fresh_copy(*state);
    rec_del(dir, 1);
    check_both(dir, ex(KR_ECORRUPT, 1, "journal key record is missing"), "genesis deleted");

    /* Damage in the key history does not hide a lower bad record. */
    dir = fresh_copy(*state);
    rec_del(dir, ROTATE_SEQ);
    flip(dir, POS_FIRST, F_PAYLOAD);
    check_both(dir, ex(KR_ECORRUPT, POS_FIRST, COMMITMENT_MISMATCH), "two faults");

    /* An index entry for a third key naming a user record in the last chunk:
     * the key history is bad there, and a record in the middle chunk below it
     * is named first. */
    dir = fresh_copy(*state);
    head_put(dir, key, klen, 3, POS_LAST);
    link_put(dir, POS_LAST, ROTATE_SEQ, ROTATE_SEQ); /* version 3 jumps to 2 */
    struct expect e = ex(KR_ECORRUPT, POS_LAST, "journal key record is malformed");
    check_modes(dir, FAST, e, e, "bogus key record");
    flip(dir, 20000, F_PAYLOAD);
    e = ex(KR_ECORRUPT, 20000, COMMITMENT_MISMATCH);
    check_modes(dir, FAST, e, e, "bogus key record and a bad record below");
}

/* ---- Several faults; damage on disk ---- */

/* Chunks are checked in parallel; the report names the lowest bad seq. */
static void test_lowest_fault_wins(void **state)
{
    const char *dir = fresh_copy(*state);
    const uint64_t at[] = {POS_LAST, 20000, CHUNK + 1, CHUNK, POS_FIRST};
    const size_t nat = sizeof at / sizeof at[0];
    for (size_t i = 0; i < nat; i++) {
        flip(dir, at[i], F_PAYLOAD);
        for (unsigned threads = 1; threads <= 3; threads++) {
            for (int fast = i + 1 < nat; fast <= 1; fast++) {
                struct jrn_verify_options o = {.fast = fast, .threads = threads};
                struct jrn_verify_report r;
                verify_opts(dir, &o, &r);
                assert_int_equal(r.result, KR_ECORRUPT);
                assert_int_equal(r.bad_seq, at[i]);
                assert_string_equal(r.what, COMMITMENT_MISMATCH);
            }
        }
    }
}

/* A bit flipped in the file under LMDB, wherever the payload's bytes are (LMDB
 * may keep stale copies in free pages too). */
static void test_flipped_on_disk(void **state)
{
    const char *dir = fresh_copy(*state);
    size_t rlen, len;
    struct jrn_record r;
    uint8_t *v = rec_get(dir, POS_FIRST, &rlen);
    assert_int_equal(jrn_record_decode(v, rlen, &r), KR_OK);
    assert_true(r.payload_len >= 24); /* starts with a marker unique to it */

    char path[PATH_CAP];
    assert_true((size_t)snprintf(path, sizeof path, "%s/journal/data.mdb", dir) < sizeof path);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    len = (size_t)ftell(f);
    rewind(f);
    uint8_t *file = malloc(len);
    assert_non_null(file);
    assert_int_equal(fread(file, 1, len, f), len);
    unsigned found = 0;
    for (uint8_t *p = file; (p = memmem(p, len - (size_t)(p - file), r.payload, r.payload_len));
         p++, found++)
        p[r.payload_len / 2] ^= 0x01;
    assert_true(found >= 1);
    rewind(f);
    assert_int_equal(fwrite(file, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(file);
    free(v);
    check_both(dir, ex(KR_ECORRUPT, POS_FIRST, COMMITMENT_MISMATCH), "flipped on disk");
}

#define CASE(t) cmocka_unit_test_setup_teardown(t, scratch_setup, scratch_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        CASE(test_clean),
        CASE(test_flip_payload),
        CASE(test_flip_commitment),
        CASE(test_flip_tenant),
        CASE(test_flip_stream),
        CASE(test_flip_version),
        CASE(test_flip_type),
        CASE(test_flip_actor),
        CASE(test_flip_time),
        CASE(test_flip_key_id),
        CASE(test_flip_signature),
        CASE(test_flip_seq),
        CASE(test_flip_format),
        CASE(test_flip_tseq),
        CASE(test_tseq_gap),
        CASE(test_tseq_duplicate),
        CASE(test_tseq_index_count),
        CASE(test_flip_prev),
        CASE(test_moved_tenant),
        CASE(test_moved_stream),
        CASE(test_retired_key),
        CASE(test_key_not_yet_valid),
        CASE(test_missing_record),
        CASE(test_swapped_records),
        CASE(test_reordered_renumbered),
        CASE(test_record_under_wrong_seq),
        CASE(test_garbage_value),
        CASE(test_tree_leaf_node),
        CASE(test_tree_upper_node),
        CASE(test_tree_rebuilt),
        CASE(test_checkpoint_newest),
        CASE(test_checkpoint_kept),
        CASE(test_checkpoint_file),
        CASE(test_rollback),
        CASE(test_fork),
        CASE(test_truncated),
        CASE(test_wrong_root_key),
        CASE(test_stripped_payload),
        CASE(test_stream_index),
        CASE(test_index_extra_entries),
        CASE(test_forged_huge_seq),
        CASE(test_key_history),
        CASE(test_lowest_fault_wins),
        CASE(test_flipped_on_disk),
    };
    return cmocka_run_group_tests(tests, fixture_build, fixture_teardown);
}
