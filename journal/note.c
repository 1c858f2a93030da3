/*
 * note.c: signing and opening checkpoints as C2SP signed notes.
 *
 * Design notes
 * - kr_checkpoint_open() reads notes from anywhere (witnesses, peers, files),
 *   so it is a strict, allocation-free parser over a bounded input: whole-note
 *   syntax first, then signatures, and only then the checkpoint body, so the
 *   body parser never sees text that no trusted key vouched for.
 * - Base64 is decoded with libsodium, which insists on canonical padded
 *   encodings; a lenient decoder would let one signature be spelled several
 *   ways, and the note would no longer be a single byte string per checkpoint.
 * - Key hashes and signatures are public, so plain memcmp is fine here; the
 *   only secret, sk, is never copied (libsodium wipes its own temporaries).
 */
#include "note.h"

#include "b64.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

/* "— ": U+2014 EM DASH and a space start every signature line. */
#define NOTE_SIG_PREFIX     "\xE2\x80\x94 "
#define NOTE_SIG_PREFIX_LEN (sizeof NOTE_SIG_PREFIX - 1)
/* Ed25519's signature type byte in the key hash (signed-note "Signature types"). */
#define NOTE_TYPE_ED25519 0x01
/* A signature line's payload: key hash then the Ed25519 signature. */
#define NOTE_SIG_LEN (KR_NOTE_KEY_HASH_LEN + crypto_sign_BYTES)
/* Base64 lengths without the NUL that sodium_base64_ENCODED_LEN counts. */
#define NOTE_ROOT_B64_LEN                                                                          \
    (sodium_base64_ENCODED_LEN(KR_HASH_LEN, sodium_base64_VARIANT_ORIGINAL) - 1)
#define NOTE_SIG_B64_LEN                                                                           \
    (sodium_base64_ENCODED_LEN(NOTE_SIG_LEN, sodium_base64_VARIANT_ORIGINAL) - 1)
/* Decimal digits of UINT64_MAX. */
#define NOTE_U64_DIGITS 20

_Static_assert(KR_NOTE_PK_LEN == crypto_sign_PUBLICKEYBYTES, "Ed25519 public key size");
_Static_assert(KR_NOTE_SK_LEN == crypto_sign_SECRETKEYBYTES, "Ed25519 secret key size");
/* The largest note we sign must open again. */
_Static_assert(KR_ORIGIN_MAX + 1 + NOTE_U64_DIGITS + 1 + NOTE_ROOT_B64_LEN + 1 + 1 +
                       NOTE_SIG_PREFIX_LEN + KR_ORIGIN_MAX + 1 + NOTE_SIG_B64_LEN + 1 <=
                   KR_NOTE_MAX,
               "KR_NOTE_MAX too small for a checkpoint with one signature");

/* Length of the shortest-form UTF-8 sequence of one Unicode scalar value at
 * p[0..n) (RFC 3629), with its code point in *cp; 0 if there is none. */
static size_t note_utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
    uint32_t b = p[0];
    size_t len;
    uint32_t c, min;

    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
        c = b & 0x1Fu;
        min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        c = b & 0x0Fu;
        min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        c = b & 0x07u;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0u) != 0x80u)
            return 0;
        c = (c << 6) | (p[i] & 0x3Fu);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

/* Whether p[0..n) is valid UTF-8 without ASCII control characters, newlines
 * allowed only if `newlines`: the signed-note rule for a whole note. */
static bool note_text_ok(const uint8_t *p, size_t n, bool newlines)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        size_t k = note_utf8_next(p + i, n - i, &c);
        if (k == 0 || (c < 0x20 && !(c == '\n' && newlines)))
            return false;
        i += k;
    }
    return true;
}

/* Unicode White_Space, which signed-note forbids in key names (the reference
 * implementation tests Go's unicode.IsSpace, the same set). */
static bool note_is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Whether a key name read from a note is one the spec allows: non-empty, no
 * spaces, no '+'. The whole note was already checked to be UTF-8. */
static bool note_spec_name_ok(const uint8_t *p, size_t n)
{
    if (n == 0)
        return false;
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        size_t k = note_utf8_next(p + i, n - i, &c);
        if (k == 0 || c == '+' || note_is_space(c))
            return false;
        i += k;
    }
    return true;
}

/* Length of a kiroku key name (note.h: printable ASCII but ' ' and '+',
 * 1..KR_ORIGIN_MAX bytes), or 0 if it breaks that rule. Stricter than the spec
 * so that names print, compare and store without surprises. */
static size_t note_key_name_len(const char *name)
{
    size_t n = strnlen(name, KR_ORIGIN_MAX + 1);
    if (n == 0 || n > KR_ORIGIN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x21 || c > 0x7E || c == '+')
            return 0;
    }
    return n;
}

kr_err kr_note_key_hash(const char *name, const uint8_t pk[KR_NOTE_PK_LEN],
                        uint8_t out[KR_NOTE_KEY_HASH_LEN])
{
    if (name == NULL || pk == NULL || out == NULL)
        return KR_EINVAL;
    size_t n = note_key_name_len(name);
    if (n == 0)
        return KR_EINVAL;

    static const uint8_t sep[2] = {'\n', NOTE_TYPE_ED25519};
    struct kr_sha256_ctx ctx;
    uint8_t h[KR_HASH_LEN];
    kr_sha256_init(&ctx);
    kr_sha256_update(&ctx, name, n);
    kr_sha256_update(&ctx, sep, sizeof sep);
    kr_sha256_update(&ctx, pk, KR_NOTE_PK_LEN);
    kr_sha256_final(&ctx, h);
    memcpy(out, h, KR_NOTE_KEY_HASH_LEN);
    return KR_OK;
}

/* Write v in decimal without leading zeros; returns the number of digits. */
static size_t note_u64_format(uint64_t v, char buf[NOTE_U64_DIGITS])
{
    char rev[NOTE_U64_DIGITS];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = rev[n - 1 - i];
    return n;
}

/* Parse the tree size: "0", or digits without a leading zero, at most
 * UINT64_MAX. No sign, no spaces. */
static bool note_u64_parse(const uint8_t *s, size_t n, uint64_t *v)
{
    if (n == 0 || n > NOTE_U64_DIGITS || (s[0] == '0' && n > 1))
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

kr_err kr_checkpoint_sign(const struct kr_checkpoint *cp, const char *key_name,
                          const uint8_t pk[KR_NOTE_PK_LEN], const uint8_t sk[KR_NOTE_SK_LEN],
                          char *out, size_t cap, size_t *out_len)
{
    if (out != NULL && cap > 0)
        out[0] = '\0';
    if (cp == NULL || key_name == NULL || pk == NULL || sk == NULL || out == NULL ||
        out_len == NULL)
        return KR_EINVAL;

    size_t origin_len = strnlen(cp->origin, sizeof cp->origin);
    if (origin_len == 0 || origin_len > KR_ORIGIN_MAX ||
        !note_text_ok((const uint8_t *)cp->origin, origin_len, false))
        return KR_EINVAL;

    uint8_t sig[NOTE_SIG_LEN];
    kr_err err = kr_note_key_hash(key_name, pk, sig);
    if (err != KR_OK)
        return err;
    size_t name_len = strlen(key_name);

    if (sodium_init() < 0)
        return KR_ECRYPTO;
    /* libsodium's sk is seed || pk and signs with that embedded pk, so a
     * mismatch would give a key hash naming a key that did not sign. */
    if (memcmp(sk + crypto_sign_SEEDBYTES, pk, KR_NOTE_PK_LEN) != 0)
        return KR_EKEY;

    char size_dec[NOTE_U64_DIGITS];
    size_t size_len = note_u64_format(cp->size, size_dec);
    char root_b64[NOTE_ROOT_B64_LEN + 1];
    sodium_bin2base64(root_b64, sizeof root_b64, cp->root, KR_HASH_LEN,
                      sodium_base64_VARIANT_ORIGINAL);

    size_t body_len = origin_len + 1 + size_len + 1 + NOTE_ROOT_B64_LEN + 1;
    size_t note_len = body_len + 1 + NOTE_SIG_PREFIX_LEN + name_len + 1 + NOTE_SIG_B64_LEN + 1;
    if (cap <= note_len)
        return KR_ETOOLARGE;

    char *p = out;
    memcpy(p, cp->origin, origin_len);
    p += origin_len;
    *p++ = '\n';
    memcpy(p, size_dec, size_len);
    p += size_len;
    *p++ = '\n';
    memcpy(p, root_b64, NOTE_ROOT_B64_LEN);
    p += NOTE_ROOT_B64_LEN;
    *p++ = '\n';

    const unsigned char *body = (const unsigned char *)out;
    if (crypto_sign_detached(sig + KR_NOTE_KEY_HASH_LEN, NULL, body, body_len, sk) != 0) {
        out[0] = '\0';
        return KR_ECRYPTO;
    }
    char sig_b64[NOTE_SIG_B64_LEN + 1];
    sodium_bin2base64(sig_b64, sizeof sig_b64, sig, sizeof sig, sodium_base64_VARIANT_ORIGINAL);
    *p++ = '\n';
    memcpy(p, NOTE_SIG_PREFIX, NOTE_SIG_PREFIX_LEN);
    p += NOTE_SIG_PREFIX_LEN;
    memcpy(p, key_name, name_len);
    p += name_len;
    *p++ = ' ';
    memcpy(p, sig_b64, NOTE_SIG_B64_LEN);
    p += NOTE_SIG_B64_LEN;
    *p++ = '\n';
    *p = '\0';
    *out_len = note_len;
    return KR_OK;
}

/* The next "\n"-terminated line of p[0..n) at *pos, advancing *pos past it;
 * NULL at the end. p[n - 1] must be '\n'. */
static const uint8_t *note_next_line(const uint8_t *p, size_t n, size_t *pos, size_t *line_len)
{
    if (*pos >= n)
        return NULL;
    const uint8_t *line = p + *pos;
    const uint8_t *nl = memchr(line, '\n', n - *pos);
    *line_len = (size_t)(nl - line);
    *pos += *line_len + 1;
    return line;
}

/* Parse a tlog-checkpoint body text[0..n), which ends in '\n'. */
static kr_err note_parse_body(const uint8_t *text, size_t n, struct kr_checkpoint *cp)
{
    size_t pos = 0, len;
    const uint8_t *line;

    line = note_next_line(text, n, &pos, &len);
    if (line == NULL || len == 0 || len > KR_ORIGIN_MAX)
        return KR_ECORRUPT;
    memcpy(cp->origin, line, len);
    cp->origin[len] = '\0';

    line = note_next_line(text, n, &pos, &len);
    if (line == NULL || !note_u64_parse(line, len, &cp->size))
        return KR_ECORRUPT;

    line = note_next_line(text, n, &pos, &len);
    size_t root_len;
    if (line == NULL || len != NOTE_ROOT_B64_LEN ||
        kr_b64_decode(cp->root, sizeof cp->root, (const char *)line, len, &root_len) != KR_OK ||
        root_len != KR_HASH_LEN)
        return KR_ECORRUPT;

    /* Extension lines: opaque to us, but the spec wants them non-empty. */
    while (note_next_line(text, n, &pos, &len) != NULL) {
        if (len == 0)
            return KR_ECORRUPT;
    }
    return KR_OK;
}

/* A signature line whose name and key hash match a known key. */
struct note_claim {
    size_t key;  /* index into the caller's keys */
    bool len_ok; /* the payload was exactly key hash + Ed25519 signature */
    uint8_t sig[crypto_sign_BYTES];
};

kr_err kr_checkpoint_open(const char *note, size_t len, const struct kr_note_key *keys,
                          size_t nkeys, struct kr_checkpoint *out, uint32_t *key_id)
{
    if (note == NULL || out == NULL || key_id == NULL || (nkeys > 0 && keys == NULL) ||
        nkeys > KR_KEYS_MAX)
        return KR_EINVAL;

    uint8_t key_hash[KR_KEYS_MAX][KR_NOTE_KEY_HASH_LEN];
    for (size_t k = 0; k < nkeys; k++) {
        kr_err err = kr_note_key_hash(keys[k].name, keys[k].pk, key_hash[k]);
        if (err != KR_OK)
            return err;
    }

    if (len > KR_NOTE_MAX)
        return KR_ETOOLARGE;
    const uint8_t *p = (const uint8_t *)note;
    if (len == 0 || p[len - 1] != '\n' || !note_text_ok(p, len, true))
        return KR_ECORRUPT;

    /* The body ends at the last blank line: it may hold blank lines itself,
     * while signature lines never are blank. */
    size_t text_len = 0;
    for (size_t i = len - 1; i > 0; i--) {
        if (p[i] == '\n' && p[i - 1] == '\n') {
            text_len = i;
            break;
        }
    }
    if (text_len == 0 || text_len + 1 == len)
        return KR_ECORRUPT;

    /* Pass 1: the syntax of every signature line, and which are ours. */
    struct note_claim claims[KR_NOTE_MAX_SIGS];
    size_t nclaims = 0, nlines = 0;
    uint8_t bin[KR_NOTE_MAX / 4 * 3];
    size_t pos = text_len + 1, line_len;
    const uint8_t *line;
    while ((line = note_next_line(p, len, &pos, &line_len)) != NULL) {
        if (++nlines > KR_NOTE_MAX_SIGS)
            return KR_ECORRUPT;
        if (line_len < NOTE_SIG_PREFIX_LEN ||
            memcmp(line, NOTE_SIG_PREFIX, NOTE_SIG_PREFIX_LEN) != 0)
            return KR_ECORRUPT;
        const uint8_t *name = line + NOTE_SIG_PREFIX_LEN;
        size_t rest = line_len - NOTE_SIG_PREFIX_LEN;
        const uint8_t *space = memchr(name, ' ', rest);
        if (space == NULL)
            return KR_ECORRUPT;
        size_t name_len = (size_t)(space - name);
        if (!note_spec_name_ok(name, name_len))
            return KR_ECORRUPT;
        size_t b64_len = rest - name_len - 1, bin_len;
        if (kr_b64_decode(bin, sizeof bin, (const char *)space + 1, b64_len, &bin_len) != KR_OK ||
            bin_len <= KR_NOTE_KEY_HASH_LEN)
            return KR_ECORRUPT;

        /* Known names end in a NUL within KR_ORIGIN_MAX + 1 bytes; strncmp stops
         * there, and the note has no NUL, so it never reads past a name. */
        for (size_t k = 0; k < nkeys && name_len <= KR_ORIGIN_MAX; k++) {
            if (strncmp(keys[k].name, (const char *)name, name_len) != 0 ||
                keys[k].name[name_len] != '\0' ||
                memcmp(key_hash[k], bin, KR_NOTE_KEY_HASH_LEN) != 0)
                continue;
            struct note_claim *c = &claims[nclaims++];
            c->key = k;
            c->len_ok = bin_len == NOTE_SIG_LEN;
            if (c->len_ok)
                memcpy(c->sig, bin + KR_NOTE_KEY_HASH_LEN, crypto_sign_BYTES);
            break;
        }
    }

    /* Pass 2: every claim by a known key must hold; one is needed. */
    if (nclaims == 0)
        return KR_EBADSIG;
    if (sodium_init() < 0)
        return KR_ECRYPTO;
    for (size_t i = 0; i < nclaims; i++) {
        if (!claims[i].len_ok ||
            crypto_sign_verify_detached(claims[i].sig, p, text_len, keys[claims[i].key].pk) != 0)
            return KR_EBADSIG;
    }

    /* Pass 3: only now is the text worth reading. */
    struct kr_checkpoint cp;
    kr_err err = note_parse_body(p, text_len, &cp);
    if (err != KR_OK)
        return err;
    *out = cp;
    *key_id = keys[claims[0].key].key_id;
    return KR_OK;
}
