/*
 * webhook.h - outgoing webhooks for integrations (docs/complaints.md, "Webhooks").
 *
 * Complaint events (complaint.created, complaint.escalated, complaint.resolved, sla.breached)
 * are queued as rows of a durable outbox, one per subscribed endpoint, and POSTed by the
 * libwebsockets HTTP client on the server's own lws context, signed with the endpoint's
 * secret, retried with exponential backoff, at most WEBHOOK_MAX_ATTEMPTS times.  Endpoints are
 * managed with `redress webhook ...` (webhook_cli.c) on the same database; the running server
 * picks changes up within WEBHOOK_RELOAD_S seconds.
 *
 * Driven from net.c (webhook_new / webhook_tick / webhook_close_store / webhook_free, the
 * protocol entry webhook_protocol, webhook_migrate in the store's writer init) and from
 * complaint.c (webhook_emit, through complaint_set_notify with webhook_notify).  Loop thread
 * only, except webhook_migrate and the pure helpers.
 */
#ifndef REDRESS_WEBHOOK_H
#define REDRESS_WEBHOOK_H

#include <libwebsockets.h>
#include <sqlite3.h>
#include <stddef.h>

#include "config.h"

#define WEBHOOK_MAX_ATTEMPTS 10 /* then the delivery is `failed` */
#define WEBHOOK_BACKOFF_CAP_S 3600
#define WEBHOOK_TIMEOUT_S 10             /* one attempt: resolve, connect, send, response status */
#define WEBHOOK_MAX_INFLIGHT 8           /* deliveries at once (one per endpoint) */
#define WEBHOOK_RELOAD_S 5               /* the server re-reads the endpoints this often */
#define WEBHOOK_RETENTION_S (30 * 86400) /* delivered and failed rows are kept this long */
#define WEBHOOK_SECRET_MIN 16
#define WEBHOOK_SECRET_MAX 256
#define WEBHOOK_URL_MAX 2048
#define WEBHOOK_BODY_MAX (256 * 1024)
#define WEBHOOK_SIG_MAX 96 /* "t=<unix>,v1=<64 hex>" and its NUL */

typedef struct webhook webhook_t;
struct server;

/* The event names, NULL-terminated. */
extern const char *const webhook_events[];

/* The client protocol entry for net.c's protocols[] (name "redress-webhook"). */
extern const struct lws_protocols webhook_protocol;

/*
 * Creates or upgrades the webhook tables (webhook_meta, webhook_endpoints, webhook_outbox and
 * their indexes) on db, in one transaction (a savepoint when one is open).  Idempotent.
 * Returns 0, or -1 with a message in err (also when the database is newer than this program).
 */
int webhook_migrate(sqlite3 *db, char *err, size_t errlen);

/*
 * Creates the sender: prepares its reads on srv->store's reader and loads the endpoints; the
 * pending outbox rows are read per endpoint, oldest first, as deliveries become due.
 * srv->store must exist and outlive it; srv->lws may come later (nothing is sent before the
 * first webhook_tick or emit after it exists).  Returns 0 and *out, or -1 with err.
 */
int webhook_new(webhook_t **out, struct server *srv, char *err, size_t errlen);

/*
 * Shutdown, before lws_context_destroy() and store_close(): stops starting deliveries,
 * abandons the ones in flight (their rows stay pending with their attempt count unchanged,
 * so they are sent again, with the same delivery id, after a restart) and finalizes the
 * reader statements.  Emits fail from now on.  w may be NULL.
 */
void webhook_close_store(webhook_t *w);

/* Frees the sender, after the loop has stopped (lws destroyed, store closed).  w may be NULL. */
void webhook_free(webhook_t *w);

/*
 * Queues event (one of webhook_events) for every enabled endpoint subscribed to it: one
 * outbox row each, written by the store's writer thread, with the body
 *   {"id": "<uuid v4, one per event>", "event": ..., "created_at": "<ISO 8601 UTC>",
 *    "complaint": <complaint_json>}
 * complaint_json must be a JSON object (checked; its text is copied into the body as it is,
 * complaint.c prints it compact).  Never blocks.  Returns 0 when queued
 * (or w is NULL: no sender), -1 for an unknown event, a bad or too large complaint_json, no
 * memory, or a closing store; the failure is logged.
 */
int webhook_emit(webhook_t *w, const char *event, const char *complaint_json);

/* webhook_emit() in the shape of complaint.h's complaint_notify_fn (arg is the webhook_t). */
void webhook_notify(void *w, const char *event, const char *complaint_json);

/* Periodic work from the server tick: endpoint reloads, timeouts, starting due deliveries,
 * pruning old rows.  w may be NULL. */
void webhook_tick(webhook_t *w);

/* ---- helpers (also used by the CLI and the unit tests) ---- */

typedef struct webhook_url {
    int tls;                        /* https */
    int ipv6;                       /* host is an IPv6 literal (written in brackets in the URL) */
    char host[256];                 /* lower case, without brackets */
    int port;                       /* 80 / 443 unless given */
    char path[WEBHOOK_URL_MAX + 2]; /* "/..." with the query, never empty */
} webhook_url_t;

/* Parses an http:// or https:// URL with a host, an optional port and path/query (no user
 * info, no fragment, printable ASCII only, at most WEBHOOK_URL_MAX bytes).  Returns 0 and
 * *out, or -1 with a message in err. */
int webhook_url_parse(const char *url, webhook_url_t *out, char *err, size_t errlen);

/* Checks a comma-separated list of event names, or "*", and writes it normalised (trimmed,
 * duplicates dropped) into out.  Returns 0, or -1 with a message in err. */
int webhook_events_parse(const char *list, char *out, size_t outlen, char *err, size_t errlen);

/* 1 when event is one of webhook_events. */
int webhook_event_valid(const char *event);

/* Checks a secret: WEBHOOK_SECRET_MIN..WEBHOOK_SECRET_MAX printable ASCII characters, no
 * spaces.  Returns 0, or -1 with a message in err. */
int webhook_secret_check(const char *secret, char *err, size_t errlen);

/* Seconds to wait after the attempts-th failed attempt (1-based): 1, 2, 4, ... capped at
 * WEBHOOK_BACKOFF_CAP_S.  attempts < 1 counts as 1. */
double webhook_backoff_s(int attempts);

/* Lowercase hex HMAC-SHA256 of msg with key (any length) into out (65 bytes).  0 or -1. */
int webhook_hmac_hex(const char *key, size_t keylen, const char *msg, size_t msglen, char *out);

/* The X-Redress-Signature value "t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>" with secret>"
 * into out (WEBHOOK_SIG_MAX bytes).  Returns 0 or -1. */
int webhook_signature(const char *secret, long long t, const char *body, size_t len, char *out,
                      size_t outlen);

/* `redress webhook ...` (webhook_cli.c).  Returns the process exit code. */
int webhook_cli_main(const config_t *cfg, int argc, char **argv);

#endif
