/*
 * http.h: the operators' HTTP endpoint (`serve --http URL`), served with
 * libmicrohttpd: GET /metrics (Prometheus text format) and GET /healthz
 * (200 "ok", or 503 with one reason a line), from api/metrics.h.
 *
 * It is off unless asked for. URL is http://HOST:PORT with HOST an IPv4
 * address, [an IPv6 address] or localhost (127.0.0.1); port 0 takes a free
 * one (api_http_url says which). Loopback is what operators should give: the
 * pages carry no secret and no tenant's data, but they say how busy the
 * service is; any other address is served as given.
 *
 * Bounds, enforced by libmicrohttpd: KR_HTTP_CONNS_MAX connections at once
 * (it stops accepting: more wait in the listen queue), KR_HTTP_CONNS_PER_IP
 * from one address (more are closed as they arrive), KR_HTTP_TIMEOUT_S
 * without traffic closes a connection, KR_HTTP_MEMORY_LIMIT for a request's
 * headers. Only
 * GET and HEAD of the two paths are served; anything else is 404 or 405,
 * answered before any body is read (a body is dropped unread).
 *
 * Threads: libmicrohttpd's own (one polling thread); the pages are built on
 * it. Stop before freeing the metrics and the domain.
 */
#ifndef KR_API_HTTP_H
#define KR_API_HTTP_H

#include "kr_error.h"
#include "metrics.h"

#include <stddef.h>

#define API_HTTP_URL_MAX 128

struct api_http;

/* Parses and serves url over m (which must outlive the endpoint). On
 * failure *why says what failed. Errors: KR_EINVAL (not such a URL),
 * KR_EBUSY (the address is in use, or libmicrohttpd would not start),
 * KR_ENOMEM. */
KR_MUST_CHECK kr_err api_http_start(const char *url, struct api_metrics *m, struct api_http **out,
                                    const char **why);

/* The URL it serves, with the port it got: "http://127.0.0.1:7451". Valid
 * until api_http_stop. */
const char *api_http_url(const struct api_http *h);

/* Stops serving (connections are closed) and frees it. Accepts NULL. */
void api_http_stop(struct api_http *h);

/* Parses url into a socket address (for tests): KR_EINVAL if it is not
 * http://HOST:PORT as above. */
struct sockaddr_storage;
KR_MUST_CHECK kr_err api_http_parse_url(const char *url, struct sockaddr_storage *sa,
                                        size_t *salen);

#endif
