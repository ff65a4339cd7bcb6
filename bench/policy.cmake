# Policy evaluation benchmark (see docs/benchmarks.md, "Policy evaluation").
add_executable(policy_bench ${CMAKE_CURRENT_SOURCE_DIR}/policy_bench.c)
target_link_libraries(policy_bench PRIVATE bg_policy)
