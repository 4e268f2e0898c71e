/*
 * ws.h - the customer chat WebSocket (/chat, subprotocol redress.chat.v1).
 *
 * A ws_conn_t is created when a chat socket is established and freed when it closes
 * (LWS_CALLBACK_CLOSED); before it is freed its session is told (session_detach).  Frames are
 * queued and written at the end of the loop pass (ws_flush.h) or on SERVER_WRITEABLE, never
 * inside an lws callback such as RECEIVE.
 */
#ifndef REDRESS_WS_H
#define REDRESS_WS_H

#include <libwebsockets.h>

typedef struct ws_conn ws_conn_t;
struct server;

/* The lws protocol entries for the chat protocol (/chat) and the agent protocol (/agent). */
extern const struct lws_protocols ws_chat_protocol;
extern const struct lws_protocols ws_agent_protocol;

/* Queues a text frame; takes ownership of json (malloc'ed).  Returns 0, or -1 when the
 * connection is closing or its queue is over its cap (the connection is then closed). */
int ws_conn_send(ws_conn_t *c, char *json);

/* Closes the connection with a close code once queued frames are written. */
void ws_conn_close(ws_conn_t *c, int code, const char *reason);

/* Sends an error frame (and counts it).  id may be NULL. */
void ws_conn_error(ws_conn_t *c, int code, const char *message, const char *id);

/* Binds the connection to a session (NULL unbinds); a bound connection has completed hello. */
struct session;
void ws_conn_bind(ws_conn_t *c, struct session *s);

/* Periodic housekeeping for all chat connections (hello and idle timeouts). */
void ws_sweep(struct server *srv);

/* 1 when a WebSocket upgrade from origin (Host header host) is allowed by the comma-separated
 * list `allowed` (see web.allowed_origins); no Origin at all is allowed. */
int ws_origin_allowed(const char *allowed, const char *origin, const char *host);

/* Starts writing queued frames at the end of each loop pass (srv->flush; ws_flush_stop(&
 * srv->flush) before lws_context_destroy).  Before this, frames wait for WRITEABLE. */
void ws_flush_begin(struct server *srv);

/* Closes every chat connection with code (shutdown). */
void ws_close_all(struct server *srv, int code, const char *reason);

#endif
