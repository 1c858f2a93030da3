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

#include "path.h"

#include <errno.h>
#include <msgpack.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

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

/* ---- Applying on a follower ---- */

/* What a session changes outside LMDB, put back when it aborts: the
 * writer's tail, and the newest record time (a journal without a writer
 * hands none out, so the session owns it). */
struct repl_snapshot {
    struct jrn_tail tail;
    uint64_t last_time;
};

struct jrn_replica {
    struct journal *j;
    MDB_txn *txn;
    struct jrn_batch b;
    struct repl_snapshot snap;
    /* Every key the journal has had, in order (for signatures, previous
     * checkpoints and new key ids); [keys_at_begin, nkeys) came in this
     * session. cur signs the next record; ck is valid for a checkpoint at
     * the journal's size now. */
    struct kr_note_key *keys;
    size_t nkeys, keys_at_begin, cur, ck;
    uint64_t epochs;  /* 1 + epoch_started records */
    bool epoch_added; /* an epoch_started record came in this session */
    uint64_t added;
    size_t bytes;
    bool failed;
};

static void snap_take(const struct journal *j, struct repl_snapshot *s)
{
    jrn_tail_take(j, &s->tail);
    s->last_time = j->last_time;
}

static void snap_restore(struct journal *j, const struct repl_snapshot *s)
{
    jrn_tail_restore(j, &s->tail);
    j->last_time = s->last_time;
}

/* Records a fault and fails the session; returns err. */
static kr_err fault(struct jrn_replica *r, struct jrn_start_fault *f, kr_err err, uint64_t seq,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static kr_err fault(struct jrn_replica *r, struct jrn_start_fault *f, kr_err err, uint64_t seq,
                    const char *fmt, ...)
{
    r->failed = true;
    if (f) {
        va_list ap;
        va_start(ap, fmt);
        f->seq = seq;
        vsnprintf(f->what, sizeof f->what, fmt, ap);
        va_end(ap);
    }
    return err;
}

static ssize_t key_index(const struct jrn_replica *r, uint32_t key_id)
{
    for (size_t i = 0; i < r->nkeys; i++)
        if (r->keys[i].key_id == key_id)
            return (ssize_t)i;
    return -1;
}

static kr_err add_key(struct jrn_replica *r, uint32_t key_id, const uint8_t pk[KR_PUBKEY_LEN])
{
    if (r->nkeys >= KR_KEYS_MAX || key_index(r, key_id) >= 0)
        return KR_ECORRUPT;
    struct kr_note_key *k = &r->keys[r->nkeys++];
    snprintf(k->name, sizeof k->name, "%s", r->j->origin);
    memcpy(k->pk, pk, KR_PUBKEY_LEN);
    k->key_id = key_id;
    return KR_OK;
}

/* The key history from the journal's own stream, before the transaction. */
static kr_err load_keys(struct jrn_replica *r)
{
    struct journal *j = r->j;
    struct jrn_query q = {
        .kind = JRN_Q_STREAM, .stream = JRN_SYSTEM_STREAM, .stream_len = strlen(JRN_SYSTEM_STREAM)};
    struct jrn_cursor *c;
    kr_err err = jrn_cursor_new(j, &q, &c);
    if (err)
        return err;
    struct jrn_record rec;
    uint64_t last_seq = 0;
    uint32_t last_signer = 0;
    bool last_added = false;
    r->epochs = 1;
    while ((err = jrn_cursor_next(c, &rec)) == KR_OK) {
        struct jrn_key_payload kp;
        if (rec.payload_stripped || jrn_parse_key_payload(rec.payload, rec.payload_len, &kp) ||
            add_key(r, kp.key_id, kp.pk)) {
            err = KR_ECORRUPT;
            break;
        }
        r->epochs += jrn_type_is(&rec, JRN_TYPE_EPOCH_STARTED);
        last_seq = rec.seq;
        last_signer = rec.key_id;
        last_added = jrn_type_is(&rec, JRN_TYPE_KEY_ADDED);
    }
    jrn_cursor_free(c);
    if (err != KR_ENOTFOUND)
        return err;
    if (r->nkeys == 0)
        return KR_ECORRUPT;
    r->cur = r->ck = r->nkeys - 1;
    if (last_seq == j->size && last_added) {
        /* The journal ends at a key_added record: its checkpoint is the old key's. */
        ssize_t i = key_index(r, last_signer);
        if (i < 0)
            return KR_ECORRUPT;
        r->ck = (size_t)i;
    }
    r->keys_at_begin = r->nkeys;
    return KR_OK;
}

kr_err jrn_replica_begin(struct journal *j, struct jrn_replica **out)
{
    if (!j || !out)
        return KR_EINVAL;
    if (j->read_only || !j->no_appends)
        return KR_EBUSY;
    pthread_mutex_lock(&j->mu);
    bool busy = j->replica_active;
    j->replica_active = true;
    pthread_mutex_unlock(&j->mu);
    if (busy)
        return KR_EBUSY;
    struct jrn_replica *r = calloc(1, sizeof *r);
    kr_err err = KR_ENOMEM;
    if (r && (r->keys = calloc(KR_KEYS_MAX, sizeof *r->keys))) {
        r->j = j;
        err = load_keys(r);
    }
    if (!err)
        err = kr_err_from_mdb(mdb_txn_begin(j->env, NULL, 0, &r->txn));
    if (!err && (err = jrn_batch_open(j, r->txn, &r->b)))
        mdb_txn_abort(r->txn);
    if (err) {
        if (r)
            free(r->keys);
        free(r);
        pthread_mutex_lock(&j->mu);
        j->replica_active = false;
        pthread_mutex_unlock(&j->mu);
        return err;
    }
    snap_take(j, &r->snap);
    *out = r;
    return KR_OK;
}

/* jrn_replica_add for a record of the journal's own stream (signature
 * already checked with the current key): the key chain's rules. */
static kr_err add_key_record(struct jrn_replica *r, const struct jrn_record *rec,
                             struct jrn_start_fault *f)
{
    struct jrn_key_payload kp;
    bool epoch = jrn_type_is(rec, JRN_TYPE_EPOCH_STARTED);
    if ((!epoch && !jrn_type_is(rec, JRN_TYPE_KEY_ADDED)) || rec->payload_stripped ||
        jrn_parse_key_payload(rec->payload, rec->payload_len, &kp) || kp.has_genesis ||
        kp.has_epoch != epoch)
        return fault(r, f, KR_ECORRUPT, rec->seq, "journal key record is malformed");
    if (epoch && kp.epoch != r->epochs + 1)
        return fault(r, f, KR_ECORRUPT, rec->seq, "epoch %llu does not follow epoch %llu",
                     (unsigned long long)kp.epoch, (unsigned long long)r->epochs);
    if (epoch) {
        struct kr_checkpoint cp;
        uint32_t kid;
        kr_err err =
            kr_checkpoint_open(kp.prev_checkpoint, kp.prev_len, r->keys, r->nkeys, &cp, &kid);
        if (err || strcmp(cp.origin, r->j->origin) != 0 || cp.size + 1 < rec->seq)
            return fault(r, f, err == KR_EBADSIG ? KR_EBADSIG : KR_ECORRUPT, rec->seq,
                         "epoch %llu: its previous checkpoint is not this journal's at or past "
                         "the fork",
                         (unsigned long long)kp.epoch);
    }
    size_t signer = r->cur;
    if (add_key(r, kp.key_id, kp.pk))
        return fault(r, f, KR_ECORRUPT, rec->seq, "key %u introduced twice", kp.key_id);
    r->cur = r->nkeys - 1;
    r->epochs += epoch;
    r->epoch_added |= epoch;
    /* An epoch's first checkpoint is the new key's; a key_added record's the old key's. */
    r->ck = epoch ? r->cur : signer;
    return KR_OK;
}

/* jrn_replica_add's checks of one decoded record that is the next seq. */
/* What jrn_replica_add_chunk's threads worked out ahead for one record:
 * 1 holds, 0 fails, -1 not known (check now). sig is for the key its key_id
 * names among the keys known when the chunk began. */
struct precheck {
    int8_t commit, sig;
};

static kr_err check_record(struct jrn_replica *r, const struct jrn_record *rec,
                           const struct precheck *pre, struct jrn_start_fault *f)
{
    struct journal *j = r->j;
    if (sodium_memcmp(rec->prev, j->last_leaf, KR_HASH_LEN) != 0)
        return fault(r, f, KR_ECORRUPT, rec->seq,
                     "prev does not match the previous record's leaf hash");
    if (rec->time_ns < j->last_time)
        return fault(r, f, KR_ECORRUPT, rec->seq, "time goes backwards");
    int commit = pre ? pre->commit : -1, sig = pre ? pre->sig : -1;
    if (!rec->payload_stripped && commit < 0) {
        uint8_t c[KR_HASH_LEN];
        kr_sha256(c, rec->payload, rec->payload_len);
        commit = sodium_memcmp(c, rec->commitment, KR_HASH_LEN) == 0;
    }
    if (!rec->payload_stripped && !commit)
        return fault(r, f, KR_ECORRUPT, rec->seq, "payload does not match its commitment");
    const struct kr_note_key *k = &r->keys[r->cur];
    if (rec->key_id != k->key_id)
        return fault(r, f, KR_EBADSIG, rec->seq, "signed by key %u, which may not sign seq %llu",
                     rec->key_id, (unsigned long long)rec->seq);
    if (sig < 0) {
        uint8_t msg[JRN_SIGN_INPUT_MAX];
        size_t mlen;
        jrn_record_sign_input(rec, msg, &mlen);
        sig = crypto_sign_verify_detached(rec->sig, msg, mlen, k->pk) == 0;
    }
    if (!sig)
        return fault(r, f, KR_EBADSIG, rec->seq, "signature does not verify");
    return KR_OK;
}

/* A seq the journal holds already (d decoded from rec): skipped when it is
 * the same record, its header bytes (so its leaf) identical; the payloads
 * may differ only by stripping, which each copy does on its own (erasure,
 * retention), and the one arriving must still match its commitment. */
static kr_err add_held(struct jrn_replica *r, const struct jrn_record *d, struct jrn_start_fault *f)
{
    uint64_t seq = d->seq;
    uint8_t kb[8];
    kr_put_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(r->txn, r->j->db_events, &k, &v);
    if (rc)
        return fault(r, f, rc == MDB_NOTFOUND ? KR_ECORRUPT : kr_err_from_mdb(rc), seq,
                     "record %llu is missing here", (unsigned long long)seq);
    struct jrn_record h;
    if (jrn_record_decode(v.mv_data, v.mv_size, &h) != KR_OK)
        return fault(r, f, KR_ECORRUPT, seq, "record %llu held here does not decode",
                     (unsigned long long)seq);
    if (h.header_len != d->header_len || memcmp(h.header, d->header, h.header_len) != 0)
        return fault(r, f, KR_ECORRUPT, seq, "record %llu diverges from the one held here",
                     (unsigned long long)seq);
    if (!d->payload_stripped) {
        uint8_t c[KR_HASH_LEN];
        kr_sha256(c, d->payload, d->payload_len);
        if (sodium_memcmp(c, d->commitment, KR_HASH_LEN) != 0)
            return fault(r, f, KR_ECORRUPT, seq, "payload does not match its commitment");
    }
    return KR_OK;
}

/* jrn_replica_add, with what was worked out ahead (pre, or NULL). */
static kr_err add_one(struct jrn_replica *r, const uint8_t *rec, size_t len,
                      const struct precheck *pre, struct jrn_start_fault *f)
{
    struct journal *j = r->j;
    uint64_t next = j->size + 1;
    struct jrn_record d;
    if (len == 0 || len > KR_RECORD_MAX || jrn_record_decode(rec, len, &d) != KR_OK)
        return fault(r, f, KR_ECORRUPT, next, "record does not decode");
    if (d.seq < next)
        return add_held(r, &d, f);
    if (d.seq != next)
        return fault(r, f, KR_ECORRUPT, next, "record %llu is missing (the next one says %llu)",
                     (unsigned long long)next, (unsigned long long)d.seq);
    if (r->added >= KR_REPL_PENDING_MAX || r->bytes + len > KR_REPL_PENDING_BYTES_MAX)
        return fault(r, f, KR_ECORRUPT, next, "range without a checkpoint past %u records",
                     (unsigned)r->added);
    kr_err err = check_record(r, &d, pre, f);
    if (err)
        return err;
    if (jrn_is_system(&d) && (err = add_key_record(r, &d, f)))
        return err;
    if ((err = jrn_batch_store(&r->b, &d, rec, len)) == KR_ECORRUPT)
        return fault(r, f, err, next,
                     "its tseq or version does not continue its tenant's or stream's");
    if (err)
        return fault(r, f, err, next, "cannot store it: %s", kr_strerror(err));
    const struct jrn_views *vw = j->views;
    if (vw && (err = (vw->apply_stored ? vw->apply_stored : vw->apply)(vw->ctx, r->txn, &d)))
        return fault(r, f, err == KR_ECONFLICT || err == KR_EINVAL ? KR_ECORRUPT : err, next,
                     "the views cannot apply it: %s", kr_strerror(err));
    if (!jrn_is_system(&d))
        r->ck = r->cur;
    r->added++;
    r->bytes += len;
    return KR_OK;
}

/* Ends a session and frees it: committed, or undone (its transaction
 * aborted unless txn_gone: a failed commit freed it). */
static void session_end(struct jrn_replica *r, bool committed, bool txn_gone)
{
    struct journal *j = r->j;
    if (!committed) {
        if (!txn_gone)
            mdb_txn_abort(r->txn);
        snap_restore(j, &r->snap);
    }
    pthread_mutex_lock(&j->mu);
    j->replica_active = false;
    if (committed) {
        j->replica_key_id = r->keys[r->cur].key_id;
        memcpy(j->replica_pk, r->keys[r->cur].pk, KR_PUBKEY_LEN);
    }
    pthread_mutex_unlock(&j->mu);
    free(r->keys);
    free(r);
}

void jrn_replica_abort(struct jrn_replica *r)
{
    if (r)
        session_end(r, false, false);
}

/* jrn_replica_commit's checks of the note against the journal as added to. */
static kr_err check_note(struct jrn_replica *r, const char *note, size_t len,
                         struct jrn_start_fault *f)
{
    struct journal *j = r->j;
    struct kr_checkpoint cp;
    uint32_t kid;
    if (!note || len == 0 || len > KR_NOTE_MAX)
        return fault(r, f, KR_ECORRUPT, j->size, "no checkpoint, or one too long");
    kr_err err = kr_checkpoint_open(note, len, &r->keys[r->ck], 1, &cp, &kid);
    if (err == KR_EBADSIG)
        return fault(r, f, KR_EBADSIG, j->size,
                     "the checkpoint is not signed by key %u, valid at size %llu",
                     r->keys[r->ck].key_id, (unsigned long long)j->size);
    if (err)
        return fault(r, f, KR_ECORRUPT, j->size, "the checkpoint is malformed");
    if (strcmp(cp.origin, j->origin) != 0)
        return fault(r, f, KR_ECORRUPT, j->size, "the checkpoint is another journal's");
    if (cp.size != j->size)
        return fault(r, f, KR_ECORRUPT, j->size,
                     "the checkpoint is at size %llu, the range ends at %llu",
                     (unsigned long long)cp.size, (unsigned long long)j->size);
    uint8_t root[KR_HASH_LEN];
    mrk_frontier_root(&j->frontier, root);
    if (sodium_memcmp(root, cp.root, KR_HASH_LEN) != 0)
        return fault(r, f, KR_ECORRUPT, j->size,
                     "the checkpoint's root is not the root of the records");
    return KR_OK;
}

/* After a commit: the public keys the session added, as DIR/keys files. */
static void write_new_keys(struct jrn_replica *r)
{
    char keys[KR_PATH_MAX], path[KR_PATH_MAX], b64[KR_PUBKEY_B64_LEN], text[KR_PUBKEY_B64_LEN + 1];
    if (r->keys_at_begin == r->nkeys || kr_path_join(keys, sizeof keys, r->j->dir, "keys"))
        return;
    if (mkdir(keys, 0700) != 0 && errno != EEXIST)
        return;
    for (size_t i = r->keys_at_begin; i < r->nkeys; i++) {
        char name[32];
        snprintf(name, sizeof name, "journal-%u.pub", r->keys[i].key_id);
        if (kr_path_join(path, sizeof path, keys, name))
            return;
        kr_pubkey_to_b64(r->keys[i].pk, b64);
        snprintf(text, sizeof text, "%s\n", b64);
        if (kr_file_replace(path, text, strlen(text), 0644) != KR_OK)
            fprintf(stderr, "kiroku: %s: cannot write it\n", path);
    }
}

static uint64_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

kr_err jrn_replica_commit(struct jrn_replica *r, const char *note, size_t len, uint64_t source_pos,
                          struct jrn_start_fault *f)
{
    if (!r)
        return KR_EINVAL;
    struct journal *j = r->j;
    kr_err err = r->failed ? KR_EINVAL : check_note(r, note, len, f);
    if (err) {
        session_end(r, false, false);
        return err;
    }
    KR_ASSERT(j->size == r->snap.tail.size + r->added && j->frontier.size == j->size);
    memcpy(j->note, note, len);
    j->note[len] = '\0';
    j->note_len = len;
    uint8_t pb[8];
    kr_put_be64(pb, source_pos);
    MDB_val pk = {strlen(JRN_META_REPL_POS), JRN_META_REPL_POS}, pv = {8, pb};
    const struct jrn_views *vw = j->views;
    /* A journal truncated here (an old primary rejoining) waits for an epoch:
     * the primary's epoch_started record ends the wait, as on the primary. */
    MDB_val ek = {strlen(JRN_META_EPOCH), JRN_META_EPOCH};
    int rc = r->epoch_added ? mdb_del(r->txn, j->db_meta, &ek, NULL) : 0;
    if ((err = kr_err_from_mdb(rc == MDB_NOTFOUND ? 0 : rc)) ||
        (err = jrn_keep_checkpoint(j, r->txn)) ||
        (err = kr_err_from_mdb(mdb_put(r->txn, j->db_meta, &pk, &pv, 0))) ||
        (vw && (err = vw->batch_end(vw->ctx, r->txn, j->size)))) {
        fault(r, f, err, j->size, "cannot store the checkpoint: %s", kr_strerror(err));
        session_end(r, false, false);
        return err;
    }
    if ((err = jrn_commit_durable(j, r->txn))) {
        /* LMDB freed the transaction. After a failed flush what reached the
         * disk is unknown: the caller reopens (replica.h). */
        fault(r, f, err, j->size, "cannot commit: %s", kr_strerror(err));
        session_end(r, false, true);
        return err;
    }
    atomic_store(&j->committed, j->size);
    if (r->epoch_added) {
        pthread_mutex_lock(&j->mu);
        j->epoch_needed = false;
        pthread_mutex_unlock(&j->mu);
    }
    write_new_keys(r);
    j->file_behind = true;
    if (mono_now() - j->file_time >= KR_CHECKPOINT_FILE_NS)
        (void)jrn_write_checkpoint_file(j); /* counted in the stats; retried */
    session_end(r, true, false);
    return KR_OK;
}

kr_err jrn_replica_position(struct journal *j, uint64_t *source_pos)
{
    if (!j || !source_pos)
        return KR_EINVAL;
    MDB_txn *txn;
    int rc = mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    MDB_val k = {strlen(JRN_META_REPL_POS), JRN_META_REPL_POS}, v;
    kr_err err = KR_OK;
    rc = mdb_get(txn, j->db_meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        *source_pos = 0;
    else if (rc)
        err = kr_err_from_mdb(rc);
    else if (v.mv_size != 8)
        err = KR_ECORRUPT;
    else
        *source_pos = kr_get_be64(v.mv_data);
    mdb_txn_abort(txn);
    return err;
}

kr_err jrn_replica_add(struct jrn_replica *r, const uint8_t *rec, size_t len,
                       struct jrn_start_fault *f)
{
    if (!r || !rec || r->failed)
        return KR_EINVAL;
    return add_one(r, rec, len, NULL, f);
}

/* ---- Checking a chunk's records on several threads ---- */

struct prework {
    const struct jrn_replica *r;
    const struct jrn_repl_chunk *c;
    struct precheck *pre;
    size_t from, to;
};

/* Commitments and signatures of records from..to-1 of a chunk, each with the
 * known key its key_id names (read only: the session does not change while
 * the threads run). */
static void *precheck_run(void *arg)
{
    const struct prework *w = arg;
    for (size_t i = w->from; i < w->to; i++) {
        struct jrn_record d;
        struct precheck *p = &w->pre[i];
        p->commit = p->sig = -1;
        if (jrn_record_decode(w->c->rec[i], w->c->rec_len[i], &d) != KR_OK)
            continue;
        if (!d.payload_stripped) {
            uint8_t h[KR_HASH_LEN];
            kr_sha256(h, d.payload, d.payload_len);
            p->commit = sodium_memcmp(h, d.commitment, KR_HASH_LEN) == 0;
        }
        ssize_t k = key_index(w->r, d.key_id);
        if (k < 0)
            continue;
        uint8_t msg[JRN_SIGN_INPUT_MAX];
        size_t mlen;
        jrn_record_sign_input(&d, msg, &mlen);
        p->sig = crypto_sign_verify_detached(d.sig, msg, mlen, w->r->keys[k].pk) == 0;
    }
    return NULL;
}

/* Fills pre[0..c->n) on up to `threads` threads (this one included). */
static void precheck_chunk(const struct jrn_replica *r, const struct jrn_repl_chunk *c,
                           unsigned threads, struct precheck *pre)
{
    struct prework w[KR_REPL_VERIFY_THREADS_MAX];
    pthread_t th[KR_REPL_VERIFY_THREADS_MAX];
    bool started[KR_REPL_VERIFY_THREADS_MAX] = {false};
    size_t per = (c->n + threads - 1) / threads;
    for (unsigned t = 0; t < threads; t++) {
        size_t from = t * per < c->n ? t * per : c->n;
        w[t] = (struct prework){r, c, pre, from, from + per < c->n ? from + per : c->n};
    }
    for (unsigned t = 1; t < threads; t++)
        started[t] = pthread_create(&th[t], NULL, precheck_run, &w[t]) == 0;
    precheck_run(&w[0]);
    for (unsigned t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            precheck_run(&w[t]); /* no thread: do its share here */
    }
}

kr_err jrn_replica_add_chunk(struct jrn_replica *r, const struct jrn_repl_chunk *c,
                             unsigned threads, struct jrn_start_fault *f)
{
    if (!r || !c || (c->n > 0 && (!c->rec || !c->rec_len)) || c->n > KR_REPL_CHUNK_RECORDS ||
        r->failed)
        return KR_EINVAL;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1u;
    }
    if (threads > KR_REPL_VERIFY_THREADS_MAX)
        threads = KR_REPL_VERIFY_THREADS_MAX;
    if ((size_t)threads * KR_REPL_VERIFY_PER_THREAD_MIN > c->n)
        threads = (unsigned)(c->n / KR_REPL_VERIFY_PER_THREAD_MIN);
    struct precheck *pre = NULL;
    if (threads > 1 && c->n > 0 && (pre = malloc(c->n * sizeof *pre)))
        precheck_chunk(r, c, threads, pre);
    kr_err err = KR_OK;
    for (size_t i = 0; i < c->n && !err; i++)
        err = add_one(r, c->rec[i], c->rec_len[i], pre ? &pre[i] : NULL, f);
    free(pre);
    return err;
}
