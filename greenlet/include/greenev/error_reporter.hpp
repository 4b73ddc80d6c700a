// greenev/error_reporter.hpp — where the library's diagnostics go.
//
//   greenev::set_error_reporter([](std::string_view line) { log.warn("{}", line); });
//   ...
//   greenev::set_error_reporter(nullptr);  // back to stderr
//
// greenev reports what it cannot throw to anyone: a spawned greenlet that
// failed, a greenlet that refused to die at thread exit, a server's failed
// accept, a monitor report with no callback. Every such line goes through one
// replaceable function; the default writes it, plus a newline, to stderr.
// The one exception is the stack-overflow report, which is written from a
// signal handler just before the process aborts and so cannot call user code.
//
// Threads: the reporter may be called from any thread, concurrently; it must
// not switch greenlets (it may run inside the hub) and should not block long.
#pragma once

#include <functional>
#include <string_view>

namespace greenev {

/// Receives one diagnostic: a single line without its trailing newline.
using error_reporter = std::function<void(std::string_view message)>;

/// Routes every later diagnostic to `reporter` (empty: back to stderr) and
/// returns the previous one (empty if it was the default). Any thread; never
/// switches. Calls already under way finish with the reporter they started with.
error_reporter set_error_reporter(error_reporter reporter);

/// The default: writes `message` and a newline to stderr in one write.
/// Never switches, never throws.
void write_to_stderr(std::string_view message) noexcept;

namespace detail {

/// Sends one diagnostic through the current reporter. If the reporter throws,
/// the message goes to stderr, followed by a note that the reporter failed.
/// Never switches (unless a user's reporter does), never throws.
void report_error(std::string_view message) noexcept;

}  // namespace detail
}  // namespace greenev
