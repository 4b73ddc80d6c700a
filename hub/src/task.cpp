// Spawned tasks: start, finish, links, join and kill (gevent's Greenlet).
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include <new>
#include <string>

#include "hub_impl.hpp"

namespace greenev::detail {

// Only tasks spawned with a delay carry a timer: the others are 64 bytes
// smaller, which a hundred thousand fresh tasks feel as page faults.
struct task_state::delayed_start {
  ev_timer timer;
  bool started = false;
};

namespace {

void on_start_timer(struct ev_loop* loop, ev_timer* timer, int) noexcept {
  auto* hub = static_cast<hub_impl*>(ev_userdata(loop));
  hub->fired(*timer);
  auto* state = static_cast<task_state*>(timer->data);
  state->delayed_->started = false;
  (void)hub->drop_pending_cleanup(state);
  hub->push(start_task, state);  // hands the timer's reference to the queue
}

void fire_links_callback(void* arg) {
  auto* state = static_cast<task_state*>(arg);
  state->fire_links();
  state->release();
}

void schedule_links(task_state& state) {
  if (state.links_scheduled_ || state.links_.empty()) return;
  state.links_scheduled_ = true;
  state.add_ref();
  local_hub().push(fire_links_callback, &state);
}

struct user_link final : link_node {
  std::function<void(const basic_task&)> callback;
};

void fire_user_link(link_node& node, task_state& task) {
  auto& link = static_cast<user_link&>(node);
  task.add_ref();
  link.callback(basic_task::adopt(&task));
}

struct joiner final : link_node {
  waiter* w = nullptr;
};

void fire_joiner(link_node& node, task_state&) {
  schedule_wake(*static_cast<joiner&>(node).w);
}

struct kill_request {
  task_state* state;
  std::exception_ptr error;
};

void kill_in_hub(void* arg) {
  std::unique_ptr<kill_request> request(static_cast<kill_request*>(arg));
  task_state& state = *request->state;
  struct releaser {
    task_state* state;
    ~releaser() { state->release(); }
  } release_later{&state};
  if (state.phase_ != task_state::phase::running) return;
  greenlet g = state.greenlet_;  // keeps it alive if the kill drops the last task handle
  g.throw_into(request->error);
}

}  // namespace

// The hub runs this inline (begin_task); the function is the queue entry's
// identity, and the fallback.
void start_task(void* arg) {
  begin_task(*static_cast<task_state*>(arg));
}

task_state::~task_state() {
  delete delayed_;
  while (link_node* node = links_.pop_front()) {
    if (node->heap) delete static_cast<user_link*>(node);
  }
}

void task_state::execute() noexcept {
  // Owns the reference the start queue held: a running task outlives its handles.
  try {
    run_function();
  } catch (const greenlet_exit&) {
    killed_ = true;
    error_ = std::current_exception();
  } catch (...) {
    error_ = std::current_exception();
    print_failure(greenlet_.name(), error_);
  }
  drop_function();
  finish();
  release();  // may free this; nothing touches it afterwards
}

void task_state::finish() noexcept {
  phase_ = phase::done;
  // A joiner only needs a wake-up, which never switches: queue it now rather
  // than through the link callback, unless other links are ahead of it. A
  // join returns after the links added before it, as gevent's does (its
  // join is a link too); those run later, in the hub, and wake it in turn.
  while (link_node* node = links_.front()) {
    if (!node->eager) break;
    links_.pop_front();
    node->fire(*node, *this);
  }
  try {
    schedule_links(*this);
  } catch (...) {
    print_failure("hub (scheduling links)", std::current_exception());
  }
}

void task_state::add_link(link_node& node) noexcept {
  node.id = next_link_id_++;
  links_.push_back(node);
}

void task_state::remove_link(link_node& node) noexcept {
  links_.remove(node);
}

void task_state::fire_links() noexcept {
  links_scheduled_ = false;
  while (link_node* node = links_.pop_front()) {
    try {
      node->fire(*node, *this);
    } catch (const greenlet_exit&) {
      // A link that kills the hub: nothing sensible to do but stop here.
      if (node->heap) delete static_cast<user_link*>(node);
      return;
    } catch (...) {
      print_failure("link of " + greenlet_.name(), std::current_exception());
    }
    if (node->heap) delete static_cast<user_link*>(node);
  }
}

void release_task(void* arg) noexcept {
  static_cast<task_state*>(arg)->release();
}
void discard_kill(void* arg) noexcept {
  std::unique_ptr<kill_request> request(static_cast<kill_request*>(arg));
  request->state->release();
}

// The hub is going away before a spawn_later task started.
void discard_delayed_start(void* arg) noexcept {
  auto* state = static_cast<task_state*>(arg);
  if (state->delayed_->started) local_hub().stop(state->delayed_->timer);
  state->delayed_->started = false;
  state->release();  // the timer's reference
}

void create_task_greenlet(task_state& state, std::string name, const void* spawn_site) {
  hub_impl& hub = local_hub();
  static const bool registered = [] {
    register_discard(start_task, release_task);
    register_discard(fire_links_callback, release_task);
    register_discard(kill_in_hub, discard_kill);
    return true;
  }();
  (void)registered;
  task_state* raw = &state;
  state.greenlet_ =
      greenlet([raw] { raw->execute(); }, hub.hub_greenlet(), greenlet_options{.name = std::move(name)});
  // Resolved with dladdr only when run info or the monitor asks.
  state.greenlet_.get()->hub.spawn_site = spawn_site;
  state.greenlet_.get()->hub.spawner_id = current_greenlet()->id;
}

void create_unstarted(task_state& state) {
  create_task_greenlet(state, {}, __builtin_return_address(0));
}

void schedule_start(task_state& state, wait_time delay) {
  if (state.phase_ != task_state::phase::created) return;
  hub_impl& hub = local_hub();
  state.phase_ = task_state::phase::scheduled;
  if (!delay.is_poll()) {
    if (state.delayed_ == nullptr) state.delayed_ = new task_state::delayed_start{};
    state.add_ref();  // held by the timer until it starts
    ev_timer* timer = &state.delayed_->timer;
    ev_init(timer, on_start_timer);
    timer->data = &state;
    if (!delay.is_forever()) {
      hub.start(*timer, delay.duration());
      state.delayed_->started = true;
    }
    hub.add_pending_cleanup(&state, discard_delayed_start);  // the hub may go first
    return;
  }
  state.add_ref();  // held by the queue until it starts
  hub.push(start_task, &state);
}

void launch(task_state& state, wait_time delay, std::string name) {
  // An address inside the function that called spawn (spawn_with is inline):
  // one store now.
  create_task_greenlet(state, std::move(name), __builtin_return_address(0));
  schedule_start(state, delay);
}

bool join_task(task_state& state, wait_time timeout) {
  if (state.phase_ == task_state::phase::done) return true;
  if (tls_state != nullptr && state.greenlet_.get() == tls_state->current) {
    throw greenlet_error("greenev: task " + state.greenlet_.name() + " cannot join itself");
  }
  waiter w("join");
  joiner node;
  node.fire = fire_joiner;
  node.eager = true;
  node.w = &w;
  state.add_link(node);
  struct unlinker {
    task_state& state;
    joiner& node;
    ~unlinker() { state.remove_link(node); }
  } unlink_on_exit{state, node};
  return hub_impl::park(w, timeout);
}

void kill_task(task_state& state, std::exception_ptr error, bool block, wait_time timeout) {
  if (!error) throw greenlet_error("greenev: kill " + state.greenlet_.name() + ": null exception_ptr");
  switch (state.phase_) {
    case task_state::phase::done:
      return;
    case task_state::phase::created:
    case task_state::phase::scheduled: {
      // Never runs; finished now, links fire (gevent's "killed before start").
      hub_impl& hub = local_hub();
      if (hub.drop_pending_cleanup(&state)) {  // waiting for its spawn_later timer
        if (state.delayed_->started) hub.stop(state.delayed_->timer);
        state.delayed_->started = false;
        state.release();  // the timer's reference
      }
      try {
        std::rethrow_exception(error);
      } catch (const greenlet_exit&) {
        state.killed_ = true;
      } catch (...) {
        print_failure(state.greenlet_.name(), error);  // a failure, as if it had run
      }
      state.error_ = std::move(error);
      state.phase_ = task_state::phase::done;
      schedule_links(state);
      return;
    }
    case task_state::phase::running:
      break;
  }
  if (tls_state != nullptr && state.greenlet_.get() == tls_state->current) std::rethrow_exception(error);
  state.add_ref();
  auto request = std::make_unique<kill_request>(kill_request{&state, std::move(error)});
  local_hub().push(kill_in_hub, request.get());
  request.release();
  if (block) join_task(state, timeout);
}

void throw_task_timeout(const task_state& state, wait_time timeout) {
  throw timeout_error(&state, timeout.duration());
}

bool remove_user_link(task_state& state, std::uint64_t id) noexcept {
  for (link_node* node = state.links_.front(); node != nullptr; node = node->fifo_next()) {
    if (node->id == id && node->heap) {
      state.remove_link(*node);
      delete static_cast<user_link*>(node);
      return true;
    }
  }
  return false;
}

void throw_empty_task() {
  throw greenlet_error("greenev: operation on an empty task handle");
}

// Names no task: its name may be built lazily, which only its thread may do.
void throw_foreign_task(const char* operation) {
  throw greenlet_error(
      std::string("greenev: ") + operation +
      " on a task of another thread: a task and its handles belong to the thread that spawned it");
}

}  // namespace greenev::detail

namespace greenev {

std::uint64_t basic_task::link(std::function<void(const basic_task&)> callback) const {
  detail::task_state& state = require("link");
  if (!callback)
    throw std::invalid_argument("greenev: link on " + state.greenlet_.name() + ": an empty function");
  auto node = std::make_unique<detail::user_link>();
  node->fire = detail::fire_user_link;
  node->heap = true;
  node->callback = std::move(callback);
  state.add_link(*node);
  const std::uint64_t id = node->id;
  node.release();
  if (state.phase_ == detail::task_state::phase::done) detail::schedule_links(state);
  return id;
}

std::uint64_t basic_task::link_value(std::function<void(const basic_task&)> callback) const {
  if (!callback) return link(std::move(callback));  // its error
  return link([callback = std::move(callback)](const basic_task& t) {
    if (t.successful()) callback(t);
  });
}

std::uint64_t basic_task::link_exception(std::function<void(const basic_task&)> callback) const {
  if (!callback) return link(std::move(callback));
  return link([callback = std::move(callback)](const basic_task& t) {
    if (!t.successful()) callback(t);
  });
}

void basic_task::start() const {
  detail::schedule_start(require("start"), std::chrono::nanoseconds(0));
}

void basic_task::start_later(wait_time delay) const {
  detail::schedule_start(require("start_later"), delay);
}

bool basic_task::unlink(std::uint64_t id) const {
  return detail::remove_user_link(require("unlink"), id);
}

namespace {

struct joinall_state {
  detail::waiter* w = nullptr;
  std::vector<basic_task> finished;
  std::size_t target = 0;
  bool raise_error = false;
  bool failed = false;
};

struct joinall_node final : detail::link_node {
  joinall_state* shared = nullptr;
};

void fire_joinall(detail::link_node& node, detail::task_state& task) {
  joinall_state& shared = *static_cast<joinall_node&>(node).shared;
  if (shared.finished.size() >= shared.target && !shared.raise_error) return;  // enough already
  task.add_ref();
  shared.finished.push_back(basic_task::adopt(&task));
  const bool failure = task.error_ && !task.killed_;
  if (failure && shared.raise_error) shared.failed = true;
  if (shared.finished.size() >= shared.target || shared.failed) detail::schedule_wake(*shared.w);
}

// Every handle usable here, before anything is done to any of them.
void require_usable(const std::vector<basic_task>& tasks, const char* operation) {
  for (const basic_task& t : tasks) {
    if (!t) throw greenlet_error(std::string("greenev: ") + operation + ": an empty task handle");
    if (!detail::on_task_thread(*t.state())) [[unlikely]]
      detail::throw_foreign_task(operation);
  }
}

void rethrow_first_failure(const std::vector<basic_task>& finished) {
  for (const basic_task& t : finished) {
    if (!t.successful()) std::rethrow_exception(t.exception());
  }
}

}  // namespace

std::vector<basic_task> joinall(const std::vector<basic_task>& tasks, wait_time timeout, bool raise_error,
                                std::optional<std::size_t> count) {
  require_usable(tasks, "joinall");
  joinall_state shared;
  shared.raise_error = raise_error;
  shared.target = std::min(count.value_or(tasks.size()), tasks.size());
  std::vector<joinall_node> nodes(tasks.size());
  std::size_t pending = 0;
  for (const basic_task& t : tasks) {
    if (t.ready()) shared.finished.push_back(t);
  }
  if (raise_error) rethrow_first_failure(shared.finished);
  if (shared.finished.size() >= shared.target) {
    shared.finished.resize(shared.target);  // gevent returns exactly `count`
    return shared.finished;
  }

  detail::waiter w("joinall");
  shared.w = &w;
  struct unlinker {
    std::vector<joinall_node>& nodes;
    ~unlinker() {
      for (joinall_node& node : nodes) {
        if (node.fifo() != nullptr) node.fifo()->remove(node);
      }
    }
  } unlink_on_exit{nodes};
  for (const basic_task& t : tasks) {
    if (t.ready()) continue;
    joinall_node& node = nodes[pending++];
    node.fire = fire_joinall;
    node.shared = &shared;
    t.state()->add_link(node);
  }
  detail::park(w, timeout);
  if (raise_error) rethrow_first_failure(shared.finished);
  if (shared.finished.size() > shared.target) shared.finished.resize(shared.target);
  return shared.finished;
}

void killall(const std::vector<basic_task>& tasks, kill_options options) {
  if (!options.error) throw greenlet_error("greenev: killall with a null exception_ptr");
  require_usable(tasks, "killall");
  for (const basic_task& t : tasks) t.kill({.error = options.error, .block = false});
  // gevent raises Timeout here too: the caller asked for them to be gone.
  if (options.block && joinall(tasks, options.timeout).size() < tasks.size())
    throw timeout_error(&tasks, options.timeout.duration());
}

}  // namespace greenev
