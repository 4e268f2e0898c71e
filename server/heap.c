/*
 * heap.c - private heaps and giving free memory back, over jemalloc or glibc.
 *
 * Why a private heap.  The Lua VM's objects come and go with conversations: 8 KB of flow
 * state each while a conversation is live, all of it freed when its flow parks.  In the
 * process heap those blocks share pages with the long-lived ones allocated at the same moments
 * (libwebsockets' connection, the session), so parking 15,000 flows at once freed 119 MB that
 * the system never got back: jemalloc's slabs stayed 40 % empty (77.9 MB allocated in 130 MB
 * of active pages).  The VM's own arena holds only its own blocks, and a purge returns them:
 * 98 MB of active pages, and the idle bench at default settings 8,486 -> 6,356 bytes per
 * conversation (BENCHMARKS.md).
 * Its own thread cache is needed too: the default one is shared by everything the loop thread
 * allocates, and an explicit arena with no cache would pay a lock per block.
 *
 * Purging in the background.  jemalloc gives dirty pages back to the system some seconds after
 * they are freed (its decay), and without background threads it does so inside whatever
 * malloc or free call happens to find the time up: on the loop thread, madvise() and the page
 * faults that follow cost 4-5 % of a turn under load (perf, a search on every message).
 * malloc_conf below turns on jemalloc's background threads, which do the purging on their
 * own; the MALLOC_CONF environment variable still overrides it.  Measured in alternation
 * (BENCHMARKS.md): the loop's CPU a turn 356-358 -> 323-343 us, 2,674-2,687 -> 2,809-2,994
 * turns/s with a search on every message.
 *
 * Small blocks kept.  The VM allocates and frees about 120 blocks a turn, nearly all of them
 * small (strings, tables, closures).  Through an explicit arena and thread cache, mallocx and
 * sdallocx took 160-190 instructions each (callgrind, the loop thread under the closed-loop
 * bench), 4 % of a turn.  So a freed block of at most HEAP_SMALL bytes goes on a list of its
 * jemalloc size class, up to HEAP_KEEP bytes in all, and the next block of that class is taken
 * from there.  Blocks are asked of jemalloc at their class's size and given back at that size,
 * so sdallocx always gets the size the block was allocated with.  heap_trim empties the lists
 * before a purge and heap_destroy does before the arena goes.
 *
 * Ownership: heap_t is embedded in its user (flow_engine_t); heap_init/heap_destroy bracket
 * every block.  Without jemalloc (the sanitizer build, -DREDRESS_JEMALLOC=OFF) every function
 * is the libc call it replaces.
 */
#include "heap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef REDRESS_JEMALLOC
#include <jemalloc/jemalloc.h>
#elif defined(__GLIBC__)
#include <malloc.h>
#endif

#ifdef REDRESS_JEMALLOC

/* Read by jemalloc when it starts; see "Purging in the background". */
const char *malloc_conf = "background_thread:true";

#define HEAP_KEEP (2 * 1024 * 1024)

/* jemalloc's small classes (16-byte quantum): 8, 16, 32, 48, ..., 128, 160, ..., 256. */
static const unsigned short class_size[HEAP_CLASSES] = {8,   16,  32,  48,  64,  80, 96,
                                                        112, 128, 160, 192, 224, 256};

/* The class of a size of 1..HEAP_SMALL bytes. */
static int class_of(size_t size)
{
    if (size <= 8)
        return 0;
    if (size <= 128)
        return (int)((size + 15) >> 4);
    return 8 + (int)((size - 128 + 31) >> 5);
}

/* The first block of class c's list, taken off it; NULL when the list is empty. */
static void *pop(heap_t *h, int c)
{
    void *p = h->free[c];
    if (p) {
        h->free[c] = *(void **)p;
        h->kept -= class_size[c];
    }
    return p;
}

/* A new block of size bytes: a kept one of its class when there is one. */
static void *new_block(heap_t *h, size_t size)
{
    if (size > HEAP_SMALL)
        return mallocx(size, h->flags);
    int c = class_of(size);
    void *p = pop(h, c);
    return p ? p : mallocx(class_size[c], h->flags);
}

static void small_free(heap_t *h, void *p, int c)
{
    if (h->kept + class_size[c] <= HEAP_KEEP) {
        *(void **)p = h->free[c];
        h->free[c] = p;
        h->kept += class_size[c];
    } else {
        sdallocx(p, class_size[c], h->flags);
    }
}

void heap_init(heap_t *h)
{
    size_t sz = sizeof(unsigned);
    h->flags = 0;
    h->kept = 0;
    for (int c = 0; c < HEAP_CLASSES; c++)
        h->free[c] = NULL;
    if (mallctl("arenas.create", &h->arena, &sz, NULL, 0) != 0)
        return;
    sz = sizeof(unsigned);
    if (mallctl("tcache.create", &h->tcache, &sz, NULL, 0) != 0) {
        char name[64];
        snprintf(name, sizeof(name), "arena.%u.destroy", h->arena);
        mallctl(name, NULL, NULL, NULL, 0);
        return;
    }
    h->flags = MALLOCX_ARENA(h->arena) | MALLOCX_TCACHE(h->tcache);
}

void *heap_realloc(heap_t *h, void *p, size_t osize, size_t size)
{
    if (!h->flags)
        return realloc(p, size);
    if (!p)
        return new_block(h, size);
    if (osize > HEAP_SMALL && size > HEAP_SMALL)
        return rallocx(p, size, h->flags);
    if (osize <= HEAP_SMALL && size <= HEAP_SMALL && class_of(osize) == class_of(size))
        return p; /* the block has room already */
    void *q = new_block(h, size);
    if (!q)
        return NULL;
    memcpy(q, p, osize < size ? osize : size);
    heap_free(h, p, osize);
    return q;
}

void heap_free(heap_t *h, void *p, size_t size)
{
    if (!p)
        return;
    if (!h->flags)
        free(p);
    else if (size <= HEAP_SMALL)
        small_free(h, p, class_of(size));
    else
        sdallocx(p, size, h->flags);
}

void heap_trim(heap_t *h)
{
    for (int c = 0; c < HEAP_CLASSES; c++)
        for (void *p; (p = pop(h, c)) != NULL;)
            sdallocx(p, class_size[c], h->flags);
}

void heap_destroy(heap_t *h)
{
    char name[64];
    if (!h->flags)
        return;
    heap_trim(h);
    mallctl("tcache.destroy", NULL, NULL, &h->tcache, sizeof(h->tcache));
    snprintf(name, sizeof(name), "arena.%u.destroy", h->arena);
    mallctl(name, NULL, NULL, NULL, 0);
    h->flags = 0;
}

void heap_release_free(void)
{
#define HEAP_STR(x) HEAP_STR2(x)
#define HEAP_STR2(x) #x
    mallctl("arena." HEAP_STR(MALLCTL_ARENAS_ALL) ".purge", NULL, NULL, NULL, 0);
}

#else

void heap_init(heap_t *h)
{
    h->flags = 0;
}

void *heap_realloc(heap_t *h, void *p, size_t osize, size_t size)
{
    (void)h;
    (void)osize;
    return realloc(p, size);
}

void heap_free(heap_t *h, void *p, size_t size)
{
    (void)h;
    (void)size;
    free(p);
}

void heap_trim(heap_t *h)
{
    (void)h;
}

void heap_destroy(heap_t *h)
{
    (void)h;
}

void heap_release_free(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

#endif
