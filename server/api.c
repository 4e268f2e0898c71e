/*
 * api.c - /api routes.
 *
 *   GET    /api/kb/...            kb_api_handle() on the loop thread's reader connection
 *   POST/PUT/DELETE /api/kb/...   a store operation: kb_api_handle() runs on the writer thread
 *                                 inside the batch transaction; the reply is sent from the
 *                                 operation's done callback (after COMMIT)
 *   POST   /api/flows/reload      flow_engine_reload(): compile + check, swap only if valid
 *
 * A kb write job (kb_job) owns copies of the request and the reply handle; it is freed in its
 * done callback.  A job whose work failed on the database answers 500.
 */
#include "api.h"

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
    rc = flow_engine_reload(srv->flow, err, sizeof(err));
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

void api_handle(server_t *srv, const http_call_t *call, http_reply_t *h)
{
    if (!call->loopback) {
        http_reply_error(h, 403, "forbidden", "the API answers loopback clients only");
        return;
    }
    if (strcmp(call->path, "/api/kb") == 0 || strncmp(call->path, "/api/kb/", 8) == 0) {
        kb_route(srv, call, h);
    } else if (strcmp(call->path, "/api/flows/reload") == 0) {
        if (strcmp(call->method, "POST") == 0)
            flows_reload(srv, call, h);
        else
            http_reply_error(h, 405, "method_not_allowed", "use POST");
    } else {
        http_reply_error(h, 404, "not_found", "no such endpoint");
    }
}
