/*
 * res_jst.h: Japan time beside every time in an op's result.
 *
 * Times in results are UTC nanoseconds (msgpack uint), which people and JSON
 * clients cannot read at a glance and which the white paper promises in JST.
 * After a handler has written its result, res_add_jst rewrites it so that
 * every map entry whose key names a field of type time (schemas/fields.json)
 * is followed by "<name>_jst": the same instant as ISO 8601 in JST with
 * milliseconds ("2026-04-01T09:00:00.000+09:00", projections/jst.h), or nil
 * when the time is nil. At any depth: in lists of maps too. Nothing else
 * changes, and handlers need not know: the schema says which keys are times,
 * so a time field added to a result later gets its JST by itself.
 *
 * Ownership: the result stays in the caller's buffer; a scratch buffer of the
 * same ceiling is used and wiped (results may hold tokens).
 */
#ifndef KR_RES_JST_H
#define KR_RES_JST_H

#include "kr_error.h"
#include "wbuf.h"

#include <stdbool.h>

/* Suffix of the added keys. */
#define RES_JST_SUFFIX "_jst"
/* The longest time field name a key is made from: names in
 * schemas/fields.json are 16 bytes at most today; res_jst_test checks that
 * every time field's fits. */
#define RES_JST_NAME_MAX 64u

/* Whether op's result (kr_ops[op].result) has a field of type time. */
bool res_has_time(int op);

/* Rewrites the one msgpack object in out as above (an empty out stays empty). KR_ETOOLARGE if the
 * result with its JST strings passes out's ceiling (out unchanged);
 * KR_ENOMEM; KR_ECORRUPT if out is not one well-formed object (a handler's
 * bug). */
KR_MUST_CHECK kr_err res_add_jst(struct kr_wbuf *out);

#endif
