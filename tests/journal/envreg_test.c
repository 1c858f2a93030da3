/* envreg_test.c: the process's list of open LMDB environments
 * (journal/envreg.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "envreg.h"
#include "kr_limits.h"
#include "path.h"
#include "test_util.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One directory registered twice, by two paths to it: KR_EBUSY, until the
 * first registration is gone. */
static void test_same_directory_once(void **state)
{
    (void)state;
    char dir[KR_PATH_MAX], a[KR_PATH_MAX], b[KR_PATH_MAX], other[KR_PATH_MAX];
    kr_test_tmpdir(dir, sizeof dir);
    assert_int_equal(kr_path_join(a, sizeof a, dir, "env"), KR_OK);
    assert_int_equal(kr_path_join(b, sizeof b, dir, "./env/"), KR_OK);
    assert_int_equal(kr_path_join(other, sizeof other, dir, "other"), KR_OK);
    assert_int_equal(mkdir(a, 0700), 0);
    assert_int_equal(mkdir(other, 0700), 0);

    struct kr_env_reg r1, r2, r3;
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    memset(&r3, 0, sizeof r3);
    assert_int_equal(kr_env_register(&r1, a), KR_OK);
    assert_int_equal(kr_env_register(&r2, b), KR_EBUSY);
    assert_false(r2.registered);
    assert_int_equal(kr_env_register(&r3, other), KR_OK);
    kr_env_unregister(&r1);
    kr_env_unregister(&r2); /* never registered: nothing happens */
    assert_int_equal(kr_env_register(&r2, b), KR_OK);
    kr_env_unregister(&r2);
    kr_env_unregister(&r3);
    kr_env_unregister(&r3); /* twice: nothing happens */
    kr_test_rmrf(dir);
}

static void test_refused(void **state)
{
    (void)state;
    char dir[KR_PATH_MAX], path[KR_PATH_MAX];
    kr_test_tmpdir(dir, sizeof dir);
    struct kr_env_reg r;
    memset(&r, 0, sizeof r);
    assert_int_equal(kr_path_join(path, sizeof path, dir, "missing"), KR_OK);
    assert_int_equal(kr_env_register(&r, path), KR_ENOTFOUND);
    assert_int_equal(kr_path_join(path, sizeof path, dir, "file"), KR_OK);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(kr_env_register(&r, path), KR_ECORRUPT);
    assert_false(r.registered);
    kr_test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_directory_once),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
