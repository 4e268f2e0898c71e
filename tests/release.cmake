# The serve command's build (RelWithDebInfo, jemalloc, -O2 warnings as errors), checked from
# the sanitizer tree, whose own build has neither: tests/release/check.sh builds it in
# BUILD/release-check and runs end-to-end files against it.
if(REDRESS_SANITIZE)
  add_test(NAME release_build
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/release/check.sh ${CMAKE_SOURCE_DIR}
      ${CMAKE_BINARY_DIR}/release-check)
  set_tests_properties(release_build PROPERTIES TIMEOUT 900)
endif()
