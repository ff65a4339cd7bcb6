bg_add_fuzzer(audit_avro SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/audit_avro.c LIBS bg_audit)
