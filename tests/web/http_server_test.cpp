// Tests for greenev/http_server.hpp on real loopback sockets: a raw-socket
// client for exact bytes (keep-alive, pipelining, HEAD, HTTP/1.0, chunked
// bodies both ways, 100-continue, limits, smuggling shapes, timeouts and a
// slowloris client), handler failures, graceful stop, many concurrent
// clients, worker threads, the connection-wrapping hook, and curl as a real
// client.
#include <greenev/http_server.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <greenev/beast_stream.hpp>
#include <greenev/detail/scope_exit.hpp>
#include <greenev/error_reporter.hpp>
#include <greenev/event.hpp>
#include <greenev/io.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>
#include <greenev/tls.hpp>

#include "support/captured_process.hpp"
#include "support/hub_fixture.hpp"
#include "support/test_pki.hpp"
#include "support/timing.hpp"

namespace {

namespace http = boost::beast::http;
using namespace std::chrono_literals;
using greenev::address;
using greenev::http_request;
using greenev::http_response;
using greenev::http_server;
using greenev::http_server_options;
using greenev::socket;
using greenev::testing::since;
using steady = std::chrono::steady_clock;

using http_basics = greenev::testing::hub_test;
using http_bodies = greenev::testing::hub_test;
using http_limits = greenev::testing::hub_test;
using http_smuggling = greenev::testing::hub_test;
using http_timeouts = greenev::testing::hub_test;
using http_failures = greenev::testing::hub_test;
using http_stop = greenev::testing::hub_test;
using http_scale = greenev::testing::hub_test;
using http_curl = greenev::testing::hub_test;

const address any_loopback_port = address::parse("127.0.0.1", 0);

// A server on a free loopback port, started; stopped when it goes away.
struct test_server {
  explicit test_server(http_server::handler_type handler, http_server_options options = {})
      : server(any_loopback_port, std::move(handler), std::move(options)) {
    server.start();
  }
  ~test_server() { server.stop(1.0); }
  [[nodiscard]] address where() const { return server.local_address(); }
  [[nodiscard]] std::string url(std::string_view path) const {
    return "http://" + where().to_string() + std::string(path);
  }
  http_server server;
};

void hello(http_request& req, http_response& res) {
  res.set_header("Content-Type", "text/plain");
  res.send("hello " + std::string(req.target()));
}

// A client speaking raw bytes: sends exactly what a test gives it and reads
// responses with Beast's parser (or everything until the server closes).
class raw_client {
 public:
  explicit raw_client(const address& server, greenev::wait_time timeout = 5.0)
      : s_(server.family(), SOCK_STREAM) {
    s_.set_timeout(timeout);
    s_.connect(server);
  }
  void send(std::string_view bytes) { s_.sendall(bytes); }
  // The next response (for a HEAD request: header only).
  http::response<http::string_body> response(bool head = false) {
    greenev::beast_stream<socket> io(s_);
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    if (head) parser.skip(true);
    http::read(io, buffer_, parser);
    return parser.release();
  }
  // Everything until the server closes (what is buffered first).
  std::string rest() {
    std::string all(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    buffer_.consume(buffer_.size());
    char chunk[4096];
    try {
      while (const std::size_t n = s_.recv_into(chunk)) all.append(chunk, n);
    } catch (const std::system_error&) {  // ECONNRESET counts as closed too
    }
    return all;
  }
  // True if the server closed the connection (EOF or reset) within `limit`.
  bool closed_within(greenev::wait_time limit) {
    s_.set_timeout(limit);
    char c;
    try {
      return buffer_.size() == 0 && s_.recv_into({&c, 1}) == 0;
    } catch (const greenev::timeout_error&) {
      return false;
    } catch (const std::system_error&) {
      return true;
    }
  }
  socket& raw() { return s_; }

 private:
  socket s_;
  boost::beast::flat_buffer buffer_;
};

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

// Sends `request` and returns the whole answer up to the server's close.
std::string exchange_until_close(const address& server, std::string_view request) {
  raw_client c(server);
  c.send(request);
  return c.rest();
}

// --- basics -------------------------------------------------------------------------------

TEST_F(http_basics, a_get_sees_the_request_and_gets_date_server_and_length) {
  std::string seen;
  test_server srv([&](http_request& req, http_response& res) {
    seen = std::string(req.method()) + "|" + std::string(req.target()) + "|" + std::string(req.path()) + "|" +
           std::string(req.query()) + "|" + std::to_string(req.version()) + "|" +
           std::string(req.header("x-CUSTOM").value_or("?")) + "|" + (req.header("nope") ? "y" : "n") + "|" +
           std::to_string(req.content_length().value_or(99)) + "|" + (req.body_done() ? "done" : "more");
    EXPECT_EQ(req.peer().family(), AF_INET);
    EXPECT_EQ(req.headers().count("X-Custom"), 1u);
    hello(req, res);
  });
  raw_client c(srv.where());
  c.send("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: test\r\nX-Custom: value\r\n\r\n");
  const auto r = c.response();
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_EQ(r.body(), "hello /a/b?x=1&y=2");
  EXPECT_EQ(r[http::field::content_length], "18");
  EXPECT_EQ(r[http::field::server], "greenev");
  EXPECT_TRUE(r[http::field::date].ends_with(" GMT"));
  EXPECT_EQ(r[http::field::content_type], "text/plain");
  EXPECT_TRUE(r.keep_alive());
  EXPECT_EQ(seen, "GET|/a/b?x=1&y=2|/a/b|x=1&y=2|11|value|n|0|done");
}

// The response header is byte for byte what Beast's serializer writes for it:
// parsed back and serialised again by Beast, it comes out the same.
TEST_F(http_basics, the_response_header_is_what_beasts_serializer_writes) {
  test_server srv([](http_request& req, http_response& res) {
    if (req.target() == "/custom") res.set_status(299);  // no standard reason
    if (req.target() == "/missing") res.set_status(404);
    res.set_header("X-One", "1");
    res.add_header("Set-Cookie", "a=1");
    res.add_header("Set-Cookie", "b=2; Path=/");
    res.set_header("x-lower-case", "  spaced value");
    res.send("body");
  });
  for (const char* request :
       {"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /custom HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"}) {
    SCOPED_TRACE(request);
    const std::string answer = exchange_until_close(srv.where(), request);
    const std::size_t end = answer.find("\r\n\r\n");
    ASSERT_NE(end, std::string::npos) << answer;
    const std::string sent = answer.substr(0, end + 4);

    http::response_parser<http::empty_body> parser;
    parser.skip(true);
    boost::system::error_code ec;
    parser.put(boost::asio::buffer(sent), ec);
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_TRUE(parser.is_header_done());
    http::response<http::empty_body> parsed = parser.release();
    http::response_serializer<http::empty_body> serializer{parsed};
    serializer.split(true);
    std::string by_beast;
    while (!serializer.is_header_done()) {
      serializer.next(ec, [&](boost::system::error_code& visit_ec, const auto& buffers) {
        visit_ec = {};
        for (auto it = boost::asio::buffer_sequence_begin(buffers);
             it != boost::asio::buffer_sequence_end(buffers); ++it) {
          const boost::asio::const_buffer b = *it;
          by_beast.append(static_cast<const char*>(b.data()), b.size());
        }
        serializer.consume(boost::asio::buffer_size(buffers));
      });
      ASSERT_FALSE(ec) << ec.message();
    }
    EXPECT_EQ(sent, by_beast);
    EXPECT_NE(sent.find("\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2; Path=/\r\n"), std::string::npos) << sent;
  }
  EXPECT_EQ(status_line(exchange_until_close(srv.where(),
                                             "GET /custom HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")),
            "HTTP/1.1 299 <unknown-status>");
}

TEST_F(http_basics, keep_alive_serves_several_requests_on_one_connection) {
  std::set<std::string> peers;
  test_server srv([&](http_request& req, http_response& res) {
    peers.insert(req.peer().to_string());
    hello(req, res);
  });
  raw_client c(srv.where());
  for (int i = 0; i < 3; ++i) {
    c.send("GET /" + std::to_string(i) + " HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(c.response().body(), "hello /" + std::to_string(i));
  }
  EXPECT_EQ(peers.size(), 1u);
  EXPECT_EQ(srv.server.connections(), 1u);
  EXPECT_EQ(srv.server.requests(), 3u);
  c.send("GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  const auto last = c.response();
  EXPECT_EQ(last[http::field::connection], "close");
  EXPECT_TRUE(c.closed_within(2.0));
}

TEST_F(http_basics, pipelined_requests_in_one_write_are_answered_in_order) {
  test_server srv([](http_request& req, http_response& res) {
    if (req.path() == "/slow") greenev::sleep(0.05);  // the order holds even when one takes longer
    const std::string body = req.read_body();
    res.send(std::string(req.target()) + ":" + body);
  });
  raw_client c(srv.where());
  c.send(
      "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
      "POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
      "POST /3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
      "GET /4 HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(c.response().body(), "/1:");
  EXPECT_EQ(c.response().body(), "/slow:abc");
  EXPECT_EQ(c.response().body(), "/3:xy");
  EXPECT_EQ(c.response().body(), "/4:");
}

TEST_F(http_basics, head_gets_the_length_but_no_body) {
  test_server srv([](http_request& req, http_response& res) {
    if (req.path() == "/stream") {
      res.write("abc");
      res.write("def");
      return;
    }
    res.send("twelve bytes");
  });
  raw_client c(srv.where());
  c.send(
      "HEAD / HTTP/1.1\r\nHost: t\r\n\r\nHEAD /stream HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: "
      "t\r\n\r\n");
  const auto head = c.response(true);
  EXPECT_EQ(head[http::field::content_length], "12");
  const auto streamed = c.response(true);
  EXPECT_EQ(streamed.result_int(), 200u);
  const auto get = c.response();  // parses only if no body bytes came after the HEAD answers
  EXPECT_EQ(get.body(), "twelve bytes");
}

TEST_F(http_basics, http_1_0_gets_no_chunks_and_a_close_unless_it_asks_for_keep_alive) {
  test_server srv([](http_request& req, http_response& res) {
    if (req.path() == "/stream") {
      res.write("part1,");
      res.write("part2");
      return;
    }
    res.send("whole");
  });
  const std::string streamed = exchange_until_close(srv.where(), "GET /stream HTTP/1.0\r\n\r\n");
  EXPECT_EQ(status_line(streamed), "HTTP/1.0 200 OK");
  EXPECT_EQ(streamed.find("chunked"), std::string::npos);
  EXPECT_TRUE(streamed.ends_with("\r\n\r\npart1,part2"));

  const std::string plain = exchange_until_close(srv.where(), "GET / HTTP/1.0\r\n\r\n");
  EXPECT_TRUE(plain.ends_with("\r\n\r\nwhole"));
  EXPECT_EQ(plain.find("keep-alive"), std::string::npos);

  raw_client c(srv.where());
  c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  const auto first = c.response();
  EXPECT_EQ(first[http::field::connection], "keep-alive");
  c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(c.response().body(), "whole");
}

TEST_F(http_basics, response_headers_with_cr_or_lf_are_refused_and_never_sent) {
  std::vector<std::string> refused;
  test_server srv([&](http_request&, http_response& res) {
    for (const auto& [name, value] :
         std::vector<std::pair<std::string, std::string>>{{"X-Evil", "a\r\nSet-Cookie: owned=1"},
                                                          {"X-Evil", "a\nb"},
                                                          {"X-Evil", std::string("a\0b", 3)},
                                                          {"Bad Name", "v"},
                                                          {"X-Evil\r\nSet-Cookie", "v"},
                                                          {"Transfer-Encoding", "chunked"},
                                                          {"Content-Length", "12abc"}}) {
      try {
        res.set_header(name, value);
      } catch (const std::invalid_argument& error) {
        refused.emplace_back(error.what());
      }
      try {
        res.add_header(name, value);
      } catch (const std::invalid_argument&) {
        refused.emplace_back("add");
      }
    }
    res.set_header("X-Good", "fine");
    res.send("ok");
  });
  const std::string answer =
      exchange_until_close(srv.where(), "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(refused.size(), 14u);
  EXPECT_EQ(answer.find("owned"), std::string::npos);
  EXPECT_EQ(answer.find("Evil"), std::string::npos);
  EXPECT_NE(answer.find("X-Good: fine\r\n"), std::string::npos);
  EXPECT_TRUE(answer.ends_with("\r\n\r\nok"));
}

TEST_F(http_basics, status_and_headers_are_fixed_once_the_response_started) {
  std::vector<std::string> errors;
  test_server srv([&](http_request&, http_response& res) {
    EXPECT_THROW(res.set_status(99), std::invalid_argument);
    EXPECT_THROW(res.set_status(101), std::invalid_argument);
    res.set_status(201);
    res.write({});  // headers only
    EXPECT_TRUE(res.started());
    for (auto step :
         {+[](http_response& r) { r.set_status(404); }, +[](http_response& r) { r.set_header("A", "b"); },
          +[](http_response& r) { r.send("x"); }}) {
      try {
        step(res);
      } catch (const std::logic_error& error) {
        errors.emplace_back(error.what());
      }
    }
    res.write("body");
    res.finish();
    EXPECT_TRUE(res.finished());
    EXPECT_THROW(res.write("more"), std::logic_error);
  });
  raw_client c(srv.where());
  c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto r = c.response();
  EXPECT_EQ(r.result_int(), 201u);
  EXPECT_EQ(r.body(), "body");
  EXPECT_EQ(errors.size(), 3u);
}

// --- bodies ---------------------------------------------------------------------------------

TEST_F(http_bodies, a_chunked_request_body_is_read_in_pieces) {
  std::vector<std::size_t> pieces;
  test_server srv([&](http_request& req, http_response& res) {
    EXPECT_TRUE(req.chunked());
    EXPECT_FALSE(req.content_length());
    std::string body;
    char small[4];
    while (const std::size_t n = req.read_some(small)) {
      pieces.push_back(n);
      body.append(small, n);
    }
    EXPECT_TRUE(req.body_done());
    res.send(body);
  });
  raw_client c(srv.where());
  c.send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n");
  greenev::sleep(0.05);  // the handler reads while the rest is still to come
  c.send("6\r\n world\r\n0\r\nTrailer: x\r\n\r\n");
  EXPECT_EQ(c.response().body(), "hello world");
  EXPECT_GE(pieces.size(), 3u);
  for (const std::size_t n : pieces) EXPECT_LE(n, 4u);
}

TEST_F(http_bodies, streamed_responses_are_chunked_or_use_the_given_length) {
  test_server srv([](http_request& req, http_response& res) {
    if (req.path() == "/length") res.set_content_length(10);
    for (int i = 0; i < 5; ++i) {
      res.write("ab");
      greenev::sleep(0.001);
    }
  });
  raw_client c(srv.where());
  c.send("GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto chunked = c.response();
  EXPECT_EQ(chunked[http::field::transfer_encoding], "chunked");
  EXPECT_EQ(chunked.body(), "ababababab");
  c.send("GET /length HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto sized = c.response();
  EXPECT_EQ(sized[http::field::content_length], "10");
  EXPECT_EQ(sized.count(http::field::transfer_encoding), 0u);
  EXPECT_EQ(sized.body(), "ababababab");
}

TEST_F(http_bodies, an_empty_handler_sends_an_empty_200_and_204_has_no_length) {
  test_server srv([](http_request& req, http_response& res) {
    if (req.path() == "/204") res.set_status(204);
  });
  raw_client c(srv.where());
  c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /204 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  const auto empty = c.response();
  EXPECT_EQ(empty[http::field::content_length], "0");
  const std::string rest = c.rest();
  EXPECT_EQ(status_line(rest), "HTTP/1.1 204 No Content");
  EXPECT_EQ(rest.find("Content-Length"), std::string::npos);
}

TEST_F(http_bodies, expect_100_continue_is_answered_only_when_the_handler_reads) {
  test_server srv([](http_request& req, http_response& res) {
    greenev::sleep(0.2);  // decides late; the client must not have had a 100 yet
    res.send("got " + req.read_body());
  });
  raw_client c(srv.where());
  c.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  c.raw().set_timeout(0.1);
  EXPECT_THROW((void)c.raw().recv(64), greenev::timeout_error);  // nothing before the handler reads
  c.raw().set_timeout(5.0);
  std::string interim;
  while (!interim.ends_with("\r\n\r\n")) interim += c.raw().recv(1);
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  c.send("hello");
  EXPECT_EQ(c.response().body(), "got hello");
}

TEST_F(http_bodies, a_handler_that_ignores_an_expected_body_gets_no_100_and_the_connection_closes) {
  test_server srv([](http_request&, http_response& res) {
    res.set_status(401);
    res.send("no");
  });
  raw_client c(srv.where());
  c.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  const std::string answer = c.rest();
  EXPECT_EQ(status_line(answer), "HTTP/1.1 401 Unauthorized");
  EXPECT_NE(answer.find("Connection: close"), std::string::npos);
}

TEST_F(http_bodies, an_unread_small_body_is_drained_and_the_connection_kept) {
  test_server srv([](http_request& req, http_response& res) { res.send(std::string(req.path())); });
  raw_client c(srv.where());
  c.send("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'x') +
         "GET /b HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(c.response().body(), "/a");
  EXPECT_EQ(c.response().body(), "/b");
}

// --- limits -----------------------------------------------------------------------------------

TEST_F(http_limits, each_limit_has_its_status_and_then_the_connection_closes) {
  std::atomic<int> calls{0};
  test_server srv(
      [&](http_request& req, http_response& res) {
        ++calls;
        res.send(req.read_body());
      },
      {.max_request_line = 100, .max_header_bytes = 1000, .max_body_bytes = 50});
  const auto status_of = [&](const std::string& request) {
    raw_client c(srv.where());
    c.send(request);
    const std::string answer = c.rest();
    return status_line(answer);
  };
  EXPECT_EQ(status_of("GET /" + std::string(200, 'a') + " HTTP/1.1\r\nHost: t\r\n\r\n"),
            "HTTP/1.1 414 URI Too Long");
  EXPECT_EQ(status_of("GET /" + std::string(2000, 'a')), "HTTP/1.1 414 URI Too Long");  // never ends
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(2000, 'b') + "\r\n\r\n"),
            "HTTP/1.1 431 Request Header Fields Too Large");
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 51\r\n\r\n" + std::string(51, 'c')),
            "HTTP/1.1 413 Payload Too Large");
  EXPECT_EQ(calls.load(), 0);  // none of those reached the handler
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" +
                      std::string(32, 'd') + "\r\n20\r\n" + std::string(32, 'd') + "\r\n0\r\n\r\n"),
            "HTTP/1.1 413 Payload Too Large");
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 50\r\n\r\n" +
                      std::string(50, 'e')),
            "HTTP/1.1 200 OK");
}

TEST_F(http_limits, malformed_requests_get_400_and_unknown_versions_505) {
  std::atomic<int> calls{0};
  test_server srv([&](http_request& req, http_response& res) {
    ++calls;
    hello(req, res);
  });
  for (const std::string& bad :
       {std::string("GARBAGE\r\n\r\n"), std::string("GET / HTTP/1.1\r\nNo colon here\r\n\r\n"),
        std::string("GET / HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n"),
        std::string("GET /a b HTTP/1.1\r\nHost: t\r\n\r\n"), std::string("GET / HTTX/1.1\r\n\r\n"),
        std::string("GET / HTTP/1.1\nHost: t\n\n"), std::string("GET / HTTP/1.1\r\n\r\n")}) {
    EXPECT_EQ(status_line(exchange_until_close(srv.where(), bad)), "HTTP/1.1 400 Bad Request") << bad;
  }
  EXPECT_EQ(status_line(exchange_until_close(srv.where(), "GET / HTTP/2.0\r\nHost: t\r\n\r\n")),
            "HTTP/1.1 505 HTTP Version Not Supported");
  EXPECT_EQ(
      status_line(exchange_until_close(srv.where(), "GET / HTTP/1.1\r\nHost: t\r\nExpect: magic\r\n\r\n")),
      "HTTP/1.1 417 Expectation Failed");
  EXPECT_EQ(calls.load(), 0);
}

// The bad-input table: every malformed, oversized or ambiguous request shape in one
// place, each answered with its status and a close, none reaching the handler, while a
// kept-alive client of the same server is served before and after every one of them.
TEST_F(http_limits, the_bad_input_table_gets_its_answers_and_the_server_serves_on) {
  std::atomic<int> calls{0};
  test_server srv(
      [&](http_request& req, http_response& res) {
        ++calls;
        res.send(req.read_body());
      },
      {.max_request_line = 200, .max_header_bytes = 2000, .max_body_bytes = 100});
  struct shape {
    std::string request;
    unsigned status;
  };
  const std::string host = "Host: t\r\n";
  const std::vector<shape> table = {
      // request lines
      {"GARBAGE\r\n\r\n", 400},
      {"GET\r\n\r\n", 400},
      {"GET / HTTP/1.1 extra\r\n" + host + "\r\n", 400},
      {"GET  / HTTP/1.1\r\n" + host + "\r\n", 400},
      {"G@T / HTTP/1.1\r\n" + host + "\r\n", 400},
      {"GET /a b HTTP/1.1\r\n" + host + "\r\n", 400},
      {std::string("GET /\0 HTTP/1.1\r\n", 17) + host + "\r\n", 400},
      {"GET / HTTX/1.1\r\n" + host + "\r\n", 400},
      {"GET / HTTP/2.0\r\n" + host + "\r\n", 505},
      {"GET / HTTP/1.1\n" + std::string("Host: t\n\n"), 400},
      {"GET /" + std::string(300, 'a') + " HTTP/1.1\r\n" + host + "\r\n", 414},
      // header fields
      {"GET / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n" + host + "No colon here\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n" + host + ": empty name\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n" + host + "Bad Name: v\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n" + host + "Name : v\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n" + host + std::string("X: a\0b\r\n", 8) + "\r\n", 400},
      {"GET / HTTP/1.1\r\n" + host + "X: a\rb\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n" + host + "X-A: 1\r\n  folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n" + host + "X-Big: " + std::string(3000, 'b') + "\r\n\r\n", 431},
      {"GET / HTTP/1.1\r\n" + host + "Expect: magic\r\n\r\n", 417},
      // framing and bodies
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: abc\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: +3\r\n\r\nabc", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 3, 3\r\n\r\nabc", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999999\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 101\r\n\r\n" + std::string(101, 'c'), 413},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\nabc", 400},
      {"POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host +
           "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       400},
      {"GET / HTTP/1.1\r\n" + host + "Transfer-Encoding:\r\n\tchunked\r\n\r\n0\r\n\r\n", 400},
  };
  ASSERT_GE(table.size(), 30u);
  raw_client regular(srv.where());
  const auto served = [&regular](const std::string& path) {
    regular.send("GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n");
    return regular.response().result_int() == 200;
  };
  EXPECT_TRUE(served("/first"));
  const int calls_before = calls.load();
  for (const shape& bad : table) {
    raw_client c(srv.where());
    c.send(bad.request + "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n");
    const std::string answer = c.rest();
    EXPECT_EQ(status_line(answer).substr(0, 12), "HTTP/1.1 " + std::to_string(bad.status)) << bad.request;
    EXPECT_EQ(answer.find("\nHTTP/"), std::string::npos) << "a second response to: " << bad.request;
    EXPECT_TRUE(served("/between")) << "the kept-alive client was not served after: " << bad.request;
  }
  EXPECT_EQ(calls.load(), calls_before + static_cast<int>(table.size()))
      << "a bad request reached the handler";
}

// --- request smuggling shapes -------------------------------------------------------------------

TEST_F(http_smuggling, ambiguous_framing_is_refused_with_400_and_a_close) {
  std::atomic<int> calls{0};
  test_server srv([&](http_request& req, http_response& res) {
    ++calls;
    res.send(req.read_body());
  });
  const std::vector<std::string> shapes = {
      // both Content-Length and Transfer-Encoding, either order
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
      // duplicate and conflicting Content-Length
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc",
      // codings other than a lone chunked
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
      "chunked\r\n\r\n0\r\n\r\n",
      // obs-fold continuation lines
      "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  folded\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n\tchunked\r\n\r\n0\r\n\r\n",
      // two Hosts
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
  };
  for (const std::string& shape : shapes) {
    raw_client c(srv.where());
    c.send(shape + "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n");
    const std::string answer = c.rest();
    EXPECT_EQ(status_line(answer), "HTTP/1.1 400 Bad Request") << shape;
    EXPECT_EQ(answer.find("\nHTTP/"), std::string::npos) << "a second response: " << answer;
  }
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(http_smuggling, bad_chunk_sizes_fail_the_body_read_with_400) {
  std::vector<unsigned> statuses;
  test_server srv([&](http_request& req, http_response& res) {
    try {
      res.send(req.read_body());
    } catch (const greenev::http_error& error) {
      statuses.push_back(error.status());
      throw;
    }
  });
  for (const std::string& body :
       {std::string("zz\r\nabc\r\n0\r\n\r\n"), std::string("-1\r\na\r\n0\r\n\r\n"),
        std::string("3\r\nabcX\r\n0\r\n\r\n"), std::string("fffffffffffffffff\r\na\r\n0\r\n\r\n")}) {
    const std::string answer =
        exchange_until_close(srv.where(), "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                              body + "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(status_line(answer), "HTTP/1.1 400 Bad Request") << body;
    EXPECT_EQ(answer.find("\nHTTP/"), std::string::npos) << answer;
  }
  EXPECT_EQ(statuses, (std::vector<unsigned>{400, 400, 400, 400}));
}

// --- timeouts ------------------------------------------------------------------------------------

TEST_F(http_timeouts, an_unfinished_header_gets_408_within_the_header_timeout) {
  test_server srv(hello, {.header_timeout = 0.2});
  // Before the connect: the server counts the header timeout from its accept,
  // which may come before the client's connect returns.
  const auto start = steady::now();
  raw_client c(srv.where());
  c.send("GET / HTTP/1.1\r\nHost: t\r\n");
  const std::string answer = c.rest();
  EXPECT_EQ(status_line(answer), "HTTP/1.1 408 Request Timeout");
  EXPECT_GE(since(start), 150ms);
  EXPECT_LT(since(start), 3000ms);
}

TEST_F(http_timeouts, a_slowloris_client_is_closed_at_the_header_timeout_however_it_trickles) {
  test_server srv(hello, {.header_timeout = 0.3});
  raw_client c(srv.where());
  const auto start = steady::now();
  const std::string request =
      "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  bool refused = false;
  for (const char byte : request) {  // one byte every 20 ms: each read is quick, the header never ends
    try {
      c.send({&byte, 1});
    } catch (const std::system_error&) {
      refused = true;
      break;
    }
    if (greenev::wait_read(c.raw().fd(), 0.02)) break;  // answered: stop trickling
  }
  const std::string answer = c.rest();
  EXPECT_TRUE(refused || status_line(answer) == "HTTP/1.1 408 Request Timeout") << answer;
  EXPECT_LT(since(start), 2000ms);
  c.raw().close();  // the server's greenlet ends once the client is gone
  for (int i = 0; i < 100 && srv.server.connections() > 0; ++i) greenev::sleep(0.01);
  EXPECT_EQ(srv.server.connections(), 0u);
}

TEST_F(http_timeouts, an_idle_kept_alive_connection_is_closed_after_keep_alive_timeout) {
  test_server srv(hello, {.keep_alive_timeout = 0.2});
  raw_client c(srv.where());
  // Before the request: the server starts the keep-alive timeout as it sends
  // the response, before the client has read it.
  const auto start = steady::now();
  c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(c.response().result_int(), 200u);
  EXPECT_TRUE(c.closed_within(3.0));
  EXPECT_GE(since(start), 150ms);
  EXPECT_LT(since(start), 2000ms);
  // A connection that never sends a byte costs no more than the header timeout.
  test_server quiet(hello, {.header_timeout = 0.2});
  raw_client silent(quiet.where());
  EXPECT_TRUE(silent.closed_within(3.0));
}

TEST_F(http_timeouts, a_stalled_body_fails_the_read_with_408) {
  std::vector<unsigned> statuses;
  test_server srv(
      [&](http_request& req, http_response& res) {
        try {
          res.send(req.read_body());
        } catch (const greenev::http_error& error) {
          statuses.push_back(error.status());
          throw;
        }
      },
      {.body_timeout = 0.2});
  raw_client c(srv.where());
  c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
  const std::string answer = c.rest();
  EXPECT_EQ(status_line(answer), "HTTP/1.1 408 Request Timeout");
  EXPECT_EQ(statuses, std::vector<unsigned>{408});
}

// --- failures -------------------------------------------------------------------------------------

class captured_reports {
 public:
  captured_reports() {
    previous_ = greenev::set_error_reporter([this](std::string_view line) {
      const std::lock_guard<std::mutex> hold(lock_);
      lines_.emplace_back(line);
    });
  }
  captured_reports(const captured_reports&) = delete;
  captured_reports& operator=(const captured_reports&) = delete;
  ~captured_reports() { greenev::set_error_reporter(previous_); }
  std::vector<std::string> lines() {
    const std::lock_guard<std::mutex> hold(lock_);
    return lines_;
  }

 private:
  greenev::error_reporter previous_;
  std::mutex lock_;
  std::vector<std::string> lines_;
};

TEST_F(http_failures, an_exception_before_the_response_is_a_reported_500_and_a_close) {
  captured_reports reports;
  test_server srv([](http_request& req, http_response& res) {
    if (req.path() == "/boom") throw std::runtime_error("kaboom");
    hello(req, res);
  });
  raw_client c(srv.where());
  c.send("GET /boom HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n");
  const std::string answer = c.rest();
  EXPECT_EQ(status_line(answer), "HTTP/1.1 500 Internal Server Error");
  EXPECT_EQ(answer.find("/after"), std::string::npos);
  EXPECT_EQ(answer.find("kaboom"), std::string::npos);  // not shown to the client
  const auto lines = reports.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("greenev: http_server: handler failed on GET /boom from 127.0.0.1:"),
            std::string::npos);
  EXPECT_NE(lines[0].find("kaboom"), std::string::npos);
}

TEST_F(http_failures, an_exception_after_the_response_started_closes_the_connection) {
  captured_reports reports;
  test_server srv([](http_request&, http_response& res) {
    res.write("partial");
    throw std::runtime_error("late failure");
  });
  raw_client c(srv.where());
  c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  const std::string answer = c.rest();
  EXPECT_EQ(status_line(answer), "HTTP/1.1 200 OK");
  EXPECT_NE(answer.find("7\r\npartial\r\n"), std::string::npos);
  EXPECT_EQ(answer.find("0\r\n\r\n"), std::string::npos);  // no last chunk: the client sees it cut short
  ASSERT_EQ(reports.lines().size(), 1u);
  EXPECT_NE(reports.lines()[0].find("late failure"), std::string::npos);
}

TEST_F(http_failures, an_http_error_from_the_handler_is_its_status_unreported) {
  captured_reports reports;
  test_server srv([](http_request&, http_response&) { throw greenev::http_error(404, "no such page"); });
  const std::string answer = exchange_until_close(srv.where(), "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(status_line(answer), "HTTP/1.1 404 Not Found");
  EXPECT_TRUE(answer.ends_with("404 Not Found: no such page\n"));
  EXPECT_TRUE(reports.lines().empty());
}

TEST_F(http_failures, a_short_streamed_body_is_reported_and_closes) {
  captured_reports reports;
  test_server srv([](http_request&, http_response& res) {
    res.set_content_length(10);
    res.write("abc");
  });
  raw_client c(srv.where());
  c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  const std::string answer = c.rest();
  EXPECT_TRUE(answer.ends_with("\r\n\r\nabc"));
  ASSERT_EQ(reports.lines().size(), 1u);
  EXPECT_NE(reports.lines()[0].find("3 of 10"), std::string::npos);
}

TEST_F(http_failures, bad_options_and_handlers_are_refused) {
  EXPECT_THROW(http_server(any_loopback_port, nullptr), std::invalid_argument);
  EXPECT_THROW(http_server(any_loopback_port, hello, {.max_header_bytes = 0}), std::invalid_argument);
  EXPECT_THROW(http_server(any_loopback_port, hello, {.workers = 0}), std::invalid_argument);
}

TEST_F(http_failures, the_wrap_hook_carries_the_connection_and_its_failures_close_it) {
  // A stream with socket's member names standing in for the socket, as a
  // TLS socket will: it counts what goes through it.
  struct counting_socket {
    socket inner;
    std::size_t* in;
    std::size_t* out;
    std::size_t recv_into(std::span<char> b) {
      const std::size_t n = inner.recv_into(b);
      *in += n;
      return n;
    }
    std::size_t send(std::string_view d) {
      const std::size_t n = inner.send(d);
      *out += n;
      return n;
    }
    void sendall(std::string_view d) { inner.sendall(d); }
    void shutdown(int how) { inner.shutdown(how); }
    void close() { inner.close(); }
    void set_timeout(greenev::wait_time t) { inner.set_timeout(t); }
  };
  std::size_t in = 0;
  std::size_t out = 0;
  bool fail = false;
  captured_reports reports;
  test_server srv(hello, {.wrap = [&](socket s) -> std::unique_ptr<greenev::byte_stream> {
                    if (fail) throw std::runtime_error("handshake refused");
                    return std::make_unique<greenev::byte_stream_of<counting_socket>>(
                        counting_socket{std::move(s), &in, &out});
                  }});
  const std::string request = "GET /w HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  const std::string answer = exchange_until_close(srv.where(), request);
  EXPECT_TRUE(answer.ends_with("hello /w"));
  EXPECT_EQ(in, request.size());
  EXPECT_EQ(out, answer.size());
  fail = true;
  EXPECT_EQ(exchange_until_close(srv.where(), request), "");
  ASSERT_EQ(reports.lines().size(), 1u);
  EXPECT_NE(reports.lines()[0].find("handshake refused"), std::string::npos);
}

// --- graceful stop -----------------------------------------------------------------------------------

TEST_F(http_stop, stop_closes_idle_connections_and_lets_a_request_in_flight_finish) {
  // Events order the steps, not a sleep in /slow: /slow finishes only once
  // the idle connection was seen closed. So stop() must close it at once (had
  // it waited for /slow first, /slow would be killed at stop's timeout and
  // answer no 200), and must then wait for /slow to finish.
  greenev::event in_flight;
  greenev::event idle_seen_closed;
  bool slow_finished = false;
  auto srv = std::make_unique<test_server>([&](http_request& req, http_response& res) {
    const bool slow = req.path() == "/slow";
    if (slow) {
      in_flight.set();
      (void)idle_seen_closed.wait(10.0);
    }
    hello(req, res);
    if (slow) slow_finished = true;
  });
  const address where = srv->where();
  raw_client idle(where);
  idle.send("GET /first HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(idle.response().result_int(), 200u);
  bool idle_closed = false;
  auto idle_watch = greenev::spawn([&] {
    idle_closed = idle.closed_within(5.0);
    idle_seen_closed.set();
  });
  raw_client busy(where);
  busy.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string busy_answer;
  auto busy_reader = greenev::spawn([&] { busy_answer = busy.rest(); });
  in_flight.wait();
  const auto start = steady::now();
  srv->server.stop(5.0);
  EXPECT_LT(since(start), 4000ms);
  EXPECT_TRUE(slow_finished) << "stop() returned before /slow finished";
  idle_watch.join();
  busy_reader.join();
  EXPECT_TRUE(idle_closed) << "the idle connection was not closed";
  EXPECT_EQ(status_line(busy_answer), "HTTP/1.1 200 OK");
  EXPECT_NE(busy_answer.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(busy_answer.ends_with("hello /slow"));
  socket late(AF_INET, SOCK_STREAM);
  EXPECT_THROW(late.connect(where), std::system_error);  // no longer accepting
  srv.reset();
}

TEST_F(http_stop, serve_forever_returns_after_stop_and_the_server_restarts) {
  test_server srv(hello);
  auto stopper = greenev::spawn([&] {
    greenev::sleep(0.05);
    srv.server.stop();
  });
  srv.server.serve_forever();
  stopper.join();
  EXPECT_FALSE(srv.server.started());
  srv.server.start();
  EXPECT_TRUE(exchange_until_close(srv.where(), "GET /again HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                  .ends_with("hello /again"));
}

// --- scale and workers -------------------------------------------------------------------------------

TEST_F(http_scale, two_hundred_clients_each_make_ten_kept_alive_requests) {
  constexpr int clients = 200;
  constexpr int requests = 10;
  std::set<std::string> peers;
  test_server srv([&](http_request& req, http_response& res) {
    peers.insert(req.peer().to_string());
    greenev::sleep(0.001);  // let the other connections interleave
    res.send(std::string(req.target()));
  });
  std::atomic<int> good{0};
  std::vector<greenev::basic_task> tasks;
  for (int i = 0; i < clients; ++i) {
    tasks.push_back(greenev::spawn([&, i] {
      raw_client c(srv.where(), 10.0);
      for (int j = 0; j < requests; ++j) {
        const std::string target = "/" + std::to_string(i) + "/" + std::to_string(j);
        c.send("GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\n");
        if (c.response().body() == target) ++good;
      }
    }));
  }
  greenev::joinall(tasks, {}, true);  // any client failure fails the test
  EXPECT_EQ(good.load(), clients * requests);
  EXPECT_EQ(peers.size(), static_cast<std::size_t>(clients));
  EXPECT_EQ(srv.server.requests(), static_cast<std::uint64_t>(clients * requests));
}

TEST_F(http_scale, worker_threads_share_the_port) {
  std::mutex lock;
  std::set<std::thread::id> threads;
  test_server srv(
      [&](http_request& req, http_response& res) {
        {
          const std::lock_guard<std::mutex> hold(lock);
          threads.insert(std::this_thread::get_id());
        }
        res.send(std::string(req.target()));
      },
      {.workers = 2});
  std::atomic<int> good{0};
  std::vector<greenev::basic_task> tasks;
  for (int i = 0; i < 40; ++i) {
    tasks.push_back(greenev::spawn([&, i] {
      raw_client c(srv.where(), 10.0);
      for (int j = 0; j < 3; ++j) {
        const std::string target = "/" + std::to_string(i) + "/" + std::to_string(j);
        c.send("GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\n");
        if (c.response().body() == target) ++good;
      }
    }));
  }
  greenev::joinall(tasks, {}, true);
  EXPECT_EQ(good.load(), 120);
  EXPECT_EQ(threads.size(), 2u);  // SO_REUSEPORT spread 40 connections over both (2^-39 odds otherwise)
  EXPECT_EQ(srv.server.requests(), 120u);
}

TEST_F(http_scale, max_connections_limits_connections_served_at_once) {
  // The first connection is kept far longer than the second's 0.1 s wait
  // (a short keep-alive timeout could run out first on a loaded machine);
  // closing it frees the slot.
  test_server srv(hello, {.keep_alive_timeout = 30.0, .max_connections = 1});
  raw_client first(srv.where());
  first.send("GET /1 HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(first.response().body(), "hello /1");
  raw_client second(srv.where());  // accepted by the kernel, not served while the first is kept
  second.send("GET /2 HTTP/1.1\r\nHost: t\r\n\r\n");
  second.raw().set_timeout(0.1);
  EXPECT_THROW((void)second.raw().recv(1), greenev::timeout_error);
  first.raw().close();
  second.raw().set_timeout(5.0);
  EXPECT_EQ(second.response().body(), "hello /2");  // once the first is gone
}

// --- curl ---------------------------------------------------------------------------------------------

greenev::testing::captured_process::result run_curl(std::vector<std::string> arguments) {
  std::vector<std::string> argv = {"curl", "-sS", "--max-time", "10"};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  greenev::testing::captured_process curl(argv);
  return curl.wait(20s);
}

TEST_F(http_curl, curl_gets_a_page_over_http_1_1_and_1_0) {
  std::vector<unsigned> versions;
  test_server srv([&](http_request& req, http_response& res) {
    versions.push_back(req.version());
    hello(req, res);
  });
  const auto r11 = run_curl({"-i", srv.url("/one")});
  EXPECT_EQ(r11.status, 0) << r11.output;
  EXPECT_EQ(status_line(r11.output), "HTTP/1.1 200 OK");
  EXPECT_TRUE(r11.output.ends_with("hello /one"));
  const auto r10 = run_curl({"--http1.0", "-i", srv.url("/two")});
  EXPECT_EQ(r10.status, 0) << r10.output;
  EXPECT_EQ(status_line(r10.output), "HTTP/1.0 200 OK");
  EXPECT_TRUE(r10.output.ends_with("hello /two"));
  EXPECT_EQ(versions, (std::vector<unsigned>{11, 10}));
}

TEST_F(http_curl, curl_reuses_a_kept_alive_connection) {
  std::vector<std::string> peers;
  test_server srv([&](http_request& req, http_response& res) {
    peers.push_back(req.peer().to_string());
    hello(req, res);
  });
  const auto r = run_curl({"-w", "[%{num_connects}]", srv.url("/a"), srv.url("/b"), srv.url("/c")});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "hello /a[1]hello /b[0]hello /c[0]");
  ASSERT_EQ(peers.size(), 3u);
  EXPECT_EQ(peers[0], peers[1]);
  EXPECT_EQ(peers[1], peers[2]);
}

TEST_F(http_curl, curl_uploads_a_chunked_body) {
  char path[] = "/tmp/greenev_http_upload_XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  const auto remove_file = greenev::detail::scope_exit([&] { std::remove(path); });
  std::string content;
  for (int i = 0; i < 20000; ++i) content += std::to_string(i) + ",";
  std::ofstream(path, std::ios::binary) << content;
  test_server srv([](http_request& req, http_response& res) {
    const std::string body = req.read_body();
    res.send(std::to_string(body.size()) + (req.chunked() ? " chunked " : " sized ") +
             std::to_string(std::hash<std::string>{}(body)));
  });
  const auto r = run_curl(
      {"-H", "Transfer-Encoding: chunked", "--data-binary", std::string("@") + path, srv.url("/up")});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output,
            std::to_string(content.size()) + " chunked " + std::to_string(std::hash<std::string>{}(content)));
}

// HTTPS through http_server_options::tls: curl with the test CA, keep-alive
// over one TLS connection, a greenev TLS client, and a plain-HTTP client on
// the HTTPS port (closed, reported once, the server serves on).
using http_tls = greenev::testing::hub_test;

greenev::tls_context server_context(const greenev::testing::test_pki& pki) {
  return greenev::tls_context({.role = greenev::tls_role::server,
                               .certificate_chain_file = pki.path("server.pem"),
                               .private_key_file = pki.path("server.key")});
}

TEST_F(http_tls, curl_gets_pages_over_https_on_one_kept_alive_connection) {
  const greenev::testing::test_pki pki;
  test_server srv(hello, {.tls = server_context(pki)});
  const std::string port = std::to_string(srv.where().port());
  const std::string base = "https://localhost:" + port;
  const auto r = run_curl({"--cacert", pki.path("ca.pem"), "--resolve", "localhost:" + port + ":127.0.0.1",
                           "-w", "[%{num_connects}]", base + "/a", base + "/b"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "hello /a[1]hello /b[0]");
  // Without the CA, curl refuses the certificate: verification is real.
  const auto untrusted = run_curl({"--resolve", "localhost:" + port + ":127.0.0.1", base + "/c"});
  EXPECT_NE(untrusted.status, 0) << untrusted.output;
}

TEST_F(http_tls, a_greenev_tls_client_speaks_http_to_it) {
  const greenev::testing::test_pki pki;
  test_server srv(hello, {.tls = server_context(pki)});
  const greenev::tls_context client({.ca_file = pki.path("ca.pem")});
  greenev::tls_socket s = greenev::tls_connect(client, srv.where(), "localhost", 5.0);
  s.sendall("GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  std::string response;
  char buffer[4096];
  while (const std::size_t n = s.recv_into(buffer)) response.append(buffer, n);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 200 OK\r\n")) << response;
  EXPECT_TRUE(response.ends_with("hello /tls")) << response;
}

TEST_F(http_tls, a_plain_http_client_on_the_https_port_is_closed_and_reported_once) {
  const greenev::testing::test_pki pki;
  std::vector<std::string> reports;
  greenev::set_error_reporter([&](std::string_view line) { reports.emplace_back(line); });
  const auto restore = greenev::detail::scope_exit([]() noexcept { greenev::set_error_reporter(nullptr); });
  test_server srv(hello, {.tls = server_context(pki)});
  {
    raw_client plain(srv.where());
    plain.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(plain.rest().find("200"), std::string::npos);
  }
  for (int i = 0; i < 100 && reports.empty(); ++i) greenev::sleep(0.01);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("TLS handshake with 127.0.0.1"), std::string::npos) << reports[0];
  const greenev::tls_context client({.ca_file = pki.path("ca.pem")});
  greenev::tls_socket s = greenev::tls_connect(client, srv.where(), "localhost", 5.0);
  s.sendall("GET /after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  std::string response;
  char buffer[4096];
  while (const std::size_t n = s.recv_into(buffer)) response.append(buffer, n);
  EXPECT_TRUE(response.ends_with("hello /after")) << response;
}

TEST_F(http_tls, tls_options_are_checked) {
  const greenev::testing::test_pki pki;
  EXPECT_THROW(
      http_server(
          any_loopback_port, hello,
          {.wrap = [](socket c) { return std::make_unique<greenev::byte_stream_of<socket>>(std::move(c)); },
           .tls = server_context(pki)}),
      std::invalid_argument);
  EXPECT_THROW(http_server(any_loopback_port, hello, {.tls = greenev::tls_context()}), std::invalid_argument);
}

}  // namespace
