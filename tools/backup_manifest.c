/*
 * backup_manifest.c: writing, parsing and verifying backup manifests (see
 * backup_manifest.h).
 *
 * Design notes
 * - The parser walks the text line by line against the fixed field order;
 *   every line is checked whole (keyword, one space, a value of the exact
 *   shape) before anything is taken from it, and nothing is interpreted
 *   until bmf_verify has checked the key chain and the signature.
 * - The writer runs every field through the same rules the parser applies,
 *   so a manifest kiroku writes is always one it can read back.
 */
#include "backup_manifest.h"

#include "b64.h"
#include "journal.h"
#include "mp.h"
#include "note.h"
#include "record.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bmf_manifest *bmf_new(void)
{
    struct bmf_manifest *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->keybuf = malloc(KR_BACKUP_MANIFEST_MAX);
    if (!m->keybuf) {
        free(m);
        return NULL;
    }
    return m;
}

void bmf_free(struct bmf_manifest *m)
{
    if (!m)
        return;
    free(m->keybuf);
    free(m);
}

kr_err bmf_add_keyrec(struct bmf_manifest *m, const uint8_t *rec, size_t len)
{
    if (m->nkeyrecs >= KR_BACKUP_KEYRECS_MAX || len == 0 || len > KR_BACKUP_KEYREC_MAX ||
        len > KR_BACKUP_MANIFEST_MAX - m->keybuf_used)
        return KR_ETOOLARGE;
    memcpy(m->keybuf + m->keybuf_used, rec, len);
    m->keyrec_off[m->nkeyrecs] = m->keybuf_used;
    m->keyrec_len[m->nkeyrecs] = len;
    m->keybuf_used += len;
    m->nkeyrecs++;
    return KR_OK;
}

const struct bmf_file *bmf_find(const struct bmf_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->nfiles; i++)
        if (strcmp(m->files[i].path, path) == 0)
            return &m->files[i];
    return NULL;
}

/* ---- Field rules, shared by writer and parser ---- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool bmf_gen_name_ok(const char *s)
{
    if (strlen(s) != 10)
        return false;
    for (int i = 0; i < 10; i++) {
        if (i == 4 || i == 7) {
            if (s[i] != '-')
                return false;
        } else if (!is_digit(s[i])) {
            return false;
        }
    }
    int mo = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
    return mo >= 1 && mo <= 12 && d >= 1 && d <= 31;
}

/* Printable ASCII without space, 1..max bytes. */
static bool token_ok(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

static bool time_ok(const char *s, size_t len)
{
    if (len < 20 || len > BMF_TIME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_digit(s[i]) && (s[i] == '\0' || !strchr("-T:.+Z", s[i])))
            return false;
    return true;
}

static bool path_ok(const char *s, size_t len)
{
    if (len == 0 || len > KR_BACKUP_PATH_MAX)
        return false;
    if (len == strlen(BMF_NAME) && memcmp(s, BMF_NAME, len) == 0)
        return false;
    size_t comp = 0; /* length of the current component */
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            if (comp == 0)
                return false; /* leading, trailing or double slash */
            if ((comp == 1 && s[start] == '.') ||
                (comp == 2 && s[start] == '.' && s[start + 1] == '.'))
                return false;
            comp = 0;
            start = i + 1;
            continue;
        }
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
              c == '_' || c == '-'))
            return false;
        comp++;
    }
    return true;
}

static bool mode_ok(uint32_t mode)
{
    return (mode & ~0755u) == 0 && (mode & 0400u) != 0;
}

/* ---- Writing ---- */

struct out {
    char *p;
    size_t cap, len;
    bool overflow;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len)
        o->overflow = true;
    else
        o->len += (size_t)n;
}

static void put_b64(struct out *o, const uint8_t *b, size_t n)
{
    size_t need = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    if (o->overflow || need > o->cap - o->len) {
        o->overflow = true;
        return;
    }
    sodium_bin2base64(o->p + o->len, o->cap - o->len, b, n, sodium_base64_VARIANT_ORIGINAL);
    o->len += need - 1;
}

static void put_hex(struct out *o, const uint8_t *b, size_t n)
{
    if (o->overflow || 2 * n + 1 > o->cap - o->len) {
        o->overflow = true;
        return;
    }
    sodium_bin2hex(o->p + o->len, o->cap - o->len, b, n);
    o->len += 2 * n;
}

kr_err bmf_write(struct bmf_manifest *m, const struct kr_signing_key *key, char *out, size_t cap,
                 size_t *len)
{
    const size_t dlen = sizeof BMF_SIGN_DOMAIN - 1;
    if (cap > KR_BACKUP_MANIFEST_MAX + dlen)
        cap = KR_BACKUP_MANIFEST_MAX + dlen;
    if (!token_ok(m->kiroku_version, strlen(m->kiroku_version), BMF_VERSION_MAX) ||
        !bmf_gen_name_ok(m->generation) || !token_ok(m->origin, strlen(m->origin), KR_ORIGIN_MAX) ||
        m->last_seq == 0 || !time_ok(m->time_utc, strlen(m->time_utc)) ||
        !time_ok(m->time_jst, strlen(m->time_jst)) || m->checkpoint_len == 0 ||
        m->checkpoint_len > KR_NOTE_MAX || m->nkeyrecs == 0 || m->nfiles > KR_BACKUP_FILES_MAX ||
        key->key_id == 0)
        return KR_EINVAL;
    for (size_t i = 0; i < m->nfiles; i++)
        if (!path_ok(m->files[i].path, strlen(m->files[i].path)) || !mode_ok(m->files[i].mode) ||
            (i > 0 && strcmp(m->files[i - 1].path, m->files[i].path) >= 0))
            return KR_EINVAL;
    /* The signing input is the domain and the text: write the domain first,
     * sign, then move the text to the front. */
    struct out o = {out, cap, 0, false};
    put(&o, "%s", BMF_SIGN_DOMAIN);
    put(&o, "%skiroku-version %s\ngeneration %s\njournal-id ", BMF_MAGIC, m->kiroku_version,
        m->generation);
    put_hex(&o, m->journal_id, sizeof m->journal_id);
    put(&o,
        "\norigin %s\nlast-seq %" PRIu64 "\ntime-ns %" PRIu64 "\ntime-utc %s\ntime-jst %s\n"
        "checkpoint ",
        m->origin, m->last_seq, m->time_ns, m->time_utc, m->time_jst);
    put_b64(&o, (const uint8_t *)m->checkpoint, m->checkpoint_len);
    for (size_t i = 0; i < m->nkeyrecs; i++) {
        put(&o, "\nkey-record ");
        put_b64(&o, m->keybuf + m->keyrec_off[i], m->keyrec_len[i]);
    }
    put(&o, "\n");
    for (size_t i = 0; i < m->nfiles; i++) {
        const struct bmf_file *f = &m->files[i];
        put(&o, "file ");
        put_hex(&o, f->sha256, sizeof f->sha256);
        put(&o, " %" PRIu64 " %04o %s\n", f->size, f->mode, f->path);
    }
    put(&o, "signed-by %u\n", key->key_id);
    if (o.overflow)
        return KR_ETOOLARGE;
    m->signed_by = key->key_id;
    crypto_sign_detached(m->sig, NULL, (const uint8_t *)out, o.len, key->sk);
    put(&o, "signature ");
    put_b64(&o, m->sig, sizeof m->sig);
    put(&o, "\n");
    if (o.overflow)
        return KR_ETOOLARGE;
    memmove(out, out + dlen, o.len - dlen);
    *len = o.len - dlen;
    return KR_OK;
}

/* ---- Parsing ---- */

struct lines {
    const char *p, *end;
    unsigned no;      /* line number of the current line, from 1 */
    const char *line; /* current line, without its "\n" */
    size_t len;
};

/* Takes the next line; false at the end or when the text does not end in "\n". */
static bool next_line(struct lines *l)
{
    if (l->p >= l->end)
        return false;
    const char *nl = memchr(l->p, '\n', (size_t)(l->end - l->p));
    if (!nl)
        return false;
    l->line = l->p;
    l->len = (size_t)(nl - l->p);
    l->p = nl + 1;
    l->no++;
    return true;
}

/* True when the current line is "<key> <value>"; sets *v and *vlen. */
static bool field(const struct lines *l, const char *key, const char **v, size_t *vlen)
{
    size_t k = strlen(key);
    if (l->len < k + 2 || memcmp(l->line, key, k) != 0 || l->line[k] != ' ')
        return false;
    *v = l->line + k + 1;
    *vlen = l->len - k - 1;
    return true;
}

static bool parse_dec(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool parse_hex(const char *s, size_t len, uint8_t *out, size_t n)
{
    if (len != 2 * n)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_digit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    size_t got = 0;
    return sodium_hex2bin(out, n, s, len, NULL, &got, NULL) == 0 && got == n;
}

static bool copy_str(char *dst, size_t cap, const char *s, size_t len)
{
    if (len >= cap)
        return false;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

static void line_fail(char *why, size_t cap, unsigned no, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void line_fail(char *why, size_t cap, unsigned no, const char *fmt, ...)
{
    int n = snprintf(why, cap, "manifest line %u: ", no);
    if (n < 0 || (size_t)n >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    vsnprintf(why + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        line_fail(why, cap, l->no, __VA_ARGS__);                                                   \
        return KR_ECORRUPT;                                                                        \
    } while (0)

/* The header lines, magic to checkpoint. */
static kr_err parse_head(struct lines *l, struct bmf_manifest *m, char *why, size_t cap)
{
    const char *v;
    size_t vl;
    if (!next_line(l) || l->len + 1 != sizeof BMF_MAGIC - 1 ||
        memcmp(l->line, BMF_MAGIC, l->len) != 0)
        FAIL("not a kiroku backup manifest (or an unknown format version)");
    if (!next_line(l) || !field(l, "kiroku-version", &v, &vl) ||
        !token_ok(v, vl, BMF_VERSION_MAX) ||
        !copy_str(m->kiroku_version, sizeof m->kiroku_version, v, vl))
        FAIL("expected kiroku-version");
    if (!next_line(l) || !field(l, "generation", &v, &vl) ||
        !copy_str(m->generation, sizeof m->generation, v, vl) || !bmf_gen_name_ok(m->generation))
        FAIL("expected generation YYYY-MM-DD");
    if (!next_line(l) || !field(l, "journal-id", &v, &vl) ||
        !parse_hex(v, vl, m->journal_id, sizeof m->journal_id))
        FAIL("expected journal-id (32 hex digits)");
    if (!next_line(l) || !field(l, "origin", &v, &vl) || !token_ok(v, vl, KR_ORIGIN_MAX) ||
        !copy_str(m->origin, sizeof m->origin, v, vl))
        FAIL("expected origin");
    if (!next_line(l) || !field(l, "last-seq", &v, &vl) ||
        !parse_dec(v, vl, UINT64_MAX, &m->last_seq) || m->last_seq == 0)
        FAIL("expected last-seq");
    if (!next_line(l) || !field(l, "time-ns", &v, &vl) ||
        !parse_dec(v, vl, UINT64_MAX, &m->time_ns))
        FAIL("expected time-ns");
    if (!next_line(l) || !field(l, "time-utc", &v, &vl) || !time_ok(v, vl) ||
        !copy_str(m->time_utc, sizeof m->time_utc, v, vl))
        FAIL("expected time-utc");
    if (!next_line(l) || !field(l, "time-jst", &v, &vl) || !time_ok(v, vl) ||
        !copy_str(m->time_jst, sizeof m->time_jst, v, vl))
        FAIL("expected time-jst");
    if (!next_line(l) || !field(l, "checkpoint", &v, &vl) ||
        kr_b64_decode((uint8_t *)m->checkpoint, KR_NOTE_MAX, v, vl, &m->checkpoint_len) != KR_OK ||
        m->checkpoint_len == 0)
        FAIL("expected checkpoint (base64 of a signed note)");
    m->checkpoint[m->checkpoint_len] = '\0';
    if (!next_line(l))
        FAIL("ends early");
    return KR_OK;
}

/* The key records, into m->keybuf. */
static kr_err parse_keyrecs(struct lines *l, struct bmf_manifest *m, char *why, size_t cap)
{
    const char *v;
    size_t vl;
    while (field(l, "key-record", &v, &vl)) {
        size_t got = 0;
        if (m->nkeyrecs >= KR_BACKUP_KEYRECS_MAX)
            FAIL("more than %u key records", (unsigned)KR_BACKUP_KEYRECS_MAX);
        size_t room = KR_BACKUP_MANIFEST_MAX - m->keybuf_used;
        if (room > KR_BACKUP_KEYREC_MAX)
            room = KR_BACKUP_KEYREC_MAX;
        if (kr_b64_decode(m->keybuf + m->keybuf_used, room, v, vl, &got) != KR_OK || got == 0)
            FAIL("key-record is not base64 of at most %u bytes", (unsigned)KR_BACKUP_KEYREC_MAX);
        m->keyrec_off[m->nkeyrecs] = m->keybuf_used;
        m->keyrec_len[m->nkeyrecs] = got;
        m->keybuf_used += got;
        m->nkeyrecs++;
        if (!next_line(l))
            FAIL("ends early");
    }
    if (m->nkeyrecs == 0)
        FAIL("expected key-record");
    return KR_OK;
}

/* The file lines: <64 hex> <size> <4 octal> <path>, paths in order. */
static kr_err parse_files(struct lines *l, struct bmf_manifest *m, char *why, size_t cap)
{
    const char *v;
    size_t vl;
    while (field(l, "file", &v, &vl)) {
        if (m->nfiles >= KR_BACKUP_FILES_MAX)
            FAIL("more than %u files", (unsigned)KR_BACKUP_FILES_MAX);
        struct bmf_file *f = &m->files[m->nfiles];
        const char *sp1 = memchr(v, ' ', vl);
        if (!sp1 || !parse_hex(v, (size_t)(sp1 - v), f->sha256, sizeof f->sha256))
            FAIL("file: expected a SHA-256 in hex");
        const char *rest = sp1 + 1, *end = v + vl;
        const char *sp2 = memchr(rest, ' ', (size_t)(end - rest));
        if (!sp2 || !parse_dec(rest, (size_t)(sp2 - rest), UINT64_MAX, &f->size))
            FAIL("file: expected a size");
        rest = sp2 + 1;
        if (end - rest < 6 || rest[4] != ' ')
            FAIL("file: expected a mode");
        uint32_t mode = 0;
        for (int i = 0; i < 4; i++) {
            if (rest[i] < '0' || rest[i] > '7')
                FAIL("file: expected a mode");
            mode = mode * 8 + (uint32_t)(rest[i] - '0');
        }
        if (!mode_ok(mode))
            FAIL("file: mode %04o not allowed", mode);
        f->mode = mode;
        rest += 5;
        if (!path_ok(rest, (size_t)(end - rest)) ||
            !copy_str(f->path, sizeof f->path, rest, (size_t)(end - rest)))
            FAIL("file: bad path");
        if (m->nfiles > 0 && strcmp(m->files[m->nfiles - 1].path, f->path) >= 0)
            FAIL("file: paths out of order or repeated");
        m->nfiles++;
        if (!next_line(l))
            FAIL("ends early");
    }
    return KR_OK;
}

/* The signer, the signature and nothing after it. */
static kr_err parse_tail(struct lines *l, struct bmf_manifest *m, char *why, size_t cap)
{
    const char *v;
    size_t vl;
    uint64_t n;
    if (!field(l, "signed-by", &v, &vl) || !parse_dec(v, vl, UINT32_MAX, &n) || n == 0)
        FAIL("expected signed-by");
    m->signed_by = (uint32_t)n;
    if (!next_line(l) || !field(l, "signature", &v, &vl))
        FAIL("expected signature");
    size_t got = 0;
    if (kr_b64_decode(m->sig, sizeof m->sig, v, vl, &got) != KR_OK || got != sizeof m->sig)
        FAIL("signature is not base64 of 64 bytes");
    if (l->p != l->end)
        FAIL("text after the signature");
    return KR_OK;
}

kr_err bmf_parse(const char *text, size_t len, struct bmf_manifest *m, char *why, size_t cap)
{
    uint8_t *keybuf = m->keybuf;
    memset(m, 0, sizeof *m);
    m->keybuf = keybuf;
    if (len > KR_BACKUP_MANIFEST_MAX) {
        snprintf(why, cap, "manifest: larger than %zu bytes", (size_t)KR_BACKUP_MANIFEST_MAX);
        return KR_ETOOLARGE;
    }
    struct lines l = {text, text + len, 0, NULL, 0};
    kr_err err;
    if ((err = parse_head(&l, m, why, cap)) || (err = parse_keyrecs(&l, m, why, cap)) ||
        (err = parse_files(&l, m, why, cap)) || (err = parse_tail(&l, m, why, cap)))
        return err;
    return KR_OK;
}

#undef FAIL

/* ---- Verifying ---- */

static bool key_type(const struct jrn_record *r)
{
    if (jrn_type_is(r, JRN_TYPE_KEY_ADDED))
        return true;
    return jrn_type_is(r, JRN_TYPE_EPOCH_STARTED);
}

#define BAD(err_, ...)                                                                             \
    do {                                                                                           \
        snprintf(why, cap, __VA_ARGS__);                                                           \
        return err_;                                                                               \
    } while (0)

/* Checks the key chain into *c. */
kr_err bmf_verify_chain(const struct bmf_manifest *m, const uint8_t trusted_pk[KR_PUBKEY_LEN],
                        struct bmf_chain *c, char *why, size_t cap)
{
    uint64_t last_seq = 0;
    c->n = 0;
    if (m->nkeyrecs == 0 || m->nkeyrecs > KR_BACKUP_KEYRECS_MAX)
        BAD(KR_ECORRUPT, "manifest signature: no key records");
    for (size_t i = 0; i < m->nkeyrecs; i++) {
        struct jrn_record r;
        struct jrn_key_payload kp;
        uint8_t h[KR_HASH_LEN];
        uint8_t input[JRN_SIGN_INPUT_MAX];
        size_t ilen;
        if (jrn_record_decode(m->keybuf + m->keyrec_off[i], m->keyrec_len[i], &r) != KR_OK ||
            jrn_record_check_fields(&r) != KR_OK)
            BAD(KR_ECORRUPT, "manifest signature: key record %zu does not decode", i + 1);
        if (!jrn_is_system(&r) || r.version != i + 1 || r.seq <= last_seq || r.seq > m->last_seq ||
            (i == 0) != (r.seq == 1) ||
            (i == 0 ? !jrn_type_is(&r, JRN_TYPE_CREATED) : !key_type(&r)))
            BAD(KR_ECORRUPT, "manifest signature: key record %zu (seq %" PRIu64 ") is misplaced",
                i + 1, r.seq);
        if (r.payload_stripped || jrn_parse_key_payload(r.payload, r.payload_len, &kp) != KR_OK)
            BAD(KR_ECORRUPT, "manifest signature: key record at seq %" PRIu64 " is malformed",
                r.seq);
        kr_sha256(h, r.payload, r.payload_len);
        if (sodium_memcmp(h, r.commitment, KR_HASH_LEN) != 0)
            BAD(KR_ECORRUPT,
                "manifest signature: key record at seq %" PRIu64 " does not match its commitment",
                r.seq);
        const uint8_t *signer;
        if (i == 0) {
            if (kp.key_id != 1 || r.key_id != 1 ||
                sodium_memcmp(kp.pk, trusted_pk, KR_PUBKEY_LEN) != 0)
                BAD(KR_EBADSIG, "manifest signature: the journal's key 1 is not the trusted "
                                "public key");
            if (!kp.has_genesis ||
                memcmp(kp.journal_id, m->journal_id, sizeof m->journal_id) != 0 ||
                kp.origin_len != strlen(m->origin) ||
                memcmp(kp.origin, m->origin, kp.origin_len) != 0)
                BAD(KR_ECORRUPT, "manifest signature: journal-id or origin is not the journal's");
            signer = kp.pk;
        } else {
            if (r.key_id != c->key_id[c->n - 1])
                BAD(KR_EBADSIG,
                    "manifest signature: key record at seq %" PRIu64
                    " is not signed by the key before it",
                    r.seq);
            for (size_t k = 0; k < c->n; k++)
                if (c->key_id[k] == kp.key_id)
                    BAD(KR_ECORRUPT, "manifest signature: key %u introduced twice", kp.key_id);
            signer = c->pk[c->n - 1];
        }
        jrn_record_sign_input(&r, input, &ilen);
        if (crypto_sign_verify_detached(r.sig, input, ilen, signer) != 0)
            BAD(KR_EBADSIG, "manifest signature: key record at seq %" PRIu64 " has a bad signature",
                r.seq);
        c->key_id[c->n] = kp.key_id;
        memcpy(c->pk[c->n], kp.pk, KR_PUBKEY_LEN);
        c->n++;
        last_seq = r.seq;
    }
    return KR_OK;
}

kr_err bmf_verify(const struct bmf_manifest *m, const char *text, size_t len,
                  const uint8_t trusted_pk[KR_PUBKEY_LEN], struct bmf_chain *chain, char *why,
                  size_t cap)
{
    struct bmf_chain *c = chain ? chain : malloc(sizeof *c);
    struct kr_note_key *nk = NULL;
    uint8_t *msg = NULL;
    kr_err err = KR_OK;
    if (!c)
        return KR_ENOMEM;
    if (sodium_init() < 0) {
        err = KR_ECRYPTO;
        goto out;
    }
    if ((err = bmf_verify_chain(m, trusted_pk, c, why, cap)))
        goto out;
    if (m->signed_by != c->key_id[c->n - 1]) {
        snprintf(why, cap, "manifest signature: signed by key %u, the journal's key is %u",
                 m->signed_by, c->key_id[c->n - 1]);
        err = KR_EBADSIG;
        goto out;
    }
    /* The signed text ends where the "signature " line starts: the last line. */
    const char *sigline = NULL;
    for (size_t i = len - 1; i > 0; i--) {
        if (text[i - 1] == '\n') {
            sigline = text + i;
            break;
        }
    }
    size_t slen = sigline ? (size_t)(sigline - text) : 0;
    const size_t dlen = sizeof BMF_SIGN_DOMAIN - 1;
    if (!sigline || strncmp(sigline, "signature ", 10) != 0 || !(msg = malloc(dlen + slen))) {
        snprintf(why, cap, "manifest signature: no signature line");
        err = sigline ? KR_ENOMEM : KR_ECORRUPT;
        goto out;
    }
    memcpy(msg, BMF_SIGN_DOMAIN, dlen);
    memcpy(msg + dlen, text, slen);
    if (crypto_sign_verify_detached(m->sig, msg, dlen + slen, c->pk[c->n - 1]) != 0) {
        snprintf(why, cap, "manifest signature: does not verify with key %u", m->signed_by);
        err = KR_EBADSIG;
        goto out;
    }
    /* The checkpoint: by a key of the chain, for this journal, at last-seq. */
    if (!(nk = calloc(c->n, sizeof *nk))) {
        err = KR_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < c->n; i++) {
        snprintf(nk[i].name, sizeof nk[i].name, "%s", m->origin);
        memcpy(nk[i].pk, c->pk[i], KR_PUBKEY_LEN);
        nk[i].key_id = c->key_id[i];
    }
    struct kr_checkpoint cp;
    uint32_t kid;
    kr_err cerr = kr_checkpoint_open(m->checkpoint, m->checkpoint_len, nk, c->n, &cp, &kid);
    if (cerr) {
        snprintf(why, cap, "manifest checkpoint: %s", kr_strerror(cerr));
        err = cerr == KR_EBADSIG ? KR_EBADSIG : KR_ECORRUPT;
    } else if (strcmp(cp.origin, m->origin) != 0 || cp.size != m->last_seq) {
        snprintf(why, cap, "manifest checkpoint: covers %" PRIu64 " records, last-seq is %" PRIu64,
                 cp.size, m->last_seq);
        err = KR_ECORRUPT;
    }
out:
    free(nk);
    free(msg);
    if (c != chain)
        free(c);
    return err;
}
