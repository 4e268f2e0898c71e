/*
 * test_agent_queue.c - the agents' queue order (server/agent_queue.c) against a plain array
 * sorted with qsort: the key's order (queued before call-backs, higher priority first, then the
 * earlier time, then the lower id), random inserts, moves and removals with many equal
 * priorities and times, and a rebuild (append + sort) that gives the same array.
 */
#include "agent_queue.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

#define N 400

typedef struct item {
    agent_qkey k;
    int in; /* in the queue */
} item;

static item items[N];

static int cmp_ref(const void *a, const void *b)
{
    const item *x = *(item *const *)a, *y = *(item *const *)b;
    /* the order docs/protocol.md gives, written out again rather than through the module */
    if (x->k.callback != y->k.callback)
        return x->k.callback ? 1 : -1;
    if (x->k.priority != y->k.priority)
        return x->k.priority > y->k.priority ? -1 : 1;
    if (x->k.t != y->k.t)
        return x->k.t < y->k.t ? -1 : 1;
    return x->k.id < y->k.id ? -1 : 1;
}

/* The queue holds exactly the items marked in, in the reference order. */
static int matches(const agent_queue *q)
{
    item *ref[N];
    int n = 0;
    for (int i = 0; i < N; i++)
        if (items[i].in)
            ref[n++] = &items[i];
    qsort(ref, (size_t)n, sizeof(*ref), cmp_ref);
    if (q->n != n)
        return 0;
    for (int i = 0; i < n; i++)
        if (q->v[i].item != ref[i] || memcmp(&q->v[i].k, &ref[i]->k, sizeof(agent_qkey)) != 0)
            return 0;
    return 1;
}

static agent_qkey random_key(int id)
{
    /* few distinct priorities and times, so that every tie-break is exercised */
    return (agent_qkey){rand() % 2, 1 + rand() % 3, (double)(rand() % 8), id};
}

static void key_order(void)
{
    agent_qkey queued_low = {0, 1, 100, 9}, queued_high = {0, 3, 200, 8};
    agent_qkey callback_high = {1, 3, 50, 1}, early = {0, 1, 99, 10}, same_t = {0, 1, 100, 10};
    CHECK(agent_qkey_cmp(&queued_low, &callback_high) < 0); /* every queued one first */
    CHECK(agent_qkey_cmp(&queued_high, &queued_low) < 0);   /* then the higher priority */
    CHECK(agent_qkey_cmp(&early, &queued_low) < 0);         /* then the earlier time */
    CHECK(agent_qkey_cmp(&queued_low, &same_t) < 0);        /* then the lower id */
    CHECK(agent_qkey_cmp(&same_t, &same_t) == 0);
}

static void random_changes_keep_the_order(void)
{
    agent_queue q = {0};
    srand(7);
    memset(items, 0, sizeof(items));
    int bad = 0;
    for (int step = 0; step < 20000 && !bad; step++) {
        item *it = &items[rand() % N];
        int op = rand() % 3;
        if (!it->in) { /* a new hand-off */
            it->k = random_key((int)(it - items));
            CHECK(agent_queue_insert(&q, &it->k, it) == 0);
            it->in = 1;
        } else if (op == 0) { /* claimed or ended */
            CHECK(agent_queue_remove(&q, &it->k) == 0);
            it->in = 0;
            CHECK(agent_queue_remove(&q, &it->k) == -1); /* not there any more */
        } else {                                         /* a call-back, a transfer: it moves */
            CHECK(agent_queue_remove(&q, &it->k) == 0);
            it->k = random_key((int)(it - items));
            CHECK(agent_queue_insert(&q, &it->k, it) == 0);
        }
        if (!matches(&q)) {
            CHECK(!"the queue left the reference order");
            bad = 1;
        }
    }
    CHECK(q.n > N / 4 && q.n < N); /* the walk did fill and empty it */

    /* a rebuild from scratch gives the same array */
    agent_queue r = {0};
    for (int i = N - 1; i >= 0; i--)
        if (items[i].in)
            CHECK(agent_queue_append(&r, &items[i].k, &items[i]) == 0);
    agent_queue_sort(&r);
    CHECK(r.n == q.n && memcmp(r.v, q.v, sizeof(*q.v) * (size_t)q.n) == 0);
    agent_queue_clear(&r);
    CHECK(r.n == 0 && agent_queue_remove(&r, &items[0].k) == -1);
    agent_queue_free(&r);
    agent_queue_free(&q);
    CHECK(q.v == NULL && q.n == 0);
}

int main(void)
{
    RUN(key_order);
    RUN(random_changes_keep_the_order);
    return check_summary();
}
