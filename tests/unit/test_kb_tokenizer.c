/*
 * test_kb_tokenizer.c - the "redress" analyzer and FTS5 tokenizer: CJK characters and bigrams,
 * mixed scripts, folding, hostile bytes, offsets, query mode, and matching through FTS5.
 */
#include "test_kb.h"

#define EQ(got, want) CHECK_MSG(strcmp((got), (want)) == 0, "got \"%s\", want \"%s\"", got, want)

static void two_character_words(void)
{
    EQ(tokens_of("退款", 0, KB_CJK_UNIBI), "退|退款 款");
    EQ(tokens_of("扣费", 1, KB_CJK_UNIBI), "扣费");
    EQ(tokens_of("我要退款", 0, KB_CJK_UNIBI), "我|我要 要|要退 退|退款 款");
    EQ(tokens_of("钱", 0, KB_CJK_UNIBI), "钱");
    EQ(tokens_of("钱", 1, KB_CJK_UNIBI), "钱");
}

static void other_cjk_modes(void)
{
    EQ(tokens_of("我要退款", 0, KB_CJK_UNI), "我 要 退 款");
    EQ(tokens_of("我要退款", 0, KB_CJK_BI), "我要 要退 退款");
    EQ(tokens_of("钱", 0, KB_CJK_BI), "钱");
    EQ(tokens_of("我要退款", 1, KB_CJK_UNIBI), "我要 要退 退款");
}

static void mixed_scripts_and_digits(void)
{
    EQ(tokens_of("iPhone13退款99元", 0, KB_CJK_UNIBI), "iphone|iphone13 13 退|退款 款 99 元");
    EQ(tokens_of("iPhone13", 1, KB_CJK_UNIBI), "iphone13");
    EQ(tokens_of("订单号 20260301 未到", 0, KB_CJK_UNIBI),
       "订|订单 单|单号 号 20260301 未|未到 到");
    EQ(tokens_of("5G信号", 0, KB_CJK_UNIBI), "5|5g g 信|信号 号");
    EQ(tokens_of("e.g. 3.5", 0, KB_CJK_UNIBI), "e g 3 5");
}

static void full_width_and_case(void)
{
    EQ(tokens_of("ＡＢＣ１２３", 0, KB_CJK_UNIBI), "abc|abc123 123");
    EQ(tokens_of("ＷｉＦｉ", 0, KB_CJK_UNIBI), "wifi");
    EQ(tokens_of("WIFI wifi WiFi", 0, KB_CJK_UNIBI), "wifi wifi wifi");
    EQ(tokens_of("ÉCOLE Straße", 0, KB_CJK_UNIBI), "école straße");
    EQ(tokens_of("ПРИВЕТ ΑΒΓ", 0, KB_CJK_UNIBI), "привет αβγ");
    EQ(tokens_of("退款，谢谢！", 0, KB_CJK_UNIBI), "退|退款 款 谢|谢谢 谢");
    EQ(tokens_of("退款　谢谢", 0, KB_CJK_UNIBI), "退|退款 款 谢|谢谢 谢"); /* U+3000 */
}

static void emoji_controls_and_bad_bytes(void)
{
    EQ(tokens_of("😀退款🎉", 0, KB_CJK_UNIBI), "退|退款 款");
    EQ(tokens_of("退😀款", 0, KB_CJK_UNIBI), "退 款");
    EQ(tokens_of("\x01\x02\x1b[31m退\x7f", 0, KB_CJK_UNIBI), "31|31m m 退");
    EQ(tokens_of("\xff\xfe\xc0\xaf退\xe9\x80", 0, KB_CJK_UNIBI), "退");
    EQ(tokens_of("\xed\xa0\x80", 0, KB_CJK_UNIBI), ""); /* a UTF-16 surrogate */
    EQ(tokens_of("👨‍👩‍👧 ❤️", 0, KB_CJK_UNIBI), "");
}

static void empty_and_punctuation(void)
{
    EQ(tokens_of("", 0, KB_CJK_UNIBI), "");
    EQ(tokens_of("？！。，、“”《》【】", 0, KB_CJK_UNIBI), "");
    EQ(tokens_of("\"*-:()^+", 0, KB_CJK_UNIBI), "");
    EQ(tokens_of("   \t\n", 1, KB_CJK_UNIBI), "");
}

static void kana_and_hangul(void)
{
    EQ(tokens_of("カード", 0, KB_CJK_UNIBI), "カ|カー ー|ード ド");
    EQ(tokens_of("환불 요청", 0, KB_CJK_UNIBI), "환불 요청");
}

static void long_words_are_cut(void)
{
    char s[300];
    memset(s, 'a', 299);
    s[299] = 0;
    const char *t = tokens_of(s, 0, KB_CJK_UNIBI);
    CHECK(strlen(t) == KB_TOKEN_MAX);
    /* cut at a character edge: 22 x "é" (2 bytes) = 44 bytes + 22 x "é" beyond */
    char u[200] = "";
    for (int i = 0; i < 40; i++)
        strcat(u, "é");
    t = tokens_of(u, 0, KB_CJK_UNIBI);
    CHECK(strlen(t) == 64 && kb_utf8_valid(t, strlen(t)));
}

typedef struct offs {
    int n;
    int start[16], end[16];
} offs;

static int collect_offsets(void *ctx, const kb_tok_t *t)
{
    offs *o = ctx;
    if (o->n < 16) {
        o->start[o->n] = t->start;
        o->end[o->n] = t->end;
        o->n++;
    }
    return 0;
}

static void offsets_are_bytes_of_the_source(void)
{
    const char *text = "😀Ａ退款";
    offs o = {0, {0}, {0}};
    kb_analyzer_t a = {.cjk = KB_CJK_UNIBI, .query = 0, .syn = NULL};
    kb_analyze(&a, text, (int)strlen(text), collect_offsets, &o);
    CHECK(o.n == 4);                          /* a, 退, 退款, 款 */
    CHECK(o.start[0] == 4 && o.end[0] == 7);  /* the full-width Ａ */
    CHECK(o.start[1] == 7 && o.end[1] == 10); /* 退 */
    CHECK(o.start[2] == 7 && o.end[2] == 13); /* 退款 */
    CHECK(o.start[3] == 10 && o.end[3] == 13);
}

static int count_rows(sqlite3 *db, const char *match)
{
    sqlite3_stmt *st;
    int n = 0;
    if (sqlite3_prepare_v2(db, "SELECT rowid FROM t WHERE t MATCH ?1", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW)
        n++;
    sqlite3_finalize(st);
    return n;
}

static void fts5_matches_two_character_words(void)
{
    sqlite3 *db;
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
    CHECK(kb_register(db) == 0);
    CHECK(kb_exec(db, "CREATE VIRTUAL TABLE t USING fts5(x, tokenize='redress')") == 0);
    CHECK(kb_exec(db, "INSERT INTO t(rowid, x) VALUES (1, '我的银行卡被误扣费了'), "
                      "(2, '申请退款要多久'), (3, 'WiFi密码忘了'), (4, '款式不对')") == 0);
    CHECK(count_rows(db, "\"扣费\"") == 1);
    CHECK(count_rows(db, "\"退款\"") == 1);
    CHECK(count_rows(db, "\"款\"") == 2);   /* the character alone is indexed too */
    CHECK(count_rows(db, "\"wifi\"") == 1); /* case-folded */
    CHECK(count_rows(db, "\"ＷＩＦＩ\"") == 1);
    CHECK(count_rows(db, "\"误扣费\"") == 1); /* three characters: a phrase of bigrams */
    CHECK(count_rows(db, "\"费误\"") == 0);
    sqlite3_close(db);
}

static void fts5_rejects_unknown_options(void)
{
    sqlite3 *db;
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
    CHECK(kb_register(db) == 0);
    CHECK(kb_exec(db, "CREATE VIRTUAL TABLE t USING fts5(x, tokenize='redress bi nosynonyms')") ==
          0);
    CHECK(kb_exec(db, "CREATE VIRTUAL TABLE u USING fts5(x, tokenize='redress bogus')") != 0);
    sqlite3_close(db);
}

static void utf8_helpers(void)
{
    CHECK(kb_utf8_valid("退款abc", strlen("退款abc")));
    CHECK(!kb_utf8_valid("\xff", 1));
    CHECK(!kb_utf8_valid("a\0b", 3));
    CHECK(kb_utf8_valid("\xef\xbf\xbd", 3)); /* a real U+FFFD is fine */
    CHECK(kb_utf8_chars("退款ab") == 4);
}

int main(void)
{
    RUN(two_character_words);
    RUN(other_cjk_modes);
    RUN(mixed_scripts_and_digits);
    RUN(full_width_and_case);
    RUN(emoji_controls_and_bad_bytes);
    RUN(empty_and_punctuation);
    RUN(kana_and_hangul);
    RUN(long_words_are_cut);
    RUN(offsets_are_bytes_of_the_source);
    RUN(fts5_matches_two_character_words);
    RUN(fts5_rejects_unknown_options);
    RUN(utf8_helpers);
    DONE();
}
