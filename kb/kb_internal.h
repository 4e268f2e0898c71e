/*
 * kb_internal.h - declarations shared by the kb/ files and their tests; not part of the
 * public API (kb.h).
 *
 * The pieces, in the order a search passes through them:
 *   kb_token.c     text analysis (UTF-8, folding, CJK n-grams, synonym tokens) and the
 *                  "redress" FTS5 tokenizer built on it; kb_register()
 *   kb_synonyms.c  the synonym list: parse, trie, process-wide current list, reload
 *   kb_search.c    query terms, document-frequency pruning, FTS5 candidates, re-ranking,
 *                  snippets, confidence
 *   kb_doccache.c  the re-ranker's analyzed documents, replayed while their text is the same
 *   kb_schema.c    kb_migrate(), categories, meta, reindex, transactions
 *   kb_store.c     templates (with history) and cases: validation, save, get, list, delete
 *   kb_api.c       the only cJSON user: record codec and the HTTP API handler
 *   kb_io.c        JSON Lines import/export, seeding
 *   kb_cli.c       `redress kb ...`
 */
#ifndef REDRESS_KB_INTERNAL_H
#define REDRESS_KB_INTERNAL_H

#include "kb.h"

#include <stdint.h>
#include <stdio.h>

/* ---- text analysis (kb_token.c) ---- */

/* How CJK runs become tokens.  UNIBI (the default) is measured best; see kb/README.md. */
typedef enum kb_cjk_mode {
    KB_CJK_UNIBI = 0, /* every character, plus each overlapping bigram colocated */
    KB_CJK_UNI = 1,   /* every character alone */
    KB_CJK_BI = 2,    /* overlapping bigrams; a lone character stands for itself */
} kb_cjk_mode_t;

typedef enum kb_tok_kind {
    KB_TOK_UNI = 1,  /* one CJK character */
    KB_TOK_BI = 2,   /* two adjacent CJK characters */
    KB_TOK_WORD = 3, /* a run of letters or of digits */
    KB_TOK_JOIN =
        4, /* a run mixing letters and digits ("iphone13"), colocated with its first part */
    KB_TOK_SYN = 5, /* a synonym group ("~退款"), colocated where a group word starts */
} kb_tok_kind_t;

#define KB_TOKEN_MAX 64   /* longest token in bytes; longer words are cut at a character edge */
#define KB_SYN_PREFIX '~' /* first byte of every synonym-group token; never starts a text token */

typedef struct kb_tok {
    const char *text; /* folded UTF-8, valid only during the callback */
    int len;
    int start, end;   /* byte offsets of the source text covered */
    int cstart, cend; /* character indexes covered, [cstart, cend) */
    int colocated;    /* same position as the previous token */
    kb_tok_kind_t kind;
} kb_tok_t;

/* FNV-1a, 64 bits, continuing from h (KB_FNV64_START to begin): the synonym list's fingerprint,
 * the df cache's term keys, the analyzed documents' text check. */
#define KB_FNV64_START 1469598103934665603ull
static inline uint64_t kb_fnv64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* FNV-1a of a token's text: the search's term table and the documents' term indexes use it. */
static inline unsigned kb_text_hash(const char *s, int n)
{
    unsigned h = 2166136261u;
    for (int i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

typedef struct kb_synonyms kb_synonyms_t;

typedef struct kb_analyzer {
    kb_cjk_mode_t cjk;
    int query;                /* FTS5 query mode: a term comes back as itself (see kb_token.c) */
    const kb_synonyms_t *syn; /* NULL: no synonym tokens */
} kb_analyzer_t;

/* Called for each token in position order; a non-zero return stops kb_analyze with it. */
typedef int (*kb_tok_fn)(void *ctx, const kb_tok_t *tok);

/* Tokenizes text[0..len).  Returns 0, the callback's non-zero value, or SQLITE_NOMEM. */
int kb_analyze(const kb_analyzer_t *a, const char *text, int len, kb_tok_fn fn, void *ctx);

/* Folds one code point (full-width to ASCII, case) and returns it. */
uint32_t kb_fold(uint32_t cp);

/* 1 when a folded code point can be part of a token (CJK, letter, digit), else 0. */
int kb_char_is_word(uint32_t cp);

/* Decodes one UTF-8 sequence at s[0..n); returns its length (>= 1) and sets *cp, or returns 1
 * with *cp = 0xFFFD for an invalid byte. */
int kb_utf8_decode(const unsigned char *s, int n, uint32_t *cp);

/* Encodes a code point as UTF-8 into out[4]; returns the length. */
int kb_utf8_encode(uint32_t cp, char *out);

/* 1 when s[0..n) is valid UTF-8 without NUL bytes, else 0. */
int kb_utf8_valid(const char *s, size_t n);

/* Number of code points in valid UTF-8 s. */
size_t kb_utf8_chars(const char *s);

/* ---- synonyms (kb_synonyms.c) ---- */

/* Parses a synonym list from text (file name for messages).  Returns a list with one reference,
 * or NULL with "name:line: message" in err. */
kb_synonyms_t *kb_synonyms_parse(const char *text, size_t len, const char *name, char *err,
                                 size_t errlen);
void kb_synonyms_ref(kb_synonyms_t *s);
void kb_synonyms_unref(kb_synonyms_t *s);

/* The process-wide current list with a new reference (release with kb_synonyms_unref), or NULL
 * when none is set. */
kb_synonyms_t *kb_synonyms_current(void);

/* Fingerprint of a list as 16 hex digits ("none" for NULL), written to out[17]. */
void kb_synonyms_hash(const kb_synonyms_t *s, char out[17]);
int kb_synonyms_groups(const kb_synonyms_t *s);

/* Longest synonym match: walks folded code points cps[0..n) and calls fn(ctx, group_token,
 * token_len, word_chars) for every group word that starts at cps[0] and is found whole. */
typedef void (*kb_syn_fn)(void *ctx, const char *token, int token_len, int nchars);
void kb_synonyms_match(const kb_synonyms_t *s, const uint32_t *cps, int n, kb_syn_fn fn, void *ctx);

/* ---- analyzed documents (kb_doccache.c) ---- */

#define KB_DOC_COLS 8 /* most columns of a document */

/* One occurrence of a token in a document: the column, the source bytes it covers there and
 * its ordinal in the document's token stream (columns in order). */
typedef struct kb_doc_occ {
    uint32_t start, end, ord, col;
} kb_doc_occ_t;

/* A document's term index: its distinct tokens and their occurrences (kb_doccache.c). */
typedef struct kb_doc_index kb_doc_index_t;
typedef int (*kb_doc_index_fn)(void *ctx, const kb_doc_index_t *ix);
/* Called for each token of column col, columns in order; non-zero stops the analysis. */
typedef int (*kb_doc_tok_fn)(void *ctx, int col, const kb_tok_t *tok);

/* Document id of the table of that kind, as the re-ranker reads it: its text columns
 * cols[0..ncols) (NULL: a column left out; ncols <= KB_DOC_COLS).  When its term index is kept
 * and the texts, the analyzer and the synonym list are the same as when it was built,
 * ix_fn(ctx, index) runs with the cache's mutex held (it must not search); otherwise each
 * column is analyzed with fn(ctx, col, token) for every token (and the index is built for next
 * time, see kb_doccache.c).  Returns what the callback returned. */
int kb_doc_analyze(kb_kind_t kind, long long id, const kb_analyzer_t *a, const char *const *cols,
                   int ncols, kb_doc_tok_fn fn, kb_doc_index_fn ix_fn, void *ctx);
/* Column col's length in positions: its tokens that are not colocated. */
int kb_doc_index_positions(const kb_doc_index_t *ix, int col);
/* The occurrences of token text s[0..n) (hash = kb_text_hash(s, n)) in all columns, in stream
 * order: their count, and *occ pointing at them (NULL for none).  Valid while the callback
 * runs. */
int kb_doc_index_find(const kb_doc_index_t *ix, const char *s, int n, unsigned hash,
                      const kb_doc_occ_t **occ);
/* Entries held and the bytes they take (term indexes). */
void kb_doc_cache_stats(size_t *entries, size_t *bytes);
/* Empties the cache (tests and benchmarks). */
void kb_doc_cache_clear(void);

/* ---- small tables' postings in memory (kb_memidx.c) ---- */

#define KB_BM25_K1 1.2 /* BM25's k1, for kb_rank() and the re-rank's BM25F */

/* kb_rank()'s share for one matched term: idf times the saturated sum w of its columns'
 * weights.  One expression for FTS5's rank function and the in-memory candidates, so that both
 * give the same bits. */
static inline double kb_rank_term(double idf, double w)
{
    return idf * w * (KB_BM25_K1 + 1) / (w + KB_BM25_K1);
}

/* x as printf's "%.4f" writes it, into buf (KB_FIXED4_MAX bytes), and the value strtod reads
 * back from that text into *value; returns the text's length.  Exact, and without printf's
 * and strtod's general paths for |x| < 1e11 (kb_search.c, "Writing them"). */
#define KB_FIXED4_MAX 340
int kb_fixed4(double x, char *buf, double *value);

typedef struct kb_memidx kb_memidx_t;

/* A term of the candidates' query: its text, kb_text_hash and kb_rank() idf (<= 0: it matches
 * but adds nothing, as in kb_rank). */
typedef struct kb_memq {
    const char *text;
    int len;
    unsigned hash;
    double idf;
    int term; /* set by kb_memidx_lookup: the index's term, or -1 when no document has it */
} kb_memq_t;

/* The in-memory postings of the table of that kind as of stamp (kb_meta's templates_stamp or
 * cases_stamp, read in the caller's snapshot), with a reference (release with kb_memidx_unref);
 * built from the rows of sql (id, anything, the FTS columns in order; category_col is the
 * category's) when the kept one is of another stamp.  The caller decides which tables are
 * small enough.  NULL when db_syn (kb_meta's synonyms_hash) is not syn's fingerprint, when out
 * of memory or on a database error: the caller then asks FTS5. */
kb_memidx_t *kb_memidx_get(sqlite3 *db, kb_kind_t kind, const char *stamp, const char *db_syn,
                           const kb_synonyms_t *syn, const char *sql, int ncols, int category_col);
void kb_memidx_unref(kb_memidx_t *ix);
/* Looks each of q[0..nq) up in the index (q[i].term), as kb_memidx_candidates and
 * kb_memidx_terms need. */
void kb_memidx_lookup(const kb_memidx_t *ix, kb_memq_t *q, int nq);
/* The documents holding any of q[0..nq) (looked up) in a text column, of category (NULL: any),
 * scored as kb_rank() scores them with column weights w[0..nw): the best `limit`, by score and then
 * the lowest id first, in no particular order, into docs[] (the index's numbers, for
 * kb_memidx_terms) and ids[].  Returns their number or KB_ERR_NOMEM. */
int kb_memidx_candidates(const kb_memidx_t *ix, const kb_memq_t *q, int nq, const double *w, int nw,
                         const char *category, int limit, uint32_t *docs, long long *ids);
/* A query term that a document holds: which one (an index into the query), the columns it is
 * in (bit c), and its frequency in each of them, in column order (cut at 65535). */
typedef struct kb_memtf {
    unsigned short term;
    unsigned char cols;
    const uint16_t *tf;
} kb_memtf_t;
/* What the re-ranker reads of documents docs[0..n) (q looked up), as kb_doc_analyze would give it:
 * each column's length in positions into pos[k], and the query terms that document k holds into
 * tf[k * nq ..], ntf[k] of them, in query order.  Returns 0 or KB_ERR_NOMEM. */
int kb_memidx_terms(const kb_memidx_t *ix, const uint32_t *docs, int n, const kb_memq_t *q, int nq,
                    int (*pos)[KB_DOC_COLS], kb_memtf_t *tf, int *ntf);
/* Column i of document doc's row after (id, unused), as the index's query gave it: its text
 * (NUL-terminated), or NULL for SQL NULL.  What a hit shows is read from here, not the table. */
const char *kb_memidx_col(const kb_memidx_t *ix, uint32_t doc, int i);
/* Document doc's id. */
long long kb_memidx_id(const kb_memidx_t *ix, uint32_t doc);
/* Indexes built so far, and the bytes the kept ones take. */
void kb_memidx_stats(unsigned long *builds, size_t *bytes);

/* ---- search (kb_search.c) ---- */

/* Knobs of kb_search_ex, for benchmarks and tests; kb_search uses kb_search_defaults. */
typedef struct kb_search_opts {
    kb_cjk_mode_t cjk;  /* analyzer for query terms: must match the tables' tokenizer */
    int rerank;         /* 1: BM25F re-rank of candidates; 0: keep FTS5 bm25() order */
    int candidates;     /* rows fetched per table before re-ranking */
    int tables;         /* bit 0 templates, bit 1 cases */
    int budget;         /* postings allowed in the MATCH (sum of df); 0 = unlimited */
    int match_unigrams; /* 1: characters covered by a query bigram are in the MATCH too */
    int fts_bm25;       /* 1: candidates by FTS5's bm25() instead of kb_rank() */
    double uni_weight;  /* re-rank weight of characters the query has inside bigrams */
    double cov_weight;  /* re-rank score = BM25F * (1 + cov_weight * coverage) */
    int memidx;         /* 1: a small table's candidates from kb_memidx.c when it is exact */
} kb_search_opts_t;

/* The kb_rank() FTS5 auxiliary function (kb_search.c), registered by kb_register. */
void kb_rank_fn(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int nval,
                sqlite3_value **val);

void kb_search_defaults(kb_search_opts_t *o);
int kb_search_ex(sqlite3 *db, const char *text, const char *category, int limit,
                 const kb_search_opts_t *o, kb_result_t **out);

/* ---- schema, meta, transactions (kb_schema.c) ---- */

/* Starts a write transaction: BEGIN IMMEDIATE, or a savepoint when the caller already has a
 * transaction open (*nested set).  Returns 0 or KB_ERR_DB. */
int kb_tx_begin(sqlite3 *db, int *nested);
/* Commits (ok != 0) or rolls back what kb_tx_begin started.  Returns 0 or KB_ERR_DB. */
int kb_tx_end(sqlite3 *db, int nested, int ok);

/* Before a write: if the FTS indexes were built with another synonym list than the current
 * one, rebuild them.  Call inside a transaction.  Returns 0 or KB_ERR_DB. */
int kb_sync_synonyms(sqlite3 *db, char *err, size_t errlen);

/* Reads/writes a kb_meta value.  kb_meta_get returns 0 and a malloc'ed value, KB_ERR_NOTFOUND
 * or KB_ERR_DB. */
int kb_meta_get(sqlite3 *db, const char *name, char **value);
int kb_meta_set(sqlite3 *db, const char *name, const char *value);

/* Current UTC time as "YYYY-MM-DDTHH:MM:SSZ" and today's date as "YYYY-MM-DD". */
void kb_now_iso(char out[32]);
void kb_today(char out[16]);

/* Executes SQL without parameters; 0 or KB_ERR_DB. */
int kb_exec(sqlite3 *db, const char *sql);

/* snprintf into err when err is not NULL. */
void kb_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- records (kb_store.c) ---- */

/* kb_*_save_in flag: the caller holds a transaction it rolls back whole on any error and has
 * run kb_sync_synonyms; no savepoint is taken (FTS5 writes a segment at every savepoint). */
#define KB_IN_TX 1

int kb_template_save_in(sqlite3 *db, const kb_template_t *t, int mode, int expect_version,
                        const char *who, int flags, long long *id_out, int *version_out, char *err,
                        size_t errlen);
int kb_case_save_in(sqlite3 *db, const kb_case_t *c, int mode, int flags, long long *id_out,
                    char *err, size_t errlen);

/* Lists current templates / cases, newest first (category NULL = all), offset/limit paging.
 * *out is a malloc'ed array of *n records (kb_templates_free / kb_cases_free) and *total the
 * number matching.  Returns 0 or KB_ERR_DB / KB_ERR_NOMEM. */
int kb_template_list(sqlite3 *db, const char *category, int offset, int limit, kb_template_t **out,
                     int *n, long long *total);
int kb_case_list(sqlite3 *db, const char *category, int offset, int limit, kb_case_t **out, int *n,
                 long long *total);
void kb_cases_free(kb_case_t *v, int n);

/* Key of the template that had this id (also after deletion), malloc'ed in *key.  Returns 0,
 * KB_ERR_NOTFOUND or KB_ERR_DB. */
int kb_template_key_of(sqlite3 *db, long long id, char **key);

/* 1 when the knowledge base has no templates and no cases, 0 when it has some, KB_ERR_DB. */
int kb_is_empty(sqlite3 *db);

/* ---- record codec (kb_api.c, the only file using cJSON) ---- */

typedef struct kb_record {
    kb_kind_t kind;
    kb_template_t tpl; /* kind == KB_TEMPLATE */
    kb_case_t kcase;   /* kind == KB_CASE */
} kb_record_t;

/* Parses one JSON Lines record (the import format).  Returns 0 with rec filled (free with
 * kb_record_clear), or KB_ERR_INVALID / KB_ERR_NOMEM with a message naming the field. */
int kb_json_parse_record(const char *json, size_t len, kb_record_t *rec, char *err, size_t errlen);
void kb_record_clear(kb_record_t *rec);

/* One record as a JSON Lines line without the newline (export format).  Returns malloc'ed
 * text or NULL when out of memory. */
char *kb_json_template_line(const kb_template_t *t);
char *kb_json_case_line(const kb_case_t *c);

#endif
