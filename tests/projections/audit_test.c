/*
 * audit_test.c: the per-tenant audit view (audit.list: filters, paging, the
 * bounded scan, JST times) and the journal ops for operators and auditors
 * (journal.read, journal.checkpoint, journal.proof), and audit.export (an
 * auditor's verifiable export of its own tenant) in projections/cmd_audit.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "jst.h"
#include "merkle.h"
#include "notices.h"
#include "test_domain.h"

struct fx {
    struct td *t;
    uint64_t a, b;
    struct kr_caller ma, mb, op;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->t = td_new(37);
    f->a = td_signup(f->t, "owner@a.example", "correct horse 1", &f->ma, NULL);
    f->b = td_signup(f->t, "owner@b.example", "correct horse 2", &f->mb, NULL);
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

static void report(struct fx *f, const struct kr_caller *who)
{
    struct kr_payload *p = td_args(f->t);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    kr_set_str(p, KR_FLD_DETAILS, "something odd");
    assert_int_equal(td_exec(f->t, who, KR_OP_INCIDENTS_REPORT), KR_OK);
}

/* A tenant's records straight from the journal. */
struct rec {
    uint64_t seq, time;
    char type[KR_TYPE_MAX + 1];
    char actor[KR_ACTOR_MAX + 1];
};

static size_t tenant_records(struct fx *f, uint64_t tenant, struct rec *out, size_t cap)
{
    struct jrn_query q = {.kind = JRN_Q_TENANT, .tenant = tenant};
    struct jrn_cursor *cur;
    struct jrn_record r;
    size_t n = 0;
    assert_int_equal(jrn_cursor_new(f->t->d->j, &q, &cur), KR_OK);
    while (jrn_cursor_next(cur, &r) == KR_OK) {
        assert_true(n < cap);
        out[n].seq = r.seq;
        out[n].time = r.time_ns;
        memcpy(out[n].type, r.type, r.type_len);
        out[n].type[r.type_len] = '\0';
        memcpy(out[n].actor, r.actor, r.actor_len);
        out[n].actor[r.actor_len] = '\0';
        n++;
    }
    jrn_cursor_free(cur);
    return n;
}

static bool str_is(const msgpack_object *o, const char *want)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(want) &&
           memcmp(o->via.str.ptr, want, o->via.str.size) == 0;
}

/* One audit.list call with the arguments already in t->args (plus the
 * cursor, when given); returns the entries, and the next cursor in cur. */
static const msgpack_object *audit(struct fx *f, const struct kr_caller *who, uint8_t cur[8],
                                   bool *more)
{
    assert_int_equal(td_exec(f->t, who, KR_OP_AUDIT_LIST), KR_OK);
    const msgpack_object *e = td_get(f->t, "entries"), *c = td_get(f->t, "cursor");
    assert_non_null(e);
    assert_non_null(c);
    assert_int_equal(e->type, MSGPACK_OBJECT_ARRAY);
    *more = c->type != MSGPACK_OBJECT_NIL;
    if (*more) {
        assert_int_equal(c->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(c->via.bin.size, 8);
        memcpy(cur, c->via.bin.ptr, 8);
    }
    return e;
}

static void check_entry(const msgpack_object *e, const struct rec *r)
{
    char jst[JST_LEN + 1];
    assert_int_equal(e->via.map.size, 6); /* and time_jst, as every time has */
    assert_int_equal(td_map_get(e, "seq")->via.u64, r->seq);
    assert_int_equal(td_map_get(e, "time")->via.u64, r->time);
    jst_format(r->time, jst);
    assert_true(str_is(td_map_get(e, "jst"), jst));
    assert_true(str_is(td_map_get(e, "time_jst"), jst));
    assert_true(str_is(td_map_get(e, "actor"), r->actor));
    assert_true(str_is(td_map_get(e, "type"), r->type));
}

static void test_list_all_and_isolation(void **state)
{
    struct fx *f = *state;
    report(f, &f->ma);
    report(f, &f->mb);
    struct rec recs[64];
    size_t n = tenant_records(f, f->a, recs, 64);
    assert_true(n >= 4);

    uint8_t cur[8];
    bool more;
    td_args(f->t);
    const msgpack_object *e = audit(f, &f->ma, cur, &more);
    assert_false(more);
    assert_int_equal(e->via.array.size, n);
    for (size_t i = 0; i < n; i++)
        check_entry(&e->via.array.ptr[i], &recs[i]);
    /* the newest is the report, in Japan time of the fixture's clock (April 2026) */
    assert_true(str_is(td_map_get(&e->via.array.ptr[n - 1], "type"), "incident.reported"));
    const msgpack_object *j = td_map_get(&e->via.array.ptr[n - 1], "jst");
    assert_true(j->via.str.size == JST_LEN && memcmp(j->via.str.ptr, "2026-04-01T09:", 14) == 0);

    /* B sees only B's */
    struct rec rb[64];
    size_t nb = tenant_records(f, f->b, rb, 64);
    td_args(f->t);
    e = audit(f, &f->mb, cur, &more);
    assert_int_equal(e->via.array.size, nb);
    for (size_t i = 0; i < nb; i++)
        check_entry(&e->via.array.ptr[i], &rb[i]);
}

static void test_filters(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 3; i++)
        report(f, &f->ma);
    uint8_t acc[16];
    memset(acc, 0x66, 16);
    struct kr_caller user = td_account(f->a, acc, KR_ROLE_USER, 0);
    report(f, &user);
    struct rec recs[64];
    size_t n = tenant_records(f, f->a, recs, 64);
    char actor[KR_ACTOR_MAX + 1];
    dom_actor(&f->ma, actor);
    uint8_t cur[8];
    bool more;

    /* type */
    kr_set_str(td_args(f->t), KR_FLD_TYPE, "incident.reported");
    const msgpack_object *e = audit(f, &f->ma, cur, &more);
    assert_int_equal(e->via.array.size, 4);
    check_entry(&e->via.array.ptr[0], &recs[n - 4]);
    check_entry(&e->via.array.ptr[3], &recs[n - 1]);

    /* actor and type */
    kr_set_str(td_args(f->t), KR_FLD_TYPE, "incident.reported");
    kr_set_str(f->t->args, KR_FLD_ACTOR, actor);
    e = audit(f, &f->ma, cur, &more);
    assert_int_equal(e->via.array.size, 3);
    for (uint32_t i = 0; i < 3; i++)
        assert_true(str_is(td_map_get(&e->via.array.ptr[i], "actor"), actor));
    char uactor[KR_ACTOR_MAX + 1];
    dom_actor(&user, uactor);
    kr_set_str(td_args(f->t), KR_FLD_ACTOR, uactor);
    e = audit(f, &f->ma, cur, &more);
    assert_int_equal(e->via.array.size, 1);
    check_entry(&e->via.array.ptr[0], &recs[n - 1]);

    /* time range [from, to): the second and third reports */
    struct kr_payload *p = td_args(f->t);
    kr_set_u64(p, KR_FLD_FROM, recs[n - 3].time);
    kr_set_u64(p, KR_FLD_TO, recs[n - 1].time);
    e = audit(f, &f->ma, cur, &more);
    assert_false(more);
    assert_int_equal(e->via.array.size, 2);
    check_entry(&e->via.array.ptr[0], &recs[n - 3]);
    check_entry(&e->via.array.ptr[1], &recs[n - 2]);
    /* to = 0 is now: everything */
    kr_set_u64(td_args(f->t), KR_FLD_TO, 0);
    assert_int_equal(audit(f, &f->ma, cur, &more)->via.array.size, n);

    /* refusals */
    kr_set_str(td_args(f->t), KR_FLD_TYPE, "no.such_event");
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_AUDIT_LIST), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "type");
    kr_set_str(td_args(f->t), KR_FLD_TYPE, "Bad Type");
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_AUDIT_LIST), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "type");
    char long_actor[66];
    memset(long_actor, 'a', 65);
    long_actor[65] = '\0';
    kr_set_str(td_args(f->t), KR_FLD_ACTOR, long_actor);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_AUDIT_LIST), KR_ETOOLARGE);
    assert_string_equal(f->t->diag.field, "actor");
    kr_set_bytes(td_args(f->t), KR_FLD_CURSOR, "1234567", 7);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_AUDIT_LIST), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "cursor");
    kr_set_u64(td_args(f->t), KR_FLD_SEQ, 1); /* not an argument of audit.list */
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_AUDIT_LIST), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "seq");
}

static void test_permissions(void **state)
{
    struct fx *f = *state;
    uint8_t acc[16];
    memset(acc, 0x21, 16);
    uint64_t all = (1ull << KR_PERMISSION__COUNT) - 1;
    struct kr_caller plain =
        td_account(f->a, acc, KR_ROLE_USER, all & ~(1ull << KR_PERMISSION_AUDIT_READ));
    struct kr_caller reader = td_account(f->a, acc, KR_ROLE_USER, 1ull << KR_PERMISSION_AUDIT_READ);
    struct kr_caller aud = td_account(f->a, acc, KR_ROLE_AUDITOR, 1ull << KR_PERMISSION_AUDIT_READ);
    uint8_t cur[8];
    bool more;
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &plain, KR_OP_AUDIT_LIST), KR_EFORBIDDEN);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_AUDIT_LIST), KR_EFORBIDDEN);
    assert_true(audit(f, &reader, cur, &more)->via.array.size > 0);
    assert_true(audit(f, &aud, cur, &more)->via.array.size > 0);
}

static void test_paging(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 5; i++)
        report(f, &f->ma);
    struct rec recs[64];
    size_t n = tenant_records(f, f->a, recs, 64);
    uint8_t cur[8];
    bool more = false;
    size_t seen = 0;
    for (int page = 0; page < 64; page++) {
        struct kr_payload *p = td_args(f->t);
        kr_set_u64(p, KR_FLD_LIMIT, 3);
        if (page > 0)
            kr_set_bytes(p, KR_FLD_CURSOR, cur, 8);
        const msgpack_object *e = audit(f, &f->ma, cur, &more);
        assert_true(e->via.array.size <= 3);
        for (uint32_t i = 0; i < e->via.array.size; i++) {
            assert_true(seen < n);
            check_entry(&e->via.array.ptr[i], &recs[seen++]);
        }
        if (!more)
            break;
        assert_int_equal(e->via.array.size, 3);
    }
    assert_false(more);
    assert_int_equal(seen, n);
}

/* Past KR_AUDIT_SCAN_MAX rows a call stops and gives a cursor, even when
 * nothing matched. */
static void test_scan_bound(void **state)
{
    struct fx *f = *state;
    struct kr_wbuf out;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    struct kr_payload *p = td_args(f->t);
    kr_set_u64(p, KR_FLD_SEVERITY, KR_SEVERITY_LOW);
    kr_set_str(p, KR_FLD_DETAILS, "bulk");
    for (uint32_t i = 0; i < KR_AUDIT_SCAN_MAX + 10; i++)
        assert_int_equal(
            dom_exec_flags(f->t->d, &f->ma, KR_OP_INCIDENTS_REPORT, p, &out, NULL, DOM_ASYNC),
            KR_OK);
    assert_int_equal(dom_wait(f->t->d), KR_OK);
    kr_wbuf_free(&out);

    uint8_t cur[8];
    bool more;
    kr_set_str(td_args(f->t), KR_FLD_TYPE, "tenant.cancelled");
    const msgpack_object *e = audit(f, &f->ma, cur, &more);
    assert_int_equal(e->via.array.size, 0);
    assert_true(more);
    uint8_t first[8];
    memcpy(first, cur, 8);
    p = td_args(f->t);
    kr_set_str(p, KR_FLD_TYPE, "tenant.cancelled");
    kr_set_bytes(p, KR_FLD_CURSOR, first, 8);
    e = audit(f, &f->ma, cur, &more);
    assert_int_equal(e->via.array.size, 0);
    assert_false(more);

    /* the largest page */
    kr_set_u64(td_args(f->t), KR_FLD_LIMIT, 1000);
    e = audit(f, &f->ma, cur, &more);
    assert_int_equal(e->via.array.size, 1000);
    assert_true(more);
}

/* ---- journal ops ---- */

static const msgpack_object *journal_read(struct fx *f, const struct kr_caller *who, uint64_t seq,
                                          uint64_t limit)
{
    struct kr_payload *p = td_args(f->t);
    kr_set_u64(p, KR_FLD_SEQ, seq);
    if (limit)
        kr_set_u64(p, KR_FLD_LIMIT, limit);
    kr_err err = td_exec(f->t, who, KR_OP_JOURNAL_READ);
    if (err)
        fail_msg("journal.read: %s (%s: %s)", kr_strerror(err), f->t->diag.field, f->t->diag.why);
    const msgpack_object *r = td_get(f->t, "records");
    assert_non_null(r);
    assert_int_equal(r->type, MSGPACK_OBJECT_ARRAY);
    return r;
}

static void decode_record(const msgpack_object *item, struct jrn_record *r)
{
    const msgpack_object *b = td_map_get(item, "record");
    assert_non_null(b);
    assert_int_equal(b->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(jrn_record_decode((const uint8_t *)b->via.bin.ptr, b->via.bin.size, r), KR_OK);
    assert_int_equal(td_map_get(item, "seq")->via.u64, r->seq);
}

static void test_journal_read_and_proofs(void **state)
{
    struct fx *f = *state;
    uint64_t size = jrn_size(f->t->d->j);
    const msgpack_object *a = journal_read(f, &f->op, 1, 5);
    assert_int_equal(a->via.array.size, 5);
    for (uint32_t i = 0; i < 5; i++) {
        struct jrn_record r;
        decode_record(&a->via.array.ptr[i], &r);
        assert_int_equal(r.seq, i + 1);

        /* the record is in the tree the checkpoint signs: prove it */
        uint8_t leaf[KR_HASH_LEN], root[KR_HASH_LEN];
        jrn_record_leaf_hash(&r, leaf);
        struct kr_payload *p = td_args(f->t);
        kr_set_u64(p, KR_FLD_SEQ, r.seq);
        kr_set_u64(p, KR_FLD_SIZE, size);
        assert_int_equal(td_exec(f->t, &f->op, KR_OP_JOURNAL_PROOF), KR_OK);
        const msgpack_object *pr = td_get(f->t, "proof");
        assert_int_equal(pr->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(pr->via.bin.size % KR_HASH_LEN, 0);
        assert_int_equal(jrn_root(f->t->d->j, size, root), KR_OK);
        assert_int_equal(mrk_verify_inclusion(leaf, r.seq - 1, size,
                                              (const uint8_t(*)[KR_HASH_LEN])pr->via.bin.ptr,
                                              pr->via.bin.size / KR_HASH_LEN, root),
                         KR_OK);
        a = journal_read(f, &f->op, 1, 5); /* t->result was replaced: read again */
    }
    /* default page, and past the end */
    assert_int_equal(journal_read(f, &f->op, 1, 0)->via.array.size,
                     size < KR_PAGE_DEFAULT ? size : KR_PAGE_DEFAULT);
    assert_int_equal(journal_read(f, &f->op, size + 1, 0)->via.array.size, 0);

    /* consistency between an old size and now */
    struct kr_payload *p = td_args(f->t);
    kr_set_u64(p, KR_FLD_OLD_SIZE, 3);
    kr_set_u64(p, KR_FLD_SIZE, size);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_JOURNAL_PROOF), KR_OK);
    const msgpack_object *pr = td_get(f->t, "proof");
    uint8_t r1[KR_HASH_LEN], r2[KR_HASH_LEN];
    assert_int_equal(jrn_root(f->t->d->j, 3, r1), KR_OK);
    assert_int_equal(jrn_root(f->t->d->j, size, r2), KR_OK);
    assert_int_equal(mrk_verify_consistency(3, size, r1, r2,
                                            (const uint8_t(*)[KR_HASH_LEN])pr->via.bin.ptr,
                                            pr->via.bin.size / KR_HASH_LEN),
                     KR_OK);

    /* checkpoint: the journal's newest */
    char note[KR_NOTE_MAX + 1];
    size_t len;
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_JOURNAL_CHECKPOINT), KR_OK);
    assert_int_equal(jrn_checkpoint(f->t->d->j, note, sizeof note, &len), KR_OK);
    const msgpack_object *cp = td_get(f->t, "checkpoint");
    assert_int_equal(cp->type, MSGPACK_OBJECT_STR);
    assert_int_equal(cp->via.str.size, len);
    assert_memory_equal(cp->via.str.ptr, note, len);
}

static void expect_proof_err(struct fx *f, uint64_t seq, uint64_t old_size, uint64_t size,
                             const char *field)
{
    struct kr_payload *p = td_args(f->t);
    if (seq)
        kr_set_u64(p, KR_FLD_SEQ, seq);
    if (old_size)
        kr_set_u64(p, KR_FLD_OLD_SIZE, old_size);
    if (size)
        kr_set_u64(p, KR_FLD_SIZE, size);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_JOURNAL_PROOF), KR_EINVAL);
    assert_string_equal(f->t->diag.field, field);
}

static void test_journal_rejections(void **state)
{
    struct fx *f = *state;
    uint64_t size = jrn_size(f->t->d->j);
    expect_proof_err(f, 1, 1, size, "seq");      /* both */
    expect_proof_err(f, 0, 0, size, "seq");      /* neither */
    expect_proof_err(f, 1, 0, 0, "size");        /* missing size */
    expect_proof_err(f, 1, 0, size + 1, "size"); /* past the journal */
    expect_proof_err(f, 5, 0, 4, "seq");         /* seq past size */
    expect_proof_err(f, 0, 5, 4, "old_size");    /* old_size past size */

    td_args(f->t); /* journal.read without seq */
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_JOURNAL_READ), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "seq");
    kr_set_u64(td_args(f->t), KR_FLD_SEQ, 0);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_JOURNAL_READ), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "seq");
    struct kr_payload *p = td_args(f->t);
    kr_set_u64(p, KR_FLD_SEQ, 1);
    kr_set_u64(p, KR_FLD_LIMIT, 1001);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_JOURNAL_READ), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "limit");

    /* a tenant's master and users may not read the journal */
    kr_set_u64(td_args(f->t), KR_FLD_SEQ, 1);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_JOURNAL_READ), KR_EFORBIDDEN);
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_JOURNAL_CHECKPOINT), KR_EFORBIDDEN);
}

/* An auditor's journal.read sees only its tenant's records, from any seq. */
static void test_auditor_scope(void **state)
{
    struct fx *f = *state;
    report(f, &f->ma);
    report(f, &f->mb);
    struct rec ra[64];
    size_t na = tenant_records(f, f->a, ra, 64);
    uint8_t acc[16];
    memset(acc, 0x99, 16);
    struct kr_caller aud = td_account(f->a, acc, KR_ROLE_AUDITOR, 0);

    const msgpack_object *a = journal_read(f, &aud, 1, 1000);
    assert_int_equal(a->via.array.size, na);
    for (uint32_t i = 0; i < na; i++) {
        struct jrn_record r;
        decode_record(&a->via.array.ptr[i], &r);
        assert_int_equal(r.tenant, f->a);
        assert_int_equal(r.seq, ra[i].seq);
    }
    /* from a later seq, with a limit */
    a = journal_read(f, &aud, ra[1].seq + 1, 2);
    assert_int_equal(a->via.array.size, 2);
    struct jrn_record r;
    decode_record(&a->via.array.ptr[0], &r);
    assert_int_equal(r.seq, ra[2].seq);

    /* the operator sees every tenant's */
    a = journal_read(f, &f->op, 1, 1000);
    assert_int_equal(a->via.array.size, jrn_size(f->t->d->j));

    /* auditors also get checkpoints and proofs */
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &aud, KR_OP_JOURNAL_CHECKPOINT), KR_OK);
}

/* ---- audit.export ---- */

/* Runs audit.export for who; on KR_OK verifies the document with the
 * journal's key and returns its report, the seqs of its records (up to cap)
 * and next_from (0 for nil). */
static kr_err audit_export(struct fx *f, const struct kr_caller *who, uint64_t from, uint64_t limit,
                           struct exp_report *rep, uint64_t *seqs, size_t cap, size_t *n,
                           uint64_t *next)
{
    struct kr_payload *p = td_args(f->t);
    if (from)
        kr_set_u64(p, KR_FLD_FROM_SEQ, from);
    if (limit)
        kr_set_u64(p, KR_FLD_LIMIT, limit);
    kr_err err = td_exec(f->t, who, KR_OP_AUDIT_EXPORT);
    if (err)
        return err;
    const msgpack_object *doc = td_get(f->t, "export"), *nx = td_get(f->t, "next_from");
    assert_non_null(doc);
    assert_int_equal(doc->type, MSGPACK_OBJECT_BIN);
    assert_non_null(nx);
    *next = nx->type == MSGPACK_OBJECT_NIL ? 0 : nx->via.u64;
    struct jrn_info info;
    jrn_get_info(f->t->d->j, &info);
    if (exp_verify((const uint8_t *)doc->via.bin.ptr, doc->via.bin.size, info.pk, rep) != KR_OK)
        fail_msg("the export does not verify: %s: %s", rep->where, rep->what);
    json_error_t je;
    json_t *j = json_loadb(doc->via.bin.ptr, doc->via.bin.size, 0, &je);
    assert_non_null(j);
    json_t *recs = json_object_get(j, "records");
    *n = json_array_size(recs);
    for (size_t i = 0; i < *n && i < cap; i++)
        seqs[i] = (uint64_t)json_integer_value(json_object_get(json_array_get(recs, i), "seq"));
    json_decref(j);
    return KR_OK;
}

static void test_audit_export(void **state)
{
    struct fx *f = *state;
    report(f, &f->ma);
    report(f, &f->mb);
    struct rec ra[64], rb[64];
    size_t na = tenant_records(f, f->a, ra, 64), nb = tenant_records(f, f->b, rb, 64);
    uint8_t acc[16];
    memset(acc, 0x99, 16);
    struct kr_caller aud_a = td_account(f->a, acc, KR_ROLE_AUDITOR, 0);
    struct kr_caller aud_b = td_account(f->b, acc, KR_ROLE_AUDITOR, 0);

    /* A's auditor: every record of A, verified, from the tenant's start. */
    struct exp_report rep;
    uint64_t seqs[64], next;
    size_t n;
    assert_int_equal(audit_export(f, &aud_a, 0, 0, &rep, seqs, 64, &n, &next), KR_OK);
    assert_int_equal(rep.tenant, f->a);
    assert_int_equal(n, na);
    assert_int_equal(rep.records, na);
    assert_true(rep.from_start);
    assert_int_equal(next, 0);
    for (size_t i = 0; i < na; i++)
        assert_int_equal(seqs[i], ra[i].seq);
    /* The export is recorded in A's trail: who took which records. */
    struct jrn_recbuf b;
    memset(&b, 0, sizeof b);
    assert_int_equal(jrn_read(f->t->d->j, jrn_size(f->t->d->j), &b), KR_OK);
    assert_int_equal(b.rec.tenant, f->a);
    assert_int_equal(kr_event_lookup(b.rec.type, b.rec.type_len), KR_EV_AUDIT_EXPORTED);
    char actor[64];
    snprintf(actor, sizeof actor, "account/99999999999999999999999999999999");
    assert_int_equal(b.rec.actor_len, strlen(actor));
    assert_memory_equal(b.rec.actor, actor, b.rec.actor_len);
    jrn_recbuf_fini(&b);
    na = tenant_records(f, f->a, ra, 64);

    /* B's auditor gets B's, and nothing of A. */
    assert_int_equal(audit_export(f, &aud_b, 0, 0, &rep, seqs, 64, &n, &next), KR_OK);
    assert_int_equal(rep.tenant, f->b);
    assert_int_equal(n, nb);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < na; k++)
            assert_int_not_equal(seqs[i], ra[k].seq);
    /* ... even when it asks from one of A's positions. */
    assert_int_equal(audit_export(f, &aud_b, ra[na - 1].seq, 0, &rep, seqs, 64, &n, &next), KR_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seqs[i] > ra[na - 1].seq, true);

    /* Pages: two records, then the rest from next_from. */
    assert_int_equal(audit_export(f, &aud_a, 0, 2, &rep, seqs, 64, &n, &next), KR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(next, ra[2].seq);
    na = tenant_records(f, f->a, ra, 64); /* with that page's audit.exported */
    assert_int_equal(audit_export(f, &aud_a, next, 0, &rep, seqs, 64, &n, &next), KR_OK);
    assert_int_equal(n, na - 2);
    assert_int_equal(rep.first_tseq, 3);
    assert_false(rep.from_start);
    assert_int_equal(next, 0);

    /* Nothing in the range; a range backwards. */
    kr_set_u64(td_args(f->t), KR_FLD_FROM_SEQ, jrn_size(f->t->d->j) + 1);
    assert_int_equal(td_exec(f->t, &aud_a, KR_OP_AUDIT_EXPORT), KR_ENOTFOUND);
    struct kr_payload *p = td_args(f->t);
    kr_set_u64(p, KR_FLD_FROM_SEQ, 10);
    kr_set_u64(p, KR_FLD_TO_SEQ, 9);
    assert_int_equal(td_exec(f->t, &aud_a, KR_OP_AUDIT_EXPORT), KR_EINVAL);
    assert_string_equal(f->t->diag.field, "to_seq");
}

/* Only auditors: the master, users (whatever their permissions) and
 * operators are refused. */
static void test_audit_export_roles(void **state)
{
    struct fx *f = *state;
    uint8_t acc[16];
    memset(acc, 0x42, 16);
    struct kr_caller user = td_account(f->a, acc, KR_ROLE_USER, UINT64_MAX);
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->ma, KR_OP_AUDIT_EXPORT), KR_EFORBIDDEN);
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &user, KR_OP_AUDIT_EXPORT), KR_EFORBIDDEN);
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &f->op, KR_OP_AUDIT_EXPORT), KR_EFORBIDDEN);
    struct kr_caller anon = td_anonymous();
    td_args(f->t);
    assert_int_equal(td_exec(f->t, &anon, KR_OP_AUDIT_EXPORT), KR_EAUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_all_and_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permissions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_read_and_proofs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auditor_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_export_roles, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
