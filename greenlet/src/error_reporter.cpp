// The replaceable sink for diagnostics (greenev/error_reporter.hpp).
#include <greenev/error_reporter.hpp>

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

std::shared_ptr<const error_reporter> load_reporter() {
  std::lock_guard lock(reporter_mutex);
  return current_reporter;
}

}  // namespace

error_reporter set_error_reporter(error_reporter reporter) {
  auto next = reporter ? std::make_shared<const error_reporter>(std::move(reporter)) : nullptr;
  std::shared_ptr<const error_reporter> previous;
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
