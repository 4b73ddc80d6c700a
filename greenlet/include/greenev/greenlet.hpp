// greenev/greenlet.hpp — stackful greenlets with explicit switching.
//
// A greenlet is a function running on its own stack. Control moves between
// greenlets only when one of them calls switch_to() or throw_into(), exactly
// as in python's greenlet module. Nothing here does IO or scheduling: that is
// the hub's job (greenev/hub.hpp), built on top of this.
//
//   greenev::greenlet g([](std::any v) { return std::any_cast<int>(v) * 2; });
//   int twice = g.switch_to<int>(21);   // runs g: 42 (or std::any_cast<int>(g.switch_to(21)))
//   assert(g.dead());
//
// Threading: every thread has its own tree of greenlets rooted at an implicit
// main greenlet. A greenlet belongs to the thread that created it and only
// ever runs there; switching to it from another thread throws greenlet_error.
// Handles (greenlet objects) may be copied, moved and destroyed on any thread.
#pragma once

#include <any>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <greenev/detail/greenlet_core.hpp>
#include <greenev/errors.hpp>
#include <greenev/stack.hpp>

namespace greenev {

/// Options for a new greenlet. Zero / empty fields take the global defaults
/// from stack.hpp.
struct greenlet_options {
  std::string name;                            ///< For diagnostics; default "greenlet-N".
  std::size_t stack_size = 0;                  ///< Bytes; 0 = default_stack_options().size.
  stack_kind kind = stack_kind::default_kind;  ///< guarded, compact or default.
};

/// A handle to a greenlet. Handles share ownership (like std::shared_ptr):
/// copies refer to the same greenlet. A default-constructed or moved-from
/// handle is empty; every operation on it except bool(), ==, and
/// destruction throws greenlet_error.
///
/// Destroying the last handle to a suspended greenlet unwinds it: that
/// destruction switches into it, raising greenlet_exit so its RAII
/// destructors run, then switches back. Meanwhile the greenlet's parent is
/// the one destroying the handle; afterwards its own parent again (a greenlet
/// that makes a new handle to itself and switches away survives with it).
class greenlet {
 public:
  greenlet() noexcept = default;

  /// Creates an unstarted greenlet running `f` on its own stack. `f` takes
  /// either nothing or a std::any (the value of the first switch_to()), and
  /// returns void, std::any or any copyable type (delivered to the parent as
  /// std::any). The parent defaults to the current greenlet. Does not switch;
  /// nothing runs and no stack is allocated until the first switch_to().
  /// Throws greenlet_error if `parent` belongs to another thread or
  /// `options.stack_size` is invalid (see stack.hpp).
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, greenlet>>>
  explicit greenlet(F&& f, greenlet_options options = {})
      : greenlet(new_greenlet_tag{}, nullptr, std::move(options)) {
    set_body(std::forward<F>(f));
  }

  /// As above, with an explicit parent (default: the current greenlet).
  template <class F>
  greenlet(F&& f, const greenlet& parent, greenlet_options options = {})
      : greenlet(new_greenlet_tag{}, parent.require(), std::move(options)) {
    set_body(std::forward<F>(f));
  }

  /// Handles share the greenlet (reference counted); a moved-from handle is
  /// empty. Dropping the last handle to a suspended greenlet unwinds it.
  ///@{
  greenlet(const greenlet& other) noexcept;
  greenlet(greenlet&& other) noexcept : impl_(std::exchange(other.impl_, nullptr)) {}
  greenlet& operator=(const greenlet& other) noexcept;
  greenlet& operator=(greenlet&& other) noexcept;
  ///@}
  ~greenlet();

  /// The running greenlet of the calling thread (its main greenlet if no
  /// other is running). Never switches. Creates the main greenlet lazily.
  /// A handle is a strong reference: a greenlet that keeps a handle to itself
  /// on its own stack across a switch (`current().parent().switch_to()` does,
  /// for the length of that expression) stays alive until its thread exits,
  /// even when every other handle is gone. Use switch_to_parent() instead.
  [[nodiscard]] static greenlet current();

  /// Switches to this greenlet, passing `value` in: as the argument of its
  /// function if it has not started, otherwise as the return value of the
  /// switch_to() that suspended it. Returns the value passed back when
  /// something switches to the caller again (or when a child finishes: its
  /// result). Switches. If this greenlet is dead, switches to its nearest
  /// live ancestor instead; switching to the current greenlet returns
  /// `value` at once. Throws whatever exception is delivered to the caller
  /// (an exception escaping a child whose parent is the caller, or
  /// throw_into() aimed at the caller); greenlet_error for an empty handle
  /// or a greenlet of another thread (before switching). Const, as every
  /// operation that leaves the handle itself alone: a `const greenlet&`
  /// (basic_task::raw_greenlet()) can be switched to without a copy.
  std::any switch_to(std::any value = {}) const;  // inline fast path below

  /// switch_to() with a type: sends `value` (nothing by default; a copyable
  /// type, as std::any requires) and returns what comes back as an R, by
  /// std::any_cast's rules — std::bad_any_cast, after the switch, if it is not
  /// an R (the value is dropped). When the other side sends an R the same
  /// way (switch_to<R>, switch_to_parent<R>), the value moves across directly,
  /// with no std::any made: `int n = g.switch_to<int>(n + 1);`. Switches;
  /// otherwise returns and throws like switch_to().
  template <class R, class T = std::any>
  R switch_to(T&& value = {}) const;  // inline below

  /// Switches to this greenlet and raises `error` at its suspension point
  /// (default: greenlet_exit). If it does not catch it, it dies and the
  /// exception propagates to its parent (greenlet_exit becomes a value).
  /// An unstarted greenlet dies without running its function; throwing into
  /// a dead greenlet does nothing and returns an empty std::any. Returns and
  /// throws like switch_to().
  ///@{
  std::any throw_into(std::exception_ptr error) const;
  std::any throw_into() const { return throw_into(std::make_exception_ptr(greenlet_exit{})); }
  template <class E, class = std::enable_if_t<!std::is_same_v<std::decay_t<E>, std::exception_ptr>>>
  std::any throw_into(E&& error) const {
    return throw_into(std::make_exception_ptr(std::forward<E>(error)));
  }
  ///@}

  /// True once the greenlet's function has returned or thrown (or it was
  /// killed before starting). Never switches; these accessors all throw
  /// greenlet_error on an empty handle.
  [[nodiscard]] bool dead() const;  // inline below
  /// True once it has been switched to (also true when dead).
  [[nodiscard]] bool started() const;  // inline below
  /// started() && !dead(): it has frames on its stack.
  [[nodiscard]] bool active() const { return started() && !dead(); }
  /// True for the implicit main greenlet of a thread.
  [[nodiscard]] bool is_main() const;

  /// The greenlet that receives this one's result; empty for a main greenlet.
  /// Never switches. To switch to the calling greenlet's parent, call
  /// switch_to_parent(): `current().parent().switch_to()` keeps a handle to
  /// the caller on the caller's own stack while it is suspended (see
  /// current()).
  [[nodiscard]] greenlet parent() const;
  /// Reparents. Throws greenlet_error if `new_parent` is empty, belongs to
  /// another thread, or would make the parent chain a cycle.
  void set_parent(const greenlet& new_parent);

  /// A name for reports ("greenlet-N" unless set, "main" for a main
  /// greenlet). Never switches. name() may be called from any thread;
  /// set_name() only on the greenlet's own thread (greenlet_error otherwise),
  /// and it invalidates the references name() returned. An empty name
  /// restores the default one.
  ///@{
  [[nodiscard]] const std::string& name() const;
  void set_name(std::string name);
  ///@}
  /// Usable stack size in bytes (0 for a main greenlet).
  [[nodiscard]] std::size_t stack_size() const;

  /// True unless the handle is empty (default-constructed or moved from).
  explicit operator bool() const noexcept { return impl_ != nullptr; }
  /// True if both handles refer to the same greenlet.
  friend bool operator==(const greenlet& a, const greenlet& b) noexcept { return a.impl_ == b.impl_; }

  /// For the hub and tests: the implementation object (nullptr if empty).
  [[nodiscard]] detail::greenlet_impl* get() const noexcept { return impl_; }
  /// Adopts one reference to `impl` (which must be live). For greenev layers.
  static greenlet adopt(detail::greenlet_impl* impl) noexcept;

 private:
  template <class F>
  void set_body(F&& f) {
    using fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<fn&, std::any> || std::is_invocable_v<fn&>,
                  "a greenlet function takes no argument or one std::any");
    impl_->emplace_body<detail::greenlet_body_of<fn>>(std::forward<F>(f));
  }
  // Creates the unstarted greenlet without its body (parent null: current).
  struct new_greenlet_tag {};
  greenlet(new_greenlet_tag, detail::greenlet_impl* parent, greenlet_options options);
  [[gnu::cold]] detail::greenlet_impl* require() const;

  detail::greenlet_impl* impl_ = nullptr;
};

/// Same as greenlet::current().
[[nodiscard]] inline greenlet current() {
  return greenlet::current();
}

/// Switches to the current greenlet's parent (python's
/// `getcurrent().parent.switch(value)`), without creating a handle to the
/// current greenlet. Returns and throws like greenlet::switch_to(); throws
/// greenlet_error when called from a main greenlet, which has no parent.
std::any switch_to_parent(std::any value = {});  // inline fast path below

/// switch_to_parent() with a type, as greenlet::switch_to<R>(value).
template <class R, class T = std::any>
R switch_to_parent(T&& value = {});  // inline below

/// Started, not yet dead greenlets of the calling thread, its main greenlet
/// excluded. Never switches.
[[nodiscard]] std::size_t active_greenlet_count() noexcept;

namespace detail {
// The out-of-line rest of switch_to_parent (greenlet_handle.cpp).
[[gnu::cold]] std::any switch_to_parent_slow(std::any&& value);

template <class R>
R any_as(std::any&& value) {
  if constexpr (std::is_same_v<R, std::any>) {
    return std::move(value);
  } else {
    return std::any_cast<R>(std::move(value));
  }
}

// The inline typed switch: the value sent stays in this (inlined) frame,
// which the receiver moves it out of while this side is suspended.
template <class R, class T>
[[gnu::always_inline]] inline R switch_typed(thread_state& ts, greenlet_impl* target, T&& value) {
  using sent_type = std::decay_t<T>;
  sent_type sent(std::forward<T>(value));
  ts.sent_typed = &sent;
  ts.sent_ops = &typed_value_ops_of<sent_type>;
  return switch_to_active<R>(ts, target);
}

template <class R, class T>
constexpr void check_typed_switch() {
  static_assert(std::is_object_v<R> && !std::is_const_v<R> && !std::is_volatile_v<R> && !std::is_array_v<R> &&
                    std::is_move_constructible_v<R>,
                "switch_to<R>: R is the type of the value that comes back (a movable object type)");
  static_assert(std::is_copy_constructible_v<std::decay_t<T>>,
                "switch_to<R>(value): a value sent must be copyable, as std::any requires");
}
}  // namespace detail

// Forced inline, both: at -O2 GCC keeps them out of line otherwise, and the
// call, the std::any passed through memory and the second look at the target
// cost more than the switch (docs/design.md, "Fast in the user's build").
[[gnu::always_inline]] inline std::any switch_to_parent(std::any value) {
#if GREENEV_DETAIL_INLINE_SWITCH
  detail::thread_state* ts = detail::tls_state;
  if (ts != nullptr) [[likely]] {
    detail::greenlet_impl* parent = ts->current->parent;
    if (detail::can_switch_inline(ts, parent)) [[likely]] {
      ts->sent = &value;  // moved out by the receiver while this frame is suspended
      return detail::switch_to_active(*ts, parent);
    }
  }
#endif
  return detail::switch_to_parent_slow(std::move(value));
}

[[gnu::always_inline]] inline std::any greenlet::switch_to(std::any value) const {
#if GREENEV_DETAIL_INLINE_SWITCH
  detail::thread_state* ts = detail::tls_state;
  if (detail::can_switch_inline(ts, impl_)) [[likely]] {
    ts->sent = &value;  // moved out by the receiver while this frame is suspended
    return detail::switch_to_active(*ts, impl_);
  }
#endif
  return detail::switch_to_slow(require(), std::move(value));
}

// The typed switches: the value sent stays in this frame, which the
// receiver moves it out of while this side is suspended.
template <class R, class T>
[[gnu::always_inline]] inline R switch_to_parent(T&& value) {
  detail::check_typed_switch<R, T>();
  using sent_type = std::decay_t<T>;
  if constexpr (std::is_same_v<sent_type, std::any>) {
    return detail::any_as<R>(switch_to_parent(std::any(std::forward<T>(value))));
  } else {
#if GREENEV_DETAIL_INLINE_SWITCH
    detail::thread_state* ts = detail::tls_state;
    if (ts != nullptr) [[likely]] {
      detail::greenlet_impl* parent = ts->current->parent;
      if (detail::can_switch_inline(ts, parent)) [[likely]] {
        return detail::switch_typed<R>(*ts, parent, std::forward<T>(value));
      }
    }
#endif
    return detail::any_as<R>(detail::switch_to_parent_slow(std::any(std::forward<T>(value))));
  }
}

template <class R, class T>
[[gnu::always_inline]] inline R greenlet::switch_to(T&& value) const {
  detail::check_typed_switch<R, T>();
  using sent_type = std::decay_t<T>;
  if constexpr (std::is_same_v<sent_type, std::any>) {
    return detail::any_as<R>(switch_to(std::any(std::forward<T>(value))));
  } else {
#if GREENEV_DETAIL_INLINE_SWITCH
    detail::thread_state* ts = detail::tls_state;
    if (detail::can_switch_inline(ts, impl_)) [[likely]] {
      return detail::switch_typed<R>(*ts, impl_, std::forward<T>(value));
    }
#endif
    return detail::any_as<R>(detail::switch_to_slow(require(), std::any(std::forward<T>(value))));
  }
}

// Inline: a loop such as `while (!g.dead()) g.switch_to();` would otherwise
// pay a call into the library beside every switch.
inline bool greenlet::dead() const {
  return (impl_ != nullptr ? impl_ : require())->dead();
}

inline bool greenlet::started() const {
  return (impl_ != nullptr ? impl_ : require())->current_state() != detail::greenlet_state::unstarted;
}

}  // namespace greenev
