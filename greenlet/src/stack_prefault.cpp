// Background prefaulting of compact stacks.
//
// A fresh stack's first page costs a fault (~1.3 us: memcg charge, zeroing,
// LRU) when its greenlet first runs; for a burst of 100,000 spawns that is
// most of the time it takes to start them, all on the hub's thread. With
// stack_prefault::background, creating a greenlet that will need a compact
// stack counts it in its pool's bucket; when the counted greenlets outnumber
// the bucket's free and requested stacks, the pool asks one process-wide
// helper thread for a slab. The helper maps it, touches each stack's top page
// and hands them over in small chunks; the pool takes them when it runs dry.
// Faults of different threads run in parallel (per-VMA locks), so the hub
// thread starting greenlets and the helper divide the work. When the helper
// is behind, the pool maps a slab itself and withdraws one request, so the
// two never fault more than demand plus the slab in progress. The owner
// only try_locks the shared mutex on its hot paths, so a descheduled helper
// holding it cannot stall the hub; a missed try is harmless (it asks or
// collects on a later call, or maps its own slab). The helper keeps normal
// priority: at SCHED_IDLE it could be preempted inside mmap() holding the
// kernel's mmap lock, which the hub thread's own mmap and brk then wait for.

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <new>
#include <system_error>

#include "stack_internal.hpp"

namespace greenev::detail {

std::atomic<std::size_t> prefaulted_stacks{0};

namespace {

// Handed over as they are touched: a pool that ran dry gets work sooner.
constexpr std::size_t prefault_chunk = 16;

struct prefault_helper {
  std::mutex mutex;
  std::condition_variable work;
  std::deque<std::shared_ptr<prefault_mailbox>> queue;
  // Free compact stacks whose pages the helper returns for an idle hub.
  std::vector<stack_memory> returns;
  bool started = false;
};
prefault_helper& helper() {
  static prefault_helper* h = new prefault_helper;  // leaked: its thread never exits
  return *h;
}

void touch_top_page(stack_memory& stack) noexcept {
  // Writing the zero the fresh page already holds commits it; only the
  // helper can see these stacks yet.
  *reinterpret_cast<volatile char*>(stack.top() - 1) = 0;
  stack.fresh = false;
}

void prefault_slab(prefault_mailbox& box, std::size_t size) noexcept {
  std::vector<stack_memory> slab;
  try {
    slab.reserve(stacks_in_slab(size));
    map_compact_slab(size, slab);
  } catch (...) {
    return;  // no memory or mappings: the pool maps (and reports) it itself
  }
  for (std::size_t done = 0; done < slab.size();) {
    const std::size_t end = std::min(slab.size(), done + prefault_chunk);
    for (std::size_t i = done; i < end; ++i) touch_top_page(slab[i]);
    prefaulted_stacks.fetch_add(end - done, std::memory_order_relaxed);
    {
      std::lock_guard lock(helper().mutex);
      if (!box.abandoned) {
        try {
          box.ready.insert(box.ready.end(), slab.begin() + static_cast<std::ptrdiff_t>(done),
                           slab.begin() + static_cast<std::ptrdiff_t>(end));
          done = end;
          continue;
        } catch (...) {
          // No memory for the list: give the rest back below.
        }
      }
    }
    return_compact(slab.data() + done, slab.size() - done);
    return;
  }
}

void run_prefault_helper() noexcept {
  prefault_helper& h = helper();
  std::unique_lock lock(h.mutex);
  for (;;) {
    h.work.wait(lock, [&] { return !h.queue.empty() || !h.returns.empty(); });
    if (!h.returns.empty()) {
      std::vector<stack_memory> returns;
      returns.swap(h.returns);
      lock.unlock();
      return_compact(returns.data(), returns.size());
      lock.lock();
      continue;
    }
    std::shared_ptr<prefault_mailbox> box = std::move(h.queue.front());
    h.queue.pop_front();
    if (box->abandoned || box->wanted == 0) {
      box->queued = false;
      continue;
    }
    --box->wanted;
    const std::size_t size = box->size;
    if (box->wanted > 0) {
      h.queue.push_back(box);  // round robin between threads' pools
    } else {
      box->queued = false;
    }
    lock.unlock();
    prefault_slab(*box, size);
    lock.lock();
  }
}

// A forked child has no helper thread, and the parent's may have held the
// locks it takes (its own, the orphan list's while returning stacks, the
// pool registry's). Held across the fork, they are consistent in the child,
// which then makes them anew rather than unlocking them: the helper's
// condition variable still counts the parent's helper as a waiter (glibc
// keeps waiter and group counts inside it), a thread that does not exist in
// the child; a notify aimed at it was lost, or waited forever for it to wake.
void lock_helper_for_fork() noexcept {
  helper().mutex.lock();
  orphan_list_mutex().lock();
  pool_registry_mutex().lock();
}
void unlock_helper_after_fork() noexcept {
  pool_registry_mutex().unlock();
  orphan_list_mutex().unlock();
  helper().mutex.unlock();
}
void reset_helper_in_child() noexcept {
  prefault_helper& h = helper();
  h.started = false;
  for (const auto& box : h.queue) box->queued = false;
  h.queue.clear();
  // The old objects are abandoned, never destroyed (nor unlocked).
  ::new (static_cast<void*>(&pool_registry_mutex())) std::mutex;
  ::new (static_cast<void*>(&orphan_list_mutex())) std::mutex;
  ::new (static_cast<void*>(&h.work)) std::condition_variable;
  ::new (static_cast<void*>(&h.mutex)) std::mutex;
}

// Called with the helper's mutex held. Throws if the thread cannot start.
void start_prefault_helper(prefault_helper& h) {
  static const bool registered = [] {
    ::pthread_atfork(lock_helper_for_fork, unlock_helper_after_fork, reset_helper_in_child);
    return true;
  }();
  (void)registered;
  // Detached, and taking no signals: they belong to the program's own threads.
  pthread_attr_t attributes;
  ::pthread_attr_init(&attributes);
  ::pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  pthread_t thread;
  const int error = ::pthread_create(
      &thread, &attributes,
      [](void*) -> void* {
        // Linux takes 15 characters at most (the setname call fails beyond).
        ::pthread_setname_np(::pthread_self(), "greenev-pfault");
        run_prefault_helper();
        return nullptr;
      },
      nullptr);
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  ::pthread_attr_destroy(&attributes);
  if (error != 0) throw std::system_error(error, std::generic_category(), "greenev: prefault thread");
  h.started = true;
}

}  // namespace

std::mutex& prefault_mutex() noexcept {
  return helper().mutex;
}

// Asks for one more slab for `box`; false if the helper's lock was busy.
// Throws if the helper cannot start.
bool try_request_slab(const std::shared_ptr<prefault_mailbox>& box) {
  prefault_helper& h = helper();
  {
    std::unique_lock lock(h.mutex, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    if (!h.started) start_prefault_helper(h);
    ++box->wanted;
    if (box->queued) return true;  // the helper will come back to it
    h.queue.push_back(box);
    box->queued = true;
  }
  h.work.notify_one();
  return true;
}

// Hands free compact stacks to the helper, which returns their pages; false
// (nothing done) if its lock is busy or it has no memory for the list.
bool try_hand_to_helper(const stack_memory* stacks, std::size_t count) noexcept {
  prefault_helper& h = helper();
  {
    std::unique_lock lock(h.mutex, std::try_to_lock);
    if (!lock.owns_lock() || !h.started) return false;
    try {
      h.returns.insert(h.returns.end(), stacks, stacks + count);
    } catch (...) {
      return false;
    }
  }
  h.work.notify_one();
  return true;
}

}  // namespace greenev::detail
