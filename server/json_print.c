/*
 * json_print.c - compact JSON text of a cJSON tree, for the per-turn paths.
 *
 * Why.  Every bot turn prints the conversation's flow state (1-3 KB of JSON with a timestamp
 * per customer message) and every event frame.  cJSON_PrintUnformatted formats each number
 * with sprintf("%1.15g"), reads it back with sscanf and, for a timestamp that needs 17
 * digits, prints it again: those calls were half of the state save, 3-4 % of the loop thread
 * at saturation (perf, BENCHMARKS.md).
 *
 * What.  One growing buffer; integers (|d| < 2^53) in decimal without printf, and so numbers
 * of whole milliseconds under 10^12 (the flows' clock: a timestamp in every saved input);
 * other numbers as cJSON writes them (%1.15g when it reads back as the same double, else
 * %1.17g) but checked with strtod; strings escaped as cJSON escapes them (", \, \b \f \n \r \t,
 * other bytes below 0x20 as \u00XX, everything else raw).  The text equals
 * cJSON_PrintUnformatted's for every tree, except that cJSON accepts a 15-digit form that is
 * within an epsilon of the value, while this takes it only when it is exact (the text then
 * round-trips to the same double).
 *
 * The pieces (json_put, json_put_number, json_put_string, json_finish) are exported for writers
 * that print JSON without building a tree first (flow_json.c prints a flow's state straight
 * from Lua): their text is what json_print gives for the same values.
 *
 * Ownership: json_print() returns a malloc'ed string the caller frees, or NULL when out of
 * memory, for an invalid item, or for a tree deeper than cJSON would parse.
 */
#include "json_print.h"

#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_PRINT_MAX_DEPTH 1000 /* cJSON's own nesting limit for parsing */

typedef util_buf jbuf;

static void put_char(jbuf *b, char c)
{
    json_put(b, &c, 1);
}

/* Writes u's decimal digits so that they end just before end; returns where they begin. */
static char *digits_before(char *end, unsigned long long u)
{
    do
        *--end = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    return end;
}

void json_put_number(util_buf *b, double d)
{
    char tmp[32];
    int n;
    if (isnan(d) || isinf(d)) {
        json_put(b, "null", 4);
        return;
    }
    if (d == floor(d) && fabs(d) < 9007199254740992.0) { /* 2^53: exact as an integer */
        long long v = (long long)d;
        unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
        char *e = tmp + sizeof(tmp), *s = digits_before(e, u);
        if (v < 0 || signbit(d)) /* -0 stays -0, as cJSON prints it */
            *--s = '-';
        json_put(b, s, (size_t)(e - s));
        return;
    }
    /* a whole number of milliseconds under 10^12 (the flows' clock, session_mgr_now): d is the
     * double nearest to k/1000, so k/1000's digits are what %1.15g prints (15 significant
     * digits reach the thousandths below 10^12, and d is far closer to k/1000 than half of
     * one), and they read back as d */
    if (fabs(d) < 1e12) {
        double k = floor(fabs(d) * 1000.0 + 0.5);
        if (k / 1000.0 == fabs(d)) {
            unsigned long long u = (unsigned long long)k, frac = u % 1000;
            char *e = tmp + sizeof(tmp), *s = e;
            int digits = 3;
            while (digits > 1 && frac % 10 == 0) { /* frac is not 0: d is not whole here */
                frac /= 10;
                digits--;
            }
            for (int i = 0; i < digits; i++, frac /= 10)
                *--s = (char)('0' + frac % 10);
            *--s = '.';
            s = digits_before(s, u / 1000);
            if (d < 0)
                *--s = '-';
            json_put(b, s, (size_t)(e - s));
            return;
        }
    }
    n = snprintf(tmp, sizeof(tmp), "%1.15g", d);
    if (strtod(tmp, NULL) != d)
        n = snprintf(tmp, sizeof(tmp), "%1.17g", d);
    json_put(b, tmp, (size_t)n);
}

/* 1 when one of the 8 bytes in x needs an escape: below 0x20, '"' or '\\'.  The "any byte
 * below n" and "any byte zero" word tests are exact for the word as a whole. */
static inline int escape_in(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t quote = x ^ (ones * '"'), slash = x ^ (ones * '\\');
    return ((((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) | ((slash - ones) & ~slash)) &
            highs) != 0;
}

void json_put_string(util_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    static const char escaped[] = "\"\\\b\f\n\r\t", escapes[] = "\"\\bfnrt";
    put_char(b, '"');
    if (!s)
        s = "";
    /* Most strings are Chinese text with nothing to escape: whole words of 8 bytes are
     * passed over at once, a byte at a time only in a word that has something. */
    const char *run = s, *p = s, *end = s + strlen(s);
    while (p < end) {
        uint64_t x;
        for (; end - p >= 8; p += 8) {
            memcpy(&x, p, 8);
            if (escape_in(x))
                break;
        }
        if (p == end)
            break;
        unsigned char c = (unsigned char)*p++;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        json_put(b, run, (size_t)(p - 1 - run));
        run = p;
        const char *short_form = memchr(escaped, c, sizeof(escaped) - 1);
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (short_form) {
            esc[1] = escapes[short_form - escaped];
            json_put(b, esc, 2);
        } else {
            json_put(b, esc, 6);
        }
    }
    json_put(b, run, (size_t)(end - run));
    put_char(b, '"');
}

static void put_item(jbuf *b, const cJSON *item, int depth)
{
    if (depth >= JSON_PRINT_MAX_DEPTH) {
        b->failed = 1;
        return;
    }
    switch (item->type & 0xFF) {
    case cJSON_NULL:
        json_put(b, "null", 4);
        break;
    case cJSON_False:
        json_put(b, "false", 5);
        break;
    case cJSON_True:
        json_put(b, "true", 4);
        break;
    case cJSON_Number:
        json_put_number(b, item->valuedouble);
        break;
    case cJSON_String:
        json_put_string(b, item->valuestring);
        break;
    case cJSON_Raw:
        if (item->valuestring)
            json_put(b, item->valuestring, strlen(item->valuestring));
        else
            b->failed = 1;
        break;
    case cJSON_Array:
    case cJSON_Object: {
        int obj = (item->type & 0xFF) == cJSON_Object;
        put_char(b, obj ? '{' : '[');
        for (const cJSON *c = item->child; c; c = c->next) {
            if (c != item->child)
                put_char(b, ',');
            if (obj) {
                json_put_string(b, c->string);
                put_char(b, ':');
            }
            put_item(b, c, depth + 1);
        }
        put_char(b, obj ? '}' : ']');
        break;
    }
    default:
        b->failed = 1; /* cJSON_Invalid */
    }
}

char *json_finish(util_buf *b)
{
    if (b->failed || util_buf_reserve(b, 0) != 0) {
        free(b->p);
        b->p = NULL;
        return NULL;
    }
    b->p[b->len] = '\0';
    return b->p;
}

char *json_print(const cJSON *item)
{
    jbuf b = {0};
    if (!item)
        return NULL;
    put_item(&b, item, 0);
    return json_finish(&b);
}
