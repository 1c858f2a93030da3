/*
 * verify.c: full and fast verification of a journal (see verify.h).
 *
 * Design notes
 * - Chunks. Records are split into chunks of C = 2^KR_VERIFY_CHUNK_LOG2; a
 *   chunk is a perfect Merkle subtree, so a worker can recompute its leaves
 *   and nodes alone, compare them with the stored tree in post-order (which is
 *   the order the tree database is keyed by, so one cursor walks it), and hand
 *   back the chunk root, its first prev and its last leaf. The calling thread
 *   then checks the links between chunks and folds the chunk roots into the
 *   whole tree, checking the nodes above chunk level.
 * - First bad seq. Workers take chunks in order and record the first fault in
 *   their chunk; the report names the lowest. Chunks above a known fault are
 *   skipped.
 * - Keys. Before the pass, the journal's own stream gives the key history;
 *   during the pass every record of that stream must be one the history
 *   named, so a doctored index cannot hide or invent a key.
 */
#include "verify.h"

#include "journal_internal.h"
#include "keys.h"
#include "mp.h"
#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK_LOG2 KR_VERIFY_CHUNK_LOG2
#define CHUNK      (1ull << CHUNK_LOG2)
/* Verification threads at most; more than cores only adds contention. */
#define VERIFY_THREADS_MAX 64

struct vkey {
    uint32_t key_id;
    uint8_t pk[KR_PUBKEY_LEN];
    uint64_t from_seq;  /* first record it may sign */
    uint64_t to_seq;    /* first record it may no longer sign */
    uint64_t intro_seq; /* the record that introduced it */
    /* Checkpoint sizes it may sign: [cp_from, cp_to). As for records, except
     * around a journal.epoch_started record at seq E: its checkpoint (size E)
     * is signed by the new key, never the old, which may have signed size E
     * of the history the epoch forked from. */
    uint64_t cp_from, cp_to;
};

struct fault {
    uint64_t seq; /* UINT64_MAX = none */
    kr_err err;
    char what[200];
};

/* One tenant's records in one chunk. Each record of the tenant that states
 * its number (a format-2 tseq, or a tenants index value in full mode) gives
 * base = number - (its place among the tenant's records in the chunk); all
 * must agree, and the merge checks that base is the count of the tenant's
 * records in the chunks before. */
struct tseq_run {
    uint64_t tenant;
    uint64_t n;        /* the tenant's records in the chunk */
    uint64_t base;     /* its records before the chunk, as the numbers say */
    uint64_t base_seq; /* the record that set base; 0 = no number seen */
};

/* An open-addressing table of runs, keyed by tenant (0 is a tenant too, so
 * `used` marks a slot). */
struct tseq_table {
    struct tseq_run *runs;
    bool *used;
    size_t cap, count; /* cap is 0 or a power of two */
};

struct chunk_result {
    uint8_t first_prev[KR_HASH_LEN];
    uint8_t last_leaf[KR_HASH_LEN];
    uint64_t first_time, last_time;
    uint8_t root[KR_HASH_LEN]; /* full chunks */
    uint64_t stripped, system;
    uint64_t first_f1, first_f2; /* lowest seq of a format-1 / -2 record; 0 = none */
    struct tseq_table tseqs;
    struct fault fault;
};

/* DIR/checkpoint as read before the snapshot. */
struct cp_file {
    kr_err err; /* KR_ENOTFOUND: no file */
    char note[KR_NOTE_MAX + 1];
    size_t len;
};

struct vctx {
    struct journal *j;
    struct cp_file cp_file;
    const struct jrn_verify_options *o;
    uint64_t n; /* records to verify */
    uint64_t nchunks;
    struct chunk_result *chunks;
    struct mrk_frontier last_partial; /* frontier of the last chunk when partial */
    struct vkey keys[KR_KEYS_MAX];
    size_t nkeys;
    uint64_t epochs;                           /* 1 + journal.epoch_started records */
    uint32_t meta_format;                      /* meta `format` of the snapshot */
    struct kr_note_key note_keys[KR_KEYS_MAX]; /* the same keys, as note.h wants them */
    size_t nnote_keys;
    _Atomic uint64_t next_chunk;
    _Atomic uint64_t done_chunks;
    _Atomic uint64_t first_bad; /* lowest faulty seq seen so far */
    /* Incremental mode: the state, the records it covers (start), the
     * absolute number of the first chunk (c0), the keys it brought. */
    const struct jrn_verify_state *since;
    uint64_t start, c0;
    size_t since_nkeys;
    bool seen_f2; /* a format-2 record at or before the merge's position */
};

struct jrn_verify_state {
    uint8_t journal_id[16];
    char origin[KR_ORIGIN_MAX + 1];
    uint64_t size;
    uint8_t root[KR_HASH_LEN];
    struct mrk_frontier frontier;
    char note[KR_NOTE_MAX];
    size_t note_len;
    uint8_t *last_rec; /* the record at seq size, encoded */
    size_t last_len;
    uint8_t path[64][KR_HASH_LEN]; /* its inclusion path in the tree of size */
    size_t path_n;
    bool seen_f2;
    size_t nkeys;
    uint8_t *keyrec[KR_KEYS_MAX]; /* the records introducing each key, encoded */
    size_t keyrec_len[KR_KEYS_MAX];
    uint64_t ntenants;
    uint64_t *tenants; /* ntenants pairs (tenant, records), tenants increasing */
    /* From last_rec, on load. */
    uint8_t last_leaf[KR_HASH_LEN];
    uint64_t last_time;
};

static void set_fault(struct fault *f, uint64_t seq, kr_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_fault(struct fault *f, uint64_t seq, kr_err err, const char *fmt, ...)
{
    if (f->seq != UINT64_MAX && f->seq <= seq)
        return;
    f->seq = seq;
    f->err = err;
    va_list ap;
    va_start(ap, fmt);
    /* The analyzer misses va_start just above. */
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    vsnprintf(f->what, sizeof f->what, fmt, ap);
    va_end(ap);
}

static const struct vkey *key_for(const struct vctx *v, uint32_t key_id)
{
    for (size_t i = 0; i < v->nkeys; i++)
        if (v->keys[i].key_id == key_id)
            return &v->keys[i];
    return NULL;
}

#define is_system jrn_is_system
#define type_is   jrn_type_is

/* Checks the previous epoch's last checkpoint named by the epoch_started
 * record at seq: a signed note of this journal by a key it had before, at a
 * size no smaller than the fork (seq - 1). */
static bool prev_checkpoint_ok(struct vctx *v, const struct jrn_key_payload *kp, uint64_t seq,
                               struct fault *f)
{
    struct kr_note_key *nk = calloc(v->nkeys ? v->nkeys : 1, sizeof *nk);
    if (!nk) {
        set_fault(f, seq, KR_ENOMEM, "out of memory");
        return false;
    }
    for (size_t i = 0; i < v->nkeys; i++) {
        snprintf(nk[i].name, sizeof nk[i].name, "%s", v->j->origin);
        memcpy(nk[i].pk, v->keys[i].pk, KR_PUBKEY_LEN);
        nk[i].key_id = v->keys[i].key_id;
    }
    struct kr_checkpoint cp;
    uint32_t key_id;
    kr_err err = kr_checkpoint_open(kp->prev_checkpoint, kp->prev_len, nk, v->nkeys, &cp, &key_id);
    free(nk);
    if (err) {
        set_fault(f, seq, err, "epoch %llu: previous checkpoint: %s", (unsigned long long)kp->epoch,
                  kr_strerror(err));
        return false;
    }
    if (strcmp(cp.origin, v->j->origin) != 0) {
        set_fault(f, seq, KR_ECORRUPT, "epoch %llu: previous checkpoint is another journal's",
                  (unsigned long long)kp->epoch);
        return false;
    }
    if (cp.size + 1 < seq) {
        set_fault(f, seq, KR_ECORRUPT,
                  "epoch %llu: previous checkpoint at size %llu is before the fork at %llu",
                  (unsigned long long)kp->epoch, (unsigned long long)cp.size,
                  (unsigned long long)(seq - 1));
        return false;
    }
    return true;
}

/* ---- Per-tenant numbers ---- */

static void tseq_table_free(struct tseq_table *t)
{
    free(t->runs);
    free(t->used);
    memset(t, 0, sizeof *t);
}

static size_t tseq_slot(const struct tseq_table *t, uint64_t tenant)
{
    size_t i = (size_t)((tenant * 0x9E3779B97F4A7C15ull) >> 17) & (t->cap - 1);
    while (t->used[i] && t->runs[i].tenant != tenant)
        i = (i + 1) & (t->cap - 1);
    return i;
}

/* The run of `tenant`, added if new; NULL when out of memory. The table grows
 * at half full; a chunk has at most CHUNK tenants, a journal at most its size. */
static struct tseq_run *tseq_get(struct tseq_table *t, uint64_t tenant)
{
    if (t->cap == 0 || 2 * (t->count + 1) > t->cap) {
        struct tseq_table g = {.cap = t->cap ? 2 * t->cap : 64};
        g.runs = calloc(g.cap, sizeof *g.runs);
        g.used = calloc(g.cap, sizeof *g.used);
        if (!g.runs || !g.used) {
            tseq_table_free(&g);
            return NULL;
        }
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->used[i])
                continue;
            size_t k = tseq_slot(&g, t->runs[i].tenant);
            g.used[k] = true;
            g.runs[k] = t->runs[i];
        }
        g.count = t->count;
        tseq_table_free(t);
        *t = g;
    }
    size_t i = tseq_slot(t, tenant);
    if (!t->used[i]) {
        t->used[i] = true;
        t->runs[i] = (struct tseq_run){.tenant = tenant};
        t->count++;
    }
    return &t->runs[i];
}

/* Counts record seq of tenant in its chunk's table and checks `number` (its
 * stated tseq; 0 = none stated) against the tenant's earlier numbers in the
 * chunk. */
static void tseq_count(struct chunk_result *res, uint64_t seq, uint64_t tenant, uint64_t number,
                       const char *source)
{
    struct tseq_run *run = tseq_get(&res->tseqs, tenant);
    if (!run) {
        set_fault(&res->fault, seq, KR_ENOMEM, "out of memory counting tenant %llu",
                  (unsigned long long)tenant);
        return;
    }
    run->n++;
    if (number == 0)
        return;
    if (number < run->n) {
        set_fault(&res->fault, seq, KR_ECORRUPT, "%s %llu of tenant %llu repeats an earlier number",
                  source, (unsigned long long)number, (unsigned long long)tenant);
        return;
    }
    uint64_t base = number - run->n;
    if (run->base_seq == 0) {
        run->base = base;
        run->base_seq = seq;
    } else if (base != run->base) {
        set_fault(&res->fault, seq, KR_ECORRUPT, "%s %llu of tenant %llu is not %llu: %s", source,
                  (unsigned long long)number, (unsigned long long)tenant,
                  (unsigned long long)run->base + run->n,
                  base < run->base ? "a number repeats" : "numbers skipped");
    }
}

/* ---- Key history ---- */

/* Adds the key introduced by r, the journal stream's record at `version`
 * and `seq` (decoded, its seq checked), to the history, with the checks of
 * the key chain. False, with the fault set, if it breaks one. */
static bool add_key(struct vctx *v, const struct jrn_record *r, uint64_t seq, uint64_t version,
                    struct fault *f)
{
    struct jrn_key_payload kp;
    if (r->version != version || r->payload_stripped ||
        jrn_parse_key_payload(r->payload, r->payload_len, &kp) != KR_OK) {
        set_fault(f, seq, KR_ECORRUPT, "journal key record is malformed");
        return false;
    }
    uint32_t key_id = kp.key_id;
    const uint8_t *pk = kp.pk;
    bool genesis = version == 1;
    bool epoch = type_is(r, JRN_TYPE_EPOCH_STARTED);
    if (genesis != type_is(r, JRN_TYPE_CREATED) ||
        (!genesis && !type_is(r, JRN_TYPE_KEY_ADDED) && !epoch) || (genesis && seq != 1) ||
        kp.has_genesis != genesis || kp.has_epoch != epoch) {
        set_fault(f, seq, KR_ECORRUPT, "journal stream out of order: %.*s at version %llu",
                  (int)r->type_len, r->type, (unsigned long long)version);
        return false;
    }
    if (genesis) {
        if (key_id != 1 || sodium_memcmp(pk, v->o->root_key, KR_PUBKEY_LEN) != 0) {
            set_fault(f, 1, KR_EBADSIG, "genesis key is not the trusted public key");
            return false;
        }
    } else if (key_for(v, key_id) || v->nkeys >= KR_KEYS_MAX) {
        set_fault(f, seq, KR_ECORRUPT, "key %u introduced twice", key_id);
        return false;
    }
    if (epoch) {
        if (kp.epoch != v->epochs + 1) {
            set_fault(f, seq, KR_ECORRUPT, "epoch %llu follows epoch %llu",
                      (unsigned long long)kp.epoch, (unsigned long long)v->epochs);
            return false;
        }
        if (!prev_checkpoint_ok(v, &kp, seq, f))
            return false;
        v->epochs++;
    }
    if (v->nkeys > 0) {
        /* The record introducing a key is still signed by the old one. */
        v->keys[v->nkeys - 1].to_seq = seq + 1;
        v->keys[v->nkeys - 1].cp_to = epoch ? seq : seq + 1;
        if (r->key_id != v->keys[v->nkeys - 1].key_id) {
            set_fault(f, seq, KR_EBADSIG, "key change not signed by the key it replaces");
            return false;
        }
    }
    struct vkey *vk = &v->keys[v->nkeys++];
    vk->key_id = key_id;
    memcpy(vk->pk, pk, KR_PUBKEY_LEN);
    vk->from_seq = genesis ? 1 : seq + 1;
    vk->to_seq = UINT64_MAX;
    vk->intro_seq = seq;
    vk->cp_from = genesis ? 1 : epoch ? seq : seq + 1;
    vk->cp_to = UINT64_MAX;
    return true;
}

/* Reads the key history through the stream index, in the snapshot txn, one
 * version at a time, so a fault names the record it is in. A fault here does
 * not stop verification: the pass runs with the keys read so far and may find
 * a lower bad seq; every record past the fault needs a key it cannot have. */
static kr_err load_keys(struct vctx *v, MDB_txn *txn, struct fault *f)
{
    for (uint64_t version = v->nkeys + 1;; version++) {
        uint64_t seq = 0;
        MDB_val k, val;
        kr_err ierr = jrn_stream_seq(v->j, txn, 0, JRN_SYSTEM_STREAM, strlen(JRN_SYSTEM_STREAM),
                                     version, &seq);
        if (ierr == KR_ENOTFOUND)
            break;
        if (ierr && ierr != KR_ECORRUPT)
            return ierr;
        /* A damaged entry ends the history; the pass then finds the key
         * record it should have named (the index check, or "missing from the
         * key history"). */
        if (ierr || seq == 0 || seq > v->n)
            break;
        uint8_t sb[8];
        kr_put_be64(sb, seq);
        val = (MDB_val){8, sb};
        struct jrn_record r;
        k = (MDB_val){8, val.mv_data};
        int rc = mdb_get(txn, v->j->db_events, &k, &val);
        if (rc && rc != MDB_NOTFOUND)
            return kr_err_from_mdb(rc);
        if (rc == MDB_NOTFOUND) {
            set_fault(f, seq, KR_ECORRUPT, "journal key record is missing");
            break;
        }
        if (jrn_record_decode(val.mv_data, val.mv_size, &r) != KR_OK || r.seq != seq) {
            set_fault(f, seq, KR_ECORRUPT, "journal key record does not decode or is misplaced");
            break;
        }
        if (seq <= v->start) {
            set_fault(f, seq, KR_ECORRUPT,
                      "journal key record at version %llu lies within the saved state",
                      (unsigned long long)version);
            break;
        }
        if (!add_key(v, &r, seq, version, f))
            break;
    }
    if (v->nkeys == 0 && f->seq == UINT64_MAX)
        set_fault(f, 1, KR_ECORRUPT, "no genesis record");
    return KR_OK;
}

/* ---- Chunk workers ---- */

struct worker {
    struct vctx *v;
    MDB_txn *txn;
    MDB_cursor *c_events, *c_tree, *c_tenants;
    /* per chunk */
    struct chunk_result *res;
    uint64_t base;     /* leaf index of the chunk's first record */
    bool tree_started; /* c_tree positioned */
    uint64_t tree_seq; /* record being hashed, for fault reports */
};

static void emit_check(void *ctx, unsigned level, uint64_t index, const uint8_t hash[KR_HASH_LEN])
{
    struct worker *w = ctx;
    if (w->res->fault.seq != UINT64_MAX)
        return;
    uint64_t abs_index = (w->base >> level) + index;
    uint64_t want = mrk_postorder(level, abs_index);
    MDB_val k, val;
    int rc;
    if (!w->tree_started) {
        uint8_t kb[8];
        kr_put_be64(kb, want);
        k = (MDB_val){8, kb};
        rc = mdb_cursor_get(w->c_tree, &k, &val, MDB_SET_KEY);
        w->tree_started = true;
    } else {
        rc = mdb_cursor_get(w->c_tree, &k, &val, MDB_NEXT);
    }
    if (rc || k.mv_size != 8 || kr_get_be64(k.mv_data) != want) {
        set_fault(&w->res->fault, w->tree_seq, KR_ECORRUPT,
                  "stored Merkle tree lacks node (level %u, index %llu)", level,
                  (unsigned long long)abs_index);
        return;
    }
    if (val.mv_size != KR_HASH_LEN || memcmp(val.mv_data, hash, KR_HASH_LEN) != 0) {
        if (level == 0)
            set_fault(&w->res->fault, w->tree_seq, KR_ECORRUPT,
                      "leaf hash differs from the stored tree (record altered)");
        else
            set_fault(&w->res->fault, w->tree_seq, KR_ECORRUPT,
                      "stored Merkle node (level %u, index %llu) differs", level,
                      (unsigned long long)abs_index);
    }
}

/* check_record's signature step: r was signed by a key of the history valid
 * at seq, and the signature verifies. False, with the fault set, if not. */
static bool check_signature(struct worker *w, uint64_t seq, const struct jrn_record *r)
{
    struct chunk_result *res = w->res;
    const struct vkey *k = key_for(w->v, r->key_id);
    if (!k) {
        set_fault(&res->fault, seq, KR_EBADSIG, "signed by unknown key %u", r->key_id);
        return false;
    }
    if (seq < k->from_seq || seq >= k->to_seq) {
        set_fault(&res->fault, seq, KR_EBADSIG, "signed by key %u, %s at this seq", r->key_id,
                  seq < k->from_seq ? "not yet valid" : "retired");
        return false;
    }
    uint8_t msg[JRN_SIGN_INPUT_MAX];
    size_t mlen;
    jrn_record_sign_input(r, msg, &mlen);
    if (crypto_sign_verify_detached(r->sig, msg, mlen, k->pk) != 0) {
        set_fault(&res->fault, seq, KR_EBADSIG, "signature does not verify");
        return false;
    }
    return true;
}

/* check_stream: the record at `link` (a link of record seq, of stream r) is
 * an older record of the same tenant and stream at version `want`. */
static bool check_link_target(struct worker *w, uint64_t seq, const struct jrn_record *r,
                              uint64_t link, uint64_t want, const char *which)
{
    struct jrn_record t;
    kr_err err = link == 0 || link >= seq ? KR_ECORRUPT : jrn_read_in(w->v->j, w->txn, link, &t);
    if (err == KR_OK &&
        (t.tenant != r->tenant || t.version != want || t.stream_len != r->stream_len ||
         memcmp(t.stream, r->stream, r->stream_len) != 0))
        err = KR_ECORRUPT;
    if (err)
        set_fault(&w->res->fault, seq, KR_ECORRUPT,
                  "stream index link: %s seq %llu is not version %llu of this record's stream",
                  which, (unsigned long long)link, (unsigned long long)want);
    return err == KR_OK;
}

/* check_indexes's stream step (meta format 3): the record's link names the
 * records at versions v-1 and jrn_skew_jump(v) of its stream (none for v=1),
 * and its stream's head is at a version >= v, at this record if equal. The
 * totals then check every head and that the heads' versions add up to the
 * records (so no version occurs twice). The head is read in the worker's
 * snapshot, which a live writer may have moved past the pass's: heads only
 * move forward. */
static bool check_stream(struct worker *w, uint64_t seq, const struct jrn_record *r)
{
    struct chunk_result *res = w->res;
    struct journal *j = w->v->j;
    uint64_t prev, jump, hv, hs;
    if (jrn_link_get(j, w->txn, seq, &prev, &jump) != KR_OK) {
        set_fault(&res->fault, seq, KR_ECORRUPT, "stream index link of this record is missing");
        return false;
    }
    if (r->version == 1 && (prev || jump)) {
        set_fault(&res->fault, seq, KR_ECORRUPT,
                  "stream index link of a version-1 record names one");
        return false;
    }
    if (r->version > 1) {
        uint64_t jv = jrn_skew_jump(r->version);
        if (!check_link_target(w, seq, r, prev, r->version - 1, "prev") ||
            (jump != prev && !check_link_target(w, seq, r, jump, jv, "jump")))
            return false;
        if (jump == prev && jv != r->version - 1) {
            set_fault(&res->fault, seq, KR_ECORRUPT, "stream index link: jump is not version %llu",
                      (unsigned long long)jv);
            return false;
        }
    }
    if (jrn_stream_head(j, w->txn, r->tenant, r->stream, r->stream_len, &hv, &hs) != KR_OK ||
        hv < r->version || (hv == r->version && hs != seq)) {
        set_fault(&res->fault, seq, KR_ECORRUPT,
                  "stream index head is not at or after this record");
        return false;
    }
    return true;
}

/* check_indexes's stream step for the legacy index (meta format 1, 2). */
static bool check_stream_legacy(struct worker *w, uint64_t seq, const struct jrn_record *r)
{
    uint8_t key[JRN_STREAM_KEY_MAX];
    size_t plen = jrn_stream_prefix(key, r->tenant, r->stream, r->stream_len);
    kr_put_be64(key + plen, r->version);
    MDB_val ik = {plen + 8, key}, iv;
    if (!w->v->j->has_streams || mdb_get(w->txn, w->v->j->db_streams, &ik, &iv) != 0 ||
        iv.mv_size != 8 || kr_get_be64(iv.mv_data) != seq) {
        set_fault(&w->res->fault, seq, KR_ECORRUPT,
                  "stream index does not name this record at its version");
        return false;
    }
    return true;
}

/* check_record's index step: the stream index names r at its version, and
 * the tenant index lists it with its tseq (*index_tseq; 0 for a format-1
 * journal's empty entry). False, with the fault set, if not. */
static bool check_indexes(struct worker *w, uint64_t seq, const struct jrn_record *r,
                          uint64_t *index_tseq)
{
    struct chunk_result *res = w->res;
    if (!(w->v->j->legacy_index ? check_stream_legacy(w, seq, r) : check_stream(w, seq, r)))
        return false;
    uint8_t tk[16];
    kr_put_be64(tk, r->tenant);
    kr_put_be64(tk + 8, seq);
    MDB_val tkv = {16, tk}, tv;
    if (mdb_cursor_get(w->c_tenants, &tkv, &tv, MDB_SET_KEY) != 0) {
        set_fault(&res->fault, seq, KR_ECORRUPT, "tenant index does not list this record");
        return false;
    }
    /* An empty value is a format-1 journal's (or one being migrated). */
    bool empty_ok = w->v->meta_format == JRN_META_FORMAT_1 && r->format == JRN_FORMAT_1;
    if (tv.mv_size != 8 && !(tv.mv_size == 0 && empty_ok)) {
        set_fault(&res->fault, seq, KR_ECORRUPT, "tenant index holds no tseq for this record");
        return false;
    }
    *index_tseq = tv.mv_size == 8 ? kr_get_be64(tv.mv_data) : 0;
    if (tv.mv_size == 8 && (*index_tseq == 0 || (r->tseq && *index_tseq != r->tseq))) {
        set_fault(&res->fault, seq, KR_ECORRUPT,
                  "tenant index holds tseq %llu for this record of tseq %llu",
                  (unsigned long long)*index_tseq, (unsigned long long)r->tseq);
        return false;
    }
    return true;
}

static void check_record(struct worker *w, uint64_t seq, const MDB_val *val, struct jrn_record *r,
                         uint8_t prev_leaf[KR_HASH_LEN], uint64_t *prev_time, bool first,
                         struct mrk_frontier *fr)
{
    struct vctx *v = w->v;
    struct chunk_result *res = w->res;
    uint8_t h[KR_HASH_LEN];
    uint64_t index_tseq = 0;

    if (jrn_record_decode(val->mv_data, val->mv_size, r) != KR_OK) {
        set_fault(&res->fault, seq, KR_ECORRUPT, "record does not decode");
        return;
    }
    if (r->seq != seq) {
        set_fault(&res->fault, seq, KR_ECORRUPT, "record stored under seq %llu says seq %llu",
                  (unsigned long long)seq, (unsigned long long)r->seq);
        return;
    }
    if (first) {
        memcpy(res->first_prev, r->prev, KR_HASH_LEN);
        res->first_time = r->time_ns;
    } else {
        if (memcmp(r->prev, prev_leaf, KR_HASH_LEN) != 0) {
            set_fault(&res->fault, seq, KR_ECORRUPT,
                      "prev does not match the previous record's leaf hash");
            return;
        }
        if (r->time_ns < *prev_time) {
            set_fault(&res->fault, seq, KR_ECORRUPT, "time goes backwards");
            return;
        }
    }
    if (r->payload_stripped) {
        res->stripped++;
    } else {
        kr_sha256(h, r->payload, r->payload_len);
        if (memcmp(h, r->commitment, KR_HASH_LEN) != 0) {
            set_fault(&res->fault, seq, KR_ECORRUPT, "payload does not match its commitment");
            return;
        }
    }
    if (!v->o->fast && (!check_signature(w, seq, r) || !check_indexes(w, seq, r, &index_tseq)))
        return;
    if (is_system(r)) {
        res->system++;
        bool known = false;
        for (size_t i = 0; i < v->nkeys; i++)
            known |= v->keys[i].intro_seq == seq;
        if (!known) {
            set_fault(&res->fault, seq, KR_ECORRUPT,
                      "journal key record missing from the key history");
            return;
        }
    }
    jrn_record_leaf_hash(r, h);
    w->tree_seq = seq;
    mrk_frontier_append(fr, h, emit_check, w);
    if (res->fault.seq != UINT64_MAX)
        return;
    /* Format 2 follows format 1, never the other way round. */
    if (r->format == JRN_FORMAT_1) {
        if (res->first_f2) {
            set_fault(&res->fault, seq, KR_ECORRUPT, "format-1 record after a format-2 record");
            return;
        }
        if (!res->first_f1)
            res->first_f1 = seq;
    } else if (!res->first_f2) {
        res->first_f2 = seq;
    }
    tseq_count(res, seq, r->tenant, r->tseq ? r->tseq : index_tseq,
               r->tseq ? "tseq" : "tenant index tseq");
    if (res->fault.seq != UINT64_MAX)
        return;
    memcpy(prev_leaf, h, KR_HASH_LEN);
    *prev_time = r->time_ns;
}

/* The first record of chunk i of the pass (absolute chunk v->c0 + i): its
 * first seq, or in incremental mode the first after the state's. */
static uint64_t chunk_first(const struct vctx *v, uint64_t i)
{
    uint64_t first = (v->c0 + i) * CHUNK + 1;
    return first > v->start ? first : v->start + 1;
}

static void run_chunk(struct worker *w, uint64_t i)
{
    struct vctx *v = w->v;
    struct chunk_result *res = &v->chunks[i];
    uint64_t base = (v->c0 + i) * CHUNK;
    uint64_t first = chunk_first(v, i), last = base + CHUNK;
    if (last > v->n)
        last = v->n;
    w->res = res;
    w->base = base;
    w->tree_started = false;
    res->fault.seq = UINT64_MAX;

    struct mrk_frontier fr;
    mrk_frontier_init(&fr);
    if (first != base + 1) {
        /* Incremental: the chunk's records up to the state's size are the
         * state frontier's subtrees below chunk level. */
        fr.size = v->start - base;
        for (unsigned l = 0; l < CHUNK_LOG2; l++)
            if ((fr.size >> l) & 1)
                memcpy(fr.node[l], v->since->frontier.node[l], KR_HASH_LEN);
    }
    uint8_t prev_leaf[KR_HASH_LEN] = {0};
    uint64_t prev_time = 0;
    uint8_t kb[8];
    kr_put_be64(kb, first);
    MDB_val k = {8, kb}, val;
    int rc = mdb_cursor_get(w->c_events, &k, &val, MDB_SET_RANGE);
    for (uint64_t seq = first; seq <= last; seq++) {
        if (seq > atomic_load_explicit(&v->first_bad, memory_order_relaxed))
            return; /* a lower fault is already known */
        if (rc != MDB_SUCCESS || k.mv_size != 8 || kr_get_be64(k.mv_data) != seq) {
            set_fault(&res->fault, seq, KR_ECORRUPT, "record is missing");
            break;
        }
        struct jrn_record r;
        check_record(w, seq, &val, &r, prev_leaf, &prev_time, seq == first, &fr);
        if (res->fault.seq != UINT64_MAX)
            break;
        rc = mdb_cursor_get(w->c_events, &k, &val, MDB_NEXT);
    }
    if (res->fault.seq != UINT64_MAX) {
        uint64_t cur = atomic_load(&v->first_bad);
        while (res->fault.seq < cur &&
               !atomic_compare_exchange_weak(&v->first_bad, &cur, res->fault.seq))
            ;
        return;
    }
    memcpy(res->last_leaf, prev_leaf, KR_HASH_LEN);
    res->last_time = prev_time;
    if (fr.size == CHUNK)
        mrk_frontier_root(&fr, res->root);
    else
        v->last_partial = fr;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct vctx *v = w->v;
    bool main_thread = arg == NULL;
    (void)main_thread;
    for (;;) {
        uint64_t c = atomic_fetch_add(&v->next_chunk, 1);
        if (c >= v->nchunks)
            break;
        run_chunk(w, c);
        atomic_fetch_add(&v->done_chunks, 1);
    }
    return NULL;
}

static kr_err worker_open(struct worker *w, struct vctx *v)
{
    memset(w, 0, sizeof *w);
    w->v = v;
    int rc = mdb_txn_begin(v->j->env, NULL, MDB_RDONLY, &w->txn);
    if (!rc)
        rc = mdb_cursor_open(w->txn, v->j->db_events, &w->c_events);
    if (!rc)
        rc = mdb_cursor_open(w->txn, v->j->db_tree, &w->c_tree);
    if (!rc)
        rc = mdb_cursor_open(w->txn, v->j->db_tenants, &w->c_tenants);
    return kr_err_from_mdb(rc);
}

static void worker_close(struct worker *w)
{
    if (w->c_events)
        mdb_cursor_close(w->c_events);
    if (w->c_tree)
        mdb_cursor_close(w->c_tree);
    if (w->c_tenants)
        mdb_cursor_close(w->c_tenants);
    if (w->txn)
        mdb_txn_abort(w->txn);
}

/* ---- Upper tree and checkpoints ---- */

struct upper_ctx {
    MDB_txn *txn;
    struct journal *j;
    struct fault *f;
};

static void emit_upper(void *ctx, unsigned level, uint64_t index, const uint8_t hash[KR_HASH_LEN])
{
    struct upper_ctx *u = ctx;
    struct jrn_tree_ctx tc = {u->j, u->txn};
    uint8_t stored[KR_HASH_LEN];
    /* Named by the last record under the node, the one whose hashing completes
     * it, as emit_check names the nodes inside chunks. */
    if (jrn_tree_node(&tc, level, index, stored) != KR_OK || memcmp(stored, hash, KR_HASH_LEN) != 0)
        set_fault(u->f, (index + 1) << level, KR_ECORRUPT,
                  "stored Merkle node (level %u, index %llu) differs", level,
                  (unsigned long long)index);
}

/* `at` names the fault when the note cannot be opened, so its size is unknown:
 * the size it is stored under, or for the newest the journal's. */
static kr_err check_note(struct vctx *v, MDB_txn *txn, const char *note, size_t len, uint64_t at,
                         uint64_t *size, struct fault *f, const char *where)
{
    struct kr_checkpoint cp;
    uint32_t key_id;
    if (v->nnote_keys != v->nkeys) { /* the key history is complete by now */
        for (size_t i = 0; i < v->nkeys; i++) {
            snprintf(v->note_keys[i].name, sizeof v->note_keys[i].name, "%s", v->j->origin);
            memcpy(v->note_keys[i].pk, v->keys[i].pk, KR_PUBKEY_LEN);
            v->note_keys[i].key_id = v->keys[i].key_id;
        }
        v->nnote_keys = v->nkeys;
    }
    kr_err err = kr_checkpoint_open(note, len, v->note_keys, v->nkeys, &cp, &key_id);
    if (err) {
        set_fault(f, at, err, "%s: %s", where, kr_strerror(err));
        return err;
    }
    *size = cp.size;
    const struct vkey *k = key_for(v, key_id);
    if (!k || cp.size < k->cp_from || cp.size >= k->cp_to) {
        set_fault(f, cp.size, KR_EBADSIG, "%s: signed by key %u, which may not sign size %llu",
                  where, key_id, (unsigned long long)cp.size);
        return KR_EBADSIG;
    }
    if (strcmp(cp.origin, v->j->origin) != 0) {
        set_fault(f, cp.size, KR_ECORRUPT, "%s: origin is not this journal's", where);
        return KR_ECORRUPT;
    }
    if (cp.size == 0 || cp.size > v->n) {
        set_fault(f, cp.size, KR_ECORRUPT, "%s: size %llu beyond the journal's %llu records", where,
                  (unsigned long long)cp.size, (unsigned long long)v->n);
        return KR_ECORRUPT;
    }
    uint8_t root[KR_HASH_LEN];
    struct jrn_tree_ctx tc = {v->j, txn};
    if ((err = mrk_root(jrn_tree_node, &tc, cp.size, root)) ||
        memcmp(root, cp.root, KR_HASH_LEN) != 0) {
        set_fault(f, cp.size, KR_ECORRUPT, "%s: root at size %llu does not match the records",
                  where, (unsigned long long)cp.size);
        return KR_ECORRUPT;
    }
    return KR_OK;
}

static void check_checkpoints(struct vctx *v, MDB_txn *txn, struct fault *f,
                              struct jrn_verify_report *out)
{
    MDB_val k = {strlen(JRN_META_CHECKPOINT), JRN_META_CHECKPOINT}, val;
    uint64_t size = 0;
    if (mdb_get(txn, v->j->db_meta, &k, &val) != 0) {
        set_fault(f, v->n, KR_ECORRUPT, "no newest checkpoint");
        return;
    }
    if (check_note(v, txn, val.mv_data, val.mv_size, v->n, &size, f, "newest checkpoint"))
        return;
    out->checkpoints++;
    if (size != v->n) {
        set_fault(f, size, KR_ECORRUPT, "newest checkpoint covers %llu of %llu records",
                  (unsigned long long)size, (unsigned long long)v->n);
        return;
    }
    MDB_cursor *c;
    if (mdb_cursor_open(txn, v->j->db_checkpoints, &c) != 0)
        return;
    /* Incremental: those up to the state's size were checked before. */
    uint8_t from[8];
    kr_put_be64(from, v->start + 1);
    k = (MDB_val){8, from};
    int rc = mdb_cursor_get(c, &k, &val, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS) {
        char where[64];
        uint64_t key_size = k.mv_size == 8 ? kr_get_be64(k.mv_data) : 0;
        snprintf(where, sizeof where, "checkpoint %llu", (unsigned long long)key_size);
        if (check_note(v, txn, val.mv_data, val.mv_size, key_size, &size, f, where))
            break;
        if (size != key_size) {
            set_fault(f, key_size, KR_ECORRUPT, "%s is stored under the wrong size", where);
            break;
        }
        out->checkpoints++;
        rc = mdb_cursor_get(c, &k, &val, MDB_NEXT);
    }
    mdb_cursor_close(c);

    /* DIR/checkpoint: a journal shorter than its last published checkpoint
     * has been rolled back (or restored from an old copy). */
    const struct cp_file *cf = &v->cp_file;
    if (cf->err == KR_ENOTFOUND) {
        /* init writes it and every writer keeps it: without it a rollback to
         * an old copy would go unnoticed. */
        set_fault(f, v->n, KR_ECORRUPT, "checkpoint file DIR/checkpoint is missing");
        return;
    }
    if (cf->err) {
        set_fault(f, v->n, KR_ECORRUPT, "checkpoint file is unreadable or too large");
        return;
    }
    if (check_note(v, txn, cf->note, cf->len, v->n, &size, f, "checkpoint file") == KR_OK)
        out->checkpoints++;
}

/* Reads DIR/checkpoint. Called before the snapshot is taken: the writer
 * updates the file after it commits, so a file read first never names more
 * records than the snapshot holds, even while the writer runs. */
static void read_cp_file(const char *dir, struct cp_file *cf)
{
    char path[KR_PATH_MAX];
    if ((cf->err = kr_path_join(path, sizeof path, dir, "checkpoint")))
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cf->err = errno == ENOENT ? KR_ENOTFOUND : KR_EIO;
        return;
    }
    ssize_t len = read(fd, cf->note, sizeof cf->note);
    close(fd);
    if (len < 0 || (size_t)len > KR_NOTE_MAX) {
        cf->err = KR_ECORRUPT;
        return;
    }
    cf->len = (size_t)len;
    cf->err = KR_OK;
}

kr_err jrn_verify(const char *dir, const struct jrn_verify_options *opts,
                  struct jrn_verify_report *out)
{
    struct journal *j;
    memset(out, 0, sizeof *out);
    kr_err err = jrn_open_raw(dir, &j);
    if (err)
        return err;
    err = jrn_verify_journal(j, opts, out);
    jrn_close(j);
    return err;
}

/* jrn_verify_journal, step 1: how many records to check, from the snapshot
 * txn: v->n, from the last key but never beyond the entries there are (a
 * forged huge seq must not size the pass; with E entries a gap, if any, is
 * at or below E + 1, so checking up to there finds it), into out->records;
 * and the meta format. A finding goes into f; *entries is the events
 * database's entry count. */
static kr_err verify_size(struct vctx *v, MDB_txn *txn, struct fault *f, uint64_t *entries,
                          struct jrn_verify_report *out)
{
    MDB_cursor *c;
    MDB_val k, val;
    kr_err err;
    if ((err = kr_err_from_mdb(mdb_cursor_open(txn, v->j->db_events, &c))))
        return err;
    int rc = mdb_cursor_get(c, &k, &val, MDB_LAST);
    mdb_cursor_close(c);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc); /* k is not set */
    if (rc == MDB_NOTFOUND || k.mv_size != 8) {
        set_fault(f, 1, KR_ECORRUPT, "journal has no records");
        return KR_OK;
    }
    v->n = kr_get_be64(k.mv_data);
    MDB_stat est;
    if ((err = kr_err_from_mdb(mdb_stat(txn, v->j->db_events, &est))))
        return err;
    *entries = est.ms_entries;
    if (v->n > est.ms_entries)
        v->n = est.ms_entries + 1;
    if (v->n >= JRN_SIZE_MAX) {
        set_fault(f, 1, KR_ECORRUPT, "journal claims %llu records", (unsigned long long)v->n);
        return KR_OK;
    }
    out->records = v->n;
    MDB_val fk = {strlen(JRN_META_FORMAT), JRN_META_FORMAT}, fv;
    if (mdb_get(txn, v->j->db_meta, &fk, &fv) == 0 && fv.mv_size == 4)
        v->meta_format = kr_get_be32(fv.mv_data);
    if (v->meta_format < JRN_META_FORMAT_1 || v->meta_format > JRN_META_FORMAT_CURRENT)
        set_fault(f, 1, KR_EVERSION, "meta format is not 1, 2 or 3");
    else if (v->meta_format < JRN_META_FORMAT_CURRENT ? !v->j->has_streams : !v->j->has_heads)
        set_fault(f, 1, KR_ECORRUPT, "the stream index of meta format %u is missing",
                  (unsigned)v->meta_format);
    return KR_OK;
}

/* Step 2: every chunk checked (v->chunks), on v->o->threads threads (0: one
 * per CPU; never more than there are chunks), the calling thread one of
 * them and the one that reports progress. */
static kr_err verify_chunks(struct vctx *v)
{
    const struct jrn_verify_options *o = v->o;
    v->c0 = v->start / CHUNK;
    v->nchunks = v->n > v->start ? (v->n + CHUNK - 1) / CHUNK - v->c0 : 0;
    if (v->nchunks == 0)
        return KR_OK; /* incremental, nothing new */
    v->chunks = calloc(v->nchunks, sizeof *v->chunks);
    unsigned nthreads = o->threads;
    if (nthreads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = cpus > 0 ? (unsigned)cpus : 1;
    }
    if (nthreads > VERIFY_THREADS_MAX)
        nthreads = VERIFY_THREADS_MAX;
    if ((uint64_t)nthreads > v->nchunks)
        nthreads = (unsigned)v->nchunks;
    struct worker *ws = calloc(nthreads, sizeof *ws);
    pthread_t *tids = calloc(nthreads, sizeof *tids);
    kr_err err = KR_OK;
    if (!v->chunks || !ws || !tids) {
        err = KR_ENOMEM;
        goto out;
    }
    unsigned started = 0;
    for (unsigned t = 0; t < nthreads; t++)
        if ((err = worker_open(&ws[t], v)))
            break;
    for (unsigned t = 1; err == KR_OK && t < nthreads; t++, started++)
        if (pthread_create(&tids[t], NULL, worker_main, &ws[t]) != 0)
            break;
    if (err == KR_OK) {
        /* The calling thread works too, and reports progress between chunks. */
        for (;;) {
            uint64_t ch = atomic_fetch_add(&v->next_chunk, 1);
            if (ch >= v->nchunks)
                break;
            run_chunk(&ws[0], ch);
            uint64_t done = atomic_fetch_add(&v->done_chunks, 1) + 1;
            /* The last chunk may end on another thread: the total is
             * reported once, after the join. */
            if (o->progress && done < v->nchunks && done * CHUNK < v->n - v->start)
                o->progress(o->progress_ctx, done * CHUNK, v->n - v->start);
        }
    }
    for (unsigned t = 1; t <= started; t++)
        pthread_join(tids[t], NULL);
    for (unsigned t = 0; t < nthreads; t++)
        worker_close(&ws[t]);
    if (err == KR_OK && o->progress)
        o->progress(o->progress_ctx, v->n - v->start, v->n - v->start);
out:
    free(ws);
    free(tids);
    return err;
}

/* Step 3, chunk ch of the merge: each tenant's record numbers continue its
 * count from the chunks before (counts). A wrong one may sit below the fault
 * the chunk found; at the same seq, the chunk's own finding (about the
 * record's bytes) is named. The finding goes into tf. */
static kr_err merge_tseqs(const struct chunk_result *r, struct tseq_table *counts, bool *seen_f2,
                          struct fault *tf)
{
    if (*seen_f2 && r->first_f1)
        set_fault(tf, r->first_f1, KR_ECORRUPT, "format-1 record after a format-2 record");
    *seen_f2 |= r->first_f2 != 0;
    for (size_t i = 0; i < r->tseqs.cap; i++) {
        if (!r->tseqs.used[i])
            continue;
        const struct tseq_run *run = &r->tseqs.runs[i];
        struct tseq_run *all = tseq_get(counts, run->tenant);
        if (!all)
            return KR_ENOMEM;
        if (run->base_seq && run->base != all->n)
            set_fault(tf, run->base_seq, KR_ECORRUPT,
                      "tseq of tenant %llu is %llu, its records make it %llu",
                      (unsigned long long)run->tenant, (unsigned long long)run->base + 1,
                      (unsigned long long)all->n + 1);
        all->n += run->n;
    }
    return KR_OK;
}

/* Step 3: the chunks' findings in seq order: the links between chunks, each
 * tenant's record numbers (counts), and the tree above chunk level (top).
 * Stops at the first fault, into f; *system counts the system records. */
static kr_err merge_chunks(struct vctx *v, MDB_txn *txn, struct fault *f, struct tseq_table *counts,
                           struct mrk_frontier *top, struct jrn_verify_report *out,
                           uint64_t *system)
{
    struct upper_ctx u = {txn, v->j, f};
    kr_err err;
    for (uint64_t ch = 0; ch < v->nchunks; ch++) {
        struct chunk_result *r = &v->chunks[ch];
        uint64_t first = chunk_first(v, ch);
        /* Nothing above a known fault matters, and workers skipped it. The
         * key history may hold one from the start. */
        if (first > f->seq)
            break;
        struct fault tf = {.seq = UINT64_MAX};
        if ((err = merge_tseqs(r, counts, &v->seen_f2, &tf)))
            return err;
        /* The link into the chunk is at its first seq, below any later fault
         * inside it (a broken link usually causes one at first + 1). Unless
         * the fault is at the first record: then first_prev may be unset. */
        bool link_bad = false;
        if (r->fault.seq != first) {
            static const uint8_t zero[KR_HASH_LEN];
            const uint8_t *want = ch > 0     ? v->chunks[ch - 1].last_leaf
                                  : v->since ? v->since->last_leaf
                                             : zero;
            uint64_t want_time = ch > 0     ? v->chunks[ch - 1].last_time
                                 : v->since ? v->since->last_time
                                            : 0;
            link_bad = true;
            if (memcmp(r->first_prev, want, KR_HASH_LEN) != 0)
                set_fault(f, first, KR_ECORRUPT,
                          "prev does not match the previous record's leaf hash");
            else if (r->first_time < want_time)
                set_fault(f, first, KR_ECORRUPT, "time goes backwards");
            else
                link_bad = false;
        }
        if (!link_bad && r->fault.seq != UINT64_MAX)
            set_fault(f, r->fault.seq, r->fault.err, "%s", r->fault.what);
        if (tf.seq != UINT64_MAX)
            set_fault(f, tf.seq, tf.err, "%s", tf.what);
        if (link_bad || r->fault.seq != UINT64_MAX || tf.seq != UINT64_MAX)
            break;
        out->stripped += r->stripped;
        *system += r->system;
        if ((v->c0 + ch) * CHUNK + CHUNK <= v->n) {
            if (mrk_frontier_append_subtree(top, CHUNK_LOG2, r->root, emit_upper, &u) != KR_OK)
                set_fault(f, first, KR_ECORRUPT, "internal: chunk misaligned");
        } else {
            for (int l = CHUNK_LOG2 - 1; l >= 0; l--)
                if (((v->last_partial.size >> l) & 1) &&
                    mrk_frontier_append_subtree(top, (unsigned)l, v->last_partial.node[l], NULL,
                                                NULL) != KR_OK)
                    set_fault(f, first, KR_ECORRUPT, "internal: chunk misaligned");
        }
    }
    return KR_OK;
}

static void check_stream_total_legacy(struct vctx *v, MDB_txn *txn, struct fault *f)
{
    MDB_stat ss;
    if (mdb_stat(txn, v->j->db_streams, &ss) == 0 && ss.ms_entries != v->n)
        set_fault(f, v->n, KR_ECORRUPT, "stream index holds %llu entries for %llu records",
                  (unsigned long long)ss.ms_entries, (unsigned long long)v->n);
}

/* check_stream_totals: the head (key k, value val) names a record within the
 * journal of its stream at its version. */
static bool head_ok(struct vctx *v, MDB_txn *txn, const MDB_val *k, const MDB_val *val)
{
    const uint8_t *kp = k->mv_data;
    struct jrn_record r;
    if (k->mv_size < 10 || k->mv_size != 9u + kp[8] || val->mv_size != JRN_HEAD_LEN)
        return false;
    uint64_t seq = kr_get_be64((const uint8_t *)val->mv_data + 8);
    return seq != 0 && seq <= v->n && jrn_read_in(v->j, txn, seq, &r) == KR_OK &&
           r.tenant == kr_get_be64(kp) && r.version == kr_get_be64(val->mv_data) &&
           r.stream_len == kp[8] && memcmp(r.stream, kp + 9, r.stream_len) == 0;
}

/* The format-3 stream index's totals: a link per record; every head names a
 * record of its stream at its version (not in an incremental pass: that
 * would cost every stream, not the new records); and the heads' versions add
 * up to the records. With every record's prev link checked and its head at
 * or past it, each stream holds at least its head's version of records, so
 * the sum means each version occurs once. */
static void check_stream_totals(struct vctx *v, MDB_txn *txn, struct fault *f)
{
    MDB_stat ls;
    MDB_cursor *c;
    MDB_val k, val;
    uint64_t sum = 0;
    if (mdb_stat(txn, v->j->db_links, &ls) != 0 || mdb_cursor_open(txn, v->j->db_heads, &c) != 0)
        return;
    if (ls.ms_entries != v->n) {
        set_fault(f, v->n, KR_ECORRUPT, "stream index links hold %llu entries for %llu records",
                  (unsigned long long)ls.ms_entries, (unsigned long long)v->n);
        mdb_cursor_close(c);
        return;
    }
    /* Capped at n + 1: a forged version cannot overflow the sum. */
    for (int rc = mdb_cursor_get(c, &k, &val, MDB_FIRST); rc == 0 && sum <= v->n;
         rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
        if (!v->since && !head_ok(v, txn, &k, &val)) {
            set_fault(f, v->n, KR_ECORRUPT, "stream index head names no record of its stream");
            break;
        }
        uint64_t hv = val.mv_size == JRN_HEAD_LEN ? kr_get_be64(val.mv_data) : UINT64_MAX;
        sum = hv > v->n - sum ? v->n + 1 : sum + hv;
    }
    if (f->seq == UINT64_MAX && sum != v->n)
        set_fault(f, v->n, KR_ECORRUPT,
                  "stream index heads' versions add up to %s%llu for %llu records",
                  sum > v->n ? "more than " : "", (unsigned long long)(sum > v->n ? v->n : sum),
                  (unsigned long long)v->n);
    mdb_cursor_close(c);
}

/* Step 4, while nothing is found yet: the counts that must agree (the key
 * history's and the system records, the events database's entries, the two
 * indexes' entries, which a fast pass skips), then the root and the
 * checkpoints. */
static void verify_totals(struct vctx *v, MDB_txn *txn, struct fault *f, uint64_t system,
                          uint64_t entries, struct mrk_frontier *top, struct jrn_verify_report *out)
{
    if (f->seq == UINT64_MAX && system != v->nkeys - v->since_nkeys)
        set_fault(f, 0, KR_ECORRUPT, "key history lists %zu records, the journal has %llu",
                  v->nkeys - v->since_nkeys, (unsigned long long)system);
    if (f->seq == UINT64_MAX && v->n != entries)
        set_fault(f, v->n, KR_ECORRUPT, "events database holds %llu entries for %llu records",
                  (unsigned long long)entries, (unsigned long long)v->n);
    if (f->seq == UINT64_MAX && !v->o->fast) {
        /* Each record was found in both indexes; equal counts mean nothing
         * else is there (an extra entry could point a reader elsewhere). */
        MDB_stat ts;
        if (v->j->legacy_index)
            check_stream_total_legacy(v, txn, f);
        else
            check_stream_totals(v, txn, f);
        if (f->seq == UINT64_MAX && mdb_stat(txn, v->j->db_tenants, &ts) == 0 &&
            ts.ms_entries != v->n)
            set_fault(f, v->n, KR_ECORRUPT, "tenant index holds %llu entries for %llu records",
                      (unsigned long long)ts.ms_entries, (unsigned long long)v->n);
    }
    if (f->seq == UINT64_MAX) {
        mrk_frontier_root(top, out->root);
        /* Incremental: the stored tree's nodes left from the state's
         * frontier were not rehashed; the root must still be the one the
         * state and the new records make. */
        uint8_t stored[KR_HASH_LEN];
        struct jrn_tree_ctx tc = {v->j, txn};
        if (v->since && (mrk_root(jrn_tree_node, &tc, v->n, stored) != KR_OK ||
                         memcmp(stored, out->root, KR_HASH_LEN) != 0))
            set_fault(f, v->n, KR_ECORRUPT, "stored Merkle tree's root at %llu differs",
                      (unsigned long long)v->n);
        else
            check_checkpoints(v, txn, f, out);
    }
}

/* ---- Incremental verification: binding a state, and making one ---- */

static void fill_note_keys(struct vctx *v)
{
    for (size_t i = 0; i < v->nkeys; i++) {
        snprintf(v->note_keys[i].name, sizeof v->note_keys[i].name, "%s", v->j->origin);
        memcpy(v->note_keys[i].pk, v->keys[i].pk, KR_PUBKEY_LEN);
        v->note_keys[i].key_id = v->keys[i].key_id;
    }
    v->nnote_keys = v->nkeys;
}

static kr_err refuse(struct jrn_verify_report *out, kr_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kr_err refuse(struct jrn_verify_report *out, kr_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    vsnprintf(out->what, sizeof out->what, fmt, ap);
    va_end(ap);
    return err;
}

/* Binds v->since to this journal and the trust anchor (see verify.h) and
 * takes its key history into v. An error refuses the state, out->what says
 * why. */
static kr_err since_bind(struct vctx *v, struct jrn_verify_report *out)
{
    const struct jrn_verify_state *s = v->since;
    if (sodium_memcmp(s->journal_id, v->j->journal_id, sizeof s->journal_id) != 0 ||
        strcmp(s->origin, v->j->origin) != 0)
        return refuse(out, KR_EINVAL, "saved state is another journal's (%s)", s->origin);
    struct fault f = {.seq = UINT64_MAX};
    for (size_t i = 0; i < s->nkeys; i++) {
        struct jrn_record r;
        if (jrn_record_decode(s->keyrec[i], s->keyrec_len[i], &r) != KR_OK || r.seq == 0 ||
            r.seq > s->size)
            return refuse(out, KR_ECORRUPT, "saved state: key record %zu is malformed", i + 1);
        const uint8_t *signer = i == 0 ? v->o->root_key : v->keys[i - 1].pk;
        uint8_t msg[JRN_SIGN_INPUT_MAX];
        size_t mlen;
        jrn_record_sign_input(&r, msg, &mlen);
        if ((i == 0 && r.key_id != 1) || crypto_sign_verify_detached(r.sig, msg, mlen, signer) != 0)
            return refuse(out, KR_EBADSIG,
                          "saved state: key record %zu is not signed by the key before it", i + 1);
        if (!add_key(v, &r, r.seq, i + 1, &f))
            return refuse(out, f.err ? f.err : KR_ECORRUPT, "saved state: %s", f.what);
    }
    v->since_nkeys = v->nkeys;
    fill_note_keys(v);
    struct kr_checkpoint cp;
    uint32_t key_id;
    kr_err err = kr_checkpoint_open(s->note, s->note_len, v->note_keys, v->nkeys, &cp, &key_id);
    if (err)
        return refuse(out, KR_EBADSIG, "saved state: checkpoint: %s", kr_strerror(err));
    const struct vkey *k = key_for(v, key_id);
    if (!k || cp.size < k->cp_from || cp.size >= k->cp_to || strcmp(cp.origin, v->j->origin) != 0 ||
        cp.size != s->size || memcmp(cp.root, s->root, KR_HASH_LEN) != 0)
        return refuse(out, KR_EBADSIG,
                      "saved state: its checkpoint does not sign its size and root with a key "
                      "valid there");
    return KR_OK;
}

/* The journal still holds what the state verified: at least its records
 * (else rolled back or truncated: the first missing seq), and a tree whose
 * first size leaves have the state's root (the consistency proof). */
static void since_prefix(struct vctx *v, MDB_txn *txn, struct fault *f)
{
    const struct jrn_verify_state *s = v->since;
    if (v->n < s->size) {
        set_fault(f, v->n + 1, KR_ECORRUPT,
                  "journal has %llu records, fewer than the %llu verified before: rolled back "
                  "or truncated",
                  (unsigned long long)v->n, (unsigned long long)s->size);
        return;
    }
    struct jrn_tree_ctx tc = {v->j, txn};
    uint8_t root2[KR_HASH_LEN];
    uint8_t proof[KR_PROOF_MAX][KR_HASH_LEN];
    size_t np = 0;
    if (mrk_root(jrn_tree_node, &tc, v->n, root2) != KR_OK ||
        mrk_consistency_proof(jrn_tree_node, &tc, s->size, v->n, proof, KR_PROOF_MAX, &np) !=
            KR_OK ||
        mrk_verify_consistency(s->size, v->n, s->root, root2, proof, np) != KR_OK)
        set_fault(f, s->size, KR_ECORRUPT,
                  "consistency proof from the saved state's size %llu fails: the history "
                  "verified before was rewritten",
                  (unsigned long long)s->size);
}

/* Starts the pass where the state ends: records, links, counts, the tree
 * above chunk level (top). */
static kr_err since_seed(struct vctx *v, struct tseq_table *counts, struct mrk_frontier *top)
{
    const struct jrn_verify_state *s = v->since;
    v->start = s->size;
    v->seen_f2 = s->seen_f2;
    for (uint64_t i = 0; i < s->ntenants; i++) {
        struct tseq_run *run = tseq_get(counts, s->tenants[2 * i]);
        if (!run)
            return KR_ENOMEM;
        run->n = s->tenants[2 * i + 1];
    }
    top->size = s->size & ~(CHUNK - 1);
    for (unsigned l = CHUNK_LOG2; l < 64; l++)
        if ((top->size >> l) & 1)
            memcpy(top->node[l], s->frontier.node[l], KR_HASH_LEN);
    return KR_OK;
}

void jrn_verify_state_free(struct jrn_verify_state *s)
{
    if (!s)
        return;
    free(s->last_rec);
    for (size_t i = 0; i < s->nkeys; i++)
        free(s->keyrec[i]);
    free(s->tenants);
    free(s);
}

uint64_t jrn_verify_state_size(const struct jrn_verify_state *s)
{
    return s->size;
}

/* A copy of the record at seq, from txn. */
static kr_err copy_record(MDB_txn *txn, struct journal *j, uint64_t seq, uint8_t **out, size_t *len)
{
    uint8_t kb[8];
    kr_put_be64(kb, seq);
    MDB_val k = {8, kb}, val;
    int rc = mdb_get(txn, j->db_events, &k, &val);
    if (rc)
        return rc == MDB_NOTFOUND ? KR_ECORRUPT : kr_err_from_mdb(rc);
    if (val.mv_size > KR_RECORD_MAX)
        return KR_ECORRUPT;
    if (!(*out = malloc(val.mv_size ? val.mv_size : 1)))
        return KR_ENOMEM;
    memcpy(*out, val.mv_data, val.mv_size);
    *len = val.mv_size;
    return KR_OK;
}

static int cmp_tenant(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The state after a clean pass over v->n records: the frontier is top. */
static kr_err state_build(struct vctx *v, MDB_txn *txn, const struct mrk_frontier *top,
                          const struct tseq_table *counts, struct jrn_verify_state **out)
{
    struct jrn_verify_state *s = calloc(1, sizeof *s);
    kr_err err = KR_OK;
    if (!s)
        return KR_ENOMEM;
    memcpy(s->journal_id, v->j->journal_id, sizeof s->journal_id);
    snprintf(s->origin, sizeof s->origin, "%s", v->j->origin);
    s->size = v->n;
    s->frontier = *top;
    mrk_frontier_root(top, s->root);
    s->seen_f2 = v->seen_f2;
    MDB_val k = {strlen(JRN_META_CHECKPOINT), JRN_META_CHECKPOINT}, val;
    struct jrn_tree_ctx tc = {v->j, txn};
    struct jrn_record r;
    if (mdb_get(txn, v->j->db_meta, &k, &val) != 0 || val.mv_size > KR_NOTE_MAX) {
        err = KR_ECORRUPT;
        goto fail;
    }
    memcpy(s->note, val.mv_data, val.mv_size);
    s->note_len = val.mv_size;
    if ((err = copy_record(txn, v->j, v->n, &s->last_rec, &s->last_len)) ||
        (err = mrk_inclusion_proof(jrn_tree_node, &tc, v->n - 1, v->n, s->path, 64, &s->path_n)) ||
        (err = jrn_record_decode(s->last_rec, s->last_len, &r)))
        goto fail;
    jrn_record_leaf_hash(&r, s->last_leaf);
    s->last_time = r.time_ns;
    for (size_t i = 0; i < v->nkeys; i++, s->nkeys++)
        if ((err = copy_record(txn, v->j, v->keys[i].intro_seq, &s->keyrec[i], &s->keyrec_len[i])))
            goto fail;
    if (counts->count > KR_VSTATE_TENANTS_MAX) {
        err = KR_ETOOLARGE;
        goto fail;
    }
    s->tenants = calloc(counts->count ? 2 * counts->count : 1, sizeof *s->tenants);
    if (!s->tenants) {
        err = KR_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < counts->cap; i++) {
        if (!counts->used[i] || counts->runs[i].n == 0)
            continue;
        s->tenants[2 * s->ntenants] = counts->runs[i].tenant;
        s->tenants[2 * s->ntenants + 1] = counts->runs[i].n;
        s->ntenants++;
    }
    qsort(s->tenants, s->ntenants, 2 * sizeof *s->tenants, cmp_tenant);
    *out = s;
    return KR_OK;
fail:
    jrn_verify_state_free(s);
    return err;
}

/* ---- The state file ----
 *
 * All integers big-endian: "KRVS", u32 version 1; journal id (16); u16
 * origin length, origin; u64 size; root (32); the frontier, one hash per set
 * bit of size, from bit 0 up; u16 note length, note; u32 record length, the
 * last record; u8 path length, path hashes; u8 seen format 2 (0 or 1); u32
 * key records, each u32 length and record; u64 tenants, each u64 tenant (in
 * increasing order) and u64 records (>= 1); SHA-256 of all the above. */

#define VSTATE_MAGIC   "KRVS"
#define VSTATE_VERSION 1u

struct sbuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
};

static void sb_put(struct sbuf *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void sb_u(struct sbuf *b, uint64_t x, unsigned bytes)
{
    uint8_t t[8];
    for (unsigned i = 0; i < bytes; i++)
        t[i] = (uint8_t)(x >> (8 * (bytes - 1 - i)));
    sb_put(b, t, bytes);
}

kr_err jrn_verify_state_save(const struct jrn_verify_state *s, const char *path)
{
    struct sbuf b = {0};
    sb_put(&b, VSTATE_MAGIC, 4);
    sb_u(&b, VSTATE_VERSION, 4);
    sb_put(&b, s->journal_id, 16);
    sb_u(&b, strlen(s->origin), 2);
    sb_put(&b, s->origin, strlen(s->origin));
    sb_u(&b, s->size, 8);
    sb_put(&b, s->root, KR_HASH_LEN);
    for (unsigned l = 0; l < 64; l++)
        if ((s->size >> l) & 1)
            sb_put(&b, s->frontier.node[l], KR_HASH_LEN);
    sb_u(&b, s->note_len, 2);
    sb_put(&b, s->note, s->note_len);
    sb_u(&b, s->last_len, 4);
    sb_put(&b, s->last_rec, s->last_len);
    sb_u(&b, s->path_n, 1);
    sb_put(&b, s->path, s->path_n * KR_HASH_LEN);
    sb_u(&b, s->seen_f2, 1);
    sb_u(&b, s->nkeys, 4);
    for (size_t i = 0; i < s->nkeys; i++) {
        sb_u(&b, s->keyrec_len[i], 4);
        sb_put(&b, s->keyrec[i], s->keyrec_len[i]);
    }
    sb_u(&b, s->ntenants, 8);
    for (uint64_t i = 0; i < 2 * s->ntenants; i++)
        sb_u(&b, s->tenants[i], 8);
    uint8_t sum[KR_HASH_LEN];
    if (!b.oom)
        kr_sha256(sum, b.p, b.len);
    sb_put(&b, sum, KR_HASH_LEN);
    kr_err err = b.oom ? KR_ENOMEM : b.len > KR_VSTATE_MAX ? KR_ETOOLARGE : KR_OK;
    if (!err)
        err = kr_file_replace(path, b.p, b.len, 0644);
    free(b.p);
    return err;
}

struct sread {
    const uint8_t *p;
    size_t len, off;
    bool bad;
};

static const uint8_t *sr_take(struct sread *r, size_t n)
{
    if (r->bad || n > r->len - r->off) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static uint64_t sr_u(struct sread *r, unsigned bytes)
{
    const uint8_t *p = sr_take(r, bytes);
    uint64_t x = 0;
    for (unsigned i = 0; p && i < bytes; i++)
        x = x << 8 | p[i];
    return x;
}

/* A copy of the next n bytes (n <= max), or NULL with r->bad set. */
static uint8_t *sr_dup(struct sread *r, size_t n, size_t max)
{
    if (n > max)
        r->bad = true;
    const uint8_t *p = sr_take(r, n);
    uint8_t *d = p ? malloc(n ? n : 1) : NULL;
    if (p && !d)
        r->bad = true;
    if (d)
        memcpy(d, p, n);
    return d;
}

/* Parses buf (len bytes, the checksum checked) into s. False if malformed. */
static bool state_parse(struct sread *r, struct jrn_verify_state *s)
{
    const uint8_t *magic = sr_take(r, 4);
    if (!magic || memcmp(magic, VSTATE_MAGIC, 4) != 0 || sr_u(r, 4) != VSTATE_VERSION)
        return false;
    const uint8_t *p = sr_take(r, 16);
    if (p)
        memcpy(s->journal_id, p, 16);
    size_t olen = sr_u(r, 2);
    if (olen == 0 || olen > KR_ORIGIN_MAX || !(p = sr_take(r, olen)) || memchr(p, 0, olen))
        return false;
    memcpy(s->origin, p, olen);
    s->size = sr_u(r, 8);
    if (r->bad || s->size == 0 || s->size >= JRN_SIZE_MAX || !(p = sr_take(r, KR_HASH_LEN)))
        return false;
    memcpy(s->root, p, KR_HASH_LEN);
    s->frontier.size = s->size;
    for (unsigned l = 0; l < 64; l++)
        if (((s->size >> l) & 1) && (p = sr_take(r, KR_HASH_LEN)))
            memcpy(s->frontier.node[l], p, KR_HASH_LEN);
    s->note_len = sr_u(r, 2);
    if (s->note_len == 0 || s->note_len > KR_NOTE_MAX || !(p = sr_take(r, s->note_len)))
        return false;
    memcpy(s->note, p, s->note_len);
    s->last_len = sr_u(r, 4);
    s->last_rec = sr_dup(r, s->last_len, KR_RECORD_MAX);
    s->path_n = sr_u(r, 1);
    if (r->bad || s->path_n > 64 || !(p = sr_take(r, s->path_n * KR_HASH_LEN)))
        return false;
    memcpy(s->path, p, s->path_n * KR_HASH_LEN);
    uint64_t f2 = sr_u(r, 1);
    uint64_t nkeys = sr_u(r, 4);
    if (r->bad || f2 > 1 || nkeys == 0 || nkeys > KR_KEYS_MAX)
        return false;
    s->seen_f2 = f2 == 1;
    for (; s->nkeys < nkeys; s->nkeys++) {
        s->keyrec_len[s->nkeys] = sr_u(r, 4);
        if (!(s->keyrec[s->nkeys] = sr_dup(r, s->keyrec_len[s->nkeys], KR_RECORD_MAX)))
            return false;
    }
    s->ntenants = sr_u(r, 8);
    if (r->bad || s->ntenants == 0 || s->ntenants > KR_VSTATE_TENANTS_MAX ||
        s->ntenants * 16 > r->len - r->off)
        return false;
    if (!(s->tenants = calloc(2 * s->ntenants, sizeof *s->tenants)))
        return false;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < s->ntenants; i++) {
        s->tenants[2 * i] = sr_u(r, 8);
        s->tenants[2 * i + 1] = sr_u(r, 8);
        if ((i > 0 && s->tenants[2 * i] <= s->tenants[2 * i - 2]) || s->tenants[2 * i + 1] == 0 ||
            s->tenants[2 * i + 1] > s->size)
            return false;
        sum += s->tenants[2 * i + 1];
    }
    if (r->bad || r->off != r->len || sum != s->size)
        return false;
    /* What the root binds: the frontier, and the last record at leaf size - 1. */
    uint8_t root[KR_HASH_LEN];
    mrk_frontier_root(&s->frontier, root);
    struct jrn_record rec;
    if (memcmp(root, s->root, KR_HASH_LEN) != 0 ||
        jrn_record_decode(s->last_rec, s->last_len, &rec) != KR_OK || rec.seq != s->size)
        return false;
    jrn_record_leaf_hash(&rec, s->last_leaf);
    s->last_time = rec.time_ns;
    return mrk_verify_inclusion(s->last_leaf, s->size - 1, s->size,
                                (const uint8_t(*)[KR_HASH_LEN])s->path, s->path_n,
                                s->root) == KR_OK;
}

kr_err jrn_verify_state_parse(const uint8_t *buf, size_t len, struct jrn_verify_state **out)
{
    *out = NULL;
    if (len <= KR_HASH_LEN)
        return KR_ECORRUPT;
    if (len > KR_VSTATE_MAX)
        return KR_ETOOLARGE;
    uint8_t sum[KR_HASH_LEN];
    kr_sha256(sum, buf, len - KR_HASH_LEN);
    if (sodium_memcmp(sum, buf + len - KR_HASH_LEN, KR_HASH_LEN) != 0)
        return KR_ECORRUPT;
    struct sread r = {buf, len - KR_HASH_LEN, 0, false};
    struct jrn_verify_state *s = calloc(1, sizeof *s);
    if (!s)
        return KR_ENOMEM;
    if (!state_parse(&r, s)) {
        jrn_verify_state_free(s);
        return KR_ECORRUPT;
    }
    *out = s;
    return KR_OK;
}

kr_err jrn_verify_state_load(const char *path, struct jrn_verify_state **out)
{
    *out = NULL;
    uint8_t *buf;
    size_t len;
    kr_err err = kr_file_read_bounded(path, KR_VSTATE_MAX, &buf, &len);
    if (err)
        return err;
    err = jrn_verify_state_parse(buf, len, out);
    free(buf);
    return err;
}

kr_err jrn_verify_journal(struct journal *j, const struct jrn_verify_options *opts,
                          struct jrn_verify_report *out)
{
    const char *dir = j->dir;
    struct jrn_verify_options o = *opts;
    struct fault f = {.seq = UINT64_MAX};
    struct tseq_table counts = {0}; /* every tenant's records so far, in the merge */
    struct vctx *v = NULL;
    MDB_txn *txn = NULL;
    kr_err err;

    memset(out, 0, sizeof *out);
    if (!o.have_root_key) {
        if ((err = kr_pubkey_load(dir, 1, o.root_key)))
            return err;
        o.have_root_key = true;
    }
    v = calloc(1, sizeof *v);
    if (!v)
        return KR_ENOMEM;
    v->o = &o;
    atomic_store(&v->first_bad, UINT64_MAX);
    v->j = j;
    v->epochs = 1;
    v->since = o.since;
    read_cp_file(dir, &v->cp_file);
    struct mrk_frontier top;
    mrk_frontier_init(&top);
    if (v->since && (err = since_bind(v, out)))
        goto done;

    /* One snapshot for the size; workers read the same immutable prefix. */
    uint64_t entries = 0;
    if ((err = kr_err_from_mdb(mdb_txn_begin(v->j->env, NULL, MDB_RDONLY, &txn))) ||
        (err = verify_size(v, txn, &f, &entries, out)))
        goto done;
    if (f.seq != UINT64_MAX)
        goto verdict;
    if (v->since) {
        since_prefix(v, txn, &f);
        if (f.seq != UINT64_MAX)
            goto verdict;
        if ((err = since_seed(v, &counts, &top)))
            goto done;
    }
    if ((err = load_keys(v, txn, &f)))
        goto done;
    out->keys = v->nkeys;
    out->epochs = v->epochs;
    /* A fault in the key history goes into the verdict with those the pass
     * finds below it; chunks above it are skipped. */
    atomic_store(&v->first_bad, f.seq);
    if ((err = verify_chunks(v)))
        goto done;

    uint64_t system = 0;
    if ((err = merge_chunks(v, txn, &f, &counts, &top, out, &system)))
        goto done;
    if (v->since && v->nchunks == 0)
        top = v->since->frontier; /* nothing new */
    out->tenants = counts.count;
    out->checked = v->n - v->start;
    verify_totals(v, txn, &f, system, entries, &top, out);
    if (f.seq == UINT64_MAX && o.want_state &&
        (err = state_build(v, txn, &top, &counts, &out->state)))
        goto done;

verdict:
    if (f.seq != UINT64_MAX) {
        out->result = f.err ? f.err : KR_ECORRUPT;
        out->bad_seq = f.seq;
        snprintf(out->what, sizeof out->what, "%s", f.what);
    }
    err = KR_OK;
done:
    if (txn)
        mdb_txn_abort(txn);
    if (v && v->chunks)
        for (uint64_t ch = 0; ch < v->nchunks; ch++)
            tseq_table_free(&v->chunks[ch].tseqs);
    tseq_table_free(&counts);
    if (v)
        free(v->chunks);
    free(v);
    return err;
}
