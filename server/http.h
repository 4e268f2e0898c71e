/*
 * http.h - plain HTTP on the chat port: health, metrics and JSON APIs.  Static files under
 * web.root are served by libwebsockets' file mount (net.c); the paths routed here are mounted
 * as callbacks on the "http" protocol.
 */
#ifndef REDRESS_HTTP_H
#define REDRESS_HTTP_H

#include <libwebsockets.h>

/* The lws protocol entry that answers HTTP (must be first in the protocol list). */
extern const struct lws_protocols http_protocol;

/* Mount points routed to http.c (NULL-terminated), for net.c to build its mounts. */
extern const char *const http_mountpoints[];

/* One request as the API handlers see it.  Strings are valid until the reply is sent. */
typedef struct http_call {
    const char *method; /* GET, POST, PUT, DELETE */
    const char *path;   /* decoded path, without the query */
    const char *query;  /* "a=1&b=2" or "" */
    const char *body;   /* NUL-terminated; "" when none */
    size_t body_len;
    int loopback;       /* the peer is 127.0.0.0/8 or ::1 */
    const char *peer;   /* the client's address, e.g. "203.0.113.7" */
    const char *cookie; /* the Cookie header: "" when none, NULL when over 4 KiB */
} http_call_t;

/*
 * The way back to the client.  Every handler answers exactly once through http_reply(), now or
 * later (after a store operation, say).  When the client goes away first, the handle stays
 * valid and the reply is dropped.
 */
typedef struct http_reply http_reply_t;

/* Sends status + body (malloc'ed, ownership taken; may be NULL for a 500) and frees h. */
void http_reply(http_reply_t *h, int status, const char *content_type, char *body, size_t len);
/* As http_reply, with extra response headers: "Name: value\r\n" lines (copied), e.g.
 * "Set-Cookie: a=b; HttpOnly\r\nRetry-After: 60\r\n". */
void http_reply_with_headers(http_reply_t *h, int status, const char *content_type,
                             const char *extra_headers, char *body, size_t len);
/* As http_reply with a JSON text body (NUL-terminated). */
void http_reply_json(http_reply_t *h, int status, char *json);
/* {"error":{"code":..,"message":..}} */
void http_reply_error(http_reply_t *h, int status, const char *code, const char *message);

/* Copies the request's Cookie header into out (outlen > AUTH_COOKIE_HEADER_MAX): "" when there
 * is none.  Returns 0, or -1 when it is longer than AUTH_COOKIE_HEADER_MAX or unreadable.  For
 * the HTTP handlers and the /agent upgrade alike. */
struct lws;
int http_cookie(struct lws *wsi, char *out, size_t outlen);

#endif
