// Tests for greenev/io.hpp: wait_read / wait_write on real sockets (a socket
// pair and TCP on 127.0.0.1), one waiter per direction, close under a waiter
// (EBADF, never a hang, no watcher left), bad fds, and the cooperative poll.
// Timeouts, outer timeouts and kills are covered for every wait by
// blocking_contract_test.
#include <greenev/io.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/hub.hpp>
#include <greenev/task.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/socket_pair.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::spawn;
using greenev::testing::since;
using greenev::testing::socket_pair;
using greenev::testing::throws_errno;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;

using io_wait = greenev::testing::hub_test;
using io_close = greenev::testing::hub_test;
using io_poll = greenev::testing::hub_test;

TEST_F(io_wait, wait_read_returns_when_another_greenlet_writes) {
  socket_pair pair;
  std::vector<std::string> order;
  auto reader = spawn([&] {
    order.push_back("waiting");
    EXPECT_TRUE(greenev::wait_read(pair.fds[0]));
    order.push_back("readable");
    EXPECT_EQ(pair.drain(), 1u);
  });
  auto writer = spawn([&] {
    greenev::sleep(0.01);
    order.push_back("writing");
    pair.send_byte();
  });
  reader.get(5.0);
  writer.get(5.0);
  EXPECT_EQ(order, (std::vector<std::string>{"waiting", "writing", "readable"}));
}

TEST_F(io_wait, wait_read_times_out_with_false_after_about_the_timeout) {
  socket_pair pair;
  const auto start = steady::now();
  EXPECT_FALSE(greenev::wait_read(pair.fds[0], 0.05));
  EXPECT_GE(since(start), 45ms);
  EXPECT_LT(since(start), 2s);
}

TEST_F(io_wait, zero_timeout_only_polls) {
  socket_pair pair;
  EXPECT_FALSE(greenev::wait_read(pair.fds[0], 0.0));
  pair.send_byte();
  EXPECT_TRUE(greenev::wait_read(pair.fds[0], 1.0));
}

TEST_F(io_wait, wait_write_on_a_fresh_socket_is_immediately_ready) {
  socket_pair pair;
  EXPECT_TRUE(greenev::wait_write(pair.fds[1], 1.0));
}

TEST_F(io_wait, wait_write_waits_for_a_full_buffer_to_drain_over_tcp) {
  // A real TCP connection on loopback: the writer fills the kernel buffers and
  // must wait until the reader greenlet drains them.
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT_GE(client, 0);
  const int rc = ::connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address);
  ASSERT_TRUE(rc == 0 || errno == EINPROGRESS);
  ASSERT_TRUE(greenev::wait_write(client, 5.0));
  const int server = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  ASSERT_GE(server, 0);

  constexpr std::size_t total = 8u << 20;  // far more than loopback buffers hold
  std::size_t received = 0;
  auto reader = spawn([&] {
    std::vector<char> buffer(65536);
    while (received < total) {
      const ssize_t n = ::recv(server, buffer.data(), buffer.size(), 0);
      if (n > 0) {
        received += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EAGAIN) {
        ASSERT_TRUE(greenev::wait_read(server, 5.0));
      } else {
        FAIL() << "recv: " << n << " errno " << errno;
      }
    }
  });
  const std::vector<char> chunk(65536, 'y');
  std::size_t sent = 0;
  std::size_t waits = 0;
  while (sent < total) {
    const ssize_t n = ::send(client, chunk.data(), std::min(chunk.size(), total - sent), MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else {
      ASSERT_EQ(errno, EAGAIN);
      ASSERT_TRUE(greenev::wait_write(client, 5.0));
      ++waits;
    }
  }
  reader.get(10.0);
  EXPECT_EQ(received, total);
  EXPECT_GT(waits, 0u) << "the buffers never filled: the test proved nothing";
  for (const int fd : {client, server, listener}) greenev::close_fd(fd);
}

TEST_F(io_wait, a_second_reader_of_one_fd_is_an_error_but_a_writer_is_not) {
  socket_pair pair;
  auto first = spawn([&] { return greenev::wait_read(pair.fds[0], 5.0); });
  greenev::sleep(0.0);  // first is waiting now
  EXPECT_TRUE(throws_with<greenev::greenlet_error>([&] { greenev::wait_read(pair.fds[0], 5.0); },
                                                   "already waited on"));
  EXPECT_TRUE(greenev::wait_write(pair.fds[0], 1.0));  // the other direction is free
  pair.send_byte();
  EXPECT_TRUE(first.get(5.0));
}

TEST_F(io_wait, a_negative_fd_is_ebadf) {
  EXPECT_TRUE(throws_errno([] { greenev::wait_read(-1); }, EBADF, "bad fd -1"));
  EXPECT_TRUE(throws_errno([] { greenev::wait_write(-5, 1.0); }, EBADF, "bad fd -5"));
}

TEST_F(io_wait, an_fd_that_is_not_open_is_ebadf_not_a_hang) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);
  ::close(fds[1]);  // fds[0] is not open now (nothing else opens files in this test)
  const auto start = steady::now();
  EXPECT_TRUE(throws_errno([&] { greenev::wait_read(fds[0], 5.0); }, EBADF, "bad fd"));
  EXPECT_LT(since(start), 2s);
}

TEST_F(io_wait, waiting_in_the_hub_is_an_error) {
  socket_pair pair;
  bool threw = false;
  greenev::hub::current().run_callback([&] {
    threw = throws_with<greenev::greenlet_error>([&] { greenev::wait_read(pair.fds[0], 1.0); }, "hub");
  });
  greenev::sleep(0.0);
  EXPECT_TRUE(threw);
}

TEST_F(io_close, close_fd_wakes_a_waiting_reader_with_ebadf_at_once) {
  socket_pair pair;
  auto reader = spawn([&] { greenev::wait_read(pair.fds[0]); });  // no timer: one watcher
  greenev::sleep(0.0);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 1u);
  const auto start = steady::now();
  pair.close(pair.fds[0]);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u) << "the watcher must stop before the fd is reused";
  EXPECT_TRUE(throws_errno([&] { reader.get(5.0); }, EBADF, "closed in another greenlet"));
  EXPECT_LT(since(start), 2s);
}

TEST_F(io_close, cancel_wait_wakes_readers_writers_and_pollers_of_the_fd_only) {
  socket_pair pair;
  socket_pair other;
  pair.fill();
  auto reader = spawn([&] { greenev::wait_read(pair.fds[1], 10.0); });
  auto writer = spawn([&] { greenev::wait_write(pair.fds[1], 10.0); });
  auto poller = spawn([&] {
    pollfd entries[2] = {{other.fds[0], POLLIN, 0}, {pair.fds[1], POLLIN, 0}};
    greenev::poll(entries, 10.0);
  });
  auto bystander = spawn([&] { return greenev::wait_read(other.fds[1], 0.2); });
  greenev::sleep(0.0);
  EXPECT_EQ(greenev::cancel_wait(pair.fds[1]), 3u);
  for (auto* task : {&reader, &writer, &poller}) {
    EXPECT_TRUE(throws_errno([&] { task->get(5.0); }, EBADF, "closed in another greenlet"));
  }
  EXPECT_FALSE(bystander.get(5.0)) << "a wait on another fd must be untouched";
  EXPECT_EQ(greenev::cancel_wait(pair.fds[1]), 0u);
}

TEST_F(io_close, fd_number_reused_after_close_fd_gets_a_fresh_watcher) {
  auto pair = std::make_unique<socket_pair>();
  const int number = pair->fds[0];
  auto reader = spawn([&] { greenev::wait_read(number, 10.0); });
  greenev::sleep(0.0);
  pair.reset();  // closes both ends
  EXPECT_THROW(reader.get(5.0), std::system_error);
  socket_pair fresh;  // most likely reuses `number`
  const int reused = fresh.fds[0] == number ? fresh.fds[0] : fresh.fds[1];
  if (reused != number) GTEST_SKIP() << "the kernel did not reuse fd " << number;
  auto again = spawn([&] { return greenev::wait_read(number, 5.0); });
  greenev::sleep(0.0);
  if (reused == fresh.fds[0]) {
    fresh.send_byte();
  } else {
    const char byte = 'z';
    ASSERT_EQ(::send(fresh.fds[0], &byte, 1, 0), 1);
  }
  EXPECT_TRUE(again.get(5.0));
}

TEST_F(io_close, close_fd_reports_close_errors) {
  EXPECT_TRUE(throws_errno([] { greenev::close_fd(-1); }, EBADF, "close(-1)"));
}

TEST_F(io_poll, ready_entries_return_at_once_with_the_kernels_revents) {
  socket_pair pair;
  pair.send_byte();
  pollfd entries[3] = {{pair.fds[0], POLLIN | POLLOUT, 0}, {-1, POLLIN, 7}, {pair.fds[1], POLLIN, 0}};
  EXPECT_EQ(greenev::poll(entries, 0.0), 1u);
  EXPECT_EQ(entries[0].revents, POLLIN | POLLOUT);
  EXPECT_EQ(entries[1].revents, 0) << "negative fds are ignored";
  EXPECT_EQ(entries[2].revents, 0);
}

TEST_F(io_poll, waits_cooperatively_until_one_fd_is_ready) {
  socket_pair a;
  socket_pair b;
  bool other_ran = false;
  auto writer = spawn([&] {
    greenev::sleep(0.02);
    other_ran = true;
    b.send_byte();
  });
  pollfd entries[2] = {{a.fds[0], POLLIN, 0}, {b.fds[0], POLLIN, 0}};
  EXPECT_EQ(greenev::poll(entries, 5.0), 1u);
  EXPECT_TRUE(other_ran);
  EXPECT_EQ(entries[0].revents, 0);
  EXPECT_EQ(entries[1].revents, POLLIN);
  writer.get(1.0);
}

// More fds than poll keeps on the stack, woken by the last one, twice in a row
// (the second poll reuses nothing of the first).
TEST_F(io_poll, many_fds_wait_and_wake_on_the_last_one) {
  std::vector<std::unique_ptr<socket_pair>> pairs;
  std::vector<pollfd> entries;
  for (int i = 0; i < 9; ++i) {
    pairs.push_back(std::make_unique<socket_pair>());
    entries.push_back({pairs.back()->fds[0], POLLIN, 0});
  }
  for (int round = 0; round < 2; ++round) {
    auto writer = spawn([&] {
      greenev::sleep(0.01);
      pairs.back()->send_byte();
    });
    EXPECT_EQ(greenev::poll(entries, 5.0), 1u);
    EXPECT_EQ(entries.back().revents, POLLIN);
    EXPECT_EQ(entries.front().revents, 0);
    writer.get(1.0);
    char byte = 0;
    ASSERT_EQ(::read(pairs.back()->fds[0], &byte, 1), 1);
    for (pollfd& entry : entries) entry.revents = 0;
  }
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
}

TEST_F(io_poll, timeout_returns_zero) {
  socket_pair pair;
  pollfd entry{pair.fds[0], POLLIN, 0};
  const auto start = steady::now();
  EXPECT_EQ(greenev::poll({&entry, 1}, 0.05), 0u);
  EXPECT_GE(since(start), 45ms);
  EXPECT_EQ(entry.revents, 0);
}

TEST_F(io_poll, a_closed_fd_is_pollnval_like_the_kernel_says) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);
  ::close(fds[1]);
  pollfd entry{fds[0], POLLIN, 0};
  EXPECT_EQ(greenev::poll({&entry, 1}, 5.0), 1u);
  EXPECT_EQ(entry.revents, POLLNVAL);
}

TEST_F(io_poll, peer_hang_up_is_reported) {
  socket_pair pair;
  auto closer = spawn([&] {
    greenev::sleep(0.01);
    pair.close(pair.fds[1]);
  });
  pollfd entry{pair.fds[0], POLLIN, 0};
  EXPECT_EQ(greenev::poll({&entry, 1}, 5.0), 1u);
  EXPECT_TRUE(entry.revents & POLLHUP);
  closer.get(1.0);
}

}  // namespace
