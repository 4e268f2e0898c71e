# Server sources (everything but main.c goes into redress_core), grouped by subsystem.
set(REDRESS_SERVER_SOURCES
  # foundation
  server/config.c
  server/log.c
  server/privacy.c
  server/util.c
  server/heap.c
  server/json_print.c
  server/schema.c
  # network, protocol, conversations, storage
  server/net.c
  server/ws.c
  server/ws_burst.c
  server/ws_flush.c
  server/http.c
  server/api.c
  server/proto.c
  server/session.c
  server/store.c
  server/metrics.c
  # accounts
  server/auth.c
  server/auth_db.c
  server/auth_session.c
  server/auth_api.c
  server/user_cli.c
  # escalation and hand-off to human agents
  server/agent.c
  server/agent_proto.c
  server/agent_store.c
  server/agent_ctx.c
  server/agent_queue.c
  # complaint records, deadlines, webhooks
  server/complaint.c
  server/complaint_sla.c
  server/timeq.c
  server/webhook.c
  server/webhook_cli.c
  # supervisors' dashboard and CSV export
  server/dashboard.c
  # the Lua dialogue engine
  server/flow.c
  server/flow_gc.c
  server/flow_sandbox.c
  server/flow_pattern.c
  server/flow_keywords.c
  server/flow_json.c
  server/flow_load.c
  server/flow_api.c
  server/flow_run.c
  server/flow_script.c
  server/flow_cli.c
)
