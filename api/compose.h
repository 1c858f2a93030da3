/*
 * compose.h: the e-mails' content. Templates kept as files are loaded once
 * at start (compose_load) and every outbox message is written from one of
 * them as a whole RFC 5322 message (compose_message).
 *
 * Templates: DIR/ja/<template>.txt and DIR/en/<template>.txt, one for every
 * value of the schema's `template` enum (auth_code, account_info, ...). A
 * file is UTF-8: its first line is "Subject: ...", then one empty line, then
 * the body. Both may hold placeholders {name} from the fixed list below;
 * loading refuses a missing file, a file without the Subject line and the
 * empty line, a file over KR_MAIL_TEMPLATE_MAX bytes, bytes that are not
 * UTF-8 or control characters, an unknown or unclosed placeholder, and a
 * template whose message could outgrow KR_MAIL_SUBJECT_MAX or
 * KR_MAIL_TEXT_MAX with the longest values the schema allows (so a loaded
 * set never fails a message for its size, and no message blocks the
 * outbox), with a message naming the file and what is wrong.
 *
 * Placeholders (a value the message does not have is written as "-"):
 *   {code} {code_expires}          the sign-up auth code and its expiry
 *   {tenant_name} {tenant_code}    the tenant
 *   {login_url} {support}          settings service.login_url, service.support
 *   {payment_url}                  setting mail.payment_url with {application}
 *                                  replaced by the application id (hex)
 *   {notice_kind}                  the notice's kind as a title, in the
 *                                  template's language ("脆弱性のお知らせ")
 *   {title} {body} {summary}       the notice's or incident's texts
 *   {severity}                     the incident's severity, in the language
 *   {effective} {detected} {deadline}  times in Japan Standard Time
 *                                  ("2026年12月6日 09:00 (日本時間)",
 *                                  "6 Dec 2026 09:00 JST (UTC+9)")
 *
 * Language: a message in Japanese (COMPOSE_LANG_JA, every tenant's default)
 * has the Japanese subject, and the Japanese body followed by the English
 * one under a "----- English -----" line, so a reader without Japanese is
 * not left out; a message in English has the English subject and body only.
 *
 * The message: Date (JST, +0900), From (setting mail.from), To <addr>,
 * Subject as RFC 2047 encoded-words (UTF-8, base64), Message-ID
 * <message-id-hex@host>, MIME-Version, Content-Type text/plain;
 * charset=UTF-8, Content-Transfer-Encoding base64; every line ends in CRLF
 * and has at most 76 characters. Values never reach a header raw (the
 * subject is encoded, the body base64), so CR or LF in a value cannot add a
 * header; in the subject CR, LF and tabs become spaces. The recipient must
 * be printable ASCII without spaces or <>, (KR_EINVAL otherwise); the
 * caller also holds it to the addr-spec rule (mailer.c).
 *
 * Secrets: messages hold auth codes. compose_message wipes its scratch
 * buffers; the caller wipes out. Nothing here logs.
 */
#ifndef KR_API_COMPOSE_H
#define KR_API_COMPOSE_H

#include "kr_error.h"

#include <stddef.h>
#include <stdint.h>

/* The languages of a message: the tenant's language (default Japanese). */
enum compose_lang { COMPOSE_LANG_JA, COMPOSE_LANG_EN, COMPOSE_LANG__COUNT };

/* Settings the messages use (from kiroku serve's configuration). Strings are
 * copied by compose_load; NULL or "" takes the default. */
struct compose_opts {
    const char *templates_dir; /* mail.templates_dir; default KR_TEMPLATES_DIR_DEFAULT */
    const char *from;          /* mail.from; default "kiroku <noreply@kiroku.invalid>" */
    const char *msgid_host;    /* right of '@' in Message-ID; default the domain of from */
    const char *payment_url;   /* mail.payment_url, with {application} */
    const char *login_url;     /* service.login_url */
    const char *support;       /* service.support: an address or a page */
};

/* The templates and settings, read-only once loaded (threads may share it). */
struct compose_set;

/* Loads every template of every language from o->templates_dir and checks
 * the settings (no control characters; from in the form "Name <addr>" or
 * "addr"). Errors: KR_ENOTFOUND (a file missing), KR_EINVAL (a template or
 * setting malformed, e.g. an unknown placeholder), KR_ETOOLARGE, KR_EKEY (a
 * symlink or non-regular file), KR_EIO, KR_ENOMEM; why (cap bytes, may be
 * NULL) then says which file or setting and what is wrong. */
KR_MUST_CHECK kr_err compose_load(const struct compose_opts *o, struct compose_set **out, char *why,
                                  size_t whycap);
void compose_free(struct compose_set *s); /* accepts NULL */

/* One message's values. Strings are UTF-8 (NULL: unknown, written "-");
 * times are UTC nanoseconds (0: unknown); enums are the schema's values
 * (-1: unknown). */
struct compose_values {
    const char *code, *tenant_name, *tenant_code, *application_hex;
    const char *title, *body, *summary;
    uint64_t code_expires, effective, detected, deadline;
    int notice_kind; /* enum kr_enum_notice_kind */
    int severity;    /* enum kr_enum_severity */
};

struct compose_msg {
    int template_id; /* enum kr_enum_template */
    enum compose_lang lang;
    const char *to;      /* the recipient's address */
    uint64_t date;       /* UTC ns, for the Date: header */
    uint8_t message[16]; /* the outbox message id, for the Message-ID */
    struct compose_values v;
};

/* Writes the whole message into out (cap bytes, NUL-terminated), its length
 * in *n. Errors: KR_EINVAL (template id or language out of range, a bad
 * recipient), KR_ETOOLARGE (the message does not fit cap: never with a cap
 * of KR_MAIL_MESSAGE_MAX and values within the schema's bounds); out is
 * wiped on error. */
KR_MUST_CHECK kr_err compose_message(const struct compose_set *s, const struct compose_msg *m,
                                     char *out, size_t cap, size_t *n);

/* The set the delivery worker uses: the one compose_install gave, else the
 * default templates (KR_TEMPLATES_DIR_DEFAULT, default settings) loaded on
 * first use. NULL if those cannot be loaded (why said on stderr once). */
const struct compose_set *compose_current(void);

/* Makes s the set compose_current returns (kiroku serve calls it at start,
 * before the server starts; s must outlive every delivery). Not
 * thread-safe against a running delivery worker. */
void compose_install(const struct compose_set *s);

#endif
