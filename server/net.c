/*
 * net.c - the server's life: ordered start-up, the loop, ordered shutdown.
 *
 * One libuv loop (server_t.loop) runs everything.  libwebsockets joins it as a foreign loop
 * (LWS_SERVER_OPTION_LIBUV + foreign_loops), so lws sockets, lws timers, our signals and
 * timers, and the store's completion handle all share one thread.
 *
 * Start-up (server_run):  open-file limit -> loop -> store (open, migrate, writer thread) ->
 *   auth -> sessions -> flow engine -> agent queue -> complaint records -> webhooks -> lws
 *   context (listen) ->
 *   signals + 4 Hz tick (and sweep_more, the session sweep's next slice when one was cut
 *   short) + idle-time collection of the flow VM -> "listening on ..." on stdout -> uv_run
 * Shutdown (on_signal -> begin_shutdown): stop accepting; lws_context_destroy() closes every
 *   socket (CLOSED callbacks detach sessions) and its uv handles; sessions stop starting turns;
 *   store_close() drains the write queue; our handles close; uv_run returns when nothing is
 *   left; then sessions are freed and the loop closed.
 */
#include "server.h"

#include "agent.h"
#include "agent_store.h"
#include "auth.h"
#include "complaint.h"
#include "flow.h"
#include "http.h"
#include "kb.h"
#include "log.h"
#include "session.h"
#include "util.h"
#include "webhook.h"
#include "ws.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static struct lws_protocols protocols[5];
static const lws_retry_bo_t no_validity_checks; /* all zero: see start_lws */

server_t *server_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    log_write(level == LLL_ERR    ? LOG_ERROR
              : level == LLL_WARN ? LOG_WARN
                                  : LOG_INFO,
              "lws", "%.*s", (int)n, line);
}

#define SHUTDOWN_GRACE_MS 2000
#define GC_SLICE_NS 1000000 /* longest idle-time collection slice: a message waits at most this */

static void on_tick(uv_timer_t *t);
#define SWEEP_MORE_MS 5 /* the next slice of a session sweep cut short (session.c) */

/* Second step of shutdown: every chat socket has closed (or the grace period ran out). */
static void finish_shutdown(server_t *srv)
{
    session_mgr_stop(srv->sessions);
    session_mgr_set_flow(srv->sessions, NULL);
    flow_engine_destroy(srv->flow);
    srv->flow = NULL;
    /* before lws: deliveries in flight are abandoned (their rows stay pending) */
    webhook_close_store(srv->webhooks);
    ws_flush_stop(&srv->flush);    /* what is listed goes out; later frames wait for WRITEABLE */
    lws_context_destroy(srv->lws); /* first phase: sockets close, uv handles start closing */
    auth_set_logout_hook(srv->auth, NULL, NULL);
    auth_close(srv->auth); /* before the store: it holds statements on the reader */
    srv->auth = NULL;
    agent_mgr_close_store(srv->agents); /* the same */
    complaint_mgr_close_store(srv->complaints);
    store_close(srv->store);
    srv->store = NULL;
    uv_timer_stop(&srv->tick);
    uv_close((uv_handle_t *)&srv->tick, NULL);
    uv_close((uv_handle_t *)&srv->sweep_more, NULL);
    uv_close((uv_handle_t *)&srv->pass_end, NULL);
    uv_close((uv_handle_t *)&srv->gc_idle, NULL);
    uv_signal_stop(&srv->sigint);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_signal_stop(&srv->sigterm);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
}

/* First step of shutdown: stop accepting, tell every client (close 1001), let them go. */
static void begin_shutdown(server_t *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    srv->stop_deadline_ms = util_now_ms() + SHUTDOWN_GRACE_MS;
    log_notice("server", "shutting down");
    ws_close_all(srv, 1001, "server shutting down");
    uv_timer_stop(&srv->sweep_more);
    uv_timer_stop(&srv->tick);
    uv_timer_start(&srv->tick, on_tick, 20, 20);
}

static void on_signal(uv_signal_t *h, int signum)
{
    log_notice("server", "signal %d", signum);
    begin_shutdown(h->data);
}

static void on_sweep_more(uv_timer_t *t)
{
    server_t *srv = t->data;
    if (!srv->stopping && session_mgr_sweep(srv->sessions))
        uv_timer_start(t, on_sweep_more, SWEEP_MORE_MS, 0);
}

static void on_tick(uv_timer_t *t)
{
    server_t *srv = t->data;
    if (srv->stopping) {
        if (srv->nconns == 0 || util_now_ms() >= srv->stop_deadline_ms)
            finish_shutdown(srv);
        return;
    }
    ws_sweep(srv);
    if (session_mgr_sweep(srv->sessions))
        uv_timer_start(&srv->sweep_more, on_sweep_more, SWEEP_MORE_MS, 0);
    agent_mgr_tick(srv->agents);
    complaint_mgr_tick(srv->complaints);
    webhook_tick(srv->webhooks);
    flow_engine_gc_quiet(srv->flow, util_now_ms()); /* pass_end then starts the slices */
}

/*
 * Idle-time collection (flow_gc.c).  Before each poll, pass_end starts gc_idle when the flow
 * VM owes collection work; an active idle handle makes the poll not block, and gc_idle runs a
 * slice of at most GC_SLICE_NS each pass in which no socket, timer or store completion is
 * ready (a poll of the loop's epoll descriptor says so without taking its events).  It stops
 * itself when the cycle is done, and the loop sleeps in poll again.
 */
static int io_ready(uv_loop_t *loop)
{
    struct pollfd p = {.fd = uv_backend_fd(loop), .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

static void on_gc_idle(uv_idle_t *h)
{
    server_t *srv = h->data;
    if (srv->stopping || !flow_engine_gc_due(srv->flow)) {
        uv_idle_stop(h);
        return;
    }
    if (!io_ready(&srv->loop) && !flow_engine_gc_slice(srv->flow, GC_SLICE_NS))
        uv_idle_stop(h);
}

/* Before each poll: the knowledge-base snapshot this pass's searches shared ends (see
 * flow_engine_kb_hold), and gc_idle starts when the flow VM owes collection. */
static void on_pass_end(uv_prepare_t *h)
{
    server_t *srv = h->data;
    flow_engine_pass_end(srv->flow);
    if (!srv->stopping && !uv_is_active((uv_handle_t *)&srv->gc_idle) &&
        flow_engine_gc_due(srv->flow))
        uv_idle_start(&srv->gc_idle, on_gc_idle);
}

/* Every store connection gets the knowledge base's tokenizer; the writer also migrates the kb
 * tables and seeds an empty knowledge base (start-up only, before the loop runs). */
static int store_init(sqlite3 *db, int is_writer, void *arg, char *err, size_t errlen)
{
    server_t *srv = arg;
    int n;

    if (kb_register(db) != 0) {
        snprintf(err, errlen, "kb: cannot register the tokenizer");
        return -1;
    }
    if (!is_writer)
        return 0;
    if (kb_migrate(db, err, errlen) != 0 || auth_migrate(db, err, errlen) != 0 ||
        agent_store_migrate(db, err, errlen) != 0 || webhook_migrate(db, err, errlen) != 0)
        return -1;
    n = kb_seed_dir(db, srv->cfg->kb_seed, err, errlen);
    if (n < 0)
        return -1;
    if (n > 0)
        log_notice("kb", "knowledge base seeded with %d records from %s", n, srv->cfg->kb_seed);
    return 0;
}

static int start_lws(server_t *srv)
{
    const config_t *cfg = srv->cfg;
    static struct lws_http_mount mounts[8];
    struct lws_context_creation_info info;
    void *foreign_loops[1] = {&srv->loop};
    int n = 0;

    memset(mounts, 0, sizeof(mounts));
    for (int i = 0; http_mountpoints[i] && n < 7; i++, n++) {
        mounts[n].mountpoint = http_mountpoints[i];
        mounts[n].mountpoint_len = (unsigned char)strlen(http_mountpoints[i]);
        mounts[n].origin = "http";
        mounts[n].origin_protocol = LWSMPRO_CALLBACK;
    }
    mounts[n].mountpoint = "/";
    mounts[n].mountpoint_len = 1;
    mounts[n].origin = cfg->web_root;
    mounts[n].def = "index.html";
    mounts[n].origin_protocol = LWSMPRO_FILE;
    for (int i = 0; i < n; i++)
        mounts[i].mount_next = &mounts[i + 1];

    protocols[0] = http_protocol;
    protocols[1] = ws_chat_protocol;
    protocols[2] = ws_agent_protocol;
    protocols[3] = webhook_protocol; /* client connections only (webhook deliveries) */
    memset(&protocols[4], 0, sizeof(protocols[4]));

    /* No lws validity checks and no fd_limit_per_thread: ws.c pings and times out idle chats in
     * its sweep, and lws's own versions cost O(n) per event at 15,000 sockets (a sorted timer
     * list re-inserted on every frame; a linear fd lookup below the process fd limit).  A NULL
     * retry_and_idle_policy is not "none": the vhost then takes the context's default (ping
     * after 300 s, hang up after 310 s) and every frame re-inserts the connection's validity
     * timer; a policy with secs_since_valid_hangup 0 turns the check off.  Measured at 1,000
     * connections: the insert was 17 us of loop time per turn.  limits.max_connections is
     * enforced in ws.c. */

    memset(&info, 0, sizeof(info));
    info.port = cfg->listen_port; /* 0: the kernel picks one; listen_port() reads it back */
    info.iface = cfg->listen_host;
    info.protocols = protocols;
    info.mounts = &mounts[0];
    info.options = LWS_SERVER_OPTION_LIBUV |
                   LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
                   LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN | LWS_SERVER_OPTION_DISABLE_IPV6 |
                   LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; /* a TLS client context: https webhooks */
    info.foreign_loops = foreign_loops;
    info.user = srv;
    info.timeout_secs = 20;
    info.retry_and_idle_policy = &no_validity_checks;
    srv->lws = lws_create_context(&info);
    if (!srv->lws) {
        log_error("server", "cannot listen on %s:%d", cfg->listen_host, cfg->listen_port);
        return -1;
    }
    return 0;
}

/*
 * The open-file limit, sized to limits.max_connections.  libwebsockets 4.1 makes its fd table
 * as large as the soft RLIMIT_NOFILE when the context is created, and reads all of it when a
 * connection closes (a sanity check compiled into Debian's build): 117,000 instructions and
 * 160 KB read per close at a limit of 20,000 (callgrind, BENCHMARKS.md), 8 MB at the 1,048,576
 * of many containers.  A soft limit below what the connections need (1,024 is a common
 * default) would refuse connections instead.  So the soft limit is set to max_connections +
 * FD_RESERVE (the database files, the listening socket, HTTP clients, webhook deliveries),
 * within the hard limit, which only root may raise; when that is lower, a warning says how
 * many connections fit.
 */
#define FD_RESERVE 256

static void size_fd_limit(const config_t *cfg)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg->max_connections + FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_warn("server", "cannot read the open-file limit: %s", strerror(errno));
        return;
    }
    rlim_t soft = rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max ? rl.rlim_max : want;
    if (soft != rl.rlim_cur) {
        struct rlimit set = {soft, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &set) != 0) {
            log_warn("server", "cannot set the open-file limit to %llu: %s",
                     (unsigned long long)soft, strerror(errno));
            soft = rl.rlim_cur;
        } else {
            log_info("server", "open-file limit %llu (was %llu): limits.max_connections %d + %d",
                     (unsigned long long)soft, (unsigned long long)rl.rlim_cur,
                     cfg->max_connections, FD_RESERVE);
        }
    }
    if (soft < want)
        log_warn("server",
                 "the open-file limit is %llu: about %lld connections fit, not "
                 "limits.max_connections %d (raise the hard limit, ulimit -Hn, as root)",
                 (unsigned long long)soft, (long long)soft - FD_RESERVE, cfg->max_connections);
}

static int listen_port(server_t *srv)
{
    struct lws_vhost *vh = lws_get_vhost_by_name(srv->lws, "default");
    return vh ? lws_get_vhost_listen_port(vh) : srv->cfg->listen_port;
}

int server_run(const config_t *cfg)
{
    server_t *srv = calloc(1, sizeof(*srv));
    char err[512];
    int rc = -1;

    if (!srv)
        return -1;
    srv->cfg = cfg;
    srv->started_ms = util_now_ms();
    signal(SIGPIPE, SIG_IGN);
    size_fd_limit(cfg); /* before the lws context sizes its fd table */
    lws_set_log_level(LLL_ERR | LLL_WARN | (log_enabled(LOG_DEBUG) ? LLL_NOTICE : 0), lws_log);
    if (uv_loop_init(&srv->loop) != 0) {
        log_error("server", "uv_loop_init failed");
        free(srv);
        return -1;
    }
    if (cfg->kb_synonyms[0] && kb_set_synonyms_file(cfg->kb_synonyms, err, sizeof(err)) != 0) {
        log_error("server", "kb.synonyms: %s", err);
        goto out;
    }
    if (store_open(&srv->store, &srv->loop, cfg, store_init, srv, err, sizeof(err)) != 0) {
        log_error("server", "store: %s", err);
        goto out;
    }
    if (auth_new(&srv->auth, cfg, &srv->loop, srv->store, err, sizeof(err)) != 0) {
        log_error("server", "%s", err);
        goto out;
    }
    if (!(srv->sessions = session_mgr_new(cfg, srv->store))) {
        log_error("server", "cannot create the session manager");
        goto out;
    }
    if (flow_engine_create(&srv->flow, cfg, store_kb_reader(srv->store), err, sizeof(err)) != 0) {
        log_error("server", "flows in %s: %s", cfg->rules_dir, err);
        goto out;
    }
    flow_engine_kb_hold(srv->flow); /* one snapshot a pass, ended in on_pass_end */
    session_mgr_set_flow(srv->sessions, srv->flow);
    flow_engine_gc_idle(srv->flow, cfg->lua_idle_gc);
    if (!(srv->agents = agent_mgr_new(srv))) {
        log_error("server", "cannot start the agent queue");
        goto out;
    }
    session_mgr_set_agent(srv->sessions, srv->agents);
    if (!(srv->complaints = complaint_mgr_new(srv))) {
        log_error("server", "cannot load the complaint records");
        goto out;
    }
    session_mgr_set_complaints(srv->sessions, srv->complaints);
    if (webhook_new(&srv->webhooks, srv, err, sizeof(err)) != 0) {
        log_error("server", "%s", err);
        goto out;
    }
    complaint_set_notify(srv->complaints, webhook_notify, srv->webhooks);
    auth_set_logout_hook(srv->auth, agent_logout, srv->agents);
    if (start_lws(srv) != 0)
        goto out;
    uv_signal_init(&srv->loop, &srv->sigint);
    uv_signal_init(&srv->loop, &srv->sigterm);
    srv->sigint.data = srv->sigterm.data = srv;
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_timer_init(&srv->loop, &srv->tick);
    uv_timer_init(&srv->loop, &srv->sweep_more);
    srv->tick.data = srv->sweep_more.data = srv;
    uv_timer_start(&srv->tick, on_tick, 250, 250);
    uv_prepare_init(&srv->loop, &srv->pass_end);
    uv_idle_init(&srv->loop, &srv->gc_idle);
    srv->pass_end.data = srv->gc_idle.data = srv;
    uv_prepare_start(&srv->pass_end, on_pass_end);
    uv_unref((uv_handle_t *)&srv->pass_end);
    uv_unref((uv_handle_t *)&srv->gc_idle);
    ws_flush_begin(srv);

    printf("listening on http://%s:%d\n", cfg->listen_host, listen_port(srv));
    fflush(stdout);
    log_notice("server", "redress %s listening on %s:%d", REDRESS_VERSION, cfg->listen_host,
               listen_port(srv));
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    if (!srv->stopping) { /* start-up failed part way */
        if (srv->sessions)
            session_mgr_set_flow(srv->sessions, NULL);
        flow_engine_destroy(srv->flow);
        srv->flow = NULL;
        if (srv->lws)
            lws_context_destroy(srv->lws);
        auth_close(srv->auth);
        srv->auth = NULL;
        agent_mgr_close_store(srv->agents);
        complaint_mgr_close_store(srv->complaints);
        webhook_close_store(srv->webhooks);
        if (srv->store)
            store_close(srv->store);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
    }
    if (srv->lws) /* second phase, once the loop has closed lws's handles: frees the context */
        lws_context_destroy(srv->lws);
    session_mgr_free(srv->sessions);
    agent_mgr_free(srv->agents);
    complaint_mgr_free(srv->complaints);
    webhook_free(srv->webhooks);
    if (uv_loop_close(&srv->loop) != 0)
        log_warn("server", "loop closed with handles still open");
    free(srv);
    if (rc == 0)
        log_notice("server", "stopped");
    return rc;
}
