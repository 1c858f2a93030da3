/*
 * strip.c: stripping payloads from stored records (jrn_strip, journal.h).
 *
 * A stripped record's stored value is [header, nil] with the header bytes
 * unchanged, so its leaf hash, every Merkle node, proof and signed checkpoint
 * stay as they were; only the payload bytes go (journal-format.md).
 *
 * Design notes
 * - No race with the writer. Each strip transaction is an LMDB write
 *   transaction of the journal's own environment: LMDB lets one write
 *   transaction run at a time, so a strip transaction holds the same lock as
 *   the writer's batches and runs between two of them. Stripping changes
 *   nothing the writer keeps in memory (chain head, frontier, sizes, tseq
 *   counts come from keys and headers, which stay).
 * - Bounded. A transaction examines at most KR_STRIP_TXN_RECORDS records and
 *   commits, so appends wait at most one such transaction.
 * - Resumable and idempotent. Each transaction commits what it stripped; a
 *   record already stripped is skipped, so a rerun after a crash finishes the
 *   work and counts only what it stripped itself.
 */
#include "journal_internal.h"

#include <stdlib.h>
#include <string.h>

_Atomic int jrn_testing_strip_txns;

/* Strips record `seq` (its stored value in v) if the spec selects it: writes
 * [header, nil] under the same key. *done is set when it was stripped. */
static kr_err strip_one(struct journal *j, MDB_txn *txn, uint64_t seq, const MDB_val *v,
                        const struct jrn_strip_spec *s, uint8_t *buf, bool *done)
{
    struct jrn_record r;
    *done = false;
    if (jrn_record_decode(v->mv_data, v->mv_size, &r) != KR_OK || r.seq != seq)
        return KR_ECORRUPT;
    if (r.payload_stripped || jrn_is_system(&r))
        return KR_OK;
    if (!s->any_tenant && r.tenant != s->tenant)
        return KR_ECORRUPT; /* the tenants index named another tenant's record */
    if (s->before_ns && r.time_ns >= s->before_ns)
        return KR_OK;
    if (s->want && !s->want(s->arg, &r))
        return KR_OK;
    /* fixarray(2), the header bytes as stored, nil. */
    KR_ASSERT(r.header_len <= KR_HEADER_MAX);
    buf[0] = 0x92;
    memcpy(buf + 1, r.header, r.header_len);
    buf[1 + r.header_len] = 0xc0;
    uint8_t kb[8];
    kr_put_be64(kb, seq);
    MDB_val k = {8, kb}, nv = {r.header_len + 2, buf};
    int rc = mdb_put(txn, j->db_events, &k, &nv, 0);
    if (rc)
        return kr_err_from_mdb(rc);
    *done = true;
    return KR_OK;
}

/* One bounded transaction from seq *next (at most `last`). Advances *next past
 * the records it examined; *finished when nothing is left. */
static kr_err strip_txn(struct journal *j, const struct jrn_strip_spec *s, uint64_t last,
                        uint64_t *next, uint64_t *stripped, bool *finished, uint8_t *buf)
{
    MDB_txn *txn;
    MDB_cursor *c;
    kr_err err = KR_OK;
    uint64_t n = 0, count = 0, pos = *next;
    int rc = mdb_txn_begin(j->env, NULL, 0, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((rc = mdb_cursor_open(txn, s->any_tenant ? j->db_events : j->db_tenants, &c))) {
        mdb_txn_abort(txn);
        return kr_err_from_mdb(rc);
    }
    uint8_t key[16];
    size_t klen = s->any_tenant ? 8 : 16;
    if (s->any_tenant) {
        kr_put_be64(key, pos);
    } else {
        kr_put_be64(key, s->tenant);
        kr_put_be64(key + 8, pos);
    }
    MDB_val k = {klen, key}, v;
    *finished = false;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS && n < KR_STRIP_TXN_RECORDS) {
        if (k.mv_size != klen || (!s->any_tenant && memcmp(k.mv_data, key, 8) != 0))
            break; /* past the tenant's entries */
        uint64_t seq = kr_get_be64((const uint8_t *)k.mv_data + klen - 8);
        if (seq == 0) {
            err = KR_ECORRUPT;
            break;
        }
        if (seq > last)
            break;
        bool done = false;
        if (s->any_tenant) {
            err = strip_one(j, txn, seq, &v, s, buf, &done);
        } else {
            uint8_t sk[8];
            kr_put_be64(sk, seq);
            MDB_val ek = {8, sk}, ev;
            rc = mdb_get(txn, j->db_events, &ek, &ev);
            err = rc == MDB_NOTFOUND ? KR_ECORRUPT
                  : rc               ? kr_err_from_mdb(rc)
                                     : strip_one(j, txn, seq, &ev, s, buf, &done);
        }
        if (err)
            break;
        count += done;
        n++;
        pos = seq + 1;
        /* The put may have moved the cursor's page: find the next key anew. */
        if (s->any_tenant)
            kr_put_be64(key, pos);
        else
            kr_put_be64(key + 8, pos);
        k = (MDB_val){klen, key};
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    }
    if (err == KR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
    mdb_cursor_close(c);
    if (err) {
        mdb_txn_abort(txn);
        return err;
    }
    if (n < KR_STRIP_TXN_RECORDS)
        *finished = true; /* the loop ended on the range's end, not the bound */
    if (count == 0) {
        mdb_txn_abort(txn);
    } else if ((err = jrn_commit_durable(j, txn))) {
        return err;
    }
    *next = pos;
    *stripped += count;
    return KR_OK;
}

kr_err jrn_strip(struct journal *j, const struct jrn_strip_spec *s, uint64_t *stripped)
{
    if (!j || !s || !stripped)
        return KR_EINVAL;
    *stripped = 0;
    if (j->read_only)
        return KR_ECLOSED;
    pthread_mutex_lock(&j->mu);
    kr_err failed = j->failed;
    pthread_mutex_unlock(&j->mu);
    if (failed)
        return failed;
    /* Records appended from now on are not this call's: the committed size
     * bounds the pass, so it ends even under a steady stream of appends. */
    uint64_t last = jrn_size(j);
    if (s->to_seq && s->to_seq < last)
        last = s->to_seq;
    uint8_t *buf = malloc(KR_HEADER_MAX + 2);
    if (!buf)
        return KR_ENOMEM;
    uint64_t next = 1;
    bool finished = false;
    kr_err err = KR_OK;
    while (!finished && next <= last) {
        if ((err = strip_txn(j, s, last, &next, stripped, &finished, buf)))
            break;
        /* Test hook: stop as a crash would, after so many transactions. */
        if (!finished && atomic_load(&jrn_testing_strip_txns) > 0 &&
            atomic_fetch_sub(&jrn_testing_strip_txns, 1) == 1) {
            free(buf);
            return KR_EIO;
        }
    }
    free(buf);
    if (err == KR_EIO) {
        /* A failed commit stops the journal, as a failed batch does. */
        pthread_mutex_lock(&j->mu);
        if (!j->failed)
            j->failed = KR_EIO;
        pthread_mutex_unlock(&j->mu);
    }
    return err;
}
