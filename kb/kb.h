/*
 * kb.h - the knowledge base: solution templates and past cases in SQLite FTS5,
 * searched with a Chinese-aware tokenizer.
 *
 * The knowledge base lives in the same SQLite file as the conversation store.
 * Every connection that touches kb tables must first call kb_register().
 * Schema changes are kb_migrate()'s alone.  Searches are read-only and run on the
 * caller's connection (the server uses its loop-thread reader connection).
 *
 * Start-up order for a process:
 *   kb_set_synonyms_file(path)      once, before kb_register (optional: no synonyms otherwise)
 *   kb_register(db)                 on every connection
 *   kb_migrate(db)                  once, on a writer connection
 *   kb_seed_dir(db, cfg->kb_seed)   optional: fills an empty knowledge base
 *
 * Errors: functions return 0 (or a count) on success and a negative KB_ERR_* code on failure;
 * those taking (err, errlen) also write a one-line message there.  Everything is safe to call
 * from any thread with a connection that thread owns; the synonym list is shared and locked.
 * See kb/README.md for how search works and for the JSON Lines format.
 */
#ifndef REDRESS_KB_H
#define REDRESS_KB_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>

#define KB_ERR_DB (-1)       /* SQLite failed (message in err, or the connection's errmsg) */
#define KB_ERR_INVALID (-2)  /* bad input: the message names the field */
#define KB_ERR_NOTFOUND (-3) /* no such template or case */
#define KB_ERR_CONFLICT (-4) /* key already exists, or the version changed meanwhile */
#define KB_ERR_NOMEM (-5)

/* Registers the "redress" FTS5 tokenizer on db.  Returns 0 or a negative error. */
int kb_register(sqlite3 *db);

/* Creates or migrates the kb tables on db (inside its own transaction).  Returns 0, or -1 with
 * a message in err.  Also rebuilds the FTS indexes when the current synonym list differs from
 * the one they were built with. */
int kb_migrate(sqlite3 *db, char *err, size_t errlen);

/*
 * Loads the synonym list (kb/README.md: one group per line, words separated by spaces or
 * commas, # comments) and makes it the process-wide list used by every tokenizer
 * kb_register() installs.  path NULL or "" clears the list.  Returns 0, or KB_ERR_INVALID
 * with "path:line: message" in err (the previous list stays).  Documents indexed under an
 * older list are re-indexed by the next kb_migrate(), kb_reload_synonyms() or kb write.
 */
int kb_set_synonyms_file(const char *path, char *err, size_t errlen);

/* Re-reads the file given to kb_set_synonyms_file and, when db is not NULL, rebuilds its FTS
 * indexes if the list changed.  Returns 1 when the list changed, 0 when not, or negative. */
int kb_reload_synonyms(sqlite3 *db, char *err, size_t errlen);

/* Rebuilds every kb FTS index from the tables.  Returns 0, or negative with a message. */
int kb_reindex(sqlite3 *db, char *err, size_t errlen);

/*
 * Index upkeep.  Every write adds a small FTS5 segment and searches slow down with the number
 * of segments (measured 3x at 100k cases, BENCHMARKS.md).  kb_optimize merges each index of
 * `which` (bit 0 templates, bit 1 cases) into one segment: imports and seeding do it on their
 * own; cost grows with the index (seconds at 1M cases).  kb_maintain does at most `pages`
 * pages of incremental merging per index and returns 1 when it merged something (call again
 * later), 0 when there was nothing to merge, or KB_ERR_DB: call it from the writer now and
 * then (say every few hundred kb_case_add calls, or on an idle timer).
 */
int kb_optimize(sqlite3 *db, int which, char *err, size_t errlen);
int kb_maintain(sqlite3 *db, int pages);

/* Categories: the fixed list seeded into kb_categories.  kb_category_name returns the Chinese
 * name of a slug ("bank.fee" -> "误扣费") or NULL for an unknown slug; the strings are static. */
const char *kb_category_name(const char *slug);
int kb_category_count(void);
const char *kb_category_slug(int i); /* 0 <= i < kb_category_count(), else NULL */

typedef enum kb_kind { KB_TEMPLATE = 1, KB_CASE = 2 } kb_kind_t;
typedef enum kb_confidence { KB_NO_MATCH = 0, KB_SUGGEST = 1, KB_ANSWER = 2 } kb_confidence_t;

typedef struct kb_hit {
    kb_kind_t kind;
    long long id;
    char *title; /* template title, or case summary */
    char *category;
    char *text;         /* customer-facing text (template) or resolution (case) */
    char *snippet;      /* highlighted excerpt, [..] around matches */
    char *deadline;     /* template's deadline promise, may be NULL */
    char *compensation; /* template's compensation, may be NULL */
    int severity;
    double score;    /* higher is better */
    char *key;       /* stable external id */
    double coverage; /* 0..1: share of the query's weight this hit matches (see kb_search) */
} kb_hit_t;

typedef struct kb_result {
    kb_confidence_t confidence;
    int count;
    kb_hit_t *hits;
} kb_result_t;

/*
 * Confidence thresholds (kb/README.md explains coverage):
 *   KB_ANSWER   the best hit is a template with coverage >= KB_ANSWER_COVERAGE that leads the
 *               next template by KB_ANSWER_MARGIN (or is the only one)
 *   KB_SUGGEST  the best hit (template or case) has coverage >= KB_SUGGEST_COVERAGE
 *   KB_NO_MATCH otherwise, and for empty or unusable text
 */
#define KB_ANSWER_COVERAGE 0.70
#define KB_ANSWER_MARGIN 0.10
#define KB_SUGGEST_COVERAGE 0.40

/*
 * Searches templates and past cases for free customer text (never FTS5 syntax).
 * category may be NULL (all).  limit 1..50.  On success returns 0 and *out owns a
 * result to free with kb_result_free(); hostile or empty text gives an empty result,
 * never an error.  Returns negative only on a database error.
 */
int kb_search(sqlite3 *db, const char *text, const char *category, int limit, kb_result_t **out);
void kb_result_free(kb_result_t *r);

/*
 * A searcher: kb_search on one connection with its statements kept prepared between calls (a
 * search prepares up to ten, about a tenth of its time).  Open it on a connection that has
 * kb_register'ed, use it from one thread at a time, and close it before the connection.  It
 * holds no transaction between searches, unless kb_searcher_hold asked it to: then the first
 * search after kb_searcher_end opens a read transaction and leaves it open, and the searches
 * after it reuse its snapshot and the stamps read in it, until kb_searcher_end commits it (the
 * server: one snapshot per loop pass).  Hold it only on a connection that nothing else uses,
 * and end it often: it sees no change made after it began, and the write-ahead log cannot
 * restart behind it.  kb_searcher_open returns NULL when out of memory.
 */
typedef struct kb_searcher kb_searcher_t;
kb_searcher_t *kb_searcher_open(sqlite3 *db);
void kb_searcher_close(kb_searcher_t *s); /* ends a held snapshot first */
int kb_searcher_search(kb_searcher_t *s, const char *text, const char *category, int limit,
                       kb_result_t **out);
void kb_searcher_hold(kb_searcher_t *s);
/* Ends the held snapshot, if one is open.  Returns 0 or KB_ERR_DB. */
int kb_searcher_end(kb_searcher_t *s);

/* ---- templates and cases ---- */

typedef struct kb_template {
    long long id; /* 0 before the first save */
    char *key;    /* stable external id: 1..64 of [A-Za-z0-9._-] */
    char *title;
    char *category;   /* a kb_category_name() slug */
    int severity;     /* 1..4 */
    char *conditions; /* when the template applies */
    char *text;       /* customer-facing answer */
    char **steps;     /* internal steps, nsteps strings */
    int nsteps;
    char *compensation;
    char *deadline;     /* promise as text, "24小时内" */
    int deadline_hours; /* -1 = none */
    char **tags;
    int ntags;
    int version; /* 1.. ; bumped by every change */
    char *updated_by;
    char *updated_at; /* "YYYY-MM-DDTHH:MM:SSZ" */
    char *action;     /* history rows only: "create", "update" or "delete" */
} kb_template_t;

typedef struct kb_case {
    long long id;
    char *key;
    char *summary;
    char *category;
    char *tried;
    char *resolution;
    char *outcome;    /* "resolved", "partial" or "unresolved" */
    int satisfaction; /* 1..5, 0 = unknown */
    char *date;       /* "YYYY-MM-DD" */
} kb_case_t;

/* Frees the strings a record owns and zeroes it (the struct itself is the caller's). */
void kb_template_clear(kb_template_t *t);
void kb_case_clear(kb_case_t *c);

/* Checks every field (lengths, UTF-8, ranges, category, key syntax).  Returns 0, or
 * KB_ERR_INVALID with a message naming the field. */
int kb_template_validate(const kb_template_t *t, char *err, size_t errlen);
int kb_case_validate(const kb_case_t *c, char *err, size_t errlen);

/* Loads one template by id (key NULL) or by key (id ignored) into *out (clear it after).
 * Returns 0, KB_ERR_NOTFOUND or KB_ERR_DB. */
int kb_template_get(sqlite3 *db, long long id, const char *key, kb_template_t *out);
int kb_case_get(sqlite3 *db, long long id, const char *key, kb_case_t *out);

/* How a save treats an existing record, and what it did. */
typedef enum kb_save_mode {
    KB_SAVE_UPSERT = 0, /* create, or update the record with this key (import) */
    KB_SAVE_CREATE = 1, /* KB_ERR_CONFLICT when the key exists (POST) */
    KB_SAVE_UPDATE = 2, /* update record t->id; KB_ERR_NOTFOUND when absent (PUT) */
} kb_save_mode_t;
typedef enum kb_save_action { KB_CREATED = 1, KB_UPDATED = 2, KB_UNCHANGED = 3 } kb_save_action_t;

/*
 * Creates or updates a template according to mode (kb_save_mode_t).
 * expect_version > 0 makes an update fail with KB_ERR_CONFLICT unless it is the current
 * version.  An update that changes nothing keeps the version.  who is recorded as updated_by.
 * On success returns a kb_save_action_t (KB_CREATED, KB_UPDATED or KB_UNCHANGED) and sets
 * *id_out / *version_out
 * (either may be NULL); else a negative code with a message.  Runs in its own transaction or
 * a savepoint of the caller's.
 */
int kb_template_save(sqlite3 *db, const kb_template_t *t, int mode, int expect_version,
                     const char *who, long long *id_out, int *version_out, char *err,
                     size_t errlen);

/* Deletes a template (its history stays, with a "delete" row).  0, KB_ERR_NOTFOUND or
 * KB_ERR_DB. */
int kb_template_delete(sqlite3 *db, long long id, const char *who, char *err, size_t errlen);

/* Every version of the template with this key, oldest first, in a malloc'ed array of *n
 * records (free with kb_templates_free).  0, KB_ERR_NOTFOUND or KB_ERR_DB. */
int kb_template_history(sqlite3 *db, const char *key, kb_template_t **out, int *n);
void kb_templates_free(kb_template_t *v, int n);

/* Cases: save as for templates (no versions); returns a kb_save_action_t or negative. */
int kb_case_save(sqlite3 *db, const kb_case_t *c, int mode, long long *id_out, char *err,
                 size_t errlen);
int kb_case_delete(sqlite3 *db, long long id, char *err, size_t errlen);

/*
 * Records a resolved conversation as a past case with a generated key ("auto-" and 16 hex
 * digits) and today's date.  tried/resolution may be NULL; satisfaction 0 = unknown, else 1..5.
 * Returns 0 and *id_out (may be NULL), KB_ERR_INVALID for bad fields, or KB_ERR_DB.
 */
int kb_case_add(sqlite3 *db, const char *summary, const char *category, const char *tried,
                const char *resolution, const char *outcome, int satisfaction, long long *id_out);

/* Number of templates in db, or -1 on error. */
int kb_template_count(sqlite3 *db);
/* Number of cases in db, or -1 on error. */
int kb_case_count(sqlite3 *db);

/* ---- import, export, seeding ---- */

/* Imports JSON Lines from path into db.  Returns the number of records imported, or -1 with
 * "path:line: message" in err and nothing imported. */
int kb_import_file(sqlite3 *db, const char *path, const char *who, char *err, size_t errlen);

typedef struct kb_import_stats {
    int templates, cases; /* records read */
    int created, updated, unchanged;
} kb_import_stats_t;

/* As kb_import_file, with counts in *stats (may be NULL). */
int kb_import_file_ex(sqlite3 *db, const char *path, const char *who, kb_import_stats_t *stats,
                      char *err, size_t errlen);

/* Writes every template then every case (by key) as JSON Lines to f; the output imports back
 * into an identical knowledge base.  Returns the number of records, or -1 with a message. */
int kb_export(sqlite3 *db, FILE *f, char *err, size_t errlen);

/* Imports dir/templates.jsonl and dir/cases.jsonl (either may be absent, not both) in one
 * transaction, but only when the knowledge base has no templates and no cases.  dir NULL or ""
 * does nothing.  Returns the number of records imported (0 when not empty), or -1 with a
 * message. */
int kb_seed_dir(sqlite3 *db, const char *dir, char *err, size_t errlen);

/* ---- HTTP API for the web editor (kb/kb_api.c) ---- */

/*
 * Handles one request of the editor API.  path is relative to /api/kb ("/templates/12"),
 * query_string without '?' (may be NULL), body may be NULL.  who names the editor for
 * updated_by.  Always sets *http_status and *out_json (malloc'ed JSON, the caller frees;
 * errors are {"error":{"code":"...","message":"..."}}).  Returns 0, or KB_ERR_NOMEM when
 * not even an error body could be built (then *out_json is NULL and the status 500).
 * Routes are listed in kb/README.md.
 */
int kb_api_handle(sqlite3 *db, const char *method, const char *path, const char *query_string,
                  const char *body, size_t body_len, const char *who, int *http_status,
                  char **out_json);

/* `redress kb ...` subcommands; argv[0] is the subcommand name.  Returns a process exit code. */
struct config;
int kb_cli_main(const struct config *cfg, int argc, char **argv);

/* URL query strings (also used by the server's other /api handlers): the percent-decoded
 * value of parameter name in qs ("a=1&b=2"; '+' is a space), first occurrence, malloc'ed; NULL
 * when absent.  *bad is set (and NULL returned) when present but malformed or not UTF-8. */
char *kb_query_param(const char *qs, const char *name, int *bad);

#endif
