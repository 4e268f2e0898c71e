/*
 * test_flow_gc.c - the flow VM's collection in idle time (server/flow_gc.c) through flow.h.
 *
 * One flow makes about 200 KB of garbage per customer message.  The tests watch the VM's size
 * (flow_engine_memory) after every call:
 *   - in idle mode, calls do not collect: the VM only grows until a cycle is due; then slices,
 *     as the server runs them when its loop is idle, give the garbage back;
 *   - with no idle time at all (no slices), calls pay again once the VM is twice its
 *     size after the last cycle, so it stays bounded;
 *   - Lua's own mode (the default) collects inside calls and never reports work due;
 *   - once no call has entered the VM for FLOW_QUIET_MS, the tick starts one cycle whatever
 *     the VM's size, once per quiet spell, and slices take the VM back to its live data.
 */
#include "flow.h"
#include "test_flow_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MB (1024u * 1024u)

static const char *FLOW_GARBAGE = "return {\n"
                                  "  default = true,\n"
                                  "  start = 'talk',\n"
                                  "  steps = {\n"
                                  "    talk = function(chat, s)\n"
                                  "      while true do\n"
                                  "        local text = chat:ask('说吧')\n"
                                  "        local junk = {}\n"
                                  "        for i = 1, 2000 do junk[i] = { i, text .. i } end\n"
                                  "        chat:say('ok ' .. #junk)\n"
                                  "      end\n"
                                  "    end,\n"
                                  "  },\n"
                                  "}\n";

typedef struct rig {
    char dir[64];
    flow_engine_t *e;
    th_host h;
    flow_run_t *r;
    int n; /* messages sent */
} rig;

static int rig_open(rig *g, int idle)
{
    config_t cfg;
    char err[1024] = "";
    memset(g, 0, sizeof(*g));
    g->h.now = 1000;
    if (!th_tmpdir(g->dir, sizeof(g->dir)) || th_put(g->dir, "flows/main.lua", FLOW_GARBAGE) != 0)
        return -1;
    th_config(&cfg, g->dir);
    cfg.lua_max_memory_mb = 256; /* far above what the tests allow, so growth shows as growth */
    int rc = flow_engine_create(&g->e, &cfg, NULL, err, sizeof(err));
    config_free(&cfg);
    if (rc != 0) {
        fprintf(stderr, "engine: %s\n", err);
        return -1;
    }
    flow_engine_gc_idle(g->e, idle);
    flow_customer_t c = {"u-gc", NULL, "web", 0, 0, NULL};
    return flow_run_start(g->e, &th_ops, &g->h, &c, NULL, &g->r) == FLOW_OK ? 0 : -1;
}

/* One customer message; the host's lines are dropped so that they do not pile up. */
static int message(rig *g)
{
    char text[32];
    snprintf(text, sizeof(text), "消息%d", g->n++);
    int rc = flow_run_input(g->r, text);
    for (int i = 0; i < g->h.n; i++)
        free(g->h.line[i]);
    g->h.n = 0;
    return rc;
}

static void rig_close(rig *g)
{
    flow_run_free(g->r);
    th_free(&g->h);
    flow_engine_destroy(g->e);
    th_rmtree(g->dir);
}

static void test_idle_slices_collect_calls_do_not(void)
{
    rig g;
    if (rig_open(&g, 1) != 0) {
        CHECK(0);
        return;
    }
    CHECK(!flow_engine_gc_due(g.e));
    /* until a cycle is due, no call gives memory back */
    size_t before = flow_engine_memory(g.e);
    int shrank = 0;
    while (!flow_engine_gc_due(g.e) && g.n < 500) {
        CHECK(message(&g) == FLOW_OK);
        size_t now = flow_engine_memory(g.e);
        if (now + 64 * 1024 < before)
            shrank++;
        before = now;
    }
    CHECK(shrank == 0);
    CHECK(flow_engine_gc_due(g.e));
    size_t at_due = flow_engine_memory(g.e);
    CHECK(at_due >= 3 * MB);
    /* the slices (1 ms each, as the server runs them) finish the cycle and free the garbage */
    int slices = 0;
    while (flow_engine_gc_slice(g.e, 1000000) && slices < 100000)
        slices++;
    CHECK(!flow_engine_gc_due(g.e));
    CHECK(flow_engine_memory(g.e) < at_due / 2);
    if (flow_engine_memory(g.e) >= at_due / 2)
        fprintf(stderr, "at due %zu, after %d slices %zu\n", at_due, slices,
                flow_engine_memory(g.e));
    /* and the conversation goes on */
    CHECK(message(&g) == FLOW_OK);
    rig_close(&g);
}

/* Peak VM size over 300 messages (about 60 MB of garbage). */
static size_t peak_over_messages(rig *g)
{
    size_t peak = 0;
    for (int i = 0; i < 300; i++) {
        CHECK(message(g) == FLOW_OK);
        if (flow_engine_memory(g->e) > peak)
            peak = flow_engine_memory(g->e);
    }
    return peak;
}

static void test_no_idle_time_stays_bounded(void)
{
    rig g;
    if (rig_open(&g, 1) != 0) {
        CHECK(0);
        return;
    }
    size_t peak = peak_over_messages(&g);
    /* live data is well under 2 MB: calls pay from 2 x 2 MB on */
    CHECK(peak < 8 * MB);
    if (peak >= 8 * MB)
        fprintf(stderr, "idle mode without slices: peak %zu\n", peak);
    rig_close(&g);
}

static void test_lua_mode_collects_in_calls(void)
{
    rig g;
    if (rig_open(&g, 0) != 0) {
        CHECK(0);
        return;
    }
    size_t peak = peak_over_messages(&g);
    CHECK(peak < 8 * MB);
    CHECK(!flow_engine_gc_due(g.e));
    CHECK(flow_engine_gc_slice(g.e, 1000000) == 0);
    /* switching idle mode on and off again leaves Lua's collector running */
    flow_engine_gc_idle(g.e, 1);
    flow_engine_gc_idle(g.e, 0);
    CHECK(peak_over_messages(&g) < 8 * MB);
    rig_close(&g);
}

/* Garbage well under the threshold of a due cycle stays until the VM has been quiet. */
static void test_quiet_spell_collects_once(void)
{
    rig g;
    if (rig_open(&g, 1) != 0) {
        CHECK(0);
        return;
    }
    CHECK(flow_engine_gc_quiet(g.e, 0) == 0); /* no call since the start: nothing to do */
    CHECK(message(&g) == FLOW_OK);
    CHECK(message(&g) == FLOW_OK);
    CHECK(!flow_engine_gc_due(g.e));
    size_t before = flow_engine_memory(g.e);
    /* the tick sees the calls and starts the quiet clock; no cycle before FLOW_QUIET_MS */
    CHECK(flow_engine_gc_quiet(g.e, 10000) == 0);
    CHECK(flow_engine_gc_quiet(g.e, 10000 + FLOW_QUIET_MS - 1) == 0);
    CHECK(!flow_engine_gc_due(g.e));
    /* a call restarts the clock */
    CHECK(message(&g) == FLOW_OK);
    CHECK(flow_engine_gc_quiet(g.e, 10000 + FLOW_QUIET_MS) == 0);
    CHECK(flow_engine_gc_quiet(g.e, 10000 + 2 * FLOW_QUIET_MS - 1) == 0);
    CHECK(flow_engine_gc_quiet(g.e, 10000 + 2 * FLOW_QUIET_MS) == 1);
    CHECK(flow_engine_gc_due(g.e));
    int slices = 0;
    while (flow_engine_gc_slice(g.e, 1000000) && slices < 100000)
        slices++;
    CHECK(!flow_engine_gc_due(g.e));
    CHECK(flow_engine_gc_quiet_cycles(g.e) == 1);
    /* three messages made about 600 KB of garbage; what is left is live data */
    size_t after = flow_engine_memory(g.e);
    CHECK(after + 300 * 1024 < before + 200 * 1024);
    if (after + 300 * 1024 >= before + 200 * 1024)
        fprintf(stderr, "quiet cycle: %zu before the third message, %zu after\n", before, after);
    /* once per quiet spell */
    CHECK(flow_engine_gc_quiet(g.e, 10000 + 10 * FLOW_QUIET_MS) == 0);
    CHECK(!flow_engine_gc_due(g.e));
    /* the next spell after a call gets one again */
    CHECK(message(&g) == FLOW_OK);
    CHECK(flow_engine_gc_quiet(g.e, 20000) == 0);
    CHECK(flow_engine_gc_quiet(g.e, 20000 + FLOW_QUIET_MS) == 1);
    while (flow_engine_gc_slice(g.e, 1000000) && slices < 200000)
        slices++;
    CHECK(flow_engine_gc_quiet_cycles(g.e) == 2);
    rig_close(&g);

    /* Lua's own mode has no quiet cycles */
    if (rig_open(&g, 0) != 0) {
        CHECK(0);
        return;
    }
    CHECK(message(&g) == FLOW_OK);
    CHECK(flow_engine_gc_quiet(g.e, 10000) == 0);
    CHECK(flow_engine_gc_quiet(g.e, 10000 + FLOW_QUIET_MS) == 0);
    CHECK(flow_engine_gc_quiet_cycles(g.e) == 0);
    rig_close(&g);
}

int main(void)
{
    test_idle_slices_collect_calls_do_not();
    test_no_idle_time_stays_bounded();
    test_lua_mode_collects_in_calls();
    test_quiet_spell_collects_once();
    printf("test_flow_gc: %d checks, %d failed\n", th_checks, th_failures);
    return th_failures ? 1 : 0;
}
