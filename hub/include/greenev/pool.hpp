// greenev/pool.hpp — groups of tasks, and pools that limit how many run at
// once (gevent.pool.Group and gevent.pool.Pool).
//
//   greenev::pool workers(10);                       // at most 10 tasks at a time
//   for (const auto& url : urls) workers.spawn(fetch, url);  // waits while 10 run
//   workers.join();                                  // until all have finished
//
// A group tracks the tasks spawned through it (or added to it) and forgets
// each one when it finishes. A pool is a group with a size limit: spawn() and
// add() wait while it is full, and the greenlets waiting for room get it in
// the order they started waiting. Members are ordinary tasks (task.hpp).
//
// Threading rules: a group belongs to the first thread that spawns into it,
// adds to it, or joins, kills or waits through it (constructing it does not
// bind it, so a group made on one thread can be handed to another that uses
// it); its members run on that thread's hub. Afterwards those calls throw
// greenlet_error at once on any other thread, waiting for nothing and
// touching no member. The calls that cannot throw (discard, the queries,
// the destructor) must be made on that thread too.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <limits>
#include <list>
#include <ranges>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <greenev/detail/waiter.hpp>
#include <greenev/hub.hpp>
#include <greenev/task.hpp>

namespace greenev {

/// What pool::add() throws when no slot became free within its timeout
/// (gevent's pool.add raising Full).
class pool_full : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A set of tasks that can be joined, killed and mapped over together
/// (gevent.pool.Group). Not copyable or movable.
class group {
 public:
  group() = default;
  group(const group&) = delete;
  group& operator=(const group&) = delete;
  /// Forgets the members without killing them: like tasks whose handles are
  /// gone, they keep running. Never switches. Preconditions: on the group's
  /// thread; no greenlet is waiting in this group's spawn(), add(), join(),
  /// kill() or wait_available().
  ~group();

  /// Spawns `f(args...)` as a member (greenev::spawn semantics: arguments are
  /// decay-copied, it starts in the next hub iteration) and returns its
  /// handle; it leaves the group when it finishes. On a full pool, waits
  /// first until a slot is free (switches); a plain group never switches.
  /// Throws greenlet_error when it would have to wait in the hub, and on
  /// another thread than the group's; whatever is thrown into the greenlet
  /// while it waits (timeouts, kills) propagates, and then nothing was
  /// spawned.
  template <class F, class... Args>
  auto spawn(F&& f, Args&&... args) {
    return spawn_with({}, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// spawn() with a name and a start delay (task.hpp's spawn_options). The
  /// task holds its pool slot from now on, also while it waits to start.
  template <class F, class... Args>
  auto spawn_with(spawn_options options, F&& f, Args&&... args) {
    require_own_thread("spawn");
    acquire_slot_or_throw(wait_time::forever());
    try {
      auto spawned = greenev::spawn_with(std::move(options), std::forward<F>(f), std::forward<Args>(args)...);
      insert_member(spawned);
      return spawned;
    } catch (...) {
      release_slot();
      throw;
    }
  }

  /// Adds a task spawned elsewhere; it leaves the group when it finishes (a
  /// finished task leaves in the next hub iteration). Adding a member again
  /// does nothing. On a full pool, waits up to `timeout` for a free slot
  /// (switches) and throws pool_full if none came; a plain group never
  /// switches. Throws greenlet_error for an empty handle, and for a task or
  /// a call on another thread than the group's.
  void add(const basic_task& task, wait_time timeout = {});

  /// Removes `task` without killing it, freeing its pool slot. Returns false
  /// if it was not a member. Never switches. Precondition: on the group's
  /// thread.
  bool discard(const basic_task& task) noexcept;

  /// True if `task` is a member. Never switches.
  [[nodiscard]] bool contains(const basic_task& task) const noexcept;
  /// Members: tasks not yet finished, plus finished ones whose removal is
  /// still queued in the hub.
  [[nodiscard]] std::size_t size() const noexcept { return members_.size(); }
  /// True when size() is 0.
  [[nodiscard]] bool empty() const noexcept { return members_.empty(); }
  /// The members, in the order they were added. Never switches.
  [[nodiscard]] std::vector<basic_task> tasks() const;

  /// Waits until the group is empty (at once if it is). Returns true if it
  /// became empty, false if `timeout` passed first. With `raise_error`,
  /// afterwards rethrows the failure of the first task (in the order added)
  /// that was a member when join() was called and failed; kills are not
  /// failures. Switches unless empty. Throws greenlet_error in the hub and on
  /// another thread than the group's.
  bool join(wait_time timeout = {}, bool raise_error = false);

  /// Raises `error` (default greenlet_exit) in every member (gevent's
  /// Group.kill); members not yet started never run. With `block`, waits
  /// until the group is empty, killing members added meanwhile too, or until
  /// `timeout` passed (then returns quietly). A member already being killed
  /// (by kill() or killone()) is not raised into again. Switches if `block`
  /// and members remain. If the calling greenlet is a member, it is killed
  /// last: `error` is thrown at once. Throws greenlet_error for a null
  /// `error` and on another thread than the group's.
  void kill(std::exception_ptr error = std::make_exception_ptr(greenlet_exit{}), bool block = true,
            wait_time timeout = {});

  /// Kills one member like basic_task::kill(); does nothing if `task` is not
  /// a member. A member already being killed (by kill() or killone()) is
  /// not raised into again, so its cleanup runs undisturbed; with `block`,
  /// this still waits (up to `timeout`, then returns quietly) until it
  /// finished. Switches if `block` and it runs. Throws greenlet_error for a
  /// null `error` and on another thread than the group's.
  void killone(const basic_task& task, std::exception_ptr error = std::make_exception_ptr(greenlet_exit{}),
               bool block = true, wait_time timeout = {});

  /// gevent's Group.map: spawns `f(item)` as a member for every item (on a
  /// pool, waiting for room as spawn() does), waits for all, and returns
  /// their results in the order of `items` (void if f returns void). If a
  /// task fails, stops spawning, kills and joins the tasks still running and
  /// rethrows that failure; whatever else ends the wait early (a timeout, a
  /// kill) is rethrown after the same cleanup. So `f` and `items` may live
  /// on the caller's stack. Switches. Calling it from a member of a full
  /// pool waits forever. Throws greenlet_error in the hub and on another
  /// thread than the group's.
  template <class F, std::ranges::input_range Range>
  auto map(F&& f, Range&& items) {
    require_own_thread("map");
    using item_type = std::ranges::range_value_t<Range>;
    using result = std::invoke_result_t<F&, item_type&>;
    static_assert(std::is_void_v<result> || std::is_object_v<result>,
                  "greenev::group::map: f must return void or an object type");
    map_run run;
    std::vector<task<result>> spawned;
    if constexpr (std::ranges::sized_range<Range>) spawned.reserve(std::ranges::size(items));
    try {
      for (auto&& item : items) {
        if (!acquire_slot(wait_time::forever(), &run)) break;  // a task failed meanwhile
        if (run.failure) {
          release_slot();
          break;
        }
        try {
          spawned.push_back(greenev::spawn([&f](item_type& value) -> result { return std::invoke(f, value); },
                                           item_type(std::forward<decltype(item)>(item))));
          insert_member(spawned.back());
        } catch (...) {
          release_slot();
          throw;
        }
        watch_for_map(run, spawned.back());
      }
      if (!run.failure) (void)joinall(std::vector<basic_task>(spawned.begin(), spawned.end()), {}, true);
      if (run.failure) std::rethrow_exception(run.failure);
      finish_map(run);
      if constexpr (std::is_void_v<result>) {
        for (const task<result>& t : spawned) t.get();  // a killed task throws task_killed
      } else {
        std::vector<result> results;
        results.reserve(spawned.size());
        for (const task<result>& t : spawned) results.push_back(t.get());
        return results;
      }
    } catch (...) {
      finish_map(run);
      stop_all(std::vector<basic_task>(spawned.begin(), spawned.end()));
      throw;
    }
  }

  /// Slots left before spawn()/add() would wait: unlimited (the largest
  /// size_t) for a plain group. Never switches.
  [[nodiscard]] std::size_t free_count() const noexcept {
    return limit_ == unlimited ? unlimited : limit_ - occupied_;
  }
  /// True when spawn() would wait. Always false for a plain group.
  [[nodiscard]] bool full() const noexcept { return free_count() == 0; }
  /// Waits until a slot is free or `timeout` passed, without taking it;
  /// returns free_count() (0 after a timeout). Switches only while full.
  /// Throws greenlet_error if it would wait in the hub, and on another thread
  /// than the group's.
  std::size_t wait_available(wait_time timeout = {});

 protected:
  /// The limit of a plain group.
  static constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();
  /// A group of at most `limit` members (pool's constructor).
  explicit group(std::size_t limit) noexcept : limit_(limit) {}
  /// The size limit given at construction.
  [[nodiscard]] std::size_t limit() const noexcept { return limit_; }

 private:
  struct member {
    basic_task task;
    std::uint64_t link_id = 0;
    bool dying = false;  // kill() already raised in it
  };

  // One map() call: the first failure among its tasks, and the caller's
  // waiter while it waits for a slot (a failure wakes it).
  struct map_run {
    detail::waiter* waiting = nullptr;
    std::exception_ptr failure;
    std::vector<std::pair<basic_task, std::uint64_t>> watched;  // failure links
  };

  // Binds the group to the calling thread on first use; throws
  // greenlet_error naming `operation` on any other thread afterwards.
  void require_own_thread(const char* operation);
  // Takes a slot, waiting in FIFO order while full; false after `timeout`
  // (or, for map(), when one of its tasks failed).
  bool acquire_slot(wait_time timeout, map_run* run = nullptr);
  void acquire_slot_or_throw(wait_time timeout);
  // Gives a slot back: to the first waiter if any (so no newcomer can take
  // it first), else to the free count.
  void release_slot() noexcept;
  // Links `task` in; on failure the (unstarted) task is killed and the
  // exception propagates. Does not take a slot.
  void insert_member(const basic_task& task);
  // Records `task`'s failure in `run` when it finishes.
  void watch_for_map(map_run& run, const basic_task& task);
  // Removes map's failure links.
  static void finish_map(map_run& run) noexcept;
  // Kills and joins `tasks` (map's cleanup).
  static void stop_all(const std::vector<basic_task>& tasks);

  std::size_t limit_ = unlimited;
  // The owning thread's greenlet state (thread_anchor), once bound. Atomic so
  // that another thread can read it to refuse itself.
  std::atomic<const void*> thread_{nullptr};
  std::size_t occupied_ = 0;  // members plus slots handed to waiters not yet resumed
  std::list<member> members_;
  std::unordered_map<const detail::task_state*, std::list<member>::iterator> index_;
  detail::wait_list slot_waiters_;       // spawn()/add() on a full pool
  detail::wait_list available_waiters_;  // wait_available()
  detail::wait_list empty_waiters_;      // join()
  detail::wait_list discard_waiters_;    // kill(block): re-check after every removal
};

/// A group that runs at most `size` members at a time (gevent.pool.Pool).
/// spawn(), add() and map() wait while it is full; freed slots go to the
/// waiting greenlets in the order they started waiting.
class pool : public group {
 public:
  /// Throws std::invalid_argument if `size` is 0 (nothing could ever run).
  explicit pool(std::size_t size);

  /// The limit given to the constructor (gevent's Pool.size).
  [[nodiscard]] std::size_t capacity() const noexcept { return limit(); }
};

}  // namespace greenev
