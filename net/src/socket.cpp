// Cooperative sockets: every call tries the non-blocking syscall first and
// waits in the hub only when the kernel says EAGAIN, so a ready socket costs
// one syscall and no switch.
#include <greenev/socket.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <string>
#include <system_error>
#include <vector>

#include <greenev/dns.hpp>
#include <greenev/io.hpp>
#include <greenev/timeout.hpp>

namespace greenev {

namespace {

using steady = std::chrono::steady_clock;

[[noreturn]] void throw_errno(int error, const char* what, const std::string& detail = {}) {
  std::string message = std::string("greenev: ") + what;
  if (!detail.empty()) message += " " + detail;
  throw std::system_error(error, std::generic_category(), message);
}

steady::time_point deadline_of(wait_time limit) {
  return limit.is_forever() ? steady::time_point::max() : steady::now() + limit.duration();
}

constexpr int want_read = 1;
constexpr int want_write = 2;

}  // namespace

socket::socket(int family, int type, int protocol) {
  fd_ = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd_ < 0) throw_errno(errno, "socket");
}

socket socket::adopt(int fd) {
  set_non_blocking(fd);
  return socket(fd);
}

socket::socket(socket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      timeout_(other.timeout_),
      watched_(std::exchange(other.watched_, false)),
      drained_(std::exchange(other.drained_, false)) {}

socket& socket::operator=(socket&& other) noexcept {
  if (this != &other) {
    try {
      close();
    } catch (const std::system_error&) {  // the fd is released anyway
    }
    fd_ = std::exchange(other.fd_, -1);
    timeout_ = other.timeout_;
    watched_ = std::exchange(other.watched_, false);
    drained_ = std::exchange(other.drained_, false);
  }
  return *this;
}

socket::~socket() {
  if (fd_ < 0) return;
  cancel_wait(fd_);
  ::close(fd_);
}

int socket::release() noexcept {
  watched_ = drained_ = false;
  return std::exchange(fd_, -1);
}

int socket::require(const char* what) const {
  if (fd_ < 0) throw_errno(EBADF, what, "on a closed socket");
  return fd_;
}

void socket::wait(int events, steady::time_point deadline, wait_time limit, const char* what) {
  if (limit.is_poll()) {
    throw_errno(EAGAIN, what, "on a non-blocking socket (timeout 0)");
  }
  wait_time left;
  if (deadline != steady::time_point::max()) {
    left = deadline - steady::now();
    if (left.is_poll()) throw timeout_error(this, limit.duration());
  }
  const bool fresh = !std::exchange(watched_, true);
  if (!detail::wait_owned_fd(fd_, events, left, fresh, what)) throw timeout_error(this, limit.duration());
}

void socket::bind(const address& local) {
  if (::bind(require("bind"), local.data(), local.size()) != 0)
    throw_errno(errno, "bind to", local.to_string());
}

void socket::listen(int backlog) {
  if (::listen(require("listen"), backlog) != 0) throw_errno(errno, "listen");
}

std::pair<socket, address> socket::accept() {
  require("accept");
  const auto deadline = deadline_of(timeout_);
  for (;;) {
    address peer;
    socklen_t length = address::capacity();
    const int fd = ::accept4(fd_, peer.data(), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      peer.resize(length);
      return {socket(fd), peer};
    }
    if (errno == EAGAIN) {
      wait(want_read, deadline, timeout_, "accept");
    } else if (errno != EINTR && errno != ECONNABORTED) {
      throw_errno(errno, "accept");
    }
  }
}

void socket::connect(const address& peer) {
  connect(peer, timeout_);
}

void socket::connect(const address& peer, wait_time timeout) {
  require("connect");
  const auto deadline = deadline_of(timeout);
  if (::connect(fd_, peer.data(), peer.size()) == 0) return;
  if (errno != EINPROGRESS && errno != EINTR) throw_errno(errno, "connect to", peer.to_string());
  // In progress: writability means done, SO_ERROR says how.
  if (!timeout.is_poll()) {
    wait(want_write, deadline, timeout, "connect");
  } else if (!wait_write(fd_, 0.0)) {
    throw_errno(EINPROGRESS, "connect to", peer.to_string() + " (timeout 0)");
  }
  const int error = option(SOL_SOCKET, SO_ERROR);
  if (error != 0) throw_errno(error, "connect to", peer.to_string());
}

int socket::connect_ex(const address& peer) {
  return connect_ex(peer, timeout_);
}

int socket::connect_ex(const address& peer, wait_time timeout) {
  require("connect_ex");
  try {
    connect(peer, timeout);
    return 0;
  } catch (const timeout_error&) {
    return ETIMEDOUT;
  } catch (const std::system_error& error) {
    if (error.code().category() != std::generic_category() || error.code().value() == EBADF) throw;
    return error.code().value();
  }
}

std::size_t socket::recv_into(std::span<char> buffer, int flags) {
  require("recv");
  const auto deadline = deadline_of(timeout_);
  // A short read last time means the kernel had no more then: wait first
  // rather than spend a recv on EAGAIN (epoll is level-triggered, so data that
  // came meanwhile ends the wait at once). This is a request/response
  // server's steady state, and it saves a syscall per message.
  if (std::exchange(drained_, false) && flags == 0 && !buffer.empty() && !timeout_.is_poll()) {
    wait(want_read, deadline, timeout_, "recv");
  }
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), flags);
    if (n >= 0) {
      drained_ = n > 0 && static_cast<std::size_t>(n) < buffer.size();
      return static_cast<std::size_t>(n);
    }
    if (errno == EAGAIN) {
      wait(want_read, deadline, timeout_, "recv");
    } else if (errno != EINTR) {
      throw_errno(errno, "recv");
    }
  }
}

std::string socket::recv(std::size_t max_bytes, int flags) {
  std::string data(max_bytes, '\0');
  data.resize(recv_into(data, flags));
  return data;
}

std::size_t socket::send(std::string_view data, int flags) {
  require("send");
  if (data.empty()) return 0;
  const auto deadline = deadline_of(timeout_);
  for (;;) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), flags | MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EAGAIN) {
      wait(want_write, deadline, timeout_, "send");
    } else if (errno != EINTR) {
      throw_errno(errno, "send");
    }
  }
}

void socket::sendall(std::string_view data, int flags) {
  require("sendall");
  const auto deadline = deadline_of(timeout_);  // one deadline for the whole call
  while (!data.empty()) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), flags | MSG_NOSIGNAL);
    if (n >= 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (errno == EAGAIN) {
      wait(want_write, deadline, timeout_, "sendall");
    } else if (errno != EINTR) {
      throw_errno(errno, "sendall");
    }
  }
}

std::size_t socket::recvfrom_into(std::span<char> buffer, address& from, int flags) {
  require("recvfrom");
  const auto deadline = deadline_of(timeout_);
  for (;;) {
    socklen_t length = address::capacity();
    const ssize_t n = ::recvfrom(fd_, buffer.data(), buffer.size(), flags, from.data(), &length);
    if (n >= 0) {
      from.resize(length);
      return static_cast<std::size_t>(n);
    }
    if (errno == EAGAIN) {
      wait(want_read, deadline, timeout_, "recvfrom");
    } else if (errno != EINTR) {
      throw_errno(errno, "recvfrom");
    }
  }
}

std::pair<std::string, address> socket::recvfrom(std::size_t max_bytes, int flags) {
  std::pair<std::string, address> result{std::string(max_bytes, '\0'), address{}};
  result.first.resize(recvfrom_into(result.first, result.second, flags));
  return result;
}

std::size_t socket::sendto(std::string_view data, const address& to, int flags) {
  require("sendto");
  const auto deadline = deadline_of(timeout_);
  for (;;) {
    const ssize_t n = ::sendto(fd_, data.data(), data.size(), flags | MSG_NOSIGNAL, to.data(), to.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EAGAIN) {
      wait(want_write, deadline, timeout_, "sendto");
    } else if (errno != EINTR) {
      throw_errno(errno, "sendto", to.to_string());
    }
  }
}

void socket::shutdown(int how) {
  if (::shutdown(require("shutdown"), how) != 0) throw_errno(errno, "shutdown");
}

void socket::close() {
  watched_ = drained_ = false;
  if (fd_ < 0) return;
  close_fd(std::exchange(fd_, -1));
}

void socket::set_option(int level, int name, int value) {
  if (::setsockopt(require("setsockopt"), level, name, &value, sizeof value) != 0)
    throw_errno(errno, "setsockopt");
}

int socket::option(int level, int name) const {
  int value = 0;
  socklen_t length = sizeof value;
  if (::getsockopt(require("getsockopt"), level, name, &value, &length) != 0)
    throw_errno(errno, "getsockopt");
  return value;
}

namespace {
using name_query = int (*)(int, sockaddr*, socklen_t*);

address query_address(int fd, name_query query, const char* what) {
  address result;
  socklen_t length = address::capacity();
  if (query(fd, result.data(), &length) != 0) throw_errno(errno, what);
  result.resize(length);
  return result;
}
}  // namespace

address socket::local_address() const {
  return query_address(require("getsockname"), ::getsockname, "getsockname");
}

address socket::peer_address() const {
  return query_address(require("getpeername"), ::getpeername, "getpeername");
}

namespace {

socket connect_to_first(std::string_view host, std::uint16_t port, wait_time timeout, const address* source) {
  const std::vector<address_info> candidates =
      getaddrinfo(host, std::to_string(port), {.family = AF_UNSPEC, .socktype = SOCK_STREAM});
  std::exception_ptr last_error;
  for (const address_info& candidate : candidates) {
    if (source != nullptr && candidate.family != source->family()) continue;
    try {
      socket s(candidate.family, candidate.socktype, candidate.protocol);
      if (source != nullptr) s.bind(*source);
      s.set_timeout(timeout);
      s.connect(candidate.address);
      return s;
    } catch (const std::system_error&) {
      last_error = std::current_exception();
    } catch (const timeout_error&) {
      last_error = std::current_exception();
    }
  }
  if (last_error) std::rethrow_exception(last_error);
  throw std::system_error(
      EADDRNOTAVAIL, std::generic_category(),
      "greenev: create_connection: no address for \"" + std::string(host) + "\"" +
          (source != nullptr ? " of the source's family (" + source->to_string() + ")" : ""));
}

}  // namespace

socket create_connection(std::string_view host, std::uint16_t port, wait_time timeout) {
  return connect_to_first(host, port, timeout, nullptr);
}

socket create_connection(std::string_view host, std::uint16_t port, wait_time timeout,
                         const address& source) {
  return connect_to_first(host, port, timeout, &source);
}

}  // namespace greenev
