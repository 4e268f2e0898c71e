/*
 * metrics.h - process-wide counters for GET /metrics (Prometheus text format).
 *
 * Updated only on the loop thread, so plain integers suffice; the store's own counters are
 * read through store_get_stats() when the page is rendered.
 */
#ifndef REDRESS_METRICS_H
#define REDRESS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "histo.h"
#include "proto.h"

typedef struct metrics {
    int64_t connections;    /* open chat WebSockets (gauge) */
    int64_t sessions;       /* conversations held in memory (gauge) */
    int64_t flow_runs;      /* of those, with their Lua flow state in memory (gauge) */
    int64_t handoffs;       /* open hand-offs to human agents (gauge) */
    uint64_t flow_vm_bytes; /* the flow VM's size, set when the page is rendered (gauge) */
    uint64_t flow_gc_slices, flow_gc_cycles; /* idle-time collection (flow_gc.c), the same */
    uint64_t flow_gc_quiet_cycles;           /* of which quiet cycles (flow_gc.c), the same */
    uint64_t connections_total;
    uint64_t messages_in;  /* customer messages accepted */
    uint64_t messages_out; /* events delivered to clients */
    uint64_t turns;        /* customer messages processed by the bot */
    uint64_t errors[PROTO_E_COUNT];
    uint64_t http_requests;
    uint64_t ws_writes[2]; /* WebSocket sends: [0] on WRITEABLE, [1] at a loop pass's end (ws.c) */
    /* a bot's turn (session.c), from the customer's frame decoded to the commit of the message
     * and its replies (whereupon the acknowledgement and replies are queued to the socket), and
     * its two phases: the turn's run on the loop, and the wait for the store's commit */
    histo_t turn, turn_flow, turn_store;
} metrics_t;

extern metrics_t metrics;

struct store;
/* Renders the metrics page into a malloc'ed string; *len gets its length. */
char *metrics_render(struct store *store, uint64_t uptime_s, size_t *len);

#endif
