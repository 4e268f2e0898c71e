/*
 * test_kb_api.c - kb_api_handle: CRUD on templates and cases, history, listing, search, and
 * every error status with its JSON error body.
 */
#include "test_kb.h"

#include <cjson/cJSON.h>

static sqlite3 *g_db;
static int g_status;

/* Calls the handler; returns the parsed reply (cJSON_Delete it) and sets g_status. */
static cJSON *call(const char *method, const char *path, const char *qs, const char *body)
{
    char *out = NULL;
    int rc = kb_api_handle(g_db, method, path, qs, body, body ? strlen(body) : 0, "editor",
                           &g_status, &out);
    if (rc != 0 || out == NULL) {
        fprintf(stderr, "kb_api_handle failed: %d\n", rc);
        return NULL;
    }
    cJSON *j = cJSON_Parse(out);
    if (j == NULL)
        fprintf(stderr, "not JSON: %s\n", out);
    free(out);
    return j;
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(m) ? m->valuestring : "";
}

static double num(const cJSON *o, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(m) ? m->valuedouble : -1;
}

static const char *err_code(const cJSON *o)
{
    return str(cJSON_GetObjectItemCaseSensitive(o, "error"), "code");
}

static const char *err_msg(const cJSON *o)
{
    return str(cJSON_GetObjectItemCaseSensitive(o, "error"), "message");
}

#define BODY                                                                                       \
    "{\"key\":\"api-1\",\"title\":\"申请退款\",\"category\":\"ecom.refund\",\"text\":"         \
    "\"三个工作日内退回\",\"steps\":[\"核实\"],\"tags\":[\"退款\"],\"deadline_hours\":72}"

static void template_crud(void)
{
    cJSON *j = call("POST", "/templates", NULL, BODY);
    CHECK(j && g_status == 201);
    int id = (int)num(j, "id");
    CHECK(id > 0 && num(j, "version") == 1 && strcmp(str(j, "updated_by"), "editor") == 0);
    CHECK(strcmp(str(j, "category_name"), "退款") == 0 && num(j, "deadline_hours") == 72);
    cJSON_Delete(j);

    char path[64];
    snprintf(path, sizeof(path), "/templates/%d", id);
    j = call("GET", path, NULL, NULL);
    CHECK(j && g_status == 200 && strcmp(str(j, "key"), "api-1") == 0);
    /* the editor sends back what it got, changed: read-only members are accepted */
    cJSON_ReplaceItemInObject(j, "text", cJSON_CreateString("两个工作日内退回"));
    char *edited = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    j = call("PUT", path, NULL, edited);
    CHECK(j && g_status == 200 && num(j, "version") == 2);
    cJSON_Delete(j);
    /* the same edit again is based on version 1: conflict */
    j = call("PUT", path, NULL, edited);
    free(edited);
    CHECK(j && g_status == 409 && strcmp(err_code(j), "conflict") == 0);
    cJSON_Delete(j);
    /* by key, without a key in the body */
    j = call("PUT", "/templates/api-1", NULL,
             "{\"title\":\"申请退款\",\"category\":\"ecom.refund\",\"text\":\"一天内退回\"}");
    CHECK(j && g_status == 200 && num(j, "version") == 3 && strcmp(str(j, "key"), "api-1") == 0);
    cJSON_Delete(j);

    snprintf(path, sizeof(path), "/templates/%d/history", id);
    j = call("GET", path, NULL, NULL);
    CHECK(j && g_status == 200);
    cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
    CHECK(cJSON_GetArraySize(items) == 3);
    CHECK(strcmp(str(cJSON_GetArrayItem(items, 2), "text"), "一天内退回") == 0);
    CHECK(strcmp(str(cJSON_GetArrayItem(items, 0), "action"), "create") == 0);
    cJSON_Delete(j);

    snprintf(path, sizeof(path), "/templates/%d", id);
    j = call("DELETE", path, NULL, NULL);
    CHECK(j && g_status == 200 &&
          strcmp(str(cJSON_GetObjectItem(j, "deleted"), "key"), "api-1") == 0);
    cJSON_Delete(j);
    j = call("GET", path, NULL, NULL);
    CHECK(j && g_status == 404 && strcmp(err_code(j), "not_found") == 0);
    cJSON_Delete(j);
    j = call("DELETE", path, NULL, NULL);
    CHECK(j && g_status == 404);
    cJSON_Delete(j);
    /* history survives the deletion */
    j = call("GET", "/templates/api-1/history", NULL, NULL);
    CHECK(j && g_status == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")) == 4);
    cJSON_Delete(j);
}

static void template_errors(void)
{
    cJSON *j = call("POST", "/templates", NULL, BODY);
    CHECK(j && g_status == 201);
    cJSON_Delete(j);
    j = call("POST", "/templates", NULL, BODY);
    CHECK(j && g_status == 409 && strstr(err_msg(j), "already exists"));
    cJSON_Delete(j);
    j = call("POST", "/templates", NULL, "{\"key\":");
    CHECK(j && g_status == 400 && strcmp(err_code(j), "bad_request") == 0);
    CHECK(strstr(err_msg(j), "invalid JSON") != NULL);
    cJSON_Delete(j);
    j = call("POST", "/templates", NULL, NULL);
    CHECK(j && g_status == 400 && strstr(err_msg(j), "body is required"));
    cJSON_Delete(j);
    j = call("POST", "/templates", NULL,
             "{\"key\":\"x\",\"title\":\"t\",\"category\":\"general\",\"text\":\"t\",\"x\":1}");
    CHECK(j && g_status == 400 && strstr(err_msg(j), "unknown field \"x\""));
    cJSON_Delete(j);
    j = call("POST", "/templates", NULL,
             "{\"key\":\"x\",\"title\":\"t\",\"category\":\"bank.nope\",\"text\":\"t\"}");
    CHECK(j && g_status == 400 && strstr(err_msg(j), "category"));
    cJSON_Delete(j);
    j = call("POST", "/templates", NULL, "{\"kind\":\"case\",\"key\":\"x\"}");
    CHECK(j && g_status == 400 && strstr(err_msg(j), "kind"));
    cJSON_Delete(j);
    j = call("PUT", "/templates/99999", NULL,
             "{\"title\":\"t\",\"category\":\"general\",\"text\":\"t\"}");
    CHECK(j && g_status == 404);
    cJSON_Delete(j);
    j = call("PUT", "/templates/api-1", NULL,
             "{\"id\":424242,\"title\":\"t\",\"category\":\"general\",\"text\":\"t\"}");
    CHECK(j && g_status == 400 && strstr(err_msg(j), "does not match"));
    cJSON_Delete(j);
    j = call("PATCH", "/templates/api-1", NULL, "{}");
    CHECK(j && g_status == 405 && strcmp(err_code(j), "method_not_allowed") == 0);
    cJSON_Delete(j);
    j = call("DELETE", "/templates", NULL, NULL);
    CHECK(j && g_status == 405);
    cJSON_Delete(j);
    j = call("GET", "/nothing", NULL, NULL);
    CHECK(j && g_status == 404);
    cJSON_Delete(j);
    j = call("GET", "/templates/1/2/3/4/5", NULL, NULL);
    CHECK(j && g_status == 404);
    cJSON_Delete(j);
    j = call("GET", "/templates/%zz", NULL, NULL);
    CHECK(j && g_status == 404);
    cJSON_Delete(j);
    j = call("GET", "/cases/1/history", NULL, NULL);
    CHECK(j && g_status == 404);
    cJSON_Delete(j);
    char *out = NULL;
    int status = 0;
    CHECK(kb_api_handle(g_db, NULL, NULL, NULL, NULL, 0, NULL, &status, &out) == 0);
    CHECK(status == 400 && out != NULL);
    free(out);
    CHECK(kb_api_handle(g_db, "DELETE", "/templates/api-1", NULL, NULL, 0, "e", &status, &out) ==
          0);
    free(out);
}

static void listing_and_search(void)
{
    char err[256];
    CHECK(kb_import_file(g_db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) == 5);
    CHECK(kb_import_file(g_db, kb_fixture("cases.jsonl"), "t", err, sizeof(err)) == 3);
    cJSON *j = call("GET", "/templates", "limit=2&offset=1", NULL);
    CHECK(j && g_status == 200 && num(j, "total") == 5 && num(j, "offset") == 1);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")) == 2);
    cJSON_Delete(j);
    j = call("GET", "/templates", "category=bank.fee", NULL);
    CHECK(j && g_status == 200 && num(j, "total") == 1);
    cJSON_Delete(j);
    j = call("GET", "/templates", "q=%E9%80%80%E6%AC%BE&_=123", NULL); /* q=退款 */
    CHECK(j && g_status == 200 && num(j, "total") >= 1);
    CHECK(strcmp(str(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "items"), 0), "key"),
                 "refund-001") == 0);
    cJSON_Delete(j);
    j = call("GET", "/templates", "limit=0", NULL);
    CHECK(j && g_status == 400 && strstr(err_msg(j), "limit"));
    cJSON_Delete(j);
    j = call("GET", "/templates", "limit=abc", NULL);
    CHECK(j && g_status == 400);
    cJSON_Delete(j);
    j = call("GET", "/templates", "category=nope", NULL);
    CHECK(j && g_status == 400 && strstr(err_msg(j), "category"));
    cJSON_Delete(j);
    j = call("GET", "/templates", "q=%FF", NULL);
    CHECK(j && g_status == 400);
    cJSON_Delete(j);
    j = call("GET", "/search", "q=%E5%B9%B4%E8%B4%B9+%E6%89%A3%E4%BA%86&limit=3", NULL);
    CHECK(j && g_status == 200); /* q=年费 扣了 */
    CHECK(num(j, "count") >= 1 && num(j, "count") <= 3);
    cJSON *hit = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "hits"), 0);
    CHECK(strcmp(str(hit, "category"), "bank.fee") == 0 && strstr(str(hit, "snippet"), "["));
    CHECK(strlen(str(j, "confidence")) > 0);
    cJSON_Delete(j);
    j = call("GET", "/search", "q=%22%20OR%20*", NULL); /* hostile: " OR * */
    CHECK(j && g_status == 200 && num(j, "count") == 0 &&
          strcmp(str(j, "confidence"), "no_match") == 0);
    cJSON_Delete(j);
    j = call("POST", "/search", NULL, "{}");
    CHECK(j && g_status == 405);
    cJSON_Delete(j);
    j = call("GET", "/categories", NULL, NULL);
    CHECK(j && g_status == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")) == 16);
    cJSON_Delete(j);
    j = call("GET", "/stats", NULL, NULL);
    CHECK(j && g_status == 200 && num(j, "templates") == 5 && num(j, "cases") == 3);
    cJSON_Delete(j);
}

static void case_crud(void)
{
    cJSON *j = call("POST", "/cases", NULL,
                    "{\"key\":\"k-9\",\"summary\":\"航班取消没有通知\",\"category\":"
                    "\"travel.flight\",\"outcome\":\"partial\",\"satisfaction\":3}");
    CHECK(j && g_status == 201 && num(j, "satisfaction") == 3);
    CHECK(strlen(str(j, "date")) == 10); /* defaults to today */
    int id = (int)num(j, "id");
    cJSON_Delete(j);
    char path[64];
    snprintf(path, sizeof(path), "/cases/%d", id);
    j = call("PUT", path, NULL,
             "{\"summary\":\"航班取消没有通知\",\"category\":\"travel.flight\",\"outcome\":"
             "\"resolved\",\"date\":\"2026-01-02\"}");
    CHECK(j && g_status == 200 && strcmp(str(j, "outcome"), "resolved") == 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "satisfaction")));
    cJSON_Delete(j);
    j = call("GET", "/cases", "category=travel.flight", NULL);
    CHECK(j && g_status == 200 && num(j, "total") == 1);
    cJSON_Delete(j);
    j = call("POST", "/cases", NULL,
             "{\"key\":\"k-10\",\"summary\":\"x\",\"category\":"
             "\"general\",\"outcome\":\"maybe\"}");
    CHECK(j && g_status == 400 && strstr(err_msg(j), "outcome"));
    cJSON_Delete(j);
    j = call("DELETE", "/cases/k-9", NULL, NULL);
    CHECK(j && g_status == 200);
    cJSON_Delete(j);
    j = call("GET", path, NULL, NULL);
    CHECK(j && g_status == 404);
    cJSON_Delete(j);
}

int main(void)
{
    g_db = kb_test_db();
    RUN(template_crud);
    RUN(template_errors);
    RUN(listing_and_search);
    RUN(case_crud);
    sqlite3_close(g_db);
    DONE();
}
