/*
 * test_dashboard.c - the dashboard's pure parts (server/dashboard.c): date ranges, the figures'
 * definitions and the CSV export, on an in-memory SQLite database with the real agent tables
 * (agent_store_migrate) and hand-made rows whose figures are known.
 *
 * The whole path through the server (thread pool, access checks, the records the flow and the
 * agents write) is tested end to end in tests/e2e/test_dashboard.py.
 */
#include "check.h"

#include "agent_store.h"
#include "dashboard.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ranges ---- */

static double local_epoch(int y, int mo, int d, int h, int mi)
{
    char q[64];
    dashboard_range_t r;
    snprintf(q, sizeof(q), "from=%04d-%02d-%02d&to=%04d-%02d-%02d", y, mo, d, y, mo, d);
    if (dashboard_parse_range(q, 0, &r, NULL, 0) != 0)
        return -1;
    return r.start + h * 3600.0 + mi * 60.0;
}

static void test_ranges(void)
{
    dashboard_range_t r;
    char err[160], a[16], b[16];
    double now = local_epoch(2026, 3, 5, 15, 0);

    /* explicit, inclusive; local midnight is 16:00 UTC the day before */
    CHECK(dashboard_parse_range("from=2026-03-01&to=2026-03-07", now, &r, err, sizeof(err)) == 0);
    CHECK(r.to_day - r.from_day == 6);
    CHECK(r.end - r.start == 7 * 86400.0);
    CHECK(fmod(r.start + 8 * 3600, 86400) == 0);
    dashboard_day_text(r.from_day, a, sizeof(a));
    dashboard_day_text(r.to_day, b, sizeof(b));
    CHECK(strcmp(a, "2026-03-01") == 0 && strcmp(b, "2026-03-07") == 0);
    CHECK(r.start == 1772294400.0); /* 2026-02-28T16:00:00Z */

    /* defaults: the last 30 days ending today (local) */
    CHECK(dashboard_parse_range("", now, &r, err, sizeof(err)) == 0);
    dashboard_day_text(r.to_day, b, sizeof(b));
    dashboard_day_text(r.from_day, a, sizeof(a));
    CHECK(strcmp(b, "2026-03-05") == 0 && strcmp(a, "2026-02-04") == 0);
    /* just after local midnight it is already the next day */
    CHECK(dashboard_parse_range(NULL, local_epoch(2026, 3, 6, 0, 1), &r, err, sizeof(err)) == 0);
    dashboard_day_text(r.to_day, b, sizeof(b));
    CHECK(strcmp(b, "2026-03-06") == 0);
    /* to alone; from alone stops at today */
    CHECK(dashboard_parse_range("to=2026-01-31", now, &r, err, sizeof(err)) == 0);
    dashboard_day_text(r.from_day, a, sizeof(a));
    CHECK(strcmp(a, "2026-01-02") == 0);
    CHECK(dashboard_parse_range("from=2026-03-01", now, &r, err, sizeof(err)) == 0);
    dashboard_day_text(r.to_day, b, sizeof(b));
    CHECK(strcmp(b, "2026-03-05") == 0);
    CHECK(dashboard_parse_range("from=2026-01-01", now, &r, err, sizeof(err)) == 0);
    CHECK(r.to_day - r.from_day == 29);
    CHECK(dashboard_parse_range("from=2026-04-01", now, &r, err, sizeof(err)) == 0);
    CHECK(r.to_day == r.from_day);
    /* leap day, whole year */
    CHECK(dashboard_parse_range("from=2028-02-29&to=2028-02-29", now, &r, err, sizeof(err)) == 0);
    CHECK(dashboard_parse_range("from=2028-01-01&to=2028-12-31", now, &r, err, sizeof(err)) == 0);
    CHECK(r.to_day - r.from_day + 1 == 366);
    /* percent-encoded is fine */
    CHECK(dashboard_parse_range("from=2026%2D03%2D01&to=2026-03-02", now, &r, err, sizeof(err)) ==
          0);

    static const char *const bad[] = {
        "from=2026-3-1",
        "from=2026-03-01x",
        "from=20260301",
        "from=2026-02-29",
        "from=2026-13-01",
        "from=2026-00-10",
        "from=2026-04-31",
        "from=1999-12-31",
        "from=2100-01-01",
        "from=%FF",
        "from=2026-03-01&to=yesterday",
        "from=2026-03-02&to=2026-03-01",
        "from=2026-01-01&to=2027-01-02",
        "to=-2026-01-01",
        "from= 2026-03-01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int rc = dashboard_parse_range(bad[i], now, &r, err, sizeof(err));
        CHECK(rc == -1 && err[0]);
        if (rc != -1)
            fprintf(stderr, "accepted: %s\n", bad[i]);
    }
}

/* ---- a database with known figures ---- */

static sqlite3 *db_new(void)
{
    sqlite3 *db = NULL;
    char err[512] = "";
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        return NULL;
    /* the store's tables that the agent tables refer to (store.c, migration 1) */
    if (sqlite3_exec(db,
                     "CREATE TABLE conversations (id INTEGER PRIMARY KEY);"
                     "CREATE TABLE events (id INTEGER PRIMARY KEY, conversation_id INTEGER NOT"
                     " NULL, seq INTEGER, kind TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}',"
                     " actor TEXT NOT NULL DEFAULT 'system', created_at TEXT NOT NULL);",
                     NULL, NULL, NULL) != SQLITE_OK ||
        agent_store_migrate(db, err, sizeof(err)) != 0) {
        fprintf(stderr, "db_new: %s %s\n", err, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

typedef struct row {
    long long conv;
    const char *category, *channel, *status;
    double created;
    double ack_due, acked, answer_due, answered, resolve_due, resolved;
    int breached, escalated, reopened;
} row;

static void insert(sqlite3 *db, const row *w)
{
    sqlite3_stmt *st = NULL;
    char number[32];
    snprintf(number, sizeof(number), "TS-%lld", w->conv);
    CHECK(sqlite3_prepare_v2(
              db,
              "INSERT INTO complaints(conversation_id, number, category, severity, status, owner,"
              " created_at, updated_at, channel, ack_due, acked_at, answer_due, answered_at,"
              " resolve_due, resolved_at, breached, escalated, reopened) VALUES (?1, ?2, ?3, 2,"
              " ?4, 'wang', ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
              -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_int64(st, 1, w->conv);
    sqlite3_bind_text(st, 2, number, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, w->category, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, w->status, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 5, w->created);
    sqlite3_bind_text(st, 6, w->channel, -1, SQLITE_STATIC);
    double t[6] = {w->ack_due, w->acked, w->answer_due, w->answered, w->resolve_due, w->resolved};
    for (int i = 0; i < 6; i++)
        if (t[i] > 0)
            sqlite3_bind_double(st, 7 + i, t[i]);
    sqlite3_bind_int(st, 13, w->breached);
    sqlite3_bind_int(st, 14, w->escalated);
    sqlite3_bind_int(st, 15, w->reopened);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
}

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, msg);
        CHECK(0);
    }
    sqlite3_free(msg);
}

static double num(const cJSON *o, const char *path)
{
    char key[64];
    const char *p = path;
    while (o && *p) {
        size_t n = strcspn(p, ".");
        snprintf(key, sizeof(key), "%.*s", (int)n, p);
        o = cJSON_IsArray(o) ? cJSON_GetArrayItem(o, atoi(key))
                             : cJSON_GetObjectItemCaseSensitive(o, key);
        p += n + (p[n] == '.');
    }
    return cJSON_IsNumber(o) ? o->valuedouble : NAN;
}

static int is_null(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, a), b);
    return cJSON_IsNull(v);
}

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

static void fill(sqlite3 *db, double t0)
{
    const double h = 3600;
    /* t0 = 2026-03-02 10:00 local; the range below is 03-01 .. 03-07 */
    row rows[] = {
        /* acked in time, answered late (no bit yet), resolved in time, first contact */
        {1, "ecom.refund", "web", "resolved", t0, t0 + 0.5 * h, t0 + 0.2 * h, t0 + 24 * h,
         t0 + 30 * h, t0 + 100 * h, t0 + 40 * h, 0, 0, 0},
        /* ack breached (bit set, never acked), answer pending, escalated */
        {2, "ecom.refund", "app", "received", t0 + 1 * h, t0 + 1.5 * h, 0, t0 + 48 * h, 0,
         t0 + 120 * h, 0, 1, 1, 0},
        /* acked after the bit was set: still breached; resolved after being reopened */
        {3, "bank.fee", "wechat", "closed", t0 + 2 * h, t0 + 2.5 * h, t0 + 3 * h, t0 + 48 * h,
         t0 + 4 * h, t0 + 120 * h, t0 + 50 * h, 1, 0, 1},
        /* the last day of the range (local 03-07 23:30); no deadlines at all; category unset */
        {4, "", "web", "received", t0 + 5 * 24 * h + 13.5 * h, 0, 0, 0, 0, 0, 0, 0, 0, 0},
        /* outside: local 03-08 00:00 (the range's end) and the previous period */
        {5, "ecom.refund", "web", "received", t0 + 5 * 24 * h + 14 * h, 0, 0, 0, 0, 0, 0, 0, 0, 0},
        {6, "ecom.refund", "h5", "received", t0 - 3 * 24 * h, 0, 0, 0, 0, 0, 0, 0, 0, 0},
        {7, "logistics.lost", "web", "received", t0 - 48 * h, 0, 0, 0, 0, 0, 0, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        insert(db, &rows[i]);
    char sql[1024];
    /* hand-offs: two in the range, one before it */
    snprintf(sql, sizeof(sql),
             "INSERT INTO handoffs(conversation_id, state, reason, queued_at, created_at) VALUES"
             " (2, 'queued', 'human_request', %.3f, ''), (3, 'resolved', 'human_request', %.3f,"
             " ''), (3, 'resolved', 'sla_breach', %.3f, ''), (7, 'queued', 'anger', %.3f, '')",
             t0 + 1.1 * h, t0 + 60 * h, t0 + 70 * h, t0 - 48 * h);
    exec(db, sql);
    /* surveys: three answered in the range, one answered before, two unanswered */
    snprintf(sql, sizeof(sql),
             "INSERT INTO surveys(conversation_id, solved, csat, nps, asked_at, answered_at)"
             " VALUES (1, 1, 5, 10, %.3f, %.3f), (3, 0, 2, 6, %.3f, %.3f),"
             " (4, NULL, 4, NULL, %.3f, %.3f), (6, 1, 1, 0, %.3f, %.3f),"
             " (2, NULL, NULL, NULL, %.3f, NULL), (5, NULL, NULL, NULL, %.3f, NULL)",
             t0 + 41 * h, t0 + 42 * h, t0 + 51 * h, t0 + 52 * h, t0 + 60 * h, t0 + 61 * h,
             t0 - 2 * 24 * h, t0 - 2 * 24 * h, t0 + 24 * h, t0 + 96 * h);
    exec(db, sql);
    /* descriptions: the latest record wins; quotes, commas, a newline, a formula, a phone */
    exec(db, "INSERT INTO events(conversation_id, seq, kind, detail, created_at) VALUES"
             " (1, NULL, 'record', '{\"field\":\"description\",\"value\":\"old\"}', ''),"
             " (1, NULL, 'record', '{\"field\":\"description\",\"value\":"
             "\"买的\\\"手机\\\",没到\\n电话13812345678\"}', ''),"
             " (1, 5, 'record', '{\"field\":\"description\",\"value\":\"not internal\"}', ''),"
             " (2, NULL, 'record', '{\"field\":\"description\",\"value\":\"=1+2\"}', ''),"
             " (3, NULL, 'record', 'not json', '')");
}

static void test_figures(void)
{
    sqlite3 *db = db_new();
    dashboard_range_t r;
    char err[256] = "";
    double t0 = local_epoch(2026, 3, 2, 10, 0), now = t0 + 96 * 3600.0 + 1;

    CHECK(db != NULL);
    if (!db)
        return;
    fill(db, t0);
    CHECK(dashboard_parse_range("from=2026-03-01&to=2026-03-07", now, &r, err, sizeof(err)) == 0);
    char *json = dashboard_figures(db, &r, now, 72, err, sizeof(err));
    CHECK(json != NULL);
    cJSON *o = cJSON_Parse(json);
    CHECK(o != NULL);

    /* totals: records 1-4 */
    CHECK(num(o, "totals.complaints") == 4);
    CHECK(num(o, "totals.escalated") == 1);
    CHECK(NEAR(num(o, "totals.escalation_rate"), 0.25));
    CHECK(num(o, "totals.resolved") == 2);
    CHECK(num(o, "totals.first_contact") == 1);
    CHECK(NEAR(num(o, "totals.first_contact_resolution_rate"), 0.5));
    CHECK(num(o, "totals.reopened") == 1);
    CHECK(num(o, "totals.open") == 2);
    CHECK(num(o, "totals.previous") == 2); /* records 6 and 7 */
    CHECK(num(o, "range.days") == 7);
    CHECK(num(o, "now") == now);

    /* by day: 7 entries, 3 on 03-02, 1 on 03-07 */
    const cJSON *days = cJSON_GetObjectItemCaseSensitive(o, "by_day");
    CHECK(cJSON_GetArraySize(days) == 7);
    CHECK(strcmp(cJSON_GetStringValue(
                     cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(days, 0), "date")),
                 "2026-03-01") == 0);
    CHECK(num(o, "by_day.0.count") == 0 && num(o, "by_day.1.count") == 3 &&
          num(o, "by_day.1.escalated") == 1 && num(o, "by_day.6.count") == 1);

    /* by category, with the previous 7 days (records 6 and 7) */
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "by_category")) == 4);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "by_category"), 0);
    CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c0, "category")),
                 "ecom.refund") == 0);
    CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c0, "label")), "退款") == 0);
    CHECK(num(o, "by_category.0.count") == 2 && num(o, "by_category.0.previous") == 1);
    /* logistics.lost: only in the previous period, listed with count 0 */
    CHECK(num(o, "by_category.3.count") == 0 && num(o, "by_category.3.previous") == 1);
    /* top topics leave it out; the unset category is 未分类 */
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(o, "top_topics");
    CHECK(cJSON_GetArraySize(top) == 3);
    CHECK(NEAR(num(o, "top_topics.0.share"), 0.5));
    int found = 0;
    for (int i = 0; i < cJSON_GetArraySize(top); i++) {
        const cJSON *t = cJSON_GetArrayItem(top, i);
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "category")), "") == 0)
            found = strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "label")),
                           "未分类") == 0;
    }
    CHECK(found);
    /* channels: web 2 (previous 1: record 7), app, wechat, and h5 only before */
    CHECK(num(o, "by_channel.0.count") == 2 && num(o, "by_channel.0.previous") == 1);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "by_channel")) == 4);

    /* escalation reasons: hand-offs queued in the range */
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "escalation_reasons")) == 2);
    CHECK(num(o, "escalation_reasons.0.count") == 2);
    CHECK(num(o, "escalation_reasons.1.count") == 1);

    /* SLA: ack met 1 (rec 1), breached 2 (rec 2 bit, rec 3 bit); answer: met 1 (rec 3),
     * breached 1 (rec 1 late), pending 1 (rec 2); resolve: met 2, pending 1 */
    CHECK(num(o, "sla.ack.met") == 1 && num(o, "sla.ack.breached") == 2 &&
          num(o, "sla.ack.pending") == 0);
    CHECK(NEAR(num(o, "sla.ack.compliance"), 1.0 / 3));
    CHECK(num(o, "sla.answer.met") == 1 && num(o, "sla.answer.breached") == 1 &&
          num(o, "sla.answer.pending") == 1);
    CHECK(num(o, "sla.resolve.met") == 2 && num(o, "sla.resolve.breached") == 0 &&
          num(o, "sla.resolve.pending") == 1);
    CHECK(NEAR(num(o, "sla.resolve.compliance"), 1.0));

    /* satisfaction: answered in the range: csat 5, 2, 4; nps 10, 6 */
    CHECK(num(o, "satisfaction.responses") == 3);
    CHECK(NEAR(num(o, "satisfaction.csat_avg"), 11.0 / 3));
    CHECK(num(o, "satisfaction.csat_dist.1") == 1 && num(o, "satisfaction.csat_dist.0") == 0 &&
          num(o, "satisfaction.csat_dist.3") == 1 && num(o, "satisfaction.csat_dist.4") == 1);
    CHECK(num(o, "satisfaction.nps_responses") == 2);
    CHECK(num(o, "satisfaction.promoters") == 1 && num(o, "satisfaction.detractors") == 1 &&
          num(o, "satisfaction.passives") == 0);
    CHECK(NEAR(num(o, "satisfaction.nps"), 0));
    CHECK(num(o, "satisfaction.solved") == 1 && num(o, "satisfaction.unsolved") == 1);
    /* follow-ups: asked 72 h before now and unanswered: record 2 only */
    CHECK(num(o, "followups_pending") == 1);
    cJSON_Delete(o);
    free(json);

    /* an empty range: zeros and nulls, no division by zero */
    CHECK(dashboard_parse_range("from=2025-01-01&to=2025-01-01", now, &r, err, sizeof(err)) == 0);
    json = dashboard_figures(db, &r, now, 72, err, sizeof(err));
    o = cJSON_Parse(json);
    CHECK(num(o, "totals.complaints") == 0);
    CHECK(is_null(o, "totals", "escalation_rate") && is_null(o, "satisfaction", "csat_avg") &&
          is_null(o, "satisfaction", "nps"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "sla"), "ack"),
        "compliance")));
    cJSON_Delete(o);
    free(json);

    /* a database error is reported, not crashed on */
    exec(db, "DROP TABLE surveys");
    CHECK(dashboard_parse_range("from=2026-03-01&to=2026-03-07", now, &r, err, sizeof(err)) == 0);
    err[0] = '\0';
    CHECK(dashboard_figures(db, &r, now, 72, err, sizeof(err)) == NULL && strstr(err, "surveys"));
    sqlite3_close(db);
}

static void test_csv(void)
{
    sqlite3 *db = db_new();
    dashboard_range_t r;
    char err[256] = "", *csv = NULL;
    size_t len = 0;
    double t0 = local_epoch(2026, 3, 2, 10, 0);

    CHECK(db != NULL);
    if (!db)
        return;
    fill(db, t0);
    CHECK(dashboard_parse_range("from=2026-03-01&to=2026-03-07", t0, &r, err, sizeof(err)) == 0);
    CHECK(dashboard_csv(db, &r, &csv, &len, err, sizeof(err)) == 0);
    CHECK(csv && len == strlen(csv));
    if (!csv)
        return;
    CHECK(memcmp(csv, "\xEF\xBB\xBFnumber,conversation,created_at,", 33) == 0);
    /* 4 rows + the header, each ended by CRLF (the quoted newline is a bare LF) */
    int lines = 0;
    for (const char *p = csv; (p = strstr(p, "\r\n")); p += 2)
        lines++;
    CHECK(lines == 5);
    /* record 1: local time, labels, masked phone number, doubled quotes, late answer */
    CHECK(strstr(csv, "TS-1,c-000000000001,2026-03-02 10:00:00,ecom.refund,退款,2,web,resolved,"
                      "已解决,wang,0,0,2026-03-02 10:30:00,2026-03-02 10:12:00,") != NULL);
    CHECK(strstr(csv, ",answer,5,10,\"买的\"\"手机\"\",没到\n电话138****5678\"\r\n") != NULL);
    CHECK(strstr(csv, "13812345678") == NULL && strstr(csv, "old") == NULL &&
          strstr(csv, "not internal") == NULL);
    /* record 2: a formula is defused; record 3: both bits, csat 2 */
    CHECK(strstr(csv, ",ack,,,\"'=1+2\"\r\n") != NULL);
    CHECK(strstr(csv, "TS-3,c-000000000003,2026-03-02 12:00:00,bank.fee,误扣费,2,wechat,closed,"
                      "已结案,wang,0,1,") != NULL);
    CHECK(strstr(csv, ",ack,2,6,\r\n") != NULL);
    /* record 4: no category, no deadlines */
    CHECK(strstr(csv, "TS-4,c-000000000004,2026-03-07 23:30:00,,未分类,2,web,received,已受理,"
                      "wang,0,0,,,,,,,,,4,,\r\n") != NULL);
    free(csv);

    /* an empty range: the BOM and the header only */
    CHECK(dashboard_parse_range("from=2025-01-01&to=2025-01-01", t0, &r, err, sizeof(err)) == 0);
    CHECK(dashboard_csv(db, &r, &csv, &len, err, sizeof(err)) == 0);
    CHECK(csv && len > 3 && strstr(csv, "\r\n") == csv + len - 2);
    free(csv);
    sqlite3_close(db);
}

int main(void)
{
    RUN(test_ranges);
    RUN(test_figures);
    RUN(test_csv);
    return check_summary();
}
