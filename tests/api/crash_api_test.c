/*
 * crash_api_test.c: kill -9 of `kiroku serve` while clients write, in a
 * loop. After each restart every write the server acknowledged (replied ok
 * to) is there, and at the end the journal verifies.
 *
 * Writers register contacts over the client endpoint; a killer thread sends
 * SIGKILL at a random moment, so requests are in flight and some are
 * acknowledged just before. A reply with ok true promises a durable append
 * (the server answers after the commit with fsync).
 */
#include "api_client.h"
#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS   6
#define WRITERS  4
#define ACKS_MAX 4096

/* The newest ACKS_MAX acknowledged ids of a round (a ring): the writes just
 * before the kill are the ones at risk. */
struct acked {
    pthread_mutex_t mu;
    uint8_t ids[ACKS_MAX][16];
    size_t n; /* acknowledged in this round */
    size_t total;
};

struct writer {
    const struct ac_server *srv;
    const uint8_t *token;
    struct acked *acked;
    int round, id;
};

/* Sends contacts.register until the connection fails; records every id the
 * server acknowledged. Raw sends with timeouts: the server dies under it. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    nng_socket s;
    if (nng_req0_open(&s) != 0)
        return NULL;
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 5000);
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    if (nng_dial(s, w->srv->ipc, NULL, 0) != 0) {
        nng_close(s);
        return NULL;
    }
    struct ac c;
    memset(&c, 0, sizeof c);
    msgpack_sbuffer_init(&c.args);
    msgpack_packer_init(&c.pk, &c.args, msgpack_sbuffer_write);
    msgpack_unpacked_init(&c.u);
    for (int i = 0;; i++) {
        char name[64];
        snprintf(name, sizeof name, "crash r%d w%d n%d", w->round, w->id, i);
        ac_str(&c, KR_FLD_NAME, name);
        msgpack_sbuffer req;
        msgpack_sbuffer_init(&req);
        uint64_t id = ac_request(&c, KR_OP_CONTACTS_REGISTER, w->token, &req);
        int rc = nng_send(s, req.data, req.size, 0);
        msgpack_sbuffer_destroy(&req);
        if (rc != 0)
            break;
        char *buf;
        size_t len;
        if (nng_recv(s, &buf, &len, NNG_FLAG_ALLOC) != 0)
            break;
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        uint64_t rid;
        int res = ac_decode(buf, len, &u, &rid);
        if (res == AC_OK && rid == id) {
            const msgpack_object *r = NULL;
            for (uint32_t k = 0; k < u.data.via.map.size; k++)
                if (u.data.via.map.ptr[k].val.type == MSGPACK_OBJECT_MAP)
                    r = &u.data.via.map.ptr[k].val;
            const msgpack_object *cid = r ? ac_get(r, KR_FLD_CONTACT) : NULL;
            if (cid && cid->type == MSGPACK_OBJECT_BIN && cid->via.bin.size == 16) {
                pthread_mutex_lock(&w->acked->mu);
                memcpy(w->acked->ids[w->acked->n++ % ACKS_MAX], cid->via.bin.ptr, 16);
                w->acked->total++;
                pthread_mutex_unlock(&w->acked->mu);
            }
        }
        msgpack_unpacked_destroy(&u);
        nng_free(buf, len);
        if (res != AC_OK)
            break;
    }
    msgpack_unpacked_destroy(&c.u);
    msgpack_sbuffer_destroy(&c.args);
    nng_close(s);
    return NULL;
}

static void login(struct ac_server *srv, uint8_t token[32])
{
    struct ac c;
    ac_open(&c, srv->ipc);
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

/* Whether a round has at least `n` acknowledged writes. */
struct acked_at {
    struct acked *acked;
    size_t n;
};
static bool acked_at_least(void *arg)
{
    const struct acked_at *a = arg;
    pthread_mutex_lock(&a->acked->mu);
    bool yes = a->acked->n >= a->n;
    pthread_mutex_unlock(&a->acked->mu);
    return yes;
}

static void test_kill_during_writes(void **state)
{
    (void)state;
    struct ac_server srv;
    struct acked *acked = calloc(1, sizeof *acked);
    assert_non_null(acked);
    pthread_mutex_init(&acked->mu, NULL);
    ac_server_start(&srv);
    for (int round = 0; round < ROUNDS; round++) {
        uint8_t token[32];
        login(&srv, token);
        acked->n = 0;
        pthread_t th[WRITERS];
        struct writer w[WRITERS];
        for (int i = 0; i < WRITERS; i++) {
            w[i] = (struct writer){
                .srv = &srv, .token = token, .acked = acked, .round = round, .id = i};
            assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
        }
        /* Killed after a random number of acknowledged writes, while the
         * writers go on. */
        struct acked_at at = {acked, 1 + randombytes_uniform(400)};
        assert_true(kr_test_wait_for(acked_at_least, &at, KR_TEST_WAIT_MS, "acknowledged writes"));
        assert_int_equal(kill(srv.pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(srv.pid, &status, 0), srv.pid);
        assert_true(WIFSIGNALED(status));
        srv.pid = 0;
        for (int i = 0; i < WRITERS; i++)
            pthread_join(th[i], NULL);
        ac_server_restart(&srv);

        /* Every acknowledged contact survived. */
        login(&srv, token);
        struct ac c;
        ac_open(&c, srv.ipc);
        size_t kept = acked->n < ACKS_MAX ? acked->n : ACKS_MAX;
        for (size_t i = 0; i < kept; i++) {
            ac_bin(&c, KR_FLD_CONTACT, acked->ids[i], 16);
            int rc = ac_call(&c, KR_OP_CONTACTS_GET, token);
            if (rc != AC_OK)
                fail_msg("round %d: an acknowledged contact is gone (%zu acknowledged)", round,
                         acked->n);
        }
        ac_close(&c);
    }
    assert_true(acked->total > 0);
    print_message("%zu acknowledged writes over %d kills; the newest %d of each round checked\n",
                  acked->total, ROUNDS, ACKS_MAX);
    /* The journal verifies (verify opens it read-only beside the running
     * server; ac_server_stop removes the directory afterwards). */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "%s verify --data '%s' >/dev/null 2>&1", KR_KIROKU_BIN, srv.data);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(ac_server_stop(&srv), 0);
    pthread_mutex_destroy(&acked->mu);
    free(acked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_during_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
