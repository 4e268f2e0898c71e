/*
 * agent_store.h - the tables behind escalation and hand-off: hand-offs, agent notes, canned
 * replies, complaint records; and the reads that build an agent's context packet.
 *
 * Writes are store operations (store_submit: the writer thread, one savepoint each, done on the
 * loop thread after COMMIT).  Reads use prepared statements on the store's reader connection,
 * on the loop thread, indexed lookups only.  An agent_store_t owns those reader statements.
 *
 * Times are seconds since the Unix epoch (REAL) on the server's clock as the caller gives it
 * (tests shift it with flow.clock_start); text times in JSON are ISO 8601 UTC.
 */
#ifndef REDRESS_AGENT_STORE_H
#define REDRESS_AGENT_STORE_H

#include <sqlite3.h>
#include <stddef.h>

#include "store.h"

/* Creates the tables (hand-offs, notes, canned replies seeded with defaults, complaints) when
 * missing.  Called on each connection's init like kb_migrate; idempotent.  0 or -1 + err. */
int agent_store_migrate(sqlite3 *db, char *err, size_t errlen);

typedef struct agent_store agent_store_t;

/* Prepares the reader statements.  Returns NULL (logged) on failure.  s must outlive it. */
agent_store_t *agent_store_new(store_t *s);
void agent_store_free(agent_store_t *as);

/* ---- hand-offs ---- */

typedef enum agent_hstate {
    AGENT_QUEUED = 1,
    AGENT_CALLBACK = 2,
    AGENT_ACTIVE = 3,
    AGENT_RESOLVED = 4,
    AGENT_HANDED_BACK = 5,
} agent_hstate_t;

/* "queued", "callback", "active", "resolved", "handed_back"; and back (0 when unknown). */
const char *agent_hstate_name(agent_hstate_t st);
agent_hstate_t agent_hstate_parse(const char *name);

typedef struct agent_handoff_row {
    long long id; /* assigned by the caller: agent_store_max_handoff_id() + 1, ... */
    long long conversation;
    agent_hstate_t state;
    char reason[65];
    int priority; /* 1..3 */
    char group[33];
    char agent[65];    /* owner's username, "" when none */
    char record[32];   /* complaint number, "" when none yet */
    double queued_at;  /* when escalated (or re-queued by a transfer) */
    double claimed_at; /* 0 when never */
    double ended_at;   /* 0 while open */
    double due;        /* promised call-back time, 0 when none */
    int transfers;
    const char *summary;    /* escalation summary JSON (flow.h), borrowed; insert only */
    const char *resolution; /* resolve only, borrowed; NULL otherwise */
} agent_handoff_row_t;

/* Highest hand-off id (0 when none), or -1 on error. */
long long agent_store_max_handoff_id(agent_store_t *as);

/* Calls fn for every open hand-off (queued, callback, active) in id order; fn's row (and its
 * summary) is valid during the call only.  Returns 0 or -1. */
int agent_store_load_open(agent_store_t *as, int (*fn)(const agent_handoff_row_t *r, void *arg),
                          void *arg);

/* Queues the insert of a new hand-off (r copied, including summary; group "" is stored as
 * "general").  done as store_submit.  -1 (nothing queued) when r->state is not a state. */
int agent_store_insert(store_t *s, const agent_handoff_row_t *r, store_done_fn done, void *arg);
/* Queues an update of the mutable columns (state, agent, record, claimed_at, ended_at, due,
 * transfers, queued_at, group, and resolution when non-NULL) of row r->id.  r copied.  done's
 * rc is negative when there is no hand-off r->id. */
int agent_store_update(store_t *s, const agent_handoff_row_t *r, store_done_fn done, void *arg);

/* ---- notes ---- */

/* Queues a private note (strings copied).  ts is epoch seconds. */
int agent_store_note(store_t *s, long long conversation, const char *author, const char *text,
                     double ts, store_done_fn done, void *arg);

/* ---- complaint records ---- */

/* Formats the complaint number of a conversation: "TS" + local date (UTC+8) of `when` + "-" +
 * the conversation id in 6+ digits, e.g. "TS20261127-000012".  out needs 32 bytes. */
void agent_record_number(long long conversation, double when, char *out, size_t outlen);

/* Queues an upsert of the conversation's complaint record: number, category, severity,
 * status ("received", "callback", ...), owner (username or ""), due (0 = none).  Strings
 * copied.  An existing record keeps its number and created_at, and its category and severity
 * when the new ones are "" / 0.  number NULL or "" makes one with agent_record_number() for
 * now.  The record's created_at/updated_at are the wall clock.  -1 (nothing queued) when
 * status is empty or out of memory. */
int agent_store_record(store_t *s, long long conversation, const char *number, const char *category,
                       int severity, const char *status, const char *owner, double due,
                       store_done_fn done, void *arg);

/* ---- past cases ---- */

/* Queues kb_case_add() of a resolved hand-off (strings copied; tried may be ""): summary,
 * category, what was tried, the resolution, outcome ("accepted" ...).  done's rc is the new
 * case id (> 0) or negative.  outcome accepted / partial / refused (or the kb's resolved /
 * partial / unresolved; NULL or "" = accepted) becomes the kb's; another value gives -1.  A
 * category the kb does not know becomes "general"; texts are cut to the kb's limits (summary
 * 2000 characters, tried and resolution 4000). */
int agent_store_case(store_t *s, const char *summary, const char *category, const char *tried,
                     const char *resolution, const char *outcome, store_done_fn done, void *arg);

/* ---- reads for the console ---- */

/*
 * The context packet (docs/protocol.md, "The context packet") of a conversation as a JSON
 * object text (malloc'ed; caller frees), built from: the conversation and customer rows, the
 * customer's other conversations with their complaint records and resolutions, the open (or
 * latest) hand-off row with its summary (category, severity, mood, slots, summary,
 * expectation, solutions offered/refused from the flow's state), the complaint record with the
 * flow's `record` internal events folded into `fields`, the notes, and the last 200 events.
 * Returns NULL when the conversation does not exist or on error (logged).
 *
 * Every key of the protocol's example is always present; what is unknown is null, never
 * omitted: escalation and handoff (no hand-off yet), category, severity, mood, slots, summary,
 * expectation (neither the summary nor a recorded field has it; each falls back from the
 * summary to the record field of the same name), record (no complaints row, no record number
 * and no recorded field), customer.name, handoff.agent (nobody owns it), and the times
 * (claimed_at, due: never / none).  solutions.offered/refused are [] when the summary has none.
 * mood is {score, trend} (plus level and threat when the flow has them); trend is mood.trend,
 * else mood.history, else [score].  past_complaints entries are {conversation, created_at,
 * category, record, status, resolution} with null for what that conversation lacks;
 * history_count counts the customer's conversations started before this one.  Status events
 * in the transcript also carry their `detail` object, as in the agent `message` frame.
 */
char *agent_store_context(agent_store_t *as, long long conversation);

/* Canned replies as a JSON array text [{title, text, group}] (malloc'ed), or NULL on error;
 * group is null for a reply meant for every group. */
char *agent_store_canned(agent_store_t *as);

/* Last customer message text of a conversation (malloc'ed) or NULL (none or error). */
char *agent_store_last_text(agent_store_t *as, long long conversation);

/* ---- inside the module: the JSON views (agent_ctx.c), owned by an agent_store_t ---- */

typedef struct agent_ctx agent_ctx_t;

/* Prepares the context packet's and canned replies' statements on the reader connection db.
 * Returns NULL (logged) on failure.  db must outlive it. */
agent_ctx_t *agent_ctx_new(sqlite3 *db);
void agent_ctx_free(agent_ctx_t *c);
/* As agent_store_context() and agent_store_canned(). */
char *agent_ctx_packet(agent_ctx_t *c, long long conversation);
char *agent_ctx_canned(agent_ctx_t *c);

#endif
