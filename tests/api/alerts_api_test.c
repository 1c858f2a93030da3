/*
 * alerts_api_test.c: security alerts in a running `kiroku serve`: its
 * scanner thread, configured by the settings file (alerts.*), raises an
 * alert for repeated failed logins within a scan interval; the operator
 * lists and acknowledges it over the operator endpoint, and a tenant's
 * master is refused alerts.list.
 */
#include "accounts.h"
#include "api_client.h"
#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

static int login(struct ac *c, const char *code, const char *email, const char *password,
                 uint8_t token[32])
{
    ac_str(c, KR_FLD_TENANT_CODE, code);
    ac_str(c, KR_FLD_EMAIL, email);
    ac_str(c, KR_FLD_PASSWORD, password);
    int rc = ac_call(c, KR_OP_AUTH_LOGIN, NULL);
    if (rc == AC_OK && token) {
        const msgpack_object *t = ac_get(ac_result(c), KR_FLD_TOKEN);
        assert_non_null(t);
        assert_int_equal(t->via.bin.size, 32);
        memcpy(token, t->via.bin.ptr, 32);
    }
    return rc;
}

struct op_wait {
    struct ac *op;
    const uint8_t *token;
};

/* For kr_test_wait_for: whether alerts.list has an alert (the last reply
 * keeps the list). */
static bool alert_listed(void *arg)
{
    struct op_wait *w = arg;
    assert_int_equal(ac_call(w->op, KR_OP_ALERTS_LIST, w->token), AC_OK);
    const msgpack_object *r = ac_result(w->op);
    for (uint32_t i = 0; i < r->via.map.size; i++) {
        const msgpack_object *k = &r->via.map.ptr[i].key, *v = &r->via.map.ptr[i].val;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 6 &&
            memcmp(k->via.str.ptr, "alerts", 6) == 0)
            return v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size > 0;
    }
    fail_msg("alerts.list: no alerts in the result");
    return false;
}

static void test_serve_raises_alerts(void **state)
{
    (void)state;
    static char conf[600];
    static const char *extra[4];
    char tmp[512];
    kr_test_tmpdir(tmp, sizeof tmp);
    snprintf(conf, sizeof conf, "%s/kiroku.conf", tmp);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs("alerts.scan_interval_s = 1\nalerts.login_failures.count = 3\n"
          "alerts.login_failures.window_s = 3600\n",
          f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(conf, 0600), 0);
    extra[0] = "--config";
    extra[1] = conf;
    extra[2] = NULL;
    struct ac_server s;
    ac_server_start_with(&s, extra);

    struct ac op, cl;
    uint8_t op_token[32], master[32];
    ac_open(&op, s.op_url);
    ac_open(&cl, s.ipc);
    assert_int_equal(login(&op, KR_PLATFORM_CODE, s.op_email, s.op_password, op_token), AC_OK);
    assert_int_equal(ac_call(&op, KR_OP_ALERTS_LIST, op_token), AC_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(login(&cl, s.demo_code, s.demo_email, "not the password 1", NULL),
                         KR_ERR_UNAUTHENTICATED);
    struct op_wait w = {&op, op_token};
    assert_true(kr_test_wait_for(alert_listed, &w, KR_TEST_WAIT_MS, "the login_failures alert"));
    const msgpack_object *r = ac_result(&op);
    const msgpack_object *list = NULL;
    for (uint32_t i = 0; i < r->via.map.size; i++)
        if (r->via.map.ptr[i].key.via.str.size == 6 &&
            memcmp(r->via.map.ptr[i].key.via.str.ptr, "alerts", 6) == 0)
            list = &r->via.map.ptr[i].val;
    assert_non_null(list);
    assert_int_equal(list->via.array.size, 1);
    const msgpack_object *it = &list->via.array.ptr[0];
    const msgpack_object *rule = ac_get(it, KR_FLD_ALERT_RULE);
    assert_non_null(rule);
    assert_int_equal(rule->via.str.size, strlen("login_failures"));
    assert_memory_equal(rule->via.str.ptr, "login_failures", rule->via.str.size);
    const msgpack_object *ev = ac_get(it, KR_FLD_EVIDENCE);
    assert_int_equal(ev->via.bin.size, 24);
    uint8_t id[16];
    memcpy(id, ac_get(it, KR_FLD_ALERT)->via.bin.ptr, 16);

    /* acknowledged by the operator; the master may not list alerts */
    ac_bin(&op, KR_FLD_ALERT, id, 16);
    ac_u64(&op, KR_FLD_VERSION, 1);
    assert_int_equal(ac_call(&op, KR_OP_ALERTS_ACK, op_token), AC_OK);
    assert_int_equal(login(&cl, s.demo_code, s.demo_email, s.demo_password, master), AC_OK);
    assert_int_equal(ac_call(&cl, KR_OP_ALERTS_LIST, master), KR_ERR_FORBIDDEN);

    ac_close(&cl);
    ac_close(&op);
    assert_int_equal(ac_server_stop(&s), 0);
    kr_test_rmrf(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serve_raises_alerts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
