/*
 * flow_internal.h - what the flow_*.c files share; not for other modules.
 *
 *   flow.c          engine: VM, allocator cap, instruction hook, the one protected entry
 *   flow_sandbox.c  safe globals, read-only proxies, wrapped base functions
 *   flow_pattern.c  string.find/match/gmatch/gsub with a step budget
 *   flow_keywords.c keyword sets: many plain words found in one pass (Aho-Corasick)
 *   flow_load.c     loading and checking a rules directory into a "generation"
 *   flow_run.c      runs: steps, events, replay after restart, timers, save
 *   flow_api.c      what flows may call: chat methods, kb.search, clock
 *   flow_json.c     Lua values <-> cJSON
 *   flow_script.c   the `redress flow test` conversation-script runner
 *   flow_cli.c      `redress flow test|check|reload`
 */
#ifndef REDRESS_FLOW_INTERNAL_H
#define REDRESS_FLOW_INTERNAL_H

#include "flow.h"
#include "heap.h"
#include "kb.h"

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define FLOW_HOOK_STEP 1000         /* instructions between two hook calls */
#define FLOW_MAX_LOG 1000           /* events one step may collect before it must end */
#define FLOW_MAX_STATE (256 * 1024) /* largest saved state, in bytes of JSON */
#define FLOW_MAX_STEPS_PER_CALL 64  /* step changes in one call without waiting */
#define FLOW_MAX_FILE (1024 * 1024) /* largest rules file */
#define FLOW_MAX_TIMERS 64          /* pending timers per run */
#define FLOW_MAX_OPTIONS 12         /* quick replies per message */
#define FLOW_MAX_SAY (8 * 1024)     /* longest bot message, bytes */
#define FLOW_PATTERN_STEPS 4        /* pattern-matching steps per instruction of budget */
#define FLOW_MAX_ESCALATIONS 20     /* escalations a run remembers (ctx.escalations) */
#define FLOW_MAX_GROUP 32           /* longest agent group name an escalation may give */

/* Why the current entry is being stopped. */
enum { FLOW_KILL_NONE = 0, FLOW_KILL_INSTR, FLOW_KILL_MEM };

struct flow_engine {
    lua_State *L;
    /* allocator (flow.c) */
    heap_t heap; /* the VM's private heap (heap.c); zeroed it is the process heap */
    size_t mem_used, mem_cap;
    size_t gc_floor; /* VM size after the last forced full collection (flow_end) */
    /* collection in idle time (flow_gc.c) */
    int gc_idle;                   /* the host runs the collector in slices; calls do not */
    int gc_cycle;                  /* a collection cycle is under way */
    size_t gc_live;                /* VM size after the last cycle */
    size_t gc_cycle_alloc;         /* bytes allocated since the current cycle began */
    uint64_t gc_slices, gc_cycles; /* slices run; cycles they completed */
    uint64_t calls;                /* outermost calls into the VM (flow_protected) */
    uint64_t quiet_calls;          /* `calls` when the quiet clock last started */
    uint64_t quiet_since;          /* ms: since then no call entered the VM */
    uint64_t swept_calls;          /* `calls` when the last quiet cycle began */
    int gc_quiet;                  /* the running cycle is a quiet one (flow_engine_gc_quiet) */
    uint64_t gc_quiet_cycles;      /* quiet cycles completed */
    size_t turn_cap;               /* net bytes one run may add in one call */
    long long turn_net;            /* net bytes allocated since the current run's call began */
    size_t call_gross; /* bytes allocated (not net) since the current flow_protected began */
    int in_call;       /* inside flow_protected: call_gross is counted and capped at mem_cap */
    /* instruction budget of the current entry */
    long max_instr;
    long budget;
    int killed; /* FLOW_KILL_* */
    /* rules */
    char *rules_dir;
    sqlite3 *kb;
    kb_searcher_t *searcher; /* kb.search on kb, statements kept (NULL without kb) */
    int gen_ref;             /* registry ref of the current generation table */
    unsigned gen;            /* its number */
    unsigned parsed, kept;   /* files the last load parsed, and took compiled from the one before */
    /* runs */
    flow_run_t *current; /* the run whose Lua code executes now, or NULL */
    flow_run_t *runs;    /* every live run, doubly linked */
};

struct flow_run {
    flow_engine_t *e; /* NULL once the engine was destroyed */
    const flow_host_ops *ops;
    void *host;
    flow_run_t *prev, *next;
    int ref;           /* registry ref of the run table {inst, chat, state, co, customer} */
    char *flow;        /* flow name */
    char *step;        /* current step, NULL when done or failed */
    unsigned inst_gen; /* generation of the flow instance the run executes */
    flow_run_status_t status;
    int escalated;
    int replaying; /* 1 while events are replayed after a restart: output muted */
    int waiting;   /* the step's coroutine is suspended in chat:ask */
    int steps_this_call;
    long long turn;         /* customer messages so far */
    double now;             /* time of the event being processed */
    double ask_due;         /* timeout of the question waited on, 0 = none */
    char *pending_text;     /* the question waited on (repeated on hand-back) */
    cJSON *pending_options; /* array of strings or NULL */
    cJSON *timers;          /* array of {id, due, name, arg} */
    long long next_timer;
    char *base;          /* JSON text of the state at the start of the step:
                          * {state, timers, next_timer, t, turn, last}, printed once per step */
    cJSON *log;          /* events of the step: {k:"in",x,t[,e]} {k:"timer",id,t} {k:"timeout",t} */
    char *cur_state;     /* JSON text of chat.state as of the end of the last call */
    cJSON *firing;       /* the timer being run (detached from timers) */
    cJSON *scratch;      /* a tree being pushed into Lua (freed by finish_call on an error) */
    char *last_text;     /* the last customer message */
    char *error;         /* why the run failed */
    char *fail_text;     /* set during a call that is failing the run */
    char *error_message; /* the flow's error_message (said when it fails), or NULL */
    char *cid, *cname, *channel;
    int vip, history_count;
    /* The conversation's escalations, oldest first, at most FLOW_MAX_ESCALATIONS:
     * [{reason, priority, turn, at, by ("rule", "flow" or "error")[, group][, back]}], back =
     * the time of the hand-back.  Saved with the run; read by the hook as ctx.escalations and
     * by flows as chat.escalations. */
    cJSON *escalations;
};

/* ---- flow.c ---- */
flow_engine_t *flow_engine_of(lua_State *L);
/* Spends n instructions of the current entry's budget; raises the kill error when spent. */
void flow_charge(lua_State *L, long n);
/* Raises the error that ends the current entry (the wrapped pcall cannot catch it). */
int flow_kill(lua_State *L, int why);
/* Calls fn(L) with arg as light userdata in protected mode with a fresh budget.  Returns 0, or
 * -1 with a message (traceback included) in err. */
int flow_protected(flow_engine_t *e, lua_CFunction fn, void *arg, char *err, size_t errlen);
/* lua_pcall message handler adding a traceback. */
int flow_traceback(lua_State *L);
/* Message of the error object at idx without running any metamethod. */
void flow_error_text(lua_State *L, int idx, char *buf, size_t len);
/* Starts the budget and memory accounting of one call into a run. */
void flow_begin(flow_engine_t *e, flow_run_t *r);
/* Arms the instruction hook on a thread (before each resume). */
void flow_arm(lua_State *co);
void flow_end(flow_engine_t *e);

/* ---- flow_sandbox.c ---- */
/* Builds the safe library tables and the string metatable; stores them in the registry. */
int flow_sandbox_open(lua_State *L);
/* Pushes a new table with the safe globals (base functions, string, table, math, utf8). */
void flow_push_safe_globals(lua_State *L);
/* Pushes a read-only view of the table at idx (deep: tables read through it are views too). */
void flow_push_readonly(lua_State *L, int idx);
/* Pushes a frozen view of the table at idx (flow_sandbox.c): read-only with no call per read.
 * Only for a table that holds no table other than a view, and is never written afterwards. */
void flow_push_frozen(lua_State *L, int idx);
/* 1 when the table at idx holds no table other than a view; else 0 and bad gets the key. */
int flow_frozen_check(lua_State *L, int idx, char *bad, size_t badlen);
/* flow_gc.c: after each call (flow_end), the share of collection the call owes when idle
 * slices fall behind; and a full collection, counted as the end of a cycle. */
void flow_gc_after_call(flow_engine_t *e);
void flow_gc_full(flow_engine_t *e);

/* Sets field name of the table at idx to a read-only view of a new table holding fns. */
void flow_set_library(lua_State *L, int idx, const char *name, const luaL_Reg *fns);
int flow_is_readonly(lua_State *L, int idx);
/* When the value at idx is a read-only view, pushes its target and returns 1; else 0. */
int flow_push_view_target(lua_State *L, int idx);
/* Pushes a new environment table whose missing globals come from the table at base_idx. */
void flow_push_env(lua_State *L, int base_idx);
/* 1 when the error status/object at the top must not be caught by flow code. */
int flow_uncatchable(lua_State *L, int status);

/* ---- flow_pattern.c ---- */
/* Replaces find, match, gmatch and gsub in the string table at idx with budgeted versions. */
void flow_pattern_open(lua_State *L, int idx);

/* ---- flow_keywords.c ---- */
/* Sets field "keywords" ({set = ...}, read-only) of the table at idx. */
void flow_keywords_open(lua_State *L, int idx);
/* keywords.set(list) itself (a lua_CFunction; exported for tests). */
int flow_keywords_set(lua_State *L);

/* ---- flow_load.c ---- */
/* Loads and checks every rules file of dir; pushes the generation table.  Protected mode. */
typedef struct flow_load_ctx {
    flow_engine_t *e;
    const char *dir;
    unsigned gen;
} flow_load_ctx;
int flow_load_generation(lua_State *L); /* lua_CFunction; arg 1: flow_load_ctx light userdata */
void flow_load_rejected(lua_State *L);  /* after a failed load: drop what it compiled */
/* Pushes a fresh instance of flow `name` from the generation at gen_idx (runs the file's chunk in
 * a new environment); returns 0, or -1 when the flow does not exist (nothing pushed). */
int flow_instantiate(lua_State *L, int gen_idx, const char *name);

/* ---- flow_json.c ---- */
/* Converts the Lua value at idx.  Returns NULL with "where: problem" in err.  where names the
 * value for messages, e.g. "chat.state".  Runs no Lua code. */
cJSON *flow_to_json(lua_State *L, int idx, const char *where, char *err, size_t errlen);
/* The same value as compact JSON text (malloc'ed), or NULL with the error in err. */
char *flow_to_json_text(lua_State *L, int idx, const char *where, char *err, size_t errlen);
/* Pushes a Lua value for j.  May raise a memory error (call in protected mode). */
void flow_push_json(lua_State *L, const cJSON *j);
/* Replaces invalid UTF-8 in s by U+FFFD; returns a malloc'ed copy or NULL. */
char *flow_utf8_clean(const char *s, size_t len);
/* 1 when s[0..len) is valid UTF-8. */
int flow_utf8_valid(const char *s, size_t len);

/* ---- flow_api.c ---- */
/* Creates the chat metatable, the kb and clock tables and the prelude; protected mode. */
int flow_api_open(lua_State *L);
/* Pushes the shared flow globals (kb, clock) into the table at idx. */
void flow_api_globals(lua_State *L, int idx);
/* Pushes a new chat object for r. */
void flow_push_chat(lua_State *L, flow_run_t *r);
/* Invalidates a chat object (its run is gone). */
void flow_chat_detach(lua_State *L, int idx);

/* ---- flow_run.c (used by flow_api.c) ---- */
int flow_run_say(flow_run_t *r, const char *text, const char *const *options, int n);
/* Hands the run to a human: says message (may be NULL), sends ops->escalate with the summary
 * and remembers the escalation.  group is an agent group (NULL: the host decides); by names
 * who asked: "rule" (escalation.lua), "flow" (chat:escalate).  Muted (returns 0, does nothing)
 * while replaying or already escalated.  Returns 0 or the host's error. */
int flow_run_escalate(lua_State *L, flow_run_t *r, const char *reason, int priority,
                      const char *message, const char *group, const char *by);
/* Pushes ctx.escalations / chat.escalations: a read-only list (see flow_run.escalations). */
void flow_run_push_escalations(lua_State *L, flow_run_t *r);
/* 1 when s is a valid agent group name: 1..FLOW_MAX_GROUP of a-z 0-9 _. */
int flow_group_valid(const char *s, size_t len);
int flow_run_record(flow_run_t *r, const char *field, const char *value_json);
int flow_run_emit_status(flow_run_t *r, const char *state, const char *detail_json);
double flow_run_clock(flow_run_t *r);
/* Pushes the run's state table (chat.state). */
void flow_run_push_state(lua_State *L, flow_run_t *r);
/* Pushes the run's flow instance table. */
void flow_run_push_inst(lua_State *L, flow_run_t *r);
/* The coroutine of the run's current step, or NULL. */
lua_State *flow_run_thread(lua_State *L, flow_run_t *r);

/* ---- flow_script.c ---- */
/* Runs conversation scripts; prints results to out.  Returns the number of failed cases, or
 * -1 on a setup error (message printed). */
int flow_script_run_files(const config_t *cfg, const char *const *files, int nfiles, int verbose,
                          void *out);

#endif
