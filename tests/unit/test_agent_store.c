/*
 * test_agent_store.c - the agent tables (server/agent_store.c) and the context packet
 * (server/agent_ctx.c) on a real SQLite file.
 *
 * Each test opens a store in its own directory under the scratch directory (test_scratch.h), with
 * the same connection hooks as the server (kb_register on both connections, kb_migrate and
 * agent_store_migrate on the writer), writes through the real store operations and runs the
 * loop until their done callbacks ran; then it reads through agent_store_t and parses the JSON
 * with cJSON, field by field.
 */
#include "check.h"

#include "agent_store.h"
#include "config.h"
#include "test_scratch.h"
#include "kb.h"
#include "proto.h"
#include "store.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2026-11-18T11:06:40Z: 19:06 in UTC+8, the same day */
#define T0 1795000000.0

typedef struct rig {
    uv_loop_t loop;
    config_t cfg;
    store_t *store;
    agent_store_t *as;
} rig;

typedef struct waiter {
    int calls;
    int rc;
} waiter;

static void on_done(void *arg, int rc)
{
    waiter *w = arg;
    w->calls++;
    w->rc = rc;
}

static void wait_for(rig *r, waiter *w, int n)
{
    while (w->calls < n)
        uv_run(&r->loop, UV_RUN_ONCE);
}

static int work_nop(store_tx_t *tx, void *arg)
{
    (void)tx;
    (void)arg;
    return 0;
}

/* Waits until every operation queued so far has committed (operations run in order). */
static void barrier(rig *r)
{
    waiter w = {0};
    CHECK(store_submit(r->store, work_nop, on_done, &w) == 0);
    wait_for(r, &w, 1);
}

static int init_conn(sqlite3 *db, int is_writer, void *arg, char *err, size_t errlen)
{
    (void)arg;
    if (kb_register(db) != 0) {
        snprintf(err, errlen, "kb_register failed");
        return -1;
    }
    if (!is_writer)
        return 0;
    return kb_migrate(db, err, errlen) != 0 || agent_store_migrate(db, err, errlen) != 0 ? -1 : 0;
}

static int rig_open(rig *r, const char *name)
{
    char dir[256], err[512] = "";

    memset(r, 0, sizeof(*r));
    if (scratch_config(&r->cfg, name, dir, sizeof(dir), err, sizeof(err)) != 0 ||
        uv_loop_init(&r->loop) != 0)
        goto fail;
    if (store_open(&r->store, &r->loop, &r->cfg, init_conn, NULL, err, sizeof(err)) != 0)
        goto fail;
    if (!(r->as = agent_store_new(r->store))) {
        snprintf(err, sizeof(err), "agent_store_new failed");
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "rig: %s\n", err);
    return -1;
}

static void rig_close(rig *r)
{
    agent_store_free(r->as);
    if (r->store)
        store_close(r->store);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&r->loop) == 0);
    config_free(&r->cfg);
}

/* One value from the reader connection (-1 on error). */
static long long count(rig *r, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(store_reader(r->store), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void add_conversation(rig *r, long long id, const char *customer, const char *name)
{
    store_conv_t c;
    waiter w = {0};
    memset(&c, 0, sizeof(c));
    c.id = id;
    snprintf(c.token, sizeof(c.token), "tok%lld", id);
    snprintf(c.customer_id, sizeof(c.customer_id), "%s", customer);
    snprintf(c.customer_name, sizeof(c.customer_name), "%s", name);
    snprintf(c.channel, sizeof(c.channel), "web");
    CHECK(store_create_conversation(r->store, &c, on_done, &w) == 0);
    wait_for(r, &w, 1);
    CHECK(w.rc == 0);
}

/* Appends events seq 1..n: every 10th a status event "queued", the others messages
 * alternating customer / bot with text "m<seq>". */
static void add_events(rig *r, long long conv, int n)
{
    store_event_t *ev = calloc((size_t)n, sizeof(*ev));
    char(*texts)[16] = calloc((size_t)n, sizeof(*texts));
    waiter w = {0};
    CHECK(ev && texts);
    if (!ev || !texts)
        goto out;
    for (int i = 0; i < n; i++) {
        long long seq = i + 1;
        ev[i].conversation = conv;
        ev[i].seq = seq;
        snprintf(ev[i].ts, sizeof(ev[i].ts), "2026-11-18T11:%02d:%02d.000Z", (int)(seq / 60),
                 (int)(seq % 60));
        if (seq % 10 == 0) {
            ev[i].kind = "status";
            ev[i].state = "queued";
            ev[i].detail = "{\"position\":1,\"wait_s\":30,\"group\":\"ecom\"}";
        } else {
            snprintf(texts[i], sizeof(texts[i]), "m%lld", seq);
            ev[i].kind = "message";
            ev[i].sender = seq % 2 ? "customer" : "bot";
            ev[i].text = texts[i];
        }
        CHECK(store_append_event(r->store, &ev[i], on_done, &w) == 0);
    }
    wait_for(r, &w, n);
    CHECK(w.rc == 0);
out:
    free(ev);
    free(texts);
}

static void record_field(rig *r, long long conv, const char *field, const char *value_json)
{
    char *detail = proto_record_detail(field, value_json);
    CHECK(detail != NULL);
    CHECK(store_append_internal(r->store, conv, "record", detail, "bot") == 0);
    free(detail);
}

static agent_handoff_row_t handoff(long long id, long long conv, agent_hstate_t st,
                                   const char *reason, const char *summary)
{
    agent_handoff_row_t h;
    memset(&h, 0, sizeof(h));
    h.id = id;
    h.conversation = conv;
    h.state = st;
    snprintf(h.reason, sizeof(h.reason), "%s", reason);
    h.priority = 2;
    snprintf(h.group, sizeof(h.group), "ecom");
    h.queued_at = T0;
    h.summary = summary;
    return h;
}

static void insert(rig *r, const agent_handoff_row_t *h)
{
    waiter w = {0};
    CHECK(agent_store_insert(r->store, h, on_done, &w) == 0);
    wait_for(r, &w, 1);
    CHECK(w.rc == 0);
}

static void update(rig *r, const agent_handoff_row_t *h)
{
    waiter w = {0};
    CHECK(agent_store_update(r->store, h, on_done, &w) == 0);
    wait_for(r, &w, 1);
    CHECK(w.rc == 0);
}

static cJSON *context(rig *r, long long conv)
{
    char *text = agent_store_context(r->as, conv);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    if (!o)
        fprintf(stderr, "context of %lld: %s\n", conv, text ? text : "(null)");
    free(text);
    return o;
}

static cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static int str_is(const cJSON *v, const char *want)
{
    if (cJSON_IsString(v) && strcmp(v->valuestring, want) == 0)
        return 1;
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    fprintf(stderr, "  got %s, want \"%s\"\n", s ? s : "(missing)", want);
    free(s);
    return 0;
}

static int num_is(const cJSON *v, double want)
{
    if (cJSON_IsNumber(v) && v->valuedouble == want)
        return 1;
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    fprintf(stderr, "  got %s, want %g\n", s ? s : "(missing)", want);
    free(s);
    return 0;
}

/* ---- tests ---- */

static void test_migrate(void)
{
    rig r;
    char path[512], err[256] = "";
    sqlite3 *side = NULL, *mem = NULL;

    if (rig_open(&r, "migrate") != 0) {
        CHECK(0);
        return;
    }
    CHECK(count(&r, "SELECT value FROM agent_meta WHERE name = 'schema_version'") == 2);
    /* step 2: complaint records' columns, events and surveys (complaint.c) */
    CHECK(count(&r, "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('complaint_events',"
                    " 'surveys', 'complaints_open', 'complaints_created')") == 4);
    CHECK(count(&r, "SELECT COUNT(*) FROM pragma_table_info('complaints')"
                    " WHERE name IN ('ack_due', 'answer_due', 'resolve_due', 'breached')") == 4);
    CHECK(count(&r, "SELECT COUNT(*) FROM canned_replies") == 11);
    CHECK(count(&r, "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('handoffs', 'agent_notes',"
                    " 'canned_replies', 'complaints', 'handoffs_open', 'handoffs_conversation',"
                    " 'agent_notes_conversation', 'agent_events_internal')") == 8);

    /* again, on another connection (as every server start does): nothing changes */
    CHECK(config_db_path(&r.cfg, path, sizeof(path)) == 0);
    CHECK(sqlite3_open(path, &side) == SQLITE_OK);
    sqlite3_busy_timeout(side, 5000);
    CHECK(agent_store_migrate(side, err, sizeof(err)) == 0);
    CHECK(agent_store_migrate(side, err, sizeof(err)) == 0);
    CHECK(count(&r, "SELECT COUNT(*) FROM canned_replies") == 11);
    /* inside a transaction it nests */
    CHECK(sqlite3_exec(side, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(agent_store_migrate(side, err, sizeof(err)) == 0);
    CHECK(sqlite3_exec(side, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(side);
    rig_close(&r);

    /* a newer or broken schema version is refused */
    CHECK(sqlite3_open(":memory:", &mem) == SQLITE_OK);
    CHECK(sqlite3_exec(mem,
                       "CREATE TABLE agent_meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);"
                       "INSERT INTO agent_meta VALUES ('schema_version', '99')",
                       NULL, NULL, NULL) == SQLITE_OK);
    CHECK(agent_store_migrate(mem, err, sizeof(err)) == -1);
    CHECK(strstr(err, "newer") != NULL);
    CHECK(sqlite3_exec(mem, "UPDATE agent_meta SET value = 'x'", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(agent_store_migrate(mem, err, sizeof(err)) == -1);
    CHECK(strstr(err, "bad schema_version") != NULL);
    /* a failed step leaves nothing behind (no events table to index here) */
    CHECK(sqlite3_exec(mem, "DELETE FROM agent_meta", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(agent_store_migrate(mem, err, sizeof(err)) == -1);
    CHECK(strstr(err, "step 1") != NULL);
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(mem, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'handoffs'", -1,
                             &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0);
    sqlite3_finalize(st);
    sqlite3_close(mem);
}

static void test_names(void)
{
    char num[32];
    static const char *const names[] = {"queued", "callback", "active", "resolved", "handed_back"};

    for (int i = 0; i < 5; i++) {
        CHECK(strcmp(agent_hstate_name((agent_hstate_t)(i + 1)), names[i]) == 0);
        CHECK(agent_hstate_parse(names[i]) == (agent_hstate_t)(i + 1));
    }
    CHECK(agent_hstate_name((agent_hstate_t)0) == NULL);
    CHECK(agent_hstate_name((agent_hstate_t)6) == NULL);
    CHECK(agent_hstate_parse("ended") == 0);
    CHECK(agent_hstate_parse(NULL) == 0);

    agent_record_number(12, T0, num, sizeof(num));
    CHECK(strcmp(num, "TS20261118-000012") == 0);
    /* the date is UTC+8's: 2026-11-26T16:30Z is already the 27th there, 15:59:59Z is not */
    agent_record_number(12, 1795710600.0, num, sizeof(num));
    CHECK(strcmp(num, "TS20261127-000012") == 0);
    agent_record_number(12, 1795710600.0 - 1801.0, num, sizeof(num));
    CHECK(strcmp(num, "TS20261126-000012") == 0);
    agent_record_number(1234567, T0, num, sizeof(num));
    CHECK(strcmp(num, "TS20261118-1234567") == 0);
}

typedef struct loaded {
    int n;
    agent_handoff_row_t rows[8];
    char summaries[8][64];
} loaded;

static int on_row(const agent_handoff_row_t *row, void *arg)
{
    loaded *l = arg;
    if (l->n < 8) {
        l->rows[l->n] = *row;
        snprintf(l->summaries[l->n], sizeof(l->summaries[0]), "%s", row->summary);
        l->rows[l->n].summary = NULL;
        l->n++;
    }
    return 0;
}

static void test_handoffs(void)
{
    rig r;
    loaded l;
    waiter w = {0};

    if (rig_open(&r, "handoffs") != 0) {
        CHECK(0);
        return;
    }
    CHECK(agent_store_max_handoff_id(r.as) == 0);
    memset(&l, 0, sizeof(l));
    CHECK(agent_store_load_open(r.as, on_row, &l) == 0 && l.n == 0);

    for (long long c = 1; c <= 3; c++)
        add_conversation(&r, c, "u-1", "李女士");
    agent_handoff_row_t a = handoff(1, 1, AGENT_QUEUED, "anger", "{\"step\":\"ask\"}");
    agent_handoff_row_t b = handoff(2, 2, AGENT_QUEUED, "request_human", "{\"step\":\"offer\"}");
    agent_handoff_row_t c = handoff(3, 3, AGENT_QUEUED, "threat", NULL);
    c.group[0] = '\0'; /* stored as general */
    insert(&r, &a);
    insert(&r, &b);
    insert(&r, &c);
    CHECK(agent_store_max_handoff_id(r.as) == 3);

    /* b is claimed, c resolved, a becomes a call-back */
    snprintf(b.agent, sizeof(b.agent), "wang");
    b.state = AGENT_ACTIVE;
    b.claimed_at = T0 + 60;
    update(&r, &b);
    c.state = AGENT_RESOLVED;
    c.ended_at = T0 + 120;
    c.resolution = "已退款";
    update(&r, &c);
    a.state = AGENT_CALLBACK;
    a.due = T0 + 7200;
    snprintf(a.record, sizeof(a.record), "TS20261118-000001");
    update(&r, &a);
    CHECK(count(&r, "SELECT COUNT(*) FROM handoffs WHERE id = 3 AND resolution = '已退款'"
                    " AND grp = 'general' AND ended_at = 1795000120.0") == 1);
    /* an update without a resolution keeps it */
    c.resolution = NULL;
    c.transfers = 1;
    update(&r, &c);
    CHECK(count(&r, "SELECT COUNT(*) FROM handoffs WHERE id = 3 AND resolution = '已退款'"
                    " AND transfers = 1") == 1);

    memset(&l, 0, sizeof(l));
    CHECK(agent_store_load_open(r.as, on_row, &l) == 0);
    CHECK(l.n == 2);
    CHECK(l.rows[0].id == 1 && l.rows[0].conversation == 1 && l.rows[0].state == AGENT_CALLBACK);
    CHECK(strcmp(l.rows[0].reason, "anger") == 0 && l.rows[0].priority == 2);
    CHECK(strcmp(l.rows[0].group, "ecom") == 0 && l.rows[0].agent[0] == '\0');
    CHECK(strcmp(l.rows[0].record, "TS20261118-000001") == 0);
    CHECK(l.rows[0].queued_at == T0 && l.rows[0].due == T0 + 7200);
    CHECK(l.rows[0].claimed_at == 0 && l.rows[0].ended_at == 0);
    CHECK(strcmp(l.summaries[0], "{\"step\":\"ask\"}") == 0);
    CHECK(l.rows[1].id == 2 && l.rows[1].state == AGENT_ACTIVE);
    CHECK(strcmp(l.rows[1].agent, "wang") == 0 && l.rows[1].claimed_at == T0 + 60);
    CHECK(strcmp(l.summaries[1], "{\"step\":\"offer\"}") == 0);

    /* the update of a missing hand-off fails in its callback; a bad state is refused at once */
    agent_handoff_row_t missing = handoff(99, 1, AGENT_ACTIVE, "x", NULL);
    CHECK(agent_store_update(r.store, &missing, on_done, &w) == 0);
    wait_for(&r, &w, 1);
    CHECK(w.rc < 0);
    agent_handoff_row_t bad = handoff(4, 1, (agent_hstate_t)0, "x", NULL);
    CHECK(agent_store_insert(r.store, &bad, on_done, &w) == -1);
    CHECK(agent_store_update(r.store, &bad, on_done, &w) == -1);
    /* a hand-off of a conversation that does not exist is refused by the database */
    agent_handoff_row_t orphan = handoff(5, 77, AGENT_QUEUED, "x", NULL);
    CHECK(agent_store_insert(r.store, &orphan, on_done, &w) == 0);
    wait_for(&r, &w, 2);
    CHECK(w.rc < 0);
    barrier(&r);
    CHECK(w.calls == 2);
    CHECK(agent_store_max_handoff_id(r.as) == 3);
    rig_close(&r);
}

static void test_canned(void)
{
    rig r;
    if (rig_open(&r, "canned") != 0) {
        CHECK(0);
        return;
    }
    char *text = agent_store_canned(r.as);
    cJSON *arr = text ? cJSON_Parse(text) : NULL, *e;
    CHECK(cJSON_IsArray(arr));
    CHECK(cJSON_GetArraySize(arr) == 11);
    cJSON_ArrayForEach(e, arr)
    {
        CHECK(cJSON_IsString(get(e, "title")) && get(e, "title")->valuestring[0]);
        CHECK(cJSON_IsString(get(e, "text")) && strlen(get(e, "text")->valuestring) > 20);
        CHECK(cJSON_IsNull(get(e, "group")));
    }
    CHECK(str_is(get(cJSON_GetArrayItem(arr, 0), "title"), "问候"));
    CHECK(strstr(get(cJSON_GetArrayItem(arr, 0), "text")->valuestring, "客服") != NULL);
    CHECK(str_is(get(cJSON_GetArrayItem(arr, 10), "title"), "结束语"));
    cJSON_Delete(arr);
    free(text);
    rig_close(&r);
}

static void test_notes_records_cases(void)
{
    rig r;
    waiter w = {0};
    char want[32];

    if (rig_open(&r, "records") != 0) {
        CHECK(0);
        return;
    }
    add_conversation(&r, 12, "u-1", "李女士");
    CHECK(agent_store_note(r.store, 12, "wang", "客户要求今天回电", T0 + 1.5, on_done, &w) == 0);
    wait_for(&r, &w, 1);
    CHECK(w.rc == 0);
    CHECK(count(&r,
                "SELECT COUNT(*) FROM agent_notes WHERE conversation_id = 12 AND"
                " author = 'wang' AND text = '客户要求今天回电' AND created_at = 1795000001.5") ==
          1);

    /* a record without a number gets today's; a later update keeps number, category, severity */
    CHECK(agent_store_record(r.store, 12, "", "ecom.refund", 2, "received", "", 0, on_done, &w) ==
          0);
    wait_for(&r, &w, 2);
    CHECK(w.rc == 0);
    agent_record_number(12, util_wall_s(), want, sizeof(want));
    {
        char sql[160];
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM complaints WHERE number = '%s'", want);
        CHECK(count(&r, sql) == 1);
    }
    CHECK(agent_store_record(r.store, 12, "TS-OTHER", "", 0, "callback", "wang", T0 + 7200, on_done,
                             &w) == 0);
    wait_for(&r, &w, 3);
    CHECK(w.rc == 0);
    CHECK(count(&r, "SELECT COUNT(*) FROM complaints WHERE conversation_id = 12 AND"
                    " category = 'ecom.refund' AND severity = 2 AND status = 'callback' AND"
                    " owner = 'wang' AND due = 1795007200.0 AND number <> 'TS-OTHER'") == 1);
    CHECK(agent_store_record(r.store, 12, "X", "c", 1, "", "", 0, on_done, &w) == -1);

    /* past cases go to the knowledge base; unknown categories become general */
    CHECK(agent_store_case(r.store, "快递三天没更新，客户要求退款", "ecom.delivery", "补发；退款",
                           "已全额退款", "accepted", on_done, &w) == 0);
    wait_for(&r, &w, 4);
    CHECK(w.rc > 0);
    long long id1 = w.rc;
    CHECK(agent_store_case(r.store, "信用卡年费误扣", "bank.card", "", "无法减免", "refused",
                           on_done, &w) == 0);
    wait_for(&r, &w, 5);
    CHECK(w.rc > 0 && w.rc != id1);
    {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM kb_cases WHERE id = %lld AND category = 'general' AND"
                 " outcome = 'resolved' AND tried = '补发；退款' AND resolution = '已全额退款'",
                 id1);
        CHECK(count(&r, sql) == 1);
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM kb_cases WHERE id = %d AND category = 'bank.card' AND"
                 " outcome = 'unresolved'",
                 w.rc);
        CHECK(count(&r, sql) == 1);
    }
    CHECK(agent_store_case(r.store, "s", "general", "", "r", "maybe", on_done, &w) == -1);
    /* a summary over the kb's limit is cut, not refused */
    {
        size_t n = 2100 * 3;
        char *big = malloc(n + 1);
        CHECK(big != NULL);
        for (size_t i = 0; big && i < n; i += 3)
            memcpy(big + i, "长", 3);
        if (big) {
            big[n] = '\0';
            CHECK(agent_store_case(r.store, big, "general", NULL, "好", "partial", on_done, &w) ==
                  0);
            wait_for(&r, &w, 6);
            CHECK(w.rc > 0);
            CHECK(count(&r, "SELECT length(summary) FROM kb_cases ORDER BY id DESC LIMIT 1") ==
                  2000);
        }
        free(big);
    }
    /* an empty summary is the kb's to refuse: the callback says so */
    CHECK(agent_store_case(r.store, "", "general", NULL, "好", "partial", on_done, &w) == 0);
    wait_for(&r, &w, 7);
    CHECK(w.rc < 0);
    rig_close(&r);
}

/* The summary of conversation 12's open hand-off, as flow_run.c writes it (plus the keys
 * being added: offered, refused, mood.trend). */
static const char summary12[] =
    "{\"flow\":\"complaint\",\"step\":\"offer\",\"turn\":6,"
    "\"customer\":{\"id\":\"u-1\",\"name\":\"李女士\",\"channel\":\"web\",\"vip\":0,"
    "\"history_count\":2},"
    "\"category\":\"ecom.delivery\",\"severity\":2,"
    "\"mood\":{\"score\":75,\"trend\":[10,40,75],\"level\":\"愤怒\",\"history\":[1,2],"
    "\"recent\":[\"x\"]},"
    "\"slots\":{\"order_id\":\"12345678\"},\"expectation\":\"尽快发货\","
    "\"offered\":[\"补发\",{\"title\":\"退款\"}],\"refused\":[\"优惠券\"],"
    "\"last_text\":\"到底什么时候发货\"}";

static void build_customer_history(rig *r)
{
    waiter w = {0};

    add_conversation(r, 3, "u-1", "李女士");
    add_conversation(r, 5, "u-2", "张先生");
    add_conversation(r, 7, "u-1", "");
    add_conversation(r, 12, "u-1", "李女士");

    /* 3: resolved with a complaint record */
    agent_handoff_row_t h3 = handoff(1, 3, AGENT_QUEUED, "anger", "{\"category\":\"ecom.refund\"}");
    insert(r, &h3);
    h3.state = AGENT_RESOLVED;
    h3.ended_at = T0 + 10;
    h3.resolution = "已退款";
    update(r, &h3);
    CHECK(agent_store_record(r->store, 3, "TS20261120-000003", "ecom.refund", 2, "resolved", "wang",
                             0, on_done, &w) == 0);
    wait_for(r, &w, 1);
    CHECK(w.rc == 0);
    /* 7: handed back, no record: its category comes from the summary */
    agent_handoff_row_t h7 =
        handoff(2, 7, AGENT_HANDED_BACK, "request_human", "{\"category\":\"bank.fee\"}");
    insert(r, &h7);
    /* 12: an earlier, resolved hand-off and the open one */
    agent_handoff_row_t old = handoff(3, 12, AGENT_RESOLVED, "old_reason", "{\"step\":\"old\"}");
    old.resolution = "first time";
    insert(r, &old);
    agent_handoff_row_t h12 = handoff(4, 12, AGENT_QUEUED, "anger", summary12);
    h12.priority = 3;
    snprintf(h12.record, sizeof(h12.record), "TS20261118-000012");
    insert(r, &h12);
    h12.state = AGENT_ACTIVE;
    snprintf(h12.agent, sizeof(h12.agent), "wang");
    h12.queued_at = T0 + 30.25;
    h12.claimed_at = T0 + 90.5;
    h12.transfers = 1;
    update(r, &h12);
    CHECK(agent_store_record(r->store, 12, "TS20261118-000012", "ecom.delivery", 2, "received",
                             "wang", T0 + 3600, on_done, &w) == 0);
    wait_for(r, &w, 2);
    CHECK(w.rc == 0);
    /* the flow's record events: the latest value of a field wins */
    record_field(r, 12, "category", "{\"slug\":\"ecom.delivery\",\"label\":\"物流\"}");
    record_field(r, 12, "slots", "{\"order_id\":\"1\"}");
    record_field(r, 12, "summary", "\"客户反映快递三天没有更新\"");
    record_field(r, 12, "slots", "{\"order_id\":\"12345678\"}");
    record_field(r, 7, "slots", "{\"other\":\"conversation\"}");
    /* notes, in order */
    CHECK(agent_store_note(r->store, 12, "wang", "已联系仓库", T0 + 100, on_done, &w) == 0);
    CHECK(agent_store_note(r->store, 12, "li", "主管已知悉", T0 + 200.125, on_done, &w) == 0);
    wait_for(r, &w, 4);
    CHECK(w.rc == 0);
    add_events(r, 12, 205);
    add_events(r, 3, 4);
    barrier(r);
}

static void test_context(void)
{
    rig r;
    cJSON *o, *v;

    if (rig_open(&r, "context") != 0) {
        CHECK(0);
        return;
    }
    build_customer_history(&r);
    CHECK(agent_store_context(r.as, 999) == NULL);
    o = context(&r, 12);
    CHECK(cJSON_IsObject(o));
    if (!o)
        goto out;

    CHECK(str_is(get(o, "conversation"), "c-000000000012"));
    v = get(o, "customer");
    CHECK(str_is(get(v, "id"), "u-1"));
    CHECK(str_is(get(v, "name"), "李女士"));
    CHECK(str_is(get(v, "channel"), "web"));
    CHECK(num_is(get(v, "vip"), 0));
    CHECK(num_is(get(v, "history_count"), 2));

    /* the other conversations of u-1, newest first; not u-2's */
    v = get(o, "past_complaints");
    CHECK(cJSON_GetArraySize(v) == 2);
    cJSON *p7 = cJSON_GetArrayItem(v, 0), *p3 = cJSON_GetArrayItem(v, 1);
    CHECK(str_is(get(p7, "conversation"), "c-000000000007"));
    CHECK(str_is(get(p7, "category"), "bank.fee"));
    CHECK(cJSON_IsNull(get(p7, "record")) && cJSON_IsNull(get(p7, "status")));
    CHECK(cJSON_IsNull(get(p7, "resolution")));
    CHECK(cJSON_IsString(get(p7, "created_at")) &&
          strlen(get(p7, "created_at")->valuestring) == 24);
    CHECK(str_is(get(p3, "conversation"), "c-000000000003"));
    CHECK(str_is(get(p3, "category"), "ecom.refund"));
    CHECK(str_is(get(p3, "record"), "TS20261120-000003"));
    CHECK(str_is(get(p3, "status"), "resolved"));
    CHECK(str_is(get(p3, "resolution"), "已退款"));

    /* the open hand-off (4), not the earlier resolved one (3) */
    v = get(o, "escalation");
    CHECK(str_is(get(v, "reason"), "anger"));
    CHECK(num_is(get(v, "priority"), 3));
    CHECK(str_is(get(v, "group"), "ecom"));
    CHECK(str_is(get(v, "at"), "2026-11-18T11:07:10.250Z"));
    CHECK(str_is(get(v, "step"), "offer"));

    CHECK(str_is(get(o, "category"), "ecom.delivery"));
    CHECK(num_is(get(o, "severity"), 2));
    v = get(o, "mood");
    CHECK(num_is(get(v, "score"), 75));
    CHECK(cJSON_GetArraySize(get(v, "trend")) == 3);
    CHECK(num_is(cJSON_GetArrayItem(get(v, "trend"), 0), 10));
    CHECK(num_is(cJSON_GetArrayItem(get(v, "trend"), 2), 75));
    CHECK(str_is(get(v, "level"), "愤怒"));
    CHECK(get(v, "recent") == NULL); /* the customer's sentences stay in the transcript */
    CHECK(str_is(get(get(o, "slots"), "order_id"), "12345678"));
    CHECK(str_is(get(o, "summary"), "客户反映快递三天没有更新")); /* from the record field */
    CHECK(str_is(get(o, "expectation"), "尽快发货"));
    v = get(o, "solutions");
    CHECK(cJSON_GetArraySize(get(v, "offered")) == 2);
    CHECK(str_is(cJSON_GetArrayItem(get(v, "offered"), 0), "补发"));
    CHECK(str_is(cJSON_GetArrayItem(get(v, "offered"), 1), "退款"));
    CHECK(cJSON_GetArraySize(get(v, "refused")) == 1);
    CHECK(str_is(cJSON_GetArrayItem(get(v, "refused"), 0), "优惠券"));

    v = get(o, "record");
    CHECK(str_is(get(v, "number"), "TS20261118-000012"));
    CHECK(str_is(get(v, "status"), "received"));
    CHECK(str_is(get(v, "due"), "2026-11-18T12:06:40.000Z"));
    CHECK(cJSON_GetArraySize(get(v, "fields")) == 3);
    CHECK(str_is(get(get(get(v, "fields"), "category"), "slug"), "ecom.delivery"));
    CHECK(str_is(get(get(get(v, "fields"), "slots"), "order_id"), "12345678"));
    CHECK(str_is(get(get(v, "fields"), "summary"), "客户反映快递三天没有更新"));

    v = get(o, "handoff");
    CHECK(str_is(get(v, "state"), "active"));
    CHECK(str_is(get(v, "agent"), "wang"));
    CHECK(str_is(get(v, "queued_at"), "2026-11-18T11:07:10.250Z"));
    CHECK(str_is(get(v, "claimed_at"), "2026-11-18T11:08:10.500Z"));
    CHECK(num_is(get(v, "transfers"), 1));

    v = get(o, "notes");
    CHECK(cJSON_GetArraySize(v) == 2);
    CHECK(str_is(get(cJSON_GetArrayItem(v, 0), "author"), "wang"));
    CHECK(str_is(get(cJSON_GetArrayItem(v, 0), "text"), "已联系仓库"));
    CHECK(str_is(get(cJSON_GetArrayItem(v, 0), "ts"), "2026-11-18T11:08:20.000Z"));
    CHECK(str_is(get(cJSON_GetArrayItem(v, 1), "author"), "li"));
    CHECK(str_is(get(cJSON_GetArrayItem(v, 1), "ts"), "2026-11-18T11:10:00.125Z"));

    /* the last 200 of 205 events, in order */
    v = get(o, "transcript");
    CHECK(cJSON_GetArraySize(v) == 200);
    CHECK(num_is(get(o, "transcript_total"), 205));
    cJSON *first = cJSON_GetArrayItem(v, 0), *last = cJSON_GetArrayItem(v, 199);
    CHECK(num_is(get(first, "seq"), 6));
    CHECK(str_is(get(first, "from"), "bot"));
    CHECK(str_is(get(first, "text"), "m6"));
    CHECK(str_is(get(first, "ts"), "2026-11-18T11:00:06.000Z"));
    CHECK(num_is(get(last, "seq"), 205));
    CHECK(str_is(get(last, "from"), "customer"));
    CHECK(str_is(get(last, "text"), "m205"));
    cJSON *status = cJSON_GetArrayItem(v, 4); /* seq 10 */
    CHECK(num_is(get(status, "seq"), 10));
    CHECK(str_is(get(status, "from"), "system"));
    CHECK(str_is(get(status, "text"), "queued"));
    CHECK(num_is(get(get(status, "detail"), "position"), 1));
    long long prev = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        long long seq = cJSON_IsNumber(get(e, "seq")) ? get(e, "seq")->valueint : -1;
        CHECK(seq == prev + 1 || prev == 0);
        prev = seq;
    }
    cJSON_Delete(o);

    /* conversation 3: no earlier conversation; its past is 7 and 12 */
    o = context(&r, 3);
    CHECK(num_is(get(get(o, "customer"), "history_count"), 0));
    v = get(o, "past_complaints");
    CHECK(cJSON_GetArraySize(v) == 2);
    CHECK(str_is(get(cJSON_GetArrayItem(v, 0), "conversation"), "c-000000000012"));
    CHECK(str_is(get(cJSON_GetArrayItem(v, 0), "record"), "TS20261118-000012"));
    CHECK(cJSON_IsNull(get(cJSON_GetArrayItem(v, 0), "resolution"))); /* still open */
    CHECK(str_is(get(get(o, "handoff"), "state"), "resolved"));
    CHECK(cJSON_IsNull(get(get(o, "handoff"), "agent")));
    CHECK(cJSON_IsNull(get(get(o, "handoff"), "claimed_at")));
    CHECK(str_is(get(o, "category"), "ecom.refund"));
    CHECK(cJSON_IsNull(get(o, "mood")) && cJSON_IsNull(get(o, "summary")));
    CHECK(cJSON_IsNull(get(get(o, "escalation"), "step")));
    CHECK(cJSON_GetArraySize(get(get(o, "record"), "fields")) == 0);
    CHECK(num_is(get(o, "transcript_total"), 4));
    CHECK(cJSON_GetArraySize(get(o, "transcript")) == 4);
    cJSON_Delete(o);

    /* conversation 5: no hand-off, no record, no events */
    o = context(&r, 5);
    CHECK(str_is(get(get(o, "customer"), "name"), "张先生"));
    CHECK(cJSON_GetArraySize(get(o, "past_complaints")) == 0);
    static const char *const nulls[] = {"escalation", "category",    "severity", "mood",   "slots",
                                        "summary",    "expectation", "record",   "handoff"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        CHECK(cJSON_IsNull(get(o, nulls[i])));
    CHECK(cJSON_GetArraySize(get(get(o, "solutions"), "offered")) == 0);
    CHECK(cJSON_IsArray(get(get(o, "solutions"), "refused")));
    CHECK(cJSON_IsArray(get(o, "notes")) && cJSON_GetArraySize(get(o, "notes")) == 0);
    CHECK(cJSON_GetArraySize(get(o, "transcript")) == 0);
    CHECK(num_is(get(o, "transcript_total"), 0));
    cJSON_Delete(o);

    /* without a hand-off the escalation event's summary still tells the facts */
    CHECK(store_append_internal(r.store, 5, "escalation",
                                "{\"category\":\"bank.fee\",\"severity\":3,\"mood\":42,"
                                "\"slots\":[]}",
                                "bot") == 0);
    barrier(&r);
    o = context(&r, 5);
    CHECK(str_is(get(o, "category"), "bank.fee"));
    CHECK(num_is(get(o, "severity"), 3));
    CHECK(num_is(get(get(o, "mood"), "score"), 42));
    CHECK(cJSON_GetArraySize(get(get(o, "mood"), "trend")) == 1);
    CHECK(cJSON_IsObject(get(o, "slots")) && cJSON_GetArraySize(get(o, "slots")) == 0);
    CHECK(cJSON_IsNull(get(o, "escalation")) && cJSON_IsNull(get(o, "handoff")));
    cJSON_Delete(o);

    /* conversation 7: a record number-less record from its fields alone */
    o = context(&r, 7);
    v = get(o, "record");
    CHECK(cJSON_IsNull(get(v, "number")) && cJSON_IsNull(get(v, "status")));
    CHECK(str_is(get(get(get(v, "fields"), "slots"), "other"), "conversation"));
    CHECK(str_is(get(get(o, "customer"), "name"), "李女士")); /* the customer's, when "" */
    CHECK(str_is(get(get(o, "handoff"), "state"), "handed_back"));
    cJSON_Delete(o);

    char *lt = agent_store_last_text(r.as, 12);
    CHECK(lt && strcmp(lt, "m205") == 0);
    free(lt);
    lt = agent_store_last_text(r.as, 3);
    CHECK(lt && strcmp(lt, "m3") == 0);
    free(lt);
    CHECK(agent_store_last_text(r.as, 5) == NULL);
out:
    rig_close(&r);
}

/* At most 20 past conversations, the newest. */
static void test_past_cap(void)
{
    rig r;
    if (rig_open(&r, "past") != 0) {
        CHECK(0);
        return;
    }
    for (long long c = 1; c <= 23; c++)
        add_conversation(&r, c, "u-9", "");
    cJSON *o = context(&r, 23), *v = get(o, "past_complaints");
    CHECK(cJSON_GetArraySize(v) == 20);
    CHECK(str_is(get(cJSON_GetArrayItem(v, 0), "conversation"), "c-000000000022"));
    CHECK(str_is(get(cJSON_GetArrayItem(v, 19), "conversation"), "c-000000000003"));
    CHECK(num_is(get(get(o, "customer"), "history_count"), 22));
    CHECK(cJSON_IsNull(get(get(o, "customer"), "name")));
    cJSON_Delete(o);
    rig_close(&r);
}

/* Every statement on the reader connection (the store's and ours) uses an index: the loop
 * never scans a table that grows with traffic. */
static void test_query_plans(void)
{
    rig r;
    if (rig_open(&r, "plans") != 0) {
        CHECK(0);
        return;
    }
    sqlite3 *db = store_reader(r.store);
    int n = 0;
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st)) {
        char *sql = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sqlite3_sql(st));
        sqlite3_stmt *plan = NULL;
        CHECK(sqlite3_prepare_v2(db, sql, -1, &plan, NULL) == SQLITE_OK);
        while (plan && sqlite3_step(plan) == SQLITE_ROW) {
            const char *d = (const char *)sqlite3_column_text(plan, 3);
            /* allowed: the few canned replies, the partial index of open hand-offs */
            int scan = strncmp(d, "SCAN ", 5) == 0 && strcmp(d, "SCAN canned_replies") != 0 &&
                       strcmp(d, "SCAN CONSTANT ROW") != 0 && !strstr(d, "(subquery") &&
                       !strstr(d, "USING INDEX handoffs_open");
            if (scan)
                fprintf(stderr, "full scan: %s\n  in: %s\n", d, sqlite3_sql(st));
            CHECK(!scan);
        }
        sqlite3_finalize(plan);
        sqlite3_free(sql);
        n++;
    }
    CHECK(n >= 15);
    rig_close(&r);
}

int main(void)
{
    if (scratch_make() != 0) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_migrate);
    RUN(test_names);
    RUN(test_handoffs);
    RUN(test_canned);
    RUN(test_notes_records_cases);
    RUN(test_context);
    RUN(test_past_cap);
    RUN(test_query_plans);
    scratch_remove();
    return check_summary();
}
