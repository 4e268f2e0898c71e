/*
 * fuzz_util.h - helpers shared by the libFuzzer harnesses in tests/fuzz (header-only).
 *
 * What it owns: one private temporary directory per fuzzer process (fz_tmpdir, removed at exit),
 * file writing into it, a reference UTF-8 validator written from RFC 3629 independently of the
 * project's own (util_utf8_valid, kb_utf8_valid), and FZ_CHECK, which reports a broken
 * invariant and aborts so that libFuzzer saves the input as a crash.
 *
 * A harness asserts only what the code under test promises in its header; a failed FZ_CHECK is
 * a bug report, never noise.
 */
#ifndef REDRESS_FUZZ_UTIL_H
#define REDRESS_FUZZ_UTIL_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FZ_UNUSED __attribute__((unused))

/* Reports a broken invariant with the harness's file:line and aborts (a libFuzzer crash). */
#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "\n%s:%d: FUZZ CHECK FAILED: %s\n  ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char fz_dir[256];

static int fz_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static void fz_rmdir_all(void)
{
    if (fz_dir[0])
        nftw(fz_dir, fz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The process's private directory (created on first use, removed by atexit).  Aborts when it
 * cannot be made: a harness without its directory cannot test anything. */
static FZ_UNUSED const char *fz_tmpdir(void)
{
    if (fz_dir[0])
        return fz_dir;
    const char *base = getenv("TMPDIR");
    if (!base || !base[0])
        base = "/tmp";
    int n = snprintf(fz_dir, sizeof(fz_dir), "%s/redress-fuzz-XXXXXX", base);
    FZ_CHECK(n > 0 && (size_t)n < sizeof(fz_dir), "TMPDIR too long");
    FZ_CHECK(mkdtemp(fz_dir) != NULL, "mkdtemp %s: %s", fz_dir, strerror(errno));
    atexit(fz_rmdir_all);
    return fz_dir;
}

/* Writes data[0..len) to dir/name (creating one level of subdirectory when name has a '/').
 * Fills path (when not NULL) with the full path.  Aborts on failure. */
static FZ_UNUSED void fz_write(const char *dir, const char *name, const void *data, size_t len,
                               char *path, size_t pathlen)
{
    char buf[512];
    const char *slash = strchr(name, '/');
    if (slash) {
        snprintf(buf, sizeof(buf), "%s/%.*s", dir, (int)(slash - name), name);
        FZ_CHECK(mkdir(buf, 0700) == 0 || errno == EEXIST, "mkdir %s: %s", buf, strerror(errno));
    }
    int n = snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    FZ_CHECK(n > 0 && (size_t)n < sizeof(buf), "path too long");
    FILE *f = fopen(buf, "wb");
    FZ_CHECK(f != NULL, "fopen %s: %s", buf, strerror(errno));
    FZ_CHECK(len == 0 || fwrite(data, 1, len, f) == len, "write %s", buf);
    FZ_CHECK(fclose(f) == 0, "close %s", buf);
    if (path)
        snprintf(path, pathlen, "%s", buf);
}

/* 1 when s[0..n) is well-formed UTF-8 (RFC 3629 table 3-7: no overlong forms, no surrogates,
 * nothing past U+10FFFF; NUL is a valid character). */
static FZ_UNUSED int fz_utf8_ok(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c <= 0x7F) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c == 0xE0) {
            need = 2;
            lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            need = 2;
        } else if (c == 0xED) {
            need = 2;
            hi = 0x9F;
        } else if (c == 0xF0) {
            need = 3;
            lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            need = 3;
        } else if (c == 0xF4) {
            need = 3;
            hi = 0x8F;
        } else {
            return 0;
        }
        if (n - i <= need)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += need + 1;
    }
    return 1;
}

/* Code points in valid UTF-8 s[0..n). */
static FZ_UNUSED size_t fz_utf8_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

/* A malloc'ed copy of data[0..len) with a NUL after it (the copy may contain earlier NULs). */
static FZ_UNUSED char *fz_strndup0(const uint8_t *data, size_t len)
{
    char *s = malloc(len + 1);
    FZ_CHECK(s != NULL, "out of memory");
    if (len)
        memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

#endif
