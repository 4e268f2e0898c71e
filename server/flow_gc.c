/*
 * flow_gc.c - the VM's garbage collection in the loop's idle time.
 *
 * Why.  Lua's incremental collector runs inside the calls that allocate: every call pays for a
 * share of the collection in proportion to what it allocates.  With a thousand conversations
 * in memory the VM holds 40-80 MB in about a million objects, and a call that lands in the
 * sweep frees a few MB of them: 10-30 ms, several calls in a row, for turns that take 0.4 ms
 * otherwise.  Measured at 1,000 turns/s, that made the p99 turn latency 245-360 ms; with the
 * collector stopped it was 60-120 ms.
 *
 * What.  In idle mode (flow_engine_gc_idle) the collector no longer runs inside calls.  The
 * host calls flow_engine_gc_slice() when its loop has nothing else to do; a slice runs small
 * steps (LUA_GCSTEP with a 1 KB step size, about 0.1-1 ms each) until its time is up.  The
 * pacing that Lua would do is done here:
 *
 *   - a cycle is due when the VM has grown to 1.5 times what it held after the last cycle
 *     (and to at least 3/4 of GC_MIN_BYTES);
 *   - while a cycle runs, slices carry it to its end;
 *   - when slices cannot keep up (the loop is never idle: saturation, or a burst of new
 *     conversations), the VM grows to twice that size, where Lua's own collector would have
 *     started, and flow_end() then makes each call pay for what it allocated, in
 *     proportion as the incremental collector would (flow_gc_after_call), but not for the
 *     backlog.  Memory therefore stays bounded with or without idle time; idle time only moves
 *     the work out of turns.
 *
 * Quiet cycles.  The pacing above leaves up to half the live size as garbage, and what the
 * garbage is depends on when the last cycle happened to end: 10-30 MB at the end of the same
 * burst of 15,000 new conversations, whose flows then park.  When the VM has had no call for
 * FLOW_QUIET_MS, the host's tick (flow_engine_gc_quiet) starts a cycle whatever the size, once
 * per quiet spell; if the VM is still untouched when it ends, heap_release_free() gives the
 * freed pages back to the system at once (jemalloc would otherwise wait for later activity).
 * Measured with 15,000 conversations parked: the VM 10-30 MB -> 1.0-1.2 MB; with jemalloc the
 * process 8.3-8.8 -> 5.4-5.5 KB per conversation, 4.2 KB once the VM had an arena of its own
 * (heap.c); glibc: 7.7-9.0 -> 7.9-8.0, its heap stays full of holes.  The purge took 15 ms
 * (logged at debug level).
 *
 * Full collections (flow_end after a kill, the memory-bomb rules, fail_actions) still happen
 * where they did, through flow_gc_full(), which also counts them as the end of a cycle.
 *
 * State (in flow_engine_t): gc_idle (the mode), gc_cycle (a cycle runs), gc_live (bytes after
 * the last cycle), gc_cycle_alloc (bytes allocated since the cycle began; the allocator adds to
 * it), gc_slices and gc_cycles (counters for /metrics); for quiet cycles, calls (counted by
 * flow_protected), quiet_calls and quiet_since (the quiet clock), swept_calls, gc_quiet (the
 * running cycle is one) and gc_quiet_cycles.
 */
#include "flow.h"
#include "flow_internal.h"

#include "heap.h"
#include "log.h"

#include <uv.h>

/* A cycle is due at 1.5 times gc_live, and calls pay from 2 times on, where Lua's own default
 * (a pause of 200 %) starts its cycle: the VM peaks no higher than in Lua's own mode, and idle
 * slices get the half-way head start to finish the cycle before any call pays. */
#define DUE_NUM 3               /* due at DUE_NUM / 2 times gc_live */
#define BEHIND 2                /* past this multiple, calls pay for their allocation */
#define GC_MIN_BYTES (4u << 20) /* no cycle below this VM size */
#define IDLE_STEP_LOG2 10       /* LUA_GCINC step size in idle mode: 1 KB of allocation */

static size_t base_bytes(const flow_engine_t *e)
{
    return e->gc_live > GC_MIN_BYTES / 2 ? e->gc_live : GC_MIN_BYTES / 2;
}

/* (The thresholds are not clamped below the memory cap: with live data near it, a clamp made
 * cycles run back to back.  Measured with 15,000 idle conversations in memory: 422 turns/s
 * clamped against 902 in Lua's own mode.) */
static size_t due_bytes(const flow_engine_t *e)
{
    return base_bytes(e) / 2 * DUE_NUM;
}

static size_t behind_bytes(const flow_engine_t *e)
{
    return BEHIND * base_bytes(e);
}

/* A cycle ended.  What it left is live data plus everything allocated while it ran (new
 * objects survive the cycle they are born in, garbage or not); counting all of it as live
 * would set the next threshold too high under load, so the cycle's own allocation is taken
 * off, as Lua's estimate of live data does.  After a full collection the VM holds live data
 * only. */
static void cycle_ended(flow_engine_t *e, int full)
{
    size_t floating = full ? 0 : e->gc_cycle_alloc;
    if (floating > e->mem_used / 4 * 3)
        floating = e->mem_used / 4 * 3;
    e->gc_live = e->mem_used - floating;
    e->gc_cycle = 0;
    e->gc_cycle_alloc = 0;
    if (e->gc_quiet) {
        e->gc_quiet = 0;
        e->gc_quiet_cycles++;
        if (e->calls == e->swept_calls) {
            uint64_t t0 = uv_hrtime();
            heap_trim(&e->heap);
            heap_release_free();
            log_debug("flow", "quiet collection: VM at %zu bytes, free memory returned in %.2f ms",
                      e->mem_used, (double)(uv_hrtime() - t0) / 1e6);
        }
    }
}

/* One collector step of `kb` KB of allocation (0: one basic step); it starts a cycle when none
 * runs.  Ends the cycle when Lua says it ended. */
static void step(flow_engine_t *e, int kb)
{
    if (!e->gc_cycle)
        e->gc_cycle_alloc = 0;
    e->gc_cycle = 1;
    if (lua_gc(e->L, LUA_GCSTEP, kb))
        cycle_ended(e, 0);
}

void flow_engine_gc_idle(flow_engine_t *e, int on)
{
    if (!e || !e->L || e->gc_idle == !!on)
        return;
    e->gc_idle = !!on;
    if (on) {
        lua_gc(e->L, LUA_GCSTOP);
        lua_gc(e->L, LUA_GCINC, 0, 0, IDLE_STEP_LOG2);
        e->gc_live = e->mem_used;
        e->gc_cycle = 0;
    } else {
        lua_gc(e->L, LUA_GCINC, 0, 0, 13); /* Lua's default step size, 8 KB */
        lua_gc(e->L, LUA_GCRESTART);
    }
}

int flow_engine_gc_due(const flow_engine_t *e)
{
    return e && e->L && e->gc_idle && (e->gc_cycle || e->mem_used >= due_bytes(e));
}

int flow_engine_gc_slice(flow_engine_t *e, uint64_t max_ns)
{
    if (!flow_engine_gc_due(e) || e->in_call)
        return 0;
    uint64_t end = uv_hrtime() + max_ns;
    e->gc_slices++;
    do {
        step(e, 0);
        if (!e->gc_cycle)
            e->gc_cycles++;
    } while (e->gc_cycle && uv_hrtime() < end);
    return flow_engine_gc_due(e);
}

void flow_engine_gc_counts(const flow_engine_t *e, uint64_t *slices, uint64_t *cycles)
{
    *slices = e ? e->gc_slices : 0;
    *cycles = e ? e->gc_cycles : 0;
}

void flow_gc_after_call(flow_engine_t *e)
{
    /* The call pays for what it allocated itself (call_gross), at Lua's own rate; what was
     * allocated before, while the VM was under the threshold, is not paid by one unlucky call
     * (the cycle then takes a little more allocation to finish, as it would in Lua's mode). */
    size_t kb = e->call_gross / 1024;
    if (e->gc_idle && e->mem_used >= behind_bytes(e) && kb > 0)
        step(e, kb > INT32_MAX ? INT32_MAX : (int)kb);
}

void flow_gc_full(flow_engine_t *e)
{
    lua_gc(e->L, LUA_GCCOLLECT);
    cycle_ended(e, 1);
}

int flow_engine_gc_quiet(flow_engine_t *e, uint64_t now_ms)
{
    if (!e || !e->L || !e->gc_idle || e->in_call)
        return 0;
    if (e->calls != e->quiet_calls) {
        e->quiet_calls = e->calls;
        e->quiet_since = now_ms;
        return 0;
    }
    if (e->gc_cycle || e->calls == e->swept_calls || now_ms - e->quiet_since < FLOW_QUIET_MS)
        return 0;
    e->swept_calls = e->calls;
    e->gc_quiet = 1; /* before the step: a small VM's whole cycle may be one step */
    step(e, 0);
    return 1;
}

uint64_t flow_engine_gc_quiet_cycles(const flow_engine_t *e)
{
    return e ? e->gc_quiet_cycles : 0;
}
