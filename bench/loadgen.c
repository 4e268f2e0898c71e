/*
 * loadgen.c - load generator for the redress customer chat protocol (docs/protocol.md).
 *
 * One process, one libuv loop, --conns conversation slots.  Each slot holds at most one
 * conversation at a time on a raw TCP socket spoken with the codec in loadgen_ws.c (see there
 * why not the libwebsockets client).  bench/run_server_bench.sh runs several of these processes
 * (one process may hold ~19,000 sockets) and merges their JSON reports (loadgen_merge.py).
 *
 * A conversation (conn) goes through
 *   C_FREE --start_connect()--> C_CONNECTING --on_connect()--> C_UPGRADING (GET /chat sent)
 *   C_UPGRADING --101 checked in process()--> C_HELLO (hello sent)
 *   C_HELLO --welcome, then the first bot message: conn_ready()--> C_READY
 *   C_READY --conn_close(): close frame sent--> C_CLOSING --EOF / deadline--> uv_close
 *   any state --conn_abort(): uv_close--> on_closed() --> C_FREE (slot may be reconnected)
 * and while C_READY, one turn at a time:
 *   T_NONE --send_turn()--> T_SENT --ack with our id--> T_ACKED --first message from the bot
 *   with seq > the ack's seq: turn_done()--> T_NONE
 * A turn answered by an error frame (naming its id, or naming none: rate_limited) is "rejected"
 * and the line is sent again 100 ms later; one over --turn-timeout is abandoned and counted.
 * Status escalated / queued / agent_joined / closed ends the conversation (the bot will not
 * answer any more, so a turn then in flight counts as "escalated", not lost).  When a conversation
 * has sent all its lines it is closed and, with --churn 1, the slot opens a fresh conversation (so
 * the server sees conversations start and end).
 *
 * The process runs in phases (lg.phase), each ended by tick() or an event:
 *   P_CONNECT  open every slot, at most --connect-concurrency handshakes at a time; when all
 *              have settled, the ready file is written
 *   P_WAIT     with --wait-go: until SIGUSR1 (the script starts all processes together)
 *   P_RUN      idle: hold --hold s (or until SIGUSR1); closed: every ready conversation sends
 *              its next line as soon as the previous turn is done; open: turns are sent at
 *              --rate per second by sched(), each from an idle conversation, timed from its
 *              scheduled instant (so a late send shows up as latency); turns done inside
 *              [warmup, warmup + duration) make the measurement window
 *   P_DRAIN    no new turns; wait up to --drain s for open turns; the rest are "lost"
 *   P_CLOSE    close frames to everyone; after 3 s the stragglers are cut
 *   P_DONE     timers and signals closed; uv_run returns; the report is written
 * SIGINT / SIGTERM jump to P_CLOSE (the report says "aborted").  Every wait has a deadline, so
 * the process always ends by itself.
 *
 * Memory: one calloc'ed array of conn; a conn allocates only for bytes of a partial frame
 * (rbuf), a fragmented message (msg) and a write the kernel did not take at once.
 */
#include "loadgen.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define NS 1000000000ULL
#define MS 1000000ULL
#define CLOSE_GRACE_NS (2 * NS)
#define END_GRACE_NS (3 * NS)
#define REJECT_PAUSE_NS (100 * MS)
#define RECONNECT_PAUSE_NS (1 * NS)

enum { P_CONNECT, P_WAIT, P_RUN, P_DRAIN, P_CLOSE, P_DONE };
typedef enum { C_FREE, C_CONNECTING, C_UPGRADING, C_HELLO, C_READY, C_CLOSING } cstate;
typedef enum { T_NONE, T_SENT, T_ACKED } tstate;

typedef struct conn {
    uv_tcp_t tcp; /* tcp.data = this */
    uv_connect_t creq;
    struct lg *lg;
    int slot;
    cstate state;
    tstate turn;
    int conv, line;
    unsigned msgno, gen;
    unsigned connecting : 1, got_welcome : 1, we_closed : 1, got_close : 1, queued : 1, in_idle : 1,
        was_ready : 1;
    int writes_pending;
    char key[LG_WS_KEY_LEN + 1];
    char pending_id[24];
    long long ack_seq;
    uint64_t t_open, t_welcome, t_sent, t_ack, t_close, resume_at, retry_at;
    unsigned char *rbuf; /* bytes of an incomplete frame */
    size_t rlen, rcap;
    unsigned char *msg; /* a fragmented text message being reassembled */
    size_t mlen, mcap;
    struct conn *idle_prev, *idle_next;
} conn;

typedef struct lg {
    lg_opts_t o;
    uv_loop_t *loop;
    uv_timer_t tick, sched;
    uv_signal_t sigusr1, sigint, sigterm;
    struct sockaddr_in addr;
    char target[300];
    lg_conv_t *convs;
    int nconvs;
    conn *conns;
    int *queue; /* slots waiting to connect (ring) */
    int q_head, q_len;
    conn *idle_head, *idle_tail; /* open loop: ready conversations with no turn */
    int connecting, open;
    int phase;
    uint64_t t_start, t_connect_done, t_wait_until, t_run, t_run_end, win_start, win_end;
    uint64_t t_deadline;
    uint64_t open_k;
    uint64_t rng;
    int ready_at_go, open_at_end, aborted, errors_logged;
    const char *note;
    lg_stats_t st;
    unsigned char rdbuf[65536];
    unsigned char wbuf[16384 + 64];
    char jbuf[16384];
} lg;

static void conn_abort(conn *c);
static void conn_close(conn *c, int code);
static void maybe_connect_more(lg *g);
static void begin_close(lg *g);

/* ---- small helpers ---- */

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static uint32_t rand32(lg *g)
{
    uint64_t x = g->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    g->rng = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

static void note_error(lg *g, const char *fmt, const char *detail)
{
    if (g->errors_logged++ < 10)
        fprintf(stderr, "loadgen[%d]: %s%s\n", g->o.id, fmt, detail ? detail : "");
}

static int in_window(const lg *g, uint64_t t)
{
    return g->phase >= P_RUN && t >= g->win_start && t < g->win_end;
}

/* ---- writing ---- */

typedef struct wreq {
    uv_write_t req;
    conn *c;
    size_t len;
    unsigned char data[];
} wreq;

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    conn *c = w->c;
    c->writes_pending--;
    free(w);
    if (status < 0 && status != UV_ECANCELED && !uv_is_closing((uv_handle_t *)&c->tcp))
        conn_abort(c);
}

/* Writes buf[0..len) in order with what is already queued.  0 or -1 (conn aborted). */
static int write_raw(conn *c, const unsigned char *buf, size_t len)
{
    size_t done = 0;
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return -1;
    if (c->writes_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_abort(c);
            return -1;
        }
        if (n > 0)
            done = (size_t)n;
    }
    if (done == len)
        return 0;
    wreq *w = malloc(sizeof(*w) + len - done);
    if (!w) {
        conn_abort(c);
        return -1;
    }
    w->c = c;
    w->len = len - done;
    memcpy(w->data, buf + done, len - done);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(w);
        conn_abort(c);
        return -1;
    }
    c->writes_pending++;
    return 0;
}

/* Sends one masked frame.  0 or -1 (conn aborted). */
static int send_frame(conn *c, int opcode, const void *payload, size_t len)
{
    lg *g = c->lg;
    size_t n = lg_ws_frame_size(len);
    if (n > sizeof(g->wbuf)) {
        note_error(g, "frame too large to send", NULL);
        return -1;
    }
    lg_ws_encode(g->wbuf, opcode, payload, len, rand32(g));
    g->st.frames_out++;
    g->st.bytes_out += n;
    return write_raw(c, g->wbuf, n);
}

static int send_text(conn *c, const char *json, size_t len)
{
    return send_frame(c, LG_OP_TEXT, json, len);
}

/* ---- idle list (open loop) ---- */

static void idle_push(lg *g, conn *c)
{
    if (c->in_idle)
        return;
    c->in_idle = 1;
    c->idle_next = NULL;
    c->idle_prev = g->idle_tail;
    if (g->idle_tail)
        g->idle_tail->idle_next = c;
    else
        g->idle_head = c;
    g->idle_tail = c;
}

static void idle_remove(lg *g, conn *c)
{
    if (!c->in_idle)
        return;
    if (c->idle_prev)
        c->idle_prev->idle_next = c->idle_next;
    else
        g->idle_head = c->idle_next;
    if (c->idle_next)
        c->idle_next->idle_prev = c->idle_prev;
    else
        g->idle_tail = c->idle_prev;
    c->in_idle = 0;
    c->idle_prev = c->idle_next = NULL;
}

static conn *idle_pop(lg *g)
{
    conn *c = g->idle_head;
    if (c)
        idle_remove(g, c);
    return c;
}

/* --trace: the frames of slot 0 on stderr, to see what a server answers. */
static void trace(const conn *c, const char *dir, const char *json, size_t len)
{
    if (c->lg->o.trace && c->slot == 0)
        fprintf(stderr, "%.3f %s %.*s\n", (double)(now_ns() - c->lg->t_start) / NS, dir, (int)len,
                json);
}

/* ---- turns ---- */

static void send_turn(conn *c, uint64_t t0)
{
    lg *g = c->lg;
    const lg_conv_t *v = &g->convs[c->conv];
    c->msgno++;
    snprintf(c->pending_id, sizeof(c->pending_id), "m-%u", c->msgno);
    int n =
        snprintf(g->jbuf, sizeof(g->jbuf), "{\"type\":\"message\",\"id\":\"%s\",\"text\":\"%s\"}",
                 c->pending_id, v->lines[c->line]);
    if (n < 0 || (size_t)n >= sizeof(g->jbuf)) {
        note_error(g, "customer line too long: ", v->name);
        return;
    }
    c->turn = T_SENT;
    c->t_sent = t0;
    g->st.turns_sent++;
    trace(c, ">", g->jbuf, (size_t)n);
    send_text(c, g->jbuf, (size_t)n);
}

static int sending_allowed(const lg *g)
{
    return g->phase == P_RUN && g->o.mode != LG_MODE_IDLE;
}

static void sched_pump(lg *g);

/* The conversation may take its next turn (it is C_READY with no turn open). */
static void make_available(conn *c)
{
    lg *g = c->lg;
    if (!sending_allowed(g) || c->state != C_READY || c->turn != T_NONE || c->resume_at)
        return;
    if (g->o.mode == LG_MODE_CLOSED) {
        send_turn(c, now_ns());
    } else {
        idle_push(g, c);
        sched_pump(g);
    }
}

/* Open loop: sends every turn that is due, each from an idle conversation. */
static void sched_pump(lg *g)
{
    if (g->phase != P_RUN || g->o.mode != LG_MODE_OPEN)
        return;
    uint64_t now = now_ns(), until = now < g->win_end ? now : g->win_end;
    /* turn k is due at t_run + k / rate: every turn scheduled at or before now is due (the
     * ones at or after the window's end are not) */
    double x = (double)(until - g->t_run) * g->o.rate / (double)NS;
    uint64_t due = now < g->win_end ? (uint64_t)x + 1 : (uint64_t)ceil(x);
    g->st.open_due = due;
    while (g->open_k < due) {
        conn *c = idle_pop(g);
        if (!c)
            break;
        uint64_t t0 = g->t_run + (uint64_t)((double)g->open_k * (double)NS / g->o.rate);
        g->open_k++;
        send_turn(c, t0);
    }
}

static void on_sched(uv_timer_t *t)
{
    sched_pump(t->data);
}

/* The conversation has no more lines, or the server ended it: close (on_closed() opens a new
 * one in the slot while the run lasts, with --churn 1). */
static void conversation_end(conn *c)
{
    conn_close(c, 1000);
}

static void turn_done(conn *c)
{
    lg *g = c->lg;
    uint64_t now = now_ns();
    g->st.turns_done++;
    if (in_window(g, now)) {
        g->st.window_turns++;
        lg_hist_add(&g->st.turn, (now - c->t_sent) / 1000);
        lg_hist_add(&g->st.ack, (c->t_ack - c->t_sent) / 1000);
    }
    c->turn = T_NONE;
    if (++c->line >= g->convs[c->conv].nlines) {
        g->st.finished++;
        c->line = 0;
        if (g->o.churn && g->phase == P_RUN) {
            conversation_end(c);
            return;
        }
    }
    make_available(c);
}

/* ---- receiving ---- */

static void conn_ready(conn *c)
{
    lg *g = c->lg;
    c->state = C_READY;
    c->was_ready = 1;
    if (c->connecting) {
        c->connecting = 0;
        g->connecting--;
    }
    g->st.ready++;
    lg_hist_add(&g->st.hello, (now_ns() - c->t_open) / 1000);
    make_available(c);
    maybe_connect_more(g);
}

/* 1 for a status after which the bot answers no more (docs/protocol.md, status states). */
static int bot_is_done(const char *state)
{
    static const char *const done[] = {"escalated", "queued", "agent_joined", "closed"};
    for (size_t i = 0; i < sizeof(done) / sizeof(done[0]); i++)
        if (strcmp(state, done[i]) == 0)
            return 1;
    return 0;
}

static int on_message(conn *c, const char *json, size_t len)
{
    lg *g = c->lg;
    lg_msg_t m;

    trace(c, "<", json, len);
    if (lg_json_scan(json, len, &m) != 0) {
        g->st.protocol_errors++;
        note_error(g, "server frame is not a JSON object", NULL);
        conn_abort(c);
        return -1;
    }
    if (strcmp(m.type, "message") == 0) {
        if (strcmp(m.from, "customer") == 0)
            return 0;
        if (c->state == C_HELLO && c->got_welcome)
            conn_ready(c);
        else if (c->state == C_READY && c->turn == T_ACKED && (!m.has_seq || m.seq > c->ack_seq))
            turn_done(c);
    } else if (strcmp(m.type, "ack") == 0) {
        if (c->turn == T_SENT && strcmp(m.id, c->pending_id) == 0) {
            c->turn = T_ACKED;
            c->ack_seq = m.has_seq ? m.seq : 0;
            c->t_ack = now_ns();
            g->st.turns_acked++;
        }
    } else if (strcmp(m.type, "welcome") == 0) {
        c->got_welcome = 1;
        c->t_welcome = now_ns();
    } else if (strcmp(m.type, "status") == 0) {
        if (c->state == C_READY && bot_is_done(m.state)) {
            g->st.escalated++;
            c->turn = T_NONE; /* the bot will not answer: not a lost turn */
            conversation_end(c);
        }
    } else if (strcmp(m.type, "error") == 0) {
        lg_count(g->st.errors, &g->st.nerrors, m.code[0] ? m.code : "(none)");
        if (c->state == C_HELLO) {
            g->st.hello_failed++;
            note_error(g, "hello answered with error ", m.code);
            conn_close(c, 1000);
        } else if (c->turn == T_SENT && (!m.id[0] || strcmp(m.id, c->pending_id) == 0)) {
            /* about our message; rate_limited names no id, but only the message is in flight */
            g->st.turns_rejected++;
            c->turn = T_NONE;
            c->resume_at = now_ns() + REJECT_PAUSE_NS; /* tick() lets it go on */
        }
    }
    return 0;
}

static int on_frame(conn *c, const lg_frame_t *f)
{
    lg *g = c->lg;
    g->st.frames_in++;
    switch (f->opcode) {
    case LG_OP_TEXT:
    case LG_OP_BINARY:
        if (f->opcode == LG_OP_BINARY) {
            g->st.protocol_errors++;
            note_error(g, "binary frame from the server", NULL);
        }
        if (f->fin) {
            c->mlen = 0;
            return f->opcode == LG_OP_TEXT ? on_message(c, (const char *)f->payload, f->len) : 0;
        }
        c->mlen = 0;
        __attribute__((fallthrough)); /* the first fragment starts the message */
    case LG_OP_CONT:
        if (c->mlen + f->len > g->o.max_frame) {
            g->st.protocol_errors++;
            conn_abort(c);
            return -1;
        }
        if (c->mlen + f->len > c->mcap) {
            size_t cap = (c->mlen + f->len) * 2;
            unsigned char *p = realloc(c->msg, cap);
            if (!p) {
                conn_abort(c);
                return -1;
            }
            c->msg = p;
            c->mcap = cap;
        }
        memcpy(c->msg + c->mlen, f->payload, f->len);
        c->mlen += f->len;
        if (f->opcode == LG_OP_CONT && f->fin) {
            size_t n = c->mlen;
            c->mlen = 0;
            return on_message(c, (const char *)c->msg, n);
        }
        return 0;
    case LG_OP_PING:
        g->st.pings++;
        return send_frame(c, LG_OP_PONG, f->payload, f->len);
    case LG_OP_PONG:
        return 0;
    case LG_OP_CLOSE: {
        char code[16] = "1005"; /* no status code present */
        if (f->len >= 2)
            snprintf(code, sizeof(code), "%u", (unsigned)(f->payload[0] << 8 | f->payload[1]));
        c->got_close = 1;
        if (!c->we_closed) {
            g->st.closed_by_server++;
            lg_count(g->st.closes, &g->st.ncloses, code);
            conn_close(c, f->len >= 2 ? (f->payload[0] << 8 | f->payload[1]) : 1000);
        }
        return 0; /* the server closes the TCP connection next; on_read sees EOF */
    }
    }
    return 0;
}

static void send_hello(conn *c)
{
    lg *g = c->lg;
    int n = snprintf(g->jbuf, sizeof(g->jbuf),
                     "{\"type\":\"hello\",\"customer\":{\"id\":\"lg%d-%d-%u\",\"name\":"
                     "\"压测客户%d\",\"channel\":\"web\"}}",
                     g->o.id, c->slot, c->gen, c->slot);
    send_text(c, g->jbuf, (size_t)n);
}

/* Consumes what it can of data[0..len).  Returns the bytes used, or -1 when c was aborted. */
static long process(conn *c, const unsigned char *data, size_t len)
{
    lg *g = c->lg;
    size_t off = 0;
    if (c->state == C_UPGRADING) {
        char err[160];
        int r = lg_ws_response((const char *)data, len, c->key, g->o.protocol, err, sizeof(err));
        if (r == 0)
            return 0;
        if (r < 0) {
            g->st.upgrade_failed++;
            note_error(g, "upgrade: ", err);
            conn_abort(c);
            return -1;
        }
        off = (size_t)r;
        c->state = C_HELLO;
        send_hello(c);
    }
    while (off < len && !uv_is_closing((uv_handle_t *)&c->tcp)) {
        lg_frame_t f;
        const char *err = NULL;
        long n = lg_ws_decode(data + off, len - off, g->o.max_frame, &f, &err);
        if (n == 0)
            break;
        if (n < 0) {
            g->st.protocol_errors++;
            note_error(g, "bad frame from the server: ", err);
            conn_abort(c);
            return -1;
        }
        off += (size_t)n;
        if (on_frame(c, &f) != 0)
            return -1;
    }
    return uv_is_closing((uv_handle_t *)&c->tcp) ? -1 : (long)off;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    *buf = uv_buf_init((char *)c->lg->rdbuf, sizeof(c->lg->rdbuf));
}

static int keep(conn *c, const unsigned char *p, size_t n)
{
    if (n > c->rcap) {
        size_t cap = n < 4096 ? 4096 : n * 2;
        unsigned char *q = malloc(cap);
        if (!q)
            return -1;
        free(c->rbuf);
        c->rbuf = q;
        c->rcap = cap;
    }
    memmove(c->rbuf, p, n);
    c->rlen = n;
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    lg *g = c->lg;
    const unsigned char *data = (const unsigned char *)buf->base;
    size_t len = (size_t)nread;
    long used;

    if (nread == 0)
        return;
    if (nread < 0) {
        if (c->state == C_UPGRADING) {
            g->st.upgrade_failed++;
            note_error(g, "upgrade: connection closed before 101", NULL);
        } else if (c->state == C_HELLO && !c->got_close) {
            g->st.hello_failed++;
            note_error(g, "connection closed before the greeting", NULL);
        } else if (!c->we_closed && !c->got_close) {
            g->st.closed_by_server++;
            lg_count(g->st.closes, &g->st.ncloses, nread == UV_EOF ? "eof" : "reset");
        }
        conn_abort(c);
        return;
    }
    g->st.bytes_in += len;
    if (c->rlen) { /* append to the partial frame we kept */
        if (c->rlen + len > c->rcap) {
            size_t cap = (c->rlen + len) * 2;
            unsigned char *p = realloc(c->rbuf, cap);
            if (!p) {
                conn_abort(c);
                return;
            }
            c->rbuf = p;
            c->rcap = cap;
        }
        memcpy(c->rbuf + c->rlen, data, len);
        c->rlen += len;
        data = c->rbuf;
        len = c->rlen;
    }
    used = process(c, data, len);
    if (used < 0)
        return;
    if ((size_t)used == len) {
        c->rlen = 0;
        if (c->rcap > 65536) {
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
    } else if (keep(c, data + used, len - (size_t)used) != 0) {
        conn_abort(c);
    }
}

/* ---- connecting and closing ---- */

static void enqueue(lg *g, conn *c)
{
    if (c->queued || c->state != C_FREE)
        return;
    c->queued = 1;
    g->queue[(g->q_head + g->q_len) % g->o.conns] = c->slot;
    g->q_len++;
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->data;
    lg *g = c->lg;
    char head[512];

    if (status == UV_ECANCELED)
        return;
    if (status < 0) {
        g->st.connect_failed++;
        note_error(g, "connect: ", uv_strerror(status));
        conn_abort(c);
        return;
    }
    c->state = C_UPGRADING;
    lg_ws_make_key(&g->rng, c->key);
    int n =
        lg_ws_request(head, sizeof(head), g->o.host, g->o.port, g->o.path, g->o.protocol, c->key);
    if (n < 0 || uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        g->st.connect_failed++;
        conn_abort(c);
        return;
    }
    write_raw(c, (const unsigned char *)head, (size_t)n);
}

static void on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    lg *g = c->lg;

    g->open--;
    if (c->connecting) {
        c->connecting = 0;
        g->connecting--;
    }
    if (c->turn == T_SENT)
        g->st.turns_closed_unacked++;
    else if (c->turn == T_ACKED)
        g->st.turns_closed_unanswered++;
    idle_remove(g, c);
    free(c->rbuf);
    free(c->msg);
    int was_ready = c->was_ready;
    unsigned gen = c->gen;
    memset((char *)c + offsetof(conn, state), 0, sizeof(*c) - offsetof(conn, state));
    c->state = C_FREE;
    c->gen = gen + 1;
    if (g->phase == P_RUN && g->o.churn) { /* keep --conns conversations going */
        if (was_ready)
            enqueue(g, c);
        else
            c->retry_at = now_ns() + RECONNECT_PAUSE_NS; /* it never started: not at once */
    }
    maybe_connect_more(g);
}

static void conn_abort(conn *c)
{
    if (c->state == C_FREE || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void conn_close(conn *c, int code)
{
    unsigned char payload[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    if (c->state == C_FREE || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->state < C_HELLO || c->state == C_CLOSING) {
        if (c->state < C_HELLO)
            conn_abort(c);
        return;
    }
    if (!c->got_close)
        c->we_closed = 1;
    c->state = C_CLOSING;
    c->t_close = now_ns();
    idle_remove(c->lg, c);
    send_frame(c, LG_OP_CLOSE, payload, 2);
}

/*
 * The socket for a conversation, bound to source address 127.0.0.(2 + k) when --source-ips is
 * not 0.  With one source address every connect() makes the kernel hunt for a free ephemeral
 * port among all those in use towards the same server address (tens of ms of system time per
 * connect once ~15,000 are open); with several, the same port can serve each source address.
 * IP_BIND_ADDRESS_NO_PORT leaves the port to connect().  Returns 0 or a libuv error; on error
 * the handle is either not initialised (init failed) or closed by the caller.
 */
static int open_socket(lg *g, conn *c, int *initialised)
{
    struct sockaddr_in src;
    uv_os_fd_t fd;
    int one = 1, rc;

    *initialised = 0;
    if (g->o.source_ips == 0)
        return uv_tcp_init(g->loop, &c->tcp) == 0 ? (*initialised = 1, 0) : UV_EMFILE;
    if ((rc = uv_tcp_init_ex(g->loop, &c->tcp, AF_INET)) != 0)
        return rc;
    *initialised = 1;
    if ((rc = uv_fileno((uv_handle_t *)&c->tcp, &fd)) != 0)
        return rc;
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) != 0)
        return uv_translate_sys_error(errno);
    memset(&src, 0, sizeof(src));
    src.sin_family = AF_INET;
    src.sin_addr.s_addr =
        htonl(0x7F000002u + (uint32_t)((c->slot + g->o.id * 7) % g->o.source_ips));
    return uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
}

static void start_connect(lg *g, conn *c)
{
    int rc, initialised;
    memset(&c->tcp, 0, sizeof(c->tcp));
    rc = open_socket(g, c, &initialised);
    if (!initialised) {
        g->st.connects++;
        g->st.connect_failed++;
        note_error(g, "socket: ", uv_strerror(rc));
        if (g->phase == P_RUN && g->o.churn)
            c->retry_at = now_ns() + RECONNECT_PAUSE_NS;
        return;
    }
    c->tcp.data = c;
    c->creq.data = c;
    c->lg = g;
    c->state = C_CONNECTING;
    c->connecting = 1;
    c->conv = (int)((unsigned)(c->slot * 7919 + c->gen * 31 + g->o.id * 13) % (unsigned)g->nconvs);
    c->line = 0;
    c->t_open = now_ns();
    g->connecting++;
    g->open++;
    g->st.connects++;
    if (rc == 0)
        uv_tcp_nodelay(&c->tcp, 1);
    if (rc == 0)
        rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g->addr, on_connect);
    if (rc != 0) {
        g->st.connect_failed++;
        note_error(g, "connect: ", uv_strerror(rc));
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}

static void maybe_connect_more(lg *g)
{
    if (g->phase > P_RUN)
        return;
    while (g->connecting < g->o.connect_concurrency && g->q_len > 0) {
        int slot = g->queue[g->q_head];
        g->q_head = (g->q_head + 1) % g->o.conns;
        g->q_len--;
        conn *c = &g->conns[slot];
        c->queued = 0;
        if (c->state == C_FREE)
            start_connect(g, c);
    }
}

/* ---- phases ---- */

static void write_ready_file(lg *g, int ready)
{
    char tmp[4096];
    FILE *f;
    if (!g->o.ready_file)
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", g->o.ready_file);
    if (!(f = fopen(tmp, "w"))) {
        fprintf(stderr, "loadgen[%d]: %s: %s\n", g->o.id, tmp, strerror(errno));
        return;
    }
    fprintf(f, "{\"id\":%d,\"ready\":%d,\"conns\":%d,\"connect_s\":%.3f}\n", g->o.id, ready,
            g->o.conns, (double)(g->t_connect_done - g->t_start) / NS);
    fclose(f);
    if (rename(tmp, g->o.ready_file) != 0)
        fprintf(stderr, "loadgen[%d]: %s: %s\n", g->o.id, g->o.ready_file, strerror(errno));
}

static int count_ready(lg *g)
{
    int n = 0;
    for (int i = 0; i < g->o.conns; i++)
        n += g->conns[i].state == C_READY;
    return n;
}

static void begin_run(lg *g)
{
    uint64_t now = now_ns();
    g->phase = P_RUN;
    g->t_run = now;
    g->ready_at_go = count_ready(g);
    if (g->ready_at_go == 0) {
        g->aborted = 1;
        g->note = "no conversation was ready";
        begin_close(g);
        return;
    }
    if (g->o.mode == LG_MODE_IDLE) {
        g->win_start = g->win_end = now;
        g->t_deadline = now + (uint64_t)(g->o.hold_s * NS);
        return;
    }
    g->win_start = now + (uint64_t)(g->o.warmup_s * NS);
    g->win_end = g->win_start + (uint64_t)(g->o.duration_s * NS);
    g->t_deadline = g->win_end;
    if (g->o.mode == LG_MODE_OPEN)
        uv_timer_start(&g->sched, on_sched, 1, 1);
    for (int i = 0; i < g->o.conns; i++)
        make_available(&g->conns[i]);
}

static void begin_drain(lg *g)
{
    uint64_t now = now_ns();
    if (g->o.mode == LG_MODE_OPEN) {
        sched_pump(g);
        uv_timer_stop(&g->sched);
        g->st.open_unsent = g->st.open_due - g->open_k;
    }
    g->phase = P_DRAIN;
    g->t_run_end = now;
    g->t_deadline = now + (uint64_t)(g->o.drain_s * NS);
    while (idle_pop(g))
        ;
}

static int open_turns(lg *g)
{
    int n = 0;
    for (int i = 0; i < g->o.conns; i++)
        n += g->conns[i].state != C_FREE && g->conns[i].turn != T_NONE;
    return n;
}

static void begin_close(lg *g)
{
    for (int i = 0; i < g->o.conns; i++) { /* what is still open now is lost */
        conn *c = &g->conns[i];
        if (c->state == C_FREE)
            continue;
        if (c->turn == T_SENT)
            g->st.turns_lost_unacked++;
        else if (c->turn == T_ACKED)
            g->st.turns_lost_unanswered++;
        c->turn = T_NONE;
    }
    g->open_at_end = g->open;
    if (g->phase == P_RUN)
        g->t_run_end = now_ns();
    g->phase = P_CLOSE;
    g->t_deadline = now_ns() + END_GRACE_NS;
    uv_timer_stop(&g->sched);
    for (int i = 0; i < g->o.conns; i++) {
        conn *c = &g->conns[i];
        c->retry_at = 0;
        if (c->state != C_FREE)
            conn_close(c, 1000);
    }
}

static void finish(lg *g)
{
    g->phase = P_DONE;
    for (int i = 0; i < g->o.conns; i++)
        if (g->conns[i].state != C_FREE)
            conn_abort(&g->conns[i]);
    uv_close((uv_handle_t *)&g->tick, NULL);
    uv_close((uv_handle_t *)&g->sched, NULL);
    uv_close((uv_handle_t *)&g->sigusr1, NULL);
    uv_close((uv_handle_t *)&g->sigint, NULL);
    uv_close((uv_handle_t *)&g->sigterm, NULL);
}

static void connect_phase_done(lg *g)
{
    g->t_connect_done = now_ns();
    write_ready_file(g, count_ready(g));
    if (g->o.wait_go) {
        g->phase = P_WAIT;
        g->t_wait_until = g->t_connect_done + (uint64_t)(g->o.wait_timeout_s * NS);
    } else {
        begin_run(g);
    }
}

static void sweep_conns(lg *g, uint64_t now)
{
    uint64_t ct = (uint64_t)(g->o.connect_timeout_s * NS),
             gt = (uint64_t)(g->o.greeting_timeout_s * NS),
             tt = (uint64_t)(g->o.turn_timeout_s * NS);
    for (int i = 0; i < g->o.conns; i++) {
        conn *c = &g->conns[i];
        if (c->state == C_FREE) {
            if (c->retry_at && now >= c->retry_at && g->phase == P_RUN) {
                c->retry_at = 0;
                enqueue(g, c);
            }
            continue;
        }
        if (uv_is_closing((uv_handle_t *)&c->tcp))
            continue;
        if (c->state == C_HELLO && c->got_welcome && now - c->t_welcome > gt) {
            g->st.no_greeting++;
            conn_ready(c);
        } else if (c->state < C_READY && now - c->t_open > ct) {
            g->st.connect_timeouts++;
            conn_abort(c);
        } else if (c->state == C_CLOSING && now - c->t_close > CLOSE_GRACE_NS) {
            conn_abort(c);
        } else if (c->state == C_READY && c->turn != T_NONE && now - c->t_sent > tt) {
            if (c->turn == T_SENT)
                g->st.turns_timeout_unacked++;
            else
                g->st.turns_timeout_unanswered++;
            c->turn = T_NONE;
            make_available(c);
        } else if (c->state == C_READY && c->resume_at && now >= c->resume_at) {
            c->resume_at = 0;
            make_available(c);
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    lg *g = t->data;
    uint64_t now = now_ns();

    if (g->phase == P_DONE)
        return;
    if (g->phase < P_CLOSE && now - g->t_start >= (uint64_t)(g->o.max_runtime_s * NS)) {
        g->aborted = 1;
        g->note = "--max-runtime reached";
        if (g->phase == P_RUN && g->o.mode == LG_MODE_OPEN)
            g->st.open_unsent = g->st.open_due - g->open_k;
        begin_close(g);
    }
    sweep_conns(g, now);
    maybe_connect_more(g);
    switch (g->phase) {
    case P_CONNECT:
        if (g->q_len == 0 && g->connecting == 0)
            connect_phase_done(g);
        break;
    case P_WAIT:
        if (now >= g->t_wait_until) {
            g->aborted = 1;
            g->note = "no go signal (SIGUSR1) before --wait-timeout";
            begin_close(g);
        }
        break;
    case P_RUN:
        if (now >= g->t_deadline) {
            if (g->o.mode == LG_MODE_IDLE) {
                begin_close(g);
            } else {
                begin_drain(g);
            }
        }
        break;
    case P_DRAIN:
        if (open_turns(g) == 0 || now >= g->t_deadline)
            begin_close(g);
        break;
    case P_CLOSE:
        if (g->open == 0 || now >= g->t_deadline)
            finish(g);
        break;
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    lg *g = s->data;
    if (signum == SIGUSR1) {
        if (g->phase == P_WAIT)
            begin_run(g);
        else if (g->phase == P_RUN && g->o.mode == LG_MODE_IDLE)
            begin_close(g);
        else if (g->phase == P_CONNECT)
            g->o.wait_go = 0; /* go as soon as connected */
        return;
    }
    if (g->phase >= P_CLOSE)
        return;
    g->aborted = 1;
    g->note = "stopped by a signal";
    if (g->phase == P_RUN && g->o.mode == LG_MODE_OPEN)
        g->st.open_unsent = g->st.open_due - g->open_k;
    begin_close(g);
}

/* ---- main ---- */

static int write_report(lg *g)
{
    struct rusage ru;
    lg_report_t r;
    FILE *f = stdout;
    char tmp[4096];
    int rc = 0;

    getrusage(RUSAGE_SELF, &ru);
    memset(&r, 0, sizeof(r));
    r.mode = g->o.mode_name;
    r.target = g->target;
    r.id = g->o.id;
    r.conns = g->o.conns;
    r.rate = g->o.rate;
    r.warmup_s = g->o.mode == LG_MODE_IDLE ? 0 : g->o.warmup_s;
    r.duration_s = g->o.mode == LG_MODE_IDLE ? g->o.hold_s : g->o.duration_s;
    if (g->o.mode != LG_MODE_IDLE && g->t_run) {
        uint64_t end = g->win_end;
        if (g->t_run_end && g->t_run_end < end) /* cut short: the window is what ran */
            end = g->t_run_end;
        r.window_s = end > g->win_start ? (double)(end - g->win_start) / NS : 0;
    }
    r.connect_s = g->t_connect_done ? (double)(g->t_connect_done - g->t_start) / NS : 0;
    r.ready_at_go = g->ready_at_go;
    r.open_at_end = g->open_at_end;
    r.aborted = g->aborted;
    r.note = g->note;
    r.cpu_user_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    r.cpu_sys_s = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    r.max_rss_kb = ru.ru_maxrss;
    r.st = &g->st;
    if (g->o.out) {
        snprintf(tmp, sizeof(tmp), "%s.tmp", g->o.out);
        if (!(f = fopen(tmp, "w"))) {
            fprintf(stderr, "loadgen: %s: %s\n", tmp, strerror(errno));
            return -1;
        }
    }
    lg_report_json(f, &r);
    if (g->o.out) {
        if (fclose(f) != 0 || rename(tmp, g->o.out) != 0) {
            fprintf(stderr, "loadgen: %s: %s\n", g->o.out, strerror(errno));
            rc = -1;
        }
    } else {
        fflush(stdout);
    }
    return rc;
}

int main(int argc, char **argv)
{
    lg *g = calloc(1, sizeof(*g));
    uv_loop_t loop;
    int rc = 1;
    struct rlimit rl;

    if (!g)
        return 1;
    if ((rc = lg_opts_parse(&g->o, argc, argv)) != 0) {
        free(g);
        return rc > 0 ? 0 : 2;
    }
    rc = 1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)g->o.conns + 32) {
        fprintf(stderr, "loadgen: --conns %d needs %d open files, ulimit -n is %llu\n", g->o.conns,
                g->o.conns + 32, (unsigned long long)rl.rlim_cur);
        free(g);
        return 2;
    }
    if (uv_ip4_addr(g->o.host, g->o.port, &g->addr) != 0) {
        fprintf(stderr, "loadgen: --host %s is not an IPv4 address\n", g->o.host);
        free(g);
        return 2;
    }
    snprintf(g->target, sizeof(g->target), "%s:%d%s", g->o.host, g->o.port, g->o.path);
    if (g->o.conversations && lg_conversations_load(g->o.conversations, &g->convs, &g->nconvs) != 0)
        goto out;
    if (!g->o.conversations) { /* idle: the lines are never sent */
        static char dummy[] = "-";
        static char *lines[] = {dummy};
        static lg_conv_t one = {"none", lines, 1};
        g->convs = &one;
        g->nconvs = 1;
    }
    g->conns = calloc((size_t)g->o.conns, sizeof(conn));
    g->queue = calloc((size_t)g->o.conns, sizeof(int));
    if (!g->conns || !g->queue) {
        fprintf(stderr, "loadgen: out of memory for %d conversations\n", g->o.conns);
        goto out;
    }
    g->rng = (uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)g->o.id) | 1;
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    g->loop = &loop;
    uv_timer_init(&loop, &g->tick);
    uv_timer_init(&loop, &g->sched);
    g->tick.data = g->sched.data = g;
    uv_signal_init(&loop, &g->sigusr1);
    uv_signal_init(&loop, &g->sigint);
    uv_signal_init(&loop, &g->sigterm);
    g->sigusr1.data = g->sigint.data = g->sigterm.data = g;
    uv_signal_start(&g->sigusr1, on_signal, SIGUSR1);
    uv_signal_start(&g->sigint, on_signal, SIGINT);
    uv_signal_start(&g->sigterm, on_signal, SIGTERM);
    for (int i = 0; i < g->o.conns; i++) {
        g->conns[i].slot = i;
        g->conns[i].lg = g;
        enqueue(g, &g->conns[i]);
    }
    g->t_start = now_ns();
    g->phase = P_CONNECT;
    maybe_connect_more(g);
    uv_timer_start(&g->tick, on_tick, 100, 100);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "loadgen: loop closed with handles open\n");
    rc = write_report(g) == 0 ? 0 : 1;
out:
    if (g->o.conversations)
        lg_conversations_free(g->convs, g->nconvs);
    free(g->conns);
    free(g->queue);
    free(g);
    return rc;
}
