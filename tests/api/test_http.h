/*
 * test_http.h: what tests of api/ read over HTTP from a kiroku process they
 * started: its /metrics samples and its /healthz (libcurl), and the HTTP
 * URL a `serve --node` or `kiroku follow` printed on its JSON line.
 *
 * Every helper asserts (cmocka) what must hold for the test to go on; a
 * request waits at most KR_TEST_WAIT_MS and is never timed.
 */
#ifndef KR_TEST_HTTP_H
#define KR_TEST_HTTP_H

#include "wbuf.h"

#include <stddef.h>
#include <stdint.h>

/* GETs url: the HTTP status, the body in b (reset first, NUL-terminated;
 * b's bound caps it). */
long kr_test_http_get(const char *url, struct kr_wbuf *b);

/* The value of sample `name` (labels included, as /metrics prints it) on
 * the /metrics page of the HTTP endpoint `base` ("http://host:port"); a
 * page without it fails the test. */
uint64_t kr_test_metric(const char *base, const char *name);

/* The "http" member of the newest whole JSON line of file `out` (a
 * process's stdout) into url; fails the test, printing errlog, when the
 * line names none. */
void kr_test_http_of(const char *out, const char *errlog, char *url, size_t cap);

#endif
