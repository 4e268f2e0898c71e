/*
 * test_kb_query.c - customer text never reaches FTS5 syntax: hostile strings, FTS5 operators,
 * emoji, control characters, invalid UTF-8 and thousands of random strings all give a correct
 * search or an empty result, never an error.
 */
#include "test_kb.h"

static sqlite3 *g_db;

/* Searches and checks the result's invariants.  Returns the hit count or -1. */
static int search_ok(const char *text, const char *category, int limit)
{
    kb_result_t *r = NULL;
    int rc = kb_search(g_db, text, category, limit, &r);
    if (rc != 0 || r == NULL) {
        fprintf(stderr, "kb_search(\"%s\") = %d: %s\n", text ? text : "(null)", rc,
                sqlite3_errmsg(g_db));
        return -1;
    }
    int n = r->count, bad = 0;
    int cap = limit < 1 ? 1 : limit > 50 ? 50 : limit;
    if (n < 0 || n > cap)
        bad = 1;
    for (int i = 0; i < n && !bad; i++) {
        const kb_hit_t *h = &r->hits[i];
        if (!h->title || !h->snippet || !h->text || !h->key || !h->category || h->coverage < 0 ||
            h->coverage > 1.0001 || (i > 0 && h->score > r->hits[i - 1].score) ||
            !kb_utf8_valid(h->snippet, strlen(h->snippet)))
            bad = 1;
    }
    if (n == 0 && r->confidence != KB_NO_MATCH)
        bad = 1;
    kb_result_free(r);
    if (bad) {
        fprintf(stderr, "kb_search(\"%s\"): inconsistent result\n", text);
        return -1;
    }
    return n;
}

static const char *const hostile[] = {
    "\"",
    "\"\"\"",
    "退款\"",
    "\"退款",
    "退款\" OR \"x",
    "*",
    "退*",
    "-退款",
    "退款 -扣费",
    "title:退款",
    "{title text}: 退款",
    "- : * ^ + ( ) { } [ ]",
    "NEAR(退款 扣费, 2)",
    "NEAR",
    "AND",
    "OR",
    "NOT",
    "退款 AND 扣费 OR NOT 年费",
    "(((((((((((退款",
    ")))))",
    "^退款",
    "退款 + 扣费",
    "'; DROP TABLE kb_templates; --",
    "\"); DELETE FROM kb_cases; --",
    "%_\\",
    "😀😀😀",
    "退款😀",
    "\x01\x02\x03\x1b[0m",
    "\xff\xfe\xfd",
    "\xe9\x80",
    "\xed\xa0\x80",
    "~退款",
    "~",
    "~~~~",
    "",
    " ",
    "\t\n\r",
    "ｏｒ ＡＮＤ ＮＯＴ",
    "退款 退款 退款 退款 退款 退款 退款 退款 退款 退款 退款 退款 退款 退款 退款 退款",
};

static void fixture(void)
{
    char err[256];
    if (kb_import_file(g_db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) < 0 ||
        kb_import_file(g_db, kb_fixture("cases.jsonl"), "t", err, sizeof(err)) < 0) {
        fprintf(stderr, "fixture: %s\n", err);
        exit(2);
    }
}

static void hostile_strings_never_fail(void)
{
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++)
        CHECK_MSG(search_ok(hostile[i], NULL, 10) >= 0, "string %zu", i);
    CHECK(search_ok(NULL, NULL, 10) == 0);
}

static void hostile_strings_still_search(void)
{
    CHECK(search_ok("退款\"", NULL, 10) > 0);
    CHECK(search_ok("\"退款", NULL, 10) > 0);
    CHECK(search_ok("NEAR(退款 扣费, 2)", NULL, 10) > 0);
    CHECK(search_ok("title:退款", NULL, 10) > 0);
    CHECK(search_ok("'; DROP TABLE kb_templates; --", NULL, 10) >= 0);
    CHECK(kb_template_count(g_db) == 5); /* nothing was dropped */
    CHECK(search_ok("😀😀😀", NULL, 10) == 0);
    CHECK(search_ok("", NULL, 10) == 0);
    CHECK(search_ok("~退款", NULL, 10) >= 0);
}

static void odd_categories_and_limits(void)
{
    CHECK(search_ok("退款", "no.such", 10) == 0);
    CHECK(search_ok("退款", "\" OR 1", 10) == 0);
    CHECK(search_ok("退款", "", 10) > 0); /* "" = all */
    CHECK(search_ok("退款", "ecom.refund", 10) > 0);
    CHECK(search_ok("退款", "travel.hotel", 10) == 0);
    CHECK(search_ok("退款", NULL, 0) == 1);
    CHECK(search_ok("退款", NULL, -5) == 1);
    CHECK(search_ok("年费", NULL, 1000) >= 1);
}

static unsigned rng = 12345;
static unsigned next_rand(void)
{
    rng = rng * 1103515245u + 12345u;
    return (rng >> 8) & 0xFFFFFF;
}

static void random_strings(void)
{
    static const char *const pieces[] = {
        "\"",   "*",    "-",      ":",   "(",        ")",    "{",      "}",    "^",    "+",
        "NEAR", "AND",  "OR",     "NOT", " ",        "退款", "扣费",   "年费", "快递", "没收到",
        "信号", "WiFi", "ＡＢＣ", "😀",   "\xf0\x9f", "\xff", "\x01",   "\n",   "~",    "'",
        ";",    "\\",   "%",      "0",   "123",      "é",    "カード", "，",   "。"};
    char buf[512];
    for (int i = 0; i < 3000; i++) {
        size_t len = 0;
        int n = (int)(next_rand() % 24);
        for (int k = 0; k < n; k++) {
            if (next_rand() % 5 == 0) { /* raw random bytes */
                int m = (int)(next_rand() % 6);
                for (int j = 0; j < m && len < sizeof(buf) - 1; j++)
                    buf[len++] = (char)(1 + next_rand() % 255);
            } else {
                const char *p = pieces[next_rand() % (sizeof(pieces) / sizeof(pieces[0]))];
                size_t l = strlen(p);
                if (len + l < sizeof(buf) - 1) {
                    memcpy(buf + len, p, l);
                    len += l;
                }
            }
        }
        buf[len] = 0;
        CHECK_MSG(search_ok(buf, (i % 7 == 0) ? "bank.fee" : NULL, 1 + i % 12) >= 0,
                  "random string %d", i);
    }
}

static void very_long_text_is_capped(void)
{
    size_t n = 200000;
    char *s = malloc(n + 1);
    CHECK(s != NULL);
    for (size_t i = 0; i + 6 <= n; i += 6)
        memcpy(s + i, "退款", 6);
    s[n - n % 6] = 0;
    int hits = search_ok(s, NULL, 10);
    free(s);
    CHECK(hits > 0);
}

int main(void)
{
    g_db = kb_test_db();
    fixture();
    RUN(hostile_strings_never_fail);
    RUN(hostile_strings_still_search);
    RUN(odd_categories_and_limits);
    RUN(random_strings);
    RUN(very_long_text_is_capped);
    sqlite3_close(g_db);
    DONE();
}
