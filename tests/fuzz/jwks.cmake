bg_add_fuzzer(jwks SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/jwks.c LIBS bg_identity)
