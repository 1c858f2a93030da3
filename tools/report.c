/*
 * report.c: `kiroku audit report` (see report.h).
 *
 * Design notes
 * - Two passes over the journal's tenant index: the tenant's own records,
 *   then the platform's (tenant 0: notices and incidents, kept when they
 *   concern the tenant). Each event of interest becomes a row (time, seq,
 *   section, text); incidents also gather their notification to this tenant.
 *   Rows are sorted by seq, which is also time order, for the timeline.
 * - Bounds: at most RPT_ROWS_MAX rows are kept (the rest are counted and
 *   said to be left out), RPT_ACCOUNTS_MAX accounts and RPT_INCIDENTS_MAX
 *   incidents are remembered.
 * - Personal data: only account e-mail addresses are unsealed (with the
 *   tenant's data key, from the keystore opened read-only in spirit: nothing
 *   is created); every other personal field stays sealed.
 * - Escaping: every text that comes from the journal goes through md_text or
 *   html_text, in every place it is written.
 */
#include "report.h"

#include "cli.h"
#include "journal.h"
#include "jst.h"
#include "keystore.h"
#include "mp.h"
#include "payload.h"
#include "schema.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Rows kept for the report's lists and timeline: an auditor reads the
 * first thousands; a larger history is summarised by the counts. */
#define RPT_ROWS_MAX 20000u
/* Accounts whose e-mail and role the report remembers (about 330 bytes
 * each): far more than one business has people. */
#define RPT_ACCOUNTS_MAX 10000u
/* Incidents affecting the tenant that the report follows. */
#define RPT_INCIDENTS_MAX 10000u
#define RPT_TEXT_MAX      400u
#define HOUR_NS           (3600ull * 1000000000ull)
#define DEADLINE_NS       (72ull * HOUR_NS)

enum section {
    S_ACCOUNTS,
    S_LOGINS,
    S_INCIDENTS,
    S_NOTICES,
    S_TENANT, /* exports, cancellation and erasure */
    S_OPS,    /* the platform's: service starts, operators' work, backups */
    S__COUNT
};

static const char *const section_title[S__COUNT] = {
    "Accounts and permissions",          "Logins and lockouts",
    "Incidents and their notices",       "Notices published",
    "Exports, cancellation and erasure", "Operations: service starts, operators' work, backups"};
static const char *const section_class[S__COUNT] = {"acc",    "login",  "inc",
                                                    "notice", "tenant", "ops"};

struct row {
    uint64_t seq, time;
    enum section s;
    char what[64]; /* the event, for people */
    char text[RPT_TEXT_MAX];
};

struct account {
    uint8_t id[16];
    char email[KR_FLD_EMAIL_MAX + 1];
    int role;
    uint64_t ok, failed, locks;
    bool deleted;
};

struct incident {
    uint8_t id[16];
    char title[KR_FLD_TITLE_MAX + 1];
    int severity;
    uint64_t detected, deadline, opened_seq;
    uint64_t notified; /* first notification of this tenant, 0 = none */
    uint64_t resolved;
    bool affects;
};

struct rpt {
    const struct rpt_options *o;
    struct journal *j;
    struct kr_keystore *ks;
    struct kr_data_key key;
    bool have_key, key_destroyed;
    struct kr_payload *p;
    struct row *rows;
    size_t nrows, dropped;
    struct account *acc;
    size_t nacc;
    struct incident *inc;
    size_t ninc;
    char tenant_code[KR_FLD_TENANT_CODE_MAX + 1];
    uint64_t provisioned, cancelled, erased;
    uint64_t count[S__COUNT];
    uint64_t logins_ok, logins_failed, logins_unknown, lockouts, denied, records;
    uint64_t notices, exports;
};

static void hex8(char out[17], const uint8_t *id)
{
    for (size_t i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static struct account *account_find(struct rpt *r, const uint8_t id[16])
{
    for (size_t i = 0; i < r->nacc; i++)
        if (memcmp(r->acc[i].id, id, 16) == 0)
            return &r->acc[i];
    return NULL;
}

/* "3f2a…(e-mail)" for an account id. */
static void account_label(struct rpt *r, const uint8_t id[16], char *out, size_t cap)
{
    char h[17];
    hex8(h, id);
    struct account *a = account_find(r, id);
    if (a && a->email[0])
        snprintf(out, cap, "%s <%s>", h, a->email);
    else
        snprintf(out, cap, "%s", h);
}

static void add_row(struct rpt *r, const struct jrn_record *rec, enum section s, const char *what,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void add_row(struct rpt *r, const struct jrn_record *rec, enum section s, const char *what,
                    const char *fmt, ...)
{
    r->count[s]++;
    if (r->nrows == RPT_ROWS_MAX) {
        r->dropped++;
        return;
    }
    struct row *w = &r->rows[r->nrows++];
    w->seq = rec->seq;
    w->time = rec->time_ns;
    w->s = s;
    snprintf(w->what, sizeof w->what, "%s", what);
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    vsnprintf(w->text, sizeof w->text, fmt, ap);
    va_end(ap);
}

static void perms_text(uint64_t mask, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < kr_enums[KR_ENUM_PERMISSION].count; i++) {
        if (!((mask >> i) & 1))
            continue;
        int w = snprintf(out + n, cap - n, "%s%s", n ? ", " : "",
                         kr_enums[KR_ENUM_PERMISSION].values[i]);
        if (w < 0 || (size_t)w >= cap - n)
            break;
        n += (size_t)w;
    }
    if (n == 0)
        snprintf(out, cap, "none");
}

static const char *enum_name(int en, uint64_t v)
{
    return v < kr_enums[en].count ? kr_enums[en].values[v] : "?";
}

static bool listed(const struct kr_value *audience, const struct kr_value *tenants, uint64_t t)
{
    if (audience->set && audience->u == KR_AUDIENCE_ALL)
        return true;
    const uint64_t *l = (const uint64_t *)(const void *)tenants->p;
    for (uint32_t i = 0; tenants->set && i < tenants->n; i++)
        if (l[i] == t)
            return true;
    return false;
}

static struct incident *incident_find(struct rpt *r, const uint8_t id[16])
{
    for (size_t i = 0; i < r->ninc; i++)
        if (memcmp(r->inc[i].id, id, 16) == 0)
            return &r->inc[i];
    return NULL;
}

/* ---- The tenant's own records ---- */

/* The tenant's life: provisioning, cancellation, erasure, exports, and
 * what it did about notices and incidents. False for any other event. */
static bool tenant_lifecycle_record(struct rpt *r, const struct jrn_record *rec, int ev)
{
    const struct kr_value *v = r->p->v;
    char who[320], buf[128];
    switch (ev) {
    case KR_EV_TENANT_PROVISIONED:
        r->provisioned = rec->time_ns;
        snprintf(r->tenant_code, sizeof r->tenant_code, "%.*s", (int)v[KR_FLD_TENANT_CODE].n,
                 (const char *)v[KR_FLD_TENANT_CODE].p);
        add_row(r, rec, S_TENANT, "tenant provisioned", "tenant code %s", r->tenant_code);
        return true;
    case KR_EV_TENANT_CANCELLED:
        r->cancelled = rec->time_ns;
        add_row(r, rec, S_TENANT, "tenant cancelled", "by %.*s; erasure due within 30 days",
                (int)rec->actor_len, rec->actor);
        return true;
    case KR_EV_TENANT_ERASED:
        r->erased = rec->time_ns;
        add_row(r, rec, S_TENANT, "tenant erased",
                "data key destroyed, personal data no longer readable");
        return true;
    case KR_EV_NOTICE_ACKNOWLEDGED:
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        hex8(buf, v[KR_FLD_NOTICE].p);
        add_row(r, rec, S_NOTICES, "notice read", "notice %s acknowledged by %s", buf, who);
        return true;
    case KR_EV_AUDIT_EXPORTED:
        r->exports++;
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        add_row(r, rec, S_TENANT, "export taken",
                "by %s: the tenant's records from seq %" PRIu64 " to %" PRIu64, who,
                v[KR_FLD_FROM_SEQ].u, v[KR_FLD_TO_SEQ].u);
        return true;
    case KR_EV_INCIDENT_REPORTED:
        hex8(buf, v[KR_FLD_REPORT].p);
        add_row(r, rec, S_INCIDENTS, "incident reported by the tenant",
                "report %s, severity %s, by %.*s", buf,
                enum_name(KR_ENUM_SEVERITY, v[KR_FLD_SEVERITY].u), (int)rec->actor_len, rec->actor);
        return true;
    default:
        return false;
    }
}

/* Accounts and their permissions. False for any other event. */
static bool tenant_account_record(struct rpt *r, const struct jrn_record *rec, int ev)
{
    const struct kr_value *v = r->p->v;
    char who[320], buf[128];
    switch (ev) {
    case KR_EV_ACCOUNT_CREATED: {
        struct account *a = account_find(r, v[KR_FLD_ACCOUNT].p);
        if (!a && r->nacc < RPT_ACCOUNTS_MAX) {
            a = &r->acc[r->nacc++];
            memset(a, 0, sizeof *a);
            memcpy(a->id, v[KR_FLD_ACCOUNT].p, 16);
        }
        if (a) {
            a->role = (int)v[KR_FLD_ROLE].u;
            if (v[KR_FLD_EMAIL].set)
                snprintf(a->email, sizeof a->email, "%.*s", (int)v[KR_FLD_EMAIL].n,
                         (const char *)v[KR_FLD_EMAIL].p);
            else
                snprintf(a->email, sizeof a->email, "%s",
                         r->key_destroyed ? "(erased)" : "(sealed)");
        }
        perms_text(v[KR_FLD_PERMISSIONS].u, buf, sizeof buf);
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        add_row(r, rec, S_ACCOUNTS, "account created", "%s, role %s, permissions: %s", who,
                enum_name(KR_ENUM_ROLE, v[KR_FLD_ROLE].u), buf);
        return true;
    }
    case KR_EV_ACCOUNT_DELETED: {
        struct account *a = account_find(r, v[KR_FLD_ACCOUNT].p);
        if (a)
            a->deleted = true;
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        add_row(r, rec, S_ACCOUNTS, "account deleted", "%s", who);
        return true;
    }
    case KR_EV_ACCOUNT_PASSWORD_CHANGED:
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        add_row(r, rec, S_ACCOUNTS, "password changed", "%s", who);
        return true;
    case KR_EV_ACCOUNT_PERMISSIONS_GRANTED:
    case KR_EV_ACCOUNT_PERMISSIONS_REVOKED:
        perms_text(v[KR_FLD_PERMISSIONS].u, buf, sizeof buf);
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        add_row(r, rec, S_ACCOUNTS,
                ev == KR_EV_ACCOUNT_PERMISSIONS_GRANTED ? "permissions granted"
                                                        : "permissions revoked",
                "%s: %s", who, buf);
        return true;
    default:
        return false;
    }
}

/* Logins, lockouts and refused ops. False for any other event. */
static bool tenant_login_record(struct rpt *r, const struct jrn_record *rec, int ev)
{
    const struct kr_value *v = r->p->v;
    char who[320];
    switch (ev) {
    case KR_EV_ACCOUNT_LOCKED: {
        struct account *a = account_find(r, v[KR_FLD_ACCOUNT].p);
        if (a)
            a->locks++;
        r->lockouts++;
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        add_row(r, rec, S_LOGINS, "account locked", "%s (%s)", who,
                enum_name(KR_ENUM_LOCK_REASON, v[KR_FLD_LOCK_REASON].u));
        return true;
    }
    case KR_EV_ACCOUNT_UNLOCKED:
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        add_row(r, rec, S_LOGINS, "account unlocked", "%s", who);
        return true;
    case KR_EV_ACCOUNT_LOGIN_SUCCEEDED: {
        struct account *a = account_find(r, v[KR_FLD_ACCOUNT].p);
        if (a)
            a->ok++;
        r->logins_ok++;
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        add_row(r, rec, S_LOGINS, "login", "%s", who);
        return true;
    }
    case KR_EV_ACCOUNT_LOGIN_FAILED: {
        struct account *a = account_find(r, v[KR_FLD_ACCOUNT].p);
        if (a)
            a->failed++;
        r->logins_failed++;
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        add_row(r, rec, S_LOGINS, "login failed", "%s, %" PRIu64 " failure(s) in a row", who,
                v[KR_FLD_FAILURES].u);
        return true;
    }
    case KR_EV_LOGIN_UNKNOWN:
        r->logins_unknown++;
        add_row(r, rec, S_LOGINS, "login failed", "no such account");
        return true;
    case KR_EV_ACCESS_DENIED:
        r->denied++;
        account_label(r, v[KR_FLD_ACCOUNT].p, who, sizeof who);
        add_row(r, rec, S_LOGINS, "access denied", "%s tried %.*s", who, (int)v[KR_FLD_OP].n,
                (const char *)v[KR_FLD_OP].p);
        return true;
    default:
        return false;
    }
}

/* One of the tenant's own records, into the counts and rows. */
static void tenant_record(struct rpt *r, const struct jrn_record *rec, int ev)
{
    if (!tenant_lifecycle_record(r, rec, ev) && !tenant_account_record(r, rec, ev))
        tenant_login_record(r, rec, ev);
}

/* ---- The platform's records ---- */

static void platform_record(struct rpt *r, const struct jrn_record *rec, int ev)
{
    const struct kr_value *v = r->p->v;
    char id[17];
    switch (ev) {
    case KR_EV_NOTICE_PUBLISHED:
        if (!listed(&v[KR_FLD_AUDIENCE], &v[KR_FLD_TENANTS], r->o->tenant))
            return;
        r->notices++;
        hex8(id, v[KR_FLD_NOTICE].p);
        {
            char eff[JST_LEN + 1];
            jst_format(v[KR_FLD_EFFECTIVE].u, eff);
            add_row(r, rec, S_NOTICES, "notice published", "%s \"%.*s\" (%s), effective %s", id,
                    (int)v[KR_FLD_TITLE].n, (const char *)v[KR_FLD_TITLE].p,
                    enum_name(KR_ENUM_NOTICE_KIND, v[KR_FLD_NOTICE_KIND].u), eff);
        }
        break;
    case KR_EV_INCIDENT_OPENED: {
        if (!listed(&v[KR_FLD_AUDIENCE], &v[KR_FLD_TENANTS], r->o->tenant) ||
            r->ninc == RPT_INCIDENTS_MAX)
            return;
        struct incident *in = &r->inc[r->ninc++];
        memset(in, 0, sizeof *in);
        memcpy(in->id, v[KR_FLD_INCIDENT].p, 16);
        snprintf(in->title, sizeof in->title, "%.*s", (int)v[KR_FLD_TITLE].n,
                 (const char *)v[KR_FLD_TITLE].p);
        in->severity = (int)v[KR_FLD_SEVERITY].u;
        in->detected = v[KR_FLD_DETECTED].u;
        in->deadline = v[KR_FLD_DEADLINE].u;
        in->opened_seq = rec->seq;
        in->affects = true;
        hex8(id, in->id);
        char d[JST_LEN + 1], dl[JST_LEN + 1];
        jst_format(in->detected, d);
        jst_format(in->deadline, dl);
        add_row(r, rec, S_INCIDENTS, "incident opened",
                "%s \"%s\" (%s, %s), detected %s, notice due by %s", id, in->title,
                enum_name(KR_ENUM_SEVERITY, v[KR_FLD_SEVERITY].u),
                enum_name(KR_ENUM_INCIDENT_SCOPE, v[KR_FLD_INCIDENT_SCOPE].u), d, dl);
        break;
    }
    case KR_EV_INCIDENT_NOTIFIED: {
        struct incident *in = incident_find(r, v[KR_FLD_INCIDENT].p);
        if (!in || v[KR_FLD_TENANT].u != r->o->tenant)
            return;
        bool first = in->notified == 0;
        if (first)
            in->notified = rec->time_ns;
        hex8(id, in->id);
        add_row(r, rec, S_INCIDENTS, "tenant notified", "incident %s by %s: %s", id,
                enum_name(KR_ENUM_CHANNEL, v[KR_FLD_CHANNEL].u),
                !first                         ? "again"
                : rec->time_ns <= in->deadline ? "within the 72 hours"
                                               : "after the 72-hour deadline (missed)");
        break;
    }
    case KR_EV_INCIDENT_UPDATED: {
        struct incident *in = incident_find(r, v[KR_FLD_INCIDENT].p);
        if (!in)
            return;
        hex8(id, in->id);
        add_row(r, rec, S_INCIDENTS, "incident updated", "%s, severity %s", id,
                enum_name(KR_ENUM_SEVERITY, v[KR_FLD_SEVERITY].u));
        break;
    }
    case KR_EV_INCIDENT_RESOLVED: {
        struct incident *in = incident_find(r, v[KR_FLD_INCIDENT].p);
        if (!in)
            return;
        in->resolved = rec->time_ns;
        hex8(id, in->id);
        add_row(r, rec, S_INCIDENTS, "incident resolved", "%s", id);
        break;
    }
    default:
        break;
    }
}

/* ---- The platform's operations log ----
 *
 * Service starts, operators' maintenance records and daily backups are
 * platform records whose payloads hold only plain fields (no "pd"). They are
 * read by type name and their fields by key, so the report shows them
 * whatever the schema's numbering. */

/* The str (or uint, printed) value of key `key` in a plain payload map. */
static bool plain_field(const struct jrn_record *rec, const char *key, char *out, size_t cap)
{
    struct kr_mp_reader rd;
    uint32_t n;
    out[0] = '\0';
    if (rec->payload_stripped)
        return false;
    kr_mp_reader_init(&rd, rec->payload, rec->payload_len, true);
    if (kr_mp_read_map(&rd, &n) || n > 64)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        size_t kl, vl;
        uint64_t u;
        if (kr_mp_read_str(&rd, &k, &kl))
            return false;
        bool want = kl == strlen(key) && memcmp(k, key, kl) == 0;
        if (kr_mp_peek(&rd) == KR_MP_STR) {
            if (kr_mp_read_str(&rd, &v, &vl))
                return false;
            if (want) {
                snprintf(out, cap, "%.*s", (int)(vl < cap ? vl : cap - 1), v);
                return true;
            }
        } else if (kr_mp_peek(&rd) == KR_MP_UINT) {
            if (kr_mp_read_uint(&rd, &u))
                return false;
            if (want) {
                snprintf(out, cap, "%" PRIu64, u);
                return true;
            }
        } else if (kr_mp_check(&rd, 4, 2048)) {
            return false;
        }
    }
    return false;
}

static bool type_is(const struct jrn_record *rec, const char *t)
{
    return rec->type_len == strlen(t) && memcmp(rec->type, t, rec->type_len) == 0;
}

/* True if rec was one of the operations records (and a row was added). */
static bool ops_record(struct rpt *r, const struct jrn_record *rec)
{
    char a[300], b[300];
    const char *gone = "(details removed after the retention period)";
    if (type_is(rec, "serve.started")) {
        plain_field(rec, "kiroku_version", a, sizeof a);
        plain_field(rec, "previous_version", b, sizeof b);
        if (rec->payload_stripped)
            add_row(r, rec, S_OPS, "service started", "%s", gone);
        else if (b[0] && strcmp(a, b) != 0)
            add_row(r, rec, S_OPS, "service started", "kiroku %s (upgraded from %s)", a, b);
        else
            add_row(r, rec, S_OPS, "service started", "kiroku %s", a);
    } else if (type_is(rec, "maintenance.recorded")) {
        plain_field(rec, "work", a, sizeof a);
        plain_field(rec, "host", b, sizeof b);
        if (rec->payload_stripped)
            add_row(r, rec, S_OPS, "maintenance", "by %.*s %s", (int)rec->actor_len, rec->actor,
                    gone);
        else
            add_row(r, rec, S_OPS, "maintenance", "by %.*s on %s: %s", (int)rec->actor_len,
                    rec->actor, b, a);
    } else if (type_is(rec, "backup.completed")) {
        plain_field(rec, "generation", a, sizeof a);
        plain_field(rec, "last_seq", b, sizeof b);
        add_row(r, rec, S_OPS, "backup completed", "generation %s, up to seq %s", a, b);
    } else if (type_is(rec, "backup.failed")) {
        plain_field(rec, "reason", a, sizeof a);
        add_row(r, rec, S_OPS, "backup FAILED", "%s", rec->payload_stripped ? gone : a);
    } else {
        return false;
    }
    return true;
}

/* Reads every record of `tenant` and hands the ones of known event types,
 * decoded, to fn. */
static kr_err scan(struct rpt *r, uint64_t tenant,
                   void (*fn)(struct rpt *, const struct jrn_record *, int))
{
    struct jrn_query q = {.kind = JRN_Q_TENANT, .tenant = tenant, .from = 1};
    struct jrn_cursor *cur;
    kr_err err = jrn_cursor_new(r->j, &q, &cur);
    if (err)
        return err;
    struct jrn_record rec;
    while ((err = jrn_cursor_next(cur, &rec)) == KR_OK) {
        if (tenant)
            r->records++;
        else if (ops_record(r, &rec))
            continue;
        int ev = kr_event_lookup(rec.type, rec.type_len);
        if (ev < 0 || rec.payload_stripped)
            continue;
        const struct kr_data_key *key = tenant && r->have_key ? &r->key : NULL;
        /* Only the e-mail of accounts is needed: other events stay sealed. */
        if (ev != KR_EV_ACCOUNT_CREATED)
            key = NULL;
        if (kr_event_decode(ev, &rec, key, r->p, NULL) != KR_OK &&
            (!key || kr_event_decode(ev, &rec, NULL, r->p, NULL) != KR_OK))
            continue;
        fn(r, &rec, ev);
    }
    jrn_cursor_free(cur);
    return err == KR_ENOTFOUND ? KR_OK : err;
}

static int row_cmp(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ---- Output ---- */

/* Markdown: the characters that make inline markup, links, HTML or table
 * cells are escaped; newlines and control characters become spaces. Text is
 * never written at the start of a line, where '#', '-' or '+' would count. */
static void md_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            fputc(' ', f);
        else if (strchr("\\`*_[]<>|~&", c))
            fprintf(f, "\\%c", c);
        else
            fputc(c, f);
    }
}

static void html_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(c < 0x20 || c == 0x7f ? ' ' : c, f);
        }
    }
}

static void text(FILE *f, bool html, const char *s)
{
    if (html)
        html_text(f, s);
    else
        md_text(f, s);
}

/* The verdict on an incident's 72-hour notice to this tenant. */
static const char *incident_verdict(const struct incident *in, uint64_t now, char *buf, size_t cap)
{
    if (in->notified)
        return in->notified <= in->deadline ? "met" : "MISSED (notified late)";
    if (now > in->deadline)
        return "MISSED (not notified)";
    snprintf(buf, cap, "open: due in %" PRIu64 " h",
             (uint64_t)((in->deadline - now + HOUR_NS - 1) / HOUR_NS));
    return buf;
}

static const char css[] =
    "body{font-family:system-ui,-apple-system,'Hiragino Sans','Noto Sans JP',sans-serif;"
    "margin:2em;color:#111;line-height:1.4}"
    "h1{font-size:1.5em;border-bottom:2px solid #333}h2{font-size:1.2em;margin-top:1.5em;"
    "border-bottom:1px solid #999}"
    "table{border-collapse:collapse;width:100%;font-size:.9em}"
    "th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}"
    "th{background:#eee}.missed{color:#b00;font-weight:bold}.met{color:#070}"
    ".timeline{list-style:none;margin:0;padding:0 0 0 1.2em;border-left:3px solid #888}"
    ".timeline li{position:relative;margin:.4em 0;padding-left:.6em;break-inside:avoid;"
    "page-break-inside:avoid}"
    ".timeline li:before{content:'';position:absolute;left:-1.65em;top:.35em;width:.7em;"
    "height:.7em;border-radius:50%;background:#888}"
    ".timeline li.acc:before{background:#2a6}.timeline li.login:before{background:#36c}"
    ".timeline li.inc:before{background:#c33}.timeline li.notice:before{background:#c90}"
    ".timeline li.tenant:before{background:#639}.timeline li.ops:before{background:#777}"
    ".t{font-family:ui-monospace,monospace;color:#444;margin-right:.6em}.w{font-weight:bold;"
    "margin-right:.6em}.meta{color:#555;font-size:.9em}"
    "@media print{body{margin:1cm;font-size:10pt}h2{page-break-after:avoid}"
    "tr,li{page-break-inside:avoid}a{color:inherit;text-decoration:none}}";

/* The title and what the report was made from. */
static void report_head(const struct rpt *r, FILE *f, bool html)
{
    uint64_t now = r->o->now_ns;
    char t[JST_LEN + 1], buf[512];
    struct jrn_info info;
    jrn_get_info(r->j, &info);
    jst_format(now, t);
    snprintf(buf, sizeof buf, "Audit report: tenant %" PRIu64 "%s%s%s", r->o->tenant,
             r->tenant_code[0] ? " (" : "", r->tenant_code, r->tenant_code[0] ? ")" : "");
    if (html) {
        fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>", f);
        html_text(f, buf);
        fprintf(f, "</title>\n<style>%s</style>\n</head><body>\n<h1>", css);
        html_text(f, buf);
        fputs("</h1>\n<p class=\"meta\">", f);
    } else {
        fputs("# ", f);
        md_text(f, buf);
        fputs("\n\n", f);
    }
    snprintf(buf, sizeof buf,
             "Made %s from journal %s (%" PRIu64 " records; %" PRIu64
             " of this tenant). All times are Japan Standard Time (UTC+9).",
             t, info.origin, info.size, r->records);
    text(f, html, buf);
    fputs(html ? "</p>\n<p class=\"meta\">" : "\n\n", f);
    if (r->provisioned) {
        jst_format(r->provisioned, t);
        snprintf(buf, sizeof buf, "Provisioned %s.", t);
        text(f, html, buf);
    }
    if (r->cancelled) {
        jst_format(r->cancelled, t);
        snprintf(buf, sizeof buf, " Cancelled %s.", t);
        text(f, html, buf);
    }
    if (r->erased) {
        jst_format(r->erased, t);
        snprintf(buf, sizeof buf, " Erased %s.", t);
        text(f, html, buf);
    }
    fputs(html ? "</p>\n" : "\n\n", f);
}

/* The counts, and a warning when rows were dropped. */
static void report_summary(const struct rpt *r, FILE *f, bool html)
{
    uint64_t now = r->o->now_ns;
    char buf[512];
    size_t met = 0, missed = 0, open = 0;
    for (size_t i = 0; i < r->ninc; i++) {
        char vb[64];
        const char *vd = incident_verdict(&r->inc[i], now, vb, sizeof vb);
        if (strcmp(vd, "met") == 0)
            met++;
        else if (strncmp(vd, "MISSED", 6) == 0)
            missed++;
        else
            open++;
    }
    snprintf(buf, sizeof buf,
             "Accounts: %zu; account and permission changes: %" PRIu64 ". Logins: %" PRIu64
             " succeeded, %" PRIu64 " failed, %" PRIu64 " for unknown accounts; lockouts: %" PRIu64
             "; refused ops: %" PRIu64 ". Incidents affecting the tenant: %zu (72-hour notice "
             "met %zu, missed %zu, open %zu). Notices published to the tenant: %" PRIu64
             ". Exports taken by auditors: %" PRIu64 ".",
             r->nacc, r->count[S_ACCOUNTS], r->logins_ok, r->logins_failed, r->logins_unknown,
             r->lockouts, r->denied, r->ninc, met, missed, open, r->notices, r->exports);
    fputs(html ? "<h2>Summary</h2>\n<p>" : "## Summary\n\n", f);
    text(f, html, buf);
    fputs(html ? "</p>\n" : "\n\n", f);
    if (r->dropped) {
        snprintf(buf, sizeof buf,
                 "Only the first %u events are listed below; %zu more are counted above.",
                 RPT_ROWS_MAX, r->dropped);
        fputs(html ? "<p class=\"missed\">" : "**", f);
        text(f, html, buf);
        fputs(html ? "</p>\n" : "**\n\n", f);
    }
}

/* The table of accounts. */
static void report_accounts(const struct rpt *r, FILE *f, bool html)
{
    fputs(html ? "<h2>Accounts</h2>\n<table><tr><th>account</th><th>e-mail</th><th>role</th>"
                 "<th>logins</th><th>failed</th><th>locks</th><th>state</th></tr>\n"
               : "## Accounts\n\n| account | e-mail | role | logins | failed | locks | state "
                 "|\n|---|---|---|---|---|---|---|\n",
          f);
    for (size_t i = 0; i < r->nacc; i++) {
        const struct account *a = &r->acc[i];
        char h[17];
        hex8(h, a->id);
        const char *cells[7];
        char n1[24], n2[24], n3[24];
        snprintf(n1, sizeof n1, "%" PRIu64, a->ok);
        snprintf(n2, sizeof n2, "%" PRIu64, a->failed);
        snprintf(n3, sizeof n3, "%" PRIu64, a->locks);
        cells[0] = h;
        cells[1] = a->email;
        cells[2] = enum_name(KR_ENUM_ROLE, (uint64_t)a->role);
        cells[3] = n1;
        cells[4] = n2;
        cells[5] = n3;
        cells[6] = a->deleted ? "deleted" : "active";
        fputs(html ? "<tr>" : "|", f);
        for (int c = 0; c < 7; c++) {
            fputs(html ? "<td>" : " ", f);
            text(f, html, cells[c]);
            fputs(html ? "</td>" : " |", f);
        }
        fputs(html ? "</tr>\n" : "\n", f);
    }
    fputs(html ? "</table>\n" : "\n", f);
}

/* The table of incidents and their 72-hour notice. */
static void report_incidents(const struct rpt *r, FILE *f, bool html)
{
    uint64_t now = r->o->now_ns;
    fputs(html ? "<h2>Incidents: the 72-hour notice</h2>\n<table><tr><th>incident</th>"
                 "<th>title</th><th>severity</th><th>detected</th><th>deadline</th>"
                 "<th>tenant notified</th><th>verdict</th></tr>\n"
               : "## Incidents: the 72-hour notice\n\n| incident | title | severity | detected | "
                 "deadline | tenant notified | verdict |\n|---|---|---|---|---|---|---|\n",
          f);
    for (size_t i = 0; i < r->ninc; i++) {
        const struct incident *in = &r->inc[i];
        char h[17], d[JST_LEN + 1], dl[JST_LEN + 1], nt[JST_LEN + 1], vb[64];
        hex8(h, in->id);
        jst_format(in->detected, d);
        jst_format(in->deadline, dl);
        if (in->notified)
            jst_format(in->notified, nt);
        else
            snprintf(nt, sizeof nt, "not yet");
        const char *vd = incident_verdict(in, now, vb, sizeof vb);
        const char *cells[7] = {
            h, in->title, enum_name(KR_ENUM_SEVERITY, (uint64_t)in->severity), d, dl, nt, vd};
        fputs(html ? "<tr>" : "|", f);
        for (int c = 0; c < 7; c++) {
            if (html && c == 6)
                fprintf(f, "<td class=\"%s\">", strcmp(vd, "met") == 0 ? "met" : "missed");
            else
                fputs(html ? "<td>" : " ", f);
            text(f, html, cells[c]);
            fputs(html ? "</td>" : " |", f);
        }
        fputs(html ? "</tr>\n" : "\n", f);
    }
    fputs(html ? "</table>\n" : "\n", f);
}

/* Each section's rows, in order. */
static void report_sections(const struct rpt *r, FILE *f, bool html)
{
    char t[JST_LEN + 1];
    for (int s = 0; s < S__COUNT; s++) {
        if (html) {
            fputs("<h2>", f);
            html_text(f, section_title[s]);
            fputs("</h2>\n<table><tr><th>time (JST)</th><th>event</th><th>seq</th>"
                  "<th>details</th></tr>\n",
                  f);
        } else {
            fprintf(f, "## ");
            md_text(f, section_title[s]);
            fputs("\n\n| time (JST) | event | seq | details |\n|---|---|---|---|\n", f);
        }
        size_t shown = 0;
        for (size_t i = 0; i < r->nrows; i++) {
            const struct row *w = &r->rows[i];
            if ((int)w->s != s)
                continue;
            shown++;
            char sq[24];
            jst_format(w->time, t);
            snprintf(sq, sizeof sq, "%" PRIu64, w->seq);
            const char *cells[4] = {t, w->what, sq, w->text};
            fputs(html ? "<tr>" : "|", f);
            for (int c = 0; c < 4; c++) {
                fputs(html ? "<td>" : " ", f);
                text(f, html, cells[c]);
                fputs(html ? "</td>" : " |", f);
            }
            fputs(html ? "</tr>\n" : "\n", f);
        }
        if (!shown)
            fputs(html ? "<tr><td colspan=\"4\">none</td></tr>\n" : "| | none | | |\n", f);
        fputs(html ? "</table>\n" : "\n", f);
    }
}

/* The timeline (HTML: a vertical line that prints; Markdown: a list) and the
 * closing words. */
static void report_timeline(const struct rpt *r, FILE *f, bool html)
{
    char t[JST_LEN + 1], buf[512];
    fputs(html ? "<h2>Timeline</h2>\n<ol class=\"timeline\">\n" : "## Timeline\n\n", f);
    for (size_t i = 0; i < r->nrows; i++) {
        const struct row *w = &r->rows[i];
        jst_format(w->time, t);
        if (html) {
            fprintf(f, "<li class=\"%s\"><span class=\"t\">", section_class[w->s]);
            html_text(f, t);
            fputs("</span><span class=\"w\">", f);
            html_text(f, w->what);
            fputs("</span>", f);
            html_text(f, w->text);
            fputs("</li>\n", f);
        } else {
            fputs("- ", f);
            md_text(f, t);
            fputs(" **", f);
            md_text(f, w->what);
            fputs("** ", f);
            md_text(f, w->text);
            fputs("\n", f);
        }
    }
    fputs(html ? "</ol>\n" : "\n", f);
    snprintf(buf, sizeof buf,
             "This report is read from the journal; to check the records themselves, export them "
             "(kiroku export) and verify the export with the journal's public key (kiroku audit "
             "verify).");
    fputs(html ? "<p class=\"meta\">" : "", f);
    text(f, html, buf);
    fputs(html ? "</p>\n</body></html>\n" : "\n", f);
}

static void write_report(struct rpt *r, FILE *f)
{
    bool html = r->o->format == RPT_HTML;
    report_head(r, f, html);
    report_summary(r, f, html);
    report_accounts(r, f, html);
    report_incidents(r, f, html);
    report_sections(r, f, html);
    report_timeline(r, f, html);
}

kr_err rpt_write(const struct rpt_options *o, FILE *f)
{
    if (!o || !o->data_dir || !f || o->tenant == 0)
        return KR_EINVAL;
    struct rpt_options oo = *o;
    if (!oo.now_ns) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        oo.now_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    struct rpt *r = calloc(1, sizeof *r);
    if (!r)
        return KR_ENOMEM;
    r->o = &oo;
    kr_err err = KR_ENOMEM;
    r->rows = calloc(RPT_ROWS_MAX, sizeof *r->rows);
    r->acc = calloc(RPT_ACCOUNTS_MAX, sizeof *r->acc);
    r->inc = calloc(RPT_INCIDENTS_MAX, sizeof *r->inc);
    r->p = kr_payload_new();
    if (!r->rows || !r->acc || !r->inc || !r->p)
        goto out;
    struct jrn_options jo = {.dir = o->data_dir, .read_only = true};
    if ((err = jrn_open(&jo, &r->j)))
        goto out;
    /* The keystore, for e-mail addresses: without it (or after erasure) the
     * report still runs, with addresses shown sealed or erased. */
    if (ks_open(o->data_dir, false, &r->ks) == KR_OK) {
        bool destroyed = false;
        if (ks_get(r->ks, o->tenant, &r->key) == KR_OK)
            r->have_key = true;
        else if (ks_is_destroyed(r->ks, o->tenant, &destroyed) == KR_OK && destroyed)
            r->key_destroyed = true;
    }
    if ((err = scan(r, o->tenant, tenant_record)) || (err = scan(r, 0, platform_record)))
        goto out;
    if (r->records == 0) {
        err = KR_ENOTFOUND;
        goto out;
    }
    qsort(r->rows, r->nrows, sizeof *r->rows, row_cmp);
    write_report(r, f);
    err = ferror(f) ? KR_EIO : KR_OK;
out:
    kr_data_key_wipe(&r->key);
    ks_close(r->ks);
    jrn_close(r->j);
    kr_payload_free(r->p);
    if (r->acc)
        sodium_memzero(r->acc, RPT_ACCOUNTS_MAX * sizeof *r->acc);
    free(r->rows);
    free(r->acc);
    free(r->inc);
    free(r);
    return err;
}

/* ---- The command ---- */

static const char report_usage[] =
    "usage: kiroku audit report --tenant T [--format md|html] [--out FILE] [--data DIR]\n"
    "\n"
    "What a tenant's auditor reads first, from the tenant's events: accounts and\n"
    "permission changes, logins and lockouts, incidents and their notices with the\n"
    "72-hour deadline met or missed, notices published, cancellation and erasure,\n"
    "and a timeline; all times in JST. Markdown by default; --format html writes one\n"
    "self-contained page (no scripts, nothing fetched) that prints well. Reads DIR\n"
    "read-only (safe while a server runs); shows account e-mail addresses, so the\n"
    "output is personal data: keep it as such.\n";

int audit_report_cmd(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"tenant", required_argument, 0, 't'},
                                         {"format", required_argument, 0, 'F'},
                                         {"out", required_argument, 0, 'o'},
                                         {0, 0, 0, 0}};
    struct cli_common co = {0};
    struct rpt_options ro = {.format = RPT_MD};
    const char *out = NULL;
    int rc, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!cli_parse_u64(optarg, 1, INT64_MAX, &ro.tenant)) {
                fprintf(stderr, "kiroku: --tenant must be a tenant id >= 1\n");
                return CLI_USAGE;
            }
            break;
        case 'F':
            if (strcmp(optarg, "md") == 0) {
                ro.format = RPT_MD;
            } else if (strcmp(optarg, "html") == 0) {
                ro.format = RPT_HTML;
            } else {
                fprintf(stderr, "kiroku: --format is md or html\n");
                return CLI_USAGE;
            }
            break;
        case 'o':
            out = optarg;
            break;
        default:
            if ((rc = cli_common_option(c, report_usage, &co)) != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc || !ro.tenant)
        return cli_usage(report_usage);
    ro.data_dir = cli_data_dir(co.data);
    /* Mode 0600: the report shows e-mail addresses. */
    FILE *f = stdout;
    if (out) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        f = fd < 0 ? NULL : fdopen(fd, "w");
        if (!f && fd >= 0)
            close(fd);
    }
    if (!f) {
        fprintf(stderr, "kiroku: %s: cannot write\n", out);
        return CLI_FAIL;
    }
    kr_err err = rpt_write(&ro, f);
    if (out && fclose(f) != 0 && !err)
        err = KR_EIO;
    if (err == KR_ENOTFOUND) {
        fprintf(stderr, "kiroku: no records of tenant %" PRIu64 " in %s\n", ro.tenant, ro.data_dir);
        return CLI_FAIL;
    }
    if (err)
        return cli_fail_open(ro.data_dir, err);
    return CLI_OK;
}
