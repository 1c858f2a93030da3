/*
 * gen_md.c: the reference docs, events.md and ops.md (see gen_md.h).
 */
#include "gen_md.h"

#include "gen_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

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
        sb_printf(b, "list of %s", sg_ftype_name[f->of]);
    else
        sb_puts(b, sg_ftype_name[f->type]);
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
        sb_printf(b, ", %s", sg_charset_name[f->cs]);
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

void gen_md_events(const struct schema *s, struct sbuf *b)
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
                  f->type == FT_STR || f->type == FT_EMAIL ? sg_charset_name[f->cs] : "-",
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
    bool auditor_client = op->endpoint == 1 && (op->roles & (1u << 3)); /* sg_role_name[3] */
    sb_printf(b, "\n\n- Endpoint: %s%s\n- Callers: ", sg_endpoint_name[op->endpoint],
              auditor_client ? " (auditors call it on the client endpoint, within their tenant)"
                             : "");
    const char *sep = "";
    for (size_t r = 0; r < ROLE__COUNT; r++) {
        if (op->roles & (1u << r)) {
            sb_printf(b, "%s%s", sep, sg_role_name[r]);
            sep = ", ";
        }
    }
    if (op->roles == 1u << ROLE_ANONYMOUS)
        sb_puts(b, " (no token)");
    if (op->permission >= 0)
        sb_printf(b, "\n- Permission: `%s`",
                  s->enums[sg_find_enum(s, PERMISSION_ENUM)].values[op->permission]);
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

void gen_md_ops(const struct schema *s, struct sbuf *b)
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
