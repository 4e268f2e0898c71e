/*
 * agent_store.c - the tables behind escalation and hand-off (issue 5) and their writes.
 *
 * What it owns
 *   The agent tables in the store's SQLite file, their schema version, the write operations on
 *   them (run on the store's writer thread) and the row reads the queue needs at start-up.  The
 *   JSON views for the console (the context packet, canned replies) live in agent_ctx.c, whose
 *   builder an agent_store_t owns.
 *
 * Tables (schema version 1, kept in agent_meta like kb_meta: the store and the kb have their
 * own migrations in the same file, so each module versions its own tables)
 *   agent_meta       name -> value: schema_version
 *   handoffs         one row per escalation; state queued | callback | active | resolved |
 *                    handed_back; times are epoch seconds (REAL, NULL = never / none); summary
 *                    is the flow's escalation summary JSON; resolution is set by a resolve
 *   agent_notes      private notes of agents, per conversation, in id order
 *   canned_replies   stock replies for the console, seeded once when the table is created
 *   complaints       one complaint record per conversation: number TS<yyyymmdd>-<id>, status,
 *                    owner, promised call-back time
 *   agent_events_internal
 *                    a partial index on the store's events table (internal events by
 *                    conversation and kind) so the context packet reads the flow's `record` and
 *                    `escalation` events by index
 *   agent_store_migrate() applies migrations[] above the stored version in one transaction; add
 *   new steps at the end, never edit a shipped one.
 *
 * Life of a write
 *   agent_store_insert() / _update() / _note() / _record() / _case()
 *       loop thread: copies the caller's strings into an op, store_submit()
 *   work_*()      writer thread, inside the op's savepoint: cached statements (store_tx_stmt)
 *   done_*()      loop thread after COMMIT: the caller's done(arg, rc), then the op is freed
 *   A function that returns -1 queued nothing and never calls done.
 *
 * Reads run on the loop thread through statements prepared on the store's reader connection
 * by agent_store_new(), each an indexed lookup (handoffs_open, handoffs_conversation, the
 * messages primary key).
 */
#include "agent_store.h"

#include "kb.h"
#include "log.h"
#include "schema.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MODULE "agent"

struct agent_store {
    store_t *store;
    sqlite3 *db; /* the store's reader */
    sqlite3_stmt *max_id, *open, *last_text;
    agent_ctx_t *ctx;
};

/* ---- schema ---- */

/* Schema steps; migrations[i] takes the agent tables from version i to i + 1. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE IF NOT EXISTS handoffs (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  conversation_id INTEGER NOT NULL REFERENCES conversations(id),\n"
    "  state TEXT NOT NULL CHECK (state IN\n"
    "    ('queued', 'callback', 'active', 'resolved', 'handed_back')),\n"
    "  reason TEXT NOT NULL DEFAULT '',\n"
    "  priority INTEGER NOT NULL DEFAULT 1,\n"
    "  grp TEXT NOT NULL DEFAULT 'general',\n"
    "  agent TEXT NOT NULL DEFAULT '',\n"
    "  record TEXT NOT NULL DEFAULT '',\n"
    "  summary TEXT NOT NULL DEFAULT '{}',\n"
    "  resolution TEXT,\n"
    "  queued_at REAL NOT NULL,\n"
    "  claimed_at REAL,\n"
    "  ended_at REAL,\n"
    "  due REAL,\n"
    "  transfers INTEGER NOT NULL DEFAULT 0,\n"
    "  created_at TEXT NOT NULL);\n"
    "CREATE INDEX IF NOT EXISTS handoffs_open ON handoffs(id)\n"
    "  WHERE state IN ('queued', 'callback', 'active');\n"
    "CREATE INDEX IF NOT EXISTS handoffs_conversation ON handoffs(conversation_id);\n"
    "CREATE TABLE IF NOT EXISTS agent_notes (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  conversation_id INTEGER NOT NULL REFERENCES conversations(id),\n"
    "  author TEXT NOT NULL,\n"
    "  text TEXT NOT NULL,\n"
    "  created_at REAL NOT NULL);\n"
    "CREATE INDEX IF NOT EXISTS agent_notes_conversation ON agent_notes(conversation_id);\n"
    "CREATE TABLE IF NOT EXISTS canned_replies (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  grp TEXT NOT NULL DEFAULT '',\n" /* '' = every group */
    "  title TEXT NOT NULL,\n"
    "  text TEXT NOT NULL,\n"
    "  position INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE TABLE IF NOT EXISTS complaints (\n"
    "  conversation_id INTEGER PRIMARY KEY REFERENCES conversations(id),\n"
    "  number TEXT NOT NULL UNIQUE,\n"
    "  category TEXT NOT NULL DEFAULT '',\n"
    "  severity INTEGER NOT NULL DEFAULT 0,\n"
    "  status TEXT NOT NULL,\n"
    "  owner TEXT NOT NULL DEFAULT '',\n"
    "  due REAL,\n"
    "  created_at REAL NOT NULL,\n"
    "  updated_at REAL NOT NULL);\n"
    "CREATE INDEX IF NOT EXISTS agent_events_internal ON events(conversation_id, kind)\n"
    "  WHERE seq IS NULL;\n"
    "INSERT INTO canned_replies(grp, title, text, position) VALUES\n"
    "  ('', '问候', '您好，我是人工客服，很高兴为您服务。您之前反映的情况我已经看过了，"
    "接下来由我为您处理。', 1),\n"
    "  ('', '核对订单号', '为了尽快帮您查询，麻烦您提供一下订单号（或交易流水号），谢谢！', 2),\n"
    "  ('', '补充情况', '麻烦您再补充一下问题发生的时间和具体经过，方便我为您核实。', 3),\n"
    "  ('', '致歉', "
    "'非常抱歉给您带来了不便，您的心情我完全理解，我一定尽力帮您把这个问题处理好。', "
    "4),\n"
    "  ('', '请稍候', '我正在为您查询核实，大约需要两三分钟，请您稍等，先不要离开。', 5),\n"
    "  ('', '承诺回复', '这个问题需要相关部门进一步核实，我会在【时间】前联系您并告知处理结果，"
    "请您保持电话畅通。', 6),\n"
    "  ('', '投诉已登记', "
    "'您的投诉已经登记，投诉单号是【单号】，之后可以凭这个单号查询处理进度。', "
    "7),\n"
    "  ('', '提出方案', '经过核实，我们可以为您【处理方案】，您看这样处理可以吗？', 8),\n"
    "  ('', '转接', '您的问题需要由负责的同事为您处理，我现在为您转接，请稍候片刻。', 9),\n"
    "  ('', '感谢理解', '感谢您的耐心和理解，也谢谢您的反馈，我们会继续改进。', 10),\n"
    "  ('', '结束语', '请问还有其他可以帮您的吗？如果没有的话，稍后请您对本次服务做个评价，"
    "祝您生活愉快！', 11);\n",
    /* 2: complaint records' lifecycle, deadlines and follow-up (complaint.c, issue 6) */
    "ALTER TABLE complaints ADD COLUMN channel TEXT NOT NULL DEFAULT '';\n"
    "ALTER TABLE complaints ADD COLUMN ack_due REAL;\n"
    "ALTER TABLE complaints ADD COLUMN answer_due REAL;\n"
    "ALTER TABLE complaints ADD COLUMN resolve_due REAL;\n"
    "ALTER TABLE complaints ADD COLUMN acked_at REAL;\n"
    "ALTER TABLE complaints ADD COLUMN answered_at REAL;\n"
    "ALTER TABLE complaints ADD COLUMN resolved_at REAL;\n"
    "ALTER TABLE complaints ADD COLUMN closed_at REAL;\n"
    "ALTER TABLE complaints ADD COLUMN resolve_from REAL;\n"
    "ALTER TABLE complaints ADD COLUMN callback_due REAL;\n"
    "ALTER TABLE complaints ADD COLUMN breached INTEGER NOT NULL DEFAULT 0;\n"
    "ALTER TABLE complaints ADD COLUMN warned INTEGER NOT NULL DEFAULT 0;\n"
    "ALTER TABLE complaints ADD COLUMN escalated INTEGER NOT NULL DEFAULT 0;\n"
    "ALTER TABLE complaints ADD COLUMN reopened INTEGER NOT NULL DEFAULT 0;\n"
    "CREATE INDEX complaints_open ON complaints(status) WHERE status <> 'closed';\n"
    "CREATE INDEX complaints_created ON complaints(created_at);\n"
    "CREATE TABLE complaint_events (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  conversation_id INTEGER NOT NULL REFERENCES conversations(id),\n"
    "  from_status TEXT,\n"
    "  to_status TEXT NOT NULL,\n"
    "  actor TEXT NOT NULL,\n"
    "  note TEXT,\n"
    "  at REAL NOT NULL);\n"
    "CREATE INDEX complaint_events_conv ON complaint_events(conversation_id, id);\n"
    "CREATE INDEX complaint_events_at ON complaint_events(at);\n"
    "CREATE TABLE surveys (\n"
    "  conversation_id INTEGER PRIMARY KEY REFERENCES conversations(id),\n"
    "  solved INTEGER,\n"
    "  csat INTEGER CHECK (csat BETWEEN 1 AND 5),\n"
    "  nps INTEGER CHECK (nps BETWEEN 0 AND 10),\n"
    "  comment TEXT,\n"
    "  asked_at REAL,\n"
    "  answered_at REAL);\n"
    "CREATE INDEX surveys_pending ON surveys(asked_at) WHERE answered_at IS NULL;\n",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

int agent_store_migrate(sqlite3 *db, char *err, size_t errlen)
{
    return schema_migrate(db, "agent", migrations, SCHEMA_VERSION, err, errlen);
}

/* ---- states ---- */

static const char *const hstate_names[] = {NULL,     "queued",   "callback",
                                           "active", "resolved", "handed_back"};

const char *agent_hstate_name(agent_hstate_t st)
{
    return st >= AGENT_QUEUED && st <= AGENT_HANDED_BACK ? hstate_names[st] : NULL;
}

agent_hstate_t agent_hstate_parse(const char *name)
{
    for (int i = AGENT_QUEUED; name && i <= AGENT_HANDED_BACK; i++)
        if (strcmp(hstate_names[i], name) == 0)
            return (agent_hstate_t)i;
    return (agent_hstate_t)0;
}

void agent_record_number(long long conversation, double when, char *out, size_t outlen)
{
    time_t local = (time_t)floor(when) + 8 * 3600; /* the record's date is China time (UTC+8) */
    struct tm tm;
    gmtime_r(&local, &tm);
    /* the fields reduced to their widths, so that the compiler sees 32 bytes always suffice */
    snprintf(out, outlen, "TS%04u%02u%02u-%06lld", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u, conversation);
}

/* ---- reader ---- */

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        log_error(MODULE, "prepare failed: %s in: %.80s", sqlite3_errmsg(db), sql);
        return -1;
    }
    return 0;
}

static void finish(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

agent_store_t *agent_store_new(store_t *s)
{
    agent_store_t *as = calloc(1, sizeof(*as));
    if (!as) {
        log_error(MODULE, "out of memory");
        return NULL;
    }
    as->store = s;
    as->db = store_reader(s);
    if (prepare(as->db, "SELECT COALESCE(MAX(id), 0) FROM handoffs", &as->max_id) != 0 ||
        prepare(as->db,
                "SELECT id, conversation_id, state, reason, priority, grp, agent, record,"
                " queued_at, COALESCE(claimed_at, 0), COALESCE(ended_at, 0), COALESCE(due, 0),"
                " transfers, summary FROM handoffs"
                " WHERE state IN ('queued', 'callback', 'active') ORDER BY id",
                &as->open) != 0 ||
        prepare(as->db,
                "SELECT text FROM messages WHERE conversation_id = ? AND sender = 'customer'"
                " ORDER BY seq DESC LIMIT 1",
                &as->last_text) != 0 ||
        !(as->ctx = agent_ctx_new(as->db))) {
        agent_store_free(as);
        return NULL;
    }
    return as;
}

void agent_store_free(agent_store_t *as)
{
    if (!as)
        return;
    sqlite3_finalize(as->max_id);
    sqlite3_finalize(as->open);
    sqlite3_finalize(as->last_text);
    agent_ctx_free(as->ctx);
    free(as);
}

long long agent_store_max_handoff_id(agent_store_t *as)
{
    long long id = -1;
    if (sqlite3_step(as->max_id) == SQLITE_ROW)
        id = sqlite3_column_int64(as->max_id, 0);
    else
        log_error(MODULE, "max hand-off id: %s", sqlite3_errmsg(as->db));
    finish(as->max_id);
    return id;
}

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(dst, n, "%s", v ? (const char *)v : "");
}

int agent_store_load_open(agent_store_t *as, int (*fn)(const agent_handoff_row_t *r, void *arg),
                          void *arg)
{
    sqlite3_stmt *st = as->open;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        agent_handoff_row_t r;
        memset(&r, 0, sizeof(r));
        r.id = sqlite3_column_int64(st, 0);
        r.conversation = sqlite3_column_int64(st, 1);
        r.state = agent_hstate_parse((const char *)sqlite3_column_text(st, 2));
        copy_col(r.reason, sizeof(r.reason), st, 3);
        r.priority = sqlite3_column_int(st, 4);
        copy_col(r.group, sizeof(r.group), st, 5);
        copy_col(r.agent, sizeof(r.agent), st, 6);
        copy_col(r.record, sizeof(r.record), st, 7);
        r.queued_at = sqlite3_column_double(st, 8);
        r.claimed_at = sqlite3_column_double(st, 9);
        r.ended_at = sqlite3_column_double(st, 10);
        r.due = sqlite3_column_double(st, 11);
        r.transfers = sqlite3_column_int(st, 12);
        r.summary = (const char *)sqlite3_column_text(st, 13);
        if (fn(&r, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        log_error(MODULE, "load open hand-offs: %s", sqlite3_errmsg(as->db));
    finish(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

char *agent_store_last_text(agent_store_t *as, long long conversation)
{
    sqlite3_stmt *st = as->last_text;
    char *text = NULL;
    int rc;

    sqlite3_bind_int64(st, 1, conversation);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        text = strdup(v ? v : "");
    } else if (rc != SQLITE_DONE) {
        log_error(MODULE, "last text: %s", sqlite3_errmsg(as->db));
    }
    finish(st);
    return text;
}

char *agent_store_context(agent_store_t *as, long long conversation)
{
    return agent_ctx_packet(as->ctx, conversation);
}

char *agent_store_canned(agent_store_t *as)
{
    return agent_ctx_canned(as->ctx);
}

/* ---- writes ---- */

static int step_done(store_tx_t *tx, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        log_error(MODULE, "%s: %s", what, sqlite3_errmsg(store_tx_db(tx)));
        return -1;
    }
    return 0;
}

/* Binds t (epoch seconds) or NULL when t is 0. */
static void bind_time(sqlite3_stmt *st, int i, double t)
{
    if (t > 0)
        sqlite3_bind_double(st, i, t);
    else
        sqlite3_bind_null(st, i);
}

/* A hand-off insert or update: the row with its own copies of the borrowed strings. */
typedef struct row_op {
    agent_handoff_row_t r;
    char *summary, *resolution;
    char created[32];
    store_done_fn done;
    void *arg;
} row_op;

static int work_insert(store_tx_t *tx, void *arg)
{
    row_op *o = arg;
    sqlite3_stmt *st = store_tx_stmt(
        tx, "INSERT INTO handoffs(id, conversation_id, state, reason, priority, grp, agent, record,"
            " summary, queued_at, claimed_at, ended_at, due, transfers, created_at)"
            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, o->r.id);
    sqlite3_bind_int64(st, 2, o->r.conversation);
    sqlite3_bind_text(st, 3, agent_hstate_name(o->r.state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, o->r.reason, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, o->r.priority);
    sqlite3_bind_text(st, 6, o->r.group[0] ? o->r.group : "general", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, o->r.agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, o->r.record, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, o->summary ? o->summary : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 10, o->r.queued_at);
    bind_time(st, 11, o->r.claimed_at);
    bind_time(st, 12, o->r.ended_at);
    bind_time(st, 13, o->r.due);
    sqlite3_bind_int(st, 14, o->r.transfers);
    sqlite3_bind_text(st, 15, o->created, -1, SQLITE_STATIC);
    return step_done(tx, st, "hand-off insert");
}

static int work_update(store_tx_t *tx, void *arg)
{
    row_op *o = arg;
    sqlite3_stmt *st = store_tx_stmt(
        tx, "UPDATE handoffs SET state = ?2, agent = ?3, record = ?4, claimed_at = ?5,"
            " ended_at = ?6, due = ?7, transfers = ?8, queued_at = ?9, grp = ?10,"
            " resolution = COALESCE(?11, resolution) WHERE id = ?1");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, o->r.id);
    sqlite3_bind_text(st, 2, agent_hstate_name(o->r.state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, o->r.agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, o->r.record, -1, SQLITE_STATIC);
    bind_time(st, 5, o->r.claimed_at);
    bind_time(st, 6, o->r.ended_at);
    bind_time(st, 7, o->r.due);
    sqlite3_bind_int(st, 8, o->r.transfers);
    sqlite3_bind_double(st, 9, o->r.queued_at);
    sqlite3_bind_text(st, 10, o->r.group[0] ? o->r.group : "general", -1, SQLITE_STATIC);
    if (o->resolution)
        sqlite3_bind_text(st, 11, o->resolution, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 11);
    if (step_done(tx, st, "hand-off update") != 0)
        return -1;
    if (sqlite3_changes(store_tx_db(tx)) != 1) {
        log_error(MODULE, "hand-off update: no hand-off %lld", o->r.id);
        return -1;
    }
    return 0;
}

static void done_row(void *arg, int rc)
{
    row_op *o = arg;
    if (rc != 0)
        log_error(MODULE, "hand-off %lld of conversation %lld not saved", o->r.id,
                  o->r.conversation);
    if (o->done)
        o->done(o->arg, rc);
    free(o->summary);
    free(o->resolution);
    free(o);
}

static int submit_row(store_t *s, const agent_handoff_row_t *r, int insert, store_done_fn done,
                      void *arg)
{
    if (!agent_hstate_name(r->state))
        return -1;
    row_op *o = calloc(1, sizeof(*o));
    if (!o)
        return -1;
    o->r = *r;
    o->r.summary = o->r.resolution = NULL;
    util_iso_now(o->created, sizeof(o->created));
    o->done = done;
    o->arg = arg;
    if ((insert && r->summary && !(o->summary = strdup(r->summary))) ||
        (!insert && r->resolution && !(o->resolution = strdup(r->resolution))) ||
        store_submit(s, insert ? work_insert : work_update, done_row, o) != 0) {
        free(o->summary);
        free(o->resolution);
        free(o);
        return -1;
    }
    return 0;
}

int agent_store_insert(store_t *s, const agent_handoff_row_t *r, store_done_fn done, void *arg)
{
    return submit_row(s, r, 1, done, arg);
}

int agent_store_update(store_t *s, const agent_handoff_row_t *r, store_done_fn done, void *arg)
{
    return submit_row(s, r, 0, done, arg);
}

/* Notes, complaint records and past cases: a conversation and a few owned strings. */
typedef struct text_op {
    long long conversation;
    char *a, *b, *c, *d, *e; /* note: author, text; record: number, category, status, owner;
                                case: summary, category, tried, resolution, outcome */
    int severity;
    double ts, due;
    long long case_id;
    store_done_fn done;
    void *arg;
} text_op;

static void text_free(text_op *o)
{
    free(o->a);
    free(o->b);
    free(o->c);
    free(o->d);
    free(o->e);
    free(o);
}

/* Copies s (NULL as "") into *dst.  0 or -1 when out of memory. */
static int dup_into(char **dst, const char *s)
{
    *dst = strdup(s ? s : "");
    return *dst ? 0 : -1;
}

static void done_text(void *arg, int rc)
{
    text_op *o = arg;
    if (o->done)
        o->done(o->arg, rc);
    text_free(o);
}

static int work_note(store_tx_t *tx, void *arg)
{
    text_op *o = arg;
    sqlite3_stmt *st = store_tx_stmt(tx, "INSERT INTO agent_notes(conversation_id, author, text,"
                                         " created_at) VALUES (?, ?, ?, ?)");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, o->conversation);
    sqlite3_bind_text(st, 2, o->a, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, o->b, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, o->ts);
    return step_done(tx, st, "note insert");
}

int agent_store_note(store_t *s, long long conversation, const char *author, const char *text,
                     double ts, store_done_fn done, void *arg)
{
    text_op *o = calloc(1, sizeof(*o));
    if (!o)
        return -1;
    o->conversation = conversation;
    o->ts = ts;
    o->done = done;
    o->arg = arg;
    if (dup_into(&o->a, author) != 0 || dup_into(&o->b, text) != 0 ||
        store_submit(s, work_note, done_text, o) != 0) {
        text_free(o);
        return -1;
    }
    return 0;
}

static int work_record(store_tx_t *tx, void *arg)
{
    text_op *o = arg;
    sqlite3_stmt *st = store_tx_stmt(
        tx,
        "INSERT INTO complaints(conversation_id, number, category, severity, status, owner,"
        " due, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)"
        " ON CONFLICT(conversation_id) DO UPDATE SET"
        " category = CASE WHEN excluded.category <> '' THEN excluded.category ELSE category END,"
        " severity = CASE WHEN excluded.severity > 0 THEN excluded.severity ELSE severity END,"
        " status = excluded.status, owner = excluded.owner, due = excluded.due,"
        " updated_at = excluded.updated_at");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, o->conversation);
    sqlite3_bind_text(st, 2, o->a, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, o->b, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, o->severity);
    sqlite3_bind_text(st, 5, o->c, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, o->d, -1, SQLITE_STATIC);
    bind_time(st, 7, o->due);
    sqlite3_bind_double(st, 8, o->ts);
    return step_done(tx, st, "complaint record");
}

int agent_store_record(store_t *s, long long conversation, const char *number, const char *category,
                       int severity, const char *status, const char *owner, double due,
                       store_done_fn done, void *arg)
{
    char num[32];
    if (!status || !*status)
        return -1;
    text_op *o = calloc(1, sizeof(*o));
    if (!o)
        return -1;
    o->conversation = conversation;
    o->severity = severity > 0 ? severity : 0;
    o->due = due;
    o->ts = util_wall_s();
    o->done = done;
    o->arg = arg;
    if (!number || !*number) {
        agent_record_number(conversation, o->ts, num, sizeof(num));
        number = num;
    }
    if (dup_into(&o->a, number) != 0 || dup_into(&o->b, category) != 0 ||
        dup_into(&o->c, status) != 0 || dup_into(&o->d, owner) != 0 ||
        store_submit(s, work_record, done_text, o) != 0) {
        text_free(o);
        return -1;
    }
    return 0;
}

static int work_case(store_tx_t *tx, void *arg)
{
    text_op *o = arg;
    int rc = kb_case_add(store_tx_db(tx), o->a, o->b, o->c, o->d, o->e, 0, &o->case_id);
    if (rc != 0)
        log_error(MODULE, "past case not saved (%d): %s", rc,
                  rc == KB_ERR_DB ? sqlite3_errmsg(store_tx_db(tx)) : "invalid field");
    return rc;
}

static void done_case(void *arg, int rc)
{
    text_op *o = arg;
    if (rc == 0)
        rc = o->case_id > 0 && o->case_id <= 0x7fffffff ? (int)o->case_id : -1;
    else if (rc > 0)
        rc = -1;
    if (o->done)
        o->done(o->arg, rc);
    text_free(o);
}

/* A copy of s cut to at most max code points (s is valid UTF-8), or NULL. */
static char *dup_chars(const char *s, size_t max)
{
    size_t n = 0, i = 0;
    s = s ? s : "";
    for (; s[i]; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80 && n++ == max)
            break;
    return strndup(s, i);
}

/* The knowledge base's outcome for the protocol's (kb_cases allows resolved, partial,
 * unresolved), or NULL. */
static const char *kb_outcome(const char *outcome)
{
    if (!outcome || !*outcome || strcmp(outcome, "accepted") == 0 ||
        strcmp(outcome, "resolved") == 0)
        return "resolved";
    if (strcmp(outcome, "partial") == 0)
        return "partial";
    if (strcmp(outcome, "refused") == 0 || strcmp(outcome, "unresolved") == 0)
        return "unresolved";
    return NULL;
}

int agent_store_case(store_t *s, const char *summary, const char *category, const char *tried,
                     const char *resolution, const char *outcome, store_done_fn done, void *arg)
{
    const char *kbo = kb_outcome(outcome);
    if (!kbo)
        return -1;
    if (!category || !kb_category_name(category))
        category = "general";
    text_op *o = calloc(1, sizeof(*o));
    if (!o)
        return -1;
    o->done = done;
    o->arg = arg;
    /* the kb's limits: summary 2000 characters, tried and resolution 4000 */
    if (!(o->a = dup_chars(summary, 2000)) || dup_into(&o->b, category) != 0 ||
        !(o->c = dup_chars(tried, 4000)) || !(o->d = dup_chars(resolution, 4000)) ||
        dup_into(&o->e, kbo) != 0 || store_submit(s, work_case, done_case, o) != 0) {
        text_free(o);
        return -1;
    }
    return 0;
}
