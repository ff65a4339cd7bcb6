bg_add_fuzzer(jwt SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/jwt.c LIBS bg_identity)
