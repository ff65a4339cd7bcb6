bg_add_fuzzer(amqp_frame SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/amqp_frame.c LIBS bg_amqp_codec)
