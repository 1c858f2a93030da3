/*
 * replica_test.c: tests for journal/replica.c (replication chunks, the
 * checkpoints a publisher splits at, the epoch) through replica.h.
 *
 * Chunks are checked against the journal's stored bytes read here through
 * LMDB directly; hostile chunks are built with jrn_repl_pack or by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <msgpack.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "journal_internal.h"
#include "keys.h"
#include "kr_error.h"
#include "kr_limits.h"
#include "mp.h"
#include "note.h"
#include "replica.h"
#include "test_domain.h"
#include "test_util.h"
#include "verify.h"
#include "views.h"

#define DIR_CAP 1024
#define T0      1700000000000000000ull
#define ACTOR   "account/test"
#define TYPE    "test.event"

/* ---- Fixture: a primary journal in a temp directory ---- */

struct tclock {
    _Atomic uint64_t now;
};

static uint64_t tclock_now(void *ctx)
{
    struct tclock *c = ctx;
    return atomic_fetch_add(&c->now, 1000);
}

struct fx {
    char root[DIR_CAP];
    char dir[DIR_CAP]; /* the primary, root/p */
    struct tclock tc;
    struct kr_clock clock;
    struct journal *j;
};

static int fx_setup(void **state)
{
    if (sodium_init() < 0)
        return -1;
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    kr_test_tmpdir(f->root, sizeof f->root);
    snprintf(f->dir, sizeof f->dir, "%.1000s/p", f->root);
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

static void fx_create_open(struct fx *f)
{
    struct jrn_options o = {.dir = f->dir, .clock = &f->clock};
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
}

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

/* Appends n events of `len` payload bytes to (tenant, stream), k per append. */
static void append_many(struct journal *j, uint64_t tenant, const char *stream, size_t n,
                        size_t len, size_t k)
{
    static uint8_t payloads[64][KR_PAYLOAD_MAX];
    struct jrn_event e[64];
    uint64_t version;
    assert_true(k >= 1 && k <= 64);
    assert_int_equal(jrn_stream_version(j, tenant, stream, strlen(stream), &version), KR_OK);
    for (size_t done = 0; done < n;) {
        size_t m = n - done < k ? n - done : k;
        for (size_t i = 0; i < m; i++) {
            memset(payloads[i], (int)(0x41 + (done + i) % 26), len);
            memcpy(payloads[i], &done, len < sizeof done ? len : sizeof done);
            e[i] = ev(tenant, stream, version++, payloads[i], len);
        }
        assert_int_equal(jrn_append(j, e, m), KR_OK);
        done += m;
    }
}

/* The stored value of record seq, read here through LMDB (a copy). */
static uint8_t *stored(struct journal *j, uint64_t seq, size_t *len)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(j), NULL, MDB_RDONLY, &txn), 0);
    uint8_t kb[8];
    kr_test_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    assert_int_equal(mdb_get(txn, j->db_events, &k, &v), 0);
    uint8_t *out = malloc(v.mv_size);
    assert_non_null(out);
    memcpy(out, v.mv_data, v.mv_size);
    *len = v.mv_size;
    mdb_txn_abort(txn);
    return out;
}

struct chunkbuf {
    uint8_t *msg;
    size_t len;
    const uint8_t *rec[KR_REPL_CHUNK_RECORDS];
    size_t rec_len[KR_REPL_CHUNK_RECORDS];
    struct jrn_repl_chunk c;
};

static struct chunkbuf *chunkbuf_new(void)
{
    struct chunkbuf *b = calloc(1, sizeof *b);
    assert_non_null(b);
    b->msg = malloc(KR_REPL_MSG_MAX);
    assert_non_null(b->msg);
    b->c.rec = b->rec;
    b->c.rec_len = b->rec_len;
    return b;
}

static void chunkbuf_free(struct chunkbuf *b)
{
    if (b)
        free(b->msg);
    free(b);
}

static kr_err decode(struct chunkbuf *b, const uint8_t *msg, size_t len)
{
    return jrn_repl_decode(msg, len, &b->c, KR_REPL_CHUNK_RECORDS);
}

/* Encodes first..last into chunks and checks each against the journal:
 * records as stored, continuous, the note only on the last; returns how many
 * chunks it took. */
static size_t check_chunks(struct journal *j, uint64_t first, uint64_t last, uint64_t epoch,
                           const char *note, size_t note_len)
{
    struct chunkbuf *b = chunkbuf_new(), *d = chunkbuf_new();
    struct jrn_info info;
    jrn_get_info(j, &info);
    size_t chunks = 0;
    for (uint64_t at = first; at <= last;) {
        uint64_t end = 0;
        assert_int_equal(jrn_repl_encode(j, at, last, note, note_len, epoch, b->msg,
                                         KR_REPL_MSG_MAX, &b->len, &end),
                         KR_OK);
        assert_true(end >= at && end <= last);
        assert_true(b->len <= KR_REPL_MSG_MAX);
        assert_int_equal(decode(d, b->msg, b->len), KR_OK);
        assert_memory_equal(d->c.journal_id, info.journal_id, 16);
        assert_true(d->c.epoch == epoch);
        assert_true(d->c.first == at);
        assert_true(d->c.n == end - at + 1);
        assert_true(d->c.n <= KR_REPL_CHUNK_RECORDS);
        for (size_t i = 0; i < d->c.n; i++) {
            size_t slen;
            uint8_t *s = stored(j, at + i, &slen);
            assert_true(d->c.rec_len[i] == slen);
            assert_memory_equal(d->c.rec[i], s, slen);
            free(s);
        }
        if (end == last) {
            assert_non_null(d->c.note);
            assert_true(d->c.note_len == note_len);
            assert_memory_equal(d->c.note, note, note_len);
        } else {
            assert_null(d->c.note);
        }
        /* Packing what was decoded gives the same bytes. */
        size_t plen;
        assert_int_equal(jrn_repl_pack(&d->c, d->msg, KR_REPL_MSG_MAX, &plen), KR_OK);
        assert_true(plen == b->len);
        assert_memory_equal(d->msg, b->msg, plen);
        chunks++;
        at = end + 1;
    }
    chunkbuf_free(b);
    chunkbuf_free(d);
    return chunks;
}

static size_t newest_note(struct journal *j, char *note)
{
    size_t len;
    assert_int_equal(jrn_checkpoint(j, note, KR_NOTE_MAX + 1, &len), KR_OK);
    return len;
}

/* ---- The codec ---- */

static void test_encode_small(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    append_many(f->j, 1, "a", 300, 40, 17);
    char note[KR_NOTE_MAX + 1];
    size_t nlen = newest_note(f->j, note);
    uint64_t size = jrn_size(f->j);
    assert_true(size == 301);
    /* The whole journal in one chunk, and any part of it. */
    assert_true(check_chunks(f->j, 1, size, 1, note, nlen) == 1);
    assert_true(check_chunks(f->j, 200, size, 7, note, nlen) == 1);
    assert_true(check_chunks(f->j, 5, 5, 1, note, nlen) == 1);
}

static void test_encode_splits(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    /* Big records: a chunk holds about 15 of 64 KiB. */
    append_many(f->j, 1, "big", 40, KR_PAYLOAD_MAX, 4);
    /* Many small ones: a chunk holds at most KR_REPL_CHUNK_RECORDS. */
    append_many(f->j, 2, "small", KR_REPL_CHUNK_RECORDS + 100, 8, 64);
    char note[KR_NOTE_MAX + 1];
    size_t nlen = newest_note(f->j, note);
    uint64_t size = jrn_size(f->j);
    assert_true(check_chunks(f->j, 2, 41, 1, note, nlen) == 3);
    assert_true(check_chunks(f->j, 42, size, 1, note, nlen) == 2);
    assert_true(check_chunks(f->j, 1, size, 3, note, nlen) >= 4);

    /* A small cap takes fewer records; one that cannot hold the first none. */
    struct chunkbuf *b = chunkbuf_new();
    uint64_t end = 0;
    assert_int_equal(jrn_repl_encode(f->j, 2, size, note, nlen, 1, b->msg, 200000, &b->len, &end),
                     KR_OK);
    assert_true(end == 4 && b->len <= 200000);
    assert_int_equal(jrn_repl_encode(f->j, 2, size, note, nlen, 1, b->msg, 60000, &b->len, &end),
                     KR_ETOOLARGE);
    /* The last record with the note must fit too: alone it does. */
    assert_int_equal(
        jrn_repl_encode(f->j, 41, 41, note, nlen, 1, b->msg, KR_REPL_MSG_MAX, &b->len, &end),
        KR_OK);
    assert_true(end == 41);

    /* Arguments. */
    assert_int_equal(
        jrn_repl_encode(f->j, 0, 3, note, nlen, 1, b->msg, KR_REPL_MSG_MAX, &b->len, &end),
        KR_EINVAL);
    assert_int_equal(
        jrn_repl_encode(f->j, 4, 3, note, nlen, 1, b->msg, KR_REPL_MSG_MAX, &b->len, &end),
        KR_EINVAL);
    assert_int_equal(
        jrn_repl_encode(f->j, 1, 3, note, nlen, 0, b->msg, KR_REPL_MSG_MAX, &b->len, &end),
        KR_EINVAL);
    assert_int_equal(
        jrn_repl_encode(f->j, 1, 3, NULL, 0, 1, b->msg, KR_REPL_MSG_MAX, &b->len, &end), KR_EINVAL);
    assert_int_equal(
        jrn_repl_encode(f->j, 1, size + 1, note, nlen, 1, b->msg, KR_REPL_MSG_MAX, &b->len, &end),
        KR_ENOTFOUND);
    chunkbuf_free(b);
}

/* A stripped record travels as stored: [header, nil]. */
static void test_encode_stripped(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    append_many(f->j, 5, "gone", 10, 100, 10);
    append_many(f->j, 6, "kept", 10, 100, 10);
    struct jrn_strip_spec s = {.tenant = 5};
    uint64_t n = 0;
    assert_int_equal(jrn_strip(f->j, &s, &n), KR_OK);
    assert_true(n == 10);
    char note[KR_NOTE_MAX + 1];
    size_t nlen = newest_note(f->j, note);
    assert_true(check_chunks(f->j, 1, jrn_size(f->j), 1, note, nlen) == 1);
}

/* A valid chunk of two records and a note, built by hand for the decoder. */
static size_t sample_chunk(uint8_t *out, size_t cap)
{
    static const uint8_t r1[] = {1, 2, 3}, r2[] = {4, 5};
    const uint8_t *rec[2] = {r1, r2};
    size_t rec_len[2] = {sizeof r1, sizeof r2};
    struct jrn_repl_chunk c = {.epoch = 2, .first = 10, .n = 2, .rec = rec, .rec_len = rec_len};
    memset(c.journal_id, 0xab, 16);
    c.note = "n\n";
    c.note_len = 2;
    size_t len;
    assert_int_equal(jrn_repl_pack(&c, out, cap, &len), KR_OK);
    return len;
}

/* Writes a chunk by hand with msgpack-c (what a hostile publisher could). */
struct hand {
    uint8_t buf[4096];
    struct kr_mp_fixbuf fb;
    msgpack_packer pk;
};

static void hand_init(struct hand *h)
{
    h->fb = (struct kr_mp_fixbuf){.p = h->buf, .cap = sizeof h->buf};
    msgpack_packer_init(&h->pk, &h->fb, kr_mp_fixbuf_write);
}

static void hand_str(struct hand *h, const char *s)
{
    msgpack_pack_str(&h->pk, strlen(s));
    msgpack_pack_str_body(&h->pk, s, strlen(s));
}

static void hand_bin(struct hand *h, size_t len, int byte)
{
    uint8_t b[64];
    memset(b, byte, sizeof b);
    msgpack_pack_bin(&h->pk, len);
    msgpack_pack_bin_body(&h->pk, b, len);
}

/* The envelope with one field changed: which (0..5) gets `how`. */
static kr_err hand_chunk(int which, int how)
{
    struct hand h;
    hand_init(&h);
    msgpack_pack_array(&h.pk, which == -1 ? (size_t)how : 6);
    if (which == 0)
        how == 0 ? hand_str(&h, "kiroku.repl.v2") : msgpack_pack_uint64(&h.pk, 1);
    else
        hand_str(&h, JRN_REPL_KIND);
    if (which == 1)
        how == 0 ? hand_bin(&h, 15, 1) : hand_str(&h, "0123456789abcdef");
    else
        hand_bin(&h, 16, 1);
    msgpack_pack_uint64(&h.pk, which == 2 ? (uint64_t)how : 1);
    msgpack_pack_uint64(&h.pk, which == 3 ? (uint64_t)how : 1);
    if (which == 4 && how == 0) {
        msgpack_pack_array(&h.pk, 0);
    } else if (which == 4 && how == 1) {
        msgpack_pack_array(&h.pk, 1);
        hand_bin(&h, 0, 0); /* an empty record */
    } else if (which == 4 && how == 2) {
        msgpack_pack_array(&h.pk, 1);
        hand_str(&h, "rec"); /* not a bin */
    } else {
        msgpack_pack_array(&h.pk, 1);
        hand_bin(&h, 3, 7);
    }
    if (which == 5 && how == 0)
        hand_str(&h, "");
    else if (which == 5 && how == 1)
        msgpack_pack_uint64(&h.pk, 1);
    else if (which == 5 && how == 2)
        hand_bin(&h, 3, 'x');
    else
        msgpack_pack_nil(&h.pk);
    assert_false(h.fb.overflow);
    struct chunkbuf *b = chunkbuf_new();
    kr_err err = decode(b, h.buf, h.fb.len);
    chunkbuf_free(b);
    return err;
}

static void test_decode_hostile(void **state)
{
    (void)state;
    uint8_t msg[256];
    size_t len = sample_chunk(msg, sizeof msg);
    struct chunkbuf *b = chunkbuf_new();
    assert_int_equal(decode(b, msg, len), KR_OK);
    assert_true(b->c.n == 2 && b->c.first == 10 && b->c.epoch == 2);
    assert_true(b->c.rec_len[0] == 3 && b->c.rec[0][2] == 3 && b->c.rec_len[1] == 2);
    assert_true(b->c.note_len == 2 && memcmp(b->c.note, "n\n", 2) == 0);

    /* Truncated at every byte; a trailing byte; the reserved byte. */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(decode(b, msg, cut), KR_ECORRUPT);
    uint8_t longer[257];
    memcpy(longer, msg, len);
    longer[len] = 0xc0;
    assert_int_equal(decode(b, longer, len + 1), KR_ECORRUPT);
    longer[len] = 0xc1;
    assert_int_equal(decode(b, longer, len + 1), KR_ECORRUPT);
    /* Every single flipped byte gives a clean answer, never a crash. */
    for (size_t i = 0; i < len; i++) {
        uint8_t m[256];
        memcpy(m, msg, len);
        m[i] ^= 0xff;
        kr_err e = decode(b, m, len);
        assert_true(e == KR_OK || e == KR_ECORRUPT || e == KR_EVERSION || e == KR_ETOOLARGE);
    }
    /* More records than the caller holds; more bytes than a message may have. */
    assert_int_equal(jrn_repl_decode(msg, len, &b->c, 1), KR_ETOOLARGE);
    uint8_t *big = calloc(1, KR_REPL_MSG_MAX + 1);
    assert_non_null(big);
    memcpy(big, msg, len);
    assert_int_equal(decode(b, big, KR_REPL_MSG_MAX + 1), KR_ETOOLARGE);
    free(big);
    assert_int_equal(decode(b, msg, 0), KR_ECORRUPT);
    assert_int_equal(jrn_repl_decode(msg, len, NULL, 2), KR_EINVAL);

    /* The envelope field by field. */
    assert_int_equal(hand_chunk(-2, 0), KR_OK); /* as written: valid */
    assert_int_equal(hand_chunk(-1, 5), KR_ECORRUPT);
    assert_int_equal(hand_chunk(-1, 7), KR_ECORRUPT);
    assert_int_equal(hand_chunk(0, 0), KR_EVERSION);
    assert_int_equal(hand_chunk(0, 1), KR_ECORRUPT);
    assert_int_equal(hand_chunk(1, 0), KR_ECORRUPT);
    assert_int_equal(hand_chunk(1, 1), KR_ECORRUPT);
    assert_int_equal(hand_chunk(2, 0), KR_ECORRUPT); /* epoch 0 */
    assert_int_equal(hand_chunk(3, 0), KR_ECORRUPT); /* first 0 */
    assert_int_equal(hand_chunk(3, (int)0x7fffffff), KR_OK);
    assert_int_equal(hand_chunk(4, 0), KR_ECORRUPT);
    assert_int_equal(hand_chunk(4, 1), KR_ECORRUPT);
    assert_int_equal(hand_chunk(4, 2), KR_ECORRUPT);
    assert_int_equal(hand_chunk(5, 0), KR_ECORRUPT);
    assert_int_equal(hand_chunk(5, 1), KR_ECORRUPT);
    assert_int_equal(hand_chunk(5, 2), KR_ECORRUPT);

    /* A non-canonical integer (first as uint16 1). */
    struct hand h;
    hand_init(&h);
    msgpack_pack_array(&h.pk, 6);
    hand_str(&h, JRN_REPL_KIND);
    hand_bin(&h, 16, 1);
    msgpack_pack_uint64(&h.pk, 1);
    const uint8_t u16[] = {0xcd, 0x00, 0x01};
    h.pk.callback(h.pk.data, (const char *)u16, sizeof u16);
    msgpack_pack_array(&h.pk, 1);
    hand_bin(&h, 3, 7);
    msgpack_pack_nil(&h.pk);
    assert_int_equal(decode(b, h.buf, h.fb.len), KR_ECORRUPT);
    /* A seq past 2^62 - 1. */
    hand_init(&h);
    msgpack_pack_array(&h.pk, 6);
    hand_str(&h, JRN_REPL_KIND);
    hand_bin(&h, 16, 1);
    msgpack_pack_uint64(&h.pk, 1);
    msgpack_pack_uint64(&h.pk, (1ull << 62) - 1);
    msgpack_pack_array(&h.pk, 2);
    hand_bin(&h, 3, 7);
    hand_bin(&h, 3, 7);
    msgpack_pack_nil(&h.pk);
    assert_int_equal(decode(b, h.buf, h.fb.len), KR_ECORRUPT);
    /* An array header declaring more records than the bytes hold. */
    hand_init(&h);
    msgpack_pack_array(&h.pk, 6);
    hand_str(&h, JRN_REPL_KIND);
    hand_bin(&h, 16, 1);
    msgpack_pack_uint64(&h.pk, 1);
    msgpack_pack_uint64(&h.pk, 1);
    msgpack_pack_array(&h.pk, 4000);
    hand_bin(&h, 3, 7);
    msgpack_pack_nil(&h.pk);
    assert_int_equal(decode(b, h.buf, h.fb.len), KR_ECORRUPT);
    hand_init(&h);
    msgpack_pack_array(&h.pk, 6);
    hand_str(&h, JRN_REPL_KIND);
    hand_bin(&h, 16, 1);
    msgpack_pack_uint64(&h.pk, 1);
    msgpack_pack_uint64(&h.pk, 1);
    msgpack_pack_array(&h.pk, KR_REPL_CHUNK_RECORDS + 1);
    assert_int_equal(decode(b, h.buf, h.fb.len), KR_ECORRUPT);
    chunkbuf_free(b);
}

static void test_pack_bounds(void **state)
{
    (void)state;
    uint8_t out[64], r[1] = {1};
    const uint8_t *rec[1] = {r};
    size_t rec_len[1] = {1};
    struct jrn_repl_chunk c = {.epoch = 1, .first = 1, .n = 1, .rec = rec, .rec_len = rec_len};
    size_t len;
    assert_int_equal(jrn_repl_pack(&c, out, sizeof out, &len), KR_OK);
    assert_int_equal(jrn_repl_pack(&c, out, 20, &len), KR_ETOOLARGE);
    c.n = 0;
    assert_int_equal(jrn_repl_pack(&c, out, sizeof out, &len), KR_EINVAL);
    c.n = 1;
    rec_len[0] = 0;
    assert_int_equal(jrn_repl_pack(&c, out, sizeof out, &len), KR_EINVAL);
    rec_len[0] = 1;
    c.note = "";
    assert_int_equal(jrn_repl_pack(&c, out, sizeof out, &len), KR_EINVAL);
}

/* ---- Checkpoints to split at, and the epoch ---- */

static uint64_t note_size_of(const char *note)
{
    const char *nl = strchr(note, '\n');
    assert_non_null(nl);
    return strtoull(nl + 1, NULL, 10);
}

static void test_checkpoint_after(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    /* Batches of 1000: a kept checkpoint every 10,000 records (the clock
     * moves 1 µs per read, far from the one-second rule). */
    for (int i = 0; i < 25; i++)
        append_many(f->j, 1, "a", 1000, 8, 64);
    uint64_t size = jrn_size(f->j);
    char note[KR_NOTE_MAX + 1];
    size_t len = 0;
    uint64_t s = 0;
    /* The genesis commit kept the first checkpoint, at 1. */
    assert_int_equal(jrn_checkpoint_after(f->j, 0, &s, note, sizeof note, &len), KR_OK);
    assert_true(s == 1 && note_size_of(note) == 1 && strlen(note) == len);
    assert_int_equal(jrn_checkpoint_after(f->j, 1, &s, note, sizeof note, &len), KR_OK);
    assert_true(s > 1 && s <= 10001 + 64 && note_size_of(note) == s);
    uint64_t k1 = s;
    assert_int_equal(jrn_checkpoint_after(f->j, k1, &s, note, sizeof note, &len), KR_OK);
    assert_true(s > k1 && note_size_of(note) == s);
    /* Past the last kept one: the newest. */
    assert_int_equal(jrn_checkpoint_after(f->j, size - 1, &s, note, sizeof note, &len), KR_OK);
    assert_true(s == size);
    char newest[KR_NOTE_MAX + 1];
    size_t nlen = newest_note(f->j, newest);
    assert_true(nlen == len && memcmp(newest, note, len) == 0);
    assert_int_equal(jrn_checkpoint_after(f->j, size, &s, note, sizeof note, &len), KR_ENOTFOUND);
    assert_int_equal(jrn_checkpoint_after(f->j, UINT64_MAX, &s, note, sizeof note, &len),
                     KR_ENOTFOUND);
    assert_int_equal(jrn_checkpoint_after(f->j, 0, &s, note, 10, &len), KR_ETOOLARGE);
}

static void test_epoch(void **state)
{
    struct fx *f = *state;
    fx_create_open(f);
    uint64_t e = 0;
    assert_int_equal(jrn_epoch(f->j, &e), KR_OK);
    assert_true(e == 1);
    append_many(f->j, 1, "a", 10, 8, 5);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK);
    assert_int_equal(jrn_epoch(f->j, &e), KR_OK);
    assert_true(e == 1);
    char note[KR_NOTE_MAX + 1];
    size_t len = newest_note(f->j, note);
    assert_int_equal(jrn_new_epoch(f->j, note, len, NULL), KR_OK);
    assert_int_equal(jrn_epoch(f->j, &e), KR_OK);
    assert_true(e == 2);
    len = newest_note(f->j, note);
    assert_int_equal(jrn_new_epoch(f->j, note, len, NULL), KR_OK);
    assert_int_equal(jrn_epoch(f->j, &e), KR_OK);
    assert_true(e == 3);
}

/* ---- The durable hook ---- */

#define HOOK_MAX 4096

struct hook_log {
    pthread_mutex_t mu;
    size_t n;
    uint64_t size[HOOK_MAX];
    uint64_t note_size[HOOK_MAX];
    atomic_int bad; /* a note that does not parse, or sizes not increasing */
};

static void hook_durable(void *ctx, uint64_t size, const char *note, size_t len)
{
    struct hook_log *h = ctx;
    char copy[KR_NOTE_MAX + 1];
    if (len > KR_NOTE_MAX) {
        atomic_fetch_add(&h->bad, 1);
        return;
    }
    memcpy(copy, note, len);
    copy[len] = '\0';
    const char *nl = strchr(copy, '\n');
    pthread_mutex_lock(&h->mu);
    if (h->n > 0 && size <= h->size[h->n - 1])
        atomic_fetch_add(&h->bad, 1);
    if (h->n < HOOK_MAX) {
        h->size[h->n] = size;
        h->note_size[h->n] = nl ? strtoull(nl + 1, NULL, 10) : 0;
        h->n++;
    }
    pthread_mutex_unlock(&h->mu);
}

static uint64_t hook_last(struct hook_log *h)
{
    pthread_mutex_lock(&h->mu);
    uint64_t s = h->n ? h->size[h->n - 1] : 0;
    pthread_mutex_unlock(&h->mu);
    return s;
}

/* An asynchronous append of one event whose completion is counted. */
struct tapp {
    struct jrn_append a;
    struct jrn_event e;
    uint8_t payload[16];
    atomic_int done;
    _Atomic kr_err err;
};

static void tapp_done(struct jrn_append *a, kr_err err)
{
    struct tapp *t = a->arg;
    atomic_store(&t->err, err);
    atomic_fetch_add(&t->done, 1);
}

static void tapp_submit(struct journal *j, struct tapp *t, uint64_t tenant, const char *stream)
{
    memset(t, 0, sizeof *t);
    memset(t->payload, 0x33, sizeof t->payload);
    /* Each on its own stream: no version to wait for. */
    t->e = ev(tenant, stream, 0, t->payload, sizeof t->payload);
    t->a = (struct jrn_append){.events = &t->e, .n = 1, .done = tapp_done, .arg = t};
    assert_int_equal(jrn_submit(j, &t->a), KR_OK);
}

struct wait_hook {
    struct hook_log *h;
    uint64_t size;
};

static bool hook_reached(void *arg)
{
    struct wait_hook *w = arg;
    return hook_last(w->h) >= w->size;
}

static void wait_hook(struct hook_log *h, uint64_t size)
{
    struct wait_hook w = {h, size};
    assert_true(kr_test_wait_for(hook_reached, &w, KR_TEST_WAIT_MS, "the durable hook"));
}

static void open_hooked(struct fx *f, struct jrn_durable_hook *hook, bool two_flushes)
{
    struct jrn_options o = {
        .dir = f->dir, .clock = &f->clock, .durable = hook, .two_flushes = two_flushes};
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
}

static void hook_async(struct fx *f, bool two_flushes)
{
    struct hook_log *h = calloc(1, sizeof *h);
    assert_non_null(h);
    pthread_mutex_init(&h->mu, NULL);
    struct jrn_durable_hook hook = {.ctx = h, .durable = hook_durable, .hold = false};
    open_hooked(f, &hook, two_flushes);
    assert_true(jrn_size(f->j) == 1);
    enum { N = 300 };
    struct tapp *t = calloc(N, sizeof *t);
    assert_non_null(t);
    char stream[32];
    for (int i = 0; i < N; i++) {
        snprintf(stream, sizeof stream, "s%d", i);
        tapp_submit(f->j, &t[i], 1, stream);
    }
    append_many(f->j, 2, "sync", 50, 10, 7);
    wait_hook(h, jrn_size(f->j));
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&t[i].done), 1);
        assert_int_equal(atomic_load(&t[i].err), KR_OK);
    }
    assert_int_equal(atomic_load(&h->bad), 0);
    pthread_mutex_lock(&h->mu);
    assert_true(h->n >= 1 && h->size[h->n - 1] == 1 + N + 50);
    for (size_t i = 0; i < h->n; i++)
        assert_true(h->note_size[i] == h->size[i]);
    pthread_mutex_unlock(&h->mu);
    /* The note told at the end is the journal's newest. */
    jrn_close(f->j);
    f->j = NULL;
    pthread_mutex_destroy(&h->mu);
    free(h);
    free(t);
}

static void test_hook_async(void **state)
{
    hook_async(*state, false);
}

static void test_hook_async_two_flushes(void **state)
{
    hook_async(*state, true);
}

static int count_done(struct tapp *t, int n, kr_err want)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (atomic_load(&t[i].done)) {
            assert_int_equal(atomic_load(&t[i].done), 1);
            assert_int_equal(atomic_load(&t[i].err), want);
            k++;
        }
    return k;
}

static bool tapp_is_done(void *arg)
{
    struct tapp *t = arg;
    return atomic_load(&t->done) != 0;
}

/* Quorum: completions wait for jrn_release; jrn_stop_appends fails held ones. */
static void test_hook_hold(void **state)
{
    struct fx *f = *state;
    struct hook_log *h = calloc(1, sizeof *h);
    assert_non_null(h);
    pthread_mutex_init(&h->mu, NULL);
    struct jrn_durable_hook hook = {.ctx = h, .durable = hook_durable, .hold = true};
    open_hooked(f, &hook, false);
    enum { N = 40 };
    struct tapp t[N];
    char stream[32];
    for (int i = 0; i < N; i++) {
        snprintf(stream, sizeof stream, "s%d", i);
        tapp_submit(f->j, &t[i], 1, stream);
    }
    wait_hook(h, 1 + N);
    /* Durable, and none acknowledged. */
    assert_int_equal(count_done(t, N, KR_OK), 0);
    /* Release up to the 10th: exactly those with seq <= 11 complete. */
    jrn_release(f->j, 11);
    int k = 0;
    for (int i = 0; i < N; i++)
        if (atomic_load(&t[i].done)) {
            assert_true(t[i].e.seq <= 11);
            k++;
        }
    assert_int_equal(k, 10);
    assert_int_equal(count_done(t, N, KR_OK), 10);
    jrn_release(f->j, 5); /* smaller: nothing */
    assert_int_equal(count_done(t, N, KR_OK), 10);
    jrn_release(f->j, 1 + N);
    assert_int_equal(count_done(t, N, KR_OK), N);

    /* Released ahead: an append completes once durable. */
    jrn_release(f->j, 1 + N + 1);
    tapp_submit(f->j, &t[0], 3, "ahead");
    wait_hook(h, 1 + N + 1);
    /* The done callback runs right after the hook, on the writer: wait for it. */
    assert_true(kr_test_wait_for(tapp_is_done, &t[0], KR_TEST_WAIT_MS, "the released append"));
    assert_int_equal(atomic_load(&t[0].err), KR_OK);

    /* Held ones when the primary is fenced: they fail; so does anything later. */
    for (int i = 0; i < 5; i++) {
        snprintf(stream, sizeof stream, "f%d", i);
        tapp_submit(f->j, &t[i], 1, stream);
    }
    wait_hook(h, 1 + N + 1 + 5);
    assert_int_equal(count_done(t, 5, KR_OK), 0);
    jrn_stop_appends(f->j, KR_EBUSY);
    assert_int_equal(count_done(t, 5, KR_EBUSY), 5);
    assert_int_equal(jrn_failed(f->j), KR_EBUSY);
    struct jrn_event e = ev(1, "later", 0, "x", 1);
    assert_int_equal(jrn_append(f->j, &e, 1), KR_EBUSY);
    struct tapp late;
    memset(&late, 0, sizeof late);
    late.e = ev(1, "later", 0, late.payload, 1);
    late.a = (struct jrn_append){.events = &late.e, .n = 1, .done = tapp_done, .arg = &late};
    assert_int_equal(jrn_submit(f->j, &late.a), KR_EBUSY);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_EBUSY);
    jrn_stop_appends(f->j, KR_ECLOSED); /* the first error stays */
    assert_int_equal(jrn_failed(f->j), KR_EBUSY);
    jrn_release(f->j, UINT64_MAX); /* nothing left to release */
    assert_int_equal(count_done(t, 5, KR_EBUSY), 5);
    uint64_t size = jrn_size(f->j);
    jrn_close(f->j);
    f->j = NULL;
    /* What was committed stays, and DIR/checkpoint follows it. */
    struct jrn_options o = {.dir = f->dir, .clock = &f->clock};
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    assert_true(jrn_size(f->j) == size);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* Held appends nobody released complete with KR_ECLOSED at close. */
static void test_hook_hold_close(void **state)
{
    struct fx *f = *state;
    struct hook_log *h = calloc(1, sizeof *h);
    assert_non_null(h);
    pthread_mutex_init(&h->mu, NULL);
    struct jrn_durable_hook hook = {.ctx = h, .durable = hook_durable, .hold = true};
    open_hooked(f, &hook, false);
    struct tapp t[3];
    tapp_submit(f->j, &t[0], 1, "a");
    tapp_submit(f->j, &t[1], 1, "b");
    tapp_submit(f->j, &t[2], 1, "c");
    wait_hook(h, 4);
    jrn_release(f->j, 2);
    assert_int_equal(count_done(t, 1, KR_OK), 1);
    jrn_close(f->j);
    f->j = NULL;
    assert_int_equal(atomic_load(&t[1].done), 1);
    assert_int_equal(atomic_load(&t[1].err), KR_ECLOSED);
    assert_int_equal(atomic_load(&t[2].done), 1);
    assert_int_equal(atomic_load(&t[2].err), KR_ECLOSED);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* ---- Applying on a follower ---- */

/* A toy view: records per tenant, and the size it reflects. */
struct tview {
    MDB_dbi dbi;
};

static kr_err tv_open(void *ctx, MDB_txn *txn, bool create)
{
    struct tview *v = ctx;
    return mdb_dbi_open(txn, "v_count", create ? MDB_CREATE : 0, &v->dbi) ? KR_EIO : KR_OK;
}

static kr_err tv_get(struct tview *v, MDB_txn *txn, uint64_t key, uint64_t *n)
{
    uint8_t kb[8];
    kr_test_be64(kb, key);
    MDB_val k = {8, kb}, d;
    int rc = mdb_get(txn, v->dbi, &k, &d);
    if (rc == MDB_NOTFOUND) {
        *n = 0;
        return KR_OK;
    }
    if (rc || d.mv_size != 8)
        return KR_EIO;
    memcpy(n, d.mv_data, 8);
    return KR_OK;
}

static kr_err tv_put(struct tview *v, MDB_txn *txn, uint64_t key, uint64_t n)
{
    uint8_t kb[8];
    kr_test_be64(kb, key);
    MDB_val k = {8, kb}, d = {8, &n};
    return mdb_put(txn, v->dbi, &k, &d, 0) ? KR_EIO : KR_OK;
}

#define TV_APPLIED UINT64_MAX

static kr_err tv_apply(void *ctx, MDB_txn *txn, const struct jrn_record *r)
{
    uint64_t n;
    kr_err err = tv_get(ctx, txn, r->tenant, &n);
    return err ? err : tv_put(ctx, txn, r->tenant, n + 1);
}

static kr_err tv_batch_end(void *ctx, MDB_txn *txn, uint64_t size)
{
    return tv_put(ctx, txn, TV_APPLIED, size);
}

static kr_err tv_applied(void *ctx, MDB_txn *txn, uint64_t *size)
{
    return tv_get(ctx, txn, TV_APPLIED, size);
}

static kr_err tv_drop(void *ctx, MDB_txn *txn)
{
    struct tview *v = ctx;
    return mdb_drop(txn, v->dbi, 0) ? KR_EIO : KR_OK;
}

/* The view's rows, for comparing two journals. */
static size_t tv_dump(struct journal *j, struct tview *v, uint64_t *out, size_t cap)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, d;
    size_t n = 0;
    assert_int_equal(mdb_txn_begin(jrn_env(j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_cursor_open(txn, v->dbi, &c), 0);
    for (int rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0 && n + 1 < cap;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        memcpy(&out[n++], k.mv_data, 8);
        memcpy(&out[n++], d.mv_data, 8);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    return n;
}

/* A primary with views, and a follower copied from it. */
struct rfx {
    struct fx *f;
    char fdir[DIR_CAP]; /* the follower, root/f */
    struct tview pv, fv;
    struct jrn_views pviews, fviews;
    struct journal *fj;
    uint64_t pos; /* the stream position the test hands out */
};

static struct jrn_views tv_views(struct tview *v)
{
    return (struct jrn_views){.ctx = v,
                              .open = tv_open,
                              .apply = tv_apply,
                              .batch_end = tv_batch_end,
                              .applied = tv_applied,
                              .drop = tv_drop};
}

static void primary_open(struct rfx *x)
{
    struct jrn_options o = {.dir = x->f->dir, .clock = &x->f->clock, .views = &x->pviews};
    assert_int_equal(jrn_open(&o, &x->f->j), KR_OK);
}

static void follower_open(struct rfx *x)
{
    struct jrn_options o = {
        .dir = x->fdir, .clock = &x->f->clock, .views = &x->fviews, .no_appends = true};
    assert_int_equal(jrn_open(&o, &x->fj), KR_OK);
}

/* A journal with many batches, stripped records, a key rotation and an
 * epoch after the follower's copy at `copy_at` records or so. */
static void rfx_build(struct rfx *x, struct fx *f)
{
    memset(x, 0, sizeof *x);
    x->f = f;
    snprintf(x->fdir, sizeof x->fdir, "%.1000s/f", f->root);
    x->pviews = tv_views(&x->pv);
    x->fviews = tv_views(&x->fv);
    struct jrn_options o = {.dir = f->dir, .clock = &f->clock};
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    primary_open(x);
    append_many(f->j, 1, "a", 500, 30, 50);
    append_many(f->j, 2, "b", 200, 300, 7);
    /* The follower: a copy holding no secret key. */
    jrn_close(f->j);
    f->j = NULL;
    kr_test_copytree(f->dir, x->fdir);
    char key[DIR_CAP + 64];
    snprintf(key, sizeof key, "%s/keys/journal-1.key", x->fdir);
    assert_int_equal(unlink(key), 0);
    primary_open(x);
    append_many(f->j, 3, "c", 12000, 20, 64);
    append_many(f->j, 7, "gone", 30, 100, 3);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK);
    append_many(f->j, 1, "a", 300, 30, 11);
    char note[KR_NOTE_MAX + 1];
    size_t len = newest_note(f->j, note);
    assert_int_equal(jrn_new_epoch(f->j, note, len, NULL), KR_OK);
    append_many(f->j, 2, "b", 2000, 40, 64);
    struct jrn_strip_spec s = {.tenant = 7};
    uint64_t n;
    assert_int_equal(jrn_strip(f->j, &s, &n), KR_OK);
    assert_true(n == 30);
    follower_open(x);
}

static void rfx_free(struct rfx *x)
{
    jrn_close(x->fj);
    x->fj = NULL;
}

/* Applies first..size of the primary pj to the follower fj, in chunks,
 * committed with note (pj's checkpoint at size); *pos counts the stream
 * positions handed out. */
static kr_err apply_range_j(struct journal *pj, struct journal *fj, uint64_t *pos, uint64_t first,
                            uint64_t size, const char *note, size_t nlen,
                            struct jrn_start_fault *fault)
{
    struct chunkbuf *b = chunkbuf_new(), *d = chunkbuf_new();
    struct jrn_replica *r = NULL;
    assert_int_equal(jrn_replica_begin(fj, &r), KR_OK);
    kr_err err = KR_OK;
    for (uint64_t at = first; at <= size && !err;) {
        uint64_t end;
        assert_int_equal(
            jrn_repl_encode(pj, at, size, note, nlen, 1, b->msg, KR_REPL_MSG_MAX, &b->len, &end),
            KR_OK);
        ++*pos;
        assert_int_equal(decode(d, b->msg, b->len), KR_OK);
        err = jrn_replica_add_chunk(r, &d->c, 2, fault);
        if (!err && d->c.note)
            err = jrn_replica_commit(r, d->c.note, d->c.note_len, *pos, fault);
        else if (err)
            jrn_replica_abort(r);
        at = end + 1;
    }
    chunkbuf_free(b);
    chunkbuf_free(d);
    return err;
}

static kr_err apply_range(struct rfx *x, uint64_t first, uint64_t size, const char *note,
                          size_t nlen, struct jrn_start_fault *fault)
{
    return apply_range_j(x->f->j, x->fj, &x->pos, first, size, note, nlen, fault);
}

/* Brings fj level with pj, range by range at pj's kept checkpoints;
 * returns the number of ranges. */
static size_t catch_up_j(struct journal *pj, struct journal *fj, uint64_t *pos)
{
    size_t ranges = 0;
    for (uint64_t after = jrn_size(fj); after < jrn_size(pj); ranges++) {
        char note[KR_NOTE_MAX + 1];
        size_t nlen;
        uint64_t s;
        assert_int_equal(jrn_checkpoint_after(pj, after, &s, note, sizeof note, &nlen), KR_OK);
        struct jrn_start_fault fault = {0};
        kr_err err = apply_range_j(pj, fj, pos, after + 1, s, note, nlen, &fault);
        if (err)
            fail_msg("apply %llu..%llu: %s at %llu: %s", (unsigned long long)after + 1,
                     (unsigned long long)s, kr_strerror(err), (unsigned long long)fault.seq,
                     fault.what);
        assert_true(jrn_size(fj) == s);
        after = s;
    }
    return ranges;
}

static size_t catch_up(struct rfx *x)
{
    return catch_up_j(x->f->j, x->fj, &x->pos);
}

static void assert_level(struct rfx *x)
{
    uint64_t size = jrn_size(x->f->j);
    assert_true(jrn_size(x->fj) == size);
    uint8_t a[KR_HASH_LEN], b[KR_HASH_LEN];
    assert_int_equal(jrn_root(x->f->j, size, a), KR_OK);
    assert_int_equal(jrn_root(x->fj, size, b), KR_OK);
    assert_memory_equal(a, b, KR_HASH_LEN);
    for (uint64_t seq = 1; seq <= size; seq++) {
        size_t la, lb;
        uint8_t *ra = stored(x->f->j, seq, &la), *rb = stored(x->fj, seq, &lb);
        struct jrn_record da, db;
        assert_int_equal(jrn_record_decode(ra, la, &da), KR_OK);
        assert_int_equal(jrn_record_decode(rb, lb, &db), KR_OK);
        /* The same record; stripped on one copy at most (its own erasure). */
        assert_true(da.header_len == db.header_len);
        assert_memory_equal(da.header, db.header, da.header_len);
        if (!da.payload_stripped && !db.payload_stripped) {
            assert_true(la == lb);
            assert_memory_equal(ra, rb, la);
        }
        free(ra);
        free(rb);
    }
    uint64_t va[64], vb[64];
    size_t na = tv_dump(x->f->j, &x->pv, va, 64), nb = tv_dump(x->fj, &x->fv, vb, 64);
    assert_true(na == nb && na >= 6);
    assert_memory_equal(va, vb, na * sizeof *va);
    struct jrn_info pi, fi;
    jrn_get_info(x->f->j, &pi);
    jrn_get_info(x->fj, &fi);
    assert_memory_equal(pi.journal_id, fi.journal_id, 16);
    assert_true(pi.size == fi.size && pi.key_id == fi.key_id);
    assert_memory_equal(pi.pk, fi.pk, KR_PUBKEY_LEN);
}

static void verify_dir(const char *dir)
{
    struct jrn_verify_options o = {0};
    struct jrn_verify_report rep;
    assert_int_equal(jrn_verify(dir, &o, &rep), KR_OK);
    if (rep.result != KR_OK)
        fail_msg("verify %s: %s at %llu: %s", dir, kr_strerror(rep.result),
                 (unsigned long long)rep.bad_seq, rep.what);
    assert_true(rep.epochs == 2);
}

static void test_apply_level(void **state)
{
    struct rfx x;
    rfx_build(&x, *state);
    assert_true(jrn_size(x.fj) == 701);
    struct jrn_info fi;
    jrn_get_info(x.fj, &fi);
    assert_true(fi.key_id == 1 && fi.size == 701);
    assert_true(catch_up(&x) >= 2);
    assert_level(&x);
    uint64_t pos = 0;
    assert_int_equal(jrn_replica_position(x.fj, &pos), KR_OK);
    assert_true(pos == x.pos && pos > 0);
    /* The keys the ranges brought, as the primary has them. */
    for (uint32_t id = 2; id <= 3; id++) {
        char p[DIR_CAP + 64], q[DIR_CAP + 64];
        snprintf(p, sizeof p, "%s/keys/journal-%u.pub", x.f->dir, id);
        snprintf(q, sizeof q, "%s/keys/journal-%u.pub", x.fdir, id);
        char *a = kr_test_slurp(p, NULL), *b = kr_test_slurp(q, NULL);
        assert_string_equal(a, b);
        free(a);
        free(b);
    }
    /* Sessions: only on a follower's journal, one at a time. */
    struct jrn_replica *r1, *r2;
    assert_int_equal(jrn_replica_begin(x.f->j, &r1), KR_EBUSY);
    assert_int_equal(jrn_replica_begin(x.fj, &r1), KR_OK);
    assert_int_equal(jrn_replica_begin(x.fj, &r2), KR_EBUSY);
    jrn_replica_abort(r1);
    jrn_replica_abort(NULL);
    /* A range already held: skipped, only the position moves. */
    char note[KR_NOTE_MAX + 1];
    size_t nlen = newest_note(x.f->j, note);
    uint64_t size = jrn_size(x.f->j);
    struct jrn_start_fault fault = {0};
    assert_int_equal(apply_range(&x, size - 20, size, note, nlen, &fault), KR_OK);
    assert_int_equal(jrn_replica_position(x.fj, &pos), KR_OK);
    assert_true(pos == x.pos);
    assert_level(&x);
    /* More on the primary later: the follower follows. */
    append_many(x.f->j, 9, "late", 50, 10, 9);
    assert_true(catch_up(&x) == 1);
    assert_level(&x);
    rfx_free(&x);
    /* The copy verifies as a whole (the primary too), reopened as it restarts. */
    verify_dir(x.fdir);
    follower_open(&x);
    assert_true(jrn_size(x.fj) == jrn_size(x.f->j));
    jrn_get_info(x.fj, &fi);
    assert_true(fi.key_id == 3 && fi.size == jrn_size(x.f->j)); /* rotated, then an epoch */
    rfx_free(&x);
}

/* ---- Hostile ranges ---- */

/* Records of a range, as mutable copies. */
struct recs {
    size_t n;
    uint8_t *rec[KR_REPL_PENDING_MAX / 4];
    size_t len[KR_REPL_PENDING_MAX / 4];
};

static struct recs *recs_of(struct journal *j, uint64_t first, uint64_t last)
{
    struct recs *r = calloc(1, sizeof *r);
    assert_non_null(r);
    assert_true(last - first + 1 <= KR_REPL_PENDING_MAX / 4);
    for (uint64_t seq = first; seq <= last; seq++, r->n++)
        r->rec[r->n] = stored(j, seq, &r->len[r->n]);
    return r;
}

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->rec[i]);
    free(r);
}

/* Applies r's records (skipping index `skip`, SIZE_MAX for none) and
 * commits with note. */
/* 0: apply_recs adds record by record; else chunk by chunk, checking
 * signatures ahead on this many threads. */
static unsigned g_chunk_threads;

/* apply_recs by jrn_replica_add_chunk: chunks of up to 1000 records. */
static kr_err add_chunks(struct jrn_replica *s, const struct recs *r, size_t skip,
                         struct jrn_start_fault *f)
{
    const uint8_t *rec[1000];
    size_t len[1000];
    struct jrn_repl_chunk c = {.rec = rec, .rec_len = len};
    for (size_t i = 0; i < r->n;) {
        for (c.n = 0; c.n < 1000 && i < r->n; i++) {
            if (i == skip)
                continue;
            rec[c.n] = r->rec[i];
            len[c.n++] = r->len[i];
        }
        kr_err err = jrn_replica_add_chunk(s, &c, g_chunk_threads, f);
        if (err) {
            assert_int_equal(jrn_replica_add_chunk(s, &c, 1, NULL), KR_EINVAL);
            return err;
        }
    }
    return KR_OK;
}

static kr_err apply_recs(struct rfx *x, const struct recs *r, size_t skip, const char *note,
                         size_t nlen, struct jrn_start_fault *f)
{
    struct jrn_replica *s;
    assert_int_equal(jrn_replica_begin(x->fj, &s), KR_OK);
    memset(f, 0, sizeof *f);
    if (g_chunk_threads) {
        kr_err err = add_chunks(s, r, skip, f);
        if (err) {
            jrn_replica_abort(s);
            return err;
        }
        return jrn_replica_commit(s, note, nlen, ++x->pos, f);
    }
    for (size_t i = 0; i < r->n; i++) {
        if (i == skip)
            continue;
        kr_err err = jrn_replica_add(s, r->rec[i], r->len[i], f);
        if (err) {
            /* The session can only be aborted now. */
            assert_int_equal(jrn_replica_add(s, r->rec[i], r->len[i], NULL), KR_EINVAL);
            jrn_replica_abort(s);
            return err;
        }
    }
    return jrn_replica_commit(s, note, nlen, ++x->pos, f);
}

/* Offset in a stored value of the last byte of its header (the signature's). */
static size_t sig_last(const uint8_t *rec, size_t len)
{
    struct jrn_record d;
    assert_int_equal(jrn_record_decode(rec, len, &d), KR_OK);
    return JRN_HEADER_OFFSET + d.header_len - 1;
}

struct level {
    uint64_t size, pos;
    uint8_t root[KR_HASH_LEN];
    uint64_t view[64];
    size_t nview;
};

static void level_take(struct rfx *x, struct level *l)
{
    l->size = jrn_size(x->fj);
    assert_int_equal(jrn_root(x->fj, l->size, l->root), KR_OK);
    assert_int_equal(jrn_replica_position(x->fj, &l->pos), KR_OK);
    l->nview = tv_dump(x->fj, &x->fv, l->view, 64);
}

/* Nothing of a refused range was kept. */
static void level_same(struct rfx *x, const struct level *l)
{
    struct level now;
    level_take(x, &now);
    assert_true(now.size == l->size && now.pos == l->pos && now.nview == l->nview);
    assert_memory_equal(now.root, l->root, KR_HASH_LEN);
    assert_memory_equal(now.view, l->view, l->nview * sizeof *l->view);
    struct jrn_recbuf rb = {0};
    assert_int_equal(jrn_read(x->fj, l->size + 1, &rb), KR_ENOTFOUND);
    jrn_recbuf_fini(&rb);
}

#define EXPECT(call, want_err, want_seq)                                                           \
    do {                                                                                           \
        kr_err e_ = (call);                                                                        \
        assert_int_equal(e_, (want_err));                                                          \
        assert_true(fault.seq == (want_seq));                                                      \
        assert_true(fault.what[0] != '\0');                                                        \
        level_same(&x, &before);                                                                   \
    } while (0)

static void test_apply_hostile(void **state)
{
    struct fx *f = *state;
    struct rfx x;
    rfx_build(&x, f);
    struct level before;
    level_take(&x, &before);
    uint64_t first = before.size + 1, size;
    char note[KR_NOTE_MAX + 1];
    size_t nlen;
    assert_int_equal(jrn_checkpoint_after(f->j, before.size, &size, note, sizeof note, &nlen),
                     KR_OK);
    assert_true(size > first + 100);
    struct recs *r = recs_of(f->j, first, size);
    const uint64_t k = first + 17;
    const size_t ki = (size_t)(k - first);
    struct jrn_start_fault fault;

    /* Each fault in a record, added one by one and by chunks whose
     * signatures are checked ahead on several threads. */
    size_t at;
    uint8_t *tp;
    size_t tl;
    for (unsigned mode = 0; mode < 2; mode++) {
        g_chunk_threads = mode ? 3 : 0;
        /* A bad signature. */
        at = sig_last(r->rec[ki], r->len[ki]);
        r->rec[ki][at] ^= 1;
        EXPECT(apply_recs(&x, r, SIZE_MAX, note, nlen, &fault), KR_EBADSIG, k);
        r->rec[ki][at] ^= 1;
        /* A broken prev link (which no signature covers). */
        at = sig_last(r->rec[ki], r->len[ki]) - 64 - 2;
        r->rec[ki][at] ^= 1;
        EXPECT(apply_recs(&x, r, SIZE_MAX, note, nlen, &fault), KR_ECORRUPT, k);
        r->rec[ki][at] ^= 1;
        /* A payload that is not the one committed to. */
        r->rec[ki][r->len[ki] - 1] ^= 1;
        EXPECT(apply_recs(&x, r, SIZE_MAX, note, nlen, &fault), KR_ECORRUPT, k);
        r->rec[ki][r->len[ki] - 1] ^= 1;
        /* Reordered records; a missing one. */
        tp = r->rec[ki];
        tl = r->len[ki];
        r->rec[ki] = r->rec[ki + 1];
        r->len[ki] = r->len[ki + 1];
        r->rec[ki + 1] = tp;
        r->len[ki + 1] = tl;
        EXPECT(apply_recs(&x, r, SIZE_MAX, note, nlen, &fault), KR_ECORRUPT, k);
        r->rec[ki + 1] = r->rec[ki];
        r->len[ki + 1] = r->len[ki];
        r->rec[ki] = tp;
        r->len[ki] = tl;
        EXPECT(apply_recs(&x, r, ki, note, nlen, &fault), KR_ECORRUPT, k);
        /* Bytes that do not decode. */
        r->len[ki]--;
        EXPECT(apply_recs(&x, r, SIZE_MAX, note, nlen, &fault), KR_ECORRUPT, k);
        r->len[ki]++;
    }
    g_chunk_threads = 0;

    /* A record of another journal with the same history shape. */
    char qdir[DIR_CAP + 8];
    snprintf(qdir, sizeof qdir, "%s/q", f->root);
    struct jrn_options qo = {.dir = qdir, .clock = &f->clock};
    struct journal *q;
    assert_int_equal(jrn_create(&qo, NULL), KR_OK);
    assert_int_equal(jrn_open(&qo, &q), KR_OK);
    append_many(q, 1, "a", 500, 30, 50);
    append_many(q, 2, "b", 200, 300, 7);
    append_many(q, 3, "c", 100, 20, 64);
    size_t qlen;
    uint8_t *qrec = stored(q, k, &qlen);
    tp = r->rec[ki];
    tl = r->len[ki];
    r->rec[ki] = qrec;
    r->len[ki] = qlen;
    struct jrn_replica *s;
    assert_int_equal(jrn_replica_begin(x.fj, &s), KR_OK);
    kr_err err = KR_OK;
    for (size_t i = 0; i < r->n && !err; i++)
        err = jrn_replica_add(s, r->rec[i], r->len[i], &fault);
    jrn_replica_abort(s);
    assert_true(err == KR_ECORRUPT || err == KR_EBADSIG);
    assert_true(fault.seq == k);
    level_same(&x, &before);
    r->rec[ki] = tp;
    r->len[ki] = tl;
    free(qrec);

    /* Checkpoints: another size's, another key's, a wrong root, garbage, another
     * journal's, none; and the right one at a size the range does not reach. */
    char other[KR_NOTE_MAX + 1];
    size_t olen;
    uint64_t osize;
    assert_int_equal(jrn_checkpoint_after(f->j, 0, &osize, other, sizeof other, &olen), KR_OK);
    assert_true(osize == 1);
    EXPECT(apply_recs(&x, r, SIZE_MAX, other, olen, &fault), KR_ECORRUPT, size);
    struct jrn_info pinfo;
    jrn_get_info(f->j, &pinfo);
    struct kr_checkpoint cp = {.size = size};
    snprintf(cp.origin, sizeof cp.origin, "%s", pinfo.origin);
    assert_int_equal(jrn_root(f->j, size, cp.root), KR_OK);
    struct kr_signing_key qk, pk1;
    assert_int_equal(kr_key_load(qdir, 1, &qk), KR_OK);
    assert_int_equal(
        kr_checkpoint_sign(&cp, pinfo.origin, qk.pk, qk.sk, other, sizeof other, &olen), KR_OK);
    EXPECT(apply_recs(&x, r, SIZE_MAX, other, olen, &fault), KR_EBADSIG, size);
    assert_int_equal(kr_key_load(f->dir, 1, &pk1), KR_OK);
    cp.root[0] ^= 1;
    assert_int_equal(
        kr_checkpoint_sign(&cp, pinfo.origin, pk1.pk, pk1.sk, other, sizeof other, &olen), KR_OK);
    EXPECT(apply_recs(&x, r, SIZE_MAX, other, olen, &fault), KR_ECORRUPT, size);
    cp.root[0] ^= 1;
    /* The right key and root: accepted by the same checks (the control). */
    assert_int_equal(
        kr_checkpoint_sign(&cp, pinfo.origin, pk1.pk, pk1.sk, other, sizeof other, &olen), KR_OK);
    assert_true(olen == nlen && memcmp(other, note, nlen) == 0);
    EXPECT(apply_recs(&x, r, SIZE_MAX, "garbage\n", 8, &fault), KR_ECORRUPT, size);
    EXPECT(apply_recs(&x, r, SIZE_MAX, NULL, 0, &fault), KR_ECORRUPT, size);
    char qnote[KR_NOTE_MAX + 1];
    size_t qnlen = newest_note(q, qnote);
    EXPECT(apply_recs(&x, r, SIZE_MAX, qnote, qnlen, &fault), KR_EBADSIG, size);
    r->n--; /* the range stops one short of its checkpoint */
    EXPECT(apply_recs(&x, r, SIZE_MAX, note, nlen, &fault), KR_ECORRUPT, size - 1);
    r->n++;
    kr_key_wipe(&qk);
    kr_key_wipe(&pk1);
    jrn_close(q);

    /* The right range goes in; then one that starts inside what is held, with a
     * held record that diverges. */
    memset(&fault, 0, sizeof fault);
    assert_int_equal(apply_recs(&x, r, SIZE_MAX, note, nlen, &fault), KR_OK);
    level_take(&x, &before);
    assert_true(before.size == size);
    recs_free(r);
    uint64_t size2;
    assert_int_equal(jrn_checkpoint_after(f->j, size, &size2, note, sizeof note, &nlen), KR_OK);
    r = recs_of(f->j, size - 9, size2);
    at = sig_last(r->rec[3], r->len[3]);
    r->rec[3][at] ^= 1;
    EXPECT(apply_recs(&x, r, SIZE_MAX, note, nlen, &fault), KR_ECORRUPT, size - 6);
    assert_non_null(strstr(fault.what, "diverges"));
    r->rec[3][at] ^= 1;
    /* Held records are skipped: identical ones, and ones stripped here since
     * (erasure on this copy) that arrive whole. */
    struct jrn_strip_spec ss = {.tenant = 3, .to_seq = size - 7};
    uint64_t stripped = 0;
    assert_int_equal(jrn_strip(x.fj, &ss, &stripped), KR_OK);
    assert_true(stripped > 1000);
    level_take(&x, &before);
    assert_int_equal(apply_recs(&x, r, SIZE_MAX, note, nlen, &fault), KR_OK);
    assert_true(jrn_size(x.fj) == size2);
    recs_free(r);

    /* A truncated chunk decodes to nothing; the follower catches up after all this. */
    struct chunkbuf *b = chunkbuf_new(), *d = chunkbuf_new();
    uint64_t end;
    assert_int_equal(jrn_repl_encode(f->j, size2 - 5, size2, note, nlen, 1, b->msg, KR_REPL_MSG_MAX,
                                     &b->len, &end),
                     KR_OK);
    assert_int_equal(decode(d, b->msg, b->len - 1), KR_ECORRUPT);
    chunkbuf_free(b);
    chunkbuf_free(d);
    catch_up(&x);
    assert_level(&x);
    rfx_free(&x);
    verify_dir(x.fdir);
}

/* ---- The key chain, attacked with records signed by the journal's keys ---- */

/* Added by craft to the version and tseq it would give (0: continue). */
static uint64_t g_version_skip, g_tseq_skip;

/* A record at the follower's next seq, continuing its chain, signed by key
 * `signer` of the primary's key files; its bytes into out. */
static size_t craft(struct rfx *x, uint64_t tenant, const char *stream, const char *type,
                    const uint8_t *payload, size_t plen, uint32_t signer, uint8_t *out)
{
    struct journal *fj = x->fj;
    uint64_t size = jrn_size(fj), version, tseq;
    size_t llen;
    uint8_t *last = stored(fj, size, &llen);
    struct jrn_record prev, r;
    assert_int_equal(jrn_record_decode(last, llen, &prev), KR_OK);
    assert_int_equal(jrn_stream_version(fj, tenant, stream, strlen(stream), &version), KR_OK);
    assert_int_equal(jrn_tenant_next_tseq(fj, tenant, &tseq), KR_OK);
    memset(&r, 0, sizeof r);
    r.seq = size + 1;
    r.time_ns = prev.time_ns + 1;
    r.tenant = tenant;
    r.tseq = tseq + g_tseq_skip;
    r.stream = stream;
    r.stream_len = strlen(stream);
    r.version = version + 1 + g_version_skip;
    r.type = type;
    r.type_len = strlen(type);
    r.actor = JRN_SYSTEM_ACTOR;
    r.actor_len = strlen(JRN_SYSTEM_ACTOR);
    r.key_id = signer;
    r.payload = payload;
    r.payload_len = plen;
    crypto_hash_sha256(r.commitment, payload, plen);
    jrn_record_leaf_hash(&prev, r.prev);
    free(last);
    struct kr_signing_key k;
    assert_int_equal(kr_key_load(x->f->dir, signer, &k), KR_OK);
    uint8_t msg[JRN_SIGN_INPUT_MAX];
    size_t mlen, len;
    jrn_record_sign_input(&r, msg, &mlen);
    crypto_sign_detached(r.sig, NULL, msg, mlen, k.sk);
    kr_key_wipe(&k);
    assert_int_equal(jrn_record_encode(&r, out, KR_RECORD_MAX, &len, NULL), KR_OK);
    return len;
}

/* A key payload {key_id, public_key} (epoch_started: {epoch, key_id,
 * public_key, previous_checkpoint}). */
static size_t key_payload(uint8_t *out, size_t cap, uint32_t key_id, uint64_t epoch,
                          const char *prev, size_t prev_len)
{
    struct kr_mp_fixbuf fb = {.p = out, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    msgpack_pack_map(&pk, epoch ? 4 : 2);
    if (epoch) {
        msgpack_pack_str(&pk, 5);
        msgpack_pack_str_body(&pk, "epoch", 5);
        msgpack_pack_uint64(&pk, epoch);
    }
    msgpack_pack_str(&pk, 6);
    msgpack_pack_str_body(&pk, "key_id", 6);
    msgpack_pack_uint32(&pk, key_id);
    msgpack_pack_str(&pk, 10);
    msgpack_pack_str_body(&pk, "public_key", 10);
    uint8_t pkb[KR_PUBKEY_LEN];
    memset(pkb, (int)key_id, sizeof pkb);
    msgpack_pack_bin(&pk, sizeof pkb);
    msgpack_pack_bin_body(&pk, pkb, sizeof pkb);
    if (epoch) {
        msgpack_pack_str(&pk, 19);
        msgpack_pack_str_body(&pk, "previous_checkpoint", 19);
        msgpack_pack_str(&pk, prev_len);
        msgpack_pack_str_body(&pk, prev, prev_len);
    }
    assert_false(fb.overflow);
    return fb.len;
}

static kr_err add_crafted(struct rfx *x, const uint8_t *rec, size_t len, bool commit,
                          struct jrn_start_fault *f)
{
    struct jrn_replica *s;
    assert_int_equal(jrn_replica_begin(x->fj, &s), KR_OK);
    memset(f, 0, sizeof *f);
    kr_err err = jrn_replica_add(s, rec, len, f);
    if (err || !commit) {
        jrn_replica_abort(s);
        return err;
    }
    char note[KR_NOTE_MAX + 1];
    size_t nlen = newest_note(x->f->j, note);
    return jrn_replica_commit(s, note, nlen, 999, f);
}

static void test_apply_key_chain(void **state)
{
    struct rfx x;
    rfx_build(&x, *state);
    catch_up(&x);
    struct level before;
    level_take(&x, &before);
    uint64_t k = before.size + 1;
    static uint8_t rec[KR_RECORD_MAX];
    uint8_t pl[512];
    struct jrn_start_fault fault;
    const char *js = JRN_SYSTEM_STREAM;
    /* The current key is 3 (rotated, then an epoch). A retired key's signature. */
    uint8_t data[8] = {1};
    size_t len = craft(&x, 1, "a", "test.event", data, sizeof data, 1, rec);
    EXPECT(add_crafted(&x, rec, len, false, &fault), KR_EBADSIG, k);
    /* Signed by the right key, but its version or tseq does not continue. */
    g_version_skip = 1;
    len = craft(&x, 1, "a", "test.event", data, sizeof data, 3, rec);
    EXPECT(add_crafted(&x, rec, len, false, &fault), KR_ECORRUPT, k);
    g_version_skip = 0;
    g_tseq_skip = 1;
    len = craft(&x, 1, "a", "test.event", data, sizeof data, 3, rec);
    EXPECT(add_crafted(&x, rec, len, false, &fault), KR_ECORRUPT, k);
    g_tseq_skip = 0;
    len = craft(&x, 1, "a", "test.event", data, sizeof data, 3, rec);
    assert_int_equal(add_crafted(&x, rec, len, false, &fault), KR_OK); /* the control */
    /* A key the journal had, brought again by the current key. */
    size_t plen = key_payload(pl, sizeof pl, 2, 0, NULL, 0);
    len = craft(&x, 0, js, JRN_TYPE_KEY_ADDED, pl, plen, 3, rec);
    EXPECT(add_crafted(&x, rec, len, false, &fault), KR_ECORRUPT, k);
    assert_non_null(strstr(fault.what, "twice"));
    /* An epoch that skips a number, and one whose previous checkpoint is not one. */
    char note[KR_NOTE_MAX + 1];
    size_t nlen = newest_note(x.f->j, note);
    plen = key_payload(pl, sizeof pl, 7, 5, note, nlen);
    len = craft(&x, 0, js, JRN_TYPE_EPOCH_STARTED, pl, plen, 3, rec);
    EXPECT(add_crafted(&x, rec, len, false, &fault), KR_ECORRUPT, k);
    plen = key_payload(pl, sizeof pl, 7, 3, "kiroku/x\n1\nAAAA\n", 16);
    len = craft(&x, 0, js, JRN_TYPE_EPOCH_STARTED, pl, plen, 3, rec);
    EXPECT(add_crafted(&x, rec, len, false, &fault), KR_ECORRUPT, k);
    /* A second genesis; a system record of another type. */
    len = craft(&x, 0, js, JRN_TYPE_CREATED, pl, plen, 3, rec);
    EXPECT(add_crafted(&x, rec, len, false, &fault), KR_ECORRUPT, k);
    len = craft(&x, 0, js, "journal.renamed", data, sizeof data, 3, rec);
    EXPECT(add_crafted(&x, rec, len, false, &fault), KR_ECORRUPT, k);
    /* A well-formed new key signed by the current one is taken as a record,
     * but no checkpoint the primary signed covers it: nothing is kept. */
    plen = key_payload(pl, sizeof pl, 9, 0, NULL, 0);
    len = craft(&x, 0, js, JRN_TYPE_KEY_ADDED, pl, plen, 3, rec);
    memset(&fault, 0, sizeof fault);
    assert_int_equal(add_crafted(&x, rec, len, false, &fault), KR_OK);
    EXPECT(add_crafted(&x, rec, len, true, &fault), KR_ECORRUPT, k);
    /* And the primary's next range still goes in. */
    append_many(x.f->j, 1, "a", 10, 10, 5);
    assert_true(catch_up(&x) == 1);
    assert_level(&x);
    rfx_free(&x);
}

/* Every checkpoint the writer hands the durable hook verifies a range on a
 * follower: ranges cut at each durable batch, across a key rotation (whose
 * own checkpoint is the old key's) and an epoch (whose is the new key's). */
struct notes {
    pthread_mutex_t mu;
    size_t n;
    uint64_t size[512];
    char note[512][KR_NOTE_MAX + 1];
    size_t len[512];
};

static void notes_durable(void *ctx, uint64_t size, const char *note, size_t len)
{
    struct notes *ns = ctx;
    pthread_mutex_lock(&ns->mu);
    if (ns->n < 512 && len <= KR_NOTE_MAX) {
        ns->size[ns->n] = size;
        memcpy(ns->note[ns->n], note, len);
        ns->len[ns->n++] = len;
    }
    pthread_mutex_unlock(&ns->mu);
}

static void test_apply_every_batch(void **state)
{
    struct fx *f = *state;
    struct rfx x;
    memset(&x, 0, sizeof x);
    x.f = f;
    snprintf(x.fdir, sizeof x.fdir, "%.1000s/f", f->root);
    x.pviews = tv_views(&x.pv);
    x.fviews = tv_views(&x.fv);
    struct notes *ns = calloc(1, sizeof *ns);
    assert_non_null(ns);
    pthread_mutex_init(&ns->mu, NULL);
    struct jrn_durable_hook hook = {.ctx = ns, .durable = notes_durable};
    struct jrn_options o = {
        .dir = f->dir, .clock = &f->clock, .views = &x.pviews, .durable = &hook};
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    kr_test_copytree(f->dir, x.fdir);
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    append_many(f->j, 1, "a", 100, 30, 9);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK);
    append_many(f->j, 1, "a", 50, 30, 7);
    char note[KR_NOTE_MAX + 1];
    size_t len = newest_note(f->j, note);
    assert_int_equal(jrn_new_epoch(f->j, note, len, NULL), KR_OK);
    append_many(f->j, 2, "b", 60, 30, 8);
    assert_int_equal(jrn_rotate_key(f->j, NULL), KR_OK);
    uint64_t size = jrn_size(f->j);
    follower_open(&x);
    pthread_mutex_lock(&ns->mu);
    size_t n = ns->n;
    pthread_mutex_unlock(&ns->mu);
    assert_true(n >= 30 && ns->size[n - 1] == size);
    uint64_t at = jrn_size(x.fj);
    for (size_t i = 0; i < n; i++) {
        struct jrn_start_fault fault = {0};
        kr_err err = apply_range(&x, at + 1, ns->size[i], ns->note[i], ns->len[i], &fault);
        if (err)
            fail_msg("range %llu..%llu: %s at %llu: %s", (unsigned long long)at + 1,
                     (unsigned long long)ns->size[i], kr_strerror(err),
                     (unsigned long long)fault.seq, fault.what);
        at = ns->size[i];
    }
    assert_level(&x);
    rfx_free(&x);
    verify_dir(x.fdir);
    pthread_mutex_destroy(&ns->mu);
    free(ns);
}

/* An old primary rejoins: it drops what it committed past the stream
 * (jrn_truncate), follows the new primary's epoch, and could be promoted
 * again (the epoch lifted the truncation's hold). */
static void test_apply_rejoin(void **state)
{
    struct fx *f = *state;
    struct rfx x;
    memset(&x, 0, sizeof x);
    x.f = f;
    snprintf(x.fdir, sizeof x.fdir, "%.1000s/f", f->root);
    x.pviews = tv_views(&x.pv);
    x.fviews = tv_views(&x.fv);
    struct jrn_options o = {.dir = f->dir, .clock = &f->clock};
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    primary_open(&x);
    append_many(f->j, 1, "a", 300, 30, 20);
    uint64_t fork = jrn_size(f->j);
    jrn_close(f->j);
    f->j = NULL;
    kr_test_copytree(f->dir, x.fdir);
    /* The old primary (x.fdir) commits records the stream never got. */
    struct jrn_options fo = {.dir = x.fdir, .clock = &f->clock, .views = &x.fviews};
    assert_int_equal(jrn_open(&fo, &x.fj), KR_OK);
    append_many(x.fj, 1, "a", 40, 30, 20);
    char old_note[KR_NOTE_MAX + 1];
    newest_note(x.fj, old_note);
    rfx_free(&x);
    /* The new primary starts its epoch with the checkpoint it holds. */
    primary_open(&x);
    char note[KR_NOTE_MAX + 1];
    size_t len = newest_note(f->j, note);
    assert_int_equal(jrn_new_epoch(f->j, note, len, NULL), KR_OK);
    append_many(f->j, 2, "b", 100, 30, 20);
    /* The old primary drops its own records and follows. */
    assert_int_equal(jrn_truncate(x.fdir, fork), KR_OK);
    struct jrn_options fno = fo;
    fno.no_appends = true;
    fno.views_no_catch_up = true;
    assert_int_equal(jrn_open(&fno, &x.fj), KR_OK);
    assert_int_equal(jrn_views_rebuild(x.fj, NULL, NULL), KR_OK);
    assert_true(jrn_size(x.fj) == fork);
    assert_true(catch_up(&x) >= 1);
    assert_level(&x);
    rfx_free(&x);
    verify_dir(x.fdir);
    /* Promoted with the current key's secret placed beside it: it appends. */
    char from[DIR_CAP + 64], to[DIR_CAP + 64];
    snprintf(from, sizeof from, "%s/keys/journal-2.key", f->dir);
    snprintf(to, sizeof to, "%s/keys/journal-2.key", x.fdir);
    size_t klen;
    char *key = kr_test_slurp(from, &klen);
    assert_int_equal(kr_file_write_new(to, key, klen, 0600), KR_OK);
    free(key);
    assert_int_equal(jrn_open(&fo, &x.fj), KR_OK);
    append_many(x.fj, 3, "c", 5, 10, 5);
    rfx_free(&x);
}

/* ---- A follower's domain ---- */

static void digests(struct kr_domain *d, uint8_t out[VIEW__COUNT][32], uint64_t n[VIEW__COUNT])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(d->j), NULL, MDB_RDONLY, &txn), 0);
    for (int i = 0; i < VIEW__COUNT; i++)
        assert_int_equal(views_digest(&d->views, txn, (enum kr_view)i, out[i], &n[i]), KR_OK);
    mdb_txn_abort(txn);
}

/* The views a follower builds from applied ranges are the primary's, byte
 * for byte (what `kiroku replay --check` compares). */
static void test_apply_domain(void **state)
{
    struct fx *f = *state;
    struct td *t = td_new(7);
    struct kr_caller m1, m2, m3;
    char code[40];
    td_signup(t, "one@example.com", "password one", &m1, code);
    td_signup(t, "two@example.com", "password two", &m2, code);
    /* The follower starts from a copy of the primary (as from a backup). */
    char fdir[DIR_CAP + 8];
    snprintf(fdir, sizeof fdir, "%s/fd", f->root);
    dom_close(t->d);
    t->d = NULL;
    kr_test_copytree(t->dir, fdir);
    td_reopen(t);
    td_signup(t, "three@example.com", "password three", &m3, code);
    assert_int_equal(jrn_rotate_key(t->d->j, NULL), KR_OK);
    td_signup(t, "four@example.com", "password four", &m3, code);

    struct kr_domain_options o = {.dir = fdir, .clock = &t->clock, .follower = true};
    struct kr_domain *fd;
    assert_int_equal(dom_open(&o, &fd), KR_OK);
    assert_true(jrn_size(fd->j) < jrn_size(t->d->j));
    uint64_t pos = 0;
    assert_true(catch_up_j(t->d->j, fd->j, &pos) >= 1);
    uint8_t a[VIEW__COUNT][32], b[VIEW__COUNT][32];
    uint64_t na[VIEW__COUNT], nb[VIEW__COUNT];
    digests(t->d, a, na);
    digests(fd, b, nb);
    for (int i = 0; i < VIEW__COUNT; i++) {
        if (na[i] != nb[i] || memcmp(a[i], b[i], 32) != 0)
            fail_msg("view %s differs: %llu vs %llu entries", views_name((enum kr_view)i),
                     (unsigned long long)na[i], (unsigned long long)nb[i]);
    }
    /* A follower takes no appends of its own. */
    struct jrn_event e = ev(1, "x", 0, "x", 1);
    assert_int_equal(jrn_append(fd->j, &e, 1), KR_ECLOSED);
    dom_close(fd);
    /* `kiroku verify` passes on the follower's data directory. */
    static char out[65536], err[65536];
    const char *args[] = {"verify", "--data", fdir, NULL};
    int status = kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out);
    if (status != 0)
        fail_msg("kiroku verify: %d: %s%s", status, out, err);
    /* Without its keystore a follower does not open. */
    char ks[DIR_CAP + 32];
    snprintf(ks, sizeof ks, "%s/keystore", fdir);
    kr_test_rmrf(ks);
    assert_int_not_equal(dom_open(&o, &fd), KR_OK);
    td_free(t);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_encode_small),
        T(test_encode_splits),
        T(test_encode_stripped),
        T(test_decode_hostile),
        T(test_pack_bounds),
        T(test_checkpoint_after),
        T(test_epoch),
        T(test_hook_async),
        T(test_hook_async_two_flushes),
        T(test_hook_hold),
        T(test_hook_hold_close),
        T(test_apply_level),
        T(test_apply_hostile),
        T(test_apply_domain),
        T(test_apply_rejoin),
        T(test_apply_every_batch),
        T(test_apply_key_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
