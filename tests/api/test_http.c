/*
 * test_http.c: HTTP reads of a kiroku process for tests (test_http.h).
 */
#include "test_http.h"

#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t body_add(char *p, size_t size, size_t n, void *arg)
{
    struct kr_wbuf *b = arg;
    return kr_wbuf_add(b, p, size * n) == KR_OK ? size * n : 0;
}

long kr_test_http_get(const char *url, struct kr_wbuf *b)
{
    kr_wbuf_reset(b);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_add);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)KR_TEST_WAIT_MS);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    assert_int_equal(kr_wbuf_add(b, "", 1), KR_OK);
    return status;
}

uint64_t kr_test_metric(const char *base, const char *name)
{
    char url[512], want[160];
    snprintf(url, sizeof url, "%s/metrics", base);
    snprintf(want, sizeof want, "\n%s ", name);
    struct kr_wbuf b;
    kr_wbuf_init(&b, 1u << 20);
    assert_int_equal(kr_test_http_get(url, &b), 200);
    const char *p = strstr((const char *)b.data, want);
    if (!p)
        fail_msg("no sample %s on %s", name, url);
    uint64_t v = strtoull(p + strlen(want), NULL, 10);
    kr_wbuf_free(&b);
    return v;
}

void kr_test_http_of(const char *out, const char *errlog, char *url, size_t cap)
{
    char *text = kr_test_slurp(out, NULL), *line = text, *nl;
    assert_non_null(text);
    while ((nl = strchr(line, '\n')) && nl[1]) /* the newest whole line */
        line = nl + 1;
    json_error_t je;
    json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, &je);
    const char *http = j ? json_string_value(json_object_get(j, "http")) : NULL;
    if (!http) {
        kr_test_print_log(errlog);
        fail_msg("%s names no http URL: %s", out, line);
    }
    snprintf(url, cap, "%s", http ? http : ""); /* fail_msg does not return */
    json_decref(j);
    free(text);
}
