/*
 * hash.c: SHA-256 and the RFC 6962 leaf/node hashes over OpenSSL's low-level
 * SHA-256. The low-level functions are deprecated in OpenSSL 3 in favour of EVP,
 * but they are still supported and skip EVP's per-call dispatch, which matters
 * when verification hashes millions of small inputs a second.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "hash.h"

#include <openssl/sha.h>
#include <string.h>

_Static_assert(sizeof(SHA256_CTX) <= sizeof(((struct kr_sha256_ctx *)0)->opaque),
               "kr_sha256_ctx too small for SHA256_CTX");

void kr_sha256(uint8_t out[KR_HASH_LEN], const void *data, size_t len)
{
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, data, len);
    SHA256_Final(out, &c);
}

void kr_leaf_hash(uint8_t out[KR_HASH_LEN], const void *data, size_t len)
{
    static const uint8_t prefix = 0x00;
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, &prefix, 1);
    SHA256_Update(&c, data, len);
    SHA256_Final(out, &c);
}

void kr_node_hash(uint8_t out[KR_HASH_LEN], const uint8_t left[KR_HASH_LEN],
                  const uint8_t right[KR_HASH_LEN])
{
    uint8_t buf[1 + 2 * KR_HASH_LEN];
    buf[0] = 0x01;
    memcpy(buf + 1, left, KR_HASH_LEN);
    memcpy(buf + 1 + KR_HASH_LEN, right, KR_HASH_LEN);
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, buf, sizeof buf);
    SHA256_Final(out, &c);
}

void kr_sha256_init(struct kr_sha256_ctx *ctx)
{
    SHA256_Init((SHA256_CTX *)(void *)ctx->opaque);
}

void kr_sha256_update(struct kr_sha256_ctx *ctx, const void *data, size_t len)
{
    SHA256_Update((SHA256_CTX *)(void *)ctx->opaque, data, len);
}

void kr_sha256_final(struct kr_sha256_ctx *ctx, uint8_t out[KR_HASH_LEN])
{
    SHA256_Final(out, (SHA256_CTX *)(void *)ctx->opaque);
}
