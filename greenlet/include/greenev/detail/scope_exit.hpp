// Private: run a callable when a scope ends, however it ends.
//
//   auto restore = detail::scope_exit([&] { state = saved; });
//   ...                      // returns, throws, or greenlet_exit unwinds
//   restore.release();       // optional: keep the change after all
//
// The one guard type of the library (instead of a struct per use). The
// callable must not throw: it runs from a destructor, possibly during
// unwinding.
#pragma once

#include <type_traits>
#include <utility>

namespace greenev::detail {

template <class F>
class [[nodiscard]] scope_exit {
  static_assert(std::is_nothrow_invocable_v<F&> || std::is_invocable_v<F&>, "scope_exit needs a callable");

 public:
  explicit scope_exit(F fn) noexcept(std::is_nothrow_move_constructible_v<F>) : fn_(std::move(fn)) {}
  scope_exit(const scope_exit&) = delete;
  scope_exit& operator=(const scope_exit&) = delete;
  scope_exit(scope_exit&&) = delete;
  scope_exit& operator=(scope_exit&&) = delete;
  ~scope_exit() {
    if (active_) fn_();
  }

  /// Disarms the guard: the callable will not run.
  void release() noexcept { active_ = false; }

 private:
  F fn_;
  bool active_ = true;
};

template <class F>
scope_exit(F) -> scope_exit<F>;

}  // namespace greenev::detail
