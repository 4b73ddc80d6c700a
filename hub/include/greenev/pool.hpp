// greenev/pool.hpp — groups of tasks, and pools that limit how many run at
// once (gevent.pool.Group and gevent.pool.Pool).
//
//   greenev::pool workers(10);                       // at most 10 tasks at a time
//   for (const auto& url : urls) workers.spawn(fetch, url);  // waits while 10 run
//   workers.join();                                  // until all have finished
//   for (auto& page : workers.imap(fetch, urls)) save(page);  // lazily, in order
//
// A group tracks the tasks spawned through it (or added to it) and forgets
// each one when it finishes. A pool is a group with a size limit: spawn() and
// add() wait while it is full, and the greenlets waiting for room get it in
// the order they started waiting. Members are ordinary tasks (task.hpp).
// The map family (gevent's apply, apply_async, map, map_async, imap,
// imap_unordered) runs every call of f as a member, so a pool's limit holds
// for all of them together.
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
#include <functional>
#include <iterator>
#include <limits>
#include <list>
#include <memory>
#include <optional>
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

/// Options for group::imap() and group::imap_unordered().
struct imap_options {
  /// The most calls started and not yet returned by the iterator: this many
  /// items of the input are read ahead, and no more. 0: the pool's size (a
  /// plain group: no bound, the whole input is read at the first step, as
  /// gevent's Group.imap spawns everything).
  std::size_t max_in_flight = 0;
};

template <class Fn, class View>
class imap_range;

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

  /// Raises `options.error` (default greenlet_exit) in every member
  /// (gevent's Group.kill); members not yet started never run. With
  /// `options.block` (the default), waits until the group is empty, killing
  /// members added meanwhile too, or until `options.timeout` passed (then
  /// returns quietly). A member already being killed (by kill() or
  /// killone()) is not raised into again. Switches if `block` and members
  /// remain. If the calling greenlet is a member, it is killed last: the
  /// error is thrown at once. Throws greenlet_error for a null error and on
  /// another thread than the group's.
  void kill(kill_options options = {});
  /// kill() raising a copy of `error`; it replaces `options.error`.
  template <detail::kill_error E>
  void kill(E&& error, kill_options options = {}) {
    options.error = std::make_exception_ptr(std::forward<E>(error));
    kill(std::move(options));
  }

  /// Kills one member like basic_task::kill(); does nothing if `task` is not
  /// a member. A member already being killed (by kill() or killone()) is
  /// not raised into again, so its cleanup runs undisturbed; with `block`,
  /// this still waits (up to `options.timeout`, then returns quietly) until
  /// it finished. Switches if `block` and it runs. Throws greenlet_error for
  /// a null error and on another thread than the group's.
  void killone(const basic_task& task, kill_options options = {});
  /// killone() raising a copy of `error`; it replaces `options.error`.
  template <detail::kill_error E>
  void killone(const basic_task& task, E&& error, kill_options options = {}) {
    options.error = std::make_exception_ptr(std::forward<E>(error));
    killone(task, std::move(options));
  }

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

  /// gevent's Group.apply: runs `f(args...)` in a new member (arguments
  /// decay-copied, as spawn()), waits for it and returns its result or
  /// rethrows its exception (task_killed if it was killed). Called from a
  /// member of this group, it calls `f(args...)` inline instead, in the
  /// calling greenlet, as gevent does: a member waiting for a slot of its own
  /// full pool would wait forever. If the caller's wait is ended by
  /// something else (a timeout, a kill), the member is killed and joined
  /// before that propagates. Switches (on a full pool, also while waiting
  /// for a slot). Throws greenlet_error in the hub and on another thread
  /// than the group's.
  template <class F, class... Args>
  auto apply(F&& f, Args&&... args) -> detail::spawn_result_t<F, Args...> {
    require_own_thread("apply");
    if (called_from_member()) return std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
    auto spawned = spawn(std::forward<F>(f), std::forward<Args>(args)...);
    try {
      spawned.join();
    } catch (...) {
      stop_all({spawned});
      throw;
    }
    return spawned.get();
  }

  /// gevent's Group.apply_async: starts `f(args...)` (arguments
  /// decay-copied) and returns its task without waiting. With a free slot
  /// (or on a plain group) the task is a member, spawned as spawn() does;
  /// on a full pool it is a plain task that waits for a slot and then runs
  /// apply() (gevent does the same), so the group must outlive it. Never
  /// switches. Throws greenlet_error on another thread than the group's.
  template <class F, class... Args>
  auto apply_async(F&& f, Args&&... args) -> task<detail::spawn_result_t<F, Args...>> {
    require_own_thread("apply_async");
    if (slot_free_now()) return spawn(std::forward<F>(f), std::forward<Args>(args)...);
    using result = detail::spawn_result_t<F, Args...>;
    return greenev::spawn(
        [this](auto& fn, auto&... values) -> result { return apply(std::move(fn), std::move(values)...); },
        std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// apply_async() with gevent's callback: `callback(value)` (`callback()`
  /// for void) runs in the hub (a link: it must not block) once the task
  /// returned a value; not if it failed or was killed (gevent passes its
  /// GreenletExit as the value; C++ has none to pass). Returns the task.
  /// Never switches. Throws as apply_async().
  template <class Callback, class F, class... Args>
  auto apply_async_then(Callback&& callback, F&& f, Args&&... args) {
    auto started = apply_async(std::forward<F>(f), std::forward<Args>(args)...);
    using result = detail::spawn_result_t<F, Args...>;
    started.link([callback = std::decay_t<Callback>(std::forward<Callback>(callback))](
                     const task<result>& done) mutable {
      if (done.exception()) return;  // failed or killed
      if constexpr (std::is_void_v<result>) {
        std::invoke(callback);
      } else {
        std::invoke(callback, done.get());
      }
    });
    return started;
  }

  /// gevent's Group.map_async: returns at once a plain task (not a member)
  /// that runs map(f, items) and whose result is map's: a std::vector of the
  /// results in the order of `items` (void if f returns void); a failure
  /// ends it as it ends map(). `f` and `items` are decay-copied into it (a
  /// container is copied; a view still refers to its data, which must
  /// outlive the task); the group must outlive it. Killing it kills the
  /// members it started. Never switches. Throws greenlet_error on another
  /// thread than the group's.
  template <class F, std::ranges::input_range Range>
  auto map_async(F&& f, Range&& items) {
    require_own_thread("map_async");
    return greenev::spawn([this](auto& fn, auto& values) { return map(fn, values); }, std::forward<F>(f),
                          std::forward<Range>(items));
  }

  /// gevent's Group.imap: an input range of `f(item)` results in the order
  /// of `items`, computed by members:
  ///
  ///   for (auto& page : workers.imap(fetch, urls, {.max_in_flight = 8})) save(page);
  ///
  /// Lazy: `items` is read only as the iteration goes, keeping at most
  /// options.max_in_flight calls started and not yet returned (on a pool,
  /// each also waits for a slot). begin() and every ++ switch until the
  /// next result is in; a worker's exception is rethrown there when the
  /// iteration reaches its item (the results before it come first), after
  /// the calls still in flight are killed and joined; the iteration then
  /// ends. Destroying the range early (a break, or an exception raised into
  /// the consumer) kills the calls in flight without waiting for them (they
  /// finish in the next hub iteration; each owns a copy of `f` and of its
  /// item). `f` is decay-copied; `items` is kept as std::views::all keeps
  /// it (an lvalue container by reference: it must outlive the range). f
  /// must return an object type. The group must outlive the range; use it
  /// on the group's thread. Calling it from a member of a full pool waits
  /// forever, as map() does. Never switches itself. Throws greenlet_error on
  /// another thread than the group's.
  template <class F, std::ranges::viewable_range Range>
  auto imap(F&& f, Range&& items, imap_options options = {})
      -> imap_range<std::decay_t<F>, std::views::all_t<Range>> {
    require_own_thread("imap");
    return {*this, std::forward<F>(f), std::views::all(std::forward<Range>(items)), true,
            options.max_in_flight};
  }

  /// gevent's Group.imap_unordered: imap(), but results come in the order
  /// the calls finish, and a worker's exception is rethrown at the step that
  /// reaches it in that order.
  template <class F, std::ranges::viewable_range Range>
  auto imap_unordered(F&& f, Range&& items, imap_options options = {})
      -> imap_range<std::decay_t<F>, std::views::all_t<Range>> {
    require_own_thread("imap_unordered");
    return {*this, std::forward<F>(f), std::views::all(std::forward<Range>(items)), false,
            options.max_in_flight};
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
  template <class Fn, class View>
  friend class imap_range;

  // The calls of one imap()/imap_unordered() in flight and the order their
  // results are handed out (pool.cpp).
  class imap_engine {
   public:
    imap_engine(group& owner, bool ordered, std::size_t max_in_flight) noexcept;
    imap_engine(const imap_engine&) = delete;
    imap_engine& operator=(const imap_engine&) = delete;
    // Kills the calls in flight, without waiting.
    ~imap_engine();
    // Room for one more call: under the bound, and no call failed yet.
    [[nodiscard]] bool wants_more() const noexcept;
    // Takes a slot for the next call (waits while the pool is full).
    void take_slot();
    void give_back_slot() noexcept;
    // `call` (spawned with a slot taken) joins the group and is watched; on
    // failure it is killed, the slot given back, and the exception thrown.
    void started(const basic_task& call);
    // The next finished call in the engine's order, waiting for it; an empty
    // handle once nothing is in flight. Switches while it waits.
    basic_task next();
    // Kills and joins what is still in flight (a failure is being rethrown).
    void abort();

   private:
    struct entry {
      basic_task call;
      std::uint64_t link_id = 0;
      bool done = false;
    };
    void on_done(std::list<entry>::iterator position, const basic_task& call) noexcept;

    group& owner_;
    bool ordered_;
    bool failed_ = false;
    std::size_t max_;
    std::list<entry> running_;   // in flight, in input order (ordered: also the finished ones)
    std::list<entry> finished_;  // unordered: finished, in completion order
    detail::waiter* waiting_ = nullptr;
  };

  // True if the calling greenlet is a member (apply runs inline then).
  [[nodiscard]] bool called_from_member() const noexcept;
  // True if spawn() would take a slot without waiting.
  [[nodiscard]] bool slot_free_now() const noexcept {
    return limit_ == unlimited || (occupied_ < limit_ && slot_waiters_.empty());
  }

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

/// What group::imap() and imap_unordered() return: a single-pass range of
/// the results (see there). Not copyable or movable; iterate it where it was
/// made.
template <class Fn, class View>
class imap_range {
  using item_type = std::ranges::range_value_t<View>;

 public:
  /// f's result for one item.
  using result_type = std::invoke_result_t<Fn&, item_type&>;
  static_assert(std::is_object_v<result_type>, "greenev::group::imap: f must return an object type");

  /// An input iterator over the results; ++ switches (see group::imap()).
  class iterator {
   public:
    /// Standard iterator traits: a single-pass input iterator over results.
    ///@{
    using iterator_concept = std::input_iterator_tag;
    using value_type = result_type;
    using difference_type = std::ptrdiff_t;
    ///@}
    iterator() noexcept = default;
    /// The current result. Never switches.
    ///@{
    result_type& operator*() const noexcept { return *owner_->current_; }
    result_type* operator->() const noexcept { return &*owner_->current_; }
    ///@}
    /// Waits for the next result (switches); rethrows a worker's exception.
    iterator& operator++() {
      owner_->step();
      return *this;
    }
    /// The same, for `it++`.
    void operator++(int) { ++*this; }
    /// True once every result was returned (or a failure ended it).
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept { return it.at_end(); }

   private:
    [[nodiscard]] bool at_end() const noexcept { return !owner_->current_.has_value(); }
    friend class imap_range;
    explicit iterator(imap_range* owner) noexcept : owner_(owner) {}
    imap_range* owner_ = nullptr;
  };

  /// Starts the iteration and waits for the first result (switches; throws
  /// as ++ does). Call it once: a later call returns the current position.
  iterator begin() {
    if (!begun_) {
      begun_ = true;
      step();
    }
    return iterator(this);
  }
  /// The end: compares equal to the iterator once the results are done.
  std::default_sentinel_t end() const noexcept { return {}; }

  imap_range(const imap_range&) = delete;
  imap_range& operator=(const imap_range&) = delete;
  /// Kills the calls still in flight without waiting (see group::imap()).
  ~imap_range() = default;

  /// For group::imap().
  template <class F>
  imap_range(group& owner, F&& f, View items, bool ordered, std::size_t max_in_flight)
      : owner_(owner),
        fn_(std::make_shared<Fn>(std::forward<F>(f))),
        items_(std::move(items)),
        engine_(owner, ordered, max_in_flight) {}

 private:
  void step() {
    current_.reset();
    if (!reading_) {
      next_ = std::ranges::begin(items_);
      reading_ = true;
    }
    while (!input_done_ && engine_.wants_more()) {
      if (next_ == std::ranges::end(items_)) {
        input_done_ = true;
        break;
      }
      engine_.take_slot();
      task<result_type> call;
      try {
        call = greenev::spawn([fn = fn_](item_type& item) -> result_type { return std::invoke(*fn, item); },
                              item_type(*next_));
      } catch (...) {
        engine_.give_back_slot();
        throw;
      }
      ++next_;
      engine_.started(call);
    }
    const basic_task finished = engine_.next();
    if (!finished) return;  // the end
    finished.state()->add_ref();
    const auto typed = task<result_type>::adopt(finished.state());
    try {
      current_.emplace(typed.get());  // a failure or kill rethrows
    } catch (...) {
      engine_.abort();
      input_done_ = true;  // read nothing more: the iteration ends here
      throw;
    }
  }

  group& owner_;
  std::shared_ptr<Fn> fn_;  // shared with the calls: they may outlive the range
  View items_;
  std::ranges::iterator_t<View> next_{};
  bool reading_ = false;
  bool input_done_ = false;
  bool begun_ = false;
  group::imap_engine engine_;
  std::optional<result_type> current_;
};

}  // namespace greenev
