/*
 * b64.h: strict, canonical standard base64 (RFC 4648 section 4, with padding).
 *
 * Signed texts (checkpoint notes, key files) must have one spelling per value,
 * or a signed note could be re-spelled and still verify. libsodium's decoder
 * is lenient (Debian 12's 1.0.18 reads every byte 0x80..0xFF as '/'), so every
 * decode of hostile text goes through here: only [A-Za-z0-9+/], '=' only as the
 * final padding, length a multiple of 4, unused bits zero.
 */
#ifndef KR_B64_H
#define KR_B64_H

#include "kr_error.h"

#include <stddef.h>
#include <stdint.h>

/* Decodes in[0..len) into out (cap bytes), *out_len bytes. KR_ECORRUPT if the
 * text is not canonical padded base64, KR_ETOOLARGE if out is too small. */
KR_MUST_CHECK kr_err kr_b64_decode(uint8_t *out, size_t cap, const char *in, size_t len,
                                   size_t *out_len);

#endif
