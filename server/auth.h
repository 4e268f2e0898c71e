/*
 * auth.h - staff accounts, roles, logins and web sessions (docs/auth.md).
 *
 * Three layers, each usable on its own:
 *
 *   auth.c          pure helpers: roles and the permission matrix, input rules (username,
 *                   password policy, display name), Argon2id hashing (slow: never on the loop
 *                   thread), session ids and their hashes, the Cookie / Set-Cookie syntax.
 *   auth_db.c       SQL on a plain sqlite3 connection with an explicit clock: the migration,
 *                   accounts, sessions, failed-login records and the rate limiter.  Used by the
 *                   CLI, inside store operations on the writer thread, and by the tests.
 *   auth_session.c  auth_t, the running server's side: login (verify on the libuv thread
 *                   pool, write through the store), session lookup on the reader connection,
 *                   logout and its hook.  Loop thread only.
 *   auth_api.c      the HTTP endpoints under /api/auth/ on top of auth_t.
 *   user_cli.c      `redress user ...`.
 *
 * Error codes: 0 is success, the negative AUTH_E* values below are errors.
 */
#ifndef REDRESS_AUTH_H
#define REDRESS_AUTH_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "store.h"

/* ---- errors ---- */

enum {
    AUTH_OK = 0,
    AUTH_ERR = -1,       /* database or system failure (logged) */
    AUTH_EINVAL = -2,    /* input breaks a rule; err says which */
    AUTH_EEXIST = -3,    /* username already taken */
    AUTH_ENOENT = -4,    /* no such account / no valid session */
    AUTH_EDENIED = -5,   /* wrong username or password */
    AUTH_EDISABLED = -6, /* right password, but the account is disabled */
    AUTH_ELIMITED = -7,  /* too many failed logins; try again later */
    AUTH_EBUSY = -8,     /* too many logins in progress */
    AUTH_ECLOSED = -9,   /* the server is shutting down */
    AUTH_ENOMEM = -10,
};

/* ---- limits and names ---- */

#define AUTH_USERNAME_MAX 64         /* bytes (usernames are ASCII) */
#define AUTH_DISPLAY_MAX_CHARS 64    /* display name, in characters */
#define AUTH_DISPLAY_MAX_BYTES 256   /* ... and in bytes of UTF-8 */
#define AUTH_PASSWORD_MIN_CHARS 10   /* password policy: at least this many characters */
#define AUTH_PASSWORD_MAX_BYTES 1024 /* longer passwords are refused, not truncated */
#define AUTH_HASH_MAX 128            /* crypto_pwhash_STRBYTES, with its NUL */
#define AUTH_TOKEN_BYTES 16          /* a session id: 128 random bits ... */
#define AUTH_TOKEN_HEX 32            /* ... sent as 32 lowercase hex digits */
#define AUTH_TOKEN_HASH_BYTES 32     /* stored: BLAKE2b-256 of the 16 bytes */
#define AUTH_COOKIE_NAME "redress_session"
#define AUTH_COOKIE_HEADER_MAX 4096 /* a longer Cookie header is refused */
#define AUTH_TOUCH_INTERVAL_S 60    /* last_seen is written at most this often */

/* ---- roles and capabilities ---- */

typedef enum auth_role {
    AUTH_ROLE_NONE = 0, /* not a role: "unknown" */
    AUTH_ROLE_ADMIN,
    AUTH_ROLE_SUPERVISOR,
    AUTH_ROLE_EDITOR,
    AUTH_ROLE_AGENT,
} auth_role_t;

typedef enum auth_cap {
    AUTH_CAP_KB_READ,         /* kb.read: search and read the knowledge base */
    AUTH_CAP_KB_WRITE,        /* kb.write: create, edit, delete kb records */
    AUTH_CAP_FLOWS_RELOAD,    /* flows.reload: reload the Lua dialogue flows */
    AUTH_CAP_AGENT_CHAT,      /* agent.chat: take escalated chats in the agent console */
    AUTH_CAP_AGENT_SUPERVISE, /* agent.supervise: see every queue, transfer others' chats */
    AUTH_CAP_DASHBOARD_VIEW,  /* dashboard.view: statistics and reports */
    AUTH_CAP_USERS_MANAGE,    /* users.manage: create, change and disable accounts */
    AUTH_CAP_COUNT
} auth_cap_t;

/* "admin", "supervisor", "editor", "agent"; NULL for AUTH_ROLE_NONE or a bad value. */
const char *auth_role_name(auth_role_t role);
/* The role with this exact name, or AUTH_ROLE_NONE. */
auth_role_t auth_role_parse(const char *name);
/* "kb.read", ...; NULL for a bad value. */
const char *auth_cap_name(auth_cap_t cap);
/* 0 and *out for a known capability name, AUTH_EINVAL otherwise. */
int auth_cap_parse(const char *name, auth_cap_t *out);
/* 1 when role may do cap, else 0 (always 0 for AUTH_ROLE_NONE). */
int auth_allows(auth_role_t role, auth_cap_t cap);

/* ---- input rules (each returns 0, or AUTH_EINVAL with a sentence in err) ---- */

/* Usernames: 2-64 of a-z 0-9 . _ - @, starting with a letter or digit.  ASCII capitals are
 * folded to lower case into out (AUTH_USERNAME_MAX + 1 bytes), so "Alice" is "alice". */
int auth_username_normalize(const char *in, char *out, char *err, size_t errlen);
/* Password policy: valid UTF-8, at least AUTH_PASSWORD_MIN_CHARS characters, at most
 * AUTH_PASSWORD_MAX_BYTES bytes, no control characters, not the username itself
 * (username may be NULL). */
int auth_password_policy(const char *password, const char *username, char *err, size_t errlen);
/* Display names: valid UTF-8, at most AUTH_DISPLAY_MAX_CHARS characters and
 * AUTH_DISPLAY_MAX_BYTES bytes, no control characters, not blank. */
int auth_display_name_check(const char *name, char *err, size_t errlen);

/* ---- passwords (slow, ~0.1 s and 64 MiB each: thread pool, CLI or tests only) ---- */

/* Initialises libsodium; call once before anything below.  Returns 0 or AUTH_ERR. */
int auth_init(void);
/* Argon2id hash of password with the current parameters into out (AUTH_HASH_MAX bytes).
 * Returns 0, or AUTH_ERR (out of memory). */
int auth_password_hash(const char *password, char *out);
/* Checks password against a stored hash.  Returns 0 when it matches, AUTH_EDENIED when it
 * does not (or the hash is not one of ours).  On a match made with outdated parameters, a
 * fresh hash is written to rehash (AUTH_HASH_MAX bytes, may be NULL), else rehash[0] = 0. */
int auth_password_verify(const char *hash, const char *password, char *rehash);
/* A valid Argon2id hash (current parameters) of a password nobody knows: verifying against it
 * costs what a real check costs, so an unknown username takes as long as a wrong password. */
const char *auth_dummy_hash(void);

/* ---- session ids ---- */

/* A new session id from the OS's randomness, as AUTH_TOKEN_HEX lowercase hex digits plus a
 * NUL.  Returns 0 (libsodium's randombytes cannot fail after auth_init). */
int auth_token_new(char *hex);
/* The stored form of a session id: BLAKE2b-256 (crypto_generichash) of its 16 bytes into out
 * (AUTH_TOKEN_HASH_BYTES).  Returns 0, or AUTH_EINVAL when hex is not exactly
 * AUTH_TOKEN_HEX lowercase hex digits. */
int auth_token_hash(const char *hex, unsigned char *out);

/* ---- cookies ---- */

/*
 * Finds cookie `name` in a Cookie request header ("a=1; b=\"2\"; c=3"): pairs are split at
 * ';', blanks around names and values are ignored, a value in double quotes loses them,
 * pairs without '=' are skipped.  The first pair with that name whose value is non-empty and
 * fits out (outlen bytes with the NUL) wins.  Returns 0 and out, 1 when there is none, or
 * AUTH_EINVAL when header is NULL or longer than AUTH_COOKIE_HEADER_MAX.
 */
int auth_cookie_get(const char *header, const char *name, char *out, size_t outlen);
/* The Set-Cookie value for the session cookie: token with Max-Age max_age, or, when token is
 * NULL, one that deletes it (Max-Age=0).  Always Path=/; HttpOnly; SameSite=Strict, plus
 * Secure when secure.  Returns 0, or AUTH_EINVAL when it does not fit outlen. */
int auth_cookie_format(char *out, size_t outlen, const char *token, int max_age, int secure);

/* ---- storage (auth_db.c): plain connections, any one thread, explicit clock ---- */

/* A staff account as stored. */
typedef struct auth_account {
    long long id;
    char username[AUTH_USERNAME_MAX + 1];
    char display_name[AUTH_DISPLAY_MAX_BYTES + 1];
    auth_role_t role;
    int disabled;
    int64_t created_at, updated_at; /* Unix seconds */
    int active_sessions;            /* auth_db_user_list only */
} auth_account_t;

/* Who a valid session belongs to. */
typedef struct auth_user {
    long long id;         /* users.id */
    long long session_id; /* auth_sessions.id */
    char username[AUTH_USERNAME_MAX + 1];
    char display_name[AUTH_DISPLAY_MAX_BYTES + 1];
    auth_role_t role;
    int64_t expires_at; /* the session's absolute end, Unix seconds */
} auth_user_t;

/* Creates or upgrades the auth tables (versioned in auth_schema).  Safe to run from two
 * processes at once.  Returns 0, or AUTH_ERR with a message in err. */
int auth_migrate(sqlite3 *db, char *err, size_t errlen);

/* Adds an account (username already normalised, hash from auth_password_hash).  Returns 0 and
 * *id (may be NULL), AUTH_EEXIST when the username is taken, AUTH_EINVAL for an unknown role,
 * AUTH_ERR. */
int auth_db_user_add(sqlite3 *db, const char *username, const char *display_name, auth_role_t role,
                     const char *hash, int64_t now, long long *id);
/* The account with this username into *out, and its hash into hash (AUTH_HASH_MAX bytes,
 * may be NULL).  Returns 0, AUTH_ENOENT, AUTH_ERR. */
int auth_db_user_get(sqlite3 *db, const char *username, auth_account_t *out, char *hash);
/* Replaces the password hash and revokes every session of the account.  Returns 0,
 * AUTH_ENOENT, AUTH_ERR. */
int auth_db_user_set_password(sqlite3 *db, const char *username, const char *hash, int64_t now);
/* Replaces the hash of account id with a stronger one for the same password (after a login
 * found outdated limits), if it still is old_hash; sessions stay.  Returns 1 when replaced,
 * 0 when the hash had changed meanwhile, AUTH_ERR. */
int auth_db_user_upgrade_hash(sqlite3 *db, long long id, const char *old_hash, const char *new_hash,
                              int64_t now);
/* Disables (revoking every session) or enables an account.  Returns 0, AUTH_ENOENT,
 * AUTH_ERR; *revoked (may be NULL) gets the number of sessions revoked. */
int auth_db_user_set_disabled(sqlite3 *db, const char *username, int disabled, int64_t now,
                              int *revoked);
/* Calls fn for every account in username order (active_sessions filled in); stops when fn
 * returns non-zero.  Returns 0 or AUTH_ERR. */
int auth_db_user_list(sqlite3 *db, int64_t now, int (*fn)(const auth_account_t *a, void *arg),
                      void *arg);

/* Starts a session for user_id lasting ttl_s: a new id into token (AUTH_TOKEN_HEX + 1 bytes;
 * only its hash is stored), the row id into *session_id.  Returns 0 or AUTH_ERR. */
int auth_db_session_create(sqlite3 *db, long long user_id, const char *ip, int64_t now, int ttl_s,
                           char *token, long long *session_id);
/* Marks a session revoked.  Returns 0, AUTH_ENOENT (no such live session), AUTH_ERR. */
int auth_db_session_revoke(sqlite3 *db, long long session_id);
/* Deletes sessions that ended before now.  Returns the number deleted or AUTH_ERR. */
int auth_db_session_prune(sqlite3 *db, int64_t now);

/* The rate limiter's settings. */
typedef struct auth_limits {
    int max_user; /* failures per username in the window */
    int max_ip;   /* failures per client address in the window (0: not limited) */
    int window_s; /* the window, seconds */
} auth_limits_t;

/* Records one failed login (and forgets failures older than the window).  0 or AUTH_ERR. */
int auth_db_failure_add(sqlite3 *db, const char *username, const char *ip, int64_t now,
                        int window_s);
/* Forgets the failures recorded for username (after it logged in).  0 or AUTH_ERR. */
int auth_db_failures_reset(sqlite3 *db, const char *username);
/*
 * May a login for username from ip start now?  Counts the recorded failures in the window,
 * plus pending_user / pending_ip attempts still in progress.  Returns 0 (yes), AUTH_ELIMITED
 * with *retry_after (seconds until one more attempt is allowed, >= 1), or AUTH_ERR.
 */
int auth_db_limit_check(sqlite3 *db, const auth_limits_t *lim, const char *username, const char *ip,
                        int pending_user, int pending_ip, int64_t now, int *retry_after);

/* ---- the running server (auth_session.c): loop thread only ---- */

typedef struct auth auth_t;

/*
 * Creates the server's auth state on an open store whose writer ran auth_migrate(): prepared
 * statements on the store's reader connection, the limiter and login queue, settings from cfg
 * (which must outlive it).  Returns 0 and *out, or AUTH_ERR with a message in err.
 */
int auth_new(auth_t **out, const config_t *cfg, uv_loop_t *loop, store_t *store, char *err,
             size_t errlen);
/*
 * Call before store_close(): finalizes the reader statements and refuses new work.  Logins
 * still hashing on the thread pool finish later with AUTH_ECLOSED; the object frees itself
 * once the last of them (and of its store operations) is done.  a is invalid afterwards.
 */
void auth_close(auth_t *a);

/* Called on the loop thread after a logout committed, with the revoked session's row id (to
 * close that session's agent sockets).  One hook; NULL removes it. */
typedef void (*auth_logout_hook_fn)(void *arg, long long session_id);
void auth_set_logout_hook(auth_t *a, auth_logout_hook_fn fn, void *arg);

/* The session cookie's settings, for Set-Cookie: Max-Age (auth.session_ttl_s) and Secure
 * (auth.cookie_secure). */
int auth_cookie_max_age(const auth_t *a);
int auth_cookie_secure(const auth_t *a);

/*
 * Who is behind this Cookie header?  One indexed lookup on the reader connection; a session
 * counts when it is not revoked, not past expires_at, not idle for auth.session_idle_s, and its
 * account is enabled.  last_seen is written (through the store) at most once a minute.
 * cookie_header may be "" (no cookie).  Returns 0 and *out, AUTH_ENOENT when there is no
 * valid session, AUTH_EINVAL when cookie_header is NULL or over AUTH_COOKIE_HEADER_MAX,
 * AUTH_ERR on a database error.
 */
int auth_session_lookup(auth_t *a, const char *cookie_header, auth_user_t *out);
/* 1 when the session with this row id is still valid (as above), else 0: for long-lived
 * sockets to re-check their session now and then. */
int auth_session_valid(auth_t *a, long long session_id);

/* What a login came to. */
typedef struct auth_login_result {
    int rc;           /* AUTH_OK, AUTH_EDENIED, AUTH_EDISABLED, AUTH_ERR, AUTH_ECLOSED */
    auth_user_t user; /* AUTH_OK */
    char token[AUTH_TOKEN_HEX + 1]; /* AUTH_OK: the new session id, for the cookie */
} auth_login_result_t;
typedef void (*auth_login_cb)(void *arg, const auth_login_result_t *res);

/*
 * Starts a login.  username is normalised here (a malformed one gives AUTH_EINVAL with err);
 * the password is copied and wiped after use.  Checks the rate limiter first.  Returns 0, and
 * cb runs exactly once later on the loop thread; or, without calling cb: AUTH_EINVAL,
 * AUTH_ELIMITED with *retry_after, AUTH_EBUSY (too many logins in progress; retry in a
 * second), AUTH_ECLOSED, AUTH_ENOMEM, AUTH_ERR.
 *
 * Pipeline: account read on the reader -> Argon2id verify on the thread pool (against a dummy
 * hash when the account does not exist) -> one store operation: on success a session row, the
 * username's failures forgotten and, if needed, the hash upgraded; on failure a failure row ->
 * cb after COMMIT.
 */
int auth_login(auth_t *a, const char *username, const char *password, const char *ip,
               auth_login_cb cb, void *arg, int *retry_after, char *err, size_t errlen);

/*
 * Ends the session named by the Cookie header.  Returns 0, and cb(arg, rc, session_id) runs
 * once after the revocation committed (rc 0) or failed (AUTH_ERR / AUTH_ECLOSED); the logout
 * hook runs just before cb when rc is 0.  Returns AUTH_ENOENT when the header names no valid
 * session, AUTH_EINVAL for a bad header, AUTH_ENOMEM, AUTH_ERR: then cb is not called.
 */
typedef void (*auth_logout_cb)(void *arg, int rc, long long session_id);
int auth_logout(auth_t *a, const char *cookie_header, auth_logout_cb cb, void *arg);

/* ---- HTTP (auth_api.c) ---- */

#include "http.h"
struct server;
/* Answers one request under /api/auth/ (login, logout, me); see docs/auth.md.  Uses
 * srv->auth.  Open to every client (not only loopback). */
void auth_api_handle(struct server *srv, const http_call_t *call, http_reply_t *h);

/* ---- CLI (user_cli.c) ---- */

/* `redress user add|passwd|list|disable|enable ...`; argv[0] is "user".  Exit code. */
int user_cli_main(const config_t *cfg, int argc, char **argv);

#endif
