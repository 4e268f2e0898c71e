/*
 * auth_db.c - the auth tables: migration, accounts, sessions, failed logins, the limiter.
 *
 * Every function takes a plain sqlite3 connection and, where time matters, `now` in Unix
 * seconds, so the same code runs in the CLI, inside a store operation on the writer thread
 * (already in a transaction: multi-statement changes use a SAVEPOINT, which nests), and in the
 * tests with a made-up clock.  Statements are prepared per call: these are rare writes and
 * login-time reads; the per-request session lookup lives in auth_session.c with a persistent
 * statement.
 *
 * Schema (versioned in auth_schema, independent of the store's schema_migrations; never edit
 * a shipped migration, add one).  All times are INTEGER Unix seconds.
 *
 *   users          id, username UNIQUE, display_name, role, password_hash, disabled,
 *                  created_at, updated_at
 *   auth_sessions  id, token_hash (BLAKE2b-256 of the session id) UNIQUE, user_id, created_at,
 *                  last_seen, expires_at, revoked, ip
 *   auth_failures  id, username, ip, at: one row per failed login, forgotten after the window
 *                  or when the username logs in
 *
 * Session life:  auth_db_session_create() -> [valid] -> auth_db_session_revoke() (logout,
 *   password change, account disabled) or expiry -> auth_db_session_prune() deletes it.
 */
#include "auth.h"

#include "log.h"

#include <stdio.h>
#include <string.h>

/* ---- small helpers ---- */

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
        log_error("auth", "sqlite: %s in: %.60s", sqlite3_errmsg(db), sql);
        *st = NULL;
        return AUTH_ERR;
    }
    return 0;
}

/* Steps a statement that returns no row, then finalizes it.  0 or AUTH_ERR. */
static int run(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        log_error("auth", "sqlite: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : AUTH_ERR;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        if (err)
            snprintf(err, errlen, "sqlite: %s", msg ? msg : sqlite3_errmsg(db));
        else
            log_error("auth", "sqlite: %s in: %.60s", msg ? msg : sqlite3_errmsg(db), sql);
        sqlite3_free(msg);
        return AUTH_ERR;
    }
    return 0;
}

static void copy_text(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(dst, n, "%s", v ? (const char *)v : "");
}

/* Savepoints make a multi-statement change atomic inside or outside a transaction. */
static int begin(sqlite3 *db)
{
    return exec(db, "SAVEPOINT auth_change", NULL, 0);
}

static int end(sqlite3 *db, int rc)
{
    if (rc != 0 && rc != AUTH_ENOENT)
        exec(db, "ROLLBACK TO auth_change", NULL, 0);
    if (exec(db, "RELEASE auth_change", NULL, 0) != 0 && rc == 0)
        rc = AUTH_ERR;
    return rc;
}

/* ---- migration ---- */

static const struct {
    int version;
    const char *sql;
} migrations[] = {
    {1, "CREATE TABLE users ("
        "  id INTEGER PRIMARY KEY,"
        "  username TEXT NOT NULL UNIQUE,"
        "  display_name TEXT NOT NULL DEFAULT '',"
        "  role TEXT NOT NULL CHECK (role IN ('admin','supervisor','editor','agent')),"
        "  password_hash TEXT NOT NULL,"
        "  disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0,1)),"
        "  created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL);"
        "CREATE TABLE auth_sessions ("
        "  id INTEGER PRIMARY KEY,"
        "  token_hash BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),"
        "  user_id INTEGER NOT NULL REFERENCES users(id),"
        "  created_at INTEGER NOT NULL,"
        "  last_seen INTEGER NOT NULL,"
        "  expires_at INTEGER NOT NULL,"
        "  revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0,1)),"
        "  ip TEXT NOT NULL DEFAULT '');"
        "CREATE INDEX auth_sessions_user ON auth_sessions(user_id);"
        "CREATE INDEX auth_sessions_expiry ON auth_sessions(expires_at);"
        "CREATE TABLE auth_failures ("
        "  id INTEGER PRIMARY KEY,"
        "  username TEXT NOT NULL,"
        "  ip TEXT NOT NULL,"
        "  at INTEGER NOT NULL);"
        "CREATE INDEX auth_failures_user ON auth_failures(username, at);"
        "CREATE INDEX auth_failures_ip ON auth_failures(ip, at);"
        "CREATE INDEX auth_failures_at ON auth_failures(at);"},
};

int auth_migrate(sqlite3 *db, char *err, size_t errlen)
{
    char e2[256];

    if (exec(db,
             "CREATE TABLE IF NOT EXISTS auth_schema ("
             " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
             err, errlen) != 0)
        return AUTH_ERR;
    for (size_t i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++) {
        sqlite3_stmt *st = NULL;
        int current = -1;
        char sql[128];

        /* read the version inside the write transaction: two processes starting together
         * (the server and `redress user`) apply each migration once */
        if (exec(db, "BEGIN IMMEDIATE", err, errlen) != 0)
            return AUTH_ERR;
        if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM auth_schema", -1, &st,
                               NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            current = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (current < 0) {
            snprintf(err, errlen, "sqlite: %s", sqlite3_errmsg(db));
            exec(db, "ROLLBACK", NULL, 0);
            return AUTH_ERR;
        }
        if (migrations[i].version <= current) {
            exec(db, "ROLLBACK", NULL, 0);
            continue;
        }
        snprintf(sql, sizeof(sql),
                 "INSERT INTO auth_schema VALUES (%d, CAST(strftime('%%s', 'now') AS INTEGER))",
                 migrations[i].version);
        if (exec(db, migrations[i].sql, e2, sizeof(e2)) != 0 ||
            exec(db, sql, e2, sizeof(e2)) != 0 || exec(db, "COMMIT", e2, sizeof(e2)) != 0) {
            snprintf(err, errlen, "auth migration %d: %s", migrations[i].version, e2);
            exec(db, "ROLLBACK", NULL, 0);
            return AUTH_ERR;
        }
        log_notice("auth", "applied auth migration %d", migrations[i].version);
    }
    return 0;
}

/* ---- accounts ---- */

int auth_db_user_add(sqlite3 *db, const char *username, const char *display_name, auth_role_t role,
                     const char *hash, int64_t now, long long *id)
{
    const char *rname = auth_role_name(role);
    sqlite3_stmt *st;
    int rc;

    if (!rname)
        return AUTH_EINVAL;
    if (prep(db,
             "INSERT INTO users(username, display_name, role, password_hash, disabled,"
             " created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
             &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, display_name ? display_name : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, rname, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        if (id)
            *id = sqlite3_last_insert_rowid(db);
        rc = 0;
    } else if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_UNIQUE) {
        rc = AUTH_EEXIST;
    } else {
        log_error("auth", "add account: %s", sqlite3_errmsg(db));
        rc = AUTH_ERR;
    }
    sqlite3_finalize(st);
    return rc;
}

static void read_account(sqlite3_stmt *st, auth_account_t *a)
{
    char role[16];
    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(st, 0);
    copy_text(a->username, sizeof(a->username), st, 1);
    copy_text(a->display_name, sizeof(a->display_name), st, 2);
    copy_text(role, sizeof(role), st, 3);
    a->role = auth_role_parse(role);
    a->disabled = sqlite3_column_int(st, 4);
    a->created_at = sqlite3_column_int64(st, 5);
    a->updated_at = sqlite3_column_int64(st, 6);
}

int auth_db_user_get(sqlite3 *db, const char *username, auth_account_t *out, char *hash)
{
    sqlite3_stmt *st;
    int rc;

    if (prep(db,
             "SELECT id, username, display_name, role, disabled, created_at, updated_at,"
             " password_hash FROM users WHERE username = ?",
             &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_account(st, out);
        if (hash)
            copy_text(hash, AUTH_HASH_MAX, st, 7);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = AUTH_ENOENT;
    } else {
        log_error("auth", "read account: %s", sqlite3_errmsg(db));
        rc = AUTH_ERR;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Revokes every live session of username's account; *n gets how many.  0 or AUTH_ERR. */
static int revoke_all(sqlite3 *db, const char *username, int *n)
{
    sqlite3_stmt *st;
    int rc;

    if (prep(db,
             "UPDATE auth_sessions SET revoked = 1 WHERE revoked = 0 AND user_id ="
             " (SELECT id FROM users WHERE username = ?)",
             &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
    rc = run(db, st);
    if (rc == 0 && n)
        *n = sqlite3_changes(db);
    return rc;
}

int auth_db_user_set_password(sqlite3 *db, const char *username, const char *hash, int64_t now)
{
    sqlite3_stmt *st;
    int rc;

    if (begin(db) != 0)
        return AUTH_ERR;
    rc = prep(db, "UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?", &st);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_text(st, 3, username, -1, SQLITE_STATIC);
        rc = run(db, st);
    }
    if (rc == 0 && sqlite3_changes(db) == 0)
        rc = AUTH_ENOENT;
    if (rc == 0)
        rc = revoke_all(db, username, NULL);
    return end(db, rc);
}

int auth_db_user_upgrade_hash(sqlite3 *db, long long id, const char *old_hash, const char *new_hash,
                              int64_t now)
{
    sqlite3_stmt *st;

    if (prep(db,
             "UPDATE users SET password_hash = ?3, updated_at = ?4"
             " WHERE id = ?1 AND password_hash = ?2",
             &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, old_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, new_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    return run(db, st) == 0 ? sqlite3_changes(db) : AUTH_ERR;
}

int auth_db_user_set_disabled(sqlite3 *db, const char *username, int disabled, int64_t now,
                              int *revoked)
{
    sqlite3_stmt *st;
    int rc;

    if (revoked)
        *revoked = 0;
    if (begin(db) != 0)
        return AUTH_ERR;
    rc = prep(db, "UPDATE users SET disabled = ?, updated_at = ? WHERE username = ?", &st);
    if (rc == 0) {
        sqlite3_bind_int(st, 1, disabled ? 1 : 0);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_text(st, 3, username, -1, SQLITE_STATIC);
        rc = run(db, st);
    }
    if (rc == 0 && sqlite3_changes(db) == 0)
        rc = AUTH_ENOENT;
    if (rc == 0 && disabled)
        rc = revoke_all(db, username, revoked);
    return end(db, rc);
}

int auth_db_user_list(sqlite3 *db, int64_t now, int (*fn)(const auth_account_t *a, void *arg),
                      void *arg)
{
    sqlite3_stmt *st;
    int rc;

    if (prep(db,
             "SELECT u.id, u.username, u.display_name, u.role, u.disabled, u.created_at,"
             " u.updated_at, (SELECT COUNT(*) FROM auth_sessions s WHERE s.user_id = u.id"
             " AND s.revoked = 0 AND s.expires_at > ?1) FROM users u ORDER BY u.username",
             &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_int64(st, 1, now);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        auth_account_t a;
        read_account(st, &a);
        a.active_sessions = sqlite3_column_int(st, 7);
        if (fn(&a, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        log_error("auth", "list accounts: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : AUTH_ERR;
}

/* ---- sessions ---- */

int auth_db_session_create(sqlite3 *db, long long user_id, const char *ip, int64_t now, int ttl_s,
                           char *token, long long *session_id)
{
    unsigned char hash[AUTH_TOKEN_HASH_BYTES];
    sqlite3_stmt *st;
    int rc;

    auth_token_new(token);
    if (auth_token_hash(token, hash) != 0)
        return AUTH_ERR;
    if (prep(db,
             "INSERT INTO auth_sessions(token_hash, user_id, created_at, last_seen, expires_at,"
             " revoked, ip) VALUES (?1, ?2, ?3, ?3, ?4, 0, ?5)",
             &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_blob(st, 1, hash, sizeof(hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, user_id);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, now + ttl_s);
    sqlite3_bind_text(st, 5, ip ? ip : "", -1, SQLITE_STATIC);
    rc = run(db, st);
    if (rc == 0 && session_id)
        *session_id = sqlite3_last_insert_rowid(db);
    return rc;
}

int auth_db_session_revoke(sqlite3 *db, long long session_id)
{
    sqlite3_stmt *st;
    int rc;

    if (prep(db, "UPDATE auth_sessions SET revoked = 1 WHERE id = ? AND revoked = 0", &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_int64(st, 1, session_id);
    rc = run(db, st);
    if (rc == 0 && sqlite3_changes(db) == 0)
        rc = AUTH_ENOENT;
    return rc;
}

int auth_db_session_prune(sqlite3 *db, int64_t now)
{
    sqlite3_stmt *st;

    if (prep(db, "DELETE FROM auth_sessions WHERE expires_at < ?", &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_int64(st, 1, now);
    return run(db, st) == 0 ? sqlite3_changes(db) : AUTH_ERR;
}

/* ---- failed logins and the limiter ---- */

int auth_db_failure_add(sqlite3 *db, const char *username, const char *ip, int64_t now,
                        int window_s)
{
    sqlite3_stmt *st;

    if (prep(db, "INSERT INTO auth_failures(username, ip, at) VALUES (?, ?, ?)", &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ip ? ip : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    if (run(db, st) != 0)
        return AUTH_ERR;
    if (prep(db, "DELETE FROM auth_failures WHERE at <= ?", &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_int64(st, 1, now - window_s);
    return run(db, st);
}

int auth_db_failures_reset(sqlite3 *db, const char *username)
{
    sqlite3_stmt *st;

    if (prep(db, "DELETE FROM auth_failures WHERE username = ?", &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
    return run(db, st);
}

/*
 * One key of the limiter (sql_count / sql_nth select by username or by ip).  Failures count
 * while at > now - window.  With f recorded and p pending, an attempt may start when
 * f + p < max; the failures expire oldest first, so the wait is until the (max - p)-th newest
 * one leaves the window.  Returns 0 (allowed), AUTH_ELIMITED with *wait, or AUTH_ERR.
 */
static int limit_key(sqlite3 *db, const char *sql_count, const char *sql_nth, const char *key,
                     int max, int pending, int window_s, int64_t now, int *wait)
{
    sqlite3_stmt *st;
    int rc, count = 0, k = max - pending;

    if (max <= 0) /* this key is not limited */
        return 0;
    if (prep(db, sql_count, &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now - window_s);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        count = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        log_error("auth", "limiter: %s", sqlite3_errmsg(db));
        return AUTH_ERR;
    }
    if (count + pending < max)
        return 0;
    *wait = 1;
    if (k <= 0) /* attempts in progress alone fill the quota: they end within seconds */
        return AUTH_ELIMITED;
    if (prep(db, sql_nth, &st) != 0)
        return AUTH_ERR;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now - window_s);
    sqlite3_bind_int(st, 3, k - 1);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int64_t w = sqlite3_column_int64(st, 0) + window_s - now;
        *wait = w < 1 ? 1 : (int)w;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        log_error("auth", "limiter: %s", sqlite3_errmsg(db));
        return AUTH_ERR;
    }
    return AUTH_ELIMITED;
}

int auth_db_limit_check(sqlite3 *db, const auth_limits_t *lim, const char *username, const char *ip,
                        int pending_user, int pending_ip, int64_t now, int *retry_after)
{
    int wu = 0, wi = 0, ru, ri;

    ru = limit_key(db, "SELECT COUNT(*) FROM auth_failures WHERE username = ?1 AND at > ?2",
                   "SELECT at FROM auth_failures WHERE username = ?1 AND at > ?2"
                   " ORDER BY at DESC LIMIT 1 OFFSET ?3",
                   username, lim->max_user, pending_user, lim->window_s, now, &wu);
    if (ru == AUTH_ERR)
        return AUTH_ERR;
    ri = limit_key(db, "SELECT COUNT(*) FROM auth_failures WHERE ip = ?1 AND at > ?2",
                   "SELECT at FROM auth_failures WHERE ip = ?1 AND at > ?2"
                   " ORDER BY at DESC LIMIT 1 OFFSET ?3",
                   ip ? ip : "", lim->max_ip, pending_ip, lim->window_s, now, &wi);
    if (ri == AUTH_ERR)
        return AUTH_ERR;
    if (ru == 0 && ri == 0)
        return 0;
    *retry_after = wu > wi ? wu : wi;
    return AUTH_ELIMITED;
}
