// stream_server: an accept loop per thread feeding a group (or pool) of
// handler greenlets. Worker threads talk to the creating thread only through
// run_callback_threadsafe: "bound" (or "failed") on start, "stop" and "done".
#include <greenev/server.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include <greenev/error_reporter.hpp>
#include <greenev/event.hpp>
#include <greenev/fork.hpp>
#include <greenev/io.hpp>
#include <greenev/pool.hpp>
#include <greenev/signal.hpp>
#include <greenev/task.hpp>

namespace greenev {

namespace {

// What one thread serves with.
struct worker {
  socket listener;
  std::unique_ptr<group> handlers;
  basic_task acceptor;
  bool paused = false;  // stop_accepting(): the listener stays open, accept() is not called
  event resume;         // set by start_accepting()
};

// A worker thread as the creating thread sees it.
struct remote_worker {
  remote_worker() = default;
  remote_worker(const remote_worker&) = delete;
  remote_worker& operator=(const remote_worker&) = delete;
  // Only reached joinable if stop() was interrupted after asking the worker
  // to stop: it finishes within its stop timeout.
  ~remote_worker() {
    if (thread.joinable()) thread.join();
  }
  std::thread thread;
  hub* home = nullptr;            // the worker's hub, once bound
  event* stop_request = nullptr;  // lives on the worker thread; set through `home`
  worker* serving = nullptr;      // lives on the worker thread; paused and resumed through `home`
  std::exception_ptr start_error;
};

// A child of a pre-fork parent, as the parent sees it.
struct child_process {
  pid_t pid = -1;
  int pidfd = -1;  // -1 on a kernel without pidfds: looked at every 50 ms
  unsigned slot = 0;
  std::chrono::steady_clock::time_point started{};
};

// A slot whose child died abnormally, forked again at `due`.
struct pending_restart {
  unsigned slot = 0;
  std::chrono::steady_clock::time_point due{};
};

}  // namespace

namespace detail {

struct stream_server_state {
  using handler_type = stream_server::handler_type;
  address local;
  handler_type handler;
  stream_server_options options;
  worker own;
  std::vector<std::unique_ptr<remote_worker>> remotes;
  hub* home = nullptr;
  event all_bound;        // every remote worker bound (or failed)
  event all_done;         // every remote worker finished stopping
  std::size_t bound = 0;  // remote workers that reported in (home thread only)
  std::size_t done = 0;
  std::atomic<std::size_t> accepted{0};
  event stopped_event;
  bool started = false;
  bool stopped = false;
  bool given_socket = false;  // built on the caller's socket: closed by stop(), so no restart
  bool paused = false;        // stop_accepting() (every worker)
  wait_time stop_timeout = 1.0;

  // Pre-fork serving (processes > 1). In the parent only: a child clears
  // all of it first thing (see serve_as_child).
  bool supervising = false;
  std::vector<child_process> children;
  std::vector<pending_restart> restarts;
  std::vector<std::chrono::milliseconds> backoff;  // per slot
  basic_task supervisor;
  std::unique_ptr<signal_handler> on_term;
  std::unique_ptr<signal_handler> on_int;
  // In a child: set by its stop(); serve_as_child then exits the process.
  bool is_child = false;
  event child_stopped;
};

}  // namespace detail

namespace {

using server_state = detail::stream_server_state;

bool is_tcp(const address& a) {
  return a.family() == AF_INET || a.family() == AF_INET6;
}

socket open_listener(const address& local, const stream_server_options& options, bool reuse_port) {
  socket listener(local.family(), SOCK_STREAM);
  if (is_tcp(local)) listener.set_option(SOL_SOCKET, SO_REUSEADDR, 1);
  if (reuse_port) listener.set_option(SOL_SOCKET, SO_REUSEPORT, 1);
  listener.bind(local);
  listener.listen(options.backlog);
  return listener;
}

// Waits for an event set by another thread through run_callback_threadsafe.
// The hub cannot see that work (no watcher of its own): the guard keeps a
// plain wait() from ending in loop_exit.
void wait_for_other_threads(event& e) {
  const work_guard expecting;
  e.wait();
}

void report_accept_error(const server_state& s, const std::system_error& error,
                         std::chrono::milliseconds pause) {
  detail::report_error("greenev: stream_server on " + s.local.to_string() + ": accept failed (" +
                       error.what() + "); retrying in " + std::to_string(pause.count()) + " ms");
}

void accept_loop(server_state& s, worker& w) {
  std::chrono::milliseconds pause{0};
  const bool tcp = is_tcp(s.local);
  while (w.listener) {
    if (w.paused) {
      // Held open (a paused server is still serving), so this wait is no loop_exit.
      const work_guard paused;
      w.resume.wait();
      continue;
    }
    socket connection;
    address peer;
    try {
      std::tie(connection, peer) = w.listener.accept();
    } catch (const std::system_error& error) {
      if (!w.listener) return;  // closed by stop()
      if (w.paused) continue;   // woken by pause()
      pause = std::clamp(pause * 2, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
      report_accept_error(s, error, pause);
      sleep(pause);
      continue;
    }
    pause = std::chrono::milliseconds(0);
    s.accepted.fetch_add(1, std::memory_order_relaxed);
    if (tcp && s.options.no_delay) {
      try {
        connection.set_option(IPPROTO_TCP, TCP_NODELAY, 1);
      } catch (const std::system_error&) {  // the peer may already be gone; the handler will see
      }
    }
    // Waits while a pool is full; the connection closes when the task ends.
    w.handlers->spawn([&handler = s.handler, connection = std::move(connection), peer]() mutable {
      handler(connection, peer);
    });
  }
}

void begin_accepting(server_state& s, worker& w) {
  if (s.options.max_connections) {
    w.handlers = std::make_unique<pool>(*s.options.max_connections);
  } else {
    w.handlers = std::make_unique<group>();
  }
  w.acceptor = spawn_with({.name = "stream_server " + s.local.to_string()}, [&s, &w] { accept_loop(s, w); });
}

// stop_accepting() / start_accepting() on one worker, on its own thread. A
// paused acceptor waiting in accept() is woken by cancel_wait (EBADF with
// the listener still open); one waiting for a pool slot finishes handing its
// connection over first: nothing accepted is dropped.
void pause_worker(worker& w) {
  if (w.paused || !w.listener) return;
  w.paused = true;
  w.resume.clear();
  cancel_wait(w.listener.fd());
}

void resume_worker(worker& w) {
  w.paused = false;
  w.resume.set();
}

// Closes the listener, lets handlers finish for `timeout`, kills the rest.
void stop_worker(worker& w, wait_time timeout) {
  w.listener.close();
  if (w.acceptor) w.acceptor.kill();  // it may be waiting for a pool slot
  if (w.handlers && !w.handlers->join(timeout)) w.handlers->kill({.timeout = 1.0});
}

void run_remote(server_state& s, remote_worker& r) {
  hub& home = *s.home;
  worker w;
  event stop_request;
  try {
    w.listener = open_listener(s.local, s.options, true);
  } catch (...) {
    r.start_error = std::current_exception();
  }
  if (!r.start_error) {
    r.home = &hub::current();
    r.stop_request = &stop_request;
    r.serving = &w;
    w.paused = s.paused;
    begin_accepting(s, w);
  }
  home.run_callback_threadsafe([&s] {
    if (++s.bound == s.remotes.size()) s.all_bound.set();
  });
  if (r.start_error) return;
  wait_for_other_threads(stop_request);
  stop_worker(w, s.stop_timeout);
  w.acceptor = {};
  home.run_callback_threadsafe([&s] {
    if (++s.done == s.remotes.size()) s.all_done.set();
  });
}

void stop_remotes(server_state& s) {
  if (s.remotes.empty()) return;
  wait_for_other_threads(s.all_bound);  // a worker still binding reports in before it can be stopped
  for (auto& r : s.remotes) {
    if (r->home != nullptr) r->home->run_callback_threadsafe([r = r.get()] { r->stop_request->set(); });
  }
  {
    std::size_t running = 0;
    for (auto& r : s.remotes) running += r->start_error ? 0 : 1;
    if (running > 0) wait_for_other_threads(s.all_done);
  }
  for (auto& r : s.remotes) r->thread.join();  // each has finished or is finishing
  s.remotes.clear();
}

}  // namespace

namespace {

void serve_here(server_state& s);

// ---- pre-fork serving ------------------------------------------------------
//
// The parent binds, forks the children and supervises them from one greenlet
// that polls their pidfds (as subprocess does: no SIGCHLD handler, no
// waitpid(-1), so the program's other children are its own business).

int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

void signal_child(const child_process& c, int signal) noexcept {
#ifdef SYS_pidfd_send_signal
  if (c.pidfd >= 0) {
    (void)::syscall(SYS_pidfd_send_signal, c.pidfd, signal, nullptr, 0);
    return;
  }
#endif
  (void)::kill(c.pid, signal);
}

// SIGTERM and SIGINT run `on_stop`, where this thread's hub watches the
// process's signals (the main thread's); elsewhere they keep their action.
void watch_stop_signals(server_state& s, const std::function<void()>& on_stop) {
  try {
    s.on_term = std::make_unique<signal_handler>(SIGTERM, on_stop);
    s.on_int = std::make_unique<signal_handler>(SIGINT, on_stop);
  } catch (const greenlet_error&) {  // not the hub that watches signals
    s.on_term.reset();
  }
}

constexpr std::chrono::milliseconds first_backoff{100};
constexpr std::chrono::milliseconds last_backoff{5000};
// A child that served this long before dying starts its slot's pause afresh.
constexpr std::chrono::seconds healthy_run{10};

// In a child, from the start() or the supervisor greenlet that forked it:
// forgets the parent's supervision, serves, and exits when stopped. Never
// returns.
[[noreturn]] void serve_as_child(server_state& s, pid_t parent) {
  int status = 0;
  try {
    // Dies with the parent (SIGTERM: a graceful stop) rather than serving on
    // unsupervised; the parent may already be gone.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(0);
    for (child_process& c : s.children) {
      if (c.pidfd >= 0) ::close(c.pidfd);  // nobody here waits on them (the supervisor is killed next)
    }
    s.children.clear();
    s.restarts.clear();
    s.supervising = false;
    s.is_child = true;
    // Forked from start(): the parent's supervisor was copied too. Forked by
    // the supervisor: this is it, and it never goes back to supervising.
    if (s.supervisor && !s.supervisor.ready() && greenlet::current() != s.supervisor.raw_greenlet()) {
      s.supervisor.kill({.block = false});
      s.supervisor = {};
    }
    s.on_term.reset();
    s.on_int.reset();
    serve_here(s);
    watch_stop_signals(s, [&s] { s.child_stopped.set(); });
    {
      const work_guard serving;  // the acceptors' watchers may all be paused
      s.child_stopped.wait();
    }
    s.on_term.reset();
    s.on_int.reset();
    if (!s.stopped) {
      s.stopped = true;
      stop_worker(s.own, s.stop_timeout);
      stop_remotes(s);
      s.own.acceptor = {};
    }
  } catch (...) {
    detail::report_error("greenev: stream_server on " + s.local.to_string() + ": a pre-fork child failed");
    status = 1;
  }
  std::fflush(nullptr);
  ::_exit(status);
}

// Forks the child for `slot`; in the child, never returns.
void fork_child(server_state& s, unsigned slot) {
  std::fflush(nullptr);  // nothing buffered is written twice
  const pid_t parent = ::getpid();
  const pid_t pid = greenev::fork();
  if (pid == 0) serve_as_child(s, parent);
  s.children.push_back({pid, open_pidfd(pid), slot, std::chrono::steady_clock::now()});
}

// Reaps `c` (it exited) and says whether its slot is to be forked again.
bool reap_and_judge(const child_process& c) {
  int status = 0;
  while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (c.pidfd >= 0) ::close(c.pidfd);
  if (WIFEXITED(status)) return WEXITSTATUS(status) != 0;
  if (WIFSIGNALED(status)) return WTERMSIG(status) != SIGTERM && WTERMSIG(status) != SIGINT;
  return false;
}

bool has_exited(const child_process& c) {
  if (c.pidfd >= 0) {
    pollfd entry{c.pidfd, POLLIN, 0};
    return ::poll(&entry, 1, 0) == 1;
  }
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(c.pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == c.pid;
}

void supervise(server_state& s) {
  using clock = std::chrono::steady_clock;
  while (!s.stopped) {
    std::vector<pollfd> fds;
    bool without_pidfd = false;
    for (const child_process& c : s.children) {
      if (c.pidfd >= 0) {
        fds.push_back({c.pidfd, POLLIN, 0});
      } else {
        without_pidfd = true;
      }
    }
    auto wait = std::chrono::nanoseconds(std::chrono::hours(24));
    for (const pending_restart& r : s.restarts)
      wait = std::min<std::chrono::nanoseconds>(wait, r.due - clock::now());
    if (without_pidfd) wait = std::min<std::chrono::nanoseconds>(wait, std::chrono::milliseconds(50));
    wait = std::max<std::chrono::nanoseconds>(wait, std::chrono::nanoseconds(0));
    if (fds.empty()) {
      if (s.restarts.empty()) break;  // every child exited by itself
      sleep(wait);
    } else {
      (void)poll(fds, wait);
    }
    if (s.stopped) return;
    for (std::size_t i = 0; i < s.children.size();) {
      const child_process c = s.children[i];
      if (!has_exited(c)) {
        ++i;
        continue;
      }
      s.children.erase(s.children.begin() + static_cast<std::ptrdiff_t>(i));
      if (!reap_and_judge(c)) continue;
      auto& pause = s.backoff[c.slot];
      if (clock::now() - c.started >= healthy_run) pause = first_backoff;
      detail::report_error("greenev: stream_server on " + s.local.to_string() + ": child " +
                           std::to_string(c.pid) + " died; forking another in " +
                           std::to_string(pause.count()) + " ms");
      s.restarts.push_back({c.slot, clock::now() + pause});
      pause = std::min(pause * 2, last_backoff);
    }
    for (std::size_t i = 0; i < s.restarts.size();) {
      if (s.restarts[i].due > clock::now()) {
        ++i;
        continue;
      }
      const unsigned slot = s.restarts[i].slot;
      s.restarts.erase(s.restarts.begin() + static_cast<std::ptrdiff_t>(i));
      try {
        fork_child(s, slot);  // the child never comes back here
      } catch (const std::system_error& error) {
        detail::report_error("greenev: stream_server on " + s.local.to_string() + ": fork failed (" +
                             error.what() + "); trying again");
        s.restarts.push_back({slot, clock::now() + s.backoff[slot]});
        ++i;
      }
    }
  }
  if (!s.stopped) {  // all children stopped by themselves: the parent stops too
    s.stopped = true;
    s.own.listener.close();
    s.on_term.reset();
    s.on_int.reset();
    s.stopped_event.set();
  }
}

// SIGTERM to every child, up to `timeout` for them to exit, SIGKILL for
// the rest; all reaped.
void stop_children(server_state& s, wait_time timeout) {
  if (s.supervisor && !s.supervisor.ready()) s.supervisor.kill();
  s.supervisor = {};
  s.restarts.clear();
  if (s.on_term) s.on_term->cancel();
  if (s.on_int) s.on_int->cancel();
  s.own.listener.close();
  for (const child_process& c : s.children) signal_child(c, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + timeout.duration();
  for (const child_process& c : s.children) {
    while (!has_exited(c)) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::nanoseconds(0)) break;
      if (c.pidfd >= 0) {
        pollfd entry{c.pidfd, POLLIN, 0};
        (void)poll(std::span<pollfd>(&entry, 1), left);
      } else {
        sleep(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(10)));
      }
    }
    if (!has_exited(c)) signal_child(c, SIGKILL);
    (void)reap_and_judge(c);
  }
  s.children.clear();
  s.supervising = false;
}

void start_children(stream_server& server, server_state& s) {
  s.supervising = true;
  s.backoff.assign(s.options.processes, first_backoff);
  try {
    for (unsigned slot = 0; slot < s.options.processes; ++slot) fork_child(s, slot);
  } catch (...) {
    s.stopped = true;
    stop_children(s, 0.0);
    s.stopped_event.set();
    throw;
  }
  watch_stop_signals(s, [&server] { server.stop(5.0); });
  s.supervisor =
      spawn_with({.name = "stream_server supervisor " + s.local.to_string()}, [&s] { supervise(s); });
}

}  // namespace

std::vector<pid_t> stream_server::child_pids() const {
  std::vector<pid_t> pids;
  for (const child_process& c : state_->children) pids.push_back(c.pid);
  return pids;
}

stream_server::stream_server(address local, handler_type handler, stream_server_options options)
    : state_(std::make_unique<detail::stream_server_state>()) {
  if (!handler) throw std::invalid_argument("greenev: stream_server needs a handler");
  if (options.workers == 0) throw std::invalid_argument("greenev: stream_server with 0 workers");
  if (options.workers > 1 && !is_tcp(local)) {
    throw std::invalid_argument("greenev: stream_server workers > 1 need a TCP address (SO_REUSEPORT), not " +
                                local.to_string());
  }
  if (options.processes == 0) throw std::invalid_argument("greenev: stream_server with 0 processes");
  if (options.max_connections && *options.max_connections == 0) {
    throw std::invalid_argument("greenev: stream_server max_connections must be at least 1");
  }
  state_->local = local;
  state_->handler = std::move(handler);
  state_->options = options;
}

stream_server::stream_server(socket listener, handler_type handler, stream_server_options options)
    : stream_server(listener.local_address(), std::move(handler), options) {
  if (options.workers != 1)
    throw std::invalid_argument("greenev: stream_server on a given socket: workers must be 1");
  if (options.processes != 1)
    throw std::invalid_argument("greenev: stream_server on a given socket: processes must be 1");
  state_->own.listener = std::move(listener);
  state_->given_socket = true;
}

stream_server::~stream_server() {
  if (state_ == nullptr || !state_->started || state_->stopped) return;
  try {
    stop(0.0);
  } catch (...) {  // destructors do not throw; stop() only fails if the hub is going away
  }
}

void stream_server::start() {
  detail::stream_server_state& s = *state_;
  if (s.started && !s.stopped) throw greenlet_error("greenev: stream_server::start: already started");
  if (s.stopped) {
    if (s.given_socket) {
      throw greenlet_error(
          "greenev: stream_server::start: a server on a given socket cannot restart (stop closed it)");
    }
    // Restart on the address it had (the same port, even if it asked for 0).
    s.started = s.stopped = false;
    s.bound = s.done = 0;
    s.all_bound.clear();
    s.all_done.clear();
    s.stopped_event.clear();
  }
  if (!s.own.listener) s.own.listener = open_listener(s.local, s.options, s.options.workers > 1);
  s.local = s.own.listener.local_address();  // the real port
  s.home = &hub::current();
  s.started = true;
  s.paused = false;
  if (s.options.processes > 1) {
    start_children(*this, s);
    return;
  }
  serve_here(s);
}

namespace {

// Accepts on this thread and starts the worker threads.
void serve_here(server_state& s) {
  resume_worker(s.own);
  begin_accepting(s, s.own);
  if (s.options.workers == 1) return;
  for (unsigned i = 1; i < s.options.workers; ++i) s.remotes.push_back(std::make_unique<remote_worker>());
  for (auto& r : s.remotes) r->thread = std::thread([&s, r = r.get()] { run_remote(s, *r); });
  wait_for_other_threads(s.all_bound);
  for (auto& r : s.remotes) {
    if (r->start_error) {
      const std::exception_ptr error = r->start_error;
      s.own.listener.close();
      stop_worker(s.own, 0.0);
      stop_remotes(s);
      s.own.acceptor = {};
      s.stopped = true;
      s.stopped_event.set();
      std::rethrow_exception(error);
    }
  }
}

}  // namespace

void stream_server::serve_forever() {
  if (!state_->started) start();
  state_->stopped_event.wait();
}

void stream_server::stop(wait_time timeout) {
  detail::stream_server_state& s = *state_;
  if (!s.started || s.stopped) return;
  s.stopped = true;
  s.stop_timeout = timeout;
  if (s.supervising) {
    stop_children(s, timeout);
    s.stopped_event.set();
    return;
  }
  stop_worker(s.own, timeout);
  stop_remotes(s);
  s.own.acceptor = {};
  // A pre-fork child: serve_as_child exits (the parent's waiters, copied
  // into the child, are not woken).
  if (s.is_child) {
    s.child_stopped.set();
    return;
  }
  s.stopped_event.set();
}

namespace {

// Runs `change` on every remote worker's own thread and returns once each has.
void on_every_remote(server_state& s, void (*change)(worker&)) {
  std::size_t running = 0;
  for (auto& r : s.remotes) running += r->home != nullptr ? 1 : 0;
  if (running == 0) return;
  std::size_t answered = 0;
  event all_answered;
  hub& home = *s.home;
  for (auto& r : s.remotes) {
    if (r->home == nullptr) continue;
    r->home->run_callback_threadsafe([r = r.get(), change, &home, &answered, &all_answered, running] {
      change(*r->serving);
      home.run_callback_threadsafe([&answered, &all_answered, running] {
        if (++answered == running) all_answered.set();
      });
    });
  }
  wait_for_other_threads(all_answered);
}

}  // namespace

void stream_server::stop_accepting() {
  detail::stream_server_state& s = *state_;
  if (!started() || s.paused) return;
  s.paused = true;
  pause_worker(s.own);
  on_every_remote(s, pause_worker);
}

void stream_server::start_accepting() {
  detail::stream_server_state& s = *state_;
  if (!started() || !s.paused) return;
  s.paused = false;
  resume_worker(s.own);
  on_every_remote(s, resume_worker);
}

bool stream_server::accepting() const noexcept {
  return started() && !state_->paused;
}

address stream_server::local_address() const {
  return state_->started ? state_->local : address{};
}

bool stream_server::started() const noexcept {
  return state_->started && !state_->stopped;
}

bool stream_server::stopped() const noexcept {
  return state_->stopped;
}

std::size_t stream_server::connections() const noexcept {
  return state_->own.handlers ? state_->own.handlers->size() : 0;
}

std::size_t stream_server::accepted() const noexcept {
  return state_->accepted.load(std::memory_order_relaxed);
}

}  // namespace greenev
