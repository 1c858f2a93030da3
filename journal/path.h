/*
 * path.h: joining a directory and a name into a path, bounded.
 *
 * Every path kiroku builds below a data or backup directory goes through
 * kr_path_join, so none is ever cut short silently: a result that does not
 * fit its buffer (callers use KR_PATH_MAX, journal/kr_limits.h) is an error,
 * not a path to some other file.
 */
#ifndef KR_PATH_H
#define KR_PATH_H

#include "kr_error.h"

#include <stddef.h>

/* Writes "dir/name" with its NUL into out (cap bytes). name may itself hold
 * slashes ("journal/writer.lock"). Errors: KR_ETOOLARGE if the result with
 * its NUL is longer than cap (out then holds an empty string). */
KR_MUST_CHECK kr_err kr_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
