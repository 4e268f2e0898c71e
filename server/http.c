/*
 * http.c - HTTP endpoints on the chat port.
 *
 * A request's state (http_req) is lws's per-session storage on the "http" protocol: the
 * method and path, the request body (POST/PUT, capped), and the response being written.
 *
 *   LWS_CALLBACK_HTTP              read method + path; GET/DELETE dispatch now, others wait
 *   LWS_CALLBACK_HTTP_BODY         append to body (413 past the cap)
 *   LWS_CALLBACK_HTTP_BODY_COMPLETION  dispatch
 *   dispatch() -> route handler -> respond(): headers written, body queued
 *   LWS_CALLBACK_HTTP_WRITEABLE    body written in chunks; transaction completed at the end
 *   LWS_CALLBACK_HTTP_DROP_PROTOCOL / CLOSED_HTTP  buffers freed
 *
 * This protocol also refuses every WebSocket upgrade that did not name a subprotocol
 * (FILTER_PROTOCOL_CONNECTION), so a chat client must ask for redress.chat.v1.
 */
#include "http.h"

#include "log.h"
#include "metrics.h"
#include "server.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX (1u << 20)
#define CHUNK 4096

const char *const http_mountpoints[] = {"/healthz", "/metrics", "/api", NULL};

typedef enum { M_GET, M_POST, M_PUT, M_DELETE, M_OTHER } method_t;

typedef struct http_req {
    method_t method;
    char path[512];
    char *body;
    size_t body_len;
    int body_too_big;
    char *out;
    size_t out_len, out_sent;
    int responded;
} http_req;

typedef int (*route_fn)(struct lws *wsi, http_req *r, server_t *srv);

static int respond(struct lws *wsi, http_req *r, int status, const char *ctype, char *body,
                   size_t len)
{
    unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
                                       *end = buf + sizeof(buf) - 1;
    r->out = body;
    r->out_len = len;
    r->out_sent = 0;
    r->responded = 1;
    metrics.http_requests++;
    if (lws_add_http_common_headers(wsi, (unsigned)status, ctype, (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return 1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int respond_json(struct lws *wsi, http_req *r, int status, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s)
        return 1;
    return respond(wsi, r, status, "application/json", s, strlen(s));
}

static int respond_error(struct lws *wsi, http_req *r, int status, const char *code,
                         const char *message)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    if (!e)
        goto fail;
    if (!cJSON_AddStringToObject(e, "code", code) ||
        !cJSON_AddStringToObject(e, "message", message))
        goto fail;
    return respond_json(wsi, r, status, o);
fail:
    cJSON_Delete(o);
    return 1;
}

/* ---- routes ---- */

static int get_healthz(struct lws *wsi, http_req *r, server_t *srv)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "status", srv->stopping ? "stopping" : "ok") ||
        !cJSON_AddStringToObject(o, "version", REDRESS_VERSION) ||
        !cJSON_AddNumberToObject(o, "uptime_s",
                                 (double)((util_now_ms() - srv->started_ms) / 1000u)) ||
        !cJSON_AddNumberToObject(o, "connections", srv->nconns)) {
        cJSON_Delete(o);
        return 1;
    }
    return respond_json(wsi, r, 200, o);
}

static int get_metrics(struct lws *wsi, http_req *r, server_t *srv)
{
    size_t len = 0;
    char *text = metrics_render(srv->store, (util_now_ms() - srv->started_ms) / 1000u, &len);
    if (!text)
        return 1;
    return respond(wsi, r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static const struct {
    method_t method;
    const char *path;
    route_fn fn;
} routes[] = {
    {M_GET, "/healthz", get_healthz},
    {M_GET, "/metrics", get_metrics},
};

static int dispatch(struct lws *wsi, http_req *r)
{
    server_t *srv = server_of(wsi);
    int path_known = 0;

    if (r->body_too_big)
        return respond_error(wsi, r, 413, "too_large", "request body over 1 MiB");
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(r->path, routes[i].path) != 0)
            continue;
        path_known = 1;
        if (routes[i].method == r->method)
            return routes[i].fn(wsi, r, srv);
    }
    if (path_known)
        return respond_error(wsi, r, 405, "method_not_allowed", "method not allowed here");
    return respond_error(wsi, r, 404, "not_found", "no such endpoint");
}

static method_t read_method(struct lws *wsi, char *path, size_t pathlen)
{
    static const struct {
        enum lws_token_indexes tok;
        method_t m;
    } methods[] = {
        {WSI_TOKEN_GET_URI, M_GET},
        {WSI_TOKEN_POST_URI, M_POST},
        {WSI_TOKEN_PUT_URI, M_PUT},
        {WSI_TOKEN_DELETE_URI, M_DELETE},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (lws_hdr_total_length(wsi, methods[i].tok) > 0) {
            if (lws_hdr_copy(wsi, path, (int)pathlen, methods[i].tok) < 0)
                path[0] = '\0';
            return methods[i].m;
        }
    path[0] = '\0';
    return M_OTHER;
}

static int write_body(struct lws *wsi, http_req *r)
{
    unsigned char buf[LWS_PRE + CHUNK];
    size_t n = r->out_len - r->out_sent;
    if (n > CHUNK)
        n = CHUNK;
    memcpy(buf + LWS_PRE, r->out + r->out_sent, n);
    r->out_sent += n;
    int final = r->out_sent == r->out_len;
    if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    free(r->out);
    r->out = NULL;
    if (lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

static void clear(http_req *r)
{
    free(r->body);
    free(r->out);
    memset(r, 0, sizeof(*r));
}

static int callback_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    http_req *r = user;

    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return -1; /* a WebSocket must name its subprotocol */
    case LWS_CALLBACK_HTTP:
        if (!r)
            return -1;
        clear(r);
        r->method = read_method(wsi, r->path, sizeof(r->path));
        if (r->method == M_POST || r->method == M_PUT)
            return 0; /* wait for the body */
        if (r->method == M_OTHER)
            return respond_error(wsi, r, 405, "method_not_allowed", "method not allowed") ? -1 : 0;
        return dispatch(wsi, r) ? -1 : 0;
    case LWS_CALLBACK_HTTP_BODY:
        if (r->body_too_big)
            return 0;
        if (r->body_len + len > BODY_MAX) {
            r->body_too_big = 1;
            return 0;
        }
        {
            char *p = realloc(r->body, r->body_len + len + 1);
            if (!p)
                return -1;
            r->body = p;
            memcpy(r->body + r->body_len, in, len);
            r->body_len += len;
            r->body[r->body_len] = '\0';
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return dispatch(wsi, r) ? -1 : 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!r || !r->out)
            return 0;
        return write_body(wsi, r);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (r)
            clear(r);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

const struct lws_protocols http_protocol = {
    "http", callback_http, sizeof(http_req), 0, 0, NULL, 0,
};
