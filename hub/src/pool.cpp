// Groups and pools: membership through task links, pool slots handed over
// FIFO through waiters.
#include <greenev/pool.hpp>

#include <string>

#include <greenev/detail/scope_exit.hpp>

#include "hub_impl.hpp"

namespace greenev {

namespace {

// A waiter's payload once release_slot() handed it a slot. The waiter then
// owns the slot: if it leaves without using it (killed before it resumed),
// it must pass the slot on.
char slot_granted;

using steady = std::chrono::steady_clock;

// The time left until `deadline` (forever stays forever).
wait_time remaining(wait_time total, steady::time_point deadline) {
  if (total.is_forever()) return total;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - steady::now());
}

steady::time_point deadline_after(wait_time total) {
  return total.is_forever() ? steady::time_point::max() : steady::now() + total.duration();
}

}  // namespace

void group::require_own_thread(const char* operation) {
  const void* here = detail::current_greenlet()->anchor;
  const void* bound = thread_.load(std::memory_order_relaxed);
  if (bound == here) [[likely]]
    return;
  if (bound == nullptr && thread_.compare_exchange_strong(bound, here, std::memory_order_relaxed)) return;
  throw greenlet_error(
      std::string("greenev: group::") + operation +
      " on another thread than the group's: a group belongs to the first thread that used it");
}

// Not basic_task::unlink(): its thread check would throw out of a destructor
// run after the thread's greenlet state is gone (a static group at exit).
group::~group() {
  for (member& m : members_) detail::remove_user_link(*m.task.state(), m.link_id);
}

bool group::acquire_slot(wait_time timeout, map_run* run) {
  if (limit_ == unlimited) return true;
  if (occupied_ < limit_ && slot_waiters_.empty()) {
    ++occupied_;
    return true;
  }
  detail::waiter w("pool slot");
  slot_waiters_.push_back(w);
  struct pass_on {
    group& self;
    detail::waiter& w;
    map_run* run;
    bool used = false;
    ~pass_on() {
      if (run != nullptr) run->waiting = nullptr;
      if (!used && w.payload == &slot_granted) self.release_slot();
    }
  } guard{*this, w, run};
  if (run != nullptr) run->waiting = &w;
  detail::park(w, timeout);
  guard.used = w.payload == &slot_granted;
  return guard.used;
}

void group::acquire_slot_or_throw(wait_time timeout) {
  if (!acquire_slot(timeout)) {
    throw pool_full("greenev: pool of " + std::to_string(limit_) + " still full after waiting " +
                    std::to_string(std::chrono::duration<double>(timeout.duration()).count()) + " s");
  }
}

void group::release_slot() noexcept {
  if (limit_ == unlimited) return;
  if (detail::waiter* w = slot_waiters_.pop_front()) {
    w->payload = &slot_granted;
    detail::schedule_wake(*w);
    return;
  }
  --occupied_;
  detail::wake_all(available_waiters_);
}

void group::insert_member(const basic_task& task) {
  const auto position = members_.insert(members_.end(), member{task});
  try {
    index_.emplace(task.state(), position);
    position->link_id = task.link([this](const basic_task& finished) { discard(finished); });
  } catch (...) {
    index_.erase(task.state());
    members_.erase(position);
    task.kill({.block = false});  // unstarted: it never runs
    throw;
  }
}

void group::add(const basic_task& task, wait_time timeout) {
  require_own_thread("add");
  if (!task) throw greenlet_error("greenev: group::add: an empty task handle");
  if (!detail::on_task_thread(*task.state())) detail::throw_foreign_task("group::add");
  if (contains(task)) return;
  acquire_slot_or_throw(timeout);
  if (contains(task)) {  // added by someone else while we waited
    release_slot();
    return;
  }
  try {
    insert_member(task);
  } catch (...) {
    release_slot();
    throw;
  }
}

bool group::discard(const basic_task& task) noexcept {
  const auto found = index_.find(task.state());
  if (found == index_.end()) return false;
  const auto position = found->second;
  index_.erase(found);
  // A no-op when the link is what called us.
  detail::remove_user_link(*position->task.state(), position->link_id);
  members_.erase(position);
  release_slot();
  detail::wake_all(discard_waiters_);
  if (members_.empty()) detail::wake_all(empty_waiters_);
  return true;
}

bool group::contains(const basic_task& task) const noexcept {
  return task && index_.contains(task.state());
}

std::vector<basic_task> group::tasks() const {
  std::vector<basic_task> result;
  result.reserve(members_.size());
  for (const member& m : members_) result.push_back(m.task);
  return result;
}

bool group::join(wait_time timeout, bool raise_error) {
  require_own_thread("join");
  std::vector<basic_task> watched;
  if (raise_error) watched = tasks();
  bool emptied = members_.empty();
  if (!emptied) {
    detail::waiter w("group join");
    empty_waiters_.push_back(w);
    emptied = detail::park(w, timeout);
  }
  for (const basic_task& t : watched) {
    if (t.ready() && !t.successful()) std::rethrow_exception(t.exception());
  }
  return emptied;
}

void group::kill(kill_options options) {
  require_own_thread("kill");
  if (!options.error) throw greenlet_error("greenev: group::kill with a null exception_ptr");
  const std::exception_ptr& error = options.error;
  const steady::time_point deadline = deadline_after(options.timeout);
  const detail::greenlet_impl* self = greenlet::current().get();
  for (;;) {
    // Kill whoever has not been killed yet (members added meanwhile too);
    // the calling greenlet, if a member, last.
    std::vector<basic_task> victims;
    basic_task calling_member;
    for (member& m : members_) {
      if (m.dying) continue;
      m.dying = true;
      if (m.task.raw_greenlet().get() == self) {
        calling_member = m.task;
      } else {
        victims.push_back(m.task);
      }
    }
    for (const basic_task& t : victims) t.kill({.error = error, .block = false});
    if (calling_member) calling_member.kill({.error = error, .block = false});  // throws here and now
    if (!options.block || members_.empty()) return;
    // Members leave through their links, in the hub: wait for the next one.
    const wait_time left = remaining(options.timeout, deadline);
    if (left.is_poll()) return;
    detail::waiter w("group kill");
    discard_waiters_.push_back(w);
    if (!detail::park(w, left)) return;
  }
}

void group::killone(const basic_task& task, kill_options options) {
  require_own_thread("killone");
  if (!options.error) throw greenlet_error("greenev: group::killone with a null exception_ptr");
  const auto found = index_.find(task.state());
  if (!task || found == index_.end()) return;
  // Raising again into a member already dying would cut its cleanup short
  // (gevent's killone skips its `dying` set as kill() does).
  if (!found->second->dying) {
    found->second->dying = true;
    task.kill({.error = std::move(options.error), .block = false});
  }
  if (options.block) (void)task.join(options.timeout);
}

std::size_t group::wait_available(wait_time timeout) {
  require_own_thread("wait_available");
  if (free_count() > 0) return free_count();
  detail::waiter w("pool slot");
  available_waiters_.push_back(w);
  detail::park(w, timeout);
  return free_count();
}

void group::watch_for_map(map_run& run, const basic_task& task) {
  if (run.watched.size() == run.watched.capacity()) run.watched.reserve(2 * run.watched.size() + 8);
  const std::uint64_t id = task.link([this, &run](const basic_task& finished) {
    if (finished.successful() || run.failure) return;
    run.failure = finished.exception();
    if (run.waiting != nullptr) {  // stop waiting for a slot
      slot_waiters_.remove(*run.waiting);
      detail::schedule_wake(*run.waiting);
    }
  });
  run.watched.emplace_back(task, id);
}

void group::finish_map(map_run& run) noexcept {
  for (auto& [task, id] : run.watched) {
    try {
      task.unlink(id);
    } catch (...) {
    }
  }
  run.watched.clear();
}

void group::stop_all(const std::vector<basic_task>& tasks) {
  killall(tasks);
}

bool group::called_from_member() const noexcept {
  const detail::greenlet_impl* self = detail::current_greenlet();
  for (const member& m : members_) {
    if (m.task.state()->greenlet_.get() == self) return true;
  }
  return false;
}

// ---- imap -------------------------------------------------------------------

group::imap_engine::imap_engine(group& owner, bool ordered, std::size_t max_in_flight) noexcept
    : owner_(owner), ordered_(ordered), max_(max_in_flight == 0 ? owner.limit_ : max_in_flight) {}

group::imap_engine::~imap_engine() {
  for (entry& e : running_) {
    if (e.done) continue;
    detail::remove_user_link(*e.call.state(), e.link_id);
    try {
      e.call.kill({.block = false});
    } catch (...) {
      detail::print_failure("imap (killing a call in flight)", std::current_exception());
    }
  }
}

bool group::imap_engine::wants_more() const noexcept {
  return !failed_ && running_.size() + finished_.size() < max_;
}

void group::imap_engine::take_slot() {
  (void)owner_.acquire_slot(wait_time::forever());
}

void group::imap_engine::give_back_slot() noexcept {
  owner_.release_slot();
}

void group::imap_engine::started(const basic_task& call) {
  try {
    owner_.insert_member(call);
  } catch (...) {
    owner_.release_slot();
    throw;
  }
  const auto position = running_.insert(running_.end(), entry{call});
  try {
    position->link_id = call.link([this, position](const basic_task& done) { on_done(position, done); });
  } catch (...) {
    running_.erase(position);
    owner_.killone(call, {.block = false});  // unstarted: never runs
    throw;
  }
}

void group::imap_engine::on_done(std::list<entry>::iterator position, const basic_task& call) noexcept {
  position->done = true;
  if (!call.successful() || call.killed()) failed_ = true;  // stop starting calls
  if (!ordered_) finished_.splice(finished_.end(), running_, position);
  if (waiting_ != nullptr) detail::schedule_wake(*waiting_);
}

basic_task group::imap_engine::next() {
  for (;;) {
    std::list<entry>& source = ordered_ ? running_ : finished_;
    if (!source.empty() && source.front().done) {
      basic_task call = std::move(source.front().call);
      source.pop_front();
      return call;
    }
    if (running_.empty()) return {};
    detail::waiter w("imap result");
    waiting_ = &w;
    const detail::scope_exit clear_on_exit([this]() noexcept { waiting_ = nullptr; });
    (void)detail::park(w, wait_time::forever());
  }
}

void group::imap_engine::abort() {
  std::vector<basic_task> live;
  for (entry& e : running_) {
    if (e.done) continue;
    detail::remove_user_link(*e.call.state(), e.link_id);
    e.done = true;  // not watched any more: the destructor leaves it alone
    live.push_back(e.call);
  }
  running_.clear();
  finished_.clear();
  stop_all(live);
}

pool::pool(std::size_t size) : group(size) {
  if (size == 0) throw std::invalid_argument("greenev: a pool of size 0 could never run anything");
}

}  // namespace greenev
