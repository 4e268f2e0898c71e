/*
 * complaint.h - complaint records: lifecycle, SLA deadlines and their timers, customer-visible
 * progress (docs/complaints.md).
 *
 * The manager keeps every record that is not closed in memory (a map by conversation), writes
 * each change through the store (complaints, complaint_events, surveys) and runs the deadline
 * timers from complaint_mgr_tick().  Records are created and moved by the flow
 * (complaint_flow_record, from session.c's host_record), by agents (agent.c) and by the timers.
 * Every transition is pushed to the customer's chat as a `record` status event and, for the
 * events webhooks know, to complaint_notify_fn.  Loop thread only.
 */
#ifndef REDRESS_COMPLAINT_H
#define REDRESS_COMPLAINT_H

#include <sqlite3.h>
#include <stddef.h>

typedef struct complaint_mgr complaint_mgr_t;
struct server;
struct session;

/* The tables are created by agent_store_migrate() (its step 2). */

/* Creates the manager: reads rules.dir/sla.json and loads the open records.  NULL (logged) on
 * failure.  srv->store, srv->sessions must exist; srv->agents may be NULL. */
complaint_mgr_t *complaint_mgr_new(struct server *srv);
/* Frees the reader statements (before store_close). */
void complaint_mgr_close_store(complaint_mgr_t *cm);
void complaint_mgr_free(complaint_mgr_t *cm);
/* Deadline timers: near breach, breach (escalates), closing resolved records. */
void complaint_mgr_tick(complaint_mgr_t *cm);
/* Re-reads rules.dir/sla.json (with the flows' reload).  0, or -1 with a message; the old
 * policy stays. */
int complaint_mgr_reload(complaint_mgr_t *cm, char *err, size_t errlen);

/* Replaces the policy (already checked; new deadlines use it, existing ones stay). */
struct sla_policy;
void complaint_mgr_set_sla(complaint_mgr_t *cm, const struct sla_policy *p);

/* Where webhook events go: event is complaint.created, complaint.escalated,
 * complaint.resolved or sla.breached; record_json the record (docs/complaints.md). */
typedef void (*complaint_notify_fn)(void *arg, const char *event, const char *record_json);
void complaint_set_notify(complaint_mgr_t *cm, complaint_notify_fn fn, void *arg);

/* ---- the flow and agents ---- */

/* The flow recorded field = value_json for conversation s (chat:record). */
void complaint_flow_record(complaint_mgr_t *cm, struct session *s, const char *field,
                           const char *value_json);
/* Moves conversation's record to status (a lifecycle name) for actor ("bot", a username,
 * "system").  Creates the record when missing and status is "received" or the record is
 * needed (callback).  Returns 0, 1 when refused (not a forward move), -1 on error. */
int complaint_set_status(complaint_mgr_t *cm, struct session *s, const char *status,
                         const char *actor, const char *note);
/* The conversation was handed to the agents (reason) / got an agent's reply / has an owner. */
void complaint_escalated(complaint_mgr_t *cm, struct session *s, const char *reason);
void complaint_answered(complaint_mgr_t *cm, long long conversation);
void complaint_owner(complaint_mgr_t *cm, long long conversation, const char *owner);
/* The record's number ("" when none; out needs 32 bytes) and its call-back promise. */
void complaint_number(complaint_mgr_t *cm, struct session *s, char *out, size_t outlen);
void complaint_callback(complaint_mgr_t *cm, struct session *s, double due, const char *reason);

/* "warning", "breached" or NULL: the record's SLA flag for the agents' queue. */
const char *complaint_sla_flag(complaint_mgr_t *cm, long long conversation);

/* ---- reads ---- */

/* The status code of a conversation: the first COMPLAINT_CODE_LEN hex digits of
 * SHA-256("redress status " + its resume token).  It lets the customer read the record's
 * progress (GET /api/complaints/status) but, unlike the token, not resume the chat.  out needs
 * COMPLAINT_CODE_LEN + 1 bytes. */
#define COMPLAINT_CODE_LEN 20
void complaint_status_code(const char *token, char *out);

/* The public progress view of record `number` if token is its status code: JSON
 * text (malloc'ed) {number, status, status_text, category, created_at, next_due, history:
 * [{status, at}]}.  NULL and *found = 0 when no such record or the token differs (one answer
 * for both), NULL and *found = -1 on error. */
char *complaint_progress(complaint_mgr_t *cm, const char *number, const char *token, int *found);

/* Follow-ups asked and not answered, oldest first (at most 500), as JSON text (malloc'ed):
 * {items: [{number, conversation, category, status, owner, customer_name, asked_at, waited_h,
 * overdue}], overdue, pending_after_h}; overdue = unanswered for sla followup_pending_h.
 * NULL on error. */
char *complaint_followups(complaint_mgr_t *cm);

/* The open record of conversation for the flow's chat:complaint(): JSON text (malloc'ed)
 * {number, status, status_text, next_due, created_at}, times in seconds since the epoch
 * (next_due: the call-back promised, else the earliest unmet deadline, else null).  NULL when
 * the conversation has no open record (none yet, or closed) or on error. */
char *complaint_brief(complaint_mgr_t *cm, long long conversation);

/* The running policy's followup_pending_h (hours; the default when cm is NULL). */
int complaint_followup_pending_h(const complaint_mgr_t *cm);

/* The Chinese name of a lifecycle status ("处理中" ...), or the input when unknown. */
const char *complaint_status_text(const char *status);

#endif
