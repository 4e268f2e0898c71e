/*
 * dashboard.c - the supervisors' dashboard: figures over the complaint records and the CSV
 * export (docs/complaints.md, "Dashboard and CSV").
 *
 * What it owns
 *   dash_job: one request in flight.  It holds the reply handle, the range, the server's clock
 *   and the running SLA policy's followup_pending_h at the time of the request, the database
 *   path, and later
 *   the answer.  Created by dashboard_handle() on the loop thread, freed in after_work() there.
 *   `in_flight` counts the jobs between uv_queue_work() and after_work() (loop thread only;
 *   one server per process).
 *
 * Life of a request
 *   dashboard_handle()   loop thread: method and path, range (400), in_flight cap (503 with
 *                        Retry-After), job -> uv_queue_work()
 *   work()               a thread-pool thread: its own read-only connection to the database
 *                        file, one read transaction (BEGIN ... COMMIT: every figure from one
 *                        snapshot; WAL readers never block the writer), dashboard_figures() or
 *                        dashboard_csv(), the connection closed
 *   after_work()         loop thread: in_flight--, http_reply*() with the answer (dropped by
 *                        http.c when the client has gone), the job freed
 *
 * Definitions of the figures (docs/complaints.md has the same list for readers)
 *   cohort       the complaints created in [start, end) (index complaints_created); every
 *                figure but escalation_reasons and satisfaction is about them
 *   escalated    escalated <> 0; resolved: resolved_at IS NOT NULL; first contact: resolved and
 *                escalated = 0 and reopened = 0; rates are ratios in 0..1, null when the
 *                denominator is 0 (escalation_rate over complaints, first contact over resolved)
 *   sla.<d>      over the cohort's records that have that deadline (<d>_due IS NOT NULL):
 *                breached = its bit in `breached` is set, or the step was reached after the
 *                deadline; met = reached by the deadline and not breached; pending = the rest
 *                (not reached, not yet due); compliance = met / (met + breached)
 *   previous     the same count over the period of equal length just before the range
 *   escalation_reasons  hand-offs (handoffs.queued_at) in [start, end), by reason
 *   satisfaction surveys answered in [start, end); NPS = (promoters - detractors) * 100 / NPS
 *                answers (promoters 9-10, passives 7-8, detractors 0-6)
 *   followups_pending  surveys asked more than followup_pending_h hours before now and not
 *                answered (not limited to the range)
 */
#include "dashboard.h"

#include "complaint.h"
#include "config.h"
#include "kb.h"
#include "log.h"
#include "privacy.h"
#include "server.h"
#include "session.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY_S 86400.0
#define RETRY_AFTER "Retry-After: 2\r\n"

/* ---- dates ---- */

static const char *const step_name[3] = {"ack", "answer", "resolve"};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : n[m - 1];
}

/* "YYYY-MM-DD" -> day number.  0, or -1 when malformed or impossible. */
static int parse_day(const char *s, long *day)
{
    int v[3] = {0, 0, 0};
    static const int width[3] = {4, 2, 2};
    const char *p = s;
    for (int f = 0; f < 3; f++) {
        for (int i = 0; i < width[f]; i++, p++) {
            if (*p < '0' || *p > '9')
                return -1;
            v[f] = v[f] * 10 + (*p - '0');
        }
        if (f < 2 && *p++ != '-')
            return -1;
    }
    if (*p != '\0' || v[0] < 2000 || v[0] > 2099 || v[1] < 1 || v[1] > 12 || v[2] < 1 ||
        v[2] > days_in_month(v[0], v[1]))
        return -1;
    *day = days_from_civil(v[0], v[1], v[2]);
    return 0;
}

void dashboard_day_text(long day, char *out, size_t outlen)
{
    time_t t = (time_t)day * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%04u-%02u-%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u);
}

static long local_day(double t)
{
    return (long)floor((t + DASHBOARD_UTC_OFFSET_S) / DAY_S);
}

static double day_start(long day)
{
    return (double)day * DAY_S - DASHBOARD_UTC_OFFSET_S;
}

/* Local time "YYYY-MM-DD HH:MM:SS" of epoch seconds t into out (>= 20 bytes). */
static void local_text(double t, char *out, size_t outlen)
{
    time_t s = (time_t)floor(t) + DASHBOARD_UTC_OFFSET_S;
    struct tm tm;
    gmtime_r(&s, &tm);
    /* the fields reduced to their widths, so that the compiler sees 20 bytes always suffice */
    snprintf(out, outlen, "%04u-%02u-%02u %02u:%02u:%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u);
}

/* One date parameter: 1 absent or empty, 0 read into *day, -1 bad (message in err). */
static int date_param(const char *query, const char *name, long *day, char *err, size_t errlen)
{
    int bad = 0, rc;
    char *v = kb_query_param(query, name, &bad);
    if (bad) {
        snprintf(err, errlen, "parameter \"%s\" is not valid URL-encoded UTF-8", name);
        return -1;
    }
    if (!v || !*v) {
        free(v);
        return 1;
    }
    rc = parse_day(v, day);
    if (rc != 0)
        snprintf(err, errlen, "parameter \"%s\" must be a date YYYY-MM-DD between 2000 and 2099",
                 name);
    free(v);
    return rc;
}

int dashboard_parse_range(const char *query, double now, dashboard_range_t *out, char *err,
                          size_t errlen)
{
    long today = local_day(now), from = 0, to = 0;
    int has_from, has_to;

    if ((has_from = date_param(query, "from", &from, err, errlen)) < 0 ||
        (has_to = date_param(query, "to", &to, err, errlen)) < 0)
        return -1;
    if (has_to != 0 && has_from != 0) { /* neither */
        to = today;
        from = to - (DASHBOARD_DEFAULT_DAYS - 1);
    } else if (has_to != 0) { /* from alone */
        to = from + (DASHBOARD_DEFAULT_DAYS - 1);
        if (to > today)
            to = today > from ? today : from;
    } else if (has_from != 0) { /* to alone */
        from = to - (DASHBOARD_DEFAULT_DAYS - 1);
    }
    if (from > to) {
        snprintf(err, errlen, "\"from\" is after \"to\"");
        return -1;
    }
    if (to - from + 1 > DASHBOARD_MAX_DAYS) {
        snprintf(err, errlen, "the range is longer than %d days", DASHBOARD_MAX_DAYS);
        return -1;
    }
    out->from_day = from;
    out->to_day = to;
    out->start = day_start(from);
    out->end = day_start(to + 1);
    return 0;
}

/* ---- names ---- */

static const char *category_label(const char *slug)
{
    const char *name;
    if (!slug || !*slug)
        return "未分类";
    name = kb_category_name(slug);
    return name ? name : slug;
}

static const char *channel_label(const char *ch)
{
    static const struct {
        const char *code, *label;
    } t[] = {{"web", "网页"},   {"app", "App"},    {"h5", "H5"},     {"wechat", "微信"},
             {"email", "邮件"}, {"phone", "电话"}, {"other", "其他"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(t[i].code, ch) == 0)
            return t[i].label;
    return *ch ? ch : "未知";
}

/* Escalation reasons of rules/escalation.lua, the flow and the server (sla_breach). */
static const char *reason_label(const char *reason)
{
    static const struct {
        const char *code, *label;
    } t[] = {
        {"human_request", "客户要求人工"},
        {"threat", "扬言曝光/投诉监管"},
        {"anger", "情绪激动"},
        {"anger_rising", "情绪持续升级"},
        {"bot_failed", "机器人未能解决"},
        {"high_severity", "问题严重"},
        {"vip", "VIP 客户"},
        {"deadline", "承诺时限将到"},
        {"deadline_overdue", "承诺已超时"},
        {"cannot_confirm", "无法确认问题"},
        {"no_solution", "没有可用方案"},
        {"solution_rejected", "不接受方案"},
        {"no_agreement", "方案未达成一致"},
        {"dissatisfied", "评价不满意"},
        {"follow_up_unresolved", "回访未解决"},
        {"sla_breach", "处理超时"},
        {"flow_error", "流程出错"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(t[i].code, reason) == 0)
            return t[i].label;
    return reason;
}

/* ---- reading ---- */

static const char *col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    return v ? (const char *)v : "";
}

static long long col_int(sqlite3_stmt *st, int i)
{
    return sqlite3_column_int64(st, i);
}

static double col_time(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? 0 : sqlite3_column_double(st, i);
}

/* Prepares sql and binds ?1 = start, ?2 = end, ?3 = the previous period's start (only the
 * parameters the statement has). */
static sqlite3_stmt *query(sqlite3 *db, const char *sql, const dashboard_range_t *r, char *err,
                           size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "dashboard: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return NULL;
    }
    int n = sqlite3_bind_parameter_count(st);
    if (n >= 1)
        sqlite3_bind_double(st, 1, r->start);
    if (n >= 2)
        sqlite3_bind_double(st, 2, r->end);
    if (n >= 3)
        sqlite3_bind_double(st, 3, r->start - (r->end - r->start));
    return st;
}

/* Steps an aggregate's one row: 0, or -1 with the message (st finalized). */
static int one_row(sqlite3 *db, sqlite3_stmt *st, char *err, size_t errlen)
{
    if (sqlite3_step(st) == SQLITE_ROW)
        return 0;
    snprintf(err, errlen, "dashboard: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return -1;
}

/* The end of a statement's rows: 0 after SQLITE_DONE, else -1 with the message. */
static int finish(sqlite3 *db, sqlite3_stmt *st, int rc, char *err, size_t errlen)
{
    if (rc != SQLITE_DONE)
        snprintf(err, errlen, "dashboard: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static cJSON *ratio(long long num, long long den)
{
    return den > 0 ? cJSON_CreateNumber((double)num / (double)den) : cJSON_CreateNull();
}

static int add_ratio(cJSON *o, const char *key, long long num, long long den)
{
    cJSON *v = ratio(num, den);
    return v && cJSON_AddItemToObject(o, key, v) ? 0 : -1;
}

static int add_num(cJSON *o, const char *key, double v)
{
    return cJSON_AddNumberToObject(o, key, v) ? 0 : -1;
}

static int add_str(cJSON *o, const char *key, const char *v)
{
    return cJSON_AddStringToObject(o, key, v) ? 0 : -1;
}

#define COHORT " FROM complaints WHERE created_at >= ?1 AND created_at < ?2"

static int add_range(cJSON *root, const dashboard_range_t *r, double now)
{
    char a[16], b[16], when[40];
    long days = r->to_day - r->from_day + 1;
    cJSON *o = cJSON_AddObjectToObject(root, "range"), *p;
    if (!o)
        return -1;
    dashboard_day_text(r->from_day, a, sizeof(a));
    dashboard_day_text(r->to_day, b, sizeof(b));
    if (add_str(o, "from", a) || add_str(o, "to", b) || add_num(o, "days", (double)days) ||
        add_str(o, "utc_offset", "+08:00") || !(p = cJSON_AddObjectToObject(o, "previous")))
        return -1;
    dashboard_day_text(r->from_day - days, a, sizeof(a));
    dashboard_day_text(r->from_day - 1, b, sizeof(b));
    if (add_str(p, "from", a) || add_str(p, "to", b))
        return -1;
    local_text(now, when, sizeof(when));
    when[10] = 'T';
    strcat(when, "+08:00");
    return add_str(root, "generated_at", when) || add_num(root, "now", now) ? -1 : 0;
}

static int add_totals(sqlite3 *db, cJSON *root, const dashboard_range_t *r, char *err,
                      size_t errlen)
{
    sqlite3_stmt *st = query(
        db,
        "SELECT COUNT(*), TOTAL(escalated <> 0), TOTAL(resolved_at IS NOT NULL),"
        " TOTAL(resolved_at IS NOT NULL AND escalated = 0 AND reopened = 0),"
        " TOTAL(reopened <> 0), TOTAL(status NOT IN ('resolved', 'closed')),"
        " (SELECT COUNT(*) FROM complaints WHERE created_at >= ?3 AND created_at < ?1)" COHORT,
        r, err, errlen);
    if (!st)
        return -1;
    if (one_row(db, st, err, errlen) != 0)
        return -1;
    long long n = col_int(st, 0), esc = col_int(st, 1), res = col_int(st, 2), fcr = col_int(st, 3),
              reo = col_int(st, 4), open = col_int(st, 5), prev = col_int(st, 6);
    sqlite3_finalize(st);
    cJSON *o = cJSON_AddObjectToObject(root, "totals");
    if (!o || add_num(o, "complaints", (double)n) || add_num(o, "escalated", (double)esc) ||
        add_ratio(o, "escalation_rate", esc, n) || add_num(o, "resolved", (double)res) ||
        add_num(o, "first_contact", (double)fcr) ||
        add_ratio(o, "first_contact_resolution_rate", fcr, res) ||
        add_num(o, "reopened", (double)reo) || add_num(o, "open", (double)open) ||
        add_num(o, "previous", (double)prev)) {
        snprintf(err, errlen, "dashboard: out of memory");
        return -1;
    }
    return 0;
}

static int add_by_day(sqlite3 *db, cJSON *root, const dashboard_range_t *r, char *err,
                      size_t errlen)
{
    long days = r->to_day - r->from_day + 1;
    long long *count = calloc((size_t)days * 2, sizeof(*count)), *esc;
    cJSON *a = cJSON_AddArrayToObject(root, "by_day");
    sqlite3_stmt *st = NULL;
    int rc = -1;

    if (!count || !a) {
        snprintf(err, errlen, "dashboard: out of memory");
        goto out;
    }
    esc = count + days;
    /* the local day of created_at, as a day number */
    st = query(db,
               "SELECT CAST((created_at + 28800) / 86400 AS INTEGER) AS d, COUNT(*),"
               " TOTAL(escalated <> 0)" COHORT " GROUP BY d",
               r, err, errlen);
    if (!st)
        goto out;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        long d = (long)col_int(st, 0) - r->from_day;
        if (d >= 0 && d < days) {
            count[d] = col_int(st, 1);
            esc[d] = col_int(st, 2);
        }
    }
    if (finish(db, st, s, err, errlen) != 0)
        goto out;
    for (long d = 0; d < days; d++) {
        char date[16];
        cJSON *e = cJSON_CreateObject();
        dashboard_day_text(r->from_day + d, date, sizeof(date));
        if (!e || !cJSON_AddItemToArray(a, e) || add_str(e, "date", date) ||
            add_num(e, "count", (double)count[d]) || add_num(e, "escalated", (double)esc[d])) {
            snprintf(err, errlen, "dashboard: out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    free(count);
    return rc;
}

/* by_category / by_channel, and top_topics from the categories. */
static int add_breakdown(sqlite3 *db, cJSON *root, const dashboard_range_t *r, int channel,
                         long long total, char *err, size_t errlen)
{
    const char *sql = channel ? "SELECT channel, TOTAL(created_at >= ?1), TOTAL(created_at < ?1),"
                                " TOTAL(created_at >= ?1 AND escalated <> 0) FROM complaints"
                                " WHERE created_at >= ?3 AND created_at < ?2 GROUP BY channel"
                                " ORDER BY 2 DESC, 3 DESC, 1"
                              : "SELECT category, TOTAL(created_at >= ?1), TOTAL(created_at < ?1),"
                                " TOTAL(created_at >= ?1 AND escalated <> 0) FROM complaints"
                                " WHERE created_at >= ?3 AND created_at < ?2 GROUP BY category"
                                " ORDER BY 2 DESC, 3 DESC, 1";
    cJSON *a = cJSON_AddArrayToObject(root, channel ? "by_channel" : "by_category");
    cJSON *top = channel ? NULL : cJSON_AddArrayToObject(root, "top_topics");
    sqlite3_stmt *st = query(db, sql, r, err, errlen);
    int s, ntop = 0;

    if (!st)
        return -1;
    if (!a || (!channel && !top))
        goto oom;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = col_str(st, 0);
        long long n = col_int(st, 1), prev = col_int(st, 2), esc = col_int(st, 3);
        const char *label = channel ? channel_label(key) : category_label(key);
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(a, e) ||
            add_str(e, channel ? "channel" : "category", key) || add_str(e, "label", label) ||
            add_num(e, "count", (double)n) || add_num(e, "previous", (double)prev) ||
            add_num(e, "escalated", (double)esc))
            goto oom;
        if (!channel && n > 0 && ntop < DASHBOARD_TOP_TOPICS) {
            cJSON *t = cJSON_CreateObject();
            if (!t || !cJSON_AddItemToArray(top, t) || add_str(t, "category", key) ||
                add_str(t, "label", label) || add_num(t, "count", (double)n) ||
                add_ratio(t, "share", n, total) || add_num(t, "previous", (double)prev) ||
                add_num(t, "escalated", (double)esc))
                goto oom;
            ntop++;
        }
    }
    return finish(db, st, s, err, errlen);
oom:
    sqlite3_finalize(st);
    snprintf(err, errlen, "dashboard: out of memory");
    return -1;
}

static int add_reasons(sqlite3 *db, cJSON *root, const dashboard_range_t *r, char *err,
                       size_t errlen)
{
    cJSON *a = cJSON_AddArrayToObject(root, "escalation_reasons");
    sqlite3_stmt *st = query(db,
                             "SELECT reason, COUNT(*) FROM handoffs WHERE queued_at >= ?1"
                             " AND queued_at < ?2 GROUP BY reason ORDER BY 2 DESC, 1",
                             r, err, errlen);
    int s;
    if (!st)
        return -1;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *e = cJSON_CreateObject();
        if (!a || !e || !cJSON_AddItemToArray(a, e) || add_str(e, "reason", col_str(st, 0)) ||
            add_str(e, "label", reason_label(col_str(st, 0))) ||
            add_num(e, "count", (double)col_int(st, 1))) {
            sqlite3_finalize(st);
            snprintf(err, errlen, "dashboard: out of memory");
            return -1;
        }
    }
    return finish(db, st, s, err, errlen);
}

/* met / breached / pending of one deadline, as SQL (see the top of the file). */
#define SLA_SQL(due, at, bit)                                                                      \
    "TOTAL(" due " IS NOT NULL AND (breached & " bit ") = 0 AND " at " IS NOT NULL AND " at        \
    " <= " due "), TOTAL(" due " IS NOT NULL AND ((breached & " bit ") <> 0 OR (" at               \
    " IS NOT NULL AND " at " > " due "))), TOTAL(" due " IS NOT NULL AND (breached & " bit         \
    ") = 0 AND " at " IS NULL)"

/* clang-format off */
static const char sla_sql[] =
    "SELECT " SLA_SQL("ack_due", "acked_at", "1") ", "
    SLA_SQL("answer_due", "answered_at", "2") ", "
    SLA_SQL("resolve_due", "resolved_at", "4") COHORT;
/* clang-format on */

static int add_sla(sqlite3 *db, cJSON *root, const dashboard_range_t *r, char *err, size_t errlen)
{
    sqlite3_stmt *st = query(db, sla_sql, r, err, errlen);
    if (!st)
        return -1;
    if (one_row(db, st, err, errlen) != 0)
        return -1;
    cJSON *o = cJSON_AddObjectToObject(root, "sla");
    for (int d = 0; d < 3; d++) {
        long long met = col_int(st, d * 3), breached = col_int(st, d * 3 + 1),
                  pending = col_int(st, d * 3 + 2);
        cJSON *e = o ? cJSON_AddObjectToObject(o, step_name[d]) : NULL;
        if (!e || add_num(e, "met", (double)met) || add_num(e, "breached", (double)breached) ||
            add_num(e, "pending", (double)pending) ||
            add_ratio(e, "compliance", met, met + breached)) {
            sqlite3_finalize(st);
            snprintf(err, errlen, "dashboard: out of memory");
            return -1;
        }
    }
    sqlite3_finalize(st);
    return 0;
}

static int add_satisfaction(sqlite3 *db, cJSON *root, const dashboard_range_t *r, char *err,
                            size_t errlen)
{
    sqlite3_stmt *st =
        query(db,
              "SELECT COUNT(*), COUNT(csat), TOTAL(csat), TOTAL(csat = 1), TOTAL(csat = 2),"
              " TOTAL(csat = 3), TOTAL(csat = 4), TOTAL(csat = 5), COUNT(nps), TOTAL(nps >= 9),"
              " TOTAL(nps BETWEEN 7 AND 8), TOTAL(nps <= 6), TOTAL(solved = 1), TOTAL(solved = 0)"
              " FROM surveys WHERE answered_at >= ?1 AND answered_at < ?2",
              r, err, errlen);
    if (!st)
        return -1;
    if (one_row(db, st, err, errlen) != 0)
        return -1;
    long long responses = col_int(st, 0), ncsat = col_int(st, 1), nnps = col_int(st, 8),
              pro = col_int(st, 9), pas = col_int(st, 10), det = col_int(st, 11);
    double csat_sum = sqlite3_column_double(st, 2);
    cJSON *o = cJSON_AddObjectToObject(root, "satisfaction"), *dist = NULL;
    int ok = o && !add_num(o, "responses", (double)responses) &&
             !add_num(o, "csat_responses", (double)ncsat) &&
             cJSON_AddItemToObject(o, "csat_avg",
                                   ncsat ? cJSON_CreateNumber(csat_sum / (double)ncsat)
                                         : cJSON_CreateNull()) &&
             (dist = cJSON_AddArrayToObject(o, "csat_dist")) != NULL;
    for (int i = 0; ok && i < 5; i++)
        ok = cJSON_AddItemToArray(dist, cJSON_CreateNumber((double)col_int(st, 3 + i)));
    ok = ok && !add_num(o, "nps_responses", (double)nnps) &&
         cJSON_AddItemToObject(o, "nps",
                               nnps ? cJSON_CreateNumber((double)(pro - det) * 100.0 / (double)nnps)
                                    : cJSON_CreateNull()) &&
         !add_num(o, "promoters", (double)pro) && !add_num(o, "passives", (double)pas) &&
         !add_num(o, "detractors", (double)det) && !add_num(o, "solved", (double)col_int(st, 12)) &&
         !add_num(o, "unsolved", (double)col_int(st, 13));
    sqlite3_finalize(st);
    if (!ok) {
        snprintf(err, errlen, "dashboard: out of memory");
        return -1;
    }
    return 0;
}

static int add_followups(sqlite3 *db, cJSON *root, double now, int followup_pending_h, char *err,
                         size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT COUNT(*) FROM surveys WHERE answered_at IS NULL"
                           " AND asked_at IS NOT NULL AND asked_at <= ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "dashboard: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_bind_double(st, 1, now - followup_pending_h * 3600.0);
    if (one_row(db, st, err, errlen) != 0)
        return -1;
    long long n = col_int(st, 0);
    sqlite3_finalize(st);
    if (add_num(root, "followups_pending", (double)n)) {
        snprintf(err, errlen, "dashboard: out of memory");
        return -1;
    }
    return 0;
}

char *dashboard_figures(sqlite3 *db, const dashboard_range_t *r, double now, int followup_pending_h,
                        char *err, size_t errlen)
{
    cJSON *root = cJSON_CreateObject();
    char *out = NULL;
    long long total = 0;

    if (!root || add_range(root, r, now) != 0 || add_totals(db, root, r, err, errlen) != 0)
        goto out;
    total = (long long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "totals"), "complaints"));
    if (add_by_day(db, root, r, err, errlen) != 0 ||
        add_breakdown(db, root, r, 0, total, err, errlen) != 0 ||
        add_breakdown(db, root, r, 1, total, err, errlen) != 0 ||
        add_reasons(db, root, r, err, errlen) != 0 || add_sla(db, root, r, err, errlen) != 0 ||
        add_satisfaction(db, root, r, err, errlen) != 0 ||
        add_followups(db, root, now, followup_pending_h, err, errlen) != 0)
        goto out;
    if (!(out = cJSON_PrintUnformatted(root)))
        snprintf(err, errlen, "dashboard: out of memory");
out:
    if (!out && !*err)
        snprintf(err, errlen, "dashboard: out of memory");
    cJSON_Delete(root);
    return out;
}

/* ---- CSV ---- */

typedef util_buf buf;

static void buf_str(buf *b, const char *s)
{
    util_buf_add(b, s, strlen(s));
}

/*
 * One text cell (RFC 4180): quoted when it holds a comma, a double quote, CR or LF, with
 * quotes doubled.  A cell that starts with = + - @ or a tab would be a formula in a
 * spreadsheet: it gets a leading apostrophe (and is quoted), so that customer text cannot run
 * as one.
 */
static void csv_text(buf *b, const char *s)
{
    int formula = s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL;
    int quote = formula || strpbrk(s, ",\"\r\n") != NULL;
    if (!quote) {
        buf_str(b, s);
        return;
    }
    util_buf_add(b, "\"", 1);
    if (formula)
        util_buf_add(b, "'", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            util_buf_add(b, "\"\"", 2);
        else
            util_buf_add(b, p, 1);
    }
    util_buf_add(b, "\"", 1);
}

static void csv_time(buf *b, double t)
{
    char s[32];
    if (t > 0) {
        local_text(t, s, sizeof(s));
        buf_str(b, s);
    }
}

static void csv_int(buf *b, sqlite3_stmt *st, int i)
{
    char s[32];
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return;
    snprintf(s, sizeof(s), "%lld", col_int(st, i));
    buf_str(b, s);
}

static const char csv_header[] =
    "number,conversation,created_at,category,category_label,severity,channel,status,"
    "status_text,owner,escalated,reopened,ack_due,acked_at,answer_due,answered_at,resolve_due,"
    "resolved_at,closed_at,breached,csat,nps,description\r\n";

int dashboard_csv(sqlite3 *db, const dashboard_range_t *r, char **out, size_t *len, char *err,
                  size_t errlen)
{
    buf b = {0};
    int rows = 0, s, rc = -1;
    /* the description is the flow's latest `description` record (index agent_events_internal) */
    sqlite3_stmt *st = query(
        db,
        "SELECT c.number, c.conversation_id, c.created_at, c.category, c.severity, c.channel,"
        " c.status, c.owner, c.escalated, c.reopened, c.ack_due, c.acked_at, c.answer_due,"
        " c.answered_at, c.resolve_due, c.resolved_at, c.closed_at, c.breached, s.csat, s.nps,"
        " (SELECT json_extract(e.detail, '$.value') FROM events e"
        "   WHERE e.conversation_id = c.conversation_id AND e.kind = 'record' AND e.seq IS NULL"
        "   AND json_valid(e.detail) AND json_extract(e.detail, '$.field') = 'description'"
        "   ORDER BY e.id DESC LIMIT 1)"
        " FROM complaints c LEFT JOIN surveys s ON s.conversation_id = c.conversation_id"
        " WHERE c.created_at >= ?1 AND c.created_at < ?2"
        " ORDER BY c.created_at, c.conversation_id",
        r, err, errlen);

    *out = NULL;
    *len = 0;
    if (!st)
        return -1;
    buf_str(&b, "\xEF\xBB\xBF"); /* the BOM: Excel reads the file as UTF-8 */
    buf_str(&b, csv_header);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        char conv[32], breached[32] = "";
        unsigned bits = (unsigned)col_int(st, 17);
        if (++rows > DASHBOARD_CSV_MAX_ROWS) {
            snprintf(err, errlen, "more than %d complaints in the range: export a shorter one",
                     DASHBOARD_CSV_MAX_ROWS);
            sqlite3_finalize(st);
            rc = DASHBOARD_ETOOBIG;
            goto out;
        }
        snprintf(conv, sizeof(conv), "c-%012lld", col_int(st, 1));
        csv_text(&b, col_str(st, 0));
        util_buf_add(&b, ",", 1);
        csv_text(&b, conv);
        util_buf_add(&b, ",", 1);
        csv_time(&b, col_time(st, 2));
        util_buf_add(&b, ",", 1);
        csv_text(&b, col_str(st, 3));
        util_buf_add(&b, ",", 1);
        csv_text(&b, category_label(col_str(st, 3)));
        util_buf_add(&b, ",", 1);
        csv_int(&b, st, 4);
        util_buf_add(&b, ",", 1);
        csv_text(&b, col_str(st, 5));
        util_buf_add(&b, ",", 1);
        csv_text(&b, col_str(st, 6));
        util_buf_add(&b, ",", 1);
        csv_text(&b, complaint_status_text(col_str(st, 6)));
        util_buf_add(&b, ",", 1);
        csv_text(&b, col_str(st, 7));
        util_buf_add(&b, ",", 1);
        csv_int(&b, st, 8);
        util_buf_add(&b, ",", 1);
        csv_int(&b, st, 9);
        for (int d = 0; d < 3; d++) {
            double due = col_time(st, 10 + 2 * d), at = col_time(st, 11 + 2 * d);
            util_buf_add(&b, ",", 1);
            csv_time(&b, due);
            util_buf_add(&b, ",", 1);
            csv_time(&b, at);
            /* the same rule as the figures: its bit, or reached after the deadline */
            if (due > 0 && ((bits & (1u << d)) || (at > 0 && at > due))) {
                if (breached[0])
                    strcat(breached, " ");
                strcat(breached, step_name[d]);
            }
        }
        util_buf_add(&b, ",", 1);
        csv_time(&b, col_time(st, 16));
        util_buf_add(&b, ",", 1);
        csv_text(&b, breached);
        util_buf_add(&b, ",", 1);
        csv_int(&b, st, 18);
        util_buf_add(&b, ",", 1);
        csv_int(&b, st, 19);
        util_buf_add(&b, ",", 1);
        if (sqlite3_column_type(st, 20) != SQLITE_NULL) {
            /* exports leave the building: personal numbers are always masked */
            char *masked = privacy_mask_dup(col_str(st, 20));
            if (!masked)
                b.failed = 1;
            else
                csv_text(&b, masked);
            free(masked);
        }
        util_buf_add(&b, "\r\n", 2);
    }
    if (finish(db, st, s, err, errlen) != 0)
        goto out;
    if (b.failed) {
        snprintf(err, errlen, "dashboard: out of memory");
        goto out;
    }
    *out = b.p;
    *len = b.len;
    b.p = NULL;
    rc = 0;
out:
    free(b.p);
    return rc;
}

/* ---- the job ---- */

typedef struct dash_job {
    uv_work_t req;
    http_reply_t *h;
    int csv;
    dashboard_range_t range;
    double now;
    char db_path[4096];
    int followup_pending_h; /* the running SLA policy's, taken on the loop thread */
    /* the answer, set by work() */
    int status;
    char *body;
    size_t len;
    char err[256];
} dash_job;

static int in_flight; /* jobs between uv_queue_work and after_work (loop thread) */

static void work(uv_work_t *req)
{
    dash_job *j = req->data;
    sqlite3 *db = NULL;
    int began = 0;

    j->status = 500;
    if (sqlite3_open_v2(j->db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(j->err, sizeof(j->err), "dashboard: %.120s: %.100s", j->db_path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(j->err, sizeof(j->err), "dashboard: %s", sqlite3_errmsg(db));
        goto out;
    }
    began = 1;
    if (j->csv) {
        int rc = dashboard_csv(db, &j->range, &j->body, &j->len, j->err, sizeof(j->err));
        j->status = rc == 0 ? 200 : rc == DASHBOARD_ETOOBIG ? 413 : 500;
    } else {
        j->body =
            dashboard_figures(db, &j->range, j->now, j->followup_pending_h, j->err, sizeof(j->err));
        if (j->body) {
            j->len = strlen(j->body);
            j->status = 200;
        }
    }
out:
    if (began)
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
}

/* An error answer with a Retry-After header (http_reply_error has none). */
static void reply_busy(http_reply_t *h, const char *message)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    char *s = NULL;
    if (e && cJSON_AddStringToObject(e, "code", "unavailable") &&
        cJSON_AddStringToObject(e, "message", message))
        s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    http_reply_with_headers(h, 503, "application/json", RETRY_AFTER, s, s ? strlen(s) : 0);
}

static void after_work(uv_work_t *req, int status)
{
    dash_job *j = req->data;
    in_flight--;
    if (status != 0) { /* cancelled */
        reply_busy(j->h, "the dashboard could not be computed now; try again");
    } else if (j->status == 200 && j->csv) {
        char from[16], to[16], headers[160];
        dashboard_day_text(j->range.from_day, from, sizeof(from));
        dashboard_day_text(j->range.to_day, to, sizeof(to));
        snprintf(headers, sizeof(headers),
                 "Content-Disposition: attachment; filename=\"complaints_%s_%s.csv\"\r\n", from,
                 to);
        http_reply_with_headers(j->h, 200, "text/csv; charset=utf-8", headers, j->body, j->len);
        j->body = NULL;
    } else if (j->status == 200) {
        http_reply_json(j->h, 200, j->body);
        j->body = NULL;
    } else if (j->status == 413) {
        http_reply_error(j->h, 413, "too_large", j->err);
    } else {
        log_error("dashboard", "%s", j->err[0] ? j->err : "failed");
        http_reply_error(j->h, 500, "internal", "the figures could not be read");
    }
    free(j->body);
    free(j);
}

void dashboard_handle(server_t *srv, const http_call_t *call, http_reply_t *h)
{
    int csv = strcmp(call->path, "/api/dashboard/export.csv") == 0;
    dashboard_range_t range;
    char err[160];
    dash_job *j;

    if (!csv && strcmp(call->path, "/api/dashboard") != 0) {
        http_reply_error(h, 404, "not_found", "no such endpoint");
        return;
    }
    if (strcmp(call->method, "GET") != 0) {
        http_reply_error(h, 405, "method_not_allowed", "use GET");
        return;
    }
    double now = session_mgr_now(srv->sessions);
    if (dashboard_parse_range(call->query, now, &range, err, sizeof(err)) != 0) {
        http_reply_error(h, 400, "bad_request", err);
        return;
    }
    if (in_flight >= DASHBOARD_MAX_JOBS) {
        reply_busy(h, "the dashboard is busy; try again in a moment");
        return;
    }
    if (!(j = calloc(1, sizeof(*j))))
        goto busy;
    j->h = h;
    j->csv = csv;
    j->range = range;
    j->now = now;
    j->req.data = j;
    if (config_db_path(srv->cfg, j->db_path, sizeof(j->db_path)) != 0 ||
        strcmp(srv->cfg->db_path, ":memory:") == 0) {
        free(j);
        http_reply_error(h, 503, "unavailable", "the dashboard needs a database file");
        return;
    }
    j->followup_pending_h = complaint_followup_pending_h(srv->complaints);
    if (uv_queue_work(&srv->loop, &j->req, work, after_work) != 0) {
        free(j);
        goto busy;
    }
    in_flight++;
    return;
busy:
    reply_busy(h, "the dashboard cannot start now; try again in a moment");
}
