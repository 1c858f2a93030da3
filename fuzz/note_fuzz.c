/*
 * note_fuzz.c: libFuzzer target for kr_checkpoint_open, the parser and
 * verifier of signed checkpoint notes (journal/note.h).
 *
 * The first input byte picks a mode; the rest is the text:
 *   even: the text is a whole note, opened as it is. This reaches the note
 *         syntax and the signature lines; a mutated body will rarely keep a
 *         valid signature.
 *   odd:  the text is a note body. The target signs it with the fixed key and
 *         appends the signature line, so the body parser behind the
 *         signature check gets fuzzed too.
 * Either way the known key is FUZZ_KEY_NAME with the key from seed 1..32 (the
 * corpus generator make_corpus.c signs with the same one).
 *
 * Properties: nothing crashes; an accepted note opens again to the same
 * checkpoint; its text starts with exactly the body kr_checkpoint_sign writes
 * for that checkpoint (so origin, size and root were read, not guessed); and
 * errors are the documented ones.
 */
#include "kr_limits.h"
#include "note.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_KEY_NAME "kiroku/00112233445566778899aabbccddeeff"
#define FUZZ_KEY_ID   1
#define EM_DASH_SP    "\xE2\x80\x94 "
/* Room for a note a little over the limit, so too-long notes are tried. */
#define NOTE_BUF (2 * KR_NOTE_MAX)
/* "— " + name + " " + base64 of 68 bytes + "\n" + NUL, rounded up. */
#define SIG_LINE_MAX 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t g_pk[crypto_sign_PUBLICKEYBYTES], g_sk[crypto_sign_SECRETKEYBYTES];
static struct kr_note_key g_key;

_Noreturn static void fail(const char *what)
{
    fprintf(stderr, "note_fuzz: %s\n", what);
    abort();
}

static bool same_checkpoint(const struct kr_checkpoint *a, const struct kr_checkpoint *b)
{
    return strcmp(a->origin, b->origin) == 0 && a->size == b->size &&
           memcmp(a->root, b->root, sizeof a->root) == 0;
}

static void setup(void)
{
    static bool done;
    if (done)
        return;
    uint8_t seed[crypto_sign_SEEDBYTES];
    for (size_t i = 0; i < sizeof seed; i++)
        seed[i] = (uint8_t)(i + 1);
    if (sodium_init() < 0 || crypto_sign_seed_keypair(g_pk, g_sk, seed) != 0)
        fail("libsodium setup");
    snprintf(g_key.name, sizeof g_key.name, "%s", FUZZ_KEY_NAME);
    memcpy(g_key.pk, g_pk, sizeof g_pk);
    g_key.key_id = FUZZ_KEY_ID;
    done = true;
}

/* The signature line the fixed key writes over body[0..body_len):
 * "— name base64(key hash || signature)\n", NUL-terminated. Ed25519 signing
 * is deterministic, so this is the only spelling a note can carry without a
 * forgery. Returns its length. */
static size_t sig_line(char line[SIG_LINE_MAX], const void *body, size_t body_len)
{
    uint8_t sig[KR_NOTE_KEY_HASH_LEN + crypto_sign_BYTES];
    char b64[sodium_base64_ENCODED_LEN(sizeof sig, sodium_base64_VARIANT_ORIGINAL)];
    if (kr_note_key_hash(FUZZ_KEY_NAME, g_pk, sig) != KR_OK)
        fail("kr_note_key_hash refuses the fixed key");
    crypto_sign_detached(sig + KR_NOTE_KEY_HASH_LEN, NULL, body, body_len, g_sk);
    sodium_bin2base64(b64, sizeof b64, sig, sizeof sig, sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(line, SIG_LINE_MAX, EM_DASH_SP "%s %s\n", FUZZ_KEY_NAME, b64);
    if (n < 0 || n >= SIG_LINE_MAX)
        fail("signature line buffer too small");
    return (size_t)n;
}

/* note = body, "\n", the fixed key's signature line. Returns the length, or
 * 0 if it does not fit in cap. */
static size_t sign_body(char *note, size_t cap, const uint8_t *body, size_t body_len)
{
    char line[SIG_LINE_MAX];
    size_t n = sig_line(line, body, body_len);
    if (body_len + 1 + n >= cap)
        return 0;
    memcpy(note, body, body_len);
    note[body_len] = '\n';
    memcpy(note + body_len + 1, line, n + 1);
    return body_len + 1 + n;
}

/* Whether text[0..len) has `line` (of n bytes) as one of its lines. */
static bool has_line(const char *text, size_t len, const char *line, size_t n)
{
    for (size_t at = 0; at + n <= len;) {
        if (memcmp(text + at, line, n) == 0)
            return true;
        const char *nl = memchr(text + at, '\n', len - at);
        if (!nl)
            break;
        at = (size_t)(nl - text) + 1;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char note[NOTE_BUF + 1];
    const char *text;
    size_t len;

    setup();
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        if ((len = sign_body(note, sizeof note, data + 1, size - 1)) == 0)
            return 0;
        text = note;
    } else {
        text = (const char *)data + 1;
        len = size - 1;
    }

    struct kr_checkpoint cp, cp2;
    uint32_t key_id = 0, key_id2 = 0;
    memset(&cp, 0xA5, sizeof cp);
    kr_err err = kr_checkpoint_open(text, len, &g_key, 1, &cp, &key_id);
    if (err != KR_OK) {
        if (err != KR_ECORRUPT && err != KR_EBADSIG && err != KR_ETOOLARGE)
            fail("open returned an undocumented error");
        if (err == KR_ETOOLARGE && len <= KR_NOTE_MAX)
            fail("KR_ETOOLARGE for a note within KR_NOTE_MAX");
        return 0;
    }
    if (len > KR_NOTE_MAX)
        fail("accepted a note longer than KR_NOTE_MAX");
    if (key_id != FUZZ_KEY_ID)
        fail("accepted with a key id that was never given");
    size_t olen = strnlen(cp.origin, sizeof cp.origin);
    if (olen == 0 || olen > KR_ORIGIN_MAX)
        fail("accepted origin is empty, too long or not NUL-terminated");

    /* Opens again to the same checkpoint. */
    if (kr_checkpoint_open(text, len, &g_key, 1, &cp2, &key_id2) != KR_OK || key_id2 != key_id ||
        !same_checkpoint(&cp, &cp2))
        fail("an accepted note does not re-verify to the same checkpoint");

    /* The note's first three lines are the body kr_checkpoint_sign writes. */
    static char mine[KR_NOTE_MAX + 1];
    size_t mlen = 0;
    if (kr_checkpoint_sign(&cp, FUZZ_KEY_NAME, g_pk, g_sk, mine, sizeof mine, &mlen) != KR_OK)
        fail("kr_checkpoint_sign refuses a checkpoint kr_checkpoint_open accepted");
    const char *blank = strstr(mine, "\n\n");
    if (!blank)
        fail("kr_checkpoint_sign wrote no blank line");
    size_t body_len = (size_t)(blank - mine) + 1;
    if (body_len > len || memcmp(mine, text, body_len) != 0)
        fail("accepted note's origin, size or root lines differ from the checkpoint read");

    /* The signed body ends at the last blank line; the fixed key's line over it
     * must be there in its one spelling (base64 is canonical, so no other
     * bytes may stand for the same signature). */
    size_t split = 0;
    for (size_t i = 0; i + 1 < len; i++)
        if (text[i] == '\n' && text[i + 1] == '\n')
            split = i + 1;
    if (split == 0)
        fail("accepted a note without a blank line");
    char line[SIG_LINE_MAX];
    size_t n = sig_line(line, text, split);
    if (!has_line(text + split + 1, len - split - 1, line, n))
        fail("accepted note lacks the fixed key's signature line in its canonical spelling");

    /* What we sign opens to the same checkpoint. */
    if (kr_checkpoint_open(mine, mlen, &g_key, 1, &cp2, &key_id2) != KR_OK ||
        !same_checkpoint(&cp, &cp2))
        fail("re-signed checkpoint does not open to the same values");
    return 0;
}
