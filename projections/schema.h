/*
 * schema.h: the tables generated from the JSON files in schemas/, the one
 * source of truth for fields, events and API ops.
 *
 * Build: schemas/schemagen reads schemas/fields.json, events.json and ops.json
 * and writes schema_gen.h (the enums below) and schema_gen.c (the tables) into
 * the build tree, and docs/events.md and docs/ops.md (committed; regenerate
 * them with `cmake --build build --target schema-docs`; a test fails when they
 * differ from what the schema gives). C code never spells an event, op, field
 * or enum name: it uses these ids and tables.
 *
 * Generated names:
 *   KR_FLD_<FIELD>                   field ids, enum kr_fld, KR_FLD__COUNT
 *   KR_EV_<EVENT>                    event ids ("contact.tagged" -> KR_EV_CONTACT_TAGGED),
 *                                    enum kr_ev, KR_EV__COUNT
 *   KR_OP_<OP>                       op ids ("contacts.tag" -> KR_OP_CONTACTS_TAG),
 *                                    enum kr_op, KR_OP__COUNT
 *   KR_<ENUM>_<VALUE>                enum values ("permission" "contacts.read" ->
 *                                    KR_PERMISSION_CONTACTS_READ; '.' and '-' become '_'),
 *                                    enum kr_enum_<enum>, KR_<ENUM>__COUNT
 *   KR_ENUM_<ENUM>                   enum type ids, enum kr_enum_id, KR_ENUM__COUNT
 *   KR_ERR_<ERROR>                   API error codes, enum kr_api_err, KR_ERR__COUNT
 *   KR_ROLEBIT_<ROLE>                role bits for op access (ANONYMOUS, MASTER, USER,
 *                                    AUDITOR, OPERATOR)
 *   KR_FLD_<FIELD>_MAX               the most bytes of a str, email, bin or value field's
 *                                    value ("max"): size buffers from these, with
 *                                    _Static_assert where a layout depends on them
 *   KR_FLD_<FIELD>_MAX_ITEMS         the most items of a list field ("max_items")
 *   KR_OP_HANDLERS(X)                X(KR_OP_<OP>, cmd_<op>) for every op, '.' and '-' as
 *                                    '_' (projections/cmd.h, domain.c's dispatch table)
 */
#ifndef KR_SCHEMA_H
#define KR_SCHEMA_H

#include "schema_gen.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Field types (fields.json "type"). */
enum kr_ftype {
    KR_FT_ID,     /* bin of exactly 16 bytes: a random 128-bit id */
    KR_FT_TENANT, /* unsigned integer, 1..2^63-1 */
    KR_FT_U64,    /* unsigned integer within [min, max] */
    KR_FT_TIME,   /* unsigned integer: UTC nanoseconds since the Unix epoch */
    KR_FT_BOOL,   /* true / false */
    KR_FT_STR,    /* UTF-8 str of min..max bytes in the field's charset, no NUL */
    KR_FT_EMAIL,  /* str of 3..max bytes: local@domain, printable ASCII */
    KR_FT_ENUM,   /* str, one of the enum's values; held in C as its index */
    KR_FT_HASH,   /* bin of exactly 32 bytes */
    KR_FT_BIN,    /* bin of min..max bytes */
    KR_FT_VALUE,  /* attribute value: str (max bytes), int64, float64 (finite) or bool */
    KR_FT_LIST,   /* array of 0..max_items elements of type `of` (tenant or enum);
                   * enum lists are sets, held in C as a bit mask */
};

/* Character sets a str field may be limited to (fields.json "charset"). */
enum kr_charset {
    KR_CS_UTF8,      /* any UTF-8 without NUL or other C0 controls except tab/newline */
    KR_CS_PRINTABLE, /* printable ASCII 0x21..0x7e */
    KR_CS_CODE,      /* [a-z0-9-], not starting or ending with '-' */
    KR_CS_DIGITS,    /* [0-9] */
    KR_CS_PHONE,     /* [0-9+ -] */
    KR_CS_KEY,       /* [a-z0-9_], starting with a letter */
    KR_CS_KEY_DOT,   /* [a-z0-9_.], starting with a letter */
};

struct kr_field_def {
    const char *name;
    enum kr_ftype type;
    enum kr_ftype of; /* KR_FT_LIST: element type */
    enum kr_charset charset;
    int enum_id;        /* KR_FT_ENUM and enum lists: enum kr_enum_id; else -1 */
    uint64_t min, max;  /* bytes (str, bin, value strings) or value (u64) */
    uint32_t max_items; /* KR_FT_LIST */
    bool personal;      /* encrypted inside event payloads */
    bool secret;        /* never echoed, logged or returned */
    const char *doc;
};

struct kr_enum_def {
    const char *name;
    const char *const *values; /* in schema order; index = C value */
    uint32_t count;
};

/* One field as used by an event or op: which field, and whether it may be absent. */
struct kr_field_use {
    uint16_t field; /* enum kr_fld */
    bool optional;
};

struct kr_event_def {
    const char *name;                  /* "contact.tagged" */
    bool platform;                     /* scope "platform": always tenant 0 */
    const char *stream_prefix;         /* "contact" */
    int stream_key;                    /* field whose id completes the stream
                                        * ("contact/<32 hex>"), or -1 for a stream
                                        * that is just the prefix ("tenant") */
    const struct kr_field_use *fields; /* in schema order */
    uint32_t nfields;
    bool has_personal; /* some field is personal */
    const char *doc;
};

/* An op's result item: a field, or a list of maps with the given fields. */
struct kr_result_item {
    int field;             /* a field, or -1 for a list */
    const char *list_name; /* list: its key in the reply */
    const uint16_t *items; /* list: the fields of each map */
    uint32_t nitems;
};

enum kr_endpoint { KR_ENDPOINT_CLIENT, KR_ENDPOINT_OPERATOR };

struct kr_op_def {
    const char *name; /* "contacts.tag" */
    enum kr_endpoint endpoint;
    uint32_t roles; /* KR_ROLEBIT_* mask of callers allowed */
    int permission; /* enum kr_enum_permission a user also needs, or -1 */
    const struct kr_field_use *args;
    uint32_t nargs;
    const struct kr_result_item *result;
    uint32_t nresult;
    const uint16_t *events; /* enum kr_ev the op may append */
    uint32_t nevents;
    const char *doc;
};

struct kr_api_error_def {
    const char *name; /* "not_found" */
    const char *doc;
};

extern const struct kr_field_def kr_fields[KR_FLD__COUNT];
extern const struct kr_enum_def kr_enums[KR_ENUM__COUNT];
extern const struct kr_event_def kr_events[KR_EV__COUNT];
extern const struct kr_op_def kr_ops[KR_OP__COUNT];
extern const struct kr_api_error_def kr_api_errors[KR_ERR__COUNT];

/* The id of the event / op / field named name[0..len), or -1. Exact match,
 * case-sensitive; any bytes are safe to pass. */
int kr_event_lookup(const char *name, size_t len);
int kr_op_lookup(const char *name, size_t len);
int kr_field_lookup(const char *name, size_t len);
/* The index of value name[0..len) in enum `enum_id`, or -1. */
int kr_enum_lookup(int enum_id, const char *name, size_t len);

#endif
