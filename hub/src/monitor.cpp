// The blocking monitor. The hub's batch loop bumps hub_impl::progress_ per
// callback; this thread samples it with the hub's polling_ flag under the thread
// registry's lock (a hub unregisters under that lock before it goes away).
// The running greenlet of a blocked thread is read from here, without
// disturbing that thread (detail::snapshot_running_greenlet). A backtrace can
// only be taken on the thread itself, in a signal handler that copies it into
// static storage; the signal is sent only as monitor_options::backtrace allows,
// because it interrupts the system call the thread is blocked in.
#include <greenev/monitor.hpp>

#include <execinfo.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <greenev/error_reporter.hpp>

#include "fork_internal.hpp"
#include "hub_impl.hpp"

namespace greenev::detail {
namespace {

// Filled by the handler on the blocked thread; one request at a time. The
// greenlet is read there too: where membarrier(2) is missing it is the only
// safe way to learn it.
struct capture {
  std::atomic<int> state{0};  // 0 idle, 1 requested, 2 filled
  void* frames[64];
  int frame_count = 0;
  bool has_greenlet = false;
  running_greenlet_snapshot greenlet;
};
capture the_capture;

void on_backtrace_signal(int) {
  const int saved_errno = errno;
  if (the_capture.state.load(std::memory_order_acquire) == 1) {
    the_capture.frame_count = ::backtrace(the_capture.frames, 64);
    the_capture.has_greenlet = false;
    if (thread_state* ts = tls_state; ts != nullptr && ts->current != nullptr) {
      copy_identity(*ts->current, the_capture.greenlet);
      the_capture.has_greenlet = true;
    }
    the_capture.state.store(2, std::memory_order_release);
  }
  errno = saved_errno;
}

// What the kernel says `os_thread_id` (of this process) is doing:
// /proc/self/task/TID/syscall holds "running" for user code, the system
// call's number and arguments while blocked in one, or -1 when blocked
// otherwise (a page fault). Returns the number, or -1 for "not in a system
// call"; -2 if unreadable.
long system_call_of(int os_thread_id) {
  std::ifstream file("/proc/self/task/" + std::to_string(os_thread_id) + "/syscall");
  std::string first;
  if (!(file >> first)) return -2;
  if (first == "running") return -1;
  char* end = nullptr;
  const long number = std::strtol(first.c_str(), &end, 10);
  return end != first.c_str() && *end == '\0' ? std::max(number, -1L) : -2;
}

// The calls a blocked greenlet is most often found in (names from
// <sys/syscall.h>, so they hold on every architecture that has them).
const char* system_call_name(long number) {
  struct entry {
    long number;
    const char* name;
  };
  static constexpr entry names[] = {
      {SYS_read, "read"},
      {SYS_write, "write"},
      {SYS_readv, "readv"},
      {SYS_writev, "writev"},
      {SYS_pread64, "pread64"},
      {SYS_pwrite64, "pwrite64"},
      {SYS_ppoll, "ppoll"},
      {SYS_pselect6, "pselect6"},
      {SYS_epoll_pwait, "epoll_pwait"},
      {SYS_nanosleep, "nanosleep"},
      {SYS_clock_nanosleep, "clock_nanosleep"},
      {SYS_futex, "futex"},
      {SYS_wait4, "wait4"},
      {SYS_connect, "connect"},
      {SYS_accept4, "accept4"},
      {SYS_recvfrom, "recvfrom"},
      {SYS_sendto, "sendto"},
      {SYS_recvmsg, "recvmsg"},
      {SYS_sendmsg, "sendmsg"},
      {SYS_flock, "flock"},
      {SYS_fsync, "fsync"},
      {SYS_fdatasync, "fdatasync"},
      {SYS_openat, "openat"},
#ifdef SYS_poll
      {SYS_poll, "poll"},
#endif
#ifdef SYS_select
      {SYS_select, "select"},
#endif
#ifdef SYS_epoll_wait
      {SYS_epoll_wait, "epoll_wait"},
#endif
#ifdef SYS_accept
      {SYS_accept, "accept"},
#endif
#ifdef SYS_pause
      {SYS_pause, "pause"},
#endif
  };
  for (const entry& e : names)
    if (e.number == number) return e.name;
  return nullptr;
}

struct hub_sample {
  int os_thread_id = 0;
  std::uint64_t progress = 0;
  std::chrono::steady_clock::time_point since{};
  bool reported = false;
  bool seen = false;     // the fields above hold a first sample
  bool present = false;  // found in this round (else its thread is gone)
};

struct monitor_state {
  std::mutex mutex;  // guards everything below
  std::condition_variable wake;
  std::thread thread;
  bool running = false;
  bool stopping = false;
  monitor_options options;
  std::map<thread_state*, hub_sample> samples;  // of the monitor thread only
};
monitor_state& monitor() {
  static auto* state = new monitor_state;  // never destroyed: usable at exit
  return *state;
}

struct blocked_hub {
  thread_state* ts;
  pthread_t thread;
  int os_thread_id;
  std::chrono::nanoseconds blocked_for;
};

struct sample_context {
  std::map<thread_state*, hub_sample>* samples;
  std::chrono::steady_clock::time_point now;
  std::chrono::nanoseconds threshold;
  std::vector<blocked_hub>* blocked;
  const monitor_options* options = nullptr;
  std::vector<blocking_report>* reports = nullptr;  // set for the reporting pass
};

blocking_report make_report(const blocked_hub& blocked, const monitor_options& options);

void sample(thread_state& ts, void* context) {
  auto& c = *static_cast<sample_context*>(context);
  if (c.reports != nullptr) {  // the second pass: report on the threads found blocked
    for (const blocked_hub& b : *c.blocked)
      if (b.ts == &ts) c.reports->push_back(make_report(b, *c.options));
    return;
  }
  auto* hub = static_cast<hub_impl*>(ts.hub);
  if (hub == nullptr) return;
  hub_sample& s = (*c.samples)[&ts];
  s.present = true;
  const std::uint64_t progress = hub->progress();
  const bool idle = hub->polling();
  if (!s.seen || s.os_thread_id != ts.os_thread_id || progress != s.progress || idle) {
    s = {ts.os_thread_id, progress, c.now, false, true, true};
    return;
  }
  const auto blocked_for = c.now - s.since;
  if (!s.reported && blocked_for > c.threshold) {
    s.reported = true;  // once per episode: until the hub runs or polls again
    c.blocked->push_back({&ts, hub->thread(), ts.os_thread_id, blocked_for});
  }
}

// Signals `thread` and waits (bounded) for its handler; false if it did not run.
bool capture_running(pthread_t thread, int signal_number) {
  if (signal_number <= 0) return false;
  the_capture.state.store(1, std::memory_order_release);
  if (::pthread_kill(thread, signal_number) != 0) {
    the_capture.state.store(0);
    return false;
  }
  for (int i = 0; i < 200 && the_capture.state.load(std::memory_order_acquire) != 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // A handler that runs after this point finds state 0 and does nothing.
  return the_capture.state.exchange(0, std::memory_order_acq_rel) == 2;
}

void name_greenlet(blocking_report& report, const running_greenlet_snapshot& g) {
  report.greenlet_id = g.id;
  report.greenlet_name = g.name[0] != '\0' ? g.name : g.is_main ? "main" : "greenlet-" + std::to_string(g.id);
  report.spawn_site = describe_code_address(g.spawn_site);
}

// Under the registry's lock (blocked.ts stays alive) and the monitor's.
blocking_report make_report(const blocked_hub& blocked, const monitor_options& options) {
  blocking_report report;
  report.thread_id = blocked.os_thread_id;
  report.blocked_for = blocked.blocked_for;
  running_greenlet_snapshot greenlet;
  const bool known = snapshot_running_greenlet(*blocked.ts, greenlet);
  if (known) name_greenlet(report, greenlet);
  const long call = system_call_of(blocked.os_thread_id);
  if (call >= 0) {
    report.system_call = static_cast<int>(call);
    if (const char* name = system_call_name(call); name != nullptr) report.system_call_name = name;
  }
  // Signalling a thread in a system call would end that call early (EINTR).
  const bool signal = options.backtrace == monitor_backtrace::always ||
                      (options.backtrace == monitor_backtrace::outside_system_calls && call == -1);
  if (signal && capture_running(blocked.thread, options.backtrace_signal)) {
    if (!known && the_capture.has_greenlet) name_greenlet(report, the_capture.greenlet);
    // Frame 0 is the handler, 1 the signal trampoline.
    for (int i = 2; i < the_capture.frame_count; ++i)
      report.backtrace.push_back(describe_code_address(the_capture.frames[i]));
  }
  return report;
}

void run_monitor() {
  monitor_state& m = monitor();
  std::unique_lock lock(m.mutex);
  while (!m.stopping) {
    const auto threshold = m.options.max_blocking_time;
    m.wake.wait_for(lock, std::max<std::chrono::nanoseconds>(threshold / 4, std::chrono::milliseconds(1)));
    if (m.stopping) break;
    std::vector<blocked_hub> blocked;
    sample_context context{&m.samples, std::chrono::steady_clock::now(), threshold, &blocked};
    for (auto& [ts, s] : m.samples) s.present = false;
    for_each_thread_state(sample, &context);
    std::erase_if(m.samples, [](const auto& entry) { return !entry.second.present; });
    if (blocked.empty()) continue;
    // Reports are made inside a second visit, which keeps each blocked thread's
    // state alive while it is read; still under m.mutex, so one capture at a time.
    std::vector<blocking_report> reports;
    context.options = &m.options;
    context.reports = &reports;
    for_each_thread_state(sample, &context);
    for (const blocking_report& report : reports) {
      if (m.options.on_blocking) {
        m.options.on_blocking(report);
      } else {
        const std::string full = report.text();
        std::string_view text = full;
        if (text.ends_with('\n')) text.remove_suffix(1);  // the reporter adds its own
        report_error(text);
      }
    }
  }
}

bool restart_after_fork = false;  // set in fork's child: the monitor ran in the parent

}  // namespace

void lock_monitor_for_fork() noexcept {
  monitor().mutex.lock();
}
void unlock_monitor_in_parent() noexcept {
  monitor().mutex.unlock();
}
// The monitor thread does not exist in the child: its std::thread and the
// condition variable it waited on are overwritten, never destroyed (that
// would terminate, or wait for a waiter that is gone).
void reset_monitor_in_child() noexcept {
  monitor_state& m = monitor();
  restart_after_fork = m.running;
  ::new (static_cast<void*>(&m.thread)) std::thread;
  ::new (static_cast<void*>(&m.wake)) std::condition_variable;
  m.running = false;
  m.stopping = false;
  m.samples.clear();  // other threads' states; rebuilt from the registry
  m.mutex.unlock();
}
// reinit(): the child watches its own hub as the parent did.
void restart_monitor_after_fork() noexcept {
  if (!std::exchange(restart_after_fork, false)) return;
  monitor_state& m = monitor();
  const std::lock_guard lock(m.mutex);
  try {
    m.thread = std::thread(run_monitor);
    m.running = true;
  } catch (...) {
    report_error("greenev: the blocking monitor could not be started again after fork()");
  }
}

void start_monitor_from_environment() {
  static const bool checked = [] {
    const char* on = std::getenv("GREENEV_MONITOR");
    if (on == nullptr || std::strcmp(on, "1") != 0) return false;
    monitor_options options;
    if (const char* limit = std::getenv("GREENEV_MAX_BLOCKING_TIME"); limit != nullptr) {
      char* end = nullptr;
      const double seconds = std::strtod(limit, &end);
      if (end != limit && *end == '\0' && seconds > 0 && seconds < 1e6) {
        options.max_blocking_time =
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds));
      } else {
        report_error(std::string("greenev: GREENEV_MAX_BLOCKING_TIME=") + limit +
                     " is not a number of seconds > 0; using 0.1");
      }
    }
    if (const char* when = std::getenv("GREENEV_MONITOR_BACKTRACE"); when != nullptr) {
      const std::string_view value = when;
      if (value == "never") {
        options.backtrace = monitor_backtrace::never;
      } else if (value == "always") {
        options.backtrace = monitor_backtrace::always;
      } else if (value != "outside_system_calls") {
        report_error(std::string("greenev: GREENEV_MONITOR_BACKTRACE=") + when +
                     " is not never, outside_system_calls or always; using outside_system_calls");
      }
    }
    start_monitor(std::move(options));
    return true;
  }();
  (void)checked;
}

}  // namespace greenev::detail

namespace greenev {

std::string blocking_report::text() const {
  char head[160];
  std::snprintf(head, sizeof head, "greenev: the hub of thread %d has not run for %.3f s: ", thread_id,
                std::chrono::duration<double>(blocked_for).count());
  std::string text = head;
  if (greenlet_id == 0) {
    text += "the running greenlet is unknown (no membarrier(2) here, and no backtrace signal answered)\n";
    return text;
  }
  text += "greenlet " + std::to_string(greenlet_id) + " \"" + greenlet_name + "\" is blocking it";
  if (!spawn_site.empty()) text += ", spawned at " + spawn_site;
  if (!system_call_name.empty()) {
    text += ", in system call " + system_call_name;
  } else if (system_call >= 0) {
    text += ", in system call " + std::to_string(system_call);
  }
  text += "\n";
  for (std::size_t i = 0; i < backtrace.size(); ++i)
    text += "  #" + std::to_string(i) + " " + backtrace[i] + "\n";
  return text;
}

void start_monitor(monitor_options options) {
  if (options.max_blocking_time <= std::chrono::nanoseconds::zero())
    throw std::invalid_argument("greenev: start_monitor: max_blocking_time must be greater than zero");
  if (options.backtrace == monitor_backtrace::never) options.backtrace_signal = 0;
  if (options.backtrace_signal < 0) options.backtrace_signal = SIGRTMIN + 7;
  if (options.backtrace_signal > 0) {
    void* warm[1];
    (void)::backtrace(warm, 1);  // loads the unwinder now, not in the handler
    struct sigaction action {};
    action.sa_handler = detail::on_backtrace_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    if (::sigaction(options.backtrace_signal, &action, nullptr) != 0)
      throw std::system_error(errno, std::generic_category(), "greenev: start_monitor: sigaction");
  }
  detail::monitor_state& m = detail::monitor();
  const std::lock_guard lock(m.mutex);
  m.options = std::move(options);
  if (m.running) return;
  m.stopping = false;
  m.thread = std::thread(detail::run_monitor);
  m.running = true;
}

void stop_monitor() noexcept {
  detail::monitor_state& m = detail::monitor();
  std::thread thread;
  {
    const std::lock_guard lock(m.mutex);
    if (!m.running) return;
    m.stopping = true;
    m.running = false;
    thread = std::move(m.thread);
  }
  m.wake.notify_all();
  thread.join();
  const std::lock_guard lock(m.mutex);
  m.samples.clear();
}

bool monitor_running() noexcept {
  detail::monitor_state& m = detail::monitor();
  const std::lock_guard lock(m.mutex);
  return m.running;
}

}  // namespace greenev
