// greenev/task.hpp — spawned greenlets: spawn/join/get/kill, links,
// joinall/killall (gevent.spawn and gevent.Greenlet).
//
//   auto t = greenev::spawn([](int n) { greenev::sleep(0.1); return n * 2; }, 21);
//   int v = t.get();                       // waits cooperatively: 42
//   greenev::joinall({greenev::spawn(f), greenev::spawn(g)});
//   auto later = greenev::make_task(f);    // gevent's Greenlet(f): not started
//   later.link_value([](const auto& done) { use(done.get()); });
//   later.start();                         // gevent's g.start()
//
// A task is a greenlet whose parent is the hub. spawn() only schedules it: it
// starts when the hub next runs callbacks (the caller blocks, sleeps or
// yields); make_task() makes one that waits for start() or start_later(). An exception escaping the function
// is stored for get() and reported once through the error reporter (stderr by default) as
// "<time> <name> failed with <type>: <what>";
// greenlet_exit (a kill) is not a failure. Handles are cheap to copy; a
// running task keeps going when every handle is gone.
//
// Threading rules: a task runs on the thread that spawned it, and belongs to
// it. Every operation on a handle (join, get, kill, link, unlink, and the
// queries: ready, started, value, name, ...), and joinall/killall/wait over
// it, throws greenlet_error at once on any other thread, as switching to a
// greenlet of another thread does: nothing waits on that thread's hub,
// nothing is raised into the task, nothing is printed. Copying, moving and
// dropping handles is allowed on the task's thread only (the reference count
// is not atomic; these cannot throw, so this is a precondition). To act on a
// task from another thread, post a callback to its hub
// (hub::run_callback_threadsafe).
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <greenev/detail/task_state.hpp>
#include <greenev/detail/waiter.hpp>
#include <greenev/hub.hpp>

namespace greenev {

/// How kill(), killall() and group::kill() kill (gevent's `exception`,
/// `block` and `timeout` arguments):
/// `t.kill({.block = false})`, `t.kill({.timeout = 1.0})`,
/// `t.kill(my_error{}, {.block = false})`.
struct kill_options {
  /// Raised in the task; must not be null (greenlet_error).
  std::exception_ptr error = std::make_exception_ptr(greenlet_exit{});
  /// Wait until the task (every task) finished.
  bool block = true;
  /// With `block`: wait at most this long.
  wait_time timeout{};
};

namespace detail {
// An exception object kill() and friends accept directly: a class type other
// than kill_options and exception_ptr (which say more, or are the same).
template <class E>
concept kill_error = std::is_class_v<std::decay_t<E>> && !std::is_same_v<std::decay_t<E>, kill_options> &&
                     !std::is_same_v<std::decay_t<E>, std::exception_ptr>;
}  // namespace detail

/// What get() throws for a task that was killed with greenlet_exit (gevent
/// returns the GreenletExit instance; C++ has no value to return).
class task_killed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An untyped handle to a task; task<T> adds typed results. Copies share the
/// task. An empty (default-constructed or moved-from) handle throws
/// greenlet_error from every operation but bool() and ==; so does every
/// operation on another thread than the task's (see the threading rules at
/// the top).
class basic_task {
 public:
  /// An empty handle.
  basic_task() noexcept = default;
  /// Handles share the task (reference counted); a moved-from handle is
  /// empty. Dropping every handle does not kill a running task.
  ///@{
  basic_task(const basic_task& other) noexcept : state_(other.state_) {
    if (state_ != nullptr) state_->add_ref();
  }
  basic_task(basic_task&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  basic_task& operator=(basic_task other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ///@}
  ~basic_task() {
    if (state_ != nullptr) state_->release();
  }

  /// Waits until the task finished (returns true) or `timeout` passed
  /// (returns false). A join that waits returns only after the links added
  /// before it was called have run (in gevent a join is a link too, added
  /// after them); a task already finished returns at once, even while its
  /// links are still queued. Switches unless already finished. Throws
  /// greenlet_error in the hub, when a task joins itself, and on another
  /// thread.
  bool join(wait_time timeout = {}) const { return detail::join_task(require("join"), timeout); }

  /// Raises `options.error` (default greenlet_exit) in the task. A task not
  /// yet started never runs: it is finished at once and its links fire.
  /// With `options.block` (the default), waits (up to `options.timeout`,
  /// then returns quietly) until it finished, as join() does. Killing the
  /// calling task throws the error at once. Switches if `block` and the task
  /// runs. Throws greenlet_error for a null error and on another thread
  /// (before raising anything).
  void kill(kill_options options = {}) const {
    detail::kill_task(require("kill"), std::move(options.error), options.block, options.timeout);
  }
  /// kill() raising a copy of `error` (`t.kill(my_error{}, {.block =
  /// false})`); it replaces `options.error`. Same switches and throws.
  template <detail::kill_error E>
  void kill(E&& error, kill_options options = {}) const {
    options.error = std::make_exception_ptr(std::forward<E>(error));
    kill(std::move(options));
  }

  /// Finished (returned, failed or killed). Never switches.
  [[nodiscard]] bool ready() const { return require("ready").phase_ == detail::task_state::phase::done; }
  /// Finished without an exception other than greenlet_exit. Never switches.
  [[nodiscard]] bool successful() const {
    const detail::task_state& state = require("successful");
    return state.phase_ == detail::task_state::phase::done && (!state.error_ || state.killed_);
  }
  /// gevent's `started`: true from spawn() or start() on (also while a
  /// spawn_later/start_later delay runs) until the task finished; false for
  /// a task made by make_task() and not started yet, and for a task killed
  /// before it started. Never switches.
  [[nodiscard]] bool started() const {
    const detail::task_state::phase now = require("started").phase_;
    return now == detail::task_state::phase::scheduled || now == detail::task_state::phase::running;
  }

  /// gevent's Greenlet.start(): schedules a task made by make_task() to
  /// start in the next hub iteration. Does nothing if it was started (or
  /// scheduled, or killed) before. Never switches. Throws greenlet_error on
  /// another thread.
  void start() const;
  /// gevent's Greenlet.start_later(): as start(), but the task starts after
  /// `delay` (kill() before then: it never runs). Does nothing if it was
  /// started before. Never switches. Throws greenlet_error on another
  /// thread.
  void start_later(wait_time delay) const;
  /// The exception that ended it (a failure or greenlet_exit), else null.
  /// Never switches.
  [[nodiscard]] std::exception_ptr exception() const { return require("exception").error_; }
  /// True if it was killed (ended by greenlet_exit). Never switches.
  [[nodiscard]] bool killed() const { return require("killed").killed_; }

  /// Calls `callback(task)` in the hub once the task finished (at once, in
  /// the next hub iteration, if it already has). Links fire in the order
  /// they were added. Returns an id for unlink(). Never switches. Throws
  /// std::invalid_argument for an empty function, greenlet_error on another
  /// thread.
  /// A link runs in the hub, so it must not block (a blocking call there
  /// throws greenlet_error, reported as the link's failure): spawn from it
  /// for blocking work. That makes it gevent's rawlink; gevent's link
  /// spawns a greenlet per callback, greenev's does not.
  std::uint64_t link(std::function<void(const basic_task&)> callback) const;
  /// gevent's rawlink: the same as link() (which already runs in the hub).
  std::uint64_t rawlink(std::function<void(const basic_task&)> callback) const {
    return link(std::move(callback));
  }
  /// gevent's link_value: link() whose callback runs only if the task is
  /// successful() — returned, or killed (gevent counts GreenletExit as a
  /// value: check killed() before get()). Same returns, throws and switches
  /// as link(); unlink() takes its id.
  std::uint64_t link_value(std::function<void(const basic_task&)> callback) const;
  /// gevent's link_exception: link() whose callback runs only if the task
  /// failed (an exception other than greenlet_exit). As link() otherwise.
  std::uint64_t link_exception(std::function<void(const basic_task&)> callback) const;
  /// Removes a link that has not fired; false if there was none. Never
  /// switches. Throws greenlet_error on another thread.
  bool unlink(std::uint64_t id) const;

  /// The task's name (spawn_options::name, else "greenlet-N"). Never switches.
  [[nodiscard]] const std::string& name() const { return require("name").greenlet_.name(); }
  /// The underlying greenlet (its parent is the hub). Never switches.
  [[nodiscard]] const greenlet& raw_greenlet() const { return require("raw_greenlet").greenlet_; }

  /// True unless the handle is empty.
  explicit operator bool() const noexcept { return state_ != nullptr; }
  /// True if both handles refer to the same task.
  friend bool operator==(const basic_task& a, const basic_task& b) noexcept { return a.state_ == b.state_; }

  /// Internal: the shared state, for greenev's own layers.
  [[nodiscard]] detail::task_state* state() const noexcept { return state_; }
  /// Adopts one reference. For greenev layers.
  static basic_task adopt(detail::task_state* state) noexcept {
    basic_task t;
    t.state_ = state;
    return t;
  }

 protected:
  /// The state; throws greenlet_error on an empty handle, or on another
  /// thread than the task's (naming `operation`).
  detail::task_state& require(const char* operation) const {
    if (state_ == nullptr) [[unlikely]]
      detail::throw_empty_task();
    if (!detail::on_task_thread(*state_)) [[unlikely]]
      detail::throw_foreign_task(operation);
    return *state_;
  }
  /// One reference, or null.
  detail::task_state* state_ = nullptr;
};

/// A task returning T (void allowed).
template <class T>
class task : public basic_task {
 public:
  task() noexcept = default;

  /// Waits for the result: returns it, or rethrows the task's exception;
  /// task_killed if it was killed; timeout_error if `timeout` passed first.
  /// Waits as join() does (after the links added before it). Switches unless
  /// finished. Throws greenlet_error in the hub and on another thread.
  T get(wait_time timeout = {}) const {
    detail::task_state& state = require("get");
    if (!detail::join_task(state, timeout)) detail::throw_task_timeout(state, timeout);
    if (state.killed_) throw task_killed("greenev: task " + state.greenlet_.name() + " was killed");
    if (state.error_) std::rethrow_exception(state.error_);
    if constexpr (!std::is_void_v<T>) return *static_cast<const detail::task_result<T>&>(state).value_;
  }

  /// The result if it finished successfully, else empty. Never switches.
  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  [[nodiscard]] std::optional<U> value() const {
    return typed("value").value_;
  }

  /// link(), link_value() and link_exception() whose callback receives this
  /// typed task, so it can read the result without capturing a handle:
  /// `t.link_value([](const task<int>& done) { use(done.get()); })`. A
  /// callback taking `const basic_task&` works too, and so does `{}` (an
  /// empty std::function: invalid_argument). The callback must be invocable
  /// with `const task<T>&`; otherwise as basic_task's.
  ///@{
  template <std::invocable<const task&> F = std::function<void(const basic_task&)>>
  std::uint64_t link(F&& callback) const {
    return basic_task::link(typed_callback(std::forward<F>(callback)));
  }
  template <std::invocable<const task&> F = std::function<void(const basic_task&)>>
  std::uint64_t link_value(F&& callback) const {
    return basic_task::link_value(typed_callback(std::forward<F>(callback)));
  }
  template <std::invocable<const task&> F = std::function<void(const basic_task&)>>
  std::uint64_t link_exception(F&& callback) const {
    return basic_task::link_exception(typed_callback(std::forward<F>(callback)));
  }
  template <std::invocable<const task&> F = std::function<void(const basic_task&)>>
  std::uint64_t rawlink(F&& callback) const {
    return link(std::forward<F>(callback));
  }
  ///@}

  /// Adopts one reference. For greenev layers.
  static task adopt(detail::task_state* state) noexcept {
    task t;
    t.state_ = state;
    return t;
  }

 private:
  template <class F>
  static std::function<void(const basic_task&)> typed_callback(F&& callback) {
    if constexpr (std::is_constructible_v<bool, const std::decay_t<F>&>) {
      if (!static_cast<bool>(callback)) return {};  // an empty std::function: link()'s error
    }
    return [callback = std::decay_t<F>(std::forward<F>(callback))](const basic_task& finished) mutable {
      finished.state()->add_ref();
      std::invoke(callback, task::adopt(finished.state()));
    };
  }

  const detail::task_result<T>& typed(const char* operation) const {
    return static_cast<const detail::task_result<T>&>(require(operation));
  }
};

/// Options for spawn_with(): a name for diagnostics and a start delay.
struct spawn_options {
  std::string name{};                             ///< Empty: "greenlet-N".
  wait_time delay = std::chrono::nanoseconds(0);  ///< Start this much later (spawn_later).
};

namespace detail {
// The stored copies are passed as rvalues (they are used once, so move-only
// arguments work, as with std::thread) unless the function only accepts
// lvalues (a lambda taking `T&`).
template <class F, class... Args>
inline constexpr bool spawn_moves_v = std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>;
template <class F, class... Args>
using spawn_result_t =
    std::conditional_t<spawn_moves_v<F, Args...>, std::invoke_result<std::decay_t<F>, std::decay_t<Args>...>,
                       std::invoke_result<std::decay_t<F>&, std::decay_t<Args>&...>>::type;
}  // namespace detail

namespace detail {
// The shared state of a task running `f(args...)`, arguments decay-copied;
// its greenlet is not made yet.
template <class F, class... Args>
auto new_task(F&& f, Args&&... args) {
  using result = spawn_result_t<F, Args...>;
  auto call = [f = std::forward<F>(f), ... args = std::forward<Args>(args)]() mutable -> result {
    if constexpr (spawn_moves_v<F, Args...>) {
      return std::invoke(std::move(f), std::move(args)...);
    } else {
      return std::invoke(f, args...);
    }
  };
  return task<result>::adopt(new task_of<result, decltype(call)>(std::move(call)));
}
}  // namespace detail

/// Spawns `f(args...)` (arguments decay-copied) with options. Never switches.
template <class F, class... Args>
auto spawn_with(spawn_options options, F&& f, Args&&... args) -> task<detail::spawn_result_t<F, Args...>> {
  auto handle = detail::new_task(std::forward<F>(f), std::forward<Args>(args)...);
  detail::launch(*handle.state(), options.delay, std::move(options.name));
  return handle;
}

/// gevent's Greenlet(f, args...): a task for `f(args...)` (arguments
/// decay-copied) that does not start until start() or start_later(). Until
/// then it is neither started() nor ready(); kill() finishes it without
/// running it (links fire), and join() waits for it like for any task.
/// Dropping every handle of a task never started frees it (nothing runs).
/// Never switches. Throws std::bad_alloc; nothing else.
template <class F, class... Args>
auto make_task(F&& f, Args&&... args) -> task<detail::spawn_result_t<F, Args...>> {
  auto handle = detail::new_task(std::forward<F>(f), std::forward<Args>(args)...);
  detail::create_unstarted(*handle.state());
  return handle;
}

/// gevent.spawn: schedules `f(args...)` to start in a new greenlet in the
/// next hub iteration. Never switches.
template <class F, class... Args>
auto spawn(F&& f, Args&&... args) {
  return spawn_with({}, std::forward<F>(f), std::forward<Args>(args)...);
}

/// gevent.spawn_later: starts it after `delay`. Never switches.
template <class F, class... Args>
auto spawn_later(wait_time delay, F&& f, Args&&... args) {
  return spawn_with({.delay = delay}, std::forward<F>(f), std::forward<Args>(args)...);
}

/// gevent.joinall: waits until every task (or `count` of them) finished, or
/// `timeout` passed. Returns the finished tasks, in completion order (those
/// already finished first, in the given order). With `raise_error`, rethrows
/// the first failure in completion order as soon as it happens. Switches
/// unless enough already finished. Throws greenlet_error for an empty handle,
/// a task of another thread, and in the hub.
std::vector<basic_task> joinall(const std::vector<basic_task>& tasks, wait_time timeout = {},
                                bool raise_error = false, std::optional<std::size_t> count = std::nullopt);

// gevent.wait / gevent.iwait over tasks and other waitables: wait.hpp.

/// gevent.killall: raises `options.error` in every task (as kill() without
/// `block`); with `options.block` (the default), waits up to
/// `options.timeout` for all of them to finish and throws timeout_error
/// (whose source() is `&tasks`) if some still run then. Switches if `block`.
/// Throws greenlet_error for an empty handle, a task of another thread
/// (before killing any) and a null error.
void killall(const std::vector<basic_task>& tasks, kill_options options = {});

/// killall() raising a copy of `error` in each task; it replaces
/// `options.error`. Same switches and throws.
template <detail::kill_error E>
void killall(const std::vector<basic_task>& tasks, E&& error, kill_options options = {}) {
  options.error = std::make_exception_ptr(std::forward<E>(error));
  killall(tasks, std::move(options));
}

}  // namespace greenev
