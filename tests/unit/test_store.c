/*
 * test_store.c - the store's writer thread, its group commit, its checkpointer thread, groups
 * of operations, the deferred wake of an idle writer and delivery without polling
 * (server/store.c) on a real SQLite file.
 *
 * The group-commit tests first commit op 0, so the store counts as busy, then queue ops 1..10
 * five milliseconds apart (well inside the 300 ms group window, well outside one commit).  The
 * checkpoint tests watch the size of the write-ahead log file, on this disk and on one made
 * slow by a VFS whose sync sleeps.  Counts come from
 * store_get_stats() (what /metrics shows); the rows are read back through a second connection
 * after store_close(), so every acknowledged operation is checked to be in the file.
 */
#include "check.h"
#include "config.h"
#include "store.h"
#include "test_scratch.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define NOPS 10

typedef struct rig {
    uv_loop_t loop;
    config_t cfg;
    store_t *store;
    char db[512];
    int order[NOPS + 1]; /* done callbacks, in the order they ran */
    int ndone;
} rig;

typedef struct job {
    rig *r;
    int n;
} job;

/* Runs one statement without parameters in the writer's transaction.  0 or -1. */
static int run_sql(store_tx_t *tx, const char *sql)
{
    sqlite3_stmt *st = store_tx_stmt(tx, sql);
    int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
    if (st)
        sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int work_insert(store_tx_t *tx, void *arg)
{
    job *j = arg;
    if (run_sql(tx, "CREATE TABLE IF NOT EXISTS scratch(n INTEGER)") != 0)
        return -1;
    sqlite3_stmt *st = store_tx_stmt(tx, "INSERT INTO scratch(n) VALUES (?)");
    if (!st)
        return -1;
    sqlite3_bind_int(st, 1, j->n);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void on_done(void *arg, int rc)
{
    job *j = arg;
    CHECK(rc == 0);
    if (j->r->ndone <= NOPS)
        j->r->order[j->r->ndone] = j->n;
    j->r->ndone++;
}

static int rig_open(rig *r, const char *name, const char *group_us, const char *batch_max,
                    const char *checkpoint_pages)
{
    char dir[256], err[512] = "";
    memset(r, 0, sizeof(*r));
    if (scratch_config(&r->cfg, name, dir, sizeof(dir), err, sizeof(err)) != 0 ||
        config_set(&r->cfg, "store.group_commit_us", group_us, err, sizeof(err)) != 0 ||
        config_set(&r->cfg, "store.batch_max", batch_max, err, sizeof(err)) != 0 ||
        config_set(&r->cfg, "store.checkpoint_pages", checkpoint_pages, err, sizeof(err)) != 0 ||
        uv_loop_init(&r->loop) != 0)
        goto fail;
    snprintf(r->db, sizeof(r->db), "%s/%s", dir, r->cfg.db_path);
    if (store_open(&r->store, &r->loop, &r->cfg, NULL, NULL, err, sizeof(err)) != 0)
        goto fail;
    return 0;
fail:
    fprintf(stderr, "rig_open(%s): %s\n", name, err);
    return -1;
}

/* Closes the store and returns how many scratch rows the file holds (-1 on error). */
static int rig_close(rig *r)
{
    store_close(r->store);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
    config_free(&r->cfg);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rows = -1;
    if (sqlite3_open_v2(r->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(DISTINCT n) FROM scratch", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        rows = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rows;
}

/* Commits op 0, then queues ops 1..NOPS one every gap_ms, and runs the loop until all are done.
 * Returns the batches the store committed for ops 1..NOPS. */
static uint64_t run_spaced(rig *r, job *jobs, unsigned gap_ms)
{
    store_stats_t before, after;
    for (int i = 0; i <= NOPS; i++) {
        jobs[i].r = r;
        jobs[i].n = i;
    }
    CHECK(store_submit(r->store, work_insert, on_done, &jobs[0]) == 0);
    while (r->ndone < 1)
        uv_run(&r->loop, UV_RUN_ONCE);
    store_get_stats(r->store, &before); /* op 0 has just committed: the store is busy */
    for (int i = 1; i <= NOPS; i++) {
        CHECK(store_submit(r->store, work_insert, on_done, &jobs[i]) == 0);
        if (i < NOPS)
            uv_sleep(gap_ms);
    }
    while (r->ndone < NOPS + 1)
        uv_run(&r->loop, UV_RUN_ONCE);
    store_get_stats(r->store, &after);
    CHECK(after.ops - before.ops == NOPS);
    CHECK(after.failed_ops == 0);
    for (int i = 0; i <= NOPS; i++)
        CHECK(r->order[i] == i);
    return after.batches - before.batches;
}

/* Opens a store with the given settings, runs the spaced arrivals, checks that every op is in
 * the file, and returns the commits they took (0 when the store could not be opened). */
static uint64_t spaced_commits(const char *name, const char *group_us, const char *batch_max)
{
    rig r;
    job jobs[NOPS + 1];
    if (rig_open(&r, name, group_us, batch_max, "1000") != 0) {
        CHECK(0);
        return 0;
    }
    uint64_t batches = run_spaced(&r, jobs, 5);
    CHECK(rig_close(&r) == NOPS + 1);
    return batches;
}

/* A busy store: ops that arrive within the group window (10 ops 5 ms apart, window 300 ms)
 * share one transaction. */
static void busy_store_commits_arrivals_together(void)
{
    CHECK(spaced_commits("gather", "300000", "512") == 1);
}

/* Without group commit the writer commits what is pending at once: the same arrivals take
 * several transactions. */
static void without_group_commit_each_arrival_commits(void)
{
    CHECK(spaced_commits("nogroup", "0", "512") >= 2);
}

/* batch_max ops pending end the wait: 4 + 4, then the last 2 when the window closes. */
static void a_full_batch_goes_at_once(void)
{
    CHECK(spaced_commits("full", "300000", "4") == 3);
}

/* An idle store does not gather: after a quiet spell longer than the window (1 s), a lone op
 * commits without waiting the window out. */
static void idle_store_commits_at_once(void)
{
    rig r;
    job j[2];
    if (rig_open(&r, "idle", "1000000", "512", "1000") != 0) {
        CHECK(0);
        return;
    }
    for (int i = 0; i < 2; i++) {
        j[i].r = &r;
        j[i].n = i;
    }
    CHECK(store_submit(r.store, work_insert, on_done, &j[0]) == 0);
    while (r.ndone < 1)
        uv_run(&r.loop, UV_RUN_ONCE);
    uv_sleep(1100);
    uint64_t t0 = uv_hrtime();
    CHECK(store_submit(r.store, work_insert, on_done, &j[1]) == 0);
    while (r.ndone < 2)
        uv_run(&r.loop, UV_RUN_ONCE);
    CHECK(uv_hrtime() - t0 < 500 * 1000000ull);
    CHECK(rig_close(&r) == 2);
}

/* Each op adds an 8 KB row (and its scratch row, for rig_close's count). */
static int work_blob(store_tx_t *tx, void *arg)
{
    sqlite3_stmt *st = store_tx_stmt(tx, "CREATE TABLE IF NOT EXISTS blobs(b BLOB)");
    if (!st || sqlite3_step(st) != SQLITE_DONE)
        return -1;
    sqlite3_reset(st);
    st = store_tx_stmt(tx, "INSERT INTO blobs(b) VALUES (randomblob(8192))");
    if (!st || sqlite3_step(st) != SQLITE_DONE)
        return -1;
    sqlite3_reset(st);
    return work_insert(tx, arg);
}

/* ---- a slow disk: a VFS over the default one whose xSync sleeps ----
 * Registered as the default, so the store's connections open through it.  Every other method
 * goes to the real file unchanged (the write-ahead log needs the shared-memory ones). */

static sqlite3_vfs *real_vfs, slow_vfs;
static sqlite3_io_methods slow_io;
#define SLOW_SYNC_MS 4 /* what a sync takes on the slow disk */

typedef struct slow_file {
    sqlite3_file base;
    sqlite3_file *real; /* follows this struct, szOsFile of the real VFS */
} slow_file;

#define REAL(f) (((slow_file *)(f))->real)
static int sf_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}
static int sf_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
    return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int sf_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
    return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int sf_truncate(sqlite3_file *f, sqlite3_int64 n)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), n);
}
/* A sync takes SLOW_SYNC_MS and nothing else: the real disk's sync is left out, as its time on
 * a CI machine busy with other tests' databases varied enough to make the test measure that
 * machine (once a 3 MB log); durability against a power loss is not what is tested here. */
static int sf_sync(sqlite3_file *f, int flags)
{
    (void)f;
    (void)flags;
    uv_sleep(SLOW_SYNC_MS);
    return SQLITE_OK;
}
static int sf_size(sqlite3_file *f, sqlite3_int64 *n)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), n);
}
static int sf_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int sf_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int sf_reserved(sqlite3_file *f, int *r)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), r);
}
static int sf_fcntl(sqlite3_file *f, int op, void *a)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, a);
}
static int sf_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int sf_chars(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int sf_shm_map(sqlite3_file *f, int i, int sz, int ext, void volatile **p)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), i, sz, ext, p);
}
static int sf_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void sf_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int sf_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int slow_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
    (void)vfs;
    slow_file *sf = (slow_file *)f;
    sf->real = (sqlite3_file *)&sf[1];
    int rc = real_vfs->xOpen(real_vfs, name, sf->real, flags, out);
    f->pMethods = rc == SQLITE_OK ? &slow_io : NULL; /* NULL: SQLite does not close it */
    return rc;
}

/* on: every connection opened from now on syncs through a disk that takes SLOW_SYNC_MS a
 * sync (the ones already open keep the disk they have); off: the real VFS is the default. */
static void slow_disk(int on)
{
    if (!real_vfs) {
        real_vfs = sqlite3_vfs_find(NULL);
        slow_vfs = *real_vfs;
        slow_vfs.zName = "slow-disk";
        slow_vfs.szOsFile = (int)sizeof(slow_file) + real_vfs->szOsFile;
        slow_vfs.xOpen = slow_open;
        slow_io = (sqlite3_io_methods){
            .iVersion = 2, /* no memory-mapped fetch: the store does not use mmap */
            .xClose = sf_close,
            .xRead = sf_read,
            .xWrite = sf_write,
            .xTruncate = sf_truncate,
            .xSync = sf_sync,
            .xFileSize = sf_size,
            .xLock = sf_lock,
            .xUnlock = sf_unlock,
            .xCheckReservedLock = sf_reserved,
            .xFileControl = sf_fcntl,
            .xSectorSize = sf_sector,
            .xDeviceCharacteristics = sf_chars,
            .xShmMap = sf_shm_map,
            .xShmLock = sf_shm_lock,
            .xShmBarrier = sf_shm_barrier,
            .xShmUnmap = sf_shm_unmap};
    }
    sqlite3_vfs_register(on ? &slow_vfs : real_vfs, 1);
}

/* Checkpoints leave the writer: store.checkpoint_pages = 16 and 600 commits of 8 KB rows, back
 * to back (about 3,000 log pages, 12 MB, in all).  The checkpointer thread must have run, and
 * the log stay short: it restarts from its start once everything is copied.  With no
 * checkpoint, or none that finishes (the writer's catch-up), the log grows to 6-12 MB.
 * slow: on a slow disk (slow_disk()), where each checkpoint takes long enough
 * for the writer to add more than the catch-up's few pages: the checkpointer is woken again
 * and again, and until the writer took over at 8 times checkpoint_pages the log never
 * restarted (measured at SLOW_SYNC_MS = 4: 3.8-12.4 MB, against 1.0 MB now). */
#define NBLOBS 600
static void keep_the_log_short(int slow)
{
    rig r;
    static job jobs[NBLOBS];
    char wal[600];
    struct stat sb;
    off_t biggest = 0;
    slow_disk(slow);
    int opened = rig_open(&r, slow ? "slowckpt" : "ckpt", "0", "512", "16");
    slow_disk(0);
    if (opened != 0) {
        CHECK(0);
        return;
    }
    snprintf(wal, sizeof(wal), "%s-wal", r.db);
    for (int i = 0; i < NBLOBS; i++) {
        jobs[i].r = &r;
        jobs[i].n = i;
        CHECK(store_submit(r.store, work_blob, on_done, &jobs[i]) == 0);
        while (r.ndone < i + 1)
            uv_run(&r.loop, UV_RUN_ONCE);
        if (stat(wal, &sb) == 0 && sb.st_size > biggest)
            biggest = sb.st_size;
    }
    store_stats_t st;
    store_get_stats(r.store, &st);
    printf("checkpoints%s: %llu by the checkpointer, %llu by the writer; largest log %lld KB\n",
           slow ? " (slow disk)" : "", (unsigned long long)st.checkpoints,
           (unsigned long long)st.writer_checkpoints, (long long)biggest / 1024);
    CHECK(st.checkpoints >= 1);
    CHECK(st.failed_ops == 0);
    CHECK(biggest > 0 && biggest < (slow ? 3 : 4) * 1024 * 1024);
    CHECK(rig_close(&r) == NBLOBS);
}

static void checkpoints_keep_the_log_short(void)
{
    keep_the_log_short(0);
}

static void a_slow_disk_keeps_the_log_short(void)
{
    keep_the_log_short(1);
}

/* ---- groups and the deferred wake ---- */

typedef struct rc_job {
    rig *r;
    int n, rc, done;
} rc_job;

static int work_rc_insert(store_tx_t *tx, void *arg)
{
    rc_job *j = arg;
    job inner = {j->r, j->n};
    return work_insert(tx, &inner);
}

static int work_fail(store_tx_t *tx, void *arg)
{
    (void)tx;
    (void)arg;
    return -1;
}

static void on_rc(void *arg, int rc)
{
    rc_job *j = arg;
    j->rc = rc;
    j->done = ++j->r->ndone; /* the order callbacks ran in */
}

static void run_until(rig *r, int ndone)
{
    while (r->ndone < ndone)
        uv_run(&r->loop, UV_RUN_ONCE);
}

/* Runs the loop's non-blocking passes for ms milliseconds. */
static void spin(rig *r, unsigned ms)
{
    for (unsigned i = 0; i < ms; i++) {
        uv_run(&r->loop, UV_RUN_NOWAIT);
        uv_sleep(1);
    }
}

/* A group reaches the writer only at its end, commits in one transaction, and its callbacks
 * run in the order of submission.  Nested begin/end pairs make one group. */
static void a_group_commits_as_one(void)
{
    rig r;
    rc_job j[3];
    store_stats_t before, after;
    if (rig_open(&r, "group", "0", "512", "1000") != 0) {
        CHECK(0);
        return;
    }
    store_get_stats(r.store, &before);
    store_group_begin(r.store);
    for (int i = 0; i < 3; i++) {
        j[i] = (rc_job){&r, i + 1, 99, 0};
        if (i == 1)
            store_group_begin(r.store);
        CHECK(store_submit(r.store, work_rc_insert, on_rc, &j[i]) == 0);
        if (i == 1)
            store_group_end(r.store);
    }
    spin(&r, 50); /* the inner end did not end the group: nothing is queued yet */
    store_get_stats(r.store, &after);
    CHECK(r.ndone == 0 && after.ops == before.ops);
    store_group_end(r.store);
    run_until(&r, 3);
    store_get_stats(r.store, &after);
    CHECK(after.batches - before.batches == 1);
    CHECK(after.ops - before.ops == 3 && after.failed_ops == 0);
    for (int i = 0; i < 3; i++)
        CHECK(j[i].rc == 0 && j[i].done == i + 1);
    CHECK(rig_close(&r) == 3);
}

/* One failing op fails its whole group: every op of it gets -1 and none of its rows stays,
 * while an op outside the group, in the same transaction, commits. */
static void a_failing_op_fails_its_whole_group(void)
{
    rig r;
    rc_job out, in1, bad, in2;
    store_stats_t before, after;
    if (rig_open(&r, "groupfail", "0", "512", "1000") != 0) {
        CHECK(0);
        return;
    }
    store_get_stats(r.store, &before);
    out = (rc_job){&r, 1, 99, 0};
    in1 = (rc_job){&r, 2, 99, 0};
    bad = (rc_job){&r, 0, 99, 0};
    in2 = (rc_job){&r, 3, 99, 0};
    CHECK(store_submit(r.store, work_rc_insert, on_rc, &out) == 0);
    store_group_begin(r.store);
    CHECK(store_submit(r.store, work_rc_insert, on_rc, &in1) == 0);
    CHECK(store_submit(r.store, work_fail, on_rc, &bad) == 0);
    CHECK(store_submit(r.store, work_rc_insert, on_rc, &in2) == 0);
    store_group_end(r.store);
    run_until(&r, 4);
    store_get_stats(r.store, &after);
    CHECK(out.rc == 0);
    CHECK(in1.rc == -1 && bad.rc == -1 && in2.rc == -1);
    CHECK(in1.done < bad.done && bad.done < in2.done);
    CHECK(after.ops - before.ops == 4 && after.failed_ops - before.failed_ops == 3);
    CHECK(rig_close(&r) == 1); /* only the op outside the group */
}

/* Waits (without running the loop) until the store has run n more ops than in `before`. */
static void wait_ops(rig *r, const store_stats_t *before, uint64_t n)
{
    store_stats_t now;
    for (int i = 0; i < 200; i++) { /* up to 2 s */
        store_get_stats(r->store, &now);
        if (now.ops - before->ops >= n)
            return;
        uv_sleep(10);
    }
    CHECK(!"the writer did not run the ops");
}

/* An idle writer is woken before the loop next polls, not by the submit: what one pass of the
 * loop queues goes in one batch.  A pass that runs long (an op pending for more than a
 * millisecond) wakes it from the next submit. */
static void an_idle_writer_is_woken_by_the_loop(void)
{
    rig r;
    rc_job a, b, c;
    store_stats_t before, after;
    if (rig_open(&r, "kick", "0", "512", "1000") != 0) {
        CHECK(0);
        return;
    }
    a = (rc_job){&r, 1, 99, 0};
    b = (rc_job){&r, 2, 99, 0};
    c = (rc_job){&r, 3, 99, 0};
    uv_sleep(50); /* the writer is asleep */
    store_get_stats(r.store, &before);
    CHECK(store_submit(r.store, work_rc_insert, on_rc, &a) == 0);
    uv_sleep(100); /* the loop does not run: the writer must not have been woken */
    store_get_stats(r.store, &after);
    CHECK(after.batches == before.batches);
    run_until(&r, 1);
    store_get_stats(r.store, &after);
    CHECK(a.rc == 0 && after.batches - before.batches == 1);

    uv_sleep(50);
    store_get_stats(r.store, &before);
    CHECK(store_submit(r.store, work_rc_insert, on_rc, &b) == 0);
    uv_sleep(5);
    CHECK(store_submit(r.store, work_rc_insert, on_rc, &c) == 0); /* b is 5 ms old: wake */
    wait_ops(&r, &before, 2); /* still without running the loop */
    store_get_stats(r.store, &after);
    CHECK(after.ops - before.ops == 2);
    run_until(&r, 3);
    CHECK(b.rc == 0 && c.rc == 0);
    CHECK(rig_close(&r) == 3);
}

static rc_job nested[2];

/* A done callback that, in the middle of the delivery, has two more ops committed and asks for
 * a delivery again: they must wait for the outer delivery to end (order of callbacks). */
static void on_rc_deliver_again(void *arg, int rc)
{
    rc_job *j = arg;
    store_stats_t before;
    on_rc(arg, rc);
    store_get_stats(j->r->store, &before);
    CHECK(store_submit(j->r->store, work_rc_insert, on_rc, &nested[0]) == 0);
    uv_sleep(5);
    CHECK(store_submit(j->r->store, work_rc_insert, on_rc, &nested[1]) == 0); /* wakes it */
    wait_ops(j->r, &before, 2);
    store_deliver(j->r->store);
    CHECK(nested[0].done == 0 && nested[1].done == 0);
}

/* store_deliver() runs the callbacks of what has committed at once, without the loop polling
 * for the writer's wake-up; in order; once (the wake-up that follows finds nothing); and not
 * from inside a callback. */
static void committed_ops_are_delivered_without_polling(void)
{
    rig r;
    rc_job a, b, x, y;
    store_stats_t before;
    if (rig_open(&r, "deliver", "0", "512", "1000") != 0) {
        CHECK(0);
        return;
    }
    a = (rc_job){&r, 1, 99, 0};
    b = (rc_job){&r, 2, 99, 0};
    uv_sleep(50);           /* the writer is asleep */
    store_deliver(r.store); /* nothing has finished: nothing to do */
    store_get_stats(r.store, &before);
    CHECK(store_submit(r.store, work_rc_insert, on_rc, &a) == 0);
    uv_sleep(5);
    CHECK(store_submit(r.store, work_rc_insert, on_rc, &b) == 0); /* a is 5 ms old: wake */
    wait_ops(&r, &before, 2);
    uv_sleep(20);
    CHECK(r.ndone == 0); /* committed, but the loop has not run */
    store_deliver(r.store);
    CHECK(r.ndone == 2 && a.rc == 0 && b.rc == 0 && a.done == 1 && b.done == 2);
    store_deliver(r.store);
    spin(&r, 20); /* the async wake-up of the commit runs, and finds nothing */
    CHECK(r.ndone == 2);

    x = (rc_job){&r, 3, 99, 0};
    y = (rc_job){&r, 4, 99, 0};
    nested[0] = (rc_job){&r, 5, 99, 0};
    nested[1] = (rc_job){&r, 6, 99, 0};
    store_get_stats(r.store, &before);
    CHECK(store_submit(r.store, work_rc_insert, on_rc_deliver_again, &x) == 0);
    uv_sleep(5);
    CHECK(store_submit(r.store, work_rc_insert, on_rc, &y) == 0);
    wait_ops(&r, &before, 2);
    store_deliver(r.store);
    CHECK(x.done == 3 && y.done == 4); /* y before the ops committed during x's callback */
    run_until(&r, 6);
    CHECK(nested[0].done == 5 && nested[1].done == 6);
    CHECK(x.rc == 0 && y.rc == 0 && nested[0].rc == 0 && nested[1].rc == 0);
    CHECK(rig_close(&r) == 6);
}

/* Conversation 7's row in the file at path has these last_seq, updated_at and flow_state. */
static int row_is(const char *path, long long seq, const char *ts, const char *state)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ok = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT last_seq, updated_at, flow_state FROM conversations"
                           " WHERE id = 7",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *at = (const char *)sqlite3_column_text(st, 1);
        const char *fs = (const char *)sqlite3_column_text(st, 2);
        ok = sqlite3_column_int64(st, 0) == seq && at && strcmp(at, ts) == 0 && fs &&
             strcmp(fs, state) == 0;
        if (!ok)
            fprintf(stderr, "row: %lld %s %s\n", (long long)sqlite3_column_int64(st, 0),
                    at ? at : "NULL", fs ? fs : "NULL");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

/* A turn's events and its flow state, in one group, leave the conversation's row as one write
 * each would: the highest seq, the last event's time, the state; also with an event stored
 * after the state (the events' row update is held to the group's end, "A turn's row update"). */
static void a_turn_leaves_its_row_as_each_write_would(void)
{
    rig r;
    rc_job made = {&r, 1, 99, 0}, saved[2] = {{&r, 2, 99, 0}, {&r, 3, 99, 0}};
    rc_job evj[5];
    store_event_t ev[5];
    if (rig_open(&r, "turnrow", "0", "512", "1000") != 0) {
        CHECK(0);
        return;
    }
    store_conv_t c = {.id = 7, .token = "t-turnrow", .customer_id = "u-1", .channel = "web"};
    CHECK(store_create_conversation(r.store, &c, on_rc, &made) == 0);
    run_until(&r, 1);
    CHECK(made.rc == 0);
    for (int i = 0; i < 5; i++) {
        ev[i] = (store_event_t){.conversation = 7,
                                .seq = i + 1,
                                .kind = "message",
                                .sender = i % 2 ? "bot" : "customer",
                                .text = "text"};
        snprintf(ev[i].ts, sizeof(ev[i].ts), "2026-11-28T08:00:0%d.000Z", i + 1);
        evj[i] = (rc_job){&r, 4 + i, 99, 0};
    }
    /* group 1: two events, the state, one more event after it */
    store_group_begin(r.store);
    CHECK(store_append_event(r.store, &ev[0], on_rc, &evj[0]) == 0);
    CHECK(store_append_event(r.store, &ev[1], on_rc, &evj[1]) == 0);
    CHECK(store_save_flow_state(r.store, 7, "{\"step\":\"a\"}", on_rc, &saved[0]) == 0);
    CHECK(store_append_event(r.store, &ev[2], on_rc, &evj[2]) == 0);
    store_group_end(r.store);
    run_until(&r, 5);
    CHECK(row_is(r.db, 3, "2026-11-28T08:00:03.000Z", "{\"step\":\"a\"}"));
    /* group 2: events, then the state */
    store_group_begin(r.store);
    CHECK(store_append_event(r.store, &ev[3], on_rc, &evj[3]) == 0);
    CHECK(store_append_event(r.store, &ev[4], on_rc, &evj[4]) == 0);
    CHECK(store_save_flow_state(r.store, 7, "{\"step\":\"b\"}", on_rc, &saved[1]) == 0);
    store_group_end(r.store);
    run_until(&r, 8);
    for (int i = 0; i < 5; i++)
        CHECK(evj[i].rc == 0);
    CHECK(saved[0].rc == 0 && saved[1].rc == 0);
    CHECK(rig_close(&r) == -1); /* (no scratch table here) */
    CHECK(row_is(r.db, 5, "2026-11-28T08:00:05.000Z", "{\"step\":\"b\"}"));
}

/* Rewrites every row of a 64-row table of 2 KB texts: some 64 pages that a savepoint must be
 * able to put back. */
static int work_rewrite(store_tx_t *tx, void *arg)
{
    rc_job *j = arg;
    if (run_sql(tx, "CREATE TABLE IF NOT EXISTS wide(n INTEGER PRIMARY KEY, pad TEXT)") != 0 ||
        run_sql(tx, "INSERT INTO wide(n, pad) WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL"
                    " SELECT n + 1 FROM k WHERE n < 64) SELECT n, '' FROM k"
                    " WHERE NOT EXISTS (SELECT 1 FROM wide)") != 0)
        return -1;
    sqlite3_stmt *st =
        store_tx_stmt(tx, "UPDATE wide SET pad = printf('%.*c', 2000, char(64 + ?))");
    if (!st)
        return -1;
    sqlite3_bind_int(st, 1, j->n);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? work_rc_insert(tx, arg) : -1;
}

/* A group that rewrites more than SQLite's 64 KiB of statement journal keeps that journal in
 * memory (the writer's temp_store=MEMORY): no temporary file is made for it.  Before, every such
 * transaction created, wrote and deleted one in SQLITE_TMPDIR (main() points that at a directory
 * this test watches), and those writes were half the writer's pwrite calls under load. */
static void a_large_group_writes_no_temporary_file(void)
{
    rig r;
    rc_job j[3];
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/sqlite-tmp", tmpdir);
    int fd = inotify_init1(IN_NONBLOCK);
    CHECK(fd >= 0 && inotify_add_watch(fd, dir, IN_CREATE) >= 0);
    if (rig_open(&r, "largegroup", "0", "512", "1000") != 0) {
        CHECK(0);
        return;
    }
    for (int i = 0; i < 3; i++) { /* the first creates the rows, the next two rewrite them */
        j[i] = (rc_job){&r, i + 1, 99, 0};
        store_group_begin(r.store);
        CHECK(store_submit(r.store, work_rewrite, on_rc, &j[i]) == 0);
        store_group_end(r.store);
        run_until(&r, i + 1);
        CHECK(j[i].rc == 0);
    }
    CHECK(rig_close(&r) == 3);
    char ev[4096];
    ssize_t n = read(fd, ev, sizeof(ev));
    if (n > 0)
        fprintf(stderr, "a temporary file was made: %s\n", ((struct inotify_event *)ev)->name);
    CHECK(n < 0);
    close(fd);
}

int main(void)
{
    char sqlite_tmp[600];
    if (scratch_make() != 0) {
        perror("mkdtemp");
        return 1;
    }
    /* before SQLite first initializes, which is when it reads the variable */
    snprintf(sqlite_tmp, sizeof(sqlite_tmp), "%s/sqlite-tmp", tmpdir);
    if (mkdir(sqlite_tmp, 0700) != 0 || setenv("SQLITE_TMPDIR", sqlite_tmp, 1) != 0) {
        perror(sqlite_tmp);
        return 1;
    }
    RUN(busy_store_commits_arrivals_together);
    RUN(without_group_commit_each_arrival_commits);
    RUN(a_full_batch_goes_at_once);
    RUN(idle_store_commits_at_once);
    RUN(checkpoints_keep_the_log_short);
    RUN(a_slow_disk_keeps_the_log_short);
    RUN(a_group_commits_as_one);
    RUN(a_failing_op_fails_its_whole_group);
    RUN(a_large_group_writes_no_temporary_file);
    RUN(a_turn_leaves_its_row_as_each_write_would);
    RUN(an_idle_writer_is_woken_by_the_loop);
    RUN(committed_ops_are_delivered_without_polling);
    scratch_remove();
    return check_summary();
}
