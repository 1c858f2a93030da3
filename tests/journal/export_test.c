/*
 * export_test.c: tests for journal/export.c, tenant exports and their offline
 * verification.
 *
 * One journal is built once per run: ROUNDS rounds, each one append for
 * tenant A (1), one for tenant B (2) and every third one for tenant C (3), each
 * append its own batch under a clock that moves 1.5 s per reading, so the
 * checkpoints database keeps a checkpoint per batch; the signing key is
 * rotated half-way. B's stream names, actor, type and payloads carry marker
 * strings that must never show up in an export of A.
 *
 * Cases: an export of A verifies with exact counts; every byte of a small
 * export edited (two ways) fails; one field of every entry, proof and
 * checkpoint of the whole export edited fails; a record left out, a record of
 * B swapped in, a reordered pair, a removed checkpoint fail; the export holds
 * nothing of B (marker strings, stream names, commitments in hex, base64 and
 * raw bytes, also inside every decoded base64 value); a wrong key fails;
 * truncated and garbage files fail cleanly; a cut-short export continues;
 * a journal migrated from format 1 and erased payloads verify.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "export.h"
#include "journal.h"
#include "journal_internal.h"
#include "keys.h"
#include "kr_limits.h"
#include "note.h"
#include "record.h"
#include "test_util.h"

#define DIR_CAP   1024
#define ROUNDS    40
#define ROTATE_AT 20
#define TENANT_A  1u
#define TENANT_B  2u
#define TENANT_C  ((uint64_t)INT64_MAX)           /* the largest tenant id */
#define T0        (1775001600ull * 1000000000ull) /* 2026-04-01T00:00:00Z */
#define STEP      1500000000ull                   /* 1.5 s per clock reading */

static const char *const b_markers[] = {"BMARKERxyzzy", "bsecretstream", "bsecretactor",
                                        "bsecret.type"};

struct tclock {
    _Atomic uint64_t now;
};

static uint64_t tclock_now(void *ctx)
{
    return atomic_fetch_add(&((struct tclock *)ctx)->now, STEP);
}

static struct {
    char root[DIR_CAP];
    char dir[DIR_CAP];
    struct tclock tc;
    struct kr_clock clock;
    struct jrn_info info;
    struct journal *j;
    uint8_t b_commit[ROUNDS][KR_HASH_LEN];
    size_t nb;
    uint64_t a_seqs[ROUNDS];
} fx;

static void append_one(uint64_t tenant, const char *stream, const char *type, const char *actor,
                       const char *payload, struct jrn_event *out)
{
    struct jrn_event e;
    memset(&e, 0, sizeof e);
    e.tenant = tenant;
    e.stream = stream;
    e.stream_len = strlen(stream);
    e.type = type;
    e.type_len = strlen(type);
    e.actor = actor;
    e.actor_len = strlen(actor);
    assert_int_equal(jrn_stream_version(fx.j, tenant, stream, strlen(stream), &e.expected_version),
                     KR_OK);
    e.payload = (const uint8_t *)payload;
    e.payload_len = strlen(payload);
    assert_int_equal(jrn_append(fx.j, &e, 1), KR_OK);
    if (out)
        *out = e;
}

static int fixture_build(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    kr_test_tmpdir(fx.root, sizeof fx.root);
    snprintf(fx.dir, sizeof fx.dir, "%.1000s/data", fx.root);
    atomic_store(&fx.tc.now, T0);
    fx.clock.now_ns = tclock_now;
    fx.clock.ctx = &fx.tc;
    struct jrn_options o = {.dir = fx.dir, .clock = &fx.clock, .signers = 1};
    if (jrn_create(&o, &fx.info) != KR_OK || jrn_open(&o, &fx.j) != KR_OK)
        return -1;
    for (int i = 0; i < ROUNDS; i++) {
        char stream[64], payload[128];
        struct jrn_event e;
        if (i == ROTATE_AT && jrn_rotate_key(fx.j, NULL) != KR_OK)
            return -1;
        snprintf(stream, sizeof stream, "account/a%d", i % 3);
        snprintf(payload, sizeof payload, "tenant A event %d", i);
        append_one(TENANT_A, stream, "account.updated", "account/alice", payload, &e);
        fx.a_seqs[i] = e.seq;
        snprintf(stream, sizeof stream, "bsecretstream/%d", i % 2);
        snprintf(payload, sizeof payload, "BMARKERxyzzy payload %d of tenant B", i);
        append_one(TENANT_B, stream, "bsecret.type", "bsecretactor", payload, &e);
        memcpy(fx.b_commit[fx.nb++], e.commitment, KR_HASH_LEN);
        if (i % 3 == 0)
            append_one(TENANT_C, "contact/c", "contact.registered", "account/carol",
                       "tenant C event", NULL);
    }
    return 0;
}

static int fixture_teardown(void **state)
{
    (void)state;
    jrn_close(fx.j);
    kr_test_rmrf(fx.root);
    return 0;
}

/* An export of `tenant`, seq from..to (0 = open), of at most max records. */
static char *export_of(uint64_t tenant, uint64_t from, uint64_t to, size_t max, size_t *len,
                       uint64_t *next)
{
    struct exp_options o = {.tenant = tenant, .from = from, .to = to, .max_records = max};
    char *doc = NULL;
    struct exp_built b;
    assert_int_equal(exp_build(fx.j, &o, &doc, len, &b), KR_OK);
    assert_non_null(doc);
    assert_int_equal(strlen(doc), *len);
    assert_true(b.records >= 1 && b.first <= b.last);
    if (next)
        *next = b.next_from;
    return doc;
}

static kr_err verify(const char *doc, size_t len, struct exp_report *r)
{
    return exp_verify((const uint8_t *)doc, len, fx.info.pk, r);
}

/* Serializes j as an export is written (compact, newline). */
static char *redump(json_t *j, size_t *len)
{
    char *s = json_dumps(j, JSON_COMPACT);
    assert_non_null(s);
    size_t n = strlen(s);
    char *out = malloc(n + 2);
    assert_non_null(out);
    memcpy(out, s, n);
    out[n] = '\n';
    out[n + 1] = '\0';
    free(s);
    *len = n + 1;
    return out;
}

static json_t *parse(const char *doc, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(doc, len, 0, &e);
    assert_non_null(j);
    return j;
}

/* ---- The export verifies ---- */

/* Format 2 spells the tenant id as a decimal string, exact through a JSON
 * reader of doubles; a format-1 document (a number) still verifies; any
 * other spelling is refused. */
static void test_tenant_spelling(void **state)
{
    (void)state;
    size_t len;
    char *doc = export_of(TENANT_C, 0, 0, 0, &len, NULL);
    json_t *j = parse(doc, len);
    assert_int_equal(json_integer_value(json_object_get(j, "kiroku_export")), EXP_FORMAT);
    char want[24];
    snprintf(want, sizeof want, "%" PRIu64, (uint64_t)TENANT_C);
    assert_string_equal(json_string_value(json_object_get(j, "tenant")), want);
    struct exp_report r;
    size_t l2;
    char *d2;
    /* Format 1: the same document with the tenant as a number. */
    json_object_set_new(j, "kiroku_export", json_integer(EXP_FORMAT_V1));
    json_object_set_new(j, "tenant", json_integer((json_int_t)TENANT_C));
    d2 = redump(j, &l2);
    assert_int_equal(verify(d2, l2, &r), KR_OK);
    assert_int_equal(r.tenant, TENANT_C);
    free(d2);
    /* Format 2 with a number, and strings that are not canonical. */
    json_object_set_new(j, "kiroku_export", json_integer(EXP_FORMAT));
    d2 = redump(j, &l2);
    assert_int_equal(verify(d2, l2, &r), KR_ECORRUPT);
    assert_string_equal(r.where, "tenant");
    free(d2);
    const char *bad[] = {"",
                         "0",
                         "0123",
                         "+1",
                         "-1",
                         " 1",
                         "1 ",
                         "1e3",
                         "9223372036854775808",
                         "99999999999999999999",
                         "184467440737095516160"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_object_set_new(j, "tenant", json_string(bad[i]));
        d2 = redump(j, &l2);
        assert_int_equal(verify(d2, l2, &r), KR_ECORRUPT);
        assert_string_equal(r.where, "tenant");
        free(d2);
    }
    json_decref(j);
    free(doc);
}

static void test_export_verifies(void **state)
{
    (void)state;
    size_t len;
    uint64_t next;
    char *doc = export_of(TENANT_A, 0, 0, 0, &len, &next);
    assert_int_equal(next, 0);
    struct exp_report r;
    assert_int_equal(verify(doc, len, &r), KR_OK);
    assert_int_equal(r.result, KR_OK);
    assert_int_equal(r.tenant, TENANT_A);
    assert_int_equal(r.records, ROUNDS);
    assert_int_equal(r.from, fx.a_seqs[0]);
    assert_int_equal(r.to, fx.a_seqs[ROUNDS - 1]);
    assert_int_equal(r.first_tseq, 1);
    assert_int_equal(r.last_tseq, ROUNDS);
    assert_true(r.from_start);
    assert_int_equal(r.format1, 0);
    assert_int_equal(r.stripped, 0);
    assert_int_equal(r.keys, 2);
    assert_int_equal(r.checkpoint_size, jrn_size(fx.j));
    /* One kept checkpoint near each record, and the newest. */
    assert_true(r.checkpoints > ROUNDS / 2);
    assert_string_equal(r.where, "");
    uint8_t root[KR_HASH_LEN];
    assert_int_equal(jrn_root(fx.j, r.checkpoint_size, root), KR_OK);
    assert_memory_equal(r.root, root, KR_HASH_LEN);

    /* The fields beside each record, for people. */
    json_t *j = parse(doc, len);
    json_t *e = json_array_get(json_object_get(j, "records"), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "tseq")), 1);
    assert_int_equal(strlen(json_string_value(json_object_get(e, "utc"))), EXP_UTC_LEN);
    assert_true(strncmp(json_string_value(json_object_get(e, "utc")), "2026-04-01T00:0", 15) == 0);
    assert_true(strstr(json_string_value(json_object_get(e, "jst")), "+09:00") != NULL);
    assert_string_equal(json_string_value(json_object_get(j, "origin")), fx.info.origin);
    json_decref(j);
    free(doc);

    /* The largest tenant id, every third round. */
    doc = export_of(TENANT_C, 0, 0, 0, &len, &next);
    assert_int_equal(verify(doc, len, &r), KR_OK);
    assert_int_equal(r.tenant, TENANT_C);
    assert_int_equal(r.records, (ROUNDS + 2) / 3);
    assert_int_equal(r.last_tseq, (ROUNDS + 2) / 3);
    free(doc);
}

static void test_time_formats(void **state)
{
    (void)state;
    char utc[EXP_UTC_LEN + 1], jst[EXP_JST_LEN + 1];
    exp_format_utc(T0 + 123456789, utc);
    exp_format_jst(T0 + 123456789, jst);
    assert_string_equal(utc, "2026-04-01T00:00:00.123456789Z");
    assert_string_equal(jst, "2026-04-01T09:00:00.123456789+09:00");
    exp_format_jst(T0 + 15ull * 3600 * 1000000000ull, jst); /* 15:00 UTC = next day 00:00 JST */
    assert_string_equal(jst, "2026-04-02T00:00:00.000000000+09:00");
}

/* ---- Any edited byte fails ---- */

static void test_every_byte_of_a_small_export(void **state)
{
    (void)state;
    size_t len;
    /* Three records of A, around the key rotation. */
    char *doc =
        export_of(TENANT_A, fx.a_seqs[ROTATE_AT - 1], fx.a_seqs[ROTATE_AT + 1], 0, &len, NULL);
    struct exp_report r;
    assert_int_equal(verify(doc, len, &r), KR_OK);
    assert_int_equal(r.records, 3);
    static const uint8_t flips[] = {0x01, 0x20};
    size_t failed = 0;
    for (size_t f = 0; f < sizeof flips; f++) {
        for (size_t i = 0; i < len; i++) {
            doc[i] ^= (char)flips[f];
            kr_err err = verify(doc, len, &r);
            doc[i] ^= (char)flips[f];
            if (err == KR_OK)
                fail_msg("byte %zu (0x%02x) flipped with 0x%02x still verifies", i,
                         (unsigned char)doc[i], flips[f]);
            assert_int_not_equal(r.where[0], '\0');
            assert_int_not_equal(r.what[0], '\0');
            failed++;
        }
    }
    assert_int_equal(failed, 2 * len);
    assert_int_equal(verify(doc, len, &r), KR_OK);
    free(doc);
}

/* Flips the byte at the middle of every string value under j (records,
 * proofs, notes) of the whole export, one at a time. */
static void flip_strings(json_t *root, json_t *j, size_t *count)
{
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *x = json_array_get(j, i);
            if (json_is_string(x)) {
                char *s = strdup(json_string_value(x));
                size_t n = strlen(s);
                s[n / 2] = s[n / 2] == 'A' ? 'B' : 'A';
                json_t *orig = json_incref(x);
                json_array_set_new(j, i, json_string(s));
                size_t len;
                char *doc = redump(root, &len);
                struct exp_report r;
                assert_int_not_equal(verify(doc, len, &r), KR_OK);
                free(doc);
                json_array_set_new(j, i, orig);
                free(s);
                (*count)++;
            } else {
                flip_strings(root, x, count);
            }
        }
    } else if (json_is_object(j)) {
        const char *k;
        json_t *x;
        json_object_foreach(j, k, x)
        {
            if (json_is_string(x)) {
                char *s = strdup(json_string_value(x));
                size_t n = strlen(s);
                s[n / 2] = s[n / 2] == 'A' ? 'B' : 'A';
                json_t *orig = json_incref(x);
                json_object_set_new(j, k, json_string(s));
                size_t len;
                char *doc = redump(root, &len);
                struct exp_report r;
                if (verify(doc, len, &r) == KR_OK)
                    fail_msg("edited %s still verifies", k);
                free(doc);
                json_object_set_new(j, k, orig);
                free(s);
                (*count)++;
            } else if (json_is_integer(x)) {
                json_int_t v = json_integer_value(x);
                json_object_set_new(j, k, json_integer(v + 1));
                size_t len;
                char *doc = redump(root, &len);
                struct exp_report r;
                if (verify(doc, len, &r) == KR_OK)
                    fail_msg("%s + 1 still verifies", k);
                free(doc);
                json_object_set_new(j, k, json_integer(v));
                (*count)++;
            } else {
                flip_strings(root, x, count);
            }
        }
    }
}

static void test_every_field_of_the_whole_export(void **state)
{
    (void)state;
    size_t len;
    char *doc = export_of(TENANT_A, 0, 0, 0, &len, NULL);
    json_t *j = parse(doc, len);
    size_t count = 0;
    flip_strings(j, j, &count);
    /* Every member of every entry, every proof hash, note, and the top. */
    assert_true(count > (size_t)ROUNDS * 7);
    json_decref(j);
    free(doc);
}

/* ---- Records left out, swapped, reordered ---- */

static void test_record_left_out(void **state)
{
    (void)state;
    size_t len;
    char *doc = export_of(TENANT_A, 0, 0, 0, &len, NULL);
    json_t *j = parse(doc, len);
    json_t *recs = json_object_get(j, "records");
    json_array_remove(recs, 7);
    size_t l2;
    char *d2 = redump(j, &l2);
    struct exp_report r;
    assert_int_equal(verify(d2, l2, &r), KR_ECORRUPT);
    assert_int_equal(r.bad_tseq, 9);
    assert_non_null(strstr(r.where, "records[7]"));
    assert_non_null(strstr(r.what, "left out"));
    free(d2);

    /* The first record left out: the export then starts at tseq 2, which is
     * not a fault, but no longer from the tenant's start ("from" must follow). */
    json_array_remove(recs, 0);
    json_array_remove(recs, 6); /* restore nothing: also leave another out */
    d2 = redump(j, &l2);
    assert_int_not_equal(verify(d2, l2, &r), KR_OK);
    free(d2);
    json_decref(j);

    /* The first one alone, with from adjusted: verifies, but not from the start. */
    j = parse(doc, len);
    recs = json_object_get(j, "records");
    json_array_remove(recs, 0);
    json_object_set_new(j, "from", json_integer((json_int_t)fx.a_seqs[1]));
    d2 = redump(j, &l2);
    assert_int_equal(verify(d2, l2, &r), KR_OK);
    assert_false(r.from_start);
    assert_int_equal(r.first_tseq, 2);
    free(d2);
    json_decref(j);
    free(doc);
}

static void test_record_of_b_swapped_in(void **state)
{
    (void)state;
    size_t la, lb;
    char *a = export_of(TENANT_A, 0, 0, 0, &la, NULL);
    char *b = export_of(TENANT_B, 0, 0, 0, &lb, NULL);
    json_t *ja = parse(a, la), *jb = parse(b, lb);
    json_t *ra = json_object_get(ja, "records"), *rb = json_object_get(jb, "records");
    /* B's record 5 for A's record 5 (B's has the next seq, same checkpoints). */
    json_array_set(ra, 5, json_array_get(rb, 5));
    size_t l2;
    char *d2 = redump(ja, &l2);
    struct exp_report r;
    assert_int_equal(verify(d2, l2, &r), KR_ECORRUPT);
    assert_non_null(strstr(r.where, "records[5]"));
    assert_non_null(strstr(r.what, "tenant 2"));
    free(d2);
    /* The whole document relabelled as B's still fails at A's first record. */
    json_decref(ja);
    ja = parse(a, la);
    char tb[24];
    snprintf(tb, sizeof tb, "%" PRIu64, (uint64_t)TENANT_B);
    json_object_set_new(ja, "tenant", json_string(tb));
    d2 = redump(ja, &l2);
    assert_int_equal(verify(d2, l2, &r), KR_ECORRUPT);
    assert_non_null(strstr(r.where, "records[0]"));
    free(d2);
    json_decref(ja);
    json_decref(jb);
    free(a);
    free(b);
}

static void test_reordered_and_missing_checkpoint(void **state)
{
    (void)state;
    size_t len;
    char *doc = export_of(TENANT_A, 0, 0, 0, &len, NULL);
    json_t *j = parse(doc, len);
    json_t *recs = json_object_get(j, "records");
    json_t *x = json_incref(json_array_get(recs, 3));
    json_array_remove(recs, 3);
    json_array_insert_new(recs, 4, x);
    size_t l2;
    char *d2 = redump(j, &l2);
    struct exp_report r;
    assert_int_equal(verify(d2, l2, &r), KR_ECORRUPT);
    free(d2);
    json_decref(j);

    j = parse(doc, len);
    json_t *cps = json_object_get(j, "checkpoints"), *cons = json_object_get(j, "consistency");
    json_array_remove(cps, 1);
    json_array_remove(cons, 1);
    d2 = redump(j, &l2);
    assert_int_not_equal(verify(d2, l2, &r), KR_OK);
    free(d2);
    json_decref(j);
    free(doc);
}

/* The newest checkpoint re-signed by key 1, retired half-way: the note is
 * well-formed and its signature valid, but a retired key signs no later tree. */
static void test_checkpoint_by_retired_key(void **state)
{
    (void)state;
    size_t len;
    char *doc = export_of(TENANT_A, 0, 0, 0, &len, NULL);
    json_t *j = parse(doc, len);
    json_t *cps = json_object_get(j, "checkpoints");
    size_t last = json_array_size(cps) - 1;
    struct kr_signing_key k1;
    assert_int_equal(kr_key_load(fx.dir, 1, &k1), KR_OK);
    struct kr_checkpoint cp;
    snprintf(cp.origin, sizeof cp.origin, "%s", fx.info.origin);
    cp.size = jrn_size(fx.j);
    assert_int_equal(jrn_root(fx.j, cp.size, cp.root), KR_OK);
    char note[KR_NOTE_MAX + 1];
    size_t nl;
    assert_int_equal(kr_checkpoint_sign(&cp, fx.info.origin, k1.pk, k1.sk, note, sizeof note, &nl),
                     KR_OK);
    kr_key_wipe(&k1);
    json_array_set_new(cps, last, json_string(note));
    size_t l2;
    char *d2 = redump(j, &l2);
    struct exp_report r;
    assert_int_equal(verify(d2, l2, &r), KR_EBADSIG);
    assert_non_null(strstr(r.where, "checkpoints["));
    assert_non_null(strstr(r.what, "not current"));
    free(d2);
    json_decref(j);
    free(doc);
}

/* ---- Nothing of another tenant ---- */

static bool contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    return m <= n && memmem(hay, n, needle, m) != NULL;
}

/* Finds of B's data by no_b_in, with the first one named. */
static size_t b_hits;
static char b_first[160];

static void hit(const char *what, const char *which)
{
    if (b_hits++ == 0)
        snprintf(b_first, sizeof b_first, "%s holds B's %s", what, which);
}

static void no_b_in(const uint8_t *buf, size_t n, const char *what)
{
    for (size_t i = 0; i < sizeof b_markers / sizeof b_markers[0]; i++)
        if (contains(buf, n, b_markers[i], strlen(b_markers[i])))
            hit(what, b_markers[i]);
    for (size_t i = 0; i < fx.nb; i++) {
        char hex[2 * KR_HASH_LEN + 1], b64[64];
        sodium_bin2hex(hex, sizeof hex, fx.b_commit[i], KR_HASH_LEN);
        sodium_bin2base64(b64, sizeof b64, fx.b_commit[i], KR_HASH_LEN,
                          sodium_base64_VARIANT_ORIGINAL);
        if (contains(buf, n, fx.b_commit[i], KR_HASH_LEN) || contains(buf, n, hex, strlen(hex)) ||
            contains(buf, n, b64, 40)) /* 40: the part not shaped by the padding */
            hit(what, "commitment");
    }
}

static void no_b_in_json(const json_t *j)
{
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            no_b_in_json(json_array_get(j, i));
    } else if (json_is_object(j)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)j, k, x) no_b_in_json(x);
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        no_b_in((const uint8_t *)s, n, "a string");
        uint8_t *bin = malloc(n + 1);
        size_t bl;
        if (sodium_base642bin(bin, n + 1, s, n, NULL, &bl, NULL, sodium_base64_VARIANT_ORIGINAL) ==
            0)
            no_b_in(bin, bl, "a base64 value");
        free(bin);
    }
}

static void test_nothing_of_b(void **state)
{
    (void)state;
    size_t len;
    char *doc = export_of(TENANT_A, 0, 0, 0, &len, NULL);
    b_hits = 0;
    no_b_in((const uint8_t *)doc, len, "the export of A");
    json_t *j = parse(doc, len);
    no_b_in_json(j);
    json_decref(j);
    free(doc);
    if (b_hits)
        fail_msg("%s (%zu finds)", b_first, b_hits);
    /* The same search finds B's markers and commitments in B's export. */
    doc = export_of(TENANT_B, 0, 0, 0, &len, NULL);
    j = parse(doc, len);
    no_b_in_json(j);
    json_decref(j);
    free(doc);
    assert_true(b_hits >= 4 * ROUNDS);
}

/* ---- Keys, hostile files ---- */

static void test_wrong_key(void **state)
{
    (void)state;
    size_t len;
    char *doc = export_of(TENANT_A, 0, 0, 0, &len, NULL);
    uint8_t pk[KR_PUBKEY_LEN], sk[64];
    crypto_sign_keypair(pk, sk);
    struct exp_report r;
    assert_int_equal(exp_verify((const uint8_t *)doc, len, pk, &r), KR_EBADSIG);
    assert_non_null(strstr(r.where, "keys[0]"));
    assert_non_null(strstr(r.what, "trusted public key"));
    free(doc);
}

static void test_truncated_and_garbage(void **state)
{
    (void)state;
    size_t len;
    char *doc = export_of(TENANT_A, 0, 0, 0, &len, NULL);
    struct exp_report r;
    for (size_t n = 0; n < len; n += 97)
        assert_int_equal(verify(doc, n, &r), KR_ECORRUPT);
    assert_int_equal(verify(doc, len - 1, &r), KR_ECORRUPT); /* no final newline */
    static const char *const garbage[] = {"",
                                          "\n",
                                          "null\n",
                                          "{}\n",
                                          "[]\n",
                                          "{\"kiroku_export\":1}\n",
                                          "\x80\x81\xff",
                                          "{\"kiroku_export\":1,\"kiroku_export\":1}\n"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        assert_int_not_equal(verify(garbage[i], strlen(garbage[i]), &r), KR_OK);
        assert_int_not_equal(r.what[0], '\0');
    }
    /* Deep nesting and a huge count stay bounded. */
    size_t deep = 100000;
    char *d = malloc(deep * 2 + 2);
    memset(d, '[', deep);
    memset(d + deep, ']', deep);
    d[2 * deep] = '\n';
    assert_int_not_equal(verify(d, 2 * deep + 1, &r), KR_OK);
    free(d);
    assert_int_equal(exp_verify((const uint8_t *)doc, KR_EXPORT_FILE_MAX + 1, fx.info.pk, &r),
                     KR_ETOOLARGE);
    /* Random bytes. */
    uint8_t rnd[4096];
    for (int i = 0; i < 64; i++) {
        randombytes_buf(rnd, sizeof rnd);
        assert_int_not_equal(exp_verify(rnd, (size_t)(i * 64), fx.info.pk, &r), KR_OK);
    }
    free(doc);
}

/* ---- Limits and ranges ---- */

static void test_cut_short_and_continued(void **state)
{
    (void)state;
    size_t len;
    uint64_t next;
    char *doc = export_of(TENANT_A, 0, 0, 10, &len, &next);
    assert_int_equal(next, fx.a_seqs[10]);
    struct exp_report r;
    assert_int_equal(verify(doc, len, &r), KR_OK);
    assert_int_equal(r.records, 10);
    assert_int_equal(r.last_tseq, 10);
    free(doc);
    doc = export_of(TENANT_A, next, 0, 0, &len, &next);
    assert_int_equal(next, 0);
    assert_int_equal(verify(doc, len, &r), KR_OK);
    assert_int_equal(r.records, ROUNDS - 10);
    assert_int_equal(r.first_tseq, 11);
    assert_false(r.from_start);
    free(doc);
    /* A byte budget cuts too, but never below one record. */
    struct exp_options o = {.tenant = TENANT_A, .max_bytes = 1};
    char *d = NULL;
    struct exp_built b;
    assert_int_equal(exp_build(fx.j, &o, &d, &len, &b), KR_OK);
    assert_int_equal(b.next_from, fx.a_seqs[1]);
    assert_int_equal(b.records, 1);
    assert_int_equal(b.first, fx.a_seqs[0]);
    assert_int_equal(b.last, fx.a_seqs[0]);
    free(d);
}

static void test_bad_requests(void **state)
{
    (void)state;
    char *d = NULL;
    size_t len;
    struct exp_built next;
    struct exp_options o = {.tenant = 0};
    assert_int_equal(exp_build(fx.j, &o, &d, &len, &next), KR_EINVAL);
    o = (struct exp_options){.tenant = 99};
    assert_int_equal(exp_build(fx.j, &o, &d, &len, &next), KR_ENOTFOUND);
    o = (struct exp_options){.tenant = TENANT_A, .from = 10, .to = 5};
    assert_int_equal(exp_build(fx.j, &o, &d, &len, &next), KR_EINVAL);
    o = (struct exp_options){.tenant = TENANT_A, .from = jrn_size(fx.j) + 5};
    assert_int_equal(exp_build(fx.j, &o, &d, &len, &next), KR_ENOTFOUND);
    assert_null(d);
}

/* ---- Epochs ---- */

/* Appends one record for each of A and B; returns A's seq. */
static uint64_t append_ab(struct journal *j, int i)
{
    struct jrn_event e[2];
    char pa[32], pb[48];
    memset(e, 0, sizeof e);
    snprintf(pa, sizeof pa, "A %d", i);
    snprintf(pb, sizeof pb, "BMARKERxyzzy %d", i);
    for (int k = 0; k < 2; k++) {
        e[k].tenant = k == 0 ? TENANT_A : TENANT_B;
        e[k].stream = k == 0 ? "a" : "bsecretstream";
        e[k].stream_len = strlen(e[k].stream);
        e[k].type = "x.y";
        e[k].type_len = 3;
        e[k].payload = (const uint8_t *)(k == 0 ? pa : pb);
        e[k].payload_len = strlen(k == 0 ? pa : pb);
        assert_int_equal(jrn_stream_version(j, e[k].tenant, e[k].stream, e[k].stream_len,
                                            &e[k].expected_version),
                         KR_OK);
    }
    assert_int_equal(jrn_append(j, e, 2), KR_OK);
    return e[0].seq;
}

/* A history cut back (a restore) and a new epoch: the export follows the
 * key chain through journal.epoch_started, the tenant's numbers continue
 * from its last remaining record, and a checkpoint of the dropped history
 * (signed by the old key past the fork) does not fit in. */
static void test_epoch(void **state)
{
    (void)state;
    char root[DIR_CAP], dir[DIR_CAP], path[DIR_CAP + 16];
    kr_test_tmpdir(root, sizeof root);
    snprintf(dir, sizeof dir, "%.1000s/data", root);
    struct jrn_options o = {.dir = dir, .signers = 1};
    struct jrn_info info;
    struct journal *j;
    uint64_t cut = 0;
    assert_int_equal(jrn_create(&o, &info), KR_OK);
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    for (int i = 0; i < 6; i++) {
        append_ab(j, i);
        if (i == 2)
            cut = jrn_size(j);
    }
    jrn_close(j);
    /* The old history's newest checkpoint, as the live DIR/checkpoint. */
    char old[KR_NOTE_MAX + 1];
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t old_len = fread(old, 1, KR_NOTE_MAX, f);
    fclose(f);
    old[old_len] = '\0';

    assert_int_equal(jrn_truncate(dir, cut), KR_OK);
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    assert_int_equal(jrn_new_epoch(j, old, old_len, NULL), KR_OK);
    for (int i = 10; i < 13; i++)
        append_ab(j, i);

    struct exp_options eo = {.tenant = TENANT_A};
    char *doc;
    size_t len;
    struct exp_built b;
    struct exp_report r;
    assert_int_equal(exp_build(j, &eo, &doc, &len, &b), KR_OK);
    if (exp_verify((const uint8_t *)doc, len, info.pk, &r) != KR_OK)
        fail_msg("%s: %s", r.where, r.what);
    assert_int_equal(r.keys, 2);
    assert_int_equal(r.records, 6);
    assert_int_equal(r.first_tseq, 1);
    assert_int_equal(r.last_tseq, 6);
    assert_true(r.from_start);

    /* The dropped history's checkpoint in place of the newest. */
    json_t *jd = parse(doc, len);
    json_t *cps = json_object_get(jd, "checkpoints");
    json_array_set_new(cps, json_array_size(cps) - 1, json_string(old));
    size_t l2;
    char *d2 = redump(jd, &l2);
    assert_int_not_equal(exp_verify((const uint8_t *)d2, l2, info.pk, &r), KR_OK);
    assert_non_null(strstr(r.where, "checkpoints["));
    free(d2);
    json_decref(jd);
    free(doc);
    jrn_close(j);
    kr_test_rmrf(root);
}

/* ---- Erased payloads ---- */

/* Stripped payloads (erasure) still verify and are counted. Runs last: it
 * changes the fixture. */
static void test_stripped_payloads(void **state)
{
    (void)state;
    struct jrn_strip_spec sp = {.tenant = TENANT_A, .to_seq = fx.a_seqs[5]};
    uint64_t n = 0;
    assert_int_equal(jrn_strip(fx.j, &sp, &n), KR_OK);
    assert_int_equal(n, 6);
    size_t len;
    char *doc = export_of(TENANT_A, 0, 0, 0, &len, NULL);
    struct exp_report r;
    assert_int_equal(verify(doc, len, &r), KR_OK);
    assert_int_equal(r.stripped, 6);
    assert_int_equal(r.records, ROUNDS);
    assert_true(r.from_start);
    free(doc);
}

/* ---- A journal older than per-tenant numbers ---- */

/* Tenant A writes F1 format-1 records, the journal is migrated (first
 * writable open), then A writes F2 format-2 records. */
#define F1 5
#define F2 4

static void test_format1_then_format2(void **state)
{
    (void)state;
    char root[DIR_CAP], dir[DIR_CAP];
    kr_test_tmpdir(root, sizeof root);
    snprintf(dir, sizeof dir, "%.1000s/data", root);
    struct jrn_options o = {.dir = dir, .signers = 1};
    struct jrn_info info;
    struct journal *j;
    uint64_t seqs[F1 + F2];
    atomic_store(&jrn_testing_format1, 1);
    assert_int_equal(jrn_create(&o, &info), KR_OK);
    for (int phase = 0; phase < 2; phase++) {
        assert_int_equal(jrn_open(&o, &j), KR_OK);
        for (int i = 0; i < (phase ? F2 : F1); i++) {
            struct jrn_event e[2];
            memset(e, 0, sizeof e);
            for (int k = 0; k < 2; k++) {
                e[k].tenant = k == 0 ? TENANT_A : TENANT_B;
                e[k].stream = k == 0 ? "a" : "bsecretstream";
                e[k].stream_len = strlen(e[k].stream);
                e[k].type = "x.y";
                e[k].type_len = 3;
                e[k].payload = (const uint8_t *)"p";
                e[k].payload_len = 1;
                assert_int_equal(jrn_stream_version(j, e[k].tenant, e[k].stream, e[k].stream_len,
                                                    &e[k].expected_version),
                                 KR_OK);
            }
            assert_int_equal(jrn_append(j, e, 2), KR_OK);
            seqs[phase * F1 + i] = e[0].seq;
        }
        if (phase == 1)
            break;
        jrn_close(j);
        atomic_store(&jrn_testing_format1, 0);
    }
    struct exp_options eo = {.tenant = TENANT_A};
    char *doc;
    size_t len;
    struct exp_built b;
    struct exp_report r;
    assert_int_equal(exp_build(j, &eo, &doc, &len, &b), KR_OK);
    assert_int_equal(exp_verify((const uint8_t *)doc, len, info.pk, &r), KR_OK);
    assert_int_equal(r.records, F1 + F2);
    assert_int_equal(r.format1, F1);
    assert_int_equal(r.first_tseq, F1 + 1);
    assert_int_equal(r.last_tseq, F1 + F2);
    assert_true(r.from_start); /* the format-2 numbers count the format-1 records */

    /* A format-1 record left out cannot be noticed, but the export no longer
     * claims to start at the tenant's first record. */
    json_t *jd = parse(doc, len);
    json_array_remove(json_object_get(jd, "records"), 1);
    size_t l2;
    char *d2 = redump(jd, &l2);
    assert_int_equal(exp_verify((const uint8_t *)d2, l2, info.pk, &r), KR_OK);
    assert_false(r.from_start);
    assert_int_equal(r.format1, F1 - 1);
    free(d2);
    /* A format-2 one left out fails. */
    json_array_remove(json_object_get(jd, "records"), F1);
    d2 = redump(jd, &l2);
    assert_int_equal(exp_verify((const uint8_t *)d2, l2, info.pk, &r), KR_ECORRUPT);
    assert_non_null(strstr(r.what, "left out"));
    free(d2);
    json_decref(jd);
    free(doc);

    /* From the middle of the format-1 records: verifies, not from the start. */
    eo.from = seqs[2];
    assert_int_equal(exp_build(j, &eo, &doc, &len, &b), KR_OK);
    assert_int_equal(exp_verify((const uint8_t *)doc, len, info.pk, &r), KR_OK);
    assert_int_equal(r.format1, F1 - 2);
    assert_false(r.from_start);
    free(doc);
    jrn_close(j);
    kr_test_rmrf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_verifies),
        cmocka_unit_test(test_tenant_spelling),
        cmocka_unit_test(test_time_formats),
        cmocka_unit_test(test_every_byte_of_a_small_export),
        cmocka_unit_test(test_every_field_of_the_whole_export),
        cmocka_unit_test(test_record_left_out),
        cmocka_unit_test(test_record_of_b_swapped_in),
        cmocka_unit_test(test_reordered_and_missing_checkpoint),
        cmocka_unit_test(test_checkpoint_by_retired_key),
        cmocka_unit_test(test_nothing_of_b),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_truncated_and_garbage),
        cmocka_unit_test(test_cut_short_and_continued),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_format1_then_format2),
        cmocka_unit_test(test_epoch),
        cmocka_unit_test(test_stripped_payloads),
    };
    return cmocka_run_group_tests(tests, fixture_build, fixture_teardown);
}
