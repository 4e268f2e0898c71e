# Server sources (everything but main.c goes into redress_core).
set(REDRESS_SERVER_SOURCES
  server/config.c  server/log.c
  server/auth.c
  server/auth_db.c
  server/auth_session.c
  server/auth_api.c
  server/user_cli.c
  server/privacy.c
server/flow.c
  server/flow_sandbox.c
  server/flow_pattern.c
  server/flow_json.c
  server/flow_load.c
  server/flow_api.c
  server/flow_run.c
  server/flow_script.c
  server/flow_cli.c
  server/util.c
  server/store.c
  server/proto.c
  server/metrics.c
  server/session.c
  server/ws.c  server/http.c
  server/api.c
  server/net.c
)
