/*
 * kr_error.h: the one error enum of kiroku.
 *
 * Every function that can fail returns a `kr_err`; results travel through
 * out-parameters. Codes of the libraries we use (LMDB, errno, libsodium, nng,
 * msgpack) are translated to these in exactly one place each: the `kr_err_from_*`
 * functions below. `kr_strerror()` gives a short, stable English text.
 */
#ifndef KR_ERROR_H
#define KR_ERROR_H

#define KR_MUST_CHECK __attribute__((warn_unused_result))

/* Checks an invariant of our own code, in every build (NDEBUG does not remove
 * it): an assertion that guards data must hold in production too. Hostile
 * input never reaches one; it gets an error return instead. */
#define KR_ASSERT(cond) ((cond) ? (void)0 : kr_assert_fail(#cond, __FILE__, __LINE__))
_Noreturn void kr_assert_fail(const char *what, const char *file, int line);

enum kr_err {
    KR_OK = 0,
    KR_EINVAL,      /* an argument breaks the documented contract or a limit */
    KR_ENOMEM,      /* allocation failed */
    KR_ETOOLARGE,   /* an input or output exceeds a limit in kr_limits.h */
    KR_ECONFLICT,   /* the stream's version is not the one the append expected */
    KR_ENOTFOUND,   /* no such record, stream, key or file */
    KR_EEXIST,      /* the thing to create already exists */
    KR_ECORRUPT,    /* stored or received bytes are malformed or fail a check */
    KR_EBADSIG,     /* a signature does not verify */
    KR_EKEY,        /* a key is missing, unreadable, retired or has wrong permissions */
    KR_EIO,         /* an I/O error; the journal stops accepting writes after one */
    KR_EFULL,       /* the disk or the LMDB map is full; nothing was written */
    KR_ECLOSED,     /* the journal is closing or has stopped after an I/O error */
    KR_EBUSY,       /* a resource is in use (e.g. another writer holds the journal) */
    KR_ECRYPTO,     /* the crypto library failed (should not happen) */
    KR_EVERSION,    /* unsupported on-disk format version */
    KR_EAUTH,       /* not authenticated: no, unknown, expired or revoked session; failed login */
    KR_EFORBIDDEN,  /* the caller's role or permissions do not allow it */
    KR_ELOCKED,     /* the account is locked */
    KR_EEXPIRED,    /* a code or application expired or used up its tries */
    KR_ERATE,       /* too many requests of this kind from this caller: retry later */
    KR_ENOTPRIMARY, /* this node takes no writes: it follows a primary, or lost its lease */
    KR_EWRONGSHARD, /* the tenant lives on another shard */
    KR__COUNT
};
typedef enum kr_err kr_err;

/* A short description of `err`; never NULL, static storage. */
const char *kr_strerror(kr_err err);

/* A stable lower-case identifier ("conflict", "corrupt"...), for --json output. */
const char *kr_errname(kr_err err);

/* Translate an LMDB return code (MDB_* or errno) into a kiroku error. */
kr_err kr_err_from_mdb(int rc);

/* Translate an errno value into a kiroku error. */
kr_err kr_err_from_errno(int e);

#endif
