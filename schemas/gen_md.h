/*
 * gen_md.h: schemagen's Markdown output, the committed reference docs, from a
 * schema that parsed without errors (gen_parse.h). Output is a pure function
 * of the schema, in schema order, so docs/ can be compared byte for byte.
 */
#ifndef KR_GEN_MD_H
#define KR_GEN_MD_H

#include "gen_parse.h"
#include "gen_util.h"

/* events.md: every event, then every field and enum. */
void gen_md_events(const struct schema *s, struct sbuf *b);

/* ops.md: the API errors, then every op. */
void gen_md_ops(const struct schema *s, struct sbuf *b);

#endif
