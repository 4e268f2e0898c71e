/*
 * test_flow_host.h - a recording flow host for the flow unit tests (header-only).
 *
 * th_host records every callback (bot messages with options, escalations, records, statuses)
 * as text lines and keeps the last saved state; its clock is th->now.  th_rules() writes a
 * throwaway rules directory.  Tests assert with CHECK, which prints file:line and counts.
 */
#ifndef TEST_FLOW_HOST_H
#define TEST_FLOW_HOST_H

#include "flow.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TH_UNUSED __attribute__((unused))

#define TH_UNUSED __attribute__((unused))
static int th_failures;
static int th_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        th_checks++;                                                                               \
        if (!(cond)) {                                                                             \
            th_failures++;                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define TH_MAX 512

typedef struct th_host {
    char *line[TH_MAX]; /* "say TEXT [opt|opt]", "escalate REASON PRIO SUMMARY", ... */
    int n;
    char *saved;
    double now;
    int fail_say; /* make say() fail */
} th_host;

static TH_UNUSED void th_add(th_host *h, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    if (s && h->n < TH_MAX)
        h->line[h->n++] = s;
    else
        free(s);
}

static TH_UNUSED int th_say(void *host, const char *text, const char *const *options, int n)
{
    th_host *h = host;
    char opts[1024] = "";
    for (int i = 0; i < n; i++) {
        strncat(opts, i ? "|" : "", sizeof(opts) - strlen(opts) - 1);
        strncat(opts, options[i], sizeof(opts) - strlen(opts) - 1);
    }
    th_add(h, "say %s%s%s%s", text, n ? " [" : "", opts, n ? "]" : "");
    return h->fail_say ? -1 : 0;
}

static TH_UNUSED int th_status(void *host, const char *state, const char *detail)
{
    th_add(host, "status %s %s", state, detail);
    return 0;
}

static TH_UNUSED int th_escalate(void *host, const char *reason, int prio, const char *summary)
{
    th_add(host, "escalate %s %d %s", reason, prio, summary);
    return 0;
}

static TH_UNUSED int th_save(void *host, const char *json)
{
    th_host *h = host;
    free(h->saved);
    h->saved = strdup(json);
    return 0;
}

static TH_UNUSED int th_record(void *host, const char *field, const char *value)
{
    th_add(host, "record %s %s", field, value);
    return 0;
}

static TH_UNUSED double th_now(void *host)
{
    return ((th_host *)host)->now;
}

static const flow_host_ops th_ops = {th_say,    th_status, th_escalate, th_save,
                                     th_record, th_now,    NULL};

static TH_UNUSED void th_clear(th_host *h)
{
    for (int i = 0; i < h->n; i++)
        free(h->line[i]);
    h->n = 0;
}

static TH_UNUSED void th_free(th_host *h)
{
    th_clear(h);
    free(h->saved);
    h->saved = NULL;
}

/* Index of the first recorded line containing s, or -1. */
static TH_UNUSED int th_find(const th_host *h, const char *s)
{
    for (int i = 0; i < h->n; i++)
        if (strstr(h->line[i], s))
            return i;
    return -1;
}

static TH_UNUSED int th_count(const th_host *h, const char *prefix)
{
    int n = 0;
    for (int i = 0; i < h->n; i++)
        if (strncmp(h->line[i], prefix, strlen(prefix)) == 0)
            n++;
    return n;
}

static TH_UNUSED void th_dump(const th_host *h)
{
    for (int i = 0; i < h->n; i++)
        fprintf(stderr, "    %s\n", h->line[i]);
}

/* Writes text to dir/rel, creating dir's subdirectories.  Returns 0 or -1. */
static TH_UNUSED int th_write(const char *dir, const char *rel, const char *text, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(text, 1, len, f);
    fclose(f);
    return w == len ? 0 : -1;
}

static TH_UNUSED int th_put(const char *dir, const char *rel, const char *text)
{
    return th_write(dir, rel, text, strlen(text));
}

/* Creates a fresh temporary directory into buf. */
static TH_UNUSED const char *th_tmpdir(char *buf, size_t len)
{
    snprintf(buf, len, "/tmp/redress-flow-test-XXXXXX");
    return mkdtemp(buf);
}

static TH_UNUSED void th_rmtree(const char *dir)
{
    char cmd[4200];
    if (strncmp(dir, "/tmp/redress-flow-test-", 23) != 0)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

static TH_UNUSED void th_config(config_t *cfg, const char *rules_dir)
{
    config_defaults(cfg);
    free(cfg->rules_dir);
    cfg->rules_dir = strdup(rules_dir);
}

#endif
