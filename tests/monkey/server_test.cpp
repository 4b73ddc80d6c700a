// Tests for greenev/server.hpp: stream_server on real loopback sockets — one
// greenlet per connection, concurrency, connection limits, handler failures,
// graceful stop with stragglers killed, serve_forever, worker threads on
// SO_REUSEPORT, and bad input.
#include <greenev/server.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/hub.hpp>
#include <greenev/task.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::address;
using greenev::socket;
using greenev::spawn;
using greenev::stream_server;
using greenev::testing::since;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;

using server_basics = greenev::testing::hub_test;
using server_stop = greenev::testing::hub_test;
using server_workers = greenev::testing::hub_test;
using server_bad_input = greenev::testing::hub_test;

const address any_loopback_port = address::parse("127.0.0.1", 0);

void echo(socket& conn, const address&) {
  char data[4096];
  while (const std::size_t n = conn.recv_into(data)) conn.sendall({data, n});
}

std::string ask(const address& server, const std::string& message) {
  socket client(server.family(), SOCK_STREAM);
  client.set_timeout(5.0);
  client.connect(server);
  client.sendall(message);
  client.shutdown(SHUT_WR);
  std::string reply;
  while (true) {
    std::string part = client.recv(4096);
    if (part.empty()) return reply;
    reply += part;
  }
}

TEST_F(server_basics, echoes_and_reports_its_real_port) {
  stream_server server(any_loopback_port, echo);
  EXPECT_EQ(server.local_address().family(), AF_UNSPEC);
  server.start();
  EXPECT_NE(server.local_address().port(), 0);
  EXPECT_EQ(ask(server.local_address(), "hello"), "hello");
  EXPECT_EQ(server.accepted(), 1u);
  server.stop();
  EXPECT_TRUE(server.stopped());
}

TEST_F(server_basics, each_connection_runs_in_its_own_greenlet) {
  // 50 handlers that each sleep 100 ms finish together, not one after another.
  stream_server server(any_loopback_port, [](socket& conn, const address&) {
    greenev::sleep(0.1);
    conn.sendall("done");
  });
  server.start();
  std::vector<greenev::task<std::string>> clients;
  const auto start = steady::now();
  for (int i = 0; i < 50; ++i) clients.push_back(spawn([&] { return ask(server.local_address(), ""); }));
  for (auto& client : clients) EXPECT_EQ(client.get(10.0), "done");
  EXPECT_LT(since(start), 2500ms) << "handlers ran one at a time";
  server.stop();
}

TEST_F(server_basics, the_connection_closes_when_the_handler_returns) {
  stream_server server(any_loopback_port, [](socket& conn, const address&) { conn.sendall("bye"); });
  server.start();
  socket client(AF_INET, SOCK_STREAM);
  client.set_timeout(5.0);
  client.connect(server.local_address());
  EXPECT_EQ(client.recv(16), "bye");
  EXPECT_EQ(client.recv(16), "") << "no end of stream after the handler returned";
  server.stop();
}

TEST_F(server_basics, a_failing_handler_does_not_affect_the_server) {
  std::atomic<int> calls{0};
  stream_server server(any_loopback_port, [&](socket& conn, const address&) {
    if (++calls == 1) throw std::runtime_error("handler failed on purpose");
    echo(conn, {});
  });
  server.start();
  socket first(AF_INET, SOCK_STREAM);
  first.set_timeout(5.0);
  first.connect(server.local_address());
  EXPECT_EQ(first.recv(16), "") << "the failed handler's connection must be closed";
  EXPECT_EQ(ask(server.local_address(), "second"), "second");
  server.stop();
}

TEST_F(server_basics, max_connections_bounds_concurrent_handlers) {
  int running = 0;
  int most = 0;
  stream_server server(any_loopback_port,
                       [&](socket& conn, const address&) {
                         most = std::max(most, ++running);
                         greenev::sleep(0.02);
                         --running;
                         conn.sendall("ok");
                       },
                       {.max_connections = 2});
  server.start();
  std::vector<greenev::task<std::string>> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(spawn([&] { return ask(server.local_address(), ""); }));
  for (auto& client : clients) EXPECT_EQ(client.get(10.0), "ok");
  EXPECT_EQ(most, 2);
  server.stop();
}

TEST_F(server_basics, unix_stream_server) {
  const address where = address::unix_path("@greenev-server-test-" + std::to_string(::getpid()));
  stream_server server(where, echo);
  server.start();
  EXPECT_EQ(ask(where, "over unix"), "over unix");
  server.stop();
}

TEST_F(server_basics, a_given_listening_socket_is_served) {
  socket listener(AF_INET, SOCK_STREAM);
  listener.bind(any_loopback_port);
  listener.listen();
  const address where = listener.local_address();
  stream_server server(std::move(listener), echo);
  server.start();
  EXPECT_EQ(server.local_address(), where);
  EXPECT_EQ(ask(where, "given"), "given");
  server.stop();
}

TEST_F(server_stop, stop_lets_handlers_finish_then_kills_stragglers) {
  bool quick_finished = false;
  bool slow_unwound = false;
  stream_server server(any_loopback_port, [&](socket& conn, const address&) {
    if (conn.recv(1) == "q") {
      greenev::sleep(0.05);
      quick_finished = true;
      return;
    }
    struct on_unwind {
      bool& flag;
      ~on_unwind() { flag = true; }
    } unwind{slow_unwound};
    greenev::sleep(60.0);  // never finishes by itself
  });
  server.start();
  socket quick(AF_INET, SOCK_STREAM);
  quick.connect(server.local_address());
  quick.sendall("q");
  socket slow(AF_INET, SOCK_STREAM);
  slow.connect(server.local_address());
  slow.sendall("s");
  while (server.connections() < 2) greenev::sleep(0.005);
  const auto start = steady::now();
  server.stop(0.3);
  EXPECT_TRUE(quick_finished);
  EXPECT_TRUE(slow_unwound);
  EXPECT_GE(since(start), 250ms);
  EXPECT_LT(since(start), 3s);
  EXPECT_EQ(server.connections(), 0u);
  socket late(AF_INET, SOCK_STREAM);
  EXPECT_THROW(late.connect(server.local_address()), std::system_error) << "still listening after stop";
  server.stop();  // idempotent
}

TEST_F(server_stop, serve_forever_returns_after_stop_from_another_greenlet) {
  stream_server server(any_loopback_port, echo);
  auto stopper = spawn([&] {
    while (!server.started()) greenev::sleep(0.001);
    EXPECT_EQ(ask(server.local_address(), "x"), "x");
    server.stop();
  });
  server.serve_forever();
  stopper.get(5.0);
  EXPECT_TRUE(server.stopped());
}

TEST_F(server_stop, destroying_a_running_server_stops_it) {
  address where;
  {
    stream_server server(any_loopback_port, echo);
    server.start();
    where = server.local_address();
  }
  socket late(AF_INET, SOCK_STREAM);
  EXPECT_THROW(late.connect(where), std::system_error);
}

TEST_F(server_workers, connections_are_spread_over_worker_threads) {
  std::mutex mutex;
  std::set<std::thread::id> threads;
  stream_server server(any_loopback_port,
                       [&](socket& conn, const address&) {
                         {
                           const std::lock_guard<std::mutex> lock(mutex);
                           threads.insert(std::this_thread::get_id());
                         }
                         echo(conn, {});
                       },
                       {.workers = 2});
  server.start();
  for (int i = 0; i < 64; ++i)
    EXPECT_EQ(ask(server.local_address(), "w" + std::to_string(i)), "w" + std::to_string(i));
  server.stop();
  EXPECT_EQ(server.accepted(), 64u);
  const std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(threads.size(), 2u) << "64 connections all went to one worker";
}

TEST_F(server_bad_input, refused_configurations) {
  EXPECT_TRUE(
      throws_with<std::invalid_argument>([] { stream_server(any_loopback_port, nullptr); }, "handler"));
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [] { stream_server(any_loopback_port, echo, {.workers = 0}); }, "0 workers"));
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [] { stream_server(address::unix_path("@x"), echo, {.workers = 2}); }, "need a TCP address"));
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [] { stream_server(any_loopback_port, echo, {.max_connections = 0}); }, "max_connections"));
}

TEST_F(server_bad_input, a_port_in_use_fails_start_and_leaves_nothing_running) {
  stream_server first(any_loopback_port, echo);
  first.start();
  stream_server second(first.local_address(), echo);
  try {
    second.start();
    ADD_FAILURE() << "bound a port in use";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code().value(), EADDRINUSE) << error.what();
  }
  EXPECT_FALSE(second.started());
  EXPECT_TRUE(throws_with<greenev::greenlet_error>([&] { first.start(); }, "already started"));
  first.stop();
}

}  // namespace
