/*
 * gen_parse.h: schemagen's reading of schemas/fields.json, events.json and
 * ops.json into a struct schema, checked strictly: every problem is reported
 * through sg_err (gen_util.h), naming the file, the field / event / op and
 * what is wrong, and parsing goes on past it so one run reports them all.
 *
 * The parsed schema's strings point into the JSON documents it holds (freed
 * by sg_schema_fini); everything else is in schemagen's arena. Generators
 * (gen_c.h, gen_md.h) may rely on a schema that parsed without errors:
 * every reference resolved, every name valid and distinct in C.
 */
#ifndef KR_GEN_PARSE_H
#define KR_GEN_PARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

extern const char *const sg_ftype_name[FT__COUNT];
extern const char *const sg_ftype_c[FT__COUNT];

enum charset { CS_UTF8, CS_PRINTABLE, CS_CODE, CS_DIGITS, CS_PHONE, CS_KEY, CS_KEY_DOT, CS__COUNT };

extern const char *const sg_charset_name[CS__COUNT];
extern const char *const sg_charset_c[CS__COUNT];

/* Callers of ops; bit i is role i (KR_ROLEBIT_*). Every value of an enum
 * named "role" must be one of these, anonymous excepted. */
enum { ROLE_ANONYMOUS, ROLE__COUNT = 5 };
extern const char *const sg_role_name[ROLE__COUNT];
/* Roles whose accounts hold permissions (the master has them all). */
#define ROLES_WITH_PERMISSIONS ((1u << 2) | (1u << 3))

extern const char *const sg_endpoint_name[2];
extern const char *const sg_endpoint_c[2];

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
    unsigned roles; /* bit i: sg_role_name[i] */
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

/* Reads and checks SCHEMA_DIR/{fields,events,ops}.json into *s (zeroed by the
 * caller). Problems go to sg_err: the schema is usable iff sg_nerrors is 0. */
void sg_parse(struct schema *s, const char *schema_dir);

/* Releases the JSON documents s points into. */
void sg_schema_fini(struct schema *s);

/* Whether values of f have a byte length the schema bounds ("max" of a str,
 * email, bin or value field), given to C as sg_c_field_max(f->name). */
bool sg_field_sized(const struct sg_field *f);

/* The macro holding that bound: "KR_FLD_" + the name upper-cased + "_MAX". */
char *sg_c_field_max(const char *name);

/* The macro holding a list field's most items: "KR_FLD_" + the name
 * upper-cased + "_MAX_ITEMS". */
char *sg_c_field_max_items(const char *name);

/* The enum named name, or -1. */
int sg_find_enum(const struct schema *s, const char *name);

#endif
