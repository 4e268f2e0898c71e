# Fuzzing (tests/fuzz/README.md), included by tests/CMakeLists.txt.
#
# fuzz_smoke builds the libFuzzer targets with clang in its own directory under the build tree
# (the main build is not touched) and runs each one for REDRESS_FUZZ_SMOKE_SECONDS over its
# committed seeds; any crash, sanitizer report, leak or timeout fails it.  Without clang or its
# libFuzzer runtime the test is skipped (exit 77).  Long runs: tests/fuzz/run.sh.
set(REDRESS_FUZZ_SMOKE_SECONDS 20 CACHE STRING "seconds each fuzzer runs in the fuzz_smoke test")
add_test(NAME fuzz_smoke
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/smoke.sh ${CMAKE_BINARY_DIR}/fuzz-smoke
          ${REDRESS_FUZZ_SMOKE_SECONDS})
set_tests_properties(fuzz_smoke PROPERTIES TIMEOUT 900 SKIP_RETURN_CODE 77 LABELS fuzz)
