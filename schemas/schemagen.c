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
#include "kr_limits.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Bounds of the schema language ---- */

/* Field, enum, error and result list names: short enough for a diagnostic
 * (payload.h's struct kr_diag holds 39 bytes of field name). */
#define SG_NAME_MAX 39
/* Op names and enum values: dotted words, like event types. */
#define SG_DOTTED_MAX KR_TYPE_MAX
/* Values of an enum used in a list: such lists are sets held as a uint64_t
 * bit mask (payload.h). */
#define SG_SET_MAX 64
/* Fields, enums, values, events, ops, errors: ids are uint16_t in the tables. */
#define SG_COUNT_MAX 65535
/* Bytes of a 128-bit id in hex, completing a stream name after '/'. */
#define SG_STREAM_KEY_HEX 32
/* Output paths. */
#define SG_PATH_MAX 4096

/* ---- Diagnostics ---- */

static unsigned nerrors;

/* Reports one problem in the schema: "schemagen: FILE: MESSAGE". */
__attribute__((format(printf, 2, 3))) static void err(const char *file, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "schemagen: %s: ", file);
    vfprintf(stderr, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized): va_start above */
    fputc('\n', stderr);
    va_end(ap);
    nerrors++;
}

_Noreturn static void die_oom(void)
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

/* n zeroed elements of size bytes, living until arena_free(). */
static void *xcalloc(size_t n, size_t size)
{
    if (size != 0 && n > (SIZE_MAX - sizeof(struct arena_block)) / size)
        die_oom();
    struct arena_block *b = calloc(1, sizeof *b + n * size);
    if (!b)
        die_oom();
    b->next = arena;
    arena = b;
    return b->data;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xcalloc(n + 1, 1);
    memcpy(p, s, n);
    return p;
}

static void arena_free(void)
{
    while (arena) {
        struct arena_block *next = arena->next;
        free(arena);
        arena = next;
    }
}

/* ---- Growable text buffer ---- */

struct sbuf {
    char *p; /* NUL-terminated; heap, freed by sb_fini */
    size_t len, cap;
};

static void sb_reserve(struct sbuf *b, size_t more)
{
    if (more > SIZE_MAX / 2 - b->len)
        die_oom();
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        die_oom();
    b->p = p;
    b->cap = cap;
}

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
    if (n == 0)
        return;
    sb_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

static void sb_putc(struct sbuf *b, char c)
{
    sb_putn(b, &c, 1);
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized) */
    va_end(ap);
    if (n < 0)
        die_oom();
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void sb_fini(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- The schema language ---- */

enum ftype {
    FT_ID,
    FT_TENANT,
    FT_U64,
    FT_TIME,
    FT_BOOL,
    FT_STR,
    FT_EMAIL,
    FT_ENUM,
    FT_HASH,
    FT_BIN,
    FT_VALUE,
    FT_LIST,
    FT__COUNT
};

static const char *const ftype_name[FT__COUNT] = {
    "id", "tenant", "u64", "time", "bool", "str", "email", "enum", "hash", "bin", "value", "list",
};
static const char *const ftype_c[FT__COUNT] = {
    "KR_FT_ID",    "KR_FT_TENANT", "KR_FT_U64",  "KR_FT_TIME", "KR_FT_BOOL",  "KR_FT_STR",
    "KR_FT_EMAIL", "KR_FT_ENUM",   "KR_FT_HASH", "KR_FT_BIN",  "KR_FT_VALUE", "KR_FT_LIST",
};

/* Keys a field of each type may have besides type, doc, personal and secret;
 * the ones marked required must be there. */
struct type_keys {
    const char *allowed[4];
    const char *required[4];
};
static const struct type_keys type_keys[FT__COUNT] = {
    [FT_U64] = {{"min", "max"}, {NULL}},
    [FT_STR] = {{"min", "max", "charset"}, {"max"}},
    [FT_EMAIL] = {{"max"}, {"max"}},
    [FT_ENUM] = {{"enum"}, {"enum"}},
    [FT_BIN] = {{"min", "max"}, {"max"}},
    [FT_VALUE] = {{"max"}, {"max"}},
    [FT_LIST] = {{"of", "enum", "max_items"}, {"of", "max_items"}},
};

enum charset { CS_UTF8, CS_PRINTABLE, CS_CODE, CS_DIGITS, CS_PHONE, CS_KEY, CS_KEY_DOT, CS__COUNT };

static const char *const charset_name[CS__COUNT] = {
    "utf8", "printable", "code", "digits", "phone", "key", "key_dot",
};
static const char *const charset_c[CS__COUNT] = {
    "KR_CS_UTF8",  "KR_CS_PRINTABLE", "KR_CS_CODE",    "KR_CS_DIGITS",
    "KR_CS_PHONE", "KR_CS_KEY",       "KR_CS_KEY_DOT",
};

/* Callers of ops; bit i is role i (KR_ROLEBIT_*). Every value of an enum
 * named "role" must be one of these, anonymous excepted. */
enum { ROLE_ANONYMOUS, ROLE__COUNT = 5 };
static const char *const role_name[ROLE__COUNT] = {
    "anonymous", "master", "user", "auditor", "operator",
};
/* Roles whose accounts hold permissions (the master has them all). */
#define ROLES_WITH_PERMISSIONS ((1u << 2) | (1u << 3))

static const char *const endpoint_name[] = {"client", "operator"};
static const char *const endpoint_c[] = {"KR_ENDPOINT_CLIENT", "KR_ENDPOINT_OPERATOR"};

/* The enum whose values ops name as "permission". */
#define PERMISSION_ENUM "permission"
#define ROLE_ENUM       "role"

/* ---- The parsed schema ---- */

struct sg_enum {
    const char *name;
    const char **values;
    size_t nvalues;
};

struct sg_field {
    const char *name;
    enum ftype type;
    enum ftype of; /* FT_LIST: FT_TENANT or FT_ENUM */
    int enum_id;   /* FT_ENUM, enum lists; else -1 */
    enum charset cs;
    uint64_t min, max;
    bool has_max; /* u64: max given (else UINT64_MAX) */
    uint64_t max_items;
    bool personal, secret;
    const char *doc;
};

struct sg_use {
    int field; /* -1 when the name was not found (already reported) */
    bool optional;
};

struct sg_event {
    const char *name;
    bool platform;
    const char *stream; /* as written: "contact/{contact}" */
    const char *prefix; /* "contact" */
    int key;            /* field completing the stream, or -1 */
    struct sg_use *fields;
    size_t nfields;
    bool has_personal;
    const char *doc;
};

struct sg_result {
    int field;        /* or -1 for a list */
    const char *list; /* list: its key in the reply */
    int *items;       /* list: field of each map entry */
    size_t nitems;
};

struct sg_op {
    const char *name;
    unsigned endpoint;
    unsigned roles; /* bit i: role_name[i] */
    int permission; /* value of the permission enum, or -1 */
    struct sg_use *args;
    size_t nargs;
    struct sg_result *result;
    size_t nresult;
    int *events;
    size_t nevents;
    int *errors; /* errors this op may return beyond the common ones (docs only) */
    size_t nerrors;
    const char *doc;
};

struct sg_error {
    const char *name, *doc;
};

struct schema {
    char *fields_path, *events_path, *ops_path;
    json_t *fields_json, *events_json, *ops_json;
    const char *fields_about, *events_about, *ops_about;
    struct sg_enum *enums;
    size_t nenums;
    struct sg_field *fields;
    size_t nfields;
    struct sg_event *events;
    size_t nevents;
    struct sg_op *ops;
    size_t nops;
    struct sg_error *errors;
    size_t nerrors;
};

/* ---- Name rules ---- */

static bool is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* [a-z][a-z0-9_]*, at most max bytes. */
static bool is_word(const char *s, size_t max)
{
    if (!is_lower(s[0]))
        return false;
    size_t i = 1;
    while (is_lower(s[i]) || is_digit(s[i]) || s[i] == '_')
        i++;
    return s[i] == '\0' && i <= max;
}

/* Event and op names: [a-z][a-z0-9_]*(\.[a-z][a-z0-9_-]*)+, at most max bytes. */
static bool is_dotted(const char *s, size_t max)
{
    if (!is_lower(s[0]))
        return false;
    size_t i = 1, parts = 0;
    while (is_lower(s[i]) || is_digit(s[i]) || s[i] == '_')
        i++;
    while (s[i] == '.') {
        i++;
        if (!is_lower(s[i]))
            return false;
        i++;
        while (is_lower(s[i]) || is_digit(s[i]) || s[i] == '_' || s[i] == '-')
            i++;
        parts++;
    }
    return s[i] == '\0' && parts > 0 && i <= max;
}

/* Enum values: words joined by '.' or '-' ("contacts.read", "data-loss"). */
static bool is_enum_value(const char *s, size_t max)
{
    if (!is_lower(s[0]))
        return false;
    size_t i = 1;
    for (;; i++) {
        char c = s[i];
        if (is_lower(c) || is_digit(c) || c == '_')
            continue;
        if (c == '.' || c == '-') {
            char d = s[i + 1];
            if (!(is_lower(d) || is_digit(d) || d == '_'))
                return false;
            continue;
        }
        break;
    }
    return s[i] == '\0' && i <= max;
}

/* Docs and about texts: one line of text, no control characters (they go
 * into C string literals and Markdown tables). */
static bool is_doc(const char *s)
{
    if (s[0] == '\0' || s[0] == ' ')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return s[strlen(s) - 1] != ' ';
}

/* prefix + name upper-cased, '.' and '-' as '_': c_name("KR_EV_", "contact.tagged")
 * is "KR_EV_CONTACT_TAGGED". */
static char *c_name(const char *prefix, const char *name)
{
    size_t lp = strlen(prefix), n = lp + strlen(name) + 1;
    char *out = xcalloc(n, 1);
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
static char *c_lower(const char *name)
{
    char *out = xstrndup(name, strlen(name));
    for (char *p = out; *p; p++)
        if (*p == '.' || *p == '-')
            *p = '_';
    return out;
}

/* ---- JSON helpers ---- */

/* "event \"name\"" when the object has a usable name, else "event #i". */
static const char *label(const char *kind, const char *name, size_t i)
{
    char buf[160];
    if (name)
        snprintf(buf, sizeof buf, "%s \"%.100s\"", kind, name);
    else
        snprintf(buf, sizeof buf, "%s #%zu", kind, i + 1);
    return xstrndup(buf, strlen(buf));
}

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* Reports keys of obj not in allowed (NULL-terminated) and missing required ones. */
static void check_keys(const char *file, const char *what, json_t *obj, const char *const *allowed,
                       const char *const *required)
{
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
        const char *key = json_object_iter_key(it);
        if (!in_list(key, allowed))
            err(file, "%s: unknown key \"%s\"", what, key);
    }
    for (; *required; required++)
        if (!json_object_get(obj, *required))
            err(file, "%s: missing key \"%s\"", what, *required);
}

/* The string at obj[key], or NULL (reported when present but not a string). */
static const char *get_str(const char *file, const char *what, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return NULL;
    if (!json_is_string(v)) {
        err(file, "%s: \"%s\" must be a string", what, key);
        return NULL;
    }
    return json_string_value(v);
}

/* A doc text at obj[key]: required, one line. */
static const char *get_doc(const char *file, const char *what, json_t *obj, const char *key)
{
    const char *s = get_str(file, what, obj, key);
    if (s && !is_doc(s)) {
        err(file,
            "%s: \"%s\" must be one line of text, without control characters or leading or "
            "trailing spaces",
            what, key);
        return NULL;
    }
    return s;
}

static bool get_bool(const char *file, const char *what, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return false;
    if (!json_is_boolean(v)) {
        err(file, "%s: \"%s\" must be true or false", what, key);
        return false;
    }
    return json_is_true(v);
}

/* An unsigned integer at obj[key]; false when absent or bad (bad is reported). */
static bool get_uint(const char *file, const char *what, json_t *obj, const char *key,
                     uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return false;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        err(file, "%s: \"%s\" must be a non-negative integer", what, key);
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static json_t *load(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        fprintf(stderr, "schemagen: %s:%d:%d: %s\n", path, e.line, e.column, e.text);
        nerrors++;
        return NULL;
    }
    if (!json_is_object(j)) {
        err(path, "the top level must be an object");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ---- Lookups in the parsed schema (small tables: linear) ---- */

static int find_enum(const struct schema *s, const char *name)
{
    if (!s->enums)
        return -1;
    for (size_t i = 0; i < s->nenums; i++)
        if (s->enums[i].name && strcmp(s->enums[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int find_value(const struct sg_enum *e, const char *value)
{
    for (size_t i = 0; i < e->nvalues; i++)
        if (e->values[i] && strcmp(e->values[i], value) == 0)
            return (int)i;
    return -1;
}

static int find_field_n(const struct schema *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->nfields; i++)
        if (strlen(s->fields[i].name) == len && memcmp(s->fields[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

static int find_event(const struct schema *s, const char *name)
{
    for (size_t i = 0; i < s->nevents; i++)
        if (s->events[i].name && strcmp(s->events[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int find_error(const struct schema *s, const char *name)
{
    for (size_t i = 0; i < s->nerrors; i++)
        if (strcmp(s->errors[i].name, name) == 0)
            return (int)i;
    return -1;
}

static const char *field_name(const struct schema *s, int f)
{
    return f >= 0 ? s->fields[f].name : "?";
}

/* ---- fields.json ---- */

static void parse_enums(struct schema *s, json_t *enums)
{
    const char *file = s->fields_path;
    if (!json_is_object(enums)) {
        err(file, "\"enums\" must be an object of enum name -> list of values");
        return;
    }
    s->enums = xcalloc(json_object_size(enums), sizeof *s->enums);
    for (void *it = json_object_iter(enums); it; it = json_object_iter_next(enums, it)) {
        const char *name = json_object_iter_key(it);
        json_t *vals = json_object_iter_value(it);
        struct sg_enum *e = &s->enums[s->nenums++];
        e->name = name;
        const char *what = label("enum", name, 0);
        if (!is_word(name, SG_NAME_MAX))
            err(file, "%s: name must match [a-z][a-z0-9_]* (at most %d bytes)", what, SG_NAME_MAX);
        if (strcmp(name, "id") == 0)
            err(file, "%s: name is taken (enum kr_enum_id lists the enums)", what);
        if (!json_is_array(vals) || json_array_size(vals) == 0) {
            err(file, "%s: must be a non-empty list of values", what);
            continue;
        }
        if (json_array_size(vals) > SG_COUNT_MAX) {
            err(file, "%s: more than %d values", what, SG_COUNT_MAX);
            continue;
        }
        e->values = xcalloc(json_array_size(vals), sizeof *e->values);
        for (size_t i = 0; i < json_array_size(vals); i++) {
            json_t *v = json_array_get(vals, i);
            const char *value = json_string_value(v);
            if (!value) {
                err(file, "%s: value #%zu must be a string", what, i + 1);
                continue;
            }
            if (!is_enum_value(value, SG_DOTTED_MAX))
                err(file,
                    "%s: value \"%s\" must be lower-case words joined by '.' or '-' "
                    "(at most %d bytes)",
                    what, value, SG_DOTTED_MAX);
            if (find_value(e, value) >= 0)
                err(file, "%s: duplicate value \"%s\"", what, value);
            e->values[e->nvalues++] = value;
        }
    }
    if (s->nenums > SG_COUNT_MAX)
        err(file, "more than %d enums", SG_COUNT_MAX);
}

static void parse_field(struct schema *s, struct sg_field *f, json_t *obj)
{
    const char *file = s->fields_path;
    const char *what = label("field", f->name, 0);
    f->enum_id = -1;
    if (!is_word(f->name, SG_NAME_MAX))
        err(file, "%s: name must match [a-z][a-z0-9_]* (at most %d bytes)", what, SG_NAME_MAX);
    if (!json_is_object(obj)) {
        err(file, "%s: must be an object", what);
        return;
    }
    f->doc = get_doc(file, what, obj, "doc");
    f->personal = get_bool(file, what, obj, "personal");
    f->secret = get_bool(file, what, obj, "secret");
    const char *type = get_str(file, what, obj, "type");
    if (!type) {
        if (!json_object_get(obj, "type"))
            err(file, "%s: missing key \"type\"", what);
        return;
    }
    int t = -1;
    for (int i = 0; i < FT__COUNT; i++)
        if (strcmp(type, ftype_name[i]) == 0)
            t = i;
    if (t < 0) {
        err(file,
            "%s: type \"%s\" is not one of id, tenant, u64, time, bool, str, email, enum, "
            "hash, bin, value, list",
            what, type);
        return;
    }
    f->type = (enum ftype)t;

    const char *allowed[9] = {"type", "doc", "personal", "secret"};
    const char *required[6] = {"doc"};
    for (size_t i = 0; type_keys[t].allowed[i]; i++)
        allowed[4 + i] = type_keys[t].allowed[i];
    for (size_t i = 0; type_keys[t].required[i]; i++)
        required[1 + i] = type_keys[t].required[i];
    check_keys(file, what, obj, allowed, required);

    uint64_t min = 0, max = 0;
    bool has_min = get_uint(file, what, obj, "min", &min);
    bool has_max = get_uint(file, what, obj, "max", &max);
    switch (f->type) {
    case FT_ID:
        f->min = f->max = 16;
        break;
    case FT_HASH:
        f->min = f->max = 32;
        break;
    case FT_TENANT:
        f->min = 1;
        f->max = INT64_MAX;
        break;
    case FT_TIME:
        f->max = UINT64_MAX;
        break;
    case FT_U64:
        f->min = min;
        f->max = has_max ? max : UINT64_MAX;
        f->has_max = has_max;
        break;
    case FT_STR:
    case FT_BIN:
    case FT_VALUE:
    case FT_EMAIL:
        f->min = f->type == FT_EMAIL ? 3 : min;
        f->max = max;
        if (has_max && !(has_min && min > max) && max < (f->min > 1 ? f->min : 1))
            err(file, "%s: max %" PRIu64 " must be at least %" PRIu64, what, max,
                f->min > 1 ? f->min : 1);
        break;
    case FT_BOOL:
    case FT_ENUM:
    case FT_LIST:
    case FT__COUNT:
        break;
    }
    if (has_min && has_max && min > max)
        err(file, "%s: min %" PRIu64 " > max %" PRIu64, what, min, max);

    f->cs = f->type == FT_EMAIL ? CS_PRINTABLE : CS_UTF8;
    const char *cs = get_str(file, what, obj, "charset");
    if (cs && f->type == FT_STR) {
        int c = -1;
        for (int i = 0; i < CS__COUNT; i++)
            if (strcmp(cs, charset_name[i]) == 0)
                c = i;
        if (c < 0)
            err(file,
                "%s: charset \"%s\" is not one of utf8, printable, code, digits, phone, key, "
                "key_dot",
                what, cs);
        else
            f->cs = (enum charset)c;
    }

    if (f->type == FT_LIST) {
        const char *of = get_str(file, what, obj, "of");
        if (of && strcmp(of, "tenant") == 0)
            f->of = FT_TENANT;
        else if (of && strcmp(of, "enum") == 0)
            f->of = FT_ENUM;
        else if (of)
            err(file, "%s: \"of\" must be \"tenant\" or \"enum\", not \"%s\"", what, of);
        if (f->of == FT_ENUM && !json_object_get(obj, "enum"))
            err(file, "%s: a list of enum needs \"enum\"", what);
        if (f->of == FT_TENANT && json_object_get(obj, "enum"))
            err(file, "%s: \"enum\" is only for a list of enum", what);
        if (get_uint(file, what, obj, "max_items", &f->max_items) &&
            (f->max_items == 0 || f->max_items > UINT32_MAX))
            err(file, "%s: max_items must be 1..%" PRIu32, what, UINT32_MAX);
    }
    const char *en = get_str(file, what, obj, "enum");
    if (en && (f->type == FT_ENUM || (f->type == FT_LIST && f->of == FT_ENUM))) {
        f->enum_id = find_enum(s, en);
        if (f->enum_id < 0) {
            err(file, "%s: enum \"%s\" is not in \"enums\"", what, en);
        } else if (f->type == FT_LIST) {
            const struct sg_enum *e = &s->enums[f->enum_id];
            if (e->nvalues > SG_SET_MAX)
                err(file, "%s: enum \"%s\" has %zu values; a list holds at most %d", what, en,
                    e->nvalues, SG_SET_MAX);
            if (f->max_items > e->nvalues)
                err(file, "%s: max_items %" PRIu64 " exceeds the %zu values of enum \"%s\"", what,
                    f->max_items, e->nvalues, en);
        }
    }
}

static void parse_fields_file(struct schema *s)
{
    const char *file = s->fields_path;
    json_t *root = s->fields_json;
    static const char *const top[] = {"about", "enums", "fields", NULL};
    static const char *const top_req[] = {"enums", "fields", NULL};
    check_keys(file, "top level", root, top, top_req);
    if (json_object_get(root, "about"))
        s->fields_about = get_doc(file, "top level", root, "about");
    json_t *enums = json_object_get(root, "enums");
    if (enums)
        parse_enums(s, enums);

    json_t *fields = json_object_get(root, "fields");
    if (!fields)
        return;
    if (!json_is_object(fields) || json_object_size(fields) == 0) {
        err(file, "\"fields\" must be a non-empty object of field name -> definition");
        return;
    }
    if (json_object_size(fields) > SG_COUNT_MAX) {
        err(file, "more than %d fields", SG_COUNT_MAX);
        return;
    }
    s->fields = xcalloc(json_object_size(fields), sizeof *s->fields);
    for (void *it = json_object_iter(fields); it; it = json_object_iter_next(fields, it)) {
        const char *name = json_object_iter_key(it);
        json_t *def = json_object_iter_value(it);
        struct sg_field *f = &s->fields[s->nfields++];
        f->name = name;
        parse_field(s, f, def);
    }

    /* Ops' callers are fixed roles; the role enum accounts carry must be among them. */
    int role = find_enum(s, ROLE_ENUM);
    const struct sg_enum *e = role >= 0 ? &s->enums[role] : NULL;
    if (e) {
        for (size_t i = 0; i < e->nvalues; i++) {
            bool known = false;
            for (size_t r = 1; r < ROLE__COUNT; r++)
                known |= strcmp(e->values[i], role_name[r]) == 0;
            if (!known)
                err(file,
                    "enum \"" ROLE_ENUM "\": value \"%s\" is not a caller role (master, user, "
                    "auditor, operator)",
                    e->values[i]);
        }
    }
}

/* ---- Field references: "name" or "name?" ---- */

/* Parses one field reference of `what` (an event's field, an op's arg or
 * result). `kind` names the list in messages. */
static struct sg_use parse_use(const struct schema *s, const char *file, const char *what,
                               const char *kind, size_t i, json_t *v, bool allow_optional)
{
    struct sg_use u = {.field = -1};
    const char *ref = json_string_value(v);
    if (!ref) {
        err(file, "%s: %s #%zu must be a string", what, kind, i + 1);
        return u;
    }
    size_t len = strlen(ref);
    if (len > 0 && ref[len - 1] == '?') {
        if (!allow_optional)
            err(file, "%s: %s \"%s\": '?' (optional) is not allowed here", what, kind, ref);
        u.optional = true;
        len--;
    }
    u.field = find_field_n(s, ref, len);
    if (u.field < 0)
        err(file, "%s: %s \"%.*s\" is not a field in fields.json", what, kind, (int)len, ref);
    return u;
}

/* Parses a list of field references into *out, reporting repeats. */
static size_t parse_uses(const struct schema *s, const char *file, const char *what,
                         const char *kind, json_t *arr, bool allow_optional, struct sg_use **out)
{
    if (!json_is_array(arr)) {
        err(file, "%s: \"%ss\" must be a list of field names", what, kind);
        return 0;
    }
    struct sg_use *uses = xcalloc(json_array_size(arr), sizeof *uses);
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        struct sg_use u = parse_use(s, file, what, kind, i, v, allow_optional);
        for (size_t k = 0; k < n && u.field >= 0; k++)
            if (uses[k].field == u.field)
                err(file, "%s: %s \"%s\" is listed twice", what, kind, field_name(s, u.field));
        uses[n++] = u;
    }
    *out = uses;
    return n;
}

/* ---- events.json ---- */

static void parse_stream(const struct schema *s, struct sg_event *ev, const char *what)
{
    const char *file = s->events_path;
    const char *slash = strchr(ev->stream, '/');
    size_t plen = slash ? (size_t)(slash - ev->stream) : strlen(ev->stream);
    ev->prefix = xstrndup(ev->stream, plen);
    ev->key = -1;
    if (!is_word(ev->prefix, KR_STREAM_MAX - 1 - SG_STREAM_KEY_HEX))
        err(file,
            "%s: stream \"%s\": the part before '/' must match [a-z][a-z0-9_]* (at most %d "
            "bytes)",
            what, ev->stream, KR_STREAM_MAX - 1 - SG_STREAM_KEY_HEX);
    if (!slash)
        return;
    const char *tmpl = slash + 1;
    size_t tlen = strlen(tmpl);
    if (tlen < 3 || tmpl[0] != '{' || tmpl[tlen - 1] != '}') {
        err(file, "%s: stream \"%s\" must be PREFIX or PREFIX/{FIELD}", what, ev->stream);
        return;
    }
    const char *key = tmpl + 1;
    size_t klen = tlen - 2;
    if (klen > 0 && key[klen - 1] == '?') {
        err(file, "%s: stream \"%s\": the stream key cannot be optional ('?')", what, ev->stream);
        return;
    }
    for (size_t i = 0; i < ev->nfields; i++) {
        int f = ev->fields[i].field;
        if (f < 0 || strlen(s->fields[f].name) != klen || memcmp(s->fields[f].name, key, klen) != 0)
            continue;
        ev->key = f;
        if (s->fields[f].type != FT_ID)
            err(file, "%s: stream \"%s\": {%.*s} must be an id field, not %s", what, ev->stream,
                (int)klen, key, ftype_name[s->fields[f].type]);
        if (ev->fields[i].optional)
            err(file,
                "%s: stream \"%s\": field \"%.*s\" keys the stream, so it cannot be optional "
                "('?')",
                what, ev->stream, (int)klen, key);
        return;
    }
    err(file, "%s: stream \"%s\": {%.*s} is not a field of the event", what, ev->stream, (int)klen,
        key);
}

static void parse_event(struct schema *s, struct sg_event *ev, json_t *obj, size_t idx)
{
    const char *file = s->events_path;
    if (!json_is_object(obj)) {
        err(file, "event #%zu: must be an object", idx + 1);
        return;
    }
    ev->name = get_str(file, label("event", NULL, idx), obj, "name");
    const char *what = label("event", ev->name, idx);
    static const char *const keys[] = {"name", "scope", "stream", "fields", "doc", NULL};
    check_keys(file, what, obj, keys, keys);
    if (ev->name && !is_dotted(ev->name, KR_TYPE_MAX))
        err(file, "%s: name must match [a-z][a-z0-9_]*(\\.[a-z][a-z0-9_-]*)+ (at most %d bytes)",
            what, KR_TYPE_MAX);
    if (ev->name && find_event(s, ev->name) >= 0)
        err(file, "%s: duplicate event name", what);
    ev->doc = get_doc(file, what, obj, "doc");

    const char *scope = get_str(file, what, obj, "scope");
    if (scope && strcmp(scope, "platform") == 0)
        ev->platform = true;
    else if (scope && strcmp(scope, "tenant") != 0)
        err(file, "%s: scope must be \"tenant\" or \"platform\", not \"%s\"", what, scope);

    json_t *fields = json_object_get(obj, "fields");
    if (fields)
        ev->nfields = parse_uses(s, file, what, "field", fields, true, &ev->fields);
    for (size_t i = 0; i < ev->nfields; i++) {
        int f = ev->fields[i].field;
        if (f >= 0 && s->fields[f].personal) {
            ev->has_personal = true;
            /* Personal data is sealed under the tenant's data key; tenant 0 has none. */
            if (ev->platform)
                err(file,
                    "%s: field \"%s\" is personal, but a platform event carries no "
                    "tenant key to seal it with",
                    what, s->fields[f].name);
        }
    }
    ev->stream = get_str(file, what, obj, "stream");
    if (ev->stream)
        parse_stream(s, ev, what);
}

static void parse_events_file(struct schema *s)
{
    const char *file = s->events_path;
    json_t *root = s->events_json;
    static const char *const top[] = {"about", "events", NULL};
    static const char *const top_req[] = {"events", NULL};
    check_keys(file, "top level", root, top, top_req);
    if (json_object_get(root, "about"))
        s->events_about = get_doc(file, "top level", root, "about");
    json_t *events = json_object_get(root, "events");
    if (!events)
        return;
    if (!json_is_array(events) || json_array_size(events) == 0 ||
        json_array_size(events) > SG_COUNT_MAX) {
        err(file, "\"events\" must be a list of 1..%d events", SG_COUNT_MAX);
        return;
    }
    s->events = xcalloc(json_array_size(events), sizeof *s->events);
    for (size_t i = 0; i < json_array_size(events); i++) {
        json_t *obj = json_array_get(events, i);
        /* Parsed in place so the duplicate check sees only the ones before. */
        parse_event(s, &s->events[i], obj, i);
        s->nevents = i + 1;
    }
}

/* ---- ops.json ---- */

static void parse_errors(struct schema *s, json_t *errors)
{
    const char *file = s->ops_path;
    if (!json_is_object(errors) || json_object_size(errors) == 0 ||
        json_object_size(errors) > SG_COUNT_MAX) {
        err(file, "\"errors\" must be an object of 1..%d error name -> doc", SG_COUNT_MAX);
        return;
    }
    s->errors = xcalloc(json_object_size(errors), sizeof *s->errors);
    for (void *it = json_object_iter(errors); it; it = json_object_iter_next(errors, it)) {
        const char *name = json_object_iter_key(it);
        json_t *doc = json_object_iter_value(it);
        const char *what = label("error", name, 0);
        if (!is_word(name, SG_NAME_MAX))
            err(file, "%s: name must match [a-z][a-z0-9_]* (at most %d bytes)", what, SG_NAME_MAX);
        const char *text = json_string_value(doc);
        if (!text || !is_doc(text))
            err(file, "%s: its doc must be one line of text", what);
        s->errors[s->nerrors++] = (struct sg_error){name, text};
    }
}

static void parse_result(const struct schema *s, struct sg_op *op, json_t *arr, const char *what)
{
    const char *file = s->ops_path;
    if (!json_is_array(arr)) {
        err(file, "%s: \"result\" must be a list of field names and {\"list\", \"items\"} maps",
            what);
        return;
    }
    op->result = xcalloc(json_array_size(arr), sizeof *op->result);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        struct sg_result *r = &op->result[op->nresult++];
        const char *key = NULL;
        if (json_is_string(v)) {
            r->field = parse_use(s, file, what, "result field", i, v, false).field;
            key = r->field >= 0 ? s->fields[r->field].name : NULL;
        } else if (json_is_object(v)) {
            r->field = -1;
            static const char *const keys[] = {"list", "items", NULL};
            check_keys(file, what, v, keys, keys);
            r->list = get_str(file, what, v, "list");
            if (r->list && !is_word(r->list, SG_NAME_MAX))
                err(file, "%s: result list \"%s\": name must match [a-z][a-z0-9_]*", what, r->list);
            key = r->list;
            json_t *items = json_object_get(v, "items");
            if (items && (!json_is_array(items) || json_array_size(items) == 0)) {
                err(file, "%s: result list \"%s\": \"items\" must be a non-empty list of fields",
                    what, r->list ? r->list : "?");
            } else if (items) {
                struct sg_use *uses;
                char kind[80];
                snprintf(kind, sizeof kind, "item of result list \"%.40s\"",
                         r->list ? r->list : "?");
                r->nitems = parse_uses(s, file, what, kind, items, false, &uses);
                r->items = xcalloc(r->nitems, sizeof *r->items);
                for (size_t k = 0; k < r->nitems; k++)
                    r->items[k] = uses[k].field;
            }
        } else {
            err(file, "%s: result item #%zu must be a field name or a {\"list\", \"items\"} map",
                what, i + 1);
            r->field = -1;
            continue;
        }
        /* One reply map: its keys are distinct. */
        for (size_t k = 0; key && k + 1 < op->nresult; k++) {
            const struct sg_result *o = &op->result[k];
            const char *other = o->field >= 0 ? s->fields[o->field].name : o->list;
            if (other && strcmp(other, key) == 0)
                err(file, "%s: result key \"%s\" appears twice", what, key);
        }
    }
}

/* A list of names resolved by find(); each must exist and appear once. */
static size_t parse_refs(const struct schema *s, const char *what, json_t *arr, const char *kind,
                         const char *where, int (*find)(const struct schema *, const char *),
                         int **out)
{
    const char *file = s->ops_path;
    *out = NULL;
    if (!json_is_array(arr)) {
        err(file, "%s: \"%ss\" must be a list of %s names", what, kind, kind);
        return 0;
    }
    int *ids = xcalloc(json_array_size(arr), sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        const char *name = json_string_value(v);
        if (!name) {
            err(file, "%s: %s #%zu must be a string", what, kind, i + 1);
            continue;
        }
        int id = find(s, name);
        if (id < 0) {
            err(file, "%s: %s \"%s\" is not in %s", what, kind, name, where);
            continue;
        }
        for (size_t k = 0; k < n; k++)
            if (ids[k] == id)
                err(file, "%s: %s \"%s\" is listed twice", what, kind, name);
        ids[n++] = id;
    }
    *out = ids;
    return n;
}

static void parse_op(struct schema *s, struct sg_op *op, json_t *obj, size_t idx)
{
    const char *file = s->ops_path;
    op->permission = -1;
    if (!json_is_object(obj)) {
        err(file, "op #%zu: must be an object", idx + 1);
        return;
    }
    op->name = get_str(file, label("op", NULL, idx), obj, "name");
    const char *what = label("op", op->name, idx);
    static const char *const keys[] = {"name",   "endpoint", "roles",  "permission", "args",
                                       "result", "events",   "errors", "doc",        NULL};
    static const char *const required[] = {"name",   "endpoint", "roles", "args",
                                           "result", "events",   "doc",   NULL};
    check_keys(file, what, obj, keys, required);
    if (op->name && !is_dotted(op->name, SG_DOTTED_MAX))
        err(file, "%s: name must match [a-z][a-z0-9_]*(\\.[a-z][a-z0-9_-]*)+ (at most %d bytes)",
            what, SG_DOTTED_MAX);
    for (size_t k = 0; op->name && k < idx; k++)
        if (s->ops[k].name && strcmp(s->ops[k].name, op->name) == 0)
            err(file, "%s: duplicate op name", what);
    op->doc = get_doc(file, what, obj, "doc");

    const char *ep = get_str(file, what, obj, "endpoint");
    if (ep && strcmp(ep, endpoint_name[1]) == 0)
        op->endpoint = 1;
    else if (ep && strcmp(ep, endpoint_name[0]) != 0)
        err(file, "%s: endpoint must be \"client\" or \"operator\", not \"%s\"", what, ep);

    json_t *roles = json_object_get(obj, "roles");
    if (roles && (!json_is_array(roles) || json_array_size(roles) == 0)) {
        err(file, "%s: \"roles\" must be a non-empty list of roles", what);
    } else if (roles) {
        for (size_t i = 0; i < json_array_size(roles); i++) {
            json_t *v = json_array_get(roles, i);
            const char *r = json_string_value(v);
            unsigned bit = 0;
            for (unsigned k = 0; r && k < ROLE__COUNT; k++)
                if (strcmp(r, role_name[k]) == 0)
                    bit = 1u << k;
            if (!bit)
                err(file,
                    "%s: role %s%s%s is not one of anonymous, master, user, auditor, operator",
                    what, r ? "\"" : "#", r ? r : "", r ? "\"" : "");
            else if (op->roles & bit)
                err(file, "%s: role \"%s\" is listed twice", what, r);
            op->roles |= bit;
        }
    }

    const char *perm = get_str(file, what, obj, "permission");
    if (perm) {
        int e = find_enum(s, PERMISSION_ENUM);
        op->permission = e >= 0 ? find_value(&s->enums[e], perm) : -1;
        if (op->permission < 0)
            err(file, "%s: permission \"%s\" is not a value of enum \"" PERMISSION_ENUM "\"", what,
                perm);
        if (roles && !(op->roles & ROLES_WITH_PERMISSIONS))
            err(file,
                "%s: has a permission but no caller role that holds permissions (user, auditor)",
                what);
    }

    json_t *args = json_object_get(obj, "args");
    if (args)
        op->nargs = parse_uses(s, file, what, "arg", args, true, &op->args);
    json_t *result = json_object_get(obj, "result");
    if (result)
        parse_result(s, op, result, what);
    json_t *events = json_object_get(obj, "events");
    if (events)
        op->nevents = parse_refs(s, what, events, "event", "events.json", find_event, &op->events);
    json_t *errors = json_object_get(obj, "errors");
    if (errors)
        op->nerrors =
            parse_refs(s, what, errors, "error", "ops.json \"errors\"", find_error, &op->errors);

    /* A secret the caller sent is never sent back. */
    for (size_t a = 0; a < op->nargs; a++) {
        int f = op->args[a].field;
        if (f < 0 || !s->fields[f].secret)
            continue;
        for (size_t r = 0; r < op->nresult; r++) {
            const struct sg_result *res = &op->result[r];
            bool echoed = res->field == f;
            for (size_t k = 0; k < res->nitems; k++)
                echoed |= res->items[k] == f;
            if (echoed)
                err(file, "%s: secret arg \"%s\" is echoed in the result", what, s->fields[f].name);
        }
    }
}

static void parse_ops_file(struct schema *s)
{
    const char *file = s->ops_path;
    json_t *root = s->ops_json;
    static const char *const top[] = {"about", "errors", "ops", NULL};
    static const char *const top_req[] = {"errors", "ops", NULL};
    check_keys(file, "top level", root, top, top_req);
    if (json_object_get(root, "about"))
        s->ops_about = get_doc(file, "top level", root, "about");
    json_t *errors = json_object_get(root, "errors");
    if (errors)
        parse_errors(s, errors);
    json_t *ops = json_object_get(root, "ops");
    if (!ops)
        return;
    if (!json_is_array(ops) || json_array_size(ops) == 0 || json_array_size(ops) > SG_COUNT_MAX) {
        err(file, "\"ops\" must be a list of 1..%d ops", SG_COUNT_MAX);
        return;
    }
    s->ops = xcalloc(json_array_size(ops), sizeof *s->ops);
    for (size_t i = 0; i < json_array_size(ops); i++) {
        json_t *obj = json_array_get(ops, i);
        parse_op(s, &s->ops[i], obj, i);
        s->nops = i + 1;
    }
}

/* ---- Generated C names must be distinct ---- */

struct cname {
    const char *name;
    const char *file; /* where the schema name is, or "projections/schema.h" */
    const char *what; /* which schema name gives it */
    size_t seq;       /* insertion order, so reports come out in a stable order */
};

static int cname_cmp(const void *a, const void *b)
{
    const struct cname *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

struct cnames {
    struct cname *v;
    size_t n;
};

static void add_cname(struct cnames *c, const char *name, const char *file, const char *what)
{
    if (!name) /* an event or op without a name, reported already */
        return;
    c->v[c->n] = (struct cname){name, file, what, c->n};
    c->n++;
}

/* Two schema names can give one C name ("a.b-c" and "a.b_c"), and an enum
 * named like a table prefix ("fld", "ev", "err") gives names that clash with
 * the tables' own: both are reported. */
static void check_c_names(const struct schema *s)
{
    size_t cap = 64 + s->nfields + s->nevents + s->nops + s->nerrors;
    for (size_t i = 0; i < s->nenums; i++)
        cap += 2 + s->enums[i].nvalues;
    struct cnames c = {xcalloc(cap, sizeof *c.v), 0};
    static const char hdr[] = "projections/schema.h";
    static const char *const fixed[] = {
        "KR_FLD__COUNT",        "KR_EV__COUNT",       "KR_OP__COUNT",
        "KR_ENUM__COUNT",       "KR_ERR__COUNT",      "KR_ARGS_MAX",
        "KR_FLD_MAX_PER_EVENT", "KR_ENDPOINT_CLIENT", "KR_ENDPOINT_OPERATOR",
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        add_cname(&c, fixed[i], hdr, "a name schema.h defines");
    for (size_t i = 0; i < FT__COUNT; i++)
        add_cname(&c, ftype_c[i], hdr, "a name schema.h defines");
    for (size_t i = 0; i < CS__COUNT; i++)
        add_cname(&c, charset_c[i], hdr, "a name schema.h defines");
    for (size_t i = 0; i < ROLE__COUNT; i++)
        add_cname(&c, c_name("KR_ROLEBIT_", role_name[i]), hdr, "a name schema.h defines");
    for (size_t i = 0; i < s->nfields; i++)
        add_cname(&c, c_name("KR_FLD_", s->fields[i].name), s->fields_path,
                  label("field", s->fields[i].name, i));
    for (size_t i = 0; i < s->nenums; i++) {
        const struct sg_enum *e = &s->enums[i];
        const char *what = label("enum", e->name, i);
        add_cname(&c, c_name("KR_ENUM_", e->name), s->fields_path, what);
        char *prefix = c_name("KR_", e->name);
        size_t plen = strlen(prefix);
        char *count = xcalloc(plen + 8, 1);
        snprintf(count, plen + 8, "%s__COUNT", prefix);
        add_cname(&c, count, s->fields_path, what);
        char *pre = xcalloc(plen + 2, 1);
        snprintf(pre, plen + 2, "%s_", prefix);
        for (size_t v = 0; v < e->nvalues; v++) {
            size_t vlen = strlen(what) + strlen(e->values[v]) + 16;
            char *vwhat = xcalloc(vlen, 1);
            snprintf(vwhat, vlen, "value \"%s\" of %s", e->values[v], what);
            add_cname(&c, c_name(pre, e->values[v]), s->fields_path, vwhat);
        }
    }
    for (size_t i = 0; i < s->nevents; i++)
        add_cname(&c, s->events[i].name ? c_name("KR_EV_", s->events[i].name) : NULL,
                  s->events_path, label("event", s->events[i].name, i));
    for (size_t i = 0; i < s->nops; i++)
        add_cname(&c, s->ops[i].name ? c_name("KR_OP_", s->ops[i].name) : NULL, s->ops_path,
                  label("op", s->ops[i].name, i));
    for (size_t i = 0; i < s->nerrors; i++)
        add_cname(&c, c_name("KR_ERR_", s->errors[i].name), s->ops_path,
                  label("error", s->errors[i].name, i));
    qsort(c.v, c.n, sizeof *c.v, cname_cmp);
    for (size_t i = 1; i < c.n; i++) {
        const struct cname *x = &c.v[i - 1], *y = &c.v[i];
        /* The same schema name twice is reported as a duplicate already. */
        if (strcmp(x->name, y->name) == 0 && strcmp(x->what, y->what) != 0)
            err(y->file, "%s: its C name %s clashes with %s (%s)", y->what, y->name, x->what,
                x->file);
    }
}

/* ---- Output: C ---- */

/* A C string literal. Non-ASCII bytes become octal escapes; '?' after '?'
 * is escaped so no trigraph forms under -std=c17. */
static void sb_cstr(struct sbuf *b, const char *s)
{
    sb_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sb_printf(b, "\\%c", *p);
        else if (*p == '?' && p != (const unsigned char *)s && p[-1] == '?')
            sb_puts(b, "\\?");
        else if (*p >= 0x20 && *p < 0x7f)
            sb_putc(b, (char)*p);
        else
            sb_printf(b, "\\%03o", *p);
    }
    sb_putc(b, '"');
}

static void sb_u64(struct sbuf *b, uint64_t v)
{
    if (v == UINT64_MAX)
        sb_puts(b, "UINT64_MAX");
    else
        sb_printf(b, "%" PRIu64 "u", v);
}

struct named {
    const char *name;
    size_t id;
};

static int named_cmp(const void *a, const void *b)
{
    return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* A sorted name index (struct kr_name_index) of n names. */
static void gen_index(struct sbuf *b, const char *decl, const char *const *names, size_t n,
                      const char *const *ids)
{
    struct named *sorted = xcalloc(n, sizeof *sorted);
    for (size_t i = 0; i < n; i++)
        sorted[i] = (struct named){names[i], i};
    qsort(sorted, n, sizeof *sorted, named_cmp);
    sb_printf(b, "%s = {\n", decl);
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "    {");
        sb_cstr(b, sorted[i].name);
        sb_printf(b, ", %zuu, %s},\n", strlen(sorted[i].name), ids[sorted[i].id]);
    }
    sb_puts(b, "};\n\n");
}

static const char generated_note[] =
    "generated by schemas/schemagen from schemas/fields.json,\n"
    " * events.json and ops.json: do not edit. projections/schema.h documents it.\n";

static void gen_header(const struct schema *s, struct sbuf *b)
{
    sb_printf(b, "/*\n * schema_gen.h: %s */\n", generated_note);
    sb_puts(b, "#ifndef KR_SCHEMA_GEN_H\n#define KR_SCHEMA_GEN_H\n\n#include <stdint.h>\n\n");

    sb_puts(b, "enum kr_fld {\n");
    for (size_t i = 0; i < s->nfields; i++)
        sb_printf(b, "    %s,\n", c_name("KR_FLD_", s->fields[i].name));
    sb_puts(b, "    KR_FLD__COUNT\n};\n\nenum kr_ev {\n");
    for (size_t i = 0; i < s->nevents; i++)
        sb_printf(b, "    %s,\n", c_name("KR_EV_", s->events[i].name));
    sb_puts(b, "    KR_EV__COUNT\n};\n\nenum kr_op {\n");
    for (size_t i = 0; i < s->nops; i++)
        sb_printf(b, "    %s,\n", c_name("KR_OP_", s->ops[i].name));
    sb_puts(b, "    KR_OP__COUNT\n};\n\nenum kr_enum_id {\n");
    for (size_t i = 0; i < s->nenums; i++)
        sb_printf(b, "    %s,\n", c_name("KR_ENUM_", s->enums[i].name));
    sb_puts(b, "    KR_ENUM__COUNT\n};\n\n");
    for (size_t i = 0; i < s->nenums; i++) {
        const struct sg_enum *e = &s->enums[i];
        char *prefix = c_name("KR_", e->name);
        sb_printf(b, "enum kr_enum_%s {\n", e->name);
        for (size_t v = 0; v < e->nvalues; v++)
            sb_printf(b, "    %s_%s,\n", prefix, c_name("", e->values[v]));
        sb_printf(b, "    %s__COUNT\n};\n\n", prefix);
    }
    sb_puts(b, "enum kr_api_err {\n");
    for (size_t i = 0; i < s->nerrors; i++)
        sb_printf(b, "    %s,\n", c_name("KR_ERR_", s->errors[i].name));
    sb_puts(b, "    KR_ERR__COUNT\n};\n\n");

    sb_puts(b, "/* Callers of ops (struct kr_op_def.roles). */\n");
    for (size_t i = 0; i < ROLE__COUNT; i++)
        sb_printf(b, "#define %s %uu\n", c_name("KR_ROLEBIT_", role_name[i]), 1u << i);

    size_t max_fields = 0, max_args = 0;
    for (size_t i = 0; i < s->nevents; i++)
        if (s->events[i].nfields > max_fields)
            max_fields = s->events[i].nfields;
    for (size_t i = 0; i < s->nops; i++)
        if (s->ops[i].nargs > max_args)
            max_args = s->ops[i].nargs;
    sb_puts(b, "\n/* The most fields of one event, and args of one op. */\n");
    sb_printf(b, "#define KR_FLD_MAX_PER_EVENT %zu\n#define KR_ARGS_MAX %zu\n\n", max_fields,
              max_args);

    sb_puts(b, "/* Names in byte order with their ids, for the binary searches of\n"
               " * projections/schema.c: use kr_event_lookup() and the others instead. */\n"
               "struct kr_name_index {\n    const char *name;\n    uint16_t len;\n"
               "    uint16_t id;\n};\n"
               "extern const struct kr_name_index kr_field_index[KR_FLD__COUNT];\n"
               "extern const struct kr_name_index kr_event_index[KR_EV__COUNT];\n"
               "extern const struct kr_name_index kr_op_index[KR_OP__COUNT];\n"
               "/* kr_enums[e].count entries each */\n"
               "extern const struct kr_name_index *const kr_enum_index[KR_ENUM__COUNT];\n\n"
               "#endif\n");
}

static void gen_uses(struct sbuf *b, const char *array, const struct sg_use *u, size_t n,
                     const struct schema *s)
{
    if (n == 0)
        return;
    sb_printf(b, "static const struct kr_field_use %s[] = {\n", array);
    for (size_t i = 0; i < n; i++)
        sb_printf(b, "    {%s, %s},\n", c_name("KR_FLD_", s->fields[u[i].field].name),
                  u[i].optional ? "true" : "false");
    sb_puts(b, "};\n");
}

static void gen_source(const struct schema *s, struct sbuf *b)
{
    sb_printf(b, "/*\n * schema_gen.c: %s */\n", generated_note);
    sb_puts(b, "#include \"schema.h\"\n\n");

    /* Fields. */
    sb_puts(b, "const struct kr_field_def kr_fields[KR_FLD__COUNT] = {\n");
    for (size_t i = 0; i < s->nfields; i++) {
        const struct sg_field *f = &s->fields[i];
        sb_printf(b, "    [%s] = {\n        .name = ", c_name("KR_FLD_", f->name));
        sb_cstr(b, f->name);
        sb_printf(b, ",\n        .type = %s,\n        .of = %s,\n        .charset = %s,\n",
                  ftype_c[f->type], ftype_c[f->type == FT_LIST ? f->of : f->type],
                  charset_c[f->cs]);
        if (f->enum_id >= 0)
            sb_printf(b, "        .enum_id = %s,\n", c_name("KR_ENUM_", s->enums[f->enum_id].name));
        else
            sb_puts(b, "        .enum_id = -1,\n");
        sb_puts(b, "        .min = ");
        sb_u64(b, f->min);
        sb_puts(b, ",\n        .max = ");
        sb_u64(b, f->max);
        sb_printf(b, ",\n        .max_items = %" PRIu64 "u,\n", f->max_items);
        sb_printf(b, "        .personal = %s,\n        .secret = %s,\n        .doc = ",
                  f->personal ? "true" : "false", f->secret ? "true" : "false");
        sb_cstr(b, f->doc);
        sb_puts(b, ",\n    },\n");
    }
    sb_puts(b, "};\n\n");

    /* Enums. */
    for (size_t i = 0; i < s->nenums; i++) {
        const struct sg_enum *e = &s->enums[i];
        sb_printf(b, "static const char *const enum_%s_values[] = {", e->name);
        for (size_t v = 0; v < e->nvalues; v++) {
            sb_puts(b, v ? ", " : "");
            sb_cstr(b, e->values[v]);
        }
        sb_puts(b, "};\n");
    }
    sb_puts(b, "\nconst struct kr_enum_def kr_enums[KR_ENUM__COUNT] = {\n");
    for (size_t i = 0; i < s->nenums; i++) {
        const struct sg_enum *e = &s->enums[i];
        sb_printf(b, "    [%s] = {", c_name("KR_ENUM_", e->name));
        sb_cstr(b, e->name);
        sb_printf(b, ", enum_%s_values, %s__COUNT},\n", e->name, c_name("KR_", e->name));
    }
    sb_puts(b, "};\n\n");

    /* Events. */
    for (size_t i = 0; i < s->nevents; i++) {
        const struct sg_event *ev = &s->events[i];
        char *id = c_lower(ev->name);
        char array[128];
        snprintf(array, sizeof array, "ev_%s_fields", id);
        gen_uses(b, array, ev->fields, ev->nfields, s);
    }
    sb_puts(b, "\nconst struct kr_event_def kr_events[KR_EV__COUNT] = {\n");
    for (size_t i = 0; i < s->nevents; i++) {
        const struct sg_event *ev = &s->events[i];
        sb_printf(b, "    [%s] = {\n        .name = ", c_name("KR_EV_", ev->name));
        sb_cstr(b, ev->name);
        sb_printf(b, ",\n        .platform = %s,\n        .stream_prefix = ",
                  ev->platform ? "true" : "false");
        sb_cstr(b, ev->prefix);
        if (ev->key >= 0)
            sb_printf(b, ",\n        .stream_key = %s,\n",
                      c_name("KR_FLD_", s->fields[ev->key].name));
        else
            sb_puts(b, ",\n        .stream_key = -1,\n");
        if (ev->nfields)
            sb_printf(b, "        .fields = ev_%s_fields,\n", c_lower(ev->name));
        else
            sb_puts(b, "        .fields = NULL,\n");
        sb_printf(b, "        .nfields = %zuu,\n        .has_personal = %s,\n        .doc = ",
                  ev->nfields, ev->has_personal ? "true" : "false");
        sb_cstr(b, ev->doc);
        sb_puts(b, ",\n    },\n");
    }
    sb_puts(b, "};\n\n");

    /* Ops. */
    for (size_t i = 0; i < s->nops; i++) {
        const struct sg_op *op = &s->ops[i];
        char *id = c_lower(op->name);
        char array[128];
        snprintf(array, sizeof array, "op_%s_args", id);
        gen_uses(b, array, op->args, op->nargs, s);
        for (size_t r = 0; r < op->nresult; r++) {
            const struct sg_result *res = &op->result[r];
            if (res->field >= 0)
                continue;
            sb_printf(b, "static const uint16_t op_%s_list%zu_items[] = {", id, r);
            for (size_t k = 0; k < res->nitems; k++)
                sb_printf(b, "%s%s", k ? ", " : "",
                          c_name("KR_FLD_", s->fields[res->items[k]].name));
            sb_puts(b, "};\n");
        }
        if (op->nresult) {
            sb_printf(b, "static const struct kr_result_item op_%s_result[] = {\n", id);
            for (size_t r = 0; r < op->nresult; r++) {
                const struct sg_result *res = &op->result[r];
                if (res->field >= 0) {
                    sb_printf(b, "    {%s, NULL, NULL, 0u},\n",
                              c_name("KR_FLD_", s->fields[res->field].name));
                } else {
                    sb_puts(b, "    {-1, ");
                    sb_cstr(b, res->list);
                    sb_printf(b, ", op_%s_list%zu_items, %zuu},\n", id, r, res->nitems);
                }
            }
            sb_puts(b, "};\n");
        }
        if (op->nevents) {
            sb_printf(b, "static const uint16_t op_%s_events[] = {", id);
            for (size_t k = 0; k < op->nevents; k++)
                sb_printf(b, "%s%s", k ? ", " : "",
                          c_name("KR_EV_", s->events[op->events[k]].name));
            sb_puts(b, "};\n");
        }
    }
    sb_puts(b, "\nconst struct kr_op_def kr_ops[KR_OP__COUNT] = {\n");
    for (size_t i = 0; i < s->nops; i++) {
        const struct sg_op *op = &s->ops[i];
        char *id = c_lower(op->name);
        sb_printf(b, "    [%s] = {\n        .name = ", c_name("KR_OP_", op->name));
        sb_cstr(b, op->name);
        sb_printf(b, ",\n        .endpoint = %s,\n        .roles = ", endpoint_c[op->endpoint]);
        const char *sep = "";
        for (size_t r = 0; r < ROLE__COUNT; r++) {
            if (op->roles & (1u << r)) {
                sb_printf(b, "%s%s", sep, c_name("KR_ROLEBIT_", role_name[r]));
                sep = " | ";
            }
        }
        if (op->permission >= 0) {
            const struct sg_enum *pe = &s->enums[find_enum(s, PERMISSION_ENUM)];
            sb_printf(b, ",\n        .permission = %s_%s,\n", c_name("KR_", pe->name),
                      c_name("", pe->values[op->permission]));
        } else {
            sb_puts(b, ",\n        .permission = -1,\n");
        }
        if (op->nargs)
            sb_printf(b, "        .args = op_%s_args,\n", id);
        else
            sb_puts(b, "        .args = NULL,\n");
        sb_printf(b, "        .nargs = %zuu,\n", op->nargs);
        if (op->nresult)
            sb_printf(b, "        .result = op_%s_result,\n", id);
        else
            sb_puts(b, "        .result = NULL,\n");
        sb_printf(b, "        .nresult = %zuu,\n", op->nresult);
        if (op->nevents)
            sb_printf(b, "        .events = op_%s_events,\n", id);
        else
            sb_puts(b, "        .events = NULL,\n");
        sb_printf(b, "        .nevents = %zuu,\n        .doc = ", op->nevents);
        sb_cstr(b, op->doc);
        sb_puts(b, ",\n    },\n");
    }
    sb_puts(b, "};\n\n");

    /* API errors. */
    sb_puts(b, "const struct kr_api_error_def kr_api_errors[KR_ERR__COUNT] = {\n");
    for (size_t i = 0; i < s->nerrors; i++) {
        sb_printf(b, "    [%s] = {", c_name("KR_ERR_", s->errors[i].name));
        sb_cstr(b, s->errors[i].name);
        sb_puts(b, ", ");
        sb_cstr(b, s->errors[i].doc);
        sb_puts(b, "},\n");
    }
    sb_puts(b, "};\n\n");

    /* Name indexes. */
    size_t nmax = s->nfields > s->nevents ? s->nfields : s->nevents;
    nmax = s->nops > nmax ? s->nops : nmax;
    const char **names = xcalloc(nmax, sizeof *names);
    const char **ids = xcalloc(nmax, sizeof *ids);
    for (size_t i = 0; i < s->nfields; i++) {
        names[i] = s->fields[i].name;
        ids[i] = c_name("KR_FLD_", names[i]);
    }
    gen_index(b, "const struct kr_name_index kr_field_index[KR_FLD__COUNT]", names, s->nfields,
              ids);
    for (size_t i = 0; i < s->nevents; i++) {
        names[i] = s->events[i].name;
        ids[i] = c_name("KR_EV_", names[i]);
    }
    gen_index(b, "const struct kr_name_index kr_event_index[KR_EV__COUNT]", names, s->nevents, ids);
    for (size_t i = 0; i < s->nops; i++) {
        names[i] = s->ops[i].name;
        ids[i] = c_name("KR_OP_", names[i]);
    }
    gen_index(b, "const struct kr_name_index kr_op_index[KR_OP__COUNT]", names, s->nops, ids);
    for (size_t i = 0; i < s->nenums; i++) {
        const struct sg_enum *e = &s->enums[i];
        char *prefix = c_name("KR_", e->name);
        const char **vids = xcalloc(e->nvalues, sizeof *vids);
        for (size_t v = 0; v < e->nvalues; v++) {
            size_t len = strlen(prefix) + strlen(e->values[v]) + 2;
            char *vid = xcalloc(len, 1);
            snprintf(vid, len, "%s_%s", prefix, c_name("", e->values[v]));
            vids[v] = vid;
        }
        char decl[128];
        snprintf(decl, sizeof decl, "static const struct kr_name_index enum_%s_index[]", e->name);
        gen_index(b, decl, e->values, e->nvalues, vids);
    }
    sb_puts(b, "const struct kr_name_index *const kr_enum_index[KR_ENUM__COUNT] = {\n");
    for (size_t i = 0; i < s->nenums; i++)
        sb_printf(b, "    [%s] = enum_%s_index,\n", c_name("KR_ENUM_", s->enums[i].name),
                  s->enums[i].name);
    sb_puts(b, "};\n");
}

/* ---- Output: Markdown ---- */

/* Text for Markdown: characters that would start markup or end a table cell
 * are escaped ('_' is left alone: inside words it is plain text). */
static void sb_md(struct sbuf *b, const char *s)
{
    for (; *s; s++) {
        if (strchr("\\`*<|", *s))
            sb_putc(b, '\\');
        sb_putc(b, *s);
    }
}

/* The anchor GitHub gives the heading "## name": '.' dropped. */
static void sb_anchor(struct sbuf *b, const char *name)
{
    for (; *name; name++)
        if (*name != '.')
            sb_putc(b, *name);
}

static const char *yes_no(bool v)
{
    return v ? "yes" : "no";
}

static void limits_text(struct sbuf *b, const struct sg_field *f)
{
    switch (f->type) {
    case FT_ID:
    case FT_HASH:
        sb_printf(b, "%" PRIu64 " bytes", f->max);
        return;
    case FT_TENANT:
        sb_puts(b, "1..2^63-1");
        return;
    case FT_U64:
        if (f->has_max)
            sb_printf(b, "%" PRIu64 "..%" PRIu64, f->min, f->max);
        else if (f->min)
            sb_printf(b, "at least %" PRIu64, f->min);
        else
            sb_puts(b, "-");
        return;
    case FT_STR:
    case FT_EMAIL:
    case FT_BIN:
        if (f->min == f->max)
            sb_printf(b, "%" PRIu64 " bytes", f->max);
        else
            sb_printf(b, "%" PRIu64 "..%" PRIu64 " bytes", f->min, f->max);
        return;
    case FT_VALUE:
        sb_printf(b, "str up to %" PRIu64 " bytes", f->max);
        return;
    case FT_LIST:
        sb_printf(b, "up to %" PRIu64 " items", f->max_items);
        return;
    case FT_TIME:
    case FT_BOOL:
    case FT_ENUM:
    case FT__COUNT:
        break;
    }
    sb_puts(b, "-");
}

static void type_text(struct sbuf *b, const struct schema *s, const struct sg_field *f)
{
    if (f->type == FT_LIST)
        sb_printf(b, "list of %s", ftype_name[f->of]);
    else
        sb_puts(b, ftype_name[f->type]);
    if (f->enum_id >= 0)
        sb_printf(b, " `%s`", s->enums[f->enum_id].name);
    if (f->type == FT_TIME)
        sb_puts(b, " (UTC ns)");
}

/* "str, 4..32 bytes, code": type, limits and charset in one cell. */
static void full_type_text(struct sbuf *b, const struct schema *s, const struct sg_field *f)
{
    type_text(b, s, f);
    struct sbuf lim = {0};
    limits_text(&lim, f);
    if (strcmp(lim.p, "-") != 0)
        sb_printf(b, ", %s", lim.p);
    sb_fini(&lim);
    if (f->type == FT_STR && f->cs != CS_UTF8)
        sb_printf(b, ", %s", charset_name[f->cs]);
}

/* A sample value of field f in JSON, for the example requests. */
static void sample_value(struct sbuf *b, const struct schema *s, const struct sg_field *f)
{
    switch (f->type) {
    case FT_ID:
        sb_puts(b, "\"<16-byte id>\"");
        return;
    case FT_HASH:
        sb_puts(b, "\"<32-byte hash>\"");
        return;
    case FT_BIN:
        if (f->min == f->max)
            sb_printf(b, "\"<%" PRIu64 " bytes>\"", f->max);
        else
            sb_printf(b, "\"<up to %" PRIu64 " bytes>\"", f->max);
        return;
    case FT_TENANT:
        sb_puts(b, "1");
        return;
    case FT_U64: {
        uint64_t v = f->min ? f->min : 1;
        sb_printf(b, "%" PRIu64, v > f->max ? f->max : v);
        return;
    }
    case FT_TIME:
        sb_puts(b, "1767225600000000000"); /* 2026-01-01T00:00:00Z */
        return;
    case FT_BOOL:
        sb_puts(b, "true");
        return;
    case FT_ENUM:
        sb_printf(b, "\"%s\"", s->enums[f->enum_id].values[0]);
        return;
    case FT_LIST:
        if (f->of == FT_ENUM)
            sb_printf(b, "[\"%s\"]", s->enums[f->enum_id].values[0]);
        else
            sb_puts(b, "[1]");
        return;
    case FT_EMAIL:
        sb_puts(b, f->max >= 16 ? "\"user@example.com\"" : "\"a@b\"");
        return;
    case FT_STR:
    case FT_VALUE:
    case FT__COUNT:
        break;
    }
    /* Strings: the field's name in its charset, fitted to its limits. */
    struct sbuf v = {0};
    char pad = 'x';
    if (f->cs == CS_DIGITS) {
        sb_puts(&v, "123456");
        pad = '0';
    } else if (f->cs == CS_PHONE) {
        sb_puts(&v, "+81 3-1234-5678");
        pad = '0';
    } else {
        char sep = f->cs == CS_UTF8 ? ' ' : (f->cs == CS_PRINTABLE || f->cs == CS_CODE) ? '-' : '_';
        for (const char *p = f->name; *p; p++)
            sb_putc(&v, *p == '_' ? sep : *p);
    }
    uint64_t max = f->max ? f->max : 1;
    if (v.len > max)
        v.len = (size_t)max;
    while (v.len > 1 && (v.p[v.len - 1] == ' ' || v.p[v.len - 1] == '-'))
        v.len--;
    while (v.len < f->min)
        sb_putc(&v, pad);
    sb_putc(b, '"');
    sb_putn(b, v.p, v.len);
    sb_putc(b, '"');
    sb_fini(&v);
}

static const char docs_note[] = "Generated from `schemas/` by `cmake --build build --target "
                                "schema-docs`; do not edit by hand.\n\n";

static void gen_events_md(const struct schema *s, struct sbuf *b)
{
    sb_printf(b, "# Events\n\n%s", docs_note);
    if (s->events_about) {
        sb_md(b, s->events_about);
        sb_puts(b, "\n\n");
    }
    sb_puts(b, "The ops that append them are in [ops.md](ops.md); every field's type and limits "
               "are under [Fields](#fields) at the end.\n");
    for (size_t i = 0; i < s->nevents; i++) {
        const struct sg_event *ev = &s->events[i];
        sb_printf(b, "\n## %s\n\n", ev->name);
        sb_md(b, ev->doc);
        sb_printf(b, "\n\nScope: %s. Stream: `%s`.\n\n", ev->platform ? "platform" : "tenant",
                  ev->stream);
        if (ev->nfields == 0) {
            sb_puts(b, "No fields.\n");
            continue;
        }
        sb_puts(b, "| Field | Type | Required | Personal | Doc |\n|---|---|---|---|---|\n");
        for (size_t k = 0; k < ev->nfields; k++) {
            const struct sg_field *f = &s->fields[ev->fields[k].field];
            sb_printf(b, "| `%s` | ", f->name);
            full_type_text(b, s, f);
            sb_printf(b, " | %s | %s | ", ev->fields[k].optional ? "optional" : "required",
                      yes_no(f->personal));
            sb_md(b, f->doc);
            sb_puts(b, " |\n");
        }
    }

    sb_puts(b, "\n## Fields\n\n");
    if (s->fields_about) {
        sb_md(b, s->fields_about);
        sb_puts(b, "\n\n");
    }
    sb_puts(b, "| Field | Type | Limits | Charset | Personal | Secret | Doc |\n"
               "|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < s->nfields; i++) {
        const struct sg_field *f = &s->fields[i];
        sb_printf(b, "| `%s` | ", f->name);
        type_text(b, s, f);
        sb_puts(b, " | ");
        limits_text(b, f);
        sb_printf(b, " | %s | %s | %s | ",
                  f->type == FT_STR || f->type == FT_EMAIL ? charset_name[f->cs] : "-",
                  yes_no(f->personal), yes_no(f->secret));
        sb_md(b, f->doc);
        sb_puts(b, " |\n");
    }
    sb_puts(b, "\n### Enums\n\n| Enum | Values |\n|---|---|\n");
    for (size_t i = 0; i < s->nenums; i++) {
        const struct sg_enum *e = &s->enums[i];
        sb_printf(b, "| `%s` | ", e->name);
        for (size_t v = 0; v < e->nvalues; v++)
            sb_printf(b, "%s`%s`", v ? ", " : "", e->values[v]);
        sb_puts(b, " |\n");
    }
}

/* A table of result keys: fields with their type and doc. */
static void gen_key_rows(struct sbuf *b, const struct schema *s, int field)
{
    const struct sg_field *f = &s->fields[field];
    sb_printf(b, "| `%s` | ", f->name);
    full_type_text(b, s, f);
    sb_puts(b, " | ");
    sb_md(b, f->doc);
    sb_puts(b, " |\n");
}

static void gen_op_md(const struct schema *s, const struct sg_op *op, struct sbuf *b)
{
    sb_printf(b, "\n## %s\n\n", op->name);
    sb_md(b, op->doc);
    /* The dispatcher (projections/domain.c) lets an auditor call an operator
     * op it may call over the client endpoint, within its tenant. */
    bool auditor_client = op->endpoint == 1 && (op->roles & (1u << 3)); /* role_name[3] */
    sb_printf(b, "\n\n- Endpoint: %s%s\n- Callers: ", endpoint_name[op->endpoint],
              auditor_client ? " (auditors call it on the client endpoint, within their tenant)"
                             : "");
    const char *sep = "";
    for (size_t r = 0; r < ROLE__COUNT; r++) {
        if (op->roles & (1u << r)) {
            sb_printf(b, "%s%s", sep, role_name[r]);
            sep = ", ";
        }
    }
    if (op->roles == 1u << ROLE_ANONYMOUS)
        sb_puts(b, " (no token)");
    if (op->permission >= 0)
        sb_printf(b, "\n- Permission: `%s`",
                  s->enums[find_enum(s, PERMISSION_ENUM)].values[op->permission]);
    else
        sb_puts(b, "\n- Permission: none");
    sb_puts(b, "\n- Appends: ");
    for (size_t k = 0; k < op->nevents; k++) {
        sb_printf(b, "%s[`%s`](events.md#", k ? ", " : "", s->events[op->events[k]].name);
        sb_anchor(b, s->events[op->events[k]].name);
        sb_putc(b, ')');
    }
    if (op->nevents == 0)
        sb_puts(b, "nothing");
    if (op->nerrors) {
        sb_puts(b, "\n- Errors: ");
        for (size_t k = 0; k < op->nerrors; k++)
            sb_printf(b, "%s`%s`", k ? ", " : "", s->errors[op->errors[k]].name);
    }

    sb_puts(b, "\n\nArguments:");
    if (op->nargs == 0) {
        sb_puts(b, " none.\n");
    } else {
        sb_puts(b, "\n\n| Argument | Type | Required | Doc |\n|---|---|---|---|\n");
        for (size_t k = 0; k < op->nargs; k++) {
            const struct sg_field *f = &s->fields[op->args[k].field];
            sb_printf(b, "| `%s` | ", f->name);
            full_type_text(b, s, f);
            sb_printf(b, " | %s | ", op->args[k].optional ? "optional" : "required");
            sb_md(b, f->doc);
            sb_puts(b, " |\n");
        }
    }

    sb_puts(b, "\nResult:");
    if (op->nresult == 0) {
        sb_puts(b, " an empty map.\n");
    } else {
        sb_puts(b, "\n\n| Key | Type | Doc |\n|---|---|---|\n");
        for (size_t r = 0; r < op->nresult; r++) {
            const struct sg_result *res = &op->result[r];
            if (res->field >= 0)
                gen_key_rows(b, s, res->field);
            else
                sb_printf(b, "| `%s` | list of maps | One map per item, keys below. |\n",
                          res->list);
        }
        for (size_t r = 0; r < op->nresult; r++) {
            const struct sg_result *res = &op->result[r];
            if (res->field >= 0)
                continue;
            sb_printf(b, "\nEach item of `%s`:\n\n| Key | Type | Doc |\n|---|---|---|\n",
                      res->list);
            for (size_t k = 0; k < res->nitems; k++)
                gen_key_rows(b, s, res->items[k]);
        }
    }

    sb_printf(b, "\nExample request:\n\n```json\n{\"op\":\"%s\",\"id\":1,", op->name);
    if (op->roles != 1u << ROLE_ANONYMOUS)
        sb_puts(b, "\"token\":\"<token>\",");
    sb_puts(b, "\"args\":{");
    for (size_t k = 0; k < op->nargs; k++) {
        const struct sg_field *f = &s->fields[op->args[k].field];
        sb_printf(b, "%s\"%s\":", k ? "," : "", f->name);
        sample_value(b, s, f);
    }
    sb_puts(b, "}}\n```\n");
}

static void gen_ops_md(const struct schema *s, struct sbuf *b)
{
    sb_printf(b, "# API operations\n\n%s", docs_note);
    if (s->ops_about) {
        sb_md(b, s->ops_about);
        sb_puts(b, "\n\n");
    }
    sb_puts(b, "Requests and replies are msgpack maps, shown here in JSON notation. Argument "
               "and result types are those of [the fields](events.md#fields); the events an op "
               "appends are in [events.md](events.md).\n\n## Errors\n\n"
               "| Error | Meaning |\n|---|---|\n");
    for (size_t i = 0; i < s->nerrors; i++) {
        sb_printf(b, "| `%s` | ", s->errors[i].name);
        sb_md(b, s->errors[i].doc);
        sb_puts(b, " |\n");
    }
    for (size_t i = 0; i < s->nops; i++)
        gen_op_md(s, &s->ops[i], b);
}

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

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xcalloc(n, 1);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int run(const char *schema_dir, const char *out_dir, const char *docs_dir)
{
    struct schema s = {
        .fields_path = join(schema_dir, "fields.json"),
        .events_path = join(schema_dir, "events.json"),
        .ops_path = join(schema_dir, "ops.json"),
    };
    s.fields_json = load(s.fields_path);
    s.events_json = load(s.events_path);
    s.ops_json = load(s.ops_path);
    if (s.fields_json)
        parse_fields_file(&s);
    /* Events and ops refer to fields (and ops to events): when a file they
     * refer to is not even JSON, every reference would be reported. A field
     * with an error still has its name, so checking goes on past those. */
    if (s.fields_json && s.events_json)
        parse_events_file(&s);
    if (s.fields_json && s.events_json && s.ops_json)
        parse_ops_file(&s);
    check_c_names(&s);

    int rc = 0;
    if (nerrors) {
        fprintf(stderr, "schemagen: %u error%s; nothing written\n", nerrors,
                nerrors == 1 ? "" : "s");
        rc = 1;
    } else {
        struct sbuf out[4] = {{0}};
        gen_header(&s, &out[0]);
        gen_source(&s, &out[1]);
        gen_events_md(&s, &out[2]);
        gen_ops_md(&s, &out[3]);
        bool ok = write_if_changed(out_dir, "schema_gen.h", &out[0]);
        ok = ok && write_if_changed(out_dir, "schema_gen.c", &out[1]);
        ok = ok && write_if_changed(docs_dir, "events.md", &out[2]);
        ok = ok && write_if_changed(docs_dir, "ops.md", &out[3]);
        for (size_t i = 0; i < 4; i++)
            sb_fini(&out[i]);
        rc = ok ? 0 : 2;
    }
    json_decref(s.fields_json);
    json_decref(s.events_json);
    json_decref(s.ops_json);
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
    arena_free();
    return rc;
}
