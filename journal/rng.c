/*
 * rng.c: the system generator behind the kr_rng seam, and the deterministic
 * ChaCha20 stream for tests and demo data (see rng.h for its definition).
 */
#include "rng.h"

#include "endian_be.h"
#include "kr_error.h"
#include "kr_limits.h"

#include <sodium.h>
#include <string.h>

#define DET_CONTEXT "kiroku.rng.det.v1"
#define BLOCK       64u

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_start(void)
{
    /* randombytes_buf needs no more than this; it fails only when the
     * system has no usable random source, and nothing can go on then. */
    KR_ASSERT(sodium_init() >= 0);
}

void kr_rng_fill(const struct kr_rng *r, void *buf, size_t n)
{
    if (n == 0)
        return;
    if (r != NULL) {
        r->fill(r->ctx, buf, n);
        return;
    }
    pthread_once(&sodium_once, sodium_start);
    randombytes_buf(buf, n);
}

uint64_t kr_rng_u64(const struct kr_rng *r)
{
    uint8_t b[8];
    kr_rng_fill(r, b, sizeof b);
    return kr_get_le64(b);
}

uint64_t kr_rng_below(const struct kr_rng *r, uint64_t n)
{
    KR_ASSERT(n > 0);
    /* Values below 2^64 mod n would make the low residues more likely:
     * draw again. */
    uint64_t threshold = (0 - n) % n;
    uint64_t x = 0;
    for (unsigned i = 0; i < KR_RNG_BELOW_TRIES; i++) {
        x = kr_rng_u64(r);
        if (x >= threshold)
            break;
    }
    return x % n;
}

/* Keystream blocks [block, block + len/64) into out (len a multiple of 64). */
static void det_blocks(const struct kr_rng_det *d, uint8_t *out, size_t len, uint64_t block)
{
    static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
    memset(out, 0, len);
    crypto_stream_chacha20_xor_ic(out, out, len, nonce, block, d->key);
}

static void det_fill(void *ctx, void *buf, size_t n)
{
    struct kr_rng_det *d = ctx;
    uint8_t *p = buf;
    pthread_mutex_lock(&d->mu);
    while (n > 0) {
        if (d->avail > 0) {
            size_t take = n < d->avail ? n : d->avail;
            memcpy(p, d->buf + BLOCK - d->avail, take);
            d->avail -= take;
            p += take;
            n -= take;
        } else if (n >= BLOCK) {
            /* Whole blocks straight into the caller's buffer. */
            size_t len = n - n % BLOCK;
            det_blocks(d, p, len, d->block);
            d->block += len / BLOCK;
            p += len;
            n -= len;
        } else {
            det_blocks(d, d->buf, BLOCK, d->block);
            d->block++;
            d->avail = BLOCK;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

void kr_rng_det_init(struct kr_rng_det *d, uint64_t seed, struct kr_rng *out)
{
    pthread_once(&sodium_once, sodium_start);
    uint8_t msg[sizeof DET_CONTEXT - 1 + 8];
    memcpy(msg, DET_CONTEXT, sizeof DET_CONTEXT - 1);
    kr_put_le64(msg + sizeof DET_CONTEXT - 1, seed);
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    crypto_generichash(d->key, sizeof d->key, msg, sizeof msg, NULL, 0);
    out->fill = det_fill;
    out->ctx = d;
}

void kr_rng_det_fini(struct kr_rng_det *d)
{
    if (d == NULL)
        return;
    pthread_mutex_destroy(&d->mu);
    sodium_memzero(d, sizeof *d);
}
