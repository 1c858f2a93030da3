/*
 * wbuf.h: a growing write buffer with a ceiling that wipes what it frees.
 *
 * For bytes that may hold secrets (session tokens, passwords, auth codes,
 * keys) and for replies that must stay bounded while they are built: like
 * curl's dynbuf, the ceiling is given at init and a write that would pass it
 * fails (KR_ETOOLARGE) without changing the buffer. Unlike msgpack_sbuffer,
 * growing never leaves the old block unwiped: a new block is allocated, the
 * bytes copied, the old block wiped with sodium_memzero and freed (no
 * realloc). kr_wbuf_reset and kr_wbuf_free wipe too.
 *
 * msgpack: msgpack_packer_init(&pk, &wb, kr_wbuf_write) makes a packer write
 * into it; a pack call past the ceiling returns -1, and kr_wbuf_failed tells
 * which error stopped it (KR_ETOOLARGE or KR_ENOMEM) until the next reset.
 *
 * Ownership: the caller owns the struct; data is owned by the buffer until
 * kr_wbuf_free. data/size may be read; never write them directly.
 */
#ifndef KR_WBUF_H
#define KR_WBUF_H

#include <stddef.h>

#include "kr_error.h"

struct kr_wbuf {
    char *data;    /* the bytes written, NULL until the first write */
    size_t size;   /* bytes written */
    size_t alloc;  /* bytes allocated at data */
    size_t max;    /* the ceiling: size never exceeds it */
    kr_err failed; /* the first write error since the last reset, else KR_OK */
};

/* An empty buffer that holds at most `max` bytes (max > 0). */
void kr_wbuf_init(struct kr_wbuf *b, size_t max);
/* Appends len bytes. KR_ETOOLARGE if size + len > max, KR_ENOMEM; on error
 * the buffer is unchanged (and remembers the error). */
KR_MUST_CHECK kr_err kr_wbuf_add(struct kr_wbuf *b, const void *p, size_t len);
/* msgpack_packer_write callback: data is a struct kr_wbuf *; 0 or -1. */
int kr_wbuf_write(void *data, const char *buf, size_t len);
/* The error that made a write fail since the last reset, else KR_OK. */
kr_err kr_wbuf_failed(const struct kr_wbuf *b);
/* Wipes the bytes written and empties the buffer; keeps its block. */
void kr_wbuf_reset(struct kr_wbuf *b);
/* Wipes and frees the block; the buffer is empty and may be used again. */
void kr_wbuf_free(struct kr_wbuf *b);
/* kr_wbuf_reset, then frees the block too if it is larger than `keep`
 * bytes: a buffer reused for many writes keeps a small block, not the
 * largest it ever needed (a worker's reply buffer after one large reply). */
void kr_wbuf_reset_keep(struct kr_wbuf *b, size_t keep);

/* Test seam: the allocator the buffer uses (NULL restores malloc/free).
 * Not for production code. */
void kr_wbuf_set_allocator(void *(*alloc_fn)(size_t), void (*free_fn)(void *));

#endif
