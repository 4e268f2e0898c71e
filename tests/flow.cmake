# Flow engine tests (server/flow*.c) and the rules' own conversation scripts (rules/tests).
#
#   test_flow_engine    the engine API: steps, restart at every turn, hot reload mid-conversation,
#                       isolation of runaway / memory-bomb flows, timers, escalation hook, kb.search
#   test_flow_sandbox   every escape and abuse script in tests/sandbox/ through the real engine
#   test_flow_gc        collection in idle time: calls do not collect, slices do, memory bounded
#   test_flow_pattern   the budgeted pattern matcher against Lua's own, plus its budget
#   test_flow_keywords  keyword sets (one-pass word matching) against string.find loops
#   test_flow_json      Lua values to the JSON text a state is saved as: every type, refusals
#                       with their path, views, and random values printed and read back
#   test_flow_cli       `redress flow reload|check|test` (reload against a stand-in HTTP server)
#   flow_check          `redress flow check` on the shipped rules
#   flow_scripts        `redress flow test` on rules/tests/*.test with the sample knowledge base
#   flow_scripts_nokb   the same scripts with an empty knowledge base (they must not depend on
#                       the sample's content: every category has standard solutions)
add_redress_unit(test_flow_engine unit/test_flow_engine.c)
add_redress_unit(test_flow_sandbox unit/test_flow_sandbox.c)
add_redress_unit(test_flow_gc unit/test_flow_gc.c)
add_redress_unit(test_flow_pattern unit/test_flow_pattern.c)
add_redress_unit(test_flow_keywords unit/test_flow_keywords.c)
add_redress_unit(test_flow_json unit/test_flow_json.c)
add_redress_unit(test_flow_cli unit/test_flow_cli.c)

add_test(NAME flow_check COMMAND redress flow check ${CMAKE_SOURCE_DIR}/rules)
add_test(NAME flow_scripts
  COMMAND redress flow test --rules.dir=${CMAKE_SOURCE_DIR}/rules
          --kb.seed=${CMAKE_SOURCE_DIR}/kb/sample --log.level=warn)
add_test(NAME flow_scripts_nokb
  COMMAND redress flow test --rules.dir=${CMAKE_SOURCE_DIR}/rules --kb.seed= --log.level=warn)
set_tests_properties(flow_check flow_scripts flow_scripts_nokb PROPERTIES TIMEOUT 300)

# The escalation rules over the real server and WebSocket: every rule fires on its trigger
# (VIP via the customers table, deadlines via a moved flow clock), ordinary complaints do not.
add_redress_pytest(e2e_escalation e2e/test_escalation.py)

# Follow-up after resolution over the real server with the shipped rules: an agent resolves, the
# survey's answers land in the surveys table and close the record; an unanswered survey is listed
# by GET /api/complaints/followups and becomes overdue; progress questions answered in the chat.
add_redress_pytest(e2e_followup e2e/test_followup.py)
