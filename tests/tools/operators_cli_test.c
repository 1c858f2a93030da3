/*
 * operators_cli_test.c: `kiroku operators add` and `operators list`
 * (tools/cmd_operators.c) through the kiroku binary (KR_KIROKU_BIN): on a
 * fresh data directory the printed password logs in over the operator
 * endpoint of `kiroku serve` (kiroku call --operator); while serve runs, add
 * changes nothing and points at operators.create; --password-stdin, a weak
 * password, a taken e-mail, usage errors, and a tenant shard that imports
 * the platform journal refused.
 */
#include "test_util.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define OUT_MAX 65536

struct fx {
    char dir[512], data[600], outp[600], errp[600], inp[600];
    char out[OUT_MAX], err[OUT_MAX];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    kr_test_tmpdir(f->dir, sizeof f->dir);
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    snprintf(f->outp, sizeof f->outp, "%s/out", f->dir);
    snprintf(f->errp, sizeof f->errp, "%s/err", f->dir);
    snprintf(f->inp, sizeof f->inp, "%s/in", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    kr_test_rmrf(f->dir);
    free(f);
    return 0;
}

/* Runs kiroku with args (NULL-terminated), stdin from `in` written to a file
 * (NULL: /dev/null), KIROKU_TOKEN = token (NULL: unset); stdout and stderr
 * into f->out and f->err. Returns the exit status. */
static int kiroku(struct fx *f, const char *in, const char *token, const char *const *args)
{
    if (in) {
        FILE *w = fopen(f->inp, "wb");
        assert_non_null(w);
        assert_int_equal(fwrite(in, 1, strlen(in), w), strlen(in));
        assert_int_equal(fclose(w), 0);
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fo = open(f->outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(f->errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fi = open(in ? f->inp : "/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0)
            _exit(127);
        dup2(fo, 1);
        dup2(fe, 2);
        dup2(fi, 0);
        if (token)
            setenv("KIROKU_TOKEN", token, 1);
        else
            unsetenv("KIROKU_TOKEN");
        const char *argv[32] = {"kiroku"};
        size_t n = 1;
        for (size_t i = 0; args[i] && n < 31; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(KR_KIROKU_BIN, (char *const *)argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    const char *paths[2] = {f->outp, f->errp};
    char *bufs[2] = {f->out, f->err};
    for (int i = 0; i < 2; i++) {
        FILE *r = fopen(paths[i], "rb");
        assert_non_null(r);
        size_t n = fread(bufs[i], 1, OUT_MAX - 1, r);
        bufs[i][n] = '\0';
        fclose(r);
    }
    return WEXITSTATUS(status);
}

static void init(struct fx *f)
{
    const char *a[] = {"init", "--data", f->data, NULL};
    assert_int_equal(kiroku(f, NULL, NULL, a), 0);
}

/* The string value of "key":"..." in JSON text s into out (asserted there). */
static void json_str(const char *s, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(s, pat);
    if (!p)
        fail_msg("no %s in %s", key, s);
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    assert_true(n < cap);
    memcpy(out, p, n);
    out[n] = '\0';
}

/* auth.login over DIR's operator endpoint; the token into tok (hex). */
static int op_login(struct fx *f, const char *email, const char *pw, char tok[65])
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"tenant_code\":\"platform\",\"email\":\"%s\",\"password\":\"%s\"}", email, pw);
    const char *a[] = {"call", "--operator", "--data", f->data, "auth.login", json, NULL};
    int rc = kiroku(f, NULL, NULL, a);
    if (rc == 0 && tok)
        json_str(f->out, "token", tok, 65);
    return rc;
}

struct ready {
    struct fx *f;
    const char *email, *pw;
};

static bool logged_in(void *arg)
{
    struct ready *r = arg;
    return op_login(r->f, r->email, r->pw, NULL) == 0;
}

/* A fresh directory's first operator, with a generated password: it logs
 * in over serve's operator endpoint and is an operator there; while serve
 * runs, add is refused (nothing changed) and names operators.create, which
 * the operator then uses. */
static void test_bootstrap_then_serve(void **state)
{
    struct fx *f = *state;
    char pw[128], acct[40], tok[65];
    init(f);
    const char *add[] = {"operators", "add", "first@example.jp", "--data", f->data, "--json", NULL};
    assert_int_equal(kiroku(f, NULL, NULL, add), 0);
    json_str(f->out, "password", pw, sizeof pw);
    json_str(f->out, "account", acct, sizeof acct);
    assert_int_equal(strlen(pw), 24);
    assert_int_equal(strlen(acct), 32);
    /* The text form prints the generated password once too. */
    const char *add2[] = {"operators", "add", "second@example.jp", "--data", f->data, NULL};
    assert_int_equal(kiroku(f, NULL, NULL, add2), 0);
    assert_non_null(strstr(f->out, "operator second@example.jp added"));
    assert_non_null(strstr(f->out, "password: "));

    char sock[700];
    snprintf(sock, sizeof sock, "ipc://%s/c.sock", f->data);
    const char *serve[] = {"kiroku", "serve", "--data", f->data, "--listen", sock, NULL};
    char sout[600], serr[600];
    snprintf(sout, sizeof sout, "%s/serve.out", f->dir);
    snprintf(serr, sizeof serr, "%s/serve.err", f->dir);
    pid_t pid = kr_test_spawn(KR_KIROKU_BIN, serve, sout, serr, false);
    struct ready r = {f, "first@example.jp", pw};
    assert_true(kr_test_wait_for(logged_in, &r, KR_TEST_WAIT_MS, "the operator's login"));
    assert_int_equal(op_login(f, "first@example.jp", "wrong pass 123", NULL), 1);
    assert_int_equal(op_login(f, "first@example.jp", pw, tok), 0);
    const char *who[] = {"call", "--operator", "--data", f->data, "auth.whoami", NULL};
    assert_int_equal(kiroku(f, NULL, tok, who), 0);
    assert_non_null(strstr(f->out, "\"role\":\"operator\""));
    assert_non_null(strstr(f->out, acct));

    /* serve holds the journal: add changes nothing and says what to do. */
    const char *add3[] = {"operators", "add", "third@example.jp", "--data", f->data, NULL};
    assert_int_equal(kiroku(f, NULL, NULL, add3), 3);
    assert_non_null(strstr(f->err, "a server runs on"));
    assert_non_null(strstr(f->err, "operators.create"));
    assert_int_equal(f->out[0], '\0');
    const char *list[] = {"operators", "list", "--data", f->data, NULL};
    assert_int_equal(kiroku(f, NULL, NULL, list), 3);
    assert_non_null(strstr(f->err, "operators.list"));
    const char *create[] = {"call",
                            "--operator",
                            "--data",
                            f->data,
                            "operators.create",
                            "{\"email\":\"third@example.jp\",\"password\":\"third pass 123\"}",
                            NULL};
    assert_int_equal(kiroku(f, NULL, tok, create), 0);
    assert_int_equal(op_login(f, "third@example.jp", "third pass 123", NULL), 0);
    assert_int_equal(kr_test_stop(pid, SIGTERM, serr), 0);

    /* Stopped: list shows all three. */
    assert_int_equal(kiroku(f, NULL, NULL, list), 0);
    assert_non_null(strstr(f->out, "first@example.jp"));
    assert_non_null(strstr(f->out, "third@example.jp"));
    assert_non_null(strstr(f->out, "3 operators"));
}

static void test_password_stdin_and_refusals(void **state)
{
    struct fx *f = *state;
    init(f);
    const char *add[] = {"operators",        "add", "ops@example.jp", "--data", f->data,
                         "--password-stdin", NULL};
    assert_int_equal(kiroku(f, "password\n", NULL, add), 1);
    assert_non_null(strstr(f->err, "password"));
    assert_int_equal(kiroku(f, "", NULL, add), 2);
    char longpw[300];
    memset(longpw, 'x', 200);
    longpw[200] = '\0';
    assert_int_equal(kiroku(f, longpw, NULL, add), 2);
    assert_int_equal(kiroku(f, "ops stdin pass 1\n", NULL, add), 0);
    assert_non_null(strstr(f->out, "operator ops@example.jp added"));
    assert_null(strstr(f->out, "password:")); /* the caller knows it */
    /* The e-mail is taken, whatever its case. */
    const char *again[] = {"operators", "add", "OPS@example.jp", "--data", f->data, NULL};
    assert_int_equal(kiroku(f, NULL, NULL, again), 1);
    assert_non_null(strstr(f->err, "has the e-mail"));
    const char *bad[] = {"operators", "add", "not an address", "--data", f->data, NULL};
    assert_int_equal(kiroku(f, NULL, NULL, bad), 1);
    const char *list[] = {"operators", "list", "--data", f->data, "--json", NULL};
    assert_int_equal(kiroku(f, NULL, NULL, list), 0);
    assert_non_null(strstr(f->out, "\"email\":\"ops@example.jp\""));
    assert_null(strstr(f->out, "OPS@"));
    /* Usage. */
    const char *u1[] = {"operators", NULL};
    assert_int_equal(kiroku(f, NULL, NULL, u1), 2);
    const char *u2[] = {"operators", "add", "--data", f->data, NULL};
    assert_int_equal(kiroku(f, NULL, NULL, u2), 2);
    const char *u3[] = {"operators", "remove", "ops@example.jp", NULL};
    assert_int_equal(kiroku(f, NULL, NULL, u3), 2);
    /* No journal there. */
    char none[700];
    snprintf(none, sizeof none, "%s/none", f->dir);
    const char *nj[] = {"operators", "add", "x@example.jp", "--data", none, NULL};
    assert_int_equal(kiroku(f, NULL, NULL, nj), 3);
    assert_non_null(strstr(f->err, "kiroku init"));
}

/* A tenant shard that imports the platform: operators are the platform's. */
static void test_importing_shard_refused(void **state)
{
    struct fx *f = *state;
    init(f);
    char conf[700];
    snprintf(conf, sizeof conf, "%s/kiroku.conf", f->data);
    int fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    const char *text = "cluster.platform = true\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
    const char *add[] = {"operators", "add", "ops@example.jp", "--data", f->data, NULL};
    assert_int_equal(kiroku(f, NULL, NULL, add), 1);
    assert_non_null(strstr(f->err, "imports the platform journal"));
    assert_non_null(strstr(f->err, "platform shard (shard platform)"));
    assert_int_equal(f->out[0], '\0');
    /* The same for a shard that holds the platform copy (DIR/platform). */
    assert_int_equal(unlink(conf), 0);
    char copy[700];
    snprintf(copy, sizeof copy, "%s/platform", f->data);
    assert_int_equal(mkdir(copy, 0700), 0);
    assert_int_equal(kiroku(f, NULL, NULL, add), 1);
    assert_non_null(strstr(f->err, "imports the platform journal"));
    /* Nothing was made. */
    const char *list[] = {"operators", "list", "--data", f->data, NULL};
    assert_int_equal(kiroku(f, NULL, NULL, list), 0);
    assert_non_null(strstr(f->out, "0 operators"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bootstrap_then_serve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_stdin_and_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_importing_shard_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
