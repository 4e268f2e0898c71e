/*
 * agent_proto.h - JSON <-> structs for the agent protocol v1 (docs/protocol.md).  The only
 * place the agent side touches cJSON.  Encoders return malloc'ed JSON text (caller frees) or
 * NULL when out of memory.
 */
#ifndef REDRESS_AGENT_PROTO_H
#define REDRESS_AGENT_PROTO_H

#include <stddef.h>

#include "proto.h"
#include "store.h"

#define AGENT_MAX_GROUPS 32
#define AGENT_GROUP_MAX 32

typedef enum agent_req_kind {
    AGENT_REQ_READY = 1,
    AGENT_REQ_CLAIM,
    AGENT_REQ_CONTEXT,
    AGENT_REQ_REPLY,
    AGENT_REQ_NOTE,
    AGENT_REQ_TRANSFER,
    AGENT_REQ_RESOLVE,
    AGENT_REQ_HANDBACK,
} agent_req_kind_t;

typedef struct agent_req {
    agent_req_kind_t kind;
    char id[65];            /* "" when the request had none */
    long long conversation; /* from "c-000000000012" */
    char *text;             /* reply/note text, resolve's resolution, transfer's note (malloc'ed) */
    char to_agent[65];
    char to_group[AGENT_GROUP_MAX + 1];
    char outcome[16]; /* resolve: accepted | partial | refused */
    int save_case;    /* resolve: default 1 */
    int available;    /* ready: 1 available, 0 away */
    int all_groups;   /* ready: groups omitted */
    int ngroups;
    char groups[AGENT_MAX_GROUPS][AGENT_GROUP_MAX + 1];
} agent_req_t;

/* 1 when s is a group name: 1..32 bytes of a-z 0-9 _ */
int agent_group_valid(const char *s);

/* Decodes one request.  max_chars bounds text fields (characters).  Returns 0 and *out (free
 * with agent_req_clear), or -1 with *code and a message (out->id is set when it was readable,
 * and nothing needs freeing). */
int agent_proto_decode(const char *buf, size_t len, int max_chars, agent_req_t *out,
                       proto_error_t *code, char *msg, size_t msglen);
void agent_req_clear(agent_req_t *r);

/* {"type":"ok","id":id, <key>: <raw JSON value>} ; id "" is omitted, key NULL adds nothing. */
char *agent_proto_ok(const char *id, const char *key, const char *raw_json);
/* {"type":"error","id":..,"code":..,"message":..} (code: a proto_error_name or an agent code) */
char *agent_proto_error(const char *id, const char *code, const char *message);
/* {"type":<type>, "conversation": name, <key>: raw JSON, <key2>: string} ; key/key2 may be NULL */
char *agent_proto_frame(const char *type, const char *conversation, const char *key,
                        const char *raw_json, const char *key2, const char *str2);
/* A stored event as an agent `message` frame (status events: from "system", text = state). */
char *agent_proto_event(const char *conversation, const store_event_t *ev);

/* A queue / mine item. */
typedef struct agent_item {
    const char *conversation, *state, *group, *reason, *category, *last_text;
    const char *cust_id, *cust_name, *agent;
    const char *sla;             /* the record's SLA flag: "warning", "breached" or NULL */
    const char *callback_reason; /* callback items: no_agent, after_hours, wait_timeout */
    int priority, position, severity, vip;
    double waited_s, due; /* due: epoch seconds, 0 = none */
} agent_item_t;

/* {"type":type, "items":[...], "total":total} */
char *agent_proto_items(const char *type, const agent_item_t *items, int n, int total);
/* The items alone as a JSON array text. */
char *agent_proto_items_array(const agent_item_t *items, int n);

/* Replaces (or adds) the "handoff" object of a context packet with the live values; returns a
 * new text (context is not freed) or NULL. */
char *agent_proto_patch_context(const char *context, const char *state, const char *agent,
                                double queued_at, double claimed_at, int transfers);

/* ISO 8601 UTC with milliseconds of epoch seconds t into out (>= 25 bytes). */
void agent_iso(double t, char *out, size_t outlen);
/* Adds key: agent_iso(t) to a cJSON object, or key: null when t <= 0 (never / none). */
struct cJSON;
void agent_json_time(struct cJSON *o, const char *key, double t);

/* Status details for the customer. */
char *agent_proto_queued_detail(int position, int wait_s, const char *group);
char *agent_proto_record_detail(const char *number, const char *status, double due,
                                const char *reason, const char *code);
char *agent_proto_kv(const char *key, const char *value); /* {"key":"value"} */

/* {"author","text","ts"} */
char *agent_proto_note(const char *author, const char *text, const char *iso_ts);
/* A JSON array of group names; groups NULL gives null (all groups). */
char *agent_proto_groups(const char (*groups)[AGENT_GROUP_MAX + 1], int n);
/* {"type":"ok","id",..,"status":"available"|"away","groups":<raw>} */
char *agent_proto_ready_ok(const char *id, int available, const char *groups_json);
/* The welcome frame; the *_json arguments are raw JSON texts (NULL gives []). */
char *agent_proto_welcome(const char *username, const char *name, const char *role, int supervisor,
                          const char *groups_json, const char *canned_json, const char *queue_json,
                          const char *mine_json);

/* What the queue needs from the flow's escalation summary (flow.h); missing fields are ""/0. */
typedef struct agent_summary {
    char category[64];
    int severity;
    char group[AGENT_GROUP_MAX + 1]; /* the rule's group, "" when none */
    char cust_id[129];
    char cust_name[256];
    int vip;
    char last_text[304]; /* cut at a character boundary */
    char offered[512];   /* offered solutions, joined with "；" (for the past case) */
    char summary[512];   /* summary, else last_text */
} agent_summary_t;
void agent_proto_summary(const char *summary_json, agent_summary_t *out);

/* Copies UTF-8 src into dst (size n), cut at a character boundary. */
void agent_utf8_copy(char *dst, size_t n, const char *src);

#endif
