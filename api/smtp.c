/*
 * smtp.c: hands one e-mail to an SMTP relay with libcurl (see smtp.h).
 *
 * Design notes. curl's SMTP client does the protocol (EHLO, STARTTLS,
 * AUTH, dot-stuffing of DATA); this module sets it up with bounds (one
 * recipient, a timeout for the whole session, only smtp/smtps, no
 * redirects, no signals from a worker thread) and sorts curl's outcome into
 * delivered, temporary and permanent. The reply code of the relay is the
 * last SMTP reply curl read (CURLINFO_RESPONSE_CODE).
 */
#include "smtp.h"

#include "kr_limits.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

bool smtp_starttls_parse(const char *s, enum smtp_starttls *out)
{
    if (!strcmp(s, "required"))
        *out = SMTP_STARTTLS_REQUIRED;
    else if (!strcmp(s, "optional"))
        *out = SMTP_STARTTLS_OPTIONAL;
    else if (!strcmp(s, "off"))
        *out = SMTP_STARTTLS_OFF;
    else
        return false;
    return true;
}

kr_err smtp_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? KR_OK : KR_EIO;
}

/* The message as curl reads it for DATA. */
struct smtp_body {
    const uint8_t *p;
    size_t n, off;
};

static size_t body_read(char *buf, size_t size, size_t nitems, void *arg)
{
    struct smtp_body *b = arg;
    size_t room = size * nitems, left = b->n - b->off;
    size_t k = left < room ? left : room;
    memcpy(buf, b->p + b->off, k);
    b->off += k;
    return k;
}

/* An address curl may put in MAIL FROM or RCPT TO: bounded, printable, no
 * space or angle bracket (which would end the command early). */
static bool address_ok(const char *a)
{
    size_t n = strlen(a);
    if (n == 0 || n > KR_SMTP_ADDRESS_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)a[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '<' || ch == '>')
            return false;
    }
    return true;
}

static bool url_ok(const char *u)
{
    return u && (!strncmp(u, "smtp://", 7) || !strncmp(u, "smtps://", 8)) &&
           strlen(u) <= KR_SMTP_URL_MAX;
}

/* Whether a 5xx reply means the relay will never take this message: auth
 * replies (530, 534, 535, 538) are our configuration, worth fixing and
 * retrying. */
static bool permanent_reply(long reply)
{
    if (reply < 500 || reply > 599)
        return false;
    return reply != 530 && reply != 534 && reply != 535 && reply != 538;
}

/* Sorts a failed transfer into *f. */
static void classify(CURLcode rc, long reply, struct smtp_failure *f)
{
    f->reply = reply;
    f->permanent = false;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(f->reason, sizeof f->reason, "timed out (last reply %ld)", reply);
        return;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(f->reason, sizeof f->reason, "could not connect to the relay: %s",
                 curl_easy_strerror(rc));
        return;
    case CURLE_USE_SSL_FAILED:
        snprintf(f->reason, sizeof f->reason, "the relay did not offer STARTTLS (required)");
        return;
    case CURLE_LOGIN_DENIED:
        snprintf(f->reason, sizeof f->reason, "the relay refused the login");
        return;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
        if (reply >= 400 && reply <= 599) {
            f->permanent = permanent_reply(reply);
            snprintf(f->reason, sizeof f->reason, "the relay replied %ld", reply);
            return;
        }
        break;
    default:
        break;
    }
    snprintf(f->reason, sizeof f->reason, "%s (last reply %ld)", curl_easy_strerror(rc), reply);
}

/* Sets the options of one session on h; rcpts and body are the caller's. */
static CURLcode setup(CURL *h, const struct smtp_options *o, char *from, struct curl_slist *rcpts,
                      struct smtp_body *body)
{
    unsigned t = o->timeout_s ? o->timeout_s : KR_SMTP_TIMEOUT_S_DEFAULT;
    long timeout = (long)(t < KR_SMTP_TIMEOUT_S_MAX ? t : KR_SMTP_TIMEOUT_S_MAX);
    long tls = CURLUSESSL_ALL;
    if (o->starttls == SMTP_STARTTLS_OPTIONAL)
        tls = CURLUSESSL_TRY;
    else if (o->starttls == SMTP_STARTTLS_OFF)
        tls = CURLUSESSL_NONE;
    if (!strncmp(o->url, "smtps://", 8))
        tls = CURLUSESSL_ALL;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, o->url);
    SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT, timeout);
    SET(CURLOPT_CONNECTTIMEOUT, timeout);
    /* Each reply, too: curl waits 120 s for the reply after DATA otherwise,
     * whatever CURLOPT_TIMEOUT says. */
    SET(CURLOPT_SERVER_RESPONSE_TIMEOUT, timeout);
    SET(CURLOPT_USE_SSL, tls);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_file && *o->ca_file)
        SET(CURLOPT_CAINFO, o->ca_file);
    if (o->user && *o->user) {
        SET(CURLOPT_USERNAME, o->user);
        SET(CURLOPT_PASSWORD, o->password ? o->password : "");
    }
    SET(CURLOPT_MAIL_FROM, from);
    SET(CURLOPT_MAIL_RCPT, rcpts);
    SET(CURLOPT_READFUNCTION, body_read);
    SET(CURLOPT_READDATA, body);
    SET(CURLOPT_UPLOAD, 1L);
    SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)body->n);
#undef SET
    return rc;
}

kr_err smtp_send(const struct smtp_options *o, const char *rcpt, const uint8_t *msg, size_t n,
                 struct smtp_failure *f)
{
    char from[KR_SMTP_ADDRESS_MAX + 3], to[KR_SMTP_ADDRESS_MAX + 3];
    memset(f, 0, sizeof *f);
    if (!url_ok(o->url) || !o->from || !address_ok(o->from) || !address_ok(rcpt))
        return KR_EINVAL;
    snprintf(from, sizeof from, "<%s>", o->from);
    snprintf(to, sizeof to, "<%s>", rcpt);
    struct curl_slist *rcpts = curl_slist_append(NULL, to);
    CURL *h = rcpts ? curl_easy_init() : NULL;
    if (!h) {
        curl_slist_free_all(rcpts);
        return KR_ENOMEM;
    }
    struct smtp_body body = {.p = msg, .n = n};
    CURLcode rc = setup(h, o, from, rcpts, &body);
    if (rc != CURLE_OK) {
        curl_easy_cleanup(h);
        curl_slist_free_all(rcpts);
        return rc == CURLE_OUT_OF_MEMORY ? KR_ENOMEM : KR_EINVAL;
    }
    rc = curl_easy_perform(h);
    long reply = 0;
    (void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply);
    curl_easy_cleanup(h);
    curl_slist_free_all(rcpts);
    if (rc == CURLE_OK)
        return KR_OK;
    classify(rc, reply, f);
    return KR_EIO;
}
