// wait / iwait: one observation node per item — a task link or an observer
// on an event/async_result — feeding indexes to one parked waiter.
#include <greenev/wait.hpp>

#include <string>

#include <greenev/detail/scope_exit.hpp>

#include "hub_impl.hpp"

namespace greenev {

waitable::waitable(const basic_task& task) : task_(task), object_(task.state()) {
  if (!task) throw greenlet_error("greenev: wait/iwait: an empty task handle");
}

waitable::waitable(event& e) noexcept : object_(&e), observers_(&e.observers_), ready_(&event_ready) {}

waitable::waitable(semaphore& s) noexcept
    : object_(&s), observers_(&s.observers_), ready_(&semaphore_ready) {}

waitable::waitable(rlock& r) noexcept : object_(&r), observers_(&r.block_.observers_), ready_(&rlock_ready) {}

bool waitable::event_ready(const void* object) {
  return static_cast<const event*>(object)->is_set();
}

bool waitable::semaphore_ready(const void* object) {
  return !static_cast<const semaphore*>(object)->locked();
}

// Read by the waiting greenlet (ready_watch's constructor): its own rlock
// would not make it wait. Later, a notification means the lock became free.
bool waitable::rlock_ready(const void* object) {
  const auto* r = static_cast<const rlock*>(object);
  return !r->locked() || r->owned_by_current();
}

bool waitable::ready() const {
  return task_ ? task_.ready() : ready_(object_);
}

void waitable::observe(detail::link_node& task_link, detail::observer& other) const {
  if (task_) {
    task_.state()->add_link(task_link);
  } else {
    observers_->push_back(other);
  }
}

namespace detail {

struct ready_watch::node {
  struct task_link final : link_node {
    node* owner = nullptr;
  };
  struct other_link final : observer {
    node* owner = nullptr;
  };
  task_link link;
  other_link other;
  ready_watch* watch = nullptr;
  std::size_t index = 0;
};

ready_watch::ready_watch(std::span<const waitable> items, wait_time timeout)
    : nodes_(std::make_unique<node[]>(items.size())), size_(items.size()) {
  ready_.reserve(size_);  // on_ready() must not allocate: it is noexcept
  if (!timeout.is_forever()) deadline_ = std::chrono::steady_clock::now() + timeout.duration();
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (items[i].ready()) {
      ready_.push_back(i);
      continue;
    }
    node& n = nodes_[i];
    n.watch = this;
    n.index = i;
    n.link.owner = &n;
    n.link.fire = [](link_node& self, task_state&) {
      node& owner = *static_cast<node::task_link&>(self).owner;
      owner.watch->on_ready(owner.index);
    };
    n.other.owner = &n;
    n.other.notify = [](observer& self) noexcept {
      node& owner = *static_cast<node::other_link&>(self).owner;
      owner.watch->on_ready(owner.index);
    };
    items[i].observe(n.link, n.other);
  }
}

ready_watch::~ready_watch() {
  for (std::size_t i = 0; i < size_; ++i) {
    node& n = nodes_[i];
    if (n.link.fifo() != nullptr) n.link.fifo()->remove(n.link);
    if (n.other.fifo() != nullptr) n.other.fifo()->remove(n.other);
  }
}

void ready_watch::on_ready(std::size_t index) noexcept {
  ready_.push_back(index);
  if (waiter_ != nullptr) schedule_wake(*waiter_);
}

std::optional<std::size_t> ready_watch::next() {
  if (taken_ == ready_.size() && returned_ < size_) {
    wait_time left;
    if (deadline_) left = *deadline_ - std::chrono::steady_clock::now();
    waiter w("wait/iwait");
    waiter_ = &w;
    const scope_exit clear_on_exit([this]() noexcept { waiter_ = nullptr; });
    park(w, left);
  }
  if (taken_ == ready_.size()) return std::nullopt;
  ++returned_;
  return ready_[taken_++];
}

}  // namespace detail

}  // namespace greenev

namespace greenev {

void wait() {
  detail::hub_impl& hub = detail::local_hub();
  hub.require_not_in_hub("wait()");
  if (detail::tls_state->current != hub.hub_greenlet().parent().get()) {
    throw greenlet_error(
        "greenev: wait() without objects runs the whole loop: call it from the thread's main greenlet "
        "(where the hub reports loop_exit)");
  }
  // Nothing wakes this waiter: the hub ends the wait by raising loop_exit
  // here once it has nothing left to do.
  detail::waiter w("wait() for the loop to finish");
  try {
    (void)detail::park(w, wait_time::forever());
  } catch (const loop_exit&) {
    return;
  }
}

namespace {

struct idle_wait {
  ev_idle watcher{};
  detail::waiter* w = nullptr;
};

// libev calls idle watchers only when no other event is pending; the hub's
// own ready queue is checked here (a busy hub polls libev between batches).
void on_idle(struct ev_loop* loop, ev_idle* watcher, int) noexcept {
  auto* hub = static_cast<detail::hub_impl*>(ev_userdata(loop));
  if (hub->pending_callbacks() != 0) return;
  hub->stop(*watcher);
  detail::schedule_wake(*static_cast<idle_wait*>(watcher->data)->w);
}

}  // namespace

void idle() {
  detail::hub_impl& hub = detail::local_hub();
  hub.require_not_in_hub("idle()");
  detail::waiter w("idle()");
  idle_wait state;
  state.w = &w;
  ev_idle_init(&state.watcher, on_idle);
  state.watcher.data = &state;
  hub.start(state.watcher);
  const detail::scope_exit stop_on_exit([&hub, &state]() noexcept { hub.stop(state.watcher); });
  (void)detail::park(w, wait_time::forever());
}

}  // namespace greenev
