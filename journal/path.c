/*
 * path.c: bounded path joining (see path.h).
 */
#include "path.h"

#include <stdio.h>

kr_err kr_path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return KR_ETOOLARGE;
    }
    return KR_OK;
}
