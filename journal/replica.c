/*
 * replica.c: replication messages (chunks) and the checkpoints a publisher
 * splits its backlog at (see replica.h).
 *
 * Design notes
 * - The codec knows nothing of NATS: a chunk is bytes, its headers (msg id,
 *   Kiroku-First/Last/Epoch) are the publisher's. Everything that decides
 *   whether a record is trusted is in the apply path, not here: decoding only
 *   proves the envelope well-formed and bounded, so a follower can look at
 *   journal id and seqs before it spends a signature check.
 * - Encoding reads the stored values under one read transaction and copies
 *   them into the message as they are: a follower hashes exactly the bytes
 *   the primary hashed, stripped payloads included (nil), so erasure that
 *   happened before publishing travels as erasure.
 */
#include "replica.h"

#include "journal_internal.h"
#include "mp.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of the envelope around the records at most: fixarray(6), the kind
 * (fixstr), bin8(16), two uint64 and an array32 header. */
#define ENVELOPE_MAX (1u + 1u + (sizeof(JRN_REPL_KIND) - 1) + 2u + 16u + 9u + 9u + 5u)

/* The msgpack header of a bin or str of len bytes. */
static size_t bin_header_len(size_t len)
{
    return len <= 0xff ? 2u : len <= 0xffff ? 3u : 5u;
}

static size_t str_header_len(size_t len)
{
    return len <= 31 ? 1u : bin_header_len(len);
}

kr_err jrn_repl_pack(const struct jrn_repl_chunk *c, uint8_t *out, size_t cap, size_t *len)
{
    if (!c || !out || !len || (c->n > 0 && (!c->rec || !c->rec_len)))
        return KR_EINVAL;
    if (c->n == 0 || c->n > KR_REPL_CHUNK_RECORDS || (c->note && c->note_len == 0))
        return KR_EINVAL;
    if (c->note && c->note_len > KR_NOTE_MAX)
        return KR_ETOOLARGE;
    for (size_t i = 0; i < c->n; i++)
        if (c->rec_len[i] == 0 || c->rec_len[i] > KR_RECORD_MAX || !c->rec[i])
            return KR_EINVAL;
    struct kr_mp_fixbuf fb = {.p = out, .cap = cap < KR_REPL_MSG_MAX ? cap : KR_REPL_MSG_MAX};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_str(&pk, sizeof(JRN_REPL_KIND) - 1);
    msgpack_pack_str_body(&pk, JRN_REPL_KIND, sizeof(JRN_REPL_KIND) - 1);
    msgpack_pack_bin(&pk, sizeof c->journal_id);
    msgpack_pack_bin_body(&pk, c->journal_id, sizeof c->journal_id);
    msgpack_pack_uint64(&pk, c->epoch);
    msgpack_pack_uint64(&pk, c->first);
    msgpack_pack_array(&pk, c->n);
    for (size_t i = 0; i < c->n && !fb.overflow; i++) {
        msgpack_pack_bin(&pk, c->rec_len[i]);
        msgpack_pack_bin_body(&pk, c->rec[i], c->rec_len[i]);
    }
    if (c->note) {
        msgpack_pack_str(&pk, c->note_len);
        msgpack_pack_str_body(&pk, c->note, c->note_len);
    } else {
        msgpack_pack_nil(&pk);
    }
    if (fb.overflow)
        return KR_ETOOLARGE;
    *len = fb.len;
    return KR_OK;
}

/* jrn_repl_encode's reading: how many records from `first` (at most to
 * `last`) fit in `limit` bytes with the note when the chunk reaches last,
 * their stored values into c. */
static kr_err encode_gather(struct journal *j, MDB_txn *txn, uint64_t first, uint64_t last,
                            size_t note_len, size_t limit, struct jrn_repl_chunk *c)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, j->db_events, &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    uint8_t kb[8];
    kr_put_be64(kb, first);
    MDB_val k = {8, kb}, v;
    size_t total = ENVELOPE_MAX;
    kr_err err = KR_OK;
    c->n = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
    for (uint64_t seq = first; seq <= last && c->n < KR_REPL_CHUNK_RECORDS; seq++) {
        if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size != 8 || kr_get_be64(k.mv_data) != seq))) {
            err = KR_ECORRUPT; /* a committed record is missing */
            break;
        }
        if (rc) {
            err = kr_err_from_mdb(rc);
            break;
        }
        if (v.mv_size == 0 || v.mv_size > KR_RECORD_MAX) {
            err = KR_ECORRUPT;
            break;
        }
        size_t add = bin_header_len(v.mv_size) + v.mv_size;
        size_t tail = seq == last ? str_header_len(note_len) + note_len : 1u;
        if (total + add + tail > limit) {
            if (c->n == 0)
                err = KR_ETOOLARGE;
            break;
        }
        total += add;
        c->rec[c->n] = v.mv_data;
        c->rec_len[c->n] = v.mv_size;
        c->n++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return err;
}

kr_err jrn_repl_encode(struct journal *j, uint64_t first, uint64_t last, const char *note,
                       size_t note_len, uint64_t epoch, uint8_t *out, size_t cap, size_t *len,
                       uint64_t *chunk_last)
{
    if (!j || !note || note_len == 0 || !out || !len || !chunk_last || first == 0 || first > last ||
        epoch == 0)
        return KR_EINVAL;
    if (note_len > KR_NOTE_MAX)
        return KR_EINVAL;
    if (last > jrn_size(j))
        return KR_ENOTFOUND;
    struct jrn_repl_chunk c = {.epoch = epoch, .first = first};
    memcpy(c.journal_id, j->journal_id, sizeof c.journal_id);
    c.rec = malloc(KR_REPL_CHUNK_RECORDS * sizeof *c.rec);
    c.rec_len = malloc(KR_REPL_CHUNK_RECORDS * sizeof *c.rec_len);
    MDB_txn *txn = NULL;
    kr_err err = !c.rec || !c.rec_len ? KR_ENOMEM : KR_OK;
    if (!err)
        err = kr_err_from_mdb(mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn));
    size_t limit = cap < KR_REPL_MSG_MAX ? cap : KR_REPL_MSG_MAX;
    if (!err)
        err = encode_gather(j, txn, first, last, note_len, limit, &c);
    if (!err) {
        uint64_t end = first + c.n - 1;
        if (end == last) {
            c.note = note;
            c.note_len = note_len;
        }
        if (!(err = jrn_repl_pack(&c, out, cap, len)))
            *chunk_last = end;
    }
    if (txn)
        mdb_txn_abort(txn);
    free(c.rec);
    free(c.rec_len);
    return err;
}

/* jrn_repl_decode's envelope: kind, journal id, epoch, first; *n the record
 * count announced. */
static kr_err decode_envelope(struct kr_mp_reader *rd, struct jrn_repl_chunk *c, uint32_t *n)
{
    uint32_t count;
    const char *kind;
    const uint8_t *id;
    size_t kind_len, id_len;
    if (kr_mp_read_array(rd, &count) || count != 6)
        return KR_ECORRUPT;
    if (kr_mp_read_str(rd, &kind, &kind_len))
        return KR_ECORRUPT;
    if (kind_len != sizeof(JRN_REPL_KIND) - 1 || memcmp(kind, JRN_REPL_KIND, kind_len) != 0)
        return KR_EVERSION;
    if (kr_mp_read_bin(rd, &id, &id_len) || id_len != sizeof c->journal_id)
        return KR_ECORRUPT;
    memcpy(c->journal_id, id, id_len);
    if (kr_mp_read_uint(rd, &c->epoch) || c->epoch == 0 || kr_mp_read_uint(rd, &c->first) ||
        c->first == 0 || c->first >= JRN_SIZE_MAX)
        return KR_ECORRUPT;
    if (kr_mp_read_array(rd, n) || *n == 0 || *n > KR_REPL_CHUNK_RECORDS ||
        c->first + *n - 1 >= JRN_SIZE_MAX)
        return KR_ECORRUPT;
    return KR_OK;
}

kr_err jrn_repl_decode(const uint8_t *buf, size_t len, struct jrn_repl_chunk *c, size_t cap)
{
    if (!c || (!buf && len > 0) || !c->rec || !c->rec_len)
        return KR_EINVAL;
    if (len > KR_REPL_MSG_MAX)
        return KR_ETOOLARGE;
    struct kr_mp_reader rd;
    kr_mp_reader_init(&rd, buf, len, true);
    uint32_t n;
    kr_err err = decode_envelope(&rd, c, &n);
    if (err)
        return err;
    if (n > cap)
        return KR_ETOOLARGE;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *b;
        size_t blen;
        if (kr_mp_read_bin(&rd, &b, &blen) || blen == 0 || blen > KR_RECORD_MAX)
            return KR_ECORRUPT;
        c->rec[i] = b;
        c->rec_len[i] = blen;
    }
    c->n = n;
    c->note = NULL;
    c->note_len = 0;
    if (kr_mp_peek_nil(&rd)) {
        if (kr_mp_read_nil(&rd))
            return KR_ECORRUPT;
    } else if (kr_mp_read_str(&rd, &c->note, &c->note_len) || c->note_len == 0 ||
               c->note_len > KR_NOTE_MAX) {
        return KR_ECORRUPT;
    }
    return kr_mp_remaining(&rd) == 0 ? KR_OK : KR_ECORRUPT;
}

/* The tree size of a stored checkpoint note: its second line, decimal. */
static kr_err note_size(const char *note, size_t len, uint64_t *size)
{
    const char *nl = memchr(note, '\n', len);
    if (!nl)
        return KR_ECORRUPT;
    size_t i = (size_t)(nl - note) + 1;
    uint64_t v = 0;
    size_t digits = 0;
    for (; i < len && note[i] >= '0' && note[i] <= '9'; i++, digits++) {
        if (v > (UINT64_MAX - 9) / 10)
            return KR_ECORRUPT;
        v = v * 10 + (uint64_t)(note[i] - '0');
    }
    if (digits == 0 || i >= len || note[i] != '\n')
        return KR_ECORRUPT;
    *size = v;
    return KR_OK;
}

/* jrn_checkpoint_after inside txn. */
static kr_err checkpoint_after_in(struct journal *j, MDB_txn *txn, uint64_t after, MDB_val *note,
                                  uint64_t *size)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, j->db_checkpoints, &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    uint8_t kb[8];
    kr_put_be64(kb, after + 1);
    MDB_val k = {8, kb};
    rc = after == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, note, MDB_SET_RANGE);
    mdb_cursor_close(cur);
    if (rc == 0) {
        if (k.mv_size != 8)
            return KR_ECORRUPT;
        *size = kr_get_be64(k.mv_data);
        return KR_OK;
    }
    if (rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    /* None kept past `after`: the newest, if it is. */
    MDB_val mk = {strlen(JRN_META_CHECKPOINT), JRN_META_CHECKPOINT};
    if ((rc = mdb_get(txn, j->db_meta, &mk, note)))
        return rc == MDB_NOTFOUND ? KR_ENOTFOUND : kr_err_from_mdb(rc);
    kr_err err = note_size(note->mv_data, note->mv_size, size);
    if (err)
        return err;
    return *size > after ? KR_OK : KR_ENOTFOUND;
}

kr_err jrn_checkpoint_after(struct journal *j, uint64_t after, uint64_t *size, char *note,
                            size_t cap, size_t *len)
{
    if (!j || !size || !note || !len)
        return KR_EINVAL;
    MDB_txn *txn;
    int rc = mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    MDB_val v = {0, NULL};
    uint64_t s = 0;
    kr_err err = checkpoint_after_in(j, txn, after, &v, &s);
    if (!err && (v.mv_size == 0 || v.mv_size > KR_NOTE_MAX))
        err = KR_ECORRUPT;
    if (!err && v.mv_size + 1 > cap)
        err = KR_ETOOLARGE;
    if (!err) {
        memcpy(note, v.mv_data, v.mv_size);
        note[v.mv_size] = '\0';
        *len = v.mv_size;
        *size = s;
    }
    mdb_txn_abort(txn);
    return err;
}

kr_err jrn_epoch(struct journal *j, uint64_t *epoch)
{
    if (!j || !epoch)
        return KR_EINVAL;
    struct jrn_query q = {.kind = JRN_Q_STREAM,
                          .tenant = 0,
                          .stream = JRN_SYSTEM_STREAM,
                          .stream_len = strlen(JRN_SYSTEM_STREAM)};
    struct jrn_cursor *c;
    kr_err err = jrn_cursor_new(j, &q, &c);
    if (err)
        return err;
    uint64_t n = 1;
    struct jrn_record r;
    while ((err = jrn_cursor_next(c, &r)) == KR_OK)
        n += jrn_type_is(&r, JRN_TYPE_EPOCH_STARTED);
    jrn_cursor_free(c);
    if (err != KR_ENOTFOUND)
        return err;
    *epoch = n;
    return KR_OK;
}
