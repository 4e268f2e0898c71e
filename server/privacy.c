/*
 * privacy.c - masking of phone, ID card and bank card numbers (see privacy.h).
 *
 * One pass over the text: each run of digits (ASCII or full-width, with single space or
 * hyphen separators between digits) is collected with the byte offset of every digit; the run
 * is classified by its digit count and check digit; a masked run has its hidden digits
 * replaced by '*' (one ASCII byte each), separators kept.  Stateless and thread-safe: the log
 * writer calls it from both threads.
 */
#include "privacy.h"

#include <stdlib.h>
#include <string.h>

#define RUN_MAX 32

/* Reads one digit at s: returns its byte length (1 or 3) and sets *d, or 0. */
static int digit_at(const unsigned char *s, int *d)
{
    if (s[0] >= '0' && s[0] <= '9') {
        *d = s[0] - '0';
        return 1;
    }
    if (s[0] == 0xEF && s[1] == 0xBC && s[2] >= 0x90 && s[2] <= 0x99) { /* U+FF10..FF19 */
        *d = s[2] - 0x90;
        return 3;
    }
    return 0;
}

static int luhn_ok(const int *dg, int n)
{
    int sum = 0;
    for (int i = 0; i < n; i++) {
        int v = dg[n - 1 - i];
        if (i % 2 == 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

/* GB 11643 check digit over 17 digits; 10 stands for X. */
static int id_check(const int *dg)
{
    static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    int sum = 0;
    for (int i = 0; i < 17; i++)
        sum += dg[i] * w[i];
    static const int code[11] = {1, 0, 10, 9, 8, 7, 6, 5, 4, 3, 2};
    return code[sum % 11];
}

/* How many leading and trailing digits stay visible, or 0 when the run is not personal. */
static int classify(const int *dg, int n, int x_last, int *keep_head, int *keep_tail)
{
    if (!x_last && n == 11 && dg[0] == 1 && dg[1] >= 3) {
        *keep_head = 3;
        *keep_tail = 4;
        return 1;
    }
    if (n == 18 && id_check(dg) == (x_last ? 10 : dg[17])) {
        *keep_head = 6;
        *keep_tail = 4;
        return 1;
    }
    if (!x_last && n == 15 && dg[0] >= 1) {
        *keep_head = 6;
        *keep_tail = 3;
        return 1;
    }
    if (!x_last && n >= 16 && n <= 19 && luhn_ok(dg, n)) {
        *keep_head = 6;
        *keep_tail = 4;
        return 1;
    }
    return 0;
}

typedef struct sink {
    char *out;
    size_t len, cap;
} sink;

static void put(sink *k, const unsigned char *s, size_t n)
{
    if (k->len + n >= k->cap)
        return; /* out of room: stop at a character boundary */
    memcpy(k->out + k->len, s, n);
    k->len += n;
}

int privacy_mask(const char *text, char *out, size_t outlen)
{
    const unsigned char *s = (const unsigned char *)text;
    sink k = {out, 0, outlen};
    int masked = 0;

    if (!outlen)
        return 0;
    while (*s) {
        int d, w = digit_at(s, &d);
        if (!w) {
            size_t n = 1;
            while ((s[n] & 0xC0) == 0x80)
                n++;
            put(&k, s, n);
            s += n;
            continue;
        }
        /* collect the run */
        int dg[RUN_MAX], n = 0, x_last = 0;
        const unsigned char *start = s, *p = s;
        while (n < RUN_MAX) {
            w = digit_at(p, &d);
            if (!w)
                break;
            dg[n++] = d;
            p += w;
            int d2;
            if ((*p == ' ' || *p == '-') && digit_at(p + 1, &d2))
                p++;
        }
        if (n == 17 && (*p == 'X' || *p == 'x')) {
            dg[n++] = 10;
            x_last = 1;
            p++;
        }
        int head, tail;
        int digits_only_run = 1;
        while (digit_at(p, &d)) { /* longer than RUN_MAX: swallow it unmasked */
            p += digit_at(p, &d);
            digits_only_run = 0;
        }
        if (!digits_only_run || !classify(dg, n, x_last, &head, &tail)) {
            put(&k, start, (size_t)(p - start));
            s = p;
            continue;
        }
        masked++;
        int i = 0;
        for (const unsigned char *q = start; q < p;) {
            int dd, ww = digit_at(q, &dd);
            if (!ww) { /* separator, or the final X */
                if (i == n - 1 && x_last && (*q == 'X' || *q == 'x')) {
                    put(&k, q, 1);
                    i++;
                } else {
                    put(&k, q, 1);
                }
                q++;
                continue;
            }
            if (i < head || i >= n - tail)
                put(&k, q, (size_t)ww);
            else
                put(&k, (const unsigned char *)"*", 1);
            i++;
            q += ww;
        }
        s = p;
    }
    out[k.len] = '\0';
    return masked;
}

char *privacy_mask_dup(const char *text)
{
    size_t cap = strlen(text) + 1;
    char *out = malloc(cap);
    if (out)
        privacy_mask(text, out, cap);
    return out;
}
