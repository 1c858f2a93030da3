/*
 * smtp.h: hands one e-mail to an SMTP relay (libcurl), for the delivery
 * worker (mailer.h).
 *
 * One call is one SMTP session: connect, EHLO, STARTTLS as configured, AUTH
 * when a user is set, MAIL FROM, RCPT TO (one recipient), DATA with the
 * message's bytes (curl dot-stuffs them), QUIT. The outcome is delivered
 * (the relay answered 250 after DATA), a temporary failure (a 4xx reply, no
 * connection, a timeout, a connection closed before the reply, TLS or login
 * trouble: worth trying again) or a permanent one (a 5xx reply to MAIL, RCPT
 * or DATA: the relay will never take it).
 *
 * Secrets: the password is handed to curl and never logged; the message
 * holds auth codes and is never logged either; a failure's reason names the
 * reply code or curl's error, never the message or the recipient.
 *
 * Threads: smtp_global_init once before any thread sends (curl's global
 * state); then any thread may call smtp_send, each call with its own curl
 * handle.
 */
#ifndef KR_API_SMTP_H
#define KR_API_SMTP_H

#include "kr_error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How STARTTLS is used on an smtp:// URL (smtps:// is TLS from the start). */
enum smtp_starttls {
    SMTP_STARTTLS_REQUIRED, /* refuse to send in clear: a relay not offering it fails */
    SMTP_STARTTLS_OPTIONAL, /* upgrade when offered, else send in clear */
    SMTP_STARTTLS_OFF,      /* never upgrade (a relay on loopback) */
};

/* The relay. Strings are borrowed for the call. */
struct smtp_options {
    const char *url; /* smtp://host[:port] or smtps://host[:port]; required */
    enum smtp_starttls starttls;
    const char *user;     /* NULL or "" = no AUTH */
    const char *password; /* with user */
    const char *from;     /* envelope sender, an addr-spec (mail.from) */
    const char *ca_file;  /* NULL = the system's CAs; peers are always verified */
    unsigned timeout_s;   /* the whole session at most; 0 = KR_SMTP_TIMEOUT_S_DEFAULT; at most
                             KR_SMTP_TIMEOUT_S_MAX */
};

/* What a failed send learnt. */
struct smtp_failure {
    bool permanent;
    long reply;       /* the relay's last reply code, 0 if none */
    char reason[160]; /* "relay replied 550", "timed out", ...: no personal data */
};

/* Parses "required", "optional", "off". false for anything else. */
bool smtp_starttls_parse(const char *s, enum smtp_starttls *out);

/* Initialises curl's global state. KR_EIO if curl cannot start. */
KR_MUST_CHECK kr_err smtp_global_init(void);

/* Sends msg (n bytes, an RFC 5322 message with CRLF line ends) to rcpt (an
 * addr-spec) through the relay o. KR_OK: the relay acknowledged it.
 * KR_EIO: it did not; *f says why and whether it is permanent. KR_EINVAL:
 * o is unusable (no URL or sender, a URL that is not smtp:// or smtps://,
 * a CR or LF in an address); KR_ENOMEM. */
KR_MUST_CHECK kr_err smtp_send(const struct smtp_options *o, const char *rcpt, const uint8_t *msg,
                               size_t n, struct smtp_failure *f);

#endif
