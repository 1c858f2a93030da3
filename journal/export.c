/*
 * export.c: building and verifying tenant exports (see export.h).
 *
 * Design notes
 * - One snapshot. The builder reads everything (the newest checkpoint, kept
 *   checkpoints, records, tree nodes) in one LMDB read transaction, so the
 *   proofs and checkpoints agree whatever a writer does meanwhile.
 * - One byte form. The document is jansson's compact dump (members in the
 *   order written here) plus "\n". The verifier dumps what it parsed the same
 *   way and requires the very bytes it was given, so spacing, escapes and
 *   number spellings cannot vary, and every remaining byte is part of a value
 *   the verifier checks against signed data or against another value.
 * - Order of checks: structure, then the key chain (signatures from key 1
 *   on), then checkpoints (signatures, origin, ascending sizes, consistency),
 *   then each key record's and each tenant record's inclusion proof, and last
 *   the per-tenant numbers.
 */
#include "export.h"

#include "b64.h"
#include "journal_internal.h"
#include "keys.h"
#include "merkle.h"
#include "mp.h"
#include "note.h"
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S   1000000000ull
#define JST_OFFSET (9ull * 3600ull)
#define HEX_ID_LEN 32
#define B64_HASH   44 /* base64 of 32 bytes */
/* Bytes an entry costs besides its record and proof (members, numbers, times). */
#define ENTRY_OVERHEAD 200u
/* Bytes a checkpoint costs at most: its note and a consistency proof. */
#define CHECKPOINT_COST (KR_NOTE_MAX + (KR_PROOF_MAX) * (B64_HASH + 3))

/* ---- Times ---- */

static size_t format_time(uint64_t ns, uint64_t shift_s, char *out, size_t cap, const char *zone)
{
    time_t s = (time_t)(ns / NS_PER_S + shift_s);
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[96];
    int n = snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09llu%s", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (unsigned long long)(ns % NS_PER_S), zone);
    /* Every u64 nanosecond count falls in years 1970..2554: 4 digits. */
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len >= cap)
        len = cap - 1;
    memcpy(out, buf, len);
    out[len] = '\0';
    return len;
}

void exp_format_utc(uint64_t ns, char out[EXP_UTC_LEN + 1])
{
    format_time(ns, 0, out, EXP_UTC_LEN + 1, "Z");
}

void exp_format_jst(uint64_t ns, char out[EXP_JST_LEN + 1])
{
    format_time(ns, JST_OFFSET, out, EXP_JST_LEN + 1, "+09:00");
}

static void to_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static json_t *b64_json(const uint8_t *p, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    if (!s)
        return NULL;
    sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_string(s);
    free(s);
    return j;
}

/* Adds v to o under k, taking v's reference; false (nothing leaked) on failure. */
static bool put(json_t *o, const char *k, json_t *v)
{
    return v && json_object_set_new(o, k, v) == 0;
}

static bool push(json_t *a, json_t *v)
{
    return v && json_array_append_new(a, v) == 0;
}

/* ---- Building ---- */

struct builder {
    struct journal *j;
    MDB_txn *txn;
    uint64_t size; /* the newest checkpoint's tree size */
    char newest[KR_NOTE_MAX + 1];
    size_t newest_len;
    uint64_t cps[KR_EXPORT_CHECKPOINTS_MAX]; /* chosen sizes, ascending; the last is size */
    size_t ncps;
    size_t bytes; /* estimated document size so far */
};

/* The tree size a note states (its second line); the builder trusts its own
 * journal, the verifier checks everything. */
static kr_err note_size(const char *note, size_t len, uint64_t *size)
{
    const char *nl = memchr(note, '\n', len);
    if (!nl)
        return KR_ECORRUPT;
    char *end;
    unsigned long long v = strtoull(nl + 1, &end, 10);
    if (end == nl + 1 || *end != '\n')
        return KR_ECORRUPT;
    *size = v;
    return KR_OK;
}

static kr_err get_record(struct builder *b, uint64_t seq, MDB_val *val, struct jrn_record *r)
{
    uint8_t kb[8];
    kr_put_be64(kb, seq);
    MDB_val k = {8, kb};
    int rc = mdb_get(b->txn, b->j->db_events, &k, val);
    if (rc)
        return rc == MDB_NOTFOUND ? KR_ECORRUPT : kr_err_from_mdb(rc);
    if (jrn_record_decode(val->mv_data, val->mv_size, r) != KR_OK || r->seq != seq)
        return KR_ECORRUPT;
    return KR_OK;
}

/* The checkpoint a record at seq is proved against: the first kept one at or
 * after it (a checkpoint near its time), or the newest. */
static kr_err choose_checkpoint(struct builder *b, uint64_t seq, uint64_t *size)
{
    *size = b->size;
    if (b->ncps > 1 && b->cps[b->ncps - 2] >= seq) {
        *size = b->cps[b->ncps - 2];
        return KR_OK;
    }
    if (b->ncps >= KR_EXPORT_CHECKPOINTS_MAX)
        return KR_OK;
    MDB_cursor *c;
    int rc = mdb_cursor_open(b->txn, b->j->db_checkpoints, &c);
    if (rc)
        return kr_err_from_mdb(rc);
    uint8_t kb[8];
    kr_put_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND)
        return KR_OK;
    if (rc)
        return kr_err_from_mdb(rc);
    if (k.mv_size != 8)
        return KR_ECORRUPT;
    uint64_t s = kr_get_be64(k.mv_data);
    if (s >= b->size)
        return KR_OK;
    /* Insert before the newest (sizes only grow, since records come in order). */
    b->cps[b->ncps - 1] = s;
    b->cps[b->ncps++] = b->size;
    b->bytes += CHECKPOINT_COST;
    *size = s;
    return KR_OK;
}

/* One entry: seq, tseq, times, checkpoint, proof, record. */
static kr_err make_entry(struct builder *b, const MDB_val *val, const struct jrn_record *r,
                         uint64_t cp, json_t **out)
{
    uint8_t proof[KR_EXPORT_PROOF_MAX][KR_HASH_LEN];
    size_t n;
    struct jrn_tree_ctx tc = {b->j, b->txn};
    kr_err err =
        mrk_inclusion_proof(jrn_tree_node, &tc, r->seq - 1, cp, proof, KR_EXPORT_PROOF_MAX, &n);
    if (err)
        return err;
    char utc[EXP_UTC_LEN + 1], jst[EXP_JST_LEN + 1];
    exp_format_utc(r->time_ns, utc);
    exp_format_jst(r->time_ns, jst);
    json_t *e = json_object(), *p = json_array();
    bool ok = e && p;
    ok = ok && put(e, "seq", json_integer((json_int_t)r->seq));
    ok = ok && put(e, "tseq", json_integer((json_int_t)r->tseq));
    ok = ok && put(e, "utc", json_string(utc));
    ok = ok && put(e, "jst", json_string(jst));
    ok = ok && put(e, "checkpoint", json_integer((json_int_t)cp));
    for (size_t i = 0; ok && i < n; i++)
        ok = push(p, b64_json(proof[i], KR_HASH_LEN));
    ok = ok && json_object_set(e, "proof", p) == 0;
    ok = ok && put(e, "record", b64_json(val->mv_data, val->mv_size));
    json_decref(p);
    if (!ok) {
        json_decref(e);
        return KR_ENOMEM;
    }
    b->bytes += ENTRY_OVERHEAD + n * (B64_HASH + 3) + (val->mv_size + 2) / 3 * 4;
    *out = e;
    return KR_OK;
}

static kr_err build_keys(struct builder *b, json_t *keys)
{
    for (uint64_t version = 1; version <= KR_KEYS_MAX; version++) {
        uint64_t seq;
        kr_err ierr = jrn_stream_seq(b->j, b->txn, 0, JRN_SYSTEM_STREAM, strlen(JRN_SYSTEM_STREAM),
                                     version, &seq);
        if (ierr == KR_ENOTFOUND)
            return version > 1 ? KR_OK : KR_ECORRUPT;
        if (ierr)
            return ierr;
        if (seq == 0 || seq > b->size)
            return KR_OK; /* a key change after the snapshot's checkpoint */
        struct jrn_record r = {0};
        MDB_val val;
        kr_err err;
        json_t *e;
        if ((err = get_record(b, seq, &val, &r)))
            return err;
        if ((err = make_entry(b, &val, &r, b->size, &e)))
            return err;
        if (!push(keys, e))
            return KR_ENOMEM;
    }
    return KR_OK;
}

static kr_err build_records(struct builder *b, const struct exp_options *o, size_t max_records,
                            size_t max_bytes, json_t *recs, uint64_t *first, uint64_t *last,
                            uint64_t *next_from)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(b->txn, b->j->db_tenants, &c);
    if (rc)
        return kr_err_from_mdb(rc);
    uint64_t from = o->from ? o->from : 1;
    uint64_t to = o->to && o->to < b->size ? o->to : b->size;
    uint8_t kb[16];
    kr_put_be64(kb, o->tenant);
    kr_put_be64(kb + 8, from);
    MDB_val k = {16, kb}, v;
    kr_err err = KR_OK;
    size_t n = 0;
    *next_from = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16) {
            err = KR_ECORRUPT;
            break;
        }
        if (kr_get_be64(k.mv_data) != o->tenant)
            break;
        uint64_t seq = kr_get_be64((const uint8_t *)k.mv_data + 8);
        if (seq > to)
            break;
        if (n == max_records || (n > 0 && b->bytes >= max_bytes)) {
            *next_from = seq;
            break;
        }
        struct jrn_record r = {0};
        MDB_val val;
        uint64_t cp;
        json_t *e;
        if ((err = get_record(b, seq, &val, &r)))
            break;
        if (r.tenant != o->tenant) {
            err = KR_ECORRUPT;
            break;
        }
        if ((err = choose_checkpoint(b, seq, &cp)) || (err = make_entry(b, &val, &r, cp, &e)))
            break;
        if (!push(recs, e)) {
            err = KR_ENOMEM;
            break;
        }
        if (n++ == 0)
            *first = seq;
        *last = seq;
    }
    mdb_cursor_close(c);
    if (!err && rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        err = kr_err_from_mdb(rc);
    if (!err && n == 0)
        err = KR_ENOTFOUND;
    return err;
}

static kr_err build_checkpoints(struct builder *b, json_t *cps, json_t *cons)
{
    for (size_t i = 0; i < b->ncps; i++) {
        if (i + 1 == b->ncps) {
            if (!push(cps, json_stringn(b->newest, b->newest_len)))
                return KR_ENOMEM;
        } else {
            uint8_t kb[8];
            kr_put_be64(kb, b->cps[i]);
            MDB_val k = {8, kb}, v;
            int rc = mdb_get(b->txn, b->j->db_checkpoints, &k, &v);
            if (rc)
                return rc == MDB_NOTFOUND ? KR_ECORRUPT : kr_err_from_mdb(rc);
            if (v.mv_size > KR_NOTE_MAX || !push(cps, json_stringn(v.mv_data, v.mv_size)))
                return v.mv_size > KR_NOTE_MAX ? KR_ECORRUPT : KR_ENOMEM;
        }
        if (i == 0)
            continue;
        uint8_t proof[KR_PROOF_MAX][KR_HASH_LEN];
        size_t n;
        struct jrn_tree_ctx tc = {b->j, b->txn};
        kr_err err = mrk_consistency_proof(jrn_tree_node, &tc, b->cps[i - 1], b->cps[i], proof,
                                           KR_PROOF_MAX, &n);
        if (err)
            return err;
        json_t *p = json_array();
        if (!push(cons, p))
            return KR_ENOMEM;
        for (size_t h = 0; h < n; h++)
            if (!push(p, b64_json(proof[h], KR_HASH_LEN)))
                return KR_ENOMEM;
    }
    return KR_OK;
}

/* The "since" member: the consistency proof from since_size to the newest
 * checkpoint. */
static json_t *build_since(struct builder *b, uint64_t since_size, kr_err *err)
{
    uint8_t proof[KR_PROOF_MAX][KR_HASH_LEN];
    size_t n;
    struct jrn_tree_ctx tc = {b->j, b->txn};
    if ((*err = mrk_consistency_proof(jrn_tree_node, &tc, since_size, b->size, proof, KR_PROOF_MAX,
                                      &n)))
        return NULL;
    json_t *o = json_object(), *p = json_array();
    bool ok = o && p && json_object_set_new(o, "size", json_integer((json_int_t)since_size)) == 0;
    for (size_t h = 0; ok && h < n; h++)
        ok = push(p, b64_json(proof[h], KR_HASH_LEN));
    ok = ok && json_object_set(o, "proof", p) == 0;
    json_decref(p);
    if (!ok) {
        json_decref(o);
        *err = KR_ENOMEM;
        return NULL;
    }
    return o;
}

static char *dump(const json_t *doc, size_t *len)
{
    size_t n = json_dumpb(doc, NULL, 0, JSON_COMPACT);
    if (n == 0)
        return NULL;
    char *s = malloc(n + 2);
    if (!s)
        return NULL;
    if (json_dumpb(doc, s, n, JSON_COMPACT) != n) {
        free(s);
        return NULL;
    }
    s[n] = '\n';
    s[n + 1] = '\0';
    *len = n + 1;
    return s;
}

kr_err exp_build(struct journal *j, const struct exp_options *o, char **out, size_t *len,
                 struct exp_built *built)
{
    if (!j || !o || !out || !len || !built || o->tenant == 0 || (o->to && o->from > o->to) ||
        o->tenant > INT64_MAX)
        return KR_EINVAL;
    size_t max_records = o->max_records && o->max_records < KR_EXPORT_RECORDS_MAX
                             ? o->max_records
                             : KR_EXPORT_RECORDS_MAX;
    size_t max_bytes = o->max_bytes && o->max_bytes < KR_EXPORT_BUILD_BYTES_MAX
                           ? o->max_bytes
                           : KR_EXPORT_BUILD_BYTES_MAX;
    struct builder *b = calloc(1, sizeof *b);
    if (!b)
        return KR_ENOMEM;
    b->j = j;
    kr_err err = KR_OK;
    json_t *doc = NULL, *keys = json_array(), *recs = json_array(), *cps = json_array(),
           *cons = json_array();
    int rc = mdb_txn_begin(jrn_env(j), NULL, MDB_RDONLY, &b->txn);
    if (rc) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    if (!keys || !recs || !cps || !cons) {
        err = KR_ENOMEM;
        goto out;
    }
    MDB_val mk = {strlen(JRN_META_CHECKPOINT), JRN_META_CHECKPOINT}, mv;
    if ((rc = mdb_get(b->txn, j->db_meta, &mk, &mv))) {
        err = kr_err_from_mdb(rc);
        goto out;
    }
    if (mv.mv_size > KR_NOTE_MAX || (err = note_size(mv.mv_data, mv.mv_size, &b->size)) ||
        b->size == 0 || b->size > JRN_SIZE_MAX) {
        err = KR_ECORRUPT;
        goto out;
    }
    memcpy(b->newest, mv.mv_data, mv.mv_size);
    b->newest_len = mv.mv_size;
    b->cps[0] = b->size;
    b->ncps = 1;
    b->bytes = 1024 + CHECKPOINT_COST;
    uint64_t first = 0, last = 0;
    memset(built, 0, sizeof *built);
    if (o->since_size > b->size) {
        err = KR_EINVAL;
        goto out;
    }
    if ((err = build_keys(b, keys)) ||
        (err =
             build_records(b, o, max_records, max_bytes, recs, &first, &last, &built->next_from)) ||
        (err = build_checkpoints(b, cps, cons)))
        goto out;
    char id[HEX_ID_LEN + 1];
    to_hex(j->journal_id, sizeof j->journal_id, id);
    doc = json_object();
    bool ok = doc;
    ok = ok && put(doc, "kiroku_export", json_integer(EXP_FORMAT));
    ok = ok && put(doc, "origin", json_string(j->origin));
    ok = ok && put(doc, "journal_id", json_string(id));
    char tenant[24];
    snprintf(tenant, sizeof tenant, "%" PRIu64, o->tenant);
    ok = ok && put(doc, "tenant", json_string(tenant));
    ok = ok && put(doc, "from", json_integer((json_int_t)first));
    ok = ok && put(doc, "to", json_integer((json_int_t)last));
    ok = ok && json_object_set(doc, "keys", keys) == 0;
    ok = ok && json_object_set(doc, "checkpoints", cps) == 0;
    ok = ok && json_object_set(doc, "consistency", cons) == 0;
    if (ok && o->since_size) {
        json_t *since = build_since(b, o->since_size, &err);
        if (!since)
            goto out;
        ok = json_object_set_new(doc, "since", since) == 0;
    }
    ok = ok && json_object_set(doc, "records", recs) == 0;
    if (!ok || !(*out = dump(doc, len))) {
        err = KR_ENOMEM;
    } else {
        built->first = first;
        built->last = last;
        built->records = json_array_size(recs);
    }
out:
    if (b->txn)
        mdb_txn_abort(b->txn);
    json_decref(doc);
    json_decref(keys);
    json_decref(recs);
    json_decref(cps);
    json_decref(cons);
    free(b);
    return err;
}

/* ---- Verifying ---- */

struct vkey {
    uint32_t key_id;
    uint8_t pk[KR_PUBKEY_LEN];
    uint64_t intro;   /* seq of the record that introduced it */
    uint64_t from;    /* first record it signs */
    uint64_t through; /* last record it signs (the next key's intro), UINT64_MAX if current */
    /* The checkpoint sizes it signs: from the record before its first (the
     * size at which a rotation's key_added record was written is the old
     * key's), except that an epoch's key signs the size of its own
     * epoch_started record, which the old key may have signed in a dropped
     * history. */
    uint64_t cp_from, cp_through;
};

struct vcp {
    struct kr_checkpoint cp;
};

struct verifier {
    struct exp_report *rep;
    json_t *doc;
    struct vkey keys[KR_KEYS_MAX];
    size_t nkeys;
    struct kr_note_key note_keys[KR_KEYS_MAX];
    struct vcp cps[KR_EXPORT_CHECKPOINTS_MAX];
    size_t ncps;
    uint8_t journal_id[16];
    const json_t *since; /* the document's "since" member, or NULL */
    const char *newest;  /* the newest checkpoint's note (in doc) */
    size_t newest_len;
};

struct exp_state {
    char origin[KR_ORIGIN_MAX + 1];
    uint8_t journal_id[16];
    uint64_t tenant;
    uint64_t last_seq, last_tseq;
    uint64_t size; /* the note's tree size */
    char note[KR_NOTE_MAX + 1];
    size_t note_len;
};

static kr_err fail(struct verifier *v, kr_err err, uint64_t seq, uint64_t tseq, const char *where,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static kr_err fail(struct verifier *v, kr_err err, uint64_t seq, uint64_t tseq, const char *where,
                   const char *fmt, ...)
{
    struct exp_report *r = v->rep;
    r->result = err;
    r->bad_seq = seq;
    r->bad_tseq = tseq;
    snprintf(r->where, sizeof r->where, "%s", where);
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    vsnprintf(r->what, sizeof r->what, fmt, ap);
    va_end(ap);
    return err;
}

/* A member of o that must be a non-negative integer <= max. */
static bool get_uint(const json_t *o, const char *k, uint64_t max, uint64_t *out)
{
    const json_t *x = json_object_get(o, k);
    if (!json_is_integer(x) || json_integer_value(x) < 0 || (uint64_t)json_integer_value(x) > max)
        return false;
    *out = (uint64_t)json_integer_value(x);
    return true;
}

/* A member of o that must be a decimal string in canonical form (no sign,
 * no leading zero, no space) of a number in 1..max. */
static bool get_dec(const json_t *o, const char *k, uint64_t max, uint64_t *out)
{
    const json_t *x = json_object_get(o, k);
    if (!json_is_string(x))
        return false;
    const char *s = json_string_value(x);
    size_t n = json_string_length(x);
    if (n == 0 || n > 20 || s[0] == '0')
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* Checks that o is an object with exactly the n members names[0..n). */
static bool exact_members(const json_t *o, const char *const *names, size_t n)
{
    if (!json_is_object(o) || json_object_size(o) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!json_object_get(o, names[i]))
            return false;
    return true;
}

/* Decodes canonical base64 of at most cap bytes from a JSON string. */
static bool get_b64(const json_t *s, uint8_t *out, size_t cap, size_t *n)
{
    if (!json_is_string(s))
        return false;
    return kr_b64_decode(out, cap, json_string_value(s), json_string_length(s), n) == KR_OK;
}

/* One entry of "keys" or "records", decoded; rec borrows from buf. */
struct ventry {
    uint64_t seq, tseq, cp;
    uint8_t *buf; /* the record's stored bytes, malloc'd */
    size_t len;
    struct jrn_record rec;
    uint8_t proof[KR_EXPORT_PROOF_MAX][KR_HASH_LEN];
    size_t nproof;
    char where[160];
};

static const char *const entry_members[] = {"seq",        "tseq",  "utc",   "jst",
                                            "checkpoint", "proof", "record"};
#define ENTRY_MEMBERS (sizeof entry_members / sizeof entry_members[0])

/* Structure, canonical record decoding and the fields beside the record. */
static kr_err read_entry(struct verifier *v, const json_t *e, const char *section, size_t idx,
                         struct ventry *x)
{
    snprintf(x->where, sizeof x->where, "%s[%zu]", section, idx);
    if (!exact_members(e, entry_members, ENTRY_MEMBERS))
        return fail(v, KR_ECORRUPT, 0, 0, x->where,
                    "an entry has exactly the members seq, tseq, utc, jst, checkpoint, proof, "
                    "record");
    if (!get_uint(e, "seq", JRN_SIZE_MAX, &x->seq) || x->seq == 0)
        return fail(v, KR_ECORRUPT, 0, 0, x->where, "field seq: not a seq");
    if (!get_uint(e, "tseq", JRN_SIZE_MAX, &x->tseq))
        return fail(v, KR_ECORRUPT, x->seq, 0, x->where, "field tseq: not a number");
    snprintf(x->where, sizeof x->where, "%s[%zu] seq %llu tseq %llu", section, idx,
             (unsigned long long)x->seq, (unsigned long long)x->tseq);
    if (!get_uint(e, "checkpoint", JRN_SIZE_MAX, &x->cp))
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where, "field checkpoint: not a size");
    const json_t *p = json_object_get(e, "proof");
    if (!json_is_array(p))
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where, "field proof: not a list");
    if (json_array_size(p) > KR_EXPORT_PROOF_MAX)
        return fail(v, KR_ETOOLARGE, x->seq, x->tseq, x->where, "field proof: more than %u hashes",
                    KR_EXPORT_PROOF_MAX);
    x->nproof = json_array_size(p);
    for (size_t i = 0; i < x->nproof; i++) {
        size_t n;
        if (!get_b64(json_array_get(p, i), x->proof[i], KR_HASH_LEN, &n) || n != KR_HASH_LEN)
            return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                        "field proof[%zu]: not the base64 of a 32-byte hash", i);
    }
    const json_t *rs = json_object_get(e, "record");
    if (!json_is_string(rs) || json_string_length(rs) > (KR_RECORD_MAX + 2) / 3 * 4)
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                    "field record: not a string of at most %u bytes of base64",
                    (unsigned)KR_RECORD_MAX);
    x->buf = malloc(KR_RECORD_MAX);
    if (!x->buf)
        return fail(v, KR_ENOMEM, x->seq, x->tseq, x->where, "out of memory");
    if (!get_b64(rs, x->buf, KR_RECORD_MAX, &x->len))
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                    "field record: not canonical base64");
    kr_err err = jrn_record_decode(x->buf, x->len, &x->rec);
    if (err)
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                    "field record: does not decode as a canonical record (%s)", kr_strerror(err));
    const struct jrn_record *r = &x->rec;
    if (r->seq != x->seq)
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                    "field seq: says %llu, the record says %llu", (unsigned long long)x->seq,
                    (unsigned long long)r->seq);
    if (r->tseq != x->tseq)
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                    "field tseq: says %llu, the record says %llu", (unsigned long long)x->tseq,
                    (unsigned long long)r->tseq);
    char utc[EXP_UTC_LEN + 1], jst[EXP_JST_LEN + 1];
    exp_format_utc(r->time_ns, utc);
    exp_format_jst(r->time_ns, jst);
    const json_t *u = json_object_get(e, "utc"), *js = json_object_get(e, "jst");
    if (!json_is_string(u) || strcmp(json_string_value(u), utc) != 0)
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                    "field utc: is not the record's time %s", utc);
    if (!json_is_string(js) || strcmp(json_string_value(js), jst) != 0)
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                    "field jst: is not the record's time %s", jst);
    if (!r->payload_stripped) {
        uint8_t h[KR_HASH_LEN];
        kr_sha256(h, r->payload, r->payload_len);
        if (memcmp(h, r->commitment, KR_HASH_LEN) != 0)
            return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                        "field record: payload does not match its commitment");
    }
    return KR_OK;
}

static void entry_fini(struct ventry *x)
{
    free(x->buf);
    x->buf = NULL;
}

static const struct vkey *key_at(const struct verifier *v, uint64_t seq)
{
    for (size_t i = 0; i < v->nkeys; i++)
        if (seq >= v->keys[i].from && seq <= v->keys[i].through)
            return &v->keys[i];
    return NULL;
}

static kr_err check_sig(struct verifier *v, const struct ventry *x, const struct vkey *k)
{
    const struct jrn_record *r = &x->rec;
    if (!k || r->key_id != k->key_id)
        return fail(v, KR_EBADSIG, x->seq, x->tseq, x->where,
                    "field record: signed by key %u, but key %u signs seq %llu", r->key_id,
                    k ? k->key_id : 0, (unsigned long long)x->seq);
    uint8_t msg[JRN_SIGN_INPUT_MAX];
    size_t mlen;
    jrn_record_sign_input(r, msg, &mlen);
    if (crypto_sign_verify_detached(r->sig, msg, mlen, k->pk) != 0)
        return fail(v, KR_EBADSIG, x->seq, x->tseq, x->where,
                    "field record: signature does not verify with key %u", k->key_id);
    return KR_OK;
}

/* The genesis record is signed by the trusted key itself. */
static kr_err verify_genesis_sig(struct verifier *v, const struct ventry *x,
                                 const uint8_t pk[KR_PUBKEY_LEN])
{
    struct vkey k = {.key_id = 1, .from = 1, .through = UINT64_MAX};
    memcpy(k.pk, pk, KR_PUBKEY_LEN);
    return check_sig(v, x, &k);
}

static kr_err verify_keys(struct verifier *v, const json_t *keys, const uint8_t pk[KR_PUBKEY_LEN],
                          const char *origin, struct ventry *xs)
{
    size_t n = json_array_size(keys);
    for (size_t i = 0; i < n; i++) {
        struct ventry *x = &xs[i];
        kr_err err = read_entry(v, json_array_get(keys, i), "keys", i, x);
        if (err)
            return err;
        const struct jrn_record *r = &x->rec;
        bool genesis = i == 0;
        if (!jrn_is_system(r) || r->version != i + 1 ||
            (genesis ? !jrn_type_is(r, JRN_TYPE_CREATED) || r->seq != 1
                     : !jrn_type_is(r, JRN_TYPE_KEY_ADDED) &&
                           !jrn_type_is(r, JRN_TYPE_EPOCH_STARTED)) ||
            r->payload_stripped)
            return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                        "field record: not version %zu of the journal's key stream", i + 1);
        if (!genesis && x->seq <= xs[i - 1].seq)
            return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                        "field seq: key records out of order");
        struct jrn_key_payload kp;
        if (jrn_parse_key_payload(r->payload, r->payload_len, &kp))
            return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                        "field record: payload is not a key announcement");
        uint32_t key_id = kp.key_id;
        const uint8_t *kpk = kp.pk;
        if (genesis) {
            if (key_id != 1 || sodium_memcmp(kpk, pk, KR_PUBKEY_LEN) != 0)
                return fail(v, KR_EBADSIG, x->seq, x->tseq, x->where,
                            "field record: the genesis key is not the trusted public key");
            if (!kp.has_genesis || memcmp(kp.journal_id, v->journal_id, 16) != 0 ||
                kp.origin_len != strlen(origin) || memcmp(kp.origin, origin, kp.origin_len) != 0)
                return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                            "field record: the genesis record names another journal");
            if ((err = verify_genesis_sig(v, x, pk)))
                return err;
        } else {
            for (size_t k = 0; k < v->nkeys; k++)
                if (v->keys[k].key_id == key_id)
                    return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                                "field record: key %u introduced twice", key_id);
            /* Signed by the key it replaces. */
            if ((err = check_sig(v, x, &v->keys[v->nkeys - 1])))
                return err;
            v->keys[v->nkeys - 1].through = x->seq;
            v->keys[v->nkeys - 1].cp_through =
                jrn_type_is(r, JRN_TYPE_EPOCH_STARTED) ? x->seq - 1 : x->seq;
        }
        struct vkey *k = &v->keys[v->nkeys];
        k->key_id = key_id;
        memcpy(k->pk, kpk, KR_PUBKEY_LEN);
        k->intro = x->seq;
        k->from = genesis ? 1 : x->seq + 1;
        k->through = UINT64_MAX;
        k->cp_from = genesis ? 1 : jrn_type_is(r, JRN_TYPE_EPOCH_STARTED) ? x->seq : x->seq + 1;
        k->cp_through = UINT64_MAX;
        struct kr_note_key *nk = &v->note_keys[v->nkeys];
        snprintf(nk->name, sizeof nk->name, "%s", origin);
        memcpy(nk->pk, kpk, KR_PUBKEY_LEN);
        nk->key_id = (uint32_t)v->nkeys;
        v->nkeys++;
    }
    return KR_OK;
}

static kr_err verify_inclusion(struct verifier *v, const struct ventry *x)
{
    const struct vcp *c = NULL;
    for (size_t i = 0; i < v->ncps; i++)
        if (v->cps[i].cp.size == x->cp)
            c = &v->cps[i];
    if (!c)
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                    "field checkpoint: the export has no checkpoint of size %llu",
                    (unsigned long long)x->cp);
    if (x->seq > x->cp)
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                    "field checkpoint: size %llu does not cover the record",
                    (unsigned long long)x->cp);
    uint8_t leaf[KR_HASH_LEN];
    jrn_record_leaf_hash(&x->rec, leaf);
    if (mrk_verify_inclusion(leaf, x->seq - 1, x->cp, (const uint8_t(*)[KR_HASH_LEN])x->proof,
                             x->nproof, c->cp.root) != KR_OK)
        return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                    "field proof: the record is not at seq %llu of the checkpoint of size %llu",
                    (unsigned long long)x->seq, (unsigned long long)x->cp);
    return KR_OK;
}

static kr_err verify_checkpoints(struct verifier *v, const json_t *cps, const json_t *cons,
                                 const char *origin)
{
    size_t n = json_array_size(cps);
    char where[64];
    for (size_t i = 0; i < n; i++) {
        snprintf(where, sizeof where, "checkpoints[%zu]", i);
        const json_t *s = json_array_get(cps, i);
        if (!json_is_string(s) || json_string_length(s) > KR_NOTE_MAX)
            return fail(v, KR_ECORRUPT, 0, 0, where, "not a note of at most %u bytes", KR_NOTE_MAX);
        struct kr_checkpoint cp;
        uint32_t idx;
        kr_err err = kr_checkpoint_open(json_string_value(s), json_string_length(s), v->note_keys,
                                        v->nkeys, &cp, &idx);
        if (err)
            return fail(v, err == KR_EBADSIG ? KR_EBADSIG : KR_ECORRUPT, 0, 0, where,
                        "the signed note does not verify with the key chain (%s)",
                        kr_strerror(err));
        if (strcmp(cp.origin, origin) != 0)
            return fail(v, KR_ECORRUPT, 0, 0, where, "origin %s is not the export's", cp.origin);
        /* Signed by the key valid at that size: the one that signed record
         * `size`, or the new key if that record starts an epoch. A retired
         * key signs no later tree. */
        const struct vkey *k = &v->keys[idx];
        if (cp.size == 0 || cp.size > JRN_SIZE_MAX || cp.size < k->cp_from ||
            cp.size > k->cp_through)
            return fail(v, KR_EBADSIG, 0, 0, where,
                        "size %llu: signed by key %u, which was not current at that size",
                        (unsigned long long)cp.size, v->keys[idx].key_id);
        if (i > 0 && cp.size <= v->cps[i - 1].cp.size)
            return fail(v, KR_ECORRUPT, 0, 0, where, "sizes do not ascend");
        v->cps[i].cp = cp;
        v->ncps = i + 1;
        v->newest = json_string_value(s);
        v->newest_len = json_string_length(s);
        if (i == 0)
            continue;
        snprintf(where, sizeof where, "consistency[%zu]", i - 1);
        const json_t *p = json_array_get(cons, i - 1);
        if (!json_is_array(p) || json_array_size(p) > KR_PROOF_MAX)
            return fail(v, KR_ECORRUPT, 0, 0, where, "not a list of at most %u hashes",
                        KR_PROOF_MAX);
        uint8_t proof[KR_PROOF_MAX][KR_HASH_LEN];
        size_t np = json_array_size(p);
        for (size_t h = 0; h < np; h++) {
            size_t got;
            if (!get_b64(json_array_get(p, h), proof[h], KR_HASH_LEN, &got) || got != KR_HASH_LEN)
                return fail(v, KR_ECORRUPT, 0, 0, where, "[%zu]: not the base64 of a 32-byte hash",
                            h);
        }
        if (mrk_verify_consistency(v->cps[i - 1].cp.size, cp.size, v->cps[i - 1].cp.root, cp.root,
                                   (const uint8_t(*)[KR_HASH_LEN])proof, np) != KR_OK)
            return fail(v, KR_ECORRUPT, 0, 0, where,
                        "the checkpoint of size %llu is not a prefix of the one of size %llu",
                        (unsigned long long)v->cps[i - 1].cp.size, (unsigned long long)cp.size);
    }
    return KR_OK;
}

static const char *const doc_members[] = {"kiroku_export", "origin", "journal_id", "tenant",
                                          "from",          "to",     "keys",       "checkpoints",
                                          "consistency",   "records"};
#define DOC_MEMBERS (sizeof doc_members / sizeof doc_members[0])

/* verify_doc's first step: buf parsed into v->doc, and in the export's one
 * byte form (the compact dump of what was parsed, and a newline). */
static kr_err doc_parse(struct verifier *v, const uint8_t *buf, size_t len)
{
    json_error_t jerr;
    v->doc = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v->doc)
        return fail(v, KR_ECORRUPT, 0, 0, "file", "not JSON: %s at byte %d", jerr.text,
                    jerr.position);
    size_t clen;
    char *canon = dump(v->doc, &clen);
    if (!canon)
        return fail(v, KR_ENOMEM, 0, 0, "file", "out of memory");
    bool same = clen == len && memcmp(canon, buf, len) == 0;
    size_t at = 0;
    while (at < clen && at < len && canon[at] == (char)buf[at])
        at++;
    free(canon);
    if (!same)
        return fail(v, KR_ECORRUPT, 0, 0, "file",
                    "not in the export's one byte form (compact JSON and a newline): differs at "
                    "byte %zu",
                    at);
    return KR_OK;
}

/* The document's lists, checked for their kinds and sizes by doc_header. */
struct doc_lists {
    const json_t *keys, *cps, *cons, *recs;
};

/* verify_doc's second step: the members of an export, its format, origin,
 * journal id, tenant, from and to (*from, *to) and its four lists. */
static kr_err doc_header(struct verifier *v, uint64_t *from, uint64_t *to, struct doc_lists *l)
{
    struct exp_report *rep = v->rep;
    const json_t *d = v->doc;
    v->since = json_object_get(d, "since");
    bool members = json_is_object(d) && json_object_size(d) == DOC_MEMBERS + (v->since != NULL);
    for (size_t i = 0; members && i < DOC_MEMBERS; i++)
        members = json_object_get(d, doc_members[i]) != NULL;
    if (!members)
        return fail(v, KR_ECORRUPT, 0, 0, "file",
                    "the document does not have exactly the members of an export");
    if (v->since && !exact_members(v->since, (const char *const[]){"size", "proof"}, 2))
        return fail(v, KR_ECORRUPT, 0, 0, "since", "not an object of size and proof");
    uint64_t fmt;
    if (!get_uint(d, "kiroku_export", UINT32_MAX, &fmt) ||
        (fmt != EXP_FORMAT && fmt != EXP_FORMAT_V1))
        return fail(v, KR_ECORRUPT, 0, 0, "kiroku_export", "not export format %d or %d",
                    EXP_FORMAT_V1, EXP_FORMAT);
    const json_t *org = json_object_get(d, "origin"), *jid = json_object_get(d, "journal_id");
    if (!json_is_string(org) || json_string_length(org) == 0 ||
        json_string_length(org) > KR_ORIGIN_MAX)
        return fail(v, KR_ECORRUPT, 0, 0, "origin", "not an origin");
    snprintf(rep->origin, sizeof rep->origin, "%s", json_string_value(org));
    char hex[HEX_ID_LEN + 1];
    if (!json_is_string(jid) || json_string_length(jid) != HEX_ID_LEN ||
        sodium_hex2bin(v->journal_id, 16, json_string_value(jid), HEX_ID_LEN, NULL, NULL, NULL) !=
            0)
        return fail(v, KR_ECORRUPT, 0, 0, "journal_id", "not 32 hex digits");
    to_hex(v->journal_id, 16, hex);
    if (strcmp(hex, json_string_value(jid)) != 0)
        return fail(v, KR_ECORRUPT, 0, 0, "journal_id", "not in lower-case hex");
    bool tenant_ok = fmt == EXP_FORMAT_V1 ? get_uint(d, "tenant", INT64_MAX, &rep->tenant)
                                          : get_dec(d, "tenant", INT64_MAX, &rep->tenant);
    if (!tenant_ok || rep->tenant == 0)
        return fail(v, KR_ECORRUPT, 0, 0, "tenant",
                    fmt == EXP_FORMAT_V1 ? "not a tenant id (>= 1)"
                                         : "not a tenant id (a decimal string, >= 1)");
    if (!get_uint(d, "from", JRN_SIZE_MAX, from) || !get_uint(d, "to", JRN_SIZE_MAX, to))
        return fail(v, KR_ECORRUPT, 0, 0, "from", "from and to are seqs");
    const json_t *keys = json_object_get(d, "keys"), *cps = json_object_get(d, "checkpoints"),
                 *cons = json_object_get(d, "consistency"), *recs = json_object_get(d, "records");
    *l = (struct doc_lists){keys, cps, cons, recs};
    if (!json_is_array(keys) || json_array_size(keys) == 0 || json_array_size(keys) > KR_KEYS_MAX)
        return fail(v, json_is_array(keys) && json_array_size(keys) ? KR_ETOOLARGE : KR_ECORRUPT, 0,
                    0, "keys", "a list of 1 to %u key records", KR_KEYS_MAX);
    if (!json_is_array(cps) || json_array_size(cps) == 0 ||
        json_array_size(cps) > KR_EXPORT_CHECKPOINTS_MAX)
        return fail(v, json_is_array(cps) && json_array_size(cps) ? KR_ETOOLARGE : KR_ECORRUPT, 0,
                    0, "checkpoints", "a list of 1 to %u notes", KR_EXPORT_CHECKPOINTS_MAX);
    if (!json_is_array(cons) || json_array_size(cons) != json_array_size(cps) - 1)
        return fail(v, KR_ECORRUPT, 0, 0, "consistency",
                    "one proof between each two consecutive checkpoints");
    if (!json_is_array(recs) || json_array_size(recs) == 0 ||
        json_array_size(recs) > KR_EXPORT_RECORDS_MAX)
        return fail(v, json_is_array(recs) && json_array_size(recs) ? KR_ETOOLARGE : KR_ECORRUPT, 0,
                    0, "records", "a list of 1 to %u records", KR_EXPORT_RECORDS_MAX);
    return KR_OK;
}

/* verify_doc's third step: the key chain (rooted in pk), the checkpoints
 * and the proofs between them, and each key record's inclusion. */
static kr_err doc_chain(struct verifier *v, const struct doc_lists *l,
                        const uint8_t pk[KR_PUBKEY_LEN])
{
    struct exp_report *rep = v->rep;
    size_t nk = json_array_size(l->keys);
    struct ventry *xs = calloc(nk, sizeof *xs);
    if (!xs)
        return fail(v, KR_ENOMEM, 0, 0, "keys", "out of memory");
    kr_err err = verify_keys(v, l->keys, pk, rep->origin, xs);
    rep->keys = v->nkeys;
    if (!err)
        err = verify_checkpoints(v, l->cps, l->cons, rep->origin);
    rep->checkpoints = v->ncps;
    if (!err) {
        rep->checkpoint_size = v->cps[v->ncps - 1].cp.size;
        memcpy(rep->root, v->cps[v->ncps - 1].cp.root, KR_HASH_LEN);
    }
    for (size_t i = 0; !err && i < nk; i++)
        err = verify_inclusion(v, &xs[i]);
    for (size_t i = 0; i < nk; i++)
        entry_fini(&xs[i]);
    free(xs);
    return err;
}

/* A record's per-tenant number (tseq) after the one before (prev_tseq, of
 * format prev_format; 0 for the first): format 2 follows format 1, and a
 * format-2 record's tseq follows the last one by one, so none is left out. */
static kr_err record_tseq(struct verifier *v, const struct ventry *x, uint32_t prev_format,
                          uint64_t prev_tseq)
{
    struct exp_report *rep = v->rep;
    if (x->rec.format == JRN_FORMAT_1) {
        if (prev_format > JRN_FORMAT_1)
            return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                        "field record: a format-1 record after a format-2 one");
        rep->format1++;
    } else if (prev_format > JRN_FORMAT_1) {
        if (x->tseq != prev_tseq + 1)
            return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                        "field tseq: %llu follows %llu: %llu record(s) of the tenant left out",
                        (unsigned long long)x->tseq, (unsigned long long)prev_tseq,
                        (unsigned long long)(x->tseq > prev_tseq ? x->tseq - prev_tseq - 1 : 0));
    } else {
        rep->first_tseq = x->tseq;
        rep->from_start = x->tseq == rep->format1 + 1;
        if (x->tseq <= rep->format1)
            return fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                        "field tseq: %llu, but %llu earlier records of the tenant are here",
                        (unsigned long long)x->tseq, (unsigned long long)rep->format1);
    }
    return KR_OK;
}

/* verify_doc's fourth step: the tenant's records, in order, each signed,
 * included in the tree, and numbered without a gap. */
static kr_err doc_records(struct verifier *v, const json_t *recs)
{
    struct exp_report *rep = v->rep;
    size_t nr = json_array_size(recs);
    struct ventry *x = calloc(1, sizeof *x);
    if (!x)
        return fail(v, KR_ENOMEM, 0, 0, "records", "out of memory");
    uint64_t prev_seq = 0, prev_tseq = 0, prev_time = 0;
    uint32_t prev_format = 0;
    kr_err err = KR_OK;
    for (size_t i = 0; i < nr && !err; i++) {
        entry_fini(x);
        if ((err = read_entry(v, json_array_get(recs, i), "records", i, x)))
            break;
        const struct jrn_record *r = &x->rec;
        if (r->tenant != rep->tenant) {
            err = fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                       "field record: a record of tenant %llu, not %llu",
                       (unsigned long long)r->tenant, (unsigned long long)rep->tenant);
            break;
        }
        if (x->seq <= prev_seq) {
            err =
                fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where, "field seq: records out of order");
            break;
        }
        if (r->time_ns < prev_time) {
            err = fail(v, KR_ECORRUPT, x->seq, x->tseq, x->where,
                       "field record: time goes backwards");
            break;
        }
        if ((err = check_sig(v, x, key_at(v, x->seq))) || (err = verify_inclusion(v, x)) ||
            (err = record_tseq(v, x, prev_format, prev_tseq)))
            break;
        if (r->payload_stripped)
            rep->stripped++;
        if (i == 0)
            rep->from = x->seq;
        rep->to = x->seq;
        rep->records++;
        rep->last_tseq = x->tseq;
        prev_seq = x->seq;
        prev_tseq = x->tseq;
        prev_time = r->time_ns;
        prev_format = r->format;
    }
    entry_fini(x);
    free(x);
    return err;
}

/* The "since" member's shape (always) and, given a state, that the state's
 * checkpoint (re-verified with the key chain) is a prefix of the newest one. */
static kr_err doc_since(struct verifier *v, const struct exp_state *st)
{
    struct exp_report *rep = v->rep;
    uint64_t size = 0;
    uint8_t proof[KR_PROOF_MAX][KR_HASH_LEN];
    size_t np = 0;
    if (v->since) {
        const json_t *p = json_object_get(v->since, "proof");
        if (!get_uint(v->since, "size", JRN_SIZE_MAX, &size) || size == 0 ||
            size > rep->checkpoint_size)
            return fail(v, KR_ECORRUPT, 0, 0, "since", "field size: not a size up to %llu",
                        (unsigned long long)rep->checkpoint_size);
        if (!json_is_array(p) || json_array_size(p) > KR_PROOF_MAX)
            return fail(v, KR_ECORRUPT, 0, 0, "since",
                        "field proof: not a list of at most %u hashes", KR_PROOF_MAX);
        np = json_array_size(p);
        for (size_t h = 0; h < np; h++) {
            size_t got;
            if (!get_b64(json_array_get(p, h), proof[h], KR_HASH_LEN, &got) || got != KR_HASH_LEN)
                return fail(v, KR_ECORRUPT, 0, 0, "since",
                            "field proof[%zu]: not the base64 of a 32-byte hash", h);
        }
    }
    if (!st)
        return KR_OK;
    if (memcmp(st->journal_id, v->journal_id, 16) != 0 || strcmp(st->origin, rep->origin) != 0 ||
        st->tenant != rep->tenant)
        return fail(v, KR_EINVAL, 0, 0, "since",
                    "the state is of another journal, origin or tenant (%s, tenant %llu)",
                    st->origin, (unsigned long long)st->tenant);
    struct kr_checkpoint cp;
    uint32_t idx;
    kr_err err = kr_checkpoint_open(st->note, st->note_len, v->note_keys, v->nkeys, &cp, &idx);
    if (err || strcmp(cp.origin, rep->origin) != 0 || cp.size != st->size ||
        cp.size < v->keys[idx].cp_from || cp.size > v->keys[idx].cp_through)
        return fail(v, KR_EBADSIG, 0, 0, "since",
                    "the state's checkpoint does not verify with the key chain");
    if (!v->since || size != st->size)
        return fail(v, KR_ECORRUPT, 0, 0, "since",
                    "the export has no consistency proof from the state's checkpoint (size %llu); "
                    "export it with --since",
                    (unsigned long long)st->size);
    if (mrk_verify_consistency(st->size, rep->checkpoint_size, cp.root, rep->root,
                               (const uint8_t(*)[KR_HASH_LEN])proof, np) != KR_OK)
        return fail(v, KR_ECORRUPT, 0, 0, "since",
                    "the state's checkpoint of size %llu is not a prefix of the one of size %llu: "
                    "the history was rewritten",
                    (unsigned long long)st->size, (unsigned long long)rep->checkpoint_size);
    if (rep->from <= st->last_seq)
        return fail(v, KR_ECORRUPT, rep->from, rep->first_tseq, "records[0]",
                    "field seq: %llu is not after the state's last record (seq %llu)",
                    (unsigned long long)rep->from, (unsigned long long)st->last_seq);
    if (rep->format1 > 0 || st->last_tseq == 0 || rep->first_tseq != st->last_tseq + 1)
        return fail(v, KR_ECORRUPT, rep->from, rep->first_tseq, "records[0]",
                    "field tseq: %llu does not follow the state's last tseq %llu: %s",
                    (unsigned long long)rep->first_tseq, (unsigned long long)st->last_tseq,
                    rep->first_tseq > st->last_tseq + 1 ? "record(s) of the tenant left out"
                                                        : "not a continuation");
    return KR_OK;
}

static kr_err verify_doc(struct verifier *v, const uint8_t *buf, size_t len,
                         const uint8_t pk[KR_PUBKEY_LEN], const struct exp_state *st)
{
    struct exp_report *rep = v->rep;
    struct doc_lists l = {0};
    uint64_t from = 0, to = 0;
    kr_err err;
    if ((err = doc_parse(v, buf, len)) || (err = doc_header(v, &from, &to, &l)) ||
        (err = doc_chain(v, &l, pk)) || (err = doc_records(v, l.recs)))
        return err;
    if (from != rep->from || to != rep->to)
        return fail(v, KR_ECORRUPT, 0, 0, from != rep->from ? "from" : "to",
                    "from and to are the seqs of the first and last record (%llu, %llu)",
                    (unsigned long long)rep->from, (unsigned long long)rep->to);
    return doc_since(v, st);
}

kr_err exp_verify(const uint8_t *buf, size_t len, const uint8_t pk[KR_PUBKEY_LEN],
                  struct exp_report *out)
{
    return exp_verify_since(buf, len, pk, NULL, NULL, out);
}

kr_err exp_verify_since(const uint8_t *buf, size_t len, const uint8_t pk[KR_PUBKEY_LEN],
                        const struct exp_state *since, struct exp_state **next,
                        struct exp_report *out)
{
    memset(out, 0, sizeof *out);
    if (next)
        *next = NULL;
    struct verifier *v = calloc(1, sizeof *v);
    if (!v) {
        out->result = KR_ENOMEM;
        return KR_ENOMEM;
    }
    v->rep = out;
    kr_err err;
    if (!buf || !pk)
        err = fail(v, KR_EINVAL, 0, 0, "file", "no input");
    else if (len > KR_EXPORT_FILE_MAX)
        err = fail(v, KR_ETOOLARGE, 0, 0, "file", "larger than %zu bytes", KR_EXPORT_FILE_MAX);
    else if (sodium_init() < 0)
        err = fail(v, KR_ECRYPTO, 0, 0, "file", "libsodium failed");
    else
        err = verify_doc(v, buf, len, pk, since);
    if (!err && next) {
        struct exp_state *n = calloc(1, sizeof *n);
        if (!n || v->newest_len > KR_NOTE_MAX) {
            free(n);
            err = fail(v, KR_ENOMEM, 0, 0, "file", "out of memory");
        } else {
            snprintf(n->origin, sizeof n->origin, "%s", out->origin);
            memcpy(n->journal_id, v->journal_id, 16);
            n->tenant = out->tenant;
            n->last_seq = out->to;
            n->last_tseq = out->last_tseq;
            n->size = out->checkpoint_size;
            memcpy(n->note, v->newest, v->newest_len);
            n->note_len = v->newest_len;
            *next = n;
        }
    }
    json_decref(v->doc);
    free(v);
    out->result = err;
    if (err == KR_OK) {
        out->where[0] = out->what[0] = '\0';
        out->bad_seq = out->bad_tseq = 0;
    }
    return err;
}

/* ---- Export states ---- */

static const char *const state_members[] = {
    "kiroku_export_state", "origin", "journal_id", "tenant", "last_seq", "last_tseq", "checkpoint"};
#define STATE_MEMBERS (sizeof state_members / sizeof state_members[0])

static json_t *state_json(const struct exp_state *s)
{
    char id[HEX_ID_LEN + 1], tenant[24];
    to_hex(s->journal_id, 16, id);
    snprintf(tenant, sizeof tenant, "%" PRIu64, s->tenant);
    json_t *o = json_object();
    bool ok = o;
    ok = ok && put(o, "kiroku_export_state", json_integer(1));
    ok = ok && put(o, "origin", json_string(s->origin));
    ok = ok && put(o, "journal_id", json_string(id));
    ok = ok && put(o, "tenant", json_string(tenant));
    ok = ok && put(o, "last_seq", json_integer((json_int_t)s->last_seq));
    ok = ok && put(o, "last_tseq", json_integer((json_int_t)s->last_tseq));
    ok = ok && put(o, "checkpoint", json_stringn(s->note, s->note_len));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *exp_state_dump(const struct exp_state *s, size_t *len)
{
    json_t *o = s ? state_json(s) : NULL;
    char *out = o ? dump(o, len) : NULL;
    json_decref(o);
    return out;
}

kr_err exp_state_parse(const uint8_t *buf, size_t len, struct exp_state **out)
{
    *out = NULL;
    if (!buf)
        return KR_EINVAL;
    if (len > KR_EXPORT_STATE_MAX)
        return KR_ETOOLARGE;
    json_t *o = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    struct exp_state *s = calloc(1, sizeof *s);
    kr_err err = s ? KR_ECORRUPT : KR_ENOMEM;
    uint64_t version = 0;
    const json_t *org = json_object_get(o, "origin"), *jid = json_object_get(o, "journal_id"),
                 *note = json_object_get(o, "checkpoint");
    if (!s || !o || !exact_members(o, state_members, STATE_MEMBERS) ||
        !get_uint(o, "kiroku_export_state", 1, &version) || version != 1 ||
        !get_dec(o, "tenant", INT64_MAX, &s->tenant) || s->tenant == 0 ||
        !get_uint(o, "last_seq", JRN_SIZE_MAX, &s->last_seq) || s->last_seq == 0 ||
        !get_uint(o, "last_tseq", JRN_SIZE_MAX, &s->last_tseq) || !json_is_string(org) ||
        json_string_length(org) == 0 || json_string_length(org) > KR_ORIGIN_MAX ||
        !json_is_string(jid) || json_string_length(jid) != HEX_ID_LEN ||
        sodium_hex2bin(s->journal_id, 16, json_string_value(jid), HEX_ID_LEN, NULL, NULL, NULL) !=
            0 ||
        !json_is_string(note) || json_string_length(note) > KR_NOTE_MAX)
        goto out;
    snprintf(s->origin, sizeof s->origin, "%s", json_string_value(org));
    if (strlen(s->origin) != json_string_length(org))
        goto out;
    s->note_len = json_string_length(note);
    memcpy(s->note, json_string_value(note), s->note_len);
    if (note_size(s->note, s->note_len, &s->size) || s->size == 0 || s->size > JRN_SIZE_MAX ||
        s->size < s->last_seq)
        goto out;
    /* Exactly the byte form exp_state_dump writes. */
    size_t clen;
    char *canon = exp_state_dump(s, &clen);
    if (!canon) {
        err = KR_ENOMEM;
        goto out;
    }
    bool same = clen == len && memcmp(canon, buf, len) == 0;
    free(canon);
    if (same) {
        *out = s;
        s = NULL;
        err = KR_OK;
    }
out:
    json_decref(o);
    free(s);
    return err;
}

kr_err exp_state_load(const char *path, struct exp_state **out)
{
    *out = NULL;
    uint8_t *buf;
    size_t len;
    kr_err err = kr_file_read_bounded(path, KR_EXPORT_STATE_MAX, &buf, &len);
    if (err)
        return err;
    err = exp_state_parse(buf, len, out);
    free(buf);
    return err;
}

kr_err exp_state_save(const struct exp_state *s, const char *path)
{
    size_t len;
    char *buf = exp_state_dump(s, &len);
    if (!buf)
        return KR_ENOMEM;
    kr_err err = kr_file_replace(path, buf, len, 0644);
    free(buf);
    return err;
}

uint64_t exp_state_size(const struct exp_state *s)
{
    return s->size;
}

uint64_t exp_state_last_seq(const struct exp_state *s)
{
    return s->last_seq;
}

uint64_t exp_state_last_tseq(const struct exp_state *s)
{
    return s->last_tseq;
}

uint64_t exp_state_tenant(const struct exp_state *s)
{
    return s->tenant;
}

void exp_state_free(struct exp_state *s)
{
    free(s);
}
