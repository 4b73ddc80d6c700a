// greenev/semaphore.hpp — counting semaphores and locks between greenlets:
// semaphore, bounded_semaphore, mutex (alias lock) and rlock (gevent.lock).
//
//   greenev::lock guard;
//   greenev::spawn([&] { std::lock_guard hold(guard); greenev::sleep(0.1); });
//   greenev::yield();              // the task starts and takes the lock
//   std::lock_guard hold(guard);   // waits, cooperatively, until it unlocks
//
// Waiters are served first come, first served, with direct hand-off: a
// release() while greenlets wait gives the unit to the first of them, so a
// greenlet that asks later cannot take it first, and a waiter that leaves
// (timeout, kill) before it resumes passes the unit on. Acquiring switches
// only when it must wait; releasing never switches, so it may be done from
// hub callbacks. Misuse (releasing too often, releasing an rlock one does not
// hold) throws greenlet_error and changes nothing. Every type here is
// Lockable (lock/try_lock/unlock, and try_lock_for), so std::lock_guard and
// std::unique_lock work with all of them, and greenev::wait / iwait accept
// them: ready when acquire() would not wait (nothing is acquired).
// Threading: one thread (the hub's); greenlets of other threads must not touch
// these objects.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include <greenev/detail/observer.hpp>
#include <greenev/detail/waiter.hpp>
#include <greenev/hub.hpp>

namespace greenev {

class waitable;

/// A counter greenlets wait on (gevent.lock.Semaphore): acquire() takes one
/// unit, waiting while there is none; release() returns one. Lockable, so
/// `std::lock_guard hold(sem);` holds a unit for a scope (gevent's `with
/// sem:`). Not copyable.
class semaphore {
 public:
  /// Starts with `initial` units (gevent's default is 1).
  explicit semaphore(std::size_t initial = 1) noexcept : value_(initial) {}
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  /// Takes a unit, waiting up to `timeout` for one. Returns true once it has
  /// it, false if `timeout` passed first (a zero timeout only polls). Switches
  /// only if no unit is free. Throws greenlet_error if it must wait in the
  /// hub; exceptions thrown into the greenlet meanwhile (a kill, an outer
  /// timeout) propagate, and a unit handed over too late is passed on.
  bool acquire(wait_time timeout = {}) {
    if (value_ > 0) {  // no waiter can be queued while units are free
      --value_;
      return true;
    }
    return acquire_slow(timeout);
  }

  /// Takes a unit if one is free; returns false otherwise. Never switches,
  /// never throws; usable in the hub.
  bool try_acquire() noexcept {
    if (value_ == 0) return false;
    --value_;
    return true;
  }

  /// Returns a unit: hands it to the first waiter (whose wake-up is
  /// scheduled) or adds it to the free count. Never switches. Throws
  /// greenlet_error for a bounded_semaphore already at its initial value.
  void release();

  /// The Lockable spellings: lock() is acquire() waiting forever, try_lock()
  /// is try_acquire(), try_lock_for(duration) is acquire(duration), unlock()
  /// is release(); they switch and throw the same way.
  ///@{
  void lock() { (void)acquire(); }
  bool try_lock() noexcept { return try_acquire(); }
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& duration) {
    return acquire(duration);
  }
  void unlock() { release(); }
  ///@}

  /// Free units (0 while greenlets wait). Never switches.
  [[nodiscard]] std::size_t value() const noexcept { return value_; }
  /// True if acquire() would wait.
  [[nodiscard]] bool locked() const noexcept { return value_ == 0; }
  /// Greenlets waiting in acquire().
  [[nodiscard]] std::size_t waiters() const noexcept { return waiters_.size(); }

 protected:
  /// A semaphore whose release() may not go above `bound` (bounded_semaphore).
  semaphore(std::size_t initial, std::size_t bound) noexcept : value_(initial), bound_(bound) {}

 private:
  friend class waitable;
  bool acquire_slow(wait_time timeout);
  void give() noexcept;  // the hand-off (or count) behind release()
  void count_up() noexcept {
    if (value_++ == 0) detail::notify_all(observers_);
  }

  std::size_t value_;
  std::size_t bound_ = static_cast<std::size_t>(-1);  // release() above this is misuse
  detail::wait_list waiters_;
  detail::observer_list observers_;  // greenev::wait / iwait: told when a unit becomes free
};

/// A semaphore that may not be released above its initial value
/// (gevent.lock.BoundedSemaphore): such a release() throws greenlet_error
/// ("released too many times"), gevent's ValueError.
class bounded_semaphore : public semaphore {
 public:
  /// `initial` units, and never more.
  explicit bounded_semaphore(std::size_t initial = 1) noexcept : semaphore(initial, initial) {}
};

/// A non-recursive lock (gevent.lock.Lock, a bounded_semaphore of 1) that
/// satisfies the standard Lockable and TimedLockable requirements (lock,
/// try_lock, try_lock_for, unlock: semaphore's), so std::lock_guard,
/// std::unique_lock and std::scoped_lock work with it; unlock() of a free
/// lock throws greenlet_error. It is not owned: any greenlet may unlock it;
/// locking it twice from the same greenlet waits forever (loop_exit if
/// nothing else can unlock it). Named mutex because a class cannot have a
/// member named like itself; greenev::lock is the same type.
class mutex : public bounded_semaphore {
 public:
  mutex() noexcept : bounded_semaphore(1) {}
};

/// gevent's name for mutex.
using lock = mutex;

/// A re-entrant lock owned by a greenlet (gevent.lock.RLock): the owner may
/// acquire it again without waiting, and must release it as often; only the
/// owner may release it. Lockable, so std::lock_guard and std::unique_lock
/// work. A greenlet that dies holding it leaves it held.
class rlock {
 public:
  rlock() noexcept = default;
  rlock(const rlock&) = delete;
  rlock& operator=(const rlock&) = delete;

  /// Takes the lock, or another level of it if the calling greenlet already
  /// owns it (never waits then). Returns false if `timeout` passed first.
  /// Switches only if another greenlet holds it. Throws like
  /// semaphore::acquire().
  bool acquire(wait_time timeout = {});
  /// Takes it (or another level) if possible. Never switches; usable in the
  /// hub (which then owns it).
  bool try_acquire();
  /// Drops one level; the last one frees the lock for the first waiter.
  /// Never switches. Throws greenlet_error if the calling greenlet does not
  /// own it.
  void release();

  /// The Lockable spellings of acquire() (waiting forever), try_acquire(),
  /// acquire(duration) and release(); they switch and throw the same way.
  ///@{
  void lock() { (void)acquire(); }
  bool try_lock() { return try_acquire(); }
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& duration) {
    return acquire(duration);
  }
  void unlock() { release(); }
  ///@}

  /// True if some greenlet holds it (or it was handed to a waiter that has
  /// not run yet).
  [[nodiscard]] bool locked() const noexcept { return block_.locked(); }
  /// True if the calling greenlet holds it.
  [[nodiscard]] bool owned_by_current() const noexcept;
  /// How many times the owner acquired it (0 if free).
  [[nodiscard]] std::size_t depth() const noexcept { return depth_; }
  /// Greenlets waiting to acquire it.
  [[nodiscard]] std::size_t waiters() const noexcept { return block_.waiters(); }

 private:
  friend class waitable;
  mutex block_;
  detail::greenlet_impl* owner_ = nullptr;  // identity only (null when free); never dereferenced
  std::size_t depth_ = 0;
};

inline void semaphore::release() {
  if (waiters_.empty()) {
    if (value_ >= bound_) {
      throw greenlet_error("greenev: a bounded semaphore released too many times (bound " +
                           std::to_string(bound_) + "; for a lock: unlocked while not locked)");
    }
    count_up();
    return;
  }
  give();
}

}  // namespace greenev
