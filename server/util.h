/*
 * util.h - small helpers shared by the server modules: random tokens, UTF-8 checks,
 * timestamps, and a string-keyed hash map.
 */
#ifndef REDRESS_UTIL_H
#define REDRESS_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Fills out (2*nbytes+1 chars) with nbytes of OS randomness in lowercase hex.
 * Returns 0, or -1 when the OS gave no randomness. */
int util_random_hex(char *out, size_t nbytes);

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int util_utf8_valid(const char *s, size_t len);

/* Number of code points in valid UTF-8 s. */
size_t util_utf8_chars(const char *s);

/* 1 when s is empty or only ASCII/Unicode white space (including U+3000). */
int util_blank(const char *s);

/* Creates dir and its missing parents (mode 0750).  Returns 0 (also for "" or an existing
 * directory), or -1 with errno set. */
int util_mkdirs(const char *dir);

/* Current UTC time as "2026-11-26T15:04:05.123Z" into out (>= 25 bytes). */
void util_iso_now(char *out, size_t outlen);

/* Wall-clock seconds since the Unix epoch. */
double util_wall_s(void);

/* Monotonic milliseconds. */
uint64_t util_now_ms(void);

/*
 * util_buf: a growing byte buffer, kept NUL-terminated.  After an allocation failure `failed`
 * is set and further additions do nothing; the owner frees p and reports out of memory.
 * Start from {0}.
 */
typedef struct util_buf {
    char *p;
    size_t len, cap;
    int failed;
} util_buf;
/* Room for n more bytes and the NUL.  0, or -1 (failed). */
int util_buf_reserve(util_buf *b, size_t n);
void util_buf_add(util_buf *b, const char *s, size_t n);

/* FNV-1a, 64 bits, of a NUL-terminated string (the map's hash; session.c's message ids). */
uint64_t util_hash_str(const char *s);

/*
 * map_t: string -> pointer hash map (chained, power-of-two buckets).  Keys are copied and
 * owned by the map; values are borrowed.  Not thread-safe.
 */
typedef struct map map_t;
map_t *map_new(void);
void map_free(map_t *m); /* frees keys and the map, not the values */
void *map_get(const map_t *m, const char *key);
int map_put(map_t *m, const char *key, void *value); /* replaces; 0 or -1 (out of memory) */
void *map_del(map_t *m, const char *key);            /* returns the removed value or NULL */
size_t map_count(const map_t *m);
/* Calls fn for every entry; fn must not change the map. */
void map_each(const map_t *m, void (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
