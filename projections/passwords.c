/*
 * passwords.c: the rules a new password must meet (accounts.h).
 *
 * The common-password list is projections/common_passwords.txt, built from
 * Debian john-data's /usr/share/john/password.lst (Openwall, public domain):
 * entries of 8 bytes or more (shorter ones fail the length rule anyway),
 * printable ASCII, lower-cased, sorted bytewise, unique, one per line. The
 * build embeds it (CMakeLists.txt); a lookup is a binary search over the
 * lines, indexed once on first use.
 *
 * To rebuild the list:
 *   grep -v '^#!comment' /usr/share/john/password.lst | LC_ALL=C awk 'length($0)>=8' |
 *     LC_ALL=C grep -v '[^ -~]' | tr 'A-Z' 'a-z' | LC_ALL=C sort -u
 */
#include "accounts.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Lines of the embedded list at most (it has about 600). */
#define CPW_LINES_MAX 8192u

static uint32_t cpw_start[CPW_LINES_MAX]; /* offset of each line */
static uint16_t cpw_len[CPW_LINES_MAX];
static uint32_t cpw_n;
static pthread_once_t cpw_once = PTHREAD_ONCE_INIT;

static void cpw_index(void)
{
    size_t i = 0, n = kr_common_passwords_len;
    while (i < n && cpw_n < CPW_LINES_MAX) {
        size_t s = i;
        while (i < n && kr_common_passwords_txt[i] != '\n')
            i++;
        if (i > s && i - s <= UINT16_MAX) {
            cpw_start[cpw_n] = (uint32_t)s;
            cpw_len[cpw_n] = (uint16_t)(i - s);
            cpw_n++;
        }
        i++;
    }
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Compares the lower-cased pw with line i bytewise (the list's sort order). */
static int cpw_cmp(const uint8_t *pw, size_t len, uint32_t i)
{
    const uint8_t *l = kr_common_passwords_txt + cpw_start[i];
    size_t ll = cpw_len[i], n = len < ll ? len : ll;
    for (size_t k = 0; k < n; k++) {
        int a = lower(pw[k]), b = l[k];
        if (a != b)
            return a < b ? -1 : 1;
    }
    return len < ll ? -1 : len > ll ? 1 : 0;
}

bool kr_password_is_common(const void *pw, size_t len)
{
    pthread_once(&cpw_once, cpw_index);
    uint32_t lo = 0, hi = cpw_n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = cpw_cmp(pw, len, mid);
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

kr_err kr_password_check(const void *pw, size_t len, const void *email, size_t email_len,
                         const char **why)
{
    const char *w = NULL;
    if (len < kr_fields[KR_FLD_PASSWORD].min)
        w = "too short";
    else if (len > kr_fields[KR_FLD_PASSWORD].max)
        w = "too long";
    else if (kr_password_is_common(pw, len))
        w = "too common";
    else if (email && email_len == len) {
        const uint8_t *a = pw, *b = email;
        size_t k = 0;
        while (k < len && lower(a[k]) == lower(b[k]))
            k++;
        if (k == len)
            w = "must not be the e-mail address";
    }
    if (why)
        *why = w;
    return w ? KR_EINVAL : KR_OK;
}
