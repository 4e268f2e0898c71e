/*
 * auth_session.c - the server's side of logins: auth_t, the login pipeline, session lookup,
 * logout.  Loop thread only (the thread-pool and writer-thread functions are marked).
 *
 * What auth_t owns
 *   - two persistent statements on the store's reader connection (session by token hash, by
 *     row id); finalized by auth_close(), which must come before store_close();
 *   - `pending`: attempts in progress per username ("u\037name") and per client address
 *     ("i\037addr"), so that parallel guesses count against the limiter before their failures
 *     reach the database;
 *   - the queue of logins waiting for a hashing slot: at most HASH_PARALLEL Argon2id runs at
 *     once (64 MiB each), at most MAX_INFLIGHT logins in progress (more: AUTH_EBUSY);
 *   - `refs`: one for the creator plus one per login or logout job; the object is freed when
 *     the last goes, so work that finishes after auth_close() still finds it.
 *
 * Life of a login (login_job, freed in finish())
 *   auth_login()      loop: normalise, limiter (reader + pending), read the account (reader;
 *                     none: the dummy hash), pending++, queue
 *   pump()            loop: uv_queue_work when a hashing slot is free
 *   work_verify()     thread pool: Argon2id verify (+ new hash if the limits changed); wipes
 *                     the password
 *   after_verify()    loop: right password and enabled -> store op work_ok; right password
 *                     but disabled -> finish(EDISABLED); otherwise -> store op work_fail
 *   work_ok()         writer: re-check the account, upgrade the hash, insert the session,
 *                     forget the username's failures, prune ended sessions
 *   work_fail()       writer: record the failure
 *   done_login()      loop, after COMMIT -> finish(): pending--, cb, free
 *
 * Lookup: auth_session_lookup() parses the Cookie header, hashes the id, one indexed SELECT;
 * when last_seen is a minute old, a fire-and-forget store op (touch_op) updates it.
 * Logout: lookup -> store op revoking the row -> hook(session id) -> cb.
 */
#include "auth.h"

#include "log.h"
#include "util.h"

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HASH_PARALLEL 2
#define MAX_INFLIGHT 64
#define IP_MAX 64

typedef struct login_job login_job;

struct auth {
    const config_t *cfg;
    uv_loop_t *loop;
    store_t *store;
    sqlite3 *reader;
    sqlite3_stmt *r_by_hash, *r_by_id;
    auth_limits_t limits;
    map_t *pending;
    login_job *queue, **queue_tail;
    int hashing;  /* jobs on the thread pool */
    int inflight; /* logins started, not finished */
    int refs;
    int closing;
    auth_logout_hook_fn hook;
    void *hook_arg;
};

struct login_job {
    uv_work_t req;
    login_job *next;
    auth_t *a;
    auth_login_cb cb;
    void *arg;
    char username[AUTH_USERNAME_MAX + 1];
    char ip[IP_MAX];
    char password[AUTH_PASSWORD_MAX_BYTES + 1];
    char hash[AUTH_HASH_MAX];   /* the stored hash, or the dummy */
    char rehash[AUTH_HASH_MAX]; /* thread pool: a fresh hash to store, or "" */
    auth_account_t acct;        /* acct.id == 0: no such account */
    int verified;               /* thread pool: the password matched */
    int64_t now;
    auth_login_result_t res;
};

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static void release(auth_t *a)
{
    if (--a->refs > 0)
        return;
    map_free(a->pending);
    free(a);
}

/* ---- attempts in progress ---- */

static void pending_key(char *key, size_t n, char kind, const char *name)
{
    snprintf(key, n, "%c\037%s", kind, name);
}

static int pending_get(auth_t *a, char kind, const char *name)
{
    char key[128];
    pending_key(key, sizeof(key), kind, name);
    return (int)(intptr_t)map_get(a->pending, key);
}

/* Adds delta to a counter (deleting it at 0).  Returns 0 or AUTH_ENOMEM. */
static int pending_add(auth_t *a, char kind, const char *name, int delta)
{
    char key[128];
    int n;

    pending_key(key, sizeof(key), kind, name);
    n = (int)(intptr_t)map_get(a->pending, key) + delta;
    if (n <= 0) {
        map_del(a->pending, key);
        return 0;
    }
    return map_put(a->pending, key, (void *)(intptr_t)n) == 0 ? 0 : AUTH_ENOMEM;
}

/* ---- create / close ---- */

#define SESSION_COLUMNS                                                                            \
    "SELECT s.id, s.user_id, s.last_seen, s.expires_at, s.revoked, u.username,"                    \
    " u.display_name, u.role, u.disabled FROM auth_sessions s JOIN users u ON u.id = s.user_id"

int auth_new(auth_t **out, const config_t *cfg, uv_loop_t *loop, store_t *store, char *err,
             size_t errlen)
{
    auth_t *a = calloc(1, sizeof(*a));

    if (!a || auth_init() != 0 || !(a->pending = map_new())) {
        snprintf(err, errlen, a ? "libsodium did not initialise" : "out of memory");
        goto fail;
    }
    a->cfg = cfg;
    a->loop = loop;
    a->store = store;
    a->reader = store_reader(store);
    a->queue_tail = &a->queue;
    a->refs = 1;
    a->limits.max_user = cfg->auth_max_failures;
    a->limits.max_ip = cfg->auth_max_failures_ip;
    a->limits.window_s = cfg->auth_failure_window_s;
    if (sqlite3_prepare_v3(a->reader, SESSION_COLUMNS " WHERE s.token_hash = ?", -1,
                           SQLITE_PREPARE_PERSISTENT, &a->r_by_hash, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(a->reader, SESSION_COLUMNS " WHERE s.id = ?", -1,
                           SQLITE_PREPARE_PERSISTENT, &a->r_by_id, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "auth: %s (did auth_migrate run?)", sqlite3_errmsg(a->reader));
        goto fail;
    }
    *out = a;
    return 0;
fail:
    if (a) {
        sqlite3_finalize(a->r_by_hash);
        sqlite3_finalize(a->r_by_id);
        map_free(a->pending);
        free(a);
    }
    return AUTH_ERR;
}

static void finish(login_job *j);

void auth_close(auth_t *a)
{
    if (!a)
        return;
    a->closing = 1;
    sqlite3_finalize(a->r_by_hash);
    sqlite3_finalize(a->r_by_id);
    a->r_by_hash = a->r_by_id = NULL;
    a->reader = NULL;
    a->hook = NULL;
    while (a->queue) { /* never reached the thread pool */
        login_job *j = a->queue;
        a->queue = j->next;
        j->res.rc = AUTH_ECLOSED;
        finish(j);
    }
    a->queue_tail = &a->queue;
    release(a);
}

void auth_set_logout_hook(auth_t *a, auth_logout_hook_fn fn, void *arg)
{
    a->hook = fn;
    a->hook_arg = arg;
}

int auth_cookie_max_age(const auth_t *a)
{
    return a->cfg->auth_session_ttl_s;
}

int auth_cookie_secure(const auth_t *a)
{
    return a->cfg->auth_cookie_secure;
}

/* ---- session lookup ---- */

typedef struct touch_op {
    long long session_id;
    int64_t now;
} touch_op;

/* writer thread */
static int work_touch(store_tx_t *tx, void *arg)
{
    touch_op *o = arg;
    sqlite3_stmt *st = store_tx_stmt(
        tx, "UPDATE auth_sessions SET last_seen = ?2 WHERE id = ?1 AND last_seen < ?2");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, o->session_id);
    sqlite3_bind_int64(st, 2, o->now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        log_error("auth", "session last_seen: %s", sqlite3_errmsg(store_tx_db(tx)));
        return -1;
    }
    return 0;
}

static void done_touch(void *arg, int rc)
{
    (void)rc; /* a lost touch only shortens the idle allowance by a minute */
    free(arg);
}

static void touch(auth_t *a, long long session_id, int64_t now)
{
    touch_op *o = malloc(sizeof(*o));
    if (!o)
        return;
    o->session_id = session_id;
    o->now = now;
    if (store_submit(a->store, work_touch, done_touch, o) != 0)
        free(o);
}

/* Steps st (bound), decides validity, fills *out.  0, AUTH_ENOENT or AUTH_ERR. */
static int session_row(auth_t *a, sqlite3_stmt *st, auth_user_t *out)
{
    int64_t now = now_s(), last_seen = 0;
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        char role[16];
        const unsigned char *v;
        int64_t expires = sqlite3_column_int64(st, 3);
        last_seen = sqlite3_column_int64(st, 2);
        rc = AUTH_ENOENT;
        if (!sqlite3_column_int(st, 4) && !sqlite3_column_int(st, 8) && expires > now &&
            last_seen + a->cfg->auth_session_idle_s > now) {
            memset(out, 0, sizeof(*out));
            out->session_id = sqlite3_column_int64(st, 0);
            out->id = sqlite3_column_int64(st, 1);
            out->expires_at = expires;
            v = sqlite3_column_text(st, 5);
            snprintf(out->username, sizeof(out->username), "%s", v ? (const char *)v : "");
            v = sqlite3_column_text(st, 6);
            snprintf(out->display_name, sizeof(out->display_name), "%s", v ? (const char *)v : "");
            v = sqlite3_column_text(st, 7);
            snprintf(role, sizeof(role), "%s", v ? (const char *)v : "");
            out->role = auth_role_parse(role);
            rc = out->role == AUTH_ROLE_NONE ? AUTH_ENOENT : 0;
        }
    } else if (rc == SQLITE_DONE) {
        rc = AUTH_ENOENT;
    } else {
        log_error("auth", "session lookup: %s", sqlite3_errmsg(a->reader));
        rc = AUTH_ERR;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == 0 && now - last_seen >= AUTH_TOUCH_INTERVAL_S)
        touch(a, out->session_id, now);
    return rc;
}

int auth_session_lookup(auth_t *a, const char *cookie_header, auth_user_t *out)
{
    char token[AUTH_TOKEN_HEX + 1];
    unsigned char hash[AUTH_TOKEN_HASH_BYTES];
    int rc;

    if (a->closing)
        return AUTH_ERR;
    rc = auth_cookie_get(cookie_header, AUTH_COOKIE_NAME, token, sizeof(token));
    if (rc < 0)
        return AUTH_EINVAL;
    if (rc > 0 || auth_token_hash(token, hash) != 0)
        return AUTH_ENOENT;
    sqlite3_bind_blob(a->r_by_hash, 1, hash, sizeof(hash), SQLITE_TRANSIENT);
    return session_row(a, a->r_by_hash, out);
}

int auth_session_valid(auth_t *a, long long session_id)
{
    auth_user_t u;
    if (a->closing)
        return 0;
    sqlite3_bind_int64(a->r_by_id, 1, session_id);
    return session_row(a, a->r_by_id, &u) == 0;
}

/* ---- login ---- */

/* thread pool */
static void work_verify(uv_work_t *req)
{
    login_job *j = req->data;
    j->verified = auth_password_verify(j->hash, j->password, j->acct.id ? j->rehash : NULL) == 0;
    sodium_memzero(j->password, sizeof(j->password));
}

static void after_verify(uv_work_t *req, int status);

/* Starts queued logins while hashing slots are free. */
static void pump(auth_t *a)
{
    while (!a->closing && a->queue && a->hashing < HASH_PARALLEL) {
        login_job *j = a->queue;
        a->queue = j->next;
        if (!a->queue)
            a->queue_tail = &a->queue;
        j->next = NULL;
        j->req.data = j;
        a->hashing++;
        if (uv_queue_work(a->loop, &j->req, work_verify, after_verify) != 0) {
            a->hashing--;
            j->res.rc = AUTH_ERR;
            finish(j);
        }
    }
}

static void finish(login_job *j)
{
    auth_t *a = j->a;

    pending_add(a, 'u', j->username, -1);
    pending_add(a, 'i', j->ip, -1);
    a->inflight--;
    if (j->res.rc != AUTH_OK)
        memset(&j->res.user, 0, sizeof(j->res.user));
    j->cb(j->arg, &j->res);
    sodium_memzero(j, sizeof(*j));
    free(j);
    release(a);
}

/* writer thread: the password matched an enabled account */
static int work_ok(store_tx_t *tx, void *arg)
{
    login_job *j = arg;
    sqlite3 *db = store_tx_db(tx);
    auth_account_t now_acct;
    char hash[AUTH_HASH_MAX];
    int rc;

    /* the CLI may have disabled the account or changed its password meanwhile */
    rc = auth_db_user_get(db, j->username, &now_acct, hash);
    if (rc == AUTH_ERR)
        return -1;
    if (rc == AUTH_ENOENT || now_acct.id != j->acct.id || strcmp(hash, j->hash) != 0) {
        j->res.rc = AUTH_EDENIED;
        return 0;
    }
    if (now_acct.disabled) {
        j->res.rc = AUTH_EDISABLED;
        return 0;
    }
    if (j->rehash[0] && auth_db_user_upgrade_hash(db, j->acct.id, j->hash, j->rehash, j->now) < 0)
        return -1;
    if (auth_db_session_create(db, j->acct.id, j->ip, j->now, j->a->cfg->auth_session_ttl_s,
                               j->res.token, &j->res.user.session_id) != 0 ||
        auth_db_failures_reset(db, j->username) != 0 || auth_db_session_prune(db, j->now) < 0)
        return -1;
    j->res.user.id = now_acct.id;
    snprintf(j->res.user.username, sizeof(j->res.user.username), "%s", now_acct.username);
    snprintf(j->res.user.display_name, sizeof(j->res.user.display_name), "%s",
             now_acct.display_name);
    j->res.user.role = now_acct.role;
    j->res.user.expires_at = j->now + j->a->cfg->auth_session_ttl_s;
    j->res.rc = AUTH_OK;
    return 0;
}

/* writer thread: wrong password or no such account */
static int work_fail(store_tx_t *tx, void *arg)
{
    login_job *j = arg;
    j->res.rc = AUTH_EDENIED;
    return auth_db_failure_add(store_tx_db(tx), j->username, j->ip, j->now,
                               j->a->cfg->auth_failure_window_s) == 0
               ? 0
               : -1;
}

static void done_login(void *arg, int rc)
{
    login_job *j = arg;
    if (rc != 0) {
        if (j->res.rc == AUTH_EDENIED)
            log_error("auth", "failed login for %s not recorded", j->username);
        else
            j->res.rc = AUTH_ERR;
    }
    if (j->res.rc == AUTH_OK)
        log_notice("auth", "%s logged in from %s (session %lld)", j->username, j->ip,
                   j->res.user.session_id);
    else if (j->res.rc == AUTH_EDENIED)
        log_notice("auth", "failed login for %s from %s", j->username, j->ip);
    finish(j);
}

static void after_verify(uv_work_t *req, int status)
{
    login_job *j = req->data;
    auth_t *a = j->a;
    store_work_fn work;

    a->hashing--;
    pump(a);
    if (status != 0 || a->closing) {
        j->res.rc = AUTH_ECLOSED;
        finish(j);
        return;
    }
    j->now = now_s();
    if (j->verified && j->acct.id && j->acct.disabled) {
        log_notice("auth", "login refused for disabled account %s", j->username);
        j->res.rc = AUTH_EDISABLED;
        finish(j);
        return;
    }
    work = j->verified && j->acct.id ? work_ok : work_fail;
    j->res.rc = AUTH_ERR;
    if (store_submit(a->store, work, done_login, j) != 0) {
        j->res.rc = AUTH_ECLOSED;
        finish(j);
    }
}

int auth_login(auth_t *a, const char *username, const char *password, const char *ip,
               auth_login_cb cb, void *arg, int *retry_after, char *err, size_t errlen)
{
    char user[AUTH_USERNAME_MAX + 1];
    login_job *j = NULL;
    int rc;

    if (!ip)
        ip = "";
    if (a->closing)
        return AUTH_ECLOSED;
    if (auth_username_normalize(username, user, err, errlen) != 0)
        return AUTH_EINVAL;
    if (!password || !*password) {
        snprintf(err, errlen, "password: empty");
        return AUTH_EINVAL;
    }
    if (strlen(password) > AUTH_PASSWORD_MAX_BYTES) {
        snprintf(err, errlen, "password: longer than 1024 bytes");
        return AUTH_EINVAL;
    }
    if (strlen(ip) >= IP_MAX) {
        snprintf(err, errlen, "client address too long");
        return AUTH_EINVAL;
    }
    if (a->inflight >= MAX_INFLIGHT)
        return AUTH_EBUSY;
    rc = auth_db_limit_check(a->reader, &a->limits, user, ip, pending_get(a, 'u', user),
                             pending_get(a, 'i', ip), now_s(), retry_after);
    if (rc != 0) {
        if (rc == AUTH_ELIMITED)
            log_notice("auth", "login for %s from %s refused: rate limited", user, ip);
        return rc;
    }
    if (!(j = calloc(1, sizeof(*j))))
        return AUTH_ENOMEM;
    j->a = a;
    j->cb = cb;
    j->arg = arg;
    memcpy(j->username, user, sizeof(user));
    snprintf(j->ip, sizeof(j->ip), "%s", ip);
    snprintf(j->password, sizeof(j->password), "%s", password);
    rc = auth_db_user_get(a->reader, user, &j->acct, j->hash);
    if (rc == AUTH_ENOENT) {
        memset(&j->acct, 0, sizeof(j->acct));
        snprintf(j->hash, sizeof(j->hash), "%s", auth_dummy_hash());
    } else if (rc != 0) {
        goto fail;
    }
    if (pending_add(a, 'u', user, 1) != 0) {
        rc = AUTH_ENOMEM;
        goto fail;
    }
    if (pending_add(a, 'i', ip, 1) != 0) {
        pending_add(a, 'u', user, -1);
        rc = AUTH_ENOMEM;
        goto fail;
    }
    a->inflight++;
    a->refs++;
    *a->queue_tail = j;
    a->queue_tail = &j->next;
    pump(a);
    return 0;
fail:
    sodium_memzero(j, sizeof(*j));
    free(j);
    return rc;
}

/* ---- logout ---- */

typedef struct logout_job {
    auth_t *a;
    long long session_id;
    auth_logout_cb cb;
    void *arg;
} logout_job;

/* writer thread */
static int work_logout(store_tx_t *tx, void *arg)
{
    logout_job *j = arg;
    /* AUTH_ENOENT: revoked meanwhile (another logout, the CLI): the same outcome */
    return auth_db_session_revoke(store_tx_db(tx), j->session_id) == AUTH_ERR ? -1 : 0;
}

static void done_logout(void *arg, int rc)
{
    logout_job *j = arg;
    auth_t *a = j->a;

    rc = rc == 0 ? 0 : a->closing ? AUTH_ECLOSED : AUTH_ERR;
    if (rc == 0) {
        log_notice("auth", "session %lld logged out", j->session_id);
        if (a->hook)
            a->hook(a->hook_arg, j->session_id);
    }
    j->cb(j->arg, rc, j->session_id);
    free(j);
    release(a);
}

int auth_logout(auth_t *a, const char *cookie_header, auth_logout_cb cb, void *arg)
{
    auth_user_t u;
    logout_job *j;
    int rc = auth_session_lookup(a, cookie_header, &u);

    if (rc != 0)
        return rc;
    if (!(j = malloc(sizeof(*j))))
        return AUTH_ENOMEM;
    j->a = a;
    j->session_id = u.session_id;
    j->cb = cb;
    j->arg = arg;
    if (store_submit(a->store, work_logout, done_logout, j) != 0) {
        free(j);
        return AUTH_ERR;
    }
    a->refs++;
    return 0;
}
