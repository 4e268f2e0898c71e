/*
 * proto.c - decode client frames, encode server frames (docs/protocol.md).
 *
 * Decoding order: UTF-8 check -> JSON parse (whole frame, no trailing bytes) -> object with a
 * string `type` -> per-type fields.  Each step reports its own error code, so a client always
 * learns the first thing wrong with its frame.  Nothing here keeps state between calls.
 */
#include "proto.h"

#include "json_print.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const error_names[PROTO_E_COUNT] = {
    "bad_json",  "bad_utf8",        "bad_frame",     "unknown_type", "missing_field", "bad_field",
    "not_ready", "already_started", "unknown_token", "rate_limited", "internal",
};

const char *proto_error_name(proto_error_t e)
{
    return (unsigned)e < PROTO_E_COUNT ? error_names[e] : "internal";
}

static const char *const channels[] = {"web", "app", "h5", "wechat", "email", "phone", "other"};

void proto_in_clear(proto_in_t *in)
{
    free(in->text);
    memset(in, 0, sizeof(*in));
}

typedef struct dctx {
    proto_error_t *code;
    char *msg;
    size_t msglen;
} dctx;

static int bad(dctx *d, proto_error_t code, const char *fmt, ...)
{
    va_list ap;
    *d->code = code;
    va_start(ap, fmt);
    vsnprintf(d->msg, d->msglen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Copies a string field of 1..maxchars characters (and < dstlen bytes) into dst. */
static int get_str(dctx *d, const cJSON *obj, const char *field, const char *path, int required,
                   size_t maxchars, char *dst, size_t dstlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return bad(d, PROTO_E_MISSING_FIELD, "%s is required", path);
        return 0;
    }
    if (!cJSON_IsString(v))
        return bad(d, PROTO_E_BAD_FIELD, "%s must be a string", path);
    size_t bytes = strlen(v->valuestring), chars = util_utf8_chars(v->valuestring);
    if (chars == 0)
        return bad(d, PROTO_E_BAD_FIELD, "%s must not be empty", path);
    if (chars > maxchars || bytes >= dstlen)
        return bad(d, PROTO_E_BAD_FIELD, "%s is longer than %zu characters", path, maxchars);
    memcpy(dst, v->valuestring, bytes + 1);
    return 0;
}

static int decode_hello(dctx *d, const cJSON *root, proto_in_t *in)
{
    const cJSON *cust = cJSON_GetObjectItemCaseSensitive(root, "customer");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "resume");

    if (cust && res)
        return bad(d, PROTO_E_BAD_FIELD, "hello takes customer or resume, not both");
    if (res) {
        if (!cJSON_IsObject(res))
            return bad(d, PROTO_E_BAD_FIELD, "resume must be an object");
        if (get_str(d, res, "token", "resume.token", 1, 32, in->token, sizeof(in->token)) != 0)
            return -1;
        if (strlen(in->token) != 32 || strspn(in->token, "0123456789abcdef") != 32)
            return bad(d, PROTO_E_BAD_FIELD, "resume.token must be 32 lowercase hex digits");
        const cJSON *ls = cJSON_GetObjectItemCaseSensitive(res, "last_seq");
        if (!ls)
            return bad(d, PROTO_E_MISSING_FIELD, "resume.last_seq is required");
        if (!cJSON_IsNumber(ls) || ls->valuedouble < 0 || ls->valuedouble > 9e15 ||
            ls->valuedouble != (double)(long long)ls->valuedouble)
            return bad(d, PROTO_E_BAD_FIELD, "resume.last_seq must be a non-negative integer");
        in->last_seq = (long long)ls->valuedouble;
        in->kind = PROTO_HELLO_RESUME;
        return 0;
    }
    if (!cust)
        return bad(d, PROTO_E_MISSING_FIELD, "hello needs customer or resume");
    if (!cJSON_IsObject(cust))
        return bad(d, PROTO_E_BAD_FIELD, "customer must be an object");
    if (get_str(d, cust, "id", "customer.id", 1, 128, in->customer_id, sizeof(in->customer_id)) ||
        get_str(d, cust, "name", "customer.name", 0, 64, in->customer_name,
                sizeof(in->customer_name)) ||
        get_str(d, cust, "channel", "customer.channel", 0, 15, in->channel, sizeof(in->channel)))
        return -1;
    if (in->channel[0] == '\0') {
        strcpy(in->channel, "web");
    } else {
        size_t i, n = sizeof(channels) / sizeof(channels[0]);
        for (i = 0; i < n; i++)
            if (strcmp(in->channel, channels[i]) == 0)
                break;
        if (i == n)
            return bad(d, PROTO_E_BAD_FIELD,
                       "customer.channel must be one of web, app, h5, wechat, email, phone, "
                       "other");
    }
    in->kind = PROTO_HELLO_NEW;
    return 0;
}

static int decode_message(dctx *d, const cJSON *root, const proto_limits_t *lim, proto_in_t *in)
{
    const cJSON *t;
    if (get_str(d, root, "id", "message.id", 1, 64, in->id, sizeof(in->id)) != 0)
        return -1;
    t = cJSON_GetObjectItemCaseSensitive(root, "text");
    if (!t || cJSON_IsNull(t))
        return bad(d, PROTO_E_MISSING_FIELD, "message.text is required");
    if (!cJSON_IsString(t))
        return bad(d, PROTO_E_BAD_FIELD, "message.text must be a string");
    if (util_blank(t->valuestring))
        return bad(d, PROTO_E_BAD_FIELD, "message.text must not be empty");
    if (util_utf8_chars(t->valuestring) > (size_t)lim->max_text_chars)
        return bad(d, PROTO_E_BAD_FIELD, "message.text is longer than %d characters",
                   lim->max_text_chars);
    if (!(in->text = strdup(t->valuestring)))
        return bad(d, PROTO_E_INTERNAL, "out of memory");
    in->kind = PROTO_MESSAGE;
    return 0;
}

int proto_decode(const char *buf, size_t len, const proto_limits_t *lim, proto_in_t *in,
                 proto_error_t *code, char *msg, size_t msglen)
{
    dctx d = {code, msg, msglen};
    cJSON *root = NULL;
    const char *end = NULL;
    const cJSON *type;
    int rc = -1;

    memset(in, 0, sizeof(*in));
    if (!util_utf8_valid(buf, len))
        return bad(&d, PROTO_E_BAD_UTF8, "frame is not valid UTF-8");
    root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) {
        bad(&d, PROTO_E_BAD_JSON, "frame is not valid JSON");
        goto out;
    }
    while (end && end < buf + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end && end < buf + len && *end != '\0') {
        bad(&d, PROTO_E_BAD_JSON, "unexpected data after the JSON object");
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        bad(&d, PROTO_E_BAD_JSON, "frame must be a JSON object");
        goto out;
    }
    /* read the id early so that errors about a message can name it */
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (cJSON_IsString(id) && strlen(id->valuestring) < sizeof(in->id))
        strcpy(in->id, id->valuestring);
    type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (!type) {
        bad(&d, PROTO_E_UNKNOWN_TYPE, "type is required");
    } else if (!cJSON_IsString(type)) {
        bad(&d, PROTO_E_UNKNOWN_TYPE, "type must be a string");
    } else if (strcmp(type->valuestring, "hello") == 0) {
        rc = decode_hello(&d, root, in);
    } else if (strcmp(type->valuestring, "message") == 0) {
        rc = decode_message(&d, root, lim, in);
    } else {
        /* echo at most 40 bytes of the type, cut on a character boundary (the error frame
         * must stay valid UTF-8) */
        size_t n = strlen(type->valuestring);
        if (n > 40) {
            n = 40;
            while (n > 0 && ((unsigned char)type->valuestring[n] & 0xC0) == 0x80)
                n--;
        }
        bad(&d, PROTO_E_UNKNOWN_TYPE, "unknown type \"%.*s\"", (int)n, type->valuestring);
    }
out:
    cJSON_Delete(root);
    if (rc != 0) {
        char keep[65];
        memcpy(keep, in->id, sizeof(keep));
        proto_in_clear(in);
        memcpy(in->id, keep, sizeof(keep));
    }
    return rc;
}

/* ---- encoders ---- */

static char *finish(cJSON *o)
{
    char *s = o ? json_print(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *proto_welcome(const char *conversation, const char *token, long long seq, int resumed)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "type", "welcome") ||
        !cJSON_AddStringToObject(o, "conversation", conversation) ||
        !cJSON_AddStringToObject(o, "token", token) ||
        !cJSON_AddNumberToObject(o, "seq", (double)seq) ||
        !cJSON_AddBoolToObject(o, "resumed", resumed)) {
        cJSON_Delete(o);
        return NULL;
    }
    return finish(o);
}

char *proto_ack(const char *id, long long seq)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "type", "ack") || !cJSON_AddStringToObject(o, "id", id) ||
        !cJSON_AddNumberToObject(o, "seq", (double)seq)) {
        cJSON_Delete(o);
        return NULL;
    }
    return finish(o);
}

char *proto_error(proto_error_t code, const char *message, const char *id)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "type", "error") ||
        !cJSON_AddStringToObject(o, "code", proto_error_name(code)) ||
        !cJSON_AddStringToObject(o, "message", message) ||
        (id && id[0] && !cJSON_AddStringToObject(o, "id", id))) {
        cJSON_Delete(o);
        return NULL;
    }
    return finish(o);
}

char *proto_event(const store_event_t *ev)
{
    cJSON *o = cJSON_CreateObject(), *sub;
    if (!o || !cJSON_AddStringToObject(o, "type", ev->kind) ||
        !cJSON_AddNumberToObject(o, "seq", (double)ev->seq))
        goto fail;
    if (strcmp(ev->kind, "message") == 0) {
        if (!cJSON_AddStringToObject(o, "from", ev->sender))
            goto fail;
        if (ev->client_id && !cJSON_AddStringToObject(o, "id", ev->client_id))
            goto fail;
        if (!cJSON_AddStringToObject(o, "text", ev->text ? ev->text : ""))
            goto fail;
        if (ev->options && (sub = cJSON_Parse(ev->options)) != NULL) {
            if (cJSON_IsArray(sub) && cJSON_GetArraySize(sub) > 0)
                cJSON_AddItemToObject(o, "options", sub);
            else
                cJSON_Delete(sub);
        }
    } else {
        if (!cJSON_AddStringToObject(o, "state", ev->state ? ev->state : ""))
            goto fail;
        sub = ev->detail ? cJSON_Parse(ev->detail) : NULL;
        if (!sub || !cJSON_IsObject(sub)) {
            cJSON_Delete(sub);
            sub = cJSON_CreateObject();
        }
        if (!sub)
            goto fail;
        cJSON_AddItemToObject(o, "detail", sub);
    }
    if (!cJSON_AddStringToObject(o, "ts", ev->ts))
        goto fail;
    return finish(o);
fail:
    cJSON_Delete(o);
    return NULL;
}

char *proto_string_array(const char *const *items, int n)
{
    if (n <= 0)
        return NULL;
    cJSON *a = cJSON_CreateArray();
    if (!a)
        return NULL;
    for (int i = 0; i < n; i++) {
        cJSON *s = cJSON_CreateString(items[i]);
        if (!s) {
            cJSON_Delete(a);
            return NULL;
        }
        cJSON_AddItemToArray(a, s);
    }
    return finish(a);
}

char *proto_escalation_detail(const char *reason, int priority)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "reason", reason) ||
        !cJSON_AddNumberToObject(o, "priority", priority)) {
        cJSON_Delete(o);
        return NULL;
    }
    return finish(o);
}

char *proto_record_detail(const char *field, const char *value_json)
{
    cJSON *o = cJSON_CreateObject(), *v = cJSON_Parse(value_json ? value_json : "null");
    if (!o || !v || !cJSON_AddStringToObject(o, "field", field)) {
        cJSON_Delete(o);
        cJSON_Delete(v);
        return NULL;
    }
    cJSON_AddItemToObject(o, "value", v);
    return finish(o);
}
