/*
 * verify_since_test.c: tests for incremental verification (journal/verify.h,
 * jrn_verify_state_* and options.since).
 *
 * Each case builds a small journal, verifies it whole with want_state, saves
 * the state to a file and loads it back (the path an auditor's state takes),
 * appends more, and verifies --since. A clean run must check exactly the new
 * records, reach the root of a full verification and hand back a state equal,
 * byte for byte, to the full verification's. Damage after the state fails with
 * its seq; damage before it is not read (the full verification finds it),
 * unless it changes the stored history's root, which the consistency proof
 * catches. States of another journal, forged, corrupt or truncated ones are
 * refused with the exact error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <lmdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"
#include "journal_internal.h"
#include "keys.h"
#include "kr_limits.h"
#include "merkle.h"
#include "record.h"
#include "test_util.h"
#include "verify.h"

#define CHUNK (UINT64_C(1) << KR_VERIFY_CHUNK_LOG2)
/* Events per jrn_append while building. */
#define BATCH     200
#define STATE_CAP (1024 * 1024)

static const uint64_t tenants[] = {0, 1, 2, 7};
static const char *const streams[] = {"a", "b/2", "inbox"};

struct fx {
    char dir[512], other[512];
    char state[600], state2[600];
    struct journal *j;
    uint64_t counter; /* events made so far, for distinct content */
};

static int setup(void **state)
{
    static struct fx f;
    memset(&f, 0, sizeof f);
    assert_true(sodium_init() >= 0);
    kr_test_tmpdir(f.dir, sizeof f.dir);
    kr_test_tmpdir(f.other, sizeof f.other);
    snprintf(f.state, sizeof f.state, "%s.state", f.dir);
    snprintf(f.state2, sizeof f.state2, "%s.state2", f.dir);
    struct jrn_options o = {.dir = f.dir};
    struct jrn_info info;
    assert_int_equal(jrn_create(&o, &info), KR_OK);
    assert_int_equal(jrn_open(&o, &f.j), KR_OK);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->j)
        jrn_close(f->j);
    kr_test_rmrf(f->dir);
    kr_test_rmrf(f->other);
    remove(f->state);
    remove(f->state2);
    return 0;
}

/* Appends n events over four tenants and three streams. */
static void append_n(struct fx *f, uint64_t n)
{
    static struct jrn_event ev[BATCH];
    static char payloads[BATCH][48];
    while (n > 0) {
        size_t b = n < BATCH ? (size_t)n : BATCH;
        for (size_t e = 0; e < b; e++, f->counter++) {
            uint64_t i = f->counter;
            struct jrn_event *x = &ev[e];
            memset(x, 0, sizeof *x);
            x->tenant = tenants[i % 4];
            x->stream = streams[(i / 4) % 3];
            x->stream_len = strlen(x->stream);
            x->type = "note.added";
            x->type_len = strlen(x->type);
            x->actor = "u-1";
            x->actor_len = 3;
            assert_int_equal(
                jrn_stream_version(f->j, x->tenant, x->stream, x->stream_len, &x->expected_version),
                KR_OK);
            /* Two events of one stream in a batch: the second expects the first. */
            for (size_t p = 0; p < e; p++)
                if (ev[p].tenant == x->tenant && ev[p].stream == x->stream)
                    x->expected_version++;
            int len =
                snprintf(payloads[e], sizeof payloads[e], "event %llu", (unsigned long long)i);
            x->payload = (const uint8_t *)payloads[e];
            x->payload_len = (size_t)len;
        }
        assert_int_equal(jrn_append(f->j, ev, b), KR_OK);
        n -= b;
    }
}

/* Verifies dir (the journal open in f->j when it is f->dir) with since (may be
 * NULL); the report, its state saved to save_to when given. */
static struct jrn_verify_report run(struct fx *f, const char *dir,
                                    const struct jrn_verify_state *since, bool fast,
                                    const char *save_to, kr_err want_err)
{
    struct jrn_verify_options o = {
        .threads = 2, .since = since, .fast = fast, .want_state = save_to != NULL};
    struct jrn_verify_report r;
    kr_err err;
    if (strcmp(dir, f->dir) == 0 && f->j)
        err = jrn_verify_journal(f->j, &o, &r);
    else
        err = jrn_verify(dir, &o, &r);
    assert_int_equal(err, want_err);
    if (err)
        return r;
    if (save_to && r.result == KR_OK) {
        assert_non_null(r.state);
        assert_int_equal(jrn_verify_state_save(r.state, save_to), KR_OK);
    }
    jrn_verify_state_free(r.state);
    r.state = NULL;
    return r;
}

static struct jrn_verify_state *load(const char *path)
{
    struct jrn_verify_state *s;
    assert_int_equal(jrn_verify_state_load(path, &s), KR_OK);
    return s;
}

static size_t file_read(const char *path, uint8_t *buf, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(buf, 1, cap, fp);
    fclose(fp);
    return n;
}

static void file_write(const char *path, const uint8_t *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* Verifies whole with a state into f->state, appends `more`, verifies since
 * it (expecting a clean run of exactly `more` records) and checks the new
 * state equals a full verification's. */
static void clean_round(struct fx *f, uint64_t more)
{
    struct jrn_verify_report full = run(f, f->dir, NULL, false, f->state, KR_OK);
    assert_int_equal(full.result, KR_OK);
    uint64_t before = full.records;
    append_n(f, more);
    struct jrn_verify_state *s = load(f->state);
    assert_int_equal(jrn_verify_state_size(s), before);
    struct jrn_verify_report inc = run(f, f->dir, s, false, f->state2, KR_OK);
    jrn_verify_state_free(s);
    if (inc.result != KR_OK)
        fail_msg("since: seq %llu: %s", (unsigned long long)inc.bad_seq, inc.what);
    assert_int_equal(inc.records, before + more);
    assert_int_equal(inc.checked, more);
    full = run(f, f->dir, NULL, false, f->state, KR_OK);
    assert_int_equal(full.result, KR_OK);
    assert_int_equal(full.checked, before + more);
    assert_memory_equal(inc.root, full.root, KR_HASH_LEN);
    assert_int_equal(inc.keys, full.keys);
    assert_int_equal(inc.epochs, full.epochs);
    static uint8_t a[STATE_CAP], b[STATE_CAP];
    size_t la = file_read(f->state, a, sizeof a), lb = file_read(f->state2, b, sizeof b);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
}

static void test_clean_small(void **state)
{
    struct fx *f = *state;
    append_n(f, 300);
    clean_round(f, 123);
    clean_round(f, 1);
    clean_round(f, 0); /* nothing new: the consistency proof of equal sizes */
    /* The fast mode continues the same way. */
    struct jrn_verify_state *s = load(f->state);
    append_n(f, 50);
    struct jrn_verify_report r = run(f, f->dir, s, true, NULL, KR_OK);
    jrn_verify_state_free(s);
    assert_int_equal(r.result, KR_OK);
    assert_int_equal(r.checked, 50);
}

/* The state ends inside a chunk, the new records cross into the next ones
 * (the state's frontier seeds the first chunk and the tree above it), and the
 * next state ends exactly on a chunk boundary. */
static void test_clean_across_chunks(void **state)
{
    struct fx *f = *state;
    append_n(f, CHUNK - 101); /* + genesis: CHUNK - 100 */
    clean_round(f, 100);      /* to CHUNK */
    clean_round(f, CHUNK + 37);
}

/* Changes one bit of record seq's payload in dir (re-encoded: the record
 * decodes, its commitment no longer matches). */
static void edit_payload(const char *dir, uint64_t seq)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, JRN_DB_EVENTS, &txn, &dbi);
    uint8_t key[8];
    kr_test_be64(key, seq);
    MDB_val k = {8, key}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    struct jrn_record rec;
    assert_int_equal(jrn_record_decode(v.mv_data, v.mv_size, &rec), KR_OK);
    static uint8_t payload[KR_PAYLOAD_MAX], enc[KR_RECORD_MAX];
    assert_true(rec.payload_len > 0);
    memcpy(payload, rec.payload, rec.payload_len);
    payload[0] ^= 1;
    rec.payload = payload;
    size_t elen;
    assert_int_equal(jrn_record_encode(&rec, enc, sizeof enc, &elen, NULL), KR_OK);
    MDB_val nv = {elen, enc};
    assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* A new record damaged: the verdict names it. */
static void test_tamper_new(void **state)
{
    struct fx *f = *state;
    append_n(f, 400);
    assert_int_equal(run(f, f->dir, NULL, false, f->state, KR_OK).result, KR_OK);
    append_n(f, 100);
    jrn_close(f->j);
    f->j = NULL;
    uint64_t bad = 401 + 57;
    edit_payload(f->dir, bad);

    struct jrn_verify_state *s = load(f->state);
    struct jrn_verify_report r = run(f, f->dir, s, false, NULL, KR_OK);
    assert_int_equal(r.result, KR_ECORRUPT);
    assert_int_equal(r.bad_seq, bad);
    r = run(f, f->dir, s, true, NULL, KR_OK);
    assert_int_equal(r.result, KR_ECORRUPT);
    assert_int_equal(r.bad_seq, bad);
    jrn_verify_state_free(s);
}

/* Flips one bit of the stored value under key in database name of dir. */
static void flip_stored(const char *dir, const char *name, const uint8_t *key, size_t klen,
                        size_t off)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, name, &txn, &dbi);
    MDB_val k = {klen, (void *)key}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t *copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    assert_true(off < v.mv_size);
    copy[off] ^= 1;
    MDB_val nv = {v.mv_size, copy};
    assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
}

/* An old record's payload damaged (its leaf and the tree unchanged): --since
 * does not read it and passes; the full verification finds it. An old leaf
 * in the stored tree changed (the history's root no longer the state's): the
 * consistency proof fails at the state's size. */
static void test_tamper_old(void **state)
{
    struct fx *f = *state;
    append_n(f, 400);
    assert_int_equal(run(f, f->dir, NULL, false, f->state, KR_OK).result, KR_OK);
    append_n(f, 100);
    jrn_close(f->j);
    f->j = NULL;
    edit_payload(f->dir, 77);

    struct jrn_verify_state *s = load(f->state);
    struct jrn_verify_report r = run(f, f->dir, s, false, NULL, KR_OK);
    assert_int_equal(r.result, KR_OK);
    assert_int_equal(r.checked, 100);
    r = run(f, f->dir, NULL, false, NULL, KR_OK);
    assert_int_equal(r.result, KR_ECORRUPT);
    assert_int_equal(r.bad_seq, 77);

    /* The stored leaf of record 77 (level 0, index 76) rewritten: the nodes
     * above it, which make the root, are unchanged, so --since still passes
     * (the full verification rehashes it). */
    uint8_t key[8];
    kr_test_be64(key, mrk_postorder(0, 76));
    flip_stored(f->dir, JRN_DB_TREE, key, 8, 0);
    r = run(f, f->dir, s, false, NULL, KR_OK);
    assert_int_equal(r.result, KR_OK);
    /* The stored root of the first 256 records rewritten, as a history
     * rewritten with its tree would have it: the consistency proof from the
     * state fails. */
    kr_test_be64(key, mrk_postorder(8, 0));
    flip_stored(f->dir, JRN_DB_TREE, key, 8, 0);
    r = run(f, f->dir, s, false, NULL, KR_OK);
    assert_int_equal(r.result, KR_ECORRUPT);
    assert_int_equal(r.bad_seq, 401);
    assert_non_null(strstr(r.what, "consistency proof"));
    jrn_verify_state_free(s);
}

/* A journal shorter than the state (an old copy put back): fails at the first
 * missing seq. */
static void test_rolled_back(void **state)
{
    struct fx *f = *state;
    append_n(f, 300);
    jrn_close(f->j);
    kr_test_rmrf(f->other);
    kr_test_copytree(f->dir, f->other); /* 301 records */
    struct jrn_options o = {.dir = f->dir};
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    append_n(f, 50);
    assert_int_equal(run(f, f->dir, NULL, false, f->state, KR_OK).result, KR_OK);
    struct jrn_verify_state *s = load(f->state);
    struct jrn_verify_report r = run(f, f->other, s, false, NULL, KR_OK);
    assert_int_equal(r.result, KR_ECORRUPT);
    assert_int_equal(r.bad_seq, 302);
    assert_non_null(strstr(r.what, "rolled back"));
    jrn_verify_state_free(s);

    /* Truncated to before the state and continued in a new epoch: the new
     * history is not the one verified. */
    jrn_close(f->j);
    f->j = NULL;
    char note[KR_NOTE_MAX + 1], path[600];
    snprintf(path, sizeof path, "%s/checkpoint", f->dir);
    size_t nlen = file_read(path, (uint8_t *)note, KR_NOTE_MAX);
    note[nlen] = '\0';
    assert_int_equal(jrn_truncate(f->dir, 200), KR_OK);
    assert_int_equal(jrn_open(&o, &f->j), KR_OK);
    assert_int_equal(jrn_new_epoch(f->j, note, nlen, NULL), KR_OK);
    append_n(f, 300);
    s = load(f->state);
    r = run(f, f->dir, s, false, NULL, KR_OK);
    assert_int_equal(r.result, KR_ECORRUPT);
    assert_int_equal(r.bad_seq, 351);
    assert_non_null(strstr(r.what, "consistency proof"));
    jrn_verify_state_free(s);
}

/* Key rotations and a new epoch before and after the state. */
static void test_keys_across(void **state)
{
    struct fx *f = *state;
    struct jrn_info info;
    append_n(f, 100);
    assert_int_equal(jrn_rotate_key(f->j, &info), KR_OK);
    assert_int_equal(info.key_id, 2);
    append_n(f, 100);
    clean_round(f, 0);
    /* after the state: a rotation, an epoch, more records */
    append_n(f, 10);
    assert_int_equal(jrn_rotate_key(f->j, &info), KR_OK);
    append_n(f, 10);
    char note[KR_NOTE_MAX];
    size_t nlen;
    assert_int_equal(jrn_checkpoint(f->j, note, sizeof note, &nlen), KR_OK);
    assert_int_equal(jrn_new_epoch(f->j, note, nlen, &info), KR_OK);
    append_n(f, 10);
    uint64_t before = jrn_size(f->j);
    struct jrn_verify_state *s = load(f->state);
    struct jrn_verify_report r = run(f, f->dir, s, false, f->state2, KR_OK);
    if (r.result != KR_OK)
        fail_msg("seq %llu: %s", (unsigned long long)r.bad_seq, r.what);
    assert_int_equal(r.keys, 4);
    assert_int_equal(r.epochs, 2);
    assert_int_equal(r.checked, before - jrn_verify_state_size(s));
    jrn_verify_state_free(s);
    /* and once more from the state past the epoch */
    clean_round(f, 20);

    /* A new record signed by a retired key (key 2) fails with its seq. */
    assert_int_equal(run(f, f->dir, NULL, false, f->state, KR_OK).result, KR_OK);
    append_n(f, 5);
    uint64_t bad = jrn_size(f->j) - 2;
    jrn_close(f->j);
    f->j = NULL;
    struct kr_signing_key k;
    assert_int_equal(kr_key_load(f->dir, 2, &k), KR_OK);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    kr_test_env_open(f->dir, &env);
    kr_test_txn_db(env, JRN_DB_EVENTS, &txn, &dbi);
    uint8_t key[8];
    kr_test_be64(key, bad);
    MDB_val kv = {8, key}, v;
    assert_int_equal(mdb_get(txn, dbi, &kv, &v), 0);
    struct jrn_record rec;
    assert_int_equal(jrn_record_decode(v.mv_data, v.mv_size, &rec), KR_OK);
    rec.key_id = 2;
    uint8_t msg[JRN_SIGN_INPUT_MAX];
    size_t mlen;
    jrn_record_sign_input(&rec, msg, &mlen);
    assert_int_equal(crypto_sign_detached(rec.sig, NULL, msg, mlen, k.sk), 0);
    kr_key_wipe(&k);
    static uint8_t enc[KR_RECORD_MAX];
    size_t elen;
    assert_int_equal(jrn_record_encode(&rec, enc, sizeof enc, &elen, NULL), KR_OK);
    MDB_val nv = {elen, enc};
    assert_int_equal(mdb_put(txn, dbi, &kv, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    s = load(f->state);
    r = run(f, f->dir, s, false, NULL, KR_OK);
    assert_int_equal(r.result, KR_EBADSIG);
    assert_int_equal(r.bad_seq, bad);
    jrn_verify_state_free(s);
}

/* Rewrites the state file's checksum after an edit. */
static void reseal(uint8_t *buf, size_t len)
{
    crypto_hash_sha256(buf + len - 32, buf, len - 32);
}

/* Corrupt, truncated, oversized, other journals' and forged states. */
static void test_bad_states(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    assert_int_equal(run(f, f->dir, NULL, false, f->state, KR_OK).result, KR_OK);
    static uint8_t buf[STATE_CAP], edit[STATE_CAP];
    size_t len = file_read(f->state, buf, sizeof buf);
    struct jrn_verify_state *s;

    /* Every truncation, and any one bit flipped, is refused. */
    for (size_t cut = 0; cut < len; cut += cut < 64 ? 1 : 37) {
        file_write(f->state2, buf, cut);
        assert_int_equal(jrn_verify_state_load(f->state2, &s), KR_ECORRUPT);
        assert_null(s);
    }
    for (size_t off = 0; off < len; off += 13) {
        memcpy(edit, buf, len);
        edit[off] ^= 0x10;
        file_write(f->state2, edit, len);
        assert_int_equal(jrn_verify_state_load(f->state2, &s), KR_ECORRUPT);
    }
    /* Resealed edits: the magic, the size, the root, a frontier hash, a
     * trailing byte. (Offsets: magic 0, version 4, id 8, origin length 24.) */
    size_t olen = (size_t)buf[24] << 8 | buf[25];
    size_t size_off = 26 + olen, root_off = size_off + 8;
    const size_t offs[] = {0, 5, size_off + 7, root_off, root_off + 32};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        memcpy(edit, buf, len);
        edit[offs[i]] ^= 1;
        reseal(edit, len);
        file_write(f->state2, edit, len);
        assert_int_equal(jrn_verify_state_load(f->state2, &s), KR_ECORRUPT);
    }
    memcpy(edit, buf, len - 32);
    edit[len - 32] = 0;
    memcpy(edit + len - 31, buf + len - 32, 32);
    reseal(edit, len + 1);
    file_write(f->state2, edit, len + 1);
    assert_int_equal(jrn_verify_state_load(f->state2, &s), KR_ECORRUPT);

    /* Another journal's state is refused; so is one made to look like it (its
     * id and origin put in, resealed): the other journal's root key does not
     * sign this state's key records. */
    struct jrn_options o = {.dir = f->other};
    struct jrn_info info;
    kr_test_rmrf(f->other);
    assert_int_equal(jrn_create(&o, &info), KR_OK);
    s = load(f->state);
    struct jrn_verify_report r = run(f, f->other, s, false, NULL, KR_EINVAL);
    assert_non_null(strstr(r.what, "another journal"));
    jrn_verify_state_free(s);
    struct journal *oj;
    o.read_only = true;
    assert_int_equal(jrn_open(&o, &oj), KR_OK);
    char other_origin[KR_ORIGIN_MAX + 1];
    uint8_t other_id[16];
    snprintf(other_origin, sizeof other_origin, "%s", oj->origin);
    memcpy(other_id, oj->journal_id, 16);
    jrn_close(oj);
    assert_int_equal(strlen(other_origin), olen); /* same length: kiroku/<hex id> */
    memcpy(edit, buf, len);
    memcpy(edit + 8, other_id, 16);
    memcpy(edit + 26, other_origin, olen);
    reseal(edit, len);
    file_write(f->state2, edit, len);
    s = load(f->state2);
    r = run(f, f->other, s, false, NULL, KR_EBADSIG);
    assert_non_null(strstr(r.what, "saved state"));
    jrn_verify_state_free(s);
    /* And the state still works on its own journal. */
    s = load(f->state);
    r = run(f, f->dir, s, false, NULL, KR_OK);
    assert_int_equal(r.result, KR_OK);
    assert_int_equal(r.checked, 0);
    jrn_verify_state_free(s);
    /* A missing file. */
    assert_int_equal(jrn_verify_state_load("/nonexistent/state", &s), KR_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clean_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_across_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_across, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_states, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
