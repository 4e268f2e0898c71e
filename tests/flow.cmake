# Flow engine tests (server/flow*.c, rules/).
add_redress_unit(test_flow_engine unit/test_flow_engine.c)
add_redress_unit(test_flow_sandbox unit/test_flow_sandbox.c)
add_redress_unit(test_flow_pattern unit/test_flow_pattern.c)
