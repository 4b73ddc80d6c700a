// Tests for greenev/buffered_stream.hpp over real loopback TCP sockets: lines
// that arrive in pieces (and several in one piece), a line longer than the
// limit, the last line without a newline, exact reads, a delimiter split
// across reads, buffered writes and flush, a line protocol between two
// greenlets, a timeout passing through, and a tls_socket as the stream.
#include <greenev/buffered_stream.hpp>

#include <sys/socket.h>

#include <string>
#include <utility>

#include <gtest/gtest.h>

#include <greenev/socket.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>
#include <greenev/tls.hpp>

#include "support/hub_fixture.hpp"
#include "support/test_pki.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::address;
using greenev::buffered_stream;
using greenev::socket;
using buffered_stream_test = greenev::testing::hub_test;

// A connected pair of loopback TCP sockets.
std::pair<socket, socket> connected_pair() {
  socket listener(AF_INET, SOCK_STREAM);
  listener.bind(address::parse("127.0.0.1", 0));
  listener.listen();
  socket client(AF_INET, SOCK_STREAM);
  client.connect(listener.local_address());
  auto [server, peer] = listener.accept();
  return {std::move(client), std::move(server)};
}

TEST_F(buffered_stream_test, lines_arrive_whole_however_the_bytes_come) {
  auto [writer, reader] = connected_pair();
  auto sender = greenev::spawn([&writer] {
    for (const char* piece : {"hel", "lo\nwor", "ld\nthree\nfour\n", "tail"}) {
      writer.sendall(piece);
      greenev::sleep(0.01);
    }
    writer.shutdown(SHUT_WR);
  });
  buffered_stream in(reader, 4);  // tiny reads: lines span many of them
  EXPECT_EQ(in.readline(), "hello\n");
  EXPECT_EQ(in.readline(), "world\n");
  EXPECT_EQ(in.readline(), "three\n");
  EXPECT_EQ(in.readline(), "four\n");
  EXPECT_EQ(in.readline(), "tail");
  EXPECT_EQ(in.readline(), "");
  EXPECT_EQ(in.read_some(), "");
  sender.get(5s);
}

TEST_F(buffered_stream_test, limits_exact_reads_and_split_delimiters) {
  auto [writer, reader] = connected_pair();
  writer.sendall("0123456789\r\nHEADER: 1\r\n\r\nbody-bytes");
  writer.shutdown(SHUT_WR);
  buffered_stream in(reader, 3);  // "\r\n" falls across reads
  EXPECT_EQ(in.readline(4), "0123");
  EXPECT_EQ(in.read_until("\r\n"), "456789\r\n");
  EXPECT_EQ(in.read_until("\r\n\r\n"), "HEADER: 1\r\n\r\n");
  EXPECT_EQ(in.read(4), "body");
  EXPECT_EQ(in.read(100), "-bytes");  // fewer only at end of stream
  EXPECT_EQ(in.read(1), "");
}

TEST_F(buffered_stream_test, writes_wait_for_flush_or_a_full_buffer) {
  auto [writer, reader] = connected_pair();
  buffered_stream out(writer, 64 * 1024, 10);
  out.write("abc");
  reader.set_timeout(0.05);
  char byte = 0;
  EXPECT_THROW((void)reader.recv_into(std::span<char>(&byte, 1)), greenev::timeout_error)
      << "sent before flush";
  out.flush();
  reader.set_timeout(5.0);
  buffered_stream in(reader);
  EXPECT_EQ(in.read(3), "abc");
  out.write("0123456789");  // reaches write_size: sent at once
  EXPECT_EQ(in.read(10), "0123456789");
}

TEST_F(buffered_stream_test, a_line_protocol_between_two_greenlets) {
  auto [client_socket, server_socket] = connected_pair();
  auto server = greenev::spawn([&server_socket] {
    buffered_stream io(server_socket);
    int answered = 0;
    while (true) {
      const std::string line = io.readline();
      if (line.empty()) break;
      io.write("echo " + line);
      io.flush();
      ++answered;
    }
    return answered;
  });
  buffered_stream io(client_socket);
  for (int i = 0; i < 100; ++i) {
    io.write("line " + std::to_string(i) + "\n");
    io.flush();
    ASSERT_EQ(io.readline(), "echo line " + std::to_string(i) + "\n");
  }
  client_socket.shutdown(SHUT_WR);
  EXPECT_EQ(server.get(5s), 100);
}

TEST_F(buffered_stream_test, the_streams_timeout_comes_through_and_loses_nothing) {
  auto [writer, reader] = connected_pair();
  writer.sendall("partial");
  reader.set_timeout(0.05);
  buffered_stream in(reader);
  EXPECT_THROW((void)in.readline(), greenev::timeout_error);
  EXPECT_EQ(in.buffered(), 7u) << "what was read stays buffered";
  writer.sendall(" line\n");
  reader.set_timeout(5.0);
  EXPECT_EQ(in.readline(), "partial line\n");
}

TEST_F(buffered_stream_test, a_tls_socket_is_a_stream_too) {
  const greenev::testing::test_pki pki;
  const greenev::tls_context server_ctx({.role = greenev::tls_role::server,
                                         .certificate_chain_file = pki.path("server.pem"),
                                         .private_key_file = pki.path("server.key")});
  const greenev::tls_context client_ctx({.ca_file = pki.path("ca.pem")});
  auto [plain_client, plain_server] = connected_pair();
  auto server = greenev::spawn([&, raw = std::move(plain_server)]() mutable {
    greenev::tls_socket tls = server_ctx.wrap_socket(std::move(raw), {.handshake_timeout = 5.0});
    buffered_stream io(tls);
    const std::string line = io.readline();
    io.write("tls " + line);
    io.flush();
  });
  greenev::tls_socket tls = client_ctx.wrap_socket(
      std::move(plain_client), {.server_hostname = "localhost", .handshake_timeout = 5.0});
  buffered_stream io(tls);
  io.write("hello\n");
  io.flush();
  EXPECT_EQ(io.readline(), "tls hello\n");
  server.get(5s);
}

}  // namespace
