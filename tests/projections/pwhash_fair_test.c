/*
 * pwhash_fair_test.c: the Argon2id places (domain.c's dom_pwhash_acquire)
 * shared fairly per source and tenant code: a flood of logins with unknown
 * tenant codes from one source, filling every running and waiting place,
 * does not make another source's login fail, nor lifts the bounds.
 */
#include "accounts.h"
#include "test_domain.h"
#include "test_util.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* How long a wait for another thread's step may take before the test fails. */
#define WAIT_DEADLINE_S 20

struct login_job {
    struct td *t;
    struct kr_caller who;
    char code[40];
    const char *email, *password;
    kr_err err;
    _Atomic bool done;
};

static void *login_main(void *arg)
{
    struct login_job *j = arg;
    struct kr_payload *a = kr_payload_new();
    struct kr_wbuf out;
    struct kr_diag d;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    kr_set_str(a, KR_FLD_TENANT_CODE, j->code);
    kr_set_str(a, KR_FLD_EMAIL, j->email);
    kr_set_str(a, KR_FLD_PASSWORD, j->password);
    j->err = dom_exec(j->t->d, &j->who, KR_OP_AUTH_LOGIN, a, &out, &d);
    kr_wbuf_free(&out);
    kr_payload_free(a);
    atomic_store(&j->done, true);
    return NULL;
}

static uint64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

/* Waits until d has `waiting` waiters and `pushed` pushed out, failing the
 * test past the deadline. */
static void wait_queue(struct kr_domain *d, unsigned waiting, unsigned pushed)
{
    uint64_t end = now_s() + WAIT_DEADLINE_S;
    for (;;) {
        pthread_mutex_lock(&d->pwhash_mu);
        bool there = d->pwhash_waiting == waiting && d->pwhash_pushed_out == pushed;
        pthread_mutex_unlock(&d->pwhash_mu);
        if (there)
            return;
        if (now_s() > end)
            fail_msg("the Argon2id queue never reached %u waiting, %u pushed out", waiting, pushed);
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

static struct kr_caller from(uint8_t last)
{
    struct kr_caller c = td_anonymous();
    c.source[10] = 0xff, c.source[11] = 0xff, c.source[12] = 203, c.source[15] = last;
    return c;
}

/* One flood: every waiting place taken by logins from one source to
 * unknown tenant codes (by_code false), or from many sources to one tenant
 * code (by_code true); then one more of the flood is refused, and a real
 * login from elsewhere takes the newest flood waiter's place and succeeds. */
static void flood_then_login(bool by_code)
{
    struct td *t = td_new(11);
    struct kr_domain *d = t->d;
    struct kr_caller master;
    char code[40];
    (void)td_signup(t, "owner@shop.example.jp", "correct horse 1", &master, code);

    /* A login to an unknown tenant checks against a dummy hash, made on
     * first use under a lock: make it now, while places are free. */
    struct login_job prime = {
        .t = t, .who = from(9), .email = "x@flood.example.jp", .password = "guess guess"};
    snprintf(prime.code, sizeof prime.code, "tprime");
    (void)login_main(&prime);
    assert_int_equal(prime.err, KR_EAUTH);

    /* Every running place taken (by this thread, outside any op). */
    for (unsigned i = 0; i < KR_PWHASH_CONCURRENT_MAX; i++)
        assert_int_equal(dom_pwhash_acquire(d), KR_OK);

    /* Source A fills every waiting place with logins to unknown tenants. */
    enum { W = KR_PWHASH_WAITERS_MAX };
    static struct login_job flood[W], real;
    pthread_t th[W], rt;
    for (unsigned i = 0; i < W; i++) {
        flood[i] = (struct login_job){.t = t,
                                      .who = from(by_code ? (uint8_t)(100 + i) : 1),
                                      .email = "x@flood.example.jp",
                                      .password = "guess guess"};
        snprintf(flood[i].code, sizeof flood[i].code, "tflood%04u", by_code ? 0 : i);
        assert_int_equal(pthread_create(&th[i], NULL, login_main, &flood[i]), 0);
    }
    wait_queue(d, W, 0);

    /* One more of the flood is refused at once: it holds the whole queue. */
    struct login_job more = {
        .t = t, .who = from(1), .email = "x@flood.example.jp", .password = "guess guess"};
    snprintf(more.code, sizeof more.code, by_code ? "tflood0000" : "tflood-more");
    (void)login_main(&more);
    assert_int_equal(more.err, KR_EBUSY);
    wait_queue(d, W, 0);

    /* Source B's real login takes the place of A's newest waiter. */
    real = (struct login_job){
        .t = t, .who = from(2), .email = "owner@shop.example.jp", .password = "correct horse 1"};
    snprintf(real.code, sizeof real.code, "%s", code);
    assert_int_equal(pthread_create(&rt, NULL, login_main, &real), 0);
    wait_queue(d, W, 1);
    assert_false(atomic_load(&real.done));

    for (unsigned i = 0; i < KR_PWHASH_CONCURRENT_MAX; i++)
        dom_pwhash_release(d);
    assert_int_equal(pthread_join(rt, NULL), 0);
    assert_int_equal(real.err, KR_OK);
    unsigned busy = 0, auth = 0;
    for (unsigned i = 0; i < W; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        busy += flood[i].err == KR_EBUSY;
        auth += flood[i].err == KR_EAUTH;
    }
    assert_int_equal(busy, 1); /* the one pushed out */
    assert_int_equal(auth, W - 1);
    assert_true(d->pwhash_peak <= KR_PWHASH_CONCURRENT_MAX);
    assert_int_equal(d->pwhash_busy, 0);
    assert_int_equal(d->pwhash_waiting, 0);
    td_free(t);
}

static void test_flood_from_one_source(void **state)
{
    (void)state;
    flood_then_login(false);
}

static void test_flood_at_one_tenant_code(void **state)
{
    (void)state;
    flood_then_login(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flood_from_one_source),
        cmocka_unit_test(test_flood_at_one_tenant_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
