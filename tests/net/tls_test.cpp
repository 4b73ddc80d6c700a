// Tests for greenev/tls.hpp against real peers on loopback: greenev's client
// with `openssl s_server`, greenev's server with `openssl s_client` and curl,
// and greenev with itself (100 concurrent handshakes and 64 KiB echoes).
// Certificates are made at run time (tests/support/test_pki.hpp). Errors:
// bad context files, hostname mismatch, untrusted CA, verification off, a
// plain TCP client, silent peers (handshake timeouts), recv timeouts, close
// under a waiting recv, ragged EOFs, a closed peer without SIGPIPE. Every test
// ends with no greenlet, watcher, stack or fd left over.
#include <greenev/tls.hpp>

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/dns.hpp>
#include <greenev/error_reporter.hpp>
#include <greenev/event.hpp>
#include <greenev/server.hpp>
#include <greenev/socket.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include "support/assertions.hpp"
#include "support/child_process.hpp"
#include "support/hub_fixture.hpp"
#include "support/test_pki.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::address;
using greenev::socket;
using greenev::spawn;
using greenev::stream_server;
using greenev::tls_context;
using greenev::tls_errc;
using greenev::tls_error;
using greenev::tls_handler;
using greenev::tls_role;
using greenev::tls_socket;
using greenev::testing::child_process;
using greenev::testing::since;
using greenev::testing::throws_errno;
using greenev::testing::throws_with;

std::size_t open_fds() {
  std::size_t count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (::readdir(dir) != nullptr) ++count;
    ::closedir(dir);
  }
  return count;
}

// The hub fixture (no greenlet, watcher or stack left) plus: no fd left open.
class tls_test : public greenev::testing::hub_test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new greenev::testing::test_pki;
    // First uses that keep state for the process (the resolver's runtime,
    // OpenSSL's tables), so the fd baseline below is the steady one.
    (void)greenev::getaddrinfo("127.0.0.1", "443");
    (void)tls_context({.ca_file = pki_->path("ca.pem")});
  }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }
  void SetUp() override {
    hub_test::SetUp();
    fds_ = open_fds();
  }
  void TearDown() override {
    hub_test::TearDown();
    EXPECT_EQ(open_fds(), fds_) << "an fd was left open";
  }

  static std::string file(const std::string& name) { return pki_->path(name); }

  // A server context with the named certificate ("server", "wrong", "self").
  static tls_context server_context(const std::string& cert = "server", std::vector<std::string> alpn = {}) {
    return tls_context({.role = tls_role::server,
                        .certificate_chain_file = file(cert + ".pem"),
                        .private_key_file = file(cert + ".key"),
                        .alpn = std::move(alpn)});
  }
  // A client context trusting the test CA.
  static tls_context client_context(std::vector<std::string> alpn = {}) {
    return tls_context({.ca_file = file("ca.pem"), .alpn = std::move(alpn)});
  }

  static greenev::testing::test_pki* pki_;

 private:
  std::size_t fds_ = 0;
};

greenev::testing::test_pki* tls_test::pki_ = nullptr;

const address loopback = address::parse("127.0.0.1", 0);

// A TLS echo handler: echoes until end of stream.
void echo(tls_socket& conn, const address&) {
  char buffer[16384];
  while (const std::size_t n = conn.recv_into(buffer)) conn.sendall({buffer, n});
}

std::string read_to_end(tls_socket& conn) {
  std::string all;
  char buffer[16384];
  while (const std::size_t n = conn.recv_into(buffer)) all.append(buffer, n);
  return all;
}

// Collects the handshake failures a tls_handler reports.
struct failures {
  std::vector<std::string> messages;
  int timeouts = 0;
  greenev::tls_server_options options(greenev::wait_time handshake_timeout = 10.0) {
    return {.handshake_timeout = handshake_timeout,
            .on_handshake_error = [this](const address&, const std::exception& e) {
              messages.emplace_back(e.what());
              if (dynamic_cast<const greenev::timeout_error*>(&e) != nullptr) ++timeouts;
            }};
  }
};

// A port nothing listens on now (for openssl s_server, which binds it itself).
std::uint16_t free_port() {
  socket probe(AF_INET, SOCK_STREAM);
  probe.bind(loopback);
  return probe.local_address().port();
}

// --- tls_context ----------------------------------------------------------------

TEST_F(tls_test, context_errors_name_the_file_and_the_problem) {
  try {
    (void)tls_context({.role = tls_role::server, .certificate_chain_file = "/nonexistent/chain.pem"});
    ADD_FAILURE() << "a missing chain file was accepted";
  } catch (const tls_error& error) {
    EXPECT_EQ(error.code(), tls_errc::context);
    EXPECT_NE(std::string(error.what()).find("cannot load certificate chain file \"/nonexistent/chain.pem\""),
              std::string::npos)
        << error.what();
    EXPECT_FALSE(error.reason().empty());
  }
  EXPECT_TRUE(throws_with<tls_error>(
      [] {
        (void)tls_context({.role = tls_role::server,
                           .certificate_chain_file = file("server.pem"),
                           .private_key_file = file("wrong.key")});
      },
      "does not match certificate"));
  EXPECT_TRUE(throws_with<tls_error>(
      [] { (void)tls_context({.ca_file = file("ca.pem"), .ciphers = "NO-SUCH-CIPHER"}); },
      "bad cipher list \"NO-SUCH-CIPHER\""));
  EXPECT_TRUE(throws_with<tls_error>([] { (void)tls_context({.ca_file = "/nonexistent/ca.pem"}); },
                                     "cannot load CA file \"/nonexistent/ca.pem\""));
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { (void)tls_context({.role = tls_role::server}); },
                                                 "needs certificate_chain_file"));
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { (void)tls_context({.alpn = {""}}); }, "ALPN"));
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [] { (void)tls_handler(client_context(), [](tls_socket&, const address&) {}); }, "server context"));
}

// --- greenev client <-> openssl s_server ----------------------------------------

TEST_F(tls_test, client_against_openssl_s_server) {
  std::unique_ptr<child_process> server;
  std::uint16_t port = 0;
  for (int attempt = 0; attempt < 5 && !server; ++attempt) {  // the port can be taken meanwhile
    port = free_port();
    server = std::make_unique<child_process>(std::vector<std::string>{
        "openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-cert", file("server.pem"),
        "-key", file("server.key"), "-www", "-alpn", "http/1.1", "-naccept", "2"});
    if (!server->read_until("ACCEPT", 20.0)) server.reset();
  }
  ASSERT_TRUE(server) << "openssl s_server did not start";

  const tls_context ctx = client_context({"h2", "http/1.1"});
  {
    tls_socket conn = greenev::tls_connect(ctx, address::parse("127.0.0.1", port), "localhost", 10.0);
    EXPECT_EQ(conn.version(), "TLSv1.3");
    EXPECT_FALSE(conn.cipher().empty());
    EXPECT_EQ(conn.alpn_protocol(), "http/1.1");
    EXPECT_EQ(conn.peer_subject(), "CN=localhost");
    EXPECT_TRUE(conn.peer_verified());
    EXPECT_EQ(conn.verified_host(), "localhost");
    EXPECT_EQ(conn.server_hostname(), "localhost");
    conn.sendall("GET / HTTP/1.0\r\n\r\n");
    const std::string page = read_to_end(conn);
    EXPECT_EQ(page.rfind("HTTP/1.0 200 ok", 0), 0u) << page.substr(0, 200);
  }
  {
    // Host and port; an IP literal is checked against the certificate's IP SAN.
    tls_socket conn = greenev::tls_connect(ctx, "127.0.0.1", port, 10.0);
    EXPECT_EQ(conn.verified_host(), "127.0.0.1");
    conn.sendall("GET / HTTP/1.0\r\n\r\n");
    EXPECT_NE(read_to_end(conn).find("HTTP/1.0 200 ok"), std::string::npos);
  }
  EXPECT_EQ(server->wait_exit(20.0), 0) << server->output();
}

// --- greenev server <-> openssl s_client and curl --------------------------------

TEST_F(tls_test, server_against_openssl_s_client) {
  std::string sni;
  std::string alpn;
  stream_server server(loopback, tls_handler(server_context("server", {"h2", "http/1.1"}),
                                             [&](tls_socket& conn, const address&) {
                                               sni = conn.server_hostname();
                                               alpn = conn.alpn_protocol();
                                               conn.sendall("hello from greenev\n");
                                               (void)read_to_end(conn);
                                             }));
  server.start();
  child_process client({"openssl", "s_client", "-connect",
                        "127.0.0.1:" + std::to_string(server.local_address().port()), "-servername",
                        "localhost", "-CAfile", file("ca.pem"), "-verify_return_error", "-verify_hostname",
                        "localhost", "-alpn", "http/1.1,h2", "-quiet", "-no_ign_eof"});
  EXPECT_TRUE(client.read_until("hello from greenev", 20.0)) << client.output();
  client.close_stdin();  // s_client sends close_notify and exits
  EXPECT_EQ(client.wait_exit(20.0), 0) << client.output();
  server.stop(5.0);
  EXPECT_EQ(sni, "localhost");
  EXPECT_EQ(alpn, "h2");  // the server's preference among what the client offered
}

TEST_F(tls_test, server_answers_curl_over_https) {
  std::string request;
  stream_server server(
      loopback, tls_handler(server_context("server", {"http/1.1"}), [&](tls_socket& conn, const address&) {
        char buffer[4096];
        while (request.find("\r\n\r\n") == std::string::npos) {
          const std::size_t n = conn.recv_into(buffer);
          if (n == 0) return;
          request.append(buffer, n);
        }
        conn.sendall("HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\nhello over TLS\n");
      }));
  server.start();
  const std::string port = std::to_string(server.local_address().port());
  child_process curl({"curl", "-q", "-sS", "--noproxy", "*", "--http1.1", "--max-time", "20", "--cacert",
                      file("ca.pem"), "--resolve", "localhost:" + port + ":127.0.0.1",
                      "https://localhost:" + port + "/hello"});
  EXPECT_EQ(curl.read_all(30.0), "hello over TLS\n");
  EXPECT_EQ(curl.wait_exit(20.0), 0) << curl.output();
  server.stop(5.0);
  EXPECT_EQ(request.rfind("GET /hello HTTP/1.1\r\n", 0), 0u) << request;
}

// --- greenev <-> greenev ------------------------------------------------------------

TEST_F(tls_test, hundred_concurrent_handshakes_and_64k_echoes) {
  stream_server server(loopback, tls_handler(server_context(), echo));
  server.start();
  const address where = server.local_address();
  const tls_context ctx = client_context();
  constexpr int clients = 100;
  std::vector<greenev::task<bool>> tasks;
  for (int id = 0; id < clients; ++id) {
    tasks.push_back(spawn([&, id] {
      std::string message(64 * 1024, '\0');
      for (std::size_t i = 0; i < message.size(); ++i) message[i] = static_cast<char>((i * 31 + id) & 0xff);
      tls_socket conn = greenev::tls_connect(ctx, where, "localhost", 30.0);
      // One greenlet writes while this one reads the same TLS socket.
      auto writer = spawn([&] {
        conn.sendall(message);
        conn.shutdown(SHUT_WR);  // close_notify: the server's recv returns 0
      });
      const std::string echoed = read_to_end(conn);
      writer.get(30.0);
      return echoed == message;
    }));
  }
  int matched = 0;
  for (auto& t : tasks) matched += t.get(60.0) ? 1 : 0;
  EXPECT_EQ(matched, clients);
  server.stop(5.0);
  EXPECT_EQ(server.accepted(), static_cast<std::size_t>(clients));
}

TEST_F(tls_test, a_server_with_worker_threads_shares_its_context) {
  stream_server server(loopback, tls_handler(server_context(), echo), {.workers = 2});
  server.start();
  const tls_context ctx = client_context();
  std::vector<greenev::task<std::string>> tasks;
  for (int id = 0; id < 20; ++id) {
    tasks.push_back(spawn([&] {
      tls_socket conn = greenev::tls_connect(ctx, server.local_address(), "localhost", 30.0);
      conn.sendall("ping");
      conn.shutdown(SHUT_WR);
      return read_to_end(conn);
    }));
  }
  for (auto& t : tasks) EXPECT_EQ(t.get(60.0), "ping");
  server.stop(5.0);
}

// Code written against the stream calls works with both socket kinds.
template <class Stream>
std::string ask(Stream& stream, std::string_view question) {
  stream.set_timeout(10.0);
  stream.sendall(question);
  stream.shutdown(SHUT_WR);
  std::string answer;
  char buffer[1024];
  while (const std::size_t n = stream.recv_into(buffer)) answer.append(buffer, n);
  stream.close();
  return answer;
}

TEST_F(tls_test, stream_code_templated_on_the_socket_runs_on_both) {
  stream_server tls_server(loopback, tls_handler(server_context(), echo));
  stream_server plain_server(loopback, [](socket& conn, const address&) {
    char buffer[1024];
    while (const std::size_t n = conn.recv_into(buffer)) conn.sendall({buffer, n});
  });
  tls_server.start();
  plain_server.start();
  tls_socket secure = greenev::tls_connect(client_context(), tls_server.local_address(), "localhost", 10.0);
  socket plain = greenev::create_connection("127.0.0.1", plain_server.local_address().port(), 10.0);
  EXPECT_EQ(ask(secure, "over TLS"), "over TLS");
  EXPECT_EQ(ask(plain, "in clear"), "in clear");
  tls_server.stop(5.0);
  plain_server.stop(5.0);
}

// --- verification ------------------------------------------------------------------

TEST_F(tls_test, hostname_mismatch_fails_verification_on_both_sides) {
  failures failed;
  stream_server server(loopback, tls_handler(server_context("wrong"), echo, failed.options()));
  server.start();
  try {
    (void)greenev::tls_connect(client_context(), server.local_address(), "localhost", 10.0);
    ADD_FAILURE() << "a certificate for wrong.example was accepted for localhost";
  } catch (const tls_error& error) {
    EXPECT_EQ(error.code(), tls_errc::certificate_verify);
    EXPECT_EQ(error.reason(), "certificate verify failed: hostname mismatch");
    EXPECT_EQ(error.verify_result(), 62);  // X509_V_ERR_HOSTNAME_MISMATCH
    EXPECT_NE(std::string(error.what()).find("server_hostname \"localhost\""), std::string::npos)
        << error.what();
  }
  server.stop(5.0);
  ASSERT_EQ(failed.messages.size(), 1u);  // the client's alert ends the server's handshake
  EXPECT_NE(failed.messages[0].find("greenev: tls: handshake with 127.0.0.1:"), std::string::npos)
      << failed.messages[0];
}

TEST_F(tls_test, untrusted_certificates_are_refused) {
  failures failed;  // the client's alerts end the servers' handshakes: not reported on stderr
  stream_server self_signed(loopback, tls_handler(server_context("self"), echo, failed.options()));
  stream_server test_ca(loopback, tls_handler(server_context(), echo, failed.options()));
  self_signed.start();
  test_ca.start();
  EXPECT_TRUE(throws_with<tls_error>(
      [&] { (void)greenev::tls_connect(client_context(), self_signed.local_address(), "localhost", 10.0); },
      "certificate verify failed: self"));
  // The default client context trusts the system store, which knows nothing of the test CA.
  EXPECT_TRUE(throws_with<tls_error>(
      [&] { (void)greenev::tls_connect(tls_context(), test_ca.local_address(), "localhost", 10.0); },
      "certificate verify failed: unable to get local issuer certificate"));
  self_signed.stop(5.0);
  test_ca.stop(5.0);
  EXPECT_EQ(failed.messages.size(), 2u);
}

TEST_F(tls_test, verification_turned_off_accepts_any_certificate) {
  stream_server server(loopback, tls_handler(server_context("self"), echo));
  server.start();
  tls_socket conn = greenev::tls_connect(tls_context({.verify = false}), server.local_address(), "", 10.0);
  EXPECT_FALSE(conn.peer_verified());
  EXPECT_EQ(conn.verified_host(), "");
  EXPECT_EQ(conn.peer_subject(), "CN=localhost");
  EXPECT_EQ(ask(conn, "unverified"), "unverified");
  server.stop(5.0);
}

TEST_F(tls_test, a_verifying_client_needs_a_server_hostname) {
  socket listener(AF_INET, SOCK_STREAM);
  listener.bind(loopback);
  listener.listen();
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [&] { (void)greenev::tls_connect(client_context(), listener.local_address(), "", 10.0); },
      "needs server_hostname"));
}

// --- ALPN and SNI ------------------------------------------------------------------

TEST_F(tls_test, alpn_takes_the_servers_first_protocol_the_client_offered) {
  struct selection {
    std::vector<std::string> server, client;
    std::string expected;
  };
  const std::vector<selection> cases = {
      {{"h2", "http/1.1"}, {"http/1.1", "h2"}, "h2"},
      {{"http/1.1"}, {"h2", "http/1.1"}, "http/1.1"},
      {{"spdy/3"}, {"h2", "http/1.1"}, ""},  // nothing in common: no ALPN
      {{"h2"}, {}, ""},                      // the client offered none
  };
  for (const selection& c : cases) {
    std::string server_saw = "unset";
    stream_server server(
        loopback, tls_handler(server_context("server", c.server),
                              [&](tls_socket& conn, const address&) { server_saw = conn.alpn_protocol(); }));
    server.start();
    tls_socket conn =
        greenev::tls_connect(client_context(c.client), server.local_address(), "localhost", 10.0);
    EXPECT_EQ(conn.alpn_protocol(), c.expected);
    EXPECT_EQ(read_to_end(conn), "");
    server.stop(5.0);
    EXPECT_EQ(server_saw, c.expected);
  }
}

TEST_F(tls_test, the_server_sees_the_name_the_client_asked_for) {
  std::vector<std::string> names;
  stream_server server(loopback, tls_handler(server_context(), [&](tls_socket& conn, const address&) {
                         names.push_back(conn.server_hostname());
                       }));
  server.start();
  const tls_context ctx = client_context();
  {
    tls_socket conn = greenev::tls_connect(ctx, server.local_address(), "localhost", 10.0);
    EXPECT_EQ(read_to_end(conn), "");
  }
  {
    tls_socket conn = greenev::tls_connect(ctx, "127.0.0.1", server.local_address().port(), 10.0);
    EXPECT_EQ(read_to_end(conn), "");  // an IP address is never sent as SNI
  }
  server.stop(5.0);
  EXPECT_EQ(names, (std::vector<std::string>{"localhost", ""}));
}

// --- failures on the server's side -------------------------------------------------------

TEST_F(tls_test, a_plain_tcp_client_is_closed_and_the_server_carries_on) {
  failures failed;
  stream_server server(loopback, tls_handler(server_context(), echo, failed.options()));
  server.start();
  {
    socket plain = greenev::create_connection("127.0.0.1", server.local_address().port(), 10.0);
    plain.sendall("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
    std::string reply;
    try {
      while (true) {
        std::string chunk = plain.recv(4096);
        if (chunk.empty()) break;  // closed by the server
        reply += chunk;
      }
    } catch (const std::system_error& error) {
      EXPECT_EQ(error.code().value(), ECONNRESET) << error.what();
    }
    EXPECT_EQ(reply.find("HTTP"), std::string::npos);
  }
  tls_socket conn = greenev::tls_connect(client_context(), server.local_address(), "localhost", 10.0);
  EXPECT_EQ(ask(conn, "still serving"), "still serving");
  server.stop(5.0);
  ASSERT_EQ(failed.messages.size(), 1u);
  EXPECT_NE(failed.messages[0].find("handshake with 127.0.0.1:"), std::string::npos) << failed.messages[0];
}

TEST_F(tls_test, a_silent_client_times_the_server_handshake_out) {
  failures failed;
  stream_server server(loopback, tls_handler(server_context(), echo, failed.options(0.3)));
  server.start();
  // Before the connect: the server's handshake timeout starts at its accept,
  // which may come before the client's connect returns.
  const auto start = std::chrono::steady_clock::now();
  socket silent = greenev::create_connection("127.0.0.1", server.local_address().port(), 10.0);
  EXPECT_EQ(silent.recv(16), "");  // the server gave up and closed
  EXPECT_GE(since(start), 250ms);
  EXPECT_LT(since(start), 5s);
  server.stop(5.0);
  EXPECT_EQ(failed.timeouts, 1);
}

TEST_F(tls_test, failed_handshakes_are_reported_through_the_error_reporter_by_default) {
  std::vector<std::string> lines;
  const greenev::error_reporter previous =
      greenev::set_error_reporter([&](std::string_view line) { lines.emplace_back(line); });
  {
    stream_server server(loopback, tls_handler(server_context(), echo));
    server.start();
    socket plain = greenev::create_connection("127.0.0.1", server.local_address().port(), 10.0);
    plain.sendall(std::string(512, 'x'));
    try {
      while (!plain.recv(4096).empty()) {
      }
    } catch (const std::system_error&) {  // ECONNRESET: fine, it is closed
    }
    server.stop(5.0);
  }
  greenev::set_error_reporter(previous);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].rfind("greenev: tls: handshake with 127.0.0.1:", 0), 0u) << lines[0];
}

// --- failures on the client's side -------------------------------------------------------

TEST_F(tls_test, a_silent_server_times_the_client_handshake_out) {
  socket listener(AF_INET, SOCK_STREAM);  // the kernel completes TCP's handshake; nobody speaks TLS
  listener.bind(loopback);
  listener.listen();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW((void)greenev::tls_connect(client_context(), listener.local_address(), "localhost", 0.3),
               greenev::timeout_error);
  EXPECT_GE(since(start), 250ms);
  EXPECT_LT(since(start), 5s);
}

// A connected pair: the server's handler waits until `release` is set.
struct held_connection {
  greenev::event release;
  stream_server server;
  explicit held_connection(const tls_context& ctx)
      : server(loopback, tls_handler(ctx, [this](tls_socket&, const address&) { release.wait(); })) {
    server.start();
  }
  ~held_connection() {
    release.set();
    server.stop(5.0);
  }
};

TEST_F(tls_test, recv_times_out_like_a_socket) {
  held_connection held(server_context());
  tls_socket conn = greenev::tls_connect(client_context(), held.server.local_address(), "localhost", 10.0);
  conn.set_timeout(0.2);
  const auto start = std::chrono::steady_clock::now();
  try {
    (void)conn.recv(16);
    ADD_FAILURE() << "recv returned with nothing sent";
  } catch (const greenev::timeout_error& error) {
    EXPECT_EQ(error.source(), &conn);
  }
  EXPECT_GE(since(start), 150ms);
  EXPECT_LT(since(start), 5s);
  conn.set_timeout(0.0);
  EXPECT_TRUE(throws_errno([&] { (void)conn.recv(16); }, EAGAIN, "timeout 0"));
  EXPECT_TRUE(throws_with<std::invalid_argument>([&] { (void)conn.recv(16, MSG_PEEK); }, "flags must be 0"));
}

TEST_F(tls_test, close_wakes_a_recv_waiting_in_another_greenlet) {
  held_connection held(server_context());
  tls_socket conn = greenev::tls_connect(client_context(), held.server.local_address(), "localhost", 10.0);
  auto reader = spawn([&] { return conn.recv(16); });
  greenev::sleep(0.05);  // the reader is waiting
  conn.close();
  EXPECT_TRUE(throws_errno([&] { (void)reader.get(5.0); }, EBADF));
  EXPECT_FALSE(conn);
  EXPECT_TRUE(throws_errno([&] { conn.sendall("x"); }, EBADF, "closed socket"));
  conn.close();  // idempotent
}

// --- ends of stream ---------------------------------------------------------------

TEST_F(tls_test, a_close_without_close_notify_reads_as_end_of_stream_unless_asked) {
  stream_server server(loopback, tls_handler(server_context(), [](tls_socket& conn, const address&) {
                         conn.sendall("bye");
                         conn.close();  // no close_notify: a ragged end
                       }));
  server.start();
  {
    tls_socket conn = greenev::tls_connect(client_context(), server.local_address(), "localhost", 10.0);
    EXPECT_EQ(read_to_end(conn), "bye");
    EXPECT_EQ(conn.recv(16), "");  // and stays at the end
  }
  {
    const tls_context strict({.ca_file = file("ca.pem"), .suppress_ragged_eofs = false});
    tls_socket conn = greenev::tls_connect(strict, server.local_address(), "localhost", 10.0);
    EXPECT_EQ(conn.recv(16), "bye");
    try {
      (void)conn.recv(16);
      ADD_FAILURE() << "a ragged end read as a clean one";
    } catch (const tls_error& error) {
      EXPECT_EQ(error.code(), tls_errc::unexpected_eof);
    }
  }
  server.stop(5.0);
}

TEST_F(tls_test, shutdown_sends_close_notify) {
  stream_server server(loopback, tls_handler(server_context(), [](tls_socket& conn, const address&) {
                         conn.sendall("bye");
                         conn.shutdown(SHUT_RDWR);
                       }));
  server.start();
  const tls_context strict({.ca_file = file("ca.pem"), .suppress_ragged_eofs = false});
  tls_socket conn = greenev::tls_connect(strict, server.local_address(), "localhost", 10.0);
  EXPECT_EQ(read_to_end(conn), "bye");  // a clean end even when ragged ones throw
  server.stop(5.0);
}

TEST_F(tls_test, sending_after_shutdown_is_epipe) {
  held_connection held(server_context());
  tls_socket conn = greenev::tls_connect(client_context(), held.server.local_address(), "localhost", 10.0);
  conn.shutdown(SHUT_WR);
  EXPECT_TRUE(throws_errno([&] { conn.sendall("late"); }, EPIPE, "after shutdown"));
  EXPECT_TRUE(throws_errno([&] { (void)conn.send("late"); }, EPIPE, "after shutdown"));
}

TEST_F(tls_test, sending_to_a_vanished_peer_is_an_error_not_sigpipe) {
  stream_server server(loopback, tls_handler(server_context(), [](tls_socket& conn, const address&) {
                         conn.close();  // unread data then comes back as a reset
                       }));
  server.start();
  tls_socket conn = greenev::tls_connect(client_context(), server.local_address(), "localhost", 10.0);
  conn.set_timeout(10.0);
  const std::string block(256 * 1024, 'z');
  bool failed = false;
  for (int i = 0; i < 200 && !failed; ++i) {
    try {
      conn.sendall(block);
    } catch (const std::system_error& error) {
      const int code = error.code().value();
      EXPECT_TRUE(code == EPIPE || code == ECONNRESET) << error.what();
      failed = true;
    }
  }
  EXPECT_TRUE(failed);
  server.stop(5.0);
}

}  // namespace
