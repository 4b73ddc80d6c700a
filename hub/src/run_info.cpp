// Run info: each thread describes its own greenlets (nothing here reads
// another thread's greenlets); other threads are asked through
// run_callback_threadsafe and waited for with a bound.
#include <greenev/run_info.hpp>

#include <cxxabi.h>
#include <dlfcn.h>
#include <semaphore.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include <greenev/error_reporter.hpp>

#include "hub_impl.hpp"

namespace greenev::detail {

std::string describe_code_address(const void* address) {
  if (address == nullptr) return {};
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%p", address);
  Dl_info info{};
  if (::dladdr(address, &info) == 0) return buffer;
  std::string text;
  if (info.dli_sname != nullptr) {
    int status = 0;
    std::unique_ptr<char, decltype(&std::free)> demangled(
        abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status), &std::free);
    text = status == 0 ? demangled.get() : info.dli_sname;
    std::snprintf(buffer, sizeof buffer, "+0x%zx",
                  static_cast<std::size_t>(static_cast<const char*>(address) -
                                           static_cast<const char*>(info.dli_saddr)));
  } else {
    // No dynamic symbol (a static function, or an executable without
    // -rdynamic): OBJECT+OFFSET, which `addr2line -Cfe OBJECT OFFSET` resolves.
    std::snprintf(buffer, sizeof buffer, "+0x%zx",
                  static_cast<std::size_t>(static_cast<const char*>(address) -
                                           static_cast<const char*>(info.dli_fbase)));
    return (info.dli_fname != nullptr ? info.dli_fname : "?") + std::string(buffer);
  }
  text += buffer;
  if (info.dli_fname != nullptr) text += std::string(" (") + info.dli_fname + ")";
  return text;
}

std::string describe_greenlet(const greenlet_impl& g, const thread_state& ts, struct ev_loop* loop) {
  std::string line = "  greenlet " + std::to_string(g.id) + " \"" + g.display_name() + "\": ";
  if (&g == ts.current) {
    line += "running";
  } else if (loop != nullptr && &g == static_cast<const hub_impl*>(ts.hub)->hub_greenlet().get()) {
    line += "the hub: runs its loop when the running greenlet waits";
  } else if (g.hub.wait_what != nullptr) {
    line += "suspended on ";
    if (g.hub.wait_fd >= 0) line += "fd " + std::to_string(g.hub.wait_fd) + " ";
    line += g.hub.wait_what;
    if (g.hub.wait_until != 0 && loop != nullptr) {
      char left[48];
      std::snprintf(left, sizeof left, ", %.3f s left", g.hub.wait_until - ev_now(loop));
      line += left;
    }
  } else {
    line += "suspended (switched away directly, or queued to resume)";
  }
  if (g.parent != nullptr) line += "; parent " + g.parent->display_name();
  if (g.hub.spawn_site != nullptr) line += "; spawned at " + describe_code_address(g.hub.spawn_site);
  return line;
}

namespace {

// The calling thread's block; on that thread.
std::string describe_this_thread() {
  thread_state* ts = tls_state;
  if (ts == nullptr) return {};
  auto* hub = static_cast<hub_impl*>(ts->hub);
  std::string text = "thread " + std::to_string(ts->os_thread_id) + (hub != nullptr ? "" : " (no hub)") +
                     ": " + std::to_string(ts->active_count + 1) + " greenlets\n";
  text += hub != nullptr ? hub->describe_greenlets()
                         : describe_greenlet(*ts->main, *ts, nullptr) + "\n";  // others need a hub to wait
  return text;
}

struct answer {
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  std::string text;
};

struct asked_thread {
  int os_thread_id;
  std::shared_ptr<answer> reply;
};

void ask(thread_state& ts, void* context) {
  auto& asked = *static_cast<std::vector<asked_thread>*>(context);
  if (&ts == tls_state || ts.hub == nullptr) return;
  auto reply = std::make_shared<answer>();
  // Under the registry's lock: the hub cannot be destroyed meanwhile (its
  // destructor unregisters first, under the same lock).
  static_cast<hub_impl*>(ts.hub)->facade().run_callback_threadsafe([reply] {
    std::string text = describe_this_thread();
    const std::lock_guard lock(reply->mutex);
    reply->text = std::move(text);
    reply->done = true;
    reply->done_cv.notify_all();
  });
  asked.push_back({ts.os_thread_id, std::move(reply)});
}

}  // namespace

std::string hub_impl::describe_greenlets() const {
  const thread_state& ts = *tls_state;
  std::string text = describe_greenlet(*ts.main, ts, loop_) + "\n";
  for (const greenlet_impl* g = ts.active_head; g != nullptr; g = g->active_next)
    text += describe_greenlet(*g, ts, loop_) + "\n";
  if (ready_.size() > 0)
    text += "  (" + std::to_string(ready_.size()) + " callbacks queued, e.g. tasks to start)\n";
  return text;
}

}  // namespace greenev::detail

namespace greenev {

std::string format_run_info(std::chrono::milliseconds per_thread_timeout) {
  std::vector<detail::asked_thread> asked;
  detail::for_each_thread_state(detail::ask, &asked);
  std::string text = detail::describe_this_thread();
  const auto deadline =
      std::chrono::steady_clock::now() + per_thread_timeout * std::max<std::size_t>(1, asked.size());
  for (auto& [thread_id, reply] : asked) {
    std::unique_lock lock(reply->mutex);
    if (reply->done_cv.wait_until(lock, deadline, [&] { return reply->done; })) {
      text += reply->text;
    } else {
      text += "thread " + std::to_string(thread_id) + ": did not answer (its hub is blocked or exiting)\n";
    }
  }
  if (text.empty()) text = "no greenlets in this process\n";
  return text;
}

void print_run_info(std::chrono::milliseconds per_thread_timeout) {
  const std::string text = format_run_info(per_thread_timeout);
  std::string_view lines = text;
  if (lines.ends_with('\n')) lines.remove_suffix(1);  // the reporter adds its own
  detail::report_error(lines);
}

namespace {
sem_t run_info_request;  // posted by the handler (async-signal-safe)
}  // namespace

void install_run_info_signal(int signal_number) {
  static const bool helper_started = [] {
    if (::sem_init(&run_info_request, 0, 0) != 0)
      throw std::system_error(errno, std::generic_category(), "sem_init");
    std::thread([] {
      for (;;) {
        while (::sem_wait(&run_info_request) != 0) {
        }
        print_run_info();
      }
    }).detach();
    return true;
  }();
  (void)helper_started;
  struct sigaction action {};
  action.sa_handler = [](int) { ::sem_post(&run_info_request); };
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  if (::sigaction(signal_number, &action, nullptr) != 0)
    throw std::system_error(errno, std::generic_category(), "greenev: install_run_info_signal");
}

}  // namespace greenev
