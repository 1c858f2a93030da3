/*
 * contacts_test.c: the contact, tag and attribute ops (cmd_contacts.c) and
 * their views (v_contacts.c): every handler's happy path and rejections,
 * tenant isolation, paging, the tag-name race, replay determinism, and
 * personal data never stored in clear.
 */
#include "contacts.h"
#include "test_domain.h"
#include "test_util.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define PERM(p) (1ull << KR_PERMISSION_##p)

/* Two signed-up tenants, each with its master, and users of tenant 1. */
struct fx {
    struct td *t;
    uint64_t t1, t2;
    struct kr_caller m1, m2;
    struct kr_caller reader; /* tenant 1 user: contacts.read only */
    struct kr_caller nobody; /* tenant 1 user: no permissions */
    struct kr_caller writer; /* tenant 1 user: contacts.write, tags.write, attributes.write */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->t = td_new(42);
    f->t1 = td_signup(f->t, "owner1@example.jp", "correct horse 1", &f->m1, NULL);
    f->t2 = td_signup(f->t, "owner2@example.jp", "correct horse 2", &f->m2, NULL);
    assert_int_not_equal(f->t1, f->t2);
    uint8_t acc[16];
    memset(acc, 0xa1, 16);
    f->reader = td_account(f->t1, acc, KR_ROLE_USER, PERM(CONTACTS_READ));
    memset(acc, 0xa2, 16);
    f->nobody = td_account(f->t1, acc, KR_ROLE_USER, 0);
    memset(acc, 0xa3, 16);
    f->writer = td_account(f->t1, acc, KR_ROLE_USER,
                           PERM(CONTACTS_WRITE) | PERM(TAGS_WRITE) | PERM(ATTRIBUTES_WRITE));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    td_free(f->t);
    free(f);
    return 0;
}

/* Runs op and checks its error, naming the diagnostics when it differs. */
#define EXPECT(t, who, op, want)                                                                   \
    do {                                                                                           \
        kr_err got_ = td_exec((t), (who), (op));                                                   \
        if (got_ != (want))                                                                        \
            fail_msg("%s: got %s, want %s (%s: %s)", kr_ops[op].name, kr_strerror(got_),           \
                     kr_strerror(want), (t)->diag.field, (t)->diag.why);                           \
    } while (0)

/* Runs op, expecting error want on field `field` (NULL: any), and that nothing
 * was appended. */
static void expect_reject(struct td *t, const struct kr_caller *who, int op, kr_err want,
                          const char *field)
{
    uint64_t before = jrn_size(t->d->j);
    kr_err got = td_exec(t, who, op);
    if (got != want)
        fail_msg("%s: got %s, want %s (%s: %s)", kr_ops[op].name, kr_strerror(got),
                 kr_strerror(want), t->diag.field, t->diag.why);
    if (field)
        assert_string_equal(t->diag.field, field);
    /* A denial of access may be recorded (an audit event); nothing else may be. */
    if (want != KR_EFORBIDDEN && want != KR_EAUTH)
        assert_true(td_unchanged_since(t, before));
}

static void reg(struct td *t, const struct kr_caller *who, const char *name, uint8_t id[16])
{
    kr_set_str(td_args(t), KR_FLD_NAME, name);
    EXPECT(t, who, KR_OP_CONTACTS_REGISTER, KR_OK);
    td_get_id(t, "contact", id);
    assert_int_equal(td_get_u64(t, "version"), 1);
}

static void mktag(struct td *t, const struct kr_caller *who, const char *name, uint8_t id[16])
{
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, name);
    EXPECT(t, who, KR_OP_TAGS_CREATE, KR_OK);
    td_get_id(t, "tag", id);
    assert_int_equal(td_get_u64(t, "version"), 1);
}

static uint64_t tag_on(struct td *t, const struct kr_caller *who, const uint8_t c[16],
                       const uint8_t tag[16])
{
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_bytes(a, KR_FLD_TAG, tag, 16);
    EXPECT(t, who, KR_OP_CONTACTS_TAG, KR_OK);
    return td_get_u64(t, "version");
}

static void mkattr(struct td *t, const struct kr_caller *who, const char *key, int type,
                   uint8_t id[16])
{
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, key);
    kr_set_u64(a, KR_FLD_ATTRIBUTE_TYPE, (uint64_t)type);
    EXPECT(t, who, KR_OP_ATTRIBUTES_DEFINE, KR_OK);
    td_get_id(t, "attribute", id);
}

/* contacts.get of c into t->result. */
static void get(struct td *t, const struct kr_caller *who, const uint8_t c[16])
{
    kr_set_bytes(td_args(t), KR_FLD_CONTACT, c, 16);
    EXPECT(t, who, KR_OP_CONTACTS_GET, KR_OK);
}

static void assert_str(const msgpack_object *o, const char *want)
{
    assert_non_null(o);
    if (!want) {
        assert_int_equal(o->type, MSGPACK_OBJECT_NIL);
        return;
    }
    assert_int_equal(o->type, MSGPACK_OBJECT_STR);
    assert_int_equal(o->via.str.size, strlen(want));
    assert_memory_equal(o->via.str.ptr, want, strlen(want));
}

static const msgpack_object *list_of(const struct td *t, const char *name)
{
    const msgpack_object *o = td_get(t, name);
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
    return o;
}

static bool bin_is(const msgpack_object *o, const uint8_t id[16])
{
    return o && o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == 16 &&
           memcmp(o->via.bin.ptr, id, 16) == 0;
}

/* ---- contacts.register / get ---- */

static void test_register_and_get(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t c[16], c2[16];
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_NAME, "山田 太郎");
    kr_set_str(a, KR_FLD_NAME_KANA, "やまだ たろう");
    kr_set_str(a, KR_FLD_EMAIL, "taro@example.jp");
    kr_set_str(a, KR_FLD_PHONE, "+81 90-1234-5678");
    kr_set_str(a, KR_FLD_LINE_USER_ID, "U1234abcd");
    kr_set_str(a, KR_FLD_NOTE, "prefers e-mail");
    EXPECT(t, &f->writer, KR_OP_CONTACTS_REGISTER, KR_OK);
    td_get_id(t, "contact", c);
    assert_int_equal(td_get_u64(t, "version"), 1);
    assert_int_equal(t->result.data.via.map.size, 2);

    get(t, &f->reader, c);
    assert_true(bin_is(td_get(t, "contact"), c));
    assert_int_equal(td_get_u64(t, "version"), 1);
    assert_str(td_get(t, "name"), "山田 太郎");
    assert_str(td_get(t, "name_kana"), "やまだ たろう");
    assert_str(td_get(t, "email"), "taro@example.jp");
    assert_str(td_get(t, "phone"), "+81 90-1234-5678");
    assert_str(td_get(t, "line_user_id"), "U1234abcd");
    assert_str(td_get(t, "note"), "prefers e-mail");
    assert_int_equal(list_of(t, "tags")->via.array.size, 0);
    assert_int_equal(list_of(t, "attributes")->via.array.size, 0);
    assert_int_equal(t->result.data.via.map.size, 10);

    /* Only the name: the other fields are nil. */
    reg(t, &f->m1, "Only Name", c2);
    assert_memory_not_equal(c, c2, 16);
    get(t, &f->m1, c2);
    assert_str(td_get(t, "name"), "Only Name");
    assert_str(td_get(t, "email"), NULL);
    assert_str(td_get(t, "note"), NULL);
}

static void test_register_rejects(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    char long_name[202];

    td_args(t); /* no name */
    expect_reject(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_EINVAL, "name");

    memset(long_name, 'x', 201);
    long_name[201] = '\0';
    kr_set_str(td_args(t), KR_FLD_NAME, long_name);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_ETOOLARGE, "name");
    long_name[200] = '\0'; /* exactly the limit */
    kr_set_str(td_args(t), KR_FLD_NAME, long_name);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_OK);

    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_NAME, "A");
    kr_set_str(a, KR_FLD_PHONE, "call me");
    expect_reject(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_EINVAL, "phone");

    a = td_args(t);
    kr_set_str(a, KR_FLD_NAME, "A");
    kr_set_str(a, KR_FLD_EMAIL, "not-an-address");
    expect_reject(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_EINVAL, "email");

    a = td_args(t); /* wrong type: a number for a string */
    kr_set_u64(a, KR_FLD_NAME, 7);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_EINVAL, "name");

    a = td_args(t); /* a key the op does not take, built in C */
    kr_set_str(a, KR_FLD_NAME, "A");
    kr_set_str(a, KR_FLD_TAG_NAME, "vip");
    expect_reject(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_EINVAL, "tag_name");

    /* Not permitted: a user without contacts.write, even with contacts.read. */
    kr_set_str(td_args(t), KR_FLD_NAME, "A");
    expect_reject(t, &f->reader, KR_OP_CONTACTS_REGISTER, KR_EFORBIDDEN, NULL);
    kr_set_str(td_args(t), KR_FLD_NAME, "A");
    expect_reject(t, &f->nobody, KR_OP_CONTACTS_REGISTER, KR_EFORBIDDEN, NULL);
    struct kr_caller anon = td_anonymous();
    kr_set_str(td_args(t), KR_FLD_NAME, "A");
    expect_reject(t, &anon, KR_OP_CONTACTS_REGISTER, KR_EAUTH, NULL);
}

/* Arguments from the wire: an unknown key is refused by the decoder, a
 * valid map runs. */
static void test_register_wire_args(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct kr_mp_reader r;
    struct kr_diag d;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "name", 4);
    msgpack_pack_str_with_body(&pk, "Wire", 4);
    msgpack_pack_str_with_body(&pk, "bogus", 5);
    msgpack_pack_int(&pk, 1);
    kr_mp_reader_init(&r, sb.data, sb.size, false);
    memset(&d, 0, sizeof d);
    assert_int_equal(kr_args_decode(KR_OP_CONTACTS_REGISTER, &r, td_args(t), &d), KR_EINVAL);
    assert_string_equal(d.field, "bogus");

    /* A nil value for contacts.set is a wrong type, not "clear". */
    sb.size = 0;
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "contact", 7);
    msgpack_pack_bin_with_body(&pk, "0123456789abcdef", 16);
    msgpack_pack_str_with_body(&pk, "attribute_key", 13);
    msgpack_pack_str_with_body(&pk, "vip", 3);
    msgpack_pack_str_with_body(&pk, "value", 5);
    msgpack_pack_nil(&pk);
    kr_mp_reader_init(&r, sb.data, sb.size, false);
    assert_int_equal(kr_args_decode(KR_OP_CONTACTS_SET, &r, td_args(t), &d), KR_EINVAL);
    assert_string_equal(d.field, "value");

    /* A number for a string. */
    sb.size = 0;
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "name", 4);
    msgpack_pack_int(&pk, 7);
    kr_mp_reader_init(&r, sb.data, sb.size, false);
    assert_int_equal(kr_args_decode(KR_OP_CONTACTS_REGISTER, &r, td_args(t), &d), KR_EINVAL);
    assert_string_equal(d.field, "name");

    sb.size = 0;
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "name", 4);
    msgpack_pack_str_with_body(&pk, "Wire", 4);
    kr_mp_reader_init(&r, sb.data, sb.size, false);
    assert_int_equal(kr_args_decode(KR_OP_CONTACTS_REGISTER, &r, td_args(t), &d), KR_OK);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_OK);
    uint8_t c[16];
    td_get_id(t, "contact", c);
    get(t, &f->m1, c);
    assert_str(td_get(t, "name"), "Wire");
    msgpack_sbuffer_destroy(&sb);
}

/* Packs a valid value of every argument of op o but the last `skip` ones,
 * then `bogus` extra keys. */
static void pack_args(msgpack_packer *pk, const struct kr_op_def *o, uint32_t skip, uint32_t bogus)
{
    uint32_t n = o->nargs - skip;
    msgpack_pack_map(pk, n + bogus);
    for (uint32_t j = 0; j < n; j++) {
        int fld = o->args[j].field;
        const struct kr_field_def *fd = &kr_fields[fld];
        msgpack_pack_str_with_body(pk, fd->name, strlen(fd->name));
        switch (fd->type) {
        case KR_FT_ID:
        case KR_FT_BIN:
            msgpack_pack_bin_with_body(pk, "0123456789abcdef", 16);
            break;
        case KR_FT_U64:
            msgpack_pack_uint64(pk, 1);
            break;
        case KR_FT_ENUM:
            msgpack_pack_str_with_body(pk, "bool", 4);
            break;
        case KR_FT_EMAIL:
            msgpack_pack_str_with_body(pk, "a@example.jp", 12);
            break;
        case KR_FT_VALUE:
        case KR_FT_STR:
            if (fd->charset == KR_CS_KEY)
                msgpack_pack_str_with_body(pk, "a1", 2);
            else
                msgpack_pack_str_with_body(pk, "12", 2);
            break;
        default:
            fail_msg("%s: argument %s of an unexpected type", o->name, fd->name);
        }
    }
    for (uint32_t j = 0; j < bogus; j++) {
        msgpack_pack_str_with_body(pk, "bogus", 5);
        msgpack_pack_int(pk, 1);
    }
}

/* Every op of this area takes a map of valid arguments from the wire, and
 * refuses one with a key it does not take, whether the map has one key too
 * many or the unknown key stands in for an optional one. */
static void test_unknown_key_every_op(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    static const int ops[] = {
        KR_OP_CONTACTS_REGISTER, KR_OP_CONTACTS_UPDATE, KR_OP_CONTACTS_DELETE, KR_OP_CONTACTS_GET,
        KR_OP_CONTACTS_LIST,     KR_OP_CONTACTS_TAG,    KR_OP_CONTACTS_UNTAG,  KR_OP_CONTACTS_SET,
        KR_OP_TAGS_CREATE,       KR_OP_TAGS_RENAME,     KR_OP_TAGS_DELETE,     KR_OP_TAGS_LIST,
        KR_OP_ATTRIBUTES_DEFINE, KR_OP_ATTRIBUTES_LIST, KR_OP_UTILITY_EXPORT,
    };
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const struct kr_op_def *o = &kr_ops[ops[i]];
        struct kr_mp_reader r;
        struct kr_diag d;
        for (int variant = 0; variant < 3; variant++) {
            /* 0: valid; 1: one key too many; 2: "bogus" instead of the last argument */
            if (variant == 2 && o->nargs == 0)
                continue;
            sb.size = 0;
            pack_args(&pk, o, variant == 2 ? 1 : 0, variant ? 1 : 0);
            kr_mp_reader_init(&r, sb.data, sb.size, false);
            memset(&d, 0, sizeof d);
            kr_err err = kr_args_decode(ops[i], &r, td_args(t), &d);
            if (variant == 0) {
                if (err != KR_OK)
                    fail_msg("%s: valid arguments refused (%s: %s)", o->name, d.field, d.why);
                continue;
            }
            if (err != KR_EINVAL)
                fail_msg("%s: a map with an unknown key was accepted", o->name);
            const char *want = variant == 1 ? "args" : "bogus";
            if (strcmp(d.field, want) != 0)
                fail_msg("%s: blamed %s, not %s", o->name, d.field, want);
        }
    }
    msgpack_sbuffer_destroy(&sb);
}

/* ---- contacts.update / delete ---- */

static void test_update(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t c[16];
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_NAME, "Before");
    kr_set_str(a, KR_FLD_NOTE, "old note");
    EXPECT(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_OK);
    td_get_id(t, "contact", c);

    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 1);
    kr_set_str(a, KR_FLD_NAME, "After");
    kr_set_str(a, KR_FLD_PHONE, "03-1234-5678");
    EXPECT(t, &f->writer, KR_OP_CONTACTS_UPDATE, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 2);
    get(t, &f->m1, c);
    assert_int_equal(td_get_u64(t, "version"), 2);
    assert_str(td_get(t, "name"), "After");
    assert_str(td_get(t, "phone"), "03-1234-5678");
    assert_str(td_get(t, "note"), NULL); /* full replacement: absent = cleared */

    /* Wrong version: conflict on "version". */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 1);
    kr_set_str(a, KR_FLD_NAME, "Stale");
    expect_reject(t, &f->m1, KR_OP_CONTACTS_UPDATE, KR_ECONFLICT, "version");
    /* Missing version. */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_str(a, KR_FLD_NAME, "No version");
    expect_reject(t, &f->m1, KR_OP_CONTACTS_UPDATE, KR_EINVAL, "version");
    /* Missing name. */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_UPDATE, KR_EINVAL, "name");
    /* Too long a note. */
    char note[2002];
    memset(note, 'n', 2001);
    note[2001] = '\0';
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    kr_set_str(a, KR_FLD_NAME, "N");
    kr_set_str(a, KR_FLD_NOTE, note);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_UPDATE, KR_ETOOLARGE, "note");
    /* An id that is not 16 bytes. */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 15);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    kr_set_str(a, KR_FLD_NAME, "N");
    expect_reject(t, &f->m1, KR_OP_CONTACTS_UPDATE, KR_EINVAL, "contact");
    /* Not permitted. */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    kr_set_str(a, KR_FLD_NAME, "N");
    expect_reject(t, &f->reader, KR_OP_CONTACTS_UPDATE, KR_EFORBIDDEN, NULL);
    /* Another tenant's master: not found, and nothing changes. */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    kr_set_str(a, KR_FLD_NAME, "Hijacked");
    expect_reject(t, &f->m2, KR_OP_CONTACTS_UPDATE, KR_ENOTFOUND, "contact");
    get(t, &f->m1, c);
    assert_str(td_get(t, "name"), "After");
    assert_int_equal(td_get_u64(t, "version"), 2);
}

static void test_delete(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t c[16], keep[16], tag[16], attr[16];
    reg(t, &f->m1, "Gone Soon", c);
    reg(t, &f->m1, "Stays", keep);
    mktag(t, &f->m1, "vip", tag);
    mkattr(t, &f->m1, "rank", KR_ATTRIBUTE_TYPE_NUMBER, attr);
    assert_int_equal(tag_on(t, &f->m1, c, tag), 2);
    tag_on(t, &f->m1, keep, tag);
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, "rank");
    kr_set_value_int(a, KR_FLD_VALUE, 5);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_SET, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 3);

    /* Wrong version, other tenant, not permitted: rejected, nothing changes. */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_DELETE, KR_ECONFLICT, "version");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 3);
    expect_reject(t, &f->m2, KR_OP_CONTACTS_DELETE, KR_ENOTFOUND, "contact");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 3);
    expect_reject(t, &f->reader, KR_OP_CONTACTS_DELETE, KR_EFORBIDDEN, NULL);
    kr_set_bytes(td_args(t), KR_FLD_CONTACT, c, 16);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_DELETE, KR_EINVAL, "version");

    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 3);
    EXPECT(t, &f->writer, KR_OP_CONTACTS_DELETE, KR_OK);
    assert_int_equal(t->result.data.via.map.size, 0);

    kr_set_bytes(td_args(t), KR_FLD_CONTACT, c, 16);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_GET, KR_ENOTFOUND, "contact");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_u64(a, KR_FLD_VERSION, 4);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_DELETE, KR_ENOTFOUND, "contact");

    /* Its tag links (both directions) and attribute values are gone. */
    MDB_txn *txn;
    struct kr_views *v = &t->d->views;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(vc_contact_has_tag(v, txn, f->t1, c, tag), KR_ENOTFOUND);
    assert_int_equal(vc_contact_has_tag(v, txn, f->t1, keep, tag), KR_OK);
    uint64_t seq;
    assert_int_equal(vc_attribute_value(v, txn, f->t1, c, attr, &seq), KR_ENOTFOUND);
    uint8_t prefix[24];
    uint32_t n;
    v_put_u64(prefix, f->t1);
    memcpy(prefix + 8, tag, 16);
    assert_int_equal(vc_count_prefix(v, txn, VIEW_TAG_CONTACTS, prefix, 24, 100, &n), KR_OK);
    assert_int_equal(n, 1);
    mdb_txn_abort(txn);

    kr_set_bytes(td_args(t), KR_FLD_TAG, tag, 16);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_LIST, KR_OK);
    const msgpack_object *l = list_of(t, "contacts");
    assert_int_equal(l->via.array.size, 1);
    assert_true(bin_is(td_map_get(&l->via.array.ptr[0], "contact"), keep));
}

static void test_get_rejects(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t c[16], missing[16];
    reg(t, &f->m1, "Private", c);
    kr_set_bytes(td_args(t), KR_FLD_CONTACT, c, 16);
    expect_reject(t, &f->nobody, KR_OP_CONTACTS_GET, KR_EFORBIDDEN, NULL);
    kr_set_bytes(td_args(t), KR_FLD_CONTACT, c, 16);
    expect_reject(t, &f->writer, KR_OP_CONTACTS_GET, KR_EFORBIDDEN, NULL);
    kr_set_bytes(td_args(t), KR_FLD_CONTACT, c, 16);
    expect_reject(t, &f->m2, KR_OP_CONTACTS_GET, KR_ENOTFOUND, "contact");
    memset(missing, 0x5a, 16);
    kr_set_bytes(td_args(t), KR_FLD_CONTACT, missing, 16);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_GET, KR_ENOTFOUND, "contact");
    kr_set_bytes(td_args(t), KR_FLD_CONTACT, c, 17);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_GET, KR_EINVAL, "contact");
    kr_set_str(td_args(t), KR_FLD_CONTACT, "not an id");
    expect_reject(t, &f->m1, KR_OP_CONTACTS_GET, KR_EINVAL, "contact");
    td_args(t);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_GET, KR_EINVAL, "contact");
}

/* ---- contacts.list / utility.export ---- */

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* Pages through op (with tag when not NULL) `limit` at a time; checks every
 * id of want[0..n) (sorted) comes exactly once, in order. */
static void page_all(struct td *t, const struct kr_caller *who, int op, const uint8_t *tag,
                     uint32_t limit, uint8_t (*want)[16], size_t n)
{
    uint8_t cursor[16];
    bool have_cursor = false;
    size_t seen = 0, pages = 0;
    for (;;) {
        struct kr_payload *a = td_args(t);
        if (tag)
            kr_set_bytes(a, KR_FLD_TAG, tag, 16);
        if (have_cursor)
            kr_set_bytes(a, KR_FLD_CURSOR, cursor, 16);
        kr_set_u64(a, KR_FLD_LIMIT, limit);
        EXPECT(t, who, op, KR_OK);
        pages++;
        const msgpack_object *l = list_of(t, "contacts");
        assert_true(l->via.array.size <= limit);
        for (uint32_t i = 0; i < l->via.array.size; i++) {
            assert_true(seen < n);
            assert_true(bin_is(td_map_get(&l->via.array.ptr[i], "contact"), want[seen]));
            seen++;
        }
        const msgpack_object *cur = td_get(t, "cursor");
        assert_non_null(cur);
        if (cur->type == MSGPACK_OBJECT_NIL)
            break;
        assert_int_equal(l->via.array.size, limit);
        assert_int_equal(cur->type, MSGPACK_OBJECT_BIN);
        assert_int_equal(cur->via.bin.size, 16);
        memcpy(cursor, cur->via.bin.ptr, 16);
        assert_memory_equal(cursor, want[seen - 1], 16);
        have_cursor = true;
    }
    assert_int_equal(seen, n);
    assert_int_equal(pages, n / limit + 1 - (n % limit == 0 && n > 0 ? 1 : 0));
}

static void test_list_paging(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t all[25][16], tagged[13][16], tag[16], other[16];
    char name[32];
    size_t nt = 0;
    mktag(t, &f->m1, "newsletter", tag);
    for (int i = 0; i < 25; i++) {
        snprintf(name, sizeof name, "Contact %02d", i);
        reg(t, &f->m1, name, all[i]);
        if (i % 2 == 0) {
            tag_on(t, &f->m1, all[i], tag);
            memcpy(tagged[nt++], all[i], 16);
        }
    }
    reg(t, &f->m2, "Other tenant's", other);
    qsort(all, 25, 16, id_cmp);
    qsort(tagged, nt, 16, id_cmp);

    page_all(t, &f->reader, KR_OP_CONTACTS_LIST, NULL, 7, all, 25);
    page_all(t, &f->reader, KR_OP_CONTACTS_LIST, NULL, 25, all, 25);
    page_all(t, &f->reader, KR_OP_CONTACTS_LIST, NULL, 5, all, 25);
    page_all(t, &f->m1, KR_OP_CONTACTS_LIST, tag, 4, tagged, nt);
    page_all(t, &f->m1, KR_OP_CONTACTS_LIST, tag, 1000, tagged, nt);
    page_all(t, &f->m1, KR_OP_UTILITY_EXPORT, NULL, 6, all, 25);

    /* Items carry the listed fields; the default limit is 100. */
    kr_set_bytes(td_args(t), KR_FLD_TAG, tag, 16);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_LIST, KR_OK);
    const msgpack_object *l = list_of(t, "contacts");
    assert_int_equal(l->via.array.size, nt);
    const msgpack_object *it = &l->via.array.ptr[0];
    assert_int_equal(it->via.map.size, 6);
    assert_int_equal(td_map_get(it, "version")->via.u64, 2);
    assert_int_equal(td_map_get(it, "name")->type, MSGPACK_OBJECT_STR);
    assert_null(td_map_get(it, "note"));

    /* The other tenant sees only its own. */
    td_args(t);
    EXPECT(t, &f->m2, KR_OP_CONTACTS_LIST, KR_OK);
    l = list_of(t, "contacts");
    assert_int_equal(l->via.array.size, 1);
    assert_true(bin_is(td_map_get(&l->via.array.ptr[0], "contact"), other));
    /* ... and tenant 1's tag is not found there. */
    kr_set_bytes(td_args(t), KR_FLD_TAG, tag, 16);
    expect_reject(t, &f->m2, KR_OP_CONTACTS_LIST, KR_ENOTFOUND, "tag");

    /* Rejections. */
    td_args(t);
    expect_reject(t, &f->nobody, KR_OP_CONTACTS_LIST, KR_EFORBIDDEN, NULL);
    td_args(t);
    expect_reject(t, &f->writer, KR_OP_CONTACTS_LIST, KR_EFORBIDDEN, NULL);
    kr_set_bytes(td_args(t), KR_FLD_CURSOR, "short", 5);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_LIST, KR_EINVAL, "cursor");
    kr_set_u64(td_args(t), KR_FLD_LIMIT, 0);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_LIST, KR_EINVAL, "limit");
    kr_set_u64(td_args(t), KR_FLD_LIMIT, 1001);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_LIST, KR_EINVAL, "limit");
    kr_set_str(td_args(t), KR_FLD_NAME, "x");
    expect_reject(t, &f->m1, KR_OP_CONTACTS_LIST, KR_EINVAL, "name");
}

static void test_export(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t c[16];
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_NAME, "Exported");
    kr_set_str(a, KR_FLD_LINE_USER_ID, "Uexport");
    kr_set_str(a, KR_FLD_NOTE, "all fields");
    EXPECT(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_OK);
    td_get_id(t, "contact", c);

    td_args(t);
    EXPECT(t, &f->m1, KR_OP_UTILITY_EXPORT, KR_OK);
    const msgpack_object *l = list_of(t, "contacts");
    assert_int_equal(l->via.array.size, 1);
    const msgpack_object *it = &l->via.array.ptr[0];
    assert_int_equal(it->via.map.size, 8);
    assert_true(bin_is(td_map_get(it, "contact"), c));
    assert_str(td_map_get(it, "name"), "Exported");
    assert_str(td_map_get(it, "line_user_id"), "Uexport");
    assert_str(td_map_get(it, "note"), "all fields");
    assert_str(td_map_get(it, "email"), NULL);
    assert_int_equal(td_get(t, "cursor")->type, MSGPACK_OBJECT_NIL);

    /* Master only: a user with every permission is refused. */
    uint8_t acc[16];
    memset(acc, 0xb0, 16);
    struct kr_caller all = td_account(f->t1, acc, KR_ROLE_USER, (1ull << KR_PERMISSION__COUNT) - 1);
    td_args(t);
    expect_reject(t, &all, KR_OP_UTILITY_EXPORT, KR_EFORBIDDEN, NULL);
    struct kr_caller auditor = td_account(f->t1, acc, KR_ROLE_AUDITOR, 0);
    td_args(t);
    expect_reject(t, &auditor, KR_OP_UTILITY_EXPORT, KR_EFORBIDDEN, NULL);
    /* The other master exports only its own tenant: nothing. */
    td_args(t);
    EXPECT(t, &f->m2, KR_OP_UTILITY_EXPORT, KR_OK);
    assert_int_equal(list_of(t, "contacts")->via.array.size, 0);
}

/* ---- contacts.tag / untag ---- */

static void test_tag_untag(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t c[16], vip[16], gold[16], t2tag[16], c2[16];
    reg(t, &f->m1, "Tagged", c);
    mktag(t, &f->m1, "vip", vip);
    mktag(t, &f->m1, "gold", gold);
    mktag(t, &f->m2, "vip", t2tag); /* same name, other tenant: fine */
    reg(t, &f->m2, "Theirs", c2);

    assert_int_equal(tag_on(t, &f->writer, c, vip), 2);
    /* Again: succeeds with the current version and appends nothing. */
    uint64_t before = jrn_size(t->d->j);
    assert_int_equal(tag_on(t, &f->writer, c, vip), 2);
    assert_true(td_unchanged_since(t, before));
    /* With the right version. */
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_bytes(a, KR_FLD_TAG, gold, 16);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_TAG, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 3);

    get(t, &f->reader, c);
    assert_int_equal(td_get_u64(t, "version"), 3);
    const msgpack_object *tags = list_of(t, "tags");
    assert_int_equal(tags->via.array.size, 2);
    for (uint32_t i = 0; i < 2; i++) {
        const msgpack_object *it = &tags->via.array.ptr[i];
        assert_int_equal(it->via.map.size, 2);
        if (bin_is(td_map_get(it, "tag"), vip))
            assert_str(td_map_get(it, "tag_name"), "vip");
        else {
            assert_true(bin_is(td_map_get(it, "tag"), gold));
            assert_str(td_map_get(it, "tag_name"), "gold");
        }
    }

    /* Rejections, each changing nothing. */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_bytes(a, KR_FLD_TAG, vip, 16);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_UNTAG, KR_ECONFLICT, "version");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_bytes(a, KR_FLD_TAG, t2tag, 16); /* the other tenant's tag */
    expect_reject(t, &f->m1, KR_OP_CONTACTS_TAG, KR_ENOTFOUND, "tag");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c2, 16); /* the other tenant's contact */
    kr_set_bytes(a, KR_FLD_TAG, vip, 16);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_TAG, KR_ENOTFOUND, "contact");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16); /* tenant 2 on tenant 1's ids */
    kr_set_bytes(a, KR_FLD_TAG, t2tag, 16);
    expect_reject(t, &f->m2, KR_OP_CONTACTS_TAG, KR_ENOTFOUND, "contact");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_TAG, KR_EINVAL, "tag");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_bytes(a, KR_FLD_TAG, vip, 16);
    expect_reject(t, &f->reader, KR_OP_CONTACTS_TAG, KR_EFORBIDDEN, NULL);
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_bytes(a, KR_FLD_TAG, vip, 16);
    expect_reject(t, &f->reader, KR_OP_CONTACTS_UNTAG, KR_EFORBIDDEN, NULL);
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_bytes(a, KR_FLD_TAG, vip, 16);
    kr_set_str(a, KR_FLD_TAG_NAME, "vip");
    expect_reject(t, &f->m1, KR_OP_CONTACTS_TAG, KR_EINVAL, "tag_name");

    /* Untag. */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_bytes(a, KR_FLD_TAG, vip, 16);
    EXPECT(t, &f->writer, KR_OP_CONTACTS_UNTAG, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 4);
    a = td_args(t); /* not on it any more */
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_bytes(a, KR_FLD_TAG, vip, 16);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_UNTAG, KR_ENOTFOUND, "tag");
    get(t, &f->m1, c);
    tags = list_of(t, "tags");
    assert_int_equal(tags->via.array.size, 1);
    assert_true(bin_is(td_map_get(&tags->via.array.ptr[0], "tag"), gold));
    kr_set_bytes(td_args(t), KR_FLD_TAG, vip, 16);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_LIST, KR_OK);
    assert_int_equal(list_of(t, "contacts")->via.array.size, 0);
}

/* ---- contacts.set ---- */

/* Fresh arguments naming contact c and attribute key (the value is added after). */
static void set_target(struct td *t, const uint8_t c[16], const char *key)
{
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, key);
}

/* The value of attribute key in the contact's get result, or NULL. */
static const msgpack_object *attr_value(struct td *t, const struct kr_caller *who,
                                        const uint8_t c[16], const char *key)
{
    get(t, who, c);
    const msgpack_object *l = list_of(t, "attributes");
    for (uint32_t i = 0; i < l->via.array.size; i++) {
        const msgpack_object *it = &l->via.array.ptr[i];
        assert_int_equal(it->via.map.size, 3);
        const msgpack_object *k = td_map_get(it, "attribute_key");
        assert_non_null(k);
        if (k->via.str.size == strlen(key) && memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return td_map_get(it, "value");
    }
    return NULL;
}

static void test_set(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t c[16], id[16], c2[16];
    reg(t, &f->m1, "Attributed", c);
    reg(t, &f->m2, "Other", c2);
    mkattr(t, &f->m1, "nickname", KR_ATTRIBUTE_TYPE_STRING, id);
    mkattr(t, &f->m1, "points", KR_ATTRIBUTE_TYPE_NUMBER, id);
    mkattr(t, &f->m1, "birthday", KR_ATTRIBUTE_TYPE_DATE, id);
    mkattr(t, &f->m1, "subscribed", KR_ATTRIBUTE_TYPE_BOOL, id);
    uint64_t version = 1;

    /* Each type, accepted. */
    set_target(t, c, "nickname");
    kr_set_value_str(t->args, KR_FLD_VALUE, "Taro", 4);
    EXPECT(t, &f->writer, KR_OP_CONTACTS_SET, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), ++version);
    set_target(t, c, "points");
    kr_set_value_int(t->args, KR_FLD_VALUE, -42);
    EXPECT(t, &f->writer, KR_OP_CONTACTS_SET, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), ++version);
    set_target(t, c, "birthday");
    kr_set_value_str(t->args, KR_FLD_VALUE, "2024-02-29", 10);
    EXPECT(t, &f->writer, KR_OP_CONTACTS_SET, KR_OK);
    version++;
    set_target(t, c, "subscribed");
    kr_set_value_bool(t->args, KR_FLD_VALUE, true);
    kr_set_u64(t->args, KR_FLD_VERSION, version);
    EXPECT(t, &f->writer, KR_OP_CONTACTS_SET, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), ++version);

    const msgpack_object *v = attr_value(t, &f->reader, c, "nickname");
    assert_str(v, "Taro");
    assert_int_equal(list_of(t, "attributes")->via.array.size, 4);
    v = attr_value(t, &f->reader, c, "points");
    assert_non_null(v);
    assert_int_equal(v->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    assert_int_equal(v->via.i64, -42);
    assert_str(attr_value(t, &f->reader, c, "birthday"), "2024-02-29");
    v = attr_value(t, &f->reader, c, "subscribed");
    assert_non_null(v);
    assert_int_equal(v->type, MSGPACK_OBJECT_BOOLEAN);
    assert_true(v->via.boolean);

    /* A float for a number replaces the value. */
    set_target(t, c, "points");
    kr_set_value_float(t->args, KR_FLD_VALUE, 2.5);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_SET, KR_OK);
    version++;
    v = attr_value(t, &f->m1, c, "points");
    assert_non_null(v);
    assert_int_equal(v->type, MSGPACK_OBJECT_FLOAT64);
    assert_true(v->via.f64 == 2.5);

    /* Wrong kinds and bad dates. */
    static const char *const bad_dates[] = {"2023-02-29",
                                            "2026-02-30",
                                            "2026-13-01",
                                            "2026-00-10",
                                            "2026-04-31",
                                            "2026-4-01",
                                            "26-04-01",
                                            "2026/04/01",
                                            "0000-01-01",
                                            "2026-04-0a",
                                            "1900-02-29",
                                            "2026-04-01 ",
                                            ""};
    for (size_t i = 0; i < sizeof bad_dates / sizeof bad_dates[0]; i++) {
        set_target(t, c, "birthday");
        kr_set_value_str(t->args, KR_FLD_VALUE, bad_dates[i], strlen(bad_dates[i]));
        expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_EINVAL, "value");
    }
    set_target(t, c, "birthday");
    kr_set_value_int(t->args, KR_FLD_VALUE, 20260401);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_EINVAL, "value");
    set_target(t, c, "subscribed");
    kr_set_value_int(t->args, KR_FLD_VALUE, 1);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_EINVAL, "value");
    set_target(t, c, "points");
    kr_set_value_str(t->args, KR_FLD_VALUE, "12", 2);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_EINVAL, "value");
    set_target(t, c, "nickname");
    kr_set_value_bool(t->args, KR_FLD_VALUE, false);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_EINVAL, "value");
    set_target(t, c, "points");
    kr_set_value_float(t->args, KR_FLD_VALUE, INFINITY);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_EINVAL, "value");
    char big[1002];
    memset(big, 'v', sizeof big);
    set_target(t, c, "nickname");
    kr_set_value_str(t->args, KR_FLD_VALUE, big, 1001);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_ETOOLARGE, "value");
    set_target(t, c, "nickname");
    kr_set_value_str(t->args, KR_FLD_VALUE, big, 1000);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_SET, KR_OK);
    version++;

    /* Leap years: every fourth, not centuries, but every fourth century. */
    set_target(t, c, "birthday");
    kr_set_value_str(t->args, KR_FLD_VALUE, "2000-02-29", 10);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_SET, KR_OK);
    assert_str(attr_value(t, &f->m1, c, "birthday"), "2000-02-29");
    version++;

    /* Unknown key, other tenant, wrong version, not permitted, missing key. */
    set_target(t, c, "nosuch");
    kr_set_value_int(t->args, KR_FLD_VALUE, 1);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_ENOTFOUND, "attribute_key");
    set_target(t, c, "Bad-Key");
    kr_set_value_int(t->args, KR_FLD_VALUE, 1);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_EINVAL, "attribute_key");
    set_target(t, c, "points");
    kr_set_value_int(t->args, KR_FLD_VALUE, 1);
    expect_reject(t, &f->m2, KR_OP_CONTACTS_SET, KR_ENOTFOUND, "contact");
    td_args(t); /* tenant 2's contact, tenant 2's caller: tenant 1's keys are unknown */
    set_target(t, c2, "points");
    kr_set_value_int(t->args, KR_FLD_VALUE, 1);
    expect_reject(t, &f->m2, KR_OP_CONTACTS_SET, KR_ENOTFOUND, "attribute_key");
    set_target(t, c, "points");
    kr_set_value_int(t->args, KR_FLD_VALUE, 1);
    kr_set_u64(t->args, KR_FLD_VERSION, version - 1);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_ECONFLICT, "version");
    set_target(t, c, "points");
    kr_set_value_int(t->args, KR_FLD_VALUE, 1);
    expect_reject(t, &f->reader, KR_OP_CONTACTS_SET, KR_EFORBIDDEN, NULL);
    kr_set_bytes(td_args(t), KR_FLD_CONTACT, c, 16);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_SET, KR_EINVAL, "attribute_key");

    /* Clear: no value. Then clearing again appends nothing. */
    set_target(t, c, "points");
    EXPECT(t, &f->m1, KR_OP_CONTACTS_SET, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), ++version);
    assert_null(attr_value(t, &f->m1, c, "points"));
    assert_int_equal(list_of(t, "attributes")->via.array.size, 3);
    uint64_t before = jrn_size(t->d->j);
    set_target(t, c, "points");
    EXPECT(t, &f->m1, KR_OP_CONTACTS_SET, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), version);
    assert_true(td_unchanged_since(t, before));
}

/* ---- tags.* ---- */

static void test_tags(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t a_tag[16], b_tag[16], c[16], theirs[16];
    mktag(t, &f->writer, "alpha", a_tag);
    mktag(t, &f->m1, "beta", b_tag);
    mktag(t, &f->m2, "alpha", theirs);

    /* Names are unique per tenant. */
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "alpha");
    expect_reject(t, &f->m1, KR_OP_TAGS_CREATE, KR_ECONFLICT, "tag_name");
    char name[66];
    memset(name, 'n', 65);
    name[65] = '\0';
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, name);
    expect_reject(t, &f->m1, KR_OP_TAGS_CREATE, KR_ETOOLARGE, "tag_name");
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "");
    expect_reject(t, &f->m1, KR_OP_TAGS_CREATE, KR_EINVAL, "tag_name");
    td_args(t);
    expect_reject(t, &f->m1, KR_OP_TAGS_CREATE, KR_EINVAL, "tag_name");
    kr_set_u64(td_args(t), KR_FLD_TAG_NAME, 3);
    expect_reject(t, &f->m1, KR_OP_TAGS_CREATE, KR_EINVAL, "tag_name");
    kr_set_str(td_args(t), KR_FLD_TAG_NAME, "gamma");
    expect_reject(t, &f->reader, KR_OP_TAGS_CREATE, KR_EFORBIDDEN, NULL);

    /* Rename: to a taken name, conflict; then to a free one; the old name is free again. */
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_str(a, KR_FLD_TAG_NAME, "beta");
    kr_set_u64(a, KR_FLD_VERSION, 1);
    expect_reject(t, &f->m1, KR_OP_TAGS_RENAME, KR_ECONFLICT, "tag_name");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_str(a, KR_FLD_TAG_NAME, "alpha2");
    kr_set_u64(a, KR_FLD_VERSION, 2);
    expect_reject(t, &f->m1, KR_OP_TAGS_RENAME, KR_ECONFLICT, "version");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, theirs, 16);
    kr_set_str(a, KR_FLD_TAG_NAME, "mine now");
    kr_set_u64(a, KR_FLD_VERSION, 1);
    expect_reject(t, &f->m1, KR_OP_TAGS_RENAME, KR_ENOTFOUND, "tag");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_str(a, KR_FLD_TAG_NAME, "alpha2");
    expect_reject(t, &f->m1, KR_OP_TAGS_RENAME, KR_EINVAL, "version");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_str(a, KR_FLD_TAG_NAME, "alpha2");
    kr_set_u64(a, KR_FLD_VERSION, 1);
    expect_reject(t, &f->reader, KR_OP_TAGS_RENAME, KR_EFORBIDDEN, NULL);
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_str(a, KR_FLD_TAG_NAME, "alpha2");
    kr_set_u64(a, KR_FLD_VERSION, 1);
    EXPECT(t, &f->writer, KR_OP_TAGS_RENAME, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 2);
    uint8_t again[16];
    mktag(t, &f->m1, "alpha", again);
    assert_memory_not_equal(again, a_tag, 16);
    a = td_args(t); /* renaming to its own name is fine */
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_str(a, KR_FLD_TAG_NAME, "alpha2");
    kr_set_u64(a, KR_FLD_VERSION, 2);
    EXPECT(t, &f->m1, KR_OP_TAGS_RENAME, KR_OK);
    assert_int_equal(td_get_u64(t, "version"), 3);

    /* Contacts show the new name. */
    reg(t, &f->m1, "Has tags", c);
    tag_on(t, &f->m1, c, a_tag);
    tag_on(t, &f->m1, c, b_tag);
    get(t, &f->m1, c);
    assert_int_equal(td_get_u64(t, "version"), 3);

    /* tags.list: three tags in tenant 1, paged two at a time. */
    kr_set_u64(td_args(t), KR_FLD_LIMIT, 2);
    EXPECT(t, &f->reader, KR_OP_TAGS_LIST, KR_OK);
    const msgpack_object *l = list_of(t, "tags");
    assert_int_equal(l->via.array.size, 2);
    const msgpack_object *cur = td_get(t, "cursor");
    assert_int_equal(cur->type, MSGPACK_OBJECT_BIN);
    size_t found = 0;
    for (int page = 0; page < 2; page++) {
        for (uint32_t i = 0; i < l->via.array.size; i++) {
            const msgpack_object *it = &l->via.array.ptr[i];
            assert_int_equal(it->via.map.size, 3);
            if (bin_is(td_map_get(it, "tag"), a_tag)) {
                assert_str(td_map_get(it, "tag_name"), "alpha2");
                assert_int_equal(td_map_get(it, "version")->via.u64, 3);
            }
            found++;
        }
        if (page == 0) {
            a = td_args(t);
            kr_set_u64(a, KR_FLD_LIMIT, 2);
            uint8_t next[16]; /* t->result is rewritten by the next op */
            memcpy(next, cur->via.bin.ptr, 16);
            kr_set_bytes(a, KR_FLD_CURSOR, next, 16);
            EXPECT(t, &f->reader, KR_OP_TAGS_LIST, KR_OK);
            l = list_of(t, "tags");
            assert_int_equal(l->via.array.size, 1);
            assert_int_equal(td_get(t, "cursor")->type, MSGPACK_OBJECT_NIL);
        }
    }
    assert_int_equal(found, 3);
    td_args(t);
    expect_reject(t, &f->nobody, KR_OP_TAGS_LIST, KR_EFORBIDDEN, NULL);
    td_args(t);
    EXPECT(t, &f->m2, KR_OP_TAGS_LIST, KR_OK);
    assert_int_equal(list_of(t, "tags")->via.array.size, 1);

    /* Delete: other tenant, wrong version, not permitted; then for real. */
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_u64(a, KR_FLD_VERSION, 3);
    expect_reject(t, &f->m2, KR_OP_TAGS_DELETE, KR_ENOTFOUND, "tag");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_u64(a, KR_FLD_VERSION, 2);
    expect_reject(t, &f->m1, KR_OP_TAGS_DELETE, KR_ECONFLICT, "version");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_u64(a, KR_FLD_VERSION, 3);
    expect_reject(t, &f->reader, KR_OP_TAGS_DELETE, KR_EFORBIDDEN, NULL);
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_u64(a, KR_FLD_VERSION, 3);
    EXPECT(t, &f->writer, KR_OP_TAGS_DELETE, KR_OK);
    assert_int_equal(t->result.data.via.map.size, 0);

    /* Taken off the contact, whose version stays. */
    get(t, &f->m1, c);
    assert_int_equal(td_get_u64(t, "version"), 3);
    const msgpack_object *tags = list_of(t, "tags");
    assert_int_equal(tags->via.array.size, 1);
    assert_true(bin_is(td_map_get(&tags->via.array.ptr[0], "tag"), b_tag));
    kr_set_bytes(td_args(t), KR_FLD_TAG, a_tag, 16);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_LIST, KR_ENOTFOUND, "tag");
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c, 16);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    expect_reject(t, &f->m1, KR_OP_CONTACTS_TAG, KR_ENOTFOUND, "tag");
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(vc_contact_has_tag(&t->d->views, txn, f->t1, c, a_tag), KR_ENOTFOUND);
    uint8_t prefix[24];
    uint32_t n;
    v_put_u64(prefix, f->t1);
    memcpy(prefix + 8, a_tag, 16);
    assert_int_equal(vc_count_prefix(&t->d->views, txn, VIEW_TAG_CONTACTS, prefix, 24, 10, &n),
                     KR_OK);
    assert_int_equal(n, 0);
    mdb_txn_abort(txn);
    /* Its name is free; the deleted tag is gone. */
    mktag(t, &f->m1, "alpha2", again);
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, a_tag, 16);
    kr_set_u64(a, KR_FLD_VERSION, 4);
    expect_reject(t, &f->m1, KR_OP_TAGS_DELETE, KR_ENOTFOUND, "tag");
}

/* Two threads create the same tag name at once: exactly one succeeds. */
struct racer {
    struct td *t;
    const struct kr_caller *who;
    const char *name;
    pthread_barrier_t *go;
    kr_err err;
    struct kr_diag diag;
};

static void *race_create(void *arg)
{
    struct racer *r = arg;
    struct kr_payload *a = kr_payload_new();
    struct kr_wbuf out;
    kr_wbuf_init(&out, KR_API_REPLY_MAX);
    kr_payload_reset(a, -1);
    kr_set_str(a, KR_FLD_TAG_NAME, r->name);
    pthread_barrier_wait(r->go);
    r->err = dom_exec(r->t->d, r->who, KR_OP_TAGS_CREATE, a, &out, &r->diag);
    kr_wbuf_free(&out);
    kr_payload_free(a);
    return NULL;
}

static void test_tag_name_race(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    char name[32];
    for (int round = 0; round < 20; round++) {
        pthread_barrier_t go;
        pthread_t th[2];
        struct racer r[2];
        snprintf(name, sizeof name, "race-%d", round);
        pthread_barrier_init(&go, NULL, 2);
        for (int i = 0; i < 2; i++) {
            r[i] = (struct racer){.t = t, .who = i ? &f->m1 : &f->writer, .name = name, .go = &go};
            assert_int_equal(pthread_create(&th[i], NULL, race_create, &r[i]), 0);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        int ok = (r[0].err == KR_OK) + (r[1].err == KR_OK);
        assert_int_equal(ok, 1);
        struct racer *loser = r[0].err == KR_OK ? &r[1] : &r[0];
        assert_int_equal(loser->err, KR_ECONFLICT);
        assert_string_equal(loser->diag.field, "tag_name");
    }
    kr_set_u64(td_args(t), KR_FLD_LIMIT, 1000);
    EXPECT(t, &f->m1, KR_OP_TAGS_LIST, KR_OK);
    assert_int_equal(list_of(t, "tags")->via.array.size, 20);
}

/* ---- attributes.* ---- */

static void test_attributes(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t rank[16], joined[16], theirs[16];
    mkattr(t, &f->writer, "rank", KR_ATTRIBUTE_TYPE_NUMBER, rank);
    mkattr(t, &f->m1, "joined", KR_ATTRIBUTE_TYPE_DATE, joined);
    mkattr(t, &f->m2, "rank", KR_ATTRIBUTE_TYPE_STRING, theirs);

    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, "rank");
    kr_set_u64(a, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_STRING);
    expect_reject(t, &f->m1, KR_OP_ATTRIBUTES_DEFINE, KR_ECONFLICT, "attribute_key");
    a = td_args(t);
    kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, "Not_Lower");
    kr_set_u64(a, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_STRING);
    expect_reject(t, &f->m1, KR_OP_ATTRIBUTES_DEFINE, KR_EINVAL, "attribute_key");
    a = td_args(t);
    kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, "color");
    kr_set_u64(a, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE__COUNT);
    expect_reject(t, &f->m1, KR_OP_ATTRIBUTES_DEFINE, KR_EINVAL, "attribute_type");
    kr_set_str(td_args(t), KR_FLD_ATTRIBUTE_KEY, "color");
    expect_reject(t, &f->m1, KR_OP_ATTRIBUTES_DEFINE, KR_EINVAL, "attribute_type");
    char key[66];
    memset(key, 'k', 65);
    key[65] = '\0';
    a = td_args(t);
    kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, key);
    kr_set_u64(a, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_BOOL);
    expect_reject(t, &f->m1, KR_OP_ATTRIBUTES_DEFINE, KR_ETOOLARGE, "attribute_key");
    a = td_args(t);
    kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, "color");
    kr_set_u64(a, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_STRING);
    expect_reject(t, &f->reader, KR_OP_ATTRIBUTES_DEFINE, KR_EFORBIDDEN, NULL);
    uint8_t acc[16];
    memset(acc, 0xc1, 16);
    struct kr_caller tags_only = td_account(f->t1, acc, KR_ROLE_USER, PERM(TAGS_WRITE));
    a = td_args(t);
    kr_set_str(a, KR_FLD_ATTRIBUTE_KEY, "color");
    kr_set_u64(a, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_STRING);
    expect_reject(t, &tags_only, KR_OP_ATTRIBUTES_DEFINE, KR_EFORBIDDEN, NULL);

    td_args(t);
    EXPECT(t, &f->reader, KR_OP_ATTRIBUTES_LIST, KR_OK);
    const msgpack_object *l = list_of(t, "attributes");
    assert_int_equal(l->via.array.size, 2);
    for (uint32_t i = 0; i < 2; i++) {
        const msgpack_object *it = &l->via.array.ptr[i];
        assert_int_equal(it->via.map.size, 3);
        if (bin_is(td_map_get(it, "attribute"), rank)) {
            assert_str(td_map_get(it, "attribute_key"), "rank");
            assert_str(td_map_get(it, "attribute_type"), "number");
        } else {
            assert_true(bin_is(td_map_get(it, "attribute"), joined));
            assert_str(td_map_get(it, "attribute_key"), "joined");
            assert_str(td_map_get(it, "attribute_type"), "date");
        }
    }
    td_args(t);
    EXPECT(t, &f->m2, KR_OP_ATTRIBUTES_LIST, KR_OK);
    l = list_of(t, "attributes");
    assert_int_equal(l->via.array.size, 1);
    assert_str(td_map_get(&l->via.array.ptr[0], "attribute_type"), "string");
    td_args(t);
    expect_reject(t, &f->nobody, KR_OP_ATTRIBUTES_LIST, KR_EFORBIDDEN, NULL);
    kr_set_u64(td_args(t), KR_FLD_LIMIT, 5);
    expect_reject(t, &f->m1, KR_OP_ATTRIBUTES_LIST, KR_EINVAL, "limit");
}

/* ---- Personal data, replay ---- */

static void test_personal_data_never_in_clear(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    static const char marker[] = "ZQXJ-marker-7f3a9c";
    static const char value_marker[] = "VALUE-marker-51be0d";
    char name[64];
    uint8_t c[16], attr[16];
    snprintf(name, sizeof name, "Name %s", marker);
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_NAME, name);
    kr_set_str(a, KR_FLD_NOTE, marker);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_REGISTER, KR_OK);
    td_get_id(t, "contact", c);
    mkattr(t, &f->m1, "secret_word", KR_ATTRIBUTE_TYPE_STRING, attr);
    set_target(t, c, "secret_word");
    kr_set_value_str(t->args, KR_FLD_VALUE, value_marker, strlen(value_marker));
    EXPECT(t, &f->m1, KR_OP_CONTACTS_SET, KR_OK);

    dom_close(t->d);
    t->d = NULL;
    assert_false(td_dir_contains(t->dir, marker, strlen(marker)));
    assert_false(td_dir_contains(t->dir, value_marker, strlen(value_marker)));
    /* The search does find what is stored in clear (a tag name is not personal). */
    td_reopen(t);
    uint8_t tag[16];
    mktag(t, &f->m1, "clear-tag-name-0b9e", tag);
    dom_close(t->d);
    t->d = NULL;
    assert_true(td_dir_contains(t->dir, "clear-tag-name-0b9e", 19));
    td_reopen(t);

    get(t, &f->m1, c);
    assert_str(td_get(t, "name"), name);
    assert_str(td_get(t, "note"), marker);
    assert_str(attr_value(t, &f->m1, c, "secret_word"), value_marker);
}

static void digest_all(struct td *t, uint8_t out[VIEW__COUNT][32])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    for (int i = VIEW_CONTACTS; i <= VIEW_ATTRIBUTE_VALUES; i++)
        assert_int_equal(views_digest(&t->d->views, txn, (enum kr_view)i, out[i], NULL), KR_OK);
    mdb_txn_abort(txn);
}

static void test_replay_same_views(void **state)
{
    struct fx *f = *state;
    struct td *t = f->t;
    uint8_t c[6][16], tg[3][16], attr[16], before[VIEW__COUNT][32], after[VIEW__COUNT][32];
    char name[32];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "tag %d", i);
        mktag(t, &f->m1, name, tg[i]);
    }
    mkattr(t, &f->m1, "level", KR_ATTRIBUTE_TYPE_NUMBER, attr);
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "person %d", i);
        reg(t, i % 2 ? &f->m2 : &f->m1, name, c[i]);
        if (i % 2 == 0) {
            tag_on(t, &f->m1, c[i], tg[i % 3]);
            tag_on(t, &f->m1, c[i], tg[(i + 1) % 3]);
            set_target(t, c[i], "level");
            kr_set_value_int(t->args, KR_FLD_VALUE, i);
            EXPECT(t, &f->m1, KR_OP_CONTACTS_SET, KR_OK);
        }
    }
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, tg[1], 16);
    kr_set_str(a, KR_FLD_TAG_NAME, "renamed");
    kr_set_u64(a, KR_FLD_VERSION, 1);
    EXPECT(t, &f->m1, KR_OP_TAGS_RENAME, KR_OK);
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_TAG, tg[2], 16);
    kr_set_u64(a, KR_FLD_VERSION, 1);
    EXPECT(t, &f->m1, KR_OP_TAGS_DELETE, KR_OK);
    a = td_args(t);
    kr_set_bytes(a, KR_FLD_CONTACT, c[2], 16);
    kr_set_u64(a, KR_FLD_VERSION, 4);
    EXPECT(t, &f->m1, KR_OP_CONTACTS_DELETE, KR_OK);

    digest_all(t, before);
    assert_int_equal(jrn_views_rebuild(t->d->j, NULL, NULL), KR_OK);
    digest_all(t, after);
    for (int i = VIEW_CONTACTS; i <= VIEW_ATTRIBUTE_VALUES; i++)
        if (memcmp(before[i], after[i], 32) != 0)
            fail_msg("view %s differs after replay", views_name((enum kr_view)i));
    get(t, &f->m1, c[0]);
    assert_int_equal(list_of(t, "tags")->via.array.size, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_register_and_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_wire_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_every_op, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_untag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_name_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attributes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_personal_data_never_in_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_same_views, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
