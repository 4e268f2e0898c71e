/*
 * agent_queue.c - the agents' queue order as a sorted array.
 *
 * Why: agent.c pushed the queue (positions to queued customers, the list to agents) by sorting
 * every open hand-off at each push, every agent.queue_push_ms while anything changed.  With
 * thousands waiting - a busy hour with few agents, or none: the benchmark's thousands of
 * call-backs - the sort alone took 2-5 ms of the loop four times a second (qsort over
 * pointers into hand-offs spread over the heap: a cache miss for every comparison), and every
 * turn in flight waited for it.  Now each change of a hand-off's place (a new one, a claim, a
 * call-back, a transfer, an end) moves one entry: a binary search and a memmove of the
 * pointers after it.  A push reads the array in order, and its keys without touching the
 * hand-offs.
 *
 * Ownership: the queue owns its array, not the items.  Not thread-safe (the loop thread's).
 */
#include "agent_queue.h"

#include <stdlib.h>
#include <string.h>

int agent_qkey_cmp(const agent_qkey *a, const agent_qkey *b)
{
    if (a->callback != b->callback)
        return a->callback - b->callback;
    if (a->priority != b->priority)
        return b->priority - a->priority;
    if (a->t != b->t)
        return a->t < b->t ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* The first index whose key does not come before k. */
static int lower_bound(const agent_queue *q, const agent_qkey *k)
{
    int lo = 0, hi = q->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (agent_qkey_cmp(&q->v[mid].k, k) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int reserve_one(agent_queue *q)
{
    if (q->n < q->cap)
        return 0;
    int cap = q->cap ? q->cap * 2 : 64;
    agent_qent *v = realloc(q->v, sizeof(*v) * (size_t)cap);
    if (!v)
        return -1;
    q->v = v;
    q->cap = cap;
    return 0;
}

int agent_queue_insert(agent_queue *q, const agent_qkey *k, void *item)
{
    if (reserve_one(q) != 0)
        return -1;
    int i = lower_bound(q, k);
    memmove(&q->v[i + 1], &q->v[i], sizeof(*q->v) * (size_t)(q->n - i));
    q->v[i].k = *k;
    q->v[i].item = item;
    q->n++;
    return 0;
}

int agent_queue_remove(agent_queue *q, const agent_qkey *k)
{
    int i = lower_bound(q, k);
    if (i == q->n || agent_qkey_cmp(&q->v[i].k, k) != 0)
        return -1;
    memmove(&q->v[i], &q->v[i + 1], sizeof(*q->v) * (size_t)(q->n - i - 1));
    q->n--;
    return 0;
}

void agent_queue_clear(agent_queue *q)
{
    q->n = 0;
}

int agent_queue_append(agent_queue *q, const agent_qkey *k, void *item)
{
    if (reserve_one(q) != 0)
        return -1;
    q->v[q->n].k = *k;
    q->v[q->n].item = item;
    q->n++;
    return 0;
}

static int cmp_ent(const void *a, const void *b)
{
    return agent_qkey_cmp(&((const agent_qent *)a)->k, &((const agent_qent *)b)->k);
}

void agent_queue_sort(agent_queue *q)
{
    if (q->n > 1)
        qsort(q->v, (size_t)q->n, sizeof(*q->v), cmp_ent);
}

void agent_queue_free(agent_queue *q)
{
    free(q->v);
    q->v = NULL;
    q->n = q->cap = 0;
}
