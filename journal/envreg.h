/*
 * envreg.h: the LMDB environments this process has open, by the identity
 * (device and inode) of their directory.
 *
 * LMDB must not open one environment twice in a process: closing the second
 * handle drops the locks of the first (fcntl locks are per process), and
 * another process could then reset the reader table under a live writer. The
 * journal (DIR/journal) and the keystore (DIR/keystore) each register their
 * environment here before opening it, so a second open of the same directory
 * in one process is refused with KR_EBUSY whatever path it is reached by.
 *
 * Thread-safety: both functions may be called from any thread; one mutex
 * guards the list. The list holds as many entries as environments are open,
 * each a handle's own struct kr_env_reg: nothing is allocated.
 */
#ifndef KR_ENVREG_H
#define KR_ENVREG_H

#include "kr_error.h"

#include <stdbool.h>
#include <sys/types.h>

/* One registration. Caller-owned, embedded in the handle that opens the
 * environment; zeroed before kr_env_register. Private fields. */
struct kr_env_reg {
    dev_t dev;
    ino_t ino;
    bool registered;
    struct kr_env_reg *next;
};

/* Registers directory `dir` as open through r. Errors: KR_EBUSY if this
 * process has that directory registered already; KR_ENOTFOUND if it does not
 * exist; KR_ECORRUPT if it is not a directory; others as kr_err_from_errno
 * gives them for stat(2). On error r stays unregistered. */
KR_MUST_CHECK kr_err kr_env_register(struct kr_env_reg *r, const char *dir);

/* Removes r's registration. Accepts an unregistered (zeroed) r. */
void kr_env_unregister(struct kr_env_reg *r);

#endif
