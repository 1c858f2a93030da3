/*
 * docs_test.c: the docs name only commands and ops that exist.
 *
 * README.md and the docs/ *.md files are scanned for
 * - `kiroku WORD` at the start of a code span or of a line in a fenced code
 *   block (optionally after "$ "): WORD must be a command that `kiroku --help`
 *   lists;
 * - code spans that are exactly WORD.WORD (lower case, digits, '_'): each must
 *   be an op, an event or a permission of schemas/ops.json or
 *   schemas/events.json, a journal record type of journal/journal.h, or a
 *   setting of serve's configuration file (`serve --config-help`), unless
 *   its last part is a file extension (`journal.c`, `ca.pem`) or it is a view's
 *   database (`v.NAME`).
 * - NAME.md: the file must exist beside the doc, at the top or under docs/.
 * A planted wrong command, op and file are found, so the scan is not vacuous.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#define NAMES_MAX 1024
#define NAME_CAP  64
#define OUT_CAP   (64 * 1024)
#define DOC_MAX   (4 * 1024 * 1024)

static char *read_doc(const char *path);

struct names {
    char v[NAMES_MAX][NAME_CAP];
    size_t n;
};

static struct names commands, known_ops;

static void names_add(struct names *s, const char *name, size_t len)
{
    assert_true(s->n < NAMES_MAX && len < NAME_CAP);
    memcpy(s->v[s->n], name, len);
    s->v[s->n][len] = '\0';
    s->n++;
}

static bool names_has(const struct names *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->v[i]) == len && memcmp(s->v[i], name, len) == 0)
            return true;
    return false;
}

/* Every "name" and "permission" string in the file, at any depth. */
static void collect_names(json_t *j, struct names *s)
{
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v)
        {
            if ((strcmp(k, "name") == 0 || strcmp(k, "permission") == 0) && json_is_string(v))
                names_add(s, json_string_value(v), strlen(json_string_value(v)));
            else
                collect_names(v, s);
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) collect_names(v, s);
    }
}

static void load_schema(const char *file)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/schemas/%s", KR_SOURCE_DIR, file);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j)
        fail_msg("%s: %s", path, e.text);
    collect_names(j, &known_ops);
    json_decref(j);
}

/* The command names `kiroku --help` lists: "  WORD  text" lines after
 * "commands:". */
static void load_commands(void)
{
    char *out = malloc(OUT_CAP), *err = malloc(OUT_CAP);
    assert_true(out && err);
    const char *args[] = {"--help", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, args, out, err, OUT_CAP), 0);
    const char *p = strstr(out, "commands:\n");
    if (!p)
        p = strstr(err, "commands:\n");
    assert_non_null(p);
    p = strchr(p, '\n') + 1;
    while (p[0] == ' ' && p[1] == ' ' && p[2] >= 'a' && p[2] <= 'z') {
        const char *w = p + 2, *e = w;
        while (*e >= 'a' && *e <= 'z')
            e++;
        names_add(&commands, w, (size_t)(e - w));
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
    }
    assert_true(commands.n >= 10);
    free(out);
    free(err);
}

/* The journal's own record types (journal.created, journal.key_added, ...),
 * which journal/journal.h defines rather than the schemas. */
static void load_journal_types(void)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/journal/journal.h", KR_SOURCE_DIR);
    char *text = read_doc(path);
    for (const char *p = text; (p = strstr(p, "#define JRN_TYPE_"));) {
        const char *q = strchr(p, '"'), *nl = strchr(p, '\n');
        if (q && (!nl || q < nl)) {
            const char *e = strchr(q + 1, '"');
            assert_non_null(e);
            names_add(&known_ops, q + 1, (size_t)(e - q - 1));
        }
        p += strlen("#define JRN_TYPE_");
    }
    free(text);
}

/* The settings of serve's configuration file: "| `name` |" rows of
 * `kiroku serve --config-help`. A doc that names a setting must name one
 * that exists. */
static void load_settings(void)
{
    char *out = malloc(OUT_CAP), *err = malloc(OUT_CAP);
    assert_true(out && err);
    const char *args[] = {"serve", "--config-help", NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, args, out, err, OUT_CAP), 0);
    unsigned n = 0;
    for (const char *p = out; (p = strstr(p, "\n| `"));) {
        const char *w = p + strlen("\n| `"), *e = strchr(w, '`');
        assert_non_null(e);
        names_add(&known_ops, w, (size_t)(e - w));
        n++;
        p = e;
    }
    assert_true(n >= 1);
    free(out);
    free(err);
}

static int setup(void **state)
{
    (void)state;
    load_commands();
    load_schema("ops.json");
    load_schema("events.json");
    load_journal_types();
    load_settings();
    /* A placeholder in extending.md's naming rule. */
    names_add(&known_ops, "area.past_tense", strlen("area.past_tense"));
    return 0;
}

static bool word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* Extensions of file names that look like WORD.WORD in the docs. */
static bool file_ext(const char *e, size_t len)
{
    static const char *const ext[] = {"c",    "h",   "md",   "json", "mdb",     "pem", "key", "pub",
                                      "sock", "eml", "lock", "tmp",  "sh",      "txt", "py",  "gz",
                                      "tar",  "csv", "log",  "conf", "service", "d",   "so",  "a"};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (strlen(ext[i]) == len && memcmp(ext[i], e, len) == 0)
            return true;
    return false;
}

/* Checks `kiroku WORD` at s (s points at "kiroku "); counts and reports a bad one. */
static unsigned check_command(const char *where, const char *s)
{
    const char *w = s + strlen("kiroku "), *e = w;
    while (*e >= 'a' && *e <= 'z')
        e++;
    if (e == w || !(*e == ' ' || *e == '`' || *e == '\n' || *e == '\0'))
        return 0; /* an option or placeholder (`kiroku --help`, `kiroku <command>`) */
    if (names_has(&commands, w, (size_t)(e - w)))
        return 0;
    fprintf(stderr, "%s: `kiroku %.*s`: no such command\n", where, (int)(e - w), w);
    return 1;
}

/* Checks a code span's content [s, e); counts the bad names in it. */
static unsigned check_span(const char *where, const char *s, const char *e)
{
    if ((size_t)(e - s) > strlen("kiroku ") && strncmp(s, "kiroku ", 7) == 0)
        return check_command(where, s);
    /* exactly WORD.WORD */
    const char *p = s;
    while (p < e && word_char(*p))
        p++;
    if (p == s || p >= e || *p != '.' || !(*s >= 'a' && *s <= 'z'))
        return 0;
    const char *q = p + 1;
    while (q < e && word_char(*q))
        q++;
    if (q != e || q == p + 1)
        return 0;
    if (file_ext(p + 1, (size_t)(q - p - 1)))
        return 0;
    if (p - s == 1 && *s == 'v')
        return 0; /* a view's database, v.NAME */
    if (names_has(&known_ops, s, (size_t)(e - s)))
        return 0;
    fprintf(stderr, "%s: `%.*s`: no such op or event\n", where, (int)(e - s), s);
    return 1;
}

/* Scans markdown text; returns the number of bad names. */
static unsigned check_text(const char *where, const char *text)
{
    unsigned bad = 0;
    bool fenced = false;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        const char *end = nl ? nl : line + strlen(line);
        if (strncmp(line, "```", 3) == 0) {
            fenced = !fenced;
        } else if (fenced) {
            const char *p = line;
            while (p < end && *p == ' ')
                p++;
            if (strncmp(p, "$ ", 2) == 0)
                p += 2;
            if (end - p > 7 && strncmp(p, "kiroku ", 7) == 0) {
                char buf[256];
                size_t n = (size_t)(end - p) < sizeof buf - 1 ? (size_t)(end - p) : sizeof buf - 1;
                memcpy(buf, p, n);
                buf[n] = '\0';
                bad += check_command(where, buf);
            }
        } else {
            for (const char *p = line; p < end; p++) {
                if (*p != '`')
                    continue;
                if (p + 1 < end && p[1] == '`') { /* `` spans: skip */
                    while (p < end && *p == '`')
                        p++;
                    continue;
                }
                const char *q = memchr(p + 1, '`', (size_t)(end - p - 1));
                if (!q)
                    break;
                bad += check_span(where, p + 1, q);
                p = q;
            }
        }
        line = nl ? nl + 1 : end;
    }
    return bad;
}

static char *read_doc(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot read %s", path);
    char *buf = malloc(DOC_MAX + 1);
    assert_non_null(buf);
    size_t n = fread(buf, 1, DOC_MAX, f);
    fclose(f);
    assert_true(n < DOC_MAX);
    buf[n] = '\0';
    return buf;
}

static bool path_char(char c)
{
    return word_char(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '/' || c == '-';
}

/* Every NAME.md the text mentions must exist: beside the doc, at the top of
 * the repository or under docs/ (a doc that sends the reader to a file the
 * repository lacks contradicts it). */
static unsigned check_md_refs(const char *where, const char *text)
{
    unsigned bad = 0;
    char dir[2048];
    snprintf(dir, sizeof dir, "%s", where);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    for (const char *p = text; (p = strstr(p, ".md"));) {
        const char *e = p + 3;
        if (word_char(*e)) { /* data.mdb */
            p = e;
            continue;
        }
        const char *b = p;
        while (b > text && path_char(b[-1]))
            b--;
        size_t len = (size_t)(e - b);
        p = e;
        if (len <= 3 || len > 512)
            continue;
        char name[600], path[3000];
        memcpy(name, b, len);
        name[len] = '\0';
        const char *bases[] = {dir, KR_SOURCE_DIR, KR_SOURCE_DIR "/docs"};
        bool found = false;
        for (size_t i = 0; i < 3 && !found; i++) {
            snprintf(path, sizeof path, "%s/%s", bases[i], name);
            found = access(path, F_OK) == 0;
        }
        if (!found) {
            fprintf(stderr, "%s: %s: no such file in the repository\n", where, name);
            bad++;
        }
    }
    return bad;
}

static unsigned check_file(const char *path)
{
    char *text = read_doc(path);
    unsigned bad = check_text(path, text) + check_md_refs(path, text);
    free(text);
    return bad;
}

static void test_docs_name_what_exists(void **state)
{
    (void)state;
    char path[2048];
    unsigned bad = 0, files = 0;
    snprintf(path, sizeof path, "%s/README.md", KR_SOURCE_DIR);
    bad += check_file(path);
    files++;
    snprintf(path, sizeof path, "%s/docs", KR_SOURCE_DIR);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".md") != 0)
            continue;
        snprintf(path, sizeof path, "%s/docs/%s", KR_SOURCE_DIR, de->d_name);
        bad += check_file(path);
        files++;
    }
    closedir(d);
    assert_true(files >= 8);
    assert_int_equal(bad, 0);
}

static void test_planted_names_found(void **state)
{
    (void)state;
    /* Known names pass, in spans and in code blocks. */
    assert_int_equal(check_text("good", "Run `kiroku serve --data D`, then `journal.read`, and\n"
                                        "see `tenant.cancelled`; `journal.c` is a file.\n"
                                        "```\n$ kiroku verify --data D\n```\n"),
                     0);
    /* Wrong ones fail, each once. */
    assert_int_equal(check_text("planted", "Run `kiroku frobnicate --data D`.\n"), 1);
    assert_int_equal(check_text("planted", "Call `tenants.frobnicate` first.\n"), 1);
    assert_int_equal(check_text("planted", "```\nkiroku launch\n```\n"), 1);
    /* A file the repository lacks. */
    char where[2048];
    snprintf(where, sizeof where, "%s/docs/operations.md", KR_SOURCE_DIR);
    assert_int_equal(check_md_refs(where, "see ops.md and DESIGN.md \"API\""), 1);
    assert_int_equal(check_md_refs(where, "the journal/data.mdb file, api.md"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_names_found),
        cmocka_unit_test(test_docs_name_what_exists),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
