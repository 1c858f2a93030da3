/*
 * notices_test.c: notices published by operators and acknowledged by
 * accounts (projections/cmd_notices.c, v_notices.c): audiences, the
 * acknowledged flag, paging, unread notices for the login reply, and every
 * rejection of notices.publish, notices.list and notices.ack.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "notices.h"
#include "test_domain.h"

#define S    1000000000ull
#define HOUR (3600ull * S)

struct fx {
    struct td *t;
    uint64_t a, b; /* two tenants */
    struct kr_caller ma, mb, op;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->t = td_new(11);
    f->a = td_signup(f->t, "owner@a.example", "correct horse 1", &f->ma, NULL);
    f->b = td_signup(f->t, "owner@b.example", "correct horse 2", &f->mb, NULL);
    assert_true(f->a != f->b);
    f->op = td_operator();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    td_free(f->t);
    free(f);
    return 0;
}

/* Sets the arguments of notices.publish. */
static struct kr_payload *publish_args(struct td *t, const char *title, uint64_t effective,
                                       int audience, const uint64_t *tenants, size_t n)
{
    struct kr_payload *p = td_args(t);
    kr_set_u64(p, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_CHANGE);
    kr_set_str(p, KR_FLD_TITLE, title);
    kr_set_str(p, KR_FLD_BODY, "The login page moves to a new address.");
    kr_set_u64(p, KR_FLD_EFFECTIVE, effective);
    kr_set_u64(p, KR_FLD_AUDIENCE, (uint64_t)audience);
    if (tenants)
        kr_set_tenants(p, KR_FLD_TENANTS, tenants, n);
    return p;
}

static void publish(struct fx *f, const char *title, uint64_t effective, int audience,
                    const uint64_t *tenants, size_t n, uint8_t id[16])
{
    publish_args(f->t, title, effective, audience, tenants, n);
    kr_err err = td_exec(f->t, &f->op, KR_OP_NOTICES_PUBLISH);
    if (err)
        fail_msg("publish: %s (%s: %s)", kr_strerror(err), f->t->diag.field, f->t->diag.why);
    td_get_id(f->t, "notice", id);
}

/* notices.list for who; returns the array of notices (in t->result). */
static const msgpack_object *list(struct fx *f, const struct kr_caller *who, const void *cursor,
                                  size_t cursor_len, uint64_t limit)
{
    struct kr_payload *p = td_args(f->t);
    if (cursor)
        kr_set_bytes(p, KR_FLD_CURSOR, cursor, cursor_len);
    if (limit)
        kr_set_u64(p, KR_FLD_LIMIT, limit);
    assert_int_equal(td_exec(f->t, who, KR_OP_NOTICES_LIST), KR_OK);
    const msgpack_object *a = td_get(f->t, "notices");
    assert_non_null(a);
    assert_int_equal(a->type, MSGPACK_OBJECT_ARRAY);
    return a;
}

static kr_err ack(struct fx *f, const struct kr_caller *who, const uint8_t id[16])
{
    kr_set_bytes(td_args(f->t), KR_FLD_NOTICE, id, 16);
    return td_exec(f->t, who, KR_OP_NOTICES_ACK);
}

static bool bin_is(const msgpack_object *o, const void *want, size_t n)
{
    return o && o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == n &&
           memcmp(o->via.bin.ptr, want, n) == 0;
}

static bool str_is(const msgpack_object *o, const char *want)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(want) &&
           memcmp(o->via.str.ptr, want, o->via.str.size) == 0;
}

static size_t unread(struct fx *f, uint64_t tenant, const uint8_t account[16],
                     struct notice_unread *out, size_t cap)
{
    MDB_txn *txn;
    size_t n = 0;
    assert_int_equal(mdb_txn_begin(jrn_env(f->t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(notices_unread(f->t->d, txn, tenant, account, out, cap, &n), KR_OK);
    mdb_txn_abort(txn);
    return n;
}

static void test_publish_all_and_ack(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    uint64_t eff = 1775001600ull * S + 7 * HOUR;
    publish(f, "Maintenance on 4/1", eff, KR_AUDIENCE_ALL, NULL, 0, id);

    const msgpack_object *a = list(f, &f->ma, NULL, 0, 0);
    assert_int_equal(a->via.array.size, 1);
    const msgpack_object *n = &a->via.array.ptr[0];
    assert_int_equal(n->via.map.size, 7); /* effective and effective_jst */
    assert_non_null(td_map_get(n, "effective_jst"));
    assert_true(bin_is(td_map_get(n, "notice"), id, 16));
    assert_true(str_is(td_map_get(n, "notice_kind"), "change"));
    assert_true(str_is(td_map_get(n, "title"), "Maintenance on 4/1"));
    assert_true(str_is(td_map_get(n, "body"), "The login page moves to a new address."));
    assert_int_equal(td_map_get(n, "effective")->via.u64, eff);
    assert_int_equal(td_map_get(n, "acknowledged")->type, MSGPACK_OBJECT_BOOLEAN);
    assert_false(td_map_get(n, "acknowledged")->via.boolean);
    assert_int_equal(td_get(f->t, "cursor")->type, MSGPACK_OBJECT_NIL);

    /* audience all: the other tenant sees it too */
    assert_int_equal(list(f, &f->mb, NULL, 0, 0)->via.array.size, 1);

    struct notice_unread u[4];
    assert_int_equal(unread(f, f->a, f->ma.account, u, 4), 1);
    assert_memory_equal(u[0].notice, id, 16);
    assert_int_equal(u[0].effective, eff);
    assert_int_equal(u[0].kind, KR_NOTICE_KIND_CHANGE);

    uint64_t size = jrn_size(f->t->d->j);
    assert_int_equal(ack(f, &f->ma, id), KR_OK);
    assert_int_equal(jrn_size(f->t->d->j), size + 1);
    a = list(f, &f->ma, NULL, 0, 0);
    assert_true(td_map_get(&a->via.array.ptr[0], "acknowledged")->via.boolean);
    assert_int_equal(unread(f, f->a, f->ma.account, u, 4), 0);

    /* acknowledging again: success, nothing recorded */
    assert_int_equal(ack(f, &f->ma, id), KR_OK);
    assert_int_equal(jrn_size(f->t->d->j), size + 1);

    /* acknowledgement is per account: B's master and another account of A
     * still have it unread */
    assert_int_equal(unread(f, f->b, f->mb.account, u, 4), 1);
    uint8_t other[16];
    memset(other, 0x77, 16);
    struct kr_caller aud = td_account(f->a, other, KR_ROLE_AUDITOR, 0);
    assert_int_equal(unread(f, f->a, other, u, 4), 1);
    a = list(f, &aud, NULL, 0, 0);
    assert_false(td_map_get(&a->via.array.ptr[0], "acknowledged")->via.boolean);
    assert_int_equal(ack(f, &aud, id), KR_OK);
    assert_int_equal(unread(f, f->a, other, u, 4), 0);
}

static void test_publish_listed(void **state)
{
    struct fx *f = *state;
    uint8_t id[16], missing[16];
    uint64_t ts[1] = {f->a};
    publish(f, "For A only", 1775001600ull * S, KR_AUDIENCE_LISTED, ts, 1, id);

    assert_int_equal(list(f, &f->ma, NULL, 0, 0)->via.array.size, 1);
    assert_int_equal(list(f, &f->mb, NULL, 0, 0)->via.array.size, 0);
    struct notice_unread u[2];
    assert_int_equal(unread(f, f->b, f->mb.account, u, 2), 0);

    /* B acknowledging A's notice: not found, exactly like a missing one */
    uint64_t size = jrn_size(f->t->d->j);
    assert_int_equal(ack(f, &f->mb, id), KR_ENOTFOUND);
    assert_string_equal(f->t->diag.field, "notice");
    memset(missing, 0x42, 16);
    assert_int_equal(ack(f, &f->mb, missing), KR_ENOTFOUND);
    assert_string_equal(f->t->diag.field, "notice");
    assert_true(td_unchanged_since(f->t, size));
    assert_int_equal(ack(f, &f->ma, id), KR_OK);
}

static void expect_publish_err(struct fx *f, kr_err want, const char *field)
{
    uint64_t size = jrn_size(f->t->d->j);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_NOTICES_PUBLISH), want);
    assert_string_equal(f->t->diag.field, field);
    assert_true(td_unchanged_since(f->t, size));
}

static void test_publish_rejections(void **state)
{
    struct fx *f = *state;
    uint64_t eff = 1775001600ull * S;
    char long_title[202];
    memset(long_title, 'a', 201);
    long_title[201] = '\0';

    struct kr_payload *p = publish_args(f->t, "x", eff, KR_AUDIENCE_ALL, NULL, 0);
    kr_set_str(p, KR_FLD_TITLE, long_title);
    expect_publish_err(f, KR_ETOOLARGE, "title");
    long_title[200] = '\0'; /* exactly the limit: fine */
    publish_args(f->t, long_title, eff, KR_AUDIENCE_ALL, NULL, 0);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_NOTICES_PUBLISH), KR_OK);

    /* missing title: a payload with every other argument */
    p = td_args(f->t);
    kr_set_u64(p, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_CHANGE);
    kr_set_str(p, KR_FLD_BODY, "b");
    kr_set_u64(p, KR_FLD_EFFECTIVE, eff);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_ALL);
    expect_publish_err(f, KR_EINVAL, "title");

    p = publish_args(f->t, "x", eff, KR_AUDIENCE_ALL, NULL, 0);
    kr_set_str(p, KR_FLD_BODY, "");
    expect_publish_err(f, KR_EINVAL, "body");

    p = publish_args(f->t, "x", eff, KR_AUDIENCE_ALL, NULL, 0);
    kr_set_u64(p, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND__COUNT); /* not an enum value */
    expect_publish_err(f, KR_EINVAL, "notice_kind");

    p = publish_args(f->t, "x", eff, KR_AUDIENCE_ALL, NULL, 0);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_LOW); /* not an argument of notices.publish */
    expect_publish_err(f, KR_EINVAL, "severity");

    publish_args(f->t, "x", eff, KR_AUDIENCE_LISTED, NULL, 0);
    expect_publish_err(f, KR_EINVAL, "tenants");
    p = publish_args(f->t, "x", eff, KR_AUDIENCE_LISTED, NULL, 0);
    kr_set_tenants(p, KR_FLD_TENANTS, NULL, 0); /* an empty list */
    expect_publish_err(f, KR_EINVAL, "tenants");

    uint64_t lo = f->a < f->b ? f->a : f->b, hi = f->a < f->b ? f->b : f->a;
    uint64_t ts[2] = {lo, hi + 1000}; /* increasing, the second one missing */
    publish_args(f->t, "x", eff, KR_AUDIENCE_LISTED, ts, 2);
    expect_publish_err(f, KR_ENOTFOUND, "tenants");

    uint64_t one[1] = {f->a};
    publish_args(f->t, "x", eff, KR_AUDIENCE_ALL, one, 1);
    expect_publish_err(f, KR_EINVAL, "tenants");

    uint64_t unsorted[2] = {f->b > f->a ? f->b : f->a, f->b > f->a ? f->a : f->b};
    publish_args(f->t, "x", eff, KR_AUDIENCE_LISTED, unsorted, 2);
    expect_publish_err(f, KR_EINVAL, "tenants");

    /* not permitted: a tenant's master, and an operator off the operator endpoint */
    publish_args(f->t, "x", eff, KR_AUDIENCE_ALL, NULL, 0);
    uint64_t size = jrn_size(f->t->d->j);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_NOTICES_PUBLISH), KR_EFORBIDDEN);
    struct kr_caller op = f->op;
    op.operator_endpoint = false;
    assert_int_equal(td_exec(f->t, &op, KR_OP_NOTICES_PUBLISH), KR_EFORBIDDEN);
    assert_true(td_unchanged_since(f->t, size));
}

/* Arguments from the wire: a wrong type is refused while decoding, before
 * any handler runs; the handler check refuses what C code could build. */
static void test_wire_args(void **state)
{
    (void)state;
    struct kr_payload *p = kr_payload_new();
    struct kr_diag d;
    struct kr_mp_reader r;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    assert_non_null(p);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "notice", 6);
    msgpack_pack_str_with_body(&pk, "0123456789abcdef", 16); /* str, not bin */
    kr_mp_reader_init(&r, sb.data, sb.size, false);
    memset(&d, 0, sizeof d);
    assert_int_equal(kr_args_decode(KR_OP_NOTICES_ACK, &r, p, &d), KR_EINVAL);
    assert_string_equal(d.field, "notice");

    sb.size = 0;
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "limit", 5);
    msgpack_pack_uint64(&pk, 1001);
    kr_mp_reader_init(&r, sb.data, sb.size, false);
    memset(&d, 0, sizeof d);
    assert_int_not_equal(kr_args_decode(KR_OP_NOTICES_LIST, &r, p, &d), KR_OK);
    assert_string_equal(d.field, "limit");
    msgpack_sbuffer_destroy(&sb);
    kr_payload_free(p);
}

static void test_ack_rejections(void **state)
{
    struct fx *f = *state;
    uint8_t id[16];
    publish(f, "n", 1775001600ull * S, KR_AUDIENCE_ALL, NULL, 0, id);
    td_args(f->t); /* no notice */
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_NOTICES_ACK), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "notice");
    kr_set_bytes(td_args(f->t), KR_FLD_NOTICE, id, 15);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_NOTICES_ACK), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "notice");
    /* operators do not acknowledge notices, and anonymous callers need a session */
    kr_set_bytes(td_args(f->t), KR_FLD_NOTICE, id, 16);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_NOTICES_ACK), KR_EFORBIDDEN);
    struct kr_caller anon = td_anonymous();
    assert_int_equal(td_exec(f->t, &anon, KR_OP_NOTICES_ACK), KR_EAUTH);
    assert_int_equal(td_exec(f->t, &anon, KR_OP_NOTICES_LIST), KR_EAUTH);
}

static void test_list_paging(void **state)
{
    struct fx *f = *state;
    uint64_t base = 1775001600ull * S;
    uint64_t la[1] = {f->a}, lb[1] = {f->b};
    uint8_t n1[16], n2[16], n3[16], n4[16], n5[16], nb[16], same[16];
    /* visible to A, by effective: n1 (+1h), n2 (+2h, listed), n3 (+3h),
     * same (+3h), n4 (+4h, listed), n5 (+5h); nb is B's */
    publish(f, "3", base + 3 * HOUR, KR_AUDIENCE_ALL, NULL, 0, n3);
    publish(f, "1", base + 1 * HOUR, KR_AUDIENCE_ALL, NULL, 0, n1);
    publish(f, "b", base + 2 * HOUR, KR_AUDIENCE_LISTED, lb, 1, nb);
    publish(f, "5", base + 5 * HOUR, KR_AUDIENCE_ALL, NULL, 0, n5);
    publish(f, "2", base + 2 * HOUR, KR_AUDIENCE_LISTED, la, 1, n2);
    publish(f, "4", base + 4 * HOUR, KR_AUDIENCE_LISTED, la, 1, n4);
    publish(f, "3b", base + 3 * HOUR, KR_AUDIENCE_ALL, NULL, 0, same);
    /* the two at +3h come in id order */
    const uint8_t *third = memcmp(n3, same, 16) < 0 ? n3 : same;
    const uint8_t *fourth = third == n3 ? same : n3;
    const uint8_t *want[6] = {n1, n2, third, fourth, n4, n5};

    uint8_t cursor[64];
    size_t cursor_len = 0;
    size_t seen = 0;
    for (int page = 0; page < 4; page++) {
        const msgpack_object *a = list(f, &f->ma, cursor_len ? cursor : NULL, cursor_len, 4);
        for (uint32_t i = 0; i < a->via.array.size; i++) {
            assert_true(seen < 6);
            assert_true(bin_is(td_map_get(&a->via.array.ptr[i], "notice"), want[seen], 16));
            seen++;
        }
        const msgpack_object *c = td_get(f->t, "cursor");
        assert_non_null(c);
        if (page == 0) {
            assert_int_equal(a->via.array.size, 4);
            assert_int_equal(c->type, MSGPACK_OBJECT_BIN);
        }
        if (c->type == MSGPACK_OBJECT_NIL)
            break;
        assert_true(c->via.bin.size <= sizeof cursor);
        memcpy(cursor, c->via.bin.ptr, c->via.bin.size);
        cursor_len = c->via.bin.size;
    }
    assert_int_equal(seen, 6);

    /* B sees the four notices for all and its own */
    const msgpack_object *b = list(f, &f->mb, NULL, 0, 0);
    assert_int_equal(b->via.array.size, 5);
    assert_true(bin_is(td_map_get(&b->via.array.ptr[1], "notice"), nb, 16));

    /* a page of exactly the rest ends without a cursor */
    list(f, &f->mb, NULL, 0, 5);
    assert_int_equal(td_get(f->t, "cursor")->type, MSGPACK_OBJECT_NIL);

    /* a cursor that is not one of this list */
    kr_set_bytes(td_args(f->t), KR_FLD_CURSOR, "abc", 3);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_NOTICES_LIST), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "cursor");
    kr_set_u64(td_args(f->t), KR_FLD_LIMIT, 0);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_NOTICES_LIST), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "limit");
}

/* notices_pack_unread as auth.login uses it: one map entry "notices".
 * *out borrows from sb. */
static void pack_unread(struct fx *f, const struct kr_caller *who, msgpack_sbuffer *sb,
                        msgpack_unpacked *out)
{
    struct cmd *c = calloc(1, sizeof *c);
    struct kr_diag diag;
    assert_non_null(c);
    memset(&diag, 0, sizeof diag);
    sb->size = 0;
    c->d = f->t->d;
    c->who = who;
    c->diag = &diag;
    c->scratch = kr_payload_new();
    assert_non_null(c->scratch);
    assert_int_equal(mdb_txn_begin(jrn_env(f->t->d->j), NULL, MDB_RDONLY, &c->txn), 0);
    msgpack_packer_init(&c->res, sb, msgpack_sbuffer_write);
    res_map(c, 1);
    assert_int_equal(notices_pack_unread(c, who->tenant, who->account), KR_OK);
    mdb_txn_abort(c->txn);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(out, sb->data, sb->size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, sb->size);
    kr_payload_free(c->scratch);
    free(c);
}

static void test_unread_newest_first(void **state)
{
    struct fx *f = *state;
    uint64_t base = 1775001600ull * S;
    uint64_t lb[1] = {f->b};
    uint8_t n1[16], n2[16], n3[16], nb[16];
    publish(f, "one", base + 1 * HOUR, KR_AUDIENCE_ALL, NULL, 0, n1);
    publish(f, "three", base + 3 * HOUR, KR_AUDIENCE_ALL, NULL, 0, n3);
    publish(f, "b only", base + 4 * HOUR, KR_AUDIENCE_LISTED, lb, 1, nb);
    publish(f, "two", base + 2 * HOUR, KR_AUDIENCE_ALL, NULL, 0, n2);

    struct notice_unread u[4];
    assert_int_equal(unread(f, f->a, f->ma.account, u, 4), 3);
    assert_memory_equal(u[0].notice, n3, 16);
    assert_memory_equal(u[1].notice, n2, 16);
    assert_memory_equal(u[2].notice, n1, 16);
    assert_int_equal(unread(f, f->a, f->ma.account, u, 2), 2); /* bounded by cap */
    assert_memory_equal(u[1].notice, n2, 16);
    assert_int_equal(unread(f, f->b, f->mb.account, u, 4), 4);
    assert_memory_equal(u[0].notice, nb, 16);

    assert_int_equal(ack(f, &f->ma, n2), KR_OK);
    assert_int_equal(unread(f, f->a, f->ma.account, u, 4), 2);
    assert_memory_equal(u[0].notice, n3, 16);
    assert_memory_equal(u[1].notice, n1, 16);

    msgpack_unpacked m;
    msgpack_sbuffer sb;
    msgpack_unpacked_init(&m);
    msgpack_sbuffer_init(&sb);
    pack_unread(f, &f->ma, &sb, &m);
    const msgpack_object *a = td_map_get(&m.data, "notices");
    assert_non_null(a);
    assert_int_equal(a->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(a->via.array.size, 2);
    const msgpack_object *x = &a->via.array.ptr[0];
    assert_int_equal(x->via.map.size, 5);
    assert_true(bin_is(td_map_get(x, "notice"), n3, 16));
    assert_true(str_is(td_map_get(x, "notice_kind"), "change"));
    assert_true(str_is(td_map_get(x, "title"), "three"));
    assert_true(str_is(td_map_get(x, "body"), "The login page moves to a new address."));
    assert_int_equal(td_map_get(x, "effective")->via.u64, base + 3 * HOUR);
    assert_true(str_is(td_map_get(&a->via.array.ptr[1], "title"), "one"));

    assert_int_equal(ack(f, &f->ma, n1), KR_OK);
    assert_int_equal(ack(f, &f->ma, n3), KR_OK);
    pack_unread(f, &f->ma, &sb, &m);
    a = td_map_get(&m.data, "notices");
    assert_non_null(a);
    assert_int_equal(a->via.array.size, 0);
    msgpack_unpacked_destroy(&m);
    msgpack_sbuffer_destroy(&sb);
}

/* Collects the pending e-mails of template notice_of_change. */
struct mails {
    size_t n;
    uint64_t tenant[8];
    char to[8][64];
};

static bool collect_notice_mail(void *arg, const struct outbox_msg *m)
{
    struct mails *l = arg;
    if (m->template_id != KR_TEMPLATE_NOTICE_OF_CHANGE)
        return true;
    assert_true(l->n < 8);
    const struct kr_value *e = &m->p->v[KR_FLD_EMAIL];
    assert_true(e->set && e->n < 64);
    assert_true(m->p->v[KR_FLD_NOTICE].set);
    /* what it is about: the notice's kind, title, body and effective time */
    assert_true(m->about->notice && !m->about->incident);
    assert_int_equal(m->about->notice_kind, KR_NOTICE_KIND_CHANGE);
    assert_true(m->about->title->set && m->about->title->n > 0);
    assert_true(m->about->body->n == strlen("The login page moves to a new address.") &&
                memcmp(m->about->body->p, "The login page moves to a new address.",
                       m->about->body->n) == 0);
    assert_true(m->about->effective > 0);
    l->tenant[l->n] = m->tenant;
    memcpy(l->to[l->n], e->p, e->n);
    l->to[l->n][e->n] = '\0';
    l->n++;
    return true;
}

static void test_notice_mail(void **state)
{
    struct fx *f = *state;
    uint64_t eff = f->t->now;
    size_t queued;

    /* Listed: one e-mail, to the listed tenant's master, exactly once. */
    publish_args(f->t, "listed", eff, KR_AUDIENCE_LISTED, &f->a, 1);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_NOTICES_PUBLISH), KR_OK);
    assert_int_equal(dom_notice_mail(f->t->d, 0, &queued), KR_OK);
    assert_int_equal(queued, 1);
    assert_int_equal(dom_notice_mail(f->t->d, 0, &queued), KR_OK);
    assert_int_equal(queued, 0);
    struct mails l = {0};
    assert_int_equal(outbox_pending(f->t->d, 0, 0, collect_notice_mail, &l, NULL), KR_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.tenant[0], f->a);
    assert_string_equal(l.to[0], "owner@a.example");

    /* All: one to each tenant holding data. */
    publish_args(f->t, "everyone", eff, KR_AUDIENCE_ALL, NULL, 0);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_NOTICES_PUBLISH), KR_OK);
    assert_int_equal(dom_notice_mail(f->t->d, 1, &queued), KR_OK); /* one at a time */
    assert_int_equal(queued, 1);
    assert_int_equal(dom_notice_mail(f->t->d, 0, &queued), KR_OK);
    assert_int_equal(queued, 1);
    memset(&l, 0, sizeof l);
    assert_int_equal(outbox_pending(f->t->d, 0, 0, collect_notice_mail, &l, NULL), KR_OK);
    assert_int_equal(l.n, 3);
    assert_true((l.tenant[1] == f->a && l.tenant[2] == f->b) ||
                (l.tenant[1] == f->b && l.tenant[2] == f->a));

    /* The views say nothing more is owed, and a rebuild agrees. */
    assert_int_equal(dom_notice_mail(f->t->d, 0, &queued), KR_OK);
    assert_int_equal(queued, 0);
    assert_int_equal(jrn_views_rebuild(f->t->d->j, NULL, NULL), KR_OK);
    assert_int_equal(dom_notice_mail(f->t->d, 0, &queued), KR_OK);
    assert_int_equal(queued, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_all_and_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_listed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_rejections, setup, teardown),
        cmocka_unit_test(test_wire_args),
        cmocka_unit_test_setup_teardown(test_ack_rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unread_newest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notice_mail, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
