/*
 * agent_proto.c - the agent protocol's JSON (docs/protocol.md, "agent protocol, version 1").
 *
 * Decoding turns one text frame into an agent_req_t with every field checked (type, length,
 * UTF-8, characters), so agent.c works only with validated values; encoding builds the frames
 * agent.c sends.  Pure functions: no state, nothing kept between calls.
 */
#include "agent_proto.h"

#include "util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int agent_group_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AGENT_GROUP_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

void agent_req_clear(agent_req_t *r)
{
    free(r->text);
    r->text = NULL;
}

static const struct {
    const char *name;
    agent_req_kind_t kind;
} kinds[] = {
    {"ready", AGENT_REQ_READY},     {"claim", AGENT_REQ_CLAIM},
    {"context", AGENT_REQ_CONTEXT}, {"reply", AGENT_REQ_REPLY},
    {"note", AGENT_REQ_NOTE},       {"transfer", AGENT_REQ_TRANSFER},
    {"resolve", AGENT_REQ_RESOLVE}, {"handback", AGENT_REQ_HANDBACK},
};

#define FAIL(c, ...)                                                                               \
    do {                                                                                           \
        *code = (c);                                                                               \
        snprintf(msg, msglen, __VA_ARGS__);                                                        \
        goto fail;                                                                                 \
    } while (0)

/* A string field: 0 absent, 1 present and valid (*out), -1 invalid (message written). */
static int str_field(const cJSON *o, const char *type, const char *key, size_t max_bytes,
                     const char **out, proto_error_t *code, char *msg, size_t msglen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v)) {
        *code = PROTO_E_BAD_FIELD;
        snprintf(msg, msglen, "%s.%s must be a string", type, key);
        return -1;
    }
    if (strlen(v->valuestring) > max_bytes) {
        *code = PROTO_E_BAD_FIELD;
        snprintf(msg, msglen, "%s.%s is longer than %zu bytes", type, key, max_bytes);
        return -1;
    }
    *out = v->valuestring;
    return 1;
}

/* A text field of 1..max_chars characters, not blank. */
static int text_field(const cJSON *o, const char *type, const char *key, int max_chars, char **out,
                      proto_error_t *code, char *msg, size_t msglen)
{
    const char *s = NULL;
    int rc = str_field(o, type, key, (size_t)max_chars * 4, &s, code, msg, msglen);
    if (rc <= 0)
        return rc;
    if (util_blank(s)) {
        *code = PROTO_E_BAD_FIELD;
        snprintf(msg, msglen, "%s.%s must not be empty", type, key);
        return -1;
    }
    if (util_utf8_chars(s) > (size_t)max_chars) {
        *code = PROTO_E_BAD_FIELD;
        snprintf(msg, msglen, "%s.%s is longer than %d characters", type, key, max_chars);
        return -1;
    }
    if (!(*out = strdup(s))) {
        *code = PROTO_E_INTERNAL;
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    return 1;
}

static int parse_conversation(const char *s, long long *out)
{
    char *end;
    if (strncmp(s, "c-", 2) != 0 || s[2] < '0' || s[2] > '9')
        return -1;
    long long v = strtoll(s + 2, &end, 10);
    if (*end || v <= 0)
        return -1;
    *out = v;
    return 0;
}

int agent_proto_decode(const char *buf, size_t len, int max_chars, agent_req_t *out,
                       proto_error_t *code, char *msg, size_t msglen)
{
    cJSON *o = NULL;
    const char *type = NULL, *s = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    out->save_case = 1;
    out->available = 1;
    out->all_groups = 1;
    snprintf(out->outcome, sizeof(out->outcome), "accepted");
    if (!util_utf8_valid(buf, len))
        FAIL(PROTO_E_BAD_UTF8, "the frame is not valid UTF-8");
    o = cJSON_ParseWithLength(buf, len);
    if (!cJSON_IsObject(o))
        FAIL(PROTO_E_BAD_JSON, "the frame is not a JSON object");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (cJSON_IsString(id) && strlen(id->valuestring) <= 64)
        snprintf(out->id, sizeof(out->id), "%s", id->valuestring);
    else if (id && !cJSON_IsNull(id))
        FAIL(PROTO_E_BAD_FIELD, "id must be a string of at most 64 bytes");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (!cJSON_IsString(t))
        FAIL(PROTO_E_UNKNOWN_TYPE, "type is missing");
    type = t->valuestring;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(type, kinds[i].name) == 0)
            out->kind = kinds[i].kind;
    if (!out->kind)
        FAIL(PROTO_E_UNKNOWN_TYPE, "unknown type \"%.40s\"", type);

    if (out->kind == AGENT_REQ_READY) {
        if ((rc = str_field(o, type, "status", 16, &s, code, msg, msglen)) < 0)
            goto fail;
        if (rc == 1) {
            if (strcmp(s, "available") == 0)
                out->available = 1;
            else if (strcmp(s, "away") == 0)
                out->available = 0;
            else
                FAIL(PROTO_E_BAD_FIELD, "ready.status must be \"available\" or \"away\"");
        }
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, "groups");
        if (g && !cJSON_IsNull(g)) {
            if (!cJSON_IsArray(g) || cJSON_GetArraySize(g) > AGENT_MAX_GROUPS)
                FAIL(PROTO_E_BAD_FIELD, "ready.groups must be an array of at most %d names",
                     AGENT_MAX_GROUPS);
            out->all_groups = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, g)
            {
                if (!cJSON_IsString(e) || !agent_group_valid(e->valuestring))
                    FAIL(PROTO_E_BAD_FIELD,
                         "ready.groups: each group is 1..32 characters of a-z 0-9 _");
                snprintf(out->groups[out->ngroups++], AGENT_GROUP_MAX + 1, "%s", e->valuestring);
            }
        }
        cJSON_Delete(o);
        return 0;
    }

    if ((rc = str_field(o, type, "conversation", 32, &s, code, msg, msglen)) < 0)
        goto fail;
    if (rc == 0)
        FAIL(PROTO_E_MISSING_FIELD, "%s.conversation is required", type);
    if (parse_conversation(s, &out->conversation) != 0)
        FAIL(PROTO_E_BAD_FIELD, "%s.conversation is not a conversation name like c-000000000012",
             type);

    switch (out->kind) {
    case AGENT_REQ_REPLY:
    case AGENT_REQ_NOTE:
        if ((rc = text_field(o, type, "text", max_chars, &out->text, code, msg, msglen)) < 0)
            goto fail;
        if (rc == 0)
            FAIL(PROTO_E_MISSING_FIELD, "%s.text is required", type);
        break;
    case AGENT_REQ_TRANSFER: {
        const char *ta = NULL, *tg = NULL;
        if (str_field(o, type, "to_agent", 64, &ta, code, msg, msglen) < 0 ||
            str_field(o, type, "to_group", AGENT_GROUP_MAX, &tg, code, msg, msglen) < 0)
            goto fail;
        if ((ta && tg) || (!ta && !tg))
            FAIL(ta ? PROTO_E_BAD_FIELD : PROTO_E_MISSING_FIELD,
                 "transfer needs exactly one of to_agent and to_group");
        if (ta && !*ta)
            FAIL(PROTO_E_BAD_FIELD, "transfer.to_agent must not be empty");
        if (tg && !agent_group_valid(tg))
            FAIL(PROTO_E_BAD_FIELD, "transfer.to_group: 1..32 characters of a-z 0-9 _");
        snprintf(out->to_agent, sizeof(out->to_agent), "%s", ta ? ta : "");
        snprintf(out->to_group, sizeof(out->to_group), "%s", tg ? tg : "");
        if (text_field(o, type, "note", max_chars, &out->text, code, msg, msglen) < 0)
            goto fail;
        break;
    }
    case AGENT_REQ_RESOLVE: {
        if ((rc = text_field(o, type, "resolution", max_chars, &out->text, code, msg, msglen)) < 0)
            goto fail;
        if (rc == 0)
            FAIL(PROTO_E_MISSING_FIELD, "resolve.resolution is required");
        if ((rc = str_field(o, type, "outcome", 15, &s, code, msg, msglen)) < 0)
            goto fail;
        if (rc == 1) {
            if (strcmp(s, "accepted") && strcmp(s, "partial") && strcmp(s, "refused"))
                FAIL(PROTO_E_BAD_FIELD,
                     "resolve.outcome must be \"accepted\", \"partial\" or \"refused\"");
            snprintf(out->outcome, sizeof(out->outcome), "%s", s);
        }
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "save_case");
        if (sc && !cJSON_IsNull(sc)) {
            if (!cJSON_IsBool(sc))
                FAIL(PROTO_E_BAD_FIELD, "resolve.save_case must be true or false");
            out->save_case = cJSON_IsTrue(sc);
        }
        break;
    }
    default:
        break;
    }
    cJSON_Delete(o);
    return 0;
fail:
    cJSON_Delete(o);
    agent_req_clear(out);
    return -1;
}

/* ---- encoding ---- */

static char *print(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* Adds raw JSON text under key (parsed; invalid text adds null). */
static void add_raw(cJSON *o, const char *key, const char *raw)
{
    cJSON *v = raw ? cJSON_Parse(raw) : NULL;
    cJSON_AddItemToObject(o, key, v ? v : cJSON_CreateNull());
}

char *agent_proto_ok(const char *id, const char *key, const char *raw_json)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ok");
    if (id && *id)
        cJSON_AddStringToObject(o, "id", id);
    if (key)
        add_raw(o, key, raw_json);
    return print(o);
}

char *agent_proto_error(const char *id, const char *code, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "error");
    if (id && *id)
        cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "message", message);
    return print(o);
}

char *agent_proto_frame(const char *type, const char *conversation, const char *key,
                        const char *raw_json, const char *key2, const char *str2)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    if (conversation)
        cJSON_AddStringToObject(o, "conversation", conversation);
    if (key)
        add_raw(o, key, raw_json);
    if (key2) {
        if (str2)
            cJSON_AddStringToObject(o, key2, str2);
        else
            cJSON_AddNullToObject(o, key2);
    }
    return print(o);
}

char *agent_proto_event(const char *conversation, const store_event_t *ev)
{
    cJSON *o = cJSON_CreateObject();
    int status = strcmp(ev->kind, "status") == 0;
    cJSON_AddStringToObject(o, "type", "message");
    cJSON_AddStringToObject(o, "conversation", conversation);
    cJSON_AddNumberToObject(o, "seq", (double)ev->seq);
    cJSON_AddStringToObject(o, "from", status ? "system" : ev->sender);
    cJSON_AddStringToObject(o, "text", status ? ev->state : (ev->text ? ev->text : ""));
    if (status && ev->detail)
        add_raw(o, "detail", ev->detail);
    cJSON_AddStringToObject(o, "ts", ev->ts);
    return print(o);
}

void agent_iso(double t, char *out, size_t outlen)
{ /* rounded to the millisecond, as agent_ctx.c prints stored times */
    long long ms = llround(t * 1000.0);
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    /* the unsigned remainders bound every field's width (25 bytes in all) */
    unsigned f[7] = {(unsigned)(tm.tm_year + 1900) % 10000u,
                     (unsigned)(tm.tm_mon + 1) % 100u,
                     (unsigned)tm.tm_mday % 100u,
                     (unsigned)tm.tm_hour % 100u,
                     (unsigned)tm.tm_min % 100u,
                     (unsigned)tm.tm_sec % 100u,
                     (unsigned)(ms % 1000)};
    if (ms < 0 || outlen < 25) { /* before 1970, or a short buffer: as printf has it */
        snprintf(out, outlen, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", f[0], f[1], f[2], f[3], f[4],
                 f[5], f[6]);
        return;
    }
    /* the same text without printf, which cost 3,500 instructions a call: the complaint records'
     * times, about two a turn of the bench's load */
    static const char form[] = "0000-00-00T00:00:00.000Z";
    static const unsigned char at[7] = {4, 7, 10, 13, 16, 19, 23}; /* where each field ends */
    memcpy(out, form, sizeof(form));
    for (int i = 0; i < 7; i++)
        for (unsigned v = f[i], e = at[i]; v; v /= 10)
            out[--e] = (char)('0' + v % 10);
}

static cJSON *item_json(const agent_item_t *it)
{
    cJSON *o = cJSON_CreateObject(), *cu = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "conversation", it->conversation);
    cJSON_AddStringToObject(o, "state", it->state);
    cJSON_AddStringToObject(o, "group", it->group);
    cJSON_AddStringToObject(o, "reason", it->reason);
    cJSON_AddNumberToObject(o, "priority", it->priority);
    if (it->position > 0)
        cJSON_AddNumberToObject(o, "position", it->position);
    else
        cJSON_AddNullToObject(o, "position");
    cJSON_AddNumberToObject(o, "waited_s", floor(it->waited_s));
    cJSON_AddStringToObject(cu, "id", it->cust_id);
    cJSON_AddStringToObject(cu, "name", it->cust_name);
    cJSON_AddNumberToObject(cu, "vip", it->vip);
    cJSON_AddItemToObject(o, "customer", cu);
    if (it->category && *it->category)
        cJSON_AddStringToObject(o, "category", it->category);
    else
        cJSON_AddNullToObject(o, "category");
    cJSON_AddNumberToObject(o, "severity", it->severity);
    cJSON_AddStringToObject(o, "last_text", it->last_text ? it->last_text : "");
    agent_json_time(o, "due", it->due);
    if (it->agent && *it->agent)
        cJSON_AddStringToObject(o, "agent", it->agent);
    if (it->sla)
        cJSON_AddStringToObject(o, "sla", it->sla);
    else
        cJSON_AddNullToObject(o, "sla");
    if (it->callback_reason)
        cJSON_AddStringToObject(o, "callback_reason", it->callback_reason);
    return o;
}

char *agent_proto_items_array(const agent_item_t *items, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, item_json(&items[i]));
    return print(a);
}

char *agent_proto_items(const char *type, const agent_item_t *items, int n, int total)
{
    cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "type", type);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, item_json(&items[i]));
    cJSON_AddItemToObject(o, "items", a);
    cJSON_AddNumberToObject(o, "total", total);
    return print(o);
}

void agent_json_time(cJSON *o, const char *key, double t)
{
    char iso[40];
    if (t > 0) {
        agent_iso(t, iso, sizeof(iso));
        cJSON_AddStringToObject(o, key, iso);
    } else {
        cJSON_AddNullToObject(o, key);
    }
}

char *agent_proto_patch_context(const char *context, const char *state, const char *agent,
                                double queued_at, double claimed_at, int transfers)
{
    cJSON *o = cJSON_Parse(context);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "state", state);
    if (agent && *agent)
        cJSON_AddStringToObject(h, "agent", agent);
    else
        cJSON_AddNullToObject(h, "agent");
    agent_json_time(h, "queued_at", queued_at);
    agent_json_time(h, "claimed_at", claimed_at);
    cJSON_AddNumberToObject(h, "transfers", transfers);
    cJSON_DeleteItemFromObjectCaseSensitive(o, "handoff");
    cJSON_AddItemToObject(o, "handoff", h);
    return print(o);
}

char *agent_proto_queued_detail(int position, int wait_s, const char *group)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "position", position);
    cJSON_AddNumberToObject(o, "wait_s", wait_s);
    cJSON_AddStringToObject(o, "group", group);
    return print(o);
}

char *agent_proto_record_detail(const char *number, const char *status, double due,
                                const char *reason, const char *code)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "number", number);
    cJSON_AddStringToObject(o, "status", status);
    agent_json_time(o, "due", due);
    if (reason)
        cJSON_AddStringToObject(o, "reason", reason);
    if (code && *code)
        cJSON_AddStringToObject(o, "code", code);
    return print(o);
}

char *agent_proto_kv(const char *key, const char *value)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, key, value);
    return print(o);
}

void agent_utf8_copy(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (n == 0)
        return;
    if (len >= n) {
        len = n - 1;
        while (len > 0 && ((unsigned char)src[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void copy_str(const cJSON *o, const char *key, char *dst, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v))
        agent_utf8_copy(dst, n, v->valuestring);
}

void agent_proto_summary(const char *summary_json, agent_summary_t *out)
{
    memset(out, 0, sizeof(*out));
    cJSON *o = summary_json ? cJSON_Parse(summary_json) : NULL;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return;
    }
    copy_str(o, "category", out->category, sizeof(out->category));
    const cJSON *sev = cJSON_GetObjectItemCaseSensitive(o, "severity");
    if (cJSON_IsNumber(sev))
        out->severity = sev->valueint;
    copy_str(o, "group", out->group, sizeof(out->group));
    if (!agent_group_valid(out->group))
        out->group[0] = '\0';
    const cJSON *cu = cJSON_GetObjectItemCaseSensitive(o, "customer");
    copy_str(cu, "id", out->cust_id, sizeof(out->cust_id));
    copy_str(cu, "name", out->cust_name, sizeof(out->cust_name));
    const cJSON *vip = cJSON_GetObjectItemCaseSensitive(cu, "vip");
    if (cJSON_IsNumber(vip))
        out->vip = vip->valueint;
    else if (cJSON_IsTrue(vip))
        out->vip = 1;
    copy_str(o, "last_text", out->last_text, sizeof(out->last_text));
    copy_str(o, "summary", out->summary, sizeof(out->summary));
    if (!out->summary[0])
        agent_utf8_copy(out->summary, sizeof(out->summary), out->last_text);
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(o, "offered"), *e;
    size_t used = 0;
    cJSON_ArrayForEach(e, off)
    {
        const char *t = cJSON_IsString(e) ? e->valuestring
                        : cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "title"))
                            ? cJSON_GetObjectItemCaseSensitive(e, "title")->valuestring
                            : NULL;
        if (!t)
            continue;
        if (used + strlen(t) + 4 >= sizeof(out->offered))
            break;
        used += (size_t)snprintf(out->offered + used, sizeof(out->offered) - used, "%s%s",
                                 used ? "；" : "", t);
    }
    cJSON_Delete(o);
}

char *agent_proto_note(const char *author, const char *text, const char *iso_ts)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "author", author);
    cJSON_AddStringToObject(o, "text", text);
    cJSON_AddStringToObject(o, "ts", iso_ts);
    return print(o);
}

char *agent_proto_groups(const char (*groups)[AGENT_GROUP_MAX + 1], int n)
{
    if (!groups)
        return strdup("null");
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(groups[i]));
    return print(a);
}

char *agent_proto_ready_ok(const char *id, int available, const char *groups_json)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ok");
    if (id && *id)
        cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "status", available ? "available" : "away");
    add_raw(o, "groups", groups_json);
    return print(o);
}

static void add_array(cJSON *o, const char *key, const char *raw)
{
    cJSON *v = raw ? cJSON_Parse(raw) : NULL;
    cJSON_AddItemToObject(o, key, cJSON_IsArray(v) ? v : (cJSON_Delete(v), cJSON_CreateArray()));
}

char *agent_proto_welcome(const char *username, const char *name, const char *role, int supervisor,
                          const char *groups_json, const char *canned_json, const char *queue_json,
                          const char *mine_json)
{
    cJSON *o = cJSON_CreateObject(), *ag = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "welcome");
    cJSON_AddStringToObject(ag, "username", username);
    cJSON_AddStringToObject(ag, "name", name);
    cJSON_AddStringToObject(ag, "role", role);
    cJSON_AddItemToObject(o, "agent", ag);
    cJSON_AddBoolToObject(o, "supervisor", supervisor);
    add_array(o, "groups", groups_json);
    add_array(o, "canned", canned_json);
    add_array(o, "queue", queue_json);
    add_array(o, "mine", mine_json);
    return print(o);
}
