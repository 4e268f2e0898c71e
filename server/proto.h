/*
 * proto.h - customer chat protocol v1 (docs/protocol.md): JSON frames <-> C structs.
 *
 * proto.c is the only server file that touches cJSON for the chat protocol.  Decoding
 * validates everything a client controls (types, lengths, UTF-8, ranges) and reports the
 * first problem as an error code from the protocol's table plus a readable message.
 * Encoders return malloc'ed NUL-terminated JSON text (caller frees), or NULL when out of memory.
 */
#ifndef REDRESS_PROTO_H
#define REDRESS_PROTO_H

#include <stddef.h>

#include "store.h"

typedef enum proto_kind {
    PROTO_HELLO_NEW = 1,
    PROTO_HELLO_RESUME,
    PROTO_MESSAGE,
} proto_kind_t;

typedef struct proto_in {
    proto_kind_t kind;
    /* hello (new) */
    char customer_id[129];
    char customer_name[256]; /* <= 64 characters */
    char channel[16];
    /* hello (resume) */
    char token[33];
    long long last_seq;
    /* message */
    char id[65];
    char *text; /* malloc'ed; free with proto_in_clear() */
} proto_in_t;

typedef struct proto_limits {
    int max_text_chars;
} proto_limits_t;

/* Error codes (docs/protocol.md); PROTO_E_COUNT is the number of codes. */
typedef enum proto_error {
    PROTO_E_BAD_JSON = 0,
    PROTO_E_BAD_UTF8,
    PROTO_E_BAD_FRAME,
    PROTO_E_UNKNOWN_TYPE,
    PROTO_E_MISSING_FIELD,
    PROTO_E_BAD_FIELD,
    PROTO_E_NOT_READY,
    PROTO_E_ALREADY_STARTED,
    PROTO_E_UNKNOWN_TOKEN,
    PROTO_E_RATE_LIMITED,
    PROTO_E_INTERNAL,
    PROTO_E_COUNT
} proto_error_t;

const char *proto_error_name(proto_error_t e);

/*
 * Decodes one text frame.  Returns 0 and fills *in (clear it with proto_in_clear), or -1 with
 * *code, a message in msg, and the client's message id in in->id when one could be read.
 */
int proto_decode(const char *buf, size_t len, const proto_limits_t *lim, proto_in_t *in,
                 proto_error_t *code, char *msg, size_t msglen);
void proto_in_clear(proto_in_t *in);

char *proto_welcome(const char *conversation, const char *token, long long seq, int resumed);
char *proto_ack(const char *id, long long seq);
char *proto_error(proto_error_t code, const char *message, const char *id);
/* An event frame (message or status) from a stored event. */
char *proto_event(const store_event_t *ev);

/* {"reason":..,"priority":N} for the "escalated" status event. */
char *proto_escalation_detail(const char *reason, int priority);
/* {"field":..,"value":<value_json>} for a complaint record update (value_json must parse). */
char *proto_record_detail(const char *field, const char *value_json);

/* Builds a JSON array text from n strings (NULL when n == 0). */
char *proto_string_array(const char *const *items, int n);

#endif
