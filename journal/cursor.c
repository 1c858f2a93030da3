/*
 * cursor.c: reading the journal: single records, stream versions, paged
 * cursors, checkpoints and Merkle proofs.
 *
 * Every read runs in its own short read transaction. A cursor copies up to
 * KR_CURSOR_PAGE records (at most CURSOR_PAGE_BYTES) per transaction into its
 * own buffer, so a slow consumer never keeps LMDB from reusing pages.
 */
#include "journal_internal.h"

#include <stdlib.h>
#include <string.h>

/* Bytes of record data one cursor page may hold (besides one record of any size). */
#define CURSOR_PAGE_BYTES (1u << 20)

void jrn_recbuf_fini(struct jrn_recbuf *b)
{
    if (!b)
        return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

static kr_err read_txn(struct journal *j, MDB_txn **txn)
{
    return kr_err_from_mdb(mdb_txn_begin(j->env, NULL, MDB_RDONLY, txn));
}

kr_err jrn_read_in(struct journal *j, MDB_txn *txn, uint64_t seq, struct jrn_record *rec)
{
    uint8_t kb[8];
    if (seq == 0)
        return KR_ENOTFOUND;
    kr_put_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(txn, j->db_events, &k, &v);
    if (rc)
        return kr_err_from_mdb(rc);
    if (v.mv_size > KR_RECORD_MAX || jrn_record_decode(v.mv_data, v.mv_size, rec) ||
        rec->seq != seq)
        return KR_ECORRUPT;
    return KR_OK;
}

kr_err jrn_read(struct journal *j, uint64_t seq, struct jrn_recbuf *b)
{
    MDB_txn *txn;
    uint8_t kb[8];
    kr_err err;

    if (seq == 0)
        return KR_ENOTFOUND;
    if ((err = read_txn(j, &txn)))
        return err;
    kr_put_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(txn, j->db_events, &k, &v);
    if (rc) {
        mdb_txn_abort(txn);
        return kr_err_from_mdb(rc);
    }
    if (v.mv_size > KR_RECORD_MAX) {
        mdb_txn_abort(txn);
        return KR_ECORRUPT;
    }
    if (b->cap < v.mv_size) {
        uint8_t *p = realloc(b->data, KR_RECORD_MAX);
        if (!p) {
            mdb_txn_abort(txn);
            return KR_ENOMEM;
        }
        b->data = p;
        b->cap = KR_RECORD_MAX;
    }
    memcpy(b->data, v.mv_data, v.mv_size);
    size_t len = v.mv_size;
    mdb_txn_abort(txn);
    if ((err = jrn_record_decode(b->data, len, &b->rec)))
        return KR_ECORRUPT;
    return b->rec.seq == seq ? KR_OK : KR_ECORRUPT;
}

kr_err jrn_stream_version(struct journal *j, uint64_t tenant, const char *stream, size_t stream_len,
                          uint64_t *version)
{
    MDB_txn *txn;
    kr_err err;
    if (stream_len == 0 || stream_len > KR_STREAM_MAX)
        return KR_EINVAL;
    if ((err = read_txn(j, &txn)))
        return err;
    err = jrn_stream_version_in(j, txn, tenant, stream, stream_len, version);
    mdb_txn_abort(txn);
    return err;
}

kr_err jrn_stream_version_in(struct journal *j, MDB_txn *txn, uint64_t tenant, const char *stream,
                             size_t stream_len, uint64_t *version)
{
    uint64_t seq;
    if (stream_len == 0 || stream_len > KR_STREAM_MAX)
        return KR_EINVAL;
    return jrn_stream_head(j, txn, tenant, stream, stream_len, version, &seq);
}

/* ---- Cursors ---- */

struct jrn_cursor {
    struct journal *j;
    struct jrn_query q;
    char stream[KR_STREAM_MAX];
    uint64_t next;  /* next seq (RANGE, TENANT) or version (STREAM) to read */
    bool exhausted; /* the last page ended at the end of the data */
    uint8_t *buf;   /* page data: records back to back */
    size_t buf_cap;
    size_t *offsets; /* start of each record in buf; offsets[count] = end */
    size_t count, pos;
    MDB_txn *txn; /* reset between pages, renewed for the next */
};

kr_err jrn_cursor_new(struct journal *j, const struct jrn_query *q, struct jrn_cursor **out)
{
    if (!j || !q || !out)
        return KR_EINVAL;
    if (q->kind == JRN_Q_STREAM && (q->stream_len == 0 || q->stream_len > KR_STREAM_MAX))
        return KR_EINVAL;
    if (q->kind != JRN_Q_RANGE && q->kind != JRN_Q_STREAM && q->kind != JRN_Q_TENANT)
        return KR_EINVAL;
    struct jrn_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return KR_ENOMEM;
    c->j = j;
    c->q = *q;
    if (q->kind == JRN_Q_STREAM) {
        memcpy(c->stream, q->stream, q->stream_len);
        c->q.stream = c->stream;
    } else {
        c->q.stream = NULL;
        c->q.stream_len = 0;
    }
    c->next = q->from ? q->from : 1;
    c->buf_cap = CURSOR_PAGE_BYTES + KR_RECORD_MAX;
    c->buf = malloc(c->buf_cap);
    c->offsets = malloc((KR_CURSOR_PAGE + 1) * sizeof *c->offsets);
    if (!c->buf || !c->offsets) {
        jrn_cursor_free(c);
        return KR_ENOMEM;
    }
    *out = c;
    return KR_OK;
}

void jrn_cursor_free(struct jrn_cursor *c)
{
    if (!c)
        return;
    if (c->txn)
        mdb_txn_abort(c->txn);
    free(c->buf);
    free(c->offsets);
    free(c);
}

/* Appends the record stored under seq to the page. The index entry that led
 * here is not trusted: the record must be the one it claims (its tenant and,
 * for a stream, its stream and version), or a doctored index could hand one
 * tenant's record to another. */
static kr_err page_add(struct jrn_cursor *c, MDB_txn *txn, uint64_t seq, uint64_t pos, size_t *used)
{
    uint8_t kb[8];
    kr_put_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(txn, c->j->db_events, &k, &v);
    if (rc == MDB_NOTFOUND)
        return KR_ECORRUPT; /* an index names a record that is not there */
    if (rc)
        return kr_err_from_mdb(rc);
    if (v.mv_size > KR_RECORD_MAX)
        return KR_ECORRUPT;
    struct jrn_record r;
    if (jrn_record_decode(v.mv_data, v.mv_size, &r) != KR_OK || r.seq != seq ||
        r.tenant != c->q.tenant)
        return KR_ECORRUPT;
    if (c->q.kind == JRN_Q_STREAM && (r.version != pos || r.stream_len != c->q.stream_len ||
                                      memcmp(r.stream, c->q.stream, r.stream_len) != 0))
        return KR_ECORRUPT;
    memcpy(c->buf + *used, v.mv_data, v.mv_size);
    c->offsets[c->count++] = *used;
    *used += v.mv_size;
    return KR_OK;
}

static bool page_full(const struct jrn_cursor *c, size_t used)
{
    return c->count >= KR_CURSOR_PAGE || used >= CURSOR_PAGE_BYTES;
}

/* A stream's page: from its head, a seek down to the page's last version,
 * then prev links down to c->next, and the records read in version order. */
static kr_err fill_stream_page(struct jrn_cursor *c, size_t *used)
{
    uint64_t seqs[KR_CURSOR_PAGE], hv, hs, s;
    kr_err err = jrn_stream_head(c->j, c->txn, c->q.tenant, c->q.stream, c->q.stream_len, &hv, &hs);
    if (err || c->next > hv)
        return err;
    uint64_t last = hv - c->next < KR_CURSOR_PAGE ? hv : c->next + KR_CURSOR_PAGE - 1;
    if ((err = jrn_link_seek(c->j, c->txn, hs, hv, last, &s)))
        return err;
    size_t n = (size_t)(last - c->next + 1);
    for (size_t i = n; i-- > 0;) {
        seqs[i] = s;
        uint64_t prev, jump;
        if (i == 0)
            break;
        if ((err = jrn_link_get(c->j, c->txn, s, &prev, &jump)))
            return err;
        if (prev == 0 || prev >= s)
            return KR_ECORRUPT; /* links lead to older records only */
        s = prev;
    }
    for (size_t i = 0; i < n && !page_full(c, *used); i++) {
        if ((err = page_add(c, c->txn, seqs[i], c->next, used)))
            return err;
        c->next++;
    }
    return KR_OK;
}

static kr_err fill_page(struct jrn_cursor *c)
{
    struct journal *j = c->j;
    MDB_cursor *cur = NULL;
    kr_err err = KR_OK;
    size_t used = 0;
    int rc;

    c->count = c->pos = 0;
    if (c->txn)
        rc = mdb_txn_renew(c->txn);
    else
        rc = mdb_txn_begin(j->env, NULL, MDB_RDONLY, &c->txn);
    if (rc)
        return kr_err_from_mdb(rc);

    if (c->q.kind == JRN_Q_RANGE) {
        uint64_t last = c->q.to ? c->q.to : UINT64_MAX;
        rc = mdb_cursor_open(c->txn, j->db_events, &cur);
        if (rc) {
            err = kr_err_from_mdb(rc);
            goto out;
        }
        uint8_t kb[8];
        kr_put_be64(kb, c->next);
        MDB_val k = {8, kb}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
        while (rc == MDB_SUCCESS && !page_full(c, used)) {
            uint64_t seq = k.mv_size == 8 ? kr_get_be64(k.mv_data) : 0;
            if (seq != c->next || v.mv_size > KR_RECORD_MAX) {
                err = KR_ECORRUPT;
                goto out;
            }
            if (seq > last)
                break;
            memcpy(c->buf + used, v.mv_data, v.mv_size);
            c->offsets[c->count++] = used;
            used += v.mv_size;
            c->next++;
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            err = kr_err_from_mdb(rc);
    } else if (c->q.kind == JRN_Q_STREAM && !j->legacy_index) {
        err = fill_stream_page(c, &used);
    } else {
        bool stream = c->q.kind == JRN_Q_STREAM;
        uint8_t key[JRN_STREAM_KEY_MAX];
        size_t plen;
        if (stream) {
            plen = jrn_stream_prefix(key, c->q.tenant, c->q.stream, c->q.stream_len);
        } else {
            kr_put_be64(key, c->q.tenant);
            plen = 8;
        }
        rc = mdb_cursor_open(c->txn, stream ? j->db_streams : j->db_tenants, &cur);
        if (rc) {
            err = kr_err_from_mdb(rc);
            goto out;
        }
        kr_put_be64(key + plen, c->next);
        MDB_val k = {plen + 8, key}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (rc == MDB_SUCCESS && !page_full(c, used)) {
            if (k.mv_size != plen + 8 || memcmp(k.mv_data, key, plen) != 0)
                break;
            uint64_t pos = kr_get_be64((const uint8_t *)k.mv_data + plen);
            uint64_t seq = pos;
            if (pos == 0 || pos == UINT64_MAX) {
                err = KR_ECORRUPT; /* no version or seq is 0 or 2^64-1 */
                goto out;
            }
            if (stream) {
                if (v.mv_size != 8) {
                    err = KR_ECORRUPT;
                    goto out;
                }
                seq = kr_get_be64(v.mv_data);
            }
            if ((err = page_add(c, c->txn, seq, pos, &used)))
                goto out;
            c->next = pos + 1;
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            err = kr_err_from_mdb(rc);
    }
out:
    if (cur)
        mdb_cursor_close(cur);
    c->offsets[c->count] = used;
    mdb_txn_reset(c->txn);
    return err;
}

kr_err jrn_cursor_next(struct jrn_cursor *c, struct jrn_record *rec)
{
    kr_err err;
    if (c->pos >= c->count) {
        if ((err = fill_page(c)))
            return err;
        if (c->count == 0)
            return KR_ENOTFOUND;
    }
    size_t off = c->offsets[c->pos], end = c->offsets[c->pos + 1];
    c->pos++;
    if ((err = jrn_record_decode(c->buf + off, end - off, rec)))
        return KR_ECORRUPT;
    return KR_OK;
}

/* ---- Checkpoints and proofs ---- */

kr_err jrn_checkpoint(struct journal *j, char *out, size_t cap, size_t *len)
{
    MDB_txn *txn;
    kr_err err = read_txn(j, &txn);
    if (err)
        return err;
    MDB_val k = {strlen(JRN_META_CHECKPOINT), JRN_META_CHECKPOINT}, v;
    int rc = mdb_get(txn, j->db_meta, &k, &v);
    if (rc == MDB_SUCCESS) {
        if (v.mv_size + 1 > cap) {
            err = KR_ETOOLARGE;
        } else {
            memcpy(out, v.mv_data, v.mv_size);
            out[v.mv_size] = '\0';
            *len = v.mv_size;
        }
    } else {
        err = kr_err_from_mdb(rc);
    }
    mdb_txn_abort(txn);
    return err;
}

kr_err jrn_root(struct journal *j, uint64_t size, uint8_t out[KR_HASH_LEN])
{
    if (size > jrn_size(j))
        return KR_EINVAL;
    MDB_txn *txn;
    kr_err err = read_txn(j, &txn);
    if (err)
        return err;
    struct jrn_tree_ctx tc = {j, txn};
    err = mrk_root(jrn_tree_node, &tc, size, out);
    mdb_txn_abort(txn);
    return err;
}

kr_err jrn_inclusion_proof(struct journal *j, uint64_t seq, uint64_t size,
                           uint8_t proof[][KR_HASH_LEN], size_t cap, size_t *n)
{
    if (seq == 0 || seq > size || size > jrn_size(j))
        return KR_EINVAL;
    MDB_txn *txn;
    kr_err err = read_txn(j, &txn);
    if (err)
        return err;
    struct jrn_tree_ctx tc = {j, txn};
    err = mrk_inclusion_proof(jrn_tree_node, &tc, seq - 1, size, proof, cap, n);
    mdb_txn_abort(txn);
    return err;
}

kr_err jrn_consistency_proof(struct journal *j, uint64_t size1, uint64_t size2,
                             uint8_t proof[][KR_HASH_LEN], size_t cap, size_t *n)
{
    if (size1 > size2 || size2 > jrn_size(j))
        return KR_EINVAL;
    MDB_txn *txn;
    kr_err err = read_txn(j, &txn);
    if (err)
        return err;
    struct jrn_tree_ctx tc = {j, txn};
    err = mrk_consistency_proof(jrn_tree_node, &tc, size1, size2, proof, cap, n);
    mdb_txn_abort(txn);
    return err;
}
