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

#endif
