# Browser tests: Debian's chromium driven by playwright-core (tests/browser/package.json,
# installed with `npm ci` in tests/browser; server/bootstrap.sh test does that) against the
# real `redress serve`.
#   browser_widget   the customer chat widget (web/widget/)
#   browser_handoff  the widget and the agent console (web/console/) through one full hand-off
#   browser_followup after a resolved hand-off: the console's follow-up list (待回访) and the
#                    widget's link to the complaint progress page (web/status/)
# Screenshots land in tests/artifacts/.  -DREDRESS_BROWSER_TESTS=OFF leaves the tests out.
option(REDRESS_BROWSER_TESTS "Register the browser tests (need node, npm ci, chromium)" ON)

if(REDRESS_BROWSER_TESTS)
  find_program(REDRESS_NODE node)
  set(REDRESS_BROWSER_DIR ${CMAKE_CURRENT_SOURCE_DIR}/browser)

  function(add_browser_test name file)
    if(REDRESS_NODE)
      # Missing node_modules or chromium make the test fail with a message saying what to install.
      add_test(NAME ${name}
        COMMAND ${REDRESS_NODE} --test ${REDRESS_BROWSER_DIR}/${file}
        WORKING_DIRECTORY ${REDRESS_BROWSER_DIR})
    else()
      add_test(NAME ${name}
        COMMAND ${CMAKE_COMMAND} -E echo "${name}: node not found; install nodejs and npm, then run npm ci in tests/browser (or configure with -DREDRESS_BROWSER_TESTS=OFF)")
      set_tests_properties(${name} PROPERTIES WILL_FAIL ON)
    endif()
    set_tests_properties(${name} PROPERTIES TIMEOUT 300
      ENVIRONMENT "REDRESS_BIN=$<TARGET_FILE:redress>;REDRESS_SOURCE_DIR=${CMAKE_SOURCE_DIR};ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  endfunction()

  add_browser_test(browser_widget widget.test.mjs)
  add_browser_test(browser_handoff handoff.test.mjs)
  add_browser_test(browser_followup followup.test.mjs)
endif()
