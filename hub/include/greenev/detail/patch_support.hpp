// Private: what greenev's libc interposers (monkey/src/patch_*.cpp) ask the
// hub before they may switch. Not for applications: use greenev::monkey.
#pragma once

namespace greenev::detail {

/// True when the calling code may park cooperatively: this thread has a hub
/// and the running greenlet is not the hub itself (a spawned greenlet, a raw
/// greenlet or the thread's main greenlet). False on a thread that never
/// created a hub (e.g. a threadpool worker) and inside loop callbacks. Never
/// switches, never creates a hub, never throws; a few loads.
[[nodiscard]] bool may_park_here() noexcept;

/// True when this thread has a hub. Never creates one, never switches.
[[nodiscard]] bool hub_exists_on_this_thread() noexcept;

}  // namespace greenev::detail
