/*
 * http.c: the operators' HTTP endpoint over libmicrohttpd (see http.h).
 *
 * Design notes. libmicrohttpd runs one internal polling thread (poll, so no
 * descriptor limit of select) and calls answer() on it for each request; the
 * pages are small and built in a buffer per request, copied into the
 * response, then wiped and freed. It enforces the connection caps and the
 * timeout itself; this file only refuses what it does not serve.
 */
#include "http.h"

#include "kr_limits.h"
#include "wbuf.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct api_http {
    struct MHD_Daemon *daemon;
    struct api_metrics *m;
    char url[API_HTTP_URL_MAX];
};

kr_err api_http_parse_url(const char *url, struct sockaddr_storage *sa, size_t *salen)
{
    static const char scheme[] = "http://";
    memset(sa, 0, sizeof *sa);
    if (!url || strncmp(url, scheme, strlen(scheme)) != 0 || strlen(url) >= API_HTTP_URL_MAX)
        return KR_EINVAL;
    const char *host = url + strlen(scheme), *colon;
    char h[API_HTTP_URL_MAX];
    bool v6 = host[0] == '[';
    if (v6) {
        const char *end = strchr(host, ']');
        if (!end || end[1] != ':')
            return KR_EINVAL;
        memcpy(h, host + 1, (size_t)(end - host - 1));
        h[end - host - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strchr(host, ':');
        if (!colon)
            return KR_EINVAL;
        memcpy(h, host, (size_t)(colon - host));
        h[colon - host] = '\0';
    }
    const char *p = colon + 1;
    unsigned long port = 0;
    if (!*p || strlen(p) > 5)
        return KR_EINVAL;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return KR_EINVAL;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port > 65535)
        return KR_EINVAL;
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, h, &s6->sin6_addr) != 1)
            return KR_EINVAL;
        *salen = sizeof *s6;
        return KR_OK;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    if (strcmp(h, "localhost") == 0)
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, h, &s4->sin_addr) != 1)
        return KR_EINVAL;
    *salen = sizeof *s4;
    return KR_OK;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const void *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (ok == MHD_YES)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (ok == MHD_YES)
        ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return reply(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* One request, answered at the first call (after the headers, *state
 * NULL): nothing served takes a body, so any body is dropped unread. */
static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    (void)version;
    (void)upload;
    struct api_http *h = cls;
    bool metrics = strcmp(url, "/metrics") == 0, health = strcmp(url, "/healthz") == 0;
    if (*state) {
        /* The reply was queued at the first call; a body is dropped unread. */
        *upload_size = 0;
        return MHD_YES;
    }
    *state = h;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return metrics || health ? reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n")
                                 : reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
    if (!metrics && !health)
        return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: /metrics or /healthz\n");
    struct kr_wbuf b;
    kr_wbuf_init(&b, KR_METRICS_PAGE_MAX);
    bool healthy = false;
    kr_err err = metrics ? api_metrics_render(h->m, &b) : api_metrics_health(h->m, &b, &healthy);
    enum MHD_Result rc;
    if (err) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: %s\n", metrics ? "metrics" : "health", kr_strerror(err));
        rc = reply_text(c, health ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_INTERNAL_SERVER_ERROR,
                        msg);
    } else if (metrics) {
        rc = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.data, b.size);
    } else {
        rc = reply(c, healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                   "text/plain; charset=utf-8", b.data ? b.data : "", b.size);
    }
    kr_wbuf_free(&b);
    return rc;
}

kr_err api_http_start(const char *url, struct api_metrics *m, struct api_http **out,
                      const char **why)
{
    const char *scratch;
    if (!why)
        why = &scratch;
    *out = NULL;
    struct sockaddr_storage sa;
    size_t salen = 0;
    if (api_http_parse_url(url, &sa, &salen)) {
        *why = "--http is http://HOST:PORT (an IP address or localhost)";
        return KR_EINVAL;
    }
    struct api_http *h = calloc(1, sizeof *h);
    if (!h)
        return KR_ENOMEM;
    h->m = m;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, answer, h, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
                                 (unsigned)KR_HTTP_CONNS_MAX, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                 (unsigned)KR_HTTP_CONNS_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)KR_HTTP_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                 (size_t)KR_HTTP_MEMORY_LIMIT, MHD_OPTION_END);
    if (!h->daemon) {
        free(h);
        *why = "the HTTP endpoint did not start (is the address in use?)";
        return KR_EBUSY;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : 0;
    char host[INET6_ADDRSTRLEN] = "";
    if (sa.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, host, sizeof host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, host, sizeof host);
    snprintf(h->url, sizeof h->url, sa.ss_family == AF_INET6 ? "http://[%s]:%u" : "http://%s:%u",
             host, port);
    *out = h;
    return KR_OK;
}

const char *api_http_url(const struct api_http *h)
{
    return h->url;
}

void api_http_stop(struct api_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
