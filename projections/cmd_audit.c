/*
 * cmd_audit.c: the audit view of a tenant (audit.list: who did what when,
 * times also in JST) and the journal as auditors and operators read it
 * (journal.read, journal.checkpoint, journal.proof).
 *
 * Design notes. The audit index is the journal's own per-tenant index
 * (tenant|seq, written in the same transaction as each record), read through
 * a journal cursor: a tenant's history is one key range in seq order, and
 * since record times never decrease along seq, a time range is a contiguous
 * run of it. Keeping no copy in the views halves the writes of a rebuild. Filters by actor and type
 * are not indexed: a call examines at most KR_AUDIT_SCAN_MAX rows and hands back a cursor to go on
 * from, so a filter that matches nothing costs bounded work per request.
 *
 * journal.read gives records exactly as stored (signed and hashed), so an
 * auditor checks them with the public key alone. Auditors see only their own
 * tenant's records; operators see every record.
 *
 * audit.export gives an auditor its own tenant's records as an export
 * (journal/export.h), the document `kiroku audit verify` checks offline, a
 * page at a time: at most `limit` records and about KR_EXPORT_OP_BYTES_MAX.
 * Each page taken is recorded (audit.exported, with its range).
 */
#include "export.h"
#include "jst.h"
#include "notices.h"

#include <stdlib.h>
#include <string.h>

/* What these ops return, what access.denied records (an op's name, at most
 * KR_TYPE_MAX by schemagen's name rule), the session tokens auth.login hands
 * out and the API reads (32 bytes: protocol.c, dom_session_resolve) and the
 * cursors of lists (an id or a seq) fit the schema's fields. */
_Static_assert(JST_LEN <= KR_FLD_JST_MAX, "jst");
_Static_assert(KR_ACTOR_MAX <= KR_FLD_ACTOR_MAX, "actor");
_Static_assert(KR_TYPE_MAX <= KR_FLD_TYPE_MAX && KR_TYPE_MAX <= KR_FLD_OP_MAX, "type, op");
_Static_assert(KR_RECORD_MAX <= KR_FLD_RECORD_MAX, "record");
_Static_assert(KR_NOTE_MAX <= KR_FLD_CHECKPOINT_MAX, "checkpoint");
_Static_assert(KR_FLD_PROOF_MAX >= KR_PROOF_MAX * KR_HASH_LEN, "proof");
_Static_assert(KR_FLD_TOKEN_MAX == 32, "token");
_Static_assert(KR_FLD_CURSOR_MAX >= 16, "cursor");

/* ---- audit.list ---- */

struct audit_entry {
    uint64_t seq, time;
    uint8_t type_len, actor_len;
    char type[KR_TYPE_MAX];
    char actor[KR_ACTOR_MAX];
};

kr_err cmd_audit_list(struct cmd *c)
{
    const struct kr_payload *a = c->args;
    const struct kr_value *actor = &a->v[KR_FLD_ACTOR], *type = &a->v[KR_FLD_TYPE],
                          *cursor = &a->v[KR_FLD_CURSOR];
    uint64_t tenant = c->who->tenant;
    uint64_t from = a->v[KR_FLD_FROM].set ? a->v[KR_FLD_FROM].u : 0;
    uint64_t to = UINT64_MAX, after = 0;
    uint32_t limit = cmd_limit(c), n = 0;
    kr_err err = KR_OK;
    if (a->v[KR_FLD_TO].set)
        to = a->v[KR_FLD_TO].u ? a->v[KR_FLD_TO].u : c->now;
    if (type->set && kr_event_lookup((const char *)type->p, type->n) < 0)
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_TYPE].name, "no such event type");
    if (cursor->set) {
        if (cursor->n != 8)
            return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_CURSOR].name,
                            "not a cursor of this list");
        after = v_get_u64(cursor->p);
        if (after == UINT64_MAX)
            return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_CURSOR].name,
                            "not a cursor of this list");
    }

    struct audit_entry *e = calloc(limit, sizeof *e);
    if (!e)
        return KR_ENOMEM;
    /* The journal's own per-tenant index (tenant|seq, written in the same
     * transaction as each record) is the audit index: one key range per
     * tenant, in seq order. */
    struct jrn_query q = {.kind = JRN_Q_TENANT, .tenant = tenant, .from = after + 1};
    struct jrn_cursor *cur;
    if ((err = jrn_cursor_new(c->d->j, &q, &cur))) {
        free(e);
        return err;
    }
    struct jrn_record r;
    uint64_t next = 0; /* the cursor to return: 0 = the end was reached */
    uint64_t last = after;
    for (uint32_t scanned = 0;; scanned++) {
        if (scanned == KR_AUDIT_SCAN_MAX || n == limit) {
            err = jrn_cursor_next(cur, &r);
            if (err == KR_OK)
                next = last; /* more records: go on after the last one looked at */
            break;
        }
        if ((err = jrn_cursor_next(cur, &r)))
            break;
        last = r.seq;
        if (r.time_ns >= to)
            break; /* times never decrease along seq: nothing later matches */
        if (r.time_ns < from)
            continue;
        if (type->set && (type->n != r.type_len || memcmp(type->p, r.type, r.type_len) != 0))
            continue;
        if (actor->set && (actor->n != r.actor_len || memcmp(actor->p, r.actor, r.actor_len) != 0))
            continue;
        struct audit_entry *x = &e[n++];
        x->seq = r.seq;
        x->time = r.time_ns;
        x->type_len = (uint8_t)r.type_len;
        memcpy(x->type, r.type, r.type_len);
        x->actor_len = (uint8_t)r.actor_len;
        memcpy(x->actor, r.actor, r.actor_len);
    }
    jrn_cursor_free(cur);
    if (err == KR_ENOTFOUND)
        err = KR_OK;
    if (err) {
        free(e);
        return err;
    }
    res_map(c, 2);
    for (uint32_t i = 0; i < kr_ops[KR_OP_AUDIT_LIST].nresult; i++)
        if (kr_ops[KR_OP_AUDIT_LIST].result[i].field < 0)
            res_keyname(c, kr_ops[KR_OP_AUDIT_LIST].result[i].list_name);
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n; i++) {
        char jst[JST_LEN + 1];
        size_t jl = jst_format(e[i].time, jst);
        res_map(c, 5);
        res_u64(c, KR_FLD_SEQ, e[i].seq);
        res_u64(c, KR_FLD_TIME, e[i].time);
        res_str(c, KR_FLD_JST, jst, jl);
        res_str(c, KR_FLD_ACTOR, e[i].actor, e[i].actor_len);
        res_str(c, KR_FLD_TYPE, e[i].type, e[i].type_len);
    }
    if (next) {
        uint8_t cb[8];
        v_put_u64(cb, next);
        res_bytes(c, KR_FLD_CURSOR, cb, 8);
    } else {
        res_nil(c, KR_FLD_CURSOR);
    }
    free(e);
    return KR_OK;
}

/* ---- journal.read ---- */

kr_err cmd_journal_read(struct cmd *c)
{
    kr_err err = KR_OK;
    uint32_t limit = cmd_limit(c), n = 0;
    struct jrn_query q = {.from = c->args->v[KR_FLD_SEQ].u};
    if (c->who->role == KR_ROLE_OPERATOR) {
        q.kind = JRN_Q_RANGE;
    } else {
        q.kind = JRN_Q_TENANT; /* an auditor: its own tenant's records */
        q.tenant = c->who->tenant;
    }
    /* Records as stored, back to back; a record's stored form is canonical,
     * so encoding the decoded record gives its exact bytes. */
    size_t cap = KR_JOURNAL_READ_BYTES_MAX + KR_RECORD_MAX, used = 0;
    uint8_t *buf = malloc(cap);
    uint64_t *seq = calloc(limit, sizeof *seq);
    size_t *len = calloc(limit, sizeof *len);
    struct jrn_cursor *cur = NULL;
    if (!buf || !seq || !len) {
        err = KR_ENOMEM;
        goto out;
    }
    if ((err = jrn_cursor_new(c->d->j, &q, &cur)))
        goto out;
    while (n < limit && used < KR_JOURNAL_READ_BYTES_MAX) {
        struct jrn_record r;
        if ((err = jrn_cursor_next(cur, &r))) {
            if (err == KR_ENOTFOUND)
                err = KR_OK;
            break;
        }
        if ((err = jrn_record_encode(&r, buf + used, cap - used, &len[n], NULL)))
            goto out;
        seq[n] = r.seq;
        used += len[n++];
    }
    if (err)
        goto out;
    res_map(c, 1);
    res_keyname(c, kr_ops[KR_OP_JOURNAL_READ].result[0].list_name);
    msgpack_pack_array(&c->res, n);
    used = 0;
    for (uint32_t i = 0; i < n; i++) {
        res_map(c, 2);
        res_u64(c, KR_FLD_SEQ, seq[i]);
        res_bytes(c, KR_FLD_RECORD, buf + used, len[i]);
        used += len[i];
    }
out:
    jrn_cursor_free(cur);
    free(buf);
    free(seq);
    free(len);
    return err;
}

/* ---- journal.checkpoint, journal.proof ---- */

kr_err cmd_journal_checkpoint(struct cmd *c)
{
    char note[KR_NOTE_MAX + 1];
    size_t len;
    kr_err err = KR_OK;
    if ((err = jrn_checkpoint(c->d->j, note, sizeof note, &len)))
        return err;
    res_map(c, 1);
    res_str(c, KR_FLD_CHECKPOINT, note, len);
    return KR_OK;
}

kr_err cmd_journal_proof(struct cmd *c)
{
    const struct kr_value *seq = &c->args->v[KR_FLD_SEQ], *old = &c->args->v[KR_FLD_OLD_SIZE];
    uint8_t proof[KR_PROOF_MAX][KR_HASH_LEN];
    size_t n;
    kr_err err = KR_OK;
    uint64_t size = c->args->v[KR_FLD_SIZE].u;
    if (seq->set == old->set)
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_SEQ].name,
                        "give seq (inclusion) or old_size (consistency), not both");
    if (size > jrn_size(c->d->j))
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_SIZE].name, "beyond the journal's size");
    if (seq->set) {
        if (seq->u > size)
            return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_SEQ].name, "beyond size");
        if (c->who->role != KR_ROLE_OPERATOR) {
            /* An auditor proves its own tenant's records only. */
            struct jrn_record r;
            err = jrn_read_in(c->d->j, c->txn, seq->u, &r);
            if (err == KR_ENOTFOUND || (!err && r.tenant != c->who->tenant))
                return cmd_fail(c, KR_ENOTFOUND, kr_fields[KR_FLD_SEQ].name, "no such record");
            if (err)
                return err;
        }
        err = jrn_inclusion_proof(c->d->j, seq->u, size, proof, KR_PROOF_MAX, &n);
    } else {
        if (old->u > size)
            return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_OLD_SIZE].name, "beyond size");
        err = jrn_consistency_proof(c->d->j, old->u, size, proof, KR_PROOF_MAX, &n);
    }
    if (err)
        return err;
    res_map(c, 1);
    res_bytes(c, KR_FLD_PROOF, proof, n * KR_HASH_LEN);
    return KR_OK;
}

/* ---- audit.export ---- */

kr_err cmd_audit_export(struct cmd *c)
{
    const struct kr_value *from = &c->args->v[KR_FLD_FROM_SEQ], *to = &c->args->v[KR_FLD_TO_SEQ],
                          *limit = &c->args->v[KR_FLD_LIMIT];
    /* Only the caller's own tenant: the op is the auditor's (ops.json). */
    struct exp_options o = {.tenant = c->who->tenant,
                            .from = from->set ? from->u : 1,
                            .to = to->set ? to->u : 0,
                            .max_records = limit->set ? limit->u : KR_EXPORT_OP_RECORDS_MAX,
                            .max_bytes = KR_EXPORT_OP_BYTES_MAX};
    if (o.tenant == 0)
        return cmd_fail(c, KR_EFORBIDDEN, "op", "a tenant's auditor only");
    if (o.to && o.from > o.to)
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_TO_SEQ].name, "before from_seq");
    char *doc = NULL;
    size_t len = 0;
    struct exp_built built;
    kr_err err = exp_build(c->d->j, &o, &doc, &len, &built);
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, KR_ENOTFOUND, kr_fields[KR_FLD_FROM_SEQ].name,
                        "the tenant has no records in this range");
    if (err)
        return err;
    if (len > KR_API_REPLY_MAX - 1024) { /* the budget is an estimate: never past the cap */
        free(doc);
        return cmd_fail(c, KR_ETOOLARGE, kr_fields[KR_FLD_LIMIT].name,
                        "the page does not fit a reply: ask for fewer records");
    }
    /* The export is recorded (who took which records), so the tenant's audit
     * trail and report show it. */
    uint64_t version = 0;
    struct kr_payload *p = NULL;
    if ((err = cmd_stream_version(c, o.tenant, kr_events[KR_EV_AUDIT_EXPORTED].stream_prefix,
                                  c->who->account, &version)) == KR_OK &&
        !(p = cmd_event(c, KR_EV_AUDIT_EXPORTED, o.tenant, version)))
        err = KR_ENOMEM;
    if (!err) {
        kr_set_bytes(p, KR_FLD_ACCOUNT, c->who->account, 16);
        kr_set_u64(p, KR_FLD_FROM_SEQ, built.first);
        kr_set_u64(p, KR_FLD_TO_SEQ, built.last);
        err = cmd_commit(c);
    }
    if (err) {
        free(doc);
        return err;
    }
    res_map(c, 2);
    res_bytes(c, KR_FLD_EXPORT, doc, len);
    if (built.next_from)
        res_u64(c, KR_FLD_NEXT_FROM, built.next_from);
    else
        res_nil(c, KR_FLD_NEXT_FROM);
    free(doc);
    return KR_OK;
}
