/*
 * api_client.h: what the end-to-end and interop tests share: a `kiroku
 * serve` child process in a scratch directory, a client that speaks the wire
 * protocol (api/protocol.h) over a real nng req0 socket with requests built
 * by msgpack-c from the schema's names, and the e-mails the server writes
 * under DIR/outbox/.
 *
 * Every helper asserts (cmocka) what must hold for the test to go on: a reply
 * that is not one well-formed envelope carrying the request's id fails the
 * test at once. Waits are bounded (AC_WAIT_MS) and never measured.
 */
#ifndef KR_TEST_API_CLIENT_H
#define KR_TEST_API_CLIENT_H

#include "schema.h"

#include <msgpack.h>
#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How long anything that must come may take (a reply, an e-mail file, the
 * server's start or stop) before the test fails. */
#define AC_WAIT_MS 60000

/* ac_call's result for a reply with ok true (else an enum kr_api_err). */
#define AC_OK (-1)

/* ---- The server: `kiroku serve --demo` as a child process ---- */

struct ac_server {
    char dir[512];    /* scratch directory (removed by ac_server_stop) */
    char data[560];   /* DIR/data: the server's data directory */
    char ipc[600];    /* client endpoint: ipc://DIR/client.sock */
    char tcp[64];     /* client endpoint: tcp://127.0.0.1:<random port> */
    char op_url[600]; /* operator endpoint: ipc://DIR/op.sock */
    pid_t pid;
    /* The bootstrap operator and the demo tenant's master --demo made
     * (read from DATA/demo.txt). */
    char op_email[128], op_password[64];
    char demo_code[40], demo_email[128], demo_password[64];
    /* More serve options (NULL-terminated, at most AC_EXTRA_MAX), from
     * ac_server_start_with; the environment is the test's. */
    const char *const *extra;
    char json[1024]; /* the line of JSON serve printed once listening */
};
#define AC_EXTRA_MAX 8

/* Makes a scratch directory and starts KR_KIROKU_BIN serve --demo --json in
 * it (the child dies with the test: PR_SET_PDEATHSIG), listening on ipc://
 * and on tcp:// at a random high port (another one when taken); returns once
 * it prints that it is listening. */
void ac_server_start(struct ac_server *s);
/* ac_server_start with more serve options (extra must outlive the server). */
void ac_server_start_with(struct ac_server *s, const char *const *extra);

/* ac_server_start_with on a data directory made by `kiroku init` that holds
 * the KEK of data directory kek_from (DIR/keys/kek.key), as a deployment
 * places one KEK on all its processes (tenant keys shared through the
 * keyring open with it). */
void ac_server_start_kek(struct ac_server *s, const char *const *extra, const char *kek_from);

/* Starts the server again on the same data directory (after it was killed):
 * the same endpoints (another tcp port if that one is not free yet). */
void ac_server_restart(struct ac_server *s);

/* Stops the server with SIGTERM and waits (bounded; SIGKILL after that) for
 * it; removes the scratch directory. Returns its exit status (0 = a clean
 * stop), or -1 if it had to be killed. Accepts a server not running. */
int ac_server_stop(struct ac_server *s);

/* Waits (bounded) for an e-mail file in DATA/outbox/ addressed to `to` whose
 * text holds `needle`, and copies what follows the needle up to the end of
 * its line into value (cap bytes, NUL-terminated; value may be NULL).
 * Returns false if none came in time. */
bool ac_mail_wait(const struct ac_server *s, const char *to, const char *needle, char *value,
                  size_t cap);

/* The number of e-mail files in DATA/outbox/ addressed to `to`. */
size_t ac_mail_count(const struct ac_server *s, const char *to);

/* ---- A client ---- */

/* One req0 connection. The decoded last reply (u) points into reply's bytes
 * and stays valid until the next call. */
struct ac {
    nng_socket sock;
    char *reply;
    size_t reply_len;
    msgpack_unpacked u;
    int op; /* op of the last call */
    uint64_t next_id;
    /* Arguments of the next request, packed as they are given. */
    msgpack_sbuffer args;
    msgpack_packer pk;
    uint32_t nargs;
};

void ac_open(struct ac *c, const char *url);
void ac_close(struct ac *c);

/* Arguments of the next request, by field id (enum kr_fld). ac_enum takes an
 * enum value index (KR_ROLE_USER...); ac_enums a bit mask of them (a set:
 * permissions); ac_tenants a list of tenant ids. ac_value_* are attribute
 * values. */
void ac_str(struct ac *c, int fld, const char *s);
void ac_bin(struct ac *c, int fld, const void *p, size_t n);
void ac_u64(struct ac *c, int fld, uint64_t v);
void ac_enum(struct ac *c, int fld, int value);
void ac_enums(struct ac *c, int fld, uint64_t mask);
void ac_tenants(struct ac *c, int fld, const uint64_t *t, size_t n);
void ac_value_int(struct ac *c, int fld, int64_t v);
void ac_value_bool(struct ac *c, int fld, bool v);

/* Writes the request {op, id, token?, args} with the arguments given so far
 * into *out (reset first) and forgets the arguments. token: 32 bytes or
 * NULL. The id is returned. */
uint64_t ac_request(struct ac *c, int op, const uint8_t *token, msgpack_sbuffer *out);

/* Sends op with the arguments given so far and waits for the reply, which
 * must be one envelope with this request's id. Returns AC_OK or the reply's
 * error code (enum kr_api_err). */
int ac_call(struct ac *c, int op, const uint8_t *token);

/* Decodes reply bytes buf[0..n) into *u: exactly one msgpack map with id
 * (uint), ok (bool) and, by ok, result (map) or error {code: one of
 * kr_api_errors, message: str}, nothing else. Returns AC_OK or the error
 * code; *id gets the id. Asserts the shape. */
int ac_decode(const void *buf, size_t n, msgpack_unpacked *u, uint64_t *id);

/* The last reply's result map, and its values. */
const msgpack_object *ac_result(const struct ac *c);
/* map's value of field fld (enum kr_fld), or NULL. */
const msgpack_object *ac_get(const msgpack_object *map, int fld);
/* The last result's 16-byte id / u64 / bin / str at field fld (asserted). */
void ac_res_id(const struct ac *c, int fld, uint8_t id[16]);
uint64_t ac_res_u64(const struct ac *c, int fld);
/* The list of the last op's result (the op's list result item), asserted
 * present: an array of maps. */
const msgpack_object *ac_res_list(const struct ac *c);
/* The nth list (from 0) of the last op's result items (contacts.get: tags,
 * then attributes), asserted present. */
const msgpack_object *ac_res_list_nth(const struct ac *c, unsigned nth);
/* Whether str object o equals s. */
bool ac_str_eq(const msgpack_object *o, const char *s);
/* Copies 16-byte id at field fld of map m (asserted). */
void ac_map_id(const msgpack_object *m, int fld, uint8_t id[16]);
/* The index of the item of list whose field fld is the 16-byte id `id`, or -1. */
int ac_find_id(const msgpack_object *list, int fld, const uint8_t id[16]);

#endif
