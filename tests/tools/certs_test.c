/*
 * certs_test.c: `kiroku certs`: the files and their modes, a chain that
 * OpenSSL verifies, the server's DNS subjectAltName, client certificates, and
 * no overwriting without --force.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

static char root[1024], dir[1100], outpath[1100], tls[1200];

/* Runs kiroku certs with args (NULL-terminated) and --data dir; stdout goes to
 * outpath. Returns the exit status. */
static int certs(const char *const *args)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(nul, 2);
        const char *argv[32] = {"kiroku", "certs", "--data", dir};
        size_t n = 4;
        for (size_t i = 0; args[i] && n < 31; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(KR_KIROKU_BIN, (char *const *)argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* The output of a shell command (at most cap-1 bytes); returns its status. */
static int sh(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    *len = fread(buf, 1, 65535, f);
    fclose(f);
    return buf;
}

static mode_t mode_of(const char *name)
{
    char path[1400];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", tls, name);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    return st.st_mode & 07777;
}

static int setup(void **state)
{
    (void)state;
    kr_test_tmpdir(root, sizeof root);
    snprintf(dir, sizeof dir, "%s/data", root);
    snprintf(outpath, sizeof outpath, "%s/out", root);
    snprintf(tls, sizeof tls, "%s/tls", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kr_test_rmrf(root);
    return 0;
}

/* Runs kiroku with argv (NULL-terminated, without "kiroku"), stderr into
 * errtext; the exit status. */
static int kiroku_err(const char *const *args, char *errtext, size_t cap)
{
    char errpath[1200];
    snprintf(errpath, sizeof errpath, "%s/err", root);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_WRONLY);
        dup2(nul, 1);
        dup2(fd, 2);
        alarm(30); /* a FIFO read would block: fail instead of hanging */
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
    size_t len = 0;
    char *e = slurp(errpath, &len);
    assert_non_null(e);
    snprintf(errtext, cap, "%s", e);
    free(e);
    return WEXITSTATUS(status);
}

/* serve reads the TLS key with the one reader of secret files: a key file
 * others may read, a symlink to a good key, and a FIFO are refused, each
 * with a message that says what the file must be. */
static void test_serve_refuses_unsafe_key(void **state)
{
    (void)state;
    char err[8192], cert[1300], good[1300], key[1300];
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(kiroku_err((const char *[]){"init", "--data", dir, NULL}, err, sizeof err), 0);
    assert_int_equal(certs((const char *[]){NULL}), 0);
    assert_int_equal(mode_of("server.key"), 0600);
    snprintf(cert, sizeof cert, "%s/server.pem", tls);
    snprintf(good, sizeof good, "%s/server.key", tls);
    size_t len;
    char *pem = slurp(good, &len);
    assert_non_null(pem);

    snprintf(key, sizeof key, "%s/loose.key", root);
    int fd = open(key, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, pem, len), (ssize_t)len);
    close(fd);
    free(pem);
    const char *argv[] = {"serve",  "--data", dir,     "--listen", "tls+tcp://127.0.0.1:0",
                          "--cert", cert,     "--key", key,        NULL};
    for (int kind = 0; kind < 3; kind++) {
        if (kind == 0) {
            assert_int_equal(chmod(key, 0644), 0);
        } else if (kind == 1) {
            snprintf(key, sizeof key, "%s/link.key", root);
            assert_int_equal(symlink(good, key), 0);
        } else {
            snprintf(key, sizeof key, "%s/fifo.key", root);
            assert_int_equal(mkfifo(key, 0600), 0);
        }
        assert_int_equal(kiroku_err(argv, err, sizeof err), 3);
        if (!strstr(err, "key file must be a regular file (not a symlink), yours, mode 0600"))
            fail_msg("kind %d: %s", kind, err);
    }
}

static void test_certs(void **state)
{
    (void)state;
    char cmd[4096], out[8192];
    /* No data directory: nothing made. */
    assert_int_equal(certs((const char *[]){NULL}), 3);
    assert_int_equal(access(tls, F_OK), -1);
    assert_int_equal(mkdir(dir, 0700), 0);

    assert_int_equal(certs((const char *[]){"--client", "ops-1", "--json", NULL}), 0);
    size_t len;
    char *text = slurp(outpath, &len);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    static const char *const files[][2] = {
        {"ca", "ca.pem"},         {"ca_key", "ca.key"},
        {"server", "server.pem"}, {"server_key", "server.key"},
        {"client", "client.pem"}, {"client_key", "client.key"},
    };
    for (size_t i = 0; i < 6; i++) {
        char want[1400];
        snprintf(want, sizeof want, "%s/%s", tls, files[i][1]);
        assert_string_equal(json_string_value(json_object_get(j, files[i][0])), want);
        assert_int_equal(mode_of(files[i][1]), i % 2 ? 0600 : 0644);
    }
    assert_string_equal(json_string_value(json_object_get(j, "host")), "localhost");
    assert_int_equal(json_integer_value(json_object_get(j, "days")), 825);
    json_decref(j);
    free(text);
    struct stat st;
    assert_int_equal(stat(tls, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    /* The chain verifies, for the purposes each certificate is for. */
    snprintf(cmd, sizeof cmd,
             "openssl verify -purpose sslserver -CAfile %s/ca.pem %s/server.pem 2>&1", tls, tls);
    assert_int_equal(sh(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd,
             "openssl verify -purpose sslclient -CAfile %s/ca.pem %s/client.pem 2>&1", tls, tls);
    assert_int_equal(sh(cmd, out, sizeof out), 0);
    /* The server certificate is no client's, and no CA. */
    snprintf(cmd, sizeof cmd,
             "openssl verify -purpose sslclient -CAfile %s/ca.pem %s/server.pem 2>&1", tls, tls);
    assert_int_not_equal(sh(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "openssl verify -CAfile %s/server.pem %s/client.pem 2>&1", tls, tls);
    assert_int_not_equal(sh(cmd, out, sizeof out), 0);

    snprintf(cmd, sizeof cmd, "openssl x509 -in %s/server.pem -noout -text", tls);
    assert_int_equal(sh(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "DNS:localhost"));
    assert_null(strstr(out, "IP Address"));
    assert_non_null(strstr(out, "ecdsa-with-SHA256"));
    assert_non_null(strstr(out, "prime256v1"));
    assert_non_null(strstr(out, "CA:FALSE"));
    assert_non_null(strstr(out, "TLS Web Server Authentication"));
    snprintf(cmd, sizeof cmd, "openssl x509 -in %s/ca.pem -noout -text", tls);
    assert_int_equal(sh(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "CA:TRUE"));
    assert_non_null(strstr(out, "Certificate Sign"));
    snprintf(cmd, sizeof cmd, "openssl x509 -in %s/client.pem -noout -subject", tls);
    assert_int_equal(sh(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "CN = ops-1"));
    /* The key matches its certificate. */
    snprintf(cmd, sizeof cmd,
             "a=$(openssl x509 -in %s/server.pem -noout -pubkey) && "
             "b=$(openssl pkey -in %s/server.key -pubout) && [ \"$a\" = \"$b\" ]",
             tls, tls);
    assert_int_equal(sh(cmd, out, sizeof out), 0);

    /* No overwriting without --force: the files stay as they were. */
    char server[1400];
    snprintf(server, sizeof server, "%s/server.pem", tls);
    size_t len1, len2;
    char *before = slurp(server, &len1);
    assert_int_equal(certs((const char *[]){NULL}), 3);
    char *after = slurp(server, &len2);
    assert_int_equal(len1, len2);
    assert_memory_equal(before, after, len1);
    free(after);
    /* Bad arguments: nothing written either. */
    assert_int_equal(certs((const char *[]){"--force", "--host", "127.0.0.1", NULL}), 2);
    assert_int_equal(certs((const char *[]){"--force", "--host", "-bad.example", NULL}), 2);
    assert_int_equal(certs((const char *[]){"--force", "--days", "0", NULL}), 2);
    assert_int_equal(certs((const char *[]){"--force", "--client", "a/b", NULL}), 2);
    after = slurp(server, &len2);
    assert_memory_equal(before, after, len1);
    free(after);

    /* --force replaces them, for another host. */
    assert_int_equal(certs((const char *[]){"--force", "--host", "kiroku.example.jp", NULL}), 0);
    after = slurp(server, &len2);
    assert_false(len1 == len2 && memcmp(before, after, len1) == 0);
    free(after);
    free(before);
    snprintf(cmd, sizeof cmd, "openssl x509 -in %s/server.pem -noout -ext subjectAltName", tls);
    assert_int_equal(sh(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "DNS:kiroku.example.jp"));
    snprintf(cmd, sizeof cmd,
             "openssl verify -purpose sslserver -CAfile %s/ca.pem %s/server.pem 2>&1", tls, tls);
    assert_int_equal(sh(cmd, out, sizeof out), 0);
    assert_int_equal(mode_of("server.key"), 0600);
    /* No temporary files left behind. */
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp", tls);
    sh(cmd, out, sizeof out);
    assert_string_equal(out, "0\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_certs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_refuses_unsafe_key, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
