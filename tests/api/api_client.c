/*
 * api_client.c: the test client and server process of api_client.h.
 *
 * Design notes. The server is the real binary, started the way an operator
 * would start it, so these tests cover kiroku serve's start-up, --demo, its
 * e-mail worker and its clean stop as well as the protocol. The child gets
 * PR_SET_PDEATHSIG so that a test binary that dies (an assertion, a timeout
 * kill) does not leave a server behind. Replies are checked for the
 * envelope's exact shape before any test looks inside them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api_client.h"

#include "kr_limits.h"
#include "protocol.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <nng/protocol/reqrep0/req.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OUT_MAX    16384u /* what serve prints before it is listening */
#define MAIL_MAX   65536u /* one e-mail file */
#define PORT_TRIES 20

/* ---- The server ---- */

/* Starts one serve child; returns true once it prints its JSON line, false
 * if it exited first (its exit status in *status). */
static bool spawn(struct ac_server *s, int *status)
{
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    char errpath[600];
    snprintf(errpath, sizeof errpath, "%s/serve.err", s->dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) /* the parent died before prctl */
            _exit(127);
        int fe = open(errpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int fi = open("/dev/null", O_RDONLY);
        dup2(out[1], 1);
        dup2(fe, 2);
        dup2(fi, 0);
        const char *argv[14 + AC_EXTRA_MAX + 1] = {
            "kiroku", "serve",      "--data",  s->data,     "--listen", s->ipc,   "--listen",
            s->tcp,   "--operator", s->op_url, "--workers", "8",        "--demo", "--json"};
        for (size_t i = 0; s->extra && s->extra[i] && i < AC_EXTRA_MAX; i++)
            argv[14 + i] = s->extra[i];
        execv(KR_KIROKU_BIN, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    s->pid = pid;
    char buf[OUT_MAX];
    size_t n = 0;
    bool listening = false;
    for (int waited = 0; !listening && waited < AC_WAIT_MS;) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int r = poll(&p, 1, 1000);
        waited += 1000;
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r >= 0);
        if (r == 0)
            continue;
        ssize_t got = read(out[0], buf + n, sizeof buf - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* it exited */
        n += (size_t)got;
        buf[n] = '\0';
        const char *j = strstr(buf, "{\"data\":");
        listening = j && strchr(j, '\n');
        if (listening)
            snprintf(s->json, sizeof s->json, "%.*s", (int)(strchr(j, '\n') - j), j);
        assert_true(n < sizeof buf - 1);
    }
    close(out[0]);
    if (listening)
        return true;
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, status, 0), pid);
    s->pid = 0;
    return false;
}

/* Copies the word after `label` on the line of demo.txt that starts with it. */
static void demo_field(const char *text, const char *label, int word, char *out, size_t cap)
{
    const char *p = strstr(text, label);
    assert_non_null(p);
    p += strlen(label);
    for (int w = 0;; w++) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " \n");
        if (w == word) {
            assert_true(len > 0 && len < cap);
            memcpy(out, p, len);
            out[len] = '\0';
            return;
        }
        p += len;
    }
}

void ac_server_start(struct ac_server *s)
{
    ac_server_start_with(s, NULL);
}

/* DATA made by `kiroku init` with the KEK of kek_from (a data directory)
 * placed in DATA/keys before serve first opens the keystore. */
static void init_with_kek(const struct ac_server *s, const char *kek_from)
{
    char out[4096], err[4096], from[600], to[600];
    const char *init[] = {"init", "--data", s->data, NULL};
    if (kr_test_run(KR_KIROKU_BIN, init, out, err, sizeof out) != 0)
        fail_msg("kiroku init: %s", err);
    snprintf(from, sizeof from, "%.580s/keys/kek.key", kek_from);
    snprintf(to, sizeof to, "%.580s/keys/kek.key", s->data);
    size_t n = 0;
    char *kek = kr_test_slurp(from, &n);
    int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, kek, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
    sodium_memzero(kek, n);
    free(kek);
}

static void start(struct ac_server *s, const char *const *extra, const char *kek_from)
{
    memset(s, 0, sizeof *s);
    s->extra = extra;
    kr_test_tmpdir(s->dir, sizeof s->dir);
    snprintf(s->data, sizeof s->data, "%s/data", s->dir);
    snprintf(s->ipc, sizeof s->ipc, "ipc://%s/client.sock", s->dir);
    snprintf(s->op_url, sizeof s->op_url, "ipc://%s/op.sock", s->dir);
    if (kek_from)
        init_with_kek(s, kek_from);
    bool up = false;
    for (int tries = 0; !up && tries < PORT_TRIES; tries++) {
        snprintf(s->tcp, sizeof s->tcp, "tcp://127.0.0.1:%u", 20000u + randombytes_uniform(40000));
        int status = 0;
        up = spawn(s, &status);
        /* 3: could not start (the port taken, most likely); try another. */
        if (!up && !(WIFEXITED(status) && WEXITSTATUS(status) == 3))
            break;
    }
    if (!up) {
        char path[600], err[4096] = "";
        snprintf(path, sizeof path, "%s/serve.err", s->dir);
        FILE *f = fopen(path, "rb");
        if (f) {
            err[fread(err, 1, sizeof err - 1, f)] = '\0';
            fclose(f);
        }
        print_error("kiroku serve did not start: %s\n", err);
        fail();
    }
    char path[600], text[4096];
    snprintf(path, sizeof path, "%s/demo.txt", s->data);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    demo_field(text, "demo tenant:", 0, s->demo_code, sizeof s->demo_code);
    demo_field(text, "master:", 0, s->demo_email, sizeof s->demo_email);
    demo_field(text, "master:", 2, s->demo_password, sizeof s->demo_password);
    demo_field(text, "operator:", 0, s->op_email, sizeof s->op_email);
    demo_field(text, "operator:", 2, s->op_password, sizeof s->op_password);
    sodium_memzero(text, sizeof text);
}

void ac_server_start_with(struct ac_server *s, const char *const *extra)
{
    start(s, extra, NULL);
}

void ac_server_start_kek(struct ac_server *s, const char *const *extra, const char *kek_from)
{
    start(s, extra, kek_from);
}

void ac_server_restart(struct ac_server *s)
{
    bool up = false;
    for (int tries = 0; !up && tries < PORT_TRIES; tries++) {
        int status = 0;
        up = spawn(s, &status);
        if (!up && !(WIFEXITED(status) && WEXITSTATUS(status) == 3))
            break;
        if (!up) /* the port taken meanwhile: another (s->tcp is where it listens) */
            snprintf(s->tcp, sizeof s->tcp, "tcp://127.0.0.1:%u",
                     20000u + randombytes_uniform(40000));
    }
    if (!up) {
        print_error("kiroku serve did not start again\n");
        fail();
    }
}

int ac_server_stop(struct ac_server *s)
{
    int ret = -1;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        struct kr_test_child child = {.pid = s->pid};
        if (!kr_test_wait_for(kr_test_child_exited, &child, AC_WAIT_MS, "kiroku serve to stop")) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &child.status, 0);
        } else if (WIFEXITED(child.status)) {
            ret = WEXITSTATUS(child.status);
        }
        s->pid = 0;
    }
    if (s->dir[0])
        kr_test_rmrf(s->dir);
    s->dir[0] = '\0';
    return ret;
}

/* Reads one e-mail file (bounded) into buf; false if unreadable. */
static bool mail_read(const char *outbox, const char *name, char *buf, size_t cap)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", outbox, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return false;
    buf[n] = '\0';
    return true;
}

static bool mail_is(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".eml") == 0;
}

static bool mail_to(const char *text, const char *to)
{
    char hdr[300];
    snprintf(hdr, sizeof hdr, "\r\nTo: <%s>\r\n", to);
    return strstr(text, hdr) != NULL;
}

/* One look through the outbox. */
static bool mail_find(const struct ac_server *s, const char *to, const char *needle, char *value,
                      size_t cap)
{
    char outbox[600];
    snprintf(outbox, sizeof outbox, "%s/outbox", s->data);
    DIR *dir = opendir(outbox);
    if (!dir)
        return false;
    char *text = malloc(MAIL_MAX);
    assert_non_null(text);
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(dir))) {
        if (!mail_is(de->d_name) || !mail_read(outbox, de->d_name, text, MAIL_MAX) ||
            !mail_to(text, to))
            continue;
        /* The body is base64 (compose.c): search it decoded. */
        char *body = strstr(text, "\r\n\r\n");
        size_t blen = 0;
        if (!body || sodium_base642bin((unsigned char *)body, MAIL_MAX - (size_t)(body - text) - 1,
                                       body + 4, strlen(body + 4), "\r\n", &blen, NULL,
                                       sodium_base64_VARIANT_ORIGINAL) != 0)
            continue;
        body[blen] = '\0';
        const char *p = strstr(body, needle);
        if (!p)
            continue;
        found = true;
        if (value) {
            p += strlen(needle);
            size_t len = strcspn(p, "\r\n");
            assert_true(len < cap);
            memcpy(value, p, len);
            value[len] = '\0';
        }
    }
    closedir(dir);
    sodium_memzero(text, MAIL_MAX);
    free(text);
    return found;
}

struct mail_wait {
    const struct ac_server *s;
    const char *to, *needle;
    char *value;
    size_t cap;
};

static bool mail_found(void *arg)
{
    const struct mail_wait *w = arg;
    return mail_find(w->s, w->to, w->needle, w->value, w->cap);
}

bool ac_mail_wait(const struct ac_server *s, const char *to, const char *needle, char *value,
                  size_t cap)
{
    struct mail_wait w = {s, to, needle, value, cap};
    return kr_test_wait_for(mail_found, &w, AC_WAIT_MS, "an e-mail");
}

size_t ac_mail_count(const struct ac_server *s, const char *to)
{
    char outbox[600];
    snprintf(outbox, sizeof outbox, "%s/outbox", s->data);
    DIR *dir = opendir(outbox);
    if (!dir)
        return 0;
    char *text = malloc(MAIL_MAX);
    assert_non_null(text);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dir)))
        if (mail_is(de->d_name) && mail_read(outbox, de->d_name, text, MAIL_MAX) &&
            mail_to(text, to))
            n++;
    closedir(dir);
    free(text);
    return n;
}

/* ---- The client ---- */

static void args_reset(struct ac *c)
{
    msgpack_sbuffer_clear(&c->args);
    c->nargs = 0;
}

void ac_open(struct ac *c, const char *url)
{
    memset(c, 0, sizeof *c);
    msgpack_unpacked_init(&c->u);
    msgpack_sbuffer_init(&c->args);
    msgpack_packer_init(&c->pk, &c->args, msgpack_sbuffer_write);
    c->next_id = 1000u + randombytes_uniform(1000000);
    assert_int_equal(nng_req0_open(&c->sock), 0);
    assert_int_equal(nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, AC_WAIT_MS), 0);
    assert_int_equal(nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, AC_WAIT_MS), 0);
    /* Sent once: a slow write must not be applied twice. */
    assert_int_equal(nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE), 0);
    assert_int_equal(nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, KR_API_REPLY_MAX), 0);
    assert_int_equal(nng_dial(c->sock, url, NULL, 0), 0);
}

void ac_close(struct ac *c)
{
    nng_close(c->sock);
    if (c->reply)
        nng_free(c->reply, c->reply_len);
    c->reply = NULL;
    msgpack_unpacked_destroy(&c->u);
    msgpack_sbuffer_destroy(&c->args);
}

static void key(msgpack_packer *pk, const char *s)
{
    assert_int_equal(msgpack_pack_str_with_body(pk, s, strlen(s)), 0);
}

static void arg_key(struct ac *c, int fld)
{
    assert_true(fld >= 0 && fld < KR_FLD__COUNT);
    key(&c->pk, kr_fields[fld].name);
    c->nargs++;
}

void ac_str(struct ac *c, int fld, const char *s)
{
    arg_key(c, fld);
    key(&c->pk, s);
}

void ac_bin(struct ac *c, int fld, const void *p, size_t n)
{
    arg_key(c, fld);
    assert_int_equal(msgpack_pack_bin_with_body(&c->pk, p, n), 0);
}

void ac_u64(struct ac *c, int fld, uint64_t v)
{
    arg_key(c, fld);
    assert_int_equal(msgpack_pack_uint64(&c->pk, v), 0);
}

void ac_enum(struct ac *c, int fld, int value)
{
    int e = kr_fields[fld].enum_id;
    assert_true(e >= 0 && value >= 0 && (uint32_t)value < kr_enums[e].count);
    ac_str(c, fld, kr_enums[e].values[value]);
}

void ac_enums(struct ac *c, int fld, uint64_t mask)
{
    int e = kr_fields[fld].enum_id;
    assert_true(e >= 0);
    arg_key(c, fld);
    uint32_t n = 0;
    for (uint32_t i = 0; i < kr_enums[e].count; i++)
        n += (uint32_t)((mask >> i) & 1u);
    assert_int_equal(msgpack_pack_array(&c->pk, n), 0);
    for (uint32_t i = 0; i < kr_enums[e].count; i++)
        if ((mask >> i) & 1u)
            key(&c->pk, kr_enums[e].values[i]);
}

void ac_tenants(struct ac *c, int fld, const uint64_t *t, size_t n)
{
    arg_key(c, fld);
    assert_int_equal(msgpack_pack_array(&c->pk, n), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(msgpack_pack_uint64(&c->pk, t[i]), 0);
}

void ac_value_int(struct ac *c, int fld, int64_t v)
{
    arg_key(c, fld);
    assert_int_equal(msgpack_pack_int64(&c->pk, v), 0);
}

void ac_value_bool(struct ac *c, int fld, bool v)
{
    arg_key(c, fld);
    assert_int_equal(v ? msgpack_pack_true(&c->pk) : msgpack_pack_false(&c->pk), 0);
}

uint64_t ac_request(struct ac *c, int op, const uint8_t *token, msgpack_sbuffer *out)
{
    assert_true(op >= 0 && op < KR_OP__COUNT);
    msgpack_sbuffer_clear(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    uint64_t id = c->next_id++;
    msgpack_pack_map(&pk, 3u + (token != NULL));
    key(&pk, kr_fields[KR_FLD_OP].name);
    key(&pk, kr_ops[op].name);
    key(&pk, API_KEY_ID);
    msgpack_pack_uint64(&pk, id);
    if (token) {
        key(&pk, kr_fields[KR_FLD_TOKEN].name);
        msgpack_pack_bin_with_body(&pk, token, 32);
    }
    key(&pk, API_KEY_ARGS);
    msgpack_pack_map(&pk, c->nargs);
    msgpack_sbuffer_write(out, c->args.data, c->args.size);
    args_reset(c);
    return id;
}

/* The value of key name in map m, or NULL. */
static const msgpack_object *map_get(const msgpack_object *m, const char *name)
{
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++)
        if (ac_str_eq(&m->via.map.ptr[i].key, name))
            return &m->via.map.ptr[i].val;
    return NULL;
}

int ac_decode(const void *buf, size_t n, msgpack_unpacked *u, uint64_t *id)
{
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(u, buf, n, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, n);
    const msgpack_object *top = &u->data;
    assert_int_equal(top->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(top->via.map.size, 3);
    const msgpack_object *idv = map_get(top, API_KEY_ID), *ok = map_get(top, API_KEY_OK);
    assert_non_null(idv);
    assert_int_equal(idv->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    *id = idv->via.u64;
    assert_non_null(ok);
    assert_int_equal(ok->type, MSGPACK_OBJECT_BOOLEAN);
    if (ok->via.boolean) {
        const msgpack_object *r = map_get(top, API_KEY_RESULT);
        assert_non_null(r);
        assert_int_equal(r->type, MSGPACK_OBJECT_MAP);
        return AC_OK;
    }
    const msgpack_object *e = map_get(top, API_KEY_ERROR);
    assert_non_null(e);
    assert_int_equal(e->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(e->via.map.size, 2);
    const msgpack_object *code = map_get(e, API_KEY_CODE), *msg = map_get(e, API_KEY_MESSAGE);
    assert_non_null(code);
    assert_int_equal(code->type, MSGPACK_OBJECT_STR);
    assert_non_null(msg);
    assert_int_equal(msg->type, MSGPACK_OBJECT_STR);
    for (int i = 0; i < KR_ERR__COUNT; i++)
        if (ac_str_eq(code, kr_api_errors[i].name))
            return i;
    print_error("unknown error code %.*s\n", (int)code->via.str.size, code->via.str.ptr);
    fail();
    return AC_OK;
}

int ac_call(struct ac *c, int op, const uint8_t *token)
{
    msgpack_sbuffer req;
    msgpack_sbuffer_init(&req);
    uint64_t id = ac_request(c, op, token, &req);
    assert_int_equal(nng_send(c->sock, req.data, req.size, 0), 0);
    msgpack_sbuffer_destroy(&req);
    char *buf;
    size_t n;
    assert_int_equal(nng_recv(c->sock, &buf, &n, NNG_FLAG_ALLOC), 0);
    if (c->reply)
        nng_free(c->reply, c->reply_len);
    c->reply = buf;
    c->reply_len = n;
    c->op = op;
    uint64_t got;
    int rc = ac_decode(buf, n, &c->u, &got);
    assert_true(got == id);
    return rc;
}

const msgpack_object *ac_result(const struct ac *c)
{
    const msgpack_object *r = map_get(&c->u.data, API_KEY_RESULT);
    assert_non_null(r);
    return r;
}

const msgpack_object *ac_get(const msgpack_object *map, int fld)
{
    return map_get(map, kr_fields[fld].name);
}

void ac_map_id(const msgpack_object *m, int fld, uint8_t id[16])
{
    const msgpack_object *v = ac_get(m, fld);
    assert_non_null(v);
    assert_int_equal(v->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(v->via.bin.size, 16);
    memcpy(id, v->via.bin.ptr, 16);
}

void ac_res_id(const struct ac *c, int fld, uint8_t id[16])
{
    ac_map_id(ac_result(c), fld, id);
}

uint64_t ac_res_u64(const struct ac *c, int fld)
{
    const msgpack_object *v = ac_get(ac_result(c), fld);
    assert_non_null(v);
    assert_int_equal(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    return v->via.u64;
}

const msgpack_object *ac_res_list(const struct ac *c)
{
    return ac_res_list_nth(c, 0);
}

const msgpack_object *ac_res_list_nth(const struct ac *c, unsigned nth)
{
    const struct kr_op_def *op = &kr_ops[c->op];
    const char *name = NULL;
    for (uint32_t i = 0; i < op->nresult && !name; i++)
        if (op->result[i].field < 0 && nth-- == 0)
            name = op->result[i].list_name;
    assert_non_null(name);
    const msgpack_object *l = map_get(ac_result(c), name);
    assert_non_null(l);
    assert_int_equal(l->type, MSGPACK_OBJECT_ARRAY);
    for (uint32_t i = 0; i < l->via.array.size; i++)
        assert_int_equal(l->via.array.ptr[i].type, MSGPACK_OBJECT_MAP);
    return l;
}

bool ac_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

int ac_find_id(const msgpack_object *list, int fld, const uint8_t id[16])
{
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *v = ac_get(&list->via.array.ptr[i], fld);
        if (v && v->type == MSGPACK_OBJECT_BIN && v->via.bin.size == 16 &&
            memcmp(v->via.bin.ptr, id, 16) == 0)
            return (int)i;
    }
    return -1;
}
