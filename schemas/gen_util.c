/*
 * gen_util.c: schemagen's diagnostics, arena and text buffer (see gen_util.h).
 */
#include "gen_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

/* ---- Diagnostics ---- */

unsigned sg_nerrors;

/* Reports one problem in the schema: "schemagen: FILE: MESSAGE". */
void sg_err(const char *file, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "schemagen: %s: ", file);
    vfprintf(stderr, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized): va_start above */
    fputc('\n', stderr);
    va_end(ap);
    sg_nerrors++;
}

void sg_die_oom(void)
{
    fputs("schemagen: out of memory\n", stderr);
    exit(2);
}

/* ---- Memory: an arena freed at exit ---- */

struct arena_block {
    struct arena_block *next;
    max_align_t data[];
};

static struct arena_block *arena;

/* n zeroed elements of size bytes, living until sg_arena_free(). */
void *sg_calloc(size_t n, size_t size)
{
    if (size != 0 && n > (SIZE_MAX - sizeof(struct arena_block)) / size)
        sg_die_oom();
    struct arena_block *b = calloc(1, sizeof *b + n * size);
    if (!b)
        sg_die_oom();
    b->next = arena;
    arena = b;
    return b->data;
}

char *sg_strndup(const char *s, size_t n)
{
    char *p = sg_calloc(n + 1, 1);
    memcpy(p, s, n);
    return p;
}

void sg_arena_free(void)
{
    while (arena) {
        struct arena_block *next = arena->next;
        free(arena);
        arena = next;
    }
}

/* ---- Growable text buffer ---- */

static void sb_reserve(struct sbuf *b, size_t more)
{
    if (more > SIZE_MAX / 2 - b->len)
        sg_die_oom();
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        sg_die_oom();
    b->p = p;
    b->cap = cap;
}

void sb_putn(struct sbuf *b, const char *s, size_t n)
{
    if (n == 0)
        return;
    sb_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sb_puts(struct sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

void sb_putc(struct sbuf *b, char c)
{
    sb_putn(b, &c, 1);
}

void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized) */
    va_end(ap);
    if (n < 0)
        sg_die_oom();
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sb_fini(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* prefix + name upper-cased, '.' and '-' as '_': sg_c_name("KR_EV_", "contact.tagged")
 * is "KR_EV_CONTACT_TAGGED". */
char *sg_c_name(const char *prefix, const char *name)
{
    size_t lp = strlen(prefix), n = lp + strlen(name) + 1;
    char *out = sg_calloc(n, 1);
    snprintf(out, n, "%s%s", prefix, name);
    for (char *p = out + lp; *p; p++) {
        if (is_lower(*p))
            *p = (char)(*p - 'a' + 'A');
        else if (*p == '.' || *p == '-')
            *p = '_';
    }
    return out;
}

/* Lower-case C identifier fragment for static arrays: "contact.tagged" -> "contact_tagged". */
char *sg_c_lower(const char *name)
{
    char *out = sg_strndup(name, strlen(name));
    for (char *p = out; *p; p++)
        if (*p == '.' || *p == '-')
            *p = '_';
    return out;
}

char *sg_c_handler(const char *name)
{
    size_t n = strlen("cmd_") + strlen(name) + 1;
    char *out = sg_calloc(n, 1);
    snprintf(out, n, "cmd_%s", sg_c_lower(name));
    return out;
}
