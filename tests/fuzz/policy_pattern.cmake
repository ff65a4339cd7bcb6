bg_add_fuzzer(policy_pattern SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/policy_pattern.c LIBS bg_policy)
