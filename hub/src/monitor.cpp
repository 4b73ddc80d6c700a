// The blocking monitor. The hub's batch loop bumps hub_impl::progress_ per
// callback; this thread samples it with the hub's polling_ flag under the thread
// registry's lock (a hub unregisters under that lock before it goes away).
// What the blocked thread is running is learned from the thread itself, in
// a signal handler that copies it (and a backtrace) into static storage:
// the handler reads only its own thread's state, with no allocation.
#include <greenev/monitor.hpp>

#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "hub_impl.hpp"

namespace greenev::detail {
namespace {

// Filled by the handler on the blocked thread; one request at a time.
struct capture {
  std::atomic<int> state{0};  // 0 idle, 1 requested, 2 filled
  void* frames[64];
  int frame_count = 0;
  std::uint64_t greenlet_id = 0;
  bool is_main = false;
  char name[64];
  const void* spawn_site = nullptr;
};
capture the_capture;

void on_backtrace_signal(int) {
  const int saved_errno = errno;
  if (the_capture.state.load(std::memory_order_acquire) == 1) {
    the_capture.frame_count = ::backtrace(the_capture.frames, 64);
    the_capture.name[0] = '\0';
    if (thread_state* ts = tls_state; ts != nullptr && ts->current != nullptr) {
      const greenlet_impl& g = *ts->current;
      the_capture.greenlet_id = g.id;
      the_capture.is_main = g.is_main;
      the_capture.spawn_site = g.spawn_site;
      if (g.name && !g.name->empty()) {
        const std::size_t n = std::min(g.name->size(), sizeof the_capture.name - 1);
        std::memcpy(the_capture.name, g.name->data(), n);
        the_capture.name[n] = '\0';
      }
    }
    the_capture.state.store(2, std::memory_order_release);
  }
  errno = saved_errno;
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
};

void sample(thread_state& ts, void* context) {
  auto& c = *static_cast<sample_context*>(context);
  auto* hub = static_cast<hub_impl*>(ts.hub);
  if (hub == nullptr) return;
  hub_sample& s = (*c.samples)[&ts];
  s.present = true;
  const std::uint64_t progress = hub->progress_.load(std::memory_order_relaxed);
  const bool idle = hub->polling_.load(std::memory_order_relaxed);
  if (!s.seen || s.os_thread_id != ts.os_thread_id || progress != s.progress || idle) {
    s = {ts.os_thread_id, progress, c.now, false, true, true};
    return;
  }
  const auto blocked_for = c.now - s.since;
  if (!s.reported && blocked_for > c.threshold) {
    s.reported = true;  // once per episode: until the hub runs or polls again
    c.blocked->push_back({&ts, hub->thread_, ts.os_thread_id, blocked_for});
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

blocking_report make_report(const blocked_hub& blocked, bool captured) {
  blocking_report report;
  report.thread_id = blocked.os_thread_id;
  report.blocked_for = blocked.blocked_for;
  if (!captured) return report;
  report.greenlet_id = the_capture.greenlet_id;
  report.greenlet_name = the_capture.name[0] != '\0' ? the_capture.name
                         : the_capture.is_main       ? "main"
                                                     : "greenlet-" + std::to_string(the_capture.greenlet_id);
  report.spawn_site = describe_code_address(the_capture.spawn_site);
  // Frame 0 is the handler, 1 the signal trampoline.
  for (int i = 2; i < the_capture.frame_count; ++i)
    report.backtrace.push_back(describe_code_address(the_capture.frames[i]));
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
    for (const blocked_hub& b : blocked) {
      // Still under m.mutex (the handler does not take it): one capture at a time.
      const blocking_report report = make_report(b, capture_running(b.thread, m.options.backtrace_signal));
      if (m.options.on_blocking) {
        m.options.on_blocking(report);
      } else {
        const std::string text = report.text();
        std::fwrite(text.data(), 1, text.size(), stderr);
        std::fflush(stderr);
      }
    }
  }
}

}  // namespace

void start_monitor_from_environment() {
  static const bool checked = [] {
    const char* on = std::getenv("GREENEV_MONITOR");
    if (on == nullptr || std::strcmp(on, "1") != 0) return false;
    monitor_options options;
    if (const char* limit = std::getenv("GREENEV_MAX_BLOCKING_TIME"); limit != nullptr) {
      char* end = nullptr;
      const double seconds = std::strtod(limit, &end);
      if (end != limit && seconds > 0)
        options.max_blocking_time =
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds));
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
    text += "the running greenlet is unknown (no backtrace signal, or the thread did not answer)\n";
    return text;
  }
  text += "greenlet " + std::to_string(greenlet_id) + " \"" + greenlet_name + "\" is blocking it";
  if (!spawn_site.empty()) text += ", spawned at " + spawn_site;
  text += "\n";
  for (std::size_t i = 0; i < backtrace.size(); ++i)
    text += "  #" + std::to_string(i) + " " + backtrace[i] + "\n";
  return text;
}

void start_monitor(monitor_options options) {
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
