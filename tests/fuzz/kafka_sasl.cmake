# SASL parsers of the Kafka adapter: OAUTHBEARER / PLAIN (client -> busgate)
# and SCRAM server-first / server-final (upstream broker -> busgate). Compiles
# just the two pure units so it does not depend on the rest of bg_kafka.
bg_add_fuzzer(kafka_sasl SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kafka_sasl.c
  ${CMAKE_SOURCE_DIR}/adapters/kafka/kafka_sasl.c ${CMAKE_SOURCE_DIR}/adapters/kafka/kafka_scram.c
  LIBS bg_core OpenSSL::Crypto)
