# Knowledge-base tests (owned by the kb helper): C unit tests named kb_*, plus the CLI end to end.
# The libFuzzer target for kb_analyze/kb_search is fuzz_kb in tests/fuzz (REDRESS_FUZZ=ON).
foreach(t tokenizer synonyms query import store api search)
  add_redress_unit(kb_${t} ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_kb_${t}.c)
endforeach()
add_redress_pytest(kb_cli kb_cli_test.py)
