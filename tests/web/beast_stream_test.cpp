// Tests for greenev/beast_stream.hpp: Beast's synchronous HTTP calls over
// greenev sockets on loopback — the stream concepts, a blocking read that
// parks only its greenlet, end of stream, deadlines and per-call timeouts,
// gathered writes, and errno passed through.
#include <greenev/beast_stream.hpp>

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <greenev/socket.hpp>
#include <greenev/task.hpp>

#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

namespace http = boost::beast::http;
namespace net = boost::asio;
using namespace std::chrono_literals;
using greenev::beast_stream;
using greenev::socket;
using greenev::testing::since;
using steady = std::chrono::steady_clock;

using beast_stream_io = greenev::testing::hub_test;

static_assert(boost::beast::is_sync_read_stream<beast_stream<socket>>::value);
static_assert(boost::beast::is_sync_write_stream<beast_stream<socket>>::value);

// A connected pair of TCP sockets on loopback.
std::pair<socket, socket> connected_pair() {
  socket listener(AF_INET, SOCK_STREAM);
  listener.bind(greenev::address::parse("127.0.0.1", 0));
  listener.listen();
  socket client(AF_INET, SOCK_STREAM);
  client.connect(listener.local_address());
  auto [server, peer] = listener.accept();
  return {std::move(client), std::move(server)};
}

TEST_F(beast_stream_io, beast_writes_and_reads_a_message_while_other_greenlets_run) {
  auto [client, server] = connected_pair();
  int ticks = 0;
  auto ticker = greenev::spawn([&] {
    for (int i = 0; i < 5; ++i) {
      greenev::sleep(0.01);
      ++ticks;
    }
  });
  auto reader = greenev::spawn([&server = server] {
    beast_stream<socket> io(server);
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> request;
    http::read(io, buffer, request);  // blocks this greenlet until the client writes
    return request;
  });
  // The ticker's five sleeps end while the reader waits for a request not
  // yet written (a join, not an 80 ms sleep that five sleeps of 10 ms, each
  // woken late on a loaded machine, could outlast).
  ASSERT_TRUE(ticker.join(5.0));
  EXPECT_EQ(ticks, 5);
  EXPECT_FALSE(reader.ready()) << "the reader returned before anything was written";
  beast_stream<socket> out(client);
  http::request<http::string_body> sent{http::verb::post, "/x?y=1", 11};
  sent.set(http::field::host, "example");
  sent.body() = std::string(100000, 'b');  // more than one socket buffer's worth
  sent.prepare_payload();
  http::write(out, sent);
  const http::request<http::string_body> got = reader.get();
  EXPECT_EQ(got.method(), http::verb::post);
  EXPECT_EQ(got.target(), "/x?y=1");
  EXPECT_EQ(got[http::field::host], "example");
  EXPECT_EQ(got.body(), sent.body());
}

TEST_F(beast_stream_io, end_of_stream_is_eof_and_beast_reports_it) {
  auto [client, server] = connected_pair();
  client.close();
  beast_stream<socket> io(server);
  char data[16];
  boost::system::error_code ec;
  EXPECT_EQ(io.read_some(net::buffer(data), ec), 0u);
  EXPECT_EQ(ec, net::error::eof);
  boost::beast::flat_buffer buffer;
  http::request<http::string_body> request;
  http::read(io, buffer, request, ec);
  EXPECT_EQ(ec, http::error::end_of_stream);
}

TEST_F(beast_stream_io, a_deadline_bounds_every_later_operation_together) {
  auto [client, server] = connected_pair();
  beast_stream<socket> io(server);
  // Wide margins, for loaded machines: the data comes 1 s before the 2 s
  // deadline, and a deadline counted again for the second read (a per-call
  // timeout) would end it at 3 s or later, not at 2 s.
  const auto start = steady::now();
  io.expires_after(2.0);
  char data[16];
  boost::system::error_code ec;
  auto writer = greenev::spawn([&client = client] {
    greenev::sleep(1.0);
    client.sendall("ab");
  });
  EXPECT_EQ(io.read_some(net::buffer(data), ec), 2u);  // in time
  EXPECT_FALSE(ec);
  io.read_some(net::buffer(data), ec);  // nothing more comes: the rest of the deadline
  EXPECT_EQ(ec, boost::beast::error::timeout);
  EXPECT_GE(since(start), 1900ms);
  EXPECT_LT(since(start), 2800ms);
  io.read_some(net::buffer(data), ec);  // already past: at once
  EXPECT_EQ(ec, boost::beast::error::timeout);
  io.expires_never();
  io.set_read_timeout(0.05);
  io.read_some(net::buffer(data), ec);  // the per-call timeout alone
  EXPECT_EQ(ec, boost::beast::error::timeout);
  writer.join();
}

TEST_F(beast_stream_io, throwing_overloads_throw_boost_system_error) {
  auto [client, server] = connected_pair();
  beast_stream<socket> io(server);
  io.set_read_timeout(0.02);
  char data[4];
  try {
    (void)io.read_some(net::buffer(data));
    ADD_FAILURE() << "read_some did not throw";
  } catch (const boost::system::system_error& error) {
    EXPECT_EQ(error.code(), boost::beast::error::timeout);
  }
  EXPECT_EQ(io.write_some(net::buffer("xyz", 3)), 3u);
  EXPECT_EQ(client.recv(16), "xyz");
}

TEST_F(beast_stream_io, socket_errors_keep_their_errno) {
  auto [client, server] = connected_pair();
  beast_stream<socket> io(server);
  server.close();
  char data[4];
  boost::system::error_code ec;
  io.read_some(net::buffer(data), ec);
  EXPECT_EQ(ec.value(), EBADF);
  io.write_some(net::buffer("x", 1), ec);
  EXPECT_EQ(ec.value(), EBADF);
}

TEST_F(beast_stream_io, small_buffers_are_gathered_into_one_send) {
  auto [client, server] = connected_pair();
  beast_stream<socket> io(client);
  const std::array<net::const_buffer, 3> parts{net::buffer("GET ", 4), net::buffer("/ ", 2),
                                               net::buffer("HTTP/1.1\r\n", 10)};
  boost::system::error_code ec;
  EXPECT_EQ(io.write_some(parts, ec), 16u);  // all of them in one call
  EXPECT_FALSE(ec);
  const std::array<net::const_buffer, 2> empty{net::const_buffer(), net::const_buffer()};
  EXPECT_EQ(io.write_some(empty, ec), 0u);
  EXPECT_FALSE(ec);
  server.set_timeout(2.0);
  std::string got;
  while (got.size() < 16) got += server.recv(64);
  EXPECT_EQ(got, "GET / HTTP/1.1\r\n");
}

// Gathered writes send the same bytes, in order, however short the sends
// are: a few small buffers, and a small one before a large one.
TEST_F(beast_stream_io, gathered_writes_send_every_byte_in_order) {
  for (const auto& [first_size, second_size] :
       std::array<std::pair<std::size_t, std::size_t>, 4>{{{200, 312}, {200, 313}, {511, 2}, {600, 20000}}}) {
    auto [client, server] = connected_pair();
    std::string first(first_size, '\0');
    std::string second(second_size, '\0');
    for (std::size_t i = 0; i < first.size(); ++i) first[i] = static_cast<char>('a' + i % 26);
    for (std::size_t i = 0; i < second.size(); ++i) second[i] = static_cast<char>('A' + i % 26);
    std::string got;
    auto reader = greenev::spawn([&, &server = server] {
      server.set_timeout(5.0);
      while (got.size() < first.size() + second.size()) got += server.recv(4096);
    });
    beast_stream<socket> io(client);
    boost::beast::buffers_suffix<std::array<net::const_buffer, 2>> rest(
        std::array<net::const_buffer, 2>{net::buffer(first), net::buffer(second)});
    while (boost::beast::buffer_bytes(rest) > 0) {
      boost::system::error_code ec;
      const std::size_t n = io.write_some(rest, ec);
      ASSERT_FALSE(ec) << ec.message();
      ASSERT_GT(n, 0u);
      rest.consume(n);
    }
    reader.get();
    EXPECT_EQ(got, first + second) << first_size << " + " << second_size << " bytes";
  }
}

}  // namespace
