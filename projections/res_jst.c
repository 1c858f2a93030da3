/*
 * res_jst.c: "<name>_jst" beside every time of a result (see res_jst.h).
 *
 * Design notes: the result is walked with the bounded reader of journal/mp.h
 * and copied into a scratch kr_wbuf: map and array headers are written again
 * (a map grows by one entry per time key), everything else is copied byte
 * for byte. A map is looked over once before it is copied, to count its time
 * keys for its new header.
 */
#include "res_jst.h"

#include "jst.h"
#include "mp.h"
#include "schema.h"

#include <msgpack.h>
#include <string.h>

/* Nesting of a result: result -> list -> item -> value is 4; the API
 * refuses replies nested deeper than this anyway. */
#define RES_JST_DEPTH_MAX 16u

bool res_has_time(int op)
{
    if (op < 0 || op >= KR_OP__COUNT)
        return false;
    const struct kr_op_def *o = &kr_ops[op];
    for (uint32_t i = 0; i < o->nresult; i++) {
        const struct kr_result_item *it = &o->result[i];
        if (it->field >= 0 && kr_fields[it->field].type == KR_FT_TIME)
            return true;
        for (uint32_t k = 0; it->field < 0 && k < it->nitems; k++)
            if (kr_fields[it->items[k]].type == KR_FT_TIME)
                return true;
    }
    return false;
}

/* Whether the map key at r names a time field (r is not moved). */
static bool key_is_time(struct kr_mp_reader r, const char **name, size_t *len)
{
    if (kr_mp_read_str(&r, name, len))
        return false;
    int f = kr_field_lookup(*name, *len);
    return f >= 0 && kr_fields[f].type == KR_FT_TIME;
}

/* Skips one object, bytes copied to out. */
static kr_err copy_one(struct kr_mp_reader *r, struct kr_wbuf *out)
{
    const uint8_t *start = r->p;
    kr_err err = kr_mp_check(r, RES_JST_DEPTH_MAX, kr_mp_remaining(r));
    if (err)
        return KR_ECORRUPT;
    return kr_wbuf_add(out, start, (size_t)(r->p - start));
}

static kr_err walk(struct kr_mp_reader *r, msgpack_packer *pk, struct kr_wbuf *out, unsigned depth);

/* The value of time key name: copied, then "<name>_jst" and its string. */
static kr_err time_entry(struct kr_mp_reader *r, msgpack_packer *pk, struct kr_wbuf *out,
                         const char *name, size_t len)
{
    struct kr_mp_reader v = *r;
    kr_err err = copy_one(r, out);
    if (err)
        return err;
    char key[RES_JST_NAME_MAX + sizeof RES_JST_SUFFIX];
    if (len > RES_JST_NAME_MAX)
        return KR_ECORRUPT;
    memcpy(key, name, len);
    memcpy(key + len, RES_JST_SUFFIX, sizeof RES_JST_SUFFIX - 1);
    msgpack_pack_str_with_body(pk, key, len + sizeof RES_JST_SUFFIX - 1);
    uint64_t ns;
    if (kr_mp_peek(&v) == KR_MP_UINT && kr_mp_read_uint(&v, &ns) == KR_OK) {
        char jst[JST_LEN + 1];
        size_t n = jst_format(ns, jst);
        msgpack_pack_str_with_body(pk, jst, n);
    } else {
        msgpack_pack_nil(pk);
    }
    return kr_wbuf_failed(out);
}

static kr_err walk_map(struct kr_mp_reader *r, msgpack_packer *pk, struct kr_wbuf *out,
                       unsigned depth)
{
    uint32_t n, times = 0;
    if (kr_mp_read_map(r, &n))
        return KR_ECORRUPT;
    struct kr_mp_reader look = *r;
    for (uint32_t i = 0; i < n; i++) {
        const char *name;
        size_t len;
        times += key_is_time(look, &name, &len);
        if (kr_mp_check(&look, RES_JST_DEPTH_MAX, kr_mp_remaining(&look)) ||
            kr_mp_check(&look, RES_JST_DEPTH_MAX, kr_mp_remaining(&look)))
            return KR_ECORRUPT;
    }
    if (n > UINT32_MAX - times)
        return KR_ECORRUPT;
    msgpack_pack_map(pk, n + times);
    for (uint32_t i = 0; i < n; i++) {
        const char *name;
        size_t len;
        bool is_time = key_is_time(*r, &name, &len);
        kr_err err = copy_one(r, out);
        if (!err)
            err = is_time ? time_entry(r, pk, out, name, len) : walk(r, pk, out, depth + 1);
        if (err)
            return err;
    }
    return kr_wbuf_failed(out);
}

static kr_err walk(struct kr_mp_reader *r, msgpack_packer *pk, struct kr_wbuf *out, unsigned depth)
{
    if (depth > RES_JST_DEPTH_MAX)
        return KR_ECORRUPT;
    switch (kr_mp_peek(r)) {
    case KR_MP_MAP:
        return walk_map(r, pk, out, depth);
    case KR_MP_ARRAY: {
        uint32_t n;
        if (kr_mp_read_array(r, &n))
            return KR_ECORRUPT;
        msgpack_pack_array(pk, n);
        for (uint32_t i = 0; i < n; i++) {
            kr_err err = walk(r, pk, out, depth + 1);
            if (err)
                return err;
        }
        return kr_wbuf_failed(out);
    }
    default:
        return copy_one(r, out);
    }
}

kr_err res_add_jst(struct kr_wbuf *out)
{
    if (out->size == 0) /* no result: nothing to add to */
        return KR_OK;
    struct kr_wbuf tmp;
    kr_wbuf_init(&tmp, out->max);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &tmp, kr_wbuf_write);
    struct kr_mp_reader r;
    kr_mp_reader_init(&r, out->data, out->size, false);
    kr_err err = walk(&r, &pk, &tmp, 1);
    if (!err && kr_mp_remaining(&r))
        err = KR_ECORRUPT;
    if (!err) {
        kr_wbuf_reset(out);
        err = kr_wbuf_add(out, tmp.data, tmp.size);
    }
    kr_wbuf_free(&tmp);
    return err;
}
