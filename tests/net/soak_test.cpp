// Soak tests: long, bounded runs that must leave memory and file
// descriptors flat — a million spawn/join cycles, and 200,000 connections
// opened, used and closed against a stream_server echo server. Counts shrink
// tenfold under sanitizers (where RSS means nothing anyway); the release
// build runs them in full. One suite, run serially: they measure the process.
#include <dirent.h>
#include <sys/socket.h>

#include <cstddef>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/server.hpp>
#include <greenev/socket.hpp>
#include <greenev/task.hpp>

#include "support/hub_fixture.hpp"
#include "support/process.hpp"
#include "support/sanitizers.hpp"

namespace {

using greenev::address;
using greenev::socket;

using soak_serial = greenev::testing::hub_test;

constexpr std::size_t scaled(std::size_t full) {
  return greenev::testing::sanitized ? full / 10 : full;
}

long rss_kib() {
  return static_cast<long>(greenev::testing::resident_bytes() / 1024);
}

std::size_t open_fds() {
  std::size_t count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (::readdir(dir) != nullptr) ++count;
    ::closedir(dir);
  }
  return count;
}

// RSS may not grow by more than 5% (plus a page-table's worth of slack for
// small processes) from `warm` to `now`.
void expect_flat(long warm_kib, long now_kib, const char* what) {
  if (!greenev::testing::rss_is_meaningful()) return;
  EXPECT_LE(now_kib, warm_kib + warm_kib / 20 + 1024)
      << what << ": RSS grew from " << warm_kib << " KiB to " << now_kib << " KiB";
}

TEST_F(soak_serial, a_million_spawn_join_cycles_leave_rss_flat) {
  // TSan creates and destroys a fiber of its own per greenlet, about 2 ms each:
  // 100,000 cycles took 210 s of the 300 s timeout. RSS is not checked under a
  // sanitizer, so 10,000 still prove what is checked there: every one ran.
  const std::size_t cycles = greenev::testing::thread_sanitizer ? 10'000 : scaled(1'000'000);
  const std::size_t batch = 1000;  // joined together, so the hub sees many at once too
  std::size_t ran = 0;
  long warm_kib = 0;
  std::vector<greenev::basic_task> tasks;
  tasks.reserve(batch);
  for (std::size_t done = 0; done < cycles; done += batch) {
    for (std::size_t i = 0; i < batch; ++i) tasks.push_back(greenev::spawn([&ran] { ++ran; }));
    greenev::joinall(tasks);
    tasks.clear();
    if (done == cycles / 10) warm_kib = rss_kib();
  }
  EXPECT_EQ(ran, cycles);
  expect_flat(warm_kib, rss_kib(), "spawn/join");
}

TEST_F(soak_serial, two_hundred_thousand_connections_leave_rss_and_fds_flat) {
  const std::size_t connections = scaled(200'000);
  constexpr std::size_t clients = 100;
  greenev::stream_server server(address::parse("127.0.0.1", 0), [](socket& conn, const address&) {
    char data[256];
    while (const std::size_t n = conn.recv_into(data)) conn.sendall({data, n});
  });
  server.start();
  const std::uint16_t port = server.local_address().port();
  // Every connection leaves a TIME_WAIT entry for its 4-tuple; spreading the
  // clients over 16 loopback source addresses keeps 200,000 of them clear of
  // the ephemeral port range (about 28,000 per source address).
  std::size_t verified = 0;
  std::size_t failures = 0;
  long warm_kib = 0;
  std::size_t warm_fds = 0;
  const auto run_client = [&](std::size_t id, std::size_t rounds) {
    const address source = address::parse("127.0.0." + std::to_string(2 + id % 16), 0);
    const address target = address::parse("127.0.0.1", port);
    for (std::size_t round = 0; round < rounds; ++round) {
      try {
        socket s(AF_INET, SOCK_STREAM);
        s.set_timeout(30.0);
        s.bind(source);
        s.connect(target);
        const std::string message = "soak " + std::to_string(id) + "/" + std::to_string(round);
        s.sendall(message);
        std::string echoed;
        while (echoed.size() < message.size()) {
          std::string part = s.recv(message.size() - echoed.size());
          if (part.empty()) break;
          echoed += part;
        }
        if (echoed == message) ++verified;
      } catch (const std::exception& error) {
        if (++failures <= 3) ADD_FAILURE() << "client " << id << " round " << round << ": " << error.what();
      }
    }
  };
  // Warm up with a tenth, then measure the rest.
  std::vector<greenev::basic_task> tasks;
  const std::size_t warm_rounds = connections / 10 / clients;
  for (std::size_t id = 0; id < clients; ++id) tasks.push_back(greenev::spawn(run_client, id, warm_rounds));
  greenev::joinall(tasks);
  tasks.clear();
  const auto settle = [&] {  // handlers may still be finishing their last connections
    for (int i = 0; i < 1000 && server.connections() > 0; ++i) greenev::sleep(0.005);
  };
  settle();
  warm_kib = rss_kib();
  warm_fds = open_fds();
  const std::size_t rounds = connections / clients - warm_rounds;
  for (std::size_t id = 0; id < clients; ++id) tasks.push_back(greenev::spawn(run_client, id, rounds));
  greenev::joinall(tasks);
  tasks.clear();
  EXPECT_EQ(failures, 0u);
  EXPECT_EQ(verified, connections);
  settle();
  EXPECT_EQ(open_fds(), warm_fds) << "file descriptors leaked";
  expect_flat(warm_kib, rss_kib(), "connections");
  server.stop();
}

}  // namespace
