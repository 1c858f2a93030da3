/*
 * kr_error.c: texts for kiroku's error codes and the translation of LMDB and
 * errno codes. This is the only place where foreign error codes are mapped.
 */
#include "kr_error.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>

static const struct {
    const char *name;
    const char *text;
} kr_errors[KR__COUNT] = {
    [KR_OK] = {"ok", "success"},
    [KR_EINVAL] = {"invalid", "invalid argument"},
    [KR_ENOMEM] = {"no_memory", "out of memory"},
    [KR_ETOOLARGE] = {"too_large", "input exceeds a limit"},
    [KR_ECONFLICT] = {"conflict", "stream version conflict"},
    [KR_ENOTFOUND] = {"not_found", "not found"},
    [KR_EEXIST] = {"exists", "already exists"},
    [KR_ECORRUPT] = {"corrupt", "data is corrupt"},
    [KR_EBADSIG] = {"bad_signature", "signature does not verify"},
    [KR_EKEY] = {"key", "key missing, unreadable or not usable"},
    [KR_EIO] = {"io", "input/output error"},
    [KR_EFULL] = {"full", "storage is full"},
    [KR_ECLOSED] = {"closed", "journal is closed or stopped"},
    [KR_EBUSY] = {"busy", "resource busy"},
    [KR_ECRYPTO] = {"crypto", "cryptographic library failure"},
    [KR_EVERSION] = {"version", "unsupported format version"},
    [KR_EAUTH] = {"unauthenticated", "not authenticated"},
    [KR_EFORBIDDEN] = {"forbidden", "not permitted"},
    [KR_ELOCKED] = {"locked", "account locked"},
    [KR_EEXPIRED] = {"expired", "expired or out of tries"},
    [KR_ERATE] = {"rate_limited", "too many requests: retry later"},
    [KR_ENOTPRIMARY] = {"not_primary", "this node takes no writes: send them to the primary"},
    [KR_EWRONGSHARD] = {"wrong_shard", "the tenant lives on another shard"},
};

const char *kr_strerror(kr_err err)
{
    if ((unsigned)err >= KR__COUNT)
        return "unknown error";
    return kr_errors[err].text;
}

const char *kr_errname(kr_err err)
{
    if ((unsigned)err >= KR__COUNT)
        return "unknown";
    return kr_errors[err].name;
}

kr_err kr_err_from_errno(int e)
{
    switch (e) {
    case 0:
        return KR_OK;
    case ENOMEM:
        return KR_ENOMEM;
    case ENOENT:
        return KR_ENOTFOUND;
    case EEXIST:
        return KR_EEXIST;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return KR_EFULL;
    case EACCES:
    case EPERM:
        return KR_EKEY;
    case EBUSY:
    case EAGAIN:
        return KR_EBUSY;
    case EINVAL:
        return KR_EINVAL;
    default:
        return KR_EIO;
    }
}

kr_err kr_err_from_mdb(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return KR_OK;
    case MDB_NOTFOUND:
        return KR_ENOTFOUND;
    case MDB_KEYEXIST:
        return KR_EEXIST;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
    case MDB_DBS_FULL:
    case MDB_READERS_FULL:
        return KR_EFULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_BAD_TXN:
    case MDB_BAD_VALSIZE:
    case MDB_BAD_DBI:
    case MDB_INCOMPATIBLE:
        return KR_ECORRUPT;
    case MDB_VERSION_MISMATCH:
        return KR_EVERSION;
    case MDB_MAP_RESIZED:
        return KR_EBUSY;
    case MDB_PANIC:
        return KR_EIO;
    default:
        return rc > 0 ? kr_err_from_errno(rc) : KR_EIO;
    }
}

void kr_assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "kiroku: internal error: %s (%s:%d)\n", what, file, line);
    abort();
}
