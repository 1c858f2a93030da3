/* path_test.c: bounded path joining (journal/path.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kr_limits.h"
#include "path.h"

#include <string.h>

static void test_joins(void **state)
{
    (void)state;
    char out[KR_PATH_MAX];
    assert_int_equal(kr_path_join(out, sizeof out, "/data", "journal/writer.lock"), KR_OK);
    assert_string_equal(out, "/data/journal/writer.lock");
    assert_int_equal(kr_path_join(out, sizeof out, "rel", "x"), KR_OK);
    assert_string_equal(out, "rel/x");
}

/* The result with its NUL exactly fills the buffer: accepted; one byte more:
 * KR_ETOOLARGE and an empty string, never a cut-short path. */
static void test_bound(void **state)
{
    (void)state;
    char dir[KR_PATH_MAX], out[KR_PATH_MAX];
    size_t name_len = 4; /* "keys" */
    size_t dir_len = sizeof out - 1 - 1 - name_len;
    memset(dir, 'd', dir_len);
    dir[dir_len] = '\0';
    assert_int_equal(kr_path_join(out, sizeof out, dir, "keys"), KR_OK);
    assert_int_equal(strlen(out), sizeof out - 1);
    assert_string_equal(out + dir_len, "/keys");

    assert_int_equal(kr_path_join(out, sizeof out, dir, "keys5"), KR_ETOOLARGE);
    assert_string_equal(out, "");
    char small[8];
    assert_int_equal(kr_path_join(small, sizeof small, "abc", "defg"), KR_ETOOLARGE);
    assert_string_equal(small, "");
    assert_int_equal(kr_path_join(small, sizeof small, "abc", "def"), KR_OK);
    assert_string_equal(small, "abc/def");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_joins),
        cmocka_unit_test(test_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
