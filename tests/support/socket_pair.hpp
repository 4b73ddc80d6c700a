// tests/support/socket_pair.hpp — a connected, non-blocking AF_UNIX stream
// socket pair, closed (through greenev::close_fd) when it goes away.
//
//   greenev::testing::socket_pair pair;
//   pair.send_byte();                      // fds[1] -> fds[0]
//   EXPECT_TRUE(greenev::wait_read(pair.fds[0], 1.0));
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <greenev/io.hpp>

namespace greenev::testing {

struct socket_pair {
  int fds[2] = {-1, -1};

  socket_pair() {
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
      throw std::system_error(errno, std::generic_category(), "socketpair");
    }
  }
  socket_pair(const socket_pair&) = delete;
  socket_pair& operator=(const socket_pair&) = delete;
  ~socket_pair() {
    for (int& fd : fds) close(fd);
  }

  // Closes one end now (waking greenlets that wait on it); -1 afterwards.
  void close(int& fd) noexcept {
    if (fd < 0) return;
    greenev::cancel_wait(fd);
    ::close(fd);
    fd = -1;
  }

  // Writes one byte from fds[1] to fds[0].
  void send_byte() const {
    const char byte = 'x';
    if (::send(fds[1], &byte, 1, MSG_NOSIGNAL) != 1)
      throw std::system_error(errno, std::generic_category(), "send");
  }

  // Fills fds[1]'s send buffer (and fds[0]'s receive buffer) until writes would block.
  void fill() const {
    static const char chunk[4096] = {};
    while (::send(fds[1], chunk, sizeof chunk, MSG_NOSIGNAL) > 0) {
    }
  }

  // Reads everything pending on fds[0]; returns how many bytes.
  std::size_t drain() const {
    char chunk[4096];
    std::size_t total = 0;
    for (ssize_t n; (n = ::recv(fds[0], chunk, sizeof chunk, 0)) > 0;) total += static_cast<std::size_t>(n);
    return total;
  }
};

}  // namespace greenev::testing
