/*
 * loadgen.h - shared parts of the redress load generator (bench/loadgen*.c) and the echo
 * baseline server (bench/echo_server.c).
 *
 *   loadgen_ws.c     WebSocket client codec (RFC 6455: upgrade request and response check,
 *                    masked client frames, server frame decoding), SHA-1 and base64 for the
 *                    Sec-WebSocket-Accept check, a flat JSON scanner and a JSON string escaper
 *   loadgen_stats.c  latency histograms and the JSON report
 *   loadgen_conf.c   command-line options and the conversations (bench/conversations)
 *   loadgen.c        the libuv driver: connections, the idle / closed-loop / open-loop modes
 *
 * Nothing here allocates except where a comment says so; every function is pure and usable
 * from a unit test (bench/loadgen_test.c).
 */
#ifndef REDRESS_LOADGEN_H
#define REDRESS_LOADGEN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- SHA-1 and base64 (loadgen_ws.c) ---- */

/* SHA-1 of data[0..len) into out. */
void lg_sha1(const void *data, size_t len, unsigned char out[20]);

/* Standard base64 (with padding) of in[0..len) into out, NUL-terminated.  Returns the length
 * written, or 0 when out (outlen bytes) is too small. */
size_t lg_base64(const unsigned char *in, size_t len, char *out, size_t outlen);

/* ---- WebSocket client codec (loadgen_ws.c) ---- */

#define LG_WS_KEY_LEN 24 /* base64 of 16 random bytes */

enum {
    LG_OP_CONT = 0,
    LG_OP_TEXT = 1,
    LG_OP_BINARY = 2,
    LG_OP_CLOSE = 8,
    LG_OP_PING = 9,
    LG_OP_PONG = 10
};

/* Fills key (LG_WS_KEY_LEN + 1 bytes) with the base64 of 16 bytes drawn from *rng. */
void lg_ws_make_key(uint64_t *rng, char key[LG_WS_KEY_LEN + 1]);

/* Writes the Sec-WebSocket-Accept value for key into out (29 bytes with NUL). */
void lg_ws_accept(const char *key, char out[29]);

/* Writes the HTTP upgrade request into buf.  Returns its length, or -1 when it does not fit. */
int lg_ws_request(char *buf, size_t buflen, const char *host, int port, const char *path,
                  const char *protocol, const char *key);

/*
 * Checks the server's answer to the upgrade in buf[0..len).  Returns the length of the HTTP
 * head (the bytes after it are WebSocket frames) when it is a valid 101 with the right
 * Sec-WebSocket-Accept and subprotocol; 0 when the head is not complete yet; -1 when it is
 * refused or malformed, with a reason in err.
 */
int lg_ws_response(const char *buf, size_t len, const char *key, const char *protocol, char *err,
                   size_t errlen);

/* Bytes a masked client frame with a payload of len bytes takes. */
size_t lg_ws_frame_size(size_t len);

/* Writes one complete (FIN) masked client frame into out (lg_ws_frame_size(len) bytes).
 * Returns the number of bytes written. */
size_t lg_ws_encode(unsigned char *out, int opcode, const void *payload, size_t len, uint32_t mask);

typedef struct lg_frame {
    int fin;
    int opcode;
    const unsigned char *payload; /* points into the decoded buffer */
    size_t len;
} lg_frame_t;

/*
 * Decodes one server frame from buf[0..len).  Returns the bytes it takes (> 0) and fills f;
 * 0 when the frame is not complete yet; -1 on a protocol violation (a masked server frame,
 * reserved bits, an unknown opcode, a fragmented or over-long control frame, a payload over
 * max_payload), with a reason in err.
 */
long lg_ws_decode(const unsigned char *buf, size_t len, size_t max_payload, lg_frame_t *f,
                  const char **err);

/* ---- JSON (loadgen_ws.c) ---- */

/*
 * The top-level fields of one protocol frame that the load generator looks at.  Strings longer
 * than their field are cut (and still NUL-terminated); `text` is the raw (still escaped) span
 * of the "text" string inside the scanned buffer, for the echo server.
 */
typedef struct lg_msg {
    char type[16];
    char id[72];
    char from[16];
    char state[24];
    char code[32];
    long long seq;
    int has_seq;
    const char *text;
    size_t text_len;
} lg_msg_t;

/* Scans a flat JSON object in s[0..len) (nested values are skipped).  Returns 0, or -1 when s
 * is not a well-formed JSON object. */
int lg_json_scan(const char *s, size_t len, lg_msg_t *m);

/* Writes in as the body of a JSON string (no quotes), NUL-terminated, into out.  Returns the
 * length written, or -1 when out (outlen bytes, including the NUL) is too small. */
long lg_json_escape(char *out, size_t outlen, const char *in);

/* ---- latency histogram (loadgen_stats.c) ---- */

/*
 * Log-linear buckets of microseconds: exact below 64, then 32 buckets per power of two (at most
 * 3.2 % wide), up to 2^40 us.  Histograms add up bucket by bucket (lg_hist_merge).
 */
#define LG_HIST_BUCKETS (64 + 34 * 32) /* up to msb 39 */

typedef struct lg_hist {
    uint64_t count;
    uint64_t sum_us;
    uint64_t max_us;
    uint64_t bucket[LG_HIST_BUCKETS];
} lg_hist_t;

/* Adds one value (microseconds). */
void lg_hist_add(lg_hist_t *h, uint64_t us);

/* Adds every bucket of b into a. */
void lg_hist_merge(lg_hist_t *a, const lg_hist_t *b);

/* Value at quantile q (0..1): the upper bound of the bucket holding it, capped at max_us;
 * 0 for an empty histogram. */
uint64_t lg_hist_quantile(const lg_hist_t *h, double q);

/* Bucket index of a value, and the inclusive range [lo, hi] a bucket covers. */
int lg_hist_index(uint64_t us);
void lg_hist_range(int index, uint64_t *lo, uint64_t *hi);

/* Writes h as a JSON object: count, mean, p50, p90, p99, p999, max (us) and the non-empty
 * buckets as [[lo, hi, count], ...]. */
void lg_hist_json(FILE *f, const lg_hist_t *h);

/* ---- options and conversations (loadgen_conf.c) ---- */

enum { LG_MODE_IDLE, LG_MODE_CLOSED, LG_MODE_OPEN };

typedef struct lg_opts {
    const char *host;
    int port;
    const char *path, *protocol;
    int mode; /* LG_MODE_* */
    const char *mode_name;
    int conns;
    double rate, warmup_s, duration_s, drain_s, hold_s;
    const char *conversations;
    int connect_concurrency;
    double connect_timeout_s, greeting_timeout_s, turn_timeout_s, wait_timeout_s, max_runtime_s;
    int churn, wait_go, id;
    int trace;      /* --trace: slot 0's frames on stderr */
    int source_ips; /* bind to 127.0.0.2 .. 127.0.0.(1 + n); 0: the kernel picks */
    const char *ready_file, *out;
    size_t max_frame;
} lg_opts_t;

/* Fills o from argv (getopt_long; strings point into argv).  Returns 0; 1 when --help was
 * printed; -1 on a bad flag, with a message on stderr naming it. */
int lg_opts_parse(lg_opts_t *o, int argc, char **argv);

typedef struct lg_conv {
    char name[64];
    char **lines; /* customer lines, JSON-escaped */
    int nlines;
} lg_conv_t;

/* Loads every DIR/ *.txt as one conversation.  Returns 0 with *out (n entries, freed by
 * lg_conversations_free) and *n; -1 with a message on stderr naming the file and line. */
int lg_conversations_load(const char *dir, lg_conv_t **out, int *n);
void lg_conversations_free(lg_conv_t *convs, int n);

/* ---- counters and the report (loadgen_stats.c) ---- */

#define LG_MAX_CODES 16

/* A named counter (error codes, close codes); the last slot collects "other". */
typedef struct lg_counter {
    char name[32];
    uint64_t n;
} lg_counter_t;

/* Adds one to the counter called name in tab[0..*n), adding it when new (at most
 * LG_MAX_CODES; then it counts as "other"). */
void lg_count(lg_counter_t *tab, int *n, const char *name);

typedef struct lg_stats {
    /* conversations */
    uint64_t connects;         /* TCP connects started */
    uint64_t ready;            /* conversations that got welcome + greeting */
    uint64_t connect_failed;   /* TCP connect refused or failed */
    uint64_t upgrade_failed;   /* HTTP upgrade refused, malformed, or EOF before 101 */
    uint64_t hello_failed;     /* error frame or close instead of welcome */
    uint64_t connect_timeouts; /* not ready within --connect-timeout */
    uint64_t no_greeting;      /* welcome but no bot message within --greeting-timeout */
    uint64_t finished;         /* conversations that ran through all their lines */
    uint64_t escalated;        /* ended by status queued / agent_joined / closed */
    uint64_t closed_by_server; /* close frame or EOF we did not ask for */
    uint64_t protocol_errors;  /* bad frame, bad JSON, bad upgrade answer */
    /* turns: message sent -> ack -> first bot message after the ack */
    uint64_t turns_sent, turns_acked, turns_done;
    uint64_t turns_rejected; /* answered with an error frame naming the message id */
    uint64_t turns_timeout_unacked, turns_timeout_unanswered; /* over --turn-timeout */
    uint64_t turns_lost_unacked, turns_lost_unanswered;       /* still open at the end */
    uint64_t turns_closed_unacked, turns_closed_unanswered;   /* socket closed under them */
    uint64_t window_turns;          /* turns done inside the measurement window */
    uint64_t open_due, open_unsent; /* open loop: sends scheduled, and never sent */
    /* traffic */
    uint64_t frames_in, frames_out, bytes_in, bytes_out, pings;
    lg_counter_t errors[LG_MAX_CODES]; /* error frames by code */
    int nerrors;
    lg_counter_t closes[LG_MAX_CODES]; /* close codes the server sent */
    int ncloses;
    lg_hist_t turn;  /* t0 -> first bot message after the ack, turns done in the window */
    lg_hist_t ack;   /* t0 -> ack, same turns */
    lg_hist_t hello; /* TCP connect start -> greeting */
} lg_stats_t;

typedef struct lg_report {
    const char *mode;
    const char *target; /* host:port/path */
    int id;
    int conns;
    double rate; /* open loop: turns/s asked of this process */
    double warmup_s, duration_s, window_s, connect_s;
    int ready_at_go; /* conversations ready when the run phase began */
    int open_at_end; /* sockets open when the run phase ended */
    int aborted;
    const char *note; /* why the run stopped early, or NULL */
    double cpu_user_s, cpu_sys_s;
    long max_rss_kb;
    const lg_stats_t *st;
} lg_report_t;

/* Writes the whole report as one JSON object (and a newline) to f. */
void lg_report_json(FILE *f, const lg_report_t *r);

#endif
