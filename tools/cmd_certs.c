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

int cmd_certs(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, 'H'},
        {"client", required_argument, 0, 'c'},
        {"days", required_argument, 0, 'D'},
        {"force", no_argument, 0, 'f'},
        CLI_COMMON_OPTIONS,
        {0, 0, 0, 0},
    };
    struct cli_common co = {0};
    const char *host = "localhost", *client = NULL;
    uint64_t days = CERTS_DAYS_DEFAULT;
    bool force = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            host = optarg;
            break;
        case 'c':
            client = optarg;
            break;
        case 'D':
            if (!cli_parse_u64(optarg, 1, CERTS_DAYS_MAX, &days)) {
                fprintf(stderr, "kiroku: certs: --days must be 1..%u\n", CERTS_DAYS_MAX);
                return CLI_USAGE;
            }
            break;
        case 'f':
            force = true;
            break;
        default: {
            int rc = cli_common_option(c, certs_usage, &co);
            if (rc != CLI_CONTINUE)
                return rc;
        }
        }
    }
    if (optind != argc)
        return cli_usage(certs_usage);
    if (!dns_name_ok(host)) {
        fprintf(stderr,
                "kiroku: certs: --host '%s' is not a DNS name (nng's TLS, mbedTLS 2.28, "
                "verifies DNS names only, not IP addresses; use localhost or a host name)\n",
                host);
        return CLI_USAGE;
    }
    if (client && !client_name_ok(client)) {
        fprintf(stderr, "kiroku: certs: --client NAME: 1..64 printable characters, without "
                        "/ , = + ; < > \\ or quotes\n");
        return CLI_USAGE;
    }

    /* Where. The data directory must exist: `init` wants an empty one. */
    const char *dir = cli_data_dir(co.data);
    char tlsdir[KR_PATH_MAX + 8], paths[F__COUNT][KR_PATH_MAX + 32];
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
    snprintf(tlsdir, sizeof tlsdir, "%s/tls", dir);
    if (mkdir(tlsdir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "kiroku: certs: %s: %s\n", tlsdir, strerror(errno));
        return CLI_FAIL;
    }
    int nfiles = client ? F__COUNT : F_CLIENT;
    bool exists = false;
    for (int i = 0; i < nfiles; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", tlsdir, file_names[i]);
        if (lstat(paths[i], &st) == 0) {
            if (!force)
                fprintf(stderr, "kiroku: certs: %s exists\n", paths[i]);
            exists = true;
        }
    }
    if (exists && !force) {
        fprintf(stderr, "kiroku: certs: nothing written (--force replaces the files)\n");
        return CLI_FAIL;
    }

    /* Make everything in memory, then write. */
    int ret = CLI_FAIL;
    EVP_PKEY *keys[3] = {0};
    X509 *certs[3] = {0};
    BIO *out[F__COUNT] = {0};
    char san[CERTS_NAME_MAX + 8];
    snprintf(san, sizeof san, "DNS:%s", host);
    for (int i = 0; i < nfiles / 2; i++)
        if (!(keys[i] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"))) {
            ret = ossl_fail("making a P-256 key");
            goto done;
        }
    if (!(certs[0] =
              make_cert(CERT_CA, keys[0], "kiroku CA", NULL, NULL, keys[0], (unsigned)days)) ||
        !(certs[1] =
              make_cert(CERT_SERVER, keys[1], host, san, certs[0], keys[0], (unsigned)days)) ||
        (client && !(certs[2] = make_cert(CERT_CLIENT, keys[2], client, NULL, certs[0], keys[0],
                                          (unsigned)days)))) {
        ret = ossl_fail("making a certificate");
        goto done;
    }
    for (int i = 0; i < nfiles; i++)
        if (!(out[i] = pem_of(i % 2 ? NULL : certs[i / 2], keys[i / 2]))) {
            ret = ossl_fail("writing PEM");
            goto done;
        }
    /* Keys first: a certificate without its key is of no use. */
    for (int i = 0; i < nfiles; i++) {
        int k = i < nfiles / 2 ? 2 * i + 1 : 2 * (i - nfiles / 2);
        if ((ret = write_file(paths[k], out[k], k % 2 ? 0600 : 0644)) != CLI_OK)
            goto done;
    }
    int dfd = open(tlsdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    if (co.json) {
        printf("{\"host\":");
        cli_json_str(stdout, host, strlen(host));
        printf(",\"days\":%llu", (unsigned long long)days);
        for (int i = 0; i < nfiles; i++) {
            printf(",\"%s\":", file_keys[i]);
            cli_json_str(stdout, paths[i], strlen(paths[i]));
        }
        printf("}\n");
    } else {
        for (int i = 0; i < nfiles; i++)
            printf("%-11s %s\n", file_keys[i], paths[i]);
        printf("server certificate for DNS:%s, valid %llu days; start the server with\n"
               "  kiroku serve --listen tls+tcp://%s:7451 --cert %s --key %s\n"
               "and call it with\n"
               "  kiroku call --url tls+tcp://%s:7451 --ca %s OP ...\n",
               host, (unsigned long long)days, host, paths[F_SERVER], paths[F_SERVER_KEY], host,
               paths[F_CA]);
    }
    ret = fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
done:
    for (int i = 0; i < 3; i++) {
        EVP_PKEY_free(keys[i]);
        X509_free(certs[i]);
    }
    for (int i = 0; i < F__COUNT; i++)
        BIO_free(out[i]);
    return ret;
}
