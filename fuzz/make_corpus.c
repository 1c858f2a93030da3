/*
 * make_corpus.c: writes the seed corpora of the fuzz targets.
 *
 *   make_corpus DIR    writes DIR/record/, DIR/note/, DIR/mp/, DIR/repl/ and DIR/payload/
 *
 * The output is deterministic (fixed keys, fixed bytes), so running it again
 * reproduces the committed fuzz/corpus/ exactly. Records are made with
 * jrn_record_encode and notes with kr_checkpoint_sign, so the seeds are what
 * the journal really writes; the note key is the one note_fuzz.c trusts.
 * Event payloads are made with kr_event_encode under the data key, tenant and
 * rng seed payload_fuzz.c uses; their first byte is the event id (the op id
 * for argument seeds), so a schema change that renumbers events calls for
 * running this again.
 */
#include "note.h"
#include "payload.h"
#include "record.h"
#include "replica.h"

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
/* Must match payload_fuzz.c. */
#define FUZZ_TENANT   42u
#define FUZZ_RNG_SEED 7u
#define FUZZ_KEY_BYTE 0xa0

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
                           .tseq = 1,
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

    /* The same in format 1 (journals older kiroku wrote): no tseq. */
    r.format = JRN_FORMAT_1;
    r.tseq = 0;
    record_file("format1_genesis.bin", &r, 0x41, NULL, NULL);

    r = (struct jrn_record){.seq = 2,
                            .time_ns = 1700000000000001000ull,
                            .tenant = 3,
                            .tseq = 4,
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
    r.format = JRN_FORMAT_1;
    r.tseq = 0;
    record_file("format1_stripped.bin", &r, 0x61, NULL, NULL);
    r.format = 0;
    r.tseq = 4;

    r.payload_stripped = false;
    r.actor_len = 0;
    r.seq = 300;
    r.tseq = 128; /* uint8 */
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
                            .tseq = UINT64_MAX,
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

/* Reads back a seed written above (DIR/sub/name) into buf. */
static size_t read_seed(const char *sub, const char *name, uint8_t *buf, size_t cap)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", g_dir, sub, name);
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap, f) : 0;
    if (!f || n == 0 || fclose(f) != 0)
        die(path);
    return n;
}

/* Replication chunks made of the record seeds: a range's last chunk with its
 * note, a chunk the range goes on from, and one of the records alone. */
static void make_repl(void)
{
    static uint8_t genesis[KR_RECORD_MAX], bench[KR_RECORD_MAX], stripped[KR_RECORD_MAX];
    static uint8_t out[8192];
    const uint8_t *rec[3] = {genesis, bench, stripped};
    size_t rec_len[3] = {read_seed("record", "genesis.bin", genesis, sizeof genesis),
                         read_seed("record", "bench.bin", bench, sizeof bench),
                         read_seed("record", "stripped.bin", stripped, sizeof stripped)};
    static const char note[] = "kiroku/00112233445566778899aabbccddeeff\n3\n"
                               "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
                               "\xE2\x80\x94 kiroku/00112233445566778899aabbccddeeff AAAA\n";
    struct jrn_repl_chunk c = {.epoch = 1, .first = 1, .n = 3, .rec = rec, .rec_len = rec_len};
    memset(c.journal_id, 0x11, sizeof c.journal_id);
    c.note = note;
    c.note_len = sizeof note - 1;
    size_t len;
    if (jrn_repl_pack(&c, out, sizeof out, &len))
        die("repl range");
    write_file("repl", "range.bin", out, len);
    c.note = NULL;
    c.note_len = 0;
    c.n = 2;
    c.epoch = 3;
    c.first = 1000000;
    if (jrn_repl_pack(&c, out, sizeof out, &len))
        die("repl goes on");
    write_file("repl", "goes_on.bin", out, len);
    c.n = 1;
    c.rec = &rec[2];
    c.rec_len = &rec_len[2];
    if (jrn_repl_pack(&c, out, sizeof out, &len))
        die("repl one");
    write_file("repl", "one.bin", out, len);
}

/* One payload seed: the selector byte, then the payload of p's event. */
static void payload_file(const char *name, struct kr_payload *p)
{
    static uint8_t buf[1 + KR_PAYLOAD_MAX];
    struct kr_data_key key = {.tenant = FUZZ_TENANT};
    for (size_t i = 0; i < KR_DATA_KEY_LEN; i++)
        key.key[i] = (uint8_t)(FUZZ_KEY_BYTE + i);
    char stream[KR_STREAM_MAX + 1];
    size_t sl, len;
    struct kr_rng_det det;
    struct kr_rng rng;
    struct kr_diag d;
    if (kr_event_stream(p, stream, sizeof stream, &sl) != KR_OK)
        die(name);
    kr_rng_det_init(&det, FUZZ_RNG_SEED, &rng);
    struct kr_pd_ctx pd = {.key = &key,
                           .rng = &rng,
                           .tenant = kr_events[p->ev].platform ? 0 : FUZZ_TENANT,
                           .stream = stream,
                           .stream_len = sl};
    kr_err err = kr_event_encode(p, &pd, buf + 1, KR_PAYLOAD_MAX, &len, &d);
    kr_rng_det_fini(&det);
    if (err != KR_OK) {
        fprintf(stderr, "make_corpus: %s: %s (%s: %s)\n", name, kr_strerror(err), d.field, d.why);
        exit(1);
    }
    buf[0] = (uint8_t)p->ev;
    write_file("payload", name, buf, len + 1);
}

static void args_file(const char *name, int op, const msgpack_sbuffer *sb)
{
    static uint8_t buf[1 + 4096];
    if (sb->size > sizeof buf - 1)
        die(name);
    buf[0] = (uint8_t)op;
    memcpy(buf + 1, sb->data, sb->size);
    write_file("payload", name, buf, sb->size + 1);
}

static void pack_key(msgpack_packer *pk, int fld)
{
    const char *s = kr_fields[fld].name;
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pack_s(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void make_payloads(void)
{
    struct kr_payload *p = kr_payload_new();
    if (!p)
        die("kr_payload_new");
    uint8_t id[16], id2[16], hash[32];
    pattern(id, sizeof id, 0x10);
    pattern(id2, sizeof id2, 0x30);
    pattern(hash, sizeof hash, 0x50);

    kr_payload_reset(p, KR_EV_TAG_CREATED);
    kr_set_bytes(p, KR_FLD_TAG, id, 16);
    kr_set_str(p, KR_FLD_TAG_NAME, "vip \xE9\xA1\xA7\xE5\xAE\xA2");
    payload_file("ev_tag_created.bin", p);

    kr_payload_reset(p, KR_EV_CONTACT_REGISTERED);
    kr_set_bytes(p, KR_FLD_CONTACT, id, 16);
    kr_set_str(p, KR_FLD_NAME, "\xE5\xB1\xB1\xE7\x94\xB0 \xE5\xA4\xAA\xE9\x83\x8E");
    kr_set_str(p, KR_FLD_EMAIL, "taro@example.jp");
    kr_set_str(p, KR_FLD_PHONE, "+81 90-1234-5678");
    kr_set_str(p, KR_FLD_NOTE, "met at the fair");
    payload_file("ev_contact_registered.bin", p);

    kr_payload_reset(p, KR_EV_ACCOUNT_CREATED);
    kr_set_bytes(p, KR_FLD_ACCOUNT, id2, 16);
    kr_set_u64(p, KR_FLD_ROLE, KR_ROLE_USER);
    kr_set_u64(p, KR_FLD_PERMISSIONS,
               1u << KR_PERMISSION_CONTACTS_READ | 1u << KR_PERMISSION_TAGS_WRITE);
    kr_set_str(p, KR_FLD_EMAIL, "hanako@example.jp");
    kr_set_bytes(p, KR_FLD_EMAIL_MAC, hash, 32);
    kr_set_str(p, KR_FLD_PASSWORD_HASH, "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA");
    payload_file("ev_account_created.bin", p);

    kr_payload_reset(p, KR_EV_CONTACT_ATTRIBUTE_SET);
    kr_set_bytes(p, KR_FLD_CONTACT, id, 16);
    kr_set_bytes(p, KR_FLD_ATTRIBUTE, id2, 16);
    kr_set_value_float(p, KR_FLD_VALUE, -2.5);
    payload_file("ev_attribute_set_float.bin", p);
    kr_set_value_int(p, KR_FLD_VALUE, -40000);
    payload_file("ev_attribute_set_int.bin", p);

    static const uint64_t tenants[] = {3, 300, 70000, 5000000000ull};
    kr_payload_reset(p, KR_EV_NOTICE_PUBLISHED);
    kr_set_bytes(p, KR_FLD_NOTICE, id, 16);
    kr_set_u64(p, KR_FLD_NOTICE_KIND, KR_NOTICE_KIND_VULNERABILITY);
    kr_set_str(p, KR_FLD_TITLE, "OpenSSL update");
    kr_set_str(p, KR_FLD_BODY, "We updated OpenSSL on every server.");
    kr_set_u64(p, KR_FLD_EFFECTIVE, 1700000000000000000ull);
    kr_set_u64(p, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    kr_set_tenants(p, KR_FLD_TENANTS, tenants, 4);
    payload_file("ev_notice_published.bin", p);

    kr_payload_reset(p, KR_EV_SESSION_OPENED);
    kr_set_bytes(p, KR_FLD_SESSION, id, 16);
    kr_set_bytes(p, KR_FLD_ACCOUNT, id2, 16);
    kr_set_bytes(p, KR_FLD_TOKEN_HASH, hash, 32);
    kr_set_u64(p, KR_FLD_EXPIRES, UINT64_MAX);
    kr_set_u64(p, KR_FLD_IDLE_EXPIRES, 127);
    payload_file("ev_session_opened.bin", p);

    kr_payload_reset(p, KR_EV_TENANT_ERASED);
    payload_file("ev_tenant_erased.bin", p);
    kr_payload_free(p);

    /* Op arguments, in free key order. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_key(&pk, KR_FLD_PHONE);
    pack_s(&pk, "03-1234-5678");
    pack_key(&pk, KR_FLD_NAME);
    pack_s(&pk, "\xE5\xB1\xB1\xE7\x94\xB0");
    pack_key(&pk, KR_FLD_EMAIL);
    pack_s(&pk, "a@b.jp");
    args_file("op_contacts_register.bin", KR_OP_CONTACTS_REGISTER, &sb);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 3);
    pack_key(&pk, KR_FLD_PERMISSIONS);
    msgpack_pack_array(&pk, 2);
    pack_s(&pk, kr_enums[KR_ENUM_PERMISSION].values[KR_PERMISSION_USERS_READ]);
    pack_s(&pk, kr_enums[KR_ENUM_PERMISSION].values[KR_PERMISSION_CONTACTS_READ]);
    pack_key(&pk, KR_FLD_ACCOUNT);
    msgpack_pack_bin(&pk, 16);
    msgpack_pack_bin_body(&pk, id, 16);
    pack_key(&pk, KR_FLD_VERSION);
    msgpack_pack_uint64(&pk, 12);
    args_file("op_users_grant.bin", KR_OP_USERS_GRANT, &sb);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 3);
    pack_key(&pk, KR_FLD_CONTACT);
    msgpack_pack_bin(&pk, 16);
    msgpack_pack_bin_body(&pk, id, 16);
    pack_key(&pk, KR_FLD_ATTRIBUTE_KEY);
    pack_s(&pk, "birthday");
    pack_key(&pk, KR_FLD_VALUE);
    pack_s(&pk, "1990-01-31");
    args_file("op_contacts_set.bin", KR_OP_CONTACTS_SET, &sb);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 7);
    pack_key(&pk, KR_FLD_INCIDENT_SCOPE);
    pack_s(&pk, kr_enums[KR_ENUM_INCIDENT_SCOPE].values[KR_INCIDENT_SCOPE_BREACH]);
    pack_key(&pk, KR_FLD_SEVERITY);
    pack_s(&pk, kr_enums[KR_ENUM_SEVERITY].values[KR_SEVERITY_HIGH]);
    pack_key(&pk, KR_FLD_TITLE);
    pack_s(&pk, "leak");
    pack_key(&pk, KR_FLD_SUMMARY);
    pack_s(&pk, "a laptop was lost");
    pack_key(&pk, KR_FLD_DETECTED);
    msgpack_pack_uint64(&pk, 1700000000000000000ull);
    pack_key(&pk, KR_FLD_AUDIENCE);
    pack_s(&pk, kr_enums[KR_ENUM_AUDIENCE].values[KR_AUDIENCE_LISTED]);
    pack_key(&pk, KR_FLD_TENANTS);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, 3);
    msgpack_pack_uint64(&pk, 9);
    args_file("op_incidents_open.bin", KR_OP_INCIDENTS_OPEN, &sb);
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
    make_repl();
    make_payloads();
    return 0;
}
