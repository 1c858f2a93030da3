/*
 * tail_test.c: the journal's tail at start and at rest.
 *
 * The start check (journal.h, jrn_open): a writable open refuses a journal
 * whose newest records or newest checkpoint were altered, naming the first bad
 * seq, opens an untouched one, and examines at most the records after the
 * newest kept checkpoint (counted through jrn_testing_start_checked, never
 * timed).
 *
 * DIR/checkpoint (rollback detection): after a burst of appends and then idle
 * time it reaches the journal's size without another commit, and it is never
 * ahead of what was acknowledged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <lmdb.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "journal.h"
#include "journal_internal.h"
#include "kr_limits.h"
#include "note.h"
#include "record.h"
#include "test_util.h"

#define DIR_CAP 1024
/* Records the small journal of the tamper cases holds besides its genesis. */
#define SMALL_RECORDS 40
/* Deadline for DIR/checkpoint to catch up while idle: generous against a
 * loaded machine, far above the KR_CHECKPOINT_FILE_NS bound it checks. */
#define FILE_DEADLINE_MS 30000u

struct fx {
    char root[DIR_CAP];
    char dir[DIR_CAP];
};

static int fx_setup(void **state)
{
    if (sodium_init() < 0)
        return -1;
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    kr_test_tmpdir(f->root, sizeof f->root);
    snprintf(f->dir, sizeof f->dir, "%.1000s/data", f->root);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    kr_test_rmrf(f->root);
    free(f);
    return 0;
}

/* Appends n records in appends of up to KR_APPEND_MAX_EVENTS. */
static void append_n(struct journal *j, size_t n)
{
    static const uint8_t payload[] = "\x81\xa1n\x01";
    struct jrn_event *ev = calloc(KR_APPEND_MAX_EVENTS, sizeof *ev);
    assert_non_null(ev);
    while (n > 0) {
        size_t k = n < KR_APPEND_MAX_EVENTS ? n : KR_APPEND_MAX_EVENTS;
        for (size_t i = 0; i < k; i++) {
            memset(&ev[i], 0, sizeof ev[i]);
            ev[i].tenant = 7;
            ev[i].stream = "s";
            ev[i].stream_len = 1;
            ev[i].type = "test.event";
            ev[i].type_len = strlen(ev[i].type);
            ev[i].actor = "account/test";
            ev[i].actor_len = strlen(ev[i].actor);
            ev[i].expected_version = 0;
            ev[i].payload = payload;
            ev[i].payload_len = sizeof payload - 1;
        }
        /* A new stream per event, so no version is expected. */
        static unsigned long next_stream;
        char names[KR_APPEND_MAX_EVENTS][24];
        for (size_t i = 0; i < k; i++) {
            snprintf(names[i], sizeof names[i], "s/%lu", next_stream++);
            ev[i].stream = names[i];
            ev[i].stream_len = strlen(names[i]);
        }
        assert_int_equal(jrn_append(j, ev, k), KR_OK);
        n -= k;
    }
    free(ev);
}

static void make_journal(struct fx *f, size_t records)
{
    struct jrn_options o = {.dir = f->dir, .signers = 2};
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    struct journal *j;
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    append_n(j, records);
    jrn_close(j);
}

/* Opens writable; returns the outcome and fills *sf. Closes on success. */
static kr_err open_check(struct fx *f, struct jrn_start_fault *sf)
{
    memset(sf, 0, sizeof *sf);
    struct jrn_options o = {.dir = f->dir, .signers = 1, .start_fault = sf};
    struct journal *j = NULL;
    kr_err err = jrn_open(&o, &j);
    if (err == KR_OK)
        jrn_close(j);
    return err;
}

/* ---- Raw access to the LMDB databases ---- */

static uint8_t *value_get(const char *dir, const char *name, const void *key, size_t klen,
                          size_t *len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, name, &txn, &dbi);
    MDB_val k = {klen, (void *)key}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t *out = malloc(v.mv_size);
    assert_non_null(out);
    memcpy(out, v.mv_data, v.mv_size);
    *len = v.mv_size;
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return out;
}

static void value_put(const char *dir, const char *name, const void *key, size_t klen,
                      const void *val, size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, name, &txn, &dbi);
    MDB_val k = {klen, (void *)key}, v = {len, (void *)val};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void drop_db(const char *dir, const char *name)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    kr_test_env_open(dir, &env);
    kr_test_txn_db(env, name, &txn, &dbi);
    assert_int_equal(mdb_drop(txn, dbi, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

enum part { PART_PAYLOAD, PART_SIG, PART_HEADER, PART_FIRST_BYTE };

/* Flips one bit of record seq, in the part named: its payload, its signature,
 * a header field (the tenant), or the first stored byte (the format, so the
 * record no longer decodes). */
static void flip(const char *dir, uint64_t seq, enum part p)
{
    uint8_t key[8];
    kr_test_be64(key, seq);
    size_t len, nlen;
    uint8_t *old = value_get(dir, JRN_DB_EVENTS, key, 8, &len);
    if (p == PART_FIRST_BYTE) {
        old[0] ^= 0x40;
        value_put(dir, JRN_DB_EVENTS, key, 8, old, len);
        free(old);
        return;
    }
    struct jrn_record r;
    assert_int_equal(jrn_record_decode(old, len, &r), KR_OK);
    uint8_t *pay = malloc(r.payload_len + 1), *enc = malloc(KR_RECORD_MAX);
    assert_true(pay && enc);
    memcpy(pay, r.payload, r.payload_len);
    if (p == PART_PAYLOAD) {
        assert_true(r.payload_len > 0);
        pay[r.payload_len - 1] ^= 1;
    } else if (p == PART_SIG) {
        r.sig[5] ^= 1;
    } else {
        r.tenant ^= 1;
    }
    r.payload = pay;
    assert_int_equal(jrn_record_encode(&r, enc, KR_RECORD_MAX, &nlen, NULL), KR_OK);
    assert_int_equal(nlen, len);
    assert_memory_not_equal(enc, old, len);
    value_put(dir, JRN_DB_EVENTS, key, 8, enc, nlen);
    free(enc);
    free(pay);
    free(old);
}

/* ---- The start check ---- */

static void test_untouched_opens(void **state)
{
    struct fx *f = *state;
    make_journal(f, SMALL_RECORDS);
    struct jrn_start_fault sf;
    assert_int_equal(open_check(f, &sf), KR_OK);
    /* Every record after the newest kept checkpoint was looked at: here the
     * genesis record's checkpoint is the only kept one. */
    assert_true(atomic_load(&jrn_testing_start_checked) >= 1);
    assert_true(atomic_load(&jrn_testing_start_checked) <= SMALL_RECORDS + 1);
    /* Twice: the open appended nothing, the check holds again. */
    assert_int_equal(open_check(f, &sf), KR_OK);
}

static void tamper_case(struct fx *f, enum part p, const char *what)
{
    make_journal(f, SMALL_RECORDS);
    uint64_t last = SMALL_RECORDS + 1;
    flip(f->dir, last, p);
    struct jrn_start_fault sf;
    assert_int_equal(open_check(f, &sf), KR_ECORRUPT);
    assert_true(sf.seq == last);
    if (!strstr(sf.what, what))
        fail_msg("start check says \"%s\", expected \"%s\"", sf.what, what);
    /* And it stays refused: nothing was appended on top of the damage. */
    assert_int_equal(open_check(f, &sf), KR_ECORRUPT);
    assert_true(sf.seq == last);
}

static void test_payload_flip_refused(void **state)
{
    tamper_case(*state, PART_PAYLOAD, "commitment");
}

static void test_sig_flip_refused(void **state)
{
    /* The signature is covered by the leaf hash, so the stored tree notices
     * first; either way the open is refused at this record. */
    tamper_case(*state, PART_SIG, "leaf hash");
}

static void test_header_flip_refused(void **state)
{
    tamper_case(*state, PART_HEADER, "leaf hash");
}

static void test_undecodable_refused(void **state)
{
    tamper_case(*state, PART_FIRST_BYTE, "does not decode");
}

static void test_checkpoint_flip_refused(void **state)
{
    struct fx *f = *state;
    make_journal(f, SMALL_RECORDS);
    size_t len;
    uint8_t *note =
        value_get(f->dir, JRN_DB_META, JRN_META_CHECKPOINT, strlen(JRN_META_CHECKPOINT), &len);
    note[len / 2] ^= 1; /* inside the root line */
    value_put(f->dir, JRN_DB_META, JRN_META_CHECKPOINT, strlen(JRN_META_CHECKPOINT), note, len);
    free(note);
    struct jrn_start_fault sf;
    assert_int_equal(open_check(f, &sf), KR_ECORRUPT);
    assert_true(sf.seq == SMALL_RECORDS + 1);
    assert_non_null(strstr(sf.what, "checkpoint"));
}

/* The work is bounded: with many records since the last kept checkpoint the
 * check looks at KR_START_CHECK_MAX of them, not at the whole journal. */
static void test_bounded(void **state)
{
    struct fx *f = *state;
    size_t n = KR_START_CHECK_MAX + 3000;
    make_journal(f, n);
    struct jrn_start_fault sf;
    assert_int_equal(open_check(f, &sf), KR_OK);
    uint64_t checked = atomic_load(&jrn_testing_start_checked);
    assert_true(checked >= 1 && checked <= KR_START_CHECK_MAX);
    /* Without kept checkpoints (a damaged checkpoints database) the cap holds. */
    drop_db(f->dir, JRN_DB_CHECKPOINTS);
    assert_int_equal(open_check(f, &sf), KR_OK);
    assert_true(atomic_load(&jrn_testing_start_checked) == KR_START_CHECK_MAX);
}

/* ---- DIR/checkpoint ---- */

/* The size DIR/checkpoint holds (0 if it is missing or unreadable). */
static uint64_t file_size(const struct fx *f)
{
    char path[DIR_CAP + 32], buf[KR_NOTE_MAX + 1];
    snprintf(path, sizeof path, "%s/checkpoint", f->dir);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    size_t n = fread(buf, 1, KR_NOTE_MAX, fp);
    fclose(fp);
    buf[n] = '\0';
    /* origin line, then the size line */
    char *nl = strchr(buf, '\n');
    if (!nl)
        return 0;
    return strtoull(nl + 1, NULL, 10);
}

/* For kr_test_wait_for: the journal's checkpoint file and its stats. */
struct file_wait {
    const struct fx *f;
    struct journal *j;
    uint64_t size;
    struct jrn_stats st;
};

/* Whether DIR/checkpoint holds size, and the stats count it written. */
static bool file_caught_up(void *arg)
{
    struct file_wait *w = arg;
    jrn_get_stats(w->j, &w->st); /* counted just after the rename */
    return file_size(w->f) == w->size && w->st.file_size == w->size;
}

/* Whether a failed rewrite was counted. */
static bool file_error_counted(void *arg)
{
    struct file_wait *w = arg;
    jrn_get_stats(w->j, &w->st);
    return w->st.file_errors > 0;
}

static void test_file_catches_up_when_idle(void **state)
{
    struct fx *f = *state;
    struct jrn_options o = {.dir = f->dir, .signers = 2};
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    struct journal *j;
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    /* A burst of small appends: after each acknowledged one the file is
     * never ahead of the journal. */
    for (int i = 0; i < 200; i++) {
        append_n(j, 1);
        assert_true(file_size(f) <= jrn_size(j));
    }
    uint64_t size = jrn_size(j);
    assert_true(size == 201);
    /* Then idle: the file reaches the size without another commit. */
    struct file_wait w = {f, j, size, {0}};
    assert_true(kr_test_wait_for(file_caught_up, &w, FILE_DEADLINE_MS, "the checkpoint file"));
    const struct jrn_stats st = w.st;
    assert_true(file_size(f) == size);
    assert_true(jrn_size(j) == size);
    assert_true(st.file_size == size);
    assert_true(st.file_writes >= 1);
    assert_true(st.file_errors == 0 && st.file_error == KR_OK);
    jrn_close(j);
}

/* A failed rewrite is counted, kept for the stats and retried. */
static void test_file_error_reported(void **state)
{
    struct fx *f = *state;
    struct jrn_options o = {.dir = f->dir, .signers = 1};
    assert_int_equal(jrn_create(&o, NULL), KR_OK);
    struct journal *j;
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    /* A directory where the temp file goes makes every rewrite fail. */
    char tmp[DIR_CAP + 32];
    snprintf(tmp, sizeof tmp, "%s/checkpoint.tmp", f->dir);
    assert_int_equal(mkdir(tmp, 0700), 0);
    append_n(j, 3);
    struct file_wait w = {f, j, 0, {0}};
    assert_true(kr_test_wait_for(file_error_counted, &w, FILE_DEADLINE_MS, "a failed rewrite"));
    assert_true(w.st.file_errors >= 1);
    assert_int_equal(w.st.file_error, KR_EIO);
    assert_true(file_size(f) < jrn_size(j));
    /* Once the cause is gone the next commit writes it. */
    assert_int_equal(rmdir(tmp), 0);
    append_n(j, 1);
    w.size = jrn_size(j);
    assert_true(kr_test_wait_for(file_caught_up, &w, FILE_DEADLINE_MS, "the checkpoint file"));
    assert_int_equal(w.st.file_error, KR_OK);
    jrn_close(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_untouched_opens, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_payload_flip_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sig_flip_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_header_flip_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_flip_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bounded, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_file_catches_up_when_idle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_file_error_reported, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
