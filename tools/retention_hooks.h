/*
 * retention_hooks.h: the retention job's hooks (projections/retention.h)
 * over what only the tools layer sees: the journal's payload stripping, the
 * backup generations (tools/backup.h), and the test hook that kills the
 * process after a chosen step of an erasure.
 *
 * The test hook: with KIROKU_RETENTION_KILL_AFTER set to a step name (key,
 * backups, outbox, strip, event), the process sends itself SIGKILL right
 * after that step of an erasure, as a crash there would. It is honoured
 * only together with the clock override (KIROKU_CLOCK_OFFSET), which only
 * drills and tests set: a production server refuses that.
 */
#ifndef KR_TOOLS_RETENTION_HOOKS_H
#define KR_TOOLS_RETENTION_HOOKS_H

#include "retention.h"

#define TOOLS_RET_KILL_ENV "KIROKU_RETENTION_KILL_AFTER"

struct tools_ret {
    struct ret_hooks hooks;
    const char *data_dir;    /* the live data directory */
    const char *backups_dir; /* NULL = no backups */
    int kill_after;          /* enum ret_step, or -1 */
    char backups_buf[4096];
};

/* `kiroku backup`'s default backups directory: "backups" beside DIR. */
void tools_ret_default_backups(const char *data, char *out, size_t cap);

/* Fills t (which must outlive the domain it is given to, see
 * dom_set_retention). backups_dir NULL: `kiroku backup`'s default directory
 * ($KIROKU_BACKUPS, else "backups" beside DIR) if it exists (so an erasure reaches the generations
 * made there), else none. test_hooks: whether the kill hook may be read from the environment. false
 * if KIROKU_RETENTION_KILL_AFTER names no step (printed). */
bool tools_ret_init(struct tools_ret *t, const char *data_dir, const char *backups_dir,
                    bool test_hooks);

/* Takes one backup of d into t->backups_dir in-process (backup_run with
 * d's open journal and keystore and clock) and records it: backup.completed,
 * or backup.failed with the reason. KR_OK only if the backup completed;
 * *reason says why not (256 bytes). */
KR_MUST_CHECK kr_err tools_backup_daily(struct tools_ret *t, struct kr_domain *d, char reason[256]);

#endif
