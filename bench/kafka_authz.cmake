# Kafka request authorization benchmark (Produce 10 topics x 10 partitions).
add_executable(kafka_authz_bench ${CMAKE_CURRENT_SOURCE_DIR}/kafka_authz_bench.c)
target_link_libraries(kafka_authz_bench PRIVATE bg_kafka)
