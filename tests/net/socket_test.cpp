// Tests for greenev/socket.hpp on real loopback sockets: TCP (IPv4, IPv6),
// UDP and Unix streams between greenlets; timeouts (none, zero, per call,
// sendall's whole-call deadline, connect); errors (refused, EPIPE without
// SIGPIPE, closed under a waiter, empty sockets, two readers); ownership.
#include <greenev/socket.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/hub.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::address;
using greenev::socket;
using greenev::spawn;
using greenev::testing::since;
using greenev::testing::throws_errno;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;

using socket_stream = greenev::testing::hub_test;
using socket_datagram = greenev::testing::hub_test;
using socket_timeouts = greenev::testing::hub_test;
using socket_errors = greenev::testing::hub_test;

socket listening_on(const address& where) {
  socket listener(where.family(), SOCK_STREAM);
  if (where.family() != AF_UNIX) listener.set_option(SOL_SOCKET, SO_REUSEADDR, 1);
  listener.bind(where);
  listener.listen();
  return listener;
}

// Echoes one connection until end of stream, then closes it.
void echo_one(socket& listener) {
  auto [conn, peer] = listener.accept();
  char buffer[4096];
  while (const std::size_t n = conn.recv_into(buffer)) conn.sendall({buffer, n});
}

// Full duplex and half-close: a writer greenlet sends 100 kB and shuts its
// side down while this greenlet reads the echo on the same socket, to EOF.
void round_trip(const address& where) {
  socket listener = listening_on(where);
  const address bound = listener.local_address();
  auto server = spawn([&] { echo_one(listener); });
  socket client(bound.family(), SOCK_STREAM);
  client.connect(bound);
  const std::string message(100000, 'q');  // several segments, partial sends
  auto writer = spawn([&] {
    client.sendall(message);
    client.shutdown(SHUT_WR);
  });
  std::string echoed;
  while (true) {
    std::string chunk = client.recv(65536);
    if (chunk.empty()) break;
    echoed += chunk;
  }
  EXPECT_EQ(echoed, message);
  writer.get(5.0);
  server.get(5.0);
}

TEST_F(socket_stream, tcp_ipv4_echo_between_greenlets) {
  round_trip(address::parse("127.0.0.1", 0));
}

TEST_F(socket_stream, tcp_ipv6_echo_between_greenlets) {
  try {
    socket probe(AF_INET6, SOCK_STREAM);
    probe.bind(address::parse("::1", 0));
  } catch (const std::system_error& error) {
    GTEST_SKIP() << "no IPv6 loopback here: " << error.what();
  }
  round_trip(address::parse("::1", 0));
}

TEST_F(socket_stream, unix_stream_echo_between_greenlets) {
  round_trip(address::unix_path("@greenev-socket-test-" + std::to_string(::getpid())));
}

TEST_F(socket_stream, accept_reports_the_peer_and_addresses_agree) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  socket client(AF_INET, SOCK_STREAM);
  socket conn;
  address peer;
  auto accepted = spawn([&] { std::tie(conn, peer) = listener.accept(); });
  client.connect(listener.local_address());
  accepted.get(5.0);
  EXPECT_EQ(peer, client.local_address());
  EXPECT_EQ(conn.peer_address(), client.local_address());
  EXPECT_EQ(conn.timeout().is_forever(), true);
  conn.set_option(IPPROTO_TCP, TCP_NODELAY, 1);
  EXPECT_NE(conn.option(IPPROTO_TCP, TCP_NODELAY), 0);
}

TEST_F(socket_stream, create_connection_connects_to_a_numeric_host) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  auto server = spawn([&] { echo_one(listener); });
  socket client = greenev::create_connection("127.0.0.1", listener.local_address().port(), 5.0);
  EXPECT_EQ(client.timeout().duration(), 5s);
  client.sendall("ping");
  EXPECT_EQ(client.recv(16), "ping");
  client.close();
  server.get(5.0);
}

TEST_F(socket_stream, connect_ex_returns_the_error_instead_of_throwing) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  socket client(AF_INET, SOCK_STREAM);
  EXPECT_EQ(client.connect_ex(listener.local_address()), 0);
  socket refused(AF_INET, SOCK_STREAM);
  socket closed_port = listening_on(address::parse("127.0.0.1", 0));
  const address nobody = closed_port.local_address();
  closed_port.close();
  EXPECT_EQ(refused.connect_ex(nobody, 5.0), ECONNREFUSED);
  socket gone;
  EXPECT_TRUE(greenev::testing::throws_errno([&] { (void)gone.connect_ex(nobody); }, EBADF));
}

TEST_F(socket_stream, create_connection_binds_the_source_address) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  auto server = spawn([&] {
    auto [conn, peer] = listener.accept();
    return peer;
  });
  // A free source port, found by binding port 0 once.
  socket probe(AF_INET, SOCK_STREAM);
  probe.bind(address::parse("127.0.0.1", 0));
  const address source = probe.local_address();
  probe.close();
  socket client = greenev::create_connection("127.0.0.1", listener.local_address().port(), 5.0, source);
  EXPECT_EQ(client.local_address(), source);
  EXPECT_EQ(server.get(5.0), source);
  // No address of the source's family: a clear error.
  EXPECT_TRUE(greenev::testing::throws_errno(
      [&] { (void)greenev::create_connection("127.0.0.1", 1, 1.0, address::parse("::1", 0)); },
      EADDRNOTAVAIL));
}

TEST_F(socket_stream, create_connection_resolves_localhost_and_tries_each_address) {
  // "localhost" comes from /etc/hosts: ::1 and/or 127.0.0.1. Listening on
  // IPv4 only, an IPv6 answer is refused and the next address is tried.
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  auto server = spawn([&] { echo_one(listener); });
  socket client = greenev::create_connection("localhost", listener.local_address().port(), 5.0);
  EXPECT_EQ(client.peer_address(), listener.local_address());
  client.close();
  server.get(5.0);
}

TEST_F(socket_errors, create_connection_raises_the_last_error) {
  address closed_port;
  {
    socket probe(AF_INET, SOCK_STREAM);
    probe.bind(address::parse("127.0.0.1", 0));
    closed_port = probe.local_address();
  }
  EXPECT_TRUE(throws_errno([&] { (void)greenev::create_connection("127.0.0.1", closed_port.port(), 5.0); },
                           ECONNREFUSED));
}

TEST_F(socket_stream, moved_from_socket_is_empty_and_the_fd_moves) {
  socket a(AF_INET, SOCK_STREAM);
  const int fd = a.fd();
  socket b = std::move(a);
  EXPECT_EQ(b.fd(), fd);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): defined as empty
  socket c(AF_INET, SOCK_DGRAM);
  c = std::move(b);
  EXPECT_EQ(c.fd(), fd);
  const int released = c.release();
  EXPECT_EQ(released, fd);
  EXPECT_FALSE(c);
  socket adopted = socket::adopt(released);
  EXPECT_EQ(adopted.fd(), fd);
}

TEST_F(socket_datagram, udp_sendto_recvfrom) {
  socket server(AF_INET, SOCK_DGRAM);
  server.bind(address::parse("127.0.0.1", 0));
  socket client(AF_INET, SOCK_DGRAM);
  client.bind(address::parse("127.0.0.1", 0));
  auto replier = spawn([&] {
    auto [data, from] = server.recvfrom(1500);
    server.sendto("re:" + data, from);
    return from;
  });
  client.sendto("hello", server.local_address());
  auto [reply, from] = client.recvfrom(1500);
  EXPECT_EQ(reply, "re:hello");
  EXPECT_EQ(from, server.local_address());
  EXPECT_EQ(replier.get(5.0), client.local_address());
}

TEST_F(socket_timeouts, recv_times_out_with_timeout_error_naming_the_socket) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  socket client(AF_INET, SOCK_STREAM);
  client.connect(listener.local_address());
  client.set_timeout(0.05);
  const auto start = steady::now();
  try {
    (void)client.recv(10);
    ADD_FAILURE() << "recv returned";
  } catch (const greenev::timeout_error& error) {
    EXPECT_EQ(error.source(), &client);
  }
  EXPECT_GE(since(start), 45ms);
  EXPECT_LT(since(start), 2s);
}

TEST_F(socket_timeouts, zero_timeout_is_non_blocking) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  listener.set_timeout(0.0);
  EXPECT_TRUE(throws_errno([&] { (void)listener.accept(); }, EAGAIN));
}

TEST_F(socket_timeouts, sendall_timeout_covers_the_whole_call) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  socket client(AF_INET, SOCK_STREAM);
  client.connect(listener.local_address());
  auto [conn, peer] = listener.accept();
  // A slow reader: some progress every 20 ms, so no single wait exceeds the
  // timeout; only a deadline for the whole call can stop sendall.
  bool slow = true;
  auto reader = spawn([&conn = conn, &slow] {
    for (;;) {
      if (conn.recv(16384).empty()) return;
      if (slow) greenev::sleep(0.02);
    }
  });
  client.set_timeout(0.3);
  const auto start = steady::now();
  EXPECT_THROW(client.sendall(std::string(64u << 20, 'x')), greenev::timeout_error);
  EXPECT_LT(since(start), 3s);
  EXPECT_GE(since(start), 250ms);
  slow = false;
  client.close();
  reader.get(5.0);
}

TEST_F(socket_timeouts, sendall_of_nothing_returns_at_once) {
  socket client(AF_INET, SOCK_STREAM);  // not even connected
  client.sendall("");
}

TEST_F(socket_timeouts, connect_times_out_when_the_backlog_is_full) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  listener.listen(0);
  std::vector<socket> clients;
  bool timed_out = false;
  for (int i = 0; i < 16 && !timed_out; ++i) {
    socket client(AF_INET, SOCK_STREAM);
    try {
      client.connect(listener.local_address(), 0.2);
      clients.push_back(std::move(client));
    } catch (const greenev::timeout_error& error) {
      EXPECT_EQ(error.source(), &client);
      timed_out = true;
    }
  }
  EXPECT_TRUE(timed_out) << "the kernel kept accepting connections into a full backlog";
}

TEST_F(socket_errors, connect_refused_is_econnrefused_naming_the_peer) {
  address closed_port;
  {
    socket probe(AF_INET, SOCK_STREAM);
    probe.bind(address::parse("127.0.0.1", 0));
    closed_port = probe.local_address();
  }
  socket client(AF_INET, SOCK_STREAM);
  EXPECT_TRUE(throws_with<std::system_error>([&] { client.connect(closed_port); }, closed_port.to_string()));
  socket again(AF_INET, SOCK_STREAM);
  EXPECT_TRUE(throws_errno([&] { again.connect(closed_port, 1.0); }, ECONNREFUSED));
}

TEST_F(socket_errors, send_to_a_closed_peer_is_epipe_not_sigpipe) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  socket client(AF_INET, SOCK_STREAM);
  client.connect(listener.local_address());
  listener.accept().first.close();
  try {
    for (int i = 0; i < 100; ++i) {
      client.sendall(std::string(65536, 'p'));
      greenev::sleep(0.001);
    }
    ADD_FAILURE() << "sending to a closed peer kept succeeding";
  } catch (const std::system_error& error) {
    EXPECT_TRUE(error.code().value() == EPIPE || error.code().value() == ECONNRESET) << error.what();
  }
}

TEST_F(socket_errors, close_from_another_greenlet_wakes_the_reader_with_ebadf) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  socket client(AF_INET, SOCK_STREAM);
  client.connect(listener.local_address());
  auto reader = spawn([&] { return client.recv(10); });
  greenev::sleep(0.0);
  client.close();
  EXPECT_FALSE(client);
  EXPECT_TRUE(throws_errno([&] { reader.get(5.0); }, EBADF));
  client.close();  // idempotent
}

TEST_F(socket_errors, every_call_on_an_empty_socket_is_ebadf) {
  socket empty;
  char byte = 0;
  EXPECT_TRUE(throws_errno([&] { empty.bind(address::parse("127.0.0.1", 0)); }, EBADF));
  EXPECT_TRUE(throws_errno([&] { empty.listen(); }, EBADF));
  EXPECT_TRUE(throws_errno([&] { (void)empty.accept(); }, EBADF));
  EXPECT_TRUE(throws_errno([&] { empty.connect(address::parse("127.0.0.1", 1)); }, EBADF));
  EXPECT_TRUE(throws_errno([&] { empty.recv_into({&byte, 1}); }, EBADF));
  EXPECT_TRUE(throws_errno([&] { empty.send("x"); }, EBADF));
  EXPECT_TRUE(throws_errno([&] { empty.sendall("x"); }, EBADF));
  EXPECT_TRUE(throws_errno([&] { empty.shutdown(SHUT_RDWR); }, EBADF));
  EXPECT_TRUE(throws_errno([&] { (void)empty.local_address(); }, EBADF));
  empty.close();
}

TEST_F(socket_errors, two_readers_of_one_socket_is_a_greenlet_error) {
  socket listener = listening_on(address::parse("127.0.0.1", 0));
  socket client(AF_INET, SOCK_STREAM);
  client.connect(listener.local_address());
  auto [conn, peer] = listener.accept();
  auto first = spawn([&client] { return client.recv(10); });
  greenev::sleep(0.0);
  EXPECT_TRUE(throws_with<greenev::greenlet_error>([&] { (void)client.recv(10); }, "already waited on"));
  conn.sendall("ok");
  EXPECT_EQ(first.get(5.0), "ok");
}

}  // namespace
