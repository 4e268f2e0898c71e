/*
 * test_heap.c - private heaps (server/heap.c).
 *
 * Both builds: blocks of a heap keep their bytes across heap_realloc and are freed by
 * heap_free with their size.  With jemalloc (the release build; ctest release_build runs this
 * there): every block lives in the heap's own arena, never the process heap's, and once all are
 * freed the arena holds no active page, whatever the rest of the process allocated meanwhile;
 * heap_destroy gives the arena back, and a new heap works after it; and jemalloc runs its
 * background threads (heap.c's malloc_conf).
 */
#include "check.h"
#include "heap.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef REDRESS_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#define NBLOCKS 20000

static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return rnd_state >> 8;
}

static int filled(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

#ifdef REDRESS_JEMALLOC
static unsigned arena_of(const void *p)
{
    unsigned a = ~0u;
    size_t sz = sizeof(a);
    if (mallctl("arenas.lookup", &a, &sz, &p, sizeof(p)) != 0)
        return ~0u;
    return a;
}

static size_t active_pages(unsigned arena)
{
    uint64_t epoch = 1;
    size_t v = 0, sz = sizeof(v);
    char name[64];
    mallctl("epoch", NULL, NULL, &epoch, sizeof(epoch));
    snprintf(name, sizeof(name), "stats.arenas.%u.pactive", arena);
    if (mallctl(name, &v, &sz, NULL, 0) != 0)
        return (size_t)-1;
    return v;
}
#endif

static void test_blocks(void)
{
    heap_t h;
    static unsigned char *blk[NBLOCKS];
    static size_t len[NBLOCKS];
    static void *other[NBLOCKS];
    int wrong = 0, foreign = 0;

    heap_init(&h);
#ifdef REDRESS_JEMALLOC
    CHECK(h.flags != 0); /* jemalloc gave an arena and a cache */
#endif
    for (int i = 0; i < NBLOCKS; i++) {
        len[i] = (i & 1) ? 1 + rnd() % 300 : 1 + rnd() % 3000; /* half of them small */
        blk[i] = heap_realloc(&h, NULL, 0, len[i]);
        CHECK(blk[i] != NULL);
        memset(blk[i], i & 0xff, len[i]);
        other[i] = malloc(1 + rnd() % 3000); /* the process heap, interleaved */
#ifdef REDRESS_JEMALLOC
        if (arena_of(blk[i]) != h.arena || arena_of(other[i]) == h.arena)
            foreign++;
#endif
    }
    CHECK(foreign == 0);
    /* grow and shrink half of them: the common prefix survives */
    for (int i = 0; i < NBLOCKS; i += 2) {
        size_t n = (rnd() & 1) ? 1 + rnd() % 300 : 1 + rnd() % 6000;
        size_t keep = n < len[i] ? n : len[i];
        unsigned char *p = heap_realloc(&h, blk[i], len[i], n);
        CHECK(p != NULL);
        if (!p)
            continue;
        if (!filled(p, keep, i & 0xff))
            wrong++;
        memset(p, i & 0xff, n);
        blk[i] = p;
        len[i] = n;
    }
    CHECK(wrong == 0);
    for (int i = 0; i < NBLOCKS; i++) {
        if (!filled(blk[i], len[i], i & 0xff))
            wrong++;
        heap_free(&h, blk[i], len[i]);
    }
    CHECK(wrong == 0);
    heap_free(&h, NULL, 0);
#ifdef REDRESS_JEMALLOC
    /* everything of the heap is free: with its small blocks and its cache flushed, the arena
     * has no active page, although the process heap's blocks were allocated in between */
    heap_trim(&h);
    CHECK(h.kept == 0);
    mallctl("tcache.flush", NULL, NULL, &h.tcache, sizeof(h.tcache));
    CHECK(active_pages(h.arena) == 0);
#endif
    for (int i = 0; i < NBLOCKS; i++)
        free(other[i]);
    heap_destroy(&h);
    CHECK(h.flags == 0);
    /* a heap after a destroyed one */
    heap_init(&h);
    void *p = heap_realloc(&h, NULL, 0, 100);
    CHECK(p != NULL);
#ifdef REDRESS_JEMALLOC
    CHECK(arena_of(p) == h.arena);
#endif
    heap_free(&h, p, 100);
    heap_destroy(&h);
    heap_release_free();
}

#ifdef REDRESS_JEMALLOC
/* A freed small block is kept on its size class's list and is the next block of that class,
 * growing within its class keeps the block, and the lists hold at most 256 KB. */
static void test_small_blocks_kept(void)
{
    heap_t h;
    static void *blk[9000];
    heap_init(&h);
    CHECK(h.flags != 0);
    unsigned char *p = heap_realloc(&h, NULL, 0, 24);
    CHECK(p != NULL);
    memset(p, 7, 24);
    CHECK(heap_realloc(&h, p, 24, 32) == p); /* 24 and 32 bytes: jemalloc's class of 32 */
    CHECK(filled(p, 24, 7));
    heap_free(&h, p, 32);
    CHECK(h.kept == 32);
    CHECK(heap_realloc(&h, NULL, 0, 17) == p);
    CHECK(h.kept == 0);
    memset(p, 9, 17);
    unsigned char *q = heap_realloc(&h, p, 17, 200); /* another class: a copy */
    CHECK(q != NULL && q != p && filled(q, 17, 9));
    CHECK(h.kept == 32); /* p went on its list */
    heap_free(&h, q, 200);
    for (int i = 0; i < 9000; i++)
        blk[i] = heap_realloc(&h, NULL, 0, 256);
    for (int i = 0; i < 9000; i++)
        heap_free(&h, blk[i], 256);
    CHECK(h.kept == 2 * 1024 * 1024);
    heap_trim(&h);
    CHECK(h.kept == 0);
    mallctl("tcache.flush", NULL, NULL, &h.tcache, sizeof(h.tcache));
    CHECK(active_pages(h.arena) == 0);
    heap_destroy(&h);
}

/* heap.c's malloc_conf took: jemalloc purges from threads of its own, not inside the loop's
 * malloc and free calls (unless MALLOC_CONF says otherwise, which the tests never set). */
static void test_background_purging(void)
{
    bool opt = false, on = false;
    size_t sz = sizeof(opt);
    CHECK(mallctl("opt.background_thread", &opt, &sz, NULL, 0) == 0);
    CHECK(opt);
    sz = sizeof(on);
    CHECK(mallctl("background_thread", &on, &sz, NULL, 0) == 0);
    CHECK(on);
}
#endif

int main(void)
{
    RUN(test_blocks);
#ifdef REDRESS_JEMALLOC
    RUN(test_small_blocks_kept);
    RUN(test_background_purging);
#endif
    return check_summary();
}
