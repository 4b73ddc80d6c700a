// patch_socket(): a patched call that a kill or an outer timeout cuts short
// poisons its fd. The C code that made it is left mid-protocol (a request
// sent, its answer unread), so every later data call on the fd fails with
// ECONNABORTED and poll/select report it dead, until close() — never a
// silently desynchronised connection. Each TEST is its own process (ctest)
// and patches at its start.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <thread>

#include <greenev/monkey.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::testing::since;

class patch_poison_test : public greenev::testing::hub_test {
 protected:
  void SetUp() override {
    greenev::monkey::patch_all();
    hub_test::SetUp();
  }
};

// A blocking socketpair made after patching (so greenev manages it).
struct blocking_pair {
  int fds[2] = {-1, -1};
  blocking_pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0); }
  blocking_pair(const blocking_pair&) = delete;
  blocking_pair& operator=(const blocking_pair&) = delete;
  ~blocking_pair() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
};

// Runs `f` (C-style code making patched calls) under an outer timeout of
// `seconds`, and checks that the timeout reached the caller.
void interrupt_by_timeout(double seconds, const std::function<void()>& f) {
  EXPECT_THROW(greenev::with_timeout(seconds, [&] { greenev::monkey::blocking_call(f); }),
               greenev::timeout_error);
  EXPECT_FALSE(greenev::monkey::interrupted());
}

// Every data call on `fd` fails at once with ECONNABORTED, and poll says so.
void expect_dead(int fd) {
  char c = 'x';
  iovec one{&c, 1};
  msghdr message{};
  message.msg_iov = &one;
  message.msg_iovlen = 1;
  const auto start = std::chrono::steady_clock::now();
  const std::pair<const char*, std::function<ssize_t()>> calls[] = {
      {"recv", [&] { return ::recv(fd, &c, 1, 0); }},
      {"recv(MSG_DONTWAIT)", [&] { return ::recv(fd, &c, 1, MSG_DONTWAIT); }},
      {"read", [&] { return ::read(fd, &c, 1); }},
      {"readv", [&] { return ::readv(fd, &one, 1); }},
      {"recvmsg", [&] { return ::recvmsg(fd, &message, 0); }},
      {"recvfrom", [&] { return ::recvfrom(fd, &c, 1, 0, nullptr, nullptr); }},
      {"send", [&] { return ::send(fd, &c, 1, 0); }},
      {"write", [&] { return ::write(fd, &c, 1); }},
      {"writev", [&] { return ::writev(fd, &one, 1); }},
      {"sendmsg", [&] { return ::sendmsg(fd, &message, 0); }},
      {"sendto", [&] { return ::sendto(fd, &c, 1, 0, nullptr, 0); }},
  };
  // A call that waits instead of failing is cut short after a second.
  const auto bounded = [](const char* name, const std::function<ssize_t()>& call) -> ssize_t {
    try {
      return greenev::with_timeout(1.0, [&] { return greenev::monkey::blocking_call(call); });
    } catch (const greenev::timeout_error&) {
      ADD_FAILURE() << name << " waited on a poisoned fd";
      return -2;
    }
  };
  for (const auto& [name, call] : calls) {
    errno = 0;
    EXPECT_EQ(bounded(name, call), -1) << name << " on a poisoned fd";
    EXPECT_EQ(errno, ECONNABORTED) << name;
  }
  pollfd entry{fd, POLLIN, 0};
  EXPECT_EQ(bounded("poll", [&] { return ::poll(&entry, 1, 5000); }), 1);
  EXPECT_EQ(entry.revents & (POLLERR | POLLHUP | POLLIN), POLLERR | POLLHUP | POLLIN);
  EXPECT_LT(since(start), 5s);
}

// `fd` carries data both ways with its peer `peer`.
void expect_alive(int fd, int peer) {
  char c = 0;
  EXPECT_EQ(::write(peer, "a", 1), 1);
  EXPECT_EQ(::recv(fd, &c, 1, 0), 1) << "errno " << errno;
  EXPECT_EQ(c, 'a');
  EXPECT_EQ(::send(fd, "b", 1, 0), 1) << "errno " << errno;
  EXPECT_EQ(::read(peer, &c, 1), 1);
  EXPECT_EQ(c, 'b');
}

TEST_F(patch_poison_test, a_timeout_during_recv_poisons_the_fd_until_close) {
  blocking_pair pair;
  const int fd = pair.fds[0];
  interrupt_by_timeout(0.05, [&] {
    char c;
    EXPECT_EQ(::recv(fd, &c, 1, 0), -1);
    EXPECT_EQ(errno, ECANCELED);
  });
  // Data arriving later does not revive it: the caller gave up on the answer.
  EXPECT_EQ(::write(pair.fds[1], "late", 4), 4);
  expect_dead(fd);
  // The peer is not poisoned: only the side whose call was cut short.
  EXPECT_EQ(::write(pair.fds[1], "x", 1), 1);

  // close() clears it: the next fd with the same number works.
  EXPECT_EQ(::close(fd), 0);
  pair.fds[0] = -1;
  int fresh[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fresh), 0);
  EXPECT_TRUE(fresh[0] == fd || fresh[1] == fd) << "the number was not reused";
  expect_alive(fresh[0], fresh[1]);
  expect_alive(fresh[1], fresh[0]);
  ::close(fresh[0]);
  ::close(fresh[1]);
}

TEST_F(patch_poison_test, a_kill_during_read_poisons_the_fd_for_every_greenlet_and_thread) {
  blocking_pair pair;
  const int fd = pair.fds[0];
  auto victim = greenev::spawn([&] {
    greenev::monkey::blocking_call([&] {
      char c;
      (void)::read(fd, &c, 1);
    });
  });
  greenev::sleep(0.02);
  victim.kill();
  EXPECT_TRUE(victim.killed());
  expect_dead(fd);
  std::thread plain([&] {  // no hub here: the call passes through, the poison still holds
    char c;
    errno = 0;
    EXPECT_EQ(::recv(fd, &c, 1, 0), -1);
    EXPECT_EQ(errno, ECONNABORTED);
  });
  plain.join();
}

TEST_F(patch_poison_test, an_interrupted_poll_poisons_every_fd_it_waited_on) {
  blocking_pair first;
  blocking_pair second;
  interrupt_by_timeout(0.05, [&] {
    pollfd entries[] = {{first.fds[0], POLLIN, 0}, {second.fds[0], POLLIN, 0}};
    EXPECT_EQ(::poll(entries, 2, -1), -1);
    EXPECT_EQ(errno, ECANCELED);
  });
  expect_dead(first.fds[0]);
  expect_dead(second.fds[0]);
  // select reports a poisoned fd readable and writable at once, as Linux does
  // a reset socket, so the caller goes on to meet the error.
  fd_set read_set;
  fd_set write_set;
  FD_ZERO(&read_set);
  FD_ZERO(&write_set);
  FD_SET(first.fds[0], &read_set);
  FD_SET(first.fds[0], &write_set);
  timeval forever_enough{10, 0};
  EXPECT_EQ(::select(first.fds[0] + 1, &read_set, &write_set, nullptr, &forever_enough), 2);
  EXPECT_TRUE(FD_ISSET(first.fds[0], &read_set));
  EXPECT_TRUE(FD_ISSET(first.fds[0], &write_set));
  // A poll over a healthy fd and a dead one answers at once, with both.
  EXPECT_EQ(::write(first.fds[1], "y", 1), 1);
  pollfd mixed[] = {{first.fds[1], POLLOUT, 0}, {second.fds[0], POLLIN, 0}};
  EXPECT_EQ(::poll(mixed, 2, 5000), 2);
  EXPECT_EQ(mixed[0].revents, POLLOUT);
}

TEST_F(patch_poison_test, calls_failed_at_once_by_a_pending_interruption_poison_their_fd_too) {
  blocking_pair waited;
  blocking_pair next;
  interrupt_by_timeout(0.05, [&] {
    char c;
    EXPECT_EQ(::recv(waited.fds[0], &c, 1, 0), -1);
    // The C code goes on, e.g. to send its next request: abandoned as well.
    EXPECT_EQ(::send(next.fds[0], "q", 1, 0), -1);
    EXPECT_EQ(errno, ECANCELED);
  });
  expect_dead(waited.fds[0]);
  expect_dead(next.fds[0]);
}

TEST_F(patch_poison_test, a_copy_shares_the_poison_and_dup2_onto_the_number_clears_it) {
  blocking_pair dead;
  blocking_pair healthy;
  interrupt_by_timeout(0.05, [&] {
    char c;
    (void)::recv(dead.fds[0], &c, 1, 0);
  });
  const int copy = ::dup(dead.fds[0]);
  ASSERT_GE(copy, 0);
  expect_dead(copy);  // the same connection
  const int copy2 = ::fcntl(dead.fds[0], F_DUPFD_CLOEXEC, 0);
  ASSERT_GE(copy2, 0);
  expect_dead(copy2);
  ::close(copy2);
  // dup2 of a healthy socket onto the poisoned number: a different connection.
  ASSERT_EQ(::dup2(healthy.fds[0], copy), copy);
  expect_alive(copy, healthy.fds[1]);
  ::close(copy);
  expect_dead(dead.fds[0]);  // the original stays dead until closed
}

TEST_F(patch_poison_test, a_number_reused_behind_our_back_does_not_inherit_the_poison) {
  blocking_pair pair;
  const int fd = pair.fds[0];
  interrupt_by_timeout(0.05, [&] {
    char c;
    (void)::recv(fd, &c, 1, 0);
  });
  // Closed and reopened where greenev cannot see it (a raw system call, as
  // libc's internals do): the new file is not the poisoned one.
  ASSERT_EQ(::syscall(SYS_close, fd), 0);
  const int reopened = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDWR, 0));
  ASSERT_EQ(reopened, fd);
  char c;
  EXPECT_EQ(::read(reopened, &c, 1), 0) << "errno " << errno;
  EXPECT_EQ(::write(reopened, "z", 1), 1) << "errno " << errno;
  pair.fds[0] = -1;
  ::close(reopened);
}

TEST_F(patch_poison_test, a_listener_is_never_poisoned) {
  const int listener = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_un where{};
  where.sun_family = AF_UNIX;
  const std::string name = "greenev-poison-test-" + std::to_string(::getpid());
  std::copy(name.begin(), name.end(), where.sun_path + 1);  // abstract: nothing to clean up
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&where), length), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  // An interrupted accept loses nothing: the next connection is still served.
  interrupt_by_timeout(0.05, [&] { EXPECT_EQ(::accept(listener, nullptr, nullptr), -1); });
  const int client = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&where), length), 0);
  const int served = ::accept(listener, nullptr, nullptr);
  EXPECT_GE(served, 0) << "errno " << errno;
  if (served >= 0) {
    expect_alive(served, client);
    ::close(served);
  }
  ::close(client);
  ::close(listener);
}

TEST_F(patch_poison_test, calls_that_complete_are_not_poisoned) {
  blocking_pair pair;
  // A timeout that does not fire, and one that fires elsewhere (a sleep),
  // leave the socket alone.
  greenev::with_timeout(5.0, [&] {
    greenev::monkey::blocking_call([&] {
      EXPECT_EQ(::write(pair.fds[1], "k", 1), 1);
      char c;
      EXPECT_EQ(::recv(pair.fds[0], &c, 1, 0), 1);
    });
  });
  interrupt_by_timeout(0.05, [] { ::usleep(2'000'000); });
  expect_alive(pair.fds[0], pair.fds[1]);
}

}  // namespace
