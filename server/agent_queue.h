/*
 * agent_queue.h - the agents' queue order: the open hand-offs waiting for an agent (queued, then
 * call-backs), kept sorted as they change instead of sorted again at every push.
 */
#ifndef REDRESS_AGENT_QUEUE_H
#define REDRESS_AGENT_QUEUE_H

/* Where a hand-off stands in the queue; keys are distinct (id is). */
typedef struct agent_qkey {
    int callback; /* 0 queued, 1 call-back: every queued one comes first */
    int priority; /* higher first */
    double t;     /* queued_at for a queued one, due for a call-back: earlier first */
    long long id; /* the hand-off's id: lower first */
} agent_qkey;

typedef struct agent_qent {
    agent_qkey k;
    void *item; /* the caller's (agent.c: its struct handoff) */
} agent_qent;

/* v[0..n) in queue order.  Zero-initialized is an empty queue. */
typedef struct agent_queue {
    agent_qent *v;
    int n, cap;
} agent_queue;

/* <0, 0, >0 as a comes before, is, or comes after b. */
int agent_qkey_cmp(const agent_qkey *a, const agent_qkey *b);

/* Adds item at k's place.  0, or -1 when out of memory (the queue is unchanged). */
int agent_queue_insert(agent_queue *q, const agent_qkey *k, void *item);

/* Removes the entry whose key is k.  0, or -1 when there is none. */
int agent_queue_remove(agent_queue *q, const agent_qkey *k);

/* Rebuilding all at once: empty the queue, append every entry in any order, then sort. */
void agent_queue_clear(agent_queue *q);
int agent_queue_append(agent_queue *q, const agent_qkey *k, void *item); /* 0 or -1 (memory) */
void agent_queue_sort(agent_queue *q);

void agent_queue_free(agent_queue *q);

#endif
