/*
 * rng.h: the randomness seam, as clock.h is for time.
 *
 * Everything that draws random bytes (data keys, nonces, ids) takes a
 * `const struct kr_rng *`; NULL means the operating system's generator
 * (libsodium's randombytes_buf). Tests and demo data pass a deterministic
 * stream instead, so that the same seed gives the same keys, ids and events.
 *
 * The deterministic stream is the ChaCha20 keystream (the original variant:
 * 64-bit nonce, 64-bit block counter; RFC 7539 section 2.3 block function)
 * under the key
 *     BLAKE2b-256("kiroku.rng.det.v1" || le64(seed))       (unkeyed)
 * with an all-zero nonce, starting at block 0. Bytes are handed out in stream
 * order, whatever the sizes of the calls that ask for them: fill(8) + fill(8)
 * gives the same 16 bytes as fill(16). It is not secret (anyone who knows the
 * seed knows the stream): never use it for production keys.
 */
#ifndef KR_RNG_H
#define KR_RNG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* A source of random bytes: fill writes n bytes to buf and cannot fail. It may
 * be called from several threads at once. Caller-owned; must outlive its
 * users. */
struct kr_rng {
    void (*fill)(void *ctx, void *buf, size_t n);
    void *ctx;
};

/* Writes n random bytes from r, or from the system generator when r is NULL.
 * Thread-safe when r's fill is (the system generator and kr_rng_det are). */
void kr_rng_fill(const struct kr_rng *r, void *buf, size_t n);

/* The next 8 bytes of r as a little-endian u64. */
uint64_t kr_rng_u64(const struct kr_rng *r);

/* A uniform value in [0, n), by rejection sampling (unbiased). n must not be
 * 0. A source that keeps returning values in the rejected range (only a
 * broken or fake one: the chance is below 2^-KR_RNG_BELOW_TRIES) gets the
 * last draw reduced mod n after KR_RNG_BELOW_TRIES draws, so the call always
 * ends. */
uint64_t kr_rng_below(const struct kr_rng *r, uint64_t n);

/* A deterministic stream (see the top of this file). Caller-owned storage:
 * kr_rng_det_init before use, kr_rng_det_fini after the last user of the
 * kr_rng it set up is done. Thread-safe: calls are serialized by a mutex, so
 * each call gets a contiguous run of the stream; with several threads, which
 * thread gets which run depends on scheduling. */
struct kr_rng_det {
    pthread_mutex_t mu;
    uint8_t key[32];
    uint64_t block;  /* next keystream block to compute */
    uint8_t buf[64]; /* the last block computed */
    size_t avail;    /* unread bytes at the end of buf */
};

/* Starts the stream for `seed` in d, and points *out at it (out->ctx = d). */
void kr_rng_det_init(struct kr_rng_det *d, uint64_t seed, struct kr_rng *out);

/* Releases d. Accepts NULL and zeroed storage. */
void kr_rng_det_fini(struct kr_rng_det *d);

#endif
