/*
 * jsonmp_fuzz.c: libFuzzer target for `kiroku call`'s JSON <-> msgpack
 * mapping (tools/jsonmp.h) and the JST rewrite of results
 * (projections/res_jst.h).
 *
 * An input is one selector byte s, then the bytes B:
 * - s % 3 == 0: B is a reply from a server (hostile msgpack). jsonmp_to_json
 *   either refuses it or returns NUL-terminated JSON text that jansson reads
 *   back (valid UTF-8, integers it can hold: big ones are strings).
 * - s % 3 == 1: B is JSON arguments for op s / 3 % KR_OP__COUNT (what a user
 *   types, big integer literals included). jsonmp_args either refuses them
 *   or packs a map that the server's kr_args_decode takes, and that converts
 *   back to JSON.
 * - s % 3 == 2: B is a result for res_add_jst: refused, or rewritten into one
 *   object that kr_mp_check proves well-formed.
 * The modules are compiled in so that libFuzzer sees their coverage. The
 * seeds in fuzz/corpus/jsonmp/ are written by hand, a few per selector.
 */
#include "jsonmp.h"
#include "payload.h"
#include "res_jst.h"
#include "schema.h"
#include "wbuf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void reply(const uint8_t *b, size_t n)
{
    char *text;
    size_t len;
    struct jsonmp_diag d;
    if (jsonmp_to_json(b, n, &text, &len, &d) != KR_OK)
        return;
    if (strlen(text) != len)
        abort();
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    /* jansson cannot hold a key with U+0000, which JSON allows. */
    if (!j && !strstr(je.text, "NUL byte in object key")) {
        fprintf(stderr, "jsonmp_to_json wrote what jansson refuses: %s: %s\n", je.text, text);
        abort();
    }
    json_decref(j);
    free(text);
}

static void args(int op, const uint8_t *b, size_t n)
{
    static uint8_t out[2 * KR_PAYLOAD_MAX + 64];
    struct kr_mp_fixbuf fb = {.p = out, .cap = sizeof out};
    struct jsonmp_diag d;
    if (jsonmp_args(op, (const char *)b, n, &fb, &d) != KR_OK)
        return;
    struct kr_payload *p = kr_payload_new();
    if (!p)
        abort();
    struct kr_mp_reader r;
    kr_mp_reader_init(&r, out, fb.len, false);
    struct kr_diag kd;
    if (kr_args_decode(op, &r, p, &kd) != KR_OK || kr_mp_remaining(&r)) {
        fprintf(stderr, "jsonmp_args packed what the server refuses: %s: %s\n", kd.field, kd.why);
        abort();
    }
    kr_payload_free(p);
    reply(out, fb.len);
}

static void result(const uint8_t *b, size_t n)
{
    struct kr_wbuf w;
    kr_wbuf_init(&w, 1u << 20);
    if (n && kr_wbuf_add(&w, b, n) == KR_OK && res_add_jst(&w) == KR_OK) {
        struct kr_mp_reader r;
        kr_mp_reader_init(&r, w.data, w.size, false);
        if (kr_mp_check(&r, 64, w.size) != KR_OK || kr_mp_remaining(&r))
            abort();
    }
    kr_wbuf_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t s = data[0];
    switch (s % 3) {
    case 0:
        reply(data + 1, size - 1);
        break;
    case 1:
        args((s / 3) % KR_OP__COUNT, data + 1, size - 1);
        break;
    default:
        result(data + 1, size - 1);
    }
    return 0;
}
