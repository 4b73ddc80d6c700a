// patch_socket(): plain POSIX socket code in greenlets parks only its greenlet,
// keeps libc's contract (-1/errno, partial IO, the user's O_NONBLOCK and
// SO_RCVTIMEO), and passes through where it must. Each TEST is its own
// process (ctest) and patches at its start.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <greenev/event.hpp>
#include <greenev/monkey.hpp>
#include <greenev/task.hpp>

#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::testing::since;

class patch_socket_test : public greenev::testing::hub_test {
 protected:
  void SetUp() override {
    greenev::monkey::patch_all();
    hub_test::SetUp();
  }
};

// A blocking TCP listener on 127.0.0.1, port chosen by the kernel, made with
// plain POSIX calls.
int listen_loopback(int& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(fd, 128), 0);
  socklen_t length = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length);
  port = ntohs(a.sin_port);
  return fd;
}

int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A blocking socketpair, made inside the greenlet world (so greenev manages it).
struct blocking_pair {
  int fds[2] = {-1, -1};
  blocking_pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0); }
  ~blocking_pair() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
};

TEST_F(patch_socket_test, blocking_client_and_server_greenlets_interleave) {
  int port = 0;
  const int listener = listen_loopback(port);
  auto server = greenev::spawn([&] {
    std::vector<greenev::basic_task> handlers;
    for (int i = 0; i < 20; ++i) {
      const int connection = ::accept(listener, nullptr, nullptr);
      ASSERT_GE(connection, 0);
      handlers.push_back(greenev::spawn([connection] {
        char buffer[256];
        for (;;) {
          const ssize_t n = ::recv(connection, buffer, sizeof buffer, 0);
          if (n <= 0) break;
          ASSERT_EQ(::send(connection, buffer, static_cast<size_t>(n), 0), n);
        }
        ::close(connection);
      }));
    }
    greenev::joinall(handlers);
  });
  std::vector<greenev::basic_task> clients;
  int echoed = 0;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(greenev::spawn([&, i] {
      const int fd = connect_loopback(port);
      ASSERT_GE(fd, 0);
      for (int round = 0; round < 10; ++round) {
        const std::string message = "client " + std::to_string(i) + " round " + std::to_string(round);
        ASSERT_EQ(::write(fd, message.data(), message.size()), static_cast<ssize_t>(message.size()));
        std::string reply(message.size(), '\0');
        std::size_t got = 0;
        while (got < reply.size()) {
          const ssize_t n = ::read(fd, reply.data() + got, reply.size() - got);
          ASSERT_GT(n, 0);
          got += static_cast<std::size_t>(n);
        }
        ASSERT_EQ(reply, message);
        ++echoed;
      }
      ::close(fd);
    }));
  }
  greenev::joinall(clients);
  server.join();
  EXPECT_EQ(echoed, 200);
  ::close(listener);
}

TEST_F(patch_socket_test, close_wakes_a_greenlet_blocked_in_recv_with_ebadf) {
  blocking_pair pair;
  ssize_t result = 0;
  int error = 0;
  auto reader = greenev::spawn([&] {
    char c;
    result = ::recv(pair.fds[0], &c, 1, 0);
    error = errno;
  });
  greenev::sleep(0.02);
  EXPECT_FALSE(reader.ready());
  EXPECT_EQ(::close(pair.fds[0]), 0);
  pair.fds[0] = -1;
  reader.join();
  EXPECT_EQ(result, -1);
  EXPECT_EQ(error, EBADF);
}

TEST_F(patch_socket_test, user_non_blocking_fds_get_eagain_and_f_getfl_shows_the_users_flags) {
  blocking_pair pair;
  const int fd = pair.fds[0];
  char c;
  // greenev made the kernel fd non-blocking; the user still sees a blocking fd.
  EXPECT_EQ(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  ASSERT_EQ(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
  EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  errno = 0;
  EXPECT_EQ(::recv(fd, &c, 1, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(::read(fd, &c, 1), -1);
  EXPECT_EQ(errno, EAGAIN);
  // Back to blocking with ioctl(FIONBIO): the view changes, the kernel fd stays non-blocking.
  int off = 0;
  ASSERT_EQ(::ioctl(fd, FIONBIO, &off), 0);
  EXPECT_EQ(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  auto writer = greenev::spawn([&] {
    greenev::sleep(0.02);
    EXPECT_EQ(::write(pair.fds[1], "x", 1), 1);
  });
  EXPECT_EQ(::recv(fd, &c, 1, 0), 1);  // blocks cooperatively until the writer runs
  writer.join();
}

TEST_F(patch_socket_test, so_rcvtimeo_is_honoured_with_eagain_while_others_run) {
  blocking_pair pair;
  // 1 s: the ticker's three 10 ms sleeps, each woken late on a loaded
  // machine, still end long before it.
  timeval limit{1, 0};
  ASSERT_EQ(::setsockopt(pair.fds[0], SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit), 0);
  int ticks = 0;
  auto ticker = greenev::spawn([&] {
    for (;;) {
      greenev::sleep(0.01);
      ++ticks;
    }
  });
  const auto start = std::chrono::steady_clock::now();
  char c;
  errno = 0;
  EXPECT_EQ(::recv(pair.fds[0], &c, 1, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_GE(since(start), 950ms);
  EXPECT_LT(since(start), 3000ms);
  EXPECT_GE(ticks, 3);
  ticker.kill();
}

TEST_F(patch_socket_test, dup_fds_work_and_share_the_users_view) {
  blocking_pair pair;
  const int copy = ::dup(pair.fds[0]);
  ASSERT_GE(copy, 0);
  const int copy2 = ::fcntl(pair.fds[0], F_DUPFD_CLOEXEC, 100);
  ASSERT_GE(copy2, 100);
  const int copy3 = ::dup2(pair.fds[0], 200);
  ASSERT_EQ(copy3, 200);
  for (const int fd : {copy, copy2, copy3}) {
    auto writer = greenev::spawn([&] {
      greenev::sleep(0.01);
      EXPECT_EQ(::write(pair.fds[1], "y", 1), 1);
    });
    char c = 0;
    EXPECT_EQ(::read(fd, &c, 1), 1);
    EXPECT_EQ(c, 'y');
    EXPECT_EQ(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    writer.join();
    ::close(fd);
  }
}

TEST_F(patch_socket_test, regular_files_pass_through) {
  char path[] = "/tmp/greenev_patch_XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "hello", 5), 5);
  ASSERT_EQ(::lseek(fd, 0, SEEK_SET), 0);
  char buffer[8] = {};
  EXPECT_EQ(::read(fd, buffer, sizeof buffer), 5);
  EXPECT_STREQ(buffer, "hello");
  EXPECT_EQ(::read(fd, buffer, sizeof buffer), 0);  // end of file, no wait
  EXPECT_EQ(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  ::close(fd);
  ::unlink(path);
}

TEST_F(patch_socket_test, a_plain_thread_blocks_in_libc_even_on_a_managed_fd) {
  blocking_pair pair;
  char c = 0;
  auto writer = greenev::spawn([&] { EXPECT_EQ(::write(pair.fds[1], "z", 1), 1); });
  writer.join();
  EXPECT_EQ(::read(pair.fds[0], &c, 1), 1);  // greenev now manages fds[0]
  ssize_t got = 0;
  std::thread plain([&] {
    // No hub here: a blocking read must really block (not report EAGAIN).
    got = ::read(pair.fds[0], &c, 1);
  });
  std::this_thread::sleep_for(30ms);  // patched: lets the thread start and block
  EXPECT_EQ(::write(pair.fds[1], "w", 1), 1);
  plain.join();
  EXPECT_EQ(got, 1);
  EXPECT_EQ(c, 'w');
}

TEST_F(patch_socket_test, large_writes_complete_while_the_reader_drains) {
  blocking_pair pair;
  const std::string data(4 << 20, 'q');
  std::size_t received = 0;
  auto reader = greenev::spawn([&] {
    std::vector<char> buffer(65536);
    while (received < data.size()) {
      const ssize_t n = ::read(pair.fds[1], buffer.data(), buffer.size());
      ASSERT_GT(n, 0);
      received += static_cast<std::size_t>(n);
    }
  });
  EXPECT_EQ(::write(pair.fds[0], data.data(), data.size()), static_cast<ssize_t>(data.size()));
  reader.join();
  EXPECT_EQ(received, data.size());
}

TEST_F(patch_socket_test, connect_refused_keeps_errno) {
  int port = 0;
  const int listener = listen_loopback(port);
  ::close(listener);  // nobody listens on `port` now
  errno = 0;
  EXPECT_EQ(connect_loopback(port), -1);
  EXPECT_EQ(errno, ECONNREFUSED);
}

TEST_F(patch_socket_test, so_sndtimeo_bounds_a_connect_with_einprogress_while_others_run) {
  // A listener with a full backlog (listen(0), nobody accepting) drops new
  // SYNs on Linux, so a connect to it hangs: the loopback way to make one wait.
  int port = 0;
  const int listener = listen_loopback(port);
  ASSERT_EQ(::listen(listener, 0), 0);
  std::vector<int> queued;
  int ticks = 0;
  auto ticker = greenev::spawn([&] {
    for (int i = 0; i < 5; ++i) {
      greenev::sleep(0.02);
      ++ticks;
    }
  });
  bool timed_out = false;
  for (int i = 0; i < 16 && !timed_out; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    // 1 s: the ticker's five 20 ms sleeps, each woken late on a loaded
    // machine, still end long before it.
    const timeval limit{1, 0};
    ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit), 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const auto start = std::chrono::steady_clock::now();
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      queued.push_back(fd);
      continue;
    }
    EXPECT_EQ(errno, EINPROGRESS) << "Linux reports an expired SO_SNDTIMEO connect as EINPROGRESS";
    EXPECT_GE(since(start), 900ms);
    EXPECT_LT(since(start), 3s);
    EXPECT_EQ(ticks, 5) << "the connect blocked the thread: the ticker did not run meanwhile";
    timed_out = true;
    ::close(fd);
  }
  EXPECT_TRUE(timed_out) << "the kernel kept accepting connections into a full backlog";
  ticker.get(5.0);
  for (const int fd : queued) ::close(fd);
  ::close(listener);
}

TEST_F(patch_socket_test, a_kill_during_recv_fails_the_call_and_unwinds_after_the_c_code) {
  blocking_pair pair;
  bool destructor_ran = false;
  ssize_t first = 0;
  ssize_t second = 0;
  int first_error = 0;
  int second_error = 0;
  auto victim = greenev::spawn([&] {
    struct flag_on_exit {
      bool& flag;
      ~flag_on_exit() { flag = true; }
    } guard{destructor_ran};
    greenev::monkey::blocking_call([&] {
      char c;
      first = ::recv(pair.fds[0], &c, 1, 0);
      first_error = errno;
      second = ::read(pair.fds[0], &c, 1);  // fails at once: the greenlet is doomed
      second_error = errno;
    });
  });
  greenev::sleep(0.02);
  victim.kill();
  EXPECT_EQ(first, -1);
  EXPECT_EQ(first_error, ECANCELED);
  EXPECT_EQ(second, -1);
  EXPECT_EQ(second_error, ECANCELED);
  EXPECT_TRUE(destructor_ran);
  EXPECT_TRUE(victim.killed());
}

TEST_F(patch_socket_test, two_greenlets_may_block_reading_one_socket) {
  blocking_pair pair;
  int got = 0;
  std::vector<greenev::basic_task> readers;
  for (int i = 0; i < 2; ++i) {
    readers.push_back(greenev::spawn([&] {
      char c;
      if (::recv(pair.fds[0], &c, 1, 0) == 1) ++got;
    }));
  }
  greenev::sleep(0.02);
  EXPECT_EQ(::write(pair.fds[1], "ab", 2), 2);
  greenev::joinall(readers, 2.0);
  EXPECT_EQ(got, 2);
}

TEST_F(patch_socket_test, pipes_made_after_patching_are_cooperative) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  auto writer = greenev::spawn([&] {
    greenev::sleep(0.02);
    EXPECT_EQ(::write(fds[1], "p", 1), 1);
  });
  char c = 0;
  EXPECT_EQ(::read(fds[0], &c, 1), 1);  // would deadlock the thread if it blocked in libc
  EXPECT_EQ(c, 'p');
  writer.join();
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace

namespace {

TEST_F(patch_socket_test, threads_with_their_own_hubs_use_patched_calls_at_once) {
  // Per-fd records and lazily resolved libc functions are shared by every thread.
  std::vector<std::thread> threads;
  std::atomic<int> echoed{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::vector<greenev::basic_task> tasks;
      for (int g = 0; g < 10; ++g) {
        tasks.push_back(greenev::spawn([&] {
          int fds[2];
          ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
          auto peer = greenev::spawn([fd = fds[1]] {
            char buffer[16];
            for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) {
              ASSERT_EQ(::write(fd, buffer, static_cast<size_t>(n)), n);
            }
          });
          for (int round = 0; round < 50; ++round) {
            char c = static_cast<char>('a' + round % 26);
            ASSERT_EQ(::write(fds[0], &c, 1), 1);
            char back = 0;
            ASSERT_EQ(::read(fds[0], &back, 1), 1);
            ASSERT_EQ(back, c);
            ++echoed;
          }
          ::shutdown(fds[0], SHUT_WR);
          peer.join();
          ::close(fds[0]);
          ::close(fds[1]);
        }));
      }
      greenev::joinall(tasks);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(echoed.load(), 4 * 10 * 50);
}

TEST_F(patch_socket_test, accept4_with_sock_nonblock_keeps_the_users_view) {
  int port = 0;
  const int listener = listen_loopback(port);
  // The client closes only once the recv below is done (an event, not a
  // sleep a stall could outlast: recv would then see the end of stream).
  greenev::event checked;
  auto client = greenev::spawn([&] {
    const int fd = connect_loopback(port);
    (void)checked.wait(10.0);
    ::close(fd);
  });
  const int connection = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
  ASSERT_GE(connection, 0);
  EXPECT_NE(::fcntl(connection, F_GETFL) & O_NONBLOCK, 0);
  char c;
  errno = 0;
  EXPECT_EQ(::recv(connection, &c, 1, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  checked.set();
  client.join();
  ::close(connection);
  ::close(listener);
}

}  // namespace

namespace {

TEST_F(patch_socket_test, writev_and_sendmsg_send_every_buffer_while_the_reader_drains) {
  blocking_pair pair;
  const std::string first(3 << 20, 'a');
  const std::string second(1 << 20, 'b');
  std::string received;
  auto reader = greenev::spawn([&] {
    std::vector<char> buffer(65536);
    while (received.size() < 2 * (first.size() + second.size())) {
      iovec one{buffer.data(), buffer.size()};
      const ssize_t n = ::readv(pair.fds[1], &one, 1);
      ASSERT_GT(n, 0);
      received.append(buffer.data(), static_cast<std::size_t>(n));
    }
  });
  iovec parts[2] = {{const_cast<char*>(first.data()), first.size()},
                    {const_cast<char*>(second.data()), second.size()}};
  const auto total = static_cast<ssize_t>(first.size() + second.size());
  EXPECT_EQ(::writev(pair.fds[0], parts, 2), total);
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = 2;
  EXPECT_EQ(::sendmsg(pair.fds[0], &message, 0), total);
  reader.join();
  EXPECT_EQ(received, first + second + first + second);
}

TEST_F(patch_socket_test, udp_recvfrom_waits_for_a_datagram) {
  const int a = ::socket(AF_INET, SOCK_DGRAM, 0);
  const int b = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(a, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(a, reinterpret_cast<sockaddr*>(&address), &length), 0);
  auto sender = greenev::spawn([&] {
    greenev::sleep(0.02);
    EXPECT_EQ(::sendto(b, "ping", 4, 0, reinterpret_cast<sockaddr*>(&address), sizeof address), 4);
  });
  char buffer[16];
  sockaddr_in from{};
  socklen_t from_length = sizeof from;
  EXPECT_EQ(::recvfrom(a, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &from_length), 4);
  EXPECT_EQ(std::string(buffer, 4), "ping");
  sender.join();
  ::close(a);
  ::close(b);
}

}  // namespace

namespace {

TEST_F(patch_socket_test, recv_with_msg_waitall_waits_for_every_byte) {
  blocking_pair pair;
  auto writer = greenev::spawn([&] {
    for (const char* part : {"ab", "cd", "ef"}) {
      greenev::sleep(0.01);
      EXPECT_EQ(::write(pair.fds[1], part, 2), 2);
    }
  });
  char buffer[6];
  EXPECT_EQ(::recv(pair.fds[0], buffer, sizeof buffer, MSG_WAITALL), 6);
  EXPECT_EQ(std::string(buffer, 6), "abcdef");
  writer.join();
}

}  // namespace
