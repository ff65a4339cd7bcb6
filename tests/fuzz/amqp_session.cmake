# The AMQP session's per-frame dispatcher (amqp_channel.c + amqp_authz.c,
# #included by the target) behind the fake session of the unit tests; the
# policy comes from the policy tests' table helper.
bg_add_fuzzer(amqp_session SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/amqp_session.c
  ${CMAKE_SOURCE_DIR}/tests/unit/policy/policy_test_util.c
  LIBS bg_amqp_codec bg_policy bg_core PkgConfig::LIBEVENT)
target_include_directories(fuzz_amqp_session PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit/policy)
target_compile_options(fuzz_amqp_session PRIVATE -Wno-missing-field-initializers)
