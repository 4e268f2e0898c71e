# bench/bench.cmake - included by the top CMakeLists.txt.  The benchmark programs in bench/ are
# built only when asked:  cmake -S . -B build-bench -DREDRESS_BENCH=ON
option(REDRESS_BENCH "Build the benchmark programs in bench/ (load generator, echo server, KB benchmark)" OFF)
if(REDRESS_BENCH)
  add_subdirectory(${CMAKE_CURRENT_LIST_DIR} ${CMAKE_BINARY_DIR}/bench)
endif()
