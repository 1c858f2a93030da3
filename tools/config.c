/*
 * config.c: kiroku serve's configuration file (config.h).
 *
 * The table below is the one list of settings. To add one: a row with its
 * name (`area.setting`), kind, bounds, default and a line of doc; read it
 * with kr_config_str / kr_config_u64 / kr_config_bool where it is used; say
 * what it does in docs/operations.md (the table there comes from
 * `kiroku serve --config-help`).
 */
#include "config.h"

#include "kr_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum cfg_kind { CFG_STR, CFG_U64, CFG_BOOL };

struct cfg_setting {
    const char *name;
    enum cfg_kind kind;
    uint64_t lo, hi;  /* CFG_U64: bounds; CFG_STR: most bytes in hi (0 = KR_CONFIG_VALUE_MAX) */
    const char *dflt; /* as it would be written in the file; NULL = unset */
    const char *doc;
};

/* Every setting, grouped by area. */
static const struct cfg_setting settings[] = {
    {"service.name", CFG_STR, 0, 128, "kiroku", "the service's name, in e-mails and reports"},
    /* incidents: serve's scheduler of incident notices (tools/daily.c) */
    {"incidents.warn_before_h", CFG_U64, 0, 71, "24",
     "hours before an incident's 72-hour deadline from which serve e-mails every affected "
     "tenant not yet notified (0: only once the deadline has passed)"},
    {"incidents.auto_notify", CFG_BOOL, 0, 1, "true",
     "true: serve e-mails the incident notices owed (incidents.warn_before_h) by itself; "
     "false: operators notify each tenant (incidents.notify) and incidents.overdue lists "
     "what is late (updates and resolutions are still e-mailed to the tenants e-mailed)"},
    /* the API server (api/server.h) */
    {"api.inflight", CFG_U64, 1, KR_API_INFLIGHT_MAX, "256",
     "requests in flight at once on the client endpoint: each waits for its group commit "
     "without holding a thread (--inflight overrides)"},
    /* the JSON gateway over HTTP (api/gateway.h) */
    {"api.gateway", CFG_STR, 0, 127, NULL,
     "serve the client ops as JSON over HTTP and the console at http://HOST:PORT or "
     "https://HOST:PORT (with --cert/--key); off when unset; --gateway overrides"},
    {"api.gateway_operator", CFG_STR, 0, 127, NULL,
     "the same for the operator ops (give a loopback address); off when unset; "
     "--gateway-operator overrides"},
    /* the journal (journal/journal.h) */
    {"journal.two_flushes", CFG_BOOL, 0, 1, "false",
     "flush each commit's meta page on its own (LMDB's commit) instead of one flush per "
     "commit: for a disk whose flushes cost next to nothing (docs/benchmarks.md)"},
    /* replication to NATS JetStream (api/cluster.h; serve --nats and friends override) */
    {"cluster.nats", CFG_STR, 0, KR_CLUSTER_URLS_MAX, NULL,
     "NATS servers to publish the journal to, nats://HOST:PORT[,nats://HOST:PORT...] "
     "(unset: no replication; --nats overrides)"},
    {"cluster.replication", CFG_STR, 0, 16, "async",
     "async (a write is acknowledged after the local flush) or quorum (also after "
     "JetStream's acknowledgement: it survives the loss of this machine); --replication "
     "overrides"},
    {"cluster.shard", CFG_STR, 0, KR_CLUSTER_SHARD_MAX, "main",
     "this journal's shard ([a-z0-9-], 1 to 32): its stream is KIROKU_<SHARD>, subject "
     "kiroku.<shard>.journal (--shard overrides)"},
    {"cluster.max_age", CFG_U64, 1, KR_CLUSTER_MAX_AGE_S_MAX / 86400u, "14",
     "days the stream keeps a message: at most 29, so no copy outlives the 30-day erasure "
     "deadline (followers start from a backup, not from the stream's first message)"},
    {"cluster.replicas", CFG_U64, 0, KR_CLUSTER_REPLICAS_MAX, "0",
     "the stream's replicas; 0 = min(3, the NATS servers known)"},
    {"cluster.node", CFG_STR, 0, KR_NODE_NAME_MAX, NULL,
     "this node's name in the shard ([A-Za-z0-9._-], unique in the deployment): with "
     "cluster.nats, serve runs a node that follows the primary and takes over when its "
     "lease lapses (--node overrides)"},
    {"cluster.platform", CFG_BOOL, 0, 1, "false",
     "a tenant shard's primary follows the platform shard's journal into DIR/platform and "
     "imports its notices and incidents (docs/operations.md, \"The platform journal\"; "
     "--platform overrides)"},
    {"cluster.lease_ttl", CFG_U64, KR_LEASE_TTL_MIN_MS, KR_LEASE_TTL_MAX_MS, "10000",
     "the lease's time to live in milliseconds when its bucket is made: failover takes "
     "about this long plus the catch-up (--lease-ttl overrides)"},
    /* metrics and health: the operators' HTTP endpoint (api/http.h, api/metrics.h) */
    {"http.listen", CFG_STR, 0, 127, NULL,
     "serve /metrics and /healthz at http://HOST:PORT (off when unset; --http overrides)"},
    {"health.backup_max_age_h", CFG_U64, 1, 24 * 30, "26",
     "/healthz fails when serve's daily backup (--backups) is older than this many hours"},
    {"health.outbox_backlog_max", CFG_U64, 1, 1000000, "1000",
     "/healthz fails when more e-mails than this wait in the outbox"},
    {"health.map_use_max_pct", CFG_U64, 1, 100, "90",
     "/healthz fails when the LMDB map is this full (percent)"},
    {"health.checkpoint_lag_s", CFG_U64, 1, 3600, "60",
     "/healthz fails when the checkpoint file trails the journal for longer (seconds)"},
    /* mail content (api/compose.c) */
    {"mail.templates_dir", CFG_STR, 0, 0, NULL,
     "directory of the e-mail templates (ja/<template>.txt, en/<template>.txt); unset: the "
     "api/templates of the source kiroku was built from. serve refuses to start when one is "
     "missing or malformed"},
    {"mail.payment_url", CFG_STR, 0, 512, NULL,
     "the payment page e-mailed after signup.apply; {application} becomes the application id"},
    {"service.login_url", CFG_STR, 0, 512, NULL,
     "the login page, in the account and notice e-mails"},
    {"service.support", CFG_STR, 0, 512, NULL,
     "the support contact (an address or a page), at the end of every e-mail"},
    /* smtp: e-mail delivery (api/mailer.h, api/smtp.h) */
    {"smtp.url", CFG_STR, 0, KR_SMTP_URL_MAX, NULL,
     "the SMTP relay, smtp://host:port or smtps://host:port; unset = e-mails are written as "
     "DIR/outbox/*.eml files"},
    {"smtp.starttls", CFG_STR, 0, 16, "required",
     "STARTTLS on an smtp:// relay: required (never send in clear), optional (when offered), off"},
    {"smtp.user", CFG_STR, 0, 256, NULL, "the relay's login (AUTH); unset = no login"},
    {"smtp.password_file", CFG_STR, 0, 0, NULL,
     "a file holding the relay's password (one line; mode 0600, kiroku's user's)"},
    {"smtp.ca_file", CFG_STR, 0, 0, NULL,
     "CA certificates (PEM) the relay's certificate is checked against; unset = the system's"},
    {"smtp.timeout_s", CFG_U64, 1, KR_SMTP_TIMEOUT_S_MAX, "30",
     "seconds one SMTP session (one attempt) may take"},
    {"smtp.retry_min_s", CFG_U64, 1, 86400, "60",
     "seconds before the second attempt of a failed e-mail; doubles with each failure"},
    {"smtp.retry_max_s", CFG_U64, 1, 86400, "3600", "the longest wait between two attempts"},
    {"smtp.give_up_h", CFG_U64, 1, 720, "72",
     "hours after queuing when an undelivered e-mail fails permanently (outbox.failed)"},
    {"mail.from", CFG_STR, 0, KR_SMTP_ADDRESS_MAX, "noreply@kiroku.invalid",
     "the sender's address (an addr-spec), in MAIL FROM and From:"},
    {"mail.outbox_keep_days", CFG_U64, 1, 3650, "7",
     "days an e-mail file in DIR/outbox is kept (it holds the recipient and any auth code); "
     "the daily retention job deletes older ones"},
    /* security alerts (projections/alerts.h): a rule fires when count records
     * fall within window_s seconds; count 0 turns a rule off */
    {"alerts.scan_interval_s", CFG_U64, 1, 3600, "5",
     "seconds between two scans of the journal for alerts"},
    {"alerts.login_failures.count", CFG_U64, 0, 32, "10",
     "alert after this many failed logins on one account (0 = off)"},
    {"alerts.login_failures.window_s", CFG_U64, 1, 86400, "600",
     "the window of alerts.login_failures.count, in seconds"},
    {"alerts.login_spray.count", CFG_U64, 0, 32, "10",
     "alert after this many accounts of one tenant with failed logins (an unknown address counts "
     "as one) (0 = off)"},
    {"alerts.login_spray.window_s", CFG_U64, 1, 86400, "600",
     "the window of alerts.login_spray.count, in seconds"},
    {"alerts.lockout.count", CFG_U64, 0, 32, "1",
     "alert after this many locks of one account for failed logins (0 = off)"},
    {"alerts.lockout.window_s", CFG_U64, 1, 86400, "3600",
     "the window of alerts.lockout.count, in seconds"},
    {"alerts.session_burst.count", CFG_U64, 0, 32, "20",
     "alert after this many sessions opened for one account (0 = off)"},
    {"alerts.session_burst.window_s", CFG_U64, 1, 86400, "3600",
     "the window of alerts.session_burst.count, in seconds"},
    {"alerts.grant_many.count", CFG_U64, 0, 32, "10",
     "alert after this many users of one tenant granted permissions (0 = off)"},
    {"alerts.grant_many.window_s", CFG_U64, 1, 86400, "600",
     "the window of alerts.grant_many.count, in seconds"},
    {"alerts.grant_repeated.count", CFG_U64, 0, 32, "5",
     "alert after this many permission grants to one user (0 = off)"},
    {"alerts.grant_repeated.window_s", CFG_U64, 1, 86400, "600",
     "the window of alerts.grant_repeated.count, in seconds"},
    {"alerts.access_denied.count", CFG_U64, 0, 32, "10",
     "alert after this many refused ops of one account (0 = off)"},
    {"alerts.bulk_export.count", CFG_U64, 0, 32000, "5000",
     "alert after one account exported this many records with utility.export (0 = off)"},
    {"alerts.bulk_export.window_s", CFG_U64, 1, 86400, "3600",
     "the window of alerts.bulk_export.count, in seconds"},
    {"alerts.incident_due.count", CFG_U64, 0, 1, "1",
     "1: alert when an incident's notification of a tenant is still owed close to its 72-hour "
     "deadline (0 = off)"},
    {"alerts.incident_due.window_s", CFG_U64, 1, 604800, "86400",
     "how close to the deadline, in seconds"},
    {"alerts.incident_overdue.count", CFG_U64, 0, 1, "1",
     "1: alert when an incident's notification of a tenant is past its deadline (0 = off)"},
    {"alerts.backup_missed.count", CFG_U64, 0, 1, "1",
     "1: alert when serve takes backups and none completed within the window (0 = off)"},
    {"alerts.backup_missed.window_s", CFG_U64, 1, 604800, "93600",
     "the longest time without a completed backup, in seconds"},
    {"alerts.storage_low.count", CFG_U64, 0, 100, "90",
     "alert when the journal's LMDB map is this many per cent used (0 = off)"},
    {"alerts.storage_low.window_s", CFG_U64, 1, 86400, "3600",
     "how often, in seconds, while it stays so"},
    {"alerts.writes_refused.count", CFG_U64, 0, 1000000, "1",
     "alert once writes succeed again after this many appends were refused for space (0 = off)"},
    {"alerts.request_rate.count", CFG_U64, 0, 1000, "10",
     "alert when a tenant's records in a window are this many times its usual (0 = off)"},
    {"alerts.request_rate.window_s", CFG_U64, 1, 86400, "300",
     "the window of alerts.request_rate.count, in seconds"},
    {"alerts.request_rate.min", CFG_U64, 1, 1000000, "1000",
     "the fewest records in a window that can raise request_rate"},
    {"alerts.access_denied.window_s", CFG_U64, 1, 86400, "600",
     "the window of alerts.access_denied.count, in seconds"},
};
#define NSETTINGS (sizeof settings / sizeof settings[0])

struct kr_config {
    char *value[NSETTINGS]; /* NULL = the default */
    uint64_t num[NSETTINGS];
    char *text; /* the file's bytes, values point into it */
};

static int find(const char *name, size_t n)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(settings[i].name) == n && memcmp(settings[i].name, name, n) == 0)
            return (int)i;
    return -1;
}

static int must_find(const char *name)
{
    int i = find(name, strlen(name));
    KR_ASSERT(i >= 0);
    return i;
}

static kr_err bad(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kr_err bad(char *why, size_t cap, const char *fmt, ...)
{
    if (why && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, cap, fmt, ap);
        va_end(ap);
    }
    return KR_EINVAL;
}

static bool parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on") || !strcmp(s, "1"))
        return *out = true, true;
    if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off") || !strcmp(s, "0"))
        return *out = false, true;
    return false;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s || (s[0] == '0' && s[1]))
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

/* Checks value v for setting i; the number into *num. */
static kr_err check_value(size_t i, const char *v, uint64_t *num, char *why, size_t cap,
                          unsigned line)
{
    const struct cfg_setting *s = &settings[i];
    size_t n = strlen(v);
    bool b;
    switch (s->kind) {
    case CFG_U64:
        if (!parse_u64(v, num) || *num < s->lo || *num > s->hi)
            return bad(why, cap, "line %u: %s is a whole number in %llu..%llu", line, s->name,
                       (unsigned long long)s->lo, (unsigned long long)s->hi);
        return KR_OK;
    case CFG_BOOL:
        if (!parse_bool(v, &b))
            return bad(why, cap, "line %u: %s is true or false", line, s->name);
        *num = b;
        return KR_OK;
    case CFG_STR:
        if (n > (s->hi ? s->hi : KR_CONFIG_VALUE_MAX))
            return bad(why, cap, "line %u: %s is at most %llu bytes", line, s->name,
                       (unsigned long long)(s->hi ? s->hi : KR_CONFIG_VALUE_MAX));
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)v[k] < 0x20 || v[k] == 0x7f)
                return bad(why, cap, "line %u: %s has a control character", line, s->name);
        return KR_OK;
    }
    return KR_EINVAL;
}

static char *trim(char *a, char *b) /* [a, b) without surrounding spaces, NUL-terminated */
{
    while (a < b && (*a == ' ' || *a == '\t'))
        a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
        b--;
    *b = '\0';
    return a;
}

/* Parses the file's text (NUL-terminated, owned by c) into c. */
static kr_err parse(struct kr_config *c, char *why, size_t cap)
{
    unsigned line = 0;
    for (char *p = c->text; *p;) {
        char *end = strchr(p, '\n');
        char *next = end ? end + 1 : p + strlen(p);
        if (!end)
            end = p + strlen(p);
        line++;
        char *l = trim(p, end);
        p = next;
        if (!*l || *l == '#')
            continue;
        char *eq = strchr(l, '=');
        if (!eq)
            return bad(why, cap, "line %u: not `name = value`", line);
        char *name = trim(l, eq);
        char *value = trim(eq + 1, eq + 1 + strlen(eq + 1));
        int i = find(name, strlen(name));
        if (i < 0)
            return bad(why, cap, "line %u: no setting is called \"%.64s\"", line, name);
        if (c->value[i])
            return bad(why, cap, "line %u: %s is given twice", line, name);
        kr_err err = check_value((size_t)i, value, &c->num[i], why, cap, line);
        if (err)
            return err;
        c->value[i] = value;
    }
    return KR_OK;
}

/* The defaults' numbers (the table is checked by config_test). */
static void defaults(struct kr_config *c)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (!c->value[i] && settings[i].dflt && settings[i].kind != CFG_STR)
            (void)check_value(i, settings[i].dflt, &c->num[i], NULL, 0, 0);
}

static kr_err read_file(const char *path, char **out, char *why, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ELOOP ? KR_EKEY : errno == ENOENT ? KR_ENOTFOUND : KR_EIO;
    struct stat st;
    kr_err err = KR_OK;
    char *buf = NULL;
    if (fstat(fd, &st) != 0)
        err = KR_EIO;
    else if (!S_ISREG(st.st_mode))
        err = KR_EKEY;
    else if (st.st_mode & (S_IWGRP | S_IWOTH))
        err = bad(why, cap, "%s: group or others can write it (chmod go-w)", path);
    else if (st.st_size > KR_CONFIG_FILE_MAX)
        err = KR_ETOOLARGE;
    else if (!(buf = malloc((size_t)st.st_size + 1)))
        err = KR_ENOMEM;
    size_t got = 0;
    while (!err && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            err = KR_EIO;
        else
            got += (size_t)r;
    }
    close(fd);
    if (!err && memchr(buf, '\0', got))
        err = bad(why, cap, "%s: holds a NUL byte", path);
    if (err) {
        free(buf);
        return err;
    }
    buf[got] = '\0';
    *out = buf;
    return KR_OK;
}

kr_err kr_config_load(const char *path, struct kr_config **out, char *why, size_t why_cap)
{
    *out = NULL;
    if (why && why_cap)
        why[0] = '\0';
    struct kr_config *c = calloc(1, sizeof *c);
    if (!c)
        return KR_ENOMEM;
    kr_err err = KR_OK;
    if (path && !(err = read_file(path, &c->text, why, why_cap)))
        err = parse(c, why, why_cap);
    if (err) {
        kr_config_free(c);
        return err;
    }
    defaults(c);
    *out = c;
    return KR_OK;
}

void kr_config_free(struct kr_config *c)
{
    if (!c)
        return;
    free(c->text);
    free(c);
}

const char *kr_config_str(const struct kr_config *c, const char *name)
{
    int i = must_find(name);
    if (c && c->value[i])
        return c->value[i];
    return settings[i].dflt ? settings[i].dflt : "";
}

uint64_t kr_config_u64(const struct kr_config *c, const char *name)
{
    int i = must_find(name);
    KR_ASSERT(settings[i].kind == CFG_U64);
    KR_ASSERT(c);
    return c->num[i];
}

bool kr_config_bool(const struct kr_config *c, const char *name)
{
    int i = must_find(name);
    KR_ASSERT(settings[i].kind == CFG_BOOL);
    KR_ASSERT(c);
    return c->num[i] != 0;
}

bool kr_config_is_set(const struct kr_config *c, const char *name)
{
    return c && c->value[must_find(name)] != NULL;
}

void kr_config_describe(FILE *f)
{
    static const char *const kinds[] = {"text", "number", "true/false"};
    fprintf(f, "| setting | kind | default | what |\n|---|---|---|---|\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct cfg_setting *s = &settings[i];
        fprintf(f, "| `%s` | %s", s->name, kinds[s->kind]);
        if (s->kind == CFG_U64)
            fprintf(f, " %llu..%llu", (unsigned long long)s->lo, (unsigned long long)s->hi);
        fprintf(f, " | %s%s%s | %s |\n", s->dflt ? "`" : "", s->dflt ? s->dflt : "(none)",
                s->dflt ? "`" : "", s->doc);
    }
}
