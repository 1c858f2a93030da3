/*
 * export_since_test.c: an export verified as the continuation of a previous
 * one (exp_verify_since) and the saved state between them (exp_state_*).
 */
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

#include "export.h"
#include "journal.h"
#include "kr_limits.h"
#include "test_util.h"

#define DIR_CAP  1024
#define ROUNDS   12
#define TENANT_A 1u
#define TENANT_B 2u
#define T0       (1775001600ull * 1000000000ull)
#define STEP     1000000000ull

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
    uint64_t a_seqs[4 * ROUNDS]; /* tenant A's seqs, by tseq - 1 (every test's appends) */
    size_t na;
} fx;

static void append_one(uint64_t tenant, const char *payload)
{
    struct jrn_event e;
    memset(&e, 0, sizeof e);
    e.tenant = tenant;
    e.stream = "account/a";
    e.stream_len = strlen(e.stream);
    e.type = "account.updated";
    e.type_len = strlen(e.type);
    e.actor = "account/alice";
    e.actor_len = strlen(e.actor);
    assert_int_equal(jrn_stream_version(fx.j, tenant, e.stream, e.stream_len, &e.expected_version),
                     KR_OK);
    e.payload = (const uint8_t *)payload;
    e.payload_len = strlen(payload);
    assert_int_equal(jrn_append(fx.j, &e, 1), KR_OK);
    if (tenant == TENANT_A) {
        assert_true(fx.na < sizeof fx.a_seqs / sizeof fx.a_seqs[0]);
        fx.a_seqs[fx.na++] = e.seq;
    }
}

static void append_round(void)
{
    for (int i = 0; i < ROUNDS; i++) {
        append_one(TENANT_A, "tenant A event");
        append_one(TENANT_B, "tenant B event");
    }
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
    return 0;
}

static int fixture_teardown(void **state)
{
    (void)state;
    jrn_close(fx.j);
    kr_test_rmrf(fx.root);
    return 0;
}

static char *export_of(struct journal *j, uint64_t tenant, uint64_t from, uint64_t since_size,
                       size_t *len)
{
    struct exp_options o = {.tenant = tenant, .from = from, .since_size = since_size};
    char *doc = NULL;
    struct exp_built b;
    assert_int_equal(exp_build(j, &o, &doc, len, &b), KR_OK);
    assert_non_null(doc);
    return doc;
}

static kr_err verify_since(const char *doc, size_t len, const struct exp_state *since,
                           struct exp_state **next, struct exp_report *r)
{
    return exp_verify_since((const uint8_t *)doc, len, fx.info.pk, since, next, r);
}

/* Serializes j as an export is written (compact, newline). */
static char *redump(const json_t *j, size_t *len)
{
    char *s = json_dumps(j, JSON_COMPACT);
    assert_non_null(s);
    size_t n = strlen(s);
    char *out = malloc(n + 2);
    assert_non_null(out);
    memcpy(out, s, n + 1);
    out[n] = '\n';
    out[n + 1] = '\0';
    free(s);
    *len = n + 1;
    return out;
}

/* The first export's state, a second export continuing it, its state. */
static void test_continued(void **state)
{
    (void)state;
    append_round();
    size_t len;
    char *doc = export_of(fx.j, TENANT_A, 0, 0, &len);
    struct exp_report r;
    struct exp_state *s1 = NULL, *s2 = NULL;
    assert_int_equal(verify_since(doc, len, NULL, &s1, &r), KR_OK);
    assert_non_null(s1);
    assert_int_equal(exp_state_last_seq(s1), fx.a_seqs[ROUNDS - 1]);
    assert_int_equal(exp_state_last_tseq(s1), ROUNDS);
    assert_int_equal(exp_state_size(s1), r.checkpoint_size);
    free(doc);

    /* Saved and loaded, byte for byte. */
    char path[DIR_CAP + 16];
    snprintf(path, sizeof path, "%.1000s/state", fx.root);
    assert_int_equal(exp_state_save(s1, path), KR_OK);
    struct exp_state *loaded = NULL;
    assert_int_equal(exp_state_load(path, &loaded), KR_OK);
    size_t l1, l2;
    char *d1 = exp_state_dump(s1, &l1), *d2 = exp_state_dump(loaded, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(d1, d2, l1);
    free(d1);
    free(d2);
    exp_state_free(loaded);

    append_round();
    doc = export_of(fx.j, TENANT_A, exp_state_last_seq(s1) + 1, exp_state_size(s1), &len);
    assert_int_equal(verify_since(doc, len, s1, &s2, &r), KR_OK);
    assert_int_equal(r.first_tseq, ROUNDS + 1);
    assert_int_equal(r.records, ROUNDS);
    assert_non_null(s2);
    assert_int_equal(exp_state_last_tseq(s2), 2 * ROUNDS);
    assert_true(exp_state_size(s2) > exp_state_size(s1));
    /* Without a state it verifies too (the since proof is only shaped). */
    assert_int_equal(verify_since(doc, len, NULL, NULL, &r), KR_OK);
    free(doc);

    /* Without the since proof: refused. */
    doc = export_of(fx.j, TENANT_A, exp_state_last_seq(s1) + 1, 0, &len);
    assert_int_equal(verify_since(doc, len, s1, NULL, &r), KR_ECORRUPT);
    assert_string_equal(r.where, "since");
    free(doc);

    /* A record left out between the two: refused, and named. */
    doc = export_of(fx.j, TENANT_A, fx.a_seqs[ROUNDS + 1], exp_state_size(s1), &len);
    assert_int_equal(verify_since(doc, len, s1, NULL, &r), KR_ECORRUPT);
    assert_string_equal(r.where, "records[0]");
    assert_non_null(strstr(r.what, "left out"));
    free(doc);

    /* Overlapping the previous export: refused. */
    doc = export_of(fx.j, TENANT_A, 0, exp_state_size(s1), &len);
    assert_int_equal(verify_since(doc, len, s1, NULL, &r), KR_ECORRUPT);
    assert_string_equal(r.where, "records[0]");
    free(doc);

    /* The since proof edited, or for another size: refused. */
    doc = export_of(fx.j, TENANT_A, exp_state_last_seq(s1) + 1, exp_state_size(s1), &len);
    json_t *jd = json_loadb(doc, len, 0, NULL);
    assert_non_null(jd);
    json_t *since = json_object_get(jd, "since");
    json_t *proof = json_object_get(since, "proof");
    assert_true(json_array_size(proof) > 0);
    uint8_t h[32];
    memset(h, 0x5a, sizeof h);
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, h, sizeof h, sodium_base64_VARIANT_ORIGINAL);
    json_array_set_new(proof, 0, json_string(b64));
    size_t n;
    char *edited = redump(jd, &n);
    assert_int_equal(verify_since(edited, n, s1, NULL, &r), KR_ECORRUPT);
    assert_string_equal(r.where, "since");
    assert_non_null(strstr(r.what, "rewritten"));
    free(edited);
    /* A since member of the wrong shape fails even without a state. */
    json_object_set_new(since, "size", json_integer(0));
    edited = redump(jd, &n);
    assert_int_equal(verify_since(edited, n, NULL, NULL, &r), KR_ECORRUPT);
    assert_string_equal(r.where, "since");
    json_object_set_new(since, "extra", json_true());
    json_object_set_new(since, "size", json_integer(1));
    free(edited);
    edited = redump(jd, &n);
    assert_int_equal(verify_since(edited, n, NULL, NULL, &r), KR_ECORRUPT);
    assert_string_equal(r.where, "since");
    free(edited);
    json_decref(jd);
    free(doc);
    doc = export_of(fx.j, TENANT_A, exp_state_last_seq(s1) + 1, exp_state_size(s1) - 1, &len);
    assert_int_equal(verify_since(doc, len, s1, NULL, &r), KR_ECORRUPT);
    assert_string_equal(r.where, "since");
    free(doc);

    /* A state of another tenant: refused. */
    struct exp_state *sb = NULL;
    doc = export_of(fx.j, TENANT_B, 0, 0, &len);
    assert_int_equal(verify_since(doc, len, NULL, &sb, &r), KR_OK);
    free(doc);
    doc = export_of(fx.j, TENANT_A, exp_state_last_seq(s1) + 1, exp_state_size(sb), &len);
    assert_int_equal(verify_since(doc, len, sb, NULL, &r), KR_EINVAL);
    assert_string_equal(r.where, "since");
    free(doc);
    exp_state_free(sb);

    /* Asking for a proof from a size the journal has not reached. */
    struct exp_options o = {.tenant = TENANT_A, .since_size = exp_state_size(s2) + 1000};
    char *d = NULL;
    struct exp_built b;
    assert_int_equal(exp_build(fx.j, &o, &d, &len, &b), KR_EINVAL);
    assert_null(d);
    exp_state_free(s1);
    exp_state_free(s2);
}

/* A state of another journal (another id, origin and key): refused. */
static void test_other_journal(void **state)
{
    (void)state;
    char dir[DIR_CAP + 16];
    snprintf(dir, sizeof dir, "%.1000s/other", fx.root);
    struct jrn_options o = {.dir = dir, .clock = &fx.clock, .signers = 1};
    struct jrn_info info;
    struct journal *j = NULL;
    assert_int_equal(jrn_create(&o, &info), KR_OK);
    assert_int_equal(jrn_open(&o, &j), KR_OK);
    struct journal *keep = fx.j;
    fx.j = j;
    append_one(TENANT_A, "other journal");
    fx.j = keep;
    size_t len;
    char *doc = export_of(j, TENANT_A, 0, 0, &len);
    struct exp_report r;
    struct exp_state *other = NULL;
    assert_int_equal(exp_verify_since((const uint8_t *)doc, len, info.pk, NULL, &other, &r), KR_OK);
    free(doc);
    jrn_close(j);
    doc = export_of(fx.j, TENANT_A, fx.a_seqs[fx.na - 1], 1, &len);
    assert_int_equal(verify_since(doc, len, other, NULL, &r), KR_EINVAL);
    assert_non_null(strstr(r.what, "another journal"));
    free(doc);
    exp_state_free(other);
}

/* The state is hostile: every truncation and every edited byte is refused
 * or, if it still parses, refused by verification; never a crash. */
static void test_state_hostile(void **state)
{
    (void)state;
    size_t len;
    char *doc = export_of(fx.j, TENANT_A, 0, 0, &len);
    struct exp_report r;
    struct exp_state *s = NULL;
    assert_int_equal(verify_since(doc, len, NULL, &s, &r), KR_OK);
    free(doc);
    size_t sl;
    char *text = exp_state_dump(s, &sl);
    assert_non_null(text);
    struct exp_state *p = NULL;
    assert_int_equal(exp_state_parse((const uint8_t *)text, sl, &p), KR_OK);
    exp_state_free(p);
    for (size_t i = 0; i < sl; i++) {
        assert_int_equal(exp_state_parse((const uint8_t *)text, i, &p), KR_ECORRUPT);
        assert_null(p);
    }
    /* Continuing it: an export after everything of tenant A so far. */
    append_one(TENANT_A, "one more");
    doc = export_of(fx.j, TENANT_A, exp_state_last_seq(s) + 1, exp_state_size(s), &len);
    assert_int_equal(verify_since(doc, len, s, NULL, &r), KR_OK);
    size_t accepted = 0;
    const char *sq = strstr(text, "\"last_seq\":");
    assert_non_null(sq);
    size_t seq_at = (size_t)(sq - text) + strlen("\"last_seq\":"), seq_end = seq_at;
    while (text[seq_end] >= '0' && text[seq_end] <= '9')
        seq_end++;
    for (size_t i = 0; i < sl; i++) {
        char saved = text[i];
        text[i] = (char)(saved ^ 0x01);
        kr_err err = exp_state_parse((const uint8_t *)text, sl, &p);
        if (err == KR_OK) {
            /* Only an edited last_seq below the new first seq still verifies:
             * the seq is a cross-check, the signed tseq proves the continuation. */
            if (verify_since(doc, len, p, NULL, &r) == KR_OK) {
                assert_true(i >= seq_at && i < seq_end);
            }
            accepted++;
            exp_state_free(p);
        } else {
            assert_null(p);
        }
        text[i] = saved;
    }
    assert_true(accepted > 0); /* edits of the values reach verification */
    /* Whitespace, a member more, too large. */
    char *spaced = malloc(sl + 2);
    spaced[0] = ' ';
    memcpy(spaced + 1, text, sl);
    assert_int_equal(exp_state_parse((const uint8_t *)spaced, sl + 1, &p), KR_ECORRUPT);
    free(spaced);
    uint8_t *big = calloc(1, KR_EXPORT_STATE_MAX + 1);
    assert_int_equal(exp_state_parse(big, KR_EXPORT_STATE_MAX + 1, &p), KR_ETOOLARGE);
    free(big);
    char path[DIR_CAP + 16];
    snprintf(path, sizeof path, "%.1000s/nostate", fx.root);
    assert_int_equal(exp_state_load(path, &p), KR_ENOTFOUND);
    free(text);
    free(doc);
    exp_state_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_continued),
        cmocka_unit_test(test_other_journal),
        cmocka_unit_test(test_state_hostile),
    };
    return cmocka_run_group_tests(tests, fixture_build, fixture_teardown);
}
