/*
 * test_timeq.c - the timer queue (server/timeq.c) against a plain array: random queues,
 * moves and removals (by timeq_remove or a time of 0), and after every step the front is the
 * earliest queued item and every index is right.
 */
#include "check.h"
#include "timeq.h"

#include <stdlib.h>

#define N 500

typedef struct owner {
    int id;
    timeq_item tq;
} owner;

static owner items[N];

/* The earliest due among queued items (the reference), or -1 when none is queued. */
static double earliest(void)
{
    double best = -1;
    for (int i = 0; i < N; i++)
        if (items[i].tq.idx >= 0 && (best < 0 || items[i].tq.due < best))
            best = items[i].tq.due;
    return best;
}

static int consistent(const timeq *q)
{
    int queued = 0;
    for (int i = 0; i < N; i++)
        if (items[i].tq.idx >= 0) {
            queued++;
            if (items[i].tq.idx >= q->n || q->v[items[i].tq.idx] != &items[i].tq)
                return 0;
        }
    for (int i = 1; i < q->n; i++)
        if (q->v[(i - 1) / 2]->due > q->v[i]->due)
            return 0;
    return queued == q->n;
}

static void random_operations_keep_the_order(void)
{
    timeq q = {0};
    srand(7);
    for (int i = 0; i < N; i++) {
        items[i].id = i;
        timeq_item_init(&items[i].tq);
    }
    int ok = 1;
    for (int step = 0; step < 20000 && ok; step++) {
        owner *o = &items[rand() % N];
        int op = rand() % 4;
        if (op < 2)
            ok = timeq_set(&q, &o->tq, (double)(1 + rand() % 1000)) == 0; /* queue or move */
        else if (op == 2 && rand() % 2)
            timeq_remove(&q, &o->tq);
        else if (op == 2) /* nothing ahead: out of the queue as well */
            ok = timeq_set(&q, &o->tq, 0) == 0 && o->tq.idx == -1;
        else if (timeq_first(&q)) /* take the front, as a timer tick does */
            timeq_remove(&q, timeq_first(&q));
        double want = earliest();
        timeq_item *first = timeq_first(&q);
        ok = ok && consistent(&q) &&
             (want < 0 ? first == NULL : first != NULL && first->due == want);
    }
    CHECK(ok); /* the queue lost its order or an index */
    /* draining gives ascending times and each owner once */
    double last = -1;
    int n = 0;
    timeq_item *it;
    while ((it = timeq_first(&q)) != NULL) {
        owner *o = TIMEQ_OWNER(it, owner, tq);
        CHECK(o >= items && o < items + N && &o->tq == it);
        CHECK(it->due >= last);
        last = it->due;
        timeq_remove(&q, it);
        CHECK(it->idx == -1);
        n++;
    }
    CHECK(n > 0 && q.n == 0);
    timeq_free(&q);
}

int main(void)
{
    RUN(random_operations_keep_the_order);
    return check_summary();
}
