bg_add_fuzzer(kafka_subscription SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kafka_subscription.c
  ${CMAKE_SOURCE_DIR}/adapters/kafka/kafka_subscription.c LIBS bg_core)
