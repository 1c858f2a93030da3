/*
 * cmd_audit.c: the audit view of a tenant (audit.list: who did what when,
 * times also in JST) and the journal as auditors and operators read it
 * (journal.read, journal.checkpoint, journal.proof).
 *
 * Design notes. v.audit (written by views.c for every record) is keyed
 * tenant|seq, so a tenant's history is one key range in seq order, and since
 * record times never decrease along seq, a time range is a contiguous run of
 * it. Filters by actor and type are not indexed: a call examines at most
 * AUDIT_SCAN_MAX rows and hands back a cursor to go on from, so a filter that
 * matches nothing costs bounded work per request.
 *
 * journal.read gives records exactly as stored (signed and hashed), so an
 * auditor checks them with the public key alone. Auditors see only their own
 * tenant's records; operators see every record.
 */
#include "jst.h"
#include "notices.h"

#include <stdlib.h>
#include <string.h>

/* ---- audit.list ---- */

struct audit_entry {
    uint64_t seq, time;
    uint16_t ev;
    uint8_t actor_len;
    char actor[KR_ACTOR_MAX];
};

#define AUDIT_ROW_MIN 11u /* time(8) type(2) actor_len(1) */

kr_err cmd_audit_list(struct cmd *c)
{
    const struct kr_payload *a = c->args;
    const struct kr_value *actor = &a->v[KR_FLD_ACTOR], *type = &a->v[KR_FLD_TYPE],
                          *cursor = &a->v[KR_FLD_CURSOR];
    uint64_t tenant = c->who->tenant;
    uint64_t from = a->v[KR_FLD_FROM].set ? a->v[KR_FLD_FROM].u : 0;
    uint64_t to = UINT64_MAX, after = 0;
    uint32_t limit = cmd_limit(c), n = 0;
    int ev = -1;
    kr_err err = KR_OK;
    if (a->v[KR_FLD_TO].set)
        to = a->v[KR_FLD_TO].u ? a->v[KR_FLD_TO].u : c->now;
    if (type->set && (ev = kr_event_lookup((const char *)type->p, type->n)) < 0)
        return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_TYPE].name, "no such event type");
    if (cursor->set) {
        if (cursor->n != 8)
            return cmd_fail(c, KR_EINVAL, kr_fields[KR_FLD_CURSOR].name,
                            "not a cursor of this list");
        after = v_get_u64(cursor->p);
    }

    struct audit_entry *e = calloc(limit, sizeof *e);
    if (!e)
        return KR_ENOMEM;
    MDB_cursor *cur;
    MDB_val k, val;
    uint8_t key[16];
    uint64_t next = 0; /* the cursor to return: 0 = the end was reached */
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_AUDIT], &cur);
    if (rc) {
        free(e);
        return kr_err_from_mdb(rc);
    }
    v_put_u64(key, tenant);
    v_put_u64(key + 8, after == UINT64_MAX ? after : after + 1);
    k = (MDB_val){16, key};
    uint64_t last = after;
    rc = mdb_cursor_get(cur, &k, &val, MDB_SET_RANGE);
    for (uint32_t scanned = 0; rc == MDB_SUCCESS; scanned++) {
        if (k.mv_size != 16 || v_get_u64(k.mv_data) != tenant)
            break;
        if (scanned == AUDIT_SCAN_MAX || n == limit) {
            next = last; /* more rows: go on after the last one looked at */
            break;
        }
        const uint8_t *b = val.mv_data;
        if (val.mv_size < AUDIT_ROW_MIN || val.mv_size != AUDIT_ROW_MIN + b[10] ||
            b[10] > KR_ACTOR_MAX) {
            err = KR_ECORRUPT;
            break;
        }
        uint64_t seq = v_get_u64((const uint8_t *)k.mv_data + 8), time = v_get_u64(b);
        uint16_t tev = (uint16_t)(b[8] << 8 | b[9]);
        last = seq;
        if (time >= to)
            break; /* times never decrease along seq: nothing later matches */
        if (time >= from && (ev < 0 || tev == ev) &&
            (!actor->set || (actor->n == b[10] && memcmp(actor->p, b + 11, b[10]) == 0))) {
            struct audit_entry *x = &e[n++];
            x->seq = seq;
            x->time = time;
            x->ev = tev;
            x->actor_len = b[10];
            memcpy(x->actor, b + 11, b[10]);
        }
        rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (!err && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
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
        const char *tn = e[i].ev < KR_EV__COUNT ? kr_events[e[i].ev].name : "";
        res_map(c, 5);
        res_u64(c, KR_FLD_SEQ, e[i].seq);
        res_u64(c, KR_FLD_TIME, e[i].time);
        res_str(c, KR_FLD_JST, jst, jl);
        res_str(c, KR_FLD_ACTOR, e[i].actor, e[i].actor_len);
        res_str(c, KR_FLD_TYPE, tn, strlen(tn));
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
    size_t cap = JOURNAL_READ_BYTES_MAX + KR_RECORD_MAX, used = 0;
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
    while (n < limit && used < JOURNAL_READ_BYTES_MAX) {
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
