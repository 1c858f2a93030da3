/*
 * ceiling.c: see ceiling.h.
 */
#include "ceiling.h"

#include "hash.h"
#include "kr_limits.h"
#include "record.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CEILING_THREADS_MAX 256u

struct ceiling_run {
    bool verify;
    size_t payload;
    uint64_t until_ns;
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    _Atomic uint64_t items;
    _Atomic bool failed; /* a thread had no memory, or a signature did not verify */
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One record like the ones the benchmarks append. */
static void sample_record(struct jrn_record *r, const uint8_t *payload, size_t len)
{
    memset(r, 0, sizeof *r);
    r->format = JRN_FORMAT;
    r->tenant = 1;
    r->version = 1;
    r->time_ns = 1;
    r->key_id = 1;
    r->stream = "bench/ceiling/0/0";
    r->stream_len = strlen(r->stream);
    r->type = "bench.appended";
    r->type_len = strlen(r->type);
    r->actor = "bench";
    r->actor_len = strlen(r->actor);
    r->payload = payload;
    r->payload_len = len;
}

static void *ceiling_main(void *arg)
{
    struct ceiling_run *run = arg;
    uint8_t *payload = calloc(1, run->payload ? run->payload : 1);
    if (!payload) {
        atomic_store(&run->failed, true);
        return NULL;
    }
    randombytes_buf(payload, run->payload);
    struct jrn_record r;
    sample_record(&r, payload, run->payload);
    uint8_t msg[JRN_SIGN_INPUT_MAX], sig[crypto_sign_BYTES];
    size_t len;
    /* A valid signature to verify. */
    kr_sha256(r.commitment, payload, run->payload);
    jrn_record_sign_input(&r, msg, &len);
    crypto_sign_detached(sig, NULL, msg, len, run->sk);
    uint64_t n = 0;
    bool ok = true;
    do {
        for (int i = 0; i < 64; i++, n++) {
            kr_sha256(r.commitment, payload, run->payload);
            jrn_record_sign_input(&r, msg, &len);
            if (run->verify)
                ok &= crypto_sign_verify_detached(sig, msg, len, run->pk) == 0;
            else
                crypto_sign_detached(sig, NULL, msg, len, run->sk);
        }
    } while (mono_ns() < run->until_ns);
    free(payload);
    if (ok)
        atomic_fetch_add(&run->items, n);
    else
        atomic_store(&run->failed, true);
    return NULL;
}

unsigned ceiling_threads(unsigned threads)
{
    if (threads)
        return threads < CEILING_THREADS_MAX ? threads : CEILING_THREADS_MAX;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : n > (long)CEILING_THREADS_MAX ? CEILING_THREADS_MAX : (unsigned)n;
}

static double ceiling_run(bool verify, unsigned threads, size_t payload, double seconds)
{
    if (payload > KR_PAYLOAD_MAX || sodium_init() < 0)
        return 0;
    threads = ceiling_threads(threads);
    struct ceiling_run *run = calloc(1, sizeof *run);
    pthread_t *t = calloc(threads, sizeof *t);
    if (!run || !t) {
        free(run);
        free(t);
        return 0;
    }
    run->verify = verify;
    run->payload = payload;
    crypto_sign_keypair(run->pk, run->sk);
    uint64_t t0 = mono_ns();
    run->until_ns = t0 + (uint64_t)(seconds * 1e9);
    unsigned started = 0;
    for (; started < threads; started++)
        if (pthread_create(&t[started], NULL, ceiling_main, run) != 0)
            break;
    for (unsigned i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    double elapsed = (double)(mono_ns() - t0) / 1e9;
    bool ok = started == threads && !atomic_load(&run->failed) && elapsed > 0;
    double rate = ok ? (double)atomic_load(&run->items) / elapsed : 0;
    sodium_memzero(run->sk, sizeof run->sk);
    free(run);
    free(t);
    return rate;
}

double ceiling_sign(unsigned threads, size_t payload, double seconds)
{
    return ceiling_run(false, threads, payload, seconds);
}

double ceiling_verify(unsigned threads, size_t payload, double seconds)
{
    return ceiling_run(true, threads, payload, seconds);
}
