# Supervisors' dashboard and CSV export (issue 6): server/dashboard.c, web/dashboard/.
#
#   test_dashboard      date ranges, every figure's definition and the CSV (quoting, BOM,
#                       masking) on an in-memory database with known rows
#   e2e_dashboard       the real server with the shipped flows: complaints over /chat on two
#                       days (a restart with a later clock breaches deadlines), agents claim and
#                       resolve; every figure of /api/dashboard and the CSV export compared with
#                       the same figure computed from the server's SQLite file; access and
#                       range errors
#   browser_dashboard   web/dashboard/ in chromium: login, charts drawn, KPI tiles equal to the
#                       API, a screenshot in tests/artifacts/ (needs npm ci in web/ and
#                       tests/browser; registered with the other browser tests' function)
add_redress_unit(test_dashboard ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_dashboard.c)
add_redress_pytest(e2e_dashboard e2e/test_dashboard.py)
if(REDRESS_BROWSER_TESTS AND COMMAND add_browser_test)
  add_browser_test(browser_dashboard dashboard.test.mjs)
endif()
