/*
 * echo_server.c - the transport baseline for the server benchmark (bench/run_server_bench.sh,
 * phase "echo").
 *
 * It speaks just enough of docs/protocol.md for bench/loadgen to run the same exchange it runs
 * against redress, on the same transport setup as server/net.c and server/ws.c: one libuv loop,
 * libwebsockets 4.1 on it as a foreign loop with the same context options, retry/idle policy
 * and per-connection rx buffer; subprotocol redress.chat.v1 at /chat; frames reassembled in the
 * RECEIVE callback and written up to 8 in one send (server/ws_burst.c, linked in from the
 * server) with LWS_PRE headroom, at the end of the loop pass that queued them (server/ws_flush.c,
 * also linked in) or on SERVER_WRITEABLE while lws holds part of an earlier send.  What it leaves
 * out is the application: no cJSON, no store, no session, no flow.  So
 *     redress turns/s  /  echo turns/s
 * says how much of the server's ceiling the application work costs.
 *
 *   hello            -> welcome, status "open" (seq 1), greeting message (seq 2)
 *   message          -> ack (seq n), message from "bot" (seq n + 1) whose text is the customer's
 *                       text (the raw escaped JSON string, copied), so the reply has the size
 *                       of the request
 *   anything else    -> error frame (bad_json, unknown_type, not_ready)
 *
 * A connection (echo_conn, lws per-session storage) owns its queue of outgoing frames and its
 * receive buffer; both are freed in LWS_CALLBACK_CLOSED.  SIGINT / SIGTERM stop the server:
 * lws_context_destroy() closes every socket, the loop ends, the context is destroyed again to
 * free it (the foreign-loop two-phase destroy, as in server/net.c).
 *
 * usage: echo_server [--host 127.0.0.1] [--port N (0 = any)] [--max-connections N]
 *                    [--rx-buffer BYTES (the protocol's rx_buffer_size, 1024 as in ws.c)]
 *                    [--lws-validity (retry_and_idle_policy NULL: lws's default validity
 *                     timer, re-inserted in a sorted list on every frame)]
 *                    [--fd-limit (fd_limit_per_thread = max connections + 64: a linear fd
 *                     lookup when that is below the open-file limit)]
 *                    [--send-per-frame (one lws_write a frame, as the server did before
 *                     ws_burst.c, up to 8 per WRITEABLE while lws buffered nothing)]
 *                    [--write-on-writeable (every write after a POLLOUT round on WRITEABLE, as
 *                     the server did before ws_flush.c)]
 * The last five are not what server/net.c does; they exist to measure what its choices cost.
 * prints "listening on http://HOST:PORT" on stdout once it accepts connections.
 */
#include "loadgen.h"

#include <errno.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "ws_burst.h"
#include "ws_flush.h"

#define QUEUE_MAX_FRAMES 512
#define MAX_MESSAGE (16 * 1024)

static const char greeting[] =
    "您好，这里是客户服务中心，很高兴为您服务。请描述您遇到的问题，我们会尽快为您处理。";

typedef struct echo_conn {
    struct lws *wsi;
    ws_frame *out, **out_tail;
    size_t out_frames;
    char *rx;
    size_t rx_len, rx_cap;
    long long seq;
    int started;
    int closing;
    ws_flush_item flush;
} echo_conn;

typedef struct echo_server {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    struct lws_context *lws;
    unsigned long conversations;
    uint64_t rng;
    int stopping;
    int send_per_frame;     /* --send-per-frame */
    int write_on_writeable; /* --write-on-writeable */
    ws_flush flush;
} echo_server;

static echo_server *server_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static void iso_now(char *out, size_t outlen)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* Queues a frame built from fmt; closes the connection when its queue is full.  0 or -1. */
static int queue_frame(echo_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int queue_frame(echo_conn *c, const char *fmt, ...)
{
    va_list ap;
    int n;
    ws_frame *f;

    if (c->closing)
        return -1;
    if (c->out_frames >= QUEUE_MAX_FRAMES) {
        c->closing = 1;
        lws_callback_on_writable(c->wsi);
        return -1;
    }
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !(f = malloc(sizeof(*f) + LWS_PRE + (size_t)n + 1)))
        return -1;
    va_start(ap, fmt);
    vsnprintf((char *)f->buf + LWS_PRE, (size_t)n + 1, fmt, ap);
    va_end(ap);
    f->next = NULL;
    f->len = (size_t)n;
    int idle = c->out == NULL; /* otherwise a write is listed or requested */
    *c->out_tail = f;
    c->out_tail = &f->next;
    c->out_frames++;
    echo_server *srv = server_of(c->wsi);
    if (idle && (srv->write_on_writeable || ws_flush_add(&srv->flush, &c->flush) != 0))
        lws_callback_on_writable(c->wsi);
    return 0;
}

static void send_error(echo_conn *c, const char *code, const char *message)
{
    queue_frame(c, "{\"type\":\"error\",\"code\":\"%s\",\"message\":\"%s\"}", code, message);
}

static void on_hello(echo_server *srv, echo_conn *c)
{
    char ts[64], token[33];
    uint64_t a, b;

    if (c->started) {
        send_error(c, "already_started", "hello was already accepted");
        return;
    }
    c->started = 1;
    srv->rng ^= srv->rng << 13, srv->rng ^= srv->rng >> 7, srv->rng ^= srv->rng << 17;
    a = srv->rng;
    srv->rng ^= srv->rng << 13, srv->rng ^= srv->rng >> 7, srv->rng ^= srv->rng << 17;
    b = srv->rng;
    snprintf(token, sizeof(token), "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
    queue_frame(c,
                "{\"type\":\"welcome\",\"conversation\":\"c-%012lu\",\"token\":\"%s\","
                "\"seq\":0,\"resumed\":false}",
                ++srv->conversations, token);
    iso_now(ts, sizeof(ts));
    queue_frame(c,
                "{\"type\":\"status\",\"seq\":%lld,\"state\":\"open\",\"detail\":{},\"ts\":\"%s\"}",
                ++c->seq, ts);
    queue_frame(
        c, "{\"type\":\"message\",\"seq\":%lld,\"from\":\"bot\",\"text\":\"%s\",\"ts\":\"%s\"}",
        ++c->seq, greeting, ts);
}

static void on_message(echo_conn *c, const lg_msg_t *m)
{
    char id[sizeof(m->id) * 6 + 1], ts[64];

    if (!c->started) {
        send_error(c, "not_ready", "send hello first");
        return;
    }
    if (!m->id[0] || !m->text || lg_json_escape(id, sizeof(id), m->id) < 0) {
        send_error(c, "missing_field", "message.id and message.text are required");
        return;
    }
    queue_frame(c, "{\"type\":\"ack\",\"id\":\"%s\",\"seq\":%lld}", id, ++c->seq);
    iso_now(ts, sizeof(ts));
    queue_frame(
        c, "{\"type\":\"message\",\"seq\":%lld,\"from\":\"bot\",\"text\":\"%.*s\",\"ts\":\"%s\"}",
        ++c->seq, (int)m->text_len, m->text, ts);
}

static void on_frame(echo_server *srv, echo_conn *c)
{
    lg_msg_t m;
    if (lg_json_scan(c->rx, c->rx_len, &m) != 0) {
        send_error(c, "bad_json", "the frame is not a JSON object");
        return;
    }
    if (strcmp(m.type, "hello") == 0)
        on_hello(srv, c);
    else if (strcmp(m.type, "message") == 0)
        on_message(c, &m);
    else
        send_error(c, "unknown_type", "type is missing or unknown");
}

static int on_receive(echo_server *srv, echo_conn *c, const void *in, size_t len)
{
    if (lws_is_first_fragment(c->wsi))
        c->rx_len = 0;
    if (c->rx_len + len > MAX_MESSAGE) {
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)"message too big", 15);
        return -1;
    }
    if (c->rx_len + len + 1 > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 1024;
        while (cap < c->rx_len + len + 1)
            cap *= 2;
        char *p = realloc(c->rx, cap);
        if (!p)
            return -1;
        c->rx = p;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    c->rx[c->rx_len] = '\0';
    if (lws_is_final_fragment(c->wsi) && !lws_remaining_packet_payload(c->wsi)) {
        on_frame(srv, c);
        c->rx_len = 0;
    }
    return 0;
}

/* --send-per-frame: one lws_write a frame, up to WS_BURST_MAX while lws buffers nothing. */
static int write_each(echo_conn *c)
{
    for (int i = 0; c->out && i < WS_BURST_MAX && (i == 0 || !lws_partial_buffered(c->wsi)); i++) {
        ws_frame *f = c->out;
        c->out = f->next;
        c->out_frames--;
        int n = lws_write(c->wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT);
        free(f);
        if (n < 0)
            return -1;
    }
    return 0;
}

/* As server/ws.c: the first queued frames in one send (ws_burst.c), or one a send; then
 * WRITEABLE again when more frames or the close wait. */
static int write_frames(echo_conn *c)
{
    size_t frames = 0, bytes;
    int rc = server_of(c->wsi)->send_per_frame ? write_each(c)
                                               : ws_burst_send(c->wsi, &c->out, &frames, &bytes);
    c->out_frames -= frames;
    if (!c->out)
        c->out_tail = &c->out;
    if (rc == 0 && (c->out || c->closing))
        lws_callback_on_writable(c->wsi);
    return rc;
}

static int on_writeable(echo_conn *c)
{
    if (c->out)
        return write_frames(c);
    if (c->closing) {
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)"not reading",
                         11);
        return -1;
    }
    return 0;
}

/* As server/ws.c: at the end of the loop pass, the first queued frames in one send. */
static void flush_conn(ws_flush_item *it)
{
    echo_conn *c = (echo_conn *)((char *)it - offsetof(echo_conn, flush));
    if (!c->out)
        return;
    if (c->closing || lws_partial_buffered(c->wsi)) {
        lws_callback_on_writable(c->wsi);
        return;
    }
    if (write_frames(c) != 0)
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static int path_is(struct lws *wsi, const char *want)
{
    char uri[256];
    int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
    return n > 0 && strcmp(uri, want) == 0;
}

static int callback_chat(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    echo_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return path_is(wsi, "/chat") && !server_of(wsi)->stopping ? 0 : -1;
    case LWS_CALLBACK_ESTABLISHED:
        c->wsi = wsi;
        c->out_tail = &c->out;
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return c->wsi ? on_receive(server_of(wsi), c, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c->wsi ? on_writeable(c) : -1;
    case LWS_CALLBACK_CLOSED:
        if (c->wsi) {
            ws_flush_remove(&c->flush);
            while (c->out) {
                ws_frame *f = c->out;
                c->out = f->next;
                free(f);
            }
            free(c->rx);
            c->wsi = NULL;
        }
        return 0;
    default:
        return 0;
    }
}

static int callback_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    if (reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION)
        return -1; /* a WebSocket must name the chat subprotocol */
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* rx_buffer_size 1024 as in server/ws.c; --rx-buffer changes it to measure what it costs. */
static struct lws_protocols protocols[] = {
    {"http", callback_http, 0, 0, 0, NULL, 0},
    {"redress.chat.v1", callback_chat, sizeof(echo_conn), 1024, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_signal(uv_signal_t *h, int signum)
{
    echo_server *srv = h->data;
    if (srv->stopping)
        return;
    srv->stopping = 1;
    ws_flush_stop(&srv->flush);
    lws_context_destroy(srv->lws); /* first phase: sockets and lws's uv handles close */
    uv_signal_stop(&srv->sigint);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_signal_stop(&srv->sigterm);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
}

static int parse_int(const char *flag, const char *v, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || n < min || n > max) {
        fprintf(stderr, "echo_server: %s needs an integer in [%ld, %ld]\n", flag, min, max);
        return -1;
    }
    *out = (int)n;
    return 0;
}

int main(int argc, char **argv)
{
    static echo_server srv;
    static const lws_retry_bo_t no_validity_checks; /* as server/net.c */
    struct lws_context_creation_info info;
    void *foreign_loops[1] = {&srv.loop};
    const char *host = "127.0.0.1";
    int port = 0, max_conns = 20000, rx_buffer = 1024, lws_validity = 0, fd_limit = 0, rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--host") == 0 && v)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0) {
            if (parse_int("--port", v, 0, 65535, &port) != 0)
                return 2;
            i++;
        } else if (strcmp(argv[i], "--max-connections") == 0) {
            if (parse_int("--max-connections", v, 1, 1000000, &max_conns) != 0)
                return 2;
            i++;
        } else if (strcmp(argv[i], "--lws-validity") == 0) {
            lws_validity = 1;
        } else if (strcmp(argv[i], "--fd-limit") == 0) {
            fd_limit = 1;
        } else if (strcmp(argv[i], "--send-per-frame") == 0) {
            srv.send_per_frame = 1;
        } else if (strcmp(argv[i], "--write-on-writeable") == 0) {
            srv.write_on_writeable = 1;
        } else if (strcmp(argv[i], "--rx-buffer") == 0) {
            if (parse_int("--rx-buffer", v, 128, 1 << 20, &rx_buffer) != 0)
                return 2;
            i++;
        } else {
            fprintf(stderr, "usage: echo_server [--host ADDR] [--port N] [--max-connections N]"
                            " [--rx-buffer BYTES] [--lws-validity] [--fd-limit]"
                            " [--send-per-frame] [--write-on-writeable]\n");
            return 2;
        }
    }
    protocols[1].rx_buffer_size = (size_t)rx_buffer;
    signal(SIGPIPE, SIG_IGN);
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    srv.rng = (uint64_t)time(NULL) * 2654435761u | 1;
    if (uv_loop_init(&srv.loop) != 0)
        return 1;

    memset(&info, 0, sizeof(info));
    info.port = port;
    info.iface = host;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV |
                   LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
                   LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = foreign_loops;
    info.user = &srv;
    info.retry_and_idle_policy = lws_validity ? NULL : &no_validity_checks;
    info.fd_limit_per_thread = fd_limit ? (unsigned)max_conns + 64u : 0;
    info.timeout_secs = 20;
    srv.lws = lws_create_context(&info);
    if (!srv.lws) {
        fprintf(stderr, "echo_server: cannot listen on %s:%d\n", host, port);
        goto out;
    }
    uv_signal_init(&srv.loop, &srv.sigint);
    uv_signal_init(&srv.loop, &srv.sigterm);
    srv.sigint.data = srv.sigterm.data = &srv;
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    ws_flush_start(&srv.flush, &srv.loop, flush_conn);
    {
        struct lws_vhost *vh = lws_get_vhost_by_name(srv.lws, "default");
        printf("listening on http://%s:%d\n", host, vh ? lws_get_vhost_listen_port(vh) : port);
        fflush(stdout);
    }
    uv_run(&srv.loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    if (srv.lws)
        lws_context_destroy(srv.lws); /* second phase: frees the context */
    if (uv_loop_close(&srv.loop) != 0)
        fprintf(stderr, "echo_server: loop closed with handles open\n");
    return rc;
}
