# Kafka idle-connection benchmark client (bench/kafka/idle_connections.sh):
# holds N authenticated connections to busgate. Linux only (epoll).
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  add_executable(kafka_idle_conns ${CMAKE_CURRENT_SOURCE_DIR}/kafka/idle_conns.c)
endif()

# Produce latency probe (bench/kafka/passthrough.sh, "latency" phase):
# librdkafka producer at a fixed rate, delivery and request round-trip
# percentiles in microseconds.
add_executable(kafka_produce_latency ${CMAKE_CURRENT_SOURCE_DIR}/kafka/produce_latency.c)
target_link_libraries(kafka_produce_latency PRIVATE PkgConfig::RDKAFKA PkgConfig::JANSSON)
