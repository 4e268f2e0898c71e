/*
 * test_webhook.c - the webhook sender's pure parts and its outbox (server/webhook.c).
 *
 *   signatures   HMAC-SHA256 against RFC 4231 vectors and a value computed by Python's hmac
 *   backoff      1, 2, 4, ... s, capped at WEBHOOK_BACKOFF_CAP_S
 *   URLs         what webhook_url_parse() accepts and refuses, with its messages
 *   events       event lists and secrets as the CLI checks them
 *   migrate      the tables on a real SQLite file: idempotent, refuses a newer schema
 *   emit         a real store (writer thread, batches): one outbox row per enabled subscribed
 *                endpoint, the body's fields, refused input; the reads use indexes
 *
 * Delivery over HTTP is covered end to end by tests/e2e/test_webhook.py.
 */
#include "check.h"

#include "config.h"
#include "test_scratch.h"
#include "server.h"
#include "store.h"
#include "util.h"
#include "webhook.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- signatures ---- */

static void test_hmac(void)
{
    char key[131], out[65];

    /* RFC 4231 test case 1 */
    memset(key, 0x0b, 20);
    CHECK(webhook_hmac_hex(key, 20, "Hi There", 8, out) == 0);
    CHECK(strcmp(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7") == 0);
    /* test case 2: a key shorter than the hash */
    CHECK(webhook_hmac_hex("Jefe", 4, "what do ya want for nothing?", 28, out) == 0);
    CHECK(strcmp(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843") == 0);
    /* test case 6: a key longer than the block */
    memset(key, 0xaa, sizeof(key));
    const char *msg = "Test Using Larger Than Block-Size Key - Hash Key First";
    CHECK(webhook_hmac_hex(key, sizeof(key), msg, strlen(msg), out) == 0);
    CHECK(strcmp(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54") == 0);
}

static void test_signature(void)
{
    const char *secret = "whsec-test-0123456789";
    const char *body = "{\"id\":\"x\",\"event\":\"complaint.created\"}";
    char sig[WEBHOOK_SIG_MAX], other[WEBHOOK_SIG_MAX], mac[65], msg[128];

    /* Python: hmac.new(secret, b"1795000000." + body, sha256).hexdigest() */
    CHECK(webhook_signature(secret, 1795000000LL, body, strlen(body), sig, sizeof(sig)) == 0);
    CHECK(strcmp(sig, "t=1795000000,v1=e7ce8026b8d2ad1c5432bdefe5de597cad1389b8457d51ed43a3c57cd0"
                      "ee6676") == 0);
    /* the same as the HMAC of "t.body" */
    snprintf(msg, sizeof(msg), "%lld.%s", 1795000000LL, body);
    CHECK(webhook_hmac_hex(secret, strlen(secret), msg, strlen(msg), mac) == 0);
    CHECK(strcmp(sig + strlen("t=1795000000,v1="), mac) == 0);
    /* another time, another body, another secret: another signature */
    CHECK(webhook_signature(secret, 1795000001LL, body, strlen(body), other, sizeof(other)) == 0);
    CHECK(strcmp(sig + 16, other + 16) != 0);
    CHECK(webhook_signature(secret, 1795000000LL, body, strlen(body) - 1, other, sizeof(other)) ==
          0);
    CHECK(strcmp(sig, other) != 0);
    CHECK(webhook_signature("whsec-test-0123456780", 1795000000LL, body, strlen(body), other,
                            sizeof(other)) == 0);
    CHECK(strcmp(sig, other) != 0);
    /* too small a buffer */
    CHECK(webhook_signature(secret, 1795000000LL, body, strlen(body), other, 20) == -1);
}

/* ---- backoff ---- */

static void test_backoff(void)
{
    CHECK(webhook_backoff_s(1) == 1);
    CHECK(webhook_backoff_s(2) == 2);
    CHECK(webhook_backoff_s(3) == 4);
    CHECK(webhook_backoff_s(4) == 8);
    CHECK(webhook_backoff_s(9) == 256);
    CHECK(webhook_backoff_s(10) == 512);
    CHECK(webhook_backoff_s(12) == 2048);
    CHECK(webhook_backoff_s(13) == WEBHOOK_BACKOFF_CAP_S); /* 4096 capped */
    CHECK(webhook_backoff_s(31) == WEBHOOK_BACKOFF_CAP_S);
    CHECK(webhook_backoff_s(1000000) == WEBHOOK_BACKOFF_CAP_S);
    CHECK(webhook_backoff_s(0) == 1);
    CHECK(webhook_backoff_s(-5) == 1);
    /* the whole schedule of one delivery: 9 waits between 10 attempts, about 17 minutes */
    double total = 0;
    for (int a = 1; a < WEBHOOK_MAX_ATTEMPTS; a++)
        total += webhook_backoff_s(a);
    CHECK(total == 511);
}

/* ---- URLs ---- */

static int url_ok(const char *url, webhook_url_t *u)
{
    char err[256] = "";
    int rc = webhook_url_parse(url, u, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "  (unexpected) %s: %s\n", url, err);
    return rc == 0;
}

/* 1 when url is refused with a message containing want. */
static int url_bad(const char *url, const char *want)
{
    webhook_url_t u;
    char err[256] = "";
    if (webhook_url_parse(url, &u, err, sizeof(err)) == 0) {
        fprintf(stderr, "  (unexpected) accepted: %s\n", url);
        return 0;
    }
    if (!strstr(err, want)) {
        fprintf(stderr, "  %s: \"%s\" does not say \"%s\"\n", url, err, want);
        return 0;
    }
    return 1;
}

static void test_url(void)
{
    webhook_url_t u;
    char longurl[WEBHOOK_URL_MAX + 32];

    CHECK(url_ok("http://127.0.0.1:8080/hook", &u));
    CHECK(!u.tls && !u.ipv6 && strcmp(u.host, "127.0.0.1") == 0 && u.port == 8080 &&
          strcmp(u.path, "/hook") == 0);
    CHECK(url_ok("https://Hooks.Example.COM", &u));
    CHECK(u.tls && strcmp(u.host, "hooks.example.com") == 0 && u.port == 443 &&
          strcmp(u.path, "/") == 0);
    CHECK(url_ok("HTTP://example.com?x=1&y=%20", &u));
    CHECK(!u.tls && u.port == 80 && strcmp(u.path, "/?x=1&y=%20") == 0);
    CHECK(url_ok("http://[::1]:9000/a/b?c", &u));
    CHECK(u.ipv6 && strcmp(u.host, "::1") == 0 && u.port == 9000 && strcmp(u.path, "/a/b?c") == 0);
    CHECK(url_ok("https://crm.internal_net:65535/", &u));
    CHECK(u.port == 65535 && strcmp(u.host, "crm.internal_net") == 0);
    CHECK(url_ok("http://localhost:1/x", &u));
    CHECK(u.port == 1);

    CHECK(url_bad("", "empty"));
    CHECK(url_bad("ftp://example.com/", "only http:// and https://"));
    CHECK(url_bad("example.com/hook", "only http:// and https://"));
    CHECK(url_bad("javascript:alert(1)", "only http:// and https://"));
    CHECK(url_bad("http://", "no host"));
    CHECK(url_bad("http:///path", "no host"));
    CHECK(url_bad("http://:8080/", "no host"));
    CHECK(url_bad("http://host:0/", "out of range"));
    CHECK(url_bad("http://host:65536/", "out of range"));
    CHECK(url_bad("http://host:/", "bad port"));
    CHECK(url_bad("http://host:80a/", "bad port"));
    CHECK(url_bad("http://host:123456/", "bad port"));
    CHECK(url_bad("http://user:pw@host/", "passwords"));
    CHECK(url_bad("http://host/a b", "space"));
    CHECK(url_bad("http://host/\x01", "control"));
    CHECK(url_bad("http://h\xc3\xa9.com/", "non-ASCII"));
    CHECK(url_bad("http://host/#frag", "fragment"));
    CHECK(url_bad("http://host#frag", "fragment"));
    CHECK(url_bad("http://[::1/", "closing ]"));
    CHECK(url_bad("http://[zz::1]/", "bad IPv6"));
    CHECK(url_bad("http://[]/", "bad IPv6"));
    CHECK(url_bad("http://[::1]x/", "bad port"));
    CHECK(url_bad("http://-bad.com/", "bad host name"));
    CHECK(url_bad("http://a..b/", "bad host name"));
    CHECK(url_bad("http://.a.b/", "bad host name"));
    CHECK(url_bad("http://a.b!/", "bad host name"));
    memset(longurl, 'a', sizeof(longurl));
    memcpy(longurl, "http://h/", 9);
    longurl[sizeof(longurl) - 1] = '\0';
    CHECK(url_bad(longurl, "longer than"));
}

/* ---- events and secrets ---- */

static int events_are(const char *list, const char *want)
{
    char out[256], err[256] = "";
    if (webhook_events_parse(list, out, sizeof(out), err, sizeof(err)) != 0) {
        fprintf(stderr, "  (unexpected) %s: %s\n", list, err);
        return 0;
    }
    if (strcmp(out, want) != 0) {
        fprintf(stderr, "  %s -> \"%s\", want \"%s\"\n", list, out, want);
        return 0;
    }
    return 1;
}

static int events_bad(const char *list, const char *want)
{
    char out[256], err[256] = "";
    if (webhook_events_parse(list, out, sizeof(out), err, sizeof(err)) == 0) {
        fprintf(stderr, "  (unexpected) accepted: %s\n", list);
        return 0;
    }
    return strstr(err, want) != NULL;
}

static void test_events(void)
{
    CHECK(events_are("*", "*"));
    CHECK(events_are(" * ", "*"));
    CHECK(events_are("complaint.created", "complaint.created"));
    CHECK(events_are("complaint.created, sla.breached", "complaint.created,sla.breached"));
    CHECK(events_are("sla.breached,complaint.resolved,sla.breached",
                     "sla.breached,complaint.resolved"));
    CHECK(events_are("complaint.created,complaint.escalated,complaint.resolved,sla.breached",
                     "complaint.created,complaint.escalated,complaint.resolved,sla.breached"));
    CHECK(events_bad("", "no events"));
    CHECK(events_bad("  ", "no events"));
    CHECK(events_bad("complaint.created,*", "cannot be combined"));
    CHECK(events_bad("*,sla.breached", "cannot be combined"));
    CHECK(events_bad("complaint.opened", "unknown event \"complaint.opened\""));
    CHECK(events_bad("Complaint.Created", "unknown event"));
    CHECK(events_bad("complaint.created,,sla.breached", "empty event name"));
    CHECK(events_bad("complaint.created,", "empty event name"));

    for (int i = 0; webhook_events[i]; i++)
        CHECK(webhook_event_valid(webhook_events[i]));
    CHECK(!webhook_event_valid("complaint"));
    CHECK(!webhook_event_valid(NULL));

    char err[256];
    CHECK(webhook_secret_check("0123456789abcdef", err, sizeof(err)) == 0);
    CHECK(webhook_secret_check("0123456789abcde", err, sizeof(err)) == -1);
    CHECK(strstr(err, "16 to 256") != NULL);
    CHECK(webhook_secret_check("0123456789 abcdef", err, sizeof(err)) == -1);
    CHECK(webhook_secret_check(NULL, err, sizeof(err)) == -1);
    char longs[300];
    memset(longs, 'k', sizeof(longs));
    longs[256] = '\0';
    CHECK(webhook_secret_check(longs, err, sizeof(err)) == 0);
    longs[256] = 'k';
    longs[257] = '\0';
    CHECK(webhook_secret_check(longs, err, sizeof(err)) == -1);
}

/* ---- the tables ---- */

static void test_migrate(void)
{
    char path[256], err[512] = "";
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    snprintf(path, sizeof(path), "%s/migrate.db", tmpdir);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(webhook_migrate(db, err, sizeof(err)) == 0);
    CHECK(webhook_migrate(db, err, sizeof(err)) == 0); /* idempotent */
    CHECK(sqlite3_prepare_v2(db, "SELECT value FROM webhook_meta WHERE name = 'schema_version'", -1,
                             &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK(strcmp((const char *)sqlite3_column_text(st, 0), "1") == 0);
    sqlite3_finalize(st);
    /* inside an open transaction it uses a savepoint */
    CHECK(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(webhook_migrate(db, err, sizeof(err)) == 0);
    CHECK(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    /* the state check */
    CHECK(sqlite3_exec(db,
                       "INSERT INTO webhook_outbox(endpoint_id, event, body, next_at, state,"
                       " created_at) VALUES (1, 'sla.breached', '{}', 0, 'lost', 0)",
                       NULL, NULL, NULL) != SQLITE_OK);
    /* a newer schema is refused and left alone */
    CHECK(sqlite3_exec(db, "UPDATE webhook_meta SET value = '99'", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(webhook_migrate(db, err, sizeof(err)) == -1);
    CHECK(strstr(err, "newer") != NULL);
    CHECK(sqlite3_exec(db, "UPDATE webhook_meta SET value = 'x'", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(webhook_migrate(db, err, sizeof(err)) == -1);
    CHECK(strstr(err, "bad schema_version") != NULL);
    CHECK(sqlite3_get_autocommit(db)); /* rolled back */
    sqlite3_close(db);
}

/* ---- emit through a real store ---- */

typedef struct rig {
    server_t srv;
    config_t cfg;
    webhook_t *w;
} rig;

typedef struct waiter {
    int calls, rc;
} waiter;

static void on_done(void *arg, int rc)
{
    waiter *w = arg;
    w->calls++;
    w->rc = rc;
}

static int work_nop(store_tx_t *tx, void *arg)
{
    (void)tx;
    (void)arg;
    return 0;
}

/* Waits until every operation queued so far has committed. */
static void barrier(rig *r)
{
    waiter w = {0};
    CHECK(store_submit(r->srv.store, work_nop, on_done, &w) == 0);
    while (w.calls < 1)
        uv_run(&r->srv.loop, UV_RUN_ONCE);
}

static int init_conn(sqlite3 *db, int is_writer, void *arg, char *err, size_t errlen)
{
    (void)arg;
    return is_writer ? webhook_migrate(db, err, errlen) : 0;
}

/* Endpoints as the CLI writes them: (url, secret, events, enabled). */
static int add_endpoints(const char *dbpath)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open(dbpath, &db) == SQLITE_OK &&
                     sqlite3_exec(db,
                                  "INSERT INTO webhook_endpoints(url, secret, events, enabled,"
                                  " created_at) VALUES"
                                  " ('http://127.0.0.1:9/all', 'secret-all-0123456', '*', 1, 0),"
                                  " ('http://127.0.0.1:9/esc', 'secret-esc-0123456',"
                                  "  'complaint.escalated', 1, 0),"
                                  " ('http://127.0.0.1:9/off', 'secret-off-0123456', '*', 0, 0),"
                                  " ('http://127.0.0.1:9/two', 'secret-two-0123456',"
                                  "  'sla.breached,complaint.created', 1, 0)",
                                  NULL, NULL, NULL) == SQLITE_OK
                 ? 0
                 : -1;
    sqlite3_close(db);
    return rc;
}

static int rig_open(rig *r, const char *name)
{
    char dir[256], dbpath[300], err[512] = "";

    memset(r, 0, sizeof(*r));
    if (scratch_config(&r->cfg, name, dir, sizeof(dir), err, sizeof(err)) != 0 ||
        uv_loop_init(&r->srv.loop) != 0)
        goto fail;
    r->srv.cfg = &r->cfg;
    if (store_open(&r->srv.store, &r->srv.loop, &r->cfg, init_conn, NULL, err, sizeof(err)) != 0)
        goto fail;
    snprintf(dbpath, sizeof(dbpath), "%s/redress.db", dir);
    if (add_endpoints(dbpath) != 0) {
        snprintf(err, sizeof(err), "cannot add endpoints");
        goto fail;
    }
    if (webhook_new(&r->w, &r->srv, err, sizeof(err)) != 0)
        goto fail;
    return 0;
fail:
    fprintf(stderr, "rig: %s\n", err);
    return -1;
}

static void rig_close(rig *r)
{
    webhook_close_store(r->w);
    if (r->srv.store)
        store_close(r->srv.store);
    uv_run(&r->srv.loop, UV_RUN_DEFAULT);
    webhook_free(r->w);
    CHECK(uv_loop_close(&r->srv.loop) == 0);
    config_free(&r->cfg);
}

typedef struct row {
    long long endpoint;
    char event[32], state[16];
    int attempts;
    cJSON *body;
} row;

/* The outbox rows (at most max) in id order; returns how many.  Frees nothing: call
 * free_rows. */
static int read_rows(rig *r, row *rows, int max)
{
    sqlite3_stmt *st = NULL;
    int n = 0;
    CHECK(sqlite3_prepare_v2(store_reader(r->srv.store),
                             "SELECT endpoint_id, event, state, attempts, body FROM webhook_outbox"
                             " ORDER BY id",
                             -1, &st, NULL) == SQLITE_OK);
    while (st && sqlite3_step(st) == SQLITE_ROW && n < max) {
        rows[n].endpoint = sqlite3_column_int64(st, 0);
        snprintf(rows[n].event, sizeof(rows[n].event), "%s", sqlite3_column_text(st, 1));
        snprintf(rows[n].state, sizeof(rows[n].state), "%s", sqlite3_column_text(st, 2));
        rows[n].attempts = sqlite3_column_int(st, 3);
        rows[n].body = cJSON_Parse((const char *)sqlite3_column_text(st, 4));
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

static void free_rows(row *rows, int n)
{
    for (int i = 0; i < n; i++)
        cJSON_Delete(rows[i].body);
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int is_uuid4(const char *s)
{
    if (strlen(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' ||
        s[14] != '4' || !strchr("89ab", s[19]))
        return 0;
    for (int i = 0; i < 36; i++)
        if (s[i] != '-' && !strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

static void test_emit(void)
{
    rig r;
    row rows[8];
    int n;
    const char *complaint = "{\"number\":\"TS20261118-000012\",\"status\":\"received\","
                            "\"severity\":2,\"breached\":[],\"escalated\":true}";

    if (rig_open(&r, "emit") != 0) {
        CHECK(0);
        return;
    }
    CHECK(webhook_emit(r.w, "complaint.escalated", complaint) == 0);
    barrier(&r);
    n = read_rows(&r, rows, 8);
    CHECK(n == 2); /* '*' and 'complaint.escalated'; not the disabled one nor 'two' */
    if (n == 2) {
        CHECK(rows[0].endpoint == 1 && rows[1].endpoint == 2);
        for (int i = 0; i < 2; i++) {
            CHECK(strcmp(rows[i].event, "complaint.escalated") == 0);
            CHECK(strcmp(rows[i].state, "pending") == 0 && rows[i].attempts == 0);
            CHECK(rows[i].body != NULL);
            CHECK(strcmp(str(rows[i].body, "event"), "complaint.escalated") == 0);
            CHECK(is_uuid4(str(rows[i].body, "id")));
            CHECK(strlen(str(rows[i].body, "created_at")) == 24);
            cJSON *c = cJSON_GetObjectItemCaseSensitive(rows[i].body, "complaint");
            CHECK(cJSON_IsObject(c));
            CHECK(strcmp(str(c, "number"), "TS20261118-000012") == 0);
            CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "escalated")));
            CHECK(cJSON_GetArraySize(rows[0].body) == 4);
        }
        /* one event, one id, the same body for every endpoint */
        CHECK(strcmp(str(rows[0].body, "id"), str(rows[1].body, "id")) == 0);
    }
    free_rows(rows, n);

    CHECK(webhook_emit(r.w, "sla.breached", complaint) == 0);
    CHECK(webhook_emit(r.w, "complaint.resolved", complaint) == 0);
    barrier(&r);
    n = read_rows(&r, rows, 8);
    CHECK(n == 5);
    if (n == 5) {
        CHECK(rows[2].endpoint == 1 && strcmp(rows[2].event, "sla.breached") == 0);
        CHECK(rows[3].endpoint == 4 && strcmp(rows[3].event, "sla.breached") == 0);
        CHECK(rows[4].endpoint == 1 && strcmp(rows[4].event, "complaint.resolved") == 0);
        CHECK(strcmp(str(rows[0].body, "id"), str(rows[2].body, "id")) != 0);
    }
    free_rows(rows, n);

    /* refused: nothing queued */
    CHECK(webhook_emit(r.w, "complaint.opened", complaint) == -1);
    CHECK(webhook_emit(r.w, NULL, complaint) == -1);
    CHECK(webhook_emit(r.w, "sla.breached", "[1,2]") == -1);
    CHECK(webhook_emit(r.w, "sla.breached", "{\"a\":") == -1);
    CHECK(webhook_emit(r.w, "sla.breached", NULL) == -1);
    CHECK(webhook_emit(NULL, "sla.breached", complaint) == 0); /* no sender: nothing to do */
    barrier(&r);
    n = read_rows(&r, rows, 8);
    CHECK(n == 5);
    free_rows(rows, n);

    /* without an lws context the tick starts nothing and changes nothing */
    webhook_tick(r.w);
    barrier(&r);
    n = read_rows(&r, rows, 8);
    CHECK(n == 5 && strcmp(rows[0].state, "pending") == 0 && rows[0].attempts == 0);
    free_rows(rows, n);

    /* every read the sender prepared uses an index, except the small endpoints table */
    sqlite3 *db = store_reader(r.srv.store);
    int stmts = 0;
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st)) {
        char *sql = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sqlite3_sql(st));
        sqlite3_stmt *plan = NULL;
        CHECK(sqlite3_prepare_v2(db, sql, -1, &plan, NULL) == SQLITE_OK);
        while (plan && sqlite3_step(plan) == SQLITE_ROW) {
            const char *d = (const char *)sqlite3_column_text(plan, 3);
            int scan = strncmp(d, "SCAN ", 5) == 0 && strcmp(d, "SCAN webhook_endpoints") != 0;
            if (scan)
                fprintf(stderr, "full scan: %s\n  in: %s\n", d, sqlite3_sql(st));
            CHECK(!scan);
        }
        sqlite3_finalize(plan);
        sqlite3_free(sql);
        stmts++;
    }
    CHECK(stmts >= 3);

    /* after close_store emits fail */
    webhook_close_store(r.w);
    CHECK(webhook_emit(r.w, "sla.breached", complaint) == -1);
    rig_close(&r);
}

int main(void)
{
    if (sodium_init() < 0 || scratch_make() != 0) {
        perror("setup");
        return 1;
    }
    RUN(test_hmac);
    RUN(test_signature);
    RUN(test_backoff);
    RUN(test_url);
    RUN(test_events);
    RUN(test_migrate);
    RUN(test_emit);
    scratch_remove();
    return check_summary();
}
