// Elapsed-time helper for tests that bound how long a wait took (generously).
#pragma once

#include <chrono>

namespace greenev::testing {

/// Milliseconds since `start` on the steady clock.
inline std::chrono::milliseconds since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

}  // namespace greenev::testing
