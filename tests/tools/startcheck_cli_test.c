/*
 * startcheck_cli_test.c: `kiroku serve` on a damaged journal.
 *
 * serve opens the journal writable, so the start check (journal.h) runs: a
 * journal whose newest record was altered is refused before anything is
 * appended or served, with the bad seq on stderr and exit status 3.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal_internal.h"
#include "test_util.h"

#define OUT_CAP (64 * 1024)

static void test_serve_refuses_tampered(void **state)
{
    (void)state;
    char root[1024], data[1100], lc[1200], lo[1200];
    kr_test_tmpdir(root, sizeof root);
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(lc, sizeof lc, "ipc://%s/c.sock", root);
    snprintf(lo, sizeof lo, "ipc://%s/o.sock", root);
    char *out = malloc(OUT_CAP), *err = malloc(OUT_CAP);
    assert_true(out && err);
    const char *init[] = {"init", "--data", data, NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, init, out, err, OUT_CAP), 0);

    /* The newest record is the genesis record, seq 1: flip its last byte
     * (its signature or payload). */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    kr_test_env_open(data, &env);
    kr_test_txn_db(env, JRN_DB_EVENTS, &txn, &dbi);
    uint8_t key[8];
    kr_test_be64(key, 1);
    MDB_val k = {8, key}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t *rec = malloc(v.mv_size);
    assert_non_null(rec);
    memcpy(rec, v.mv_data, v.mv_size);
    rec[v.mv_size - 1] ^= 1;
    v.mv_data = rec;
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(rec);

    const char *serve[] = {"serve", "--data", data, "--listen", lc, "--operator", lo, NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, serve, out, err, OUT_CAP), 3);
    if (!strstr(err, "start check at seq 1:"))
        fail_msg("serve said: %s", err);
    /* Nothing was appended on top of it. */
    kr_test_env_open(data, &env);
    kr_test_txn_db(env, JRN_DB_EVENTS, &txn, &dbi);
    MDB_stat st;
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    assert_int_equal(st.ms_entries, 1);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    free(out);
    free(err);
    kr_test_rmrf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serve_refuses_tampered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
