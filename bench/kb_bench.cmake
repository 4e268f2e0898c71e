# ---- knowledge base: kb_bench (recall on AFQMC, latency at 10k/100k/1M), run by kb_bench.sh ----
add_executable(kb_bench ${CMAKE_CURRENT_LIST_DIR}/kb_bench.c)
target_link_libraries(kb_bench PRIVATE redress_core)
