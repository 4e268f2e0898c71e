/*
 * webhook.c - the webhook sender: a durable outbox in SQLite, delivered by the libwebsockets
 * HTTP client on the server's lws context (docs/complaints.md, "Webhooks").
 *
 * What it owns
 *   The webhook tables (schema versioned in webhook_meta, like agent_meta), the in-memory copy
 *   of the endpoints, and every delivery in flight.  Endpoints are written by the CLI
 *   (webhook_cli.c) and re-read here every WEBHOOK_RELOAD_S seconds; outbox rows are written
 *   only through the store's writer thread (store_submit), read here on the store's reader.
 *
 * Tables
 *   webhook_endpoints  id, url, secret, events ('*' or a comma list), enabled, created_at
 *   webhook_outbox     one row per (event, endpoint): the exact body, attempts, next_at (epoch
 *                      s), state pending | delivered | failed, last_status, last_error,
 *                      created_at, delivered_at.  Its id is the delivery id (X-Redress-Delivery)
 *                      and never changes, so a receiver can drop duplicates.  AUTOINCREMENT: an
 *                      id is never reused, even after old rows are pruned.
 *
 * Life of an event
 *   webhook_emit()    loop thread: builds the body once (the complaint's text spliced in),
 *                     store_submit(work_emit)
 *   work_emit()       writer thread: INSERT ... SELECT one pending row per enabled endpoint
 *                     whose events match, in the same transaction as the caller's writes
 *   done_emit()       loop thread after COMMIT: endpoints with nothing queued look again
 *
 * Life of a delivery (per endpoint, oldest pending row first, one at a time: order is kept;
 * at most WEBHOOK_MAX_INFLIGHT endpoints at once)
 *   schedule()        head row due (next_at <= now) -> start(): row read, delivery made
 *     resolve         host name -> uv_getaddrinfo (thread pool); literal addresses skip it
 *     connect_delivery()  lws_client_connect_via_info(POST), bound to webhook_protocol
 *     callback_webhook()
 *       CLIENT_APPEND_HANDSHAKE_HEADER  Content-Type, Content-Length, X-Redress-Event,
 *                                       X-Redress-Delivery, X-Redress-Attempt,
 *                                       X-Redress-Signature (signed now)
 *       CLIENT_HTTP_WRITEABLE           the body, in chunks
 *       ESTABLISHED_CLIENT_HTTP         the status; a 2xx -> finish() at once (the socket is
 *                                       closed, the rest of the response is not read)
 *       COMPLETED / CLOSED / CONNECTION_ERROR -> finish()
 *     webhook_tick()  WEBHOOK_TIMEOUT_S after start -> finish() (the socket is killed)
 *   finish()          exactly once: detaches the socket, store_submit(work_result): delivered,
 *                     or attempts + 1 and next_at = now + webhook_backoff_s(attempts), or
 *                     failed after WEBHOOK_MAX_ATTEMPTS
 *   done_result()     loop thread after COMMIT: the endpoint is free, its head is read again
 *   A delivery is freed when it is finished and neither its name lookup nor its store write
 *   is outstanding (maybe_free); its socket, if any, no longer points to it (opaque data NULL).
 *
 * Shutdown: webhook_close_store() abandons the deliveries in flight without recording
 * anything (their rows stay pending: at-least-once, the same delivery id after a restart).
 * Loop thread only, except work_*() (writer thread) and the pure helpers.
 */
#include "webhook.h"

#include "json_print.h"
#include "log.h"
#include "schema.h"
#include "server.h"
#include "store.h"
#include "util.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <netdb.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MODULE "webhook"
#define WRITE_CHUNK 8192
#define PRUNE_EVERY_MS (3600 * 1000)

const char *const webhook_events[] = {"complaint.created", "complaint.escalated",
                                      "complaint.resolved", "sla.breached", NULL};

/* ---- pure helpers ---- */

int webhook_event_valid(const char *event)
{
    for (int i = 0; event && webhook_events[i]; i++)
        if (strcmp(event, webhook_events[i]) == 0)
            return 1;
    return 0;
}

static int host_char(int c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_';
}

int webhook_url_parse(const char *url, webhook_url_t *out, char *err, size_t errlen)
{
    const char *p, *auth_end, *after, *rest;
    size_t n = url ? strlen(url) : 0, hostlen;

    memset(out, 0, sizeof(*out));
    if (n == 0) {
        snprintf(err, errlen, "empty URL");
        return -1;
    }
    if (n > WEBHOOK_URL_MAX) {
        snprintf(err, errlen, "URL longer than %d bytes", WEBHOOK_URL_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f) {
            snprintf(err, errlen,
                     "the URL has a space, a control or a non-ASCII character (percent-encode "
                     "it)");
            return -1;
        }
    if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
        out->port = 80;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
        out->tls = 1;
        out->port = 443;
    } else {
        snprintf(err, errlen, "only http:// and https:// URLs are supported");
        return -1;
    }
    auth_end = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(auth_end - p))) {
        snprintf(err, errlen,
                 "user names and passwords in the URL are not supported (the "
                 "signature authenticates the sender)");
        return -1;
    }
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(auth_end - p));
        unsigned char addr[16];
        if (!close) {
            snprintf(err, errlen, "the URL's IPv6 address has no closing ]");
            return -1;
        }
        hostlen = (size_t)(close - p - 1);
        if (hostlen == 0 || hostlen >= sizeof(out->host)) {
            snprintf(err, errlen, "bad IPv6 address in the URL");
            return -1;
        }
        memcpy(out->host, p + 1, hostlen);
        if (inet_pton(AF_INET6, out->host, addr) != 1) {
            snprintf(err, errlen, "bad IPv6 address \"%s\" in the URL", out->host);
            return -1;
        }
        out->ipv6 = 1;
        after = close + 1;
    } else {
        after = p;
        while (after < auth_end && *after != ':')
            after++;
        hostlen = (size_t)(after - p);
        if (hostlen == 0) {
            snprintf(err, errlen, "the URL has no host");
            return -1;
        }
        if (hostlen > 253) {
            snprintf(err, errlen, "the URL's host name is longer than 253 characters");
            return -1;
        }
        for (size_t i = 0; i < hostlen; i++) {
            if (!host_char((unsigned char)p[i]) ||
                ((p[i] == '.' || p[i] == '-') && (i == 0 || p[i - 1] == '.')) ||
                (p[i] == '.' && i + 1 < hostlen && p[i + 1] == '.')) {
                snprintf(err, errlen, "bad host name \"%.*s\" in the URL", (int)hostlen, p);
                return -1;
            }
            out->host[i] = (char)tolower((unsigned char)p[i]);
        }
    }
    if (after < auth_end) {
        long port = 0;
        const char *d = after + 1;
        if (*after != ':' || d == auth_end || auth_end - d > 5) {
            snprintf(err, errlen, "bad port in the URL");
            return -1;
        }
        for (; d < auth_end; d++) {
            if (!isdigit((unsigned char)*d)) {
                snprintf(err, errlen, "bad port in the URL");
                return -1;
            }
            port = port * 10 + (*d - '0');
        }
        if (port < 1 || port > 65535) {
            snprintf(err, errlen, "port %ld out of range (1-65535)", port);
            return -1;
        }
        out->port = (int)port;
    }
    rest = auth_end;
    if (strchr(rest, '#')) {
        snprintf(err, errlen, "the URL has a #fragment, which is never sent; remove it");
        return -1;
    }
    snprintf(out->path, sizeof(out->path), "%s%s", *rest == '/' ? "" : "/", rest);
    return 0;
}

int webhook_events_parse(const char *list, char *out, size_t outlen, char *err, size_t errlen)
{
    const char *p = list ? list : "";
    size_t used = 0;
    int n = 0;

    if (outlen > 0)
        out[0] = '\0';
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0') {
        snprintf(err, errlen, "no events given (use * for every event)");
        return -1;
    }
    for (;;) {
        char name[64];
        const char *end = p + strcspn(p, ","), *a = p, *b = end;
        size_t len;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        len = (size_t)(b - a);
        if (len == 0) {
            snprintf(err, errlen, "empty event name in \"%s\"", list);
            return -1;
        }
        snprintf(name, sizeof(name), "%.*s", (int)len, a);
        if (strcmp(name, "*") == 0) {
            if (n > 0 || *end) {
                snprintf(err, errlen, "* means every event and cannot be combined with others");
                return -1;
            }
            snprintf(out, outlen, "*");
            return 0;
        }
        if (len >= sizeof(name) || !webhook_event_valid(name)) {
            snprintf(err, errlen,
                     "unknown event \"%.*s\" (complaint.created, complaint.escalated, "
                     "complaint.resolved, sla.breached, or * for all)",
                     (int)(len > 64 ? 64 : len), a);
            return -1;
        }
        /* skip duplicates: compare against the names already written */
        int dup = 0;
        for (const char *q = out; q && *q;) {
            size_t ql = strcspn(q, ",");
            if (ql == len && strncmp(q, name, len) == 0)
                dup = 1;
            q += ql + (q[ql] == ',');
        }
        if (!dup) {
            if (used + len + 2 > outlen) {
                snprintf(err, errlen, "event list too long");
                return -1;
            }
            used += (size_t)snprintf(out + used, outlen - used, "%s%s", n ? "," : "", name);
            n++;
        }
        if (*end == '\0')
            break;
        p = end + 1;
    }
    return 0;
}

int webhook_secret_check(const char *secret, char *err, size_t errlen)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n < WEBHOOK_SECRET_MIN || n > WEBHOOK_SECRET_MAX) {
        snprintf(err, errlen, "the secret must have %d to %d characters (it has %zu)",
                 WEBHOOK_SECRET_MIN, WEBHOOK_SECRET_MAX, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)secret[i] <= 0x20 || (unsigned char)secret[i] >= 0x7f) {
            snprintf(err, errlen,
                     "the secret may only hold printable ASCII characters without "
                     "spaces");
            return -1;
        }
    return 0;
}

double webhook_backoff_s(int attempts)
{
    if (attempts < 1)
        attempts = 1;
    if (attempts > 30) /* 2^29 s is far past the cap; no shifts into the sign bit */
        return WEBHOOK_BACKOFF_CAP_S;
    double s = (double)(1L << (attempts - 1));
    return s > WEBHOOK_BACKOFF_CAP_S ? WEBHOOK_BACKOFF_CAP_S : s;
}

int webhook_hmac_hex(const char *key, size_t keylen, const char *msg, size_t msglen, char *out)
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];

    if (crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, keylen) != 0 ||
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, msglen) != 0 ||
        crypto_auth_hmacsha256_final(&st, mac) != 0)
        return -1;
    sodium_bin2hex(out, 2 * sizeof(mac) + 1, mac, sizeof(mac));
    sodium_memzero(&st, sizeof(st));
    return 0;
}

int webhook_signature(const char *secret, long long t, const char *body, size_t len, char *out,
                      size_t outlen)
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char ts[24], hex[2 * crypto_auth_hmacsha256_BYTES + 1];
    int n = snprintf(ts, sizeof(ts), "%lld.", t);

    if (crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret)) != 0 ||
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, (size_t)n) != 0 ||
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len) != 0 ||
        crypto_auth_hmacsha256_final(&st, mac) != 0)
        return -1;
    sodium_memzero(&st, sizeof(st));
    sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
    n = snprintf(out, outlen, "t=%lld,v1=%s", t, hex);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* A random UUID (version 4) into out (37 bytes).  0 or -1. */
static int make_uuid(char *out)
{
    char hex[33];
    if (util_random_hex(hex, 16) != 0)
        return -1;
    hex[12] = '4';
    hex[16] = "89ab"[hex[16] % 4];
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
    return 0;
}

/* ---- schema ---- */

/* migrations[i] takes the webhook tables from version i to i + 1.  Never edit a shipped one. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE IF NOT EXISTS webhook_endpoints (\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  url TEXT NOT NULL,\n"
    "  secret TEXT NOT NULL,\n"
    "  events TEXT NOT NULL DEFAULT '*',\n"
    "  enabled INTEGER NOT NULL DEFAULT 1,\n"
    "  created_at REAL NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS webhook_outbox (\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  endpoint_id INTEGER NOT NULL,\n"
    "  event TEXT NOT NULL,\n"
    "  body TEXT NOT NULL,\n"
    "  attempts INTEGER NOT NULL DEFAULT 0,\n"
    "  next_at REAL NOT NULL,\n"
    "  state TEXT NOT NULL DEFAULT 'pending'\n"
    "    CHECK (state IN ('pending', 'delivered', 'failed')),\n"
    "  last_status INTEGER,\n"
    "  last_error TEXT,\n"
    "  created_at REAL NOT NULL,\n"
    "  delivered_at REAL);\n"
    "CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox(endpoint_id, id)\n"
    "  WHERE state = 'pending';\n"
    "CREATE INDEX IF NOT EXISTS webhook_outbox_created ON webhook_outbox(created_at);\n",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

int webhook_migrate(sqlite3 *db, char *err, size_t errlen)
{
    return schema_migrate(db, "webhook", migrations, SCHEMA_VERSION, err, errlen);
}

/* ---- the sender ---- */

enum { HEAD_UNKNOWN, HEAD_NONE, HEAD_KNOWN };

typedef struct endpoint {
    long long id;
    char *secret;
    int enabled;
    int url_ok;
    webhook_url_t url;
    int busy; /* a delivery of this endpoint is in flight */
    int head; /* HEAD_*: what is known of its oldest pending row */
    long long head_id;
    double head_next_at;    /* epoch s */
    uint64_t hold_until_ms; /* after a failed read or write: wait a little */
} endpoint;

typedef struct delivery {
    struct delivery *next; /* webhook_t.deliveries */
    webhook_t *w;
    long long id, endpoint_id;
    int attempt; /* this attempt, 1-based */
    char event[32];
    char *body;
    size_t len, sent;
    char secret[WEBHOOK_SECRET_MAX + 1];
    webhook_url_t url;
    char address[256]; /* numeric: the literal host or the resolved address */
    char host[280];    /* the Host header */
    uv_getaddrinfo_t dns;
    struct lws *wsi;
    uint64_t deadline_ms;
    int status;      /* the response's HTTP status, 0 before one */
    char reply[100]; /* the start of the response body, for the error */
    size_t reply_len;
    unsigned dns_pending : 1, store_pending : 1, connecting : 1, finished : 1, counted : 1;
    /* the result, for work_result */
    int ok;
    double now, next_at;
    char error[256];
} delivery;

struct webhook {
    struct server *srv;
    store_t *store;
    sqlite3 *db; /* the store's reader */
    sqlite3_stmt *st_endpoints, *st_head, *st_row;
    endpoint *eps;
    int neps;
    delivery *deliveries;
    int inflight;
    unsigned rr; /* where schedule() starts, for fairness */
    int stopping;
    uint64_t next_reload_ms, next_prune_ms;
};

static void schedule(webhook_t *w);

static void reset(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static endpoint *find_endpoint(webhook_t *w, long long id)
{
    for (int i = 0; i < w->neps; i++)
        if (w->eps[i].id == id)
            return &w->eps[i];
    return NULL;
}

static void free_endpoints(endpoint *eps, int n)
{
    for (int i = 0; i < n; i++)
        if (eps[i].secret) {
            sodium_memzero(eps[i].secret, strlen(eps[i].secret));
            free(eps[i].secret);
        }
    free(eps);
}

/* Re-reads the endpoints; the scheduling state of the ones that stay is kept, but every head
 * is read again (the CLI may have changed rows).  0 or -1 (the old list stays). */
static int load_endpoints(webhook_t *w)
{
    sqlite3_stmt *st = w->st_endpoints;
    endpoint *eps = NULL;
    int n = 0, cap = 0, rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *url = (const char *)sqlite3_column_text(st, 1);
        const char *secret = (const char *)sqlite3_column_text(st, 2);
        char err[200];
        endpoint *e, *old;
        if (n == cap) {
            int ncap = cap ? 2 * cap : 8;
            endpoint *grown = realloc(eps, (size_t)ncap * sizeof(*eps));
            if (!grown)
                goto fail;
            eps = grown;
            cap = ncap;
        }
        e = &eps[n];
        memset(e, 0, sizeof(*e));
        e->id = sqlite3_column_int64(st, 0);
        if (!(e->secret = strdup(secret ? secret : "")))
            goto fail;
        n++;
        e->enabled = sqlite3_column_int(st, 3) != 0;
        e->url_ok = webhook_url_parse(url ? url : "", &e->url, err, sizeof(err)) == 0;
        old = find_endpoint(w, e->id);
        if (!e->url_ok && (!old || old->url_ok))
            log_warn(MODULE, "endpoint %lld: %s; not delivering to it", e->id, err);
        if (old) {
            e->busy = old->busy;
            e->hold_until_ms = old->hold_until_ms;
        }
        e->head = HEAD_UNKNOWN;
    }
    if (rc != SQLITE_DONE)
        goto fail;
    reset(st);
    free_endpoints(w->eps, w->neps);
    w->eps = eps;
    w->neps = n;
    return 0;
fail:
    log_error(MODULE, "cannot read the endpoints: %s",
              rc == SQLITE_ROW ? "out of memory" : sqlite3_errmsg(w->db));
    reset(st);
    free_endpoints(eps, n);
    return -1;
}

/* Reads ep's oldest pending row into ep->head.  0 or -1. */
static int read_head(webhook_t *w, endpoint *ep)
{
    sqlite3_stmt *st = w->st_head;
    int rc;

    sqlite3_bind_int64(st, 1, ep->id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ep->head = HEAD_KNOWN;
        ep->head_id = sqlite3_column_int64(st, 0);
        ep->head_next_at = sqlite3_column_double(st, 1);
    } else if (rc == SQLITE_DONE) {
        ep->head = HEAD_NONE;
    } else {
        log_error(MODULE, "endpoint %lld: cannot read its outbox: %s", ep->id,
                  sqlite3_errmsg(w->db));
    }
    reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* ---- emit ---- */

typedef struct emit_op {
    webhook_t *w;
    char event[32];
    char *body;
    double now;
    int rows;
} emit_op;

static int work_emit(store_tx_t *tx, void *arg)
{
    emit_op *o = arg;
    sqlite3_stmt *st = store_tx_stmt(
        tx, "INSERT INTO webhook_outbox(endpoint_id, event, body, attempts, next_at, state,"
            " created_at)"
            " SELECT id, ?1, ?2, 0, ?3, 'pending', ?3 FROM webhook_endpoints"
            " WHERE enabled = 1 AND (events = '*'"
            "   OR instr(',' || events || ',', ',' || ?1 || ',') > 0)"
            " ORDER BY id");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, o->event, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, o->body, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, o->now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        log_error(MODULE, "outbox insert: %s", sqlite3_errmsg(store_tx_db(tx)));
        return -1;
    }
    o->rows = sqlite3_changes(store_tx_db(tx));
    return 0;
}

static void done_emit(void *arg, int rc)
{
    emit_op *o = arg;
    webhook_t *w = o->w;

    if (rc != 0)
        log_error(MODULE, "%s: the outbox rows were not written", o->event);
    else if (o->rows > 0)
        log_debug(MODULE, "%s queued for %d endpoint%s", o->event, o->rows,
                  o->rows == 1 ? "" : "s");
    if (rc == 0 && o->rows > 0 && !w->stopping) {
        for (int i = 0; i < w->neps; i++)
            if (w->eps[i].head == HEAD_NONE)
                w->eps[i].head = HEAD_UNKNOWN;
        schedule(w);
    }
    free(o->body);
    free(o);
}

int webhook_emit(webhook_t *w, const char *event, const char *complaint_json)
{
    cJSON *complaint = NULL;
    emit_op *o = NULL;
    util_buf body = {0};
    char id[37], iso[32];

    if (!w)
        return 0;
    if (!webhook_event_valid(event)) {
        log_error(MODULE, "emit: unknown event \"%s\"", event ? event : "(null)");
        return -1;
    }
    if (w->stopping) {
        log_warn(MODULE, "emit %s: shutting down, not queued", event);
        return -1;
    }
    /* parsed only to be checked: the body carries the caller's text as it is */
    if (!complaint_json || strlen(complaint_json) > WEBHOOK_BODY_MAX ||
        !(complaint = cJSON_Parse(complaint_json)) || !cJSON_IsObject(complaint)) {
        log_error(MODULE, "emit %s: the complaint is not a JSON object (or is too large)", event);
        cJSON_Delete(complaint);
        return -1;
    }
    cJSON_Delete(complaint);
    if (make_uuid(id) != 0) {
        log_error(MODULE, "emit %s: no randomness for the event id", event);
        return -1;
    }
    util_iso_now(iso, sizeof(iso));
    if (!(o = calloc(1, sizeof(*o))))
        goto oom;
#define PUT_LITERAL(s) json_put(&body, s, sizeof(s) - 1)
    PUT_LITERAL("{\"id\":");
    json_put_string(&body, id);
    PUT_LITERAL(",\"event\":");
    json_put_string(&body, event);
    PUT_LITERAL(",\"created_at\":");
    json_put_string(&body, iso);
    PUT_LITERAL(",\"complaint\":");
    json_put(&body, complaint_json, strlen(complaint_json));
    PUT_LITERAL("}");
#undef PUT_LITERAL
    if (!(o->body = json_finish(&body)))
        goto oom;
    o->w = w;
    snprintf(o->event, sizeof(o->event), "%s", event);
    o->now = util_wall_s();
    if (store_submit(w->store, work_emit, done_emit, o) != 0) {
        log_error(MODULE, "emit %s: the store is closing or out of memory", event);
        goto fail;
    }
    return 0;
oom:
    log_error(MODULE, "emit %s: out of memory", event);
fail:
    if (o)
        free(o->body);
    free(o);
    return -1;
}

void webhook_notify(void *w, const char *event, const char *complaint_json)
{
    webhook_emit(w, event, complaint_json);
}

/* ---- deliveries ---- */

/* Gives d's endpoint slot back (once): the endpoint's head is read again. */
static void release(delivery *d)
{
    webhook_t *w = d->w;
    endpoint *ep;

    if (!d->counted)
        return;
    d->counted = 0;
    w->inflight--;
    if ((ep = find_endpoint(w, d->endpoint_id))) {
        ep->busy = 0;
        ep->head = HEAD_UNKNOWN;
    }
}

/* Frees d when nothing refers to it any more. */
static void maybe_free(delivery *d)
{
    webhook_t *w = d->w;

    if (!d->finished || d->dns_pending || d->store_pending || d->connecting)
        return;
    release(d);
    for (delivery **pp = &w->deliveries; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    sodium_memzero(d->secret, sizeof(d->secret));
    free(d->body);
    free(d);
}

static int work_result(store_tx_t *tx, void *arg)
{
    delivery *d = arg;
    sqlite3_stmt *st =
        store_tx_stmt(tx, "UPDATE webhook_outbox SET state = ?2, attempts = ?3, last_status = ?4,"
                          " last_error = ?5, next_at = ?6, delivered_at = ?7"
                          " WHERE id = ?1 AND state = 'pending'");
    const char *state = d->ok                                ? "delivered"
                        : d->attempt >= WEBHOOK_MAX_ATTEMPTS ? "failed"
                                                             : "pending";
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, d->id);
    sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, d->attempt);
    if (d->status)
        sqlite3_bind_int(st, 4, d->status);
    else
        sqlite3_bind_null(st, 4);
    if (d->ok)
        sqlite3_bind_null(st, 5);
    else
        sqlite3_bind_text(st, 5, d->error, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 6, d->ok ? d->now : d->next_at);
    if (d->ok)
        sqlite3_bind_double(st, 7, d->now);
    else
        sqlite3_bind_null(st, 7);
    if (sqlite3_step(st) != SQLITE_DONE) {
        log_error(MODULE, "outbox update: %s", sqlite3_errmsg(store_tx_db(tx)));
        return -1;
    }
    return 0;
}

static void done_result(void *arg, int rc)
{
    delivery *d = arg;
    webhook_t *w = d->w;
    endpoint *ep = find_endpoint(w, d->endpoint_id);

    d->store_pending = 0;
    if (rc != 0) {
        log_error(MODULE, "delivery %lld: the result was not recorded; trying again", d->id);
        if (ep)
            ep->hold_until_ms = util_now_ms() + 1000;
    }
    maybe_free(d); /* releases the endpoint */
    if (!w->stopping)
        schedule(w);
}

/* Ends d's attempt once: ok, or failed with a reason.  Detaches and kills its socket if one is
 * still attached, records the result (unless shutting down).  d may be freed on return. */
static void finish(delivery *d, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void finish(delivery *d, int ok, const char *fmt, ...)
{
    webhook_t *w = d->w;
    va_list ap;

    if (d->finished)
        return;
    d->finished = 1;
    if (d->wsi) { /* a timeout: the socket is still open */
        lws_set_opaque_user_data(d->wsi, NULL);
        if (!w->stopping) /* else lws_context_destroy() closes it */
            lws_set_timeout(d->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        d->wsi = NULL;
    }
    if (d->dns_pending)
        uv_cancel((uv_req_t *)&d->dns);
    if (w->stopping) { /* abandoned: the row stays as it is */
        maybe_free(d);
        return;
    }
    d->ok = ok;
    d->now = util_wall_s();
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(d->error, sizeof(d->error), fmt, ap);
        va_end(ap);
    }
    if (ok) {
        log_info(MODULE, "delivery %lld (%s) to endpoint %lld: HTTP %d, attempt %d", d->id,
                 d->event, d->endpoint_id, d->status, d->attempt);
    } else if (d->attempt >= WEBHOOK_MAX_ATTEMPTS) {
        log_error(MODULE, "delivery %lld (%s) to endpoint %lld failed after %d attempts: %s", d->id,
                  d->event, d->endpoint_id, d->attempt, d->error);
    } else {
        double wait = webhook_backoff_s(d->attempt);
        d->next_at = d->now + wait;
        log_warn(MODULE,
                 "delivery %lld (%s) to endpoint %lld, attempt %d of %d: %s; next in %.0f s", d->id,
                 d->event, d->endpoint_id, d->attempt, WEBHOOK_MAX_ATTEMPTS, d->error, wait);
    }
    if (store_submit(w->store, work_result, done_result, d) == 0) {
        d->store_pending = 1;
    } else { /* the row stays as it was: sent again, after a pause */
        endpoint *ep = find_endpoint(w, d->endpoint_id);
        log_error(MODULE, "delivery %lld: cannot record the result (out of memory?)", d->id);
        if (ep)
            ep->hold_until_ms = util_now_ms() + 1000;
    }
    maybe_free(d);
}

/* The response ended (or the socket closed): the status decides. */
static void conclude(delivery *d)
{
    if (d->status >= 200 && d->status < 300)
        finish(d, 1, NULL);
    else if (d->status)
        finish(d, 0, "HTTP %d%s%.*s", d->status, d->reply_len ? ": " : "", (int)d->reply_len,
               d->reply);
    else
        finish(d, 0, "the connection closed before a response");
}

static void connect_delivery(delivery *d)
{
    webhook_t *w = d->w;
    struct lws_client_connect_info i;
    int default_port = d->url.port == (d->url.tls ? 443 : 80);
    struct lws *wsi;

    if (!w->srv->lws) {
        finish(d, 0, "the server has no lws context");
        return;
    }
    snprintf(d->host, sizeof(d->host), "%s%s%s", d->url.ipv6 ? "[" : "", d->url.host,
             d->url.ipv6 ? "]" : "");
    if (!default_port)
        snprintf(d->host + strlen(d->host), sizeof(d->host) - strlen(d->host), ":%d", d->url.port);
    memset(&i, 0, sizeof(i));
    i.context = w->srv->lws;
    i.address = d->address;
    i.port = d->url.port;
    i.ssl_connection = LCCSCF_HTTP_NO_FOLLOW_REDIRECT | (d->url.tls ? LCCSCF_USE_SSL : 0);
    i.path = d->url.path;
    i.host = d->host; /* also the TLS server name, without the port */
    i.method = "POST";
    i.protocol = webhook_protocol.name;
    i.local_protocol_name = webhook_protocol.name;
    i.alpn = "http/1.1";
    i.pwsi = &d->wsi;
    i.opaque_user_data = d;
    d->connecting = 1;
    wsi = lws_client_connect_via_info(&i);
    d->connecting = 0;
    if (!wsi) {
        d->wsi = NULL;
        finish(d, 0, "cannot connect to %s:%d", d->url.host, d->url.port);
    }
    maybe_free(d);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    delivery *d = req->data;
    const struct addrinfo *pick = NULL;

    d->dns_pending = 0;
    if (d->finished) {
        uv_freeaddrinfo(res);
        maybe_free(d);
        return;
    }
    for (const struct addrinfo *a = res; status == 0 && a; a = a->ai_next)
        if (a->ai_family == AF_INET || (!pick && a->ai_family == AF_INET6))
            if (!pick || pick->ai_family != AF_INET)
                pick = a;
    if (!pick) {
        uv_freeaddrinfo(res);
        finish(d, 0, "cannot resolve %s: %s", d->url.host,
               status ? uv_strerror(status) : "no address");
        return;
    }
    if (pick->ai_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)pick->ai_addr)->sin_addr, d->address,
                  sizeof(d->address));
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)pick->ai_addr)->sin6_addr, d->address,
                  sizeof(d->address));
    uv_freeaddrinfo(res);
    connect_delivery(d);
}

/* Starts sending ep's head row.  The endpoint is busy until the result is recorded. */
static void start(webhook_t *w, endpoint *ep)
{
    sqlite3_stmt *st = w->st_row;
    delivery *d = NULL;
    unsigned char addr[16];
    int rc;

    sqlite3_bind_int64(st, 1, ep->head_id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 3), "pending") != 0) {
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            log_error(MODULE, "delivery %lld: cannot read it: %s", ep->head_id,
                      sqlite3_errmsg(w->db));
            ep->hold_until_ms = util_now_ms() + 1000;
        }
        ep->head = HEAD_UNKNOWN; /* removed or changed meanwhile: look again */
        goto out;
    }
    const char *event = (const char *)sqlite3_column_text(st, 0);
    const char *body = (const char *)sqlite3_column_text(st, 1);
    int len = sqlite3_column_bytes(st, 1);
    if (!(d = calloc(1, sizeof(*d))) || !(d->body = malloc((size_t)len + 1))) {
        log_error(MODULE, "delivery %lld: out of memory", ep->head_id);
        ep->hold_until_ms = util_now_ms() + 1000;
        free(d);
        goto out;
    }
    memcpy(d->body, body ? body : "", (size_t)len);
    d->body[len] = '\0';
    d->len = (size_t)len;
    d->w = w;
    d->id = ep->head_id;
    d->endpoint_id = ep->id;
    d->attempt = sqlite3_column_int(st, 2) + 1;
    snprintf(d->event, sizeof(d->event), "%s", event ? event : "");
    snprintf(d->secret, sizeof(d->secret), "%s", ep->secret);
    d->url = ep->url;
    d->deadline_ms = util_now_ms() + WEBHOOK_TIMEOUT_S * 1000;
    d->counted = 1;
    ep->busy = 1;
    w->inflight++;
    d->next = w->deliveries;
    w->deliveries = d;
    reset(st);
    st = NULL;

    if (d->url.ipv6 || inet_pton(AF_INET, d->url.host, addr) == 1) {
        snprintf(d->address, sizeof(d->address), "%s", d->url.host);
        connect_delivery(d);
    } else {
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        d->dns.data = d;
        d->dns_pending = 1;
        rc = uv_getaddrinfo(&w->srv->loop, &d->dns, on_resolved, d->url.host, NULL, &hints);
        if (rc != 0) {
            d->dns_pending = 0;
            finish(d, 0, "cannot resolve %s: %s", d->url.host, uv_strerror(rc));
        }
    }
out:
    if (st)
        reset(st);
}

/* Starts every due delivery that fits. */
static void schedule(webhook_t *w)
{
    double now;
    uint64_t now_ms;

    if (w->stopping || !w->srv->lws || w->neps == 0)
        return;
    now = util_wall_s();
    now_ms = util_now_ms();
    for (int k = 0; k < w->neps && w->inflight < WEBHOOK_MAX_INFLIGHT; k++) {
        endpoint *ep = &w->eps[(w->rr + (unsigned)k) % (unsigned)w->neps];
        if (!ep->enabled || !ep->url_ok || ep->busy || now_ms < ep->hold_until_ms)
            continue;
        if (ep->head == HEAD_UNKNOWN && read_head(w, ep) != 0) {
            ep->hold_until_ms = now_ms + 1000;
            continue;
        }
        if (ep->head == HEAD_KNOWN && ep->head_next_at <= now)
            start(w, ep);
    }
    w->rr++;
}

/* ---- the client protocol ---- */

static int append_headers(struct lws *wsi, delivery *d, unsigned char **p, unsigned char *end)
{
    char sig[WEBHOOK_SIG_MAX], num[24], attempt[12], len[24];
    int n;

    if (webhook_signature(d->secret, (long long)time(NULL), d->body, d->len, sig, sizeof(sig)) != 0)
        return -1;
    snprintf(num, sizeof(num), "%lld", d->id);
    snprintf(attempt, sizeof(attempt), "%d", d->attempt);
    n = snprintf(len, sizeof(len), "%zu", d->len);
#define HDR(name, v)                                                                               \
    lws_add_http_header_by_name(wsi, (const unsigned char *)(name), (const unsigned char *)(v),    \
                                (int)strlen(v), p, end)
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     (const unsigned char *)"application/json", 16, p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, (const unsigned char *)len,
                                     n, p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_USER_AGENT,
                                     (const unsigned char *)"redress-webhook/" REDRESS_VERSION,
                                     (int)strlen("redress-webhook/" REDRESS_VERSION), p, end) ||
        HDR("X-Redress-Event:", d->event) || HDR("X-Redress-Delivery:", num) ||
        HDR("X-Redress-Attempt:", attempt) || HDR("X-Redress-Signature:", sig))
        return -1;
#undef HDR
    return 0;
}

static int write_body(struct lws *wsi, delivery *d)
{
    unsigned char buf[LWS_PRE + WRITE_CHUNK];
    size_t n = d->len - d->sent;
    int final;

    if (n > WRITE_CHUNK)
        n = WRITE_CHUNK;
    final = d->sent + n == d->len;
    memcpy(buf + LWS_PRE, d->body + d->sent, n);
    if (final)
        lws_client_http_body_pending(wsi, 0);
    if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    d->sent += n;
    if (!final)
        lws_callback_on_writable(wsi);
    return 0;
}

static void keep_reply(delivery *d, const char *in, size_t len)
{
    for (size_t i = 0; i < len && d->reply_len < sizeof(d->reply) - 1; i++) {
        unsigned char c = (unsigned char)in[i];
        d->reply[d->reply_len++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
    }
}

static int callback_webhook(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                            size_t len)
{
    delivery *d = lws_get_opaque_user_data(wsi);

    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (d) {
            lws_set_opaque_user_data(wsi, NULL);
            d->wsi = NULL;
            finish(d, 0, "cannot connect to %s:%d: %s", d->url.host, d->url.port,
                   in ? (const char *)in : "connection error");
        }
        return 0;
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (!d)
            return -1;
        if (append_headers(wsi, d, (unsigned char **)in, *(unsigned char **)in + len) != 0) {
            lws_set_opaque_user_data(wsi, NULL);
            d->wsi = NULL;
            finish(d, 0, "the request headers do not fit");
            return -1;
        }
        lws_client_http_body_pending(wsi, 1);
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
        if (!d)
            return -1;
        if (d->sent < d->len && write_body(wsi, d) != 0) {
            lws_set_opaque_user_data(wsi, NULL);
            d->wsi = NULL;
            finish(d, 0, "the connection failed while sending");
            return -1;
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        if (!d)
            return 0;
        d->status = (int)lws_http_client_http_response(wsi);
        if (d->status >= 200 && d->status < 300)
            finish(d, 1, NULL); /* accepted: the rest of the response does not matter */
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        if (d)
            keep_reply(d, in, len);
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        char buf[LWS_PRE + 1024], *p = buf + LWS_PRE;
        int n = (int)sizeof(buf) - LWS_PRE;
        return lws_http_client_read(wsi, &p, &n) < 0 ? -1 : 0;
    }
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        if (!d)
            return -1;
        lws_set_opaque_user_data(wsi, NULL);
        d->wsi = NULL;
        conclude(d);
        return -1; /* one request per connection */
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
    case LWS_CALLBACK_WSI_DESTROY:
        if (d) {
            lws_set_opaque_user_data(wsi, NULL);
            d->wsi = NULL;
            conclude(d);
        }
        return 0;
    default:
        return 0;
    }
}

const struct lws_protocols webhook_protocol = {
    "redress-webhook", callback_webhook, 0, 0, 0, NULL, 0,
};

/* ---- pruning ---- */

static int work_prune(store_tx_t *tx, void *arg)
{
    double *before = arg;
    sqlite3_stmt *st = store_tx_stmt(
        tx, "DELETE FROM webhook_outbox WHERE created_at < ?1 AND state != 'pending'");
    if (!st)
        return -1;
    sqlite3_bind_double(st, 1, *before);
    if (sqlite3_step(st) != SQLITE_DONE) {
        log_error(MODULE, "prune: %s", sqlite3_errmsg(store_tx_db(tx)));
        return -1;
    }
    return 0;
}

static void done_prune(void *arg, int rc)
{
    (void)rc;
    free(arg);
}

/* ---- life ---- */

static int prepare(webhook_t *w, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
    if (sqlite3_prepare_v3(w->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "webhook: %s", sqlite3_errmsg(w->db));
        return -1;
    }
    return 0;
}

int webhook_new(webhook_t **out, struct server *srv, char *err, size_t errlen)
{
    webhook_t *w = calloc(1, sizeof(*w));
    sqlite3_stmt *count = NULL;
    long long pending = 0;
    int enabled = 0;

    *out = NULL;
    if (!w) {
        snprintf(err, errlen, "webhook: out of memory");
        return -1;
    }
    w->srv = srv;
    w->store = srv->store;
    w->db = store_reader(srv->store);
    if (prepare(w, "SELECT id, url, secret, enabled FROM webhook_endpoints ORDER BY id",
                &w->st_endpoints, err, errlen) != 0 ||
        prepare(w,
                "SELECT id, next_at FROM webhook_outbox WHERE endpoint_id = ?1"
                " AND state = 'pending' ORDER BY id LIMIT 1",
                &w->st_head, err, errlen) != 0 ||
        prepare(w, "SELECT event, body, attempts, state FROM webhook_outbox WHERE id = ?1",
                &w->st_row, err, errlen) != 0 ||
        prepare(w, "SELECT COUNT(*) FROM webhook_outbox WHERE state = 'pending'", &count, err,
                errlen) != 0)
        goto fail;
    if (load_endpoints(w) != 0) {
        snprintf(err, errlen, "webhook: cannot read the endpoints");
        goto fail;
    }
    if (sqlite3_step(count) == SQLITE_ROW)
        pending = sqlite3_column_int64(count, 0);
    sqlite3_finalize(count);
    for (int i = 0; i < w->neps; i++)
        enabled += w->eps[i].enabled;
    if (w->neps > 0 || pending > 0)
        log_notice(MODULE, "%d endpoint%s (%d enabled), %lld deliver%s pending", w->neps,
                   w->neps == 1 ? "" : "s", enabled, pending, pending == 1 ? "y" : "ies");
    w->next_reload_ms = util_now_ms() + WEBHOOK_RELOAD_S * 1000;
    w->next_prune_ms = util_now_ms() + 60 * 1000;
    *out = w;
    return 0;
fail:
    sqlite3_finalize(count);
    webhook_close_store(w);
    webhook_free(w);
    return -1;
}

void webhook_close_store(webhook_t *w)
{
    if (!w || w->stopping)
        return;
    w->stopping = 1;
    for (delivery *d = w->deliveries, *next; d; d = next) {
        next = d->next;
        finish(d, 0, "shutting down"); /* abandoned, nothing recorded */
    }
    sqlite3_finalize(w->st_endpoints);
    sqlite3_finalize(w->st_head);
    sqlite3_finalize(w->st_row);
    w->st_endpoints = w->st_head = w->st_row = NULL;
}

void webhook_free(webhook_t *w)
{
    if (!w)
        return;
    while (w->deliveries) { /* only after a loop that never ran its callbacks */
        delivery *d = w->deliveries;
        w->deliveries = d->next;
        free(d->body);
        free(d);
    }
    free_endpoints(w->eps, w->neps);
    free(w);
}

void webhook_tick(webhook_t *w)
{
    uint64_t now_ms = util_now_ms();

    if (!w || w->stopping)
        return;
    for (delivery *d = w->deliveries, *next; d; d = next) {
        next = d->next;
        if (!d->finished && now_ms >= d->deadline_ms)
            finish(d, 0, "no response within %d s", WEBHOOK_TIMEOUT_S);
    }
    if (now_ms >= w->next_reload_ms) {
        w->next_reload_ms = now_ms + WEBHOOK_RELOAD_S * 1000;
        load_endpoints(w);
    }
    if (now_ms >= w->next_prune_ms) {
        double *before = malloc(sizeof(*before));
        w->next_prune_ms = now_ms + PRUNE_EVERY_MS;
        if (before) {
            *before = util_wall_s() - WEBHOOK_RETENTION_S;
            if (store_submit(w->store, work_prune, done_prune, before) != 0)
                free(before);
        }
    }
    schedule(w);
}
