/*
 * note_test.c: tests for journal/note.c, signed checkpoints.
 *
 * Notes for the negative cases are built here with libsodium directly, not with
 * kr_checkpoint_sign(), so that a malformed body still carries a valid
 * signature and the test reaches the checkpoint parser; and so that the known
 * answers do not depend on the code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "note.h"

#define EM_DASH "\xE2\x80\x94"
/* Room for any note the tests build, over-long ones included. */
#define BUF_MAX (4 * KR_NOTE_MAX)

struct test_key {
    char name[KR_ORIGIN_MAX + 1];
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
};

/* A key from the seed first, first+1, ..., first+31. */
static void key_make(struct test_key *k, const char *name, uint8_t first)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    for (size_t i = 0; i < sizeof seed; i++)
        seed[i] = (uint8_t)(first + i);
    snprintf(k->name, sizeof k->name, "%s", name);
    assert_int_equal(crypto_sign_seed_keypair(k->pk, k->sk, seed), 0);
}

static struct kr_note_key key_known(const struct test_key *k, uint32_t id)
{
    struct kr_note_key nk;
    memset(&nk, 0, sizeof nk);
    snprintf(nk.name, sizeof nk.name, "%s", k->name);
    memcpy(nk.pk, k->pk, sizeof nk.pk);
    nk.key_id = id;
    return nk;
}

/* The key hash as signed-note defines it, computed without note.c. */
static void key_hash_ref(const char *name, const uint8_t pk[32], uint8_t out[4])
{
    uint8_t buf[KR_ORIGIN_MAX + 2 + 32];
    size_t n = strlen(name);
    assert_true(n <= KR_ORIGIN_MAX);
    memcpy(buf, name, n);
    buf[n] = 0x0A;
    buf[n + 1] = 0x01;
    memcpy(buf + n + 2, pk, 32);
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, buf, n + 2 + 32);
    memcpy(out, h, 4);
}

static size_t put(char *buf, size_t len, const void *s, size_t n)
{
    assert_true(len + n < BUF_MAX);
    memcpy(buf + len, s, n);
    return len + n;
}

/* Append "— name base64(payload)\n" to buf[0..len). */
static size_t put_sig_line(char *buf, size_t len, const char *name, const uint8_t *payload,
                           size_t payload_len)
{
    char b64[BUF_MAX];
    sodium_bin2base64(b64, sizeof b64, payload, payload_len, sodium_base64_VARIANT_ORIGINAL);
    len = put(buf, len, EM_DASH " ", 4);
    len = put(buf, len, name, strlen(name));
    len = put(buf, len, " ", 1);
    len = put(buf, len, b64, strlen(b64));
    return put(buf, len, "\n", 1);
}

/* Append k's signature line over body[0..body_len). */
static size_t put_sig(char *buf, size_t len, const char *body, size_t body_len,
                      const struct test_key *k)
{
    uint8_t payload[4 + crypto_sign_BYTES];
    key_hash_ref(k->name, k->pk, payload);
    crypto_sign_detached(payload + 4, NULL, (const uint8_t *)body, body_len, k->sk);
    return put_sig_line(buf, len, k->name, payload, sizeof payload);
}

/* buf = body, blank line, one signature line by each of ks[0..n). */
static size_t make_note(char *buf, const char *body, size_t body_len, const struct test_key *ks,
                        size_t n)
{
    size_t len = put(buf, 0, body, body_len);
    len = put(buf, len, "\n", 1);
    for (size_t i = 0; i < n; i++)
        len = put_sig(buf, len, body, body_len, &ks[i]);
    buf[len] = '\0';
    return len;
}

static const char ROOT_B64[] = "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8=";

/* Open buf with k as the only known key (key_id 7). */
static kr_err open1(const char *buf, size_t len, const struct test_key *k, struct kr_checkpoint *cp)
{
    struct kr_note_key nk = key_known(k, 7);
    uint32_t id = 0;
    return kr_checkpoint_open(buf, len, &nk, 1, cp, &id);
}

/* Sign the body text `body` with k and open it with k known. */
static kr_err open_body(const char *body, size_t body_len, const struct test_key *k,
                        struct kr_checkpoint *cp)
{
    static char buf[BUF_MAX];
    size_t len = make_note(buf, body, body_len, k, 1);
    return open1(buf, len, k, cp);
}

static kr_err open_body_str(const char *body, const struct test_key *k)
{
    struct kr_checkpoint cp;
    return open_body(body, strlen(body), k, &cp);
}

static struct test_key key_a, key_b, key_c;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    key_make(&key_a, "kiroku/0123456789abcdef0123456789abcdef", 0x01);
    key_make(&key_b, "witness.example/b", 0x41);
    key_make(&key_c, "witness.example/c", 0x81);
    return 0;
}

static void checkpoint_make(struct kr_checkpoint *cp, const char *origin, uint64_t size)
{
    memset(cp, 0, sizeof *cp);
    snprintf(cp->origin, sizeof cp->origin, "%s", origin);
    cp->size = size;
    for (size_t i = 0; i < KR_HASH_LEN; i++)
        cp->root[i] = (uint8_t)(0xA0 + i);
}

/* ---- key hash ---- */

static void test_key_hash_known_answer(void **state)
{
    (void)state;
    uint8_t got[4], ref[4];
    assert_int_equal(kr_note_key_hash(key_a.name, key_a.pk, got), KR_OK);
    key_hash_ref(key_a.name, key_a.pk, ref);
    assert_memory_equal(got, ref, 4);
    /* Also checked with Python's cryptography (OpenSSL Ed25519) and hashlib. */
    static const uint8_t pk_want[32] = {0x79, 0xb5, 0x56, 0x2e, 0x8f, 0xe6, 0x54, 0xf9,
                                        0x40, 0x78, 0xb1, 0x12, 0xe8, 0xa9, 0x8b, 0xa7,
                                        0x90, 0x1f, 0x85, 0x3a, 0xe6, 0x95, 0xbe, 0xd7,
                                        0xe0, 0xe3, 0x91, 0x0b, 0xad, 0x04, 0x96, 0x64};
    static const uint8_t hash_want[4] = {0xea, 0xac, 0x3f, 0x8e};
    assert_memory_equal(key_a.pk, pk_want, 32);
    assert_memory_equal(got, hash_want, 4);

    assert_int_equal(kr_note_key_hash(key_b.name, key_b.pk, got), KR_OK);
    key_hash_ref(key_b.name, key_b.pk, ref);
    assert_memory_equal(got, ref, 4);
}

static void test_key_hash_names(void **state)
{
    (void)state;
    uint8_t h[4];
    static const char *const bad[] = {"",     "a b",    "a+b",         "a\nb",
                                      "a\tb", "a\177b", "caf\xC3\xA9", "a\302\240b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(kr_note_key_hash(bad[i], key_a.pk, h), KR_EINVAL);

    char name[KR_ORIGIN_MAX + 2];
    memset(name, 'n', KR_ORIGIN_MAX);
    name[KR_ORIGIN_MAX] = '\0';
    assert_int_equal(kr_note_key_hash(name, key_a.pk, h), KR_OK);
    name[KR_ORIGIN_MAX] = 'n';
    name[KR_ORIGIN_MAX + 1] = '\0';
    assert_int_equal(kr_note_key_hash(name, key_a.pk, h), KR_EINVAL);

    assert_int_equal(kr_note_key_hash(NULL, key_a.pk, h), KR_EINVAL);
    assert_int_equal(kr_note_key_hash("a", NULL, h), KR_EINVAL);
    assert_int_equal(kr_note_key_hash("a", key_a.pk, NULL), KR_EINVAL);
    assert_int_equal(
        kr_note_key_hash("example.com/log~!\"#$%&'()*,-./:;<=>?@[\\]^_`{|}", key_a.pk, h), KR_OK);
}

/* ---- signing ---- */

/* Written out by hand from the two specs and cross-checked with an
 * independent implementation (Python cryptography + hashlib + base64). */
static const char KAT_NOTE[] =
    "kiroku/0123456789abcdef0123456789abcdef\n"
    "1234567\n"
    "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8=\n"
    "\n" EM_DASH " kiroku/0123456789abcdef0123456789abcdef "
    "6qw/jg4VZsjB2CMGMf4q6tAeRxIDzG+JwrwBUli2Mv4Y6pubAzQreWI2Ef8OfItzoLOmdv+fK25GzyfP+erULhjxEAE="
    "\n";

static void test_sign_known_answer(void **state)
{
    (void)state;
    struct kr_checkpoint cp;
    checkpoint_make(&cp, key_a.name, 1234567);
    char out[KR_NOTE_MAX + 1];
    size_t len = 0;
    assert_int_equal(kr_checkpoint_sign(&cp, key_a.name, key_a.pk, key_a.sk, out, sizeof out, &len),
                     KR_OK);
    assert_int_equal(len, sizeof KAT_NOTE - 1);
    assert_memory_equal(out, KAT_NOTE, sizeof KAT_NOTE);

    /* Our own test-side builder agrees, so the negative tests build real notes. */
    char body[256];
    int n = snprintf(body, sizeof body, "%s\n1234567\n%s\n", key_a.name, ROOT_B64);
    char buf[BUF_MAX];
    size_t blen = make_note(buf, body, (size_t)n, &key_a, 1);
    assert_int_equal(blen, len);
    assert_memory_equal(buf, KAT_NOTE, len);
}

static void test_roundtrip(void **state)
{
    (void)state;
    static const uint64_t sizes[] = {0, 1, 9, 10, 1234567, UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct kr_checkpoint cp, got;
        checkpoint_make(&cp, "example.com/log", sizes[i]);
        randombytes_buf(cp.root, sizeof cp.root);
        char out[KR_NOTE_MAX + 1];
        size_t len = 0;
        assert_int_equal(
            kr_checkpoint_sign(&cp, key_b.name, key_b.pk, key_b.sk, out, sizeof out, &len), KR_OK);
        assert_int_equal(strlen(out), len);

        struct kr_note_key keys[2] = {key_known(&key_a, 1), key_known(&key_b, 2)};
        uint32_t id = 0;
        memset(&got, 0xAA, sizeof got);
        assert_int_equal(kr_checkpoint_open(out, len, keys, 2, &got, &id), KR_OK);
        assert_int_equal(id, 2);
        assert_string_equal(got.origin, cp.origin);
        assert_true(got.size == cp.size);
        assert_memory_equal(got.root, cp.root, KR_HASH_LEN);
    }
}

/* libsodium 1.0.18 decodes bytes 0x80..0xFF as '/': "//" in a signature
 * re-spelled as U+00BF (C2 BF) must not verify, or one signed note would
 * have many spellings. */
static void test_signature_respelled(void **state)
{
    (void)state;
    struct kr_note_key keys[1] = {key_known(&key_a, 1)};
    int found = 0;
    for (uint64_t size = 1; size < 20000 && found < 3; size++) {
        struct kr_checkpoint cp, got;
        checkpoint_make(&cp, key_a.name, size);
        char out[KR_NOTE_MAX + 1];
        size_t len = 0;
        assert_int_equal(
            kr_checkpoint_sign(&cp, key_a.name, key_a.pk, key_a.sk, out, sizeof out, &len), KR_OK);
        char *sig = strstr(out, "\n\n");
        assert_non_null(sig);
        char *slash = strstr(strrchr(out, ' '), "//");
        if (!slash)
            continue;
        found++;
        slash[0] = (char)0xC2;
        slash[1] = (char)0xBF;
        uint32_t id = 0;
        assert_int_not_equal(kr_checkpoint_open(out, len, keys, 1, &got, &id), KR_OK);
    }
    assert_int_equal(found, 3);
}

static void test_sign_utf8_origin(void **state)
{
    (void)state;
    struct kr_checkpoint cp, got;
    checkpoint_make(&cp, "\xE4\xBE\x8B.example/\xF0\x9F\x93\x9C log", 5);
    char out[KR_NOTE_MAX + 1];
    size_t len;
    assert_int_equal(kr_checkpoint_sign(&cp, key_a.name, key_a.pk, key_a.sk, out, sizeof out, &len),
                     KR_OK);
    assert_int_equal(open1(out, len, &key_a, &got), KR_OK);
    assert_string_equal(got.origin, cp.origin);
}

static void test_sign_capacity(void **state)
{
    (void)state;
    struct kr_checkpoint cp;
    checkpoint_make(&cp, key_a.name, 1234567);
    char out[KR_NOTE_MAX + 1];
    size_t need = sizeof KAT_NOTE; /* with the NUL */
    for (size_t cap = 0; cap < need; cap++) {
        size_t len = 999;
        memset(out, 'x', sizeof out);
        assert_int_equal(kr_checkpoint_sign(&cp, key_a.name, key_a.pk, key_a.sk, out, cap, &len),
                         KR_ETOOLARGE);
        assert_int_equal(len, 999);
        if (cap > 0)
            assert_int_equal(out[0], '\0');
        assert_int_equal(out[cap], 'x');
    }
    size_t len;
    assert_int_equal(kr_checkpoint_sign(&cp, key_a.name, key_a.pk, key_a.sk, out, need, &len),
                     KR_OK);
    assert_int_equal(len, need - 1);
}

static void test_sign_bad_args(void **state)
{
    (void)state;
    struct kr_checkpoint cp;
    char out[KR_NOTE_MAX + 1];
    size_t len;
    checkpoint_make(&cp, "example.com/log", 1);
#define SIGN(c, name, pk, sk) kr_checkpoint_sign(c, name, pk, sk, out, sizeof out, &len)
    assert_int_equal(SIGN(NULL, key_a.name, key_a.pk, key_a.sk), KR_EINVAL);
    assert_int_equal(SIGN(&cp, NULL, key_a.pk, key_a.sk), KR_EINVAL);
    assert_int_equal(SIGN(&cp, key_a.name, NULL, key_a.sk), KR_EINVAL);
    assert_int_equal(SIGN(&cp, key_a.name, key_a.pk, NULL), KR_EINVAL);
    assert_int_equal(kr_checkpoint_sign(&cp, key_a.name, key_a.pk, key_a.sk, NULL, 10, &len),
                     KR_EINVAL);
    assert_int_equal(kr_checkpoint_sign(&cp, key_a.name, key_a.pk, key_a.sk, out, sizeof out, NULL),
                     KR_EINVAL);
    assert_int_equal(SIGN(&cp, "bad name", key_a.pk, key_a.sk), KR_EINVAL);
    assert_int_equal(SIGN(&cp, "", key_a.pk, key_a.sk), KR_EINVAL);
    /* sk of one key, pk of another. */
    assert_int_equal(SIGN(&cp, key_a.name, key_b.pk, key_a.sk), KR_EKEY);
    assert_int_equal(out[0], '\0');

    static const char *const bad_origins[] = {"",     "a\nb",     "a\rb",        "a\tb",
                                              "\xFF", "\xC0\xAF", "\xED\xA0\x80"};
    for (size_t i = 0; i < sizeof bad_origins / sizeof bad_origins[0]; i++) {
        checkpoint_make(&cp, bad_origins[i], 1);
        assert_int_equal(SIGN(&cp, key_a.name, key_a.pk, key_a.sk), KR_EINVAL);
    }
    /* An origin filling the array with no NUL. */
    memset(cp.origin, 'o', sizeof cp.origin);
    assert_int_equal(SIGN(&cp, key_a.name, key_a.pk, key_a.sk), KR_EINVAL);
    memset(cp.origin, 'o', KR_ORIGIN_MAX);
    cp.origin[KR_ORIGIN_MAX] = '\0';
    assert_int_equal(SIGN(&cp, key_a.name, key_a.pk, key_a.sk), KR_OK);
#undef SIGN
}

/* ---- opening: tampering ---- */

static void test_every_bit_flip_fails(void **state)
{
    (void)state;
    char buf[sizeof KAT_NOTE];
    size_t len = sizeof KAT_NOTE - 1;
    struct kr_note_key nk = key_known(&key_a, 7);
    struct kr_checkpoint cp, sentinel;
    memset(&sentinel, 0x5A, sizeof sentinel);
    uint32_t id;

    memcpy(buf, KAT_NOTE, sizeof KAT_NOTE);
    assert_int_equal(kr_checkpoint_open(buf, len, &nk, 1, &cp, &id), KR_OK);
    assert_int_equal(id, 7);

    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            memcpy(buf, KAT_NOTE, sizeof KAT_NOTE);
            buf[i] = (char)(buf[i] ^ (1 << bit));
            cp = sentinel;
            id = 12345;
            kr_err err = kr_checkpoint_open(buf, len, &nk, 1, &cp, &id);
            if (err != KR_ECORRUPT && err != KR_EBADSIG)
                fail_msg("flip of byte %zu bit %u: %s", i, bit, kr_strerror(err));
            assert_memory_equal(&cp, &sentinel, sizeof cp);
            assert_int_equal(id, 12345);
        }
    }
}

static void test_every_truncation_fails(void **state)
{
    (void)state;
    size_t len = sizeof KAT_NOTE - 1;
    for (size_t k = 0; k < len; k++) {
        /* A heap copy of exactly k bytes, so a read past the end shows under ASan. */
        char *buf = malloc(k > 0 ? k : 1);
        assert_non_null(buf);
        memcpy(buf, KAT_NOTE, k);
        struct kr_checkpoint cp;
        kr_err err = open1(buf, k, &key_a, &cp);
        free(buf);
        if (err != KR_ECORRUPT && err != KR_EBADSIG)
            fail_msg("truncation at %zu: %s", k, kr_strerror(err));
    }
}

static void test_wrong_key(void **state)
{
    (void)state;
    struct kr_checkpoint cp;
    size_t len = sizeof KAT_NOTE - 1;
    assert_int_equal(open1(KAT_NOTE, len, &key_b, &cp), KR_EBADSIG);

    /* Known name, other key: the key hash differs, so the line is ignored. */
    struct test_key same_name = key_b;
    snprintf(same_name.name, sizeof same_name.name, "%s", key_a.name);
    assert_int_equal(open1(KAT_NOTE, len, &same_name, &cp), KR_EBADSIG);

    /* Known key under another name: also someone else's line. */
    struct test_key other_name = key_a;
    snprintf(other_name.name, sizeof other_name.name, "kiroku/other");
    assert_int_equal(open1(KAT_NOTE, len, &other_name, &cp), KR_EBADSIG);

    /* No keys at all. */
    uint32_t id;
    assert_int_equal(kr_checkpoint_open(KAT_NOTE, len, NULL, 0, &cp, &id), KR_EBADSIG);
}

static void test_two_signers(void **state)
{
    (void)state;
    char body[256], buf[BUF_MAX];
    int n = snprintf(body, sizeof body, "%s\n42\n%s\n", key_a.name, ROOT_B64);
    struct test_key ab[2] = {key_a, key_b};
    size_t len = make_note(buf, body, (size_t)n, ab, 2);

    struct kr_checkpoint cp;
    uint32_t id;
    struct kr_note_key ka = key_known(&key_a, 1), kb = key_known(&key_b, 2),
                       kc = key_known(&key_c, 3);
    assert_int_equal(kr_checkpoint_open(buf, len, &ka, 1, &cp, &id), KR_OK);
    assert_int_equal(id, 1);
    assert_true(cp.size == 42);
    assert_int_equal(kr_checkpoint_open(buf, len, &kb, 1, &cp, &id), KR_OK);
    assert_int_equal(id, 2);
    assert_int_equal(kr_checkpoint_open(buf, len, &kc, 1, &cp, &id), KR_EBADSIG);

    /* Both known: the first line decides which key_id comes back. */
    struct kr_note_key ba[3] = {kc, kb, ka};
    assert_int_equal(kr_checkpoint_open(buf, len, ba, 3, &cp, &id), KR_OK);
    assert_int_equal(id, 1);
    struct test_key rev[2] = {key_b, key_a};
    len = make_note(buf, body, (size_t)n, rev, 2);
    assert_int_equal(kr_checkpoint_open(buf, len, ba, 3, &cp, &id), KR_OK);
    assert_int_equal(id, 2);
}

static void test_unknown_lines_ignored(void **state)
{
    (void)state;
    char body[256], buf[BUF_MAX];
    int n = snprintf(body, sizeof body, "%s\n42\n%s\n", key_a.name, ROOT_B64);
    size_t len = make_note(buf, body, (size_t)n, &key_a, 1);

    /* Another algorithm's long signature by an unknown key. */
    uint8_t junk[700];
    memset(junk, 0x33, sizeof junk);
    len = put_sig_line(buf, len, "pq.example/\xE3\x83\xAD\xE3\x82\xB0", junk, sizeof junk);
    /* A line with our name but a foreign key hash: not our key, so ignored. */
    key_hash_ref(key_a.name, key_b.pk, junk);
    len = put_sig_line(buf, len, key_a.name, junk, 68);
    /* The shortest payload the spec allows. */
    len = put_sig_line(buf, len, "tiny", junk, 5);

    struct kr_checkpoint cp;
    assert_int_equal(open1(buf, len, &key_a, &cp), KR_OK);
    assert_string_equal(cp.origin, key_a.name);
}

static void test_bad_signature_by_known_key(void **state)
{
    (void)state;
    char body[256], buf[BUF_MAX];
    int n = snprintf(body, sizeof body, "%s\n42\n%s\n", key_a.name, ROOT_B64);
    struct kr_checkpoint cp;

    /* A valid line, then a forged one under the same name and key hash. */
    size_t len = make_note(buf, body, (size_t)n, &key_a, 1);
    uint8_t payload[4 + 64 + 1];
    key_hash_ref(key_a.name, key_a.pk, payload);
    memset(payload + 4, 0x11, sizeof payload - 4);
    size_t forged = put_sig_line(buf, len, key_a.name, payload, 68);
    assert_int_equal(open1(buf, forged, &key_a, &cp), KR_EBADSIG);

    /* Payloads one byte short or long for Ed25519. */
    forged = put_sig_line(buf, len, key_a.name, payload, 67);
    assert_int_equal(open1(buf, forged, &key_a, &cp), KR_EBADSIG);
    forged = put_sig_line(buf, len, key_a.name, payload, 69);
    assert_int_equal(open1(buf, forged, &key_a, &cp), KR_EBADSIG);

    /* Signed over the body plus the blank line: the wrong bytes. */
    char body_nl[258];
    memcpy(body_nl, body, (size_t)n);
    body_nl[n] = '\n';
    len = put(buf, 0, body, (size_t)n);
    len = put(buf, len, "\n", 1);
    len = put_sig(buf, len, body_nl, (size_t)n + 1, &key_a);
    assert_int_equal(open1(buf, len, &key_a, &cp), KR_EBADSIG);
}

/* ---- opening: checkpoint body ---- */

static void test_extension_lines(void **state)
{
    (void)state;
    char body[512];
    struct kr_checkpoint cp;
    int n = snprintf(body, sizeof body, "log\n3\n%s\nrekor.example - 123\n\xE2\x9C\x93 ext 2\n",
                     ROOT_B64);
    assert_int_equal(open_body(body, (size_t)n, &key_a, &cp), KR_OK);
    assert_string_equal(cp.origin, "log");
    assert_true(cp.size == 3);
    assert_int_equal(cp.root[0], 0xA0);
    assert_int_equal(cp.root[31], 0xBF);

    /* Extension lines must be non-empty, and so must every line of the body. */
    snprintf(body, sizeof body, "log\n3\n%s\n\next\n", ROOT_B64);
    assert_int_equal(open_body_str(body, &key_a), KR_ECORRUPT);
    snprintf(body, sizeof body, "log\n\n3\n%s\n", ROOT_B64);
    assert_int_equal(open_body_str(body, &key_a), KR_ECORRUPT);
    /* Fewer than three lines. */
    assert_int_equal(open_body_str("log\n3\n", &key_a), KR_ECORRUPT);
    assert_int_equal(open_body_str("log\n", &key_a), KR_ECORRUPT);
    assert_int_equal(open_body_str("\n", &key_a), KR_ECORRUPT);
}

static void test_sizes(void **state)
{
    (void)state;
    char body[256];
    struct kr_checkpoint cp;
    static const struct {
        const char *text;
        uint64_t value;
    } good[] = {{"0", 0}, {"1", 1}, {"18446744073709551615", UINT64_MAX}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int n = snprintf(body, sizeof body, "log\n%s\n%s\n", good[i].text, ROOT_B64);
        assert_int_equal(open_body(body, (size_t)n, &key_a, &cp), KR_OK);
        assert_true(cp.size == good[i].value);
    }
    static const char *const bad[] = {"18446744073709551616",
                                      "18446744073709551620",
                                      "99999999999999999999",
                                      "184467440737095516150",
                                      "01",
                                      "00",
                                      "-1",
                                      "+1",
                                      "-0",
                                      "",
                                      " 1",
                                      "1 ",
                                      "1a",
                                      "0x10",
                                      "1.0",
                                      "1e3",
                                      "\xEF\xBC\x91" /* FULLWIDTH DIGIT ONE */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "log\n%s\n%s\n", bad[i], ROOT_B64);
        if (open_body_str(body, &key_a) != KR_ECORRUPT)
            fail_msg("size \"%s\" accepted", bad[i]);
    }
}

static void test_roots(void **state)
{
    (void)state;
    char body[256];
    static const char *const bad[] = {
        /* 31 and 33 bytes */
        "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vg==",
        "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr/A",
        /* padding missing or extra, and non-zero padding bits */
        "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8",
        "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8==",
        "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr9=",
        /* base64url alphabet, spaces, empty */
        "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr_=",
        "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8= ",
        " oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8=",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "log\n1\n%s\n", bad[i]);
        if (open_body_str(body, &key_a) != KR_ECORRUPT)
            fail_msg("root \"%s\" accepted", bad[i]);
    }
}

static void test_origins(void **state)
{
    (void)state;
    char body[512], origin[KR_ORIGIN_MAX + 2];
    struct kr_checkpoint cp;

    memset(origin, 'o', KR_ORIGIN_MAX);
    origin[KR_ORIGIN_MAX] = '\0';
    int n = snprintf(body, sizeof body, "%s\n1\n%s\n", origin, ROOT_B64);
    assert_int_equal(open_body(body, (size_t)n, &key_a, &cp), KR_OK);
    assert_string_equal(cp.origin, origin);

    origin[KR_ORIGIN_MAX] = 'o';
    origin[KR_ORIGIN_MAX + 1] = '\0';
    snprintf(body, sizeof body, "%s\n1\n%s\n", origin, ROOT_B64);
    assert_int_equal(open_body_str(body, &key_a), KR_ECORRUPT);

    /* Origins need not look like URLs; kiroku does not assume they do. */
    n = snprintf(body, sizeof body, "my log + \xC3\xA9t\xC3\xA9\n1\n%s\n", ROOT_B64);
    assert_int_equal(open_body(body, (size_t)n, &key_a, &cp), KR_OK);
    assert_string_equal(cp.origin, "my log + \xC3\xA9t\xC3\xA9");
}

/* ---- opening: note syntax ---- */

static void test_not_utf8_or_control(void **state)
{
    (void)state;
    char body[256];
    static const char *const bad_origin[] = {
        "a\rb",
        "a\tb",
        "a\033b",
        "\xFF",
        "\xC0\xAF",
        "\xE0\x80\xAF",     /* overlong '/' */
        "\xED\xA0\x80",     /* a surrogate */
        "\xF4\x90\x80\x80", /* past U+10FFFF */
        "\xC3",
        "\x80",
    };
    for (size_t i = 0; i < sizeof bad_origin / sizeof bad_origin[0]; i++) {
        snprintf(body, sizeof body, "%s\n1\n%s\n", bad_origin[i], ROOT_B64);
        if (open_body_str(body, &key_a) != KR_ECORRUPT)
            fail_msg("origin %zu accepted", i);
    }

    /* CRLF line ends, signed as such. */
    snprintf(body, sizeof body, "log\r\n1\r\n%s\r\n", ROOT_B64);
    assert_int_equal(open_body_str(body, &key_a), KR_ECORRUPT);
}

static void test_embedded_nul(void **state)
{
    (void)state;
    char body[256];
    struct kr_checkpoint cp;
    int n = snprintf(body, sizeof body, "lo_g\n1\n%s\n", ROOT_B64);
    body[2] = '\0';
    assert_int_equal(open_body(body, (size_t)n, &key_a, &cp), KR_ECORRUPT);

    /* A NUL in the signature block, and one right after the note. */
    char buf[sizeof KAT_NOTE];
    memcpy(buf, KAT_NOTE, sizeof KAT_NOTE);
    buf[sizeof KAT_NOTE - 3] = '\0';
    assert_int_equal(open1(buf, sizeof KAT_NOTE - 1, &key_a, &cp), KR_ECORRUPT);
    assert_int_equal(open1(KAT_NOTE, sizeof KAT_NOTE, &key_a, &cp), KR_ECORRUPT);
}

static void test_signature_block_syntax(void **state)
{
    (void)state;
    char body[256], buf[BUF_MAX];
    int n = snprintf(body, sizeof body, "log\n1\n%s\n", ROOT_B64);
    struct kr_checkpoint cp;
    size_t len = make_note(buf, body, (size_t)n, &key_a, 1);
    assert_int_equal(open1(buf, len, &key_a, &cp), KR_OK);

    /* No newline at the end; an extra blank line at the end. */
    assert_int_equal(open1(buf, len - 1, &key_a, &cp), KR_ECORRUPT);
    buf[len] = '\n';
    assert_int_equal(open1(buf, len + 1, &key_a, &cp), KR_ECORRUPT);
    /* No signature block at all. */
    assert_int_equal(open1(body, (size_t)n, &key_a, &cp), KR_ECORRUPT);
    assert_int_equal(open1(buf, (size_t)n + 1, &key_a, &cp), KR_ECORRUPT);
    assert_int_equal(open1("", 0, &key_a, &cp), KR_ECORRUPT);
    assert_int_equal(open1("\n", 1, &key_a, &cp), KR_ECORRUPT);
    assert_int_equal(open1("\n\n", 2, &key_a, &cp), KR_ECORRUPT);

    /* Malformed lines after a good one. */
    static const char *const bad_lines[] = {
        "-- tiny AAAAAAAA\n",                 /* hyphens, not an em dash */
        EM_DASH "tiny AAAAAAAA\n",            /* no space after the dash */
        EM_DASH " tinyAAAAAAAA\n",            /* no space after the name */
        EM_DASH "  AAAAAAAA\n",               /* empty name */
        EM_DASH " a+b AAAAAAAA\n",            /* '+' in the name */
        EM_DASH " a\302\240b AAAAAAAA\n",     /* NO-BREAK SPACE in the name */
        EM_DASH " a\343\200\200b AAAAAAAA\n", /* IDEOGRAPHIC SPACE */
        EM_DASH " tiny AAAA\n",               /* 3 bytes: shorter than a key hash + 1 */
        EM_DASH " tiny AAAAAAB=\n",           /* non-zero padding bits */
        EM_DASH " tiny AAAAAA=\n",            /* bad padding */
        EM_DASH " tiny AAAAAAA\n",            /* missing padding */
        EM_DASH " tiny AAAAAAAA \n",          /* trailing space */
        EM_DASH " tiny AAAA AAAA\n",          /* space inside */
        EM_DASH " tiny \n",                   /* empty signature */
        "\n",                                 /* the note ends in a blank line: no signatures */
    };
    for (size_t i = 0; i < sizeof bad_lines / sizeof bad_lines[0]; i++) {
        size_t l = put(buf, len, bad_lines[i], strlen(bad_lines[i]));
        kr_err err = open1(buf, l, &key_a, &cp);
        if (err != KR_ECORRUPT)
            fail_msg("line %zu: %s", i, kr_strerror(err));
    }
    /* The same line, well formed, is fine (an unknown key). */
    static const char good_line[] = EM_DASH " tiny AAAAAAAA\n";
    size_t l = put(buf, len, good_line, sizeof good_line - 1);
    assert_int_equal(open1(buf, l, &key_a, &cp), KR_OK);
}

static void test_signature_count(void **state)
{
    (void)state;
    char body[256], buf[BUF_MAX];
    int n = snprintf(body, sizeof body, "log\n1\n%s\n", ROOT_B64);
    struct kr_checkpoint cp;
    size_t len = make_note(buf, body, (size_t)n, &key_a, 1);
    uint8_t junk[68];
    memset(junk, 0x77, sizeof junk);
    for (int i = 1; i < KR_NOTE_MAX_SIGS; i++)
        len = put_sig_line(buf, len, "other.example/w", junk, sizeof junk);
    assert_int_equal(open1(buf, len, &key_a, &cp), KR_OK);
    len = put_sig_line(buf, len, "other.example/w", junk, sizeof junk);
    assert_int_equal(open1(buf, len, &key_a, &cp), KR_ECORRUPT);
}

static void test_too_long(void **state)
{
    (void)state;
    char body[BUF_MAX], buf[BUF_MAX];
    struct kr_checkpoint cp;

    /* Garbage one byte over the limit. */
    memset(buf, 'x', KR_NOTE_MAX + 1);
    assert_int_equal(open1(buf, KR_NOTE_MAX + 1, &key_a, &cp), KR_ETOOLARGE);
    assert_int_equal(open1(buf, SIZE_MAX, &key_a, &cp), KR_ETOOLARGE);

    /* A well-formed note padded with an extension line to exactly the limit
     * opens; one byte more does not. */
    size_t sig_len = make_note(buf, "", 0, &key_a, 1) - 1;
    size_t head = (size_t)snprintf(body, sizeof body, "log\n1\n%s\n", ROOT_B64);
    size_t ext = KR_NOTE_MAX - sig_len - 1 - head - 1;
    memset(body + head, 'e', ext);
    body[head + ext] = '\n';
    size_t len = make_note(buf, body, head + ext + 1, &key_a, 1);
    assert_int_equal(len, KR_NOTE_MAX);
    assert_int_equal(open1(buf, len, &key_a, &cp), KR_OK);

    memset(body + head, 'e', ext + 1);
    body[head + ext + 1] = '\n';
    len = make_note(buf, body, head + ext + 2, &key_a, 1);
    assert_int_equal(len, KR_NOTE_MAX + 1);
    assert_int_equal(open1(buf, len, &key_a, &cp), KR_ETOOLARGE);
}

static void test_open_bad_args(void **state)
{
    (void)state;
    struct kr_checkpoint cp;
    uint32_t id;
    size_t len = sizeof KAT_NOTE - 1;
    struct kr_note_key nk = key_known(&key_a, 1);
    assert_int_equal(kr_checkpoint_open(NULL, len, &nk, 1, &cp, &id), KR_EINVAL);
    assert_int_equal(kr_checkpoint_open(KAT_NOTE, len, NULL, 1, &cp, &id), KR_EINVAL);
    assert_int_equal(kr_checkpoint_open(KAT_NOTE, len, &nk, 1, NULL, &id), KR_EINVAL);
    assert_int_equal(kr_checkpoint_open(KAT_NOTE, len, &nk, 1, &cp, NULL), KR_EINVAL);
    assert_int_equal(kr_checkpoint_open(KAT_NOTE, len, &nk, (size_t)KR_KEYS_MAX + 1, &cp, &id),
                     KR_EINVAL);
    /* A known key whose name breaks the rules, or has no NUL. */
    struct kr_note_key bad[2] = {nk, nk};
    snprintf(bad[1].name, sizeof bad[1].name, "has space");
    assert_int_equal(kr_checkpoint_open(KAT_NOTE, len, bad, 2, &cp, &id), KR_EINVAL);
    memset(bad[1].name, 'n', sizeof bad[1].name);
    assert_int_equal(kr_checkpoint_open(KAT_NOTE, len, bad, 2, &cp, &id), KR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_hash_known_answer),
        cmocka_unit_test(test_key_hash_names),
        cmocka_unit_test(test_sign_known_answer),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_sign_utf8_origin),
        cmocka_unit_test(test_signature_respelled),
        cmocka_unit_test(test_sign_capacity),
        cmocka_unit_test(test_sign_bad_args),
        cmocka_unit_test(test_every_bit_flip_fails),
        cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_two_signers),
        cmocka_unit_test(test_unknown_lines_ignored),
        cmocka_unit_test(test_bad_signature_by_known_key),
        cmocka_unit_test(test_extension_lines),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_roots),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_not_utf8_or_control),
        cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_signature_block_syntax),
        cmocka_unit_test(test_signature_count),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_open_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
