/*
 * payload_fuzz.c: libFuzzer target for the payload codec (projections/payload.h):
 * op arguments from the wire and event payloads from the journal.
 *
 * An input is one selector byte s, then msgpack bytes B:
 *   - B as the arguments of op s % KR_OP__COUNT (kr_args_decode), read in lax
 *     mode as the API does, and in canonical mode. On success every value
 *     must pass kr_value_check and pack (kr_value_pack) into a bounded buffer.
 *   - B as the payload of event s % KR_EV__COUNT in a record of a fixed
 *     tenant (kr_event_decode), first without a key; when that succeeds, the
 *     record's stream is the one the decoded payload names (as it is in a
 *     real journal) and B is decoded again with the fixed data key.
 *     Payloads are canonical, so each successful decode must encode back to
 *     exactly B: without the key when the payload had no "pd", with it (and
 *     the seeds' deterministic rng) when "pd" opened. Without the key, no
 *     personal field is ever set.
 * The seeds (fuzz/corpus/payload/, from make_corpus) are valid encodings made
 * with the key, tenant and rng seed below, so the sealed path is reachable.
 */
#include "payload.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Must match make_corpus.c. */
#define FUZZ_TENANT   42u
#define FUZZ_RNG_SEED 7u
#define FUZZ_KEY_BYTE 0xa0 /* key byte i is FUZZ_KEY_BYTE + i */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct kr_payload *g_p;
static struct kr_data_key g_key;
static uint8_t g_out[KR_PAYLOAD_MAX];

_Noreturn static void fail(const char *what, int id)
{
    fprintf(stderr, "payload_fuzz: %s (id %d)\n", what, id);
    abort();
}

static void init(void)
{
    if (g_p)
        return;
    g_p = kr_payload_new();
    if (!g_p)
        abort();
    g_key.tenant = FUZZ_TENANT;
    for (size_t i = 0; i < KR_DATA_KEY_LEN; i++)
        g_key.key[i] = (uint8_t)(FUZZ_KEY_BYTE + i);
}

static void args(int op, const uint8_t *b, size_t n, bool canonical)
{
    struct kr_mp_reader r;
    struct kr_diag d;
    kr_mp_reader_init(&r, b, n, canonical);
    kr_err err = kr_args_decode(op, &r, g_p, &d);
    if (r.p < b || r.p > b + n)
        fail("kr_args_decode moved the reader outside the input", op);
    if (err) {
        if (err != KR_EINVAL && err != KR_ETOOLARGE && err != KR_ECORRUPT)
            fail("kr_args_decode returned an unexpected error", op);
        if (memchr(d.field, '\0', sizeof d.field) == NULL)
            fail("diag field not terminated", op);
        return;
    }
    for (int f = 0; f < KR_FLD__COUNT; f++) {
        if (!g_p->v[f].set)
            continue;
        if (kr_value_check(f, &g_p->v[f], &d) != KR_OK)
            fail("kr_args_decode returned a value that fails kr_value_check", f);
        struct kr_mp_fixbuf fb = {.p = g_out, .cap = sizeof g_out};
        msgpack_packer pk;
        msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
        kr_value_pack(&pk, f, &g_p->v[f]);
        if (fb.len > fb.cap)
            fail("kr_value_pack wrote past its buffer", f);
    }
}

/* Encodes g_p again (with key and the seeds' rng when key is not NULL) and
 * requires exactly b[0..n). */
static void reencode(const struct kr_data_key *key, uint64_t tenant, const char *stream,
                     size_t stream_len, const uint8_t *b, size_t n)
{
    struct kr_rng_det det;
    struct kr_rng rng;
    struct kr_diag d;
    size_t len = 0;
    kr_rng_det_init(&det, FUZZ_RNG_SEED, &rng);
    struct kr_pd_ctx pd = {
        .key = key, .rng = &rng, .tenant = tenant, .stream = stream, .stream_len = stream_len};
    kr_err err = kr_event_encode(g_p, key ? &pd : NULL, g_out, sizeof g_out, &len, &d);
    kr_rng_det_fini(&det);
    if (err != KR_OK)
        fail("a decoded payload does not encode again", g_p->ev);
    if (len != n || memcmp(g_out, b, n) != 0)
        fail("a decoded payload encodes to other bytes (two forms of one payload)", g_p->ev);
}

static void event(int ev, const uint8_t *b, size_t n)
{
    const struct kr_event_def *e = &kr_events[ev];
    uint64_t tenant = e->platform ? 0 : FUZZ_TENANT;
    struct kr_diag d;
    struct jrn_record r = {.tenant = tenant,
                           .stream = "x",
                           .stream_len = 1,
                           .type = e->name,
                           .type_len = strlen(e->name),
                           .payload = b,
                           .payload_len = n};
    kr_err err = kr_event_decode(ev, &r, NULL, g_p, &d);
    if (err) {
        if (err != KR_ECORRUPT)
            fail("kr_event_decode returned an error other than KR_ECORRUPT", ev);
        return;
    }
    for (int f = 0; f < KR_FLD__COUNT; f++)
        if (g_p->v[f].set && kr_fields[f].personal)
            fail("a personal field decoded without the key", f);
    char stream[KR_STREAM_MAX + 1];
    size_t sl;
    if (kr_event_stream(g_p, stream, sizeof stream, &sl) != KR_OK)
        fail("a decoded payload names no stream", ev);
    bool sealed = g_p->pd_sealed;
    if (!sealed)
        reencode(NULL, tenant, stream, sl, b, n);

    r.stream = stream;
    r.stream_len = sl;
    err = kr_event_decode(ev, &r, &g_key, g_p, &d);
    if (err) {
        if (err != KR_ECORRUPT)
            fail("kr_event_decode with the key returned an error other than KR_ECORRUPT", ev);
        if (!sealed)
            fail("a payload without \"pd\" decodes without the key but not with it", ev);
        return;
    }
    if (g_p->pd_sealed)
        fail("pd_sealed after decoding with the key", ev);
    reencode(&g_key, tenant, stream, sl, b, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size - 1 > KR_PAYLOAD_MAX)
        return 0;
    init();
    /* Exact-size heap copies, so ASan sees any read past the end. */
    size_t n = size - 1;
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        abort();
    memcpy(b, data + 1, n);
    args(data[0] % KR_OP__COUNT, b, n, false);
    args(data[0] % KR_OP__COUNT, b, n, true);
    event(data[0] % KR_EV__COUNT, b, n);
    free(b);
    return 0;
}
