// greenev/local.hpp — greenlet-local storage (gevent.local.local): one
// object, a separate value in every greenlet that touches it.
//
//   greenev::greenlet_local<request_context> context;   // shared by all handlers
//   void handle() { context->user = "ann"; greenev::sleep(0.1); use(context->user); }
//   // every greenlet running handle() sees its own request_context
//
// Each greenlet — spawned tasks, raw greenlets, a thread's main greenlet and
// the hub (loop callbacks) — gets its own T, made on its first access. A
// value is destroyed when its greenlet dies (on the greenlet's own stack,
// right after its function returned) or is freed, or when the
// greenlet_local itself is destroyed, whichever comes first: each value is
// registered both with its greenlet (a small table, freed with it) and with
// its greenlet_local (a list of every greenlet's value), so either side can
// release it at once. Nothing lingers until a later access.
// Threading: values are per greenlet, hence per thread. One greenlet_local
// may be used from several threads at once; each value is only touched by
// its own greenlet, except that destroying the greenlet_local destroys every
// greenlet's value on the destroying thread (so destroy it only once no
// thread uses it any more). Nothing here switches, unless T's constructor or
// destructor does.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <greenev/greenlet.hpp>

namespace greenev {

namespace detail {

// The untyped part of a greenlet_local: a process-unique id (never reused),
// and the list of every greenlet's value for it. local.cpp explains the
// locking.
class local_key {
 public:
  local_key() noexcept;
  local_key(const local_key&) = delete;
  local_key& operator=(const local_key&) = delete;
  ~local_key();  // destroys every greenlet's value

  // The calling greenlet's value, or nullptr.
  [[nodiscard]] void* find() const noexcept;
  // Makes `value` the calling greenlet's value and returns it; if it already
  // has one, destroys `value` and returns the existing one. On failure
  // destroys `value` and throws.
  void* insert(void* value, void (*destroy)(void*) noexcept);
  // Destroys the calling greenlet's value; false if it had none.
  bool erase() noexcept;

  struct slot;

 private:
  friend struct slot;
  std::uint64_t id_;
  slot* head_ = nullptr;  // guarded by the registry's mutex (local.cpp)
};

}  // namespace detail

/// A T per greenlet. Not copyable or movable.
template <class T>
class greenlet_local {
 public:
  /// Values are default-constructed on first access (so T must be default
  /// constructible; otherwise give an init function).
  greenlet_local() requires std::is_default_constructible_v<T>
  = default;
  /// Values are made by `init()` on first access (gevent's local subclass
  /// with an __init__); `init` runs in the accessing greenlet. T needs no
  /// default constructor then (nor a copy or a move: the value is made in
  /// place from what `init` returns). Throws
  /// std::invalid_argument for an empty `init`.
  explicit greenlet_local(std::function<T()> init) : init_(std::move(init)) {
    if (!init_) throw std::invalid_argument("greenev: greenlet_local with an empty init function");
  }
  greenlet_local(const greenlet_local&) = delete;
  greenlet_local& operator=(const greenlet_local&) = delete;
  /// Destroys every greenlet's value (see the threading note on top).
  ~greenlet_local() = default;

  /// The calling greenlet's value, created on first access. Never switches
  /// unless T's constructor or `init` does. Throws what they throw (nothing
  /// is stored then), or std::bad_alloc.
  T& get() {
    if (void* value = key_.find()) return *static_cast<T*>(value);
    return create();
  }
  /// get(), as a dereference.
  ///@{
  T& operator*() { return get(); }
  T* operator->() { return &get(); }
  ///@}

  /// True if the calling greenlet has a value already. Never creates one.
  [[nodiscard]] bool has_value() const noexcept { return key_.find() != nullptr; }
  /// Destroys the calling greenlet's value, if any (the next get() makes a
  /// new one). Never switches unless T's destructor does.
  void reset() noexcept { key_.erase(); }

 private:
  T& create() {
    T* value = nullptr;
    if constexpr (std::is_default_constructible_v<T>) {
      value = init_ ? new T(init_()) : new T();
    } else {
      value = new T(init_());  // the only constructor this type has
    }
    return *static_cast<T*>(key_.insert(value, &destroy));
  }
  static void destroy(void* value) noexcept { delete static_cast<T*>(value); }

  std::function<T()> init_;
  detail::local_key key_;  // last: destroyed first, while init_ still exists
};

}  // namespace greenev
