/*
 * loadgen_stats.c - latency histograms, named counters, and the load generator's JSON report.
 *
 * Histogram: log-linear buckets over microseconds, exact below 64 us, then 32 equal buckets per
 * power of two (each at most 1/32 = 3.1 % of its value wide), up to 2^40 us.  A fixed array, so
 * adding is two instructions and a histogram from each load generator process can be merged
 * bucket by bucket (bench/loadgen_merge.py does that with the buckets printed here): percentiles
 * over several processes come from the merged buckets, never from averaging percentiles.
 *
 * The report is one JSON object per process; its fields are the lg_report_t / lg_stats_t
 * fields under the same names, grouped as "conversations", "turns", "traffic", "errors",
 * "closes", "latency".  Nothing here allocates.
 */
#include "loadgen.h"

#include <string.h>

#define MAX_US ((1ULL << 40) - 1)

int lg_hist_index(uint64_t us)
{
    if (us > MAX_US)
        us = MAX_US;
    if (us < 64)
        return (int)us;
    int msb = 63 - __builtin_clzll(us);
    int shift = msb - 5;
    int top = (int)(us >> shift); /* 32..63 */
    return 64 + (msb - 6) * 32 + (top - 32);
}

void lg_hist_range(int index, uint64_t *lo, uint64_t *hi)
{
    if (index < 64) {
        *lo = *hi = (uint64_t)index;
        return;
    }
    int k = index - 64, msb = k / 32 + 6, shift = msb - 5;
    uint64_t top = (uint64_t)(k % 32 + 32);
    *lo = top << shift;
    *hi = ((top + 1) << shift) - 1;
}

void lg_hist_add(lg_hist_t *h, uint64_t us)
{
    h->bucket[lg_hist_index(us)]++;
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

void lg_hist_merge(lg_hist_t *a, const lg_hist_t *b)
{
    for (int i = 0; i < LG_HIST_BUCKETS; i++)
        a->bucket[i] += b->bucket[i];
    a->count += b->count;
    a->sum_us += b->sum_us;
    if (b->max_us > a->max_us)
        a->max_us = b->max_us;
}

uint64_t lg_hist_quantile(const lg_hist_t *h, double q)
{
    uint64_t rank, seen = 0, lo, hi;
    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    for (int i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            lg_hist_range(i, &lo, &hi);
            return hi < h->max_us ? hi : h->max_us;
        }
    }
    return h->max_us;
}

void lg_hist_json(FILE *f, const lg_hist_t *h)
{
    int first = 1;
    fprintf(f,
            "{\"count\":%llu,\"mean_us\":%.1f,\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,"
            "\"p999_us\":%llu,\"max_us\":%llu,\"buckets\":[",
            (unsigned long long)h->count, h->count ? (double)h->sum_us / (double)h->count : 0.0,
            (unsigned long long)lg_hist_quantile(h, 0.50),
            (unsigned long long)lg_hist_quantile(h, 0.90),
            (unsigned long long)lg_hist_quantile(h, 0.99),
            (unsigned long long)lg_hist_quantile(h, 0.999), (unsigned long long)h->max_us);
    for (int i = 0; i < LG_HIST_BUCKETS; i++) {
        uint64_t lo, hi;
        if (!h->bucket[i])
            continue;
        lg_hist_range(i, &lo, &hi);
        fprintf(f, "%s[%llu,%llu,%llu]", first ? "" : ",", (unsigned long long)lo,
                (unsigned long long)hi, (unsigned long long)h->bucket[i]);
        first = 0;
    }
    fprintf(f, "]}");
}

void lg_count(lg_counter_t *tab, int *n, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(tab[i].name, name) == 0) {
            tab[i].n++;
            return;
        }
    if (*n == LG_MAX_CODES - 1)
        name = "other";
    if (*n == LG_MAX_CODES) {
        tab[LG_MAX_CODES - 1].n++;
        return;
    }
    snprintf(tab[*n].name, sizeof(tab[*n].name), "%s", name);
    tab[*n].n = 1;
    (*n)++;
}

/* Writes s as a JSON string; s comes from our own code or is cut to printable ASCII. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fputc('?', f);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void counters_json(FILE *f, const lg_counter_t *tab, int n)
{
    fputc('{', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        json_str(f, tab[i].name);
        fprintf(f, ":%llu", (unsigned long long)tab[i].n);
    }
    fputc('}', f);
}

#define U(x) ((unsigned long long)(x))

void lg_report_json(FILE *f, const lg_report_t *r)
{
    const lg_stats_t *s = r->st;
    double w = r->window_s > 0 ? r->window_s : 0;

    fprintf(f, "{\"mode\":");
    json_str(f, r->mode);
    fprintf(f, ",\"target\":");
    json_str(f, r->target);
    fprintf(f,
            ",\"id\":%d,\"conns\":%d,\"rate\":%.1f,\"warmup_s\":%.3f,\"duration_s\":%.3f,"
            "\"window_s\":%.3f,\"connect_s\":%.3f,\"ready_at_go\":%d,\"open_at_end\":%d,"
            "\"aborted\":%s,\"note\":",
            r->id, r->conns, r->rate, r->warmup_s, r->duration_s, r->window_s, r->connect_s,
            r->ready_at_go, r->open_at_end, r->aborted ? "true" : "false");
    if (r->note)
        json_str(f, r->note);
    else
        fprintf(f, "null");
    fprintf(f, ",\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"max_rss_kb\":%ld", r->cpu_user_s,
            r->cpu_sys_s, r->max_rss_kb);
    fprintf(f,
            ",\"conversations\":{\"connects\":%llu,\"ready\":%llu,\"connect_failed\":%llu,"
            "\"upgrade_failed\":%llu,\"hello_failed\":%llu,\"connect_timeouts\":%llu,"
            "\"no_greeting\":%llu,\"finished\":%llu,\"escalated\":%llu,"
            "\"closed_by_server\":%llu,\"protocol_errors\":%llu}",
            U(s->connects), U(s->ready), U(s->connect_failed), U(s->upgrade_failed),
            U(s->hello_failed), U(s->connect_timeouts), U(s->no_greeting), U(s->finished),
            U(s->escalated), U(s->closed_by_server), U(s->protocol_errors));
    fprintf(f,
            ",\"turns\":{\"sent\":%llu,\"acked\":%llu,\"done\":%llu,\"rejected\":%llu,"
            "\"timeout_unacked\":%llu,\"timeout_unanswered\":%llu,\"lost_unacked\":%llu,"
            "\"lost_unanswered\":%llu,\"closed_unacked\":%llu,\"closed_unanswered\":%llu,"
            "\"window_turns\":%llu,\"turns_per_s\":%.1f,\"open_due\":%llu,\"open_unsent\":%llu}",
            U(s->turns_sent), U(s->turns_acked), U(s->turns_done), U(s->turns_rejected),
            U(s->turns_timeout_unacked), U(s->turns_timeout_unanswered), U(s->turns_lost_unacked),
            U(s->turns_lost_unanswered), U(s->turns_closed_unacked), U(s->turns_closed_unanswered),
            U(s->window_turns), w > 0 ? (double)s->window_turns / w : 0.0, U(s->open_due),
            U(s->open_unsent));
    fprintf(f,
            ",\"traffic\":{\"frames_in\":%llu,\"frames_out\":%llu,\"bytes_in\":%llu,"
            "\"bytes_out\":%llu,\"pings\":%llu}",
            U(s->frames_in), U(s->frames_out), U(s->bytes_in), U(s->bytes_out), U(s->pings));
    fprintf(f, ",\"errors\":");
    counters_json(f, s->errors, s->nerrors);
    fprintf(f, ",\"closes\":");
    counters_json(f, s->closes, s->ncloses);
    fprintf(f, ",\"latency\":{\"turn\":");
    lg_hist_json(f, &s->turn);
    fprintf(f, ",\"ack\":");
    lg_hist_json(f, &s->ack);
    fprintf(f, ",\"hello\":");
    lg_hist_json(f, &s->hello);
    fprintf(f, "}}\n");
}
