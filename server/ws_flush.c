/*
 * ws_flush.c - connections with frames to write, written at the end of the loop pass (see
 * ws_flush.h for why and the contract).
 *
 * The list is intrusive and doubly linked through a pointer to the previous link, so an item is
 * unlisted in O(1) when its connection closes.  A flush takes items from the head one at a time
 * and unlists each before calling the owner, which may free other items' connections (a failed
 * write closes only its own) but never frees the list.  Items added while a flush runs are
 * refused, so a callback that queues more (a replay page on drain) cannot make one flush run
 * without end; those frames go out on WRITEABLE.
 */
#include "ws_flush.h"

#include <stddef.h>

static void run(ws_flush *f)
{
    f->running = 1;
    while (f->head) {
        ws_flush_item *it = f->head;
        ws_flush_remove(it);
        f->write(it);
    }
    f->running = 0;
}

static void on_prepare(uv_prepare_t *h)
{
    run(h->data);
}

static void on_check(uv_check_t *h)
{
    run(h->data);
}

void ws_flush_start(ws_flush *f, uv_loop_t *loop, void (*write)(ws_flush_item *it))
{
    f->head = NULL;
    f->running = 0;
    f->write = write;
    uv_prepare_init(loop, &f->prepare);
    uv_check_init(loop, &f->check);
    f->prepare.data = f->check.data = f;
    uv_prepare_start(&f->prepare, on_prepare);
    uv_check_start(&f->check, on_check);
    uv_unref((uv_handle_t *)&f->prepare);
    uv_unref((uv_handle_t *)&f->check);
    f->started = 1;
}

void ws_flush_stop(ws_flush *f)
{
    if (!f->started)
        return;
    run(f);
    f->started = 0;
    uv_close((uv_handle_t *)&f->prepare, NULL);
    uv_close((uv_handle_t *)&f->check, NULL);
}

int ws_flush_add(ws_flush *f, ws_flush_item *it)
{
    if (it->pprev)
        return 0;
    if (!f->started || f->running)
        return -1;
    it->next = f->head;
    if (it->next)
        it->next->pprev = &it->next;
    f->head = it;
    it->pprev = &f->head;
    return 0;
}

void ws_flush_remove(ws_flush_item *it)
{
    if (!it->pprev)
        return;
    *it->pprev = it->next;
    if (it->next)
        it->next->pprev = it->pprev;
    it->next = NULL;
    it->pprev = NULL;
}
