/*
 * test_flow_engine.c - the dialogue engine through its public API (flow.h).
 *
 * Each test writes a small rules directory, runs conversations with a recording host
 * (test_flow_host.h) and checks what the host saw: messages, escalations, saved state.
 * Covers: steps and asks, restart at every turn (no message lost or repeated), hot reload with
 * runs mid-conversation (none lost, new steps use new code), rejected reloads (file:line, old
 * rules kept), runaway and memory-bomb isolation, timers and answer timeouts with a fake clock,
 * the escalation hook and hand-back, on_done, saved-state validation, rules checks.
 */
#include "flow.h"
#include "kb.h"
#include "test_flow_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CUSTOMER_ID = "u-1";

static flow_customer_t customer(const char *flow)
{
    flow_customer_t c = {CUSTOMER_ID, "张先生", "web", 0, 0, flow};
    return c;
}

/* A three-step flow with several questions per step, a timer and a timeout. */
static const char *FLOW_V1 =
    "return {\n"
    "  default = true,\n"
    "  start = 'one',\n"
    "  steps = {\n"
    "    one = function(chat, s)\n"
    "      local a = chat:ask('Q1 您好，请问有什么问题？')\n"
    "      s.a = a\n"
    "      local b = chat:ask('Q2 请提供订单号', { timeout = 60 })\n"
    "      s.b = b or 'timeout'\n"
    "      chat:after(300, 'remind', { text = a })\n"
    "      return 'two'\n"
    "    end,\n"
    "    two = function(chat, s)\n"
    "      local c = chat:choose('Q3 请选择方案', { '退款', '补发' })\n"
    "      s.c = c\n"
    "      local d = chat:confirm('Q4 确认吗？')\n"
    "      s.d = d\n"
    "      return 'three'\n"
    "    end,\n"
    "    three = function(chat, s)\n"
    "      local e = chat:ask('Q5 请评分')\n"
    "      s.e = e\n"
    "      chat:say('BYE ' .. s.a .. '/' .. s.b .. '/' .. s.c .. '/' .. tostring(s.d) .. '/' .. "
    "e)\n"
    "    end,\n"
    "  },\n"
    "  timers = { remind = function(chat, arg) chat:say('REMIND ' .. arg.text) end },\n"
    "}\n";

static const char *INPUTS[] = {"退款没到账", "12345678", "1", "好的", "5"};
#define NINPUTS 5

static int make_rules(char *dir, size_t len, const char *flow)
{
    if (!th_tmpdir(dir, len))
        return -1;
    return th_put(dir, "flows/main.lua", flow);
}

static flow_engine_t *engine_mb(const char *dir, int max_memory_mb)
{
    config_t cfg;
    char err[1024] = "";
    flow_engine_t *e = NULL;
    th_config(&cfg, dir);
    cfg.lua_max_instructions = 200000;
    cfg.lua_max_memory_mb = max_memory_mb;
    int rc = flow_engine_create(&e, &cfg, NULL, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "engine: %s\n", err);
    config_free(&cfg);
    return e;
}

static flow_engine_t *engine(const char *dir)
{
    return engine_mb(dir, 32);
}

/* A new conversation of the default flow for CUSTOMER_ID, its host h. */
static flow_run_t *start_one(flow_engine_t *e, th_host *h)
{
    flow_customer_t c = customer(NULL);
    flow_run_t *r = NULL;
    CHECK(flow_run_start(e, &th_ops, h, &c, NULL, &r) == FLOW_OK);
    return r;
}

/* Concatenates every "say" line of h into out. */
static void says(const th_host *h, char *out, size_t len)
{
    out[0] = '\0';
    for (int i = 0; i < h->n; i++)
        if (strncmp(h->line[i], "say ", 4) == 0) {
            strncat(out, h->line[i] + 4, len - strlen(out) - 1);
            strncat(out, "\n", len - strlen(out) - 1);
        }
}

static void test_conversation(void)
{
    char dir[64], all[4096];
    th_host h = {.now = 1000};
    flow_run_t *r = NULL;
    CHECK(make_rules(dir, sizeof(dir), FLOW_V1) == 0);
    flow_engine_t *e = engine(dir);
    CHECK(e != NULL);
    flow_customer_t c = customer(NULL);
    CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
    CHECK(th_find(&h, "say Q1") == 0);
    CHECK(flow_run_status(r) == FLOW_RUN_WAITING);
    CHECK(strcmp(flow_run_step(r), "one") == 0);
    for (int i = 0; i < NINPUTS; i++)
        CHECK(flow_run_input(r, INPUTS[i]) == FLOW_OK);
    says(&h, all, sizeof(all));
    CHECK(strstr(all, "Q3 请选择方案 [退款|补发]") != NULL);
    CHECK(strstr(all, "Q4 确认吗？ [是|否]") != NULL);
    CHECK(strstr(all, "BYE 退款没到账/12345678/退款/true/5") != NULL);
    CHECK(flow_run_status(r) == FLOW_RUN_DONE);
    CHECK(flow_run_step(r) == NULL);
    CHECK(h.saved && strstr(h.saved, "\"status\":\"done\""));
    /* the reminder set in step one still fires after the flow ended */
    CHECK(flow_run_next_due(r) == 1300);
    h.now = 1300;
    CHECK(flow_run_tick(r, 1300) == FLOW_OK);
    CHECK(th_find(&h, "say REMIND 退款没到账") >= 0);
    CHECK(flow_run_next_due(r) == 0);
    CHECK(flow_run_input(r, NULL) == FLOW_EINVAL);
    CHECK(flow_run_input(r, "\xff\xfe") == FLOW_EINVAL);
    flow_run_free(r);
    th_free(&h);
    flow_engine_destroy(e);
    th_rmtree(dir);
}

/*
 * Restart after every number of customer messages: destroy the run and the engine, build a new
 * engine, resume from the last save, and finish.  The messages seen across the restart must be
 * exactly those of the uninterrupted conversation.
 */
static void test_restart_everywhere(void)
{
    char dir[64], want[4096], got[4096];
    CHECK(make_rules(dir, sizeof(dir), FLOW_V1) == 0);
    flow_customer_t c = customer(NULL);
    {
        th_host h = {.now = 1000};
        flow_engine_t *e = engine(dir);
        flow_run_t *r = NULL;
        CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
        for (int i = 0; i < NINPUTS; i++)
            flow_run_input(r, INPUTS[i]);
        says(&h, want, sizeof(want));
        flow_run_free(r);
        flow_engine_destroy(e);
        th_free(&h);
    }
    for (int k = 0; k <= NINPUTS; k++) {
        th_host h = {.now = 1000};
        flow_engine_t *e = engine(dir);
        flow_run_t *r = NULL;
        CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
        for (int i = 0; i < k; i++)
            flow_run_input(r, INPUTS[i]);
        char *saved = strdup(h.saved);
        flow_run_free(r);
        flow_engine_destroy(e);
        e = engine(dir);
        CHECK(flow_run_start(e, &th_ops, &h, &c, saved, &r) == FLOW_OK);
        for (int i = k; i < NINPUTS; i++)
            CHECK(flow_run_input(r, INPUTS[i]) == FLOW_OK);
        says(&h, got, sizeof(got));
        if (strcmp(want, got) != 0) {
            fprintf(stderr, "restart after %d messages:\nwant:\n%sgot:\n%s", k, want, got);
            CHECK(0);
        }
        CHECK(flow_run_status(r) == FLOW_RUN_DONE);
        free(saved);
        flow_run_free(r);
        flow_engine_destroy(e);
        th_free(&h);
    }
    th_rmtree(dir);
}

/* A restart keeps a pending timer and a pending answer timeout. */
static void test_restart_timers(void)
{
    char dir[64];
    th_host h = {.now = 1000};
    flow_run_t *r = NULL;
    CHECK(make_rules(dir, sizeof(dir), FLOW_V1) == 0);
    flow_engine_t *e = engine(dir);
    flow_customer_t c = customer(NULL);
    CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
    h.now = 1010;
    CHECK(flow_run_input(r, "你好") == FLOW_OK); /* Q2 waits with a 60 s timeout */
    CHECK(flow_run_next_due(r) == 1070);
    char *saved = strdup(h.saved);
    flow_run_free(r);
    flow_engine_destroy(e);
    e = engine(dir);
    th_clear(&h);
    CHECK(flow_run_start(e, &th_ops, &h, &c, saved, &r) == FLOW_OK);
    CHECK(h.n == 0); /* nothing repeated */
    CHECK(flow_run_next_due(r) == 1070);
    h.now = 1070;
    CHECK(flow_run_tick(r, 1070) == FLOW_OK);
    /* timeout: b = 'timeout', the timer is set for 1070 + 300, step two asks Q3 */
    CHECK(th_find(&h, "say Q3") >= 0);
    CHECK(flow_run_next_due(r) == 1370);
    free(saved);
    saved = strdup(h.saved);
    flow_run_free(r);
    flow_engine_destroy(e);
    e = engine(dir);
    th_clear(&h);
    CHECK(flow_run_start(e, &th_ops, &h, &c, saved, &r) == FLOW_OK);
    CHECK(flow_run_next_due(r) == 1370);
    h.now = 1400;
    CHECK(flow_run_tick(r, 1400) == FLOW_OK);
    CHECK(th_find(&h, "say REMIND 你好") >= 0);
    CHECK(flow_run_input(r, "补发") == FLOW_OK);
    CHECK(flow_run_input(r, "不") == FLOW_OK);
    CHECK(flow_run_input(r, "4") == FLOW_OK);
    CHECK(th_find(&h, "say BYE 你好/timeout/补发/false/4") >= 0);
    free(saved);
    flow_run_free(r);
    flow_engine_destroy(e);
    th_free(&h);
    th_rmtree(dir);
}

static const char *FLOW_V2 =
    "return {\n"
    "  default = true,\n"
    "  start = 'one',\n"
    "  steps = {\n"
    "    one = function(chat, s)\n"
    "      s.a = chat:ask('V2 Q1')\n"
    "      s.b = chat:ask('V2 Q2')\n"
    "      return 'two'\n"
    "    end,\n"
    "    two = function(chat, s)\n"
    "      s.c = chat:choose('V2 Q3 请选择方案', { '退款', '补发', '换货' })\n"
    "      s.d = chat:confirm('V2 Q4')\n"
    "      return 'extra'\n"
    "    end,\n"
    "    extra = function(chat, s)\n"
    "      chat:say('V2 EXTRA')\n"
    "      return 'three'\n"
    "    end,\n"
    "    three = function(chat, s)\n"
    "      local e = chat:ask('V2 Q5')\n"
    "      chat:say('V2 BYE ' .. s.a .. '/' .. tostring(s.c) .. '/' .. e)\n"
    "    end,\n"
    "  },\n"
    "  timers = { remind = function(chat, arg) chat:say('V2 REMIND') end },\n"
    "}\n";

/* Runs at every step are mid-conversation when the rules change; none is lost. */
static void test_reload_mid_conversation(void)
{
    char dir[64], err[1024];
    enum { N = 4 };
    th_host h[N];
    flow_run_t *r[N];
    memset(h, 0, sizeof(h));
    CHECK(make_rules(dir, sizeof(dir), FLOW_V1) == 0);
    flow_engine_t *e = engine(dir);
    CHECK(flow_engine_generation(e) == 1);
    flow_customer_t c = customer(NULL);
    for (int i = 0; i < N; i++) {
        h[i].now = 1000;
        CHECK(flow_run_start(e, &th_ops, &h[i], &c, NULL, &r[i]) == FLOW_OK);
        for (int k = 0; k < i + 1; k++) /* run i has answered i+1 questions */
            CHECK(flow_run_input(r[i], INPUTS[k]) == FLOW_OK);
    }
    CHECK(th_put(dir, "flows/main.lua", FLOW_V2) == 0);
    CHECK(flow_engine_reload(e, err, sizeof(err)) == FLOW_OK);
    CHECK(flow_engine_generation(e) == 2);
    for (int i = 0; i < N; i++) {
        th_clear(&h[i]);
        for (int k = i + 1; k < NINPUTS + 2 && flow_run_status(r[i]) != FLOW_RUN_DONE; k++)
            CHECK(flow_run_input(r[i], k < NINPUTS ? INPUTS[k] : "1") == FLOW_OK);
        CHECK(flow_run_status(r[i]) == FLOW_RUN_DONE);
        if (flow_run_status(r[i]) != FLOW_RUN_DONE)
            th_dump(&h[i]);
    }
    /* run 0 waited on Q2 (step one, old code): it finished step one, then took the new steps */
    CHECK(th_find(&h[0], "say V2 Q2") < 0);
    CHECK(th_find(&h[0], "say V2 Q3 请选择方案 [退款|补发|换货]") >= 0);
    CHECK(th_find(&h[0], "say V2 EXTRA") >= 0);
    CHECK(th_find(&h[0], "say V2 BYE 退款没到账/") >= 0);
    /* runs 1 and 2 were inside step two: they finished it with the old code (two options, no
     * 'extra' step), then went on to the new step three */
    CHECK(th_find(&h[1], "say Q4 确认吗？") >= 0);
    CHECK(th_find(&h[1], "say V2 EXTRA") < 0);
    CHECK(th_find(&h[1], "say V2 BYE 退款没到账/退款/5") >= 0);
    CHECK(th_find(&h[2], "say V2 Q5") >= 0);
    CHECK(th_find(&h[2], "say V2 BYE 退款没到账/退款/5") >= 0);
    /* run 3 was in step three (old); it ends with the old goodbye */
    CHECK(th_find(&h[3], "say BYE 退款没到账/12345678/退款/true/5") >= 0);
    CHECK(th_find(&h[3], "say V2") < 0);
    /* a new run starts on the new version */
    th_host hn = {.now = 2000};
    flow_run_t *rn = NULL;
    CHECK(flow_run_start(e, &th_ops, &hn, &c, NULL, &rn) == FLOW_OK);
    CHECK(th_find(&hn, "say V2 Q1") == 0);
    flow_run_free(rn);
    th_free(&hn);
    for (int i = 0; i < N; i++) {
        flow_run_free(r[i]);
        th_free(&h[i]);
    }
    flow_engine_destroy(e);
    th_rmtree(dir);
}

/* A broken reload is refused with file:line; running and new conversations keep the old rules. */
static void test_reload_rejected(void)
{
    char dir[64], err[1024] = "";
    th_host h = {.now = 1000};
    flow_run_t *r = NULL;
    CHECK(make_rules(dir, sizeof(dir), FLOW_V1) == 0);
    flow_engine_t *e = engine(dir);
    flow_customer_t c = customer(NULL);
    CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
    CHECK(flow_run_input(r, "a") == FLOW_OK);

    CHECK(th_put(dir, "flows/main.lua",
                 "return {\n  start = 'x',\n  steps = { x = function( end }\n}\n") == 0);
    CHECK(flow_engine_reload(e, err, sizeof(err)) == FLOW_ERULES);
    CHECK(strstr(err, "flows/main.lua:3:") != NULL);
    CHECK(flow_engine_generation(e) == 1);

    CHECK(th_put(dir, "flows/main.lua",
                 "return {\n  start = 'x',\n  steps = {\n    x = function(chat)\n      return "
                 "'y'\n    end,\n  },\n}\n") == 0);
    CHECK(flow_engine_reload(e, err, sizeof(err)) == FLOW_ERULES);
    CHECK(strstr(err, "flows/main.lua:5: step returns \"y\"") != NULL);

    CHECK(th_put(dir, "lib/broken.lua", "local x = nil\nreturn x.y\n") == 0);
    CHECK(th_put(dir, "flows/main.lua", FLOW_V2) == 0);
    CHECK(flow_engine_reload(e, err, sizeof(err)) == FLOW_ERULES);
    CHECK(strstr(err, "lib/broken.lua:2:") != NULL);
    CHECK(flow_engine_generation(e) == 1);

    /* the running conversation and a new one still use the first rules */
    CHECK(flow_run_input(r, "b") == FLOW_OK);
    CHECK(th_find(&h, "say Q3 请选择方案 [退款|补发]") >= 0);
    th_host h2 = {.now = 1000};
    flow_run_t *r2 = NULL;
    CHECK(flow_run_start(e, &th_ops, &h2, &c, NULL, &r2) == FLOW_OK);
    CHECK(th_find(&h2, "say Q1") == 0);
    flow_run_free(r2);
    th_free(&h2);
    flow_run_free(r);
    th_free(&h);
    flow_engine_destroy(e);
    th_rmtree(dir);
}

/* A reload parses only the files whose text changed: the others keep the function the load
 * before compiled (path -> text -> function), with the same behaviour.  A rejected load leaves
 * the kept functions as they were. */
static unsigned files_parsed(flow_engine_t *e, unsigned *kept)
{
    unsigned parsed;
    flow_engine_files(e, &parsed, kept);
    return parsed;
}

static const char *said_first(flow_engine_t *e, th_host *h)
{
    th_clear(h);
    flow_run_free(start_one(e, h));
    return h->n > 0 ? h->line[0] : "";
}

static void test_reload_keeps_compiled(void)
{
    static const char *SAY = "return { start = 's', steps = { s = function(chat)\n"
                             "  chat:say(lib.words.hello .. ' %s') chat:wait() end } }\n";
    char dir[64], err[1024] = "", flow[256];
    unsigned kept = 0;
    th_host h = {.now = 1000};
    snprintf(flow, sizeof(flow), SAY, "v1");
    CHECK(make_rules(dir, sizeof(dir), flow) == 0);
    CHECK(th_put(dir, "lib/words.lua", "return { hello = 'hi' }\n") == 0);
    flow_engine_t *e = engine(dir);
    CHECK(e != NULL);
    CHECK(files_parsed(e, &kept) == 2 && kept == 0);
    CHECK(strcmp(said_first(e, &h), "say hi v1") == 0);

    CHECK(flow_engine_reload(e, err, sizeof(err)) == FLOW_OK);
    CHECK(files_parsed(e, &kept) == 0 && kept == 2);
    CHECK(strcmp(said_first(e, &h), "say hi v1") == 0);

    snprintf(flow, sizeof(flow), SAY, "v2");
    CHECK(th_put(dir, "flows/main.lua", flow) == 0);
    CHECK(flow_engine_reload(e, err, sizeof(err)) == FLOW_OK);
    CHECK(files_parsed(e, &kept) == 1 && kept == 1);
    CHECK(strcmp(said_first(e, &h), "say hi v2") == 0);

    CHECK(th_put(dir, "lib/words.lua", "return { hello = 'hello' \n") == 0);
    CHECK(flow_engine_reload(e, err, sizeof(err)) == FLOW_ERULES);
    CHECK(strstr(err, "lib/words.lua:") != NULL);
    CHECK(files_parsed(e, &kept) == 1 && kept == 0);
    CHECK(strcmp(said_first(e, &h), "say hi v2") == 0);

    /* back to the text of the last accepted load: nothing to parse */
    CHECK(th_put(dir, "lib/words.lua", "return { hello = 'hi' }\n") == 0);
    CHECK(flow_engine_reload(e, err, sizeof(err)) == FLOW_OK);
    CHECK(files_parsed(e, &kept) == 0 && kept == 2);
    CHECK(th_put(dir, "lib/words.lua", "return { hello = 'hey' }\n") == 0);
    CHECK(flow_engine_reload(e, err, sizeof(err)) == FLOW_OK);
    CHECK(files_parsed(e, &kept) == 1 && kept == 1);
    CHECK(strcmp(said_first(e, &h), "say hey v2") == 0);
    th_free(&h);
    flow_engine_destroy(e);
    th_rmtree(dir);
}

static const char *FLOW_BOMBS =
    "return {\n"
    "  default = true,\n"
    "  start = 's',\n"
    "  steps = {\n"
    "    s = function(chat, st)\n"
    "      local what = chat:ask('what?')\n"
    "      if what == 'loop' then while true do end end\n"
    "      if what == 'swallow' then\n"
    "        while true do pcall(function() while true do end end) end\n"
    "      end\n"
    "      if what == 'memory' then\n"
    "        local t = {}\n"
    "        while true do t[#t + 1] = string.rep('x', 1000000) .. #t end\n"
    "      end\n"
    "      if what == 'error' then error('boom') end\n"
    "      chat:say('fine ' .. what)\n"
    "      return 's'\n"
    "    end,\n"
    "  },\n"
    "}\n";

/* A runaway or memory-hungry conversation fails alone; the others go on. */
static void test_isolation(void)
{
    static const char *bombs[] = {"loop", "swallow", "memory", "error"};
    static const char *why[] = {"instructions", "instructions", "memory", "boom"};
    char dir[64];
    CHECK(make_rules(dir, sizeof(dir), FLOW_BOMBS) == 0);
    flow_engine_t *e = engine(dir);
    flow_customer_t c = customer(NULL);
    th_host good = {.now = 1000};
    flow_run_t *rg = NULL;
    CHECK(flow_run_start(e, &th_ops, &good, &c, NULL, &rg) == FLOW_OK);
    size_t base = flow_engine_memory(e);
    for (int i = 0; i < 4; i++) {
        th_host h = {.now = 1000};
        flow_run_t *r = NULL;
        CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
        CHECK(flow_run_input(r, bombs[i]) == FLOW_EFAILED);
        CHECK(flow_run_status(r) == FLOW_RUN_FAILED);
        CHECK(flow_run_error(r) && strstr(flow_run_error(r), why[i]));
        if (!flow_run_error(r) || !strstr(flow_run_error(r), why[i]))
            fprintf(stderr, "error for %s: %s\n", bombs[i], flow_run_error(r));
        CHECK(th_find(&h, "say 抱歉，系统处理您的消息时出现了问题") >= 0);
        CHECK(th_find(&h, "escalate flow_error 2") >= 0);
        CHECK(flow_run_escalated(r));
        CHECK(h.saved && strstr(h.saved, "\"status\":\"failed\""));
        CHECK(flow_run_input(r, "again") == FLOW_EENDED);
        /* the other conversation carries on */
        char msg[32], want[48];
        snprintf(msg, sizeof(msg), "hello %d", i);
        snprintf(want, sizeof(want), "say fine hello %d", i);
        CHECK(flow_run_input(rg, msg) == FLOW_OK);
        CHECK(th_find(&good, want) >= 0);
        flow_run_free(r);
        th_free(&h);
    }
    CHECK(th_count(&good, "escalate") == 0);
    /* and a new one works normally */
    th_host h2 = {.now = 1000};
    flow_run_t *r2 = NULL;
    CHECK(flow_run_start(e, &th_ops, &h2, &c, NULL, &r2) == FLOW_OK);
    CHECK(flow_run_input(r2, "hello") == FLOW_OK);
    CHECK(th_find(&h2, "say fine hello") >= 0);
    /* the memory bomb's memory came back */
    if (flow_engine_memory(e) >= base + 4 * 1024 * 1024)
        fprintf(stderr, "memory: base %zu now %zu\n", base, flow_engine_memory(e));
    CHECK(flow_engine_memory(e) < base + 4 * 1024 * 1024);
    flow_run_free(r2);
    th_free(&h2);
    flow_run_free(rg);
    th_free(&good);
    flow_engine_destroy(e);
    th_rmtree(dir);
}

/* One turn keeps 1 MB strings, saying how many it has every fourth.  The VM's cap is 1024 MB
 * (the default): the turn fails with a memory error after at most 64 MB of its own, not a
 * quarter of the cap, and the memory comes back. */
static const char *FLOW_GROW = "return {\n"
                               "  default = true,\n"
                               "  start = 's',\n"
                               "  steps = {\n"
                               "    s = function(chat, st)\n"
                               "      chat:ask('what?')\n"
                               "      local t = {}\n"
                               "      for i = 1, 1000 do\n"
                               "        t[i] = string.rep('x', 1000000) .. i\n"
                               "        if i % 4 == 0 then chat:say('mb ' .. i) end\n"
                               "      end\n"
                               "      return 's'\n"
                               "    end,\n"
                               "  },\n"
                               "}\n";

static void test_turn_cap(void)
{
    char dir[64];
    CHECK(make_rules(dir, sizeof(dir), FLOW_GROW) == 0);
    flow_engine_t *e = engine_mb(dir, 1024);
    flow_customer_t c = customer(NULL);
    th_host h = {.now = 1000};
    flow_run_t *r = NULL;
    CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
    size_t base = flow_engine_memory(e);
    CHECK(flow_run_input(r, "grow") == FLOW_EFAILED);
    CHECK(flow_run_error(r) && strstr(flow_run_error(r), "memory"));
    int kept = 0;
    for (int i = 0; i < h.n; i++)
        if (strncmp(h.line[i], "say mb ", 7) == 0)
            kept = atoi(h.line[i] + 7);
    printf("turn cap: failed after %d MB of its own\n", kept);
    CHECK(kept >= 48 && kept <= 64);
    CHECK(flow_engine_memory(e) < base + 4 * 1024 * 1024);
    flow_run_free(r);
    th_free(&h);
    flow_engine_destroy(e);
    th_rmtree(dir);
}

/* Two runs interleaved with a bomb between their turns: the innocent one is untouched. */
static void test_isolation_interleaved(void)
{
    char dir[64];
    CHECK(make_rules(dir, sizeof(dir), FLOW_BOMBS) == 0);
    flow_engine_t *e = engine(dir);
    flow_customer_t c = customer(NULL);
    th_host ha = {.now = 1000}, hb = {.now = 1000};
    flow_run_t *a = NULL, *b = NULL;
    CHECK(flow_run_start(e, &th_ops, &ha, &c, NULL, &a) == FLOW_OK);
    CHECK(flow_run_start(e, &th_ops, &hb, &c, NULL, &b) == FLOW_OK);
    CHECK(flow_run_input(a, "one") == FLOW_OK);
    CHECK(flow_run_input(b, "memory") == FLOW_EFAILED);
    CHECK(flow_run_input(a, "two") == FLOW_OK);
    CHECK(flow_run_input(b, "three") == FLOW_EENDED);
    CHECK(flow_run_input(a, "four") == FLOW_OK);
    CHECK(th_count(&ha, "say fine") == 3);
    CHECK(th_count(&ha, "escalate") == 0);
    flow_run_free(a);
    flow_run_free(b);
    th_free(&ha);
    th_free(&hb);
    flow_engine_destroy(e);
    th_rmtree(dir);
}

static const char *FLOW_HOOKED =
    "return {\n"
    "  default = true,\n"
    "  start = 's',\n"
    "  on_message = function(chat, text)\n"
    "    chat.state.seen = (chat.state.seen or 0) + 1\n"
    "  end,\n"
    "  on_done = 'again',\n"
    "  steps = {\n"
    "    s = function(chat, st)\n"
    "      local a = chat:ask('Q 请描述问题', { options = { '退款', '其他' } })\n"
    "      chat:say('GOT ' .. a)\n"
    "      local b = chat:ask('Q 还有吗')\n"
    "      chat:say('GOT ' .. b)\n"
    "    end,\n"
    "    again = function(chat, st)\n"
    "      chat:say('AGAIN ' .. chat.last .. ' ' .. st.seen)\n"
    "    end,\n"
    "  },\n"
    "}\n";

static const char *ESCALATION =
    "return function(ctx)\n"
    "  if ctx.text:find('人工', 1, true) then\n"
    "    return { reason = 'human_request', priority = 2, message = '好的，马上为您转人工' }\n"
    "  end\n"
    "  if ctx.state.seen and ctx.state.seen >= 10 then return 'too_long' end\n"
    "end\n";

static void test_escalation_hook(void)
{
    char dir[64];
    CHECK(make_rules(dir, sizeof(dir), FLOW_HOOKED) == 0);
    CHECK(th_put(dir, "escalation.lua", ESCALATION) == 0);
    flow_engine_t *e = engine(dir);
    flow_customer_t c = customer(NULL);
    th_host h = {.now = 1000};
    flow_run_t *r = NULL;
    CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
    CHECK(flow_run_input(r, "我要转人工") == FLOW_OK);
    CHECK(th_find(&h, "say 好的，马上为您转人工") >= 0);
    CHECK(th_find(&h, "escalate human_request 2 {") >= 0);
    CHECK(th_find(&h, "GOT") < 0); /* the message went to the human, not the flow */
    CHECK(flow_run_escalated(r));
    /* while escalated the flow does not get messages, and no second escalation happens */
    CHECK(flow_run_input(r, "人工人工") == FLOW_OK);
    CHECK(th_count(&h, "escalate") == 1);
    th_clear(&h);
    /* restart while escalated: still escalated, nothing said */
    char *saved = strdup(h.saved);
    flow_run_free(r);
    CHECK(flow_run_start(e, &th_ops, &h, &c, saved, &r) == FLOW_OK);
    free(saved);
    CHECK(h.n == 0);
    CHECK(flow_run_escalated(r));
    /* hand-back repeats the pending question with its options */
    CHECK(flow_run_handback(r, "handback") == FLOW_OK);
    CHECK(th_find(&h, "say Q 请描述问题 [退款|其他]") == 0);
    CHECK(!flow_run_escalated(r));
    CHECK(flow_run_input(r, "退款") == FLOW_OK);
    CHECK(th_find(&h, "say GOT 退款") >= 0);
    CHECK(flow_run_input(r, "没有了") == FLOW_OK);
    CHECK(flow_run_status(r) == FLOW_RUN_DONE);
    /* on_done: a message after the end starts the on_done step; on_message saw all 5 */
    CHECK(flow_run_input(r, "再问一下") == FLOW_OK);
    CHECK(th_find(&h, "say AGAIN 再问一下 5") >= 0);
    flow_run_free(r);
    th_free(&h);
    flow_engine_destroy(e);
    th_rmtree(dir);
}

/* State survives a restart as JSON, including nesting, lists and Chinese text. */
static void test_state_roundtrip(void)
{
    char dir[64];
    CHECK(make_rules(dir, sizeof(dir),
                     "return { start = 's', steps = { s = function(chat, st)\n"
                     "  st.slots.order_id = '2024030512345'\n"
                     "  st.list = { 1, 2.5, '三', { x = true } }\n"
                     "  st.nested = { a = { b = { c = '深' } } }\n"
                     "  st.empty = {}\n"
                     "  local a = chat:ask('Q')\n"
                     "  assert(st.list[3] == '三' and st.list[4].x == true)\n"
                     "  assert(st.nested.a.b.c == '深' and math.type(st.list[1]) == 'integer')\n"
                     "  assert(st.list[2] == 2.5 and next(st.empty) == nil)\n"
                     "  chat:say('OK ' .. st.slots.order_id .. ' ' .. a)\n"
                     "end } }\n") == 0);
    flow_engine_t *e = engine(dir);
    flow_customer_t c = customer(NULL);
    th_host h = {.now = 1000};
    flow_run_t *r = NULL;
    CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
    CHECK(h.saved && strstr(h.saved, "\"order_id\":\"2024030512345\""));
    char *saved = strdup(h.saved);
    flow_run_free(r);
    CHECK(flow_run_start(e, &th_ops, &h, &c, saved, &r) == FLOW_OK);
    free(saved);
    CHECK(flow_run_input(r, "x") == FLOW_OK);
    CHECK(th_find(&h, "say OK 2024030512345 x") >= 0);
    flow_run_free(r);
    th_free(&h);
    flow_engine_destroy(e);
    th_rmtree(dir);
}

static void test_bad_saved_state(void)
{
    char dir[64];
    CHECK(make_rules(dir, sizeof(dir), FLOW_V1) == 0);
    flow_engine_t *e = engine(dir);
    flow_customer_t c = customer(NULL);
    th_host h = {.now = 1000};
    flow_run_t *r = NULL;
    CHECK(flow_run_start(e, &th_ops, &h, &c, "not json", &r) == FLOW_ESTATE && r == NULL);
    CHECK(flow_run_start(e, &th_ops, &h, &c, "{\"v\":2}", &r) == FLOW_ESTATE);
    CHECK(flow_run_start(e, &th_ops, &h, &c, "{\"v\":1,\"flow\":\"main\",\"status\":\"waiting\"}",
                         &r) == FLOW_ESTATE);
    CHECK(h.n == 0);
    /* a saved run of a flow that no longer exists fails politely */
    CHECK(flow_run_start(e, &th_ops, &h, &c,
                         "{\"v\":1,\"flow\":\"gone\",\"status\":\"waiting\",\"step\":\"x\","
                         "\"base\":{\"state\":{}},\"log\":[]}",
                         &r) == FLOW_EFAILED);
    CHECK(flow_run_status(r) == FLOW_RUN_FAILED);
    CHECK(th_find(&h, "escalate flow_error") >= 0);
    flow_run_free(r);
    /* unknown flow for a new run, bad customer */
    flow_customer_t bad = customer("nope");
    CHECK(flow_run_start(e, &th_ops, &h, &bad, NULL, &r) == FLOW_ESTATE);
    bad = customer(NULL);
    bad.id = "";
    CHECK(flow_run_start(e, &th_ops, &h, &bad, NULL, &r) == FLOW_EINVAL);
    th_free(&h);
    flow_engine_destroy(e);
    th_rmtree(dir);
}

/* flow_check_dir names the file and, where there is one, the line. */
static void test_check_errors(void)
{
    static const struct {
        const char *file, *text, *want;
    } cases[] = {
        {"flows/main.lua", "return 42\n", "must return a table"},
        {"flows/main.lua", "return { steps = { a = function() end } }\n", "start must name"},
        {"flows/main.lua", "return { start = 'a', stepz = {} }\n", "unknown field 'stepz'"},
        {"flows/main.lua", "return { start = 'a', steps = { a = 1 } }\n",
         "step 'a' is not a function"},
        {"flows/main.lua", "\x1bLuaT\x00\x19\x93\r\n", "binary chunks are not allowed"},
        {"flows/main.lua",
         "return {\n start = 'a',\n steps = { a = function() return 'b' end } }\n",
         "main.lua:3: step returns \"b\""},
        {"flows/main.lua", "while true do end\n", "instructions"},
        {"flows/main.lua", "local x = load\nreturn x('return 1')\n", "main.lua:2:"},
        {"flows/main.lua",
         "return { start = 'a', on_done = 'zz', steps = { a = function() end } }\n",
         "on_done must name"},
        {"flows/Main.lua", "return {}\n", "file names must be lowercase"},
        {"escalation.lua", "return 1\n", "must return a function"},
        {"lib/a.lua", "return lib.b\n", "circle"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char dir[64], err[1024] = "";
        config_t cfg;
        CHECK(th_tmpdir(dir, sizeof(dir)) != NULL);
        if (strncmp(cases[i].file, "flows/", 6) != 0 ||
            strcmp(cases[i].file, "flows/main.lua") != 0)
            th_put(dir, "flows/ok.lua", "return { start = 'a', steps = { a = function() end } }\n");
        if (strcmp(cases[i].file, "lib/a.lua") == 0)
            th_put(dir, "lib/b.lua", "return lib.a\n");
        size_t len = strcmp(cases[i].want, "binary chunks are not allowed") == 0
                         ? 10
                         : strlen(cases[i].text);
        th_write(dir, cases[i].file, cases[i].text, len);
        th_config(&cfg, dir);
        int rc = flow_check_dir(&cfg, dir, err, sizeof(err));
        CHECK(rc == FLOW_ERULES);
        if (!strstr(err, cases[i].want)) {
            fprintf(stderr, "case %zu: want \"%s\" in \"%s\"\n", i, cases[i].want, err);
            CHECK(0);
        }
        config_free(&cfg);
        th_rmtree(dir);
    }
}

/* Runs share nothing through file-level variables: each conversation runs the file afresh. */
static void test_file_locals_per_run(void)
{
    char dir[64];
    CHECK(make_rules(dir, sizeof(dir),
                     "local counter = 0\n"
                     "shared = (shared or 0) + 1\n"
                     "return { start = 's', steps = { s = function(chat, st)\n"
                     "  counter = counter + 1\n"
                     "  chat:say('COUNT ' .. counter .. ' ' .. shared)\n"
                     "end } }\n") == 0);
    flow_engine_t *e = engine(dir);
    flow_customer_t c = customer(NULL);
    for (int i = 0; i < 3; i++) {
        th_host h = {.now = 1000};
        flow_run_t *r = NULL;
        CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
        CHECK(th_find(&h, "say COUNT 1 1") == 0);
        flow_run_free(r);
        th_free(&h);
    }
    flow_engine_destroy(e);
    th_rmtree(dir);
}

/* chat:ask outside a step, too many step changes, and a destroyed engine. */
static void test_misuse(void)
{
    char dir[64];
    CHECK(make_rules(
              dir, sizeof(dir),
              "return { start = 's',\n"
              "  on_message = function(chat, text) if text == 'ask' then chat:ask('x') end end,\n"
              "  steps = {\n"
              "    s = function(chat, st) chat:ask('Q') return 'p' end,\n"
              "    p = function(chat, st) return 's2' end,\n"
              "    s2 = function(chat, st) return 'p' end,\n"
              "  } }\n") == 0);
    flow_engine_t *e = engine(dir);
    flow_customer_t c = customer(NULL);
    th_host h = {.now = 1000};
    flow_run_t *r = NULL;
    CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
    CHECK(flow_run_input(r, "ask") == FLOW_EFAILED);
    CHECK(strstr(flow_run_error(r), "chat:ask can only wait inside a step") != NULL);
    flow_run_free(r);
    th_clear(&h);
    CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
    CHECK(flow_run_input(r, "go") == FLOW_EFAILED);
    CHECK(strstr(flow_run_error(r), "step changes without waiting") != NULL);
    flow_run_free(r);
    th_clear(&h);
    CHECK(flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
    flow_engine_destroy(e);
    CHECK(flow_run_input(r, "x") == FLOW_EENDED);
    CHECK(flow_run_tick(r, 5000) == FLOW_EENDED);
    flow_run_free(r);
    th_free(&h);
    th_rmtree(dir);
}

/* chat:match, the answer-to-option matching of chat:choose, step by step (rules/README.md):
 * exact, ordinal, contained word, part of one label, then most of the answer's characters in
 * one label (clearly more than in any other; each character counted once).  The last option
 * set has a label that is not valid UTF-8: step 5 must still count its characters. */
static void test_choice_matching(void)
{
    static const struct {
        const char *answer, *want;
    } cases[] = {
        {"换货", "3"},     {"2", "2"},        {"我要补发商品吧", "2"}, {"补发", "2"},
        {"退货退款", "1"}, {"货款", "nil"},   {"退一下东西", "nil"},   {"B 款退东西吗", "nil"},
        {"B 款退", "1"},   {"C 款退啊", "1"},
    };
    char dir[64], line[64];
    CHECK(make_rules(dir, sizeof(dir),
                     "local A = { '申请退款', '补发商品', '换货' }\n"
                     "local B = { '退退款款', '换货' }\n"
                     "local C = { '\\255退款', '换货' }\n"
                     "return { start = 's',\n"
                     "  on_message = function(chat, text)\n"
                     "    local set, a = A, text\n"
                     "    if text:sub(1, 2) == 'B ' then set, a = B, text:sub(3) end\n"
                     "    if text:sub(1, 2) == 'C ' then set, a = C, text:sub(3) end\n"
                     "    local _, i = chat:match(a, set)\n"
                     "    chat:say(tostring(i))\n"
                     "  end,\n"
                     "  steps = { s = function(chat, st) chat:wait() end } }\n") == 0);
    flow_engine_t *e = engine(dir);
    th_host h = {.now = 1000};
    flow_run_t *r = start_one(e, &h);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        th_clear(&h);
        CHECK(flow_run_input(r, cases[i].answer) == FLOW_OK);
        snprintf(line, sizeof(line), "say %s", cases[i].want);
        int ok = h.n == 1 && strcmp(h.line[0], line) == 0; /* on_message says one line */
        if (!ok)
            fprintf(stderr, "chat:match(%s): want %s\n", cases[i].answer, cases[i].want);
        CHECK(ok);
    }
    flow_run_free(r);
    flow_engine_destroy(e);
    th_free(&h);
    th_rmtree(dir);
}

/* kb.search through the engine, against the fixture knowledge base in tests/data/flow. */
static void test_kb_search(void)
{
    char dir[64], err[1024] = "";
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
    CHECK(kb_register(db) == 0);
    CHECK(kb_migrate(db, err, sizeof(err)) == 0);
    CHECK(kb_seed_dir(db, REDRESS_SOURCE_DIR "/tests/data/flow", err, sizeof(err)) == 5);
    CHECK(
        make_rules(
            dir, sizeof(dir),
            "return { start = 's', steps = { s = function(chat, st)\n"
            "  local r = kb.search('工资卡短信费扣了两次', { category = 'bank.fee' })\n"
            "  local t = r.hits[1]\n"
            "  chat:say('CONF ' .. r.confidence .. ' N ' .. #r.hits)\n"
            "  chat:say('HIT ' .. t.kind .. ' ' .. t.key .. ' ' .. t.title .. ' ' .. t.deadline)\n"
            "  assert(type(t.score) == 'number' and math.type(t.id) == 'integer')\n"
            "  local offers, case = lib.solutions.build(r, { amount = 4, account = '1234' }, "
            "'bank.fee')\n"
            "  chat:say('OFFER ' .. offers[1].title .. ' ' .. offers[1].text .. ' ' .. "
            "offers[1].hours)\n"
            "  chat:say('CASE ' .. (case and case.text or '-'))\n"
            "  local none = kb.search('完全无关的内容', { category = 'travel.hotel' })\n"
            "  chat:say('NONE ' .. none.confidence .. ' ' .. #none.hits)\n"
            "  local std = lib.solutions.build(none, {}, 'travel.hotel')\n"
            "  chat:say('STD ' .. std[1].source .. ' ' .. std[1].title)\n"
            "end } }\n") == 0);
    /* the real libs and lexicons of rules/, so lib.solutions is what the complaint flow uses */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp -r %s/rules/lib %s/rules/lexicon %s/", REDRESS_SOURCE_DIR,
             REDRESS_SOURCE_DIR, dir);
    CHECK(system(cmd) == 0);
    config_t cfg;
    th_config(&cfg, dir);
    flow_engine_t *e = NULL;
    CHECK(flow_engine_create(&e, &cfg, db, err, sizeof(err)) == FLOW_OK);
    if (!e)
        fprintf(stderr, "engine: %s\n", err);
    flow_customer_t c = customer(NULL);
    th_host h = {.now = 1000};
    flow_run_t *r = NULL;
    CHECK(e && flow_run_start(e, &th_ops, &h, &c, NULL, &r) == FLOW_OK);
    CHECK(th_find(&h, "say CONF answer N ") >= 0 || th_find(&h, "say CONF suggest N ") >= 0);
    CHECK(th_find(&h, "say HIT template fixture-fee-001 短信费重复扣收退还 3个工作日内") >= 0);
    CHECK(th_find(&h, "say OFFER 短信费重复扣收退还 "
                      "经核实，您尾号1234的账户多扣的4元短信费将退回原账户。 101") >= 0);
    CHECK(th_find(&h, "say CASE 退还重复扣收的短信费并致歉。") >= 0);
    CHECK(th_find(&h, "say NONE none 0") >= 0);
    CHECK(th_find(&h, "say STD standard 酒店问题处理") >= 0);
    if (th_failures)
        th_dump(&h);
    flow_run_free(r);
    th_free(&h);
    flow_engine_destroy(e);
    config_free(&cfg);
    sqlite3_close(db);
    th_rmtree(dir);
}

int main(void)
{
    test_conversation();
    test_restart_everywhere();
    test_restart_timers();
    test_reload_mid_conversation();
    test_reload_rejected();
    test_reload_keeps_compiled();
    test_isolation();
    test_isolation_interleaved();
    test_turn_cap();
    test_escalation_hook();
    test_state_roundtrip();
    test_bad_saved_state();
    test_check_errors();
    test_file_locals_per_run();
    test_misuse();
    test_choice_matching();
    test_kb_search();
    printf("test_flow_engine: %d checks, %d failed\n", th_checks, th_failures);
    return th_failures ? 1 : 0;
}
