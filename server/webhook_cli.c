/*
 * webhook_cli.c - `redress webhook ...`: webhook endpoints and their delivery log from the
 * command line (docs/complaints.md, "Webhooks").
 *
 *   redress webhook add URL [--events=LIST|*] [--secret=SECRET|-]
 *                                   LIST: complaint.created, complaint.escalated,
 *                                   complaint.resolved, sla.breached (comma-separated; default
 *                                   *, every event).  Without --secret one is generated and
 *                                   printed once; --secret=- reads it from stdin's first line.
 *   redress webhook list            one line per endpoint (the secret's first 4 characters)
 *   redress webhook remove ID       its pending deliveries become failed ("endpoint removed")
 *   redress webhook disable ID      stops new events for it and pauses its pending deliveries
 *   redress webhook enable ID
 *   redress webhook log [--failed] [--limit=N]   the latest deliveries, newest first
 *
 * Design.  Like `redress user` (user_cli.c): each command opens the database named by the
 * settings (data.dir is created when data.db is relative) with WAL and a 5 s busy timeout,
 * so it can run next to a live server, runs webhook_migrate(), does one change and closes.  A
 * running server re-reads the endpoints within WEBHOOK_RELOAD_S seconds.  Exit codes: 0 ok,
 * 1 failure, 2 usage.
 */
#include "webhook.h"

#include "util.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(void)
{
    fprintf(stderr,
            "usage: redress webhook add URL [--events=LIST|*] [--secret=SECRET|-]\n"
            "       redress webhook list\n"
            "       redress webhook remove ID\n"
            "       redress webhook disable ID\n"
            "       redress webhook enable ID\n"
            "       redress webhook log [--failed] [--limit=N]\n"
            "  LIST: comma-separated events among complaint.created, complaint.escalated,\n"
            "  complaint.resolved, sla.breached; * (the default) is every event.  The secret\n"
            "  (%d to %d printable characters) signs every delivery; without --secret one is\n"
            "  generated and printed; --secret=- reads it from stdin.\n"
            "  (plus any --setting=value; the database is data.dir/data.db)\n",
            WEBHOOK_SECRET_MIN, WEBHOOK_SECRET_MAX);
    return 2;
}

/* Opens and migrates the database.  Returns it, or NULL after printing why. */
static sqlite3 *open_db(const config_t *cfg)
{
    char path[4096], err[512];
    sqlite3 *db = NULL;

    if (config_db_path(cfg, path, sizeof(path)) != 0) {
        fprintf(stderr, "redress webhook: database path too long\n");
        return NULL;
    }
    if (strcmp(cfg->db_path, ":memory:") != 0 && cfg->db_path[0] != '/' &&
        util_mkdirs(cfg->data_dir) != 0) {
        fprintf(stderr, "redress webhook: cannot create %s: %s\n", cfg->data_dir, strerror(errno));
        return NULL;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        fprintf(stderr, "redress webhook: %s: %s\n", path,
                db ? sqlite3_errmsg(db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "redress webhook: %s: %s\n", path, sqlite3_errmsg(db));
        goto fail;
    }
    if (webhook_migrate(db, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress webhook: %s: %s\n", path, err);
        goto fail;
    }
    return db;
fail:
    sqlite3_close(db);
    return NULL;
}

/* Option value: "--name=v" or "--name v".  Returns 1 and sets *val (advancing *i) when
 * argv[*i] is the option, 0 when it is not, -1 when the value is missing. */
static int option(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) == 0 && a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (strcmp(a, name) == 0) {
        if (*i + 1 >= argc)
            return -1;
        *val = argv[++*i];
        return 1;
    }
    return 0;
}

/* A positive integer id from s.  0, or 1 after printing why. */
static int parse_id(const char *s, long long *id)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 1 || s[0] == '+' || s[0] == ' ') {
        fprintf(stderr,
                "redress webhook: bad id \"%s\" (the number `redress webhook list` "
                "shows)\n",
                s);
        return 1;
    }
    *id = v;
    return 0;
}

/* "2026-11-26T15:04:05Z" for epoch seconds t into out (24 bytes); "-" for t <= 0. */
static void iso(double t, char *out, size_t outlen)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (t <= 0 || !gmtime_r(&s, &tm) || !strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, outlen, "-");
}

/* Reads the secret from stdin's first line into buf.  0, or 1 after printing why. */
static int read_secret(char *buf, size_t buflen)
{
    size_t n;
    if (!fgets(buf, (int)buflen, stdin)) {
        fprintf(stderr, "redress webhook: --secret=-: no secret on stdin\n");
        return 1;
    }
    n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    else if (n == buflen - 1) {
        fprintf(stderr, "redress webhook: the secret is longer than %d characters\n",
                WEBHOOK_SECRET_MAX);
        return 1;
    }
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return 0;
}

static int cmd_add(const config_t *cfg, int argc, char **argv)
{
    const char *url = NULL, *events_arg = "*", *secret_arg = NULL;
    char events[256], secret[WEBHOOK_SECRET_MAX + 2], err[256];
    webhook_url_t u;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = 1, generated = 0;

    for (int i = 1; i < argc; i++) {
        int r = option(argc, argv, &i, "--events", &events_arg);
        if (r == 0)
            r = option(argc, argv, &i, "--secret", &secret_arg);
        if (r < 0)
            return usage();
        if (r > 0)
            continue;
        if ((argv[i][0] == '-' && argv[i][1] != '\0') || url)
            return usage();
        url = argv[i];
    }
    if (!url)
        return usage();
    if (webhook_url_parse(url, &u, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress webhook: %s: %s\n", url, err);
        return 1;
    }
    if (webhook_events_parse(events_arg, events, sizeof(events), err, sizeof(err)) != 0) {
        fprintf(stderr, "redress webhook: --events: %s\n", err);
        return 1;
    }
    if (!secret_arg) {
        if (util_random_hex(secret, 24) != 0) {
            fprintf(stderr, "redress webhook: no randomness for a secret\n");
            return 1;
        }
        generated = 1;
    } else if (strcmp(secret_arg, "-") == 0) {
        if (read_secret(secret, sizeof(secret)) != 0)
            goto out;
    } else if (webhook_secret_check(secret_arg, err, sizeof(err)) == 0) {
        snprintf(secret, sizeof(secret), "%s", secret_arg);
    } else {
        fprintf(stderr, "redress webhook: --secret: %s\n", err);
        goto out;
    }
    if (webhook_secret_check(secret, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress webhook: --secret: %s\n", err);
        goto out;
    }
    if (!(db = open_db(cfg)))
        goto out;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO webhook_endpoints(url, secret, events, enabled, created_at)"
                           " VALUES (?1, ?2, ?3, 1, ?4)",
                           -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "redress webhook: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_text(st, 1, url, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, secret, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, events, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, util_wall_s());
    if (sqlite3_step(st) != SQLITE_DONE) {
        fprintf(stderr, "redress webhook: cannot add the endpoint: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    printf("added webhook %lld: %s (events: %s)\n", (long long)sqlite3_last_insert_rowid(db), url,
           events);
    if (generated) {
        printf("secret: %s\n", secret);
        fprintf(stderr, "keep the secret: it is printed only now (receivers check "
                        "X-Redress-Signature with it)\n");
    }
    rc = 0;
out:
    sodium_memzero(secret, sizeof(secret));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

static int cmd_list(const config_t *cfg, int argc, char **argv)
{
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc = 1, n = 0, s;

    (void)argv;
    if (argc != 1)
        return usage();
    if (!(db = open_db(cfg)))
        return 1;
    if (sqlite3_prepare_v2(db,
                           "SELECT e.id, e.enabled, e.events, e.secret, e.url,"
                           " (SELECT COUNT(*) FROM webhook_outbox o WHERE o.endpoint_id = e.id"
                           "   AND o.state = 'pending'),"
                           " (SELECT COUNT(*) FROM webhook_outbox o WHERE o.endpoint_id = e.id"
                           "   AND o.state = 'failed')"
                           " FROM webhook_endpoints e ORDER BY e.id",
                           -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "redress webhook: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    printf("%-5s %-9s %-8s %-7s %-8s %-40s %s\n", "ID", "STATUS", "PENDING", "FAILED", "SECRET",
           "EVENTS", "URL");
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *secret = (const char *)sqlite3_column_text(st, 3);
        printf("%-5lld %-9s %-8lld %-7lld %.4s%-4s %-40s %s\n",
               (long long)sqlite3_column_int64(st, 0),
               sqlite3_column_int(st, 1) ? "enabled" : "disabled",
               (long long)sqlite3_column_int64(st, 5), (long long)sqlite3_column_int64(st, 6),
               secret ? secret : "", "...", (const char *)sqlite3_column_text(st, 2),
               (const char *)sqlite3_column_text(st, 4));
        n++;
    }
    if (s != SQLITE_DONE) {
        fprintf(stderr, "redress webhook: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    if (n == 0)
        fprintf(stderr, "no webhooks yet; add one with: redress webhook add URL --events=...\n");
    rc = 0;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* Runs sql (binding ?1 = id) and returns the number of changed rows, or -1 after printing. */
static int run_id(sqlite3 *db, const char *sql, long long id)
{
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "redress webhook: %s\n", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_DONE)
        n = sqlite3_changes(db);
    else
        fprintf(stderr, "redress webhook: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return n;
}

static int cmd_remove(const config_t *cfg, int argc, char **argv)
{
    long long id;
    sqlite3 *db;
    int rc = 1, dropped, gone;

    if (argc != 2)
        return usage();
    if (parse_id(argv[1], &id) != 0)
        return 1;
    if (!(db = open_db(cfg)))
        return 1;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "redress webhook: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    dropped = run_id(db,
                     "UPDATE webhook_outbox SET state = 'failed', last_error = 'endpoint removed'"
                     " WHERE endpoint_id = ?1 AND state = 'pending'",
                     id);
    gone = dropped < 0 ? -1 : run_id(db, "DELETE FROM webhook_endpoints WHERE id = ?1", id);
    if (gone <= 0 || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        if (gone == 0)
            fprintf(stderr, "redress webhook: no webhook %lld\n", id);
        else if (gone > 0)
            fprintf(stderr, "redress webhook: %s\n", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        goto out;
    }
    printf("removed webhook %lld", id);
    if (dropped > 0)
        printf("; %d pending deliver%s marked failed", dropped, dropped == 1 ? "y" : "ies");
    printf("\n");
    rc = 0;
out:
    sqlite3_close(db);
    return rc;
}

static int cmd_able(const config_t *cfg, int argc, char **argv, int enabled)
{
    long long id;
    sqlite3 *db;
    int n;

    if (argc != 2)
        return usage();
    if (parse_id(argv[1], &id) != 0)
        return 1;
    if (!(db = open_db(cfg)))
        return 1;
    n = run_id(db,
               enabled ? "UPDATE webhook_endpoints SET enabled = 1 WHERE id = ?1"
                       : "UPDATE webhook_endpoints SET enabled = 0 WHERE id = ?1",
               id);
    if (n == 0)
        fprintf(stderr, "redress webhook: no webhook %lld\n", id);
    else if (n > 0)
        printf("webhook %lld %s\n", id, enabled ? "enabled" : "disabled");
    sqlite3_close(db);
    return n > 0 ? 0 : 1;
}

static int cmd_log(const config_t *cfg, int argc, char **argv)
{
    const char *limit_arg = NULL;
    long limit = 50;
    int failed = 0, rc = 1, s, n = 0;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;

    for (int i = 1; i < argc; i++) {
        int r = option(argc, argv, &i, "--limit", &limit_arg);
        if (r < 0)
            return usage();
        if (r > 0)
            continue;
        if (strcmp(argv[i], "--failed") == 0)
            failed = 1;
        else
            return usage();
    }
    if (limit_arg) {
        char *end = NULL;
        limit = strtol(limit_arg, &end, 10);
        if (!*limit_arg || *end || limit < 1 || limit > 100000) {
            fprintf(stderr, "redress webhook: --limit: a number from 1 to 100000\n");
            return 1;
        }
    }
    if (!(db = open_db(cfg)))
        return 1;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, endpoint_id, event, state, attempts, last_status,"
                           " created_at, CASE state WHEN 'delivered' THEN delivered_at"
                           "   WHEN 'pending' THEN next_at ELSE NULL END, last_error"
                           " FROM webhook_outbox WHERE ?1 = 0 OR state = 'failed'"
                           " ORDER BY id DESC LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "redress webhook: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_int(st, 1, failed);
    sqlite3_bind_int64(st, 2, limit);
    printf("%-7s %-8s %-20s %-9s %-8s %-6s %-20s %-20s %s\n", "ID", "ENDPOINT", "EVENT", "STATE",
           "ATTEMPTS", "HTTP", "CREATED", "NEXT/DELIVERED", "LAST ERROR");
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        char created[24], when[24], status[12];
        const char *error = (const char *)sqlite3_column_text(st, 8);
        iso(sqlite3_column_double(st, 6), created, sizeof(created));
        iso(sqlite3_column_type(st, 7) == SQLITE_NULL ? 0 : sqlite3_column_double(st, 7), when,
            sizeof(when));
        if (sqlite3_column_type(st, 5) == SQLITE_NULL)
            snprintf(status, sizeof(status), "-");
        else
            snprintf(status, sizeof(status), "%d", sqlite3_column_int(st, 5));
        printf("%-7lld %-8lld %-20s %-9s %-8d %-6s %-20s %-20s %s\n",
               (long long)sqlite3_column_int64(st, 0), (long long)sqlite3_column_int64(st, 1),
               (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3),
               sqlite3_column_int(st, 4), status, created, when, error ? error : "");
        n++;
    }
    if (s != SQLITE_DONE) {
        fprintf(stderr, "redress webhook: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    if (n == 0)
        fprintf(stderr, failed ? "no failed deliveries\n" : "no deliveries yet\n");
    rc = 0;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

int webhook_cli_main(const config_t *cfg, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (sodium_init() < 0) {
        fprintf(stderr, "redress webhook: libsodium did not initialise\n");
        return 1;
    }
    if (strcmp(argv[1], "add") == 0)
        return cmd_add(cfg, argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0)
        return cmd_list(cfg, argc - 1, argv + 1);
    if (strcmp(argv[1], "remove") == 0)
        return cmd_remove(cfg, argc - 1, argv + 1);
    if (strcmp(argv[1], "disable") == 0)
        return cmd_able(cfg, argc - 1, argv + 1, 0);
    if (strcmp(argv[1], "enable") == 0)
        return cmd_able(cfg, argc - 1, argv + 1, 1);
    if (strcmp(argv[1], "log") == 0)
        return cmd_log(cfg, argc - 1, argv + 1);
    fprintf(stderr, "redress webhook: unknown command \"%s\"\n", argv[1]);
    return usage();
}
