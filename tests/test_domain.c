/*
 * test_domain.c: the domain fixture for tests of projections/ (see
 * test_domain.h).
 */
#include "test_domain.h"

#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#define TD_START_NS 1775001600000000000ull /* 2026-04-01T00:00:00Z */
#define TD_STEP_NS  1000000ull

static uint64_t td_now(void *ctx)
{
    struct td *t = ctx;
    return atomic_fetch_add(&t->now, TD_STEP_NS);
}

static void td_open(struct td *t)
{
    struct kr_domain_options o = {
        .dir = t->dir,
        .clock = &t->clock,
        .rng = &t->rng,
        .signers = 2,
        .map_size = 1ull << 30,
        .pwhash_ops = crypto_pwhash_OPSLIMIT_MIN,
        .pwhash_mem = crypto_pwhash_MEMLIMIT_MIN,
        .no_signup_limits = !t->signup_limits,
        .shard = t->shard,
    };
    kr_err err = dom_open(&o, &t->d);
    if (err)
        fail_msg("dom_open: %s", kr_strerror(err));
}

/* from's DIR/keys/kek.key into t's, before t's keystore is made. */
static void td_copy_kek(struct td *t, const struct td *from)
{
    char src[600], dst[600];
    size_t n = 0;
    snprintf(src, sizeof src, "%s/keys/kek.key", from->dir);
    snprintf(dst, sizeof dst, "%s/keys/kek.key", t->dir);
    char *kek = kr_test_slurp(src, &n);
    int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, kek, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
    sodium_memzero(kek, n);
    free(kek);
}

static struct td *td_make(uint64_t seed, const struct td *kek_from)
{
    struct td *t = calloc(1, sizeof *t);
    assert_non_null(t);
    kr_test_tmpdir(t->dir, sizeof t->dir);
    atomic_store(&t->now, TD_START_NS);
    t->clock = (struct kr_clock){.now_ns = td_now, .ctx = t};
    kr_rng_det_init(&t->det, seed, &t->rng);
    struct jrn_options jo = {.dir = t->dir, .clock = &t->clock, .map_size = 1ull << 30};
    /* kr_test_tmpdir makes the directory; init wants it absent or empty. */
    assert_int_equal(jrn_create(&jo, NULL), KR_OK);
    if (kek_from)
        td_copy_kek(t, kek_from);
    td_open(t);
    kr_wbuf_init(&t->out, KR_API_REPLY_MAX);
    msgpack_unpacked_init(&t->result);
    t->args = kr_payload_new();
    assert_non_null(t->args);
    return t;
}

struct td *td_new(uint64_t seed)
{
    return td_make(seed, NULL);
}

struct td *td_new_kek(uint64_t seed, const struct td *kek_from)
{
    return td_make(seed, kek_from);
}

void td_reopen(struct td *t)
{
    dom_close(t->d);
    t->d = NULL;
    td_open(t);
}

void td_free(struct td *t)
{
    if (!t)
        return;
    dom_close(t->d);
    kr_test_rmrf(t->dir);
    kr_rng_det_fini(&t->det);
    kr_wbuf_free(&t->out);
    msgpack_unpacked_destroy(&t->result);
    kr_payload_free(t->args);
    free(t);
}

struct kr_caller td_anonymous(void)
{
    struct kr_caller c;
    memset(&c, 0, sizeof c);
    c.role = -1;
    return c;
}

struct kr_caller td_operator(void)
{
    struct kr_caller c;
    memset(&c, 0, sizeof c);
    c.role = KR_ROLE_OPERATOR;
    memset(c.account, 0x0f, sizeof c.account);
    c.operator_endpoint = true;
    return c;
}

struct kr_caller td_account(uint64_t tenant, const uint8_t account[16], int role, uint64_t perms)
{
    struct kr_caller c;
    memset(&c, 0, sizeof c);
    c.tenant = tenant;
    memcpy(c.account, account, 16);
    c.role = role;
    c.perms = perms;
    return c;
}

struct kr_payload *td_args(struct td *t)
{
    kr_payload_reset(t->args, -1);
    return t->args;
}

kr_err td_exec(struct td *t, const struct kr_caller *who, int op)
{
    kr_err err = dom_exec(t->d, who, op, t->args, &t->out, &t->diag);
    msgpack_unpacked_destroy(&t->result);
    msgpack_unpacked_init(&t->result);
    if (err == KR_OK) {
        size_t off = 0;
        msgpack_unpack_return rc = msgpack_unpack_next(&t->result, t->out.data, t->out.size, &off);
        assert_int_equal(rc, MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(off, t->out.size);
        assert_int_equal(t->result.data.type, MSGPACK_OBJECT_MAP);
    }
    return err;
}

const msgpack_object *td_map_get(const msgpack_object *map, const char *name)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(name);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, name, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

const msgpack_object *td_get(const struct td *t, const char *name)
{
    return td_map_get(&t->result.data, name);
}

void td_get_id(const struct td *t, const char *name, uint8_t id[16])
{
    const msgpack_object *o = td_get(t, name);
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(o->via.bin.size, 16);
    memcpy(id, o->via.bin.ptr, 16);
}

uint64_t td_get_u64(const struct td *t, const char *name)
{
    const msgpack_object *o = td_get(t, name);
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    return o->via.u64;
}

/* The auth code of the newest auth_code e-mail queued after journal size
 * `from`, and its tenant. */
static void find_auth_code(struct td *t, uint64_t from, uint64_t *tenant, char code[32])
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = from + 1};
    struct jrn_cursor *cur;
    struct jrn_record r;
    struct kr_payload *p = kr_payload_new();
    bool found = false;
    assert_non_null(p);
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &cur), KR_OK);
    while (jrn_cursor_next(cur, &r) == KR_OK) {
        if (kr_event_lookup(r.type, r.type_len) != KR_EV_OUTBOX_QUEUED)
            continue;
        struct kr_data_key key;
        assert_int_equal(ks_get(t->d->ks, r.tenant, &key), KR_OK);
        assert_int_equal(kr_event_decode(KR_EV_OUTBOX_QUEUED, &r, &key, p, NULL), KR_OK);
        kr_data_key_wipe(&key);
        if (p->v[KR_FLD_TEMPLATE].u != KR_TEMPLATE_AUTH_CODE)
            continue;
        const struct kr_value *v = &p->v[KR_FLD_AUTH_CODE];
        assert_true(v->set && v->n < 32);
        memcpy(code, v->p, v->n);
        code[v->n] = '\0';
        *tenant = r.tenant;
        found = true;
    }
    jrn_cursor_free(cur);
    kr_payload_free(p);
    assert_true(found);
}

uint64_t td_signup(struct td *t, const char *email, const char *password, struct kr_caller *master,
                   char code_out[40])
{
    struct kr_caller anon = td_anonymous(), op = td_operator();
    uint8_t app[16], account[16];
    char code[32];
    uint64_t tenant = 0;

    kr_set_str(td_args(t), KR_FLD_EMAIL, email);
    assert_int_equal(td_exec(t, &anon, KR_OP_SIGNUP_APPLY), KR_OK);
    td_get_id(t, "application", app);

    uint64_t before = jrn_size(t->d->j);
    struct kr_payload *a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, "pay-0001");
    assert_int_equal(td_exec(t, &op, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_OK);
    find_auth_code(t, before, &tenant, code);

    a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_AUTH_CODE, code);
    kr_set_str(a, KR_FLD_PASSWORD, password);
    kr_set_str(a, KR_FLD_TENANT_NAME, "Example Shop K.K.");
    kr_err err = td_exec(t, &anon, KR_OP_SIGNUP_COMPLETE);
    if (err)
        fail_msg("signup.complete: %s (%s: %s)", kr_strerror(err), t->diag.field, t->diag.why);
    td_get_id(t, "account", account);
    const msgpack_object *c = td_get(t, "tenant_code");
    assert_non_null(c);
    assert_int_equal(c->type, MSGPACK_OBJECT_STR);
    assert_true(c->via.str.size < 40);
    if (code_out) {
        memcpy(code_out, c->via.str.ptr, c->via.str.size);
        code_out[c->via.str.size] = '\0';
    }
    if (master)
        *master = td_account(tenant, account, KR_ROLE_MASTER, (1ull << KR_PERMISSION__COUNT) - 1);
    return tenant;
}

bool td_unchanged_since(struct td *t, uint64_t size)
{
    struct jrn_query q = {.kind = JRN_Q_RANGE, .from = size + 1};
    struct jrn_cursor *cur;
    struct jrn_record r;
    bool ok = true;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &cur), KR_OK);
    while (ok && jrn_cursor_next(cur, &r) == KR_OK)
        ok = kr_event_lookup(r.type, r.type_len) == KR_EV_ACCESS_DENIED;
    jrn_cursor_free(cur);
    return ok;
}

static bool file_contains(const char *path, const void *needle, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool found = false;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        size_t len = (size_t)st.st_size;
        uint8_t *buf = malloc(len);
        if (buf && read(fd, buf, len) == (ssize_t)len)
            found = memmem(buf, len, needle, n) != NULL;
        free(buf);
    }
    close(fd);
    return found;
}

bool td_dir_contains(const char *dir, const void *needle, size_t n)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *e;
    bool found = false;
    while (!found && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            found = td_dir_contains(path, needle, n);
        else if (S_ISREG(st.st_mode))
            found = file_contains(path, needle, n);
    }
    closedir(d);
    return found;
}
