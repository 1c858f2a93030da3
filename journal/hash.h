/*
 * hash.h: SHA-256 for the journal, and the RFC 6962 leaf and node hashes.
 *
 * Uses OpenSSL's SHA-256 (SHA-NI accelerated where the CPU has it) through its
 * low-level interface: the EVP interface costs ~60 ns of dispatch per call,
 * which is a third of a leaf hash.
 */
#ifndef KR_HASH_H
#define KR_HASH_H

#include <stddef.h>
#include <stdint.h>

#define KR_HASH_LEN 32

/* out = SHA-256(data[0..len)). */
void kr_sha256(uint8_t out[KR_HASH_LEN], const void *data, size_t len);

/* RFC 6962 leaf hash: out = SHA-256(0x00 || data). */
void kr_leaf_hash(uint8_t out[KR_HASH_LEN], const void *data, size_t len);

/* RFC 6962 interior node hash: out = SHA-256(0x01 || left || right).
 * `out` may alias `left` or `right`. */
void kr_node_hash(uint8_t out[KR_HASH_LEN], const uint8_t left[KR_HASH_LEN],
                  const uint8_t right[KR_HASH_LEN]);

/* Incremental SHA-256 for callers that hash several pieces. */
struct kr_sha256_ctx {
    /* Opaque storage for OpenSSL's SHA256_CTX (112 bytes), kept here so the
     * context lives on the caller's stack. */
    _Alignas(8) unsigned char opaque[128];
};
void kr_sha256_init(struct kr_sha256_ctx *ctx);
void kr_sha256_update(struct kr_sha256_ctx *ctx, const void *data, size_t len);
void kr_sha256_final(struct kr_sha256_ctx *ctx, uint8_t out[KR_HASH_LEN]);

#endif
