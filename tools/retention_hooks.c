/* retention_hooks.c: the retention job's hooks over the journal and the
 * backups (see retention_hooks.h). */
#include "retention_hooks.h"

#include "backup.h"
#include "keys.h"

#include <errno.h>
#include <sys/stat.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static kr_err hook_after(void *arg, uint64_t tenant, enum ret_step step)
{
    const struct tools_ret *t = arg;
    (void)tenant;
    if (t->kill_after == (int)step) {
        fflush(NULL);
        kill(getpid(), SIGKILL);
    }
    return KR_OK;
}

static kr_err hook_backup_erase(void *arg, uint64_t tenant, uint64_t *generations)
{
    const struct tools_ret *t = arg;
    *generations = 0;
    struct stat st;
    if (stat(t->backups_dir, &st) != 0 && errno == ENOENT)
        return KR_OK; /* no generation yet: none holds the key */
    return backup_erase_tenant(t->backups_dir, t->data_dir, tenant, generations);
}

static kr_err hook_backup_list(void *arg, struct ret_generation *out, size_t cap, size_t *n)
{
    const struct tools_ret *t = arg;
    uint8_t pk[32];
    *n = 0;
    kr_err err = kr_pubkey_load(t->data_dir, 1, pk);
    if (err)
        return err;
    struct backup_gen *g = calloc(cap, sizeof *g);
    if (!g)
        return KR_ENOMEM;
    err = backup_list(t->backups_dir, pk, g, cap, n);
    if (err == KR_ENOTFOUND) {
        err = KR_OK;
        *n = 0;
    }
    for (size_t i = 0; !err && i < *n; i++) {
        out[i] = (struct ret_generation){.last_seq = g[i].last_seq,
                                         .taken = g[i].time_ns,
                                         .bytes = g[i].bytes,
                                         .verified = g[i].verified};
        snprintf(out[i].generation, sizeof out[i].generation, "%s", g[i].name);
        if (!g[i].verified)
            snprintf(out[i].reason, sizeof out[i].reason, "%s",
                     g[i].reason[0] ? g[i].reason : kr_strerror(g[i].result));
    }
    free(g);
    return err;
}

void tools_ret_default_backups(const char *data, char *out, size_t cap)
{
    size_t n = strlen(data);
    while (n > 1 && data[n - 1] == '/')
        n--;
    size_t cut = n;
    while (cut > 0 && data[cut - 1] != '/')
        cut--;
    if (cut == 0)
        snprintf(out, cap, "backups");
    else
        snprintf(out, cap, "%.*sbackups", (int)cut, data);
}

bool tools_ret_init(struct tools_ret *t, const char *data_dir, const char *backups_dir,
                    bool test_hooks)
{
    memset(t, 0, sizeof *t);
    t->data_dir = data_dir;
    t->backups_dir = backups_dir;
    t->kill_after = -1;
    t->hooks.arg = t;
    if (!backups_dir) {
        /* `kiroku backup`'s default, when it exists: a key left there would
         * outlive the erasure. */
        struct stat st;
        const char *env = getenv("KIROKU_BACKUPS");
        if (env && *env)
            snprintf(t->backups_buf, sizeof t->backups_buf, "%s", env);
        else
            tools_ret_default_backups(data_dir, t->backups_buf, sizeof t->backups_buf);
        if (stat(t->backups_buf, &st) == 0)
            t->backups_dir = t->backups_buf;
    }
    if (t->backups_dir) {
        t->hooks.backup_erase = hook_backup_erase;
        t->hooks.backup_list = hook_backup_list;
    }
    const char *k = getenv(TOOLS_RET_KILL_ENV);
    if (test_hooks && k && *k) {
        for (int s = 0; s < RET_STEP__COUNT; s++)
            if (strcmp(k, ret_step_name((enum ret_step)s)) == 0)
                t->kill_after = s;
        if (t->kill_after < 0) {
            fprintf(stderr, "kiroku: " TOOLS_RET_KILL_ENV "=%s names no step of an erasure\n", k);
            return false;
        }
        t->hooks.after_step = hook_after;
    }
    return true;
}

kr_err tools_backup_daily(struct tools_ret *t, struct kr_domain *d, char reason[256])
{
    struct backup_options o = {
        .data_dir = t->data_dir,
        .backups_dir = t->backups_dir,
        .j = d->j,
        .ks = d->ks,
        .clock = d->clock,
    };
    struct backup_result r;
    memset(&r, 0, sizeof r);
    reason[0] = '\0';
    kr_err err = t->backups_dir ? backup_run(&o, &r) : KR_EINVAL;
    if (err)
        snprintf(reason, 256, "%s",
                 r.reason[0]      ? r.reason
                 : t->backups_dir ? kr_strerror(err)
                                  : "no backups directory");
    kr_err rerr = ret_backup_recorded(d, err == KR_OK, r.generation, r.last_seq, r.bytes, reason);
    return err ? err : rerr;
}
