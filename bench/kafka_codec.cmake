# Kafka codec benchmark: decode + re-encode of a Produce request and a Fetch
# response (10 topics x 10 partitions), the adapter's hot path.
add_executable(kafka_codec_bench ${CMAKE_CURRENT_SOURCE_DIR}/kafka_codec_bench.c)
target_link_libraries(kafka_codec_bench PRIVATE bg_kafka_codec)
