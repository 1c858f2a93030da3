/*
 * payload.c: schema-driven encoding, decoding and checking of event payloads
 * and op arguments (see payload.h for the format).
 *
 * Design notes. Decoding is on the replay path, so it avoids work per field
 * that does not depend on the input: keys are matched against the event's
 * field list in schema order (canonical payloads list them in that order), and
 * reset clears only the fields that were set.
 */
#include "payload.h"

#include "endian_be.h"

#include <math.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define PD_KEY    "pd"
#define PD_AD_TAG "kiroku.pd.v1"
#define PD_AD_MAX (sizeof PD_AD_TAG + 8 + 1 + KR_STREAM_MAX + KR_TYPE_MAX)

struct kr_payload *kr_payload_new(void)
{
    struct kr_payload *p = malloc(sizeof *p);
    if (!p)
        return NULL;
    memset(p, 0, offsetof(struct kr_payload, arena));
    p->ev = -1;
    return p;
}

void kr_payload_free(struct kr_payload *p)
{
    if (!p)
        return;
    kr_payload_reset(p, -1);
    free(p);
}

void kr_payload_reset(struct kr_payload *p, int ev)
{
    for (uint32_t i = 0; i < p->nused; i++)
        memset(&p->v[p->used[i]], 0, sizeof p->v[0]);
    p->nused = 0;
    if (p->arena_used)
        sodium_memzero(p->arena, p->arena_used);
    p->arena_used = 0;
    p->pd_sealed = false;
    p->ev = ev;
}

static struct kr_value *slot(struct kr_payload *p, int fld)
{
    KR_ASSERT(fld >= 0 && fld < KR_FLD__COUNT);
    struct kr_value *v = &p->v[fld];
    if (!v->set) {
        KR_ASSERT(p->nused < KR_FLD__COUNT);
        p->used[p->nused++] = (uint16_t)fld;
    }
    memset(v, 0, sizeof *v);
    v->set = true;
    return v;
}

void kr_set_u64(struct kr_payload *p, int fld, uint64_t x)
{
    slot(p, fld)->u = x;
}

void kr_set_bool(struct kr_payload *p, int fld, bool x)
{
    slot(p, fld)->b = x;
}

void kr_set_bytes(struct kr_payload *p, int fld, const void *b, size_t n)
{
    struct kr_value *v = slot(p, fld);
    v->p = b;
    v->n = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

void kr_set_str(struct kr_payload *p, int fld, const char *s)
{
    kr_set_bytes(p, fld, s, strlen(s));
}

void kr_set_tenants(struct kr_payload *p, int fld, const uint64_t *t, size_t n)
{
    kr_set_bytes(p, fld, t, n);
}

void kr_set_value_int(struct kr_payload *p, int fld, int64_t x)
{
    struct kr_value *v = slot(p, fld);
    v->kind = KR_VK_INT;
    v->i = x;
}

void kr_set_value_float(struct kr_payload *p, int fld, double x)
{
    struct kr_value *v = slot(p, fld);
    v->kind = KR_VK_FLOAT;
    v->f = x;
}

void kr_set_value_bool(struct kr_payload *p, int fld, bool x)
{
    struct kr_value *v = slot(p, fld);
    v->kind = KR_VK_BOOL;
    v->b = x;
}

void kr_set_value_str(struct kr_payload *p, int fld, const void *s, size_t n)
{
    kr_set_bytes(p, fld, s, n);
    p->v[fld].kind = KR_VK_STR;
}

static void *arena_take(struct kr_payload *p, size_t n)
{
    size_t at = (p->arena_used + 7u) & ~(size_t)7u;
    if (at > sizeof p->arena || n > sizeof p->arena - at)
        return NULL;
    p->arena_used = at + n;
    return p->arena + at;
}

kr_err kr_set_copy(struct kr_payload *p, int fld, const void *b, size_t n)
{
    void *dst = arena_take(p, n);
    if (!dst)
        return KR_ETOOLARGE;
    memcpy(dst, b, n);
    kr_set_bytes(p, fld, dst, n);
    return KR_OK;
}

/* ---- Checking ---- */

static kr_err fail(struct kr_diag *d, kr_err err, const char *field, const char *why)
{
    if (d) {
        snprintf(d->field, sizeof d->field, "%s", field);
        snprintf(d->why, sizeof d->why, "%s", why);
    }
    return err;
}

/* Valid UTF-8 in shortest form, no surrogates, no NUL; C0 controls other
 * than tab, newline and carriage return refused. */
static bool utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                return false;
            if (c == 0x7f)
                return false;
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1fu, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0fu, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07u, min = 0x10000;
        else
            return false;
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static bool charset_ok(enum kr_charset cs, const uint8_t *s, size_t n)
{
    if (cs == KR_CS_UTF8)
        return utf8_ok(s, n);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        bool lower = c >= 'a' && c <= 'z', digit = c >= '0' && c <= '9';
        bool ok;
        switch (cs) {
        case KR_CS_PRINTABLE:
            ok = c >= 0x21 && c <= 0x7e;
            break;
        case KR_CS_CODE:
            ok = lower || digit || (c == '-' && i > 0 && i + 1 < n);
            break;
        case KR_CS_DIGITS:
            ok = digit;
            break;
        case KR_CS_PHONE:
            ok = digit || c == '+' || c == '-' || c == ' ';
            break;
        case KR_CS_KEY:
            ok = lower || (i > 0 && (digit || c == '_'));
            break;
        case KR_CS_KEY_DOT:
            ok = lower || (i > 0 && (digit || c == '_' || c == '.'));
            break;
        default:
            ok = false;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* RFC 5322 atext: what a dot-atom's atoms are made of. None of the specials
 * (<>()[]:;@\\,." and space) nor controls. */
static bool atext(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* One RFC 5322 addr-spec and nothing else: a dot-atom local part (no quoted
 * strings, no comments) of at most KR_EMAIL_LOCAL_MAX bytes, '@', and a
 * domain of LDH labels (letters, digits, '-' inside) of 1..KR_EMAIL_LABEL_MAX
 * bytes joined by single dots (no address literals). So an address is one
 * recipient: it cannot carry a display name, a second address, a group or a
 * header line into a To: header. */
static bool email_ok(const uint8_t *s, size_t n)
{
    const uint8_t *at = memchr(s, '@', n);
    if (!at)
        return false;
    size_t ln = (size_t)(at - s), dn = n - ln - 1;
    const uint8_t *dom = at + 1;
    if (ln == 0 || ln > KR_EMAIL_LOCAL_MAX || dn == 0)
        return false;
    for (size_t i = 0; i < ln; i++) {
        if (s[i] == '.') {
            if (i == 0 || i + 1 == ln || s[i - 1] == '.')
                return false;
        } else if (!atext(s[i])) {
            return false;
        }
    }
    size_t label = 0;
    for (size_t i = 0; i <= dn; i++) {
        if (i == dn || dom[i] == '.') {
            if (label == 0 || label > KR_EMAIL_LABEL_MAX || dom[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        uint8_t c = dom[i];
        bool ldh = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!ldh && !(c == '-' && label > 0))
            return false;
        label++;
    }
    return true;
}

/* Refuses an enum value, naming every allowed one ("item 3 is not one of
 * the allowed values: a, b, c" for a list item when item >= 0). payload_test
 * checks that every enum's whole list fits kr_diag.why. */
static kr_err fail_enum(struct kr_diag *d, const char *field, int enum_id, long item)
{
    if (!d)
        return KR_EINVAL;
    const struct kr_enum_def *e = &kr_enums[enum_id];
    size_t off = 0, cap = sizeof d->why;
    int w = item >= 0 ? snprintf(d->why, cap, "item %ld is not one of the allowed values: ", item)
                      : snprintf(d->why, cap, "not one of the allowed values: ");
    off = w > 0 && (size_t)w < cap ? (size_t)w : cap - 1;
    for (uint32_t i = 0; i < e->count && off + 1 < cap; i++) {
        w = snprintf(d->why + off, cap - off, "%s%s", i ? ", " : "", e->values[i]);
        off = w > 0 && (size_t)w < cap - off ? off + (size_t)w : cap - 1;
    }
    snprintf(d->field, sizeof d->field, "%s", field);
    return KR_EINVAL;
}

/* An e-mail address in a stored record: the rule it was written under,
 * which was printable ASCII with one '@' between non-empty parts before the
 * addr-spec rule. Old records stay readable; every new value (op arguments,
 * encoding) is held to email_ok. */
static kr_err email_stored_check(int fld, const struct kr_value *v, struct kr_diag *d)
{
    const struct kr_field_def *f = &kr_fields[fld];
    if (v->n > f->max)
        return fail(d, KR_ETOOLARGE, f->name, "too long");
    if (v->n < f->min || !v->p)
        return fail(d, KR_EINVAL, f->name, "too short");
    size_t at = v->n;
    for (size_t i = 0; i < v->n; i++) {
        if (v->p[i] < 0x21 || v->p[i] > 0x7e || (v->p[i] == '@' && at != v->n))
            return fail(d, KR_EINVAL, f->name, "not an e-mail address");
        if (v->p[i] == '@')
            at = i;
    }
    if (at == 0 || at == v->n || at + 1 == v->n)
        return fail(d, KR_EINVAL, f->name, "not an e-mail address");
    return KR_OK;
}

kr_err kr_value_check(int fld, const struct kr_value *v, struct kr_diag *d)
{
    const struct kr_field_def *f = &kr_fields[fld];
    const char *nm = f->name;
    if (!v->set)
        return fail(d, KR_EINVAL, nm, "missing");
    switch (f->type) {
    case KR_FT_ID:
    case KR_FT_HASH: {
        uint32_t want = f->type == KR_FT_ID ? 16 : 32;
        if (!v->p || v->n != want)
            return fail(d, KR_EINVAL, nm,
                        f->type == KR_FT_ID ? "must be a 16-byte id" : "must be 32 bytes");
        return KR_OK;
    }
    case KR_FT_TENANT:
        if (v->u < 1 || v->u > INT64_MAX)
            return fail(d, KR_EINVAL, nm, "not a tenant id");
        return KR_OK;
    case KR_FT_U64:
        if (v->u < f->min || v->u > f->max)
            return fail(d, KR_EINVAL, nm, "out of range");
        return KR_OK;
    case KR_FT_TIME:
    case KR_FT_BOOL:
        return KR_OK;
    case KR_FT_ENUM:
        if (v->u >= kr_enums[f->enum_id].count)
            return fail_enum(d, nm, f->enum_id, -1);
        return KR_OK;
    case KR_FT_BIN:
        if (v->n > f->max)
            return fail(d, KR_ETOOLARGE, nm, "too long");
        if (v->n < f->min || (!v->p && v->n))
            return fail(d, KR_EINVAL, nm, "too short");
        return KR_OK;
    case KR_FT_STR:
    case KR_FT_EMAIL:
        if (v->n > f->max)
            return fail(d, KR_ETOOLARGE, nm, "too long");
        if (v->n < f->min || (!v->p && v->n))
            return fail(d, KR_EINVAL, nm, "too short");
        if (f->type == KR_FT_EMAIL ? !email_ok(v->p, v->n) : !charset_ok(f->charset, v->p, v->n))
            return fail(d, KR_EINVAL, nm,
                        f->type == KR_FT_EMAIL ? "not an e-mail address"
                                               : "has characters not allowed here");
        return KR_OK;
    case KR_FT_VALUE:
        switch (v->kind) {
        case KR_VK_STR:
            if (v->n > f->max)
                return fail(d, KR_ETOOLARGE, nm, "too long");
            if ((!v->p && v->n) || !utf8_ok(v->p, v->n))
                return fail(d, KR_EINVAL, nm, "not valid UTF-8 text");
            return KR_OK;
        case KR_VK_FLOAT:
            if (!isfinite(v->f))
                return fail(d, KR_EINVAL, nm, "not a finite number");
            return KR_OK;
        case KR_VK_INT:
        case KR_VK_BOOL:
            return KR_OK;
        default:
            return fail(d, KR_EINVAL, nm, "wrong type");
        }
    case KR_FT_LIST:
        if (f->of == KR_FT_ENUM) {
            uint32_t cnt = kr_enums[f->enum_id].count;
            if (cnt < 64 && (v->u >> cnt) != 0)
                return fail_enum(d, nm, f->enum_id, -1);
            return KR_OK;
        }
        if (v->n > f->max_items)
            return fail(d, KR_ETOOLARGE, nm, "too many items");
        if (v->n && !v->p)
            return fail(d, KR_EINVAL, nm, "missing items");
        for (uint32_t i = 0; i < v->n; i++) {
            uint64_t t;
            memcpy(&t, v->p + 8 * (size_t)i, 8);
            if (t < 1 || t > INT64_MAX)
                return fail(d, KR_EINVAL, nm, "not a tenant id");
            if (i > 0) {
                uint64_t prev;
                memcpy(&prev, v->p + 8 * (size_t)(i - 1), 8);
                if (prev >= t)
                    return fail(d, KR_EINVAL, nm, "must be increasing, without repeats");
            }
        }
        return KR_OK;
    }
    return fail(d, KR_EINVAL, nm, "unknown type");
}

/* ---- Encoding ---- */

static void pack_raw(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void kr_value_pack(msgpack_packer *pk, int fld, const struct kr_value *v)
{
    const struct kr_field_def *f = &kr_fields[fld];
    switch (f->type) {
    case KR_FT_ID:
    case KR_FT_HASH:
    case KR_FT_BIN:
        msgpack_pack_bin(pk, v->n);
        msgpack_pack_bin_body(pk, v->p, v->n);
        return;
    case KR_FT_TENANT:
    case KR_FT_U64:
    case KR_FT_TIME:
        msgpack_pack_uint64(pk, v->u);
        return;
    case KR_FT_BOOL:
        if (v->b)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        return;
    case KR_FT_STR:
    case KR_FT_EMAIL:
        pack_raw(pk, (const char *)v->p, v->n);
        return;
    case KR_FT_ENUM: {
        const char *s = kr_enums[f->enum_id].values[v->u];
        pack_raw(pk, s, strlen(s));
        return;
    }
    case KR_FT_VALUE:
        switch (v->kind) {
        case KR_VK_STR:
            pack_raw(pk, (const char *)v->p, v->n);
            return;
        case KR_VK_INT:
            msgpack_pack_int64(pk, v->i);
            return;
        case KR_VK_FLOAT:
            msgpack_pack_double(pk, v->f);
            return;
        default:
            if (v->b)
                msgpack_pack_true(pk);
            else
                msgpack_pack_false(pk);
            return;
        }
    case KR_FT_LIST:
        if (f->of == KR_FT_ENUM) {
            const struct kr_enum_def *e = &kr_enums[f->enum_id];
            msgpack_pack_array(pk, (size_t)__builtin_popcountll(v->u));
            for (uint32_t i = 0; i < e->count && i < 64; i++)
                if (v->u >> i & 1u)
                    pack_raw(pk, e->values[i], strlen(e->values[i]));
            return;
        }
        msgpack_pack_array(pk, v->n);
        for (uint32_t i = 0; i < v->n; i++) {
            uint64_t t;
            memcpy(&t, v->p + 8 * (size_t)i, 8);
            msgpack_pack_uint64(pk, t);
        }
        return;
    }
}

kr_err kr_event_stream(const struct kr_payload *p, char *out, size_t cap, size_t *len)
{
    KR_ASSERT(p->ev >= 0 && p->ev < KR_EV__COUNT);
    const struct kr_event_def *e = &kr_events[p->ev];
    size_t pl = strlen(e->stream_prefix);
    if (e->stream_key < 0) {
        if (cap < pl + 1)
            return KR_ETOOLARGE;
        memcpy(out, e->stream_prefix, pl + 1);
        *len = pl;
        return KR_OK;
    }
    const struct kr_value *k = &p->v[e->stream_key];
    if (!k->set || k->n != 16 || !k->p)
        return KR_EINVAL;
    if (cap < pl + 1 + 32 + 1)
        return KR_ETOOLARGE;
    memcpy(out, e->stream_prefix, pl);
    out[pl] = '/';
    sodium_bin2hex(out + pl + 1, 33, k->p, 16);
    *len = pl + 1 + 32;
    return KR_OK;
}

static size_t pd_ad(uint8_t *ad, uint64_t tenant, const char *stream, size_t stream_len,
                    const char *type)
{
    size_t n = 0, tl = strlen(type);
    memcpy(ad, PD_AD_TAG, sizeof PD_AD_TAG - 1);
    n += sizeof PD_AD_TAG - 1;
    kr_put_be64(ad + n, tenant);
    n += 8;
    ad[n++] = (uint8_t)stream_len;
    memcpy(ad + n, stream, stream_len);
    n += stream_len;
    memcpy(ad + n, type, tl); /* NOLINT(bugprone-not-null-terminated-result): bytes, not text */
    return n + tl;
}

kr_err kr_event_encode(const struct kr_payload *p, const struct kr_pd_ctx *pd, uint8_t *out,
                       size_t cap, size_t *len, struct kr_diag *d)
{
    KR_ASSERT(p->ev >= 0 && p->ev < KR_EV__COUNT);
    const struct kr_event_def *e = &kr_events[p->ev];
    bool in_event[KR_FLD__COUNT] = {0};
    uint32_t nplain = 0, npersonal = 0;
    kr_err err;

    for (uint32_t i = 0; i < e->nfields; i++) {
        int fld = e->fields[i].field;
        in_event[fld] = true;
        const struct kr_value *v = &p->v[fld];
        if (!v->set) {
            if (!e->fields[i].optional)
                return fail(d, KR_EINVAL, kr_fields[fld].name, "missing");
            continue;
        }
        if ((err = kr_value_check(fld, v, d)))
            return err;
        if (kr_fields[fld].personal)
            npersonal++;
        else
            nplain++;
    }
    for (uint32_t i = 0; i < p->nused; i++)
        if (!in_event[p->used[i]])
            return fail(d, KR_EINVAL, kr_fields[p->used[i]].name, "not a field of this event");

    struct kr_mp_fixbuf fb = {.p = out, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    msgpack_pack_map(&pk, nplain + (npersonal ? 1u : 0u));
    for (uint32_t i = 0; i < e->nfields; i++) {
        int fld = e->fields[i].field;
        if (!p->v[fld].set || kr_fields[fld].personal)
            continue;
        pack_raw(&pk, kr_fields[fld].name, strlen(kr_fields[fld].name));
        kr_value_pack(&pk, fld, &p->v[fld]);
    }
    if (npersonal) {
        if (!pd || !pd->key)
            return fail(d, KR_EINVAL, PD_KEY, "personal data needs the tenant's key");
        if (pd->stream_len > KR_STREAM_MAX)
            return fail(d, KR_ETOOLARGE, PD_KEY, "stream too long");
        uint8_t *inner = malloc(KR_PAYLOAD_MAX);
        if (!inner)
            return KR_ENOMEM;
        struct kr_mp_fixbuf ib = {.p = inner, .cap = KR_PAYLOAD_MAX};
        msgpack_packer ipk;
        msgpack_packer_init(&ipk, &ib, kr_mp_fixbuf_write);
        msgpack_pack_map(&ipk, npersonal);
        for (uint32_t i = 0; i < e->nfields; i++) {
            int fld = e->fields[i].field;
            if (!p->v[fld].set || !kr_fields[fld].personal)
                continue;
            pack_raw(&ipk, kr_fields[fld].name, strlen(kr_fields[fld].name));
            kr_value_pack(&ipk, fld, &p->v[fld]);
        }
        uint8_t ad[PD_AD_MAX];
        size_t adlen = pd_ad(ad, pd->tenant, pd->stream, pd->stream_len, e->name);
        size_t sealed_len = ib.len + KR_SEAL_OVERHEAD;
        pack_raw(&pk, PD_KEY, 2);
        msgpack_pack_bin(&pk, sealed_len);
        err = KR_OK;
        if (ib.overflow || fb.overflow || cap - fb.len < sealed_len)
            err = fail(d, KR_ETOOLARGE, "", "payload too large");
        else if ((err = kr_seal(pd->key, pd->rng, ad, adlen, inner, ib.len, out + fb.len,
                                cap - fb.len, &sealed_len)) == KR_OK)
            fb.len += sealed_len;
        sodium_memzero(inner, ib.len);
        free(inner);
        if (err)
            return err;
    }
    if (fb.overflow || fb.len > KR_PAYLOAD_MAX)
        return fail(d, KR_ETOOLARGE, "", "payload too large");
    *len = fb.len;
    return KR_OK;
}

/* ---- Decoding ---- */

/* read_value of a field of type value: a string, number or bool, its kind
 * in v->kind. KR_EINVAL for anything else. */
static kr_err read_any(struct kr_mp_reader *r, struct kr_value *v)
{
    const char *s;
    size_t n;
    kr_err err;
    switch (kr_mp_peek(r)) {
    case KR_MP_STR:
        err = kr_mp_read_str(r, &s, &n);
        v->kind = KR_VK_STR;
        v->p = (const uint8_t *)s;
        v->n = (uint32_t)n;
        return err;
    case KR_MP_UINT:
    case KR_MP_NEGINT:
        v->kind = KR_VK_INT;
        return kr_mp_read_int(r, &v->i);
    case KR_MP_FLOAT:
        v->kind = KR_VK_FLOAT;
        return kr_mp_read_float(r, &v->f);
    case KR_MP_BOOL:
        v->kind = KR_VK_BOOL;
        return kr_mp_read_bool(r, &v->b);
    default:
        return KR_EINVAL;
    }
}

/* read_value of a list field f: of enum names, a bit set in v->u (in order
 * when r is canonical, none repeated); of tenant ids, an array in p's arena
 * (v->p, v->n items). Errors go into d. */
static kr_err read_list(struct kr_mp_reader *r, const struct kr_field_def *f, struct kr_payload *p,
                        struct kr_value *v, struct kr_diag *d)
{
    const char *nm = f->name;
    const char *s;
    size_t n;
    uint32_t cnt;
    if (kr_mp_read_array(r, &cnt))
        return fail(d, KR_EINVAL, nm, "must be an array");
    if (cnt > f->max_items)
        return fail(d, KR_ETOOLARGE, nm, "too many items");
    if (f->of == KR_FT_ENUM) {
        int last = -1;
        for (uint32_t i = 0; i < cnt; i++) {
            if (kr_mp_read_str(r, &s, &n))
                return fail(d, KR_EINVAL, nm, "items must be strings");
            int idx = kr_enum_lookup(f->enum_id, s, n);
            if (idx < 0)
                return fail_enum(d, nm, f->enum_id, (long)i);
            if (r->canonical && idx <= last)
                return fail(d, KR_EINVAL, nm, "items out of order");
            if (v->u >> idx & 1u)
                return fail(d, KR_EINVAL, nm, "repeated item");
            v->u |= 1ull << idx;
            last = idx;
        }
        return KR_OK;
    }
    uint64_t *t = arena_take(p, (size_t)cnt * 8u);
    if (!t)
        return fail(d, KR_ETOOLARGE, nm, "too many items");
    for (uint32_t i = 0; i < cnt; i++)
        if (kr_mp_read_uint(r, &t[i]))
            return fail(d, KR_EINVAL, nm, "items must be tenant ids");
    v->p = (const uint8_t *)t;
    v->n = cnt;
    return KR_OK;
}

/* Reads one value of field fld from r into v (using p's arena for lists). */
static kr_err read_value(struct kr_mp_reader *r, int fld, struct kr_payload *p, struct kr_value *v,
                         struct kr_diag *d)
{
    const struct kr_field_def *f = &kr_fields[fld];
    const char *nm = f->name;
    const uint8_t *b;
    const char *s;
    size_t n;
    kr_err err = KR_OK;

    memset(v, 0, sizeof *v);
    switch (f->type) {
    case KR_FT_ID:
    case KR_FT_HASH:
    case KR_FT_BIN:
        if ((err = kr_mp_read_bin(r, &b, &n)))
            return fail(d, KR_EINVAL, nm, "must be bin");
        v->p = b;
        v->n = (uint32_t)n;
        break;
    case KR_FT_TENANT:
    case KR_FT_U64:
    case KR_FT_TIME:
        if ((err = kr_mp_read_uint(r, &v->u)))
            return fail(d, KR_EINVAL, nm, "must be a non-negative integer");
        break;
    case KR_FT_BOOL:
        if ((err = kr_mp_read_bool(r, &v->b)))
            return fail(d, KR_EINVAL, nm, "must be a bool");
        break;
    case KR_FT_STR:
    case KR_FT_EMAIL:
        if ((err = kr_mp_read_str(r, &s, &n)))
            return fail(d, KR_EINVAL, nm, "must be a string");
        v->p = (const uint8_t *)s;
        v->n = (uint32_t)n;
        break;
    case KR_FT_ENUM: {
        if ((err = kr_mp_read_str(r, &s, &n)))
            return fail(d, KR_EINVAL, nm, "must be a string");
        int idx = kr_enum_lookup(f->enum_id, s, n);
        if (idx < 0)
            return fail_enum(d, nm, f->enum_id, -1);
        v->u = (uint64_t)idx;
        break;
    }
    case KR_FT_VALUE:
        if ((err = read_any(r, v)))
            return fail(d, KR_EINVAL, nm, "must be a string, number or bool");
        break;
    case KR_FT_LIST:
        if ((err = read_list(r, f, p, v, d)))
            return err;
        break;
    }
    v->set = true;
    if (kr_fields[fld].type == KR_FT_EMAIL && p->ev >= 0)
        return email_stored_check(fld, v, d);
    return kr_value_check(fld, v, d);
}

static kr_err store(struct kr_payload *p, int fld, const struct kr_value *v)
{
    struct kr_value *dst = slot(p, fld);
    *dst = *v;
    return KR_OK;
}

/* Reads a canonical map of fields of event e (personal or plain ones, per
 * `personal`) in schema order. *pd gets the "pd" bytes when allowed. */
static kr_err read_fields(struct kr_mp_reader *r, const struct kr_event_def *e, bool personal,
                          struct kr_payload *p, const uint8_t **pd, size_t *pd_len,
                          struct kr_diag *d)
{
    uint32_t cnt;
    kr_err err;
    if (kr_mp_read_map(r, &cnt))
        return fail(d, KR_ECORRUPT, "", "payload is not a map");
    if (personal && cnt == 0) /* else a second byte form of a payload without "pd" */
        return fail(d, KR_ECORRUPT, PD_KEY, "empty");
    uint32_t at = 0;
    for (uint32_t k = 0; k < cnt; k++) {
        const char *key;
        size_t kl;
        if (kr_mp_read_str(r, &key, &kl))
            return fail(d, KR_ECORRUPT, "", "key is not a string");
        if (!personal && kl == 2 && memcmp(key, PD_KEY, 2) == 0) {
            if (k + 1 != cnt || !e->has_personal)
                return fail(d, KR_ECORRUPT, PD_KEY, "misplaced");
            if (kr_mp_read_bin(r, pd, pd_len))
                return fail(d, KR_ECORRUPT, PD_KEY, "must be bin");
            break;
        }
        while (at < e->nfields) {
            const char *fn = kr_fields[e->fields[at].field].name;
            if (strlen(fn) == kl && memcmp(fn, key, kl) == 0)
                break;
            at++;
        }
        if (at == e->nfields)
            return fail(d, KR_ECORRUPT, "", "unknown, repeated or misordered key");
        int fld = e->fields[at].field;
        at++;
        if (kr_fields[fld].personal != personal)
            return fail(d, KR_ECORRUPT, kr_fields[fld].name,
                        personal ? "not personal data" : "personal data in clear");
        struct kr_value v;
        if ((err = read_value(r, fld, p, &v, d)))
            return KR_ECORRUPT;
        store(p, fld, &v);
    }
    return KR_OK;
}

kr_err kr_event_decode(int ev, const struct jrn_record *rec, const struct kr_data_key *key,
                       struct kr_payload *p, struct kr_diag *d)
{
    KR_ASSERT(ev >= 0 && ev < KR_EV__COUNT);
    const struct kr_event_def *e = &kr_events[ev];
    kr_err err;
    kr_payload_reset(p, ev);
    size_t tl = strlen(e->name);
    if (rec->type_len != tl || memcmp(rec->type, e->name, tl) != 0)
        return fail(d, KR_ECORRUPT, "", "record is not of this event type");
    if (rec->payload_stripped || !rec->payload)
        return fail(d, KR_ENOTFOUND, "", "payload erased");
    struct kr_mp_reader r;
    kr_mp_reader_init(&r, rec->payload, rec->payload_len, true);
    const uint8_t *pd = NULL;
    size_t pd_len = 0;
    if ((err = read_fields(&r, e, false, p, &pd, &pd_len, d)))
        return err;
    if (kr_mp_remaining(&r) != 0)
        return fail(d, KR_ECORRUPT, "", "trailing bytes");
    if (pd && key) {
        uint8_t ad[PD_AD_MAX];
        if (rec->stream_len > KR_STREAM_MAX)
            return fail(d, KR_ECORRUPT, "", "stream too long");
        size_t adlen = pd_ad(ad, rec->tenant, rec->stream, rec->stream_len, e->name);
        if (pd_len < KR_SEAL_OVERHEAD)
            return fail(d, KR_ECORRUPT, PD_KEY, "too short");
        uint8_t *plain = arena_take(p, pd_len - KR_SEAL_OVERHEAD);
        size_t plain_len;
        if (!plain)
            return fail(d, KR_ECORRUPT, PD_KEY, "too large");
        if (kr_unseal(key, ad, adlen, pd, pd_len, plain, pd_len - KR_SEAL_OVERHEAD, &plain_len))
            return fail(d, KR_ECORRUPT, PD_KEY, "does not open with the tenant's key");
        struct kr_mp_reader ir;
        kr_mp_reader_init(&ir, plain, plain_len, true);
        if ((err = read_fields(&ir, e, true, p, NULL, NULL, d)))
            return err;
        if (kr_mp_remaining(&ir) != 0)
            return fail(d, KR_ECORRUPT, PD_KEY, "trailing bytes");
    } else if (pd) {
        p->pd_sealed = true;
    }
    for (uint32_t i = 0; i < e->nfields; i++) {
        int fld = e->fields[i].field;
        if (e->fields[i].optional || p->v[fld].set)
            continue;
        if (kr_fields[fld].personal && p->pd_sealed)
            continue;
        return fail(d, KR_ECORRUPT, kr_fields[fld].name, "missing");
    }
    return KR_OK;
}

kr_err kr_args_decode(int op, struct kr_mp_reader *r, struct kr_payload *p, struct kr_diag *d)
{
    KR_ASSERT(op >= 0 && op < KR_OP__COUNT);
    const struct kr_op_def *o = &kr_ops[op];
    uint32_t cnt;
    kr_err err;
    kr_payload_reset(p, -1);
    if (kr_mp_peek(r) != KR_MP_MAP || kr_mp_read_map(r, &cnt))
        return fail(d, KR_EINVAL, "args", "must be a map");
    if (cnt > o->nargs)
        return fail(d, KR_EINVAL, "args", "has keys this op does not take");
    for (uint32_t k = 0; k < cnt; k++) {
        const char *key;
        size_t kl;
        if (kr_mp_read_str(r, &key, &kl))
            return fail(d, KR_EINVAL, "args", "keys must be strings");
        int fld = kr_field_lookup(key, kl);
        bool known = false;
        for (uint32_t i = 0; fld >= 0 && i < o->nargs; i++)
            known |= o->args[i].field == fld;
        if (!known) {
            char name[sizeof d->field];
            size_t nl = kl < sizeof name - 1 ? kl : sizeof name - 1;
            for (size_t i = 0; i < nl; i++)
                name[i] = key[i] >= 0x20 && key[i] < 0x7f ? key[i] : '?';
            name[nl] = '\0';
            return fail(d, KR_EINVAL, name, "unknown key");
        }
        if (p->v[fld].set)
            return fail(d, KR_EINVAL, kr_fields[fld].name, "repeated key");
        struct kr_value v;
        if ((err = read_value(r, fld, p, &v, d)))
            return err;
        store(p, fld, &v);
    }
    for (uint32_t i = 0; i < o->nargs; i++)
        if (!o->args[i].optional && !p->v[o->args[i].field].set)
            return fail(d, KR_EINVAL, kr_fields[o->args[i].field].name, "missing");
    return KR_OK;
}
