/*
 * gen_c.h: schemagen's C output: the tables projections/schema.h declares,
 * from a schema that parsed without errors (gen_parse.h). Output is a pure
 * function of the schema, in schema order.
 */
#ifndef KR_GEN_C_H
#define KR_GEN_C_H

#include "gen_parse.h"
#include "gen_util.h"

/* schema_gen.h: the ids (enum kr_fld, kr_ev, kr_op, the enums' values, API
 * errors), role bits, sizes, and the name index declarations. */
void gen_c_header(const struct schema *s, struct sbuf *b);

/* schema_gen.c: the tables (kr_fields, kr_enums, kr_events, kr_ops,
 * kr_api_errors) and the sorted name indexes. */
void gen_c_source(const struct schema *s, struct sbuf *b);

#endif
