// Scoped timeouts: an ev_timer whose expiry throws into the owning greenlet.
#include <greenev/timeout.hpp>

#include <new>
#include <stdexcept>
#include <string>

#include "hub_impl.hpp"

namespace greenev {

namespace {

std::string describe(std::chrono::nanoseconds after) {
  const double seconds = std::chrono::duration<double>(after).count();
  char text[64];
  std::snprintf(text, sizeof text, "greenev: timed out after %.3f s", seconds);
  return text;
}

ev_timer& timer_of(unsigned char* storage) {
  return *std::launder(reinterpret_cast<ev_timer*>(storage));
}
const ev_timer& timer_of(const unsigned char* storage) {
  return *std::launder(reinterpret_cast<const ev_timer*>(storage));
}

void on_timer(struct ev_loop* loop, ev_timer* timer, int) noexcept {
  static_cast<detail::hub_impl*>(ev_userdata(loop))->fired(*timer);
  timeout::on_expiry(*static_cast<timeout*>(timer->data));
}

}  // namespace

timeout_error::timeout_error(const void* source, std::chrono::nanoseconds after)
    : std::runtime_error(describe(after)), source_(source), after_(after) {}

timeout::timeout(wait_time duration, timeout_options options)
    : target_(nullptr),
      duration_(duration.duration()),
      error_(std::move(options.error)),
      forever_(duration.is_forever()) {
  static_assert(sizeof(ev_timer) <= sizeof(watcher_) && alignof(ev_timer) <= alignof(std::max_align_t));
  detail::local_hub().require_not_in_hub("a timeout");
  ev_timer* timer = ::new (static_cast<void*>(watcher_)) ev_timer;
  ev_init(timer, on_timer);
  timer->data = this;
  if (options.start) arm(duration);
}

void timeout::arm(wait_time duration) {
  detail::hub_impl& hub = detail::local_hub();
  hub.require_not_in_hub("a timeout");
  duration_ = duration.duration();
  forever_ = duration.is_forever();
  target_ = detail::tls_state->current;
  expired_ = false;
  if (!forever_) {
    hub.start(timer_of(watcher_), duration_);
    started_ = true;
  }
}

void timeout::start() {
  if (pending()) {
    throw std::logic_error(
        "greenev: timeout::start: the timeout is already pending (cancel() it first, or "
        "restart() it)");
  }
  arm(forever_ ? wait_time::forever() : wait_time(duration_));
}

void timeout::restart(wait_time duration) {
  detail::local_hub().require_not_in_hub("a timeout");
  cancel();
  arm(duration);
}

timeout::~timeout() {
  cancel();
}

void timeout::cancel() noexcept {
  if (!started_) return;
  started_ = false;
  detail::local_hub().stop(timer_of(watcher_));
}

bool timeout::pending() const noexcept {
  return started_ && ev_is_active(&timer_of(watcher_));
}

void timeout::on_expiry(timeout& self) noexcept {
  self.started_ = false;
  self.expired_ = true;
  detail::hub_impl& hub = detail::local_hub();
  hub.guard([&] {
    self.target_->add_ref();
    greenlet target = greenlet::adopt(self.target_);
    if (target.dead()) return;
    target.throw_into(self.error_ ? self.error_
                                  : std::make_exception_ptr(timeout_error(&self, self.duration_)));
  });
}

}  // namespace greenev
