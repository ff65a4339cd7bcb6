bg_add_fuzzer(audit_spool SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/audit_spool.c LIBS bg_audit)
