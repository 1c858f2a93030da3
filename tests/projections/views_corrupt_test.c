/*
 * views_corrupt_test.c: stored data that does not decode is KR_ECORRUPT with
 * its place, never KR_EINVAL: a view value (views.c's views_corrupt, read by
 * retention.c's job and tenants.list) names the view and the key; a stored
 * record the views cannot apply on a rebuild (views.c's apply_stored) names
 * its seq and event.
 */
#include "accounts.h"
#include "retention.h"
#include "test_domain.h"
#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Overwrites v.tenants' row of tenant with bytes that do not decode. */
static void corrupt_tenant_row(struct td *t, uint64_t tenant)
{
    MDB_txn *txn;
    uint8_t key[8], junk[3] = {0xde, 0xad, 0x01};
    v_put_u64(key, tenant);
    MDB_val k = {8, key}, v = {sizeof junk, junk};
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, 0, &txn), 0);
    assert_int_equal(mdb_put(txn, t->d->views.db[VIEW_TENANTS], &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

static void test_view_value_names_place(void **state)
{
    (void)state;
    struct td *t = td_new(3);
    struct kr_caller master, op = td_operator();
    uint64_t tenant = td_signup(t, "owner@shop.example.jp", "correct horse 1", &master, NULL);
    kr_set_u64(td_args(t), KR_FLD_TENANT, tenant);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_CANCEL), KR_OK);
    corrupt_tenant_row(t, tenant);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)tenant);

    struct ret_report *r = malloc(sizeof *r);
    assert_non_null(r);
    assert_int_equal(ret_run(t->d, false, r), KR_ECORRUPT);
    assert_string_equal(r->corrupt.field, "view v.tenants");
    assert_true(strncmp(r->corrupt.why, "key ", 4) == 0);
    assert_memory_equal(r->corrupt.why + 4, hex, 16);
    assert_int_equal(ret_run(t->d, true, r), KR_ECORRUPT);
    assert_string_equal(r->corrupt.field, "view v.tenants");
    free(r);
    /* The op retention.run: the same place in its diagnostics. */
    (void)td_args(t);
    assert_int_equal(td_exec(t, &op, KR_OP_RETENTION_RUN), KR_ECORRUPT);
    assert_string_equal(t->diag.field, "view v.tenants");

    /* An op reading it: internal to the caller, the place in the diagnostics. */
    (void)td_args(t);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_LIST), KR_ECORRUPT);
    assert_string_equal(t->diag.field, "view v.tenants");
    assert_memory_equal(t->diag.why + 4, hex, 16);
    assert_int_equal(dom_api_error(KR_ECORRUPT), KR_ERR_INTERNAL);
    td_free(t);
}

/* A record of a known type whose payload does not decode, in the journal
 * (appended with no views, as a damaged or forged journal would hold it):
 * rebuilding the views stops at it with KR_ECORRUPT naming its seq. */
static void test_stored_record_names_seq(void **state)
{
    (void)state;
    struct td *t = td_new(4);
    struct kr_caller master;
    (void)td_signup(t, "owner@shop.example.jp", "correct horse 1", &master, NULL);
    char dir[sizeof t->dir];
    snprintf(dir, sizeof dir, "%s", t->dir);
    dom_close(t->d);
    t->d = NULL;

    struct journal *j;
    struct jrn_options jo = {.dir = dir, .signers = 1};
    assert_int_equal(jrn_open(&jo, &j), KR_OK);
    static const uint8_t junk[] = {0x81, 0xa3, 'z', 'z', 'z', 0xc1};
    const char *type = kr_events[KR_EV_TENANT_CANCELLED].name;
    struct jrn_event e = {
        .tenant = 77,
        .stream = "tenant",
        .stream_len = 6,
        .type = type,
        .type_len = strlen(type),
        .actor = JRN_SYSTEM_ACTOR,
        .actor_len = strlen(JRN_SYSTEM_ACTOR),
        .payload = junk,
        .payload_len = sizeof junk,
    };
    assert_int_equal(jrn_append(j, &e, 1), KR_OK);
    uint64_t bad = e.seq;
    jrn_close(j);

    struct kr_domain_options o = {.dir = dir, .no_catch_up = true};
    assert_int_equal(dom_open(&o, &t->d), KR_OK);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_ECORRUPT);
    char want[40];
    snprintf(want, sizeof want, "record %llu", (unsigned long long)bad);
    assert_string_equal(t->d->views.corrupt.field, want);
    assert_true(strncmp(t->d->views.corrupt.why, type, strlen(type)) == 0);
    assert_non_null(strstr(t->d->views.corrupt.why, "does not decode"));
    dom_close(t->d);
    t->d = NULL;
    /* Opening catches the views up the same way: refused, not invalid. */
    struct kr_domain *d2 = NULL;
    struct kr_domain_options o2 = {.dir = dir};
    assert_int_equal(dom_open(&o2, &d2), KR_ECORRUPT);
    assert_null(d2);
    t->d = NULL;
    td_free(t);
}

/* A session record that does not decode, older than the log period: the
 * retention job's log truncation stops with KR_ECORRUPT naming its seq
 * (it would otherwise keep or strip it without knowing which). */
static void test_log_record_names_seq(void **state)
{
    (void)state;
    struct td *t = td_new(6);
    char dir[sizeof t->dir];
    snprintf(dir, sizeof dir, "%s", t->dir);
    dom_close(t->d);
    t->d = NULL;

    struct journal *j;
    struct jrn_options jo = {.dir = dir, .clock = &t->clock, .signers = 1};
    assert_int_equal(jrn_open(&jo, &j), KR_OK);
    static const uint8_t junk[] = {0x81, 0xa1, 'q', 0xc0};
    const char *type = kr_events[KR_EV_SESSION_CLOSED].name;
    static const char stream[] = "session/000102030405060708090a0b0c0d0e0f";
    struct jrn_event e = {
        .tenant = 77,
        .stream = stream,
        .stream_len = sizeof stream - 1,
        .type = type,
        .type_len = strlen(type),
        .actor = JRN_SYSTEM_ACTOR,
        .actor_len = strlen(JRN_SYSTEM_ACTOR),
        .payload = junk,
        .payload_len = sizeof junk,
    };
    assert_int_equal(jrn_append(j, &e, 1), KR_OK);
    uint64_t bad = e.seq;
    jrn_close(j);

    struct kr_domain_options o = {.dir = dir, .clock = &t->clock, .no_catch_up = true};
    assert_int_equal(dom_open(&o, &t->d), KR_OK);
    atomic_fetch_add(&t->now, (RET_LOG_DAYS_DEFAULT + 1) * RET_NS_PER_DAY);
    struct ret_report *r = malloc(sizeof *r);
    assert_non_null(r);
    assert_int_equal(ret_run(t->d, false, r), KR_ECORRUPT);
    char want[40];
    snprintf(want, sizeof want, "record %llu", (unsigned long long)bad);
    assert_string_equal(r->corrupt.field, want);
    assert_true(strncmp(r->corrupt.why, type, strlen(type)) == 0);
    free(r);
    td_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_view_value_names_place),
        cmocka_unit_test(test_stored_record_names_seq),
        cmocka_unit_test(test_log_record_names_seq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
