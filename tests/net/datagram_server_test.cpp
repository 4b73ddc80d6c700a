// Tests for greenev/datagram_server.hpp on real loopback UDP sockets: a
// greenlet per datagram, 100 concurrent senders with every datagram echoed
// and verified, the sender's address (IPv4 and IPv6), a bounded number of
// handlers at once, a failing handler, truncation to max_datagram_size, a
// reply to a sender that left (ICMP), stop with handlers in flight,
// serve_forever, restart, and bad input.
#include <greenev/datagram_server.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/event.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::address;
using greenev::datagram_server;
using greenev::socket;
using greenev::testing::since;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;
using datagram_server_test = greenev::testing::hub_test;

void echo(datagram_server& server, std::string_view data, const address& from) {
  server.sendto(data, from);
}

// Sends `payload` from `client` and returns the reply (5 s at most).
std::string ask(socket& client, const address& server, std::string_view payload) {
  client.sendto(payload, server);
  std::string reply(70000, '\0');
  address from;
  client.set_timeout(5.0);
  reply.resize(client.recvfrom_into(reply, from));
  return reply;
}

TEST_F(datagram_server_test, a_hundred_concurrent_senders_get_every_datagram_echoed) {
  datagram_server server(address::parse("127.0.0.1", 0), echo);
  server.start();
  const address where = server.local_address();
  ASSERT_NE(where.port(), 0);
  std::vector<greenev::task<int>> senders;
  for (int sender = 0; sender < 100; ++sender) {
    senders.push_back(greenev::spawn([sender, where] {
      socket client(AF_INET, SOCK_DGRAM);
      int verified = 0;
      for (int i = 0; i < 20; ++i) {
        const std::string payload = "sender " + std::to_string(sender) + " datagram " + std::to_string(i);
        if (ask(client, where, payload) == payload) ++verified;
      }
      return verified;
    }));
  }
  int verified = 0;
  for (auto& sender : senders) verified += sender.get(30s);
  EXPECT_EQ(verified, 2000);
  EXPECT_EQ(server.received(), 2000u);
  server.stop();
}

TEST_F(datagram_server_test, the_handler_sees_the_senders_address_on_ipv4_and_ipv6) {
  for (const char* host : {"127.0.0.1", "::1"}) {
    datagram_server server(
        address::parse(host, 0),
        [](datagram_server& s, std::string_view, const address& from) { s.sendto(from.to_string(), from); });
    server.start();
    socket client(server.local_address().family(), SOCK_DGRAM);
    client.bind(address::parse(host, 0));
    EXPECT_EQ(ask(client, server.local_address(), "who am I"), client.local_address().to_string()) << host;
    server.stop();
  }
}

TEST_F(datagram_server_test, max_concurrent_bounds_the_handlers_running_at_once) {
  int running = 0;
  int most = 0;
  datagram_server server(address::parse("127.0.0.1", 0),
                         [&](datagram_server& s, std::string_view data, const address& from) {
                           most = std::max(most, ++running);
                           greenev::sleep(0.02);
                           --running;
                           s.sendto(data, from);
                         },
                         {.max_concurrent = 3});
  server.start();
  socket client(AF_INET, SOCK_DGRAM);
  for (int i = 0; i < 12; ++i) client.sendto(std::to_string(i), server.local_address());
  std::set<std::string> replies;
  client.set_timeout(5.0);
  for (int i = 0; i < 12; ++i) {
    std::string reply(16, '\0');
    address from;
    reply.resize(client.recvfrom_into(reply, from));
    replies.insert(reply);
  }
  EXPECT_EQ(replies.size(), 12u);
  EXPECT_EQ(most, 3);
  server.stop();
}

TEST_F(datagram_server_test, a_failing_handler_is_reported_and_the_server_goes_on) {
  testing::internal::CaptureStderr();
  datagram_server server(address::parse("127.0.0.1", 0),
                         [](datagram_server& s, std::string_view data, const address& from) {
                           if (data == "fail") throw std::runtime_error("handler refused");
                           s.sendto(data, from);
                         });
  server.start();
  socket client(AF_INET, SOCK_DGRAM);
  client.sendto("fail", server.local_address());
  EXPECT_EQ(ask(client, server.local_address(), "still there"), "still there");
  server.stop();
  const std::string reported = testing::internal::GetCapturedStderr();
  EXPECT_NE(reported.find("handler refused"), std::string::npos) << reported;
}

TEST_F(datagram_server_test, a_datagram_longer_than_max_datagram_size_is_cut) {
  datagram_server server(address::parse("127.0.0.1", 0), echo, {.max_datagram_size = 8});
  server.start();
  socket client(AF_INET, SOCK_DGRAM);
  EXPECT_EQ(ask(client, server.local_address(), "0123456789abcdef"), "01234567");
  server.stop();
}

TEST_F(datagram_server_test, a_reply_to_a_sender_that_left_does_not_stop_the_server) {
  datagram_server server(address::parse("127.0.0.1", 0), echo);
  server.start();
  {
    socket gone(AF_INET, SOCK_DGRAM);
    gone.sendto("x", server.local_address());
    greenev::sleep(0.05);  // the reply meets a closed port: ICMP, ECONNREFUSED on the next receive
  }
  greenev::sleep(0.05);
  socket client(AF_INET, SOCK_DGRAM);
  EXPECT_EQ(ask(client, server.local_address(), "after"), "after");
  server.stop();
}

TEST_F(datagram_server_test, stop_waits_for_handlers_then_kills_the_rest) {
  std::atomic<int> finished{0};
  std::atomic<int> killed{0};
  // stop() starts its 0.2 s wait only once the quick handler's 10 ms sleep has
  // started: a stall cannot start that sleep after stop's deadline is set.
  greenev::event quick_sleeping;
  datagram_server server(address::parse("127.0.0.1", 0),
                         [&](datagram_server&, std::string_view data, const address&) {
                           try {
                             if (data == "quick") quick_sleeping.set();
                             greenev::sleep(data == "slow" ? 30.0 : 0.01);
                             ++finished;
                           } catch (const greenev::greenlet_exit&) {
                             ++killed;
                             throw;
                           }
                         });
  server.start();
  socket client(AF_INET, SOCK_DGRAM);
  client.sendto("quick", server.local_address());
  client.sendto("slow", server.local_address());
  for (int i = 0; i < 200 && server.handling() < 2; ++i) greenev::sleep(0.005);
  ASSERT_EQ(server.handling(), 2u);
  ASSERT_TRUE(quick_sleeping.wait(5.0));
  const auto start = steady::now();
  server.stop(0.2);
  EXPECT_LT(since(start), 5s);
  EXPECT_EQ(finished, 1);
  EXPECT_EQ(killed, 1);
  EXPECT_FALSE(server.started());
  EXPECT_EQ(server.handling(), 0u);
  server.stop();  // idempotent
}

TEST_F(datagram_server_test, serve_forever_returns_after_stop_and_the_server_restarts_on_its_port) {
  datagram_server server(address::parse("127.0.0.1", 0), echo);
  auto serving = greenev::spawn([&] { server.serve_forever(); });
  greenev::sleep(0.01);
  ASSERT_TRUE(server.started());
  const address first = server.local_address();
  socket client(AF_INET, SOCK_DGRAM);
  EXPECT_EQ(ask(client, first, "one"), "one");
  server.stop();
  serving.get(5s);
  EXPECT_THROW(server.sendto("x", first), std::system_error);
  server.start();
  EXPECT_EQ(server.local_address().port(), first.port());
  EXPECT_EQ(ask(client, server.local_address(), "two"), "two");
  EXPECT_THROW(server.start(), greenev::greenlet_error);
  server.stop();
}

TEST_F(datagram_server_test, a_given_bound_socket_is_served_and_closed_by_stop) {
  socket bound(AF_INET, SOCK_DGRAM);
  bound.bind(address::parse("127.0.0.1", 0));
  const address where = bound.local_address();
  datagram_server server(std::move(bound), echo);
  EXPECT_EQ(server.local_address(), where);
  server.start();
  socket client(AF_INET, SOCK_DGRAM);
  EXPECT_EQ(ask(client, where, "given"), "given");
  server.stop();
  EXPECT_TRUE(throws_with<greenev::greenlet_error>([&] { server.start(); }, "closed by stop"));
}

TEST_F(datagram_server_test, bad_input_is_refused) {
  EXPECT_THROW(datagram_server(address::parse("127.0.0.1", 0), nullptr), std::invalid_argument);
  EXPECT_THROW(datagram_server(address::parse("127.0.0.1", 0), echo, {.max_concurrent = 0}),
               std::invalid_argument);
  EXPECT_THROW(datagram_server(address::parse("127.0.0.1", 0), echo, {.max_datagram_size = 0}),
               std::invalid_argument);
  datagram_server first(address::parse("127.0.0.1", 0), echo);
  first.start();
  datagram_server second(first.local_address(), echo);
  EXPECT_TRUE(throws_with<std::system_error>([&] { second.start(); }, "in use"));
  EXPECT_FALSE(second.started());
  first.stop();
}

}  // namespace
