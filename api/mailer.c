/*
 * mailer.c: the e-mail delivery worker (see mailer.h).
 *
 * Design notes. outbox_pending hands messages over inside a read
 * transaction, so a round first copies what each message needs (bounded by
 * KR_OUTBOX_BATCH_MAX) and writes the files after the transaction ended.
 * The copies hold auth codes: they are wiped when the round ends. Times in
 * the Date: header are Japan Standard Time (+0900), computed from the
 * domain's clock without libc's time-zone state.
 */
#include "mailer.h"

#include "accounts.h"
#include "compose.h"
#include "kr_limits.h"
#include "mail_info.h"
#include "notices.h"
#include "payload.h"
#include "schema.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One pending message, copied out of the read transaction. */
struct mail_item {
    uint64_t seq;
    uint64_t queued; /* UTC ns */
    uint64_t tenant;
    uint8_t message[16];
    uint8_t template_id;
    /* Each string field with its NUL, as the schema bounds it (copy_str keeps
     * a value only if it fits). */
    char to[KR_FLD_EMAIL_MAX + 1];
    uint32_t to_n; /* its length; 0 if missing or too long */
    char code[KR_FLD_AUTH_CODE_MAX + 1];
    char tenant_code[KR_FLD_TENANT_CODE_MAX + 1];
    uint8_t incident[16], notice[16];
    bool has_incident, has_notice;
    char application[33]; /* the sign-up's id in hex, or "" */
    int language;         /* enum kr_enum_language, or -1 if the message has none */
};

struct mail_batch {
    struct mail_item *items;
    size_t n, cap;
};

static void copy_str(char *out, size_t cap, const struct kr_value *v)
{
    out[0] = '\0';
    if (!v->set || !v->p || v->n >= cap)
        return;
    memcpy(out, v->p, v->n);
    out[v->n] = '\0';
}

static bool collect(void *arg, const struct outbox_msg *m)
{
    struct mail_batch *b = arg;
    if (b->n == b->cap)
        return false;
    struct mail_item *it = &b->items[b->n];
    memset(it, 0, sizeof *it);
    it->seq = m->seq;
    it->queued = m->time;
    it->tenant = m->tenant;
    memcpy(it->message, m->message, 16);
    it->template_id = m->template_id;
    copy_str(it->to, sizeof it->to, &m->p->v[KR_FLD_EMAIL]);
    it->to_n = it->to[0] ? m->p->v[KR_FLD_EMAIL].n : 0;
    copy_str(it->code, sizeof it->code, &m->p->v[KR_FLD_AUTH_CODE]);
    copy_str(it->tenant_code, sizeof it->tenant_code, &m->p->v[KR_FLD_TENANT_CODE]);
    if ((it->has_incident = m->p->v[KR_FLD_INCIDENT].set && m->p->v[KR_FLD_INCIDENT].n == 16))
        memcpy(it->incident, m->p->v[KR_FLD_INCIDENT].p, 16);
    if ((it->has_notice = m->p->v[KR_FLD_NOTICE].set && m->p->v[KR_FLD_NOTICE].n == 16))
        memcpy(it->notice, m->p->v[KR_FLD_NOTICE].p, 16);
    const struct kr_value *app = &m->p->v[KR_FLD_APPLICATION];
    if (app->set && app->p && app->n == 16)
        sodium_bin2hex(it->application, sizeof it->application, app->p, 16);
    const struct kr_value *lang = &m->p->v[KR_FLD_LANGUAGE];
    it->language = lang->set && lang->u < KR_LANGUAGE__COUNT ? (int)lang->u : -1;
    b->n++;
    return true;
}

/* The values compose_message fills in: what the message carries, and what
 * the views say about its tenant, incident or notice (info). */
static void mail_values(const struct kr_domain *d, const struct mail_item *it,
                        const struct mail_info *info, struct compose_msg *cm)
{
    memset(cm, 0, sizeof *cm);
    cm->template_id = it->template_id;
    /* the message's language, else its tenant's, else Japanese */
    int lang = it->language >= 0 ? it->language : info->language;
    cm->lang = lang == KR_LANGUAGE_EN ? COMPOSE_LANG_EN : COMPOSE_LANG_JA;
    cm->to = it->to;
    cm->date = kr_clock_now(d->clock);
    memcpy(cm->message, it->message, 16);
    struct compose_values *v = &cm->v;
    v->code = it->code[0] ? it->code : NULL;
    v->tenant_code = it->tenant_code[0] ? it->tenant_code : NULL;
    v->application_hex = it->application[0] ? it->application : NULL;
    if (v->code && it->queued)
        v->code_expires = it->queued + KR_AUTH_CODE_TTL_NS;
    v->tenant_name = info->tenant_name[0] ? info->tenant_name : NULL;
    v->title = info->title[0] ? info->title : NULL;
    v->body = info->body[0] ? info->body : NULL;
    v->summary = info->summary[0] ? info->summary : NULL;
    v->effective = info->effective;
    v->detected = info->detected;
    v->deadline = info->deadline;
    v->notice_kind = info->notice_kind;
    v->severity = info->severity;
}

static kr_err write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return kr_err_from_errno(w < 0 ? errno : EIO);
        p += w;
        n -= (size_t)w;
    }
    return KR_OK;
}

/* DIR/outbox, made 0700 if missing, into out. */
static kr_err outbox_dir(const struct kr_domain *d, char *out, size_t cap)
{
    if ((size_t)snprintf(out, cap, "%s/outbox", d->dir) >= cap)
        return KR_ETOOLARGE;
    if (mkdir(out, 0700) != 0 && errno != EEXIST)
        return kr_err_from_errno(errno);
    struct stat st;
    if (lstat(out, &st) != 0)
        return kr_err_from_errno(errno);
    if (!S_ISDIR(st.st_mode))
        return KR_EIO;
    if ((st.st_mode & 0777) != 0700 && chmod(out, 0700) != 0)
        return kr_err_from_errno(errno);
    return KR_OK;
}

/* Whether it's recipient is one addr-spec (the rule every new address is
 * held to, payload.c's through kr_value_check): an address stored before
 * that rule may hold '<', ',' or '"' and become several recipients in To:.
 * *why says which part of the rule failed (never the address). */
static bool recipient_ok(const struct mail_item *it, struct kr_diag *why)
{
    struct kr_value v = {.set = true, .p = (const uint8_t *)it->to, .n = it->to_n};
    memset(why, 0, sizeof *why);
    if (v.n == 0) {
        snprintf(why->why, sizeof why->why, "no recipient, or one too long");
        return false;
    }
    return kr_value_check(KR_FLD_EMAIL, &v, why) == KR_OK;
}

/* Records that message it was refused (outbox.refused, reason), so it
 * leaves the pending list unsent; the operator's log says so too. */
static kr_err refuse_mail(struct kr_domain *d, const struct mail_item *it,
                          const struct kr_diag *why)
{
    char reason[64 + sizeof why->why];
    snprintf(reason, sizeof reason, "recipient is not a single e-mail address: %s",
             why->why[0] ? why->why : "refused");
    fprintf(stderr,
            "kiroku: mailer: message of record %" PRIu64 " (tenant %" PRIu64 ") not sent: %s\n",
            it->seq, it->tenant, reason);
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    kr_payload_reset(p, KR_EV_OUTBOX_REFUSED);
    kr_set_bytes(p, KR_FLD_MESSAGE, it->message, 16);
    kr_set_str(p, KR_FLD_REASON, reason);
    char stream[KR_STREAM_MAX + 1];
    size_t slen;
    uint64_t version;
    kr_err err = kr_event_stream(p, stream, sizeof stream, &slen);
    if (!err && !(err = jrn_stream_version(d->j, it->tenant, stream, slen, &version)))
        err = dom_append_plain(d, it->tenant, JRN_SYSTEM_ACTOR, p, &version, NULL);
    kr_payload_free(p);
    return err;
}

static kr_err write_mail(struct kr_domain *d, int dirfd, const struct mail_item *it)
{
    char hex[33], name[96], tmp[112];
    sodium_bin2hex(hex, sizeof hex, it->message, 16);
    snprintf(name, sizeof name, "%" PRIu64 "-%s.eml", it->seq, hex);
    snprintf(tmp, sizeof tmp, ".tmp-%s", name);
    const struct compose_set *cs = compose_current();
    if (!cs)
        return KR_ENOTFOUND; /* no templates: compose_current said why */
    char *text = malloc(KR_MAIL_MESSAGE_MAX);
    struct mail_info *info = malloc(sizeof *info);
    kr_err cerr = text && info ? KR_OK : KR_ENOMEM;
    size_t n = 0;
    if (!cerr)
        cerr = mail_info_get(d, it->tenant, it->has_incident ? it->incident : NULL,
                             it->has_notice ? it->notice : NULL, info);
    if (!cerr) {
        struct compose_msg cm;
        mail_values(d, it, info, &cm);
        cerr = compose_message(cs, &cm, text, KR_MAIL_MESSAGE_MAX, &n);
    }
    if (info) {
        sodium_memzero(info, sizeof *info);
        free(info);
    }
    if (cerr) {
        free(text);
        return cerr;
    }
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    kr_err err = fd < 0 ? kr_err_from_errno(errno) : KR_OK;
    if (!err)
        err = write_all(fd, text, n);
    sodium_memzero(text, KR_MAIL_MESSAGE_MAX);
    free(text);
    if (!err && fsync(fd) != 0)
        err = kr_err_from_errno(errno);
    if (fd >= 0 && close(fd) != 0 && !err)
        err = kr_err_from_errno(errno);
    if (!err && renameat(dirfd, tmp, dirfd, name) != 0)
        err = kr_err_from_errno(errno);
    if (err && fd >= 0)
        unlinkat(dirfd, tmp, 0);
    return err;
}

kr_err mailer_run(struct kr_domain *d, size_t *written)
{
    size_t queued, count = 0;
    kr_err err = KR_OK;
    if (written)
        *written = 0;
    for (unsigned i = 0; i < KR_MAILER_NOTICE_ROUNDS; i++) {
        if ((err = dom_notice_mail(d, 0, &queued)))
            return err;
        if (queued == 0)
            break;
    }
    struct mail_batch b = {.cap = KR_OUTBOX_BATCH_MAX};
    b.items = calloc(b.cap, sizeof *b.items);
    if (!b.items)
        return KR_ENOMEM;
    if ((err = outbox_pending(d, 0, b.cap, collect, &b, NULL)))
        goto out;
    if (b.n == 0)
        goto out;
    char dir[KR_PATH_MAX + 16];
    if ((err = outbox_dir(d, dir, sizeof dir)))
        goto out;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        err = kr_err_from_errno(errno);
        goto out;
    }
    for (size_t i = 0; i < b.n && !err; i++) {
        struct kr_diag why;
        if (!recipient_ok(&b.items[i], &why)) {
            err = refuse_mail(d, &b.items[i], &why);
            if (err == KR_ECONFLICT) /* another sender handled it meanwhile */
                err = KR_OK;
            continue;
        }
        if ((err = write_mail(d, dirfd, &b.items[i])))
            break;
        /* The rename is durable before the message counts as handed over. */
        if (fsync(dirfd) != 0) {
            err = kr_err_from_errno(errno);
            break;
        }
        count++;
        err = dom_outbox_sent(d, b.items[i].tenant, b.items[i].message);
        if (err == KR_ECONFLICT) /* another sender recorded it meanwhile */
            err = KR_OK;
    }
    close(dirfd);
out:
    sodium_memzero(b.items, b.cap * sizeof *b.items);
    free(b.items);
    if (written)
        *written = count;
    return err;
}

/* ---- The worker thread ---- */

struct mailer {
    struct kr_domain *d;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kicked;
    kr_err last_err; /* reported once until it changes */
};

static void report(struct mailer *m, kr_err err)
{
    if (err && err != m->last_err)
        fprintf(stderr, "kiroku: mailer: %s\n", kr_strerror(err));
    m->last_err = err;
}

static void *mailer_main(void *arg)
{
    struct mailer *m = arg;
    pthread_setname_np(pthread_self(), "kr-mailer");
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        pthread_mutex_unlock(&m->mu);
        report(m, mailer_run(m->d, NULL));
        pthread_mutex_lock(&m->mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += KR_MAILER_PERIOD_MS / 1000;
        until.tv_nsec += (long)(KR_MAILER_PERIOD_MS % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!m->stop && !m->kicked)
            if (pthread_cond_timedwait(&m->cv, &m->mu, &until) == ETIMEDOUT)
                break;
        m->kicked = false;
    }
    pthread_mutex_unlock(&m->mu);
    report(m, mailer_run(m->d, NULL)); /* the last round */
    return NULL;
}

kr_err mailer_start(struct kr_domain *d, struct mailer **out)
{
    *out = NULL;
    struct mailer *m = calloc(1, sizeof *m);
    if (!m)
        return KR_ENOMEM;
    m->d = d;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&m->thread, NULL, mailer_main, m) != 0) {
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return KR_EIO;
    }
    *out = m;
    return KR_OK;
}

void mailer_kick(struct mailer *m)
{
    pthread_mutex_lock(&m->mu);
    m->kicked = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

void mailer_stop(struct mailer *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
