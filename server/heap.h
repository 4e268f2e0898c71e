/*
 * heap.h - the process's allocator where the server cares which one it is: private heaps for
 * allocations with a lifetime of their own, and giving free memory back to the system.
 */
#ifndef REDRESS_HEAP_H
#define REDRESS_HEAP_H

#include <stddef.h>

/* A private heap (the Lua VM's, flow.c).  With jemalloc (REDRESS_JEMALLOC) it is an arena and a
 * thread cache of its own, so that its blocks never share a page with the rest of the process;
 * otherwise, or when jemalloc refuses one, it is the process heap.  Used by one thread at a
 * time. */
#define HEAP_CLASSES 13 /* jemalloc's small size classes up to HEAP_SMALL bytes */
#define HEAP_SMALL 256

typedef struct heap {
    int flags; /* mallocx flags; 0: the process heap */
    unsigned arena, tcache;
    void *free[HEAP_CLASSES]; /* free small blocks by class, linked through their first word */
    size_t kept;              /* bytes in those lists */
} heap_t;

/* Sets up h; cannot fail (it falls back on the process heap). */
void heap_init(heap_t *h);
/* realloc of p, a block of h of exactly osize bytes as last asked for, to size > 0 bytes (p
 * NULL: a new block, osize ignored).  NULL on failure, p left as it was. */
void *heap_realloc(heap_t *h, void *p, size_t osize, size_t size);
/* Frees p, a block of h of exactly `size` bytes as last asked for (p may be NULL). */
void heap_free(heap_t *h, void *p, size_t size);
/* Gives h's free small blocks back to its arena (before a purge, heap_release_free). */
void heap_trim(heap_t *h);
/* Ends h; every block of it must have been freed.  A zeroed heap_t (heap_init never ran) is
 * the process heap, and ending it does nothing. */
void heap_destroy(heap_t *h);

/* Gives the pages the allocator holds free back to the system: jemalloc's purge of every
 * arena, glibc's malloc_trim(0) otherwise.  15 ms with 15,000 connections: for quiet moments
 * (flow_gc.c), not for every turn. */
void heap_release_free(void);

#endif
