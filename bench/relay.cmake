# A bare TCP relay (bench/amqp/perftest.sh and bench/kafka/passthrough.sh,
# BENCH_RELAY=1): the cost of an extra hop with no inspection, beside direct
# and busgate. Linux only.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  add_executable(tcp_relay ${CMAKE_CURRENT_SOURCE_DIR}/tcp_relay.c)
endif()
