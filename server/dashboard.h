/*
 * dashboard.h - the supervisors' figures over complaint records and their CSV export
 * (docs/complaints.md, "Dashboard and CSV"):
 *
 *   GET /api/dashboard?from=YYYY-MM-DD&to=YYYY-MM-DD           JSON figures
 *   GET /api/dashboard/export.csv?from=YYYY-MM-DD&to=YYYY-MM-DD one row per complaint
 *
 * Dates are local (UTC+8) and inclusive.  The queries run on the libuv thread pool with a
 * read-only SQLite connection of their own, so the loop never waits for them; the answer goes
 * back through the deferred http_reply_t.  api.c checks the capability (dashboard.view) before
 * it calls dashboard_handle().
 */
#ifndef REDRESS_DASHBOARD_H
#define REDRESS_DASHBOARD_H

#include "http.h"

#include <sqlite3.h>
#include <stddef.h>

struct server;

#define DASHBOARD_MAX_DAYS 366 /* the longest range one request may ask for */
#define DASHBOARD_MAX_JOBS 2   /* dashboard jobs in flight at once; more get 503 */
#define DASHBOARD_DEFAULT_DAYS 30
#define DASHBOARD_CSV_MAX_ROWS 200000
#define DASHBOARD_TOP_TOPICS 10
#define DASHBOARD_UTC_OFFSET_S                                                                     \
    (8 * 3600) /* local time of the records (UTC+8), as their numbers                              \
                */

/* dashboard_csv(): more rows than DASHBOARD_CSV_MAX_ROWS */
#define DASHBOARD_ETOOBIG (-2)

/* A range of whole local days. */
typedef struct dashboard_range {
    long from_day, to_day; /* days since 1970-01-01 of the first and the last local date */
    double start, end;     /* [start, end): epoch seconds of local midnight of from_day, and of
                            * the day after to_day */
} dashboard_range_t;

/*
 * Reads from and to (YYYY-MM-DD, both optional) from a URL query string.  Defaults: to = the
 * local date of now, from = to - 29 days; with from alone, to = from + 29 days but not after
 * today (nor before from).  Returns 0 and *out, or -1 with a message for the client in err (a
 * malformed or impossible date, a year outside 2000..2099, from after to, more than
 * DASHBOARD_MAX_DAYS days).
 */
int dashboard_parse_range(const char *query, double now, dashboard_range_t *out, char *err,
                          size_t errlen);

/* "YYYY-MM-DD" of a day number (days since 1970-01-01) into out (>= 11 bytes). */
void dashboard_day_text(long day, char *out, size_t outlen);

/*
 * The figures of range r as JSON text (malloc'ed; the caller frees), read from db (the caller
 * wraps the call in a read transaction so that every figure comes from one snapshot).  now is
 * the server's clock (the flows' clock), followup_pending_h the follow-up limit of
 * rules/sla.json.  NULL with a message in err on a database error or out of memory.
 */
char *dashboard_figures(sqlite3 *db, const dashboard_range_t *r, double now, int followup_pending_h,
                        char *err, size_t errlen);

/*
 * The CSV export of range r: a UTF-8 BOM, a header line, one CRLF-terminated row per complaint
 * created in the range (docs/complaints.md lists the columns).  Returns 0 with *out (malloc'ed,
 * *len bytes, the caller frees); DASHBOARD_ETOOBIG for more than DASHBOARD_CSV_MAX_ROWS rows;
 * -1 with a message in err on a database error or out of memory.  On failure *out is NULL.
 */
int dashboard_csv(sqlite3 *db, const dashboard_range_t *r, char **out, size_t *len, char *err,
                  size_t errlen);

/* Answers GET /api/dashboard and GET /api/dashboard/export.csv (the caller checked the
 * capability): 404 for another path, 405 for another method, 400 for a bad range, 503 with
 * Retry-After while DASHBOARD_MAX_JOBS jobs are in flight; otherwise the answer comes later,
 * from the thread pool's done callback. */
void dashboard_handle(struct server *srv, const http_call_t *call, http_reply_t *h);

#endif
