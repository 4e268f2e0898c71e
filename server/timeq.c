/*
 * timeq.c - a binary min-heap on timeq_item.due (timeq.h).
 *
 * The array holds pointers to items living in their owners; each item knows its index, so a
 * move or a removal sifts from where it is instead of searching.  Ties keep no order.
 */
#include "timeq.h"

#include <stdlib.h>

static void put(timeq *q, int i, timeq_item *it)
{
    q->v[i] = it;
    it->idx = i;
}

static void sift_up(timeq *q, int i)
{
    timeq_item *it = q->v[i];
    while (i > 0 && q->v[(i - 1) / 2]->due > it->due) {
        put(q, i, q->v[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    put(q, i, it);
}

static void sift_down(timeq *q, int i)
{
    timeq_item *it = q->v[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && q->v[c + 1]->due < q->v[c]->due)
            c++;
        if (q->v[c]->due >= it->due)
            break;
        put(q, i, q->v[c]);
        i = c;
    }
    put(q, i, it);
}

int timeq_set(timeq *q, timeq_item *it, double due)
{
    if (due <= 0) {
        timeq_remove(q, it);
        return 0;
    }
    if (it->idx < 0) {
        if (q->n == q->cap) {
            int cap = q->cap ? q->cap * 2 : 64;
            timeq_item **v = realloc(q->v, (size_t)cap * sizeof(*v));
            if (!v)
                return -1;
            q->v = v;
            q->cap = cap;
        }
        it->due = due;
        put(q, q->n++, it);
        sift_up(q, it->idx);
        return 0;
    }
    it->due = due;
    sift_up(q, it->idx);
    sift_down(q, it->idx);
    return 0;
}

void timeq_remove(timeq *q, timeq_item *it)
{
    int i = it->idx;
    if (i < 0)
        return;
    it->idx = -1;
    timeq_item *last = q->v[--q->n];
    if (i == q->n)
        return;
    put(q, i, last);
    sift_up(q, i);
    sift_down(q, last->idx);
}

void timeq_free(timeq *q)
{
    free(q->v);
    q->v = NULL;
    q->n = q->cap = 0;
}
