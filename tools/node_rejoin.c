/*
 * node_rejoin.c: finding where a journal leaves its shard's stream, reporting
 * and truncating what is past it (node_rejoin.h).
 *
 * Design notes. Everything read from the stream is hostile: headers are parsed
 * strictly, chunks decoded by jrn_repl_decode, records by jrn_record_decode,
 * and a record only counts as shared when its seq, key, time, prev link,
 * commitment and signature all equal the local record's (a stripped payload
 * on either side does not matter: the commitment covers it).
 */
#include "node_rejoin.h"

#include "cli.h"
#include "journal.h"
#include "keys.h"
#include "keystore.h"
#include "kr_limits.h"
#include "record.h"
#include "replica.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct probe {
    struct journal *j;
    jsCtx *js;
    const char *stream;
    uint64_t size;
    struct jrn_recbuf b;
    const uint8_t **rec;
    size_t *rec_len;
};

static bool hdr_u64(natsMsg *m, const char *key, uint64_t *out)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK || !v || *v < '0' || *v > '9' || strlen(v) > 20)
        return false;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end)
        return false;
    *out = n;
    return true;
}

/* Whether the stream's record bytes[0..len) is this journal's record seq. */
static bool same_record(struct probe *p, uint64_t seq, const uint8_t *bytes, size_t len)
{
    struct jrn_record r;
    if (jrn_record_decode(bytes, len, &r) != KR_OK || r.seq != seq)
        return false;
    if (jrn_read(p->j, seq, &p->b) != KR_OK)
        return false;
    const struct jrn_record *l = &p->b.rec;
    return l->key_id == r.key_id && l->time_ns == r.time_ns &&
           memcmp(l->sig, r.sig, sizeof r.sig) == 0 &&
           memcmp(l->commitment, r.commitment, sizeof r.commitment) == 0 &&
           memcmp(l->prev, r.prev, sizeof r.prev) == 0;
}

/* Stream message `sseq`, decoded into c (its records borrow from *m, which
 * the caller destroys). KR_EIO: not read; KR_ECORRUPT: not a chunk. */
static kr_err probe_get(struct probe *p, uint64_t sseq, natsMsg **m, struct jrn_repl_chunk *c)
{
    jsErrCode jerr = 0;
    if (js_GetMsg(m, p->js, p->stream, sseq, NULL, &jerr) != NATS_OK) {
        *m = NULL;
        return KR_EIO;
    }
    uint64_t first = 0, last = 0;
    memset(c, 0, sizeof *c);
    c->rec = p->rec;
    c->rec_len = p->rec_len;
    const uint8_t *d = (const uint8_t *)natsMsg_GetData(*m);
    int len = natsMsg_GetDataLength(*m);
    if (!hdr_u64(*m, "Kiroku-First", &first) || !hdr_u64(*m, "Kiroku-Last", &last) || len <= 0 ||
        jrn_repl_decode(d, (size_t)len, c, KR_REPL_CHUNK_RECORDS) != KR_OK || c->first != first ||
        c->n == 0 || first + c->n - 1 != last)
        return KR_ECORRUPT;
    return KR_OK;
}

/* Whether message sseq begins with a record this journal shares (*first:
 * its first seq). */
static kr_err probe_shares(struct probe *p, uint64_t sseq, bool *shares, uint64_t *first)
{
    natsMsg *m = NULL;
    struct jrn_repl_chunk c;
    kr_err err = probe_get(p, sseq, &m, &c);
    *shares = false;
    if (err == KR_ECORRUPT) { /* not a chunk (someone else's message): nothing shared */
        *first = UINT64_MAX;
        err = KR_OK;
    } else if (!err) {
        *first = c.first;
        *shares = c.first <= p->size && same_record(p, c.first, c.rec[0], c.rec_len[0]);
    }
    natsMsg_Destroy(m);
    return err;
}

/* The last shared seq within message sseq (which begins with one). */
static kr_err probe_point(struct probe *p, uint64_t sseq, uint64_t *point)
{
    natsMsg *m = NULL;
    struct jrn_repl_chunk c;
    kr_err err = probe_get(p, sseq, &m, &c);
    for (size_t i = 0; !err && i < c.n; i++) {
        uint64_t s = c.first + i;
        if (s > p->size || !same_record(p, s, c.rec[i], c.rec_len[i]))
            break;
        *point = s;
    }
    natsMsg_Destroy(m);
    return err;
}

/* The stream's point: see the header. */
static kr_err find_point(struct probe *p, uint64_t lo, uint64_t hi, uint64_t *point,
                         const char **why)
{
    bool sh;
    uint64_t first = 0;
    kr_err err = probe_shares(p, lo, &sh, &first);
    if (err)
        return err;
    if (!sh) {
        if (first > p->size) { /* the stream begins past this journal: the follower says */
            *point = p->size;
            return KR_OK;
        }
        *why = "the journal differs from the stream's first message: restore a backup";
        return KR_ECORRUPT;
    }
    while (lo < hi) { /* invariant: message lo shares its first record */
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if ((err = probe_shares(p, mid, &sh, &first)))
            return err;
        if (sh)
            lo = mid;
        else
            hi = mid - 1;
    }
    *point = 0;
    return probe_point(p, lo, point);
}

static void json_record(FILE *f, const struct jrn_record *r, bool comma)
{
    fprintf(f, "%s{\"seq\":%" PRIu64 ",\"time_ns\":%" PRIu64 ",\"type\":", comma ? "," : "", r->seq,
            r->time_ns);
    cli_json_str(f, r->type, r->type_len);
    fprintf(f, ",\"tenant\":%" PRIu64 ",\"stream\":", r->tenant);
    cli_json_str(f, r->stream, r->stream_len);
    fprintf(f, ",\"key_id\":%" PRIu32 "}", r->key_id);
}

/* Writes DIR/discarded-<point+1>-<size>.json and names the records on
 * stderr (at most KR_REJOIN_STDERR_MAX lines). */
static kr_err report(struct probe *p, const char *dir, uint64_t point, char *path, size_t cap)
{
    snprintf(path, cap, "%s/discarded-%" PRIu64 "-%" PRIu64 ".json", dir, point + 1, p->size);
    FILE *f = fopen(path, "w");
    if (!f)
        return kr_err_from_errno(errno);
    fprintf(f, "{\"stream_point\":%" PRIu64 ",\"size\":%" PRIu64 ",\"records\":[", point, p->size);
    kr_err err = KR_OK;
    for (uint64_t s = point + 1; s <= p->size && !err; s++) {
        if ((err = jrn_read(p->j, s, &p->b)))
            break;
        const struct jrn_record *r = &p->b.rec;
        json_record(f, r, s > point + 1);
        if (s - point <= KR_REJOIN_STDERR_MAX)
            fprintf(stderr,
                    "kiroku: serve: discarded record %" PRIu64 ": %.*s, tenant %" PRIu64 "\n", s,
                    (int)r->type_len, r->type, r->tenant);
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0 && !err)
        err = KR_EIO;
    return err;
}

kr_err node_stream_last(jsCtx *js, const char *stream, const char *subject, uint64_t *last)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    *last = 0;
    natsStatus s = js_GetLastMsg(&m, js, stream, subject, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr || jerr == JSNoMessageFoundErr)
        return KR_OK;
    if (s != NATS_OK)
        return KR_EIO;
    kr_err err = hdr_u64(m, "Kiroku-Last", last) ? KR_OK : KR_ECORRUPT;
    natsMsg_Destroy(m);
    return err;
}

kr_err node_key_ensure(const char *dir, struct kr_keyring *kr, const uint8_t journal_id[16],
                       uint32_t key_id)
{
    struct kr_signing_key k;
    kr_err err = kr_key_load(dir, key_id, &k);
    kr_key_wipe(&k);
    if (err != KR_ENOTFOUND || !kr)
        return err;
    struct kr_keystore *ks = NULL;
    if ((err = ks_open(dir, false, &ks)))
        return err;
    if (!(err = kr_keyring_get_signing_key(kr, ks, journal_id, key_id, &k)))
        err = kr_key_save(dir, &k);
    if (err == KR_EEXIST) { /* the public file came with the records: the secret is in */
        uint8_t pk[KR_PUBKEY_LEN];
        struct kr_signing_key back;
        err = kr_pubkey_load(dir, key_id, pk) == KR_OK && memcmp(pk, k.pk, sizeof pk) == 0 &&
                      kr_key_load(dir, key_id, &back) == KR_OK
                  ? KR_OK
                  : KR_EKEY;
        kr_key_wipe(&back);
    }
    kr_key_wipe(&k);
    ks_close(ks);
    return err;
}

/* The keys jrn_truncate may need at `point`: from the key of record point
 * to the key of the record after it. */
static kr_err keys_for(struct probe *p, const char *dir, struct kr_keyring *kr, uint64_t point)
{
    struct jrn_info info;
    jrn_get_info(p->j, &info);
    kr_err err = jrn_read(p->j, point, &p->b);
    uint32_t lo = p->b.rec.key_id;
    if (!err)
        err = jrn_read(p->j, point + 1, &p->b);
    uint32_t hi = p->b.rec.key_id;
    for (uint32_t id = lo; !err && id <= hi; id++) {
        kr_err e = node_key_ensure(dir, kr, info.journal_id, id);
        if (e && e != KR_ENOTFOUND)
            err = e;
    }
    return err;
}

static kr_err stream_bounds(jsCtx *js, const char *stream, uint64_t *lo, uint64_t *hi)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, js, stream, NULL, &jerr) != NATS_OK)
        return jerr == JSStreamNotFoundErr ? KR_ENOTFOUND : KR_EIO;
    *lo = si->State.FirstSeq;
    *hi = si->State.LastSeq;
    bool empty = si->State.Msgs == 0;
    jsStreamInfo_Destroy(si);
    return empty ? KR_ENOTFOUND : KR_OK;
}

/* With the journal open read-only: the point, the report, the keys. */
static kr_err rejoin_examine(struct probe *p, const char *dir, struct kr_keyring *kr,
                             struct node_rejoin_result *out, const char **why)
{
    uint64_t lo = 0, hi = 0;
    kr_err err = stream_bounds(p->js, p->stream, &lo, &hi);
    if (err == KR_ENOTFOUND) { /* an empty stream: nothing to compare */
        out->point = p->size;
        return KR_OK;
    }
    if (err || (err = find_point(p, lo, hi, &out->point, why)))
        return err;
    if (out->point >= p->size)
        return KR_OK;
    if ((err = report(p, dir, out->point, out->report, sizeof out->report)))
        *why = "the report of the discarded records could not be written";
    else if ((err = keys_for(p, dir, kr, out->point)))
        *why = "the signing key at the stream's point is not at hand";
    return err;
}

kr_err node_rejoin(const char *dir, jsCtx *js, const char *stream, struct kr_keyring *kr,
                   struct node_rejoin_result *out, const char **why)
{
    memset(out, 0, sizeof *out);
    *why = "";
    struct probe p = {.js = js, .stream = stream};
    p.rec = calloc(KR_REPL_CHUNK_RECORDS, sizeof *p.rec);
    p.rec_len = calloc(KR_REPL_CHUNK_RECORDS, sizeof *p.rec_len);
    struct jrn_options o = {.dir = dir, .read_only = true};
    kr_err err = !p.rec || !p.rec_len ? KR_ENOMEM : jrn_open(&o, &p.j);
    if (!err) {
        p.size = out->size = jrn_size(p.j);
        err = rejoin_examine(&p, dir, kr, out, why);
    }
    jrn_recbuf_fini(&p.b);
    jrn_close(p.j);
    free(p.rec);
    free(p.rec_len);
    if (err || out->point >= out->size)
        return err;
    fprintf(stderr,
            "kiroku: serve: %" PRIu64 " record%s this node committed never reached the stream "
            "(seqs %" PRIu64 "..%" PRIu64 "): discarded, listed in %s\n",
            out->size - out->point, out->size - out->point == 1 ? "" : "s", out->point + 1,
            out->size, out->report);
    if ((err = jrn_truncate(dir, out->point)))
        *why = "the journal could not be truncated to the stream's point";
    else
        out->discarded = out->size - out->point;
    return err;
}
