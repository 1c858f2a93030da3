/*
 * audit_cli_test.c: `kiroku export`, `kiroku audit verify` and `kiroku audit
 * report` through the binary (KR_KIROKU_BIN).
 *
 * The data directory is made through the domain (tests/test_domain.h), with
 * its clock under the test's control: tenants A and B signed up, A's users
 * logging in and failing, a lock; a notice and two incidents for A whose
 * titles hold HTML and Markdown markup, one notified within 72 hours and one
 * after; B's records carry their own stream names and commitments, which an
 * export of A must not hold. The platform's operations log (a service start
 * after an upgrade, an operator's maintenance record with markup, a failed
 * backup) is appended as serve and operators write it. The domain stays open (a server would be):
 * the commands read the directory read-only beside it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "notices.h"
#include "test_domain.h"
#include "test_util.h"

#define OUT_MAX ((size_t)4 << 20)
#define HOUR    (3600ull * 1000000000ull)

static struct td *t;
static uint64_t ta, tb;
static struct kr_caller ma, mb, op;
static char *out, *err;
static char pub[KR_PUBKEY_B64_LEN], file_a[1100], file_b[1100], tmp[1100];
static const char hostile[] = "<script>alert('x')</script> & **bold** | cell";

static int run(const char *const *args)
{
    int rc = kr_test_run(KR_KIROKU_BIN, args, out, err, OUT_MAX);
    return rc;
}

static void set_now(uint64_t ns)
{
    atomic_store(&t->now, ns);
}

static uint64_t now(void)
{
    return atomic_load(&t->now);
}

static int setup(void **state)
{
    (void)state;
    out = malloc(OUT_MAX);
    err = malloc(OUT_MAX);
    if (!out || !err || sodium_init() < 0)
        return -1;
    t = td_new(71);
    ta = td_signup(t, "owner@a.example", "correct horse 1", &ma, NULL);
    tb = td_signup(t, "bmarker@b.example", "correct horse 2", &mb, NULL);
    op = td_operator();
    struct jrn_info info;
    jrn_get_info(t->d->j, &info);
    kr_pubkey_to_b64(info.pk, pub);

    /* A notice for everyone, with markup in its title. */
    struct kr_payload *p = td_args(t);
    kr_set_u64(p, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_CHANGE);
    kr_set_str(p, KR_FLD_TITLE, hostile);
    kr_set_str(p, KR_FLD_BODY, "terms change");
    kr_set_u64(p, KR_FLD_EFFECTIVE, now() + 24 * HOUR);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_ALL);
    if (td_exec(t, &op, KR_OP_NOTICES_PUBLISH) != KR_OK)
        return -1;
    /* Two incidents for A: the first notified in time, the second late. */
    uint8_t inc[2][16];
    for (int i = 0; i < 2; i++) {
        p = td_args(t);
        kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_BREACH);
        kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_HIGH);
        kr_set_str(p, KR_FLD_TITLE, i == 0 ? "in time" : hostile);
        kr_set_str(p, KR_FLD_SUMMARY, "s");
        kr_set_u64(p, KR_FLD_DETECTED, now() - HOUR);
        kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
        kr_set_tenants(p, KR_FLD_TENANTS, &ta, 1);
        if (td_exec(t, &op, KR_OP_INCIDENTS_OPEN) != KR_OK)
            return -1;
        td_get_id(t, "incident", inc[i]);
    }
    for (int i = 0; i < 2; i++) {
        if (i == 1)
            set_now(now() + 80 * HOUR);
        p = td_args(t);
        kr_set_bytes(p, KR_FLD_INCIDENT, inc[i], 16);
        kr_set_u64(p, KR_FLD_TENANT, ta);
        kr_set_u64(p, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
        if (td_exec(t, &op, KR_OP_INCIDENTS_NOTIFY) != KR_OK)
            return -1;
    }
    /* The platform's operations log, as serve and operators write it (plain
     * payloads, fields in schema order). */
    static const struct {
        const char *type, *stream, *actor;
        const char *keys[3], *vals[3];
    } ops_log[] = {
        {"serve.started",
         "serve",
         "system",
         {"kiroku_version", "previous_version", "host"},
         {"0.2.0", "0.1.0", "db1.example"}},
        {"maintenance.recorded",
         "maintenance/0102030405060708090a0b0c0d0e0f10",
         "operator/0102030405060708090a0b0c0d0e0f10",
         {"account", "work", "host"},
         {NULL, "replaced <b>disk</b> & rebooted", "db1.example"}},
        {"backup.failed", "backups", "system", {"reason", NULL, NULL}, {"disk full", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof ops_log / sizeof ops_log[0]; i++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        size_t n = ops_log[i].keys[1] ? 3 : 1;
        msgpack_pack_map(&pk, n);
        for (size_t k = 0; k < n; k++) {
            msgpack_pack_str(&pk, strlen(ops_log[i].keys[k]));
            msgpack_pack_str_body(&pk, ops_log[i].keys[k], strlen(ops_log[i].keys[k]));
            if (ops_log[i].vals[k]) {
                msgpack_pack_str(&pk, strlen(ops_log[i].vals[k]));
                msgpack_pack_str_body(&pk, ops_log[i].vals[k], strlen(ops_log[i].vals[k]));
            } else {
                static const uint8_t acct[16] = {1, 2,  3,  4,  5,  6,  7,  8,
                                                 9, 10, 11, 12, 13, 14, 15, 16};
                msgpack_pack_bin(&pk, 16);
                msgpack_pack_bin_body(&pk, acct, 16);
            }
        }
        struct jrn_event e;
        memset(&e, 0, sizeof e);
        e.stream = ops_log[i].stream;
        e.stream_len = strlen(e.stream);
        e.type = ops_log[i].type;
        e.type_len = strlen(e.type);
        e.actor = ops_log[i].actor;
        e.actor_len = strlen(e.actor);
        e.payload = (const uint8_t *)sb.data;
        e.payload_len = sb.size;
        if (jrn_stream_version(t->d->j, 0, e.stream, e.stream_len, &e.expected_version) ||
            jrn_append(t->d->j, &e, 1) != KR_OK)
            return -1;
        msgpack_sbuffer_destroy(&sb);
    }
    snprintf(file_a, sizeof file_a, "%.1000s/export-a.json", t->dir);
    snprintf(file_b, sizeof file_b, "%.1000s/export-b.json", t->dir);
    snprintf(tmp, sizeof tmp, "%.1000s/edited.json", t->dir);
    char ts[32];
    snprintf(ts, sizeof ts, "%" PRIu64, ta);
    const char *a1[] = {"export", "--data", t->dir, "--tenant", ts, "--out", file_a, NULL};
    if (run(a1) != 0)
        return -1;
    snprintf(ts, sizeof ts, "%" PRIu64, tb);
    const char *a2[] = {"export", "--data", t->dir, "--tenant", ts, "--out", file_b, NULL};
    if (run(a2) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    td_free(t);
    free(out);
    free(err);
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static int verify_file(const char *path, bool json)
{
    const char *a[] = {"audit", "verify", path, "--pubkey", pub, json ? "--json" : NULL, NULL};
    return run(a);
}

/* ---- export and verify ---- */

static void test_export_verifies(void **state)
{
    (void)state;
    assert_int_equal(verify_file(file_a, false), 0);
    assert_non_null(strstr(out, "ok: tenant"));
    assert_int_equal(verify_file(file_a, true), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(strtoull(json_string_value(json_object_get(j, "tenant")), NULL, 10), ta);
    assert_true(json_is_true(json_object_get(j, "from_start")));
    assert_int_equal(json_integer_value(json_object_get(j, "first_tseq")), 1);
    json_decref(j);

    /* The key as a .pub file works too. */
    char path[1100];
    snprintf(path, sizeof path, "%.1000s/keys/journal-1.pub", t->dir);
    const char *a[] = {"audit", "verify", file_a, "--pubkey", path, NULL};
    assert_int_equal(run(a), 0);
}

static void test_edited_byte_fails(void **state)
{
    (void)state;
    size_t len;
    char *b = slurp(file_a, &len);
    /* A byte in each stretch of the file: records, proofs, notes, the top. */
    for (size_t i = 0; i < len; i += len / 23 + 1) {
        b[i] ^= 0x01;
        spit(tmp, b, len);
        b[i] ^= 0x01;
        int rc = verify_file(tmp, true);
        if (rc != 1)
            fail_msg("byte %zu edited: exit %d, %s", i, rc, out);
        assert_non_null(strstr(out, "\"ok\":false"));
        assert_non_null(strstr(out, "\"where\":"));
    }
    free(b);
}

static void test_left_out_and_swapped(void **state)
{
    (void)state;
    size_t la, lb;
    char *a = slurp(file_a, &la), *b = slurp(file_b, &lb);
    json_error_t je;
    json_t *ja = json_loadb(a, la, 0, &je), *jb = json_loadb(b, lb, 0, &je);
    assert_non_null(ja);
    assert_non_null(jb);
    json_t *recs = json_object_get(ja, "records");
    assert_true(json_array_size(recs) > 4);
    json_t *kept = json_incref(json_array_get(recs, 2));
    json_array_remove(recs, 2);
    char *s = json_dumps(ja, JSON_COMPACT);
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\n';
    spit(tmp, d, n + 1);
    free(s);
    free(d);
    assert_int_equal(verify_file(tmp, false), 1);
    assert_non_null(strstr(out, "left out"));
    assert_non_null(strstr(out, "records[2]"));

    /* B's record in A's place. */
    json_array_insert_new(recs, 2, kept);
    json_array_set(recs, 0, json_array_get(json_object_get(jb, "records"), 0));
    s = json_dumps(ja, JSON_COMPACT);
    n = strlen(s);
    d = malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\n';
    spit(tmp, d, n + 1);
    free(s);
    free(d);
    assert_int_equal(verify_file(tmp, false), 1);
    assert_non_null(strstr(out, "FAILED"));
    json_decref(ja);
    json_decref(jb);
    free(a);
    free(b);
}

static void test_nothing_of_b(void **state)
{
    (void)state;
    size_t la;
    char *a = slurp(file_a, &la);
    /* B's records as stored: their streams and commitments. */
    const char *args[] = {"dump", "--data", t->dir, "--json", NULL};
    assert_int_equal(run(args), 0);
    size_t checked = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *r = json_loads(line, 0, &je);
        assert_non_null(r);
        if (strtoull(json_string_value(json_object_get(r, "tenant")), NULL, 10) == tb) {
            const char *stream = json_string_value(json_object_get(r, "stream"));
            const char *hex = json_string_value(json_object_get(r, "commitment"));
            uint8_t c[32];
            char b64[64];
            assert_int_equal(sodium_hex2bin(c, 32, hex, 64, NULL, NULL, NULL), 0);
            sodium_bin2base64(b64, sizeof b64, c, 32, sodium_base64_VARIANT_ORIGINAL);
            assert_null(memmem(a, la, hex, 64));
            assert_null(memmem(a, la, b64, 40));
            if (strchr(stream, '/')) /* "account/<hex>": B's own ids */
                assert_null(
                    memmem(a, la, strchr(stream, '/') + 1, strlen(strchr(stream, '/') + 1)));
            checked++;
        }
        json_decref(r);
    }
    assert_true(checked > 5);
    assert_null(memmem(a, la, "bmarker", 7));
    free(a);
}

static void test_wrong_key_and_bad_files(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    char other[KR_PUBKEY_B64_LEN];
    crypto_sign_keypair(pk, sk);
    kr_pubkey_to_b64(pk, other);
    const char *a[] = {"audit", "verify", file_a, "--pubkey", other, NULL};
    assert_int_equal(run(a), 1);
    assert_non_null(strstr(out, "trusted public key"));

    size_t len;
    char *b = slurp(file_a, &len);
    spit(tmp, b, len / 2);
    assert_int_equal(verify_file(tmp, false), 1);
    assert_non_null(strstr(out, "not JSON"));
    spit(tmp, "garbage\x01\xff", 9);
    assert_int_equal(verify_file(tmp, false), 1);
    spit(tmp, "", 0);
    assert_int_equal(verify_file(tmp, false), 1);
    free(b);
    assert_int_equal(verify_file("/nonexistent/export.json", false), 3);
    const char *bad_key[] = {"audit", "verify", file_a, "--pubkey", "notakey", NULL};
    assert_int_equal(run(bad_key), 2);
    const char *no_out[] = {"export", "--data", t->dir, "--tenant", "1", NULL};
    assert_int_equal(run(no_out), 2);
    const char *none[] = {"export", "--data", t->dir, "--tenant", "12345", "--out", tmp, NULL};
    assert_int_equal(run(none), 3);
    const char *audit_only[] = {"audit", NULL};
    assert_int_equal(run(audit_only), 2);
}

static void test_export_range(void **state)
{
    (void)state;
    char ts[32];
    snprintf(ts, sizeof ts, "%" PRIu64, ta);
    /* From a later seq: verifies, but not from the tenant's start. */
    const char *a[] = {"export", "--data", t->dir, "--tenant", ts,  "--from",
                       "20",     "--out",  tmp,    "--json",   NULL};
    assert_int_equal(run(a), 0);
    assert_int_equal(verify_file(tmp, true), 0);
    assert_non_null(strstr(out, "\"from_start\":false"));
    const char *bad[] = {"export", "--data", t->dir, "--tenant", ts,  "--from",
                         "20",     "--to",   "10",   "--out",    tmp, NULL};
    assert_int_equal(run(bad), 2);
}

/* ---- continuing a verified export ---- */

/* Runs last: it appends records of A. */
static void test_since(void **state)
{
    (void)state;
    char s1[1100], s2[1100], sb[1100], f2[1100], full[1100], ts[32];
    snprintf(s1, sizeof s1, "%.1000s/a.state", t->dir);
    snprintf(s2, sizeof s2, "%.1000s/a2.state", t->dir);
    snprintf(sb, sizeof sb, "%.1000s/b.state", t->dir);
    snprintf(f2, sizeof f2, "%.1000s/export-a2.json", t->dir);
    snprintf(full, sizeof full, "%.1000s/export-a-full.json", t->dir);
    snprintf(ts, sizeof ts, "%" PRIu64, ta);
    const char *v1[] = {"audit", "verify", file_a, "--pubkey", pub, "--save-state", s1, NULL};
    assert_int_equal(run(v1), 0);
    assert_non_null(strstr(out, "state saved"));
    const char *vb[] = {"audit", "verify", file_b, "--pubkey", pub, "--save-state", sb, NULL};
    assert_int_equal(run(vb), 0);
    /* A failed check saves nothing. */
    char nostate[1100];
    snprintf(nostate, sizeof nostate, "%.1000s/none.state", t->dir);
    const char *vw[] = {"audit",   "verify", file_a,         "--pubkey", pub,
                        "--since", sb,       "--save-state", nostate,    NULL};
    assert_int_equal(run(vw), 1);
    assert_non_null(strstr(out, "another journal, origin or tenant"));
    FILE *f = fopen(nostate, "rb");
    assert_null(f);

    /* More of A: an incident notified to it. */
    struct kr_payload *p = td_args(t);
    kr_set_u64(p, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_BREACH);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_HIGH);
    kr_set_str(p, KR_FLD_TITLE, "later");
    kr_set_str(p, KR_FLD_SUMMARY, "s");
    kr_set_u64(p, KR_FLD_DETECTED, now() - HOUR);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    kr_set_tenants(p, KR_FLD_TENANTS, &ta, 1);
    assert_int_equal(td_exec(t, &op, KR_OP_INCIDENTS_OPEN), KR_OK);
    uint8_t inc[16];
    td_get_id(t, "incident", inc);
    p = td_args(t);
    kr_set_bytes(p, KR_FLD_INCIDENT, inc, 16);
    kr_set_u64(p, KR_FLD_TENANT, ta);
    kr_set_u64(p, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
    assert_int_equal(td_exec(t, &op, KR_OP_INCIDENTS_NOTIFY), KR_OK);

    const char *e2[] = {"export",  "--data", t->dir,  "--tenant", ts,
                        "--since", s1,       "--out", f2,         NULL};
    assert_int_equal(run(e2), 0);
    const char *v2[] = {"audit", "verify",       f2, "--pubkey", pub, "--since",
                        s1,      "--save-state", s2, NULL};
    assert_int_equal(run(v2), 0);
    assert_non_null(strstr(out, "no record of the tenant left out"));
    /* Continued again from the new state: nothing new yet. */
    const char *e3[] = {"export",  "--data", t->dir,  "--tenant", ts,
                        "--since", s2,       "--out", full,       NULL};
    assert_int_equal(run(e3), 3);

    /* Exporting A after B's state: refused before anything is written. */
    const char *eb[] = {"export",  "--data", t->dir,  "--tenant", ts,
                        "--since", sb,       "--out", full,       NULL};
    assert_int_equal(run(eb), 2);
    assert_non_null(strstr(err, "a state of tenant"));

    /* B's state, an export without the since proof, a state that is not one. */
    const char *vb2[] = {"audit", "verify", f2, "--pubkey", pub, "--since", sb, "--json", NULL};
    assert_int_equal(run(vb2), 1);
    assert_non_null(strstr(out, "\"error\":\"invalid\""));
    const char *ef[] = {"export", "--data", t->dir, "--tenant", ts, "--out", full, NULL};
    assert_int_equal(run(ef), 0);
    const char *vf[] = {"audit", "verify", full, "--pubkey", pub, "--since", s1, NULL};
    assert_int_equal(run(vf), 1);
    assert_non_null(strstr(out, "FAILED: since"));
    const char *vg[] = {"audit", "verify", f2, "--pubkey", pub, "--since", file_a, NULL};
    assert_int_equal(run(vg), 1);
    assert_non_null(strstr(err, "not an export state"));
    const char *vm[] = {"audit", "verify", f2, "--pubkey", pub, "--since", nostate, NULL};
    assert_int_equal(run(vm), 3);
}

/* ---- report ---- */

static void test_report_md(void **state)
{
    (void)state;
    char ts[32];
    snprintf(ts, sizeof ts, "%" PRIu64, ta);
    const char *a[] = {"audit", "report", "--data", t->dir, "--tenant", ts, NULL};
    assert_int_equal(run(a), 0);
    assert_non_null(strstr(out, "# Audit report: tenant"));
    assert_non_null(strstr(out, "owner@a.example")); /* unsealed e-mail */
    assert_null(strstr(out, "bmarker@b.example"));
    assert_non_null(strstr(out, "account created"));
    assert_non_null(strstr(out, "login"));
    assert_non_null(strstr(out, "notice published"));
    assert_non_null(strstr(out, "incident opened"));
    /* Times in JST: sign-up at 2026-04-01T00:00Z is 09:00 in Japan. */
    assert_non_null(strstr(out, "2026-04-01T09:00:"));
    assert_non_null(strstr(out, "+09:00"));
    assert_null(strstr(out, "Z |"));
    /* The deadline: one met, one missed. */
    assert_non_null(strstr(out, "| met |"));
    assert_non_null(strstr(out, "MISSED (notified late)"));
    assert_non_null(strstr(out, "within the 72 hours"));
    assert_non_null(strstr(out, "after the 72-hour deadline (missed)"));
    /* Markup in journal text is escaped. */
    assert_null(strstr(out, "<script>"));
    assert_null(strstr(out, "**bold**"));
    assert_non_null(strstr(out, "\\<script\\>"));
    assert_non_null(strstr(out, "\\| cell"));
    /* The platform's operations log. */
    assert_non_null(strstr(out, "kiroku 0.2.0 (upgraded from 0.1.0)"));
    assert_non_null(strstr(out, "on db1.example: replaced \\<b\\>disk\\</b\\> \\& rebooted"));
    assert_non_null(strstr(out, "backup FAILED | "));
    assert_non_null(strstr(out, "disk full"));
}

static void test_report_html(void **state)
{
    (void)state;
    char ts[32], path[1100];
    snprintf(ts, sizeof ts, "%" PRIu64, ta);
    snprintf(path, sizeof path, "%.1000s/report.html", t->dir);
    const char *a[] = {"audit",    "report", "--data", t->dir, "--tenant", ts,
                       "--format", "html",   "--out",  path,   NULL};
    assert_int_equal(run(a), 0);
    size_t len;
    char *h = slurp(path, &len);
    assert_int_equal(strncmp(h, "<!DOCTYPE html>", 15), 0);
    assert_non_null(strstr(h, "<style>"));
    assert_non_null(strstr(h, "@media print"));
    assert_non_null(strstr(h, "class=\"timeline\""));
    assert_non_null(strstr(h, "owner@a.example"));
    assert_non_null(strstr(h, "2026-04-01T09:00:"));
    assert_non_null(strstr(h, "MISSED (notified late)"));
    /* Self-contained: no script, nothing fetched. */
    assert_null(strstr(h, "<script"));
    assert_null(strstr(h, "http://"));
    assert_null(strstr(h, "https://"));
    assert_null(strstr(h, "src="));
    assert_null(strstr(h, "@import"));
    assert_null(strstr(h, "url("));
    /* Escaped, everywhere it occurs. */
    assert_non_null(strstr(h, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; **bold**"));
    assert_non_null(strstr(h, "replaced &lt;b&gt;disk&lt;/b&gt; &amp; rebooted"));
    assert_null(strstr(h, "<b>disk"));
    free(h);
    const char *bad[] = {"audit", "report",   "--data", t->dir, "--tenant",
                         ts,      "--format", "pdf",    NULL};
    assert_int_equal(run(bad), 2);
    const char *none[] = {"audit", "report", "--data", t->dir, "--tenant", "12345", NULL};
    assert_int_equal(run(none), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_verifies),
        cmocka_unit_test(test_edited_byte_fails),
        cmocka_unit_test(test_left_out_and_swapped),
        cmocka_unit_test(test_nothing_of_b),
        cmocka_unit_test(test_wrong_key_and_bad_files),
        cmocka_unit_test(test_export_range),
        cmocka_unit_test(test_report_md),
        cmocka_unit_test(test_report_html),
        cmocka_unit_test(test_since),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
