/*
 * metrics.c - the process-wide counters and their Prometheus rendering (histograms: histo.h).
 */
#include "metrics.h"

#include "store.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

metrics_t metrics;

typedef util_buf buf;

static void put(buf *b, const char *fmt, ...)
{
    va_list ap;
    while (!b->failed) {
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        util_buf_reserve(b, (size_t)n);
    }
}

static void metric(buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
        (unsigned long long)v);
}

/* One series of a histogram family: its buckets (cumulative), sum and count; label may be "". */
static void histo(buf *b, const char *name, const char *label, const histo_t *h)
{
    const char *sep = *label ? "," : "";
    uint64_t n = 0;
    for (int i = 0; i < HISTO_BUCKETS; i++) {
        n += h->bucket[i];
        if (histo_bounds_ns[i] == UINT64_MAX)
            put(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label, sep, (unsigned long long)n);
        else
            put(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, label, sep,
                (double)histo_bounds_ns[i] / 1e9, (unsigned long long)n);
    }
    put(b, "%s_sum%s%s%s %.6f\n", name, *label ? "{" : "", label, *label ? "}" : "",
        (double)h->sum_ns / 1e9);
    put(b, "%s_count%s%s%s %llu\n", name, *label ? "{" : "", label, *label ? "}" : "",
        (unsigned long long)h->count);
}

char *metrics_render(struct store *store, uint64_t uptime_s, size_t *len)
{
    buf b = {malloc(4096), 0, 4096, 0};
    store_stats_t st = {0};

    if (!b.p)
        return NULL;
    b.p[0] = '\0';
    if (store)
        store_get_stats(store, &st);
    metric(&b, "redress_uptime_seconds", "gauge", "Seconds since start.", uptime_s);
    metric(&b, "redress_connections", "gauge", "Open chat WebSocket connections.",
           (uint64_t)metrics.connections);
    metric(&b, "redress_sessions", "gauge", "Conversations held in memory.",
           (uint64_t)metrics.sessions);
    metric(
        &b, "redress_flow_runs", "gauge",
        "Conversations with their Lua flow state in memory (idle, detached and handed-off ones are "
        "parked in the database).",
        (uint64_t)metrics.flow_runs);
    metric(&b, "redress_flow_vm_bytes", "gauge",
           "Bytes the Lua flow VM holds (live data and garbage not yet collected).",
           metrics.flow_vm_bytes);
    metric(&b, "redress_flow_gc_idle_slices_total", "counter",
           "Slices of Lua garbage collection run while the server was idle (flow.idle_gc).",
           metrics.flow_gc_slices);
    metric(&b, "redress_flow_gc_idle_cycles_total", "counter",
           "Lua garbage-collection cycles completed in idle-time slices.", metrics.flow_gc_cycles);
    metric(&b, "redress_flow_gc_quiet_cycles_total", "counter",
           "Of those, cycles started because no conversation had called the VM for a second.",
           metrics.flow_gc_quiet_cycles);
    metric(&b, "redress_handoffs", "gauge",
           "Open hand-offs to human agents (queued, call-back, active).",
           (uint64_t)metrics.handoffs);
    metric(&b, "redress_connections_total", "counter", "Chat connections accepted.",
           metrics.connections_total);
    metric(&b, "redress_messages_in_total", "counter", "Customer messages accepted.",
           metrics.messages_in);
    metric(&b, "redress_messages_out_total", "counter", "Events delivered to clients.",
           metrics.messages_out);
    metric(&b, "redress_turns_total", "counter", "Customer messages processed by the bot.",
           metrics.turns);
    put(&b,
        "# HELP redress_ws_writes_total WebSocket sends of queued frames (several frames a "
        "send), by when: at the end of the loop pass that queued them, or on a WRITEABLE "
        "callback (lws still held part of an earlier send, or more was queued than one send "
        "takes).\n# TYPE redress_ws_writes_total counter\n"
        "redress_ws_writes_total{when=\"pass_end\"} %llu\n"
        "redress_ws_writes_total{when=\"writeable\"} %llu\n",
        (unsigned long long)metrics.ws_writes[1], (unsigned long long)metrics.ws_writes[0]);
    put(&b, "# HELP redress_turn_seconds A bot's turn: from the customer's message decoded to "
            "the commit of the message and its replies, which are then queued to the socket.\n"
            "# TYPE redress_turn_seconds histogram\n");
    histo(&b, "redress_turn_seconds", "", &metrics.turn);
    put(&b, "# HELP redress_turn_phase_seconds The two phases of a bot's turn: the flow's run on "
            "the event loop (flow), then the wait for the store's commit (store).\n"
            "# TYPE redress_turn_phase_seconds histogram\n");
    histo(&b, "redress_turn_phase_seconds", "phase=\"flow\"", &metrics.turn_flow);
    histo(&b, "redress_turn_phase_seconds", "phase=\"store\"", &metrics.turn_store);
    metric(&b, "redress_http_requests_total", "counter", "HTTP requests answered.",
           metrics.http_requests);
    metric(&b, "redress_store_batches_total", "counter", "Write transactions committed.",
           st.batches);
    metric(&b, "redress_store_ops_total", "counter", "Write operations run.", st.ops);
    metric(&b, "redress_store_failed_ops_total", "counter", "Write operations that failed.",
           st.failed_ops);
    put(&b, "# HELP redress_store_batch_seconds Write transactions of the writer thread, BEGIN "
            "to COMMIT done (several operations each under load).\n"
            "# TYPE redress_store_batch_seconds histogram\n");
    histo(&b, "redress_store_batch_seconds", "", &st.batch_time);
    metric(&b, "redress_store_checkpoints_total", "counter",
           "Write-ahead log checkpoints run by the checkpointer thread.", st.checkpoints);
    metric(
        &b, "redress_store_writer_checkpoints_total", "counter",
        "Checkpoints the writer ran itself: the last few pages the checkpointer left, or all that "
        "was left once the log reached 8 times store.checkpoint_pages.",
        st.writer_checkpoints);
    put(&b, "# HELP redress_errors_total Error events sent to clients, by code.\n"
            "# TYPE redress_errors_total counter\n");
    for (int i = 0; i < PROTO_E_COUNT; i++)
        put(&b, "redress_errors_total{code=\"%s\"} %llu\n", proto_error_name((proto_error_t)i),
            (unsigned long long)metrics.errors[i]);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
