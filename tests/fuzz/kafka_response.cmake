bg_add_fuzzer(kafka_response SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kafka_response.c LIBS bg_kafka_codec)
