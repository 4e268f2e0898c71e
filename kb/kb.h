/*
 * kb.h - the knowledge base: solution templates and past cases in SQLite FTS5,
 * searched with a Chinese-aware tokenizer.
 *
 * The knowledge base lives in the same SQLite file as the conversation store.
 * Every connection that touches kb tables must first call kb_register().
 * Schema changes are kb_migrate()'s alone.  Searches are read-only and run on the
 * caller's connection (the server uses its loop-thread reader connection).
 */
#ifndef REDRESS_KB_H
#define REDRESS_KB_H

#include <sqlite3.h>
#include <stddef.h>

/* Registers the "redress" FTS5 tokenizer on db.  Returns 0 or a negative error. */
int kb_register(sqlite3 *db);

/* Creates or migrates the kb tables on db (inside its own transaction).  Returns 0, or -1 with
 * a message in err. */
int kb_migrate(sqlite3 *db, char *err, size_t errlen);

typedef enum kb_kind { KB_TEMPLATE = 1, KB_CASE = 2 } kb_kind_t;
typedef enum kb_confidence { KB_NO_MATCH = 0, KB_SUGGEST = 1, KB_ANSWER = 2 } kb_confidence_t;

typedef struct kb_hit {
    kb_kind_t kind;
    long long id;
    char *title;       /* template title, or case summary */
    char *category;
    char *text;        /* customer-facing text (template) or resolution (case) */
    char *snippet;     /* highlighted excerpt, [..] around matches */
    char *deadline;    /* template's deadline promise, may be NULL */
    char *compensation;/* template's compensation, may be NULL */
    int severity;
    double score;      /* higher is better */
} kb_hit_t;

typedef struct kb_result {
    kb_confidence_t confidence;
    int count;
    kb_hit_t *hits;
} kb_result_t;

/*
 * Searches templates and past cases for free customer text (never FTS5 syntax).
 * category may be NULL (all).  limit 1..50.  On success returns 0 and *out owns a
 * result to free with kb_result_free(); hostile or empty text gives an empty result,
 * never an error.  Returns negative only on a database error.
 */
int kb_search(sqlite3 *db, const char *text, const char *category, int limit, kb_result_t **out);
void kb_result_free(kb_result_t *r);

/* Imports JSON Lines from path into db.  Returns the number of records imported, or -1 with
 * "path:line: message" in err and nothing imported. */
int kb_import_file(sqlite3 *db, const char *path, const char *who, char *err, size_t errlen);

/* Number of templates in db, or -1 on error. */
int kb_template_count(sqlite3 *db);

/* `redress kb ...` subcommands; argv[0] is the subcommand name.  Returns a process exit code. */
struct config;
int kb_cli_main(const struct config *cfg, int argc, char **argv);

#endif
