/*
 * config.h: kiroku serve's configuration file (`serve --config FILE`, by
 * default DIR/kiroku.conf when it exists).
 *
 * The format is one setting per line, `name = value`, with `#` starting a
 * comment line and blank lines ignored:
 *
 *     # where e-mail goes
 *     smtp.url = smtps://mail.example.jp:465
 *     alerts.login_failures.count = 10
 *
 * Names are the ones in config.c's table (each with its kind, bounds,
 * default and what it is); a name not in the table, a value out of its
 * bounds, a line without `=`, or a name given twice is refused with the line
 * number, so a typo never silently leaves a default in place. Values are
 * taken as written after trimming spaces (no quoting); at most
 * KR_CONFIG_VALUE_MAX bytes. The file is at most KR_CONFIG_FILE_MAX bytes,
 * and must not be writable by group or others (it may name a password
 * file, and its thresholds are security settings).
 *
 * Ownership: a struct kr_config owns copies of every value; kr_config_free
 * releases it. Readers are safe from many threads once loaded.
 */
#ifndef KR_CONFIG_H
#define KR_CONFIG_H

#include "kr_error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KR_CONFIG_FILE_MAX  (64 * 1024)
#define KR_CONFIG_VALUE_MAX 1024
#define KR_CONFIG_NAME_MAX  64

struct kr_config;

/* Loads path into *out. With path NULL, *out holds every default. Errors:
 * KR_ENOTFOUND (no such file), KR_EINVAL (a bad line, or a file group or
 * others can write: why says which and why), KR_ETOOLARGE, KR_EKEY (a
 * symlink or not a regular file), KR_EIO, KR_ENOMEM. why (may be NULL)
 * gets a NUL-terminated explanation of at most why_cap bytes. */
KR_MUST_CHECK kr_err kr_config_load(const char *path, struct kr_config **out, char *why,
                                    size_t why_cap);
void kr_config_free(struct kr_config *c); /* accepts NULL */

/* A setting's value, or its default. A name not in the table is a
 * programming error (asserted). kr_config_str returns "" for an unset
 * string without a default; the pointer lives as long as c. */
const char *kr_config_str(const struct kr_config *c, const char *name);
uint64_t kr_config_u64(const struct kr_config *c, const char *name);
bool kr_config_bool(const struct kr_config *c, const char *name);
/* Whether the file set it (rather than the default). */
bool kr_config_is_set(const struct kr_config *c, const char *name);

/* Writes the table (name, kind, bounds, default, doc) as Markdown rows, for
 * docs/operations.md; `kiroku serve --config-help` prints it. */
void kr_config_describe(FILE *f);

#endif
