/*
 * jsonmp.h: JSON for people and scripts, msgpack on the wire: the mapping
 * `kiroku call` and the JSON gateway over HTTP (gateway.h) use between the
 * two.
 *
 * Arguments go one way, typed by the schema: each key of a JSON object names
 * an argument of the op (kr_ops[op].args), and the field's type
 * (kr_fields[f].type) says what JSON value it takes and how it is packed:
 *
 *   id, hash           hex string of exactly 32 / 64 digits (16 / 32 bytes)
 *   bin                hex string of an even number of digits
 *   tenant, u64        integer >= 0: a JSON number, or its decimal digits as a
 *                      string ("12345678901234567890"), the spelling replies use
 *   time               UTC nanoseconds as for u64, or an RFC 3339 string
 *                      ("2026-04-01T09:00:00+09:00", fraction up to 9 digits)
 *   bool               true / false
 *   str, email, enum   string
 *   value              string, number or bool (an attribute value)
 *   enum list          array of strings, each at most once
 *   tenant list        array of integers, numbers or strings (sent sorted)
 *
 * jansson, which parses the text, holds integers in a json_int_t (long long):
 * a plain number from 2^63 to 2^64-1 is quoted before it parses, so it reads
 * as the decimal string above.
 *
 * Every value is then checked as the server checks it (kr_value_check: lengths,
 * charsets, ranges), so a mistake is reported before anything is sent, naming
 * the key. Unknown keys, duplicate keys and missing required arguments are
 * errors. The packed map is what the server's kr_args_decode reads.
 *
 * Replies go the other way: any msgpack object becomes JSON (bin as a hex
 * string, str as a string, ints, floats, bools, nil as null, maps and arrays
 * recursively). Integers a JSON client can read exactly are numbers; the ones
 * it cannot are decimal strings (docs/api.md "Ids and times in JSON"): every
 * value under a key that names a tenant or time field (tenant, tenants,
 * expires, ...; whatever its size, so the JSON type of a field never depends
 * on its value) and any other integer beyond +-JSONMP_INT_EXACT_MAX. JSON
 * numbers are doubles to JavaScript and jq, and tenant ids and UTC nanosecond
 * times are 19-digit numbers that a double rounds. The bytes come from a socket, so they are first
 * proven bounded by kr_mp_check (lengths, depth, element count) and strings must be valid UTF-8;
 * map keys must be strings; ext types are refused.
 *
 * Both are pure functions of their input; one thread per call.
 */
#ifndef KR_JSONMP_H
#define KR_JSONMP_H

#include "kr_error.h"
#include "kr_limits.h"
#include "mp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The largest integer every JSON reader holds exactly: 2^53-1, a double's
 * (JavaScript's Number.MAX_SAFE_INTEGER). */
#define JSONMP_INT_EXACT_MAX 9007199254740991ull

/* JSON argument text accepted: an op's arguments fit one event payload
 * (KR_PAYLOAD_MAX), and JSON may spell each byte as a 6-byte \u escape. */
#define JSONMP_ARGS_MAX ((size_t)6 * KR_PAYLOAD_MAX)
/* Nesting of a reply: envelope -> result -> list -> item -> value is 5 deep;
 * nothing legitimate comes near 16. Bounds the converter's recursion. */
#define JSONMP_DEPTH_MAX 16u
/* JSON text one reply may become: bin doubles in hex, and a string byte
 * becomes at most 6 (\u00XX). */
#define JSONMP_JSON_MAX (6u * KR_API_REPLY_MAX + 64u)

/* What was wrong and where: the argument key (or "" for the whole text, or a
 * byte offset "@123" in a reply) and why. */
struct jsonmp_diag {
    char key[72];
    char why[160]; /* room for every enum's allowed values (jsonmp_test checks) */
};

/* Converts the JSON object json[0..len) into the msgpack map of op's
 * arguments (op: enum kr_op), written into out (which must be empty and have
 * room; out->overflow set means it did not fit). KR_EINVAL: not JSON, not an
 * object, an unknown / duplicate / missing key, a value of the wrong type or
 * outside its field's limits; KR_ETOOLARGE: text over JSONMP_ARGS_MAX, a value
 * over its limit, or out too small; KR_ENOMEM. *d says which key and why. */
KR_MUST_CHECK kr_err jsonmp_args(int op, const char *json, size_t len, struct kr_mp_fixbuf *out,
                                 struct jsonmp_diag *d);

/* Converts the one msgpack object mp[0..len) (hostile bytes, at most
 * KR_API_REPLY_MAX) into compact JSON text: *out is malloc'd, NUL-terminated,
 * *out_len bytes without the NUL; the caller frees it. Nothing may follow the
 * object. KR_ECORRUPT: malformed or truncated msgpack, trailing bytes, a
 * non-string map key, invalid UTF-8, an ext object, NaN or infinity;
 * KR_ETOOLARGE: over KR_API_REPLY_MAX or deeper than JSONMP_DEPTH_MAX;
 * KR_ENOMEM. On error *out is NULL and *d says where. */
KR_MUST_CHECK kr_err jsonmp_to_json(const uint8_t *mp, size_t len, char **out, size_t *out_len,
                                    struct jsonmp_diag *d);

/* Parses an RFC 3339 date-time ("YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|+hh:mm|-hh:mm)",
 * 't'/'z' and ' ' also accepted) into UTC nanoseconds since the Unix epoch.
 * KR_EINVAL if malformed, out of range (before 1970 or past 2^64-1 ns) or not a
 * real calendar date. */
KR_MUST_CHECK kr_err jsonmp_parse_time(const char *s, size_t len, uint64_t *ns);

/* ---- JSON strings: the project's one escaper ----
 *
 * Writes s[0..len) as a JSON string, quotes included, through
 * sink(ctx, bytes, n): '"' and '\\' escaped, \n \t \r as such, other
 * controls and DEL as \u00XX, valid UTF-8 as it is. Invalid UTF-8 (a byte
 * that starts no valid sequence: overlong, surrogate, past U+10FFFF,
 * truncated, a stray continuation byte): strict returns false there (what
 * was sunk so far is a fragment); otherwise each such byte becomes \ufffd,
 * so the output is always valid JSON text and returns true. */
bool jsonmp_escape(const char *s, size_t len, bool strict,
                   void (*sink)(void *ctx, const void *p, size_t n), void *ctx);
/* jsonmp_escape to a stdio stream, invalid UTF-8 replaced (never fails;
 * the stream's error flag tells of a write error). */
void jsonmp_fput_str(FILE *f, const char *s, size_t len);
/* jsonmp_escape appended to the NUL-terminated text buf[0..*len) of capacity
 * cap, invalid UTF-8 replaced; *len grows. false (and buf unchanged) if it
 * does not fit with its NUL. */
bool jsonmp_buf_str(char *buf, size_t cap, size_t *len, const char *s, size_t n);

#endif
