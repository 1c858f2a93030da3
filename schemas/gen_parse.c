/*
 * gen_parse.c: reading and checking fields.json, events.json and ops.json
 * (see gen_parse.h).
 */
#include "gen_parse.h"

#include "gen_util.h"
#include "kr_limits.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- The schema language ---- */

const char *const sg_ftype_name[FT__COUNT] = {
    "id", "tenant", "u64", "time", "bool", "str", "email", "enum", "hash", "bin", "value", "list",
};
const char *const sg_ftype_c[FT__COUNT] = {
    "KR_FT_ID",    "KR_FT_TENANT", "KR_FT_U64",  "KR_FT_TIME", "KR_FT_BOOL",  "KR_FT_STR",
    "KR_FT_EMAIL", "KR_FT_ENUM",   "KR_FT_HASH", "KR_FT_BIN",  "KR_FT_VALUE", "KR_FT_LIST",
};
const char *const sg_charset_name[CS__COUNT] = {
    "utf8", "printable", "code", "digits", "phone", "key", "key_dot",
};
const char *const sg_charset_c[CS__COUNT] = {
    "KR_CS_UTF8",  "KR_CS_PRINTABLE", "KR_CS_CODE",    "KR_CS_DIGITS",
    "KR_CS_PHONE", "KR_CS_KEY",       "KR_CS_KEY_DOT",
};
const char *const sg_role_name[ROLE__COUNT] = {
    "anonymous", "master", "user", "auditor", "operator",
};
const char *const sg_endpoint_name[] = {"client", "operator"};
const char *const sg_endpoint_c[] = {"KR_ENDPOINT_CLIENT", "KR_ENDPOINT_OPERATOR"};

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

/* ---- JSON helpers ---- */

/* "event \"name\"" when the object has a usable name, else "event #i". */
static const char *label(const char *kind, const char *name, size_t i)
{
    char buf[160];
    if (name)
        snprintf(buf, sizeof buf, "%s \"%.100s\"", kind, name);
    else
        snprintf(buf, sizeof buf, "%s #%zu", kind, i + 1);
    return sg_strndup(buf, strlen(buf));
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
            sg_err(file, "%s: unknown key \"%s\"", what, key);
    }
    for (; *required; required++)
        if (!json_object_get(obj, *required))
            sg_err(file, "%s: missing key \"%s\"", what, *required);
}

/* The string at obj[key], or NULL (reported when present but not a string). */
static const char *get_str(const char *file, const char *what, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return NULL;
    if (!json_is_string(v)) {
        sg_err(file, "%s: \"%s\" must be a string", what, key);
        return NULL;
    }
    return json_string_value(v);
}

/* A doc text at obj[key]: required, one line. */
static const char *get_doc(const char *file, const char *what, json_t *obj, const char *key)
{
    const char *s = get_str(file, what, obj, key);
    if (s && !is_doc(s)) {
        sg_err(file,
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
        sg_err(file, "%s: \"%s\" must be true or false", what, key);
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
        sg_err(file, "%s: \"%s\" must be a non-negative integer", what, key);
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
        sg_nerrors++;
        return NULL;
    }
    if (!json_is_object(j)) {
        sg_err(path, "the top level must be an object");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ---- Lookups in the parsed schema (small tables: linear) ---- */

int sg_find_enum(const struct schema *s, const char *name)
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
        sg_err(file, "\"enums\" must be an object of enum name -> list of values");
        return;
    }
    s->enums = sg_calloc(json_object_size(enums), sizeof *s->enums);
    for (void *it = json_object_iter(enums); it; it = json_object_iter_next(enums, it)) {
        const char *name = json_object_iter_key(it);
        json_t *vals = json_object_iter_value(it);
        struct sg_enum *e = &s->enums[s->nenums++];
        e->name = name;
        const char *what = label("enum", name, 0);
        if (!is_word(name, SG_NAME_MAX))
            sg_err(file, "%s: name must match [a-z][a-z0-9_]* (at most %d bytes)", what,
                   SG_NAME_MAX);
        if (strcmp(name, "id") == 0)
            sg_err(file, "%s: name is taken (enum kr_enum_id lists the enums)", what);
        if (!json_is_array(vals) || json_array_size(vals) == 0) {
            sg_err(file, "%s: must be a non-empty list of values", what);
            continue;
        }
        if (json_array_size(vals) > SG_COUNT_MAX) {
            sg_err(file, "%s: more than %d values", what, SG_COUNT_MAX);
            continue;
        }
        e->values = sg_calloc(json_array_size(vals), sizeof *e->values);
        for (size_t i = 0; i < json_array_size(vals); i++) {
            json_t *v = json_array_get(vals, i);
            const char *value = json_string_value(v);
            if (!value) {
                sg_err(file, "%s: value #%zu must be a string", what, i + 1);
                continue;
            }
            if (!is_enum_value(value, SG_DOTTED_MAX))
                sg_err(file,
                       "%s: value \"%s\" must be lower-case words joined by '.' or '-' "
                       "(at most %d bytes)",
                       what, value, SG_DOTTED_MAX);
            if (find_value(e, value) >= 0)
                sg_err(file, "%s: duplicate value \"%s\"", what, value);
            e->values[e->nvalues++] = value;
        }
    }
    if (s->nenums > SG_COUNT_MAX)
        sg_err(file, "more than %d enums", SG_COUNT_MAX);
}

/* A field's min and max: fixed by its type, or given ("min", "max"). */
static void parse_limits(const char *file, const char *what, struct sg_field *f, json_t *obj)
{
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
            sg_err(file, "%s: max %" PRIu64 " must be at least %" PRIu64, what, max,
                   f->min > 1 ? f->min : 1);
        break;
    case FT_BOOL:
    case FT_ENUM:
    case FT_LIST:
    case FT__COUNT:
        break;
    }
    if (has_min && has_max && min > max)
        sg_err(file, "%s: min %" PRIu64 " > max %" PRIu64, what, min, max);
}

/* A str field's charset (utf8 unless given); e-mail addresses are printable. */
static void parse_charset(const char *file, const char *what, struct sg_field *f, json_t *obj)
{
    f->cs = f->type == FT_EMAIL ? CS_PRINTABLE : CS_UTF8;
    const char *cs = get_str(file, what, obj, "charset");
    if (cs && f->type == FT_STR) {
        int c = -1;
        for (int i = 0; i < CS__COUNT; i++)
            if (strcmp(cs, sg_charset_name[i]) == 0)
                c = i;
        if (c < 0)
            sg_err(file,
                   "%s: charset \"%s\" is not one of utf8, printable, code, digits, phone, key, "
                   "key_dot",
                   what, cs);
        else
            f->cs = (enum charset)c;
    }
}

/* A list's element type and size, and the enum of an enum or enum list. */
static void parse_list_and_enum(struct schema *s, const char *what, struct sg_field *f, json_t *obj)
{
    const char *file = s->fields_path;
    if (f->type == FT_LIST) {
        const char *of = get_str(file, what, obj, "of");
        if (of && strcmp(of, "tenant") == 0)
            f->of = FT_TENANT;
        else if (of && strcmp(of, "enum") == 0)
            f->of = FT_ENUM;
        else if (of)
            sg_err(file, "%s: \"of\" must be \"tenant\" or \"enum\", not \"%s\"", what, of);
        if (f->of == FT_ENUM && !json_object_get(obj, "enum"))
            sg_err(file, "%s: a list of enum needs \"enum\"", what);
        if (f->of == FT_TENANT && json_object_get(obj, "enum"))
            sg_err(file, "%s: \"enum\" is only for a list of enum", what);
        if (get_uint(file, what, obj, "max_items", &f->max_items) &&
            (f->max_items == 0 || f->max_items > UINT32_MAX))
            sg_err(file, "%s: max_items must be 1..%" PRIu32, what, UINT32_MAX);
    }
    const char *en = get_str(file, what, obj, "enum");
    if (en && (f->type == FT_ENUM || (f->type == FT_LIST && f->of == FT_ENUM))) {
        f->enum_id = sg_find_enum(s, en);
        if (f->enum_id < 0) {
            sg_err(file, "%s: enum \"%s\" is not in \"enums\"", what, en);
        } else if (f->type == FT_LIST) {
            const struct sg_enum *e = &s->enums[f->enum_id];
            if (e->nvalues > SG_SET_MAX)
                sg_err(file, "%s: enum \"%s\" has %zu values; a list holds at most %d", what, en,
                       e->nvalues, SG_SET_MAX);
            if (f->max_items > e->nvalues)
                sg_err(file, "%s: max_items %" PRIu64 " exceeds the %zu values of enum \"%s\"",
                       what, f->max_items, e->nvalues, en);
        }
    }
}

static void parse_field(struct schema *s, struct sg_field *f, json_t *obj)
{
    const char *file = s->fields_path;
    const char *what = label("field", f->name, 0);
    f->enum_id = -1;
    if (!is_word(f->name, SG_NAME_MAX))
        sg_err(file, "%s: name must match [a-z][a-z0-9_]* (at most %d bytes)", what, SG_NAME_MAX);
    if (!json_is_object(obj)) {
        sg_err(file, "%s: must be an object", what);
        return;
    }
    f->doc = get_doc(file, what, obj, "doc");
    f->personal = get_bool(file, what, obj, "personal");
    f->secret = get_bool(file, what, obj, "secret");
    const char *type = get_str(file, what, obj, "type");
    if (!type) {
        if (!json_object_get(obj, "type"))
            sg_err(file, "%s: missing key \"type\"", what);
        return;
    }
    int t = -1;
    for (int i = 0; i < FT__COUNT; i++)
        if (strcmp(type, sg_ftype_name[i]) == 0)
            t = i;
    if (t < 0) {
        sg_err(file,
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

    parse_limits(file, what, f, obj);
    parse_charset(file, what, f, obj);
    parse_list_and_enum(s, what, f, obj);
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
        sg_err(file, "\"fields\" must be a non-empty object of field name -> definition");
        return;
    }
    if (json_object_size(fields) > SG_COUNT_MAX) {
        sg_err(file, "more than %d fields", SG_COUNT_MAX);
        return;
    }
    s->fields = sg_calloc(json_object_size(fields), sizeof *s->fields);
    for (void *it = json_object_iter(fields); it; it = json_object_iter_next(fields, it)) {
        const char *name = json_object_iter_key(it);
        json_t *def = json_object_iter_value(it);
        struct sg_field *f = &s->fields[s->nfields++];
        f->name = name;
        parse_field(s, f, def);
    }

    /* Ops' callers are fixed roles; the role enum accounts carry must be among them. */
    int role = sg_find_enum(s, ROLE_ENUM);
    const struct sg_enum *e = role >= 0 ? &s->enums[role] : NULL;
    if (e) {
        for (size_t i = 0; i < e->nvalues; i++) {
            bool known = false;
            for (size_t r = 1; r < ROLE__COUNT; r++)
                known |= strcmp(e->values[i], sg_role_name[r]) == 0;
            if (!known)
                sg_err(file,
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
        sg_err(file, "%s: %s #%zu must be a string", what, kind, i + 1);
        return u;
    }
    size_t len = strlen(ref);
    if (len > 0 && ref[len - 1] == '?') {
        if (!allow_optional)
            sg_err(file, "%s: %s \"%s\": '?' (optional) is not allowed here", what, kind, ref);
        u.optional = true;
        len--;
    }
    u.field = find_field_n(s, ref, len);
    if (u.field < 0)
        sg_err(file, "%s: %s \"%.*s\" is not a field in fields.json", what, kind, (int)len, ref);
    return u;
}

/* Parses a list of field references into *out, reporting repeats. */
static size_t parse_uses(const struct schema *s, const char *file, const char *what,
                         const char *kind, json_t *arr, bool allow_optional, struct sg_use **out)
{
    if (!json_is_array(arr)) {
        sg_err(file, "%s: \"%ss\" must be a list of field names", what, kind);
        return 0;
    }
    struct sg_use *uses = sg_calloc(json_array_size(arr), sizeof *uses);
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        struct sg_use u = parse_use(s, file, what, kind, i, v, allow_optional);
        for (size_t k = 0; k < n && u.field >= 0; k++)
            if (uses[k].field == u.field)
                sg_err(file, "%s: %s \"%s\" is listed twice", what, kind, field_name(s, u.field));
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
    ev->prefix = sg_strndup(ev->stream, plen);
    ev->key = -1;
    if (!is_word(ev->prefix, KR_STREAM_MAX - 1 - SG_STREAM_KEY_HEX))
        sg_err(file,
               "%s: stream \"%s\": the part before '/' must match [a-z][a-z0-9_]* (at most %d "
               "bytes)",
               what, ev->stream, KR_STREAM_MAX - 1 - SG_STREAM_KEY_HEX);
    if (!slash)
        return;
    const char *tmpl = slash + 1;
    size_t tlen = strlen(tmpl);
    if (tlen < 3 || tmpl[0] != '{' || tmpl[tlen - 1] != '}') {
        sg_err(file, "%s: stream \"%s\" must be PREFIX or PREFIX/{FIELD}", what, ev->stream);
        return;
    }
    const char *key = tmpl + 1;
    size_t klen = tlen - 2;
    if (klen > 0 && key[klen - 1] == '?') {
        sg_err(file, "%s: stream \"%s\": the stream key cannot be optional ('?')", what,
               ev->stream);
        return;
    }
    for (size_t i = 0; i < ev->nfields; i++) {
        int f = ev->fields[i].field;
        if (f < 0 || strlen(s->fields[f].name) != klen || memcmp(s->fields[f].name, key, klen) != 0)
            continue;
        ev->key = f;
        if (s->fields[f].type != FT_ID)
            sg_err(file, "%s: stream \"%s\": {%.*s} must be an id field, not %s", what, ev->stream,
                   (int)klen, key, sg_ftype_name[s->fields[f].type]);
        if (ev->fields[i].optional)
            sg_err(file,
                   "%s: stream \"%s\": field \"%.*s\" keys the stream, so it cannot be optional "
                   "('?')",
                   what, ev->stream, (int)klen, key);
        return;
    }
    sg_err(file, "%s: stream \"%s\": {%.*s} is not a field of the event", what, ev->stream,
           (int)klen, key);
}

static void parse_event(struct schema *s, struct sg_event *ev, json_t *obj, size_t idx)
{
    const char *file = s->events_path;
    if (!json_is_object(obj)) {
        sg_err(file, "event #%zu: must be an object", idx + 1);
        return;
    }
    ev->name = get_str(file, label("event", NULL, idx), obj, "name");
    const char *what = label("event", ev->name, idx);
    static const char *const keys[] = {"name", "scope", "stream", "fields", "doc", NULL};
    check_keys(file, what, obj, keys, keys);
    if (ev->name && !is_dotted(ev->name, KR_TYPE_MAX))
        sg_err(file, "%s: name must match [a-z][a-z0-9_]*(\\.[a-z][a-z0-9_-]*)+ (at most %d bytes)",
               what, KR_TYPE_MAX);
    if (ev->name && find_event(s, ev->name) >= 0)
        sg_err(file, "%s: duplicate event name", what);
    ev->doc = get_doc(file, what, obj, "doc");

    const char *scope = get_str(file, what, obj, "scope");
    if (scope && strcmp(scope, "platform") == 0)
        ev->platform = true;
    else if (scope && strcmp(scope, "tenant") != 0)
        sg_err(file, "%s: scope must be \"tenant\" or \"platform\", not \"%s\"", what, scope);

    json_t *fields = json_object_get(obj, "fields");
    if (fields)
        ev->nfields = parse_uses(s, file, what, "field", fields, true, &ev->fields);
    for (size_t i = 0; i < ev->nfields; i++) {
        int f = ev->fields[i].field;
        if (f >= 0 && s->fields[f].personal) {
            ev->has_personal = true;
            /* Personal data is sealed under the tenant's data key; tenant 0 has none. */
            if (ev->platform)
                sg_err(file,
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
        sg_err(file, "\"events\" must be a list of 1..%d events", SG_COUNT_MAX);
        return;
    }
    s->events = sg_calloc(json_array_size(events), sizeof *s->events);
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
        sg_err(file, "\"errors\" must be an object of 1..%d error name -> doc", SG_COUNT_MAX);
        return;
    }
    s->errors = sg_calloc(json_object_size(errors), sizeof *s->errors);
    for (void *it = json_object_iter(errors); it; it = json_object_iter_next(errors, it)) {
        const char *name = json_object_iter_key(it);
        json_t *doc = json_object_iter_value(it);
        const char *what = label("error", name, 0);
        if (!is_word(name, SG_NAME_MAX))
            sg_err(file, "%s: name must match [a-z][a-z0-9_]* (at most %d bytes)", what,
                   SG_NAME_MAX);
        const char *text = json_string_value(doc);
        if (!text || !is_doc(text))
            sg_err(file, "%s: its doc must be one line of text", what);
        s->errors[s->nerrors++] = (struct sg_error){name, text};
    }
}

static void parse_result(const struct schema *s, struct sg_op *op, json_t *arr, const char *what)
{
    const char *file = s->ops_path;
    if (!json_is_array(arr)) {
        sg_err(file, "%s: \"result\" must be a list of field names and {\"list\", \"items\"} maps",
               what);
        return;
    }
    op->result = sg_calloc(json_array_size(arr), sizeof *op->result);
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
                sg_err(file, "%s: result list \"%s\": name must match [a-z][a-z0-9_]*", what,
                       r->list);
            key = r->list;
            json_t *items = json_object_get(v, "items");
            if (items && (!json_is_array(items) || json_array_size(items) == 0)) {
                sg_err(file, "%s: result list \"%s\": \"items\" must be a non-empty list of fields",
                       what, r->list ? r->list : "?");
            } else if (items) {
                struct sg_use *uses;
                char kind[80];
                snprintf(kind, sizeof kind, "item of result list \"%.40s\"",
                         r->list ? r->list : "?");
                r->nitems = parse_uses(s, file, what, kind, items, false, &uses);
                r->items = sg_calloc(r->nitems, sizeof *r->items);
                for (size_t k = 0; k < r->nitems; k++)
                    r->items[k] = uses[k].field;
            }
        } else {
            sg_err(file, "%s: result item #%zu must be a field name or a {\"list\", \"items\"} map",
                   what, i + 1);
            r->field = -1;
            continue;
        }
        /* One reply map: its keys are distinct. */
        for (size_t k = 0; key && k + 1 < op->nresult; k++) {
            const struct sg_result *o = &op->result[k];
            const char *other = o->field >= 0 ? s->fields[o->field].name : o->list;
            if (other && strcmp(other, key) == 0)
                sg_err(file, "%s: result key \"%s\" appears twice", what, key);
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
        sg_err(file, "%s: \"%ss\" must be a list of %s names", what, kind, kind);
        return 0;
    }
    int *ids = sg_calloc(json_array_size(arr), sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        const char *name = json_string_value(v);
        if (!name) {
            sg_err(file, "%s: %s #%zu must be a string", what, kind, i + 1);
            continue;
        }
        int id = find(s, name);
        if (id < 0) {
            sg_err(file, "%s: %s \"%s\" is not in %s", what, kind, name, where);
            continue;
        }
        for (size_t k = 0; k < n; k++)
            if (ids[k] == id)
                sg_err(file, "%s: %s \"%s\" is listed twice", what, kind, name);
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
        sg_err(file, "op #%zu: must be an object", idx + 1);
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
        sg_err(file, "%s: name must match [a-z][a-z0-9_]*(\\.[a-z][a-z0-9_-]*)+ (at most %d bytes)",
               what, SG_DOTTED_MAX);
    for (size_t k = 0; op->name && k < idx; k++)
        if (s->ops[k].name && strcmp(s->ops[k].name, op->name) == 0)
            sg_err(file, "%s: duplicate op name", what);
    op->doc = get_doc(file, what, obj, "doc");

    const char *ep = get_str(file, what, obj, "endpoint");
    if (ep && strcmp(ep, sg_endpoint_name[1]) == 0)
        op->endpoint = 1;
    else if (ep && strcmp(ep, sg_endpoint_name[0]) != 0)
        sg_err(file, "%s: endpoint must be \"client\" or \"operator\", not \"%s\"", what, ep);

    json_t *roles = json_object_get(obj, "roles");
    if (roles && (!json_is_array(roles) || json_array_size(roles) == 0)) {
        sg_err(file, "%s: \"roles\" must be a non-empty list of roles", what);
    } else if (roles) {
        for (size_t i = 0; i < json_array_size(roles); i++) {
            json_t *v = json_array_get(roles, i);
            const char *r = json_string_value(v);
            unsigned bit = 0;
            for (unsigned k = 0; r && k < ROLE__COUNT; k++)
                if (strcmp(r, sg_role_name[k]) == 0)
                    bit = 1u << k;
            if (!bit)
                sg_err(file,
                       "%s: role %s%s%s is not one of anonymous, master, user, auditor, operator",
                       what, r ? "\"" : "#", r ? r : "", r ? "\"" : "");
            else if (op->roles & bit)
                sg_err(file, "%s: role \"%s\" is listed twice", what, r);
            op->roles |= bit;
        }
    }

    const char *perm = get_str(file, what, obj, "permission");
    if (perm) {
        int e = sg_find_enum(s, PERMISSION_ENUM);
        op->permission = e >= 0 ? find_value(&s->enums[e], perm) : -1;
        if (op->permission < 0)
            sg_err(file, "%s: permission \"%s\" is not a value of enum \"" PERMISSION_ENUM "\"",
                   what, perm);
        if (roles && !(op->roles & ROLES_WITH_PERMISSIONS))
            sg_err(file,
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
                sg_err(file, "%s: secret arg \"%s\" is echoed in the result", what,
                       s->fields[f].name);
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
        sg_err(file, "\"ops\" must be a list of 1..%d ops", SG_COUNT_MAX);
        return;
    }
    s->ops = sg_calloc(json_array_size(ops), sizeof *s->ops);
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
    size_t cap = 64 + 3 * s->nfields + s->nevents + 2 * s->nops + s->nerrors;
    for (size_t i = 0; i < s->nenums; i++)
        cap += 2 + s->enums[i].nvalues;
    struct cnames c = {sg_calloc(cap, sizeof *c.v), 0};
    static const char hdr[] = "projections/schema.h";
    static const char *const fixed[] = {
        "KR_FLD__COUNT",        "KR_EV__COUNT",   "KR_OP__COUNT",         "KR_ENUM__COUNT",
        "KR_ERR__COUNT",        "KR_ARGS_MAX",    "KR_FLD_MAX_PER_EVENT", "KR_ENDPOINT_CLIENT",
        "KR_ENDPOINT_OPERATOR", "KR_OP_HANDLERS",
    };
    /* Helpers beside the op handlers (cmd_<op>) whose names an op could take. */
    static const char *const cmd_helpers[] = {"cmd_has_perm", "cmd_new_id", "cmd_stream_version"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        add_cname(&c, fixed[i], hdr, "a name schema.h defines");
    for (size_t i = 0; i < sizeof cmd_helpers / sizeof cmd_helpers[0]; i++)
        add_cname(&c, cmd_helpers[i], "projections/cmd.h", "a name cmd.h defines");
    for (size_t i = 0; i < FT__COUNT; i++)
        add_cname(&c, sg_ftype_c[i], hdr, "a name schema.h defines");
    for (size_t i = 0; i < CS__COUNT; i++)
        add_cname(&c, sg_charset_c[i], hdr, "a name schema.h defines");
    for (size_t i = 0; i < ROLE__COUNT; i++)
        add_cname(&c, sg_c_name("KR_ROLEBIT_", sg_role_name[i]), hdr, "a name schema.h defines");
    for (size_t i = 0; i < s->nfields; i++) {
        const char *what = label("field", s->fields[i].name, i);
        add_cname(&c, sg_c_name("KR_FLD_", s->fields[i].name), s->fields_path, what);
        if (sg_field_sized(&s->fields[i]))
            add_cname(&c, sg_c_field_max(s->fields[i].name), s->fields_path, what);
        if (s->fields[i].type == FT_LIST)
            add_cname(&c, sg_c_field_max_items(s->fields[i].name), s->fields_path, what);
    }
    for (size_t i = 0; i < s->nenums; i++) {
        const struct sg_enum *e = &s->enums[i];
        const char *what = label("enum", e->name, i);
        add_cname(&c, sg_c_name("KR_ENUM_", e->name), s->fields_path, what);
        char *prefix = sg_c_name("KR_", e->name);
        size_t plen = strlen(prefix);
        char *count = sg_calloc(plen + 8, 1);
        snprintf(count, plen + 8, "%s__COUNT", prefix);
        add_cname(&c, count, s->fields_path, what);
        char *pre = sg_calloc(plen + 2, 1);
        snprintf(pre, plen + 2, "%s_", prefix);
        for (size_t v = 0; v < e->nvalues; v++) {
            size_t vlen = strlen(what) + strlen(e->values[v]) + 16;
            char *vwhat = sg_calloc(vlen, 1);
            snprintf(vwhat, vlen, "value \"%s\" of %s", e->values[v], what);
            add_cname(&c, sg_c_name(pre, e->values[v]), s->fields_path, vwhat);
        }
    }
    for (size_t i = 0; i < s->nevents; i++)
        add_cname(&c, s->events[i].name ? sg_c_name("KR_EV_", s->events[i].name) : NULL,
                  s->events_path, label("event", s->events[i].name, i));
    for (size_t i = 0; i < s->nops; i++) {
        const char *name = s->ops[i].name, *what = label("op", name, i);
        add_cname(&c, name ? sg_c_name("KR_OP_", name) : NULL, s->ops_path, what);
        add_cname(&c, name ? sg_c_handler(name) : NULL, s->ops_path, what);
    }
    for (size_t i = 0; i < s->nerrors; i++)
        add_cname(&c, sg_c_name("KR_ERR_", s->errors[i].name), s->ops_path,
                  label("error", s->errors[i].name, i));
    qsort(c.v, c.n, sizeof *c.v, cname_cmp);
    for (size_t i = 1; i < c.n; i++) {
        const struct cname *x = &c.v[i - 1], *y = &c.v[i];
        /* The same schema name twice is reported as a duplicate already. */
        if (strcmp(x->name, y->name) == 0 && strcmp(x->what, y->what) != 0)
            sg_err(y->file, "%s: its C name %s clashes with %s (%s)", y->what, y->name, x->what,
                   x->file);
    }
}

/* ---- The whole schema ---- */

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = sg_calloc(n, 1);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void sg_parse(struct schema *s, const char *schema_dir)
{
    s->fields_path = join(schema_dir, "fields.json");
    s->events_path = join(schema_dir, "events.json");
    s->ops_path = join(schema_dir, "ops.json");
    s->fields_json = load(s->fields_path);
    s->events_json = load(s->events_path);
    s->ops_json = load(s->ops_path);
    if (s->fields_json)
        parse_fields_file(s);
    /* Events and ops refer to fields (and ops to events): when a file they
     * refer to is not even JSON, every reference would be reported. A field
     * with an error still has its name, so checking goes on past those. */
    if (s->fields_json && s->events_json)
        parse_events_file(s);
    if (s->fields_json && s->events_json && s->ops_json)
        parse_ops_file(s);
    check_c_names(s);
}

void sg_schema_fini(struct schema *s)
{
    json_decref(s->fields_json);
    json_decref(s->events_json);
    json_decref(s->ops_json);
    s->fields_json = s->events_json = s->ops_json = NULL;
}

bool sg_field_sized(const struct sg_field *f)
{
    return f->type == FT_STR || f->type == FT_EMAIL || f->type == FT_BIN || f->type == FT_VALUE;
}

char *sg_c_field_max(const char *name)
{
    const char *c = sg_c_name("KR_FLD_", name);
    size_t n = strlen(c) + sizeof "_MAX";
    char *out = sg_calloc(n, 1);
    snprintf(out, n, "%s_MAX", c);
    return out;
}

char *sg_c_field_max_items(const char *name)
{
    const char *c = sg_c_name("KR_FLD_", name);
    size_t n = strlen(c) + sizeof "_MAX_ITEMS";
    char *out = sg_calloc(n, 1);
    snprintf(out, n, "%s_MAX_ITEMS", c);
    return out;
}
