# Kafka idle-connection benchmark client (bench/kafka/idle_connections.sh):
# holds N authenticated connections to busgate. Linux only (epoll).
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  add_executable(kafka_idle_conns ${CMAKE_CURRENT_SOURCE_DIR}/kafka/idle_conns.c)
endif()
