/*
 * views.h: the queryable views, kept in the journal's LMDB environment and
 * updated in the same write transaction as each append.
 *
 * Every view is a pure function of the journal: `views_hooks` gives the
 * journal the hooks it calls for each record, and a rebuild (kiroku replay)
 * must give byte-identical databases, which `views_digest` makes checkable.
 * So apply code reads nothing but the record and the views, never the clock,
 * the rng or a key; it sees only a payload's plain fields (ids, enums, times,
 * seqs), never personal data: rows that need personal data keep the seq of
 * the record that holds it, and queries open that record's "pd" with the
 * tenant's key.
 *
 * Keys start with the tenant id (u64 big-endian) wherever a row belongs to a
 * tenant, so a tenant's rows are one key range (erasure drops them; queries
 * cannot wander into another tenant's range). Integers in keys and rows are
 * big-endian. The databases and their layouts:
 *
 *   v.meta            "applied" -> u64 journal size reflected; "format" -> u32;
 *                     "platform" -> u64 the highest `origin` (seq of the
 *                     platform journal) of the records imported from it
 *                     (absent: none; views_platform_origin)
 *   -- tenants and sign-up (v_tenants.c) --
 *   v.tenants         tenant -> tenant row
 *   v.tenant_codes    code -> tenant
 *   v.signups         tenant|application -> sign-up row
 *   -- accounts and sessions (v_accounts.c) --
 *   v.accounts        tenant|account -> account row
 *   v.account_emails  tenant|email_mac -> account
 *   v.sessions        token_hash -> session row (global: a token names its tenant)
 *   v.session_ids     tenant|session -> token_hash
 *   v.account_sessions tenant|account|session -> (empty)
 *   -- contacts, tags, attributes (v_contacts.c) --
 *   v.contacts        tenant|contact -> contact row
 *   v.contact_tags    tenant|contact|tag -> (empty)
 *   v.tag_contacts    tenant|tag|contact -> (empty)
 *   v.tags            tenant|tag -> tag row
 *   v.tag_names       tenant|name -> tag
 *   v.attributes      tenant|attribute -> attribute row
 *   v.attribute_keys  tenant|key -> attribute
 *   v.attribute_values tenant|contact|attribute -> seq of the value's record
 *   -- notices, incidents, outbox (v_notices.c) --
 *   v.notices         notice -> notice row
 *   v.notice_tenants  tenant|notice -> (empty)   (tenant 0: audience all)
 *   v.notice_acks     tenant|account|notice -> time
 *   v.notice_mail     tenant|notice -> (empty): notice-of-change e-mails owed
 *   v.incidents       incident -> incident row
 *   v.incident_tenants tenant|incident -> per-tenant notification row
 *   v.incident_due    deadline|incident|tenant -> (empty): notifications pending
 *   v.incident_emailed incident|tenant -> (empty): tenants e-mailed the notice
 *   v.incident_mail   tenant|incident|template -> (empty): update/resolution e-mails owed
 *   v.incident_acks   incident|tenant|account -> time: who has read an incident's notice
 *   v.reports         tenant|report -> seq
 *   v.outbox          tenant|message -> outbox row
 *   v.outbox_pending  seq -> tenant|message (delivery order)
 *   -- security alerts (v_alerts.c) --
 *   v.alerts          seq of alert.raised -> alert row (list order)
 *   v.alert_ids       alert -> seq of its alert.raised
 *   v.alert_tenants   tenant|seq -> (empty): alerts concerning a tenant (kept
 *                     when the tenant is erased: platform records, ids only)
 *   v.alert_last      rule (u16)|tenant|account -> `seen` of its last alert
 *                     (the scanner raises once per rule, subject and window)
 *   -- audit --
 *   (none here: the journal's own tenant index, tenant|seq, written in the
 *   same transaction as each record, is the per-tenant audit index; see
 *   cmd_audit.c)
 *
 * Threads: apply runs on the journal's writer (or the thread rebuilding);
 * reads take their own read transactions.
 */
#ifndef KR_VIEWS_H
#define KR_VIEWS_H

#include "endian_be.h"
#include "journal.h"
#include "payload.h"

#include <lmdb.h>

enum kr_view {
    VIEW_META,
    VIEW_TENANTS,
    VIEW_TENANT_CODES,
    VIEW_SIGNUPS,
    VIEW_ACCOUNTS,
    VIEW_ACCOUNT_EMAILS,
    VIEW_SESSIONS,
    VIEW_SESSION_IDS,
    VIEW_ACCOUNT_SESSIONS,
    VIEW_CONTACTS,
    VIEW_CONTACT_TAGS,
    VIEW_TAG_CONTACTS,
    VIEW_TAGS,
    VIEW_TAG_NAMES,
    VIEW_ATTRIBUTES,
    VIEW_ATTRIBUTE_KEYS,
    VIEW_ATTRIBUTE_VALUES,
    VIEW_NOTICES,
    VIEW_NOTICE_TENANTS,
    VIEW_NOTICE_ACKS,
    VIEW_NOTICE_MAIL,
    VIEW_INCIDENTS,
    VIEW_INCIDENT_TENANTS,
    VIEW_INCIDENT_DUE,
    VIEW_INCIDENT_EMAILED,
    VIEW_INCIDENT_MAIL,
    VIEW_INCIDENT_ACKS,
    VIEW_REPORTS,
    VIEW_OUTBOX,
    VIEW_OUTBOX_PENDING,
    VIEW_ALERTS,
    VIEW_ALERT_IDS,
    VIEW_ALERT_TENANTS,
    VIEW_ALERT_LAST,
    VIEW__COUNT
};

/* The LMDB name of a view database ("v.contacts"). */
const char *views_name(enum kr_view v);

/* Caller-owned; zero it, then views_init. Holds the database handles and the
 * apply scratch (used by one thread at a time: the writer or a rebuild). */
struct kr_views {
    MDB_dbi db[VIEW__COUNT];
    struct kr_payload *scratch;
    struct jrn_views hooks;
    uint64_t unknown_types; /* records of types the schema does not know (ignored) */
    struct kr_diag corrupt; /* where the views last found stored data corrupt ("" if never) */
};

KR_MUST_CHECK kr_err views_init(struct kr_views *v);
void views_fini(struct kr_views *v);

/* The hooks to pass in jrn_options.views. */
const struct jrn_views *views_hooks(struct kr_views *v);

/* SHA-256 over every key and value of view `which`, in key order:
 * for each entry, klen (u32 BE) | key | vlen (u32 BE) | value. */
KR_MUST_CHECK kr_err views_digest(struct kr_views *v, MDB_txn *txn, enum kr_view which,
                                  uint8_t out[32], uint64_t *entries);

/* Whether some view module applies event ev (every schema event must have one). */
bool views_event_has_area(int ev);

/* Stored view data that does not decode, or names what is not there:
 * returns KR_ECORRUPT with *diag (may be NULL) naming the place, field
 * "view <name>" and why "key <hex>: <why>" (the key's first 32 bytes), and
 * reports the same line on stderr for the operator. Never KR_EINVAL: the
 * caller did nothing wrong. */
KR_MUST_CHECK kr_err views_corrupt(enum kr_view v, const void *key, size_t klen, const char *why,
                                   struct kr_diag *diag);
/* The same for a journal record: field "record <seq>", why "<event>: <why>". */
KR_MUST_CHECK kr_err views_corrupt_record(uint64_t seq, const char *event, const char *why,
                                          struct kr_diag *diag);

/* The highest origin (the platform journal's seq) among the records imported
 * from the platform journal (notice and incident events carrying `origin`)
 * that the views applied, 0 if none: a tenant shard's platform importer
 * resumes after it (api/platform.h). Read under txn. KR_ECORRUPT for a
 * malformed meta entry, LMDB errors. */
KR_MUST_CHECK kr_err views_platform_origin(struct kr_views *v, MDB_txn *txn, uint64_t *origin);

/* ---- Building blocks for the view modules ---- */

/* Context of one apply call. */
struct va {
    struct kr_views *v;
    MDB_txn *txn;
    const struct jrn_record *r;
    const struct kr_payload *p; /* plain fields of the record's event */
    int ev;
};

/* Applies one event of an area; KR_ECONFLICT / KR_EINVAL reject the append
 * (a constraint broken since the command read the views). */
typedef kr_err (*va_fn)(const struct va *a);
kr_err va_tenants(const struct va *a);
kr_err va_accounts(const struct va *a);
kr_err va_contacts(const struct va *a);
kr_err va_notices(const struct va *a);
/* An event imported from the platform journal (its `origin` set): KR_OK
 * after raising v.meta "platform" to its origin, KR_ECONFLICT when the origin
 * is not above it (imported already: the append is refused, so an import
 * happens once whoever tries it again); KR_OK and nothing done without an
 * origin (views.c). */
kr_err va_platform_origin(const struct va *a);
/* Before a tenant's rows go (tenant.erased): the rows of this area that name
 * the tenant past their first key bytes (v.incident_emailed, v.incident_acks), found through
 * the tenant's own v.incident_tenants rows (v_notices.c). */
kr_err va_notices_erase(struct kr_views *v, MDB_txn *txn, uint64_t tenant);
kr_err va_alerts(const struct va *a);
/* A stripped tenant.cancelled record (its header only): the tenant is
 * cancelled at the record's time, so an erasure that stopped after stripping
 * stays due across a rebuild (v_tenants.c). */
kr_err va_tenant_cancelled_stripped(struct kr_views *v, MDB_txn *txn, const struct jrn_record *r);
/* Any other stripped record (its header only): one on an account stream (a
 * login outcome from before sign-in streams, stripped by log retention)
 * still sets its account row's version, so a rebuild agrees with the
 * journal; others change nothing (v_accounts.c). */
kr_err va_account_stripped(struct kr_views *v, MDB_txn *txn, const struct jrn_record *r);

/* Key building: big-endian integers and raw ids appended to a buffer.
 *
 * A key is integers and ids (at most two u64 and 64 bytes of ids and hashes:
 * VK_FIXED_MAX) and at most one name whose length the schema bounds: a tag
 * name or an attribute key after the tenant (v_contacts.c), a tenant code
 * (v_tenants.c). The buffer is sized from the schema, so a wider name field
 * widens it, and one wider than LMDB's key limit does not compile. */
#define VK_FIXED_MAX  (8u + 8u + 64u)
#define VK_MAX2(a, b) ((a) > (b) ? (a) : (b))
#define VK_NAME_MAX                                                                                \
    VK_MAX2(VK_MAX2(KR_FLD_TAG_NAME_MAX, KR_FLD_ATTRIBUTE_KEY_MAX), KR_FLD_TENANT_CODE_MAX)
#define VK_MAX (VK_FIXED_MAX + VK_NAME_MAX)
/* LMDB's key limit (mdb_env_get_maxkeysize with the default MDB_MAXKEYSIZE). */
#define VK_LMDB_KEY_MAX 511u
_Static_assert(VK_MAX <= VK_LMDB_KEY_MAX, "a view key must fit LMDB's key limit");
struct vkey {
    uint8_t b[VK_MAX];
    size_t n;
};
void vk_init(struct vkey *k);
void vk_u64(struct vkey *k, uint64_t x);
void vk_u16(struct vkey *k, uint16_t x);
void vk_bytes(struct vkey *k, const void *p, size_t n);
/* A field's bytes (id, hash, str) from a payload value. */
void vk_val(struct vkey *k, const struct kr_value *v);

/* Big-endian u64 in view keys and rows (journal/endian_be.h under the views'
 * names, which their many callers use). */
static inline void v_put_u64(uint8_t *p, uint64_t x)
{
    kr_put_be64(p, x);
}
static inline uint64_t v_get_u64(const uint8_t *p)
{
    return kr_get_be64(p);
}

/* Thin wrappers translating LMDB codes. get: KR_ENOTFOUND when absent. */
KR_MUST_CHECK kr_err v_put(const struct va *a, enum kr_view db, const struct vkey *k,
                           const void *val, size_t len);
KR_MUST_CHECK kr_err v_del(const struct va *a, enum kr_view db, const struct vkey *k);
KR_MUST_CHECK kr_err v_get(struct kr_views *v, MDB_txn *txn, enum kr_view db, const struct vkey *k,
                           MDB_val *out);
/* Deletes every entry whose key starts with prefix. */
KR_MUST_CHECK kr_err v_del_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t n);

#endif
