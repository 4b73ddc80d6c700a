// stream_server: an accept loop per thread feeding a group (or pool) of
// handler greenlets. Worker threads talk to the creating thread only through
// run_callback_threadsafe: "bound" (or "failed") on start, "stop" and "done".
#include <greenev/server.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
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
#include <greenev/io.hpp>
#include <greenev/pool.hpp>
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
  if (w.handlers && !w.handlers->join(timeout))
    w.handlers->kill(std::make_exception_ptr(greenlet_exit{}), true, 1.0);
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

stream_server::stream_server(address local, handler_type handler, stream_server_options options)
    : state_(std::make_unique<detail::stream_server_state>()) {
  if (!handler) throw std::invalid_argument("greenev: stream_server needs a handler");
  if (options.workers == 0) throw std::invalid_argument("greenev: stream_server with 0 workers");
  if (options.workers > 1 && !is_tcp(local)) {
    throw std::invalid_argument("greenev: stream_server workers > 1 need a TCP address (SO_REUSEPORT), not " +
                                local.to_string());
  }
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
  resume_worker(s.own);
  begin_accepting(s, s.own);
  if (s.options.workers == 1) return;
  for (unsigned i = 1; i < s.options.workers; ++i) s.remotes.push_back(std::make_unique<remote_worker>());
  for (auto& r : s.remotes) r->thread = std::thread([&s, r = r.get()] { run_remote(s, *r); });
  wait_for_other_threads(s.all_bound);
  for (auto& r : s.remotes) {
    if (r->start_error) {
      const std::exception_ptr error = r->start_error;
      stop(0.0);
      std::rethrow_exception(error);
    }
  }
}

void stream_server::serve_forever() {
  if (!state_->started) start();
  state_->stopped_event.wait();
}

void stream_server::stop(wait_time timeout) {
  detail::stream_server_state& s = *state_;
  if (!s.started || s.stopped) return;
  s.stopped = true;
  s.stop_timeout = timeout;
  stop_worker(s.own, timeout);
  stop_remotes(s);
  s.own.acceptor = {};
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
