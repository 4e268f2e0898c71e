/*
 * agent.h - escalation queue and hand-off to human agents (docs/protocol.md, agent protocol).
 *
 * The agent manager owns every open hand-off (one per escalated conversation) and every agent
 * socket's presence.  It is driven from four sides, all on the loop thread:
 *
 *   session.c   agent_escalate() when the flow escalates; agent_event() for every stored event
 *               of a conversation whose hand-off is open; agent_holds() when a conversation is
 *               loaded into memory
 *   ws.c        agent_ws_open() / agent_ws_frame() / agent_ws_closed() for /agent sockets
 *   net.c       agent_mgr_tick() on the server's tick; the auth logout hook
 *   the store   done callbacks of hand-off writes (agent_store.h)
 */
#ifndef REDRESS_AGENT_H
#define REDRESS_AGENT_H

#include <stddef.h>

#include "auth.h"
#include "store.h"

typedef struct agent_mgr agent_mgr_t;
typedef struct agent_sock agent_sock_t;
struct server;
struct session;
struct ws_conn;

/* Creates the manager and loads the open hand-offs from the store.  Returns NULL (logged) on
 * failure.  srv->store, srv->sessions and srv->auth must exist and outlive it. */
agent_mgr_t *agent_mgr_new(struct server *srv);
/* Releases the reader statements (before store_close); requests needing reads then fail. */
void agent_mgr_close_store(agent_mgr_t *am);
/* Frees the manager.  Agent sockets must be closed already (after lws is destroyed). */
void agent_mgr_free(agent_mgr_t *am);
/* Periodic work: queue snapshots, customer queue positions, call-back on max wait, session
 * re-checks.  Called from the server tick. */
void agent_mgr_tick(agent_mgr_t *am);

/* ---- from session.c ---- */

/* The flow escalated conversation s.  summary_json: the flow's escalation summary.  Queues
 * the chat (or schedules a call-back) and tells the customer.  Returns 0 or -1 (nothing
 * changed). */
int agent_escalate(agent_mgr_t *am, struct session *s, const char *reason, int priority,
                   const char *summary_json);
/* Conversation s was loaded into memory: 1 (and s is pinned) when it has an open hand-off
 * (queued, callback, active), else 0.  am may be NULL. */
int agent_session_loaded(agent_mgr_t *am, struct session *s);
/* 1 while conversation has an open hand-off. */
int agent_has_handoff(agent_mgr_t *am, long long conversation);
/* A stored event of a conversation with an open hand-off (after commit). */
void agent_event(agent_mgr_t *am, struct session *s, const store_event_t *ev);

/* ---- from ws.c (agent sockets) ---- */

/* A socket was established for user.  Returns the socket's state (owned by the manager until
 * agent_ws_closed) or NULL (out of memory: the caller closes the socket). */
agent_sock_t *agent_ws_open(agent_mgr_t *am, struct ws_conn *c, const auth_user_t *user);
/* One complete text frame (NUL-terminated, len bytes) from the socket. */
void agent_ws_frame(agent_sock_t *a, const char *text, size_t len);
/* The socket closed; a is freed. */
void agent_ws_closed(agent_sock_t *a);

/* auth logout hook: closes every socket of that login session with 4401. */
void agent_logout(void *am, long long session_id);

#endif
