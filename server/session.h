/*
 * session.h - conversations in memory: the state machine between a chat connection, the
 * store and the dialogue flow.
 *
 * The session manager owns every session_t.  A session is attached to at most one
 * connection at a time; it outlives its connection (a customer may resume) and is evicted
 * from memory at a safe point (the manager's sweep) when detached, idle and with no write in
 * flight.  Events (messages and status changes) get their seq here, are stored through the
 * store, and are delivered to the attached connection only after they are durable.
 */
#ifndef REDRESS_SESSION_H
#define REDRESS_SESSION_H

#include "config.h"
#include "proto.h"
#include "store.h"

typedef struct session session_t;
typedef struct session_mgr session_mgr_t;
typedef struct ws_conn ws_conn_t;

/* Creates the manager.  Returns NULL when out of memory.  The store must outlive it. */
session_mgr_t *session_mgr_new(const config_t *cfg, store_t *store);
/* Gives the manager the dialogue engine (borrowed; NULL: fixed replies).  Set before serving;
 * setting NULL frees every flow run, so that the engine can then be destroyed. */
struct flow_engine;
void session_mgr_set_flow(session_mgr_t *m, struct flow_engine *flow);
/* Gives the manager the complaint records (borrowed; NULL: the flow's records are only
 * logged as events). */
struct complaint_mgr;
void session_mgr_set_complaints(session_mgr_t *m, struct complaint_mgr *cm);
/* Gives the manager the agent queue (borrowed; NULL: escalations only mark the flow). */
struct agent_mgr;
void session_mgr_set_agent(session_mgr_t *m, struct agent_mgr *am);
/* The flows' clock: wall time shifted by flow.clock_start, in whole milliseconds (seconds since
 * the epoch). */
double session_mgr_now(const session_mgr_t *m);
/* The session of conversation id, from memory or loaded from the store (the flow resumes
 * silently).  Returns NULL when there is no such conversation or on error (logged). */
session_t *session_mgr_load(session_mgr_t *m, long long id);
/* Stops starting new turns (shutdown begins); in-flight writes still complete. */
void session_mgr_stop(session_mgr_t *m);
/* Frees every session.  Call after the store is closed. */
void session_mgr_free(session_mgr_t *m);
/* Fires due flow timers, parks idle runs, frees detached sessions; called periodically by the
 * server.  Returns 1 when it stopped at its time slice with more due (call again soon), else 0. */
int session_mgr_sweep(session_mgr_t *m);

/* hello: starts a new conversation for c, or resumes one.  Errors are sent to c. */
void session_hello(session_mgr_t *m, ws_conn_t *c, const proto_in_t *in);
/* A customer message on the session attached to c. */
void session_message(session_t *s, ws_conn_t *c, const proto_in_t *in);
/* c has written everything it had queued (the next page of a replay may follow). */
void session_drained(session_t *s, ws_conn_t *c);
/* The connection is going away; s forgets it. */
void session_detach(session_t *s, ws_conn_t *c);

/* Bot output (used by the dialogue flow).  options may be NULL.  Returns 0 or -1. */
int session_say(session_t *s, const char *sender, const char *text, const char *const *options,
                int n_options);
/* A status event; detail_json is an object's JSON text or NULL.  Returns 0 or -1. */
int session_status(session_t *s, const char *state, const char *detail_json);

/* ---- hand-off (agent.c) ---- */

long long session_id(const session_t *s);
const char *session_name(const session_t *s); /* "c-000000000012" */
const char *session_channel(const session_t *s);
const char *session_token(const session_t *s); /* the resume token (32 hex digits) */
const char *session_customer_id(const session_t *s);
const char *session_customer_name(const session_t *s);
/* open = 1: the chat is with the agents: customer messages go to agent_event() instead of the
 * flow, and the session stays in memory.  open = 0 ends that. */
void session_set_handoff(session_t *s, int open);
/* Hands the conversation to the agents from outside the flow (a missed deadline) or for it:
 * status escalated {reason, priority}, an internal escalation event with summary_json, then the
 * agent queue.  Returns 0 or -1. */
int session_escalate(session_t *s, const char *reason, int priority, const char *summary_json);
/* A message from the agent to the customer; *seq gets its seq.  Returns 0 or -1. */
int session_agent_say(session_t *s, const char *text, long long *seq);
/* The agent gave the chat back: status bot_resumed, then the flow goes on (how: "resolved"
 * after a resolution, "handback" otherwise).  Returns 0 or -1. */
int session_handback(session_t *s, const char *how);

#endif
