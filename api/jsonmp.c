/*
 * jsonmp.c: JSON arguments to msgpack by the schema, msgpack replies to JSON.
 *
 * Design notes: arguments are parsed with jansson (duplicate keys refused),
 * set into a struct kr_payload and checked with kr_value_check and packed with
 * kr_value_pack, the very code the server uses on them, so the client never
 * disagrees with the server about what a value is. Replies are walked with the
 * bounded reader of journal/mp.h after kr_mp_check has proven the whole object
 * bounded, so msgpack-c's unpacker never sees server bytes here.
 *
 * Why replies are written as JSON text here and not built with jansson:
 * jansson's integer is json_int_t (a long long), which cannot hold a u64 from
 * 2^63 up, and a reply may carry any u64; building a json_t tree would also
 * copy every token and string into blocks jansson frees unwiped. Writing the
 * text directly keeps every integer exact, decides per field whether it is a
 * number or a decimal string, and grows one buffer that is wiped when it
 * grows. The one JSON string escaper of the project (jsonmp_escape) is here
 * too, for every command that prints JSON.
 */
#include "jsonmp.h"

#include "payload.h"
#include "schema.h"

#include <jansson.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kr_err diag(struct jsonmp_diag *d, kr_err err, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static kr_err diag(struct jsonmp_diag *d, kr_err err, const char *key, const char *fmt, ...)
{
    if (d) {
        snprintf(d->key, sizeof d->key, "%s", key);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->why, sizeof d->why, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized) */
        va_end(ap);
    }
    return err;
}

/* "a, b, c": every allowed value of enum `enum_id`, for its error message
 * (truncated to cap, which jsonmp_test checks is room enough). */
static const char *enum_list(char *buf, size_t cap, int enum_id)
{
    const struct kr_enum_def *e = &kr_enums[enum_id];
    size_t off = 0;
    buf[0] = 0;
    for (uint32_t i = 0; i < e->count && off + 1 < cap; i++) {
        int w = snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", e->values[i]);
        off = w > 0 && (size_t)w < cap - off ? off + (size_t)w : cap - 1;
    }
    return buf;
}

/* ---- Times ---- */

static bool digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10u + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard
 * Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (int64_t)(m > 2 ? m - 3 : m + 9) + 2) / 5 + (int64_t)d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static unsigned month_days(unsigned y, unsigned m)
{
    static const unsigned char days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29u : days[m - 1];
}

kr_err jsonmp_parse_time(const char *s, size_t len, uint64_t *ns)
{
    unsigned y, mo, d, h, mi, se, oh = 0, om = 0;
    /* YYYY-MM-DDThh:mm:ss is 19 bytes. */
    if (len < 20 || len > 40 || s[4] != '-' || s[7] != '-' ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
        return KR_EINVAL;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
        !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &se))
        return KR_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || se > 59)
        return KR_EINVAL;
    size_t i = 19;
    uint64_t frac = 0;
    if (s[i] == '.') {
        size_t n = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, n++) {
            if (n == 9)
                return KR_EINVAL;
            frac = frac * 10u + (uint64_t)(s[i] - '0');
        }
        if (n == 0)
            return KR_EINVAL;
        for (; n < 9; n++)
            frac *= 10u;
    }
    int sign = 0;
    if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        sign = s[i] == '+' ? 1 : -1;
        if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return KR_EINVAL;
        i += 6;
    }
    if (i != len)
        return KR_EINVAL;
    int64_t secs = days_from_civil((int64_t)y, mo, d) * 86400 + (int64_t)h * 3600 +
                   (int64_t)mi * 60 + (int64_t)se - sign * ((int64_t)oh * 3600 + (int64_t)om * 60);
    /* 2^64-1 ns is 2554-07-21T23:34:33.709551615Z. */
    if (secs < 0 || (uint64_t)secs > UINT64_MAX / 1000000000u)
        return KR_EINVAL;
    uint64_t whole = (uint64_t)secs * 1000000000u;
    if (frac > UINT64_MAX - whole)
        return KR_EINVAL;
    *ns = whole + frac;
    return KR_OK;
}

/* ---- Arguments: JSON -> msgpack ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes hex s[0..2n) into out[0..n). */
static bool unhex(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* A decimal string s[0..n) of 1..20 ASCII digits, at most 2^64-1, into *v. */
static bool dec_u64(const char *s, size_t n, uint64_t *v)
{
    if (n == 0 || n > 20)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned dg = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - dg) / 10u)
            return false;
        x = x * 10u + dg;
    }
    *v = x;
    return true;
}

/* What quote_big_ints puts before the digits of a number it quotes, so that
 * it is told from a string the caller wrote (JSON text cannot hold a raw
 * control byte in a string, so no caller's string starts with it unescaped). */
#define BIG_MARK      '\x01'
#define BIG_MARK_JSON "\\u0001"

/* Whether j is a plain number past INT64_MAX that quote_big_ints quoted. */
static bool big_literal(const json_t *j)
{
    return json_is_string(j) && json_string_length(j) > 1 && json_string_value(j)[0] == BIG_MARK;
}

/* A JSON integer >= 0, or the same as a decimal string ("18446744073709551615":
 * the spelling replies use, see jsonmp.h), into *v. */
static bool json_uint(const json_t *j, uint64_t *v)
{
    if (big_literal(j))
        return dec_u64(json_string_value(j) + 1, json_string_length(j) - 1, v);
    if (json_is_string(j))
        return dec_u64(json_string_value(j), json_string_length(j), v);
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return false;
    *v = (uint64_t)json_integer_value(j);
    return true;
}

/* The number token at t[i] ends at *end; returns its length if it is a plain
 * integer past INT64_MAX (which jansson, json_int_t being a long long, cannot
 * read), else 0. */
static size_t big_int_at(const char *t, size_t len, size_t i, size_t *end)
{
    size_t e = i;
    while (e < len && ((t[e] >= '0' && t[e] <= '9') || t[e] == '-' || t[e] == '+' || t[e] == '.' ||
                       t[e] == 'e' || t[e] == 'E'))
        e++;
    *end = e;
    uint64_t v;
    /* Only plain non-negative integers without a leading zero: a float, a
     * negative number or an invalid one is jansson's to read or refuse. */
    if (t[i] == '-' || t[i] == '0' || !dec_u64(t + i, e - i, &v))
        return 0;
    return v > (uint64_t)INT64_MAX ? e - i : 0;
}

/* jansson cannot hold an integer >= 2^63, so before it reads the text, each
 * plain integer literal from 2^63 to 2^64-1 outside strings is put in quotes,
 * after BIG_MARK: it then reads as the number json_uint takes, and set_arg
 * refuses it where a number is not an argument's type. *out is NULL when the
 * text needs no change, else a malloc'd copy (to wipe and free) of *out_len
 * bytes. */
static kr_err quote_big_ints(const char *t, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    size_t nbig = 0, end;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        if (in_str) {
            if (t[i] == '\\')
                i++;
            else if (t[i] == '"')
                in_str = false;
        } else if (t[i] == '"') {
            in_str = true;
        } else if ((t[i] >= '0' && t[i] <= '9') || t[i] == '-') {
            nbig += big_int_at(t, len, i, &end) ? 1 : 0;
            i = end - 1;
        }
    }
    if (nbig == 0)
        return KR_OK;
    char *q = malloc(len + (2 + sizeof BIG_MARK_JSON - 1) * nbig + 1);
    if (!q)
        return KR_ENOMEM;
    size_t o = 0;
    in_str = false;
    for (size_t i = 0; i < len; i++) {
        if (in_str) {
            if (t[i] == '\\' && i + 1 < len)
                q[o++] = t[i++];
            else if (t[i] == '"')
                in_str = false;
        } else if (t[i] == '"') {
            in_str = true;
        } else if ((t[i] >= '0' && t[i] <= '9') || t[i] == '-') {
            size_t n = big_int_at(t, len, i, &end);
            if (n) {
                q[o++] = '"';
                memcpy(q + o, BIG_MARK_JSON, sizeof BIG_MARK_JSON - 1);
                o += sizeof BIG_MARK_JSON - 1;
            }
            memcpy(q + o, t + i, end - i);
            o += end - i;
            if (n)
                q[o++] = '"';
            i = end - 1;
            continue;
        }
        q[o++] = t[i];
    }
    q[o] = '\0';
    *out = q;
    *out_len = o;
    return KR_OK;
}

/* An id, hash or bytes field: hex digits. */
static kr_err set_hex_arg(int fld, const json_t *j, struct kr_payload *p, struct jsonmp_diag *d)
{
    const struct kr_field_def *f = &kr_fields[fld];
    const char *nm = f->name;
    if (!json_is_string(j))
        return diag(d, KR_EINVAL, nm, "must be a hex string");
    size_t n = json_string_length(j);
    const char *s = json_string_value(j);
    size_t want = f->type == KR_FT_ID ? 16 : f->type == KR_FT_HASH ? 32 : 0;
    if (want && n != 2 * want)
        return diag(d, KR_EINVAL, nm, "must be %zu hex digits (%zu bytes)", 2 * want, want);
    if (n % 2)
        return diag(d, KR_EINVAL, nm, "must have an even number of hex digits");
    if (!want && n / 2 > f->max)
        return diag(d, KR_ETOOLARGE, nm, "too long (at most %llu bytes)",
                    (unsigned long long)f->max);
    uint8_t *buf = malloc(n / 2 + 1);
    if (!buf)
        return KR_ENOMEM;
    kr_err err = KR_OK;
    if (!unhex(s, n / 2, buf))
        err = diag(d, KR_EINVAL, nm, "not a hex string");
    else if (kr_set_copy(p, fld, buf, n / 2))
        err = diag(d, KR_ETOOLARGE, nm, "arguments too large");
    free(buf);
    return err;
}

/* A time field: UTC nanoseconds, as a number or decimal string, or RFC 3339. */
static kr_err set_time_arg(int fld, const json_t *j, struct kr_payload *p, struct jsonmp_diag *d)
{
    const struct kr_field_def *f = &kr_fields[fld];
    const char *nm = f->name;
    uint64_t v;
    if (json_is_string(j) && !json_uint(j, &v)) {
        if (jsonmp_parse_time(json_string_value(j), json_string_length(j), &v))
            return diag(d, KR_EINVAL, nm,
                        "not an RFC 3339 time (like 2026-04-01T09:00:00+09:00) nor "
                        "decimal UTC nanoseconds");
    } else if (!json_uint(j, &v)) {
        return diag(d, KR_EINVAL, nm,
                    "must be UTC nanoseconds (an integer >= 0) or an RFC 3339 string");
    }
    kr_set_u64(p, fld, v);
    return KR_OK;
}

/* An enum field: one of its values by name. */
static kr_err set_enum_arg(int fld, const json_t *j, struct kr_payload *p, struct jsonmp_diag *d)
{
    const struct kr_field_def *f = &kr_fields[fld];
    const char *nm = f->name;
    if (!json_is_string(j))
        return diag(d, KR_EINVAL, nm, "must be a string");
    int e = kr_enum_lookup(f->enum_id, json_string_value(j), json_string_length(j));
    char vals[sizeof d->why];
    if (e < 0)
        return diag(d, KR_EINVAL, nm, "not one of the allowed values: %s",
                    enum_list(vals, sizeof vals, f->enum_id));
    kr_set_u64(p, fld, (uint64_t)e);
    return KR_OK;
}

/* A value field: a string, integer, float or bool. */
static kr_err set_value_arg(int fld, const json_t *j, struct kr_payload *p, struct jsonmp_diag *d)
{
    const char *nm = kr_fields[fld].name;
    if (json_is_string(j))
        kr_set_value_str(p, fld, json_string_value(j), json_string_length(j));
    else if (json_is_integer(j))
        kr_set_value_int(p, fld, json_integer_value(j));
    else if (json_is_real(j))
        kr_set_value_float(p, fld, json_real_value(j));
    else if (json_is_boolean(j))
        kr_set_value_bool(p, fld, json_is_true(j));
    else
        return diag(d, KR_EINVAL, nm, "must be a string, number or bool");
    return KR_OK;
}

/* A list field: of enum values (a bit mask, no repeats) or of tenant ids
 * (sorted; *tenants holds their storage, which the caller frees). */
static kr_err set_list_arg(int fld, const json_t *j, struct kr_payload *p, uint64_t **tenants,
                           struct jsonmp_diag *d)
{
    const struct kr_field_def *f = &kr_fields[fld];
    const char *nm = f->name;
    if (!json_is_array(j))
        return diag(d, KR_EINVAL, nm, "must be an array");
    size_t n = json_array_size(j);
    if (n > f->max_items)
        return diag(d, KR_ETOOLARGE, nm, "too many items (at most %u)", f->max_items);
    if (f->of == KR_FT_ENUM) {
        uint64_t mask = 0;
        for (size_t i = 0; i < n; i++) {
            const json_t *e = json_array_get(j, i);
            int k = json_is_string(e)
                        ? kr_enum_lookup(f->enum_id, json_string_value(e), json_string_length(e))
                        : -1;
            char vals[sizeof d->why];
            if (k < 0 || k >= 64)
                return diag(d, KR_EINVAL, nm, "item %zu is not one of the allowed values: %s", i,
                            enum_list(vals, sizeof vals, f->enum_id));
            if (mask >> k & 1u)
                return diag(d, KR_EINVAL, nm, "item %zu is repeated", i);
            mask |= (uint64_t)1 << k;
        }
        kr_set_u64(p, fld, mask);
        return KR_OK;
    }
    uint64_t *t = calloc(n ? n : 1, sizeof *t);
    if (!t)
        return KR_ENOMEM;
    *tenants = t;
    for (size_t i = 0; i < n; i++)
        if (!json_uint(json_array_get(j, i), &t[i]))
            return diag(d, KR_EINVAL, nm, "item %zu must be an integer >= 1", i);
    qsort(t, n, sizeof *t, cmp_u64);
    kr_set_tenants(p, fld, t, n);
    return KR_OK;
}

/* Sets field fld of p from JSON value j, typed by the field. *tenants holds a
 * tenant list's storage (the caller frees it). */
static kr_err set_arg(int fld, const json_t *j, struct kr_payload *p, uint64_t **tenants,
                      struct jsonmp_diag *d)
{
    const struct kr_field_def *f = &kr_fields[fld];
    const char *nm = f->name;
    bool numeric = f->type == KR_FT_TENANT || f->type == KR_FT_U64 || f->type == KR_FT_TIME;
    if (big_literal(j) && !numeric)
        return diag(d, KR_EINVAL, nm, "a number past 2^63-1 is not a value of this field%s",
                    f->type == KR_FT_VALUE ? " (numbers are 64-bit signed integers or floats)"
                                           : "");
    switch (f->type) {
    case KR_FT_ID:
    case KR_FT_HASH:
    case KR_FT_BIN:
        return set_hex_arg(fld, j, p, d);
    case KR_FT_TENANT:
    case KR_FT_U64: {
        uint64_t v;
        if (!json_uint(j, &v))
            return diag(d, KR_EINVAL, nm,
                        "must be an integer >= 0 (a number, or its decimal digits as a string)");
        kr_set_u64(p, fld, v);
        return KR_OK;
    }
    case KR_FT_TIME:
        return set_time_arg(fld, j, p, d);
    case KR_FT_BOOL:
        if (!json_is_boolean(j))
            return diag(d, KR_EINVAL, nm, "must be true or false");
        kr_set_bool(p, fld, json_is_true(j));
        return KR_OK;
    case KR_FT_STR:
    case KR_FT_EMAIL:
        if (!json_is_string(j))
            return diag(d, KR_EINVAL, nm, "must be a string");
        kr_set_bytes(p, fld, json_string_value(j), json_string_length(j));
        return KR_OK;
    case KR_FT_ENUM:
        return set_enum_arg(fld, j, p, d);
    case KR_FT_VALUE:
        return set_value_arg(fld, j, p, d);
    case KR_FT_LIST:
        return set_list_arg(fld, j, p, tenants, d);
    }
    return diag(d, KR_EINVAL, nm, "has a type this client does not know");
}

kr_err jsonmp_args(int op, const char *json, size_t len, struct kr_mp_fixbuf *out,
                   struct jsonmp_diag *d)
{
    if (op < 0 || op >= KR_OP__COUNT)
        return diag(d, KR_EINVAL, "", "unknown op");
    if (len > JSONMP_ARGS_MAX)
        return diag(d, KR_ETOOLARGE, "", "arguments longer than %zu bytes", JSONMP_ARGS_MAX);
    char *quoted = NULL;
    size_t quoted_len = 0;
    if (quote_big_ints(json, len, &quoted, &quoted_len))
        return KR_ENOMEM;
    json_error_t je;
    json_t *root = json_loadb(quoted ? quoted : json, quoted ? quoted_len : len,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (quoted) { /* arguments hold passwords: wipe the copy */
        sodium_memzero(quoted, quoted_len);
        free(quoted);
    }
    if (!root)
        return diag(d, KR_EINVAL, "", "not JSON: %s (at byte %d)", je.text, je.position);
    const struct kr_op_def *o = &kr_ops[op];
    kr_err err = KR_OK;
    struct kr_payload *p = NULL;
    uint64_t *tenants[KR_ARGS_MAX] = {0};
    if (!json_is_object(root)) {
        err = diag(d, KR_EINVAL, "", "arguments must be a JSON object");
        goto done;
    }
    if (!(p = kr_payload_new())) {
        err = KR_ENOMEM;
        goto done;
    }
    kr_payload_reset(p, -1);
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        int fld = kr_field_lookup(key, strlen(key));
        uint32_t a = 0;
        while (fld >= 0 && a < o->nargs && o->args[a].field != fld)
            a++;
        if (fld < 0 || a == o->nargs) {
            err = diag(d, KR_EINVAL, key, "not an argument of %s", o->name);
            goto done;
        }
        if ((err = set_arg(fld, val, p, &tenants[a], d)))
            goto done;
    }
    uint32_t count = 0;
    for (uint32_t a = 0; a < o->nargs; a++) {
        int fld = o->args[a].field;
        struct kr_diag kd;
        if (!p->v[fld].set) {
            if (o->args[a].optional)
                continue;
            err = diag(d, KR_EINVAL, kr_fields[fld].name, "missing (%s needs it)", o->name);
            goto done;
        }
        if ((err = kr_value_check(fld, &p->v[fld], &kd))) {
            diag(d, err, kr_fields[fld].name, "%s", kd.why);
            goto done;
        }
        count++;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, kr_mp_fixbuf_write);
    msgpack_pack_map(&pk, count);
    for (uint32_t a = 0; a < o->nargs; a++) {
        int fld = o->args[a].field;
        if (!p->v[fld].set)
            continue;
        const char *nm = kr_fields[fld].name;
        msgpack_pack_str_with_body(&pk, nm, strlen(nm));
        kr_value_pack(&pk, fld, &p->v[fld]);
    }
    if (out->overflow)
        err = diag(d, KR_ETOOLARGE, "", "arguments do not fit the request buffer");
done:
    for (uint32_t a = 0; a < KR_ARGS_MAX; a++)
        free(tenants[a]);
    kr_payload_free(p);
    json_decref(root);
    return err;
}

/* ---- Replies: msgpack -> JSON ---- */

/* Output text, grown as needed up to JSONMP_JSON_MAX. */
struct jbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void put(struct jbuf *b, const void *s, size_t n)
{
    if (b->failed)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1 && cap <= JSONMP_JSON_MAX)
            cap *= 2;
        /* Replies carry tokens: never realloc, which may free the old
         * block unwiped. New block, copy, wipe and free the old. */
        char *q = cap - b->len >= n + 1 ? malloc(cap) : NULL;
        if (!q) {
            b->failed = true;
            return;
        }
        if (b->p) {
            memcpy(q, b->p, b->len);
            sodium_memzero(b->p, b->cap);
            free(b->p);
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void putc1(struct jbuf *b, char c)
{
    put(b, &c, 1);
}

/* Length of the valid UTF-8 sequence at s[0..n) (no overlongs, surrogates or
 * code points past U+10FFFF), or 0. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1fu, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0fu, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07u, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

bool jsonmp_escape(const char *str, size_t n, bool strict,
                   void (*sink)(void *ctx, const void *p, size_t n), void *ctx)
{
    const uint8_t *s = (const uint8_t *)str;
    sink(ctx, "\"", 1);
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            sink(ctx, esc, 2);
        } else if (c == '\n') {
            sink(ctx, "\\n", 2);
        } else if (c == '\t') {
            sink(ctx, "\\t", 2);
        } else if (c == '\r') {
            sink(ctx, "\\r", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sink(ctx, esc, 6);
        } else {
            size_t k = utf8_seq(s + i, n - i);
            if (k == 0) {
                if (strict)
                    return false;
                sink(ctx, "\\ufffd", 6); /* U+FFFD for each byte that starts no sequence */
                k = 1;
            } else {
                sink(ctx, s + i, k);
            }
            i += k;
            continue;
        }
        i++;
    }
    sink(ctx, "\"", 1);
    return true;
}

static void put_file(void *ctx, const void *p, size_t n)
{
    fwrite(p, 1, n, (FILE *)ctx);
}

void jsonmp_fput_str(FILE *f, const char *s, size_t len)
{
    (void)jsonmp_escape(s, len, false, put_file, f);
}

/* A fixed buffer that remembers running out of room. */
struct fixed_text {
    char *p;
    size_t len, cap;
    bool full;
};

static void put_fixed(void *ctx, const void *p, size_t n)
{
    struct fixed_text *t = ctx;
    if (t->full || n >= t->cap - t->len) { /* keep a byte for the NUL */
        t->full = true;
        return;
    }
    memcpy(t->p + t->len, p, n);
    t->len += n;
}

bool jsonmp_buf_str(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len >= cap)
        return false;
    struct fixed_text t = {.p = buf, .len = *len, .cap = cap};
    (void)jsonmp_escape(s, n, false, put_fixed, &t);
    if (t.full) {
        buf[*len] = '\0';
        return false;
    }
    buf[t.len] = '\0';
    *len = t.len;
    return true;
}

static void put_jbuf(void *ctx, const void *p, size_t n)
{
    put(ctx, p, n);
}

static bool put_str(struct jbuf *b, const char *str, size_t n)
{
    return jsonmp_escape(str, n, true, put_jbuf, b);
}

static void put_hex(struct jbuf *b, const uint8_t *s, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    putc1(b, '"');
    for (size_t i = 0; i < n; i++) {
        char two[2] = {hx[s[i] >> 4], hx[s[i] & 15]};
        put(b, two, 2);
    }
    putc1(b, '"');
}

static void put_double(struct jbuf *b, double v)
{
    char num[40];
    snprintf(num, sizeof num, "%.15g", v);
    if (strtod(num, NULL) != v)
        snprintf(num, sizeof num, "%.17g", v);
    /* Keep it a float when read back ("2" would come back an integer). */
    size_t n = strlen(num);
    if (!strpbrk(num, ".eE") && n + 2 < sizeof num) {
        memcpy(num + n, ".0", 3);
        n += 2;
    }
    put(b, num, n);
}

static kr_err at(struct jsonmp_diag *d, kr_err err, const struct kr_mp_reader *r,
                 const uint8_t *start, const char *why)
{
    char where[24];
    snprintf(where, sizeof where, "@%zu", (size_t)(r->p - start));
    return diag(d, err, where, "%s", why);
}

/* Whether an integer under key field fld (-1: no field) is written as a
 * decimal string: always for tenant ids and times (so their JSON type never
 * depends on their value), and for any integer a double cannot hold exactly. */
static bool int_as_string(int fld, uint64_t magnitude)
{
    if (fld >= 0) {
        const struct kr_field_def *f = &kr_fields[fld];
        if (f->type == KR_FT_TENANT || f->type == KR_FT_TIME ||
            (f->type == KR_FT_LIST && f->of == KR_FT_TENANT))
            return true;
    }
    return magnitude > JSONMP_INT_EXACT_MAX;
}

static void put_int(struct jbuf *b, int fld, bool negative, uint64_t magnitude)
{
    char num[32];
    int n = snprintf(num, sizeof num, "%s%llu", negative ? "-" : "", (unsigned long long)magnitude);
    bool quote = int_as_string(fld, magnitude);
    if (quote)
        putc1(b, '"');
    put(b, num, (size_t)n);
    if (quote)
        putc1(b, '"');
}

/* The schema field a reply's map key names, or -1. */
static int key_field(struct kr_mp_reader r)
{
    const char *k;
    size_t n;
    return kr_mp_read_str(&r, &k, &n) ? -1 : kr_field_lookup(k, n);
}

/* Writes the object at r as JSON; fld is the field of the map key it is the
 * value of (or an item of), -1 if none. */
static kr_err to_json(struct kr_mp_reader *r, const uint8_t *start, unsigned depth, struct jbuf *b,
                      int fld, struct jsonmp_diag *d)
{
    if (depth > JSONMP_DEPTH_MAX)
        return at(d, KR_ETOOLARGE, r, start, "nested too deep");
    switch (kr_mp_peek(r)) {
    case KR_MP_NIL:
        if (kr_mp_read_nil(r))
            break;
        put(b, "null", 4);
        return KR_OK;
    case KR_MP_BOOL: {
        bool v;
        if (kr_mp_read_bool(r, &v))
            break;
        put(b, v ? "true" : "false", v ? 4 : 5);
        return KR_OK;
    }
    case KR_MP_UINT: {
        uint64_t v;
        if (kr_mp_read_uint(r, &v))
            break;
        put_int(b, fld, false, v);
        return KR_OK;
    }
    case KR_MP_NEGINT: {
        int64_t v;
        if (kr_mp_read_int(r, &v))
            break;
        put_int(b, fld, v < 0, v < 0 ? 0u - (uint64_t)v : (uint64_t)v);
        return KR_OK;
    }
    case KR_MP_FLOAT: {
        double v;
        if (kr_mp_read_float(r, &v))
            return at(d, KR_ECORRUPT, r, start, "a float that is NaN, infinite or malformed");
        put_double(b, v);
        return KR_OK;
    }
    case KR_MP_STR: {
        const char *s;
        size_t n;
        if (kr_mp_read_str(r, &s, &n))
            break;
        if (!put_str(b, s, n))
            return at(d, KR_ECORRUPT, r, start, "a string that is not valid UTF-8");
        return KR_OK;
    }
    case KR_MP_BIN: {
        const uint8_t *s;
        size_t n;
        if (kr_mp_read_bin(r, &s, &n))
            break;
        put_hex(b, s, n);
        return KR_OK;
    }
    case KR_MP_ARRAY: {
        uint32_t n;
        if (kr_mp_read_array(r, &n))
            break;
        putc1(b, '[');
        for (uint32_t i = 0; i < n; i++) {
            if (i)
                putc1(b, ',');
            kr_err err = to_json(r, start, depth + 1, b, fld, d);
            if (err)
                return err;
        }
        putc1(b, ']');
        return KR_OK;
    }
    case KR_MP_MAP: {
        uint32_t n;
        if (kr_mp_read_map(r, &n))
            break;
        putc1(b, '{');
        for (uint32_t i = 0; i < n; i++) {
            if (i)
                putc1(b, ',');
            if (kr_mp_peek(r) != KR_MP_STR)
                return at(d, KR_ECORRUPT, r, start, "a map key that is not a string");
            int key_fld = key_field(*r);
            kr_err err = to_json(r, start, depth + 1, b, -1, d);
            if (err)
                return err;
            putc1(b, ':');
            if ((err = to_json(r, start, depth + 1, b, key_fld, d)))
                return err;
        }
        putc1(b, '}');
        return KR_OK;
    }
    case KR_MP_EXT:
        return at(d, KR_ECORRUPT, r, start, "an ext object (kiroku sends none)");
    case KR_MP_END:
        return at(d, KR_ECORRUPT, r, start, "truncated");
    case KR_MP_INVALID:
        break;
    }
    return at(d, KR_ECORRUPT, r, start, "malformed msgpack");
}

kr_err jsonmp_to_json(const uint8_t *mp, size_t len, char **out, size_t *out_len,
                      struct jsonmp_diag *d)
{
    *out = NULL;
    *out_len = 0;
    if (len > KR_API_REPLY_MAX)
        return diag(d, KR_ETOOLARGE, "", "reply longer than %zu bytes", KR_API_REPLY_MAX);
    struct kr_mp_reader r;
    kr_mp_reader_init(&r, mp, len, false);
    /* Proves lengths, depth and counts before the walk trusts any header. One
     * element takes at least one byte, so len bounds the count. */
    kr_err err = kr_mp_check(&r, JSONMP_DEPTH_MAX, len);
    if (err)
        return at(d, err, &r, mp,
                  err == KR_ETOOLARGE ? "nested too deep" : "malformed or truncated msgpack");
    if (kr_mp_remaining(&r))
        return at(d, KR_ECORRUPT, &r, mp, "bytes after the reply");
    kr_mp_reader_init(&r, mp, len, false);
    struct jbuf b = {0};
    err = to_json(&r, mp, 1, &b, -1, d);
    putc1(&b, '\0');
    if (!err && b.failed)
        err = diag(d, KR_ENOMEM, "", "out of memory");
    if (err) {
        if (b.p)
            sodium_memzero(b.p, b.cap);
        free(b.p);
        return err;
    }
    *out = b.p;
    *out_len = b.len - 1;
    return KR_OK;
}
