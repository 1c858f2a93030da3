/*
 * cmd_contacts.c: the ops on contacts, tags and attributes (contacts.*,
 * tags.*, attributes.*) and the master's bulk export (utility.export).
 *
 * Design notes. Commands decide on the views (contacts.h) under one read
 * transaction and name the stream version they decided on; apply re-checks
 * what may change in between (a tag name taken, a tag deleted). Contact
 * fields and attribute values are personal data: the views keep only the seq
 * of the record holding them, so reads open that record with the tenant's
 * key. A page of contacts.list fetches the key once, then for each contact
 * does one row get, one record read and one decrypt into c->scratch, with no
 * allocation. Result maps follow the op's result list in ops.json, so a
 * field added there needs no change here unless it is a new kind of value.
 */
#include "cmd.h"
#include "contacts.h"

#include <string.h>

/* ---- Arguments ---- */

static const uint8_t *arg_id(const struct cmd *c, int fld)
{
    return c->args->v[fld].p;
}

/* A caller-given version must be the current one. */
static kr_err check_version(struct cmd *c, uint64_t current)
{
    const struct kr_value *v = &c->args->v[KR_FLD_VERSION];
    if (v->set && v->u != current)
        return cmd_fail(c, KR_ECONFLICT, "version", "changed since that version; read it again");
    return KR_OK;
}

/* A contact's row with its version, which the journal's stream index keeps. */
static kr_err contact_get(struct cmd *c, uint64_t tenant, const uint8_t id[16],
                          struct vc_contact *row)
{
    kr_err err = vc_contact_get(&c->d->views, c->txn, tenant, id, row);
    if (err)
        return err;
    err = cmd_stream_version(c, tenant, kr_events[KR_EV_CONTACT_REGISTERED].stream_prefix, id,
                             &row->version);
    return err == KR_OK && row->version == 0 ? KR_ECORRUPT : err;
}

static kr_err find_contact(struct cmd *c, struct vc_contact *row)
{
    kr_err err = contact_get(c, c->who->tenant, arg_id(c, KR_FLD_CONTACT), row);
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, err, "contact", "no such contact");
    return err;
}

static kr_err find_tag(struct cmd *c, struct vc_tag *row)
{
    kr_err err = vc_tag_get(&c->d->views, c->txn, c->who->tenant, arg_id(c, KR_FLD_TAG), row);
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, err, "tag", "no such tag");
    return err;
}

/* ---- Reading personal data ---- */

/* Decodes record seq (event ev of the caller's tenant) with key into p. */
static kr_err read_record(struct cmd *c, const struct kr_data_key *key, uint64_t seq, int ev,
                          struct kr_payload *p)
{
    struct jrn_record r;
    kr_err err = jrn_read_in(c->d->j, c->txn, seq, &r);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err; /* views point at records that exist */
    if (r.tenant != c->who->tenant)
        return KR_ECORRUPT;
    if (r.payload_stripped)
        return KR_ENOTFOUND;
    struct kr_diag d = {{0}, {0}};
    err = kr_event_decode(ev, &r, key, p, &d);
    if (err && err != KR_ENOTFOUND && err != KR_ENOMEM)
        return cmd_corrupt(c, seq, kr_events[ev].name, &d);
    return err;
}

/* ---- Results ---- */

/* What one item of a result holds; put_field picks what a field asks for. */
struct item {
    const uint8_t *id; /* the contact, tag or attribute */
    uint64_t version;
    const uint8_t *name; /* tag name or attribute key */
    size_t name_len;
    int type;                   /* attribute type */
    const struct kr_payload *p; /* personal fields (NULL: none) */
};

static void put_field(struct cmd *c, int fld, const struct item *it)
{
    static const struct kr_value unset;
    switch (fld) {
    case KR_FLD_CONTACT:
    case KR_FLD_TAG:
    case KR_FLD_ATTRIBUTE:
        res_bytes(c, fld, it->id, 16);
        break;
    case KR_FLD_VERSION:
        res_u64(c, fld, it->version);
        break;
    case KR_FLD_TAG_NAME:
    case KR_FLD_ATTRIBUTE_KEY:
        res_str(c, fld, (const char *)it->name, it->name_len);
        break;
    case KR_FLD_ATTRIBUTE_TYPE:
        res_enum(c, fld, (uint64_t)it->type);
        break;
    default:
        KR_ASSERT(kr_fields[fld].personal); /* ops.json names a field this file does not know */
        res_val(c, fld, it->p ? &it->p->v[fld] : &unset);
    }
}

static void put_item(struct cmd *c, const struct kr_result_item *ri, const struct item *it)
{
    res_map(c, ri->nitems);
    for (uint32_t i = 0; i < ri->nitems; i++)
        put_field(c, ri->items[i], it);
}

/* The op's result list named by its position; asserts the schema's shape. */
static const struct kr_result_item *result_list(int op, uint32_t at)
{
    KR_ASSERT(at < kr_ops[op].nresult && kr_ops[op].result[at].field < 0);
    return &kr_ops[op].result[at];
}

static void res_version(struct cmd *c, uint64_t version)
{
    res_map(c, 1);
    res_u64(c, KR_FLD_VERSION, version);
}

/* ---- Paging ---- */

/* The ids of one page of view db: the 16 bytes after `prefix` of each key
 * starting with it, in key order, after the caller's cursor (the last id of
 * the previous page). *more: there are entries after the page. */
static kr_err page_ids(struct cmd *c, enum kr_view db, const uint8_t *prefix, size_t plen,
                       uint32_t limit, uint8_t (*ids)[16], uint32_t *n, bool *more)
{
    const struct kr_value *cv = &c->args->v[KR_FLD_CURSOR];
    struct vkey k;
    MDB_cursor *cur;
    MDB_val key, val;
    kr_err err = KR_OK;

    *n = 0;
    *more = false;
    vk_init(&k);
    vk_bytes(&k, prefix, plen);
    if (cv->set) {
        if (cv->n != 16)
            return cmd_fail(c, KR_EINVAL, "cursor", "not a cursor of this list");
        vk_bytes(&k, cv->p, 16);
    }
    int rc = mdb_cursor_open(c->txn, c->d->views.db[db], &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    key = (MDB_val){k.n, k.b};
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    if (cv->set && rc == MDB_SUCCESS && key.mv_size == k.n && memcmp(key.mv_data, k.b, k.n) == 0)
        rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT); /* the cursor's own entry */
    for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size < plen || memcmp(key.mv_data, prefix, plen) != 0)
            break;
        if (key.mv_size != plen + 16) {
            err = KR_ECORRUPT;
            break;
        }
        if (*n == limit) {
            *more = true;
            break;
        }
        memcpy(ids[*n], (const uint8_t *)key.mv_data + plen, 16);
        (*n)++;
    }
    mdb_cursor_close(cur);
    if (err)
        return err;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    return KR_OK;
}

static uint32_t page_limit(const struct cmd *c)
{
    uint32_t limit = cmd_limit(c);
    return limit > KR_PAGE_MAX ? KR_PAGE_MAX : limit;
}

/* contacts.list and utility.export: a page of contacts, all of the tenant's
 * or (with a tag) those with the tag, in contact id order; *listed (may be
 * NULL) gets how many. */
static kr_err list_contacts(struct cmd *c, int op, uint32_t *listed)
{
    uint8_t ids[KR_PAGE_MAX][16];
    uint8_t prefix[8 + 16];
    size_t plen = 8;
    enum kr_view db = VIEW_CONTACTS;
    uint64_t tenant = c->who->tenant;
    struct kr_data_key key = {0};
    bool have_key = false;
    uint32_t n;
    bool more;
    kr_err err = KR_OK;
    v_put_u64(prefix, tenant);
    if (c->args->v[KR_FLD_TAG].set) {
        struct vc_tag tag;
        if ((err = find_tag(c, &tag)))
            return err;
        memcpy(prefix + 8, arg_id(c, KR_FLD_TAG), 16);
        plen += 16;
        db = VIEW_TAG_CONTACTS;
    }
    if ((err = page_ids(c, db, prefix, plen, page_limit(c), ids, &n, &more)))
        return err;
    const struct kr_result_item *ri = result_list(op, 0);
    res_map(c, 2);
    res_keyname(c, ri->list_name);
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n; i++) {
        struct vc_contact row;
        err = contact_get(c, tenant, ids[i], &row);
        if (err) {
            err = err == KR_ENOTFOUND ? KR_ECORRUPT : err; /* a tag link without its contact */
            break;
        }
        if (!have_key) {
            if ((err = cmd_key(c, tenant, false, &key)))
                break;
            have_key = true;
        }
        if ((err = read_record(c, &key, row.seq, row.fields_ev, c->scratch)))
            break;
        struct item it = {.id = ids[i], .version = row.version, .p = c->scratch};
        put_item(c, ri, &it);
    }
    kr_data_key_wipe(&key);
    if (err)
        return err;
    res_cursor(c, more, n ? ids[n - 1] : NULL, 16);
    if (listed)
        *listed = n;
    return KR_OK;
}

/* ---- Contacts ---- */

/* Copies the contact fields of event ev (all but the id) from the arguments. */
static void copy_contact_fields(struct kr_payload *p, const struct kr_payload *args, int ev)
{
    const struct kr_event_def *e = &kr_events[ev];
    for (uint32_t i = 0; i < e->nfields; i++) {
        int fld = e->fields[i].field;
        const struct kr_value *v = &args->v[fld];
        if (fld != KR_FLD_CONTACT && v->set)
            kr_set_bytes(p, fld, v->p, v->n);
    }
}

kr_err cmd_contacts_register(struct cmd *c)
{
    uint8_t id[16];
    kr_err err = KR_OK;
    cmd_new_id(c, id);
    struct kr_payload *p = cmd_event(c, KR_EV_CONTACT_REGISTERED, c->who->tenant, 0);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_CONTACT, id, 16);
    copy_contact_fields(p, c->args, KR_EV_CONTACT_REGISTERED);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 2);
    res_bytes(c, KR_FLD_CONTACT, id, 16);
    res_u64(c, KR_FLD_VERSION, c->ev[0].version);
    return KR_OK;
}

kr_err cmd_contacts_update(struct cmd *c)
{
    struct vc_contact row;
    kr_err err = KR_OK;
    if ((err = find_contact(c, &row)) || (err = check_version(c, row.version)))
        return err;
    struct kr_payload *p = cmd_event(c, KR_EV_CONTACT_UPDATED, c->who->tenant, row.version);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_CONTACT, arg_id(c, KR_FLD_CONTACT), 16);
    copy_contact_fields(p, c->args, KR_EV_CONTACT_UPDATED);
    if ((err = cmd_commit(c)))
        return err;
    res_version(c, c->ev[0].version);
    return KR_OK;
}

kr_err cmd_contacts_delete(struct cmd *c)
{
    struct vc_contact row;
    kr_err err = KR_OK;
    if ((err = find_contact(c, &row)) || (err = check_version(c, row.version)))
        return err;
    struct kr_payload *p = cmd_event(c, KR_EV_CONTACT_DELETED, c->who->tenant, row.version);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_CONTACT, arg_id(c, KR_FLD_CONTACT), 16);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 0);
    return KR_OK;
}

/* One row of a contact's list (tags, attribute values): the id after the
 * contact in the key, and the row's value. */
typedef kr_err (*contact_row_fn)(struct cmd *c, const uint8_t id[16], const MDB_val *val,
                                 const void *arg, const struct kr_result_item *ri);

/* Packs the list of contact's rows in view db (keyed tenant|contact|id) as
 * an array of ri's items, one per row, each written by fn. */
static kr_err put_contact_rows(struct cmd *c, enum kr_view db, const uint8_t *contact,
                               contact_row_fn fn, const void *arg, const struct kr_result_item *ri)
{
    uint8_t prefix[24];
    uint32_t n, i = 0;
    MDB_cursor *cur;
    MDB_val key, val;
    kr_err err = KR_OK;

    v_put_u64(prefix, c->who->tenant);
    memcpy(prefix + 8, contact, 16);
    if ((err = vc_count_prefix(&c->d->views, c->txn, db, prefix, sizeof prefix, UINT32_MAX, &n)))
        return err;
    msgpack_pack_array(&c->res, n);
    int rc = mdb_cursor_open(c->txn, c->d->views.db[db], &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    key = (MDB_val){sizeof prefix, prefix};
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == MDB_SUCCESS && i < n;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT), i++) {
        if (key.mv_size != sizeof prefix + 16) {
            err = KR_ECORRUPT;
            break;
        }
        if ((err = fn(c, (const uint8_t *)key.mv_data + sizeof prefix, &val, arg, ri)))
            break;
    }
    mdb_cursor_close(cur);
    if (!err && i != n)
        err = rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? KR_ECORRUPT : kr_err_from_mdb(rc);
    return err;
}

static kr_err put_tag_row(struct cmd *c, const uint8_t tag[16], const MDB_val *val, const void *arg,
                          const struct kr_result_item *ri)
{
    (void)val;
    (void)arg;
    struct vc_tag t;
    kr_err err = vc_tag_get(&c->d->views, c->txn, c->who->tenant, tag, &t);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err; /* a link without its tag */
    struct item it = {.id = tag, .version = t.version, .name = t.name, .name_len = t.name_len};
    put_item(c, ri, &it);
    return KR_OK;
}

/* arg: the tenant's data key; uses c->scratch. */
static kr_err put_attribute_row(struct cmd *c, const uint8_t attr[16], const MDB_val *val,
                                const void *arg, const struct kr_result_item *ri)
{
    struct vc_attribute def;
    if (val->mv_size != 8)
        return KR_ECORRUPT;
    kr_err err = vc_attribute_get(&c->d->views, c->txn, c->who->tenant, attr, &def);
    if (err)
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
    if ((err =
             read_record(c, arg, v_get_u64(val->mv_data), KR_EV_CONTACT_ATTRIBUTE_SET, c->scratch)))
        return err;
    struct item it = {.id = attr,
                      .version = def.version,
                      .name = def.key,
                      .name_len = def.key_len,
                      .type = def.type,
                      .p = c->scratch};
    put_item(c, ri, &it);
    return KR_OK;
}

/* The result of contacts.get, with the tenant's key. */
static kr_err put_contact_get(struct cmd *c, const struct vc_contact *row,
                              const struct kr_data_key *key)
{
    const struct kr_op_def *o = &kr_ops[KR_OP_CONTACTS_GET];
    const uint8_t *contact = arg_id(c, KR_FLD_CONTACT);
    kr_err err = read_record(c, key, row->seq, row->fields_ev, c->scratch);
    if (err)
        return err;
    struct item it = {.id = contact, .version = row->version, .p = c->scratch};
    res_map(c, o->nresult);
    /* The contact's own fields come first: the lists reuse c->scratch. */
    for (uint32_t i = 0; i < o->nresult; i++)
        if (o->result[i].field >= 0)
            put_field(c, o->result[i].field, &it);
    for (uint32_t i = 0; i < o->nresult && !err; i++) {
        const struct kr_result_item *ri = &o->result[i];
        if (ri->field >= 0)
            continue;
        res_keyname(c, ri->list_name);
        KR_ASSERT(ri->nitems > 0);
        if (ri->items[0] == KR_FLD_TAG)
            err = put_contact_rows(c, VIEW_CONTACT_TAGS, contact, put_tag_row, NULL, ri);
        else
            err = put_contact_rows(c, VIEW_ATTRIBUTE_VALUES, contact, put_attribute_row, key, ri);
    }
    return err;
}

kr_err cmd_contacts_get(struct cmd *c)
{
    struct vc_contact row;
    struct kr_data_key key;
    kr_err err = KR_OK;
    if ((err = find_contact(c, &row)) || (err = cmd_key(c, c->who->tenant, false, &key)))
        return err;
    err = put_contact_get(c, &row, &key);
    kr_data_key_wipe(&key);
    return err;
}

kr_err cmd_contacts_list(struct cmd *c)
{
    return list_contacts(c, KR_OP_CONTACTS_LIST, NULL);
}

/* The page is recorded after it is written: if the record fails, the op
 * fails and its result is never sent, so no page leaves unrecorded. */
kr_err cmd_utility_export(struct cmd *c)
{
    uint32_t n = 0;
    uint64_t version = 0;
    kr_err err = list_contacts(c, KR_OP_UTILITY_EXPORT, &n);
    if (err || (err = cmd_stream_version(c, c->who->tenant,
                                         kr_events[KR_EV_UTILITY_EXPORTED].stream_prefix,
                                         c->who->account, &version)))
        return err;
    struct kr_payload *p = cmd_event(c, KR_EV_UTILITY_EXPORTED, c->who->tenant, version);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_ACCOUNT, c->who->account, 16);
    kr_set_u64(p, KR_FLD_RECORDS, n);
    return cmd_commit(c);
}

/* contacts.tag and contacts.untag. */
static kr_err tag_or_untag(struct cmd *c, bool tag)
{
    uint64_t tenant = c->who->tenant;
    struct vc_contact row;
    struct vc_tag t;
    kr_err err = KR_OK;
    if ((err = find_contact(c, &row)) || (err = check_version(c, row.version)) ||
        (err = find_tag(c, &t)))
        return err;
    const uint8_t *contact = arg_id(c, KR_FLD_CONTACT), *tid = arg_id(c, KR_FLD_TAG);
    err = vc_contact_has_tag(&c->d->views, c->txn, tenant, contact, tid);
    if (err != KR_OK && err != KR_ENOTFOUND)
        return err;
    if (tag && err == KR_OK) {
        res_version(c, row.version); /* has it already: nothing to record */
        return KR_OK;
    }
    if (!tag && err == KR_ENOTFOUND)
        return cmd_fail(c, KR_ENOTFOUND, "tag", "the contact does not have this tag");
    if (tag) {
        uint8_t prefix[24];
        uint32_t n;
        v_put_u64(prefix, tenant);
        memcpy(prefix + 8, contact, 16);
        if ((err = vc_count_prefix(&c->d->views, c->txn, VIEW_CONTACT_TAGS, prefix, sizeof prefix,
                                   KR_CONTACT_TAGS_MAX, &n)))
            return err;
        if (n >= KR_CONTACT_TAGS_MAX)
            return cmd_fail(c, KR_ETOOLARGE, "tag", "the contact has the most tags allowed");
    }
    struct kr_payload *p =
        cmd_event(c, tag ? KR_EV_CONTACT_TAGGED : KR_EV_CONTACT_UNTAGGED, tenant, row.version);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_CONTACT, contact, 16);
    kr_set_bytes(p, KR_FLD_TAG, tid, 16);
    if ((err = cmd_commit(c)))
        return err;
    res_version(c, c->ev[0].version);
    return KR_OK;
}

kr_err cmd_contacts_tag(struct cmd *c)
{
    return tag_or_untag(c, true);
}

kr_err cmd_contacts_untag(struct cmd *c)
{
    return tag_or_untag(c, false);
}

/* A real calendar date written YYYY-MM-DD (years 0001..9999). */
static bool date_ok(const uint8_t *s, size_t n)
{
    static const uint8_t days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n != 10 || s[4] != '-' || s[7] != '-')
        return false;
    unsigned f[3] = {0, 0, 0};
    static const uint8_t at[3] = {0, 5, 8}, len[3] = {4, 2, 2};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < len[i]; j++) {
            uint8_t ch = s[at[i] + j];
            if (ch < '0' || ch > '9')
                return false;
            f[i] = f[i] * 10u + (unsigned)(ch - '0');
        }
    unsigned y = f[0], m = f[1], d = f[2];
    if (y < 1 || m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap ? 1u : 0u);
}

/* Whether value v fits attribute type `type`. */
static kr_err check_value(struct cmd *c, int type, const struct kr_value *v)
{
    switch (type) {
    case KR_ATTRIBUTE_TYPE_STRING:
        if (v->kind == KR_VK_STR)
            return KR_OK;
        return cmd_fail(c, KR_EINVAL, "value", "this attribute takes a string");
    case KR_ATTRIBUTE_TYPE_NUMBER:
        if (v->kind == KR_VK_INT || v->kind == KR_VK_FLOAT)
            return KR_OK;
        return cmd_fail(c, KR_EINVAL, "value", "this attribute takes a number");
    case KR_ATTRIBUTE_TYPE_DATE:
        if (v->kind == KR_VK_STR && date_ok(v->p, v->n))
            return KR_OK;
        return cmd_fail(c, KR_EINVAL, "value", "this attribute takes a date (YYYY-MM-DD)");
    case KR_ATTRIBUTE_TYPE_BOOL:
        if (v->kind == KR_VK_BOOL)
            return KR_OK;
        return cmd_fail(c, KR_EINVAL, "value", "this attribute takes a bool");
    default:
        return KR_ECORRUPT;
    }
}

kr_err cmd_contacts_set(struct cmd *c)
{
    uint64_t tenant = c->who->tenant;
    const struct kr_value *key = &c->args->v[KR_FLD_ATTRIBUTE_KEY];
    const struct kr_value *v = &c->args->v[KR_FLD_VALUE];
    struct vc_contact row;
    struct vc_attribute def;
    uint8_t attr[16];
    kr_err err = KR_OK;
    if ((err = find_contact(c, &row)) || (err = check_version(c, row.version)))
        return err;
    err = vc_attribute_by_key(&c->d->views, c->txn, tenant, key->p, key->n, attr);
    if (err == KR_ENOTFOUND)
        return cmd_fail(c, err, "attribute_key", "no such attribute");
    if (err)
        return err;
    if ((err = vc_attribute_get(&c->d->views, c->txn, tenant, attr, &def)))
        return err == KR_ENOTFOUND ? KR_ECORRUPT : err;
    const uint8_t *contact = arg_id(c, KR_FLD_CONTACT);
    if (v->set) {
        if ((err = check_value(c, def.type, v)))
            return err;
    } else {
        uint64_t seq;
        err = vc_attribute_value(&c->d->views, c->txn, tenant, contact, attr, &seq);
        if (err == KR_ENOTFOUND) {
            res_version(c, row.version); /* clearing what is not set: nothing to record */
            return KR_OK;
        }
        if (err)
            return err;
    }
    struct kr_payload *p = cmd_event(c, KR_EV_CONTACT_ATTRIBUTE_SET, tenant, row.version);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_CONTACT, contact, 16);
    kr_set_bytes(p, KR_FLD_ATTRIBUTE, attr, 16);
    if (v->set) {
        switch (v->kind) {
        case KR_VK_STR:
            kr_set_value_str(p, KR_FLD_VALUE, v->p, v->n);
            break;
        case KR_VK_INT:
            kr_set_value_int(p, KR_FLD_VALUE, v->i);
            break;
        case KR_VK_FLOAT:
            kr_set_value_float(p, KR_FLD_VALUE, v->f);
            break;
        default:
            kr_set_value_bool(p, KR_FLD_VALUE, v->b);
        }
    }
    if ((err = cmd_commit(c)))
        return err;
    res_version(c, c->ev[0].version);
    return KR_OK;
}

/* ---- Tags ---- */

/* A tag name taken by a tag other than `self` (NULL: any) is a conflict. */
static kr_err check_name_free(struct cmd *c, const uint8_t *self)
{
    const struct kr_value *name = &c->args->v[KR_FLD_TAG_NAME];
    uint8_t owner[16];
    kr_err err = vc_tag_by_name(&c->d->views, c->txn, c->who->tenant, name->p, name->n, owner);
    if (err == KR_ENOTFOUND)
        return KR_OK;
    if (err)
        return err;
    if (self && memcmp(owner, self, 16) == 0)
        return KR_OK;
    return cmd_fail(c, KR_ECONFLICT, "tag_name", "another tag has this name");
}

kr_err cmd_tags_create(struct cmd *c)
{
    uint8_t id[16];
    kr_err err = KR_OK;
    if ((err = check_name_free(c, NULL)))
        return err;
    cmd_new_id(c, id);
    struct kr_payload *p = cmd_event(c, KR_EV_TAG_CREATED, c->who->tenant, 0);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_TAG, id, 16);
    const struct kr_value *name = &c->args->v[KR_FLD_TAG_NAME];
    kr_set_bytes(p, KR_FLD_TAG_NAME, name->p, name->n);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 2);
    res_bytes(c, KR_FLD_TAG, id, 16);
    res_u64(c, KR_FLD_VERSION, c->ev[0].version);
    return KR_OK;
}

kr_err cmd_tags_rename(struct cmd *c)
{
    struct vc_tag row;
    kr_err err = KR_OK;
    if ((err = find_tag(c, &row)) || (err = check_version(c, row.version)) ||
        (err = check_name_free(c, arg_id(c, KR_FLD_TAG))))
        return err;
    struct kr_payload *p = cmd_event(c, KR_EV_TAG_RENAMED, c->who->tenant, row.version);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_TAG, arg_id(c, KR_FLD_TAG), 16);
    const struct kr_value *name = &c->args->v[KR_FLD_TAG_NAME];
    kr_set_bytes(p, KR_FLD_TAG_NAME, name->p, name->n);
    if ((err = cmd_commit(c)))
        return err;
    res_version(c, c->ev[0].version);
    return KR_OK;
}

kr_err cmd_tags_delete(struct cmd *c)
{
    struct vc_tag row;
    kr_err err = KR_OK;
    if ((err = find_tag(c, &row)) || (err = check_version(c, row.version)))
        return err;
    struct kr_payload *p = cmd_event(c, KR_EV_TAG_DELETED, c->who->tenant, row.version);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_TAG, arg_id(c, KR_FLD_TAG), 16);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 0);
    return KR_OK;
}

kr_err cmd_tags_list(struct cmd *c)
{
    uint8_t ids[KR_PAGE_MAX][16], prefix[8];
    uint32_t n;
    bool more;
    kr_err err = KR_OK;
    v_put_u64(prefix, c->who->tenant);
    if ((err = page_ids(c, VIEW_TAGS, prefix, sizeof prefix, page_limit(c), ids, &n, &more)))
        return err;
    const struct kr_result_item *ri = result_list(KR_OP_TAGS_LIST, 0);
    res_map(c, 2);
    res_keyname(c, ri->list_name);
    msgpack_pack_array(&c->res, n);
    for (uint32_t i = 0; i < n; i++) {
        struct vc_tag t;
        if ((err = vc_tag_get(&c->d->views, c->txn, c->who->tenant, ids[i], &t)))
            return err;
        struct item it = {
            .id = ids[i], .version = t.version, .name = t.name, .name_len = t.name_len};
        put_item(c, ri, &it);
    }
    res_cursor(c, more, n ? ids[n - 1] : NULL, 16);
    return KR_OK;
}

/* ---- Attributes ---- */

kr_err cmd_attributes_define(struct cmd *c)
{
    const struct kr_value *key = &c->args->v[KR_FLD_ATTRIBUTE_KEY];
    uint8_t id[16], prefix[8];
    uint32_t count;
    kr_err err = KR_OK;
    err = vc_attribute_by_key(&c->d->views, c->txn, c->who->tenant, key->p, key->n, id);
    if (err == KR_OK)
        return cmd_fail(c, KR_ECONFLICT, "attribute_key", "already defined");
    if (err != KR_ENOTFOUND)
        return err;
    v_put_u64(prefix, c->who->tenant);
    if ((err = vc_count_prefix(&c->d->views, c->txn, VIEW_ATTRIBUTES, prefix, sizeof prefix,
                               KR_ATTRIBUTES_MAX, &count)))
        return err;
    if (count >= KR_ATTRIBUTES_MAX)
        return cmd_fail(c, KR_ETOOLARGE, "attribute_key",
                        "the tenant has the most attributes allowed");
    cmd_new_id(c, id);
    struct kr_payload *p = cmd_event(c, KR_EV_ATTRIBUTE_DEFINED, c->who->tenant, 0);
    if (!p)
        return KR_ENOMEM;
    kr_set_bytes(p, KR_FLD_ATTRIBUTE, id, 16);
    kr_set_bytes(p, KR_FLD_ATTRIBUTE_KEY, key->p, key->n);
    kr_set_u64(p, KR_FLD_ATTRIBUTE_TYPE, c->args->v[KR_FLD_ATTRIBUTE_TYPE].u);
    if ((err = cmd_commit(c)))
        return err;
    res_map(c, 1);
    res_bytes(c, KR_FLD_ATTRIBUTE, id, 16);
    return KR_OK;
}

kr_err cmd_attributes_list(struct cmd *c)
{
    uint8_t prefix[8];
    uint32_t n, i = 0;
    MDB_cursor *cur;
    MDB_val key, val;
    kr_err err = KR_OK;
    v_put_u64(prefix, c->who->tenant);
    /* Apply keeps a tenant at KR_ATTRIBUTES_MAX definitions, so one reply holds them. */
    if ((err = vc_count_prefix(&c->d->views, c->txn, VIEW_ATTRIBUTES, prefix, sizeof prefix,
                               KR_ATTRIBUTES_MAX, &n)))
        return err;
    const struct kr_result_item *ri = result_list(KR_OP_ATTRIBUTES_LIST, 0);
    res_map(c, 1);
    res_keyname(c, ri->list_name);
    msgpack_pack_array(&c->res, n);
    int rc = mdb_cursor_open(c->txn, c->d->views.db[VIEW_ATTRIBUTES], &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    key = (MDB_val){sizeof prefix, prefix};
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == MDB_SUCCESS && i < n;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT), i++) {
        const uint8_t *id = (const uint8_t *)key.mv_data + sizeof prefix;
        struct vc_attribute def;
        if (key.mv_size != sizeof prefix + 16) {
            err = KR_ECORRUPT;
            break;
        }
        if ((err = vc_attribute_get(&c->d->views, c->txn, c->who->tenant, id, &def)))
            break;
        struct item it = {.id = id,
                          .version = def.version,
                          .name = def.key,
                          .name_len = def.key_len,
                          .type = def.type};
        put_item(c, ri, &it);
    }
    mdb_cursor_close(cur);
    if (!err && i != n)
        err = rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? KR_ECORRUPT : kr_err_from_mdb(rc);
    return err;
}
