// Waiting for the first of several things (gevent.wait / gevent.iwait): tasks,
// events, async_results, semaphores and locks, mixed freely.
//
//   greenev::event stop;
//   auto worker = greenev::spawn(work);
//   auto ready = greenev::wait({worker, stop}, 5.0, 1);   // whichever comes first
//   if (!ready.empty() && ready.front() == greenev::waitable(stop)) ...
//
//   for (greenev::iwait each(tasks); auto t = each.next();) use(*t);   // as they finish
//
//   greenev::idle();   // after everything ready now has run (gevent.idle())
//   greenev::wait();   // main: until nothing is left to run (gevent.wait())
//
// "Ready" means: a task finished (any way), an event is set, an async_result
// has a value or an exception, a semaphore (bounded_semaphore, mutex) has a
// free unit, an rlock is free or held by the waiting greenlet — as gevent's
// wait on a Semaphore. Nothing is consumed: waiting on an event does not
// clear it, waiting on a semaphore does not acquire it (another greenlet may
// take the unit before the waiter runs: try_acquire() it). Threading: the calling thread's hub; every object
// must belong to it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/semaphore.hpp>
#include <greenev/task.hpp>

namespace greenev {

/// Something a greenlet can wait for: a task (the waitable holds a handle to
/// it), an event, an async_result, a semaphore or an rlock (referenced: they
/// must outlive the waitable). Cheap to copy. Compares equal to another waitable of the same
/// object, so results of wait() can be told apart.
class waitable {
 public:
  /// Implicit on purpose, like gevent's duck typing: wait({task, event}).
  /// A task is held by handle (throws greenlet_error if empty); anything
  /// else by reference. A semaphore (or bounded_semaphore, mutex) is ready
  /// while it has a free unit; an rlock while it is free or held by the
  /// greenlet that waits. Never switch.
  ///@{
  waitable(const basic_task& task);  // NOLINT(google-explicit-constructor)
  waitable(event& e) noexcept;       // NOLINT(google-explicit-constructor)
  waitable(semaphore& s) noexcept;   // NOLINT(google-explicit-constructor)
  waitable(rlock& r) noexcept;       // NOLINT(google-explicit-constructor)
  template <class T>
  waitable(async_result<T>& result) noexcept  // NOLINT(google-explicit-constructor)
      : object_(&result), observers_(&result.observers_), ready_(&result_ready<T>) {}
  ///@}

  /// True once it is ready (see the top of this file). Never switches.
  [[nodiscard]] bool ready() const;
  /// The task, if this is one (else nullptr).
  [[nodiscard]] const basic_task* task() const noexcept { return task_ ? &task_ : nullptr; }

  /// True if both refer to the same task, event or async_result.
  friend bool operator==(const waitable& a, const waitable& b) noexcept { return a.object_ == b.object_; }

  /// Internal (wait/iwait): hooks `task_link` (a task) or `other` (anything
  /// else) so that it is notified once, when this becomes ready.
  void observe(detail::link_node& task_link, detail::observer& other) const;

 private:
  template <class T>
  static bool result_ready(const void* object) {
    return static_cast<const async_result<T>*>(object)->ready();
  }
  static bool event_ready(const void* object);
  static bool semaphore_ready(const void* object);
  static bool rlock_ready(const void* object);

  basic_task task_;
  const void* object_ = nullptr;
  detail::observer_list* observers_ = nullptr;
  bool (*ready_)(const void*) = nullptr;
};

namespace detail {

// The engine of wait/iwait: watches items and hands out their indexes in the
// order they became ready (those ready at the start first, in given order).
class ready_watch {
 public:
  ready_watch(std::span<const waitable> items, wait_time timeout);
  ready_watch(const ready_watch&) = delete;
  ready_watch& operator=(const ready_watch&) = delete;
  ~ready_watch();
  // The next ready index, waiting until the deadline; nothing once every
  // item was returned or the deadline passed. Switches while it waits.
  std::optional<std::size_t> next();

 private:
  struct node;
  void on_ready(std::size_t index) noexcept;
  std::unique_ptr<node[]> nodes_;
  std::size_t size_;
  std::vector<std::size_t> ready_;  // not yet returned, in readiness order
  std::size_t taken_ = 0;           // of ready_
  std::size_t returned_ = 0;
  waiter* waiter_ = nullptr;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
};

}  // namespace detail

/// gevent.iwait: yields the items one by one as they become ready.
///
///   for (greenev::iwait each(items, timeout); auto item = each.next();) ...
///
/// Items are tasks (basic_task or task<T>) or waitables. next() returns the
/// next ready item (those ready at construction first, in the given order),
/// or nothing once all were returned or `timeout` (for the whole iteration)
/// passed. next() switches while it waits. The constructor never switches;
/// it throws greenlet_error for an empty task handle.
template <class Item = waitable>
class iwait {
  static_assert(std::is_same_v<Item, waitable>, "greenev::iwait: items are tasks or waitables");

 public:
  /// Starts watching `items`; `timeout` bounds the whole iteration.
  explicit iwait(std::vector<waitable> items, wait_time timeout = {})
      : items_(std::move(items)), watch_(items_, timeout) {}

  /// The next ready item, or nothing when done or out of time. Switches while it waits.
  std::optional<waitable> next() {
    const std::optional<std::size_t> index = watch_.next();
    if (!index) return std::nullopt;
    return items_[*index];
  }

 private:
  std::vector<waitable> items_;
  detail::ready_watch watch_;
};

/// iwait over tasks: next() returns the task type given (basic_task or task<T>).
template <class Item>
requires std::is_base_of_v<basic_task, Item>
class iwait<Item> {
 public:
  /// Starts watching `tasks`; `timeout` bounds the whole iteration.
  explicit iwait(std::vector<Item> tasks, wait_time timeout = {})
      : items_(std::move(tasks)), waitables_(items_.begin(), items_.end()), watch_(waitables_, timeout) {}

  /// The next finished task, or nothing when done or out of time. Switches while it waits.
  std::optional<Item> next() {
    const std::optional<std::size_t> index = watch_.next();
    if (!index) return std::nullopt;
    return items_[*index];
  }

 private:
  std::vector<Item> items_;
  std::vector<waitable> waitables_;
  detail::ready_watch watch_;
};

template <class Item>
iwait(std::vector<Item>, wait_time) -> iwait<Item>;
template <class Item>
iwait(std::vector<Item>) -> iwait<Item>;

/// gevent.wait: waits until `count` of the items (default: all) are ready, or
/// `timeout` passed; returns the ready ones, in the order they became ready
/// (those ready at the call first, in the given order) — at most `count`.
/// Switches unless enough are ready already.
template <class Item>
std::vector<Item> wait(const std::vector<Item>& items, wait_time timeout = {},
                       std::optional<std::size_t> count = std::nullopt) {
  const std::size_t wanted = std::min(count.value_or(items.size()), items.size());
  std::vector<Item> ready;
  iwait<Item> each(items, timeout);
  while (ready.size() < wanted) {
    std::optional<Item> item = each.next();
    if (!item) break;
    ready.push_back(std::move(*item));
  }
  return ready;
}

/// wait() over a braced list: `greenev::wait({task, stop_event}, 1.0, 1)`.
inline std::vector<waitable> wait(std::initializer_list<waitable> items, wait_time timeout = {},
                                  std::optional<std::size_t> count = std::nullopt) {
  return wait(std::vector<waitable>(items), timeout, count);
}

/// gevent.wait() with no objects (the hub's join): runs the loop until
/// nothing is left that could ever run — no greenlet ready or waiting on a
/// watcher (timer, IO, signal), no callback queued, no work_guard held: the
/// point where the hub would raise loop_exit. Returns then instead of
/// throwing it. Greenlets still suspended on something nothing can set
/// (an event no one will set) stay suspended, as in gevent. Switches (it
/// returns at once only if nothing is left already). Call it from the
/// thread's main greenlet, the hub's parent (gevent asserts the same): it
/// throws greenlet_error elsewhere, since loop_exit goes to that greenlet
/// only. A timeout started by the caller keeps the loop alive and raises
/// into it as usual.
void wait();

/// gevent.idle(): returns once the loop is idle: every greenlet and
/// callback ready when it is called (and what they made ready meanwhile)
/// has run and no IO or timer event is pending. A greenlet that keeps
/// yielding forever keeps it waiting. Switches. Throws greenlet_error in
/// the hub; a timeout or kill raised meanwhile propagates.
void idle();

}  // namespace greenev
