/*
 * contacts.h: reading the contact, tag and attribute views (v_contacts.c
 * keeps them; cmd_contacts.c answers the ops over them).
 *
 * Rows hold ids, versions, seqs, times, tag names and attribute keys (none of
 * them personal data). A contact's fields and its attribute values live only
 * in the (encrypted) records the rows point at by seq.
 *
 * Everything returned borrows LMDB memory and is valid until the transaction
 * ends or the next write in it. Errors: KR_ENOTFOUND when there is no such
 * row in the tenant; KR_ECORRUPT for a row of the wrong shape; LMDB errors.
 */
#ifndef KR_CONTACTS_H
#define KR_CONTACTS_H

#include "views.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A contact's row. */
struct vc_contact {
    uint64_t version; /* its stream's version */
    uint64_t seq;     /* the record holding its current fields */
    uint64_t created; /* time of contact.registered (UTC ns) */
    uint64_t updated; /* time of its latest event (UTC ns) */
    int fields_ev;    /* KR_EV_CONTACT_REGISTERED or KR_EV_CONTACT_UPDATED: the type of seq */
};

/* A tag's row; name borrows LMDB memory. */
struct vc_tag {
    uint64_t version;
    const uint8_t *name;
    size_t name_len;
};

/* An attribute definition's row; key borrows LMDB memory. */
struct vc_attribute {
    uint64_t version;
    int type; /* enum kr_enum_attribute_type */
    const uint8_t *key;
    size_t key_len;
};

KR_MUST_CHECK kr_err vc_contact_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                    const uint8_t contact[16], struct vc_contact *out);
KR_MUST_CHECK kr_err vc_tag_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                const uint8_t tag[16], struct vc_tag *out);
/* The tag named name[0..len) in the tenant, into tag. */
KR_MUST_CHECK kr_err vc_tag_by_name(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                    const void *name, size_t len, uint8_t tag[16]);
KR_MUST_CHECK kr_err vc_attribute_get(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                      const uint8_t attribute[16], struct vc_attribute *out);
/* The attribute with key key[0..len) in the tenant, into attribute. */
KR_MUST_CHECK kr_err vc_attribute_by_key(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                         const void *key, size_t len, uint8_t attribute[16]);
/* Whether the contact has the tag (KR_OK: yes; KR_ENOTFOUND: no). */
KR_MUST_CHECK kr_err vc_contact_has_tag(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                        const uint8_t contact[16], const uint8_t tag[16]);
/* The seq of the contact.attribute_set record holding the contact's value of
 * the attribute (KR_ENOTFOUND: no value). */
KR_MUST_CHECK kr_err vc_attribute_value(struct kr_views *v, MDB_txn *txn, uint64_t tenant,
                                        const uint8_t contact[16], const uint8_t attribute[16],
                                        uint64_t *seq);
/* How many entries of view db start with prefix, counting at most `max`
 * (stops there). */
KR_MUST_CHECK kr_err vc_count_prefix(struct kr_views *v, MDB_txn *txn, enum kr_view db,
                                     const void *prefix, size_t n, uint32_t max, uint32_t *count);

#endif
