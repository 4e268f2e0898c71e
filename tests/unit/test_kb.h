/*
 * test_kb.h - the little harness shared by the kb unit tests (test_kb_*.c).
 *
 * Each test is a void function; CHECK records a failure with file and line and returns from
 * it.  main() calls RUN(test) for each and exits non-zero if any failed, so ctest sees it.
 * Helpers open a fresh in-memory knowledge base and write temporary files.
 */
#ifndef REDRESS_TEST_KB_H
#define REDRESS_TEST_KB_H

#include "kb_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int t_failed, t_total, t_bad;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            t_failed = 1;                                                                          \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            t_failed = 1;                                                                          \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        t_failed = 0;                                                                              \
        fn();                                                                                      \
        t_total++;                                                                                 \
        if (t_failed)                                                                              \
            t_bad++;                                                                               \
        printf("%s %s\n", t_failed ? "FAIL" : "ok  ", #fn);                                        \
    } while (0)

#define DONE()                                                                                     \
    do {                                                                                           \
        kb_set_synonyms_file(NULL, NULL, 0);                                                       \
        printf("%d passed, %d failed\n", t_total - t_bad, t_bad);                                  \
        return t_bad ? 1 : 0;                                                                      \
    } while (0)

/* Path of a fixture in tests/data/kb. */
static inline const char *kb_fixture(const char *name)
{
    static char buf[8][4096];
    static int i;
    char *p = buf[i++ & 7];
    snprintf(p, 4096, "%s/tests/data/kb/%s", REDRESS_SOURCE_DIR, name);
    return p;
}

/* A fresh in-memory knowledge base (tokenizer registered, migrated). */
static inline sqlite3 *kb_test_db(void)
{
    sqlite3 *db = NULL;
    char err[256];
    if (sqlite3_open(":memory:", &db) != SQLITE_OK || kb_register(db) != 0 ||
        kb_migrate(db, err, sizeof(err)) != 0) {
        fprintf(stderr, "kb_test_db: %s\n", db ? sqlite3_errmsg(db) : "open");
        exit(2);
    }
    return db;
}

/* Writes text to a new temporary file; returns its path (static buffer, 4 in rotation). */
static inline const char *kb_temp_file(const char *text)
{
    static char buf[4][64];
    static int i;
    char *p = buf[i++ & 3];
    snprintf(p, 64, "/tmp/test_kb_XXXXXX");
    int fd = mkstemp(p);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        perror("kb_temp_file");
        exit(2);
    }
    close(fd);
    return p;
}

/* Tokens of text as "tok tok|coloc tok" (| marks a colocated token), into out. */
typedef struct tok_buf {
    char s[4096];
    size_t n;
} tok_buf;

static inline int tok_collect(void *ctx, const kb_tok_t *t)
{
    tok_buf *b = ctx;
    int w = snprintf(b->s + b->n, sizeof(b->s) - b->n, "%s%.*s",
                     b->n == 0      ? ""
                     : t->colocated ? "|"
                                    : " ",
                     t->len, t->text);
    if (w > 0 && (size_t)w < sizeof(b->s) - b->n)
        b->n += (size_t)w;
    return 0;
}

static inline const char *tokens_of(const char *text, int query, kb_cjk_mode_t cjk)
{
    static tok_buf b;
    kb_synonyms_t *syn = kb_synonyms_current();
    kb_analyzer_t a = {.cjk = cjk, .query = query, .syn = syn};
    b.n = 0;
    b.s[0] = 0;
    kb_analyze(&a, text, (int)strlen(text), tok_collect, &b);
    kb_synonyms_unref(syn);
    return b.s;
}

#endif
