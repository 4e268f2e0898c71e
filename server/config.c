/*
 * config.c - the one table of settings.
 *
 * Design: every setting is a row {name, type, default, offset, min, max, help}.
 * config_defaults() walks the table and writes defaults; config_set() finds a row by name,
 * parses and range-checks the text, and writes the field at its offset.  Strings are owned
 * by the config_t (strdup) and freed by config_free().  Nothing here touches the event loop.
 *
 * Sources, applied in order: embedded defaults -> --config FILE (where it stands among the
 * flags) -> flags.  A later source overrides an earlier one.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_INT, T_STR } setting_type;

typedef struct setting {
    const char *name;
    setting_type type;
    const char *def;
    size_t offset;
    long min, max;       /* T_INT: inclusive range; T_STR: max length (0 = any) */
    const char *choices; /* T_STR: "a|b|c" allowed values, or NULL */
    const char *help;
} setting;

#define F(field) offsetof(config_t, field)

static const setting settings[] = {
    {"listen.host", T_STR, "127.0.0.1", F(listen_host), 0, 255, NULL, "address to listen on"},
    {"listen.port", T_INT, "8080", F(listen_port), 0, 65535, NULL, "TCP port (0 = any free port)"},
    {"limits.max_connections", T_INT, "20000", F(max_connections), 1, 1000000, NULL,
     "most simultaneous sockets"},
    {"data.dir", T_STR, "./data", F(data_dir), 1, 4096, NULL, "directory for the database"},
    {"data.db", T_STR, "redress.db", F(db_path), 1, 4096, NULL,
     "SQLite file, relative to data.dir unless absolute"},
    {"web.root", T_STR, REDRESS_SOURCE_DIR "/web", F(web_root), 1, 4096, NULL,
     "static files served over HTTP"},
    {"rules.dir", T_STR, REDRESS_SOURCE_DIR "/rules", F(rules_dir), 1, 4096, NULL,
     "directory of Lua flows"},
    {"kb.seed", T_STR, REDRESS_SOURCE_DIR "/kb/sample", F(kb_seed), 0, 4096, NULL,
     "directory of JSON Lines loaded into an empty knowledge base (empty = none)"},
    {"kb.synonyms", T_STR, REDRESS_SOURCE_DIR "/kb/synonyms.txt", F(kb_synonyms), 0, 4096, NULL,
     "synonym list for knowledge-base search (empty = none)"},
    {"web.allowed_origins", T_STR, "", F(allowed_origins), 0, 4096, NULL,
     "comma-separated Origins (scheme://host[:port]) allowed to open WebSockets besides the "
     "server's own; * allows any"},
    {"limits.max_message_bytes", T_INT, "16384", F(max_message_bytes), 256, 1048576, NULL,
     "largest WebSocket message; larger closes with 1009"},
    {"limits.max_text_chars", T_INT, "2000", F(max_text_chars), 1, 100000, NULL,
     "longest message text in characters"},
    {"limits.rate_per_sec", T_INT, "10", F(rate_per_sec), 1, 100000, NULL,
     "sustained frames per second per connection"},
    {"limits.rate_burst", T_INT, "30", F(rate_burst), 1, 100000, NULL,
     "burst of frames allowed per connection"},
    {"limits.idle_timeout_s", T_INT, "300", F(idle_timeout_s), 1, 86400, NULL,
     "close a connection silent for this long"},
    {"limits.ping_interval_s", T_INT, "30", F(ping_interval_s), 1, 3600, NULL,
     "send a WebSocket ping this often"},
    {"limits.hello_timeout_s", T_INT, "20", F(hello_timeout_s), 1, 3600, NULL,
     "a new socket must say hello within this time"},
    {"limits.session_memory_s", T_INT, "600", F(session_memory_s), 1, 86400, NULL,
     "keep a detached conversation in memory this long before reloading it from disk"},
    {"limits.flow_idle_s", T_INT, "60", F(flow_idle_s), 0, 86400, NULL,
     "after this many seconds without a turn a conversation's Lua flow state is freed from memory "
     "(it is saved in the database and restored on the next message); a conversation whose "
     "customer has left, or that is with the agents, is freed at once; 0 = never"},
    {"privacy.mask_transcripts", T_INT, "0", F(mask_transcripts), 0, 1, NULL,
     "1: mask ID card, bank card and phone numbers in customer messages before they are stored "
     "(logs are always masked)"},
    {"api.trust_loopback", T_INT, "1", F(api_trust_loopback), 0, 1, NULL,
     "1: /api requests from 127.0.0.0/8 or ::1 without a session cookie act as the operator "
     "(CLI tools); set 0 behind a reverse proxy on the same machine"},
    {"store.synchronous", T_STR, "normal", F(synchronous), 1, 16, "normal|full",
     "normal: acknowledged data survives a process crash; full: also a power loss"},
    {"store.batch_max", T_INT, "512", F(batch_max), 1, 100000, NULL,
     "most write operations in one transaction"},
    {"store.group_commit_us", T_INT, "1000", F(group_commit_us), 0, 1000000, NULL,
     "while the store is busy, a write waits up to this many microseconds for others to share "
     "its transaction: fewer commits and fewer wake-ups under load, at the cost of up to that "
     "wait on acks and replies; 0 = commit each batch at once"},
    {"store.checkpoint_pages", T_INT, "1000", F(checkpoint_pages), 16, 1000000, NULL,
     "the write-ahead log is copied into the database file by a thread of its own once it holds "
     "this many pages (4 KB each), so that commits do not wait for it (the writer copies only "
     "the last few pages it left, and all that is left whenever the log reaches 8 times this)"},
    {"flow.clock_start", T_STR, "", F(clock_start), 0, 32, NULL,
     "for tests and demos: \"YYYY-MM-DD HH:MM\" (Beijing time) the flows' clock starts at, "
     "then runs at normal speed (empty = the real time)"},
    {"flow.max_instructions", T_INT, "1000000", F(lua_max_instructions), 1000, 1000000000, NULL,
     "Lua instructions a flow may run per customer turn"},
    {"flow.max_memory_mb", T_INT, "1024", F(lua_max_memory_mb), 8, 65536, NULL,
     "memory cap of the Lua VM (every conversation in memory holds about 8 KB of it; one "
     "turn may add a quarter, at most 64 MB)"},
    {"flow.idle_gc", T_INT, "1", F(lua_idle_gc), 0, 1, NULL,
     "1: the Lua garbage collector works while the server is idle, not inside customer turns "
     "(when the server is never idle, turns pay for it again), and after a second without "
     "turns it runs a whole cycle and gives the freed memory back; 0: Lua's own collection"},
    {"auth.cookie_secure", T_INT, "0", F(auth_cookie_secure), 0, 1, NULL,
     "1 when the site is served over https: session cookies get the Secure flag"},
    {"auth.session_ttl_s", T_INT, "43200", F(auth_session_ttl_s), 300, 2592000, NULL,
     "a staff login lasts at most this long"},
    {"auth.session_idle_s", T_INT, "7200", F(auth_session_idle_s), 120, 2592000, NULL,
     "a staff login unused for this long ends"},
    {"auth.max_failures", T_INT, "5", F(auth_max_failures), 1, 1000, NULL,
     "failed logins per username in auth.failure_window_s before 429"},
    {"auth.max_failures_ip", T_INT, "20", F(auth_max_failures_ip), 0, 100000, NULL,
     "failed logins per client address in auth.failure_window_s before 429 (0 = no limit)"},
    {"auth.failure_window_s", T_INT, "900", F(auth_failure_window_s), 10, 86400, NULL,
     "window of the failed-login limiter"},
    {"agent.hours", T_STR, "09:00-21:00", F(agent_hours), 11, 11, NULL,
     "working hours of the human agents, HH:MM-HH:MM in agent.utc_offset_min's time "
     "(00:00-24:00 = always); outside them an escalation gets a call-back record"},
    {"agent.utc_offset_min", T_INT, "480", F(agent_utc_offset_min), -720, 840, NULL,
     "the company's time zone as minutes east of UTC (480 = Beijing)"},
    {"agent.handle_s", T_INT, "300", F(agent_handle_s), 10, 86400, NULL,
     "assumed seconds an agent spends on a chat, for wait estimates, until real ones are measured"},
    {"agent.max_wait_s", T_INT, "900", F(agent_max_wait_s), 10, 604800, NULL,
     "a chat queued this long gets a call-back record instead of waiting on"},
    {"agent.callback_s", T_INT, "7200", F(agent_callback_s), 60, 604800, NULL,
     "a call-back is promised this many seconds after now (or after opening time)"},
    {"agent.queue_push_ms", T_INT, "200", F(agent_queue_push_ms), 0, 60000, NULL,
     "queue snapshots go to agents at most this often"},
    {"log.level", T_STR, "notice", F(log_level), 1, 16, "error|warn|notice|info|debug",
     "log verbosity"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static void fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const setting *find(const char *key)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, key) == 0)
            return &settings[i];
    return NULL;
}

static int choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

static int apply(config_t *c, const setting *s, const char *value, char *err, size_t errlen)
{
    char *base = (char *)c;
    if (s->type == T_INT) {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end != '\0') {
            fail(err, errlen, "%s: expected an integer, got \"%s\"", s->name, value);
            return -1;
        }
        if (v < s->min || v > s->max) {
            fail(err, errlen, "%s: %ld is out of range [%ld, %ld]", s->name, v, s->min, s->max);
            return -1;
        }
        *(int *)(base + s->offset) = (int)v;
        return 0;
    }
    size_t len = strlen(value);
    if ((s->min > 0 && len < (size_t)s->min) || (s->max > 0 && len > (size_t)s->max)) {
        fail(err, errlen, "%s: length %zu is out of range [%ld, %ld]", s->name, len, s->min,
             s->max);
        return -1;
    }
    if (s->choices && !choice_ok(s->choices, value)) {
        fail(err, errlen, "%s: \"%s\" is not one of %s", s->name, value, s->choices);
        return -1;
    }
    char *copy = strdup(value);
    if (!copy) {
        fail(err, errlen, "%s: out of memory", s->name);
        return -1;
    }
    char **field = (char **)(base + s->offset);
    free(*field);
    *field = copy;
    return 0;
}

int config_defaults(config_t *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NSETTINGS; i++)
        if (apply(c, &settings[i], settings[i].def, NULL, 0) != 0) {
            config_free(c);
            return -1;
        }
    return 0;
}

int config_set(config_t *c, const char *key, const char *value, char *err, size_t errlen)
{
    const setting *s = find(key);
    if (!s) {
        fail(err, errlen, "unknown setting \"%s\" (see redress --help)", key);
        return -1;
    }
    return apply(c, s, value, err, errlen);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int config_load_file(config_t *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    char msg[512];
    int lineno = 0, rc = 0;

    if (!f) {
        fail(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            fail(err, errlen, "%s:%d: line too long", path, lineno);
            rc = -1;
            goto out;
        }
        char *p = trim(line);
        if (*p == '\0' || *p == '#')
            continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            fail(err, errlen, "%s:%d: expected \"key = value\"", path, lineno);
            rc = -1;
            goto out;
        }
        *eq = '\0';
        char *key = trim(p), *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        if (config_set(c, key, value, msg, sizeof(msg)) != 0) {
            fail(err, errlen, "%s:%d: %s", path, lineno, msg);
            rc = -1;
            goto out;
        }
    }
    free(c->config_file);
    c->config_file = strdup(path);
out:
    fclose(f);
    return rc;
}

int config_parse_args(config_t *c, int argc, char **argv, int *rest, char *err, size_t errlen)
{
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            argv[nrest++] = a;
            continue;
        }
        /* settings have a dot in their names; other flags (--role, --json, ...) belong to the
         * command and stay in the rest, in order, with their values */
        size_t klen0 = strcspn(a + 2, "=");
        if (!(klen0 == 6 && strncmp(a + 2, "config", 6) == 0) && !memchr(a + 2, '.', klen0)) {
            argv[nrest++] = a;
            continue;
        }
        char key[128];
        const char *value;
        const char *eq = strchr(a + 2, '=');
        size_t klen = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (klen >= sizeof(key)) {
            fail(err, errlen, "flag too long: %.40s...", a);
            return -1;
        }
        memcpy(key, a + 2, klen);
        key[klen] = '\0';
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fail(err, errlen, "--%s needs a value", key);
            return -1;
        }
        if (strcmp(key, "config") == 0) {
            if (config_load_file(c, value, err, errlen) != 0)
                return -1;
        } else if (!find(key)) {
            fail(err, errlen, "unknown flag --%s (see redress --help)", key);
            return -1;
        } else if (config_set(c, key, value, err, errlen) != 0) {
            return -1;
        }
    }
    *rest = nrest;
    return 0;
}

int config_db_path(const config_t *c, char *out, size_t outlen)
{
    int n;
    if (c->db_path[0] == '/' || strcmp(c->db_path, ":memory:") == 0)
        n = snprintf(out, outlen, "%s", c->db_path);
    else
        n = snprintf(out, outlen, "%s/%s", c->data_dir, c->db_path);
    return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

void config_print_help(void *file)
{
    FILE *f = file;
    fprintf(f, "settings (flags --name=value, or `name = value` lines in --config FILE):\n");
    for (size_t i = 0; i < NSETTINGS; i++)
        fprintf(f, "  --%-26s %s (default: %s)\n", settings[i].name, settings[i].help,
                settings[i].def[0] ? settings[i].def : "\"\"");
}

void config_free(config_t *c)
{
    char *base = (char *)c;
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].type == T_STR) {
            char **field = (char **)(base + settings[i].offset);
            free(*field);
            *field = NULL;
        }
    free(c->config_file);
    c->config_file = NULL;
}
