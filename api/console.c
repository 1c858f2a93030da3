/*
 * console.c: finding the console's embedded files (console.h); the files
 * themselves are in the generated console_files.c.
 */
#include "console.h"

#include <string.h>

const struct api_console_file *api_console_find(const char *name, size_t len)
{
    size_t lo = 0, hi = api_console_nfiles;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *m = api_console_files[mid].name;
        size_t mlen = strlen(m);
        int c = memcmp(name, m, len < mlen ? len : mlen);
        if (c == 0)
            c = len < mlen ? -1 : len > mlen;
        if (c == 0)
            return &api_console_files[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *api_console_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}
