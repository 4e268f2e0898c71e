/*
 * store.h - durable conversation storage in SQLite (WAL).
 *
 * Two connections: a writer owned by a dedicated thread, and a reader used only on the loop
 * thread.  Every write is an operation queued with store_submit() (or one of the typed helpers
 * below); the writer thread runs queued operations in batches, one transaction per batch, each
 * operation inside its own savepoint, and after COMMIT hands the batch back to the loop thread,
 * where each operation's done callback runs in submission order.  So "done with rc 0" means
 * durable (to the process-crash level with store.synchronous=normal, to the power-loss level
 * with full), and the loop thread never waits for a disk.
 *
 * Reads run synchronously on the loop thread through the reader connection; they use indexed
 * lookups only.  A read sees every batch whose done callbacks have run.
 */
#ifndef REDRESS_STORE_H
#define REDRESS_STORE_H

#include <sqlite3.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "histo.h"

typedef struct store store_t;
typedef struct store_tx store_tx_t;

/* Called once on each new connection (writer first, then reader) before use; the writer's
 * call may create tables.  Returns 0, or -1 with a message in err. */
typedef int (*store_conn_init_fn)(sqlite3 *db, int is_writer, void *arg, char *err, size_t errlen);

/*
 * Opens (creating and migrating) the database named by cfg, starts the writer thread and
 * registers an async handle on loop.  Returns 0 and *out, or -1 with a message in err.
 */
int store_open(store_t **out, uv_loop_t *loop, const config_t *cfg, store_conn_init_fn init,
               void *init_arg, char *err, size_t errlen);

/*
 * Runs every queued operation, stops the writer thread, runs the remaining done callbacks,
 * closes its connections and frees the store once its async handle has closed (the loop must
 * run after this call).  Call on the loop thread; s is invalid afterwards.
 */
void store_close(store_t *s);

/* The loop thread's read connection (owned by the store). */
sqlite3 *store_reader(store_t *s);
/* The loop thread's connection for the flows' knowledge-base searches only (owned by the
 * store; the flow engine's searcher keeps a snapshot on it for a loop pass). */
sqlite3 *store_kb_reader(store_t *s);

/* ---- generic operations ---- */

/* Runs on the writer thread inside a savepoint.  Returns 0, or non-zero to roll the
 * operation back (the batch goes on). */
typedef int (*store_work_fn)(store_tx_t *tx, void *arg);
/* Runs on the loop thread after the batch committed (rc = work's result) or failed (rc < 0). */
typedef void (*store_done_fn)(void *arg, int rc);

/* Queues an operation.  done may be NULL.  Returns 0, or -1 (out of memory, or closing):
 * then neither callback will run. */
int store_submit(store_t *s, store_work_fn work, store_done_fn done, void *arg);

/* Loop thread.  The operations submitted between store_group_begin() and the matching
 * store_group_end() (calls nest; the outermost pair counts) are one unit: the writer runs them
 * in order in one savepoint of one transaction, and they all succeed or all fail (each done
 * callback then gets the same rc, in the order they were submitted).  Nothing of a group
 * reaches the writer before store_group_end(). */
void store_group_begin(store_t *s);
void store_group_end(store_t *s);

/* Loop thread.  Runs now the done callbacks of what the writer has committed since they last
 * ran, instead of when the loop next polls (the writer's wake-up); for the middle of a long
 * loop pass.  Does nothing inside a done callback. */
void store_deliver(store_t *s);

/* Inside a work function: the writer connection, and a cached prepared statement for sql
 * (sql must be a string literal or otherwise outlive the store; the statement is reset and
 * its bindings cleared). */
sqlite3 *store_tx_db(store_tx_t *tx);
sqlite3_stmt *store_tx_stmt(store_tx_t *tx, const char *sql);

/* ---- conversations and events ---- */

typedef struct store_conv {
    long long id;
    char token[33];
    char customer_id[129]; /* the company's id for the customer */
    char customer_name[256];
    char channel[16];
    char state[16]; /* open | closed */
    long long last_seq;
    char *flow_state; /* JSON, malloc'ed, may be NULL (reads only) */
} store_conv_t;

typedef struct store_event {
    long long conversation;
    long long seq;
    const char *kind;      /* "message" or "status" */
    const char *sender;    /* message: bot | agent | system | customer */
    const char *client_id; /* message from the customer: the client's id, else NULL */
    const char *text;      /* message */
    const char *options;   /* message: JSON array text, or NULL */
    const char *state;     /* status */
    const char *detail;    /* status: JSON object text */
    char ts[32];
} store_event_t;

/* Queues creation of a customer (upserted by id) and a conversation row.  c is copied. */
int store_create_conversation(store_t *s, const store_conv_t *c, store_done_fn done, void *arg);

/* Queues an event.  ev and the strings it points to must stay valid until done runs. */
int store_append_event(store_t *s, const store_event_t *ev, store_done_fn done, void *arg);

/* Queues an internal event (not sent to the customer, no seq): kind and detail (JSON object
 * text) copied.  Used for the audit trail: escalations, record updates, flow failures. */
int store_append_internal(store_t *s, long long conversation, const char *kind,
                          const char *detail_json, const char *actor);

/* Reader: what is known about a customer: VIP level and the number of earlier conversations.
 * Unknown customers give 0 and 0.  Returns 0 or negative on error. */
int store_customer_info(store_t *s, const char *customer_id, int *vip, int *conversations);

/* Queues a flow state update (json copied; NULL clears).  done may be NULL. */
int store_save_flow_state(store_t *s, long long conversation, const char *json, store_done_fn done,
                          void *arg);

/* Reader: the conversation with this token.  Returns 0 and fills *c (caller frees
 * c->flow_state), 1 when none, negative on error. */
int store_find_conversation(store_t *s, const char *token, store_conv_t *c);

/* Queues the conversation's next flow timer (flows' clock, epoch seconds; 0 = none). */
int store_set_flow_due(store_t *s, long long conversation, double due);
/* Reader: calls fn(id) for up to limit conversations whose flow timer is due at now, earliest
 * first (fn returns non-zero to stop).  0 or -1. */
int store_due_conversations(store_t *s, double now, int limit, int (*fn)(long long id, void *arg),
                            void *arg);

/* Reader: the token (33 bytes with NUL) of conversation id.  0 found, 1 none, <0 error. */
int store_conversation_token(store_t *s, long long id, char *token);

/* Reader: the seq of the customer message with this client id.  0 found, 1 none, <0 error. */
int store_find_client_message(store_t *s, long long conversation, const char *client_id,
                              long long *seq);

/* Reader: calls fn for the first `limit` events with seq > after, in seq order; stops early
 * when fn returns non-zero.  Returns 0 or negative on error. */
int store_replay(store_t *s, long long conversation, long long after, int limit,
                 int (*fn)(const store_event_t *ev, void *arg), void *arg);

/* Reader: highest conversation id (0 when none). */
long long store_max_conversation_id(store_t *s);

/* Counters for /metrics. */
typedef struct store_stats {
    uint64_t batches, ops, failed_ops;
    uint64_t checkpoints;        /* passive checkpoints run by the checkpointer thread */
    uint64_t writer_checkpoints; /* run by the writer itself: the last CKPT_CATCH_UP frames, or
                                    the whole log when it outgrew 8x the threshold */
    histo_t batch_time;          /* each write transaction, BEGIN to COMMIT done */
} store_stats_t;
void store_get_stats(store_t *s, store_stats_t *out);

#endif
