# Escalation and hand-off tests (issue 5): agent tables, the agent protocol, the console.
#
#   test_agent_queue    the queue's order kept as hand-offs change (server/agent_queue.c)
#   test_agent_store    the agent tables, their writes and the context packet on a real
#                       SQLite file (server/agent_store.c, server/agent_ctx.c)
#   e2e_agent           the agent protocol over the real server: login gate, queue, claim race,
#                       context packet, replies, notes, transfer, resolve, hand back, call-backs
add_redress_unit(test_agent_queue ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_agent_queue.c)
add_redress_unit(test_agent_store ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_agent_store.c)
add_redress_pytest(e2e_agent e2e/test_agent.py)
