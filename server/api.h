/*
 * api.h - the JSON APIs under /api: the knowledge-base editor API (/api/kb/...) and flow
 * reload (/api/flows/reload).  Reached through http.c; answers through http_reply().
 *
 * Access: /api/auth/... is open (logins); every other endpoint needs a session whose role has
 * the endpoint's capability (docs/auth.md), or a request from the loopback interface that
 * carries no session cookie (the machine's operator: CLI tools and scripts).
 */
#ifndef REDRESS_API_H
#define REDRESS_API_H

#include "http.h"

struct server;

/* Answers one /api request (now, or later for writes, which go through the store). */
void api_handle(struct server *srv, const http_call_t *call, http_reply_t *h);

#endif
