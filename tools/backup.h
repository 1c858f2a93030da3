/*
 * backup.h: backup generations of a data directory, checking them, and
 * restoring one into a new data directory.
 *
 * A backups directory BACKUPS holds one generation per JST day, named
 * "YYYY-MM-DD" (the day the backup was taken, in Japan Standard Time):
 *
 *   BACKUPS/2026-12-06/manifest            signed manifest (backup_manifest.h)
 *   BACKUPS/2026-12-06/journal/data.mdb    compacting LMDB copy of DIR/journal
 *   BACKUPS/2026-12-06/keystore/data.mdb   compacting copy of DIR/keystore
 *   BACKUPS/2026-12-06/keys/...            KEK, journal signing and public keys
 *   BACKUPS/2026-12-06/checkpoint          the copy's newest checkpoint
 *   BACKUPS/.lock                          held by a running backup
 *
 * A generation is built in BACKUPS/.tmp-<day>-<random>, fsynced, and then
 * takes the day's name in one step (renameat2 RENAME_EXCHANGE with an
 * existing one, whose old tree is then removed), so under a day's name there
 * is always a complete generation; leftovers of an interrupted run
 * (".tmp-*", ".old-*") are removed by the next backup. The newest
 * KR_BACKUP_GENERATIONS are kept.
 *
 * A generation holds the KEK and the signing keys: whoever reads it reads
 * every tenant's data and can sign as the journal. Keep BACKUPS as private
 * as the data directory (kiroku makes it 0700, secret files 0600).
 *
 * A generation is hostile input until proven: nothing here opens its LMDB
 * files before the manifest's signature (by the journal's key chain, rooted
 * in the trusted public key of key 1) and every file's SHA-256 and size
 * matched, and the directory holds nothing the manifest does not list.
 *
 * Errors: kr_err values; when a check fails, reason says which ("manifest
 * signature: ...", "digest of journal/data.mdb", "extra file keys/x", ...).
 */
#ifndef KR_BACKUP_H
#define KR_BACKUP_H

#include "clock.h"
#include "keys.h"
#include "kr_error.h"
#include "kr_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal;
struct kr_keystore;

#define BACKUP_REASON_MAX 256

struct backup_options {
    const char *data_dir;         /* the live data directory */
    const char *backups_dir;      /* where generations live (made 0700 if missing) */
    struct journal *j;            /* the open journal when in-process (serve), else NULL */
    struct kr_keystore *ks;       /* the open keystore when in-process, else NULL */
    const struct kr_clock *clock; /* NULL = real time; decides the JST day */
    /* Called between steps ("journal", "keystore", "keys", "manifest",
     * "install"), done of total steps; may be NULL. */
    void (*progress)(void *arg, const char *step, uint64_t done, uint64_t total);
    void *progress_arg;
};

struct backup_result {
    char generation[64]; /* its name, "YYYY-MM-DD" */
    uint64_t last_seq;   /* records in the copy; the manifest's checkpoint covers them */
    double seconds;
    uint64_t bytes;                 /* sum of the generation's file sizes */
    uint64_t removed;               /* older generations removed */
    char reason[BACKUP_REASON_MAX]; /* on failure */
};

/* Takes a backup of o->data_dir into o->backups_dir while a server may be
 * writing: the journal and keystore as LMDB compacting copies of one read
 * snapshot each, the key files, the copy's newest checkpoint and a manifest
 * signed with the journal's current key (loaded from DATA/keys). Without
 * o->j, the journal is opened read-only here (a reader: it never contends
 * with the server's writer lock); without o->ks, the keystore is opened here
 * (shared open.lock, as the server holds it). A data directory without a
 * keystore gives a generation without one. KR_EBUSY if another backup of
 * BACKUPS is running; other errors with r->reason. */
KR_MUST_CHECK kr_err backup_run(const struct backup_options *o, struct backup_result *r);

/* A generation as backup_list and backup_check see it. */
struct backup_gen {
    char name[64];
    uint64_t last_seq;
    uint64_t time_ns;
    char time_jst[48];
    uint64_t bytes;
    bool verified;                  /* manifest signature and every digest hold */
    kr_err result;                  /* KR_OK when verified */
    char reason[BACKUP_REASON_MAX]; /* when not */
};

/* Every generation, newest first, with its manifest and whether it verifies
 * (signature by the chain rooted in trusted_pk, every digest, no extra
 * file). Up to cap into out, *n of them; more than cap: the newest cap.
 * KR_ENOTFOUND if backups_dir does not exist. */
KR_MUST_CHECK kr_err backup_list(const char *backups_dir, const uint8_t trusted_pk[32],
                                 struct backup_gen *out, size_t cap, size_t *n);

/* Checks one generation directory as backup_list does and, when with_journal
 * and its files are proven, verifies the copied journal (fast verification,
 * read-only, trusted_pk as key 1). The verdict is in out->result and
 * out->reason; the return is an error only when the check could not run. */
KR_MUST_CHECK kr_err backup_check(const char *gen_dir, const uint8_t trusted_pk[32],
                                  bool with_journal, struct backup_gen *out);

struct backup_restore_options {
    const char *generation;       /* a generation directory */
    const char *data_dir;         /* NEWDIR: must not exist, be empty, or hold only a
                                   * checkpoint file */
    const uint8_t *trusted_pk;    /* public key of the journal's key 1 (32 bytes) */
    uint64_t until;               /* restore records 1..until only; 0 = all */
    bool full;                    /* also check every record's signature */
    bool new_epoch;               /* allow a backup older than the known checkpoint */
    const char *known_checkpoint; /* the newest checkpoint known; NULL = NEWDIR/checkpoint */
    void (*progress)(void *arg, const char *step, uint64_t done, uint64_t total);
    void *progress_arg;
};

struct backup_restore_result {
    uint64_t records;               /* in the restored journal */
    uint64_t known_size;            /* the known checkpoint's size, 0 if none */
    bool epoch_started;             /* a new epoch was started */
    double verify_s, rebuild_s;     /* the journal check; the view rebuild */
    double seconds;                 /* everything */
    char reason[BACKUP_REASON_MAX]; /* on failure */
};

/* Restores a generation into o->data_dir: checks the manifest and every
 * digest while copying into NEWDIR.restore-tmp, verifies the copied journal
 * (fast, or full), checks the known checkpoint against it, truncates to
 * o->until, starts a new epoch when the restored journal will take writes
 * from before a checkpoint already signed (the known one, or the backup's
 * own when truncated), rebuilds the views, and only then renames the whole
 * into place. Errors: KR_ECORRUPT / KR_EBADSIG the backup is bad;
 * KR_ECONFLICT refused against the known checkpoint (older without
 * new_epoch, or not consistent); KR_EEXIST NEWDIR holds a journal or other
 * files; KR_EINVAL until beyond the backup; others: could not run. */
KR_MUST_CHECK kr_err backup_restore(const struct backup_restore_options *o,
                                    struct backup_restore_result *r);

/* Destroys `tenant`'s data key in every generation's keystore (a compacting
 * rewrite, so no freed page keeps it), re-hashes and re-signs each manifest;
 * idempotent, crash-safe. `data_dir` is the live directory (for the current
 * signing key and the trusted public key of key 1). Each generation is
 * rebuilt beside itself (unchanged files hard-linked) and exchanged into
 * place as a backup does; a generation that does not verify is left as it
 * is and reported (KR_ECORRUPT) after the others are done. *generations
 * counts the generations rewritten. */
KR_MUST_CHECK kr_err backup_erase_tenant(const char *backups_dir, const char *data_dir,
                                         uint64_t tenant, uint64_t *generations);

#endif
