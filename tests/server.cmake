# Server tests (owned by the e2e/server helper).
#
# Unit tests are C programs linked with redress_core; end-to-end tests are pytest files that
# start the real `redress serve` on 127.0.0.1 with a private data directory (tests/e2e/conftest.py).
add_redress_unit(test_config ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_config.c)
add_redress_unit(test_store ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_store.c)

add_redress_pytest(e2e_chat e2e/test_chat.py)
add_redress_pytest(e2e_resume e2e/test_resume.py)
add_redress_pytest(e2e_idle_flow e2e/test_idle_flow.py)
add_redress_pytest(e2e_flow_timers e2e/test_flow_timers.py)
add_redress_pytest(e2e_http e2e/test_http.py)
add_redress_pytest(e2e_limits e2e/test_limits.py)
add_redress_pytest(e2e_crash e2e/test_crash.py)
add_redress_unit(test_proto ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_proto.c)
add_redress_unit(test_json_print ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_json_print.c)
add_redress_unit(test_heap ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_heap.c)
add_redress_unit(test_timeq ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_timeq.c)
add_redress_unit(test_util_time ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_util_time.c)
add_redress_pytest(e2e_flow_scripts e2e/test_flow_scripts_ws.py)
add_redress_pytest(e2e_complaint e2e/test_complaint.py)
