/*
 * record.c: encoding, strict decoding, signing input and leaf hash of journal
 * records (format in record.h and docs/journal-format.md).
 *
 * Encoding uses msgpack-c's packer into a fixed buffer; its packer always picks
 * the shortest form, which is what the strict decoder demands back.
 */
#include "record.h"

#include "endian_be.h"
#include "mp.h"

#include <limits.h>
#include <msgpack.h>
#include <string.h>

/* Header elements of format 1 and format 2 (which adds tseq). */
#define HEADER_FIELDS_1 12
#define HEADER_FIELDS_2 13

kr_err jrn_record_check_fields(const struct jrn_record *r)
{
    if (r->stream_len == 0 || r->type_len == 0)
        return KR_EINVAL;
    if (r->stream_len > KR_STREAM_MAX || r->type_len > KR_TYPE_MAX || r->actor_len > KR_ACTOR_MAX)
        return KR_ETOOLARGE;
    if (!r->payload_stripped && r->payload_len > KR_PAYLOAD_MAX)
        return KR_ETOOLARGE;
    if (!r->payload_stripped && r->payload_len > 0 && r->payload == NULL)
        return KR_EINVAL;
    for (size_t i = 0; i < r->stream_len; i++)
        if (r->stream[i] < 0x21 || r->stream[i] > 0x7e)
            return KR_EINVAL;
    for (size_t i = 0; i < r->actor_len; i++)
        if (r->actor[i] < 0x21 || r->actor[i] > 0x7e)
            return KR_EINVAL;
    for (size_t i = 0; i < r->type_len; i++) {
        char c = r->type[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_'))
            return KR_EINVAL;
    }
    return KR_OK;
}

void jrn_record_sign_input(const struct jrn_record *r, uint8_t out[JRN_SIGN_INPUT_MAX], size_t *len)
{
    uint8_t *p = out;
    memcpy(p, JRN_SIGN_DOMAIN, sizeof(JRN_SIGN_DOMAIN) - 1);
    p += sizeof(JRN_SIGN_DOMAIN) - 1;
    kr_put_be64(p, r->tenant);
    kr_put_be64(p + 8, r->version);
    kr_put_be64(p + 16, r->time_ns);
    kr_put_be32(p + 24, r->key_id);
    p += 28;
    *p++ = (uint8_t)r->stream_len;
    memcpy(p, r->stream, r->stream_len);
    p += r->stream_len;
    *p++ = (uint8_t)r->type_len;
    memcpy(p, r->type, r->type_len);
    p += r->type_len;
    *p++ = (uint8_t)r->actor_len;
    if (r->actor_len)
        memcpy(p, r->actor, r->actor_len);
    p += r->actor_len;
    memcpy(p, r->commitment, KR_HASH_LEN);
    p += KR_HASH_LEN;
    *len = (size_t)(p - out);
}

static void pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    if (len)
        msgpack_pack_str_body(pk, s, len);
}

static void pack_bin(msgpack_packer *pk, const uint8_t *b, size_t len)
{
    msgpack_pack_bin(pk, len);
    if (len)
        msgpack_pack_bin_body(pk, b, len);
}

static kr_err header_format(const struct jrn_record *r, uint32_t *format)
{
    *format = r->format ? r->format : JRN_FORMAT;
    if (*format == JRN_FORMAT)
        return r->tseq ? KR_OK : KR_EINVAL;
    if (*format == JRN_FORMAT_1)
        return r->tseq ? KR_EINVAL : KR_OK;
    return KR_EINVAL;
}

static void pack_header(msgpack_packer *pk, const struct jrn_record *r, uint32_t format)
{
    bool f2 = format == JRN_FORMAT;
    msgpack_pack_array(pk, f2 ? HEADER_FIELDS_2 : HEADER_FIELDS_1);
    msgpack_pack_uint64(pk, format);
    msgpack_pack_uint64(pk, r->seq);
    msgpack_pack_uint64(pk, r->time_ns);
    msgpack_pack_uint64(pk, r->tenant);
    if (f2)
        msgpack_pack_uint64(pk, r->tseq);
    pack_str(pk, r->stream, r->stream_len);
    msgpack_pack_uint64(pk, r->version);
    pack_str(pk, r->type, r->type_len);
    pack_str(pk, r->actor, r->actor_len);
    msgpack_pack_uint64(pk, r->key_id);
    pack_bin(pk, r->commitment, KR_HASH_LEN);
    pack_bin(pk, r->prev, KR_HASH_LEN);
    pack_bin(pk, r->sig, JRN_SIG_LEN);
}

kr_err jrn_record_encode_header(const struct jrn_record *r, uint8_t *out, size_t cap, size_t *len)
{
    uint32_t format;
    kr_err err = header_format(r, &format);
    if (err)
        return err;
    struct kr_mp_fixbuf fb = {.p = out, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    pack_header(&pk, r, format);
    if (fb.overflow)
        return KR_ETOOLARGE;
    *len = fb.len;
    return KR_OK;
}

kr_err jrn_record_encode(const struct jrn_record *r, uint8_t *out, size_t cap, size_t *len,
                         size_t *header_len)
{
    uint32_t format;
    kr_err err = header_format(r, &format);
    if (err)
        return err;
    struct kr_mp_fixbuf fb = {.p = out, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    msgpack_pack_array(&pk, 2);
    pack_header(&pk, r, format);
    if (header_len)
        *header_len = fb.len - JRN_HEADER_OFFSET;
    if (r->payload_stripped)
        msgpack_pack_nil(&pk);
    else
        pack_bin(&pk, r->payload, r->payload_len);
    if (fb.overflow)
        return KR_ETOOLARGE;
    *len = fb.len;
    return KR_OK;
}

static kr_err read_u32(struct kr_mp_reader *rd, uint32_t *v)
{
    uint64_t x;
    kr_err err = kr_mp_read_uint(rd, &x);
    if (err)
        return err;
    if (x > UINT32_MAX)
        return KR_ECORRUPT;
    *v = (uint32_t)x;
    return KR_OK;
}

static kr_err read_fixed_bin(struct kr_mp_reader *rd, uint8_t *out, size_t want)
{
    const uint8_t *b;
    size_t n;
    kr_err err = kr_mp_read_bin(rd, &b, &n);
    if (err)
        return err;
    if (n != want)
        return KR_ECORRUPT;
    memcpy(out, b, n);
    return KR_OK;
}

kr_err jrn_record_decode(const uint8_t *buf, size_t len, struct jrn_record *r)
{
    struct kr_mp_reader rd;
    uint32_t n;
    uint64_t format;
    kr_err err;

    memset(r, 0, sizeof *r);
    if (len > KR_RECORD_MAX)
        return KR_ECORRUPT;
    kr_mp_reader_init(&rd, buf, len, true);
    if ((err = kr_mp_read_array(&rd, &n)) || n != 2)
        return KR_ECORRUPT;
    r->header = rd.p;
    if ((err = kr_mp_read_array(&rd, &n)) || (n != HEADER_FIELDS_1 && n != HEADER_FIELDS_2))
        return KR_ECORRUPT;
    if ((err = kr_mp_read_uint(&rd, &format)))
        return err;
    if (format != JRN_FORMAT && format != JRN_FORMAT_1)
        return KR_EVERSION;
    /* Each format has exactly its own element count. */
    if (n != (format == JRN_FORMAT ? HEADER_FIELDS_2 : HEADER_FIELDS_1))
        return KR_ECORRUPT;
    r->format = (uint32_t)format;
    if ((err = kr_mp_read_uint(&rd, &r->seq)) || (err = kr_mp_read_uint(&rd, &r->time_ns)) ||
        (err = kr_mp_read_uint(&rd, &r->tenant)) ||
        (format == JRN_FORMAT && (err = kr_mp_read_uint(&rd, &r->tseq))) ||
        (err = kr_mp_read_str(&rd, &r->stream, &r->stream_len)) ||
        (err = kr_mp_read_uint(&rd, &r->version)) ||
        (err = kr_mp_read_str(&rd, &r->type, &r->type_len)) ||
        (err = kr_mp_read_str(&rd, &r->actor, &r->actor_len)) ||
        (err = read_u32(&rd, &r->key_id)) ||
        (err = read_fixed_bin(&rd, r->commitment, KR_HASH_LEN)) ||
        (err = read_fixed_bin(&rd, r->prev, KR_HASH_LEN)) ||
        (err = read_fixed_bin(&rd, r->sig, JRN_SIG_LEN)))
        return KR_ECORRUPT;
    r->header_len = (size_t)(rd.p - r->header);
    if (kr_mp_peek_nil(&rd)) {
        if (kr_mp_read_nil(&rd))
            return KR_ECORRUPT;
        r->payload_stripped = true;
    } else if (kr_mp_read_bin(&rd, &r->payload, &r->payload_len)) {
        return KR_ECORRUPT;
    }
    if (kr_mp_remaining(&rd) != 0)
        return KR_ECORRUPT;
    if (r->seq == 0 || r->version == 0 || (format == JRN_FORMAT && r->tseq == 0))
        return KR_ECORRUPT;
    if (jrn_record_check_fields(r) != KR_OK)
        return KR_ECORRUPT;
    return KR_OK;
}

void jrn_record_leaf_hash(const struct jrn_record *r, uint8_t out[KR_HASH_LEN])
{
    kr_leaf_hash(out, r->header, r->header_len);
}
