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
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
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

namespace {

// What `g` is doing: "running", "suspended on ...".
std::string describe_state(const greenlet_impl& g, const thread_state& ts, struct ev_loop* loop) {
  std::string line;
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
  return line;
}

}  // namespace

std::string describe_greenlet(const greenlet_impl& g, const thread_state& ts, struct ev_loop* loop) {
  std::string line = "  greenlet " + std::to_string(g.id) + " \"" + g.display_name() + "\": ";
  line += describe_state(g, ts, loop);
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

namespace {

// The tree's nodes: this thread's live greenlets, in creation (id) order.
struct tree_node {
  const greenlet_impl* greenlet;
  const greenlet_impl* spawner = nullptr;  // live, else null
  std::vector<std::size_t> children;
  bool drawn = false;
};

using node_index = std::unordered_map<const greenlet_impl*, std::size_t>;

// Where a greenlet hangs in the tree: under its spawner while that lives
// (gevent's spawning_greenlet), else under its nearest live ancestor.
const greenlet_impl* tree_parent(const tree_node& node, const node_index& live) {
  if (node.spawner != nullptr) return node.spawner;
  for (const greenlet_impl* up = node.greenlet->parent; up != nullptr; up = up->parent)
    if (live.contains(up)) return up;
  return nullptr;
}

void draw(std::vector<tree_node>& nodes, std::size_t index, const std::string& prefix, bool root, bool last,
          const thread_state& ts, struct ev_loop* loop, std::string& out) {
  tree_node& node = nodes[index];
  node.drawn = true;
  const greenlet_impl& g = *node.greenlet;
  out += root ? prefix : prefix + " +--- ";
  out += g.display_name() + " (id " + std::to_string(g.id) + "): " + describe_state(g, ts, loop);
  if (g.parent != nullptr) out += "; parent " + g.parent->display_name();
  if (node.spawner != nullptr) out += "; spawned by " + node.spawner->display_name();
  if (g.hub.spawn_site != nullptr) out += " at " + describe_code_address(g.hub.spawn_site);
  out += "\n";
  const std::string below = root ? prefix : prefix + (last ? "      " : " |    ");
  const std::vector<std::size_t> children = node.children;
  for (std::size_t i = 0; i < children.size(); ++i) {
    if (nodes[children[i]].drawn) continue;  // reached already through a cycle of reparenting
    draw(nodes, children[i], below, false, i + 1 == children.size(), ts, loop, out);
  }
}

}  // namespace

}  // namespace greenev::detail

namespace greenev {

std::string format_greenlet_tree() {
  using detail::tree_node;
  const detail::thread_state* ts = detail::tls_state;
  if (ts == nullptr) return "no greenlets on this thread\n";
  const auto* hub = static_cast<const detail::hub_impl*>(ts->hub);
  struct ev_loop* loop = hub != nullptr ? hub->loop() : nullptr;
  std::vector<tree_node> nodes{{ts->main}};
  for (const detail::greenlet_impl* g = ts->active_head; g != nullptr; g = g->active_next)
    nodes.push_back({g});
  std::sort(nodes.begin(), nodes.end(),
            [](const tree_node& a, const tree_node& b) { return a.greenlet->id < b.greenlet->id; });
  detail::node_index live;
  std::unordered_map<std::uint64_t, const detail::greenlet_impl*> by_id;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    live.emplace(nodes[i].greenlet, i);
    by_id.emplace(nodes[i].greenlet->id, nodes[i].greenlet);
  }
  for (tree_node& node : nodes) {
    const auto spawner = by_id.find(node.greenlet->hub.spawner_id);
    if (spawner != by_id.end() && spawner->second != node.greenlet) node.spawner = spawner->second;
  }
  std::vector<std::size_t> roots;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const detail::greenlet_impl* up = detail::tree_parent(nodes[i], live);
    if (up == nullptr) {
      roots.push_back(i);
    } else {
      nodes[live.at(up)].children.push_back(i);
    }
  }
  std::string text;
  for (std::size_t root : roots) detail::draw(nodes, root, "", true, true, *ts, loop, text);
  // Greenlets whose spawner and parent point at each other (set_parent can
  // do that) hang from no root: draw each such cycle from its oldest member.
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (!nodes[i].drawn) detail::draw(nodes, i, "", true, true, *ts, loop, text);
  if (hub != nullptr && hub->pending_callbacks() != 0)
    text += "(" + std::to_string(hub->pending_callbacks()) + " callbacks queued, e.g. tasks to start)\n";
  return text;
}

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
