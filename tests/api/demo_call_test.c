/*
 * demo_call_test.c: what a new user meets, end to end against `kiroku serve
 * --demo`: the commands the demo prints run as printed (build/tools/kiroku,
 * from the repository root) with a stale KIROKU_TOKEN exported, tenant ids
 * and times survive a JSON reader that reads numbers as doubles (python3's
 * json with parse_int=float, as JavaScript and jq do) and go back into a
 * call, and a later run does not reprint a password that was changed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api_client.h"
#include "test_util.h"

#define OUT_MAX 65536

/* A token of the right form that is no session: what a shell still holds
 * from an earlier demo. */
static const char STALE_TOKEN[] =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

static struct ac_server srv;
/* A directory with build/tools/kiroku in it (a link to the binary under
 * test): the repository root as the demo's commands expect it. */
static char root[600];

static void read_file(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
}

/* Runs `sh -e -c script` in root with KIROKU_TOKEN=token (unset if NULL);
 * stdout into out. Returns the exit status. */
static int run_sh(const char *script, const char *token, char *out)
{
    char outpath[700], errpath[700];
    snprintf(outpath, sizeof outpath, "%s/sh.out", srv.dir);
    snprintf(errpath, sizeof errpath, "%s/sh.err", srv.dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fi = open("/dev/null", O_RDONLY);
        dup2(fo, 1);
        dup2(fe, 2);
        dup2(fi, 0);
        if (chdir(root) != 0)
            _exit(126);
        if (token)
            setenv("KIROKU_TOKEN", token, 1);
        else
            unsetenv("KIROKU_TOKEN");
        execl("/bin/sh", "sh", "-e", "-c", script, (char *)NULL);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    read_file(outpath, out, OUT_MAX);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char err[4096];
        read_file(errpath, err, sizeof err);
        print_error("script failed:\n%s\n", script);
        print_error("stdout:\n%s\n", out);
        print_error("stderr:\n%s\n", err);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The lines of text that are commands (they start with two spaces and then
 * "export " or "build/tools/kiroku "), one per line, into script. */
static void demo_commands(const char *text, char *script, size_t cap)
{
    size_t n = 0;
    script[0] = '\0';
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, "\n");
        if ((strncmp(p, "  export ", 9) == 0 || strncmp(p, "  build/tools/kiroku ", 21) == 0)) {
            assert_true(n + len + 2 < cap);
            memcpy(script + n, p + 2, len - 2);
            n += len - 2;
            script[n++] = '\n';
            script[n] = '\0';
        }
        p += len + (p[len] == '\n');
    }
}

static int setup(void **state)
{
    (void)state;
    ac_server_start(&srv);
    snprintf(root, sizeof root, "%s/repo", srv.dir);
    char path[700];
    assert_int_equal(mkdir(root, 0700), 0);
    snprintf(path, sizeof path, "%s/build", root);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/build/tools", root);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/build/tools/kiroku", root);
    assert_int_equal(symlink(KR_KIROKU_BIN, path), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bool running = srv.pid > 0;
    int rc = ac_server_stop(&srv);
    if (running)
        assert_int_equal(rc, 0);
    return 0;
}

/* The README's demo, as printed, with a stale token exported: the login
 * ignores it, and every command answers ok. */
static void test_demo_commands_run_as_printed(void **state)
{
    (void)state;
    static char text[8192], script[8192], out[OUT_MAX];
    char path[700];
    snprintf(path, sizeof path, "%s/demo.txt", srv.data);
    read_file(path, text, sizeof text);
    demo_commands(text, script, sizeof script);
    /* login (into KIROKU_TOKEN), whoami, contacts.list, the operator's login */
    assert_non_null(strstr(script, "export KIROKU_TOKEN=$(build/tools/kiroku call --url "));
    assert_non_null(strstr(script, "auth.whoami"));
    size_t lines = 0;
    for (const char *p = script; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, 4);
    /* Each reply on its own line; the exported token is a fresh session. */
    char full[9000];
    snprintf(full, sizeof full, "%secho \"token=$KIROKU_TOKEN\"\n", script);
    assert_int_equal(run_sh(full, STALE_TOKEN, out), 0);
    size_t oks = 0;
    for (const char *p = out; (p = strstr(p, "{\"id\":")); p++) {
        assert_non_null(strstr(p, "\"ok\":true"));
        oks++;
    }
    assert_int_equal(oks, 3);
    const char *tok = strstr(out, "token=");
    assert_non_null(tok);
    tok += 6;
    assert_int_equal(strspn(tok, "0123456789abcdef"), 64);
    assert_true(strncmp(tok, STALE_TOKEN, 64) != 0);
    /* whoami answered as the demo's master. */
    assert_non_null(strstr(out, "\"role\":\"master\""));
}

/* A tenant id (19 digits, up to 2^63-1) and a time (UTC ns) from a reply, read
 * by a JSON reader that makes every number a double, go back into calls
 * unchanged; so does a time past 2^63 written as a string. */
static void test_ids_survive_doubles(void **state)
{
    (void)state;
    static char script[8192], out[OUT_MAX];
    /* A time past 2^63 (the end of the u64 range) as a string, through
     * python3's json with doubles for numbers, and the _jst spelling of a
     * time, are arguments like any other. The same time as a plain number
     * comes back from the double as 1.8446744073709552e+19, which kiroku call
     * refuses rather than send a rounded value. */
    snprintf(script, sizeof script,
             "K=build/tools/kiroku\n"
             "login=$($K call --url %s auth.login "
             "'{\"tenant_code\":\"%s\",\"email\":\"%s\",\"password\":\"%s\"}')\n"
             "export KIROKU_TOKEN=$(echo \"$login\" | python3 -c "
             "'import json,sys; print(json.load(sys.stdin)[\"result\"][\"token\"])')\n"
             "dbl='import json,sys; print(json.dumps(json.loads(sys.stdin.read(), "
             "parse_int=float)))'\n"
             "args=$(echo '{\"from\":\"2026-04-01T09:00:00.000+09:00\","
             "\"to\":\"18446744073709551615\"}' | python3 -c \"$dbl\")\n"
             "echo \"args=$args\"\n"
             "$K call --url %s audit.list \"$args\"\n"
             "args=$(echo '{\"to\":18446744073709551615}' | python3 -c \"$dbl\")\n"
             "echo \"args=$args\"\n"
             "rc=0; $K call --url %s audit.list \"$args\" 2>&1 || rc=$?\n"
             "echo \"rc=$rc\"\n",
             srv.ipc, srv.demo_code, srv.demo_email, srv.demo_password, srv.ipc, srv.ipc);
    assert_int_equal(run_sh(script, NULL, out), 0);
    assert_non_null(strstr(out, "args={\"from\": \"2026-04-01T09:00:00.000+09:00\", \"to\": "
                                "\"18446744073709551615\"}"));
    assert_non_null(strstr(out, "\"ok\":true,\"result\":{\"entries\":["));
    assert_non_null(strstr(out, "args={\"to\": 1.8446744073709552e+19}"));
    assert_non_null(strstr(out, "kiroku: call: to: must be UTC nanoseconds"));
    assert_non_null(strstr(out, "rc=2"));

    /* The operator logs in; tenants.list names the demo tenant; python3
     * reads both replies with parse_int=float and writes the arguments of
     * the next calls from what it read. */
    snprintf(script, sizeof script,
             "K=build/tools/kiroku\n"
             "login=$($K call --url %s auth.login "
             "'{\"tenant_code\":\"platform\",\"email\":\"%s\",\"password\":\"%s\"}')\n"
             "export KIROKU_TOKEN=$(echo \"$login\" | python3 -c "
             "'import json,sys; print(json.load(sys.stdin)[\"result\"][\"token\"])')\n"
             "list=$($K call --url %s tenants.list)\n"
             "args=$(printf '%%s\\n%%s\\n' \"$login\" \"$list\" | python3 -c '\n"
             "import json, sys\n"
             "login, lst = (json.loads(l, parse_int=float) for l in "
             "sys.stdin.read().split(\"\\n\")[:2])\n"
             "t = [x for x in lst[\"result\"][\"tenants\"] if x[\"tenant_code\"] == \"%s\"][0]\n"
             "assert isinstance(t[\"tenant\"], str), t\n"
             "assert isinstance(login[\"result\"][\"expires\"], str), login\n"
             "assert login[\"result\"][\"expires_jst\"].endswith(\"+09:00\"), login\n"
             "print(json.dumps({\"tenant\": t[\"tenant\"]}))\n"
             "')\n"
             "echo \"args=$args\"\n"
             "echo \"demo tenant=$(grep -o 'tenant \"[0-9]*\"' %s/demo.txt)\"\n"
             "$K call --url %s tenants.cancel \"$args\"\n"
             "$K call --url %s tenants.list\n",
             srv.op_url, srv.op_email, srv.op_password, srv.op_url, srv.demo_code, srv.data,
             srv.op_url, srv.op_url);
    assert_int_equal(run_sh(script, NULL, out), 0);
    /* The id python passed back is the demo tenant's, digit for digit. */
    char id[32];
    const char *a = strstr(out, "args={\"tenant\": \"");
    assert_non_null(a);
    a += strlen("args={\"tenant\": \"");
    size_t n = strspn(a, "0123456789");
    assert_true(n >= 1 && n < sizeof id);
    memcpy(id, a, n);
    id[n] = '\0';
    char want[64];
    snprintf(want, sizeof want, "demo tenant=tenant \"%s\"", id);
    assert_non_null(strstr(out, want));
    /* tenants.cancel found it: ok, and the list now shows it cancelled. */
    assert_non_null(strstr(out, "\"ok\":true,\"result\":{\"cancelled\":\""));
    snprintf(want, sizeof want, "{\"tenant\":\"%s\",", id);
    const char *row = strstr(out, "\"tenant_state\":\"cancelled\"");
    assert_non_null(row);
    assert_non_null(strstr(out, want));
}

/* Starts serve --demo --json on srv's data directory again, as a second
 * process after srv was stopped, and returns what it printed until it was
 * listening (the JSON line); stops it. */
static void serve_again(char *out, size_t cap)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fi = open("/dev/null", O_RDONLY);
        dup2(fds[1], 1);
        dup2(fi, 0);
        execl(KR_KIROKU_BIN, "kiroku", "serve", "--data", srv.data, "--listen", srv.ipc,
              "--operator", srv.op_url, "--demo", "--json", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    out[0] = '\0';
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!(strstr(out, "{\"data\":") && strchr(strstr(out, "{\"data\":"), '\n'))) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left =
            AC_WAIT_MS - ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0)
            fail_msg("serve did not start within %d ms: %s", AC_WAIT_MS, out);
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r >= 0);
        if (r == 0)
            continue;
        ssize_t got = read(fds[0], out + n, cap - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            fail_msg("serve exited before listening: %s", out);
        n += (size_t)got;
        out[n] = '\0';
        assert_true(n < cap - 1);
    }
    close(fds[0]);
    assert_int_equal(kill(pid, SIGTERM), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A later run prints the demo again, but not the master's password once it
 * was changed; the operator's, unchanged, is still printed. */
static void test_changed_password_not_reprinted(void **state)
{
    (void)state;
    static char script[4096], out[OUT_MAX];
    /* Unchanged: printed again as it was. */
    pid_t pid = srv.pid;
    assert_int_equal(kill(pid, SIGTERM), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    srv.pid = 0;
    serve_again(out, sizeof out);
    assert_non_null(strstr(out, srv.demo_password));
    assert_non_null(strstr(out, srv.op_password));
    assert_null(strstr(out, "note:"));

    /* The master changes its password (through a server of its own). */
    ac_server_restart(&srv);
    snprintf(script, sizeof script,
             "K=build/tools/kiroku\n"
             "export KIROKU_TOKEN=$($K call --url %s auth.login "
             "'{\"tenant_code\":\"%s\",\"email\":\"%s\",\"password\":\"%s\"}' | sed -n "
             "'s/.*\"token\":\"\\([0-9a-f]*\\)\".*/\\1/p')\n"
             "$K call --url %s account.password "
             "'{\"password\":\"%s\",\"new_password\":\"another-demo-pass-4821\"}'\n",
             srv.ipc, srv.demo_code, srv.demo_email, srv.demo_password, srv.ipc, srv.demo_password);
    assert_int_equal(run_sh(script, NULL, out), 0);
    assert_non_null(strstr(out, "\"ok\":true"));
    pid = srv.pid;
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    srv.pid = 0;

    serve_again(out, sizeof out);
    assert_null(strstr(out, srv.demo_password));
    assert_non_null(strstr(out, "  master:      owner@demo.kiroku.example  password (changed)"));
    assert_non_null(strstr(out, "note: the master's password was changed since"));
    assert_non_null(strstr(out, srv.op_password));
    assert_null(strstr(out, "operator's password was changed"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_demo_commands_run_as_printed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_survive_doubles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_password_not_reprinted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
