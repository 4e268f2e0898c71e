/*
 * timeq.h - things due at times: a binary min-heap of items embedded in their owners, with
 * removal and moves in O(log n).  For timers that would otherwise walk everything they own
 * every tick: complaint deadlines (complaint.c) and the session sweep (session.c).  Not
 * thread-safe; never allocates per item.
 */
#ifndef REDRESS_TIMEQ_H
#define REDRESS_TIMEQ_H

#include <stddef.h>

typedef struct timeq_item {
    double due;
    int idx; /* place in the heap; -1 when not queued (timeq_item_init) */
} timeq_item;

typedef struct timeq {
    timeq_item **v;
    int n, cap;
} timeq;

/* The owner of an item: TIMEQ_OWNER(item, struct record, tq). */
#define TIMEQ_OWNER(it, type, member) ((type *)(void *)((char *)(it)-offsetof(type, member)))

static inline void timeq_item_init(timeq_item *it)
{
    it->due = 0;
    it->idx = -1;
}

/* Queues it at due, or moves it there if queued; due <= 0 (nothing ahead) takes it out.  0,
 * or -1 when out of memory (it is then left as it was: not queued, or queued at its old
 * time). */
int timeq_set(timeq *q, timeq_item *it, double due);
/* Takes it out (nothing if not queued). */
void timeq_remove(timeq *q, timeq_item *it);
/* The earlier of two times, 0 standing for none (as for timeq_set). */
static inline double timeq_earliest(double a, double b)
{
    return a <= 0 ? b : b <= 0 || a <= b ? a : b;
}

/* The item due first, NULL when empty. */
static inline timeq_item *timeq_first(const timeq *q)
{
    return q->n > 0 ? q->v[0] : NULL;
}
/* Frees the heap's array (not the items); q is empty again. */
void timeq_free(timeq *q);

#endif
