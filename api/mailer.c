/*
 * mailer.c: the e-mail delivery worker (see mailer.h).
 *
 * Design notes. outbox_pending hands messages over inside a read
 * transaction, so a round first copies what each message needs (bounded by
 * KR_OUTBOX_BATCH_MAX) and writes the files after the transaction ended.
 * The copies hold auth codes: they are wiped when the round ends. Times in
 * the Date: header are Japan Standard Time (+0900), computed from the
 * domain's clock without libc's time-zone state.
 *
 * Over SMTP, nothing about a message's retries lives in memory or in a
 * view: its stream (outbox/{message}) holds outbox.queued and one
 * outbox.failed per failed attempt, so the number of attempts is the count
 * of those, the next attempt is due a backoff after the newest record, and
 * the give-up time runs from the first. Each failure is appended on the
 * stream version it was decided on, so two senders never record the same
 * attempt twice. A round reads that stream for each pending message (at
 * most KR_MAILER_SCAN_MAX a round); messages waiting for their time cost
 * one short read each.
 */
#include "mailer.h"

#include "accounts.h"
#include "compose.h"
#include "kr_limits.h"
#include "mail_info.h"
#include "notices.h"
#include "payload.h"
#include "schema.h"
#include "smtp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
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
_Static_assert(KR_FLD_EMAIL_MAX <= KR_SMTP_ADDRESS_MAX, "smtp_send: recipient");

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

/* The whole message of it, composed from the installed templates
 * (compose_current) with what the views say of its tenant, notice or
 * incident, into *text (KR_MAIL_MESSAGE_MAX bytes, malloc'd: release it
 * with free_text), its length in *n. The Message-ID comes from the message
 * id alone: every attempt carries the same one. */
static kr_err compose_item(struct kr_domain *d, const struct mail_item *it, char **text, size_t *n)
{
    *text = NULL;
    *n = 0;
    const struct compose_set *cs = compose_current();
    if (!cs)
        return KR_ENOTFOUND; /* no templates: compose_current said why */
    char *buf = malloc(KR_MAIL_MESSAGE_MAX);
    struct mail_info *info = malloc(sizeof *info);
    kr_err err = buf && info ? KR_OK : KR_ENOMEM;
    if (!err)
        err = mail_info_get(d, it->tenant, it->has_incident ? it->incident : NULL,
                            it->has_notice ? it->notice : NULL, info);
    if (!err) {
        struct compose_msg cm;
        mail_values(d, it, info, &cm);
        err = compose_message(cs, &cm, buf, KR_MAIL_MESSAGE_MAX, n);
    }
    if (info) {
        sodium_memzero(info, sizeof *info);
        free(info);
    }
    if (err) {
        free(buf); /* compose_message wiped what it wrote */
        return err;
    }
    *text = buf;
    return KR_OK;
}

/* Wipes and frees a message compose_item made (it holds auth codes). */
static void free_text(char *text)
{
    if (text) {
        sodium_memzero(text, KR_MAIL_MESSAGE_MAX);
        free(text);
    }
}

static kr_err write_mail(struct kr_domain *d, int dirfd, const struct mail_item *it)
{
    char hex[33], name[96], tmp[112];
    sodium_bin2hex(hex, sizeof hex, it->message, 16);
    snprintf(name, sizeof name, "%" PRIu64 "-%s.eml", it->seq, hex);
    snprintf(tmp, sizeof tmp, ".tmp-%s", name);
    char *text;
    size_t n;
    kr_err err = compose_item(d, it, &text, &n);
    if (err)
        return err;
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    err = fd < 0 ? kr_err_from_errno(errno) : KR_OK;
    if (!err)
        err = write_all(fd, text, n);
    free_text(text);
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

/* Queues the notice-of-change e-mails owed, a bounded number of batches. */
static kr_err queue_notices(struct kr_domain *d)
{
    size_t queued;
    kr_err err;
    for (unsigned i = 0; i < KR_MAILER_NOTICE_ROUNDS; i++) {
        if ((err = dom_notice_mail(d, 0, &queued)))
            return err;
        if (queued == 0)
            break;
    }
    return KR_OK;
}

/* Handles an item whose recipient breaks the addr-spec rule: records the
 * refusal. true if it was refused (err says whether that worked). */
static bool refused_item(struct kr_domain *d, const struct mail_item *it, kr_err *err)
{
    struct kr_diag why;
    *err = KR_OK;
    if (recipient_ok(it, &why))
        return false;
    *err = refuse_mail(d, it, &why);
    if (*err == KR_ECONFLICT) /* another sender handled it meanwhile */
        *err = KR_OK;
    return true;
}

/* No relay: writes each message of b as a file and records it sent. */
static kr_err write_batch(struct kr_domain *d, struct mail_batch *b, struct mailer_stats *st)
{
    char dir[KR_PATH_MAX + 16];
    kr_err err = outbox_dir(d, dir, sizeof dir);
    if (err)
        return err;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return kr_err_from_errno(errno);
    for (size_t i = 0; i < b->n && !err; i++) {
        if (refused_item(d, &b->items[i], &err))
            continue;
        if ((err = write_mail(d, dirfd, &b->items[i])))
            break;
        /* The rename is durable before the message counts as handed over. */
        if (fsync(dirfd) != 0) {
            err = kr_err_from_errno(errno);
            break;
        }
        st->written++;
        err = dom_outbox_sent(d, b->items[i].tenant, b->items[i].message);
        if (err == KR_ECONFLICT) /* another sender recorded it meanwhile */
            err = KR_OK;
    }
    close(dirfd);
    return err;
}

/* ---- Delivery over SMTP ---- */

/* An e-mail's delivery history, read from its stream (outbox/{message}):
 * the outbox.queued record, then one outbox.failed per failed attempt. */
struct mail_sched {
    uint64_t version;   /* the stream's, for appending the next record */
    uint64_t queued_ns; /* when it was queued */
    uint64_t last_ns;   /* the newest record's time */
    uint64_t failures;  /* outbox.failed records */
};

static kr_err read_sched(struct kr_domain *d, const struct mail_item *it, struct mail_sched *s)
{
    char stream[7 + 33];
    memcpy(stream, "outbox/", 7);
    sodium_bin2hex(stream + 7, 33, it->message, 16);
    struct jrn_query q = {.kind = JRN_Q_STREAM,
                          .from = 1,
                          .tenant = it->tenant,
                          .stream = stream,
                          .stream_len = strlen(stream)};
    struct jrn_cursor *cur;
    struct jrn_record r;
    memset(s, 0, sizeof *s);
    kr_err err = jrn_cursor_new(d->j, &q, &cur);
    if (err)
        return err;
    for (unsigned i = 0; i < KR_MAILER_STREAM_MAX && !(err = jrn_cursor_next(cur, &r)); i++) {
        if (s->version == 0)
            s->queued_ns = r.time_ns;
        s->version = r.version;
        s->last_ns = r.time_ns;
        if (kr_event_lookup(r.type, r.type_len) == KR_EV_OUTBOX_FAILED)
            s->failures++;
    }
    jrn_cursor_free(cur);
    if (err == KR_ENOTFOUND)
        err = KR_OK;
    if (!err && s->version == 0)
        err = KR_ECORRUPT; /* pending, yet no record in its stream */
    return err;
}

/* The backoff after the k-th failure (k >= 1), in ns. */
static uint64_t backoff_ns(const struct mailer_options *o, uint64_t k)
{
    uint64_t lo = o->retry_min_s ? o->retry_min_s : 60, hi = o->retry_max_s ? o->retry_max_s : 3600;
    uint64_t s = lo;
    for (uint64_t i = 1; i < k && s < hi; i++)
        s *= 2;
    if (s > hi)
        s = hi;
    return s * 1000000000ull;
}

/* Records a failed attempt of it (outbox.failed) on the stream version s saw:
 * a racing sender's record makes it KR_ECONFLICT, which is dropped. */
static kr_err record_failure(struct kr_domain *d, const struct mail_item *it,
                             const struct mail_sched *s, const char *reason, bool permanent)
{
    struct kr_payload *p = kr_payload_new();
    if (!p)
        return KR_ENOMEM;
    kr_payload_reset(p, KR_EV_OUTBOX_FAILED);
    kr_set_bytes(p, KR_FLD_MESSAGE, it->message, 16);
    kr_set_u64(p, KR_FLD_DELIVERY_ATTEMPT, s->failures + 1);
    kr_set_str(p, KR_FLD_REASON, reason[0] ? reason : "failed");
    kr_set_bool(p, KR_FLD_PERMANENT, permanent);
    uint64_t version = s->version;
    kr_err err = dom_append_plain(d, it->tenant, JRN_SYSTEM_ACTOR, p, &version, NULL);
    kr_payload_free(p);
    fprintf(stderr,
            "kiroku: mailer: message of record %" PRIu64 " (tenant %" PRIu64 "), attempt %" PRIu64
            ": %s%s\n",
            it->seq, it->tenant, s->failures + 1, reason, permanent ? " (permanent)" : "");
    return err == KR_ECONFLICT ? KR_OK : err;
}

/* One message over the relay, if due. *relay_down: the relay could not be
 * reached or timed out, so the round should stop. */
static kr_err deliver_one(struct kr_domain *d, const struct mailer_options *o,
                          const struct mail_item *it, struct mailer_stats *st, bool *relay_down)
{
    struct mail_sched s;
    kr_err err = read_sched(d, it, &s);
    if (err)
        return err;
    uint64_t now = kr_clock_now(d->clock);
    uint64_t give_up = (o->give_up_s ? o->give_up_s : (uint64_t)3 * 86400) * 1000000000u;
    if (s.failures > 0 && now < s.last_ns + backoff_ns(o, s.failures)) {
        st->waiting++;
        return KR_OK;
    }
    if (s.failures > 0 && now >= s.queued_ns + give_up) {
        char reason[96];
        snprintf(reason, sizeof reason, "not delivered within %" PRIu64 " hours of queuing",
                 (uint64_t)(give_up / 3600000000000ull));
        st->failed++;
        return record_failure(d, it, &s, reason, true);
    }
    char *text;
    size_t n;
    struct smtp_failure f;
    if ((err = compose_item(d, it, &text, &n)))
        return err;
    err = smtp_send(&o->relay, it->to, (const uint8_t *)text, n, &f);
    free_text(text);
    if (err == KR_OK) {
        st->delivered++;
        err = dom_outbox_sent(d, it->tenant, it->message);
        return err == KR_ECONFLICT ? KR_OK : err;
    }
    if (err != KR_EIO)
        return err;
    st->failed++;
    /* No refusal came (no connection, a timeout, a drop): the next messages
     * would wait for the same relay. */
    *relay_down = !f.permanent && f.reply < 400;
    return record_failure(d, it, &s, f.reason, f.permanent);
}

/* With a relay: each message of b that is due, over SMTP. */
static kr_err send_batch(struct kr_domain *d, const struct mailer_options *o, struct mail_batch *b,
                         struct mailer_stats *st, bool *relay_down, const atomic_bool *stop)
{
    kr_err err = KR_OK;
    for (size_t i = 0; i < b->n && !err && !*relay_down && !(stop && atomic_load(stop)); i++) {
        if (refused_item(d, &b->items[i], &err))
            continue;
        err = deliver_one(d, o, &b->items[i], st, relay_down);
    }
    return err;
}

static bool has_relay(const struct mailer_options *o)
{
    return o && o->relay.url && o->relay.url[0];
}

/* mailer_round; with a relay it ends between two messages once *stop (may
 * be NULL) is set. */
static kr_err round_until(struct kr_domain *d, const struct mailer_options *o,
                          struct mailer_stats *st, const atomic_bool *stop)
{
    struct mailer_stats dummy;
    if (!st)
        st = &dummy;
    memset(st, 0, sizeof *st);
    kr_err err = queue_notices(d);
    if (err)
        return err;
    struct mail_batch b = {.cap = KR_OUTBOX_BATCH_MAX};
    b.items = calloc(b.cap, sizeof *b.items);
    if (!b.items)
        return KR_ENOMEM;
    uint64_t after = 0, last = 0;
    size_t scanned = 0;
    bool relay_down = false;
    do {
        b.n = 0;
        if ((err = outbox_pending(d, after, b.cap, collect, &b, &last)) || b.n == 0)
            break;
        scanned += b.n;
        err = has_relay(o) ? send_batch(d, o, &b, st, &relay_down, stop) : write_batch(d, &b, st);
        sodium_memzero(b.items, b.cap * sizeof *b.items);
        after = last;
    } while (!err && !relay_down && has_relay(o) && b.n == b.cap && scanned < KR_MAILER_SCAN_MAX &&
             !(stop && atomic_load(stop)));
    sodium_memzero(b.items, b.cap * sizeof *b.items);
    free(b.items);
    return err;
}

kr_err mailer_round(struct kr_domain *d, const struct mailer_options *o, struct mailer_stats *st)
{
    return round_until(d, o, st, NULL);
}

kr_err mailer_run(struct kr_domain *d, size_t *written)
{
    struct mailer_stats st;
    kr_err err = mailer_round(d, NULL, &st);
    if (written)
        *written = st.written;
    return err;
}

/* Whether file name is one the mailer writes: "<seq>-<hex>.eml" or its
 * temporary ".tmp-<seq>-<hex>.eml". */
static bool mail_file_name(const char *name)
{
    size_t n = strlen(name);
    if (n < 5 || strcmp(name + n - 4, ".eml") != 0)
        return false;
    if (!strncmp(name, ".tmp-", 5))
        name += 5;
    return name[0] >= '0' && name[0] <= '9' && strchr(name, '-') != NULL;
}

kr_err mailer_prune_files(struct kr_domain *d, uint64_t max_age_ns, size_t *deleted)
{
    char dir[KR_PATH_MAX + 16];
    size_t count = 0, seen = 0;
    if (deleted)
        *deleted = 0;
    if ((size_t)snprintf(dir, sizeof dir, "%s/outbox", d->dir) >= sizeof dir)
        return KR_ETOOLARGE;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dirfd < 0)
        return errno == ENOENT ? KR_OK : kr_err_from_errno(errno);
    DIR *dh = fdopendir(dirfd);
    if (!dh) {
        close(dirfd);
        return kr_err_from_errno(errno);
    }
    uint64_t now = kr_clock_now(d->clock);
    kr_err err = KR_OK;
    for (struct dirent *e; !err && (e = readdir(dh)) != NULL;) {
        if (++seen > KR_RETENTION_OUTBOX_FILES_MAX)
            break; /* the rest wait for the next day */
        struct stat st;
        if (!mail_file_name(e->d_name) ||
            fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        uint64_t mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
        if (mtime + max_age_ns > now)
            continue;
        if (unlinkat(dirfd, e->d_name, 0) != 0 && errno != ENOENT)
            err = kr_err_from_errno(errno);
        else
            count++;
    }
    if (!err && count > 0 && fsync(dirfd) != 0)
        err = kr_err_from_errno(errno);
    closedir(dh);
    if (deleted)
        *deleted = count;
    return err;
}

/* ---- The worker thread ---- */

struct mailer {
    struct kr_domain *d;
    struct mailer_options o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kicked;
    atomic_bool stopping; /* stop, read by a round without the lock */
    kr_err last_err;      /* reported once until it changes */
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
        report(m, round_until(m->d, &m->o, NULL, &m->stopping));
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
    /* The last round writes the .eml files owed; a relay's e-mails wait for
     * the next start rather than hold the stop up (at most one timeout). */
    if (!has_relay(&m->o))
        report(m, mailer_round(m->d, &m->o, NULL));
    return NULL;
}

kr_err mailer_start(struct kr_domain *d, const struct mailer_options *o, struct mailer **out)
{
    *out = NULL;
    if (has_relay(o) && smtp_global_init() != KR_OK)
        return KR_EIO;
    struct mailer *m = calloc(1, sizeof *m);
    if (!m)
        return KR_ENOMEM;
    m->d = d;
    if (o)
        m->o = *o;
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
    atomic_store(&m->stopping, true);
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
