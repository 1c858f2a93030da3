/*
 * compose.c: the e-mails' content (see compose.h).
 *
 * Design notes. A message is built in three capped buffers: the subject
 * text, the body text (both UTF-8, CRLF line ends) and the message itself,
 * where the subject becomes encoded-words and the body base64. Every
 * buffer that held a value (auth codes) is wiped before it is freed. Times
 * are Japan Standard Time computed from UTC without libc's time-zone state.
 */
#include "compose.h"

#include "keys.h"
#include "kr_limits.h"
#include "schema.h"

#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_FROM "kiroku <noreply@kiroku.invalid>"
#define ENGLISH_RULE "----- English -----"

static const char *const lang_dirs[COMPOSE_LANG__COUNT] = {"ja", "en"};

/* ---- Placeholders ---- */

enum ph {
    PH_CODE,
    PH_CODE_EXPIRES,
    PH_TENANT_NAME,
    PH_TENANT_CODE,
    PH_LOGIN_URL,
    PH_SUPPORT,
    PH_PAYMENT_URL,
    PH_NOTICE_KIND,
    PH_TITLE,
    PH_BODY,
    PH_SUMMARY,
    PH_SEVERITY,
    PH_EFFECTIVE,
    PH_DETECTED,
    PH_DEADLINE,
    PH__COUNT
};

static const char *const ph_names[PH__COUNT] = {
    "code",    "code_expires", "tenant_name", "tenant_code", "login_url",
    "support", "payment_url",  "notice_kind", "title",       "body",
    "summary", "severity",     "effective",   "detected",    "deadline",
};

static const char *const notice_kinds[COMPOSE_LANG__COUNT][KR_NOTICE_KIND__COUNT] = {
    {"変更のお知らせ", "メンテナンスのお知らせ", "脆弱性のお知らせ"},
    {"Notice of change", "Notice of maintenance", "Notice of a vulnerability"},
};
static const char *const severities[COMPOSE_LANG__COUNT][KR_SEVERITY__COUNT] = {
    {"低", "中", "高", "緊急"},
    {"low", "medium", "high", "critical"},
};

/* The most bytes a placeholder can become: a value at its schema bound with
 * every byte a line end (each CRLF in the body), a time or enum in either
 * language, a setting at its bound ({application} 13 bytes -> 32). */
#define TIME_MAX 64u
static const size_t ph_max[PH__COUNT] = {
    [PH_CODE] = 2 * KR_FLD_AUTH_CODE_MAX,
    [PH_CODE_EXPIRES] = TIME_MAX,
    [PH_TENANT_NAME] = 2 * KR_FLD_TENANT_NAME_MAX,
    [PH_TENANT_CODE] = 2 * KR_FLD_TENANT_CODE_MAX,
    [PH_LOGIN_URL] = KR_MAIL_SETTING_MAX,
    [PH_SUPPORT] = KR_MAIL_SETTING_MAX,
    [PH_PAYMENT_URL] = 3 * KR_MAIL_SETTING_MAX,
    [PH_NOTICE_KIND] = 64,
    [PH_TITLE] = 2 * KR_FLD_TITLE_MAX,
    [PH_BODY] = 2 * KR_FLD_BODY_MAX,
    [PH_SUMMARY] = 2 * KR_FLD_SUMMARY_MAX,
    [PH_SEVERITY] = 16,
    [PH_EFFECTIVE] = TIME_MAX,
    [PH_DETECTED] = TIME_MAX,
    [PH_DEADLINE] = TIME_MAX,
};

/* The placeholder named by s[0..n), or -1. */
static int ph_lookup(const char *s, size_t n)
{
    for (int i = 0; i < PH__COUNT; i++)
        if (strlen(ph_names[i]) == n && memcmp(ph_names[i], s, n) == 0)
            return i;
    return -1;
}

/* ---- The set ---- */

struct tmpl {
    char *subject; /* NUL-terminated, one line */
    char *body;    /* NUL-terminated, LF line ends as in the file */
};

struct compose_set {
    struct tmpl t[COMPOSE_LANG__COUNT][KR_TEMPLATE__COUNT];
    char *from, *msgid_host, *payment_url, *login_url, *support;
};

/* "a: b" into why (cap bytes; why may be NULL). */
static void why_set(char *why, size_t cap, const char *a, const char *b)
{
    if (why && cap)
        snprintf(why, cap, "%s: %s", a, b);
}

/* Length of the UTF-8 sequence at s (at most n bytes), 0 if malformed. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t c;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        c = s[0] & 0x1fu;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        c = s[0] & 0x0fu;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        c = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3fu);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return len;
}

/* NULL if text is UTF-8 with no control character but LF (and TAB); else
 * what is wrong. */
static const char *text_check(const char *text, bool lf_ok)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            if (!(s[i] == '\t' || (lf_ok && s[i] == '\n')))
                return "a control character";
        }
        size_t l = utf8_len(s + i, n - i);
        if (l == 0)
            return "bytes that are not UTF-8";
        i += l;
    }
    return NULL;
}

/* NULL if every '{' in text opens a known placeholder; else what is wrong
 * (in bad, cap bytes). allow_app: only {application} is known (payment_url). */
static bool placeholders_ok(const char *text, bool allow_app, char *bad, size_t cap)
{
    for (const char *p = strchr(text, '{'); p; p = strchr(p + 1, '{')) {
        const char *e = p + 1;
        while ((*e >= 'a' && *e <= 'z') || *e == '_')
            e++;
        size_t n = (size_t)(e - p - 1);
        bool known = allow_app ? (n == 11 && memcmp(p + 1, "application", 11) == 0)
                               : ph_lookup(p + 1, n) >= 0;
        if (*e != '}' || !known) {
            snprintf(bad, cap, "%.*s", (int)(n + 1 < 40 ? n + 1 + (*e == '}') : 40), p);
            return false;
        }
    }
    return true;
}

/* The most bytes text (checked by placeholders_ok) can expand to: every
 * literal LF becoming CRLF, every placeholder at its ph_max. */
static size_t worst_case(const char *text)
{
    size_t n = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '{') {
            const char *e = strchr(p, '}');
            n += ph_max[ph_lookup(p + 1, (size_t)(e - p - 1))];
            p = e;
        } else {
            n += *p == '\n' ? 2 : 1;
        }
    }
    return n;
}

/* Parses a template file's text into t. */
static kr_err tmpl_parse(char *text, const char *path, struct tmpl *t, char *why, size_t whycap)
{
    static const char head[] = "Subject: ";
    const char *bad = text_check(text, true);
    if (bad) {
        why_set(why, whycap, path, bad);
        return KR_EINVAL;
    }
    char *nl = strchr(text, '\n');
    if (strncmp(text, head, sizeof head - 1) != 0 || !nl || nl[1] != '\n') {
        why_set(why, whycap, path,
                "the first line must be \"Subject: ...\" followed by an empty line");
        return KR_EINVAL;
    }
    *nl = '\0';
    char ph[48];
    if (!placeholders_ok(text, false, ph, sizeof ph) ||
        !placeholders_ok(nl + 2, false, ph, sizeof ph)) {
        char what[96];
        snprintf(what, sizeof what, "unknown or unclosed placeholder %s", ph);
        why_set(why, whycap, path, what);
        return KR_EINVAL;
    }
    if (strchr(text, '\t')) {
        why_set(why, whycap, path, "a tab in the subject");
        return KR_EINVAL;
    }
    if (worst_case(text + sizeof head - 1) > KR_MAIL_SUBJECT_MAX) {
        why_set(why, whycap, path,
                "the subject could exceed KR_MAIL_SUBJECT_MAX bytes with the longest values "
                "(no {body} or {summary} there)");
        return KR_ETOOLARGE;
    }
    t->subject = strdup(text + sizeof head - 1);
    t->body = strdup(nl + 2);
    return t->subject && t->body ? KR_OK : KR_ENOMEM;
}

static kr_err tmpl_load(const char *dir, enum compose_lang lang, int id, struct tmpl *t, char *why,
                        size_t whycap)
{
    char path[KR_PATH_MAX + 64];
    if ((size_t)snprintf(path, sizeof path, "%s/%s/%s.txt", dir, lang_dirs[lang],
                         kr_enums[KR_ENUM_TEMPLATE].values[id]) >= sizeof path) {
        why_set(why, whycap, dir, "the templates directory's path is too long");
        return KR_ETOOLARGE;
    }
    char *text = malloc(KR_MAIL_TEMPLATE_MAX + 1);
    if (!text)
        return KR_ENOMEM;
    kr_err err = kr_file_read_small(path, text, KR_MAIL_TEMPLATE_MAX + 1, false);
    if (err == KR_ECORRUPT) {
        why_set(why, whycap, path, "larger than KR_MAIL_TEMPLATE_MAX bytes, or a NUL");
        err = KR_ETOOLARGE;
    } else if (err) {
        why_set(why, whycap, path, kr_strerror(err));
    } else {
        err = tmpl_parse(text, path, t, why, whycap);
    }
    free(text);
    return err;
}

/* Checks and copies one setting into *out; def if s is NULL or "". */
static kr_err setting(const char *name, const char *s, const char *def, size_t max, char **out,
                      char *why, size_t whycap)
{
    if (!s || !*s)
        s = def;
    const char *bad = strlen(s) > max ? "too long" : text_check(s, false);
    if (!bad && strchr(s, '\t'))
        bad = "a tab";
    if (bad) {
        char what[64];
        snprintf(what, sizeof what, "setting %s", name);
        why_set(why, whycap, what, bad);
        return KR_EINVAL;
    }
    *out = strdup(s);
    return *out ? KR_OK : KR_ENOMEM;
}

/* Checks from ("Name <addr>" or "addr": printable ASCII, one '@') and finds
 * the Message-ID host (the domain of addr) into host. */
static kr_err from_check(const char *from, char *host, size_t cap, char *why, size_t whycap)
{
    for (const char *p = from; *p; p++)
        if (*p < 0x20 || *p > 0x7e) {
            why_set(why, whycap, "setting mail.from", "not printable ASCII");
            return KR_EINVAL;
        }
    const char *lt = strchr(from, '<');
    const char *addr = lt ? lt + 1 : from;
    size_t alen = lt ? strcspn(addr, ">") : strlen(addr);
    const char *at = memchr(addr, '@', alen);
    if ((lt && addr[alen] != '>') || (lt && addr[alen + 1] != '\0') || !at ||
        memchr(at + 1, '@', alen - (size_t)(at + 1 - addr)) || at == addr ||
        at + 1 == addr + alen || memchr(addr, ' ', alen) || (!lt && strpbrk(from, "<>,\""))) {
        why_set(why, whycap, "setting mail.from",
                "must be \"Name <local@domain>\" or \"local@domain\"");
        return KR_EINVAL;
    }
    size_t hlen = alen - (size_t)(at + 1 - addr);
    if (hlen >= cap) {
        why_set(why, whycap, "setting mail.from", "its domain is too long");
        return KR_EINVAL;
    }
    memcpy(host, at + 1, hlen);
    host[hlen] = '\0';
    return KR_OK;
}

static kr_err settings_load(const struct compose_opts *o, struct compose_set *s, char *why,
                            size_t whycap)
{
    char host[KR_MAIL_SETTING_MAX + 1];
    kr_err err =
        setting("mail.from", o->from, DEFAULT_FROM, KR_MAIL_FROM_MAX, &s->from, why, whycap);
    if (!err)
        err = from_check(s->from, host, sizeof host, why, whycap);
    if (!err)
        err = setting("mail.msgid_host", o->msgid_host, host, KR_MAIL_HOST_MAX, &s->msgid_host, why,
                      whycap);
    if (!err && strpbrk(s->msgid_host, " <>@\"")) {
        why_set(why, whycap, "setting mail.msgid_host", "not a host name");
        err = KR_EINVAL;
    }
    if (!err)
        err = setting("mail.payment_url", o->payment_url, "", KR_MAIL_SETTING_MAX, &s->payment_url,
                      why, whycap);
    char ph[48];
    if (!err && !placeholders_ok(s->payment_url, true, ph, sizeof ph)) {
        char what[80];
        snprintf(what, sizeof what, "unknown placeholder %s", ph);
        why_set(why, whycap, "setting mail.payment_url", what);
        err = KR_EINVAL;
    }
    if (!err)
        err = setting("service.login_url", o->login_url, "", KR_MAIL_SETTING_MAX, &s->login_url,
                      why, whycap);
    if (!err)
        err = setting("service.support", o->support, "", KR_MAIL_SETTING_MAX, &s->support, why,
                      whycap);
    return err;
}

/* Every message of template i fits KR_MAIL_TEXT_MAX whatever its values
 * (the Japanese body, the rule and the English body), so compose_message
 * never fails for size and no message can block the outbox. */
static kr_err fits(const char *dir, const struct compose_set *s, int i, char *why, size_t whycap)
{
    size_t ja = worst_case(s->t[COMPOSE_LANG_JA][i].body);
    size_t en = worst_case(s->t[COMPOSE_LANG_EN][i].body);
    if (ja + en + sizeof ENGLISH_RULE + 8 <= KR_MAIL_TEXT_MAX)
        return KR_OK;
    char what[KR_PATH_MAX + 64];
    snprintf(what, sizeof what, "%s/{ja,en}/%s.txt", dir, kr_enums[KR_ENUM_TEMPLATE].values[i]);
    why_set(why, whycap, what,
            "the body could exceed KR_MAIL_TEXT_MAX bytes with the longest values");
    return KR_ETOOLARGE;
}

kr_err compose_load(const struct compose_opts *o, struct compose_set **out, char *why,
                    size_t whycap)
{
    *out = NULL;
    if (why && whycap)
        why[0] = '\0';
    struct compose_set *s = calloc(1, sizeof *s);
    if (!s)
        return KR_ENOMEM;
    const char *dir =
        o->templates_dir && *o->templates_dir ? o->templates_dir : KR_TEMPLATES_DIR_DEFAULT;
    kr_err err = settings_load(o, s, why, whycap);
    for (int l = 0; l < COMPOSE_LANG__COUNT && !err; l++)
        for (int i = 0; i < KR_TEMPLATE__COUNT && !err; i++)
            err = tmpl_load(dir, (enum compose_lang)l, i, &s->t[l][i], why, whycap);
    for (int i = 0; i < KR_TEMPLATE__COUNT && !err; i++)
        err = fits(dir, s, i, why, whycap);
    if (err) {
        compose_free(s);
        return err;
    }
    *out = s;
    return KR_OK;
}

void compose_free(struct compose_set *s)
{
    if (!s)
        return;
    for (int l = 0; l < COMPOSE_LANG__COUNT; l++)
        for (int i = 0; i < KR_TEMPLATE__COUNT; i++) {
            free(s->t[l][i].subject);
            free(s->t[l][i].body);
        }
    free(s->from);
    free(s->msgid_host);
    free(s->payment_url);
    free(s->login_url);
    free(s->support);
    free(s);
}

/* ---- Capped buffers ---- */

struct buf {
    char *p;
    size_t n, cap; /* cap includes room for the NUL */
    bool over;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->over || n >= b->cap - b->n) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Text with line ends made CRLF (LF, CR and CRLF each become CRLF); in a
 * one-line text (the subject) every line end and tab becomes a space. */
static void put_text(struct buf *b, const char *s, size_t n, bool one_line)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' || s[i] == '\n') {
            if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
                i++;
            puts_(b, one_line ? " " : "\r\n");
        } else if (one_line && s[i] == '\t') {
            puts_(b, " ");
        } else {
            put(b, &s[i], 1);
        }
    }
}

/* ---- Values ---- */

static void jst_tm(uint64_t ns, struct tm *tm)
{
    time_t t = (time_t)(ns / 1000000000ull) + (time_t)9 * 3600;
    gmtime_r(&t, tm);
}

static void put_time(struct buf *b, uint64_t ns, enum compose_lang lang)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char s[80];
    struct tm tm;
    jst_tm(ns, &tm);
    if (lang == COMPOSE_LANG_JA)
        snprintf(s, sizeof s, "%04d年%d月%d日 %02d:%02d (日本時間)", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
    else
        snprintf(s, sizeof s, "%d %s %04d %02d:%02d JST (UTC+9)", tm.tm_mday,
                 months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min);
    puts_(b, s);
}

static void put_payment_url(struct buf *b, const struct compose_set *s, const char *app)
{
    const char *u = s->payment_url;
    if (!*u) {
        puts_(b, "-");
        return;
    }
    for (const char *p; (p = strstr(u, "{application}")); u = p + 13) {
        put(b, u, (size_t)(p - u));
        puts_(b, app ? app : "-");
    }
    puts_(b, u);
}

static void put_str(struct buf *b, const char *v, bool one_line)
{
    if (!v || !*v)
        v = "-";
    put_text(b, v, strlen(v), one_line);
}

static void put_enum(struct buf *b, const char *const *names, int count, int v)
{
    puts_(b, v >= 0 && v < count ? names[v] : "-");
}

static void put_ph(struct buf *b, const struct compose_set *s, const struct compose_msg *m,
                   enum compose_lang lang, int ph, bool one_line)
{
    const struct compose_values *v = &m->v;
    uint64_t t = 0;
    switch (ph) {
    case PH_CODE:
        put_str(b, v->code, one_line);
        return;
    case PH_TENANT_NAME:
        put_str(b, v->tenant_name, one_line);
        return;
    case PH_TENANT_CODE:
        put_str(b, v->tenant_code, one_line);
        return;
    case PH_LOGIN_URL:
        put_str(b, s->login_url, one_line);
        return;
    case PH_SUPPORT:
        put_str(b, s->support, one_line);
        return;
    case PH_PAYMENT_URL:
        put_payment_url(b, s, v->application_hex);
        return;
    case PH_TITLE:
        put_str(b, v->title, one_line);
        return;
    case PH_BODY:
        put_str(b, v->body, one_line);
        return;
    case PH_SUMMARY:
        put_str(b, v->summary, one_line);
        return;
    case PH_NOTICE_KIND:
        put_enum(b, notice_kinds[lang], KR_NOTICE_KIND__COUNT, v->notice_kind);
        return;
    case PH_SEVERITY:
        put_enum(b, severities[lang], KR_SEVERITY__COUNT, v->severity);
        return;
    case PH_CODE_EXPIRES:
        t = v->code_expires;
        break;
    case PH_EFFECTIVE:
        t = v->effective;
        break;
    case PH_DETECTED:
        t = v->detected;
        break;
    case PH_DEADLINE:
        t = v->deadline;
        break;
    default:
        break;
    }
    if (t)
        put_time(b, t, lang);
    else
        puts_(b, "-");
}

/* Expands template text (checked at load: every '{' opens a known
 * placeholder) into b. */
static void expand(struct buf *b, const struct compose_set *s, const struct compose_msg *m,
                   enum compose_lang lang, const char *text, bool one_line)
{
    for (const char *p; (p = strchr(text, '{'));) {
        put_text(b, text, (size_t)(p - text), one_line);
        const char *e = strchr(p, '}');
        put_ph(b, s, m, lang, ph_lookup(p + 1, (size_t)(e - p - 1)), one_line);
        text = e + 1;
    }
    put_text(b, text, strlen(text), one_line);
}

/* ---- Encoding ---- */

/* The subject as RFC 2047 encoded-words of at most KR_MAIL_WORD_BYTES bytes
 * each, whole characters, folded one per line. */
static void put_subject(struct buf *b, const char *subj, size_t n)
{
    char enc[sodium_base64_ENCODED_LEN(KR_MAIL_WORD_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    puts_(b, "Subject:");
    if (n == 0)
        puts_(b, " ");
    for (size_t i = 0; i < n;) {
        size_t take = n - i < KR_MAIL_WORD_BYTES ? n - i : KR_MAIL_WORD_BYTES;
        while (take < n - i && take > 0 && ((unsigned char)subj[i + take] & 0xc0) == 0x80)
            take--; /* never split a character */
        sodium_bin2base64(enc, sizeof enc, (const unsigned char *)subj + i, take,
                          sodium_base64_VARIANT_ORIGINAL);
        puts_(b, i ? "\r\n =?UTF-8?B?" : " =?UTF-8?B?");
        puts_(b, enc);
        puts_(b, "?=");
        i += take;
    }
    puts_(b, "\r\n");
}

/* The body in base64, lines of KR_MAIL_B64_LINE characters. */
static void put_body_b64(struct buf *b, const char *text, size_t n)
{
    /* KR_MAIL_B64_LINE characters of base64 hold 3/4 as many bytes */
    enum { CHUNK = KR_MAIL_B64_LINE / 4 * 3 };
    char enc[sodium_base64_ENCODED_LEN(CHUNK, sodium_base64_VARIANT_ORIGINAL)];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t take = n - i < CHUNK ? n - i : CHUNK;
        sodium_bin2base64(enc, sizeof enc, (const unsigned char *)text + i, take,
                          sodium_base64_VARIANT_ORIGINAL);
        puts_(b, enc);
        puts_(b, "\r\n");
    }
    sodium_memzero(enc, sizeof enc);
}

/* "Thu, 26 Nov 2026 12:32:49 +0900" for UTC nanoseconds ns. */
static void put_date(struct buf *b, uint64_t ns)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char s[64];
    struct tm tm;
    jst_tm(ns, &tm);
    snprintf(s, sizeof s, "Date: %s, %02d %s %04d %02d:%02d:%02d +0900\r\n", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    puts_(b, s);
}

static bool recipient_ok(const char *to)
{
    size_t n = strlen(to);
    if (n == 0 || n > KR_FLD_EMAIL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (to[i] <= 0x20 || to[i] > 0x7e || strchr("<>,\"", to[i]))
            return false;
    return true;
}

static void put_headers(struct buf *b, const struct compose_set *s, const struct compose_msg *m,
                        const struct buf *subj)
{
    char hex[33];
    sodium_bin2hex(hex, sizeof hex, m->message, 16);
    put_date(b, m->date);
    puts_(b, "From: ");
    puts_(b, s->from);
    puts_(b, "\r\nTo: <");
    puts_(b, m->to);
    puts_(b, ">\r\n");
    put_subject(b, subj->p, subj->n);
    puts_(b, "Message-ID: <");
    puts_(b, hex);
    puts_(b, "@");
    puts_(b, s->msgid_host);
    puts_(b, ">\r\n"
             "MIME-Version: 1.0\r\n"
             "Content-Type: text/plain; charset=UTF-8\r\n"
             "Content-Transfer-Encoding: base64\r\n"
             "\r\n");
}

/* A whole message fits KR_MAIL_MESSAGE_MAX: the headers (a subject of
 * KR_MAIL_SUBJECT_MAX bytes in encoded-words, at most 61 characters per
 * KR_MAIL_WORD_BYTES, the recipient, From, the host, the rest under 512
 * bytes) and the body text in base64 lines (78 bytes per 57). */
_Static_assert((KR_MAIL_SUBJECT_MAX / KR_MAIL_WORD_BYTES + 1) * 62 + KR_FLD_EMAIL_MAX +
                       KR_MAIL_FROM_MAX + KR_MAIL_HOST_MAX + 512 +
                       (KR_MAIL_TEXT_MAX / (KR_MAIL_B64_LINE / 4 * 3) + 1) *
                           (KR_MAIL_B64_LINE + 2) <
                   KR_MAIL_MESSAGE_MAX,
               "compose: KR_MAIL_MESSAGE_MAX holds every message");

kr_err compose_message(const struct compose_set *s, const struct compose_msg *m, char *out,
                       size_t cap, size_t *n)
{
    *n = 0;
    if (cap == 0)
        return KR_ETOOLARGE;
    out[0] = '\0';
    if (m->template_id < 0 || m->template_id >= KR_TEMPLATE__COUNT || m->lang < 0 ||
        m->lang >= COMPOSE_LANG__COUNT || !m->to || !recipient_ok(m->to))
        return KR_EINVAL;
    char subject[KR_MAIL_SUBJECT_MAX + 1];
    struct buf sb = {.p = subject, .cap = sizeof subject};
    struct buf tb = {.p = malloc(KR_MAIL_TEXT_MAX + 1), .cap = KR_MAIL_TEXT_MAX + 1};
    if (!tb.p)
        return KR_ENOMEM;
    subject[0] = tb.p[0] = '\0';
    expand(&sb, s, m, m->lang, s->t[m->lang][m->template_id].subject, true);
    expand(&tb, s, m, m->lang, s->t[m->lang][m->template_id].body, false);
    if (m->lang == COMPOSE_LANG_JA) { /* the English after the Japanese */
        puts_(&tb, "\r\n" ENGLISH_RULE "\r\n\r\n");
        expand(&tb, s, m, COMPOSE_LANG_EN, s->t[COMPOSE_LANG_EN][m->template_id].body, false);
    }
    struct buf ob = {.p = out, .cap = cap};
    put_headers(&ob, s, m, &sb);
    put_body_b64(&ob, tb.p, tb.n);
    kr_err err = sb.over || tb.over || ob.over ? KR_ETOOLARGE : KR_OK;
    sodium_memzero(subject, sizeof subject);
    sodium_memzero(tb.p, tb.cap);
    free(tb.p);
    if (err) {
        sodium_memzero(out, cap);
        return err;
    }
    *n = ob.n;
    return KR_OK;
}

/* ---- The set in use ---- */

static const struct compose_set *installed;
static struct compose_set *fallback;
static pthread_once_t fallback_once = PTHREAD_ONCE_INIT;

static void fallback_load(void)
{
    struct compose_opts o = {0};
    char why[256];
    if (compose_load(&o, &fallback, why, sizeof why))
        fprintf(stderr, "kiroku: mail templates: %s\n", why);
}

const struct compose_set *compose_current(void)
{
    if (installed)
        return installed;
    pthread_once(&fallback_once, fallback_load);
    return fallback;
}

void compose_install(const struct compose_set *s)
{
    installed = s;
}
