/*
 * fuzz_proto.c - libFuzzer target for the chat protocol decoder (server/proto.c).
 *
 * Input: the payload of one WebSocket text frame, exactly as ws.c hands it to proto_decode (a
 * buffer of len bytes with nothing after it, so ASan sees any read past the frame).
 *
 * Each input is decoded twice, with the default text limit (2000 characters) and a tiny one
 * (10), and checked against what proto.h promises:
 *   - the return value is 0 or -1; on -1 the code is one of the protocol's and the message is
 *     non-empty, valid UTF-8 (it goes back to the client in an error frame) and in->text NULL;
 *   - on 0 the fields hold what the kind says: ids and names within their character limits,
 *     valid UTF-8 without control of the buffer sizes, a known channel, a 32-hex token, a
 *     non-blank text within the limit;
 *   - every frame the server would send in answer (error, ack, the stored message event)
 *     encodes, is valid UTF-8 and parses back to the same strings.
 * The UTF-8 check at the front (util_utf8_valid) is compared with an independent validator
 * and with kb_utf8_valid (which also refuses NUL).
 */
#include "fuzz_util.h"

#include "kb_internal.h"
#include "proto.h"
#include "util.h"

#include <cjson/cJSON.h>

static const char *const channels[] = {"web", "app", "h5", "wechat", "email", "phone", "other"};

/* Checks one server frame: encodes (non-NULL), valid UTF-8, a JSON object with this type.
 * Returns the parsed object (caller deletes). */
static cJSON *check_frame(const char *json, const char *type)
{
    FZ_CHECK(json != NULL, "encoder returned NULL for a %s frame", type);
    size_t n = strlen(json);
    FZ_CHECK(fz_utf8_ok(json, n), "%s frame is not valid UTF-8: %s", type, json);
    cJSON *o = cJSON_ParseWithLength(json, n);
    FZ_CHECK(cJSON_IsObject(o), "%s frame is not a JSON object: %s", type, json);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    FZ_CHECK(cJSON_IsString(t) && strcmp(t->valuestring, type) == 0, "bad type in %s", json);
    return o;
}

static void check_string_field(const cJSON *o, const char *field, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    FZ_CHECK(cJSON_IsString(v) && strcmp(v->valuestring, want) == 0,
             "field %s does not round-trip: want \"%s\"", field, want);
}

/* A fixed-size field: NUL-terminated inside its buffer, valid UTF-8, 1..maxchars characters
 * (0 allowed when optional). */
static void check_field(const char *what, const char *s, size_t size, size_t maxchars, int optional)
{
    size_t n = strnlen(s, size);
    FZ_CHECK(n < size, "%s is not NUL-terminated inside its buffer", what);
    FZ_CHECK(fz_utf8_ok(s, n), "%s is not valid UTF-8", what);
    size_t chars = fz_utf8_count(s, n);
    FZ_CHECK(chars <= maxchars, "%s has %zu characters, limit %zu", what, chars, maxchars);
    FZ_CHECK(optional || chars > 0, "%s is empty", what);
}

static void check_ok(const proto_in_t *in, int max_text)
{
    switch (in->kind) {
    case PROTO_HELLO_NEW: {
        check_field("customer_id", in->customer_id, sizeof(in->customer_id), 128, 0);
        check_field("customer_name", in->customer_name, sizeof(in->customer_name), 64, 1);
        int known = 0;
        for (size_t i = 0; i < sizeof(channels) / sizeof(channels[0]); i++)
            known |= strcmp(in->channel, channels[i]) == 0;
        FZ_CHECK(known, "unknown channel \"%s\" accepted", in->channel);
        FZ_CHECK(in->text == NULL, "hello carries a text");
        break;
    }
    case PROTO_HELLO_RESUME:
        FZ_CHECK(strlen(in->token) == 32 && strspn(in->token, "0123456789abcdef") == 32,
                 "resume token \"%s\" is not 32 lowercase hex digits", in->token);
        FZ_CHECK(in->last_seq >= 0 && in->last_seq <= 9000000000000000LL, "last_seq %lld",
                 in->last_seq);
        FZ_CHECK(in->text == NULL, "hello carries a text");
        break;
    case PROTO_MESSAGE: {
        check_field("message id", in->id, sizeof(in->id), 64, 0);
        FZ_CHECK(in->text != NULL, "message without text");
        size_t n = strlen(in->text);
        FZ_CHECK(fz_utf8_ok(in->text, n), "message text is not valid UTF-8");
        FZ_CHECK(fz_utf8_count(in->text, n) <= (size_t)max_text, "text over the limit");
        FZ_CHECK(!util_blank(in->text), "blank text accepted");

        /* the answers: an ack, and the stored message event echoed to the client */
        char *ack = proto_ack(in->id, 7);
        cJSON *o = check_frame(ack, "ack");
        check_string_field(o, "id", in->id);
        cJSON_Delete(o);
        free(ack);
        store_event_t ev = {.conversation = 1,
                            .seq = 7,
                            .kind = "message",
                            .sender = "customer",
                            .client_id = in->id,
                            .text = in->text,
                            .ts = "2026-11-26T15:04:05.123Z"};
        char *json = proto_event(&ev);
        o = check_frame(json, "message");
        check_string_field(o, "text", in->text);
        check_string_field(o, "id", in->id);
        cJSON_Delete(o);
        free(json);
        break;
    }
    default:
        FZ_CHECK(0, "proto_decode returned 0 with kind %d", (int)in->kind);
    }
}

static void check_error(const proto_in_t *in, proto_error_t code, const char *msg, size_t msglen)
{
    FZ_CHECK((unsigned)code < PROTO_E_COUNT, "error code %d out of range", (int)code);
    size_t n = strnlen(msg, msglen);
    FZ_CHECK(n > 0 && n < msglen, "empty or unterminated error message");
    FZ_CHECK(fz_utf8_ok(msg, n),
             "error message is not valid UTF-8 (sent to the client in an "
             "error frame): \"%s\"",
             msg);
    FZ_CHECK(in->text == NULL, "text left allocated after an error");
    size_t idn = strnlen(in->id, sizeof(in->id));
    FZ_CHECK(idn < sizeof(in->id) && fz_utf8_ok(in->id, idn), "bad id kept after an error");

    char *json = proto_error(code, msg, in->id);
    cJSON *o = check_frame(json, "error");
    check_string_field(o, "code", proto_error_name(code));
    check_string_field(o, "message", msg);
    if (in->id[0])
        check_string_field(o, "id", in->id);
    cJSON_Delete(o);
    free(json);
}

static void decode_once(const char *buf, size_t len, int max_text)
{
    proto_limits_t lim = {.max_text_chars = max_text};
    proto_in_t in;
    proto_error_t code = PROTO_E_COUNT;
    char msg[256]; /* the size ws.c uses */

    memset(msg, 0, sizeof(msg));
    int rc = proto_decode(buf, len, &lim, &in, &code, msg, sizeof(msg));
    FZ_CHECK(rc == 0 || rc == -1, "proto_decode returned %d", rc);
    if (rc == 0)
        check_ok(&in, max_text);
    else
        check_error(&in, code, msg, sizeof(msg));
    proto_in_clear(&in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1048576) /* limits.max_message_bytes maximum */
        return -1;
    /* exactly size bytes: ws.c's reassembly buffer has no terminator promise */
    char *buf = malloc(size ? size : 1);
    FZ_CHECK(buf != NULL, "out of memory");
    if (size)
        memcpy(buf, data, size);

    int ref = fz_utf8_ok(buf, size);
    FZ_CHECK(util_utf8_valid(buf, size) == ref, "util_utf8_valid says %d, RFC 3629 says %d",
             util_utf8_valid(buf, size), ref);
    int has_nul = size > 0 && memchr(buf, 0, size) != NULL;
    FZ_CHECK(kb_utf8_valid(buf, size) == (ref && !has_nul), "kb_utf8_valid says %d, expected %d",
             kb_utf8_valid(buf, size), ref && !has_nul);

    decode_once(buf, size, 2000);
    decode_once(buf, size, 10);
    free(buf);
    return 0;
}
