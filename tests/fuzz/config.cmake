bg_add_fuzzer(config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/config.c LIBS bg_config)
