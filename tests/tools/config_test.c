/*
 * config_test.c: the configuration file of kiroku serve (tools/config.h):
 * defaults, values, and every malformed file refused with its line.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/kiroku-config-XXXXXX";
static char path[256];

static void write_conf(const char *text, mode_t mode)
{
    unlink(path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static kr_err load(const char *text, struct kr_config **c, char *why)
{
    write_conf(text, 0600);
    return kr_config_load(path, c, why, 256);
}

static void test_defaults(void **state)
{
    (void)state;
    struct kr_config *c;
    char why[256];
    assert_int_equal(kr_config_load(NULL, &c, why, sizeof why), KR_OK);
    assert_string_equal(kr_config_str(c, "service.name"), "kiroku");
    assert_false(kr_config_is_set(c, "service.name"));
    kr_config_free(c);
    /* Comments and blank lines only: every default. */
    assert_int_equal(load("# nothing\n\n   \n\t# indented\n", &c, why), KR_OK);
    assert_string_equal(kr_config_str(c, "service.name"), "kiroku");
    kr_config_free(c);
}

static void test_values(void **state)
{
    (void)state;
    struct kr_config *c;
    char why[256];
    assert_int_equal(load("  service.name   =  ラインの窓口  \r\n", &c, why), KR_OK);
    assert_string_equal(kr_config_str(c, "service.name"), "ラインの窓口");
    assert_true(kr_config_is_set(c, "service.name"));
    kr_config_free(c);
    /* No newline at the end; an empty value. */
    assert_int_equal(load("service.name =", &c, why), KR_OK);
    assert_string_equal(kr_config_str(c, "service.name"), "");
    assert_false(kr_config_bool(c, "journal.two_flushes")); /* the default */
    kr_config_free(c);
    /* A true-or-false setting, in each of its spellings. */
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        char text[64];
        snprintf(text, sizeof text, "journal.two_flushes = %s\n", yes[i]);
        assert_int_equal(load(text, &c, why), KR_OK);
        assert_true(kr_config_bool(c, "journal.two_flushes"));
        kr_config_free(c);
        snprintf(text, sizeof text, "journal.two_flushes = %s\n", no[i]);
        assert_int_equal(load(text, &c, why), KR_OK);
        assert_false(kr_config_bool(c, "journal.two_flushes"));
        kr_config_free(c);
    }
}

static void test_refused(void **state)
{
    (void)state;
    struct kr_config *c = (struct kr_config *)1;
    char why[256];
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"service.name\n", "line 1: not `name = value`"},
        {"# ok\nservce.name = x\n", "line 2: no setting is called \"servce.name\""},
        {"service.name = a\nservice.name = b\n", "line 2: service.name is given twice"},
        {"service.name = a\x01z\n", "line 1: service.name has a control character"},
        {"journal.two_flushes = maybe\n", "line 1: journal.two_flushes is true or false"},
        {"journal.two_flushes = TRUE\n", "line 1: journal.two_flushes is true or false"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(load(bad[i].text, &c, why), KR_EINVAL);
        assert_null(c);
        assert_string_equal(why, bad[i].why);
    }
    char big[300];
    memset(big, 'x', sizeof big);
    memcpy(big, "service.name = ", 15);
    big[sizeof big - 2] = '\n';
    big[sizeof big - 1] = '\0';
    assert_int_equal(load(big, &c, why), KR_EINVAL);
    assert_string_equal(why, "line 1: service.name is at most 128 bytes");
}

static void test_file_checks(void **state)
{
    (void)state;
    struct kr_config *c;
    char why[256], other[300];
    write_conf("service.name = x\n", 0620);
    assert_int_equal(kr_config_load(path, &c, why, sizeof why), KR_EINVAL);
    assert_non_null(strstr(why, "group or others can write it"));
    write_conf("service.name = x\n", 0644); /* readable is fine */
    assert_int_equal(kr_config_load(path, &c, why, sizeof why), KR_OK);
    kr_config_free(c);
    snprintf(other, sizeof other, "%s/link.conf", dir);
    unlink(other);
    assert_int_equal(symlink(path, other), 0);
    assert_int_equal(kr_config_load(other, &c, why, sizeof why), KR_EKEY);
    snprintf(other, sizeof other, "%s/none.conf", dir);
    assert_int_equal(kr_config_load(other, &c, why, sizeof why), KR_ENOTFOUND);
    assert_int_equal(kr_config_load(dir, &c, why, sizeof why), KR_EKEY); /* a directory */
    /* Over the size bound. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < KR_CONFIG_FILE_MAX / 8 + 1; i++)
        fputs("#comment", f);
    fclose(f);
    assert_int_equal(kr_config_load(path, &c, why, sizeof why), KR_ETOOLARGE);
    /* A NUL inside. */
    f = fopen(path, "w");
    assert_non_null(f);
    fwrite("service.name = a\0b\n", 1, 19, f);
    fclose(f);
    assert_int_equal(kr_config_load(path, &c, why, sizeof why), KR_EINVAL);
}

static void test_describe(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    kr_config_describe(f);
    fclose(f);
    assert_non_null(strstr(buf, "| `service.name` | text | `kiroku` |"));
    free(buf);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/kiroku.conf", dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), cmocka_unit_test(test_values),
        cmocka_unit_test(test_refused),  cmocka_unit_test(test_file_checks),
        cmocka_unit_test(test_describe),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return rc;
}
