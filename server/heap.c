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
 * Ownership: heap_t is embedded in its user (flow_engine_t); heap_init/heap_destroy bracket
 * every block.  Without jemalloc (the sanitizer build, -DREDRESS_JEMALLOC=OFF) every function
 * is the libc call it replaces.
 */
#include "heap.h"

#include <stdio.h>
#include <stdlib.h>
#ifdef REDRESS_JEMALLOC
#include <jemalloc/jemalloc.h>
#elif defined(__GLIBC__)
#include <malloc.h>
#endif

#ifdef REDRESS_JEMALLOC

/* Read by jemalloc when it starts; see "Purging in the background". */
const char *malloc_conf = "background_thread:true";

void heap_init(heap_t *h)
{
    size_t sz = sizeof(unsigned);
    h->flags = 0;
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

void *heap_realloc(heap_t *h, void *p, size_t size)
{
    return p ? rallocx(p, size, h->flags) : mallocx(size, h->flags);
}

void heap_free(heap_t *h, void *p, size_t size)
{
    if (p)
        sdallocx(p, size, h->flags);
}

void heap_destroy(heap_t *h)
{
    char name[64];
    if (!h->flags)
        return;
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

void *heap_realloc(heap_t *h, void *p, size_t size)
{
    (void)h;
    return realloc(p, size);
}

void heap_free(heap_t *h, void *p, size_t size)
{
    (void)h;
    (void)size;
    free(p);
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
