/*
 * ws_burst.c - a queue of outgoing WebSocket text frames, written several to a send (see
 * ws_burst.h for the contract).
 *
 * Why: on loopback each send also runs the receiver's side of TCP in the sender's context,
 * about 10 us; a turn's frames in one send took the server's sendto calls per turn from 3.67
 * to 1.52 in the closed-loop benchmark (BENCHMARKS.md).
 *
 * A single frame is written in place (its LWS_PRE headroom lets lws add the header).  Several
 * are copied, each behind a header, into one buffer: on the stack up to BURST_STACK bytes, else
 * allocated and freed here.
 */
#include "ws_burst.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BURST_STACK (16u << 10)
#define HEADER_MAX 10

/* Writes the header of an unmasked, final text frame of `len` bytes at h.  Returns its size. */
static size_t frame_header(unsigned char *h, size_t len)
{
    h[0] = 0x81; /* FIN, opcode 1 (text) */
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)len >> (8 * (7 - i)));
    return 10;
}

int ws_burst_send(struct lws *wsi, ws_frame **head, size_t *frames, size_t *bytes)
{
    size_t n = 0, payload = 0;
    for (ws_frame *f = *head; f && n < WS_BURST_MAX; f = f->next) {
        if (n > 0 && payload + f->len > WS_BURST_BYTES)
            break;
        payload += f->len;
        n++;
    }
    *frames = n;
    *bytes = payload;
    if (n == 0)
        return 0;
    int rc;
    if (n == 1) {
        ws_frame *f = *head;
        *head = f->next;
        rc = lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT);
        free(f);
        return rc < 0 ? -1 : 0;
    }
    size_t total = payload + n * HEADER_MAX;
    unsigned char stack[LWS_PRE + BURST_STACK];
    unsigned char *buf = total <= BURST_STACK ? stack : malloc(LWS_PRE + total);
    unsigned char *p = buf ? buf + LWS_PRE : NULL;
    for (size_t i = 0; i < n; i++) {
        ws_frame *f = *head;
        *head = f->next;
        if (p) {
            p += frame_header(p, f->len);
            memcpy(p, f->buf + LWS_PRE, f->len);
            p += f->len;
        }
        free(f);
    }
    if (!buf)
        return -1;
    rc = lws_write(wsi, buf + LWS_PRE, (size_t)(p - (buf + LWS_PRE)), LWS_WRITE_RAW);
    if (buf != stack)
        free(buf);
    return rc < 0 ? -1 : 0;
}
