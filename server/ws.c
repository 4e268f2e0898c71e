/*
 * ws.c - the WebSockets: libwebsockets callbacks for /chat (customers, redress.chat.v1) and
 * /agent (staff, redress.agent.v1).  Both share the transport below: reassembly, the write
 * queue, rate limit, pings and timeouts; a frame then goes to the session (chat) or to the
 * agent manager (agent.c).  An agent socket is authenticated at ESTABLISHED from its Cookie
 * header (auth_session_lookup) and closed with 4401/4403 when it may not take chats.
 *
 * A ws_conn_t is lws's per-session storage for a chat socket (allocated zeroed by lws before
 * ESTABLISHED, freed by lws after CLOSED).  It owns: the receive buffer (frame reassembly),
 * the queue of outgoing frames, the rate-limit bucket.  It borrows its session.
 *
 * States of a connection
 *   FILTER_PROTOCOL_CONNECTION  path must be /chat, else the upgrade is refused
 *   ESTABLISHED                 linked into server->conns; no session yet (hello timer runs)
 *   on_frame(hello)             session_hello() -> ws_conn_bind(c, s): ready
 *   ws_conn_close()             close_code set; frames still queued are written first, then
 *                               WRITEABLE sends the close frame and returns -1
 *   CLOSED                      session_detach(); queue freed; unlinked
 *
 * Writes.  Each buffer is allocated with LWS_PRE bytes of headroom.  A write sends up to
 * WS_BURST_MAX queued frames (a turn is an ack, a bot message and often a status) in one send
 * (ws_burst.c); what the kernel does not take, lws keeps and sends before the next WRITEABLE,
 * so frames are never split between writes.  When a connection's queue goes from empty to not
 * empty it is listed for the end of the loop pass (ws_flush.c) and written there, never inside
 * an lws callback: a POLLOUT round would cost two epoll_ctl calls and one more loop pass before
 * the reply leaves.  It waits for SERVER_WRITEABLE instead while lws still holds part of an
 * earlier send, while a ping or the close frame is due, and for what one burst left queued.
 * Counted in redress_ws_writes_total{when="pass_end"|"writeable"}.
 *
 * After each whole frame from a customer, store_deliver() runs the store's callbacks for what
 * the writer has committed meanwhile (acknowledgements, replies), so that those frames, too,
 * leave at the end of this pass instead of waiting for the next poll (store.c, "Delivering in
 * the middle of a pass").
 */
#include "ws.h"

#include "agent.h"
#include "auth.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "server.h"
#include "session.h"
#include "util.h"
#include "ws_burst.h"
#include "ws_flush.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_MAX_FRAMES 512
#define QUEUE_MAX_BYTES (4u << 20)

struct ws_conn {
    struct lws *wsi;
    server_t *srv;
    struct ws_conn *prev, *next;
    session_t *session;
    int is_agent;        /* an /agent socket */
    agent_sock_t *agent; /* its state in agent.c once authenticated */
    ws_frame *out, **out_tail;
    size_t out_frames, out_bytes;
    char *rx;
    size_t rx_len, rx_cap;
    int rx_binary;
    double tokens;
    uint64_t refill_ms;
    int strikes;
    uint64_t opened_ms;
    uint64_t heard_ms;  /* last frame or pong from the client */
    uint64_t pinged_ms; /* last ping we sent */
    int ping_due;
    int close_code;
    char close_reason[64];
    ws_flush_item flush; /* listed in srv->flush: frames to write at the end of this pass */
};

void ws_conn_bind(ws_conn_t *c, struct session *s)
{
    c->session = s;
}

static void request_write(ws_conn_t *c)
{
    lws_callback_on_writable(c->wsi);
}

int ws_conn_send(ws_conn_t *c, char *json)
{
    size_t len = strlen(json);
    if (c->close_code) {
        free(json);
        return -1;
    }
    if (c->out_frames >= QUEUE_MAX_FRAMES || c->out_bytes + len > QUEUE_MAX_BYTES) {
        free(json);
        log_warn("ws", "client not reading; closing");
        ws_conn_close(c, 1008, "not reading");
        return -1;
    }
    ws_frame *f = malloc(sizeof(*f) + LWS_PRE + len);
    if (!f) {
        free(json);
        return -1;
    }
    f->next = NULL;
    f->len = len;
    memcpy(f->buf + LWS_PRE, json, len);
    free(json);
    int idle = c->out == NULL; /* otherwise a write is listed or requested */
    *c->out_tail = f;
    c->out_tail = &f->next;
    c->out_frames++;
    c->out_bytes += len;
    if (idle && ws_flush_add(&c->srv->flush, &c->flush) != 0)
        request_write(c);
    return 0;
}

void ws_conn_close(ws_conn_t *c, int code, const char *reason)
{
    if (c->close_code)
        return;
    c->close_code = code;
    snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason);
    request_write(c);
}

void ws_conn_error(ws_conn_t *c, int code, const char *message, const char *id)
{
    if ((unsigned)code < PROTO_E_COUNT)
        metrics.errors[code]++;
    char *json = proto_error((proto_error_t)code, message, id);
    if (json)
        ws_conn_send(c, json);
}

void ws_sweep(server_t *srv)
{
    uint64_t now = util_now_ms(), hello = (uint64_t)srv->cfg->hello_timeout_s * 1000u,
             idle = (uint64_t)srv->cfg->idle_timeout_s * 1000u,
             ping = (uint64_t)srv->cfg->ping_interval_s * 1000u;
    for (ws_conn_t *c = srv->conns; c; c = c->next) {
        if (c->close_code)
            continue;
        if (!c->session && !c->is_agent && now - c->opened_ms >= hello)
            ws_conn_close(c, 1008, "no hello in time");
        else if (now - c->heard_ms >= idle)
            ws_conn_close(c, 1001, "idle");
        else if (now - c->heard_ms >= ping && now - c->pinged_ms >= ping) {
            c->ping_due = 1;
            c->pinged_ms = now;
            request_write(c);
        }
    }
}

void ws_close_all(server_t *srv, int code, const char *reason)
{
    for (ws_conn_t *c = srv->conns; c; c = c->next)
        ws_conn_close(c, code, reason);
}

/* Token bucket: 1 when the frame may be processed. */
static int rate_ok(ws_conn_t *c)
{
    const config_t *cfg = c->srv->cfg;
    uint64_t now = util_now_ms();
    c->tokens += (double)(now - c->refill_ms) * cfg->rate_per_sec / 1000.0;
    c->refill_ms = now;
    if (c->tokens > cfg->rate_burst)
        c->tokens = cfg->rate_burst;
    if (c->tokens >= 1.0) {
        c->tokens -= 1.0;
        if (c->strikes > 0 && c->tokens >= cfg->rate_burst / 2.0)
            c->strikes = 0;
        return 1;
    }
    return 0;
}

static void on_frame(ws_conn_t *c)
{
    const config_t *cfg = c->srv->cfg;
    proto_limits_t lim = {cfg->max_text_chars};
    proto_in_t in;
    proto_error_t code;
    char msg[256];

    if (c->close_code)
        return;
    if (!rate_ok(c)) {
        if (++c->strikes > 2 * cfg->rate_burst) {
            ws_conn_close(c, 1008, "rate limit");
            return;
        }
        /* name the dropped message so that the client knows what to send again */
        int ok = !c->rx_binary &&
                 proto_decode(c->rx, c->rx_len, &lim, &in, &code, msg, sizeof(msg)) == 0;
        ws_conn_error(c, PROTO_E_RATE_LIMITED, "too many frames; slow down; send it again later",
                      in.id[0] ? in.id : NULL);
        if (ok)
            proto_in_clear(&in);
        return;
    }
    if (c->rx_binary) {
        ws_conn_error(c, PROTO_E_BAD_FRAME, "binary frames are not accepted; send JSON text", NULL);
        return;
    }
    if (c->is_agent) {
        if (c->agent)
            agent_ws_frame(c->agent, c->rx, c->rx_len);
        return;
    }
    if (proto_decode(c->rx, c->rx_len, &lim, &in, &code, msg, sizeof(msg)) != 0) {
        ws_conn_error(c, code, msg, in.id[0] ? in.id : NULL);
        return;
    }
    switch (in.kind) {
    case PROTO_HELLO_NEW:
    case PROTO_HELLO_RESUME:
        if (c->session)
            ws_conn_error(c, PROTO_E_ALREADY_STARTED, "hello was already accepted", NULL);
        else
            session_hello(c->srv->sessions, c, &in);
        break;
    case PROTO_MESSAGE:
        if (!c->session)
            ws_conn_error(c, PROTO_E_NOT_READY, "send hello first", in.id);
        else
            session_message(c->session, c, &in);
        break;
    }
    proto_in_clear(&in);
}

static int on_receive(ws_conn_t *c, const void *data, size_t len)
{
    size_t max = (size_t)c->srv->cfg->max_message_bytes;
    if (lws_is_first_fragment(c->wsi)) {
        c->rx_len = 0;
        c->rx_binary = lws_frame_is_binary(c->wsi);
    }
    if (c->rx_len + len > max) {
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)"message too big", 15);
        return -1;
    }
    if (c->rx_len + len + 1 > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 1024;
        while (cap < c->rx_len + len + 1)
            cap *= 2;
        if (cap > max + 1)
            cap = max + 1;
        char *p = realloc(c->rx, cap);
        if (!p)
            return -1;
        c->rx = p;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, data, len);
    c->rx_len += len;
    c->rx[c->rx_len] = '\0';
    if (lws_is_final_fragment(c->wsi) && !lws_remaining_packet_payload(c->wsi)) {
        /* only a whole message is a sign of life: a frame trickled in forever is not */
        c->heard_ms = util_now_ms();
        on_frame(c);
        store_deliver(c->srv->store);
        c->rx_len = 0;
        if (c->rx_cap > 16384) { /* don't keep a large buffer for an idle chat */
            free(c->rx);
            c->rx = NULL;
            c->rx_cap = 0;
        }
    }
    return 0;
}

/* Writes the first queued frames in one send (ws_burst.c), then asks for WRITEABLE when more
 * frames or the close frame wait, or tells the session the queue drained.  0, or -1 when the
 * connection failed. */
static int write_frames(ws_conn_t *c, int pass_end)
{
    size_t frames, bytes;
    int rc = ws_burst_send(c->wsi, &c->out, &frames, &bytes);
    metrics.ws_writes[pass_end ? 1 : 0]++;
    if (!c->out)
        c->out_tail = &c->out;
    c->out_frames -= frames;
    c->out_bytes -= bytes;
    if (rc != 0)
        return rc;
    if (c->out || c->close_code)
        request_write(c);
    else if (c->session)
        session_drained(c->session, c);
    return 0;
}

static int on_writeable(ws_conn_t *c)
{
    ws_frame *f = c->out;
    if (c->ping_due && !c->close_code) {
        /* a payload, because lws does not report an empty pong (RECEIVE_PONG) */
        unsigned char ping[LWS_PRE + 4];
        memcpy(ping + LWS_PRE, "rdrs", 4);
        c->ping_due = 0;
        if (lws_write(c->wsi, ping + LWS_PRE, 4, LWS_WRITE_PING) < 0)
            return -1;
        if (f)
            request_write(c);
        return 0;
    }
    if (f)
        return write_frames(c, 0);
    if (c->close_code) {
        /* Returning -1 from WRITEABLE would drop the close frame: set the reason and let the
         * connection's timer (LWS_CALLBACK_TIMER) end it shortly.  The 20 ms let a client that
         * is still sending (a flooder) get its data read first: closing on unread data makes
         * the kernel reset the connection, and the reset can destroy the close frame. */
        lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                         (unsigned char *)c->close_reason, strlen(c->close_reason));
        lws_set_timer_usecs(c->wsi, 20000);
    }
    return 0;
}

/* The end of a loop pass (ws_flush.c): writes a listed connection's first frames now. */
static void flush_conn(ws_flush_item *it)
{
    ws_conn_t *c = (ws_conn_t *)((char *)it - offsetof(ws_conn_t, flush));
    if (!c->out)
        return;
    if (c->close_code || c->ping_due || lws_partial_buffered(c->wsi)) {
        request_write(c);
        return;
    }
    if (write_frames(c, 1) != 0) /* what returning -1 from WRITEABLE does, outside a callback */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

void ws_flush_begin(server_t *srv)
{
    ws_flush_start(&srv->flush, &srv->loop, flush_conn);
}

static void on_closed(ws_conn_t *c)
{
    server_t *srv = c->srv;
    ws_flush_remove(&c->flush);
    if (c->session)
        session_detach(c->session, c);
    if (c->agent)
        agent_ws_closed(c->agent);
    c->agent = NULL;
    while (c->out) {
        ws_frame *f = c->out;
        c->out = f->next;
        free(f);
    }
    free(c->rx);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    metrics.connections--;
}

/*
 * Browsers send Origin on WebSocket upgrades; a page on another site must not open chats
 * unless web.allowed_origins names it.  Same-origin pages (Origin's host:port equals Host) and
 * clients that send no Origin (apps, servers) are allowed.  Returns 1 when allowed.
 */
int ws_origin_allowed(const char *allowed, const char *origin, const char *host)
{
    if (!origin || !*origin)
        return 1;
    const char *o = strstr(origin, "://");
    if (host && *host && o && strcmp(o + 3, host) == 0)
        return 1;
    size_t olen = strlen(origin);
    for (const char *p = allowed; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *q = p;
        while (*q && *q != ',' && *q != ' ')
            q++;
        size_t n = (size_t)(q - p);
        if ((n == 1 && *p == '*') || (n == olen && n > 0 && strncmp(p, origin, n) == 0))
            return 1;
        p = q;
    }
    return 0;
}

static int origin_ok(struct lws *wsi, const config_t *cfg)
{
    char origin[256] = "", host[256] = "";
    if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) <= 0)
        return 1;
    if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) < 0)
        return 0;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HOST) > 0 &&
        lws_hdr_copy(wsi, host, sizeof(host), WSI_TOKEN_HOST) < 0)
        return 0;
    if (ws_origin_allowed(cfg->allowed_origins, origin, host))
        return 1;
    log_info("ws", "refused a chat upgrade from origin %.100s", origin);
    return 0;
}

static int path_is(struct lws *wsi, const char *want)
{
    char uri[256];
    int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
    return n > 0 && strcmp(uri, want) == 0;
}

/* An agent socket's login: the Cookie header's session must be valid and allow agent.chat. */
static void agent_login(ws_conn_t *c)
{
    server_t *srv = c->srv;
    char cookie[AUTH_COOKIE_HEADER_MAX + 1];
    auth_user_t user;

    if (http_cookie(c->wsi, cookie, sizeof(cookie)) != 0 || !srv->auth || !srv->agents ||
        auth_session_lookup(srv->auth, cookie, &user) != 0) {
        ws_conn_close(c, 4401, "log in first");
        return;
    }
    if (!auth_allows(user.role, AUTH_CAP_AGENT_CHAT)) {
        ws_conn_close(c, 4403, "this account may not take chats");
        return;
    }
    if (!(c->agent = agent_ws_open(srv->agents, c, &user)))
        ws_conn_close(c, 1011, "out of memory");
}

static int callback_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len, int is_agent)
{
    ws_conn_t *c = user;
    server_t *srv;

    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        srv = server_of(wsi);
        if (!path_is(wsi, is_agent ? "/agent" : "/chat") || !origin_ok(wsi, srv->cfg))
            return -1;
        if (srv->stopping || srv->nconns >= srv->cfg->max_connections)
            return -1;
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        srv = server_of(wsi);
        c->wsi = wsi;
        c->srv = srv;
        c->out_tail = &c->out;
        c->opened_ms = c->refill_ms = c->heard_ms = util_now_ms();
        c->tokens = srv->cfg->rate_burst;
        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        srv->nconns++;
        metrics.connections++;
        metrics.connections_total++;
        c->is_agent = is_agent;
        if (is_agent)
            agent_login(c);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (!c->srv)
            return -1;
        return on_receive(c, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!c->srv)
            return -1;
        return on_writeable(c);
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c->srv)
            c->heard_ms = util_now_ms();
        return 0;
    case LWS_CALLBACK_TIMER:
        return c->srv && c->close_code ? -1 : 0;
    case LWS_CALLBACK_CLOSED:
        if (c->srv)
            on_closed(c);
        return 0;
    default:
        return 0;
    }
}

static int callback_chat(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    return callback_ws(wsi, reason, user, in, len, 0);
}

static int callback_agent(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len)
{
    return callback_ws(wsi, reason, user, in, len, 1);
}

const struct lws_protocols ws_chat_protocol = {
    "redress.chat.v1", callback_chat, sizeof(ws_conn_t), 1024, 0, NULL, 0,
};

const struct lws_protocols ws_agent_protocol = {
    "redress.agent.v1", callback_agent, sizeof(ws_conn_t), 1024, 0, NULL, 0,
};
