/*
 * server.h - the running server: one libuv loop, one libwebsockets context on it, the store,
 * the sessions.  Created and destroyed by server_run() (net.c); everything here is used on
 * the loop thread only.
 */
#ifndef REDRESS_SERVER_H
#define REDRESS_SERVER_H

#include <libwebsockets.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "session.h"
#include "store.h"
#include "ws_flush.h"

typedef struct server {
    const config_t *cfg;
    uv_loop_t loop;
    struct lws_context *lws;
    store_t *store;
    session_mgr_t *sessions;
    struct flow_engine *flow;         /* the Lua dialogue engine (flow.h) */
    struct auth *auth;                /* staff accounts and logins (auth.h) */
    struct agent_mgr *agents;         /* escalation queue and hand-offs (agent.h) */
    struct complaint_mgr *complaints; /* complaint records and deadlines (complaint.h) */
    struct webhook *webhooks;         /* outgoing webhooks (webhook.h) */
    uv_signal_t sigint, sigterm;
    uv_timer_t tick;
    uv_timer_t sweep_more; /* the session sweep's next slice, when one was cut short */
    uv_prepare_t pass_end; /* before each poll: end the pass's kb snapshot, start gc_idle when
                              the flow VM owes collection */
    uv_idle_t gc_idle;     /* active while it does: collection slices when no I/O is ready */
    uint64_t started_ms;
    int stopping;
    uint64_t stop_deadline_ms; /* shutdown: give clients until then to close */
    struct ws_conn *conns;     /* every open chat connection (ws.c) */
    ws_flush flush;            /* connections to write at the end of the loop pass (ws.c) */
    int nconns;
} server_t;

/* Runs the server until SIGINT/SIGTERM.  Returns 0 after a clean shutdown, -1 when start-up
 * failed (the reason is logged). */
int server_run(const config_t *cfg);

/* The server that owns an lws connection. */
server_t *server_of(struct lws *wsi);

#endif
