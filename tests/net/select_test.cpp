// Tests for greenev/select.hpp: readiness in each list, cooperative waiting,
// timeouts, hang-ups, out-of-band data, and the errors (bad fd, negative or
// NaN timeout).
#include <greenev/select.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/socket.hpp>
#include <greenev/task.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/socket_pair.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::select;
using greenev::testing::since;
using greenev::testing::socket_pair;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;
using fds = std::vector<int>;

using select_ready = greenev::testing::hub_test;
using select_errors = greenev::testing::hub_test;

TEST_F(select_ready, reports_each_list_in_order) {
  socket_pair a;
  socket_pair b;
  b.send_byte();
  const auto ready = select(fds{a.fds[0], b.fds[0]}, fds{a.fds[1]}, fds{a.fds[0]}, 0.0);
  EXPECT_EQ(ready.readable, fds{b.fds[0]});
  EXPECT_EQ(ready.writable, fds{a.fds[1]});
  EXPECT_TRUE(ready.exceptional.empty());
}

TEST_F(select_ready, waits_cooperatively_and_times_out_empty) {
  socket_pair pair;
  bool ran = false;
  auto writer = greenev::spawn([&] {
    greenev::sleep(0.02);
    ran = true;
    pair.send_byte();
  });
  const auto ready = select(fds{pair.fds[0]}, {}, {}, 5.0);
  EXPECT_TRUE(ran);
  EXPECT_EQ(ready.readable, fds{pair.fds[0]});
  writer.get(1.0);
  pair.drain();
  const auto start = steady::now();
  const auto none = select(fds{pair.fds[0]}, {}, {}, 0.05);
  EXPECT_GE(since(start), 45ms);
  EXPECT_TRUE(none.readable.empty() && none.writable.empty() && none.exceptional.empty());
}

TEST_F(select_ready, a_hang_up_is_readable) {
  socket_pair pair;
  pair.close(pair.fds[1]);
  EXPECT_EQ(select(fds{pair.fds[0]}, {}, {}, 1.0).readable, fds{pair.fds[0]});
}

TEST_F(select_ready, out_of_band_data_is_exceptional) {
  auto listener = greenev::socket(AF_INET, SOCK_STREAM);
  listener.bind(greenev::address::parse("127.0.0.1", 0));
  listener.listen();
  greenev::socket client(AF_INET, SOCK_STREAM);
  client.connect(listener.local_address());
  auto [server, peer] = listener.accept();
  client.send("!", MSG_OOB);
  const auto ready = select({}, {}, fds{server.fd()}, 5.0);
  EXPECT_EQ(ready.exceptional, fds{server.fd()});
}

TEST_F(select_ready, no_fds_with_a_timeout_just_sleeps) {
  const auto start = steady::now();
  const auto ready = select({}, {}, {}, 0.03);
  EXPECT_GE(since(start), 25ms);
  EXPECT_TRUE(ready.readable.empty());
}

TEST_F(select_errors, bad_fds_are_ebadf) {
  int closed[2];
  ASSERT_EQ(::pipe(closed), 0);
  ::close(closed[0]);
  ::close(closed[1]);
  for (const int fd : {-1, closed[0]}) {
    try {
      (void)select(fds{fd}, {}, {}, 1.0);
      ADD_FAILURE() << "select accepted fd " << fd;
    } catch (const std::system_error& error) {
      EXPECT_EQ(error.code().value(), EBADF);
    }
  }
}

TEST_F(select_errors, negative_nan_and_endless_empty_are_refused) {
  socket_pair pair;
  EXPECT_TRUE(throws_with<std::invalid_argument>([&] { (void)select(fds{pair.fds[0]}, {}, {}, -1.0); },
                                                 "non-negative"));
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [&] { (void)select(fds{pair.fds[0]}, {}, {}, std::nan("")); }, "non-negative"));
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { (void)select({}, {}, {}); }, "forever"));
}

}  // namespace
