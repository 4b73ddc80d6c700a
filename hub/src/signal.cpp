// Signal handlers: an ev_signal per handler on the first hub's loop (libev
// binds each signal to one loop), unref'd so it does not keep the loop
// alive; each delivery spawns a task.
#include <greenev/signal.hpp>

#include <csignal>
#include <new>
#include <stdexcept>
#include <string>

#include <greenev/task.hpp>

#include "hub_impl.hpp"

namespace greenev {

namespace {

ev_signal& watcher_of(unsigned char* storage) {
  return *std::launder(reinterpret_cast<ev_signal*>(storage));
}

void on_signal_cb(struct ev_loop*, ev_signal* watcher, int) noexcept {
  signal_handler::on_signal(*static_cast<signal_handler*>(watcher->data));
}

}  // namespace

signal_handler::signal_handler(int signum, std::function<void()> handler)
    : hub_(&detail::local_hub()), handler_(std::move(handler)), signum_(signum) {
  static_assert(sizeof(ev_signal) <= sizeof(watcher_) && alignof(ev_signal) <= alignof(std::max_align_t));
  if (signum <= 0 || signum >= NSIG) {
    throw std::invalid_argument("greenev: signal_handler: no signal number " + std::to_string(signum));
  }
  if (signum == SIGKILL || signum == SIGSTOP) {
    throw std::invalid_argument("greenev: signal_handler: signal " + std::to_string(signum) +
                                " (SIGKILL/SIGSTOP) cannot be caught");
  }
  if (!handler_) throw std::invalid_argument("greenev: signal_handler: an empty function");
  if (!hub_->watches_signals()) {
    throw greenlet_error(
        "greenev: signal_handler needs the main thread's hub (the first hub of the process, "
        "which watches the process's signals); this thread's hub cannot watch them");
  }
  ev_signal* watcher = ::new (static_cast<void*>(watcher_)) ev_signal;
  ev_signal_init(watcher, on_signal_cb, signum);
  watcher->data = this;
  hub_->start(*watcher);
  ev_unref(hub_->loop());  // like gevent's ref=False: a handler alone does not keep the loop running
  active_ = true;
}

signal_handler::~signal_handler() {
  cancel();
}

void signal_handler::cancel() noexcept {
  if (!active_) return;
  active_ = false;
  ev_ref(hub_->loop());  // undo the unref before the stop (libev's rule)
  hub_->stop(watcher_of(watcher_));
}

void signal_handler::on_signal(signal_handler& self) noexcept {
  self.hub_->guard([&] {
    (void)spawn_with({.name = "signal " + std::to_string(self.signum_) + " handler"}, self.handler_);
  });
}

}  // namespace greenev
