/*
 * http.c - HTTP endpoints on the chat port.
 *
 * A request's state (http_req) is lws's per-session storage on the "http" protocol: the
 * method, path and query, the request body (POST/PUT, capped), and the response being written.
 * A handler answers through an http_reply_t handle, at once or later; the handle is heap
 * memory that outlives the connection, so a late answer to a client that left is dropped.
 *
 *   LWS_CALLBACK_HTTP                read method, path, query; GET/DELETE dispatch now
 *   LWS_CALLBACK_HTTP_BODY           append to the body (413 past the cap)
 *   LWS_CALLBACK_HTTP_BODY_COMPLETION  dispatch
 *   dispatch() -> handler -> ... -> http_reply(): response stored, writable requested
 *   LWS_CALLBACK_HTTP_WRITEABLE      headers, then the body in chunks; transaction completed
 *   LWS_CALLBACK_CLOSED_HTTP / HTTP_DROP_PROTOCOL   handle orphaned, buffers freed
 *
 * This protocol also refuses every WebSocket upgrade that did not name a subprotocol
 * (FILTER_PROTOCOL_CONNECTION), so a chat client must ask for redress.chat.v1.
 */
#include "http.h"

#include "api.h"
#include "auth.h"
#include "log.h"
#include "flow.h"
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

typedef struct http_req {
    char method[8];
    char path[512];
    char query[1024];
    char *body;
    size_t body_len;
    int body_too_big;
    int dispatched;      /* the handler has been called for this request */
    http_reply_t *reply; /* while a handler owes an answer */
    char peer[64];       /* the client's address */
    char *cookie;        /* the Cookie header, or NULL */
    /* the response */ int status;
    char ctype[64];
    char *headers; /* extra "Name: value\r\n" lines, or NULL */
    char *out;
    size_t out_len, out_sent;
    int head_pending, body_pending;
} http_req;

struct http_reply {
    struct lws *wsi; /* NULL once the client is gone */
    http_req *req;
};

/* ---- replies ---- */

void http_reply(http_reply_t *h, int status, const char *content_type, char *body, size_t len)
{
    http_reply_with_headers(h, status, content_type, NULL, body, len);
}

void http_reply_with_headers(http_reply_t *h, int status, const char *content_type,
                             const char *extra_headers, char *body, size_t len)
{
    http_req *r = h->req;
    if (!h->wsi) {
        free(body);
        free(h);
        return;
    }
    free(r->headers);
    r->headers = extra_headers ? strdup(extra_headers) : NULL;
    r->reply = NULL;
    if (!body) {
        static const char oops[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        body = strdup(oops);
        len = body ? strlen(body) : 0;
        status = 500;
        content_type = "application/json";
    }
    r->status = status;
    snprintf(r->ctype, sizeof(r->ctype), "%s", content_type);
    free(r->out);
    r->out = body;
    r->out_len = len;
    r->out_sent = 0;
    r->head_pending = 1;
    r->body_pending = 1;
    metrics.http_requests++;
    lws_callback_on_writable(h->wsi);
    free(h);
}

void http_reply_json(http_reply_t *h, int status, char *json)
{
    http_reply(h, status, "application/json", json, json ? strlen(json) : 0);
}

void http_reply_error(http_reply_t *h, int status, const char *code, const char *message)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    char *s = NULL;
    if (e && cJSON_AddStringToObject(e, "code", code) &&
        cJSON_AddStringToObject(e, "message", message))
        s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    http_reply_json(h, status, s);
}

/* ---- built-in routes ---- */

static void get_healthz(server_t *srv, const http_call_t *call, http_reply_t *h)
{
    (void)call;
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    if (o && cJSON_AddStringToObject(o, "status", srv->stopping ? "stopping" : "ok") &&
        cJSON_AddStringToObject(o, "version", REDRESS_VERSION) &&
        cJSON_AddNumberToObject(o, "uptime_s",
                                (double)((util_now_ms() - srv->started_ms) / 1000u)) &&
        cJSON_AddNumberToObject(o, "connections", srv->nconns))
        s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    http_reply_json(h, 200, s);
}

static void get_metrics(server_t *srv, const http_call_t *call, http_reply_t *h)
{
    (void)call;
    size_t len = 0;
    metrics.flow_vm_bytes = flow_engine_memory(srv->flow);
    flow_engine_gc_counts(srv->flow, &metrics.flow_gc_slices, &metrics.flow_gc_cycles);
    metrics.flow_gc_quiet_cycles = flow_engine_gc_quiet_cycles(srv->flow);
    char *text = metrics_render(srv->store, (util_now_ms() - srv->started_ms) / 1000u, &len);
    http_reply(h, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

int http_cookie(struct lws *wsi, char *out, size_t outlen)
{
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_COOKIE);

    out[0] = '\0';
    if (n <= 0)
        return 0;
    if (n > AUTH_COOKIE_HEADER_MAX || (size_t)n >= outlen ||
        lws_hdr_copy(wsi, out, n + 1, WSI_TOKEN_HTTP_COOKIE) < 0)
        return -1;
    return 0;
}

/* The Cookie header into r->cookie.  Returns it, "" when there is none, NULL when it is over
 * AUTH_COOKIE_HEADER_MAX (or cannot be read). */
static const char *read_cookie(struct lws *wsi, http_req *r)
{
    free(r->cookie);
    r->cookie = NULL;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_COOKIE) <= 0)
        return "";
    if ((r->cookie = malloc(AUTH_COOKIE_HEADER_MAX + 1)) &&
        http_cookie(wsi, r->cookie, AUTH_COOKIE_HEADER_MAX + 1) != 0) {
        free(r->cookie);
        r->cookie = NULL;
    }
    return r->cookie;
}

static void dispatch(struct lws *wsi, http_req *r)
{
    server_t *srv = server_of(wsi);
    http_reply_t *h = malloc(sizeof(*h));
    http_call_t call;

    if (!h) {
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    h->wsi = wsi;
    h->req = r;
    r->reply = h;
    r->dispatched = 1;
    lws_get_peer_simple(wsi, r->peer, sizeof(r->peer));
    call.method = r->method;
    call.path = r->path;
    call.query = r->query;
    call.body = r->body ? r->body : "";
    call.body_len = r->body_len;
    call.loopback = strncmp(r->peer, "127.", 4) == 0 || strcmp(r->peer, "::1") == 0 ||
                    strncmp(r->peer, "::ffff:127.", 11) == 0;
    call.peer = r->peer;
    call.cookie = read_cookie(wsi, r);

    if (r->body_too_big) {
        http_reply_error(h, 413, "too_large", "request body over 1 MiB");
    } else if (strcmp(r->path, "/healthz") == 0) {
        if (strcmp(r->method, "GET") == 0)
            get_healthz(srv, &call, h);
        else
            http_reply_error(h, 405, "method_not_allowed", "use GET");
    } else if (strcmp(r->path, "/metrics") == 0) {
        if (strcmp(r->method, "GET") == 0)
            get_metrics(srv, &call, h);
        else
            http_reply_error(h, 405, "method_not_allowed", "use GET");
    } else if (strncmp(r->path, "/api/", 5) == 0) {
        api_handle(srv, &call, h);
    } else {
        http_reply_error(h, 404, "not_found", "no such endpoint");
    }
}

/* The query string "a=1&b=2" into out.  lws keeps each argument as a fragment of
 * WSI_TOKEN_HTTP_URI_ARGS and lws_hdr_copy() would join them with ',', so they are copied one
 * by one and joined with '&'.  Returns 0, or -1 when it does not fit. */
static int copy_query(struct lws *wsi, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) > 0; i++) {
        char frag[1024];
        int n = lws_hdr_copy_fragment(wsi, frag, (int)sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            return used ? 0 : -1; /* no more fragments (or one too long for the buffer) */
        if (used + (size_t)n + 2 > outlen)
            return -1;
        if (used)
            out[used++] = '&';
        memcpy(out + used, frag, (size_t)n);
        used += (size_t)n;
        out[used] = '\0';
    }
    return 0;
}

/* ---- lws plumbing ---- */

static int read_request(struct lws *wsi, http_req *r)
{
    static const struct {
        enum lws_token_indexes tok;
        const char *name;
    } methods[] = {
        {WSI_TOKEN_GET_URI, "GET"},
        {WSI_TOKEN_POST_URI, "POST"},
        {WSI_TOKEN_PUT_URI, "PUT"},
        {WSI_TOKEN_DELETE_URI, "DELETE"},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (lws_hdr_total_length(wsi, methods[i].tok) > 0) {
            if (lws_hdr_copy(wsi, r->path, (int)sizeof(r->path), methods[i].tok) < 0)
                return -1;
            snprintf(r->method, sizeof(r->method), "%s", methods[i].name);
            return copy_query(wsi, r->query, sizeof(r->query));
        }
    return -1;
}

/* Adds "Name: value\r\n" lines; lws wants the name lowercase with its colon. */
static int add_extra_headers(struct lws *wsi, const char *lines, unsigned char **p,
                             unsigned char *end)
{
    while (lines && *lines) {
        const char *eol = strstr(lines, "\r\n"), *colon = strchr(lines, ':');
        size_t linelen = eol ? (size_t)(eol - lines) : strlen(lines);
        char name[64];
        if (!colon || (size_t)(colon - lines) >= linelen ||
            (size_t)(colon - lines) + 2 > sizeof(name))
            return -1;
        size_t nlen = (size_t)(colon - lines);
        for (size_t i = 0; i < nlen; i++)
            name[i] = (char)((lines[i] >= 'A' && lines[i] <= 'Z') ? lines[i] + 32 : lines[i]);
        name[nlen] = ':';
        name[nlen + 1] = '\0';
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)name, (const unsigned char *)v,
                                        (int)(linelen - (size_t)(v - lines)), p, end))
            return -1;
        lines = eol ? eol + 2 : lines + linelen;
    }
    return 0;
}

/* 1 when the request announces a body (lws then calls HTTP_BODY / HTTP_BODY_COMPLETION). */
static int has_body(struct lws *wsi)
{
    char len[32];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        return 1;
    if (lws_hdr_copy(wsi, len, sizeof(len), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return 0;
    return strtoull(len, NULL, 10) > 0;
}

static int write_head(struct lws *wsi, http_req *r)
{
    unsigned char buf[LWS_PRE + 4096], *start = buf + LWS_PRE, *p = start,
                                       *end = buf + sizeof(buf) - 1;
    r->head_pending = 0;
    if (lws_add_http_common_headers(wsi, (unsigned)r->status, r->ctype, (lws_filepos_t)r->out_len,
                                    &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        add_extra_headers(wsi, r->headers, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
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
    r->body_pending = 0;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void clear(http_req *r)
{
    if (r->reply) {
        r->reply->wsi = NULL; /* the handler's late answer will be dropped */
        r->reply = NULL;
    }
    free(r->body);
    free(r->out);
    free(r->headers);
    free(r->cookie);
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
        if (read_request(wsi, r) != 0) {
            lws_return_http_status(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, NULL);
            return -1;
        }
        if ((strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0) && has_body(wsi))
            return 0; /* wait for the body */
        dispatch(wsi, r);
        return 0;
    case LWS_CALLBACK_HTTP_BODY:
        if (!r || r->body_too_big || r->dispatched || len == 0)
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
        if (r && !r->dispatched)
            dispatch(wsi, r);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!r)
            return 0;
        if (r->head_pending)
            return write_head(wsi, r);
        if (r->body_pending)
            return write_body(wsi, r);
        return 0;
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
