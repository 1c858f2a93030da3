/*
 * console.h: the console's files, embedded into the binary at build time.
 *
 * Every file of api/console/ becomes one entry of api_console_files (the
 * build generates console_files.c from them with api/embed_console.cmake:
 * no file is read at run time). Names are flat ([a-z0-9][a-z0-9._-]*, at
 * most KR_GATEWAY_FILE_NAME_MAX bytes) and end in one of the extensions
 * api_console_type knows; the build fails on any other. The gateway
 * (gateway.h) serves them at /NAME, index.html at /.
 */
#ifndef KR_API_CONSOLE_H
#define KR_API_CONSOLE_H

#include <stddef.h>

struct api_console_file {
    const char *name;          /* "app.js" */
    const unsigned char *data; /* its bytes (static) */
    size_t len;
    const char *etag; /* "\"<first 32 hex digits of its SHA-256>\"" */
};

/* Sorted by name. */
extern const struct api_console_file api_console_files[];
extern const size_t api_console_nfiles;

/* The file named name[0..len), or NULL. */
const struct api_console_file *api_console_find(const char *name, size_t len);

/* The Content-Type of a file name by its extension (.html .js .css .svg
 * .png .json .txt), or NULL for any other. */
const char *api_console_type(const char *name);

#endif
