/*
 * make_corpus.c: writes the seed corpora of the fuzz targets.
 *
 *   make_corpus DIR    writes DIR/record/, DIR/note/ and DIR/mp/
 *
 * The output is deterministic (fixed keys, fixed bytes), so running it again
 * reproduces the committed fuzz/corpus/ exactly. Records are made with
 * jrn_record_encode and notes with kr_checkpoint_sign, so the seeds are what
 * the journal really writes; the note key is the one note_fuzz.c trusts.
 */
#include "note.h"
#include "record.h"

#include <errno.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Must match note_fuzz.c. */
#define FUZZ_KEY_NAME  "kiroku/00112233445566778899aabbccddeeff"
#define OTHER_KEY_NAME "witness.example/w1"
#define EM_DASH_SP     "\xE2\x80\x94 "

static const char *g_dir;

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "make_corpus: %s\n", what);
    exit(1);
}

static void mkdir_p(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die(path);
}

static void write_file(const char *sub, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_dir, sub);
    mkdir_p(path);
    snprintf(path, sizeof path, "%s/%s/%s", g_dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        die(path);
}

/* Bytes first, first+1, ... */
static void pattern(uint8_t *p, size_t n, uint8_t first)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(first + i);
}

static void record_file(const char *name, struct jrn_record *r, uint8_t sig_first,
                        uint8_t *out_bytes, size_t *out_len)
{
    static uint8_t buf[KR_RECORD_MAX];
    size_t len;
    if (!r->payload_stripped)
        crypto_hash_sha256(r->commitment, r->payload, r->payload_len);
    pattern(r->sig, sizeof r->sig, sig_first);
    if (jrn_record_check_fields(r) != KR_OK || jrn_record_encode(r, buf, sizeof buf, &len, NULL))
        die(name);
    struct jrn_record back;
    if (jrn_record_decode(buf, len, &back) != KR_OK)
        die("a generated record does not decode");
    write_file("record", name, buf, len);
    if (out_bytes) {
        memcpy(out_bytes, buf, len);
        *out_len = len;
    }
}

static void make_records(void)
{
    static uint8_t genesis[KR_RECORD_MAX], bench[KR_RECORD_MAX];
    size_t genesis_len, bench_len;
    uint8_t payload[300];
    pattern(payload, sizeof payload, 7);
    /* A small msgpack map, like the genesis record's key payload. */
    static const uint8_t key_payload[] = {0x82, 0xa2, 'i',  'd', 0x01, 0xa2, 'p',
                                          'k',  0xc4, 0x04, 1,   2,    3,    4};
    char stream[KR_STREAM_MAX], type[KR_TYPE_MAX], actor[KR_ACTOR_MAX];
    memset(stream, 's', sizeof stream);
    memset(type, 't', sizeof type);
    memset(actor, 'a', sizeof actor);

    struct jrn_record r = {.seq = 1,
                           .time_ns = 1700000000000000000ull,
                           .tenant = 0,
                           .version = 1,
                           .key_id = 1,
                           .stream = "journal",
                           .stream_len = 7,
                           .type = "journal.created",
                           .type_len = 15,
                           .actor = "system",
                           .actor_len = 6,
                           .payload = key_payload,
                           .payload_len = sizeof key_payload};
    record_file("genesis.bin", &r, 0x40, genesis, &genesis_len);

    r = (struct jrn_record){.seq = 2,
                            .time_ns = 1700000000000001000ull,
                            .tenant = 3,
                            .version = 5,
                            .key_id = 1,
                            .stream = "bench/0123456789abcdef/0/1",
                            .stream_len = 26,
                            .type = "bench.appended",
                            .type_len = 14,
                            .actor = "bench",
                            .actor_len = 5,
                            .payload = payload,
                            .payload_len = 200};
    pattern(r.prev, sizeof r.prev, 0x90);
    record_file("bench.bin", &r, 0x50, bench, &bench_len);

    r.payload_stripped = true;
    r.payload = NULL;
    r.payload_len = 0;
    record_file("stripped.bin", &r, 0x60, NULL, NULL);

    r.payload_stripped = false;
    r.actor_len = 0;
    r.seq = 300;
    r.version = 70000;
    r.key_id = 256;
    record_file("empty_payload_actor.bin", &r, 0x70, NULL, NULL);

    r.payload = payload;
    r.payload_len = sizeof payload; /* bin16 */
    r.stream = stream;
    r.stream_len = 32; /* str8 */
    r.actor = actor;
    r.actor_len = 31; /* longest fixstr */
    record_file("bin16_str8.bin", &r, 0x80, NULL, NULL);

    r = (struct jrn_record){.seq = UINT64_MAX,
                            .time_ns = UINT64_MAX,
                            .tenant = UINT64_MAX,
                            .version = UINT64_MAX,
                            .key_id = UINT32_MAX,
                            .stream = stream,
                            .stream_len = KR_STREAM_MAX,
                            .type = type,
                            .type_len = KR_TYPE_MAX,
                            .actor = actor,
                            .actor_len = KR_ACTOR_MAX,
                            .payload = payload,
                            .payload_len = 1};
    memset(r.prev, 0xff, sizeof r.prev);
    record_file("limits.bin", &r, 0xa0, NULL, NULL);

    /* Records are msgpack too. */
    write_file("mp", "record_genesis.bin", genesis, genesis_len);
    write_file("mp", "record_bench.bin", bench, bench_len);
}

/* "— name base64(key hash || sig over body)\n" appended at note[len]. */
static size_t put_sig(char *note, size_t len, size_t cap, const char *name, const uint8_t *pk,
                      const uint8_t *sk, const char *body, size_t body_len)
{
    uint8_t sig[KR_NOTE_KEY_HASH_LEN + crypto_sign_BYTES];
    char b64[sodium_base64_ENCODED_LEN(sizeof sig, sodium_base64_VARIANT_ORIGINAL)];
    if (kr_note_key_hash(name, pk, sig) != KR_OK)
        die("key hash");
    crypto_sign_detached(sig + KR_NOTE_KEY_HASH_LEN, NULL, (const uint8_t *)body, body_len, sk);
    sodium_bin2base64(b64, sizeof b64, sig, sizeof sig, sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(note + len, cap - len, EM_DASH_SP "%s %s\n", name, b64);
    if (n < 0 || (size_t)n >= cap - len)
        die("note too long");
    return len + (size_t)n;
}

/* Writes mode byte + text: note_fuzz.c's input format. */
static void note_file(const char *name, uint8_t mode, const char *text, size_t len)
{
    static uint8_t buf[2 * KR_NOTE_MAX];
    if (len + 1 > sizeof buf)
        die(name);
    buf[0] = mode;
    memcpy(buf + 1, text, len);
    write_file("note", name, buf, len + 1);
}

static void make_notes(void)
{
    uint8_t seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES],
        sk[crypto_sign_SECRETKEYBYTES], opk[crypto_sign_PUBLICKEYBYTES],
        osk[crypto_sign_SECRETKEYBYTES];
    pattern(seed, sizeof seed, 1);
    crypto_sign_seed_keypair(pk, sk, seed);
    pattern(seed, sizeof seed, 101);
    crypto_sign_seed_keypair(opk, osk, seed);

    struct kr_checkpoint cp = {.origin = FUZZ_KEY_NAME, .size = 12345};
    pattern(cp.root, sizeof cp.root, 0x20);
    char note[KR_NOTE_MAX + 1];
    size_t len;

    /* What the journal writes. */
    if (kr_checkpoint_sign(&cp, FUZZ_KEY_NAME, pk, sk, note, sizeof note, &len))
        die("sign");
    note_file("signed.txt", 0, note, len);
    const char *blank = strstr(note, "\n\n");
    size_t body_len = (size_t)(blank - note) + 1;
    note_file("body.txt", 1, note, body_len);

    /* A witness cosigned it: an unknown key's line, which is ignored. */
    char body[KR_NOTE_MAX];
    memcpy(body, note, body_len);
    len = put_sig(note, len, sizeof note, OTHER_KEY_NAME, opk, osk, body, body_len);
    note_file("cosigned.txt", 0, note, len);

    /* Extension lines after the root. */
    static const char ext[] = "ext: one\nsecond extension line\n";
    memcpy(body + body_len, ext, sizeof ext - 1);
    body_len += sizeof ext - 1;
    memcpy(note, body, body_len);
    note[body_len] = '\n';
    len = put_sig(note, body_len + 1, sizeof note, FUZZ_KEY_NAME, pk, sk, body, body_len);
    note_file("extension.txt", 0, note, len);
    note_file("extension_body.txt", 1, body, body_len);

    /* Size edges. */
    cp.size = UINT64_MAX;
    if (kr_checkpoint_sign(&cp, FUZZ_KEY_NAME, pk, sk, note, sizeof note, &len))
        die("sign");
    note_file("size_max.txt", 0, note, len);
    cp.size = 1;
    snprintf(cp.origin, sizeof cp.origin, "kiroku/\xE6\x97\xA5\xE6\x9C\xAC");
    if (kr_checkpoint_sign(&cp, FUZZ_KEY_NAME, pk, sk, note, sizeof note, &len))
        die("sign");
    note_file("utf8_origin.txt", 0, note, len);
}

static void make_mp(void)
{
    /* Nesting, every container form, and non-minimal encodings (for lax mode). */
    static const uint8_t nested[] = {0x91, 0x91, 0x91, 0x91, 0x90};
    static const uint8_t map[] = {0x82, 0xa1, 'a', 0x93, 0x01, 0xcc, 0xff, 0x81, 0xa1, 'b',
                                  0xc0, 0xa3, 'b', 'i',  'n',  0xc4, 0x02, 0x00, 0x01};
    static const uint8_t non_minimal[] = {0xdc, 0x00, 0x03, 0xcc, 0x05, 0xd9, 0x03, 'a',
                                          'b',  'c',  0xc6, 0x00, 0x00, 0x00, 0x01, 0x00};
    static const uint8_t big_ints[] = {0x94, 0xcd, 0x01, 0x00, 0xce, 0x00, 0x01, 0x00, 0x00, 0xcf,
                                       0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    static const uint8_t other_types[] = {0x95, 0xc3, 0xff, 0xd0, 0x80, 0xca,
                                          0x00, 0x00, 0x00, 0x00, 0xc1};
    static const uint8_t lies[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xde, 0xff,
                                   0xff, 0xdb, 0x00, 0x00, 0x00, 0x02, 'x'};
    write_file("mp", "nested.bin", nested, sizeof nested);
    write_file("mp", "map.bin", map, sizeof map);
    write_file("mp", "non_minimal.bin", non_minimal, sizeof non_minimal);
    write_file("mp", "big_ints.bin", big_ints, sizeof big_ints);
    write_file("mp", "other_types.bin", other_types, sizeof other_types);
    write_file("mp", "lies.bin", lies, sizeof lies);

    /* str16 and map16, packed by msgpack-c. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    char s[300];
    memset(s, 'z', sizeof s);
    msgpack_pack_map(&pk, 16);
    for (unsigned i = 0; i < 16; i++) {
        msgpack_pack_uint32(&pk, i * 1000u);
        if (i == 0) {
            msgpack_pack_str(&pk, sizeof s);
            msgpack_pack_str_body(&pk, s, sizeof s);
        } else {
            msgpack_pack_nil(&pk);
        }
    }
    write_file("mp", "str16_map16.bin", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    if (sodium_init() < 0)
        die("sodium_init");
    g_dir = argv[1];
    mkdir_p(g_dir);
    make_records();
    make_notes();
    make_mp();
    return 0;
}
