// The replaceable sink for diagnostics (greenev/error_reporter.hpp).
#include <greenev/error_reporter.hpp>

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace greenev {
namespace {

// Held by shared_ptr so that a report in flight keeps its reporter alive while
// another thread replaces it; the mutex guards only the pointer.
std::mutex reporter_mutex;
std::shared_ptr<const error_reporter> current_reporter;

// Held across fork(2) (docs/design.md, "fork"): a thread replacing or
// reading the reporter must not leave the lock held in the child.
void register_fork_handlers() noexcept {
  static const bool registered = [] {
    ::pthread_atfork([] { reporter_mutex.lock(); }, [] { reporter_mutex.unlock(); },
                     [] { reporter_mutex.unlock(); });
    return true;
  }();
  (void)registered;
}
// At start-up, before any other greenev handler: prepare handlers run in the
// reverse order, so this lock is taken last (the monitor reports while it
// holds its own).
[[maybe_unused]] const bool registered_at_start = (register_fork_handlers(), true);

std::shared_ptr<const error_reporter> load_reporter() {
  register_fork_handlers();
  std::lock_guard lock(reporter_mutex);
  return current_reporter;
}

}  // namespace

error_reporter set_error_reporter(error_reporter reporter) {
  auto next = reporter ? std::make_shared<const error_reporter>(std::move(reporter)) : nullptr;
  std::shared_ptr<const error_reporter> previous;
  register_fork_handlers();
  {
    std::lock_guard lock(reporter_mutex);
    previous = std::exchange(current_reporter, std::move(next));
  }
  return previous ? *previous : error_reporter{};
}

void write_to_stderr(std::string_view message) noexcept {
  // One write(2) per line so that lines from several threads do not interleave;
  // a short write (a pipe) or EINTR continues where it stopped.
  std::string line;
  try {
    line.reserve(message.size() + 1);
    line.append(message);
    line.push_back('\n');
  } catch (...) {
    (void)!::write(STDERR_FILENO, message.data(), message.size());
    (void)!::write(STDERR_FILENO, "\n", 1);
    return;
  }
  const char* at = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, at, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    at += n;
    left -= static_cast<std::size_t>(n);
  }
}

namespace detail {

void report_error(std::string_view message) noexcept {
  std::shared_ptr<const error_reporter> reporter;
  try {
    reporter = load_reporter();
  } catch (...) {
  }
  if (!reporter) {
    write_to_stderr(message);
    return;
  }
  try {
    (*reporter)(message);
  } catch (...) {
    write_to_stderr(message);
    write_to_stderr("greenev: the error reporter threw while reporting the line above");
  }
}

}  // namespace detail
}  // namespace greenev
