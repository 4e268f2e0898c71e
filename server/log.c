/*
 * log.c - leveled logging to stderr.
 *
 * A line is formatted into a stack buffer and written with one write(2), so lines from
 * the loop thread and the store's writer thread never interleave.
 */
#include "log.h"

#include "privacy.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static log_level_t level = LOG_NOTICE;
static const char *const names[] = {"error", "warn", "notice", "info", "debug"};

int log_set_level(const char *name)
{
    for (int i = 0; i <= LOG_DEBUG; i++)
        if (strcmp(name, names[i]) == 0) {
            level = (log_level_t)i;
            return 0;
        }
    return -1;
}

int log_enabled(log_level_t l)
{
    return l <= level;
}

void log_write(log_level_t l, const char *module, const char *fmt, ...)
{
    char buf[2048];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n;

    if (l > level)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = snprintf(buf, sizeof(buf),
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-6s %s: ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), names[l],
                 module);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(buf))
        n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* personal numbers never reach a log (privacy.h) */
    char masked[sizeof(buf)];
    n = (int)strlen(buf);
    if (privacy_mask(buf, masked, sizeof(masked) - 1) > 0)
        memcpy(buf, masked, (size_t)(n = (int)strlen(masked)) + 1);
    if ((size_t)n >= sizeof(buf) - 1)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
}
