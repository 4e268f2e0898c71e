/*
 * test_flow_sandbox.c - runs every escape/abuse script in tests/sandbox/ through the real engine.
 *
 * One engine for the whole suite (limits: 200000 instructions per turn, 32 MiB).  For each
 * script the harness writes it into rules/flows/attack.lua and hot-reloads:
 *
 *   -- mode: step (default)  the script is the body of the flow's only step, function(chat, state)
 *   -- mode: load            the script is the file's top level, followed by a trivial flow
 *
 *   -- expect: ok            the run must not fail and must say "ok" (the script asserts
 *                            containment itself, then says ok)
 *   -- expect: fail A|B      the run must fail with an error containing A or B, and the
 *                            customer must get the polite message and a flow_error escalation
 *   -- expect: reject A|B    (load mode) the reload must be refused with A or B in the message
 *
 * Around every script a "canary" conversation is started before and finished after: it checks
 * that the libraries, the string metatable, shared modules and globals are intact - so no script
 * changed anything another conversation can see, and no script took the engine down.  At the end
 * the VM's memory must be back near where it started.
 */
#include "flow.h"
#include "test_flow_host.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SCRIPTS 256

static const char *CANARY =
    "return {\n"
    "  default = true,\n"
    "  start = 's',\n"
    "  steps = { s = function(chat, state)\n"
    "    local a = chat:ask('canary?')\n"
    "    assert(('abc'):upper() == 'ABC', 'string methods')\n"
    "    assert(string.rep('ab', 3) == 'ababab', 'string.rep')\n"
    "    assert(string.format('%d-%s', 42, 'x') == '42-x', 'string.format')\n"
    "    assert(('hello'):find('l+') == 3 and ('k=v'):match('(%w)=(%w)') == 'k', 'patterns')\n"
    "    assert(('abc'):gsub('b', '%0%0') == 'abbc', 'gsub')\n"
    "    assert(table.concat({ 1, 2 }, ',') == '1,2', 'table.concat')\n"
    "    assert(math.floor(2.5) == 2 and math.max(1, 3) == 3, 'math')\n"
    "    assert(utf8.len('退款') == 2, 'utf8')\n"
    "    assert(getmetatable('') == false, 'string metatable hidden')\n"
    "    assert(lib.shared.words[1] == 'good' and #lib.shared.words == 2, 'lib data')\n"
    "    assert(lib.shared.hello() == 'hi', 'lib function')\n"
    "    assert(lexicon.words.list[1] == '退款', 'lexicon')\n"
    "    assert(string.dump == nil and load == nil and os == nil, 'sandbox')\n"
    "    assert(type(pcall) == 'function' and tostring(1) == '1', 'base')\n"
    "    assert(x_from_attack == nil, 'a global leaked between conversations')\n"
    "    assert(type(kb.search) == 'function' and type(clock.now) == 'function', 'api')\n"
    "    chat:say('canary ok ' .. a)\n"
    "  end },\n"
    "}\n";

static const char *SHARED_LIB = "local M = { words = { 'good', 'fine' } }\n"
                                "function M.hello() return 'hi' end\n"
                                "return M\n";

static const char *LEXICON = "return { list = { '退款', '投诉' } }\n";

typedef struct script {
    char name[256];
    char expect[16]; /* ok, fail, reject */
    char arg[256];
    int load_mode;
} script;

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

static int parse_headers(const char *text, script *sc)
{
    const char *p;
    sc->expect[0] = sc->arg[0] = '\0';
    if ((p = strstr(text, "-- expect: "))) {
        p += 11;
        sscanf(p, "%15s", sc->expect);
        p += strlen(sc->expect);
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, "\n");
        snprintf(sc->arg, sizeof(sc->arg), "%.*s", (int)n, p);
    }
    sc->load_mode = strstr(text, "-- mode: load") != NULL;
    return strcmp(sc->expect, "ok") == 0 || strcmp(sc->expect, "fail") == 0 ||
                   strcmp(sc->expect, "reject") == 0
               ? 0
               : -1;
}

/* 1 when s contains one of the |-separated alternatives. */
static int contains_any(const char *s, const char *alts)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", alts);
    for (char *save = NULL, *a = strtok_r(buf, "|", &save); a; a = strtok_r(NULL, "|", &save))
        if (s && strstr(s, a))
            return 1;
    return 0;
}

static int run_script(flow_engine_t *e, const char *rules, const char *path, script *sc)
{
    char err[2048] = "";
    int ok = 1;
    char *text = read_all(path);
    if (!text || parse_headers(text, sc) != 0) {
        fprintf(stderr, "%s: missing or bad '-- expect:' header\n", path);
        free(text);
        return 0;
    }
    char *flow = NULL;
    if (sc->load_mode) {
        if (asprintf(&flow,
                     "%s\nreturn { start = 's', steps = { s = function(chat) "
                     "chat:say('ok') end } }\n",
                     text) < 0)
            flow = NULL;
    } else if (asprintf(&flow,
                        "return { start = 's', steps = { s = function(chat, state) %s\nend } }\n",
                        text) < 0) {
        flow = NULL;
    }
    free(text);
    if (!flow || th_put(rules, "flows/attack.lua", flow) != 0) {
        free(flow);
        return 0;
    }
    free(flow);

    flow_customer_t canary_c = {"canary", "金丝雀", "web", 0, 0, NULL};
    flow_customer_t attack_c = {"attacker", NULL, "web", 0, 0, "attack"};
    th_host hc = {.now = 1000}, ha = {.now = 1000};
    flow_run_t *canary = NULL, *attack = NULL;
    if (flow_run_start(e, &th_ops, &hc, &canary_c, NULL, &canary) != FLOW_OK) {
        fprintf(stderr, "%s: canary did not start\n", sc->name);
        ok = 0;
        goto out;
    }

    int rc = flow_engine_reload(e, err, sizeof(err));
    if (strcmp(sc->expect, "reject") == 0) {
        if (rc != FLOW_ERULES || !contains_any(err, sc->arg)) {
            fprintf(stderr, "%s: expected the reload to be rejected with \"%s\", got %d \"%s\"\n",
                    sc->name, sc->arg, rc, err);
            ok = 0;
        }
    } else if (rc != FLOW_OK) {
        fprintf(stderr, "%s: reload failed: %s\n", sc->name, err);
        ok = 0;
    } else {
        rc = flow_run_start(e, &th_ops, &ha, &attack_c, NULL, &attack);
        for (int i = 0; i < 3 && attack && flow_run_status(attack) == FLOW_RUN_WAITING; i++)
            rc = flow_run_input(attack, "继续");
        flow_run_status_t st = attack ? flow_run_status(attack) : FLOW_RUN_FAILED;
        if (strcmp(sc->expect, "ok") == 0) {
            if (st == FLOW_RUN_FAILED || th_find(&ha, "say ok") < 0) {
                fprintf(stderr, "%s: expected ok, the run %s: %s\n", sc->name,
                        st == FLOW_RUN_FAILED ? "failed" : "did not say ok",
                        attack ? flow_run_error(attack) : "(no run)");
                th_dump(&ha);
                ok = 0;
            }
        } else {
            const char *why = attack ? flow_run_error(attack) : NULL;
            if (st != FLOW_RUN_FAILED || !contains_any(why, sc->arg)) {
                fprintf(stderr, "%s: expected failure with \"%s\", got status %d: %s\n", sc->name,
                        sc->arg, st, why ? why : "(no error)");
                th_dump(&ha);
                ok = 0;
            } else if (th_find(&ha, "say 抱歉，系统处理您的消息时出现了问题") < 0 ||
                       th_find(&ha, "escalate flow_error 2") < 0) {
                fprintf(stderr, "%s: the customer was not told or not offered a human\n", sc->name);
                th_dump(&ha);
                ok = 0;
            }
        }
    }

    /* the other conversation goes on, and sees an intact world */
    if (flow_run_input(canary, "ping") != FLOW_OK || th_find(&hc, "say canary ok ping") < 0) {
        fprintf(stderr, "%s: the canary conversation broke: %s\n", sc->name,
                flow_run_error(canary) ? flow_run_error(canary) : "(no error)");
        th_dump(&hc);
        ok = 0;
    }
out:
    flow_run_free(attack);
    flow_run_free(canary);
    th_free(&ha);
    th_free(&hc);
    return ok;
}

int main(void)
{
    const char *dir = REDRESS_SOURCE_DIR "/tests/sandbox";
    char rules[64], err[1024] = "";
    char *names[MAX_SCRIPTS];
    int n = 0, passed = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: cannot open\n", dir);
        return 1;
    }
    struct dirent *de;
    while ((de = readdir(d)) && n < MAX_SCRIPTS) {
        size_t len = strlen(de->d_name);
        if (len > 4 && strcmp(de->d_name + len - 4, ".lua") == 0)
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(names[0]), cmp_names);
    CHECK(n >= 30);

    CHECK(th_tmpdir(rules, sizeof(rules)) != NULL);
    th_put(rules, "flows/canary.lua", CANARY);
    th_put(rules, "flows/attack.lua", "return { start = 's', steps = { s = function() end } }\n");
    th_put(rules, "lib/shared.lua", SHARED_LIB);
    th_put(rules, "lexicon/words.lua", LEXICON);
    config_t cfg;
    th_config(&cfg, rules);
    cfg.lua_max_instructions = 200000;
    cfg.lua_max_memory_mb = 32;
    flow_engine_t *e = NULL;
    CHECK(flow_engine_create(&e, &cfg, NULL, err, sizeof(err)) == FLOW_OK);
    if (!e) {
        fprintf(stderr, "engine: %s\n", err);
        return 1;
    }
    size_t base = flow_engine_memory(e);
    for (int i = 0; i < n; i++) {
        char path[4096];
        script sc;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        snprintf(sc.name, sizeof(sc.name), "%s", names[i]);
        int ok = run_script(e, rules, path, &sc);
        CHECK(ok);
        passed += ok;
        printf("%-4s %-34s expect %s %s\n", ok ? "ok" : "FAIL", names[i], sc.expect, sc.arg);
        free(names[i]);
    }
    size_t end = flow_engine_memory(e);
    printf("VM memory: %zu KiB before, %zu KiB after\n", base / 1024, end / 1024);
    CHECK(end < base + 4 * 1024 * 1024);
    flow_engine_destroy(e);
    config_free(&cfg);
    th_rmtree(rules);
    printf("test_flow_sandbox: %d scripts, %d passed; %d checks, %d failed\n", n, passed, th_checks,
           th_failures);
    return th_failures ? 1 : 0;
}
