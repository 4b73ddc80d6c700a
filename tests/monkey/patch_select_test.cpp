// patch_select(): poll, ppoll, select and pselect park only the calling
// greenlet, with libc's results (revents, fd_set bits, the time not slept).
// Each TEST is its own process (ctest) and patches at its start.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include <greenev/monkey.hpp>
#include <greenev/task.hpp>

#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::testing::since;

class patch_select_test : public greenev::testing::hub_test {
 protected:
  void SetUp() override {
    greenev::monkey::patch_all();
    hub_test::SetUp();
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  }
  void TearDown() override {
    for (const int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
    hub_test::TearDown();
  }
  int fds[2] = {-1, -1};
};

TEST_F(patch_select_test, ten_greenlets_polling_no_fds_sleep_concurrently) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<greenev::basic_task> tasks;
  for (int i = 0; i < 5; ++i) tasks.push_back(greenev::spawn([] { EXPECT_EQ(::poll(nullptr, 0, 200), 0); }));
  for (int i = 0; i < 5; ++i) {
    tasks.push_back(greenev::spawn([] {
      timeval t{0, 200'000};
      EXPECT_EQ(::select(0, nullptr, nullptr, nullptr, &t), 0);
      EXPECT_EQ(t.tv_sec, 0);
      EXPECT_EQ(t.tv_usec, 0);  // Linux writes back the time not slept
    }));
  }
  greenev::joinall(tasks);
  EXPECT_GE(since(start), 190ms);
  EXPECT_LT(since(start), 1500ms);  // one after another: 2 s
}

TEST_F(patch_select_test, poll_times_out_with_zero_and_wakes_on_data) {
  pollfd entry{fds[0], POLLIN, 0};
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(::poll(&entry, 1, 50), 0);
  EXPECT_GE(since(start), 45ms);
  EXPECT_EQ(entry.revents, 0);

  auto writer = greenev::spawn([&] {
    greenev::sleep(0.02);
    EXPECT_EQ(::write(fds[1], "x", 1), 1);
  });
  EXPECT_EQ(::poll(&entry, 1, -1), 1);
  EXPECT_EQ(entry.revents, POLLIN);
  writer.join();
}

TEST_F(patch_select_test, ready_fds_answer_without_a_switch) {
  ASSERT_EQ(::write(fds[1], "x", 1), 1);
  bool other_ran = false;
  auto other = greenev::spawn([&] { other_ran = true; });
  pollfd entries[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLOUT, 0}};
  EXPECT_EQ(::poll(entries, 2, 1000), 2);
  EXPECT_EQ(entries[0].revents, POLLIN);
  EXPECT_EQ(entries[1].revents, POLLOUT);
  fd_set read;
  FD_ZERO(&read);
  FD_SET(fds[0], &read);
  timeval t{1, 0};
  EXPECT_EQ(::select(fds[0] + 1, &read, nullptr, nullptr, &t), 1);
  EXPECT_TRUE(FD_ISSET(fds[0], &read));
  EXPECT_FALSE(other_ran) << "a ready poll/select switched";
  other.join();
}

TEST_F(patch_select_test, select_and_pselect_report_readiness_bits) {
  auto writer = greenev::spawn([&] {
    greenev::sleep(0.02);
    EXPECT_EQ(::write(fds[1], "x", 1), 1);
  });
  fd_set read;
  fd_set write;
  FD_ZERO(&read);
  FD_ZERO(&write);
  FD_SET(fds[0], &read);
  const int nfds = fds[0] + 1;
  EXPECT_EQ(::select(nfds, &read, nullptr, nullptr, nullptr), 1);
  EXPECT_TRUE(FD_ISSET(fds[0], &read));
  writer.join();

  char c;
  ASSERT_EQ(::read(fds[0], &c, 1), 1);
  FD_ZERO(&read);
  FD_SET(fds[0], &read);
  FD_SET(fds[1], &write);
  timespec t{0, 30'000'000};
  EXPECT_EQ(::pselect(fds[1] + 1, &read, &write, nullptr, &t, nullptr), 1);
  EXPECT_FALSE(FD_ISSET(fds[0], &read));
  EXPECT_TRUE(FD_ISSET(fds[1], &write));
}

TEST_F(patch_select_test, bad_fds_and_arguments_keep_libc_errors) {
  int bad[2];
  ASSERT_EQ(::pipe(bad), 0);
  ::close(bad[0]);
  ::close(bad[1]);
  fd_set read;
  FD_ZERO(&read);
  FD_SET(bad[0], &read);
  timeval t{1, 0};
  errno = 0;
  EXPECT_EQ(::select(bad[0] + 1, &read, nullptr, nullptr, &t), -1);
  EXPECT_EQ(errno, EBADF);
  pollfd entry{bad[0], POLLIN, 0};
  EXPECT_EQ(::poll(&entry, 1, 1000), 1);
  EXPECT_EQ(entry.revents, POLLNVAL);
  timeval negative{-1, 0};
  EXPECT_EQ(::select(0, nullptr, nullptr, nullptr, &negative), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(patch_select_test, ppoll_with_a_timespec) {
  pollfd entry{fds[0], POLLIN, 0};
  timespec t{0, 40'000'000};
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(::ppoll(&entry, 1, &t, nullptr), 0);
  EXPECT_GE(since(start), 35ms);
}

TEST_F(patch_select_test, close_during_poll_reports_pollnval) {
  int result = 0;
  short revents = 0;
  auto poller = greenev::spawn([&] {
    pollfd entry{fds[0], POLLIN, 0};
    result = ::poll(&entry, 1, 5000);
    revents = entry.revents;
  });
  greenev::sleep(0.02);
  ::close(fds[0]);
  fds[0] = -1;
  poller.join();
  EXPECT_EQ(result, 1);
  EXPECT_EQ(revents, POLLNVAL);
}

}  // namespace
