/*
 * flow.h - the Lua 5.4 dialogue engine.
 *
 * An engine owns one Lua VM (one per loop thread; not thread-safe) and the rules loaded from
 * cfg->rules_dir: flows (rules/flows/NAME.lua), shared modules (rules/lib/NAME.lua), lexicons
 * (rules/lexicon/NAME.lua) and the escalation hook (rules/escalation.lua).  A run is one
 * conversation executing one flow; it is a coroutine in the engine's VM.
 *
 * The engine knows nothing about sockets or storage.  Its host - a live chat session, or the
 * `redress flow test` runner - is a flow_host_ops vtable plus an opaque pointer.  Every call the
 * engine makes into the host happens synchronously inside flow_run_start / flow_run_input /
 * flow_run_tick / flow_run_handback, on the caller's thread.  Strings passed to the host are
 * borrowed for the duration of the call only: copy what you keep.  A host callback must not call
 * back into the engine (no flow_run_* from inside a callback).
 *
 * Durability: after every call that changed the conversation the engine calls ops->save with the
 * complete run state as JSON.  The host stores it and, after a restart, passes the last saved
 * text to flow_run_start, which resumes the flow at the same point without repeating anything
 * the customer already saw.  (Coroutines cannot be serialised: a flow is a sequence of named
 * steps; the saved state holds the state at the start of the current step plus every event of
 * the step, and a restart replays them with output muted.)
 *
 * Failure isolation: a flow that errors, runs past flow.max_instructions in one call or
 * allocates past its memory share fails only its own run: the customer is told politely via
 * say(), escalate("flow_error", ...) offers a human, and the run becomes FLOW_RUN_FAILED.  Every
 * other run and the engine continue.
 */
#ifndef REDRESS_FLOW_H
#define REDRESS_FLOW_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Result codes: 0 success, negative errors. */
enum {
    FLOW_OK = 0,
    FLOW_ENOMEM = -1,  /* out of memory (C side or the VM) */
    FLOW_EINVAL = -2,  /* bad argument, e.g. NULL text or non-UTF-8 input */
    FLOW_EFAILED = -3, /* the flow failed in this call; the run is now FLOW_RUN_FAILED */
    FLOW_EENDED = -4,  /* the run had already failed (input ignored) or its engine is gone */
    FLOW_ESTATE = -5,  /* saved state unreadable, or names a flow that does not exist */
    FLOW_EHOST = -6,   /* ops->save returned an error (the turn itself was processed) */
    FLOW_ERULES = -7,  /* rules failed to load or check (message in err) */
};

/* What a run is doing, see flow_run_status(). */
typedef enum flow_run_status {
    FLOW_RUN_WAITING = 1, /* the flow waits for the customer's next message */
    FLOW_RUN_DONE = 2,    /* the flow reached its end; a new message runs its on_done step */
    FLOW_RUN_FAILED = 3,  /* the flow failed; the customer was offered a human */
} flow_run_status_t;

/*
 * The host.  Every callback returns 0 on success or a negative value on failure; the engine
 * reports a failed say/status/escalate/record to the flow as a false return value and goes on,
 * and a failed save as FLOW_EHOST from the engine call.  All pointers are borrowed.
 */
typedef struct flow_host_ops {
    /* A bot message; options are quick-reply labels (n_options may be 0, options then NULL). */
    int (*say)(void *host, const char *text, const char *const *options, int n_options);
    /* A status event, detail_json a JSON object text. */
    int (*status)(void *host, const char *state, const char *detail_json);
    /* Hand the conversation to a human.  priority 1 (normal) .. 3 (urgent); summary_json is an
     * object with reason, priority, group (the agent group the rule asked for; absent: the
     * host decides), flow, step, turn, customer {id, name, channel, vip, history_count},
     * category, severity, mood {score, level, trend: recent scores, oldest first, ...}, slots,
     * summary, expectation, solution, deadlines, offered and refused (arrays of solution
     * titles, possibly empty), last_text, and error for flow_error. */
    int (*escalate)(void *host, const char *reason, int priority, const char *summary_json);
    /* Persist the run (opaque JSON object text for flow_run_start; do not edit). */
    int (*save)(void *host, const char *state_json);
    /* A complaint record update: field name and its value as JSON text. */
    int (*record)(void *host, const char *field, const char *value_json);
    /* Wall-clock time in seconds since the Unix epoch.  Optional: NULL uses the system clock.
     * Tests inject a fake clock here so that timers need no sleeps. */
    double (*now)(void *host);
    /* The conversation's complaint record, for chat:complaint(): a malloc'ed JSON object text
     * {number, status, status_text, next_due, created_at} (times in seconds since the epoch,
     * next_due null when no deadline is pending) that the engine frees, or NULL when the
     * conversation has none.  Optional: NULL means never a record. */
    char *(*complaint)(void *host);
} flow_host_ops;

/* Who the conversation is with.  Strings are copied by flow_run_start. */
typedef struct flow_customer {
    const char *id;      /* required: the company's id for the customer */
    const char *name;    /* may be NULL */
    const char *channel; /* web, app, h5, wechat, email, phone, other; NULL = "web" */
    int vip;             /* 0 = regular, >0 = VIP level */
    int history_count;   /* earlier complaints by this customer */
    const char *flow;    /* flow to start; NULL = the default flow (see rules/README.md) */
} flow_customer_t;

typedef struct flow_engine flow_engine_t;
typedef struct flow_run flow_run_t;

/*
 * Creates an engine and loads the rules in cfg->rules_dir.  kb_db is the knowledge-base
 * connection used by kb.search (borrowed; may be NULL, then every search finds nothing).  It
 * must outlive the engine, which keeps prepared statements on it until flow_engine_destroy.
 * cfg is read during the call only.  Returns 0 and *out (free with flow_engine_destroy), or
 * FLOW_ERULES with "file:line: message" in err, or FLOW_ENOMEM.
 */
int flow_engine_create(flow_engine_t **out, const config_t *cfg, sqlite3 *kb_db, char *err,
                       size_t errlen);

/*
 * Loads and checks every rules file again.  Only when all are valid does the engine switch to
 * them; otherwise it keeps the rules it had and returns FLOW_ERULES with "file:line: message"
 * in err.  Running conversations are not interrupted: each keeps the step it is in and takes
 * the new version of its flow at its next step boundary (new runs start on the new version).
 * Returns 0 on success.
 */
int flow_engine_reload(flow_engine_t *e, char *err, size_t errlen);

/* Validates a rules directory without an engine of one's own (for `redress flow check`).
 * Returns 0, or FLOW_ERULES with "file:line: message" in err. */
int flow_check_dir(const config_t *cfg, const char *rules_dir, char *err, size_t errlen);

/* kb.search keeps one read snapshot of the knowledge base from the first search after
 * flow_engine_pass_end to the next call of it (kb_searcher_hold): the server's searches share
 * one transaction per loop pass, on a connection only they use (store_kb_reader).  The host
 * calls flow_engine_pass_end before its loop sleeps, so no snapshot is older than a pass. */
void flow_engine_kb_hold(flow_engine_t *e);
void flow_engine_pass_end(flow_engine_t *e);

/* Number of times the rules were (re)loaded successfully, starting at 1. */
unsigned flow_engine_generation(const flow_engine_t *e);

/* Files the last load (a start, a reload, accepted or not) parsed, and how many it took
 * compiled from the load before because their text was unchanged. */
void flow_engine_files(const flow_engine_t *e, unsigned *parsed, unsigned *kept);

/* Bytes the VM currently holds. */
size_t flow_engine_memory(const flow_engine_t *e);

/*
 * Garbage collection in the host's idle time (flow_gc.c).  By default the VM collects as Lua
 * does, in steps inside the calls that allocate.  After flow_engine_gc_idle(e, 1) calls no
 * longer collect while the host keeps up: the host calls flow_engine_gc_slice() whenever
 * flow_engine_gc_due() and its loop has nothing else to do, and each slice runs collector
 * steps for about max_ns (it may overrun by one step, well under a millisecond).  When the host
 * cannot keep up (no idle time), calls pay for their allocation again once the VM has grown to
 * twice its size after the last cycle (where Lua itself would collect), so memory stays
 * bounded either way.
 * flow_engine_gc_slice returns flow_engine_gc_due() after the slice; never call it from inside
 * a host callback.
 */
void flow_engine_gc_idle(flow_engine_t *e, int on);
int flow_engine_gc_due(const flow_engine_t *e);
int flow_engine_gc_slice(flow_engine_t *e, uint64_t max_ns);
/* Slices run so far, and the collection cycles they completed (for /metrics). */
void flow_engine_gc_counts(const flow_engine_t *e, uint64_t *slices, uint64_t *cycles);
/* The host's periodic tick, in idle mode (now_ms: any millisecond clock).  Once no call has
 * entered the VM for FLOW_QUIET_MS, and calls did since the last quiet cycle, it starts a
 * collection cycle whatever the VM's size (the idle slices carry it): a server that went quiet,
 * its conversations parked, then holds its live data only, and when the cycle ends with the
 * VM still untouched, the freed memory goes back to the system (heap_release_free).  Returns 1
 * when it started a cycle. */
#define FLOW_QUIET_MS 1000
int flow_engine_gc_quiet(flow_engine_t *e, uint64_t now_ms);
/* Quiet cycles completed (for /metrics). */
uint64_t flow_engine_gc_quiet_cycles(const flow_engine_t *e);

/*
 * Frees the engine and its VM.  Runs still alive are detached: their calls then return
 * FLOW_EENDED, and flow_run_free() must still be called for each.
 */
void flow_engine_destroy(flow_engine_t *e);

/*
 * Starts a conversation.  With saved_state_json NULL a new run starts c->flow (or the default
 * flow) and runs it until it first waits for the customer: the greeting is said through ops.
 * With the text of an earlier save() the run resumes where it was, silently.  ops and host must
 * outlive the run.  Returns 0 and *out (free with flow_run_free), FLOW_EINVAL (bad customer),
 * FLOW_ESTATE (unreadable state or unknown flow), FLOW_ENOMEM, or FLOW_EHOST (save failed; the
 * run exists).  FLOW_EFAILED also gives a run (already failed, customer told).
 */
int flow_run_start(flow_engine_t *e, const flow_host_ops *ops, void *host, const flow_customer_t *c,
                   const char *saved_state_json, flow_run_t **out);

/*
 * A customer message (valid UTF-8).  Runs the flow's on_message, then the escalation hook, then
 * resumes the flow until it waits again; a message the hook escalated is not given to the flow.
 * Returns 0, FLOW_EINVAL, FLOW_EFAILED (the run failed now), FLOW_EENDED (it had failed
 * earlier), FLOW_EHOST.
 */
int flow_run_input(flow_run_t *r, const char *text);

/*
 * Runs the timers and the answer timeout that are due at `now` (seconds since the epoch; the
 * host's clock); after each, unless the run is with a human, the escalation hook runs with
 * ctx.event "timer" (this is how a promised deadline coming due escalates).  Returns 0 (also
 * when nothing was due) or an error as flow_run_input.
 */
int flow_run_tick(flow_run_t *r, double now);

/* Earliest time at which flow_run_tick has something to do, or 0 when nothing is pending. */
double flow_run_next_due(const flow_run_t *r);

/*
 * An agent ended the hand-off: how is "resolved" (the agent resolved the complaint) or
 * "handback" (handed back without a resolution; NULL means "handback").  Clears the escalated
 * mark, which also lets the escalation hook fire again (the hand-back time and how are kept in
 * the last entry of ctx.escalations / chat.escalations as back and how, so rules can tell old
 * triggers from new ones).  Then the flow's on_handback decides what the bot does: a step name
 * (the field itself, or what function(chat, how) returns) enters that step - from wherever the
 * run was, waiting or done, dropping the pending question - and runs it until it waits; nil, or
 * no on_handback, repeats the question the flow is waiting on (nothing when it waits on none).
 * Returns 0, FLOW_EINVAL (how is neither), or an error as flow_run_input (FLOW_EFAILED when
 * on_handback or the step failed).
 */
int flow_run_handback(flow_run_t *r, const char *how);

flow_run_status_t flow_run_status(const flow_run_t *r);

/* 1 while the conversation is with a human (escalated and not handed back). */
int flow_run_escalated(const flow_run_t *r);

/* The current step's name (NULL when done or failed); valid until the next engine call. */
const char *flow_run_step(const flow_run_t *r);

/* Why the run failed (Lua error with traceback), or NULL; valid until flow_run_free. */
const char *flow_run_error(const flow_run_t *r);

/* Frees a run (the conversation ended).  Never calls the host. */
void flow_run_free(flow_run_t *r);

/* `redress flow ...`: test, check, reload.  argv[0] is "flow".  Returns a process exit code. */
int flow_cli_main(const config_t *cfg, int argc, char **argv);

#endif
