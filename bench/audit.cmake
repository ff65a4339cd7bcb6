# Audit pipeline benchmark (see docs/benchmarks.md, "Audit pipeline").
add_executable(audit_bench ${CMAKE_CURRENT_SOURCE_DIR}/audit_bench.c)
target_link_libraries(audit_bench PRIVATE bg_audit PkgConfig::RDKAFKA Threads::Threads)
