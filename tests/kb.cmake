# Knowledge-base tests (owned by the kb helper): C unit tests named kb_*, plus the CLI end to end.
foreach(t tokenizer synonyms query import store api search)
  add_redress_unit(kb_${t} ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_kb_${t}.c)
endforeach()
add_redress_pytest(kb_cli kb_cli_test.py)

# Optional libFuzzer target for the query path: configure with CC=clang -DREDRESS_FUZZ=ON.
option(REDRESS_FUZZ "Build libFuzzer targets (needs clang)" OFF)
if(REDRESS_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
  add_executable(fuzz_kb_query ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_kb_query.c)
  target_compile_options(fuzz_kb_query PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_kb_query PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_kb_query PRIVATE redress_core)
endif()
