/*
 * nats_cluster_test.c: the loopback JetStream cluster that replication tests
 * and `kiroku bench replicate` run on: it starts, takes a replicated stream,
 * keeps taking publishes with one node down, and the node comes back.
 */
#include "nats_cluster.h"

#include <nats/nats.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

struct conn {
    natsConnection *nc;
    jsCtx *js;
};

static void connect_to(struct conn *c, const struct kr_nats_cluster *cl)
{
    natsOptions *o = NULL;
    const char *urls[KR_NATS_NODES_MAX];
    for (size_t i = 0; i < cl->n; i++)
        urls[i] = cl->node[i].url;
    assert_int_equal(natsOptions_Create(&o), NATS_OK);
    assert_int_equal(natsOptions_SetServers(o, urls, (int)cl->n), NATS_OK);
    assert_int_equal(natsConnection_Connect(&c->nc, o), NATS_OK);
    natsOptions_Destroy(o);
    assert_int_equal(natsConnection_JetStream(&c->js, c->nc, NULL), NATS_OK);
}

static void disconnect(struct conn *c)
{
    jsCtx_Destroy(c->js);
    natsConnection_Destroy(c->nc);
}

/* Publishes one message; while the stream elects a new leader (a node just
 * went down) there are no responders or no answer for a moment: retried, as
 * every publisher of kiroku's does. */
static uint64_t publish(struct conn *c, const char *subj, const char *id)
{
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 2000;
    po.MsgId = id; /* a retry after a lost ack is not stored twice */
    natsStatus s = NATS_TIMEOUT;
    for (int tries = 0; tries < 30; tries++) {
        s = js_Publish(&pa, c->js, subj, "record", 6, &po, &jerr);
        if (s != NATS_NO_RESPONDERS && s != NATS_TIMEOUT)
            break;
        nats_Sleep(500);
    }
    if (s != NATS_OK)
        fail_msg("publish: %s (%d)", natsStatus_GetText(s), (int)jerr);
    uint64_t seq = pa->Sequence;
    assert_false(pa->Duplicate);
    jsPubAck_Destroy(pa);
    return seq;
}

/* Whether another socket could take 127.0.0.1:port now. */
static bool can_bind(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void test_three_nodes(void **state)
{
    (void)state;
    if (!kr_nats_available())
        skip();
    struct kr_nats_cluster *cl = kr_nats_start(3);
    assert_non_null(cl);
    assert_non_null(strstr(kr_nats_urls(cl), ","));
    char dir[256];
    snprintf(dir, sizeof dir, "%s", cl->dir);

    struct conn c;
    connect_to(&c, cl);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = "T";
    const char *subj = "t.x";
    sc.Subjects = &subj;
    sc.SubjectsLen = 1;
    sc.Replicas = 3;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_AddStream(&si, c.js, &sc, NULL, &jerr), NATS_OK);
    jsStreamInfo_Destroy(si);
    assert_int_equal(publish(&c, subj, "1"), 1);

    /* one node of three down: a majority still acknowledges */
    kr_nats_stop_node(cl, 2, SIGKILL);
    assert_int_equal(cl->node[2].pid, 0);
    /* its ports stay its own while it is down: nobody else binds them */
    assert_false(can_bind(cl->node[2].port));
    assert_false(can_bind(cl->node[2].cluster_port));
    assert_int_equal(publish(&c, subj, "2"), 2);
    assert_true(kr_nats_start_node(cl, 2));
    assert_int_equal(publish(&c, subj, "3"), 3);

    disconnect(&c);
    kr_nats_free(cl);
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0); /* the scratch directory is gone */
}

static void test_bad_sizes(void **state)
{
    (void)state;
    assert_null(kr_nats_start(0));
    assert_null(kr_nats_start(KR_NATS_NODES_MAX + 1));
    kr_nats_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_nodes),
        cmocka_unit_test(test_bad_sizes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    return rc;
}
