/* wbuf.c: see wbuf.h. */
#include "wbuf.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* The first block: small replies and results fit without growing. */
#define KR_WBUF_FIRST 256

static void *(*wb_alloc)(size_t) = malloc;
static void (*wb_free)(void *) = free;

void kr_wbuf_set_allocator(void *(*alloc_fn)(size_t), void (*free_fn)(void *))
{
    wb_alloc = alloc_fn ? alloc_fn : malloc;
    wb_free = free_fn ? free_fn : free;
}

void kr_wbuf_init(struct kr_wbuf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

kr_err kr_wbuf_add(struct kr_wbuf *b, const void *p, size_t len)
{
    if (b->failed)
        return b->failed;
    if (len > b->max - b->size) {
        b->failed = KR_ETOOLARGE;
        return b->failed;
    }
    size_t need = b->size + len;
    if (need > b->alloc) {
        size_t cap = b->alloc ? b->alloc : KR_WBUF_FIRST;
        while (cap < need)
            cap = cap > b->max / 2 ? b->max : cap * 2;
        if (cap > b->max)
            cap = b->max;
        char *n = wb_alloc(cap);
        if (!n) {
            b->failed = KR_ENOMEM;
            return b->failed;
        }
        if (b->data) {
            memcpy(n, b->data, b->size);
            sodium_memzero(b->data, b->alloc);
            wb_free(b->data);
        }
        b->data = n;
        b->alloc = cap;
    }
    if (len)
        memcpy(b->data + b->size, p, len);
    b->size = need;
    return KR_OK;
}

int kr_wbuf_write(void *data, const char *buf, size_t len)
{
    return kr_wbuf_add(data, buf, len) == KR_OK ? 0 : -1;
}

kr_err kr_wbuf_failed(const struct kr_wbuf *b)
{
    return b->failed;
}

void kr_wbuf_reset(struct kr_wbuf *b)
{
    if (b->data)
        sodium_memzero(b->data, b->alloc);
    b->size = 0;
    b->failed = KR_OK;
}

void kr_wbuf_reset_keep(struct kr_wbuf *b, size_t keep)
{
    if (b->alloc > keep)
        kr_wbuf_free(b);
    else
        kr_wbuf_reset(b);
}

void kr_wbuf_free(struct kr_wbuf *b)
{
    if (b->data) {
        sodium_memzero(b->data, b->alloc);
        wb_free(b->data);
    }
    b->data = NULL;
    b->size = 0;
    b->alloc = 0;
    b->failed = KR_OK;
}
