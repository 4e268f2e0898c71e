/*
 * store.c - SQLite persistence: connections, migrations, the writer thread, typed operations.
 *
 * Ownership and threads
 *   store_t is created and closed on the loop thread.  It owns:
 *     - writer: sqlite3 connection used only by the writer thread (after store_open returns);
 *     - reader: sqlite3 connection used only by the loop thread;
 *     - kb reader: another, also the loop thread's, for the flows' knowledge-base searches
 *       alone, which keep one read snapshot for a whole loop pass (kb_searcher_hold: a
 *       transaction a search was 5 % of a loop that searches on every message), so that no
 *       other read of the loop sees a snapshot older than the writer's last commit;
 *     - a queue of pending ops (mutex + condvar), a list of finished ops, a uv_async_t.
 *   An op is allocated by store_submit() and freed on the loop thread right after its done
 *   callback ran.  The threads are named redress-writer and redress-ckpt (top -H, perf,
 *   /proc/PID/task/TID/comm; bench/run_server_bench.sh reports each one's CPU per turn).
 *
 * Life of an op
 *   store_submit()            loop thread: op appended to `pending` (or to the open group);
 *                             an idle writer is woken before the loop next polls
 *   writer_main()             writer thread: takes up to batch_max ops, BEGIN IMMEDIATE,
 *                             SAVEPOINT / work / RELEASE (or ROLLBACK TO) for each op or
 *                             group, COMMIT;
 *                             moves the batch to `finished`, uv_async_send()
 *   on_async()                loop thread: runs each finished op's done(arg, rc), frees it;
 *   or store_deliver()        the same, sooner: see "Delivering in the middle of a pass"
 *
 * Groups
 *   A customer's message and everything the bot's turn writes for it (its replies, status
 *   events, records, the flow's state) are submitted between store_group_begin() and
 *   store_group_end() (session.c).  The group is queued as one op whose `sub` list holds the
 *   rest: one savepoint, all or nothing, one result for all, callbacks in submission order.
 *   So the message and its answer share one commit, and a message that could not be stored
 *   leaves no reply behind.  With the deferred wake below it halves the commits of a turn
 *   under load (measured, BENCHMARKS.md: closed loop at 200 conversations, alternating runs,
 *   2,137-2,270 -> 2,348-2,387 turns/s; writer 225-234 -> 193-201 us per turn).
 *
 * Waking the writer
 *   An idle writer is not woken by each submit: a futex wake per submit cost the loop 3 % of
 *   its time, and a writer woken at the first op of a loop pass commits it alone.  store_submit
 *   marks the wake due and a prepare handle (on_kick, before the loop polls) sends it, so what
 *   one pass queued goes in one batch.  Should a pass run long, a submit finding the oldest
 *   pending op older than KICK_NS wakes the writer itself.
 *
 * Delivering in the middle of a pass
 *   The writer's wake-up (the async handle) is seen when the loop next polls, and its callback
 *   runs among that poll's socket events.  Under load a loop pass runs many turns, so a turn
 *   committed during a pass waited for the rest of that pass and for part of the next one
 *   (measured on the open loop at 2,000 turns/s: 3.3 ms on average from COMMIT to the done
 *   callback, against 0.6 ms for the transaction itself).  So ws.c calls store_deliver() after
 *   each customer frame: an atomic flag tells whether anything has finished, and if so the
 *   callbacks run at once and their frames leave at the end of this pass (ws_flush.c); the
 *   same measure then gave 0.3 ms.  The wake-up stays for a loop with nothing else to do.  A
 *   done callback that reaches store_deliver() does nothing (`delivering`): what finished
 *   meanwhile is left to the wake-up that its commit sent.
 *
 * Group commit
 *   A commit costs about the same whether it carries one operation or fifty: the WAL gets every
 *   page the transaction touched, and with store.synchronous=full an fsync.  Under load the
 *   loop submits a few operations at a time.  With store.group_commit_us > 0, when the previous
 *   batch ended less than that long ago (the store is busy), the writer lets the oldest pending
 *   op wait up to that long for others to join it, or until batch_max are pending; an idle
 *   store commits at once.  A gathering writer is woken early only when batch_max ops are
 *   pending, so the loop's submits wake nobody.  Measured (BENCHMARKS.md): with
 *   synchronous=full, 1,000 us saves 15 % of the CPU per turn.  With normal it once saved
 *   nothing measurable; since a turn is one group and its commit is delivered in the pass that
 *   sees it (above), 1,000 us gave the open loop at 2,100 turns/s over 200 conversations a p99
 *   of 40-72 ms against 48-96 without, a p50 of 4.9-14 against 8.1-20 (six and four runs in
 *   alternation) and the loop 4 % less CPU per turn, with no loss at 300 turns/s (p50 1.6-1.8
 *   ms either way).  Hence the default 1000.
 *
 * Checkpoints
 *   SQLite's automatic checkpoint runs inside the commit that takes the write-ahead log past
 *   1000 pages: it copies the log into the database file and syncs it, 10-30 ms during which
 *   every acknowledgement and reply waits (measured: p99 15 ms at 300 turns/s, 10 ms without).
 *   Here the writer connection has wal_autocheckpoint=0 and a wal hook: once the log has grown
 *   store.checkpoint_pages past what was last copied, the hook wakes the checkpointer thread,
 *   which runs a PASSIVE checkpoint on a connection of its own: it never blocks the writer.
 *   SQLite restarts the log from its start only in a transaction that begins with all of it
 *   copied, and commits go on while the checkpointer copies; so when at most CKPT_CATCH_UP
 *   frames are left, the writer's hook copies them itself (a few pages and a sync: well under
 *   a millisecond here, against 10-30 for a whole checkpoint).  Should the log reach 8 times
 *   store.checkpoint_pages, the writer copies what is left in the hook, as SQLite would, when
 *   the checkpointer is not mid-copy (a signalled one that has not started yet is overtaken).
 *   That bounds the log both when the checkpointer cannot keep up and when it keeps up only
 *   just: each of its copies ends with more than CKPT_CATCH_UP new frames, so it is woken again
 *   and again, the log never starts over, and it grew to 6 MB in test_store under a loaded CI
 *   machine.  Counted in stats (checkpoints, writer_checkpoints).
 *
 * The savepoints' journal
 *   Each op or group runs in a savepoint, and SQLite keeps the old content of every page a
 *   savepoint changes so that it can be put back.  Past 64 KiB (16 pages) that journal went to
 *   a temporary file, made, written and deleted inside the transaction, and every later
 *   savepoint of the transaction wrote there too: under load (closed loop, 200 conversations)
 *   four in five of the writer's pwrite calls.  The writer connection has temp_store=MEMORY,
 *   which keeps the journal in memory (at most one group's changed pages, emptied when the group
 *   ends); the writer's CPU per turn went 173-208 -> 160-171 us in alternating runs of that
 *   closed loop (BENCHMARKS.md).
 *
 * Shutdown: store_close() sets `stopping`, joins the writer (which first drains `pending`)
 * and the checkpointer, runs the remaining done callbacks, closes the connections, then
 * closes the async handle; the store is freed in that close callback.
 *
 * Schema: numbered migrations in `migrations[]`, applied in order inside transactions and
 * recorded in schema_migrations.  Never edit a shipped migration; add a new one.
 */
#include "store.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct op {
    struct op *next;
    struct op *sub; /* the rest of its group, in order (store_group_begin) */
    store_work_fn work;
    store_done_fn done;
    void *arg;
    int rc;
} op;

#define STMT_CACHE 32
#define KICK_NS 1000000 /* an idle writer is woken at once for ops older than this */

struct store_tx {
    sqlite3 *db;
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } cache[STMT_CACHE];
    int ncache;
    /* the events' update of their conversation's row, held back to the end of the group (see
     * "A turn's row update"): conversation 0 when none is held */
    struct {
        long long conversation, seq;
        const char *ts;
    } held;
};

static int flush_held(store_tx_t *tx);

struct store {
    uv_loop_t *loop;
    uv_async_t async;
    uv_thread_t thread;
    uv_mutex_t lock;
    uv_cond_t wake;
    op *pending, **pending_tail;
    int npending;
    op *finished, **finished_tail;
    atomic_int has_finished; /* finished != NULL, readable without the lock (store_deliver) */
    int delivering;          /* loop thread: run_finished() is running its callbacks */
    int stopping;
    int thread_started;
    int batch_max;
    uint64_t group_ns;   /* store.group_commit_us */
    uint64_t first_ns;   /* when the oldest pending op was submitted (uv_hrtime) */
    uint64_t last_end;   /* when the last batch committed (uv_hrtime) */
    int idle, gathering; /* the writer sleeps on `wake` with nothing pending / while gathering */
    /* loop thread only: the group being built (see "Groups") and the deferred wake */
    op *group, **group_tail;
    int group_depth;
    uv_prepare_t kick;
    int kick_due;
    /* checkpointer (see "Checkpoints"); ckpt_* fields guarded by lock */
    uv_thread_t ckpt_thread;
    int ckpt_started; /* set before the writer starts */
    uv_cond_t ckpt_wake;
    sqlite3 *ckpt_db;
    int ckpt_pages;   /* store.checkpoint_pages */
    int ckpt_due;     /* the hook asked for a checkpoint */
    int ckpt_running; /* the checkpointer is in one */
    int ckpt_copied;  /* log frames already copied into the file (0 after a restart) */
    store_tx_t tx;    /* writer connection + its statement cache */
    sqlite3 *reader, *kb_reader;
    sqlite3_stmt *r_find_conv, *r_find_client, *r_replay, *r_max_id, *r_customer, *r_token, *r_due;
    store_stats_t stats; /* guarded by lock */
};

/* ---- migrations ---- */

static const struct {
    int version;
    const char *sql;
} migrations[] = {
    {1, "CREATE TABLE customers ("
        "  id INTEGER PRIMARY KEY,"
        "  external_id TEXT NOT NULL UNIQUE,"
        "  name TEXT NOT NULL DEFAULT '',"
        "  vip INTEGER NOT NULL DEFAULT 0,"
        "  created_at TEXT NOT NULL,"
        "  updated_at TEXT NOT NULL);"
        "CREATE TABLE conversations ("
        "  id INTEGER PRIMARY KEY,"
        "  token TEXT NOT NULL UNIQUE,"
        "  customer_id INTEGER NOT NULL REFERENCES customers(id),"
        "  customer_name TEXT NOT NULL DEFAULT '',"
        "  channel TEXT NOT NULL,"
        "  state TEXT NOT NULL DEFAULT 'open',"
        "  last_seq INTEGER NOT NULL DEFAULT 0,"
        "  flow_state TEXT,"
        "  created_at TEXT NOT NULL,"
        "  updated_at TEXT NOT NULL);"
        "CREATE INDEX conversations_customer ON conversations(customer_id);"
        "CREATE TABLE messages ("
        "  conversation_id INTEGER NOT NULL REFERENCES conversations(id),"
        "  seq INTEGER NOT NULL,"
        "  sender TEXT NOT NULL CHECK (sender IN ('customer','bot','agent','system')),"
        "  client_id TEXT,"
        "  text TEXT NOT NULL,"
        "  options TEXT,"
        "  created_at TEXT NOT NULL,"
        "  PRIMARY KEY (conversation_id, seq)) WITHOUT ROWID;"
        "CREATE UNIQUE INDEX messages_client_id ON messages(conversation_id, client_id)"
        "  WHERE client_id IS NOT NULL;"
        "CREATE TABLE events ("
        "  id INTEGER PRIMARY KEY,"
        "  conversation_id INTEGER NOT NULL REFERENCES conversations(id),"
        "  seq INTEGER," /* NULL: internal event, not sent to the customer */
        "  kind TEXT NOT NULL,"
        "  detail TEXT NOT NULL DEFAULT '{}',"
        "  actor TEXT NOT NULL DEFAULT 'system',"
        "  created_at TEXT NOT NULL);"
        "CREATE UNIQUE INDEX events_seq ON events(conversation_id, seq) WHERE seq IS NOT NULL;"},
    /* the flow's next timer, so that conversations no longer in memory wake up for it */
    {2, "ALTER TABLE conversations ADD COLUMN flow_due REAL;"
        "CREATE INDEX conversations_flow_due ON conversations(flow_due)"
        "  WHERE flow_due IS NOT NULL;"},
};

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int current = 0, rc = -1;
    char e2[256];

    if (exec_sql(db,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
                 err, errlen) != 0)
        return -1;
    if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version),0) FROM schema_migrations", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        snprintf(err, errlen, "sqlite: %s", sqlite3_errmsg(db));
        goto out;
    }
    current = sqlite3_column_int(st, 0);
    for (size_t i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++) {
        char sql[128];
        if (migrations[i].version <= current)
            continue;
        if (exec_sql(db, "BEGIN IMMEDIATE", err, errlen) != 0)
            goto out;
        snprintf(sql, sizeof(sql),
                 "INSERT INTO schema_migrations VALUES (%d, strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ'))",
                 migrations[i].version);
        if (exec_sql(db, migrations[i].sql, e2, sizeof(e2)) != 0 ||
            exec_sql(db, sql, e2, sizeof(e2)) != 0) {
            snprintf(err, errlen, "migration %d: %s", migrations[i].version, e2);
            exec_sql(db, "ROLLBACK", e2, sizeof(e2));
            goto out;
        }
        if (exec_sql(db, "COMMIT", err, errlen) != 0)
            goto out;
        log_notice("store", "applied migration %d", migrations[i].version);
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

/* ---- connections ---- */

static int open_conn(const char *path, const config_t *cfg, sqlite3 **out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    char sql[128];
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;

    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    snprintf(sql, sizeof(sql),
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=ON;",
             strcmp(cfg->synchronous, "full") == 0 ? "FULL" : "NORMAL");
    if (exec_sql(db, sql, err, errlen) != 0) {
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: %s in: %.60s", sqlite3_errmsg(db), sql);
        return -1;
    }
    return 0;
}

/* ---- writer thread ---- */

sqlite3 *store_tx_db(store_tx_t *tx)
{
    return tx->db;
}

sqlite3_stmt *store_tx_stmt(store_tx_t *tx, const char *sql)
{
    for (int i = 0; i < tx->ncache; i++)
        if (tx->cache[i].sql == sql) {
            sqlite3_reset(tx->cache[i].stmt);
            sqlite3_clear_bindings(tx->cache[i].stmt);
            return tx->cache[i].stmt;
        }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(tx->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        log_error("store", "prepare failed: %s in: %.80s", sqlite3_errmsg(tx->db), sql);
        return NULL;
    }
    if (tx->ncache < STMT_CACHE) {
        tx->cache[tx->ncache].sql = sql;
        tx->cache[tx->ncache].stmt = st;
        tx->ncache++;
    } else {
        log_warn("store", "statement cache full; statement not cached");
    }
    return st;
}

static int tx_exec(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        log_error("store", "%s: %s", sql, sqlite3_errmsg(db));
    return rc == SQLITE_OK ? 0 : -1;
}

/* One cached statement, stepped once (savepoints: prepared once, not parsed per operation). */
static int tx_step(store_tx_t *tx, const char *sql)
{
    sqlite3_stmt *st = store_tx_stmt(tx, sql);
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        log_error("store", "%s: %s", sql, sqlite3_errmsg(tx->db));
    return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- checkpoints (see "Checkpoints") ---- */

#define CKPT_CATCH_UP 64 /* frames the writer copies itself to finish a checkpoint */

/* Writer thread, after each commit: pages is the log's size in frames. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    store_t *s = arg;
    int rest, wake = 0, now = 0;
    uv_mutex_lock(&s->lock);
    if (pages < s->ckpt_copied) /* the log restarted */
        s->ckpt_copied = 0;
    rest = pages - s->ckpt_copied;
    if (!s->ckpt_running && pages >= 8 * s->ckpt_pages) {
        s->ckpt_due = 0; /* the log must restart: the writer takes the checkpoint over */
        now = 1;
    } else if (!s->ckpt_running && !s->ckpt_due) {
        if (s->ckpt_copied > 0 && rest <= CKPT_CATCH_UP)
            now = 1; /* the checkpointer copied the rest: finish, so that the log restarts */
        else if (rest >= s->ckpt_pages && s->ckpt_started)
            wake = s->ckpt_due = 1;
    }
    uv_mutex_unlock(&s->lock);
    if (wake)
        uv_cond_signal(&s->ckpt_wake);
    if (now) {
        int copied = 0;
        if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, &copied) ==
            SQLITE_OK) {
            uv_mutex_lock(&s->lock);
            s->ckpt_copied = copied;
            s->stats.writer_checkpoints++;
            uv_mutex_unlock(&s->lock);
        }
    }
    return SQLITE_OK;
}

static void ckpt_main(void *arg)
{
    store_t *s = arg;
    pthread_setname_np(pthread_self(), "redress-ckpt"); /* top -H, perf, /proc/PID/task */
    uv_mutex_lock(&s->lock);
    for (;;) {
        while (!s->ckpt_due && !s->stopping)
            uv_cond_wait(&s->ckpt_wake, &s->lock);
        if (s->stopping)
            break;
        s->ckpt_due = 0;
        s->ckpt_running = 1;
        uv_mutex_unlock(&s->lock);
        int frames = 0, copied = 0;
        int rc = sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames,
                                           &copied);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("store", "checkpoint: %s", sqlite3_errmsg(s->ckpt_db));
        uv_mutex_lock(&s->lock);
        s->ckpt_running = 0;
        if (rc == SQLITE_OK) {
            s->stats.checkpoints++;
            if (copied > s->ckpt_copied)
                s->ckpt_copied = copied;
        }
    }
    uv_mutex_unlock(&s->lock);
}

/* Under the lock: appends a list of done ops to `finished` (on_async runs their callbacks). */
static void add_finished(store_t *s, op *list)
{
    *s->finished_tail = list;
    atomic_store_explicit(&s->has_finished, 1, memory_order_relaxed);
    while (*s->finished_tail)
        s->finished_tail = &(*s->finished_tail)->next;
}

/* An op and the rest of its group share one result. */
static void set_rc(op *o, int rc)
{
    o->rc = rc;
    for (op *x = o->sub; x; x = x->next)
        x->rc = rc;
}

static void run_batch(store_t *s, op *batch)
{
    sqlite3 *db = s->tx.db;
    int failed = 0;
    uint64_t nops = 0, nfailed = 0, begin = uv_hrtime();

    if (tx_exec(db, "BEGIN IMMEDIATE") != 0) {
        for (op *o = batch; o; o = o->next)
            o->rc = -1;
        nfailed = 1;
        goto out;
    }
    for (op *o = batch; o; o = o->next) {
        int size = 1, rc = -1;
        for (op *x = o->sub; x; x = x->next)
            size++;
        nops += size;
        if (tx_step(&s->tx, "SAVEPOINT op") == 0) {
            rc = o->work(&s->tx, o->arg);
            for (op *x = o->sub; x && rc == 0; x = x->next)
                rc = x->work(&s->tx, x->arg);
            if (rc == 0)
                rc = flush_held(&s->tx);
            s->tx.held.conversation = 0; /* (on failure, rolled back with the rest) */
            if (rc != 0)
                tx_step(&s->tx, "ROLLBACK TO op");
            tx_step(&s->tx, "RELEASE op");
        }
        if (rc != 0)
            nfailed += size;
        set_rc(o, rc);
    }
    if (tx_exec(db, "COMMIT") != 0) {
        failed = 1;
        tx_exec(db, "ROLLBACK");
        for (op *o = batch; o; o = o->next)
            set_rc(o, -1);
    }
out:
    uv_mutex_lock(&s->lock);
    s->last_end = uv_hrtime();
    histo_observe(&s->stats.batch_time, s->last_end - begin);
    s->stats.batches++;
    s->stats.ops += nops;
    s->stats.failed_ops += failed ? nops : nfailed;
    add_finished(s, batch);
    uv_mutex_unlock(&s->lock);
    uv_async_send(&s->async);
}

/* Under the lock, with ops pending: while the store is busy, waits (at most group_ns after the
 * oldest op was submitted) for more ops to share the transaction.  See "Group commit". */
static void gather(store_t *s)
{
    uint64_t now = uv_hrtime();
    if (s->group_ns == 0 || now - s->last_end > s->group_ns)
        return;
    s->gathering = 1;
    while (!s->stopping && s->npending < s->batch_max && now < s->first_ns + s->group_ns) {
        uv_cond_timedwait(&s->wake, &s->lock, s->first_ns + s->group_ns - now);
        now = uv_hrtime();
    }
    s->gathering = 0;
}

static void writer_main(void *arg)
{
    store_t *s = arg;
    pthread_setname_np(pthread_self(), "redress-writer");
    for (;;) {
        uv_mutex_lock(&s->lock);
        while (!s->pending && !s->stopping) {
            s->idle = 1;
            uv_cond_wait(&s->wake, &s->lock);
            s->idle = 0;
        }
        if (!s->pending && s->stopping) {
            uv_mutex_unlock(&s->lock);
            break;
        }
        gather(s);
        /* take up to batch_max ops */
        op *batch = s->pending, **tail = &s->pending;
        int n = 0;
        while (*tail && n < s->batch_max) {
            tail = &(*tail)->next;
            n++;
        }
        s->pending = *tail;
        *tail = NULL;
        s->npending -= n;
        if (!s->pending)
            s->pending_tail = &s->pending;
        else
            s->first_ns = 0; /* the rest has waited long enough: the next batch goes at once */
        uv_mutex_unlock(&s->lock);
        run_batch(s, batch);
    }
}

static void run_finished(store_t *s)
{
    if (s->delivering) /* a done callback got here: what is new waits for the async wake-up */
        return;
    uv_mutex_lock(&s->lock);
    op *list = s->finished;
    s->finished = NULL;
    s->finished_tail = &s->finished;
    atomic_store_explicit(&s->has_finished, 0, memory_order_relaxed);
    uv_mutex_unlock(&s->lock);
    s->delivering = 1;
    while (list) {
        op *next = list->next;
        if (list->sub) { /* the rest of its group runs next, in order */
            op **tail = &list->sub;
            while (*tail)
                tail = &(*tail)->next;
            *tail = next;
            next = list->sub;
        }
        if (list->done)
            list->done(list->arg, list->rc);
        free(list);
        list = next;
    }
    s->delivering = 0;
}

void store_deliver(store_t *s)
{
    if (atomic_load_explicit(&s->has_finished, memory_order_relaxed))
        run_finished(s);
}

static void on_async(uv_async_t *h)
{
    run_finished(h->data);
}

/* Before the loop polls: wakes the writer for what this pass queued (see "Waking the writer"). */
static void on_kick(uv_prepare_t *h)
{
    store_t *s = h->data;
    if (!s->kick_due)
        return;
    s->kick_due = 0;
    uv_cond_signal(&s->wake);
}

/* ---- open / close ---- */

static void free_store(store_t *s)
{
    for (int i = 0; i < s->tx.ncache; i++)
        sqlite3_finalize(s->tx.cache[i].stmt);
    sqlite3_finalize(s->r_find_conv);
    sqlite3_finalize(s->r_find_client);
    sqlite3_finalize(s->r_replay);
    sqlite3_finalize(s->r_max_id);
    sqlite3_finalize(s->r_customer);
    sqlite3_finalize(s->r_token);
    sqlite3_finalize(s->r_due);
    if (s->ckpt_db)
        sqlite3_close(s->ckpt_db);
    if (s->tx.db)
        sqlite3_close(s->tx.db);
    if (s->reader)
        sqlite3_close(s->reader);
    if (s->kb_reader)
        sqlite3_close(s->kb_reader);
    uv_mutex_destroy(&s->lock);
    uv_cond_destroy(&s->wake);
    uv_cond_destroy(&s->ckpt_wake);
    free(s);
}

static int ensure_dir(const char *dir, char *err, size_t errlen)
{
    if (util_mkdirs(dir) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* Sets `stopping` and joins the threads that were started (the writer first drains
 * `pending`). */
static void stop_threads(store_t *s)
{
    uv_mutex_lock(&s->lock);
    s->stopping = 1;
    uv_cond_signal(&s->wake);
    uv_cond_signal(&s->ckpt_wake);
    uv_mutex_unlock(&s->lock);
    if (s->thread_started)
        uv_thread_join(&s->thread);
    if (s->ckpt_started)
        uv_thread_join(&s->ckpt_thread);
}

int store_open(store_t **out, uv_loop_t *loop, const config_t *cfg, store_conn_init_fn init,
               void *init_arg, char *err, size_t errlen)
{
    char path[4096];
    store_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    uv_mutex_init(&s->lock);
    uv_cond_init(&s->wake);
    uv_cond_init(&s->ckpt_wake);
    s->loop = loop;
    s->ckpt_pages = cfg->checkpoint_pages;
    s->pending_tail = &s->pending;
    s->finished_tail = &s->finished;
    s->group_tail = &s->group;
    s->batch_max = cfg->batch_max;
    s->group_ns = (uint64_t)cfg->group_commit_us * 1000;

    if (config_db_path(cfg, path, sizeof(path)) != 0) {
        snprintf(err, errlen, "data.db: path too long");
        goto fail;
    }
    if (strcmp(cfg->db_path, ":memory:") != 0 && cfg->db_path[0] != '/' &&
        ensure_dir(cfg->data_dir, err, errlen) != 0)
        goto fail;
    if (open_conn(path, cfg, &s->tx.db, err, errlen) != 0 || migrate(s->tx.db, err, errlen) != 0)
        goto fail;
    if (init && init(s->tx.db, 1, init_arg, err, errlen) != 0)
        goto fail;
    /* "The savepoints' journal": in memory, never in a temporary file */
    if (exec_sql(s->tx.db, "PRAGMA temp_store=MEMORY", err, errlen) != 0)
        goto fail;
    sqlite3 **readers[] = {&s->reader, &s->kb_reader};
    for (size_t i = 0; i < sizeof(readers) / sizeof(readers[0]); i++)
        if (open_conn(path, cfg, readers[i], err, errlen) != 0 ||
            (init && init(*readers[i], 0, init_arg, err, errlen) != 0))
            goto fail;
    /* a file database has a write-ahead log: its checkpoints move off the writer */
    if (strcmp(cfg->db_path, ":memory:") != 0) {
        if (exec_sql(s->tx.db, "PRAGMA wal_autocheckpoint=0", err, errlen) != 0 ||
            open_conn(path, cfg, &s->ckpt_db, err, errlen) != 0)
            goto fail;
        sqlite3_wal_hook(s->tx.db, wal_hook, s);
    }
    if (prepare(s->reader,
                "SELECT c.id, c.token, u.external_id, c.customer_name, c.channel, c.state,"
                " c.last_seq, c.flow_state FROM conversations c"
                " JOIN customers u ON u.id = c.customer_id WHERE c.token = ?",
                &s->r_find_conv, err, errlen) != 0 ||
        prepare(s->reader, "SELECT seq FROM messages WHERE conversation_id = ? AND client_id = ?",
                &s->r_find_client, err, errlen) != 0 ||
        prepare(s->reader,
                "SELECT seq, 'message', sender, client_id, text, options, NULL, NULL, created_at"
                " FROM messages WHERE conversation_id = ?1 AND seq > ?2"
                " UNION ALL"
                " SELECT seq, 'status', NULL, NULL, NULL, NULL, kind, detail, created_at"
                " FROM events WHERE conversation_id = ?1 AND seq > ?2"
                " ORDER BY 1 LIMIT ?3",
                &s->r_replay, err, errlen) != 0 ||
        prepare(s->reader, "SELECT COALESCE(MAX(id), 0) FROM conversations", &s->r_max_id, err,
                errlen) != 0 ||
        prepare(s->reader,
                "SELECT u.vip, (SELECT COUNT(*) FROM conversations c WHERE c.customer_id = u.id)"
                " FROM customers u WHERE u.external_id = ?",
                &s->r_customer, err, errlen) != 0 ||
        prepare(s->reader, "SELECT token FROM conversations WHERE id = ?", &s->r_token, err,
                errlen) != 0 ||
        prepare(s->reader,
                "SELECT id FROM conversations WHERE flow_due IS NOT NULL AND flow_due <= ?"
                " ORDER BY flow_due LIMIT ?",
                &s->r_due, err, errlen) != 0)
        goto fail;
    if (uv_async_init(loop, &s->async, on_async) != 0) {
        snprintf(err, errlen, "uv_async_init failed");
        goto fail;
    }
    s->async.data = s;
    uv_prepare_init(loop, &s->kick);
    s->kick.data = s;
    uv_prepare_start(&s->kick, on_kick);
    uv_unref((uv_handle_t *)&s->kick); /* it never keeps the loop alive by itself */
    /* the checkpointer first: the writer's hook reads ckpt_started */
    if (s->ckpt_db && uv_thread_create(&s->ckpt_thread, ckpt_main, s) == 0)
        s->ckpt_started = 1;
    else if (s->ckpt_db) /* the writer's hook then checkpoints at 8 times the threshold */
        log_warn("store", "cannot start the checkpointer thread; the writer checkpoints");
    if (uv_thread_create(&s->thread, writer_main, s) != 0) {
        snprintf(err, errlen, "cannot start the writer thread");
        stop_threads(s);
        uv_close((uv_handle_t *)&s->kick, NULL);
        uv_close((uv_handle_t *)&s->async, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        goto fail;
    }
    s->thread_started = 1;
    *out = s;
    return 0;
fail:
    free_store(s);
    return -1;
}

static void on_async_closed(uv_handle_t *h)
{
    free_store(h->data);
}

void store_close(store_t *s)
{
    if (!s)
        return;
    stop_threads(s);
    run_finished(s);
    uv_close((uv_handle_t *)&s->kick, NULL);
    uv_close((uv_handle_t *)&s->async, on_async_closed);
}

sqlite3 *store_reader(store_t *s)
{
    return s->reader;
}

sqlite3 *store_kb_reader(store_t *s)
{
    return s->kb_reader;
}

/* Appends o (with its group) to `pending`.  0, or -1 when the store is closing. */
static int enqueue(store_t *s, op *o)
{
    uv_mutex_lock(&s->lock);
    if (s->stopping) {
        uv_mutex_unlock(&s->lock);
        return -1;
    }
    if (!s->pending)
        s->first_ns = uv_hrtime();
    *s->pending_tail = o;
    s->pending_tail = &o->next;
    s->npending++;
    int wake = s->gathering && s->npending >= s->batch_max;
    if (s->idle && !wake) { /* see "Waking the writer" */
        if (uv_hrtime() - s->first_ns >= KICK_NS)
            wake = 1;
        else
            s->kick_due = 1;
    }
    uv_mutex_unlock(&s->lock);
    if (wake)
        uv_cond_signal(&s->wake);
    return 0;
}

int store_submit(store_t *s, store_work_fn work, store_done_fn done, void *arg)
{
    op *o = malloc(sizeof(*o));
    if (!o)
        return -1;
    o->next = o->sub = NULL;
    o->work = work;
    o->done = done;
    o->arg = arg;
    o->rc = 0;
    if (s->group_depth > 0) {
        if (s->stopping) { /* (written on this thread: no lock needed to read it here) */
            free(o);
            return -1;
        }
        *s->group_tail = o;
        s->group_tail = &o->next;
        return 0;
    }
    if (enqueue(s, o) != 0) {
        free(o);
        return -1;
    }
    return 0;
}

void store_group_begin(store_t *s)
{
    s->group_depth++;
}

void store_group_end(store_t *s)
{
    if (s->group_depth == 0 || --s->group_depth > 0 || !s->group)
        return;
    op *head = s->group;
    head->sub = head->next;
    head->next = NULL;
    s->group = NULL;
    s->group_tail = &s->group;
    if (enqueue(s, head) == 0)
        return;
    /* closing (not reached from a group as the server uses them): the ops were accepted, so
     * their callbacks still run, with -1 */
    set_rc(head, -1);
    uv_mutex_lock(&s->lock);
    add_finished(s, head);
    uv_mutex_unlock(&s->lock);
    uv_async_send(&s->async);
}

void store_get_stats(store_t *s, store_stats_t *out)
{
    uv_mutex_lock(&s->lock);
    *out = s->stats;
    uv_mutex_unlock(&s->lock);
}

/* ---- typed operations ---- */

typedef struct create_op {
    store_conv_t c;
    char ts[32];
    store_done_fn done;
    void *arg;
} create_op;

static int step_done(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        log_error("store", "write failed: %s", sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

static int work_create(store_tx_t *tx, void *arg)
{
    create_op *o = arg;
    sqlite3_stmt *st;

    st = store_tx_stmt(tx, "INSERT INTO customers(external_id, name, created_at, updated_at)"
                           " VALUES (?1, ?2, ?3, ?3) ON CONFLICT(external_id) DO UPDATE SET"
                           " name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE name END,"
                           " updated_at = excluded.updated_at");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, o->c.customer_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, o->c.customer_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, o->ts, -1, SQLITE_STATIC);
    if (step_done(tx->db, st) != 0)
        return -1;
    st = store_tx_stmt(tx, "INSERT INTO conversations(id, token, customer_id, customer_name,"
                           " channel, state, last_seq, created_at, updated_at)"
                           " SELECT ?1, ?2, id, ?4, ?5, 'open', 0, ?6, ?6 FROM customers"
                           " WHERE external_id = ?3");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, o->c.id);
    sqlite3_bind_text(st, 2, o->c.token, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, o->c.customer_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, o->c.customer_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, o->c.channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, o->ts, -1, SQLITE_STATIC);
    return step_done(tx->db, st);
}

static void done_create(void *arg, int rc)
{
    create_op *o = arg;
    if (o->done)
        o->done(o->arg, rc);
    free(o);
}

int store_create_conversation(store_t *s, const store_conv_t *c, store_done_fn done, void *arg)
{
    create_op *o = malloc(sizeof(*o));
    if (!o)
        return -1;
    o->c = *c;
    o->c.flow_state = NULL;
    util_iso_now(o->ts, sizeof(o->ts));
    o->done = done;
    o->arg = arg;
    if (store_submit(s, work_create, done_create, o) != 0) {
        free(o);
        return -1;
    }
    return 0;
}

typedef struct event_op {
    const store_event_t *ev;
    store_done_fn done;
    void *arg;
} event_op;

static void bind_opt(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/*
 * A turn's row update.  Every stored event moves its conversation's last_seq and updated_at,
 * and a turn stores several (the customer's message, the bot's replies, a status): one UPDATE
 * of the conversation's row each, and the row carries the flow's state (about 1 KB).  The
 * update is held in the transaction instead and made once, when the group ends or an event of
 * another conversation comes (flush_held): the row ends as the updates one by one would leave
 * it (the highest seq, the last event's time), and no other write reads or sets those two
 * columns.  A group that fails is rolled back with what it held.  (Folding it into the flow
 * state's UPDATE of the same row, one statement a turn fewer, measured nothing: the writer took
 * 154-160 us a turn against 150-166.)
 */
static int flush_held(store_tx_t *tx)
{
    if (tx->held.conversation == 0)
        return 0;
    sqlite3_stmt *st = store_tx_stmt(tx, "UPDATE conversations SET last_seq = MAX(last_seq, ?2),"
                                         " updated_at = ?3 WHERE id = ?1");
    long long conv = tx->held.conversation;
    tx->held.conversation = 0;
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, conv);
    sqlite3_bind_int64(st, 2, tx->held.seq);
    sqlite3_bind_text(st, 3, tx->held.ts, -1, SQLITE_STATIC);
    return step_done(tx->db, st);
}

static int work_event(store_tx_t *tx, void *arg)
{
    const store_event_t *ev = ((event_op *)arg)->ev;
    sqlite3_stmt *st;

    if (strcmp(ev->kind, "message") == 0) {
        st = store_tx_stmt(tx, "INSERT INTO messages(conversation_id, seq, sender, client_id,"
                               " text, options, created_at) VALUES (?,?,?,?,?,?,?)");
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, ev->conversation);
        sqlite3_bind_int64(st, 2, ev->seq);
        sqlite3_bind_text(st, 3, ev->sender, -1, SQLITE_STATIC);
        bind_opt(st, 4, ev->client_id);
        sqlite3_bind_text(st, 5, ev->text, -1, SQLITE_STATIC);
        bind_opt(st, 6, ev->options);
        sqlite3_bind_text(st, 7, ev->ts, -1, SQLITE_STATIC);
    } else {
        st = store_tx_stmt(tx, "INSERT INTO events(conversation_id, seq, kind, detail, actor,"
                               " created_at) VALUES (?,?,?,?,'system',?)");
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, ev->conversation);
        sqlite3_bind_int64(st, 2, ev->seq);
        sqlite3_bind_text(st, 3, ev->state, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, ev->detail ? ev->detail : "{}", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, ev->ts, -1, SQLITE_STATIC);
    }
    if (step_done(tx->db, st) != 0)
        return -1;
    if (tx->held.conversation != ev->conversation) {
        if (flush_held(tx) != 0)
            return -1;
        tx->held.conversation = ev->conversation;
        tx->held.seq = ev->seq;
    } else if (ev->seq > tx->held.seq) {
        tx->held.seq = ev->seq;
    }
    tx->held.ts = ev->ts; /* (the op, and so its text, lives until the batch is done) */
    return 0;
}

static void done_event(void *arg, int rc)
{
    event_op *o = arg;
    if (o->done)
        o->done(o->arg, rc);
    free(o);
}

int store_append_event(store_t *s, const store_event_t *ev, store_done_fn done, void *arg)
{
    event_op *o = malloc(sizeof(*o));
    if (!o)
        return -1;
    o->ev = ev;
    o->done = done;
    o->arg = arg;
    if (store_submit(s, work_event, done_event, o) != 0) {
        free(o);
        return -1;
    }
    return 0;
}

typedef struct internal_op {
    long long conversation;
    char *kind, *detail, *actor;
    char ts[32];
} internal_op;

static void internal_free(internal_op *o)
{
    free(o->kind);
    free(o->detail);
    free(o->actor);
    free(o);
}

static int work_internal(store_tx_t *tx, void *arg)
{
    internal_op *o = arg;
    sqlite3_stmt *st = store_tx_stmt(tx, "INSERT INTO events(conversation_id, seq, kind, detail,"
                                         " actor, created_at) VALUES (?, NULL, ?, ?, ?, ?)");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, o->conversation);
    sqlite3_bind_text(st, 2, o->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, o->detail, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, o->actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, o->ts, -1, SQLITE_STATIC);
    return step_done(tx->db, st);
}

static void done_internal(void *arg, int rc)
{
    internal_op *o = arg;
    if (rc != 0)
        log_error("store", "event %s of conversation %lld not saved", o->kind, o->conversation);
    internal_free(o);
}

int store_append_internal(store_t *s, long long conversation, const char *kind,
                          const char *detail_json, const char *actor)
{
    internal_op *o = calloc(1, sizeof(*o));
    if (!o)
        return -1;
    o->conversation = conversation;
    util_iso_now(o->ts, sizeof(o->ts));
    if (!(o->kind = strdup(kind)) || !(o->detail = strdup(detail_json ? detail_json : "{}")) ||
        !(o->actor = strdup(actor ? actor : "system")) ||
        store_submit(s, work_internal, done_internal, o) != 0) {
        internal_free(o);
        return -1;
    }
    return 0;
}

int store_customer_info(store_t *s, const char *customer_id, int *vip, int *conversations)
{
    sqlite3_stmt *st = s->r_customer;
    int rc;

    *vip = 0;
    *conversations = 0;
    sqlite3_bind_text(st, 1, customer_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *vip = sqlite3_column_int(st, 0);
        *conversations = sqlite3_column_int(st, 1);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        log_error("store", "customer info: %s", sqlite3_errmsg(s->reader));
        return -1;
    }
    return 0;
}

typedef struct state_op {
    long long conversation;
    char *json;
    store_done_fn done;
    void *arg;
} state_op;

static int work_state(store_tx_t *tx, void *arg)
{
    state_op *o = arg;
    sqlite3_stmt *st = store_tx_stmt(tx, "UPDATE conversations SET flow_state = ? WHERE id = ?");
    if (!st)
        return -1;
    bind_opt(st, 1, o->json);
    sqlite3_bind_int64(st, 2, o->conversation);
    return step_done(tx->db, st);
}

static void done_state(void *arg, int rc)
{
    state_op *o = arg;
    if (rc != 0)
        log_error("store", "flow state of conversation %lld not saved", o->conversation);
    if (o->done)
        o->done(o->arg, rc);
    free(o->json);
    free(o);
}

int store_save_flow_state(store_t *s, long long conversation, const char *json, store_done_fn done,
                          void *arg)
{
    state_op *o = calloc(1, sizeof(*o));
    if (!o)
        return -1;
    o->conversation = conversation;
    o->done = done;
    o->arg = arg;
    if (json && !(o->json = strdup(json))) {
        free(o);
        return -1;
    }
    if (store_submit(s, work_state, done_state, o) != 0) {
        free(o->json);
        free(o);
        return -1;
    }
    return 0;
}

/* ---- reads ---- */

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(dst, n, "%s", v ? (const char *)v : "");
}

int store_find_conversation(store_t *s, const char *token, store_conv_t *c)
{
    sqlite3_stmt *st = s->r_find_conv;
    int rc;

    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rc = 1;
    } else if (rc == SQLITE_ROW) {
        memset(c, 0, sizeof(*c));
        c->id = sqlite3_column_int64(st, 0);
        copy_col(c->token, sizeof(c->token), st, 1);
        copy_col(c->customer_id, sizeof(c->customer_id), st, 2);
        copy_col(c->customer_name, sizeof(c->customer_name), st, 3);
        copy_col(c->channel, sizeof(c->channel), st, 4);
        copy_col(c->state, sizeof(c->state), st, 5);
        c->last_seq = sqlite3_column_int64(st, 6);
        const unsigned char *fs = sqlite3_column_text(st, 7);
        c->flow_state = fs ? strdup((const char *)fs) : NULL;
        rc = 0;
    } else {
        log_error("store", "find conversation: %s", sqlite3_errmsg(s->reader));
        rc = -1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int store_due_conversations(store_t *s, double now, int limit, int (*fn)(long long id, void *arg),
                            void *arg)
{
    sqlite3_stmt *st = s->r_due;
    int rc;
    sqlite3_bind_double(st, 1, now);
    sqlite3_bind_int(st, 2, limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(sqlite3_column_int64(st, 0), arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        log_error("store", "due conversations: %s", sqlite3_errmsg(s->reader));
        return -1;
    }
    return 0;
}

typedef struct due_op {
    long long conversation;
    double due;
} due_op;

static int work_due(store_tx_t *tx, void *arg)
{
    due_op *o = arg;
    sqlite3_stmt *st = store_tx_stmt(tx, "UPDATE conversations SET flow_due = ? WHERE id = ?");
    if (!st)
        return -1;
    if (o->due > 0)
        sqlite3_bind_double(st, 1, o->due);
    else
        sqlite3_bind_null(st, 1);
    sqlite3_bind_int64(st, 2, o->conversation);
    return step_done(tx->db, st);
}

static void done_due(void *arg, int rc)
{
    due_op *o = arg;
    if (rc != 0)
        log_error("store", "flow timer of conversation %lld not saved", o->conversation);
    free(o);
}

int store_set_flow_due(store_t *s, long long conversation, double due)
{
    due_op *o = calloc(1, sizeof(*o));
    if (!o)
        return -1;
    o->conversation = conversation;
    o->due = due;
    if (store_submit(s, work_due, done_due, o) != 0) {
        free(o);
        return -1;
    }
    return 0;
}

int store_conversation_token(store_t *s, long long id, char *token)
{
    sqlite3_stmt *st = s->r_token;
    int rc;

    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_col(token, 33, st, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = 1;
    } else {
        log_error("store", "conversation token: %s", sqlite3_errmsg(s->reader));
        rc = -1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int store_find_client_message(store_t *s, long long conversation, const char *client_id,
                              long long *seq)
{
    sqlite3_stmt *st = s->r_find_client;
    int rc;

    sqlite3_bind_int64(st, 1, conversation);
    sqlite3_bind_text(st, 2, client_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = 1;
    } else {
        log_error("store", "find client message: %s", sqlite3_errmsg(s->reader));
        rc = -1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static const char *col(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

int store_replay(store_t *s, long long conversation, long long after, int limit,
                 int (*fn)(const store_event_t *ev, void *arg), void *arg)
{
    sqlite3_stmt *st = s->r_replay;
    int rc;

    sqlite3_bind_int64(st, 1, conversation);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_event_t ev = {0};
        ev.conversation = conversation;
        ev.seq = sqlite3_column_int64(st, 0);
        ev.kind = col(st, 1);
        ev.sender = col(st, 2);
        ev.client_id = col(st, 3);
        ev.text = col(st, 4);
        ev.options = col(st, 5);
        ev.state = col(st, 6);
        ev.detail = col(st, 7);
        snprintf(ev.ts, sizeof(ev.ts), "%s", col(st, 8) ? col(st, 8) : "");
        if (fn(&ev, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        log_error("store", "replay: %s", sqlite3_errmsg(s->reader));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

long long store_max_conversation_id(store_t *s)
{
    long long id = 0;
    if (sqlite3_step(s->r_max_id) == SQLITE_ROW)
        id = sqlite3_column_int64(s->r_max_id, 0);
    sqlite3_reset(s->r_max_id);
    return id;
}
