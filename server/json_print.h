/*
 * json_print.h - compact JSON text of a cJSON tree, without cJSON's printf/sscanf per number
 * (json_print.c).
 */
#ifndef REDRESS_JSON_PRINT_H
#define REDRESS_JSON_PRINT_H

#include "util.h"

#include <cjson/cJSON.h>
#include <string.h>

/* The tree as compact JSON text (what cJSON_PrintUnformatted gives; see json_print.c for the
 * one difference), malloc'ed; NULL when out of memory or the tree cannot be printed. */
char *json_print(const cJSON *item);

/* Pieces of the same text, appended to b without its NUL (json_finish writes it once).  Most
 * pieces are a few bytes and fit: they are copied in place; util_buf_add grows b for the rest. */
static inline void json_put(util_buf *b, const char *s, size_t n)
{
    if (b->len + n < b->cap) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    } else {
        util_buf_add(b, s, n);
    }
}
void json_put_number(util_buf *b, double d);      /* as cJSON prints it (null for NaN, inf) */
void json_put_string(util_buf *b, const char *s); /* quoted and escaped; NULL as "" */
/* NUL-terminates b and returns its text (the caller frees it), or frees it and returns NULL
 * when an addition failed. */
char *json_finish(util_buf *b);

#endif
