bg_add_fuzzer(kafka_authz SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kafka_authz.c LIBS bg_kafka)
