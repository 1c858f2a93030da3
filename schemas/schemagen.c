/*
 * schemagen.c: the schema code generator. Reads schemas/fields.json,
 * events.json and ops.json, checks them strictly, and writes the C tables
 * declared in projections/schema.h and the reference docs:
 *
 *   schemagen SCHEMA_DIR OUT_DIR DOCS_DIR
 *     OUT_DIR/schema_gen.h    enums and name indexes
 *     OUT_DIR/schema_gen.c    the tables (kr_fields, kr_enums, kr_events, kr_ops, ...)
 *     DOCS_DIR/events.md      events, then every field and enum
 *     DOCS_DIR/ops.md         API errors and ops
 *
 * Exit status: 0 done, 1 the schema is invalid (nothing written), 2 usage or
 * I/O error.
 *
 * The modules: gen_parse (reading and checking the JSON), gen_c (the C
 * tables), gen_md (the Markdown reference), gen_util (diagnostics, arena,
 * text buffer); this file writes the outputs.
 *
 * Design notes:
 * - A host tool run by the build. It checks everything before writing
 *   anything, and reports every problem it finds rather than the first, each
 *   naming the file, the event / op / field and what is wrong.
 * - Output is a pure function of the schema, in schema order (jansson keeps
 *   object keys in document order), so tables and docs are reproducible and
 *   the committed docs can be compared byte for byte.
 * - Each output is written to a temporary file and renamed over the old one,
 *   and only when its content changed, so an unchanged schema recompiles
 *   nothing and a failed run leaves no half-written file.
 * - Strings point into the parsed JSON, which lives until exit; everything
 *   else comes from an arena freed at exit (the sanitizer build runs this
 *   tool too, with leak checking).
 */
#include "gen_c.h"
#include "gen_md.h"
#include "gen_parse.h"
#include "gen_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Output paths. */
#define SG_PATH_MAX 4096

/* ---- Writing files ---- */

static bool same_content(const char *path, const struct sbuf *b)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char buf[65536];
    size_t off = 0, n;
    bool same = true;
    while (same && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        same = n <= b->len - off && memcmp(buf, b->p + off, n) == 0;
        off += n;
    }
    same = same && !ferror(f) && off == b->len;
    fclose(f);
    return same;
}

/* Writes b to dir/name through a temporary file and rename, unless the file
 * already holds exactly b. False (reported) on an I/O error. */
static bool write_if_changed(const char *dir, const char *name, const struct sbuf *b)
{
    char path[SG_PATH_MAX], tmp[SG_PATH_MAX + 32];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        fprintf(stderr, "schemagen: %s/%s: path too long\n", dir, name);
        return false;
    }
    if (same_content(path, b))
        return true;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "schemagen: cannot create %s: %s\n", tmp, strerror(errno));
        return false;
    }
    bool ok = fwrite(b->p, 1, b->len, f) == b->len;
    ok = fflush(f) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "schemagen: cannot write %s: %s\n", path, strerror(errno));
        remove(tmp);
        return false;
    }
    return true;
}

static int run(const char *schema_dir, const char *out_dir, const char *docs_dir)
{
    struct schema s = {0};
    sg_parse(&s, schema_dir);

    int rc = 0;
    if (sg_nerrors) {
        fprintf(stderr, "schemagen: %u error%s; nothing written\n", sg_nerrors,
                sg_nerrors == 1 ? "" : "s");
        rc = 1;
    } else {
        struct sbuf out[4] = {{0}};
        gen_c_header(&s, &out[0]);
        gen_c_source(&s, &out[1]);
        gen_md_events(&s, &out[2]);
        gen_md_ops(&s, &out[3]);
        bool ok = write_if_changed(out_dir, "schema_gen.h", &out[0]);
        ok = ok && write_if_changed(out_dir, "schema_gen.c", &out[1]);
        ok = ok && write_if_changed(docs_dir, "events.md", &out[2]);
        ok = ok && write_if_changed(docs_dir, "ops.md", &out[3]);
        for (size_t i = 0; i < 4; i++)
            sb_fini(&out[i]);
        rc = ok ? 0 : 2;
    }
    sg_schema_fini(&s);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fputs("usage: schemagen SCHEMA_DIR OUT_DIR DOCS_DIR\n"
              "  reads SCHEMA_DIR/{fields,events,ops}.json; writes OUT_DIR/schema_gen.{h,c}\n"
              "  and DOCS_DIR/{events,ops}.md\n",
              stderr);
        return 2;
    }
    int rc = run(argv[1], argv[2], argv[3]);
    sg_arena_free();
    return rc;
}
