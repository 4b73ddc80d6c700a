// Tests for greenev/websocket.hpp on real loopback sockets: greenev's client
// against an http_server upgrading to websocket (echo, large fragmented
// messages, 100 concurrent clients, a broadcast to 1000, concurrent senders,
// ping/pong, close codes both ways, subprotocols, wss:// with certificates made
// here), and a raw-socket client writing exact frame bytes for the protocol
// violations (unmasked, bad opcode, reserved bits, invalid UTF-8, oversize),
// handshake failures, the idle timeout and a client vanishing mid-message.
#include <greenev/websocket.hpp>

#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/detail/scope_exit.hpp>
#include <greenev/event.hpp>
#include <greenev/socket.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>
#include <greenev/tls.hpp>

#include "support/hub_fixture.hpp"
#include "support/test_pki.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::address;
using greenev::http_request;
using greenev::http_response;
using greenev::http_server;
using greenev::http_server_options;
using greenev::socket;
using greenev::websocket;
using greenev::websocket_message;
using greenev::websocket_options;
using greenev::testing::since;
using steady = std::chrono::steady_clock;

using ws_basics = greenev::testing::hub_test;
using ws_scale = greenev::testing::hub_test;
using ws_close = greenev::testing::hub_test;
using ws_protocol = greenev::testing::hub_test;
using ws_handshake = greenev::testing::hub_test;
using ws_timeouts = greenev::testing::hub_test;
using ws_tls = greenev::testing::hub_test;

const address any_loopback_port = address::parse("127.0.0.1", 0);

// What the server side saw, for the tests to check once its handler ended.
struct server_side {
  greenev::event done;
  std::uint16_t code = 0;
  std::string reason;
  std::vector<websocket_message> received;
};

// An http_server whose /echo upgrades and echoes every message until the peer
// closes (recording how it ended in `side`); other paths answer 404.
struct echo_server {
  explicit echo_server(websocket_options ws_options = {}, http_server_options options = {})
      : server(
            any_loopback_port,
            [this, ws_options](http_request& req, http_response& res) {
              if (req.path() != "/echo") {
                res.set_status(404);
                return res.send("no such thing\n");
              }
              websocket ws = websocket::accept(req, res, ws_options);
              const auto record = greenev::detail::scope_exit([&] {
                side.code = ws.close_code();
                side.reason = ws.close_reason();
                side.done.set();
              });
              while (auto message = ws.receive()) {
                side.received.push_back(*message);
                ws.send(*message);
              }
            },
            std::move(options)) {
    server.start();
  }
  ~echo_server() { server.stop(1.0); }
  [[nodiscard]] std::string url(std::string_view path = "/echo") const {
    return "ws://" + server.local_address().to_string() + std::string(path);
  }
  server_side side;
  http_server server;
};

// --- a raw client writing exact bytes -------------------------------------------------------

constexpr std::string_view upgrade_request =
    "GET /echo HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

struct frame {
  unsigned opcode = 0;
  bool fin = false;
  std::string payload;
  [[nodiscard]] unsigned close_code() const {
    return payload.size() >= 2
               ? (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1])
               : 0;
  }
};

// The bytes of one frame. Masked (as a client must) unless told otherwise;
// `first` overrides the first byte (FIN, RSV bits, opcode).
std::string make_frame(unsigned opcode, std::string_view payload, bool fin = true, bool masked = true,
                       int first = -1) {
  std::string out;
  out.push_back(static_cast<char>(first >= 0 ? first : ((fin ? 0x80 : 0) | opcode)));
  const char mask_bit = masked ? static_cast<char>(0x80) : 0;
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(mask_bit | static_cast<char>(payload.size())));
  } else if (payload.size() < 65536) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size() & 0xff));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8)
      out.push_back(static_cast<char>((payload.size() >> shift) & 0xff));
  }
  const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked) out.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    out.push_back(masked ? static_cast<char>(payload[i] ^ key[i % 4]) : payload[i]);
  }
  return out;
}

std::string close_payload(unsigned code, std::string_view reason = {}) {
  std::string p{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
  return p.append(reason);
}

class raw_client {
 public:
  explicit raw_client(const address& server, greenev::wait_time timeout = 5.0)
      : s_(server.family(), SOCK_STREAM) {
    s_.set_timeout(timeout);
    s_.connect(server);
  }
  void send(std::string_view bytes) { s_.sendall(bytes); }
  // Sends `request` and returns the response header; bytes after it stay buffered.
  std::string handshake(std::string_view request = upgrade_request) {
    send(request);
    while (buffer_.find("\r\n\r\n") == std::string::npos) {
      if (!fill()) break;
    }
    const std::size_t end = buffer_.find("\r\n\r\n");
    std::string head = buffer_.substr(0, end == std::string::npos ? buffer_.size() : end + 4);
    buffer_.erase(0, head.size());
    return head;
  }
  // The next frame from the server (unmasked); empty at end of stream.
  std::optional<frame> next() {
    if (!need(2)) return std::nullopt;
    frame f;
    f.fin = (buffer_[0] & 0x80) != 0;
    f.opcode = buffer_[0] & 0x0f;
    std::size_t length = buffer_[1] & 0x7f;
    std::size_t header = 2;
    if (length == 126) {
      if (!need(4)) return std::nullopt;
      length = (static_cast<unsigned char>(buffer_[2]) << 8) | static_cast<unsigned char>(buffer_[3]);
      header = 4;
    } else if (length == 127) {
      if (!need(10)) return std::nullopt;
      length = 0;
      for (int i = 2; i < 10; ++i) length = (length << 8) | static_cast<unsigned char>(buffer_[i]);
      header = 10;
    }
    if (!need(header + length)) return std::nullopt;
    f.payload = buffer_.substr(header, length);
    buffer_.erase(0, header + length);
    return f;
  }
  // True if the server ended the connection (EOF or reset) within `limit`.
  bool closed_within(greenev::wait_time limit) {
    s_.set_timeout(limit);
    try {
      char sink[4096];
      while (s_.recv_into(sink) > 0) {
      }
      return true;
    } catch (const greenev::timeout_error&) {
      return false;
    } catch (const std::system_error&) {
      return true;
    }
  }
  socket& raw() { return s_; }

 private:
  bool fill() {
    char chunk[65536];
    std::size_t n = 0;
    try {
      n = s_.recv_into(chunk);
    } catch (const std::system_error&) {
      return false;
    }
    buffer_.append(chunk, n);
    return n > 0;
  }
  bool need(std::size_t n) {
    while (buffer_.size() < n) {
      if (!fill()) return false;
    }
    return true;
  }
  socket s_;
  std::string buffer_;
};

// Upgrades a raw client, sends `bytes`, and returns the close frame's code the
// server answers with (0 if none came).
unsigned close_code_for(const address& server, std::string_view bytes) {
  raw_client c(server);
  const std::string head = c.handshake();
  EXPECT_TRUE(head.starts_with("HTTP/1.1 101")) << head;
  c.send(bytes);
  while (auto f = c.next()) {
    if (f->opcode == 0x8) return f->close_code();
  }
  return 0;
}

// --- basics ---------------------------------------------------------------------------------------

TEST_F(ws_basics, text_and_binary_messages_echo_with_their_kind) {
  echo_server srv;
  websocket client = websocket::connect(srv.url());
  client.send_text("hello");
  auto text = client.receive();
  ASSERT_TRUE(text);
  EXPECT_EQ(text->data, "hello");
  EXPECT_FALSE(text->binary);
  const std::string bytes("\x00\xff\x01 binary", 10);
  client.send_binary(bytes);
  auto binary = client.receive();
  ASSERT_TRUE(binary);
  EXPECT_EQ(binary->data, bytes);
  EXPECT_TRUE(binary->binary);
  client.send(websocket_message{"", false});  // an empty message is a message
  auto empty = client.receive();
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->data, "");
  client.close();
  EXPECT_TRUE(srv.side.done.wait(5.0));
  EXPECT_EQ(srv.side.code, 1000);
  EXPECT_EQ(client.close_code(), 1000);
  EXPECT_FALSE(client.receive());
  EXPECT_THROW(client.send_text("late"), greenev::websocket_closed);
}

TEST_F(ws_basics, large_messages_arrive_whole_from_many_frames) {
  echo_server srv;
  websocket client = websocket::connect(srv.url());
  std::string big(3 * 1024 * 1024 + 17, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i * 7 % 26);
  client.send_text(big);  // 64 KiB frames: dozens of fragments
  auto back = client.receive();
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->data == big);

  // Fragments written by hand, with a ping between them (answered at once).
  raw_client raw(srv.server.local_address());
  ASSERT_TRUE(raw.handshake().starts_with("HTTP/1.1 101"));
  raw.send(make_frame(0x1, "Hel", false) + make_frame(0x9, "between") + make_frame(0x0, "lo, ", false) +
           make_frame(0x0, "world", true));
  auto pong = raw.next();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, 0xAu);
  EXPECT_EQ(pong->payload, "between");
  auto echoed = raw.next();
  ASSERT_TRUE(echoed);
  EXPECT_EQ(echoed->opcode, 0x1u);
  EXPECT_EQ(echoed->payload, "Hello, world");
}

TEST_F(ws_basics, frames_sent_with_the_upgrade_request_are_not_lost) {
  echo_server srv;
  raw_client raw(srv.server.local_address());
  // The request and two frames in one write: the server read them together.
  const std::string head =
      raw.handshake(std::string(upgrade_request) + make_frame(0x1, "first") + make_frame(0x2, "second"));
  ASSERT_TRUE(head.starts_with("HTTP/1.1 101")) << head;
  EXPECT_NE(head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Server: greenev\r\n"), std::string::npos) << head;
  auto first = raw.next();
  auto second = raw.next();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->payload, "first");
  EXPECT_EQ(second->payload, "second");
  EXPECT_EQ(second->opcode, 0x2u);
}

TEST_F(ws_basics, pings_are_answered_and_pongs_reported) {
  echo_server srv;
  std::vector<std::string> pongs;
  websocket client =
      websocket::connect(srv.url(), {.on_pong = [&](std::string_view p) { pongs.emplace_back(p); }});
  client.ping("are you there");
  client.send_text("after the ping");
  auto message = client.receive();  // the pong arrives first and is reported meanwhile
  ASSERT_TRUE(message);
  EXPECT_EQ(message->data, "after the ping");
  EXPECT_EQ(pongs, std::vector<std::string>{"are you there"});
  EXPECT_THROW(client.ping(std::string(126, 'x')), std::invalid_argument);
}

TEST_F(ws_basics, a_server_ping_reaches_a_raw_client_and_an_unsolicited_pong_is_ignored) {
  greenev::event pinged;
  http_server server(any_loopback_port, [&](http_request& req, http_response& res) {
    websocket ws = websocket::accept(req, res);
    ws.ping("hi");
    ws.pong("unasked");
    while (ws.receive()) {
    }
    pinged.set();
  });
  server.start();
  raw_client raw(server.local_address());
  ASSERT_TRUE(raw.handshake().starts_with("HTTP/1.1 101"));
  auto ping = raw.next();
  auto pong = raw.next();
  ASSERT_TRUE(ping && pong);
  EXPECT_EQ(ping->opcode, 0x9u);
  EXPECT_EQ(ping->payload, "hi");
  EXPECT_EQ(pong->opcode, 0xAu);
  raw.send(make_frame(0xA, "hi") + make_frame(0x8, close_payload(1000)));
  auto reply = raw.next();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->opcode, 0x8u);
  EXPECT_EQ(reply->close_code(), 1000u);
  EXPECT_TRUE(pinged.wait(5.0));
  server.stop(1.0);
}

TEST_F(ws_basics, subprotocols_are_negotiated_in_the_client_order) {
  echo_server srv({.subprotocols = {"chat", "superchat"}});
  websocket client = websocket::connect(srv.url(), {.subprotocols = {"superchat", "chat"}});
  EXPECT_EQ(client.subprotocol(), "superchat");
  websocket plain = websocket::connect(srv.url(), {.subprotocols = {"other"}});
  EXPECT_EQ(plain.subprotocol(), "");
}

TEST_F(ws_basics, many_greenlets_sending_on_one_websocket_never_mix_frames) {
  echo_server srv;
  websocket client = websocket::connect(srv.url());
  constexpr int senders = 10;
  constexpr int each = 50;
  std::vector<greenev::basic_task> tasks;
  for (int id = 0; id < senders; ++id) {
    tasks.push_back(greenev::spawn([&client, id] {
      for (int i = 0; i < each; ++i) {
        // Large enough to need several sends each, so that senders really interleave.
        client.send_text(std::string(200000, static_cast<char>('A' + id)) + std::to_string(i));
      }
    }));
  }
  std::vector<int> next(senders, 0);
  for (int n = 0; n < senders * each; ++n) {
    auto m = client.receive();
    ASSERT_TRUE(m);
    const int id = m->data[0] - 'A';
    ASSERT_GE(id, 0);
    ASSERT_LT(id, senders);
    EXPECT_EQ(m->data, std::string(200000, static_cast<char>('A' + id)) + std::to_string(next[id]++));
  }
  greenev::joinall(tasks);
  for (auto& t : tasks) EXPECT_TRUE(t.successful());
}

TEST_F(ws_basics, the_websocket_may_outlive_the_handler_and_a_bad_accept_is_refused) {
  // A handler that parks its websocket elsewhere and returns at once.
  std::vector<websocket> parked;
  bool refused_twice = false;
  http_server server(any_loopback_port, [&](http_request& req, http_response& res) {
    parked.push_back(websocket::accept(req, res));
    try {
      (void)websocket::accept(req, res);
    } catch (const std::logic_error&) {
      refused_twice = true;
    }
  });
  server.start();
  websocket client = websocket::connect("ws://" + server.local_address().to_string() + "/");
  EXPECT_TRUE(refused_twice);
  for (int i = 0; i < 50 && parked.empty(); ++i) greenev::sleep(0.01);
  ASSERT_EQ(parked.size(), 1u);
  parked[0].send_text("from a parked websocket");
  auto m = client.receive();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "from a parked websocket");
  EXPECT_EQ(server.connections(), 0u);  // the HTTP side let it go
  parked.clear();                       // destroyed open: 1001 and a close
  EXPECT_FALSE(client.receive());
  EXPECT_EQ(client.close_code(), 1001);
  server.stop(1.0);
}

// --- scale ----------------------------------------------------------------------------------------

TEST_F(ws_scale, a_hundred_concurrent_clients_each_echo_verified_messages) {
  echo_server srv;
  std::vector<greenev::basic_task> clients;
  int verified = 0;
  for (int id = 0; id < 100; ++id) {
    clients.push_back(greenev::spawn([&, id] {
      websocket ws = websocket::connect(srv.url());
      for (int i = 0; i < 20; ++i) {
        std::string message(64, '\0');
        for (std::size_t k = 0; k < message.size(); ++k)
          message[k] = static_cast<char>((id * 31 + i * 7 + k) & 0xff);
        ws.send_binary(message);
        auto back = ws.receive();
        if (back && back->binary && back->data == message) ++verified;
      }
      ws.close();
    }));
  }
  greenev::joinall(clients);
  for (auto& c : clients) EXPECT_TRUE(c.successful());
  EXPECT_EQ(verified, 100 * 20);
}

TEST_F(ws_scale, worker_threads_each_upgrade_their_own_connections) {
  // A handler without shared state: it runs on two threads at once.
  http_server server(any_loopback_port,
                     [](http_request& req, http_response& res) {
                       websocket ws = websocket::accept(req, res);
                       while (auto message = ws.receive()) ws.send(*message);
                     },
                     {.workers = 2});
  server.start();
  const std::string url = "ws://" + server.local_address().to_string() + "/";
  std::vector<greenev::basic_task> clients;
  int verified = 0;
  for (int id = 0; id < 20; ++id) {
    clients.push_back(greenev::spawn([&, id] {
      websocket ws = websocket::connect(url);
      const std::string message = "worker check " + std::to_string(id);
      ws.send_text(message);
      auto back = ws.receive();
      if (back && back->data == message) ++verified;
      ws.close();
    }));
  }
  greenev::joinall(clients);
  EXPECT_EQ(verified, 20);
  server.stop(1.0);
}

bool allow_open_files(rlim_t needed) {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0) return false;
  if (files.rlim_cur >= needed) return true;
  if (files.rlim_max < needed) return false;
  files.rlim_cur = needed;
  return ::setrlimit(RLIMIT_NOFILE, &files) == 0;
}

TEST_F(ws_scale, one_greenlet_broadcasts_to_a_thousand_clients) {
  constexpr int clients = 1000;
  ASSERT_TRUE(allow_open_files(2 * clients + 256)) << "the hard RLIMIT_NOFILE is too low";
  std::set<websocket*> members;
  greenev::event all_joined;
  http_server server(any_loopback_port, [&](http_request& req, http_response& res) {
    websocket ws = websocket::accept(req, res);
    members.insert(&ws);
    const auto leave = greenev::detail::scope_exit([&] { members.erase(&ws); });
    if (members.size() == clients) all_joined.set();
    while (ws.receive()) {  // this greenlet reads while the broadcaster writes
    }
  });
  server.start();
  const std::string url = "ws://" + server.local_address().to_string() + "/";
  std::vector<websocket> sockets;
  sockets.reserve(clients);
  for (int i = 0; i < clients; ++i) sockets.push_back(websocket::connect(url));
  ASSERT_TRUE(all_joined.wait(10.0));
  greenev::spawn([&] {
    for (int round = 0; round < 3; ++round) {
      const std::vector<websocket*> now(members.begin(), members.end());
      for (websocket* ws : now) ws->send_text("round " + std::to_string(round));
    }
  }).join();
  int got = 0;
  for (auto& ws : sockets) {
    for (int round = 0; round < 3; ++round) {
      auto m = ws.receive();
      if (m && m->data == "round " + std::to_string(round)) ++got;
    }
  }
  EXPECT_EQ(got, 3 * clients);
  for (auto& ws : sockets) ws.close();
  server.stop(2.0);
  EXPECT_TRUE(members.empty());
}

// --- closing --------------------------------------------------------------------------------------

TEST_F(ws_close, a_client_close_reaches_the_server_with_its_code_and_reason) {
  echo_server srv;
  websocket client = websocket::connect(srv.url());
  client.close(4000, "bye now");
  EXPECT_TRUE(client.closed());
  EXPECT_EQ(client.close_code(), 4000);
  EXPECT_EQ(client.close_reason(), "bye now");
  ASSERT_TRUE(srv.side.done.wait(5.0));
  EXPECT_EQ(srv.side.code, 4000);
  EXPECT_EQ(srv.side.reason, "bye now");
  client.close(4001);  // already closed: nothing
  EXPECT_EQ(client.close_code(), 4000);
  EXPECT_THROW(client.close(1005), std::invalid_argument);
  EXPECT_THROW(client.close(1000, std::string(124, 'r')), std::invalid_argument);
}

TEST_F(ws_close, a_server_close_reaches_the_client_and_a_raw_peer_gets_the_frame) {
  greenev::event closed;
  std::uint16_t server_code = 0;
  http_server server(any_loopback_port, [&](http_request& req, http_response& res) {
    websocket ws = websocket::accept(req, res);
    ws.send_text("last words");
    ws.close(4001, "server bye");
    server_code = ws.close_code();
    closed.set();
  });
  server.start();
  const std::string url = "ws://" + server.local_address().to_string() + "/";
  {
    websocket client = websocket::connect(url);
    auto m = client.receive();
    ASSERT_TRUE(m);
    EXPECT_EQ(m->data, "last words");
    EXPECT_FALSE(client.receive());
    EXPECT_EQ(client.close_code(), 4001);
    EXPECT_EQ(client.close_reason(), "server bye");
    ASSERT_TRUE(closed.wait(5.0));
    EXPECT_EQ(server_code, 4001);
  }
  closed.clear();
  raw_client raw(server.local_address());
  ASSERT_TRUE(raw.handshake().starts_with("HTTP/1.1 101"));
  auto text = raw.next();
  auto close = raw.next();
  ASSERT_TRUE(text && close);
  EXPECT_EQ(close->opcode, 0x8u);
  EXPECT_EQ(close->close_code(), 4001u);
  EXPECT_EQ(close->payload.substr(2), "server bye");
  const auto start = steady::now();
  raw.send(make_frame(0x8, close_payload(4001)));
  EXPECT_TRUE(raw.closed_within(5.0));  // the server ends the TCP connection
  ASSERT_TRUE(closed.wait(5.0));
  EXPECT_LT(since(start), 2000ms);  // at the reply, not at close_timeout
  server.stop(1.0);
}

TEST_F(ws_close, close_from_another_greenlet_ends_a_pending_receive) {
  echo_server srv;
  websocket client = websocket::connect(srv.url());
  std::optional<websocket_message> got{websocket_message{"unset", false}};
  auto reader = greenev::spawn([&] { got = client.receive(); });
  greenev::sleep(0.05);  // the reader waits inside receive()
  client.close(1000, "done");
  reader.join(5.0);
  EXPECT_TRUE(reader.ready());
  EXPECT_FALSE(got);
  EXPECT_EQ(client.close_code(), 1000);
  ASSERT_TRUE(srv.side.done.wait(5.0));
  EXPECT_EQ(srv.side.code, 1000);
  EXPECT_EQ(srv.side.reason, "done");
}

TEST_F(ws_close, a_peer_that_never_answers_the_close_is_cut_after_close_timeout) {
  greenev::event done;
  http_server server(any_loopback_port, [&](http_request& req, http_response& res) {
    websocket ws = websocket::accept(req, res, {.close_timeout = 0.3});
    ws.close(1000);
    done.set();
  });
  server.start();
  raw_client raw(server.local_address());
  // Before the handshake: the server starts its close timeout as soon as it
  // has answered, before the client has read the answer.
  const auto start = steady::now();
  ASSERT_TRUE(raw.handshake().starts_with("HTTP/1.1 101"));
  auto close = raw.next();
  ASSERT_TRUE(close);
  EXPECT_EQ(close->opcode, 0x8u);
  ASSERT_TRUE(done.wait(5.0));
  EXPECT_GE(since(start), 250ms);
  EXPECT_LT(since(start), 3000ms);
  EXPECT_TRUE(raw.closed_within(2.0));
  server.stop(1.0);
}

TEST_F(ws_close, stopping_the_server_ends_its_websockets) {
  echo_server srv;
  websocket client = websocket::connect(srv.url());
  client.send_text("x");
  ASSERT_TRUE(client.receive());
  srv.server.stop(0.1);  // kills the handler inside receive()
  EXPECT_FALSE(client.receive());
  EXPECT_EQ(client.close_code(), 1001);  // the websocket's destructor said "going away"
}

// --- protocol violations --------------------------------------------------------------------------

TEST_F(ws_protocol, each_violation_is_closed_with_its_code) {
  echo_server srv({.max_message_size = 1000});
  const address where = srv.server.local_address();
  EXPECT_EQ(close_code_for(where, make_frame(0x1, "not masked", true, false)), 1002u);
  EXPECT_EQ(close_code_for(where, make_frame(0x3, "opcode 3")), 1002u);
  EXPECT_EQ(close_code_for(where, make_frame(0xB, "opcode 11")), 1002u);
  EXPECT_EQ(close_code_for(where, make_frame(0x1, "rsv1", true, true, 0x80 | 0x40 | 0x1)), 1002u);
  EXPECT_EQ(close_code_for(where, make_frame(0x1, "rsv3", true, true, 0x80 | 0x10 | 0x1)), 1002u);
  EXPECT_EQ(close_code_for(where, make_frame(0x0, "continuation first")), 1002u);
  EXPECT_EQ(close_code_for(where, make_frame(0x9, "fragmented ping", false)), 1002u);
  EXPECT_EQ(close_code_for(where, make_frame(0x9, std::string(126, 'p'))), 1002u);
  EXPECT_EQ(close_code_for(where, make_frame(0x1, "bad \xc3\x28 utf-8")), 1007u);
  EXPECT_EQ(close_code_for(where, make_frame(0x1, "\xed\xa0\x80 surrogate")), 1007u);
  EXPECT_EQ(close_code_for(where, make_frame(0x2, std::string(1001, 'b'))), 1009u);
  // Too big only as a whole: two fragments of 600.
  EXPECT_EQ(close_code_for(where, make_frame(0x2, std::string(600, 'b'), false) +
                                      make_frame(0x0, std::string(600, 'b'))),
            1009u);
  EXPECT_EQ(close_code_for(where, make_frame(0x8, close_payload(999))), 1002u);  // a code no one may send
  ASSERT_TRUE(srv.side.done.wait(5.0));
  // Binary data is not checked as UTF-8, and a message at the limit passes.
  raw_client raw(where);
  ASSERT_TRUE(raw.handshake().starts_with("HTTP/1.1 101"));
  raw.send(make_frame(0x2, "\xc3\x28") + make_frame(0x2, std::string(1000, 'x')));
  auto first = raw.next();
  auto second = raw.next();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(second->payload.size(), 1000u);
}

TEST_F(ws_protocol, the_server_side_sees_the_code_it_closed_with) {
  echo_server srv({.max_message_size = 100});
  EXPECT_EQ(close_code_for(srv.server.local_address(), make_frame(0x1, "bad \xff")), 1007u);
  ASSERT_TRUE(srv.side.done.wait(5.0));
  EXPECT_EQ(srv.side.code, 1007);
  srv.side.done.clear();
  EXPECT_EQ(close_code_for(srv.server.local_address(), make_frame(0x2, std::string(101, 'b'))), 1009u);
  ASSERT_TRUE(srv.side.done.wait(5.0));
  EXPECT_EQ(srv.side.code, 1009);
  srv.side.done.clear();
  EXPECT_EQ(close_code_for(srv.server.local_address(), make_frame(0x1, "x", true, false)), 1002u);
  ASSERT_TRUE(srv.side.done.wait(5.0));
  EXPECT_EQ(srv.side.code, 1002);
}

// --- handshakes -----------------------------------------------------------------------------------

std::string handshake_reply(const address& where, std::string_view request) {
  raw_client raw(where);
  return raw.handshake(request);
}

TEST_F(ws_handshake, bad_upgrade_requests_are_answered_by_the_server) {
  echo_server srv;
  const address where = srv.server.local_address();
  const std::string no_key =
      "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  EXPECT_TRUE(handshake_reply(where, no_key).starts_with("HTTP/1.1 400 ")) << handshake_reply(where, no_key);
  const std::string short_key =
      "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n";
  EXPECT_TRUE(handshake_reply(where, short_key).starts_with("HTTP/1.1 400 "));
  const std::string not_upgrade = "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n";
  EXPECT_TRUE(handshake_reply(where, not_upgrade).starts_with("HTTP/1.1 400 "));
  const std::string version_12 =
      "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n\r\n";
  const std::string reply = handshake_reply(where, version_12);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 426 ")) << reply;
  EXPECT_NE(reply.find("Sec-WebSocket-Version: 13\r\n"), std::string::npos) << reply;
  EXPECT_FALSE(srv.side.done.is_set());  // no websocket was made
}

TEST_F(ws_handshake, a_client_refused_by_the_server_gets_its_status) {
  echo_server srv;
  try {
    (void)websocket::connect(srv.url("/not-a-websocket"));
    ADD_FAILURE() << "connected to a plain HTTP path";
  } catch (const greenev::websocket_handshake_error& error) {
    EXPECT_EQ(error.status(), 404u);
    EXPECT_NE(std::string(error.what()).find("404"), std::string::npos) << error.what();
  }
}

TEST_F(ws_handshake, bad_urls_and_silent_servers_fail_cleanly) {
  EXPECT_THROW((void)websocket::connect("http://127.0.0.1/"), std::invalid_argument);
  EXPECT_THROW((void)websocket::connect("ws:///path"), std::invalid_argument);
  EXPECT_THROW((void)websocket::connect("ws://127.0.0.1:99999/"), std::invalid_argument);
  EXPECT_THROW((void)websocket::connect("ws://[::1/"), std::invalid_argument);
  EXPECT_THROW((void)websocket::connect("ws://127.0.0.1/#frag"), std::invalid_argument);
  // A listener that accepts and never answers: the handshake times out.
  socket listener(AF_INET, SOCK_STREAM);
  listener.bind(any_loopback_port);
  listener.listen(4);
  const auto start = steady::now();
  EXPECT_THROW((void)websocket::connect("ws://" + listener.local_address().to_string() + "/",
                                        {.handshake_timeout = 0.3}),
               greenev::timeout_error);
  EXPECT_LT(since(start), 3000ms);
}

// --- timeouts and vanishing peers ------------------------------------------------------------------

TEST_F(ws_timeouts, an_idle_peer_is_closed_with_1001) {
  echo_server srv({.idle_timeout = 0.3});
  raw_client raw(srv.server.local_address());
  // Before the handshake: the server starts its idle timeout as soon as it
  // has answered, before the client has read the answer.
  const auto start = steady::now();
  ASSERT_TRUE(raw.handshake().starts_with("HTTP/1.1 101"));
  auto close = raw.next();
  ASSERT_TRUE(close);
  EXPECT_EQ(close->opcode, 0x8u);
  EXPECT_EQ(close->close_code(), 1001u);
  EXPECT_GE(since(start), 250ms);
  ASSERT_TRUE(srv.side.done.wait(5.0));
  EXPECT_EQ(srv.side.code, 1001);
  EXPECT_TRUE(raw.closed_within(2.0));
}

TEST_F(ws_timeouts, a_client_vanishing_mid_message_ends_the_server_side_with_1006) {
  echo_server srv;
  {
    raw_client raw(srv.server.local_address());
    ASSERT_TRUE(raw.handshake().starts_with("HTTP/1.1 101"));
    const std::string whole = make_frame(0x2, std::string(10000, 'm'));
    raw.send(whole.substr(0, 5000));  // half a frame, then gone
  }
  ASSERT_TRUE(srv.side.done.wait(5.0));
  EXPECT_EQ(srv.side.code, 1006);
  EXPECT_TRUE(srv.side.received.empty());
}

// --- wss:// ---------------------------------------------------------------------------------------

TEST_F(ws_tls, wss_echoes_through_tls_with_certificates_made_here) {
  greenev::testing::test_pki pki;
  const greenev::tls_context server_ctx({.role = greenev::tls_role::server,
                                         .certificate_chain_file = pki.path("server.pem"),
                                         .private_key_file = pki.path("server.key")});
  echo_server srv({}, {.wrap = [&](socket s) -> std::unique_ptr<greenev::byte_stream> {
                    return std::make_unique<greenev::byte_stream_of<greenev::tls_socket>>(
                        server_ctx.wrap_socket(std::move(s)));
                  }});
  const greenev::tls_context client_ctx({.ca_file = pki.path("ca.pem")});
  const std::string url = "wss://127.0.0.1:" + std::to_string(srv.server.local_address().port()) + "/echo";
  websocket client = websocket::connect(url, {.tls = client_ctx});
  client.send_text(std::string(100000, 's'));
  auto back = client.receive();
  ASSERT_TRUE(back);
  EXPECT_EQ(back->data, std::string(100000, 's'));
  client.close(1000, "tls bye");
  ASSERT_TRUE(srv.side.done.wait(5.0));
  EXPECT_EQ(srv.side.reason, "tls bye");
  // The default context does not trust the test CA.
  EXPECT_THROW((void)websocket::connect(url, {.handshake_timeout = 5.0}), greenev::tls_error);
}

}  // namespace
