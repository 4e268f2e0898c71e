/*
 * histo.h - latency histograms for /metrics, in the Prometheus way.
 *
 * Each bucket counts the observations above the previous bound and up to its own, so that an
 * observation costs a bisection and an increment; metrics_render() sums them into Prometheus'
 * cumulative `le` buckets.  The bounds go from 250 us to 10 s: a turn is a few hundred
 * microseconds of loop time, and anything above a second is an outage to be seen, not measured
 * finely.  A histo_t has no lock: its owner updates it on one thread (the loop's counters) or
 * under its own lock (the store's).
 */
#ifndef REDRESS_HISTO_H
#define REDRESS_HISTO_H

#include <stdint.h>

#define HISTO_BUCKETS 16

/* upper bounds in nanoseconds; the last one is +Inf */
static const uint64_t histo_bounds_ns[HISTO_BUCKETS] = {
    250000,    500000,    1000000,   2000000,    5000000,    10000000,   20000000,    50000000,
    100000000, 200000000, 500000000, 1000000000, 2000000000, 5000000000, 10000000000, UINT64_MAX};

typedef struct histo {
    uint64_t count, sum_ns;
    uint64_t bucket[HISTO_BUCKETS];
} histo_t;

/* Counts one observation of ns nanoseconds. */
static inline void histo_observe(histo_t *h, uint64_t ns)
{
    int lo = 0, hi = HISTO_BUCKETS - 1; /* the first bound >= ns; the last always is */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (histo_bounds_ns[mid] >= ns)
            hi = mid;
        else
            lo = mid + 1;
    }
    h->bucket[lo]++;
    h->count++;
    h->sum_ns += ns;
}

#endif
