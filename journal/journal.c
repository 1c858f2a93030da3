/*
 * journal.c: opening, creating and appending to the journal (see journal.h).
 *
 * Design notes
 * - Reserve, then sign. A submission takes its time, its signing key and its
 *   place in the queue under `mu` and returns. A pool of signer threads (one
 *   per core) claims appends in queue order, computes commitments and
 *   signatures outside the lock and flips `ready_`. The writer takes the
 *   longest signed prefix of the queue as its batch, so times never decrease
 *   along seq, signing keeps every core busy while the writer waits on fsync,
 *   and the writer sleeps only when the head of the queue is unsigned.
 *   Submitters never do the expensive work themselves: a server's network
 *   threads stay free, and the number of threads competing for the CPU with
 *   the single writer stays small.
 * - One batch, one transaction. The writer drains the queue (up to
 *   KR_BATCH_MAX_EVENTS), checks versions, writes records, tree nodes and
 *   indexes, signs one checkpoint for the new tree size and commits with
 *   fsync. The in-memory tree frontier and chain head are snapshotted before
 *   the batch and restored if it fails, so memory always matches disk.
 * - Bounded memory. Everything the writer holds is fixed-size (frontier, one
 *   encode buffer, one note); the queue is capped by KR_QUEUE_MAX_EVENTS.
 * - Commits on few pages. Every index a record adds to is either appended in
 *   seq order (events, tree, links) or grows with something other than the
 *   journal (a head per stream, the tenants' newest entries), so the pages a
 *   commit writes do not grow with the journal, and neither does its time.
 *   The stream index is a head per stream and a link per record with
 *   skew-binary jumps (docs/journal-format.md, "The stream index").
 */
#include "journal_internal.h"

#include "mp.h"
#include "path.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Atomic int jrn_testing_format1;
_Atomic int jrn_testing_legacy_index;
_Atomic int jrn_testing_migrate_txns;
_Atomic uint64_t jrn_testing_migrate_records;
_Atomic uint64_t jrn_testing_start_checked;
/* Events a signer claims at once: enough to take the queue lock rarely, few
 * enough that the signers share out a small queue evenly. */
#define SIGN_CLAIM_EVENTS 16

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

size_t jrn_stream_prefix(uint8_t key[JRN_STREAM_KEY_MAX], uint64_t tenant, const char *stream,
                         size_t stream_len)
{
    kr_put_be64(key, tenant);
    key[8] = (uint8_t)stream_len;
    memcpy(key + 9, stream, stream_len);
    return 9 + stream_len;
}

kr_err jrn_tree_node(void *ctx, unsigned level, uint64_t index, uint8_t out[KR_HASH_LEN])
{
    struct jrn_tree_ctx *t = ctx;
    if (level >= 63 || index >= (JRN_SIZE_MAX >> level))
        return KR_ECORRUPT; /* only a forged size asks for such a node */
    uint8_t kb[8];
    kr_put_be64(kb, mrk_postorder(level, index));
    MDB_val k = {sizeof kb, kb}, v;
    int rc = mdb_get(t->txn, t->j->db_tree, &k, &v);
    if (rc == MDB_NOTFOUND)
        return KR_ECORRUPT; /* proofs only ask for nodes that must exist */
    if (rc)
        return kr_err_from_mdb(rc);
    if (v.mv_size != KR_HASH_LEN)
        return KR_ECORRUPT;
    memcpy(out, v.mv_data, KR_HASH_LEN);
    return KR_OK;
}

/* ---- Environment ---- */

/* The stream index databases: `heads` and `links` (created by a writable
 * open: a legacy journal gets them empty, for its migration), and the legacy
 * `streams` if it exists (created only for tests that build legacy
 * journals). An LMDB code. */
static int open_stream_dbs(struct journal *j, MDB_txn *txn, bool create)
{
    unsigned cf = j->read_only ? 0 : MDB_CREATE;
    int rc = mdb_dbi_open(txn, JRN_DB_HEADS, cf, &j->db_heads);
    if (rc == 0)
        rc = mdb_dbi_open(txn, JRN_DB_LINKS, cf, &j->db_links);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    j->has_heads = rc == 0;
    bool legacy =
        create && (atomic_load(&jrn_testing_legacy_index) || atomic_load(&jrn_testing_format1));
    rc = mdb_dbi_open(txn, JRN_DB_STREAMS, legacy ? MDB_CREATE : 0, &j->db_streams);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    j->has_streams = rc == 0;
    return j->has_heads || j->has_streams ? 0 : MDB_NOTFOUND;
}

static kr_err env_open(struct journal *j, const struct jrn_options *o, bool create)
{
    char path[KR_PATH_MAX];
    kr_err err;
    int rc;

    if ((err = kr_path_join(path, sizeof path, o->dir, "journal")))
        return err;
    if (create && mkdir(path, 0700) != 0 && errno != EEXIST)
        return kr_err_from_errno(errno);
    if ((err = kr_env_register(&j->reg, path)))
        return err;
    if ((rc = mdb_env_create(&j->env)))
        return kr_err_from_mdb(rc);
    if ((rc = mdb_env_set_maxdbs(j->env, JRN_MAX_DBS)) ||
        (rc = mdb_env_set_maxreaders(j->env, JRN_MAX_READERS)) ||
        (rc = mdb_env_set_mapsize(j->env, o->map_size ? o->map_size : KR_MAP_SIZE_DEFAULT)))
        return kr_err_from_mdb(rc);
    /* Durability: no MDB_NOSYNC or MDB_MAPASYNC, ever. MDB_NOMETASYNC is set
     * only when the writer starts (start_threads), and then a completion is
     * held until a flush covers its commit's meta page: the next commit's data
     * flush or mdb_env_sync (writer_main). Every other commit flushes its own
     * (jrn_commit_durable). MDB_NOTLS lets cursors reuse a read transaction across threads. */
    unsigned flags = MDB_NOTLS | (j->read_only ? MDB_RDONLY : 0);
    if ((rc = mdb_env_open(j->env, path, flags, 0600)))
        return rc == ENOENT ? KR_ENOTFOUND : kr_err_from_mdb(rc);
    int dead = 0;
    mdb_reader_check(j->env, &dead); /* reclaim slots of killed readers */

    MDB_txn *txn;
    if ((rc = mdb_txn_begin(j->env, NULL, j->read_only ? MDB_RDONLY : 0, &txn)))
        return kr_err_from_mdb(rc);
    unsigned cf = j->read_only ? 0 : MDB_CREATE;
    if ((rc = mdb_dbi_open(txn, JRN_DB_EVENTS, cf, &j->db_events)) ||
        (rc = mdb_dbi_open(txn, JRN_DB_TREE, cf, &j->db_tree)) ||
        (rc = mdb_dbi_open(txn, JRN_DB_TENANTS, cf, &j->db_tenants)) ||
        (rc = mdb_dbi_open(txn, JRN_DB_CHECKPOINTS, cf, &j->db_checkpoints)) ||
        (rc = mdb_dbi_open(txn, JRN_DB_META, cf, &j->db_meta)) ||
        (rc = open_stream_dbs(j, txn, create))) {
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? KR_ENOTFOUND : kr_err_from_mdb(rc);
    }
    if (o->views && (err = o->views->open(o->views->ctx, txn, !j->read_only))) {
        mdb_txn_abort(txn);
        return err;
    }
    /* Commit even a read-only transaction: handles opened in an aborted one
     * are closed with it. */
    return kr_err_from_mdb(mdb_txn_commit(txn));
}

kr_err jrn_commit_durable(struct journal *j, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    if (rc == 0 && j->one_flush)
        rc = mdb_env_sync(j->env, 1);
    return kr_err_from_mdb(rc);
}

static kr_err take_writer_lock(struct journal *j, const char *dir)
{
    char path[KR_PATH_MAX];
    kr_err err = kr_path_join(path, sizeof path, dir, "journal/writer.lock");
    if (err)
        return err;
    j->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (j->lock_fd < 0)
        return kr_err_from_errno(errno);
    if (flock(j->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return errno == EWOULDBLOCK ? KR_EBUSY : kr_err_from_errno(errno);
    return KR_OK;
}

static struct journal *journal_alloc(const struct jrn_options *o)
{
    struct journal *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    /* Signing keys in guarded, locked memory, as the keystore's keys. */
    if (!(j->keys = kr_keys_alloc(KR_KEYS_MAX))) {
        free(j);
        return NULL;
    }
    j->lock_fd = -1;
    j->read_only = o->read_only;
    j->no_appends = o->no_appends;
    /* Without a writer (no_appends) MDB_NOMETASYNC is never set: LMDB's own
     * commit flushes the meta page, and jrn_commit_durable adds no flush. */
    j->one_flush = !o->read_only && !o->no_appends && !o->two_flushes;
    j->clock = o->clock;
    j->views = o->views;
    j->durable = o->durable;
    j->key_made = o->key_made;
    pthread_mutex_init(&j->mu, NULL);
    pthread_mutex_init(&j->rel_mu, NULL);
    pthread_mutex_init(&j->stats_mu, NULL);
    pthread_cond_init(&j->writer_cv, NULL);
    pthread_cond_init(&j->space_cv, NULL);
    pthread_cond_init(&j->sign_cv, NULL);
    snprintf(j->dir, sizeof j->dir, "%s", o->dir);
    return j;
}

static void journal_free(struct journal *j)
{
    if (!j)
        return;
    if (j->env)
        mdb_env_close(j->env);
    kr_env_unregister(&j->reg);
    if (j->lock_fd >= 0)
        close(j->lock_fd);
    kr_keys_free(j->keys);
    free(j->encode_buf);
    pthread_mutex_destroy(&j->mu);
    pthread_mutex_destroy(&j->rel_mu);
    pthread_mutex_destroy(&j->stats_mu);
    pthread_cond_destroy(&j->writer_cv);
    pthread_cond_destroy(&j->space_cv);
    pthread_cond_destroy(&j->sign_cv);
    sodium_memzero(j, sizeof *j);
    free(j);
}

static kr_err meta_get(struct journal *j, MDB_txn *txn, const char *name, MDB_val *v)
{
    MDB_val k = {strlen(name), (void *)name};
    int rc = mdb_get(txn, j->db_meta, &k, v);
    return rc == MDB_NOTFOUND ? KR_ECORRUPT : kr_err_from_mdb(rc);
}

static kr_err meta_put(struct journal *j, MDB_txn *txn, const char *name, const void *data,
                       size_t len)
{
    MDB_val k = {strlen(name), (void *)name}, v = {len, (void *)data};
    return kr_err_from_mdb(mdb_put(txn, j->db_meta, &k, &v, 0));
}

static void make_origin(struct journal *j)
{
    char hex[33];
    sodium_bin2hex(hex, sizeof hex, j->journal_id, sizeof j->journal_id);
    snprintf(j->origin, sizeof j->origin, "kiroku/%s", hex);
}

bool jrn_is_system(const struct jrn_record *r)
{
    return r->tenant == 0 && r->stream_len == strlen(JRN_SYSTEM_STREAM) &&
           memcmp(r->stream, JRN_SYSTEM_STREAM, r->stream_len) == 0;
}

bool jrn_type_is(const struct jrn_record *r, const char *t)
{
    return r->type_len == strlen(t) && memcmp(r->type, t, r->type_len) == 0;
}

kr_err jrn_parse_key_payload(const uint8_t *p, size_t len, struct jrn_key_payload *out)
{
    struct kr_mp_reader rd;
    uint32_t n;
    bool have_id = false, have_pk = false, have_jid = false, have_origin = false;
    bool have_epoch = false, have_prev = false;
    memset(out, 0, sizeof *out);
    kr_mp_reader_init(&rd, p, len, true);
    if (kr_mp_read_map(&rd, &n) || n > 8)
        return KR_ECORRUPT;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t klen;
        if (kr_mp_read_str(&rd, &k, &klen))
            return KR_ECORRUPT;
        if (klen == 6 && memcmp(k, "key_id", 6) == 0) {
            uint64_t v;
            if (have_id || kr_mp_read_uint(&rd, &v) || v == 0 || v > UINT32_MAX)
                return KR_ECORRUPT;
            out->key_id = (uint32_t)v;
            have_id = true;
        } else if (klen == 10 && memcmp(k, "public_key", 10) == 0) {
            const uint8_t *b;
            size_t blen;
            if (have_pk || kr_mp_read_bin(&rd, &b, &blen) || blen != KR_PUBKEY_LEN)
                return KR_ECORRUPT;
            memcpy(out->pk, b, KR_PUBKEY_LEN);
            have_pk = true;
        } else if (klen == 10 && memcmp(k, "journal_id", 10) == 0) {
            const uint8_t *b;
            size_t blen;
            if (have_jid || kr_mp_read_bin(&rd, &b, &blen) || blen != 16)
                return KR_ECORRUPT;
            memcpy(out->journal_id, b, 16);
            have_jid = true;
        } else if (klen == 6 && memcmp(k, "origin", 6) == 0) {
            if (have_origin || kr_mp_read_str(&rd, &out->origin, &out->origin_len) ||
                out->origin_len == 0 || out->origin_len > KR_ORIGIN_MAX ||
                memchr(out->origin, 0, out->origin_len))
                return KR_ECORRUPT;
            have_origin = true;
        } else if (klen == 5 && memcmp(k, "epoch", 5) == 0) {
            if (have_epoch || kr_mp_read_uint(&rd, &out->epoch) || out->epoch < 2)
                return KR_ECORRUPT;
            have_epoch = true;
        } else if (klen == 19 && memcmp(k, "previous_checkpoint", 19) == 0) {
            if (have_prev || kr_mp_read_str(&rd, &out->prev_checkpoint, &out->prev_len) ||
                out->prev_len == 0 || out->prev_len > KR_NOTE_MAX)
                return KR_ECORRUPT;
            have_prev = true;
        } else {
            return KR_ECORRUPT;
        }
    }
    if (!have_id || !have_pk || kr_mp_remaining(&rd) != 0 || have_jid != have_origin ||
        have_epoch != have_prev || (have_jid && have_epoch))
        return KR_ECORRUPT;
    out->has_genesis = have_jid;
    out->has_epoch = have_epoch;
    return KR_OK;
}

/* The key id (and, when pk is not NULL, public key) named by the newest
 * record of the journal's own stream. */
static kr_err current_key_id(struct journal *j, MDB_txn *txn, uint32_t *key_id,
                             uint8_t pk[KR_PUBKEY_LEN])
{
    uint64_t version, seq;
    kr_err err =
        jrn_stream_head(j, txn, 0, JRN_SYSTEM_STREAM, strlen(JRN_SYSTEM_STREAM), &version, &seq);
    if (err == KR_OK && version == 0)
        err = KR_ECORRUPT;
    if (err)
        return err;
    uint8_t sb[8];
    kr_put_be64(sb, seq);
    MDB_val sk = {8, sb}, v;
    int rc;
    if ((rc = mdb_get(txn, j->db_events, &sk, &v)))
        return rc == MDB_NOTFOUND ? KR_ECORRUPT : kr_err_from_mdb(rc);
    struct jrn_record r;
    if ((err = jrn_record_decode(v.mv_data, v.mv_size, &r)) || r.payload_stripped)
        return KR_ECORRUPT;
    struct jrn_key_payload kp;
    if ((err = jrn_parse_key_payload(r.payload, r.payload_len, &kp)))
        return err;
    *key_id = kp.key_id;
    if (pk)
        memcpy(pk, kp.pk, KR_PUBKEY_LEN);
    return KR_OK;
}

/* Fills f (when set) with where a writable open found the journal damaged;
 * KR_ECORRUPT. */
static kr_err start_refuse(struct jrn_start_fault *f, uint64_t seq, const char *what)
{
    if (f) {
        f->seq = seq;
        snprintf(f->what, sizeof f->what, "%s", what);
    }

    return KR_ECORRUPT;
}

/* load_state's identity: the meta format and the journal id. */
static kr_err load_identity(struct journal *j, MDB_txn *txn)
{
    MDB_val v;
    kr_err err;
    if ((err = meta_get(j, txn, JRN_META_FORMAT, &v)))
        return err;
    uint64_t format = v.mv_size != 4 ? 0 : kr_get_be32(v.mv_data);
    if (format < JRN_META_FORMAT_1 || format > JRN_META_FORMAT_CURRENT)
        return KR_EVERSION;
    j->meta_format = (uint32_t)format;
    j->legacy_index = format < JRN_META_FORMAT_CURRENT;
    if (j->legacy_index ? !j->has_streams : !j->has_heads)
        return KR_ECORRUPT; /* the stream index of its format is missing */
    if ((err = meta_get(j, txn, JRN_META_ID, &v)))
        return err;
    if (v.mv_size != sizeof j->journal_id)
        return KR_ECORRUPT;
    memcpy(j->journal_id, v.mv_data, sizeof j->journal_id);
    make_origin(j);
    return KR_OK;
}

/* load_state's chain head: size, time and leaf hash of the last record. */
static kr_err load_head(struct journal *j, MDB_txn *txn, struct jrn_start_fault *f)
{
    MDB_cursor *cur;
    MDB_val k, v;
    kr_err err = KR_OK;
    int rc = mdb_cursor_open(txn, j->db_events, &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == MDB_SUCCESS) {
        struct jrn_record r;
        if (k.mv_size != 8 || jrn_record_decode(v.mv_data, v.mv_size, &r) != KR_OK ||
            r.seq != kr_get_be64(k.mv_data) || r.seq >= JRN_SIZE_MAX) {
            err = start_refuse(f, k.mv_size == 8 ? kr_get_be64(k.mv_data) : 0,
                               "the last record does not decode or says another seq");
        } else {
            j->size = r.seq;
            j->last_time = r.time_ns;
            jrn_record_leaf_hash(&r, j->last_leaf);
        }
    } else if (rc != MDB_NOTFOUND) {
        err = kr_err_from_mdb(rc);
    }
    mdb_cursor_close(cur);
    return err;
}

/* load_state's frontier: the perfect subtrees of `size`, from stored
 * nodes; then the newest checkpoint and the newest kept one. */
static kr_err load_tree(struct journal *j, MDB_txn *txn)
{
    mrk_frontier_init(&j->frontier);
    struct jrn_tree_ctx tc = {j, txn};
    uint64_t start = 0;
    kr_err err;
    for (int level = 63; level >= 0; level--) {
        if (!((j->size >> level) & 1))
            continue;
        uint8_t h[KR_HASH_LEN];
        if ((err = jrn_tree_node(&tc, (unsigned)level, start >> level, h)) ||
            (err = mrk_frontier_append_subtree(&j->frontier, (unsigned)level, h, NULL, NULL)))
            return err;
        start += 1ull << level;
    }
    if (j->size == 0)
        return KR_OK;
    MDB_val k, v;
    if ((err = meta_get(j, txn, JRN_META_CHECKPOINT, &v)))
        return err;
    if (v.mv_size > KR_NOTE_MAX)
        return KR_ECORRUPT;
    memcpy(j->note, v.mv_data, v.mv_size);
    j->note[v.mv_size] = '\0';
    j->note_len = v.mv_size;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, j->db_checkpoints, &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == MDB_SUCCESS && k.mv_size == 8)
        j->kept_size = kr_get_be64(k.mv_data);
    mdb_cursor_close(cur);
    j->kept_time = kr_clock_now(j->clock);
    return KR_OK;
}

/* Loads identity, chain head, tree frontier and current key from disk. */
static kr_err load_state(struct journal *j, struct jrn_start_fault *f)
{
    MDB_txn *txn;
    kr_err err;
    int rc = mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((err = load_identity(j, txn)) || (err = load_head(j, txn, f)) || (err = load_tree(j, txn)))
        goto out;

    MDB_val ek = {strlen(JRN_META_EPOCH), JRN_META_EPOCH}, v;
    j->epoch_needed = mdb_get(txn, j->db_meta, &ek, &v) == MDB_SUCCESS;

    if (!j->read_only && !j->no_appends) {
        /* The current key is the one the newest journal.created or
         * journal.key_added record introduced: the record and the switch to
         * its key commit together, so a crash cannot separate them. */
        uint32_t key_id = 0;
        if ((err = current_key_id(j, txn, &key_id, NULL)))
            goto out;
        if ((err = kr_key_load(j->dir, key_id, &j->keys[0])))
            goto out;
        j->nkeys = 1;
        j->signing = &j->keys[0];
    }
    /* A follower's jrn_get_info names the key valid now (none if the journal
     * stream does not say: opens that only rebuild views go on). */
    if (!j->read_only && j->no_appends &&
        current_key_id(j, txn, &j->replica_key_id, j->replica_pk) != KR_OK)
        j->replica_key_id = 0;
    atomic_store(&j->committed, j->size);
    err = KR_OK;
out:
    mdb_txn_abort(txn);
    return err;
}

/* ---- Writing ---- */

static void emit_node(void *ctx, unsigned level, uint64_t index, const uint8_t hash[KR_HASH_LEN])
{
    struct jrn_batch *b = ctx;
    if (b->err)
        return;
    uint8_t kb[8];
    kr_put_be64(kb, mrk_postorder(level, index));
    MDB_val k = {8, kb}, v = {KR_HASH_LEN, (void *)hash};
    int rc = mdb_cursor_put(b->c_tree, &k, &v, MDB_APPEND);
    if (rc)
        b->err = kr_err_from_mdb(rc);
}

/* Positions c on the last entry before key *k (whose last 8 bytes are
 * UINT64_MAX, which no entry has), into *k and *v: the newest entry under
 * that prefix, if the prefix has any. An LMDB code (MDB_NOTFOUND: none). */
static int last_before(MDB_cursor *c, MDB_val *k, MDB_val *v)
{
    int rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
        return mdb_cursor_get(c, k, v, MDB_LAST);
    return rc == MDB_SUCCESS ? mdb_cursor_get(c, k, v, MDB_PREV) : rc;
}

/* The legacy index's newest entry of (tenant, stream): its version and seq. */
static kr_err legacy_stream_head(struct journal *j, MDB_txn *txn, uint64_t tenant,
                                 const char *stream, size_t len, uint64_t *version, uint64_t *seq)
{
    MDB_cursor *c;
    uint8_t key[JRN_STREAM_KEY_MAX];
    size_t plen = jrn_stream_prefix(key, tenant, stream, len);
    kr_put_be64(key + plen, UINT64_MAX);
    MDB_val k = {plen + 8, key}, v;
    int rc = mdb_cursor_open(txn, j->db_streams, &c);
    if (rc)
        return kr_err_from_mdb(rc);
    rc = last_before(c, &k, &v);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND)
        return KR_OK;
    if (rc)
        return kr_err_from_mdb(rc);
    if (k.mv_size != plen + 8 || memcmp(k.mv_data, key, plen) != 0)
        return KR_OK; /* another stream's entry: this one has none */
    if (v.mv_size != 8 || kr_get_be64(v.mv_data) == 0 ||
        kr_get_be64((const uint8_t *)k.mv_data + plen) == 0)
        return KR_ECORRUPT;
    *version = kr_get_be64((const uint8_t *)k.mv_data + plen);
    *seq = kr_get_be64(v.mv_data);
    return KR_OK;
}

kr_err jrn_stream_head(struct journal *j, MDB_txn *txn, uint64_t tenant, const char *stream,
                       size_t len, uint64_t *version, uint64_t *seq)
{
    *version = *seq = 0;
    if (j->legacy_index ? !j->has_streams : !j->has_heads)
        return KR_ECORRUPT; /* the journal lacks the index its format names */
    if (j->legacy_index)
        return legacy_stream_head(j, txn, tenant, stream, len, version, seq);
    uint8_t key[JRN_STREAM_KEY_MAX];
    MDB_val k = {jrn_stream_prefix(key, tenant, stream, len), key}, v;
    int rc = mdb_get(txn, j->db_heads, &k, &v);
    if (rc == MDB_NOTFOUND)
        return KR_OK;
    if (rc)
        return kr_err_from_mdb(rc);
    if (v.mv_size != JRN_HEAD_LEN)
        return KR_ECORRUPT;
    uint64_t hv = kr_get_be64(v.mv_data), hs = kr_get_be64((const uint8_t *)v.mv_data + 8);
    if (hv == 0 || hs == 0 || hs >= JRN_SIZE_MAX || hv > hs)
        return KR_ECORRUPT; /* a stream's versions are among the journal's seqs */
    *version = hv;
    *seq = hs;
    return KR_OK;
}

uint64_t jrn_skew_jump(uint64_t v)
{
    /* Depth d = v - 1 written greedily as a sum of terms 2^k - 1 (its
     * canonical skew-binary form); the jump drops the smallest term. */
    uint64_t d = v - 1, last = 0;
    while (d > 0) {
        unsigned k = 63u - (unsigned)__builtin_clzll(d + 1);
        last = (1ull << k) - 1;
        d -= last;
    }
    return v - last;
}

kr_err jrn_link_get(struct journal *j, MDB_txn *txn, uint64_t seq, uint64_t *prev, uint64_t *jump)
{
    if (!j->has_heads)
        return KR_ECORRUPT;
    uint8_t kb[8];
    kr_put_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(txn, j->db_links, &k, &v);
    if (rc == MDB_NOTFOUND)
        return KR_ECORRUPT;
    if (rc)
        return kr_err_from_mdb(rc);
    if (v.mv_size != JRN_LINK_LEN)
        return KR_ECORRUPT;
    *prev = kr_get_be64(v.mv_data);
    *jump = kr_get_be64((const uint8_t *)v.mv_data + 8);
    return KR_OK;
}

kr_err jrn_link_seek(struct journal *j, MDB_txn *txn, uint64_t seq, uint64_t version,
                     uint64_t target, uint64_t *out)
{
    if (target == 0 || target > version)
        return KR_EINVAL;
    for (unsigned steps = 0; version > target; steps++) {
        uint64_t prev, jump, next;
        kr_err err;
        if (steps >= KR_STREAM_SEEK_MAX)
            return KR_ECORRUPT;
        if ((err = jrn_link_get(j, txn, seq, &prev, &jump)))
            return err;
        uint64_t jv = jrn_skew_jump(version);
        if (jv >= target && jv < version - 1) {
            next = jump;
            version = jv;
        } else {
            next = prev;
            version--;
        }
        if (next == 0 || next >= seq)
            return KR_ECORRUPT; /* links lead to older records only */
        seq = next;
    }
    *out = seq;
    return KR_OK;
}

kr_err jrn_stream_seq(struct journal *j, MDB_txn *txn, uint64_t tenant, const char *stream,
                      size_t len, uint64_t version, uint64_t *seq)
{
    if (version == 0)
        return KR_ENOTFOUND;
    if (j->legacy_index ? !j->has_streams : !j->has_heads)
        return KR_ECORRUPT;
    if (j->legacy_index) {
        uint8_t key[JRN_STREAM_KEY_MAX];
        size_t plen = jrn_stream_prefix(key, tenant, stream, len);
        kr_put_be64(key + plen, version);
        MDB_val k = {plen + 8, key}, v;
        int rc = mdb_get(txn, j->db_streams, &k, &v);
        if (rc)
            return kr_err_from_mdb(rc);
        if (v.mv_size != 8 || kr_get_be64(v.mv_data) == 0)
            return KR_ECORRUPT;
        *seq = kr_get_be64(v.mv_data);
        return KR_OK;
    }
    uint64_t hv, hs;
    kr_err err = jrn_stream_head(j, txn, tenant, stream, len, &hv, &hs);
    if (err)
        return err;
    if (version > hv)
        return KR_ENOTFOUND;
    return jrn_link_seek(j, txn, hs, hv, version, seq);
}

kr_err jrn_tenant_last(MDB_cursor *c, uint64_t tenant, uint64_t *tseq)
{
    uint8_t key[16];
    kr_put_be64(key, tenant);
    kr_put_be64(key + 8, UINT64_MAX); /* no record has this seq */
    MDB_val k = {16, key}, v;
    int rc = last_before(c, &k, &v);
    *tseq = 0;
    if (rc == MDB_NOTFOUND)
        return KR_OK;
    if (rc)
        return kr_err_from_mdb(rc);
    if (k.mv_size != 16 || memcmp(k.mv_data, key, 8) != 0)
        return KR_OK; /* another tenant's entry: this one has none */
    if (v.mv_size != 8 || kr_get_be64(v.mv_data) == 0)
        return KR_ECORRUPT;
    *tseq = kr_get_be64(v.mv_data);
    return KR_OK;
}

/* The next tseq of `tenant` in this batch: from the batch's cache, or one
 * cursor step in the tenants index for a tenant the batch has not written. */
static kr_err next_tseq(struct jrn_batch *b, uint64_t tenant, uint64_t *tseq)
{
    struct tseq_slot *s = &b->tcache[(tenant * 0x9E3779B97F4A7C15ull) >> (64 - TSEQ_CACHE_LOG2)];
    if (!s->used || s->tenant != tenant) {
        uint64_t last;
        kr_err err = jrn_tenant_last(b->c_tenants, tenant, &last);
        if (err)
            return err;
        s->used = true;
        s->tenant = tenant;
        s->tseq = last;
    }
    /* A tenant never has more records than the journal: a larger count is a
     * damaged index (stored data, so an error, not an assertion). */
    if (s->tseq > b->j->size)
        return KR_ECORRUPT;
    *tseq = ++s->tseq;
    b->tseqs++;
    return KR_OK;
}

/* Checks every event's expected version against txn and against the events
 * before it in the same append. KR_ECONFLICT if any is stale. */
static kr_err check_versions(struct jrn_batch *b, const struct jrn_append *a)
{
    for (size_t i = 0; i < a->n; i++) {
        const struct jrn_event *e = &a->events[i];
        uint64_t have = UINT64_MAX;
        for (size_t k = i; k-- > 0;) {
            const struct jrn_event *p = &a->events[k];
            if (p->tenant == e->tenant && p->stream_len == e->stream_len &&
                memcmp(p->str_, e->str_, e->stream_len) == 0) {
                have = p->expected_version + 1;
                break;
            }
        }
        if (have == UINT64_MAX) {
            uint64_t seq;
            kr_err err =
                jrn_stream_head(b->j, b->txn, e->tenant, e->str_, e->stream_len, &have, &seq);
            if (err)
                return err;
        }
        if (e->expected_version != have)
            return KR_ECONFLICT;
    }
    return KR_OK;
}

/* The record fields of an event, from the journal's own copies of its
 * strings (taken by copy_strings at submission). */
static void event_to_record(const struct jrn_event *e, struct jrn_record *r)
{
    memset(r, 0, sizeof *r);
    r->tenant = e->tenant;
    r->stream = e->str_;
    r->stream_len = e->stream_len;
    r->type = e->str_ + e->stream_len;
    r->type_len = e->type_len;
    r->actor = e->str_ + e->stream_len + e->type_len;
    r->actor_len = e->actor_len;
    r->version = e->expected_version + 1;
    r->payload = e->payload;
    r->payload_len = e->payload_len;
}

/* The legacy stream index entry of r (tests building older journals only). */
static kr_err index_stream_legacy(struct jrn_batch *b, const struct jrn_record *r)
{
    uint8_t key[JRN_STREAM_KEY_MAX], sk[8];
    size_t plen = jrn_stream_prefix(key, r->tenant, r->stream, r->stream_len);
    kr_put_be64(key + plen, r->version);
    kr_put_be64(sk, r->seq);
    MDB_val k = {plen + 8, key}, v = {8, sk};
    int rc = mdb_put(b->txn, b->j->db_streams, &k, &v, MDB_NOOVERWRITE);
    return rc == MDB_KEYEXIST ? KR_ECORRUPT : kr_err_from_mdb(rc);
}

/* Indexes record r in its stream: a link r.seq -> (prev, jump), appended in
 * seq order so it lands on the last page of `links`, and the stream's head
 * moved to (r.version, r.seq). The head must be at r.version - 1 (the version
 * check saw it there). */
static kr_err index_stream(struct jrn_batch *b, const struct jrn_record *r)
{
    struct journal *j = b->j;
    if (j->legacy_index)
        return index_stream_legacy(b, r);
    uint64_t hv, hs, jump = 0;
    kr_err err = jrn_stream_head(j, b->txn, r->tenant, r->stream, r->stream_len, &hv, &hs);
    if (err)
        return err;
    if (hv + 1 != r->version || hs >= r->seq)
        return KR_ECORRUPT; /* the head moved under the version check: a damaged index */
    if (r->version > 1) {
        uint64_t jv = jrn_skew_jump(r->version);
        jump = hs;
        if (jv < hv && (err = jrn_link_seek(j, b->txn, hs, hv, jv, &jump)))
            return err;
    }
    /* Before writing: the links name older records of the stream, and only a
     * first version names none. */
    KR_ASSERT(r->version == 1 ? jump == 0 : jump != 0 && jump <= hs && hs < r->seq);
    uint8_t kb[8], lv[JRN_LINK_LEN], key[JRN_STREAM_KEY_MAX], hb[JRN_HEAD_LEN];
    kr_put_be64(kb, r->seq);
    kr_put_be64(lv, r->version > 1 ? hs : 0);
    kr_put_be64(lv + 8, jump);
    MDB_val k = {8, kb}, v = {JRN_LINK_LEN, lv};
    int rc = mdb_cursor_put(b->c_links, &k, &v, MDB_APPEND);
    if (rc)
        return rc == MDB_KEYEXIST ? KR_ECORRUPT : kr_err_from_mdb(rc);
    kr_put_be64(hb, r->version);
    kr_put_be64(hb + 8, r->seq);
    k = (MDB_val){jrn_stream_prefix(key, r->tenant, r->stream, r->stream_len), key};
    v = (MDB_val){JRN_HEAD_LEN, hb};
    return kr_err_from_mdb(mdb_put(b->txn, j->db_heads, &k, &v, 0));
}

/* Writes one event as record j->size + 1 with its indexes and tree nodes. */
static kr_err write_event(struct jrn_batch *b, struct jrn_event *e)
{
    struct journal *j = b->j;
    struct jrn_record r;
    size_t len, header_len;
    int rc;
    kr_err err;

    event_to_record(e, &r);
    r.seq = j->size + 1;
    r.format = j->write_format;
    if (r.format == JRN_FORMAT && (err = next_tseq(b, r.tenant, &r.tseq)))
        return err;
    r.time_ns = e->time_ns;
    r.key_id = e->key_id;
    memcpy(r.commitment, e->commitment, KR_HASH_LEN);
    memcpy(r.prev, j->last_leaf, KR_HASH_LEN);
    memcpy(r.sig, e->sig, JRN_SIG_LEN);
    if ((err = jrn_record_encode(&r, j->encode_buf, KR_RECORD_MAX, &len, &header_len)))
        return err;
    /* Check before writing: the payload bytes going to disk are the ones the
     * signature's commitment covers. They differ only if the caller changed
     * its buffer during the append. */
    uint8_t c[KR_HASH_LEN];
    kr_sha256(c, j->encode_buf + len - r.payload_len, r.payload_len);
    if (memcmp(c, r.commitment, KR_HASH_LEN) != 0)
        return KR_EINVAL;

    uint8_t sk[8];
    kr_put_be64(sk, r.seq);
    MDB_val k = {8, sk}, v = {len, j->encode_buf};
    if ((rc = mdb_cursor_put(b->c_events, &k, &v, MDB_APPEND)))
        return kr_err_from_mdb(rc);

    if ((err = index_stream(b, &r)))
        return err;

    uint8_t tk[16], tv[8];
    kr_put_be64(tk, r.tenant);
    kr_put_be64(tk + 8, r.seq);
    kr_put_be64(tv, r.tseq);
    k = (MDB_val){16, tk};
    v = (MDB_val){r.format == JRN_FORMAT ? 8 : 0, tv};
    if ((rc = mdb_cursor_put(b->c_tenants, &k, &v, MDB_NOOVERWRITE)))
        return rc == MDB_KEYEXIST ? KR_ECORRUPT : kr_err_from_mdb(rc);

    uint8_t leaf[KR_HASH_LEN];
    kr_leaf_hash(leaf, j->encode_buf + JRN_HEADER_OFFSET, header_len);
    mrk_frontier_append(&j->frontier, leaf, emit_node, b);
    if (b->err)
        return b->err;
    memcpy(j->last_leaf, leaf, KR_HASH_LEN);
    e->seq = r.seq;
    e->tseq = r.tseq;
    j->size = r.seq;
    if (j->views)
        return j->views->apply(j->views->ctx, b->txn, &r);
    return KR_OK;
}

kr_err jrn_batch_open(struct journal *j, MDB_txn *txn, struct jrn_batch *b)
{
    memset(b, 0, sizeof *b);
    b->j = j;
    b->txn = txn;
    int rc;
    if ((rc = mdb_cursor_open(txn, j->db_events, &b->c_events)) ||
        (rc = mdb_cursor_open(txn, j->db_tree, &b->c_tree)) ||
        (rc = mdb_cursor_open(txn, j->legacy_index ? j->db_streams : j->db_links, &b->c_links)) ||
        (rc = mdb_cursor_open(txn, j->db_tenants, &b->c_tenants)))
        return kr_err_from_mdb(rc);
    return KR_OK;
}

kr_err jrn_batch_store(struct jrn_batch *b, const struct jrn_record *r, const uint8_t *value,
                       size_t len)
{
    struct journal *j = b->j;
    kr_err err;
    int rc;
    if (r->seq != j->size + 1 || r->format != JRN_FORMAT)
        return KR_ECORRUPT;
    uint64_t tseq;
    if ((err = next_tseq(b, r->tenant, &tseq)))
        return err;
    if (tseq != r->tseq)
        return KR_ECORRUPT;
    uint8_t sk[8];
    kr_put_be64(sk, r->seq);
    MDB_val k = {8, sk}, v = {len, (void *)value};
    if ((rc = mdb_cursor_put(b->c_events, &k, &v, MDB_APPEND)))
        return rc == MDB_KEYEXIST ? KR_ECORRUPT : kr_err_from_mdb(rc);
    if ((err = index_stream(b, r)))
        return err;
    uint8_t tk[16], tv[8];
    kr_put_be64(tk, r->tenant);
    kr_put_be64(tk + 8, r->seq);
    kr_put_be64(tv, r->tseq);
    k = (MDB_val){16, tk};
    v = (MDB_val){8, tv};
    if ((rc = mdb_cursor_put(b->c_tenants, &k, &v, MDB_NOOVERWRITE)))
        return rc == MDB_KEYEXIST ? KR_ECORRUPT : kr_err_from_mdb(rc);
    uint8_t leaf[KR_HASH_LEN];
    jrn_record_leaf_hash(r, leaf);
    mrk_frontier_append(&j->frontier, leaf, emit_node, b);
    if (b->err)
        return b->err;
    memcpy(j->last_leaf, leaf, KR_HASH_LEN);
    j->size = r->seq;
    j->last_time = r->time_ns;
    return KR_OK;
}

kr_err jrn_keep_checkpoint(struct journal *j, MDB_txn *txn)
{
    kr_err err;
    if ((err = meta_put(j, txn, JRN_META_CHECKPOINT, j->note, j->note_len)))
        return err;
    uint64_t now = kr_clock_now(j->clock);
    if (j->kept_size == 0 || j->size - j->kept_size >= KR_CHECKPOINT_EVERY_RECORDS ||
        now - j->kept_time >= KR_CHECKPOINT_EVERY_NS) {
        uint8_t kb[8];
        kr_put_be64(kb, j->size);
        MDB_val k = {8, kb}, v = {j->note_len, j->note};
        int rc = mdb_put(txn, j->db_checkpoints, &k, &v, 0);
        if (rc)
            return kr_err_from_mdb(rc);
        j->kept_size = j->size;
        j->kept_time = now;
        pthread_mutex_lock(&j->stats_mu);
        j->stats.checkpoints++;
        pthread_mutex_unlock(&j->stats_mu);
    }
    return KR_OK;
}

/* Signs the checkpoint for j->size into j->note and stores it. */
static kr_err write_checkpoint(struct jrn_batch *b)
{
    struct journal *j = b->j;
    struct kr_checkpoint cp;
    kr_err err;

    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "%s", j->origin);
    cp.size = j->size;
    mrk_frontier_root(&j->frontier, cp.root);
    pthread_mutex_lock(&j->mu);
    struct kr_signing_key *key = j->checkpoint_key ? j->checkpoint_key : j->signing;
    pthread_mutex_unlock(&j->mu);
    if ((err = kr_checkpoint_sign(&cp, j->origin, key->pk, key->sk, j->note, sizeof j->note,
                                  &j->note_len)))
        return err;
    return jrn_keep_checkpoint(j, b->txn);
}

/* Writes DIR/checkpoint atomically (temp file, fsync, rename) and counts the outcome in the stats.
 * KR_EIO (or the path's error) if it could not: the old file stays, behind but never ahead. */
static kr_err write_checkpoint_file(struct journal *j)
{
    char path[KR_PATH_MAX], tmp[KR_PATH_MAX];
    kr_err err = KR_OK;
    if (j->note_len == 0)
        return KR_OK; /* nothing signed yet */
    if ((err = kr_path_join(path, sizeof path, j->dir, "checkpoint")) ||
        (err = kr_path_join(tmp, sizeof tmp, j->dir, "checkpoint.tmp")))
        goto out;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0;
    if (ok)
        ok = write(fd, j->note, j->note_len) == (ssize_t)j->note_len;
    if (ok)
        ok = fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    if (ok)
        ok = rename(tmp, path) == 0;
    if (!ok) {
        if (fd >= 0)
            unlink(tmp);
        err = KR_EIO;
    }
out:
    pthread_mutex_lock(&j->stats_mu);
    if (err) {
        j->stats.file_errors++;
        j->stats.file_error = err;
    } else {
        j->stats.file_writes++;
        j->stats.file_size = j->size;
        j->stats.file_error = KR_OK;
    }
    pthread_mutex_unlock(&j->stats_mu);
    j->file_behind = err != KR_OK;
    j->file_retry = err != KR_OK;
    return err;
}

kr_err jrn_write_checkpoint_file(struct journal *j)
{
    kr_err err = write_checkpoint_file(j);
    j->file_time = mono_ns();
    return err;
}

/* The writer's DIR/checkpoint rewrite, after a commit or when idle (at most
 * once per KR_CHECKPOINT_FILE_NS). The new file is flushed before it is
 * renamed into place: a power cut then leaves the old file or the whole new
 * one, never a renamed file whose bytes did not reach the disk (which the
 * start check would take for corruption). */
static void writer_checkpoint_file(struct journal *j)
{
    (void)write_checkpoint_file(j); /* counted in the stats; retried */
    j->file_time = mono_ns();
    /* A reader killed mid-transaction leaves its slot behind and pins old
     * pages; reclaim such slots now and then. */
    int dead = 0;
    mdb_reader_check(j->env, &dead);
}

void jrn_tail_take(const struct journal *j, struct jrn_tail *s)
{
    s->size = j->size;
    s->kept_size = j->kept_size;
    s->kept_time = j->kept_time;
    memcpy(s->last_leaf, j->last_leaf, KR_HASH_LEN);
    s->frontier = j->frontier;
    memcpy(s->note, j->note, j->note_len + 1);
    s->note_len = j->note_len;
}

void jrn_tail_restore(struct journal *j, const struct jrn_tail *s)
{
    j->size = s->size;
    j->kept_size = s->kept_size;
    j->kept_time = s->kept_time;
    memcpy(j->last_leaf, s->last_leaf, KR_HASH_LEN);
    j->frontier = s->frontier;
    memcpy(j->note, s->note, s->note_len + 1);
    j->note_len = s->note_len;
}

/* Runs one batch (a linked list of appends) through one write transaction.
 * Sets each append's outcome in *errs (parallel to the list order). Returns
 * the transaction's outcome. */
static kr_err run_batch(struct journal *j, struct jrn_append *first, kr_err *errs, size_t count,
                        struct jrn_tail *snap, bool *retry, bool *wrote)
{
    struct jrn_batch b = {.j = j};
    kr_err err;
    int rc;
    size_t written = 0, i;
    struct jrn_append *a;

    *retry = false;
    *wrote = false;
    jrn_tail_take(j, snap);
    if ((rc = mdb_txn_begin(j->env, NULL, 0, &b.txn)))
        return kr_err_from_mdb(rc);
    if ((rc = mdb_cursor_open(b.txn, j->db_events, &b.c_events)) ||
        (rc = mdb_cursor_open(b.txn, j->db_tree, &b.c_tree)) ||
        (rc = mdb_cursor_open(b.txn, j->legacy_index ? j->db_streams : j->db_links, &b.c_links)) ||
        (rc = mdb_cursor_open(b.txn, j->db_tenants, &b.c_tenants))) {
        err = kr_err_from_mdb(rc);
        goto fail;
    }
    for (a = first, i = 0; i < count; a = a->next_, i++) {
        if (a->reject_) {
            errs[i] = a->reject_;
            continue;
        }
        err = check_versions(&b, a);
        if (err == KR_ECONFLICT) {
            errs[i] = KR_ECONFLICT;
            continue;
        }
        if (err)
            goto fail;
        for (size_t e = 0; e < a->n; e++) {
            if ((err = write_event(&b, &a->events[e])) == KR_EINVAL || err == KR_ECONFLICT) {
                /* A changed payload, or a view refused the event. Part of
                 * this append may be in the transaction: drop the whole
                 * batch and run it again without the append. */
                a->reject_ = err;
                *retry = true;
            }
            if (err)
                goto fail;
        }
        errs[i] = KR_OK;
        written += a->n;
    }
    pthread_mutex_lock(&j->mu);
    bool epoch_clear = j->epoch_clear;
    pthread_mutex_unlock(&j->mu);
    if (written > 0 && epoch_clear) {
        /* The epoch_started record lifts the truncation's hold on appends. */
        MDB_val ek = {strlen(JRN_META_EPOCH), JRN_META_EPOCH};
        if ((rc = mdb_del(b.txn, j->db_meta, &ek, NULL)) && rc != MDB_NOTFOUND) {
            err = kr_err_from_mdb(rc);
            goto fail;
        }
    }
    if (written > 0 && j->views && (err = j->views->batch_end(j->views->ctx, b.txn, j->size)))
        goto fail;
    if (written > 0 && (err = write_checkpoint(&b)))
        goto fail;
    /* Before anything reaches the disk: seq advanced by exactly the records
     * written, the tree covers them, every format-2 record got one tseq. */
    KR_ASSERT(j->size == snap->size + written);
    KR_ASSERT(j->frontier.size == j->size);
    KR_ASSERT(b.tseqs == (j->write_format == JRN_FORMAT ? written : 0));
    KR_ASSERT(written == 0 || j->kept_size <= j->size);
    uint64_t t0 = mono_ns();
    rc = mdb_txn_commit(b.txn); /* frees the cursors */
    uint64_t commit_ns = mono_ns() - t0;
    if (rc) {
        jrn_tail_restore(j, snap);
        return kr_err_from_mdb(rc);
    }
    atomic_store(&j->committed, j->size);
    *wrote = written > 0; /* records written: the commit flushed data pages */
    pthread_mutex_lock(&j->stats_mu);
    j->stats.batches++;
    j->stats.events += written;
    j->stats.commit_ns += commit_ns;
    for (i = 0; i < JRN_COMMIT_BUCKETS; i++)
        if (commit_ns <= jrn_commit_bucket_us[i] * 1000u) {
            j->stats.commit_hist[i]++;
            break;
        }
    if (commit_ns > j->stats.commit_ns_max)
        j->stats.commit_ns_max = commit_ns;
    if (written > j->stats.max_batch)
        j->stats.max_batch = written;
    for (i = 0; i < count; i++)
        j->stats.conflicts += errs[i] == KR_ECONFLICT;
    pthread_mutex_unlock(&j->stats_mu);
    return KR_OK;
fail:
    mdb_txn_abort(b.txn);
    jrn_tail_restore(j, snap);
    return err;
}

/* writer_main's wait, with j->mu held (and held again on return): until the
 * head of the queue is signed (false) or the journal closes with nothing
 * queued (true). While idle with DIR/checkpoint behind the durable journal,
 * writes it once KR_CHECKPOINT_FILE_NS has passed since the last write. */
static bool writer_wait(struct journal *j)
{
    for (;;) {
        if (j->head && atomic_load(&j->head->ready_))
            return false;
        if (!j->head && j->closing)
            return true;
        /* Announce the wait, then look again: a signer that flips ready_
         * after our look sees the flag and signals under mu. */
        atomic_store(&j->writer_waiting, 1);
        if (j->head && atomic_load(&j->head->ready_)) {
            atomic_store(&j->writer_waiting, 0);
            return false;
        }
        if (!j->file_behind) {
            pthread_cond_wait(&j->writer_cv, &j->mu);
            atomic_store(&j->writer_waiting, 0);
            continue;
        }
        uint64_t now = mono_ns(), due = j->file_time + KR_CHECKPOINT_FILE_NS;
        if (now >= due) {
            atomic_store(&j->writer_waiting, 0);
            pthread_mutex_unlock(&j->mu);
            writer_checkpoint_file(j);
            pthread_mutex_lock(&j->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts); /* writer_cv's clock */
        uint64_t wait = due - now;
        ts.tv_sec += (time_t)(wait / 1000000000ull);
        ts.tv_nsec += (long)(wait % 1000000000ull);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->writer_cv, &j->mu, &ts);
        atomic_store(&j->writer_waiting, 0);
    }
}

/* writer_main's batch, with j->mu held and the head signed: the longest
 * signed prefix of the queue within the batch limits, taken off the queue.
 * Returns its first append; *count is how many. */
static struct jrn_append *writer_take_batch(struct journal *j, size_t *count)
{
    struct jrn_append *first = j->head, *last = first;
    size_t events = first->n, bytes = 0;
    *count = 1;
    for (size_t e = 0; e < first->n; e++)
        bytes += first->events[e].payload_len;
    while (last->next_ && atomic_load_explicit(&last->next_->ready_, memory_order_acquire)) {
        struct jrn_append *n = last->next_;
        size_t nb = 0;
        for (size_t e = 0; e < n->n; e++)
            nb += n->events[e].payload_len;
        if (events + n->n > KR_BATCH_MAX_EVENTS || bytes + nb > KR_BATCH_MAX_BYTES)
            break;
        events += n->n;
        bytes += nb;
        (*count)++;
        last = n;
    }
    j->head = last->next_;
    if (!j->head)
        j->tail = NULL;
    last->next_ = NULL;
    j->queued_events -= events;
    if (j->space_waiters)
        pthread_cond_broadcast(&j->space_cv);
    return first;
}

/* DIR/checkpoint is to be rewritten now: the interval is over or the last
 * write failed. */
static bool writer_file_due(const struct journal *j)
{
    return j->file_retry || mono_ns() - j->file_time >= KR_CHECKPOINT_FILE_NS;
}

/* The size and checkpoint note a batch made durable. */
struct durable_mark {
    uint64_t size;
    const char *note;
    size_t len;
};

/* The durable hook hears of m once (sizes only grow). */
static void tell_durable(struct journal *j, const struct durable_mark *m)
{
    if (!j->durable || !m || m->size <= j->durable_size)
        return;
    j->durable_size = m->size;
    if (j->durable->durable)
        j->durable->durable(j->durable->ctx, m->size, m->note, m->len);
}

/* A durable append under a holding hook: completes now if released (or
 * stopped), else waits in the release list. */
static void hold_append(struct journal *j, struct jrn_append *a)
{
    uint64_t last = a->events[a->n - 1].seq;
    kr_err err = KR_OK;
    bool now = true;
    pthread_mutex_lock(&j->rel_mu);
    if (j->released >= last) {
        err = KR_OK;
    } else if (j->rel_stop) {
        err = j->rel_stop;
    } else {
        now = false;
        a->next_ = NULL;
        if (j->rel_tail)
            j->rel_tail->next_ = a;
        else
            j->rel_head = a;
        j->rel_tail = a;
    }
    pthread_mutex_unlock(&j->rel_mu);
    if (now)
        a->done(a, err);
}

/* Takes off the release list every append with last seq <= upto (all of
 * them for UINT64_MAX); the caller completes them. */
static struct jrn_append *take_released(struct journal *j, uint64_t upto)
{
    struct jrn_append *first = j->rel_head, *last = NULL;
    for (struct jrn_append *a = first; a && a->events[a->n - 1].seq <= upto; a = a->next_)
        last = a;
    if (!last)
        return NULL;
    j->rel_head = last->next_;
    if (!j->rel_head)
        j->rel_tail = NULL;
    last->next_ = NULL;
    return first;
}

static void complete_all(struct jrn_append *a, kr_err err)
{
    for (struct jrn_append *next; a; a = next) {
        next = a->next_;
        a->done(a, err);
    }
}

void jrn_release(struct journal *j, uint64_t size)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->rel_mu);
    struct jrn_append *done = NULL;
    if (size > j->released) {
        j->released = size;
        done = take_released(j, size);
    }
    pthread_mutex_unlock(&j->rel_mu);
    complete_all(done, KR_OK);
}

void jrn_stop_appends(struct journal *j, kr_err err)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    if (!j->failed) {
        j->failed = err ? err : KR_ECLOSED;
        j->stopped = true;
    }
    err = j->failed;
    pthread_cond_broadcast(&j->space_cv);
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_lock(&j->rel_mu);
    if (!j->rel_stop)
        j->rel_stop = err;
    struct jrn_append *held = take_released(j, UINT64_MAX);
    pthread_mutex_unlock(&j->rel_mu);
    complete_all(held, err);
}

/* writer_main after a batch: a failure that may leave the disk unlike the
 * page cache stops writes for good; after a commit the durable hook hears of
 * m (the batch's size and note); every append of the batch is told its
 * outcome (err, else its own errs[i]), or waits for jrn_release under a
 * holding hook; after a commit, DIR/checkpoint follows when all_durable
 * (nothing committed is waiting for a flush). failed: the journal had
 * stopped before the batch. */
static void writer_finish(struct journal *j, struct jrn_append *first, kr_err err,
                          const kr_err *errs, kr_err failed, bool all_durable,
                          const struct durable_mark *m)
{
    if (err != KR_OK && err != KR_EIO && err != KR_ECORRUPT && !failed) {
        /* A failed commit may have left LMDB unusable (a failed meta page
         * write, e.g. ENOSPC on a copy-on-write file system): it then
         * answers everything with MDB_PANIC. Stop as after an I/O error. */
        MDB_txn *probe;
        int prc = mdb_txn_begin(j->env, NULL, MDB_RDONLY, &probe);
        if (prc == MDB_PANIC)
            err = KR_EIO;
        else if (prc == 0)
            mdb_txn_abort(probe);
    }
    if (err == KR_EIO || err == KR_ECORRUPT) {
        /* After a failed fsync the page cache may not match the disk:
         * stop taking writes rather than retry. */
        pthread_mutex_lock(&j->mu);
        if (!j->failed)
            j->failed = KR_EIO;
        pthread_cond_broadcast(&j->space_cv);
        pthread_mutex_unlock(&j->mu);
    }
    /* Refusals are counted before anyone is told: a caller that got
     * KR_EFULL and reads the stats at once sees its refusal there. */
    size_t i = 0, full = 0;
    for (const struct jrn_append *a = first; a; a = a->next_, i++)
        full += (err ? err : errs[i]) == KR_EFULL;
    if (full) {
        pthread_mutex_lock(&j->stats_mu);
        j->stats.refused_full += full;
        pthread_mutex_unlock(&j->stats_mu);
    }
    if (err == KR_OK)
        tell_durable(j, m);
    bool hold = j->durable && j->durable->hold;
    i = 0;
    for (struct jrn_append *a = first, *next; a; a = next, i++) {
        next = a->next_;
        kr_err e = err ? err : errs[i];
        if (e == KR_OK && hold)
            hold_append(j, a);
        else
            a->done(a, e);
    }
    if (err == KR_OK) {
        /* DIR/checkpoint follows the commit (never ahead of it): now if
         * the interval is over or the last write failed, else when the
         * writer goes idle or the interval ends (writer_wait). */
        j->file_behind = true;
        if (all_durable && writer_file_due(j))
            writer_checkpoint_file(j);
    }
}

/* One flush per commit: the held batch's meta page reaches the disk by
 * mdb_env_sync, then its appends complete; the flush's failure is theirs. */
static void writer_release(struct journal *j, struct jrn_append *held, const kr_err *errs)
{
    struct durable_mark m = {j->held_size, j->held_note, j->held_note_len};
    uint64_t t0 = mono_ns();
    int rc = mdb_env_sync(j->env, 1);
    uint64_t ns = mono_ns() - t0;
    pthread_mutex_lock(&j->stats_mu);
    j->stats.meta_syncs++;
    j->stats.meta_sync_ns += ns;
    pthread_mutex_unlock(&j->stats_mu);
    writer_finish(j, held, rc ? KR_EIO : KR_OK, errs, KR_OK, true, &m);
}

/* The writer. With one flush per commit (j->one_flush) a committed batch is
 * held: its meta page was written without a flush. The next commit that
 * writes records flushes it with its own data pages (LMDB flushes the data
 * file before writing the new meta page), so the held batch then completes
 * and the new one is held in its place. mdb_env_sync flushes it at once
 * instead (never waiting for another commit) when no signed append is
 * waiting, and when fewer appends are queued than it holds: then its own
 * appenders are what the next batches wait for (with one append in flight
 * each, held batches would otherwise alternate between two halves of them,
 * each waiting a whole commit). Under a deep queue every commit covers the
 * one before: one flush per commit. */
static void *writer_main(void *arg)
{
    struct journal *j = arg;
    pthread_setname_np(pthread_self(), "kr-writer");
    kr_err *errs = calloc(KR_BATCH_MAX_EVENTS, sizeof *errs);
    kr_err *held_errs = calloc(KR_BATCH_MAX_EVENTS, sizeof *held_errs);
    struct jrn_tail *snap = malloc(sizeof *snap);
    struct jrn_append *held = NULL;
    size_t held_events = 0;

    for (;;) {
        pthread_mutex_lock(&j->mu);
        if (held &&
            (!(j->head && atomic_load(&j->head->ready_)) || j->queued_events < held_events)) {
            pthread_mutex_unlock(&j->mu);
            writer_release(j, held, held_errs);
            held = NULL;
            pthread_mutex_lock(&j->mu);
        }
        if (writer_wait(j)) {
            pthread_mutex_unlock(&j->mu);
            break;
        }
        size_t count;
        struct jrn_append *first = writer_take_batch(j, &count);
        kr_err failed = j->failed;
        pthread_mutex_unlock(&j->mu);

        kr_err err;
        bool wrote = false;
        if (failed || !errs || !held_errs || !snap) {
            err = failed ? failed : KR_ENOMEM;
        } else {
            bool retry;
            do
                err = run_batch(j, first, errs, count, snap, &retry, &wrote);
            while (retry);
        }
        if (err == KR_EFULL) {
            pthread_mutex_lock(&j->stats_mu);
            j->stats.full += count;
            pthread_mutex_unlock(&j->stats_mu);
        }
        struct durable_mark now = {j->size, j->note, j->note_len};
        if (!j->one_flush || (err && !held)) {
            writer_finish(j, first, err, errs, failed, true, &now);
            continue;
        }
        if (held && wrote) {
            /* This commit's data flush covered the held meta page. */
            struct durable_mark hm = {j->held_size, j->held_note, j->held_note_len};
            writer_finish(j, held, KR_OK, held_errs, KR_OK, false, &hm);
            held = NULL;
        } else if (held && err == KR_EIO) {
            /* A failed flush: the held meta page may not be on the disk. */
            writer_finish(j, held, KR_EIO, held_errs, KR_OK, true, NULL);
            held = NULL;
        } else if (held) {
            /* Nothing flushed (no records, or a failure before the flush):
             * flush it now. */
            writer_release(j, held, held_errs);
            held = NULL;
        }
        if (err) {
            writer_finish(j, first, err, errs, failed, true, NULL);
            continue;
        }
        held = first;
        j->held_size = j->size;
        memcpy(j->held_note, j->note, j->note_len + 1);
        j->held_note_len = j->note_len;
        held_events = 0;
        for (const struct jrn_append *a = first; a; a = a->next_)
            held_events += a->n;
        kr_err *t = held_errs;
        held_errs = errs;
        errs = t;
        if (!wrote || writer_file_due(j)) {
            /* DIR/checkpoint is due: flush now so it is not ahead. */
            writer_release(j, held, held_errs);
            held = NULL;
        }
    }
    free(errs);
    free(held_errs);
    free(snap);
    return NULL;
}

/* ---- Submission ---- */

static kr_err validate_append(const struct jrn_append *a)
{
    if (a->n == 0 || a->events == NULL || a->done == NULL)
        return KR_EINVAL;
    if (a->n > KR_APPEND_MAX_EVENTS)
        return KR_ETOOLARGE;
    size_t bytes = 0;
    for (size_t i = 0; i < a->n; i++) {
        struct jrn_record r;
        struct jrn_event *e = &a->events[i];
        if (e->expected_version == UINT64_MAX)
            return KR_EINVAL;
        /* Copy the strings first and check the copies: the signers and the
         * writer use only these, so what was checked is what is written,
         * whatever the caller does with its buffers after submitting. */
        if (e->stream_len > KR_STREAM_MAX || e->type_len > KR_TYPE_MAX ||
            e->actor_len > KR_ACTOR_MAX)
            return KR_ETOOLARGE;
        if ((e->stream_len && !e->stream) || (e->type_len && !e->type) ||
            (e->actor_len && !e->actor))
            return KR_EINVAL;
        if (e->stream_len)
            memcpy(e->str_, e->stream, e->stream_len);
        if (e->type_len)
            memcpy(e->str_ + e->stream_len, e->type, e->type_len);
        if (e->actor_len)
            memcpy(e->str_ + e->stream_len + e->type_len, e->actor, e->actor_len);
        event_to_record(e, &r);
        /* The journal's own stream takes only its own records: on open, the
         * newest one names the signing key. */
        if (!a->internal_ && e->tenant == 0 && e->stream_len == strlen(JRN_SYSTEM_STREAM) &&
            memcmp(e->str_, JRN_SYSTEM_STREAM, e->stream_len) == 0)
            return KR_EINVAL;
        kr_err err = jrn_record_check_fields(&r);
        if (err)
            return err;
        bytes += e->payload_len;
    }
    return bytes > KR_BATCH_MAX_BYTES ? KR_ETOOLARGE : KR_OK;
}

static void sign_event(struct jrn_event *e, uint64_t time_ns, const struct kr_signing_key *key)
{
    struct jrn_record r;
    uint8_t msg[JRN_SIGN_INPUT_MAX];
    size_t len;

    kr_sha256(e->commitment, e->payload, e->payload_len);
    event_to_record(e, &r);
    r.time_ns = time_ns;
    r.key_id = key->key_id;
    memcpy(r.commitment, e->commitment, KR_HASH_LEN);
    jrn_record_sign_input(&r, msg, &len);
    crypto_sign_detached(e->sig, NULL, msg, len, key->sk);
    e->time_ns = time_ns;
    e->key_id = key->key_id;
}

/* Signer threads: claim unsigned appends in queue order, sign them, mark them
 * ready and wake the writer if it waits. */
static void *signer_main(void *arg)
{
    struct journal *j = arg;
    pthread_setname_np(pthread_self(), "kr-signer");
    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->sign_next && !j->closing) {
            j->signers_idle++;
            pthread_cond_wait(&j->sign_cv, &j->mu);
            j->signers_idle--;
        }
        if (!j->sign_next)
            break;
        /* Claim a few appends at once to take the lock less often. */
        struct jrn_append *first = j->sign_next, *a = first;
        size_t count = 1, events = first->n;
        while (a->next_ && !a->next_->self_sign_ && events + a->next_->n <= SIGN_CLAIM_EVENTS) {
            a = a->next_;
            events += a->n;
            count++;
        }
        /* The next append for the signers; those signed by their submitters
         * are skipped (they stay queued: none can complete before the
         * unsigned ones in front of it, so walking them here is safe). */
        struct jrn_append *n = a->next_;
        while (n && n->self_sign_)
            n = n->next_;
        j->sign_next = n;
        pthread_mutex_unlock(&j->mu);

        a = first;
        for (size_t i = 0; i < count; i++) {
            /* Read next_ before flipping ready_: from then on the writer may
             * complete (and the owner free) the append. */
            struct jrn_append *next = i + 1 < count ? a->next_ : NULL;
            for (size_t e = 0; e < a->n; e++)
                sign_event(&a->events[e], a->time_ns_, a->key_);
            atomic_store(&a->ready_, 1);
            a = next;
        }
        if (atomic_load(&j->writer_waiting)) {
            pthread_mutex_lock(&j->mu);
            pthread_cond_signal(&j->writer_cv);
            pthread_mutex_unlock(&j->mu);
        }
        pthread_mutex_lock(&j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static kr_err submit(struct journal *j, struct jrn_append *a)
{
    kr_err err = validate_append(a);
    if (err)
        return err;
    if (j->read_only || j->no_appends)
        return KR_ECLOSED;

    pthread_mutex_lock(&j->mu);
    for (;;) {
        if (j->failed) {
            pthread_mutex_unlock(&j->mu);
            return j->failed;
        }
        if (j->closing) {
            pthread_mutex_unlock(&j->mu);
            return KR_ECLOSED;
        }
        if (j->epoch_needed && !a->internal_) {
            /* Truncated: its key may sign no size it signed before the cut. */
            pthread_mutex_unlock(&j->mu);
            return KR_EKEY;
        }
        if (j->queued_events + a->n <= KR_QUEUE_MAX_EVENTS && (!j->rotating || a->internal_))
            break;
        if (j->writer_started && pthread_equal(pthread_self(), j->writer)) {
            /* A done callback submitting: waiting would wait for the writer
             * itself. Past the queue limit it is let in (each callback adds
             * at most its own events); during a rotation, whose key would be
             * wrong for it, it is refused. */
            if (j->rotating && !a->internal_) {
                pthread_mutex_unlock(&j->mu);
                return KR_EBUSY;
            }
            break;
        }
        j->space_waiters++;
        pthread_cond_wait(&j->space_cv, &j->mu);
        j->space_waiters--;
    }
    uint64_t now = kr_clock_now(j->clock);
    if (now < j->last_time)
        now = j->last_time; /* the clock went back: time stands still instead */
    j->last_time = now;
    a->time_ns_ = now;
    a->key_ = j->signing;
    atomic_store_explicit(&a->ready_, 0, memory_order_relaxed);
    a->next_ = NULL;
    a->reject_ = KR_OK;
    if (j->tail)
        j->tail->next_ = a;
    else
        j->head = a;
    j->tail = a;
    /* Read before unlocking: from then on an asynchronous append may be
     * signed, written and freed by its owner at any moment. */
    bool self = a->self_sign_;
    if (!j->sign_next && !self)
        j->sign_next = a;
    j->queued_events += a->n;
    if (j->signers_idle && !self)
        pthread_cond_signal(&j->sign_cv);
    pthread_mutex_unlock(&j->mu);
    if (self) {
        /* The submitter would only wait: it signs, sparing two thread
         * hand-offs. Its time and key were fixed above, in queue order. */
        for (size_t e = 0; e < a->n; e++)
            sign_event(&a->events[e], a->time_ns_, a->key_);
        atomic_store(&a->ready_, 1);
        if (atomic_load(&j->writer_waiting)) {
            pthread_mutex_lock(&j->mu);
            pthread_cond_signal(&j->writer_cv);
            pthread_mutex_unlock(&j->mu);
        }
    }
    return KR_OK;
}

kr_err jrn_submit(struct journal *j, struct jrn_append *a)
{
    /* Only the journal's own appends are internal, whatever the caller's
     * struct held. */
    a->internal_ = false;
    a->self_sign_ = false; /* asynchronous: the signers sign it */
    return submit(j, a);
}

struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    kr_err err;
};

static void sync_done(struct jrn_append *a, kr_err err)
{
    struct sync_wait *w = a->arg;
    pthread_mutex_lock(&w->mu);
    w->err = err;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static kr_err append_sync(struct journal *j, struct jrn_event *events, size_t n, bool internal)
{
    if (j->writer_started && pthread_equal(pthread_self(), j->writer))
        return KR_EINVAL; /* from a done callback: it would wait for itself */
    struct sync_wait w = {.done = false};
    struct jrn_append a = {.events = events, .n = n, .done = sync_done, .arg = &w};
    a.internal_ = internal;
    a.self_sign_ = true;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    kr_err err = submit(j, &a);
    if (err == KR_OK) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        err = w.err;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return err;
}

kr_err jrn_append(struct journal *j, struct jrn_event *events, size_t n)
{
    return append_sync(j, events, n, false);
}

/* ---- Key payloads of the journal's own records ---- */

static void pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

/* genesis: {journal_id, origin, key_id, public_key}; key added: {key_id,
 * public_key}. Maps with keys in this order; docs/journal-format.md. */
static size_t encode_key_payload(uint8_t *out, size_t cap, const struct journal *j,
                                 const struct kr_signing_key *k, bool genesis)
{
    struct kr_mp_fixbuf fb = {.p = out, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    msgpack_pack_map(&pk, genesis ? 4 : 2);
    if (genesis) {
        pack_key(&pk, "journal_id");
        msgpack_pack_bin(&pk, sizeof j->journal_id);
        msgpack_pack_bin_body(&pk, j->journal_id, sizeof j->journal_id);
        pack_key(&pk, "origin");
        msgpack_pack_str(&pk, strlen(j->origin));
        msgpack_pack_str_body(&pk, j->origin, strlen(j->origin));
    }
    pack_key(&pk, "key_id");
    msgpack_pack_uint32(&pk, k->key_id);
    pack_key(&pk, "public_key");
    msgpack_pack_bin(&pk, KR_PUBKEY_LEN);
    msgpack_pack_bin_body(&pk, k->pk, KR_PUBKEY_LEN);
    return fb.overflow ? 0 : fb.len;
}

static void system_event(struct jrn_event *e, const char *type, uint64_t expected,
                         const uint8_t *payload, size_t len)
{
    memset(e, 0, sizeof *e);
    e->tenant = 0;
    e->stream = JRN_SYSTEM_STREAM;
    e->stream_len = strlen(JRN_SYSTEM_STREAM);
    e->type = type;
    e->type_len = strlen(type);
    e->actor = JRN_SYSTEM_ACTOR;
    e->actor_len = strlen(JRN_SYSTEM_ACTOR);
    e->expected_version = expected;
    e->payload = payload;
    e->payload_len = len;
}

static void stop_threads(struct journal *j)
{
    pthread_mutex_lock(&j->mu);
    j->closing = true;
    pthread_cond_signal(&j->writer_cv);
    pthread_cond_broadcast(&j->sign_cv);
    pthread_cond_broadcast(&j->space_cv);
    pthread_mutex_unlock(&j->mu);
    if (j->writer_started)
        pthread_join(j->writer, NULL);
    for (unsigned i = 0; i < j->signers_started; i++)
        pthread_join(j->signers[i], NULL);
    j->writer_started = false;
    j->signers_started = 0;
}

static kr_err start_threads(struct journal *j, unsigned signers)
{
    j->encode_buf = malloc(KR_RECORD_MAX);
    if (!j->encode_buf)
        return KR_ENOMEM;
    if (signers == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        signers = cpus > 0 ? (unsigned)cpus : 1;
    }
    if (signers > KR_SIGNERS_MAX)
        signers = KR_SIGNERS_MAX;
    for (unsigned i = 0; i < signers; i++) {
        if (pthread_create(&j->signers[i], NULL, signer_main, j) != 0) {
            stop_threads(j);
            return KR_ENOMEM;
        }
        j->signers_started++;
    }
    if (j->one_flush) {
        /* From here on every commit is the writer's or jrn_commit_durable's. */
        int rc = mdb_env_set_flags(j->env, MDB_NOMETASYNC, 1);
        if (rc) {
            stop_threads(j);
            return kr_err_from_mdb(rc);
        }
    }
    if (pthread_create(&j->writer, NULL, writer_main, j) != 0) {
        stop_threads(j);
        return KR_ENOMEM;
    }
    j->writer_started = true;
    return KR_OK;
}

/* ---- Create, open, close ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Creates the parent directories of path (mode 0700), like mkdir -p. */
static kr_err make_parents(const char *path)
{
    char p[KR_PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return kr_err_from_errno(errno);
        *c = '/';
    }
    return KR_OK;
}

static void fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* KR_OK if dir does not exist or is an empty directory, KR_EEXIST if it
 * holds anything. */
static kr_err check_absent_or_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? KR_OK : kr_err_from_errno(errno);
    struct dirent *e;
    kr_err err = KR_OK;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            err = KR_EEXIST;
    closedir(d);
    return err;
}

/* Builds the whole data directory (keys, LMDB environment, genesis record,
 * checkpoint file) in DIR.init-tmp and renames it to DIR only when it is
 * complete and synced: a crash during init leaves no half-made journal in
 * DIR, and the next init starts over. */
kr_err jrn_create(const struct jrn_options *o, struct jrn_info *info)
{
    char tmp[KR_PATH_MAX];
    kr_err err;

    if (!o || !o->dir || o->read_only || o->dir[0] == '\0')
        return KR_EINVAL;
    if (strlen(o->dir) >= KR_PATH_MAX - 64)
        return KR_ETOOLARGE;
    if (sodium_init() < 0)
        return KR_ECRYPTO;
    if ((err = check_absent_or_empty(o->dir)) || (err = make_parents(o->dir)))
        return err;
    snprintf(tmp, sizeof tmp, "%s.init-tmp", o->dir);
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS); /* left by an init that died */
    if (mkdir(tmp, 0700) != 0)
        return kr_err_from_errno(errno);

    struct jrn_options to = *o;
    to.dir = tmp;
    to.durable = NULL; /* the genesis record is no publisher's business */
    struct journal *j = journal_alloc(&to);
    if (!j)
        return KR_ENOMEM;
    if ((err = kr_key_generate(1, &j->keys[0])))
        goto out;
    j->nkeys = 1;
    j->signing = &j->keys[0];
    if ((err = kr_key_save(tmp, &j->keys[0])))
        goto out;
    if ((err = env_open(j, &to, true)) || (err = take_writer_lock(j, tmp)))
        goto out;
    randombytes_buf(j->journal_id, sizeof j->journal_id);
    make_origin(j);

    MDB_txn *txn;
    int rc = mdb_txn_begin(j->env, NULL, 0, &txn);
    if (rc) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    bool format1 = atomic_load(&jrn_testing_format1) != 0;
    bool legacy = format1 || atomic_load(&jrn_testing_legacy_index);
    j->meta_format = format1  ? JRN_META_FORMAT_1
                     : legacy ? JRN_META_FORMAT_2
                              : JRN_META_FORMAT_CURRENT;
    j->legacy_index = legacy;
    j->write_format = format1 ? JRN_FORMAT_1 : JRN_FORMAT;
    uint8_t fmt[4];
    kr_put_be32(fmt, j->meta_format);
    if ((err = meta_put(j, txn, JRN_META_FORMAT, fmt, 4)) ||
        (err = meta_put(j, txn, JRN_META_ID, j->journal_id, sizeof j->journal_id))) {
        mdb_txn_abort(txn);
        goto out;
    }
    if ((rc = mdb_txn_commit(txn))) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    mrk_frontier_init(&j->frontier);
    if ((err = start_threads(j, o->signers)))
        goto out;

    /* The genesis record names the journal and its first key. */
    uint8_t payload[256];
    size_t plen = encode_key_payload(payload, sizeof payload, j, &j->keys[0], true);
    struct jrn_event e;
    system_event(&e, JRN_TYPE_CREATED, 0, payload, plen);
    err = append_sync(j, &e, 1, true);
    if (err == KR_OK && info)
        jrn_get_info(j, info);
out:
    if (j->writer_started) {
        stop_threads(j);
        kr_err ferr = write_checkpoint_file(j);
        if (err == KR_OK)
            err = ferr;
    }
    journal_free(j);
    if (err == KR_OK) {
        char sub[KR_PATH_MAX];
        if (kr_path_join(sub, sizeof sub, tmp, "keys") == KR_OK)
            fsync_path(sub);
        if (kr_path_join(sub, sizeof sub, tmp, "journal") == KR_OK)
            fsync_path(sub);
        fsync_path(tmp);
        /* rename(2) replaces an empty directory, so DIR may pre-exist empty. */
        if (rename(tmp, o->dir) != 0)
            err = kr_err_from_errno(errno == ENOTEMPTY ? EEXIST : errno);
        char parent[KR_PATH_MAX];
        snprintf(parent, sizeof parent, "%s", o->dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent)
            *slash = '\0';
        else
            snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
        fsync_path(parent);
    }
    if (err)
        nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return err;
}

/* ---- Views ---- */

MDB_env *jrn_env(struct journal *j)
{
    return j->env;
}

/* Applies records after the views' applied size up to j->size, in write
 * transactions of KR_REBUILD_TXN_RECORDS. Runs with no writer thread active
 * (at open), or where the caller guarantees no appends (rebuild). */
static kr_err views_catch_up(struct journal *j, jrn_progress_fn progress, void *arg)
{
    const struct jrn_views *vw = j->views;
    for (;;) {
        MDB_txn *txn;
        MDB_cursor *cur;
        kr_err err;
        uint64_t done;
        int rc = mdb_txn_begin(j->env, NULL, 0, &txn);
        if (rc)
            return kr_err_from_mdb(rc);
        if ((err = vw->applied(vw->ctx, txn, &done)))
            goto fail;
        if (done > j->size) {
            err = KR_ECORRUPT; /* views ahead of the journal: rolled back? */
            goto fail;
        }
        if (done == j->size) {
            mdb_txn_abort(txn);
            return KR_OK;
        }
        if ((rc = mdb_cursor_open(txn, j->db_events, &cur))) {
            err = kr_err_from_mdb(rc);
            goto fail;
        }
        uint8_t kb[8];
        kr_put_be64(kb, done + 1);
        MDB_val k = {8, kb}, v;
        uint64_t n = 0;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
        while (rc == MDB_SUCCESS && n < KR_REBUILD_TXN_RECORDS && done < j->size) {
            struct jrn_record r;
            if (k.mv_size != 8 || kr_get_be64(k.mv_data) != done + 1 ||
                jrn_record_decode(v.mv_data, v.mv_size, &r) || r.seq != done + 1) {
                err = KR_ECORRUPT;
                goto fail;
            }
            if ((err = (vw->apply_stored ? vw->apply_stored : vw->apply)(vw->ctx, txn, &r)))
                goto fail;
            done++;
            n++;
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
            err = kr_err_from_mdb(rc);
            goto fail;
        }
        if (n == 0) {
            err = KR_ECORRUPT; /* a record the journal's size promises is missing */
            goto fail;
        }
        if ((err = vw->batch_end(vw->ctx, txn, done)))
            goto fail;
        if ((err = jrn_commit_durable(j, txn)))
            return err;
        if (progress && !progress(arg, done, j->size))
            return KR_OK;
        continue;
    fail:
        mdb_txn_abort(txn);
        return err;
    }
}

kr_err jrn_views_rebuild(struct journal *j, jrn_progress_fn progress, void *arg)
{
    if (!j->views || j->read_only)
        return KR_EINVAL;
    MDB_txn *txn;
    kr_err err;
    int rc = mdb_txn_begin(j->env, NULL, 0, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((err = j->views->drop(j->views->ctx, txn)) ||
        (err = j->views->batch_end(j->views->ctx, txn, 0))) {
        mdb_txn_abort(txn);
        return err;
    }
    if ((err = jrn_commit_durable(j, txn)))
        return err;
    /* j->size is the writer's; with no append racing it is the committed size. */
    return views_catch_up(j, progress, arg);
}

/* Migration of a meta-format-1 journal: every tenants index entry gets the
 * tseq its record has (its place among the tenant's records), so that the
 * writer continues each tenant's count; then meta `format` becomes 2. The
 * values are recomputed from the keys alone, in write transactions of at most
 * KR_MIGRATE_TXN_ENTRIES entries: a crash leaves a journal still marked
 * format 1, and the next writable open does it again from the start. Runs
 * before the writer starts. */
static kr_err migrate_tenant_counts(struct journal *j)
{
    uint8_t resume[16];
    bool started = false, done = false;
    uint64_t tenant = 0, count = 0;
    while (!done) {
        MDB_txn *txn;
        MDB_cursor *c;
        kr_err err = KR_OK;
        int rc = mdb_txn_begin(j->env, NULL, 0, &txn);
        if (rc)
            return kr_err_from_mdb(rc);
        if ((rc = mdb_cursor_open(txn, j->db_tenants, &c))) {
            mdb_txn_abort(txn);
            return kr_err_from_mdb(rc);
        }
        MDB_val k = {16, resume}, v;
        rc =
            started ? mdb_cursor_get(c, &k, &v, MDB_SET_KEY) : mdb_cursor_get(c, &k, &v, MDB_FIRST);
        if (started && rc == MDB_SUCCESS)
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        for (uint64_t n = 0; rc == MDB_SUCCESS && n < KR_MIGRATE_TXN_ENTRIES; n++) {
            if (k.mv_size != 16 || kr_get_be64((const uint8_t *)k.mv_data + 8) == 0) {
                err = KR_ECORRUPT;
                break;
            }
            uint64_t t = kr_get_be64(k.mv_data);
            count = started && t == tenant ? count + 1 : 1;
            tenant = t;
            started = true;
            memcpy(resume, k.mv_data, 16);
            if (v.mv_size != 8 || kr_get_be64(v.mv_data) != count) {
                uint8_t tv[8];
                kr_put_be64(tv, count);
                MDB_val nv = {8, tv};
                /* The key from a copy: k points into the page the put changes. */
                MDB_val kc = {16, resume};
                if ((rc = mdb_cursor_put(c, &kc, &nv, MDB_CURRENT)))
                    break;
            }
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(c);
        if (err == KR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            err = kr_err_from_mdb(rc);
        if (err == KR_OK && rc == MDB_NOTFOUND) {
            uint8_t fmt[4];
            kr_put_be32(fmt, JRN_META_FORMAT_2);
            err = meta_put(j, txn, JRN_META_FORMAT, fmt, 4);
            done = true;
        }
        if (err) {
            mdb_txn_abort(txn);
            return err;
        }
        if ((rc = mdb_txn_commit(txn)))
            return kr_err_from_mdb(rc);
    }
    j->meta_format = JRN_META_FORMAT_2;
    return KR_OK;
}

/* One transaction of migrate_stream_index: indexes up to
 * KR_MIGRATE_TXN_RECORDS records from *next on (heads and links as the
 * writer makes them), advancing *next; on reaching the end, drops the legacy
 * index and sets meta `format` to 3. */
static kr_err migrate_stream_txn(struct journal *j, uint64_t *next, uint64_t per_txn, bool *done)
{
    struct jrn_batch b = {.j = j};
    MDB_cursor *ce = NULL;
    kr_err err = KR_OK;
    int rc = mdb_txn_begin(j->env, NULL, 0, &b.txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((rc = mdb_cursor_open(b.txn, j->db_events, &ce)) ||
        (rc = mdb_cursor_open(b.txn, j->db_links, &b.c_links))) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    uint8_t kb[8];
    kr_put_be64(kb, *next);
    MDB_val k = {8, kb}, v;
    rc = mdb_cursor_get(ce, &k, &v, MDB_SET_KEY);
    for (uint64_t n = 0; rc == MDB_SUCCESS && n < per_txn; n++) {
        struct jrn_record r;
        if (k.mv_size != 8 || kr_get_be64(k.mv_data) != *next ||
            jrn_record_decode(v.mv_data, v.mv_size, &r) || r.seq != *next) {
            err = KR_ECORRUPT;
            goto out;
        }
        if ((err = index_stream(&b, &r)))
            goto out;
        (*next)++;
        rc = mdb_cursor_get(ce, &k, &v, MDB_NEXT);
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    *done = rc == MDB_NOTFOUND;
    if (*done) {
        uint8_t fmt[4];
        kr_put_be32(fmt, JRN_META_FORMAT_CURRENT);
        if ((rc = mdb_drop(b.txn, j->db_streams, 1))) {
            err = kr_err_from_mdb(rc);
            goto out;
        }
        if ((err = meta_put(j, b.txn, JRN_META_FORMAT, fmt, 4)))
            goto out;
    }
    mdb_cursor_close(ce);
    ce = NULL;
    err = kr_err_from_mdb(mdb_txn_commit(b.txn)); /* frees c_links */
    b.txn = NULL;
out:
    if (ce)
        mdb_cursor_close(ce);
    if (b.txn)
        mdb_txn_abort(b.txn);
    return err;
}

/* Migration of the legacy stream index (meta format 2): every record, in seq
 * order, gets its link and moves its stream's head, exactly as the writer
 * does; the last transaction drops `streams` and sets meta `format` to 3. The
 * new index is built from the records alone. A crash leaves format 2 and a
 * prefix of the links with the heads that go with them (each transaction
 * writes both): the next writable open resumes after the last link. Runs
 * before the writer starts. */
static kr_err migrate_stream_index(struct journal *j)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t next = 1;
    bool done = false;
    int rc = mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((rc = mdb_cursor_open(txn, j->db_links, &c)) == 0) {
        rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
        if (rc == MDB_SUCCESS && k.mv_size == 8)
            next = kr_get_be64(k.mv_data) + 1;
        rc = rc == MDB_NOTFOUND ? 0 : rc;
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
    if (rc)
        return kr_err_from_mdb(rc);
    uint64_t per_txn = atomic_load(&jrn_testing_migrate_records);
    j->legacy_index = false; /* index_stream now writes heads and links */
    while (!done) {
        kr_err err =
            migrate_stream_txn(j, &next, per_txn ? per_txn : KR_MIGRATE_TXN_RECORDS, &done);
        if (!err && !done && atomic_load(&jrn_testing_migrate_txns) > 0 &&
            atomic_fetch_sub(&jrn_testing_migrate_txns, 1) == 1)
            err = KR_EIO; /* the test's crash */
        if (err) {
            j->legacy_index = true;
            return err;
        }
    }
    j->meta_format = JRN_META_FORMAT_CURRENT;
    j->has_streams = false;
    return KR_OK;
}

/* ---- The start check (journal.h, jrn_open) ---- */

/* The public key of key_id: the loaded secret key's, or DIR/keys/journal-N.pub. */
static kr_err start_key(struct journal *j, uint32_t key_id, uint8_t pk[KR_PUBKEY_LEN])
{
    if (j->signing && j->signing->key_id == key_id) {
        memcpy(pk, j->signing->pk, KR_PUBKEY_LEN);
        return KR_OK;
    }
    return kr_pubkey_load(j->dir, key_id, pk);
}

static kr_err start_check_note(struct journal *j, MDB_txn *txn, struct jrn_start_fault *f)
{
    /* The newest checkpoint is signed by the current key, or by the one
     * before when the last batch rotated it. */
    struct kr_note_key nk[2];
    size_t nn = 0;
    uint32_t cur = j->signing->key_id;
    for (uint32_t id = cur; id >= 1 && id + 1 >= cur && nn < 2; id--) {
        if (start_key(j, id, nk[nn].pk) != KR_OK)
            continue;
        snprintf(nk[nn].name, sizeof nk[nn].name, "%s", j->origin);
        nk[nn].key_id = id;
        nn++;
    }
    struct kr_checkpoint cp;
    uint32_t key_id;
    if (nn == 0 || kr_checkpoint_open(j->note, j->note_len, nk, nn, &cp, &key_id) != KR_OK)
        return start_refuse(f, j->size, "the newest checkpoint's signature does not verify");
    if (strcmp(cp.origin, j->origin) != 0 || cp.size == 0 || cp.size > j->size)
        return start_refuse(f, j->size, "the newest checkpoint does not fit this journal");
    uint8_t root[KR_HASH_LEN];
    struct jrn_tree_ctx tc = {j, txn};
    if (mrk_root(jrn_tree_node, &tc, cp.size, root) != KR_OK ||
        sodium_memcmp(root, cp.root, KR_HASH_LEN) != 0)
        return start_refuse(f, cp.size, "the newest checkpoint's root does not match the tree");
    return KR_OK;
}

/* One record of the start check; prev_leaf/prev_time are the record before's
 * (have_prev false for the first one checked, whose predecessor is not). */
static kr_err start_check_record(struct journal *j, MDB_txn *txn, uint64_t seq, const MDB_val *v,
                                 uint8_t prev_leaf[KR_HASH_LEN], uint64_t *prev_time,
                                 bool have_prev, uint32_t *pk_id, uint8_t pk[KR_PUBKEY_LEN],
                                 struct jrn_start_fault *f)
{
    struct jrn_record r;
    uint8_t h[KR_HASH_LEN], stored[KR_HASH_LEN];
    if (jrn_record_decode(v->mv_data, v->mv_size, &r) != KR_OK)
        return start_refuse(f, seq, "record does not decode");
    if (r.seq != seq)
        return start_refuse(f, seq, "record says another seq than it is stored under");
    if (have_prev && sodium_memcmp(r.prev, prev_leaf, KR_HASH_LEN) != 0)
        return start_refuse(f, seq, "prev does not match the previous record's leaf hash");
    if (have_prev && r.time_ns < *prev_time)
        return start_refuse(f, seq, "time goes backwards");
    jrn_record_leaf_hash(&r, h);
    struct jrn_tree_ctx tc = {j, txn};
    if (jrn_tree_node(&tc, 0, seq - 1, stored) != KR_OK ||
        sodium_memcmp(stored, h, KR_HASH_LEN) != 0)
        return start_refuse(f, seq, "leaf hash differs from the stored tree (record altered)");
    if (!r.payload_stripped) {
        uint8_t c[KR_HASH_LEN];
        kr_sha256(c, r.payload, r.payload_len);
        if (sodium_memcmp(c, r.commitment, KR_HASH_LEN) != 0)
            return start_refuse(f, seq, "payload does not match its commitment");
    }
    if (*pk_id != r.key_id) {
        if (start_key(j, r.key_id, pk) != KR_OK)
            return start_refuse(f, seq, "signed by a key the journal does not have");
        *pk_id = r.key_id;
    }
    uint8_t msg[JRN_SIGN_INPUT_MAX];
    size_t mlen;
    jrn_record_sign_input(&r, msg, &mlen);
    if (crypto_sign_verify_detached(r.sig, msg, mlen, pk) != 0)
        return start_refuse(f, seq, "signature does not verify");
    memcpy(prev_leaf, h, KR_HASH_LEN);
    *prev_time = r.time_ns;
    return KR_OK;
}

/* Bounded: the newest checkpoint and at most KR_START_CHECK_MAX records. */
static kr_err start_check(struct journal *j, struct jrn_start_fault *f)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    kr_err err;
    uint64_t checked = 0;
    int rc = mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((err = start_check_note(j, txn, f)))
        goto out;
    /* The last record not checked: the one before the newest kept
     * checkpoint's size, so the record at that size (often the newest) is
     * checked too: the checkpoint's root covers the stored tree, not the
     * record bytes. */
    uint64_t kept = j->kept_size < j->size ? j->kept_size : j->size;
    uint64_t from = kept > 0 ? kept - 1 : 0;
    if (j->size - from > KR_START_CHECK_MAX)
        from = j->size - KR_START_CHECK_MAX;
    if ((rc = mdb_cursor_open(txn, j->db_events, &cur))) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    uint8_t prev_leaf[KR_HASH_LEN], pk[KR_PUBKEY_LEN];
    uint64_t prev_time = 0;
    uint32_t pk_id = 0;
    bool have_prev = false;
    if (from > 0) {
        /* The record at `from` is covered by a kept checkpoint: its stored
         * leaf is what the next one must link to. */
        struct jrn_tree_ctx tc = {j, txn};
        if (jrn_tree_node(&tc, 0, from - 1, prev_leaf) != KR_OK) {
            mdb_cursor_close(cur);
            err = start_refuse(f, from, "stored Merkle tree lacks the record's leaf");
            goto out;
        }
        have_prev = true;
    }
    uint8_t kb[8];
    kr_put_be64(kb, from + 1);
    MDB_val k = {8, kb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
    for (uint64_t seq = from + 1; seq <= j->size; seq++) {
        if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size != 8 || kr_get_be64(k.mv_data) != seq))) {
            err = start_refuse(f, seq, "record is missing");
            break;
        }
        if (rc) {
            err = kr_err_from_mdb(rc);
            break;
        }
        checked++;
        if ((err = start_check_record(j, txn, seq, &v, prev_leaf, &prev_time, have_prev, &pk_id, pk,
                                      f)))
            break;
        have_prev = true;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
out:
    atomic_store(&jrn_testing_start_checked, checked);
    mdb_txn_abort(txn);
    return err;
}

kr_err jrn_open(const struct jrn_options *o, struct journal **out)
{
    kr_err err;
    if (!o || !o->dir || !out)
        return KR_EINVAL;
    if (strlen(o->dir) >= KR_PATH_MAX - 64)
        return KR_ETOOLARGE;
    if (sodium_init() < 0)
        return KR_ECRYPTO;
    char path[KR_PATH_MAX];
    struct stat st;
    if ((err = kr_path_join(path, sizeof path, o->dir, "journal/data.mdb")))
        return err;
    if (stat(path, &st) != 0)
        return KR_ENOTFOUND; /* and create nothing: `init` must still work */
    struct journal *j = journal_alloc(o);
    if (!j)
        return KR_ENOMEM;
    if (!j->read_only && (err = take_writer_lock(j, o->dir)))
        goto fail;
    if ((err = env_open(j, o, false)) || (err = load_state(j, o->start_fault)))
        goto fail;
    if (j->size == 0) {
        err = KR_ECORRUPT; /* a journal always has its genesis record */
        goto fail;
    }
    if (!j->read_only && !j->no_appends && (err = start_check(j, o->start_fault)))
        goto fail;
    j->write_format = JRN_FORMAT;
    if (!j->read_only && j->meta_format == JRN_META_FORMAT_1) {
        if (atomic_load(&jrn_testing_format1))
            j->write_format = JRN_FORMAT_1;
        else if ((err = migrate_tenant_counts(j)))
            goto fail;
    }
    if (!j->read_only && j->meta_format == JRN_META_FORMAT_2 &&
        !atomic_load(&jrn_testing_legacy_index) && (err = migrate_stream_index(j)))
        goto fail;
    if (!j->read_only && j->views && !o->views_no_catch_up && (err = views_catch_up(j, NULL, NULL)))
        goto fail;
    j->durable_size = j->size; /* the hook hears of what commits from now on */
    if (!j->read_only && !j->no_appends && (err = start_threads(j, o->signers)))
        goto fail;
    *out = j;
    return KR_OK;
fail:
    journal_free(j);
    return err;
}

kr_err jrn_open_raw(const char *dir, struct journal **out)
{
    struct jrn_options o = {.dir = dir, .read_only = true};
    MDB_txn *txn;
    MDB_val v;
    kr_err err;
    if (strlen(dir) >= KR_PATH_MAX - 64)
        return KR_ETOOLARGE;
    if (sodium_init() < 0)
        return KR_ECRYPTO;
    struct journal *j = journal_alloc(&o);
    if (!j)
        return KR_ENOMEM;
    if ((err = env_open(j, &o, false)))
        goto fail;
    if ((err = kr_err_from_mdb(mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn))))
        goto fail;
    err = meta_get(j, txn, JRN_META_ID, &v);
    if (err == KR_OK && v.mv_size != sizeof j->journal_id)
        err = KR_ECORRUPT;
    if (err == KR_OK)
        memcpy(j->journal_id, v.mv_data, sizeof j->journal_id);
    /* The stream index's layout, by the format (verify reports a bad one). */
    if (err == KR_OK && meta_get(j, txn, JRN_META_FORMAT, &v) == KR_OK && v.mv_size == 4)
        j->meta_format = kr_get_be32(v.mv_data);
    j->legacy_index = j->meta_format < JRN_META_FORMAT_CURRENT;
    mdb_txn_abort(txn);
    if (err)
        goto fail;
    make_origin(j);
    *out = j;
    return KR_OK;
fail:
    journal_free(j);
    return err;
}

void jrn_close(struct journal *j)
{
    if (!j)
        return;
    if (j->writer_started) {
        stop_threads(j);
        /* Held appends nobody released (a holding hook): never acknowledged. */
        pthread_mutex_lock(&j->rel_mu);
        struct jrn_append *held = take_released(j, UINT64_MAX);
        pthread_mutex_unlock(&j->rel_mu);
        complete_all(held, KR_ECLOSED);
        if ((!j->failed || j->stopped) && write_checkpoint_file(j) != KR_OK)
            fprintf(stderr, "kiroku: %s/checkpoint: cannot write it: %s\n", j->dir,
                    kr_strerror(KR_EIO));
    } else if (!j->read_only && j->no_appends && j->file_behind) {
        /* A follower's apply sessions leave it behind by up to a second. */
        if (write_checkpoint_file(j) != KR_OK)
            fprintf(stderr, "kiroku: %s/checkpoint: cannot write it: %s\n", j->dir,
                    kr_strerror(KR_EIO));
    }
    journal_free(j);
}

void jrn_get_info(struct journal *j, struct jrn_info *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out->journal_id, j->journal_id, sizeof out->journal_id);
    snprintf(out->origin, sizeof out->origin, "%s", j->origin);
    pthread_mutex_lock(&j->mu);
    if (j->signing) {
        out->key_id = j->signing->key_id;
        memcpy(out->pk, j->signing->pk, KR_PUBKEY_LEN);
    } else if (j->replica_key_id) {
        out->key_id = j->replica_key_id;
        memcpy(out->pk, j->replica_pk, KR_PUBKEY_LEN);
    }
    pthread_mutex_unlock(&j->mu);
    out->size = jrn_size(j);
}

uint64_t jrn_size(struct journal *j)
{
    if (!j->read_only)
        return atomic_load(&j->committed);
    /* A reader sees what other processes committed since it opened. */
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t n = atomic_load(&j->committed);
    if (mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn) != 0)
        return n;
    if (mdb_cursor_open(txn, j->db_events, &c) == 0) {
        if (mdb_cursor_get(c, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
            n = kr_get_be64(k.mv_data);
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
    return n;
}

kr_err jrn_tenant_next_tseq(struct journal *j, uint64_t tenant, uint64_t *next)
{
    MDB_txn *txn;
    MDB_cursor *c;
    uint64_t last = 0;
    int rc = mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return kr_err_from_mdb(rc);
    if ((rc = mdb_cursor_open(txn, j->db_tenants, &c))) {
        mdb_txn_abort(txn);
        return kr_err_from_mdb(rc);
    }
    kr_err err = jrn_tenant_last(c, tenant, &last);
    if (err == KR_ECORRUPT) {
        /* An unmigrated journal (read-only open): count the entries. */
        uint8_t key[16];
        kr_put_be64(key, tenant);
        kr_put_be64(key + 8, 0);
        MDB_val k = {16, key}, v;
        last = 0;
        err = KR_OK;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        while (rc == MDB_SUCCESS && k.mv_size == 16 && memcmp(k.mv_data, key, 8) == 0) {
            if (v.mv_size != 0) {
                err = KR_ECORRUPT;
                break;
            }
            last++;
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        if (err == KR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            err = kr_err_from_mdb(rc);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    if (err == KR_OK)
        *next = last + 1;
    return err;
}

const uint64_t jrn_commit_bucket_us[JRN_COMMIT_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000};

kr_err jrn_failed(struct journal *j)
{
    pthread_mutex_lock(&j->mu);
    kr_err err = j->failed;
    pthread_mutex_unlock(&j->mu);
    return err;
}

void jrn_get_stats(struct journal *j, struct jrn_stats *out)
{
    pthread_mutex_lock(&j->stats_mu);
    *out = j->stats;
    pthread_mutex_unlock(&j->stats_mu);
}

/* Tells the key hook of a new signing key (journal.h, jrn_key_hook). */
static kr_err key_made(struct journal *j, const struct kr_signing_key *key)
{
    if (!j->key_made || !j->key_made->key_made)
        return KR_OK;
    return j->key_made->key_made(j->key_made->ctx, j->journal_id, key);
}

kr_err jrn_rotate_key(struct journal *j, struct jrn_info *new_info)
{
    kr_err err;
    if (j->read_only || j->no_appends)
        return KR_ECLOSED;
    pthread_mutex_lock(&j->mu);
    if (j->failed) {
        /* After KR_EIO a key_added record may be on disk although its append
         * failed: its key files must stay as they are. */
        err = j->failed;
        pthread_mutex_unlock(&j->mu);
        return err;
    }
    if (j->epoch_needed) {
        pthread_mutex_unlock(&j->mu);
        return KR_EKEY; /* only jrn_new_epoch may follow a truncation */
    }
    if (j->rotating || j->nkeys >= KR_KEYS_MAX) {
        err = j->rotating ? KR_EBUSY : KR_ETOOLARGE; /* read under mu */
        pthread_mutex_unlock(&j->mu);
        return err;
    }
    j->rotating = true; /* new submissions wait until the rotation is done */
    uint32_t new_id = j->signing->key_id + 1;
    pthread_mutex_unlock(&j->mu);

    struct kr_signing_key *nk = &j->keys[j->nkeys];
    uint64_t version = 0;
    if ((err = kr_key_generate(new_id, nk)))
        goto out;
    err = kr_key_save(j->dir, nk);
    if (err == KR_EEXIST) {
        /* No committed record names key new_id (the current key is the one
         * before it), so its files are left from a rotation whose record never
         * committed (KR_EFULL, a crash): replace them. */
        kr_key_remove(j->dir, new_id);
        err = kr_key_save(j->dir, nk);
    }
    if (!err && (err = key_made(j, nk)))
        kr_key_remove(j->dir, new_id);
    if (err ||
        (err = jrn_stream_version(j, 0, JRN_SYSTEM_STREAM, strlen(JRN_SYSTEM_STREAM), &version)))
        goto out;
    uint8_t payload[128];
    size_t plen = encode_key_payload(payload, sizeof payload, j, nk, false);
    struct jrn_event e;
    system_event(&e, JRN_TYPE_KEY_ADDED, version, payload, plen);
    if ((err = append_sync(j, &e, 1, true)))
        goto out;

    pthread_mutex_lock(&j->mu);
    j->nkeys++;
    j->signing = nk;
    pthread_mutex_unlock(&j->mu);
out:
    if (err)
        kr_key_wipe(nk); /* the key that never became current */
    pthread_mutex_lock(&j->mu);
    j->rotating = false;
    pthread_cond_broadcast(&j->space_cv);
    pthread_mutex_unlock(&j->mu);
    if (err == KR_OK && new_info)
        jrn_get_info(j, new_info);
    return err;
}

/* ---- Epochs ---- */

/* The keys the journal's own stream has introduced so far (as note keys),
 * the number of epochs (1 + epoch_started records) and the largest key id.
 * nk holds KR_KEYS_MAX entries. */
static kr_err key_history(struct journal *j, MDB_txn *txn, struct kr_note_key *nk, size_t *n,
                          uint64_t *epochs, uint32_t *max_id)
{
    *n = 0;
    *epochs = 1;
    *max_id = 0;
    for (uint64_t version = 1;; version++) {
        uint64_t seq;
        kr_err err =
            jrn_stream_seq(j, txn, 0, JRN_SYSTEM_STREAM, strlen(JRN_SYSTEM_STREAM), version, &seq);
        if (err == KR_ENOTFOUND)
            return *n ? KR_OK : KR_ECORRUPT;
        if (err)
            return err;
        if (*n >= KR_KEYS_MAX)
            return KR_ECORRUPT;
        struct jrn_record r;
        struct jrn_key_payload kp;
        if ((err = jrn_read_in(j, txn, seq, &r)))
            return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
        if (!jrn_is_system(&r) || r.version != version || r.payload_stripped ||
            jrn_parse_key_payload(r.payload, r.payload_len, &kp))
            return KR_ECORRUPT;
        snprintf(nk[*n].name, sizeof nk[*n].name, "%s", j->origin);
        memcpy(nk[*n].pk, kp.pk, KR_PUBKEY_LEN);
        nk[*n].key_id = kp.key_id;
        (*n)++;
        if (kp.has_epoch)
            (*epochs)++;
        if (kp.key_id > *max_id)
            *max_id = kp.key_id;
    }
}

/* {epoch, key_id, public_key, previous_checkpoint}, keys in this order. */
static size_t encode_epoch_payload(uint8_t *out, size_t cap, uint64_t epoch,
                                   const struct kr_signing_key *k, const char *prev, size_t len)
{
    struct kr_mp_fixbuf fb = {.p = out, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    msgpack_pack_map(&pk, 4);
    pack_key(&pk, "epoch");
    msgpack_pack_uint64(&pk, epoch);
    pack_key(&pk, "key_id");
    msgpack_pack_uint32(&pk, k->key_id);
    pack_key(&pk, "public_key");
    msgpack_pack_bin(&pk, KR_PUBKEY_LEN);
    msgpack_pack_bin_body(&pk, k->pk, KR_PUBKEY_LEN);
    pack_key(&pk, "previous_checkpoint");
    msgpack_pack_str(&pk, len);
    msgpack_pack_str_body(&pk, prev, len);
    return fb.overflow ? 0 : fb.len;
}

kr_err jrn_new_epoch(struct journal *j, const char *prev_checkpoint, size_t len,
                     struct jrn_info *out)
{
    kr_err err;
    if (!j || !prev_checkpoint || len == 0 || len > KR_NOTE_MAX)
        return KR_EINVAL;
    if (j->read_only || j->no_appends)
        return KR_ECLOSED;
    pthread_mutex_lock(&j->mu);
    if (j->failed || j->rotating || j->nkeys >= KR_KEYS_MAX) {
        err = j->failed ? j->failed : j->rotating ? KR_EBUSY : KR_ETOOLARGE;
        pthread_mutex_unlock(&j->mu);
        return err;
    }
    j->rotating = true; /* new submissions wait until the epoch has started */
    uint32_t current = j->signing->key_id;
    pthread_mutex_unlock(&j->mu);

    struct kr_note_key *nk = calloc(KR_KEYS_MAX, sizeof *nk);
    struct kr_signing_key *key = &j->keys[j->nkeys];
    uint8_t *payload = malloc(KR_NOTE_MAX + 256);
    uint64_t epochs = 1, version = 0;
    uint32_t max_id = 0;
    size_t nkeys = 0;
    bool made = false;
    if (!nk || !payload) {
        err = KR_ENOMEM;
        goto out;
    }
    MDB_txn *txn;
    if ((err = kr_err_from_mdb(mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn))))
        goto out;
    err = key_history(j, txn, nk, &nkeys, &epochs, &max_id);
    mdb_txn_abort(txn);
    if (err)
        goto out;
    /* The previous epoch's last checkpoint: a note of this journal, signed by
     * a key it had, at or beyond where this history stands (the fork). */
    struct kr_checkpoint cp;
    uint32_t signer;
    if ((err = kr_checkpoint_open(prev_checkpoint, len, nk, nkeys, &cp, &signer)))
        goto out;
    if (strcmp(cp.origin, j->origin) != 0 || cp.size < jrn_size(j)) {
        err = KR_EINVAL;
        goto out;
    }
    /* A fresh id: none the journal had, nor any left in DIR/keys by the
     * history this one forked from. */
    uint32_t id = (max_id > current ? max_id : current) + 1;
    uint8_t pk[KR_PUBKEY_LEN];
    while (id < UINT32_MAX && kr_pubkey_load(j->dir, id, pk) == KR_OK)
        id++;
    for (unsigned tries = 0;; tries++) {
        if ((err = kr_key_generate(id, key)))
            goto out;
        made = true;
        err = kr_key_save(j->dir, key);
        if (err == KR_EEXIST) {
            /* A secret file without its public one: never published, replace it. */
            kr_key_remove(j->dir, id);
            err = kr_key_save(j->dir, key);
        }
        if (!err && (err = key_made(j, key)))
            kr_key_remove(j->dir, id);
        if (err != KR_EEXIST || tries >= KR_KEY_MADE_TRIES || id == UINT32_MAX - 1)
            break;
        kr_key_wipe(key); /* another node's key has this id: the next one */
        id++;
    }
    if (err ||
        (err = jrn_stream_version(j, 0, JRN_SYSTEM_STREAM, strlen(JRN_SYSTEM_STREAM), &version)))
        goto out;
    size_t plen =
        encode_epoch_payload(payload, KR_NOTE_MAX + 256, epochs + 1, key, prev_checkpoint, len);
    if (plen == 0) {
        err = KR_ETOOLARGE;
        goto out;
    }
    struct jrn_event e;
    system_event(&e, JRN_TYPE_EPOCH_STARTED, version, payload, plen);
    pthread_mutex_lock(&j->mu);
    j->checkpoint_key = key; /* the new key signs this size: the old one may have before */
    j->epoch_clear = true;
    pthread_mutex_unlock(&j->mu);
    err = append_sync(j, &e, 1, true);
    pthread_mutex_lock(&j->mu);
    j->checkpoint_key = NULL;
    j->epoch_clear = false;
    if (err == KR_OK) {
        j->nkeys++;
        j->signing = key;
        j->epoch_needed = false;
    }
    pthread_mutex_unlock(&j->mu);
out:
    if (err && made)
        kr_key_wipe(key);
    free(nk);
    free(payload);
    pthread_mutex_lock(&j->mu);
    j->rotating = false;
    pthread_cond_broadcast(&j->space_cv);
    pthread_mutex_unlock(&j->mu);
    if (err == KR_OK && out)
        jrn_get_info(j, out);
    return err;
}

/* Deletes every key of c's database from `from` on (keys of klen bytes,
 * compared as bytes). */
static kr_err delete_from(MDB_cursor *c, const uint8_t *from, size_t klen)
{
    for (;;) {
        MDB_val k = {klen, (void *)from}, v;
        int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND)
            return KR_OK;
        if (rc || (rc = mdb_cursor_del(c, 0)))
            return kr_err_from_mdb(rc);
    }
}

/* Takes record r, being truncated away (in seq order, with every later record
 * of its stream), out of the stream index: its link goes, and its stream's
 * head steps back to the version before it (the first removed record of a
 * stream decides; the stream's head is gone if that was version 1). */
static kr_err unindex_stream(struct journal *j, MDB_txn *txn, const struct jrn_record *r)
{
    uint8_t key[JRN_STREAM_KEY_MAX], kb[8];
    size_t plen = jrn_stream_prefix(key, r->tenant, r->stream, r->stream_len);
    int rc;
    if (j->legacy_index) {
        kr_put_be64(key + plen, r->version);
        MDB_val ks = {plen + 8, key};
        rc = mdb_del(txn, j->db_streams, &ks, NULL);
        return rc == MDB_NOTFOUND ? KR_OK : kr_err_from_mdb(rc);
    }
    uint64_t hv, hs, prev = 0, jump = 0;
    kr_err err = jrn_stream_head(j, txn, r->tenant, r->stream, r->stream_len, &hv, &hs);
    if (err == KR_OK && r->version > 1)
        err = jrn_link_get(j, txn, r->seq, &prev, &jump);
    if (err)
        return err;
    kr_put_be64(kb, r->seq);
    MDB_val kl = {8, kb}, kh = {plen, key};
    if ((rc = mdb_del(txn, j->db_links, &kl, NULL)) && rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    if (hv < r->version)
        return KR_OK; /* an earlier removed record of the stream moved the head already */
    if (r->version == 1) {
        rc = mdb_del(txn, j->db_heads, &kh, NULL);
        return rc == MDB_NOTFOUND ? KR_OK : kr_err_from_mdb(rc);
    }
    uint8_t hb[JRN_HEAD_LEN];
    kr_put_be64(hb, r->version - 1);
    kr_put_be64(hb + 8, prev);
    MDB_val v = {JRN_HEAD_LEN, hb};
    return kr_err_from_mdb(mdb_put(txn, j->db_heads, &kh, &v, 0));
}

/* Removes records after `size` and everything that belongs only to them, in
 * txn, and stores `note` as the newest checkpoint. */
static kr_err truncate_txn(struct journal *j, MDB_txn *txn, uint64_t size, uint64_t old,
                           const char *note, size_t note_len)
{
    MDB_cursor *c = NULL;
    kr_err err = KR_OK;
    uint8_t kb[8];
    /* A legacy journal's heads and links are a migration's progress, made for
     * the records being removed: the next migration starts again. */
    int rc = j->legacy_index && j->has_heads ? mdb_drop(txn, j->db_heads, 0) : 0;
    if (rc || (j->legacy_index && j->has_heads && (rc = mdb_drop(txn, j->db_links, 0))) ||
        (rc = mdb_cursor_open(txn, j->db_events, &c)))
        return kr_err_from_mdb(rc);
    for (;;) {
        kr_put_be64(kb, size + 1);
        MDB_val k = {8, kb}, v;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND)
            break;
        struct jrn_record r;
        if (rc) {
            err = kr_err_from_mdb(rc);
            break;
        }
        if (k.mv_size != 8 || jrn_record_decode(v.mv_data, v.mv_size, &r) ||
            r.seq != kr_get_be64(k.mv_data)) {
            err = KR_ECORRUPT;
            break;
        }
        uint8_t tk[16];
        kr_put_be64(tk, r.tenant);
        kr_put_be64(tk + 8, r.seq);
        MDB_val kt = {16, tk};
        if ((err = unindex_stream(j, txn, &r)))
            break;
        if (((rc = mdb_del(txn, j->db_tenants, &kt, NULL)) && rc != MDB_NOTFOUND) ||
            (rc = mdb_cursor_del(c, 0))) {
            err = kr_err_from_mdb(rc);
            break;
        }
    }
    mdb_cursor_close(c);
    if (err)
        return err;
    /* Tree nodes: those of the tree of `size` leaves are the first
     * 2 size - popcount(size) in post-order; the rest belong to larger trees. */
    uint8_t tk[8];
    kr_put_be64(tk, 2 * size - (uint64_t)__builtin_popcountll(size));
    if ((rc = mdb_cursor_open(txn, j->db_tree, &c)))
        return kr_err_from_mdb(rc);
    err = delete_from(c, tk, 8);
    mdb_cursor_close(c);
    if (err)
        return err;
    kr_put_be64(kb, size + 1);
    if ((rc = mdb_cursor_open(txn, j->db_checkpoints, &c)))
        return kr_err_from_mdb(rc);
    err = delete_from(c, kb, 8);
    mdb_cursor_close(c);
    if (err)
        return err;
    kr_put_be64(kb, size);
    MDB_val k = {8, kb}, v = {note_len, (void *)note};
    if ((rc = mdb_put(txn, j->db_checkpoints, &k, &v, 0)))
        return kr_err_from_mdb(rc);
    if ((err = meta_put(j, txn, JRN_META_CHECKPOINT, note, note_len)))
        return err;
    if (size < old) {
        kr_put_be64(kb, size);
        if ((err = meta_put(j, txn, JRN_META_EPOCH, kb, 8)))
            return err;
    }
    return KR_OK;
}

/* The key that signs the checkpoint at `size`: the one that signed record
 * `size`, or for a journal.epoch_started record the key it introduces (the
 * checkpoint at an epoch's first record is the new key's). */
static kr_err truncation_key(struct journal *j, MDB_txn *txn, uint64_t size, uint32_t *key_id)
{
    struct jrn_record r;
    kr_err err = jrn_read_in(j, txn, size, &r);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
    *key_id = r.key_id;
    if (jrn_is_system(&r) && jrn_type_is(&r, JRN_TYPE_EPOCH_STARTED)) {
        struct jrn_key_payload kp;
        if (r.payload_stripped || jrn_parse_key_payload(r.payload, r.payload_len, &kp))
            return KR_ECORRUPT;
        *key_id = kp.key_id;
    }
    return KR_OK;
}

kr_err jrn_truncate(const char *dir, uint64_t size)
{
    kr_err err;
    if (!dir || size == 0)
        return KR_EINVAL;
    if (strlen(dir) >= KR_PATH_MAX - 64)
        return KR_ETOOLARGE;
    if (sodium_init() < 0)
        return KR_ECRYPTO;
    char path[KR_PATH_MAX];
    struct stat st;
    if ((err = kr_path_join(path, sizeof path, dir, "journal/data.mdb")))
        return err;
    if (stat(path, &st) != 0)
        return KR_ENOTFOUND;
    /* Exclusive: the writer lock (no writer anywhere) and this process's
     * registry (no handle here, not even a reader). */
    struct jrn_options o = {.dir = dir, .no_appends = true};
    struct journal *j = journal_alloc(&o);
    if (!j)
        return KR_ENOMEM;
    struct kr_signing_key key;
    bool have_key = false;
    MDB_txn *txn = NULL;
    if ((err = take_writer_lock(j, dir)) || (err = env_open(j, &o, false)) ||
        (err = load_state(j, NULL)))
        goto out;
    if (size > j->size) {
        err = KR_EINVAL;
        goto out;
    }
    uint64_t old = j->size;
    if ((err = kr_err_from_mdb(mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn))))
        goto out;
    uint32_t key_id = 0;
    struct kr_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "%s", j->origin);
    cp.size = size;
    struct jrn_tree_ctx tc = {j, txn};
    if ((err = truncation_key(j, txn, size, &key_id)) ||
        (err = mrk_root(jrn_tree_node, &tc, size, cp.root)))
        goto out;
    mdb_txn_abort(txn);
    txn = NULL;
    if ((err = kr_key_load(dir, key_id, &key)))
        goto out;
    have_key = true;
    /* root(size) is the root the journal had at this size all along, signed by
     * the key valid there: no key signs a second root for any size. */
    if ((err = kr_checkpoint_sign(&cp, j->origin, key.pk, key.sk, j->note, sizeof j->note,
                                  &j->note_len)))
        goto out;
    /* The file first: a crash after it leaves the old journal, for which a
     * checkpoint at a smaller size is as valid (same root), and DIR/checkpoint
     * is never ahead of the journal. Then one transaction: all or nothing. */
    if ((err = write_checkpoint_file(j)))
        goto out;
    fsync_path(j->dir); /* the rename */
    if ((err = kr_err_from_mdb(mdb_txn_begin(j->env, NULL, 0, &txn))))
        goto out;
    if ((err = truncate_txn(j, txn, size, old, j->note, j->note_len))) {
        mdb_txn_abort(txn);
        txn = NULL;
        goto out;
    }
    err = jrn_commit_durable(j, txn);
    txn = NULL;
out:
    if (txn)
        mdb_txn_abort(txn);
    if (have_key)
        kr_key_wipe(&key);
    journal_free(j);
    return err;
}
