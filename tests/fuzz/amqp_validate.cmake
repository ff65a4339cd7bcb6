bg_add_fuzzer(amqp_validate SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/amqp_validate.c LIBS bg_amqp_codec)
