bg_add_fuzzer(kafka_frame SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kafka_frame.c LIBS bg_kafka_codec)
