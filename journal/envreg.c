/*
 * envreg.c: the process's list of open LMDB environments (see envreg.h).
 */
#include "envreg.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/stat.h>

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct kr_env_reg *reg_list;

kr_err kr_env_register(struct kr_env_reg *r, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return kr_err_from_errno(errno);
    if (!S_ISDIR(st.st_mode))
        return KR_ECORRUPT;
    kr_err err = KR_OK;
    pthread_mutex_lock(&reg_mu);
    for (struct kr_env_reg *o = reg_list; o; o = o->next)
        if (o->dev == st.st_dev && o->ino == st.st_ino)
            err = KR_EBUSY;
    if (err == KR_OK) {
        r->dev = st.st_dev;
        r->ino = st.st_ino;
        r->next = reg_list;
        reg_list = r;
        r->registered = true;
    }
    pthread_mutex_unlock(&reg_mu);
    return err;
}

void kr_env_unregister(struct kr_env_reg *r)
{
    if (!r->registered)
        return;
    pthread_mutex_lock(&reg_mu);
    for (struct kr_env_reg **p = &reg_list; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    r->registered = false;
    r->next = NULL;
}
