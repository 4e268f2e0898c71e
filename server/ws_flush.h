/*
 * ws_flush.h - frames queued during a loop pass are written at the end of that pass, not after
 * a POLLOUT round trip.
 *
 * A connection whose write queue was empty lists itself (ws_flush_add).  Two loop handles write
 * every listed connection through the owner's callback: a check handle right after the poll
 * phase (frames queued by socket reads and store completions) and a prepare handle right before
 * the next poll (frames queued by timers and other callbacks that run outside the poll phase),
 * so nothing listed waits through a blocking poll.  The callback decides how: it writes now
 * (lws_write outside WRITEABLE is safe while lws has no partial send buffered) or falls back to
 * lws_callback_on_writable.
 *
 * Why: asking for WRITEABLE costs two epoll_ctl calls (arm and disarm POLLOUT) and one more
 * loop pass before the frames leave; under load a pass handles dozens of turns, so the reply
 * waited for a whole pass of other conversations' turns (BENCHMARKS.md).
 *
 * Used by server/ws.c and, so that the transport baseline writes the same way,
 * bench/echo_server.c.  Loop thread only.
 */
#ifndef REDRESS_WS_FLUSH_H
#define REDRESS_WS_FLUSH_H

#include <uv.h>

/* Embedded in the owner's connection; zeroed = not listed. */
typedef struct ws_flush_item {
    struct ws_flush_item *next, **pprev;
} ws_flush_item;

typedef struct ws_flush {
    uv_prepare_t prepare;
    uv_check_t check;
    ws_flush_item *head;
    int running; /* inside a flush: an add then fails (the callback's own writes go on WRITEABLE) */
    int started;
    void (*write)(ws_flush_item *it); /* called for each listed item, after unlisting it */
} ws_flush;

/* Starts the handles on loop (unreferenced: they do not keep the loop alive). */
void ws_flush_start(ws_flush *f, uv_loop_t *loop, void (*write)(ws_flush_item *it));

/* Writes what is listed, then closes the handles (f must stay valid until the loop has run their
 * close callbacks, as for any handle). */
void ws_flush_stop(ws_flush *f);

/* Lists it (no-op when listed).  0, or -1 when it cannot be listed (not started, or a flush is
 * running): the caller then asks lws for WRITEABLE as before. */
int ws_flush_add(ws_flush *f, ws_flush_item *it);

/* Unlists it (no-op when not listed): before its connection is freed. */
void ws_flush_remove(ws_flush_item *it);

#endif
