/*
 * cmd_certs.c: `kiroku certs`, a private CA and the certificates the TLS
 * endpoints use: DIR/tls/ca.pem (+ ca.key), server.pem (+ server.key) for
 * `serve --cert/--key`, and on request client.pem (+ client.key) for the
 * operator endpoint's client-certificate check. `call --ca` trusts ca.pem.
 *
 * Design notes: OpenSSL 3's EVP and X509 APIs only (no deprecated EC_KEY).
 * Keys are ECDSA P-256, certificates X.509 v3 signed with SHA-256, serials 127
 * random bits. The server certificate names its host as a DNS subjectAltName:
 * nng's TLS (mbedTLS 2.28 on Debian 12) checks DNS names, never IP addresses,
 * so an IP name is refused here rather than failing later at the handshake.
 * Keys are written mode 0600 into DIR/tls (0700); every file is written to a
 * temporary name, synced and renamed, and nothing is written at all when a
 * file exists and --force is not given.
 */
#include "cli.h"
#include "keys.h"
#include "kr_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char certs_usage[] =
    "usage: kiroku certs [--data DIR] [--host NAME] [--client NAME] [--days N]\n"
    "                    [--force] [--json]\n"
    "\n"
    "Makes a private certificate authority and certificates for TLS (ECDSA P-256,\n"
    "SHA-256) in DIR/tls/:\n"
    "  ca.pem, ca.key          the CA: give ca.pem to clients (kiroku call --ca)\n"
    "  server.pem, server.key  the server's, for kiroku serve --cert/--key, naming\n"
    "                          NAME (default localhost) as its DNS name\n"
    "  client.pem, client.key  with --client NAME: a client certificate (CN=NAME)\n"
    "                          for the operator endpoint's client-certificate check\n"
    "Keys are mode 0600. Existing files are kept unless --force.\n"
    "\n"
    "  --data DIR     data directory (default $KIROKU_DATA or " CLI_DATA_DEFAULT ")\n"
    "  --host NAME    the server's DNS name (not an IP address: see docs/security.md)\n"
    "  --client NAME  also make a client certificate for NAME\n"
    "  --days N       validity in days, 1..3650 (default 825)\n"
    "  --force        replace existing files\n"
    "  --json         print the paths as JSON\n";

/* A DNS name (RFC 1035: 253 characters) or a client name in a certificate. */
#define CERTS_NAME_MAX 253u
/* Validity: ten years at most; 825 days is what browsers accept for servers. */
#define CERTS_DAYS_MAX     3650u
#define CERTS_DAYS_DEFAULT 825u

enum { F_CA, F_CA_KEY, F_SERVER, F_SERVER_KEY, F_CLIENT, F_CLIENT_KEY, F__COUNT };
static const char *const file_names[F__COUNT] = {
    "ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key",
};
/* Keys in JSON output. */
static const char *const file_keys[F__COUNT] = {
    "ca", "ca_key", "server", "server_key", "client", "client_key",
};

/* A DNS host name: labels of [A-Za-z0-9-] not starting or ending with '-',
 * dot-separated, and not all digits and dots (an IPv4 address). */
static bool dns_name_ok(const char *s)
{
    size_t n = strlen(s), label = 0;
    bool alpha = false;
    if (n == 0 || n > CERTS_NAME_MAX)
        return false;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (c == '-' && label == 0)
            return false;
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!letter && !(c >= '0' && c <= '9') && c != '-')
            return false;
        alpha |= letter || c == '-';
        label++;
    }
    return alpha;
}

/* A client name: printable ASCII without '/', ',', '=', '+' or quotes. */
static bool client_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || strchr("/,=+\"\\<>;", s[i]))
            return false;
    return true;
}

static int ossl_fail(const char *what)
{
    fprintf(stderr, "kiroku: certs: %s failed (OpenSSL)\n", what);
    return CLI_FAIL;
}

static bool add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!e)
        return false;
    bool ok = X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok;
}

/* What a certificate is for. */
enum cert_kind { CERT_CA, CERT_SERVER, CERT_CLIENT };

/* Makes a certificate for key's public half named cn, signed by issuer_key
 * (issuer NULL: self-signed). NULL on failure. */
static X509 *make_cert(enum cert_kind kind, EVP_PKEY *key, const char *cn, const char *san,
                       X509 *issuer, EVP_PKEY *issuer_key, unsigned days)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    uint8_t serial[16];
    bool ok = x && bn && RAND_bytes(serial, sizeof serial) == 1;
    if (ok) {
        /* Positive, 127 random bits, never zero (RFC 5280 4.1.2.2). */
        serial[0] = (uint8_t)((serial[0] & 0x7f) | 0x40);
        ok = BN_bin2bn(serial, sizeof serial, bn) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) && X509_set_version(x, 2) == 1 &&
             /* An hour back, for clocks a little behind. */
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
             X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) &&
             X509_set_pubkey(x, key) == 1;
    }
    X509_NAME *name = ok ? X509_get_subject_name(x) : NULL;
    ok = ok && name &&
         X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"kiroku", -1,
                                    -1, 0) == 1 &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                    0) == 1 &&
         X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1;
    X509V3_CTX ctx;
    if (ok) {
        X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
        ok = add_ext(x, &ctx, NID_subject_key_identifier, "hash") &&
             add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
    }
    if (ok && kind == CERT_CA)
        ok = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
             add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (ok && kind != CERT_CA)
        ok = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") &&
             add_ext(x, &ctx, NID_ext_key_usage, kind == CERT_SERVER ? "serverAuth" : "clientAuth");
    if (ok && san)
        ok = add_ext(x, &ctx, NID_subject_alt_name, san);
    ok = ok && X509_sign(x, issuer_key, EVP_sha256()) > 0;
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* PEM text of a certificate or private key (PKCS#8, unencrypted), into a
 * memory BIO. */
static BIO *pem_of(X509 *cert, EVP_PKEY *key)
{
    BIO *b = BIO_new(cert ? BIO_s_mem() : BIO_s_secmem()); /* keys: wiped when freed */
    if (!b)
        return NULL;
    int ok = cert ? PEM_write_bio_X509(b, cert)
                  : PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    if (ok != 1) {
        BIO_free(b);
        return NULL;
    }
    return b;
}

/* Writes bio's bytes to path with mode through the one writer of secret
 * files (kr_file_replace: temporary file, fsync, rename). */
static int write_file(const char *path, BIO *bio, mode_t mode)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    kr_err err = n > 0 ? kr_file_replace(path, data, (size_t)n, mode) : KR_EIO;
    if (err) {
        fprintf(stderr, "kiroku: certs: %s: %s\n", path, kr_strerror(err));
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* What the command line asks for. */
struct certs_opts {
    struct cli_common co;
    const char *host, *client;
    uint64_t days;
    bool force;
};

/* Options, and the names checked. CLI_CONTINUE or the exit status. */
static int certs_parse_options(int argc, char **argv, struct certs_opts *o)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, 'H'},
        {"client", required_argument, 0, 'c'},
        {"days", required_argument, 0, 'D'},
        {"force", no_argument, 0, 'f'},
        CLI_COMMON_OPTIONS,
        {0, 0, 0, 0},
    };
    o->host = "localhost";
    o->days = CERTS_DAYS_DEFAULT;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            o->host = optarg;
            break;
        case 'c':
            o->client = optarg;
            break;
        case 'D':
            if (!cli_parse_u64(optarg, 1, CERTS_DAYS_MAX, &o->days)) {
                fprintf(stderr, "kiroku: certs: --days must be 1..%u\n", CERTS_DAYS_MAX);
                return CLI_USAGE;
            }
            break;
        case 'f':
            o->force = true;
            break;
        default: {
            int rc = cli_common_option(c, certs_usage, &o->co);
            if (rc != CLI_CONTINUE)
                return rc;
        }
        }
    }
    if (optind != argc)
        return cli_usage(certs_usage);
    if (!dns_name_ok(o->host)) {
        fprintf(stderr,
                "kiroku: certs: --host '%s' is not a DNS name (nng's TLS, mbedTLS 2.28, "
                "verifies DNS names only, not IP addresses; use localhost or a host name)\n",
                o->host);
        return CLI_USAGE;
    }
    if (o->client && !client_name_ok(o->client)) {
        fprintf(stderr, "kiroku: certs: --client NAME: 1..64 printable characters, without "
                        "/ , = + ; < > \\ or quotes\n");
        return CLI_USAGE;
    }
    return CLI_CONTINUE;
}

/* The files to write, in DIR/tls. */
struct certs_files {
    char tlsdir[KR_PATH_MAX + 8], paths[F__COUNT][KR_PATH_MAX + 32];
    int nfiles;
};

/* Where. The data directory must exist: `init` wants an empty one. Makes
 * DIR/tls and refuses files that exist unless --force. CLI_CONTINUE or the
 * exit status. */
static int certs_prepare_dir(const struct certs_opts *o, struct certs_files *fl)
{
    const char *dir = cli_data_dir(o->co.data);
    struct stat st;
    if (strlen(dir) > KR_PATH_MAX) {
        fprintf(stderr, "kiroku: certs: data directory path too long\n");
        return CLI_USAGE;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr,
                "kiroku: certs: no data directory %s (make one with: kiroku init --data %s)\n", dir,
                dir);
        return CLI_FAIL;
    }
    snprintf(fl->tlsdir, sizeof fl->tlsdir, "%s/tls", dir);
    if (mkdir(fl->tlsdir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "kiroku: certs: %s: %s\n", fl->tlsdir, strerror(errno));
        return CLI_FAIL;
    }
    fl->nfiles = o->client ? F__COUNT : F_CLIENT;
    bool exists = false;
    for (int i = 0; i < fl->nfiles; i++) {
        snprintf(fl->paths[i], sizeof fl->paths[i], "%s/%s", fl->tlsdir, file_names[i]);
        if (lstat(fl->paths[i], &st) == 0) {
            if (!o->force)
                fprintf(stderr, "kiroku: certs: %s exists\n", fl->paths[i]);
            exists = true;
        }
    }
    if (exists && !o->force) {
        fprintf(stderr, "kiroku: certs: nothing written (--force replaces the files)\n");
        return CLI_FAIL;
    }
    return CLI_CONTINUE;
}

/* Keys, certificates and their PEM, in memory; freed by certs_made_free. */
struct certs_made {
    EVP_PKEY *keys[3];
    X509 *certs[3];
    BIO *out[F__COUNT];
};

/* Makes everything in memory. CLI_CONTINUE or the exit status. */
static int certs_make(const struct certs_opts *o, int nfiles, struct certs_made *m)
{
    char san[CERTS_NAME_MAX + 8];
    unsigned days = (unsigned)o->days;
    snprintf(san, sizeof san, "DNS:%s", o->host);
    for (int i = 0; i < nfiles / 2; i++)
        if (!(m->keys[i] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")))
            return ossl_fail("making a P-256 key");
    if (!(m->certs[0] =
              make_cert(CERT_CA, m->keys[0], "kiroku CA", NULL, NULL, m->keys[0], days)) ||
        !(m->certs[1] =
              make_cert(CERT_SERVER, m->keys[1], o->host, san, m->certs[0], m->keys[0], days)) ||
        (o->client && !(m->certs[2] = make_cert(CERT_CLIENT, m->keys[2], o->client, NULL,
                                                m->certs[0], m->keys[0], days))))
        return ossl_fail("making a certificate");
    for (int i = 0; i < nfiles; i++)
        if (!(m->out[i] = pem_of(i % 2 ? NULL : m->certs[i / 2], m->keys[i / 2])))
            return ossl_fail("writing PEM");
    return CLI_CONTINUE;
}

/* Writes the files, keys first: a certificate without its key is of no use.
 * CLI_OK or the exit status. */
static int certs_write(const struct certs_files *fl, const struct certs_made *m)
{
    int ret;
    int nfiles = fl->nfiles;
    for (int i = 0; i < nfiles; i++) {
        int k = i < nfiles / 2 ? 2 * i + 1 : 2 * (i - nfiles / 2);
        if ((ret = write_file(fl->paths[k], m->out[k], k % 2 ? 0600 : 0644)) != CLI_OK)
            return ret;
    }
    int dfd = open(fl->tlsdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return CLI_OK;
}

/* What was written and how to use it, as text or JSON. The exit status. */
static int certs_print(const struct certs_opts *o, const struct certs_files *fl)
{
    const char *host = o->host;
    if (o->co.json) {
        printf("{\"host\":");
        cli_json_str(stdout, host, strlen(host));
        printf(",\"days\":%llu", (unsigned long long)o->days);
        for (int i = 0; i < fl->nfiles; i++) {
            printf(",\"%s\":", file_keys[i]);
            cli_json_str(stdout, fl->paths[i], strlen(fl->paths[i]));
        }
        printf("}\n");
    } else {
        for (int i = 0; i < fl->nfiles; i++)
            printf("%-11s %s\n", file_keys[i], fl->paths[i]);
        printf("server certificate for DNS:%s, valid %llu days; start the server with\n"
               "  kiroku serve --listen tls+tcp://%s:7451 --cert %s --key %s\n"
               "and call it with\n"
               "  kiroku call --url tls+tcp://%s:7451 --ca %s OP ...\n",
               host, (unsigned long long)o->days, host, fl->paths[F_SERVER],
               fl->paths[F_SERVER_KEY], host, fl->paths[F_CA]);
    }
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
}

static void certs_made_free(struct certs_made *m)
{
    for (int i = 0; i < 3; i++) {
        EVP_PKEY_free(m->keys[i]);
        X509_free(m->certs[i]);
    }
    for (int i = 0; i < F__COUNT; i++)
        BIO_free(m->out[i]);
}

int cmd_certs(int argc, char **argv)
{
    struct certs_opts o = {0};
    struct certs_files fl;
    int ret = certs_parse_options(argc, argv, &o);
    if (ret == CLI_CONTINUE)
        ret = certs_prepare_dir(&o, &fl);
    if (ret != CLI_CONTINUE)
        return ret;
    struct certs_made m = {0};
    ret = certs_make(&o, fl.nfiles, &m);
    if (ret == CLI_CONTINUE)
        ret = certs_write(&fl, &m);
    if (ret == CLI_OK)
        ret = certs_print(&o, &fl);
    certs_made_free(&m);
    return ret;
}
