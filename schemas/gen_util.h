/*
 * gen_util.h: what every part of schemagen shares: diagnostics about the
 * schema, an arena for the parsed schema (freed once, at exit), a growable
 * text buffer for the outputs, and the C names schema names map to.
 *
 * schemagen is a host tool run by the build: running out of memory ends it
 * (exit status 2) rather than being reported to each caller.
 */
#ifndef KR_GEN_UTIL_H
#define KR_GEN_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Diagnostics ---- */

/* Problems reported so far: nothing is written while it is not 0. */
extern unsigned sg_nerrors;

/* Reports one problem in the schema ("schemagen: FILE: MESSAGE") and counts it. */
__attribute__((format(printf, 2, 3))) void sg_err(const char *file, const char *fmt, ...);

/* "schemagen: out of memory" and exit status 2. */
_Noreturn void sg_die_oom(void);

/* ---- Memory: an arena freed at exit ---- */

/* n zeroed elements of size bytes, living until sg_arena_free(). */
void *sg_calloc(size_t n, size_t size);
/* s[0..n) and a NUL, in the arena. */
char *sg_strndup(const char *s, size_t n);
/* Frees everything sg_calloc gave. */
void sg_arena_free(void);

/* ---- Growable text buffer ---- */

struct sbuf {
    char *p; /* NUL-terminated; heap, freed by sb_fini */
    size_t len, cap;
};

void sb_putn(struct sbuf *b, const char *s, size_t n);
void sb_puts(struct sbuf *b, const char *s);
void sb_putc(struct sbuf *b, char c);
__attribute__((format(printf, 2, 3))) void sb_printf(struct sbuf *b, const char *fmt, ...);
void sb_fini(struct sbuf *b);

/* ---- C names (in the arena) ---- */

/* prefix + name upper-cased, '.' and '-' as '_': sg_c_name("KR_EV_", "contact.tagged")
 * is "KR_EV_CONTACT_TAGGED". */
char *sg_c_name(const char *prefix, const char *name);

/* Lower-case C identifier fragment: "contact.tagged" -> "contact_tagged". */
char *sg_c_lower(const char *name);

/* The C function handling op name: "cmd_" + sg_c_lower(name). */
char *sg_c_handler(const char *name);

#endif
