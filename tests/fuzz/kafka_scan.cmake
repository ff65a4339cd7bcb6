bg_add_fuzzer(kafka_scan SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kafka_scan.c
  LIBS bg_kafka bg_kafka_codec PkgConfig::LIBEVENT)
