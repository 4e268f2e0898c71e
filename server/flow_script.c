/*
 * flow_script.c - `redress flow test`: conversation scripts run against the real engine.
 *
 * A script (rules/tests/NAME.test, format in rules/README.md) alternates actions - a customer
 * line, a clock jump, a restart, a reload, an agent's hand-back or resolve - with expectations
 * about what the bot did since the last action: messages (substring), quick-reply options, slots
 * and other state, category, severity, escalations, complaint-record updates, status events, the
 * run's step and status.  Lines before the first "=== title" are headers shared by every case; each
 * case starts a fresh conversation.
 *
 * The host here (script_host) records every callback as an event in order; `mark` is the first
 * event of the current action, and expectations look at events from there on.  The clock is
 * fake (@time, `wait N`), so timers run without sleeping.  chat:complaint() gets the record a
 * `complaint` line set (NULL until then).  A restart frees the run and the
 * engine, builds a new engine from the same rules and resumes from the last saved JSON, as a
 * server restart would.
 *
 * The knowledge base is a private in-memory SQLite database: kb_register + kb_migrate +
 * kb_seed_dir(cfg->kb_seed) (the sample content by default; --kb.seed=DIR picks another).
 *
 * Ownership: the runner owns its engine, runs, database and events; everything is freed before
 * flow_script_run_files returns.  Failures are printed as "file:line: [case] expected ..., got
 * ..." with the bot's messages since the last action.
 */
#include "complaint.h"
#include "flow_internal.h"
#include "kb.h"
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LINES 4000
#define DEFAULT_TIME "2026-03-06 10:00"

enum { EV_SAY, EV_ESC, EV_RECORD, EV_STATUS };

typedef struct event {
    int kind;
    char *a;      /* say: text; esc: reason; record: field; status: state */
    char *b;      /* say: options joined " | "; esc: summary; record: value; status: detail */
    int priority; /* esc */
    int consumed; /* say: matched by an expectation */
} event;

typedef struct script_host {
    event *ev;
    size_t n, cap;
    size_t mark; /* first event of the current action */
    char *saved;
    double now;
    char *complaint; /* what chat:complaint() gets (JSON text), or NULL: no record */
    FILE *out;
    int verbose;
} script_host;

typedef struct runner {
    const config_t *cfg;
    sqlite3 *db;
    flow_engine_t *e;
    FILE *out;
    int verbose;
} runner;

typedef struct tcase {
    const char *file;
    char title[256];
    char cid[129], cname[65], channel[16], flow[64];
    int vip, history;
    double start;
    flow_run_t *run;
    script_host host;
    const event *last_say;
    int failed;
    int expect_failed;
} tcase;

/* ---- the recording host ---- */

static int push_event(script_host *h, int kind, const char *a, const char *b, int prio)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        event *ev = realloc(h->ev, cap * sizeof(*ev));
        if (!ev)
            return -1;
        h->ev = ev;
        h->cap = cap;
    }
    event *e = &h->ev[h->n];
    e->kind = kind;
    e->a = strdup(a ? a : "");
    e->b = strdup(b ? b : "");
    e->priority = prio;
    e->consumed = 0;
    if (!e->a || !e->b) {
        free(e->a);
        free(e->b);
        return -1;
    }
    h->n++;
    return 0;
}

static int h_say(void *host, const char *text, const char *const *options, int n)
{
    script_host *h = host;
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(options[i]) + 3;
    char *joined = calloc(1, len);
    if (!joined)
        return -1;
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(joined, " | ");
        strcat(joined, options[i]);
    }
    if (h->verbose) {
        fprintf(h->out, "      bot: %s", text);
        if (n)
            fprintf(h->out, "  [%s]", joined);
        fprintf(h->out, "\n");
    }
    int rc = push_event(h, EV_SAY, text, joined, 0);
    free(joined);
    return rc;
}

static int h_status(void *host, const char *state, const char *detail)
{
    return push_event(host, EV_STATUS, state, detail, 0);
}

static int h_escalate(void *host, const char *reason, int priority, const char *summary)
{
    script_host *h = host;
    if (h->verbose)
        fprintf(h->out, "      (escalate %s, priority %d)\n", reason, priority);
    return push_event(h, EV_ESC, reason, summary, priority);
}

static int h_save(void *host, const char *json)
{
    script_host *h = host;
    char *copy = strdup(json);
    if (!copy)
        return -1;
    free(h->saved);
    h->saved = copy;
    return 0;
}

static int h_record(void *host, const char *field, const char *value)
{
    return push_event(host, EV_RECORD, field, value, 0);
}

static double h_now(void *host)
{
    return ((script_host *)host)->now;
}

static char *h_complaint(void *host)
{
    script_host *h = host;
    return h->complaint ? strdup(h->complaint) : NULL;
}

static const flow_host_ops script_ops = {h_say,    h_status, h_escalate, h_save,
                                         h_record, h_now,    h_complaint};

static void host_clear(script_host *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->ev[i].a);
        free(h->ev[i].b);
    }
    free(h->ev);
    free(h->saved);
    free(h->complaint);
    memset(h, 0, sizeof(*h));
}

/* ---- reporting ---- */

static void fail(tcase *c, int line, const char *fmt, ...)
{
    FILE *out = c->host.out;
    va_list ap;
    fprintf(out, "%s:%d: [%s] ", c->file, line, c->title);
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fprintf(out, "\n");
    c->failed = 1;
}

static void show_bot(tcase *c)
{
    script_host *h = &c->host;
    int any = 0;
    for (size_t i = h->mark; i < h->n; i++) {
        if (h->ev[i].kind != EV_SAY)
            continue;
        fprintf(h->out, "    %s \"%s\"", h->ev[i].consumed ? "(matched)" : "bot said", h->ev[i].a);
        if (h->ev[i].b[0])
            fprintf(h->out, " [options: %s]", h->ev[i].b);
        fprintf(h->out, "\n");
        any = 1;
    }
    if (!any)
        fprintf(h->out, "    (the bot said nothing since the last action)\n");
    if (c->run && flow_run_status(c->run) == FLOW_RUN_FAILED)
        fprintf(h->out, "    the flow failed: %s\n", flow_run_error(c->run));
}

/* ---- state lookups in the last saved JSON ---- */

static const cJSON *state_path(tcase *c, cJSON **doc, const char *path)
{
    *doc = c->host.saved ? cJSON_Parse(c->host.saved) : NULL;
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(*doc, "state");
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && j;
         k = strtok_r(NULL, ".", &save)) {
        if (cJSON_IsArray(j) && isdigit((unsigned char)k[0]))
            j = cJSON_GetArrayItem(j, atoi(k) - 1);
        else
            j = cJSON_GetObjectItemCaseSensitive(j, k);
    }
    return j;
}

/* Text form of a JSON value for comparisons (malloc'ed). */
static char *value_text(const cJSON *j)
{
    char buf[64];
    if (!j)
        return strdup("(absent)");
    if (cJSON_IsString(j))
        return strdup(j->valuestring);
    if (cJSON_IsBool(j))
        return strdup(cJSON_IsTrue(j) ? "true" : "false");
    if (cJSON_IsNumber(j)) {
        if (j->valuedouble == (double)(long long)j->valuedouble)
            snprintf(buf, sizeof(buf), "%lld", (long long)j->valuedouble);
        else
            snprintf(buf, sizeof(buf), "%g", j->valuedouble);
        return strdup(buf);
    }
    if (cJSON_IsNull(j))
        return strdup("null");
    return cJSON_PrintUnformatted(j);
}

/* "path", "path = value", "path ~ text", "path != value" */
static void expect_state(tcase *c, int line, const char *prefix, const char *arg)
{
    char path[256], op[3] = "", want[1024] = "";
    const char *p = arg;
    size_t n = 0;
    while (*p && !isspace((unsigned char)*p) && n + 1 < sizeof(path))
        path[n++] = *p++;
    path[n] = '\0';
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '=' || *p == '~') {
        op[0] = *p++;
    } else if (p[0] == '!' && p[1] == '=') {
        op[0] = '!';
        p += 2;
    } else if (*p) {
        fail(c, line,
             "cannot read \"%s\": expected PATH, PATH = VALUE, PATH ~ TEXT or PATH != "
             "VALUE",
             arg);
        return;
    }
    while (isspace((unsigned char)*p))
        p++;
    snprintf(want, sizeof(want), "%s", p);
    char full[300];
    snprintf(full, sizeof(full), "%s%s", prefix, path);
    cJSON *doc = NULL;
    const cJSON *j = state_path(c, &doc, full);
    char *got = value_text(j);
    if (!got) {
        cJSON_Delete(doc);
        fail(c, line, "out of memory");
        return;
    }
    int ok = op[0] == '='   ? (j && strcmp(got, want) == 0)
             : op[0] == '~' ? (j && strstr(got, want) != NULL)
             : op[0] == '!' ? (!j || strcmp(got, want) != 0)
                            : (j && !cJSON_IsNull(j));
    if (!ok) {
        if (!op[0])
            fail(c, line, "expected chat.state.%s to be set; it is absent", full);
        else
            fail(c, line, "expected chat.state.%s %s \"%s\", got \"%s\"", full,
                 op[0] == '='   ? "="
                 : op[0] == '~' ? "to contain"
                                : "!=",
                 want, got);
    }
    free(got);
    cJSON_Delete(doc);
}

/* ---- one case ---- */

static int start_run(tcase *c, runner *R, const char *saved)
{
    flow_customer_t cu = {c->cid,     c->cname[0] ? c->cname : NULL, c->channel, c->vip,
                          c->history, c->flow[0] ? c->flow : NULL};
    int rc = flow_run_start(R->e, &script_ops, &c->host, &cu, saved, &c->run);
    if (rc != FLOW_OK && rc != FLOW_EFAILED) {
        fail(c, 0, "flow_run_start failed (%d)", rc);
        return -1;
    }
    return 0;
}

static int new_engine(runner *R, char *err, size_t errlen)
{
    flow_engine_destroy(R->e);
    R->e = NULL;
    return flow_engine_create(&R->e, R->cfg, R->db, err, errlen);
}

static void action_mark(tcase *c)
{
    c->host.mark = c->host.n;
    c->last_say = NULL;
}

static void expect_bot(tcase *c, int line, const char *want, int negative)
{
    script_host *h = &c->host;
    if (negative) {
        for (size_t i = h->mark; i < h->n; i++)
            if (h->ev[i].kind == EV_SAY && strstr(h->ev[i].a, want)) {
                fail(c, line, "expected no bot message containing \"%s\", but one did:", want);
                show_bot(c);
                return;
            }
        return;
    }
    /* Search from the last matched message (so several "<" lines may check one message). */
    size_t from = c->last_say ? (size_t)(c->last_say - h->ev) : h->mark;
    for (size_t i = from; i < h->n; i++) {
        if (h->ev[i].kind != EV_SAY || (h->ev[i].consumed && &h->ev[i] != c->last_say))
            continue;
        if (strstr(h->ev[i].a, want)) {
            for (size_t k = h->mark; k <= i; k++)
                h->ev[k].consumed = 1;
            c->last_say = &h->ev[i];
            return;
        }
    }
    fail(c, line, "expected a bot message containing \"%s\"", want);
    show_bot(c);
}

static void expect_options(tcase *c, int line, const char *want)
{
    if (want[0] == '~') { /* "options ~ TEXT": one of the options contains TEXT */
        want++;
        while (isspace((unsigned char)*want))
            want++;
        if (!c->last_say)
            fail(c, line, "options: no bot message matched yet (put a \"<\" line first)");
        else if (!strstr(c->last_say->b, want))
            fail(c, line, "expected an option containing \"%s\" on \"%s\", got [%s]", want,
                 c->last_say->a, c->last_say->b);
        return;
    }
    /* Normalise "a|b" and "a | b" alike. */
    char norm[1024];
    size_t o = 0;
    for (const char *p = want; *p && o + 4 < sizeof(norm); p++) {
        if (*p == '|') {
            while (o > 0 && norm[o - 1] == ' ')
                o--;
            memcpy(norm + o, " | ", 3);
            o += 3;
            while (p[1] == ' ')
                p++;
        } else {
            norm[o++] = *p;
        }
    }
    norm[o] = '\0';
    if (!c->last_say) {
        fail(c, line, "options: no bot message matched yet (put a \"<\" line first)");
        return;
    }
    if (strcmp(c->last_say->b, norm) != 0)
        fail(c, line, "expected options [%s] on \"%s\", got [%s]", norm, c->last_say->a,
             c->last_say->b);
}

static void expect_event(tcase *c, int line, int kind, const char *arg, int negative)
{
    static const char *const names[] = {"bot message", "escalation", "record update", "status"};
    script_host *h = &c->host;
    char name[128] = "", tail[1024] = "";
    int prio = 0;
    const char *p = arg;
    size_t n = 0;
    while (*p && !isspace((unsigned char)*p) && n + 1 < sizeof(name))
        name[n++] = *p++;
    name[n] = '\0';
    while (isspace((unsigned char)*p))
        p++;
    if (kind == EV_ESC && isdigit((unsigned char)*p))
        prio = atoi(p);
    else if (*p == '~') {
        p++;
        while (isspace((unsigned char)*p))
            p++;
        snprintf(tail, sizeof(tail), "%s", p);
    }
    for (size_t i = h->mark; i < h->n; i++) {
        const event *e = &h->ev[i];
        if (e->kind != kind)
            continue;
        if (negative && !name[0]) {
            fail(c, line, "expected no %s, got \"%s\" %s", names[kind], e->a, e->b);
            return;
        }
        if (strcmp(e->a, name) != 0)
            continue;
        if (prio && e->priority != prio)
            continue;
        if (tail[0] && !strstr(e->b, tail))
            continue;
        if (negative)
            fail(c, line, "expected no %s %s, got one: %s", names[kind], name, e->b);
        return;
    }
    if (negative)
        return;
    fail(c, line, "expected %s \"%s\"%s%s%s since the last action; got:", names[kind], name,
         tail[0] ? " containing \"" : "", tail, tail[0] ? "\"" : "");
    int any = 0;
    for (size_t i = h->mark; i < h->n; i++)
        if (h->ev[i].kind == kind) {
            fprintf(h->out, "    %s %s", h->ev[i].a, h->ev[i].b);
            if (kind == EV_ESC)
                fprintf(h->out, " (priority %d)", h->ev[i].priority);
            fprintf(h->out, "\n");
            any = 1;
        }
    if (!any)
        fprintf(h->out, "    (none)\n");
}

static const char *word_arg(const char *line, const char *word)
{
    size_t n = strlen(word);
    if (strncmp(line, word, n) != 0 || (line[n] && !isspace((unsigned char)line[n])))
        return NULL;
    line += n;
    while (isspace((unsigned char)*line))
        line++;
    return line;
}

static double parse_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int y, mo, d, h = 0, mi = 0;
    if (sscanf(s, "%d-%d-%d %d:%d", &y, &mo, &d, &h, &mi) < 3)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return (double)(timegm(&tm) - 8 * 3600); /* script times are China time (UTC+8) */
}

/* "complaint none" or "complaint NUMBER STATUS [YYYY-MM-DD HH:MM]": the record chat:complaint()
 * returns from now on (the time is its next deadline, China time; created_at is the case's
 * start).  Not an action: expectations still look at what the last action did.  0 or -1. */
static int set_complaint(tcase *c, int line, const char *a)
{
    char number[64] = "", status[32] = "";
    int used = 0;
    free(c->host.complaint);
    c->host.complaint = NULL;
    if (strcmp(a, "none") == 0)
        return 0;
    if (sscanf(a, "%63s %31s %n", number, status, &used) < 2) {
        fail(c, line,
             "complaint: expected \"none\" or NUMBER STATUS [YYYY-MM-DD HH:MM], got \"%s\"", a);
        return -1;
    }
    double due = 0;
    if (a[used] && (due = parse_time(a + used)) < 0) {
        fail(c, line, "complaint: expected the deadline as YYYY-MM-DD HH:MM, got \"%s\"", a + used);
        return -1;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "number", number);
        cJSON_AddStringToObject(o, "status", status);
        cJSON_AddStringToObject(o, "status_text", complaint_status_text(status));
        if (due > 0)
            cJSON_AddNumberToObject(o, "next_due", due);
        else
            cJSON_AddNullToObject(o, "next_due");
        cJSON_AddNumberToObject(o, "created_at", c->start);
        c->host.complaint = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    if (!c->host.complaint) {
        fail(c, line, "out of memory");
        return -1;
    }
    return 0;
}

/* Applies a header line (@...) to c.  Returns 0 or -1. */
static int header(tcase *c, int line, const char *s)
{
    const char *a;
    if ((a = word_arg(s, "@customer"))) {
        char buf[1024];
        snprintf(buf, sizeof(buf), "%s", a);
        for (char *save = NULL, *kv = strtok_r(buf, " \t", &save); kv;
             kv = strtok_r(NULL, " \t", &save)) {
            char *eq = strchr(kv, '=');
            if (!eq) {
                fail(c, line, "@customer: expected key=value, got \"%s\"", kv);
                return -1;
            }
            *eq++ = '\0';
            if (strcmp(kv, "id") == 0)
                snprintf(c->cid, sizeof(c->cid), "%s", eq);
            else if (strcmp(kv, "name") == 0)
                snprintf(c->cname, sizeof(c->cname), "%s", eq);
            else if (strcmp(kv, "channel") == 0)
                snprintf(c->channel, sizeof(c->channel), "%s", eq);
            else if (strcmp(kv, "vip") == 0)
                c->vip = atoi(eq);
            else if (strcmp(kv, "history") == 0)
                c->history = atoi(eq);
            else {
                fail(c, line, "@customer: unknown key \"%s\" (id, name, channel, vip, history)",
                     kv);
                return -1;
            }
        }
    } else if ((a = word_arg(s, "@time"))) {
        c->start = parse_time(a);
        if (c->start < 0) {
            fail(c, line, "@time: expected YYYY-MM-DD HH:MM (China time), got \"%s\"", a);
            return -1;
        }
    } else if ((a = word_arg(s, "@flow"))) {
        snprintf(c->flow, sizeof(c->flow), "%s", a);
    } else {
        fail(c, line, "unknown header \"%s\" (@customer, @time, @flow)", s);
        return -1;
    }
    return 0;
}

static void verbose_line(tcase *c, const char *fmt, const char *arg)
{
    if (c->host.verbose)
        fprintf(c->host.out, fmt, arg);
}

/* Runs one directive.  Returns 0 to go on, -1 to stop the case. */
static int directive(tcase *c, runner *R, int line, const char *s)
{
    const char *a;
    char err[2048];
    int rc;
    if (s[0] == '>') {
        a = s + 1;
        while (isspace((unsigned char)*a))
            a++;
        verbose_line(c, "  customer: %s\n", a);
        action_mark(c);
        rc = flow_run_input(c->run, a);
        if (rc != FLOW_OK && !(rc == FLOW_EFAILED && c->expect_failed)) {
            if (rc == FLOW_EFAILED) {
                fail(c, line, "the flow failed on this message");
                show_bot(c);
                return -1;
            }
            fail(c, line, "flow_run_input returned %d", rc);
            return -1;
        }
        return 0;
    }
    if (s[0] == '<') {
        int neg = s[1] == '!';
        a = s + 1 + neg;
        while (isspace((unsigned char)*a))
            a++;
        expect_bot(c, line, a, neg);
        return 0;
    }
    if ((a = word_arg(s, "wait"))) {
        char *end;
        double secs = strtod(a, &end);
        if (end == a || secs < 0) {
            fail(c, line, "wait: expected seconds, got \"%s\"", a);
            return -1;
        }
        verbose_line(c, "  (wait %s s)\n", a);
        action_mark(c);
        c->host.now += secs;
        rc = flow_run_tick(c->run, c->host.now);
        if (rc != FLOW_OK && rc != FLOW_EFAILED) {
            fail(c, line, "flow_run_tick returned %d", rc);
            return -1;
        }
        return 0;
    }
    if (strcmp(s, "restart") == 0) {
        verbose_line(c, "  (restart%s)\n", "");
        char *saved = c->host.saved ? strdup(c->host.saved) : NULL;
        flow_run_free(c->run);
        c->run = NULL;
        action_mark(c);
        if (!saved || new_engine(R, err, sizeof(err)) != 0) {
            fail(c, line, "restart: %s", saved ? err : "nothing was saved");
            free(saved);
            return -1;
        }
        rc = start_run(c, R, saved);
        free(saved);
        return rc;
    }
    if (strcmp(s, "reload") == 0) {
        verbose_line(c, "  (reload%s)\n", "");
        if (flow_engine_reload(R->e, err, sizeof(err)) != 0) {
            fail(c, line, "reload failed: %s", err);
            return -1;
        }
        return 0;
    }
    if ((a = word_arg(s, "handback"))) {
        const char *how = a[0] ? a : "handback";
        if (strcmp(how, "resolved") != 0 && strcmp(how, "handback") != 0) {
            fail(c, line, "handback: expected nothing, \"resolved\" or \"handback\", got \"%s\"",
                 a);
            return -1;
        }
        verbose_line(c, "  (the agent ends the hand-off: %s)\n", how);
        action_mark(c);
        rc = flow_run_handback(c->run, how);
        if (rc != FLOW_OK && !(rc == FLOW_EFAILED && c->expect_failed)) {
            fail(c, line, "flow_run_handback returned %d", rc);
            show_bot(c);
            return -1;
        }
        return 0;
    }
    if ((a = word_arg(s, "complaint")))
        return set_complaint(c, line, a);
    if ((a = word_arg(s, "options"))) {
        expect_options(c, line, a);
        return 0;
    }
    if (strcmp(s, "nobot") == 0) {
        for (size_t i = c->host.mark; i < c->host.n; i++)
            if (c->host.ev[i].kind == EV_SAY && !c->host.ev[i].consumed) {
                fail(c, line, "expected no more bot messages since the last action");
                show_bot(c);
                break;
            }
        return 0;
    }
    if ((a = word_arg(s, "slot"))) {
        expect_state(c, line, "slots.", a);
        return 0;
    }
    if ((a = word_arg(s, "state"))) {
        expect_state(c, line, "", a);
        return 0;
    }
    if ((a = word_arg(s, "category"))) {
        char buf[300];
        snprintf(buf, sizeof(buf), "category = %s", a);
        expect_state(c, line, "", buf);
        return 0;
    }
    if ((a = word_arg(s, "severity"))) {
        char buf[300];
        snprintf(buf, sizeof(buf), "severity = %s", a);
        expect_state(c, line, "", buf);
        return 0;
    }
    if ((a = word_arg(s, "step"))) {
        const char *st = flow_run_step(c->run);
        if (!st || strcmp(st, a) != 0)
            fail(c, line, "expected step %s, the run is at %s", a, st ? st : "(no step)");
        return 0;
    }
    if ((a = word_arg(s, "escalate"))) {
        expect_event(c, line, EV_ESC, a, 0);
        return 0;
    }
    if (strcmp(s, "noescalate") == 0) {
        expect_event(c, line, EV_ESC, "", 1);
        return 0;
    }
    if (strcmp(s, "escalated") == 0 || strcmp(s, "notescalated") == 0) {
        int want = s[0] == 'e';
        if (flow_run_escalated(c->run) != want)
            fail(c, line, "expected the conversation %sto be with a human", want ? "" : "not ");
        return 0;
    }
    if ((a = word_arg(s, "record"))) {
        expect_event(c, line, EV_RECORD, a, 0);
        return 0;
    }
    if ((a = word_arg(s, "status"))) {
        expect_event(c, line, EV_STATUS, a, 0);
        return 0;
    }
    if (strcmp(s, "done") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "waiting") == 0) {
        flow_run_status_t want = s[0] == 'd'   ? FLOW_RUN_DONE
                                 : s[0] == 'f' ? FLOW_RUN_FAILED
                                               : FLOW_RUN_WAITING;
        if (want == FLOW_RUN_FAILED)
            c->expect_failed = 1;
        if (flow_run_status(c->run) != want) {
            fail(c, line, "expected the run to be %s", s);
            show_bot(c);
        }
        return 0;
    }
    if (s[0] == '@') {
        fail(c, line, "headers (@...) go before the first action of a case");
        return -1;
    }
    fail(c, line, "unknown directive \"%s\" (see rules/README.md)", s);
    return -1;
}

/* ---- files ---- */

typedef struct script {
    char *text;
    char *lines[MAX_LINES];
    int n;
} script;

static int load_script(const char *path, script *sc, FILE *out)
{
    FILE *f = fopen(path, "rb");
    memset(sc, 0, sizeof(*sc));
    if (!f) {
        fprintf(out, "%s: cannot open\n", path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    if (size < 0 || size > 4 * 1024 * 1024) {
        fclose(f);
        fprintf(out, "%s: too large\n", path);
        return -1;
    }
    sc->text = malloc((size_t)size + 1);
    if (!sc->text || fread(sc->text, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(sc->text);
        fprintf(out, "%s: cannot read\n", path);
        return -1;
    }
    fclose(f);
    sc->text[size] = '\0';
    char *p = sc->text;
    while (*p) {
        if (sc->n == MAX_LINES) {
            fprintf(out, "%s: more than %d lines\n", path, MAX_LINES);
            free(sc->text);
            return -1;
        }
        sc->lines[sc->n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    /* trim each line */
    for (int i = 0; i < sc->n; i++) {
        char *s = sc->lines[i];
        while (isspace((unsigned char)*s))
            s++;
        size_t len = strlen(s);
        while (len > 0 && isspace((unsigned char)s[len - 1]))
            s[--len] = '\0';
        sc->lines[i] = s;
    }
    return 0;
}

static int skip_line(const char *s)
{
    return s[0] == '\0' || s[0] == '#';
}

static void case_defaults(tcase *c, const char *file, runner *R)
{
    memset(c, 0, sizeof(*c));
    c->file = file;
    snprintf(c->cid, sizeof(c->cid), "test-customer");
    snprintf(c->channel, sizeof(c->channel), "web");
    c->start = parse_time(DEFAULT_TIME);
    c->host.out = R->out;
    c->host.verbose = R->verbose;
}

/* Runs lines [from, to) as one case after the file headers [0, hdr_end).  Returns 0 or 1. */
static int run_case(runner *R, const char *file, script *sc, int hdr_end, int from, int to,
                    const char *title)
{
    tcase c;
    char err[2048];
    case_defaults(&c, file, R);
    snprintf(c.title, sizeof(c.title), "%s", title);
    if (R->verbose)
        fprintf(R->out, "  === %s\n", title);
    for (int i = 0; i < hdr_end; i++)
        if (!skip_line(sc->lines[i]) && header(&c, i + 1, sc->lines[i]) != 0)
            goto out;
    int i = from;
    for (; i < to && (skip_line(sc->lines[i]) || sc->lines[i][0] == '@'); i++)
        if (!skip_line(sc->lines[i]) && header(&c, i + 1, sc->lines[i]) != 0)
            goto out;
    c.host.now = c.start;
    if (!R->e && new_engine(R, err, sizeof(err)) != 0) {
        fail(&c, 0, "the rules do not load: %s", err);
        goto out;
    }
    if (start_run(&c, R, NULL) != 0)
        goto out;
    for (; i < to; i++) {
        if (skip_line(sc->lines[i]))
            continue;
        if (directive(&c, R, i + 1, sc->lines[i]) != 0)
            break;
    }
    if (!c.failed && !c.expect_failed && c.run && flow_run_status(c.run) == FLOW_RUN_FAILED) {
        fail(&c, to, "the flow failed: %s", flow_run_error(c.run));
    }
out:
    flow_run_free(c.run);
    host_clear(&c.host);
    return c.failed ? 1 : 0;
}

static int run_file(runner *R, const char *path, int *ncases)
{
    script sc;
    int failed = 0;
    *ncases = 0;
    if (load_script(path, &sc, R->out) != 0)
        return 1;
    int first = -1;
    for (int i = 0; i < sc.n; i++)
        if (strncmp(sc.lines[i], "===", 3) == 0) {
            first = i;
            break;
        }
    if (first < 0) {
        /* One case: headers at the top, then directives. */
        const char *slash = strrchr(path, '/');
        failed += run_case(R, path, &sc, 0, 0, sc.n, slash ? slash + 1 : path);
        *ncases = 1;
    } else {
        for (int i = 0; i < first; i++)
            if (!skip_line(sc.lines[i]) && sc.lines[i][0] != '@') {
                fprintf(R->out, "%s:%d: only headers (@...) may come before the first ===\n", path,
                        i + 1);
                free(sc.text);
                return 1;
            }
        for (int i = first; i < sc.n;) {
            int j = i + 1;
            while (j < sc.n && strncmp(sc.lines[j], "===", 3) != 0)
                j++;
            const char *title = sc.lines[i] + 3;
            while (isspace((unsigned char)*title))
                title++;
            failed += run_case(R, path, &sc, first, i + 1, j, title[0] ? title : "(untitled)");
            (*ncases)++;
            i = j;
        }
    }
    free(sc.text);
    return failed;
}

static int open_kb(runner *R)
{
    char err[1024];
    if (sqlite3_open(":memory:", &R->db) != SQLITE_OK) {
        fprintf(R->out, "flow test: cannot open an in-memory database\n");
        return -1;
    }
    if (R->cfg->kb_synonyms && R->cfg->kb_synonyms[0] &&
        kb_set_synonyms_file(R->cfg->kb_synonyms, err, sizeof(err)) != 0) {
        fprintf(R->out, "flow test: %s\n", err);
        return -1;
    }
    if (kb_register(R->db) != 0 || kb_migrate(R->db, err, sizeof(err)) != 0) {
        fprintf(R->out, "flow test: knowledge base: %s\n", err);
        return -1;
    }
    if (R->cfg->kb_seed && R->cfg->kb_seed[0]) {
        int n = kb_seed_dir(R->db, R->cfg->kb_seed, err, sizeof(err));
        if (n < 0) {
            fprintf(R->out, "flow test: knowledge base seed: %s\n", err);
            return -1;
        }
        if (R->verbose)
            fprintf(R->out, "knowledge base: %d records from %s\n", n, R->cfg->kb_seed);
    }
    return 0;
}

int flow_script_run_files(const config_t *cfg, const char *const *files, int nfiles, int verbose,
                          void *out)
{
    runner R = {cfg, NULL, NULL, out ? out : stdout, verbose};
    int failed_cases = 0, total = 0, failed_files = 0;
    if (open_kb(&R) != 0) {
        sqlite3_close(R.db);
        return -1;
    }
    for (int i = 0; i < nfiles; i++) {
        int n = 0;
        if (verbose)
            fprintf(R.out, "%s\n", files[i]);
        int f = run_file(&R, files[i], &n);
        /* A fresh engine per file: files never see each other's reloads. */
        flow_engine_destroy(R.e);
        R.e = NULL;
        total += n;
        failed_cases += f;
        if (f) {
            failed_files++;
            fprintf(R.out, "FAIL %s (%d of %d cases)\n", files[i], f, n);
        } else {
            fprintf(R.out, "ok   %s (%d case%s)\n", files[i], n, n == 1 ? "" : "s");
        }
    }
    fprintf(R.out, "flow test: %d case%s in %d file%s, %d failed\n", total, total == 1 ? "" : "s",
            nfiles, nfiles == 1 ? "" : "s", failed_cases);
    sqlite3_close(R.db);
    return failed_cases;
}
