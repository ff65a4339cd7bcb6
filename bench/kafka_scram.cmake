# SCRAM client handshake CPU: cold (PBKDF2 each time) vs the process-wide
# salted-password cache. Compiles kafka_scram.c alone (pure: bytes + OpenSSL).
add_executable(kafka_scram_bench ${CMAKE_CURRENT_SOURCE_DIR}/kafka_scram_bench.c
  ${CMAKE_SOURCE_DIR}/adapters/kafka/kafka_scram.c)
target_link_libraries(kafka_scram_bench PRIVATE bg_core OpenSSL::Crypto Threads::Threads)
