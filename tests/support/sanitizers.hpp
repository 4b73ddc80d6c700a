// tests/support/sanitizers.hpp — which sanitizer this test binary is built with.
//
// Some checks measure memory (RSS, committed pages) and mean nothing under a
// sanitizer: AddressSanitizer keeps freed blocks in a quarantine and doubles
// stack frames. Tests use these constants to relax or skip such checks.
#pragma once

namespace greenev::testing {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool address_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool address_sanitizer = true;
#else
inline constexpr bool address_sanitizer = false;
#endif
#else
inline constexpr bool address_sanitizer = false;
#endif

#if defined(__SANITIZE_THREAD__)
inline constexpr bool thread_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool thread_sanitizer = true;
#else
inline constexpr bool thread_sanitizer = false;
#endif
#else
inline constexpr bool thread_sanitizer = false;
#endif

/// True when any sanitizer instruments this binary.
inline constexpr bool sanitized = address_sanitizer || thread_sanitizer;

}  // namespace greenev::testing
