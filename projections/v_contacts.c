/*
 * v_contacts.c: the views of contacts, tags and attribute definitions and
 * values, applied from contact.*, tag.* and attribute.* events, and the
 * readers of contacts.h.
 *
 * Row layouts (integers big-endian; T = tenant u64, ids 16 bytes):
 *   v.contacts         T|contact -> seq(8) created(8) updated(8) kind(1)
 *                      seq: the contact.registered (kind 0) or contact.updated
 *                      (kind 1) record holding the current fields; created /
 *                      updated: record times of the registration and of the
 *                      latest change of the fields. The contact's version is
 *                      its stream's, read from the journal's stream index by
 *                      the handlers: tagging and attribute values then touch
 *                      only their own rows, which keeps a rebuild fast.
 *   v.contact_tags     T|contact|tag -> (empty)   tags of a contact
 *   v.tag_contacts     T|tag|contact -> (empty)   contacts of a tag, by contact
 *                      id: the index contacts.list pages through
 *   v.tags             T|tag -> version(8) name_len(1) name
 *   v.tag_names        T|name -> tag              (names are unique per tenant)
 *   v.attributes       T|attribute -> version(8) type(1) key_len(1) key
 *                      type: index in the attribute_type enum
 *   v.attribute_keys   T|key -> attribute         (keys are unique per tenant)
 *   v.attribute_values T|contact|attribute -> seq(8) of the
 *                      contact.attribute_set record holding the value; no row
 *                      when the value is cleared.
 *
 * Design notes. Tag names and attribute keys are not personal data and travel
 * in clear, so uniqueness is enforced right here: a name taken by another tag
 * since the command looked is KR_ECONFLICT, which rejects just that append
 * (the command then decides again and reports the name taken). Likewise an
 * event about a contact, tag or attribute that is gone (deleted meanwhile) is
 * KR_ECONFLICT. The only personal field of contact.attribute_set is its
 * value, so apply (which sees plain fields only) knows a value was set by the
 * sealed "pd" being present (p->pd_sealed), and cleared when it is absent.
 * tag.deleted takes the tag off every contact without changing the contacts'
 * versions: it is the tag's event, not theirs.
 */
#include "contacts.h"

#include <string.h>

#define CONTACT_ROW     25
#define KIND_REGISTERED 0
#define KIND_UPDATED    1

/* Rows hold a tag name's and an attribute key's length in one byte. */
_Static_assert(KR_FLD_TAG_NAME_MAX <= UINT8_MAX, "v.tags: name_len is one byte");
_Static_assert(KR_FLD_ATTRIBUTE_KEY_MAX <= UINT8_MAX, "v.attributes: key_len is one byte");

/* ---- Keys ---- */

static void key_tenant_id(struct vkey *k, uint64_t tenant, const uint8_t id[16])
{
    vk_init(k);
    vk_u64(k, tenant);
    vk_bytes(k, id, 16);
}

static void key_tenant_2ids(struct vkey *k, uint64_t tenant, const uint8_t a[16],
                            const uint8_t b[16])
{
    key_tenant_id(k, tenant, a);
    vk_bytes(k, b, 16);
}

static void key_tenant_name(struct vkey *k, uint64_t tenant, const void *name, size_t len)
{
    vk_init(k);
    vk_u64(k, tenant);
    vk_bytes(k, name, len);
}

/* ---- Readers ---- */

kr_err vc_contact_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant, const uint8_t contact[16],
                      struct vc_contact *out)
{
    struct vkey k;
    MDB_val val;
    key_tenant_id(&k, tenant, contact);
    kr_err err = v_get(v, txn, VIEW_CONTACTS, &k, &val);
    if (err)
        return err;
    const uint8_t *b = val.mv_data;
    if (val.mv_size != CONTACT_ROW || b[24] > KIND_UPDATED)
        return KR_ECORRUPT;
    out->version = 0; /* the journal's: see the notes above */
    out->seq = v_get_u64(b);
    out->created = v_get_u64(b + 8);
    out->updated = v_get_u64(b + 16);
    out->fields_ev = b[24] == KIND_REGISTERED ? KR_EV_CONTACT_REGISTERED : KR_EV_CONTACT_UPDATED;
    return KR_OK;
}

kr_err vc_tag_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant, const uint8_t tag[16],
                  struct vc_tag *out)
{
    struct vkey k;
    MDB_val val;
    key_tenant_id(&k, tenant, tag);
    kr_err err = v_get(v, txn, VIEW_TAGS, &k, &val);
    if (err)
        return err;
    const uint8_t *b = val.mv_data;
    if (val.mv_size < 9 || val.mv_size != 9u + b[8])
        return KR_ECORRUPT;
    out->version = v_get_u64(b);
    out->name = b + 9;
    out->name_len = b[8];
    return KR_OK;
}

static kr_err get_id(struct kr_views *v, MDB_txn *txn, enum kr_view db, const struct vkey *k,
                     uint8_t id[16])
{
    MDB_val val;
    kr_err err = v_get(v, txn, db, k, &val);
    if (err)
        return err;
    if (val.mv_size != 16)
        return KR_ECORRUPT;
    memcpy(id, val.mv_data, 16);
    return KR_OK;
}

kr_err vc_tag_by_name(struct kr_views *v, MDB_txn *txn, uint64_t tenant, const void *name,
                      size_t len, uint8_t tag[16])
{
    struct vkey k;
    if (len > kr_fields[KR_FLD_TAG_NAME].max)
        return KR_ENOTFOUND;
    key_tenant_name(&k, tenant, name, len);
    return get_id(v, txn, VIEW_TAG_NAMES, &k, tag);
}

kr_err vc_attribute_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                        const uint8_t attribute[16], struct vc_attribute *out)
{
    struct vkey k;
    MDB_val val;
    key_tenant_id(&k, tenant, attribute);
    kr_err err = v_get(v, txn, VIEW_ATTRIBUTES, &k, &val);
    if (err)
        return err;
    const uint8_t *b = val.mv_data;
    if (val.mv_size < 10 || val.mv_size != 10u + b[9] || b[8] >= KR_ATTRIBUTE_TYPE__COUNT)
        return KR_ECORRUPT;
    out->version = v_get_u64(b);
    out->type = b[8];
    out->key = b + 10;
    out->key_len = b[9];
    return KR_OK;
}

kr_err vc_attribute_by_key(struct kr_views *v, MDB_txn *txn, uint64_t tenant, const void *key,
                           size_t len, uint8_t attribute[16])
{
    struct vkey k;
    if (len > kr_fields[KR_FLD_ATTRIBUTE_KEY].max)
        return KR_ENOTFOUND;
    key_tenant_name(&k, tenant, key, len);
    return get_id(v, txn, VIEW_ATTRIBUTE_KEYS, &k, attribute);
}

kr_err vc_contact_has_tag(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                          const uint8_t contact[16], const uint8_t tag[16])
{
    struct vkey k;
    MDB_val val;
    key_tenant_2ids(&k, tenant, contact, tag);
    return v_get(v, txn, VIEW_CONTACT_TAGS, &k, &val);
}

kr_err vc_attribute_value(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                          const uint8_t contact[16], const uint8_t attribute[16], uint64_t *seq)
{
    struct vkey k;
    MDB_val val;
    key_tenant_2ids(&k, tenant, contact, attribute);
    kr_err err = v_get(v, txn, VIEW_ATTRIBUTE_VALUES, &k, &val);
    if (err)
        return err;
    if (val.mv_size != 8)
        return KR_ECORRUPT;
    *seq = v_get_u64(val.mv_data);
    return KR_OK;
}

kr_err vc_count_prefix(struct kr_views *v, MDB_txn *txn, enum kr_view db, const void *prefix,
                       size_t n, uint32_t max, uint32_t *count)
{
    MDB_cursor *cur;
    MDB_val k = {n, (void *)prefix}, val;
    uint32_t cnt = 0;
    *count = 0;
    int rc = mdb_cursor_open(txn, v->db[db], &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    for (rc = mdb_cursor_get(cur, &k, &val, MDB_SET_RANGE);
         rc == MDB_SUCCESS && cnt < max && k.mv_size >= n && memcmp(k.mv_data, prefix, n) == 0;
         rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT))
        cnt++;
    mdb_cursor_close(cur);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    *count = cnt;
    return KR_OK;
}

/* ---- Apply: contacts ---- */

static kr_err put_contact(const struct va *a, const struct vkey *k, uint64_t seq, uint64_t created,
                          int kind)
{
    uint8_t row[CONTACT_ROW];
    v_put_u64(row, seq);
    v_put_u64(row + 8, created);
    v_put_u64(row + 16, a->r->time_ns);
    row[24] = (uint8_t)kind;
    return v_put(a, VIEW_CONTACTS, k, row, sizeof row);
}

/* Removes a contact's tag links (both directions) and attribute values. */
static kr_err drop_contact_links(const struct va *a, uint64_t tenant, const uint8_t contact[16])
{
    struct vkey pre, k;
    MDB_cursor *cur;
    MDB_val key, val;
    key_tenant_id(&pre, tenant, contact);
    int rc = mdb_cursor_open(a->txn, a->v->db[VIEW_CONTACT_TAGS], &cur);
    if (rc)
        return kr_err_from_mdb(rc);
    key = (MDB_val){pre.n, pre.b};
    kr_err err = KR_OK;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
         rc == MDB_SUCCESS && key.mv_size == pre.n + 16 && memcmp(key.mv_data, pre.b, pre.n) == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        uint8_t tag[16];
        memcpy(tag, (const uint8_t *)key.mv_data + pre.n, 16);
        key_tenant_2ids(&k, tenant, tag, contact);
        if ((err = v_del(a, VIEW_TAG_CONTACTS, &k)))
            break;
    }
    mdb_cursor_close(cur);
    if (err)
        return err;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return kr_err_from_mdb(rc);
    if ((err = v_del_prefix(a->txn, a->v->db[VIEW_CONTACT_TAGS], pre.b, pre.n)))
        return err;
    return v_del_prefix(a->txn, a->v->db[VIEW_ATTRIBUTE_VALUES], pre.b, pre.n);
}

static kr_err apply_contact(const struct va *a)
{
    uint64_t tenant = a->r->tenant;
    const uint8_t *contact = a->p->v[KR_FLD_CONTACT].p;
    struct vc_contact row;
    struct vkey k, l;
    kr_err err;

    key_tenant_id(&k, tenant, contact);
    switch (a->ev) {
    case KR_EV_CONTACT_REGISTERED:
        return put_contact(a, &k, a->r->seq, a->r->time_ns, KIND_REGISTERED);
    case KR_EV_CONTACT_UPDATED:
        /* Later events are about a contact that exists: the journal's
         * version check saw to that (a deletion moves the stream on), and
         * this checks it once more where the row is needed anyway. */
        if ((err = vc_contact_get(a->v, a->txn, tenant, contact, &row)))
            return err == KR_ENOTFOUND ? KR_ECONFLICT : err;
        return put_contact(a, &k, a->r->seq, row.created, KIND_UPDATED);
    case KR_EV_CONTACT_DELETED:
        if ((err = drop_contact_links(a, tenant, contact)))
            return err;
        return v_del(a, VIEW_CONTACTS, &k);
    case KR_EV_CONTACT_TAGGED:
    case KR_EV_CONTACT_UNTAGGED: {
        const uint8_t *tag = a->p->v[KR_FLD_TAG].p;
        key_tenant_2ids(&l, tenant, contact, tag);
        if (a->ev == KR_EV_CONTACT_TAGGED) {
            struct vc_tag t;
            if ((err = vc_tag_get(a->v, a->txn, tenant, tag, &t)))
                return err == KR_ENOTFOUND ? KR_ECONFLICT : err; /* deleted meanwhile */
            if ((err = v_put(a, VIEW_CONTACT_TAGS, &l, "", 0)))
                return err;
            key_tenant_2ids(&l, tenant, tag, contact);
            err = v_put(a, VIEW_TAG_CONTACTS, &l, "", 0);
        } else {
            if ((err = v_del(a, VIEW_CONTACT_TAGS, &l)))
                return err;
            key_tenant_2ids(&l, tenant, tag, contact);
            err = v_del(a, VIEW_TAG_CONTACTS, &l);
        }
        return err;
    }
    case KR_EV_CONTACT_ATTRIBUTE_SET: {
        const uint8_t *attr = a->p->v[KR_FLD_ATTRIBUTE].p;
        struct vc_attribute def;
        if ((err = vc_attribute_get(a->v, a->txn, tenant, attr, &def)))
            return err == KR_ENOTFOUND ? KR_ECONFLICT : err;
        key_tenant_2ids(&l, tenant, contact, attr);
        if (a->p->pd_sealed) { /* the value is there (sealed): see the notes above */
            uint8_t seq[8];
            v_put_u64(seq, a->r->seq);
            err = v_put(a, VIEW_ATTRIBUTE_VALUES, &l, seq, sizeof seq);
        } else {
            err = v_del(a, VIEW_ATTRIBUTE_VALUES, &l);
        }
        return err;
    }
    default:
        return KR_EINVAL;
    }
}

/* ---- Apply: tags ---- */

static kr_err put_tag(const struct va *a, const struct vkey *k, const struct kr_value *name)
{
    uint8_t row[9 + KR_FLD_TAG_NAME_MAX];
    KR_ASSERT(name->n <= KR_FLD_TAG_NAME_MAX); /* the payload decoder checked it */
    v_put_u64(row, a->r->version);
    row[8] = (uint8_t)name->n;
    memcpy(row + 9, name->p, name->n);
    return v_put(a, VIEW_TAGS, k, row, 9u + name->n);
}

/* Claims name for tag: KR_ECONFLICT if another tag has it. */
static kr_err claim_name(const struct va *a, uint64_t tenant, const uint8_t tag[16],
                         const struct kr_value *name)
{
    uint8_t owner[16];
    kr_err err = vc_tag_by_name(a->v, a->txn, tenant, name->p, name->n, owner);
    if (err == KR_OK)
        return memcmp(owner, tag, 16) == 0 ? KR_OK : KR_ECONFLICT;
    if (err != KR_ENOTFOUND)
        return err;
    struct vkey k;
    key_tenant_name(&k, tenant, name->p, name->n);
    return v_put(a, VIEW_TAG_NAMES, &k, tag, 16);
}

static kr_err apply_tag(const struct va *a)
{
    uint64_t tenant = a->r->tenant;
    const uint8_t *tag = a->p->v[KR_FLD_TAG].p;
    const struct kr_value *name = &a->p->v[KR_FLD_TAG_NAME];
    struct vc_tag row;
    struct vkey k, n;
    kr_err err;

    key_tenant_id(&k, tenant, tag);
    if (a->ev == KR_EV_TAG_CREATED) {
        if ((err = claim_name(a, tenant, tag, name)))
            return err;
        return put_tag(a, &k, name);
    }
    if ((err = vc_tag_get(a->v, a->txn, tenant, tag, &row)))
        return err == KR_ENOTFOUND ? KR_ECONFLICT : err;
    switch (a->ev) {
    case KR_EV_TAG_RENAMED:
        if (row.name_len == name->n && memcmp(row.name, name->p, name->n) == 0)
            return put_tag(a, &k, name);
        /* The old name's key first: row.name may move with the writes below. */
        key_tenant_name(&n, tenant, row.name, row.name_len);
        if ((err = claim_name(a, tenant, tag, name)))
            return err;
        if ((err = v_del(a, VIEW_TAG_NAMES, &n)))
            return err;
        return put_tag(a, &k, name);
    case KR_EV_TAG_DELETED: {
        struct vkey pre;
        MDB_cursor *cur;
        MDB_val key, val;
        key_tenant_name(&n, tenant, row.name, row.name_len);
        if ((err = v_del(a, VIEW_TAG_NAMES, &n)))
            return err;
        key_tenant_id(&pre, tenant, tag);
        int rc = mdb_cursor_open(a->txn, a->v->db[VIEW_TAG_CONTACTS], &cur);
        if (rc)
            return kr_err_from_mdb(rc);
        key = (MDB_val){pre.n, pre.b};
        for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
             rc == MDB_SUCCESS && key.mv_size == pre.n + 16 &&
             memcmp(key.mv_data, pre.b, pre.n) == 0;
             rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
            uint8_t contact[16];
            memcpy(contact, (const uint8_t *)key.mv_data + pre.n, 16);
            key_tenant_2ids(&n, tenant, contact, tag);
            if ((err = v_del(a, VIEW_CONTACT_TAGS, &n)))
                break;
        }
        mdb_cursor_close(cur);
        if (err)
            return err;
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            return kr_err_from_mdb(rc);
        if ((err = v_del_prefix(a->txn, a->v->db[VIEW_TAG_CONTACTS], pre.b, pre.n)))
            return err;
        return v_del(a, VIEW_TAGS, &k);
    }
    default:
        return KR_EINVAL;
    }
}

/* ---- Apply: attribute definitions ---- */

static kr_err apply_attribute(const struct va *a)
{
    uint64_t tenant = a->r->tenant;
    const uint8_t *attr = a->p->v[KR_FLD_ATTRIBUTE].p;
    const struct kr_value *key = &a->p->v[KR_FLD_ATTRIBUTE_KEY];
    uint8_t owner[16], row[10 + KR_FLD_ATTRIBUTE_KEY_MAX], pre[8];
    struct vkey k;
    uint32_t count;
    kr_err err;

    if (a->ev != KR_EV_ATTRIBUTE_DEFINED)
        return KR_EINVAL;
    err = vc_attribute_by_key(a->v, a->txn, tenant, key->p, key->n, owner);
    if (err == KR_OK)
        return KR_ECONFLICT; /* the key was taken meanwhile */
    if (err != KR_ENOTFOUND)
        return err;
    v_put_u64(pre, tenant);
    if ((err = vc_count_prefix(a->v, a->txn, VIEW_ATTRIBUTES, pre, 8, KR_ATTRIBUTES_MAX, &count)))
        return err;
    if (count >= KR_ATTRIBUTES_MAX)
        return KR_ECONFLICT; /* the last free place was taken meanwhile */
    key_tenant_name(&k, tenant, key->p, key->n);
    if ((err = v_put(a, VIEW_ATTRIBUTE_KEYS, &k, attr, 16)))
        return err;
    KR_ASSERT(key->n <= KR_FLD_ATTRIBUTE_KEY_MAX); /* the payload decoder checked it */
    v_put_u64(row, a->r->version);
    row[8] = (uint8_t)a->p->v[KR_FLD_ATTRIBUTE_TYPE].u;
    row[9] = (uint8_t)key->n;
    memcpy(row + 10, key->p, key->n);
    key_tenant_id(&k, tenant, attr);
    return v_put(a, VIEW_ATTRIBUTES, &k, row, 10u + key->n);
}

kr_err va_contacts(const struct va *a)
{
    switch (a->ev) {
    case KR_EV_CONTACT_REGISTERED:
    case KR_EV_CONTACT_UPDATED:
    case KR_EV_CONTACT_DELETED:
    case KR_EV_CONTACT_TAGGED:
    case KR_EV_CONTACT_UNTAGGED:
    case KR_EV_CONTACT_ATTRIBUTE_SET:
        return apply_contact(a);
    case KR_EV_TAG_CREATED:
    case KR_EV_TAG_RENAMED:
    case KR_EV_TAG_DELETED:
        return apply_tag(a);
    case KR_EV_ATTRIBUTE_DEFINED:
        return apply_attribute(a);
    default:
        return KR_EINVAL;
    }
}
