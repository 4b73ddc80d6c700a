// greenev/queue.hpp — queues between greenlets (gevent.queue): queue<T>
// (FIFO), lifo_queue<T>, priority_queue<T, Compare>, joinable_queue<T>
// (task_done/join) and channel<T> (rendezvous, no storage).
//
//   greenev::queue<int> jobs(100);                        // holds at most 100 items
//   greenev::spawn([&] { for (;;) handle(jobs.get()); });  // waits while empty
//   jobs.put(42);                                         // waits only while full
//
//   greenev::queue<std::string> todo(0, {"a", "b"});      // starts with two items
//   todo.shutdown();                                      // no more puts; get() drains, then
//                                                         // throws queue_shut_down
//
// Getters and putters wait in FIFO order and items are handed over directly:
// a put() while greenlets wait in get() gives the item to the first of them,
// and a get() from a full queue takes the first waiting putter's item in, so
// a latecomer never overtakes a waiting greenlet. Nothing is lost when a wait
// is interrupted (a kill, an outer timeout) after the hand-over: an item
// given to a getter that has not run yet goes to the next getter or back to
// the head of the queue; a putter whose item was taken leaves it in. Own
// timeouts raise queue_empty (get, peek) and queue_full (put) — gevent's Empty
// and Full; the *_nowait forms and try_get() never switch, so they also work
// in hub callbacks. shutdown() ends a queue's use as Python 3.13's
// Queue.shutdown does: every later put() and every waiting putter throws
// queue_shut_down, get() drains what is left and then throws it too.
// Threading: one thread (the hub's).
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <deque>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <greenev/detail/waiter.hpp>
#include <greenev/hub.hpp>

namespace greenev {

/// Raised by get(), get_nowait() and peek() when no item came in time
/// (gevent.queue.Empty).
class queue_empty : public std::runtime_error {
 public:
  queue_empty() : std::runtime_error("greenev: get from an empty queue") {}
};

/// Raised by put() and put_nowait() when there was no room in time
/// (gevent.queue.Full).
class queue_full : public std::runtime_error {
 public:
  queue_full() : std::runtime_error("greenev: put to a full queue") {}
};

/// Raised by put() after shutdown(), by get() once a shut-down queue is
/// empty, and into every greenlet waiting in put(), get() or peek() when
/// shutdown() comes (Python 3.13's queue.ShutDown).
class queue_shut_down : public std::runtime_error {
 public:
  queue_shut_down() : std::runtime_error("greenev: the queue was shut down") {}
};

namespace detail {

// True when called in the hub greenlet (a loop callback).
bool calling_from_hub();

template <class T>
struct queue_get_slot;

// On a waiting putter's stack (its waiter's payload).
template <class T>
struct queue_put_slot {
  std::optional<T> item;                      // until a getter takes it
  queue_get_slot<T>* delivered_to = nullptr;  // channel: the getter we wait for
};

// On a waiting getter's stack (its waiter's payload).
template <class T>
struct queue_get_slot {
  std::optional<T> item;     // handed over, not yet returned
  waiter* putter = nullptr;  // channel: the putter waiting until we took it
};

// Storage policies: where items wait and which one comes out next.
// give_back() re-inserts an item handed out but never received, so that it
// is the next one out.
template <class T>
class fifo_storage {
 public:
  static constexpr bool rendezvous = false;
  void push(T&& item) { items_.push_back(std::move(item)); }
  T pop() {
    T item = std::move(items_.front());
    items_.pop_front();
    return item;
  }
  [[nodiscard]] const T& next() const { return items_.front(); }
  void give_back(T&& item) { items_.push_front(std::move(item)); }
  void clear() noexcept { items_.clear(); }
  [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
  [[nodiscard]] bool empty() const noexcept { return items_.empty(); }

 private:
  std::deque<T> items_;
};

template <class T>
class lifo_storage {
 public:
  static constexpr bool rendezvous = false;
  void push(T&& item) { items_.push_back(std::move(item)); }
  T pop() {
    T item = std::move(items_.back());
    items_.pop_back();
    return item;
  }
  [[nodiscard]] const T& next() const { return items_.back(); }
  void give_back(T&& item) { push(std::move(item)); }
  void clear() noexcept { items_.clear(); }
  [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
  [[nodiscard]] bool empty() const noexcept { return items_.empty(); }

 private:
  std::vector<T> items_;
};

// A binary heap whose top is the smallest item under Compare (heapq order).
template <class T, class Compare>
class priority_storage {
 public:
  static constexpr bool rendezvous = false;
  void push(T&& item) {
    items_.push_back(std::move(item));
    std::push_heap(items_.begin(), items_.end(), later_);
  }
  T pop() {
    std::pop_heap(items_.begin(), items_.end(), later_);
    T item = std::move(items_.back());
    items_.pop_back();
    return item;
  }
  [[nodiscard]] const T& next() const { return items_.front(); }
  void give_back(T&& item) { push(std::move(item)); }
  void clear() noexcept { items_.clear(); }
  [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
  [[nodiscard]] bool empty() const noexcept { return items_.empty(); }

 private:
  struct later {  // std heaps put the greatest first; invert to get the least
    [[no_unique_address]] Compare less;
    bool operator()(const T& a, const T& b) const { return less(b, a); }
  };
  std::vector<T> items_;
  [[no_unique_address]] later later_{};
};

// A channel stores nothing; this holds only items given back by getters
// interrupted after a hand-over.
template <class T>
class channel_storage : public fifo_storage<T> {
 public:
  static constexpr bool rendezvous = true;
};

}  // namespace detail

/// The one queue implementation; use the aliases and classes below. T must
/// be movable; peek() also needs it copyable. Not copyable or movable
/// (waiting greenlets point into it).
template <class T, class Storage>
class basic_queue {
 public:
  /// The item type.
  using value_type = T;

  /// A queue holding at most `maxsize` items; 0 means unbounded.
  explicit basic_queue(std::size_t maxsize = 0)
      : maxsize_(Storage::rendezvous ? 0 : maxsize),
        limit_(Storage::rendezvous ? 0
               : maxsize == 0      ? static_cast<std::size_t>(-1)
                                   : maxsize) {}
  /// A queue holding at most `maxsize` items (0: unbounded) that starts with
  /// `items`, as if each was put() in order (gevent's Queue(maxsize,
  /// items)). Never switches. Throws std::invalid_argument if there are more
  /// items than `maxsize` allows. Not for channels, which hold nothing.
  basic_queue(std::size_t maxsize, std::initializer_list<T> items) requires(!Storage::rendezvous &&
                                                                            std::is_copy_constructible_v<T>)
      : basic_queue(maxsize) {
    put_initial(items);
  }
  /// As above, from any input range whose elements convert to T (moved from
  /// if the range yields rvalues).
  template <std::ranges::input_range Range>
  requires(!Storage::rendezvous && std::convertible_to<std::ranges::range_reference_t<Range>, T>)
      basic_queue(std::size_t maxsize, Range&& items)
      : basic_queue(maxsize) {
    put_initial(std::forward<Range>(items));
  }
  basic_queue(const basic_queue&) = delete;
  basic_queue& operator=(const basic_queue&) = delete;

  /// Adds `item`, waiting up to `timeout` while the queue is full. Hands it
  /// straight to the first waiting getter if there is one; a channel's put
  /// then also waits until that getter has run with it (except in the hub
  /// and for put_nowait). Switches only if it must wait. Throws queue_full if
  /// `timeout` passed first (the item is dropped), queue_shut_down if the
  /// queue is shut down (at the call or while it waits; the item is
  /// dropped), greenlet_error if it must wait in the hub; interrupting
  /// exceptions (kill, outer timeout) propagate.
  void put(T item, wait_time timeout = {}) {
    if (shut_down_) throw queue_shut_down();
    if (!getters_.empty()) {
      const bool wait_until_received =
          Storage::rendezvous && !timeout.is_poll() && !detail::calling_from_hub();
      deliver(*getters_.pop_front(), std::move(item), wait_until_received);
      return;
    }
    if (storage_.size() < limit_) {
      show_to_peekers(item);
      storage_.push(std::move(item));
      ++unfinished_;
      return;
    }
    if (timeout.is_poll()) throw queue_full();
    wait_for_room(std::move(item), timeout);
  }

  /// put() without waiting: throws queue_full at once if there is no room
  /// (for a channel: no getter waiting), queue_shut_down after shutdown().
  /// Never switches.
  void put_nowait(T item) { put(std::move(item), wait_time(std::chrono::nanoseconds(0))); }

  /// Removes and returns the next item, waiting up to `timeout` while there
  /// is none. Taking an item from a full queue lets the first waiting putter
  /// in. Switches only if it must wait. Throws queue_empty if `timeout`
  /// passed first, queue_shut_down if the queue is shut down and empty (at
  /// the call or while it waits), greenlet_error if it must wait in the hub;
  /// interrupting exceptions (kill, outer timeout) propagate.
  T get(wait_time timeout = {}) {
    if (std::optional<T> item = try_get()) return std::move(*item);
    if (shut_down_) throw queue_shut_down();
    if (timeout.is_poll()) throw queue_empty();
    return wait_for_item(timeout);
  }

  /// get() without waiting: throws queue_empty at once (queue_shut_down if
  /// the queue is shut down and empty). Never switches.
  T get_nowait() { return get(wait_time(std::chrono::nanoseconds(0))); }

  /// The next item if one is ready (stored, or offered by a waiting putter),
  /// else empty. Never switches, never throws queue_empty or
  /// queue_shut_down.
  std::optional<T> try_get() {
    if (!storage_.empty()) {
      std::optional<T> item(storage_.pop());
      while (storage_.size() < limit_ && !putters_.empty()) storage_.push(take_from(*putters_.pop_front()));
      return item;
    }
    if (!putters_.empty()) return take_from(*putters_.pop_front());
    return std::nullopt;
  }

  /// A copy of the next item, left in the queue; if the queue is empty,
  /// waits up to `timeout` and returns a copy of the first item to arrive
  /// (which a waiting getter may already have taken). Switches only if empty.
  /// Throws queue_empty if `timeout` passed first, queue_shut_down if the
  /// queue is shut down and empty, greenlet_error if it must wait in the
  /// hub. Not for channels, which hold nothing.
  T peek(wait_time timeout = {}) requires(!Storage::rendezvous && std::is_copy_constructible_v<T>) {
    if (!storage_.empty()) return storage_.next();
    if (shut_down_) throw queue_shut_down();
    if (timeout.is_poll()) throw queue_empty();
    detail::waiter w("queue peek");
    std::optional<T> copy;
    w.payload = &copy;
    peekers_.push_back(w);
    detail::park(w, timeout);
    if (!copy) {
      if (shut_down_) throw queue_shut_down();
      throw queue_empty();
    }
    return std::move(*copy);
  }

  /// peek() without waiting: throws queue_empty at once (queue_shut_down if
  /// shut down and empty). Never switches.
  T peek_nowait() requires(!Storage::rendezvous && std::is_copy_constructible_v<T>) {
    return peek(wait_time(std::chrono::nanoseconds(0)));
  }

  /// Items stored (gevent's qsize()); always 0 for a channel, except
  /// briefly for an item given back by an interrupted getter.
  [[nodiscard]] std::size_t size() const noexcept { return storage_.size(); }
  /// size() == 0. Never switches, like every accessor here.
  [[nodiscard]] bool empty() const noexcept { return storage_.empty(); }
  /// True if put() would wait (always true for a channel with no getter).
  [[nodiscard]] bool full() const noexcept { return storage_.size() >= limit_; }
  /// The bound given at construction (0: unbounded; 0 for a channel).
  [[nodiscard]] std::size_t maxsize() const noexcept { return maxsize_; }
  /// Greenlets waiting in get().
  [[nodiscard]] std::size_t getters() const noexcept { return getters_.size(); }
  /// Greenlets waiting in put().
  [[nodiscard]] std::size_t putters() const noexcept { return putters_.size(); }

  /// Python 3.13's Queue.shutdown: from now on put() throws
  /// queue_shut_down, and so does every greenlet waiting in put() (its item
  /// is not added) or, the queue being empty, in get() and peek(): they are
  /// all woken with it. get() still returns the items stored, then throws it.
  /// With `immediate`, the stored items are dropped first (for a
  /// joinable_queue, each counts as done, and join() returns once none is
  /// left unfinished), so get() throws at once; items
  /// already handed to a getter that has not run yet stay its own. Calling it
  /// again does nothing more, except that `immediate` still drops the items.
  /// Never switches (the woken greenlets run later), so it works in hub
  /// callbacks.
  void shutdown(bool immediate = false) noexcept {
    shut_down_ = true;
    if (immediate) {
      const std::size_t dropped = storage_.size();
      storage_.clear();
      unfinished_ -= std::min(dropped, unfinished_);
    }
    detail::wake_all(getters_);
    detail::wake_all(putters_);
    detail::wake_all(peekers_);
    if (unfinished_ == 0) detail::wake_all(joiners_);
  }
  /// True once shutdown() was called.
  [[nodiscard]] bool is_shut_down() const noexcept { return shut_down_; }

 protected:
  /// Items accepted (stored or handed to a getter) and not yet marked done;
  /// joinable_queue exposes it.
  std::size_t unfinished_ = 0;
  /// Greenlets in joinable_queue::join(), here so that shutdown() wakes them
  /// however it is called.
  detail::wait_list joiners_;

 private:
  using get_slot = detail::queue_get_slot<T>;
  using put_slot = detail::queue_put_slot<T>;
  static get_slot& slot_of_getter(detail::waiter& w) noexcept { return *static_cast<get_slot*>(w.payload); }
  static put_slot& slot_of_putter(detail::waiter& w) noexcept { return *static_cast<put_slot*>(w.payload); }

  template <class Range>
  void put_initial(Range&& items) {
    if constexpr (std::ranges::sized_range<Range>) {
      if (maxsize_ != 0 && std::ranges::size(items) > maxsize_) throw_too_many_items();
    }
    for (auto&& item : items) {
      if (storage_.size() >= limit_) throw_too_many_items();
      storage_.push(T(std::forward<decltype(item)>(item)));
      ++unfinished_;
    }
  }
  [[noreturn]] void throw_too_many_items() const {
    throw std::invalid_argument("greenev: a queue of maxsize " + std::to_string(maxsize_) +
                                " constructed with more items than that");
  }

  // Peekers wait for the next item to arrive; each gets a copy.
  void show_to_peekers(const T& item) {
    if constexpr (std::is_copy_constructible_v<T>) {
      while (detail::waiter* peeker = peekers_.pop_front()) {
        static_cast<std::optional<T>*>(peeker->payload)->emplace(item);
        detail::schedule_wake(*peeker);
      }
    }
  }

  void deliver(detail::waiter& getter, T&& item, bool wait_until_received) {
    get_slot& slot = slot_of_getter(getter);
    slot.item.emplace(std::move(item));
    ++unfinished_;
    detail::schedule_wake(getter);
    show_to_peekers(*slot.item);
    if (!wait_until_received) return;
    // Rendezvous (gevent's Channel): return once the getter has run. The item
    // is delivered already, so this waits without a timeout; if we are
    // interrupted, the getter must not confirm to a dead waiter.
    detail::waiter self("channel put (rendezvous)");
    put_slot mine;
    mine.delivered_to = &slot;
    self.payload = &mine;
    slot.putter = &self;
    struct forget_getter {
      put_slot& mine;
      ~forget_getter() {
        if (mine.delivered_to != nullptr) mine.delivered_to->putter = nullptr;
      }
    } guard{mine};
    detail::park(self);
  }

  // A waiting putter's item, accepted now; the putter is woken (its put()
  // returns).
  T take_from(detail::waiter& putter) {
    put_slot& slot = slot_of_putter(putter);
    T item = std::move(*slot.item);
    slot.item.reset();
    ++unfinished_;
    detail::schedule_wake(putter);
    return item;
  }

  // A rendezvous putter waits until its getter has the item; let it go.
  static void release_putter(get_slot& slot) noexcept {
    detail::waiter* putter = std::exchange(slot.putter, nullptr);
    slot_of_putter(*putter).delivered_to = nullptr;
    detail::schedule_wake(*putter);
  }

  void wait_for_room(T&& item, wait_time timeout) {
    detail::waiter w("queue put");
    put_slot slot;
    slot.item.emplace(std::move(item));
    w.payload = &slot;
    putters_.push_back(w);
    // Putters are woken by take_from() (which accepts the item) and by
    // shutdown() (which leaves it in the slot).
    detail::park(w, timeout);
    if (!slot.item) return;
    if (shut_down_) throw queue_shut_down();
    throw queue_full();
  }

  T wait_for_item(wait_time timeout) {
    detail::waiter w("queue get");
    get_slot slot;
    w.payload = &slot;
    struct pass_on_unclaimed {
      basic_queue& queue;
      get_slot& slot;
      ~pass_on_unclaimed() {
        if (slot.item) queue.pass_on(slot);
      }
    } guard{*this, slot};
    getters_.push_back(w);
    detail::park(w, timeout);
    if (!slot.item) {
      if (shut_down_) throw queue_shut_down();
      throw queue_empty();
    }
    T item = std::move(*slot.item);
    slot.item.reset();
    if (slot.putter != nullptr) release_putter(slot);
    return item;
  }

  // A getter leaves (by an exception) holding an item it never returned:
  // the next getter gets it, else it goes back to be the next one out.
  void pass_on(get_slot& from) {
    if (detail::waiter* next = getters_.pop_front()) {
      get_slot& to = slot_of_getter(*next);
      to.item.emplace(std::move(*from.item));
      from.item.reset();
      to.putter = std::exchange(from.putter, nullptr);
      if (to.putter != nullptr) slot_of_putter(*to.putter).delivered_to = &to;
      detail::schedule_wake(*next);
      return;
    }
    show_to_peekers(*from.item);
    storage_.give_back(std::move(*from.item));
    from.item.reset();
    if (from.putter != nullptr) release_putter(from);
  }

  Storage storage_;
  std::size_t maxsize_;
  std::size_t limit_;  // storage bound: maxsize, "infinite" for 0, 0 for a channel
  detail::wait_list getters_;
  detail::wait_list putters_;
  detail::wait_list peekers_;
  bool shut_down_ = false;
};

/// First in, first out (gevent.queue.Queue).
template <class T>
using queue = basic_queue<T, detail::fifo_storage<T>>;

/// Last in, first out (gevent.queue.LifoQueue).
template <class T>
using lifo_queue = basic_queue<T, detail::lifo_storage<T>>;

/// Smallest first under Compare (gevent.queue.PriorityQueue, heapq order):
/// with the default std::less, get() returns the least item — the opposite
/// of std::priority_queue. Equal items come out in no particular order.
template <class T, class Compare = std::less<T>>
using priority_queue = basic_queue<T, detail::priority_storage<T, Compare>>;

/// A FIFO queue that counts unfinished items (gevent.queue.JoinableQueue):
/// every accepted put() adds one, task_done() removes one, join() waits for
/// zero.
template <class T>
class joinable_queue : public basic_queue<T, detail::fifo_storage<T>> {
 public:
  /// A queue holding at most `maxsize` items; 0 means unbounded.
  explicit joinable_queue(std::size_t maxsize = 0) : basic_queue<T, detail::fifo_storage<T>>(maxsize) {}
  /// Starts with `items`, each unfinished until task_done() (gevent's
  /// JoinableQueue(maxsize, items)); as basic_queue's constructor.
  joinable_queue(std::size_t maxsize, std::initializer_list<T> items) requires std::is_copy_constructible_v<T>
      : basic_queue<T, detail::fifo_storage<T>>(maxsize, items) {}
  /// As above, from any input range whose elements convert to T.
  template <std::ranges::input_range Range>
  requires std::convertible_to<std::ranges::range_reference_t<Range>, T> joinable_queue(std::size_t maxsize,
                                                                                        Range&& items)
      : basic_queue<T, detail::fifo_storage<T>>(maxsize, std::forward<Range>(items)) {}

  /// Marks one item processed; at zero, wakes every join()er. Never
  /// switches. Throws greenlet_error if called more often than items were
  /// put (gevent's ValueError).
  void task_done() {
    if (this->unfinished_ == 0)
      throw greenlet_error("greenev: joinable_queue::task_done called too many times");
    if (--this->unfinished_ == 0) detail::wake_all(this->joiners_);
  }

  /// Waits until every item put so far was marked done. Returns true then
  /// (at once if none is pending), false if `timeout` passed first. Switches
  /// unless none is pending. Throws greenlet_error if it must wait in the
  /// hub; interrupting exceptions propagate.
  bool join(wait_time timeout = {}) {
    if (this->unfinished_ == 0) return true;
    if (timeout.is_poll()) return false;
    detail::waiter w("queue join");
    this->joiners_.push_back(w);
    return detail::park(w, timeout);
  }

  /// Items put and not yet marked done.
  [[nodiscard]] std::size_t unfinished_tasks() const noexcept { return this->unfinished_; }
  /// Greenlets waiting in join().
  [[nodiscard]] std::size_t joiners() const noexcept { return this->joiners_.size(); }
};

/// A rendezvous (gevent.queue.Channel): it stores nothing, put() waits until
/// a getter has taken its item, get() waits until a putter offers one.
/// size() is 0 and full() true (but see basic_queue::size()).
template <class T>
class channel : public basic_queue<T, detail::channel_storage<T>> {
 public:
  channel() : basic_queue<T, detail::channel_storage<T>>(0) {}
};

}  // namespace greenev
