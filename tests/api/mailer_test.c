/*
 * mailer_test.c: the e-mail delivery worker (api/mailer.c). Every recipient
 * is held to the addr-spec rule where the .eml is written: an address stored
 * before that rule (one '@', printable, so "victim,attacker@evil.example"
 * decodes) is refused, recorded as outbox.refused with the reason, never
 * written, and leaves the pending list; good messages go on being written.
 */
#include "accounts.h"
#include "mailer.h"
#include "notices.h"
#include "test_domain.h"
#include "test_util.h"

#include <dirent.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define BAD_TO "victim,attacker@evil.example"

struct mb {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void mb_init(struct mb *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mb_str(struct mb *m, const char *s)
{
    msgpack_pack_str(&m->pk, strlen(s));
    msgpack_pack_str_body(&m->pk, s, strlen(s));
}

static void mb_bin(struct mb *m, const void *b, size_t n)
{
    msgpack_pack_bin(&m->pk, n);
    msgpack_pack_bin_body(&m->pk, b, n);
}

/* Appends an outbox.queued of tenant to address `to`, sealed by hand as
 * payload.h says (the encoder would refuse it now): what a journal written
 * before the addr-spec rule holds. */
static void queue_legacy(struct td *t, uint64_t tenant, const uint8_t msg[16], const char *to)
{
    const int ev = KR_EV_OUTBOX_QUEUED;
    const char *type = kr_events[ev].name;
    char stream[KR_STREAM_MAX + 1];
    memcpy(stream, "outbox/", 7);
    sodium_bin2hex(stream + 7, 33, msg, 16);
    size_t sl = strlen(stream);
    uint8_t ad[256], sealed[512];
    size_t n = 0, slen;
    memcpy(ad, "kiroku.pd.v1", 12);
    n = 12;
    for (int i = 7; i >= 0; i--)
        ad[n++] = (uint8_t)(tenant >> (8 * i));
    ad[n++] = (uint8_t)sl;
    memcpy(ad + n, stream, sl);
    n += sl;
    memcpy(ad + n, type, strlen(type));
    n += strlen(type);
    struct mb in, m;
    mb_init(&in);
    msgpack_pack_map(&in.pk, 1);
    mb_str(&in, kr_fields[KR_FLD_EMAIL].name);
    mb_str(&in, to);
    struct kr_data_key key;
    assert_int_equal(ks_get(t->d->ks, tenant, &key), KR_OK);
    assert_int_equal(
        kr_seal(&key, NULL, ad, n, in.sb.data, in.sb.size, sealed, sizeof sealed, &slen), KR_OK);
    kr_data_key_wipe(&key);
    msgpack_sbuffer_destroy(&in.sb);
    mb_init(&m);
    msgpack_pack_map(&m.pk, 3);
    mb_str(&m, kr_fields[KR_FLD_MESSAGE].name);
    mb_bin(&m, msg, 16);
    mb_str(&m, kr_fields[KR_FLD_TEMPLATE].name);
    mb_str(&m, kr_enums[KR_ENUM_TEMPLATE].values[KR_TEMPLATE_AUTH_CODE]);
    mb_str(&m, "pd");
    mb_bin(&m, sealed, slen);
    struct jrn_event e = {
        .tenant = tenant,
        .stream = stream,
        .stream_len = sl,
        .type = type,
        .type_len = strlen(type),
        .actor = JRN_SYSTEM_ACTOR,
        .actor_len = strlen(JRN_SYSTEM_ACTOR),
        .payload = (const uint8_t *)m.sb.data,
        .payload_len = m.sb.size,
    };
    assert_int_equal(jrn_append(t->d->j, &e, 1), KR_OK);
    msgpack_sbuffer_destroy(&m.sb);
}

/* The outbox.refused records of tenant: how many, and the last's reason. */
static unsigned refused(struct td *t, uint64_t tenant, const uint8_t msg[16], char reason[256])
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = 1};
    struct jrn_cursor *cur;
    struct jrn_record r;
    struct kr_payload *p = kr_payload_new();
    unsigned n = 0;
    assert_non_null(p);
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &cur), KR_OK);
    while (jrn_cursor_next(cur, &r) == KR_OK) {
        if (r.tenant != tenant || kr_event_lookup(r.type, r.type_len) != KR_EV_OUTBOX_REFUSED)
            continue;
        assert_int_equal(kr_event_decode(KR_EV_OUTBOX_REFUSED, &r, NULL, p, NULL), KR_OK);
        assert_memory_equal(p->v[KR_FLD_MESSAGE].p, msg, 16);
        const struct kr_value *v = &p->v[KR_FLD_REASON];
        memcpy(reason, v->p, v->n);
        reason[v->n] = '\0';
        n++;
    }
    jrn_cursor_free(cur);
    kr_payload_free(p);
    return n;
}

static unsigned eml_files(const char *dir)
{
    DIR *dh = opendir(dir);
    unsigned n = 0;
    assert_non_null(dh);
    for (struct dirent *e; (e = readdir(dh)) != NULL;)
        n += strlen(e->d_name) > 4 && strcmp(e->d_name + strlen(e->d_name) - 4, ".eml") == 0;
    closedir(dh);
    return n;
}

static void test_stored_bad_recipient_refused(void **state)
{
    (void)state;
    struct td *t = td_new(5);
    struct kr_caller anon = td_anonymous(), op = td_operator();
    uint8_t app[16], msg[16];
    uint64_t tenant;
    char reason[256], dir[600];

    kr_set_str(td_args(t), KR_FLD_EMAIL, "good@shop.example.jp");
    assert_int_equal(td_exec(t, &anon, KR_OP_SIGNUP_APPLY), KR_OK);
    td_get_id(t, "application", app);
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, "pay-1");
    assert_int_equal(td_exec(t, &op, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_OK); /* a good e-mail */
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(va_signup_tenant(&t->d->views, txn, app, &tenant), KR_OK);
    mdb_txn_abort(txn);

    memset(msg, 0x5a, sizeof msg);
    queue_legacy(t, tenant, msg, BAD_TO);

    size_t written = 0;
    assert_int_equal(mailer_run(t->d, &written), KR_OK);
    assert_int_equal(written, 2); /* the good ones only: the payment link, the auth code */
    snprintf(dir, sizeof dir, "%s/outbox", t->dir);
    assert_int_equal(eml_files(dir), 2);
    assert_false(td_dir_contains(dir, "attacker", 8));
    assert_int_equal(refused(t, tenant, msg, reason), 1);
    assert_non_null(strstr(reason, "not a single e-mail address"));
    assert_null(strstr(reason, "attacker")); /* the reason never holds the address */

    /* It left the pending list: the next round neither writes nor records it. */
    assert_int_equal(mailer_run(t->d, &written), KR_OK);
    assert_int_equal(written, 0);
    assert_int_equal(refused(t, tenant, msg, reason), 1);
    assert_int_equal(eml_files(dir), 2);
    td_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stored_bad_recipient_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
