/*
 * json_print.h - compact JSON text of a cJSON tree, without cJSON's printf/sscanf per number
 * (json_print.c).
 */
#ifndef REDRESS_JSON_PRINT_H
#define REDRESS_JSON_PRINT_H

#include <cjson/cJSON.h>

/* The tree as compact JSON text (what cJSON_PrintUnformatted gives; see json_print.c for the
 * one difference), malloc'ed; NULL when out of memory or the tree cannot be printed. */
char *json_print(const cJSON *item);

#endif
