// Private: which sanitizer instruments the translation unit that includes this.
//
// GCC spells it __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__, Clang
// __has_feature(...). Every file that annotates stack switches or skips work
// under a sanitizer asks here, so there is one spelling.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define GREENEV_DETAIL_TU_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define GREENEV_DETAIL_TU_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(GREENEV_DETAIL_TU_ASAN)
#define GREENEV_DETAIL_TU_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(GREENEV_DETAIL_TU_TSAN)
#define GREENEV_DETAIL_TU_TSAN 1
#endif
#endif

#ifdef GREENEV_DETAIL_TU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef GREENEV_DETAIL_TU_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace greenev::detail {

#ifdef GREENEV_DETAIL_TU_ASAN
inline constexpr bool address_sanitizer = true;
#else
inline constexpr bool address_sanitizer = false;
#endif
#ifdef GREENEV_DETAIL_TU_TSAN
inline constexpr bool thread_sanitizer = true;
#else
inline constexpr bool thread_sanitizer = false;
#endif

}  // namespace greenev::detail
