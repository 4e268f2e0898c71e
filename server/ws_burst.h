/*
 * ws_burst.h - a queue of outgoing WebSocket text frames, written several to a send.
 *
 * A WRITEABLE callback that has a few frames queued (a turn is an ack, a bot message and often
 * a status) writes them with one lws_write instead of one each: ws_burst_send() frames the
 * payloads itself (RFC 6455 5.2, server to client: FIN, opcode text, unmasked, 2-, 4- or
 * 10-byte header) into one buffer and hands it to lws as LWS_WRITE_RAW, which lws sends as it
 * is, keeping what the kernel did not take and sending it before the next WRITEABLE, as it
 * does for a single frame.  Only valid on a connection with no extension (permessage-deflate
 * would have to see each frame): server/net.c and bench/echo_server.c negotiate none.  Used by
 * server/ws.c and, so that the transport baseline writes the same way, bench/echo_server.c.
 */
#ifndef REDRESS_WS_BURST_H
#define REDRESS_WS_BURST_H

#include <libwebsockets.h>
#include <stddef.h>

#define WS_BURST_MAX 8             /* most frames in one send */
#define WS_BURST_BYTES (64u << 10) /* most payload bytes in one send, unless one frame alone */

/* One queued frame: allocated by the queue's owner as malloc(sizeof(ws_frame) + LWS_PRE +
 * len), the payload at buf + LWS_PRE. */
typedef struct ws_frame {
    struct ws_frame *next;
    size_t len;
    unsigned char buf[];
} ws_frame;

/* Writes the first frames of the list *head (at most WS_BURST_MAX and, past the first,
 * WS_BURST_BYTES of payload) in one lws_write, unlinks and frees them.  *frames and *bytes get
 * how many frames and payload bytes were taken (the caller keeps its tail pointer and counts).
 * Returns 0, or -1 when lws failed (the connection is to be closed; the frames are freed). */
int ws_burst_send(struct lws *wsi, ws_frame **head, size_t *frames, size_t *bytes);

#endif
