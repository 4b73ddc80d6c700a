// raw_libev_echo: the baseline for greenev's echo_server (STYLE.md point 8), a plain libev
// callback echo server written the way one would without greenlets: non-blocking sockets,
// one ev_io per connection, no threads. bench/echo_bench.sh runs both under the same load.
//
//   raw_libev_echo [--port 8001] [--host 127.0.0.1]
//
// Prints "listening on HOST:PORT" once it accepts (the real port when given --port 0) and
// exits 0 on SIGINT or SIGTERM.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <ev.h>

namespace {

struct connection {
  ev_io watcher{};
  // Bytes the socket refused: kept until it is writable again. Reading stops meanwhile,
  // so a client that does not read cannot make the server buffer without bound.
  std::vector<char> unsent;
  std::size_t unsent_offset = 0;
};

struct server {
  int listen_fd = -1;
  ev_io listener{};
  ev_timer accept_backoff{};
  ev_signal interrupt{};
  ev_signal terminate{};
  std::vector<std::unique_ptr<connection>> by_fd;
  // Every connection reads into this one buffer and echoes straight from it; only what the
  // socket refuses is copied, into that connection's own `unsent`.
  std::array<char, 65536> read_buffer{};
};

server& server_of(struct ev_loop* loop) {
  return *static_cast<server*>(ev_userdata(loop));
}

void close_connection(struct ev_loop* loop, connection& c) {
  int fd = c.watcher.fd;
  ev_io_stop(loop, &c.watcher);
  close(fd);
  server_of(loop).by_fd[static_cast<std::size_t>(fd)].reset();
}

// Watch for exactly one of EV_READ or EV_WRITE; libev needs the watcher stopped to change it.
void watch(struct ev_loop* loop, connection& c, int events) {
  if ((c.watcher.events & (EV_READ | EV_WRITE)) == events) return;
  ev_io_stop(loop, &c.watcher);
  ev_io_set(&c.watcher, c.watcher.fd, events);
  ev_io_start(loop, &c.watcher);
}

// Sends what it can of [data, data + size); returns the count sent, or -1 after closing.
ssize_t send_some(struct ev_loop* loop, connection& c, const char* data, std::size_t size) {
  for (;;) {
    ssize_t n = send(c.watcher.fd, data, size, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    close_connection(loop, c);
    return -1;
  }
}

void on_readable(struct ev_loop* loop, connection& c) {
  auto& buffer = server_of(loop).read_buffer;
  // One recv per wake-up: the watcher is level-triggered, so anything left comes next time
  // without paying for a recv that would only say EAGAIN.
  ssize_t received = recv(c.watcher.fd, buffer.data(), buffer.size(), 0);
  if (received < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (received <= 0) return close_connection(loop, c);
  auto size = static_cast<std::size_t>(received);
  ssize_t sent = send_some(loop, c, buffer.data(), size);
  if (sent < 0) return;
  if (static_cast<std::size_t>(sent) < size) {
    c.unsent.assign(buffer.data() + sent, buffer.data() + size);
    c.unsent_offset = 0;
    watch(loop, c, EV_WRITE);
  }
}

void on_writable(struct ev_loop* loop, connection& c) {
  ssize_t sent = send_some(loop, c, c.unsent.data() + c.unsent_offset, c.unsent.size() - c.unsent_offset);
  if (sent < 0) return;
  c.unsent_offset += static_cast<std::size_t>(sent);
  if (c.unsent_offset == c.unsent.size()) {
    c.unsent.clear();
    watch(loop, c, EV_READ);
  }
}

void on_connection(struct ev_loop* loop, ev_io* watcher, int revents) {
  auto& c = *static_cast<connection*>(watcher->data);
  if (revents & EV_WRITE) {
    on_writable(loop, c);
  } else if (revents & EV_READ) {
    on_readable(loop, c);
  }
}

void on_accept_backoff(struct ev_loop* loop, ev_timer*, int) {
  ev_io_start(loop, &server_of(loop).listener);
}

void on_listener(struct ev_loop* loop, ev_io*, int) {
  server& s = server_of(loop);
  // Accept everything queued: one wake-up per connection would be slower under a burst.
  for (;;) {
    int fd = accept4(s.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN) return;
      // Out of descriptors or memory: the listener would stay readable and spin, so pause
      // accepting for a moment instead.
      std::perror("raw_libev_echo: accept");
      ev_io_stop(loop, &s.listener);
      ev_timer_set(&s.accept_backoff, 0.1, 0.0);
      ev_timer_start(loop, &s.accept_backoff);
      return;
    }
    // Replies go out whole and at once; never let Nagle hold back the tail of a partial one.
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (s.by_fd.size() <= static_cast<std::size_t>(fd)) s.by_fd.resize(static_cast<std::size_t>(fd) + 1);
    auto& c = s.by_fd[static_cast<std::size_t>(fd)];
    c = std::make_unique<connection>();
    ev_io_init(&c->watcher, on_connection, fd, EV_READ);
    c->watcher.data = c.get();
    ev_io_start(loop, &c->watcher);
  }
}

void on_stop_signal(struct ev_loop* loop, ev_signal*, int) {
  ev_break(loop, EVBREAK_ALL);
}

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "raw_libev_echo: %s\nusage: raw_libev_echo [--port 8001] [--host 127.0.0.1]\n",
               message.c_str());
  std::exit(2);
}

// Binds and listens; exits with a message on failure. Returns the fd and the bound port.
int open_listener(const std::string& host, const std::string& port, int& bound_port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int error = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); error != 0)
    usage_error("cannot resolve " + host + ": " + gai_strerror(error));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, freeaddrinfo);
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, found->ai_addr, found->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
    std::fprintf(stderr, "raw_libev_echo: cannot listen on %s:%s: %s\n", host.c_str(), port.c_str(),
                 std::strerror(errno));
    std::exit(1);
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
  bound_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                 : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  std::string port = "8001";
  for (int i = 1; i < argc; ++i) {
    std::string_view name = argv[i];
    if (name == "-h" || name == "--help") usage_error("a raw libev callback echo server");
    if (i + 1 >= argc || (name != "--host" && name != "--port"))
      usage_error("unknown argument or missing value: " + std::string(name));
    (name == "--host" ? host : port) = argv[++i];
  }
  int port_number = -1;
  auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (error != std::errc{} || end != port.data() + port.size() || port_number < 0 || port_number > 65535)
    usage_error("--port needs a number in [0, 65535], not '" + port + "'");

  server s;
  s.listen_fd = open_listener(host, port, port_number);
  struct ev_loop* loop = ev_default_loop(EVFLAG_AUTO);
  ev_set_userdata(loop, &s);
  ev_io_init(&s.listener, on_listener, s.listen_fd, EV_READ);
  ev_io_start(loop, &s.listener);
  ev_init(&s.accept_backoff, on_accept_backoff);
  ev_signal_init(&s.interrupt, on_stop_signal, SIGINT);
  ev_signal_start(loop, &s.interrupt);
  ev_signal_init(&s.terminate, on_stop_signal, SIGTERM);
  ev_signal_start(loop, &s.terminate);

  bool bracket = host.find(':') != std::string::npos;
  std::printf("listening on %s%s%s:%d\n", bracket ? "[" : "", host.c_str(), bracket ? "]" : "", port_number);
  std::fflush(stdout);  // the script reads this line through a pipe or a file
  ev_run(loop, 0);

  for (auto& c : s.by_fd)
    if (c) close_connection(loop, *c);
  ev_io_stop(loop, &s.listener);
  ev_timer_stop(loop, &s.accept_backoff);
  ev_signal_stop(loop, &s.interrupt);
  ev_signal_stop(loop, &s.terminate);
  close(s.listen_fd);
  return 0;
}
