// Private: a spawned task's shared state and the functions basic_task and
// task<T> call (task.cpp), kept out of the public header's way.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <greenev/detail/intrusive_fifo.hpp>
#include <greenev/detail/waiter.hpp>
#include <greenev/hub.hpp>

namespace greenev {

class basic_task;

namespace detail {

class task_state;

// A callback run in the hub after a task finished; intrusive and FIFO.
struct link_node : fifo_hook<link_node> {
  void (*fire)(link_node& self, task_state& task) = nullptr;
  std::uint64_t id = 0;
  bool heap = false;  // owned by the task (a user link); deleted after firing
  // Only wakes a waiter (never switches, never fails): fired as the task
  // finishes when no other kind of link is ahead of it.
  bool eager = false;
};

class task_state {
 public:
  // created: made by make_task(), not started yet (gevent's Greenlet(f)).
  enum class phase : unsigned char { created, scheduled, running, done };

  task_state() noexcept = default;
  task_state(const task_state&) = delete;
  task_state& operator=(const task_state&) = delete;
  virtual ~task_state();

  // Not atomic: a task and its handles stay on the hub's thread.
  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }

  // Runs in the task's greenlet: the function, then finish().
  void execute() noexcept;
  void add_link(link_node& node) noexcept;
  void remove_link(link_node& node) noexcept;
  void fire_links() noexcept;  // in the hub

  greenlet greenlet_;
  phase phase_ = phase::created;
  bool killed_ = false;  // ended by greenlet_exit (also: before starting)
  bool links_scheduled_ = false;
  std::exception_ptr error_;  // the failure, or the greenlet_exit that ended it
  intrusive_fifo<link_node> links_;
  std::uint64_t next_link_id_ = 1;
  struct delayed_start;               // spawn_later's timer (task.cpp)
  delayed_start* delayed_ = nullptr;  // owned; null unless spawned with a delay

 protected:
  virtual void run_function() = 0;  // stores the result
  virtual void drop_function() noexcept = 0;

 private:
  void finish() noexcept;
  std::size_t refs_ = 1;
};

template <class R>
class task_result : public task_state {
 public:
  std::optional<R> value_;
};
template <>
class task_result<void> : public task_state {};

template <class R, class Fn>
class task_of final : public task_result<R> {
 public:
  explicit task_of(Fn&& fn) : fn_(std::move(fn)) {}

 private:
  void run_function() override {
    if constexpr (std::is_void_v<R>) {
      std::invoke(*fn_);
    } else {
      this->value_.emplace(std::invoke(*fn_));
    }
  }
  void drop_function() noexcept override { fn_.reset(); }
  std::optional<Fn> fn_;
};

// Creates the task's greenlet (unstarted: no stack yet); the task is
// `created` until schedule_start().
void create_task_greenlet(task_state& state, std::string name, const void* spawn_site);
// create_task_greenlet() for make_task (inline): the spawn site is where
// it was called from.
void create_unstarted(task_state& state);
// Schedules a created task's start, now (next hub iteration) or after
// `delay`; does nothing unless it is `created`.
void schedule_start(task_state& state, wait_time delay);
// Creates the greenlet and schedules the start, now or after `delay`.
void launch(task_state& state, wait_time delay, std::string name);
bool join_task(task_state& state, wait_time timeout);
void kill_task(task_state& state, std::exception_ptr error, bool block, wait_time timeout);
[[noreturn]] void throw_task_timeout(const task_state& state, wait_time timeout);
// Removes the user link `id` if it has not fired (basic_task::unlink without
// its checks, for destructors).
bool remove_user_link(task_state& state, std::uint64_t id) noexcept;
[[noreturn]] void throw_empty_task();
[[noreturn]] void throw_foreign_task(const char* operation);

// True on the thread that spawned the task: its greenlet's thread. A thread
// that never made a greenlet has no state (and so spawned nothing).
inline bool on_task_thread(const task_state& state) noexcept {
  const thread_state* ts = tls_state;
  return ts != nullptr && state.greenlet_.get()->anchor == ts->anchor;
}

}  // namespace detail

}  // namespace greenev
