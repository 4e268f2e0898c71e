/*
 * auth_api.c - the login endpoints, on top of auth_t (auth_session.c).
 *
 *   POST /api/auth/login   {"username": "...", "password": "..."}
 *                          200 {"user": {...}} + Set-Cookie: redress_session=...
 *                          400 bad_json / missing_field / bad_field, 413 too_large,
 *                          401 invalid_credentials (one answer for unknown user and wrong
 *                          password), 403 account_disabled, 429 rate_limited + Retry-After,
 *                          503 unavailable (+ Retry-After when merely busy)
 *   POST /api/auth/logout  200 {"ok": true, "revoked": true|false} + a deleting Set-Cookie
 *   GET  /api/auth/me      200 {"user": {...}}, 401 not_authenticated, 400 bad_cookie
 *
 * {"user": {"username", "display_name", "role", "capabilities": [...]}}.  Errors are
 * {"error": {"code", "message"}} like every /api answer (429 adds "retry_after").
 *
 * A login or logout answers later: the request (api_req: the reply handle and the cookie
 * settings) lives until auth_t's callback, which sends the reply and frees it.  The password
 * is wiped from the parsed JSON as soon as auth_login() has copied it.
 */
#include "auth.h"

#include "server.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOGIN_BODY_MAX 4096

typedef struct api_req {
    http_reply_t *h;
    int max_age, secure;
} api_req;

/* ---- replies ---- */

static char *error_json(const char *code, const char *message, int retry_after)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    char *s = NULL;
    if (e && cJSON_AddStringToObject(e, "code", code) &&
        cJSON_AddStringToObject(e, "message", message) &&
        (retry_after <= 0 || cJSON_AddNumberToObject(e, "retry_after", retry_after)))
        s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void reply(http_reply_t *h, int status, const char *headers, char *json)
{
    http_reply_with_headers(h, status, "application/json", headers, json, json ? strlen(json) : 0);
}

static void reply_error(http_reply_t *h, int status, const char *headers, const char *code,
                        const char *message)
{
    reply(h, status, headers, error_json(code, message, 0));
}

/* "Set-Cookie: ...\r\n" setting (token) or deleting (NULL) the session cookie. */
static void cookie_header(char *out, size_t n, const char *token, int max_age, int secure)
{
    char cookie[256];
    if (auth_cookie_format(cookie, sizeof(cookie), token, max_age, secure) == 0)
        snprintf(out, n, "Set-Cookie: %s\r\n", cookie);
    else
        out[0] = '\0';
}

static char *user_json(const auth_user_t *u)
{
    cJSON *o = cJSON_CreateObject(), *user = cJSON_AddObjectToObject(o, "user"), *caps;
    char *s = NULL;

    if (!user || !cJSON_AddStringToObject(user, "username", u->username) ||
        !cJSON_AddStringToObject(user, "display_name", u->display_name) ||
        !cJSON_AddStringToObject(user, "role", auth_role_name(u->role)) ||
        !(caps = cJSON_AddArrayToObject(user, "capabilities")))
        goto out;
    for (int c = 0; c < AUTH_CAP_COUNT; c++)
        if (auth_allows(u->role, (auth_cap_t)c)) {
            cJSON *name = cJSON_CreateString(auth_cap_name((auth_cap_t)c));
            if (!name || !cJSON_AddItemToArray(caps, name)) {
                cJSON_Delete(name);
                goto out;
            }
        }
    s = cJSON_PrintUnformatted(o);
out:
    cJSON_Delete(o);
    return s;
}

static api_req *new_req(auth_t *a, http_reply_t *h)
{
    api_req *r = malloc(sizeof(*r));
    if (r) {
        r->h = h;
        r->max_age = auth_cookie_max_age(a);
        r->secure = auth_cookie_secure(a);
    }
    return r;
}

/* ---- login ---- */

static void login_done(void *arg, const auth_login_result_t *res)
{
    api_req *r = arg;
    char headers[320];

    switch (res->rc) {
    case AUTH_OK:
        cookie_header(headers, sizeof(headers), res->token, r->max_age, r->secure);
        reply(r->h, 200, headers, user_json(&res->user));
        break;
    case AUTH_EDENIED:
        reply_error(r->h, 401, NULL, "invalid_credentials", "wrong username or password");
        break;
    case AUTH_EDISABLED:
        reply_error(r->h, 403, NULL, "account_disabled", "this account is disabled");
        break;
    case AUTH_ECLOSED:
        reply_error(r->h, 503, NULL, "unavailable", "the server is shutting down");
        break;
    default:
        reply_error(r->h, 500, NULL, "internal", "the login could not be completed");
        break;
    }
    free(r);
}

/* The body as one JSON object, or NULL with an error answered. */
static cJSON *parse_body(const http_call_t *call, http_reply_t *h)
{
    const char *end = NULL, *b = call->body;
    size_t len = call->body_len;
    cJSON *o;

    if (len > LOGIN_BODY_MAX) {
        reply_error(h, 413, NULL, "too_large", "the login request is over 4 KiB");
        return NULL;
    }
    if (!util_utf8_valid(b, len)) {
        reply_error(h, 400, NULL, "bad_json", "the body is not valid UTF-8");
        return NULL;
    }
    for (size_t i = 0; i + 5 < len; i++) /* cJSON would cut a string at \u0000 */
        if (b[i] == '\\' && b[i + 1] == 'u' && memcmp(b + i + 2, "0000", 4) == 0) {
            reply_error(h, 400, NULL, "bad_json", "NUL characters (\\u0000) are not allowed");
            return NULL;
        }
    o = cJSON_ParseWithLengthOpts(b, len, &end, 0);
    while (o && end && end < b + len &&
           (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (!o || (end && end < b + len) || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        reply_error(h, 400, NULL, "bad_json",
                    "expected a JSON object {\"username\": \"...\", \"password\": \"...\"}");
        return NULL;
    }
    return o;
}

/* The string field `name` of o, or NULL with an error answered. */
static const char *string_field(const cJSON *o, const char *name, http_reply_t *h)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    char msg[64];

    if (!v) {
        snprintf(msg, sizeof(msg), "%s is required", name);
        reply_error(h, 400, NULL, "missing_field", msg);
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        snprintf(msg, sizeof(msg), "%s must be a string", name);
        reply_error(h, 400, NULL, "bad_field", msg);
        return NULL;
    }
    return v->valuestring;
}

static void login(auth_t *a, const http_call_t *call, http_reply_t *h)
{
    cJSON *o = parse_body(call, h);
    const char *user, *pass = NULL;
    char err[128] = "", headers[64];
    int retry = 0, rc;
    api_req *r;

    if (!o)
        return;
    if (!(user = string_field(o, "username", h)) || !(pass = string_field(o, "password", h)))
        goto out;
    if (!(r = new_req(a, h))) {
        reply_error(h, 500, NULL, "internal", "out of memory");
        goto out;
    }
    rc = auth_login(a, user, pass, call->peer, login_done, r, &retry, err, sizeof(err));
    if (rc != 0)
        free(r);
    switch (rc) {
    case 0:
        break;
    case AUTH_EINVAL:
        reply_error(h, 400, NULL, "bad_field", err);
        break;
    case AUTH_ELIMITED:
        snprintf(headers, sizeof(headers), "Retry-After: %d\r\n", retry);
        snprintf(err, sizeof(err), "too many failed logins; try again in %d seconds", retry);
        reply(h, 429, headers, error_json("rate_limited", err, retry));
        break;
    case AUTH_EBUSY:
        reply_error(h, 503, "Retry-After: 1\r\n", "unavailable",
                    "too many logins in progress; try again in a second");
        break;
    case AUTH_ECLOSED:
        reply_error(h, 503, NULL, "unavailable", "the server is shutting down");
        break;
    default:
        reply_error(h, 500, NULL, "internal", "the login could not be started");
        break;
    }
out:
    if (pass) /* wipe our parsed copy of the password (cJSON's string) */
        sodium_memzero((char *)pass, strlen(pass));
    cJSON_Delete(o);
}

/* ---- logout and me ---- */

static void logout_done(void *arg, int rc, long long session_id)
{
    api_req *r = arg;
    char headers[320];

    (void)session_id;
    cookie_header(headers, sizeof(headers), NULL, 0, r->secure);
    if (rc == 0)
        reply(r->h, 200, headers, strdup("{\"ok\":true,\"revoked\":true}"));
    else if (rc == AUTH_ECLOSED)
        reply_error(r->h, 503, NULL, "unavailable", "the server is shutting down");
    else
        reply_error(r->h, 500, NULL, "internal", "the session could not be ended");
    free(r);
}

static void logout(auth_t *a, const http_call_t *call, http_reply_t *h)
{
    char headers[320];
    api_req *r = new_req(a, h);
    int rc;

    if (!r) {
        reply_error(h, 500, NULL, "internal", "out of memory");
        return;
    }
    rc = auth_logout(a, call->cookie, logout_done, r);
    if (rc == 0)
        return;
    cookie_header(headers, sizeof(headers), NULL, 0, r->secure);
    free(r);
    if (rc == AUTH_ENOENT)
        reply(h, 200, headers, strdup("{\"ok\":true,\"revoked\":false}"));
    else if (rc == AUTH_EINVAL)
        reply_error(h, 400, headers, "bad_cookie", "the Cookie header is over 4 KiB");
    else
        reply_error(h, 500, NULL, "internal", "the session could not be ended");
}

static void me(auth_t *a, const http_call_t *call, http_reply_t *h)
{
    auth_user_t u;
    char headers[320] = "";
    int rc = auth_session_lookup(a, call->cookie, &u);

    if (rc == 0) {
        reply(h, 200, NULL, user_json(&u));
        return;
    }
    /* a stale cookie is deleted, so the browser stops sending it */
    if (call->cookie && strstr(call->cookie, AUTH_COOKIE_NAME "="))
        cookie_header(headers, sizeof(headers), NULL, 0, auth_cookie_secure(a));
    if (rc == AUTH_ENOENT)
        reply_error(h, 401, headers, "not_authenticated", "log in first");
    else if (rc == AUTH_EINVAL)
        reply_error(h, 400, headers, "bad_cookie", "the Cookie header is over 4 KiB");
    else
        reply_error(h, 500, NULL, "internal", "the session could not be read");
}

/* ---- routing ---- */

void auth_api_handle(server_t *srv, const http_call_t *call, http_reply_t *h)
{
    const char *sub = call->path + strlen("/api/auth");
    int post = strcmp(call->method, "POST") == 0;

    if (!srv->auth) {
        reply_error(h, 503, NULL, "unavailable", "accounts are not available");
    } else if (strcmp(sub, "/login") == 0) {
        if (post)
            login(srv->auth, call, h);
        else
            reply_error(h, 405, NULL, "method_not_allowed", "use POST");
    } else if (strcmp(sub, "/logout") == 0) {
        if (post)
            logout(srv->auth, call, h);
        else
            reply_error(h, 405, NULL, "method_not_allowed", "use POST");
    } else if (strcmp(sub, "/me") == 0) {
        if (strcmp(call->method, "GET") == 0)
            me(srv->auth, call, h);
        else
            reply_error(h, 405, NULL, "method_not_allowed", "use GET");
    } else {
        reply_error(h, 404, NULL, "not_found", "no such endpoint");
    }
}
