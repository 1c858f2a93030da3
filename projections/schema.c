/*
 * schema.c: name lookups over the generated schema tables (schema.h).
 *
 * Design notes: schemagen writes, next to each table, an index of its names
 * in byte order (struct kr_name_index in schema_gen.h); a lookup is a binary
 * search of it. Names come from clients and journal records, so a lookup
 * reads at most min(len, length of a table name) bytes of the candidate, and
 * compares bytes, never C strings: an embedded NUL, a prefix or an overlong
 * name simply does not match.
 */
#include "schema.h"

#include <string.h>

/* Byte order of name[0..len) and ix->name, shorter first on a common prefix. */
static int name_cmp(const char *name, size_t len, const struct kr_name_index *ix)
{
    size_t n = len < ix->len ? len : ix->len;
    int c = n ? memcmp(name, ix->name, n) : 0;
    if (c != 0)
        return c;
    return len < ix->len ? -1 : len > ix->len;
}

static int search(const struct kr_name_index *ix, size_t count, const char *name, size_t len)
{
    if (!name)
        return -1;
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(name, len, &ix[mid]);
        if (c == 0)
            return ix[mid].id;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

int kr_event_lookup(const char *name, size_t len)
{
    return search(kr_event_index, KR_EV__COUNT, name, len);
}

int kr_op_lookup(const char *name, size_t len)
{
    return search(kr_op_index, KR_OP__COUNT, name, len);
}

int kr_field_lookup(const char *name, size_t len)
{
    return search(kr_field_index, KR_FLD__COUNT, name, len);
}

int kr_enum_lookup(int enum_id, const char *name, size_t len)
{
    if (enum_id < 0 || enum_id >= KR_ENUM__COUNT)
        return -1;
    return search(kr_enum_index[enum_id], kr_enums[enum_id].count, name, len);
}
