/*
 * backup_live_test.c: `kiroku backup` of a running `kiroku serve` while
 * clients write over the API. The backup runs in its own process beside the
 * server, which holds the journal's writer lock and the keystore's shared
 * open.lock: neither blocks the other. The generation checks, restores,
 * verifies, its rebuilt views equal the copied ones, and the restored server
 * answers for the contacts acknowledged before the backup began.
 */
#include "api_client.h"
#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WRITERS  3
#define OUT_MAX  (1u << 20)
#define KEPT_MAX 256

struct writer {
    const struct ac_server *srv;
    const uint8_t *token;
    atomic_bool *stop;
    atomic_ulong *acked;
    /* Contacts acknowledged before `mark` was set (and so before the backup
     * started), the newest KEPT_MAX. */
    atomic_bool *mark;
    uint8_t kept[KEPT_MAX][16];
    size_t nkept;
    int id;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct ac c;
    ac_open(&c, w->srv->ipc);
    for (int i = 0; !atomic_load(w->stop); i++) {
        char name[64];
        snprintf(name, sizeof name, "backup w%d n%d", w->id, i);
        ac_str(&c, KR_FLD_NAME, name);
        if (ac_call(&c, KR_OP_CONTACTS_REGISTER, w->token) != AC_OK)
            break;
        atomic_fetch_add(w->acked, 1);
        /* Acknowledged (durable) before the mark, so before the backup began:
         * it must be in the backup. A write acknowledged later may or may not. */
        if (!atomic_load(w->mark)) {
            uint8_t id[16];
            ac_res_id(&c, KR_FLD_CONTACT, id);
            memcpy(w->kept[w->nkept++ % KEPT_MAX], id, 16);
        }
    }
    ac_close(&c);
    return NULL;
}

static void login(const struct ac_server *srv, const char *url, uint8_t token[32])
{
    struct ac c;
    ac_open(&c, url);
    ac_str(&c, KR_FLD_TENANT_CODE, srv->demo_code);
    ac_str(&c, KR_FLD_EMAIL, srv->demo_email);
    ac_str(&c, KR_FLD_PASSWORD, srv->demo_password);
    assert_int_equal(ac_call(&c, KR_OP_AUTH_LOGIN, NULL), AC_OK);
    const msgpack_object *t = ac_get(ac_result(&c), KR_FLD_TOKEN);
    assert_non_null(t);
    assert_int_equal(t->via.bin.size, 32);
    memcpy(token, t->via.bin.ptr, 32);
    ac_close(&c);
}

static int run(const char *const *args, char *out, char *err)
{
    int rc = kr_test_run(KR_KIROKU_BIN, args, out, err, OUT_MAX);
    assert_true(rc >= 0);
    return rc;
}

/* Whether more than `past` writes are acknowledged. */
struct acked_past {
    atomic_ulong *acked;
    unsigned long past;
};
static bool acked_past(void *arg)
{
    const struct acked_past *a = arg;
    return atomic_load(a->acked) > a->past;
}

static void test_backup_of_a_running_server(void **state)
{
    (void)state;
    char *out = malloc(OUT_MAX), *err = malloc(OUT_MAX);
    assert_non_null(out);
    assert_non_null(err);
    struct ac_server srv;
    ac_server_start(&srv);
    uint8_t token[32];
    login(&srv, srv.ipc, token);

    atomic_bool stop = false, mark = false;
    atomic_ulong acked = 0;
    static struct writer w[WRITERS];
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){
            .srv = &srv, .token = token, .stop = &stop, .acked = &acked, .mark = &mark, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    struct acked_past first = {&acked, 199};
    assert_true(kr_test_wait_for(acked_past, &first, KR_TEST_WAIT_MS, "200 acknowledged writes"));
    atomic_store(&mark, true); /* what is acknowledged now is in the backup */
    unsigned long at_backup = atomic_load(&acked);

    char backups[600], gen[800], restored[540];
    snprintf(backups, sizeof backups, "%.500s/backups", srv.dir);
    snprintf(restored, sizeof restored, "%.500s/restored", srv.dir);
    const char *b[] = {"backup", "--data", srv.data, "--to", backups, "--json", NULL};
    if (run(b, out, err) != 0)
        fail_msg("backup beside a running server: %s %s", out, err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    snprintf(gen, sizeof gen, "%s/%s", backups,
             json_string_value(json_object_get(j, "generation")));
    json_decref(j);
    struct acked_past more = {&acked, at_backup};
    bool went_on = kr_test_wait_for(acked_past, &more, KR_TEST_WAIT_MS, "a write after the mark");
    atomic_store(&stop, true);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    assert_true(went_on); /* writes went on meanwhile */

    char pkpath[700], pk[64];
    snprintf(pkpath, sizeof pkpath, "%s/keys/journal-1.pub", srv.data);
    FILE *f = fopen(pkpath, "r");
    assert_non_null(f);
    assert_non_null(fgets(pk, sizeof pk, f));
    fclose(f);
    pk[strcspn(pk, "\n")] = '\0';
    const char *check[] = {"backup", "check", backups, "--pubkey", pk, NULL};
    if (run(check, out, err) != 0)
        fail_msg("check: %s %s", out, err);
    /* Stopped, its directory kept for the restored one beside it. */
    assert_int_equal(kill(srv.pid, SIGTERM), 0);
    int status = 0;
    assert_int_equal(waitpid(srv.pid, &status, 0), srv.pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    srv.pid = 0;

    const char *r[] = {"restore", gen, "--data", restored, "--pubkey", pk, NULL};
    if (run(r, out, err) != 0)
        fail_msg("restore: %s %s", out, err);
    const char *v[] = {"verify", "--data", restored, "--pubkey", pk, NULL};
    assert_int_equal(run(v, out, err), 0);
    const char *rc[] = {"replay", "--check", "--data", restored, NULL};
    assert_int_equal(run(rc, out, err), 0);

    /* The restored directory serves: every contact acknowledged before the
     * backup began is there, readable with its tenant's restored key. */
    char demo_from[800], demo_to[800];
    snprintf(demo_from, sizeof demo_from, "%s/demo.txt", srv.data);
    snprintf(demo_to, sizeof demo_to, "%s/demo.txt", restored);
    kr_test_copytree(demo_from, demo_to); /* not part of a backup: the logins to use */
    snprintf(srv.data, sizeof srv.data, "%s", restored);
    ac_server_restart(&srv);
    login(&srv, srv.ipc, token);
    struct ac c;
    ac_open(&c, srv.ipc);
    size_t checked = 0;
    for (int i = 0; i < WRITERS; i++) {
        size_t n = w[i].nkept < KEPT_MAX ? w[i].nkept : KEPT_MAX;
        for (size_t k = 0; k < n; k++, checked++) {
            ac_bin(&c, KR_FLD_CONTACT, w[i].kept[k], 16);
            if (ac_call(&c, KR_OP_CONTACTS_GET, token) != AC_OK)
                fail_msg("a contact acknowledged before the backup is not in it");
        }
    }
    ac_close(&c);
    assert_true(checked > 0);
    assert_int_equal(ac_server_stop(&srv), 0);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_of_a_running_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
