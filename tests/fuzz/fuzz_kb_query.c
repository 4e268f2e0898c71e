/*
 * fuzz_kb_query.c - libFuzzer target: arbitrary bytes as customer text (and, from the first
 * byte, a category and limit) must never make kb_search fail or misbehave.  Build with
 * CC=clang and -DREDRESS_FUZZ=ON (tests/kb.cmake); run ./fuzz_kb_query -max_total_time=60.
 */
#include "kb_internal.h"

#include <stdlib.h>
#include <string.h>

static sqlite3 *db;

static void setup(void)
{
    char err[256], path[4096];
    snprintf(path, sizeof(path), "%s/tests/data/kb/synonyms.txt", REDRESS_SOURCE_DIR);
    if (kb_set_synonyms_file(path, err, sizeof(err)) != 0 ||
        sqlite3_open(":memory:", &db) != SQLITE_OK || kb_register(db) != 0 ||
        kb_migrate(db, err, sizeof(err)) != 0)
        abort();
    snprintf(path, sizeof(path), "%s/tests/data/kb/templates.jsonl", REDRESS_SOURCE_DIR);
    if (kb_import_file(db, path, "fuzz", err, sizeof(err)) < 0)
        abort();
    snprintf(path, sizeof(path), "%s/tests/data/kb/cases.jsonl", REDRESS_SOURCE_DIR);
    if (kb_import_file(db, path, "fuzz", err, sizeof(err)) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *const cats[] = {NULL, "bank.fee", "ecom.refund", "no.such", ""};
    kb_result_t *r = NULL;
    if (db == NULL)
        setup();
    int sel = size > 0 ? data[0] : 0;
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    if (kb_search(db, text, cats[sel % 5], 1 + sel % 20, &r) != 0)
        abort();
    for (int i = 0; i < r->count; i++)
        if (r->hits[i].snippet == NULL || r->hits[i].coverage < 0 || r->hits[i].coverage > 1.0001)
            abort();
    kb_result_free(r);
    free(text);
    return 0;
}
