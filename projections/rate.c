/*
 * rate.c: fixed-window request counters (see rate.h).
 *
 * Design notes. Open addressing over a fixed array: a key's hash picks its
 * first slot and it may use the KR_RATE_PROBES slots from there. A slot
 * whose window has ended is free, whoever held it, so the table never needs
 * sweeping. One mutex guards the table: a take is a few hash and compare
 * operations, far shorter than anything a request does after it.
 */
#include "rate.h"

#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    uint8_t key[16]; /* keyed hash of kind and bytes */
    uint64_t start;  /* when its window started (UTC ns); 0 = never used */
    uint32_t count;
    bool refused; /* refused once in this window already */
};

struct kr_rate {
    pthread_mutex_t mu;
    uint64_t window;
    uint8_t hkey[crypto_generichash_KEYBYTES];
    struct slot slots[KR_RATE_SLOTS];
};

struct kr_rate *kr_rate_new(uint64_t window_ns)
{
    if (sodium_init() < 0 || window_ns == 0)
        return NULL;
    struct kr_rate *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_init(&r->mu, NULL);
    r->window = window_ns;
    randombytes_buf(r->hkey, sizeof r->hkey);
    return r;
}

void kr_rate_free(struct kr_rate *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->mu);
    sodium_memzero(r, sizeof *r);
    free(r);
}

static void hash_key(const struct kr_rate *r, const struct kr_rate_key *k, uint8_t out[16])
{
    crypto_generichash_state st;
    uint8_t len = (uint8_t)strlen(k->kind);
    crypto_generichash_init(&st, r->hkey, sizeof r->hkey, 16);
    crypto_generichash_update(&st, &len, 1);
    crypto_generichash_update(&st, (const uint8_t *)k->kind, len);
    crypto_generichash_update(&st, k->p, k->n);
    crypto_generichash_final(&st, out, 16);
}

static bool live(const struct kr_rate *r, const struct slot *s, uint64_t now)
{
    return s->start != 0 && now >= s->start && now - s->start < r->window;
}

/* The slot of key h: its own (live), else a free one (*fresh), else NULL with
 * *retry_ns until the first of its probed slots frees. */
static struct slot *find(struct kr_rate *r, const uint8_t h[16], uint64_t now, bool *fresh,
                         uint64_t *retry_ns)
{
    size_t first = ((size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16) % KR_RATE_SLOTS;
    struct slot *free_slot = NULL;
    uint64_t soonest = UINT64_MAX;
    for (size_t i = 0; i < KR_RATE_PROBES; i++) {
        struct slot *s = &r->slots[(first + i) % KR_RATE_SLOTS];
        if (!live(r, s, now)) {
            if (!free_slot)
                free_slot = s;
            continue;
        }
        if (sodium_memcmp(s->key, h, 16) == 0) {
            *fresh = false;
            return s;
        }
        uint64_t left = r->window - (now - s->start);
        if (left < soonest)
            soonest = left;
    }
    *fresh = true;
    *retry_ns = soonest;
    return free_slot;
}

kr_err kr_rate_take(struct kr_rate *r, const struct kr_rate_key *keys, size_t n, uint64_t now,
                    size_t *which, uint64_t *retry_ns, bool *first)
{
    KR_ASSERT(n <= KR_RATE_KEYS_MAX);
    uint8_t h[KR_RATE_KEYS_MAX][16];
    struct slot *s[KR_RATE_KEYS_MAX];
    bool fresh[KR_RATE_KEYS_MAX];
    *which = 0;
    *retry_ns = 0;
    *first = false;
    if (now == 0)
        now = 1; /* start 0 means "never used" */
    for (size_t i = 0; i < n; i++)
        hash_key(r, &keys[i], h[i]);
    pthread_mutex_lock(&r->mu);
    kr_err err = KR_OK;
    for (size_t i = 0; i < n && !err; i++) {
        uint64_t wait = 0;
        s[i] = find(r, h[i], now, &fresh[i], &wait);
        /* Two keys of one take may land on one free slot: the second looks
         * again after the first claims it below, so claim as we go. */
        if (!s[i]) {
            err = KR_ERATE;
            *which = i;
            *retry_ns = wait;
        } else if (!fresh[i] && s[i]->count >= keys[i].max) {
            err = KR_ERATE;
            *which = i;
            *retry_ns = r->window - (now - s[i]->start);
            *first = !s[i]->refused;
            s[i]->refused = true;
        } else if (fresh[i]) {
            memcpy(s[i]->key, h[i], 16);
            s[i]->start = now;
            s[i]->count = 0;
            s[i]->refused = false;
        }
        if (!err && keys[i].max == 0) {
            err = KR_ERATE;
            *which = i;
            *retry_ns = r->window;
        }
    }
    if (err) {
        /* Give back the free slots claimed for this take: nothing counted. */
        for (size_t i = 0; i < *which; i++)
            if (fresh[i])
                s[i]->start = 0;
        if (s[*which] && fresh[*which])
            s[*which]->start = 0;
    } else {
        for (size_t i = 0; i < n; i++)
            s[i]->count++;
    }
    pthread_mutex_unlock(&r->mu);
    sodium_memzero(h, sizeof h);
    return err;
}

void kr_rate_give_back(struct kr_rate *r, const struct kr_rate_key *keys, size_t n, uint64_t now)
{
    KR_ASSERT(n <= KR_RATE_KEYS_MAX);
    uint8_t h[16];
    if (now == 0)
        now = 1;
    for (size_t i = 0; i < n; i++) {
        hash_key(r, &keys[i], h);
        bool fresh;
        uint64_t wait;
        pthread_mutex_lock(&r->mu);
        struct slot *s = find(r, h, now, &fresh, &wait);
        if (s && !fresh && s->count > 0)
            s->count--;
        pthread_mutex_unlock(&r->mu);
    }
    sodium_memzero(h, sizeof h);
}
