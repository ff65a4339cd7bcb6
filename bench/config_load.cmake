# Configuration load benchmark (see docs/benchmarks.md, "Configuration load").
add_executable(config_load_bench ${CMAKE_CURRENT_SOURCE_DIR}/config_load_bench.c)
target_link_libraries(config_load_bench PRIVATE bg_config)
