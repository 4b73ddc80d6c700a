// TLS sendall throughput over loopback: greenev's tls_socket::sendall against a
// blocking C loop over OpenSSL (SSL_write on a blocking socket), with the same
// receiver — a plain thread reading with SSL_read on a blocking socket — so that
// only the sending side differs. Prints "result tls_sendall_SENDER = X MiB/s".
//
//   tls_sendall --cert server.pem --key server.key --ca ca.pem --mib 1024 --sender greenev|baseline
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <greenev/tls.hpp>

#include "../examples/command_line.hpp"

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "tls_sendall: %s\n", what);
  ERR_print_errors_fp(stderr);
  std::exit(1);
}

// The receiver: accepts one TLS connection and reads `bytes`, blocking.
void receive(int listener, SSL_CTX* server, std::size_t bytes) {
  const int fd = ::accept(listener, nullptr, nullptr);
  if (fd < 0) die("accept");
  SSL* ssl = SSL_new(server);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) != 1) die("SSL_accept");
  static char buffer[1 << 16];
  std::size_t got = 0;
  while (got < bytes) {
    const int n = SSL_read(ssl, buffer, sizeof buffer);
    if (n <= 0) die("SSL_read");
    got += static_cast<std::size_t>(n);
  }
  SSL_shutdown(ssl);
  SSL_free(ssl);
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  std::string cert;
  std::string key;
  std::string ca;
  std::string sender = "greenev";
  long mib = 1024;
  examples::command_line options(
      "tls_sendall", "usage: tls_sendall --cert F --key F --ca F [--mib N] [--sender greenev|baseline]\n");
  options.text("--cert", cert);
  options.text("--key", key);
  options.text("--ca", ca);
  options.integer("--mib", mib, 1, 1 << 20);
  options.choice("--sender", sender, {"greenev", "baseline"});
  if (const auto status = options.parse(argc, argv)) return *status;
  if (cert.empty() || key.empty() || ca.empty()) die("--cert, --key and --ca are required");

  SSL_CTX* server = SSL_CTX_new(TLS_server_method());
  if (SSL_CTX_use_certificate_chain_file(server, cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(server, key.c_str(), SSL_FILETYPE_PEM) != 1)
    die("loading the certificate");
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof local;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
      ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&local), &length) != 0)
    die("listen");
  const std::size_t bytes = static_cast<std::size_t>(mib) << 20;
  std::thread receiver(receive, listener, server, bytes);

  const std::string chunk(1 << 20, 'x');
  const auto start = std::chrono::steady_clock::now();
  if (sender == "greenev") {
    const greenev::tls_context client({.ca_file = ca});
    greenev::tls_socket s = greenev::tls_connect(
        client, greenev::address::parse("127.0.0.1", ntohs(local.sin_port)), "localhost", 30.0);
    for (std::size_t sent = 0; sent < bytes; sent += chunk.size()) s.sendall(chunk);
    receiver.join();
  } else {
    SSL_CTX* client = SSL_CTX_new(TLS_client_method());
    if (SSL_CTX_load_verify_locations(client, ca.c_str(), nullptr) != 1) die("loading the CA");
    SSL_CTX_set_verify(client, SSL_VERIFY_PEER, nullptr);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) die("connect");
    SSL* ssl = SSL_new(client);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    if (SSL_connect(ssl) != 1) die("SSL_connect");
    for (std::size_t sent = 0; sent < bytes; sent += chunk.size()) {
      std::size_t done = 0;
      while (done < chunk.size()) {
        std::size_t wrote = 0;
        if (SSL_write_ex(ssl, chunk.data() + done, chunk.size() - done, &wrote) != 1) die("SSL_write");
        done += wrote;
      }
    }
    receiver.join();
    SSL_free(ssl);
    ::close(fd);
    SSL_CTX_free(client);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("result tls_sendall_%s = %.1f MiB/s\n", sender.c_str(), static_cast<double>(mib) / seconds);
  ::close(listener);
  SSL_CTX_free(server);
  return 0;
}
