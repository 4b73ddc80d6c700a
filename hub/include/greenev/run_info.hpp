// greenev/run_info.hpp — every live greenlet of every hub, with what each
// waits on (gevent.util.print_run_info / format_run_info), and the calling
// thread's greenlets as a tree (gevent.util.GreenletTree).
//
//   greenev::print_run_info();                    // to the error reporter (stderr)
//   greenev::install_run_info_signal(SIGUSR1);    // kill -USR1 <pid> prints it
//
// One block per thread with a hub; one line per greenlet: id, name, state
// ("running", "suspended on sleep, 0.82 s left", "suspended on fd 7 read",
// "suspended on event", ...), parent and spawn site. The calling thread's
// greenlets are read directly. Another thread's are read by that thread
// itself, in a callback queued with run_callback_threadsafe: the listing is
// a consistent snapshot per thread, taken at slightly different times; a
// thread that does not answer within the timeout (its hub is blocked) is
// listed as such. docs/design.md, "Run info".
#pragma once

#include <chrono>
#include <string>

namespace greenev {

/// Returns the listing. May block the calling thread (not only the calling
/// greenlet) for up to `per_thread_timeout` per other thread; never
/// switches. Callable from any thread, with or without a hub, including
/// a loop callback. Throws std::bad_alloc only.
[[nodiscard]] std::string format_run_info(
    std::chrono::milliseconds per_thread_timeout = std::chrono::milliseconds(1000));

/// gevent.util.GreenletTree: the calling thread's live greenlets as a tree,
/// one line each — name, id, state (as in format_run_info), parent, the
/// spawning greenlet and spawn site:
///
///   main (id 1): running
///    +--- hub (id 2): the hub: runs its loop when the running greenlet waits; parent main
///    +--- server (id 3): suspended on fd 5 read; parent hub; spawned by main at ...
///          +--- handler (id 4): suspended on event; parent hub; spawned by server at ...
///
/// A task hangs under the greenlet that spawned it while that one lives,
/// otherwise (and a raw greenlet always) under its parent; children in the
/// order they were made. Tasks spawned but not started yet are not live:
/// they are counted on a last line. Never switches; usable in a loop
/// callback and on a thread without a hub. Throws std::bad_alloc only.
[[nodiscard]] std::string format_greenlet_tree();

/// Writes format_run_info() through the error reporter (stderr by default;
/// greenev/error_reporter.hpp), as one message. Same rules.
void print_run_info(std::chrono::milliseconds per_thread_timeout = std::chrono::milliseconds(1000));

/// Prints the run info whenever `signal_number` arrives (the handler only
/// wakes a helper thread, which does the listing). Process-wide; the last
/// call wins. Never switches. Throws std::system_error if the thread or the
/// handler cannot be set up.
void install_run_info_signal(int signal_number);

}  // namespace greenev
