// tests/support/sanitizers.hpp — which sanitizer this test binary is built with.
//
// Some checks measure memory (RSS, committed pages) and mean nothing under a
// sanitizer: AddressSanitizer keeps freed blocks in a quarantine and doubles
// stack frames. Tests use these constants to relax or skip such checks.
#pragma once

#include <greenev/detail/sanitizers.hpp>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define GREENEV_TESTS_RUNNING_ON_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#else
#define GREENEV_TESTS_RUNNING_ON_VALGRIND() false
#endif

namespace greenev::testing {

inline constexpr bool address_sanitizer = greenev::detail::address_sanitizer;
inline constexpr bool thread_sanitizer = greenev::detail::thread_sanitizer;

/// True when any sanitizer instruments this binary.
inline constexpr bool sanitized = address_sanitizer || thread_sanitizer;

/// True under valgrind (the CI's memcheck step): slow, and RSS is valgrind's.
inline bool under_valgrind() noexcept {
  return GREENEV_TESTS_RUNNING_ON_VALGRIND();
}

/// Whether resident-memory figures say anything about greenev's own memory.
inline bool rss_is_meaningful() noexcept {
  return !sanitized && !under_valgrind();
}

}  // namespace greenev::testing
