/*
 * api.h - the JSON APIs under /api: the knowledge-base editor API (/api/kb/...) and flow
 * reload (/api/flows/reload).  Reached through http.c; answers through http_reply().
 *
 * Until accounts and roles exist, every /api endpoint answers only clients on the loopback
 * interface (403 otherwise), and only when api.enabled is on (the default).
 */
#ifndef REDRESS_API_H
#define REDRESS_API_H

#include "http.h"

struct server;

/* Answers one /api request (now, or later for writes, which go through the store). */
void api_handle(struct server *srv, const http_call_t *call, http_reply_t *h);

#endif
