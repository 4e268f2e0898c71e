/*
 * test_util_time.c - util_iso_now (server/util.c): the timestamp every stored event carries.
 * It formats the date and time once a second and the milliseconds by hand, so check it against
 * gmtime_r + strftime of the same second, across second boundaries, from two threads, and with
 * short buffers (truncated like snprintf, always terminated).
 *
 * agent_iso (server/agent_proto.c), the time a complaint record or an agent item shows, writes
 * its digits by hand too: it must print what its printf form printed, for every millisecond
 * rounding and century, and fall back to printf before 1970 and for short buffers.
 */
#include "agent_proto.h"
#include "check.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* The clock util_iso_now reads (time() is the coarse clock, a tick behind at a second's edge). */
static time_t now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec;
}

/* 1 when s is "YYYY-MM-DDTHH:MM:SS.mmmZ" for a second within [lo, hi]. */
static int well_formed(const char *s, time_t lo, time_t hi)
{
    if (strlen(s) != 24 || s[19] != '.' || s[23] != 'Z')
        return 0;
    for (int i = 20; i < 23; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    for (time_t t = lo; t <= hi; t++) {
        struct tm tm;
        char want[32];
        gmtime_r(&t, &tm);
        strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
        if (memcmp(s, want, 19) == 0)
            return 1;
    }
    return 0;
}

static void matches_the_clock(void)
{
    /* 3,000 calls about 1 ms apart cross several seconds: each must carry its own second */
    int bad = 0;
    for (int i = 0; i < 3000; i++) {
        char s[32];
        time_t lo = now_s();
        util_iso_now(s, sizeof(s));
        time_t hi = now_s();
        if (!well_formed(s, lo, hi))
            bad++;
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
    CHECK(bad == 0);
}

static void *thread_main(void *arg)
{
    int *bad = arg;
    for (int i = 0; i < 2000; i++) {
        char s[32];
        time_t lo = now_s();
        util_iso_now(s, sizeof(s));
        if (!well_formed(s, lo, now_s()))
            (*bad)++;
    }
    return NULL;
}

static void two_threads(void)
{
    int bad[2] = {0, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_main, &bad[0]) == 0);
    thread_main(&bad[1]);
    pthread_join(t, NULL);
    CHECK(bad[0] == 0 && bad[1] == 0);
}

static void short_buffers(void)
{
    char full[32], s[32];
    util_iso_now(full, sizeof(full));
    for (size_t n = 1; n <= 25; n++) {
        memset(s, 'x', sizeof(s));
        util_iso_now(s, n);
        CHECK(strlen(s) == n - 1);
        CHECK(memcmp(s, full, n - 1 < 19 ? n - 1 : 19) == 0); /* same second, most likely */
        CHECK(s[n] == 'x');                                   /* nothing past the buffer */
    }
    s[0] = 'x';
    util_iso_now(s, 0);
    CHECK(s[0] == 'x');
}

/* agent_iso's text as the printf form gives it. */
static void iso_by_printf(double t, char *out, size_t outlen)
{
    long long ms = llround(t * 1000.0);
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, outlen, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
             (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
             (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
             (unsigned)tm.tm_sec % 100u, (unsigned)(ms % 1000));
}

static void agent_iso_as_printf(void)
{
    static const double fixed[] = {0,
                                   0.0004,
                                   0.0005,
                                   0.9995,
                                   59.9999,
                                   86399.9996,
                                   951782400.123,
                                   1764288000.5,
                                   1795911671.898,
                                   4102444799.9995,
                                   253402300799.999,
                                   253402300800.0,
                                   -0.5,
                                   -86400.25};
    int bad = 0;
    srand(7);
    for (int i = 0; i < 20000 + (int)(sizeof(fixed) / sizeof(fixed[0])); i++) {
        double t = i < (int)(sizeof(fixed) / sizeof(fixed[0]))
                       ? fixed[i]
                       : (double)rand() / RAND_MAX * 4102444800.0 + (rand() % 1000) / 1000.0;
        for (size_t len = 0; len <= 32; len += (len < 26 ? 1 : 6)) {
            char a[40], b[40];
            memset(a, 'x', sizeof(a));
            memset(b, 'x', sizeof(b));
            agent_iso(t, a, len);
            iso_by_printf(t, b, len);
            if (memcmp(a, b, sizeof(a)) != 0 && bad++ < 5)
                fprintf(stderr, "agent_iso(%.4f, %zu): %.40s, printf: %.40s\n", t, len, a, b);
        }
    }
    CHECK(bad == 0);
}

int main(void)
{
    RUN(matches_the_clock);
    RUN(two_threads);
    RUN(short_buffers);
    RUN(agent_iso_as_printf);
    return check_summary();
}
