/*
 * api.c - /api routes.
 *
 *   GET    /api/complaints/followups  unanswered follow-up surveys (agent.chat)
 *   GET    /api/complaints/status complaint_progress(): a record's progress, for the customer
 *                                 holding its number and the conversation's token (no login)
 *   GET    /api/dashboard[/export.csv]  dashboard_handle(): figures / CSV computed on the thread
 *                                 pool, answered later (dashboard.view)
 *   GET    /api/kb/...            kb_api_handle() on the loop thread's reader connection
 *   POST/PUT/DELETE /api/kb/...   a store operation: kb_api_handle() runs on the writer thread
 *                                 inside the batch transaction; the reply is sent from the
 *                                 operation's done callback (after COMMIT)
 *   POST   /api/flows/reload      rules/sla.json and flow_engine_reload(): compile + check,
 *                                 swap both only if both are valid
 *
 * A kb write job (kb_job) owns copies of the request and the reply handle; it is freed in its
 * done callback.  A job whose work failed on the database answers 500.
 */
#include "api.h"

#include "auth.h"
#include "complaint.h"
#include "complaint_sla.h"
#include "dashboard.h"

#include "flow.h"
#include "kb.h"
#include "log.h"
#include "server.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct kb_job {
    http_reply_t *h;
    char method[8];
    char *path, *query, *body;
    size_t body_len;
    int status;
    char *out;
} kb_job;

static int kb_work(store_tx_t *tx, void *arg)
{
    kb_job *j = arg;
    kb_api_handle(store_tx_db(tx), j->method, j->path, j->query, j->body, j->body_len, "api",
                  &j->status, &j->out);
    /* a rejected request must not leave half a change behind */
    return j->status >= 400 ? 1 : 0;
}

static void kb_done(void *arg, int rc)
{
    kb_job *j = arg;
    if (rc < 0) {
        free(j->out);
        http_reply_error(j->h, 500, "internal", "the change could not be stored");
    } else {
        http_reply_json(j->h, j->status, j->out);
    }
    free(j->path);
    free(j->query);
    free(j->body);
    free(j);
}

static void kb_route(server_t *srv, const http_call_t *call, http_reply_t *h)
{
    const char *sub = call->path + strlen("/api/kb");
    if (*sub == '\0')
        sub = "/";
    if (strcmp(call->method, "GET") == 0) {
        int status = 500;
        char *out = NULL;
        kb_api_handle(store_reader(srv->store), "GET", sub, call->query, NULL, 0, "api", &status,
                      &out);
        http_reply_json(h, status, out);
        return;
    }
    kb_job *j = calloc(1, sizeof(*j));
    if (!j)
        goto oom;
    j->h = h;
    snprintf(j->method, sizeof(j->method), "%s", call->method);
    j->body_len = call->body_len;
    if (!(j->path = strdup(sub)) || !(j->query = strdup(call->query)) ||
        !(j->body = malloc(call->body_len + 1)))
        goto oom_job;
    memcpy(j->body, call->body, call->body_len);
    j->body[call->body_len] = '\0';
    if (store_submit(srv->store, kb_work, kb_done, j) != 0)
        goto oom_job;
    return;
oom_job:
    free(j->path);
    free(j->query);
    free(j->body);
    free(j);
oom:
    http_reply_error(h, 503, "unavailable", "the server cannot take this change now");
}

static void flows_reload(server_t *srv, const http_call_t *call, http_reply_t *h)
{
    char err[1024] = "";
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    int rc, status;

    (void)call;
    if (!srv->flow) {
        cJSON_Delete(o);
        http_reply_error(h, 503, "unavailable", "the flow engine is not running");
        return;
    }
    /* sla.json is checked first and swapped in only when the flows are valid too */
    sla_policy_t sla;
    char sla_file[4200];
    snprintf(sla_file, sizeof(sla_file), "%s/sla.json", srv->cfg->rules_dir);
    rc = complaint_sla_load(sla_file, &sla, err, sizeof(err));
    if (rc == 0)
        rc = flow_engine_reload(srv->flow, err, sizeof(err));
    if (rc == 0 && srv->complaints)
        complaint_mgr_set_sla(srv->complaints, &sla);
    status = rc == 0 ? 200 : 422;
    if (rc == 0)
        log_notice("api", "flows reloaded (generation %u)", flow_engine_generation(srv->flow));
    else
        log_warn("api", "flow reload rejected: %s", err);
    if (o && cJSON_AddBoolToObject(o, "ok", rc == 0) &&
        (rc == 0
             ? cJSON_AddNumberToObject(o, "generation", flow_engine_generation(srv->flow)) != NULL
             : cJSON_AddStringToObject(o, "error", err) != NULL))
        s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    http_reply_json(h, status, s);
}

/*
 * Who may call: a logged-in account whose role has cap (docs/auth.md), or - without a session
 * cookie - the machine's operator on the loopback interface (the CLI tools, scripts).
 * Answers 401/403 itself and returns 0 when the request may not go on.
 */
static int authorized(server_t *srv, const http_call_t *call, http_reply_t *h, auth_cap_t cap)
{
    auth_user_t user;
    int rc;

    if (!call->cookie) {
        http_reply_error(h, 400, "bad_request", "Cookie header too large");
        return 0;
    }
    rc = call->cookie[0] ? auth_session_lookup(srv->auth, call->cookie, &user) : AUTH_ENOENT;
    if (rc == 0) {
        if (auth_allows(user.role, cap))
            return 1;
        http_reply_error(h, 403, "forbidden", "your role may not do this");
        return 0;
    }
    if (rc != AUTH_ENOENT && rc != AUTH_EINVAL) {
        http_reply_error(h, 500, "internal", "could not check the session");
        return 0;
    }
    if (srv->cfg->api_trust_loopback && call->loopback && !call->cookie[0])
        return 1;
    http_reply_error(h, 401, "unauthorized", "log in first");
    return 0;
}

/* GET /api/complaints/status?number=TS...&token=...: a complaint's progress for its customer
 * (the token is the conversation's; no login).  One answer (404) for an unknown number and a
 * wrong token. */
static void complaint_status(server_t *srv, const http_call_t *call, http_reply_t *h)
{
    int bad = 0, found = 0;
    char *number = kb_query_param(call->query, "number", &bad);
    char *token = kb_query_param(call->query, "token", &bad);
    if (strcmp(call->method, "GET") != 0)
        http_reply_error(h, 405, "method_not_allowed", "use GET");
    else if (bad || !number || !token || !*number || !*token || strlen(number) > 31 ||
             strlen(token) > 64)
        http_reply_error(h, 400, "bad_request", "number and token are required");
    else {
        char *json = complaint_progress(srv->complaints, number, token, &found);
        if (json)
            http_reply_json(h, 200, json);
        else if (found == 0)
            http_reply_error(h, 404, "not_found", "no complaint with this number and token");
        else
            http_reply_error(h, 500, "internal", "could not read the complaint");
    }
    free(number);
    free(token);
}

void api_handle(server_t *srv, const http_call_t *call, http_reply_t *h)
{
    if (strncmp(call->path, "/api/auth/", 10) == 0) { /* logins come from anywhere */
        auth_api_handle(srv, call, h);
        return;
    }
    if (strcmp(call->path, "/api/complaints/status") == 0) { /* customers, with their token */
        complaint_status(srv, call, h);
        return;
    }
    if (strcmp(call->path, "/api/complaints/followups") == 0) {
        if (strcmp(call->method, "GET") != 0) {
            http_reply_error(h, 405, "method_not_allowed", "use GET");
            return;
        }
        if (!authorized(srv, call, h, AUTH_CAP_AGENT_CHAT))
            return;
        char *json = complaint_followups(srv->complaints);
        if (json)
            http_reply_json(h, 200, json);
        else
            http_reply_error(h, 500, "internal", "could not read the follow-ups");
        return;
    }
    if (strcmp(call->path, "/api/dashboard") == 0 ||
        strncmp(call->path, "/api/dashboard/", 15) == 0) {
        if (strcmp(call->method, "GET") != 0) {
            http_reply_error(h, 405, "method_not_allowed", "use GET");
            return;
        }
        if (authorized(srv, call, h, AUTH_CAP_DASHBOARD_VIEW))
            dashboard_handle(srv, call, h);
        return;
    }
    int is_kb = strcmp(call->path, "/api/kb") == 0 || strncmp(call->path, "/api/kb/", 8) == 0;
    int is_reload = strcmp(call->path, "/api/flows/reload") == 0;
    if (!is_kb && !is_reload) {
        http_reply_error(h, 404, "not_found", "no such endpoint");
        return;
    }
    if (is_reload && strcmp(call->method, "POST") != 0) {
        http_reply_error(h, 405, "method_not_allowed", "use POST");
        return;
    }
    auth_cap_t cap = is_reload                          ? AUTH_CAP_FLOWS_RELOAD
                     : strcmp(call->method, "GET") == 0 ? AUTH_CAP_KB_READ
                                                        : AUTH_CAP_KB_WRITE;
    if (!authorized(srv, call, h, cap))
        return;
    if (is_kb)
        kb_route(srv, call, h);
    else
        flows_reload(srv, call, h);
}
