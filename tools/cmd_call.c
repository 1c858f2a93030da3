/*
 * cmd_call.c: `kiroku call`, one API request from the command line: JSON
 * arguments in, the reply as one line of JSON out.
 *
 * Design notes: the request is one msgpack map {op, id, token?, args?} sent
 * on an nng req0 socket (DESIGN.md "API"); arguments are typed by the schema
 * (jsonmp.h). The reply is hostile bytes like any other: received under
 * NNG_OPT_RECVMAXSZ, proven bounded before it is read, and its id must be
 * ours. req0 would resend a request that has no reply after a minute, which
 * could apply a write twice: resending is turned off, and one request is sent
 * exactly once to a server. A reply `wrong_shard` or `not_primary` (the
 * request was refused, nothing done) names the endpoint to use in its
 * message's last word: the request is sent there once more (said on
 * stderr), never from a tls+tcp:// server to one without TLS, never twice.
 * The request (token, passwords) is wiped from memory once answered.
 */
#include "cli.h"
#include "jsonmp.h"
#include "keys.h"
#include "protocol.h"
#include "schema.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char call_usage[] =
    "usage: kiroku call [--url URL | --operator] [--data DIR] [--token HEX]\n"
    "                   [--timeout MS] [--ca FILE] [--cert FILE --key FILE] [--raw]\n"
    "                   OP [JSON-ARGS | -]\n"
    "\n"
    "Sends one request to a kiroku server and prints the reply as one line of JSON:\n"
    "{\"id\":N,\"ok\":true,\"result\":{...}} or "
    "{\"id\":N,\"ok\":false,\"error\":{\"code\":...,\"message\":...}}.\n"
    "OP is an op of docs/ops.md; JSON-ARGS its arguments as a JSON object (\"-\" reads\n"
    "them from stdin, which keeps passwords off the command line). Ids, hashes and\n"
    "binary values are hex strings. Tenant ids and times (UTC ns) print as decimal\n"
    "strings (\"4611686018427387904\": a double would round them) and are taken as\n"
    "strings or plain numbers; times also as RFC 3339 (\"2026-04-01T09:00:00+09:00\").\n"
    "Every time in a result also comes as NAME_jst, in Japan time (+09:00).\n"
    "\n"
    "  --url URL      server to call (default " CLI_CALL_URL_DEFAULT ");\n"
    "                 tcp://, ipc:// or tls+tcp://HOST:PORT (HOST a DNS name: see "
    "docs/security.md)\n"
    "  --operator     call the operator endpoint, ipc://DIR/operator.sock\n"
    "  --data DIR     data directory for --operator and the default --ca\n"
    "                 (default $KIROKU_DATA or " CLI_DATA_DEFAULT ")\n"
    "  --token HEX    session token (64 hex digits); default $KIROKU_TOKEN, which\n"
    "                 is not sent with the ops anonymous callers use (auth.login,\n"
    "                 signup.apply, signup.complete)\n"
    "  --timeout MS   give up after MS milliseconds (default 10000)\n"
    "  --ca FILE      CA certificate(s) for tls+tcp:// (default DIR/tls/ca.pem)\n"
    "  --cert FILE, --key FILE  client certificate and key for tls+tcp://\n"
    "  --raw          write the reply's msgpack bytes to stdout instead of JSON\n"
    "  --no-follow    do not resend a request answered wrong_shard or not_primary\n"
    "                 to the endpoint the reply names (by default it is, once)\n"
    "\n"
    "Exit status: 0 ok:true; 1 ok:false (the error is printed); 2 usage or bad\n"
    "arguments (nothing sent); 3 no reply (no server, timeout, TLS failure, bad reply).\n";

/* A session token's bytes (the token field: bin of exactly 32). */
#define CALL_TOKEN_LEN 32u
/* Request bytes besides the arguments: op name, id, token and map headers. */
#define CALL_ENVELOPE_MAX 256u
/* --timeout at most: an hour; a request should never take that long. */
#define CALL_TIMEOUT_MAX 3600000u

/* The one place the client turns an nng code into words. */
static int call_fail_nng(const char *what, const char *url, int rv)
{
    fprintf(stderr, "kiroku: call: %s %s: %s\n", what, url, nng_strerror(rv));
    return CLI_FAIL;
}

/* Reads a whole file of at most KR_API_PEM_MAX bytes, NUL-terminated, with
 * the project's one reader of secret files (kr_file_read_small: read(2), no
 * symlinks or non-regular files; a key only if its owner's alone, mode
 * 0600). NULL on failure (printed). The caller wipes and frees. */
static char *read_pem(const char *path, bool secret)
{
    char *buf = malloc(KR_API_PEM_MAX + 1);
    if (!buf) {
        fprintf(stderr, "kiroku: call: %s: out of memory\n", path);
        return NULL;
    }
    kr_err err = kr_file_read_small(path, buf, KR_API_PEM_MAX + 1, secret);
    if (err) {
        if (err == KR_EKEY)
            fprintf(stderr, "kiroku: call: %s: refused: must be a regular file, not a symlink%s\n",
                    path, secret ? ", yours, mode 0600 (no group or other access)" : "");
        else
            fprintf(stderr, "kiroku: call: cannot read %s: %s\n", path,
                    err == KR_ECORRUPT ? "too large or not text" : kr_strerror(err));
        free(buf); /* wiped by the reader */
        return NULL;
    }
    return buf;
}

/* The host of a URL "scheme://host:port" ("[v6]" without brackets) into out. */
static bool url_host(const char *url, char *out, size_t cap)
{
    const char *h = strstr(url, "://");
    if (!h)
        return false;
    h += 3;
    const char *end;
    if (*h == '[') {
        h++;
        end = strchr(h, ']');
    } else {
        end = strrchr(h, ':');
    }
    if (!end || end == h || (size_t)(end - h) >= cap)
        return false;
    memcpy(out, h, (size_t)(end - h));
    out[end - h] = '\0';
    return true;
}

struct call_tls {
    const char *ca, *cert, *key;
};

/* Configures TLS on dialer d for url: the CA to verify the server by, the
 * server's name from the URL, and the client's own certificate if given. */
static int setup_tls(nng_dialer d, const char *url, const struct call_tls *t)
{
    nng_tls_config *cfg;
    int rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT);
    if (rv)
        return call_fail_nng("TLS for", url, rv);
    int ret = CLI_FAIL;
    char host[256];
    char *cert = NULL, *key = NULL;
    if (!url_host(url, host, sizeof host)) {
        fprintf(stderr, "kiroku: call: no host in %s\n", url);
        ret = CLI_USAGE;
        goto done;
    }
    if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) ||
        (rv = nng_tls_config_server_name(cfg, host))) {
        call_fail_nng("TLS for", url, rv);
        goto done;
    }
    if ((rv = nng_tls_config_ca_file(cfg, t->ca))) {
        fprintf(stderr, "kiroku: call: CA file %s: %s\n", t->ca, nng_strerror(rv));
        goto done;
    }
    if (t->cert) {
        if (!(cert = read_pem(t->cert, false)) || !(key = read_pem(t->key, true)))
            goto done;
        if ((rv = nng_tls_config_own_cert(cfg, cert, key, NULL))) {
            fprintf(stderr, "kiroku: call: client certificate %s / %s: %s\n", t->cert, t->key,
                    nng_strerror(rv));
            goto done;
        }
    }
    if ((rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg))) {
        call_fail_nng("TLS for", url, rv);
        goto done;
    }
    ret = CLI_OK;
done:
    if (key) {
        sodium_memzero(key, KR_API_PEM_MAX + 1);
        free(key);
    }
    free(cert);
    nng_tls_config_free(cfg); /* the dialer holds its own reference */
    return ret;
}

/* Finds ok (bool) and id (uint) in the top map of a reply that jsonmp_to_json
 * has already proven well-formed. */
static bool reply_status(const uint8_t *mp, size_t len, bool *ok, uint64_t *id)
{
    struct kr_mp_reader r;
    kr_mp_reader_init(&r, mp, len, false);
    uint32_t n;
    bool have_ok = false, have_id = false;
    if (kr_mp_read_map(&r, &n))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        if (kr_mp_read_str(&r, &k, &kl))
            return false;
        if (kl == strlen(API_KEY_OK) && memcmp(k, API_KEY_OK, kl) == 0) {
            if (have_ok || kr_mp_read_bool(&r, ok))
                return false;
            have_ok = true;
        } else if (kl == strlen(API_KEY_ID) && memcmp(k, API_KEY_ID, kl) == 0) {
            if (have_id || kr_mp_read_uint(&r, id))
                return false;
            have_id = true;
        } else if (kr_mp_check(&r, JSONMP_DEPTH_MAX, len)) {
            return false;
        }
    }
    return have_ok && have_id;
}

/* Reads JSON arguments from stdin (at most JSONMP_ARGS_MAX bytes). */
static char *read_stdin(size_t *len)
{
    char *buf = malloc(JSONMP_ARGS_MAX + 1);
    if (!buf)
        return NULL;
    /* read(2), not stdio: the arguments hold passwords and codes, and
     * stdio's buffer would keep a copy that nothing wipes. */
    size_t n = 0;
    while (n < JSONMP_ARGS_MAX + 1) {
        ssize_t r = read(STDIN_FILENO, buf + n, JSONMP_ARGS_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n > JSONMP_ARGS_MAX ? JSONMP_ARGS_MAX : n] = '\0';
    *len = n;
    return buf;
}

static int pack_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* What the command line asks for. */
struct call_opts {
    struct cli_common co;
    const char *url, *token_hex;
    struct call_tls tls;
    bool to_operator, raw, no_follow;
    uint64_t timeout;
    int op;
    const char *json;
};

/* Options, OP and JSON-ARGS. CLI_CONTINUE when the call is to go on, else
 * the exit status. */
static int call_parse_options(int argc, char **argv, struct call_opts *o)
{
    static const struct option opts[] = {
        {"url", required_argument, 0, 'u'},
        {"operator", no_argument, 0, 'O'},
        {"token", required_argument, 0, 't'},
        {"timeout", required_argument, 0, 'T'},
        {"raw", no_argument, 0, 'r'},
        {"no-follow", no_argument, 0, 'F'},
        {"ca", required_argument, 0, 'C'},
        {"cert", required_argument, 0, 'c'},
        {"key", required_argument, 0, 'k'},
        CLI_COMMON_OPTIONS,
        {0, 0, 0, 0},
    };
    o->timeout = 10000;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            o->url = optarg;
            break;
        case 'O':
            o->to_operator = true;
            break;
        case 't':
            o->token_hex = optarg;
            break;
        case 'T':
            if (!cli_parse_u64(optarg, 1, CALL_TIMEOUT_MAX, &o->timeout)) {
                fprintf(stderr, "kiroku: call: --timeout must be 1..%u ms\n", CALL_TIMEOUT_MAX);
                return CLI_USAGE;
            }
            break;
        case 'r':
            o->raw = true;
            break;
        case 'F':
            o->no_follow = true;
            break;
        case 'C':
            o->tls.ca = optarg;
            break;
        case 'c':
            o->tls.cert = optarg;
            break;
        case 'k':
            o->tls.key = optarg;
            break;
        default: {
            int rc = cli_common_option(c, call_usage, &o->co);
            if (rc != CLI_CONTINUE)
                return rc;
        }
        }
    }
    if (optind >= argc || argc - optind > 2 || (o->url && o->to_operator) ||
        (!o->tls.cert != !o->tls.key))
        return cli_usage(call_usage);
    const char *opname = argv[optind];
    o->json = optind + 1 < argc ? argv[optind + 1] : NULL;
    o->op = kr_op_lookup(opname, strlen(opname));
    if (o->op < 0) {
        fprintf(stderr, "kiroku: call: unknown op '%s' (the ops are listed in docs/ops.md)\n",
                opname);
        return CLI_USAGE;
    }
    if (kr_ops[o->op].endpoint == KR_ENDPOINT_OPERATOR && !o->to_operator && !o->url)
        fprintf(stderr, "kiroku: call: note: %s is an operator op (use --operator)\n",
                kr_ops[o->op].name);
    return CLI_CONTINUE;
}

/* Room for a URL or CA path made from the data directory. */
struct call_paths {
    char url[KR_PATH_MAX + 32], ca[KR_PATH_MAX + 32];
};

/* Where to: the operator socket, --url or the default, and the default CA
 * for tls+tcp://. CLI_CONTINUE or the exit status. */
static int call_resolve_target(struct call_opts *o, struct call_paths *p)
{
    const char *dir = cli_data_dir(o->co.data);
    if (o->to_operator) {
        if ((size_t)snprintf(p->url, sizeof p->url, "ipc://%s/operator.sock", dir) >=
            sizeof p->url) {
            fprintf(stderr, "kiroku: call: data directory path too long\n");
            return CLI_USAGE;
        }
        o->url = p->url;
    } else if (!o->url) {
        o->url = CLI_CALL_URL_DEFAULT;
    }
    if (strncmp(o->url, "tls+", 4) == 0 && !o->tls.ca) {
        if ((size_t)snprintf(p->ca, sizeof p->ca, "%s/tls/ca.pem", dir) >= sizeof p->ca) {
            fprintf(stderr, "kiroku: call: data directory path too long\n");
            return CLI_USAGE;
        }
        o->tls.ca = p->ca;
    }
    return CLI_CONTINUE;
}

/* The token. The ops anonymous callers use (signup.*, auth.login) refuse
 * a token, so an exported KIROKU_TOKEN (a session of earlier calls) is not
 * sent with them; a --token given for one is a mistake to say. CLI_CONTINUE
 * (*have_token says whether token holds one) or the exit status. */
static int call_read_token(struct call_opts *o, uint8_t token[CALL_TOKEN_LEN], bool *have_token)
{
    bool anonymous = (kr_ops[o->op].roles & KR_ROLEBIT_ANONYMOUS) != 0;
    if (o->token_hex && anonymous) {
        fprintf(stderr, "kiroku: call: %s is for callers without a session: leave out --token\n",
                kr_ops[o->op].name);
        return CLI_USAGE;
    }
    if (!o->token_hex && !anonymous) {
        const char *env = getenv("KIROKU_TOKEN");
        o->token_hex = env && *env ? env : NULL;
    }
    if (o->token_hex) {
        size_t bin_len;
        const char *hex = o->token_hex;
        if (strlen(hex) != 2 * (size_t)CALL_TOKEN_LEN ||
            sodium_hex2bin(token, CALL_TOKEN_LEN, hex, strlen(hex), NULL, &bin_len, NULL) != 0 ||
            bin_len != CALL_TOKEN_LEN) {
            fprintf(stderr, "kiroku: call: a token is %u hex digits\n", 2 * CALL_TOKEN_LEN);
            return CLI_USAGE;
        }
        *have_token = true;
    }
    return CLI_CONTINUE;
}

/* One call's buffers, wiped and freed by call_state_free. */
struct call_state {
    char *stdin_json;
    size_t json_len;
    uint8_t *req;
    size_t cap, req_len;
    uint64_t id;
    nng_socket sock;
    bool sock_open;
    void *reply;
    size_t reply_len;
    char *text;
};

/* The request: envelope, then the arguments map packed by jsonmp (from
 * stdin for "-"); the token is wiped once packed. CLI_CONTINUE or the exit
 * status. */
static int call_pack_request(const struct call_opts *o, uint8_t token[CALL_TOKEN_LEN],
                             bool have_token, struct call_state *s)
{
    const char *json = o->json;
    if (json && strcmp(json, "-") == 0) {
        if (!(s->stdin_json = read_stdin(&s->json_len))) {
            fprintf(stderr, "kiroku: call: out of memory\n");
            return CLI_FAIL;
        }
        json = s->stdin_json;
    } else if (json) {
        s->json_len = strlen(json);
    }
    /* Packed arguments are shorter than their JSON but for a float written
     * short ("1.5" packs into 9 bytes); twice the text is room enough. */
    s->cap = CALL_ENVELOPE_MAX + (json ? 2 * s->json_len + 64 : 0);
    if (!(s->req = malloc(s->cap))) {
        fprintf(stderr, "kiroku: call: out of memory\n");
        return CLI_FAIL;
    }
    s->id = 1u + randombytes_uniform(UINT32_MAX);
    struct kr_mp_fixbuf fb = {.p = s->req, .cap = s->cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, kr_mp_fixbuf_write);
    msgpack_pack_map(&pk, 2u + (have_token ? 1u : 0u) + (json ? 1u : 0u));
    pack_str(&pk, kr_fields[KR_FLD_OP].name);
    pack_str(&pk, kr_ops[o->op].name);
    pack_str(&pk, API_KEY_ID);
    msgpack_pack_uint64(&pk, s->id);
    if (have_token) {
        pack_str(&pk, kr_fields[KR_FLD_TOKEN].name);
        msgpack_pack_bin_with_body(&pk, token, CALL_TOKEN_LEN);
        sodium_memzero(token, CALL_TOKEN_LEN);
    }
    if (json) {
        pack_str(&pk, API_KEY_ARGS);
        struct kr_mp_fixbuf args = {.p = s->req + fb.len, .cap = fb.overflow ? 0 : s->cap - fb.len};
        struct jsonmp_diag d;
        kr_err err = jsonmp_args(o->op, json, s->json_len, &args, &d);
        if (err) {
            fprintf(stderr, "kiroku: call: %s%s%s\n", d.key, *d.key ? ": " : "", d.why);
            return CLI_USAGE;
        }
        fb.len += args.len;
    }
    if (fb.overflow || fb.len > KR_API_REQUEST_MAX) {
        fprintf(stderr, "kiroku: call: request too large (the server takes %zu bytes)\n",
                KR_API_REQUEST_MAX);
        return CLI_USAGE;
    }
    s->req_len = fb.len;
    return CLI_CONTINUE;
}

/* Send once, wait for the reply. CLI_CONTINUE or the exit status. */
static int call_exchange(struct call_opts *o, struct call_state *s)
{
    const char *url = o->url;
    int rv;
    nng_dialer dialer;
    if ((rv = nng_req0_open(&s->sock))) {
        call_fail_nng("socket for", url, rv);
        return CLI_FAIL;
    }
    s->sock_open = true;
    if ((rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, KR_API_REPLY_MAX)) ||
        (rv = nng_socket_set_ms(s->sock, NNG_OPT_SENDTIMEO, (nng_duration)o->timeout)) ||
        (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, (nng_duration)o->timeout)) ||
        (rv = nng_socket_set_ms(s->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) ||
        (rv = nng_dialer_create(&dialer, s->sock, url)) ||
        (rv = nng_dialer_set_size(dialer, NNG_OPT_RECVMAXSZ, KR_API_REPLY_MAX))) {
        int ret = call_fail_nng(
            rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? "bad URL" : "cannot use", url, rv);
        if (rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP)
            ret = CLI_USAGE;
        return ret;
    }
    int ret;
    if (strncmp(url, "tls+", 4) == 0 && (ret = setup_tls(dialer, url, &o->tls)) != CLI_OK)
        return ret;
    if ((rv = nng_dialer_start(dialer, 0))) {
        call_fail_nng("cannot connect to", url, rv);
        return CLI_FAIL;
    }
    rv = nng_send(s->sock, s->req, s->req_len, 0);
    if (rv) {
        call_fail_nng("cannot send to", url, rv);
        return CLI_FAIL;
    }
    if ((rv = nng_recv(s->sock, &s->reply, &s->reply_len, NNG_FLAG_ALLOC))) {
        call_fail_nng("no reply from", url, rv);
        return CLI_FAIL;
    }
    return CLI_CONTINUE;
}

/* The reply: proven a reply to this request, then printed as JSON or raw.
 * The exit status. */
static int call_print_reply(const struct call_opts *o, struct call_state *s)
{
    struct jsonmp_diag d;
    size_t text_len;
    bool ok = false;
    uint64_t rid = 0;
    if (jsonmp_to_json(s->reply, s->reply_len, &s->text, &text_len, &d)) {
        fprintf(stderr, "kiroku: call: malformed reply from %s: %s %s\n", o->url, d.key, d.why);
        return CLI_FAIL;
    }
    if (!reply_status(s->reply, s->reply_len, &ok, &rid) || rid != s->id) {
        fprintf(stderr, "kiroku: call: reply from %s is not a reply to this request: %s\n", o->url,
                s->text);
        return CLI_FAIL;
    }
    if (o->raw)
        fwrite(s->reply, 1, s->reply_len, stdout);
    else
        printf("%s\n", s->text);
    return fflush(stdout) == 0 && !ferror(stdout) ? (ok ? CLI_OK : CLI_BAD) : CLI_FAIL;
}

/* Whether the reply (as JSON: s->text) refuses the request as wrong_shard or
 * not_primary naming an endpoint (the message's last word, a URL list):
 * then its first URL into to (cap bytes) and the code into code. */
static bool redirect_target(const char *text, char *to, size_t cap, char *code, size_t ccap)
{
    json_t *j = json_loads(text, 0, NULL);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    bool ok = c && m && (strcmp(c, "wrong_shard") == 0 || strcmp(c, "not_primary") == 0);
    if (ok) {
        const char *w = strrchr(m, ' ');
        w = w ? w + 1 : m;
        size_t n = strcspn(w, ",");
        ok = strstr(w, "://") != NULL && n > 0 && n < cap;
        if (ok) {
            memcpy(to, w, n);
            to[n] = '\0';
            snprintf(code, ccap, "%s", c);
        }
    }
    json_decref(j);
    return ok;
}

/* Sends the request once more, to the endpoint a wrong_shard or not_primary
 * reply to it named (cmd_call's design notes). CLI_CONTINUE when s->reply
 * is the reply to print (the first, or the one from there), else the exit
 * status. */
static int call_follow(struct call_opts *o, struct call_state *s, struct call_paths *p)
{
    char to[sizeof p->url], code[32];
    struct jsonmp_diag d;
    char *text = NULL;
    size_t text_len = 0;
    bool ok = true, follow = false;
    uint64_t rid = 0;
    if (!o->no_follow && reply_status(s->reply, s->reply_len, &ok, &rid) && !ok && rid == s->id &&
        !jsonmp_to_json(s->reply, s->reply_len, &text, &text_len, &d))
        follow = redirect_target(text, to, sizeof to, code, sizeof code);
    if (text) {
        sodium_memzero(text, text_len);
        free(text);
    }
    if (!follow)
        return CLI_CONTINUE;
    bool tls_to = strncmp(to, "tls+", 4) == 0;
    if (strncmp(o->url, "tls+", 4) == 0 && !tls_to) {
        fprintf(stderr, "kiroku: call: %s names %s, which has no TLS: not followed\n", code, to);
        return CLI_CONTINUE;
    }
    fprintf(stderr, "kiroku: call: %s: sending the request to %s\n", code, to);
    sodium_memzero(s->reply, s->reply_len);
    nng_free(s->reply, s->reply_len);
    s->reply = NULL;
    nng_close(s->sock);
    s->sock_open = false;
    memcpy(p->url, to, sizeof p->url);
    o->url = p->url;
    if (tls_to && !o->tls.ca) {
        int rc = call_resolve_target(o, p);
        if (rc != CLI_CONTINUE)
            return rc;
    }
    return call_exchange(o, s);
}

/* Replies carry tokens (auth.login): wipes every copy of request and reply. */
static void call_state_free(struct call_state *s)
{
    if (s->text)
        sodium_memzero(s->text, strlen(s->text) + 1);
    free(s->text);
    if (s->reply) {
        sodium_memzero(s->reply, s->reply_len);
        nng_free(s->reply, s->reply_len);
    }
    if (s->sock_open)
        nng_close(s->sock);
    if (s->req) {
        sodium_memzero(s->req, s->cap);
        free(s->req);
    }
    if (s->stdin_json) {
        sodium_memzero(s->stdin_json,
                       s->json_len > JSONMP_ARGS_MAX ? JSONMP_ARGS_MAX : s->json_len);
        free(s->stdin_json);
    }
}

int cmd_call(int argc, char **argv)
{
    struct call_opts o = {0};
    struct call_paths paths;
    int ret = call_parse_options(argc, argv, &o);
    if (ret == CLI_CONTINUE)
        ret = call_resolve_target(&o, &paths);
    if (ret != CLI_CONTINUE)
        return ret;

    uint8_t token[CALL_TOKEN_LEN];
    bool have_token = false;
    struct call_state s = {.sock = NNG_SOCKET_INITIALIZER};
    ret = call_read_token(&o, token, &have_token);
    if (ret == CLI_CONTINUE)
        ret = call_pack_request(&o, token, have_token, &s);
    if (ret == CLI_CONTINUE)
        ret = call_exchange(&o, &s);
    if (ret == CLI_CONTINUE)
        ret = call_follow(&o, &s, &paths);
    if (ret == CLI_CONTINUE)
        ret = call_print_reply(&o, &s);
    call_state_free(&s);
    sodium_memzero(token, sizeof token);
    return ret;
}
