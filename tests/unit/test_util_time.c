/*
 * test_util_time.c - util_iso_now (server/util.c): the timestamp every stored event carries.
 * It formats the date and time once a second and the milliseconds by hand, so check it against
 * gmtime_r + strftime of the same second, across second boundaries, from two threads, and with
 * short buffers (truncated like snprintf, always terminated).
 */
#include "check.h"
#include "util.h"

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

int main(void)
{
    RUN(matches_the_clock);
    RUN(two_threads);
    RUN(short_buffers);
    return check_summary();
}
