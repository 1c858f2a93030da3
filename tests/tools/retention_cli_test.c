/*
 * retention_cli_test.c: the marker test of erasure, through the kiroku
 * binary (KR_KIROKU_BIN) on a data directory the test fills with the domain
 * helpers.
 *
 * A tenant whose master's e-mail address, contacts and attribute values hold
 * a marker string; its e-mails written to DIR/outbox by `kiroku serve`;
 * daily backups for 10 simulated days (`kiroku backup --test-clock`); the
 * tenant cancelled; `kiroku retention` on a clock moved on
 * (KIROKU_CLOCK_OFFSET): one minute before the tenant is due nothing
 * happens; at 30 days the erasure runs, killed (SIGKILL, the test hook
 * KIROKU_RETENTION_KILL_AFTER) after each of its steps in turn and rerun,
 * then completed; a further run changes nothing. Afterwards no file under
 * the data directory or any backup generation holds the marker, no key left
 * in the live keystore or any generation's keystore opens one of the
 * tenant's sealed payloads (each key is unwrapped with its keystore's KEK
 * and tried), the other tenant is intact, and the live journal and every
 * generation verify. Positive controls first: the marker is there, and a
 * key that opens the payload is found, before the erasure.
 */
#include "test_domain.h"
#include "test_util.h"

#include "retention.h"

#include <dirent.h>
#include <lmdb.h>
#include <setjmp.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MARKER  "zqxmarker7"
#define OUT_CAP 262144

static char out[OUT_CAP], err[OUT_CAP];

static int run(const char *const *args)
{
    return kr_test_run(KR_KIROKU_BIN, args, out, err, sizeof out);
}

static uint64_t real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Sets KIROKU_CLOCK_OFFSET so that the clock reads about `at` (UTC ns). */
static void clock_at(uint64_t at)
{
    char buf[32];
    int64_t off = ((int64_t)at - (int64_t)real_now()) / 1000000000LL;
    snprintf(buf, sizeof buf, "%lld", (long long)off);
    setenv("KIROKU_CLOCK_OFFSET", buf, 1);
}

/* ---- Keys: every wrapped key of a keystore, unwrapped with its KEK ---- */

#define MAX_KEYS 64

/* Unwraps every key in DIR/keystore with DIR/keys/kek.key; returns how many. */
static size_t all_keys(const char *dir, uint8_t keys[MAX_KEYS][32])
{
    char path[1024], text[256];
    snprintf(path, sizeof path, "%s/keys/kek.key", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_true(strncmp(text, "kiroku-kek 1\n", 13) == 0);
    uint8_t kek[32];
    size_t kek_len = 0;
    char *b64 = text + 13;
    b64[strcspn(b64, "\n")] = '\0';
    assert_int_equal(sodium_base642bin(kek, sizeof kek, b64, strlen(b64), NULL, &kek_len, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(kek_len, 32);

    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *c;
    MDB_val k, v;
    snprintf(path, sizeof path, "%s/keystore", dir);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_RDONLY | MDB_NOLOCK, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "keys", 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &c), 0);
    size_t count = 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        assert_int_equal(k.mv_size, 8);
        assert_int_equal(v.mv_size, 1 + 24 + 32 + 16);
        static const uint8_t ad_prefix[13] = {'k', 'i', 'r', 'o', 'k', 'u', '.',
                                              'd', 'e', 'k', '.', 'v', '1'};
        uint8_t ad[13 + 8];
        memcpy(ad, ad_prefix, 13);
        memcpy(ad + 13, k.mv_data, 8);
        const uint8_t *w = v.mv_data;
        assert_true(count < MAX_KEYS);
        unsigned long long kl;
        assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(keys[count], &kl, NULL, w + 25,
                                                                    48, ad, sizeof ad, w + 1, kek),
                         0);
        count++;
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    sodium_memzero(kek, sizeof kek);
    return count;
}

/* Whether any key of DIR's keystore opens record r (tenant's) as event ev. */
static bool some_key_opens(const char *dir, const struct jrn_record *r, int ev)
{
    uint8_t keys[MAX_KEYS][32];
    size_t n = all_keys(dir, keys);
    bool opened = false;
    struct kr_payload *p = kr_payload_new();
    for (size_t i = 0; i < n; i++) {
        struct kr_data_key dk = {.tenant = r->tenant};
        memcpy(dk.key, keys[i], 32);
        if (kr_event_decode(ev, r, &dk, p, NULL) == KR_OK)
            opened = true;
        kr_data_key_wipe(&dk);
    }
    kr_payload_free(p);
    sodium_memzero(keys, sizeof keys);
    return opened;
}

/* The generation directories under b (names not starting with '.'). */
static size_t generations(const char *b, char gens[16][1024])
{
    DIR *d = opendir(b);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        assert_true(n < 16);
        snprintf(gens[n++], 1024, "%s/%s", b, e->d_name);
    }
    closedir(d);
    return n;
}

/* ---- kiroku serve, long enough to write the e-mails ---- */

/* For kr_test_wait_for: whether an e-mail under the outbox (arg) names MARKER. */
static bool marker_mailed(void *arg)
{
    return td_dir_contains(arg, MARKER, strlen(MARKER));
}

static void write_mail(const char *data)
{
    char lc[700], lo[700], outbox[700];
    snprintf(lc, sizeof lc, "ipc://%s/c.sock", data);
    snprintf(lo, sizeof lo, "ipc://%s/o.sock", data);
    snprintf(outbox, sizeof outbox, "%s/outbox", data);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(127);
        execl(KR_KIROKU_BIN, "kiroku", "serve", "--data", data, "--listen", lc, "--operator", lo,
              (char *)NULL);
        _exit(127);
    }
    bool found = kr_test_wait_for(marker_mailed, outbox, KR_TEST_WAIT_MS, "the e-mail");
    kill(pid, SIGTERM);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(found);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* "records" of `kiroku verify --json`. */
static uint64_t records_of(const char *json)
{
    const char *p = strstr(json, "\"records\":");
    assert_non_null(p);
    return strtoull(p + 10, NULL, 10);
}

static void test_marker(void **state)
{
    (void)state;
    struct td *t = td_new(8);
    t->now = real_now() - 20 * RET_NS_PER_DAY; /* the history starts 20 days ago */
    struct kr_caller a, b, op = td_operator();
    uint64_t ta = td_signup(t, MARKER "@example.jp", "correct horse 1", &a, NULL);
    uint64_t tb = td_signup(t, "keep@example.jp", "correct horse 2", &b, NULL);
    kr_set_str(td_args(t), KR_FLD_ATTRIBUTE_KEY, "memo");
    kr_set_u64(t->args, KR_FLD_ATTRIBUTE_TYPE, KR_ATTRIBUTE_TYPE_STRING);
    assert_int_equal(td_exec(t, &a, KR_OP_ATTRIBUTES_DEFINE), KR_OK);
    struct kr_payload *args = td_args(t);
    kr_set_str(args, KR_FLD_NAME, MARKER " Taro");
    kr_set_str(args, KR_FLD_EMAIL, MARKER "@contact.example.jp");
    kr_set_str(args, KR_FLD_NOTE, "called about " MARKER);
    assert_int_equal(td_exec(t, &a, KR_OP_CONTACTS_REGISTER), KR_OK);
    uint8_t contact[16];
    td_get_id(t, "contact", contact);
    args = td_args(t);
    kr_set_bytes(args, KR_FLD_CONTACT, contact, 16);
    kr_set_str(args, KR_FLD_ATTRIBUTE_KEY, "memo");
    kr_set_value_str(args, KR_FLD_VALUE, MARKER "-value", strlen(MARKER "-value"));
    assert_int_equal(td_exec(t, &a, KR_OP_CONTACTS_SET), KR_OK);
    kr_set_str(td_args(t), KR_FLD_NAME, "Keep Me");
    assert_int_equal(td_exec(t, &b, KR_OP_CONTACTS_REGISTER), KR_OK);
    uint8_t keep[16];
    td_get_id(t, "contact", keep);

    /* One of the tenant's sealed payloads: its contact.registered record. */
    struct jrn_recbuf saved;
    memset(&saved, 0, sizeof saved);
    struct jrn_query q = {.kind = JRN_Q_TENANT, .tenant = ta};
    struct jrn_cursor *cur;
    struct jrn_record r;
    uint64_t seq = 0;
    assert_int_equal(jrn_cursor_new(t->d->j, &q, &cur), KR_OK);
    while (jrn_cursor_next(cur, &r) == KR_OK)
        if (kr_event_lookup(r.type, r.type_len) == KR_EV_CONTACT_REGISTERED)
            seq = r.seq;
    jrn_cursor_free(cur);
    assert_true(seq > 0);
    assert_int_equal(jrn_read(t->d->j, seq, &saved), KR_OK);
    dom_close(t->d);
    t->d = NULL;

    char data[600], backups[600];
    snprintf(data, sizeof data, "%s", t->dir);
    snprintf(backups, sizeof backups, "%s.backups", t->dir);
    write_mail(data);
    assert_true(td_dir_contains(data, MARKER, strlen(MARKER))); /* control */
    assert_true(some_key_opens(data, &saved.rec, KR_EV_CONTACT_REGISTERED));

    /* Daily backups for 10 simulated days, the newest today. */
    for (int day = 9; day >= 0; day--) {
        char off[32];
        snprintf(off, sizeof off, "-%dd", day);
        setenv("KIROKU_CLOCK_OFFSET", off, 1);
        assert_int_equal(run((const char *const[]){"backup", "--data", data, "--to", backups,
                                                   "--test-clock", NULL}),
                         0);
    }
    unsetenv("KIROKU_CLOCK_OFFSET");
    char gens[16][1024];
    size_t ngen = generations(backups, gens);
    assert_int_equal(ngen, 7);
    for (size_t i = 0; i < ngen; i++)
        assert_true(some_key_opens(gens[i], &saved.rec, KR_EV_CONTACT_REGISTERED)); /* control */

    /* Cancelled now. */
    td_reopen(t);
    t->now = real_now();
    kr_set_u64(td_args(t), KR_FLD_TENANT, ta);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_CANCEL), KR_OK);
    uint64_t cancelled = td_get_u64(t, "cancelled");
    dom_close(t->d);
    t->d = NULL;

    /* A minute before it is due: listed, not due, nothing happens. */
    clock_at(cancelled + RET_DUE_AFTER_NS - 60ull * 1000000000ull);
    assert_int_equal(run((const char *const[]){"retention", "--data", data, "--backups", backups,
                                               "--json", NULL}),
                     0);
    assert_non_null(strstr(out, "\"due\":false"));
    assert_null(strstr(out, "\"erased\":true"));
    assert_true(some_key_opens(data, &saved.rec, KR_EV_CONTACT_REGISTERED));

    /* 30 days on: killed after each step in turn, then run to the end. */
    clock_at(cancelled + RET_ERASE_AFTER_NS);
    static const char *const steps[] = {"key", "backups", "outbox", "strip", "event"};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        setenv("KIROKU_RETENTION_KILL_AFTER", steps[i], 1);
        int rc =
            run((const char *const[]){"retention", "--data", data, "--backups", backups, NULL});
        if (rc != -1)
            fail_msg("retention killed after %s: exit %d: %s", steps[i], rc, err);
        /* From the first step on, no live key opens it. */
        assert_false(some_key_opens(data, &saved.rec, KR_EV_CONTACT_REGISTERED));
    }
    unsetenv("KIROKU_RETENTION_KILL_AFTER");
    assert_int_equal(run((const char *const[]){"retention", "--data", data, "--backups", backups,
                                               "--json", NULL}),
                     0);
    /* Erased already (the kill after "event" came after its commit). */
    assert_null(strstr(out, "\"due\":true"));
    /* Again: nothing changes. */
    assert_int_equal(run((const char *const[]){"verify", "--data", data, "--json", NULL}), 0);
    uint64_t records = records_of(out);
    assert_int_equal(run((const char *const[]){"retention", "--data", data, "--backups", backups,
                                               "--json", NULL}),
                     0);
    assert_non_null(strstr(out, "\"tenants\":[]"));
    assert_int_equal(run((const char *const[]){"verify", "--data", data, "--json", NULL}), 0);
    assert_true(records_of(out) == records);
    unsetenv("KIROKU_CLOCK_OFFSET");

    /* Nothing of it anywhere. */
    assert_false(td_dir_contains(data, MARKER, strlen(MARKER)));
    assert_false(td_dir_contains(backups, MARKER, strlen(MARKER)));
    assert_false(some_key_opens(data, &saved.rec, KR_EV_CONTACT_REGISTERED));
    ngen = generations(backups, gens);
    assert_int_equal(ngen, 7);
    for (size_t i = 0; i < ngen; i++)
        assert_false(some_key_opens(gens[i], &saved.rec, KR_EV_CONTACT_REGISTERED));

    /* The live journal and every generation verify; payloads were stripped. */
    assert_int_equal(run((const char *const[]){"verify", "--data", data, "--json", NULL}), 0);
    assert_null(strstr(out, "\"stripped\":0,"));
    assert_int_equal(run((const char *const[]){"backup", "check", backups, "--data", data, NULL}),
                     0);
    /* The views are what a rebuild of the stripped journal gives. */
    assert_int_equal(run((const char *const[]){"replay", "--check", "--data", data, NULL}), 0);

    /* The other tenant is intact, the erased one gone. */
    td_reopen(t);
    td_args(t);
    assert_int_equal(td_exec(t, &b, KR_OP_CONTACTS_LIST), KR_OK);
    assert_int_equal(td_get(t, "contacts")->via.array.size, 1);
    kr_set_bytes(td_args(t), KR_FLD_CONTACT, keep, 16);
    assert_int_equal(td_exec(t, &b, KR_OP_CONTACTS_GET), KR_OK);
    struct kr_data_key k;
    assert_int_equal(ks_get(t->d->ks, tb, &k), KR_OK);
    kr_data_key_wipe(&k);
    assert_int_equal(ks_get(t->d->ks, ta, &k), KR_ENOTFOUND);
    td_args(t);
    assert_int_equal(td_exec(t, &op, KR_OP_TENANTS_LIST), KR_OK);
    const msgpack_object *l = td_get(t, "tenants");
    for (uint32_t i = 0; i < l->via.array.size; i++) {
        const msgpack_object *row = &l->via.array.ptr[i];
        if (td_map_get(row, "tenant")->via.u64 == ta)
            assert_true(td_map_get(row, "tenant_state")->type == MSGPACK_OBJECT_STR &&
                        td_map_get(row, "tenant_state")->via.str.size == 6 &&
                        memcmp(td_map_get(row, "tenant_state")->via.str.ptr, "erased", 6) == 0);
    }
    jrn_recbuf_fini(&saved);
    kr_test_rmrf(backups);
    td_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_marker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
