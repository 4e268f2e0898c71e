# Server sources (everything but main.c goes into redress_core).
set(REDRESS_SERVER_SOURCES
  server/config.c
  server/log.c
  server/util.c
  server/store.c
  server/proto.c
  server/metrics.c
  server/session.c
  server/ws.c
  server/http.c
  server/net.c
)
